/* `eopt selfcheck [cpu|cuda]`: runs each kind of backend operation once on a small problem,
 * checks the answer and prints what the backend can do and how fast. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../eopt.h"
#include "../optimizers/newton_schulz.h"
#include "commands.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int report(const char *what, double err, double tol, double t0)
{
    int ok = err <= tol;
    printf("  %-34s %-4s err %.2e (tol %.0e)  %7.2f ms\n", what, ok ? "ok" : "FAIL", err, tol, (seconds() - t0) * 1e3);
    return ok;
}

/* max |M - I| for M = Q^T Q (Q rows x cols, host) */
static double orthogonality_error(const float *Q, int rows, int cols)
{
    double worst = 0;
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double acc = 0;
            for (int k = 0; k < rows; k++)
                acc += (double)Q[k * cols + i] * Q[k * cols + j];
            worst = fmax(worst, fabs(acc - (i == j)));
        }
    return worst;
}

static int run_checks(eopt_backend *be)
{
    const int n = 256, m = 96;
    const size_t nn = sizeof(float) * n * n;
    float *a = be->alloc(be, nn), *b = be->alloc(be, nn), *c = be->alloc(be, nn), *w = be->alloc(be, sizeof(float) * n);
    float *h = malloc(nn), *ha = malloc(nn), *hw = malloc(sizeof(float) * n);
    if (!a || !b || !c || !w || !h || !ha || !hw) {
        fprintf(stderr, "eopt: out of memory\n");
        return 0;
    }
    int ok = 1;
    double t0 = seconds();
    be->random(be, EOPT_RAND_NORMAL, 42, 0, (int64_t)n * n, a);
    be->download(be, ha, a, nn);
    double mean = 0, var = 0;
    for (int k = 0; k < n * n; k++)
        mean += ha[k] / (double)(n * n), var += (double)ha[k] * ha[k] / (n * n);
    ok &= report("random normal (mean, var)", fmax(fabs(mean), fabs(var - 1)), 2e-2, t0);

    t0 = seconds(); /* syrk vs gemm: C = A A^T both ways */
    be->gemm(be, EOPT_PREC_FP32, 0, 1, n, n, n, 1, a, n, 0, a, n, 0, 0, b, n, 0, 1);
    be->syrk(be, EOPT_PREC_FP32, 0, n, n, 1, a, n, 0, c, n);
    be->download(be, h, b, nn);
    be->download(be, ha, c, nn);
    double err = 0;
    for (int k = 0; k < n * n; k++)
        err = fmax(err, fabs(h[k] - ha[k]) / n);
    ok &= report("gemm and syrk (A A^T)", err, 1e-5, t0);

    t0 = seconds(); /* eigendecomposition of A A^T: Q^T Q = I and ascending eigenvalues */
    eopt_status st = be->syevd(be, n, c, w);
    be->download(be, ha, c, nn);
    be->download(be, hw, w, sizeof(float) * n);
    err = st == EOPT_OK ? orthogonality_error(ha, n, n) : 1;
    for (int k = 1; k < n; k++)
        if (hw[k] < hw[k - 1])
            err = 1;
    ok &= report("symmetric eigendecomposition", err, 1e-4, t0);

    t0 = seconds(); /* QR of a tall block */
    be->copy(be, b, a, sizeof(float) * n * m);
    st = be->qr(be, n, m, b);
    be->download(be, ha, b, sizeof(float) * n * m);
    ok &= report("Householder QR (explicit Q)", st == EOPT_OK ? orthogonality_error(ha, n, m) : 1, 1e-5, t0);

    t0 = seconds(); /* reductions and element-wise kernels: ||2A||_F = 2 ||A||_F */
    eopt_scale(be, (int64_t)n * n, 2.0f, a, b);
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, n, n, a, NULL, n, 1, w);
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, n, n, b, NULL, n, 1, w + 1);
    be->download(be, hw, w, 2 * sizeof(float));
    ok &= report("element-wise and reductions", fabs(hw[1] - 2 * hw[0]) / hw[1], 1e-6, t0);

    t0 = seconds(); /* Newton-Schulz (polar express, 8 steps) orthogonalises a wide block */
    eopt_ns_config cfg;
    eopt_ns_emerging("polar_express", 8, NULL, 0, &cfg);
    eopt_workspace ws;
    eopt_ws_init(&ws, be);
    st = eopt_ns_orthogonalize(be, &ws, &cfg, m, n, a, b);
    eopt_ws_free(&ws);
    be->download(be, h, b, sizeof(float) * m * n);
    err = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double acc = 0;
            for (int k = 0; k < n; k++)
                acc += (double)h[i * n + k] * h[j * n + k];
            err = fmax(err, fabs(acc - (i == j)));
        }
    ok &= report("Newton-Schulz orthogonalisation", st == EOPT_OK ? err : 1, 2e-2, t0);

    be->free(be, a), be->free(be, b), be->free(be, c), be->free(be, w);
    free(h), free(ha), free(hw);
    return ok;
}

static int run(int argc, char **argv);

const eopt_command eopt_cmd_selfcheck = {
    "selfcheck", "[cpu|cuda]",
    "run each kind of backend operation once on a small problem, check the answers and print what the backend "
    "can do and how fast",
    "The backend: the argument, else EOPT_DEVICE, else cpu. Exit status 0 when every check passes, else 1.", NULL,
    run};

static int run(int argc, char **argv)
{
    const char *device = NULL;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_selfcheck, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (device)
            return eopt_usage_error(&eopt_cmd_selfcheck, "one backend, not '%s' as well", a.val[0]);
        device = a.val[0];
    }
    eopt_backend *be;
    if (eopt_backend_open(device, 0, &be) != EOPT_OK) {
        fprintf(stderr, "eopt: %s\n", eopt_last_error());
        return 1;
    }
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    printf("backend: %s\n", desc);
    printf("optimizer classes:");
    for (const eopt_optimizer_class *const *c = eopt_optimizer_classes(); *c; c++)
        printf(" %s", (*c)->id);
    printf("\n");
    int ok = run_checks(be);
    printf("selfcheck %s\n", ok ? "ok" : "FAILED");
    eopt_backend_close(be);
    return ok ? 0 : 1;
}
