/* Signals as bytes on a pipe: see signal_pipe.h. */
#include "base/signal_pipe.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

static int ends[2] = { -1, -1 };

static void on_signal(int signo)
{
    int saved = errno;
    unsigned char b = (unsigned char)signo;
    if (write(ends[1], &b, 1) < 0) { /* full: the signal is already pending */ }
    errno = saved;
}

bool signal_pipe_catch(const int *signals, size_t n)
{
    if (ends[0] < 0 && pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0)
        return false;
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < n; i++)
        sigaction(signals[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return true;
}

int signal_pipe_fd(void)
{
    return ends[0];
}

int signal_pipe_next(void)
{
    unsigned char signo;
    return ends[0] >= 0 && read(ends[0], &signo, 1) == 1 ? signo : 0;
}
