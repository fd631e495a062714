#include "eigenbasis.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "newton_schulz.h"

void eopt_eig_approx(eopt_backend *be, int n, const float *K, const float *Q, float *KQ, float *lam)
{
    /* upstream: rowsum((Q^T K) . Q^T); with K symmetric (Q^T K)^T = K Q, so the same products,
     * summed per column of K Q . Q */
    be->gemm(be, EOPT_PREC_FP32, 0, 0, n, n, n, 1.0f, K, n, 0, Q, n, 0, 0.0f, KQ, n, 0, 1);
    be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_COLS, n, n, KQ, Q, n, 1.0f, lam);
}

size_t eopt_eig_eigh_workspace_bytes(eopt_eigh_kind kind, int n)
{
    const int64_t nn = (int64_t)n * n;
    size_t b = eopt_ws_floats_size(nn) + eopt_ws_floats_size(n);
    if (kind == EOPT_EIGH_SOAP)
        b += eopt_ws_floats_size(nn) + eopt_ws_floats_size(n) + eopt_ws_floats_size(1) + eopt_eig_sort_workspace_bytes(n);
    return b;
}

eopt_status eopt_eig_eigh(eopt_backend *be, eopt_workspace *ws, eopt_eigh_kind kind, int n, const float *K, float *Q,
                          int64_t *fallbacks)
{
    const int64_t nn = (int64_t)n * n;
    float *A = eopt_ws_floats(ws, nn), *w = eopt_ws_floats(ws, n);
    float *off = NULL, *d = NULL, *maxoff = NULL;
    int32_t *order = NULL;
    if (kind == EOPT_EIGH_SOAP) {
        off = eopt_ws_floats(ws, nn), d = eopt_ws_floats(ws, n), maxoff = eopt_ws_floats(ws, 1);
        order = eopt_ws_ints(ws, n);
    }
    if (!A || !w || (kind == EOPT_EIGH_SOAP && (!off || !d || !maxoff || !order)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in eigh (%dx%d)", n, n);
    if (kind == EOPT_EIGH_SOAP) {
        /* regularise: K + 1e-7 I (float32 eps = None => 1e-7) */
        eopt_ew_run(be, EOPT_EW(soap_add_diag, nn, .y = A, .a = K, .eps = 1e-7f, .cols = n));
        /* the diagonal shortcut is decided on the device: max |off-diagonal| == 0 selects the
         * identity columns ordered by the diagonal (ties: ascending index) */
        eopt_ew_run(be, EOPT_EW(soap_offdiag, nn, .y = off, .a = K, .cols = n));
        be->reduce(be, EOPT_RED_MAXABS, EOPT_AXIS_ALL, n, n, off, NULL, n, 1.0f, maxoff);
        eopt_ew_run(be, EOPT_EW(soap_diag, n, .y = d, .a = K, .cols = n));
        be->argsort_desc(be, n, d, order);
    } else {
        be->copy(be, A, K, (size_t)nn * sizeof(float));
    }
    EOPT_TRY(be->syevd(be, n, A, w));
    eopt_ew_run(be, EOPT_EW(soap_eigh_desc, nn, .q = Q, .vecs = A, .max_offdiag = maxoff, .order = order, .cols = n));
    if (fallbacks && maxoff)
        *fallbacks += eopt_read_scalar(be, maxoff) == 0.0f;
    return EOPT_OK;
}

eopt_status eopt_eig_sort(eopt_backend *be, eopt_workspace *ws, int n, const float *lam, const float *Q,
                          const float *KQ, float *Qs, float *KQs, eopt_axis axis, int rows, int cols, const float *V,
                          float *Vs)
{
    int32_t *pi = eopt_ws_ints(ws, n);
    if (!pi)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the eigenbasis sort (%d)", n);
    be->argsort_desc(be, n, lam, pi);
    /* gathers read `full` only; the casts drop a const the GATHER mode honours */
    if (Qs)
        be->index(be, EOPT_INDEX_GATHER, EOPT_AXIS_COLS, n, n, pi, n, (float *)Q, Qs, 0.0f);
    if (KQs)
        be->index(be, EOPT_INDEX_GATHER, EOPT_AXIS_COLS, n, n, pi, n, (float *)KQ, KQs, 0.0f);
    if (V)
        be->index(be, EOPT_INDEX_GATHER, axis, rows, cols, pi, n, (float *)V, Vs, 0.0f);
    return EOPT_OK;
}

eopt_status eopt_eig_power_qr(eopt_backend *be, int n, const float *K, const float *Qs, float *KQs, int steps,
                              float *Qout)
{
    const size_t bytes = (size_t)n * n * sizeof(float);
    if (steps <= 0) {
        be->copy(be, Qout, Qs, bytes);
        return EOPT_OK;
    }
    float *cur = KQs, *next = Qout;
    EOPT_TRY(be->qr(be, n, n, cur));
    for (int s = 1; s < steps; s++) {
        be->gemm(be, EOPT_PREC_FP32, 0, 0, n, n, n, 1.0f, K, n, 0, cur, n, 0, 0.0f, next, n, 0, 1);
        EOPT_TRY(be->qr(be, n, n, next));
        float *t = cur;
        cur = next, next = t;
    }
    if (cur != Qout)
        be->copy(be, Qout, cur, bytes);
    return EOPT_OK;
}

void eopt_eig_project(eopt_backend *be, int left, int into, int m, int n, const float *Q, const float *X, float *Y)
{
    if (left) /* Y = op(Q) X, Q m x m */
        be->gemm(be, EOPT_PREC_FP32, into, 0, m, n, m, 1.0f, Q, m, 0, X, n, 0, 0.0f, Y, n, 0, 1);
    else /* Y = X op(Q), Q n x n */
        be->gemm(be, EOPT_PREC_FP32, 0, !into, m, n, n, 1.0f, X, n, 0, Q, n, 0, 0.0f, Y, n, 0, 1);
}

void eopt_soap_apply(eopt_backend *be, int rows, int cols, float *P, const float *U, double decay, double max_rms,
                     double lr, float *ms)
{
    const int64_t n = (int64_t)rows * cols;
    if (max_rms != 0.0) /* rms = sqrt(mean(U^2)), the mean accumulated by the backend */
        be->reduce(be, EOPT_RED_SUMSQ, EOPT_AXIS_ALL, rows, cols, U, NULL, cols, (float)(1.0 / (double)n), ms);
    eopt_ew_run(be, EOPT_EW(soap_apply, n, .param = P, .update = U, .mean_sq = ms, .neg_lr = (float)-lr,
                            .max_rms = (float)max_rms, .rms_eps = 1e-7f, .decay = (float)decay));
}

eopt_status eopt_eig_drift(eopt_backend *be, eopt_workspace *ws, int n, const float *Q, double *drift)
{
    float *r = eopt_ws_floats(ws, 1);
    if (!r)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the basis drift (%d)", n);
    EOPT_TRY(eopt_ns_residual(be, ws, n, n, Q, r));
    *drift = eopt_read_scalar(be, r);
    return EOPT_OK;
}

eopt_status eopt_eig_condition(eopt_backend *be, eopt_workspace *ws, int n, const float *K, double *cond)
{
    float *A = eopt_ws_floats(ws, (int64_t)n * n), *w = eopt_ws_floats(ws, n), lo, hi;
    if (!A || !w)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the factor condition (%d)", n);
    be->copy(be, A, K, (size_t)n * n * sizeof(float));
    eopt_status st = be->syevd(be, n, A, w); /* ascending */
    *cond = NAN;
    if (st == EOPT_ERR_NUMERIC) { /* a non-finite factor: no number, not a failed step */
        eopt_clear_error();
        return EOPT_OK;
    }
    EOPT_TRY(st);
    be->download(be, &lo, w, sizeof lo);
    be->download(be, &hi, w + n - 1, sizeof hi);
    /* a float32 solver resolves eigenvalues to about n eps lambda_max: below that, K is singular
     * as far as the step can tell, and the number is capped there */
    const double floor = (double)hi * n * FLT_EPSILON;
    *cond = hi > 0.0f ? (double)hi / (lo > floor ? (double)lo : floor) : NAN;
    return EOPT_OK;
}
