/* The backend interface: the small set of operations every algorithm is written against.
 * The CPU backend (OpenBLAS, LAPACKE, OpenMP) is the reference; the CUDA backend (cuBLAS,
 * cuSOLVER, own kernels) runs the same algorithms on the GPU.
 *
 * Conventions: matrices are row-major float32 with a leading dimension (row stride);
 * pointers are device pointers of this backend (host memory for the CPU backend). Calls are
 * ordered like a single CUDA stream: an operation sees the results of every earlier one.
 * Only upload / download / read_scalar move data between host and device.
 *
 * Failures: syevd and qr return theirs; alloc returns NULL. Every other operation returns
 * nothing and records a failure (a bad argument, a failed cuBLAS / cuSOLVER / CUDA runtime call
 * or kernel launch, and any device error inside syevd / qr) in the backend's sticky status: the
 * first one is kept, with its message, until eopt_backend_clear. The entry points that run
 * operations (optimizer step, model forward / backward, eopt_backend_sync, checkpoint save)
 * return it through eopt_backend_check, so a failed device never reports success. */
#ifndef EOPT_BACKEND_H
#define EOPT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "kernels/ew.h"

typedef enum { EOPT_DEV_CPU = 0, EOPT_DEV_CUDA } eopt_device;

/* Matrix-product arithmetic, chosen per call (fp32_matmul_prec "highest" / "high" /
 * "medium"). The CPU always computes in float32. On CUDA, BF16 means the operands A, B and
 * the result C are bfloat16 arrays (uint16_t), products accumulated in float32. */
typedef enum { EOPT_PREC_FP32 = 0, EOPT_PREC_TF32, EOPT_PREC_BF16 } eopt_prec;

typedef enum {
    EOPT_RED_SUM = 0, /* sum a */
    EOPT_RED_SUMSQ,   /* sum a^2 */
    EOPT_RED_NORM,    /* sqrt(sum a^2) */
    EOPT_RED_ABSSUM,  /* sum |a| */
    EOPT_RED_DOT,     /* sum a*b */
    EOPT_RED_MAXABS,  /* max |a| */
    EOPT_RED_MAX,     /* max a (NaN propagates) */
} eopt_reduce_op;

typedef enum {
    EOPT_AXIS_ALL = 0, /* one value for the whole matrix */
    EOPT_AXIS_ROWS,    /* one value per row (reduce over columns): out[rows] */
    EOPT_AXIS_COLS,    /* one value per column (reduce over rows): out[cols] */
} eopt_axis;

typedef enum {
    EOPT_INDEX_GATHER = 0,  /* dst[j] = src[idx[j]] */
    EOPT_INDEX_SCATTER,     /* dst[idx[j]] = src[j] */
    EOPT_INDEX_SCATTER_ADD, /* dst[idx[j]] += alpha * src[j] */
} eopt_index_mode;

typedef enum { EOPT_RAND_UNIFORM = 0, EOPT_RAND_NORMAL } eopt_rand_kind;

/* The most threads that may call one CPU backend's solvers at once (see reserve_solver). */
#define EOPT_BACKEND_SLOTS 64

typedef struct eopt_backend eopt_backend;
struct eopt_backend {
    const char *name;
    eopt_device device;
    void *ctx;
    int threads; /* CPU: the OpenMP threads of each operation; 0 = the caller's OpenMP setting */
    int onednn;  /* CPU: float32 products by oneDNN (make ONEDNN=1; EOPT_CPU_GEMM=openblas: 0) */
    eopt_status status; /* the first recorded failure (sticky), EOPT_OK if none */
    char status_msg[512];

    void *(*alloc)(eopt_backend *be, size_t bytes); /* zero-filled; NULL on failure */
    void (*free)(eopt_backend *be, void *p);
    void (*upload)(eopt_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(eopt_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(eopt_backend *be, void *dst, const void *src, size_t bytes);
    void (*sync)(eopt_backend *be);
    void (*destroy)(eopt_backend *be);

    /* C = alpha op(A) op(B) + beta C, op(A) m x k, op(B) k x n, C m x n; `batch` matrices
     * at the given element strides (batch = 1: strides ignored). */
    void (*gemm)(eopt_backend *be, eopt_prec prec, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const void *A, int lda, int64_t stride_a, const void *B, int ldb, int64_t stride_b, float beta,
                 void *C, int ldc, int64_t stride_c, int batch);
    /* float32 gemm over an outer x inner grid of matrices, in one call: matrix (o, i) of X
     * starts at X + o stride_x[0] + i stride_x[1] (the attention's products over sequences and
     * heads, whose strides differ). The CPU runs the products in parallel, one single-threaded
     * sgemm each; CUDA issues strided-batched cuBLAS calls. */
    void (*gemm_strided_batched)(eopt_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                                 const float *A, int lda, const int64_t stride_a[2], const float *B, int ldb,
                                 const int64_t stride_b[2], float beta, float *C, int ldc, const int64_t stride_c[2],
                                 int outer, int inner);
    /* Symmetric rank-k update, full (both triangles) result:
     * trans = 0: C (n x n) = alpha A A^T + beta C, A n x k;  trans = 1: C = alpha A^T A + beta C, A k x n.
     * A and C are float32 at every precision (on CUDA, TF32 / BF16 round the inputs inside the product). */
    void (*syrk)(eopt_backend *be, eopt_prec prec, int trans, int n, int k, float alpha, const float *A, int lda,
                 float beta, float *C, int ldc);
    /* Symmetric eigendecomposition of A (n x n, lower triangle read): w ascending, A replaced
     * by the eigenvectors as columns (column j belongs to w[j]). syevd and qr keep their solver
     * workspace in the backend (a repeat of the largest size allocates nothing) and refuse, with
     * EOPT_ERR_SHAPE, sizes the solver's int arguments cannot express; both refuse NaN or
     * infinite input with EOPT_ERR_NUMERIC (syevd: the CPU reads the lower triangle, CUDA the
     * whole matrix). */
    eopt_status (*syevd)(eopt_backend *be, int n, float *A, float *w);
    /* Householder QR (LAPACK sign convention) of A (m x n, m >= n): A replaced by the explicit
     * Q (m x n, orthonormal columns). */
    eopt_status (*qr)(eopt_backend *be, int m, int n, float *A);
    /* Optional (NULL: the solvers' workspace cannot be reserved): makes syevd(n) and qr(n, n),
     * and every smaller call, allocate nothing; fails with the kept workspace unchanged. An
     * optimizer step calls it before its first update. The CPU keeps one solver workspace per
     * thread of the outermost OpenMP parallel region (EOPT_BACKEND_SLOTS at most; outside any:
     * the first), so threads that solve at once each reserve and use their own. */
    eopt_status (*reserve_solver)(eopt_backend *be, int n);

    /* Element-wise kernel e->op over e->n elements (framework/kernels; see eopt_ew_run). */
    void (*ew)(eopt_backend *be, const eopt_ew *e);
    /* Reduction of a (and b for DOT), a rows x cols matrix with leading dimension ld, times
     * alpha, into out (device memory: 1, rows or cols floats). Accumulates in double on the CPU. */
    void (*reduce)(eopt_backend *be, eopt_reduce_op op, eopt_axis axis, int rows, int cols, const float *a,
                   const float *b, int ld, float alpha, float *out);
    /* Row (axis = EOPT_AXIS_ROWS) or column (EOPT_AXIS_COLS) indexing between a rows x cols
     * matrix `full` and a compact matrix `part` holding k selected rows (k x cols) or columns
     * (rows x k); idx (device int32[k]). GATHER: part <- full; SCATTER(_ADD): full <- part. */
    void (*index)(eopt_backend *be, eopt_index_mode mode, eopt_axis axis, int rows, int cols, const int32_t *idx,
                  int k, float *full, float *part, float alpha);
    /* idx (device int32[n]) = the permutation sorting v descending; ties keep ascending index
     * order (a stable sort). */
    void (*argsort_desc)(eopt_backend *be, int n, const float *v, int32_t *idx);
    /* out[j] = the (offset + j)-th number of the counter-based stream `seed` (uniform [0, 1) or
     * standard normal): the same numbers on every backend. */
    void (*random)(eopt_backend *be, eopt_rand_kind kind, uint64_t seed, uint64_t offset, int64_t n, float *out);
    /* float32 <-> bfloat16 (round to nearest even) conversions of n values. */
    void (*to_bf16)(eopt_backend *be, int64_t n, const float *src, uint16_t *dst);
    void (*from_bf16)(eopt_backend *be, int64_t n, const uint16_t *src, float *dst);
};

/* Opens "cpu" or "cuda"; NULL or "" reads EOPT_DEVICE (default "cpu"). A CUDA request without
 * a GPU or without a CUDA build is an error, never a silent fallback. threads (ignored on
 * CUDA): > 0 runs each CPU operation, BLAS and LAPACK included, on that many OpenMP threads;
 * <= 0 follows the caller's OpenMP setting (omp_set_num_threads, OMP_NUM_THREADS: by default
 * all cores). Opening a backend changes no process-wide setting: the count is set on the
 * calling thread only while one of the backend's operations runs, and restored after it
 * (OpenBLAS's OpenMP build takes its thread count from the calling thread's OpenMP setting). */
eopt_status eopt_backend_open(const char *device, int threads, eopt_backend **out);
void eopt_backend_close(eopt_backend *be);
/* A one-line description of the backend (device, library versions, threads). */
void eopt_backend_describe(const eopt_backend *be, char *buf, size_t size);

/* Records a failure (printf-style message naming the operation) unless one is already recorded:
 * the first is the cause, the later ones usually follow from it. Called by the backends, from
 * any thread (the record is taken under a lock). */
void eopt_backend_fail(eopt_backend *be, eopt_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* EOPT_OK, or the recorded failure as an eopt_status with the message
 * "<what>: <device>: <message>" ("optimizer step: cuda: cublasGemmEx failed: ..."). Reads a
 * field: it does not wait for the device (eopt_backend_sync does). */
eopt_status eopt_backend_check(const eopt_backend *be, const char *what);
/* Forgets the recorded failure (a failed CUDA context stays failed: this only resets the record). */
void eopt_backend_clear(eopt_backend *be);
/* Waits for every issued operation, then returns eopt_backend_check(be, "sync"). */
eopt_status eopt_backend_sync(eopt_backend *be);

eopt_status eopt_backend_cpu_create(int threads, eopt_backend **out);
eopt_status eopt_backend_cuda_create(eopt_backend **out); /* EOPT_ERR_DEVICE without a CUDA build */

/* Runs one element-wise launch: eopt_ew_run(be, EOPT_EW(lerp, n, .y = m, .a = m, .b = g, .w = w)). */
static inline void eopt_ew_run(eopt_backend *be, eopt_ew e) { be->ew(be, &e); }

/* Convenience wrappers for the common core kernels. */
void eopt_scale(eopt_backend *be, int64_t n, float alpha, const float *a, float *y);
void eopt_axpby(eopt_backend *be, int64_t n, float alpha, const float *a, float beta, const float *b, float *y);
void eopt_fill(eopt_backend *be, int64_t n, float value, float *y);
void eopt_copy_f32(eopt_backend *be, int64_t n, const float *a, float *y);
/* Reads one float of device memory to the host (a synchronisation point: never in a step). */
float eopt_read_scalar(eopt_backend *be, const float *p);

#endif
