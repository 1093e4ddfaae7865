/* tests/unit/test_api.c — the embedding API (bindings/lume.h) as an OEM
 * program uses it: config handles and their setters, two runtimes in one
 * process each with its own log sink and level, and what lume_runtime_new
 * must leave alone: the umask, the calling thread's CPU affinity, the
 * process's log level and default sink, the embedder's signal handlers.
 *
 * Only the watchdog test reaches inside (script.h, scripts.h), to make a script hang. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "script.h"
#include "scripts.h"
#include "config.h"
#include "log.h"
#include "lume.h"
#include "testutil.h"

static char dir[512];
static char root[512];

static int setup(void **state)
{
    (void)state;
    if (!getcwd(root, sizeof root)) /* tests/run runs us from the tree's top */
        return -1;
    return tu_tmpdir(dir, sizeof dir, "api") < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(dir);
    return 0;
}

/* ---- a sink that keeps its lines -------------------------------------- */

typedef struct {
    char   text[65536];
    size_t len;
    int    lines;
    int    below;  /* lines under the level it was given */
    int    level;
} capture;

static void capture_sink(void *ud, int level, const char *component, const char *msg)
{
    capture *c = ud;
    c->lines++;
    if (level < c->level)
        c->below++;
    int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%d %s: %s\n", level,
                     component, msg);
    if (n > 0 && c->len + (size_t)n < sizeof c->text)
        c->len += (size_t)n;
}

static capture g_default; /* the process default sink, for lines that leak */

/* A device under dir/<name>: one script, the config built key by key. */
static lume_config *device(const char *name, const char *script, const char *level)
{
    char d[700], scripts[760], store[760];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    snprintf(scripts, sizeof scripts, "%s/scripts", d);
    snprintf(store, sizeof store, "%s/var", d);
    mkdir(d, 0755);
    mkdir(scripts, 0755);
    assert_int_equal(tu_write_text(tu_path(scripts, "talk.lua"), script), 0);
    char boards[600], stdlib[600];
    snprintf(boards, sizeof boards, "%s/boards", root);
    snprintf(stdlib, sizeof stdlib, "%s/stdlib", root);
    lume_config *cfg = lume_config_new();
    assert_non_null(cfg);
    char *err = NULL;
    struct { const char *k, *v; } s[] = {
        {"device_id", name}, {"board", "sim"}, {"boards_dir", boards},
        {"stdlib_dir", stdlib}, {"scripts_dir", scripts}, {"store", store},
        {"log_level", level}};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        if (lume_config_set_string(cfg, s[i].k, s[i].v, &err) < 0)
            fail_msg("%s: %s", s[i].k, err);
    assert_int_equal(lume_config_set_int(cfg, "status_interval_ms", 0, &err), 0);
    assert_null(err);
    assert_int_equal(lume_config_set_bool(cfg, "watch_scripts", false, &err), 0);
    return cfg;
}

/* ---- config handles ----------------------------------------------------- */

static void test_version(void **state)
{
    (void)state;
    assert_string_equal(lume_version(), LUME_VERSION);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", LUME_VERSION_NUM >> 16, (LUME_VERSION_NUM >> 8) & 0xff,
             LUME_VERSION_NUM & 0xff);
    assert_string_equal(v, LUME_VERSION);
}

static void test_config_setters(void **state)
{
    (void)state;
    lume_config *cfg = lume_config_new();
    assert_non_null(cfg);
    char *err = NULL;
    assert_int_equal(lume_config_set_string(cfg, "sandbox.memory_limit", "4MiB", &err), 0);
    assert_null(err);
    assert_int_equal(lume_config_set_int(cfg, "sandbox.memory_limit", 1 << 20, &err), 0);
    assert_int_equal(lume_config_set_string(cfg, "twin.groups", "fleet,site-a", &err), 0);
    assert_int_equal(lume_config_set_string(cfg, "outbox.synchronous", "full", &err), 0);
    assert_int_equal(lume_config_set_bool(cfg, "net.tls_insecure", true, &err), 0);

    /* an unknown key: -ENOENT, and the message suggests the nearest one */
    assert_int_equal(lume_config_set_int(cfg, "sandbox.memory_limt", 1, &err), -ENOENT);
    assert_non_null(err);
    assert_non_null(strstr(err, "did you mean 'sandbox.memory_limit'"));
    lume_free(err);
    /* out of range, wrong type: -EINVAL naming the key and the value */
    assert_int_equal(lume_config_set_int(cfg, "sampler.priority", 100, &err), -EINVAL);
    assert_non_null(strstr(err, "sampler.priority"));
    assert_non_null(strstr(err, "100"));
    lume_free(err);
    assert_int_equal(lume_config_set_bool(cfg, "sampler.priority", true, &err), -EINVAL);
    lume_free(err);
    assert_int_equal(lume_config_set_string(cfg, "sandbox", "big", &err), -EINVAL);
    lume_free(err);
    assert_int_equal(lume_config_set_string(cfg, "device_id", NULL, &err), -EINVAL);
    lume_free(err);
    /* err may be NULL */
    assert_int_equal(lume_config_set_int(cfg, "nosuch", 1, NULL), -ENOENT);
    assert_int_equal(lume_config_load(cfg, tu_path(dir, "missing.lua"), NULL), -EINVAL);
    assert_int_equal(lume_config_load(cfg, tu_path(dir, "missing.lua"), &err), -EINVAL);
    assert_non_null(strstr(err, "missing.lua"));
    lume_free(err);
    /* a config file, then a key on top of it */
    assert_int_equal(tu_write_text(tu_path(dir, "c.lua"),
                                   "return { device_id = 'from-file', sandbox = { "
                                   "cpu_budget_ms = 20 } }\n"), 0);
    assert_int_equal(lume_config_load(cfg, tu_path(dir, "c.lua"), &err), 0);
    assert_null(err);
    lume_config_free(cfg);
    lume_config_free(NULL);
    lume_free(NULL);
}

/* Keys that do not go together come back from lume_runtime_new as EINVAL
 * (the setters check one key; the checks across keys run there). */
static void test_runtime_new_checks_config(void **state)
{
    (void)state;
    lume_config *cfg = lume_config_new();
    char *err = NULL;
    assert_int_equal(lume_config_set_int(cfg, "net.backoff_min_ms", 5000, &err), 0);
    assert_int_equal(lume_config_set_int(cfg, "net.backoff_max_ms", 1000, &err), 0);
    errno = 0;
    assert_null(lume_runtime_new(cfg, &err));
    assert_int_equal(errno, EINVAL);
    assert_non_null(strstr(err, "net.backoff_min_ms"));
    lume_free(err);
    assert_null(lume_runtime_new(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    lume_config_free(cfg);
}

/* ---- two runtimes, two sinks ------------------------------------------ */

static capture cap_a, cap_b;

static void test_two_runtimes_two_sinks(void **state)
{
    (void)state;
    lume_log_set_sink(capture_sink, &g_default);
    int process_level = lume_log_get_level();
    memset(&cap_a, 0, sizeof cap_a);
    memset(&cap_b, 0, sizeof cap_b);
    cap_a.level = LUME_LOG_DEBUG;
    cap_b.level = LUME_LOG_WARN;
    lume_config *a = device("dev-a",
                            "lume.log.debug('debug from a')\n"
                            "lume.timer.every(50, function() lume.log.info('tick from a') end)\n",
                            "debug");
    lume_config *b = device("dev-b",
                            "lume.log.info('quiet from b')\n"
                            "lume.timer.every(50, function() lume.log.warn('tick from b') end)\n",
                            "warn");
    lume_config_set_log(a, capture_sink, &cap_a);
    lume_config_set_log(b, capture_sink, &cap_b);
    char *err = NULL;
    lume_runtime *ra = lume_runtime_new(a, &err);
    if (!ra)
        fail_msg("dev-a: %s", err);
    lume_runtime *rb = lume_runtime_new(b, &err);
    if (!rb)
        fail_msg("dev-b: %s", err);
    lume_config_free(a);
    lume_config_free(b);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lume_runtime_run_for(ra, 120), 0);
        assert_int_equal(lume_runtime_run_for(rb, 120), 0);
    }
    assert_int_equal(lume_runtime_reload(ra, "talk", &err), 0);
    assert_int_equal(lume_runtime_reload(rb, "nosuch", &err), -ENOENT);
    lume_free(err);
    lume_runtime_free(ra);
    lume_runtime_free(rb);

    /* each runtime's lines in its own sink, at its own level */
    assert_non_null(strstr(cap_a.text, "device dev-a on board sim")); /* info, from new */
    assert_non_null(strstr(cap_a.text, "debug from a"));
    assert_non_null(strstr(cap_a.text, "tick from a"));
    assert_null(strstr(cap_a.text, "from b"));
    assert_null(strstr(cap_a.text, "dev-b"));
    assert_non_null(strstr(cap_b.text, "tick from b"));
    assert_null(strstr(cap_b.text, "quiet from b")); /* info: below dev-b's warn */
    assert_null(strstr(cap_b.text, "device dev-b"));
    assert_null(strstr(cap_b.text, "from a"));
    assert_int_equal(cap_b.below, 0);
    /* nothing of theirs in the process default sink, whose level they left */
    assert_null(strstr(g_default.text, "from a"));
    assert_null(strstr(g_default.text, "from b"));
    assert_null(strstr(g_default.text, "dev-"));
    assert_int_equal(lume_log_get_level(), process_level);
    lume_log_set_sink(NULL, NULL);
}

/* ---- what lume_runtime_new leaves alone ------------------------------- */

static mode_t current_umask(void)
{
    mode_t m = umask(0);
    umask(m);
    return m;
}

static bool same_affinity(const cpu_set_t *x, const cpu_set_t *y)
{
    return CPU_EQUAL(x, y);
}

static void test_umask_and_socket_mode(void **state)
{
    (void)state;
    mode_t before = umask(0); /* the most permissive an embedder could have */
    lume_config *cfg = device("dev-u", "\n", "warn");
    lume_runtime *rt = lume_runtime_new(cfg, NULL);
    lume_config_free(cfg);
    assert_non_null(rt);
    mode_t during = current_umask();
    struct stat st;
    char sock[700];
    snprintf(sock, sizeof sock, "%s/dev-u/var/lume.sock", dir);
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600); /* even under umask 0 */
    /* the private directory it was bound in is gone */
    char var[700];
    snprintf(var, sizeof var, "%s/dev-u/var", dir);
    DIR *dp = opendir(var);
    assert_non_null(dp);
    for (struct dirent *e; (e = readdir(dp));)
        assert_null(strstr(e->d_name, ".sock."));
    closedir(dp);
    lume_runtime_free(rt);
    mode_t after = current_umask();
    umask(before);
    assert_int_equal(during, 0);
    assert_int_equal(after, 0);
}

static void on_pipe(int sig) { (void)sig; }

static void (*handler_of(int sig))(int)
{
    struct sigaction sa;
    assert_int_equal(sigaction(sig, NULL, &sa), 0);
    return sa.sa_handler;
}

/* The embedder's handlers stay; SIGPIPE at its default (end the process)
 * becomes ignored, by libwebsockets (as lume.h says). */
static void test_signal_handlers(void **state)
{
    (void)state;
    struct sigaction mine = {.sa_handler = on_pipe}, dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&mine.sa_mask);
    sigemptyset(&dfl.sa_mask);
    void (*term)(int) = handler_of(SIGTERM), (*intr)(int) = handler_of(SIGINT);
    assert_int_equal(sigaction(SIGPIPE, &mine, NULL), 0);
    lume_config *cfg = device("dev-s", "\n", "warn");
    lume_runtime *rt = lume_runtime_new(cfg, NULL);
    assert_non_null(rt);
    assert_ptr_equal(handler_of(SIGPIPE), on_pipe);
    assert_ptr_equal(handler_of(SIGTERM), term);
    assert_ptr_equal(handler_of(SIGINT), intr);
    lume_runtime_free(rt);
    assert_int_equal(sigaction(SIGPIPE, &dfl, NULL), 0);
    rt = lume_runtime_new(cfg, NULL);
    lume_config_free(cfg);
    assert_non_null(rt);
    assert_ptr_equal(handler_of(SIGPIPE), SIG_IGN);
    lume_runtime_free(rt);
}

/* The threads of this process named comm (lume-sampler, ...): their
 * CPU masks, OR'ed into *out. Returns how many there were. */
static int threads_mask(const char *comm, cpu_set_t *out)
{
    CPU_ZERO(out);
    DIR *dp = opendir("/proc/self/task");
    assert_non_null(dp);
    int n = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(name, sizeof name, f))
            name[0] = 0;
        fclose(f);
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, comm))
            continue;
        cpu_set_t set;
        CPU_ZERO(&set);
        assert_int_equal(sched_getaffinity((pid_t)atoi(e->d_name), sizeof set, &set), 0);
        CPU_OR(out, out, &set);
        n++;
    }
    closedir(dp);
    return n;
}

static void test_affinity(void **state)
{
    (void)state;
    cpu_set_t before, after;
    CPU_ZERO(&before);
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof before, &before), 0);

    /* sampler.cpu unset: nothing pinned, anywhere */
    lume_config *cfg = device("dev-c", "\n", "warn");
    lume_runtime *rt = lume_runtime_new(cfg, NULL);
    assert_non_null(rt);
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof after, &after), 0);
    assert_true(same_affinity(&before, &after));
    assert_int_equal(lume_runtime_run_for(rt, 50), 0);
    cpu_set_t m;
    assert_int_equal(threads_mask("lume-sampler", &m), 1);
    assert_true(same_affinity(&m, &before));
    lume_runtime_free(rt);

    /* sampler.cpu set: the sampler on that CPU, the runtime's other threads
     * off it, the caller as it was */
    int cpu = -1;
    for (int i = CPU_SETSIZE - 1; i >= 0 && cpu < 0; i--)
        if (CPU_ISSET(i, &before))
            cpu = i;
    if (CPU_COUNT(&before) < 2) {
        lume_config_free(cfg);
        skip(); /* one CPU: sampler.cpu pins nothing (and says so) */
    }
    char *err = NULL;
    assert_int_equal(lume_config_set_int(cfg, "sampler.cpu", cpu, &err), 0);
    rt = lume_runtime_new(cfg, &err);
    lume_config_free(cfg);
    if (!rt)
        fail_msg("%s", err);
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof after, &after), 0);
    assert_true(same_affinity(&before, &after));
    assert_int_equal(lume_runtime_run_for(rt, 50), 0);
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof after, &after), 0);
    assert_true(same_affinity(&before, &after));
    assert_int_equal(threads_mask("lume-sampler", &m), 1);
    assert_int_equal(CPU_COUNT(&m), 1);
    assert_true(CPU_ISSET(cpu, &m));
    assert_int_equal(threads_mask("lume-watchdog", &m), 1);
    assert_false(CPU_ISSET(cpu, &m));
    if (threads_mask("lume-ckpt", &m) > 0)
        assert_false(CPU_ISSET(cpu, &m));
    lume_runtime_free(rt);
}

/* ---- a line from one of the runtime's own threads -------------------- */

static int g_sink_fd = -1;

static void fd_sink(void *ud, int level, const char *component, const char *msg)
{
    (void)ud;
    char line[1400];
    int n = snprintf(line, sizeof line, "%d %s: %s\n", level, component, msg);
    if (n > 0 && write(g_sink_fd, line, (size_t)n) < 0)
        return;
}

static int c_block(lua_State *L)
{
    (void)L;
    struct timespec ts = {30, 0};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

/* The watchdog thread's last words (a hung script) reach the runtime's sink,
 * not the process default (stderr): threads the runtime starts log where it
 * does. In a child, since the watchdog then ends the process. */
static void test_watchdog_thread_logs_to_runtime_sink(void **state)
{
    (void)state;
    const char *out = tu_path(dir, "hang-sink.log");
    const char *errf = tu_path(dir, "hang-stderr.log");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        g_sink_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
        lume_config *cfg = device("dev-h", "lume.timer.every(20, function() blocker() end)\n",
                                  "info");
        char *err = NULL;
        if (lume_config_set_int(cfg, "sandbox.cpu_budget_ms", 20, &err) < 0 ||
            lume_config_set_int(cfg, "sandbox.load_budget_ms", 100, &err) < 0 ||
            lume_config_set_int(cfg, "sandbox.hang_limit_ms", 300, &err) < 0)
            _exit(12);
        lume_config_set_log(cfg, fd_sink, NULL);
        lume_runtime *rt = lume_runtime_new(cfg, &err);
        if (!rt)
            _exit(10);
        lume_script *s = lume_scripts_find(rt, "talk");
        if (!s || !s->L)
            _exit(13);
        lua_register(s->L, "blocker", c_block);
        lume_runtime_run_for(rt, 20000);
        _exit(11);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);
    char buf[8192] = "";
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "3 script talk: hung:"));
    f = fopen(errf, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_null(strstr(buf, "hung"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_config_setters),
        cmocka_unit_test(test_runtime_new_checks_config),
        cmocka_unit_test(test_two_runtimes_two_sinks),
        cmocka_unit_test(test_umask_and_socket_mode),
        cmocka_unit_test(test_affinity),
        cmocka_unit_test(test_signal_handlers),
        cmocka_unit_test(test_watchdog_thread_logs_to_runtime_sink),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
