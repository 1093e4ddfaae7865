/* cli/cli.h — the `lume` command: `run` and the local commands in main.c,
 * the operator commands (against the hub, not a running lume) in ops.c.
 * Exit codes everywhere: 0 ok, 1 runtime failure, 2 usage or configuration. */
#ifndef LUME_CLI_H
#define LUME_CLI_H

#define EXIT_USAGE 2
#define EXIT_FAIL  1

/* ops.c — operator commands */
int lume_cmd_keygen(int argc, char **argv);
int lume_cmd_sign(int argc, char **argv);
int lume_cmd_push(int argc, char **argv);
int lume_cmd_twin(int argc, char **argv);
int lume_cmd_fleet(int argc, char **argv);

/* provision.c — Azure DPS registration by hand */
int lume_cmd_provision(int argc, char **argv);

#endif
