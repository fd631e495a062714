/* The CUDA backend: cuBLAS for products, cuSOLVER for eigen and QR decompositions, own
 * kernels for the element-wise passes, reductions, indexing and sorting, cuRAND's device API for
 * random numbers.
 *
 * Every call goes to the legacy default stream, so operations run in the order they are
 * issued (backend.h) and a download waits for the work before it.
 *
 * Row-major data on column-major libraries: a row-major r x c matrix with leading dimension
 * ld is, read column-major, its transpose (c x r) with the same ld. So C = op(A) op(B) is
 * computed as C^T = op(B)^T op(A)^T, the operands swapped and no data moved.
 *
 * Every failed CUDA runtime, cuBLAS or cuSOLVER call and kernel launch is recorded in the
 * backend's sticky status (backend.h), which the entry points return; syevd and qr also return
 * it. Nothing is printed. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <curand_kernel.h>
#include <cusolverDn.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "backend_math.h"
#include "rng.h"
}

#define THREADS 256      /* threads of a 1-D block (a power of two: the block reductions halve it) */
#define MAX_BLOCKS 65536 /* grid-stride loops cover the rest */
#define PARTS 1024       /* partial results of a whole-matrix reduction */
#define TILE 32          /* square tile of the transpose and column-reduction kernels */

#define GRID_STRIDE(i, n)                                                                                           \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

typedef struct {
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    int *info;       /* cuSOLVER's devInfo */
    double *partial; /* PARTS partial results of whole-matrix reductions */
    float *scalar;   /* one float: the finiteness check before the solvers */
    void *work;      /* cuSOLVER workspace, grown as needed and kept */
    size_t work_bytes;
    void *scratch; /* column-major copies and tau for syevd / qr, grown as needed and kept */
    size_t scratch_bytes;
    char name[320];
} cuda_ctx;

static cuda_ctx *ctx(eopt_backend *be) { return (cuda_ctx *)be->ctx; }

static unsigned blocks_for(int64_t n)
{
    int64_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : b);
}

/* ---- errors ---- */

/* Records the failure in the backend's status and in the thread's message (for syevd / qr,
 * which return it). */
static int failed(eopt_backend *be, const char *what, const char *why)
{
    eopt_backend_fail(be, EOPT_ERR_DEVICE, "%s failed: %s", what, why);
    eopt_fail(EOPT_ERR_DEVICE, "cuda: %s failed: %s", what, why);
    return 0;
}

static int cu_ok(eopt_backend *be, cudaError_t err, const char *what)
{
    return err == cudaSuccess ? 1 : failed(be, what, cudaGetErrorString(err));
}

static int blas_ok(eopt_backend *be, cublasStatus_t st, const char *what)
{
    return st == CUBLAS_STATUS_SUCCESS ? 1 : failed(be, what, cublasGetStatusString(st));
}

static int solver_ok(eopt_backend *be, cusolverStatus_t st, const char *what)
{
    if (st == CUSOLVER_STATUS_SUCCESS)
        return 1;
    char why[32];
    snprintf(why, sizeof why, "cusolverStatus %d", (int)st);
    return failed(be, what, why);
}

static int launched(eopt_backend *be, const char *what) { return cu_ok(be, cudaGetLastError(), what); }

/* A device buffer of at least `bytes` kept in the context: reallocated only when it grows, so
 * the solvers allocate nothing after their first call at a given size (or after
 * reserve_solver). The new buffer is allocated before the old one is freed, so a failure keeps
 * the old one. Out of memory returns NULL with the message set and the backend usable (as
 * cuda_alloc); any other failure is also recorded in the sticky status. */
static void *grow(eopt_backend *be, void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap)
        return *buf;
    void *fresh = NULL;
    cudaError_t err = cudaMalloc(&fresh, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        eopt_fail(EOPT_ERR_NOMEM, "cuda: cannot allocate a solver workspace of %zu bytes: %s", bytes,
                  cudaGetErrorString(err));
        return NULL;
    }
    if (!cu_ok(be, err, "cudaMalloc (solver workspace)"))
        return NULL;
    if (!cu_ok(be, cudaFree(*buf), "cudaFree (solver workspace)")) {
        cudaFree(fresh);
        return NULL;
    }
    *buf = fresh;
    *cap = bytes;
    return *buf;
}

/* ---- memory ---- */

/* An allocation that does not fit returns NULL for the caller to report, and leaves the backend
 * usable: cudaMalloc's out-of-memory is not sticky, and it is taken off the runtime's last
 * error so that the next launch check does not see it. Any other error is a device failure. */
static void *cuda_alloc(eopt_backend *be, size_t bytes)
{
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes ? bytes : 1);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        eopt_fail(EOPT_ERR_NOMEM, "cuda: cudaMalloc of %zu bytes failed: %s", bytes, cudaGetErrorString(err));
        return NULL;
    }
    if (!cu_ok(be, err, "cudaMalloc"))
        return NULL;
    if (!cu_ok(be, cudaMemset(p, 0, bytes), "cudaMemset")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_free(eopt_backend *be, void *p)
{
    if (p)
        cu_ok(be, cudaFree(p), "cudaFree");
}

static void cuda_upload(eopt_backend *be, void *dst, const void *src, size_t n)
{
    if (n)
        cu_ok(be, cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "upload (cudaMemcpy)");
}

static void cuda_download(eopt_backend *be, void *dst, const void *src, size_t n)
{
    if (n)
        cu_ok(be, cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "download (cudaMemcpy)");
}

static void cuda_copy(eopt_backend *be, void *dst, const void *src, size_t n)
{
    if (n && dst != src)
        cu_ok(be, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, 0), "copy (cudaMemcpyAsync)");
}

static void cuda_sync(eopt_backend *be) { cu_ok(be, cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

static void cuda_release(cuda_ctx *c)
{
    cudaFree(c->info);
    cudaFree(c->partial);
    cudaFree(c->scalar);
    cudaFree(c->work);
    cudaFree(c->scratch);
    if (c->solver)
        cusolverDnDestroy(c->solver);
    if (c->blas)
        cublasDestroy(c->blas);
    free(c);
}

static void cuda_destroy(eopt_backend *be)
{
    cuda_release(ctx(be));
    free(be);
}

/* ---- layout kernels ---- */

/* dst (cols x rows, leading dimension ldd) = src^T (rows x cols, leading dimension lds),
 * through a shared tile so that both the reads and the writes are coalesced. */
static __global__ void transpose_kernel(int rows, int cols, const float *src, int lds, float *dst, int ldd)
{
    __shared__ float tile[TILE][TILE + 1];
    int r0 = blockIdx.y * TILE, c0 = blockIdx.x * TILE;
    for (int y = threadIdx.y; y < TILE; y += blockDim.y)
        if (r0 + y < rows && c0 + (int)threadIdx.x < cols)
            tile[y][threadIdx.x] = src[(size_t)(r0 + y) * lds + c0 + threadIdx.x];
    __syncthreads();
    for (int y = threadIdx.y; y < TILE; y += blockDim.y)
        if (c0 + y < cols && r0 + (int)threadIdx.x < rows)
            dst[(size_t)(c0 + y) * ldd + r0 + threadIdx.x] = tile[threadIdx.x][y];
}

static int transpose(eopt_backend *be, int rows, int cols, const float *src, int lds, float *dst, int ldd)
{
    dim3 grid((cols + TILE - 1) / TILE, (rows + TILE - 1) / TILE), block(TILE, 8);
    transpose_kernel<<<grid, block>>>(rows, cols, src, lds, dst, ldd);
    return launched(be, "transpose kernel");
}

/* C[i][j] = C[j][i] for j > i: the lower triangle mirrored onto the upper. */
static __global__ void mirror_lower_kernel(int n, float *C, int ldc)
{
    GRID_STRIDE(e, (int64_t)n * n)
    {
        int64_t i = e / n, j = e % n;
        if (j > i)
            C[i * ldc + j] = C[j * ldc + i];
    }
}

/* ---- products ---- */

/* Row-major C = alpha op(A) op(B) + beta C as column-major C^T = op(B)^T op(A)^T. */
static cublasStatus_t gemm_rowmajor(cublasHandle_t h, cudaDataType_t t, cublasComputeType_t ct, int ta, int tb, int m,
                                    int n, int k, float alpha, const void *A, int lda, int64_t sa, const void *B,
                                    int ldb, int64_t sb, float beta, void *C, int ldc, int64_t sc, int batch)
{
    cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        return cublasGemmEx(h, ob, oa, n, m, k, &alpha, B, t, ldb, A, t, lda, &beta, C, t, ldc, ct,
                            CUBLAS_GEMM_DEFAULT);
    return cublasGemmStridedBatchedEx(h, ob, oa, n, m, k, &alpha, B, t, ldb, sb, A, t, lda, sa, &beta, C, t, ldc, sc,
                                      batch, ct, CUBLAS_GEMM_DEFAULT);
}

static void cuda_gemm(eopt_backend *be, eopt_prec prec, int ta, int tb, int m, int n, int k, float alpha,
                      const void *A, int lda, int64_t sa, const void *B, int ldb, int64_t sb, float beta, void *C,
                      int ldc, int64_t sc, int batch)
{
    if (m <= 0 || n <= 0 || batch <= 0)
        return;
    cudaDataType_t t = prec == EOPT_PREC_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = prec == EOPT_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasStatus_t st =
        gemm_rowmajor(ctx(be)->blas, t, ct, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
    blas_ok(be, st, "cublasGemmEx");
}

/* One strided-batched call over the whole grid when the outer stride continues the inner one
 * (stride_x[0] = inner stride_x[1] for A, B and C), else one per outer index. */
static void cuda_gemm_strided_batched(eopt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                                      const float *A, int lda, const int64_t sa[2], const float *B, int ldb,
                                      const int64_t sb[2], float beta, float *C, int ldc, const int64_t sc[2],
                                      int outer, int inner)
{
    if (m <= 0 || n <= 0 || outer <= 0 || inner <= 0)
        return;
    cublasHandle_t h = ctx(be)->blas;
    cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int flat = sa[0] == inner * sa[1] && sb[0] == inner * sb[1] && sc[0] == inner * sc[1];
    const int calls = flat ? 1 : outer, batch = flat ? outer * inner : inner;
    for (int o = 0; o < calls; o++) /* row-major C = op(A) op(B) as column-major C^T = op(B)^T op(A)^T */
        if (!blas_ok(be,
                     cublasSgemmStridedBatched(h, ob, oa, n, m, k, &alpha, B + o * sb[0], ldb, sb[1], A + o * sa[0],
                                               lda, sa[1], &beta, C + o * sc[0], ldc, sc[1], batch),
                     "cublasSgemmStridedBatched"))
            return;
}

/* FP32: cublasSsyrk into the column-major upper triangle, which is the row-major lower one
 * (the triangle the CPU backend computes). TF32 / BF16: a gemm on the float32 arrays with the
 * inputs rounded to TF32 or bfloat16 by cuBLAS (there is no reduced-precision syrk). Either
 * way the lower triangle is then mirrored, so C is exactly symmetric. */
static void cuda_syrk(eopt_backend *be, eopt_prec prec, int trans, int n, int k, float alpha, const float *A, int lda,
                      float beta, float *C, int ldc)
{
    if (n <= 0)
        return;
    cublasHandle_t h = ctx(be)->blas;
    cublasStatus_t st;
    if (prec == EOPT_PREC_FP32) /* row-major A (n x k) is column-major A^T: A A^T = (A^T)^T A^T */
        st = cublasSsyrk(h, CUBLAS_FILL_MODE_UPPER, trans ? CUBLAS_OP_N : CUBLAS_OP_T, n, k, &alpha, A, lda, &beta, C,
                         ldc);
    else
        st = gemm_rowmajor(h, CUDA_R_32F,
                           prec == EOPT_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF, trans,
                           !trans, n, n, k, alpha, A, lda, 0, A, lda, 0, beta, C, ldc, 0, 1);
    if (!blas_ok(be, st, prec == EOPT_PREC_FP32 ? "cublasSsyrk" : "cublasGemmEx (syrk)"))
        return;
    mirror_lower_kernel<<<blocks_for((int64_t)n * n), THREADS>>>(n, C, ldc);
    launched(be, "syrk mirror kernel");
}

/* ---- decompositions ---- */

/* Reads cuSOLVER's devInfo (a synchronisation point). */
static eopt_status solver_info(eopt_backend *be, const char *what, int m, int n)
{
    int info = 0;
    if (!cu_ok(be, cudaMemcpy(&info, ctx(be)->info, sizeof info, cudaMemcpyDeviceToHost), what))
        return EOPT_ERR_DEVICE;
    if (info != 0)
        return eopt_fail(EOPT_ERR_NUMERIC, "%s failed on a %dx%d matrix (info %d)", what, m, n, info);
    return EOPT_OK;
}

/* Workspace sizes (bytes) of syevd(n): the column-major copy V (scratch) and cuSOLVER's work.
 * bufferSize reads only the sizes: the matrices passed are a valid but unrelated pointer (the
 * context's scalar), as the sizes are wanted before the workspace exists (reserve_solver). */
static eopt_status syevd_space(eopt_backend *be, int n, size_t *scratch, size_t *work)
{
    if ((int64_t)n * n > INT_MAX)
        return eopt_fail(EOPT_ERR_SHAPE, "cusolverDnSsyevd: a %dx%d matrix has more elements than int addresses", n,
                         n);
    int lwork = 0;
    if (!solver_ok(be,
                   cusolverDnSsyevd_bufferSize(ctx(be)->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n,
                                               ctx(be)->scalar, n, ctx(be)->scalar, &lwork),
                   "cusolverDnSsyevd_bufferSize"))
        return EOPT_ERR_DEVICE;
    if (lwork < 0)
        return eopt_fail(EOPT_ERR_SHAPE, "cusolverDnSsyevd: the workspace of a %dx%d matrix overflows int", n, n);
    *scratch = (size_t)n * n * sizeof(float);
    *work = (size_t)lwork * sizeof(float);
    return EOPT_OK;
}

/* Workspace sizes of qr(m, n): the column-major copy Q and tau (scratch), and the larger of
 * geqrf's and orgqr's work. */
static eopt_status qr_space(eopt_backend *be, int m, int n, size_t *scratch, size_t *work)
{
    if ((int64_t)m * n > INT_MAX)
        return eopt_fail(EOPT_ERR_SHAPE, "cusolverDnSgeqrf: a %dx%d matrix has more elements than int addresses", m,
                         n);
    cusolverDnHandle_t h = ctx(be)->solver;
    float *any = ctx(be)->scalar; /* as in syevd_space */
    int l1 = 0, l2 = 0;
    if (!solver_ok(be, cusolverDnSgeqrf_bufferSize(h, m, n, any, m, &l1), "cusolverDnSgeqrf_bufferSize") ||
        !solver_ok(be, cusolverDnSorgqr_bufferSize(h, m, n, n, any, m, any, &l2), "cusolverDnSorgqr_bufferSize"))
        return EOPT_ERR_DEVICE;
    if (l1 < 0 || l2 < 0)
        return eopt_fail(EOPT_ERR_SHAPE, "cusolverDnSgeqrf/Sorgqr: the workspace of a %dx%d matrix overflows int", m,
                         n);
    *scratch = ((size_t)m * n + n) * sizeof(float);
    *work = (size_t)(l1 > l2 ? l1 : l2) * sizeof(float);
    return EOPT_OK;
}

/* Grows the kept scratch and work buffers to at least the given sizes (each keeps its old
 * buffer if its growth fails). */
static eopt_status solver_grow(eopt_backend *be, size_t scratch, size_t work)
{
    cuda_ctx *c = ctx(be);
    if (!grow(be, &c->scratch, &c->scratch_bytes, scratch) || !grow(be, &c->work, &c->work_bytes, work))
        return be->status != EOPT_OK ? EOPT_ERR_DEVICE : EOPT_ERR_NOMEM;
    return EOPT_OK;
}

static void cuda_reduce(eopt_backend *be, eopt_reduce_op op, eopt_axis axis, int rows, int cols, const float *a,
                        const float *b, int ld, float alpha, float *out);

/* Refuses a rows x cols matrix holding a NaN or an infinity, as the CPU backend does (cuSOLVER
 * has no defined answer for one): max |a| over the whole matrix (a NaN propagates), read back. */
static eopt_status solver_finite(eopt_backend *be, const char *what, int rows, int cols, const float *A)
{
    float m = 0.0f;
    cuda_reduce(be, EOPT_RED_MAXABS, EOPT_AXIS_ALL, rows, cols, A, NULL, cols, 1.0f, ctx(be)->scalar);
    if (!cu_ok(be, cudaMemcpy(&m, ctx(be)->scalar, sizeof m, cudaMemcpyDeviceToHost), what))
        return EOPT_ERR_DEVICE;
    if (!isfinite(m))
        return eopt_fail(EOPT_ERR_NUMERIC, "%s failed on a %dx%d matrix: NaN or infinity in it", what, rows, cols);
    return EOPT_OK;
}

/* The solver runs on a copy, so A is untouched when it fails. A symmetric matrix is its own
 * transpose: the row-major lower triangle is the column-major upper one. The eigenvectors come
 * back as columns of the column-major copy and are transposed into the columns of row-major A. */
static eopt_status cuda_syevd(eopt_backend *be, int n, float *A, float *w)
{
    if (n < 0)
        return eopt_fail(EOPT_ERR_ARG, "cusolverDnSsyevd: negative size %d", n);
    if (n == 0)
        return EOPT_OK;
    size_t scratch, work_bytes;
    EOPT_TRY(solver_finite(be, "cusolverDnSsyevd", n, n, A));
    EOPT_TRY(syevd_space(be, n, &scratch, &work_bytes));
    EOPT_TRY(solver_grow(be, scratch, work_bytes));
    cuda_ctx *c = ctx(be);
    float *V = (float *)c->scratch, *work = (float *)c->work;
    const int lwork = (int)(work_bytes / sizeof(float));
    if (!cu_ok(be, cudaMemcpyAsync(V, A, (size_t)n * n * sizeof(float), cudaMemcpyDeviceToDevice, 0),
               "cudaMemcpyAsync (syevd)") ||
        !solver_ok(be,
                   cusolverDnSsyevd(c->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, V, n, w, work,
                                    lwork, c->info),
                   "cusolverDnSsyevd"))
        return EOPT_ERR_DEVICE;
    EOPT_TRY(solver_info(be, "cusolverDnSsyevd", n, n));
    return transpose(be, n, n, V, n, A, n) ? EOPT_OK : EOPT_ERR_DEVICE;
}

/* Householder QR of the column-major copy Q (m x n, ld m) of row-major A, then the explicit Q
 * (sorgqr), transposed back into A. cuSOLVER follows LAPACK's sign convention. */
static eopt_status cuda_qr(eopt_backend *be, int m, int n, float *A)
{
    if (m < n || n < 0)
        return eopt_fail(EOPT_ERR_SHAPE, "qr needs rows >= cols >= 0, got %dx%d", m, n);
    if (n == 0)
        return EOPT_OK;
    size_t scratch, work_bytes;
    EOPT_TRY(solver_finite(be, "cusolverDnSgeqrf", m, n, A));
    EOPT_TRY(qr_space(be, m, n, &scratch, &work_bytes));
    EOPT_TRY(solver_grow(be, scratch, work_bytes));
    cuda_ctx *c = ctx(be);
    float *Q = (float *)c->scratch, *tau = Q + (size_t)m * n, *work = (float *)c->work;
    const int lwork = (int)(work_bytes / sizeof(float));
    if (!transpose(be, m, n, A, n, Q, m))
        return EOPT_ERR_DEVICE;
    if (!solver_ok(be, cusolverDnSgeqrf(c->solver, m, n, Q, m, tau, work, lwork, c->info), "cusolverDnSgeqrf"))
        return EOPT_ERR_DEVICE;
    EOPT_TRY(solver_info(be, "cusolverDnSgeqrf", m, n));
    if (!solver_ok(be, cusolverDnSorgqr(c->solver, m, n, n, Q, m, tau, work, lwork, c->info), "cusolverDnSorgqr"))
        return EOPT_ERR_DEVICE;
    EOPT_TRY(solver_info(be, "cusolverDnSorgqr", m, n));
    /* column-major Q (m x n) is row-major n x m with ld m */
    return transpose(be, n, m, Q, m, A, n) ? EOPT_OK : EOPT_ERR_DEVICE;
}

/* The workspaces of syevd(n) and qr(n, n), kept (as the CPU's reserve_solver): a later call of
 * either at or below n allocates nothing. Sizes the solvers refuse are left to their messages. */
static eopt_status cuda_reserve_solver(eopt_backend *be, int n)
{
    if (n <= 0 || (int64_t)n * n > INT_MAX)
        return EOPT_OK;
    size_t s1, w1, s2, w2;
    EOPT_TRY(syevd_space(be, n, &s1, &w1));
    EOPT_TRY(qr_space(be, n, n, &s2, &w2));
    return solver_grow(be, s1 > s2 ? s1 : s2, w1 > w2 ? w1 : w2);
}

/* ---- element-wise kernels: one per entry of EOPT_EW_ALL, each calling the shared inline
 * function (the kernel's argument struct is passed by value, its pointers are device
 * pointers) ---- */

#define CUDA_EW_KERNEL(name)                                                                                        \
    static __global__ void ew_kernel_##name(eopt_ew_##name##_args k, int64_t n)                                    \
    {                                                                                                               \
        GRID_STRIDE(i, n) eopt_ew_##name(&k, i);                                                                    \
    }
EOPT_EW_ALL(CUDA_EW_KERNEL)
#undef CUDA_EW_KERNEL

static void cuda_ew(eopt_backend *be, const eopt_ew *e)
{
    if (e->n <= 0)
        return;
    switch (e->op) {
#define CUDA_EW_CASE(name)                                                                                          \
    case EOPT_EW_##name:                                                                                            \
        ew_kernel_##name<<<blocks_for(e->n), THREADS>>>(e->name, e->n);                                             \
        launched(be, "element-wise kernel " #name);                                                                 \
        break;
        EOPT_EW_ALL(CUDA_EW_CASE)
#undef CUDA_EW_CASE
    case EOPT_EW_COUNT: break;
    }
}

/* ---- reductions (double accumulation, as on the CPU) ---- */

/* Combines the values of the threads of a (1-D, THREADS) block; every thread gets the result. */
static __device__ double block_combine(eopt_reduce_op op, double v)
{
    __shared__ double sh[THREADS];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s)
            sh[threadIdx.x] = eopt_red_combine(op, sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads(); /* sh may be reused right after */
    return r;
}

static __device__ double red_at(eopt_reduce_op op, const float *a, const float *b, int64_t o)
{
    return eopt_red_map(op, a[o], b ? b[o] : 0.0f);
}

/* out[i] = reduction of row i: one block per row. */
static __global__ void reduce_rows_kernel(eopt_reduce_op op, int rows, int cols, const float *a, const float *b,
                                          int ld, float alpha, float *out)
{
    for (int i = blockIdx.x; i < rows; i += gridDim.x) {
        double acc = eopt_red_init(op);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            acc = eopt_red_combine(op, acc, red_at(op, a, b, (int64_t)i * ld + j));
        acc = block_combine(op, acc);
        if (threadIdx.x == 0)
            out[i] = eopt_red_finish(op, acc, alpha);
    }
}

/* out[j] = reduction of column j: a block holds TILE adjacent columns (coalesced reads) and
 * TILE lanes of rows, combined through shared memory. */
static __global__ void reduce_cols_kernel(eopt_reduce_op op, int rows, int cols, const float *a, const float *b,
                                          int ld, float alpha, float *out)
{
    __shared__ double sh[TILE][TILE + 1];
    int j = blockIdx.x * TILE + threadIdx.x;
    double acc = eopt_red_init(op);
    if (j < cols)
        for (int i = threadIdx.y; i < rows; i += TILE)
            acc = eopt_red_combine(op, acc, red_at(op, a, b, (int64_t)i * ld + j));
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        for (int y = 1; y < TILE; y++)
            acc = eopt_red_combine(op, acc, sh[y][threadIdx.x]);
        out[j] = eopt_red_finish(op, acc, alpha);
    }
}

/* Whole matrix, pass 1: partial[block] = reduction of a grid-strided share of the elements. */
static __global__ void reduce_partial_kernel(eopt_reduce_op op, int rows, int cols, const float *a, const float *b,
                                             int ld, double *partial)
{
    double acc = eopt_red_init(op);
    GRID_STRIDE(e, (int64_t)rows * cols)
    {
        acc = eopt_red_combine(op, acc, red_at(op, a, b, e / cols * ld + e % cols));
    }
    acc = block_combine(op, acc);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = acc;
}

/* Pass 2 (one block): out[0] = the partial results combined. */
static __global__ void reduce_final_kernel(eopt_reduce_op op, int parts, const double *partial, float alpha, float *out)
{
    double acc = eopt_red_init(op);
    for (int p = threadIdx.x; p < parts; p += blockDim.x)
        acc = eopt_red_combine(op, acc, partial[p]);
    acc = block_combine(op, acc);
    if (threadIdx.x == 0)
        out[0] = eopt_red_finish(op, acc, alpha);
}

static void cuda_reduce(eopt_backend *be, eopt_reduce_op op, eopt_axis axis, int rows, int cols, const float *a,
                        const float *b, int ld, float alpha, float *out)
{
    if (axis == EOPT_AXIS_ROWS) {
        if (rows > 0)
            reduce_rows_kernel<<<rows < MAX_BLOCKS ? rows : MAX_BLOCKS, THREADS>>>(op, rows, cols, a, b, ld, alpha,
                                                                                     out);
    } else if (axis == EOPT_AXIS_COLS) {
        if (cols > 0)
            reduce_cols_kernel<<<(cols + TILE - 1) / TILE, dim3(TILE, TILE)>>>(op, rows, cols, a, b, ld, alpha, out);
    } else {
        int64_t nel = (int64_t)rows * cols;
        int parts = blocks_for(nel) < PARTS ? (int)blocks_for(nel) : PARTS;
        double *partial = ctx(be)->partial;
        reduce_partial_kernel<<<parts, THREADS>>>(op, rows, cols, a, b, ld, partial);
        reduce_final_kernel<<<1, THREADS>>>(op, parts, partial, alpha, out);
    }
    launched(be, "reduction kernel");
}

/* ---- indexing ---- */

/* Element t of selected line j: full (row idx[j], col t) and part (j, t) for rows; full
 * (row t, col idx[j]) and part (t, j) for columns. */
static __device__ int64_t full_at(eopt_axis axis, int cols, int32_t line, int64_t t)
{
    return axis == EOPT_AXIS_ROWS ? (int64_t)line * cols + t : t * cols + line;
}
static __device__ int64_t part_at(eopt_axis axis, int cols, int k, int64_t j, int64_t t)
{
    return axis == EOPT_AXIS_ROWS ? j * cols + t : t * k + j;
}

static __global__ void gather_kernel(eopt_axis axis, int cols, int len, const int32_t *idx, int k, const float *full,
                                     float *part)
{
    GRID_STRIDE(e, (int64_t)k * len)
    {
        int64_t j = e / len, t = e % len;
        part[part_at(axis, cols, k, j, t)] = full[full_at(axis, cols, idx[j], t)];
    }
}

/* One thread per position t walks the selected lines in order, so repeated indices behave as
 * on the CPU (the last write wins; additions in index order) with no atomics. */
static __global__ void scatter_kernel(eopt_index_mode mode, eopt_axis axis, int cols, int len, const int32_t *idx,
                                      int k, float *full, const float *part, float alpha)
{
    GRID_STRIDE(t, len)
    for (int j = 0; j < k; j++) {
        float *f = &full[full_at(axis, cols, idx[j], t)];
        float p = part[part_at(axis, cols, k, j, t)];
        *f = mode == EOPT_INDEX_SCATTER ? p : *f + alpha * p;
    }
}

static void cuda_index(eopt_backend *be, eopt_index_mode mode, eopt_axis axis, int rows, int cols,
                       const int32_t *idx, int k, float *full, float *part, float alpha)
{
    const int len = axis == EOPT_AXIS_ROWS ? cols : rows;
    if (k <= 0 || len <= 0)
        return;
    if (mode == EOPT_INDEX_GATHER)
        gather_kernel<<<blocks_for((int64_t)k * len), THREADS>>>(axis, cols, len, idx, k, full, part);
    else
        scatter_kernel<<<blocks_for(len), THREADS>>>(mode, axis, cols, len, idx, k, full, part, alpha);
    launched(be, "index kernel");
}

/* ---- stable descending argsort by rank counting: value i lands at
 * rank_i = #{j : v_j sorts before v_i}, a strict total order (NaN highest, ties by index). ---- */

static __device__ int sorts_before(float vj, int j, float vi, int i)
{
    int nj = vj != vj, ni = vi != vi;
    if (nj != ni)
        return nj;
    if (!nj && vj != vi)
        return vj > vi;
    return j < i;
}

static __global__ void argsort_desc_kernel(int n, const float *v, int32_t *idx)
{
    __shared__ float tile[THREADS];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float vi = i < n ? v[i] : 0.0f;
    int rank = 0;
    for (int t0 = 0; t0 < n; t0 += THREADS) {
        if (t0 + (int)threadIdx.x < n)
            tile[threadIdx.x] = v[t0 + threadIdx.x];
        __syncthreads();
        int lim = n - t0 < THREADS ? n - t0 : THREADS;
        if (i < n)
            for (int q = 0; q < lim; q++)
                rank += sorts_before(tile[q], t0 + q, vi, i);
        __syncthreads();
    }
    if (i < n)
        idx[rank] = i;
}

static void cuda_argsort_desc(eopt_backend *be, int n, const float *v, int32_t *idx)
{
    if (n <= 0)
        return;
    argsort_desc_kernel<<<(n + THREADS - 1) / THREADS, THREADS>>>(n, v, idx);
    launched(be, "argsort kernel");
}

/* ---- random numbers: cuRAND's Philox4_32_10 through its device API, the transforms shared
 * with the CPU (rng.h), so both backends give the same numbers ---- */

/* Uniform j: curand_uniform at offset j. Normal j: raw numbers 2p, 2p + 1 of pair p = j / 2
 * (curand_normal's pairing), through the shared Box-Muller (rng.h says why not curand_normal's). */
static __global__ void random_kernel(eopt_rand_kind kind, uint64_t seed, uint64_t offset, int64_t n, float *out)
{
    GRID_STRIDE(j, n)
    {
        const uint64_t q = offset + (uint64_t)j;
        curandStatePhilox4_32_10_t s;
        if (kind == EOPT_RAND_UNIFORM) {
            curand_init(seed, 0, q, &s);
            out[j] = curand_uniform(&s);
        } else {
            curand_init(seed, 0, q & ~(uint64_t)1, &s);
            const uint32_t x = curand(&s), y = curand(&s);
            out[j] = eopt_box_muller(x, y, (int)(q & 1));
        }
    }
}

static void cuda_random(eopt_backend *be, eopt_rand_kind kind, uint64_t seed, uint64_t offset, int64_t n, float *out)
{
    if (n <= 0)
        return;
    random_kernel<<<blocks_for(n), THREADS>>>(kind, seed, offset, n, out);
    launched(be, "random kernel");
}

/* ---- bfloat16 (the shared per-value functions) ---- */

static __global__ void to_bf16_kernel(int64_t n, const float *src, uint16_t *dst)
{
    GRID_STRIDE(j, n) dst[j] = eopt_f32_to_bf16(src[j]);
}

static __global__ void from_bf16_kernel(int64_t n, const uint16_t *src, float *dst)
{
    GRID_STRIDE(j, n) dst[j] = eopt_bf16_to_f32(src[j]);
}

static void cuda_to_bf16(eopt_backend *be, int64_t n, const float *src, uint16_t *dst)
{
    if (n <= 0)
        return;
    to_bf16_kernel<<<blocks_for(n), THREADS>>>(n, src, dst);
    launched(be, "to_bf16 kernel");
}

static void cuda_from_bf16(eopt_backend *be, int64_t n, const uint16_t *src, float *dst)
{
    if (n <= 0)
        return;
    from_bf16_kernel<<<blocks_for(n), THREADS>>>(n, src, dst);
    launched(be, "from_bf16 kernel");
}

/* ---- creation ---- */

static eopt_status cuda_init(cuda_ctx *c)
{
    int dev = 0, rt = 0, blas_ver = 0, solver_ver = 0;
    cudaDeviceProp prop;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
        err = cudaGetDeviceProperties(&prop, dev);
    if (err == cudaSuccess)
        err = cudaRuntimeGetVersion(&rt);
    if (err == cudaSuccess)
        err = cudaMalloc(&c->info, sizeof(int));
    if (err == cudaSuccess)
        err = cudaMalloc(&c->partial, PARTS * sizeof(double));
    if (err == cudaSuccess)
        err = cudaMalloc(&c->scalar, sizeof(float));
    if (err != cudaSuccess)
        return eopt_fail(EOPT_ERR_DEVICE, "cuda: cannot initialise the GPU: %s", cudaGetErrorString(err));
    cublasStatus_t st = cublasCreate(&c->blas);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasGetVersion(c->blas, &blas_ver);
    if (st != CUBLAS_STATUS_SUCCESS)
        return eopt_fail(EOPT_ERR_DEVICE, "cuda: cublasCreate failed: %s", cublasGetStatusString(st));
    cusolverStatus_t sst = cusolverDnCreate(&c->solver);
    if (sst == CUSOLVER_STATUS_SUCCESS)
        sst = cusolverGetVersion(&solver_ver);
    if (sst != CUSOLVER_STATUS_SUCCESS)
        return eopt_fail(EOPT_ERR_DEVICE, "cuda: cusolverDnCreate failed (cusolverStatus %d)", (int)sst);
    snprintf(c->name, sizeof c->name,
             "cuda: %.100s (sm_%d%d, %.0f GiB), CUDA runtime %d.%d, cuBLAS %d.%d.%d, cuSOLVER %d", prop.name,
             prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30), rt / 1000, rt % 1000 / 10,
             blas_ver / 10000, blas_ver / 100 % 100, blas_ver % 100, solver_ver);
    return EOPT_OK;
}

extern "C" eopt_status eopt_backend_cuda_create(eopt_backend **out)
{
    *out = NULL;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0)
        return eopt_fail(EOPT_ERR_DEVICE, "device 'cuda' requested, but no GPU is available (%s)",
                         err != cudaSuccess ? cudaGetErrorString(err) : "no devices");
    eopt_backend *be = (eopt_backend *)calloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    }
    eopt_status st = cuda_init(c);
    if (st != EOPT_OK) {
        cuda_release(c);
        free(be);
        return st;
    }
    be->name = c->name;
    be->device = EOPT_DEV_CUDA;
    be->ctx = c;
    be->threads = 1;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->sync = cuda_sync;
    be->destroy = cuda_destroy;
    be->gemm = cuda_gemm;
    be->gemm_strided_batched = cuda_gemm_strided_batched;
    be->syrk = cuda_syrk;
    be->syevd = cuda_syevd;
    be->qr = cuda_qr;
    be->reserve_solver = cuda_reserve_solver;
    be->ew = cuda_ew;
    be->reduce = cuda_reduce;
    be->index = cuda_index;
    be->argsort_desc = cuda_argsort_desc;
    be->random = cuda_random;
    be->to_bf16 = cuda_to_bf16;
    be->from_bf16 = cuda_from_bf16;
    *out = be;
    return EOPT_OK;
}
