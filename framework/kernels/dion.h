/* Element-wise kernels of the dion family: Muon, NorMuon, Dion2, NorDion2 and the adamw / lion
 * groups (see ew.h for the conventions; dion-muown.md §4-§8). Hyperparameters arrive already
 * rounded to float32, as dion turns every group value into a float32 tensor. */
#ifndef EOPT_KERNELS_DION_H
#define EOPT_KERNELS_DION_H

#define EOPT_EW_DION(X) X(dion_momentum) X(dion_variance) X(dion_apply) X(dion_adamw) X(dion_lion)

/* torch's min(sign(p) + 1, 1): 1 where p >= 0 (a zero product decays), 0 where p < 0, NaN stays. */
EOPT_HD float eopt_dion_keep(float p) { return p < 0.0f ? 0.0f : (p >= 0.0f ? 1.0f : p); }

/* Heavy-ball momentum without dampening (§4 steps 1-2):
 *   M = mu M + G;   nesterov != NULL: U = mu M + G with the new M */
typedef struct {
    float *momentum; /* M, in place */
    float *nesterov; /* U, or NULL */
    const float *grad;
    float mu;
} eopt_ew_dion_momentum_args;

EOPT_HD void eopt_ew_dion_momentum(const eopt_ew_dion_momentum_args *k, int64_t i)
{
    float g = k->grad[i];
    float m = k->mu * k->momentum[i] + g;
    k->momentum[i] = m;
    if (k->nesterov)
        k->nesterov[i] = k->mu * m + g;
}

/* NorMuon's neuron variance (§5 steps 3-4), one element per row r:
 *   V = lerp(V, r, 1 - beta2);   den = sqrt(V) + eps */
typedef struct {
    float *variance; /* V, in place */
    float *den;
    const float *row_ms; /* the row mean squares r */
    float one_minus_beta2, eps;
} eopt_ew_dion_variance_args;

EOPT_HD void eopt_ew_dion_variance(const eopt_ew_dion_variance_args *k, int64_t i)
{
    float v = eopt_lerp(k->variance[i], k->row_ms[i], k->one_minus_beta2);
    k->variance[i] = v;
    k->den[i] = sqrtf(v) + k->eps;
}

/* The matrix update (§4 steps 5-6): X = X (1 - lr wd), or with cautious decay
 * X = X - lr wd (X c), c = [X O >= 0]; then X = X - adj_lr O. */
typedef struct {
    float *param;        /* X */
    const float *update; /* O */
    float decay;         /* 1 - lr wd */
    float adj_lr, lr_wd;
    int cautious;
} eopt_ew_dion_apply_args;

EOPT_HD void eopt_ew_dion_apply(const eopt_ew_dion_apply_args *k, int64_t i)
{
    float x = k->param[i], o = k->update[i];
    if (k->cautious)
        x = x - k->lr_wd * (x * eopt_dion_keep(x * o));
    else
        x = x * k->decay;
    k->param[i] = x - k->adj_lr * o;
}

/* AdamW (§8):
 *   M = lerp(M, G, 1 - b1);  V = b2 V + (1 - b2) G^2
 *   X = X (1 - lr wd) - (M / (sqrt(V) / sqrt(1 - b2^t) + eps)) lr / (1 - b1^t)
 * then the cautious variant adds lr wd X_old back where M X_old < 0. */
typedef struct {
    float *param, *exp_avg, *exp_avg_sq; /* X, M, V */
    const float *grad;
    float one_minus_beta1, beta2, one_minus_beta2;
    float sqrt_bc2;       /* sqrt(1 - b2^t) */
    float eps;
    float step_size;      /* lr / (1 - b1^t) */
    float decay;          /* 1 - lr wd */
    float cautious_lr_wd; /* lr wd if cautious, else 0 */
} eopt_ew_dion_adamw_args;

EOPT_HD void eopt_ew_dion_adamw(const eopt_ew_dion_adamw_args *k, int64_t i)
{
    float g = k->grad[i], x0 = k->param[i];
    float m = eopt_lerp(k->exp_avg[i], g, k->one_minus_beta1);
    float v = k->beta2 * k->exp_avg_sq[i] + k->one_minus_beta2 * (g * g);
    k->exp_avg[i] = m;
    k->exp_avg_sq[i] = v;
    float x = x0 * k->decay - (m / (sqrtf(v) / k->sqrt_bc2 + k->eps)) * k->step_size;
    if (k->cautious_lr_wd != 0.0f && m * x0 < 0.0f)
        x = x + k->cautious_lr_wd * x0;
    k->param[i] = x;
}

/* Lion (§8): U = sign(lerp(M, G, 1 - b1));  M = lerp(M, G, 1 - b2);  X = decay(X) - lr U,
 * decay as in dion_apply (plain or cautious). */
typedef struct {
    float *param, *momentum; /* X, M */
    const float *grad;
    float one_minus_beta1, one_minus_beta2, lr;
    float decay; /* 1 - lr wd */
    float lr_wd;
    int cautious;
} eopt_ew_dion_lion_args;

EOPT_HD void eopt_ew_dion_lion(const eopt_ew_dion_lion_args *k, int64_t i)
{
    float g = k->grad[i], m = k->momentum[i];
    float c = eopt_lerp(m, g, k->one_minus_beta1);
    float u = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : c);
    k->momentum[i] = eopt_lerp(m, g, k->one_minus_beta2);
    float x = k->param[i];
    if (k->cautious)
        x = x - k->lr_wd * (x * eopt_dion_keep(x * u));
    else
        x = x * k->decay;
    k->param[i] = x - u * k->lr;
}

#endif
