/* The architecture interface, private to models/: model.c validates the shared arguments
 * and dispatches through the table entry of the config's kind; each architecture (mlp.c,
 * gpt.c) is one eopt_model_arch built from layers.h. A new architecture is a kind in
 * model.h, a file here and one entry in model.c's list. */
#ifndef EOPT_MODELS_ARCH_H
#define EOPT_MODELS_ARCH_H

#include "layers.h"
#include "model.h"

typedef struct eopt_model_arch {
    const char *name;
    /* Checks the config and the activation sizes (max_B >= 1 is checked already); may
     * normalise *max_T (the MLP has no sequence dimension: 1). */
    eopt_status (*check)(const eopt_model_config *cfg, int max_B, int *max_T);
    int (*nparams)(const eopt_model_config *cfg);
    /* Adds the parameters (eopt_model_add_param) and allocates the activations into m->impl
     * (eopt_model_alloc_acts); on failure model.c frees the half-built model. */
    eopt_status (*build)(eopt_model *m);
    void (*free)(eopt_model *m); /* m->impl; the parameters are model.c's */
    eopt_status (*init)(eopt_model *m, uint64_t seed);
    /* The batch's inputs (1 <= B <= max_B is checked already); need_targets: labels / targets too. */
    eopt_status (*check_batch)(const eopt_model *m, const eopt_batch *b, int need_targets);
    eopt_status (*forward)(eopt_model *m, const eopt_batch *b, int backward, float grad_scale, float *loss,
                           float *logits_out);
    eopt_status (*correct)(eopt_model *m, const eopt_batch *b, int *correct); /* NULL: not a classifier */
    eopt_status (*generate)(eopt_model *m, const int32_t *prompt, int nprompt, int n, float temperature, int top_k,
                            uint64_t seed, int32_t *out); /* NULL: not a language model */
    /* Diagnostics: the largest attention logit of each layer in the last forward (out[n_layer]);
     * NULL: no attention. */
    eopt_status (*attn_logit_max)(eopt_model *m, float *out);
} eopt_model_arch;

extern const eopt_model_arch eopt_arch_mlp, eopt_arch_gpt;

/* Appends parameter `name` (weight and gradient, zeroed) to m->params. */
eopt_status eopt_model_add_param(eopt_model *m, const char *name, int ndim, const int64_t *shape);

/* Device scratch carved from one allocation: a layout function runs twice, first to measure
 * (base NULL, every pointer NULL), then on the allocated block. */
typedef struct {
    float *base;
    int64_t used;
} eopt_arena;
float *eopt_arena_take(eopt_arena *a, int64_t n);
typedef void (*eopt_layout_fn)(const eopt_model *m, void *acts, eopt_arena *ar);
/* Measures layout, allocates the block into *block (freed by the architecture's free),
 * carves it into acts and records its size in m->act_bytes. */
eopt_status eopt_model_alloc_acts(eopt_model *m, eopt_layout_fn layout, void *acts, float **block);

/* Parameter i's weight and gradient as device float pointers. */
static inline float *eopt_pw(const eopt_model *m, int i) { return eopt_f32(m->params[i].w); }
static inline float *eopt_pg(const eopt_model *m, int i) { return eopt_f32(m->params[i].grad); }

#endif
