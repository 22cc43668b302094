/* Run one VM to its end, as the `boot` command and the VMM process do. */
#ifndef SM_VMM_RUN_H
#define SM_VMM_RUN_H

#include <stdbool.h>

#include "protocol/vmm.h"
#include "vmm/cell.h"
#include "vmm/vm.h"

/* Exit statuses: enum vmm_exit_status (protocol/vmm.h). */

struct vm_run_options {
    const char *prog;      /* prefix of messages */
    double timeout_s;      /* boot-to-ready limit */
    bool serve;            /* false: power off once ready (boot probe); true: run until stopped */
    bool print_boot_time;  /* print "boot-to-ready: <ms> ms" on stdout */
    int ready_fd;          /* >= 0: write "ready <us>\n" there once ready, then close it */
    int lifeline_fd;       /* >= 0: its end (EOF) stops the VM (protocol/vmm.h) */
    const char *restore_dir;        /* restore this snapshot instead of booting */
    const char *snapshot_when_ready; /* boot, snapshot into this folder once ready, then stop */
    const char *control_socket;     /* serve control requests here (control.h) */
    int snapshot_dir_fd;            /* the folder snapshot_when_ready names, open */
    const struct cell *cell;        /* entered (cell.h): sealed before the VM runs; NULL: none */
};

/* Creates, runs and destroys the VM; messages go to stderr. With `serve`,
 * SIGTERM, SIGINT and SIGHUP stop the VM cleanly (they are blocked in the
 * calling thread). Returns one of the statuses above. */
int vm_run_to_exit(struct vm_config *cfg, const struct vm_run_options *opt);

#endif
