/* MOSO, Momentum One-Sided SOAP (NVIDIA-NeMo/Emerging-Optimizers@a0e376b), soap-moso.md §1.2, §2, §4.
 *
 * Per parameter (m x n, s = min(m, n), left iff m <= n, t = k + 1):
 *   P <- P - wd lr P;   Mom <- lerp(Mom, G, 1 - mu)
 *   C <- lerp(C, X X^T, 1 - b^),  X = Mom (left) | Mom^T,  b^ always bias-corrected
 *   refresh every step: sort Q by approx(C, Q) (stable, permuting exp_avg_sq), then
 *     Q' = eigh(C) at k = 0, else householder_qr(C Q_sorted).Q; exp_avg rotated into Q'
 *   U = Q' Adam(Q'^T Mom) (left) | Adam(Mom Q') Q'^T;   P <- P - lr clip(U)
 */
#include "moso.h"

#include <math.h>
#include <stdio.h>

#include "adamw.h"
#include "eigenbasis.h"
#include "optim_util.h"

/* The constructor argument, read once (opt->impl). */
typedef struct {
    double max_rms;
} moso_cfg;

typedef struct {
    double lr, momentum, betas[2], shampoo_beta, eps, wd;
} moso_hp;

static const eopt_hparam moso_arg_keys[] = {
    EOPT_HP_F("max_update_rms", 0.0, EOPT_AT(moso_cfg, max_rms)),
    EOPT_HP_END,
};

static const eopt_hparam moso_group_keys[] = {
    EOPT_HP_F("lr", 3e-4, EOPT_AT(moso_hp, lr)),
    EOPT_HP_F("momentum", 0.95, EOPT_AT(moso_hp, momentum)),
    EOPT_HP_F2("betas", 0.9, 0.95, EOPT_AT(moso_hp, betas)),
    EOPT_HP_F("shampoo_beta", 0.95, EOPT_AT(moso_hp, shampoo_beta)),
    EOPT_HP_F("eps", 1e-8, EOPT_AT(moso_hp, eps)),
    EOPT_HP_F("weight_decay", 0.01, EOPT_AT(moso_hp, wd)),
    EOPT_HP_END,
};

static eopt_status moso_group(const eopt_optimizer *opt, int g, void *hp)
{
    char what[48];
    snprintf(what, sizeof what, "MOSO param group %d", g);
    const eopt_dict *d = &opt->groups[g].hp;
    moso_hp *h = hp;
    EOPT_TRY(eopt_hparams_read(moso_group_keys, d, what, h));
    char v[32];
    if (h->shampoo_beta == 1.0) /* (1 - 1) / (1 - 1): upstream ZeroDivisionError at the first step */
        return eopt_fail(EOPT_ERR_ARG,
                         "%s: shampoo_beta = %s divides by zero in MOSO's bias-corrected covariance EMA "
                         "(1 - shampoo_beta^t = 0; upstream fails with ZeroDivisionError: float division by zero)",
                         what, eopt_value_repr(eopt_dict_get(d, "shampoo_beta"), v, sizeof v));
    return EOPT_OK;
}

/* _init_group: a stepped parameter is 2-D float32. */
static eopt_status moso_check(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    return opt->params[i].grad ? eopt_param_check_2d(opt->cls->name, "tensors", &opt->params[i]) : EOPT_OK;
}

static eopt_status moso_init_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    const int64_t m = w->shape[0], n = w->shape[1], s = m < n ? m : n;
    const int64_t mn[2] = {m, n}, ss[2] = {s, s};
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "step", EOPT_I64, 0, NULL, 1));
    EOPT_TRY(eopt_state_add(opt, i, "momentum_buffer", EOPT_F32, 2, mn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg", EOPT_F32, 2, mn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg_sq", EOPT_F32, 2, mn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "M", EOPT_F32, 2, ss, 0));
    EOPT_TRY(eopt_state_add(opt, i, "Q_M", EOPT_F32, 2, ss, 0));
    eopt_ew_run(opt->be, EOPT_EW(soap_eye, s * s, .y = eopt_f32(eopt_state_get(opt, i, "Q_M")), .cols = s));
    return EOPT_OK;
}

/* One parameter's step (§4). */
static eopt_status moso_param(eopt_optimizer *opt, eopt_workspace *ws, double max_rms, const moso_hp *h, int i)
{
    eopt_backend *be = opt->be;
    const eopt_tensor *w = opt->params[i].w;
    const int m = (int)w->shape[0], n = (int)w->shape[1], left = m <= n, s = left ? m : n;
    const int64_t mn = (int64_t)m * n, ss = (int64_t)s * s;
    int64_t *step = (int64_t *)eopt_state_get(opt, i, "step")->data;
    float *mom = eopt_f32(eopt_state_get(opt, i, "momentum_buffer"));
    float *exp_avg = eopt_f32(eopt_state_get(opt, i, "exp_avg"));
    float *exp_avg_sq = eopt_f32(eopt_state_get(opt, i, "exp_avg_sq"));
    float *C = eopt_f32(eopt_state_get(opt, i, "M")), *Q = eopt_f32(eopt_state_get(opt, i, "Q_M"));
    float *P = eopt_f32(w);
    const float *G = eopt_f32(opt->params[i].grad);
    const int64_t k = *step, t = k + 1;

    float *X = eopt_ws_floats(ws, ss), *KQ = eopt_ws_floats(ws, ss), *Qs = eopt_ws_floats(ws, ss);
    float *KQs = eopt_ws_floats(ws, ss), *Qn = eopt_ws_floats(ws, ss), *lam = eopt_ws_floats(ws, s);
    float *E = eopt_ws_floats(ws, mn), *Vs = eopt_ws_floats(ws, mn), *U = eopt_ws_floats(ws, mn);
    float *ms = eopt_ws_floats(ws, 1);
    if (!X || !KQ || !Qs || !KQs || !Qn || !lam || !E || !Vs || !U || !ms)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the MOSO step (%dx%d)", m, n);

    /* Muon EMA momentum; decoupled decay comes first upstream and is applied with the update
     * below (nothing in between reads P) */
    eopt_ew_run(be, EOPT_EW(lerp, mn, .y = mom, .a = mom, .b = G, .w = (float)(1.0 - h->momentum)));
    /* one-sided covariance of the momentum, always bias-corrected (weight 1 at t = 1) */
    const double bs = 1.0 - (1.0 - h->shampoo_beta) / (1.0 - pow(h->shampoo_beta, (double)t));
    be->syrk(be, EOPT_PREC_FP32, !left, s, left ? n : m, 1.0f, mom, n, 0.0f, X, s);
    eopt_ew_run(be, EOPT_EW(lerp, ss, .y = C, .a = C, .b = X, .w = (float)(1.0 - bs)));

    /* refresh: first moment out with the old basis, stable sort (permuting exp_avg_sq along the
     * preconditioned axis), eigh at k = 0 (sorted basis discarded) or one QR power iteration */
    eopt_eig_project(be, left, 0, m, n, Q, exp_avg, E);
    eopt_eig_approx(be, s, C, Q, KQ, lam);
    EOPT_TRY(eopt_eig_sort(be, ws, s, lam, Q, KQ, k ? Qs : NULL, k ? KQs : NULL, left ? EOPT_AXIS_ROWS : EOPT_AXIS_COLS,
                           m, n, exp_avg_sq, Vs));
    if (k == 0)
        EOPT_TRY(eopt_eig_eigh(be, ws, EOPT_EIGH_MOSO, s, C, Qn, NULL));
    else
        EOPT_TRY(eopt_eig_power_qr(be, s, C, Qs, KQs, 1, Qn));
    be->copy(be, Q, Qn, (size_t)ss * sizeof(float));
    be->copy(be, exp_avg_sq, Vs, (size_t)mn * sizeof(float));
    eopt_eig_project(be, left, 1, m, n, Q, E, exp_avg);

    /* U = Q' Adam(Q'^T Mom) (left) | Adam(Mom Q') Q'^T */
    eopt_eig_project(be, left, 1, m, n, Q, mom, E);
    eopt_adam_update(be, mn, E, exp_avg, exp_avg_sq, h->betas, h->eps, 1, 0, t, E);
    eopt_eig_project(be, left, 0, m, n, Q, E, U);
    eopt_soap_apply(be, m, n, P, U, h->wd != 0.0 ? -h->wd * h->lr : 0.0, max_rms, h->lr, ms);
    *step = t;
    return EOPT_OK;
}

/* The workspace of moso_param: its temporaries, the sort and MOSO's eigh. */
static size_t moso_workspace_bytes(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1], s = m <= n ? m : n;
    return 5 * eopt_ws_floats_size((int64_t)s * s) + eopt_ws_floats_size(s) + 3 * eopt_ws_floats_size((int64_t)m * n) +
           eopt_ws_floats_size(1) + eopt_eig_sort_workspace_bytes(s) + eopt_eig_eigh_workspace_bytes(EOPT_EIGH_MOSO, s);
}

/* The one-sided factor: the smaller side. */
static int moso_solver_size(const eopt_optimizer *opt, int i)
{
    const int64_t *shape = opt->params[i].w->shape;
    return (int)(shape[0] < shape[1] ? shape[0] : shape[1]);
}

/* Diagnostics (optimizer.h): the drift of the basis Q_M and the condition number of the factor M,
 * named by the side it preconditions (cond_L when m <= n, else cond_R). */
static eopt_status moso_diagnostics(eopt_optimizer *opt, int i)
{
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1], s = m <= n ? m : n;
    double drift, cond;
    EOPT_TRY(eopt_eig_drift(opt->be, &opt->ws, s, eopt_f32(eopt_state_get(opt, i, "Q_M")), &drift));
    EOPT_TRY(eopt_eig_condition(opt->be, &opt->ws, s, eopt_f32(eopt_state_get(opt, i, "M")), &cond));
    eopt_diag_note(opt, i, "q_drift", drift);
    eopt_diag_note(opt, i, m <= n ? "cond_L" : "cond_R", cond);
    return EOPT_OK;
}

static eopt_status moso_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    return moso_param(opt, ws, ((const moso_cfg *)opt->impl)->max_rms, hp, i);
}

const eopt_optimizer_class eopt_class_moso = {
    .id = "MOSO",
    .name = "MOSO",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@a0e376b",
    .source_match = NULL,
    .arg_keys = moso_arg_keys,
    .group_keys = moso_group_keys,
    .impl_size = sizeof(moso_cfg),
    .hp_size = sizeof(moso_hp),
    .init_state = moso_init_state,
    .read_group = moso_group,
    .check_param = moso_check,
    .update = moso_update,
    .workspace_bytes = moso_workspace_bytes,
    .solver_size = moso_solver_size,
    .diagnostics = moso_diagnostics,
    .schedulable = (const char *const[]){"lr", "momentum", "shampoo_beta", "eps", "weight_decay", NULL},
    .cost = EOPT_COST_EIGENBASIS,
};
