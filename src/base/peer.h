/* Who is at the other end of a Unix socket (SO_PEERCRED). */
#ifndef SM_BASE_PEER_H
#define SM_BASE_PEER_H

#include <stdbool.h>

/* Whether the process that connected to fd runs as this process's user:
 * the exec and control sockets serve their owner only, whatever the
 * permissions of the folder that holds them. False when it cannot be told. */
bool peer_is_own_user(int fd);

#endif
