/*
 * supermachine run [registry options] [IMAGE] [exec options] [-- ARGV...]
 *
 * Restores a VM from IMAGE, runs ARGV in it exactly as `supermachine exec`
 * does, stops the VM, and exits with the command's status. IMAGE is, in this
 * order: a named image; a snapshot folder; "default" (baked on first use, and
 * what no IMAGE means); else an OCI/Docker reference, pulled and baked the
 * first time (sm_image_from_oci). Without ARGV, an OCI image's Entrypoint and
 * Cmd run. ARGV runs as given: an Entrypoint is not put in front of it (this
 * is exec, not `docker run`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli_store.h"
#include "cli/commands.h"
#include "cli/pull_options.h"
#include "supermachine.h"

#define EXIT_USAGE 2
#define EXIT_CANNOT 125
#define DEFAULT_IMAGE "default"

static void run_usage(FILE *out)
{
    fprintf(out, "usage: supermachine run [options] [IMAGE] [exec options] [-- ARGV...]\n\n"
                 "Starts a fresh VM from IMAGE, runs ARGV in it, stops it, and exits with\n"
                 "ARGV's status. IMAGE: a named image (`supermachine images`), a snapshot\n"
                 "folder, or an OCI/Docker reference (pulled and baked on first use; then\n"
                 "no network); default: the image 'default', baked the first time. Without\n"
                 "ARGV, an OCI image's Entrypoint and Cmd. The exec options are those of\n"
                 "`supermachine exec` (-e, -w, -t, -i, --timeout, --stage).\n\n"
                 "options (before IMAGE):\n" PULL_OPTIONS_HELP);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static sm_code open_image(const char *name, const sm_pull_options *opt, sm_image **img, sm_error *err)
{
    sm_code rc = sm_image_open(cli_store(), name, img, NULL);
    if (rc == SM_OK)
        return rc;
    if (is_dir(name))
        return sm_image_from_snapshot(name, img, err);
    if (!strcmp(name, DEFAULT_IMAGE)) {
        fprintf(stderr, "supermachine run: baking the default image (once; later runs restore it)\n");
        return sm_image_bake(cli_store(), DEFAULT_IMAGE, NULL, img, err);
    }
    rc = sm_image_from_oci(cli_store(), name, opt, NULL, img, err);
    pull_progress_done();
    return rc;
}

/* `exec --socket PATH ARGS...`, with the image's command after ARGS when
 * they have no "--". */
static char **exec_argv(sm_vm *vm, const sm_image *img, int argc, char **argv, int first, char ***dflt,
                        sm_error *err)
{
    bool has_command = false;
    for (int i = first; i < argc; i++)
        has_command |= !strcmp(argv[i], "--");
    size_t extra = 0;
    if (!has_command) {
        if (sm_image_default_argv(img, dflt, err))
            return NULL;
        while ((*dflt)[extra])
            extra++;
    }
    char **x = calloc((size_t)argc + extra + 5, sizeof *x);
    if (!x)
        return NULL;
    int n = 0;
    x[n++] = "exec";
    x[n++] = "--socket";
    x[n++] = (char *)sm_vm_exec_socket_path(vm);
    for (int i = first; i < argc; i++)
        x[n++] = argv[i];
    if (!has_command) {
        x[n++] = "--";
        for (size_t i = 0; i < extra; i++)
            x[n++] = (*dflt)[i];
    }
    return x;
}

int cmd_run(int argc, char **argv)
{
    const char *image = DEFAULT_IMAGE;
    sm_pull_options *opt = NULL;
    int first = 1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        run_usage(stdout);
        return 0;
    }
    for (int r; first < argc && (r = pull_option("supermachine run", argc, argv, &first, &opt));)
        if (r < 0) {
            sm_pull_options_free(opt);
            return EXIT_USAGE;
        }
    if (first < argc && argv[first][0] != '-')
        image = argv[first++];
    if (!opt)
        opt = sm_pull_options_new();
    if (opt)
        pull_progress_attach(opt);
    sm_error err = { 0 };
    sm_image *img = NULL;
    sm_vm_config *cfg = sm_vm_config_new();
    sm_vm *vm = NULL;
    sm_code rc = !cfg || !opt ? SM_E_NOMEM : open_image(image, opt, &img, &err);
    sm_pull_options_free(opt);
    if (!rc)
        rc = sm_vm_config_image(cfg, img);
    if (!rc)
        rc = sm_vm_start(cfg, &vm, &err);
    sm_vm_config_free(cfg);
    if (rc) {
        sm_image_free(img);
        fprintf(stderr, "supermachine run: %s\n", err.message[0] ? err.message : sm_strerror(rc));
        return rc == SM_E_INVALID ? EXIT_USAGE : EXIT_CANNOT;
    }
    /* The rest is `supermachine exec --socket PATH [exec options] -- ARGV`. */
    char **dflt = NULL;
    char **xargv = exec_argv(vm, img, argc, argv, first, &dflt, &err);
    sm_image_free(img);
    int status = EXIT_CANNOT;
    if (xargv) {
        int n = 0;
        while (xargv[n])
            n++;
        status = cmd_exec(n, xargv);
        free(xargv);
    } else {
        fprintf(stderr, "supermachine run: %s\n", err.message[0] ? err.message : "out of memory");
    }
    sm_argv_free(dflt);
    if (sm_vm_stop(vm, &err))
        fprintf(stderr, "supermachine run: stopping the VM: %s\n", err.message);
    sm_vm_free(vm);
    return status;
}
