/* SOAP and MOSO step time against a float32 sgemm of the same flop count, measured in the same run.
 *
 * SOAP on m x n = 1024 x 4096, refreshing every step on the QR path (adam_warmup_steps = -1 makes
 * even the first refresh a QR one, §3.4). Flops of one step, counting GEMM as 2 m n k, syrk as
 * n^2 k and a square Householder QR (geqrf + orgqr) as 8/3 d^3:
 *   factors m^2 n + m n^2;  four two-sided basis changes 4 (2 m^2 n + 2 m n^2)
 *   (exp_avg out and in, gradient in, update out);  K Q for the sort 2 m^3 + 2 n^3;  QR 8/3 (m^3 + n^3).
 * MOSO on 1024 x 1024 (left, s = m) after its k = 0 eigh step: covariance m^2 n; four one-sided
 * basis changes 4 (2 m^2 n); C Q 2 m^3; QR 8/3 m^3.
 * The reference is one square sgemm with 2 N^3 ~ flops (its time scaled to the exact count).
 * usage: bench_soap [device] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eopt.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Time of one square sgemm with about `flops` flops, scaled to exactly `flops`. */
static double sgemm_time(eopt_backend *be, double flops)
{
    const int N = ((int)cbrt(flops / 2) + 63) / 64 * 64;
    float *a = be->alloc(be, sizeof(float) * N * N), *b = be->alloc(be, sizeof(float) * N * N),
          *c = be->alloc(be, sizeof(float) * N * N);
    if (!a || !b || !c) {
        fprintf(stderr, "bench_soap: out of memory for the %d^3 sgemm\n", N);
        exit(1);
    }
    be->random(be, EOPT_RAND_NORMAL, 1, 0, (int64_t)N * N, a);
    be->random(be, EOPT_RAND_NORMAL, 2, 0, (int64_t)N * N, b);
    be->gemm(be, EOPT_PREC_FP32, 0, 0, N, N, N, 1, a, N, 0, b, N, 0, 0, c, N, 0, 1); /* warm-up */
    be->sync(be);
    double t0 = now();
    be->gemm(be, EOPT_PREC_FP32, 0, 0, N, N, N, 1, a, N, 0, b, N, 0, 0, c, N, 0, 1);
    be->sync(be);
    double dt = now() - t0;
    be->free(be, a), be->free(be, b), be->free(be, c);
    return dt * flops / (2.0 * N * N * N);
}

/* Time of the second step of `cls` on one m x n parameter (the first fills the workspace). */
static double step_time(eopt_backend *be, const char *cls, const eopt_dict *args, int m, int n)
{
    int64_t sh[2] = {m, n};
    eopt_tensor w, g;
    if (eopt_tensor_alloc(&w, be, EOPT_F32, 2, sh) || eopt_tensor_alloc(&g, be, EOPT_F32, 2, sh)) {
        fprintf(stderr, "bench_soap: %s\n", eopt_last_error());
        exit(1);
    }
    be->random(be, EOPT_RAND_NORMAL, 3, 0, w.numel, eopt_f32(&w));
    eopt_param p = {.name = "w", .w = &w, .grad = &g};
    eopt_dict hp = {0};
    eopt_dict_set(&hp, "lr", eopt_float(1e-3));
    int one = 1;
    eopt_optimizer *opt;
    if (eopt_optimizer_create(cls, be, args, 1, &hp, &one, &p, 1, &opt) != EOPT_OK) {
        fprintf(stderr, "bench_soap: %s\n", eopt_last_error());
        exit(1);
    }
    double dt = 0;
    for (int s = 0; s < 2; s++) {
        be->random(be, EOPT_RAND_NORMAL, 10 + s, 0, g.numel, eopt_f32(&g));
        be->sync(be);
        double t0 = now();
        if (eopt_optimizer_step(opt) != EOPT_OK) {
            fprintf(stderr, "bench_soap: %s\n", eopt_last_error());
            exit(1);
        }
        be->sync(be);
        dt = now() - t0;
    }
    eopt_optimizer_free(opt);
    eopt_tensor_free(&w), eopt_tensor_free(&g);
    return dt;
}

static void report(const char *what, double flops, double t_step, double t_gemm)
{
    printf("%-44s %7.1f GFLOP  step %8.3f s  sgemm(same flops) %8.3f s  ratio %.2f\n", what, flops * 1e-9, t_step,
           t_gemm, t_step / t_gemm);
}

int main(int argc, char **argv)
{
    eopt_backend *be;
    if (eopt_backend_open(argc > 1 ? argv[1] : NULL, 0, &be) != EOPT_OK) {
        fprintf(stderr, "bench_soap: %s\n", eopt_last_error());
        return 1;
    }
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    printf("backend: %s\n", desc);

    double m = 1024, n = 4096;
    double f_soap = m * m * n + m * n * n + 4 * (2 * m * m * n + 2 * m * n * n) + 2 * (m * m * m + n * n * n) +
                    8.0 / 3 * (m * m * m + n * n * n);
    eopt_dict args = {0};
    eopt_dict_set(&args, "adam_warmup_steps", eopt_int(-1));
    double ts = step_time(be, "SOAP", &args, (int)m, (int)n);
    report("SOAP step 1024x4096 (QR refresh every step)", f_soap, ts, sgemm_time(be, f_soap));

    m = n = 1024;
    double f_moso = m * m * n + 4 * (2 * m * m * n) + 2 * m * m * m + 8.0 / 3 * m * m * m;
    double tm = step_time(be, "MOSO", NULL, (int)m, (int)n);
    report("MOSO step 1024x1024 (QR refresh)", f_moso, tm, sgemm_time(be, f_moso));
    eopt_backend_close(be);
    return 0;
}
