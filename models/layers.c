/* The layers of ../shared/spec/models.md on the backend interface (see layers.h). */
#include <math.h>

#include "layers.h"

#define LN_EPS 1e-5f

void eopt_linear_forward(eopt_backend *be, int N, int in, int out, const float *x, const float *W, const float *b,
                         float beta, float *y)
{
    be->gemm(be, EOPT_PREC_FP32, 0, 1, N, out, in, 1.0f, x, in, 0, W, in, 0, beta, y, out, 0, 1);
    if (b)
        eopt_ew_run(be, EOPT_EW(add_bias, (int64_t)N * out, .y = y, .a = y, .bias = b, .cols = out));
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

void eopt_gelu_forward(eopt_backend *be, int N, int cols, const float *x, const float *b, float *pre, float *act)
{
    eopt_ew_run(be, EOPT_EW(bias_gelu, (int64_t)N * cols, .pre = pre, .act = act, .a = x, .bias = b, .cols = cols));
}

void eopt_gelu_backward(eopt_backend *be, int64_t n, const float *dact, const float *pre, float *dx)
{
    eopt_ew_run(be, EOPT_EW(gelu_backward, n, .dx = dx, .dout = dact, .pre = pre));
}

void eopt_layernorm_forward(eopt_backend *be, int N, int C, const float *x, const float *w, const float *b,
                            float *xhat, float *rstd, float *out, float *mean)
{
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ROWS, N, C, x, NULL, C, 1.0f / (float)C, mean);
    eopt_ew_run(be, EOPT_EW(sub_row, (int64_t)N * C, .y = xhat, .a = x, .row = mean, .cols = C));
    be->reduce(be, EOPT_RED_SUMSQ, EOPT_AXIS_ROWS, N, C, xhat, NULL, C, 1.0f / (float)C, rstd);
    eopt_ew_run(be, EOPT_EW(rsqrt_eps, N, .y = rstd, .a = rstd, .eps = LN_EPS));
    eopt_ew_run(be, EOPT_EW(ln_affine, (int64_t)N * C, .xhat = xhat, .out = out, .xc = xhat, .rstd = rstd, .weight = w,
                            .bias = b, .cols = C));
}

void eopt_layernorm_backward(eopt_backend *be, int N, int C, const float *dout, const float *xhat, const float *rstd,
                             const float *w, float *dw, float *db, float *dx, float *dxhat, float *means,
                             float *colbuf, const float *ones)
{
    eopt_ew_run(be, EOPT_EW(mul_col, (int64_t)N * C, .y = dxhat, .a = dout, .b = w, .cols = C));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ROWS, N, C, dxhat, NULL, C, 1.0f / (float)C, means);
    be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_ROWS, N, C, dxhat, xhat, C, 1.0f / (float)C, means + N);
    eopt_ew_run(be, EOPT_EW(ln_backward, (int64_t)N * C, .dx = dx, .dxhat = dxhat, .xhat = xhat, .rstd = rstd,
                            .mean_dxhat = means, .mean_dxhat_xhat = means + N, .cols = C));
    be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_COLS, N, C, dout, xhat, C, 1.0f, colbuf);
    eopt_axpby(be, C, 1.0f, dw, 1.0f, colbuf, dw);
    be->gemm(be, EOPT_PREC_FP32, 0, 0, 1, C, N, 1.0f, ones, N, 0, dout, C, 0, 1.0f, db, C, 0, 1);
}

/* One strided-batched product per sequence covers all H heads: head h's Q, K, V start at
 * column h hs of their thirds (stride hs), its T x T block at h T T. */
void eopt_attention_forward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, float *att, float *y,
                            float *rows)
{
    const int hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)T * T, nrows = (int64_t)B * H * T;
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (int64_t)b * T * 3 * C;
        be->gemm(be, EOPT_PREC_FP32, 0, 1, T, T, hs, scale, q, 3 * C, hs, q + C, 3 * C, hs, 0.0f, att + b * H * TT,
                 T, TT, H);
    }
    eopt_ew_run(be, EOPT_EW(causal_mask, nrows * T, .y = att, .a = att, .cols = T));
    be->reduce(be, EOPT_RED_MAX, EOPT_AXIS_ROWS, (int)nrows, T, att, NULL, T, 1.0f, rows);
    eopt_ew_run(be, EOPT_EW(exp_row, nrows * T, .y = att, .a = att, .max = rows, .cols = T));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ROWS, (int)nrows, T, att, NULL, T, 1.0f, rows);
    eopt_ew_run(be, EOPT_EW(div_row, nrows * T, .y = att, .a = att, .b = rows, .cols = T));
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (int64_t)b * T * 3 * C + 2 * C;
        be->gemm(be, EOPT_PREC_FP32, 0, 0, T, hs, T, 1.0f, att + b * H * TT, T, TT, v, 3 * C, hs, 0.0f,
                 y + (int64_t)b * T * C, C, hs, H);
    }
}

void eopt_attention_backward(eopt_backend *be, int B, int T, int C, int H, const float *qkv, const float *att,
                             const float *dy, float *dqkv, float *datt, float *rows)
{
    const int hs = C / H;
    const float scale = 1.0f / sqrtf((float)hs);
    const int64_t TT = (int64_t)T * T, nrows = (int64_t)B * H * T;
    for (int b = 0; b < B; b++) {
        const float *v = qkv + (int64_t)b * T * 3 * C + 2 * C, *dyb = dy + (int64_t)b * T * C;
        be->gemm(be, EOPT_PREC_FP32, 0, 1, T, T, hs, 1.0f, dyb, C, hs, v, 3 * C, hs, 0.0f, datt + b * H * TT, T, TT,
                 H);
        be->gemm(be, EOPT_PREC_FP32, 1, 0, T, hs, T, 1.0f, att + b * H * TT, T, TT, dyb, C, hs, 0.0f,
                 dqkv + (int64_t)b * T * 3 * C + 2 * C, 3 * C, hs, H);
    }
    be->reduce(be, EOPT_RED_DOT, EOPT_AXIS_ROWS, (int)nrows, T, datt, att, T, 1.0f, rows);
    eopt_ew_run(be, EOPT_EW(softmax_backward, nrows * T, .dscores = datt, .dprobs = datt, .probs = att,
                            .row_dot = rows, .cols = T));
    for (int b = 0; b < B; b++) {
        const float *q = qkv + (int64_t)b * T * 3 * C, *ds = datt + b * H * TT;
        float *dq = dqkv + (int64_t)b * T * 3 * C;
        be->gemm(be, EOPT_PREC_FP32, 0, 0, T, hs, T, scale, ds, T, TT, q + C, 3 * C, hs, 0.0f, dq, 3 * C, hs, H);
        be->gemm(be, EOPT_PREC_FP32, 1, 0, T, hs, T, scale, ds, T, TT, q, 3 * C, hs, 0.0f, dq + C, 3 * C, hs, H);
    }
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

/* The log-sum-exp is shifted by the row maximum so that no exp overflows; the target logit
 * is read before the logits are overwritten by their exponentials. */
void eopt_cross_entropy(eopt_backend *be, int N, int V, float *logits, const int32_t *targets, int backward,
                        float grad_scale, float *rows, float *loss_dev)
{
    float *mx = rows, *sum = rows + N, *row_loss = rows + 2 * N;
    be->reduce(be, EOPT_RED_MAX, EOPT_AXIS_ROWS, N, V, logits, NULL, V, 1.0f, mx);
    eopt_ew_run(be, EOPT_EW(ce_target, N, .target = row_loss, .logits = logits, .targets = targets, .cols = V));
    eopt_ew_run(be, EOPT_EW(exp_row, (int64_t)N * V, .y = logits, .a = logits, .max = mx, .cols = V));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ROWS, N, V, logits, NULL, V, 1.0f, sum);
    eopt_ew_run(be, EOPT_EW(ce_loss, N, .loss = row_loss, .sum = sum, .max = mx, .target = row_loss));
    be->reduce(be, EOPT_RED_SUM, EOPT_AXIS_ALL, 1, N, row_loss, NULL, N, 1.0f / (float)N, loss_dev);
    if (backward)
        eopt_ew_run(be, EOPT_EW(ce_backward, (int64_t)N * V, .dlogits = logits, .exps = logits, .sum = sum,
                                .targets = targets, .scale = grad_scale / (float)N, .cols = V));
}
