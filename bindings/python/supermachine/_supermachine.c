/*
 * supermachine._supermachine: the C core of the Python binding, over the
 * public API of libsupermachine (include/supermachine.h) only.
 *
 * Types: ExecBuilder, ExecChild, Image, Vm, Pool. Every blocking library
 * call runs with the GIL released. The pure-Python package (__init__.py)
 * adds the Pythonic layer: outcome objects, stream wrappers, iteration.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supermachine.h"

PyMODINIT_FUNC PyInit__supermachine(void);

/* ===== errors ============================================================ */

static PyObject *ErrorBase;
static PyObject *ErrorByCode[14]; /* index -code, 1..13 */

static PyObject *error_class(sm_code code)
{
    int i = -(int)code;
    if (i >= 1 && i <= 13 && ErrorByCode[i])
        return ErrorByCode[i];
    return ErrorBase;
}

/* Raises the exception of an sm_error; returns NULL. */
static PyObject *raise_sm(sm_code code, const sm_error *err)
{
    const char *msg = (err && err->message[0]) ? err->message : sm_strerror(code);
    PyObject *cls = error_class(code);
    PyObject *exc = PyObject_CallFunction(cls, "s", msg);
    if (!exc)
        return NULL;
    PyObject *c = PyLong_FromLong((long)code);
    PyObject *m = PyUnicode_FromString(msg);
    if (!c || !m || PyObject_SetAttrString(exc, "code", c) < 0 ||
        PyObject_SetAttrString(exc, "message", m) < 0) {
        Py_XDECREF(c);
        Py_XDECREF(m);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(c);
    Py_DECREF(m);
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *raise_msg(sm_code code, const char *msg)
{
    sm_error e;
    e.code = code;
    snprintf(e.message, sizeof e.message, "%s", msg);
    return raise_sm(code, &e);
}

/* ===== argument helpers ================================================== */

/* A str or os.PathLike -> a new bytes object (filesystem encoding). */
static int path_converter(PyObject *o, void *out)
{
    if (o == Py_None) {
        PyErr_SetString(PyExc_TypeError, "a path (str or os.PathLike) is required, not None");
        return 0;
    }
    return PyUnicode_FSConverter(o, out);
}

/* A list/tuple of str -> a malloc'd NULL-terminated array of UTF-8 pointers
 * kept alive by *keep (a list of bytes). Returns argc, or -1 with an
 * exception. */
static int argv_from_seq(PyObject *seq, const char ***out, PyObject **keep)
{
    *out = NULL;
    *keep = NULL;
    if (PyUnicode_Check(seq) || PyBytes_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "argv must be a sequence of str, not a single string");
        return -1;
    }
    PyObject *fast = PySequence_Fast(seq, "argv must be a sequence of str");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > 65536) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "argv must hold 1 to 65536 strings");
        return -1;
    }
    const char **v = calloc((size_t)n + 1, sizeof *v);
    PyObject *k = PyList_New(0);
    if (!v || !k) {
        free(v);
        Py_XDECREF(k);
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError, "argv[%zd] must be str, not %.100s", i, Py_TYPE(item)->tp_name);
            goto fail;
        }
        PyObject *b = PyUnicode_AsUTF8String(item);
        if (!b)
            goto fail;
        if (PyList_Append(k, b) < 0) {
            Py_DECREF(b);
            goto fail;
        }
        Py_DECREF(b);
        if ((Py_ssize_t)strlen(PyBytes_AS_STRING(b)) != PyBytes_GET_SIZE(b)) {
            PyErr_Format(PyExc_ValueError, "argv[%zd] contains a NUL character", i);
            goto fail;
        }
        v[i] = PyBytes_AS_STRING(b);
    }
    Py_DECREF(fast);
    *out = v;
    *keep = k;
    return (int)n;
fail:
    free(v);
    Py_DECREF(k);
    Py_DECREF(fast);
    return -1;
}

/* Seconds (int or float, >= 0) -> milliseconds in uint32. */
static int seconds_to_ms(PyObject *o, uint32_t *ms, const char *what)
{
    double s = PyFloat_AsDouble(o);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    if (!(s >= 0) || s * 1000.0 > 4294967295.0) {
        PyErr_Format(PyExc_ValueError, "%s must be between 0 and 4294967 seconds", what);
        return -1;
    }
    double m = s * 1000.0;
    *ms = (uint32_t)m;
    if (s > 0 && *ms == 0)
        *ms = 1;
    return 0;
}

static int u32_arg(PyObject *o, uint32_t *out, const char *what)
{
    int overflow = 0;
    long long v;
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must not be negative", what);
        return -1;
    }
    if (overflow > 0 || v > (long long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s is too large", what);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static PyObject *status_tuple(const sm_exec_status *st)
{
    return Py_BuildValue("(iiOKKI)", st->code, st->signal, st->timed_out ? Py_True : Py_False,
                         (unsigned long long)st->duration_us, (unsigned long long)st->peak_rss_kib,
                         st->steps_run);
}

/* ===== ExecBuilder ======================================================= */

typedef struct {
    PyObject_HEAD
    sm_exec_builder *b;
    PyObject *owner; /* a Vm kept alive while the builder lives, or NULL */
} BuilderObject;

static PyTypeObject BuilderType;

static void Builder_dealloc(BuilderObject *self)
{
    sm_exec_builder_free(self->b);
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *builder_wrap(sm_exec_builder *b, PyObject *owner)
{
    BuilderObject *o = PyObject_New(BuilderObject, &BuilderType);
    if (!o) {
        sm_exec_builder_free(b);
        return NULL;
    }
    o->b = b;
    Py_XINCREF(owner);
    o->owner = owner;
    return (PyObject *)o;
}

static PyObject *Builder_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"socket_path", NULL};
    PyObject *path = NULL;
    (void)type;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&:ExecBuilder", kwlist, path_converter, &path))
        return NULL;
    sm_exec_builder *b = sm_exec_builder_new(PyBytes_AS_STRING(path));
    Py_DECREF(path);
    if (!b)
        return raise_msg(SM_E_INVALID, "cannot make an exec builder (bad socket path, or no memory)");
    return builder_wrap(b, NULL);
}

#define RETURN_SELF_OR_RAISE(rc)                                                                   \
    do {                                                                                           \
        if ((rc) != SM_OK)                                                                         \
            return raise_msg((rc), "the exec builder refused the value");                          \
        Py_INCREF(self);                                                                           \
        return (PyObject *)self;                                                                   \
    } while (0)

static PyObject *Builder_argv(BuilderObject *self, PyObject *seq)
{
    const char **v;
    PyObject *keep;
    int n = argv_from_seq(seq, &v, &keep);
    if (n < 0)
        return NULL;
    sm_code rc = sm_exec_builder_argv(self->b, n, v);
    free(v);
    Py_DECREF(keep);
    RETURN_SELF_OR_RAISE(rc);
}

static PyObject *Builder_chain(BuilderObject *self, PyObject *seq)
{
    const char **v;
    PyObject *keep;
    int n = argv_from_seq(seq, &v, &keep);
    if (n < 0)
        return NULL;
    sm_code rc = sm_exec_builder_chain(self->b, n, v);
    free(v);
    Py_DECREF(keep);
    RETURN_SELF_OR_RAISE(rc);
}

static PyObject *Builder_env(BuilderObject *self, PyObject *args)
{
    const char *k, *v;
    if (!PyArg_ParseTuple(args, "ss:env", &k, &v))
        return NULL;
    if (!k[0] || strchr(k, '=')) {
        PyErr_SetString(PyExc_ValueError, "an environment variable's name must be non-empty and hold no '='");
        return NULL;
    }
    RETURN_SELF_OR_RAISE(sm_exec_builder_env(self->b, k, v));
}

static PyObject *Builder_cwd(BuilderObject *self, PyObject *args)
{
    const char *d;
    if (!PyArg_ParseTuple(args, "s:cwd", &d))
        return NULL;
    RETURN_SELF_OR_RAISE(sm_exec_builder_cwd(self->b, d));
}

static PyObject *Builder_user(BuilderObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"uid", "gid", "groups", NULL};
    PyObject *uid_o, *gid_o, *groups_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O:user", kwlist, &uid_o, &gid_o, &groups_o))
        return NULL;
    uint32_t uid, gid;
    if (u32_arg(uid_o, &uid, "uid") < 0 || u32_arg(gid_o, &gid, "gid") < 0)
        return NULL;
    uint32_t groups[256];
    size_t n = 0;
    if (groups_o != Py_None) {
        PyObject *seq = PySequence_Fast(groups_o, "groups must be a sequence of int");
        if (!seq)
            return NULL;
        Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
        if (len > 256) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "at most 256 supplementary groups");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < len; i++) {
            if (u32_arg(PySequence_Fast_GET_ITEM(seq, i), &groups[n], "a group") < 0) {
                Py_DECREF(seq);
                return NULL;
            }
            n++;
        }
        Py_DECREF(seq);
    }
    RETURN_SELF_OR_RAISE(sm_exec_builder_user(self->b, uid, gid, n, groups));
}

/* A limit: a non-negative int below 2**64, or None / -1 (Python's
 * resource.RLIM_INFINITY) for unlimited. */
static int rlim_arg(PyObject *o, uint64_t *out, const char *what)
{
    if (o == Py_None) {
        *out = UINT64_MAX;
        return 0;
    }
    if (!PyLong_Check(o) || PyBool_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or None, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    if (v == -1 && !overflow) {
        *out = UINT64_MAX;
        return 0;
    }
    if (overflow < 0 || (!overflow && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must not be negative (None or -1 is unlimited)", what);
        return -1;
    }
    unsigned long long u = PyLong_AsUnsignedLongLong(o);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is too large (at most 2**64 - 1)", what);
        return -1;
    }
    *out = u;
    return 0;
}

static PyObject *Builder_rlimit(BuilderObject *self, PyObject *args)
{
    int resource;
    PyObject *soft_o, *hard_o;
    if (!PyArg_ParseTuple(args, "iOO:rlimit", &resource, &soft_o, &hard_o))
        return NULL;
    uint64_t soft, hard;
    if (rlim_arg(soft_o, &soft, "soft") < 0 || rlim_arg(hard_o, &hard, "hard") < 0)
        return NULL;
    if (resource < 0 || resource > 15) {
        PyErr_SetString(PyExc_ValueError, "resource must be an RLIMIT_* (0..15)");
        return NULL;
    }
    if (soft > hard) {
        PyErr_SetString(PyExc_ValueError, "the soft limit is above the hard limit");
        return NULL;
    }
    RETURN_SELF_OR_RAISE(sm_exec_builder_rlimit(self->b, resource, soft, hard));
}

static PyObject *Builder_hostname(BuilderObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:hostname", &name))
        return NULL;
    if (sm_exec_builder_hostname(self->b, name) != SM_OK) {
        PyErr_SetString(PyExc_ValueError, "hostname must be 1..64 bytes of letters, digits, '.' and '-'");
        return NULL;
    }
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Builder_clear_env(BuilderObject *self, PyObject *args)
{
    int on = 1;
    if (!PyArg_ParseTuple(args, "|p:clear_env", &on))
        return NULL;
    RETURN_SELF_OR_RAISE(sm_exec_builder_clear_env(self->b, on != 0));
}

static PyObject *Builder_tty(BuilderObject *self, PyObject *args)
{
    int on = 1;
    if (!PyArg_ParseTuple(args, "|p:tty", &on))
        return NULL;
    RETURN_SELF_OR_RAISE(sm_exec_builder_tty(self->b, on != 0));
}

static PyObject *Builder_winsize(BuilderObject *self, PyObject *args)
{
    int cols, rows;
    if (!PyArg_ParseTuple(args, "ii:winsize", &cols, &rows))
        return NULL;
    if (cols < 0 || cols > 65535 || rows < 0 || rows > 65535) {
        PyErr_SetString(PyExc_ValueError, "cols and rows must be between 0 and 65535");
        return NULL;
    }
    RETURN_SELF_OR_RAISE(sm_exec_builder_winsize(self->b, (uint16_t)cols, (uint16_t)rows));
}

static PyObject *Builder_timeout(BuilderObject *self, PyObject *arg)
{
    uint32_t ms = 0;
    if (arg != Py_None && seconds_to_ms(arg, &ms, "timeout") < 0)
        return NULL;
    RETURN_SELF_OR_RAISE(sm_exec_builder_timeout_ms(self->b, ms));
}

static PyObject *Builder_agent_timeout(BuilderObject *self, PyObject *arg)
{
    uint32_t ms = 0;
    if (arg != Py_None && seconds_to_ms(arg, &ms, "agent_timeout") < 0)
        return NULL;
    RETURN_SELF_OR_RAISE(sm_exec_builder_agent_timeout_ms(self->b, ms));
}

static PyObject *Builder_max_output(BuilderObject *self, PyObject *arg)
{
    size_t n;
    if (arg == Py_None) {
        n = SIZE_MAX;
    } else {
        if (!PyLong_Check(arg)) {
            PyErr_SetString(PyExc_TypeError, "max_output must be an int or None");
            return NULL;
        }
        n = PyLong_AsSize_t(arg);
        if (n == (size_t)-1 && PyErr_Occurred()) {
            if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_ValueError, "max_output must be a non-negative int");
            }
            return NULL;
        }
    }
    RETURN_SELF_OR_RAISE(sm_exec_builder_max_output(self->b, n));
}

static PyObject *Builder_stage_file(BuilderObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "data", "mode", NULL};
    const char *path;
    Py_buffer buf;
    PyObject *mode_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sy*|O:stage_file", kwlist, &path, &buf, &mode_o))
        return NULL;
    sm_code rc;
    if (mode_o == Py_None) {
        rc = sm_exec_builder_stage_file(self->b, path, buf.buf, (size_t)buf.len);
    } else {
        uint32_t mode;
        if (u32_arg(mode_o, &mode, "mode") < 0 || mode > 07777) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "mode must be between 0 and 0o7777");
            PyBuffer_Release(&buf);
            return NULL;
        }
        rc = sm_exec_builder_stage_file_mode(self->b, path, buf.buf, (size_t)buf.len, mode);
    }
    PyBuffer_Release(&buf);
    RETURN_SELF_OR_RAISE(rc);
}

static PyObject *Builder_copy(BuilderObject *self, PyObject *unused)
{
    (void)unused;
    sm_exec_builder *c = sm_exec_builder_copy(self->b);
    if (!c)
        return PyErr_NoMemory();
    return builder_wrap(c, self->owner);
}

/* Raises the error of a failed output, with what arrived as .stdout/.stderr
 * and .status on the exception. */
static PyObject *raise_output(sm_code rc, const sm_error *err, sm_exec_outcome *out)
{
    raise_sm(rc, err);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value) {
        PyObject *so = PyBytes_FromStringAndSize((const char *)out->stdout_buf, (Py_ssize_t)out->stdout_len);
        PyObject *se = PyBytes_FromStringAndSize((const char *)out->stderr_buf, (Py_ssize_t)out->stderr_len);
        if (so && se) {
            PyObject_SetAttrString(value, "stdout", so);
            PyObject_SetAttrString(value, "stderr", se);
        }
        Py_XDECREF(so);
        Py_XDECREF(se);
        if (PyErr_Occurred())
            PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
    sm_exec_outcome_free(out);
    return NULL;
}

static PyObject *outcome_tuple(sm_exec_outcome *out)
{
    PyObject *st = status_tuple(&out->status);
    PyObject *r = NULL;
    if (st)
        r = Py_BuildValue("(Ny#y#)", st, (const char *)out->stdout_buf, (Py_ssize_t)out->stdout_len,
                          (const char *)out->stderr_buf, (Py_ssize_t)out->stderr_len);
    sm_exec_outcome_free(out);
    return r;
}

/* output() on a helper thread, so that the calling (main) thread can see a
 * signal (KeyboardInterrupt) while it waits and cancel the command. */
struct output_job {
    const sm_exec_builder *b;
    sm_cancel *cancel;
    sm_exec_outcome out;
    sm_error err;
    sm_code rc;
    bool done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *output_thread(void *arg)
{
    struct output_job *j = arg;
    sm_code rc = sm_exec_output_with_cancel(j->b, j->cancel, &j->out, &j->err);
    pthread_mutex_lock(&j->mu);
    j->rc = rc;
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* _output(cancel=None): cancel, when given, is polled (its is_set()) every
 * 100 ms; once true the command is killed and CancelledError raised. */
static PyObject *Builder_output(BuilderObject *self, PyObject *args)
{
    PyObject *cancel_obj = Py_None;
    if (!PyArg_ParseTuple(args, "|O:output", &cancel_obj))
        return NULL;
    if (cancel_obj != Py_None && !PyObject_HasAttrString(cancel_obj, "is_set")) {
        PyErr_SetString(PyExc_TypeError, "cancel must have an is_set() method (a threading.Event)");
        return NULL;
    }
    struct output_job j;
    memset(&j, 0, sizeof j);
    /* A private copy: another thread may change this builder meanwhile. */
    sm_exec_builder *copy = sm_exec_builder_copy(self->b);
    if (!copy)
        return PyErr_NoMemory();
    j.b = copy;
    j.cancel = sm_cancel_new();
    if (!j.cancel) {
        sm_exec_builder_free(copy);
        return PyErr_NoMemory();
    }
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, output_thread, &j) != 0) {
        pthread_mutex_destroy(&j.mu);
        pthread_cond_destroy(&j.cv);
        sm_cancel_free(j.cancel);
        sm_exec_builder_free(copy);
        return raise_msg(SM_E_IO, "cannot start a thread for the command");
    }
    bool interrupted = false;
    for (;;) {
        bool done;
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&j.mu);
        if (!j.done)
            pthread_cond_timedwait(&j.cv, &j.mu, &ts);
        done = j.done;
        pthread_mutex_unlock(&j.mu);
        Py_END_ALLOW_THREADS
        if (done)
            break;
        if (!interrupted && PyErr_CheckSignals() < 0) {
            /* A handler raised (KeyboardInterrupt): kill the command, wait
             * for the helper, and let the exception through. */
            interrupted = true;
            sm_cancel_fire(j.cancel);
        }
        if (!interrupted && cancel_obj != Py_None && !sm_cancel_fired(j.cancel)) {
            PyObject *r = PyObject_CallMethod(cancel_obj, "is_set", NULL);
            int fire = r ? PyObject_IsTrue(r) : -1;
            Py_XDECREF(r);
            if (fire < 0) /* is_set raised: stop, and let that through */
                interrupted = true;
            if (fire != 0)
                sm_cancel_fire(j.cancel);
        }
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_join(th, NULL);
    Py_END_ALLOW_THREADS
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    sm_cancel_free(j.cancel);
    sm_exec_builder_free(copy);
    if (interrupted) {
        sm_exec_outcome_free(&j.out);
        return NULL; /* the handler's exception is set */
    }
    if (j.rc != SM_OK)
        return raise_output(j.rc, &j.err, &j.out);
    return outcome_tuple(&j.out);
}

static PyObject *Builder_output_resilient(BuilderObject *self, PyObject *args)
{
    int retries;
    if (!PyArg_ParseTuple(args, "i:output_resilient", &retries))
        return NULL;
    if (retries < 0 || retries > 255) {
        PyErr_SetString(PyExc_ValueError, "retries must be between 0 and 255");
        return NULL;
    }
    sm_exec_outcome out;
    sm_error err;
    sm_code rc;
    memset(&out, 0, sizeof out);
    sm_exec_builder *copy = sm_exec_builder_copy(self->b);
    if (!copy)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_output_resilient(copy, (unsigned)retries, &out, &err);
    sm_exec_builder_free(copy);
    Py_END_ALLOW_THREADS
    if (rc != SM_OK)
        return raise_output(rc, &err, &out);
    return outcome_tuple(&out);
}

/* ===== ExecChild ========================================================= */

typedef struct {
    PyObject_HEAD
    sm_exec_child *c;
    sm_exec_signaller *sig;
    PyObject *owner; /* the builder's owner (a Vm), kept alive */
    int busy;        /* calls in progress without the GIL */
} ChildObject;

static PyTypeObject ChildType;

static void Child_dealloc(ChildObject *self)
{
    if (self->c) {
        Py_BEGIN_ALLOW_THREADS
        sm_exec_child_free(self->c);
        Py_END_ALLOW_THREADS
    }
    sm_exec_signaller_free(self->sig);
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int child_ok(ChildObject *self)
{
    if (!self->c) {
        raise_msg(SM_E_INVALID, "the child is closed");
        return 0;
    }
    return 1;
}

static PyObject *Builder_spawn(BuilderObject *self, PyObject *unused)
{
    (void)unused;
    sm_exec_child *c = NULL;
    sm_error err;
    sm_code rc;
    sm_exec_builder *copy = sm_exec_builder_copy(self->b);
    if (!copy)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_spawn(copy, &c, &err);
    sm_exec_builder_free(copy);
    Py_END_ALLOW_THREADS
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    ChildObject *o = PyObject_New(ChildObject, &ChildType);
    if (!o) {
        sm_exec_child_free(c);
        return NULL;
    }
    o->c = c;
    o->sig = sm_exec_child_signaller(c);
    o->busy = 0;
    Py_XINCREF(self->owner);
    o->owner = self->owner;
    return (PyObject *)o;
}

static PyObject *Child_write(ChildObject *self, PyObject *args)
{
    Py_buffer buf;
    if (!child_ok(self) || !PyArg_ParseTuple(args, "y*:write", &buf))
        return NULL;
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_child_stdin_write(self->c, buf.buf, (size_t)buf.len, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    Py_ssize_t n = buf.len;
    PyBuffer_Release(&buf);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return PyLong_FromSsize_t(n);
}

static PyObject *Child_close_stdin(ChildObject *self, PyObject *unused)
{
    (void)unused;
    if (!child_ok(self))
        return NULL;
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_child_stdin_close(self->c, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *child_read(ChildObject *self, PyObject *args, int which)
{
    Py_ssize_t n = 65536;
    if (!child_ok(self) || !PyArg_ParseTuple(args, "|n:read", &n))
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "read size must be positive");
        return NULL;
    }
    if (n > (1 << 24))
        n = 1 << 24;
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (!b)
        return NULL;
    size_t got = 0;
    sm_error err;
    sm_code rc;
    char *p = PyBytes_AS_STRING(b);
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    if (which == 1)
        rc = sm_exec_child_stdout_read(self->c, p, (size_t)n, &got, &err);
    else
        rc = sm_exec_child_stderr_read(self->c, p, (size_t)n, &got, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK) {
        Py_DECREF(b);
        return raise_sm(rc, &err);
    }
    if ((Py_ssize_t)got != n && _PyBytes_Resize(&b, (Py_ssize_t)got) < 0)
        return NULL;
    return b;
}

static PyObject *Child_read_stdout(ChildObject *self, PyObject *args) { return child_read(self, args, 1); }
static PyObject *Child_read_stderr(ChildObject *self, PyObject *args) { return child_read(self, args, 2); }

static PyObject *Child_fds(ChildObject *self, PyObject *unused)
{
    (void)unused;
    if (!child_ok(self))
        return NULL;
    return Py_BuildValue("(ii)", sm_exec_child_stdout_fd(self->c), sm_exec_child_stderr_fd(self->c));
}

static PyObject *Child_signal(ChildObject *self, PyObject *args)
{
    int signo;
    if (!PyArg_ParseTuple(args, "i:signal", &signo))
        return NULL;
    if (signo <= 0 || signo > 64) {
        PyErr_SetString(PyExc_ValueError, "a signal number is between 1 and 64");
        return NULL;
    }
    if (!self->sig)
        return raise_msg(SM_E_INVALID, "the child cannot be signalled");
    sm_error err;
    sm_code rc;
    /* The signaller is safe from any thread, even while another call on the
     * child (a read, a wait) is in progress. */
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_signaller_signal(self->sig, signo, &err);
    Py_END_ALLOW_THREADS
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *Child_resize(ChildObject *self, PyObject *args)
{
    int cols, rows;
    if (!child_ok(self) || !PyArg_ParseTuple(args, "ii:resize", &cols, &rows))
        return NULL;
    if (cols < 0 || cols > 65535 || rows < 0 || rows > 65535) {
        PyErr_SetString(PyExc_ValueError, "cols and rows must be between 0 and 65535");
        return NULL;
    }
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_child_resize(self->c, (uint16_t)cols, (uint16_t)rows, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *Child_wait(ChildObject *self, PyObject *unused)
{
    (void)unused;
    if (!child_ok(self))
        return NULL;
    sm_exec_status st;
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_child_wait(self->c, &st, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return status_tuple(&st);
}

static PyObject *Child_close(ChildObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->c)
        Py_RETURN_NONE;
    if (self->busy)
        return raise_msg(SM_E_INVALID, "the child is in use by another thread");
    sm_exec_child *c = self->c;
    self->c = NULL;
    Py_BEGIN_ALLOW_THREADS
    sm_exec_child_free(c);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef Child_methods[] = {
    {"write", (PyCFunction)Child_write, METH_VARARGS, "write(data) -> int: send bytes to stdin, blocking until all are sent."},
    {"close_stdin", (PyCFunction)Child_close_stdin, METH_NOARGS, "Close the command's stdin (EOF)."},
    {"read_stdout", (PyCFunction)Child_read_stdout, METH_VARARGS, "read_stdout(n=65536) -> bytes: blocks; b'' is the clean end."},
    {"read_stderr", (PyCFunction)Child_read_stderr, METH_VARARGS, "read_stderr(n=65536) -> bytes: blocks; b'' is the clean end."},
    {"fds", (PyCFunction)Child_fds, METH_NOARGS, "(stdout_fd, stderr_fd): poll them for readability; do not close or read them."},
    {"signal", (PyCFunction)Child_signal, METH_VARARGS, "signal(signo): send a signal to the command's process group (any thread)."},
    {"resize", (PyCFunction)Child_resize, METH_VARARGS, "resize(cols, rows): the tty's new size."},
    {"wait", (PyCFunction)Child_wait, METH_NOARGS, "Close stdin, wait for the exit report; returns a status tuple."},
    {"close", (PyCFunction)Child_close, METH_NOARGS, "Abort the command if not waited for, and free the handle."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ChildType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supermachine._supermachine.ExecChild",
    .tp_basicsize = sizeof(ChildObject),
    .tp_dealloc = (destructor)Child_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A running command (from ExecBuilder.spawn).",
    .tp_methods = Child_methods,
};

static PyMethodDef Builder_methods[] = {
    {"argv", (PyCFunction)Builder_argv, METH_O, "argv(list_of_str): the program and its arguments; returns self."},
    {"env", (PyCFunction)Builder_env, METH_VARARGS, "env(key, value): add one environment variable; returns self."},
    {"cwd", (PyCFunction)Builder_cwd, METH_VARARGS, "cwd(guest_dir): working directory; returns self."},
    {"user", (PyCFunction)(void (*)(void))Builder_user, METH_VARARGS | METH_KEYWORDS,
     "user(uid, gid, groups=None): run as uid:gid with exactly these supplementary groups; returns self."},
    {"rlimit", (PyCFunction)Builder_rlimit, METH_VARARGS,
     "rlimit(resource, soft, hard): a setrlimit limit for every command (None or -1: unlimited); returns self."},
    {"hostname", (PyCFunction)Builder_hostname, METH_VARARGS,
     "hostname(name): the guest's hostname, set before the command starts; returns self."},
    {"clear_env", (PyCFunction)Builder_clear_env, METH_VARARGS, "clear_env(on=True): the environment is only env()'s; returns self."},
    {"tty", (PyCFunction)Builder_tty, METH_VARARGS, "tty(on=True): run on a pseudo-terminal (stderr merged); returns self."},
    {"winsize", (PyCFunction)Builder_winsize, METH_VARARGS, "winsize(cols, rows): initial tty size; returns self."},
    {"timeout", (PyCFunction)Builder_timeout, METH_O, "timeout(seconds or None): wall-clock limit; returns self."},
    {"agent_timeout", (PyCFunction)Builder_agent_timeout, METH_O, "agent_timeout(seconds or None): how long to wait for an unresponsive agent; returns self."},
    {"max_output", (PyCFunction)Builder_max_output, METH_O, "max_output(bytes or None): the output cap of output(); returns self."},
    {"stage_file", (PyCFunction)(void (*)(void))Builder_stage_file, METH_VARARGS | METH_KEYWORDS,
     "stage_file(path, data, mode=None): write a file before the command runs; returns self."},
    {"chain", (PyCFunction)Builder_chain, METH_O, "chain(list_of_str): run after the previous command exits 0; returns self."},
    {"copy", (PyCFunction)Builder_copy, METH_NOARGS, "A copy of this builder."},
    {"_output", (PyCFunction)Builder_output, METH_VARARGS, "_output(cancel=None): run and collect, a raw tuple (see output())."},
    {"_output_resilient", (PyCFunction)Builder_output_resilient, METH_VARARGS, "output_resilient, raw tuple."},
    {"_spawn", (PyCFunction)Builder_spawn, METH_NOARGS, "Start the command: a raw ExecChild."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject BuilderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supermachine._supermachine.ExecBuilder",
    .tp_basicsize = sizeof(BuilderObject),
    .tp_dealloc = (destructor)Builder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ExecBuilder(socket_path): a command for the agent listening on an exec socket.",
    .tp_methods = Builder_methods,
    .tp_new = Builder_new,
};

/* ===== files on an exec socket ========================================== */

static PyObject *mod_write_file(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"socket_path", "path", "data", "mode", NULL};
    PyObject *sock = NULL;
    const char *path;
    Py_buffer buf;
    PyObject *mode_o = NULL;
    uint32_t mode = 0644;
    (void)m;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&sy*|O:write_file", kwlist, path_converter, &sock, &path, &buf,
                                     &mode_o))
        return NULL;
    if (mode_o && (u32_arg(mode_o, &mode, "mode") < 0 || mode > 07777)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "mode must be between 0 and 0o7777");
        Py_DECREF(sock);
        PyBuffer_Release(&buf);
        return NULL;
    }
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_write_file(PyBytes_AS_STRING(sock), path, buf.buf, (size_t)buf.len, mode, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(sock);
    PyBuffer_Release(&buf);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *mod_read_file(PyObject *m, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"socket_path", "path", "max_len", NULL};
    PyObject *sock = NULL;
    const char *path;
    Py_ssize_t max_len = (Py_ssize_t)SM_VM_FILE_MAX;
    (void)m;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&s|n:read_file", kwlist, path_converter, &sock, &path, &max_len))
        return NULL;
    if (max_len < 0) {
        Py_DECREF(sock);
        PyErr_SetString(PyExc_ValueError, "max_len must not be negative");
        return NULL;
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_exec_read_file(PyBytes_AS_STRING(sock), path, (size_t)max_len, &bytes, &len, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(sock);
    if (rc != SM_OK) {
        free(bytes);
        return raise_sm(rc, &err);
    }
    PyObject *r = PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)len);
    free(bytes);
    return r;
}

/* ===== Image ============================================================= */

typedef struct {
    PyObject_HEAD
    sm_image *img;
} ImageObject;

static PyTypeObject ImageType;

static void Image_dealloc(ImageObject *self)
{
    sm_image_free(self->img);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *image_wrap(PyTypeObject *type, sm_image *img)
{
    ImageObject *o = (ImageObject *)type->tp_alloc(type, 0);
    if (!o) {
        sm_image_free(img);
        return NULL;
    }
    o->img = img;
    return (PyObject *)o;
}

static PyObject *Image_from_snapshot(PyObject *cls, PyObject *args)
{
    PyObject *path = NULL;
    if (!PyArg_ParseTuple(args, "O&:from_snapshot", path_converter, &path))
        return NULL;
    sm_image *img = NULL;
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_image_from_snapshot(PyBytes_AS_STRING(path), &img, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return image_wrap((PyTypeObject *)cls, img);
}

static PyObject *Image_named(PyObject *cls, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:named", &name))
        return NULL;
    sm_image *img = NULL;
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_image_open(NULL, name, &img, &err);
    Py_END_ALLOW_THREADS
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return image_wrap((PyTypeObject *)cls, img);
}

/* Builds a VM config from keyword values; NULL with an exception. */
static sm_vm_config *vm_config_from(PyObject *memory_mib, PyObject *cpus, PyObject *boot_timeout, int net)
{
    sm_vm_config *cfg = sm_vm_config_new();
    uint32_t v;
    if (!cfg) {
        PyErr_NoMemory();
        return NULL;
    }
    if (memory_mib && memory_mib != Py_None) {
        if (u32_arg(memory_mib, &v, "memory_mib") < 0)
            goto fail;
        if (sm_vm_config_memory_mib(cfg, v) != SM_OK) {
            raise_msg(SM_E_INVALID, "memory_mib must be between 64 and 65536");
            goto fail;
        }
    }
    if (cpus && cpus != Py_None) {
        if (u32_arg(cpus, &v, "cpus") < 0)
            goto fail;
        if (sm_vm_config_cpus(cfg, v) != SM_OK) {
            raise_msg(SM_E_INVALID, "cpus must be between 1 and 32");
            goto fail;
        }
    }
    if (boot_timeout && boot_timeout != Py_None) {
        if (u32_arg(boot_timeout, &v, "boot_timeout") < 0)
            goto fail;
        if (sm_vm_config_boot_timeout_s(cfg, v) != SM_OK) {
            raise_msg(SM_E_INVALID, "boot_timeout must be between 1 and 3600 seconds");
            goto fail;
        }
    }
    if (net >= 0 && sm_vm_config_net(cfg, net != 0) != SM_OK) {
        raise_msg(SM_E_INVALID, "the network setting was refused");
        goto fail;
    }
    return cfg;
fail:
    sm_vm_config_free(cfg);
    return NULL;
}

static PyObject *Image_from_oci(PyObject *cls, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"ref", "username", "password", "ca_file", "plain_http", "refresh", "memory_mib", "cpus", NULL};
    const char *ref, *user = NULL, *pass = NULL;
    PyObject *ca = Py_None, *mem = Py_None, *cpus = Py_None;
    int plain = 0, refresh = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|zzOppOO:from_oci", kwlist, &ref, &user, &pass, &ca, &plain,
                                     &refresh, &mem, &cpus))
        return NULL;
    if ((user == NULL) != (pass == NULL)) {
        PyErr_SetString(PyExc_ValueError, "give both username and password, or neither");
        return NULL;
    }
    PyObject *ca_b = NULL;
    if (ca != Py_None && !PyUnicode_FSConverter(ca, &ca_b))
        return NULL;
    sm_pull_options *o = sm_pull_options_new();
    sm_vm_config *cfg = NULL;
    if (!o) {
        Py_XDECREF(ca_b);
        return PyErr_NoMemory();
    }
    sm_code rc = sm_pull_options_plain_http(o, plain != 0);
    if (rc == SM_OK)
        rc = sm_pull_options_refresh(o, refresh != 0);
    if (rc == SM_OK && ca_b)
        rc = sm_pull_options_ca_file(o, PyBytes_AS_STRING(ca_b));
    if (rc == SM_OK && user)
        rc = sm_pull_options_credentials(o, user, pass);
    Py_XDECREF(ca_b);
    if (rc != SM_OK) {
        sm_pull_options_free(o);
        return raise_msg(rc, "the pull options were refused");
    }
    if (mem != Py_None || cpus != Py_None) {
        cfg = vm_config_from(mem, cpus, NULL, -1);
        if (!cfg) {
            sm_pull_options_free(o);
            return NULL;
        }
    }
    sm_image *img = NULL;
    sm_error err;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_image_from_oci(NULL, ref, o, cfg, &img, &err);
    Py_END_ALLOW_THREADS
    sm_pull_options_free(o);
    sm_vm_config_free(cfg);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return image_wrap((PyTypeObject *)cls, img);
}

static PyObject *Image_bake(PyObject *cls, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "memory_mib", "cpus", NULL};
    const char *name;
    PyObject *mem = Py_None, *cpus = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|OO:bake", kwlist, &name, &mem, &cpus))
        return NULL;
    sm_vm_config *cfg = vm_config_from(mem, cpus, NULL, -1);
    if (!cfg)
        return NULL;
    sm_image *img = NULL;
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_image_bake(NULL, name, cfg, &img, &err);
    Py_END_ALLOW_THREADS
    sm_vm_config_free(cfg);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return image_wrap((PyTypeObject *)cls, img);
}

static PyObject *Image_dir(ImageObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_DecodeFSDefault(sm_image_dir(self->img));
}

static PyObject *Image_default_argv(ImageObject *self, PyObject *unused)
{
    (void)unused;
    char **argv = NULL;
    sm_error err;
    sm_code rc = sm_image_default_argv(self->img, &argv, &err);
    if (rc == SM_E_NOTFOUND)
        Py_RETURN_NONE;
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    PyObject *l = PyList_New(0);
    for (char **p = argv; l && *p; p++) {
        PyObject *s = PyUnicode_FromString(*p);
        if (!s || PyList_Append(l, s) < 0)
            Py_CLEAR(l);
        Py_XDECREF(s);
    }
    sm_argv_free(argv);
    return l;
}

/* ===== Vm ================================================================ */

typedef struct PoolObject PoolObject;

typedef struct {
    PyObject_HEAD
    sm_vm *vm;
    PyObject *image;   /* kept alive */
    PoolObject *pool;  /* when acquired from a pool */
    PyObject *sock;    /* the exec socket path, str */
    PyObject *id;      /* str */
    int busy;
} VmObject;

struct PoolObject {
    PyObject_HEAD
    sm_pool *pool;
    PyObject *image;
    int busy;
};

static PyTypeObject VmType;
static PyTypeObject PoolType;

static PyObject *vm_wrap(sm_vm *vm, PyObject *image, PoolObject *pool)
{
    VmObject *o = PyObject_New(VmObject, &VmType);
    if (!o)
        return NULL;
    o->vm = vm;
    o->busy = 0;
    Py_XINCREF(image);
    o->image = image;
    Py_XINCREF(pool);
    o->pool = pool;
    o->sock = PyUnicode_DecodeFSDefault(sm_vm_exec_socket_path(vm));
    o->id = PyUnicode_FromString(sm_vm_id(vm));
    if (!o->sock || !o->id) {
        o->vm = NULL; /* the caller frees vm */
        Py_DECREF(o);
        return NULL;
    }
    return (PyObject *)o;
}

/* Gives the VM's handle back: to its pool, or stopped and freed. */
static void vm_dispose(VmObject *self)
{
    sm_vm *vm = self->vm;
    self->vm = NULL;
    if (!vm)
        return;
    if (self->pool && self->pool->pool) {
        sm_pool *p = self->pool->pool;
        Py_BEGIN_ALLOW_THREADS
        sm_pool_release(p, vm);
        Py_END_ALLOW_THREADS
    } else {
        Py_BEGIN_ALLOW_THREADS
        sm_vm_free(vm);
        Py_END_ALLOW_THREADS
    }
}

static void Vm_dealloc(VmObject *self)
{
    vm_dispose(self);
    Py_XDECREF(self->image);
    Py_XDECREF((PyObject *)self->pool);
    Py_XDECREF(self->sock);
    Py_XDECREF(self->id);
    PyObject_Free(self);
}

static int vm_ok(VmObject *self)
{
    if (!self->vm) {
        raise_msg(SM_E_INVALID, "the VM is stopped (or was given back to its pool)");
        return 0;
    }
    return 1;
}

/* volumes: an iterable of (source, guest_path) or (source, guest_path,
 * read_only); volume_size: bytes of a named volume made on first use. */
static int config_volumes(sm_vm_config *cfg, PyObject *volumes, PyObject *size)
{
    if (size != Py_None) {
        unsigned long long bytes = PyLong_AsUnsignedLongLong(size);
        if (PyErr_Occurred())
            return 0;
        if (sm_vm_config_volume_size(cfg, bytes) != SM_OK) {
            raise_msg(SM_E_INVALID, "volume_size must be 16 MiB to 16 TiB, in bytes");
            return 0;
        }
    }
    if (volumes == Py_None)
        return 1;
    PyObject *it = PyObject_GetIter(volumes);
    if (!it)
        return 0;
    int ok = 1;
    for (PyObject *item; ok && (item = PyIter_Next(it));) {
        const char *source, *path;
        int ro = 0;
        sm_error err;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "ss|p:volumes", &source, &path, &ro)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "volumes: each is a tuple (source, guest_path[, read_only])");
            ok = 0;
        } else {
            sm_code rc = sm_vm_config_volume(cfg, source, path, ro, &err);
            if (rc != SM_OK) {
                raise_sm(rc, &err);
                ok = 0;
            }
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    return ok && !PyErr_Occurred();
}

static PyObject *Image_start(ImageObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"memory_mib", "cpus", "boot_timeout", "net", "volumes", "volume_size", NULL};
    PyObject *mem = Py_None, *cpus = Py_None, *bt = Py_None, *net_o = Py_None, *vols = Py_None, *vsize = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOOOOO:start", kwlist, &mem, &cpus, &bt, &net_o, &vols, &vsize))
        return NULL;
    int net = -1;
    if (net_o != Py_None && (net = PyObject_IsTrue(net_o)) < 0)
        return NULL;
    sm_vm_config *cfg = vm_config_from(mem, cpus, bt, net);
    if (!cfg)
        return NULL;
    if (!config_volumes(cfg, vols, vsize)) {
        sm_vm_config_free(cfg);
        return NULL;
    }
    /* An image's VMs get its memory and vCPUs; sizes given here are the
     * most it may ask for. */
    if (mem != Py_None || cpus != Py_None) {
        uint32_t m = 0, c = 0;
        if (mem != Py_None)
            u32_arg(mem, &m, "memory_mib");
        if (cpus != Py_None)
            u32_arg(cpus, &c, "cpus");
        sm_vm_config_restore_limits(cfg, m, c);
    }
    sm_vm_config_image(cfg, self->img);
    sm_vm *vm = NULL;
    sm_error err;
    sm_code rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_vm_start(cfg, &vm, &err);
    Py_END_ALLOW_THREADS
    sm_vm_config_free(cfg);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    PyObject *o = vm_wrap(vm, (PyObject *)self, NULL);
    if (!o) {
        Py_BEGIN_ALLOW_THREADS
        sm_vm_free(vm);
        Py_END_ALLOW_THREADS
    }
    return o;
}

static PyObject *Vm_exec_builder(VmObject *self, PyObject *unused)
{
    (void)unused;
    if (!vm_ok(self))
        return NULL;
    sm_exec_builder *b = sm_vm_exec_builder(self->vm);
    if (!b)
        return PyErr_NoMemory();
    return builder_wrap(b, (PyObject *)self);
}

static PyObject *Vm_write_file(VmObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "data", "mode", NULL};
    const char *path;
    Py_buffer buf;
    PyObject *mode_o = NULL;
    uint32_t mode = 0644;
    if (!vm_ok(self) || !PyArg_ParseTupleAndKeywords(args, kw, "sy*|O:write_file", kwlist, &path, &buf, &mode_o))
        return NULL;
    if (mode_o && (u32_arg(mode_o, &mode, "mode") < 0 || mode > 07777)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "mode must be between 0 and 0o7777");
        PyBuffer_Release(&buf);
        return NULL;
    }
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_vm_write_file(self->vm, path, buf.buf, (size_t)buf.len, mode, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    PyBuffer_Release(&buf);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *Vm_read_file(VmObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "max_len", NULL};
    const char *path;
    Py_ssize_t max_len = 0;
    if (!vm_ok(self) || !PyArg_ParseTupleAndKeywords(args, kw, "s|n:read_file", kwlist, &path, &max_len))
        return NULL;
    if (max_len < 0) {
        PyErr_SetString(PyExc_ValueError, "max_len must not be negative");
        return NULL;
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_vm_read_file(self->vm, path, (size_t)max_len, &bytes, &len, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK) {
        free(bytes);
        return raise_sm(rc, &err);
    }
    PyObject *r = PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)len);
    free(bytes);
    return r;
}

static PyObject *Vm_snapshot(VmObject *self, PyObject *args)
{
    PyObject *path = NULL;
    if (!vm_ok(self) || !PyArg_ParseTuple(args, "O&:snapshot", path_converter, &path))
        return NULL;
    sm_error err;
    sm_code rc;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_vm_snapshot(self->vm, PyBytes_AS_STRING(path), &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    Py_DECREF(path);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *Vm_running(VmObject *self, void *closure)
{
    (void)closure;
    if (!self->vm)
        Py_RETURN_FALSE;
    return PyBool_FromLong(sm_vm_running(self->vm));
}

static PyObject *Vm_pid(VmObject *self, void *closure)
{
    (void)closure;
    if (!vm_ok(self))
        return NULL;
    sm_vm_info info;
    sm_error err;
    sm_code rc = sm_vm_get_info(self->vm, &info, &err);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    return PyLong_FromLong(info.pid);
}

static PyObject *Vm_state_dir(VmObject *self, void *closure)
{
    (void)closure;
    if (!vm_ok(self))
        return NULL;
    return PyUnicode_DecodeFSDefault(sm_vm_state_dir(self->vm));
}

static PyObject *Vm_stop(VmObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->vm)
        Py_RETURN_NONE; /* again: harmless */
    if (self->busy)
        return raise_msg(SM_E_INVALID, "the VM is in use by another thread (a file or snapshot call)");
    if (self->pool) {
        vm_dispose(self); /* back to the pool */
        Py_RETURN_NONE;
    }
    sm_error err;
    sm_code rc;
    sm_vm *vm = self->vm;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_vm_stop(vm, &err);
    Py_END_ALLOW_THREADS
    vm_dispose(self);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    Py_RETURN_NONE;
}

static PyMethodDef Vm_methods[] = {
    {"exec_builder", (PyCFunction)Vm_exec_builder, METH_NOARGS, "A new ExecBuilder for a command in this VM."},
    {"write_file", (PyCFunction)(void (*)(void))Vm_write_file, METH_VARARGS | METH_KEYWORDS,
     "write_file(path, data, mode=0o644): write a guest file atomically."},
    {"read_file", (PyCFunction)(void (*)(void))Vm_read_file, METH_VARARGS | METH_KEYWORDS,
     "read_file(path, max_len=0) -> bytes: read a guest file (0: up to 1 GiB)."},
    {"snapshot", (PyCFunction)Vm_snapshot, METH_VARARGS, "snapshot(dest_dir): snapshot the VM into a folder, an image for Image.from_snapshot."},
    {"stop", (PyCFunction)Vm_stop, METH_NOARGS, "Stop the VM (a pooled VM goes back to its pool). Harmless when repeated."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Vm_members[] = {
    {"id", T_OBJECT_EX, offsetof(VmObject, id), READONLY, "The VM's ID (8 hex digits)."},
    {"exec_socket_path", T_OBJECT_EX, offsetof(VmObject, sock), READONLY, "The VM's exec socket."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Vm_getset[] = {
    {"running", (getter)Vm_running, NULL, "Whether the VM's VMM is alive.", NULL},
    {"pid", (getter)Vm_pid, NULL, "The pid of the VM's VMM process (as the library started it).", NULL},
    {"state_dir", (getter)Vm_state_dir, NULL, "The VM's state folder.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject VmType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supermachine._supermachine.Vm",
    .tp_basicsize = sizeof(VmObject),
    .tp_dealloc = (destructor)Vm_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A running VM (from Image.start or Pool.acquire).",
    .tp_methods = Vm_methods,
    .tp_members = Vm_members,
    .tp_getset = Vm_getset,
};

/* ===== Pool ============================================================== */

static void Pool_dealloc(PoolObject *self)
{
    sm_pool *p = self->pool;
    self->pool = NULL;
    if (p) {
        Py_BEGIN_ALLOW_THREADS
        sm_pool_free(p);
        Py_END_ALLOW_THREADS
    }
    Py_XDECREF(self->image);
    PyObject_Free(self);
}

static PyObject *Image_pool(ImageObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"min", "max", "idle_timeout", "acquire_timeout", "restore_on_release", NULL};
    PyObject *min_o = Py_None, *max_o = Py_None, *idle_o = Py_None, *acq_o = Py_None;
    int restore = 1;
    uint32_t v;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOOOp:pool", kwlist, &min_o, &max_o, &idle_o, &acq_o, &restore))
        return NULL;
    sm_pool_config *pc = sm_pool_config_new();
    if (!pc)
        return PyErr_NoMemory();
    sm_code rc = SM_OK;
    const char *bad = NULL;
    if (min_o != Py_None) {
        if (u32_arg(min_o, &v, "min") < 0)
            goto fail;
        if ((rc = sm_pool_config_min(pc, v)) != SM_OK)
            bad = "min must be between 0 and 256";
    }
    if (!bad && max_o != Py_None) {
        if (u32_arg(max_o, &v, "max") < 0)
            goto fail;
        if ((rc = sm_pool_config_max(pc, v)) != SM_OK)
            bad = "max must be between 1 and 256";
    }
    if (!bad && idle_o != Py_None) {
        if (seconds_to_ms(idle_o, &v, "idle_timeout") < 0)
            goto fail;
        if ((rc = sm_pool_config_idle_timeout_ms(pc, v)) != SM_OK)
            bad = "idle_timeout was refused";
    }
    if (!bad && acq_o != Py_None) {
        if (seconds_to_ms(acq_o, &v, "acquire_timeout") < 0)
            goto fail;
        if ((rc = sm_pool_config_acquire_timeout_ms(pc, v)) != SM_OK)
            bad = "acquire_timeout must be at most 3600 seconds";
    }
    if (!bad && (rc = sm_pool_config_restore_on_release(pc, restore != 0)) != SM_OK)
        bad = "restore_on_release was refused";
    if (bad) {
        raise_msg(SM_E_INVALID, bad);
        goto fail;
    }
    sm_pool *pool = NULL;
    sm_error err;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_pool_new(self->img, pc, &pool, &err);
    Py_END_ALLOW_THREADS
    sm_pool_config_free(pc);
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    PoolObject *o = PyObject_New(PoolObject, &PoolType);
    if (!o) {
        sm_pool_free(pool);
        return NULL;
    }
    o->pool = pool;
    o->busy = 0;
    Py_INCREF(self);
    o->image = (PyObject *)self;
    return (PyObject *)o;
fail:
    sm_pool_config_free(pc);
    return NULL;
}

static int pool_ok(PoolObject *self)
{
    if (!self->pool) {
        raise_msg(SM_E_INVALID, "the pool is closed");
        return 0;
    }
    return 1;
}

static PyObject *Pool_acquire(PoolObject *self, PyObject *unused)
{
    (void)unused;
    if (!pool_ok(self))
        return NULL;
    sm_vm *vm = NULL;
    sm_error err;
    sm_code rc;
    sm_pool *p = self->pool;
    self->busy++;
    Py_BEGIN_ALLOW_THREADS
    rc = sm_pool_acquire(p, &vm, &err);
    Py_END_ALLOW_THREADS
    self->busy--;
    if (rc != SM_OK)
        return raise_sm(rc, &err);
    if (!self->pool) { /* closed meanwhile: cannot happen (close refuses while busy) */
        sm_vm_free(vm);
        return raise_msg(SM_E_CANCELLED, "the pool was closed");
    }
    PyObject *o = vm_wrap(vm, self->image, self);
    if (!o)
        sm_pool_release(self->pool, vm);
    return o;
}

static PyObject *Pool_stats(PoolObject *self, PyObject *unused)
{
    (void)unused;
    if (!pool_ok(self))
        return NULL;
    sm_pool_stats s;
    sm_code rc = sm_pool_stats_get(self->pool, &s);
    if (rc != SM_OK)
        return raise_msg(rc, "cannot read the pool's stats");
    return Py_BuildValue("{s:I,s:I,s:I,s:I,s:I,s:I,s:K,s:K,s:K,s:K,s:K}", "alive", s.alive, "idle", s.idle,
                         "in_use", s.in_use, "starting", s.starting, "min", s.min, "max", s.max, "restored",
                         (unsigned long long)s.restored, "acquire_waits", (unsigned long long)s.acquire_waits,
                         "acquire_timeouts", (unsigned long long)s.acquire_timeouts, "dead_discarded",
                         (unsigned long long)s.dead_discarded, "start_failures",
                         (unsigned long long)s.start_failures);
}

static PyObject *Pool_close(PoolObject *self, PyObject *unused)
{
    (void)unused;
    if (!self->pool)
        Py_RETURN_NONE;
    if (self->busy)
        return raise_msg(SM_E_INVALID, "the pool has acquires in progress in other threads");
    sm_pool *p = self->pool;
    self->pool = NULL; /* VMs still acquired become their Vm objects' to free */
    Py_BEGIN_ALLOW_THREADS
    sm_pool_free(p);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef Pool_methods[] = {
    {"_acquire", (PyCFunction)Pool_acquire, METH_NOARGS, "A VM from the pool (raw; see acquire())."},
    {"stats", (PyCFunction)Pool_stats, METH_NOARGS, "A dict of the pool's counts (sm_pool_stats)."},
    {"close", (PyCFunction)Pool_close, METH_NOARGS, "Stop the pool's idle VMs and threads. VMs still acquired end."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supermachine._supermachine.Pool",
    .tp_basicsize = sizeof(PoolObject),
    .tp_dealloc = (destructor)Pool_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A pool of ready VMs restored from one image (Image.pool).",
    .tp_methods = Pool_methods,
};

static PyMethodDef Image_methods[] = {
    {"from_snapshot", (PyCFunction)Image_from_snapshot, METH_VARARGS | METH_CLASS,
     "Image.from_snapshot(dir): an image from a snapshot folder."},
    {"named", (PyCFunction)Image_named, METH_VARARGS | METH_CLASS, "Image.named(name): a named image of the default store."},
    {"from_oci", (PyCFunction)(void (*)(void))Image_from_oci, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "Image.from_oci(ref, username=None, password=None, ca_file=None, plain_http=False, refresh=False, "
     "memory_mib=None, cpus=None): pull and bake an OCI image."},
    {"bake", (PyCFunction)(void (*)(void))Image_bake, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "Image.bake(name, memory_mib=None, cpus=None): boot the default guest, snapshot it, keep it as name."},
    {"_start", (PyCFunction)(void (*)(void))Image_start, METH_VARARGS | METH_KEYWORDS, "Start a VM (raw)."},
    {"pool", (PyCFunction)(void (*)(void))Image_pool, METH_VARARGS | METH_KEYWORDS,
     "pool(min=None, max=None, idle_timeout=None, acquire_timeout=None, restore_on_release=True): a Pool."},
    {"default_argv", (PyCFunction)Image_default_argv, METH_NOARGS, "An OCI image's default command, or None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Image_getset[] = {
    {"dir", (getter)Image_dir, NULL, "The image's folder.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ImageType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "supermachine._supermachine.Image",
    .tp_basicsize = sizeof(ImageObject),
    .tp_dealloc = (destructor)Image_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A baked VM image; make one with a class method.",
    .tp_methods = Image_methods,
    .tp_getset = Image_getset,
};

/* ===== module ============================================================ */

static PyMethodDef module_methods[] = {
    {"write_file", (PyCFunction)(void (*)(void))mod_write_file, METH_VARARGS | METH_KEYWORDS,
     "write_file(socket_path, path, data, mode=0o644): write a file through an exec socket."},
    {"read_file", (PyCFunction)(void (*)(void))mod_read_file, METH_VARARGS | METH_KEYWORDS,
     "read_file(socket_path, path, max_len=1 GiB) -> bytes: read a file through an exec socket."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "supermachine._supermachine",
    .m_doc = "The C core of the supermachine binding (use the supermachine package).",
    .m_size = -1,
    .m_methods = module_methods,
};

static const struct {
    sm_code code;
    const char *name;
    PyObject **base2;
} error_defs[] = {
    {SM_E_INVALID, "InvalidError", &PyExc_ValueError},
    {SM_E_NOMEM, "NoMemoryError", &PyExc_MemoryError},
    {SM_E_IO, "HostIOError", &PyExc_OSError},
    {SM_E_NOTFOUND, "NotFoundError", &PyExc_LookupError},
    {SM_E_UNSUPPORTED, "UnsupportedError", NULL},
    {SM_E_KVM, "KvmError", NULL},
    {SM_E_GUEST, "GuestError", NULL},
    {SM_E_TIMEOUT, "TimeoutError", &PyExc_TimeoutError},
    {SM_E_PROTOCOL, "ProtocolError", NULL},
    {SM_E_SETUP, "SetupError", &PyExc_ConnectionError},
    {SM_E_DROPPED, "DroppedError", &PyExc_ConnectionError},
    {SM_E_CANCELLED, "CancelledError", NULL},
    {SM_E_LIMIT, "LimitError", NULL},
    {SM_E_BUSY, "BusyError", NULL},
};

PyMODINIT_FUNC PyInit__supermachine(void)
{
    PyTypeObject *types[] = {&BuilderType, &ChildType, &ImageType, &VmType, &PoolType};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    ErrorBase = PyErr_NewExceptionWithDoc("supermachine.Error",
                                          "A libsupermachine call failed: .code is the sm_code, .message its message.",
                                          NULL, NULL);
    if (!ErrorBase || PyModule_AddObjectRef(m, "Error", ErrorBase) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof error_defs / sizeof error_defs[0]; i++) {
        char qual[64];
        snprintf(qual, sizeof qual, "supermachine.%s", error_defs[i].name);
        PyObject *bases = error_defs[i].base2 ? PyTuple_Pack(2, ErrorBase, *error_defs[i].base2)
                                              : PyTuple_Pack(1, ErrorBase);
        if (!bases)
            goto fail;
        PyObject *cls = PyErr_NewExceptionWithDoc(qual, sm_strerror(error_defs[i].code), bases, NULL);
        Py_DECREF(bases);
        if (!cls)
            goto fail;
        ErrorByCode[-(int)error_defs[i].code] = cls;
        if (PyModule_AddObjectRef(m, error_defs[i].name, cls) < 0)
            goto fail;
    }
    if (PyModule_AddObjectRef(m, "ExecBuilder", (PyObject *)&BuilderType) < 0 ||
        PyModule_AddObjectRef(m, "ExecChild", (PyObject *)&ChildType) < 0 ||
        PyModule_AddObjectRef(m, "Image", (PyObject *)&ImageType) < 0 ||
        PyModule_AddObjectRef(m, "Vm", (PyObject *)&VmType) < 0 ||
        PyModule_AddObjectRef(m, "Pool", (PyObject *)&PoolType) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
