/* dion's Muon, NorMuon, Dion2, NorDion2 and the adamw / lion groups: the properties of
 * dion-muown.md §11 and the construction rules of §1 (the golden fixtures run generically in
 * test_fixtures.c). Runs on the backend EOPT_DEVICE names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "eopt.h"
#include "optimizers/dion.h"
#include "optimizers/newton_schulz.h"
#include "tests/testutil.h"

static eopt_backend *be;

static void setup(void) { be = tu_backend(2); }
static void teardown(void) { eopt_backend_close(be); }

/* ---- harness: parameters on the backend, host copies in and out ---- */

#define MAXN 12000

/* Deterministic test numbers in (-1, 1), never 0. */
static float num(uint64_t seed, int64_t k)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)k * 0xBF58476D1CE4E5B9ull + 1;
    x ^= x >> 31, x *= 0x94D049BB133111EBull, x ^= x >> 29;
    return (float)(((double)(x >> 11) + 0.5) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Parameter i: shape (r, c) (c = 0: 1-D of r), weights from seed (scale 0: zeros). */
static void rig_param(rig *r, int i, int64_t rows, int64_t cols, uint64_t seed, float scale)
{
    int64_t sh[2] = {rows, cols};
    const int nd = cols ? 2 : 1;
    cr_assert_eq(eopt_tensor_alloc(&r->w[i], be, EOPT_F32, nd, sh), EOPT_OK);
    cr_assert_eq(eopt_tensor_alloc(&r->g[i], be, EOPT_F32, nd, sh), EOPT_OK);
    cr_assert_leq(r->w[i].numel, MAXN, "test parameters hold at most %d numbers", MAXN);
    static float h[MAXN];
    for (int64_t k = 0; k < r->w[i].numel; k++)
        h[k] = scale * num(seed + 77 * (uint64_t)i, k);
    tu_upload(&r->w[i], h);
    snprintf(r->p[i].name, sizeof r->p[i].name, "p%d", i);
    r->p[i].w = &r->w[i];
    r->p[i].grad = &r->g[i];
    r->be = be;
    if (i >= r->np)
        r->np = i + 1;
}

static eopt_status rig_make(rig *r, const char *cls, const eopt_dict *args, int ngroups, const eopt_dict *hp,
                            const int *sizes)
{
    return eopt_optimizer_create(cls, be, args, ngroups, hp, sizes, r->p, r->np, &r->opt);
}

/* Gradients of step t (the same for equal seeds), then one step. */
static void rig_num_step(rig *r, uint64_t seed, int t)
{
    static float h[MAXN];
    for (int i = 0; i < r->np; i++) {
        for (int64_t k = 0; k < r->g[i].numel; k++)
            h[k] = num(seed * 1000 + (uint64_t)t * 10 + (uint64_t)i, k);
        tu_upload(&r->g[i], h);
    }
    rig_step(r);
}

static void state_host(rig *r, int i, const char *key, float *h)
{
    eopt_tensor *t = eopt_state_get(r->opt, i, key);
    cr_assert(t, "no state '%s' for parameter %d", key, i);
    tu_download(t, h);
}

/* Host copy of dion's Newton-Schulz (polar_express pe, eps = float32 1e-8) of the m x n gradient
 * of parameter 0, computed directly: the reference of an optimizer step. */
static void grad_ns(rig *r, int pe, int m, int n, float *O)
{
    eopt_tensor ref;
    const int64_t sh[2] = {m, n};
    cr_assert_eq(eopt_tensor_alloc(&ref, be, EOPT_F32, 2, sh), EOPT_OK);
    eopt_ns_config ns;
    eopt_ns_dion(pe, (double)1e-8f, &ns);
    eopt_workspace ws;
    eopt_ws_init(&ws, be);
    cr_assert_eq(eopt_ns_orthogonalize(be, &ws, &ns, m, n, eopt_f32(&r->g[0]), eopt_f32(&ref)), EOPT_OK);
    tu_download(&ref, O);
    eopt_tensor_free(&ref);
    eopt_ws_free(&ws);
}

static double max_abs(const float *a, int64_t n)
{
    double d = 0;
    for (int64_t k = 0; k < n; k++)
        d = fmax(d, fabs((double)a[k]));
    return d;
}

static eopt_dict group(const char *algorithm, double lr, double wd)
{
    eopt_dict d = {0};
    eopt_dict_set(&d, "lr", eopt_float(lr));
    eopt_dict_set(&d, "weight_decay", eopt_float(wd));
    if (algorithm)
        eopt_dict_set(&d, "algorithm", eopt_str(algorithm));
    return d;
}

TestSuite(dion_props, .init = setup, .fini = teardown);
TestSuite(dion_construct, .init = setup, .fini = teardown);

/* ---- §11.1 softening endpoints ---- */

/* s = 0 is the plain orthogonaliser, bit for bit; s = 1 makes the update M / (||M||_F + eps).
 * With X = 0, wd = 0, lr = 1 and no lr adjustment, X after one step is exactly -update. A
 * schedule's change of `softening` between steps is honoured. */
Test(dion_props, softening_endpoints)
{
    const int m = 12, n = 20;
    rig r = {0};
    rig_param(&r, 0, m, n, 1, 0.0f);
    eopt_dict hp = group(NULL, 1.0, 0.0);
    eopt_dict_set(&hp, "adjust_lr", (eopt_value){.kind = EOPT_VAL_NONE});
    int one = 1;
    cr_assert_eq(rig_make(&r, "dion.Muon", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    rig_num_step(&r, 5, 1);
    /* reference: O = polar_express(G) with the group epsilon, computed directly */
    static float G[MAXN], X[MAXN], O[MAXN];
    tu_download(&r.g[0], G);
    tu_download(&r.w[0], X);
    grad_ns(&r, 1, m, n, O);
    for (int k = 0; k < m * n; k++)
        cr_assert_eq(X[k], -O[k], "s = 0: element %d is %.9g, -NS(G) is %.9g", k, X[k], -O[k]);

    /* s = 1 from the next step on: the update is the normalised momentum 0.95 G1 + G2 */
    cr_assert_eq(eopt_dict_set(&r.opt->args, "softening", eopt_float(1.0)), EOPT_OK);
    static float X1[MAXN], M[MAXN], X2[MAXN];
    memcpy(X1, X, sizeof X1);
    rig_num_step(&r, 5, 2);
    state_host(&r, 0, "momentum", M);
    tu_download(&r.w[0], X2);
    const double nrm = tu_fro(M, m * n);
    for (int k = 0; k < m * n; k++)
        cr_assert_float_eq(X2[k], X1[k] - M[k] / (nrm + 1e-8), 2e-7, "s = 1: element %d", k);
    rig_close(&r);
}

/* Softening strictly between the endpoints changes the update; NaN and values outside [0, 1]
 * are rejected at the next step when a schedule sets them. */
Test(dion_props, softening_read_each_step)
{
    rig r = {0};
    rig_param(&r, 0, 8, 8, 3, 1.0f);
    int one = 1;
    eopt_dict hp = group(NULL, 0.01, 0.0);
    cr_assert_eq(rig_make(&r, "dion.Muon", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    eopt_dict_set(&r.opt->args, "softening", eopt_float(NAN));
    cr_assert_eq(eopt_optimizer_step(r.opt), EOPT_ERR_ARG);
    cr_assert(strstr(eopt_last_error(), "softening"), "%s", eopt_last_error());
    const eopt_value *step = eopt_dict_get(&r.opt->groups[0].hp, "step");
    cr_assert_eq(step->i, 0, "a rejected step must not advance the group counter");
    rig_close(&r);
}

/* ---- §11.2 momentum ---- */

/* Muon's momentum after t steps is sum_k mu^(t-k) G_k, also with Nesterov (which stores M, not U). */
Test(dion_props, momentum_sum)
{
    for (int nesterov = 0; nesterov < 2; nesterov++) {
        rig r = {0};
        rig_param(&r, 0, 6, 10, 9, 1.0f);
        int one = 1;
        eopt_dict hp = group(NULL, 0.01, 0.01);
        eopt_dict_set(&hp, "mu", eopt_float(0.8));
        eopt_dict_set(&hp, "nesterov", eopt_bool(nesterov));
        cr_assert_eq(rig_make(&r, "dion.Muon", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
        double want[60] = {0};
        static float G[MAXN], M[MAXN];
        for (int t = 1; t <= 4; t++) {
            rig_num_step(&r, 11, t);
            tu_download(&r.g[0], G);
            for (int k = 0; k < 60; k++)
                want[k] = 0.8 * want[k] + G[k];
        }
        state_host(&r, 0, "momentum", M);
        for (int k = 0; k < 60; k++)
            cr_assert_float_eq(M[k], want[k], 1e-5, "nesterov=%d: momentum[%d] = %.8g, want %.8g", nesterov, k, M[k],
                               want[k]);
        rig_close(&r);
    }
}

/* ---- §11.3 Dion2 with fraction 1 is Muon ---- */

/* Runs `a` and `b` on equal weights and gradients for 4 steps and compares weights (relative
 * to their movement), `variance_neuron` and momentum (b's = factor x a's). */
static void compare_runs(const char *ca, const eopt_dict *ha, const char *cb, const eopt_dict *hb, int64_t m,
                         int64_t n, float factor, int with_variance)
{
    rig a = {0}, b = {0};
    rig_param(&a, 0, m, n, 21, 1.0f);
    rig_param(&b, 0, m, n, 21, 1.0f);
    int one = 1;
    cr_assert_eq(rig_make(&a, ca, NULL, 1, ha, &one), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(rig_make(&b, cb, NULL, 1, hb, &one), EOPT_OK, "%s", eopt_last_error());
    static float x0[MAXN], xa[MAXN], xb[MAXN], ma[MAXN], mb[MAXN];
    tu_download(&a.w[0], x0);
    for (int t = 1; t <= 4; t++) {
        rig_num_step(&a, 31, t);
        rig_num_step(&b, 31, t);
    }
    const int64_t mn = m * n;
    tu_download(&a.w[0], xa);
    tu_download(&b.w[0], xb);
    double moved = 0;
    for (int64_t k = 0; k < mn; k++)
        moved = fmax(moved, fabs((double)xa[k] - x0[k]));
    cr_assert_gt(moved, 1e-3);
    cr_assert_leq(tu_max_abs_diff(xa, xb, mn) / moved, 1e-5, "%s vs %s (%lldx%lld): weights differ by %.3g of the movement",
                  ca, cb, (long long)m, (long long)n, tu_max_abs_diff(xa, xb, mn) / moved);
    state_host(&a, 0, "momentum", ma);
    state_host(&b, 0, "momentum", mb);
    for (int64_t k = 0; k < mn; k++)
        ma[k] *= factor;
    cr_assert_leq(tu_max_abs_diff(ma, mb, mn), 1e-5 * max_abs(ma, mn), "%s vs %s: momentum", ca, cb);
    if (with_variance) {
        state_host(&a, 0, "variance_neuron", ma);
        state_host(&b, 0, "variance_neuron", mb);
        cr_assert_leq(tu_max_abs_diff(ma, mb, m), 1e-5 * max_abs(ma, m), "%s vs %s: variance_neuron", ca, cb);
    }
    rig_close(&a);
    rig_close(&b);
}

Test(dion_props, dion2_full_fraction_is_muon)
{
    eopt_dict hm = group(NULL, 0.02, 0.1), hd = group(NULL, 0.02, 0.1);
    eopt_dict_set(&hm, "mu", eopt_float(0.9));
    eopt_dict_set(&hd, "ef_decay", eopt_float(0.9));
    eopt_dict_set(&hd, "fraction", eopt_float(1.0));
    compare_runs("dion.Muon", &hm, "Dion2", &hd, 12, 20, 0.9f, 0); /* rows */
    compare_runs("dion.Muon", &hm, "Dion2", &hd, 20, 12, 0.9f, 0); /* columns */
    eopt_dict hn = group(NULL, 0.02, 0.1), hnd = group(NULL, 0.02, 0.1);
    eopt_dict_set(&hn, "mu", eopt_float(0.9));
    eopt_dict_set(&hnd, "mu", eopt_float(0.9));
    eopt_dict_set(&hnd, "fraction", eopt_float(1.0));
    compare_runs("NorMuon", &hn, "NorDion2", &hnd, 12, 20, 0.9f, 1);
    compare_runs("NorMuon", &hn, "NorDion2", &hnd, 20, 12, 0.9f, 1);
}

/* ---- §11.4 Dion2's slice rules, §6 step 2 k rounding ---- */

Test(dion_props, select_count_rounding)
{
    cr_assert_eq(eopt_dion2_select_count(0.07, 100), 8); /* 0.07 * 100 = 7.000000000000001 */
    cr_assert_eq(eopt_dion2_select_count(0.3, 10), 3);
    cr_assert_eq(eopt_dion2_select_count((double)0.3f, 10), 4); /* why fraction stays a double */
    cr_assert_eq(eopt_dion2_select_count(0.25, 16), 4);
    cr_assert_eq(eopt_dion2_select_count(1e-9, 10), 1);
    cr_assert_eq(eopt_dion2_select_count(1.0, 7), 7);
}

/* After the second step of Dion2 (rows of a wide matrix, columns of a tall one; NorDion2 rows of
 * both): exactly k slices change beyond the decay, they are the k largest L1 norms of M + G,
 * unselected slices keep X (1 - lr wd) and M + G, selected ones get M = lambda (M + G). */
static void check_slices(const char *cls, int64_t m, int64_t n, double fraction, int want_rows, int want_k)
{
    rig r = {0};
    rig_param(&r, 0, m, n, 41, 1.0f);
    int one = 1;
    eopt_dict hp = group(NULL, 0.05, 0.2);
    eopt_dict_set(&hp, "fraction", eopt_float(fraction));
    eopt_dict_set(&hp, cls[0] == 'D' ? "ef_decay" : "mu", eopt_float(0.7));
    cr_assert_eq(rig_make(&r, cls, NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    rig_num_step(&r, 43, 1);
    static float x0[MAXN], m0[MAXN], g[MAXN], x1[MAXN], m1[MAXN];
    tu_download(&r.w[0], x0);
    state_host(&r, 0, "momentum", m0);
    rig_num_step(&r, 43, 2);
    tu_download(&r.g[0], g);
    tu_download(&r.w[0], x1);
    state_host(&r, 0, "momentum", m1);
    const float decay = 1.0f - 0.05f * 0.2f;
    const int64_t K = want_rows ? m : n, L = want_rows ? n : m;
    int changed = 0;
    double l1[256];
    for (int64_t s = 0; s < K; s++) {
        int moved = 0, kept = 1;
        l1[s] = 0;
        for (int64_t j = 0; j < L; j++) {
            const int64_t k = want_rows ? s * n + j : j * n + s;
            const float acc = m0[k] + g[k];
            l1[s] += fabs(acc);
            moved |= x1[k] != x0[k] * decay;
            kept &= m1[k] == acc;
            if (!kept && fabsf(m1[k] - 0.7f * acc) > 1e-6f * fabsf(acc))
                cr_assert_fail("%s %lldx%lld: slice %lld element %lld has momentum %.8g, neither M + G nor 0.7 (M + G)", cls,
                        (long long)m, (long long)n, (long long)s, (long long)j, m1[k]);
        }
        cr_assert_eq(moved, !kept, "%s %lldx%lld slice %lld: weights moved = %d but momentum kept = %d", cls,
                     (long long)m, (long long)n, (long long)s, moved, kept);
        changed += moved;
    }
    cr_assert_eq(changed, want_k, "%s %lldx%lld: %d slices changed, want %d", cls, (long long)m, (long long)n, changed,
                 want_k);
    /* the changed slices are the k largest L1 norms */
    for (int64_t s = 0; s < K; s++) {
        int larger = 0;
        for (int64_t q = 0; q < K; q++)
            larger += l1[q] > l1[s];
        const int64_t k0 = want_rows ? s * n : s;
        const int sel = x1[k0] != x0[k0] * decay;
        cr_assert_eq(sel, larger < want_k, "%s: slice %lld (rank %d) selected = %d", cls, (long long)s, larger, sel);
    }
    rig_close(&r);
}

Test(dion_props, dion2_slice_rules)
{
    check_slices("Dion2", 8, 16, 0.25, 1, 2);    /* wide: rows */
    check_slices("Dion2", 16, 8, 0.25, 0, 2);    /* tall: columns */
    check_slices("Dion2", 10, 10, 0.3, 1, 3);    /* square: rows */
    check_slices("NorDion2", 16, 8, 0.25, 1, 4); /* always rows */
    check_slices("Dion2", 100, 110, 0.07, 1, 8); /* k = ceil(7.000000000000001) */
}

/* ---- §11.5 NorMuon ---- */

/* One step from X = 0 (wd = 0, lr = 1, no adjustment): X = -O', ||O'||_F = ||O||_F with
 * O = NS(G), and variance_neuron = (1 - b2) rowmeansq(O). */
Test(dion_props, normuon_first_step)
{
    const int m = 10, n = 16;
    rig r = {0};
    rig_param(&r, 0, m, n, 51, 0.0f);
    int one = 1;
    eopt_dict hp = group(NULL, 1.0, 0.0);
    eopt_dict_set(&hp, "adjust_lr", (eopt_value){.kind = EOPT_VAL_NONE});
    eopt_dict_set(&hp, "muon_beta2", eopt_float(0.9));
    cr_assert_eq(rig_make(&r, "NorMuon", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    rig_num_step(&r, 53, 1);
    static float O[MAXN], X[MAXN], V[64];
    grad_ns(&r, 1, m, n, O);
    tu_download(&r.w[0], X);
    state_host(&r, 0, "variance_neuron", V);
    const double no = tu_fro(O, m * n), nx = tu_fro(X, m * n);
    cr_assert_float_eq(nx, no, 1e-5 * no, "||O'|| = %.8g, ||O|| = %.8g", nx, no);
    for (int i = 0; i < m; i++) {
        double ms = 0;
        for (int j = 0; j < n; j++)
            ms += (double)O[i * n + j] * O[i * n + j];
        ms /= n;
        cr_assert_float_eq(V[i], 0.1 * ms, 1e-5 * ms, "variance_neuron[%d] = %.8g, want %.8g", i, V[i], 0.1 * ms);
        /* O' rows are O rows / (sqrt(V) + 1e-8) times one common factor */
        const double f = -X[i * n] * (sqrt(V[i]) + 1e-8) / O[i * n], f0 = -X[0] * (sqrt(V[0]) + 1e-8) / O[0];
        cr_assert_float_eq(f, f0, 1e-4 * fabs(f0), "row %d scaled by %.8g, row 0 by %.8g", i, f, f0);
    }
    rig_close(&r);
}

/* ---- §11.6 adamw / lion groups, group step counters ---- */

/* A NorMuon optimizer with a matrix group, an adamw group and a lion group (1-D parameters).
 * First adamw step: X (1 - lr wd) - lr G / (|G| + eps); lion: |X_new - X (1 - lr wd)| = lr.
 * Every group's `step` advances, also a group whose parameters have no gradient. */
Test(dion_props, adamw_lion_first_step)
{
    rig r = {0};
    rig_param(&r, 0, 8, 8, 61, 1.0f);
    rig_param(&r, 1, 16, 0, 62, 1.0f);
    rig_param(&r, 2, 16, 0, 63, 1.0f);
    eopt_dict hp[3] = {group(NULL, 0.01, 0.0), group("adamw", 0.003, 0.1), group("lion", 0.002, 0.1)};
    int sizes[3] = {1, 1, 1};
    cr_assert_eq(rig_make(&r, "NorMuon", NULL, 3, hp, sizes), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(r.opt->state[1].n, 2);
    cr_assert_str_eq(r.opt->state[1].key[1], "variance");
    cr_assert_eq(r.opt->state[2].n, 1);
    static float x0[3][64], x1[3][64], g[3][64];
    for (int i = 0; i < 3; i++)
        tu_download(&r.w[i], x0[i]);
    r.opt->params[0].grad = NULL; /* the matrix group has no gradient this step */
    rig_num_step(&r, 65, 1);
    for (int i = 0; i < 3; i++)
        tu_download(&r.w[i], x1[i]), tu_download(&r.g[i], g[i]);
    cr_assert_eq(tu_max_abs_diff(x0[0], x1[0], 64), 0.0, "a parameter without gradient must not move");
    for (int k = 0; k < 16; k++) {
        const double want = x0[1][k] * (1.0 - 0.003 * 0.1) - 0.003 * g[1][k] / (fabs(g[1][k]) + 1e-8);
        cr_assert_float_eq(x1[1][k], want, 1e-6, "adamw element %d: %.8g, want %.8g", k, x1[1][k], want);
        const double step = fabs(x1[2][k] - x0[2][k] * (1.0f - 0.002f * 0.1f));
        cr_assert_float_eq(step, 0.002, 1e-7, "lion element %d moved %.8g", k, step);
    }
    for (int gi = 0; gi < 3; gi++)
        cr_assert_eq(eopt_dict_get(&r.opt->groups[gi].hp, "step")->i, 1, "group %d step", gi);
    rig_close(&r);
}

/* AdamW's bias correction uses the group counter t (a parameter that skipped step 1 still
 * steps with t = 2), and cautious decay on both groups: AdamW adds lr wd X_old back where
 * M X_old < 0, Lion decays only where X U >= 0. */
Test(dion_props, adamw_group_step_and_cautious)
{
    rig r = {0};
    rig_param(&r, 0, 32, 0, 101, 1.0f);
    rig_param(&r, 1, 32, 0, 102, 1.0f);
    eopt_dict hp[2] = {group("adamw", 0.01, 0.5), group("lion", 0.02, 0.5)};
    eopt_dict_set(&hp[0], "cautious_wd", eopt_bool(1));
    eopt_dict_set(&hp[1], "cautious_wd", eopt_bool(1));
    const double b1 = 0.8, b2 = 0.9;
    eopt_dict_set(&hp[0], "beta1", eopt_float(b1));
    eopt_dict_set(&hp[0], "beta2", eopt_float(b2));
    cr_assert_eq(rig_make(&r, "Dion2", NULL, 2, hp, (int[]){1, 1}), EOPT_OK, "%s", eopt_last_error());
    eopt_tensor *g0 = r.opt->params[0].grad;
    r.opt->params[0].grad = NULL;
    static float x0[32], x1[32], g[32], l0[32], l1[32], lg[32];
    tu_download(&r.w[1], l0);
    rig_num_step(&r, 103, 1); /* only lion moves */
    tu_download(&r.w[1], l1);
    tu_download(&r.g[1], lg);
    tu_download(&r.w[0], x0);
    int kept = 0, masked = 0;
    for (int k = 0; k < 32; k++) {
        const float u = lg[k] > 0 ? 1.0f : -1.0f, keep = l0[k] * u >= 0 ? 1.0f : 0.0f;
        kept += keep == 1.0f;
        cr_assert_float_eq(l1[k], l0[k] - 0.02 * 0.5 * l0[k] * keep - 0.02 * u, 1e-6, "lion element %d", k);
    }
    r.opt->params[0].grad = g0;
    rig_num_step(&r, 103, 2);
    tu_download(&r.w[0], x1);
    tu_download(&r.g[0], g);
    const double bc1 = 1 - b1 * b1, bc2 = 1 - b2 * b2;
    for (int k = 0; k < 32; k++) {
        const double m = (1 - b1) * g[k], v = (1 - b2) * (double)g[k] * g[k];
        const double decay = m * x0[k] < 0 ? 0.0 : 0.01 * 0.5;
        masked += decay == 0.0;
        const double want = x0[k] * (1 - decay) - 0.01 / bc1 * m / (sqrt(v) / sqrt(bc2) + 1e-8);
        cr_assert_float_eq(x1[k], want, 1e-6, "adamw element %d: %.8g, want %.8g", k, x1[k], want);
    }
    cr_assert(kept > 0 && kept < 32 && masked > 0 && masked < 32, "the masks must be mixed (%d, %d)", kept, masked);
    rig_close(&r);
}

/* use_polar_express = False orthogonalises with dion's NS5: from X = 0 (lr = 1, wd = 0, no
 * adjustment) one step gives X = -NS5(G) exactly. */
Test(dion_props, ns5_when_polar_express_is_off)
{
    const int m = 9, n = 14;
    rig r = {0};
    rig_param(&r, 0, m, n, 111, 0.0f);
    eopt_dict hp = group(NULL, 1.0, 0.0), args = {0};
    eopt_dict_set(&hp, "adjust_lr", (eopt_value){.kind = EOPT_VAL_NONE});
    eopt_dict_set(&args, "use_polar_express", eopt_bool(0));
    cr_assert_eq(rig_make(&r, "dion.Muon", &args, 1, &hp, (int[]){1}), EOPT_OK, "%s", eopt_last_error());
    rig_num_step(&r, 113, 1);
    static float O[MAXN], X[MAXN];
    grad_ns(&r, 0, m, n, O);
    tu_download(&r.w[0], X);
    for (int k = 0; k < m * n; k++)
        cr_assert_eq(X[k], -O[k], "element %d", k);
    rig_close(&r);
}

/* Lion's sign(0) = 0: a zero gradient on zero momentum moves the weight only by the decay. */
Test(dion_props, lion_zero_gradient)
{
    rig r = {0};
    rig_param(&r, 0, 16, 0, 71, 1.0f);
    eopt_dict hp = group("lion", 0.01, 0.5);
    int one = 1;
    cr_assert_eq(rig_make(&r, "Dion2", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    static float x0[16], x1[16], z[16];
    tu_download(&r.w[0], x0);
    tu_upload(&r.g[0], z);
    cr_assert_eq(eopt_optimizer_step(r.opt), EOPT_OK, "%s", eopt_last_error());
    tu_download(&r.w[0], x1);
    for (int k = 0; k < 16; k++)
        cr_assert_eq(x1[k], x0[k] * (1.0f - 0.01f * 0.5f));
    rig_close(&r);
}

/* Cautious weight decay (§4 step 5), checked with softening 1 (known update O = M / ||M||):
 * X = X - lr wd (X [X O >= 0]) - adj O. */
Test(dion_props, cautious_weight_decay)
{
    const int m = 6, n = 9;
    rig r = {0};
    rig_param(&r, 0, m, n, 81, 1.0f);
    eopt_dict hp = group(NULL, 0.1, 0.5);
    eopt_dict_set(&hp, "cautious_wd", eopt_bool(1));
    eopt_dict args = {0};
    eopt_dict_set(&args, "softening", eopt_float(1.0));
    int one = 1;
    cr_assert_eq(rig_make(&r, "dion.Muon", &args, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    static float x0[64], x1[64], g[64];
    tu_download(&r.w[0], x0);
    rig_num_step(&r, 83, 1);
    tu_download(&r.w[0], x1);
    tu_download(&r.g[0], g);
    const double nrm = tu_fro(g, m * n);
    const double adj = 0.1 * sqrt((double)m / n);
    int masked = 0;
    for (int k = 0; k < m * n; k++) {
        const double o = g[k] / (nrm + 1e-8), keep = x0[k] * o >= 0 ? 1.0 : 0.0;
        masked += keep == 0.0;
        cr_assert_float_eq(x1[k], x0[k] - 0.05 * x0[k] * keep - adj * o, 1e-6, "element %d", k);
    }
    cr_assert(masked > 0 && masked < m * n);
    rig_close(&r);
}

/* num_heads = 2 on a (2h x n) parameter equals two separate (h x n) parameters. */
Test(dion_props, num_heads_split)
{
    const int h = 6, n = 10;
    rig a = {0}, b = {0};
    rig_param(&a, 0, 2 * h, n, 91, 1.0f);
    rig_param(&b, 0, h, n, 91, 1.0f);
    rig_param(&b, 1, h, n, 91, 1.0f);
    static float w[MAXN], g[MAXN], x[MAXN], y[MAXN];
    tu_download(&a.w[0], w);
    tu_upload(&b.w[0], w);
    tu_upload(&b.w[1], w + h * n);
    eopt_dict ha = group(NULL, 0.02, 0.1), hb = group(NULL, 0.02, 0.1);
    eopt_dict_set(&ha, "num_heads", eopt_int(2));
    int one = 1, two = 2;
    cr_assert_eq(rig_make(&a, "NorMuon", NULL, 1, &ha, &one), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(rig_make(&b, "NorMuon", NULL, 1, &hb, &two), EOPT_OK, "%s", eopt_last_error());
    for (int t = 1; t <= 3; t++) {
        for (int k = 0; k < 2 * h * n; k++)
            g[k] = num(97 + t, k);
        tu_upload(&a.g[0], g);
        tu_upload(&b.g[0], g);
        tu_upload(&b.g[1], g + h * n);
        cr_assert_eq(eopt_optimizer_step(a.opt), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_optimizer_step(b.opt), EOPT_OK, "%s", eopt_last_error());
    }
    tu_download(&a.w[0], x);
    tu_download(&b.w[0], y);
    tu_download(&b.w[1], y + h * n);
    cr_assert_leq(tu_max_abs_diff(x, y, 2 * h * n), 1e-6, "heads differ by %.3g", tu_max_abs_diff(x, y, 2 * h * n));
    rig_close(&a);
    rig_close(&b);
}

/* A 3-D parameter (flatten = False) is a batch of independent matrices: NorMuon on (2, h, n)
 * equals NorMuon on its two (h, n) slices, variance_neuron (2, h, 1) included. */
Test(dion_props, batched_3d_parameter)
{
    const int h = 6, n = 10;
    rig a = {0}, b = {0};
    rig_param(&b, 0, h, n, 93, 1.0f);
    rig_param(&b, 1, h, n, 93, 1.0f);
    int64_t sh[3] = {2, h, n};
    cr_assert_eq(eopt_tensor_alloc(&a.w[0], be, EOPT_F32, 3, sh), EOPT_OK);
    cr_assert_eq(eopt_tensor_alloc(&a.g[0], be, EOPT_F32, 3, sh), EOPT_OK);
    snprintf(a.p[0].name, sizeof a.p[0].name, "p0");
    a.p[0].w = &a.w[0], a.p[0].grad = &a.g[0], a.np = 1;
    static float w[MAXN], x[MAXN], y[MAXN];
    tu_download(&b.w[0], w);
    tu_download(&b.w[1], w + h * n);
    tu_upload(&a.w[0], w);
    eopt_dict hp = group(NULL, 0.02, 0.1);
    int one = 1, two = 2;
    cr_assert_eq(rig_make(&a, "NorMuon", NULL, 1, &hp, &one), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(rig_make(&b, "NorMuon", NULL, 1, &hp, &two), EOPT_OK, "%s", eopt_last_error());
    const eopt_tensor *v = eopt_state_get(a.opt, 0, "variance_neuron");
    cr_assert(v->ndim == 3 && v->shape[0] == 2 && v->shape[1] == h && v->shape[2] == 1);
    for (int t = 1; t <= 3; t++) {
        for (int k = 0; k < 2 * h * n; k++)
            x[k] = num(99 + t, k);
        tu_upload(&a.g[0], x);
        tu_upload(&b.g[0], x);
        tu_upload(&b.g[1], x + h * n);
        cr_assert_eq(eopt_optimizer_step(a.opt), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_optimizer_step(b.opt), EOPT_OK, "%s", eopt_last_error());
    }
    tu_download(&a.w[0], x);
    tu_download(&b.w[0], y);
    tu_download(&b.w[1], y + h * n);
    cr_assert_leq(tu_max_abs_diff(x, y, 2 * h * n), 1e-6, "batch differs by %.3g", tu_max_abs_diff(x, y, 2 * h * n));
    state_host(&a, 0, "variance_neuron", x);
    state_host(&b, 0, "variance_neuron", y);
    state_host(&b, 1, "variance_neuron", y + h);
    cr_assert_leq(tu_max_abs_diff(x, y, 2 * h), 1e-6 * max_abs(y, 2 * h));
    rig_close(&a);
    rig_close(&b);
}

/* ---- construction (§1.1-§1.3) ---- */

/* Group keys in upstream order, beta1 / beta2 from the constructor's betas, zero state for every
 * parameter at construction with the algorithm's keys and shapes. */
Test(dion_construct, keys_betas_and_state)
{
    rig r = {0};
    rig_param(&r, 0, 6, 4, 1, 1.0f);
    rig_param(&r, 1, 6, 0, 2, 1.0f);
    eopt_dict args = {0};
    const double betas[2] = {0.8, 0.99};
    eopt_dict_set(&args, "betas", eopt_floats(2, betas));
    eopt_dict hp[2] = {{0}, group("adamw", 0.1, 0.0)};
    eopt_dict_set(&hp[1], "beta2", eopt_float(0.5));
    int sizes[2] = {1, 1};
    cr_assert_eq(rig_make(&r, "NorMuon", &args, 2, hp, sizes), EOPT_OK, "%s", eopt_last_error());
    static const char *const keys[] = {"lr",          "mu",        "muon_beta2", "beta1",   "beta2",
                                       "weight_decay", "cautious_wd", "algorithm", "step",    "epsilon",
                                       "nesterov",    "flatten",   "adjust_lr"};
    const eopt_dict *d = &r.opt->groups[0].hp;
    cr_assert_eq(d->n, 13);
    for (int k = 0; k < 13; k++)
        cr_assert_str_eq(d->items[k].key, keys[k]);
    cr_assert_float_eq(eopt_dict_get(d, "beta1")->f, 0.8, 0);
    cr_assert_float_eq(eopt_dict_get(d, "beta2")->f, 0.99, 0);
    cr_assert_float_eq(eopt_dict_get(&r.opt->groups[1].hp, "beta1")->f, 0.8, 0);
    cr_assert_float_eq(eopt_dict_get(&r.opt->groups[1].hp, "beta2")->f, 0.5, 0);
    const eopt_state *s = &r.opt->state[0];
    cr_assert_eq(s->n, 2);
    cr_assert_str_eq(s->key[1], "variance_neuron");
    cr_assert_eq(s->t[1].ndim, 2);
    cr_assert_eq(s->t[1].shape[0], 6);
    cr_assert_eq(s->t[1].shape[1], 1);
    rig_close(&r);
    /* Dion2 key order */
    rig_param(&r, 0, 6, 4, 1, 1.0f);
    cr_assert_eq(rig_make(&r, "Dion2", NULL, 1, NULL, (int[]){1}), EOPT_OK, "%s", eopt_last_error());
    static const char *const keys2[] = {"lr",      "ef_decay", "fraction",  "beta1",     "beta2", "weight_decay",
                                        "epsilon", "flatten",  "adjust_lr", "algorithm", "step"};
    d = &r.opt->groups[0].hp;
    cr_assert_eq(d->n, 11);
    for (int k = 0; k < 11; k++)
        cr_assert_str_eq(d->items[k].key, keys2[k]);
    cr_assert_eq(r.opt->state[0].n, 1);
    rig_close(&r);
}

/* One constructor call expected to fail with `st` and a message containing `word`. */
static void expect_reject(const char *cls, const char *key, eopt_value v, int in_args, eopt_status st,
                          const char *word)
{
    rig r = {0};
    rig_param(&r, 0, 6, 4, 1, 1.0f);
    eopt_dict args = {0}, hp = {0};
    eopt_dict_set(in_args ? &args : &hp, key, v);
    const eopt_status got = rig_make(&r, cls, &args, 1, &hp, (int[]){1});
    cr_expect_eq(got, st, "%s %s: status %s (%s)", cls, key, eopt_status_name(got), eopt_last_error());
    cr_expect(strstr(eopt_last_error(), word), "%s %s: message '%s' lacks '%s'", cls, key, eopt_last_error(), word);
    cr_assert_null(r.opt);
    rig_close(&r);
}

Test(dion_construct, rejects_bad_values)
{
    const double bad_betas[2] = {0.9, -0.1};
    expect_reject("dion.Muon", "lr", eopt_float(-0.1), 0, EOPT_ERR_ARG, "-0.1");
    expect_reject("dion.Muon", "mu", eopt_float(-1), 0, EOPT_ERR_ARG, "mu");
    expect_reject("NorMuon", "muon_beta2", eopt_float(-0.5), 0, EOPT_ERR_ARG, "muon_beta2");
    expect_reject("Dion2", "ef_decay", eopt_float(-0.5), 0, EOPT_ERR_ARG, "ef_decay");
    expect_reject("Dion2", "fraction", eopt_float(0.0), 0, EOPT_ERR_ARG, "fraction");
    expect_reject("NorDion2", "fraction", eopt_float(1.5), 0, EOPT_ERR_ARG, "1.5");
    expect_reject("NorDion2", "mu", eopt_float(-0.5), 0, EOPT_ERR_ARG, "mu");
    expect_reject("dion.Muon", "adjust_lr", eopt_str("spectral"), 0, EOPT_ERR_ARG, "spectral");
    expect_reject("dion.Muon", "algorithm", eopt_str("sgd"), 0, EOPT_ERR_ARG, "sgd");
    expect_reject("Dion2", "algorithm", eopt_str("muon"), 0, EOPT_ERR_ARG, "muon");
    expect_reject("NorMuon", "num_heads", eopt_int(4), 0, EOPT_ERR_ARG, "num_heads");
    expect_reject("dion.Muon", "betas", eopt_floats(2, bad_betas), 1, EOPT_ERR_ARG, "betas");
    expect_reject("dion.Muon", "softening", eopt_float(NAN), 1, EOPT_ERR_ARG, "softening");
    expect_reject("Dion2", "softening", eopt_float(1.5), 1, EOPT_ERR_ARG, "1.5");
    expect_reject("NorDion2", "softening", eopt_float(-0.1), 1, EOPT_ERR_ARG, "softening");
    expect_reject("dion.Muon", "use_triton", eopt_bool(1), 1, EOPT_ERR_UNSUPPORTED, "use_triton");
    expect_reject("Dion2", "use_gram_newton_schulz", eopt_bool(1), 1, EOPT_ERR_UNSUPPORTED,
                  "use_gram_newton_schulz");
    expect_reject("NorMuon", "distributed_mesh", eopt_str("mesh"), 1, EOPT_ERR_ARG, "distributed_mesh");
    expect_reject("Dion2", "verbose_typo", eopt_bool(1), 1, EOPT_ERR_ARG, "verbose_typo");
}

/* A 1-D parameter in a matrix group is rejected (upstream asserts ndim >= 2), also without a
 * gradient; in an adamw group it is fine. */
Test(dion_construct, matrix_groups_need_matrices)
{
    rig r = {0};
    rig_param(&r, 0, 8, 0, 1, 1.0f);
    eopt_dict hp = {0};
    cr_assert_eq(rig_make(&r, "dion.Muon", NULL, 1, &hp, (int[]){1}), EOPT_ERR_SHAPE);
    cr_assert(strstr(eopt_last_error(), "p0"), "%s", eopt_last_error());
    eopt_dict_set(&hp, "algorithm", eopt_str("adamw"));
    cr_assert_eq(rig_make(&r, "dion.Muon", NULL, 1, &hp, (int[]){1}), EOPT_OK, "%s", eopt_last_error());
    rig_close(&r);
}

/* The checkpoint name "Muon" picks dion's class only for a dion source. */
Test(dion_construct, checkpoint_class_lookup)
{
    const eopt_optimizer_class *c = eopt_optimizer_find_checkpoint("Muon", "microsoft/dion@33777ce: Muon, NorMuon");
    cr_assert(c);
    cr_assert_str_eq(c->id, "dion.Muon");
    c = eopt_optimizer_find_checkpoint("Muon", "NVIDIA-NeMo/Emerging-Optimizers@b309e2f");
    cr_assert(c);
    cr_assert_str_neq(c->id, "dion.Muon");
    cr_assert_eq(eopt_optimizer_find_checkpoint("NorDion2", "microsoft/dion@33777ce"), &eopt_class_nordion2);
}

/* adjust_lr = None is an absent attribute in a checkpoint, and a loaded optimizer reads it as
 * None (no adjustment), not as the default "spectral_norm" (§1.2): after save and load, one step
 * moves the weights exactly as the original optimizer does. */
Test(dion_construct, adjust_lr_none_survives_a_checkpoint)
{
    rig r = {0};
    rig_param(&r, 0, 6, 10, 5, 1.0f);
    eopt_dict hp = group(NULL, 0.05, 0.0);
    eopt_dict_set(&hp, "adjust_lr", (eopt_value){.kind = EOPT_VAL_NONE});
    cr_assert_eq(rig_make(&r, "Dion2", NULL, 1, &hp, (int[]){1}), EOPT_OK, "%s", eopt_last_error());
    char dir[] = "/tmp/eopt-dion-XXXXXX", path[64];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/c.h5", dir);
    eopt_ckpt_optimizer co = {.name = "0", .opt = r.opt};
    eopt_ckpt_write w = {.step = 0, .producer = "test_dion", .nparams = 1, .params = r.p, .nopt = 1, .opts = &co};
    cr_assert_eq(eopt_checkpoint_save(path, &w), EOPT_OK, "%s", eopt_last_error());
    eopt_ckpt *ck = NULL;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    rig b = {0};
    rig_param(&b, 0, 6, 10, 5, 1.0f);
    cr_assert_eq(eopt_ckpt_create_optimizer(ck, "0", be, b.p, 1, &b.opt), EOPT_OK, "%s", eopt_last_error());
    rig_num_step(&r, 7, 1);
    rig_num_step(&b, 7, 1);
    static float x[60], y[60];
    tu_download(&r.w[0], x);
    tu_download(&b.w[0], y);
    cr_assert_eq(tu_max_abs_diff(x, y, 60), 0.0, "the loaded optimizer steps differently (adjust_lr %s)",
                 eopt_value_repr(eopt_dict_get(&b.opt->groups[0].hp, "adjust_lr"), (char[64]){0}, 64));
    eopt_checkpoint_close(ck);
    unlink(path);
    rmdir(dir);
    rig_close(&r);
    rig_close(&b);
}
