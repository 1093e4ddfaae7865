/* runtime/control.h — control.c: the control socket (lume reload, lume stats, lume
 * status); its limits and the life of a connection are drawn at the top of
 * control.c. */
#ifndef LUME_CONTROL_H
#define LUME_CONTROL_H

#include "lume.h"

struct lume_control;
int  lume_control_listen(lume_runtime *rt, char **err);
void lume_control_close(lume_runtime *rt);
/* The socket's path while listening, else NULL (store_host.c watches it). */
const char *lume_control_path(lume_runtime *rt);
/* The file at the socket's path is another runtime's now: close leaves it. */
void lume_control_disown(lume_runtime *rt);
/* Bind the Unix socket fd at path with mode 0600 (bound in a fresh 0700
 * directory, chmod'ed, renamed into place; the umask untouched). 0, or
 * -errno. */
int  lume_control_bind_private(int fd, const char *path);
/* Client side: send one command line, print the answer (stdout for "ok",
 * stderr for "error", prefixed "lume COMMAND: "). Exit code: 0 ok, 1 the
 * running lume answered an error or cannot be reached, 2 a request that
 * cannot be sent (too long, socket path too long). */
int  lume_control_request(const char *sock_path, const char *line);

#endif
