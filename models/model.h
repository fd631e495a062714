/* The trainer's models (../shared/spec/models.md): an MLP classifier and GPT-2, forward and
 * backward on the backend interface so the same code runs on CPU and GPU. Parameter names
 * and shapes are exactly PyTorch's, so checkpoints move between eopt and PyTorch. */
#ifndef EOPT_MODEL_H
#define EOPT_MODEL_H

#include "../framework/backend.h"
#include "../framework/tensor.h"
#include "../framework/params.h"

typedef enum { EOPT_MODEL_MLP = 0, EOPT_MODEL_GPT } eopt_model_kind;

#define EOPT_MLP_MAX_LAYERS 16

typedef struct {
    eopt_model_kind kind;
    int ndims, dims[EOPT_MLP_MAX_LAYERS + 1];            /* MLP: d_0 .. d_L */
    int vocab_size, block_size, n_layer, n_head, n_embd; /* GPT */
} eopt_model_config;

/* One batch, in device memory of the model's backend. MLP: x [B, d_0], labels [B];
 * GPT: tokens and targets [B, T] with T <= block_size. Labels, tokens and targets must lie
 * in 0..classes-1 / 0..vocab_size-1: they index device memory unchecked. */
typedef struct {
    int B, T;
    const float *x;
    const int32_t *labels;
    const int32_t *tokens;
    const int32_t *targets;
} eopt_batch;

typedef struct {
    char name[EOPT_NAME_MAX];
    int target; /* index into params */
} eopt_tied_name;

typedef struct eopt_model {
    eopt_model_config cfg;
    eopt_backend *be;
    int nparams;
    eopt_param *params;     /* name, weight, gradient (allocated, same shape) */
    int ntied;
    eopt_tied_name tied[2]; /* GPT: "lm_head.weight" -> transformer.wte.weight */
    int max_B, max_T;
    const struct eopt_model_arch *arch; /* the architecture's functions (models/arch.h) */
    void *impl;             /* activations and scratch, sized for max_B x max_T */
    int64_t act_bytes;      /* the device memory they take */
} eopt_model;

/* Builds the model with zeroed weights; activations sized for batches up to max_B (x max_T). */
eopt_status eopt_model_create(const eopt_model_config *cfg, eopt_backend *be, int max_B, int max_T, eopt_model **out);
void eopt_model_free(eopt_model *m);
/* GPT-2 / nanoGPT initialisation (normal(0, 0.02), residual projections 0.02/sqrt(2 L),
 * zero biases, unit LayerNorm weights; MLP: PyTorch's nn.Linear default), from the
 * counter-based generator: the same seed gives the same weights on every backend. */
eopt_status eopt_model_init(eopt_model *m, uint64_t seed);
int eopt_model_find(const eopt_model *m, const char *name); /* param index, -1 if absent */
/* Device bytes of the activations and scratch (parameters and gradients not counted). The
 * GPT's only [B T, V] buffer is its logits, which become their own gradient. */
int64_t eopt_model_activation_bytes(const eopt_model *m);

void eopt_model_zero_grad(eopt_model *m);
/* Forward pass, mean cross-entropy loss written to *loss (host; one sync per call). With
 * backward != 0 the gradients are ADDED into params[].grad, scaled by grad_scale (gradient
 * accumulation passes 1/accum_steps). logits_out (optional, device): [B, d_L] or [B, T, V]. */
eopt_status eopt_model_forward(eopt_model *m, const eopt_batch *batch, int backward, float grad_scale, float *loss,
                               float *logits_out);
/* MLP: number of correct argmax predictions in the batch. */
eopt_status eopt_model_correct(eopt_model *m, const eopt_batch *batch, int *correct);
/* GPT: samples n new tokens after `prompt` (host ints) with temperature and top-k, using
 * the counter-based generator; writes prompt + n tokens into out (host). The context is the
 * last max_T tokens; temperature <= 0 takes the argmax, top_k <= 0 keeps every token. */
eopt_status eopt_model_generate(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                                uint64_t seed, int32_t *out);

/* Diagnostics: the largest attention logit q.k / sqrt(head size) over the causal positions of
 * each layer in the last forward's batch (GPT: *n = n_layer values into out, host); models
 * without attention: *n = 0. Recomputed from kept activations: call it before another forward. */
eopt_status eopt_model_attn_logit_max(eopt_model *m, float *out, int *n);

/* Checks forward and backward against a reference file (shared/fixtures/models/NAME.h5: root
 * attributes with the hyperparameters, /model, /inputs, /expected). Errors are relative:
 * loss |l - ref| / |ref|, gradients max over tensors of max|g - ref| / max|ref| (logits
 * likewise); ok when loss <= 1e-5 and gradients and logits <= 1e-4. */
typedef struct {
    int ok;
    double loss, loss_ref, loss_rel_err, grad_rel_err, logits_rel_err;
    char worst[EOPT_NAME_MAX]; /* the parameter with the largest gradient error */
} eopt_verify_result;
eopt_status eopt_verify_model(const char *path, eopt_backend *be, eopt_verify_result *res);

#endif
