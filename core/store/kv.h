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

/* NULL on error with *err set (malloc'd). */
lume_kv *lume_kv_open(const char *path, char **err);
void     lume_kv_close(lume_kv *kv);

/* 0 and a malloc'd copy in *val / *len / *type, -ENOENT, or -EIO. */
int lume_kv_get(lume_kv *kv, const char *ns, const char *key, void **val,
                size_t *len, int *type);
/* 0, or -EIO (the previous value is unchanged). */
int lume_kv_set(lume_kv *kv, const char *ns, const char *key, const void *val,
                size_t len, int type);
/* 0 (also when absent), or -EIO. */
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
