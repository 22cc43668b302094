/* The options that describe one VM, shared by `supermachine boot` and the
 * supermachine-vmm process. */
#ifndef SM_CLI_VM_OPTIONS_H
#define SM_CLI_VM_OPTIONS_H

#include <stdbool.h>

#include "vmm/run.h"
#include "vmm/vm.h"

struct vm_cli {
    struct vm_config cfg;
    struct vm_run_options run;
    const char *console_path;
    bool die_with_parent;
};

/* Parses argv (argv[0] is the program or subcommand name). `process` adds the
 * VMM process's own options. Returns -1 after printing an error (usage), 1
 * when --help was printed, 0 to go on. */
int vm_cli_parse(struct vm_cli *cli, int argc, char **argv, bool process);
/* Opens the console file ('-' is stdout); false after printing an error. */
bool vm_cli_open_console(struct vm_cli *cli);

#endif
