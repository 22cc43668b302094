/* The runtime's log: see log.h. */
#include "runtime/log.h"
#include "base/clock.h"

#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"

static int log_fd = -1; /* -1: stderr */
static bool log_json;
static bool log_debug;

static const char *const level_names[] = {
    [RT_LOG_DEBUG] = "debug", [RT_LOG_INFO] = "info", [RT_LOG_WARN] = "warning",
    [RT_LOG_ERROR] = "error",
};

bool rt_log_open(const char *path, bool json, bool debug)
{
    log_json = json;
    log_debug = debug;
    if (!path || !path[0])
        return true;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd < 0)
        return false;
    if (log_fd >= 0)
        close(log_fd);
    log_fd = fd;
    return true;
}

int rt_log_fd(void)
{
    return log_fd;
}

void rt_log_close(void)
{
    if (log_fd >= 0)
        close(log_fd);
    log_fd = -1;
}

/* msg as a quoted string of the text format: \" \\ and control bytes escaped. */
static void quote(const char *msg, char *out, size_t cap)
{
    size_t n = 0;
    out[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)msg; *p && n + 8 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else if (*p < 0x20 || *p == 0x7f) {
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    out[n++] = '"';
    out[n] = 0;
}

/* One line in the log's format, ending in '\n'. */
static void format_line(enum rt_log_level level, const char *msg, char *out, size_t cap)
{
    char t[48];
    clock_wall_rfc3339(t, sizeof t);
    if (log_json) {
        struct json_object *o = json_object_new_object();
        const char *s = NULL;
        if (o) {
            json_object_object_add(o, "level", json_object_new_string(level_names[level]));
            json_object_object_add(o, "msg", json_object_new_string(msg));
            json_object_object_add(o, "time", json_object_new_string(t));
            s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE);
        }
        snprintf(out, cap, "%s\n", s ? s : "{\"level\":\"error\",\"msg\":\"out of memory\"}");
        json_object_put(o);
    } else {
        char q[4096];
        quote(msg, q, sizeof q);
        snprintf(out, cap, "time=\"%s\" level=%s msg=%s\n", t, level_names[level], q);
    }
}

void rt_log(enum rt_log_level level, const char *fmt, ...)
{
    if (level == RT_LOG_DEBUG && !log_debug)
        return;
    char msg[2048], line[16384]; /* room for msg with every byte JSON-escaped (6x) */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_fd >= 0) {
        format_line(level, msg, line, sizeof line);
        (void)write_all(log_fd, line, strlen(line));
        if (level == RT_LOG_ERROR)
            fprintf(stderr, "%s\n", msg);
    } else if (log_json) {
        format_line(level, msg, line, sizeof line);
        fputs(line, stderr);
    } else {
        fprintf(stderr, "%s%s\n", level == RT_LOG_ERROR ? "" : level == RT_LOG_WARN ? "warning: " : "",
                msg);
    }
}
