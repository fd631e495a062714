/* Measurements behind `eopt bench` (cmd/bench.c prints them): an optimizer's step, Newton-Schulz,
 * a training step split into its parts, and checkpoint save/load. Every figure is measured in
 * the same run as its reference (a float32 sgemm of the same flops, a plain copy of the same
 * bytes), so that ratios stay meaningful on a busy or unknown machine.
 *
 * It lives in train/ because the training bench composes what train/ composes (config, data,
 * model, optimizers); it never prints and returns eopt_status like the rest of the library.
 *
 * Flops are counted, not estimated per class: the measured code runs on a counting backend that
 * forwards every operation to the real one and adds up what runs (what an optimizer executes
 * for its configuration: Newton-Schulz through syrk, SOAP's eigh or QR refreshes only on the
 * steps that refresh, dion's low-rank products, ...). Per operation:
 *   gemm  2 m n k (per batch matrix)
 *   syrk  n (n + 1) k           (one triangle, as BLAS computes it; the mirror is a copy)
 *   syevd 14/3 n^3              (LAPACK ssyevd with vectors: tridiagonal reduction 4/3 n^3,
 *                                divide and conquer <= 4/3 n^3, back-transformation 2 n^3;
 *                                an upper estimate: deflation makes the middle term smaller)
 *   qr    4 m n^2 - 4/3 n^3     (geqrf 2 m n^2 - 2/3 n^3, then orgqr for the explicit Q as much)
 *   ew    1 per element, reduce 1 per element read (a lower bound: each kernel does a few)
 * What that gives per class and step, for an m x n parameter (r = min, c = max, s NS steps):
 *   Muon, AdaptiveMuon, Muown, dion.Muon, NorMuon: s Newton-Schulz iterations of
 *     r(r+1)c + r(r+1)r + 2 r^2 c (A = X X^T and A A by syrk, B X by gemm), plus element-wise
 *     passes (256x512, s = 5: 588.7 MFLOP counted against 671 for three plain GEMMs);
 *   Dion2, NorDion2: the same on the selected rows / columns only (fraction of the matrix);
 *   SOAP: two factor updates m(m+1)n + n(n+1)m, four two-sided basis changes 4 (2 m^2 n + 2 m n^2),
 *     and every precondition_frequency steps a refresh (eigh 14/3 (m^3 + n^3) on the first,
 *     QR power iteration 2 (m^3 + n^3) + 4/3 (m^3 + n^3) + sorting products after);
 *   MOSO: one-sided covariance s(s+1)n, four one-sided basis changes 4 (2 s^2 n) and its refresh;
 *   AdamW: element-wise only (memory bound: its ratio to sgemm is large by nature).
 * `eopt bench optimizer` prints the counted figure with its split by operation kind. */
#ifndef EOPT_BENCH_H
#define EOPT_BENCH_H

#include "config.h"

/* Flops by operation kind (see above). */
typedef struct {
    double gemm, syrk, syevd, qr, elementwise;
} eopt_flops;

double eopt_flops_total(const eopt_flops *f);

/* A backend that runs every operation of `inner` and counts its flops into `flops`. Hand
 * &c->be to the measured code; it shares inner's context and sticky status lives in c->be. */
typedef struct {
    eopt_backend be;
    const eopt_backend *inner;
    eopt_flops flops;
} eopt_counting_backend;

void eopt_counting_backend_init(eopt_counting_backend *c, const eopt_backend *inner);

/* Median, min and max of n timings (seconds). */
typedef struct {
    double median, min, max;
    int n;
} eopt_bench_times;

void eopt_bench_summarize(const double *seconds, int n, eopt_bench_times *out);

/* One measured operation against the sgemm of its flops. */
typedef struct {
    eopt_bench_times time; /* of one call (step), after the warm-up */
    eopt_flops flops;      /* per call: the mean over the timed calls */
    double sgemm_s;        /* seconds of a float32 sgemm with the same flops, in the same run */
} eopt_bench_result;

/* Time of a float32 sgemm with `flops` flops: the median of 3 square products of about that
 * size (N^3 ~ flops / 2, N capped at 2048; the time is scaled to the exact count). */
eopt_status eopt_bench_sgemm(eopt_backend *be, double flops, double *seconds);

/* The step of class `cls` (default arguments plus `args`, NULL for none) on one rows x cols
 * float32 parameter with fresh N(0, 1) gradients every step (drawn outside the timing):
 * `warmup` untimed steps (state creation, workspace sizing), then `steps` timed ones. */
eopt_status eopt_bench_optimizer(eopt_backend *be, const char *cls, const eopt_dict *args, int rows, int cols,
                                 int warmup, int steps, eopt_bench_result *r);

/* The same with n parameters of the given shapes in one param group, gradients for all. */
eopt_status eopt_bench_optimizer_params(eopt_backend *be, const char *cls, const eopt_dict *args, int n,
                                        const int (*shapes)[2], int warmup, int steps, eopt_bench_result *r);
/* The weight matrices of a named model into shapes (at most max), in its parameter order; the
 * count, 0 for an unknown name. "gpt2-small-matrices": the 48 matrices of GPT-2 small's 12 blocks
 * (attention 2304x768 and 768x768, MLP 3072x768 and 768x3072, torch's (out, in) layout). */
int eopt_bench_model_shapes(const char *name, int (*shapes)[2], int max);

/* eopt_ns_orthogonalize with NVIDIA's coefficient set `coefficients` and `iters` iterations on
 * a rows x cols N(0, 1) matrix. */
eopt_status eopt_bench_ns(eopt_backend *be, const char *coefficients, int iters, int rows, int cols, int warmup,
                          int steps, eopt_bench_result *r);

#define EOPT_BENCH_PARTS (3 + EOPT_CFG_MAX_OPTS)

/* A training step split into its parts: "data" (batch sampling and upload), "forward",
 * "backward", then one part per optimizer (named as in the config). The backward time is a
 * forward+backward pass minus a forward-only pass on the same batch, both timed every
 * micro-batch (the forward-only pass is extra work the bench adds and does not count in the
 * step; on a busy machine one step's difference can come out negative: read the median).
 * Gradient norms, schedules, evaluation and checkpoints are left out. */
typedef struct {
    int nparts;
    char name[EOPT_BENCH_PARTS][EOPT_NAME_MAX];
    eopt_bench_times part[EOPT_BENCH_PARTS]; /* per step */
    double share[EOPT_BENCH_PARTS];          /* of the summed step time, 0..1 */
    eopt_bench_times step;                   /* the sum of the parts, per step */
    double items_per_s;                      /* tokens (GPT) or samples (MLP) over the timed steps */
    int gpt;
} eopt_bench_train_result;

/* Builds the config's backend, data, model and optimizers as `eopt train` does, runs `warmup`
 * untimed steps and `steps` timed ones (each optimizer at its base lr: no schedules). */
eopt_status eopt_bench_train(const eopt_config *cfg, int warmup, int steps, eopt_bench_train_result *r);

/* Checkpoint save and load of `nmat` rows x cols float32 weights with torch-AdamW state
 * (3 nmat matrices in all) in `dir`, beside a plain copy of the saved file in the same run.
 * save: eopt_checkpoint_save (tmp file, fsync, rename), against copy_sync (cp, then fsync);
 * open: guard and read (of the copy, which this process did not write: the guard runs, as for
 * a resume); load: open + eopt_checkpoint_apply to the model and optimizer, against copy (as
 * cp: copy_file_range, page cache to page cache). */
typedef struct {
    double mib, save_s, copy_s, copy_sync_s, open_s, load_s;
    double save_cpu_s, copy_cpu_s, load_cpu_s; /* CPU time of this thread and the guard */
} eopt_bench_checkpoint_result;

eopt_status eopt_bench_checkpoint(eopt_backend *be, const char *dir, int nmat, int rows, int cols,
                                  eopt_bench_checkpoint_result *r);

#endif
