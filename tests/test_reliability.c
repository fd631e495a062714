/* Reliability of a run (issue 16): --resume auto never starts over on top of a run's checkpoints
 * and names each file it skips; a failed write of the metrics or the run records stops the run
 * with an error naming the file; skipped non-finite steps are limited and reported; resuming a
 * finished run says so. Then the fault harness: the eopt binary ($EOPT_BIN) killed at random
 * times, interrupted by SIGINT/SIGTERM, and under a file size limit (a full disk), each run
 * folder resumed to the end afterwards. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "tests/testutil.h"
#include "framework/log.h"
#include "train/config.h"
#include "train/trainer.h"

static eopt_config cfg; /* large */

static const char *base_cfg =
    "model = { kind = \"gpt\"; block_size = 16; n_layer = 1; n_head = 2; n_embd = 16; };\n"
    "data = { kind = \"text\"; path = \"%s\"; };\n"
    "run = { steps = 6; batch_size = 2; seq_len = 16; eval_interval = 3; eval_batches = 2;\n"
    "        seed = 7; threads = 1; sample_tokens = 0; };\n"
    "optimizers = (\n"
    "  { name = \"matrix\"; class = \"Muon\"; args = { lr = 0.02; };\n"
    "    groups = ( { params = \"transformer.h.*\"; ndim = 2; } ); },\n"
    "  { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.003; weight_decay = 0.0; };\n"
    "    groups = ( { params = [\"transformer.w*\", \"*.bias\", \"*ln_*.weight\"]; } ); }\n"
    ");\n"
    "checkpoint = { dir = \"%s\"; interval = 2; keep = 0; };\n"
    "log = { interval = 2; progress = \"none\"; };\n";

static void write_words(FILE *f)
{
    for (int k = 0; k < 2000; k++)
        fprintf(f, "%s ", (const char *[]){"call", "me", "ishmael", "the", "white", "whale"}[k * 7 % 6]);
}

static const char *corpus(void) { return tu_text_corpus("eopt-reliability-text-v1.txt", write_words); }

/* A run folder in /tmp and its config (file `dir`/../<tag>.cfg for the binary); cfg parsed. */
static void setup(char *dir, size_t size, const char *tag, int nset, const char *const *sets)
{
    char text[4096];
    snprintf(dir, size, "/tmp/eopt-rel-%s-XXXXXX", tag);
    cr_assert(mkdtemp(dir));
    snprintf(text, sizeof text, base_cfg, corpus(), dir);
    cr_assert_eq(eopt_config_parse(text, "t.cfg", nset, sets, &cfg), EOPT_OK, "%s", eopt_last_error());
    char path[400];
    snprintf(path, sizeof path, "%s.cfg", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

static void cleanup(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s.cfg'", dir, dir);
    cr_expect_eq(system(cmd), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return strdup("");
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return strdup(buf);
}

static void ckpt_path(char *buf, size_t size, const char *dir, int step)
{
    snprintf(buf, size, "%s/step_%012d.h5", dir, step);
}

/* Overwrites a file with bytes that are no HDF5 file. */
static void damage(const char *path)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    fputs("not a checkpoint\n", f);
    fclose(f);
}

static char logged[16384];

static void collect(eopt_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level != EOPT_LOG_PROGRESS)
        snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", msg);
}

static eopt_status train_logged(const eopt_train_options *o, eopt_train_result *r)
{
    logged[0] = 0;
    eopt_log_set_handler(collect, NULL);
    eopt_status st = eopt_train(&cfg, o, r);
    eopt_log_set_handler(NULL, NULL);
    return st;
}

/* ---- item 3: --resume auto ---- */

/* A damaged newest checkpoint beside a good older one: the fallback names the file and why
 * (it used to fall back without a word). */
Test(reliability, resume_auto_names_the_skipped_checkpoint, .timeout = 60)
{
    char dir[300], path[400];
    setup(dir, sizeof dir, "skip", 0, NULL);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .stop_at = 4}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    ckpt_path(path, sizeof path, dir, 4);
    damage(path);
    cr_assert_eq(train_logged(&(eopt_train_options){.quiet = 1, .resume = "auto"}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect_eq(r.start_step, 2);
    cr_expect_eq(r.step, 6);
    cr_expect(strstr(logged, path) && strstr(logged, "skipped") && strstr(logged, "step_000000000002.h5"), "%s",
              logged);
    cleanup(dir);
}

/* Every checkpoint unreadable: an error naming the files, and the metrics untouched (it used to
 * start from scratch and truncate metrics.jsonl); --force moves the run's files aside first. */
Test(reliability, resume_auto_never_starts_over_unasked, .timeout = 60)
{
    char dir[300], path[400], metrics[400];
    setup(dir, sizeof dir, "over", 0, NULL);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .stop_at = 4}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    for (int s = 2; s <= 4; s += 2) {
        ckpt_path(path, sizeof path, dir, s);
        damage(path);
    }
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    char *before = slurp(metrics);
    eopt_status st = train_logged(&(eopt_train_options){.quiet = 1, .resume = "auto"}, &r);
    cr_expect_neq(st, EOPT_OK, "a fresh run started over the damaged checkpoints");
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, "none of the 2 checkpoints") && strstr(msg, "step_000000000002.h5") &&
              strstr(msg, "--force"), "%s", msg);
    cr_expect(strstr(logged, "step_000000000004.h5: skipped"), "%s", logged);
    char *after = slurp(metrics);
    cr_expect_str_eq(after, before, "the metrics were rewritten");
    free(after);

    cr_assert_eq(train_logged(&(eopt_train_options){.quiet = 1, .resume = "auto", .force = 1}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect_eq(r.start_step, 0);
    cr_expect(strstr(logged, "starting over") && strstr(logged, "moved to"), "%s", logged);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cat %s/previous-*/metrics.jsonl", dir);
    FILE *p = popen(cmd, "r");
    char moved[1 << 16];
    size_t n = fread(moved, 1, sizeof moved - 1, p);
    moved[n] = 0;
    pclose(p);
    cr_expect_str_eq(moved, before, "the old metrics are kept aside");
    free(before);
    cleanup(dir);
}

/* ---- item 4: write errors of the metrics and records ---- */

/* Runs `fn` in a child under a file size limit of `limit` bytes (SIGXFSZ ignored: writes fail
 * with EFBIG as on a full disk); the child's status and error message into msg. */
static eopt_status limited(rlim_t limit, const eopt_train_options *o, char *msg, size_t size)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        eopt_train_result r;
        eopt_status st = eopt_train(&cfg, o, &r);
        const char *m = eopt_last_error();
        if (write(fds[1], m, strlen(m)) < 0)
            _exit(99);
        _exit((int)st);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, size - 1);
    msg[n > 0 ? n : 0] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status), "the child died (signal %d)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return (eopt_status)WEXITSTATUS(status);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* The metrics hit a full disk mid-run: the run stops with an error naming metrics.jsonl, and
 * the checkpoint it resumed from is intact (the run used to go on and exit 0). */
Test(reliability, metrics_write_error_stops_the_run, .timeout = 60)
{
    char dir[300], path[400], msg[2048];
    const char *sets[] = {"run.steps=40", "checkpoint.interval=0"};
    setup(dir, sizeof dir, "full", 2, sets);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .stop_at = 4}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    long room = file_size(path) + 3000; /* a few steps' lines, far less than a checkpoint */
    eopt_status st = limited((rlim_t)room, &(eopt_train_options){.quiet = 1, .resume = "auto"}, msg, sizeof msg);
    cr_expect_eq(st, EOPT_ERR_IO, "%s", msg);
    cr_expect(strstr(msg, "metrics file") && strstr(msg, path) && strstr(msg, "too large"), "%s", msg);
    eopt_ckpt *ck;
    ckpt_path(path, sizeof path, dir, 4);
    cr_expect_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    if (ck)
        eopt_checkpoint_close(ck);
    /* room again: the run resumes from step 4 and finishes */
    cr_expect_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .resume = "auto"}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect_eq(r.start_step, 4);
    cleanup(dir);
}

/* The run folder's records on a full disk: an error naming the file, never a half file. */
Test(reliability, record_write_error_names_the_file, .timeout = 60)
{
    char dir[300], msg[2048];
    setup(dir, sizeof dir, "rec", 0, NULL);
    eopt_status st = limited(100, &(eopt_train_options){.quiet = 1}, msg, sizeof msg);
    cr_expect_eq(st, EOPT_ERR_IO, "%s", msg);
    cr_expect(strstr(msg, "config.cfg") && strstr(msg, "too large"), "%s", msg);
    char path[400];
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    cr_expect_eq(access(path, F_OK), -1, "a half-written config.cfg");
    cleanup(dir);
}

/* ---- item 7: non-finite steps ---- */

/* "skip" used to skip every step and finish with a NaN evaluation and success. */
Test(reliability, nonfinite_skips_are_limited, .timeout = 60)
{
    char dir[300];
    const char *sets[] = {"optimizers.adamw.args.lr=1e38", "run.on_nonfinite=skip", "run.steps=30"};
    setup(dir, sizeof dir, "nf", 3, sets);
    cr_expect_eq(cfg.run.max_nonfinite_skips, 10, "the default");
    eopt_train_result r;
    cr_expect_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1}, &r), EOPT_ERR_NUMERIC);
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, "11 non-finite steps in a row") && strstr(msg, "run.max_nonfinite_skips = 10"), "%s", msg);
    cleanup(dir);
}

/* With room for every skip, the run ends with a NaN evaluation: an error, and the summary counts
 * the skipped steps. */
Test(reliability, nonfinite_final_eval_is_an_error, .timeout = 60)
{
    char dir[300];
    const char *sets[] = {"optimizers.adamw.args.lr=1e38", "run.on_nonfinite=skip", "run.max_nonfinite_skips=100"};
    setup(dir, sizeof dir, "nfe", 3, sets);
    eopt_train_result r;
    cr_expect_eq(train_logged(&(eopt_train_options){0}, &r), EOPT_ERR_NUMERIC);
    cr_expect(strstr(eopt_last_error(), "non-finite evaluation loss"), "%s", eopt_last_error());
    cr_expect_gt(r.nonfinite_steps, 0);
    cr_expect(strstr(logged, "non-finite steps skipped"), "%s", logged);
    cr_expect(strstr(eopt_last_error(), "non-finite steps skipped"), "%s", eopt_last_error());
    cleanup(dir);
}

Test(reliability, max_nonfinite_skips_is_checked)
{
    char dir[300], text[4096];
    snprintf(dir, sizeof dir, "/tmp/eopt-rel-none");
    snprintf(text, sizeof text, base_cfg, corpus(), dir);
    const char *sets[] = {"run.max_nonfinite_skips=-1"};
    cr_expect_neq(eopt_config_parse(text, "t.cfg", 1, sets, &cfg), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "max_nonfinite_skips"), "%s", eopt_last_error());
}

/* Resuming a finished run did the last save again and reported "eval loss nan, 0 tokens/s". */
Test(reliability, resuming_a_finished_run_says_so, .timeout = 60)
{
    char dir[300], path[400];
    setup(dir, sizeof dir, "done", 0, NULL);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1}, &r), EOPT_OK, "%s", eopt_last_error());
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *before = slurp(path);
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .resume = "auto"}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect(r.already_finished);
    cr_expect_eq(r.step, 6);
    char *after = slurp(path);
    cr_expect_str_eq(after, before, "nothing is written");
    snprintf(path, sizeof path, "%s/resumes.jsonl", dir);
    cr_expect_eq(access(path, F_OK), -1, "no resume is recorded");
    free(before);
    free(after);

    const char *bin = getenv("EOPT_BIN");
    if (bin) {
        char cmd[1024], out[4096];
        snprintf(cmd, sizeof cmd, "%s train %s.cfg --resume auto 2>&1", bin, dir);
        FILE *p = popen(cmd, "r");
        size_t n = fread(out, 1, sizeof out - 1, p);
        out[n] = 0;
        int rc = pclose(p);
        cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "%s", out);
        cr_expect(strstr(out, "run already finished at step 6") && !strstr(out, "eval loss"), "%s", out);
    }
    cleanup(dir);
}

/* ---- the fault harness: the eopt binary killed, interrupted, out of disk ---- */

#define FAULT_STEPS 20
#define FAULT_SETS "run.steps=20", "checkpoint.interval=1", "checkpoint.keep=3"

/* Starts `eopt train <dir>.cfg --set ... [extra]`, output into <dir>.out, under a file size
 * limit (fsize > 0) as `ulimit -f` in a shell sets it: SIGXFSZ at its default action (eopt
 * ignores it, so that writes fail with EFBIG as on a full disk). */
static pid_t spawn(const char *dir, const char *extra, rlim_t fsize)
{
    const char *bin = getenv("EOPT_BIN");
    char cfgp[400], out[400];
    snprintf(cfgp, sizeof cfgp, "%s.cfg", dir);
    snprintf(out, sizeof out, "%s.out", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(out, "a", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0)
            _exit(98);
        if (fsize > 0) {
            signal(SIGXFSZ, SIG_DFL);
            struct rlimit rl = {fsize, fsize};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        const char *argv[] = {bin, "train", cfgp, "--set", "run.steps=20", "--set", "checkpoint.interval=1",
                              "--set", "checkpoint.keep=3", extra ? "--resume" : NULL, extra, NULL}; /* FAULT_SETS */
        execv(bin, (char *const *)argv);
        _exit(97);
    }
    return pid;
}

/* The exit status, or 128 + the signal that ended it. */
static int finish(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The evaluation loss metrics.jsonl records for the final step (NaN when it has none). */
static double final_eval(const char *dir)
{
    char path[400], line[16384], want[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(want, sizeof want, "{\"step\": %d, \"eval_loss\": ", FAULT_STEPS);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    double v = NAN;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, want, strlen(want)) == 0)
            v = strtod(line + strlen(want), NULL);
    fclose(f);
    return v;
}

/* The run in `dir` ended as an uninterrupted one: <dir>.out ends with the final line ("eval loss
 * X, N tokens/s"), or, when the last kill landed after the final checkpoint, with the resume's
 * "run already finished"; the metrics' train lines hold each step 1..FAULT_STEPS exactly once, in
 * order, and the final evaluation loss is the uninterrupted run's to the bit (%.9g). */
static void check_finished(const char *dir, double want_eval)
{
    char path[400];
    snprintf(path, sizeof path, "%s.out", dir);
    char *out = slurp(path), *last = strstr(out, "eval loss "), *next;
    while (last && (next = strstr(last + 1, "eval loss ")))
        last = next;
    char done[80];
    snprintf(done, sizeof done, "run already finished at step %d", FAULT_STEPS);
    const char *tail = out + strlen(out);
    while (tail > out && tail[-1] == '\n')
        tail--;
    while (tail > out && tail[-1] != '\n')
        tail--;
    cr_assert(last || strncmp(tail, done, strlen(done)) == 0, "no final line in %s", out);
    free(out);
    cr_expect_eq(final_eval(dir), want_eval, "resumed %.9g, uninterrupted %.9g", final_eval(dir), want_eval);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[16384];
    int64_t expect = 1;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"train_loss\"")) {
            int64_t s = strtoll(strstr(line, "\"step\":") + 7, NULL, 10);
            cr_expect_eq(s, expect, "metrics: step %lld where %lld belongs", (long long)s, (long long)expect);
            expect = s + 1;
        }
    fclose(f);
    cr_expect_eq(expect, FAULT_STEPS + 1, "metrics end at step %lld", (long long)expect - 1);
}

static double uninterrupted_eval(void)
{
    char dir[300];
    setup(dir, sizeof dir, "ref", 0, NULL);
    cr_assert_eq(finish(spawn(dir, NULL, 0)), 0);
    double v = final_eval(dir);
    cr_assert(isfinite(v), "no final evaluation in %s/metrics.jsonl", dir);
    cleanup(dir);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -f '%s.out'", dir);
    cr_expect_eq(system(cmd), 0);
    return v;
}

static void cleanup_out(const char *dir)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -f '%s.out'", dir);
    cr_expect_eq(system(cmd), 0);
    cleanup(dir);
}

/* SIGKILL at random times (mostly during a save: one per step): every resume finds a checkpoint
 * that opens, and the run ends exactly as an uninterrupted one. */
Test(faults, sigkill_at_random_times, .timeout = 120)
{
    if (!getenv("EOPT_BIN"))
        cr_skip_test("EOPT_BIN is not set");
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    double want = uninterrupted_eval();
    char dir[300];
    setup(dir, sizeof dir, "kill", 0, NULL);
    for (int k = 0; k < 4; k++) {
        pid_t pid = spawn(dir, k ? "auto" : NULL, 0);
        sleep_ms(50 + rand() % 300);
        kill(pid, SIGKILL);
        int st = finish(pid);
        cr_expect(st == 128 + SIGKILL || st == 0, "seed %u, kill %d: exit %d", seed, k, st);
    }
    cr_assert_eq(finish(spawn(dir, "auto", 0)), 0, "seed %u", seed);
    check_finished(dir, want);
    cleanup_out(dir);
}

/* SIGINT and SIGTERM at random times, from startup (the load of the checkpoint) through the
 * saves: each run checkpoints and exits 128 + the signal (or is ended by it before its handler
 * is set, or has finished), and the folder resumes to the same end. */
Test(faults, sigint_sigterm_during_load_and_save, .timeout = 120)
{
    if (!getenv("EOPT_BIN"))
        cr_skip_test("EOPT_BIN is not set");
    unsigned seed = (unsigned)time(NULL) ^ 0x5151u;
    srand(seed);
    double want = uninterrupted_eval();
    char dir[300];
    setup(dir, sizeof dir, "sig", 0, NULL);
    for (int k = 0; k < 4; k++) {
        int sig = k % 2 ? SIGTERM : SIGINT;
        pid_t pid = spawn(dir, k ? "auto" : NULL, 0);
        sleep_ms(20 + rand() % 300);
        kill(pid, sig);
        int st = finish(pid);
        cr_expect(st == 128 + sig || st == 0, "seed %u, signal %d: exit %d", seed, sig, st);
    }
    cr_assert_eq(finish(spawn(dir, "auto", 0)), 0, "seed %u", seed);
    check_finished(dir, want);
    cleanup_out(dir);
}

/* A full disk on a resume (a file size limit below the run's records): `eopt train` exits 1
 * naming the file, the folder's files stay as they were, and with room again the run resumes to
 * the end. (A full disk during a save: tests/test_guard.c.) */
Test(faults, disk_full_exits_nonzero, .timeout = 120)
{
    if (!getenv("EOPT_BIN"))
        cr_skip_test("EOPT_BIN is not set");
    double want = uninterrupted_eval();
    char dir[300], path[400];
    const char *sets[] = {FAULT_SETS};
    setup(dir, sizeof dir, "disk", 3, sets);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .stop_at = 4}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    char *metrics = slurp(path);
    cr_expect_eq(finish(spawn(dir, "auto", 1000)), 1);
    char *after = slurp(path);
    cr_expect_str_eq(after, metrics, "the metrics changed");
    free(after);
    free(metrics);
    snprintf(path, sizeof path, "%s.out", dir);
    char *out = slurp(path);
    cr_expect(strstr(out, "eopt train: cannot write") && strstr(out, "config.cfg: File too large"), "%s", out);
    free(out);
    cr_assert_eq(finish(spawn(dir, "auto", 0)), 0);
    check_finished(dir, want);
    cleanup_out(dir);
}

/* A checkpoint save under a file size limit (`ulimit -f`) it does not fit in: the run exits 1
 * with an error naming the file and the limit, leaves no .tmp, keeps its last good checkpoint,
 * and with room again resumes to the end. (It was killed by SIGXFSZ, or, with SIGXFSZ ignored,
 * crashed at exit in libhdf5 after a failed flush.) */
Test(faults, file_size_limit_during_a_save, .timeout = 120)
{
    if (!getenv("EOPT_BIN"))
        cr_skip_test("EOPT_BIN is not set");
    double want = uninterrupted_eval();
    char dir[300], path[400];
    const char *sets[] = {FAULT_SETS};
    setup(dir, sizeof dir, "fsize", 3, sets);
    eopt_train_result r;
    cr_assert_eq(eopt_train(&cfg, &(eopt_train_options){.quiet = 1, .stop_at = 4}, &r), EOPT_OK, "%s",
                 eopt_last_error());
    ckpt_path(path, sizeof path, dir, 4);
    long limit = file_size(path) / 2; /* room for the metrics and records, not for a checkpoint */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    cr_assert_lt(file_size(path) + 4096, limit, "the metrics must fit under the limit");
    cr_expect_eq(finish(spawn(dir, "auto", (rlim_t)limit)), 1);
    snprintf(path, sizeof path, "%s.out", dir);
    char *out = slurp(path), want_msg[600];
    snprintf(want_msg, sizeof want_msg, "writing checkpoint '%s/step_000000000005.h5'", dir);
    cr_expect(strstr(out, want_msg) && strstr(out, "file size limit"), "%s", out);
    free(out);
    snprintf(path, sizeof path, "%s/step_000000000005.h5.tmp", dir);
    cr_expect_eq(access(path, F_OK), -1, "%s is left behind", path);
    eopt_ckpt *ck;
    ckpt_path(path, sizeof path, dir, 4);
    cr_expect_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    if (ck)
        eopt_checkpoint_close(ck);
    cr_assert_eq(finish(spawn(dir, "auto", 0)), 0);
    check_finished(dir, want);
    cleanup_out(dir);
}
