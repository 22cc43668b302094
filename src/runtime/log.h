/*
 * The runtime's log, as runc keeps it (engines read it to show errors):
 * with --log FILE, lines are appended there, in --log-format text
 *     time="2026-12-04T17:52:00.123456789Z" level=error msg="container does not exist"
 * or json
 *     {"level":"error","msg":"container does not exist","time":"2026-12-04T17:52:00.123456789Z"}
 * and an error is also written to stderr, plainly. Without --log, the lines
 * go to stderr: plainly for text, as JSON for json.
 */
#ifndef SM_RUNTIME_LOG_H
#define SM_RUNTIME_LOG_H

#include <stdbool.h>

enum rt_log_level { RT_LOG_DEBUG, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR };

/* path NULL: stderr. json: the json format. false with errno when the file
 * cannot be opened (the log then stays on stderr). */
bool rt_log_open(const char *path, bool json, bool debug);
void rt_log(enum rt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rt_log_close(void);
/* The --log file's descriptor, or -1 (stderr): what a forked monitor keeps. */
int rt_log_fd(void);

#endif
