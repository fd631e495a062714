/* The model module: the architecture list, creation, parameters and the public entry points,
 * which check their arguments and dispatch to the architecture (arch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"

/* Indexed by eopt_model_kind. */
static const eopt_model_arch *const archs[] = {
    [EOPT_MODEL_MLP] = &eopt_arch_mlp,
    [EOPT_MODEL_GPT] = &eopt_arch_gpt,
};

float *eopt_arena_take(eopt_arena *a, int64_t n)
{
    float *p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) & ~(int64_t)15; /* 64-byte aligned blocks */
    return p;
}

eopt_status eopt_model_alloc_acts(eopt_model *m, eopt_layout_fn layout, void *acts, float **block)
{
    eopt_arena ar = {0};
    layout(m, acts, &ar);
    ar.base = *block = m->be->alloc(m->be, (size_t)ar.used * sizeof(float));
    if (!ar.base)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the %s activations (%lld floats)", m->arch->name,
                         (long long)ar.used);
    m->act_bytes = ar.used * (int64_t)sizeof(float);
    ar.used = 0;
    layout(m, acts, &ar);
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
    if ((unsigned)cfg->kind >= sizeof archs / sizeof *archs)
        return eopt_fail(EOPT_ERR_ARG, "model: unknown kind %d", (int)cfg->kind);
    const eopt_model_arch *arch = archs[cfg->kind];
    if (max_B < 1)
        return eopt_fail(EOPT_ERR_ARG, "model: max_B must be >= 1, got %d", max_B);
    EOPT_TRY(arch->check(cfg, max_B, &max_T));
    eopt_model *m = calloc(1, sizeof *m);
    if (!m)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the model");
    m->cfg = *cfg;
    m->be = be;
    m->arch = arch;
    m->max_B = max_B;
    m->max_T = max_T;
    m->params = calloc((size_t)arch->nparams(cfg), sizeof *m->params);
    eopt_status st = m->params ? arch->build(m) : eopt_fail(EOPT_ERR_NOMEM, "out of memory for the parameter list");
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
    m->arch->free(m);
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

eopt_status eopt_model_init(eopt_model *m, uint64_t seed) { return checked(m, m->arch->init(m, seed), "model init"); }

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

int64_t eopt_model_activation_bytes(const eopt_model *m) { return m->act_bytes; }

void eopt_model_zero_grad(eopt_model *m)
{
    for (int i = 0; i < m->nparams; i++)
        eopt_fill(m->be, m->params[i].grad->numel, 0.0f, eopt_f32(m->params[i].grad));
}

static eopt_status check_batch(const eopt_model *m, const eopt_batch *b, int need_targets)
{
    if (b->B < 1 || b->B > m->max_B)
        return eopt_fail(EOPT_ERR_SHAPE, "batch size %d outside 1..%d (the model's max_B)", b->B, m->max_B);
    return m->arch->check_batch(m, b, need_targets);
}

eopt_status eopt_model_forward(eopt_model *m, const eopt_batch *batch, int backward, float grad_scale, float *loss,
                               float *logits_out)
{
    EOPT_TRY(check_batch(m, batch, 1));
    return checked(m, m->arch->forward(m, batch, backward, grad_scale, loss, logits_out),
                   backward ? "model forward/backward" : "model forward");
}

eopt_status eopt_model_correct(eopt_model *m, const eopt_batch *batch, int *correct)
{
    if (!m->arch->correct)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "eopt_model_correct: only the MLP classifier counts correct labels");
    if (!batch->labels)
        return eopt_fail(EOPT_ERR_ARG, "eopt_model_correct: the batch has no labels");
    EOPT_TRY(check_batch(m, batch, 0));
    return checked(m, m->arch->correct(m, batch, correct), "model accuracy");
}

eopt_status eopt_model_attn_logit_max(eopt_model *m, float *out, int *n)
{
    *n = 0;
    if (!m->arch->attn_logit_max)
        return EOPT_OK;
    EOPT_TRY(checked(m, m->arch->attn_logit_max(m, out), "attention logits"));
    *n = m->cfg.n_layer;
    return EOPT_OK;
}

eopt_status eopt_model_generate(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                                uint64_t seed, int32_t *out)
{
    if (!m->arch->generate)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "eopt_model_generate: only GPT generates text");
    if (nprompt < 1 || n < 0)
        return eopt_fail(EOPT_ERR_ARG, "eopt_model_generate: needs a prompt of >= 1 token and n >= 0, got %d, %d",
                         nprompt, n);
    for (int i = 0; i < nprompt; i++)
        if (prompt[i] < 0 || prompt[i] >= m->cfg.vocab_size)
            return eopt_fail(EOPT_ERR_ARG, "eopt_model_generate: prompt token %d = %d outside 0..%d", i, prompt[i],
                             m->cfg.vocab_size - 1);
    return checked(m, m->arch->generate(m, prompt, nprompt, n, temperature, top_k, seed, out), "model generate");
}
