/* Element-wise kernels of the model family (see ew.h for the conventions): the
 * per-element pieces of the MLP and GPT-2 forward and backward passes (../../models/).
 * Row-major matrices: element i is at row r = i / cols, column c = i % cols. A few kernels
 * run one element per row (n = rows) and loop over that row's columns: each still writes
 * only its own output element, so they are race-free on a GPU. */
#ifndef EOPT_KERNELS_MODEL_H
#define EOPT_KERNELS_MODEL_H

#define EOPT_EW_MODEL(X)                                                                                          \
    X(add_bias) X(bias_gelu) X(gelu_backward) X(sub_row) X(rsqrt_eps) X(ln_affine) X(ln_backward) X(embed)          \
    X(exp_row) X(ce_target) X(ce_loss) X(ce_backward) X(causal_mask) X(softmax_backward) X(argmax_hit)

/* Row r = i / cols and column i % cols of element i, in 32-bit arithmetic whenever both fit:
 * a 64-bit division costs several times more on a CPU and is emulated on a GPU. */
EOPT_HD int64_t eopt_row_of(int64_t i, int64_t cols)
{
    return (i | cols) >> 32 ? i / cols : (int64_t)((uint32_t)i / (uint32_t)cols);
}
EOPT_HD int64_t eopt_col_of(int64_t i, int64_t cols)
{
    return (i | cols) >> 32 ? i % cols : (int64_t)((uint32_t)i % (uint32_t)cols);
}

/* GPT-2's GELU, tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), computed
 * as x sigmoid(2 u) (the same function, since 0.5 (1 + tanh(u)) = sigmoid(2 u)): one expf is
 * several times cheaper than tanhf. */
#define EOPT_GELU_K 0.7978845608028654f

EOPT_HD float eopt_gelu(float x)
{
    return x / (1.0f + expf(-2.0f * EOPT_GELU_K * (x + 0.044715f * x * x * x)));
}

/* d gelu / dx = s + 2 x s (1 - s) k (1 + 3 * 0.044715 x^2), s = sigmoid(2 u) */
EOPT_HD float eopt_gelu_grad(float x)
{
    float s = 1.0f / (1.0f + expf(-2.0f * EOPT_GELU_K * (x + 0.044715f * x * x * x)));
    return s + 2.0f * x * s * (1.0f - s) * EOPT_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

/* y = a + bias[col]: a bias broadcast over rows (in place allowed) */
typedef struct {
    float *y;
    const float *a, *bias;
    int64_t cols;
} eopt_ew_add_bias_args;
EOPT_HD void eopt_ew_add_bias(const eopt_ew_add_bias_args *k, int64_t i)
{
    k->y[i] = k->a[i] + k->bias[eopt_col_of(i, k->cols)];
}

/* pre = a + bias[col] (the pre-activation, kept for the backward pass), act = gelu(pre) */
typedef struct {
    float *pre, *act;
    const float *a, *bias;
    int64_t cols;
} eopt_ew_bias_gelu_args;
EOPT_HD void eopt_ew_bias_gelu(const eopt_ew_bias_gelu_args *k, int64_t i)
{
    float x = k->a[i] + k->bias[eopt_col_of(i, k->cols)];
    k->pre[i] = x;
    k->act[i] = eopt_gelu(x);
}

/* dx = dout gelu'(pre) (dx may alias dout) */
typedef struct {
    float *dx;
    const float *dout, *pre;
} eopt_ew_gelu_backward_args;
EOPT_HD void eopt_ew_gelu_backward(const eopt_ew_gelu_backward_args *k, int64_t i)
{
    k->dx[i] = k->dout[i] * eopt_gelu_grad(k->pre[i]);
}

/* LayerNorm, forward: xc = x - mean[row]; rstd = 1 / sqrt(var + eps); xhat = xc rstd; out = xhat w + b. */
typedef struct {
    float *y;
    const float *a, *row; /* y = a - row[r] */
    int64_t cols;
} eopt_ew_sub_row_args;
EOPT_HD void eopt_ew_sub_row(const eopt_ew_sub_row_args *k, int64_t i)
{
    k->y[i] = k->a[i] - k->row[eopt_row_of(i, k->cols)];
}

/* y = 1 / sqrt(a + eps) */
typedef struct {
    float *y;
    const float *a;
    float eps;
} eopt_ew_rsqrt_eps_args;
EOPT_HD void eopt_ew_rsqrt_eps(const eopt_ew_rsqrt_eps_args *k, int64_t i) { k->y[i] = 1.0f / sqrtf(k->a[i] + k->eps); }

/* xhat = xc rstd[row], out = xhat weight[col] + bias[col] (the affine output); xhat may alias xc */
typedef struct {
    float *xhat, *out;
    const float *xc, *rstd, *weight, *bias;
    int64_t cols;
} eopt_ew_ln_affine_args;
EOPT_HD void eopt_ew_ln_affine(const eopt_ew_ln_affine_args *k, int64_t i)
{
    int64_t c = eopt_col_of(i, k->cols);
    float xhat = k->xc[i] * k->rstd[eopt_row_of(i, k->cols)];
    k->xhat[i] = xhat;
    k->out[i] = xhat * k->weight[c] + k->bias[c];
}

/* LayerNorm, backward into the residual stream (accumulates):
 *   dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dout w,  means per row */
typedef struct {
    float *dx;
    const float *dxhat, *xhat, *rstd, *mean_dxhat, *mean_dxhat_xhat;
    int64_t cols;
} eopt_ew_ln_backward_args;
EOPT_HD void eopt_ew_ln_backward(const eopt_ew_ln_backward_args *k, int64_t i)
{
    int64_t r = eopt_row_of(i, k->cols);
    k->dx[i] += k->rstd[r] * (k->dxhat[i] - k->mean_dxhat[r] - k->xhat[i] * k->mean_dxhat_xhat[r]);
}

/* GPT input: x[r, c] = wte[tokens[r], c] + wpe[r % seq_len, c] */
typedef struct {
    float *x;
    const float *wte, *wpe;
    const int32_t *tokens;
    int64_t seq_len, cols;
} eopt_ew_embed_args;
EOPT_HD void eopt_ew_embed(const eopt_ew_embed_args *k, int64_t i)
{
    int64_t r = eopt_row_of(i, k->cols), c = eopt_col_of(i, k->cols), t = eopt_col_of(r, k->seq_len);
    k->x[i] = k->wte[(int64_t)k->tokens[r] * k->cols + c] + k->wpe[t * k->cols + c];
}

/* y = exp(a - max[row]): a softmax numerator after subtracting the row maximum */
typedef struct {
    float *y;
    const float *a, *max;
    int64_t cols;
} eopt_ew_exp_row_args;
EOPT_HD void eopt_ew_exp_row(const eopt_ew_exp_row_args *k, int64_t i)
{
    k->y[i] = expf(k->a[i] - k->max[eopt_row_of(i, k->cols)]);
}

/* One element per row (n = rows): target[r] = logits[r, targets[r]], read before the
 * cross-entropy overwrites the logits with their exponentials (cols = V). */
typedef struct {
    float *target;
    const float *logits;
    const int32_t *targets;
    int64_t cols;
} eopt_ew_ce_target_args;
EOPT_HD void eopt_ew_ce_target(const eopt_ew_ce_target_args *k, int64_t r)
{
    k->target[r] = k->logits[r * k->cols + k->targets[r]];
}

/* loss = log(sum) + max - target per row, the cross-entropy of the row (sum = the row sums
 * of exp(logits - max), target = the target's logit); loss may alias target */
typedef struct {
    float *loss;
    const float *sum, *max, *target;
} eopt_ew_ce_loss_args;
EOPT_HD void eopt_ew_ce_loss(const eopt_ew_ce_loss_args *k, int64_t r)
{
    k->loss[r] = logf(k->sum[r]) + k->max[r] - k->target[r];
}

/* d loss / d logits = scale (softmax - onehot(target)), softmax = exps / sum[row],
 * scale = grad_scale / rows (the mean over positions); dlogits may alias exps */
typedef struct {
    float *dlogits;
    const float *exps, *sum;
    const int32_t *targets;
    float scale;
    int64_t cols;
} eopt_ew_ce_backward_args;
EOPT_HD void eopt_ew_ce_backward(const eopt_ew_ce_backward_args *k, int64_t i)
{
    int64_t r = eopt_row_of(i, k->cols);
    float hit = (eopt_col_of(i, k->cols) == k->targets[r]) ? 1.0f : 0.0f;
    k->dlogits[i] = k->scale * (k->exps[i] / k->sum[r] - hit);
}

/* Causal mask on square T x T score blocks (cols = T): key j > query t gets -inf. */
typedef struct {
    float *y;
    const float *a;
    int64_t cols;
} eopt_ew_causal_mask_args;
EOPT_HD void eopt_ew_causal_mask(const eopt_ew_causal_mask_args *k, int64_t i)
{
    int64_t j = eopt_col_of(i, k->cols), t = eopt_col_of(eopt_row_of(i, k->cols), k->cols);
    k->y[i] = j > t ? -INFINITY : k->a[i];
}

/* Softmax backward: dS = P (dP - sum_j dP P), the sums per row */
typedef struct {
    float *dscores;
    const float *dprobs, *probs, *row_dot;
    int64_t cols;
} eopt_ew_softmax_backward_args;
EOPT_HD void eopt_ew_softmax_backward(const eopt_ew_softmax_backward_args *k, int64_t i)
{
    k->dscores[i] = k->probs[i] * (k->dprobs[i] - k->row_dot[eopt_row_of(i, k->cols)]);
}

/* One element per row (n = rows): hit[r] = 1 if the first maximum of row r of logits is at labels[r]. */
typedef struct {
    float *hit;
    const float *logits;
    const int32_t *labels;
    int64_t cols;
} eopt_ew_argmax_hit_args;
EOPT_HD void eopt_ew_argmax_hit(const eopt_ew_argmax_hit_args *k, int64_t r)
{
    const float *row = k->logits + r * k->cols;
    int64_t best = 0;
    for (int64_t j = 1; j < k->cols; j++)
        if (row[j] > row[best])
            best = j;
    k->hit[r] = best == k->labels[r] ? 1.0f : 0.0f;
}

#endif
