/*
 * An image's config blob (OCI image config / Docker container image v1),
 * the parts a VM needs to run the image's command:
 *
 *   JSON path                  field         bound
 *   config.Env                 env           <= OCI_CONFIG_MAX_ITEMS "KEY=VALUE" strings
 *   config.WorkingDir          working_dir   a string (NULL when absent or "")
 *   config.User                user          "name", "uid", "uid:gid", "name:group" (NULL when absent or "")
 *   config.Entrypoint          entrypoint    array of strings, or null
 *   config.Cmd                 cmd           array of strings, or null
 *   architecture, os, variant  platform the image was built for ("" when absent)
 *   rootfs.diff_ids            diff_ids      sha256 of each uncompressed layer, bottom first
 *
 * Every string is at most OCI_CONFIG_MAX_STRING bytes with no NUL inside;
 * the document at most OCI_JSON_MAX bytes. Other fields are ignored.
 */
#ifndef SM_IMAGE_OCI_CONFIG_H
#define SM_IMAGE_OCI_CONFIG_H

#include "supermachine.h"

#include <stddef.h>

#define OCI_CONFIG_MAX_ITEMS 10000
#define OCI_CONFIG_MAX_STRING (128u << 10)

struct oci_config {
    char **env;
    size_t nenv;
    char *working_dir;
    char *user;
    char **entrypoint;
    size_t nentrypoint;
    char **cmd;
    size_t ncmd;
    char architecture[32], os[32], variant[32];
    char **diff_ids;
    size_t ndiff_ids;
};

sm_code oci_config_parse(const char *json, size_t len, struct oci_config *out, sm_error *err);
void oci_config_free(struct oci_config *c);

#endif
