/* Test helpers (testutil.h). No Test() definitions here. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testutil.h"

eopt_backend *tu_backend(int threads)
{
    eopt_backend *be = NULL;
    cr_assert_eq(eopt_backend_open(NULL, threads, &be), EOPT_OK, "%s", eopt_last_error());
    return be;
}

/* Before any test: the device EOPT_DEVICE names must open, else the run stops with one line
 * (EOPT_DEVICE=cuda without a GPU or without a CUDA build), not hundreds of failed tests. Tried
 * in a child process: a CUDA context does not survive the fork of each test. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *dev = getenv("EOPT_DEVICE");
    int fd[2];
    if (!dev || !*dev || strcmp(dev, "cpu") == 0 || pipe(fd) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        eopt_backend *be = NULL;
        close(fd[0]);
        if (eopt_backend_open(NULL, 1, &be) == EOPT_OK) {
            eopt_backend_close(be);
            _exit(0);
        }
        const char *msg = eopt_last_error();
        ssize_t w = write(fd[1], msg, strlen(msg));
        _exit(w < 0 ? 2 : 1);
    }
    close(fd[1]);
    char msg[512] = "";
    ssize_t got = pid > 0 ? read(fd[0], msg, sizeof msg - 1) : 0;
    close(fd[0]);
    msg[got > 0 ? got : 0] = '\0';
    int status = 0;
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    fprintf(stderr, "eopt-tests: EOPT_DEVICE=%s cannot be opened, no test run: %s\n", dev, msg);
    exit(2);
}

const char *tu_device(void)
{
    const char *d = getenv("EOPT_DEVICE");
    return d && *d ? d : "cpu";
}

const char *tu_fixture_dir(void)
{
    const char *dir = getenv("EOPT_FIXTURES");
    return dir ? dir : "../shared/fixtures";
}

void tu_fixture(char *buf, size_t size, const char *fmt, ...)
{
    int off = snprintf(buf, size, "%s/", tu_fixture_dir());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + off, size - (size_t)off, fmt, ap);
    va_end(ap);
}

void tu_upload(eopt_tensor *t, const float *h)
{
    cr_assert_eq(eopt_tensor_from_host(t, h, sizeof(float) * (size_t)t->numel), EOPT_OK);
}

void tu_download(const eopt_tensor *t, float *h)
{
    cr_assert_eq(eopt_tensor_to_host(t, h, sizeof(float) * (size_t)t->numel), EOPT_OK);
}

float *tu_host(const eopt_tensor *t)
{
    float *h = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    tu_download(t, h);
    return h;
}

double tu_fro(const float *a, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += (double)a[k] * a[k];
    return sqrt(s);
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n)
{
    double d = 0;
    for (int64_t k = 0; k < n; k++)
        d = fmax(d, fabs((double)a[k] - (double)b[k]));
    return d;
}

eopt_status rig_open(rig *r, eopt_backend *be, const char *cls, const eopt_dict *args, const eopt_dict *hp, int np,
                     const int (*shape)[2], uint64_t seed)
{
    memset(r, 0, sizeof *r);
    cr_assert_leq(np, TU_MAXP);
    r->be = be;
    r->np = np;
    for (int i = 0; i < np; i++) {
        const int64_t sh[2] = {shape[i][0], shape[i][1]};
        const int nd = shape[i][1] ? 2 : 1;
        cr_assert_eq(eopt_tensor_alloc(&r->w[i], be, EOPT_F32, nd, sh), EOPT_OK);
        cr_assert_eq(eopt_tensor_alloc(&r->g[i], be, EOPT_F32, nd, sh), EOPT_OK);
        be->random(be, EOPT_RAND_NORMAL, seed, 1000000 * (uint64_t)i, r->w[i].numel, eopt_f32(&r->w[i]));
        snprintf(r->p[i].name, sizeof r->p[i].name, "p%d", i);
        r->p[i].w = &r->w[i];
        r->p[i].grad = &r->g[i];
    }
    return cls ? eopt_optimizer_create(cls, be, args, 1, hp, &np, r->p, np, &r->opt) : EOPT_OK;
}

void rig_close(rig *r)
{
    eopt_optimizer_free(r->opt);
    for (int i = 0; i < r->np; i++)
        eopt_tensor_free(&r->w[i]), eopt_tensor_free(&r->g[i]);
    memset(r, 0, sizeof *r);
}

void rig_grads(rig *r, uint64_t seed, int t, float scale)
{
    for (int i = 0; i < r->np; i++) {
        float *g = eopt_f32(&r->g[i]);
        r->be->random(r->be, EOPT_RAND_NORMAL, seed + 7919 * (uint64_t)t, 1000000 * (uint64_t)i, r->g[i].numel, g);
        eopt_scale(r->be, r->g[i].numel, scale, g, g);
    }
}

void rig_step(rig *r) { cr_assert_eq(eopt_optimizer_step(r->opt), EOPT_OK, "%s", eopt_last_error()); }

float *rig_state(rig *r, int i, const char *key)
{
    eopt_tensor *t = eopt_state_get(r->opt, i, key);
    cr_assert(t, "no state '%s' for parameter %d", key, i);
    return tu_host(t);
}

const char *tu_text_corpus(const char *name, void (*write)(FILE *f))
{
    static __thread char path[256];
    char tmp[300];
    snprintf(path, sizeof path, "/tmp/%s", name);
    if (access(path, R_OK) == 0)
        return path;
    snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    cr_assert(f, "%s", tmp);
    write(f);
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(rename(tmp, path), 0);
    return path;
}

void tu_write_words(FILE *f)
{
    const char *words[] = {"the", "whale", "sea", "ship", "call", "me", "ishmael", "white", "captain", "ahab"};
    uint32_t x = 12345;
    for (int k = 0; k < 3000; k++) {
        x = x * 1103515245u + 12345u;
        fprintf(f, "%s%s", words[(x >> 16) % 10], k % 12 == 11 ? ".\n" : " ");
    }
}

void tu_tmpdir(char *buf, size_t size, const char *suite, const char *tag)
{
    if (tag)
        snprintf(buf, size, "/tmp/eopt-%s-%s-XXXXXX", suite, tag);
    else
        snprintf(buf, size, "/tmp/eopt-%s-XXXXXX", suite);
    cr_assert(mkdtemp(buf), "mkdtemp %s", buf);
}

void tu_rmdir_all(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}
