/* GPT-2 as in nanoGPT (../shared/spec/models.md): token + position embeddings, n_layer
 * pre-LayerNorm blocks (causal self-attention, GELU MLP), a final LayerNorm and the output
 * projection tied to the token embedding. Forward and backward run on the backend
 * interface; every activation the backward pass needs is kept, in buffers sized at
 * creation, so a step allocates nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../framework/rng.h"
#include "arch.h"

typedef struct {
    float *ln1_xhat, *ln1_rstd, *ln1_out; /* LayerNorm 1: normalised input, 1/std per row, output */
    float *qkv;                           /* [N, 3C] */
    float *att;                           /* attention probabilities [B, H, T, T] */
    float *atty;                          /* heads concatenated [N, C] */
    float *ln2_xhat, *ln2_rstd, *ln2_out;
    float *fc_grad, *fc_act;              /* [N, 4C]: GELU' at the pre-activation (for the backward), GELU */
} gpt_layer_acts;

typedef struct {
    float *block; /* the one device allocation everything below lives in */
    gpt_layer_acts *layer;
    float *x;                            /* the residual stream [N, C] */
    float *lnf_xhat, *lnf_rstd, *lnf_out;
    float *logits;                       /* [N, V]; the cross-entropy makes it the logits gradient */
    float *ce_rows, *loss;               /* cross-entropy scratch [N], the loss */
    float *dx, *dln, *dy;                /* backward: residual gradient, LayerNorm input gradient, head output */
    float *dqkv, *dfc, *datt;            /* [N, 3C], [N, 4C], [B, H, T, T] */
    float *ones;                         /* N ones for biases and their gradients */
    int32_t *gen_tokens;                 /* the context of eopt_model_generate [max_T] */
    int last_B, last_T;                  /* the batch shape of the last forward (its qkv are kept) */
} gpt_acts;

/* Parameter order: wte, wpe, 12 per block, ln_f.weight, ln_f.bias. */
enum { LN1_W, LN1_B, ATTN_W, ATTN_B, PROJ_W, PROJ_B, LN2_W, LN2_B, FC_W, FC_B, MPROJ_W, MPROJ_B, NBLOCK };
static const char *const block_names[NBLOCK] = {
    "ln_1.weight",      "ln_1.bias",      "attn.c_attn.weight", "attn.c_attn.bias",
    "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight",      "ln_2.bias",
    "mlp.c_fc.weight",  "mlp.c_fc.bias",  "mlp.c_proj.weight",  "mlp.c_proj.bias",
};
#define WTE 0
#define WPE 1
#define BLK(l, k) (2 + NBLOCK * (l) + (k))
#define LNF_W(L) (2 + NBLOCK * (L))
#define LNF_B(L) (3 + NBLOCK * (L))

static eopt_status gpt_check(const eopt_model_config *cfg, int max_B, int *max_T)
{
    (void)max_B;
    if (cfg->vocab_size < 1 || cfg->block_size < 1 || cfg->n_layer < 1 || cfg->n_head < 1 || cfg->n_embd < 1)
        return eopt_fail(EOPT_ERR_ARG,
                         "gpt: vocab_size, block_size, n_layer, n_head, n_embd must be >= 1, got %d, %d, %d, %d, %d",
                         cfg->vocab_size, cfg->block_size, cfg->n_layer, cfg->n_head, cfg->n_embd);
    if (cfg->n_embd % cfg->n_head)
        return eopt_fail(EOPT_ERR_ARG, "gpt: n_embd %d is not divisible by n_head %d", cfg->n_embd, cfg->n_head);
    if (*max_T < 1 || *max_T > cfg->block_size)
        return eopt_fail(EOPT_ERR_ARG, "gpt: max_T must be in 1..block_size (%d), got %d", cfg->block_size, *max_T);
    return EOPT_OK;
}

static int gpt_nparams(const eopt_model_config *cfg) { return 2 + NBLOCK * cfg->n_layer + 2; }

static void gpt_layout(const eopt_model *m, void *acts, eopt_arena *ar)
{
    gpt_acts *a = acts;
    const int64_t B = m->max_B, T = m->max_T, C = m->cfg.n_embd, V = m->cfg.vocab_size, H = m->cfg.n_head;
    const int64_t N = B * T;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        gpt_layer_acts *y = &a->layer[l];
        y->ln1_xhat = eopt_arena_take(ar, N * C);
        y->ln1_rstd = eopt_arena_take(ar, N);
        y->ln1_out = eopt_arena_take(ar, N * C);
        y->qkv = eopt_arena_take(ar, N * 3 * C);
        y->att = eopt_arena_take(ar, B * H * T * T);
        y->atty = eopt_arena_take(ar, N * C);
        y->ln2_xhat = eopt_arena_take(ar, N * C);
        y->ln2_rstd = eopt_arena_take(ar, N);
        y->ln2_out = eopt_arena_take(ar, N * C);
        y->fc_grad = eopt_arena_take(ar, N * 4 * C);
        y->fc_act = eopt_arena_take(ar, N * 4 * C);
    }
    a->x = eopt_arena_take(ar, N * C);
    a->lnf_xhat = eopt_arena_take(ar, N * C);
    a->lnf_rstd = eopt_arena_take(ar, N);
    a->lnf_out = eopt_arena_take(ar, N * C);
    a->logits = eopt_arena_take(ar, N * V);
    a->ce_rows = eopt_arena_take(ar, N);
    a->loss = eopt_arena_take(ar, 1);
    a->dx = eopt_arena_take(ar, N * C);
    a->dln = eopt_arena_take(ar, N * C);
    a->dy = eopt_arena_take(ar, N * C);
    a->dqkv = eopt_arena_take(ar, N * 3 * C);
    a->dfc = eopt_arena_take(ar, N * 4 * C);
    a->datt = eopt_arena_take(ar, B * H * T * T);
    a->ones = eopt_arena_take(ar, N);
    a->gen_tokens = (int32_t *)eopt_arena_take(ar, T); /* int32 and float have the same size */
}

static eopt_status gpt_build(eopt_model *m)
{
    const int64_t V = m->cfg.vocab_size, T = m->cfg.block_size, C = m->cfg.n_embd;
    char name[EOPT_NAME_MAX];
    EOPT_TRY(eopt_model_add_param(m, "transformer.wte.weight", 2, (int64_t[]){V, C}));
    EOPT_TRY(eopt_model_add_param(m, "transformer.wpe.weight", 2, (int64_t[]){T, C}));
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int k = 0; k < NBLOCK; k++) {
            static const int rows[NBLOCK] = {1, 1, 3, 3, 1, 1, 1, 1, 4, 4, 1, 1}; /* in units of C */
            static const int in[NBLOCK] = {0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 0};   /* 0: a vector */
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, block_names[k]);
            int64_t shape[2] = {rows[k] * C, in[k] * C};
            EOPT_TRY(eopt_model_add_param(m, name, in[k] ? 2 : 1, shape));
        }
    EOPT_TRY(eopt_model_add_param(m, "transformer.ln_f.weight", 1, (int64_t[]){C}));
    EOPT_TRY(eopt_model_add_param(m, "transformer.ln_f.bias", 1, (int64_t[]){C}));
    m->ntied = 1;
    snprintf(m->tied[0].name, sizeof m->tied[0].name, "lm_head.weight");
    m->tied[0].target = WTE;

    gpt_acts *a = calloc(1, sizeof *a);
    if (!a)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the GPT");
    m->impl = a;
    a->layer = calloc((size_t)m->cfg.n_layer, sizeof *a->layer);
    if (!a->layer)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the GPT layers");
    EOPT_TRY(eopt_model_alloc_acts(m, gpt_layout, a, &a->block));
    eopt_fill(m->be, (int64_t)m->max_B * m->max_T, 1.0f, a->ones);
    return EOPT_OK;
}

static void gpt_free(eopt_model *m)
{
    gpt_acts *a = m->impl;
    if (!a)
        return;
    if (a->block)
        m->be->free(m->be, a->block);
    free(a->layer);
    free(a);
    m->impl = NULL;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* nanoGPT: weights normal(0, 0.02), the residual projections (c_proj) 0.02 / sqrt(2 n_layer);
 * biases 0; LayerNorm weights 1. Parameter i draws from its own part of the stream. */
static eopt_status gpt_init(eopt_model *m, uint64_t seed)
{
    eopt_backend *be = m->be;
    for (int i = 0; i < m->nparams; i++) {
        const char *name = m->params[i].name;
        eopt_tensor *w = m->params[i].w;
        if (ends_with(name, ".bias") || strstr(name, "ln_")) {
            eopt_fill(be, w->numel, ends_with(name, ".bias") ? 0.0f : 1.0f, eopt_f32(w));
            continue;
        }
        float std = ends_with(name, "c_proj.weight") ? 0.02f / sqrtf(2.0f * (float)m->cfg.n_layer) : 0.02f;
        be->random(be, EOPT_RAND_NORMAL, seed, (uint64_t)i << 40, w->numel, eopt_f32(w));
        eopt_scale(be, w->numel, std, eopt_f32(w), eopt_f32(w));
    }
    return EOPT_OK;
}

/* The forward pass to the logits [B T, V] (a->logits): x = wte[tokens] + wpe; per block
 * x += attn(ln_1(x)), x += mlp(ln_2(x)); logits = ln_f(x) wte^T. */
static void gpt_logits(eopt_model *m, const int32_t *tokens, int B, int T)
{
    gpt_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size, H = m->cfg.n_head, L = m->cfg.n_layer, N = B * T;
    a->last_B = B, a->last_T = T;
    eopt_embedding_forward(be, B, T, C, tokens, eopt_pw(m, WTE), eopt_pw(m, WPE), a->x);
    for (int l = 0; l < L; l++) {
        gpt_layer_acts *y = &a->layer[l];
        eopt_layernorm_forward(be, N, C, a->x, eopt_pw(m, BLK(l, LN1_W)), eopt_pw(m, BLK(l, LN1_B)), y->ln1_xhat,
                               y->ln1_rstd, y->ln1_out);
        eopt_linear_forward(be, N, C, 3 * C, y->ln1_out, eopt_pw(m, BLK(l, ATTN_W)), eopt_pw(m, BLK(l, ATTN_B)), a->ones,
                            0.0f, y->qkv);
        eopt_attention_forward(be, B, T, C, H, y->qkv, y->att, y->atty);
        eopt_linear_forward(be, N, C, C, y->atty, eopt_pw(m, BLK(l, PROJ_W)), eopt_pw(m, BLK(l, PROJ_B)), a->ones, 1.0f,
                            a->x);
        eopt_layernorm_forward(be, N, C, a->x, eopt_pw(m, BLK(l, LN2_W)), eopt_pw(m, BLK(l, LN2_B)), y->ln2_xhat,
                               y->ln2_rstd, y->ln2_out);
        eopt_linear_forward(be, N, C, 4 * C, y->ln2_out, eopt_pw(m, BLK(l, FC_W)), eopt_pw(m, BLK(l, FC_B)), a->ones,
                            0.0f, y->fc_grad);
        eopt_gelu_forward(be, (int64_t)N * 4 * C, y->fc_grad, y->fc_grad, y->fc_act);
        eopt_linear_forward(be, N, 4 * C, C, y->fc_act, eopt_pw(m, BLK(l, MPROJ_W)), eopt_pw(m, BLK(l, MPROJ_B)),
                            a->ones, 1.0f, a->x);
    }
    eopt_layernorm_forward(be, N, C, a->x, eopt_pw(m, LNF_W(L)), eopt_pw(m, LNF_B(L)), a->lnf_xhat, a->lnf_rstd,
                           a->lnf_out);
    eopt_linear_forward(be, N, C, V, a->lnf_out, eopt_pw(m, WTE), NULL, NULL, 0.0f, a->logits); /* lm_head = wte */
}

/* Backward from the logits gradient in a->logits; every parameter gradient accumulates. */
static void gpt_backward(eopt_model *m, const int32_t *tokens, int B, int T)
{
    gpt_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int C = m->cfg.n_embd, V = m->cfg.vocab_size, H = m->cfg.n_head, L = m->cfg.n_layer, N = B * T;
    /* lm_head, tied to wte: dwte += dlogits^T lnf_out (every row), d lnf_out = dlogits wte */
    eopt_linear_backward(be, N, C, V, a->logits, a->lnf_out, eopt_pw(m, WTE), eopt_pg(m, WTE), NULL, NULL, a->dln);
    eopt_fill(be, (int64_t)N * C, 0.0f, a->dx);
    eopt_layernorm_backward(be, N, C, a->dln, a->lnf_xhat, a->lnf_rstd, eopt_pw(m, LNF_W(L)), eopt_pg(m, LNF_W(L)),
                            eopt_pg(m, LNF_B(L)), a->dx);
    for (int l = L - 1; l >= 0; l--) {
        gpt_layer_acts *y = &a->layer[l];
        eopt_linear_backward(be, N, 4 * C, C, a->dx, y->fc_act, eopt_pw(m, BLK(l, MPROJ_W)),
                             eopt_pg(m, BLK(l, MPROJ_W)), eopt_pg(m, BLK(l, MPROJ_B)), a->ones, a->dfc);
        eopt_gelu_backward(be, (int64_t)N * 4 * C, a->dfc, y->fc_grad, a->dfc);
        eopt_linear_backward(be, N, C, 4 * C, a->dfc, y->ln2_out, eopt_pw(m, BLK(l, FC_W)), eopt_pg(m, BLK(l, FC_W)),
                             eopt_pg(m, BLK(l, FC_B)), a->ones, a->dln);
        eopt_layernorm_backward(be, N, C, a->dln, y->ln2_xhat, y->ln2_rstd, eopt_pw(m, BLK(l, LN2_W)),
                                eopt_pg(m, BLK(l, LN2_W)), eopt_pg(m, BLK(l, LN2_B)), a->dx);
        eopt_linear_backward(be, N, C, C, a->dx, y->atty, eopt_pw(m, BLK(l, PROJ_W)), eopt_pg(m, BLK(l, PROJ_W)),
                             eopt_pg(m, BLK(l, PROJ_B)), a->ones, a->dy);
        eopt_attention_backward(be, B, T, C, H, y->qkv, y->att, a->dy, a->dqkv, a->datt);
        eopt_linear_backward(be, N, C, 3 * C, a->dqkv, y->ln1_out, eopt_pw(m, BLK(l, ATTN_W)),
                             eopt_pg(m, BLK(l, ATTN_W)), eopt_pg(m, BLK(l, ATTN_B)), a->ones, a->dln);
        eopt_layernorm_backward(be, N, C, a->dln, y->ln1_xhat, y->ln1_rstd, eopt_pw(m, BLK(l, LN1_W)),
                                eopt_pg(m, BLK(l, LN1_W)), eopt_pg(m, BLK(l, LN1_B)), a->dx);
    }
    /* the embedding adds the rows of the input tokens: the second half of the tied gradient */
    eopt_embedding_backward(be, B, T, C, V, tokens, a->dx, eopt_pg(m, WTE), eopt_pg(m, WPE), a->ones);
}

/* Diagnostics: each layer's largest attention logit q.k / sqrt(hs) over the causal positions of
 * the last forward's batch, recomputed from its kept q and k (y->qkv) into the backward's score
 * scratch (datt, free between steps): the forward itself pays nothing for it. */
static eopt_status gpt_attn_logit_max(eopt_model *m, float *out)
{
    gpt_acts *a = m->impl;
    eopt_backend *be = m->be;
    const int B = a->last_B, T = a->last_T, C = m->cfg.n_embd, H = m->cfg.n_head, hs = C / H;
    const int64_t TT = (int64_t)T * T, nrows = (int64_t)B * H * T;
    if (B == 0)
        return eopt_fail(EOPT_ERR_ARG, "gpt: no forward pass yet to take attention logits from");
    for (int l = 0; l < m->cfg.n_layer; l++) {
        for (int b = 0; b < B; b++) {
            const float *q = a->layer[l].qkv + (int64_t)b * T * 3 * C;
            be->gemm(be, EOPT_PREC_FP32, 0, 1, T, T, hs, 1.0f / sqrtf((float)hs), q, 3 * C, hs, q + C, 3 * C, hs, 0.0f,
                     a->datt + b * H * TT, T, TT, H);
        }
        eopt_ew_run(be, EOPT_EW_ROWS(causal_row_max, nrows, T, .scores = a->datt, .cols = T));
        /* the rows' maxima sit at stride T; their maximum into the cross-entropy's scratch, free here */
        be->reduce(be, EOPT_RED_MAX, EOPT_AXIS_ALL, (int)nrows, 1, a->datt, NULL, T, 1.0f, a->ce_rows);
        out[l] = eopt_read_scalar(be, a->ce_rows);
    }
    return EOPT_OK;
}

static eopt_status gpt_check_batch(const eopt_model *m, const eopt_batch *b, int need_targets)
{
    if (b->T < 1 || b->T > m->max_T)
        return eopt_fail(EOPT_ERR_SHAPE, "sequence length %d outside 1..%d (the model's max_T)", b->T, m->max_T);
    if (!b->tokens || (need_targets && !b->targets))
        return eopt_fail(EOPT_ERR_ARG, "gpt batch needs tokens%s", need_targets ? " and targets" : "");
    return EOPT_OK;
}

static eopt_status gpt_forward(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                               float *logits_out)
{
    gpt_acts *a = m->impl;
    const int N = b->B * b->T, V = m->cfg.vocab_size;
    gpt_logits(m, b->tokens, b->B, b->T);
    if (logits_out)
        eopt_copy_f32(m->be, (int64_t)N * V, a->logits, logits_out);
    eopt_cross_entropy(m->be, N, V, a->logits, b->targets, backward, grad_scale, a->ce_rows, a->loss);
    if (backward)
        gpt_backward(m, b->tokens, b->B, b->T);
    *loss = eopt_read_scalar(m->be, a->loss);
    return EOPT_OK;
}

static int cmp_desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* nanoGPT's sampling: logits / temperature, everything below the k-th largest dropped,
 * softmax, one draw with the uniform u. temperature <= 0 takes the argmax. */
static int32_t sample_token(float *logits, float *work, int V, float temperature, int top_k, float u)
{
    int best = 0;
    for (int j = 1; j < V; j++)
        if (logits[j] > logits[best])
            best = j;
    if (temperature <= 0.0f)
        return best;
    float cut = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(work, logits, (size_t)V * sizeof *work);
        qsort(work, (size_t)V, sizeof *work, cmp_desc);
        cut = work[top_k - 1];
    }
    double total = 0;
    for (int j = 0; j < V; j++) {
        double p = logits[j] < cut ? 0.0 : exp((double)(logits[j] - logits[best]) / temperature);
        work[j] = (float)p;
        total += p;
    }
    double acc = 0, target = u * total;
    for (int j = 0; j < V; j++) {
        acc += work[j];
        if (acc > target && work[j] > 0)
            return j;
    }
    return best;
}

static eopt_status gpt_generate(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                                uint64_t seed, int32_t *out)
{
    gpt_acts *a = m->impl;
    const int V = m->cfg.vocab_size;
    float *host = malloc(2 * (size_t)V * sizeof *host);
    if (!host)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in eopt_model_generate");
    memcpy(out, prompt, (size_t)nprompt * sizeof *out);
    for (int k = 0; k < n; k++) {
        int len = nprompt + k, t = len < m->max_T ? len : m->max_T; /* the last max_T tokens */
        m->be->upload(m->be, a->gen_tokens, out + len - t, (size_t)t * sizeof *out);
        gpt_logits(m, a->gen_tokens, 1, t);
        m->be->download(m->be, host, a->logits + (int64_t)(t - 1) * V, (size_t)V * sizeof *host);
        out[len] = sample_token(host, host + V, V, temperature, top_k, eopt_rand_uniform(seed, (uint64_t)k));
    }
    free(host);
    return EOPT_OK;
}

const eopt_model_arch eopt_arch_gpt = {
    .name = "gpt",
    .check = gpt_check,
    .nparams = gpt_nparams,
    .build = gpt_build,
    .free = gpt_free,
    .init = gpt_init,
    .check_batch = gpt_check_batch,
    .forward = gpt_forward,
    .generate = gpt_generate,
    .attn_logit_max = gpt_attn_logit_max,
};
