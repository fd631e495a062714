/* The `eopt` command: dispatches to the subcommands of commands.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../framework/log.h"
#include "../framework/version.h"
#include "../train/config.h"
#include "commands.h"

static void help(FILE *f)
{
    fprintf(f, "eopt %s: training with matrix optimizers (the Muon family, SOAP, MOSO, dion) and AdamW\n\n"
               "usage: eopt COMMAND [ARGS]\n       eopt COMMAND --help   (every option of a command)\n\ncommands:\n",
            EOPT_VERSION);
    for (const eopt_command *const *c = eopt_commands; *c; c++) {
        int col = fprintf(f, "  %s", (*c)->name);
        eopt_print_wrapped(f, (*c)->summary, col, 16, 100);
    }
    fprintf(f, "\noptions:\n  -h, --help     show this help and exit\n  -V, --version  print the version and exit\n\n"
               "Configuration keys and every optimizer's arguments: docs/config.md (eopt describe CLASS).\n");
}

static const eopt_command *find_command(const char *name)
{
    for (const eopt_command *const *c = eopt_commands; *c; c++)
        if (strcmp(name, (*c)->name) == 0)
            return *c;
    return NULL;
}

static int unknown_command(const char *name)
{
    const char *names[32];
    int n = 0;
    for (const eopt_command *const *c = eopt_commands; *c && n < 32; c++)
        names[n++] = (*c)->name;
    const char *near = eopt_nearest(name, names, n);
    fprintf(stderr, "eopt: unknown %s '%s'", name[0] == '-' ? "option" : "command", name);
    if (near)
        fprintf(stderr, " (did you mean '%s'?)", near);
    fprintf(stderr, "\nRun 'eopt --help' for the commands.\n");
    return 2;
}

/* Library messages: progress overwrites itself on a terminal (and is cleared before any other
 * message), warnings go to stderr, the rest to stdout. */
static void print_log(eopt_log_level level, const char *msg, void *user)
{
    static int progress_shown;
    (void)user;
    if (level != EOPT_LOG_PROGRESS && progress_shown)
        fprintf(stderr, "\r%-100s\r", "");
    progress_shown = level == EOPT_LOG_PROGRESS;
    if (level == EOPT_LOG_PROGRESS) {
        fprintf(stderr, "\r%-100s", msg);
        fflush(stderr);
    } else if (level == EOPT_LOG_WARN)
        fprintf(stderr, "eopt: warning: %s\n", msg);
    else {
        printf("%s\n", msg);
        fflush(stdout); /* a log file (a study's train.log) follows the run line by line */
    }
}

int main(int argc, char **argv)
{
    eopt_log_set_handler(print_log, NULL);
    /* A write past a file size limit (ulimit -f) then fails with EFBIG, which every writer reports
     * with the file's name, instead of killing the process without a word. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        help(stderr);
        return 2;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
        help(stdout);
        return 0;
    }
    if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
        printf("eopt %s\n", EOPT_VERSION);
        return 0;
    }
    if (strcmp(arg, "help") == 0 && argc > 2) { /* eopt help CMD = eopt CMD --help */
        if (!find_command(argv[2]))
            return unknown_command(argv[2]);
        eopt_command_help(find_command(argv[2]), stdout);
        return 0;
    }
    if (strcmp(arg, "help") == 0) {
        help(stdout);
        return 0;
    }
    const eopt_command *cmd = find_command(arg);
    return cmd ? cmd->run(argc - 1, argv + 1) : unknown_command(arg);
}
