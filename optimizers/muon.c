/* NVIDIA Muon and AdaptiveMuon (NVIDIA-NeMo/Emerging-Optimizers@b309e2f, v0.3.0), muon.md §1-4.
 *
 * Per 2-D parameter P (m x n) with gradient G, EMA momentum M, group lr, mu, wd:
 *   decay        P <- P (1 - lr wd) | P (1 - wd) | P (1 - wd lr^2)   or  G <- G + wd P  ("l2")
 *   momentum     M <- lerp(M, G, 1 - mu);   X = M, or X = lerp(G, M, mu) with Nesterov
 *   orthogonal   O = NS(X)                   (Newton-Schulz, normalised by max(||X||_F, 1e-7))
 *   AdaptiveMuon U' = adamuon: O / (sqrt(V) + eps),  V = lerp(V, O^2, 1 - b2)
 *                     normuon: N ||O||_F / max(||N||_F, eps),  N = O / sqrt(max(V, eps)),
 *                              V = lerp(V, mean of O^2 over the shorter side, 1 - b2)
 *                     namo:    O ||X||_F / (sqrt(V) + eps),  V = lerp(V, ||G||_F^2, 1 - b2)
 *   update       P <- P - lr ((U' s) extra),  s = get_muon_scale_factor(m, n, scale_mode)
 * The decay of P is folded into the final pass (it reads the pre-step P either way); the decay,
 * momentum and Nesterov blend share one pass. Upstream raises an unknown mode only at the first
 * step; eopt rejects it at construction, with upstream's message. */
#include "muon.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "optim_util.h"

enum { WD_DECOUPLED = 0, WD_INDEPENDENT, WD_L2, WD_PALM };
enum { M2_ADAMUON = 0, M2_NORMUON, M2_NAMO, M2_NONE };

static const char *const wd_names[] = {"decoupled", "independent", "l2", "palm", NULL};
static const char *const m2_names[] = {"adamuon", "normuon", "namo", NULL};
const char *const eopt_muon_scale_modes[] = {"shape_scaling", "spectral", "unit_rms_norm", NULL};

/* The constructor arguments, read once (opt->impl). */
typedef struct {
    int nesterov, wd_method, moment2, scale;
    const char *scale_mode; /* eopt_muon_scale_modes[scale] */
    double extra;
    eopt_ns_config ns;
} muon_cfg;

/* One param group's hyperparameters (beta2, eps: AdaptiveMuon only). */
typedef struct {
    double lr, momentum, wd, beta2, eps;
} muon_hp;

#define COMMON_KEYS                                                                                                \
    EOPT_HP_B("nesterov", 0, EOPT_AT(muon_cfg, nesterov)),                                                        \
        EOPT_HP_E("weight_decay_method", "decoupled", EOPT_AT(muon_cfg, wd_method), wd_names,                     \
                  "Invalid weight decay method: %s (argument weight_decay_method)"),                              \
        EOPT_MUON_NS_KEYS(muon_cfg)

static const eopt_hparam muon_arg_keys[] = {
    COMMON_KEYS,
    EOPT_HP_B("use_syrk", 0, EOPT_NOWHERE), /* stored; eopt uses syrk wherever it helps */
    EOPT_HP_END,
};

static const eopt_hparam adaptive_arg_keys[] = {
    COMMON_KEYS,
    EOPT_HP_E("moment2_method", "adamuon", EOPT_AT(muon_cfg, moment2), m2_names,
              "Invalid second moment method: %s (argument moment2_method)"),
    EOPT_HP_END,
};

static const eopt_hparam muon_group_keys[] = {
    EOPT_HP_FR("lr", 3e-4, EOPT_AT(muon_hp, lr)),
    EOPT_HP_FR("momentum", 0.95, EOPT_AT(muon_hp, momentum)),
    EOPT_HP_FR("weight_decay", 0.01, EOPT_AT(muon_hp, wd)),
    EOPT_HP_END,
};

/* lr, momentum, weight_decay are required (None keeps their place in torch's key order);
 * beta2 and eps are upstream's set-if-absent group keys */
static const eopt_hparam adaptive_group_keys[] = {
    EOPT_HP_NONE("lr", EOPT_HP_FLOAT, EOPT_NONE_REQUIRED, EOPT_AT(muon_hp, lr)),
    EOPT_HP_NONE("momentum", EOPT_HP_FLOAT, EOPT_NONE_REQUIRED, EOPT_AT(muon_hp, momentum)),
    EOPT_HP_NONE("weight_decay", EOPT_HP_FLOAT, EOPT_NONE_REQUIRED, EOPT_AT(muon_hp, wd)),
    EOPT_HP_FR("beta2", 0.95, EOPT_AT(muon_hp, beta2)),
    EOPT_HP_FR("eps", 1e-8, EOPT_AT(muon_hp, eps)),
    EOPT_HP_END,
};

static int is_adaptive(const eopt_optimizer *opt) { return opt->cls == &eopt_class_adaptive_muon; }

eopt_status eopt_muon_scale_factor(int64_t size_out, int64_t size_in, const char *scale_mode, double *out)
{
    const double m = (double)size_out, n = (double)size_in;
    if (strcmp(scale_mode, "shape_scaling") == 0)
        *out = sqrt(m / n > 1.0 ? m / n : 1.0);
    else if (strcmp(scale_mode, "spectral") == 0)
        *out = sqrt(m > n ? m : n);
    else if (strcmp(scale_mode, "unit_rms_norm") == 0)
        *out = sqrt(m / n);
    else
        return eopt_fail(EOPT_ERR_ARG, "Invalid mode for Muon update scale factor: %s (argument scale_mode)",
                         scale_mode);
    return EOPT_OK;
}

eopt_status eopt_muon_ns_config(const eopt_dict *args, const char *what, eopt_ns_config *out)
{
    const char *type, *prec;
    int64_t steps;
    EOPT_TRY(eopt_dict_str(args, what, "coefficient_type", &type));
    EOPT_TRY(eopt_dict_int(args, what, "num_ns_steps", &steps));
    EOPT_TRY(eopt_dict_str(args, what, "fp32_matmul_prec", &prec));
    if (steps < 1) /* before the int narrowing below */
        return eopt_fail(EOPT_ERR_ARG, "%s: num_ns_steps must be at least 1, got %lld", what, (long long)steps);
    if (steps > INT_MAX)
        return eopt_fail(EOPT_ERR_ARG, "%s: num_ns_steps = %lld does not fit an int", what, (long long)steps);
    /* eopt extension: coefficient_type "custom" takes custom_coefficient_sets, a flat list of
     * (a, b, c) triples (upstream's Muon cannot pass them; absent from upstream files). */
    const eopt_value *cv = eopt_dict_get(args, "custom_coefficient_sets");
    eopt_ns_triple custom[EOPT_FLOATS_MAX / 3];
    int ncustom = 0;
    if (cv && cv->kind == EOPT_VAL_FLOATS) {
        if (cv->nf % 3 != 0)
            return eopt_fail(EOPT_ERR_ARG, "%s: custom_coefficient_sets needs (a, b, c) triples, got %d numbers",
                             what, cv->nf);
        for (ncustom = 0; ncustom < cv->nf / 3; ncustom++)
            custom[ncustom] = (eopt_ns_triple){cv->fv[3 * ncustom], cv->fv[3 * ncustom + 1], cv->fv[3 * ncustom + 2]};
    } else if (cv && cv->kind != EOPT_VAL_NONE) {
        return eopt_fail(EOPT_ERR_ARG, "%s: custom_coefficient_sets must be a list of numbers", what);
    }
    eopt_status st = eopt_ns_emerging(type, (int)steps, ncustom ? custom : NULL, ncustom, out);
    if (st != EOPT_OK)
        return eopt_fail_context(st, "%s", what);
    if ((st = eopt_ns_precision(prec, &out->prec)) != EOPT_OK)
        return eopt_fail_context(st, "%s", what);
    return EOPT_OK;
}

/* The rest of the arguments (§3, §4.1): Newton-Schulz, and AdaptiveMuon's namo + l2 check,
 * before num_ns_steps as upstream. */
static eopt_status muon_setup(eopt_optimizer *opt)
{
    muon_cfg *c = opt->impl;
    const char *w = opt->cls->id;
    if (!is_adaptive(opt))
        c->moment2 = M2_NONE;
    if (c->moment2 == M2_NAMO && c->wd_method == WD_L2)
        return eopt_fail(EOPT_ERR_ARG, "%s: moment2_method=\"namo\" is incompatible with weight_decay_method=\"l2\"", w);
    c->scale_mode = eopt_muon_scale_modes[c->scale];
    return eopt_muon_ns_config(&opt->args, w, &c->ns);
}

static eopt_status muon_group(const eopt_optimizer *opt, int g, void *hp)
{
    char what[64];
    snprintf(what, sizeof what, "%s param group %d", opt->cls->name, g);
    return eopt_hparams_read(is_adaptive(opt) ? adaptive_group_keys : muon_group_keys, &opt->groups[g].hp, what, hp);
}

/* Python's tuple(shape): "(48, 16)", "(5,)". */
static const char *py_shape(const eopt_tensor *t, char *buf, size_t size)
{
    int off = snprintf(buf, size, "(");
    for (int k = 0; k < t->ndim && off < (int)size; k++)
        off += snprintf(buf + off, size - (size_t)off, k ? ", %lld" : "%lld", (long long)t->shape[k]);
    if (off < (int)size)
        snprintf(buf + off, size - (size_t)off, t->ndim == 1 ? ",)" : ")");
    return buf;
}

static eopt_status muon_init_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    char sh[96];
    const muon_cfg c = *(const muon_cfg *)opt->impl;
    if (c.moment2 == M2_NORMUON && w->ndim != 2)
        return eopt_fail(EOPT_ERR_SHAPE, "AdaptiveMuon only supports 2D parameters, got shape %s (parameter '%s')",
                         py_shape(w, sh, sizeof sh), opt->params[i].name);
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "momentum_buffer", EOPT_F32, w->ndim, w->shape, 0));
    if (c.moment2 == M2_ADAMUON)
        EOPT_TRY(eopt_state_add(opt, i, "moment2_buffer", EOPT_F32, w->ndim, w->shape, 0));
    if (c.moment2 == M2_NORMUON) { /* one statistic per row (m >= n) or per column */
        const int64_t m = w->shape[0], n = w->shape[1];
        const int64_t shape[2] = {m >= n ? m : 1, m >= n ? 1 : n};
        EOPT_TRY(eopt_state_add(opt, i, "moment2_buffer", EOPT_F32, 2, shape, 0));
    }
    if (c.moment2 == M2_NAMO) {
        const int64_t one = 1;
        EOPT_TRY(eopt_state_add(opt, i, "moment2_buffer", EOPT_F32, 1, &one, 0));
    }
    return EOPT_OK;
}

/* What upstream rejects in a step: Muon's parameters with a gradient must be 2-D float32,
 * AdaptiveMuon's all of them 2-D (§4, §7). */
static eopt_status muon_check(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    const muon_cfg *c = opt->impl;
    const eopt_param *p = &opt->params[i];
    const char *w = opt->cls->name;
    char sh[96];
    if (p->w->ndim != 2 && c->moment2 == M2_NORMUON && p->grad)
        return eopt_fail(EOPT_ERR_SHAPE, "AdaptiveMuon only supports 2D parameters, got shape %s (parameter '%s')",
                         py_shape(p->w, sh, sizeof sh), p->name);
    if (p->w->ndim != 2 && is_adaptive(opt))
        return eopt_fail(EOPT_ERR_SHAPE, "AdaptiveMuon only supports 2D parameters (parameter '%s')", p->name);
    if (!p->grad)
        return EOPT_OK;
    if (p->w->ndim != 2)
        return eopt_fail(EOPT_ERR_SHAPE, "%s: Only 2D parameters are supported. (parameter '%s' has shape %s)", w,
                         p->name, py_shape(p->w, sh, sizeof sh));
    if (p->w->dtype != EOPT_F32 || p->grad->dtype != EOPT_F32)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: Input tensor x must be in float32, got %s (parameter '%s')", w,
                         eopt_dtype_name(p->w->dtype != EOPT_F32 ? p->w->dtype : p->grad->dtype), p->name);
    return eopt_param_check_sides(w, p);
}

/* (decay of P, l2 coefficient on G) of the weight-decay method (mixin.py; products in double). */
static void decay_terms(const muon_cfg *c, const muon_hp *h, double *decay, double *l2)
{
    *decay = *l2 = 0.0;
    if (h->wd == 0.0)
        return;
    switch (c->wd_method) {
    case WD_DECOUPLED: *decay = -h->wd * h->lr; break;
    case WD_INDEPENDENT: *decay = -h->wd; break;
    case WD_PALM: *decay = -(h->wd * h->lr * h->lr); break;
    default: *l2 = h->wd; break;
    }
}

/* AdaptiveMuon's second-moment step, then the scaled update `step` of P by O (§4.1-4.3); G is
 * the raw gradient, X the input of NS. */
static eopt_status moment2_apply(eopt_optimizer *opt, eopt_workspace *ws, const muon_cfg *c, const muon_hp *h, int i, eopt_muon_step step,
                                 float *P, const float *O, const float *G, const float *X)
{
    eopt_backend *be = opt->be;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1];
    float *V = eopt_f32(eopt_state_get(opt, i, "moment2_buffer"));
    const float w2 = (float)(1.0 - h->beta2), eps = (float)h->eps;
    float *sc = eopt_ws_floats(ws, 3);
    if (!sc)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the AdaptiveMuon step (%dx%d)", m, n);
    const int64_t mn = (int64_t)m * n;
    if (c->moment2 == M2_ADAMUON) {
        eopt_ew_run(be, EOPT_EW(adamuon_apply, mn, .param = P, .moment2 = V, .update = O, .step = step,
                                .one_minus_beta2 = w2, .eps = eps));
        return EOPT_OK;
    }
    const float *U = O; /* the update direction, scaled by the device factor */
    float *factor = &sc[2];
    if (c->moment2 == M2_NORMUON) {
        const int rows = m >= n; /* statistic per row of a tall/square matrix, per column of a wide one */
        const int k = rows ? m : n;
        float *N = eopt_ws_floats(ws, mn), *r = eopt_ws_floats(ws, k);
        if (!N || !r)
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the NorMuon step (%dx%d)", m, n);
        be->reduce(be, EOPT_RED_SUMSQ, rows ? EOPT_AXIS_ROWS : EOPT_AXIS_COLS, m, n, O, NULL, n,
                   (float)(1.0 / (rows ? n : m)), r);
        eopt_ew_run(be, EOPT_EW(lerp, k, .y = V, .a = V, .b = r, .w = w2));
        eopt_ew_run(be, EOPT_EW(normuon_scale, mn, .scaled = N, .update = O, .moment2 = V, .eps = eps, .per_row = rows,
                                .cols = n));
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, O, NULL, n, 1.0f, &sc[0]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, N, NULL, n, 1.0f, &sc[1]);
        eopt_ew_run(be, EOPT_EW(normuon_ratio, 1, .ratio = factor, .norm_update = &sc[0], .norm_scaled = &sc[1],
                                .eps = eps));
        U = N;
    } else { /* NAMO: R = G after the decay, X = M or the Nesterov blend */
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, G, NULL, n, 1.0f, &sc[0]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, X, NULL, n, 1.0f, &sc[1]);
        eopt_ew_run(be, EOPT_EW(namo_alpha, 1, .moment2 = V, .alpha = factor, .norm_grad = &sc[0], .norm_input = &sc[1],
                                .one_minus_beta2 = w2, .eps = eps));
    }
    eopt_ew_run(be, EOPT_EW(muon_apply, mn, .param = P, .update = U, .factor = factor, .step = step));
    return EOPT_OK;
}

/* One parameter's step (§3, §4). */
static eopt_status muon_param(eopt_optimizer *opt, eopt_workspace *ws, const muon_cfg *c, const muon_hp *h, int i)
{
    eopt_backend *be = opt->be;
    const eopt_param *p = &opt->params[i];
    const int m = (int)p->w->shape[0], n = (int)p->w->shape[1];
    const int64_t mn = (int64_t)m * n;
    float *P = eopt_f32(p->w), *G = eopt_f32(p->grad);
    float *M = eopt_f32(eopt_state_get(opt, i, "momentum_buffer"));
    float *O = eopt_ws_floats(ws, mn);
    float *X = c->nesterov ? eopt_ws_floats(ws, mn) : M;
    if (!O || !X)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the %s step (%dx%d)", opt->cls->name, m, n);
    double decay, l2, s;
    decay_terms(c, h, &decay, &l2);
    EOPT_TRY(eopt_muon_scale_factor(m, n, c->scale_mode, &s));
    eopt_ew_run(be, EOPT_EW(muon_momentum, mn, .momentum = M, .nesterov = c->nesterov ? X : NULL,
                            .l2_grad = l2 != 0.0 ? G : NULL, .grad = G, .param = P,
                            .one_minus_mu = (float)(1.0 - h->momentum), .mu = (float)h->momentum, .wd = (float)l2));
    EOPT_TRY(eopt_ns_orthogonalize(be, ws, &c->ns, m, n, X, O));
    EOPT_TRY(eopt_diag_ns_residual(opt, ws, i, m, n, O));
    const eopt_muon_step step = {.decay = (float)decay, .scale = (float)s, .extra = (float)c->extra,
                                 .neg_lr = (float)-h->lr};
    if (c->moment2 == M2_NONE) {
        eopt_ew_run(be, EOPT_EW(muon_apply, mn, .param = P, .update = O, .step = step));
        return EOPT_OK;
    }
    return moment2_apply(opt, ws, c, h, i, step, P, O, G, X);
}

/* The workspace of muon_param (and moment2_apply): O, X, NS, the second moment's temporaries. */
static size_t muon_workspace_bytes(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    const muon_cfg *c = opt->impl;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1];
    const int64_t mn = (int64_t)m * n;
    size_t b = eopt_ws_floats_size(mn) * (c->nesterov ? 2 : 1) + eopt_ns_workspace_bytes(opt->be, &c->ns, m, n);
    if (c->moment2 != M2_NONE)
        b += eopt_ws_floats_size(3);
    if (c->moment2 == M2_NORMUON)
        b += eopt_ws_floats_size(mn) + eopt_ws_floats_size(m >= n ? m : n);
    return b;
}

static eopt_status muon_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    return muon_param(opt, ws, opt->impl, hp, i);
}

const eopt_optimizer_class eopt_class_muon = {
    .id = "Muon",
    .name = "Muon",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@b309e2f (v0.3.0)",
    .source_match = NULL,
    .arg_keys = muon_arg_keys,
    .group_keys = muon_group_keys,
    .impl_size = sizeof(muon_cfg),
    .hp_size = sizeof(muon_hp),
    .setup = muon_setup,
    .init_state = muon_init_state,
    .read_group = muon_group,
    .check_param = muon_check,
    .update = muon_update,
    .workspace_bytes = muon_workspace_bytes,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", NULL},
    .cost = EOPT_COST_ORTHOGONALIZE,
};

const eopt_optimizer_class eopt_class_adaptive_muon = {
    .id = "AdaptiveMuon",
    .name = "AdaptiveMuon",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@b309e2f (v0.3.0)",
    .source_match = NULL,
    .arg_keys = adaptive_arg_keys,
    .group_keys = adaptive_group_keys,
    .impl_size = sizeof(muon_cfg),
    .hp_size = sizeof(muon_hp),
    .setup = muon_setup,
    .init_state = muon_init_state,
    .read_group = muon_group,
    .check_param = muon_check,
    .update = muon_update,
    .workspace_bytes = muon_workspace_bytes,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", "beta2", "eps", NULL},
    .cost = EOPT_COST_ORTHOGONALIZE,
};
