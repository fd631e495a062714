/* Core element-wise kernels (see ew.h for the conventions). Most share one of a few argument
 * shapes: y = f(a), y = f(a, b), or a broadcast of a per-row / per-column vector b. */
#ifndef EOPT_KERNELS_CORE_H
#define EOPT_KERNELS_CORE_H

#define EOPT_EW_CORE(X)                                                                            \
    X(copy) X(fill) X(scale) X(add_scalar) X(axpby) X(axpbyz) X(lerp) X(mul) X(div) X(sqrt) X(rsqrt) \
    X(clamp) X(abs) X(sign) X(scale_ds) X(scale_ds_ratio) X(div_ds_clamp) X(div_ds_add) X(lerp_normalized)   \
    X(mul_row) X(mul_col) X(div_row) X(div_col)

/* y = f(a) */
typedef struct {
    float *y;
    const float *a;
} eopt_ew_unary;
/* y = f(a, b) */
typedef struct {
    float *y;
    const float *a, *b;
} eopt_ew_binary;
/* y = f(a, b[row]) or f(a, b[col]) of a row-major matrix with `cols` columns */
typedef struct {
    float *y;
    const float *a, *b;
    int64_t cols;
} eopt_ew_broadcast;
/* y = f(a, alpha) */
typedef struct {
    float *y;
    const float *a;
    float alpha;
} eopt_ew_unary_scalar;

typedef eopt_ew_unary eopt_ew_copy_args, eopt_ew_sqrt_args, eopt_ew_rsqrt_args, eopt_ew_abs_args, eopt_ew_sign_args;
typedef eopt_ew_binary eopt_ew_mul_args, eopt_ew_div_args;
typedef eopt_ew_broadcast eopt_ew_mul_row_args, eopt_ew_mul_col_args, eopt_ew_div_row_args, eopt_ew_div_col_args;
typedef eopt_ew_unary_scalar eopt_ew_scale_args, eopt_ew_add_scalar_args;

typedef struct {
    float *y;
    float value;
} eopt_ew_fill_args;
typedef struct {
    float *y;
    const float *a, *b;
    float alpha, beta;
} eopt_ew_axpby_args;
typedef struct {
    float *y;
    const float *a, *b, *c;
    float alpha, beta, gamma;
} eopt_ew_axpbyz_args;
typedef struct {
    float *y;
    const float *a, *b;
    float w;
} eopt_ew_lerp_args;
typedef struct {
    float *y;
    const float *a;
    float lo, hi;
} eopt_ew_clamp_args;
typedef struct {
    float *y;
    const float *a;
    const float *factor; /* device scalar */
    float alpha;
} eopt_ew_scale_ds_args;
typedef struct {
    float *y;
    const float *a;
    const float *num, *den; /* device scalars */
    float min_den;
} eopt_ew_scale_ds_ratio_args;
typedef struct {
    float *y;
    const float *a;
    const float *norm; /* device scalar */
    float min;
} eopt_ew_div_ds_clamp_args;
typedef struct {
    float *y;
    const float *a;
    const float *norm; /* device scalar */
    float eps;
} eopt_ew_div_ds_add_args;
typedef struct {
    float *y;
    const float *a, *b;
    const float *norm; /* device scalar */
    float w, eps;
} eopt_ew_lerp_normalized_args;

EOPT_HD void eopt_ew_copy(const eopt_ew_copy_args *k, int64_t i) { k->y[i] = k->a[i]; }
EOPT_HD void eopt_ew_fill(const eopt_ew_fill_args *k, int64_t i) { k->y[i] = k->value; }
/* y = alpha a */
EOPT_HD void eopt_ew_scale(const eopt_ew_scale_args *k, int64_t i) { k->y[i] = k->alpha * k->a[i]; }
/* y = a + alpha */
EOPT_HD void eopt_ew_add_scalar(const eopt_ew_add_scalar_args *k, int64_t i) { k->y[i] = k->a[i] + k->alpha; }
/* y = alpha a + beta b */
EOPT_HD void eopt_ew_axpby(const eopt_ew_axpby_args *k, int64_t i) { k->y[i] = k->alpha * k->a[i] + k->beta * k->b[i]; }
/* y = alpha a + beta b + gamma c */
EOPT_HD void eopt_ew_axpbyz(const eopt_ew_axpbyz_args *k, int64_t i)
{
    k->y[i] = k->alpha * k->a[i] + k->beta * k->b[i] + k->gamma * k->c[i];
}
/* y = lerp(a, b, w) */
EOPT_HD void eopt_ew_lerp(const eopt_ew_lerp_args *k, int64_t i) { k->y[i] = eopt_lerp(k->a[i], k->b[i], k->w); }
EOPT_HD void eopt_ew_mul(const eopt_ew_mul_args *k, int64_t i) { k->y[i] = k->a[i] * k->b[i]; }
EOPT_HD void eopt_ew_div(const eopt_ew_div_args *k, int64_t i) { k->y[i] = k->a[i] / k->b[i]; }
EOPT_HD void eopt_ew_sqrt(const eopt_ew_sqrt_args *k, int64_t i) { k->y[i] = sqrtf(k->a[i]); }
EOPT_HD void eopt_ew_rsqrt(const eopt_ew_rsqrt_args *k, int64_t i) { k->y[i] = 1.0f / sqrtf(k->a[i]); }
/* y = min(max(a, lo), hi) */
EOPT_HD void eopt_ew_clamp(const eopt_ew_clamp_args *k, int64_t i)
{
    float v = k->a[i] < k->lo ? k->lo : k->a[i];
    k->y[i] = v > k->hi ? k->hi : v;
}
EOPT_HD void eopt_ew_abs(const eopt_ew_abs_args *k, int64_t i) { k->y[i] = fabsf(k->a[i]); }
/* torch.sign: -1, 0 or 1 (and NaN stays NaN) */
EOPT_HD void eopt_ew_sign(const eopt_ew_sign_args *k, int64_t i)
{
    float v = k->a[i];
    k->y[i] = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : v);
}
/* y = a (alpha factor): scale by a device scalar */
EOPT_HD void eopt_ew_scale_ds(const eopt_ew_scale_ds_args *k, int64_t i)
{
    k->y[i] = k->a[i] * (k->alpha * k->factor[0]);
}
/* y = a (num / max(den, min_den)): e.g. restoring a Frobenius norm */
EOPT_HD void eopt_ew_scale_ds_ratio(const eopt_ew_scale_ds_ratio_args *k, int64_t i)
{
    float den = k->den[0] < k->min_den ? k->min_den : k->den[0]; /* NaN propagates, as torch.clamp_min */
    k->y[i] = k->a[i] * (k->num[0] / den);
}
/* y = a / max(norm, min): normalisation by a norm with a lower clamp */
EOPT_HD void eopt_ew_div_ds_clamp(const eopt_ew_div_ds_clamp_args *k, int64_t i)
{
    float den = k->norm[0] < k->min ? k->min : k->norm[0]; /* NaN propagates, as torch.clamp_min */
    k->y[i] = k->a[i] / den;
}
/* y = a / (norm + eps): normalisation by a norm with an additive epsilon */
EOPT_HD void eopt_ew_div_ds_add(const eopt_ew_div_ds_add_args *k, int64_t i)
{
    k->y[i] = k->a[i] / (k->norm[0] + k->eps);
}
/* y = lerp(a, b / (norm + eps), w): blend towards the Frobenius-normalised b (softening) */
EOPT_HD void eopt_ew_lerp_normalized(const eopt_ew_lerp_normalized_args *k, int64_t i)
{
    k->y[i] = eopt_lerp(k->a[i], k->b[i] / (k->norm[0] + k->eps), k->w);
}
/* Broadcasts of a per-row vector b[i / cols] or per-column vector b[i % cols]. */
EOPT_HD void eopt_ew_mul_row(const eopt_ew_mul_row_args *k, int64_t i) { k->y[i] = k->a[i] * k->b[i / k->cols]; }
EOPT_HD void eopt_ew_mul_col(const eopt_ew_mul_col_args *k, int64_t i) { k->y[i] = k->a[i] * k->b[i % k->cols]; }
EOPT_HD void eopt_ew_div_row(const eopt_ew_div_row_args *k, int64_t i) { k->y[i] = k->a[i] / k->b[i / k->cols]; }
EOPT_HD void eopt_ew_div_col(const eopt_ew_div_col_args *k, int64_t i) { k->y[i] = k->a[i] / k->b[i % k->cols]; }

#endif
