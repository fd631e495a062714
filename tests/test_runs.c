/* Run folders, the record of a run and its metrics (issue 15): the resolved config, refusing to
 * mix runs, resuming checks, metrics cut back on resume, contradicting settings refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "tests/testutil.h"
#include "framework/log.h"
#include "train/config.h"
#include "train/trainer.h"

static eopt_config cfg_a, cfg_b; /* large */

/* The resolved config of every shipped config reads back to itself. */
Test(run_config, resolved_config_reads_back_as_is)
{
    FILE *ls = popen("ls configs/*.cfg 2>/dev/null", "r");
    cr_assert(ls);
    char path[512];
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        const char *sets[] = {"run.steps=500", "optimizers.[0].schedule.warmup=5"};
        cr_assert_eq(eopt_config_load(path, 2, sets, &cfg_a), EOPT_OK, "%s: %s", path, eopt_last_error());
        char *t1 = eopt_config_text(&cfg_a);
        cr_assert(t1);
        cr_assert_eq(eopt_config_parse(t1, "resolved.cfg", 0, NULL, &cfg_b), EOPT_OK, "%s: %s\n%s", path,
                     eopt_last_error(), t1);
        char *t2 = eopt_config_text(&cfg_b);
        cr_expect_str_eq(t1, t2, "%s", path);
        cr_expect_eq(cfg_b.run.steps, 500);
        cr_expect_eq(cfg_b.opts[0].sched.lr.warmup, 5);
        cr_expect_eq(cfg_b.nopt, cfg_a.nopt);
        for (int o = 0; o < cfg_a.nopt; o++) {
            cr_expect_eq(cfg_b.opts[o].ngroups, cfg_a.opts[o].ngroups);
            cr_expect_eq(cfg_b.opts[o].sched.nramps, cfg_a.opts[o].sched.nramps);
            for (int g = 0; g < cfg_a.opts[o].ngroups; g++)
                cr_expect_eq(cfg_b.opts[o].sched.base_lr[g], cfg_a.opts[o].sched.base_lr[g]);
        }
        cr_expect_str_eq(cfg_b.checkpoint.dir, cfg_a.checkpoint.dir);
        free(t1);
        free(t2);
        n++;
    }
    pclose(ls);
    cr_expect_geq(n, 1);
}

/* ---- a small GPT run (as tests/test_trainer.c) ---- */

static const char *base_cfg =
    "model = { kind = \"gpt\"; block_size = 16; n_layer = 1; n_head = 2; n_embd = 16; };\n"
    "data = { kind = \"text\"; path = \"%s\"; };\n"
    "run = { steps = 6; batch_size = 2; seq_len = 16; eval_interval = 3; eval_batches = 2;\n"
    "        seed = 7; threads = 1; sample_tokens = 0; };\n"
    "optimizers = (\n"
    "  { name = \"matrix\"; class = \"%s\"; args = { %s };\n"
    "    schedule = { kind = \"cosine\"; warmup = 2; floor = 0.1; }; %s\n"
    "    groups = ( { params = \"transformer.h.*\"; ndim = 2; } ); },\n"
    "  { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.003; weight_decay = 0.0; };\n"
    "    groups = ( { params = [\"transformer.w*\", \"*.bias\", \"*ln_*.weight\"]; } ); }\n"
    ");\n"
    "checkpoint = { dir = \"%s\"; interval = 2; keep = 2; };\n"
    "log = { interval = 2; progress = \"none\"; };\n";

static void write_words(FILE *f)
{
    for (int k = 0; k < 2000; k++)
        fprintf(f, "%s ", (const char *[]){"call", "me", "ishmael", "the", "white", "whale"}[k * 7 % 6]);
}

static const char *corpus(void) { return tu_text_corpus("eopt-runs-text-v1.txt", write_words); }

static void make_cfg(char *buf, size_t size, const char *cls, const char *args, const char *extra, const char *dir)
{
    snprintf(buf, size, base_cfg, corpus(), cls, args, extra, dir);
}

static int file_exists(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

/* Defect 1: a fresh run into a folder holding another run's checkpoints deleted its own (keep-K
 * kept the old run's newer steps). Now it is refused with the ways out named; --force moves the
 * old files aside and deletes nothing. */
Test(run_dir, fresh_run_into_another_runs_folder_is_refused, .timeout = 60)
{
    char text[4096], dir[300];
    tu_tmpdir(dir, sizeof dir, "runs", "d1");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    eopt_train_result r;
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    const char *shorter[] = {"run.steps=4"};
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 1, shorter, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1}, &r), EOPT_ERR_CONFIG);
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, "another run's files") && strstr(msg, "--resume auto") && strstr(msg, "--run-dir") &&
              strstr(msg, "--force"), "%s", msg);
    cr_expect(file_exists(dir, "step_000000000006.h5"), "the old run is untouched");

    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1, .force = 1}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect(file_exists(dir, "step_000000000004.h5"), "the new run keeps its own checkpoint");
    cr_expect(!file_exists(dir, "step_000000000006.h5"));
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls %s/previous-*/step_000000000006.h5 %s/previous-*/metrics.jsonl >/dev/null", dir, dir);
    cr_expect_eq(system(cmd), 0, "the old run's files moved aside, not deleted");
    tu_rmdir_all(dir);
}

/* Defect 1 (second half): the default folder runs/<config name> ignored --set, so a sweep by
 * --set overwrote itself. Now it carries a stable hash of the overrides. */
Test(run_dir, default_folder_depends_on_the_overrides)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "x");
    char *dflt = strstr(text, "dir = \"x\"; ");
    cr_assert(dflt);
    memmove(dflt, dflt + 11, strlen(dflt + 11) + 1); /* no checkpoint.dir: the default */
    const char *a[] = {"run.steps=5", "run.seed=1"}, *b[] = {"run.seed=1", "run.steps=5"}, *c[] = {"run.steps=4"};
    cr_assert_eq(eopt_config_parse(text, "configs/sweep.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(cfg_a.checkpoint.dir, "runs/sweep");
    char da[600], dc[600];
    cr_assert_eq(eopt_config_parse(text, "configs/sweep.cfg", 2, a, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    snprintf(da, sizeof da, "%s", cfg_a.checkpoint.dir);
    cr_assert_eq(eopt_config_parse(text, "configs/sweep.cfg", 2, b, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(cfg_a.checkpoint.dir, da, "the order of the overrides does not matter");
    cr_assert_eq(eopt_config_parse(text, "configs/sweep.cfg", 1, c, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    snprintf(dc, sizeof dc, "%s", cfg_a.checkpoint.dir);
    cr_expect_str_neq(da, dc);
    cr_expect(strncmp(da, "runs/sweep-", 11) == 0 && strlen(da) == 19, "%s", da);
    char metrics[700];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dc);
    cr_expect_str_eq(cfg_a.log.metrics, metrics);
}

/* Defect 2: a run records what produced it: the resolved config (which reads back as is), the
 * command, the version and the machine, before step 1; each checkpoint holds the config too. */
Test(run_dir, the_folder_and_checkpoints_record_the_run, .timeout = 60)
{
    char text[4096], dir[300], path[700];
    tu_tmpdir(dir, sizeof dir, "runs", "d2");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    const char *sets[] = {"run.batch_size=3"};
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    eopt_train_options o = {.quiet = 1, .stop_at = 1, .command = "eopt train t.cfg --set run.batch_size=3"};
    cr_assert_eq(eopt_train(&cfg_a, &o, &r), EOPT_OK, "%s", eopt_last_error());

    snprintf(path, sizeof path, "%s/config.cfg", dir);
    char *saved = slurp(path), *resolved = eopt_config_text(&cfg_a);
    cr_assert(saved);
    cr_expect_str_eq(saved, resolved);
    cr_expect(strstr(saved, "batch_size = 3;"), "%s", saved);
    cr_expect(strstr(saved, "n_embd = 16;") && strstr(saved, "eval_batches = 2;"), "%s", saved);
    cr_assert_eq(eopt_config_load(path, 0, NULL, &cfg_b), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(cfg_b.run.batch_size, 3);
    snprintf(path, sizeof path, "%s/run.json", dir);
    char *info = slurp(path);
    cr_assert(info);
    cr_expect(strstr(info, "\"command\": \"eopt train t.cfg --set run.batch_size=3\"") &&
              strstr(info, "\"eopt_version\"") && strstr(info, "\"threads\": 1") && strstr(info, "\"backend\""),
              "%s", info);

    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(r.last_checkpoint, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(eopt_ckpt_config(ck), resolved);
    eopt_checkpoint_close(ck);
    free(saved);
    free(resolved);
    free(info);
    tu_rmdir_all(dir);
}

/* The steps of the metrics file, in order. */
static int metrics_steps(const char *dir, int64_t *steps, int max, int *evals)
{
    char path[700], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    int n = 0;
    *evals = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"eval_loss\""))
            (*evals)++;
        else if (strstr(line, "\"train_loss\"") && n < max)
            steps[n++] = strtoll(strstr(line, "\"step\":") + 7, NULL, 10);
    }
    fclose(f);
    return n;
}

/* Defect 3: after a kill and --resume auto the metrics repeated the steps between the
 * checkpoint and the kill. Now the file is cut back to the checkpoint's step. */
Test(run_dir, metrics_are_cut_back_to_the_checkpoint_on_resume, .timeout = 60)
{
    char text[4096], dir[300], path[700];
    tu_tmpdir(dir, sizeof dir, "runs", "d3");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    const char *sets[] = {"checkpoint.keep=0"};
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    /* as if killed after step 6 was logged but before its checkpoint (and step 4's) was written */
    snprintf(path, sizeof path, "%s/step_000000000006.h5", dir);
    cr_assert_eq(unlink(path), 0);
    snprintf(path, sizeof path, "%s/step_000000000004.h5", dir);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1, .resume = "auto"}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect_eq(r.start_step, 2);
    int64_t steps[32];
    int evals, n = metrics_steps(dir, steps, 32, &evals);
    cr_expect_eq(n, 6);
    for (int k = 0; k < n; k++)
        cr_expect_eq(steps[k], k + 1, "line %d has step %lld", k, (long long)steps[k]);
    cr_expect_eq(evals, 2);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *all = slurp(path);
    const char *second = strstr(all, "\"step\": 2, \"eval");
    cr_expect_null(second, "no evaluation at step 2");
    int headers = 0;
    for (const char *c = all; (c = strstr(c, "\"schema\": \"eopt-metrics\"")); c++)
        headers++;
    cr_expect_eq(headers, 2, "a header starts the file and follows the resume");
    free(all);
    tu_rmdir_all(dir);
}

/* Defect 4 (first clause): a value given beside a ramp of the same hyperparameter was ignored. */
Test(run_config, a_ramped_value_given_as_well_is_refused)
{
    char text[4096];
    make_cfg(text, sizeof text, "Dion2", "lr = 0.02;",
             "ramps = { softening = { kind = \"linear\"; from = 0.2; to = 0.0; }; };", "x");
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    const char *sets[] = {"optimizers.matrix.args.softening=0.3"};
    cr_expect_eq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg_a), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "optimizers.[0].args.softening: 'softening' is also ramped"), "%s",
              eopt_last_error());
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "ramps = { momentum = { kind = \"constant\"; value = 0.9; }; };",
             "x");
    const char *group[] = {"optimizers.matrix.groups.[0].momentum=0.8"};
    cr_expect_eq(eopt_config_parse(text, "t.cfg", 1, group, &cfg_a), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "'momentum' is also ramped"), "%s", eopt_last_error());
}

/* Defect 5: total defaults to run.steps; the message says so and what to change. */
Test(run_config, warmup_beyond_the_default_total_names_run_steps)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "x");
    const char *sets[] = {"run.steps=2"};
    cr_expect_eq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg_a), EOPT_ERR_CONFIG);
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, "optimizers.[0].schedule.warmup") && strstr(msg, "run.steps = 2") &&
              strstr(msg, "--set optimizers.[0].schedule.warmup="), "%s", msg);
}

/* Defect 6: a relative data path in a config was looked up in the current folder only. */
Test(run_config, data_paths_are_found_beside_the_config)
{
    char cwd[1024], cfg[1100], dir[300];
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(cfg, sizeof cfg, "%s/configs/gpt_muon_adamw.cfg", cwd);
    tu_tmpdir(dir, sizeof dir, "runs", "d6");
    cr_assert_eq(chdir(dir), 0);
    eopt_status st = eopt_config_load(cfg, 0, NULL, &cfg_a);
    cr_assert_eq(chdir(cwd), 0);
    cr_assert_eq(st, EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(cfg_a.data.path[0], '/', "%s", cfg_a.data.path);
    cr_expect_eq(access(cfg_a.data.path, R_OK), 0, "%s", cfg_a.data.path);
    tu_rmdir_all(dir);
}

/* The config attribute travels through the Python package untouched (read, write, read back in C),
 * and the package's diff finds the two files equal. */
Test(run_dir, checkpoint_config_round_trips_through_python, .timeout = 120)
{
    char text[4096], dir[300], out[700], cmd[2048];
    tu_tmpdir(dir, sizeof dir, "runs", "py");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1, .stop_at = 2}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    snprintf(out, sizeof out, "%s/python.h5", dir);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys; sys.path.insert(0, \"checkpoint/python\"); import eopt_checkpoint as ec; "
             "ck = ec.read(sys.argv[1]); assert ck.config.startswith(\"# The resolved\"), ck.config[:40]; "
             "ec.write(sys.argv[2], ck); sys.exit(1 if ec.diff(sys.argv[1], sys.argv[2]) else 0)' %s %s",
             r.last_checkpoint, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    eopt_ckpt *a, *b;
    cr_assert_eq(eopt_checkpoint_open(r.last_checkpoint, NULL, &a), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(out, NULL, &b), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(eopt_ckpt_config(a), eopt_ckpt_config(b));
    cr_expect_gt(strlen(eopt_ckpt_config(b)), 100);
    eopt_checkpoint_close(a);
    eopt_checkpoint_close(b);
    tu_rmdir_all(dir);
}

/* Runs `cmd` (in the shell), its output into out; the exit status. */
static int run_cmd(const char *cmd, char *out, size_t size)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A sweep: three --set runs of one config leave three complete, separate run folders, which
 * `eopt metrics` and `eopt plot` read. */
Test(run_sweep, three_set_runs_metrics_and_plot, .timeout = 120)
{
    const char *bin = getenv("EOPT_BIN");
    if (!bin)
        cr_skip_test("EOPT_BIN is not set");
    char binabs[1024], dir[300], text[4096], path[700], cmd[4096], out[8192];
    cr_assert(realpath(bin, binabs));
    tu_tmpdir(dir, sizeof dir, "runs", "sweep");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "x");
    char *d = strstr(text, "dir = \"x\"; ");
    memmove(d, d + 11, strlen(d + 11) + 1); /* the default folder */
    snprintf(path, sizeof path, "%s/sweep.cfg", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    for (int s = 1; s <= 3; s++) {
        snprintf(cmd, sizeof cmd, "cd %s && %s train sweep.cfg --set run.seed=%d --set log.progress=none 2>&1", dir,
                 binabs, s);
        cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd, "cd %s && ls -d runs/sweep-* | wc -l", dir);
    run_cmd(cmd, out, sizeof out);
    cr_expect_eq(atoi(out), 3, "%s", out);
    static const char *const files[] = {"config.cfg", "run.json", "metrics.jsonl", "step_000000000006.h5"};
    for (int k = 0; k < 4; k++) {
        snprintf(cmd, sizeof cmd, "cd %s && ls runs/sweep-*/%s | wc -l", dir, files[k]);
        run_cmd(cmd, out, sizeof out);
        cr_expect_eq(atoi(out), 3, "%s in every run folder", files[k]);
    }
    /* the same sweep again is refused: the folders hold those runs */
    snprintf(cmd, sizeof cmd, "cd %s && %s train sweep.cfg --set log.progress=none --set run.seed=2 2>&1", dir, binabs);
    cr_expect_neq(run_cmd(cmd, out, sizeof out), 0);
    cr_expect(strstr(out, "--resume auto"), "%s", out);

    snprintf(cmd, sizeof cmd, "cd %s && %s metrics runs/sweep-* 2>&1", dir, binabs);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "best eval (step)") && strstr(out, " 6/6 "), "%s", out);
    int lines = 0;
    for (char *c = out; *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 4, "%s", out);
    snprintf(cmd, sizeof cmd, "cd %s && %s metrics runs/sweep-* --csv 2>&1", dir, binabs);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strncmp(out, "run,steps,of_steps,final_train_loss,final_eval_loss,best_eval_loss", 66) == 0, "%s", out);
    cr_expect(strstr(out, ",6,6,"), "%s", out);

    snprintf(cmd, sizeof cmd, "cd %s && %s plot runs/sweep-* -o loss.png 2>&1", dir, binabs);
    int rc = run_cmd(cmd, out, sizeof out);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        cr_expect_neq(rc, 0);
        cr_expect(strstr(out, "gnuplot is not installed") && strstr(out, "gnuplot-nox"), "%s", out);
    } else {
        cr_expect_eq(rc, 0, "%s", out);
        snprintf(path, sizeof path, "%s/loss.png", dir);
        unsigned char magic[8] = {0};
        FILE *png = fopen(path, "rb");
        cr_assert(png, "%s", out);
        cr_expect_eq(fread(magic, 1, 8, png), 8u);
        fclose(png);
        cr_expect(memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0);
    }
    snprintf(cmd, sizeof cmd, "%s metrics %s/nowhere 2>&1", binabs, dir);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 1);
    cr_expect(strstr(out, "nowhere: no run folder or metrics file there"), "%s", out);
    tu_rmdir_all(dir);
}

/* run.grad_clip: gradients scaled to the clip norm, the factor in the metrics; the resolved
 * config keeps it. */
Test(run_dir, grad_clip_by_global_norm, .timeout = 60)
{
    char text[4096], dir[300], path[700], line[4096];
    tu_tmpdir(dir, sizeof dir, "runs", "clip");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    const char *sets[] = {"run.grad_clip=0.01"};
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    int clipped = 0;
    while (fgets(line, sizeof line, f)) {
        const char *g = strstr(line, "\"grad_norm\": "), *c = strstr(line, "\"clip_scale\": ");
        if (!strstr(line, "\"train_loss\""))
            continue;
        cr_assert(g && c, "%s", line);
        double norm = strtod(g + 13, NULL), scale = strtod(c + 14, NULL);
        cr_expect_float_eq(scale, fmin(1.0, 0.01 / norm), 1e-6, "%s", line);
        clipped += scale < 1;
    }
    fclose(f);
    cr_expect_eq(clipped, 6);
    char *t = eopt_config_text(&cfg_a);
    cr_expect(strstr(t, "grad_clip = 0.01;"), "%s", t);
    free(t);
    /* the clipped run differs from the unclipped one */
    tu_rmdir_all(dir);
    tu_tmpdir(dir, sizeof dir, "runs", "clip");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    eopt_train_result plain;
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_b), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_train(&cfg_b, &(eopt_train_options){.quiet = 1}, &plain), EOPT_OK, "%s", eopt_last_error());
    cr_expect_neq(plain.train_loss, r.train_loss);
    tu_rmdir_all(dir);
}

static char logged[16384];

static void collect(eopt_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level != EOPT_LOG_PROGRESS)
        snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", msg);
}

/* --dry-run: the startup summary (which parameters each optimizer and group takes, with shapes;
 * schedules, ramps, data, device) and nothing written. */
Test(run_dir, dry_run_prints_the_summary_and_writes_nothing)
{
    char text[4096], dir[300];
    tu_tmpdir(dir, sizeof dir, "runs", "dry");
    make_cfg(text, sizeof text, "Dion2", "lr = 0.02;",
             "ramps = { softening = { kind = \"linear\"; from = 0.2; to = 0.0; }; };", dir);
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    logged[0] = 0;
    eopt_log_set_handler(collect, NULL);
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.dry_run = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    eopt_log_set_handler(NULL, NULL);
    cr_expect(strstr(logged, "device: cpu"), "%s", logged);
    cr_expect(strstr(logged, "data: text /tmp/eopt-runs-text-v1.txt"), "%s", logged);
    cr_expect(strstr(logged, "optimizer 'matrix' (Dion2):\n  group 0: 4 tensors, 3072 parameters: 1 x [48, 16], "
                             "1 x [16, 16], 1 x [64, 16], 1 x [16, 64];"), "%s", logged);
    cr_expect(strstr(logged, "lr 0.02 x cosine (warmup 2, total 6, floor 0.1)"), "%s", logged);
    cr_expect(strstr(logged, "ramp softening (every group): linear 0.2 -> 0 over steps 0..6"), "%s", logged);
    cr_expect(strstr(logged, "optimizer 'adamw' (AdamW):\n  group 0: 12 tensors, 4592 parameters: 1 x [256, 16], "
                             "1 x [16, 16], 8 x [16], 1 x [48], 1 x [64]; lr 0.003 (constant)"), "%s", logged);
    cr_expect(!file_exists(dir, "config.cfg") && !file_exists(dir, "metrics.jsonl"), "a dry run writes nothing");
    tu_rmdir_all(dir);
}

/* Metrics v1: a header; every step's lr per group and ramped values; evaluations on lines of
 * their own. */
Test(run_dir, metrics_schema_v1, .timeout = 60)
{
    char text[4096], dir[300], path[700], line[4096];
    tu_tmpdir(dir, sizeof dir, "runs", "m");
    make_cfg(text, sizeof text, "Dion2", "lr = 0.02;",
             "ramps = { softening = { kind = \"linear\"; from = 0.2; to = 0.0; }; };", dir);
    char text2[4096]; /* adamw in two groups, the second at its own lr */
    snprintf(text2, sizeof text2, "%s", text);
    char *g = strstr(text2, "groups = ( { params = [\"transformer.w*\", \"*.bias\", \"*ln_*.weight\"]; } )");
    cr_assert(g);
    snprintf(g, sizeof text2 - (size_t)(g - text2), "groups = ( { params = \"transformer.w*\"; }, "
             "{ params = [\"*.bias\", \"*ln_*.weight\"]; lr = 0.001; } ); }\n);\ncheckpoint = { dir = \"%s\"; };\n"
             "log = { interval = 2; progress = \"none\"; };\n", dir);
    cr_assert_eq(eopt_config_parse(text2, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s\n%s", eopt_last_error(), text2);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg_a, &(eopt_train_options){.quiet = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    cr_assert(fgets(line, sizeof line, f));
    cr_expect_str_eq(line, "{\"schema\": \"eopt-metrics\", \"version\": 2, \"model\": \"gpt\", \"steps\": 6, "
                           "\"items\": \"tokens\"}\n");
    int steps = 0, evals = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"eval_loss\"")) {
            evals++;
            cr_expect_null(strstr(line, "train_loss"), "%s", line);
            continue;
        }
        steps++;
        cr_expect(strstr(line, "\"tokens_per_s\": ") && strstr(line, "\"time_s\": ") &&
                  strstr(line, "\"matrix\": {\"lr\": [") && strstr(line, "\"softening\": ") &&
                  strstr(line, "\"adamw\": {\"lr\": ["), "%s", line);
        const char *lr = strstr(line, "\"adamw\": {\"lr\": [");
        double g0 = strtod(lr + 17, NULL), g1 = strtod(strchr(lr + 17, ',') + 1, NULL);
        cr_expect_float_eq(g1 / g0, 0.001 / 0.003, 1e-6, "%s", line);
        cr_expect(strstr(line, "\"update_rms\": [") != NULL, "%s", line); /* every step, per group (version 2) */
    }
    fclose(f);
    cr_expect_eq(steps, 6);
    cr_expect_eq(evals, 2);
    tu_rmdir_all(dir);
}
