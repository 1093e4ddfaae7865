/* tests/unit/testutil.h — helpers shared by lume's C unit tests: temp
 * folders, files, child processes, loopback ports, and test certificates and
 * TLS servers made with the openssl CLI.
 *
 * The Makefile links testutil.c into every build/tests/test_* binary. These
 * helpers never assert (they are also used from cmocka group setups, which
 * report failure by returning -1): each says what it returns on failure, and
 * the test decides what to assert. Test code is not part of liblume.a, so the
 * tu_ prefix is ours and no lume_ is needed. */
#ifndef LUME_TESTUTIL_H
#define LUME_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* ---- folders and files ------------------------------------------------- */

/* Make a fresh folder $TMPDIR/lume-<tag>-XXXXXX (/tmp when TMPDIR is unset
 * or empty) and write its path into dir. 0, or -errno with dir set to "" and
 * nothing created (-ENAMETOOLONG when the path does not fit in size). */
int tu_tmpdir(char *dir, size_t size, const char *tag);

/* Remove dir and everything below it (files, links, sub-folders). Quietly
 * does nothing for NULL, "" or a folder that is not there. */
void tu_rm_tree(const char *dir);

/* "dir/name" in storage that stays valid until the process exits; the same
 * text for the same dir and name. Aborts when more than 128 distinct paths
 * were asked for or one is longer than 511 bytes (a bug in the test). */
const char *tu_path(const char *dir, const char *name);

/* Create or replace path with len bytes of data. 0, or -1 when it could not
 * be opened, fully written or closed (the file may then be partial). */
int tu_write_file(const char *path, const void *data, size_t len);

/* tu_write_file with a NUL-terminated text (the NUL is not written). */
int tu_write_text(const char *path, const char *text);

/* Copy every dir/<x>.log to stderr, each under a header naming it: for a
 * setup that failed. */
void tu_dump_logs(const char *dir);

/* ---- processes ---------------------------------------------------------- */

/* Run argv[0] (looked up in PATH) with argv, NULL-terminated, and wait for
 * it. It runs in dir (NULL: ours) with stdin /dev/null and stdout and stderr
 * appended to log (relative to dir unless absolute; NULL: /dev/null), and is
 * killed if this process dies first. Returns its exit status (0..255; 126
 * when it could not enter dir, 127 when exec failed), -1 when it was killed
 * by a signal, -2 when it could not be started (fork failed). */
int tu_run(const char *dir, const char *log, const char *const *argv);

/* When *pid > 0: send it sig and reap it. Then *pid = -1. */
void tu_stop(pid_t *pid, int sig);

/* Sleep ms milliseconds, resuming after signals. */
void tu_sleep_ms(int ms);

/* ---- loopback ----------------------------------------------------------- */

/* A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick;
 * someone may take it before the caller does). The port, or -1. */
int tu_free_port(void);

/* The same on another loopback address ("127.0.0.1" or "::1"): -1 also when
 * the address cannot be bound (no IPv6 here). */
int tu_free_port_at(const char *addr);

/* ---- lume runtimes ----------------------------------------------------- */

struct lume_config;

/* A log sink that drops every line; tu_quiet_logs(true) sends the process's
 * lines there (lume_log_set_sink), tu_quiet_logs(false) back to stderr. */
void tu_quiet(void *ud, int level, const char *component, const char *msg);
void tu_quiet_logs(int on);

/* Set key to the text val as a config file would (lume_config_set; "true"
 * and "false" for a boolean key, digits for a number). 0, or -1 with the
 * key, the value and the reason on stderr. */
int tu_config_set(struct lume_config *c, const char *key, const char *val);

/* A config for a test runtime, run from the tree's top (tests/run does):
 * lume_config_init, the sim board with the tree's boards/ and stdlib/,
 * scripts_dir and store as given (NULL scripts_dir: the tree's scripts/),
 * device_id, log level error, no status line, no script watching, unsigned
 * bundles allowed. 0, or -1 with the reason on stderr (c then holds nothing
 * to free). */
int tu_runtime_config(struct lume_config *c, const char *scripts_dir, const char *store,
                      const char *device_id);

/* ---- openssl: certificates and s_server --------------------------------- */

/* Extensions file text for a server leaf valid for localhost and 127.0.0.1. */
#define TU_SERVER_EXT                                                           \
    "basicConstraints=CA:FALSE\n"                                               \
    "keyUsage=digitalSignature,keyAgreement\n"                                  \
    "extendedKeyUsage=serverAuth\n"                                             \
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"

/* Run `openssl <args...>` (NULL-terminated) in dir, output appended to
 * dir/openssl.log. 0 when it exited 0, else -1. */
int tu_openssl(const char *dir, ...);

/* A self-signed CA valid for 3 days: dir/<base>.key (P-256) and
 * dir/<base>.pem with subject subj ("/CN=..."). 0 or -1 (see
 * dir/openssl.log). */
int tu_make_ca(const char *dir, const char *base, const char *subj);

/* A leaf signed by the CA dir/<ca>.pem + dir/<ca>.key: dir/<base>.key
 * (P-256), dir/<base>.csr and dir/<base>.pem with subject subj, extensions
 * from the file dir/<ext>, validity days (a string; "-1" makes it already
 * expired) and serial. 0 or -1 (see dir/openssl.log). */
int tu_make_leaf(const char *dir, const char *base, const char *subj, const char *ca,
                 const char *ext, const char *days, const char *serial);

/* Start `openssl s_server -accept 127.0.0.1:<port> <args...>` (args
 * NULL-terminated) on a free port, in a child set up as tu_run sets one up
 * (dir, log), and connect to it once it accepts (polling, up to ~20 s on a
 * loaded machine; a port someone else took in between makes s_server exit
 * and another port is tried, five in all). Returns the connected socket,
 * with *pid the server (stop it with tu_stop) and *port its port; or -1
 * with *pid = -1 and no server left running (see log). */
int tu_s_server(const char *dir, const char *log, const char *const *args, pid_t *pid,
                int *port);

/* tu_s_server listening on addr ("127.0.0.1" or "::1") instead. */
int tu_s_server_at(const char *dir, const char *log, const char *addr,
                   const char *const *args, pid_t *pid, int *port);

#endif
