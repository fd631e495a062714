/* The `eopt` command: dispatches to the subcommands of commands.h. */
#include <stdio.h>
#include <string.h>

#include "../framework/log.h"
#include "commands.h"

static const eopt_command commands[] = {
    {"selfcheck", "selfcheck [cpu|cuda]          check the backend and print what it can do", eopt_cmd_selfcheck},
    {"verify-model", "verify-model FILE.h5 [--device cpu|cuda]  check a model's forward/backward against a reference",
     eopt_cmd_verify_model},
    {"replay", "replay CKPT TRAJECTORY [--save-at K FILE] [--device cpu|cuda]  replay recorded gradients, compare",
     eopt_cmd_replay},
    {"inspect", "inspect FILE [--check]        summarise a checkpoint; --check validates it", eopt_cmd_inspect},
    {"train", "train CONFIG [--set PATH=VALUE]... [--resume FILE|auto] [--init FILE [--init-optimizer]]  train a model",
     eopt_cmd_train},
    {"metrics", "metrics RUN_DIR... [--csv]   runs side by side: steps, final and best eval, time", eopt_cmd_metrics},
    {"plot", "plot RUN_DIR... -o FILE.png   loss curves (train and eval) of runs, with gnuplot", eopt_cmd_plot},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: eopt <command> [args]\n");
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        fprintf(f, "  %s\n", commands[k].usage);
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
    else
        printf("%s\n", msg);
}

int main(int argc, char **argv)
{
    eopt_log_set_handler(print_log, NULL);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (strcmp(argv[1], commands[k].name) == 0)
            return commands[k].run(argc - 1, argv + 1);
    fprintf(stderr, "eopt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
