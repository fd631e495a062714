/* The command line shared by the commands (cli.h). */
#include "cli.h"

#include <stdarg.h>
#include <string.h>

#include "../train/config.h"

#define HELP_WIDTH 100
#define HELP_COLUMN 26 /* where an option's explanation starts */

void eopt_args_init(eopt_args *a, const eopt_command *cmd, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->k = 1;
}

/* How many values an option takes: the words of its `arg`. */
static int option_arity(const eopt_option *o)
{
    int n = 0;
    for (const char *s = o->arg; s && *s; n++) {
        s += strspn(s, " ");
        s += strcspn(s, " ");
        s += strspn(s, " ");
    }
    return n;
}

static int unknown_option(const eopt_command *cmd, const char *arg)
{
    const char *names[64];
    int n = 0;
    for (const eopt_option *o = cmd->options; o && o->name && n < 63; o++)
        names[n++] = o->name;
    names[n++] = "--help";
    const char *near = eopt_nearest(arg, names, n);
    if (near)
        return eopt_usage_error(cmd, "unknown option '%s' (did you mean '%s'?)", arg, near);
    return eopt_usage_error(cmd, "unknown option '%s'", arg);
}

int eopt_args_next(eopt_args *a)
{
    memset(a->val, 0, sizeof a->val);
    if (a->k >= a->argc)
        return EOPT_ARGS_END;
    const char *arg = a->argv[a->k++];
    if (!a->options_done && strcmp(arg, "--") == 0) {
        a->options_done = 1;
        return eopt_args_next(a);
    }
    if (a->options_done || arg[0] != '-' || arg[1] == 0) { /* "-" is a name (stdin, by convention) */
        a->val[0] = arg;
        return EOPT_ARGS_POS;
    }
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
        eopt_command_help(a->cmd, stdout);
        a->status = 0;
        return EOPT_ARGS_EXIT;
    }
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (int id = 0; a->cmd->options && a->cmd->options[id].name; id++) {
        const eopt_option *o = &a->cmd->options[id];
        if (strlen(o->name) != len || strncmp(o->name, arg, len) != 0)
            continue;
        int n = option_arity(o);
        if (eq && n != 1) {
            a->status = eopt_usage_error(a->cmd, n ? "%s takes %s: write them after it, not after '='"
                                                   : "%s takes no value",
                                         o->name, o->arg);
            return EOPT_ARGS_EXIT;
        }
        if (eq) {
            a->val[0] = eq + 1;
            return id;
        }
        if (a->k + n > a->argc) {
            a->status = eopt_usage_error(a->cmd, "%s needs %s", o->name, o->arg);
            return EOPT_ARGS_EXIT;
        }
        for (int v = 0; v < n; v++)
            a->val[v] = a->argv[a->k++];
        return id;
    }
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)len, arg);
    a->status = unknown_option(a->cmd, name);
    return EOPT_ARGS_EXIT;
}

void eopt_command_usage(const eopt_command *cmd, FILE *f)
{
    int has_options = cmd->options && cmd->options[0].name;
    fprintf(f, "usage: eopt %s%s%s%s\n", cmd->name, cmd->args && cmd->args[0] ? " " : "", cmd->args ? cmd->args : "",
            has_options ? " [options]" : "");
}

int eopt_usage_error(const eopt_command *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "eopt %s: ", cmd->name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    eopt_command_usage(cmd, stderr);
    fprintf(stderr, "Run 'eopt %s --help' for every option.\n", cmd->name);
    return 2;
}

void eopt_print_wrapped(FILE *f, const char *text, int col, int indent, int width)
{
    int fresh = 1; /* at the start of a line: the next word needs no space before it */
    for (; col < indent; col++)
        fputc(' ', f);
    while (*text) {
        if (*text == '\n') { /* a line break of the text's own, and its leading spaces, are kept */
            size_t lead = strspn(++text, " ");
            col = indent + (int)lead;
            fprintf(f, "\n%*s", col, "");
            text += lead;
            fresh = 1;
            continue;
        }
        size_t word = strcspn(text, " \n");
        if (!fresh && col + 1 + (int)word > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (!fresh) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", (int)word, text);
        col += (int)word;
        fresh = 0;
        text += word;
        text += strspn(text, " ");
    }
    fputc('\n', f);
}

static void print_option(FILE *f, const char *name, const char *arg, const char *help)
{
    int col = fprintf(f, "  %s%s%s", name, arg ? " " : "", arg ? arg : "");
    if (col + 2 > HELP_COLUMN) { /* a long name: its explanation on the next line */
        fputc('\n', f);
        col = 0;
    }
    eopt_print_wrapped(f, help, col, HELP_COLUMN, HELP_WIDTH);
}

void eopt_command_help(const eopt_command *cmd, FILE *f)
{
    eopt_command_usage(cmd, f);
    fputc('\n', f);
    eopt_print_wrapped(f, cmd->summary, 0, 0, HELP_WIDTH);
    fprintf(f, "\noptions:\n");
    for (const eopt_option *o = cmd->options; o && o->name; o++)
        print_option(f, o->name, o->arg, o->help);
    print_option(f, "-h, --help", NULL, "show this help and exit");
    if (cmd->details) {
        fputc('\n', f);
        eopt_print_wrapped(f, cmd->details, 0, 0, HELP_WIDTH);
    }
}
