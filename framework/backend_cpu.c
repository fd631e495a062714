/* The CPU backend: oneDNN or OpenBLAS for products, LAPACKE for eigen, a blocked Householder QR
 * on those products, OpenMP for loops.
 * The reference every other backend is tested against. */
#include <cblas.h>
#ifdef EOPT_ONEDNN
#include <dnnl.h>
#endif
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* glibc has vector variants of expf (libmvec) but declares them only under -ffast-math: declared
 * here, before the kernels (backend.h), so that the element-wise loops (omp simd, built with
 * -fno-math-errno) vectorise the GELU's and softmax's exponentials. */
#pragma omp declare simd notinbranch
extern float expf(float);

#include "backend.h"
#include "backend_math.h"
#include "tensor.h"
#include "rng.h"

/* The backend's context: the workspaces of syevd and qr (see cpu_syevd), grown as needed and
 * kept, one per thread that may solve at once (cpu_slot). */
typedef struct {
    void *buf;
    size_t bytes;
} cpu_workspace;

typedef struct {
    cpu_workspace slot[EOPT_BACKEND_SLOTS];
} cpu_ctx;

/* Loops shorter than this run on one thread: spawning costs more than it saves. */
#define PAR_MIN 32768

/* The backend's thread count holds only while one of its operations runs: the calling thread's
 * OpenMP count, which the loops here and OpenBLAS's OpenMP build both follow, is set for the
 * operation and restored after it. Nothing is called when the count is the caller's already
 * (threads = 0, or equal), so small operations pay one integer read. */
static int threads_enter(const eopt_backend *be)
{
    int caller = be->threads > 0 ? omp_get_max_threads() : 0;
    if (caller && caller != be->threads)
        omp_set_num_threads(be->threads);
    return caller;
}

static void threads_leave(const eopt_backend *be, int caller)
{
    if (caller && caller != be->threads)
        omp_set_num_threads(caller);
}

/* BLAS checks its arguments too, but reports a bad one by printing (xerbla) and returning:
 * the same check here records it in the backend's status instead. */
static int blas_args_ok(eopt_backend *be, const char *what, int m, int n, int k, int lda, int lda_min, int ldb,
                        int ldb_min, int ldc, int ldc_min)
{
    if (m >= 0 && n >= 0 && k >= 0 && lda >= lda_min && lda >= 1 && ldb >= ldb_min && ldb >= 1 && ldc >= ldc_min &&
        ldc >= 1)
        return 1;
    eopt_backend_fail(be, EOPT_ERR_ARG, "%s: bad arguments m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", what, m, n, k, lda,
                      ldb, ldc);
    return 0;
}

/* eopt_host_alloc: zeroed, large blocks lazily (a checkpoint load allocates gigabytes of state
 * only to overwrite them) and in transparent huge pages (tensor.h). */
static void *cpu_alloc(eopt_backend *be, size_t bytes)
{
    (void)be;
    return eopt_host_alloc(bytes ? bytes : 1);
}

static void cpu_free(eopt_backend *be, void *p) { (void)be, eopt_host_free(p); }
static void cpu_memcpy(eopt_backend *be, void *dst, const void *src, size_t n)
{
    (void)be;
    if (n && dst != src)
        memmove(dst, src, n);
}
static void cpu_sync(eopt_backend *be) { (void)be; }
static void cpu_destroy(eopt_backend *be)
{
    cpu_ctx *c = be->ctx;
    for (int t = 0; t < EOPT_BACKEND_SLOTS; t++)
        free(c->slot[t].buf);
    free(c);
    free(be);
}

/* A product of `mnk` multiply-adds runs on the calling thread alone (solo_enter returns the team
 * to go back to): inside any parallel
 * region, even an inactive one (an `if` that failed, a team of one), where oneDNN would open a
 * nested team whose thread libgomp starts and ends on every call (Dion2 at 256x256 on 2 threads:
 * 4.1 ms median, 35 ms max, against 0.65 ms) and OpenBLAS stays on one thread by itself; and
 * under SOLO_MNK, where a team's start and stop and the operands' trips between the cores'
 * caches cost more than a second core gains (Newton-Schulz on Dion2 256x256's 64 x 256 rows, 2
 * threads: 249 -> 194 us; 64 x 256 x 64 products, 2 threads / one: 9.9 / 10.1 us). */
#define SOLO_MNK ((int64_t)1 << 21)
static int solo_enter(int64_t mnk)
{
    const int team = omp_get_max_threads();
    if (team == 1 || (omp_get_level() == 0 && mnk >= SOLO_MNK))
        return 0;
    omp_set_num_threads(1);
    return team;
}

/* Back to the team solo_enter left (0: it changed nothing). */
static void solo_leave(int team)
{
    if (team)
        omp_set_num_threads(team);
}

/* One row-major float32 product C = alpha op(A) op(B) + beta C, by oneDNN's sgemm where eopt is
 * built with it (make ONEDNN=1, the default where Debian's libdnnl-dev is installed) and
 * EOPT_CPU_GEMM does not say "openblas", else by OpenBLAS. Why two: OpenBLAS takes its kernels
 * from the CPU or from OPENBLAS_CORETYPE, and a machine that pins it to AVX2 (this project's
 * VMs: OPENBLAS_CORETYPE=Haswell on an AVX-512 Zen 5) runs every product at half the rate oneDNN's
 * kernels, chosen from the CPU alone, reach there: 2 threads, 1024^3 184 against 334 GFLOP/s,
 * 2048x768x256 182 against 381 (bench/results/targets.md). Both follow the calling thread's
 * OpenMP count, one thread where solo_enter says so. */
static void sgemm(eopt_backend *be, int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    const int team = solo_enter((int64_t)m * n * k);
#ifdef EOPT_ONEDNN
    if (be->onednn) {
        dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        if (st != dnnl_success)
            eopt_backend_fail(be, EOPT_ERR_NUMERIC, "dnnl_sgemm failed (status %d) on %dx%dx%d", (int)st, m, n, k);
    } else
#else
    (void)be;
#endif
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, A,
                    lda, B, ldb, beta, C, ldc);
    solo_leave(team);
}

static void cpu_gemm(eopt_backend *be, eopt_prec prec, int ta, int tb, int m, int n, int k, float alpha,
                     const void *A, int lda, int64_t sa, const void *B, int ldb, int64_t sb, float beta, void *C,
                     int ldc, int64_t sc, int batch)
{
    (void)prec; /* the CPU always computes in float32 */
    if (!blas_args_ok(be, "sgemm", m, n, k, lda, ta ? m : k, ldb, tb ? k : n, ldc, n))
        return;
    int caller = threads_enter(be);
    for (int b = 0; b < batch; b++)
        sgemm(be, ta, tb, m, n, k, alpha, (const float *)A + b * sa, lda, (const float *)B + b * sb, ldb, beta,
              (float *)C + b * sc, ldc);
    threads_leave(be, caller);
}

/* C[c][r] = C[r][c] for the elements (r, c) of rows r0..r1-1, columns c0..c1-1 below the
 * diagonal: the lower triangle mirrored, so that callers get a full matrix. In 64 x 64 blocks,
 * writing the upper triangle's rows contiguously: column-wise accesses over the whole matrix
 * miss the cache on every element once n passes a few hundred, and strided writes measured
 * slower than strided reads (syrk 1024: 5.4 against 4.3 ms). */
static void mirror_lower(int r0, int r1, int c0, int c1, float *C, int ldc)
{
    for (int cb = c0; cb < c1; cb += 64)
        for (int rb = r0 > cb ? r0 : cb; rb < r1; rb += 64) /* rows r > c only */
            for (int c = cb; c < cb + 64 && c < c1; c++)
                for (int r = rb > c + 1 ? rb : c + 1; r < rb + 64 && r < r1; r++)
                    C[(size_t)c * ldc + r] = C[(size_t)r * ldc + c];
}

/* Small products (attention: T x T x C/H) gain nothing from a threaded BLAS: the grid is split
 * over the threads instead, and OpenBLAS runs single-threaded inside a parallel region. */
static void cpu_gemm_strided_batched(eopt_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                                     const float *A, int lda, const int64_t sa[2], const float *B, int ldb,
                                     const int64_t sb[2], float beta, float *C, int ldc, const int64_t sc[2],
                                     int outer, int inner)
{
    if (!blas_args_ok(be, "sgemm", m, n, k, lda, ta ? m : k, ldb, tb ? k : n, ldc, n) || outer < 0 || inner < 0)
        return;
    const int64_t count = (int64_t)outer * inner, work = count * m * n * (k > 0 ? k : 1);
    int caller = threads_enter(be);
#pragma omp parallel for schedule(static) if (count > 1 && work >= PAR_MIN)
    for (int64_t g = 0; g < count; g++) {
        const int64_t o = g / inner, i = g % inner;
        sgemm(be, ta, tb, m, n, k, alpha, A + o * sa[0] + i * sa[1], lda, B + o * sb[0] + i * sb[1], ldb, beta,
              C + o * sc[0] + i * sc[1], ldc);
    }
    threads_leave(be, caller);
}

/* The lower triangle of C = alpha A A^T + beta C (trans: A^T A), n x n, A n x k (trans: k x n),
 * by oneDNN's sgemm in p x p tiles: the p (p + 1) / 2 tiles on and below the diagonal (5/8 of a
 * full product's flops at p = 4), one single-threaded product per tile, the tiles spread over the
 * threads. OpenBLAS's ssyrk and a full oneDNN product take about the same time here; the tiles
 * take 0.5-0.6 of it from n = 256 to 2048 on 2 threads (bench/results/targets.md). On one thread
 * (or inside a parallel region: a model's matrices one per thread), tiles under 128 rows run
 * slower than the flops they save (n = 256, k = 1024: 4 x 4 tiles 1.33 ms, 2 x 2 0.62, one product
 * 0.85), hence p = min(4, n / 128) there, and also for a long inner dimension (k >= 2n), where
 * oneDNN's small tiles lose their rate (n = 256, k = 1024, 2 threads: 4 x 4 tiles 0.63 ms, 2 x 2
 * 0.42); otherwise, on several threads, 4 x 4 from 128 rows, which balances the threads. A
 * diagonal tile's upper part is computed too; each tile's thread mirrors it above the diagonal
 * (C exactly symmetric) while the tile is in its cache. Below SYRK_MIN_ROWS there is nothing to
 * tile and OpenBLAS's ssyrk is as fast: it stays, with the rounding it always had (a one-row Gram
 * product as a gemm sums in another order, which Newton-Schulz's steep cans coefficients amplify
 * 10^4-fold on a vector). */
#define SYRK_TILES 4
#define SYRK_MIN_ROWS 128
static void syrk_tiled(eopt_backend *be, int trans, int n, int k, float alpha, const float *A, int lda, float beta,
                       float *C, int ldc)
{
    const int solo = omp_get_level() > 0 || omp_get_max_threads() == 1, min_tile = solo || k >= 2 * n ? 128 : 32;
    const int p = n / min_tile < SYRK_TILES ? n / min_tile : SYRK_TILES, tiles = p * (p + 1) / 2;
    if (p < 2) {
        sgemm(be, trans, !trans, n, n, k, alpha, A, lda, A, lda, beta, C, ldc);
        mirror_lower(0, n, 0, n, C, ldc);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < tiles; t++) {
        int i = 0, j = t; /* tile t of the lower triangle, row by row: (i, j), j <= i */
        while (j > i)
            j -= ++i;
        const int i0 = (int)((int64_t)n * i / p), i1 = (int)((int64_t)n * (i + 1) / p);
        const int j0 = (int)((int64_t)n * j / p), j1 = (int)((int64_t)n * (j + 1) / p);
        const float *Ai = trans ? A + i0 : A + (size_t)i0 * lda, *Aj = trans ? A + j0 : A + (size_t)j0 * lda;
        sgemm(be, trans, !trans, i1 - i0, j1 - j0, k, alpha, Ai, lda, Aj, lda, beta, C + (size_t)i0 * ldc + j0, ldc);
        mirror_lower(i0, i1, j0, j1, C, ldc); /* above the diagonal, while in cache */
    }
}

static void cpu_syrk(eopt_backend *be, eopt_prec prec, int trans, int n, int k, float alpha, const float *A, int lda,
                     float beta, float *C, int ldc)
{
    (void)prec;
    if (!blas_args_ok(be, "ssyrk", n, n, k, lda, trans ? n : k, 1, 1, ldc, n))
        return;
    int caller = threads_enter(be);
    if (be->onednn && n >= SYRK_MIN_ROWS) {
        syrk_tiled(be, trans, n, k, alpha, A, lda, beta, C, ldc);
    } else {
        const int team = solo_enter((int64_t)n * n * k / 2);
        cblas_ssyrk(CblasRowMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, n, k, alpha, A, lda, beta, C, ldc);
        solo_leave(team);
        mirror_lower(0, n, 0, n, C, ldc);
    }
    threads_leave(be, caller);
}

/* ---- decompositions ----
 *
 * LAPACK's _work routines with a workspace the backend keeps (grown to the largest request,
 * then reused: a step allocates nothing after its first), never LAPACKE's high-level calls,
 * which allocate on every call and take the workspace size from a float: a float32 query
 * rounds sizes above 2^24 to the nearest float, which for syevd's 1 + 6n + 2n^2 is below the
 * minimum once n > ~2900 (LWORK refused: "ssyevd failed on a 4096x4096 matrix (info -9)").
 * Sizes are computed in int64 and refused with a clear error where LAPACK's integers cannot
 * express them. */

/* The calling thread's solver workspace: its number in the outermost parallel region (an
 * optimizer step updates several matrices at once), the first outside any; NULL beyond
 * EOPT_BACKEND_SLOTS. */
static cpu_workspace *cpu_slot(eopt_backend *be)
{
    const int t = omp_get_level() > 0 ? omp_get_ancestor_thread_num(1) : 0;
    return t < EOPT_BACKEND_SLOTS ? &((cpu_ctx *)be->ctx)->slot[t] : NULL;
}

static void *cpu_grow(eopt_backend *be, size_t bytes)
{
    cpu_workspace *c = cpu_slot(be);
    if (!c)
        return NULL;
    if (bytes <= c->bytes)
        return c->buf;
    void *buf = malloc(bytes); /* the old workspace stays if this fails */
    if (!buf)
        return NULL;
    free(c->buf);
    c->buf = buf;
    c->bytes = bytes;
    return c->buf;
}

/* A workspace size from LAPACK's query (the float in work[0]) and the documented minimum: at or
 * below 2^24 a float holds the integer exactly; above, the true size is within half a unit of
 * the float, so the next float up covers it. */
static int64_t lwork_from_query(float query, int64_t minimum)
{
    int64_t q = query < 16777216.0f ? (int64_t)query : (int64_t)nextafterf(query, INFINITY);
    return q > minimum ? q : minimum;
}

/* Whether every size fits LAPACK's integer type (32-bit unless an ILP64 LAPACK). */
static int lapack_fits(int64_t v) { return sizeof(lapack_int) >= sizeof(int64_t) || v <= INT32_MAX; }

/* Whether an element of the lower triangle (lower = 1) or of the whole rows x cols matrix is NaN
 * or infinite. LAPACK has no answer for such input (LAPACKE's high-level calls refuse a NaN
 * with info -5): it is refused before the solver runs. */
static int nonfinite(int rows, int cols, const float *A, int lower)
{
    int bad = 0;
    for (int i = 0; i < rows && !bad; i++)
        for (int j = 0; j < (lower ? i + 1 : cols); j++)
            bad |= !isfinite(A[(size_t)i * cols + j]);
    return bad;
}

/* An n x n row-major matrix transposed in place. */
static void transpose_square(int n, float *A)
{
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            float t = A[(size_t)i * n + j];
            A[(size_t)i * n + j] = A[(size_t)j * n + i];
            A[(size_t)j * n + i] = t;
        }
}

/* Row-major lower triangle = the lower triangle of the column-major matrix after the mirror
 * below (what LAPACKE's row-major path hands ssyevd from its transposed copy, so the results are
 * the same); the vectors come back as column-major columns and a transpose makes them the
 * columns of the row-major result. Minimums (ssyevd, JOBZ = 'V'): LWORK 1 + 6n + 2n^2,
 * LIWORK 3 + 5n. */
/* ssyevd's LWORK for an n x n problem: LAPACK's query, at least the minimum. */
static eopt_status syevd_lwork(int n, int64_t *lwork)
{
    const int64_t n64 = n, lwmin = 1 + 6 * n64 + 2 * n64 * n64;
    float query = 0.0f, dummy = 0.0f;
    lapack_int iquery = 0;
    lapack_int info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, &dummy, n, &dummy, &query, -1, &iquery, -1);
    *lwork = lwork_from_query(query, lwmin);
    if (info != 0 || !lapack_fits(*lwork))
        return eopt_fail(EOPT_ERR_NUMERIC, "ssyevd workspace query failed on a %dx%d matrix (info %d)", n, n,
                         (int)info);
    return EOPT_OK;
}

static size_t syevd_bytes(int64_t lwork, int64_t liwork)
{
    return (size_t)lwork * sizeof(float) + (size_t)liwork * sizeof(lapack_int);
}

static eopt_status cpu_syevd(eopt_backend *be, int n, float *A, float *w)
{
    if (n < 0)
        return eopt_fail(EOPT_ERR_ARG, "ssyevd: negative size %d", n);
    if (n == 0)
        return EOPT_OK;
    const int64_t n64 = n, lwmin = 1 + 6 * n64 + 2 * n64 * n64, liwork = 3 + 5 * n64;
    if (!lapack_fits(lwmin))
        return eopt_fail(EOPT_ERR_SHAPE,
                         "ssyevd on a %dx%d matrix needs a workspace of %lld floats, more than LAPACK's 32-bit "
                         "integers address (the largest is 32766x32766)",
                         n, n, (long long)lwmin);
    if (nonfinite(n, n, A, 1))
        return eopt_fail(EOPT_ERR_NUMERIC, "ssyevd failed on a %dx%d matrix: NaN or infinity in its lower triangle",
                         n, n);
    int64_t lwork;
    EOPT_TRY(syevd_lwork(n, &lwork));
    float *work = cpu_grow(be, syevd_bytes(lwork, liwork));
    if (!work)
        return eopt_fail(EOPT_ERR_NOMEM, "ssyevd: out of memory for the workspace of a %dx%d matrix", n, n);
    lapack_int *iwork = (lapack_int *)(work + lwork);
    for (int i = 0; i < n; i++) /* A[j][i] = A[i][j], j < i: the column-major lower triangle */
        for (int j = 0; j < i; j++)
            A[(size_t)j * n + i] = A[(size_t)i * n + j];
    int caller = threads_enter(be);
    lapack_int info = LAPACKE_ssyevd_work(LAPACK_COL_MAJOR, 'V', 'L', n, A, n, w, work, (lapack_int)lwork, iwork,
                               (lapack_int)liwork);
    threads_leave(be, caller);
    if (info != 0)
        return eopt_fail(EOPT_ERR_NUMERIC, "ssyevd failed on a %dx%d matrix (info %d)", n, n, (int)info);
    transpose_square(n, A);
    return EOPT_OK;
}

/* ---- QR: blocked Householder on oneDNN's (or OpenBLAS's) products ----
 *
 * LAPACK's sgeqrf/sorgqr (through sgelqf/sorglq on the row-major layout) spent 20x a product's
 * time on a 256 x 256 QR and 10x on 1024 x 1024 (2 threads: 3.8 ms and 99 ms against 0.19 and
 * 10.6 ms): their panels are level-2 loops and their updates OpenBLAS's products (pinned to AVX2
 * here). This one is the same algorithm, LAPACK's reflectors and sign convention (slarfg:
 * H (alpha; x) = (beta; 0), beta = -sign(alpha) ||(alpha; x)||, tau = (beta - alpha) / beta; a
 * reflector of one element or of x = 0 is H = I), arranged so that nearly all its flops are
 * products:
 *   - panels of QR_NB columns are copied out of A as rows of X (X's row c is A's column c,
 *     contiguous) and factored there; a panel is split in halves recursively down to QR_BASE
 *     columns (Elmroth-Gustavson), each half's reflectors applied to the other by products, and
 *     its compact-WY factor T assembled as it goes (H_1 ... H_b = I - V T V^T, V unit lower
 *     trapezoidal, T upper triangular);
 *   - the trailing columns, still in A, get A <- (I - V T^T V^T) A per panel (as slarfb), by
 *     products whose operands are not transposed on the right: oneDNN's 'N','T' products with
 *     few output rows barely use a second thread (the first panel's update of a 1024 QR: 951 us
 *     in X's layout, 681 in A's);
 *   - Q = H_1 ... H_n I[:, :n] is formed in A's own memory panel by panel from the last
 *     (as sorgqr): Q[j:, j:] <- (I - V T V^T) Q[j:, j:].
 * Workspace (cpu_grow): X (n x m), tau (n), every panel's T (n x QR_NB), one panel's explicit
 * V (QR_NB x m) and two n x QR_NB products. */
enum { QR_NB = 64, QR_BASE = 8 };
#define QR_TEAM_MNN ((int64_t)448 * 448 * 448)

static size_t qr_bytes(int m, int n)
{
    return ((size_t)n * m + (size_t)n + (size_t)n * QR_NB + (size_t)QR_NB * m + 2 * (size_t)n * QR_NB) *
           sizeof(float);
}

typedef struct {
    eopt_backend *be;
    int m;          /* A's rows: the length of X's rows, their stride */
    float *X, *tau; /* the panels, A's columns as rows: row c holds R[0..c][c], then v_c below the diagonal */
    float *V;       /* QR_NB rows of stride m: reflectors made explicit (1 on the diagonal, 0 before) */
    float *W, *W2;  /* products, at most n x QR_NB each */
} qr_ctx;

/* Rows r0 .. r0 + b - 1 of X as explicit reflectors into the same rows of V, elements e0 .. m-1
 * (row r's reflector starts at element r; elements e0 .. r-1 are 0). */
static void qr_explicit(qr_ctx *q, int r0, int b, int e0)
{
    for (int r = r0; r < r0 + b; r++) {
        float *v = q->V + (size_t)(r % QR_NB) * q->m;
        const float *x = q->X + (size_t)r * q->m;
        for (int e = e0; e < r; e++)
            v[e] = 0.0f;
        v[r] = 1.0f;
        memcpy(v + r + 1, x + r + 1, sizeof(float) * (size_t)(q->m - r - 1));
    }
}

/* slarfg on row r of X from element r: the reflector's v in place, beta on the diagonal. */
static float qr_reflector(float *x, int len)
{
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int e = 1; e < len; e++)
        ss += (double)x[e] * x[e];
    if (ss == 0.0) /* also len == 1: H = I */
        return 0.0f;
    const double alpha = x[0], beta = -copysign(sqrt(alpha * alpha + ss), alpha);
    const float scale = (float)(1.0 / (alpha - beta));
    for (int e = 1; e < len; e++)
        x[e] *= scale;
    x[0] = (float)beta;
    return (float)((beta - alpha) / beta);
}

/* Rows r0 .. r0 + b - 1 of X (elements from r0) with H_1 ... H_b of one block applied from the
 * left to the rows rr .. rr + nr - 1 of X (A's columns), elements r0 .. m-1:
 *   Y <- Y - ((Y V^T) op(T)) V        (Y = those rows; op(T) = T for Q^T A, the factorisation)
 * V: explicit rows r0 .. r0 + b - 1 (qr_explicit); T: b x b, stride QR_NB. */
static void qr_apply_rows(qr_ctx *q, int r0, int b, const float *T, int rr, int nr)
{
    const int len = q->m - r0;
    float *Y = q->X + (size_t)rr * q->m + r0;
    const float *V = q->V + (size_t)(r0 % QR_NB) * q->m + r0;
    sgemm(q->be, 0, 1, nr, b, len, 1.0f, Y, q->m, V, q->m, 0.0f, q->W, QR_NB);
    sgemm(q->be, 0, 0, nr, b, b, 1.0f, q->W, QR_NB, T, QR_NB, 0.0f, q->W2, QR_NB);
    sgemm(q->be, 0, 0, nr, len, b, -1.0f, q->W2, QR_NB, V, q->m, 1.0f, Y, q->m);
}

/* Factors rows r0 .. r0 + b - 1 of X (a panel's part, elements from r0) and writes their T
 * (b x b upper triangular at T, stride QR_NB; zero below the diagonal). */
static void qr_factor(qr_ctx *q, int r0, int b, float *T)
{
    const int m = q->m;
    if (b <= QR_BASE) { /* one reflector at a time (sgeqr2), T column by column (slarft) */
        for (int i = 0; i < b; i++) {
            float *x = q->X + (size_t)(r0 + i) * m + r0 + i;
            const int len = m - r0 - i;
            const float tau = q->tau[r0 + i] = qr_reflector(x, len);
            for (int k = i + 1; k < b && tau != 0.0f; k++) { /* H applied to the panel's later columns */
                float *y = q->X + (size_t)(r0 + k) * m + r0 + i;
                float w = 0.0f;
#pragma omp simd reduction(+ : w)
                for (int e = 1; e < len; e++)
                    w += x[e] * y[e];
                w += y[0];
                w *= tau;
                y[0] -= w;
                for (int e = 1; e < len; e++)
                    y[e] -= w * x[e];
            }
        }
        qr_explicit(q, r0, b, r0);
        for (int i = 0; i < b; i++) { /* T[:i, i] = -tau_i T[:i, :i] (V[:, :i]^T v_i), T[i][i] = tau_i */
            const float *vi = q->V + (size_t)((r0 + i) % QR_NB) * m;
            float z[QR_BASE];
            for (int p = 0; p < i; p++) {
                const float *vp = q->V + (size_t)((r0 + p) % QR_NB) * m;
                double d = 0.0;
#pragma omp simd reduction(+ : d)
                for (int e = r0 + i; e < m; e++)
                    d += (double)vp[e] * vi[e];
                z[p] = (float)(-q->tau[r0 + i] * d);
            }
            for (int p = 0; p < i; p++) {
                float t = 0.0f;
                for (int s = p; s < i; s++)
                    t += T[p * QR_NB + s] * z[s];
                T[p * QR_NB + i] = t;
            }
            T[i * QR_NB + i] = q->tau[r0 + i];
            for (int p = i + 1; p < b; p++)
                T[p * QR_NB + i] = 0.0f;
        }
        return;
    }
    /* [V1 V2], T = [T11  -T11 (V1^T V2) T22; 0  T22] */
    const int b1 = b / 2 / QR_BASE * QR_BASE > 0 ? b / 2 / QR_BASE * QR_BASE : b / 2, b2 = b - b1;
    float *T11 = T, *T12 = T + b1, *T22 = T + (size_t)b1 * QR_NB + b1;
    qr_factor(q, r0, b1, T11);
    qr_explicit(q, r0, b1, r0);
    /* the right half gets Q1^T: Y <- Y - (Y V1^T) T11 V1 */
    qr_apply_rows(q, r0, b1, T11, r0 + b1, b2);
    qr_factor(q, r0 + b1, b2, T22);
    qr_explicit(q, r0 + b1, b2, r0 + b1);
    const int e0 = r0 + b1, len = m - e0; /* V1^T V2 = V1[e0:] V2[e0:]^T: V2 is 0 before e0 */
    const float *V1 = q->V + (size_t)(r0 % QR_NB) * m + e0, *V2 = q->V + (size_t)(e0 % QR_NB) * m + e0;
    sgemm(q->be, 0, 1, b1, b2, len, 1.0f, V1, m, V2, m, 0.0f, q->W, QR_NB);
    sgemm(q->be, 0, 0, b1, b2, b2, 1.0f, q->W, QR_NB, T22, QR_NB, 0.0f, q->W2, QR_NB);
    sgemm(q->be, 0, 0, b1, b2, b1, -1.0f, T11, QR_NB, q->W2, QR_NB, 0.0f, T12, QR_NB);
    for (int p = b1; p < b; p++)
        memset(T + (size_t)p * QR_NB, 0, sizeof(float) * (size_t)b1);
}

/* Columns j .. j + b - 1 of A (m x n), rows j .. m-1, into rows j .. j + b - 1 of X. */
static void qr_panel_out(const qr_ctx *q, int n, const float *A, int j, int b)
{
    for (int e0 = j; e0 < q->m; e0 += 16) /* 16 rows of A at a time: whole lines of X written */
        for (int c = j; c < j + b; c++)
            for (int e = e0; e < e0 + 16 && e < q->m; e++)
                q->X[(size_t)c * q->m + e] = A[(size_t)e * n + c];
}

/* M <- (I - V op(T) V^T) M for the panel at j, M = A[j:, c0:] (rows j .. m-1 of the m x n
 * row-major A, columns c0 .. n-1; explicit V: the panel's rows in q->V; op(T) = T^T applies
 * Q_panel^T, the factorisation's update of the trailing columns, T applies Q_panel, sorgqr's):
 *   W = V^T M,  W2 = op(T) W,  M -= V W2. */
static void qr_reflect(qr_ctx *q, int n, float *A, int j, int b, const float *T, int transT, int c0)
{
    const int len = q->m - j, nc = n - c0;
    const float *V = q->V + j;
    float *M = A + (size_t)j * n + c0;
    sgemm(q->be, 0, 0, b, nc, len, 1.0f, V, q->m, M, n, 0.0f, q->W, nc);
    sgemm(q->be, transT, 0, b, nc, b, 1.0f, T, QR_NB, q->W, nc, 0.0f, q->W2, nc);
    sgemm(q->be, 1, 0, len, nc, b, -1.0f, V, q->m, q->W2, nc, 1.0f, M, n);
}

/* Q (m x n, row-major, into A) from the factored X: Q = I[:, :n], then for the panels from the
 * last, Q[j:, j:] <- (I - V T V^T) Q[j:, j:]. */
static void qr_form_q(qr_ctx *q, int n, const float *Ts, float *A)
{
    memset(A, 0, sizeof(float) * (size_t)q->m * n);
    for (int c = 0; c < n; c++)
        A[(size_t)c * n + c] = 1.0f;
    for (int j = (n - 1) / QR_NB * QR_NB; j >= 0; j -= QR_NB) {
        const int b = n - j < QR_NB ? n - j : QR_NB;
        qr_explicit(q, j, b, j);
        qr_reflect(q, n, A, j, b, Ts + (size_t)j * QR_NB, 0, j);
    }
}

static eopt_status cpu_qr(eopt_backend *be, int m, int n, float *A)
{
    if (m < n || n < 0)
        return eopt_fail(EOPT_ERR_SHAPE, "qr needs rows >= cols >= 0, got %dx%d", m, n);
    if (n == 0)
        return EOPT_OK;
    if (nonfinite(m, n, A, 0))
        return eopt_fail(EOPT_ERR_NUMERIC, "qr failed on a %dx%d matrix: NaN or infinity in it", m, n);
    float *X = cpu_grow(be, qr_bytes(m, n));
    if (!X)
        return eopt_fail(EOPT_ERR_NOMEM, "qr: out of memory for the workspace of a %dx%d matrix", m, n);
    float *tau = X + (size_t)n * m, *Ts = tau + n, *V = Ts + (size_t)n * QR_NB, *W = V + (size_t)QR_NB * m;
    qr_ctx q = {.be = be, .m = m, .X = X, .tau = tau, .V = V, .W = W, .W2 = W + (size_t)n * QR_NB};
    int caller = threads_enter(be);
    /* A panel's products are small (down to 8 x 8 x m): they run on one thread, without a
     * team's start and stop around each (2 threads, QR 256 x 256 0.98 -> 0.73 ms, 1024 x 1024
     * 22 -> 21 ms); below QR_TEAM_MNN the updates too, whose team costs more than it gains there
     * (updates on 2 threads against the whole QR on one: 384 2.2 / 2.0 ms, 448 2.9 / 2.8, 512
     * 4.7 / 5.2). */
    const int team = omp_get_max_threads(), update = (int64_t)m * n * n >= QR_TEAM_MNN ? team : 1;
    for (int j = 0; j < n; j += QR_NB) {
        const int b = n - j < QR_NB ? n - j : QR_NB;
        float *T = Ts + (size_t)j * QR_NB;
        omp_set_num_threads(1);
        qr_panel_out(&q, n, A, j, b);
        qr_factor(&q, j, b, T);
        omp_set_num_threads(update);
        if (j + b < n) { /* the trailing columns: A <- Q_panel^T A */
            qr_explicit(&q, j, b, j);
            qr_reflect(&q, n, A, j, b, T, 1, j + b);
        }
    }
    qr_form_q(&q, n, Ts, A);
    omp_set_num_threads(team);
    threads_leave(be, caller);
    return EOPT_OK;
}

/* The workspace of syevd(n) and qr(n, n) (the sizes grow with n), kept: a later call of either
 * at or below n allocates nothing. Sizes syevd refuses are left to syevd's own message. */
static eopt_status cpu_reserve_solver(eopt_backend *be, int n)
{
    const int64_t n64 = n;
    if (n <= 0)
        return EOPT_OK;
    size_t bytes = qr_bytes(n, n);
    if (lapack_fits(1 + 6 * n64 + 2 * n64 * n64)) {
        int64_t lw_eig;
        EOPT_TRY(syevd_lwork(n, &lw_eig));
        const size_t eig = syevd_bytes(lw_eig, 3 + 5 * n64);
        bytes = eig > bytes ? eig : bytes;
    }
    if (!cpu_grow(be, bytes))
        return eopt_fail(EOPT_ERR_NOMEM, "cannot allocate the solver workspace of a %dx%d matrix", n, n);
    return EOPT_OK;
}

/* Built for AVX-512 and AVX2 as well as the baseline, the one the CPU runs chosen at load
 * (ifunc): 16 or 8 elements per instruction where the baseline has 4. */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void cpu_ew(eopt_backend *be,
                                                                                               const eopt_ew *e)
{
    const int64_t n = e->n, work = n * (e->row_len > 1 ? e->row_len : 1);
    (void)be;
    switch (e->op) {
#define CPU_EW_CASE(name)                                                                                             \
    case EOPT_EW_##name: {                                                                                            \
        const eopt_ew_##name##_args k = e->name;                                                                      \
        _Pragma("omp parallel for simd firstprivate(k) schedule(static) if (work >= PAR_MIN)")                        \
        for (int64_t i = 0; i < n; i++)                                                                               \
            eopt_ew_##name(&k, i);                                                                                    \
        break;                                                                                                        \
    }
        EOPT_EW_ALL(CPU_EW_CASE)
#undef CPU_EW_CASE
    case EOPT_EW_COUNT: break;
    }
}

static void cpu_ew_threads(eopt_backend *be, const eopt_ew *e)
{
    int caller = threads_enter(be);
    cpu_ew(be, e);
    threads_leave(be, caller);
}

/* Columns per band of a column-wise reduction (cpu_reduce). */
#define COL_BAND 256

/* Reduces the vector a[0 .. n-1] (with b for DOT). */
/* A reduction along one line in RED_LANES partial accumulators (lane l takes elements l,
 * l + RED_LANES, ...), combined in lane order at the end: one accumulator chains every double add
 * behind the last (4 cycles each), the lanes run side by side. Only the rounding of the double
 * sum changes with the order. `op` is a constant in each call from red_line, so the switches in
 * eopt_red_map / eopt_red_combine fold away. */
#define RED_LANES 8
static inline __attribute__((always_inline)) double red_lanes(eopt_reduce_op op, const float *a, const float *b,
                                                                int64_t n)
{
    double acc[RED_LANES];
    for (int l = 0; l < RED_LANES; l++)
        acc[l] = eopt_red_init(op);
    int64_t j = 0;
    for (; j + RED_LANES <= n; j += RED_LANES)
        for (int l = 0; l < RED_LANES; l++)
            acc[l] = eopt_red_combine(op, acc[l], eopt_red_map(op, a[j + l], b ? b[j + l] : 0.0f));
    for (; j < n; j++)
        acc[0] = eopt_red_combine(op, acc[0], eopt_red_map(op, a[j], b ? b[j] : 0.0f));
    double r = acc[0];
    for (int l = 1; l < RED_LANES; l++)
        r = eopt_red_combine(op, r, acc[l]);
    return r;
}

static inline __attribute__((always_inline)) double red_line(eopt_reduce_op op, const float *a, const float *b,
                                                               int64_t n)
{
    switch (op) {
    case EOPT_RED_SUM: return red_lanes(EOPT_RED_SUM, a, b, n);
    case EOPT_RED_MAX: return red_lanes(EOPT_RED_MAX, a, b, n);
    case EOPT_RED_SUMSQ: return red_lanes(EOPT_RED_SUMSQ, a, b, n);
    case EOPT_RED_NORM: return red_lanes(EOPT_RED_NORM, a, b, n);
    case EOPT_RED_ABSSUM: return red_lanes(EOPT_RED_ABSSUM, a, b, n);
    case EOPT_RED_MAXABS: return red_lanes(EOPT_RED_MAXABS, a, b, n);
    case EOPT_RED_DOT: return red_lanes(EOPT_RED_DOT, a, b, n);
    }
    return 0;
}

#define RED_BLOCK 16       /* rows per partial of a whole-matrix reduction */
#define RED_MAX_BLOCKS 256 /* partials held at once */
/* Built for AVX-512 and AVX2 as well as the baseline, as cpu_ew: the RED_LANES accumulators of
 * a line are one vector of doubles there. The lanes and their order are the same in every
 * build, so the bits are too (a float's square or product is exact in double: a fused
 * multiply-add rounds it the same). */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) static void
cpu_reduce(eopt_backend *be, eopt_reduce_op op, eopt_axis axis, int rows, int cols, const float *a, const float *b,
           int ld, float alpha, float *out)
{
    const int64_t work = (int64_t)rows * cols;
    int caller = threads_enter(be);
    if (axis == EOPT_AXIS_ROWS) {
#pragma omp parallel for schedule(static) if (work >= PAR_MIN)
        for (int i = 0; i < rows; i++)
            out[i] = eopt_red_finish(op, red_line(op, a + (size_t)i * ld, b ? b + (size_t)i * ld : NULL, cols),
                                     alpha);
    } else if (axis == EOPT_AXIS_COLS) {
        /* A band of COL_BAND columns at a time, walked row by row (a column walk would miss the
         * cache on every element); each column still accumulates its rows in order. */
#pragma omp parallel for schedule(static) if (work >= PAR_MIN)
        for (int j0 = 0; j0 < cols; j0 += COL_BAND) {
            const int w = cols - j0 < COL_BAND ? cols - j0 : COL_BAND;
            double acc[COL_BAND];
            for (int j = 0; j < w; j++)
                acc[j] = eopt_red_init(op);
            for (int i = 0; i < rows; i++) {
                const float *ai = a + (size_t)i * ld + j0, *bi = b ? b + (size_t)i * ld + j0 : NULL;
                for (int j = 0; j < w; j++)
                    acc[j] = eopt_red_combine(op, acc[j], eopt_red_map(op, ai[j], bi ? bi[j] : 0.0f));
            }
            for (int j = 0; j < w; j++)
                out[j0 + j] = eopt_red_finish(op, acc[j], alpha);
        }
    } else {
        /* Blocks of RED_BLOCK rows in parallel, their partials combined in block order: the
         * same bits on any thread count. */
        const int blocks = (rows + RED_BLOCK - 1) / RED_BLOCK;
        double part[RED_MAX_BLOCKS], acc = eopt_red_init(op);
        for (int k0 = 0; k0 < blocks; k0 += RED_MAX_BLOCKS) {
            const int nk = blocks - k0 < RED_MAX_BLOCKS ? blocks - k0 : RED_MAX_BLOCKS;
#pragma omp parallel for schedule(static) if (work >= PAR_MIN)
            for (int k = 0; k < nk; k++) {
                const int i0 = (k0 + k) * RED_BLOCK, i1 = i0 + RED_BLOCK < rows ? i0 + RED_BLOCK : rows;
                double p = eopt_red_init(op);
                for (int i = i0; i < i1; i++)
                    p = eopt_red_combine(op, p, red_line(op, a + (size_t)i * ld, b ? b + (size_t)i * ld : NULL, cols));
                part[k] = p;
            }
            for (int k = 0; k < nk; k++)
                acc = eopt_red_combine(op, acc, part[k]);
        }
        out[0] = eopt_red_finish(op, acc, alpha);
    }
    threads_leave(be, caller);
}

/* Moves one selected element between `full` and `part`. */
static inline __attribute__((always_inline)) void index_move(eopt_index_mode mode, float *f, float *p, float alpha)
{
    if (mode == EOPT_INDEX_GATHER)
        *p = *f;
    else if (mode == EOPT_INDEX_SCATTER)
        *f = *p;
    else
        *f += alpha * *p;
}

static void cpu_index(eopt_backend *be, eopt_index_mode mode, eopt_axis axis, int rows, int cols,
                      const int32_t *idx, int k, float *full, float *part, float alpha)
{
    const int64_t work = (int64_t)k * (axis == EOPT_AXIS_ROWS ? cols : rows);
    int caller = threads_enter(be);
    /* Threads split the dimension that is not indexed, so repeated indices in a scatter never
     * race and each thread walks contiguous memory: element (j, t) is row idx[j], column t
     * (rows) or row t, column idx[j] (cols). */
    if (axis == EOPT_AXIS_ROWS) {
        /* one band of columns per thread, whole cache lines, each selected row's band in turn */
        const int nt = work >= PAR_MIN ? omp_get_max_threads() : 1, band = ((cols + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int c0 = 0; c0 < cols; c0 += band) {
            const int c1 = c0 + band < cols ? c0 + band : cols;
            for (int j = 0; j < k; j++) {
                float *f = full + (size_t)idx[j] * cols, *p = part + (size_t)j * cols;
                for (int t = c0; t < c1; t++)
                    index_move(mode, &f[t], &p[t], alpha);
            }
        }
    } else {
#pragma omp parallel for schedule(static) if (work >= PAR_MIN)
        for (int t = 0; t < rows; t++)
            for (int j = 0; j < k; j++)
                index_move(mode, &full[(size_t)t * cols + idx[j]], &part[(size_t)t * k + j], alpha);
    }
    threads_leave(be, caller);
}

/* The keys come through qsort_r's argument, not a global: backends on several threads sort at once. */
static int desc_stable(const void *x, const void *y, void *keys)
{
    int32_t i = *(const int32_t *)x, j = *(const int32_t *)y;
    float a = ((const float *)keys)[i], b = ((const float *)keys)[j];
    int a_nan = a != a, b_nan = b != b; /* NaN ranks highest, as torch.topk does */
    if (a_nan != b_nan)
        return b_nan - a_nan;
    if (!a_nan && a != b)
        return a > b ? -1 : 1;
    return (i > j) - (i < j);
}

static void cpu_argsort_desc(eopt_backend *be, int n, const float *v, int32_t *idx)
{
    (void)be;
    for (int i = 0; i < n; i++)
        idx[i] = i;
    /* the index tie-break makes qsort's instability irrelevant */
    qsort_r(idx, (size_t)n, sizeof *idx, desc_stable, (void *)v);
}

static void cpu_random(eopt_backend *be, eopt_rand_kind kind, uint64_t seed, uint64_t offset, int64_t n, float *out)
{
    int caller = threads_enter(be);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t j = 0; j < n; j++)
        out[j] = kind == EOPT_RAND_NORMAL ? eopt_rand_normal(seed, offset + (uint64_t)j)
                                          : eopt_rand_uniform(seed, offset + (uint64_t)j);
    threads_leave(be, caller);
}

static void cpu_to_bf16(eopt_backend *be, int64_t n, const float *src, uint16_t *dst)
{
    (void)be;
    for (int64_t j = 0; j < n; j++)
        dst[j] = eopt_f32_to_bf16(src[j]);
}

static void cpu_from_bf16(eopt_backend *be, int64_t n, const uint16_t *src, float *dst)
{
    (void)be;
    for (int64_t j = 0; j < n; j++)
        dst[j] = eopt_bf16_to_f32(src[j]);
}

eopt_status eopt_backend_cpu_create(int threads, eopt_backend **out)
{
    eopt_backend *be = calloc(1, sizeof *be);
    cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    }
    const char *lib = getenv("EOPT_CPU_GEMM");
    if (lib && *lib && strcmp(lib, "openblas") != 0 && strcmp(lib, "onednn") != 0) {
        free(be), free(c);
        return eopt_fail(EOPT_ERR_ARG, "EOPT_CPU_GEMM='%s': expected 'onednn' or 'openblas'", lib);
    }
#ifdef EOPT_ONEDNN
    const int onednn = !lib || strcmp(lib, "openblas") != 0;
#else
    const int onednn = 0;
    if (lib && strcmp(lib, "onednn") == 0) {
        free(be), free(c);
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "EOPT_CPU_GEMM='onednn': this eopt was built without oneDNN (make ONEDNN=1)");
    }
#endif
    *be = (eopt_backend){
        .name = "cpu",
        .device = EOPT_DEV_CPU,
        .ctx = c,
        .threads = threads > 0 ? threads : 0,
        .onednn = onednn,
        .alloc = cpu_alloc,
        .free = cpu_free,
        .upload = cpu_memcpy,
        .download = cpu_memcpy,
        .copy = cpu_memcpy,
        .sync = cpu_sync,
        .destroy = cpu_destroy,
        .gemm = cpu_gemm,
        .gemm_strided_batched = cpu_gemm_strided_batched,
        .syrk = cpu_syrk,
        .syevd = cpu_syevd,
        .qr = cpu_qr,
        .reserve_solver = cpu_reserve_solver,
        .ew = cpu_ew_threads,
        .reduce = cpu_reduce,
        .index = cpu_index,
        .argsort_desc = cpu_argsort_desc,
        .random = cpu_random,
        .to_bf16 = cpu_to_bf16,
        .from_bf16 = cpu_from_bf16,
    };
    *out = be;
    return EOPT_OK;
}
