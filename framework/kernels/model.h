/* Element-wise kernels of the model family (see ew.h for the calling convention): the
 * per-element pieces of the MLP and GPT-2 forward and backward passes (../../models/).
 * Row-major matrices: element i is at row r = i / cols, column c = i % cols. A few kernels
 * run one element per row (n = rows) and loop over that row's columns: each still writes
 * only its own output element, so they are race-free on a GPU. */
#ifndef EOPT_KERNELS_MODEL_H
#define EOPT_KERNELS_MODEL_H

#define EOPT_EW_MODEL(X)                                                                                          \
    X(add_bias) X(bias_gelu) X(gelu_backward) X(sub_row) X(rsqrt_eps) X(ln_affine) X(ln_backward) X(embed)          \
    X(onehot) X(exp_row) X(ce_loss) X(ce_backward) X(causal_mask) X(softmax_backward) X(argmax_hit)

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

/* y = a + b[col]: a bias broadcast over rows (in place allowed) */
EOPT_HD void eopt_ew_add_bias(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] + e->b[eopt_col_of(i, e->cols)]; }
/* y = a + b[col] (the pre-activation, kept for the backward pass), y2 = gelu(y) */
EOPT_HD void eopt_ew_bias_gelu(const eopt_ew *e, int64_t i)
{
    float x = e->a[i] + e->b[eopt_col_of(i, e->cols)];
    e->y[i] = x;
    e->y2[i] = eopt_gelu(x);
}
/* y = a gelu'(b): upstream gradient a, pre-activation b */
EOPT_HD void eopt_ew_gelu_backward(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] * eopt_gelu_grad(e->b[i]); }

/* LayerNorm, forward: xc = x - mean[row]; rstd = 1 / sqrt(var + eps); xhat = xc rstd; out = xhat w + b. */
EOPT_HD void eopt_ew_sub_row(const eopt_ew *e, int64_t i) { e->y[i] = e->a[i] - e->b[eopt_row_of(i, e->cols)]; }
/* y = 1 / sqrt(a + s0) */
EOPT_HD void eopt_ew_rsqrt_eps(const eopt_ew *e, int64_t i) { e->y[i] = 1.0f / sqrtf(e->a[i] + e->s[0]); }
/* y = a b[row] (xhat), y2 = y c[col] + d[col] (the affine output); y may alias a */
EOPT_HD void eopt_ew_ln_affine(const eopt_ew *e, int64_t i)
{
    int64_t c = eopt_col_of(i, e->cols);
    float xhat = e->a[i] * e->b[eopt_row_of(i, e->cols)];
    e->y[i] = xhat;
    e->y2[i] = xhat * e->c[c] + e->d[c];
}
/* LayerNorm, backward into the residual stream (accumulates):
 *   dx += rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dout w
 * a = dxhat, b = xhat, c = rstd[rows], d = the two row means [2, rows]. */
EOPT_HD void eopt_ew_ln_backward(const eopt_ew *e, int64_t i)
{
    int64_t r = eopt_row_of(i, e->cols), rows = eopt_row_of(e->n, e->cols);
    e->y[i] += e->c[r] * (e->a[i] - e->d[r] - e->b[i] * e->d[rows + r]);
}

/* GPT input: y[r, c] = wte[tok[r], c] + wpe[r % T, c]; a = wte, b = wpe, ia = tokens, s0 = T. */
EOPT_HD void eopt_ew_embed(const eopt_ew *e, int64_t i)
{
    int64_t r = eopt_row_of(i, e->cols), c = eopt_col_of(i, e->cols), t = eopt_col_of(r, (int64_t)e->s[0]);
    e->y[i] = e->a[(int64_t)e->ia[r] * e->cols + c] + e->b[t * e->cols + c];
}
/* y[r, j] = (j == ia[r]): the one-hot matrix [N, V] whose transpose, multiplied into the
 * output gradient, accumulates the embedding gradient without atomics */
EOPT_HD void eopt_ew_onehot(const eopt_ew *e, int64_t i)
{
    e->y[i] = (eopt_col_of(i, e->cols) == e->ia[eopt_row_of(i, e->cols)]) ? 1.0f : 0.0f;
}

/* y = exp(a - b[row]): a softmax numerator after subtracting the row maximum */
EOPT_HD void eopt_ew_exp_row(const eopt_ew *e, int64_t i) { e->y[i] = expf(e->a[i] - e->b[eopt_row_of(i, e->cols)]); }
/* One element per row (n = rows): y[r] = log(sum[r]) + max[r] - logits[r, target[r]], the
 * cross-entropy of the row; a = logits (cols = V), b = sum of exp, c = row max, ia = targets. */
EOPT_HD void eopt_ew_ce_loss(const eopt_ew *e, int64_t r)
{
    e->y[r] = logf(e->b[r]) + e->c[r] - e->a[r * e->cols + e->ia[r]];
}
/* d loss / d logits = s0 (softmax - onehot(target)); a = exp(logits - max), b = row sums,
 * s0 = grad_scale / rows (the mean over positions) */
EOPT_HD void eopt_ew_ce_backward(const eopt_ew *e, int64_t i)
{
    int64_t r = eopt_row_of(i, e->cols);
    float hit = (eopt_col_of(i, e->cols) == e->ia[r]) ? 1.0f : 0.0f;
    e->y[i] = e->s[0] * (e->a[i] / e->b[r] - hit);
}

/* Causal mask on square T x T score blocks (cols = T): key j > query t gets -inf. */
EOPT_HD void eopt_ew_causal_mask(const eopt_ew *e, int64_t i)
{
    int64_t j = eopt_col_of(i, e->cols), t = eopt_col_of(eopt_row_of(i, e->cols), e->cols);
    e->y[i] = j > t ? -INFINITY : e->a[i];
}
/* Softmax backward: dS = P (dP - sum_j dP P); a = dP, b = P, c = the row sums of dP P */
EOPT_HD void eopt_ew_softmax_backward(const eopt_ew *e, int64_t i)
{
    e->y[i] = e->b[i] * (e->a[i] - e->c[eopt_row_of(i, e->cols)]);
}

/* One element per row (n = rows): y[r] = 1 if the first maximum of row r of a is at ia[r]. */
EOPT_HD void eopt_ew_argmax_hit(const eopt_ew *e, int64_t r)
{
    const float *row = e->a + r * e->cols;
    int64_t best = 0;
    for (int64_t j = 1; j < e->cols; j++)
        if (row[j] > row[best])
            best = j;
    e->y[r] = best == e->ia[r] ? 1.0f : 0.0f;
}

#endif
