/* Element-wise kernels of the Adam family (see ew.h for the conventions): the inner Adam
 * direction of Emerging-Optimizers (calculate_adam_update, muon.md §5), shared by SOAP, MOSO
 * and Muown, and torch's AdamW step (muon.md §6). */
#ifndef EOPT_KERNELS_ADAM_H
#define EOPT_KERNELS_ADAM_H

#define EOPT_EW_ADAM(X) X(adam_update) X(adamw)

/* calculate_adam_update (bias corrections bc1, bc2, bcn are 1 when correct_bias is off):
 *   m = lerp(m, g, 1 - b1);  v = lerp(v, g^2, 1 - b2)
 *   mom = nesterov ? b1 m / bcn + (1 - b1) g / bc1 : m / bc1;   dir = mom / (sqrt(v / bc2) + eps) */
typedef struct {
    float *dir;                  /* may alias grad */
    float *exp_avg, *exp_avg_sq; /* m, v */
    const float *grad;
    float one_minus_beta1, one_minus_beta2;
    float bc1, bc2; /* 1 - b1^t, 1 - b2^t */
    float eps;
    float beta1;
    float bcn; /* 1 - b1^(t+1) */
    int nesterov;
} eopt_ew_adam_update_args;

EOPT_HD void eopt_ew_adam_update(const eopt_ew_adam_update_args *k, int64_t i)
{
    float g = k->grad[i];
    float m = eopt_lerp(k->exp_avg[i], g, k->one_minus_beta1);
    float v = eopt_lerp(k->exp_avg_sq[i], g * g, k->one_minus_beta2);
    k->exp_avg[i] = m;
    k->exp_avg_sq[i] = v;
    float mom = k->nesterov ? k->beta1 * m / k->bcn + k->one_minus_beta1 * g / k->bc1 : m / k->bc1;
    k->dir[i] = mom / (sqrtf(v / k->bc2) + k->eps);
}

/* torch.optim.AdamW, one element (g = -grad when maximizing):
 *   P = P (1 - lr wd);  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
 *   P = P - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps),  bc1 = 1 - b1^t, bc2 = 1 - b2^t */
typedef struct {
    float *param, *exp_avg, *exp_avg_sq;
    const float *grad;
    float decay; /* 1 - lr wd */
    float one_minus_beta1, beta2, one_minus_beta2;
    float sqrt_bc2;
    float eps;
    float neg_step_size; /* -lr / bc1 */
    int maximize;
} eopt_ew_adamw_args;

EOPT_HD void eopt_ew_adamw(const eopt_ew_adamw_args *k, int64_t i)
{
    float g = k->maximize ? -k->grad[i] : k->grad[i];
    float p = k->param[i] * k->decay;
    float m = eopt_lerp(k->exp_avg[i], g, k->one_minus_beta1);
    float v = k->exp_avg_sq[i] * k->beta2 + k->one_minus_beta2 * (g * g);
    k->exp_avg[i] = m;
    k->exp_avg_sq[i] = v;
    k->param[i] = p + k->neg_step_size * (m / (sqrtf(v) / k->sqrt_bc2 + k->eps));
}

#endif
