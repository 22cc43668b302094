/*
 * bench/net: the receiver, and the one clock every figure is read from.
 *
 *   net_bench serve
 *       listens on 127.0.0.1 (a port the kernel picks; first line on stdout:
 *       "port P") and serves until killed, one connection at a time
 *   net_bench job PORT TIMEOUT_S WORKER JOB...
 *       hands JOB to the worker named WORKER (net_worker.c) through the
 *       server at 127.0.0.1:PORT, waits up to TIMEOUT_S seconds for its
 *       result and prints the result line; exit 0 for a result, 1 otherwise
 *
 * The workers, wherever they run (our guest through 10.0.2.2, a QEMU guest
 * through 10.0.2.2, this host through 127.0.0.1), all reach this same
 * server; each connection's first byte says what it is:
 *
 *   W NAME\n        a worker waiting for a job; held open until there is one
 *   G NAME JOB\n    the driver (net_bench job): hand JOB to NAME, and answer
 *                   with JOB's result line when it comes
 *   T TAG\n DATA    a stream: read to EOF, then close. Result:
 *                   "T TAG BYTES NS", NS from accept() to the read that
 *                   returned EOF (CLOCK_MONOTONIC, this host)
 *   R TAG N\n       a connection-rate run starts: the clock starts at this
 *                   accept(); the server answers one byte and closes
 *   c               one of the N connections: one byte back, then close.
 *                   After the N-th: "R TAG N NS", NS from the accept() of
 *                   "R" to the close of the N-th
 *   E TAG WHY\n     a worker's job failed: the result is this line
 *
 * Since the host's clock times every path the same way, and a worker's start
 * (a VM's boot, an exec) lies outside what is timed, the three paths differ
 * only in what carries the bytes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 8
#define CONN_TIMEOUT_S 300   /* a connection silent this long is dropped */

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_timeout(int fd, long seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int send_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads up to '\n' (dropped) into buf; -1 on EOF or error before it. */
static int read_line(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        if (c == '\n')
            break;
        if (len + 1 < size)
            buf[len++] = c;
    }
    buf[len] = '\0';
    return 0;
}

/* --- the server ------------------------------------------------------- */

static struct { char name[32]; int fd; } waiting[MAX_WORKERS];

/* The driver's one outstanding job (it runs one at a time). */
static struct {
    int fd;            /* the driver's connection, -1 when none */
    char worker[32];
    char job[128];
    char tag[64];      /* the job's second word: its result carries it too */
    int handed;        /* given to the worker already */
} req = {.fd = -1};

static struct {
    char tag[64];
    unsigned long total, left;
    long long t0;
} rate;

/* A result: logged, and answered to the driver if it is its job's. */
static void result(const char *line)
{
    char kind[4], tag[64];
    printf("%s\n", line);
    fflush(stdout);
    if (req.fd < 0 || sscanf(line, "%3s %63s", kind, tag) != 2 || strcmp(tag, req.tag) != 0)
        return;
    char out[300];
    int n = snprintf(out, sizeof out, "%s\n", line);
    send_all(req.fd, out, (size_t)n);
    close(req.fd);
    req.fd = -1;
}

/* Gives the driver's job to its worker if that worker is waiting. */
static void dispatch(void)
{
    if (req.fd < 0 || req.handed)
        return;
    for (int i = 0; i < MAX_WORKERS; i++) {
        if (waiting[i].fd < 0 || strcmp(waiting[i].name, req.worker) != 0)
            continue;
        char out[160];
        int n = snprintf(out, sizeof out, "%s\n", req.job);
        int ok = send_all(waiting[i].fd, out, (size_t)n) == 0;
        close(waiting[i].fd);
        waiting[i].fd = -1;
        if (!ok)   /* that worker's connection was dead: wait for its next */
            return;
        req.handed = 1;
        if (strcmp(req.job, "Q") == 0) {
            char done[64];
            n = snprintf(done, sizeof done, "Q %s quit\n", req.worker);
            send_all(req.fd, done, (size_t)n);
            close(req.fd);
            req.fd = -1;
        }
        return;
    }
}

static void on_worker(int fd, const char *name)
{
    int slot = -1;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (waiting[i].fd >= 0 && strcmp(waiting[i].name, name) == 0) {
            close(waiting[i].fd);   /* a worker asks again: its old ask is gone */
            waiting[i].fd = -1;
        }
    for (int i = 0; i < MAX_WORKERS && slot < 0; i++)
        if (waiting[i].fd < 0)
            slot = i;
    if (slot < 0) {
        fprintf(stderr, "net_bench: more than %d workers; %s dropped\n", MAX_WORKERS, name);
        close(fd);
        return;
    }
    snprintf(waiting[slot].name, sizeof waiting[slot].name, "%s", name);
    waiting[slot].fd = fd;
    set_timeout(fd, 0);   /* it may wait as long as the other paths take */
    dispatch();
}

static void on_request(int fd, const char *line)
{
    char worker[32];
    int used = 0;
    if (sscanf(line, "%31s %n", worker, &used) != 1 || line[used] == '\0') {
        send_all(fd, "E - bad request\n", 16);
        close(fd);
        return;
    }
    if (req.fd >= 0)   /* the last driver gave up waiting: this one replaces it */
        close(req.fd);
    req.fd = fd;
    req.handed = 0;
    set_timeout(fd, 0);
    snprintf(req.worker, sizeof req.worker, "%s", worker);
    snprintf(req.job, sizeof req.job, "%s", line + used);
    if (sscanf(req.job, "%*s %63s", req.tag) != 1)
        snprintf(req.tag, sizeof req.tag, "-");
    dispatch();
}

static void on_stream(int fd, const char *tag, long long t0)
{
    static char buf[256 << 10];
    unsigned long long bytes = 0;
    char line[160];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(line, sizeof line, "E %s stream: read after %llu bytes: %s", tag, bytes, strerror(errno));
            close(fd);
            result(line);
            return;
        }
        if (n == 0)
            break;
        bytes += (unsigned long long)n;
    }
    long long ns = now_ns() - t0;
    close(fd);
    snprintf(line, sizeof line, "T %s %llu %lld", tag, bytes, ns);
    result(line);
}

static void on_connection(int fd, long long t0)
{
    char kind, line[200], tag[64];
    unsigned long count;
    set_timeout(fd, CONN_TIMEOUT_S);
    if (read(fd, &kind, 1) != 1) {
        close(fd);
        return;
    }
    if (kind == 'c') {
        send_all(fd, "k", 1);
        close(fd);
        if (rate.left > 0 && --rate.left == 0) {
            snprintf(line, sizeof line, "R %s %lu %lld", rate.tag, rate.total, now_ns() - rate.t0);
            result(line);
        }
        return;
    }
    if (read_line(fd, line, sizeof line) != 0) {
        close(fd);
        return;
    }
    const char *rest = line + (line[0] == ' ');
    switch (kind) {
    case 'W':
        on_worker(fd, rest);
        return;
    case 'G':
        on_request(fd, rest);
        return;
    case 'T':
        on_stream(fd, rest, t0);
        return;
    case 'R':
        if (sscanf(rest, "%63s %lu", tag, &count) == 2 && count > 0) {
            snprintf(rate.tag, sizeof rate.tag, "%s", tag);
            rate.total = rate.left = count;
            rate.t0 = t0;
            send_all(fd, "k", 1);
        }
        close(fd);
        return;
    case 'E': {
        char full[210];
        snprintf(full, sizeof full, "E %s", rest);
        close(fd);
        result(full);
        return;
    }
    default:
        close(fd);
    }
}

static int serve(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 256) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
        perror("net_bench: listening on 127.0.0.1");
        return 1;
    }
    for (int i = 0; i < MAX_WORKERS; i++)
        waiting[i].fd = -1;
    printf("port %u\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        long long t0 = now_ns();
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            perror("net_bench: accept");
            return 1;
        }
        on_connection(fd, t0);
    }
}

/* --- the driver's side ---------------------------------------------------- */

static int job(int argc, char **argv)
{
    char line[300];
    size_t len = 0;
    long timeout = strtol(argv[3], NULL, 10);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                               .sin_port = htons((unsigned short)strtoul(argv[2], NULL, 10))};
    len += (size_t)snprintf(line, sizeof line, "G %s", argv[4]);
    for (int i = 5; i < argc && len < sizeof line; i++)
        len += (size_t)snprintf(line + len, sizeof line - len, " %s", argv[i]);
    if (len + 2 > sizeof line) {
        fprintf(stderr, "net_bench job: the job is too long\n");
        return 2;
    }
    line[len++] = '\n';
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        printf("E - net_bench job: connect to 127.0.0.1:%s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    set_timeout(fd, timeout > 0 ? timeout : 600);
    errno = 0;
    if (send_all(fd, line, len) != 0 || read_line(fd, line, sizeof line) != 0) {
        printf("E - no result from worker %s within %ld s (%s)\n", argv[4], timeout,
               errno == EAGAIN ? "timed out" : "the server closed");
        return 1;
    }
    printf("%s\n", line);
    return line[0] == 'E';
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && strcmp(argv[1], "serve") == 0)
        return serve();
    if (argc >= 6 && strcmp(argv[1], "job") == 0)
        return job(argc, argv);
    fprintf(stderr, "usage: net_bench serve\n"
                    "       net_bench job PORT TIMEOUT_S WORKER JOB...\n");
    return 2;
}
