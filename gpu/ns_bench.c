/* eopt-ns-bench: Newton-Schulz (quintic, 5 steps) on the GPU in float32 and bfloat16 against
 * cuBLAS products of the same precision and the same flops, timed in the same run (make gpu-check).
 *
 *   eopt-ns-bench N [N]...   one JSON row per size and precision:
 *   {"bench": "ns", "n": N, "prec": "fp32"|"bf16", "ns_s": median, "flops": counted,
 *    "gemm_s": the same flops as N x N x N products, "ratio": NS rate / GEMM rate}
 *
 * The NS flops are counted by the counting backend (train/bench.h) as they run; the reference is
 * the median of 10 N x N x N products at the same precision (bf16 operands, float32 accumulation for
 * bf16), scaled to the NS count. Each figure is the median of 10 calls after 2 warm-ups. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "eopt.h"
#include "optimizers/newton_schulz.h"
#include "train/bench.h"

#define WARMUP 2
#define RUNS 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Median seconds of RUNS products C = A B (N x N, precision prec) after WARMUP. */
static eopt_status time_gemm(eopt_backend *be, eopt_prec prec, int n, double *seconds)
{
    const size_t elems = (size_t)n * n, esz = prec == EOPT_PREC_BF16 ? 2 : 4;
    float *x = be->alloc(be, elems * sizeof(float));
    void *a = be->alloc(be, elems * esz), *b = be->alloc(be, elems * esz), *c = be->alloc(be, elems * esz);
    eopt_status st = x && a && b && c ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "ns-bench: out of memory (gemm %d)", n);
    double t[RUNS];
    for (int k = 0; st == EOPT_OK && k < 2; k++) { /* random operands: zeros run faster than real data */
        void *dst = k ? b : a;
        be->random(be, EOPT_RAND_NORMAL, 11 + (uint64_t)k, 0, (int64_t)elems, prec == EOPT_PREC_BF16 ? x : dst);
        if (prec == EOPT_PREC_BF16)
            be->to_bf16(be, (int64_t)elems, x, dst);
    }
    for (int k = 0; st == EOPT_OK && k < WARMUP + RUNS; k++) {
        st = eopt_backend_sync(be);
        double t0 = now();
        be->gemm(be, prec, 0, 0, n, n, n, 1.0f, a, n, 0, b, n, 0, 0.0f, c, n, 0, 1);
        if (st == EOPT_OK)
            st = eopt_backend_sync(be);
        if (k >= WARMUP)
            t[k - WARMUP] = now() - t0;
    }
    if (st == EOPT_OK) {
        eopt_bench_times s;
        eopt_bench_summarize(t, RUNS, &s);
        *seconds = s.median;
    }
    be->free(be, x), be->free(be, a), be->free(be, b), be->free(be, c);
    return st;
}

/* Median seconds and counted flops of one orthogonalisation of an N x N N(0, 1) matrix. */
static eopt_status time_ns(eopt_backend *be, eopt_prec prec, int n, double *seconds, double *flops)
{
    eopt_counting_backend cb;
    eopt_counting_backend_init(&cb, be);
    eopt_backend *cbe = &cb.be;
    eopt_ns_config cfg;
    EOPT_TRY(eopt_ns_emerging("quintic", 5, NULL, 0, &cfg));
    cfg.prec = prec;
    eopt_workspace ws;
    eopt_ws_init(&ws, cbe);
    const size_t bytes = (size_t)n * n * sizeof(float);
    float *x = cbe->alloc(cbe, bytes), *o = cbe->alloc(cbe, bytes);
    eopt_status st = x && o ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "ns-bench: out of memory (ns %d)", n);
    double t[RUNS];
    for (int k = 0; st == EOPT_OK && k < WARMUP + RUNS; k++) {
        cbe->random(cbe, EOPT_RAND_NORMAL, 100 + (uint64_t)k, 0, (int64_t)n * n, x);
        st = eopt_ws_reset(&ws);
        if (st == EOPT_OK)
            st = eopt_backend_sync(cbe);
        if (k == WARMUP)
            cb.flops = (eopt_flops){0};
        double t0 = now();
        if (st == EOPT_OK)
            st = eopt_ns_orthogonalize(cbe, &ws, &cfg, n, n, x, o);
        if (st == EOPT_OK)
            st = eopt_backend_sync(cbe);
        if (k >= WARMUP)
            t[k - WARMUP] = now() - t0;
    }
    if (st == EOPT_OK) {
        eopt_bench_times s;
        eopt_bench_summarize(t, RUNS, &s);
        *seconds = s.median;
        *flops = eopt_flops_total(&cb.flops) / RUNS;
    }
    cbe->free(cbe, x), cbe->free(cbe, o);
    eopt_ws_free(&ws);
    return st;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: eopt-ns-bench N [N]...\n");
        return 2;
    }
    eopt_backend *be;
    if (eopt_backend_open("cuda", 0, &be) != EOPT_OK) {
        fprintf(stderr, "eopt-ns-bench: %s\n", eopt_last_error());
        return 1;
    }
    int rc = 0;
    for (int a = 1; a < argc && rc == 0; a++) {
        const int n = atoi(argv[a]);
        for (int p = 0; p < 2 && rc == 0; p++) {
            const eopt_prec prec = p ? EOPT_PREC_BF16 : EOPT_PREC_FP32;
            double ns_s = 0, flops = 0, gemm_s = 0;
            if (time_ns(be, prec, n, &ns_s, &flops) != EOPT_OK || time_gemm(be, prec, n, &gemm_s) != EOPT_OK) {
                fprintf(stderr, "eopt-ns-bench: %d %s: %s\n", n, p ? "bf16" : "fp32", eopt_last_error());
                rc = 1;
                break;
            }
            const double gemm_flops = 2.0 * n * n * n, ref_s = gemm_s * flops / gemm_flops;
            printf("{\"bench\": \"ns\", \"n\": %d, \"prec\": \"%s\", \"ns_s\": %.6g, \"flops\": %.6g, \"gemm_s\": %.6g, "
                   "\"ns_tflops\": %.4g, \"gemm_tflops\": %.4g, \"ratio\": %.4f}\n",
                   n, p ? "bf16" : "fp32", ns_s, flops, ref_s, flops / ns_s * 1e-12, gemm_flops / gemm_s * 1e-12,
                   ref_s / ns_s);
            fflush(stdout);
        }
    }
    eopt_backend_close(be);
    return rc;
}
