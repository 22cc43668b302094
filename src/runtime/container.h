/*
 * Containers under a runtime root (--root): one folder per container ID,
 * holding its state file and a copy of its config.json; and the lifecycle
 * of the OCI runtime spec, with runc's rules and messages:
 *
 *   create  ID      new ID only ("container with given ID already exists")
 *   start   ID      created only ("cannot start a container that has
 *                   stopped", "cannot start an already running container")
 *   kill    ID SIG  created or running ("container not running"; with
 *                   --all a stopped container is no error)
 *   delete  ID      stopped or created; running only with --force ("cannot
 *                   delete container ID that is not stopped: running");
 *                   an unknown ID with --force is no error
 *   state   ID      any; the status is checked against the backend, so a
 *                   container whose process ended reads as stopped
 * An ID that does not exist: "container does not exist".
 *
 * The state file, ROOT/ID/state.json (replaced atomically, 0600):
 *   { "ociVersion", "id", "status", "pid", "bundle", "rootfs", "created"
 *     (RFC 3339), "annotations": {..}, "handle" (the backend's) }
 * Folders are 0700. Two commands on one container at once are serialized
 * by an flock on ROOT/ID/lock.
 */
#ifndef SM_RUNTIME_CONTAINER_H
#define SM_RUNTIME_CONTAINER_H

#include "runtime/backend.h"
#include "runtime/config.h"
#include "supermachine.h"

#include <limits.h>
#include <stdbool.h>

#define RT_ID_MAX 255 /* a container ID names a folder: NAME_MAX */
#define RT_STATE_MAX_BYTES (4u << 20)

enum rt_status { RT_CREATING, RT_CREATED, RT_RUNNING, RT_STOPPED };

struct rt_state {
    char id[RT_ID_MAX + 1];
    enum rt_status status;
    int pid;                 /* 0 when none */
    char oci_version[64];
    char bundle[PATH_MAX];
    char rootfs[PATH_MAX];
    char created[48];        /* RFC 3339, UTC */
    char handle[128];        /* the backend's name for the VM */
    char dir[PATH_MAX];      /* ROOT/ID (not kept in the state file) */
    struct rt_annotation *annotations;
    size_t nannotations;
};

const char *rt_status_name(enum rt_status s);

/* Writes pid to path (atomically, 0644), as engines read a pid file. */
sm_code rt_write_pid_file(const char *path, int pid, sm_error *err);

/* runc's rule: 1 or more of [A-Za-z0-9_+.-], not "." or "..", at most
 * RT_ID_MAX. SM_E_INVALID "invalid container ID format" otherwise. */
sm_code rt_id_check(const char *id, sm_error *err);

/* The default --root: $XDG_RUNTIME_DIR/supermachine-runtime when that is
 * set and we are not root, else /run/supermachine-runtime. */
void rt_default_root(char *out, size_t cap);

struct rt_create_opts {
    const char *bundle;         /* NULL: the current folder */
    const char *pid_file;       /* NULL: none */
    const char *console_socket; /* NULL: none */
};

sm_code rt_create(const char *root, const char *id, const struct rt_create_opts *o,
                  const struct rt_backend *be, sm_error *err);
sm_code rt_start(const char *root, const char *id, const struct rt_backend *be, sm_error *err);
sm_code rt_kill(const char *root, const char *id, int signo, bool all,
                const struct rt_backend *be, sm_error *err);
sm_code rt_delete(const char *root, const char *id, bool force, const struct rt_backend *be,
                  sm_error *err);
/* Runs proc (its process fields) in a created or running container ("cannot
 * exec in a stopped container"). */
sm_code rt_exec(const char *root, const char *id, const struct rt_config *proc,
                const struct rt_exec_opts *o, const struct rt_backend *be, int *status,
                sm_error *err);
/* The state, its status brought up to date (a created or running container
 * whose backend says it is gone is stopped; its pid then reads 0). Free
 * with rt_state_free. */
sm_code rt_state_load(const char *root, const char *id, const struct rt_backend *be,
                      struct rt_state *out, sm_error *err);
void rt_state_free(struct rt_state *st);
/* The runtime spec's state JSON (pretty, as runc prints it), malloc'd. */
char *rt_state_json(const struct rt_state *st);

#endif
