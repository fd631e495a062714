/* Backend selection and the small wrappers every algorithm uses. */
#include <cblas.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

eopt_status eopt_backend_open(const char *device, int threads, eopt_backend **out)
{
    *out = NULL;
    if (!device || !*device)
        device = getenv("EOPT_DEVICE");
    if (!device || !*device)
        device = "cpu";
    if (strcmp(device, "cpu") == 0)
        return eopt_backend_cpu_create(threads, out);
    if (strcmp(device, "cuda") == 0)
        return eopt_backend_cuda_create(out);
    return eopt_fail(EOPT_ERR_DEVICE, "unknown device '%s' (expected 'cpu' or 'cuda')", device);
}

void eopt_backend_close(eopt_backend *be)
{
    if (be)
        be->destroy(be);
}

void eopt_backend_describe(const eopt_backend *be, char *buf, size_t size)
{
    if (be->device == EOPT_DEV_CPU)
        snprintf(buf, size, "cpu: %sOpenBLAS (%s kernels) + LAPACKE, %d threads", be->onednn ? "oneDNN + " : "",
                 openblas_get_corename(), be->threads > 0 ? be->threads : omp_get_max_threads());
    else
        snprintf(buf, size, "%s", be->name);
}

void eopt_backend_fail(eopt_backend *be, eopt_status st, const char *fmt, ...)
{
    char msg[sizeof be->status_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
#pragma omp critical(eopt_backend_status) /* updates of several matrices may fail at once */
    if (be->status == EOPT_OK) {
        memcpy(be->status_msg, msg, sizeof msg);
        be->status = st;
    }
}

eopt_status eopt_backend_check(const eopt_backend *be, const char *what)
{
    if (be->status == EOPT_OK)
        return EOPT_OK;
    return eopt_fail(be->status, "%s: %s: %s", what, be->device == EOPT_DEV_CPU ? "cpu" : "cuda", be->status_msg);
}

void eopt_backend_clear(eopt_backend *be)
{
    be->status = EOPT_OK;
    be->status_msg[0] = '\0';
}

eopt_status eopt_backend_sync(eopt_backend *be)
{
    be->sync(be);
    return eopt_backend_check(be, "sync");
}

void eopt_scale(eopt_backend *be, int64_t n, float alpha, const float *a, float *y)
{
    eopt_ew_run(be, EOPT_EW(scale, n, .y = y, .a = a, .alpha = alpha));
}

void eopt_axpby(eopt_backend *be, int64_t n, float alpha, const float *a, float beta, const float *b, float *y)
{
    eopt_ew_run(be, EOPT_EW(axpby, n, .y = y, .a = a, .b = b, .alpha = alpha, .beta = beta));
}

void eopt_fill(eopt_backend *be, int64_t n, float value, float *y)
{
    eopt_ew_run(be, EOPT_EW(fill, n, .y = y, .value = value));
}

void eopt_copy_f32(eopt_backend *be, int64_t n, const float *a, float *y) { be->copy(be, y, a, (size_t)n * sizeof(float)); }

float eopt_read_scalar(eopt_backend *be, const float *p)
{
    float v;
    be->download(be, &v, p, sizeof v);
    return v;
}
