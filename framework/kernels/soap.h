/* Element-wise kernels of the soap family: SOAP and MOSO (see ew.h for the conventions).
 * `cols` is the row length of the matrix the kernel walks (row = i / cols, col = i % cols). */
#ifndef EOPT_KERNELS_SOAP_H
#define EOPT_KERNELS_SOAP_H

#define EOPT_EW_SOAP(X)                                                                                   \
    X(soap_eye) X(soap_offdiag) X(soap_diag) X(soap_add_diag) X(soap_eigh_desc) X(soap_kl_scale)        \
    X(soap_keep_or_take) X(soap_apply)

typedef struct {
    float *y;
    int64_t cols;
} eopt_ew_soap_eye_args;
typedef struct {
    float *y;
    const float *a;
    int64_t cols;
} eopt_ew_soap_matrix;
typedef eopt_ew_soap_matrix eopt_ew_soap_offdiag_args, eopt_ew_soap_diag_args;
typedef struct {
    float *y;
    const float *a;
    float eps;
    int64_t cols;
} eopt_ew_soap_add_diag_args;

/* y = I (cols x cols) */
EOPT_HD void eopt_ew_soap_eye(const eopt_ew_soap_eye_args *k, int64_t i)
{
    k->y[i] = i / k->cols == i % k->cols ? 1.0f : 0.0f;
}
/* y = a with its diagonal zeroed (the off-diagonal part, for the "exactly diagonal?" test) */
EOPT_HD void eopt_ew_soap_offdiag(const eopt_ew_soap_offdiag_args *k, int64_t i)
{
    k->y[i] = i / k->cols == i % k->cols ? 0.0f : k->a[i];
}
/* y[j] = a[j, j], j < n = cols */
EOPT_HD void eopt_ew_soap_diag(const eopt_ew_soap_diag_args *k, int64_t i) { k->y[i] = k->a[i * (k->cols + 1)]; }
/* y = a + eps I: torch.addmm(K, I, I, alpha=eps), exact off the diagonal */
EOPT_HD void eopt_ew_soap_add_diag(const eopt_ew_soap_add_diag_args *k, int64_t i)
{
    k->y[i] = i / k->cols == i % k->cols ? k->a[i] + k->eps : k->a[i];
}

/* Descending eigenvectors from syevd's ascending ones: Q[:, j] = V[:, cols - 1 - j]. With
 * max_offdiag (SOAP's eigh_with_fallback) == 0 (the input was exactly diagonal), Q = the
 * identity columns in the order `order` (argsort of the diagonal, descending, ties by
 * ascending index) instead. */
typedef struct {
    float *q;
    const float *vecs;        /* V, ascending eigenvectors as columns */
    const float *max_offdiag; /* device scalar, or NULL */
    const int32_t *order;
    int64_t cols;
} eopt_ew_soap_eigh_desc_args;

EOPT_HD void eopt_ew_soap_eigh_desc(const eopt_ew_soap_eigh_desc_args *k, int64_t i)
{
    int64_t r = i / k->cols, c = i % k->cols;
    if (k->max_offdiag && k->max_offdiag[0] == 0.0f)
        k->q[i] = r == k->order[c] ? 1.0f : 0.0f;
    else
        k->q[i] = k->vecs[r * k->cols + k->cols - 1 - c];
}

/* KL-Shampoo: y = inv_dim max(a, eps)^-1 (NaN propagates like clamp_min) */
typedef struct {
    float *y;
    const float *a;
    float inv_dim, eps;
} eopt_ew_soap_kl_scale_args;

EOPT_HD void eopt_ew_soap_kl_scale(const eopt_ew_soap_kl_scale_args *k, int64_t i)
{
    float v = k->a[i] < k->eps ? k->eps : k->a[i];
    k->y[i] = k->inv_dim * (1.0f / v);
}

/* Adaptive refresh commit: keep y when both factors meet the criterion
 * tol |K| >= |K| - |approx| (norms = {|L|, |approx_L|, |R|, |approx_R|}), else take a. */
typedef struct {
    float *y;
    const float *a;
    const float *norms; /* 4 device scalars */
    float tol;
} eopt_ew_soap_keep_or_take_args;

EOPT_HD void eopt_ew_soap_keep_or_take(const eopt_ew_soap_keep_or_take_args *k, int64_t i)
{
    const float *d = k->norms;
    int skip = k->tol * d[0] >= d[0] - d[1] && k->tol * d[2] >= d[2] - d[3];
    if (!skip)
        k->y[i] = k->a[i];
}

/* The parameter update:
 *   decay != 0: P = P + decay P (decoupled -wd lr or independent -wd)
 *   max_rms != 0: RMS clip, U = U min(max_rms / (sqrt(mean(U^2)) + rms_eps), 1)
 *   P = P + neg_lr U */
typedef struct {
    float *param;
    const float *update;
    const float *mean_sq; /* device scalar mean(U^2), read only when max_rms != 0 */
    float neg_lr, max_rms, rms_eps, decay;
} eopt_ew_soap_apply_args;

EOPT_HD void eopt_ew_soap_apply(const eopt_ew_soap_apply_args *k, int64_t i)
{
    float p = k->param[i], u = k->update[i];
    if (k->decay != 0.0f)
        p = p + k->decay * p;
    if (k->max_rms != 0.0f) {
        float c = k->max_rms / (sqrtf(k->mean_sq[0]) + k->rms_eps);
        u = u * (c > 1.0f ? 1.0f : c);
    }
    k->param[i] = p + k->neg_lr * u;
}

#endif
