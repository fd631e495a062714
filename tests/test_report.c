/* `eopt report` (issue 17): a synthetic study folder written here (study.json, outcome.json,
 * run.json, metrics.jsonl with spikes, diagnostics lines and nulls; a finished, diverged,
 * unfinished and pending run), its table checked number by number, the CSV byte by byte, the
 * plots as PNG files, and the errors for damaged files; the JSON reader underneath. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/commands.h"
#include "cmd/gnuplot.h"
#include "train/json.h"
#include "train/report.h"
#include "train/run_dir.h"

static void put(const char *dir, const char *file, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(const char *dir, const char *file, const char *fmt, ...)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *slash = strrchr(path, '/');
    *slash = 0;
    cr_assert_eq(eopt_make_dirs(path), EOPT_OK, "%s", eopt_last_error());
    *slash = '/';
    FILE *f = fopen(path, "w");
    cr_assert(f, "%s", path);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    cr_assert_eq(fclose(f), 0);
}

#define HEADER "{\"schema\": \"eopt-metrics\", \"version\": 1, \"model\": \"gpt\", \"steps\": 10, \"items\": \"tokens\"}\n"
#define AXES "\"axes\": [\"optimizers.matrix.class\", \"optimizers.matrix.args.lr\", \"run.seed\"], \"seed_axis\": \"run.seed\""

static const char *const study_json =
    "{\"schema\": \"eopt-study\", \"version\": 1, \"name\": \"tiny\",\n " AXES ",\n"
    " \"runs\": [\n"
    "  {\"name\": \"Muon-lr0.01-seed1\", \"settings\": {\"optimizers.matrix.class\": \"Muon\", \"optimizers.matrix.args.lr\": 0.01, \"run.seed\": 1}},\n"
    "  {\"name\": \"Muon-lr0.01-seed2\", \"settings\": {\"optimizers.matrix.class\": \"Muon\", \"optimizers.matrix.args.lr\": 0.01, \"run.seed\": 2}},\n"
    "  {\"name\": \"Muon-lr0.1-seed1\", \"settings\": {\"optimizers.matrix.class\": \"Muon\", \"optimizers.matrix.args.lr\": 0.1, \"run.seed\": 1}},\n"
    "  {\"name\": \"Muon-lr0.1-seed2\", \"settings\": {\"optimizers.matrix.class\": \"Muon\", \"optimizers.matrix.args.lr\": 0.1, \"run.seed\": 2}},\n"
    "  {\"name\": \"AdamW-lr0.001-seed1\", \"settings\": {\"optimizers.matrix.class\": \"AdamW\", \"optimizers.matrix.args.lr\": 0.001, \"run.seed\": 1}}\n"
    " ]}\n";

/* Train lines of steps [from, to] with loss 4 - step/10 at `rate` tokens/s. */
static void steps(FILE *f, int from, int to, double rate)
{
    for (int s = from; s <= to; s++)
        fprintf(f, "{\"step\": %d, \"train_loss\": %g, \"grad_norm\": 1, \"tokens_per_s\": %g, \"time_s\": %d}\n", s,
                4 - s / 10.0, rate, s);
}

static char *metrics_text(void (*write)(FILE *f))
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    cr_assert(f);
    fputs(HEADER, f);
    write(f);
    fclose(f);
    return text;
}

/* seed 1 of lr 0.01: finished, evals 3.0 and 2.5, a spike at step 3 */
static void m_a1(FILE *f)
{
    steps(f, 1, 2, 1000);
    fprintf(f, "{\"step\": 3, \"train_loss\": 9.5, \"tokens_per_s\": 1000, \"time_s\": 3, \"spike\": {\"z\": 6.1, \"mean\": 3.7, \"std\": 0.9}}\n");
    fprintf(f, "{\"step\": 3, \"diagnostics\": {\"params\": {\"h.0.attn.c_attn.weight\": {\"weight_sn\": 4.5, \"update_sn\": null}}, "
               "\"attn_logit_max\": [1.5, null, 2.5]}}\n");
    steps(f, 4, 5, 1000);
    fprintf(f, "{\"step\": 5, \"eval_loss\": 3.0}\n");
    steps(f, 6, 10, 1000);
    fprintf(f, "{\"step\": 10, \"eval_loss\": 2.5}\n");
}

/* seed 2 of lr 0.01: finished, evals 2.0 and 2.7, diagnostics every 5 steps */
static void m_a2(FILE *f)
{
    steps(f, 1, 5, 1200);
    fprintf(f, "{\"step\": 5, \"eval_loss\": 2.0}\n");
    fprintf(f, "{\"step\": 5, \"diagnostics\": {\"params\": {\"a\": {\"weight_sn\": 3.0, \"update_sn\": 0.25}, "
               "\"b\": {\"weight_sn\": 7.0, \"update_sn\": 0.5, \"update_sv\": {\"max\": 0.5, \"erank\": 3.2}}}}}\n");
    steps(f, 6, 10, 1200);
    fprintf(f, "{\"step\": 10, \"eval_loss\": 2.7}\n");
    fprintf(f, "{\"step\": 10, \"diagnostics\": {\"params\": {\"a\": {\"weight_sn\": 3.5, \"update_sn\": 0.3}}}}\n");
}

/* seed 1 of lr 0.1: diverged at step 7 (a non-finite loss) */
static void m_b1(FILE *f)
{
    steps(f, 1, 6, 900);
    fprintf(f, "{\"step\": 7, \"train_loss\": null, \"grad_norm\": null, \"tokens_per_s\": 900, \"time_s\": 7, "
               "\"event\": \"nonfinite\", \"action\": \"stop\"}\n");
}

/* seed 2 of lr 0.1: killed at step 4, its last line half written */
static void m_b2(FILE *f)
{
    steps(f, 1, 4, 800);
    fprintf(f, "{\"step\": 5, \"train_lo");
}

static void make_study(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/eopt-report-XXXXXX");
    cr_assert(mkdtemp(dir));
    put(dir, "study.json", "%s", study_json);
    struct {
        const char *name;
        void (*write)(FILE *f);
        const char *outcome;
    } runs[] = {
        {"Muon-lr0.01-seed1", m_a1, "{\"state\": \"finished\", \"step\": 10, \"reason\": \"\"}"},
        {"Muon-lr0.01-seed2", m_a2, "{\"state\": \"finished\", \"step\": 10}"},
        {"Muon-lr0.1-seed1", m_b1, "{\"state\": \"diverged\", \"step\": 7, \"reason\": \"nonfinite loss\"}"},
        {"Muon-lr0.1-seed2", m_b2, NULL},
    };
    for (int k = 0; k < 4; k++) {
        char file[512];
        char *text = metrics_text(runs[k].write);
        snprintf(file, sizeof file, "runs/%s/metrics.jsonl", runs[k].name);
        put(dir, file, "%s", text);
        free(text);
        snprintf(file, sizeof file, "runs/%s/run.json", runs[k].name);
        put(dir, file, "{\"schema\": 1, \"step\": 0, \"machine\": {\"device\": \"cpu\", \"threads\": 1, \"backend\": \"x\"}}\n");
        snprintf(file, sizeof file, "runs/%s/outcome.json", runs[k].name);
        if (runs[k].outcome)
            put(dir, file, "%s\n", runs[k].outcome);
    }
}

static void remove_tree(const char *dir)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

Test(report, aggregates_over_seeds)
{
    char dir[64];
    make_study(dir, sizeof dir);
    eopt_report r;
    cr_assert_eq(eopt_report_load(dir, NULL, NULL, &r), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(r.nruns, 5);
    cr_assert_eq(r.nconfigs, 3);
    cr_expect_eq(r.seed_axis, 2);
    cr_expect_eq(r.x_axis, 1);
    cr_assert_eq(r.nby, 1);
    cr_expect_eq(r.by[0], 0);
    cr_expect_str_eq(r.labels[0], "class");
    cr_expect_str_eq(r.labels[1], "lr");
    /* states */
    cr_expect_eq(r.runs[0].state, EOPT_RUN_FINISHED);
    cr_expect_eq(r.runs[2].state, EOPT_RUN_DIVERGED);
    cr_expect_eq(r.runs[2].step, 7);
    cr_expect_str_eq(r.runs[2].reason, "nonfinite loss");
    cr_expect_eq(r.runs[3].state, EOPT_RUN_UNFINISHED);
    cr_expect_eq(r.runs[3].step, 4);
    cr_expect_eq(r.runs[4].state, EOPT_RUN_PENDING);
    cr_expect_eq(r.runs[0].threads, 1);
    /* the metrics: spikes, diagnostics (maxima over parameters and layers, nulls skipped), nulls */
    const eopt_run_metrics *a1 = &r.runs[0].m, *a2 = &r.runs[1].m, *b1 = &r.runs[2].m;
    cr_assert_eq(a1->nspike, 1);
    cr_expect_eq(a1->spike_step[0], 3);
    cr_expect_eq(a1->spike_loss[0], 9.5);
    cr_assert_eq(a1->nd, 1);
    cr_expect_eq(a1->weight_sn[0], 4.5);
    cr_expect(isnan(a1->update_sn[0]));
    cr_expect_eq(a1->attn_logit[0], 2.5);
    cr_assert_eq(a2->nd, 2);
    cr_expect_eq(a2->dstep[1], 10);
    cr_expect_eq(a2->weight_sn[0], 7.0);
    cr_expect_eq(a2->update_sn[0], 0.5);
    cr_expect_eq(a2->update_sn[1], 0.3);
    cr_expect(isnan(a2->attn_logit[0]));
    cr_assert_eq(b1->n, 7);
    cr_expect(isnan(b1->train[6]));
    /* configurations: sorted by class, then lr */
    const eopt_report_config *c0 = &r.configs[0], *c1 = &r.configs[1], *c2 = &r.configs[2];
    cr_expect_str_eq(r.runs[c0->first].values[0].text, "AdamW");
    cr_expect_eq(c0->nruns, 1);
    cr_expect_eq(c0->unfinished, 1);
    cr_expect_eq(c0->n, 0);
    cr_expect(isnan(c0->final_mean) && isnan(c0->tokens_per_s));
    cr_expect_str_eq(r.runs[c1->first].values[1].text, "0.01");
    cr_expect_eq(c1->n, 2);
    cr_expect_float_eq(c1->final_mean, 2.6, 1e-12);
    cr_expect_float_eq(c1->final_std, sqrt(0.02), 1e-12);
    cr_expect_float_eq(c1->best_mean, 2.25, 1e-12);
    cr_expect_float_eq(c1->best_std, sqrt(0.125), 1e-12);
    cr_expect_eq(c1->spikes, 1);
    cr_expect_eq(c1->diverged, 0);
    cr_expect_eq(c1->unfinished, 0);
    cr_expect_float_eq(c1->tokens_per_s, 1100, 1e-9);
    cr_expect_eq(c2->n, 0);
    cr_expect_eq(c2->diverged, 1);
    cr_expect_eq(c2->unfinished, 1);
    cr_expect_float_eq(c2->tokens_per_s, 850, 1e-9);
    cr_expect_eq(r.runs[2].config, 2);

    /* the tables */
    char *md = NULL, *csv = NULL;
    size_t size;
    FILE *f = open_memstream(&md, &size);
    cr_assert_eq(eopt_report_write_md(&r, f), EOPT_OK);
    fclose(f);
    f = open_memstream(&csv, &size);
    cr_assert_eq(eopt_report_write_csv(&r, f), EOPT_OK);
    fclose(f);
    cr_expect_str_eq(md, "| class | lr | runs | final eval loss | best eval loss | n | spikes | diverged (at step) | unfinished | tokens/s |\n"
                         "|---|---|---:|---:|---:|---:|---:|---|---:|---:|\n"
                         "| AdamW | 0.001 | 1 | - | - | 0 | 0 | 0 | 1 | - |\n"
                         "| Muon | 0.01 | 2 | 2.6000 ± 0.1414 | 2.2500 ± 0.3536 | 2 | 1 | 0 | 0 | 1100 |\n"
                         "| Muon | 0.1 | 2 | - | - | 0 | 0 | 1 (7) | 1 | 850 |\n");
    cr_expect_str_eq(csv, "optimizers.matrix.class,optimizers.matrix.args.lr,runs,final_eval_mean,final_eval_std,"
                          "best_eval_mean,best_eval_std,n,spikes,diverged,diverged_steps,unfinished,tokens_per_s\n"
                          "AdamW,0.001,1,,,,,0,0,0,,1,\n"
                          "Muon,0.01,2,2.6,0.141421,2.25,0.353553,2,1,0,,0,1100.0\n"
                          "Muon,0.1,2,,,,,0,0,1,7,1,850.0\n");
    free(md), free(csv);
    eopt_report_free(&r);
    remove_tree(dir);
}

static int is_png(const char *path)
{
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(sig, 1, 8, f);
    fclose(f);
    return n == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0;
}

static int run_report(int argc, const char **argv)
{
    return eopt_cmd_report.run(argc, (char **)argv);
}

Test(report, command_writes_tables_and_plots)
{
    char dir[64], out[128], path[256];
    make_study(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/out", dir);
    const char *argv[] = {"report", dir, "-o", out};
    cr_assert_eq(run_report(4, argv), 0);
    char *md = slurp((snprintf(path, sizeof path, "%s/summary.md", out), path));
    cr_expect(strstr(md, "# Study tiny\n"), "%s", md);
    cr_expect(strstr(md, "| Muon | 0.01 | 2 | 2.6000 ± 0.1414 | 2.2500 ± 0.3536 | 2 | 1 | 0 | 0 | 1100 |\n"), "%s", md);
    cr_expect(strstr(md, "| Muon-lr0.1-seed1 | diverged | 7 | nonfinite loss |"), "%s", md);
    cr_expect(strstr(md, "| AdamW-lr0.001-seed1 | pending | 0 |"), "%s", md);
    char *csv = slurp((snprintf(path, sizeof path, "%s/summary.csv", out), path));
    cr_expect(strstr(csv, "Muon,0.1,2,,,,,0,0,1,7,1,850.0\n"), "%s", csv);
    if (!eopt_gnuplot_present()) {
        cr_log_warn("gnuplot is not installed: the plots are not checked");
        remove_tree(dir);
        return;
    }
    md = slurp((snprintf(path, sizeof path, "%s/summary.md", out), path));
    /* AdamW (pending) has no loss and no diagnostics: skipped with a note, not an error */
    cr_expect(strstr(md, "no loss plot for class=AdamW"), "%s", md);
    cr_expect(strstr(md, "no diagnostics plot for class=AdamW"), "%s", md);
    cr_expect(strstr(md, "![Final eval loss against the learning rate (the stability window)](lr.png)"), "%s", md);
    const char *pngs[] = {"lr.png", "loss-01-Muon.png", "diag-01-Muon.png"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s", out, pngs[k]);
        cr_expect(is_png(path), "%s is not a PNG", path);
    }
    snprintf(path, sizeof path, "%s/loss-00-AdamW.png", out);
    cr_expect_neq(access(path, F_OK), 0);
    remove_tree(dir);
}

Test(report, default_folder_and_options)
{
    char dir[64], path[256];
    make_study(dir, sizeof dir);
    const char *argv[] = {"report", dir, "--x", "run.seed", "--by", "lr"};
    cr_assert_eq(run_report(6, argv), 0);
    snprintf(path, sizeof path, "%s/report/summary.csv", dir);
    cr_expect_eq(access(path, F_OK), 0);
    eopt_report r;
    cr_assert_eq(eopt_report_load(dir, "seed", "class,lr", &r), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(r.x_axis, 2);
    cr_expect_eq(r.nby, 2);
    eopt_report_free(&r);
    cr_expect_neq(eopt_report_load(dir, "rate", NULL, &r), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "--x rate: no such axis"), "%s", eopt_last_error());
    const char *bad[] = {"report", dir, "--by", "nope"};
    cr_expect_eq(run_report(4, bad), 1);
    remove_tree(dir);
}

/* A schedule (a libconfig group, written as its text) shows as its number when it holds one
 * (and sorts as a number), else as its kind and numbers; an axis a run leaves unset as "-". */
Test(report, group_and_unset_settings)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/eopt-report-XXXXXX");
    cr_assert(mkdtemp(dir));
    put(dir, "study.json",
        "{\"schema\": \"eopt-study\", \"version\": 1, \"name\": \"g\", \"axes\": [\"o.matrix.ramps.softening\", \"o.adamw.args.lr\", "
        "\"o.matrix.args.lr\"], \"seed_axis\": null, \"runs\": [\n"
        " {\"name\": \"a\", \"settings\": {\"o.matrix.ramps.softening\": \"{ kind = \\\"cosine\\\"; from = 0.3; to = 0.0; start = 0; end = 250; }\", \"o.matrix.args.lr\": 0.02}},\n"
        " {\"name\": \"b\", \"settings\": {\"o.matrix.ramps.softening\": \"{ kind = \\\"constant\\\"; value = 0.3; }\", \"o.matrix.args.lr\": 0.02}},\n"
        " {\"name\": \"c\", \"settings\": {\"o.matrix.ramps.softening\": \"{ kind = \\\"constant\\\"; value = 0.0; }\", \"o.adamw.args.lr\": 1e-3, "
        "\"o.matrix.args.lr\": 0.02}}]}\n");
    eopt_report r;
    cr_assert_eq(eopt_report_load(dir, NULL, NULL, &r), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(r.runs[0].values[0].text, "cosine from=0.3 to=0 start=0 end=250");
    cr_expect_str_eq(r.runs[1].values[0].text, "0.3");
    cr_expect(r.runs[1].values[0].is_num && r.runs[1].values[0].num == 0.3);
    cr_expect_str_eq(r.runs[0].values[1].text, "-");
    cr_expect_str_eq(r.labels[1], "adamw.args.lr");
    cr_expect_str_eq(r.labels[2], "matrix.args.lr");
    cr_expect_eq(r.x_axis, 1, "the first axis ending in lr");
    cr_assert_eq(r.nconfigs, 3);
    /* sorted by softening (numbers first), then the adamw lr */
    cr_expect_eq(r.configs[0].first, 2);
    cr_expect_eq(r.configs[1].first, 1);
    cr_expect_eq(r.configs[2].first, 0);
    eopt_report_free(&r);
    remove_tree(dir);
}

/* The message of a load that must fail. */
static const char *load_error(const char *dir)
{
    eopt_report r;
    cr_assert_neq(eopt_report_load(dir, NULL, NULL, &r), EOPT_OK);
    return eopt_last_error();
}

Test(report, damaged_files_are_named)
{
    char dir[64];
    make_study(dir, sizeof dir);
    /* a damaged metrics line: file and line */
    put(dir, "runs/Muon-lr0.01-seed2/metrics.jsonl", HEADER "{\"step\": 1, \"train_loss\": 3.9}\n{\"step\": 2, \"train_loss\": 3.8,,}\n");
    const char *e = load_error(dir);
    cr_expect(strstr(e, "runs/Muon-lr0.01-seed2/metrics.jsonl: line 3: JSON: expected a key in quotes at column 31"), "%s", e);
    /* an outcome that names no state */
    put(dir, "runs/Muon-lr0.01-seed2/metrics.jsonl", HEADER);
    put(dir, "runs/Muon-lr0.01-seed2/outcome.json", "{\"state\": \"exploded\", \"step\": 3}\n");
    e = load_error(dir);
    cr_expect(strstr(e, "Muon-lr0.01-seed2/outcome.json: \"state\" is \"exploded\""), "%s", e);
    put(dir, "runs/Muon-lr0.01-seed2/outcome.json", "{\"state\": \"finished\", \"step\": 0}\n");
    /* study.json: damaged (line and column), not a study, a run without a setting, missing */
    put(dir, "study.json", "{\"schema\": \"eopt-study\",\n \"version\": 1,\n \"axes\": [}\n");
    e = load_error(dir);
    cr_expect(strstr(e, "/study.json: JSON: expected a value at line 3, column 11"), "%s", e);
    put(dir, "study.json", "{\"schema\": \"eopt-metrics\", \"version\": 1}\n");
    e = load_error(dir);
    cr_expect(strstr(e, "study.json: not a study file"), "%s", e);
    put(dir, "study.json", "{\"schema\": \"eopt-study\", \"version\": 1, " AXES ", \"runs\": [{\"name\": \"x\", \"settings\": "
                           "{\"run.seed\": [1]}}]}");
    e = load_error(dir);
    cr_expect(strstr(e, "study.json: run \"x\", axis run.seed: a setting is not a number, string or boolean"), "%s", e);
    put(dir, "study.json", "{\"schema\": \"eopt-study\", \"version\": 1, " AXES ", \"runs\": [{\"name\": \"../x\", \"settings\": {}}]}");
    e = load_error(dir);
    cr_expect(strstr(e, "runs[0] has no \"name\" that is a file name"), "%s", e);
    char path[128];
    snprintf(path, sizeof path, "%s/study.json", dir);
    cr_assert_eq(unlink(path), 0);
    e = load_error(dir);
    cr_expect(strstr(e, "/study.json: No such file or directory"), "%s", e);
    const char *argv[] = {"report", dir};
    cr_expect_eq(run_report(2, argv), 1);
    remove_tree(dir);
}

Test(json, parses_what_eopt_writes)
{
    eopt_json v;
    cr_assert_eq(eopt_json_parse(" {\"a\": [1, -2.5e3, null, true, false], \"s\": \"q\\\"\\\\\\n\\u00e9\\ud83d\\ude00\", "
                                 "\"o\": {}, \"e\": []} ",
                                 &v),
                 EOPT_OK, "%s", eopt_last_error());
    const eopt_json *a = eopt_json_get(&v, "a");
    cr_assert(a && a->type == EOPT_JSON_ARRAY && a->n == 5);
    cr_expect_eq(a->items[1].num, -2500);
    cr_expect_eq(a->items[2].type, EOPT_JSON_NULL);
    cr_expect(a->items[3].type == EOPT_JSON_BOOL && a->items[3].num == 1);
    cr_expect_str_eq(eopt_json_str(&v, "s"), "q\"\\\n\xc3\xa9\xf0\x9f\x98\x80");
    cr_expect_eq(eopt_json_get(&v, "o")->n, 0);
    cr_expect(isnan(eopt_json_num(&v, "missing")));
    eopt_json_free(&v);
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "nan", "[1] 2", "\"abc", "{\"a\": tru}", "+1", "\"\\x\""};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        cr_expect_neq(eopt_json_parse(bad[k], &v), EOPT_OK, "%s", bad[k]);
        cr_expect(strstr(eopt_last_error(), "JSON: expected"), "%s: %s", bad[k], eopt_last_error());
    }
    char deep[300];
    memset(deep, '[', sizeof deep - 1);
    deep[sizeof deep - 1] = 0;
    cr_expect_neq(eopt_json_parse(deep, &v), EOPT_OK);
}
