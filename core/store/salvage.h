/* core/store/salvage.h — rows out of a damaged SQLite file, into a fresh one,
 * for the store's databases (core/store/store.c calls it when a file fails its
 * check or a statement answers SQLITE_CORRUPT). Nothing deleted comes back:
 * rows are read through the table's b-tree, or from pages in use, never
 * from free pages (salvage.c). */
#ifndef LUME_SALVAGE_H
#define LUME_SALVAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

/* What a module's table looks like, for salvage and for fresh files. */
typedef struct lume_store_table {
    const char *file;      /* for messages: "outbox", "state store" */
    const char *table;     /* "outbox" */
    const char *pragmas;   /* NULL, or PRAGMAs a fresh file gets before anything is
                              written to it (auto_vacuum); run on every open, and a
                              failure is ignored */
    const char *schema;    /* CREATE ... IF NOT EXISTS for a fresh file */
    const char *cols;      /* every column, key columns first */
    int         ncols;
    int         nkey;      /* 1: one INTEGER key (the rowid); 2: two TEXT keys */
    const char *key1, *key2;
    /* NULL, or a SELECT of key values through another b-tree (an index):
     * rows it names that cannot be read are counted as lost, exactly. */
    const char *hints_asc, *hints_desc;
} lume_store_table;

/* Outcome of salvaging a damaged file (lume_salvage). */
typedef struct lume_salvage_result {
    int64_t copied;        /* rows written to the destination */
    int64_t lost;          /* rows known to exist that could not be read */
    bool    exact;         /* lost is the exact count, not a lower bound */
    bool    damage;        /* a read met damage at all */
    long    probes;        /* seeks spent looking past damage */
} lume_salvage_result;

/* Copy every readable row of t from src into dst (which has t's schema),
 * row by row, going around damaged pages (salvage.c lists how). 0, or -EIO
 * when dst refused a write (then *r counts what was written before). src is
 * only read (PRAGMA writable_schema is set on it, so a file shorter than its
 * header says can still be read); its file (and WAL) are read by name for
 * the pages no seek reaches. */
int  lume_salvage(sqlite3 *src, sqlite3 *dst, const lume_store_table *t,
                  lume_salvage_result *r);

#endif
