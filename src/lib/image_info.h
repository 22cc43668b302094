/* An image folder's image.info and disk link (image_info.c). */
#ifndef SM_LIB_IMAGE_INFO_H
#define SM_LIB_IMAGE_INFO_H

#include <stddef.h>

#include "supermachine.h"

#define IMAGE_INFO "image.info" /* a line per "key value" (image.c says which) */

/* What image.info says (fields it lacks are left as they are). */
void image_info_read(const char *dir, sm_image_info *info);

/* The disk an image's VMs get, checked: the image folder's `disk` link must
 * lead to a root filesystem of an OCI store (IMAGES/.oci/rootfs/HEX.sqfs, in
 * the images folder that holds the image or in the default one) and, when
 * image.info names the image's digest, to that digest's file. out is "" for
 * an image with no disk. The VMM is then given the file (--disk), so it
 * never follows a link it was handed. */
sm_code image_disk_for_restore(const char *image_dir, char *out, size_t cap, sm_error *err);

#endif
