/* The trainer's models (../shared/spec/models.md): an MLP classifier and GPT-2, forward and
 * backward on the backend interface so the same code runs on CPU and GPU. Parameter names
 * and shapes are exactly PyTorch's, so checkpoints move between eopt and PyTorch. */
#ifndef EOPT_MODEL_H
#define EOPT_MODEL_H

#include "../framework/backend.h"
#include "../framework/tensor.h"
#include "../optimizers/optimizer.h"

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
    void *impl;             /* activations and scratch, sized for max_B x max_T */
} eopt_model;

/* Builds the model with zeroed weights; activations sized for batches up to max_B (x max_T). */
eopt_status eopt_model_create(const eopt_model_config *cfg, eopt_backend *be, int max_B, int max_T, eopt_model **out);
void eopt_model_free(eopt_model *m);
/* GPT-2 / nanoGPT initialisation (normal(0, 0.02), residual projections 0.02/sqrt(2 L),
 * zero biases, unit LayerNorm weights; MLP: PyTorch's nn.Linear default), from the
 * counter-based generator: the same seed gives the same weights on every backend. */
eopt_status eopt_model_init(eopt_model *m, uint64_t seed);
int eopt_model_find(const eopt_model *m, const char *name); /* param index, -1 if absent */

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

/* Pieces shared by the architectures (model.c); pointers are device memory. */
/* y[N, out] = beta y + x[N, in] W^T (+ bias, if non-NULL) */
void eopt_linear_forward(eopt_backend *be, int N, int in, int out, const float *x, const float *W, const float *bias,
                         float beta, float *y);
/* dW += dy^T x; db += 1^T dy (ones: N ones; db may be NULL); dx = dy W (dx may be NULL) */
void eopt_linear_backward(eopt_backend *be, int N, int in, int out, const float *dy, const float *x, const float *W,
                          float *dW, float *db, const float *ones, float *dx);
/* Mean softmax cross-entropy of logits [N, V] against targets into loss_dev (device, 1 float);
 * rows: 3N floats of scratch; exps: [N, V], with backward it becomes the logits gradient
 * scaled by grad_scale. */
void eopt_cross_entropy(eopt_backend *be, int N, int V, const float *logits, const int32_t *targets, int backward,
                        float grad_scale, float *exps, float *rows, float *loss_dev);

/* Device scratch carved from one allocation: a layout function runs twice, first to measure
 * (base NULL, every pointer NULL), then on the allocated block. */
typedef struct {
    float *base;
    int64_t used;
} eopt_arena;
float *eopt_arena_take(eopt_arena *a, int64_t n);

/* The architectures (mlp.c, gpt.c), dispatched by model.c. `build` adds the parameters
 * (eopt_model_add_param) and allocates the activations into m->impl. */
eopt_status eopt_model_add_param(eopt_model *m, const char *name, int ndim, const int64_t *shape);
eopt_status eopt_mlp_build(eopt_model *m);
void eopt_mlp_free(eopt_model *m);
eopt_status eopt_mlp_init(eopt_model *m, uint64_t seed);
eopt_status eopt_mlp_forward(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                             float *logits_out);
eopt_status eopt_mlp_correct(eopt_model *m, const eopt_batch *b, int *correct);
eopt_status eopt_gpt_build(eopt_model *m);
void eopt_gpt_free(eopt_model *m);
eopt_status eopt_gpt_init(eopt_model *m, uint64_t seed);
eopt_status eopt_gpt_forward(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                             float *logits_out);
eopt_status eopt_gpt_generate(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                              uint64_t seed, int32_t *out);

#endif
