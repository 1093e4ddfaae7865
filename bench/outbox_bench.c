/* bench/outbox_bench.c — outbox throughput beside raw SQLite (the floor).
 *
 * lume: N messages (64-byte payload, topic "bench/outbox", telemetry lane,
 * QoS 1, no TTL) through lume_outbox_append, lume_outbox_commit after every
 * BATCH appends (commit_batch = BATCH, so the append that fills the batch
 * commits it), into a fresh outbox.db in DIR. The caps are raised above what
 * N messages need, so the cap check runs but never drops anything.
 *
 * floor: the same rows into a fresh file with raw SQLite: the outbox's
 * table and index (core/store/outbox.c schema_sql), one prepared INSERT with the
 * outbox's column list, BEGIN/COMMIT around every BATCH rows,
 * journal_mode=WAL and synchronous=NORMAL — what any SQLite-backed queue
 * pays at least.
 *
 * Each side runs ROUNDS times, alternating (floor, lume, floor, lume, ...),
 * each time into a new file; the best round of each is reported (the
 * machine is shared, and the best round is the one least disturbed).
 * Timing is from the first append/INSERT to the return of the last commit;
 * opening the file is not counted.
 *
 *   outbox_bench --dir DIR [--messages N] [--batch B] [--rounds R]
 * Prints one JSON line. Exit 1 when something failed. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "clock.h"
#include "outbox.h"

#define PAYLOAD_LEN 64
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

static void remove_db(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void fill_payload(unsigned char *buf, long i)
{
    for (int k = 0; k < PAYLOAD_LEN; k++)
        buf[k] = (unsigned char)('a' + (i + k) % 26);
}

/* Messages/s through raw SQLite, or a negative value on error. */
static double run_sqlite(const char *path, long n, int batch)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    double rate = -1;
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
    int64_t t0 = lume_mono_ns();
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
    int64_t t1 = lume_mono_ns();
    rate = (double)n / ((double)(t1 - t0) / 1e9);
    goto out;
err:
    fprintf(stderr, "outbox_bench: sqlite: %s\n", db ? sqlite3_errmsg(db) : "cannot open");
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    remove_db(path);
    return rate;
}

/* Messages/s through the outbox, or a negative value on error. */
static double run_lume(const char *path, long n, int batch)
{
    remove_db(path);
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
        return -1;
    }
    unsigned char payload[PAYLOAD_LEN];
    double rate = -1;
    int64_t t0 = lume_mono_ns();
    for (long i = 0; i < n; i += batch) {
        long end = i + batch < n ? i + batch : n;
        for (long j = i; j < end; j++) {
            fill_payload(payload, j);
            int r = lume_outbox_append(ob, LUME_LANE_TELEMETRY, TOPIC, payload, PAYLOAD_LEN, 1,
                                       0, NULL);
            if (r < 0) {
                fprintf(stderr, "outbox_bench: lume: append %ld: %s\n", j, strerror(-r));
                goto out;
            }
        }
        int r = lume_outbox_commit(ob);
        if (r < 0) {
            fprintf(stderr, "outbox_bench: lume: commit: %s\n", strerror(-r));
            goto out;
        }
    }
    int64_t t1 = lume_mono_ns();
    lume_outbox_stats st;
    lume_outbox_get_stats(ob, &st);
    uint64_t depth = st.depth[0] + st.depth[1] + st.depth[2];
    uint64_t lost = st.dropped[1] + st.refused[1];
    if (depth != (uint64_t)n || lost || st.pending) {
        fprintf(stderr, "outbox_bench: lume: expected %ld committed messages, depth %llu, "
                        "pending %llu, dropped/refused %llu\n", n, (unsigned long long)depth,
                (unsigned long long)st.pending, (unsigned long long)lost);
        goto out;
    }
    rate = (double)n / ((double)(t1 - t0) / 1e9);
out:
    lume_outbox_close(ob);
    remove_db(path);
    return rate;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long n = 1000000;
    int batch = 1000, rounds = 2;
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"messages", required_argument, NULL, 'n'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': dir = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (!dir || n <= 0 || batch <= 0 || rounds <= 0)
        goto usage;

    char lpath[4096], spath[4096];
    snprintf(lpath, sizeof lpath, "%s/outbox.db", dir);
    snprintf(spath, sizeof spath, "%s/raw.db", dir);
    double best_lume = 0, best_sqlite = 0;
    for (int r = 0; r < rounds; r++) {
        double s = run_sqlite(spath, n, batch);
        double l = run_lume(lpath, n, batch);
        if (s < 0 || l < 0)
            return 1;
        fprintf(stderr, "outbox_bench: round %d: lume %.0f msg/s, sqlite %.0f msg/s\n", r + 1,
                l, s);
        if (s > best_sqlite)
            best_sqlite = s;
        if (l > best_lume)
            best_lume = l;
    }
    printf("{\"messages\":%ld,\"batch\":%d,\"payload\":%d,\"rounds\":%d,"
           "\"lume_msgs_per_s\":%.0f,\"sqlite_msgs_per_s\":%.0f}\n",
           n, batch, PAYLOAD_LEN, rounds, best_lume, best_sqlite);
    return 0;
usage:
    fprintf(stderr, "usage: outbox_bench --dir DIR [--messages N] [--batch B] [--rounds R]\n");
    return 2;
}
