/* cli/repl.c — `lume repl`: a Lua prompt on the running lume.
 *
 * It attaches to the lume running on the configured store through
 * STORE/repl.sock (runtime/repl_sock.c: the protocol, the owner check). With
 * none running it starts one in this process on the configured board (its
 * log goes to STORE/repl.log, it stops when the REPL ends) and attaches to
 * it the same way, so both cases run the same code.
 *
 *   start ─► connect STORE/repl.sock ──refused / absent──► runtime in a thread
 *               │                                                │
 *               ▼ ◄──────────────────────────────────────────────┘
 *   ┌─► PROMPT ("> ", or ">> " inside a chunk): libedit, history in
 *   │     │ STORE/repl_history, Tab asks "c TEXT"
 *   │     ├─ Ctrl-D ──► leave (the runtime keeps running)
 *   │     ├─ Ctrl-C ──► drop the line and any pending chunk ("x")
 *   │     ├─ .watch / .tail ──► redraw until a key is pressed
 *   │     ├─ .other ──► "d other"
 *   │     └─ Lua ──► "e LINE"
 *   │              │ WAITING: Ctrl-C sends the byte 0x03 (interrupt)
 *   └──────────────┘ answer printed
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "lume.h"

static const char REPL_USAGE[] =
    "usage: lume repl [--config FILE] [--board NAME] [--store DIR] [--scripts DIR]\n"
    "\n"
    "A Lua prompt on the lume running on this store (STORE/repl.sock), in a\n"
    "sandbox of its own with the scripts' API: expressions print their value,\n"
    "an incomplete chunk continues on the next line, Tab completes globals and\n"
    "fields. Ctrl-C stops a running evaluation, Ctrl-D leaves (the runtime keeps\n"
    "running). .help lists the dot-commands (.scripts .reload .watch .rate\n"
    ".twin .outbox .log .tail .save). With no lume running it starts one in this\n"
    "process (log in STORE/repl.log) that stops when you leave. See docs/repl.md.\n";

static volatile sig_atomic_t g_sigint;
static int g_fd = -1;

static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
}

/* ---- talking to the runtime ------------------------------------------------- */

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int send_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(g_fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read exactly n bytes; while waiting, Ctrl-C sends the interrupt byte. */
static int read_n(char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        if (g_sigint) {
            g_sigint = 0;
            fputc('\n', stderr); /* after the terminal's ^C */
            if (send_all("\x03", 1) < 0)
                return -1;
        }
        struct pollfd p = {.fd = g_fd, .events = POLLIN};
        int r = poll(&p, 1, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        ssize_t rd = recv(g_fd, buf + got, n - got, 0);
        if (rd < 0 && errno == EINTR)
            continue;
        if (rd <= 0)
            return -1;
        got += (size_t)rd;
    }
    return 0;
}

/* Send one request line, read its frame: the kind into kind, the body
 * (malloc'd, NUL-terminated) returned; NULL when the runtime went away. */
static char *ask(const char *kind_req, const char *text, char kind[16])
{
    size_t tl = text ? strlen(text) : 0;
    char *line = malloc(tl + 4);
    if (!line)
        return NULL;
    int n = snprintf(line, tl + 4, "%s%s%s\n", kind_req, text ? " " : "", text ? text : "");
    int r = send_all(line, (size_t)n);
    free(line);
    if (r < 0)
        return NULL;
    char head[64];
    size_t h = 0;
    while (h < sizeof head - 1) {
        if (read_n(head + h, 1) < 0)
            return NULL;
        if (head[h++] == '\n')
            break;
    }
    head[h] = 0;
    size_t len = 0;
    if (sscanf(head, "%15s %zu", kind, &len) != 2 || len > (64u << 20))
        return NULL;
    char *body = malloc(len + 1);
    if (!body || read_n(body, len) < 0) {
        free(body);
        return NULL;
    }
    body[len] = 0;
    return body;
}

static void show(const char *kind, const char *body)
{
    FILE *f = !strcmp(kind, "error") ? stderr : stdout;
    fputs(body, f);
    fflush(f);
}

/* ---- completion --------------------------------------------------------------- */

static char **g_cands;
static size_t g_ncands;

static char *cand_gen(const char *text, int state)
{
    static size_t i;
    (void)text;
    if (!state)
        i = 0;
    return i < g_ncands ? strdup(g_cands[i++]) : NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)text;
    (void)start;
    rl_attempted_completion_over = 1; /* never file names */
    for (size_t i = 0; i < g_ncands; i++)
        free(g_cands[i]);
    free(g_cands);
    g_cands = NULL;
    g_ncands = 0;
    char *upto = strndup(rl_line_buffer, (size_t)end);
    char kind[16];
    char *body = upto ? ask("c", upto, kind) : NULL;
    free(upto);
    if (body && !strcmp(kind, "cands")) {
        for (char *p = body, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
            char **c = realloc(g_cands, (g_ncands + 1) * sizeof *c);
            if (!c)
                break;
            g_cands = c;
            g_cands[g_ncands++] = strndup(p, (size_t)(nl - p));
        }
    }
    free(body);
    if (!g_ncands)
        return NULL;
    return rl_completion_matches(text, cand_gen);
}

/* ---- .watch and .tail: redraw until a key is pressed --------------------------- */

static bool key_within(int ms)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    if (poll(&p, 1, ms) > 0) {
        char c;
        ssize_t r = read(STDIN_FILENO, &c, 1);
        (void)r;
        return true;
    }
    return g_sigint != 0;
}

static int watch(const char *args)
{
    char sensor[128] = "", extra[64] = "";
    double hz = 2;
    int n = sscanf(args, "%127s %lf %63s", sensor, &hz, extra);
    if (n < 1 || n > 2 || !(hz > 0) || hz > 50) {
        fputs("error: .watch SENSOR [HZ] (HZ between 0 and 50, default 2)\n", stderr);
        return 0;
    }
    struct termios old, raw;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        raw = old;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    printf("watching %s at %g Hz; press a key to stop\n", sensor, hz);
    int rc = 0;
    g_sigint = 0;
    for (;;) {
        char req[200], kind[16];
        snprintf(req, sizeof req, "watch %s", sensor);
        char *body = ask("d", req, kind);
        if (!body) {
            rc = -1;
            break;
        }
        body[strcspn(body, "\n")] = 0;
        if (strcmp(kind, "ok")) {
            fprintf(stderr, "\r\033[K%s\n", body);
            free(body);
            break;
        }
        printf("\r\033[K%s", body);
        fflush(stdout);
        free(body);
        if (key_within((int)(1000 / hz)))
            break;
    }
    g_sigint = 0;
    putchar('\n');
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    return rc;
}

static int tail(void)
{
    struct termios old, raw;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        raw = old;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    puts("following the log; press a key to stop");
    g_sigint = 0;
    int rc = 0;
    char req[64] = "tail";
    for (;;) {
        char kind[16];
        char *body = ask("d", req, kind);
        if (!body) {
            rc = -1;
            break;
        }
        unsigned long long seq = 0;
        char *nl = strchr(body, '\n');
        if (strcmp(kind, "ok") || sscanf(body, "seq %llu", &seq) != 1 || !nl) {
            show(kind, body);
            free(body);
            break;
        }
        fputs(nl + 1, stdout);
        fflush(stdout);
        free(body);
        snprintf(req, sizeof req, "tail %llu", seq);
        if (key_within(250))
            break;
    }
    g_sigint = 0;
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
    return rc;
}

/* ---- in-process runtime -------------------------------------------------------- */

typedef struct local_rt {
    lume_runtime *rt;
    pthread_t     th;
    FILE         *log;
} local_rt;

static void *run_main(void *arg)
{
    local_rt *l = arg;
    lume_runtime_run(l->rt);
    return NULL;
}

static void log_to_file(void *ud, int level, const char *component, const char *msg)
{
    FILE *f = ud;
    fprintf(f, "%s %s: %s\n", lume_log_level_name(level), component, msg);
    fflush(f);
}

static int start_local(const lume_config *c, local_rt *l)
{
    char path[4200];
    mkdir(c->store, 0700);
    snprintf(path, sizeof path, "%s/repl.log", c->store);
    l->log = fopen(path, "a");
    if (l->log)
        lume_log_set_sink(log_to_file, l->log);
    char *err = NULL;
    l->rt = lume_runtime_new(c, &err);
    if (!l->rt) {
        lume_log_set_sink(NULL, NULL);
        fprintf(stderr, "lume repl: no lume runs on store %s, and one cannot start here: %s\n",
                c->store, err ? err : "?");
        free(err);
        return -1;
    }
    if (pthread_create(&l->th, NULL, run_main, l) != 0) {
        lume_runtime_free(l->rt);
        l->rt = NULL;
        return -1;
    }
    printf("no lume was running on store %s: started one in this process on board %s\n"
           "(its log: %s; it stops when you leave)\n", c->store, c->board, path);
    return 0;
}

static void stop_local(local_rt *l)
{
    if (!l->rt)
        return;
    lume_runtime_stop(l->rt);
    pthread_join(l->th, NULL);
    lume_runtime_free(l->rt);
    lume_log_set_sink(NULL, NULL);
    if (l->log)
        fclose(l->log);
}

/* ---- the prompt ------------------------------------------------------------------ */

int lume_cmd_repl(int argc, char **argv)
{
    lume_cli_opts o = {0};
    int first;
    int r = lume_cli_parse_opts(argc, argv, &o, REPL_USAGE, &first);
    if (r)
        return r == 1 ? 0 : r;
    if (first < argc) {
        fprintf(stderr, "lume repl: unexpected argument '%s'\n\n%s", argv[first], REPL_USAGE);
        return EXIT_USAGE;
    }
    lume_config c;
    if ((r = lume_cli_build_config(&c, &o)))
        return r;
    signal(SIGPIPE, SIG_IGN);
    char sock[4200], hist[4200];
    snprintf(sock, sizeof sock, "%s/repl.sock", c.store);
    snprintf(hist, sizeof hist, "%s/repl_history", c.store);
    local_rt local = {0};
    g_fd = connect_to(sock);
    if (g_fd == -ECONNREFUSED || g_fd == -ENOENT) {
        c.status_interval_ms = 0; /* its status lines would write over the prompt */
        if (start_local(&c, &local) < 0) {
            lume_config_free(&c);
            return EXIT_FAIL;
        }
        for (int i = 0; i < 100 && g_fd < 0; i++) { /* the socket is made at start */
            g_fd = connect_to(sock);
            if (g_fd < 0)
                usleep(20000);
        }
    }
    lume_config_free(&c);
    if (g_fd < 0) {
        fprintf(stderr, "lume repl: cannot reach %s: %s\n", sock, strerror(-g_fd));
        stop_local(&local);
        return EXIT_FAIL;
    }
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: waits see EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    rl_readline_name = "lume";
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]";
    rl_completion_append_character = '\0';
    using_history();
    read_history(hist);
    printf("lume repl (Lua 5.4 in a sandbox with the lume API; .help for commands, "
           "Ctrl-D to leave)\n");
    int rc = 0;
    bool more = false;
    for (;;) {
        g_sigint = 0;
        char *line = readline(more ? ">> " : "> ");
        if (!line) {
            if (g_sigint) { /* Ctrl-C at the prompt: a fresh one */
                putchar('\n');
                if (more) {
                    char kind[16];
                    free(ask("x", NULL, kind));
                    more = false;
                }
                continue;
            }
            putchar('\n');
            break; /* Ctrl-D */
        }
        if (*line) {
            add_history(line);
            write_history(hist);
        }
        char kind[16] = "";
        char *body = NULL;
        const char *p = line + strspn(line, " \t");
        if (!more && p[0] == '.' && (p[1] >= 'a' && p[1] <= 'z')) {
            if (!strncmp(p, ".watch", 6) && (p[6] == ' ' || !p[6])) {
                if (watch(p + 6) < 0) {
                    free(line);
                    rc = EXIT_FAIL;
                    fputs("lume repl: the runtime went away\n", stderr);
                    break;
                }
                free(line);
                continue;
            }
            if (!strcmp(p, ".tail")) {
                free(line);
                if (tail() < 0) {
                    rc = EXIT_FAIL;
                    fputs("lume repl: the runtime went away\n", stderr);
                    break;
                }
                continue;
            }
            body = ask("d", p + 1, kind);
        } else {
            body = ask("e", line, kind);
        }
        free(line);
        if (!body) {
            fputs("lume repl: the runtime went away\n", stderr);
            rc = EXIT_FAIL;
            break;
        }
        more = !strcmp(kind, "more");
        show(kind, body);
        free(body);
    }
    for (size_t i = 0; i < g_ncands; i++)
        free(g_cands[i]);
    free(g_cands);
    close(g_fd);
    stop_local(&local);
    return rc;
}
