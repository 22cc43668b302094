/*
 * A guest /init that never signals ready: it mounts nothing and sleeps
 * forever, so `supermachine boot --timeout S` must give up after S seconds
 * with exit status 4. Built static with musl into build/guest/test-init_hang
 * and packed by tests/vm/run-all.sh from tests/vm/hang-initramfs.list.
 */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    /* One line on the console, so the timeout report has something to show. */
    fputs("init_hang: PID 1 up; never signalling ready\n", stderr);
    for (;;)
        pause();
}
