/* The subcommands of the `eopt` program; each lives in its own file under cmd/. */
#ifndef EOPT_COMMANDS_H
#define EOPT_COMMANDS_H

typedef struct {
    const char *name;
    const char *usage;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} eopt_command;

int eopt_cmd_selfcheck(int argc, char **argv);
int eopt_cmd_verify_model(int argc, char **argv);
int eopt_cmd_replay(int argc, char **argv);
int eopt_cmd_inspect(int argc, char **argv);
int eopt_cmd_train(int argc, char **argv);
int eopt_cmd_metrics(int argc, char **argv);
int eopt_cmd_plot(int argc, char **argv);

#endif
