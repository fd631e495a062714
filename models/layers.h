/* The layers the architectures are built from (../shared/spec/models.md), forward and
 * backward on the backend interface. Row-major float32; every pointer is device memory of
 * `be`; N is the number of rows (batch positions). Backward functions ADD into parameter
 * gradients (dW, db, ...) so that gradient accumulation and tied weights need no copies; the
 * input gradient is written (dx =) unless the comment says it accumulates. Scratch buffers
 * are passed explicitly: the caller sizes them once, so a step allocates nothing. */
#ifndef EOPT_LAYERS_H
#define EOPT_LAYERS_H

#include "../framework/backend.h"

/* ---- linear: y = x W^T + b, W [out, in] (nn.Linear's layout) ---- */

/* y[N, out] = beta y + x[N, in] W^T (+ b, if non-NULL; ones: N ones); beta = 1 adds into a
 * residual stream */
void eopt_linear_forward(eopt_backend *be, int N, int in, int out, const float *x, const float *W, const float *b,
                         const float *ones, float beta, float *y);
/* dW += dy^T x; db += 1^T dy (ones: N ones; db may be NULL); dx = dy W (dx may be NULL) */
void eopt_linear_backward(eopt_backend *be, int N, int in, int out, const float *dy, const float *x, const float *W,
                          float *dW, float *db, const float *ones, float *dx);

/* ---- GELU (GPT-2's tanh form) ---- */

/* act = GELU(x), grad = GELU'(x) (kept for the backward; may alias x); n elements */
void eopt_gelu_forward(eopt_backend *be, int64_t n, const float *x, float *grad, float *act);
/* dx = dact grad, grad from eopt_gelu_forward (dx may alias dact) */
void eopt_gelu_backward(eopt_backend *be, int64_t n, const float *dact, const float *grad, float *dx);

/* ---- LayerNorm over the C columns of each row, eps 1e-5, biased variance ---- */

/* xhat = (x - mean) rstd, rstd = 1 / sqrt(var + eps), out = xhat w + b; keeps xhat, rstd
 * [N, C], [N] for the backward. One fused pass per row. */
void eopt_layernorm_forward(eopt_backend *be, int N, int C, const float *x, const float *w, const float *b,
                            float *xhat, float *rstd, float *out);
/* dxhat = dout w; dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) (ACCUMULATES: the
 * residual stream); dw += sum_rows dout xhat; db += sum_rows dout. */
void eopt_layernorm_backward(eopt_backend *be, int N, int C, const float *dout, const float *xhat, const float *rstd,
                             const float *w, float *dw, float *db, float *dx);

/* ---- causal self-attention of H heads over B sequences of T positions ---- */

/* qkv [B T, 3C]: Q, K, V of head h are columns h hs .. (h+1) hs - 1 of its three C-wide
 * thirds, hs = C / H. P = softmax(mask(Q K^T / sqrt(hs))) into att [B, H, T, T] (kept for
 * the backward), Y = P V into y [B T, C] (heads concatenated). */
void eopt_attention_forward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, float *att, float *y);
/* dP = dY V^T, dV = P^T dY, dS = P (dP - rowsum(dP P)), dQ = dS K / sqrt(hs),
 * dK = dS^T Q / sqrt(hs), into dqkv [B T, 3C]. Scratch: datt [B, H, T, T]. */
void eopt_attention_backward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, const float *att,
                             const float *dy, float *dqkv, float *datt);

/* ---- token + position embedding ---- */

/* x[b, t] = wte[tokens[b, t]] + wpe[t]; x [B T, C] */
void eopt_embedding_forward(eopt_backend *be, int B, int T, int C, const int32_t *tokens, const float *wte,
                            const float *wpe, float *x);
/* dwte[tokens[r]] += dx[r] for every row r: a scatter-add of rows (repeated tokens add up),
 * O(N C) instead of a one-hot [N, V] product; dwpe[t] += sum_b dx[b, t] (ones: B ones).
 * V: rows of dwte. dx is read only (the index interface takes a non-const `part`). */
void eopt_embedding_backward(eopt_backend *be, int B, int T, int C, int V, const int32_t *tokens, float *dx,
                             float *dwte, float *dwpe, const float *ones);

/* ---- softmax cross-entropy ---- */

/* loss_dev (1 float) = mean_r (log sum_j exp(l_rj - max_r) + max_r - l_r,target_r) over the
 * N rows of logits [N, V]. The logits are overwritten in place: by exp(l - max) and, with
 * backward, by their gradient grad_scale / N (softmax - onehot(target)); so the only [N, V]
 * buffer a model needs is its logits. rows: N floats of scratch (the per-row losses). */
void eopt_cross_entropy(eopt_backend *be, int N, int V, float *logits, const int32_t *targets, int backward,
                        float grad_scale, float *rows, float *loss_dev);

#endif
