/* core/base/check.h — invariants as checks.
 *
 * The design essays at the top of outbox.c, mqtt.c, ring.c, tls.c, twin.c,
 * sandbox.c, ... number their invariants. Where one can be checked cheaply
 * at a point in the code, it is checked there:
 *
 *   lume_check(ob->depth[lane] > 0, "invariant 4: a lane's depth never goes below 0");
 *
 * Like Lua's lua_assert/api_check: compiled in only when LUME_CHECKS is
 * defined (`make asan`, the fuzz builds, `make CHECKS=1`), and then a
 * failing check writes
 *
 *   lume: invariant failed at core/store/outbox.c:812 (delete_row): invariant 2: ...
 *         (!idmap_get(&ob->pdel, id))
 *
 * to stderr and aborts (under ASan: with a stack trace). In a release build
 * the condition is not evaluated at all (sizeof keeps its variables "used"),
 * so a check must have no side effect and may be as costly as a debug build
 * can afford — never a system call, never a lock the code does not hold.
 *
 * A check states what the code guarantees, not what the world does: bad
 * input, a full disk or a failed allocation are errors the code handles,
 * never a check. A check that fires is a bug in lume. */
#ifndef LUME_CHECK_H
#define LUME_CHECK_H

#ifdef LUME_CHECKS
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, cold, unused)) static void
lume_check_failed(const char *file, int line, const char *func, const char *what,
                  const char *expr)
{
    fprintf(stderr, "lume: invariant failed at %s:%d (%s): %s\n      (%s)\n", file, line,
            func, what, expr);
    fflush(stderr);
    abort();
}

#define lume_check(cond, what)                                                          \
    ((cond) ? (void)0 : lume_check_failed(__FILE__, __LINE__, __func__, (what), #cond))
#else
#define lume_check(cond, what) ((void)sizeof(!(cond)), (void)sizeof(what))
#endif

#endif
