/*
 * How a container's VM is made, started, signalled and removed: the one
 * place where the runtime's lifecycle (container.c) meets the library.
 * container.c keeps the state file and the state machine; a backend only
 * does what it is asked, in the order the state machine allows:
 *
 *   create   once, after the bundle and config.json are checked: make the
 *            VM (not yet running the container's process) and fill
 *            st->pid (the host process that stands for the container) and
 *            st->handle (the backend's name for it, kept in the state file)
 *   start    once, on a created container: run process.args (st->dir is
 *            the container's folder, as it was at create)
 *   signal   on a created or running container
 *   exec     on a created or running container: run proc's process too
 *   alive    whether st->pid still stands for a living container
 *   destroy  on a stopped container (or with delete --force): remove all
 *            that create made; called again after a failure, so it must be
 *            harmless on what is already gone
 *
 * rt_backend_vm (vm_backend.c) is the real one; tests use their own.
 */
#ifndef SM_RUNTIME_BACKEND_H
#define SM_RUNTIME_BACKEND_H

#include "runtime/config.h"
#include "supermachine.h"

struct rt_state;

struct rt_create_request {
    const char *rootfs;         /* root.path resolved against the bundle: an existing folder */
    const char *console_socket; /* NULL: none (config.json has no terminal) */
};

struct rt_exec_opts {
    bool detach;
    const char *pid_file;       /* NULL: none */
    const char *console_socket; /* NULL: none */
};

struct rt_backend {
    const char *name;
    sm_code (*create)(struct rt_state *st, const struct rt_config *cfg,
                      const struct rt_create_request *req, sm_error *err);
    sm_code (*start)(struct rt_state *st, const struct rt_config *cfg, sm_error *err);
    sm_code (*signal)(const struct rt_state *st, int signo, sm_error *err);
    /* *status: the process's exit status when not detached. */
    sm_code (*exec)(const struct rt_state *st, const struct rt_config *proc,
                    const struct rt_exec_opts *o, int *status, sm_error *err);
    bool (*alive)(const struct rt_state *st);
    sm_code (*destroy)(const struct rt_state *st, sm_error *err);
};

extern const struct rt_backend rt_backend_vm;

#endif
