/*
 * The VMM's event loop: one epoll set, callbacks by file descriptor. It runs
 * on the VMM's main thread and serves ioeventfds (virtio queue notifications),
 * host sockets and timers; vCPU threads never block on it.
 */
#ifndef SM_MACHINE_EVENT_LOOP_H
#define SM_MACHINE_EVENT_LOOP_H

#include <stdint.h>

typedef void (*evl_callback)(void *opaque, uint32_t events);

#define EVL_MAX_WATCHES 256

struct evl_watch {
    int fd;
    evl_callback cb;
    void *opaque;
};

struct event_loop {
    int epfd;
    struct evl_watch watches[EVL_MAX_WATCHES];
};

int evl_init(struct event_loop *loop);
void evl_destroy(struct event_loop *loop);
/* events: EPOLLIN/EPOLLOUT/...; returns -1 with errno set on failure. */
int evl_add(struct event_loop *loop, int fd, uint32_t events, evl_callback cb, void *opaque);
int evl_modify(struct event_loop *loop, int fd, uint32_t events);
int evl_remove(struct event_loop *loop, int fd);
/* Waits up to timeout_ms (-1: forever) and runs callbacks; returns how many ran, -1 on error. */
int evl_run_once(struct event_loop *loop, int timeout_ms);

#endif
