#include "vmm/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/error.h"
#include "base/peer.h"
#include "vmm/confine.h"
#include "vmm/network.h"
#include "vmm/persist.h"

struct vm_control {
    struct vm *vm;
    int listen_fd;
    int client_fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char line[VMM_CONTROL_MAX_LINE + 1];
    size_t used;
    int passed_fd; /* a descriptor that came with the request (SCM_RIGHTS), or -1 */
    bool paused;   /* by a "pause" request, until "resume": a snapshot leaves it so */
};

static void drop_passed_fd(struct vm_control *c)
{
    if (c->passed_fd >= 0)
        close(c->passed_fd);
    c->passed_fd = -1;
}

static void drop_client(struct vm_control *c)
{
    if (c->client_fd >= 0) {
        evl_remove(&c->vm->loop, c->client_fd);
        close(c->client_fd);
    }
    c->client_fd = -1;
    c->used = 0;
    drop_passed_fd(c);
}

static void reply(struct vm_control *c, const char *text)
{
    size_t len = strlen(text);
    /* Replies are short; a client that does not read them loses them. */
    if (send(c->client_fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
        drop_client(c);
}

/* "ok", or "error MSG" on one line: a message must not smuggle in a
 * second reply. */
static void reply_result(struct vm_control *c, sm_error *err)
{
    char out[sizeof err->message + 16];
    if (!err->code) {
        reply(c, "ok\n");
        return;
    }
    for (char *p = err->message; *p; p++)
        if (*p == '\n')
            *p = ' ';
    snprintf(out, sizeof out, "error %s\n", err->message);
    reply(c, out);
}

/* The folder comes as a descriptor sent with the request (the library's
 * way, and the only one from a cell, where the host's paths do not exist)
 * or, for a VMM outside a cell, as the path. */
static void do_snapshot(struct vm_control *c, const char *dir)
{
    sm_error err = { 0 };
    int fd = c->passed_fd;
    c->passed_fd = -1;
    if (fd < 0 && c->vm->cfg.in_cell)
        error_set(&err, SM_E_INVALID, "this VMM lives in a cell: send the snapshot folder's descriptor "
                                      "with the request (SCM_RIGHTS)");
    else if (fd < 0)
        fd = persist_open_dir(dir, &err);
    /* A VM paused by request is already still, and stays paused after. */
    if (fd >= 0 && (c->paused || vm_pause(c->vm, &err) == SM_OK)) {
        persist_save(c->vm, fd, dir, &err);
        if (!c->paused)
            vm_resume(c->vm);
    }
    if (fd >= 0)
        close(fd);
    reply_result(c, &err);
}

/* The snapshot's pause, held until "resume": vCPUs parked outside KVM_RUN,
 * the NAT delivering nothing. The event loop goes on, so the control
 * socket (resume, stop, snapshot) is still served. */
static void do_pause(struct vm_control *c)
{
    sm_error err = { 0 };
    if (c->paused)
        error_set(&err, SM_E_INVALID, "the VM is paused already");
    else if (vm_pause(c->vm, &err) == SM_OK)
        c->paused = true;
    reply_result(c, &err);
}

static void do_resume(struct vm_control *c)
{
    sm_error err = { 0 };
    if (!c->paused)
        error_set(&err, SM_E_INVALID, "the VM is not paused");
    else {
        vm_resume(c->vm);
        c->paused = false;
    }
    reply_result(c, &err);
}

static void do_publish(struct vm_control *c, const char *spec)
{
    sm_error err = { 0 };
    if (!c->vm->network)
        error_set(&err, SM_E_INVALID, "the VM's network is off: nothing to publish on");
    else
        vm_network_publish(c->vm->network, spec, &err);
    reply_result(c, &err);
}

static void do_stats(struct vm_control *c)
{
    char out[512];
    snprintf(out, sizeof out, "ok ready_us=%lld exits_io=%llu exits_mmio=%llu exits_intr=%llu exits_other=%llu\n",
             (long long)vm_ready_us(c->vm), (unsigned long long)atomic_load(&c->vm->exits[VM_EXIT_IO]),
             (unsigned long long)atomic_load(&c->vm->exits[VM_EXIT_MMIO]),
             (unsigned long long)atomic_load(&c->vm->exits[VM_EXIT_INTR]),
             (unsigned long long)(atomic_load(&c->vm->exits[VM_EXIT_OTHER]) +
                                  atomic_load(&c->vm->exits[VM_EXIT_SHUTDOWN])));
    reply(c, out);
}

static void execute(struct vm_control *c, char *line)
{
    struct vmm_control_request req;
    const char *why;
    if (!vmm_control_request_parse(line, &req, &why)) {
        char out[128];
        snprintf(out, sizeof out, "error %s\n", why);
        reply(c, out);
        return;
    }
    switch (req.verb) {
    case VMM_CONTROL_SNAPSHOT: do_snapshot(c, req.dir); break;
    case VMM_CONTROL_STOP:
        reply(c, "ok\n");
        vm_request_stop(c->vm, VM_STOP_HOST);
        break;
    case VMM_CONTROL_STATS: do_stats(c); break;
    case VMM_CONTROL_PUBLISH: do_publish(c, req.port); break;
    case VMM_CONTROL_TEST_FORBIDDEN: confine_call_forbidden(); break;
    case VMM_CONTROL_PAUSE: do_pause(c); break;
    case VMM_CONTROL_RESUME: do_resume(c); break;
    }
    drop_passed_fd(c); /* a descriptor the request did not use */
}

/* Reads what the client sent, keeping the one descriptor a request may
 * carry (any more are closed). */
static ssize_t receive(struct vm_control *c)
{
    struct iovec iov = { c->line + c->used, VMM_CONTROL_MAX_LINE - c->used };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } control;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                          .msg_controllen = sizeof control.buf };
    ssize_t n = recvmsg(c->client_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    for (struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; h; h = CMSG_NXTHDR(&msg, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(h) + i * sizeof fd, sizeof fd);
            drop_passed_fd(c);
            c->passed_fd = fd;
        }
    }
    return n;
}

static void on_client(void *opaque, uint32_t events)
{
    struct vm_control *c = opaque;
    (void)events;
    ssize_t n = receive(c);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            drop_client(c);
        return;
    }
    c->used += (size_t)n;
    char *nl;
    while (c->client_fd >= 0 && (nl = memchr(c->line, '\n', c->used))) {
        *nl = 0;
        size_t consumed = (size_t)(nl - c->line) + 1;
        execute(c, c->line);
        if (c->client_fd < 0)
            return;
        memmove(c->line, c->line + consumed, c->used - consumed);
        c->used -= consumed;
    }
    if (c->used == VMM_CONTROL_MAX_LINE) {
        reply(c, "error request line too long\n");
        drop_client(c);
    }
}

static void on_accept(void *opaque, uint32_t events)
{
    struct vm_control *c = opaque;
    (void)events;
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (!peer_is_own_user(fd)) {
        close(fd); /* the VM's owner only */
        return;
    }
    if (c->client_fd >= 0) {
        const char busy[] = "error another client is connected\n";
        send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return;
    }
    c->client_fd = fd;
    c->used = 0;
    if (evl_add(&c->vm->loop, fd, EPOLLIN, on_client, c) < 0)
        drop_client(c);
}

struct vm_control *vm_control_open(struct vm *vm, const char *path, sm_error *err)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) {
        error_set(err, SM_E_INVALID, "control socket path is longer than %zu bytes: %s", sizeof addr.sun_path - 1, path);
        return NULL;
    }
    struct vm_control *c = calloc(1, sizeof *c);
    if (!c) {
        error_set(err, SM_E_NOMEM, "out of memory");
        return NULL;
    }
    c->vm = vm;
    c->client_fd = -1;
    c->passed_fd = -1;
    snprintf(c->path, sizeof c->path, "%s", path);
    memcpy(addr.sun_path, path, strlen(path) + 1);
    unlink(path);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(c->listen_fd, 4) < 0 || evl_add(&vm->loop, c->listen_fd, EPOLLIN, on_accept, c) < 0) {
        error_set_errno(err, SM_E_IO, errno, "cannot listen on the control socket %s", path);
        if (c->listen_fd >= 0)
            close(c->listen_fd);
        free(c);
        return NULL;
    }
    return c;
}

void vm_control_close(struct vm_control *c)
{
    if (!c)
        return;
    drop_client(c);
    evl_remove(&c->vm->loop, c->listen_fd);
    close(c->listen_fd);
    unlink(c->path);
    free(c);
}
