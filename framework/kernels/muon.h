/* Element-wise kernels of the Muon family: NVIDIA Muon, AdaptiveMuon (AdaMuon / NorMuon / NAMO)
 * and Muown (see ew.h for the calling convention; muon.md §3-4, dion-muown.md §9). */
#ifndef EOPT_KERNELS_MUON_H
#define EOPT_KERNELS_MUON_H

#define EOPT_EW_MUON(X)                                                                                     \
    X(muon_momentum) X(muon_apply) X(adamuon_apply) X(normuon_scale) X(normuon_ratio) X(namo_alpha)        \
    X(muown_split) X(muown_recompose)

/* Weight decay, EMA momentum and the Nesterov blend in one pass (muon.md §3 steps 1-3):
 * y = M (in place), a = G, b = P; s0 = 1 - mu, s1 = mu, s2 = wd.
 * y3 != NULL ("l2" decay): G = G + wd P, written back into the gradient as upstream does.
 * y2 != NULL (Nesterov): X = lerp(G, M, mu), the input of the orthogonalisation. */
EOPT_HD void eopt_ew_muon_momentum(const eopt_ew *e, int64_t i)
{
    float g = e->a[i];
    if (e->y3) {
        g = g + e->s[2] * e->b[i];
        e->y3[i] = g;
    }
    float m = eopt_lerp(e->y[i], g, e->s[0]);
    e->y[i] = m;
    if (e->y2)
        e->y2[i] = eopt_lerp(g, m, e->s[1]);
}

/* The parameter update shared by the Muon family: P = P + s0 P (decoupled / independent / palm
 * decay with the pre-step P; skipped when s0 == 0), then P = P + s3 ((u s1) s2), s1 = the Muon
 * scale factor, s2 = extra_scale_factor, s3 = -lr. */
EOPT_HD void eopt_muon_update(const eopt_ew *e, int64_t i, float u)
{
    float p = e->y[i];
    if (e->s[0] != 0.0f)
        p = p + e->s[0] * p;
    e->y[i] = p + e->s[3] * ((u * e->s[1]) * e->s[2]);
}

/* y = P, a = the orthogonalised update; ds (optional) = one device factor (NorMuon's norm ratio,
 * NAMO's alpha) applied first: u = a ds[0]. */
EOPT_HD void eopt_ew_muon_apply(const eopt_ew *e, int64_t i)
{
    eopt_muon_update(e, i, e->ds ? e->a[i] * e->ds[0] : e->a[i]);
}

/* AdaMuon (§4.1): y = P, y2 = V, a = O; s0..s3 as muon_apply, s4 = 1 - b2, s5 = eps:
 *   V = lerp(V, O^2, 1 - b2);  u = O / (sqrt(V) + eps) */
EOPT_HD void eopt_ew_adamuon_apply(const eopt_ew *e, int64_t i)
{
    float o = e->a[i];
    float v = eopt_lerp(e->y2[i], o * o, e->s[4]);
    e->y2[i] = v;
    eopt_muon_update(e, i, o / (sqrtf(v) + e->s[5]));
}

/* NorMuon (§4.2): y = N = O / sqrt(max(V, eps)), a = O, b = V (per row when s1 != 0, per
 * column otherwise), s0 = eps. NaN in V propagates, as torch.clamp_min. */
EOPT_HD void eopt_ew_normuon_scale(const eopt_ew *e, int64_t i)
{
    float v = e->b[e->s[1] != 0.0f ? i / e->cols : i % e->cols];
    v = v < e->s[0] ? e->s[0] : v;
    e->y[i] = e->a[i] * (1.0f / sqrtf(v));
}

/* n = 1: y = ds[0] / max(ds[1], s0), NorMuon's Frobenius-norm matching ||O||_F / ||N||_F. */
EOPT_HD void eopt_ew_normuon_ratio(const eopt_ew *e, int64_t i)
{
    float den = e->ds[1] < e->s[0] ? e->s[0] : e->ds[1];
    e->y[i] = e->ds[0] / den;
}

/* NAMO (§4.3), n = 1: y = V (shape (1,)), y2 = alpha, ds = {||R||_F, ||X||_F}, s0 = 1 - b2,
 * s1 = eps:  V = lerp(V, ||R||^2, 1 - b2);  alpha = ||X||_F / (sqrt(V) + eps) */
EOPT_HD void eopt_ew_namo_alpha(const eopt_ew *e, int64_t i)
{
    float q = e->ds[0] * e->ds[0];
    float v = eopt_lerp(e->y[i], q, e->s[0]);
    e->y[i] = v;
    e->y2[i] = e->ds[1] / (sqrtf(v) + e->s[1]);
}

/* Muown's weight-norm split and momentum (dion-muown.md §9.3 steps 1-2), per element with
 * row vectors b = grad_g, c = g, d = v_norm: y = B (momentum, in place), y2 = u = W / g on input
 * and v = u v_norm on output, a = G, s0 = 1 - momentum:
 *   grad_v = (g / v_norm) (G - u grad_g);   B = lerp(B, grad_v, 1 - momentum) */
EOPT_HD void eopt_ew_muown_split(const eopt_ew *e, int64_t i)
{
    const int64_t r = i / e->cols;
    float u = e->y2[i];
    float gv = (e->c[r] / e->d[r]) * (e->a[i] - u * e->b[r]);
    e->y[i] = eopt_lerp(e->y[i], gv, e->s[0]);
    e->y2[i] = u * e->d[r];
}

/* Muown's recomposition (§9.3 step 7): y = W = g (v_new / ||v_new||_row), a = v_new, b = g,
 * c = the row norms of v_new (no clamp: a zero row becomes NaN, as upstream). */
EOPT_HD void eopt_ew_muown_recompose(const eopt_ew *e, int64_t i)
{
    const int64_t r = i / e->cols;
    e->y[i] = e->b[r] * (e->a[i] / e->c[r]);
}

#endif
