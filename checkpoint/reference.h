/* Model reference files (shared/fixtures/models/, made by PyTorch for `eopt verify-model`):
 * root attributes describe the model and batch (model, batch_size, dims or vocab_size, ...),
 * and tensors are named by their path in the file: /model/<param>, /inputs/<name>,
 * /expected/loss, /expected/logits, /expected/grads/<param>. */
#ifndef EOPT_REFERENCE_H
#define EOPT_REFERENCE_H

#include "../framework/tensor.h"

typedef struct eopt_reference eopt_reference;

eopt_status eopt_reference_open(const char *path, eopt_reference **out);
void eopt_reference_close(eopt_reference *ref);

/* A string root attribute that fits in `size` bytes. */
eopt_status eopt_reference_str(const eopt_reference *ref, const char *key, char *buf, size_t size);
/* An integer root attribute of 1..max values (a scalar is one); *n (optional) gets the count. */
eopt_status eopt_reference_ints(const eopt_reference *ref, const char *key, int64_t *out, int max, int *n);
/* The tensor at `name` as a new host tensor of dtype dt (float32 or int32; the stored type is
 * converted), with the stored shape. */
eopt_status eopt_reference_tensor(const eopt_reference *ref, const char *name, eopt_dtype dt, eopt_tensor *out);

#endif
