#include "cli/cli_image.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli_store.h"
#include "cli/pull_options.h"

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Why a word with no '/' was not an image: it reads as a Docker Hub name
 * too, so a mistyped image name would otherwise fail with only a registry's
 * error ("docker.io/library/NAME:latest: cannot reach ...") and no hint
 * that the store and the folders were looked in first.
 */
static void say_not_named(const char *name, sm_error *err)
{
    if (strchr(name, '/'))
        return;
    char why[sizeof err->message];
    snprintf(why, sizeof why, "%s", err->message);
    snprintf(err->message, sizeof err->message,
             "no image named '%.60s' (`supermachine images`) nor such a folder; as a reference: %.370s", name,
             why);
}

/* A reference, pulled and baked unless it was before: progress on stderr. */
static sm_code open_oci(const char *name, sm_pull_options **pull, sm_image **img, sm_error *err)
{
    if (!*pull && !(*pull = sm_pull_options_new())) {
        snprintf(err->message, sizeof err->message, "out of memory");
        return err->code = SM_E_NOMEM;
    }
    pull_progress_attach(*pull);
    sm_code rc = sm_image_from_oci(cli_store(), name, *pull, NULL, img, err);
    pull_progress_done();
    if (rc)
        say_not_named(name, err);
    return rc;
}

sm_code cli_image_open(const char *prog, const char *name, sm_pull_options **pull, sm_image **img,
                       sm_error *err)
{
    /* A named image first: its name may also read as a folder or a
     * reference, and the store is where the user put it on purpose. */
    sm_code rc = sm_image_open(cli_store(), name, img, NULL);
    if (rc == SM_OK)
        return rc;
    if (is_dir(name))
        return sm_image_from_snapshot(name, img, err);
    if (!strcmp(name, CLI_DEFAULT_IMAGE)) {
        fprintf(stderr, "%s: baking the default image (once; later VMs restore it)\n", prog);
        return sm_image_bake(cli_store(), CLI_DEFAULT_IMAGE, NULL, img, err);
    }
    return open_oci(name, pull, img, err);
}
