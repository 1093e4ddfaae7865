/* bindings/luajson.h — luajson.c: Lua values <-> JSON (publish payloads, twin reports,
 * store values), by the rule lume.json follows too (the top of luajson.c). */
#ifndef LUME_LUAJSON_H
#define LUME_LUAJSON_H

#include <stddef.h>

#include <cJSON.h>
#include <lua.h>

/* Encode the value at idx into a malloc'd string. NULL with *err on a value
 * JSON cannot hold (a function, a cycle, NaN, a string that is not UTF-8,
 * ...): "cannot encode NaN at value.readings[3]". Never raises. */
char *lume_json_encode(lua_State *L, int idx, size_t *len, char **err);
/* The same, except that strings go byte for byte, UTF-8 or not: for what
 * lume alone reads back (the store, the host's own transfers), never for
 * what leaves the device. */
char *lume_json_encode_bytes(lua_State *L, int idx, size_t *len, char **err);
/* Push the decoded value (arrays marked as lume.json's decoder marks
 * them); 0, or -EINVAL with *err. */
int   lume_json_push(lua_State *L, const char *s, size_t len, char **err);
int lume_json_push_cjson(lua_State *L, const cJSON *j);
cJSON *lume_json_to_cjson(lua_State *L, int idx, char **err);

#endif
