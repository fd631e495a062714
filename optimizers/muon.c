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

enum { WD_DECOUPLED = 0, WD_INDEPENDENT, WD_L2, WD_PALM };
enum { M2_ADAMUON = 0, M2_NORMUON, M2_NAMO, M2_NONE };

static const char *const wd_names[] = {"decoupled", "independent", "l2", "palm", NULL};
static const char *const m2_names[] = {"adamuon", "normuon", "namo", NULL};

/* The constructor arguments, resolved. */
typedef struct {
    int nesterov, wd_method, moment2;
    const char *scale_mode;
    double extra;
    eopt_ns_config ns;
} muon_cfg;

/* One param group's hyperparameters (beta2, eps: AdaptiveMuon only). */
typedef struct {
    double lr, momentum, wd, beta2, eps;
} muon_hp;

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

eopt_status eopt_muon_scale_args(const eopt_dict *args, const char *what, const char **scale_mode, double *extra)
{
    double s;
    EOPT_TRY(eopt_dict_str(args, what, "scale_mode", scale_mode));
    eopt_status st = eopt_muon_scale_factor(1, 1, *scale_mode, &s);
    if (st != EOPT_OK)
        return eopt_fail_context(st, "%s", what);
    return eopt_dict_float(args, what, "extra_scale_factor", extra);
}

/* The index of `val` in `names`, or upstream's error `invalid` + val naming the argument. */
static eopt_status pick(const char *what, const char *arg, const char *val, const char *const *names,
                        const char *invalid, int *out)
{
    for (int k = 0; names[k]; k++)
        if (strcmp(val, names[k]) == 0) {
            *out = k;
            return EOPT_OK;
        }
    return eopt_fail(EOPT_ERR_ARG, "%s: %s%s (argument %s)", what, invalid, val, arg);
}

void eopt_muon_ns_defaults(eopt_dict *args)
{
    eopt_dict_set(args, "fp32_matmul_prec", eopt_str("medium"));
    eopt_dict_set(args, "coefficient_type", eopt_str("quintic"));
    eopt_dict_set(args, "num_ns_steps", eopt_int(5));
    eopt_dict_set(args, "scale_mode", eopt_str("spectral"));
    eopt_dict_set(args, "extra_scale_factor", eopt_float(1.0));
    eopt_dict_set(args, "custom_coefficient_sets", (eopt_value){.kind = EOPT_VAL_NONE});
}

/* The constructor arguments both classes share, in upstream order. */
static void common_defaults(eopt_dict *args)
{
    eopt_dict_set(args, "nesterov", eopt_bool(0));
    eopt_dict_set(args, "weight_decay_method", eopt_str("decoupled"));
    eopt_muon_ns_defaults(args);
}

static void muon_defaults(eopt_dict *args, eopt_dict *group)
{
    common_defaults(args);
    eopt_dict_set(args, "use_syrk", eopt_bool(0)); /* stored; eopt uses syrk wherever it helps */
    eopt_dict_set(group, "lr", eopt_float(3e-4));
    eopt_dict_set(group, "momentum", eopt_float(0.95));
    eopt_dict_set(group, "weight_decay", eopt_float(0.01));
}

static void adaptive_defaults(eopt_dict *args, eopt_dict *group)
{
    common_defaults(args);
    eopt_dict_set(args, "moment2_method", eopt_str("adamuon"));
    /* lr, momentum, weight_decay are required (None keeps their place in torch's key order);
     * beta2 and eps are upstream's set-if-absent group keys */
    const eopt_value none = {.kind = EOPT_VAL_NONE};
    eopt_dict_set(group, "lr", none);
    eopt_dict_set(group, "momentum", none);
    eopt_dict_set(group, "weight_decay", none);
    eopt_dict_set(group, "beta2", eopt_float(0.95));
    eopt_dict_set(group, "eps", eopt_float(1e-8));
}

static eopt_status muon_config(const eopt_optimizer *opt, muon_cfg *c)
{
    const eopt_dict *a = &opt->args;
    const char *w = opt->cls->name, *wd, *m2 = NULL;
    int use_syrk;
    EOPT_TRY(eopt_dict_bool(a, w, "nesterov", &c->nesterov));
    EOPT_TRY(eopt_dict_str(a, w, "weight_decay_method", &wd));
    c->moment2 = M2_NONE;
    if (is_adaptive(opt)) {
        EOPT_TRY(eopt_dict_str(a, w, "moment2_method", &m2));
        if (strcmp(m2, "namo") == 0 && strcmp(wd, "l2") == 0)
            return eopt_fail(EOPT_ERR_ARG, "%s: moment2_method=\"namo\" is incompatible with weight_decay_method=\"l2\"",
                             w);
    } else {
        EOPT_TRY(eopt_dict_bool(a, w, "use_syrk", &use_syrk));
    }
    EOPT_TRY(eopt_muon_ns_config(a, w, &c->ns));
    EOPT_TRY(pick(w, "weight_decay_method", wd, wd_names, "Invalid weight decay method: ", &c->wd_method));
    if (m2)
        EOPT_TRY(pick(w, "moment2_method", m2, m2_names, "Invalid second moment method: ", &c->moment2));
    return eopt_muon_scale_args(a, w, &c->scale_mode, &c->extra);
}

/* A group value; None (AdaptiveMuon's required lr, momentum, weight_decay left unset) is an error. */
static eopt_status group_float(const eopt_dict *d, const char *what, const char *key, double *out)
{
    const eopt_value *v = eopt_dict_get(d, key);
    if (v && v->kind == EOPT_VAL_NONE)
        return eopt_fail(EOPT_ERR_ARG, "%s: missing required argument '%s'", what, key);
    return eopt_dict_float(d, what, key, out);
}

eopt_status eopt_muon_group_hp(const eopt_dict *d, const char *what, double *lr, double *momentum, double *wd)
{
    EOPT_TRY(group_float(d, what, "lr", lr));
    EOPT_TRY(group_float(d, what, "momentum", momentum));
    return group_float(d, what, "weight_decay", wd);
}

static eopt_status muon_group(const eopt_optimizer *opt, int g, muon_hp *h)
{
    char what[64];
    snprintf(what, sizeof what, "%s param group %d", opt->cls->name, g);
    const eopt_dict *d = &opt->groups[g].hp;
    EOPT_TRY(eopt_muon_group_hp(d, what, &h->lr, &h->momentum, &h->wd));
    h->beta2 = h->eps = 0.0;
    if (is_adaptive(opt)) {
        EOPT_TRY(group_float(d, what, "beta2", &h->beta2));
        EOPT_TRY(group_float(d, what, "eps", &h->eps));
    }
    return EOPT_OK;
}

static eopt_status muon_setup(eopt_optimizer *opt)
{
    muon_cfg c;
    muon_hp h;
    EOPT_TRY(muon_config(opt, &c));
    for (int g = 0; g < opt->ngroups; g++)
        EOPT_TRY(muon_group(opt, g, &h));
    return EOPT_OK;
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
    muon_cfg c;
    EOPT_TRY(muon_config(opt, &c));
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

/* Everything upstream would reject in this step, checked before anything changes: Muon's
 * parameters with a gradient must be 2-D, AdaptiveMuon's all of them (§4, §7). */
static eopt_status muon_check_group(const eopt_optimizer *opt, const muon_cfg *c, int g)
{
    const char *w = opt->cls->name;
    char sh[96];
    for (int k = 0; k < opt->groups[g].n; k++) {
        const eopt_param *p = &opt->params[opt->groups[g].index[k]];
        if (p->w->ndim != 2 && c->moment2 == M2_NORMUON && p->grad)
            return eopt_fail(EOPT_ERR_SHAPE, "AdaptiveMuon only supports 2D parameters, got shape %s (parameter '%s')",
                             py_shape(p->w, sh, sizeof sh), p->name);
        if (p->w->ndim != 2 && is_adaptive(opt))
            return eopt_fail(EOPT_ERR_SHAPE, "AdaptiveMuon only supports 2D parameters (parameter '%s')", p->name);
        if (!p->grad)
            continue;
        if (p->w->ndim != 2)
            return eopt_fail(EOPT_ERR_SHAPE, "%s: Only 2D parameters are supported. (parameter '%s' has shape %s)", w,
                             p->name, py_shape(p->w, sh, sizeof sh));
        if (p->w->dtype != EOPT_F32 || p->grad->dtype != EOPT_F32)
            return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: Input tensor x must be in float32, got %s (parameter '%s')", w,
                             eopt_dtype_name(p->w->dtype != EOPT_F32 ? p->w->dtype : p->grad->dtype), p->name);
        if (!eopt_tensor_same_shape(p->w, p->grad))
            return eopt_fail(EOPT_ERR_SHAPE, "%s: the gradient of '%s' has a different shape", w, p->name);
    }
    return EOPT_OK;
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
static eopt_status moment2_apply(eopt_optimizer *opt, const muon_cfg *c, const muon_hp *h, int i, eopt_muon_step step,
                                 float *P, const float *O, const float *G, const float *X)
{
    eopt_backend *be = opt->be;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1];
    float *V = eopt_f32(eopt_state_get(opt, i, "moment2_buffer"));
    const float w2 = (float)(1.0 - h->beta2), eps = (float)h->eps;
    float *sc = eopt_ws_floats(&opt->ws, 3);
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
        float *N = eopt_ws_floats(&opt->ws, mn), *r = eopt_ws_floats(&opt->ws, k);
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
static eopt_status muon_param(eopt_optimizer *opt, const muon_cfg *c, const muon_hp *h, int i)
{
    eopt_backend *be = opt->be;
    eopt_workspace *ws = &opt->ws;
    EOPT_TRY(eopt_ws_reset(ws)); /* the previous parameter's temporaries are dead */
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
    const eopt_muon_step step = {.decay = (float)decay, .scale = (float)s, .extra = (float)c->extra,
                                 .neg_lr = (float)-h->lr};
    if (c->moment2 == M2_NONE) {
        eopt_ew_run(be, EOPT_EW(muon_apply, mn, .param = P, .update = O, .step = step));
        return EOPT_OK;
    }
    return moment2_apply(opt, c, h, i, step, P, O, G, X);
}

static eopt_status muon_step(eopt_optimizer *opt)
{
    muon_cfg c;
    muon_hp h;
    EOPT_TRY(muon_config(opt, &c));
    for (int g = 0; g < opt->ngroups; g++) { /* validate everything before changing anything */
        EOPT_TRY(muon_group(opt, g, &h));
        EOPT_TRY(muon_check_group(opt, &c, g));
    }
    for (int g = 0; g < opt->ngroups; g++) {
        EOPT_TRY(muon_group(opt, g, &h));
        for (int k = 0; k < opt->groups[g].n; k++) { /* _init_group: lazy state for the whole group */
            const int i = opt->groups[g].index[k];
            if (opt->params[i].grad && opt->state[i].n == 0)
                EOPT_TRY(muon_init_state(opt, i));
        }
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (!opt->params[i].grad)
                continue;
            eopt_status st = muon_param(opt, &c, &h, i);
            if (st != EOPT_OK)
                return eopt_fail_context(st, "%s parameter '%s'", opt->cls->name, opt->params[i].name);
        }
    }
    return EOPT_OK;
}

const eopt_optimizer_class eopt_class_muon = {
    .id = "Muon",
    .name = "Muon",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@b309e2f (v0.3.0)",
    .source_match = NULL,
    .defaults = muon_defaults,
    .setup = muon_setup,
    .init_state = muon_init_state,
    .step = muon_step,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", NULL},
};

const eopt_optimizer_class eopt_class_adaptive_muon = {
    .id = "AdaptiveMuon",
    .name = "AdaptiveMuon",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@b309e2f (v0.3.0)",
    .source_match = NULL,
    .defaults = adaptive_defaults,
    .setup = muon_setup,
    .init_state = muon_init_state,
    .step = muon_step,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", "beta2", "eps", NULL},
};
