/* NVIDIA Muon, AdaptiveMuon (AdaMuon / NorMuon / NAMO), Muown and torch AdamW: the properties of
 * muon.md §8 and dion-muown.md §11.7, constructor validation, state layout and the inner Adam
 * update. The golden fixtures of these classes run in test_fixtures.c. Runs on the backend
 * EOPT_DEVICE names. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "optimizers/adamw.h"
#include "optimizers/muon.h"
#include "tests/testutil.h"

static eopt_backend *be;

static void setup(void) { be = tu_backend(0); }
static void teardown(void) { eopt_backend_close(be); }

/* One-group hyperparameters. */
static eopt_dict hp3(double lr, double momentum, double wd)
{
    eopt_dict d = {0};
    eopt_dict_set(&d, "lr", eopt_float(lr));
    eopt_dict_set(&d, "momentum", eopt_float(momentum));
    eopt_dict_set(&d, "weight_decay", eopt_float(wd));
    return d;
}

/* Constructor arguments from "key=value" pairs (value: a number, True/False, or a string). */
static eopt_dict args_of(int n, const char *const *kv)
{
    eopt_dict d = {0};
    for (int k = 0; k < n; k++) {
        char key[64];
        const char *eq = strchr(kv[k], '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv[k]), kv[k]);
        const char *v = eq + 1;
        char *end;
        double x = strtod(v, &end);
        if (strcmp(v, "True") == 0 || strcmp(v, "False") == 0)
            eopt_dict_set(&d, key, eopt_bool(v[0] == 'T'));
        else if (*end == '\0' && end != v)
            eopt_dict_set(&d, key, strchr(v, '.') || strchr(v, 'e') ? eopt_float(x) : eopt_int((int64_t)x));
        else
            eopt_dict_set(&d, key, eopt_str(v));
    }
    return d;
}
#define ARGS(...) args_of((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *[]){__VA_ARGS__})

/* Builds cls over one 16x16 parameter and returns the status; the message must contain `want`. */
static void expect_ctor_error(const char *cls, eopt_dict args, eopt_dict hp, const char *want)
{
    rig r;
    const int sh[1][2] = {{16, 16}};
    eopt_status st = rig_open(&r, be, cls, &args, &hp, 1, sh, 1);
    cr_expect_neq(st, EOPT_OK, "%s accepted arguments it should reject (%s)", cls, want);
    if (st != EOPT_OK)
        cr_expect(strstr(eopt_last_error(), want), "message '%s' lacks '%s'", eopt_last_error(), want);
    rig_close(&r);
}

/* ---- scale factor and validation ---- */

Test(muon_scale, factors_as_upstream, .init = setup, .fini = teardown)
{
    const struct {
        const char *mode;
        int m, n;
        double s;
    } cases[] = {{"shape_scaling", 48, 16, 1.7320508075688772}, {"shape_scaling", 16, 64, 1.0},
                 {"shape_scaling", 16, 16, 1.0},                {"spectral", 48, 16, 6.928203230275509},
                 {"spectral", 16, 64, 8.0},                     {"spectral", 16, 16, 4.0},
                 {"unit_rms_norm", 48, 16, 1.7320508075688772}, {"unit_rms_norm", 16, 64, 0.5},
                 {"unit_rms_norm", 16, 16, 1.0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double s = -1;
        cr_assert_eq(eopt_muon_scale_factor(cases[k].m, cases[k].n, cases[k].mode, &s), EOPT_OK);
        cr_expect(fabs(s - cases[k].s) < 1e-15, "%s %dx%d: %.17g, want %.17g", cases[k].mode, cases[k].m, cases[k].n,
                  s, cases[k].s);
    }
    double s;
    cr_expect_neq(eopt_muon_scale_factor(4, 4, "rms", &s), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "Invalid mode for Muon update scale factor: rms"), "%s", eopt_last_error());
}

Test(muon_validate, constructor_messages, .init = setup, .fini = teardown)
{
    const eopt_dict hp = hp3(0.01, 0.9, 0.0);
    expect_ctor_error("Muon", ARGS("num_ns_steps=0"), hp, "num_ns_steps must be at least 1, got 0");
    expect_ctor_error("Muon", ARGS("coefficient_type=foo"), hp, "Invalid coefficient type: foo");
    expect_ctor_error("Muon", ARGS("coefficient_type=custom"), hp,
                      "custom_coefficient_sets must be provided when coefficient_type is 'custom'.");
    expect_ctor_error("Muon", ARGS("weight_decay_method=bogus"), hp, "Invalid weight decay method: bogus");
    expect_ctor_error("Muon", ARGS("scale_mode=rms"), hp, "Invalid mode for Muon update scale factor: rms");
    expect_ctor_error("Muon", ARGS("fp32_matmul_prec=low"), hp, "fp32_matmul_prec");
    /* AdaptiveMuon checks namo + l2 before num_ns_steps, as upstream */
    expect_ctor_error("AdaptiveMuon", ARGS("moment2_method=namo", "weight_decay_method=l2", "num_ns_steps=0"), hp,
                      "moment2_method=\"namo\" is incompatible with weight_decay_method=\"l2\"");
    expect_ctor_error("AdaptiveMuon", ARGS("num_ns_steps=0"), hp, "num_ns_steps must be at least 1, got 0");
    expect_ctor_error("AdaptiveMuon", ARGS("moment2_method=adam"), hp, "Invalid second moment method: adam");
    expect_ctor_error("AdaptiveMuon", ARGS("use_syrk=True"), hp, "use_syrk"); /* not an AdaptiveMuon argument */
    eopt_dict no_lr = {0};
    eopt_dict_set(&no_lr, "momentum", eopt_float(0.9));
    eopt_dict_set(&no_lr, "weight_decay", eopt_float(0.0));
    expect_ctor_error("AdaptiveMuon", (eopt_dict){0}, no_lr, "'lr'");
    expect_ctor_error("Muown", ARGS("coefficient_type=cubic5", "num_ns_steps=4"), hp, "cubic5");
    expect_ctor_error("Muown", ARGS("num_ns_steps=0"), hp, "num_ns_steps must be at least 1, got 0");
    expect_ctor_error("Muown", ARGS("scale_mode=x"), hp, "Invalid mode for Muon update scale factor: x");
}

Test(muon_validate, adamw_messages, .init = setup, .fini = teardown)
{
    const struct {
        const char *key;
        eopt_value v;
        const char *want;
    } cases[] = {
        {"lr", eopt_float(-1.0), "Invalid learning rate: -1.0"},
        {"eps", eopt_float(-1e-8), "Invalid epsilon value: -1e-08"},
        {"betas", eopt_floats(2, (const double[]){1.0, 0.999}), "Invalid beta parameter at index 0: 1.0"},
        {"betas", eopt_floats(2, (const double[]){0.9, -0.5}), "Invalid beta parameter at index 1: -0.5"},
        {"weight_decay", eopt_float(-0.1), "Invalid weight_decay value: -0.1"},
        {"amsgrad", eopt_bool(1), "amsgrad"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        eopt_dict hp = {0};
        eopt_dict_set(&hp, cases[k].key, cases[k].v);
        expect_ctor_error("AdamW", (eopt_dict){0}, hp, cases[k].want);
    }
}

/* ---- state layout ---- */

static int state_keys(rig *r, int i, const char *const *keys)
{
    int n = 0;
    while (keys[n])
        n++;
    if (r->opt->state[i].n != n)
        return 0;
    for (int k = 0; k < n; k++)
        if (strcmp(r->opt->state[i].key[k], keys[k]) != 0)
            return 0;
    return 1;
}

Test(muon_state, keys_shapes_and_no_grad, .init = setup, .fini = teardown)
{
    const int sh[3][2] = {{48, 16}, {16, 64}, {16, 16}};
    const char *const m2[] = {"adamuon", "normuon", "namo"};
    for (int k = 0; k < 4; k++) {
        rig r;
        eopt_dict hp = hp3(0.01, 0.9, 0.01);
        eopt_dict a = k < 3 ? args_of(1, (const char *[]){k == 0 ? "moment2_method=adamuon"
                                                          : k == 1 ? "moment2_method=normuon"
                                                                   : "moment2_method=namo"})
                            : (eopt_dict){0};
        cr_assert_eq(rig_open(&r, be, k < 3 ? "AdaptiveMuon" : "Muon", &a, &hp, 3, sh, 3), EOPT_OK, "%s",
                     eopt_last_error());
        r.p[2].grad = NULL; /* no gradient: skipped, no state */
        r.opt->params[2].grad = NULL;
        rig_grads(&r, 5, 1, 1.0f);
        rig_step(&r);
        cr_expect_eq(r.opt->state[2].n, 0, "a parameter without gradient got state");
        if (k == 3) {
            cr_expect(state_keys(&r, 0, (const char *const[]){"momentum_buffer", NULL}));
            rig_close(&r);
            continue;
        }
        cr_expect(state_keys(&r, 0, (const char *const[]){"momentum_buffer", "moment2_buffer", NULL}), "%s", m2[k]);
        const eopt_tensor *v0 = eopt_state_get(r.opt, 0, "moment2_buffer"), *v1 = eopt_state_get(r.opt, 1, "moment2_buffer");
        if (k == 0) {
            cr_expect(v0->ndim == 2 && v0->shape[0] == 48 && v0->shape[1] == 16);
        } else if (k == 1) { /* per row of the tall matrix, per column of the wide one */
            cr_expect(v0->ndim == 2 && v0->shape[0] == 48 && v0->shape[1] == 1);
            cr_expect(v1->ndim == 2 && v1->shape[0] == 1 && v1->shape[1] == 64);
        } else {
            cr_expect(v0->ndim == 1 && v0->shape[0] == 1);
        }
        rig_close(&r);
    }
}

Test(muon_state, muown_and_adamw_layout, .init = setup, .fini = teardown)
{
    rig r;
    const int sh[2][2] = {{24, 16}, {16, 0}};
    eopt_dict hp = hp3(0.01, 0.9, 0.0);
    cr_assert_eq(rig_open(&r, be, "Muown", NULL, &hp, 1, sh, 3), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 5, 1, 1.0f);
    rig_step(&r);
    cr_expect(state_keys(&r, 0, (const char *const[]){"step", "g", "v_norm", "momentum_buffer", "m_g", "v_g", NULL}));
    const eopt_tensor *step = eopt_state_get(r.opt, 0, "step"), *g = eopt_state_get(r.opt, 0, "g");
    cr_expect(step->be == NULL && step->dtype == EOPT_I64 && step->ndim == 0 && *(int64_t *)step->data == 1);
    cr_expect(g->ndim == 2 && g->shape[0] == 24 && g->shape[1] == 1);
    rig_close(&r);

    eopt_dict none = {0};
    cr_assert_eq(rig_open(&r, be, "AdamW", NULL, &none, 2, sh, 3), EOPT_OK, "%s", eopt_last_error());
    const eopt_dict *d = &r.opt->groups[0].hp;
    const char *const keys[] = {"lr",      "betas",      "eps",        "weight_decay",   "amsgrad",
                                "maximize", "foreach", "capturable", "differentiable", "fused"};
    cr_assert_eq(d->n, 10);
    for (int k = 0; k < 10; k++)
        cr_expect_str_eq(d->items[k].key, keys[k]);
    cr_expect_eq(eopt_dict_get(d, "foreach")->kind, EOPT_VAL_NONE);
    rig_grads(&r, 5, 1, 1.0f);
    rig_step(&r);
    rig_step(&r);
    cr_expect(state_keys(&r, 1, (const char *const[]){"step", "exp_avg", "exp_avg_sq", NULL}));
    step = eopt_state_get(r.opt, 1, "step");
    cr_expect(step->be == NULL && step->dtype == EOPT_F32 && step->ndim == 0 && *(float *)step->data == 2.0f);
    cr_expect(eopt_state_get(r.opt, 1, "exp_avg")->ndim == 1, "AdamW takes any rank");
    rig_close(&r);
}

Test(muon_state, non_2d_rejected_untouched, .init = setup, .fini = teardown)
{
    rig r;
    const int sh[2][2] = {{16, 16}, {16, 0}};
    eopt_dict hp = hp3(0.01, 0.9, 0.1);
    cr_assert_eq(rig_open(&r, be, "Muon", NULL, &hp, 2, sh, 3), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 5, 1, 1.0f);
    float *w0 = tu_host(&r.w[0]);
    cr_expect_neq(eopt_optimizer_step(r.opt), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "Only 2D parameters are supported."), "%s", eopt_last_error());
    float *w1 = tu_host(&r.w[0]);
    cr_expect(memcmp(w0, w1, sizeof(float) * 256) == 0, "a failed step changed a parameter");
    cr_expect_eq(r.opt->state[0].n, 0);
    r.opt->params[1].grad = NULL; /* without a gradient a 1-D parameter is simply skipped */
    rig_step(&r);
    free(w0), free(w1);
    rig_close(&r);

    /* AdaptiveMuon rejects a non-2-D parameter even without gradient */
    cr_assert_eq(rig_open(&r, be, "AdaptiveMuon", NULL, &hp, 2, sh, 3), EOPT_OK, "%s", eopt_last_error());
    r.opt->params[1].grad = NULL;
    cr_expect_neq(eopt_optimizer_step(r.opt), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "AdaptiveMuon only supports 2D parameters"), "%s", eopt_last_error());
    rig_close(&r);
}

/* ---- weight decay and momentum ---- */

Test(muon_decay, variants, .init = setup, .fini = teardown)
{
    const int sh[1][2] = {{16, 24}};
    const double wd = 0.1, lr = 0.05;
    rig r;
    /* independent, lr = 0, momentum = 0: exactly P (1 - wd) (as p + (-wd) p) */
    eopt_dict hp = hp3(0.0, 0.0, wd);
    eopt_dict a = ARGS("weight_decay_method=independent");
    cr_assert_eq(rig_open(&r, be, "Muon", &a, &hp, 1, sh, 11), EOPT_OK, "%s", eopt_last_error());
    float *p0 = tu_host(&r.w[0]);
    rig_grads(&r, 3, 1, 1.0f);
    rig_step(&r);
    float *p1 = tu_host(&r.w[0]), *m = rig_state(&r, 0, "momentum_buffer"), *g = tu_host(&r.g[0]);
    for (int i = 0; i < 16 * 24; i++) {
        cr_assert_eq(p1[i], p0[i] + (float)-wd * p0[i], "independent decay at %d", i);
        cr_assert_eq(m[i], g[i], "momentum 0 must copy the gradient exactly");
    }
    free(p0), free(p1), free(m), free(g);
    rig_close(&r);

    /* decoupled with a zero gradient: U = 0, so exactly P + (-wd lr) P; palm: P + (-wd lr^2) P */
    for (int palm = 0; palm < 2; palm++) {
        hp = hp3(lr, 0.9, wd);
        a = palm ? ARGS("weight_decay_method=palm") : (eopt_dict){0};
        cr_assert_eq(rig_open(&r, be, "Muon", &a, &hp, 1, sh, 11), EOPT_OK, "%s", eopt_last_error());
        p0 = tu_host(&r.w[0]);
        rig_grads(&r, 3, 1, 0.0f);
        rig_step(&r);
        p1 = tu_host(&r.w[0]);
        const float d = (float)(palm ? -(wd * lr * lr) : -wd * lr);
        for (int i = 0; i < 16 * 24; i++)
            cr_assert_eq(p1[i], p0[i] + d * p0[i], "%s decay at %d", palm ? "palm" : "decoupled", i);
        free(p0), free(p1);
        rig_close(&r);
    }

    /* l2: the gradient becomes G + wd P and feeds the momentum */
    hp = hp3(lr, 0.5, wd);
    a = ARGS("weight_decay_method=l2");
    cr_assert_eq(rig_open(&r, be, "Muon", &a, &hp, 1, sh, 11), EOPT_OK, "%s", eopt_last_error());
    p0 = tu_host(&r.w[0]);
    rig_grads(&r, 3, 1, 1.0f);
    float *g0 = tu_host(&r.g[0]);
    rig_step(&r);
    g = tu_host(&r.g[0]);
    m = rig_state(&r, 0, "momentum_buffer");
    for (int i = 0; i < 16 * 24; i++) {
        const float gl2 = g0[i] + (float)wd * p0[i];
        cr_assert_eq(g[i], gl2, "l2 gradient at %d", i);
        cr_assert_eq(m[i], 0.0f + 0.5f * (gl2 - 0.0f), "momentum of the l2 gradient at %d", i);
    }
    free(p0), free(g0), free(g), free(m);
    rig_close(&r);
}

/* EMA momentum: M_t = sum_k (1 - mu) mu^(t - k) G_k, whatever the orthogonalisation. */
Test(muon_decay, ema_momentum, .init = setup, .fini = teardown)
{
    const int sh[1][2] = {{20, 12}}, n = 240, T = 4;
    const double mu = 0.9;
    rig r;
    eopt_dict hp = hp3(0.02, mu, 0.01);
    eopt_dict a = ARGS("nesterov=True");
    cr_assert_eq(rig_open(&r, be, "Muon", &a, &hp, 1, sh, 2), EOPT_OK, "%s", eopt_last_error());
    double *ref = calloc((size_t)n, sizeof *ref);
    for (int t = 1; t <= T; t++) {
        rig_grads(&r, 9, t, 1.0f);
        float *g = tu_host(&r.g[0]);
        for (int i = 0; i < n; i++)
            ref[i] = mu * ref[i] + (1 - mu) * g[i];
        free(g);
        rig_step(&r);
    }
    float *m = rig_state(&r, 0, "momentum_buffer");
    for (int i = 0; i < n; i++)
        cr_assert(fabs(m[i] - ref[i]) <= 1e-6 * (1 + fabs(ref[i])), "M[%d] = %g, want %g", i, m[i], ref[i]);
    free(m), free(ref);
    rig_close(&r);
}

/* ---- the orthogonalised update ---- */

/* The applied update U = (P_before - P_after) / lr of one step of `cls` (wd = 0) on one m x n
 * parameter with gradient seed 21; moment2 buffer copied into *v2 when asked. */
static float *one_update(const char *cls, eopt_dict args, double lr, double mu, int m, int n, float **v2)
{
    rig r;
    const int sh[1][2] = {{m, n}};
    eopt_dict hp = hp3(lr, mu, 0.0);
    if (strcmp(cls, "AdaptiveMuon") == 0)
        eopt_dict_set(&hp, "beta2", eopt_float(0.95));
    cr_assert_eq(rig_open(&r, be, cls, &args, &hp, 1, sh, 17), EOPT_OK, "%s", eopt_last_error());
    /* P_before = 0: P_after = -lr U rounds once, so U comes back to float32 rounding whatever the
     * random draws (P_before - P_after of N(0, 1) weights cancels up to |P| 2^-24 / lr) */
    float *p0 = calloc((size_t)m * n, sizeof *p0);
    tu_upload(&r.w[0], p0);
    rig_grads(&r, 21, 1, 1.0f);
    rig_step(&r);
    float *p1 = tu_host(&r.w[0]);
    for (int i = 0; i < m * n; i++)
        p1[i] = (float)(((double)p0[i] - p1[i]) / lr);
    if (v2)
        *v2 = rig_state(&r, 0, "moment2_buffer");
    free(p0);
    rig_close(&r);
    return p1;
}

/* Singular values of O = U / s lie in the quintic x5 range [0.4750, 1.1450] (well-conditioned
 * input), tall or wide; changing scale_mode only scales the update. */
Test(muon_update, singular_values_and_scale, .init = setup, .fini = teardown)
{
    const int shapes[2][2] = {{16, 40}, {40, 16}};
    for (int k = 0; k < 2; k++) {
        const int m = shapes[k][0], n = shapes[k][1], r = m < n ? m : n;
        float *u = one_update("Muon", ARGS("scale_mode=spectral"), 0.5, 0.0, m, n, NULL);
        float *v = one_update("Muon", ARGS("scale_mode=unit_rms_norm", "extra_scale_factor=0.2"), 0.5, 0.0, m, n, NULL);
        const double s = sqrt(40.0), s2 = sqrt((double)m / n) * 0.2;
        for (int i = 0; i < m * n; i++)
            cr_assert(fabs(u[i] / s - v[i] / s2) <= 1e-6 + 1e-5 * fabs(u[i] / s), "scale_mode changed direction at %d", i);
        /* Gram matrix of O on the short side, eigenvalues by the backend */
        float *gram = calloc((size_t)r * r, sizeof *gram), w[64];
        for (int a = 0; a < r; a++)
            for (int b = 0; b < r; b++) {
                double acc = 0;
                for (int j = 0; j < (m < n ? n : m); j++)
                    acc += m < n ? (double)u[a * n + j] * u[b * n + j] : (double)u[j * n + a] * u[j * n + b];
                gram[a * r + b] = (float)(acc / (s * s));
            }
        eopt_tensor G;
        const int64_t rr[2] = {r, r};
        cr_assert_eq(eopt_tensor_alloc(&G, be, EOPT_F32, 2, rr), EOPT_OK);
        tu_upload(&G, gram);
        eopt_tensor W;
        const int64_t rv[1] = {r};
        cr_assert_eq(eopt_tensor_alloc(&W, be, EOPT_F32, 1, rv), EOPT_OK);
        cr_assert_eq(be->syevd(be, r, eopt_f32(&G), eopt_f32(&W)), EOPT_OK);
        tu_download(&W, w);
        for (int j = 0; j < r; j++) {
            const double sv = sqrt(fmax(w[j], 0.0f));
            cr_expect(sv >= 0.4750 - 1e-3 && sv <= 1.1450 + 1e-3, "%dx%d: singular value %g outside f's range", m, n,
                      sv);
        }
        eopt_tensor_free(&G), eopt_tensor_free(&W);
        free(gram), free(u), free(v);
    }
}

/* AdaMuon's first step: U' = O / (sqrt(1 - b2) |O| + eps) ~ sign(O) / sqrt(0.05) = +-4.4721. */
Test(muon_update, adamuon_first_step, .init = setup, .fini = teardown)
{
    float *u = one_update("AdaptiveMuon", ARGS("scale_mode=unit_rms_norm"), 1.0, 0.95, 16, 16, NULL);
    for (int i = 0; i < 256; i++)
        cr_assert(fabs(fabs(u[i]) - 4.472136) < 1e-3, "|U'[%d]| = %g", i, u[i]);
    free(u);
}

/* NAMO's first step scales Muon's by alpha = (1 - mu) / sqrt(1 - b2) = 0.22361; V = 0.05 ||G||^2. */
Test(muon_update, namo_first_step, .init = setup, .fini = teardown)
{
    float *v2;
    float *muon = one_update("Muon", (eopt_dict){0}, 0.1, 0.95, 24, 16, NULL);
    float *namo = one_update("AdaptiveMuon", ARGS("moment2_method=namo"), 0.1, 0.95, 24, 16, &v2);
    const double alpha = 0.05 / sqrt(0.05);
    for (int i = 0; i < 24 * 16; i++)
        cr_assert(fabs(namo[i] - alpha * muon[i]) <= 1e-5 * fabs(muon[i]) + 1e-7, "namo / muon at %d: %g vs %g", i,
                  namo[i], alpha * muon[i]);
    rig r;
    const int sh[1][2] = {{24, 16}};
    cr_assert_eq(rig_open(&r, be, NULL, NULL, NULL, 1, sh, 17), EOPT_OK);
    rig_grads(&r, 21, 1, 1.0f);
    float *g = tu_host(&r.g[0]);
    const double q = tu_fro(g, 24 * 16);
    cr_expect(fabs(v2[0] - 0.05 * q * q) <= 1e-5 * 0.05 * q * q, "moment2 %g, want %g", v2[0], 0.05 * q * q);
    free(g), free(v2), free(muon), free(namo);
    rig_close(&r);
}

/* NorMuon: ||U'||_F = ||O||_F, so the applied update has Muon's norm; with beta2 = 0 the buffer is
 * the row (tall/square) or column (wide) mean of O^2. */
Test(muon_update, normuon_norm_and_buffer, .init = setup, .fini = teardown)
{
    const int shapes[2][2] = {{32, 16}, {16, 40}};
    for (int k = 0; k < 2; k++) {
        const int m = shapes[k][0], n = shapes[k][1], rows = m >= n;
        float *v2;
        float *muon = one_update("Muon", (eopt_dict){0}, 0.1, 0.9, m, n, NULL);
        /* beta2 = 0 through a group value */
        rig r;
        const int sh[1][2] = {{m, n}};
        eopt_dict hp = hp3(0.1, 0.9, 0.0), a = ARGS("moment2_method=normuon");
        eopt_dict_set(&hp, "beta2", eopt_float(0.0));
        cr_assert_eq(rig_open(&r, be, "AdaptiveMuon", &a, &hp, 1, sh, 17), EOPT_OK, "%s", eopt_last_error());
        float *p0 = tu_host(&r.w[0]);
        rig_grads(&r, 21, 1, 1.0f);
        rig_step(&r);
        float *p1 = tu_host(&r.w[0]);
        v2 = rig_state(&r, 0, "moment2_buffer");
        for (int i = 0; i < m * n; i++)
            p1[i] = (float)(((double)p0[i] - p1[i]) / 0.1);
        const double nm = tu_fro(muon, m * n), nn = tu_fro(p1, m * n);
        cr_expect(fabs(nm - nn) <= 1e-5 * nm, "%dx%d: ||U|| %g vs Muon's %g", m, n, nn, nm);
        const double s = sqrt(m > n ? m : n);
        for (int j = 0; j < (rows ? m : n); j++) {
            double acc = 0;
            for (int l = 0; l < (rows ? n : m); l++) {
                const double o = (rows ? muon[j * n + l] : muon[l * n + j]) / s;
                acc += o * o;
            }
            acc /= rows ? n : m;
            cr_expect(fabs(v2[j] - acc) <= 1e-4 * acc, "%dx%d: V[%d] = %g, mean O^2 = %g", m, n, j, v2[j], acc);
        }
        free(p0), free(p1), free(v2), free(muon);
        rig_close(&r);
    }
}

/* scale_mode acts after the second-moment step: the moment2 buffer does not depend on it. */
Test(muon_update, scale_after_moment2, .init = setup, .fini = teardown)
{
    const char *const methods[] = {"moment2_method=adamuon", "moment2_method=normuon", "moment2_method=namo"};
    for (int k = 0; k < 3; k++) {
        float *va, *vb;
        float *a = one_update("AdaptiveMuon", args_of(2, (const char *[]){methods[k], "scale_mode=spectral"}), 0.1,
                              0.9, 24, 16, &va);
        float *b = one_update("AdaptiveMuon", args_of(2, (const char *[]){methods[k], "scale_mode=shape_scaling"}),
                              0.1, 0.9, 24, 16, &vb);
        const int nv = k == 0 ? 24 * 16 : k == 1 ? 24 : 1;
        cr_expect(memcmp(va, vb, sizeof(float) * (size_t)nv) == 0, "%s: moment2 depends on scale_mode", methods[k]);
        /* the update is read back through P (|P| ~ 1, lr = 0.1): allow the rounding of P */
        const double ratio = sqrt(24.0) / sqrt(1.5);
        for (int i = 0; i < 24 * 16; i++)
            cr_assert(fabs(a[i] - ratio * b[i]) <= 1e-5 * fabs(a[i]) + 1e-5, "%s: update ratio at %d: %g vs %g", methods[k], i, a[i], ratio * b[i]);
        free(a), free(b), free(va), free(vb);
    }
}

/* ---- Muown ---- */

static void row_norms(const float *w, int m, int n, double *out)
{
    for (int i = 0; i < m; i++)
        out[i] = tu_fro(w + (size_t)i * n, n);
}

/* Row norms of W equal g after every step; v_norm is the row norm of the new direction (so
 * W / g * v_norm reconstructs v with rows of norm v_norm); the momentum is row-wise orthogonal to
 * the unit directions u = W_prev / g_prev at the first step. */
Test(muon_muown, invariants, .init = setup, .fini = teardown)
{
    const int m = 24, n = 16, sh[1][2] = {{m, n}};
    rig r;
    eopt_dict hp = hp3(0.05, 0.9, 0.01);
    cr_assert_eq(rig_open(&r, be, "Muown", NULL, &hp, 1, sh, 4), EOPT_OK, "%s", eopt_last_error());
    double rn[24];
    for (int t = 1; t <= 4; t++) {
        float *w0 = tu_host(&r.w[0]);
        rig_grads(&r, 13, t, 1.0f);
        rig_step(&r);
        float *w = tu_host(&r.w[0]), *g = rig_state(&r, 0, "g"), *B = rig_state(&r, 0, "momentum_buffer");
        row_norms(w, m, n, rn);
        for (int i = 0; i < m; i++)
            cr_assert(fabs(rn[i] - fabs(g[i])) <= 1e-5 * fabs(g[i]), "step %d row %d: |W_i| %g, g %g", t, i, rn[i],
                      g[i]);
        if (t == 1) { /* B = (1 - mu) grad_v, grad_v . u = 0 per row */
            for (int i = 0; i < m; i++) {
                double dot = 0;
                for (int j = 0; j < n; j++)
                    dot += (double)B[i * n + j] * w0[i * n + j];
                cr_assert(fabs(dot) <= 1e-5 * tu_fro(B + i * n, n) * tu_fro(w0 + i * n, n), "row %d: grad_v not orthogonal",
                          i);
            }
        }
        free(w0), free(w), free(g), free(B);
    }
    rig_close(&r);

    /* lr = 0 leaves W, g and v_norm unchanged up to rounding */
    hp = hp3(0.0, 0.9, 0.01);
    cr_assert_eq(rig_open(&r, be, "Muown", NULL, &hp, 1, sh, 4), EOPT_OK, "%s", eopt_last_error());
    float *w0 = tu_host(&r.w[0]);
    row_norms(w0, m, n, rn);
    for (int t = 1; t <= 2; t++) {
        rig_grads(&r, 13, t, 1.0f);
        rig_step(&r);
    }
    float *w = tu_host(&r.w[0]), *g = rig_state(&r, 0, "g"), *vn = rig_state(&r, 0, "v_norm");
    for (int i = 0; i < m * n; i++)
        cr_assert(fabs(w[i] - w0[i]) <= 1e-6 * (1 + fabs(w0[i])), "lr = 0 moved W[%d]", i);
    for (int i = 0; i < m; i++) {
        cr_assert(fabs(g[i] - rn[i]) <= 1e-6 * rn[i], "lr = 0 moved g[%d]", i);
        cr_assert(fabs(vn[i] - rn[i]) <= 1e-6 * rn[i], "lr = 0 moved v_norm[%d]", i);
    }
    free(w0), free(w), free(g), free(vn);
    rig_close(&r);
}

/* A zero weight row with a zero gradient row becomes NaN (0/0) at the first step, and the whole
 * matrix at the next (upstream behaviour, dion-muown.md §10). */
Test(muon_muown, zero_row_nan, .init = setup, .fini = teardown)
{
    const int m = 8, n = 12, sh[1][2] = {{m, n}};
    rig r;
    eopt_dict hp = hp3(0.05, 0.9, 0.0);
    cr_assert_eq(rig_open(&r, be, "Muown", NULL, &hp, 1, sh, 4), EOPT_OK, "%s", eopt_last_error());
    float *w = tu_host(&r.w[0]);
    memset(w + 3 * n, 0, sizeof(float) * (size_t)n);
    tu_upload(&r.w[0], w);
    free(w);
    rig_grads(&r, 13, 1, 1.0f);
    float *g = tu_host(&r.g[0]);
    memset(g + 3 * n, 0, sizeof(float) * (size_t)n);
    tu_upload(&r.g[0], g);
    free(g);
    rig_step(&r);
    float *gs = rig_state(&r, 0, "g");
    cr_expect_eq(gs[3], 1e-12f, "the zero row's magnitude is the 1e-12 floor");
    free(gs);
    w = tu_host(&r.w[0]);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            cr_assert_eq(isnan(w[i * n + j]) != 0, i == 3, "step 1: W[%d][%d] = %g", i, j, w[i * n + j]);
    free(w);
    rig_grads(&r, 13, 2, 1.0f);
    rig_step(&r);
    w = tu_host(&r.w[0]);
    for (int i = 0; i < m * n; i++)
        cr_assert(isnan(w[i]), "step 2: W[%d] = %g is not NaN", i, w[i]);
    free(w);
    rig_close(&r);
}

/* ---- Adam ---- */

/* AdamW's first step: P (1 - lr wd) - lr G / (|G| + eps) (bias corrections cancel); maximize
 * flips the gradient. */
Test(muon_adamw, first_step, .init = setup, .fini = teardown)
{
    const int sh[2][2] = {{12, 10}, {30, 0}};
    const double lr = 0.01, wd = 0.1;
    for (int maximize = 0; maximize < 2; maximize++) {
        rig r;
        eopt_dict hp = {0};
        eopt_dict_set(&hp, "lr", eopt_float(lr));
        eopt_dict_set(&hp, "weight_decay", eopt_float(wd));
        eopt_dict_set(&hp, "maximize", eopt_bool(maximize));
        cr_assert_eq(rig_open(&r, be, "AdamW", NULL, &hp, 2, sh, 8), EOPT_OK, "%s", eopt_last_error());
        float *p0[2] = {tu_host(&r.w[0]), tu_host(&r.w[1])};
        rig_grads(&r, 6, 1, 1.0f);
        rig_step(&r);
        for (int k = 0; k < 2; k++) {
            float *p1 = tu_host(&r.w[k]), *g = tu_host(&r.g[k]);
            for (int i = 0; i < r.w[k].numel; i++) {
                const double gi = maximize ? -g[i] : g[i];
                const double want = p0[k][i] * (1 - lr * wd) - lr * gi / (fabs(gi) + 1e-8);
                cr_assert(fabs(p1[i] - want) <= 1e-6 * (1 + fabs(want)), "param %d [%d]: %g, want %g", k, i, p1[i],
                          want);
            }
            free(p0[k]), free(p1), free(g);
        }
        rig_close(&r);
    }
}

/* calculate_adam_update at t = 1 with bias correction: g / (|g| + eps); Nesterov:
 * (1 + b1 / (1 + b1)) sign(g); without correction m / (sqrt(v) + eps). */
Test(muon_adamw, inner_adam_direction, .init = setup, .fini = teardown)
{
    const int n = 64;
    const double betas[2] = {0.9, 0.95};
    eopt_tensor g, m, v, u;
    const int64_t sh[1] = {n};
    eopt_tensor *ts[4] = {&g, &m, &v, &u};
    for (int k = 0; k < 4; k++)
        cr_assert_eq(eopt_tensor_alloc(ts[k], be, EOPT_F32, 1, sh), EOPT_OK);
    be->random(be, EOPT_RAND_NORMAL, 99, 0, n, eopt_f32(&g));
    float *gh = tu_host(&g);
    for (int mode = 0; mode < 3; mode++) {
        eopt_fill(be, n, 0.0f, eopt_f32(&m));
        eopt_fill(be, n, 0.0f, eopt_f32(&v));
        eopt_adam_update(be, n, eopt_f32(&g), eopt_f32(&m), eopt_f32(&v), betas, 1e-8, mode != 2, mode == 1, 1,
                         eopt_f32(&u));
        float *uh = tu_host(&u), *mh = tu_host(&m), *vh = tu_host(&v);
        for (int i = 0; i < n; i++) {
            const double gi = gh[i], sg = gi > 0 ? 1 : -1;
            const double want = mode == 0   ? gi / (fabs(gi) + 1e-8)
                                : mode == 1 ? (1 + 0.9 / 1.9) * sg
                                            : 0.1 * gi / (sqrt(0.05) * fabs(gi) + 1e-8);
            cr_assert(fabs(uh[i] - want) <= 1e-5 * fabs(want), "mode %d [%d]: %g, want %g", mode, i, uh[i], want);
            cr_assert(fabs(mh[i] - 0.1 * gi) <= 1e-6 * fabs(gi) && fabs(vh[i] - 0.05 * gi * gi) <= 1e-6 * gi * gi);
        }
        free(uh), free(mh), free(vh);
    }
    free(gh);
    for (int k = 0; k < 4; k++)
        eopt_tensor_free(ts[k]);
}

/* coefficient_type "custom" with custom_coefficient_sets (an eopt extension): the quintic
 * triples given by hand reproduce "quintic" bit for bit, on Muon and Muown; malformed lists and
 * a missing list are rejected with messages naming the argument. */
Test(muon_update, custom_coefficients, .init = setup, .fini = teardown)
{
    const double q[15] = {4.0848, -6.8946, 2.9270, 3.9505, -6.3029, 2.6377, 3.7418, -5.5913,
                          2.3037, 2.8769, -3.1427, 1.2046, 2.8366, -3.0525, 1.2012};
    const char *classes[] = {"Muon", "Muown"};
    for (int c = 0; c < 2; c++) {
        eopt_dict custom = ARGS("coefficient_type=custom", "fp32_matmul_prec=highest");
        eopt_dict_set(&custom, "custom_coefficient_sets", eopt_floats(15, q));
        float *a = one_update(classes[c], ARGS("coefficient_type=quintic", "fp32_matmul_prec=highest"), 0.01, 0.9,
                              24, 16, NULL);
        float *b = one_update(classes[c], custom, 0.01, 0.9, 24, 16, NULL);
        cr_expect_eq(memcmp(a, b, 24 * 16 * sizeof(float)), 0, "%s: custom quintic differs from quintic", classes[c]);
        free(a), free(b);
    }
    eopt_dict bad = ARGS("coefficient_type=custom");
    eopt_dict_set(&bad, "custom_coefficient_sets", eopt_floats(4, q));
    expect_ctor_error("Muon", bad, hp3(0.01, 0.9, 0.0), "custom_coefficient_sets needs (a, b, c) triples, got 4");
    expect_ctor_error("Muon", ARGS("coefficient_type=custom"), hp3(0.01, 0.9, 0.0),
                      "custom_coefficient_sets must be provided when coefficient_type is 'custom'.");
}
