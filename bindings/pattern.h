/* bindings/pattern.h — pattern.c: lume's own string.find/match/gmatch/gsub, Lua 5.4's
 * pattern language and results, checking the CPU budget as they step. */
#ifndef LUME_PATTERN_H
#define LUME_PATTERN_H

#include <lua.h>

/* Replace find, match, gmatch and gsub in L's string table (the global
 * `string` and the string metatable's __index) with lume's, which call
 * lume_sandbox_check(L) every few thousand steps: for a script's state, and
 * the config chunk's (which has a deadline instead of a budget).
 * 0, or -ENOENT when L has no string table (nothing changed). Raises on
 * memory errors, like any Lua API call. */
int         lume_pattern_install(lua_State *L);
/* Push a table {find, match, gmatch, gsub} of the same functions that never
 * check a budget: for states that are not a script's (tests, tools). */
void        lume_pattern_push(lua_State *L);

#endif
