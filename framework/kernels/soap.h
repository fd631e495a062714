/* Element-wise kernels of the soap family: SOAP and MOSO (see ew.h for the calling convention).
 * `cols` is the row length of the matrix the kernel walks (row = i / cols, col = i % cols). */
#ifndef EOPT_KERNELS_SOAP_H
#define EOPT_KERNELS_SOAP_H

#define EOPT_EW_SOAP(X)                                                                                   \
    X(soap_eye) X(soap_offdiag) X(soap_diag) X(soap_add_diag) X(soap_eigh_desc) X(soap_kl_scale)        \
    X(soap_keep_or_take) X(soap_apply)

/* y = I (cols x cols) */
EOPT_HD void eopt_ew_soap_eye(const eopt_ew *e, int64_t i) { e->y[i] = i / e->cols == i % e->cols ? 1.0f : 0.0f; }
/* y = a with its diagonal zeroed (the off-diagonal part, for the "exactly diagonal?" test) */
EOPT_HD void eopt_ew_soap_offdiag(const eopt_ew *e, int64_t i)
{
    e->y[i] = i / e->cols == i % e->cols ? 0.0f : e->a[i];
}
/* y[j] = a[j, j], j < n = cols */
EOPT_HD void eopt_ew_soap_diag(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i * (e->cols + 1)]; }
/* y = a + s0 I: torch.addmm(K, I, I, alpha=eps), exact off the diagonal */
EOPT_HD void eopt_ew_soap_add_diag(const eopt_ew *e, int64_t i)
{
    e->y[i] = i / e->cols == i % e->cols ? e->a[i] + e->s[0] : e->a[i];
}
/* Descending eigenvectors from syevd's ascending ones: y[:, j] = a[:, cols - 1 - j]. With ds
 * (SOAP's eigh_with_fallback) and ds[0] == 0 (max |off-diagonal| of the input: it was exactly
 * diagonal), y = the identity columns in the order ia (argsort of the diagonal, descending,
 * ties by ascending index) instead. */
EOPT_HD void eopt_ew_soap_eigh_desc(const eopt_ew *e, int64_t i)
{
    int64_t r = i / e->cols, c = i % e->cols;
    if (e->ds && e->ds[0] == 0.0f)
        e->y[i] = r == e->ia[c] ? 1.0f : 0.0f;
    else
        e->y[i] = e->a[r * e->cols + e->cols - 1 - c];
}
/* KL-Shampoo: y = s0 * max(a, s1)^-1 (s0 = 1/dim, s1 = eps; NaN propagates like clamp_min) */
EOPT_HD void eopt_ew_soap_kl_scale(const eopt_ew *e, int64_t i)
{
    float v = e->a[i] < e->s[1] ? e->s[1] : e->a[i];
    e->y[i] = e->s[0] * (1.0f / v);
}
/* Adaptive refresh commit: keep y when both factors meet the criterion tol*|K| >= |K| - |approx|
 * (ds = {|L|, |approx_L|, |R|, |approx_R|}, s0 = tol), else take a. */
EOPT_HD void eopt_ew_soap_keep_or_take(const eopt_ew *e, int64_t i)
{
    const float *d = e->ds;
    int skip = e->s[0] * d[0] >= d[0] - d[1] && e->s[0] * d[2] >= d[2] - d[3];
    if (!skip)
        e->y[i] = e->a[i];
}
/* The parameter update: y = P, a = U. s3 != 0: decay first, P = P + s3 P (decoupled -wd lr or
 * independent -wd). s1 != 0: RMS clip, U = U c with c = min(s1 / (sqrt(ds[0]) + s2), 1)
 * (ds[0] = mean(U^2), s2 = 1e-7). Then P = P + s0 U (s0 = -lr). */
EOPT_HD void eopt_ew_soap_apply(const eopt_ew *e, int64_t i)
{
    float p = e->y[i], u = e->a[i];
    if (e->s[3] != 0.0f)
        p = p + e->s[3] * p;
    if (e->s[1] != 0.0f) {
        float c = e->s[1] / (sqrtf(e->ds[0]) + e->s[2]);
        u = u * (c > 1.0f ? 1.0f : c);
    }
    e->y[i] = p + e->s[0] * u;
}

#endif
