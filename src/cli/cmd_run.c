/*
 * supermachine run [IMAGE] [exec options] -- ARGV...
 *
 * Restores a VM from IMAGE (a name, or a snapshot folder when it contains a
 * '/'; the default image, baked on first use, when omitted), runs ARGV in it
 * exactly as `supermachine exec` does, stops the VM, and exits with the
 * command's status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "supermachine.h"

#define EXIT_USAGE 2
#define EXIT_CANNOT 125
#define DEFAULT_IMAGE "default"

static void run_usage(FILE *out)
{
    fprintf(out, "usage: supermachine run [IMAGE] [exec options] -- ARGV...\n\n"
                 "Starts a fresh VM from IMAGE (default: the image 'default', baked the first\n"
                 "time), runs ARGV in it, stops it, and exits with ARGV's status. The exec\n"
                 "options are those of `supermachine exec` (-e, -w, -t, -i, --timeout, --stage).\n");
}

static sm_code open_image(const char *name, sm_image **img, sm_error *err)
{
    if (strchr(name, '/'))
        return sm_image_from_snapshot(name, img, err);
    sm_code rc = sm_image_open(name, img, err);
    if (rc != SM_E_NOTFOUND || strcmp(name, DEFAULT_IMAGE) != 0)
        return rc;
    fprintf(stderr, "supermachine run: baking the default image (once; later runs restore it)\n");
    return sm_image_bake(DEFAULT_IMAGE, NULL, img, err);
}

int cmd_run(int argc, char **argv)
{
    const char *image = DEFAULT_IMAGE;
    int first = 1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        run_usage(stdout);
        return 0;
    }
    if (argc > 1 && argv[1][0] != '-') {
        image = argv[1];
        first = 2;
    }
    sm_error err = { 0 };
    sm_image *img = NULL;
    sm_vm_config *cfg = sm_vm_config_new();
    sm_vm *vm = NULL;
    sm_code rc = !cfg ? SM_E_NOMEM : open_image(image, &img, &err);
    if (!rc)
        rc = sm_vm_config_image(cfg, img);
    if (!rc)
        rc = sm_vm_start(cfg, &vm, &err);
    sm_vm_config_free(cfg);
    sm_image_free(img);
    if (rc) {
        fprintf(stderr, "supermachine run: %s\n", err.message[0] ? err.message : sm_strerror(rc));
        return rc == SM_E_INVALID ? EXIT_USAGE : EXIT_CANNOT;
    }
    /* The rest is `supermachine exec --socket PATH [exec options] -- ARGV`. */
    char **xargv = calloc((size_t)argc + 4, sizeof *xargv);
    int status = EXIT_CANNOT;
    if (xargv) {
        int n = 0;
        xargv[n++] = "exec";
        xargv[n++] = "--socket";
        xargv[n++] = (char *)sm_vm_exec_socket_path(vm);
        for (int i = first; i < argc; i++)
            xargv[n++] = argv[i];
        status = cmd_exec(n, xargv);
        free(xargv);
    }
    if (sm_vm_stop(vm, &err))
        fprintf(stderr, "supermachine run: stopping the VM: %s\n", err.message);
    sm_vm_free(vm);
    return status;
}
