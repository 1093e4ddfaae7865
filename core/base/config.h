/* core/base/config.h — lume's configuration: one struct, one table of fields.
 *
 * Every key lume understands is a row in the field table of config.c (name,
 * type, bounds, default, description); lume_config_set() is the one place a
 * value is checked, whether it comes from the Lua config file, the command
 * line or, later, the device twin. Errors name the key, the value and what
 * was expected.
 *
 * Embedders see this struct only as the opaque `lume_config` of lume.h
 * (lume_config_new, the setters); lume's own code keeps it on the stack
 * with lume_config_init / lume_config_free. */
#ifndef LUME_CONFIG_H
#define LUME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "outbox.h"

typedef struct lume_config {
    char *device_id;          /* default: the host name */
    char *board;              /* "sim" */
    char *boards_dir;         /* "boards" */
    char *scripts_dir;        /* "scripts" */
    char *stdlib_dir;         /* "stdlib" */
    char *store;              /* directory for outbox.db, state.db, lume.sock: "var" */
    int   log_level;          /* LUME_LOG_* */
    int   status_interval_ms; /* live status line period; 0 = off */
    bool  watch_scripts;      /* reload scripts when their files change */
    bool  scripts_local_override; /* a local file may replace a twin-managed script */
    int   malloc_arenas;      /* lume run: M_ARENA_MAX; 0 = glibc's default */
    bool  sqlite_lean;        /* lume run: no page-cache block, no lookaside per connection */
    struct {
        int64_t memory_limit;   /* bytes per script state */
        int     cpu_budget_ms;  /* per handler call */
        int     load_budget_ms; /* for a script's top level */
        int64_t store_quota;    /* bytes of lume.store per script */
        int     max_errors_per_s; /* handler errors/s before the script is stopped; 0 = never */
        int     max_overruns;   /* CPU-budget overruns per minute before the script is stopped; 0 = never */
        int     hang_limit_ms;  /* wall time one script activity may hold the loop before
                                   the process ends (and the script is quarantined) */
    } sandbox;
    lume_outbox_opts outbox;
    struct {
        bool    realtime;
        int     priority;
        bool    lock_memory;
        int64_t ring_size;
        int     cpu;           /* -1: no pinning */
        int     latency_ms;    /* default wake bound of a sensor; 0: at once */
    } sampler;
    struct {
        char   *url;             /* broker; NULL = offline */
        char   *dialect;         /* the hub's conventions (core/hub/hub.h); NULL = "mqtt" */
        char   *client_id;       /* default: device_id */
        char   *username;
        char   *password;
        char   *ca_file;
        char   *cert_file;
        char   *key_file;
        char   *server_name;
        char   *tls_min_version;
        char   *ciphers;
        bool    tls_insecure;
        int     keepalive_s;
        int     window;
        int     backoff_min_ms;
        int     backoff_max_ms;
        int     stable_ms;
        int     connect_timeout_ms;
        int64_t max_packet;
        bool    clean_session;
        /* azure dialect (core/hub/hub_azure.c, docs/azure.md) */
        char   *connection_string; /* "HostName=..;DeviceId=..;SharedAccessKey=.." */
        char   *sas_key;         /* base64 device key; or sas_key_file */
        char   *sas_key_file;
        int     sas_ttl_s;       /* SAS token lifetime; renewed at 80 % */
        char   *hub_host;        /* "{hub}.azure-devices.net"; default: the URL's host */
        char   *module_id;       /* client id "device/module" when set */
        char   *model_id;        /* IoT Plug and Play model id, in the user name */
        struct {                 /* DPS provisioning (core/hub/dps.c, docs/azure.md) */
            char *endpoint;      /* default mqtts://global.azure-devices-provisioning.net:8883 */
            char *id_scope;      /* set: provision through DPS */
            char *registration_id; /* default: device_id */
            char *symmetric_key; /* individual enrollment; or symmetric_key_file */
            char *symmetric_key_file;
            char *group_key;     /* group enrollment: the device key is derived */
            char *resolve;       /* "host=addr:port,...": where an assigned hub is reached */
        } dps;
        struct {                 /* message signing (core/trust/msgsign.h, docs/signing.md) */
            char *alg;           /* "hmac-sha256" | "ecdsa-p256"; NULL: messages unsigned */
            char *key_file;      /* base64 HMAC secret, or P-256 private key PEM */
        } sign;
    } net;
    struct {
        char   *groups;          /* "fleet,site-a,ring-pilot": desired layers in merge order */
        char   *trusted_keys;    /* comma-separated PEM public key files */
        char   *revoked_keys;    /* comma-separated key ids refused even if trusted */
        bool    allow_unsigned;
        int64_t max_script_bytes;
        int     max_publish_rate;  /* soak gate: publishes per second */
        int     fetch_timeout_ms;
        char   *fetch_ca_file;     /* CA for bundle urls; default: net.ca_file, else system */
    } twin;
    struct {                       /* the web console (runtime/console.c, docs/console.md) */
        char   *listen;            /* "127.0.0.1:8080"; NULL = off */
        char   *token;             /* access token; required unless listen is loopback */
        char   *dir;               /* its assets: ./console if there, else DATADIR/console */
    } console;
    char *source;             /* where the config came from, for messages */
    /* not keys: set through lume_config_set_log (lume.h) */
    lume_log_sink log_sink;   /* the runtime's own sink; NULL: the process default */
    void         *log_ud;
    bool          heap;       /* made by lume_config_new: lume_config_free frees c too */
    /* not keys: the OEM drivers and modules of lume.h (bindings/oem.c), an
     * attachment copied and freed through the two calls it came with */
    void         *ext;
    void       *(*ext_copy)(const void *ext);  /* NULL when out of memory */
    void        (*ext_free)(void *ext);
} lume_config;

typedef enum lume_config_type {
    LUME_CFG_STRING,
    LUME_CFG_BOOL,
    LUME_CFG_INT,      /* int */
    LUME_CFG_INT64,
    LUME_CFG_SIZE,     /* int64 bytes: a number or "512KiB" / "4MiB" / "1GiB" */
    LUME_CFG_LOGLEVEL, /* "debug"|"info"|"warn"|"error" */
    LUME_CFG_SYNC,     /* outbox synchronous: "normal"|"full" */
    LUME_CFG_LIST,     /* a list of names (a Lua array, or "a,b,c"), kept as "a,b,c" */
    LUME_CFG_LANES,    /* outbox lanes ({"alarm", "bulk"} or "alarm,bulk"), kept as an int
                          bit set (1 << lane); {} or "none" for no lane */
} lume_config_type;

typedef struct lume_config_field {
    const char      *key;      /* dotted: "sandbox.memory_limit" */
    lume_config_type type;
    size_t           offset;   /* into lume_config */
    double           min, max; /* numeric bounds (inclusive) */
    const char      *dflt;     /* default, as text, for help */
    const char      *doc;
} lume_config_field;

/* A value from wherever it came from. */
typedef struct lume_config_value {
    enum { LUME_CV_BOOL, LUME_CV_NUMBER, LUME_CV_STRING, LUME_CV_TABLE, LUME_CV_OTHER } kind;
    bool        b;
    double      num;
    const char *str;
    size_t      len;        /* LUME_CV_STRING: bytes of str when it may hold a NUL
                               (a Lua string does); 0 = strlen(str) */
    const char *type_name;  /* for LUME_CV_OTHER: what it was ("function") */
} lume_config_value;

/* datadir.c — the data directory: boards/, stdlib/ and the default
 * scripts/ of an installed lume. $LUME_DATADIR when set, else the one
 * compiled in ($(PREFIX)/share/lume). Static storage or the environment's. */
const char *lume_datadir(void);
const char *lume_datadir_builtin(void);
/* The default of boards_dir, stdlib_dir, scripts_dir (sub: "boards", ...):
 * $LUME_DATADIR/sub when LUME_DATADIR is set; else sub in the working
 * directory when it has one (a source tree, a project folder); else the
 * compiled-in data directory's. malloc'd; NULL when out of memory. */
char *lume_data_default(const char *sub);

/* A board value that names a file (it has a '/' or ends in ".lua")
 * rather than boards_dir/NAME.lua. */
bool lume_board_is_path(const char *board);

/* Defaults. 0, or -ENOMEM. */
int  lume_config_init(lume_config *c);
/* Free what c holds; and c itself when lume_config_new made it (c->heap),
 * so one call serves a stack config and a public handle alike. NULL is
 * fine. */
void lume_config_free(lume_config *c);
/* Deep copy (strings duplicated) into storage the caller owns (dst->heap
 * is false). 0, or -ENOMEM with dst zeroed. */
int  lume_config_copy(lume_config *dst, const lume_config *src);

/* Set one key. 0; -ENOENT for an unknown key (the message suggests the
 * nearest known one); -EINVAL for a value of the wrong type or out of range,
 * or a string that breaks its key's rule: no string may hold a NUL byte;
 * device_id is letters, digits and -._: (1..128 bytes); net.client_id and
 * net.username are well-formed UTF-8 (MQTT strings); each twin.groups name
 * is 1..128 bytes of well-formed UTF-8 without '+', '#' or '/' (it is a
 * level of the topic lume/groups/<group>/desired).
 * *err (malloc'd) names the key, the value and what was expected; c is
 * unchanged on error. A section name ("sandbox") with a table value returns
 * 1: the caller descends into it. */
int  lume_config_set(lume_config *c, const char *key, const lume_config_value *v,
                     char **err);
/* Cross-key checks after everything is set. 0 or -EINVAL with *err. */
int  lume_config_check(const lume_config *c, char **err);

/* Enumerate the field table (NULL past the end), for `lume help config`. */
const lume_config_field *lume_config_field_at(size_t i);

/* "ADDRESS:PORT" or "[V6]:PORT" of console.listen: 0 and host, port; or
 * -EINVAL (host and port untouched). */
int  lume_console_addr_parse(const char *s, char *host, size_t cap, int *port);
/* 127.0.0.0/8, ::1 or localhost. */
bool lume_console_addr_loopback(const char *host);
/* what a lume built with LUME_NO_CONSOLE=1 says of console.listen (and
 * `--console`): lume_config_check refuses it, runtime/no_console.c stands
 * in for runtime/console.c */
#define LUME_NO_CONSOLE_MSG "this lume was built without the web console (LUME_NO_CONSOLE)"

#endif
