/* core/store/salvage.c — rows out of a damaged SQLite file (see salvage.h,
 * docs/store.md "How salvage reads").
 *
 * Where rows come from, in order:
 *
 *   1. scans through the table's b-tree: from the first row up until damage
 *      stops it, then from the last row down to where the first stopped;
 *   2. seeks from keys written in the file's pages (the first key of each
 *      page, every divider of an interior page), reading on from each until
 *      damage or a row already copied;
 *   3. the cells of pages in use that no seek reaches (a damaged interior
 *      page orphans everything below it), decoded from the record format
 *      with their overflow chains;
 *   4. rows an index names (the outbox's), read one by one: those that
 *      cannot be read are the lost ones, counted exactly;
 *   5. without a readable freelist (so no step 3): bisection of the key
 *      ranges between damaged places.
 *
 * Invariants:
 *   1. Rows come only through the b-tree (1, 2, 4, 5) or from pages in use
 *      (3): never from a page on the freelist, which may hold deleted rows
 *      (acknowledged messages, removed keys). Step 3 is skipped when the
 *      freelist cannot be walked to its end with the count its header
 *      gives.
 *   2. A page is read as SQLite would see it: the newest committed frame
 *      of it in the WAL (salts as in the WAL's header; frames after the
 *      last commit ignored), else the file's.
 *   3. Keys found in pages are only places to start a seek from: a key of a
 *      stale or free page costs one seek and brings nothing back.
 *   4. The destination is written with INSERT OR IGNORE: what two steps
 *      both find is copied once, and a scan that meets a row already copied
 *      stops (so overlapping steps cost no more than the rows). */
#include "salvage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define COMP "store"
#define PROBE_BUDGET 5000   /* bisection seeks spent looking past damage */
#define MAX_KEY_BYTES 512

enum { K_MIN, K_VAL, K_MAX };

typedef struct skey {
    int            kind;
    int64_t        i;     /* nkey 1 */
    unsigned char *s;     /* nkey 2: first key, a NUL, second key */
    size_t         n;
} skey;

typedef struct gap {
    skey lo, hi;          /* exclusive bounds */
} gap;

typedef struct salv {
    sqlite3                   *src, *dst;
    const lume_store_table    *t;
    sqlite3_stmt              *asc_gt, *asc_ge, *desc, *ins, *get, *has;
    lume_salvage_result *r;
    bool                       any_seen;
    int64_t                    max_seen;
    bool                       failed;      /* dst refused a write */
    bool                       until_known; /* scans stop at a row already copied */
    gap                       *q;
    size_t                     qhead, qn, qcap;
} salv;

static void key_free(skey *k)
{
    free(k->s);
    k->s = NULL;
    k->n = 0;
}

static skey key_kind(int kind)
{
    skey k = {.kind = kind};
    return k;
}

static int key_dup(skey *dst, const skey *src)
{
    *dst = *src;
    dst->s = NULL;
    if (src->s) {
        if (!(dst->s = malloc(src->n ? src->n : 1)))
            return -ENOMEM;
        memcpy(dst->s, src->s, src->n);
    }
    return 0;
}

/* The key of the current row of s (columns 0..nkey-1). */
static int key_read(const salv *v, sqlite3_stmt *s, skey *k)
{
    memset(k, 0, sizeof *k);
    k->kind = K_VAL;
    if (v->t->nkey == 1) {
        k->i = sqlite3_column_int64(s, 0);
        return 0;
    }
    const unsigned char *a = sqlite3_column_text(s, 0);
    size_t an = a ? (size_t)sqlite3_column_bytes(s, 0) : 0;
    const unsigned char *b = sqlite3_column_text(s, 1);
    size_t bn = b ? (size_t)sqlite3_column_bytes(s, 1) : 0;
    if (!(k->s = malloc(an + bn + 1)))
        return -ENOMEM;
    if (an)
        memcpy(k->s, a, an);
    k->s[an] = 0;
    if (bn)
        memcpy(k->s + an + 1, b, bn);
    k->n = an + 1 + bn;
    return 0;
}

/* Bind k at parameter `at` (and at+1 for two keys). */
static void key_bind(const salv *v, sqlite3_stmt *s, int at, const skey *k)
{
    if (v->t->nkey == 1) {
        sqlite3_bind_int64(s, at, k->kind == K_MIN ? INT64_MIN
                                  : k->kind == K_MAX ? INT64_MAX : k->i);
        return;
    }
    if (k->kind == K_MIN) {
        sqlite3_bind_text(s, at, "", 0, SQLITE_STATIC);
        sqlite3_bind_text(s, at + 1, "", 0, SQLITE_STATIC);
    } else if (k->kind == K_MAX) {
        /* every TEXT sorts before every BLOB */
        sqlite3_bind_zeroblob(s, at, 0);
        sqlite3_bind_zeroblob(s, at + 1, 0);
    } else {
        size_t z = strnlen((const char *)k->s, k->n);
        sqlite3_bind_text(s, at, (const char *)k->s, (int)z, SQLITE_TRANSIENT);
        if (z < k->n)
            sqlite3_bind_text(s, at + 1, (const char *)k->s + z + 1, (int)(k->n - z - 1),
                              SQLITE_TRANSIENT);
        else
            sqlite3_bind_text(s, at + 1, "", 0, SQLITE_STATIC);
    }
}

/* A byte string strictly between a and b (a < b), or -1. "" stands for the
 * bottom, "\xff" for the top (no UTF-8 text starts with 0xff). */
static int mid_bytes(const unsigned char *a, size_t an, const unsigned char *b, size_t bn,
                     unsigned char *out, size_t cap, size_t *on)
{
    static const unsigned char top = 0xff;
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i])
        i++;
    if (i >= bn || i + 2 > cap)
        return -1;
    int ca = i < an ? a[i] : -1, cb = b[i];
    if (i)
        memcpy(out, b, i);
    if (cb - ca >= 2) {
        out[i] = (unsigned char)(ca + (cb - ca) / 2);
        *on = i + 1;
        return 0;
    }
    size_t sub;
    if (ca < 0) {   /* b is a followed by a NUL and more */
        out[i] = 0;
        if (mid_bytes(NULL, 0, b + i + 1, bn - i - 1, out + i + 1, cap - i - 1, &sub) < 0)
            return -1;
    } else {        /* b[i] is a[i] + 1: a's prefix, then above a's tail */
        out[i] = (unsigned char)ca;
        if (mid_bytes(a + i + 1, an - i - 1, &top, 1, out + i + 1, cap - i - 1, &sub) < 0)
            return -1;
    }
    *on = i + 1 + sub;
    return 0;
}

/* A key strictly inside (lo, hi), or -1. */
static int key_mid(const salv *v, const skey *lo, const skey *hi, skey *m)
{
    memset(m, 0, sizeof *m);
    m->kind = K_VAL;
    if (v->t->nkey == 1) {
        if (!v->any_seen)
            return -1;
        int64_t a = lo->kind == K_MIN ? 0 : lo->i;
        int64_t b = hi->kind == K_MAX ? v->max_seen + 1 : hi->i;
        if (b <= a || b - a < 2)
            return -1;
        m->i = a + (b - a) / 2;
        return 0;
    }
    static const unsigned char top = 0xff;
    const unsigned char *a = lo->kind == K_MIN ? (const unsigned char *)"" : lo->s;
    size_t an = lo->kind == K_MIN ? 0 : lo->n;
    const unsigned char *b = hi->kind == K_MAX ? &top : hi->s;
    size_t bn = hi->kind == K_MAX ? 1 : hi->n;
    unsigned char buf[MAX_KEY_BYTES];
    size_t n;
    if (mid_bytes(a, an, b, bn, buf, sizeof buf, &n) < 0 || !(m->s = malloc(n)))
        return -1;
    memcpy(m->s, buf, n);
    m->n = n;
    return 0;
}

/* Write the current row of s into dst. 0, or -EIO when dst refused. */
static int copy_row(salv *v, sqlite3_stmt *s)
{
    for (int c = 0; c < v->t->ncols; c++)
        sqlite3_bind_value(v->ins, c + 1, sqlite3_column_value(s, c));
    int rc = sqlite3_step(v->ins);
    sqlite3_reset(v->ins);
    if (rc == SQLITE_DONE) {
        v->r->copied += sqlite3_changes(v->dst);
        return 0;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_MISMATCH)
        return 0;   /* a row that cannot be what it claims: not copied */
    lume_log(LUME_LOG_ERROR, COMP, "salvage: cannot write a row: %s", sqlite3_errmsg(v->dst));
    v->failed = true;
    return -EIO;
}

/* Step s (bound), copying rows. Returns 0 at the end (or, with v->until_known,
 * at a row already copied), 1 when damage stopped it, -EIO when dst failed.
 * first/last: the keys of the first and last rows read (kind K_MIN when
 * none). */
static int scan(salv *v, sqlite3_stmt *s, skey *first, skey *last, int64_t *rows)
{
    int rc, res = 0;
    *first = key_kind(K_MIN);
    *last = key_kind(K_MIN);
    *rows = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        skey k;
        if (key_read(v, s, &k) < 0) {
            res = -EIO;
            break;
        }
        if (v->t->nkey == 1) {
            if (!v->any_seen || k.i > v->max_seen)
                v->max_seen = k.i;
            v->any_seen = true;
        }
        int64_t before = v->r->copied;
        if (copy_row(v, s) < 0) {
            key_free(&k);
            res = -EIO;
            break;
        }
        if (first->kind == K_MIN)
            key_dup(first, &k);
        key_free(last);
        *last = k;
        (*rows)++;
        if (v->until_known && v->r->copied == before) {
            rc = SQLITE_DONE;   /* from here on, read by an earlier scan */
            break;
        }
    }
    if (!res && rc != SQLITE_DONE) {
        v->r->damage = true;
        res = 1;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return res;
}

static int push_gap(salv *v, const skey *lo, const skey *hi)
{
    if (v->qn == v->qcap) {
        size_t nc = v->qcap ? v->qcap * 2 : 64;
        gap *nq = realloc(v->q, nc * sizeof *nq);
        if (!nq)
            return -ENOMEM;
        v->q = nq;
        v->qcap = nc;
    }
    gap *g = &v->q[v->qn];
    if (key_dup(&g->lo, lo) < 0)
        return -ENOMEM;
    if (key_dup(&g->hi, hi) < 0) {
        key_free(&g->lo);
        return -ENOMEM;
    }
    v->qn++;
    return 0;
}

/* Rows in (lo, hi) going up from m (inclusive), then down from m. */
static int explore(salv *v, const skey *lo, const skey *hi)
{
    skey m, first, last;
    if (key_mid(v, lo, hi, &m) < 0)
        return 0;
    v->r->probes++;
    int64_t rows;
    key_bind(v, v->asc_ge, 1, &m);
    key_bind(v, v->asc_ge, v->t->nkey + 1, hi);
    int r = scan(v, v->asc_ge, &first, &last, &rows);
    if (r == 1)
        push_gap(v, rows ? &last : &m, hi);
    key_free(&first);
    key_free(&last);
    if (r >= 0) {
        key_bind(v, v->desc, 1, lo);
        key_bind(v, v->desc, v->t->nkey + 1, &m);
        r = scan(v, v->desc, &first, &last, &rows);
        if (r == 1)
            push_gap(v, lo, rows ? &last : &m);
        key_free(&first);
        key_free(&last);
    }
    key_free(&m);
    return r < 0 ? r : 0;
}

/* ---- probe keys from the raw pages ---------------------------------------
 * Damage hides where the next readable leaf starts. The keys written in the
 * file's pages (interior dividers, leaf cells, in the file and its WAL) are
 * used as places to start a seek from: only starting points, never rows —
 * rows are read through the b-tree alone (invariant 4), so a key from a free
 * or stale page costs one seek and brings nothing back. */

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* An SQLite varint at p (at most end). Bytes used, 0 when cut short. */
static int varint(const unsigned char *p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 9; i++) {
        if (p + i >= end)
            return 0;
        if (i == 8) {
            *v = x << 8 | p[i];
            return 9;
        }
        x = x << 7 | (p[i] & 0x7f);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

typedef struct cands {
    skey  *k;
    size_t n, cap;
} cands;

static void cand_add(cands *c, const skey *k)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        skey *nk = realloc(c->k, nc * sizeof *nk);
        if (!nk)
            return;
        c->k = nk;
        c->cap = nc;
    }
    if (key_dup(&c->k[c->n], k) == 0)
        c->n++;
}

/* The first two fields of a record (both TEXT), as ns NUL key. */
static int record_key(const unsigned char *p, size_t n, skey *k)
{
    const unsigned char *end = p + n;
    uint64_t hlen, t0, t1;
    int a = varint(p, end, &hlen);
    if (!a || hlen > n)
        return -1;
    int b = varint(p + a, p + hlen, &t0);
    int c = b ? varint(p + a + b, p + hlen, &t1) : 0;
    if (!b || !c || t0 < 13 || t1 < 13 || !(t0 & 1) || !(t1 & 1))
        return -1;
    uint64_t l0 = (t0 - 13) / 2, l1 = (t1 - 13) / 2;
    if (hlen + l0 + l1 > n || l0 + l1 + 1 > MAX_KEY_BYTES)
        return -1;
    k->kind = K_VAL;
    k->n = (size_t)(l0 + 1 + l1);
    if (!(k->s = malloc(k->n)))
        return -1;
    memcpy(k->s, p + hlen, (size_t)l0);
    k->s[l0] = 0;
    memcpy(k->s + l0 + 1, p + hlen + l0, (size_t)l1);
    return 0;
}

/* The key of cell i of a b-tree page of the table's kind (hdr: where its
 * header starts). 0, or -1 when the page or the cell is not of that kind
 * or cannot be read. */
static int cell_key(const salv *v, const unsigned char *pg, size_t usable, size_t hdr,
                    uint32_t i, skey *k)
{
    memset(k, 0, sizeof *k);
    if (hdr + 12 > usable)
        return -1;
    unsigned type = pg[hdr];
    bool table = v->t->nkey == 1;
    if (table ? type != 0x0d && type != 0x05 : type != 0x0a && type != 0x02)
        return -1;
    bool interior = type == 0x05 || type == 0x02;
    size_t ptrs = hdr + (interior ? 12 : 8);
    if (i >= be16(pg + hdr + 3) || ptrs + 2 * i + 2 > usable)
        return -1;
    size_t off = be16(pg + ptrs + 2 * i);
    if (off < ptrs || off + (interior ? 4 : 0) >= usable)
        return -1;
    const unsigned char *p = pg + off + (interior ? 4 : 0), *end = pg + usable;
    uint64_t a, b;
    int n = varint(p, end, &a);
    if (!n)
        return -1;
    k->kind = K_VAL;
    if (table) {
        /* interior: the divider rowid; leaf: payload size, then rowid */
        if (!interior && !varint(p + n, end, &b))
            return -1;
        k->i = (int64_t)(interior ? a : b);
        return 0;
    }
    /* the part of an index payload surely on the page (minLocal) */
    size_t min_local = (usable - 12) * 32 / 255 - 23;
    size_t max_local = (usable - 12) * 64 / 255 - 23;
    size_t local = a <= max_local ? (size_t)a : min_local;
    if (p + n + local > end)
        return -1;
    return record_key(p + n, local, k);
}

/* Where to seek from for one page: its first cell (a seek reads on from
 * there), and every divider of an interior page. */
static void page_keys(const salv *v, const unsigned char *pg, size_t usable, size_t hdr,
                      cands *c)
{
    if (hdr + 12 > usable)
        return;
    bool interior = pg[hdr] == 0x05 || pg[hdr] == 0x02;
    uint32_t ncell = be16(pg + hdr + 3);
    for (uint32_t i = 0; i < ncell && (interior || i == 0); i++) {
        skey k;
        if (cell_key(v, pg, usable, hdr, i, &k) == 0)
            cand_add(c, &k);
        key_free(&k);
    }
}

static int cmp_key_int(const void *x, const void *y)
{
    int64_t a = ((const skey *)x)->i, b = ((const skey *)y)->i;
    return (a > b) - (a < b);
}

static int cmp_key_bytes(const void *x, const void *y)
{
    const skey *a = x, *b = y;
    size_t n = a->n < b->n ? a->n : b->n;
    int r = memcmp(a->s, b->s, n);
    return r ? r : (a->n > b->n) - (a->n < b->n);
}

/* ---- the file's pages as SQLite sees them --------------------------------
 * The newest committed version of each page: the WAL's last committed
 * frame for it, else the database file's. The freelist is walked so that
 * free pages (which may hold deleted rows) are never read for rows. */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct pages {
    int            fd, wfd;
    size_t         ps, usable;
    uint32_t       n;            /* pages in the database */
    off_t         *wal;          /* [pno]: where its newest committed frame's page is, or 0 */
    uint8_t       *free;         /* [pno]: on the freelist */
    bool           freelist_ok;  /* walked to its end, count as the header says */
    unsigned char *buf;
} pages;

static void pages_close(pages *pv)
{
    if (pv->fd >= 0)
        close(pv->fd);
    if (pv->wfd >= 0)
        close(pv->wfd);
    free(pv->wal);
    free(pv->free);
    free(pv->buf);
    memset(pv, 0, sizeof *pv);
    pv->fd = pv->wfd = -1;
}

static const unsigned char *page_get(pages *pv, uint32_t pno)
{
    if (!pno || pno > pv->n)
        return NULL;
    ssize_t r = pv->wal[pno] ? pread(pv->wfd, pv->buf, pv->ps, pv->wal[pno])
                             : pread(pv->fd, pv->buf, pv->ps, (off_t)(pno - 1) * (off_t)pv->ps);
    return r == (ssize_t)pv->ps ? pv->buf : NULL;
}

/* The committed frames of file-wal (salts as in its header). */
static void read_wal(pages *pv, const char *file, uint32_t *n)
{
    char wal[4300];
    lume_fmt(wal, sizeof wal, "%s-wal", file);
    unsigned char h[32], fh[24];
    if ((pv->wfd = open(wal, O_RDONLY | O_CLOEXEC)) < 0)
        return;
    if (pread(pv->wfd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        (be32(h) & 0xfffffffe) != 0x377f0682 || be32(h + 8) != pv->ps)
        return;
    off_t *pend = NULL;
    uint32_t *pendno = NULL;
    size_t np = 0, cap = 0;
    for (off_t f = 32; pread(pv->wfd, fh, sizeof fh, f) == (ssize_t)sizeof fh;
         f += 24 + (off_t)pv->ps) {
        if (be32(fh + 8) != be32(h + 16) || be32(fh + 12) != be32(h + 20) || !be32(fh))
            break;
        if (np == cap) {
            size_t nc = cap ? cap * 2 : 64;
            off_t *a = realloc(pend, nc * sizeof *a);
            uint32_t *b = a ? realloc(pendno, nc * sizeof *b) : NULL;
            if (a)
                pend = a;
            if (!a || !b)
                break;
            pendno = b;
            cap = nc;
        }
        pend[np] = f + 24;
        pendno[np++] = be32(fh);
        uint32_t commit = be32(fh + 4);
        if (!commit)
            continue;
        /* a commit: its frames count, the database has `commit` pages */
        uint32_t top = commit;
        for (size_t i = 0; i < np; i++)
            if (pendno[i] > top)
                top = pendno[i];
        if (top > *n) {
            off_t *w = realloc(pv->wal, ((size_t)top + 1) * sizeof *w);
            if (!w)
                break;
            memset(w + *n + 1, 0, (size_t)(top - *n) * sizeof *w);
            pv->wal = w;
            *n = top;
        }
        for (size_t i = 0; i < np; i++)
            pv->wal[pendno[i]] = pend[i];
        np = 0;
        pv->n = commit;
    }
    free(pend);
    free(pendno);
}

static int pages_open(pages *pv, const char *file)
{
    memset(pv, 0, sizeof *pv);
    pv->fd = pv->wfd = -1;
    unsigned char h[100];
    struct stat st;
    if ((pv->fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(pv->fd, &st) != 0 ||
        pread(pv->fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
        memcmp(h, "SQLite format 3", 16))
        goto fail;
    pv->ps = be16(h + 16) == 1 ? 65536 : be16(h + 16);
    if (pv->ps < 512 || (pv->ps & (pv->ps - 1)) || pv->ps - h[20] < 480)
        goto fail;
    pv->usable = pv->ps - h[20];
    uint32_t filen = (uint32_t)(st.st_size / (off_t)pv->ps), alloc = filen;
    pv->n = filen;
    if (!(pv->wal = calloc((size_t)alloc + 1, sizeof *pv->wal)) || !(pv->buf = malloc(pv->ps)))
        goto fail;
    read_wal(pv, file, &alloc);
    if (pv->n > alloc)
        pv->n = alloc;
    if (!(pv->free = calloc((size_t)alloc + 1, 1)))
        goto fail;
    /* the freelist, from the newest page 1 */
    const unsigned char *p1 = page_get(pv, 1);
    uint32_t trunk = p1 ? be32(p1 + 32) : 0, want = p1 ? be32(p1 + 36) : 1, seen = 0;
    for (uint32_t hops = 0; trunk && hops <= pv->n; hops++) {
        const unsigned char *t = page_get(pv, trunk);
        if (!t || pv->free[trunk])
            break;
        pv->free[trunk] = 1;
        seen++;
        uint32_t next = be32(t), k = be32(t + 4);
        if (k > pv->usable / 4 - 2)
            break;
        for (uint32_t i = 0; i < k; i++) {
            uint32_t leaf = be32(t + 8 + 4 * i);
            if (leaf && leaf <= pv->n && !pv->free[leaf]) {
                pv->free[leaf] = 1;
                seen++;
            }
        }
        trunk = next;
    }
    pv->freelist_ok = p1 && !trunk && seen == want;
    return 0;
fail:
    pages_close(pv);
    return -1;
}

/* Keys from every page in use. */
static void harvest(const salv *v, pages *pv, cands *c)
{
    for (uint32_t pno = 1; pno <= pv->n; pno++) {
        const unsigned char *pg = pv->free[pno] ? NULL : page_get(pv, pno);
        if (pg)
            page_keys(v, pg, pv->usable, pno == 1 ? 100 : 0, c);
    }
    if (c->n)
        qsort(c->k, c->n, sizeof *c->k, v->t->nkey == 1 ? cmp_key_int : cmp_key_bytes);
}

/* ---- rows from pages the b-tree cannot reach -------------------------------
 * A damaged interior page orphans every page below it: no seek reaches
 * them, though they are intact. Their cells are decoded here (record
 * format, overflow chains) and inserted like any salvaged row. Only leaves
 * in use are read (not on the freelist, newest committed version), so a
 * deleted row does not come back; without a readable freelist this step is
 * skipped. */

/* The payload of a cell whose local part is at p (local bytes) and total
 * size total; the overflow chain starts after the local part. malloc'd, or
 * NULL when the chain is broken. */
static unsigned char *payload(pages *pv, const unsigned char *p, size_t local, size_t total)
{
    if (total > (size_t)pv->n * pv->ps)
        return NULL;
    unsigned char *out = malloc(total ? total : 1);
    if (!out)
        return NULL;
    memcpy(out, p, local);
    size_t have = local;
    uint32_t next = local < total ? be32(p + local) : 0;
    for (uint32_t hops = 0; have < total && next && hops <= pv->n; hops++) {
        const unsigned char *ov = page_get(pv, next);
        if (!ov || pv->free[next])
            break;
        size_t k = total - have < pv->usable - 4 ? total - have : pv->usable - 4;
        memcpy(out + have, ov + 4, k);
        have += k;
        next = be32(ov);
    }
    if (have < total) {
        free(out);
        return NULL;
    }
    return out;
}

/* Bind a record's fields to v->ins and insert. rowid replaces a NULL first
 * field (an INTEGER PRIMARY KEY is stored as NULL). 0 inserted or skipped,
 * -EIO when dst failed. */
static int insert_record(salv *v, const unsigned char *rec, size_t n, bool has_rowid,
                         int64_t rowid)
{
    const unsigned char *end = rec + n;
    uint64_t hlen;
    int a = varint(rec, end, &hlen);
    if (!a || hlen > n)
        return 0;
    const unsigned char *h = rec + a, *d = rec + hlen;
    int col = 0;
    while (h < rec + hlen) {
        uint64_t t;
        int b = varint(h, rec + hlen, &t);
        if (!b || col >= v->t->ncols)
            return 0;
        h += b;
        static const uint8_t isz[] = {0, 1, 2, 3, 4, 6, 8, 8, 0, 0};
        size_t len = t < 10 ? isz[t] : t >= 12 ? (size_t)((t - 12) / 2) : (size_t)-1;
        if (len == (size_t)-1 || d + len > end)
            return 0;
        if (v->t->nkey == 2 && col < 2 && (t < 13 || !(t & 1)))
            return 0;   /* keys are TEXT: not a row of this table */
        int at = col + 1;
        if (t == 0) {
            if (has_rowid && col == 0)
                sqlite3_bind_int64(v->ins, at, rowid);
            else
                sqlite3_bind_null(v->ins, at);
        } else if (t <= 6) {
            int64_t x = (int8_t)d[0];
            for (size_t i = 1; i < len; i++)
                x = (int64_t)((uint64_t)x << 8 | d[i]);
            sqlite3_bind_int64(v->ins, at, x);
        } else if (t == 7) {
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | d[i];
            double f;
            memcpy(&f, &u, sizeof f);
            sqlite3_bind_double(v->ins, at, f);
        } else if (t == 8 || t == 9) {
            sqlite3_bind_int(v->ins, at, t == 9);
        } else if (t & 1) {
            sqlite3_bind_text(v->ins, at, (const char *)d, (int)len, SQLITE_TRANSIENT);
        } else {
            sqlite3_bind_blob(v->ins, at, d, (int)len, SQLITE_TRANSIENT);
        }
        d += len;
        col++;
    }
    if (col != v->t->ncols)
        return 0;
    int rc = sqlite3_step(v->ins);
    sqlite3_reset(v->ins);
    sqlite3_clear_bindings(v->ins);
    if (rc == SQLITE_DONE) {
        v->r->copied += sqlite3_changes(v->dst);
        return 0;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT || (rc & 0xff) == SQLITE_MISMATCH)
        return 0;
    lume_log(LUME_LOG_ERROR, COMP, "salvage: cannot write a row: %s", sqlite3_errmsg(v->dst));
    v->failed = true;
    return -EIO;
}

/* Is the key of cell i of pg already in dst? */
static bool have_key(salv *v, const unsigned char *pg, size_t usable, uint32_t i)
{
    skey k;
    bool have = false;
    if (cell_key(v, pg, usable, 0, i, &k) == 0) {
        key_bind(v, v->has, 1, &k);
        have = sqlite3_step(v->has) == SQLITE_ROW;
        sqlite3_reset(v->has);
    }
    key_free(&k);
    return have;
}

/* Rows from every page in use of the table's kind. 0, or -EIO. */
static int raw_rows(salv *v, pages *pv)
{
    if (!pv->freelist_ok)
        return 0;
    bool table = v->t->nkey == 1;
    unsigned char *leaf = malloc(pv->ps);
    if (!leaf)
        return 0;
    size_t u = pv->usable;
    size_t max_local = table ? u - 35 : (u - 12) * 64 / 255 - 23;
    size_t min_local = (u - 12) * 32 / 255 - 23;
    int res = 0;
    for (uint32_t pno = 2; pno <= pv->n && !res; pno++) {
        const unsigned char *pg = pv->free[pno] ? NULL : page_get(pv, pno);
        /* rows sit in table leaves; an index b-tree (WITHOUT ROWID) keeps
         * entries in its interior cells too */
        if (!pg || (table ? pg[0] != 0x0d : pg[0] != 0x0a && pg[0] != 0x02))
            continue;
        memcpy(leaf, pg, pv->ps);
        bool interior = leaf[0] == 0x02;
        size_t ptrs = interior ? 12 : 8;
        uint32_t ncell = be16(leaf + 3);
        if (ncell && have_key(v, leaf, u, 0) && have_key(v, leaf, u, ncell - 1))
            continue;   /* read whole through the b-tree already */
        for (uint32_t i = 0; i < ncell && ptrs + 2 * i + 2 <= u && !res; i++) {
            size_t off = be16(leaf + ptrs + 2 * i);
            if (off < ptrs || off + (interior ? 4 : 0) >= u)
                continue;
            const unsigned char *p = leaf + off + (interior ? 4 : 0), *end = leaf + u;
            uint64_t total, rowid = 0;
            int a = varint(p, end, &total), b = 0;
            if (!a || (table && !(b = varint(p + a, end, &rowid))))
                continue;
            p += a + b;
            size_t local = total;
            if (total > max_local) {
                size_t k = min_local + (size_t)((total - min_local) % (u - 4));
                local = k <= max_local ? k : min_local;
            }
            if (p + local + (local < total ? 4 : 0) > end)
                continue;
            unsigned char *rec = payload(pv, p, local, (size_t)total);
            if (!rec)
                continue;
            res = insert_record(v, rec, (size_t)total, table, (int64_t)rowid);
            free(rec);
        }
    }
    free(leaf);
    return res;
}

/* Seek from each harvested key not copied yet, reading until damage or a
 * row an earlier scan copied. */
static int follow_keys(salv *v, sqlite3_stmt *has, const cands *c)
{
    skey kmax = key_kind(K_MAX), first, last;
    int64_t rows;
    int res = 0;
    v->until_known = true;
    for (size_t i = 0; i < c->n && !res; i++) {
        if (i && (v->t->nkey == 1 ? cmp_key_int(&c->k[i], &c->k[i - 1])
                                  : cmp_key_bytes(&c->k[i], &c->k[i - 1])) == 0)
            continue;
        key_bind(v, has, 1, &c->k[i]);
        int hr = sqlite3_step(has);
        sqlite3_reset(has);
        if (hr == SQLITE_ROW)
            continue;
        v->r->probes++;
        key_bind(v, v->asc_ge, 1, &c->k[i]);
        key_bind(v, v->asc_ge, v->t->nkey + 1, &kmax);
        int r = scan(v, v->asc_ge, &first, &last, &rows);
        key_free(&first);
        key_free(&last);
        if (r < 0)
            res = r;
    }
    v->until_known = false;
    return res;
}

/* The rows an index names, read one by one. Returns true when the index
 * was read to its end. */
static bool follow_hints(salv *v, const char *sql)
{
    sqlite3_stmt *h = NULL;
    if (!sql || sqlite3_prepare_v2(v->src, sql, -1, &h, NULL) != SQLITE_OK) {
        sqlite3_finalize(h);
        return false;
    }
    int rc = SQLITE_DONE;
    while (!v->failed && (rc = sqlite3_step(h)) == SQLITE_ROW) {
        sqlite3_int64 id = sqlite3_column_int64(h, 0);
        if (!v->any_seen || id > v->max_seen)
            v->max_seen = id;
        v->any_seen = true;
        sqlite3_bind_int64(v->has, 1, id);
        int have = sqlite3_step(v->has);
        sqlite3_reset(v->has);
        if (have == SQLITE_ROW)
            continue;
        sqlite3_bind_int64(v->get, 1, id);
        int g = sqlite3_step(v->get);
        if (g == SQLITE_ROW)
            copy_row(v, v->get);
        else if (g != SQLITE_DONE)
            v->r->lost++;
        sqlite3_reset(v->get);
    }
    bool complete = !v->failed && rc == SQLITE_DONE;
    sqlite3_finalize(h);
    return complete;
}

int lume_salvage(sqlite3 *src, sqlite3 *dst, const lume_store_table *t,
                       lume_salvage_result *r)
{
    memset(r, 0, sizeof *r);
    salv v = {.src = src, .dst = dst, .t = t, .r = r};
    char keys[256], desc[256], lo_gt[256], lo_ge[256], hi[256], sql[2048];
    if (t->nkey == 1) {
        lume_fmt(keys, sizeof keys, "%s", t->key1);
        lume_fmt(desc, sizeof desc, "%s DESC", t->key1);
        lume_fmt(lo_gt, sizeof lo_gt, "%s > ?1", t->key1);
        lume_fmt(lo_ge, sizeof lo_ge, "%s >= ?1", t->key1);
        lume_fmt(hi, sizeof hi, "%s < ?2", t->key1);
    } else {
        lume_fmt(keys, sizeof keys, "%s, %s", t->key1, t->key2);
        lume_fmt(desc, sizeof desc, "%s DESC, %s DESC", t->key1, t->key2);
        lume_fmt(lo_gt, sizeof lo_gt, "(%s, %s) > (?1, ?2)", t->key1, t->key2);
        lume_fmt(lo_ge, sizeof lo_ge, "(%s, %s) >= (?1, ?2)", t->key1, t->key2);
        lume_fmt(hi, sizeof hi, "(%s, %s) < (?3, ?4)", t->key1, t->key2);
    }
    sqlite3_exec(src, "PRAGMA writable_schema=1", NULL, NULL, NULL);
    int res = 0;
    lume_fmt(sql, sizeof sql, "INSERT OR IGNORE INTO %s(%s) VALUES(", t->table, t->cols);
    for (int c = 0; c < t->ncols; c++)
        lume_fmt(sql + strlen(sql), sizeof sql - strlen(sql), "%s?%d", c ? "," : "", c + 1);
    lume_fmt(sql + strlen(sql), sizeof sql - strlen(sql), ")");
    if (sqlite3_prepare_v2(dst, sql, -1, &v.ins, NULL) != SQLITE_OK ||
        sqlite3_exec(dst, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        lume_log(LUME_LOG_ERROR, COMP, "salvage: cannot write the new file: %s",
                 sqlite3_errmsg(dst));
        sqlite3_finalize(v.ins);
        return -EIO;
    }
#define PREP(stmt, ...)                                                              \
    (lume_fmt(sql, sizeof sql, __VA_ARGS__),                                       \
     sqlite3_prepare_v2(src, sql, -1, &(stmt), NULL) == SQLITE_OK)
    bool ok = PREP(v.asc_gt, "SELECT %s FROM %s WHERE %s AND %s ORDER BY %s", t->cols, t->table,
                   lo_gt, hi, keys) &&
              PREP(v.asc_ge, "SELECT %s FROM %s WHERE %s AND %s ORDER BY %s", t->cols, t->table,
                   lo_ge, hi, keys) &&
              PREP(v.desc, "SELECT %s FROM %s WHERE %s AND %s ORDER BY %s", t->cols, t->table,
                   lo_gt, hi, desc);
#undef PREP
    if (!ok) {
        /* not even the schema can be read: nothing to salvage */
        r->damage = true;
        goto done;
    }

    skey kmin = key_kind(K_MIN), kmax = key_kind(K_MAX), first, last, bfirst, blast;
    int64_t rows;
    key_bind(&v, v.asc_ge, 1, &kmin);
    key_bind(&v, v.asc_ge, t->nkey + 1, &kmax);
    int s1 = scan(&v, v.asc_ge, &first, &last, &rows);
    if (s1 == 1) {
        /* from the other end down to where the first scan stopped */
        key_bind(&v, v.desc, 1, &last);
        key_bind(&v, v.desc, t->nkey + 1, &kmax);
        int s2 = scan(&v, v.desc, &bfirst, &blast, &rows);
        if (s2 == 1)
            push_gap(&v, &last, rows ? &blast : &kmax);
        key_free(&bfirst);
        key_free(&blast);
        if (s2 < 0)
            res = s2;
    } else if (s1 < 0) {
        res = s1;
    }
    key_free(&first);
    key_free(&last);

    if (t->nkey == 1)
        lume_fmt(sql, sizeof sql, "SELECT 1 FROM %s WHERE %s = ?1", t->table, t->key1);
    else
        lume_fmt(sql, sizeof sql, "SELECT 1 FROM %s WHERE %s = ?1 AND %s = ?2", t->table, t->key1,
             t->key2);
    if (!res && sqlite3_prepare_v2(dst, sql, -1, &v.has, NULL) != SQLITE_OK)
        res = -EIO;
    const char *file = sqlite3_db_filename(src, "main");
    bool raw_done = false;   /* every page in use was read: seeking further finds nothing */
    pages pv;
    if (!res && r->damage && file && *file && pages_open(&pv, file) == 0) {
        /* seeks from every key the pages name, then the leaves no seek
         * could reach */
        cands c = {0};
        harvest(&v, &pv, &c);
        res = follow_keys(&v, v.has, &c);
        for (size_t i = 0; i < c.n; i++)
            key_free(&c.k[i]);
        free(c.k);
        if (!res && pv.freelist_ok) {
            res = raw_rows(&v, &pv);
            raw_done = true;
        }
        pages_close(&pv);
    }

    bool hints_complete = false;
    if (!res && t->nkey == 1 && t->hints_asc) {
        {
            lume_fmt(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?1", t->cols, t->table,
                     t->key1);
            if (sqlite3_prepare_v2(src, sql, -1, &v.get, NULL) == SQLITE_OK) {
                hints_complete = follow_hints(&v, t->hints_asc);
                if (!hints_complete && !v.failed)
                    follow_hints(&v, t->hints_desc);
            }
        }
        if (v.failed)
            res = -EIO;
    }
    v.until_known = true;
    long budget = r->probes + PROBE_BUDGET;
    while (!res && !raw_done && v.qhead < v.qn && r->probes < budget) {
        gap g = v.q[v.qhead++];
        res = explore(&v, &g.lo, &g.hi);
        key_free(&g.lo);
        key_free(&g.hi);
    }
    r->exact = !r->damage || hints_complete;

done:
    for (size_t i = v.qhead; i < v.qn; i++) {
        key_free(&v.q[i].lo);
        key_free(&v.q[i].hi);
    }
    free(v.q);
    sqlite3_finalize(v.asc_gt);
    sqlite3_finalize(v.asc_ge);
    sqlite3_finalize(v.desc);
    sqlite3_finalize(v.get);
    sqlite3_finalize(v.has);
    sqlite3_finalize(v.ins);
    if (sqlite3_exec(dst, res ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK && !res) {
        lume_log(LUME_LOG_ERROR, COMP, "salvage: cannot commit the new file: %s",
                 sqlite3_errmsg(dst));
        res = -EIO;
    }
    return res;
}
