// fuzz-liblume: yes
/* tests/fuzz/fuzz_config.c — libFuzzer target for the config loader
 * (bindings/config_lua.c: a config file's text -> lume_config_load, which
 * runs the chunk under a memory cap and a time limit, then checks every key
 * through lume_config_set).
 *
 * Input: the file's bytes, written to a memfd and loaded by its
 * /proc/self/fd path (so no file is left behind). Invariants, abort() on
 * violation:
 *
 *  1. the result is 0, -EINVAL, -ENOENT or -ENOMEM, with a message exactly
 *     when it is negative;
 *  2. the loader returns within its time limit (2 s) plus a margin for the
 *     sanitizers (LOAD_LIMIT_MS): nothing a config can do holds it longer;
 *  3. a config that loaded passes lume_config_check, names its file in
 *     source, and survives lume_config_copy (every string it holds is
 *     copied: no NUL inside, all NUL-terminated) with a copy that passes
 *     lume_config_check too. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "lume.h"

#define LOAD_LIMIT_MS 6000   /* CONFIG_TIME_LIMIT_MS (2000) + slack under ASan */

#include "fuzz.h"

static void quiet(void *ud, int level, const char *component, const char *msg)
{
    (void)ud, (void)level, (void)component, (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        lume_log_set_sink(quiet, NULL);
        fd = memfd_create("lume-fuzz-config", MFD_CLOEXEC);
        CHECK(fd >= 0);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (size > 65536)
        return 0;
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);

    lume_config c;
    CHECK(lume_config_init(&c) == 0);
    char *err = NULL;
    int64_t t0 = lume_mono_ns();
    int rc = lume_config_load(&c, path, &err);
    int64_t ms = (lume_mono_ns() - t0) / LUME_NS_PER_MS;
    /* 1 */
    CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT || rc == -ENOMEM);
    CHECK((rc < 0) == (err != NULL));
    /* 2 */
    if (ms > LOAD_LIMIT_MS)
        fprintf(stderr, "the config loaded for %lld ms\n", (long long)ms);
    CHECK(ms <= LOAD_LIMIT_MS);
    if (rc == 0) {
        /* 3 */
        char *e = NULL;
        int r = lume_config_check(&c, &e);
        if (r)
            fprintf(stderr, "loaded, but: %s\n", e);
        CHECK(r == 0 && e == NULL);
        CHECK(c.source && !strcmp(c.source, path));
        lume_config d;
        CHECK(lume_config_copy(&d, &c) == 0);
        r = lume_config_check(&d, &e);
        if (r)
            fprintf(stderr, "the copy: %s\n", e);
        CHECK(r == 0);
        lume_config_free(&d);
    }
    free(err);
    lume_config_free(&c);
    return 0;
}
