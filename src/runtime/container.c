/* Containers under a runtime root, and their lifecycle: see container.h. */
#include "runtime/container.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_FILE "state.json"
#define CONFIG_FILE "config.json"
#define LOCK_FILE "lock"
/* How long delete waits for a killed container to end: runc's 10 s. */
#define KILL_WAIT_MS 10000
#define KILL_POLL_MS 100

static const char *const status_names[] = {
    [RT_CREATING] = "creating",
    [RT_CREATED] = "created",
    [RT_RUNNING] = "running",
    [RT_STOPPED] = "stopped",
};

const char *rt_status_name(enum rt_status s)
{
    return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "unknown";
}

sm_code rt_id_check(const char *id, sm_error *err)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0)
        return error_set(err, SM_E_INVALID, "container id cannot be empty");
    bool ok = len <= RT_ID_MAX && strcmp(id, ".") && strcmp(id, "..");
    for (size_t i = 0; ok && i < len; i++) {
        char c = id[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '+' || c == '-' || c == '.';
    }
    return ok ? SM_OK
              : error_set(err, SM_E_INVALID,
                          "invalid container ID format: 1 to %d of A-Z a-z 0-9 _ + - ., not . or ..",
                          RT_ID_MAX);
}

void rt_default_root(char *out, size_t cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (geteuid() != 0 && xdg && xdg[0] == '/' &&
        (size_t)snprintf(out, cap, "%s/supermachine-runtime", xdg) < cap)
        return;
    snprintf(out, cap, "/run/supermachine-runtime");
}

/* ---- paths and folders --------------------------------------------------- */

static sm_code path_in(char *out, size_t cap, const char *root, const char *id, const char *file,
                       sm_error *err)
{
    int n = file ? snprintf(out, cap, "%s/%s/%s", root, id, file)
                 : snprintf(out, cap, "%s/%s", root, id);
    if (n < 0 || (size_t)n >= cap)
        return error_set(err, SM_E_INVALID, "the path of container %s under %s is too long", id,
                         root);
    return SM_OK;
}

/* mkdir -p root, the last folder 0700 (the others 0755, as /run's are). */
static sm_code make_root(const char *root, sm_error *err)
{
    char p[PATH_MAX];
    if (root[0] != '/' || strlen(root) >= sizeof p)
        return error_set(err, SM_E_INVALID, "--root %s: not an absolute path", root);
    strcpy(p, root);
    for (char *s = p + 1;; s++) {
        bool last = *s == 0;
        if (*s != '/' && !last)
            continue;
        *s = 0;
        if (mkdir(p, last ? 0700 : 0755) != 0 && errno != EEXIST)
            return error_set_errno(err, SM_E_IO, errno, "cannot make the runtime root %s", p);
        if (last)
            break;
        *s = '/';
    }
    struct stat st;
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        return error_set(err, SM_E_IO, "the runtime root %s is not a folder", root);
    return SM_OK;
}

/* Removes the container's folder and the files in it. */
static void remove_container_dir(const char *root, const char *id)
{
    char dir[PATH_MAX];
    if (path_in(dir, sizeof dir, root, id, NULL, NULL))
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        DIR *d = fdopendir(fd);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                    unlinkat(dirfd(d), e->d_name, 0);
            closedir(d);
        } else {
            close(fd);
        }
    }
    rmdir(dir);
}

static sm_code not_exist(sm_error *err)
{
    return error_set(err, SM_E_NOTFOUND, "container does not exist");
}

/* Takes the container's lock into *fd (waiting for another command on
 * it). SM_E_NOTFOUND, "container does not exist", when its folder has no
 * lock file. */
static sm_code lock_container(const char *root, const char *id, bool create, int *fd,
                              sm_error *err)
{
    char p[PATH_MAX];
    *fd = -1;
    sm_code rc = path_in(p, sizeof p, root, id, LOCK_FILE, err);
    if (rc)
        return rc;
    int f = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (f < 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? not_exist(err)
                   : error_set_errno(err, SM_E_IO, errno, "cannot open %s", p);
    while (flock(f, LOCK_EX) != 0)
        if (errno != EINTR) {
            rc = error_set_errno(err, SM_E_IO, errno, "cannot lock %s", p);
            close(f);
            return rc;
        }
    *fd = f;
    return SM_OK;
}

/* Unlocks explicitly before closing: a process the backend forked may hold
 * a copy of the descriptor, and flock's lock belongs to the open file that
 * both share. */
static void unlock_container(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* ---- the state file ------------------------------------------------------- */

static void add_string(struct json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, json_object_new_string(v));
}

static struct json_object *annotations_json(const struct rt_state *st)
{
    struct json_object *a = json_object_new_object();
    for (size_t i = 0; a && i < st->nannotations; i++)
        add_string(a, st->annotations[i].key, st->annotations[i].value);
    return a;
}

/* The spec's fields, plus runc's rootfs and created, plus ours. */
static char *state_to_json(const struct rt_state *st, bool internal)
{
    struct json_object *o = json_object_new_object();
    if (!o)
        return NULL;
    add_string(o, "ociVersion", st->oci_version);
    add_string(o, "id", st->id);
    add_string(o, "status", rt_status_name(st->status));
    json_object_object_add(o, "pid", json_object_new_int(st->status == RT_STOPPED ? 0 : st->pid));
    add_string(o, "bundle", st->bundle);
    add_string(o, "rootfs", st->rootfs);
    add_string(o, "created", st->created);
    json_object_object_add(o, "annotations", annotations_json(st));
    if (internal)
        add_string(o, "handle", st->handle);
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = s ? strdup(s) : NULL;
    json_object_put(o);
    return copy;
}

char *rt_state_json(const struct rt_state *st)
{
    return state_to_json(st, false);
}

static sm_code save_state(const char *root, const struct rt_state *st, sm_error *err)
{
    char p[PATH_MAX];
    sm_code rc = path_in(p, sizeof p, root, st->id, STATE_FILE, err);
    if (rc)
        return rc;
    char *json = state_to_json(st, true);
    if (!json)
        return error_set(err, SM_E_NOMEM, "out of memory");
    bool ok = write_file_atomic(p, json, strlen(json), 0600);
    int e = errno;
    free(json);
    return ok ? SM_OK : error_set_errno(err, SM_E_IO, e, "cannot write %s", p);
}

/* Reads a whole small file (at most max bytes), NUL-terminated. */
static sm_code read_small(const char *path, size_t max, bool follow, char **out, size_t *len,
                          sm_error *err)
{
    struct stat st;
    int fd = file_open_read(path, follow, false, &st);
    if (fd < 0)
        return errno == ENOENT ? error_set(err, SM_E_NOTFOUND, "%s does not exist", path)
                               : error_set_errno(err, SM_E_IO, errno, "cannot open %s", path);
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return error_set(err, SM_E_LIMIT, "%s: %lld bytes, more than %zu", path,
                         (long long)st.st_size, max);
    }
    char *buf = malloc(max + 1);
    size_t n = 0;
    if (!buf) {
        close(fd);
        return error_set(err, SM_E_NOMEM, "out of memory");
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return error_set_errno(err, SM_E_IO, e, "cannot read %s", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            free(buf);
            close(fd);
            return error_set(err, SM_E_LIMIT, "%s: more than %zu bytes", path, max);
        }
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SM_OK;
}

static bool get_str(struct json_object *o, const char *key, char *dst, size_t cap)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return false;
    const char *s = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v);
    if (len >= cap || strlen(s) != len)
        return false;
    memcpy(dst, s, len + 1);
    return true;
}

static sm_code parse_state(const char *json, size_t len, const char *path, struct rt_state *st,
                           sm_error *err)
{
    struct json_tokener *tok = json_tokener_new_ex(8);
    if (!tok)
        return error_set(err, SM_E_NOMEM, "out of memory");
    struct json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    json_tokener_free(tok);
    char status[16];
    struct json_object *pid, *ann;
    bool ok = o && json_object_is_type(o, json_type_object) &&
              get_str(o, "ociVersion", st->oci_version, sizeof st->oci_version) &&
              get_str(o, "id", st->id, sizeof st->id) &&
              get_str(o, "status", status, sizeof status) &&
              get_str(o, "bundle", st->bundle, sizeof st->bundle) &&
              get_str(o, "rootfs", st->rootfs, sizeof st->rootfs) &&
              get_str(o, "created", st->created, sizeof st->created) &&
              get_str(o, "handle", st->handle, sizeof st->handle) &&
              json_object_object_get_ex(o, "pid", &pid) && json_object_is_type(pid, json_type_int) &&
              json_object_get_int64(pid) >= 0 && json_object_get_int64(pid) <= INT32_MAX &&
              json_object_object_get_ex(o, "annotations", &ann) &&
              json_object_is_type(ann, json_type_object) &&
              json_object_object_length(ann) <= RT_CONFIG_MAX_ANNOTATIONS;
    if (ok) {
        st->pid = (int)json_object_get_int64(pid);
        ok = false;
        for (size_t i = 0; i < sizeof status_names / sizeof status_names[0]; i++)
            if (!strcmp(status, status_names[i])) {
                st->status = (enum rt_status)i;
                ok = true;
            }
    }
    size_t n = ok ? (size_t)json_object_object_length(ann) : 0;
    if (ok && n && !(st->annotations = calloc(n, sizeof *st->annotations)))
        ok = false;
    if (ok) {
        json_object_object_foreach(ann, key, val)
        {
            if (!val || !json_object_is_type(val, json_type_string)) {
                ok = false;
                break;
            }
            struct rt_annotation *a = &st->annotations[st->nannotations];
            a->key = strdup(key);
            a->value = strdup(json_object_get_string(val));
            st->nannotations++;
            if (!a->key || !a->value) {
                ok = false;
                break;
            }
        }
    }
    json_object_put(o);
    if (!ok) {
        rt_state_free(st);
        return error_set(err, SM_E_PROTOCOL,
                         "%s is damaged; `delete --force` the container to remove it", path);
    }
    return SM_OK;
}

static void refresh(struct rt_state *st, const struct rt_backend *be)
{
    if ((st->status == RT_CREATED || st->status == RT_RUNNING) && !be->alive(st))
        st->status = RT_STOPPED;
}

/* The container's state, read under its lock (held by the caller). */
static sm_code load_locked(const char *root, const char *id, const struct rt_backend *be,
                           struct rt_state *st, sm_error *err)
{
    memset(st, 0, sizeof *st);
    char p[PATH_MAX], *json;
    size_t len;
    sm_code rc = path_in(p, sizeof p, root, id, STATE_FILE, err);
    if (rc)
        return rc;
    rc = read_small(p, RT_STATE_MAX_BYTES, false, &json, &len, err);
    if (rc == SM_E_NOTFOUND)
        return not_exist(err);
    if (rc)
        return rc;
    rc = parse_state(json, len, p, st, err);
    free(json);
    if (rc)
        return rc;
    if (strcmp(st->id, id)) {
        rt_state_free(st);
        return error_set(err, SM_E_PROTOCOL, "%s names another container, '%.64s'", p, st->id);
    }
    if (path_in(st->dir, sizeof st->dir, root, id, NULL, err)) {
        rt_state_free(st);
        return SM_E_INVALID;
    }
    refresh(st, be);
    return SM_OK;
}

void rt_state_free(struct rt_state *st)
{
    for (size_t i = 0; st && i < st->nannotations; i++) {
        free(st->annotations[i].key);
        free(st->annotations[i].value);
    }
    if (st) {
        free(st->annotations);
        st->annotations = NULL;
        st->nannotations = 0;
    }
}

sm_code rt_state_load(const char *root, const char *id, const struct rt_backend *be,
                      struct rt_state *out, sm_error *err)
{
    memset(out, 0, sizeof *out);
    sm_code rc = rt_id_check(id, err);
    if (rc)
        return rc;
    /* No lock: the state file is replaced atomically, so a reader sees a
     * whole one; and `state` must answer while another command runs. */
    return load_locked(root, id, be, out, err);
}

/* ---- create ----------------------------------------------------------------- */

sm_code rt_write_pid_file(const char *path, int pid, sm_error *err)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d", pid);
    if (!write_file_atomic(path, text, (size_t)n, 0644))
        return error_set_errno(err, SM_E_IO, errno, "cannot write the pid file %s", path);
    return SM_OK;
}

/* The bundle's config.json, parsed and checked as create needs it. */
static sm_code read_bundle(const char *bundle, struct rt_config *cfg, char **raw, size_t *raw_len,
                           sm_error *err)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/config.json", bundle) >= sizeof p)
        return error_set(err, SM_E_INVALID, "bundle %s: path too long", bundle);
    sm_code rc = read_small(p, RT_CONFIG_MAX_BYTES, true, raw, raw_len, err);
    if (rc)
        return rc == SM_E_NOTFOUND
                   ? error_set(err, SM_E_NOTFOUND, "bundle %s has no config.json", bundle)
                   : rc;
    rc = rt_config_parse(*raw, *raw_len, cfg, err);
    if (rc == SM_OK && !cfg->has_process) {
        rt_config_free(cfg);
        rc = error_set(err, SM_E_INVALID, "config.json: process property must not be empty");
    }
    if (rc) {
        free(*raw);
        *raw = NULL;
    }
    return rc;
}

sm_code rt_create(const char *root, const char *id, const struct rt_create_opts *o,
                  const struct rt_backend *be, sm_error *err)
{
    sm_code rc = rt_id_check(id, err);
    if (rc)
        return rc;
    char bundle[PATH_MAX], rootfs[PATH_MAX], raw_root[PATH_MAX];
    const char *b = o && o->bundle && o->bundle[0] ? o->bundle : ".";
    if (!realpath(b, bundle))
        return error_set_errno(err, SM_E_NOTFOUND, errno, "bundle %s", b);
    struct stat sb;
    if (stat(bundle, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return error_set(err, SM_E_INVALID, "bundle %s is not a folder", bundle);

    struct rt_config cfg;
    char *raw = NULL;
    size_t raw_len = 0;
    if ((rc = read_bundle(bundle, &cfg, &raw, &raw_len, err)))
        return rc;
    const char *console = o && o->console_socket && o->console_socket[0] ? o->console_socket : NULL;
    if (cfg.terminal && !console)
        rc = error_set(err, SM_E_INVALID,
                       "cannot allocate tty if runc will detach without setting console socket");
    else if (!cfg.terminal && console)
        rc = error_set(err, SM_E_INVALID,
                       "cannot use console socket if runc will not detach or allocate tty");
    else if ((size_t)snprintf(raw_root, sizeof raw_root, "%s%s%s",
                              cfg.root_path[0] == '/' ? "" : bundle,
                              cfg.root_path[0] == '/' ? "" : "/", cfg.root_path) >= sizeof raw_root)
        rc = error_set(err, SM_E_INVALID, "config.json: root.path: too long");
    else if (!realpath(raw_root, rootfs))
        rc = error_set_errno(err, SM_E_NOTFOUND, errno, "config.json: root.path %s", raw_root);
    else if (stat(rootfs, &sb) != 0 || !S_ISDIR(sb.st_mode))
        rc = error_set(err, SM_E_INVALID, "config.json: root.path %s is not a folder", rootfs);
    if (!rc)
        rc = make_root(root, err);
    char dir[PATH_MAX];
    if (!rc && !(rc = path_in(dir, sizeof dir, root, id, NULL, err)) && mkdir(dir, 0700) != 0)
        rc = errno == EEXIST
                 ? error_set(err, SM_E_INVALID, "container with given ID already exists")
                 : error_set_errno(err, SM_E_IO, errno, "cannot make %s", dir);
    if (rc) {
        rt_config_free(&cfg);
        free(raw);
        return rc;
    }

    /* From here on the folder is ours: any failure removes it. */
    struct rt_state st = { .status = RT_CREATING };
    int lock;
    char p[PATH_MAX];
    rc = lock_container(root, id, true, &lock, err);
    if (!rc)
        rc = path_in(p, sizeof p, root, id, CONFIG_FILE, err);
    if (!rc && !write_file_atomic(p, raw, raw_len, 0600))
        rc = error_set_errno(err, SM_E_IO, errno, "cannot write %s", p);
    if (!rc) {
        snprintf(st.id, sizeof st.id, "%s", id);
        snprintf(st.oci_version, sizeof st.oci_version, "%s", cfg.oci_version);
        snprintf(st.bundle, sizeof st.bundle, "%s", bundle);
        snprintf(st.rootfs, sizeof st.rootfs, "%s", rootfs);
        snprintf(st.dir, sizeof st.dir, "%s", dir);
        clock_wall_rfc3339(st.created, sizeof st.created);
        if (cfg.nannotations && !(st.annotations = calloc(cfg.nannotations, sizeof *st.annotations)))
            rc = error_set(err, SM_E_NOMEM, "out of memory");
        for (size_t i = 0; !rc && i < cfg.nannotations; i++) {
            st.annotations[i].key = strdup(cfg.annotations[i].key);
            st.annotations[i].value = strdup(cfg.annotations[i].value);
            st.nannotations = i + 1;
            if (!st.annotations[i].key || !st.annotations[i].value)
                rc = error_set(err, SM_E_NOMEM, "out of memory");
        }
    }
    bool made = false;
    struct rt_create_request req = { .rootfs = rootfs, .console_socket = console };
    if (!rc && !(rc = be->create(&st, &cfg, &req, err))) {
        made = true;
        st.status = RT_CREATED;
        rc = save_state(root, &st, err);
    }
    if (!rc && o && o->pid_file && o->pid_file[0])
        rc = rt_write_pid_file(o->pid_file, st.pid, err);
    if (rc) {
        if (made)
            be->destroy(&st, NULL);
        remove_container_dir(root, id);
    }
    unlock_container(lock);
    rt_state_free(&st);
    rt_config_free(&cfg);
    free(raw);
    return rc;
}

/* ---- start, kill, delete ------------------------------------------------------ */

sm_code rt_start(const char *root, const char *id, const struct rt_backend *be, sm_error *err)
{
    sm_code rc = rt_id_check(id, err);
    if (rc)
        return rc;
    int lock;
    if ((rc = lock_container(root, id, false, &lock, err)))
        return rc;
    struct rt_state st;
    if ((rc = load_locked(root, id, be, &st, err))) {
        unlock_container(lock);
        return rc;
    }
    switch (st.status) {
    case RT_CREATED: {
        char p[PATH_MAX], *raw = NULL;
        size_t len;
        struct rt_config cfg;
        if (!(rc = path_in(p, sizeof p, root, id, CONFIG_FILE, err)) &&
            !(rc = read_small(p, RT_CONFIG_MAX_BYTES, false, &raw, &len, err)) &&
            !(rc = rt_config_parse(raw, len, &cfg, err))) {
            if (!(rc = be->start(&st, &cfg, err))) {
                st.status = RT_RUNNING;
                rc = save_state(root, &st, err);
            }
            rt_config_free(&cfg);
        }
        free(raw);
        break;
    }
    case RT_STOPPED:
        rc = error_set(err, SM_E_INVALID, "cannot start a container that has stopped");
        break;
    case RT_RUNNING:
        rc = error_set(err, SM_E_INVALID, "cannot start an already running container");
        break;
    default:
        rc = error_set(err, SM_E_INVALID, "cannot start a container in the %s state",
                       rt_status_name(st.status));
    }
    rt_state_free(&st);
    unlock_container(lock);
    return rc;
}

sm_code rt_kill(const char *root, const char *id, int signo, bool all,
                const struct rt_backend *be, sm_error *err)
{
    sm_code rc = rt_id_check(id, err);
    if (rc)
        return rc;
    if (signo < 0 || signo > SIGRTMAX)
        return error_set(err, SM_E_INVALID, "unknown signal %d", signo);
    int lock;
    if ((rc = lock_container(root, id, false, &lock, err)))
        return rc;
    struct rt_state st;
    if (!(rc = load_locked(root, id, be, &st, err))) {
        if (st.status == RT_STOPPED || st.status == RT_CREATING)
            rc = all ? SM_OK : error_set(err, SM_E_INVALID, "container not running");
        else
            rc = be->signal(&st, signo, err);
        rt_state_free(&st);
    }
    unlock_container(lock);
    return rc;
}

/* SIGKILL, then wait for the backend to say it is gone (runc's 10 s). */
static sm_code kill_and_wait(const struct rt_state *st, const struct rt_backend *be, sm_error *err)
{
    if (be->alive(st)) {
        sm_code rc = be->signal(st, SIGKILL, err);
        if (rc)
            return rc;
        for (unsigned waited = 0; be->alive(st); waited += KILL_POLL_MS) {
            if (waited >= KILL_WAIT_MS)
                return error_set(err, SM_E_TIMEOUT, "container init still running");
            clock_sleep_ms(KILL_POLL_MS);
        }
    }
    return SM_OK;
}

sm_code rt_delete(const char *root, const char *id, bool force, const struct rt_backend *be,
                  sm_error *err)
{
    sm_code rc = rt_id_check(id, err);
    if (rc)
        return rc;
    int lock;
    struct rt_state st;
    rc = lock_container(root, id, false, &lock, err);
    if (rc && rc != SM_E_NOTFOUND)
        return rc;
    if (rc || (rc = load_locked(root, id, be, &st, err)) == SM_E_NOTFOUND) {
        /* No container, or a create that never finished: what is left of
         * the folder goes, as runc does. */
        remove_container_dir(root, id);
        unlock_container(lock);
        return force ? SM_OK : not_exist(err);
    }
    if (rc) {
        /* A damaged state file: --force removes the folder all the same. */
        if (force) {
            remove_container_dir(root, id);
            rc = SM_OK;
        }
        unlock_container(lock);
        return rc;
    }
    if (st.status == RT_RUNNING && !force)
        rc = error_set(err, SM_E_INVALID, "cannot delete container %s that is not stopped: %s", id,
                       rt_status_name(st.status));
    else if (st.status != RT_STOPPED)
        rc = kill_and_wait(&st, be, err);
    if (!rc)
        rc = be->destroy(&st, err);
    if (!rc)
        remove_container_dir(root, id);
    rt_state_free(&st);
    unlock_container(lock);
    return rc;
}

sm_code rt_exec(const char *root, const char *id, const struct rt_config *proc,
                const struct rt_exec_opts *o, const struct rt_backend *be, int *status,
                sm_error *err)
{
    struct rt_state st;
    *status = -1;
    /* Not under the lock: an exec may run for as long as the container. */
    sm_code rc = rt_state_load(root, id, be, &st, err);
    if (rc)
        return rc;
    if (st.status == RT_STOPPED || st.status == RT_CREATING)
        rc = error_set(err, SM_E_INVALID, "cannot exec in a %s container",
                       rt_status_name(st.status));
    else
        rc = be->exec(&st, proc, o, status, err);
    rt_state_free(&st);
    return rc;
}
