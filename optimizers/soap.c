/* SOAP (NVIDIA-NeMo/Emerging-Optimizers@1effa02, v0.2.0), soap-moso.md §1.1, §2, §3.
 *
 * Per parameter (m x n, gradient G, 0-based counter k, t = k + 1, warm-up W):
 *   L <- lerp(L, G G^T, 1 - b^),  R <- lerp(R, G^T G, 1 - b^)       (or KL-Shampoo, §3.3)
 *   refresh Q_L, Q_R (eigh at k == W or with use_eigh, else sort + QR power iteration) and
 *   rotate exp_avg into the new bases (exp_avg_sq only permuted)       when k >= W, k % f == 0
 *   U = Q_L Adam(Q_L^T G Q_R) Q_R^T  (k >= W; plain Adam(G) during warm-up)
 *   P <- P - lr clip(U)            (weight decay decoupled / independent / l2 around it)
 */
#include "soap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "eigenbasis.h"
#include "optim_util.h"

enum { WD_DECOUPLED = 0, WD_INDEPENDENT, WD_L2 };

static const char *const wd_names[] = {"decoupled", "independent", "l2", NULL};

/* The constructor arguments, read once (opt->impl; correct_shampoo_beta_bias None =>
 * correct_bias). */
typedef struct {
    int wd_method, nesterov, correct_bias, correct_shampoo, use_eigh, adaptive, kl;
    int64_t freq, warmup, power_iter;
    double tol, max_rms;
} soap_cfg;

/* One param group's hyperparameters. */
typedef struct {
    double lr, betas[2], shampoo_beta, eps, wd;
} soap_hp;

/* Upstream raises a bad weight_decay_method at the first step with weight decay; eopt at
 * construction. The precision names are only stored (and checked to be strings): the fixtures'
 * "high" is IEEE float32 on the CPU, and eopt computes every product in float32 (soap-moso.md §0). */
static const eopt_hparam soap_arg_keys[] = {
    EOPT_HP_E("weight_decay_method", "decoupled", EOPT_AT(soap_cfg, wd_method), wd_names,
              "Invalid weight decay method: %s"),
    EOPT_HP_B("nesterov", 0, EOPT_AT(soap_cfg, nesterov)),
    EOPT_HP_I("precondition_frequency", 1, EOPT_AT(soap_cfg, freq)),
    EOPT_HP_I("adam_warmup_steps", 0, EOPT_AT(soap_cfg, warmup)),
    EOPT_HP_B("correct_bias", 1, EOPT_AT(soap_cfg, correct_bias)),
    EOPT_HP_S("fp32_matmul_prec", "high"),
    EOPT_HP_B("use_eigh", 0, EOPT_AT(soap_cfg, use_eigh)),
    EOPT_HP_S("qr_fp32_matmul_prec", "high"),
    EOPT_HP_B("use_adaptive_criteria", 0, EOPT_AT(soap_cfg, adaptive)),
    EOPT_HP_F("adaptive_update_tolerance", 1e-7, EOPT_AT(soap_cfg, tol)),
    EOPT_HP_I("power_iter_steps", 1, EOPT_AT(soap_cfg, power_iter)),
    EOPT_HP_F("max_update_rms", 0.0, EOPT_AT(soap_cfg, max_rms)),
    EOPT_HP_B("use_kl_shampoo", 0, EOPT_AT(soap_cfg, kl)),
    EOPT_HP_NONE("correct_shampoo_beta_bias", EOPT_HP_BOOL, EOPT_NONE_KEEP, EOPT_AT(soap_cfg, correct_shampoo)),
    EOPT_HP_END,
};

/* lr is required (no default; None keeps its place in torch's key order) */
static const eopt_hparam soap_group_keys[] = {
    EOPT_HP_NONE("lr", EOPT_HP_FLOAT, EOPT_NONE_REQUIRED, EOPT_AT(soap_hp, lr)),
    EOPT_HP_F2("betas", 0.9, 0.95, EOPT_AT(soap_hp, betas)),
    EOPT_HP_F("shampoo_beta", 0.95, EOPT_AT(soap_hp, shampoo_beta)),
    EOPT_HP_F("eps", 1e-8, EOPT_AT(soap_hp, eps)),
    EOPT_HP_F("weight_decay", 0.01, EOPT_AT(soap_hp, wd)),
    EOPT_HP_END,
};

static eopt_status soap_setup(eopt_optimizer *opt)
{
    soap_cfg *c = opt->impl;
    if (eopt_is_none(&opt->args, "correct_shampoo_beta_bias"))
        c->correct_shampoo = c->correct_bias;
    if (c->freq == 0) /* upstream: ZeroDivisionError at the first refresh check */
        return eopt_fail(EOPT_ERR_ARG, "SOAP: precondition_frequency must be nonzero, got 0 "
                                       "(upstream fails with ZeroDivisionError: integer division or modulo by zero)");
    return EOPT_OK;
}

static eopt_status soap_group(const eopt_optimizer *opt, int g, void *hp)
{
    char what[48];
    snprintf(what, sizeof what, "SOAP param group %d", g);
    const eopt_dict *d = &opt->groups[g].hp;
    soap_hp *h = hp;
    EOPT_TRY(eopt_hparams_read(soap_group_keys, d, what, h));
    char v[32];
    if (((const soap_cfg *)opt->impl)->correct_shampoo && h->shampoo_beta == 1.0) /* (1 - 1) / (1 - 1) */
        return eopt_fail(EOPT_ERR_ARG,
                         "%s: shampoo_beta = %s with bias correction divides by zero "
                         "(1 - shampoo_beta^t = 0; upstream fails with ZeroDivisionError: float division by zero)",
                         what, eopt_value_repr(eopt_dict_get(d, "shampoo_beta"), v, sizeof v));
    return EOPT_OK;
}

/* _init_group: a stepped parameter is 2-D float32. */
static eopt_status soap_check(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    return opt->params[i].grad ? eopt_param_check_2d(opt->cls->name, "tensors", &opt->params[i]) : EOPT_OK;
}

static eopt_status soap_init_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    const int64_t m = w->shape[0], n = w->shape[1];
    const int64_t mn[2] = {m, n}, mm[2] = {m, m}, nn[2] = {n, n};
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "step", EOPT_I64, 0, NULL, 1));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg", EOPT_F32, 2, mn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg_sq", EOPT_F32, 2, mn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "L", EOPT_F32, 2, mm, 0));
    EOPT_TRY(eopt_state_add(opt, i, "R", EOPT_F32, 2, nn, 0));
    EOPT_TRY(eopt_state_add(opt, i, "Q_L", EOPT_F32, 2, mm, 0));
    EOPT_TRY(eopt_state_add(opt, i, "Q_R", EOPT_F32, 2, nn, 0));
    eopt_backend *be = opt->be;
    eopt_ew_run(be, EOPT_EW(soap_eye, m * m, .y = eopt_f32(eopt_state_get(opt, i, "Q_L")), .cols = m));
    eopt_ew_run(be, EOPT_EW(soap_eye, n * n, .y = eopt_f32(eopt_state_get(opt, i, "Q_R")), .cols = n));
    return EOPT_OK;
}

/* The views of one parameter's state. */
typedef struct {
    int m, n;
    int64_t *step;
    float *exp_avg, *exp_avg_sq, *L, *R, *QL, *QR;
} soap_view;

static soap_view soap_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    return (soap_view){
        .m = (int)w->shape[0],
        .n = (int)w->shape[1],
        .step = (int64_t *)eopt_state_get(opt, i, "step")->data,
        .exp_avg = eopt_f32(eopt_state_get(opt, i, "exp_avg")),
        .exp_avg_sq = eopt_f32(eopt_state_get(opt, i, "exp_avg_sq")),
        .L = eopt_f32(eopt_state_get(opt, i, "L")),
        .R = eopt_f32(eopt_state_get(opt, i, "R")),
        .QL = eopt_f32(eopt_state_get(opt, i, "Q_L")),
        .QR = eopt_f32(eopt_state_get(opt, i, "Q_R")),
    };
}

/* KL-Shampoo (§3.3), from the old L, R, Q_L, Q_R:
 *   s_L = (1/m) max(approx(L, Q_L), eps)^-1,  C_L = Q_L diag(s_L) Q_L^T   (same for R with 1/n)
 *   L <- lerp(L, (G C_R) G^T, w),  R <- lerp(R, (G^T C_L) G, w) */
static eopt_status kl_factors(eopt_backend *be, eopt_workspace *ws, const soap_view *s, const float *G, double eps,
                              float w)
{
    const int m = s->m, n = s->n;
    float *CL = eopt_ws_floats(ws, (int64_t)m * m), *CR = eopt_ws_floats(ws, (int64_t)n * n);
    float *T = eopt_ws_floats(ws, (int64_t)m * n);
    float *UL = eopt_ws_floats(ws, (int64_t)m * m), *UR = eopt_ws_floats(ws, (int64_t)n * n);
    float *lam = eopt_ws_floats(ws, m > n ? m : n);
    if (!CL || !CR || !T || !UL || !UR || !lam)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the KL-Shampoo factor update (%dx%d)", m, n);
    const float *Ks[2] = {s->L, s->R}, *Qs[2] = {s->QL, s->QR};
    float *Cs[2] = {CL, CR};
    for (int side = 0; side < 2; side++) {
        const int d = side ? n : m;
        /* UL/UR serve as scratch for K Q and Q diag(s) before they receive the updates */
        float *scratch = side ? UR : UL;
        eopt_eig_approx(be, d, Ks[side], Qs[side], scratch, lam);
        eopt_ew_run(be, EOPT_EW(soap_kl_scale, d, .y = lam, .a = lam, .inv_dim = (float)(1.0 / d), .eps = (float)eps));
        eopt_ew_run(be, EOPT_EW(mul_col, (int64_t)d * d, .y = scratch, .a = Qs[side], .b = lam, .cols = d));
        be->gemm(be, EOPT_PREC_FP32, 0, 1, d, d, d, 1.0f, scratch, d, 0, Qs[side], d, 0, 0.0f, Cs[side], d, 0, 1);
    }
    /* L's increment through R's statistics: (G C_R) G^T */
    be->gemm(be, EOPT_PREC_FP32, 0, 0, m, n, n, 1.0f, G, n, 0, CR, n, 0, 0.0f, T, n, 0, 1);
    be->gemm(be, EOPT_PREC_FP32, 0, 1, m, m, n, 1.0f, T, n, 0, G, n, 0, 0.0f, UL, m, 0, 1);
    /* R's increment through L's: (G^T C_L) G, with T reused as n x m */
    be->gemm(be, EOPT_PREC_FP32, 1, 0, n, m, m, 1.0f, G, n, 0, CL, m, 0, 0.0f, T, m, 0, 1);
    be->gemm(be, EOPT_PREC_FP32, 0, 0, n, n, m, 1.0f, T, m, 0, G, n, 0, 0.0f, UR, n, 0, 1);
    eopt_ew_run(be, EOPT_EW(lerp, (int64_t)m * m, .y = s->L, .a = s->L, .b = UL, .w = w));
    eopt_ew_run(be, EOPT_EW(lerp, (int64_t)n * n, .y = s->R, .a = s->R, .b = UR, .w = w));
    return EOPT_OK;
}

/* Standard factors (§3.3): L <- lerp(L, G G^T, w), R <- lerp(R, G^T G, w). */
static eopt_status std_factors(eopt_backend *be, eopt_workspace *ws, const soap_view *s, const float *G, float w)
{
    const int m = s->m, n = s->n;
    float *X = eopt_ws_floats(ws, (int64_t)(m > n ? m : n) * (m > n ? m : n));
    if (!X)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the Kronecker factor update (%dx%d)", m, n);
    be->syrk(be, EOPT_PREC_FP32, 0, m, n, 1.0f, G, n, 0.0f, X, m);
    eopt_ew_run(be, EOPT_EW(lerp, (int64_t)m * m, .y = s->L, .a = s->L, .b = X, .w = w));
    be->syrk(be, EOPT_PREC_FP32, 1, n, m, 1.0f, G, n, 0.0f, X, n);
    eopt_ew_run(be, EOPT_EW(lerp, (int64_t)n * n, .y = s->R, .a = s->R, .b = X, .w = w));
    return EOPT_OK;
}

/* Writes a refreshed state tensor: plain copy, or (adaptive) keep the old value when both
 * factors met the criterion (decided on the device from `crit`). */
static void commit(eopt_backend *be, int64_t n, float *dst, const float *src, const float *crit, double tol)
{
    if (!crit)
        be->copy(be, dst, src, (size_t)n * sizeof(float));
    else
        eopt_ew_run(be, EOPT_EW(soap_keep_or_take, n, .y = dst, .a = src, .norms = crit, .tol = (float)tol));
}

/* One factor's new basis: eigh, or the QR path (sort by approx(K, Q) permuting V along `axis`
 * into Vs, then power_iter_steps QR power iterations). */
static eopt_status new_basis(eopt_backend *be, eopt_workspace *ws, const soap_cfg *c, int use_eigh, int d,
                             const float *K, const float *Q, const float *KQ, const float *lam, eopt_axis axis, int m,
                             int n, const float *V, float *Vs, float *Qn, int64_t *fallbacks)
{
    if (use_eigh)
        return eopt_eig_eigh(be, ws, EOPT_EIGH_SOAP, d, K, Qn, fallbacks);
    float *Qs = eopt_ws_floats(ws, (int64_t)d * d), *KQs = eopt_ws_floats(ws, (int64_t)d * d);
    if (!Qs || !KQs)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the QR refresh (%d)", d);
    EOPT_TRY(eopt_eig_sort(be, ws, d, lam, Q, KQ, Qs, KQs, axis, m, n, V, Vs));
    return eopt_eig_power_qr(be, d, K, Qs, KQs, (int)c->power_iter, Qn);
}

/* update_eigenbasis_and_exp_avgs (§3.6), optionally under the adaptive skip (§3.5):
 *   A = Q_L exp_avg Q_R^T (old bases);  new Q_L, Q_R;  exp_avg = Q_L'^T A Q_R'.
 * New values are built in the workspace and committed only once every solver call succeeded. */
static eopt_status refresh(eopt_backend *be, eopt_workspace *ws, const soap_cfg *c, const soap_view *s, int use_eigh,
                           int adaptive, int64_t *fallbacks)
{
    const int m = s->m, n = s->n;
    const int64_t mn = (int64_t)m * n, mm = (int64_t)m * m, nn = (int64_t)n * n;
    float *T = eopt_ws_floats(ws, mn), *A = eopt_ws_floats(ws, mn);
    float *V1 = eopt_ws_floats(ws, mn), *V2 = eopt_ws_floats(ws, mn);
    float *QLn = eopt_ws_floats(ws, mm), *KQL = eopt_ws_floats(ws, mm);
    float *QRn = eopt_ws_floats(ws, nn), *KQR = eopt_ws_floats(ws, nn);
    float *lamL = eopt_ws_floats(ws, m), *lamR = eopt_ws_floats(ws, n), *crit = eopt_ws_floats(ws, 4);
    if (!T || !A || !V1 || !V2 || !QLn || !KQL || !QRn || !KQR || !lamL || !lamR || !crit)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the eigenbasis refresh (%dx%d)", m, n);
    eopt_eig_project(be, 1, 0, m, n, s->QL, s->exp_avg, T);
    eopt_eig_project(be, 0, 0, m, n, s->QR, T, A);
    if (!use_eigh || adaptive) {
        eopt_eig_approx(be, m, s->L, s->QL, KQL, lamL);
        eopt_eig_approx(be, n, s->R, s->QR, KQR, lamR);
    }
    if (adaptive) { /* |K|_F and |approx(K, Q)|_2 per factor, compared on the device at commit */
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, m, s->L, NULL, m, 1.0f, &crit[0]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, 1, m, lamL, NULL, m, 1.0f, &crit[1]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, n, n, s->R, NULL, n, 1.0f, &crit[2]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, 1, n, lamR, NULL, n, 1.0f, &crit[3]);
    }
    /* the R permutation acts on the already row-permuted exp_avg_sq */
    EOPT_TRY(new_basis(be, ws, c, use_eigh, m, s->L, s->QL, KQL, lamL, EOPT_AXIS_ROWS, m, n, s->exp_avg_sq, V1, QLn,
                       fallbacks));
    EOPT_TRY(new_basis(be, ws, c, use_eigh, n, s->R, s->QR, KQR, lamR, EOPT_AXIS_COLS, m, n, V1, V2, QRn, fallbacks));
    eopt_eig_project(be, 1, 1, m, n, QLn, A, T);
    eopt_eig_project(be, 0, 1, m, n, QRn, T, A);
    const float *skip = adaptive ? crit : NULL;
    commit(be, mm, s->QL, QLn, skip, c->tol);
    commit(be, nn, s->QR, QRn, skip, c->tol);
    commit(be, mn, s->exp_avg, A, skip, c->tol);
    if (!use_eigh) /* eigh keeps exp_avg_sq as it is (SOAP's approximation) */
        commit(be, mn, s->exp_avg_sq, V2, skip, c->tol);
    return EOPT_OK;
}

/* One parameter's step (§3.1). */
static eopt_status soap_param(eopt_optimizer *opt, eopt_workspace *ws, const soap_cfg *c, const soap_hp *h, int i)
{
    eopt_backend *be = opt->be;
    const soap_view s = soap_state(opt, i);
    const int m = s.m, n = s.n;
    const int64_t mn = (int64_t)m * n, k = *s.step, t = k + 1;
    float *P = eopt_f32(opt->params[i].w), *G = eopt_f32(opt->params[i].grad);
    double bs = h->shampoo_beta;
    if (c->correct_shampoo) /* bias-corrected EMA weight: exactly 1 at t = 1 */
        bs = 1.0 - (1.0 - bs) / (1.0 - pow(bs, (double)t));
    const float w = (float)(1.0 - bs);
    EOPT_TRY(c->kl ? kl_factors(be, ws, &s, G, h->eps, w) : std_factors(be, ws, &s, G, w));
    /* refresh on the absolute step index; Python's % makes a negative frequency act as |f| */
    if (k >= c->warmup && k % llabs(c->freq) == 0)
        EOPT_TRY(refresh(be, ws, c, &s, c->use_eigh || k == c->warmup, c->adaptive && k > c->warmup,
                         &opt->diag[i].fallbacks));
    if (h->wd != 0.0 && c->wd_method == WD_L2) /* g += wd P, into the caller's gradient as upstream */
        eopt_axpby(be, mn, 1.0f, G, (float)h->wd, P, G);
    float *U = eopt_ws_floats(ws, mn), *T = eopt_ws_floats(ws, mn), *ms = eopt_ws_floats(ws, 1);
    if (!U || !T || !ms)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the SOAP step (%dx%d)", m, n);
    const int precondition = k >= c->warmup;
    if (precondition) { /* g~ = Q_L^T G Q_R */
        eopt_eig_project(be, 1, 1, m, n, s.QL, G, T);
        eopt_eig_project(be, 0, 1, m, n, s.QR, T, U);
    }
    eopt_adam_update(be, mn, precondition ? U : G, s.exp_avg, s.exp_avg_sq, h->betas, h->eps, c->correct_bias,
                   c->nesterov, t, U);
    if (precondition) { /* U = Q_L U' Q_R^T */
        eopt_eig_project(be, 1, 0, m, n, s.QL, U, T);
        eopt_eig_project(be, 0, 0, m, n, s.QR, T, U);
    }
    double decay = 0.0;
    if (h->wd != 0.0 && c->wd_method == WD_DECOUPLED)
        decay = -h->wd * h->lr;
    else if (h->wd != 0.0 && c->wd_method == WD_INDEPENDENT)
        decay = -h->wd;
    eopt_soap_apply(be, m, n, P, U, decay, c->max_rms, h->lr, ms);
    *s.step = t;
    return EOPT_OK;
}

/* The workspace of soap_param: the factor update, a refresh (counted at every step: the bound
 * must not depend on the step) with either basis path, and the preconditioned update. */
static size_t soap_workspace_bytes(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    const soap_cfg *c = opt->impl;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1], mx = m > n ? m : n;
    const int64_t mn = (int64_t)m * n, mm = (int64_t)m * m, nn = (int64_t)n * n;
    const size_t factors = c->kl ? 2 * eopt_ws_floats_size(mm) + 2 * eopt_ws_floats_size(nn) + eopt_ws_floats_size(mn) +
                                       eopt_ws_floats_size(mx)
                                 : eopt_ws_floats_size((int64_t)mx * mx);
    size_t basis[2];
    for (int k = 0; k < 2; k++) {
        const int d = k ? n : m;
        const size_t eigh = eopt_eig_eigh_workspace_bytes(EOPT_EIGH_SOAP, d);
        const size_t qr = 2 * eopt_ws_floats_size((int64_t)d * d) + eopt_eig_sort_workspace_bytes(d);
        basis[k] = eigh > qr ? eigh : qr;
    }
    const size_t refresh = 4 * eopt_ws_floats_size(mn) + 2 * eopt_ws_floats_size(mm) + 2 * eopt_ws_floats_size(nn) +
                           eopt_ws_floats_size(m) + eopt_ws_floats_size(n) + eopt_ws_floats_size(4) + basis[0] + basis[1];
    return factors + refresh + 2 * eopt_ws_floats_size(mn) + eopt_ws_floats_size(1);
}

/* Diagnostics (optimizer.h): the drift of both bases (the larger), each factor's condition
 * number, and the eigh fallbacks taken. Within the step's workspace (refresh counts more). */
static eopt_status soap_diagnostics(eopt_optimizer *opt, int i)
{
    const soap_view s = soap_state(opt, i);
    double drift_l, drift_r, cond_l, cond_r;
    EOPT_TRY(eopt_eig_drift(opt->be, &opt->ws, s.m, s.QL, &drift_l));
    EOPT_TRY(eopt_eig_drift(opt->be, &opt->ws, s.n, s.QR, &drift_r));
    EOPT_TRY(eopt_eig_condition(opt->be, &opt->ws, s.m, s.L, &cond_l));
    EOPT_TRY(eopt_eig_condition(opt->be, &opt->ws, s.n, s.R, &cond_r));
    eopt_diag_note(opt, i, "q_drift", drift_l > drift_r ? drift_l : drift_r);
    eopt_diag_note(opt, i, "cond_L", cond_l);
    eopt_diag_note(opt, i, "cond_R", cond_r);
    eopt_diag_note(opt, i, "fallbacks", (double)opt->diag[i].fallbacks);
    return EOPT_OK;
}

/* Both factors are solved (eigh or QR): the larger side. */
static int soap_solver_size(const eopt_optimizer *opt, int i)
{
    const int64_t *shape = opt->params[i].w->shape;
    return (int)(shape[0] > shape[1] ? shape[0] : shape[1]);
}

static eopt_status soap_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    return soap_param(opt, ws, opt->impl, hp, i);
}

const eopt_optimizer_class eopt_class_soap = {
    .id = "SOAP",
    .name = "SOAP",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@1effa02 (v0.2.0)",
    .source_match = NULL,
    .arg_keys = soap_arg_keys,
    .group_keys = soap_group_keys,
    .impl_size = sizeof(soap_cfg),
    .hp_size = sizeof(soap_hp),
    .setup = soap_setup,
    .init_state = soap_init_state,
    .read_group = soap_group,
    .check_param = soap_check,
    .update = soap_update,
    .workspace_bytes = soap_workspace_bytes,
    .solver_size = soap_solver_size,
    .diagnostics = soap_diagnostics,
    .optional_state_keys = (const char *const[]){"eigvals_L", "eigvals_R", NULL},
    .schedulable = (const char *const[]){"lr", "shampoo_beta", "eps", "weight_decay", NULL},
    .cost = EOPT_COST_EIGENBASIS,
};
