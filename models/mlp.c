/* The MLP classifier (../shared/spec/models.md): h_{i+1} = GELU(h_i W_i^T + b_i), no GELU
 * after the last layer, whose output is the logits; mean cross-entropy loss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"

typedef struct {
    float *block;                      /* the one device allocation everything below lives in */
    float *pre[EOPT_MLP_MAX_LAYERS];   /* pre-activations [B, d_{i+1}] (the last is the logits) */
    float *act[EOPT_MLP_MAX_LAYERS];   /* GELU(pre) for every layer but the last */
    float *exps, *rows, *loss, *ones;  /* cross-entropy scratch; B ones for bias gradients */
    float *d0, *d1;                    /* backward ping-pong buffers [B, max d] */
} mlp_acts;

static void mlp_layout(const eopt_model *m, mlp_acts *a, eopt_arena *ar)
{
    const int L = m->cfg.ndims - 1, B = m->max_B, dl = m->cfg.dims[L];
    int maxd = 0;
    for (int i = 0; i <= L; i++)
        maxd = m->cfg.dims[i] > maxd ? m->cfg.dims[i] : maxd;
    for (int i = 0; i < L; i++) {
        a->pre[i] = eopt_arena_take(ar, (int64_t)B * m->cfg.dims[i + 1]);
        a->act[i] = i < L - 1 ? eopt_arena_take(ar, (int64_t)B * m->cfg.dims[i + 1]) : NULL;
    }
    a->exps = eopt_arena_take(ar, (int64_t)B * dl);
    a->rows = eopt_arena_take(ar, 3 * (int64_t)B);
    a->loss = eopt_arena_take(ar, 1);
    a->ones = eopt_arena_take(ar, B);
    a->d0 = eopt_arena_take(ar, (int64_t)B * maxd);
    a->d1 = eopt_arena_take(ar, (int64_t)B * maxd);
}

eopt_status eopt_mlp_build(eopt_model *m)
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
    eopt_arena ar = {0};
    mlp_layout(m, a, &ar);
    ar.base = a->block = m->be->alloc(m->be, (size_t)ar.used * sizeof(float));
    if (!ar.base)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the MLP activations (%lld floats)", (long long)ar.used);
    ar.used = 0;
    mlp_layout(m, a, &ar);
    eopt_fill(m->be, m->max_B, 1.0f, a->ones);
    return EOPT_OK;
}

void eopt_mlp_free(eopt_model *m)
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
eopt_status eopt_mlp_init(eopt_model *m, uint64_t seed)
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

/* Forward to the logits (a->pre[L-1]). */
static const float *mlp_logits(eopt_model *m, const eopt_batch *b)
{
    mlp_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int L = m->cfg.ndims - 1;
    const float *h = b->x;
    for (int i = 0; i < L; i++) {
        const int in = m->cfg.dims[i], out = m->cfg.dims[i + 1];
        const float *bias = eopt_f32(m->params[2 * i + 1].w);
        eopt_linear_forward(be, b->B, in, out, h, eopt_f32(m->params[2 * i].w), i == L - 1 ? bias : NULL, 0.0f,
                            a->pre[i]);
        if (i < L - 1) {
            eopt_ew_run(be, EOPT_EW(bias_gelu, (int64_t)b->B * out, .pre = a->pre[i], .act = a->act[i], .a = a->pre[i],
                                    .bias = bias, .cols = out));
            h = a->act[i];
        }
    }
    return a->pre[L - 1];
}

eopt_status eopt_mlp_forward(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                             float *logits_out)
{
    mlp_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int L = m->cfg.ndims - 1, B = b->B, V = m->cfg.dims[L];
    const float *logits = mlp_logits(m, b);
    if (logits_out)
        eopt_copy_f32(be, (int64_t)B * V, logits, logits_out);
    eopt_cross_entropy(be, B, V, logits, b->labels, backward, grad_scale, a->exps, a->rows, a->loss);
    if (backward) {
        float *d = a->exps, *next = a->d0; /* d: gradient of layer i's output */
        for (int i = L - 1; i >= 0; i--) {
            const int in = m->cfg.dims[i], out = m->cfg.dims[i + 1];
            const float *h = i ? a->act[i - 1] : b->x;
            eopt_linear_backward(be, B, in, out, d, h, eopt_f32(m->params[2 * i].w), eopt_f32(m->params[2 * i].grad),
                                 eopt_f32(m->params[2 * i + 1].grad), a->ones, i ? next : NULL);
            if (i) {
                eopt_ew_run(be,
                            EOPT_EW(gelu_backward, (int64_t)B * in, .dx = next, .dout = next, .pre = a->pre[i - 1]));
                d = next;
                next = next == a->d0 ? a->d1 : a->d0;
            }
        }
    }
    *loss = eopt_read_scalar(be, a->loss);
    return EOPT_OK;
}

eopt_status eopt_mlp_correct(eopt_model *m, const eopt_batch *b, int *correct)
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
