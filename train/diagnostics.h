/* Training diagnostics (docs/metrics.md): what a stability study watches besides the loss.
 *
 * On a diagnostic step (every log.diagnostics_interval steps, and on every loss spike):
 *   per weight matrix W and its last update dW = W_t - W_{t-1}: the spectral norm of each by
 *   power iteration (warm-started from the vector of the previous diagnostic step), and the
 *   singular values of dW from the eigenvalues of its Gram (largest, smallest nonzero,
 *   Frobenius, nuclear, effective rank); the optimizers' own per-parameter scalars
 *   (optimizer.h: NS residual, basis drift, factor conditions, fallbacks); the largest
 *   attention logit per layer (model.h).
 * Every step: the loss spike detector, a running z-score over the last `window` losses. */
#ifndef EOPT_TRAIN_DIAGNOSTICS_H
#define EOPT_TRAIN_DIAGNOSTICS_H

#include <stdio.h>

#include "../models/model.h"
#include "../optimizers/optimizer.h"

/* ---- linear algebra ---- */

/* Singular values s of a matrix (the eigenvalues of its Gram, clamped at 0): the largest, the
 * smallest nonzero (s > s_max sqrt(r eps32), what a float32 Gram resolves), ||.||_F, the nuclear
 * norm sum s, and the effective rank exp(H(p)), p = s / sum s (Roy & Vetterli). NaN where
 * undefined (a zero matrix has no smallest nonzero value nor effective rank). */
typedef struct {
    double max, min, fro, nuc, erank;
} eopt_sv_summary;

/* The summary of A (m x n, device) from the r x r Gram (r = min(m, n); syrk) and the backend's
 * syevd. Scratch: gram (r x r) and w (r) on the device, host (r). A matrix the solver refuses
 * (non-finite) gives NaN everywhere, not an error. */
eopt_status eopt_sv_summary_of(eopt_backend *be, int m, int n, const float *A, float *gram, float *w, float *host,
                               eopt_sv_summary *out);

/* Spectral norm of A (m x n, device) by `iters` power iterations u = A v / |A v|,
 * v = A^T u / |A^T u|, sigma = |A^T u|, from v (n, device, nonzero) which is left at the last
 * iterate (the warm start of the next call). Scratch: u (m) and norm (1) on the device. */
eopt_status eopt_power_sn(eopt_backend *be, int m, int n, const float *A, float *v, float *u, float *norm, int iters,
                          double *sigma);

/* ---- the per-run diagnostics ---- */

#define EOPT_POWER_ITERS_COLD 30 /* from the random start */
#define EOPT_POWER_ITERS_WARM 5  /* from the previous diagnostic step's vector */

typedef struct {
    int index;                  /* model parameter */
    int m, n;                   /* its matrix shape (2-D weights only) */
    float *v_w, *v_u;           /* device [n]: the power iteration's vectors for W and dW */
    int warm_w, warm_u;         /* the vectors hold a previous iterate */
    double weight_sn, update_sn;
    eopt_sv_summary update_sv;
} eopt_diag_matrix;

typedef struct {
    eopt_backend *be;
    uint64_t seed;              /* the start vectors: Philox stream of the run seed */
    int nmat, max_m;
    eopt_diag_matrix *mat;      /* the model's 2-D weights; max_m: their most rows */
    float *scratch, *host;      /* device: u, norm, Gram, eigenvalues; host: eigenvalues */
    int nparams;
    eopt_diag_values *notes;    /* [model nparams]: the optimizers' scalars of the last diagnostic step */
    int nlayers;
    float *attn;                /* [n_layer] host: the largest attention logit per layer */
} eopt_diagnostics;

eopt_status eopt_diagnostics_create(eopt_model *m, uint64_t seed, eopt_diagnostics *d);
void eopt_diagnostics_free(eopt_diagnostics *d);
/* After a step whose optimizers ran between eopt_optimizer_diag_begin and _end: every weight's
 * and update's numbers (update[i]: the step's change of model parameter i), the optimizers'
 * scalars (model_index[o][k]: the model parameter of optimizer o's parameter k) and the
 * attention logits of the step's last forward. */
eopt_status eopt_diagnostics_collect(eopt_diagnostics *d, eopt_model *m, const eopt_tensor *update, int nopt,
                                     eopt_optimizer *const *opt, int *const *model_index);
/* The diagnostics line of the metrics file (docs/metrics.md), newline included. */
void eopt_diagnostics_write(const eopt_diagnostics *d, const eopt_model *m, int64_t step, FILE *f);

/* ---- loss spikes ---- */

/* A spike: loss x with z = (x - mean) / std > threshold over the last `window` accepted losses
 * (std with n - 1). Judged only once the window is full (warm-up); a spike and a non-finite
 * loss never enter the window, so one outlier does not mask the next. threshold 0: off. */
typedef struct {
    int window;
    double threshold;
    int count, head;  /* values held; the slot of the next one */
    double *buf;      /* [window] ring */
    int64_t spikes;   /* fired so far in the run (kept across resumes by the checkpoint) */
} eopt_spike_detector;

typedef struct {
    double z, mean, std;
} eopt_spike;

eopt_status eopt_spike_init(eopt_spike_detector *s, int window, double threshold);
void eopt_spike_free(eopt_spike_detector *s);
/* Judges `loss` (then adds it unless it is a spike or non-finite); 1 when it is a spike. */
int eopt_spike_check(eopt_spike_detector *s, double loss, eopt_spike *out);
/* The window, oldest first, into out (room for s->window values); returns how many. */
int eopt_spike_values(const eopt_spike_detector *s, double *out);
/* Refills the window from n values, oldest first (a resume); only the last `window` count. */
void eopt_spike_restore(eopt_spike_detector *s, const double *v, int n);

#endif
