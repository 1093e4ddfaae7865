/* bench/outbox_bench.c — the outbox beside raw SQLite (the floor), over the
 * same work.
 *
 * 1. Throughput. lume: N messages (64-byte payload, topic "bench/outbox",
 *    telemetry lane, QoS 1, no TTL) through lume_outbox_append into a fresh
 *    outbox.db in DIR (commit_batch = BATCH: every full batch goes to the
 *    outbox's committer thread), then lume_outbox_close. floor: the same
 *    rows into a fresh file with raw SQLite: the outbox's table and index,
 *    one prepared INSERT with the outbox's column list, BEGIN/COMMIT around
 *    every BATCH rows, journal_mode=WAL, synchronous=NORMAL, SQLite's own
 *    checkpoints (wal_autocheckpoint=1000, inline), then sqlite3_close.
 *    Both sides are timed from the first append/INSERT to the return of
 *    close: every message committed, the WAL checkpointed into the
 *    database file and removed. Opening is not counted. The caps are raised
 *    above what N needs, so the cap check runs but never drops anything.
 *    Each side runs ROUNDS times, alternating (floor, lume, floor, ...), each
 *    time into a new file; min/median/max of the rounds are reported, and
 *    the process CPU time per message (lume's includes its committer and
 *    checkpointer threads).
 *
 * 2. A backlog of M messages (same messages, --backlog M, 0 to skip):
 *    - open: lume_outbox_open of a fresh file and of the file holding M
 *      messages (median of 5 opens each); beside it, the floor: raw
 *      sqlite3_open_v2 + "SELECT max(id)" (what any queue needs to go on),
 *      and the full scan lume's open used to run (count and bytes per lane);
 *    - drain: every message peeked, marked in flight and acked (64 at a
 *      time, as the MQTT session does), then lume_outbox_commit;
 *    - space: outbox.db + outbox.db-wal on disk with the backlog, after the
 *      drain once the committer has given the free pages back (its
 *      incremental vacuum, polled through stats.free_bytes, at most 120 s)
 *      and 3 s more (the WAL is cut back after the next checkpoint), and
 *      after close; beside the size of a fresh, empty outbox.
 *
 *   outbox_bench --dir DIR [--messages N] [--batch B] [--rounds R] [--backlog M]
 * Prints one JSON line. Exit 1 when something failed. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "outbox.h"

#define PAYLOAD_LEN 64
#define MAX_ROUNDS 32
static const char TOPIC[] = "bench/outbox";

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS outbox("
    " id INTEGER PRIMARY KEY,"
    " lane INTEGER NOT NULL,"
    " qos INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL DEFAULT 0,"
    " packet_id INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " topic TEXT NOT NULL,"
    " payload BLOB);"
    "CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox(lane, id);";
static const char INSERT[] =
    "INSERT INTO outbox(id,lane,qos,created_ms,expires_ms,packet_id,"
    "attempts,topic,payload) VALUES(?1,?2,?3,?4,?5,0,0,?6,?7)";
/* What lume_outbox_open ran before outbox_lanes kept the counts. */
static const char OLD_OPEN_SCAN[] =
    "SELECT lane, count(*), ifnull(sum(length(CAST(topic AS BLOB)) + ifnull(length(payload),0)),0),"
    " ifnull(sum(packet_id != 0),0) FROM outbox GROUP BY lane";

typedef struct run {
    double rate;     /* messages/s, wall clock */
    double cpu_us;   /* process CPU µs per message */
} run;

static void remove_db(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static long long file_size(const char *path, const char *suffix)
{
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
}

static long long db_bytes(const char *path)
{
    return file_size(path, "") + file_size(path, "-wal");
}

static int64_t cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * LUME_NS_PER_SEC +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static void fill_payload(unsigned char *buf, long i)
{
    for (int k = 0; k < PAYLOAD_LEN; k++)
        buf[k] = (unsigned char)('a' + (i + k) % 26);
}

/* Raw SQLite over the same work; rate < 0 on error. */
static run run_sqlite(const char *path, long n, int batch)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    run r = {-1, 0};
    remove_db(path);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(db, INSERT, -1, SQLITE_PREPARE_PERSISTENT, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK)
        goto err;
    unsigned char payload[PAYLOAD_LEN];
    int64_t t0 = lume_mono_ns(), c0 = cpu_ns();
    for (long i = 0; i < n; i += batch) {
        if (sqlite3_step(begin) != SQLITE_DONE)
            goto err;
        sqlite3_reset(begin);
        long end = i + batch < n ? i + batch : n;
        for (long j = i; j < end; j++) {
            fill_payload(payload, j);
            int64_t now = lume_wall_ms(); /* as the outbox stamps created_ms */
            sqlite3_bind_int64(ins, 1, j + 1);
            sqlite3_bind_int(ins, 2, LUME_LANE_TELEMETRY);
            sqlite3_bind_int(ins, 3, 1);
            sqlite3_bind_int64(ins, 4, now);
            sqlite3_bind_int64(ins, 5, 0);
            sqlite3_bind_text(ins, 6, TOPIC, (int)sizeof TOPIC - 1, SQLITE_STATIC);
            sqlite3_bind_blob(ins, 7, payload, PAYLOAD_LEN, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                goto err;
            sqlite3_reset(ins);
        }
        if (sqlite3_step(commit) != SQLITE_DONE)
            goto err;
        sqlite3_reset(commit);
    }
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    ins = begin = commit = NULL;
    if (sqlite3_close(db) != SQLITE_OK)   /* checkpoints and removes the WAL */
        goto err;
    db = NULL;
    int64_t t1 = lume_mono_ns(), c1 = cpu_ns();
    r.rate = (double)n / ((double)(t1 - t0) / 1e9);
    r.cpu_us = (double)(c1 - c0) / 1e3 / (double)n;
    goto out;
err:
    fprintf(stderr, "outbox_bench: sqlite: %s\n", db ? sqlite3_errmsg(db) : "cannot open");
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    remove_db(path);
    return r;
}

static lume_outbox *open_lume(const char *path, long n, int batch)
{
    lume_outbox_opts o;
    lume_outbox_opts_default(&o);
    o.commit_batch = batch;
    o.max_messages = 2 * (int64_t)n + 1000;
    o.max_bytes = 4 * (int64_t)n * (PAYLOAD_LEN + (int64_t)sizeof TOPIC) + (1 << 20);
    char *err = NULL;
    lume_outbox *ob = lume_outbox_open(path, &o, &err);
    if (!ob) {
        fprintf(stderr, "outbox_bench: lume: %s\n", err ? err : "cannot open");
        free(err);
    }
    return ob;
}

/* n messages through lume_outbox_append into path (the caller removes it);
 * with t: timed, including close. 0 or -1. */
static int fill_lume(const char *path, long n, int batch, run *t)
{
    lume_outbox *ob = open_lume(path, n, batch);
    if (!ob)
        return -1;
    unsigned char payload[PAYLOAD_LEN];
    int64_t t0 = lume_mono_ns(), c0 = cpu_ns();
    for (long j = 0; j < n; j++) {
        fill_payload(payload, j);
        int r = lume_outbox_append(ob, LUME_LANE_TELEMETRY, TOPIC, payload, PAYLOAD_LEN, 1, 0,
                                   NULL);
        if (r < 0) {
            fprintf(stderr, "outbox_bench: lume: append %ld: %s\n", j, strerror(-r));
            lume_outbox_close(ob);
            return -1;
        }
    }
    lume_outbox_close(ob);   /* the barrier, the threads, the last checkpoint */
    int64_t t1 = lume_mono_ns(), c1 = cpu_ns();
    if (t) {
        t->rate = (double)n / ((double)(t1 - t0) / 1e9);
        t->cpu_us = (double)(c1 - c0) / 1e3 / (double)n;
    }
    /* Everything made it (not timed). */
    ob = open_lume(path, n, batch);
    if (!ob)
        return -1;
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    lume_outbox_close(ob);
    uint64_t depth = st.depth[0] + st.depth[1] + st.depth[2];
    uint64_t lost = st.dropped[1] + st.refused[1];
    if (depth != (uint64_t)n || lost) {
        fprintf(stderr, "outbox_bench: lume: expected %ld committed messages, depth %llu, "
                        "dropped/refused %llu\n", n, (unsigned long long)depth,
                (unsigned long long)lost);
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* {"rounds":[...],"min":..,"median":..,"max":..,"cpu_us_median":..} */
static void print_side(const char *name, const run *r, int n)
{
    double rate[MAX_ROUNDS], cpu[MAX_ROUNDS];
    printf("\"%s\":{\"rounds\":[", name);
    for (int i = 0; i < n; i++) {
        printf("%s%.0f", i ? "," : "", r[i].rate);
        rate[i] = r[i].rate;
        cpu[i] = r[i].cpu_us;
    }
    double med = median(rate, n);
    printf("],\"min\":%.0f,\"median\":%.0f,\"max\":%.0f,\"cpu_us_median\":%.3f}", rate[0], med,
           rate[n - 1], median(cpu, n));
}

/* Median of 5 timed opens (ms) of path: lume (raw = false) or raw SQLite +
 * max(id). -1 on error. */
static double time_open(const char *path, bool raw)
{
    double ms[5];
    for (int i = 0; i < 5; i++) {
        int64_t t0 = lume_mono_ns();
        if (raw) {
            sqlite3 *db = NULL;
            sqlite3_stmt *s = NULL;
            if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
                sqlite3_prepare_v2(db, "SELECT max(id) FROM outbox", -1, &s, NULL) !=
                    SQLITE_OK ||
                sqlite3_step(s) != SQLITE_ROW) {
                sqlite3_finalize(s);
                sqlite3_close(db);
                return -1;
            }
            ms[i] = (double)(lume_mono_ns() - t0) / 1e6;
            sqlite3_finalize(s);
            sqlite3_close(db);
        } else {
            char *err = NULL;
            lume_outbox *ob = lume_outbox_open(path, NULL, &err);
            ms[i] = (double)(lume_mono_ns() - t0) / 1e6;
            if (!ob) {
                fprintf(stderr, "outbox_bench: open: %s\n", err ? err : "?");
                free(err);
                return -1;
            }
            lume_outbox_close(ob);
        }
    }
    return median(ms, 5);
}

/* The scan lume's open used to run, timed (ms); -1 on error. */
static double time_old_scan(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    double ms = -1;
    int64_t t0 = lume_mono_ns();
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, OLD_OPEN_SCAN, -1, &s, NULL) == SQLITE_OK) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            ;
        if (rc == SQLITE_DONE)
            ms = (double)(lume_mono_ns() - t0) / 1e6;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return ms;
}

static int backlog(const char *dir, long m, int batch)
{
    char path[4096], empty[4096];
    snprintf(path, sizeof path, "%s/backlog.db", dir);
    snprintf(empty, sizeof empty, "%s/empty.db", dir);
    remove_db(path);
    remove_db(empty);
    lume_outbox *ob = open_lume(empty, 0, batch);
    if (!ob)
        return -1;
    lume_outbox_close(ob);
    long long empty_size = db_bytes(empty);
    double open_empty = time_open(empty, false), raw_empty = time_open(empty, true);

    if (fill_lume(path, m, batch, NULL) < 0)
        return -1;
    long long full_size = db_bytes(path);
    double open_full = time_open(path, false), raw_full = time_open(path, true);
    double scan = time_old_scan(path);
    if (open_empty < 0 || open_full < 0 || raw_empty < 0 || raw_full < 0 || scan < 0)
        return -1;

    /* drain, as the MQTT session does */
    ob = open_lume(path, m, batch);
    if (!ob)
        return -1;
    static lume_outbox_msg msg[64];
    long drained = 0;
    uint16_t pid = 1;
    int64_t t0 = lume_mono_ns();
    int n;
    while ((n = lume_outbox_peek(ob, msg, 64)) > 0) {
        for (int i = 0; i < n; i++) {
            if (lume_outbox_mark_inflight(ob, msg[i].id, pid) < 0 ||
                lume_outbox_ack(ob, msg[i].id) < 0) {
                fprintf(stderr, "outbox_bench: drain: mark/ack failed\n");
                lume_outbox_close(ob);
                return -1;
            }
            pid = (uint16_t)(pid + 1) ? (uint16_t)(pid + 1) : 1;
            lume_outbox_msg_clear(&msg[i]);
        }
        drained += n;
    }
    int rc = lume_outbox_commit(ob);
    double drain_s = (double)(lume_mono_ns() - t0) / 1e9;
    if (n < 0 || rc < 0 || drained != m) {
        fprintf(stderr, "outbox_bench: drain: %ld of %ld drained\n", drained, m);
        lume_outbox_close(ob);
        return -1;
    }
    /* the committer gives the free pages back between commits */
    lume_outbox_stats st;
    int64_t r0 = lume_mono_ns();
    do {
        usleep(20000);
        lume_outbox_get_stats(ob, &st);
    } while (st.free_bytes >= 1024 * 1024 && lume_mono_ns() - r0 < 120 * LUME_NS_PER_SEC);
    double reclaim_s = (double)(lume_mono_ns() - r0) / 1e9;
    /* one checkpointer period (1 s) and more for the WAL to be cut back */
    usleep(3000000);
    long long drained_open = db_bytes(path);
    unsigned long long free_left = st.free_bytes;
    lume_outbox_close(ob);
    long long drained_closed = db_bytes(path);
    remove_db(path);
    remove_db(empty);
    printf(",\"backlog\":{\"messages\":%ld,\"open_empty_ms\":%.3f,\"open_backlog_ms\":%.3f,"
           "\"raw_open_empty_ms\":%.3f,\"raw_open_backlog_ms\":%.3f,\"old_scan_ms\":%.1f,"
           "\"drain_s\":%.2f,\"reclaim_s\":%.2f,\"free_bytes_left\":%llu,"
           "\"size_empty\":%lld,\"size_backlog\":%lld,\"size_drained_open\":%lld,"
           "\"size_drained_closed\":%lld}",
           m, open_empty, open_full, raw_empty, raw_full, scan, drain_s, reclaim_s, free_left,
           empty_size, full_size, drained_open, drained_closed);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long n = 1000000, m = 1000000;
    int batch = 1000, rounds = 3;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"messages", required_argument, NULL, 'n'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"backlog", required_argument, NULL, 'm'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'm': m = atol(optarg); break;
        default: goto usage;
        }
    }
    if (!dir || n <= 0 || batch <= 0 || rounds <= 0 || rounds > MAX_ROUNDS || m < 0)
        goto usage;

    char lpath[4096], spath[4096];
    snprintf(lpath, sizeof lpath, "%s/outbox.db", dir);
    snprintf(spath, sizeof spath, "%s/raw.db", dir);
    run lume[MAX_ROUNDS], raw[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        raw[r] = run_sqlite(spath, n, batch);
        int rc = fill_lume(lpath, n, batch, &lume[r]);
        remove_db(lpath);
        if (raw[r].rate < 0 || rc < 0)
            return 1;
        fprintf(stderr, "outbox_bench: round %d: lume %.0f msg/s (%.2f µs CPU/msg), "
                        "sqlite %.0f msg/s (%.2f µs CPU/msg)\n", r + 1, lume[r].rate,
                lume[r].cpu_us, raw[r].rate, raw[r].cpu_us);
    }
    printf("{\"messages\":%ld,\"batch\":%d,\"payload\":%d,\"rounds\":%d,", n, batch,
           PAYLOAD_LEN, rounds);
    print_side("lume", lume, rounds);
    printf(",");
    print_side("sqlite", raw, rounds);
    if (m > 0 && backlog(dir, m, batch) < 0)
        return 1;
    printf("}\n");
    return 0;
usage:
    fprintf(stderr, "usage: outbox_bench --dir DIR [--messages N] [--batch B] [--rounds R] "
                    "[--backlog M]\n");
    return 2;
}
