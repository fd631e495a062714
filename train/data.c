/* Data sources and the counter-based sampler (data.h). */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../framework/rng.h"
#include "data.h"

/* A 64-bit random number: draw `counter` of stream `seed`. */
static uint64_t rand64(uint64_t seed, uint64_t counter)
{
    uint32_t r[4];
    eopt_philox(seed, 0, counter, r);
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

/* An IDX file of unsigned bytes: magic 0x0000 08 <ndim>, ndim big-endian sizes, the data. Every
 * size must be positive and their product the data's length, checked without overflow (each
 * partial product stays within the length). */
static eopt_status idx_load(const char *path, int ndim, uint8_t **raw, const uint8_t **data, uint32_t *sizes)
{
    size_t len = 0;
    EOPT_TRY(gz_slurp(path, raw, &len));
    const uint8_t *p = *raw;
    const size_t head = 4 + 4 * (size_t)ndim;
    eopt_status st = EOPT_OK;
    if (len < head || be32(p) != (0x800u | (uint32_t)ndim))
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' is not an IDX file of %d-dimensional unsigned bytes", path, ndim);
    uint64_t total = 1;
    for (int k = 0; st == EOPT_OK && k < ndim; k++) {
        sizes[k] = be32(p + 4 + 4 * k);
        if (sizes[k] == 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "'%s': size %d of its IDX header is 0 (no data)", path, k);
        else if (total > (len - head) / sizes[k])
            st = eopt_fail(EOPT_ERR_FORMAT, "'%s': its IDX header's sizes need more than its %zu bytes of data", path,
                           len - head);
        else
            total *= sizes[k];
    }
    if (st == EOPT_OK && total != len - head)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s': its IDX header's sizes make %llu bytes, the file has %zu", path,
                       (unsigned long long)total, len - head);
    if (st != EOPT_OK) {
        free(*raw);
        return st;
    }
    *data = p + head;
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
    uint32_t isize[3], nl;
    EOPT_TRY(idx_load(ipath, 3, &iraw, &img, isize));
    const int64_t n = isize[0], dim = (int64_t)isize[1] * isize[2];
    if (isize[1] != EOPT_FASHION_MNIST_SIDE || isize[2] != EOPT_FASHION_MNIST_SIDE) {
        free(iraw);
        return eopt_fail(EOPT_ERR_FORMAT, "'%s': images of %u x %u pixels; Fashion-MNIST's are %d x %d", ipath,
                         isize[1], isize[2], EOPT_FASHION_MNIST_SIDE, EOPT_FASHION_MNIST_SIDE);
    }
    eopt_status st = idx_load(lpath, 1, &lraw, &lab, &nl);
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

/* Item k of an endless sequence of epochs over n items, each a seeded permutation of 0..n-1. */
static uint64_t epoch_index(uint64_t seed, uint64_t k, uint64_t n)
{
    uint64_t epoch = k / n;
    return permute(seed ^ (epoch + 1) * 0x9E3779B97F4A7C15ull, k % n, n);
}

void eopt_images_batch(const eopt_images *d, uint64_t seed, uint64_t b, int B, float *x, int32_t *labels)
{
    for (int j = 0; j < B; j++) {
        int64_t i = (int64_t)epoch_index(seed, b * (uint64_t)B + (uint64_t)j, (uint64_t)d->n);
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

static void upload_tokens(eopt_batch_buffer *bb, int B)
{
    const int64_t n = (int64_t)B * bb->T;
    int32_t *tok = bb->host, *dtok = bb->dev;
    bb->be->upload(bb->be, dtok, tok, 2 * (size_t)n * sizeof *tok); /* tokens then targets */
    bb->batch = (eopt_batch){.B = B, .T = bb->T, .tokens = dtok, .targets = dtok + n};
}

eopt_status eopt_text_next(const eopt_text *t, eopt_split split, eopt_sampler *s, int B, eopt_batch_buffer *bb)
{
    EOPT_TRY(check_fill(bb, B, 1));
    int32_t *tok = bb->host;
    EOPT_TRY(eopt_text_batch(t, split, s->seed, s->position, B, bb->T, tok, tok + (int64_t)B * bb->T));
    upload_tokens(bb, B);
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

/* ---- token shards ---- */

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const uint8_t *p) { return le16(p) | le16(p + 2) << 16; }

/* Exactly n bytes at byte off of fd; 0 on success. */
static int read_at(int fd, void *buf, size_t n, int64_t off)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        p += got, n -= (size_t)got, off += got;
    }
    return 0;
}

/* Every file matching each pattern (sorted), the patterns in order, into d->shards. */
static eopt_status find_shards(eopt_tokens *d, int npatterns, const char *const *patterns)
{
    for (int k = 0; k < npatterns; k++) {
        glob_t g;
        int rc = glob(patterns[k], GLOB_ERR, NULL, &g);
        if (rc != 0) {
            globfree(&g);
            return eopt_fail(EOPT_ERR_IO, "%s token shards '%s'",
                             rc == GLOB_NOMATCH ? "no file matches the" : "cannot list the", patterns[k]);
        }
        eopt_shard *grown = d->nshards + (int64_t)g.gl_pathc <= EOPT_TOKENS_MAX_SHARDS
                                ? realloc(d->shards, (d->nshards + g.gl_pathc) * sizeof *grown)
                                : NULL;
        if (!grown) {
            globfree(&g);
            return eopt_fail(EOPT_ERR_NOMEM, "token shards '%s': out of memory or more than %d shards", patterns[k],
                             EOPT_TOKENS_MAX_SHARDS);
        }
        d->shards = grown;
        for (size_t j = 0; j < g.gl_pathc; j++) {
            d->shards[d->nshards] = (eopt_shard){.path = strdup(g.gl_pathv[j])};
            if (!d->shards[d->nshards++].path) {
                globfree(&g);
                return eopt_fail(EOPT_ERR_NOMEM, "token shards '%s': out of memory", patterns[k]);
            }
        }
        globfree(&g);
    }
    return EOPT_OK;
}

/* An llm.c header: magic and version give the token width; header[2] the token count. */
static eopt_status llmc_header(const eopt_shard *s, const uint8_t *head, int64_t size, int *width, int64_t *ntok)
{
    const int32_t magic = (int32_t)le32(head), version = (int32_t)le32(head + 4);
    const int known = magic == EOPT_LLMC_MAGIC || magic == EOPT_LLMC_MAGIC_LLAMA3;
    const int32_t want = magic == EOPT_LLMC_MAGIC ? 1 : 7;
    if (!known)
        return eopt_fail(EOPT_ERR_FORMAT,
                         "'%s': magic %d is not llm.c's token shard magic %d (or %d); "
                         "a nanoGPT .bin needs data.format = \"nanogpt\"",
                         s->path, magic, EOPT_LLMC_MAGIC, EOPT_LLMC_MAGIC_LLAMA3);
    if (version != want)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s': version %d; llm.c's magic %d goes with version %d", s->path, version,
                         magic, want);
    *width = magic == EOPT_LLMC_MAGIC ? 2 : 4;
    *ntok = (int32_t)le32(head + 8);
    if (*ntok >= 0 && size - 4 * EOPT_LLMC_HEADER_INTS != *ntok * *width)
        return eopt_fail(EOPT_ERR_FORMAT,
                         "'%s': its header counts %lld tokens (%lld bytes), the file has %lld bytes after the header",
                         s->path, (long long)*ntok, (long long)(*ntok * *width),
                         (long long)(size - 4 * EOPT_LLMC_HEADER_INTS));
    return EOPT_OK;
}

/* A shard's token count, width and header size, from its header (llm.c) or its size (nanoGPT). */
static eopt_status probe_shard(eopt_token_format format, eopt_shard *s)
{
    int fd = open(s->path, O_RDONLY);
    if (fd < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot open token shard '%s': %s", s->path, strerror(errno));
    struct stat sb;
    uint8_t head[4 * EOPT_LLMC_HEADER_INTS];
    const int llmc = format == EOPT_TOKENS_LLMC;
    int width = 2;
    int64_t size = fstat(fd, &sb) == 0 ? (int64_t)sb.st_size : -1, ntok = size / 2;
    eopt_status st = EOPT_OK;
    if (size < 0)
        st = eopt_fail(EOPT_ERR_IO, "cannot read the size of token shard '%s': %s", s->path, strerror(errno));
    else if (!llmc && size % 2)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s': %lld bytes are not a whole number of uint16 tokens", s->path,
                       (long long)size);
    else if (llmc && size < (int64_t)sizeof head)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s': %lld bytes, shorter than llm.c's header of %d int32", s->path,
                       (long long)size, EOPT_LLMC_HEADER_INTS);
    else if (read_at(fd, head, llmc ? sizeof head : size >= 4 ? 4 : 0, 0) != 0)
        st = eopt_fail(EOPT_ERR_IO, "cannot read the start of token shard '%s'", s->path);
    else if (llmc)
        st = llmc_header(s, head, size, &width, &ntok);
    else if (size >= 4 && (le32(head) == EOPT_LLMC_MAGIC || le32(head) == EOPT_LLMC_MAGIC_LLAMA3))
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' starts with llm.c's magic %u: it needs data.format = \"llmc\"", s->path,
                       le32(head));
    close(fd);
    if (st == EOPT_OK && ntok <= 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' holds no tokens", s->path);
    s->ntok = ntok;
    s->width = width;
    s->offset = llmc ? (int)sizeof head : 0;
    return st;
}

eopt_status eopt_tokens_open(eopt_token_format format, int npatterns, const char *const *patterns, int B, int T,
                             int vocab, int shuffle, eopt_tokens *out)
{
    memset(out, 0, sizeof *out);
    out->fd_shard = -1;
    if (B < 1 || T < 1 || vocab < 1 || npatterns < 1)
        return eopt_fail(EOPT_ERR_ARG, "token shards: need B, T, vocab >= 1 and a pattern (got %d, %d, %d, %d)", B, T,
                         vocab, npatterns);
    const int64_t n = (int64_t)B * T; /* a slot: n + 1 tokens, the next one starts n later */
    eopt_status st = find_shards(out, npatterns, patterns);
    for (int k = 0; st == EOPT_OK && k < out->nshards; k++) {
        eopt_shard *s = &out->shards[k];
        st = probe_shard(format, s);
        if (st == EOPT_OK && s->ntok < n + 1)
            st = eopt_fail(EOPT_ERR_FORMAT, "'%s' holds %lld tokens, too few for one batch of %d x %d + 1", s->path,
                           (long long)s->ntok, B, T);
        s->first = out->slots;
        out->slots += (s->ntok - 1) / n;
    }
    out->raw = st == EOPT_OK ? malloc((size_t)(n + 1) * 4) : NULL;
    if (st == EOPT_OK && !out->raw)
        st = eopt_fail(EOPT_ERR_NOMEM, "token shards: out of memory for a batch of %d x %d", B, T);
    if (st != EOPT_OK) {
        eopt_tokens_close(out);
        return st;
    }
    out->B = B, out->T = T, out->vocab = vocab, out->shuffle = shuffle;
    return EOPT_OK;
}

void eopt_tokens_close(eopt_tokens *d)
{
    if (d->shards && d->fd_shard >= 0)
        close(d->fd);
    for (int k = 0; d->shards && k < d->nshards; k++)
        free(d->shards[k].path);
    free(d->shards);
    free(d->raw);
    memset(d, 0, sizeof *d);
    d->fd_shard = -1;
}

/* The shard holding an epoch's slot: the last whose first slot is <= slot. */
static int shard_of(const eopt_tokens *d, int64_t slot)
{
    int lo = 0, hi = d->nshards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->shards[mid].first <= slot)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

eopt_status eopt_tokens_batch(eopt_tokens *d, uint64_t seed, uint64_t b, int32_t *tokens, int32_t *targets)
{
    if (!d->raw)
        return eopt_fail(EOPT_ERR_ARG, "token shards: not open");
    const uint64_t slots = (uint64_t)d->slots;
    const int64_t slot = (int64_t)(d->shuffle ? epoch_index(seed, b, slots) : b % slots);
    const int k = shard_of(d, slot);
    const eopt_shard *s = &d->shards[k];
    const int64_t n = (int64_t)d->B * d->T, first = (slot - s->first) * n, off = s->offset + first * s->width;
    if (d->fd_shard != k) {
        if (d->fd_shard >= 0)
            close(d->fd);
        d->fd = open(s->path, O_RDONLY);
        d->fd_shard = d->fd >= 0 ? k : -1;
        if (d->fd < 0)
            return eopt_fail(EOPT_ERR_IO, "cannot open token shard '%s': %s", s->path, strerror(errno));
    }
    if (read_at(d->fd, d->raw, (size_t)(n + 1) * (size_t)s->width, off) != 0)
        return eopt_fail(EOPT_ERR_IO, "cannot read %lld tokens at byte %lld of '%s' (shorter than when opened?)",
                         (long long)(n + 1), (long long)off, s->path);
    for (int64_t i = 0; i <= n; i++) {
        const uint32_t v = s->width == 2 ? le16(d->raw + 2 * i) : le32(d->raw + 4 * i);
        if (v >= (uint32_t)d->vocab)
            return eopt_fail(EOPT_ERR_FORMAT, "'%s': token %lld (byte %lld) is %u, outside the vocabulary of %d",
                             s->path, (long long)(first + i), (long long)(off + i * s->width), v, d->vocab);
        if (i < n)
            tokens[i] = (int32_t)v;
        if (i > 0)
            targets[i - 1] = (int32_t)v;
    }
    return EOPT_OK;
}

eopt_status eopt_tokens_next(eopt_tokens *d, eopt_sampler *s, int B, eopt_batch_buffer *bb)
{
    EOPT_TRY(check_fill(bb, B, 1));
    if (B != d->B || bb->T != d->T)
        return eopt_fail(EOPT_ERR_ARG, "token batches of %d x %d from shards opened for %d x %d", B, bb->T, d->B,
                         d->T);
    int32_t *tok = bb->host;
    EOPT_TRY(eopt_tokens_batch(d, s->seed, s->position, tok, tok + (int64_t)B * bb->T));
    upload_tokens(bb, B);
    s->position++;
    return EOPT_OK;
}
