/* The layers of ../shared/spec/models.md on the backend interface (see layers.h). */
#include <math.h>

#include "layers.h"

#define LN_EPS 1e-5f

/* The bias first, as the rank-1 product y = beta y + 1 b, then the product accumulates into it:
 * no element-wise pass has to find each element's column by a division, so the GELU after the
 * fully connected layer is a plain element-wise pass, which the CPU vectorises (expf included). */
void eopt_linear_forward(eopt_backend *be, int N, int in, int out, const float *x, const float *W, const float *b,
                         const float *ones, float beta, float *y)
{
    if (b) {
        be->gemm(be, EOPT_PREC_FP32, 0, 0, N, out, 1, 1.0f, ones, 1, 0, b, out, 0, beta, y, out, 0, 1);
        beta = 1.0f;
    }
    be->gemm(be, EOPT_PREC_FP32, 0, 1, N, out, in, 1.0f, x, in, 0, W, in, 0, beta, y, out, 0, 1);
}

void eopt_linear_backward(eopt_backend *be, int N, int in, int out, const float *dy, const float *x, const float *W,
                          float *dW, float *db, const float *ones, float *dx)
{
    be->gemm(be, EOPT_PREC_FP32, 1, 0, out, in, N, 1.0f, dy, out, 0, x, in, 0, 1.0f, dW, in, 0, 1);
    if (db) /* the column sums of dy, as a 1 x N by N x out product */
        be->gemm(be, EOPT_PREC_FP32, 0, 0, 1, out, N, 1.0f, ones, N, 0, dy, out, 0, 1.0f, db, out, 0, 1);
    if (dx)
        be->gemm(be, EOPT_PREC_FP32, 0, 0, N, in, out, 1.0f, dy, out, 0, W, in, 0, 0.0f, dx, in, 0, 1);
}

void eopt_gelu_forward(eopt_backend *be, int64_t n, const float *x, float *grad, float *act)
{
    eopt_ew_run(be, EOPT_EW(gelu, n, .grad = grad, .act = act, .a = x));
}

void eopt_gelu_backward(eopt_backend *be, int64_t n, const float *dact, const float *grad, float *dx)
{
    eopt_ew_run(be, EOPT_EW(mul, n, .y = dx, .a = dact, .b = grad));
}

void eopt_layernorm_forward(eopt_backend *be, int N, int C, const float *x, const float *w, const float *b,
                            float *xhat, float *rstd, float *out)
{
    eopt_ew_run(be, EOPT_EW_ROWS(ln_forward, N, C, .xhat = xhat, .rstd = rstd, .out = out, .x = x, .weight = w,
                                 .bias = b, .eps = LN_EPS, .cols = C));
}

void eopt_layernorm_backward(eopt_backend *be, int N, int C, const float *dout, const float *xhat, const float *rstd,
                             const float *w, float *dw, float *db, float *dx)
{
    eopt_ew_run(be, EOPT_EW_ROWS(ln_backward, N, C, .dx = dx, .dout = dout, .xhat = xhat, .rstd = rstd, .weight = w,
                                 .cols = C));
    eopt_ew_run(be, EOPT_EW_ROWS(ln_param_grad, C, N, .dweight = dw, .dbias = db, .dout = dout, .xhat = xhat,
                                 .rows = N, .cols = C));
}

/* Every product is one call over the B x H grid of (sequence, head) pairs: head h of sequence b
 * has its Q, K, V at row b T, column h hs of their thirds of qkv (strides T 3C and hs), its
 * output at row b T, column h hs of y (strides T C and hs), its T x T block at (b H + h) T T. */
void eopt_attention_forward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, float *att, float *y)
{
    const int hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)T * T, nrows = (int64_t)B * H * T;
    const int64_t s_qkv[2] = {(int64_t)T * 3 * C, hs}, s_att[2] = {H * TT, TT}, s_y[2] = {(int64_t)T * C, hs};
    be->gemm_strided_batched(be, 0, 1, T, T, hs, scale, qkv, 3 * C, s_qkv, qkv + C, 3 * C, s_qkv, 0.0f, att, T, s_att,
                             B, H);
    eopt_ew_run(be, EOPT_EW_ROWS(softmax_causal, nrows, T, .probs = att, .scores = att, .cols = T));
    be->gemm_strided_batched(be, 0, 0, T, hs, T, 1.0f, att, T, s_att, qkv + 2 * C, 3 * C, s_qkv, 0.0f, y, C, s_y, B,
                             H);
}

void eopt_attention_backward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, const float *att,
                             const float *dy, float *dqkv, float *datt)
{
    const int hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)T * T, nrows = (int64_t)B * H * T;
    const int64_t s_qkv[2] = {(int64_t)T * 3 * C, hs}, s_att[2] = {H * TT, TT}, s_y[2] = {(int64_t)T * C, hs};
    be->gemm_strided_batched(be, 0, 1, T, T, hs, 1.0f, dy, C, s_y, qkv + 2 * C, 3 * C, s_qkv, 0.0f, datt, T, s_att, B,
                             H); /* dP = dY V^T */
    be->gemm_strided_batched(be, 1, 0, T, hs, T, 1.0f, att, T, s_att, dy, C, s_y, 0.0f, dqkv + 2 * C, 3 * C, s_qkv, B,
                             H); /* dV = P^T dY */
    eopt_ew_run(be, EOPT_EW_ROWS(softmax_causal_backward, nrows, T, .dscores = datt, .dprobs = datt, .probs = att,
                                 .cols = T));
    be->gemm_strided_batched(be, 0, 0, T, hs, T, scale, datt, T, s_att, qkv + C, 3 * C, s_qkv, 0.0f, dqkv, 3 * C, s_qkv,
                             B, H); /* dQ = dS K / sqrt(hs) */
    be->gemm_strided_batched(be, 1, 0, T, hs, T, scale, datt, T, s_att, qkv, 3 * C, s_qkv, 0.0f, dqkv + C, 3 * C,
                             s_qkv, B, H); /* dK = dS^T Q / sqrt(hs) */
}

void eopt_embedding_forward(eopt_backend *be, int B, int T, int C, const int32_t *tokens, const float *wte,
                            const float *wpe, float *x)
{
    eopt_ew_run(be, EOPT_EW(embed, (int64_t)B * T * C, .x = x, .wte = wte, .wpe = wpe, .tokens = tokens, .seq_len = T,
                            .cols = C));
}

void eopt_embedding_backward(eopt_backend *be, int B, int T, int C, int V, const int32_t *tokens, float *dx,
                             float *dwte, float *dwpe, const float *ones)
{
    be->index(be, EOPT_INDEX_SCATTER_ADD, EOPT_AXIS_ROWS, V, C, tokens, B * T, dwte, dx, 1.0f);
    /* the column sums of dx viewed as B rows of T C: a 1 x B by B x T C product */
    be->gemm(be, EOPT_PREC_FP32, 0, 0, 1, T * C, B, 1.0f, ones, B, 0, dx, T * C, 0, 1.0f, dwpe, T * C, 0, 1);
}

/* One row kernel computes each row's loss (and overwrites its logits), then the mean. */
void eopt_cross_entropy(eopt_backend *be, int N, int V, float *logits, const int32_t *targets, int backward,
                        float grad_scale, float *rows, float *loss_dev)
{
    eopt_ew_run(be, EOPT_EW_ROWS(cross_entropy, N, V, .logits = logits, .loss = rows, .targets = targets,
                                 .scale = grad_scale / (float)N, .backward = backward, .cols = V));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, 1, N, rows, NULL, N, 1.0f / (float)N, loss_dev);
}
