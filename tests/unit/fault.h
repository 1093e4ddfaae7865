/* tests/unit/fault.h — fail the Nth allocation, as Lua's ltests.c
 * (debug_realloc) and SQLite's fault injector do, so the paths that only
 * run when memory runs out get run.
 *
 * What is counted: lume's own allocations and the libraries' that lume can
 * redirect without touching its code:
 *   - every call liblume.a makes to malloc, calloc, realloc, strdup,
 *     strndup, aligned_alloc, vasprintf (lume_strdupf) and scandir: the test
 *     binary is linked with `ld --wrap=<name>` for each (Makefile: FAULT_WRAP),
 *     which sends the calls of the objects linked statically (liblume.a, the
 *     test) to the __wrap_<name> below; the shared libraries keep theirs;
 *   - through those, every Lua state lume makes (its lua_Alloc calls realloc:
 *     sandbox.c, config_lua.c);
 *   - SQLite's allocations (sqlite3_config(SQLITE_CONFIG_MALLOC), installed
 *     by tu_fault_install before SQLite initialises);
 *   - cJSON's (cJSON_InitHooks).
 * Not counted: libwebsockets, mbedtls and the C library's own allocations
 * (fopen, getaddrinfo), and the board file's Lua state (luaL_newstate
 * allocates inside liblua).
 *
 * Only the thread that armed the injector counts and fails: the watchdog,
 * the outbox's checkpointer and SQLite calls on them allocate as usual, so
 * a sweep is deterministic.
 *
 * Test code, not part of liblume.a: tu_ prefix (testutil.h). */
#ifndef LUME_TEST_FAULT_H
#define LUME_TEST_FAULT_H

#include <stdbool.h>

/* Point SQLite and cJSON at the counting allocator. Call once, first thing
 * in main, before anything uses SQLite. 0, or -1 (SQLite was initialised
 * already). */
int tu_fault_install(void);

/* From now on, on this thread, the n-th allocation (1 = the next one)
 * fails; with persistent, every one after it fails too (ltests.c's mode:
 * error paths must not need memory); without, only that one (the code must
 * go on correctly after a failure it handled). n <= 0: count, never fail. */
void tu_fault_arm(long n, bool persistent);

/* Stop failing and counting. Returns how many allocations the thread asked
 * for since tu_fault_arm. */
long tu_fault_disarm(void);

/* Whether an allocation was failed since the last tu_fault_arm. */
bool tu_fault_fired(void);

#endif
