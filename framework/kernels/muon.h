/* Element-wise kernels of the Muon family: NVIDIA Muon, AdaptiveMuon (AdaMuon / NorMuon / NAMO)
 * and Muown (see ew.h for the conventions; muon.md §3-4, dion-muown.md §9). */
#ifndef EOPT_KERNELS_MUON_H
#define EOPT_KERNELS_MUON_H

#define EOPT_EW_MUON(X)                                                                                     \
    X(muon_momentum) X(muon_apply) X(adamuon_apply) X(normuon_scale) X(normuon_ratio) X(namo_alpha)        \
    X(muown_split) X(muown_recompose)

/* Weight decay, EMA momentum and the Nesterov blend in one pass (muon.md §3 steps 1-3):
 *   l2_grad != NULL ("l2" decay): G = G + wd P, written back into the gradient as upstream does
 *   M = lerp(M, G, 1 - mu)
 *   nesterov != NULL: X = lerp(G, M, mu), the input of the orthogonalisation */
typedef struct {
    float *momentum;    /* M, in place */
    float *nesterov;    /* X, or NULL */
    float *l2_grad;     /* G + wd P (the gradient itself), or NULL */
    const float *grad;  /* G */
    const float *param; /* P */
    float one_minus_mu, mu, wd;
} eopt_ew_muon_momentum_args;

EOPT_HD void eopt_ew_muon_momentum(const eopt_ew_muon_momentum_args *k, int64_t i)
{
    float g = k->grad[i];
    if (k->l2_grad) {
        g = g + k->wd * k->param[i];
        k->l2_grad[i] = g;
    }
    float m = eopt_lerp(k->momentum[i], g, k->one_minus_mu);
    k->momentum[i] = m;
    if (k->nesterov)
        k->nesterov[i] = eopt_lerp(g, m, k->mu);
}

/* The parameter update shared by the Muon family:
 *   P = P + decay P  (decoupled / independent / palm decay with the pre-step P; skipped at 0)
 *   P = P + neg_lr ((u scale) extra)  (scale = the Muon scale factor, extra = extra_scale_factor) */
typedef struct {
    float decay, scale, extra, neg_lr;
} eopt_muon_step;

EOPT_HD void eopt_muon_update(const eopt_muon_step *s, float *param, int64_t i, float u)
{
    float p = param[i];
    if (s->decay != 0.0f)
        p = p + s->decay * p;
    param[i] = p + s->neg_lr * ((u * s->scale) * s->extra);
}

/* u = O factor (the factor, if any, is applied first), then the update of P */
typedef struct {
    float *param;
    const float *update; /* O, the orthogonalised update */
    const float *factor; /* device scalar (NorMuon's norm ratio, NAMO's alpha), or NULL */
    eopt_muon_step step;
} eopt_ew_muon_apply_args;

EOPT_HD void eopt_ew_muon_apply(const eopt_ew_muon_apply_args *k, int64_t i)
{
    eopt_muon_update(&k->step, k->param, i, k->factor ? k->update[i] * k->factor[0] : k->update[i]);
}

/* AdaMuon (§4.1): V = lerp(V, O^2, 1 - b2);  u = O / (sqrt(V) + eps), then the update of P */
typedef struct {
    float *param;
    float *moment2; /* V, in place */
    const float *update;
    eopt_muon_step step;
    float one_minus_beta2, eps;
} eopt_ew_adamuon_apply_args;

EOPT_HD void eopt_ew_adamuon_apply(const eopt_ew_adamuon_apply_args *k, int64_t i)
{
    float o = k->update[i];
    float v = eopt_lerp(k->moment2[i], o * o, k->one_minus_beta2);
    k->moment2[i] = v;
    eopt_muon_update(&k->step, k->param, i, o / (sqrtf(v) + k->eps));
}

/* NorMuon (§4.2): N = O / sqrt(max(V, eps)), V per row (per_row) or per column of the m x n
 * matrix. NaN in V propagates, as torch.clamp_min. */
typedef struct {
    float *scaled; /* N */
    const float *update, *moment2;
    float eps;
    int per_row;
    int64_t cols;
} eopt_ew_normuon_scale_args;

EOPT_HD void eopt_ew_normuon_scale(const eopt_ew_normuon_scale_args *k, int64_t i)
{
    float v = k->moment2[k->per_row ? i / k->cols : i % k->cols];
    v = v < k->eps ? k->eps : v;
    k->scaled[i] = k->update[i] * (1.0f / sqrtf(v));
}

/* n = 1: ratio = ||O||_F / max(||N||_F, eps), NorMuon's Frobenius-norm matching. */
typedef struct {
    float *ratio;
    const float *norm_update, *norm_scaled; /* device scalars */
    float eps;
} eopt_ew_normuon_ratio_args;

EOPT_HD void eopt_ew_normuon_ratio(const eopt_ew_normuon_ratio_args *k, int64_t i)
{
    float den = k->norm_scaled[0] < k->eps ? k->eps : k->norm_scaled[0];
    k->ratio[i] = k->norm_update[0] / den;
}

/* NAMO (§4.3), n = 1: V = lerp(V, ||R||^2, 1 - b2);  alpha = ||X||_F / (sqrt(V) + eps) */
typedef struct {
    float *moment2; /* V, shape (1,) */
    float *alpha;
    const float *norm_grad, *norm_input; /* device scalars ||R||_F, ||X||_F */
    float one_minus_beta2, eps;
} eopt_ew_namo_alpha_args;

EOPT_HD void eopt_ew_namo_alpha(const eopt_ew_namo_alpha_args *k, int64_t i)
{
    float q = k->norm_grad[0] * k->norm_grad[0];
    float v = eopt_lerp(k->moment2[i], q, k->one_minus_beta2);
    k->moment2[i] = v;
    k->alpha[i] = k->norm_input[0] / (sqrtf(v) + k->eps);
}

/* Muown's weight-norm split and momentum (dion-muown.md §9.3 steps 1-2), per element of row r:
 *   grad_v = (g / v_norm) (G - u grad_g);   B = lerp(B, grad_v, 1 - momentum);   dir = u v_norm */
typedef struct {
    float *momentum;             /* B, in place */
    float *dir;                  /* u = W / g on input, v = u v_norm on output */
    const float *grad;           /* G */
    const float *grad_g, *g, *v_norm; /* per row */
    float one_minus_mu;
    int64_t cols;
} eopt_ew_muown_split_args;

EOPT_HD void eopt_ew_muown_split(const eopt_ew_muown_split_args *k, int64_t i)
{
    const int64_t r = i / k->cols;
    float u = k->dir[i];
    float gv = (k->g[r] / k->v_norm[r]) * (k->grad[i] - u * k->grad_g[r]);
    k->momentum[i] = eopt_lerp(k->momentum[i], gv, k->one_minus_mu);
    k->dir[i] = u * k->v_norm[r];
}

/* Muown's recomposition (§9.3 step 7): W = g (v_new / ||v_new||_row) (no clamp: a zero row
 * becomes NaN, as upstream). */
typedef struct {
    float *weight;
    const float *dir;                /* v_new */
    const float *g, *dir_norm;       /* per row */
    int64_t cols;
} eopt_ew_muown_recompose_args;

EOPT_HD void eopt_ew_muown_recompose(const eopt_ew_muown_recompose_args *k, int64_t i)
{
    const int64_t r = i / k->cols;
    k->weight[i] = k->g[r] * (k->dir[i] / k->dir_norm[r]);
}

#endif
