#include "newton_schulz.h"

#include <math.h>
#include <string.h>

/* The Emerging-Optimizers sets (muon_utils.py; cubic5 from Muown's commit). */
static const eopt_ns_triple set_simple[] = {{3.4445, -4.7750, 2.0315}};
static const eopt_ns_triple set_quintic[] = {{4.0848, -6.8946, 2.9270},
                                             {3.9505, -6.3029, 2.6377},
                                             {3.7418, -5.5913, 2.3037},
                                             {2.8769, -3.1427, 1.2046},
                                             {2.8366, -3.0525, 1.2012}};
static const eopt_ns_triple set_polar_express[] = {{8.2051, -22.9019, 16.4607}, {4.0664, -2.8612, 0.5184},
                                                   {3.9096, -2.8234, 0.5250},   {3.2856, -2.4153, 0.4853},
                                                   {2.2779, -1.6198, 0.3985},   {1.8726, -1.2307, 0.3585},
                                                   {1.8564, -1.2132, 0.3568},   {1.8750, -1.2500, 0.3750}};
static const eopt_ns_triple set_cans[] = {{8.4703, -25.1081, 18.6293},
                                          {4.1828, -3.1087, 0.5806},
                                          {3.9619, -2.9541, 0.5630},
                                          {3.2866, -2.4647, 0.5074},
                                          {2.2737, -1.6447, 0.4162}};
static const eopt_ns_triple set_aol[] = {{4.0098, -7.0585, 2.4635},
                                         {3.4585, -5.5479, 2.5959},
                                         {2.7573, -3.2939, 1.4254},
                                         {2.7215, -3.0494, 1.3169}};
static const eopt_ns_triple set_deepseekv4[] = {
    {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315},
    {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315}, {3.4445, -4.7750, 2.0315},
    {2.0, -1.5, 0.5},          {2.0, -1.5, 0.5}};
static const eopt_ns_triple set_cubic5[] = {{3.3656576, -3.3420992, 0},
                                            {2.5744352, -1.4957376, 0},
                                            {2.5368962, -1.4312570, 0},
                                            {2.4418906, -1.2764040, 0},
                                            {2.2230472, -0.9630650, 0}};
/* dion polar express (polar_express.py): 5 iterations, safety factor 1.02 in the normaliser. */
static const eopt_ns_triple set_dion_polar_express[] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323}};

typedef struct {
    const char *name;
    const eopt_ns_triple *sets;
    int nsets;
    eopt_ns_iter iter;
} named_set;

#define NAMED(name, iter) {#name, set_##name, (int)(sizeof set_##name / sizeof set_##name[0]), iter}
static const named_set named_sets[] = {
    NAMED(simple, EOPT_NS_CYCLE),        NAMED(quintic, EOPT_NS_CYCLE),          NAMED(polar_express, EOPT_NS_REPEAT_LAST),
    NAMED(cans, EOPT_NS_REPEAT_LAST),    NAMED(aol, EOPT_NS_CYCLE),              NAMED(deepseekv4, EOPT_NS_REPEAT_LAST),
    NAMED(cubic5, EOPT_NS_CYCLE),
};
#undef NAMED

static void set_triples(eopt_ns_config *cfg, const eopt_ns_triple *sets, int nsets, eopt_ns_iter iter)
{
    cfg->nsets = nsets;
    memcpy(cfg->sets, sets, (size_t)nsets * sizeof *sets);
    cfg->iter = iter;
}

eopt_status eopt_ns_emerging(const char *coefficient_type, int steps, const eopt_ns_triple *custom, int ncustom,
                             eopt_ns_config *out)
{
    memset(out, 0, sizeof *out);
    if (steps < 1)
        return eopt_fail(EOPT_ERR_ARG, "num_ns_steps must be at least 1, got %d", steps);
    out->steps = steps;
    out->norm_scale = 1.0;
    out->eps = 1e-7;
    out->eps_add = 0;
    out->prec = EOPT_PREC_FP32;
    if (strcmp(coefficient_type, "custom") == 0) {
        if (!custom)
            return eopt_fail(EOPT_ERR_ARG, "custom_coefficient_sets must be provided when coefficient_type is 'custom'.");
        if (ncustom <= 0)
            return eopt_fail(EOPT_ERR_ARG, "coefficient_sets must be non-empty.");
        if (ncustom > EOPT_NS_MAX_SETS)
            return eopt_fail(EOPT_ERR_ARG, "at most %d custom coefficient sets, got %d", EOPT_NS_MAX_SETS, ncustom);
        set_triples(out, custom, ncustom, EOPT_NS_CYCLE);
        return EOPT_OK;
    }
    for (size_t k = 0; k < sizeof named_sets / sizeof named_sets[0]; k++) {
        const named_set *s = &named_sets[k];
        if (strcmp(coefficient_type, s->name) != 0)
            continue;
        if (s->sets == set_cubic5 && steps != 5)
            return eopt_fail(EOPT_ERR_ARG, "coefficient_type 'cubic5' needs num_ns_steps = 5, got %d", steps);
        set_triples(out, s->sets, s->nsets, s->iter);
        return EOPT_OK;
    }
    return eopt_fail(EOPT_ERR_ARG, "Invalid coefficient type: %s", coefficient_type);
}

void eopt_ns_dion(int polar_express, double epsilon, eopt_ns_config *out)
{
    memset(out, 0, sizeof *out);
    if (polar_express)
        set_triples(out, set_dion_polar_express, 5, EOPT_NS_CYCLE);
    else
        set_triples(out, set_quintic, 5, EOPT_NS_CYCLE);
    out->steps = 5;
    out->norm_scale = polar_express ? 1.02 : 1.0;
    out->eps = epsilon;
    out->eps_add = 1;
    out->prec = EOPT_PREC_FP32;
}

eopt_ns_triple eopt_ns_triple_at(const eopt_ns_config *cfg, int i)
{
    int k = cfg->iter == EOPT_NS_CYCLE ? i % cfg->nsets : (i < cfg->nsets ? i : cfg->nsets - 1);
    return cfg->sets[k];
}

eopt_status eopt_ns_precision(const char *fp32_matmul_prec, eopt_prec *out)
{
    if (strcmp(fp32_matmul_prec, "highest") == 0)
        *out = EOPT_PREC_FP32;
    else if (strcmp(fp32_matmul_prec, "high") == 0)
        *out = EOPT_PREC_TF32;
    else if (strcmp(fp32_matmul_prec, "medium") == 0)
        *out = EOPT_PREC_BF16;
    else
        return eopt_fail(EOPT_ERR_ARG, "fp32_matmul_prec must be 'highest', 'high' or 'medium', got '%s'",
                         fp32_matmul_prec);
    return EOPT_OK;
}

/* X0 = X / den (den = max(scale ||X||_F, eps) or scale ||X||_F + eps), into Y. */
static void normalise(eopt_backend *be, const eopt_ns_config *cfg, int64_t count, int m, int n, const float *X,
                      float *norm, float *Y)
{
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, X, NULL, n, (float)cfg->norm_scale, norm);
    if (cfg->eps_add)
        eopt_ew_run(be, EOPT_EW(div_ds_add, count, .y = Y, .a = X, .norm = norm, .eps = (float)cfg->eps));
    else
        eopt_ew_run(be, EOPT_EW(div_ds_clamp, count, .y = Y, .a = X, .norm = norm, .min = (float)cfg->eps));
}

/* One polynomial step on the working matrix X (m x n, element size esz), result into Xn.
 * Wide (m <= n): A = X X^T (m x m), B = b A + c A A, Xn = a X + B X.
 * Tall (m > n):  A = X^T X (n x n), B likewise,   Xn = a X + X B: the transpose of the wide
 * step on X^T, without materialising the transpose (B is symmetric). */
static void ns_step(eopt_backend *be, eopt_prec prec, eopt_ns_triple t, int m, int n, const void *X, void *A, void *B,
                    void *Xn, size_t esz)
{
    const int tall = m > n, r = tall ? n : m;
    const float a = (float)t.a, b = (float)t.b, c = (float)t.c;
    if (prec == EOPT_PREC_BF16) /* no bf16 syrk: Gram products by gemm */
        be->gemm(be, prec, tall, !tall, r, r, tall ? m : n, 1.0f, X, n, 0, X, n, 0, 0.0f, A, r, 0, 1);
    else
        be->syrk(be, prec, tall, r, tall ? m : n, 1.0f, X, n, 0.0f, A, r);
    const void *P = A;
    float alpha = b; /* cubic sets (c == 0): Xn = a X + b A X, no A A product */
    if (c != 0.0f) {
        be->copy(be, B, A, (size_t)r * r * esz);
        /* B = c A A + b B; A A = A A^T since A is symmetric */
        if (prec == EOPT_PREC_BF16)
            be->gemm(be, prec, 0, 0, r, r, r, c, A, r, 0, A, r, 0, b, B, r, 0, 1);
        else
            be->syrk(be, prec, 0, r, r, c, A, r, b, B, r);
        P = B;
        alpha = 1.0f;
    }
    be->copy(be, Xn, X, (size_t)m * n * esz);
    if (tall)
        be->gemm(be, prec, 0, 0, m, n, n, alpha, X, n, 0, P, r, 0, a, Xn, n, 0, 1);
    else
        be->gemm(be, prec, 0, 0, m, n, m, alpha, P, r, 0, X, n, 0, a, Xn, n, 0, 1);
}

size_t eopt_ns_workspace_bytes(const eopt_backend *be, const eopt_ns_config *cfg, int m, int n)
{
    const size_t esz = be->device != EOPT_DEV_CPU && cfg->prec == EOPT_PREC_BF16 ? 2 : 4;
    const size_t r = (size_t)(m < n ? m : n), count = (size_t)m * (size_t)n;
    return eopt_ws_floats_size(1) + eopt_ws_floats_size((int64_t)count) + 2 * eopt_ws_size(count * esz) +
           2 * eopt_ws_size(r * r * esz) + eopt_ws_floats_size(1) + eopt_ws_floats_size((int64_t)(r * r));
}

eopt_status eopt_ns_orthogonalize(eopt_backend *be, eopt_workspace *ws, const eopt_ns_config *cfg, int m, int n,
                                  const float *X, float *O)
{
    if (cfg->steps < 1 || cfg->nsets < 1)
        return eopt_fail(EOPT_ERR_ARG, "Newton-Schulz needs at least one step and one coefficient set");
    /* The CPU computes in float32 whatever the requested precision. */
    const eopt_prec prec = be->device == EOPT_DEV_CPU ? EOPT_PREC_FP32 : cfg->prec;
    const int r = m < n ? m : n;
    const int64_t count = (int64_t)m * n;
    const size_t esz = prec == EOPT_PREC_BF16 ? 2 : 4;
    float *norm = eopt_ws_floats(ws, 1);
    float *X0 = eopt_ws_floats(ws, count);
    void *bufs[2] = {eopt_ws_bytes(ws, (size_t)count * esz), eopt_ws_bytes(ws, (size_t)count * esz)};
    void *A = eopt_ws_bytes(ws, (size_t)r * r * esz), *B = eopt_ws_bytes(ws, (size_t)r * r * esz);
    if (!norm || !X0 || !bufs[0] || !bufs[1] || !A || !B)
        return eopt_fail(EOPT_ERR_NOMEM, "Newton-Schulz workspace for a %dx%d matrix", m, n);

    normalise(be, cfg, count, m, n, X, norm, X0);
    if (prec == EOPT_PREC_BF16)
        be->to_bf16(be, count, X0, bufs[0]);
    else
        be->copy(be, bufs[0], X0, (size_t)count * esz);
    int cur = 0;
    for (int i = 0; i < cfg->steps; i++, cur ^= 1)
        ns_step(be, prec, eopt_ns_triple_at(cfg, i), m, n, bufs[cur], A, B, bufs[cur ^ 1], esz);
    if (prec == EOPT_PREC_BF16)
        be->from_bf16(be, count, bufs[cur], O);
    else
        be->copy(be, O, bufs[cur], (size_t)count * esz);
    return EOPT_OK;
}

eopt_status eopt_ns_residual(eopt_backend *be, eopt_workspace *ws, int m, int n, const float *O, float *res)
{
    const int tall = m > n, r = tall ? n : m;
    float *A = eopt_ws_floats(ws, (int64_t)r * r);
    if (!A)
        return eopt_fail(EOPT_ERR_NOMEM, "orthogonality residual workspace for a %dx%d matrix", m, n);
    be->syrk(be, EOPT_PREC_FP32, tall, r, tall ? m : n, 1.0f, O, n, 0.0f, A, r);
    eopt_ew_run(be, EOPT_EW(soap_add_diag, (int64_t)r * r, .y = A, .a = A, .eps = -1.0f, .cols = r)); /* A - I */
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, r, r, A, NULL, r, (float)(1.0 / sqrt((double)r)), res);
    return EOPT_OK;
}
