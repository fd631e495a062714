/* Real scale on the CPU (issue 14): one step of every optimizer class on GPT-2 small's matrix
 * shapes, and SOAP / MOSO on a Kronecker factor wider than 2900 (where a float32 LAPACK
 * workspace query rounds syevd's 1 + 6n + 2n^2 below the minimum), each checked against a
 * float64 reference computed here with OpenBLAS's dgemm.
 *
 * Tolerances are LAPACK's own acceptance ratios (its test suite's threshold 20 on
 * residual / (n ulp ||A||)) for the eigenbases, and the first-order float32 error growth for
 * the Newton-Schulz polynomial (see ns_tolerance). Runs on the backend EOPT_DEVICE names. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "optimizers/muon.h"
#include "tests/testutil.h"

static eopt_backend *be;

static void setup(void) { be = tu_backend(0); }
static void teardown(void) { eopt_backend_close(be); }

/* LAPACK's test suite accepts a ratio residual / (n ulp ||A||) below 20 (sep.in's threshold). */
#define LAPACK_RATIO 20.0

/* GPT-2 small's 2-D parameters: attention projections, the fused qkv (transposed), and the MLP. */
static const int gpt2[4][2] = {{768, 768}, {2304, 768}, {768, 3072}, {3072, 768}};

static double *to_double(const float *a, int64_t n)
{
    double *d = malloc((size_t)n * sizeof *d);
    cr_assert(d);
    for (int64_t k = 0; k < n; k++)
        d[k] = a[k];
    return d;
}

static double fro64(const double *a, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += a[k] * a[k];
    return sqrt(s);
}

static double diff64(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += (a[k] - b[k]) * (a[k] - b[k]);
    return sqrt(s);
}

/* C (m x n) = alpha op(A) op(B) + beta C in float64, row-major, dense leading dimensions. */
static void dgemm(int ta, int tb, int m, int n, int k, double alpha, const double *A, const double *B, double beta,
                  double *C)
{
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A,
                ta ? m : k, B, tb ? k : n, beta, C, n);
}

/* Every state tensor of every parameter, and every parameter, holds only finite numbers. */
static void expect_finite_state(rig *r, const char *cls)
{
    for (int i = 0; i < r->np; i++) {
        float *P = tu_host(&r->w[i]);
        for (int64_t k = 0; k < r->w[i].numel; k++)
            cr_assert(isfinite(P[k]), "%s: parameter %d not finite at %lld", cls, i, (long long)k);
        free(P);
        const eopt_state *s = &r->opt->state[i];
        for (int e = 0; e < s->n; e++) {
            const eopt_tensor *t = &s->t[e];
            if (t->dtype != EOPT_F32)
                continue;
            float *h = malloc(eopt_tensor_bytes(t));
            cr_assert_eq(eopt_tensor_to_host(t, h, eopt_tensor_bytes(t)), EOPT_OK);
            for (int64_t k = 0; k < t->numel; k++)
                cr_assert(isfinite(h[k]), "%s: state '%s' of parameter %d not finite at %lld", cls, s->key[e], i,
                          (long long)k);
            free(h);
        }
    }
}

/* The columns of a d x d check: all up to 1024, else 64 spread from the first to the last
 * (each check below holds column by column, so a sample keeps the 3000-wide checks at d^2 cost). */
static int sample_columns(int d, int *cols)
{
    if (d <= 1024) {
        for (int j = 0; j < d; j++)
            cols[j] = j;
        return d;
    }
    for (int k = 0; k < 64; k++)
        cols[k] = (int)((int64_t)k * (d - 1) / 63);
    return 64;
}

/* The float32 factor K (d x d) against its float64 reference alpha F F^T (F d x k), and the basis
 * Q (d x d, columns = eigenvectors, descending) against K in float64, on the sampled columns S:
 * orthogonality ||Q^T Q_S - I_S||_F and the eigen residual ||K Q_S - Q_S diag(w_S)||_F with w the
 * Rayleigh quotients diag(Q^T K Q), as LAPACK's ratios, and w descending up to the residual. */
static void expect_eigenbasis(const char *what, int d, const float *Kf, const double *F, int k, double alpha,
                              const float *Qf)
{
    const double ulp = FLT_EPSILON;
    int *S = malloc(sizeof(int) * d);
    const int s = sample_columns(d, S);
    double *K = to_double(Kf, (int64_t)d * d), *Q = to_double(Qf, (int64_t)d * d);
    double *FS = malloc(sizeof(double) * s * k), *QS = malloc(sizeof(double) * d * s);
    double *KS = malloc(sizeof(double) * d * s), *X = malloc(sizeof(double) * d * s), *w = calloc(s, sizeof *w);
    for (int c = 0; c < s; c++) {
        memcpy(FS + (int64_t)c * k, F + (int64_t)S[c] * k, sizeof(double) * k);
        for (int64_t i = 0; i < d; i++)
            QS[i * s + c] = Q[i * d + S[c]];
    }
    /* the factor: float32 sums of k products, each within k ulp of the sum of |terms| (the
     * classical bound; the ratio 20 as for the eigenproblem) */
    dgemm(0, 1, d, s, k, alpha, F, FS, 0.0, KS); /* K64[:, S] */
    double kerr = 0, knrm = fro64(KS, (int64_t)d * s);
    for (int64_t i = 0; i < d; i++)
        for (int c = 0; c < s; c++)
            kerr += pow(K[i * d + S[c]] - KS[i * s + c], 2);
    kerr = sqrt(kerr) / knrm;
    cr_expect_lt(kerr, LAPACK_RATIO * k * ulp, "%s: ||K - K64|| / ||K64|| = %.3g", what, kerr);
    dgemm(1, 0, d, s, d, 1.0, Q, QS, 0.0, X); /* Q^T Q_S */
    for (int c = 0; c < s; c++)
        X[(int64_t)S[c] * s + c] -= 1.0;
    const double orth = fro64(X, (int64_t)d * s) / (d * ulp);
    cr_expect_lt(orth, LAPACK_RATIO, "%s: ||Q^T Q - I|| / (n ulp) = %.3g", what, orth);
    dgemm(0, 0, d, s, d, 1.0, K, QS, 0.0, X); /* K Q_S */
    for (int64_t i = 0; i < d; i++)
        for (int c = 0; c < s; c++)
            w[c] += QS[i * s + c] * X[i * s + c];
    for (int64_t i = 0; i < d; i++)
        for (int c = 0; c < s; c++)
            X[i * s + c] -= QS[i * s + c] * w[c];
    const double nrm = fro64(K, (int64_t)d * d), res = fro64(X, (int64_t)d * s) / (d * ulp * nrm);
    cr_expect_lt(res, LAPACK_RATIO, "%s: ||K Q - Q diag(w)|| / (n ulp ||K||) = %.3g", what, res);
    for (int c = 0; c + 1 < s; c++)
        cr_expect_geq(w[c], w[c + 1] - LAPACK_RATIO * d * ulp * nrm, "%s: eigenvalue %d (%g) below %d (%g)", what,
                      S[c], w[c], S[c + 1], w[c + 1]);
    free(S), free(K), free(Q), free(FS), free(QS), free(KS), free(X), free(w);
}

/* The transpose of a row-major m x n matrix. */
static double *transposed(const double *A, int m, int n)
{
    double *T = malloc(sizeof(double) * m * n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            T[j * m + i] = A[i * n + j];
    return T;
}

/* SOAP's first step (precondition_frequency 1, no warm-up) on one m x n parameter: L = G G^T and
 * R = G^T G (bias-corrected EMA weight 1), Q_L / Q_R their eigenbases (eigh), exp_avg
 * = (1 - beta1) Q_L^T G Q_R. */
static void soap_first_step(int m, int n, uint64_t seed)
{
    eopt_dict args = {0}, hp = {0};
    eopt_dict_set(&args, "precondition_frequency", eopt_int(1));
    eopt_dict_set(&hp, "lr", eopt_float(1e-3));
    const int shape[1][2] = {{m, n}};
    rig r;
    cr_assert_eq(rig_open(&r, be, "SOAP", &args, &hp, 1, shape, seed), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, seed + 1, 1, 1.0f);
    float *Gf = tu_host(&r.g[0]);
    cr_assert_eq(eopt_optimizer_step(r.opt), EOPT_OK, "SOAP %dx%d: %s", m, n, eopt_last_error());
    expect_finite_state(&r, "SOAP");
    const int64_t mn = (int64_t)m * n;
    double *G = to_double(Gf, mn), *Gt = transposed(G, m, n);
    float *Lf = rig_state(&r, 0, "L"), *Rf = rig_state(&r, 0, "R");
    float *QLf = rig_state(&r, 0, "Q_L"), *QRf = rig_state(&r, 0, "Q_R"), *Ef = rig_state(&r, 0, "exp_avg");
    /* SOAP solves K + 1e-7 I: the shift moves no eigenvector and no residual beyond 1e-7 */
    expect_eigenbasis("SOAP L", m, Lf, G, n, 1.0, QLf);
    expect_eigenbasis("SOAP R", n, Rf, Gt, m, 1.0, QRf);
    /* exp_avg = (1 - 0.9) Q_L^T G Q_R from the float32 bases, in float64: each entry a chain of
     * two products of m and n terms */
    double *QL = to_double(QLf, (int64_t)m * m), *QR = to_double(QRf, (int64_t)n * n);
    double *T = malloc(sizeof(double) * mn), *E = malloc(sizeof(double) * mn), *Ed = to_double(Ef, mn);
    dgemm(1, 0, m, n, m, 1.0, QL, G, 0.0, T);
    dgemm(0, 0, m, n, n, 0.1, T, QR, 0.0, E);
    const double eerr = diff64(Ed, E, mn) / fro64(E, mn);
    cr_expect_lt(eerr, LAPACK_RATIO * (m + n) * FLT_EPSILON, "SOAP %dx%d: exp_avg relative error %.3g", m, n, eerr);
    free(G), free(Gt), free(Lf), free(Rf), free(QLf), free(QRf), free(Ef), free(QL), free(QR), free(T),
        free(E), free(Ed), free(Gf);
    rig_close(&r);
}

/* MOSO's first step on one m x n parameter: C = X X^T, X = (1 - mu) G (left, m <= n) or its
 * transpose, and Q_M = eigh(C). */
static void moso_first_step(int m, int n, uint64_t seed)
{
    eopt_dict hp = {0};
    eopt_dict_set(&hp, "lr", eopt_float(1e-3));
    const int shape[1][2] = {{m, n}};
    rig r;
    cr_assert_eq(rig_open(&r, be, "MOSO", NULL, &hp, 1, shape, seed), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, seed + 1, 1, 1.0f);
    float *Gf = tu_host(&r.g[0]);
    cr_assert_eq(eopt_optimizer_step(r.opt), EOPT_OK, "MOSO %dx%d: %s", m, n, eopt_last_error());
    expect_finite_state(&r, "MOSO");
    const int left = m <= n, s = left ? m : n;
    double *G = to_double(Gf, (int64_t)m * n), *F = left ? G : transposed(G, m, n);
    const double mu = 0.95; /* momentum default: Mom = (1 - mu) G at the first step */
    float *Cf = rig_state(&r, 0, "M"), *Qf = rig_state(&r, 0, "Q_M");
    expect_eigenbasis("MOSO M", s, Cf, F, left ? n : m, (1 - mu) * (1 - mu), Qf);
    if (F != G)
        free(F);
    free(G), free(Cf), free(Qf), free(Gf);
    rig_close(&r);
}

TestSuite(scale, .init = setup, .fini = teardown);

/* A 3000-wide factor: ssyevd's workspace 1 + 6n + 2n^2 = 18018001 rounds to 18018000 as a
 * float; before the exact sizing this failed with "ssyevd failed on a 3000x3000 matrix". */
Test(scale, soap_factor_above_2900) { soap_first_step(3000, 64, 11); }

/* MOSO's factor is min(m, n) wide: both sides above 2900. */
Test(scale, moso_factor_above_2900) { moso_first_step(3000, 3000, 13); }

Test(scale, soap_moso_gpt2_shapes)
{
    soap_first_step(768, 768, 21);
    moso_first_step(768, 3072, 23);
    moso_first_step(3072, 768, 25);
}

/* The float64 Newton-Schulz polynomial of the Muon classes (newton_schulz.h): X0 = G / den,
 * then per step A = X X^T (wide) or X^T X (tall), B = b A + c A A, X = a X + B X | X B. */
static double *ns64(const eopt_ns_config *cfg, int m, int n, const double *G)
{
    const int tall = m > n, r = tall ? n : m;
    const int64_t mn = (int64_t)m * n;
    double *X = malloc(sizeof(double) * mn), *Xn = malloc(sizeof(double) * mn);
    double *A = malloc(sizeof(double) * r * r), *B = malloc(sizeof(double) * r * r);
    const double nrm = cfg->norm_scale * fro64(G, mn);
    const double den = cfg->eps_add ? nrm + cfg->eps : fmax(nrm, cfg->eps);
    for (int64_t k = 0; k < mn; k++)
        X[k] = G[k] / den;
    for (int i = 0; i < cfg->steps; i++) {
        const eopt_ns_triple t = eopt_ns_triple_at(cfg, i);
        dgemm(tall, !tall, r, r, tall ? m : n, 1.0, X, X, 0.0, A);
        memcpy(B, A, sizeof(double) * r * r);
        dgemm(0, 0, r, r, r, t.c, A, A, t.b, B);
        memcpy(Xn, X, sizeof(double) * mn);
        if (tall)
            dgemm(0, 0, m, n, n, 1.0, X, B, t.a, Xn);
        else
            dgemm(0, 0, m, n, m, 1.0, B, X, t.a, Xn);
        double *sw = X;
        X = Xn, Xn = sw;
    }
    free(Xn), free(A), free(B);
    return X;
}

/* First-order float32 error growth of the polynomial: each step's three products of at most
 * k = max(m, n) terms add a relative error of sqrt(k) ulp each (rounding errors of a sum add
 * as a random walk; OpenBLAS blocks the sums), and a later step multiplies an earlier error by
 * at most its linear coefficient a (the slope of a x + b x^3 + c x^5 at 0, the largest on the
 * normalised spectrum). So the relative error is below ulp sqrt(k) 3 sum_i prod_{j > i} a_j;
 * a factor 4 covers the normalisation and the final scaling. */
static double ns_tolerance(const eopt_ns_config *cfg, int m, int n)
{
    const double k = m > n ? m : n;
    double total = 0;
    for (int i = 0; i < cfg->steps; i++) {
        double grow = 1;
        for (int j = i + 1; j < cfg->steps; j++)
            grow *= fabs(eopt_ns_triple_at(cfg, j).a);
        total += 3 * grow;
    }
    return 4 * FLT_EPSILON * sqrt(k) * total;
}

/* Muon (NVIDIA's) on every GPT-2 small shape: with P = 0, lr = 1 and no decay the step leaves
 * P = -scale O, O the Newton-Schulz output, which is checked against the float64 polynomial. */
Test(scale, muon_gpt2_shapes_against_float64)
{
    eopt_dict args = {0}, hp = {0};
    eopt_dict_set(&args, "fp32_matmul_prec", eopt_str("highest"));
    eopt_dict_set(&hp, "lr", eopt_float(1.0));
    eopt_dict_set(&hp, "weight_decay", eopt_float(0.0));
    for (int s = 0; s < 4; s++) {
        const int m = gpt2[s][0], n = gpt2[s][1];
        const int64_t mn = (int64_t)m * n;
        rig r;
        cr_assert_eq(rig_open(&r, be, "Muon", &args, &hp, 1, &gpt2[s], 31 + s), EOPT_OK, "%s", eopt_last_error());
        eopt_fill(be, mn, 0.0f, eopt_f32(&r.w[0]));
        rig_grads(&r, 41 + s, 1, 1.0f);
        float *Gf = tu_host(&r.g[0]);
        rig_step(&r);
        expect_finite_state(&r, "Muon");
        eopt_ns_config cfg;
        double scale;
        cr_assert_eq(eopt_muon_ns_config(&r.opt->args, "Muon", &cfg), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_muon_scale_factor(m, n, "spectral", &scale), EOPT_OK);
        double *G = to_double(Gf, mn), *O = ns64(&cfg, m, n, G);
        float *Pf = tu_host(&r.w[0]);
        double *P = to_double(Pf, mn);
        for (int64_t k = 0; k < mn; k++)
            P[k] /= -scale;
        const double err = diff64(P, O, mn) / fro64(O, mn), tol = ns_tolerance(&cfg, m, n);
        cr_expect_lt(err, tol, "Muon %dx%d: ||O - O64|| / ||O64|| = %.3g (tolerance %.3g)", m, n, err, tol);
        free(G), free(O), free(Pf), free(P), free(Gf);
        rig_close(&r);
    }
}

/* Every class one step on two GPT-2 small shapes (alternating over the classes: 768x768 or
 * 2304x768, and 3072x768 or 768x3072, so every shape is stepped by several classes in CI's time):
 * the step succeeds, every parameter and state entry is finite, and the parameter moved. SOAP
 * and MOSO have their float64 checks above, Muon on every shape. */
Test(scale, every_class_gpt2_shapes)
{
    const eopt_optimizer_class *const *cls = eopt_optimizer_classes();
    for (int c = 0; cls[c]; c++) {
        if (strcmp(cls[c]->id, "SOAP") == 0 || strcmp(cls[c]->id, "MOSO") == 0)
            continue; /* stepped on these shapes with their float64 reference above */
        eopt_dict hp = {0};
        eopt_dict_set(&hp, "lr", eopt_float(1e-3));
        if (strcmp(cls[c]->id, "AdaptiveMuon") == 0) {
            eopt_dict_set(&hp, "momentum", eopt_float(0.95));
            eopt_dict_set(&hp, "weight_decay", eopt_float(0.01));
        }
        const int pick[2][2] = {{gpt2[c % 2 ? 0 : 1][0], gpt2[c % 2 ? 0 : 1][1]},
                                {gpt2[2 + c % 2][0], gpt2[2 + c % 2][1]}};
        rig r;
        cr_assert_eq(rig_open(&r, be, cls[c]->id, NULL, &hp, 2, pick, 51 + c), EOPT_OK, "%s: %s", cls[c]->id,
                     eopt_last_error());
        float *P0[2] = {tu_host(&r.w[0]), tu_host(&r.w[1])};
        rig_grads(&r, 61 + c, 1, 1.0f);
        cr_assert_eq(eopt_optimizer_step(r.opt), EOPT_OK, "%s: %s", cls[c]->id, eopt_last_error());
        expect_finite_state(&r, cls[c]->id);
        for (int i = 0; i < 2; i++) {
            float *P = tu_host(&r.w[i]);
            cr_expect_gt(tu_max_abs_diff(P, P0[i], r.w[i].numel), 0.0, "%s: parameter %d did not move", cls[c]->id,
                         i);
            free(P), free(P0[i]);
        }
        rig_close(&r);
    }
}

/* Sizes BLAS and LAPACK cannot express are refused with a message, before any memory is read:
 * a matrix side beyond INT_MAX (a view over a small buffer: nothing may touch it), and on the
 * CPU an eigenproblem whose workspace 1 + 6n + 2n^2 passes LAPACK's 32-bit integers. */
Test(scale, inexpressible_sizes_are_refused)
{
    float buf[64] = {0};
    const int64_t wide[2] = {2, (int64_t)INT_MAX + 1};
    const char *cls[] = {"Muon", "AdaptiveMuon", "Muown", "dion.Muon", "Dion2", "SOAP", "MOSO"};
    for (size_t c = 0; c < sizeof cls / sizeof cls[0]; c++) {
        eopt_tensor w = eopt_tensor_view(buf, be, EOPT_F32, 2, wide), g = w;
        eopt_param p = {.w = &w, .grad = &g};
        snprintf(p.name, sizeof p.name, "huge");
        eopt_dict hp = {0};
        eopt_dict_set(&hp, "lr", eopt_float(1e-3));
        eopt_dict_set(&hp, "momentum", eopt_float(0.95));
        eopt_dict_set(&hp, "weight_decay", eopt_float(0.0));
        eopt_optimizer *opt = NULL;
        const int one = 1;
        eopt_status st = eopt_optimizer_create(cls[c], be, NULL, 1, &hp, &one, &p, 1, &opt);
        if (st == EOPT_OK)
            st = eopt_optimizer_step(opt);
        cr_expect_eq(st, EOPT_ERR_SHAPE, "%s: status %d (%s)", cls[c], (int)st, eopt_last_error());
        cr_expect(strstr(eopt_last_error(), "huge") && strstr(eopt_last_error(), "2147483648"), "%s: %s", cls[c],
                  eopt_last_error());
        eopt_optimizer_free(opt);
    }
    if (be->device == EOPT_DEV_CPU) {
        cr_expect_eq(be->syevd(be, 32767, buf, buf), EOPT_ERR_SHAPE);
        cr_expect(strstr(eopt_last_error(), "32767x32767"), "%s", eopt_last_error());
    }
}

/* A backend whose allocations fail after `budget` of them: the optimizers' state and workspace
 * come from opt->be, so a short budget makes every allocation of a first step fail in turn. */
static int alloc_budget;
static void *(*real_alloc)(eopt_backend *, size_t);
static void *budget_alloc(eopt_backend *b, size_t bytes) { return alloc_budget-- > 0 ? real_alloc(b, bytes) : NULL; }

/* Every parameter and state tensor of `opt`, concatenated on the host (state keys and counts
 * included through the byte counts): what a failed step must leave unchanged. */
static size_t snapshot(const eopt_optimizer *opt, unsigned char *buf, size_t cap)
{
    size_t at = 0;
    for (int i = 0; i < opt->nparams; i++) {
        const eopt_tensor *ts[1 + EOPT_STATE_MAX];
        int nt = 0;
        ts[nt++] = opt->params[i].w;
        for (int k = 0; k < opt->state[i].n; k++)
            ts[nt++] = &opt->state[i].t[k];
        for (int k = 0; k < nt; k++) {
            const size_t b = eopt_tensor_bytes(ts[k]);
            cr_assert(at + b + sizeof b <= cap);
            memcpy(buf + at, &b, sizeof b);
            cr_assert_eq(eopt_tensor_to_host(ts[k], buf + at + sizeof b, b), EOPT_OK);
            at += b + sizeof b;
        }
    }
    return at;
}

/* Steps `opt` with its k-th allocation failing, for every k until a step succeeds: each failed
 * step returns EOPT_ERR_NOMEM and leaves every parameter and state tensor bit-identical (no
 * half-applied step). Returns how many allocations the successful step made. */
static int fail_each_allocation(eopt_optimizer *opt, const char *id, const char *when)
{
    enum { CAP = 1 << 20 };
    unsigned char *before = malloc(CAP), *after = malloc(CAP);
    cr_assert(before && after);
    const size_t nb = snapshot(opt, before, CAP);
    for (int budget = 0; budget < 200; budget++) {
        alloc_budget = budget;
        eopt_status st = eopt_optimizer_step(opt);
        alloc_budget = 1 << 30;
        if (st == EOPT_OK) {
            cr_expect_eq(opt->ws_overruns, 0, "%s (%s): an update took more workspace than declared", id, when);
            free(before);
            free(after);
            return budget;
        }
        cr_expect_eq(st, EOPT_ERR_NOMEM, "%s (%s), %d allocations: %s", id, when, budget, eopt_last_error());
        const size_t na = snapshot(opt, after, CAP);
        cr_expect(na == nb && memcmp(before, after, nb) == 0, "%s (%s): a step failing at allocation %d changed the "
                  "parameters or state", id, when, budget);
    }
    cr_expect(0, "%s (%s): no step succeeded with 200 allocations", id, when);
    free(before);
    free(after);
    return -1;
}

/* Every class, with every allocation of a step failing in turn (state tensors and the
 * workspace): the first step (state created in it) and a step on existing state with the
 * workspace released. Each failure returns EOPT_ERR_NOMEM and leaves every parameter and state
 * tensor bit-identical; the step then succeeds, with no update beyond its declared workspace. */
Test(scale, allocation_failure_is_an_error)
{
    eopt_backend fb = *be;
    real_alloc = be->alloc;
    fb.alloc = budget_alloc;
    const int shape[2][2] = {{24, 16}, {16, 40}};
    const eopt_optimizer_class *const *cls = eopt_optimizer_classes();
    for (int c = 0; cls[c]; c++) {
        eopt_dict hp = {0};
        eopt_dict_set(&hp, "lr", eopt_float(1e-3));
        eopt_dict_set(&hp, "momentum", eopt_float(0.95));
        eopt_dict_set(&hp, "weight_decay", eopt_float(0.01));
        rig r;
        cr_assert_eq(rig_open(&r, be, NULL, NULL, NULL, 2, shape, 71), EOPT_OK);
        rig_grads(&r, 81, 1, 1.0f);
        const int n = 2;
        alloc_budget = 1 << 30;
        cr_assert_eq(eopt_optimizer_create(cls[c]->id, &fb, NULL, 1, &hp, &n, r.p, 2, &r.opt), EOPT_OK, "%s: %s",
                     cls[c]->id, eopt_last_error());
        fail_each_allocation(r.opt, cls[c]->id, "first step");
        eopt_ws_free(&r.opt->ws); /* the next step must allocate its workspace again */
        fail_each_allocation(r.opt, cls[c]->id, "later step");
        eopt_optimizer_free(r.opt);
        r.opt = NULL;
        rig_close(&r);
    }
}
