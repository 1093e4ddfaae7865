/* runtime/repl_sock.h — repl_sock.c: the REPL's socket (STORE/repl.sock),
 * its protocol and the life of a connection drawn at the top of
 * repl_sock.c. */
#ifndef LUME_REPL_SOCK_H
#define LUME_REPL_SOCK_H

#include "lume.h"

/* Listen at STORE/repl.sock (mode 0600, owner only). 0, or negative with
 * *err (malloc'd); the runtime runs on without a REPL socket. */
int  lume_repl_sock_listen(lume_runtime *rt, char **err);
/* Close every session and the socket (its file removed). */
void lume_repl_sock_close(lume_runtime *rt);

#endif
