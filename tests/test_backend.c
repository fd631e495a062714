/* Every backend operation against a naive double-precision loop on awkward shapes (1xN, Nx1,
 * odd sizes, padded leading dimensions), so that a transposed argument or an off-by-one fails.
 * Data goes through upload / download only, so EOPT_DEVICE=cuda runs the same tests on a GPU. */
#include <criterion/criterion.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "framework/rng.h"
#include "tests/testutil.h"

static eopt_backend *be;

static void setup(void) { be = tu_backend(0); }
static void teardown(void) { eopt_backend_close(be); }

TestSuite(backend_gemm, .init = setup, .fini = teardown);
TestSuite(backend_syrk, .init = setup, .fini = teardown);
TestSuite(backend_syevd, .init = setup, .fini = teardown);
TestSuite(backend_qr, .init = setup, .fini = teardown);
TestSuite(backend_ew, .init = setup, .fini = teardown);
TestSuite(backend_reduce, .init = setup, .fini = teardown);
TestSuite(backend_index, .init = setup, .fini = teardown);
TestSuite(backend_argsort, .init = setup, .fini = teardown);
TestSuite(backend_random, .init = setup, .fini = teardown);
TestSuite(backend_bf16, .init = setup, .fini = teardown);
TestSuite(backend_memory, .init = setup, .fini = teardown);

/* ---- host <-> device helpers ---- */

static void *dev_alloc(size_t bytes)
{
    void *d = be->alloc(be, bytes);
    cr_assert(d, "alloc of %zu bytes failed: %s", bytes, eopt_last_error());
    return d;
}

static float *dev_from(const float *h, int64_t n)
{
    float *d = dev_alloc((size_t)n * sizeof(float));
    be->upload(be, d, h, (size_t)n * sizeof(float));
    return d;
}

static int32_t *dev_ints(const int32_t *h, int n)
{
    int32_t *d = dev_alloc((size_t)n * sizeof(int32_t));
    be->upload(be, d, h, (size_t)n * sizeof(int32_t));
    return d;
}

static float *host_from(const float *d, int64_t n)
{
    float *h = malloc((size_t)n * sizeof(float));
    cr_assert(h);
    be->download(be, h, d, (size_t)n * sizeof(float));
    return h;
}

/* Uniform in [lo, hi) from the counter-based generator, evaluated on the host. */
static float *host_uniform(int64_t n, uint64_t seed, float lo, float hi)
{
    float *h = malloc((size_t)(n ? n : 1) * sizeof(float));
    cr_assert(h);
    for (int64_t j = 0; j < n; j++)
        h[j] = lo + (hi - lo) * eopt_rand_uniform(seed, (uint64_t)j);
    return h;
}

/* |got - want| <= tol * scale + 1e-30, with NaN equal to NaN and infinities exact. Asserts
 * only on a miss: a passing Criterion assertion costs an event, and these run per element. */
static void expect_close(double got, double want, double tol, double scale, const char *what, int64_t at)
{
    if (isnan(want) ? isnan(got) : got == want || fabs(got - want) <= tol * scale + 1e-30)
        return;
    cr_assert_fail("%s[%lld]: got %.9g, want %.9g (tol %.3g x %.3g)", what, (long long)at, got, want, tol, scale);
}

/* ---- gemm ---- */

/* Element (i, j) of op(X), X row-major with leading dimension ld (X^T stored when trans). */
static double op_at(const float *X, int trans, int ld, int i, int j)
{
    return trans ? X[(size_t)j * ld + i] : X[(size_t)i * ld + j];
}

/* C = alpha op(A) op(B) + beta C over `batch` matrices with gaps between them and padded rows;
 * the gaps and the padding must come back untouched. BF16 on CUDA stores A, B, C as bfloat16
 * (the CPU computes in float32 whatever the precision). */
static void check_gemm(eopt_prec prec, int ta, int tb, int m, int n, int k, int batch, double tol)
{
    const int bf16 = prec == EOPT_PREC_BF16 && be->device != EOPT_DEV_CPU;
    const size_t esz = bf16 ? 2 : 4;
    const int ra = ta ? k : m, ca = ta ? m : k, rb = tb ? n : k, cb = tb ? k : n;
    const int lda = ca + 3, ldb = cb + 2, ldc = n + 1;
    const int64_t sa = batch > 1 ? (int64_t)ra * lda + 5 : 0, sb = batch > 1 ? (int64_t)rb * ldb + 3 : 0,
                  sc = batch > 1 ? (int64_t)m * ldc + 7 : 0;
    const int64_t na = batch > 1 ? sa * batch : (int64_t)ra * lda, nb = batch > 1 ? sb * batch : (int64_t)rb * ldb,
                  nc = batch > 1 ? sc * batch : (int64_t)m * ldc;
    const float alpha = 0.75f, beta = -0.5f;
    float *hA = host_uniform(na, 11 + m, -1, 1), *hB = host_uniform(nb, 12 + n, -1, 1),
          *hC = host_uniform(nc, 13 + k, -1, 1);
    float *dA = dev_from(hA, na), *dB = dev_from(hB, nb), *dC = dev_from(hC, nc);
    void *xA = dA, *xB = dB, *xC = dC;
    if (bf16) { /* the reference uses the rounded inputs */
        xA = dev_alloc(na * esz), xB = dev_alloc(nb * esz), xC = dev_alloc(nc * esz);
        be->to_bf16(be, na, dA, xA), be->to_bf16(be, nb, dB, xB), be->to_bf16(be, nc, dC, xC);
        be->from_bf16(be, na, xA, dA), be->from_bf16(be, nb, xB, dB), be->from_bf16(be, nc, xC, dC);
        be->download(be, hA, dA, na * 4), be->download(be, hB, dB, nb * 4), be->download(be, hC, dC, nc * 4);
    }
    be->gemm(be, prec, ta, tb, m, n, k, alpha, xA, lda, sa, xB, ldb, sb, beta, xC, ldc, sc, batch);
    if (bf16)
        be->from_bf16(be, nc, xC, dC);
    float *got = host_from(dC, nc);
    char what[96];
    snprintf(what, sizeof what, "gemm prec %d ta %d tb %d %dx%dx%d batch %d", prec, ta, tb, m, n, k, batch);
    for (int64_t e = 0; e < nc; e++) { /* default: untouched (padding and gaps) */
        int64_t b = batch > 1 ? e / sc : 0, off = batch > 1 ? e % sc : e, i = off / ldc, j = off % ldc;
        if (i >= m || j >= n) {
            cr_assert_eq(got[e], hC[e], "%s: padding/gap element %lld changed", what, (long long)e);
            continue;
        }
        const float *A = hA + b * sa, *B = hB + b * sb;
        double s = 0, mag = 0;
        for (int p = 0; p < k; p++) {
            double t = op_at(A, ta, lda, (int)i, p) * op_at(B, tb, ldb, p, (int)j);
            s += t, mag += fabs(t);
        }
        expect_close(got[e], alpha * s + beta * hC[e], tol, fabs(alpha) * mag + fabs(beta * hC[e]) + 1e-6, what, e);
    }
    if (bf16)
        be->free(be, xA), be->free(be, xB), be->free(be, xC);
    be->free(be, dA), be->free(be, dB), be->free(be, dC);
    free(hA), free(hB), free(hC), free(got);
}

static const int gemm_shapes[][3] = {{1, 9, 4}, {9, 1, 4}, {7, 13, 5}, {33, 5, 17}, {5, 33, 1}, {1, 1, 1}, {40, 3, 64}};

static void gemm_all(eopt_prec prec, int batch, double tol)
{
    for (size_t s = 0; s < sizeof gemm_shapes / sizeof *gemm_shapes; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                check_gemm(prec, ta, tb, gemm_shapes[s][0], gemm_shapes[s][1], gemm_shapes[s][2], batch, tol);
}

Test(backend_gemm, fp32_transposes_padding) { gemm_all(EOPT_PREC_FP32, 1, 1e-5); }
Test(backend_gemm, fp32_batched_strides) { gemm_all(EOPT_PREC_FP32, 3, 1e-5); }
/* TF32 keeps 10 mantissa bits, bfloat16 7 (and C is stored in bfloat16). */
Test(backend_gemm, tf32) { gemm_all(EOPT_PREC_TF32, 2, 4e-3); }
Test(backend_gemm, bf16) { gemm_all(EOPT_PREC_BF16, 2, 2e-2); }

/* ---- syrk ---- */

static void check_syrk(eopt_prec prec, int trans, int n, int k, double tol)
{
    const int ra = trans ? k : n, ca = trans ? n : k, lda = ca + 2, ldc = n + 3;
    const float alpha = -1.25f, beta = 0.5f;
    float *hA = host_uniform((int64_t)ra * lda, 21 + n, -1, 1), *hC = host_uniform((int64_t)n * ldc, 22 + k, -1, 1);
    for (int i = 0; i < n; i++) /* a symmetric C */
        for (int j = i + 1; j < n; j++)
            hC[(size_t)i * ldc + j] = hC[(size_t)j * ldc + i];
    float *dA = dev_from(hA, (int64_t)ra * lda), *dC = dev_from(hC, (int64_t)n * ldc);
    be->syrk(be, prec, trans, n, k, alpha, dA, lda, beta, dC, ldc);
    float *got = host_from(dC, (int64_t)n * ldc);
    char what[64];
    snprintf(what, sizeof what, "syrk prec %d trans %d n %d k %d", prec, trans, n, k);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < ldc; j++) {
            size_t e = (size_t)i * ldc + j;
            if (j >= n) {
                cr_assert_eq(got[e], hC[e], "%s: padding (%d, %d) changed", what, i, j);
                continue;
            }
            cr_assert_eq(got[e], got[(size_t)j * ldc + i], "%s: not symmetric at (%d, %d)", what, i, j);
            double s = 0, mag = 0;
            for (int p = 0; p < k; p++) { /* (A A^T)_ij or (A^T A)_ij */
                double t = op_at(hA, trans, lda, i, p) * op_at(hA, trans, lda, j, p);
                s += t, mag += fabs(t);
            }
            expect_close(got[e], alpha * s + beta * hC[e], tol, fabs(alpha) * mag + fabs(beta * hC[e]) + 1e-6, what,
                         (int64_t)e);
        }
    be->free(be, dA), be->free(be, dC);
    free(hA), free(hC), free(got);
}

Test(backend_syrk, both_trans_all_precisions)
{
    /* 130: 3 mirror tiles; from 128 rows the CPU computes oneDNN's products in 4 x 4 tiles, 301
     * uneven ones; 259 x 600 (k >= 2n): 2 x 2 uneven tiles */
    static const int shapes[][2] = {{1, 7},   {7, 1},    {7, 13},   {33, 5},  {5, 33},
                                    {1, 1},   {130, 9},  {128, 40}, {301, 17}, {259, 600}};
    static const double tol[] = {1e-5, 4e-3, 2e-2};
    for (int prec = 0; prec < 3; prec++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int trans = 0; trans < 2; trans++)
                check_syrk((eopt_prec)prec, trans, shapes[s][0], shapes[s][1], tol[prec]);
}

/* ---- syevd ---- */

/* A symmetric from the lower triangle of `h` (the strict upper triangle holds garbage the
 * solver must not read); checks A Q = Q diag(w), Q^T Q = I, w ascending. */
static void check_syevd(int n, float *h)
{
    float *dA = dev_from(h, (int64_t)n * n), *dw = dev_alloc((size_t)n * sizeof(float));
    cr_assert_eq(be->syevd(be, n, dA, dw), EOPT_OK, "syevd %d: %s", n, eopt_last_error());
    float *Q = host_from(dA, (int64_t)n * n), *w = host_from(dw, n);
    double wmax = 1e-30;
    for (int j = 0; j < n; j++)
        wmax = fmax(wmax, fabs(w[j]));
    for (int j = 1; j < n; j++)
        cr_assert_leq(w[j - 1], w[j], "syevd %d: eigenvalues not ascending at %d", n, j);
    const double tol = 2e-6 * (n + 4);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double aq = 0, qq = 0;
            for (int p = 0; p < n; p++) {
                double a = p <= i ? h[(size_t)i * n + p] : h[(size_t)p * n + i];
                aq += a * Q[(size_t)p * n + j];
                qq += (double)Q[(size_t)p * n + i] * Q[(size_t)p * n + j];
            }
            expect_close(aq, (double)Q[(size_t)i * n + j] * w[j], tol, wmax, "syevd residual A Q - Q w", i * n + j);
            expect_close(qq, i == j, tol, 1, "syevd Q^T Q", i * n + j);
        }
    be->free(be, dA), be->free(be, dw);
    free(Q), free(w);
}

Test(backend_syevd, random_lower_triangle)
{
    static const int sizes[] = {1, 2, 7, 33, 100};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        float *h = host_uniform((int64_t)n * n, 31 + n, -1, 1);
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
                h[(size_t)i * n + j] = 1000.0f + (float)j; /* garbage above the diagonal */
        check_syevd(n, h);
        free(h);
    }
}

/* diag(3, -1, 2): w = (-1, 2, 3) and the vectors are unit vectors in that order. */
Test(backend_syevd, diagonal_known)
{
    float h[9] = {3, 0, 0, 0, -1, 0, 0, 0, 2};
    float *dA = dev_from(h, 9), *dw = dev_alloc(3 * sizeof(float));
    cr_assert_eq(be->syevd(be, 3, dA, dw), EOPT_OK, "%s", eopt_last_error());
    float *Q = host_from(dA, 9), *w = host_from(dw, 3);
    const float want_w[3] = {-1, 2, 3};
    const int row_of[3] = {1, 2, 0}; /* column j is +-e_{row_of[j]} */
    for (int j = 0; j < 3; j++) {
        cr_assert_float_eq(w[j], want_w[j], 1e-6);
        for (int i = 0; i < 3; i++)
            cr_assert_float_eq(fabsf(Q[i * 3 + j]), i == row_of[j] ? 1.0f : 0.0f, 1e-6, "Q[%d][%d] = %g", i, j,
                               Q[i * 3 + j]);
    }
    be->free(be, dA), be->free(be, dw);
    free(Q), free(w);
}

/* ---- qr ---- */

static float *run_qr(int m, int n, const float *h)
{
    float *d = dev_from(h, (int64_t)m * n);
    cr_assert_eq(be->qr(be, m, n, d), EOPT_OK, "qr %dx%d: %s", m, n, eopt_last_error());
    float *Q = host_from(d, (int64_t)m * n);
    be->free(be, d);
    return Q;
}

Test(backend_qr, reconstruct_orthogonal_sign)
{
    static const int shapes[][2] = {{1, 1}, {5, 1}, {7, 7}, {13, 7}, {33, 5}, {64, 64}, {100, 30}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int m = shapes[s][0], n = shapes[s][1];
        float *A = host_uniform((int64_t)m * n, 41 + m * n, -1, 1);
        float *Q = run_qr(m, n, A);
        const double tol = 2e-6 * (m + 4);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double qq = 0, r = 0; /* (Q^T Q)_ij and R_ij = (Q^T A)_ij */
                for (int p = 0; p < m; p++) {
                    qq += (double)Q[(size_t)p * n + i] * Q[(size_t)p * n + j];
                    r += (double)Q[(size_t)p * n + i] * A[(size_t)p * n + j];
                }
                expect_close(qq, i == j, tol, 1, "qr Q^T Q", i * n + j);
                if (i > j)
                    expect_close(r, 0, tol, sqrt(m), "qr R below the diagonal", i * n + j);
            }
        for (int i = 0; i < m; i++) /* Q R = Q Q^T A = A */
            for (int j = 0; j < n; j++) {
                double qr = 0;
                for (int t = 0; t < n; t++) {
                    double r = 0;
                    for (int p = 0; p < m; p++)
                        r += (double)Q[(size_t)p * n + t] * A[(size_t)p * n + j];
                    qr += Q[(size_t)i * n + t] * r;
                }
                expect_close(qr, A[(size_t)i * n + j], tol, 1, "qr Q R - A", i * n + j);
            }
        /* LAPACK: H = I - tau v v^T maps a1 to -sign(a11) |a1| e1, so q1 = -sign(a11) a1 / |a1|
         * (for m > 1: a column of one element is left alone, tau = 0) */
        double norm = 0;
        for (int p = 0; p < m; p++)
            norm += (double)A[(size_t)p * n] * A[(size_t)p * n];
        for (int p = 0; p < m && m > 1; p++)
            expect_close(Q[(size_t)p * n], -copysign(1.0, A[0]) * A[(size_t)p * n] / sqrt(norm), 1e-5, 1,
                         "qr first column", p);
        free(A), free(Q);
    }
}

/* Flipping the sign of a column of A flips the Householder vector, not the reflector: Q is
 * unchanged (this is what makes the sign convention reproducible). */
Test(backend_qr, invariant_under_column_sign_flips)
{
    const int m = 13, n = 6;
    float *A = host_uniform(m * n, 51, -1, 1), *F = malloc(sizeof(float) * m * n);
    for (int e = 0; e < m * n; e++)
        F[e] = (e % n) % 2 == 0 ? -A[e] : A[e];
    float *Q1 = run_qr(m, n, A), *Q2 = run_qr(m, n, F);
    for (int e = 0; e < m * n; e++)
        expect_close(Q2[e], Q1[e], 1e-5, 1, "qr of the sign-flipped matrix", e);
    free(A), free(F), free(Q1), free(Q2);
}

/* The blocked QR (panels of 64 split down to 8 columns, on the backend's products) against
 * LAPACK's unblocked-panel sgeqrf + sorgqr in double-checked float32: shapes on and across every
 * block edge, square and tall. A = U(-1, 1) + 2 sqrt(m) I keeps A well conditioned, so Q is
 * determined to float32 rounding and a wrong reflector, sign, T or panel order shows as O(1). */
Test(backend_qr, matches_lapack_across_blocks)
{
    static const int shapes[][2] = {{8, 8}, {9, 9}, {64, 64}, {65, 65}, {129, 128}, {200, 136}, {300, 300},
                                    {517, 130}, {1000, 72}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int m = shapes[s][0], n = shapes[s][1];
        float *A = host_uniform((int64_t)m * n, 97 + m + n, -1, 1);
        for (int i = 0; i < n; i++)
            A[(size_t)i * n + i] += 2.0f * sqrtf((float)m);
        float *Q = run_qr(m, n, A), *L = malloc(sizeof(float) * m * n), tau[300];
        memcpy(L, A, sizeof(float) * m * n);
        cr_assert_eq(LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, m, n, L, n, tau), 0);
        cr_assert_eq(LAPACKE_sorgqr(LAPACK_ROW_MAJOR, m, n, n, L, n, tau), 0);
        double worst = 0;
        for (int64_t e = 0; e < (int64_t)m * n; e++)
            worst = fmax(worst, fabs((double)Q[e] - L[e]));
        cr_expect_leq(worst, 1e-5, "qr %dx%d: max |Q - Q_lapack| = %.3g", m, n, worst);
        free(A), free(Q), free(L);
    }
}

Test(backend_qr, rejects_wide)
{
    float *d = dev_alloc(6 * sizeof(float));
    cr_assert_eq(be->qr(be, 2, 3, d), EOPT_ERR_SHAPE);
    be->free(be, d);
}

/* ---- element-wise core kernels ---- */

#define EW_ROWS 7
#define EW_COLS 5
#define EW_N (EW_ROWS * EW_COLS)

static double finite_abs(double x) { return isfinite(x) ? fabs(x) : 0; }

/* Generic test buffers (device pointers) and scalars, dealt out to the named fields of any
 * kernel by ew_launch. */
typedef struct {
    float *y[3];
    const float *a, *b, *c, *d;
    const int32_t *ia;
    const float *ds; /* at least 4 device scalars */
    float s[8];
    int64_t cols;
} ew_bufs;

/* The launch of kernel `op` over n elements on the buffers of u. The core kernels take a, b, c,
 * ds and s in the order their references (core_ref) read them. */
static eopt_ew ew_launch(eopt_ew_op op, int64_t n, const ew_bufs *u)
{
    float *y = u->y[0], *y2 = u->y[1], *y3 = u->y[2];
    const float *a = u->a, *b = u->b, *c = u->c, *d = u->d, *ds = u->ds, *s = u->s;
    const int64_t cols = u->cols;
    const eopt_muon_step step = {.decay = s[0], .scale = s[1], .extra = s[2], .neg_lr = s[3]};
    switch (op) {
    case EOPT_EW_copy: return EOPT_EW(copy, n, .y = y, .a = a);
    case EOPT_EW_fill: return EOPT_EW(fill, n, .y = y, .value = s[0]);
    case EOPT_EW_scale: return EOPT_EW(scale, n, .y = y, .a = a, .alpha = s[0]);
    case EOPT_EW_add_scalar: return EOPT_EW(add_scalar, n, .y = y, .a = a, .alpha = s[0]);
    case EOPT_EW_axpby: return EOPT_EW(axpby, n, .y = y, .a = a, .b = b, .alpha = s[0], .beta = s[1]);
    case EOPT_EW_axpbyz:
        return EOPT_EW(axpbyz, n, .y = y, .a = a, .b = b, .c = c, .alpha = s[0], .beta = s[1], .gamma = s[2]);
    case EOPT_EW_lerp: return EOPT_EW(lerp, n, .y = y, .a = a, .b = b, .w = s[0]);
    case EOPT_EW_mul: return EOPT_EW(mul, n, .y = y, .a = a, .b = b);
    case EOPT_EW_div: return EOPT_EW(div, n, .y = y, .a = a, .b = b);
    case EOPT_EW_sqrt: return EOPT_EW(sqrt, n, .y = y, .a = a);
    case EOPT_EW_rsqrt: return EOPT_EW(rsqrt, n, .y = y, .a = a);
    case EOPT_EW_clamp: return EOPT_EW(clamp, n, .y = y, .a = a, .lo = s[0], .hi = s[1]);
    case EOPT_EW_abs: return EOPT_EW(abs, n, .y = y, .a = a);
    case EOPT_EW_sign: return EOPT_EW(sign, n, .y = y, .a = a);
    case EOPT_EW_scale_ds: return EOPT_EW(scale_ds, n, .y = y, .a = a, .factor = ds, .alpha = s[0]);
    case EOPT_EW_scale_ds_ratio:
        return EOPT_EW(scale_ds_ratio, n, .y = y, .a = a, .num = ds, .den = ds + 1, .min_den = s[0]);
    case EOPT_EW_div_ds_clamp: return EOPT_EW(div_ds_clamp, n, .y = y, .a = a, .norm = ds, .min = s[0]);
    case EOPT_EW_div_ds_add: return EOPT_EW(div_ds_add, n, .y = y, .a = a, .norm = ds, .eps = s[0]);
    case EOPT_EW_lerp_normalized:
        return EOPT_EW(lerp_normalized, n, .y = y, .a = a, .b = b, .norm = ds, .w = s[0], .eps = s[1]);
    case EOPT_EW_mul_row: return EOPT_EW(mul_row, n, .y = y, .a = a, .b = b, .cols = cols);
    case EOPT_EW_mul_col: return EOPT_EW(mul_col, n, .y = y, .a = a, .b = b, .cols = cols);
    case EOPT_EW_div_row: return EOPT_EW(div_row, n, .y = y, .a = a, .b = b, .cols = cols);
    case EOPT_EW_div_col: return EOPT_EW(div_col, n, .y = y, .a = a, .b = b, .cols = cols);
    case EOPT_EW_muon_momentum:
        return EOPT_EW(muon_momentum, n, .momentum = y, .nesterov = y2, .l2_grad = y3, .grad = a, .param = b,
                       .one_minus_mu = s[0], .mu = s[1], .wd = s[2]);
    case EOPT_EW_muon_apply: return EOPT_EW(muon_apply, n, .param = y, .update = a, .factor = ds, .step = step);
    case EOPT_EW_adamuon_apply:
        return EOPT_EW(adamuon_apply, n, .param = y, .moment2 = y2, .update = a, .step = step,
                       .one_minus_beta2 = s[4], .eps = s[5]);
    case EOPT_EW_normuon_scale:
        return EOPT_EW(normuon_scale, n, .scaled = y, .update = a, .moment2 = b, .eps = s[0], .per_row = s[1] != 0.0f,
                       .cols = cols);
    case EOPT_EW_normuon_ratio:
        return EOPT_EW(normuon_ratio, n, .ratio = y, .norm_update = ds, .norm_scaled = ds + 1, .eps = s[0]);
    case EOPT_EW_namo_alpha:
        return EOPT_EW(namo_alpha, n, .moment2 = y, .alpha = y2, .norm_grad = ds, .norm_input = ds + 1,
                       .one_minus_beta2 = s[0], .eps = s[1]);
    case EOPT_EW_muown_split:
        return EOPT_EW(muown_split, n, .momentum = y, .dir = y2, .grad = a, .grad_g = b, .g = c, .v_norm = d,
                       .one_minus_mu = s[0], .cols = cols);
    case EOPT_EW_muown_recompose:
        return EOPT_EW(muown_recompose, n, .weight = y, .dir = a, .g = b, .dir_norm = c, .cols = cols);
    case EOPT_EW_dion_momentum: return EOPT_EW(dion_momentum, n, .momentum = y, .nesterov = y2, .grad = a, .mu = s[0]);
    case EOPT_EW_dion_variance:
        return EOPT_EW(dion_variance, n, .variance = y, .den = y2, .row_ms = a, .one_minus_beta2 = s[0], .eps = s[1]);
    case EOPT_EW_dion_apply:
        return EOPT_EW(dion_apply, n, .param = y, .update = a, .decay = s[0], .adj_lr = s[1], .lr_wd = s[2],
                       .cautious = s[3] != 0.0f);
    case EOPT_EW_dion_adamw:
        return EOPT_EW(dion_adamw, n, .param = y, .exp_avg = y2, .exp_avg_sq = y3, .grad = a, .one_minus_beta1 = s[0],
                       .beta2 = s[1], .one_minus_beta2 = s[2], .sqrt_bc2 = s[3], .eps = s[4], .step_size = s[5],
                       .decay = s[6], .cautious_lr_wd = s[7]);
    case EOPT_EW_dion_lion:
        return EOPT_EW(dion_lion, n, .param = y, .momentum = y2, .grad = a, .one_minus_beta1 = s[0],
                       .one_minus_beta2 = s[1], .lr = s[2], .decay = s[3], .lr_wd = s[4], .cautious = s[5] != 0.0f);
    case EOPT_EW_soap_eye: return EOPT_EW(soap_eye, n, .y = y, .cols = cols);
    case EOPT_EW_soap_offdiag: return EOPT_EW(soap_offdiag, n, .y = y, .a = a, .cols = cols);
    case EOPT_EW_soap_diag: return EOPT_EW(soap_diag, n, .y = y, .a = a, .cols = cols);
    case EOPT_EW_soap_add_diag: return EOPT_EW(soap_add_diag, n, .y = y, .a = a, .eps = s[0], .cols = cols);
    case EOPT_EW_soap_eigh_desc:
        return EOPT_EW(soap_eigh_desc, n, .q = y, .vecs = a, .max_offdiag = ds, .order = u->ia, .cols = cols);
    case EOPT_EW_soap_kl_scale: return EOPT_EW(soap_kl_scale, n, .y = y, .a = a, .inv_dim = s[0], .eps = s[1]);
    case EOPT_EW_soap_keep_or_take: return EOPT_EW(soap_keep_or_take, n, .y = y, .a = a, .norms = ds, .tol = s[0]);
    case EOPT_EW_soap_apply:
        return EOPT_EW(soap_apply, n, .param = y, .update = a, .mean_sq = ds, .neg_lr = s[0], .max_rms = s[1],
                       .rms_eps = s[2], .decay = s[3]);
    case EOPT_EW_adam_update:
        return EOPT_EW(adam_update, n, .dir = y, .exp_avg = y2, .exp_avg_sq = y3, .grad = a, .one_minus_beta1 = s[0],
                       .one_minus_beta2 = s[1], .bc1 = s[2], .bc2 = s[3], .eps = s[4], .beta1 = s[6], .bcn = s[7],
                       .nesterov = s[5] != 0.0f);
    case EOPT_EW_adamw:
        return EOPT_EW(adamw, n, .param = y, .exp_avg = y2, .exp_avg_sq = y3, .grad = a, .decay = s[0],
                       .one_minus_beta1 = s[1], .beta2 = s[2], .one_minus_beta2 = s[3], .sqrt_bc2 = s[4], .eps = s[5],
                       .neg_step_size = s[6], .maximize = s[7] < 0.0f);
    case EOPT_EW_gelu: return EOPT_EW(gelu, n, .grad = y, .act = y2, .a = a);
    case EOPT_EW_ln_forward:
        return EOPT_EW_ROWS(ln_forward, n, cols, .xhat = y, .rstd = y2, .out = y3, .x = a, .weight = b, .bias = c,
                            .eps = s[0], .cols = cols);
    case EOPT_EW_ln_backward:
        return EOPT_EW_ROWS(ln_backward, n, cols, .dx = y, .dout = a, .xhat = b, .rstd = c, .weight = d, .cols = cols);
    case EOPT_EW_ln_param_grad: /* one index per column of an n / cols x cols matrix */
        return EOPT_EW_ROWS(ln_param_grad, cols, n / cols, .dweight = y, .dbias = y2, .dout = a, .xhat = b,
                            .rows = n / cols, .cols = cols);
    case EOPT_EW_embed:
        return EOPT_EW(embed, n, .x = y, .wte = a, .wpe = b, .tokens = u->ia, .seq_len = (int64_t)s[0], .cols = cols);
    case EOPT_EW_cross_entropy:
        return EOPT_EW_ROWS(cross_entropy, n, cols, .logits = y, .loss = y2, .targets = u->ia, .scale = s[0],
                            .backward = 1, .cols = cols);
    case EOPT_EW_softmax_causal: return EOPT_EW_ROWS(softmax_causal, n, cols, .probs = y, .scores = a, .cols = cols);
    case EOPT_EW_softmax_causal_backward:
        return EOPT_EW_ROWS(softmax_causal_backward, n, cols, .dscores = y, .dprobs = a, .probs = b, .cols = cols);
    case EOPT_EW_causal_row_max: return EOPT_EW_ROWS(causal_row_max, n, cols, .scores = y, .cols = cols);
    case EOPT_EW_argmax_hit: return EOPT_EW(argmax_hit, n, .hit = y, .logits = a, .labels = u->ia, .cols = cols);
    case EOPT_EW_COUNT: break;
    }
    cr_assert_fail("no test launch for element-wise kernel %d", (int)op);
    return (eopt_ew){.op = EOPT_EW_COUNT};
}

/* The reference of core kernel `op` at element i, in double; 0 when the op has none. */
static int core_ref(eopt_ew_op op, const float *a, const float *b, const float *c, const float *ds, const float *s,
                    int i, double *y)
{
    const double A = a[i], B = b[i], C = c[i];
    switch (op) {
    case EOPT_EW_copy: *y = A; return 1;
    case EOPT_EW_fill: *y = s[0]; return 1;
    case EOPT_EW_scale: *y = s[0] * A; return 1;
    case EOPT_EW_add_scalar: *y = A + s[0]; return 1;
    case EOPT_EW_axpby: *y = s[0] * A + s[1] * B; return 1;
    case EOPT_EW_axpbyz: *y = s[0] * A + s[1] * B + s[2] * C; return 1;
    case EOPT_EW_lerp: *y = A + s[0] * (B - A); return 1;
    case EOPT_EW_mul: *y = A * B; return 1;
    case EOPT_EW_div: *y = A / B; return 1;
    case EOPT_EW_sqrt: *y = sqrt(A); return 1;
    case EOPT_EW_rsqrt: *y = 1 / sqrt(A); return 1;
    case EOPT_EW_clamp: *y = A < s[0] ? s[0] : A, *y = *y > s[1] ? s[1] : *y; return 1; /* NaN stays NaN */
    case EOPT_EW_abs: *y = fabs(A); return 1;
    case EOPT_EW_sign: *y = A > 0 ? 1 : A < 0 ? -1 : A; return 1;
    case EOPT_EW_scale_ds: *y = A * s[0] * ds[0]; return 1;
    case EOPT_EW_scale_ds_ratio: *y = A * ds[0] / fmax(ds[1], s[0]); return 1;
    case EOPT_EW_div_ds_clamp: *y = A / fmax(ds[0], s[0]); return 1;
    case EOPT_EW_div_ds_add: *y = A / ((double)ds[0] + s[0]); return 1;
    case EOPT_EW_lerp_normalized: *y = A + s[0] * (B / ((double)ds[0] + s[1]) - A); return 1;
    case EOPT_EW_mul_row: *y = A * b[i / EW_COLS]; return 1;
    case EOPT_EW_mul_col: *y = A * b[i % EW_COLS]; return 1;
    case EOPT_EW_div_row: *y = A / b[i / EW_COLS]; return 1;
    case EOPT_EW_div_col: *y = A / b[i % EW_COLS]; return 1;
    default: return 0;
    }
}

static const eopt_ew_op core_ops[] = {
#define CORE_OP(name) EOPT_EW_##name,
    EOPT_EW_CORE(CORE_OP)
#undef CORE_OP
};
static const char *core_names[] = {
#define CORE_NAME(name) #name,
    EOPT_EW_CORE(CORE_NAME)
#undef CORE_NAME
};

/* Every kernel of EOPT_EW_CORE (a new one without a reference fails here) with three sets of
 * scalars: lerp weights inside and outside (-0.5, 0.5), clamps active and not. */
Test(backend_ew, every_core_kernel)
{
    static const float sets[3][8] = {{0.3f, -1.25f, 0.7f}, {-0.5f, 0.75f, 1.3f}, {2.5f, -0.8f, 0.6f}};
    float *a = host_uniform(EW_N, 61, -2, 2), *b = host_uniform(EW_N, 62, 0.5f, 2), *c = host_uniform(EW_N, 63, -1, 1);
    a[0] = 0.0f, a[1] = -0.0f, a[2] = NAN, a[3] = 4.0f;
    const float ds[2] = {1.7f, 0.45f};
    float *da = dev_from(a, EW_N), *db = dev_from(b, EW_N), *dc = dev_from(c, EW_N), *dds = dev_from(ds, 2);
    float *dy = dev_alloc(EW_N * sizeof(float));
    for (size_t o = 0; o < sizeof core_ops / sizeof *core_ops; o++)
        for (int set = 0; set < 3; set++) {
            ew_bufs u = {.y = {dy}, .a = da, .b = db, .c = dc, .ds = dds, .cols = EW_COLS};
            memcpy(u.s, sets[set], sizeof u.s);
            eopt_fill(be, EW_N, -99.0f, dy);
            eopt_ew_run(be, ew_launch(core_ops[o], EW_N, &u));
            float *y = host_from(dy, EW_N);
            char what[64];
            snprintf(what, sizeof what, "ew %s (scalars %d)", core_names[o], set);
            for (int i = 0; i < EW_N; i++) {
                double want = 0;
                cr_assert(core_ref(core_ops[o], a, b, c, ds, sets[set], i, &want), "no reference for core kernel %s",
                          core_names[o]);
                double scale = 1 + finite_abs(want) + finite_abs(a[i]) + fabs(b[i]) + fabs(c[i]);
                expect_close(y[i], want, 1e-6, scale, what, i);
            }
            free(y);
        }
    be->free(be, da), be->free(be, db), be->free(be, dc), be->free(be, dds), be->free(be, dy);
    free(a), free(b), free(c);
}

/* torch.lerp is exact at weight 1 (y = b bit for bit), which a + w (b - a) is not. */
Test(backend_ew, lerp_exact_at_one)
{
    const int n = 1000;
    float *a = host_uniform(n, 71, -100, 100), *b = host_uniform(n, 72, -1e-3f, 1e-3f);
    float *da = dev_from(a, n), *db = dev_from(b, n), *dy = dev_alloc(n * sizeof(float));
    eopt_ew_run(be, EOPT_EW(lerp, n, .y = dy, .a = da, .b = db, .w = 1.0f));
    float *y = host_from(dy, n);
    for (int i = 0; i < n; i++)
        cr_assert(memcmp(&y[i], &b[i], 4) == 0, "lerp(a, b, 1)[%d] = %.9g, not b = %.9g", i, y[i], b[i]);
    be->free(be, da), be->free(be, db), be->free(be, dy);
    free(a), free(b), free(y);
}

static const eopt_ew_op all_ops[] = {
#define ALL_OP(name) EOPT_EW_##name,
    EOPT_EW_ALL(ALL_OP)
#undef ALL_OP
};
static const char *all_names[] = {
#define ALL_NAME(name) #name,
    EOPT_EW_ALL(ALL_NAME)
#undef ALL_NAME
};

/* Every kernel of every family on the device against the CPU backend, on the same inputs:
 * buffers long enough for the kernels that index beyond element i (rows, per-row picks, embedding),
 * integer inputs that are valid column indices, scalars >= 1 (a sequence length for embed).
 * Exact but for the last bits of expf / tanhf / logf. Needs a non-CPU backend. */
Test(backend_ew, device_matches_cpu_every_kernel)
{
    if (be->device == EOPT_DEV_CPU)
        cr_skip_test("compares a GPU backend with the CPU one (run with EOPT_DEVICE=cuda)");
    eopt_backend *cpu;
    cr_assert_eq(eopt_backend_cpu_create(1, &cpu), EOPT_OK);
    const int n = EW_N, len = EW_N * (EW_COLS + 2);
    float *in[7], *din[7]; /* a, b, c, d, ds, then the initial y2, y3 */
    for (int k = 0; k < 7; k++)
        in[k] = host_uniform(len, 131 + k, 0.5f, 2), din[k] = dev_from(in[k], len);
    int32_t *ia = malloc(len * sizeof(int32_t));
    for (int j = 0; j < len; j++)
        ia[j] = (int32_t)(j * 7 % EW_COLS);
    int32_t *dia = dev_ints(ia, len);
    float *y[3], *dy[3];
    for (size_t o = 0; o < sizeof all_ops / sizeof *all_ops; o++) {
        for (int k = 0; k < 3; k++) { /* outputs start from the same values (kernels update in place) */
            y[k] = malloc(len * sizeof(float)), memcpy(y[k], in[4 + k], len * sizeof(float));
            dy[k] = dev_from(y[k], len);
        }
        ew_bufs h = {.y = {y[0], y[1], y[2]}, .a = in[0], .b = in[1], .c = in[2], .d = in[3], .ia = ia, .ds = in[4],
                     .s = {2, 1.25f, 1.5f, 1.75f, 1, 2.5f, 3, 1.125f}, .cols = EW_COLS};
        ew_bufs d = h;
        d.y[0] = dy[0], d.y[1] = dy[1], d.y[2] = dy[2], d.a = din[0], d.b = din[1], d.c = din[2], d.d = din[3];
        d.ia = dia, d.ds = din[4];
        eopt_ew_run(cpu, ew_launch(all_ops[o], n, &h));
        eopt_ew_run(be, ew_launch(all_ops[o], n, &d));
        for (int k = 0; k < 3; k++) {
            float *got = host_from(dy[k], len);
            char what[64];
            snprintf(what, sizeof what, "ew %s output %d, device vs cpu", all_names[o], k);
            for (int j = 0; j < len; j++)
                expect_close(got[j], y[k][j], 2e-6, 1 + finite_abs(y[k][j]), what, j);
            free(got), free(y[k]);
            be->free(be, dy[k]);
        }
    }
    for (int k = 0; k < 7; k++)
        free(in[k]), be->free(be, din[k]);
    free(ia), be->free(be, dia);
    eopt_backend_close(cpu);
}

/* ---- reductions ---- */

static double ref_reduce(eopt_reduce_op op, const float *a, const float *b, int ld, int i0, int di, int ni, int j0,
                         int dj, int nj, double *mag)
{
    double acc = op == EOPT_RED_MAX ? -INFINITY : 0;
    *mag = 0;
    for (int p = 0; p < ni; p++)
        for (int q = 0; q < nj; q++) {
            size_t e = (size_t)(i0 + p * di) * ld + j0 + q * dj;
            double x = a[e], v;
            switch (op) {
            case EOPT_RED_SUM: v = x; break;
            case EOPT_RED_SUMSQ:
            case EOPT_RED_NORM: v = x * x; break;
            case EOPT_RED_DOT: v = x * b[e]; break;
            default: v = fabs(x); break;
            }
            *mag += fabs(v);
            if (op == EOPT_RED_MAX)
                acc = isnan(x) || isnan(acc) ? NAN : fmax(acc, x);
            else if (op == EOPT_RED_MAXABS)
                acc = isnan(x) || isnan(acc) ? NAN : fmax(acc, v);
            else
                acc += v;
        }
    return op == EOPT_RED_NORM ? sqrt(acc) : acc;
}

static void check_reduce(int rows, int cols, float lo, float hi, int with_nan)
{
    const int ld = cols + 3;
    const float alpha = -0.75f;
    float *a = host_uniform((int64_t)rows * ld, 81 + rows, lo, hi), *b = host_uniform((int64_t)rows * ld, 82, -1, 1);
    if (with_nan)
        a[(size_t)(rows / 2) * ld + cols / 2] = NAN;
    float *da = dev_from(a, (int64_t)rows * ld), *db = dev_from(b, (int64_t)rows * ld);
    float *dout = dev_alloc((size_t)(rows > cols ? rows : cols) * sizeof(float));
    for (int op = EOPT_RED_SUM; op <= EOPT_RED_MAX; op++)
        for (int axis = EOPT_AXIS_ALL; axis <= EOPT_AXIS_COLS; axis++) {
            int nout = axis == EOPT_AXIS_ALL ? 1 : axis == EOPT_AXIS_ROWS ? rows : cols;
            be->reduce(be, (eopt_reduce_op)op, (eopt_axis)axis, rows, cols, da, op == EOPT_RED_DOT ? db : NULL, ld,
                       alpha, dout);
            float *got = host_from(dout, nout);
            char what[80];
            snprintf(what, sizeof what, "reduce op %d axis %d %dx%d%s", op, axis, rows, cols, with_nan ? " NaN" : "");
            for (int t = 0; t < nout; t++) {
                double mag, want = 0;
                if (axis == EOPT_AXIS_ALL)
                    want = ref_reduce((eopt_reduce_op)op, a, b, ld, 0, 1, rows, 0, 1, cols, &mag);
                else if (axis == EOPT_AXIS_ROWS)
                    want = ref_reduce((eopt_reduce_op)op, a, b, ld, t, 1, 1, 0, 1, cols, &mag);
                else
                    want = ref_reduce((eopt_reduce_op)op, a, b, ld, 0, 1, rows, t, 1, 1, &mag);
                if (op == EOPT_RED_NORM)
                    mag = sqrt(mag);
                expect_close(got[t], alpha * want, 1e-5, fabs(alpha) * mag + 1e-6, what, t);
            }
            free(got);
        }
    be->free(be, da), be->free(be, db), be->free(be, dout);
    free(a), free(b);
}

Test(backend_reduce, every_op_every_axis)
{
    static const int shapes[][2] = {{1, 1}, {1, 37}, {37, 1}, {7, 13}, {33, 5}, {3000, 37}, {5, 3000}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        check_reduce(shapes[s][0], shapes[s][1], -1, 1, 0);
        check_reduce(shapes[s][0], shapes[s][1], -3, -1, 0); /* max of negatives: the start is -inf, not 0 */
        check_reduce(shapes[s][0], shapes[s][1], -1, 1, 1);  /* NaN propagates through max */
    }
}

Test(backend_reduce, large_whole_matrix)
{
    const int n = 300007; /* many blocks of partial results */
    float *a = host_uniform(n, 91, 0, 1);
    float *da = dev_from(a, n), *dout = dev_alloc(sizeof(float));
    double s = 0;
    for (int j = 0; j < n; j++)
        s += a[j];
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, 1, n, da, NULL, n, 1.0f, dout);
    expect_close(eopt_read_scalar(be, dout), s, 1e-6, s, "sum of 300007", 0);
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, n, 1, da, NULL, 1, 2.0f, dout);
    expect_close(eopt_read_scalar(be, dout), 2 * s, 1e-6, 2 * s, "sum of 300007 (column)", 0);
    be->free(be, da), be->free(be, dout);
    free(a);
}

/* ---- indexing ---- */

static void check_index(eopt_index_mode mode, eopt_axis axis, const int32_t *idx, int k)
{
    const int rows = 7, cols = 13, len = axis == EOPT_AXIS_ROWS ? cols : rows;
    const float alpha = -0.75f;
    float *full = host_uniform(rows * cols, 101, -1, 1), *part = host_uniform((int64_t)k * len, 102, -1, 1);
    float *dfull = dev_from(full, rows * cols), *dpart = dev_from(part, (int64_t)k * len);
    int32_t *didx = dev_ints(idx, k);
    be->index(be, mode, axis, rows, cols, didx, k, dfull, dpart, alpha);
    float *gf = host_from(dfull, rows * cols), *gp = host_from(dpart, (int64_t)k * len);
    for (int j = 0; j < k; j++) /* the reference, in order */
        for (int t = 0; t < len; t++) {
            float *f = axis == EOPT_AXIS_ROWS ? &full[idx[j] * cols + t] : &full[t * cols + idx[j]];
            float *p = axis == EOPT_AXIS_ROWS ? &part[j * cols + t] : &part[t * k + j];
            if (mode == EOPT_INDEX_GATHER)
                *p = *f;
            else if (mode == EOPT_INDEX_SCATTER)
                *f = *p;
            else
                *f = (float)(*f + (double)alpha * *p);
        }
    for (int e = 0; e < rows * cols; e++)
        expect_close(gf[e], full[e], 1e-6, 1, "index full", e);
    for (int e = 0; e < k * len; e++)
        expect_close(gp[e], part[e], 0, 1, "index part", e);
    be->free(be, dfull), be->free(be, dpart), be->free(be, didx);
    free(full), free(part), free(gf), free(gp);
}

Test(backend_index, all_modes_both_axes)
{
    const int32_t rows_idx[] = {6, 0, 3}, rows_dup[] = {6, 0, 6, 2}, cols_idx[] = {12, 0, 5, 7},
                  cols_dup[] = {12, 4, 12, 0, 4};
    check_index(EOPT_INDEX_GATHER, EOPT_AXIS_ROWS, rows_dup, 4);
    check_index(EOPT_INDEX_SCATTER, EOPT_AXIS_ROWS, rows_idx, 3);
    check_index(EOPT_INDEX_SCATTER_ADD, EOPT_AXIS_ROWS, rows_dup, 4);
    check_index(EOPT_INDEX_GATHER, EOPT_AXIS_COLS, cols_dup, 5);
    check_index(EOPT_INDEX_SCATTER, EOPT_AXIS_COLS, cols_idx, 4);
    check_index(EOPT_INDEX_SCATTER_ADD, EOPT_AXIS_COLS, cols_dup, 5);
}

/* ---- argsort ---- */

static int32_t *run_argsort(int n, const float *v)
{
    float *dv = dev_from(v, n);
    int32_t *didx = dev_alloc((size_t)n * sizeof(int32_t)), *idx = malloc((size_t)n * sizeof(int32_t));
    be->argsort_desc(be, n, dv, didx);
    be->download(be, idx, didx, (size_t)n * sizeof(int32_t));
    be->free(be, dv), be->free(be, didx);
    return idx;
}

Test(backend_argsort, ties_nan_signed_zero)
{
    const float v[] = {1, 3, NAN, 3, -INFINITY, 0, -0.0f, NAN, INFINITY, 1, -2, 3};
    const int32_t want[] = {2, 7, 8, 1, 3, 11, 0, 9, 5, 6, 10, 4};
    int32_t *idx = run_argsort(12, v);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(idx[i], want[i], "argsort position %d: got %d, want %d", i, idx[i], want[i]);
    free(idx);
}

/* More values than one GPU block, drawn from 10 levels (many ties) with some NaN: the result
 * must be a permutation, descending, ties in ascending index order. */
Test(backend_argsort, large_stable)
{
    const int n = 1000;
    float *v = host_uniform(n, 111, 0, 10);
    for (int i = 0; i < n; i++)
        v[i] = i % 97 == 5 ? NAN : floorf(v[i]);
    int32_t *idx = run_argsort(n, v);
    char *seen = calloc(n, 1);
    for (int p = 0; p < n; p++) {
        cr_assert(idx[p] >= 0 && idx[p] < n && !seen[idx[p]], "not a permutation at %d", p);
        seen[idx[p]] = 1;
        if (p == 0)
            continue;
        float x = v[idx[p - 1]], y = v[idx[p]];
        int tie_ok = idx[p - 1] < idx[p];
        int ordered = isnan(x) ? !isnan(y) || tie_ok : !isnan(y) && (x > y || (x == y && tie_ok));
        cr_assert(ordered, "argsort out of order at %d: v[%d] = %g before v[%d] = %g", p, idx[p - 1], x, idx[p], y);
    }
    free(v), free(idx), free(seen);
}

/* ---- random numbers ---- */

static float *run_random(eopt_rand_kind kind, uint64_t seed, uint64_t offset, int64_t n)
{
    float *d = dev_alloc((size_t)n * sizeof(float));
    be->random(be, kind, seed, offset, n, d);
    float *h = host_from(d, n);
    be->free(be, d);
    return h;
}

Test(backend_random, moments)
{
    const int n = 100000;
    float *u = run_random(EOPT_RAND_UNIFORM, 7, 0, n), *z = run_random(EOPT_RAND_NORMAL, 7, 0, n);
    double su = 0, su2 = 0, sz = 0, sz2 = 0;
    for (int j = 0; j < n; j++) {
        cr_assert(u[j] > 0.0f && u[j] <= 1.0f, "uniform[%d] = %g out of (0, 1] (curand_uniform's range)", j, u[j]);
        cr_assert(isfinite(z[j]), "normal[%d] = %g", j, z[j]);
        su += u[j], su2 += (double)u[j] * u[j], sz += z[j], sz2 += (double)z[j] * z[j];
    }
    double mu = su / n, vu = su2 / n - mu * mu, mz = sz / n, vz = sz2 / n - mz * mz;
    /* 5 standard errors: sd(mean) = 0.289 / 316 and 1 / 316, sd(var) ~ 0.075 / 316 and 1.41 / 316 */
    cr_assert(fabs(mu - 0.5) < 0.0046, "uniform mean %g", mu);
    cr_assert(fabs(vu - 1.0 / 12) < 0.0012, "uniform variance %g", vu);
    cr_assert(fabs(mz) < 0.016, "normal mean %g", mz);
    cr_assert(fabs(vz - 1) < 0.023, "normal variance %g", vz);
    free(u), free(z);
}

/* Number j depends only on (seed, offset + j): repeatable, split-invariant, seed-dependent, and
 * the same numbers as the shared host functions (bitwise for uniform; normal within libm). */
Test(backend_random, counter_based)
{
    for (int kind = 0; kind < 2; kind++) {
        float *a = run_random((eopt_rand_kind)kind, 123, 0, 20), *b = run_random((eopt_rand_kind)kind, 123, 0, 20);
        float *c = run_random((eopt_rand_kind)kind, 123, 10, 10), *d = run_random((eopt_rand_kind)kind, 124, 0, 20);
        int differ = 0;
        for (int j = 0; j < 20; j++) {
            cr_assert(memcmp(&a[j], &b[j], 4) == 0, "kind %d: same seed, different number %d", kind, j);
            if (j >= 10)
                cr_assert(memcmp(&a[j], &c[j - 10], 4) == 0, "kind %d: number %d differs at offset 10", kind, j);
            differ += a[j] != d[j];
            float host = kind ? eopt_rand_normal(123, (uint64_t)j) : eopt_rand_uniform(123, (uint64_t)j);
            expect_close(a[j], host, kind ? 1.2e-7 : 0, fabs(host), "random vs host", j);
        }
        cr_assert_geq(differ, 19, "kind %d: seeds 123 and 124 agree on %d of 20", kind, 20 - differ);
        free(a), free(b), free(c), free(d);
    }
}

/* ---- bfloat16 ---- */

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

Test(backend_bf16, rounding_cases)
{
    static const uint32_t in[] = {
        0x3f800000, /* 1 */
        0x3f808000, /* 1 + 2^-8: halfway, to the even 1 */
        0x3f818000, /* halfway between 0x3f81 and 0x3f82: to the even 0x3f82 */
        0x3f808001, /* just above halfway: up */
        0x3f807fff, /* just below halfway: down */
        0xbf818000, /* negative halfway: to even, magnitude up */
        0x7f7fffff, /* FLT_MAX rounds to inf */
        0x7f800000, 0xff800000, /* +-inf */
        0x7f800001, /* signalling NaN with a low payload: quiet NaN, not inf */
        0xffc00000, /* quiet NaN keeps its sign */
        0x00008000, /* subnormal halfway to 0 */
        0x00018000, /* subnormal halfway, to even 2 */
        0x80000000, /* -0 */
    };
    static const uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80, 0xbf82, 0x7f80,
                                    0x7f80, 0xff80, 0x7fc0, 0xffc0, 0x0000, 0x0002, 0x8000};
    const int n = sizeof in / sizeof *in;
    float f[sizeof in / sizeof *in];
    for (int j = 0; j < n; j++)
        f[j] = u2f(in[j]);
    float *df = dev_from(f, n);
    uint16_t *dh = dev_alloc(n * 2), got[sizeof in / sizeof *in];
    be->to_bf16(be, n, df, dh);
    be->download(be, got, dh, n * 2);
    for (int j = 0; j < n; j++)
        cr_assert_eq(got[j], want[j], "to_bf16(0x%08x) = 0x%04x, want 0x%04x", in[j], got[j], want[j]);
    be->free(be, df), be->free(be, dh);
}

/* All 65536 bfloat16 values survive bf16 -> f32 -> bf16 (NaNs come back quiet) and widen to
 * the float with the same upper 16 bits. */
Test(backend_bf16, exhaustive_round_trip)
{
    const int n = 65536;
    uint16_t *h = malloc(n * 2), *back = malloc(n * 2);
    float *f = malloc(n * sizeof(float));
    for (int j = 0; j < n; j++)
        h[j] = (uint16_t)j;
    uint16_t *dh = dev_alloc(n * 2);
    float *df = dev_alloc(n * sizeof(float));
    be->upload(be, dh, h, n * 2);
    be->from_bf16(be, n, dh, df);
    be->download(be, f, df, n * sizeof(float));
    eopt_fill(be, n / 2, 0.0f, (float *)dh);
    be->to_bf16(be, n, df, dh);
    be->download(be, back, dh, n * 2);
    for (int j = 0; j < n; j++) {
        cr_assert_eq(f2u(f[j]), (uint32_t)j << 16, "from_bf16(0x%04x) = 0x%08x", j, f2u(f[j]));
        int nan = (j & 0x7f80) == 0x7f80 && (j & 0x7f);
        cr_assert_eq(back[j], nan ? (j | 0x40) : j, "round trip of 0x%04x gave 0x%04x", j, back[j]);
    }
    be->free(be, dh), be->free(be, df);
    free(h), free(back), free(f);
}

/* ---- memory ---- */

Test(backend_memory, alloc_zero_upload_copy)
{
    const int n = 1031;
    float *h = host_uniform(n, 121, -1, 1), *z = dev_alloc(n * sizeof(float)), *d = dev_from(h, n);
    float *got = host_from(z, n);
    for (int j = 0; j < n; j++)
        cr_assert_eq(got[j], 0.0f, "alloc not zero-filled at %d", j);
    free(got);
    be->copy(be, z + 1, d, (n - 1) * sizeof(float));
    be->sync(be);
    got = host_from(z, n);
    cr_assert_eq(got[0], 0.0f);
    for (int j = 1; j < n; j++)
        cr_assert_eq(got[j], h[j - 1], "copy wrong at %d", j);
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    cr_assert(strncmp(desc, be->device == EOPT_DEV_CPU ? "cpu" : "cuda", 3) == 0, "describe: '%s'", desc);
    be->free(be, z), be->free(be, d);
    free(h), free(got);
}
