/* The MLP classifier (../shared/spec/models.md): h_{i+1} = GELU(h_i W_i^T + b_i), no GELU
 * after the last layer, whose output is the logits; mean cross-entropy loss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "arch.h"

typedef struct {
    float *block;                      /* the one device allocation everything below lives in */
    float *pre[EOPT_MLP_MAX_LAYERS];   /* [B, d_{i+1}]: GELU' at the pre-activation; the last is the logits */
    float *act[EOPT_MLP_MAX_LAYERS];   /* GELU(pre) for every layer but the last */
    float *rows, *loss, *ones;         /* cross-entropy scratch [3B], the loss; B ones for biases and their gradients */
    float *d0, *d1;                    /* backward ping-pong buffers [B, max d] */
} mlp_acts;

#define W(i) (2 * (i)) /* parameter order: layers.<i>.weight, layers.<i>.bias */
#define BIAS(i) (2 * (i) + 1)

static eopt_status mlp_check(const eopt_model_config *cfg, int max_B, int *max_T)
{
    (void)max_B;
    *max_T = 1;
    if (cfg->ndims < 2 || cfg->ndims > EOPT_MLP_MAX_LAYERS + 1)
        return eopt_fail(EOPT_ERR_ARG, "mlp: dims needs 2..%d entries, got %d", EOPT_MLP_MAX_LAYERS + 1, cfg->ndims);
    for (int i = 0; i < cfg->ndims; i++)
        if (cfg->dims[i] < 1)
            return eopt_fail(EOPT_ERR_ARG, "mlp: dims[%d] must be >= 1, got %d", i, cfg->dims[i]);
    return EOPT_OK;
}

static int mlp_nparams(const eopt_model_config *cfg) { return 2 * (cfg->ndims - 1); }

static void mlp_layout(const eopt_model *m, void *acts, eopt_arena *ar)
{
    mlp_acts *a = acts;
    const int L = m->cfg.ndims - 1, B = m->max_B;
    int maxd = 0;
    for (int i = 0; i <= L; i++)
        maxd = m->cfg.dims[i] > maxd ? m->cfg.dims[i] : maxd;
    for (int i = 0; i < L; i++) {
        a->pre[i] = eopt_arena_take(ar, (int64_t)B * m->cfg.dims[i + 1]);
        a->act[i] = i < L - 1 ? eopt_arena_take(ar, (int64_t)B * m->cfg.dims[i + 1]) : NULL;
    }
    a->rows = eopt_arena_take(ar, 3 * (int64_t)B);
    a->loss = eopt_arena_take(ar, 1);
    a->ones = eopt_arena_take(ar, B);
    a->d0 = eopt_arena_take(ar, (int64_t)B * maxd);
    a->d1 = eopt_arena_take(ar, (int64_t)B * maxd);
}

static eopt_status mlp_build(eopt_model *m)
{
    const int L = m->cfg.ndims - 1;
    for (int i = 0; i < L; i++) {
        char name[EOPT_NAME_MAX];
        int64_t wshape[2] = {m->cfg.dims[i + 1], m->cfg.dims[i]}, bshape[1] = {m->cfg.dims[i + 1]};
        snprintf(name, sizeof name, "layers.%d.weight", i);
        EOPT_TRY(eopt_model_add_param(m, name, 2, wshape));
        snprintf(name, sizeof name, "layers.%d.bias", i);
        EOPT_TRY(eopt_model_add_param(m, name, 1, bshape));
    }
    mlp_acts *a = calloc(1, sizeof *a);
    if (!a)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the MLP");
    m->impl = a;
    EOPT_TRY(eopt_model_alloc_acts(m, mlp_layout, a, &a->block));
    eopt_fill(m->be, m->max_B, 1.0f, a->ones);
    return EOPT_OK;
}

static void mlp_free(eopt_model *m)
{
    mlp_acts *a = m->impl;
    if (!a)
        return;
    if (a->block)
        m->be->free(m->be, a->block);
    free(a);
    m->impl = NULL;
}

/* nn.Linear's default: weight and bias uniform in +-1/sqrt(fan_in). */
static eopt_status mlp_init(eopt_model *m, uint64_t seed)
{
    for (int i = 0; i < m->nparams; i++) {
        eopt_tensor *w = m->params[i].w;
        float bound = 1.0f / sqrtf((float)m->cfg.dims[i / 2]);
        m->be->random(m->be, EOPT_RAND_UNIFORM, seed, (uint64_t)i << 40, w->numel, eopt_f32(w));
        eopt_ew_run(m->be, EOPT_EW(scale, w->numel, .y = eopt_f32(w), .a = eopt_f32(w), .alpha = 2.0f * bound));
        eopt_ew_run(m->be, EOPT_EW(add_scalar, w->numel, .y = eopt_f32(w), .a = eopt_f32(w), .alpha = -bound));
    }
    return EOPT_OK;
}

static eopt_status mlp_check_batch(const eopt_model *m, const eopt_batch *b, int need_targets)
{
    (void)m;
    if (!b->x || (need_targets && !b->labels))
        return eopt_fail(EOPT_ERR_ARG, "mlp batch needs x%s", need_targets ? " and labels" : "");
    return EOPT_OK;
}

/* Forward to the logits (a->pre[L-1]): linear layers, the bias and GELU fused after all but the last. */
static float *mlp_logits(eopt_model *m, const eopt_batch *b)
{
    mlp_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int L = m->cfg.ndims - 1;
    const float *h = b->x;
    for (int i = 0; i < L; i++) {
        const int in = m->cfg.dims[i], out = m->cfg.dims[i + 1];
        eopt_linear_forward(be, b->B, in, out, h, eopt_pw(m, W(i)), eopt_pw(m, BIAS(i)), a->ones, 0.0f, a->pre[i]);
        if (i < L - 1) {
            eopt_gelu_forward(be, (int64_t)b->B * out, a->pre[i], a->pre[i], a->act[i]);
            h = a->act[i];
        }
    }
    return a->pre[L - 1];
}

static eopt_status mlp_forward(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                               float *logits_out)
{
    mlp_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int L = m->cfg.ndims - 1, B = b->B, V = m->cfg.dims[L];
    float *logits = mlp_logits(m, b);
    if (logits_out)
        eopt_copy_f32(be, (int64_t)B * V, logits, logits_out);
    eopt_cross_entropy(be, B, V, logits, b->labels, backward, grad_scale, a->rows, a->loss);
    if (backward) {
        float *d = logits, *next = a->d0; /* d: gradient of layer i's output */
        for (int i = L - 1; i >= 0; i--) {
            const int in = m->cfg.dims[i], out = m->cfg.dims[i + 1];
            const float *h = i ? a->act[i - 1] : b->x;
            eopt_linear_backward(be, B, in, out, d, h, eopt_pw(m, W(i)), eopt_pg(m, W(i)), eopt_pg(m, BIAS(i)),
                                 a->ones, i ? next : NULL);
            if (i) {
                eopt_gelu_backward(be, (int64_t)B * in, next, a->pre[i - 1], next);
                d = next;
                next = next == a->d0 ? a->d1 : a->d0;
            }
        }
    }
    *loss = eopt_read_scalar(be, a->loss);
    return EOPT_OK;
}

static eopt_status mlp_correct(eopt_model *m, const eopt_batch *b, int *correct)
{
    mlp_acts *a = m->impl;
    const int L = m->cfg.ndims - 1;
    const float *logits = mlp_logits(m, b);
    eopt_ew_run(m->be, EOPT_EW(argmax_hit, b->B, .hit = a->rows, .logits = logits, .labels = b->labels,
                               .cols = m->cfg.dims[L]));
    m->be->reduce(m->be, EOPT_RED_SUM, EOPT_AXIS_ALL, 1, b->B, a->rows, NULL, b->B, 1.0f, a->loss);
    *correct = (int)lrintf(eopt_read_scalar(m->be, a->loss));
    return EOPT_OK;
}

const eopt_model_arch eopt_arch_mlp = {
    .name = "mlp",
    .check = mlp_check,
    .nparams = mlp_nparams,
    .build = mlp_build,
    .free = mlp_free,
    .init = mlp_init,
    .check_batch = mlp_check_batch,
    .forward = mlp_forward,
    .correct = mlp_correct,
};
