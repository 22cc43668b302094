/*
 * Running a command as another user, or with resource limits. posix_spawn
 * can do neither, so the agent spawns itself (/proc/self/exe) as
 *
 *   supermachine-agent --exec-as USER LIMITS PATH ARGV0 ARGS...
 *
 *   USER    UID:GID:G1,G2,... (the group list may be empty: "UID:GID:"),
 *           or "-" to keep the agent's identity
 *   LIMITS  R=SOFT:HARD,... (R the RLIMIT_* number, the values decimal,
 *           RLIM_INFINITY as 18446744073709551615), or "-" for none
 *
 * with the command's stdio, directory, process group and environment
 * already in place (the spawn's file actions and attributes); that process
 * sets the limits (first, while it may still be root: raising a hard limit
 * needs CAP_SYS_RESOURCE), takes the identity (setgroups, setgid, setuid,
 * in that order: the groups and gid need the privilege the setuid gives
 * up) and execs PATH. A failure of any of these is reported the way a
 * failed exec is: one line on stderr naming the call (and the resource),
 * and status 126.
 *
 * The identity is the request's (WIRE_REQ_USER) or else the image's User
 * (image_root.c), whose only supplementary group is its gid; the limits
 * are the request's (WIRE_REQ_RLIMITS).
 */
#include "agent/agent.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The wire numbers resources as this kernel does, and RLIM_INFINITY is its
 * UINT64_MAX. */
_Static_assert(RLIM_NLIMITS == WIRE_RLIMIT_COUNT, "RLIMIT_* numbering");
_Static_assert(RLIM_INFINITY == UINT64_MAX && sizeof(rlim_t) == 8, "rlim_t is 64 bits");

static const char *const rlimit_names[WIRE_RLIMIT_COUNT] = {
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
};

static bool put_id(char **at, char *end, uint32_t id, char sep)
{
    int n = sep ? snprintf(*at, (size_t)(end - *at), "%u%c", (unsigned)id, sep)
                : snprintf(*at, (size_t)(end - *at), "%u", (unsigned)id);
    if (n < 0 || n >= end - *at)
        return false;
    *at += n;
    return true;
}

static bool put_u64(char **at, char *end, uint64_t v, char sep)
{
    int n = sep ? snprintf(*at, (size_t)(end - *at), "%llu%c", (unsigned long long)v, sep)
                : snprintf(*at, (size_t)(end - *at), "%llu", (unsigned long long)v);
    if (n < 0 || n >= end - *at)
        return false;
    *at += n;
    return true;
}

bool exec_as_wanted(const exec_as *who)
{
    return who->as_user || who->nrlimits;
}

const char **exec_as_wrap(const char *path, const char *const *argv, const exec_as *who,
                          char *scratch, size_t cap)
{
    if (who->ngroups > WIRE_MAX_GROUPS || who->nrlimits > WIRE_MAX_RLIMITS || cap < 4)
        return NULL;
    char *at = scratch, *end = scratch + cap;
    const char *user = at;
    if (!who->as_user) {
        memcpy(at, "-", 2);
        at += 2;
    } else {
        if (!put_id(&at, end, who->uid, ':') || !put_id(&at, end, who->gid, ':'))
            return NULL;
        for (uint32_t i = 0; i < who->ngroups; i++)
            if (!put_id(&at, end, who->groups[i], i + 1 < who->ngroups ? ',' : 0))
                return NULL;
        if (at == end)
            return NULL;
        *at++ = 0;
    }
    const char *limits = at;
    if (!who->nrlimits) {
        if (end - at < 2)
            return NULL;
        memcpy(at, "-", 2);
        at += 2;
    }
    for (uint32_t i = 0; i < who->nrlimits; i++) {
        const wire_rlimit *r = &who->rlimits[i];
        if (!put_id(&at, end, r->resource, '=') || !put_u64(&at, end, r->soft, ':') ||
            !put_u64(&at, end, r->hard, i + 1 < who->nrlimits ? ',' : 0))
            return NULL;
    }
    size_t n = 0;
    while (argv[n])
        n++;
    const char **out = calloc(n + 6, sizeof *out);
    if (!out)
        return NULL;
    out[0] = "supermachine-agent";
    out[1] = "--exec-as";
    out[2] = user;
    out[3] = limits;
    out[4] = path;
    for (size_t i = 0; i < n; i++)
        out[5 + i] = argv[i];
    return out;
}

/* One decimal number up to max, ending at the next `stop` (or the end);
 * false if malformed. */
static bool take_u64(const char **s, char stop, uint64_t max, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (*p != stop && *p != 0)
        return false;
    *s = *p ? p + 1 : p;
    *out = v;
    return true;
}

static bool take_id(const char **s, char stop, uint32_t *out)
{
    uint64_t v;
    if (!take_u64(s, stop, UINT32_MAX, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* "R=SOFT:HARD,..." or "-" into limits (at most WIRE_MAX_RLIMITS). */
static bool parse_limits(const char *s, wire_rlimit *limits, size_t *n)
{
    *n = 0;
    if (!strcmp(s, "-"))
        return true;
    while (*s) {
        uint32_t r;
        wire_rlimit *l = &limits[*n];
        if (*n == WIRE_MAX_RLIMITS || !take_id(&s, '=', &r) || r >= WIRE_RLIMIT_COUNT ||
            s[-1] != '=' || !take_u64(&s, ':', UINT64_MAX, &l->soft) || s[-1] != ':' ||
            !take_u64(&s, ',', UINT64_MAX, &l->hard))
            return false;
        l->resource = r;
        (*n)++;
    }
    return *n > 0;
}

static bool parse_ids(const char *s, uint32_t *uid, uint32_t *gid, gid_t *groups, size_t *ngroups)
{
    if (!take_id(&s, ':', uid) || !*s || !take_id(&s, ':', gid) || s[-1] != ':')
        return false;
    *ngroups = 0;
    while (*s) {
        uint32_t g;
        if (*ngroups == WIRE_MAX_GROUPS || !take_id(&s, ',', &g))
            return false;
        groups[(*ngroups)++] = (gid_t)g;
    }
    return true;
}

/* Whether every one of a[0..na) is among b[0..nb). */
static bool each_in(const gid_t *a, size_t na, const gid_t *b, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = a[i] == b[j];
        if (!found)
            return false;
    }
    return true;
}

/* Whether the process's supplementary groups are already exactly these (as
 * a set): then setgroups, which needs CAP_SETGID even to change nothing, is
 * skipped, so an unprivileged agent can run a command as itself. */
static bool groups_already(const gid_t *want, size_t n)
{
    gid_t have[WIRE_MAX_GROUPS];
    int got = getgroups(WIRE_MAX_GROUPS, have);
    return got >= 0 && each_in(want, n, have, (size_t)got) && each_in(have, (size_t)got, want, n);
}

int exec_as_main(int argc, char **argv)
{
    uint32_t uid = 0, gid = 0;
    gid_t groups[WIRE_MAX_GROUPS];
    size_t ngroups = 0, nlimits;
    wire_rlimit limits[WIRE_MAX_RLIMITS];
    bool as_user = argc > 2 && strcmp(argv[2], "-");
    if (argc < 6 || (as_user && !parse_ids(argv[2], &uid, &gid, groups, &ngroups)) ||
        !parse_limits(argv[3], limits, &nlimits)) {
        dprintf(2, "supermachine-agent: --exec-as UID:GID:GROUPS|- LIMITS|- PATH ARGV...\n");
        return 126;
    }
    for (size_t i = 0; i < nlimits; i++) {
        struct rlimit rl = { .rlim_cur = limits[i].soft, .rlim_max = limits[i].hard };
        if (setrlimit((int)limits[i].resource, &rl) < 0) {
            dprintf(2, "supermachine-agent: cannot run '%s': setrlimit(%s, %llu, %llu): %s\n",
                    argv[5], rlimit_names[limits[i].resource],
                    (unsigned long long)limits[i].soft, (unsigned long long)limits[i].hard,
                    strerror(errno));
            return 126;
        }
    }
    const char *call = NULL;
    if (as_user) {
        if (!groups_already(groups, ngroups) && setgroups(ngroups, groups) < 0)
            call = "setgroups";
        else if (setgid((gid_t)gid) < 0)
            call = "setgid";
        else if (setuid((uid_t)uid) < 0)
            call = "setuid";
    }
    if (call) {
        dprintf(2, "supermachine-agent: cannot run '%s' as user %u:%u: %s: %s\n", argv[5],
                (unsigned)uid, (unsigned)gid, call, strerror(errno));
        return 126;
    }
    execv(argv[4], argv + 5);
    int e = errno;
    if (as_user)
        dprintf(2, "supermachine-agent: cannot run '%s' as user %u: %s\n", argv[5],
                (unsigned)uid, strerror(e));
    else
        dprintf(2, "supermachine-agent: cannot run '%s': %s\n", argv[5], strerror(e));
    return e == ENOENT ? 127 : 126;
}
