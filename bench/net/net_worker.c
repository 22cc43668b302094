/*
 * bench/net: the sender. One static binary (musl) that runs unchanged in
 * each place measured: in our guest, in the same guest kernel under QEMU's
 * -netdev user, and on the host itself over loopback.
 *
 *   net_worker HOST PORT NAME
 *
 * It asks net_bench's server at HOST:PORT for work ("W NAME\n") and waits,
 * blocked in read, until the server hands it a job line; does the job; asks
 * again. The jobs:
 *
 *   T TAG MIB   one TCP connection: "T TAG\n", then MIB MiB of zeros in
 *               128 KiB writes, then shutdown(SHUT_WR) and read until the
 *               server closes (so every byte has been read by then)
 *   R TAG N     "R TAG N\n" on one connection (the server's clock starts
 *               there; it answers one byte), then N connections one after
 *               the other, each: connect, write 'c', read the server's one
 *               byte, close
 *   Q           exit 0
 *
 * The server times both (net_bench.c); this side keeps no clock. A failed job
 * is reported to the server as "E TAG what failed\n", and the worker goes on.
 * Between jobs it holds one idle connection and uses no CPU.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (128u << 10)

static struct sockaddr_in server;
static const char *name;
static char zeros[CHUNK];

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&server, sizeof server) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_str(int fd, const char *s)
{
    return write_all(fd, s, strlen(s));
}

/* Reads one line (without its '\n') into buf; -1 on EOF or error first. */
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

/* Tells the server that job TAG failed, and why; also on stderr. */
static void report_failure(const char *tag, const char *fmt, ...)
{
    char what[160], line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    fprintf(stderr, "net_worker %s: job %s: %s\n", name, tag, what);
    snprintf(line, sizeof line, "E %s %s: %s\n", tag, name, what);
    int fd = connect_server();
    if (fd >= 0) {
        write_str(fd, line);
        close(fd);
    }
}

static void job_stream(const char *tag, unsigned long mib)
{
    char head[96];
    int fd = connect_server();
    if (fd < 0) {
        report_failure(tag, "connect: %s", strerror(errno));
        return;
    }
    snprintf(head, sizeof head, "T %s\n", tag);
    if (write_str(fd, head) != 0)
        goto failed;
    for (unsigned long left = mib * ((1ul << 20) / CHUNK); left > 0; left--)
        if (write_all(fd, zeros, CHUNK) != 0)
            goto failed;
    if (shutdown(fd, SHUT_WR) != 0)
        goto failed;
    for (;;) {   /* until the server, having read everything, closes */
        char sink[64];
        ssize_t n = read(fd, sink, sizeof sink);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto failed;
        if (n == 0)
            break;
    }
    close(fd);
    return;
failed:
    report_failure(tag, "stream: %s", strerror(errno));
    close(fd);
}

/* connect, one byte out, one byte back, close; 0 when all of it worked. */
static int one_exchange(const char *out)
{
    char back;
    int fd = connect_server();
    if (fd < 0)
        return -1;
    errno = 0;
    int ok = write_str(fd, out) == 0 && read(fd, &back, 1) == 1;
    int e = errno ? errno : EPROTO;   /* EPROTO: the server closed without its byte */
    close(fd);
    if (ok)
        return 0;
    errno = e;
    return -1;
}

static void job_rate(const char *tag, unsigned long count)
{
    char head[96];
    snprintf(head, sizeof head, "R %s %lu\n", tag, count);
    if (one_exchange(head) != 0) {
        report_failure(tag, "rate start: %s", strerror(errno));
        return;
    }
    for (unsigned long i = 0; i < count; i++)
        if (one_exchange("c") != 0) {
            report_failure(tag, "connection %lu of %lu: %s", i + 1, count, strerror(errno));
            return;
        }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: net_worker HOST PORT NAME\n");
        return 2;
    }
    name = argv[3];
    server.sin_family = AF_INET;
    server.sin_port = htons((unsigned short)strtoul(argv[2], NULL, 10));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "net_worker: %s is not an IPv4 address\n", argv[1]);
        return 2;
    }
    for (;;) {
        char ask[64], job[128], kind[4], tag[64];
        unsigned long amount;
        int fd = connect_server();
        if (fd < 0) {
            fprintf(stderr, "net_worker %s: connect to %s:%s: %s\n", name, argv[1], argv[2], strerror(errno));
            return 1;
        }
        snprintf(ask, sizeof ask, "W %s\n", name);
        if (write_str(fd, ask) != 0 || read_line(fd, job, sizeof job) != 0) {
            fprintf(stderr, "net_worker %s: the server went away\n", name);
            close(fd);
            return 1;
        }
        close(fd);
        if (strcmp(job, "Q") == 0)
            return 0;
        if (sscanf(job, "%3s %63s %lu", kind, tag, &amount) != 3) {
            fprintf(stderr, "net_worker %s: a job I do not know: %s\n", name, job);
            continue;
        }
        if (strcmp(kind, "T") == 0)
            job_stream(tag, amount);
        else if (strcmp(kind, "R") == 0)
            job_rate(tag, amount);
        else
            report_failure(tag, "a job I do not know: %s", job);
    }
}
