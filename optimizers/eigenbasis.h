/* Eigenbasis primitives shared by SOAP and MOSO (soap-moso.md §0.1, §0.2, §3.6, §4): the
 * similarity diagonal, the two upstream eigh_with_fallback versions, the sort + permute step
 * and the QR power iteration of a refresh, and one-sided projections. All n x n matrices are
 * row-major device arrays of the backend; temporaries come from `ws`. */
#ifndef EOPT_EIGENBASIS_H
#define EOPT_EIGENBASIS_H

#include "../framework/backend.h"
#include "../framework/tensor.h"

/* Which eigh_with_fallback: SOAP's (Emerging-Optimizers@1effa02: an exactly diagonal input
 * gives identity columns by descending diagonal, otherwise K + 1e-7 I is solved) or MOSO's
 * (@a0e376b: K as is). Both return column 0 = the largest eigenvalue's eigenvector. */
typedef enum { EOPT_EIGH_SOAP = 0, EOPT_EIGH_MOSO } eopt_eigh_kind;

/* approx(K, Q) = diag(Q^T K Q), one value per column of Q, as the column sums of (K Q) . Q
 * (K symmetric). KQ (n x n) receives K Q: the sort reuses it as the first power-iteration
 * product. */
void eopt_eig_approx(eopt_backend *be, int n, const float *K, const float *Q, float *KQ, float *lam);

/* Q (n x n) = the eigenvectors of the symmetric K, descending eigenvalue order. The backend's
 * float32 solver has no float64 retry: its failure is returned (EOPT_ERR_NUMERIC). fallbacks
 * (NULL: not counted; counting reads one device scalar) is incremented when SOAP's
 * eigh_with_fallback took its fallback, the identity basis of an exactly diagonal K. */
/* The workspace eopt_eig_eigh and eopt_eig_sort take for an n x n factor. */
size_t eopt_eig_eigh_workspace_bytes(eopt_eigh_kind kind, int n);
static inline size_t eopt_eig_sort_workspace_bytes(int n) { return eopt_ws_size((size_t)n * sizeof(int32_t)); }
eopt_status eopt_eig_eigh(eopt_backend *be, eopt_workspace *ws, eopt_eigh_kind kind, int n, const float *K, float *Q,
                          int64_t *fallbacks);

/* The sort of a refresh: pi = argsort(lam) descending (stable), Qs = Q[:, pi], KQs = KQ[:, pi]
 * (= K Qs), and Vs = V (rows x cols) permuted by pi along `axis` (EOPT_AXIS_ROWS: row i of Vs is
 * row pi[i] of V; EOPT_AXIS_COLS: columns). Qs, KQs or V may be NULL to skip that output. */
eopt_status eopt_eig_sort(eopt_backend *be, eopt_workspace *ws, int n, const float *lam, const float *Q,
                          const float *KQ, float *Qs, float *KQs, eopt_axis axis, int rows, int cols, const float *V,
                          float *Vs);

/* Orthogonal iteration from the sorted basis: `steps` times Q = householder_qr(K Q).Q, the first
 * product being KQs (clobbered). steps <= 0 returns Qs. Result in Qout. */
eopt_status eopt_eig_power_qr(eopt_backend *be, int n, const float *K, const float *Qs, float *KQs, int steps,
                              float *Qout);

/* One-sided basis change of X (m x n), Q square: into the basis Y = Q^T X (left) | X Q (right);
 * out of it Y = Q X (left) | X Q^T (right). SOAP's two-sided precondition() is left then right. */
void eopt_eig_project(eopt_backend *be, int left, int into, int m, int n, const float *Q, const float *X, float *Y);

/* Diagnostics of a factor K (n x n, symmetric) and its basis Q: the drift ||Q^T Q - I||_F / sqrt(n)
 * (eopt_ns_residual) and the condition number lambda_max / max(lambda_min, n eps32 lambda_max) of
 * K from the backend's syevd of a copy: capped at 1 / (n eps32) for a factor singular in float32
 * (NaN for a zero factor or one the solver refuses). Take n x n + n + 1 floats of ws; each reads
 * device scalars (diagnostic steps only). */
eopt_status eopt_eig_drift(eopt_backend *be, eopt_workspace *ws, int n, const float *Q, double *drift);
eopt_status eopt_eig_condition(eopt_backend *be, eopt_workspace *ws, int n, const float *K, double *cond);

/* The element-wise end of a SOAP/MOSO step (the inner Adam is eopt_adam_update, adamw.h). */

/* P = P + decay P (decay 0: none), then _clip_update_rms_in_place(U, max_rms) (0: off) and
 * P = P - lr U. `ms` is one float of device scratch for mean(U^2). */
void eopt_soap_apply(eopt_backend *be, int rows, int cols, float *P, const float *U, double decay, double max_rms,
                     double lr, float *ms);

#endif
