/* cli/test.c — running a user's rule specs on the rule test harness:
 *
 *   lume test [--verbose] SPEC... [-- BUSTED_ARGS...]
 *
 * Runs busted (Debian's lua-busted) on lua5.4 with lume's stdlib on the
 * Lua path (lume.test, the harness: stdlib/lume/test.lua) and the lume_host
 * module on the C path (the real runtime the harness drives: bindings/
 * luamod.c, bindings/sim.c). Found next to this lume: in the build folder
 * (build/lume_host.so beside build/lume) or installed (PREFIX/bin/lume and
 * PREFIX/lib/lume/lume_host.so); the stdlib where lume run finds it
 * (./stdlib, else the data folder, LUME_DATADIR overriding). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

static const char TEST_USAGE[] =
    "usage: lume test [--verbose] SPEC... [-- BUSTED_ARGS...]\n\n"
    "Runs busted specs that test your rules on lume's rule test harness\n"
    "(require \"lume.test\"): each spec loads your scripts into a real lume\n"
    "runtime on a simulated clock, feeds them sensor traces (recorded with\n"
    "`lume record`, or generated), and asserts on what they publish, report,\n"
    "drive and log. docs/testing-rules.md shows a complete spec.\n\n"
    "  --verbose   print the runtime's log while the specs run\n"
    "  -- ARGS     more arguments for busted (-o TAP, --filter PATTERN, ...)\n\n"
    "Needs lua5.4 and busted (Debian: apt-get install lua5.4 lua-busted).\n"
    "Exit 0 when every spec passes, 1 when one fails, 2 for a usage error or\n"
    "a missing busted.\n";

/* The first of names that is an executable file on PATH, into buf. */
static bool on_path(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(buf, cap, "%.*s/%s", (int)n, p, name);
        if (n && access(buf, X_OK) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    return false;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The folder of lume_host.so: beside this lume (a build folder), or in
 * ../lib/lume from it (an install). */
static bool find_host_module(char *dir, size_t cap)
{
    char exe[PATH_MAX], try[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return false;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return false;
    *slash = 0;
    const char *subs[] = {"", "/../lib/lume"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(try, sizeof try, "%s%s/lume_host.so", exe, subs[i]);
        if (is_file(try)) {
            snprintf(dir, cap, "%s%s", exe, subs[i]);
            return true;
        }
    }
    return false;
}

int lume_cmd_test(int argc, char **argv)
{
    bool verbose = false;
    int first = 1;
    for (; first < argc && argv[first][0] == '-' && strcmp(argv[first], "--"); first++) {
        if (!strcmp(argv[first], "--help") || !strcmp(argv[first], "-h")) {
            fputs(TEST_USAGE, stdout);
            return 0;
        }
        if (!strcmp(argv[first], "--verbose")) {
            verbose = true;
            continue;
        }
        fprintf(stderr, "lume test: unknown option '%s'\n\n%s", argv[first], TEST_USAGE);
        return EXIT_USAGE;
    }
    int specs_end = first;
    while (specs_end < argc && strcmp(argv[specs_end], "--"))
        specs_end++;
    if (specs_end == first) {
        fprintf(stderr, "lume test: give at least one SPEC file\n\n%s", TEST_USAGE);
        return EXIT_USAGE;
    }
    for (int i = first; i < specs_end; i++)
        if (!is_file(argv[i])) {
            fprintf(stderr, "lume test: %s: %s\n", argv[i],
                    access(argv[i], F_OK) == 0 ? "not a file" : "no such file");
            return EXIT_USAGE;
        }
    char lua[PATH_MAX], busted[PATH_MAX], moddir[PATH_MAX];
    if (!on_path("lua5.4", lua, sizeof lua)) {
        fprintf(stderr, "lume test: lua5.4 is not installed (Debian: apt-get install lua5.4)\n");
        return EXIT_USAGE;
    }
    if (!on_path("busted", busted, sizeof busted)) {
        fprintf(stderr, "lume test: busted is not installed: it runs the specs (Debian: "
                "apt-get install lua-busted; `make deps` installs it)\n");
        return EXIT_USAGE;
    }
    if (!find_host_module(moddir, sizeof moddir)) {
        fprintf(stderr, "lume test: lume_host.so is not next to this lume (build/lume_host.so "
                "from `make`, or PREFIX/lib/lume/lume_host.so from `make install`)\n");
        return EXIT_USAGE;
    }
    char *stdlib = lume_data_default("stdlib");
    char lpath[PATH_MAX * 2 + 64], cpath[PATH_MAX + 16];
    snprintf(lpath, sizeof lpath, "--lpath=%s/?.lua;%s/?/init.lua", stdlib, stdlib);
    snprintf(cpath, sizeof cpath, "--cpath=%s/?.so", moddir);
    free(stdlib);
    char **args = calloc((size_t)argc + 8, sizeof *args);
    if (!args) {
        fprintf(stderr, "lume test: out of memory\n");
        return EXIT_FAIL;
    }
    int k = 0;
    args[k++] = lua;
    args[k++] = busted;
    args[k++] = lpath;
    args[k++] = cpath;
    for (int i = specs_end + (specs_end < argc); i < argc; i++) /* after "--": busted's */
        args[k++] = argv[i];
    for (int i = first; i < specs_end; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    if (verbose)
        setenv("LUME_TEST_VERBOSE", "1", 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "lume test: cannot start busted: %s\n", strerror(errno));
        free(args);
        return EXIT_FAIL;
    }
    if (pid == 0) {
        execv(lua, args);
        fprintf(stderr, "lume test: cannot run %s: %s\n", lua, strerror(errno));
        _exit(127);
    }
    free(args);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    return EXIT_FAIL;
}
