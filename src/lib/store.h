/* A store (sm_store): where named images and running VMs' state folders
 * live. NULL, or a field left empty, means the default place. */
#ifndef SM_LIB_STORE_H
#define SM_LIB_STORE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "supermachine.h"

struct sm_store {
    char images[PATH_MAX]; /* "" : ${XDG_DATA_HOME:-~/.local/share}/supermachine/images */
    char vms[PATH_MAX];    /* "" : the runtime folder's supermachine/vms (assets.c) */
};

/* The images folder of s (NULL: default), created if missing. */
sm_code store_images_dir(const sm_store *s, char *out, size_t cap, sm_error *err);
/* The VM state folders' parent of s (NULL: default); created (0700) when
 * `create` is set. */
sm_code store_vms_dir(const sm_store *s, char *out, size_t cap, bool create, sm_error *err);
/* A name of the store's (an image's, a volume's): 1-64 of [A-Za-z0-9._-],
 * not starting with '.', so that it is never a path nor a hidden file. */
bool store_name_valid(const char *name);
/* The same as an error naming what (an "image", a "volume") and the rule. */
sm_code store_name_check(const char *what, const char *name, sm_error *err);
/* s's own VM folder, or "" for the default: what a VM config keeps. */
const char *store_vms_choice(const sm_store *s);
/* s's own images folder, or "" for the default. */
const char *store_images_choice(const sm_store *s);

#endif
