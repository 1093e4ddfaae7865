/* core/store/kv.h — the persistent key/value state store (SQLite, WAL).
 *
 * Namespaced: each script has its own namespace ("script:rules"), the twin
 * and the script manager use theirs. Values are opaque bytes with a one-byte
 * type tag chosen by the caller (the Lua binding stores its own encoding).
 * Writes are committed immediately (one small transaction each); this store
 * holds state, not streams. Single-threaded: the loop thread owns it. */
#ifndef LUME_KV_H
#define LUME_KV_H

#include <stddef.h>
#include <stdint.h>

typedef struct lume_kv lume_kv;

/* NULL on error with *err set (malloc'd). The file's own state never fails
 * the open (core/store/store.h: damage is salvaged, an unwritable file spilled or
 * kept in memory); NULL means out of memory or a file another user owns. */
lume_kv *lume_kv_open(const char *path, char **err);
void     lume_kv_close(lume_kv *kv);
/* Once a second from the loop: put back a file deleted or replaced under
 * the open connection, salvage one found damaged, end a degraded mode when
 * it can (core/store/store.h). 0 nothing done, 1 or 2 a new connection (same rows,
 * salvaged rows), -EIO (logged). */
int      lume_kv_check(lume_kv *kv);
/* The file and its health (lume_store_db_info_get). */
struct lume_store_db;
struct lume_store_db *lume_kv_store(const lume_kv *kv);

/* 0 and a malloc'd copy in *val / *len / *type, -ENOENT, -ENOMEM, or -EIO. */
int lume_kv_get(lume_kv *kv, const char *ns, const char *key, void **val,
                size_t *len, int *type);
/* 0, or -ENOMEM or -EIO (the previous value is unchanged). */
int lume_kv_set(lume_kv *kv, const char *ns, const char *key, const void *val,
                size_t len, int type);
/* 0 (also when absent), -ENOMEM or -EIO. */
int lume_kv_del(lume_kv *kv, const char *ns, const char *key);
/* Visit keys of a namespace in key order; stop when fn returns non-zero.
 * Returns the count visited or negative errno. */
int lume_kv_each(lume_kv *kv, const char *ns,
                 int (*fn)(void *ud, const char *key, const void *val,
                           size_t len, int type),
                 void *ud);
/* Total bytes stored in a namespace (for per-script quotas). */
int64_t lume_kv_ns_bytes(lume_kv *kv, const char *ns);

#endif
