/* Newton-Schulz and softening: against a direct double-precision loop, and the properties of
 * muon.md §8 / dion-muown.md §11. Runs on the backend EOPT_DEVICE names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "optimizers/newton_schulz.h"
#include "optimizers/softening.h"
#include "framework/rng.h"
#include "tests/testutil.h"

static eopt_backend *be;
static eopt_workspace ws;

static void setup(void)
{
    be = tu_backend(0);
    eopt_ws_init(&ws, be);
}
static void teardown(void)
{
    eopt_ws_free(&ws);
    eopt_backend_close(be);
}

static void fill_normal(float *x, int64_t n, uint64_t seed)
{
    for (int64_t j = 0; j < n; j++)
        x[j] = eopt_rand_normal(seed, (uint64_t)j);
}

/* Runs NS on the backend: host in, host out. */
static void run_ns(const eopt_ns_config *cfg, int m, int n, const float *x, float *o)
{
    size_t bytes = (size_t)m * n * sizeof(float);
    float *d = be->alloc(be, bytes);
    be->upload(be, d, x, bytes);
    cr_assert_eq(eopt_ws_reset(&ws), EOPT_OK);
    cr_assert_eq(eopt_ns_orthogonalize(be, &ws, cfg, m, n, d, d), EOPT_OK, "%s", eopt_last_error());
    be->download(be, o, d, bytes);
    be->free(be, d);
}

/* Upstream's loop in double: transpose tall, normalise, A = X X^T, B = bA + cAA, X = aX + BX. */
static void ns_reference(const eopt_ns_config *cfg, int m, int n, const float *x, double *out)
{
    int tall = m > n, r = tall ? n : m, c = tall ? m : n;
    double *X = malloc(sizeof(double) * r * c), *Y = malloc(sizeof(double) * r * c);
    double *A = malloc(sizeof(double) * r * r), *B = malloc(sizeof(double) * r * r), nrm = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            X[i * c + j] = tall ? x[j * n + i] : x[i * n + j];
            nrm += X[i * c + j] * X[i * c + j];
        }
    nrm = sqrt(nrm) * cfg->norm_scale;
    double den = cfg->eps_add ? nrm + cfg->eps : (nrm > cfg->eps ? nrm : cfg->eps);
    for (int k = 0; k < r * c; k++)
        X[k] /= den;
    for (int s = 0; s < cfg->steps; s++) {
        eopt_ns_triple t = eopt_ns_triple_at(cfg, s);
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int k = 0; k < c; k++)
                    acc += X[i * c + k] * X[j * c + k];
                A[i * r + j] = acc;
            }
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int k = 0; k < r; k++)
                    acc += A[i * r + k] * A[k * r + j];
                B[i * r + j] = t.b * A[i * r + j] + t.c * acc;
            }
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) {
                double acc = 0;
                for (int k = 0; k < r; k++)
                    acc += B[i * r + k] * X[k * c + j];
                Y[i * c + j] = t.a * X[i * c + j] + acc;
            }
        memcpy(X, Y, sizeof(double) * r * c);
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            out[i * n + j] = tall ? X[j * c + i] : X[i * c + j];
    free(X), free(Y), free(A), free(B);
}

static double max_abs_diff(const float *a, const double *b, int64_t n)
{
    double w = 0;
    for (int64_t k = 0; k < n; k++)
        w = fmax(w, fabs(a[k] - b[k]));
    return w;
}

TestSuite(ns, .init = setup, .fini = teardown);

Test(ns, matches_direct_loop_on_every_set_and_shape)
{
    const char *types[] = {"simple", "quintic", "polar_express", "cans", "aol", "deepseekv4"};
    const int shapes[][2] = {{16, 16}, {48, 16}, {16, 64}, {7, 13}, {13, 7}, {1, 9}, {9, 1}};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int m = shapes[s][0], n = shapes[s][1];
            eopt_ns_config cfg;
            cr_assert_eq(eopt_ns_emerging(types[t], 7, NULL, 0, &cfg), EOPT_OK);
            float *x = malloc(sizeof(float) * m * n), *o = malloc(sizeof(float) * m * n);
            double *ref = malloc(sizeof(double) * m * n);
            fill_normal(x, (int64_t)m * n, 11 + t);
            run_ns(&cfg, m, n, x, o);
            ns_reference(&cfg, m, n, x, ref);
            double err = max_abs_diff(o, ref, (int64_t)m * n);
            /* A vector has the single singular value 1 after normalisation, where the steep
             * first triples of cans / polar_express amplify float32 rounding ~50x. */
            double tol = (m == 1 || n == 1) ? 1e-3 : 2e-5;
            cr_expect_lt(err, tol, "%s on %dx%d: max error %g", types[t], m, n, err);
            free(x), free(o), free(ref);
        }
}

Test(ns, dion_normalisers_and_cubic_set)
{
    eopt_ns_config cfg;
    const int m = 12, n = 20;
    float x[m * n], o[m * n];
    double ref[m * n];
    fill_normal(x, m * n, 5);
    for (int pe = 0; pe < 2; pe++) {
        eopt_ns_dion(pe, 1e-8, &cfg);
        run_ns(&cfg, m, n, x, o);
        ns_reference(&cfg, m, n, x, ref);
        cr_expect_lt(max_abs_diff(o, ref, m * n), 2e-5, "dion polar_express=%d", pe);
    }
    cr_assert_eq(eopt_ns_emerging("cubic5", 5, NULL, 0, &cfg), EOPT_OK);
    cr_assert_eq(cfg.sets[0].c, 0.0);
    cfg.eps = 1e-15;
    run_ns(&cfg, n, m, x, o); /* tall */
    ns_reference(&cfg, n, m, x, ref);
    cr_expect_lt(max_abs_diff(o, ref, m * n), 2e-5, "cubic5");
}

/* Singular values of O are f(sigma) within the documented ranges: check via the eigenvalues
 * of O O^T (wide) computed on the host in double by Jacobi-free means: ||O O^T - I|| bound. */
Test(ns, polar_express_orthogonalises)
{
    eopt_ns_config cfg;
    cr_assert_eq(eopt_ns_emerging("polar_express", 8, NULL, 0, &cfg), EOPT_OK);
    const int m = 8, n = 32;
    float x[m * n], o[m * n];
    fill_normal(x, m * n, 3);
    run_ns(&cfg, m, n, x, o);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double acc = 0;
            for (int k = 0; k < n; k++)
                acc += (double)o[i * n + k] * o[j * n + k];
            worst = fmax(worst, fabs(acc - (i == j)));
        }
    cr_expect_lt(worst, 1e-2, "O O^T differs from I by %g", worst);
}

Test(ns, transpose_equivariance_and_zero_input)
{
    eopt_ns_config cfg;
    cr_assert_eq(eopt_ns_emerging("quintic", 5, NULL, 0, &cfg), EOPT_OK);
    const int m = 24, n = 10;
    float x[m * n], xt[m * n], o[m * n], ot[m * n];
    fill_normal(x, m * n, 9);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            xt[j * m + i] = x[i * n + j];
    run_ns(&cfg, m, n, x, o);
    run_ns(&cfg, n, m, xt, ot);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            worst = fmax(worst, fabs(o[i * n + j] - ot[j * m + i]));
    cr_expect_lt(worst, 1e-5);
    memset(x, 0, sizeof x);
    run_ns(&cfg, m, n, x, o);
    for (int k = 0; k < m * n; k++)
        cr_assert_eq(o[k], 0.0f, "a zero matrix must stay exactly zero");
}

Test(ns, iteration_rules_and_errors)
{
    eopt_ns_config cfg, simple;
    cr_assert_eq(eopt_ns_emerging("quintic", 7, NULL, 0, &cfg), EOPT_OK);
    cr_assert_eq(eopt_ns_triple_at(&cfg, 5).a, 4.0848); /* cycles: q1 again */
    cr_assert_eq(eopt_ns_triple_at(&cfg, 6).a, 3.9505);
    cr_assert_eq(eopt_ns_emerging("polar_express", 10, NULL, 0, &cfg), EOPT_OK);
    cr_assert_eq(eopt_ns_triple_at(&cfg, 9).a, 1.8750); /* repeats the last */
    cr_assert_eq(eopt_ns_emerging("deepseekv4", 5, NULL, 0, &cfg), EOPT_OK);
    cr_assert_eq(eopt_ns_emerging("simple", 5, NULL, 0, &simple), EOPT_OK);
    const int m = 6, n = 10;
    float x[m * n], a[m * n], b[m * n];
    fill_normal(x, m * n, 1);
    run_ns(&cfg, m, n, x, a);
    run_ns(&simple, m, n, x, b);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "deepseekv4 x5 must equal simple x5 bit for bit");
    cr_assert_eq(eopt_ns_emerging("deepseekv4", 10, NULL, 0, &cfg), EOPT_OK);
    cr_assert_eq(eopt_ns_triple_at(&cfg, 9).a, 2.0);

    cr_assert_eq(eopt_ns_emerging("quintic", 0, NULL, 0, &cfg), EOPT_ERR_ARG);
    cr_assert_str_eq(eopt_last_error(), "num_ns_steps must be at least 1, got 0");
    cr_assert_eq(eopt_ns_emerging("foo", 5, NULL, 0, &cfg), EOPT_ERR_ARG);
    cr_assert_str_eq(eopt_last_error(), "Invalid coefficient type: foo");
    cr_assert_eq(eopt_ns_emerging("custom", 5, NULL, 0, &cfg), EOPT_ERR_ARG);
    cr_assert_eq(eopt_ns_emerging("cubic5", 4, NULL, 0, &cfg), EOPT_ERR_ARG);
    eopt_ns_triple t = {3.0, -3.2, 1.2};
    cr_assert_eq(eopt_ns_emerging("custom", 3, &t, 1, &cfg), EOPT_OK);
    cr_assert_eq(eopt_ns_triple_at(&cfg, 2).b, -3.2);
    eopt_prec p;
    cr_assert_eq(eopt_ns_precision("medium", &p), EOPT_OK);
    cr_assert_eq(p, EOPT_PREC_BF16);
    cr_assert_eq(eopt_ns_precision("fast", &p), EOPT_ERR_ARG);
}

Test(ns, softening_endpoints)
{
    const int m = 5, n = 9;
    float x[m * n], o[m * n], out[m * n];
    fill_normal(x, m * n, 21);
    fill_normal(o, m * n, 22);
    size_t bytes = sizeof x;
    float *dx = be->alloc(be, bytes), *dout = be->alloc(be, bytes);
    float den = (float)tu_fro(x, m * n) + 1e-8f;
    be->upload(be, dx, x, bytes);
    for (int pass = 0; pass < 2; pass++) {
        double s = pass ? 1.0 : 0.25;
        be->upload(be, dout, o, bytes);
        cr_assert_eq(eopt_ws_reset(&ws), EOPT_OK);
        cr_assert_eq(eopt_soften(be, &ws, m, n, dx, dout, s, 1e-8), EOPT_OK);
        be->download(be, out, dout, bytes);
        for (int k = 0; k < m * n; k++) {
            float want = s == 1.0 ? x[k] / den : (float)(0.75 * o[k] + 0.25 * x[k] / den);
            if (s == 1.0)
                cr_assert_eq(out[k], want, "s = 1 must give exactly X / (||X|| + eps)");
            else
                cr_assert_float_eq(out[k], want, 1e-6);
        }
    }
    be->free(be, dx), be->free(be, dout);
    cr_assert_eq(eopt_softening_check(1.5, "Dion2"), EOPT_ERR_ARG);
    cr_assert_eq(eopt_softening_check(NAN, "Dion2"), EOPT_ERR_ARG);
    cr_assert_eq(eopt_softening_check(0.0, "Dion2"), EOPT_OK);
}
