/* Newton-Schulz throughput against the machine's float32 GEMM peak, measured in the same run.
 *
 * One quintic step on an r x c working matrix (r <= c) costs, counted as plain GEMM flops,
 * 2 r^2 c (A = X X^T) + 2 r^3 (A A) + 2 r^2 c (B X). eopt computes the two symmetric products
 * with syrk (half the work), so it can beat "peak x flops". Prints ratios, not absolute claims.
 * usage: bench_ns [device] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eopt.h"
#include "optimizers/newton_schulz.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Best-of-reps time of fn. */
#define BEST_OF(reps, body)                                                                                           \
    ({                                                                                                                \
        double best_ = 1e30;                                                                                          \
        for (int r_ = 0; r_ < (reps); r_++) {                                                                         \
            double t0_ = now();                                                                                       \
            body;                                                                                                     \
            be->sync(be);                                                                                             \
            double dt_ = now() - t0_;                                                                                 \
            if (dt_ < best_)                                                                                          \
                best_ = dt_;                                                                                          \
        }                                                                                                             \
        best_;                                                                                                        \
    })

int main(int argc, char **argv)
{
    eopt_backend *be;
    if (eopt_backend_open(argc > 1 ? argv[1] : NULL, 0, &be) != EOPT_OK) {
        fprintf(stderr, "bench_ns: %s\n", eopt_last_error());
        return 1;
    }
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    printf("backend: %s\n", desc);

    const int P = 2048; /* sgemm peak reference: a square product */
    float *a = be->alloc(be, sizeof(float) * P * P), *b = be->alloc(be, sizeof(float) * P * P),
          *c = be->alloc(be, sizeof(float) * P * P);
    be->random(be, EOPT_RAND_NORMAL, 1, 0, (int64_t)P * P, a);
    be->random(be, EOPT_RAND_NORMAL, 2, 0, (int64_t)P * P, b);
    double tg = BEST_OF(3, be->gemm(be, EOPT_PREC_FP32, 0, 0, P, P, P, 1, a, P, 0, b, P, 0, 0, c, P, 0, 1));
    double peak = 2.0 * P * P * P / tg;
    printf("sgemm %dx%dx%d: %.1f GFLOP/s (reference peak)\n", P, P, P, peak * 1e-9);

    const int shapes[][2] = {{512, 512}, {1024, 1024}, {1024, 4096}, {4096, 1024}};
    eopt_ns_config cfg;
    eopt_ns_emerging("quintic", 5, NULL, 0, &cfg);
    eopt_workspace ws;
    eopt_ws_init(&ws, be);
    printf("%-12s %10s %12s %14s\n", "shape", "ms/NS(5)", "GFLOP/s-eq", "time/peak-time");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], n = shapes[s][1], r = m < n ? m : n, cc = m < n ? n : m;
        float *x = be->alloc(be, sizeof(float) * m * n), *o = be->alloc(be, sizeof(float) * m * n);
        be->random(be, EOPT_RAND_NORMAL, 3, 0, (int64_t)m * n, x);
        eopt_ns_orthogonalize(be, &ws, &cfg, m, n, x, o); /* warm-up sizes the workspace */
        double t = BEST_OF(3, {
            eopt_ws_reset(&ws);
            eopt_ns_orthogonalize(be, &ws, &cfg, m, n, x, o);
        });
        double flops = 5.0 * (4.0 * r * r * cc + 2.0 * r * r * r);
        char name[32];
        snprintf(name, sizeof name, "%dx%d", m, n);
        printf("%-12s %10.2f %12.1f %14.2f\n", name, t * 1e3, flops / t * 1e-9, t / (flops / peak));
        be->free(be, x), be->free(be, o);
    }
    eopt_ws_free(&ws);
    be->free(be, a), be->free(be, b), be->free(be, c);
    eopt_backend_close(be);
    return 0;
}
