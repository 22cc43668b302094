/* The runtime's store: see store.h. */
#include "runtime/store.h"

#include "base/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

sm_code rt_store_open(const char *root, sm_store **out, sm_error *err)
{
    const char *images = getenv(RT_IMAGES_ENV);
    if (images && *images && images[0] != '/')
        return error_set(err, SM_E_INVALID, "$%s: '%s' is not an absolute path", RT_IMAGES_ENV,
                         images);
    if (!images || !*images)
        images = geteuid() == 0 ? RT_ROOT_IMAGES : NULL;
    char vms[PATH_MAX];
    if ((size_t)snprintf(vms, sizeof vms, "%s/%s", root, RT_VMS_DIR) >= sizeof vms)
        return error_set(err, SM_E_LIMIT, "--root %s: too long a path", root);
    return sm_store_new(images, vms, out, err);
}
