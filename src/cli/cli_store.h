/* The store every CLI command uses (cli_store.c). */
#ifndef SM_CLI_CLI_STORE_H
#define SM_CLI_CLI_STORE_H

#include "supermachine.h"

/* NULL (the library's default store) unless $SUPERMACHINE_IMAGES is set;
 * exits 125 with a message if that folder cannot be a store. */
const sm_store *cli_store(void);

#endif
