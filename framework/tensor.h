/* Tensors: a typed, shaped block of memory on a backend (be != NULL) or on the host
 * (be == NULL: host scalars such as step counters, and staging buffers). */
#ifndef EOPT_TENSOR_H
#define EOPT_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef enum { EOPT_F32 = 0, EOPT_BF16, EOPT_I32, EOPT_I64 } eopt_dtype;

#define EOPT_MAX_DIMS 4

typedef struct {
    void *data;
    eopt_dtype dtype;
    int ndim; /* 0 = scalar */
    int64_t shape[EOPT_MAX_DIMS];
    int64_t numel;
    eopt_backend *be; /* NULL: host memory */
    int owned;        /* freed by eopt_tensor_free */
} eopt_tensor;

size_t eopt_dtype_size(eopt_dtype dt);
const char *eopt_dtype_name(eopt_dtype dt);

/* EOPT_OK when ndim is in [0, EOPT_MAX_DIMS], no dimension is negative and the tensor's bytes fit in
 * int64 and size_t; else EOPT_ERR_SHAPE naming the shape. Any shape from outside passes here first. */
eopt_status eopt_shape_check(int ndim, const int64_t *shape, eopt_dtype dt);
/* Zeroed host memory (NULL when out of memory), freed by eopt_host_free only. Blocks of
 * EOPT_HOST_HUGE bytes and more are mapped by themselves and advised to the kernel's transparent
 * huge pages: the first touch of fresh memory is what a checkpoint load of gigabytes spends its
 * time on (on this project's VMs, 2.7-3.5 s per GiB in 4 KiB pages, 1.1-2.0 s in 2 MiB ones),
 * and the pages stay lazily zero until touched. Under AddressSanitizer every block is calloc'ed,
 * so that its redzones guard large blocks too. */
#define EOPT_HOST_HUGE ((size_t)4 << 20)
void *eopt_host_alloc(size_t bytes);
void eopt_host_free(void *p);

/* Allocates a zero-filled tensor on `be` (NULL: host); the shape is checked as above. */
eopt_status eopt_tensor_alloc(eopt_tensor *t, eopt_backend *be, eopt_dtype dt, int ndim, const int64_t *shape);
eopt_status eopt_tensor_alloc_like(eopt_tensor *t, const eopt_tensor *like);
void eopt_tensor_free(eopt_tensor *t);
/* A non-owning view of existing memory. */
eopt_tensor eopt_tensor_view(void *data, eopt_backend *be, eopt_dtype dt, int ndim, const int64_t *shape);
size_t eopt_tensor_bytes(const eopt_tensor *t);
int eopt_tensor_same_shape(const eopt_tensor *a, const eopt_tensor *b);
/* "[48, 16]" */
const char *eopt_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

/* Matrix view of a parameter: rows = shape[0], cols = product of the rest (1-D: 1 x n,
 * 0-D: 1 x 1). The matrix optimizers see (size_out, size_in) = (rows, cols). */
int64_t eopt_tensor_rows(const eopt_tensor *t);
int64_t eopt_tensor_cols(const eopt_tensor *t);
static inline float *eopt_f32(const eopt_tensor *t) { return (float *)t->data; }

/* Copies between any two placements (host or backend) of tensors of equal size. */
eopt_status eopt_tensor_copy(eopt_tensor *dst, const eopt_tensor *src);
eopt_status eopt_tensor_from_host(eopt_tensor *dst, const void *host, size_t bytes);
eopt_status eopt_tensor_to_host(const eopt_tensor *src, void *host, size_t bytes);

/* Workspace: a per-owner arena for the temporaries of a step. Between reset() calls,
 * get() hands out aligned blocks; when the arena is too small it allocates an overflow block
 * and, at the next reset, replaces everything by one block of the high-water size. So a step
 * allocates nothing after its first call. */
typedef struct {
    eopt_backend *be;
    char *base;
    size_t cap, used, peak;
    int nextra, extra_cap;
    void **extra; /* overflow blocks of this round, merged at the next reset */
    size_t extra_used;
} eopt_workspace;

void eopt_ws_init(eopt_workspace *ws, eopt_backend *be);
eopt_status eopt_ws_reset(eopt_workspace *ws);
/* A zero-initialised-on-first-allocation block of n floats (contents are NOT cleared on reuse). */
float *eopt_ws_floats(eopt_workspace *ws, int64_t n);
int32_t *eopt_ws_ints(eopt_workspace *ws, int64_t n);
void *eopt_ws_bytes(eopt_workspace *ws, size_t bytes);
/* What a get of `bytes` takes from the arena (rounded up to the alignment): the unit in which
 * an optimizer declares the upper bound of its temporaries (eopt_ws_floats_size: n floats). */
size_t eopt_ws_size(size_t bytes);
static inline size_t eopt_ws_floats_size(int64_t n) { return eopt_ws_size((size_t)n * sizeof(float)); }
/* Makes the arena one block of at least `bytes`, nothing handed out, so that gets totalling at
 * most `bytes` before the next reset allocate nothing. Fails with nothing changed (the old block
 * and its contents stay); a block already large enough is kept as it is (contents not cleared). */
eopt_status eopt_ws_reserve(eopt_workspace *ws, size_t bytes);
/* What the gets since the last reset or reserve took. */
static inline size_t eopt_ws_taken(const eopt_workspace *ws) { return ws->used + ws->extra_used; }
void eopt_ws_free(eopt_workspace *ws);

#endif
