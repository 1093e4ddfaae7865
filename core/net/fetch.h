/* core/net/fetch.h — fetch one https:// resource into memory, on the loop
 * (libwebsockets HTTP client with lws's TLS). Used for script bundles that
 * give a `url` instead of their source; the caller checks the sha256.
 *
 *   lume_fetch_start(loop, "https://files.example/rules-v3.lua", &tls, 262144,
 *                    10000, done, ud, &err);
 *   done(ud, 0, NULL, body, len)  or  done(ud, -EIO, "HTTP 404 from ...", NULL, 0)
 *
 * Only https:// is accepted; the server certificate is verified against
 * tls->ca_file (or the system store) and the URL's host. Redirects are not
 * followed. A body larger than max_bytes, a status other than 200, a TLS or
 * connection failure, or no answer within timeout_ms all end in the
 * callback with an error that names the URL and the cause. The callback is
 * called exactly once (never from inside lume_fetch_start) unless the fetch
 * is cancelled first. */
#ifndef LUME_FETCH_H
#define LUME_FETCH_H

#include <stddef.h>

#include "loop.h"
#include "tls.h"

typedef void (*lume_fetch_cb)(void *ud, int status, const char *err, const void *body,
                              size_t len);

typedef struct lume_fetch lume_fetch;

/* NULL with *err when the fetch cannot start (bad URL, not https). */
lume_fetch *lume_fetch_start(lume_loop *loop, const char *url, const lume_tls_opts *tls,
                             size_t max_bytes, int timeout_ms, lume_fetch_cb cb, void *ud,
                             char **err);
/* Stop it; the callback is not called. Safe on a finished fetch until its
 * callback has returned (then the handle is gone: do not cancel it). */
void lume_fetch_cancel(lume_fetch *f);

#endif
