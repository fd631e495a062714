/* Element-wise kernels of the dion family: Muon, NorMuon, Dion2, NorDion2 and the adamw / lion
 * groups (see ew.h for the calling convention; dion-muown.md §4-§8). Hyperparameters arrive
 * already rounded to float32, as dion turns every group value into a float32 tensor. */
#ifndef EOPT_KERNELS_DION_H
#define EOPT_KERNELS_DION_H

#define EOPT_EW_DION(X) X(dion_momentum) X(dion_variance) X(dion_apply) X(dion_adamw) X(dion_lion)

/* torch's min(sign(p) + 1, 1): 1 where p >= 0 (a zero product decays), 0 where p < 0, NaN stays. */
EOPT_HD float eopt_dion_keep(float p) { return p < 0.0f ? 0.0f : (p >= 0.0f ? 1.0f : p); }

/* Heavy-ball momentum without dampening (§4 steps 1-2): y = M (in place), a = G, s0 = mu:
 *   M = mu M + G;   y2 != NULL (Nesterov): U = mu M + G with the new M. */
EOPT_HD void eopt_ew_dion_momentum(const eopt_ew *e, int64_t i)
{
    float g = e->a[i];
    float m = e->s[0] * e->y[i] + g;
    e->y[i] = m;
    if (e->y2)
        e->y2[i] = e->s[0] * m + g;
}

/* NorMuon's neuron variance (§5 steps 3-4), one element per row: y = V (in place), a = the row
 * mean squares r, s0 = 1 - beta2, s1 = 1e-8:  V = lerp(V, r, 1 - beta2);  y2 = sqrt(V) + 1e-8 */
EOPT_HD void eopt_ew_dion_variance(const eopt_ew *e, int64_t i)
{
    float v = eopt_lerp(e->y[i], e->a[i], e->s[0]);
    e->y[i] = v;
    e->y2[i] = sqrtf(v) + e->s[1];
}

/* The matrix update (§4 steps 5-6): y = X, a = O; s0 = 1 - lr wd, s1 = adjusted lr,
 * s2 = lr wd, s3 != 0: cautious decay  X = X - lr wd (X c), c = [X O >= 0]; then X = X - adj O. */
EOPT_HD void eopt_ew_dion_apply(const eopt_ew *e, int64_t i)
{
    float x = e->y[i], o = e->a[i];
    if (e->s[3] != 0.0f)
        x = x - e->s[2] * (x * eopt_dion_keep(x * o));
    else
        x = x * e->s[0];
    e->y[i] = x - e->s[1] * o;
}

/* AdamW (§8): y = X, y2 = M, y3 = V, a = G; s0 = 1 - b1, s1 = b2, s2 = 1 - b2,
 * s3 = sqrt(1 - b2^t), s4 = eps, s5 = lr / (1 - b1^t), s6 = 1 - lr wd, s7 = lr wd if cautious
 * (else 0):  X = X (1 - lr wd) - s5 M / (sqrt(V) / s3 + eps), then the cautious variant adds
 * lr wd X_old back where M X_old < 0. */
EOPT_HD void eopt_ew_dion_adamw(const eopt_ew *e, int64_t i)
{
    float g = e->a[i], x0 = e->y[i];
    float m = eopt_lerp(e->y2[i], g, e->s[0]);
    float v = e->s[1] * e->y3[i] + e->s[2] * (g * g);
    e->y2[i] = m;
    e->y3[i] = v;
    float x = x0 * e->s[6] - (m / (sqrtf(v) / e->s[3] + e->s[4])) * e->s[5];
    if (e->s[7] != 0.0f && m * x0 < 0.0f)
        x = x + e->s[7] * x0;
    e->y[i] = x;
}

/* Lion (§8): y = X, y2 = M, a = G; s0 = 1 - b1, s1 = 1 - b2, s2 = lr, s3 = 1 - lr wd,
 * s4 = lr wd, s5 != 0: cautious decay:
 *   U = sign(lerp(M, G, 1 - b1));  M = lerp(M, G, 1 - b2);  X = decay(X) - lr U */
EOPT_HD void eopt_ew_dion_lion(const eopt_ew *e, int64_t i)
{
    float g = e->a[i], m = e->y2[i];
    float c = eopt_lerp(m, g, e->s[0]);
    float u = c > 0.0f ? 1.0f : (c < 0.0f ? -1.0f : c);
    e->y2[i] = eopt_lerp(m, g, e->s[1]);
    float x = e->y[i];
    if (e->s[5] != 0.0f)
        x = x - e->s[4] * (x * eopt_dion_keep(x * u));
    else
        x = x * e->s[3];
    e->y[i] = x - u * e->s[2];
}

#endif
