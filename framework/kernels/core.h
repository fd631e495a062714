/* Core element-wise kernels (see ew.h for the calling convention). */
#ifndef EOPT_KERNELS_CORE_H
#define EOPT_KERNELS_CORE_H

#define EOPT_EW_CORE(X)                                                                            \
    X(copy) X(fill) X(scale) X(add_scalar) X(axpby) X(axpbyz) X(lerp) X(mul) X(div) X(sqrt) X(rsqrt) \
    X(clamp) X(abs) X(sign) X(scale_ds) X(scale_ds_ratio) X(div_ds_clamp) X(div_ds_add) X(lerp_normalized)   \
    X(mul_row) X(mul_col) X(div_row) X(div_col)

EOPT_HD void eopt_ew_copy(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i]; }
EOPT_HD void eopt_ew_fill(const eopt_ew *e, int64_t i) { e->y[i] = e->s[0]; }
/* y = s0 a */
EOPT_HD void eopt_ew_scale(const eopt_ew *e, int64_t i) { e->y[i] = e->s[0] * e->a[i]; }
/* y = a + s0 */
EOPT_HD void eopt_ew_add_scalar(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] + e->s[0]; }
/* y = s0 a + s1 b */
EOPT_HD void eopt_ew_axpby(const eopt_ew *e, int64_t i) { e->y[i] = e->s[0] * e->a[i] + e->s[1] * e->b[i]; }
/* y = s0 a + s1 b + s2 c */
EOPT_HD void eopt_ew_axpbyz(const eopt_ew *e, int64_t i)
{
    e->y[i] = e->s[0] * e->a[i] + e->s[1] * e->b[i] + e->s[2] * e->c[i];
}
/* y = lerp(a, b, s0) */
EOPT_HD void eopt_ew_lerp(const eopt_ew *e, int64_t i) { e->y[i] = eopt_lerp(e->a[i], e->b[i], e->s[0]); }
EOPT_HD void eopt_ew_mul(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] * e->b[i]; }
EOPT_HD void eopt_ew_div(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] / e->b[i]; }
EOPT_HD void eopt_ew_sqrt(const eopt_ew *e, int64_t i) { e->y[i] = sqrtf(e->a[i]); }
EOPT_HD void eopt_ew_rsqrt(const eopt_ew *e, int64_t i) { e->y[i] = 1.0f / sqrtf(e->a[i]); }
/* y = min(max(a, s0), s1) */
EOPT_HD void eopt_ew_clamp(const eopt_ew *e, int64_t i)
{
    float v = e->a[i] < e->s[0] ? e->s[0] : e->a[i];
    e->y[i] = v > e->s[1] ? e->s[1] : v;
}
EOPT_HD void eopt_ew_abs(const eopt_ew *e, int64_t i) { e->y[i] = fabsf(e->a[i]); }
/* torch.sign: -1, 0 or 1 (and NaN stays NaN) */
EOPT_HD void eopt_ew_sign(const eopt_ew *e, int64_t i)
{
    float v = e->a[i];
    e->y[i] = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : v);
}
/* y = a * (s0 * ds[0]): scale by a device scalar */
EOPT_HD void eopt_ew_scale_ds(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] * (e->s[0] * e->ds[0]); }
/* y = a * (ds[0] / max(ds[1], s0)): e.g. restoring a Frobenius norm */
EOPT_HD void eopt_ew_scale_ds_ratio(const eopt_ew *e, int64_t i)
{
    float den = e->ds[1] < e->s[0] ? e->s[0] : e->ds[1]; /* NaN propagates, as torch.clamp_min */
    e->y[i] = e->a[i] * (e->ds[0] / den);
}
/* y = a / max(ds[0], s0): normalisation by a norm with a lower clamp */
EOPT_HD void eopt_ew_div_ds_clamp(const eopt_ew *e, int64_t i)
{
    float den = e->ds[0] < e->s[0] ? e->s[0] : e->ds[0]; /* NaN propagates, as torch.clamp_min */
    e->y[i] = e->a[i] / den;
}
/* y = a / (ds[0] + s0): normalisation by a norm with an additive epsilon */
EOPT_HD void eopt_ew_div_ds_add(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] / (e->ds[0] + e->s[0]); }
/* y = lerp(a, b / (ds[0] + s1), s0): blend towards the Frobenius-normalised b (softening) */
EOPT_HD void eopt_ew_lerp_normalized(const eopt_ew *e, int64_t i)
{
    e->y[i] = eopt_lerp(e->a[i], e->b[i] / (e->ds[0] + e->s[1]), e->s[0]);
}
/* Broadcasts of a per-row vector b[i / cols] or per-column vector b[i % cols]. */
EOPT_HD void eopt_ew_mul_row(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] * e->b[i / e->cols]; }
EOPT_HD void eopt_ew_mul_col(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] * e->b[i % e->cols]; }
EOPT_HD void eopt_ew_div_row(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] / e->b[i / e->cols]; }
EOPT_HD void eopt_ew_div_col(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] / e->b[i % e->cols]; }

#endif
