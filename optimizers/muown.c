/* Muown (NVIDIA-NeMo/Emerging-Optimizers@9ab7b03, contrib/muown.py), dion-muown.md §9.
 *
 * A weight W (m x n) is kept as W_i = g_i v_i / ||v_i|| (per-row magnitude g, direction v with
 * cached row norms v_norm). Per step, with u = W / g (unit rows), t = step + 1:
 *   v = u v_norm;  grad_g_i = sum_j G_ij u_ij;  grad_v = (g / v_norm) (G - u grad_g)
 *   B <- lerp(B, grad_v, 1 - momentum);   v_new = v - lr (NS(B) s) extra
 *   g <- g - lr Adam(grad_g; m_g, v_g, betas, adam_eps, t);   g <- g - wd lr g
 *   v_norm <- ||v_new||_row;   W <- g (v_new / v_norm)
 * The only clamp is the 1e-12 floor of the initial row norms: a zero row whose momentum stays
 * zero becomes NaN (0/0) exactly as upstream (§10). Newton-Schulz normalises by
 * max(||B||_F, 1e-15). */
#include "muown.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "adamw.h"
#include "muon.h"
#include "optim_util.h"

typedef struct {
    double betas[2], adam_eps, extra;
    const char *scale_mode;
    eopt_ns_config ns;
} muown_cfg;

typedef struct {
    double lr, momentum, wd;
} muown_hp;

static void muown_defaults(eopt_dict *args, eopt_dict *group)
{
    const double betas[2] = {0.9, 0.95};
    eopt_dict_set(args, "betas", eopt_floats(2, betas));
    eopt_dict_set(args, "adam_eps", eopt_float(1e-8));
    eopt_muon_ns_defaults(args);
    eopt_dict_set(args, "use_syrk", eopt_bool(0)); /* stored; eopt uses syrk wherever it helps */
    eopt_dict_set(group, "lr", eopt_float(3e-4));
    eopt_dict_set(group, "momentum", eopt_float(0.95));
    eopt_dict_set(group, "weight_decay", eopt_float(0.0));
}

static eopt_status muown_config(const eopt_optimizer *opt, muown_cfg *c)
{
    const eopt_dict *a = &opt->args;
    const char *w = "Muown";
    int use_syrk;
    EOPT_TRY(eopt_muon_ns_config(a, w, &c->ns));
    c->ns.eps = 1e-15; /* Muown's commit normalises with max(||X||_F, 1e-15) */
    EOPT_TRY(eopt_dict_floats(a, w, "betas", 2, c->betas));
    EOPT_TRY(eopt_dict_float(a, w, "adam_eps", &c->adam_eps));
    EOPT_TRY(eopt_muon_scale_args(a, w, &c->scale_mode, &c->extra));
    EOPT_TRY(eopt_dict_bool(a, w, "use_syrk", &use_syrk));
    return EOPT_OK;
}

static eopt_status muown_group(const eopt_optimizer *opt, int g, muown_hp *h)
{
    char what[48];
    snprintf(what, sizeof what, "Muown param group %d", g);
    return eopt_muon_group_hp(&opt->groups[g].hp, what, &h->lr, &h->momentum, &h->wd);
}

static eopt_status muown_setup(eopt_optimizer *opt)
{
    muown_cfg c;
    muown_hp h;
    EOPT_TRY(muown_config(opt, &c));
    for (int g = 0; g < opt->ngroups; g++)
        EOPT_TRY(muown_group(opt, g, &h));
    return EOPT_OK;
}

static eopt_status muown_init_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    if (w->ndim != 2)
        return eopt_fail(EOPT_ERR_SHAPE, "Muown is only supported for 2D parameters (parameter '%s')",
                         opt->params[i].name);
    const int64_t col[2] = {w->shape[0], 1};
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "step", EOPT_I64, 0, NULL, 1));
    EOPT_TRY(eopt_state_add(opt, i, "g", EOPT_F32, 2, col, 0));
    EOPT_TRY(eopt_state_add(opt, i, "v_norm", EOPT_F32, 2, col, 0));
    EOPT_TRY(eopt_state_add(opt, i, "momentum_buffer", EOPT_F32, 2, w->shape, 0));
    EOPT_TRY(eopt_state_add(opt, i, "m_g", EOPT_F32, 2, col, 0));
    EOPT_TRY(eopt_state_add(opt, i, "v_g", EOPT_F32, 2, col, 0));
    return EOPT_OK;
}

/* Lazy state (§9.2): g = v_norm = max(||W_i||, 1e-12), the rest zero. */
static eopt_status muown_start(eopt_optimizer *opt, int i)
{
    EOPT_TRY(muown_init_state(opt, i));
    eopt_backend *be = opt->be;
    const eopt_tensor *w = opt->params[i].w;
    const int m = (int)w->shape[0], n = (int)w->shape[1];
    float *g = eopt_f32(eopt_state_get(opt, i, "g")), *vn = eopt_f32(eopt_state_get(opt, i, "v_norm"));
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ROWS, m, n, eopt_f32(w), NULL, n, 1.0f, g);
    eopt_ew_run(be, EOPT_EW(clamp, m, .y = g, .a = g, .lo = 1e-12f, .hi = INFINITY));
    eopt_copy_f32(be, m, g, vn);
    return EOPT_OK;
}

/* One parameter's step (§9.3). */
static eopt_status muown_param(eopt_optimizer *opt, const muown_cfg *c, const muown_hp *h, int i)
{
    eopt_backend *be = opt->be;
    eopt_workspace *ws = &opt->ws;
    EOPT_TRY(eopt_ws_reset(ws)); /* the previous parameter's temporaries are dead */
    const eopt_param *p = &opt->params[i];
    const int m = (int)p->w->shape[0], n = (int)p->w->shape[1];
    const int64_t mn = (int64_t)m * n;
    float *W = eopt_f32(p->w), *G = eopt_f32(p->grad);
    float *g = eopt_f32(eopt_state_get(opt, i, "g")), *vn = eopt_f32(eopt_state_get(opt, i, "v_norm"));
    float *B = eopt_f32(eopt_state_get(opt, i, "momentum_buffer"));
    float *mg = eopt_f32(eopt_state_get(opt, i, "m_g")), *vg = eopt_f32(eopt_state_get(opt, i, "v_g"));
    int64_t *step = (int64_t *)eopt_state_get(opt, i, "step")->data;
    float *V = eopt_ws_floats(ws, mn), *O = eopt_ws_floats(ws, mn);
    float *gg = eopt_ws_floats(ws, m), *dg = eopt_ws_floats(ws, m);
    if (!V || !O || !gg || !dg)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the Muown step (%dx%d)", m, n);
    double s;
    EOPT_TRY(eopt_muon_scale_factor(m, n, c->scale_mode, &s));

    /* decompose: u = W / g (into V), grad_g = rowsum(G u), then grad_v into the momentum and
     * V = u v_norm in one pass */
    eopt_ew_run(be, EOPT_EW(div_row, mn, .y = V, .a = W, .b = g, .cols = n));
    be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_ROWS, m, n, G, V, n, 1.0f, gg);
    eopt_ew_run(be, EOPT_EW(muown_split, mn, .momentum = B, .dir = V, .grad = G, .grad_g = gg, .g = g, .v_norm = vn,
                            .one_minus_mu = (float)(1.0 - h->momentum), .cols = n));
    /* direction: v_new = v - lr (NS(B) s) extra (decay 0: only g decays) */
    EOPT_TRY(eopt_ns_orthogonalize(be, ws, &c->ns, m, n, B, O));
    eopt_ew_run(be, EOPT_EW(muon_apply, mn, .param = V, .update = O,
                            .step = {.scale = (float)s, .extra = (float)c->extra, .neg_lr = (float)-h->lr}));
    /* magnitude: Adam on g, then decoupled decay of g alone */
    eopt_adam_update(be, m, gg, mg, vg, c->betas, c->adam_eps, 1, 0, *step + 1, dg);
    eopt_axpby(be, m, 1.0f, g, (float)-h->lr, dg, g);
    if (h->wd != 0.0)
        eopt_axpby(be, m, 1.0f, g, (float)(-h->wd * h->lr), g, g);
    /* recompose (the old v_norm is dead after the split pass) */
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ROWS, m, n, V, NULL, n, 1.0f, vn);
    eopt_ew_run(be, EOPT_EW(muown_recompose, mn, .weight = W, .dir = V, .g = g, .dir_norm = vn, .cols = n));
    *step += 1;
    return EOPT_OK;
}

static eopt_status muown_step(eopt_optimizer *opt)
{
    muown_cfg c;
    muown_hp h;
    EOPT_TRY(muown_config(opt, &c));
    for (int g = 0; g < opt->ngroups; g++) { /* validate everything before changing anything */
        EOPT_TRY(muown_group(opt, g, &h));
        for (int k = 0; k < opt->groups[g].n; k++) {
            const eopt_param *p = &opt->params[opt->groups[g].index[k]];
            if (p->grad)
                EOPT_TRY(eopt_param_check_2d("Muown", "parameters", p));
        }
    }
    for (int g = 0; g < opt->ngroups; g++) {
        EOPT_TRY(muown_group(opt, g, &h));
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (opt->params[i].grad && opt->state[i].n == 0)
                EOPT_TRY(muown_start(opt, i));
        }
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (!opt->params[i].grad)
                continue;
            eopt_status st = muown_param(opt, &c, &h, i);
            if (st != EOPT_OK)
                return eopt_fail_context(st, "Muown parameter '%s'", opt->params[i].name);
        }
    }
    return EOPT_OK;
}

const eopt_optimizer_class eopt_class_muown = {
    .id = "Muown",
    .name = "Muown",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@9ab7b03",
    .source_match = NULL,
    .defaults = muown_defaults,
    .setup = muown_setup,
    .init_state = muown_init_state,
    .step = muown_step,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", NULL},
};
