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

/* The constructor arguments, read once (opt->impl). */
typedef struct {
    double betas[2], adam_eps, extra;
    int scale;
    const char *scale_mode; /* eopt_muon_scale_modes[scale] */
    eopt_ns_config ns;
} muown_cfg;

typedef struct {
    double lr, momentum, wd;
} muown_hp;

static const eopt_hparam muown_arg_keys[] = {
    EOPT_HP_F2("betas", 0.9, 0.95, EOPT_AT(muown_cfg, betas)),
    EOPT_HP_F("adam_eps", 1e-8, EOPT_AT(muown_cfg, adam_eps)),
    EOPT_MUON_NS_KEYS(muown_cfg),
    EOPT_HP_B("use_syrk", 0, EOPT_NOWHERE), /* stored; eopt uses syrk wherever it helps */
    EOPT_HP_END,
};

static const eopt_hparam muown_group_keys[] = {
    EOPT_HP_FR("lr", 3e-4, EOPT_AT(muown_hp, lr)),
    EOPT_HP_FR("momentum", 0.95, EOPT_AT(muown_hp, momentum)),
    EOPT_HP_FR("weight_decay", 0.0, EOPT_AT(muown_hp, wd)),
    EOPT_HP_END,
};

static eopt_status muown_setup(eopt_optimizer *opt)
{
    muown_cfg *c = opt->impl;
    c->scale_mode = eopt_muon_scale_modes[c->scale];
    EOPT_TRY(eopt_muon_ns_config(&opt->args, "Muown", &c->ns));
    c->ns.eps = 1e-15; /* Muown's commit normalises with max(||X||_F, 1e-15) */
    return EOPT_OK;
}

static eopt_status muown_group(const eopt_optimizer *opt, int g, void *hp)
{
    char what[48];
    snprintf(what, sizeof what, "Muown param group %d", g);
    return eopt_hparams_read(muown_group_keys, &opt->groups[g].hp, what, hp);
}

static eopt_status muown_check(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    return opt->params[i].grad ? eopt_param_check_2d("Muown", "parameters", &opt->params[i]) : EOPT_OK;
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
static eopt_status muown_param(eopt_optimizer *opt, eopt_workspace *ws, const muown_cfg *c, const muown_hp *h, int i)
{
    eopt_backend *be = opt->be;
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
    EOPT_TRY(eopt_diag_ns_residual(opt, ws, i, m, n, O));
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

/* The workspace of muown_param: V, O, grad_g, the Adam direction of g, NS. */
static size_t muown_workspace_bytes(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    const muown_cfg *c = opt->impl;
    const int m = (int)opt->params[i].w->shape[0], n = (int)opt->params[i].w->shape[1];
    return 2 * eopt_ws_floats_size((int64_t)m * n) + 2 * eopt_ws_floats_size(m) +
           eopt_ns_workspace_bytes(opt->be, &c->ns, m, n);
}

static eopt_status muown_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    return muown_param(opt, ws, opt->impl, hp, i);
}

const eopt_optimizer_class eopt_class_muown = {
    .id = "Muown",
    .name = "Muown",
    .source = "NVIDIA-NeMo/Emerging-Optimizers@9ab7b03",
    .source_match = NULL,
    .arg_keys = muown_arg_keys,
    .group_keys = muown_group_keys,
    .impl_size = sizeof(muown_cfg),
    .hp_size = sizeof(muown_hp),
    .setup = muown_setup,
    .init_state = muown_init_state,
    .read_group = muown_group,
    .check_param = muown_check,
    .start_state = muown_start,
    .update = muown_update,
    .workspace_bytes = muown_workspace_bytes,
    .schedulable = (const char *const[]){"lr", "momentum", "weight_decay", NULL},
    .cost = EOPT_COST_ORTHOGONALIZE,
};
