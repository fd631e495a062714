/* The backend's sticky status (a failed operation reaches the caller of the step, the model,
 * sync, a tensor transfer and a checkpoint save, named), with faults injected through the
 * interface: a CPU backend whose gemm or ew pointer is replaced by one that records a failure
 * the way a failed cuBLAS call or kernel launch does. Also: a backend's thread count does not
 * leak into the process, library warnings go to the log handler, argsort is reentrant. */
#include <cblas.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../checkpoint/checkpoint.h"
#include "../checkpoint/h5.h"
#include "models/model.h"
#include "tests/testutil.h"

static void failing_gemm(eopt_backend *be, eopt_prec prec, int ta, int tb, int m, int n, int k, float alpha,
                         const void *A, int lda, int64_t sa, const void *B, int ldb, int64_t sb, float beta, void *C,
                         int ldc, int64_t sc, int batch)
{
    (void)prec, (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)A, (void)lda, (void)sa, (void)B;
    (void)ldb, (void)sb, (void)beta, (void)C, (void)ldc, (void)sc, (void)batch;
    eopt_backend_fail(be, EOPT_ERR_DEVICE, "cublasGemmEx failed: CUBLAS_STATUS_EXECUTION_FAILED");
}

/* The real ew, then a failed launch report, as the CUDA backend's cudaGetLastError check does. */
static void (*real_ew)(eopt_backend *, const eopt_ew *);
static void failing_ew(eopt_backend *be, const eopt_ew *e)
{
    real_ew(be, e);
    eopt_backend_fail(be, EOPT_ERR_DEVICE, "element-wise kernel %d failed: unspecified launch failure", (int)e->op);
}

static void failing_download(eopt_backend *be, void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n); /* the CPU backend's download */
    eopt_backend_fail(be, EOPT_ERR_DEVICE, "download (cudaMemcpy) failed: unspecified launch failure");
}

static void expect_failure(eopt_status st, eopt_status want, const char *context, const char *op)
{
    cr_expect_eq(st, want, "%s returned %s, not %s", context, eopt_status_name(st), eopt_status_name(want));
    cr_expect(strstr(eopt_last_error(), context) && strstr(eopt_last_error(), op), "message '%s' lacks '%s' / '%s'",
              eopt_last_error(), context, op);
}

Test(backend_status, first_failure_kept_until_clear)
{
    eopt_backend *be = tu_backend(1);
    cr_expect_eq(eopt_backend_check(be, "idle"), EOPT_OK);
    eopt_backend_fail(be, EOPT_ERR_DEVICE, "cudaMemcpy failed: an illegal memory access was encountered");
    eopt_backend_fail(be, EOPT_ERR_ARG, "a later failure");
    expect_failure(eopt_backend_check(be, "here"), EOPT_ERR_DEVICE, "here", "illegal memory access");
    expect_failure(eopt_backend_sync(be), EOPT_ERR_DEVICE, "sync", "illegal memory access");
    cr_expect_eq(eopt_backend_check(be, "again"), EOPT_ERR_DEVICE, "the status is sticky");
    eopt_backend_clear(be);
    cr_expect_eq(eopt_backend_check(be, "cleared"), EOPT_OK);
    cr_expect_eq(eopt_backend_sync(be), EOPT_OK);
    eopt_backend_close(be);
}

/* BLAS would print its complaint (xerbla) and return; the CPU backend records it instead. */
Test(backend_status, cpu_gemm_bad_arguments_recorded)
{
    eopt_backend *be = tu_backend(1);
    float A[6] = {1, 2, 3, 4, 5, 6}, C[4] = {7, 7, 7, 7};
    be->gemm(be, EOPT_PREC_FP32, 0, 0, 2, 2, 3, 1.0f, A, 2 /* < k */, 0, A, 2, 0, 0.0f, C, 2, 0, 1);
    expect_failure(eopt_backend_check(be, "product"), EOPT_ERR_ARG, "product", "sgemm");
    cr_expect(C[0] == 7 && C[3] == 7, "a refused product wrote its output");
    eopt_backend_clear(be);
    be->syrk(be, EOPT_PREC_FP32, 0, 2, 3, 1.0f, A, 3, 0.0f, C, 1 /* < n */);
    expect_failure(eopt_backend_check(be, "gram"), EOPT_ERR_ARG, "gram", "ssyrk");
    eopt_backend_close(be);
}

static const int shapes[2][2] = {{8, 4}, {4, 0}};

Test(backend_status, optimizer_step_returns_failed_gemm)
{
    eopt_backend *be = tu_backend(1);
    rig r;
    cr_assert_eq(rig_open(&r, be, "Muon", NULL, NULL, 1, shapes, 1), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 2, 0, 1.0f);
    be->gemm = failing_gemm;
    expect_failure(eopt_optimizer_step(r.opt), EOPT_ERR_DEVICE, "Muon step", "cublasGemmEx");
    rig_close(&r);
    eopt_backend_close(be);
}

Test(backend_status, optimizer_step_returns_failed_kernel)
{
    eopt_backend *be = tu_backend(1);
    rig r;
    cr_assert_eq(rig_open(&r, be, "AdamW", NULL, NULL, 2, shapes, 1), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 2, 0, 1.0f);
    rig_step(&r);
    real_ew = be->ew;
    be->ew = failing_ew;
    expect_failure(eopt_optimizer_step(r.opt), EOPT_ERR_DEVICE, "AdamW step", "element-wise kernel");
    rig_close(&r);
    eopt_backend_close(be);
}

Test(backend_status, model_forward_backward_returns_failed_gemm)
{
    eopt_backend *be = tu_backend(1);
    eopt_model_config cfg = {.kind = EOPT_MODEL_MLP, .ndims = 3, .dims = {4, 8, 3}};
    eopt_model *m;
    cr_assert_eq(eopt_model_create(&cfg, be, 2, 1, &m), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_model_init(m, 1), EOPT_OK, "%s", eopt_last_error());
    float *x = be->alloc(be, 8 * sizeof(float));
    int32_t *labels = be->alloc(be, 2 * sizeof(int32_t)); /* zeros: class 0 */
    be->random(be, EOPT_RAND_NORMAL, 3, 0, 8, x);
    eopt_batch b = {.B = 2, .T = 1, .x = x, .labels = labels};
    float loss;
    cr_assert_eq(eopt_model_forward(m, &b, 1, 1.0f, &loss, NULL), EOPT_OK, "%s", eopt_last_error());
    be->gemm = failing_gemm;
    expect_failure(eopt_model_forward(m, &b, 1, 1.0f, &loss, NULL), EOPT_ERR_DEVICE, "model forward/backward",
                   "cublasGemmEx");
    expect_failure(eopt_model_forward(m, &b, 0, 1.0f, &loss, NULL), EOPT_ERR_DEVICE, "model forward",
                   "cublasGemmEx");
    be->free(be, x);
    be->free(be, labels);
    eopt_model_free(m);
    eopt_backend_close(be);
}

/* Nothing is written from a failed device: no file, no temporary left behind. */
Test(backend_status, checkpoint_save_refuses_failed_device)
{
    eopt_h5_quiet();
    eopt_backend *be = tu_backend(1);
    rig r;
    cr_assert_eq(rig_open(&r, be, "AdamW", NULL, NULL, 2, shapes, 1), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 2, 0, 1.0f);
    rig_step(&r);
    char dir[] = "/tmp/eopt-status-XXXXXX", path[64], tmp[80];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const eopt_ckpt_optimizer o = {.name = "0", .opt = r.opt};
    const eopt_ckpt_write w = {.step = 1, .nparams = r.np, .params = r.p, .nopt = 1, .opts = &o};

    eopt_backend_fail(be, EOPT_ERR_DEVICE, "cudaDeviceSynchronize failed: an illegal memory access was encountered");
    expect_failure(eopt_checkpoint_save(path, &w), EOPT_ERR_DEVICE, "writing checkpoint", "cudaDeviceSynchronize");
    cr_expect(access(path, F_OK) != 0 && access(tmp, F_OK) != 0, "a checkpoint was written from a failed device");

    /* A failure that shows only in the downloads of the save itself (a save writes host memory
     * in place: the backend plays a device here, so that the tensors are downloaded). */
    eopt_backend_clear(be);
    void (*download)(eopt_backend *, void *, const void *, size_t) = be->download;
    be->download = failing_download;
    be->device = EOPT_DEV_CUDA;
    expect_failure(eopt_checkpoint_save(path, &w), EOPT_ERR_DEVICE, "writing checkpoint", "cudaMemcpy");
    cr_expect(access(path, F_OK) != 0 && access(tmp, F_OK) != 0, "a checkpoint was written from a failed device");

    be->download = download;
    be->device = EOPT_DEV_CPU;
    eopt_backend_clear(be);
    cr_expect_eq(eopt_checkpoint_save(path, &w), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(access(path, F_OK), 0);
    unlink(path);
    rmdir(dir);
    rig_close(&r);
    eopt_backend_close(be);
}

Test(backend_status, tensor_transfer_returns_failure)
{
    eopt_backend *be = tu_backend(1);
    eopt_tensor t;
    const int64_t n = 4;
    cr_assert_eq(eopt_tensor_alloc(&t, be, EOPT_F32, 1, &n), EOPT_OK);
    float h[4] = {0};
    be->download = failing_download;
    expect_failure(eopt_tensor_to_host(&t, h, sizeof h), EOPT_ERR_DEVICE, "tensor copy", "cudaMemcpy");
    eopt_tensor_free(&t);
    eopt_backend_close(be);
}

/* Opening a backend and running its operations leaves the caller's OpenMP (and so OpenBLAS's
 * OpenMP build's) thread count as it was. */
Test(backend_threads, backend_leaves_process_thread_count)
{
    omp_set_num_threads(3);
    const int blas_before = openblas_get_num_threads();
    eopt_backend *be;
    cr_assert_eq(eopt_backend_cpu_create(1, &be), EOPT_OK);
    cr_expect_eq(omp_get_max_threads(), 3, "creating a backend changed the OpenMP thread count");
    cr_expect_eq(openblas_get_num_threads(), blas_before, "creating a backend changed the BLAS thread count");
    enum { N = 40000 }; /* above the CPU backend's parallel threshold */
    float *a = be->alloc(be, N * sizeof(float)), *C = be->alloc(be, 64 * 64 * sizeof(float)), w[64];
    be->random(be, EOPT_RAND_NORMAL, 1, 0, N, a);
    eopt_scale(be, N, 2.0f, a, a);
    be->reduce(be, EOPT_RED_SUMSQ, EOPT_AXIS_ROWS, 200, 200, a, NULL, 200, 1.0f, a + 2 * N / 3);
    be->gemm(be, EOPT_PREC_FP32, 0, 1, 64, 64, 64, 1.0f, a, 64, 0, a, 64, 0, 0.0f, C, 64, 0, 1);
    cr_expect_eq(be->syevd(be, 64, C, w), EOPT_OK);
    cr_expect_eq(omp_get_max_threads(), 3, "an operation left its thread count behind");
    char desc[128];
    eopt_backend_describe(be, desc, sizeof desc);
    cr_expect(strstr(desc, "1 threads"), "%s", desc);
    be->free(be, a);
    be->free(be, C);
    eopt_backend_close(be);

    /* threads <= 0: the caller's setting, read when the operation runs */
    cr_assert_eq(eopt_backend_cpu_create(0, &be), EOPT_OK);
    eopt_backend_describe(be, desc, sizeof desc);
    cr_expect(strstr(desc, "3 threads"), "%s", desc);
    eopt_backend_close(be);
}

/* Two threads sort different keys at once (the comparator used to read them from a global). */
Test(backend_argsort, reentrant_across_threads)
{
    eopt_backend *be = tu_backend(1);
    enum { N = 20000, ROUNDS = 20 };
    float *v[2];
    int32_t *idx[2];
    for (int t = 0; t < 2; t++) {
        v[t] = malloc(N * sizeof(float));
        idx[t] = malloc(N * sizeof(int32_t));
        for (int i = 0; i < N; i++)
            v[t][i] = t ? (float)-i : (float)i; /* thread 0: reversed order; thread 1: identity */
    }
    int wrong[2] = {0, 0};
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num();
        for (int r = 0; r < ROUNDS; r++) {
            be->argsort_desc(be, N, v[t], idx[t]);
            for (int i = 0; i < N; i++)
                wrong[t] += idx[t][i] != (t ? i : N - 1 - i);
        }
    }
    cr_expect_eq(wrong[0] + wrong[1], 0, "%d + %d misplaced indices", wrong[0], wrong[1]);
    for (int t = 0; t < 2; t++)
        free(v[t]), free(idx[t]);
    eopt_backend_close(be);
}

static int nwarn;
static char warned[512];
static void keep_warning(eopt_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level == EOPT_LOG_WARN && !nwarn++)
        snprintf(warned, sizeof warned, "%s", msg);
}

/* A checkpoint's warning (an unknown attribute, ignored) goes to the program's handler, and
 * nothing reaches stderr. */
Test(backend_status, checkpoint_warning_goes_to_log_handler)
{
    eopt_h5_quiet();
    eopt_backend *be = tu_backend(1);
    rig r;
    cr_assert_eq(rig_open(&r, be, "AdamW", NULL, NULL, 2, shapes, 1), EOPT_OK, "%s", eopt_last_error());
    char dir[] = "/tmp/eopt-status-XXXXXX", path[64], err_path[64];
    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    const eopt_ckpt_optimizer o = {.name = "0", .opt = r.opt};
    const eopt_ckpt_write w = {.step = 1, .nparams = r.np, .params = r.p, .nopt = 1, .opts = &o};
    cr_assert_eq(eopt_checkpoint_save(path, &w), EOPT_OK, "%s", eopt_last_error());
    hid_t fid = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(fid, 0);
    cr_assert_eq(eopt_h5_attr_write_str(fid, "bogus", "x"), EOPT_OK);
    H5Fclose(fid);

    fflush(stderr);
    int saved = dup(2), fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    eopt_log_set_handler(keep_warning, NULL);
    eopt_ckpt *ck = NULL;
    eopt_status st = eopt_checkpoint_open(path, NULL, &ck);
    eopt_log_set_handler(NULL, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    cr_assert_eq(st, EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(nwarn, 1);
    cr_expect(strstr(warned, "bogus") && strstr(warned, "ignored"), "warning '%s'", warned);
    FILE *f = fopen(err_path, "r");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    cr_expect_eq(ftell(f), 0, "the library wrote to stderr");
    fclose(f);
    eopt_checkpoint_close(ck);
    unlink(err_path);
    unlink(path);
    rmdir(dir);
    rig_close(&r);
    eopt_backend_close(be);
}

/* The CPU's float32 products come from oneDNN (a ONEDNN=1 build, the default) or OpenBLAS
 * (EOPT_CPU_GEMM=openblas); the banner says which, both compute the same products, and any
 * other value is refused by name. */
static eopt_backend *cpu_with_gemm(const char *lib)
{
    setenv("EOPT_CPU_GEMM", lib, 1);
    eopt_backend *be = NULL;
    cr_assert_eq(eopt_backend_cpu_create(2, &be), EOPT_OK, "EOPT_CPU_GEMM=%s: %s", lib, eopt_last_error());
    unsetenv("EOPT_CPU_GEMM");
    return be;
}

Test(backend_status, cpu_gemm_library_chosen_by_name)
{
    enum { N = 301, K = 170 };
    float *A = malloc(sizeof(float) * N * K), *C[2];
    for (int i = 0; i < N * K; i++)
        A[i] = (float)sin(0.37 * i);
    const char *libs[2] = {"openblas", "onednn"};
    for (int l = 0; l < 2; l++) {
#ifndef EOPT_ONEDNN
        if (l == 1) { /* refused by a build without it, by name */
            setenv("EOPT_CPU_GEMM", "onednn", 1);
            eopt_backend *none = NULL;
            expect_failure(eopt_backend_cpu_create(1, &none), EOPT_ERR_UNSUPPORTED, "EOPT_CPU_GEMM", "ONEDNN=1");
            unsetenv("EOPT_CPU_GEMM");
            free(A), free(C[0]);
            return;
        }
#endif
        eopt_backend *be = cpu_with_gemm(libs[l]);
        char banner[256];
        eopt_backend_describe(be, banner, sizeof banner);
        cr_expect_eq(strstr(banner, "oneDNN") != NULL, l == 1, "EOPT_CPU_GEMM=%s: banner '%s'", libs[l], banner);
        C[l] = calloc((size_t)N * N, sizeof(float));
        be->syrk(be, EOPT_PREC_FP32, 0, N, K, 1.0f, A, K, 0.0f, C[l], N);
        be->gemm(be, EOPT_PREC_FP32, 0, 1, N, N, K, 0.5f, A, K, 0, A, K, 0, 0.5f, C[l], N, 0, 1);
        cr_expect_eq(eopt_backend_check(be, "products"), EOPT_OK, "%s", eopt_last_error());
        eopt_backend_close(be);
    }
    double worst = 0;
    for (int i = 0; i < N * N; i++)
        worst = fmax(worst, fabs(C[0][i] - C[1][i]) / (1 + fabs(C[0][i])));
    cr_expect_lt(worst, 1e-5, "OpenBLAS and oneDNN products differ by %g", worst);
    free(A), free(C[0]), free(C[1]);

    setenv("EOPT_CPU_GEMM", "mkl", 1);
    eopt_backend *bad = NULL;
    expect_failure(eopt_backend_cpu_create(1, &bad), EOPT_ERR_ARG, "EOPT_CPU_GEMM='mkl'", "openblas");
    cr_expect_null(bad);
    unsetenv("EOPT_CPU_GEMM");
}

/* A whole-matrix reduction sums blocks of rows in parallel and combines them in block order:
 * the same bits on 1 and 2 threads, past the 4096 rows one round of blocks holds, and a NaN
 * kept by max wherever it falls. */
Test(backend_status, cpu_reduce_all_same_bits_on_any_thread_count)
{
    enum { R = 5003, C = 37 };
    float *a = malloc(sizeof(float) * R * C), got[2][4];
    double sum = 0, sumsq = 0;
    for (int i = 0; i < R * C; i++) {
        a[i] = (float)sin(0.011 * i) * (1 + i % 7);
        sum += a[i], sumsq += (double)a[i] * a[i];
    }
    for (int t = 0; t < 2; t++) {
        eopt_backend *be = NULL;
        cr_assert_eq(eopt_backend_cpu_create(t + 1, &be), EOPT_OK);
        be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, R, C, a, NULL, C, 1.0f, &got[t][0]);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, R, C, a, NULL, C, 1.0f, &got[t][1]);
        be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_ALL, R, C, a, a, C, 1.0f, &got[t][2]);
        const float kept = a[4500 * C + 3];
        a[4500 * C + 3] = NAN;
        be->reduce(be, EOPT_RED_MAX, EOPT_AXIS_ALL, R, C, a, NULL, C, 1.0f, &got[t][3]);
        a[4500 * C + 3] = kept;
        eopt_backend_close(be);
    }
    cr_expect(memcmp(got[0], got[1], sizeof got[0]) == 0, "1 thread: %.9g %.9g %.9g; 2 threads: %.9g %.9g %.9g",
              got[0][0], got[0][1], got[0][2], got[1][0], got[1][1], got[1][2]);
    cr_expect_float_eq(got[0][0], (float)sum, 1e-6 * fabs(sum) + 1e-6);
    cr_expect_float_eq(got[0][1], (float)sqrt(sumsq), 1e-6 * sqrt(sumsq));
    cr_expect_float_eq(got[0][2], (float)sumsq, 1e-6 * sumsq);
    cr_expect(isnan(got[0][3]), "max lost the NaN: %g", got[0][3]);
    free(a);
}
