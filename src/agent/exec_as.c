/*
 * Running a command as another user. posix_spawn cannot change identity, so
 * the agent spawns itself (/proc/self/exe) as
 *
 *   supermachine-agent --exec-as UID:GID:G1,G2,... PATH ARGV0 ARGS...
 *
 * with the command's stdio, directory, process group and environment
 * already in place (the spawn's file actions and attributes); that process
 * takes the identity (setgroups, setgid, setuid, in that order: the groups
 * and gid need the privilege the setuid gives up) and execs PATH. The group
 * list may be empty ("UID:GID:"). A failure to take the identity is
 * reported the way a failed exec is: one line on stderr naming the call,
 * and status 126.
 *
 * The identity is the request's (WIRE_REQ_USER) or else the image's User
 * (image_root.c), whose only supplementary group is its gid.
 */
#include "agent/agent.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool put_id(char **at, char *end, uint32_t id, char sep)
{
    int n = sep ? snprintf(*at, (size_t)(end - *at), "%u%c", (unsigned)id, sep)
                : snprintf(*at, (size_t)(end - *at), "%u", (unsigned)id);
    if (n < 0 || n >= end - *at)
        return false;
    *at += n;
    return true;
}

const char **exec_as_wrap(const char *path, const char *const *argv, uint32_t uid, uint32_t gid,
                          uint32_t ngroups, const uint32_t *groups, char *ids, size_t ids_cap)
{
    if (ngroups > WIRE_MAX_GROUPS || ids_cap < 3)
        return NULL;
    char *at = ids, *end = ids + ids_cap;
    if (!put_id(&at, end, uid, ':') || !put_id(&at, end, gid, ':'))
        return NULL;
    for (uint32_t i = 0; i < ngroups; i++)
        if (!put_id(&at, end, groups[i], i + 1 < ngroups ? ',' : 0))
            return NULL;
    size_t n = 0;
    while (argv[n])
        n++;
    const char **out = calloc(n + 5, sizeof *out);
    if (!out)
        return NULL;
    out[0] = "supermachine-agent";
    out[1] = "--exec-as";
    out[2] = ids;
    out[3] = path;
    for (size_t i = 0; i < n; i++)
        out[4 + i] = argv[i];
    return out;
}

/* One decimal id up to the next `stop` (or the end); false if malformed. */
static bool take_id(const char **s, char stop, uint32_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p++ - '0');
        if (v > UINT32_MAX)
            return false;
    }
    if (*p != stop && *p != 0)
        return false;
    *s = *p ? p + 1 : p;
    *out = (uint32_t)v;
    return true;
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

/* Whether the process's supplementary groups are already exactly these (as
 * a set): then setgroups, which needs CAP_SETGID even to change nothing, is
 * skipped, so an unprivileged agent can run a command as itself. */
static bool groups_already(const gid_t *want, size_t n)
{
    gid_t have[WIRE_MAX_GROUPS];
    int got = getgroups(WIRE_MAX_GROUPS, have);
    if (got < 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (int j = 0; j < got && !found; j++)
            found = have[j] == want[i];
        if (!found)
            return false;
    }
    for (int j = 0; j < got; j++) {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = have[j] == want[i];
        if (!found)
            return false;
    }
    return true;
}

int exec_as_main(int argc, char **argv)
{
    uint32_t uid, gid;
    gid_t groups[WIRE_MAX_GROUPS];
    size_t ngroups;
    if (argc < 5 || !parse_ids(argv[2], &uid, &gid, groups, &ngroups)) {
        dprintf(2, "supermachine-agent: --exec-as UID:GID:GROUPS PATH ARGV...\n");
        return 126;
    }
    const char *call = NULL;
    if (!groups_already(groups, ngroups) && setgroups(ngroups, groups) < 0)
        call = "setgroups";
    else if (setgid((gid_t)gid) < 0)
        call = "setgid";
    else if (setuid((uid_t)uid) < 0)
        call = "setuid";
    if (call) {
        dprintf(2, "supermachine-agent: cannot run '%s' as user %u:%u: %s: %s\n", argv[4],
                (unsigned)uid, (unsigned)gid, call, strerror(errno));
        return 126;
    }
    execv(argv[3], argv + 4);
    int e = errno;
    dprintf(2, "supermachine-agent: cannot run '%s' as user %u: %s\n", argv[4], (unsigned)uid,
            strerror(e));
    return e == ENOENT ? 127 : 126;
}
