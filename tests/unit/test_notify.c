/* tests/unit/test_notify.c — the sd_notify protocol (core/base/notify.c) against
 * a datagram socket standing in for systemd: addresses (path, abstract,
 * unusable), what arrives, the watchdog's interval and owner, and that
 * nothing blocks when nobody reads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "notify.h"
#include "testutil.h"

static char g_dir[256];

static int group_setup(void **state)
{
    (void)state;
    lume_log_set_level(LUME_LOG_ERROR);
    return tu_tmpdir(g_dir, sizeof g_dir, "notify") < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

static int clear_env(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    return 0;
}

/* A listening datagram socket at addr (a path or @name). */
static int listener(const char *addr)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(addr);
    memcpy(sa.sun_path, addr, len);
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    if (addr[0] == '@') {
        sa.sun_path[0] = 0;
        sl--;
    } else {
        unlink(addr);
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sl), 0);
    return fd;
}

/* The next datagram within ms, NUL-terminated into buf; its length or -1. */
static ssize_t next_dgram(int fd, char *buf, size_t n, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return -1;
    ssize_t k = recv(fd, buf, n - 1, 0);
    if (k >= 0)
        buf[k] = 0;
    return k;
}

static void test_no_socket_no_object(void **state)
{
    (void)state;
    char *err = NULL;
    assert_null(lume_notify_open(&err));
    assert_null(err);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_null(lume_notify_open(&err));
    assert_null(err);
    /* every call takes NULL */
    assert_int_equal(lume_notify_send(NULL, "READY=1"), 0);
    assert_int_equal(lume_notify_watchdog_usec(NULL), 0);
    assert_int_equal(lume_notify_watchdog_start(NULL, NULL), -ENOENT);
    lume_notify_close(NULL);
}

static void test_unusable_addresses_are_named(void **state)
{
    (void)state;
    char *err = NULL;
    setenv("NOTIFY_SOCKET", "run/notify", 1);
    assert_null(lume_notify_open(&err));
    assert_non_null(err);
    assert_non_null(strstr(err, "NOTIFY_SOCKET=run/notify: expected an absolute path or @name"));
    free(err);
    err = NULL;
    char long_path[200];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = 0;
    setenv("NOTIFY_SOCKET", long_path, 1);
    assert_null(lume_notify_open(&err));
    assert_non_null(err);
    assert_non_null(strstr(err, "longer than"));
    free(err);
}

static void test_path_socket_gets_the_datagram(void **state)
{
    (void)state;
    const char *path = tu_path(g_dir, "notify.sock");
    int fd = listener(path);
    setenv("NOTIFY_SOCKET", path, 1);
    char *err = NULL;
    lume_notify *n = lume_notify_open(&err);
    assert_non_null(n);
    assert_int_equal(lume_notify_send(n, "READY=1\nSTATUS=running: %d sensors", 5), 0);
    char buf[512];
    assert_int_equal(next_dgram(fd, buf, sizeof buf, 1000),
                     (ssize_t)strlen("READY=1\nSTATUS=running: 5 sensors"));
    assert_string_equal(buf, "READY=1\nSTATUS=running: 5 sensors");
    assert_int_equal(lume_notify_watchdog_usec(n), 0); /* no WATCHDOG_USEC */
    assert_int_equal(lume_notify_watchdog_start(n, NULL), -ENOENT);
    lume_notify_close(n);
    close(fd);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof addr, "@lume-unit-%d", (int)getpid());
    int fd = listener(addr);
    setenv("NOTIFY_SOCKET", addr, 1);
    char *err = NULL;
    lume_notify *n = lume_notify_open(&err);
    assert_non_null(n);
    assert_int_equal(lume_notify_send(n, "STOPPING=1"), 0);
    char buf[64];
    assert_true(next_dgram(fd, buf, sizeof buf, 1000) > 0);
    assert_string_equal(buf, "STOPPING=1");
    lume_notify_close(n);
    close(fd);
}

static void test_watchdog_interval_and_owner(void **state)
{
    (void)state;
    const char *path = tu_path(g_dir, "wd.sock");
    int fd = listener(path);
    setenv("NOTIFY_SOCKET", path, 1);
    char *err = NULL;
    struct { const char *usec, *pid; int64_t want; } cases[] = {
        {"400000", NULL, 400000},
        {"400000", "self", 400000},
        {"400000", "1", 0},         /* another process's watchdog */
        {"abc", NULL, 0},
        {"0", NULL, 0},
        {"-5", NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv("WATCHDOG_USEC", cases[i].usec, 1);
        char pid[32];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if (cases[i].pid)
            setenv("WATCHDOG_PID", strcmp(cases[i].pid, "self") ? cases[i].pid : pid, 1);
        else
            unsetenv("WATCHDOG_PID");
        lume_notify *n = lume_notify_open(&err);
        assert_non_null(n);
        if (lume_notify_watchdog_usec(n) != cases[i].want)
            fail_msg("WATCHDOG_USEC=%s WATCHDOG_PID=%s: %lld, expected %lld", cases[i].usec,
                     cases[i].pid ? cases[i].pid : "(unset)",
                     (long long)lume_notify_watchdog_usec(n), (long long)cases[i].want);
        lume_notify_close(n);
    }
    close(fd);
}

static bool never(void *ud) { (void)ud; return false; }

static void test_watchdog_pings_from_the_loop(void **state)
{
    (void)state;
    const char *path = tu_path(g_dir, "ping.sock");
    int fd = listener(path);
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "40000", 1); /* a ping every 20 ms */
    char *err = NULL;
    lume_loop *l = lume_loop_new(NULL, &err);
    assert_non_null(l);
    lume_notify *n = lume_notify_open(&err);
    assert_non_null(n);
    assert_int_equal(lume_notify_watchdog_start(n, l), 0);
    lume_loop_drain(l, 210, never, NULL);
    uint64_t pings = lume_notify_pings(n);
    assert_true(pings >= 5 && pings <= 11); /* 10 due; a loaded machine comes late */
    char buf[64];
    unsigned got = 0;
    while (next_dgram(fd, buf, sizeof buf, 0) > 0) {
        assert_string_equal(buf, "WATCHDOG=1");
        got++;
    }
    assert_int_equal(got, pings);
    /* no loop turning, no pings */
    struct timespec ts = {0, 100 * 1000000};
    nanosleep(&ts, NULL);
    assert_int_equal(next_dgram(fd, buf, sizeof buf, 0), -1);
    lume_notify_close(n); /* before the loop: its timer lives there */
    lume_loop_free(l);
    close(fd);
}

static void test_never_blocks(void **state)
{
    (void)state;
    const char *path = tu_path(g_dir, "full.sock");
    int fd = listener(path);
    setenv("NOTIFY_SOCKET", path, 1);
    char *err = NULL;
    lume_notify *n = lume_notify_open(&err);
    assert_non_null(n);
    int r = 0;
    for (int i = 0; i < 100000 && r == 0; i++)
        r = lume_notify_send(n, "STATUS=%d", i);
    assert_int_equal(r, -EAGAIN); /* nobody reads: dropped, not waited for */
    close(fd);
    unlink(path);
    assert_int_equal(lume_notify_send(n, "READY=1"), -ENOENT); /* the manager went away */
    lume_notify_close(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_no_socket_no_object, clear_env),
        cmocka_unit_test_setup(test_unusable_addresses_are_named, clear_env),
        cmocka_unit_test_setup(test_path_socket_gets_the_datagram, clear_env),
        cmocka_unit_test_setup(test_abstract_socket, clear_env),
        cmocka_unit_test_setup(test_watchdog_interval_and_owner, clear_env),
        cmocka_unit_test_setup(test_watchdog_pings_from_the_loop, clear_env),
        cmocka_unit_test_setup(test_never_blocks, clear_env),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
