/* tests/unit/testutil.c — helpers shared by lume's C unit tests; see
 * testutil.h. Nothing here asserts: every failure is a return value. */
#include "testutil.h"
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- folders and files ------------------------------------------------- */

int tu_tmpdir(char *dir, size_t size, const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(dir, size, "%s/lume-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "tu_tmpdir: $TMPDIR/lume-%s-XXXXXX does not fit in %zu bytes\n", tag,
                size);
        if (size)
            dir[0] = '\0';
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(dir)) {
        int e = errno;
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(e));
        dir[0] = '\0';
        return -e;
    }
    return 0;
}

void tu_rm_tree(const char *dir)
{
    if (!dir || !*dir)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int n = snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (n < 0 || (size_t)n >= sizeof p)
            continue;
        bool sub = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            sub = lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (sub)
            tu_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#define TU_PATHS   128
#define TU_PATHLEN 512

const char *tu_path(const char *dir, const char *name)
{
    static char slot[TU_PATHS][TU_PATHLEN];
    static int used;
    char p[TU_PATHLEN];
    int n = snprintf(p, sizeof p, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof p) {
        fprintf(stderr, "tu_path: %s/%s is too long\n", dir, name);
        abort();
    }
    for (int i = 0; i < used; i++)
        if (!strcmp(slot[i], p))
            return slot[i];
    if (used == TU_PATHS) {
        fprintf(stderr, "tu_path: more than %d paths\n", TU_PATHS);
        abort();
    }
    memcpy(slot[used], p, (size_t)n + 1);
    return slot[used++];
}

int tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t n = fwrite(data, 1, len, fp);
    return fclose(fp) == 0 && n == len ? 0 : -1;
}

int tu_write_text(const char *path, const char *text)
{
    return tu_write_file(path, text, strlen(text));
}

void tu_dump_logs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_MAX], buf[4096];
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(p, "r");
        if (!fp)
            continue;
        fprintf(stderr, "---- %s\n", p);
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, fp)) > 0)
            fwrite(buf, 1, k, stderr);
        fclose(fp);
    }
    closedir(d);
}

/* ---- processes ---------------------------------------------------------- */

/* Start argv in a child as tu_run describes. Its pid, or -1. */
static pid_t spawn(const char *dir, const char *log, const char *const *argv)
{
    pid_t parent = getpid();
    fflush(NULL); /* nothing of ours half-written while the child starts */
    pid_t pid = fork();
    if (pid != 0)
        return pid; /* the child's pid, or -1 */
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    if (getppid() != parent)          /* it died before prctl */
        _exit(125);
    if (dir && chdir(dir) != 0)
        _exit(126);
    int out = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
    }
    if (nul >= 0)
        dup2(nul, 0);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

/* Reap pid (retrying on EINTR). Its exit status (0..255), or -1 when it was
 * killed by a signal or could not be waited for. */
static int wait_exit(pid_t pid)
{
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
    }
    if (r != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int tu_run(const char *dir, const char *log, const char *const *argv)
{
    pid_t pid = spawn(dir, log, argv);
    if (pid < 0)
        return -2;
    return wait_exit(pid);
}

void tu_stop(pid_t *pid, int sig)
{
    if (*pid > 0) {
        kill(*pid, sig);
        wait_exit(*pid);
    }
    *pid = -1;
}

void tu_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- loopback ----------------------------------------------------------- */

/* Fill *ss with addr ("127.0.0.1" or "::1") and port. Its length, or 0. */
static socklen_t sockaddr_of(const char *addr, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        return sizeof *a4;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        return sizeof *a6;
    }
    return 0;
}

int tu_free_port_at(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(addr, 0, &ss);
    if (!len)
        return -1;
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    int port = -1;
    if (bind(s, (struct sockaddr *)&ss, len) == 0 &&
        getsockname(s, (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                             : ((struct sockaddr_in6 *)&ss)->sin6_port);
    close(s);
    return port;
}

int tu_free_port(void)
{
    return tu_free_port_at("127.0.0.1");
}

/* Connect to addr:port once the child *pid listens there: up to 1000
 * tries 20 ms apart (~20 s on a loaded machine). The connected socket; -1
 * with *pid = -1 when the child exited (reaped); -1 with the child still
 * running when it never accepted or a socket could not be made. */
static int connect_when_up(pid_t *pid, const char *addr, int port)
{
    struct sockaddr_storage sa;
    socklen_t len = sockaddr_of(addr, port, &sa);
    if (!len)
        return -1;
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(*pid, &st, WNOHANG) == *pid) {
            *pid = -1;
            return -1;
        }
        int s = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -1;
        if (connect(s, (struct sockaddr *)&sa, len) == 0)
            return s;
        close(s);
        tu_sleep_ms(20);
    }
    return -1;
}

/* ---- openssl ------------------------------------------------------------ */

int tu_openssl(const char *dir, ...)
{
    const char *argv[48];
    int n = 0;
    argv[n++] = "openssl";
    va_list ap;
    va_start(ap, dir);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 46)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return tu_run(dir, "openssl.log", argv) == 0 ? 0 : -1;
}

/* A P-256 private key, dir/name (PEM). 0 or -1. */
static int ec_key(const char *dir, const char *name)
{
    return tu_openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name,
                      NULL);
}

int tu_make_ca(const char *dir, const char *base, const char *subj)
{
    char key[256], pem[256];
    snprintf(key, sizeof key, "%s.key", base);
    snprintf(pem, sizeof pem, "%s.pem", base);
    if (ec_key(dir, key))
        return -1;
    return tu_openssl(dir, "req", "-x509", "-new", "-key", key, "-subj", subj, "-days", "3",
                      "-out", pem, NULL);
}

int tu_make_leaf(const char *dir, const char *base, const char *subj, const char *ca,
                 const char *ext, const char *days, const char *serial)
{
    char key[256], csr[256], pem[256], cakey[256], capem[256];
    snprintf(key, sizeof key, "%s.key", base);
    snprintf(csr, sizeof csr, "%s.csr", base);
    snprintf(pem, sizeof pem, "%s.pem", base);
    snprintf(cakey, sizeof cakey, "%s.key", ca);
    snprintf(capem, sizeof capem, "%s.pem", ca);
    if (ec_key(dir, key))
        return -1;
    if (tu_openssl(dir, "req", "-new", "-key", key, "-subj", subj, "-out", csr, NULL))
        return -1;
    return tu_openssl(dir, "x509", "-req", "-in", csr, "-CA", capem, "-CAkey", cakey,
                      "-set_serial", serial, "-days", days, "-extfile", ext, "-out", pem, NULL);
}

int tu_s_server_at(const char *dir, const char *log, const char *addr,
                   const char *const *args, pid_t *pid, int *port)
{
    *pid = -1;
    bool v6 = strchr(addr, ':') != NULL;
    for (int attempt = 0; attempt < 5; attempt++) {
        int p = tu_free_port_at(addr);
        if (p <= 0)
            return -1;
        char accept_arg[64];
        snprintf(accept_arg, sizeof accept_arg, v6 ? "[%s]:%d" : "%s:%d", addr, p);
        const char *argv[48];
        int n = 0;
        argv[n++] = "openssl";
        argv[n++] = "s_server";
        argv[n++] = "-accept";
        argv[n++] = accept_arg;
        if (v6)
            argv[n++] = "-6";
        for (int i = 0; args[i] && n < 47; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        *pid = spawn(dir, log, argv);
        if (*pid < 0)
            return -1;
        int fd = connect_when_up(pid, addr, p);
        if (fd >= 0) {
            *port = p;
            return fd;
        }
        tu_stop(pid, SIGTERM); /* it exited (port taken?) or never listened: again */
    }
    return -1;
}

int tu_s_server(const char *dir, const char *log, const char *const *args, pid_t *pid,
                int *port)
{
    return tu_s_server_at(dir, log, "127.0.0.1", args, pid, port);
}

/* ---- lume runtimes ----------------------------------------------------- */

void tu_quiet(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
}

void tu_quiet_logs(int on)
{
    lume_log_set_sink(on ? tu_quiet : NULL, NULL);
}

int tu_config_set(struct lume_config *c, const char *key, const char *val)
{
    lume_config_value v = {.kind = LUME_CV_STRING, .str = val};
    char *end = NULL;
    double num = strtod(val, &end);
    if (!strcmp(val, "true") || !strcmp(val, "false"))
        v = (lume_config_value){.kind = LUME_CV_BOOL, .b = !strcmp(val, "true")};
    else if (*val && end && !*end)
        v = (lume_config_value){.kind = LUME_CV_NUMBER, .num = num};
    char *err = NULL;
    if (lume_config_set(c, key, &v, &err) < 0) {
        fprintf(stderr, "tu_config_set %s = %s: %s\n", key, val, err ? err : "?");
        free(err);
        return -1;
    }
    return 0;
}

int tu_runtime_config(struct lume_config *c, const char *scripts_dir, const char *store,
                      const char *device_id)
{
    if (lume_config_init(c) < 0) {
        fprintf(stderr, "tu_runtime_config: out of memory\n");
        return -1;
    }
    if (tu_config_set(c, "board", "sim") < 0 || tu_config_set(c, "boards_dir", "boards") < 0 ||
        tu_config_set(c, "stdlib_dir", "stdlib") < 0 ||
        tu_config_set(c, "scripts_dir", scripts_dir ? scripts_dir : "scripts") < 0 ||
        tu_config_set(c, "store", store) < 0 || tu_config_set(c, "device_id", device_id) < 0 ||
        tu_config_set(c, "log_level", "error") < 0 ||
        tu_config_set(c, "status_interval_ms", "0") < 0 ||
        tu_config_set(c, "watch_scripts", "false") < 0 ||
        tu_config_set(c, "twin.allow_unsigned", "true") < 0) {
        lume_config_free(c);
        return -1;
    }
    return 0;
}
