/* The command line and the reference: every command's --help explains every option of its table,
 * unknown commands and options are named with the nearest known one, `eopt describe` prints the
 * classes' arguments, and docs/config.md covers exactly the keys the config parser accepts and
 * holds the current `eopt describe --markdown`. Commands run through the built binary (EOPT_BIN);
 * the tests run in the repository's root (docs/, configs/). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../cmd/commands.h"
#include "../framework/version.h"
#include "../train/config.h"
#include "testutil.h"

static const char *eopt_bin(void)
{
    const char *b = getenv("EOPT_BIN");
    if (!b)
        cr_skip_test("EOPT_BIN is not set");
    return b;
}

/* Runs `eopt ARGS` with stdout (and stderr if `with_stderr`) into a malloc'd string; returns the
 * exit status. */
static int eopt_run(const char *args, int with_stderr, char **out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s", eopt_bin(), args, with_stderr ? "2>&1" : "2>/dev/null");
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t n = 0, cap = 1 << 16;
    *out = malloc(cap);
    for (size_t got; (got = fread(*out + n, 1, cap - n - 1, p)) > 0;)
        if ((n += got) + 1 == cap)
            *out = realloc(*out, cap *= 2);
    (*out)[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s (the tests run in the repository's root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* ------------------------------------------------------------------------------------------
 * Help, version, suggestions */

Test(cli, main_help_lists_every_command)
{
    char *out;
    cr_expect_eq(eopt_run("--help", 0, &out), 0);
    for (const eopt_command *const *c = eopt_commands; *c; c++) {
        char want[64];
        snprintf(want, sizeof want, "\n  %s ", (*c)->name);
        cr_expect(strstr(out, want), "eopt --help does not list '%s':\n%s", (*c)->name, out);
    }
    cr_expect(strstr(out, "--version"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("-h", 0, &out), 0);
    free(out);
    cr_expect_eq(eopt_run("", 1, &out), 2, "no command: usage on stderr, status 2");
    cr_expect(strstr(out, "commands:"), "%s", out);
    free(out);
}

Test(cli, version_is_the_header_s)
{
    char *out, want[64];
    snprintf(want, sizeof want, "eopt %s\n", EOPT_VERSION);
    cr_expect_eq(eopt_run("--version", 0, &out), 0);
    cr_expect_str_eq(out, want);
    free(out);
    cr_expect_eq(eopt_run("-V", 0, &out), 0);
    cr_expect_str_eq(out, want);
    free(out);
}

/* `eopt CMD --help` (and -h, and `eopt help CMD`): status 0, the usage line, and every option of
 * the command's table by name, with its values and its explanation's first word. */
Test(cli, every_command_help_explains_every_option)
{
    for (const eopt_command *const *c = eopt_commands; *c; c++) {
        char args[128], *out, *out2, *out3;
        snprintf(args, sizeof args, "%s --help", (*c)->name);
        cr_expect_eq(eopt_run(args, 0, &out), 0, "eopt %s", args);
        char usage[128];
        snprintf(usage, sizeof usage, "usage: eopt %s", (*c)->name);
        cr_expect(strncmp(out, usage, strlen(usage)) == 0, "%s:\n%s", args, out);
        cr_expect(strstr(out, "-h, --help"), "%s", out);
        for (const eopt_option *o = (*c)->options; o && o->name; o++) {
            char line[256], first[64];
            snprintf(line, sizeof line, "\n  %s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
            snprintf(first, sizeof first, "%.*s", (int)strcspn(o->help, " "), o->help);
            const char *at = strstr(out, line);
            cr_expect(at, "eopt %s does not show '%s':\n%s", args, line + 3, out);
            cr_expect(o->help[0] && at && strstr(at, first), "%s: %s is not explained", args, o->name);
        }
        snprintf(args, sizeof args, "%s -h", (*c)->name);
        cr_expect_eq(eopt_run(args, 0, &out2), 0, "eopt %s", args);
        snprintf(args, sizeof args, "help %s", (*c)->name);
        cr_expect_eq(eopt_run(args, 0, &out3), 0, "eopt %s", args);
        cr_expect_str_eq(out2, out);
        cr_expect_str_eq(out3, out);
        free(out), free(out2), free(out3);
    }
}

Test(cli, misspelt_command_suggests_the_nearest)
{
    char *out;
    cr_expect_eq(eopt_run("trian configs/mlp_soap.cfg", 1, &out), 2);
    cr_expect(strstr(out, "unknown command 'trian' (did you mean 'train'?)"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("descibe", 1, &out), 2);
    cr_expect(strstr(out, "(did you mean 'describe'?)"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("frobnicate", 1, &out), 2);
    cr_expect(strstr(out, "unknown command 'frobnicate'") && !strstr(out, "did you mean"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("--verison", 1, &out), 2);
    cr_expect(strstr(out, "unknown option '--verison'"), "%s", out);
    free(out);
}

Test(cli, nearest_word)
{
    const char *cmds[] = {"train", "describe", "inspect", "replay", "verify-model", "selfcheck"};
    cr_expect_str_eq(eopt_nearest("trian", cmds, 6), "train");
    cr_expect_str_eq(eopt_nearest("verify_model", cmds, 6), "verify-model");
    cr_expect_str_eq(eopt_nearest("replya", cmds, 6), "replay");
    cr_expect_null(eopt_nearest("xyz", cmds, 6));
    cr_expect_null(eopt_nearest("anything", cmds, 0));
}

/* Every command names an unknown option (status 2), with the nearest known one when close. */
Test(cli, unknown_option_is_named)
{
    for (const eopt_command *const *c = eopt_commands; *c; c++) {
        char args[128], *out;
        snprintf(args, sizeof args, "%s --no-such-option", (*c)->name);
        cr_expect_eq(eopt_run(args, 1, &out), 2, "eopt %s", args);
        cr_expect(strstr(out, "unknown option '--no-such-option'"), "eopt %s:\n%s", args, out);
        free(out);
    }
    char *out;
    cr_expect_eq(eopt_run("train configs/mlp_soap.cfg --resum auto", 1, &out), 2);
    cr_expect(strstr(out, "eopt train: unknown option '--resum' (did you mean '--resume'?)"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("train configs/mlp_soap.cfg --set", 1, &out), 2);
    cr_expect(strstr(out, "eopt train: --set needs PATH=VALUE"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("inspect x.h5 --check=yes", 1, &out), 2);
    cr_expect(strstr(out, "--check takes no value"), "%s", out);
    free(out);
}

/* The parser on a command of its own: --opt=VALUE, options of two values, "--". */
static int dummy_run(int argc, char **argv)
{
    (void)argc, (void)argv;
    return 0;
}

Test(cli, option_parsing)
{
    cr_assert(freopen("/dev/null", "w", stderr)); /* the usage error below (each test runs in its own process) */
    static const eopt_option opts[] = {
        {"--one", "X", "one value"}, {"--two", "K FILE", "two values"}, {"--flag", NULL, "a flag"}, {0}};
    const eopt_command cmd = {"dummy", "ARGS", "a test", NULL, opts, dummy_run};
    char *argv[] = {"dummy", "a", "--one=1", "--two", "5", "f.h5", "--flag", "--one", "2", "--", "--flag", NULL};
    eopt_args a;
    eopt_args_init(&a, &cmd, 11, argv);
    cr_expect_eq(eopt_args_next(&a), EOPT_ARGS_POS);
    cr_expect_str_eq(a.val[0], "a");
    cr_expect_eq(eopt_args_next(&a), 0);
    cr_expect_str_eq(a.val[0], "1");
    cr_expect_eq(eopt_args_next(&a), 1);
    cr_expect_str_eq(a.val[0], "5");
    cr_expect_str_eq(a.val[1], "f.h5");
    cr_expect_eq(eopt_args_next(&a), 2);
    cr_expect_eq(eopt_args_next(&a), 0);
    cr_expect_str_eq(a.val[0], "2");
    cr_expect_eq(eopt_args_next(&a), EOPT_ARGS_POS, "after --, an option's name is an argument");
    cr_expect_str_eq(a.val[0], "--flag");
    cr_expect_eq(eopt_args_next(&a), EOPT_ARGS_END);

    char *missing[] = {"dummy", "--two", "5", NULL};
    eopt_args_init(&a, &cmd, 3, missing);
    cr_expect_eq(eopt_args_next(&a), EOPT_ARGS_EXIT, "--two needs two values");
    cr_expect_eq(a.status, 2);
}

/* ------------------------------------------------------------------------------------------
 * eopt describe */

Test(cli, describe_prints_every_argument)
{
    for (const eopt_optimizer_class *const *c = eopt_optimizer_classes(); *c; c++) {
        char args[128], *out;
        snprintf(args, sizeof args, "describe %s", (*c)->id);
        cr_expect_eq(eopt_run(args, 0, &out), 0, "eopt %s", args);
        for (int t = 0; t < 2; t++)
            for (const eopt_hparam *h = t ? (*c)->group_keys : (*c)->arg_keys; h && h->key; h++) {
                char want[64], line[512] = "";
                snprintf(want, sizeof want, "\n  %s ", h->key);
                const char *at = strstr(out, want);
                cr_expect(at, "eopt %s does not show '%s'", args, h->key);
                if (at)
                    snprintf(line, sizeof line, "%.*s", (int)strcspn(at + 1, "\n"), at + 1);
                for (int k = 0; h->kind == EOPT_HP_ENUM && h->choices[k]; k++)
                    cr_expect(strstr(line, h->choices[k]), "eopt %s: '%s' does not list the allowed value '%s'",
                              args, line, h->choices[k]);
            }
        free(out);
    }
    char *out;
    cr_expect_eq(eopt_run("describe Muon", 0, &out), 0);
    cr_expect(strstr(out, "\n  weight_decay_method        string    \"decoupled\"      -         "
                          "decoupled, independent, l2, palm\n"),
              "%s", out);
    cr_expect(strstr(out, "\n  lr                         float     0.0003           schedule\n"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("describe muon", 1, &out), 2);
    cr_expect(strstr(out, "unknown optimizer class 'muon' (did you mean 'Muon'?); known: Muon"), "%s", out);
    free(out);
    cr_expect_eq(eopt_run("describe", 0, &out), 0, "without a class: the list");
    for (const eopt_optimizer_class *const *c = eopt_optimizer_classes(); *c; c++)
        cr_expect(strstr(out, (*c)->id), "%s", out);
    free(out);
}

/* An unknown optimizer argument lists every valid one of the class. */
Test(cli, unknown_optimizer_argument_lists_the_valid_ones)
{
    static eopt_config cfg;
    const char *text = "model = { kind = \"mlp\"; dims = [784, 10]; };\n"
                       "optimizers = ( { name = \"m\"; class = \"Muon\"; args = { lr = 0.02; nestrov = true; };\n"
                       "                 groups = ( { params = \"*\"; } ); } );\n";
    cr_assert_neq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg), EOPT_OK);
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, "t.cfg:2: optimizers.[0].args.nestrov: unknown key 'nestrov' (did you mean 'nesterov'?)"),
              "%s", msg);
    eopt_dict args, group;
    cr_assert_eq(eopt_optimizer_defaults(eopt_optimizer_find("Muon"), &args, &group), EOPT_OK);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < (t ? group.n : args.n); k++) {
            const char *key = (t ? group.items : args.items)[k].key;
            cr_expect(strstr(msg, key), "the message does not list '%s': %s", key, msg);
        }
}

/* ------------------------------------------------------------------------------------------
 * docs/config.md */

#define MAX_KEYS 256

/* The first cells of the key tables of docs/config.md before its optimizer section:
 * "| `run.steps` | ..." -> "run.steps". */
static int doc_keys(const char *doc, char (*keys)[96])
{
    const char *end = strstr(doc, "\n## Optimizer classes");
    cr_assert(end, "docs/config.md has no '## Optimizer classes' section");
    int n = 0;
    for (const char *l = doc; l && l < end; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, "| `", 3) != 0)
            continue;
        int len = (int)strcspn(l + 3, "`");
        cr_assert_lt(n, MAX_KEYS);
        snprintf(keys[n++], 96, "%.*s", len, l + 3);
    }
    return n;
}

/* The parser's keys as docs/config.md writes them: "run.steps", top-level "model". */
static int parser_keys(char (*keys)[96])
{
    int n = 0;
    for (const eopt_config_keys *t = eopt_config_key_tables(); t->section; t++)
        for (int k = 0; t->keys[k]; k++) {
            char key[96];
            snprintf(key, sizeof key, "%s%s%s", t->section, t->section[0] ? "." : "", t->keys[k]);
            int dup = 0;
            for (int j = 0; j < n && !dup; j++)
                dup = strcmp(keys[j], key) == 0;
            if (!dup) {
                cr_assert_lt(n, MAX_KEYS);
                snprintf(keys[n++], 96, "%s", key);
            }
        }
    return n;
}

static int contains(char (*keys)[96], int n, const char *key)
{
    for (int k = 0; k < n; k++)
        if (strcmp(keys[k], key) == 0)
            return 1;
    return 0;
}

Test(cli, config_doc_covers_every_parser_key)
{
    static char doc[MAX_KEYS][96], parser[MAX_KEYS][96];
    char *text = read_text("docs/config.md");
    int nd = doc_keys(text, doc), np = parser_keys(parser);
    cr_expect_gt(np, 50, "the parser lists its keys");
    for (int k = 0; k < np; k++)
        cr_expect(contains(doc, nd, parser[k]), "docs/config.md does not document '%s' (the parser accepts it)",
                  parser[k]);
    for (int k = 0; k < nd; k++)
        cr_expect(contains(parser, np, doc[k]), "docs/config.md documents '%s', which the parser does not accept",
                  doc[k]);
    free(text);
}

/* The tables the test compares are the ones the parser checks: a key missing from them is refused. */
Test(cli, parser_key_tables_are_what_it_accepts)
{
    static eopt_config cfg;
    const char *base = "model = { kind = \"mlp\"; dims = [784, 10]; };\n"
                       "optimizers = ( { name = \"m\"; class = \"AdamW\"; groups = ( { params = \"*\"; } ); } );\n";
    cr_assert_eq(eopt_config_parse(base, "t.cfg", 0, NULL, &cfg), EOPT_OK, "%s", eopt_last_error());
    const char *sets[] = {"run.eval_interval=5", "log.progress=\"none\"", "checkpoint.keep=1", "data.normalize=false"};
    for (int k = 0; k < 4; k++)
        cr_expect_eq(eopt_config_parse(base, "t.cfg", 1, &sets[k], &cfg), EOPT_OK, "%s: %s", sets[k],
                     eopt_last_error());
    const char *bad[] = {"run.eval_every=5", "log.bar=1", "checkpoint.folder=\"x\"", "data.file=\"x\""};
    for (int k = 0; k < 4; k++) {
        cr_expect_neq(eopt_config_parse(base, "t.cfg", 1, &bad[k], &cfg), EOPT_OK, "%s", bad[k]);
        cr_expect(strstr(eopt_last_error(), "valid keys here: "), "%s", eopt_last_error());
    }
}

Test(cli, config_doc_optimizer_section_is_current)
{
    char *gen, *doc = read_text("docs/config.md");
    cr_assert_eq(eopt_run("describe --markdown", 0, &gen), 0);
    const char *begin = strstr(doc, "<!-- begin: generated by eopt describe"),
               *end = strstr(doc, "<!-- end: generated by eopt describe");
    cr_assert(begin && end, "docs/config.md lacks the generated section's markers");
    end = strchr(end, '\n') + 1;
    cr_expect(strlen(gen) == (size_t)(end - begin) && strncmp(gen, begin, strlen(gen)) == 0,
              "docs/config.md's optimizer section is not `eopt describe --markdown`: run `make docs`");
    for (const eopt_optimizer_class *const *c = eopt_optimizer_classes(); *c; c++) {
        char head[64];
        snprintf(head, sizeof head, "\n### %s\n", (*c)->id);
        cr_expect(strstr(gen, head), "no section for %s", (*c)->id);
    }
    free(gen);
    free(doc);
}

/* ------------------------------------------------------------------------------------------
 * configs/: each header states the steps (the config's own run.steps) and the time; the
 * optimizer comparisons (gpt_*.cfg, mlp_*.cfg) also the number reached, and all of one family run
 * the same steps, so that their numbers compare. */

Test(cli, config_headers_state_steps_time_and_result)
{
    static eopt_config cfg;
    FILE *ls = popen("ls configs/*.cfg", "r");
    cr_assert(ls);
    char path[512];
    int64_t steps[2] = {0, 0}; /* the first gpt_ and mlp_ config's */
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        char *text = read_text(path), *at = strstr(text, "\n# Steps: ");
        const char *base = strrchr(path, '/') + 1;
        int family = strncmp(base, "gpt_", 4) == 0 ? 1 : strncmp(base, "mlp_", 4) == 0 ? 0 : -1;
        cr_assert_eq(eopt_config_load(path, 0, NULL, &cfg), EOPT_OK, "%s: %s", path, eopt_last_error());
        cr_expect(at && strtoll(at + 10, NULL, 10) == cfg.run.steps,
                  "%s: the header's '# Steps: N' is not run.steps = %lld", path, (long long)cfg.run.steps);
        cr_expect(strstr(text, "\n# Time here: "), "%s: no '# Time here:' line", path);
        if (family >= 0) {
            cr_expect(strstr(text, "\n# Reaches: "), "%s: no '# Reaches:' line", path);
            steps[family] = steps[family] ? steps[family] : cfg.run.steps;
            cr_expect_eq(cfg.run.steps, steps[family], "%s runs %lld steps, the other %s configs %lld", path,
                         (long long)cfg.run.steps, family ? "gpt_" : "mlp_", (long long)steps[family]);
        }
        free(text);
        n++;
    }
    pclose(ls);
    cr_expect_geq(n, 2);
}
