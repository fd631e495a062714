/* Data sources and the counter-based sampler (data.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../framework/rng.h"
#include "data.h"

/* A 64-bit random number: draw `counter` of stream `seed`. */
static uint64_t rand64(uint64_t seed, uint64_t counter)
{
    uint32_t r[4];
    eopt_philox(seed, counter, r);
    return (uint64_t)r[0] << 32 | r[1];
}

eopt_status eopt_text_load(const char *path, double val_fraction, eopt_text *out)
{
    memset(out, 0, sizeof *out);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return eopt_fail(EOPT_ERR_ARG, "text: val_fraction must be in [0, 1), got %g", val_fraction);
    FILE *f = fopen(path, "rb");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "cannot open text file '%s'%s", path,
                         strcmp(path, EOPT_MOBY_DICK_PATH) == 0 ? " (run `make deps` to fetch it)" : "");
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *bytes = n > 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)n) : NULL;
    size_t got = bytes ? fread(bytes, 1, (size_t)n, f) : 0;
    fclose(f);
    if (n <= 0 || !bytes || got != (size_t)n) {
        free(bytes);
        return eopt_fail(n == 0 ? EOPT_ERR_FORMAT : EOPT_ERR_IO, "cannot read text file '%s'%s", path,
                         n == 0 ? " (empty)" : "");
    }
    out->bytes = bytes;
    out->n = n;
    out->split = n - (int64_t)(val_fraction * (double)n);
    return EOPT_OK;
}

void eopt_text_free(eopt_text *t)
{
    free(t->bytes);
    memset(t, 0, sizeof *t);
}

eopt_status eopt_text_batch(const eopt_text *t, eopt_split split, uint64_t seed, uint64_t b, int B, int T,
                            int32_t *tokens, int32_t *targets)
{
    const int64_t lo = split == EOPT_SPLIT_TRAIN ? 0 : t->split, hi = split == EOPT_SPLIT_TRAIN ? t->split : t->n;
    const int64_t starts = hi - lo - T; /* windows of T + 1 bytes */
    if (B < 1 || T < 1 || starts < 1)
        return eopt_fail(EOPT_ERR_ARG, "text: the %s split has %lld bytes, too few for windows of %d + 1 (B = %d)",
                         split == EOPT_SPLIT_TRAIN ? "training" : "held-out", (long long)(hi - lo), T, B);
    for (int j = 0; j < B; j++) {
        const uint8_t *w = t->bytes + lo + (int64_t)(rand64(seed, b * (uint64_t)B + (uint64_t)j) % (uint64_t)starts);
        for (int k = 0; k < T; k++) {
            tokens[(int64_t)j * T + k] = w[k];
            targets[(int64_t)j * T + k] = w[k + 1];
        }
    }
    return EOPT_OK;
}

/* Reads a whole gzip file into memory. */
static eopt_status gz_slurp(const char *path, uint8_t **out, size_t *len)
{
    gzFile g = gzopen(path, "rb");
    if (!g)
        return eopt_fail(EOPT_ERR_IO, "cannot open '%s' (install Debian's dataset-fashion-mnist: make deps)", path);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    int got = 1;
    while (buf && got > 0) {
        if (cap - n < (1 << 16)) {
            uint8_t *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown, cap *= 2;
        }
        got = gzread(g, buf + n, (unsigned)(cap - n));
        n += got > 0 ? (size_t)got : 0;
    }
    gzclose(g);
    if (!buf)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory reading '%s'", path);
    if (got < 0) {
        free(buf);
        return eopt_fail(EOPT_ERR_IO, "'%s' is not a valid gzip file", path);
    }
    *out = buf;
    *len = n;
    return EOPT_OK;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, ndim big-endian sizes, the data. */
static eopt_status idx_load(const char *path, int ndim, uint8_t **raw, const uint8_t **data, int64_t *count,
                            int64_t *item)
{
    size_t len = 0;
    EOPT_TRY(gz_slurp(path, raw, &len));
    const uint8_t *p = *raw;
    size_t head = 4 + 4 * (size_t)ndim;
    int64_t total = 1;
    if (len >= head && be32(p) == (0x800u | (uint32_t)ndim))
        for (int k = 0; k < ndim; k++)
            total *= be32(p + 4 + 4 * k);
    if (len < head || be32(p) != (0x800u | (uint32_t)ndim) || (size_t)total != len - head) {
        free(*raw);
        return eopt_fail(EOPT_ERR_FORMAT, "'%s' is not an IDX file of %d-dimensional unsigned bytes", path, ndim);
    }
    *data = p + head;
    *count = be32(p + 4);
    *item = *count ? total / *count : 0;
    return EOPT_OK;
}

eopt_status eopt_fashion_mnist_load(const char *dir, int train, int normalize, eopt_images *out)
{
    memset(out, 0, sizeof *out);
    char ipath[1024], lpath[1024];
    const char *prefix = train ? "train" : "t10k";
    if (!dir)
        dir = EOPT_FASHION_MNIST_DIR;
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    uint8_t *iraw, *lraw;
    const uint8_t *img, *lab;
    int64_t n, dim, nl, one;
    EOPT_TRY(idx_load(ipath, 3, &iraw, &img, &n, &dim));
    eopt_status st = idx_load(lpath, 1, &lraw, &lab, &nl, &one);
    if (st != EOPT_OK) {
        free(iraw);
        return st;
    }
    if (nl != n) {
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' has %lld labels for %lld images in '%s'", lpath, (long long)nl,
                       (long long)n, ipath);
    } else {
        out->x = malloc((size_t)(n * dim) * sizeof *out->x);
        out->labels = malloc((size_t)n * sizeof *out->labels);
        if (!out->x || !out->labels)
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory for %lld images", (long long)n);
    }
    for (int64_t i = 0; st == EOPT_OK && i < n; i++) {
        if (lab[i] > 9) {
            st = eopt_fail(EOPT_ERR_FORMAT, "'%s': label %lld is %d, outside 0..9", lpath, (long long)i, lab[i]);
            break;
        }
        out->labels[i] = lab[i];
    }
    for (int64_t i = 0; st == EOPT_OK && i < n * dim; i++) {
        float v = img[i] * (1.0f / 255.0f);
        out->x[i] = normalize ? (v - EOPT_FASHION_MNIST_MEAN) / EOPT_FASHION_MNIST_STD : v;
    }
    free(iraw);
    free(lraw);
    if (st != EOPT_OK) {
        eopt_images_free(out);
        return st;
    }
    out->n = (int)n;
    out->dim = (int)dim;
    out->classes = 10;
    return EOPT_OK;
}

void eopt_images_free(eopt_images *d)
{
    free(d->x);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* A seeded permutation of 0..n-1: a 4-round Feistel network on the smallest even number of
 * bits covering n, cycle-walked until the value falls below n (a bijection of [0, 2^bits)
 * restricted to [0, n) stays a bijection). */
static uint64_t permute(uint64_t key, uint64_t i, uint64_t n)
{
    int half = 1;
    while ((uint64_t)1 << (2 * half) < n)
        half++;
    const uint64_t mask = ((uint64_t)1 << half) - 1;
    do {
        uint64_t l = i >> half, r = i & mask;
        for (uint64_t round = 0; round < 4; round++) {
            uint64_t f = rand64(key, r << 2 | round) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        i = l << half | r;
    } while (i >= n);
    return i;
}

static int64_t image_index(const eopt_images *d, uint64_t seed, uint64_t k)
{
    uint64_t epoch = k / (uint64_t)d->n;
    return (int64_t)permute(seed ^ (epoch + 1) * 0x9E3779B97F4A7C15ull, k % (uint64_t)d->n, (uint64_t)d->n);
}

void eopt_images_batch(const eopt_images *d, uint64_t seed, uint64_t b, int B, float *x, int32_t *labels)
{
    for (int j = 0; j < B; j++) {
        int64_t i = image_index(d, seed, b * (uint64_t)B + (uint64_t)j);
        memcpy(x + (int64_t)j * d->dim, d->x + i * d->dim, (size_t)d->dim * sizeof *x);
        labels[j] = d->labels[i];
    }
}

/* Layout of host and device buffers: text: tokens [B T] then targets [B T];
 * images: x [B, dim] then labels [B]. */
eopt_status eopt_batch_buffer_create(eopt_backend *be, int max_B, int T, int dim, eopt_batch_buffer *bb)
{
    memset(bb, 0, sizeof *bb);
    if (max_B < 1 || (T > 0) == (dim > 0) || T < 0 || dim < 0)
        return eopt_fail(EOPT_ERR_ARG, "batch buffer: needs max_B >= 1 and one of T, dim > 0 (got %d, %d, %d)", max_B,
                         T, dim);
    size_t bytes = T > 0 ? 2 * (size_t)max_B * T * 4 : (size_t)max_B * (dim + 1) * 4;
    *bb = (eopt_batch_buffer){.be = be, .max_B = max_B, .T = T, .dim = dim};
    bb->host = malloc(bytes);
    bb->dev = be->alloc(be, bytes);
    if (!bb->host || !bb->dev) {
        eopt_batch_buffer_free(bb);
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for a batch of %zu bytes", bytes);
    }
    return EOPT_OK;
}

void eopt_batch_buffer_free(eopt_batch_buffer *bb)
{
    free(bb->host);
    if (bb->dev)
        bb->be->free(bb->be, bb->dev);
    memset(bb, 0, sizeof *bb);
}

static eopt_status check_fill(const eopt_batch_buffer *bb, int B, int text)
{
    if (B < 1 || B > bb->max_B)
        return eopt_fail(EOPT_ERR_ARG, "batch size %d outside 1..%d of the batch buffer", B, bb->max_B);
    if (text != (bb->T > 0))
        return eopt_fail(EOPT_ERR_ARG, "a %s batch needs a batch buffer made for %s", text ? "text" : "image",
                         text ? "text (T > 0)" : "images (dim > 0)");
    return EOPT_OK;
}

eopt_status eopt_text_next(const eopt_text *t, eopt_split split, eopt_sampler *s, int B, eopt_batch_buffer *bb)
{
    EOPT_TRY(check_fill(bb, B, 1));
    const int64_t n = (int64_t)B * bb->T;
    int32_t *tok = bb->host, *dtok = bb->dev;
    EOPT_TRY(eopt_text_batch(t, split, s->seed, s->position, B, bb->T, tok, tok + n));
    bb->be->upload(bb->be, dtok, tok, 2 * (size_t)n * sizeof *tok);
    bb->batch = (eopt_batch){.B = B, .T = bb->T, .tokens = dtok, .targets = dtok + n};
    s->position++;
    return EOPT_OK;
}

static void upload_images(eopt_batch_buffer *bb, int B)
{
    const int64_t n = (int64_t)B * bb->dim;
    float *x = bb->host, *dx = bb->dev;
    bb->be->upload(bb->be, dx, x, (size_t)(n + B) * sizeof *x); /* x then the labels */
    bb->batch = (eopt_batch){.B = B, .T = 1, .x = dx, .labels = (const int32_t *)(dx + n)};
}

eopt_status eopt_images_next(const eopt_images *d, eopt_sampler *s, int B, eopt_batch_buffer *bb)
{
    EOPT_TRY(check_fill(bb, B, 0));
    if (d->n < 1 || bb->dim != d->dim)
        return eopt_fail(EOPT_ERR_SHAPE, "%d images of %d pixels do not fit a batch buffer of %d pixels", d->n, d->dim,
                         bb->dim);
    float *x = bb->host;
    eopt_images_batch(d, s->seed, s->position, B, x, (int32_t *)(x + (int64_t)B * d->dim));
    upload_images(bb, B);
    s->position++;
    return EOPT_OK;
}

eopt_status eopt_images_slice(const eopt_images *d, int start, int B, eopt_batch_buffer *bb)
{
    EOPT_TRY(check_fill(bb, B, 0));
    if (bb->dim != d->dim || start < 0 || start + B > d->n)
        return eopt_fail(EOPT_ERR_ARG, "images %d..%d of %d (%d pixels) do not fit a batch buffer of %d pixels", start,
                         start + B - 1, d->n, d->dim, bb->dim);
    float *x = bb->host;
    memcpy(x, d->x + (int64_t)start * d->dim, (size_t)B * d->dim * sizeof *x);
    memcpy(x + (int64_t)B * d->dim, d->labels + start, (size_t)B * sizeof(int32_t));
    upload_images(bb, B);
    return EOPT_OK;
}
