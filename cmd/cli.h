/* The command line shared by the commands of `eopt`: each command declares its options once, as a
 * table, and the same table parses argv, prints `eopt CMD --help` and names an unknown option
 * with the nearest known one. A command's file then holds only its table and what it does:
 *
 *   static const eopt_option opts[] = {
 *       {"--device", "cpu|cuda", "the backend (default: cpu)"},
 *       {"--check", NULL, "validate the file as well; exit 1 on a problem"},
 *       {0}};
 *   const eopt_command eopt_cmd_inspect = {"inspect", "FILE", "summarise a checkpoint", NULL, opts, run};
 *
 *   eopt_args a;
 *   eopt_args_init(&a, &eopt_cmd_inspect, argc, argv);
 *   for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
 *       if (id == EOPT_ARGS_EXIT) return a.status;   // --help printed (0), or a usage error (2)
 *       if (id == EOPT_ARGS_POS) ... a.val[0] ...
 *       else if (strcmp(opts[id].name, "--device") == 0) device = a.val[0];
 *   }
 */
#ifndef EOPT_CLI_H
#define EOPT_CLI_H

#include <stdio.h>

typedef struct {
    const char *name; /* "--set" (NULL ends a table) */
    const char *arg;  /* the values it takes, space-separated, at most 4 ("PATH=VALUE", "K FILE"); NULL: a flag */
    const char *help; /* what it does, its default, whether it repeats (wrapped when printed) */
} eopt_option;

typedef struct {
    const char *name;    /* "train" */
    const char *args;    /* the positional arguments ("CONFIG", "[cpu|cuda]") */
    const char *summary; /* one line, for `eopt --help` */
    const char *details; /* printed after the options by `eopt CMD --help` (NULL: none) */
    const eopt_option *options;
    int (*run)(int argc, char **argv); /* argv[0] is the command's name */
} eopt_command;

enum { EOPT_ARGS_END = -1, EOPT_ARGS_POS = -2, EOPT_ARGS_EXIT = -3 };

typedef struct {
    const eopt_command *cmd;
    int argc, k;
    char **argv;
    int options_done; /* after "--": everything is positional */
    const char *val[4]; /* the option's values, or the positional argument in val[0] */
    int status;         /* with EOPT_ARGS_EXIT: the exit status (0 after --help, 2 after an error) */
} eopt_args;

void eopt_args_init(eopt_args *a, const eopt_command *cmd, int argc, char **argv);
/* The next argument: the index of an option in cmd->options (its values in a->val), EOPT_ARGS_POS
 * (a->val[0]), EOPT_ARGS_END, or EOPT_ARGS_EXIT after -h/--help (help printed on stdout, status
 * 0) or a usage error (an unknown option named with the nearest known one, or a missing value,
 * on stderr; status 2). "--opt=VALUE" is "--opt VALUE" for an option of one value. */
int eopt_args_next(eopt_args *a);

/* Prints "eopt CMD: <message>", the usage line and where the help is, on stderr; returns 2. */
int eopt_usage_error(const eopt_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `eopt CMD --help`: usage, summary, every option explained, details. */
void eopt_command_help(const eopt_command *cmd, FILE *f);
/* The usage line: "usage: eopt train CONFIG [options]". */
void eopt_command_usage(const eopt_command *cmd, FILE *f);
/* Prints `text` wrapped to `width` columns, every line indented by `indent` spaces except the
 * first, which continues at column `col` (col < indent: pads to indent). */
void eopt_print_wrapped(FILE *f, const char *text, int col, int indent, int width);

#endif
