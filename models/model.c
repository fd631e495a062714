/* The model module: creation, parameters, initialisation helpers and the pieces both
 * architectures share (linear layers, cross-entropy); mlp.c and gpt.c hold the networks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

float *eopt_arena_take(eopt_arena *a, int64_t n)
{
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) & ~(int64_t)15; /* 64-byte aligned blocks */
    return p;
}

static int model_nparams(const eopt_model_config *cfg)
{
    return cfg->kind == EOPT_MODEL_MLP ? 2 * (cfg->ndims - 1) : 2 + 12 * cfg->n_layer + 2;
}

static eopt_status check_config(const eopt_model_config *cfg, int max_B, int max_T)
{
    if (max_B < 1)
        return eopt_fail(EOPT_ERR_ARG, "model: max_B must be >= 1, got %d", max_B);
    if (cfg->kind == EOPT_MODEL_MLP) {
        if (cfg->ndims < 2 || cfg->ndims > EOPT_MLP_MAX_LAYERS + 1)
            return eopt_fail(EOPT_ERR_ARG, "mlp: dims needs 2..%d entries, got %d", EOPT_MLP_MAX_LAYERS + 1,
                             cfg->ndims);
        for (int i = 0; i < cfg->ndims; i++)
            if (cfg->dims[i] < 1)
                return eopt_fail(EOPT_ERR_ARG, "mlp: dims[%d] must be >= 1, got %d", i, cfg->dims[i]);
        return EOPT_OK;
    }
    if (cfg->kind != EOPT_MODEL_GPT)
        return eopt_fail(EOPT_ERR_ARG, "model: unknown kind %d", (int)cfg->kind);
    if (cfg->vocab_size < 1 || cfg->block_size < 1 || cfg->n_layer < 1 || cfg->n_head < 1 || cfg->n_embd < 1)
        return eopt_fail(EOPT_ERR_ARG,
                         "gpt: vocab_size, block_size, n_layer, n_head, n_embd must be >= 1, got %d, %d, %d, %d, %d",
                         cfg->vocab_size, cfg->block_size, cfg->n_layer, cfg->n_head, cfg->n_embd);
    if (cfg->n_embd % cfg->n_head)
        return eopt_fail(EOPT_ERR_ARG, "gpt: n_embd %d is not divisible by n_head %d", cfg->n_embd, cfg->n_head);
    if (max_T < 1 || max_T > cfg->block_size)
        return eopt_fail(EOPT_ERR_ARG, "gpt: max_T must be in 1..block_size (%d), got %d", cfg->block_size, max_T);
    return EOPT_OK;
}

eopt_status eopt_model_add_param(eopt_model *m, const char *name, int ndim, const int64_t *shape)
{
    eopt_param *p = &m->params[m->nparams];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->w = calloc(1, sizeof *p->w);
    p->grad = calloc(1, sizeof *p->grad);
    m->nparams++; /* counted now, so that eopt_model_free releases a half-built parameter */
    if (!p->w || !p->grad)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for parameter %s", name);
    EOPT_TRY(eopt_tensor_alloc(p->w, m->be, EOPT_F32, ndim, shape));
    return eopt_tensor_alloc(p->grad, m->be, EOPT_F32, ndim, shape);
}

eopt_status eopt_model_create(const eopt_model_config *cfg, eopt_backend *be, int max_B, int max_T, eopt_model **out)
{
    *out = NULL;
    if (cfg->kind == EOPT_MODEL_MLP)
        max_T = 1;
    EOPT_TRY(check_config(cfg, max_B, max_T));
    eopt_model *m = calloc(1, sizeof *m);
    if (!m)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the model");
    m->cfg = *cfg;
    m->be = be;
    m->max_B = max_B;
    m->max_T = max_T;
    m->params = calloc((size_t)model_nparams(cfg), sizeof *m->params);
    eopt_status st = m->params ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory for the parameter list");
    if (st == EOPT_OK)
        st = cfg->kind == EOPT_MODEL_MLP ? eopt_mlp_build(m) : eopt_gpt_build(m);
    if (st != EOPT_OK) {
        eopt_model_free(m);
        return st;
    }
    *out = m;
    return EOPT_OK;
}

void eopt_model_free(eopt_model *m)
{
    if (!m)
        return;
    if (m->cfg.kind == EOPT_MODEL_MLP)
        eopt_mlp_free(m);
    else
        eopt_gpt_free(m);
    for (int i = 0; i < m->nparams; i++) {
        if (m->params[i].w)
            eopt_tensor_free(m->params[i].w);
        if (m->params[i].grad)
            eopt_tensor_free(m->params[i].grad);
        free(m->params[i].w);
        free(m->params[i].grad);
    }
    free(m->params);
    free(m);
}

/* A network's result, unless a backend operation it ran failed (backend.h: those return
 * nothing and record the failure in the backend). */
static eopt_status checked(const eopt_model *m, eopt_status st, const char *what)
{
    return st != EOPT_OK ? st : eopt_backend_check(m->be, what);
}

eopt_status eopt_model_init(eopt_model *m, uint64_t seed)
{
    return checked(m, m->cfg.kind == EOPT_MODEL_MLP ? eopt_mlp_init(m, seed) : eopt_gpt_init(m, seed), "model init");
}

int eopt_model_find(const eopt_model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0)
            return i;
    for (int i = 0; i < m->ntied; i++)
        if (strcmp(m->tied[i].name, name) == 0)
            return m->tied[i].target;
    return -1;
}

void eopt_model_zero_grad(eopt_model *m)
{
    for (int i = 0; i < m->nparams; i++)
        eopt_fill(m->be, m->params[i].grad->numel, 0.0f, eopt_f32(m->params[i].grad));
}

static eopt_status check_batch(const eopt_model *m, const eopt_batch *b, int need_targets)
{
    if (b->B < 1 || b->B > m->max_B)
        return eopt_fail(EOPT_ERR_SHAPE, "batch size %d outside 1..%d (the model's max_B)", b->B, m->max_B);
    if (m->cfg.kind == EOPT_MODEL_MLP) {
        if (!b->x || (need_targets && !b->labels))
            return eopt_fail(EOPT_ERR_ARG, "mlp batch needs x%s", need_targets ? " and labels" : "");
        return EOPT_OK;
    }
    if (b->T < 1 || b->T > m->max_T)
        return eopt_fail(EOPT_ERR_SHAPE, "sequence length %d outside 1..%d (the model's max_T)", b->T, m->max_T);
    if (!b->tokens || (need_targets && !b->targets))
        return eopt_fail(EOPT_ERR_ARG, "gpt batch needs tokens%s", need_targets ? " and targets" : "");
    return EOPT_OK;
}

eopt_status eopt_model_forward(eopt_model *m, const eopt_batch *batch, int backward, float grad_scale, float *loss,
                               float *logits_out)
{
    EOPT_TRY(check_batch(m, batch, 1));
    return checked(m,
                   m->cfg.kind == EOPT_MODEL_MLP ? eopt_mlp_forward(m, batch, backward, grad_scale, loss, logits_out)
                                                 : eopt_gpt_forward(m, batch, backward, grad_scale, loss, logits_out),
                   backward ? "model forward/backward" : "model forward");
}

eopt_status eopt_model_correct(eopt_model *m, const eopt_batch *batch, int *correct)
{
    if (m->cfg.kind != EOPT_MODEL_MLP)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "eopt_model_correct: only the MLP classifier counts correct labels");
    if (!batch->labels)
        return eopt_fail(EOPT_ERR_ARG, "eopt_model_correct: the batch has no labels");
    EOPT_TRY(check_batch(m, batch, 0));
    return checked(m, eopt_mlp_correct(m, batch, correct), "model accuracy");
}

eopt_status eopt_model_generate(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                                uint64_t seed, int32_t *out)
{
    if (m->cfg.kind != EOPT_MODEL_GPT)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "eopt_model_generate: only GPT generates text");
    if (nprompt < 1 || n < 0)
        return eopt_fail(EOPT_ERR_ARG, "eopt_model_generate: needs a prompt of >= 1 token and n >= 0, got %d, %d",
                         nprompt, n);
    for (int i = 0; i < nprompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
            return eopt_fail(EOPT_ERR_ARG, "eopt_model_generate: prompt token %d = %d outside 0..%d", i, prompt[i],
                             m->cfg.vocab_size - 1);
    return checked(m, eopt_gpt_generate(m, prompt, nprompt, n, temperature, top_k, seed, out), "model generate");
}

void eopt_linear_forward(eopt_backend *be, int N, int in, int out, const float *x, const float *W, const float *bias,
                         float beta, float *y)
{
    be->gemm(be, EOPT_PREC_FP32, 0, 1, N, out, in, 1.0f, x, in, 0, W, in, 0, beta, y, out, 0, 1);
    if (bias)
        eopt_ew_run(be, EOPT_EW(add_bias, (int64_t)N * out, .y = y, .a = y, .bias = bias, .cols = out));
}

void eopt_linear_backward(eopt_backend *be, int N, int in, int out, const float *dy, const float *x, const float *W,
                          float *dW, float *db, const float *ones, float *dx)
{
    be->gemm(be, EOPT_PREC_FP32, 1, 0, out, in, N, 1.0f, dy, out, 0, x, in, 0, 1.0f, dW, in, 0, 1);
    if (db) /* the column sums of dy, as a 1 x N by N x out product */
        be->gemm(be, EOPT_PREC_FP32, 0, 0, 1, out, N, 1.0f, ones, N, 0, dy, out, 0, 1.0f, db, out, 0, 1);
    if (dx)
        be->gemm(be, EOPT_PREC_FP32, 0, 0, N, in, out, 1.0f, dy, out, 0, W, in, 0, 0.0f, dx, in, 0, 1);
}

/* loss = mean_r (log sum_j exp(l_rj - max_r) + max_r - l_r,target), the log-sum-exp shifted by
 * the row maximum so that no exp overflows. */
void eopt_cross_entropy(eopt_backend *be, int N, int V, const float *logits, const int32_t *targets, int backward,
                        float grad_scale, float *exps, float *rows, float *loss_dev)
{
    float *mx = rows, *sum = rows + N, *row_loss = rows + 2 * N;
    be->reduce(be, EOPT_RED_MAX, EOPT_AXIS_ROWS, N, V, logits, NULL, V, 1.0f, mx);
    eopt_ew_run(be, EOPT_EW(exp_row, (int64_t)N * V, .y = exps, .a = logits, .max = mx, .cols = V));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ROWS, N, V, exps, NULL, V, 1.0f, sum);
    eopt_ew_run(be, EOPT_EW(ce_loss, N, .loss = row_loss, .logits = logits, .sum = sum, .max = mx, .targets = targets,
                            .cols = V));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, 1, N, row_loss, NULL, N, 1.0f / (float)N, loss_dev);
    if (backward)
        eopt_ew_run(be, EOPT_EW(ce_backward, (int64_t)N * V, .dlogits = exps, .exps = exps, .sum = sum,
                                .targets = targets, .scale = grad_scale / (float)N, .cols = V));
}
