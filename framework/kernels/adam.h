/* Element-wise kernels of the Adam family (see ew.h for the calling convention): the inner
 * Adam direction of Emerging-Optimizers (calculate_adam_update, muon.md §5), shared by SOAP,
 * MOSO and Muown, and torch's AdamW step (muon.md §6). */
#ifndef EOPT_KERNELS_ADAM_H
#define EOPT_KERNELS_ADAM_H

#define EOPT_EW_ADAM(X) X(adam_update) X(adamw)

/* calculate_adam_update for one element: m, v updated in place, the direction returned.
 * h[0] = 1 - b1, h[1] = 1 - b2, h[2] = bc1, h[3] = bc2, h[4] = eps, h[5] = nesterov (0/1),
 * h[6] = b1, h[7] = bcn (bias corrections 1 when correct_bias is off):
 *   m = lerp(m, g, 1 - b1);  v = lerp(v, g^2, 1 - b2)
 *   mom = nesterov ? b1 m / bcn + (1 - b1) g / bc1 : m / bc1;   return mom / (sqrt(v / bc2) + eps) */
EOPT_HD float eopt_adam_direction(const float *h, float g, float *m, float *v)
{
    float mn = eopt_lerp(*m, g, h[0]);
    float vn = eopt_lerp(*v, g * g, h[1]);
    *m = mn;
    *v = vn;
    float mom = h[5] != 0.0f ? h[6] * mn / h[7] + h[0] * g / h[2] : mn / h[2];
    return mom / (sqrtf(vn / h[3]) + h[4]);
}

/* y = eopt_adam_direction(s, a, &y2, &y3): a = g, y2 = exp_avg, y3 = exp_avg_sq (y may alias a). */
EOPT_HD void eopt_ew_adam_update(const eopt_ew *e, int64_t i)
{
    float m = e->y2[i], v = e->y3[i];
    float u = eopt_adam_direction(e->s, e->a[i], &m, &v);
    e->y2[i] = m;
    e->y3[i] = v;
    e->y[i] = u;
}

/* torch.optim.AdamW, one element: y = P, y2 = exp_avg, y3 = exp_avg_sq, a = grad.
 * s0 = 1 - lr wd, s1 = 1 - b1, s2 = b2, s3 = 1 - b2, s4 = sqrt(bc2), s5 = eps, s6 = -lr / bc1,
 * s7 = -1 (maximize) or 1:
 *   P = P s0;  m = lerp(m, g, 1 - b1);  v = b2 v + (1 - b2) g^2
 *   P = P + s6 m / (sqrt(v) / sqrt(bc2) + eps) */
EOPT_HD void eopt_ew_adamw(const eopt_ew *e, int64_t i)
{
    float g = e->s[7] < 0.0f ? -e->a[i] : e->a[i];
    float p = e->y[i] * e->s[0];
    float m = eopt_lerp(e->y2[i], g, e->s[1]);
    float v = e->y3[i] * e->s[2] + e->s[3] * (g * g);
    e->y2[i] = m;
    e->y3[i] = v;
    e->y[i] = p + e->s[6] * (m / (sqrtf(v) / e->s[4] + e->s[5]));
}

#endif
