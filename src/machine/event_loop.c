#include "machine/event_loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int evl_init(struct event_loop *loop)
{
    memset(loop, 0, sizeof *loop);
    for (int i = 0; i < EVL_MAX_WATCHES; i++)
        loop->watches[i].fd = -1;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    return loop->epfd < 0 ? -1 : 0;
}

void evl_destroy(struct event_loop *loop)
{
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->epfd = -1;
}

static struct evl_watch *slot_of(struct event_loop *loop, int fd)
{
    for (int i = 0; i < EVL_MAX_WATCHES; i++)
        if (loop->watches[i].fd == fd)
            return &loop->watches[i];
    return NULL;
}

int evl_add(struct event_loop *loop, int fd, uint32_t events, evl_callback cb, void *opaque)
{
    struct evl_watch *w = slot_of(loop, -1);
    if (!w) {
        errno = ENOSPC;
        return -1;
    }
    struct epoll_event ev = { .events = events, .data.ptr = w };
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    *w = (struct evl_watch){ .fd = fd, .cb = cb, .opaque = opaque };
    return 0;
}

int evl_modify(struct event_loop *loop, int fd, uint32_t events)
{
    struct evl_watch *w = slot_of(loop, fd);
    if (!w) {
        errno = ENOENT;
        return -1;
    }
    struct epoll_event ev = { .events = events, .data.ptr = w };
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int evl_remove(struct event_loop *loop, int fd)
{
    struct evl_watch *w = slot_of(loop, fd);
    if (!w) {
        errno = ENOENT;
        return -1;
    }
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->fd = -1;
    w->cb = NULL;
    return 0;
}

int evl_run_once(struct event_loop *loop, int timeout_ms)
{
    struct epoll_event evs[32];
    int n = epoll_wait(loop->epfd, evs, 32, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        struct evl_watch *w = evs[i].data.ptr;
        /* A callback earlier in this batch may have removed this watch. */
        if (w->fd >= 0 && w->cb)
            w->cb(w->opaque, evs[i].events);
    }
    return n;
}
