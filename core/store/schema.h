/* core/store/schema.h — the schema of lume's own desired keys (sensors, log,
 * health, outbox, scripts): one table, checked by the device's twin host
 * (runtime/twin_host.c, bindings/bundles.c) before a value is applied and by
 * the operator's `lume twin set` (cli/twin.c) before one is published, so
 * both sides refuse the same values with the same words. docs/twin.md
 * prints the table. No Lua.
 *
 * What only the device can know is not in the schema: whether a sensor of
 * that name exists on its board and the board's rate bounds (rates are
 * clamped there and reported as applied), whether a bundle's signature
 * verifies. */
#ifndef LUME_SCHEMA_H
#define LUME_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "config.h"

enum {
    LUME_ST_OBJECT = 1, LUME_ST_STRING = 2, LUME_ST_NUMBER = 4, LUME_ST_BOOL = 8,
    LUME_ST_ARRAY = 16, LUME_ST_NULL = 32,
};

/* One entry of the table. */
typedef struct lume_schema_field {
    const char *path;     /* "sensors.*.rate": '*' stands for any one key */
    unsigned    types;    /* LUME_ST_* accepted */
    double      min, max; /* numbers: inclusive bounds (min_open: min excluded) */
    bool        min_open;
    bool        open;     /* an object whose members the table does not list */
    const char *choices;  /* strings: the values allowed, "|"-separated, or NULL */
    const char *label;    /* how errors name it ("log level"), NULL: the path */
    const char *meaning;  /* one line, for docs/twin.md and `lume twin schema` */
} lume_schema_field;

/* The table, in document order; *n its length. */
const lume_schema_field *lume_twin_schema(size_t *n);
/* Whether key is one of lume's own top-level desired keys. */
bool lume_twin_schema_builtin(const char *key);

/* Check v, the value found at path ("sensors", "scripts.rules"), against the
 * table: types, bounds, choices, unknown members of closed objects, and the
 * rules a table cannot say (a bundle needs exactly one of source, chunks,
 * url; outbox limits by the config's own rules). A path the table does not
 * know, and v NULL (absent, deleted), are valid. 0, or -EINVAL with the
 * offending path in where ("sensors.temperature.rate") and the reason in
 * why ("sensors.temperature.rate must be a number above 0 (Hz), got \"x\""). */
int lume_twin_schema_check(const char *path, const cJSON *v, char *where, size_t wcap,
                           char *why, size_t ycap);

/* Apply a desired outbox object onto c (the config's own checks, key by
 * key: outbox.max_messages, ...). 0, or -EINVAL with why; c may then be
 * partly changed (use a copy). */
int lume_twin_schema_outbox(lume_config *c, const cJSON *outbox, char *why, size_t cap);

#endif
