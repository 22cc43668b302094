/*
 * Where the runtime keeps its images and its containers' VMs.
 *
 *   what     where
 *   -------  -------------------------------------------------------------
 *   images   $SUPERMACHINE_RUNTIME_IMAGES (absolute), else, for root,
 *            /var/lib/supermachine-runtime/images (engines run us as a
 *            service, often without HOME), else the library's default
 *   VMs      ROOT/@vms: under --root, which an engine passes the same to
 *            every command whatever their environment, so each finds the
 *            VM create made; '@' is not in a container ID, so no container
 *            folder can be it
 *
 * Engines hand their runtime a chosen environment (podman: containers.conf's
 * conmon_env_vars), so the images variable is set there, not in a shell.
 */
#ifndef SM_RUNTIME_STORE_H
#define SM_RUNTIME_STORE_H

#include "supermachine.h"

#define RT_IMAGES_ENV  "SUPERMACHINE_RUNTIME_IMAGES"
#define RT_ROOT_IMAGES "/var/lib/supermachine-runtime/images"
#define RT_VMS_DIR     "@vms"

/* The store for the containers under root (the --root folder). */
sm_code rt_store_open(const char *root, sm_store **out, sm_error *err);

#endif
