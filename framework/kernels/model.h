/* Element-wise kernels of the model family (see ew.h for the conventions): the
 * per-element pieces of the MLP and GPT-2 forward and backward passes (../../models/).
 * Row-major matrices: element i is at row r = i / cols, column c = i % cols. Row kernels run
 * one index per row (n = rows, launched with EOPT_EW_ROWS) and loop over that row's columns,
 * fusing a row's reductions with its element-wise math: each writes only its own row (or
 * column, for ln_param_grad), so they are race-free on a GPU. */
#ifndef EOPT_KERNELS_MODEL_H
#define EOPT_KERNELS_MODEL_H

#define EOPT_EW_MODEL(X)                                                                                          \
    X(gelu) X(ln_forward) X(ln_backward) X(ln_param_grad) X(embed) X(cross_entropy)                               \
    X(softmax_causal) X(softmax_causal_backward) X(causal_row_max) X(argmax_hit)

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
/* d gelu / dx = s + 2 x s (1 - s) k (1 + 3 * 0.044715 x^2), s = sigmoid(2 u), from x and s */
EOPT_HD float eopt_gelu_grad(float x, float s)
{
    return s + 2.0f * x * s * (1.0f - s) * EOPT_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

/* act = gelu(a) and grad = gelu'(a), kept for the backward (which is then one product,
 * dx = dact grad): the sigmoid is computed once for both. grad may alias a. (The bias was
 * added by the product before it: eopt_linear_forward.) */
typedef struct {
    float *grad, *act;
    const float *a;
} eopt_ew_gelu_args;
EOPT_HD void eopt_ew_gelu(const eopt_ew_gelu_args *k, int64_t i)
{
    float x = k->a[i];
    float e = 1.0f + expf(-2.0f * EOPT_GELU_K * (x + 0.044715f * x * x * x));
    k->act[i] = x / e;
    k->grad[i] = eopt_gelu_grad(x, 1.0f / e);
}

/* LayerNorm, one row per element (n = rows, run with EOPT_EW_ROWS), eps and biased variance:
 *   mean = sum_c x / C, var = sum_c (x - mean)^2 / C, rstd = 1 / sqrt(var + eps),
 *   xhat = (x - mean) rstd (kept for the backward), out = xhat weight + bias.
 * One pass per statistic over the row in place of one launch per statistic; sums in double. */
typedef struct {
    float *xhat, *rstd, *out;
    const float *x, *weight, *bias;
    float eps;
    int64_t cols;
} eopt_ew_ln_forward_args;
EOPT_HD void eopt_ew_ln_forward(const eopt_ew_ln_forward_args *k, int64_t r)
{
    const int64_t C = k->cols;
    const float *x = k->x + r * C;
    float *xhat = k->xhat + r * C, *out = k->out + r * C;
    double sum = 0, sumsq = 0;
    for (int64_t c = 0; c < C; c++)
        sum += x[c];
    const float mean = (float)(sum / (double)C);
    for (int64_t c = 0; c < C; c++) {
        float xc = x[c] - mean;
        xhat[c] = xc;
        sumsq += (double)xc * xc;
    }
    const float rstd = 1.0f / sqrtf((float)(sumsq / (double)C) + k->eps);
    k->rstd[r] = rstd;
    for (int64_t c = 0; c < C; c++) {
        xhat[c] *= rstd;
        out[c] = xhat[c] * k->weight[c] + k->bias[c];
    }
}

/* LayerNorm, backward into the residual stream (ACCUMULATES), one row per element:
 *   dxhat = dout w,  dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) */
typedef struct {
    float *dx;
    const float *dout, *xhat, *rstd, *weight;
    int64_t cols;
} eopt_ew_ln_backward_args;
EOPT_HD void eopt_ew_ln_backward(const eopt_ew_ln_backward_args *k, int64_t r)
{
    const int64_t C = k->cols;
    const float *dout = k->dout + r * C, *xhat = k->xhat + r * C, *w = k->weight;
    float *dx = k->dx + r * C;
    double s1 = 0, s2 = 0;
    for (int64_t c = 0; c < C; c++) {
        float dxhat = dout[c] * w[c];
        s1 += dxhat;
        s2 += (double)dxhat * xhat[c];
    }
    const float m1 = (float)(s1 / (double)C), m2 = (float)(s2 / (double)C), rstd = k->rstd[r];
    for (int64_t c = 0; c < C; c++)
        dx[c] += rstd * (dout[c] * w[c] - m1 - xhat[c] * m2);
}

/* LayerNorm's parameter gradients, one COLUMN per element (n = cols, run with EOPT_EW_ROWS
 * and row length `rows`): dweight[c] += sum_r dout xhat, dbias[c] += sum_r dout (ACCUMULATE). */
typedef struct {
    float *dweight, *dbias;
    const float *dout, *xhat;
    int64_t rows, cols;
} eopt_ew_ln_param_grad_args;
EOPT_HD void eopt_ew_ln_param_grad(const eopt_ew_ln_param_grad_args *k, int64_t c)
{
    double dw = 0, db = 0;
    for (int64_t r = 0; r < k->rows; r++) {
        float d = k->dout[r * k->cols + c];
        dw += (double)d * k->xhat[r * k->cols + c];
        db += d;
    }
    k->dweight[c] += (float)dw;
    k->dbias[c] += (float)db;
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

/* Softmax cross-entropy of one row of logits (n = rows, run with EOPT_EW_ROWS; cols = V):
 *   loss[r] = log sum_j exp(l_j - max) + max - l_target   (shifted: no exp overflows)
 * and the logits overwritten in place by exp(l_j - max) or, with backward, by their gradient
 *   scale (softmax_j - [j = target])   (scale = grad_scale / rows: the mean over rows).
 * The target logit is read before the row is overwritten; the sum is in double. */
typedef struct {
    float *logits, *loss;
    const int32_t *targets;
    float scale;
    int backward;
    int64_t cols;
} eopt_ew_cross_entropy_args;
EOPT_HD void eopt_ew_cross_entropy(const eopt_ew_cross_entropy_args *k, int64_t r)
{
    const int64_t V = k->cols, target = k->targets[r];
    float *l = k->logits + r * V;
    float mx = l[0];
    for (int64_t j = 1; j < V; j++)
        mx = (l[j] > mx || l[j] != l[j]) ? l[j] : mx; /* NaN propagates */
    const float lt = l[target];
    double sum = 0;
    for (int64_t j = 0; j < V; j++) {
        l[j] = expf(l[j] - mx);
        sum += l[j];
    }
    k->loss[r] = logf((float)sum) + mx - lt;
    if (!k->backward)
        return;
    const float inv = 1.0f / (float)sum;
    for (int64_t j = 0; j < V; j++)
        l[j] = k->scale * (l[j] * inv - (j == target ? 1.0f : 0.0f));
}

/* Causal softmax of one row of a T x T score block (n = B H T rows, run with EOPT_EW_ROWS;
 * cols = T): query t = r % T sees keys j <= t, p_j = exp(s_j - max) / sum, and p_j = 0 for j > t
 * (the mask, never exponentiated). probs may alias scores. */
typedef struct {
    float *probs;
    const float *scores;
    int64_t cols;
} eopt_ew_softmax_causal_args;
EOPT_HD void eopt_ew_softmax_causal(const eopt_ew_softmax_causal_args *k, int64_t r)
{
    const int64_t T = k->cols, t = eopt_col_of(r, T);
    const float *s = k->scores + r * T;
    float *p = k->probs + r * T;
    float mx = s[0];
    for (int64_t j = 1; j <= t; j++)
        mx = (s[j] > mx || s[j] != s[j]) ? s[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j <= t; j++) {
        p[j] = expf(s[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / (float)sum;
    for (int64_t j = 0; j <= t; j++)
        p[j] *= inv;
    for (int64_t j = t + 1; j < T; j++)
        p[j] = 0.0f;
}

/* Its backward, one row per element: dS = P (dP - sum_j dP_j P_j) on j <= t, 0 above
 * (dscores may alias dprobs). */
typedef struct {
    float *dscores;
    const float *dprobs, *probs;
    int64_t cols;
} eopt_ew_softmax_causal_backward_args;
EOPT_HD void eopt_ew_softmax_causal_backward(const eopt_ew_softmax_causal_backward_args *k, int64_t r)
{
    const int64_t T = k->cols, t = eopt_col_of(r, T);
    const float *dp = k->dprobs + r * T, *p = k->probs + r * T;
    float *ds = k->dscores + r * T;
    double dot = 0;
    for (int64_t j = 0; j <= t; j++)
        dot += (double)dp[j] * p[j];
    const float d = (float)dot;
    for (int64_t j = 0; j <= t; j++)
        ds[j] = p[j] * (dp[j] - d);
    for (int64_t j = t + 1; j < T; j++)
        ds[j] = 0.0f;
}

/* The largest causal score of one row of a T x T score block (n = B H T rows, EOPT_EW_ROWS;
 * cols = T): max_{j <= t} s_j, t = r % T, written over s_0 (each row writes only its own first
 * element; the caller then reduces the rows' first elements). NaN propagates. */
typedef struct {
    float *scores;
    int64_t cols;
} eopt_ew_causal_row_max_args;
EOPT_HD void eopt_ew_causal_row_max(const eopt_ew_causal_row_max_args *k, int64_t r)
{
    const int64_t T = k->cols, t = eopt_col_of(r, T);
    float *s = k->scores + r * T;
    float mx = s[0];
    for (int64_t j = 1; j <= t; j++)
        mx = (s[j] > mx || s[j] != s[j]) ? s[j] : mx;
    s[0] = mx;
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
