#include "tensor.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

size_t eopt_dtype_size(eopt_dtype dt)
{
    static const size_t sizes[] = {4, 2, 4, 8};
    return sizes[dt];
}

const char *eopt_dtype_name(eopt_dtype dt)
{
    static const char *names[] = {"float32", "bfloat16", "int32", "int64"};
    return names[dt];
}

/* Every block carries a header of HOST_HEAD bytes before the caller's pointer (which stays
 * 64-byte aligned): the mapping's base and length, or length 0 for a calloc block. A mapped block
 * starts at a 2 MiB boundary, so that every whole 2 MiB of it can be one huge page. */
#define HOST_HEAD 64
/* Under AddressSanitizer every block comes from calloc, so that ASan's redzones guard the large
 * ones too (a mapping has none). */
#if defined(__SANITIZE_ADDRESS__)
#define HOST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOST_SANITIZED 1
#endif
#endif
#ifndef HOST_SANITIZED
#define HOST_SANITIZED 0
#endif
#define HOST_HUGE_PAGE ((size_t)2 << 20)
typedef struct {
    void *base;
    size_t len;
} host_head;

void *eopt_host_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - HOST_HUGE_PAGE - HOST_HEAD)
        return NULL;
    char *user;
    host_head h = {NULL, 0};
    if (bytes >= EOPT_HOST_HUGE && !HOST_SANITIZED) {
        const size_t len = bytes + HOST_HUGE_PAGE + HOST_HEAD;
        void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
        (void)madvise(base, len, MADV_HUGEPAGE); /* advice only: a kernel without THP ignores it */
        const uintptr_t first = (uintptr_t)base + HOST_HEAD;
        user = (char *)((first + HOST_HUGE_PAGE - 1) & ~(uintptr_t)(HOST_HUGE_PAGE - 1));
        h = (host_head){base, len};
    } else {
        char *base = calloc(1, bytes + HOST_HEAD);
        if (!base)
            return NULL;
        user = base + HOST_HEAD;
        h.base = base;
    }
    memcpy(user - HOST_HEAD, &h, sizeof h);
    return user;
}

void eopt_host_free(void *p)
{
    if (!p)
        return;
    host_head h;
    memcpy(&h, (char *)p - HOST_HEAD, sizeof h);
    if (h.len)
        munmap(h.base, h.len);
    else
        free(h.base);
}

static int64_t shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int k = 0; k < ndim; k++)
        n *= shape[k];
    return n;
}

eopt_tensor eopt_tensor_view(void *data, eopt_backend *be, eopt_dtype dt, int ndim, const int64_t *shape)
{
    eopt_tensor t = {.data = data, .dtype = dt, .ndim = ndim, .be = be, .owned = 0};
    for (int k = 0; k < ndim; k++)
        t.shape[k] = shape[k];
    t.numel = shape_numel(ndim, shape);
    return t;
}

/* The product is checked one factor at a time, so a shape read from a file can never wrap (2^61 x 16
 * float32 would wrap to 0 bytes); a zero dimension makes any other size valid. */
eopt_status eopt_shape_check(int ndim, const int64_t *shape, eopt_dtype dt)
{
    char buf[160];
    if (ndim < 0 || ndim > EOPT_MAX_DIMS)
        return eopt_fail(EOPT_ERR_SHAPE, "a tensor has at most %d dimensions, got %d", EOPT_MAX_DIMS, ndim);
    int empty = 0;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0)
            return eopt_fail(EOPT_ERR_SHAPE, "negative dimension in shape %s", eopt_shape_str(ndim, shape, buf, sizeof buf));
        empty |= shape[k] == 0;
    }
    if (empty)
        return EOPT_OK;
    int64_t limit = (int64_t)((SIZE_MAX < (uint64_t)INT64_MAX ? SIZE_MAX : (uint64_t)INT64_MAX) / eopt_dtype_size(dt));
    int64_t n = 1;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] > limit / n)
            return eopt_fail(EOPT_ERR_SHAPE, "shape %s of %s is too large: its bytes do not fit in 64 bits",
                             eopt_shape_str(ndim, shape, buf, sizeof buf), eopt_dtype_name(dt));
        n *= shape[k];
    }
    return EOPT_OK;
}

eopt_status eopt_tensor_alloc(eopt_tensor *t, eopt_backend *be, eopt_dtype dt, int ndim, const int64_t *shape)
{
    EOPT_TRY(eopt_shape_check(ndim, shape, dt));
    *t = eopt_tensor_view(NULL, be, dt, ndim, shape);
    size_t bytes = eopt_tensor_bytes(t);
    size_t ask = bytes ? bytes : 1;
    t->data = be ? be->alloc(be, ask) : eopt_host_alloc(ask);
    if (!t->data)
        return eopt_fail(EOPT_ERR_NOMEM, "cannot allocate %zu bytes on %s", bytes, be ? be->name : "host");
    t->owned = 1;
    return EOPT_OK;
}

eopt_status eopt_tensor_alloc_like(eopt_tensor *t, const eopt_tensor *like)
{
    return eopt_tensor_alloc(t, like->be, like->dtype, like->ndim, like->shape);
}

void eopt_tensor_free(eopt_tensor *t)
{
    if (t->owned && t->data) {
        if (t->be)
            t->be->free(t->be, t->data);
        else
            eopt_host_free(t->data);
    }
    memset(t, 0, sizeof *t);
}

size_t eopt_tensor_bytes(const eopt_tensor *t) { return (size_t)t->numel * eopt_dtype_size(t->dtype); }

int eopt_tensor_same_shape(const eopt_tensor *a, const eopt_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k])
            return 0;
    return 1;
}

const char *eopt_shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t off = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < ndim && off < size; k++)
        off += (size_t)snprintf(buf + off, size - off, k ? ", %lld" : "%lld", (long long)shape[k]);
    if (off < size)
        snprintf(buf + off, size - off, "]");
    return buf;
}

int64_t eopt_tensor_rows(const eopt_tensor *t) { return t->ndim >= 2 ? t->shape[0] : 1; }
int64_t eopt_tensor_cols(const eopt_tensor *t) { return t->ndim >= 2 ? t->numel / t->shape[0] : t->numel; }

/* Moves bytes between placements: host<->host memcpy, host<->device through the backend. A
 * failed transfer is recorded in its backend (backend.h) and returned from there. */
static eopt_status move_bytes(eopt_backend *dst_be, void *dst, eopt_backend *src_be, const void *src, size_t bytes)
{
    if (!bytes)
        return EOPT_OK;
    if (dst_be && src_be) {
        if (dst_be == src_be) {
            dst_be->copy(dst_be, dst, src, bytes);
        } else { /* two backends: stage through the host */
            void *tmp = malloc(bytes);
            if (!tmp)
                return eopt_fail(EOPT_ERR_NOMEM, "out of memory staging a copy of %zu bytes", bytes);
            src_be->download(src_be, tmp, src, bytes);
            dst_be->upload(dst_be, dst, tmp, bytes);
            free(tmp);
        }
    } else if (dst_be) {
        dst_be->upload(dst_be, dst, src, bytes);
    } else if (src_be) {
        src_be->download(src_be, dst, src, bytes);
    } else {
        memcpy(dst, src, bytes);
    }
    if (src_be)
        EOPT_TRY(eopt_backend_check(src_be, "tensor copy"));
    return dst_be ? eopt_backend_check(dst_be, "tensor copy") : EOPT_OK;
}

eopt_status eopt_tensor_copy(eopt_tensor *dst, const eopt_tensor *src)
{
    if (eopt_tensor_bytes(dst) != eopt_tensor_bytes(src)) {
        char a[64], b[64];
        return eopt_fail(EOPT_ERR_SHAPE, "copy between tensors of different sizes: %s %s and %s %s",
                         eopt_shape_str(dst->ndim, dst->shape, a, sizeof a), eopt_dtype_name(dst->dtype),
                         eopt_shape_str(src->ndim, src->shape, b, sizeof b), eopt_dtype_name(src->dtype));
    }
    return move_bytes(dst->be, dst->data, src->be, src->data, eopt_tensor_bytes(src));
}

eopt_status eopt_tensor_from_host(eopt_tensor *dst, const void *host, size_t bytes)
{
    if (bytes != eopt_tensor_bytes(dst))
        return eopt_fail(EOPT_ERR_SHAPE, "upload of %zu bytes into a tensor of %zu bytes", bytes, eopt_tensor_bytes(dst));
    return move_bytes(dst->be, dst->data, NULL, host, bytes);
}

eopt_status eopt_tensor_to_host(const eopt_tensor *src, void *host, size_t bytes)
{
    if (bytes != eopt_tensor_bytes(src))
        return eopt_fail(EOPT_ERR_SHAPE, "download of a tensor of %zu bytes into %zu bytes", eopt_tensor_bytes(src), bytes);
    return move_bytes(NULL, host, src->be, src->data, bytes);
}

/* ---- workspace ---- */

#define WS_ALIGN 256

void eopt_ws_init(eopt_workspace *ws, eopt_backend *be)
{
    memset(ws, 0, sizeof *ws);
    ws->be = be;
}

static void *ws_raw_alloc(eopt_workspace *ws, size_t bytes)
{
    return ws->be ? ws->be->alloc(ws->be, bytes) : eopt_host_alloc(bytes);
}

static void ws_raw_free(eopt_workspace *ws, void *p)
{
    if (ws->be)
        ws->be->free(ws->be, p);
    else
        eopt_host_free(p);
}

eopt_status eopt_ws_reset(eopt_workspace *ws)
{
    size_t need = ws->used + ws->extra_used;
    if (need > ws->peak)
        ws->peak = need;
    if (ws->nextra) { /* grow to the high-water mark in one block */
        for (int k = 0; k < ws->nextra; k++)
            ws_raw_free(ws, ws->extra[k]);
        ws->nextra = 0;
        if (ws->base)
            ws_raw_free(ws, ws->base);
        ws->base = ws_raw_alloc(ws, ws->peak);
        ws->cap = ws->base ? ws->peak : 0;
        if (!ws->base)
            return eopt_fail(EOPT_ERR_NOMEM, "cannot allocate a workspace of %zu bytes", ws->peak);
    }
    ws->used = 0;
    ws->extra_used = 0;
    return EOPT_OK;
}

size_t eopt_ws_size(size_t bytes)
{
    size_t size = (bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    return size ? size : WS_ALIGN;
}

eopt_status eopt_ws_reserve(eopt_workspace *ws, size_t bytes)
{
    size_t need = eopt_ws_taken(ws);
    if (need > ws->peak)
        ws->peak = need;
    if (ws->nextra == 0 && (bytes == 0 || (ws->base && ws->cap >= bytes))) {
        ws->used = 0;
        return EOPT_OK;
    }
    char *base = ws_raw_alloc(ws, bytes); /* before anything is freed: a failure changes nothing */
    if (!base)
        return eopt_fail(EOPT_ERR_NOMEM, "cannot allocate a workspace of %zu bytes", bytes);
    for (int k = 0; k < ws->nextra; k++)
        ws_raw_free(ws, ws->extra[k]);
    if (ws->base)
        ws_raw_free(ws, ws->base);
    ws->nextra = 0;
    ws->base = base;
    ws->cap = bytes;
    ws->used = 0;
    ws->extra_used = 0;
    return EOPT_OK;
}

void *eopt_ws_bytes(eopt_workspace *ws, size_t bytes)
{
    size_t size = eopt_ws_size(bytes);
    if (ws->base && ws->used + size <= ws->cap) {
        void *p = ws->base + ws->used;
        ws->used += size;
        return p;
    }
    if (ws->nextra == ws->extra_cap) {
        int cap = ws->extra_cap ? 2 * ws->extra_cap : 64;
        void **grown = realloc(ws->extra, (size_t)cap * sizeof *grown);
        if (!grown)
            return NULL;
        ws->extra = grown;
        ws->extra_cap = cap;
    }
    void *p = ws_raw_alloc(ws, size);
    if (!p)
        return NULL;
    ws->extra[ws->nextra++] = p;
    ws->extra_used += size;
    return p;
}

float *eopt_ws_floats(eopt_workspace *ws, int64_t n) { return eopt_ws_bytes(ws, (size_t)n * sizeof(float)); }
int32_t *eopt_ws_ints(eopt_workspace *ws, int64_t n) { return eopt_ws_bytes(ws, (size_t)n * sizeof(int32_t)); }

void eopt_ws_free(eopt_workspace *ws)
{
    for (int k = 0; k < ws->nextra; k++)
        ws_raw_free(ws, ws->extra[k]);
    free(ws->extra);
    if (ws->base)
        ws_raw_free(ws, ws->base);
    eopt_ws_init(ws, ws->be);
}
