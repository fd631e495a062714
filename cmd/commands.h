/* The subcommands of the `eopt` program; each lives in its own file under cmd/ and declares its
 * options and help as an eopt_command (cli.h), and eopt_commands lists them. */
#ifndef EOPT_COMMANDS_H
#define EOPT_COMMANDS_H

#include "cli.h"

extern const eopt_command eopt_cmd_train;
extern const eopt_command eopt_cmd_study;
extern const eopt_command eopt_cmd_describe;
extern const eopt_command eopt_cmd_inspect;
extern const eopt_command eopt_cmd_replay;
extern const eopt_command eopt_cmd_verify_model;
extern const eopt_command eopt_cmd_selfcheck;
extern const eopt_command eopt_cmd_metrics;
extern const eopt_command eopt_cmd_plot;
extern const eopt_command eopt_cmd_report;
extern const eopt_command eopt_cmd_bench;

/* Every command above, NULL-terminated (commands.c): `eopt` dispatches through it and the tests
 * check each command's help. */
extern const eopt_command *const eopt_commands[];

#endif
