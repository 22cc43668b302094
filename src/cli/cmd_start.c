/*
 * supermachine start [options] [IMAGE]
 *
 * Starts a detached VM (its VMM runs on after this command exits, in its own
 * session) and prints its id once the guest's agent is ready. The VM is
 * restored from IMAGE, read exactly as `run` reads it (cli_image.c); without
 * IMAGE from the image 'default', as `run`'s VMs are, so that `start` then
 * `exec` gives the guest `run` gives, in milliseconds after the first bake.
 * The boot-only flags (--memory, --cpus, --kernel, --initrd) describe a boot:
 * without IMAGE they make one, with those settings (what `start` did before
 * it took an IMAGE); with IMAGE they are refused, since a restored VM has
 * its image's memory, vCPUs, kernel and initramfs and would silently differ
 * from what was asked. Exit status 0; 1 when the VM did not start (with the
 * reason); 2 for a usage error, which is what reading the flags finds (an
 * unknown flag, a bad value, a boot option with IMAGE, a word too many).
 * Whether IMAGE is an image is known only by looking (the store, folders,
 * the registry), and the library's SM_E_INVALID also comes from a bad
 * $SUPERMACHINE_KERNEL met while baking, so an IMAGE that is none, even one
 * that cannot be a reference, is a start that failed: 1.
 */
#include "cli/cli_image.h"
#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/pull_options.h"
#include "cli/vm_flags.h"
#include "supermachine.h"

#include <stdio.h>

#define PROG "supermachine start"
#define EXIT_FAILED 1
#define EXIT_USAGE 2

static void start_usage(FILE *out)
{
    fprintf(out,
        "usage: supermachine start [options] [IMAGE]\n\n"
        "Starts a VM that runs on in the background and prints its id when its\n"
        "agent is ready; then `supermachine exec ID -- ARGV...`, `cp`, `ps` and\n"
        "`stop ID`. An OCI image's Entrypoint and Cmd do not run: start a service\n"
        "with exec.\n\n"
        "The VM is restored from IMAGE, read as `supermachine run` reads it.\n"
        CLI_IMAGE_HELP
        "Without IMAGE: the image 'default', baked the first time; or, given any\n"
        "of the boot options, a fresh boot with them. The options may stand on\n"
        "either side of IMAGE.\n\n"
        "boot options (without IMAGE only: an image has its own):\n"
        "  --memory MIB         guest memory, 64 to 65536 (default 256)\n"
        "  --cpus N             vCPUs, 1 to 32 (default 1)\n"
        "  --kernel FILE        the guest kernel (default: found as the library\n"
        "                       documents, $SUPERMACHINE_KERNEL first)\n"
        "  --initrd FILE        the initramfs with the agent ($SUPERMACHINE_INITRD first)\n\n"
        "options:\n"
        "  --console FILE       the guest console (default: console.log in the VM's folder)\n"
        "  --timeout S          give up if the agent is not ready after S seconds\n"
        "                       (default 60)\n\n"
        "network options:\n" VM_FLAGS_NET_HELP "\n"
        "resource limits:\n" VM_FLAGS_LIMITS_HELP "\n"
        "volumes:\n" VM_FLAGS_VOLUMES_HELP "\n"
        "registry options (for an IMAGE pulled from a registry):\n" PULL_OPTIONS_HELP);
}

struct start_args {
    const char *image;       /* NULL: boot, or 'default' (see resolve_image) */
    sm_vm_config *cfg;       /* every VM flag goes here at once */
    sm_pull_options *pull;   /* NULL until a registry option */
    int boot_flag;           /* the first boot-only flag given, 0 if none */
    sm_image *img;           /* opened from image; outlives cfg's use of it */
};

/* The flag c with its value arg; FLAGS_GO_ON, or the exit status. */
static int take_flag(int c, const char *arg, struct start_args *a)
{
    if (c == 'h') {
        start_usage(stdout);
        return 0;
    }
    if (c == FLAG_BAD) {
        fputc('\n', stderr);
        start_usage(stderr);
        return EXIT_USAGE;
    }
    if (is_vm_boot_only_flag(c) && !a->boot_flag)
        a->boot_flag = c;
    bool ok = is_pull_flag(c) ? pull_flag_apply(PROG, c, arg, &a->pull) : vm_flag_apply(PROG, a->cfg, c, arg);
    return ok ? FLAGS_GO_ON : EXIT_USAGE;
}

/*
 * What to start from: IMAGE as given; none for a boot when a boot-only flag
 * came without IMAGE; else the default image. FLAGS_GO_ON, or EXIT_USAGE for
 * a boot-only flag with IMAGE.
 */
static int resolve_image(struct start_args *a)
{
    if (a->image && a->boot_flag) {
        fprintf(stderr,
                "%s: %s does not go with IMAGE: a VM restored from '%s' has that image's memory,\n"
                "vCPUs, kernel and initramfs (without IMAGE, %s boots a fresh VM)\n",
                PROG, vm_flag_name(a->boot_flag), a->image, vm_flag_name(a->boot_flag));
        return EXIT_USAGE;
    }
    if (!a->image && !a->boot_flag)
        a->image = CLI_DEFAULT_IMAGE;
    return FLAGS_GO_ON;
}

/* [options] [IMAGE] [options]; FLAGS_GO_ON, or the exit status. */
static int parse(int argc, char **argv, struct start_args *a)
{
    static const struct option flags[] = { VM_FLAGS_SIZE, VM_FLAGS_BOOT, VM_FLAGS_NET, VM_FLAGS_LIMITS, VM_FLAGS_VOLUMES, PULL_FLAGS, FLAG_HELP,
                                           FLAGS_TABLE_END };
    struct flag_parser p;
    flag_parser_start(&p, PROG, argc, argv, VM_SHORT_FLAGS_NET "h", flags);
    for (int c, status; (c = flag_next_or_word(&p, &a->image)) != FLAG_END;)
        if ((status = take_flag(c, optarg, a)) != FLAGS_GO_ON)
            return status;
    int rest = flag_rest(&p);
    if (rest < argc) {
        flag_unexpected(&p, argv[rest]);
        fputc('\n', stderr);
        start_usage(stderr);
        return EXIT_USAGE;
    }
    return resolve_image(a);
}

/* Starts the VM a describes and prints its id; the exit status. */
static int start_detached(struct start_args *a)
{
    sm_error err = { 0 };
    sm_vm *vm = NULL;
    sm_code rc = a->image ? cli_image_open(PROG, a->image, &a->pull, &a->img, &err) : SM_OK;
    if (!rc)
        rc = sm_vm_config_image(a->cfg, a->img);   /* NULL: boot */
    if (!rc)
        rc = sm_vm_start(a->cfg, &vm, &err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", PROG, err.message[0] ? err.message : sm_strerror(rc));
        return EXIT_FAILED;
    }
    printf("%s\n", sm_vm_id(vm));
    sm_vm_free(vm);   /* detached: it runs on */
    return fflush(stdout) == 0 ? 0 : EXIT_FAILED;
}

int cmd_start(int argc, char **argv)
{
    struct start_args a = { .cfg = sm_vm_config_new() };
    int status = EXIT_FAILED;
    if (!a.cfg || sm_vm_config_detached(a.cfg, true))
        fprintf(stderr, "%s: out of memory\n", PROG);
    else if ((status = parse(argc, argv, &a)) == FLAGS_GO_ON)
        status = sm_vm_config_store(a.cfg, cli_store()) ? EXIT_FAILED : start_detached(&a);
    sm_vm_config_free(a.cfg);
    sm_image_free(a.img);
    sm_pull_options_free(a.pull);
    return status;
}
