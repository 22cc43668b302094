/* supermachine: the command-line front end of libsupermachine. */
#include "cli/commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    { "run",    cmd_run,    "run a command in a fresh VM restored from an image, then stop it" },
    { "boot",   cmd_boot,   "boot a kernel and initramfs to the agent, report the time" },
    { "doctor", cmd_doctor, "say whether this host can run microVMs, and what to do if not" },
    { "start",  cmd_start,  "start a VM in the background, restored from an image or booted; print its id" },
    { "exec",   cmd_exec,   "run a command in a VM (by id) or through an agent's exec socket" },
    { "cp",     cmd_cp,     "copy a file into or out of a VM" },
    { "connect", cmd_connect, "join stdin and stdout to a TCP port inside a VM" },
    { "expose", cmd_expose, "publish a TCP port of a running VM on the host" },
    { "ps",     cmd_ps,     "list VMs: id, state, pid, memory, vCPUs, age" },
    { "stop",   cmd_stop,   "stop a VM (or clean up a dead one) and remove its state" },
    { "pause",  cmd_pause,  "pause running VMs (their vCPUs stop, their memory stays)" },
    { "resume", cmd_resume, "let paused VMs run on" },
    { "snapshot", cmd_snapshot, "keep a running VM as a named image that VMs start from" },
    { "bake",   cmd_bake,   "boot the default guest and keep its snapshot as a named image" },
    { "pull",   cmd_pull,   "pull an OCI/Docker image and bake it" },
    { "images", cmd_images, "list the named images" },
    { "rmi",    cmd_rmi,    "delete named images" },
    { "prune",  cmd_prune,  "remove root filesystems and blobs that no image uses any more" },
    { "volume", cmd_volume, "list, create and delete volumes (disks that outlive VMs)" },
};

static void usage(FILE *out)
{
    fprintf(out, "usage: supermachine COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`supermachine COMMAND --help` describes each.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("supermachine 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "supermachine: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
