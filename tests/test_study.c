/* Studies (train/study.h, `eopt study`): expansion and names, clear errors for bad study files,
 * a study killed mid-way and started again (every step once, parameters bit-equal to an
 * uninterrupted study), divergence recorded, a changed study file refused. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "tests/testutil.h"
#include "train/study.h"
#include "train/trainer.h"

#define TINY "tests/studies/tiny.cfg"

static eopt_study study; /* large */

static void write_words(FILE *f)
{
    for (int k = 0; k < 3000; k++)
        fprintf(f, "%s ", (const char *[]){"call", "me", "ishmael", "the", "white", "whale", "sea"}[k * 5 % 7]);
}

/* The corpus tests/studies/tiny_base.cfg reads. */
static void corpus(void) { tu_text_corpus("eopt-study-text-v1.txt", write_words); }

static int run_cmd(const char *cmd, char *out, size_t size)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static const char *bin(void)
{
    static char path[1024];
    const char *b = getenv("EOPT_BIN");
    if (!b || !realpath(b, path))
        return NULL;
    return path;
}

Test(study, grid_runs_and_seeds_expand_in_file_order_with_stable_names)
{
    cr_assert_eq(eopt_study_load(TINY, &study), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(study.nruns, 8);
    cr_expect_str_eq(study.name, "tiny");
    cr_expect_str_eq(study.dir, "studies/tiny");
    cr_expect_str_eq(study.base, "tests/studies/tiny_base.cfg");
    cr_expect_eq(study.jobs, 2);
    cr_expect_eq(study.seed_axis, 2);
    static const char *const names[] = {
        "dion.Muon-s-constant-0.3-seed1", "dion.Muon-s-constant-0.3-seed2", "dion.Muon-s-linear-0.3-0-seed1",
        "dion.Muon-s-linear-0.3-0-seed2", "NorDion2-s-constant-0.3-seed1",  "NorDion2-s-constant-0.3-seed2",
        "NorDion2-s-linear-0.3-0-seed1",  "NorDion2-s-linear-0.3-0-seed2"};
    for (int r = 0; r < 8; r++)
        cr_expect_str_eq(study.runs[r].name, names[r]);
    const char *sets[64];
    int n;
    eopt_study_run_sets(&study, 6, "run.threads=1", sets, &n);
    cr_assert_eq(n, 5);
    cr_expect_str_eq(sets[0], "run.diverge_loss=20.0");
    cr_expect_str_eq(sets[1], "optimizers.matrix.class=\"NorDion2\"");
    cr_expect_str_eq(sets[2], "optimizers.matrix.ramps.softening={ kind = \"linear\"; from = 0.3; to = 0.0; }");
    cr_expect_str_eq(sets[3], "run.seed=1");
    cr_expect_str_eq(sets[4], "run.threads=1");
    cr_expect_eq(eopt_study_check(&study), EOPT_OK, "%s", eopt_last_error());
    eopt_study_free(&study);
}

/* A study file with `body` after a base line; the error of loading and checking it. */
static const char *study_error(const char *body)
{
    char path[] = "/tmp/eopt-study-bad-XXXXXX.cfg", base[1024];
    int fd = mkstemps(path, 4);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    cr_assert(realpath("tests/studies/tiny_base.cfg", base));
    fprintf(f, "base = \"%s\";\n%s\n", base, body);
    fclose(f);
    static char msg[2048];
    eopt_status st = eopt_study_load(path, &study);
    if (st == EOPT_OK) {
        st = eopt_study_check(&study);
        eopt_study_free(&study);
    }
    snprintf(msg, sizeof msg, "%s", st == EOPT_OK ? "(no error)" : eopt_last_error());
    unlink(path);
    const char *name = strrchr(msg, '/') ? strstr(msg, ".cfg:") : msg; /* from ".cfg:LINE" on */
    return name ? name : msg;
}

Test(study, bad_study_files_name_line_key_and_what_is_allowed)
{
    const char *m = study_error("gird = ( { path = \"run.seed\"; values = [1]; } );");
    cr_expect(strstr(m, ".cfg:2: gird: unknown key 'gird' (did you mean 'grid'?); valid keys here: base, set"), "%s", m);
    m = study_error("grid = ( { path = \"run.seed\"; values = []; } );");
    cr_expect(strstr(m, ".cfg:2: grid.[0].values: an axis needs 1 to"), "%s", m);
    m = study_error("grid = (\n { path = \"optimizers.matrix.args.lrr\"; values = [0.1, 0.2]; } );");
    cr_expect(strstr(m, ".cfg:3: grid.[0] (optimizers.matrix.args.lrr = 0.1): --set optimizers.[0].args.lrr: unknown "
                        "key 'lrr' (did you mean 'lr'?)"), "%s", m);
    m = study_error("set = [\"run.stepz=3\"]; seeds = [1];");
    cr_expect(strstr(m, ".cfg:1: base and set: --set run.stepz: unknown key 'stepz' (did you mean 'steps'?)"), "%s", m);
    m = study_error("axes = ( { key = \"lr\"; path = \"optimizers.matrix.args.lr\"; } );\nruns = ( { lr = 0.1; }, { lr = 0.1; } );");
    cr_expect(strstr(m, ".cfg:3: runs: runs 0 and 1 are both named 'lr0.1'"), "%s", m);
    m = study_error("axes = ( { key = \"lr\"; path = \"optimizers.matrix.args.lr\"; } );\nruns = ( { lrr = 0.1; } );");
    cr_expect(strstr(m, ".cfg:3: runs.[0].lrr: unknown key 'lrr' (did you mean 'lr'?); the keys of `axes` are: lr"),
              "%s", m);
    m = study_error("grid = ( { path = \"optimizers.matrix.args.lr\"; values = [0.1]; },\n"
                    "         { path = \"optimizers.adamw.args.lr\"; values = [0.1]; } );");
    cr_expect(strstr(m, ".cfg:3: grid.[1]: axes 'optimizers.matrix.args.lr' and 'optimizers.adamw.args.lr' both have the "
                        "key 'lr'"), "%s", m);
    m = study_error("jobs = 2;");
    cr_expect(strstr(m, "nothing to sweep"), "%s", m);
}

/* The steps of a metrics file's training lines: each of 1..steps exactly once. */
static void expect_every_step_once(const char *path, int steps)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    int seen[256] = {0};
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        int s;
        if (strstr(line, "\"train_loss\"") && sscanf(line, "{\"step\": %d", &s) == 1 && s >= 1 && s < 256)
            seen[s]++;
    }
    fclose(f);
    for (int s = 1; s <= steps; s++)
        cr_expect_eq(seen[s], 1, "%s: step %d appears %d times", path, s, seen[s]);
}

static void expect_same_parameters(const char *a, const char *b)
{
    eopt_ckpt *ca, *cb;
    cr_assert_eq(eopt_checkpoint_open(a, NULL, &ca), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(b, NULL, &cb), EOPT_OK, "%s", eopt_last_error());
    cr_expect_gt(eopt_ckpt_num_tensors(ca), 0);
    for (int k = 0; k < eopt_ckpt_num_tensors(ca); k++) {
        const char *name = eopt_ckpt_tensor_name(ca, k);
        const eopt_tensor *x = eopt_ckpt_tensor(ca, name), *y = eopt_ckpt_tensor(cb, name);
        cr_assert(y, "%s: no %s", b, name);
        cr_expect(x->numel == y->numel && memcmp(x->data, y->data, eopt_tensor_bytes(x)) == 0, "%s differs: %s, %s",
                  name, a, b);
    }
    eopt_checkpoint_close(ca);
    eopt_checkpoint_close(cb);
}

static int64_t metrics_step(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int64_t last = 0;
    long long s;
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "\"train_loss\"") && sscanf(line, "{\"step\": %lld", &s) == 1)
            last = s;
    if (f)
        fclose(f);
    return last;
}

/* SIGTERM to the study mid-way (children checkpoint), then a restart: every run finishes, every
 * step once in its metrics, the parameters bit-equal to the same study run without a stop. */
Test(study, killed_and_restarted_study_equals_an_uninterrupted_one, .timeout = 120)
{
    if (!bin())
        cr_skip_test("EOPT_BIN is not set");
    corpus();
    char ref[300], dir[300], cmd[2048], out[16384], path[1024];
    tu_tmpdir(ref, sizeof ref, "study", "ref");
    tu_tmpdir(dir, sizeof dir, "study", "kill");
    snprintf(cmd, sizeof cmd, "%s study " TINY " --dir %s 2>&1", bin(), ref);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "[8/8]"), "%s", out);

    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(bin(), "eopt", "study", TINY, "--dir", dir, (char *)NULL);
        _exit(127);
    }
    snprintf(path, sizeof path, "%s/runs/dion.Muon-s-constant-0.3-seed1/metrics.jsonl", dir);
    for (int k = 0; k < 20000 && metrics_step(path) < 12; k++)
        usleep(1000);
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM, "status %#x", status);
    snprintf(cmd, sizeof cmd, "%s study --status %s 2>&1", bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "interrupted") && strstr(out, "pending") && !strstr(out, "8 finished"), "%s", out);

    snprintf(cmd, sizeof cmd, "%s study " TINY " --dir %s 2>&1", bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s study " TINY " --status --dir %s 2>&1", bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "8 runs: 8 finished"), "%s", out);
    const char *row = strstr(out, "\ndion.Muon-s-constant-0.3-seed1 ");
    cr_expect(row && strstr(row, " finished ") && strstr(row, " 40/40 ") && strstr(row, " finished ") < strchr(row + 1, '\n'),
              "%s", out);
    int resumed = 0;
    cr_assert_eq(eopt_study_load(TINY, &study), EOPT_OK, "%s", eopt_last_error());
    for (int r = 0; r < study.nruns; r++) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/runs/%s/metrics.jsonl", dir, study.runs[r].name);
        expect_every_step_once(a, 40);
        snprintf(a, sizeof a, "%s/runs/%s/resumes.jsonl", dir, study.runs[r].name);
        resumed += access(a, F_OK) == 0;
        snprintf(a, sizeof a, "%s/runs/%s/step_000000000040.h5", dir, study.runs[r].name);
        snprintf(b, sizeof b, "%s/runs/%s/step_000000000040.h5", ref, study.runs[r].name);
        expect_same_parameters(a, b);
        snprintf(a, sizeof a, "%s/runs/%s/outcome.json", dir, study.runs[r].name);
        char *o = slurp(a);
        cr_expect(o && strcmp(o, "{\"state\": \"finished\", \"step\": 40, \"reason\": \"\"}\n") == 0, "%s", o);
        free(o);
    }
    eopt_study_free(&study);
    cr_expect_geq(resumed, 1, "a run resumed from its checkpoint");
    snprintf(cmd, sizeof cmd, "%s study " TINY " --dir %s 2>&1", bin(), dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "8 runs, 8 ended before (finished or diverged), 0 to run"), "%s", out);
    tu_rmdir_all(ref);
    tu_rmdir_all(dir);
}

static const char *inline_study =
    "# an inline base; AdamW at lr 50 diverges at once\n"
    "base = {\n"
    "  model = { kind = \"gpt\"; block_size = 16; n_layer = 1; n_head = 2; n_embd = 16; };\n"
    "  data = { kind = \"text\"; path = \"/tmp/eopt-study-text-v1.txt\"; };\n"
    "  run = { steps = 10; batch_size = 2; seq_len = 16; eval_batches = 2; threads = 1; sample_tokens = 0; };\n"
    "  optimizers = ( { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.003; }; groups = ( { params = \"*\"; } ); } );\n"
    "};\n"
    "set = [\"run.diverge_loss=8.0\"];\n"
    "grid = ( { path = \"optimizers.adamw.args.lr\"; values = [%s]; } );\n";

static void write_study(const char *path, const char *values)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, inline_study, values);
    fclose(f);
}

Test(study, diverged_run_is_recorded_and_a_changed_study_file_refused, .timeout = 60)
{
    if (!bin())
        cr_skip_test("EOPT_BIN is not set");
    corpus();
    char dir[300], cmd[2048], out[16384], path[700];
    tu_tmpdir(dir, sizeof dir, "study", "div");
    snprintf(path, sizeof path, "%s/lrs.cfg", dir);
    write_study(path, "0.003, 50.0");
    snprintf(cmd, sizeof cmd, "cd %s && %s study lrs.cfg 2>&1", dir, bin());
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "exit 0 with a diverged run: %s", out);
    snprintf(path, sizeof path, "%s/studies/lrs/study.json", dir);
    char *json = slurp(path);
    cr_expect_str_eq(json, "{\"schema\": \"eopt-study\", \"version\": 1, \"name\": \"lrs\",\n"
                           " \"axes\": [\"optimizers.adamw.args.lr\"],\n"
                           " \"seed_axis\": null,\n"
                           " \"runs\": [\n"
                           "  {\"name\": \"lr0.003\", \"settings\": {\"optimizers.adamw.args.lr\": 0.003}},\n"
                           "  {\"name\": \"lr50\", \"settings\": {\"optimizers.adamw.args.lr\": 50.0}}\n"
                           "]}\n");
    free(json);
    snprintf(path, sizeof path, "%s/studies/lrs/runs/lr50/outcome.json", dir);
    char *o = slurp(path);
    cr_expect(o && strncmp(o, "{\"state\": \"diverged\", \"step\": ", 30) == 0 && strstr(o, "above run.diverge_loss = 8"),
              "%s", o);
    free(o);
    snprintf(path, sizeof path, "%s/studies/lrs/runs/lr0.003/outcome.json", dir);
    o = slurp(path);
    cr_expect_str_eq(o, "{\"state\": \"finished\", \"step\": 10, \"reason\": \"\"}\n");
    free(o);
    snprintf(path, sizeof path, "%s/studies/lrs/base.cfg", dir);
    cr_expect_eq(access(path, F_OK), 0, "the inline base is written for the children");

    snprintf(path, sizeof path, "%s/lrs.cfg", dir);
    write_study(path, "0.003, 50.0, 0.01");
    snprintf(cmd, sizeof cmd, "cd %s && %s study lrs.cfg 2>&1", dir, bin());
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
    cr_expect(strstr(out, "differs from the one this study started with") &&
              strstr(out, "grid.[0].values: [0.003, 50] -> [0.003, 50, 0.01]") && strstr(out, "--force"), "%s", out);
    snprintf(cmd, sizeof cmd, "cd %s && %s study lrs.cfg --force 2>&1", dir, bin());
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_expect(strstr(out, "3 runs, 2 ended before (finished or diverged), 1 to run") && strstr(out, "lr0.01: finished"),
              "%s", out);
    tu_rmdir_all(dir);
}

/* run.diverge_loss: a non-finite loss under "stop" is a divergence (EOPT_OK, outcome "diverged");
 * without the bound it stays an error (outcome "failed"). */
Test(study, nonfinite_loss_is_a_divergence_only_with_a_bound, .timeout = 60)
{
    static eopt_config cfg;
    char dir[300], path[400];
    corpus();
    for (int bound = 0; bound < 2; bound++) {
        const char *sets[] = {"optimizers.adamw.args.lr=1e30", "log.progress=\"none\"",
                              bound ? "run.diverge_loss=8.0" : "run.diverge_loss=0.0"};
        tu_tmpdir(dir, sizeof dir, "study", "nonfinite");
        cr_assert_eq(eopt_config_load("tests/studies/tiny_base.cfg", 3, sets, &cfg), EOPT_OK, "%s", eopt_last_error());
        snprintf(cfg.checkpoint.dir, sizeof cfg.checkpoint.dir, "%s", dir);
        snprintf(cfg.log.metrics, sizeof cfg.log.metrics, "%s/metrics.jsonl", dir);
        eopt_train_result res;
        eopt_status st = eopt_train(&cfg, &(eopt_train_options){.quiet = 1}, &res);
        snprintf(path, sizeof path, "%s/outcome.json", dir);
        char *o = slurp(path);
        cr_assert(o, "no outcome.json");
        if (bound) {
            cr_expect_eq(st, EOPT_OK, "%s", eopt_last_error());
            cr_expect(res.diverged && !res.interrupted);
            cr_expect(strstr(o, "{\"state\": \"diverged\", \"step\": ") && strstr(o, "non-finite loss or gradient"), "%s", o);
        } else {
            cr_expect_eq(st, EOPT_ERR_NUMERIC);
            cr_expect(strstr(o, "{\"state\": \"failed\", ") && strstr(o, "non-finite"), "%s", o);
        }
        free(o);
        tu_rmdir_all(dir);
    }
}
