/* The checkpoint guard (checkpoint/guard.h) and the writer on a full disk: every input in
 * tests/corpus/checkpoint/ (found by fuzzing the unguarded reader: libhdf5 crashes, hangs and
 * huge declared sizes) is refused as a damaged checkpoint within a bounded time, SIGINT/SIGTERM
 * stop a check under way, `--resume auto` falls back past a damaged newest file, and a save
 * that fills the disk fails clearly, keeps the previous checkpoint and exits cleanly. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/guard.h"
#include "checkpoint/rotate.h"
#include "testutil.h"

#define CORPUS "tests/corpus/checkpoint"
#define SLOW CORPUS "/timeout-0f8ea3d2d367.h5" /* libhdf5 spins in H5HG_read on it for a while */

/* A FIFO nobody writes: opening it blocks, a hang on every machine (it stands for libhdf5's
 * hangs, which take machine-dependent time). */
static void make_fifo(char *path, size_t size, const char *tag)
{
    snprintf(path, size, "/tmp/eopt-guard-%d-%s.h5", (int)getpid(), tag);
    unlink(path);
    cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s", path);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* No child of this process is left unreaped. */
static void expect_no_children(void)
{
    cr_expect_eq(waitpid(-1, NULL, WNOHANG), -1, "a guard child was left behind");
}

static void expect_damaged(eopt_status st, const char *path)
{
    cr_expect_eq(st, EOPT_ERR_FORMAT, "%s: %s", path, eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "damaged checkpoint") && strstr(eopt_last_error(), path), "%s: message '%s'",
              path, eopt_last_error());
}

Test(guard, corpus_refused_in_bounded_time)
{
    DIR *d = opendir(CORPUS);
    cr_assert(d, "no %s (run from the repository root)", CORPUS);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".h5"))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
        eopt_guard_limits lim = {.seconds = 3};
        double t0 = now();
        eopt_status st = eopt_guard_check(path, &lim);
        /* CPU time is limited to lim.seconds; the wall-clock bound allows for a loaded machine. */
        double took = now() - t0;
        if (st != EOPT_ERR_FORMAT || !strstr(eopt_last_error(), "damaged checkpoint") ||
            !strstr(eopt_last_error(), path) || took > EOPT_GUARD_WALL_FACTOR * lim.seconds + 2)
            cr_expect_fail("%s: status %d after %.1f s: %s", path, (int)st, took, eopt_last_error());
        n++;
    }
    closedir(d);
    cr_expect_geq(n, 10, "only %d corpus files", n);
    expect_no_children();
}

/* The default limits, through the open every reader uses (and a sound fixture still opens). */
Test(guard, open_refuses_with_default_limits)
{
    eopt_ckpt *ck = NULL;
    double t0 = now();
    expect_damaged(eopt_checkpoint_open(SLOW, NULL, &ck), SLOW);
    cr_expect_null(ck);
    cr_expect_lt(now() - t0, EOPT_GUARD_WALL_FACTOR * EOPT_GUARD_SECONDS + 2);
    char good[1024];
    tu_fixture(good, sizeof good, "optimizers/soap_default/step_5.h5");
    cr_expect_eq(eopt_checkpoint_open(good, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    eopt_checkpoint_close(ck);
    expect_no_children();
}

static void *interrupt_later(void *arg)
{
    (void)arg;
    usleep(300 * 1000);
    eopt_interrupt();
    return NULL;
}

/* A check that sleeps is killed at its wall-clock limit. */
Test(guard, hang_refused_at_the_wall_clock_limit)
{
    char fifo[256];
    make_fifo(fifo, sizeof fifo, "hang");
    double t0 = now();
    expect_damaged(eopt_guard_check(fifo, &(eopt_guard_limits){.seconds = 0.5}), fifo);
    cr_expect(strstr(eopt_last_error(), "did not finish"), "%s", eopt_last_error());
    cr_expect_lt(now() - t0, EOPT_GUARD_WALL_FACTOR * 0.5 + 2, "took %.1f s", now() - t0);
    unlink(fifo);
    expect_no_children();
}

Test(guard, interrupt_stops_the_check)
{
    char fifo[256];
    make_fifo(fifo, sizeof fifo, "interrupt");
    pthread_t th;
    pthread_create(&th, NULL, interrupt_later, NULL);
    double t0 = now();
    eopt_status st = eopt_guard_check(fifo, &(eopt_guard_limits){.seconds = 30});
    pthread_join(th, NULL);
    eopt_interrupt_clear();
    cr_expect_eq(st, EOPT_ERR_INTERRUPTED, "%s", eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "interrupted") && strstr(eopt_last_error(), fifo), "%s", eopt_last_error());
    cr_expect_lt(now() - t0, 3.0, "took %.1f s", now() - t0);
    unlink(fifo);
    expect_no_children();
}

static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out, "cannot copy %s to %s", src, dst);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* `--resume auto`: a damaged newest checkpoint beside a sound older one falls back to it. */
Test(guard, latest_skips_a_damaged_newest)
{
    char dir[256], good[1024], p[512];
    snprintf(dir, sizeof dir, "/tmp/eopt-guard-%d", (int)getpid());
    mkdir(dir, 0755);
    tu_fixture(good, sizeof good, "optimizers/soap_default/step_5.h5");
    snprintf(p, sizeof p, "%s/ckpt_000000000005.h5", dir);
    copy_file(good, p);
    snprintf(p, sizeof p, "%s/ckpt_000000000009.h5", dir);
    copy_file(CORPUS "/crash-0c3beb255b3d.h5", p);
    eopt_ckpt *ck = NULL;
    cr_assert_eq(eopt_checkpoint_open_latest(dir, "ckpt_", NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(ck), 5);
    eopt_checkpoint_close(ck);
    unlink(p);
    snprintf(p, sizeof p, "%s/ckpt_000000000005.h5", dir);
    unlink(p);
    rmdir(dir);
}

/* `eopt train --resume` on a file whose check hangs: SIGTERM ends it at once, as the signal
 * would (128 + 15), with no checkpoint written. */
Test(guard, train_resume_honours_sigterm)
{
    const char *bin = getenv("EOPT_BIN");
    if (!bin)
        cr_skip_test("EOPT_BIN is not set");
    char dir[256], cfg[300], text[300], hang[256];
    snprintf(dir, sizeof dir, "/tmp/eopt-guard-train-%d", (int)getpid());
    snprintf(cfg, sizeof cfg, "%s.cfg", dir);
    snprintf(text, sizeof text, "%s.txt", dir);
    make_fifo(hang, sizeof hang, "train");
    FILE *f = fopen(text, "w");
    for (int k = 0; k < 400; k++)
        fprintf(f, "call me ishmael. some years ago, never mind how long precisely.\n");
    fclose(f);
    f = fopen(cfg, "w");
    fprintf(f,
            "model = { kind = \"gpt\"; block_size = 16; n_layer = 1; n_head = 2; n_embd = 16; };\n"
            "data = { kind = \"text\"; path = \"%s\"; };\n"
            "run = { steps = 4; batch_size = 2; seq_len = 16; threads = 1; sample_tokens = 0; };\n"
            "optimizers = ( { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.001; };\n"
            "    groups = ( { params = \"*\"; } ); } );\n"
            "checkpoint = { dir = \"%s\"; };\nlog = { progress = \"none\"; };\n",
            text, dir);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "train", cfg, "--resume", hang, (char *)NULL);
        _exit(127);
    }
    usleep(1500 * 1000); /* setup, then the guard's wait on the hanging child */
    double t0 = now();
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    cr_expect_lt(now() - t0, 3.0, "SIGTERM took %.1f s", now() - t0);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM, "status %#x", status);
    DIR *d = opendir(dir);
    int files = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        files += strstr(e->d_name, ".h5") != NULL;
    if (d)
        closedir(d);
    cr_expect_eq(files, 0, "a checkpoint was written");
    unlink(hang);
    unlink(cfg);
    unlink(text);
}

/* ---- a full disk during a save: a 256 KiB tmpfs in a private mount namespace ---- */

/* A private mount namespace (as root, or as a user through a user namespace) with a small
 * tmpfs at dir; 0 if this system allows neither. */
static int small_tmpfs(const char *dir)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWNS) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
            return 0;
        char map[64];
        FILE *f;
        if ((f = fopen("/proc/self/setgroups", "w")))
            fputs("deny", f), fclose(f);
        snprintf(map, sizeof map, "%u %u 1", (unsigned)uid, (unsigned)uid);
        if ((f = fopen("/proc/self/uid_map", "w")))
            fputs(map, f), fclose(f);
        snprintf(map, sizeof map, "%u %u 1", (unsigned)gid, (unsigned)gid);
        if ((f = fopen("/proc/self/gid_map", "w")))
            fputs(map, f), fclose(f);
    }
    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    return mount("eopt-full", dir, "tmpfs", 0, "size=256k") == 0;
}

/* Exit codes of the child below. */
enum { FULL_OK = 0, FULL_NO_TMPFS = 20, FULL_FIRST, FULL_SAVED, FULL_MESSAGE, FULL_LOST, FULL_TMP_LEFT };

static int full_disk_child(const char *dir)
{
    if (!small_tmpfs(dir))
        return FULL_NO_TMPFS;
    eopt_backend *be = tu_backend(1);
    eopt_tensor small, big;
    eopt_tensor_alloc(&small, be, EOPT_F32, 2, (int64_t[]){128, 128}); /* 64 KiB */
    eopt_tensor_alloc(&big, be, EOPT_F32, 2, (int64_t[]){256, 512});   /* 512 KiB: does not fit */
    eopt_param p = {.name = "w", .w = &small};
    eopt_ckpt_write cw = {.step = 1, .producer = "test_guard", .nparams = 1, .params = &p};
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (eopt_checkpoint_save(path, &cw) != EOPT_OK)
        return FULL_FIRST;
    p.w = &big, cw.step = 2;
    if (eopt_checkpoint_save(path, &cw) != EOPT_ERR_IO)
        return FULL_SAVED;
    if (!strstr(eopt_last_error(), path) || !strstr(eopt_last_error(), "No space left on device"))
        return FULL_MESSAGE;
    eopt_ckpt *ck = NULL;
    if (eopt_checkpoint_open(path, NULL, &ck) != EOPT_OK || eopt_ckpt_step(ck) != 1)
        return FULL_LOST;
    eopt_checkpoint_close(ck);
    if (access(tmp, F_OK) == 0)
        return FULL_TMP_LEFT;
    eopt_tensor_free(&small);
    eopt_tensor_free(&big);
    eopt_backend_close(be);
    return FULL_OK; /* exit(): libhdf5 closes down (H5_term_library) with nothing left open */
}

Test(guard, full_disk_keeps_the_previous_checkpoint)
{
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/eopt-full-%d", (int)getpid());
    mkdir(dir, 0755);
    pid_t pid = fork();
    if (pid == 0)
        exit(full_disk_child(dir));
    int status = 0;
    waitpid(pid, &status, 0);
    rmdir(dir);
    if (WIFEXITED(status) && WEXITSTATUS(status) == FULL_NO_TMPFS)
        cr_skip_test("no mount namespace here for a small tmpfs");
    cr_expect(WIFEXITED(status), "the process died at exit (signal %d)", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_expect_eq(WEXITSTATUS(status), FULL_OK, "step %d failed (see the enum)", WEXITSTATUS(status));
}
