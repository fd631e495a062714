/* The trainer's models and data: PyTorch reference files, finite-difference gradients, the
 * tied embedding, initialisation, sampling, and the data sources and sampler. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eopt.h"
#include "train/data.h"
#include "models/layers.h"
#include "models/model.h"
#include "tests/testutil.h"

/* The backend EOPT_DEVICE names: the model math (reference, gradients) runs on it. */
static eopt_backend *open_device(void) { return tu_backend(2); }

/* The CPU, for the tests that read parameters in place (host memory). */
static eopt_backend *open_cpu(void)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open("cpu", 2, &be), EOPT_OK, "%s", eopt_last_error());
    return be;
}

static void check_reference(const char *name)
{
    char path[1024];
    tu_fixture(path, sizeof path, "models/%s", name);
    eopt_backend *be = open_device();
    eopt_verify_result r;
    cr_assert_eq(eopt_verify_model(path, be, &r), EOPT_OK, "%s", eopt_last_error());
    cr_expect_leq(r.loss_rel_err, 1e-5, "%s: loss %.8g vs %.8g", name, r.loss, r.loss_ref);
    cr_expect_leq(r.grad_rel_err, 1e-4, "%s: gradient of %s off by %.3g", name, r.worst, r.grad_rel_err);
    cr_expect_leq(r.logits_rel_err, 1e-4, "%s: logits off by %.3g", name, r.logits_rel_err);
    cr_expect(r.ok);
    eopt_backend_close(be);
}

Test(models_reference, mlp_tiny) { check_reference("mlp_tiny.h5"); }
Test(models_reference, gpt_tiny) { check_reference("gpt_tiny.h5"); }

/* The command prints exactly one verdict line and exits 0 only when ok. */
Test(models_reference, verify_model_command)
{
    const char *bin = getenv("EOPT_BIN");
    cr_assert(bin, "EOPT_BIN is not set");
    char path[1024], cmd[2200], line[512], last[512] = "";
    tu_fixture(path, sizeof path, "models/gpt_tiny.h5");
    snprintf(cmd, sizeof cmd, "'%s' verify-model '%s' --device %s", bin, path, tu_device());
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    while (fgets(line, sizeof line, p))
        snprintf(last, sizeof last, "%s", line);
    cr_expect_eq(pclose(p), 0);
    cr_expect_eq(strncmp(last, "verify-model ok: loss_rel_err=", 30), 0, "last line: %s", last);
    cr_expect(strstr(last, " grad_rel_err="), "last line: %s", last);
    snprintf(cmd, sizeof cmd, "'%s' verify-model /nonexistent.h5 >/dev/null", bin);
    cr_expect_neq(system(cmd), 0);
}

/* ---- small random models ---- */

typedef struct {
    eopt_backend *be;
    eopt_model *m;
    eopt_batch batch;
    void *in_a, *in_b;
} tiny;

static void upload(eopt_backend *be, void **dst, const void *src, size_t bytes)
{
    *dst = be->alloc(be, bytes);
    cr_assert(*dst);
    be->upload(be, *dst, src, bytes);
}

/* Weights normal(0, std) everywhere (LayerNorm weights 1 + noise), so that every gradient is
 * far from zero and the finite differences measure something. */
static void randomize(tiny *t, uint64_t seed, float std)
{
    for (int i = 0; i < t->m->nparams; i++) {
        eopt_tensor *w = t->m->params[i].w;
        t->be->random(t->be, EOPT_RAND_NORMAL, seed, (uint64_t)i << 32, w->numel, eopt_f32(w));
        eopt_scale(t->be, w->numel, std, eopt_f32(w), eopt_f32(w));
        if (strstr(t->m->params[i].name, "ln_") && strstr(t->m->params[i].name, ".weight")) {
            eopt_ew_run(t->be, EOPT_EW(add_scalar, w->numel, .y = eopt_f32(w), .a = eopt_f32(w), .alpha = 1.0f));
        }
    }
}

static tiny tiny_mlp(void)
{
    tiny t = {.be = open_device()};
    eopt_model_config cfg = {.kind = EOPT_MODEL_MLP, .ndims = 4, .dims = {7, 9, 6, 4}};
    enum { B = 5 };
    cr_assert_eq(eopt_model_create(&cfg, t.be, B, 1, &t.m), EOPT_OK, "%s", eopt_last_error());
    float x[B * 7];
    int32_t labels[B] = {0, 3, 1, 2, 3};
    for (int i = 0; i < B * 7; i++)
        x[i] = sinf(0.7f * (float)i + 0.3f);
    upload(t.be, &t.in_a, x, sizeof x);
    upload(t.be, &t.in_b, labels, sizeof labels);
    t.batch = (eopt_batch){.B = B, .T = 1, .x = t.in_a, .labels = t.in_b};
    randomize(&t, 11, 0.6f);
    return t;
}

/* V 13, block 8, C 8, 2 heads, 2 layers; batches of 3 x 6 (shorter than the block); tokens
 * 0..9 only, so rows 10..12 of wte get gradient from the output projection alone. */
static tiny tiny_gpt(void)
{
    tiny t = {.be = open_device()};
    eopt_model_config cfg = {
        .kind = EOPT_MODEL_GPT, .vocab_size = 13, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 8};
    enum { B = 3, T = 6 };
    cr_assert_eq(eopt_model_create(&cfg, t.be, B, 8, &t.m), EOPT_OK, "%s", eopt_last_error());
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (i * 7 + 3) % 10;
        tgt[i] = (i * 5 + 1) % 13;
    }
    upload(t.be, &t.in_a, tok, sizeof tok);
    upload(t.be, &t.in_b, tgt, sizeof tgt);
    t.batch = (eopt_batch){.B = B, .T = T, .tokens = t.in_a, .targets = t.in_b};
    randomize(&t, 12, 0.3f);
    return t;
}

static void tiny_free(tiny *t)
{
    t->be->free(t->be, t->in_a);
    t->be->free(t->be, t->in_b);
    eopt_model_free(t->m);
    eopt_backend_close(t->be);
}

static double loss_at(tiny *t)
{
    float l;
    cr_assert_eq(eopt_model_forward(t->m, &t->batch, 0, 1.0f, &l, NULL), EOPT_OK, "%s", eopt_last_error());
    return l;
}

/* Central difference of the loss in weight j of parameter p. */
static double finite_diff(tiny *t, int p, int64_t j)
{
    const float h = 1e-2f;
    float *w = eopt_f32(t->m->params[p].w) + j, w0, v;
    t->be->download(t->be, &w0, w, 4);
    v = w0 + h;
    t->be->upload(t->be, w, &v, 4);
    double up = loss_at(t);
    v = w0 - h;
    t->be->upload(t->be, w, &v, 4);
    double down = loss_at(t);
    t->be->upload(t->be, w, &w0, 4);
    return (up - down) / (2.0 * h);
}

/* For every parameter, the 3 entries with the largest gradient match finite differences to 1%. */
static void gradient_check(tiny *t)
{
    float loss;
    eopt_model_zero_grad(t->m);
    cr_assert_eq(eopt_model_forward(t->m, &t->batch, 1, 1.0f, &loss, NULL), EOPT_OK);
    int checked = 0;
    for (int p = 0; p < t->m->nparams; p++) {
        eopt_tensor *g = t->m->params[p].grad;
        float *host = malloc((size_t)g->numel * 4);
        cr_assert_eq(eopt_tensor_to_host(g, host, (size_t)g->numel * 4), EOPT_OK);
        for (int k = 0; k < 3 && k < g->numel; k++) {
            int64_t best = 0;
            for (int64_t j = 1; j < g->numel; j++)
                if (fabsf(host[j]) > fabsf(host[best]))
                    best = j;
            double a = host[best], fd = finite_diff(t, p, best);
            host[best] = 0; /* next largest next time */
            cr_expect_gt(fabs(a), 1e-3, "%s[%lld]: gradient %g too small to check", t->m->params[p].name,
                         (long long)best, a);
            cr_expect_leq(fabs(fd - a), 1e-2 * fabs(a), "%s[%lld]: backward %.6g, finite difference %.6g",
                          t->m->params[p].name, (long long)best, a, fd);
            checked++;
        }
        free(host);
    }
    cr_expect_geq(checked, 3 * t->m->nparams - 2);
}

Test(models_grad, mlp_finite_differences)
{
    tiny t = tiny_mlp();
    gradient_check(&t);
    tiny_free(&t);
}

Test(models_grad, gpt_finite_differences)
{
    tiny t = tiny_gpt();
    gradient_check(&t);
    tiny_free(&t);
}

/* lm_head.weight is wte: its gradient is the embedding part (rows of input tokens) plus the
 * output projection part (every row). Row 11 is no input token, row 3 is. */
Test(models_grad, tied_embedding)
{
    tiny t = tiny_gpt();
    int wte = eopt_model_find(t.m, "transformer.wte.weight");
    cr_assert_eq(wte, 0);
    cr_expect_eq(eopt_model_find(t.m, "lm_head.weight"), wte);
    cr_expect_eq(eopt_model_find(t.m, "transformer.h.1.mlp.c_proj.bias"), 2 + 12 + 11);
    cr_expect_eq(eopt_model_find(t.m, "nope"), -1);
    float loss;
    eopt_model_zero_grad(t.m);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 1, 1.0f, &loss, NULL), EOPT_OK);
    const int C = 8;
    float g[13 * 8];
    cr_assert_eq(eopt_tensor_to_host(t.m->params[wte].grad, g, sizeof g), EOPT_OK);
    for (int c = 0; c < C; c += 3) {
        double fd_out = finite_diff(&t, wte, 11 * C + c), fd_both = finite_diff(&t, wte, 3 * C + c);
        cr_expect_leq(fabs(g[11 * C + c] - fd_out), 1e-2 * fabs(fd_out) + 1e-5, "output-only row: %g vs %g",
                      g[11 * C + c], fd_out);
        cr_expect_leq(fabs(g[3 * C + c] - fd_both), 1e-2 * fabs(fd_both) + 1e-5, "input row: %g vs %g",
                      g[3 * C + c], fd_both);
    }
    /* positions 6, 7 of the block are never used */
    float gp[8 * 8];
    cr_assert_eq(eopt_tensor_to_host(t.m->params[1].grad, gp, sizeof gp), EOPT_OK);
    for (int i = 6 * C; i < 8 * C; i++)
        cr_expect_eq(gp[i], 0.0f);
    tiny_free(&t);
}

/* Gradients accumulate, scaled: two passes at 0.5 equal one at 1. */
Test(models_grad, accumulation_and_scale)
{
    tiny t = tiny_gpt();
    float l1, l2;
    eopt_model_zero_grad(t.m);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 1, 1.0f, &l1, NULL), EOPT_OK);
    int n = t.m->nparams;
    float **once = calloc((size_t)n, sizeof *once);
    for (int p = 0; p < n; p++) {
        once[p] = malloc(eopt_tensor_bytes(t.m->params[p].grad));
        eopt_tensor_to_host(t.m->params[p].grad, once[p], eopt_tensor_bytes(t.m->params[p].grad));
    }
    eopt_model_zero_grad(t.m);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 1, 0.5f, &l2, NULL), EOPT_OK);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 1, 0.5f, &l2, NULL), EOPT_OK);
    cr_expect_eq(l1, l2);
    for (int p = 0; p < n; p++) {
        eopt_tensor *g = t.m->params[p].grad;
        float *twice = malloc(eopt_tensor_bytes(g));
        eopt_tensor_to_host(g, twice, eopt_tensor_bytes(g));
        for (int64_t j = 0; j < g->numel; j++)
            cr_expect_leq(fabsf(twice[j] - once[p][j]), 1e-6f * (1.0f + fabsf(once[p][j])), "%s[%lld]",
                          t.m->params[p].name, (long long)j);
        free(twice);
        free(once[p]);
    }
    free(once);
    tiny_free(&t);
}

/* The embedding's backward is a scatter-add of rows: every position of a repeated token adds
 * its row of dx to that token's row of dwte (hand-computed sums), on top of what dwte held;
 * dwpe[t] gets the sum over the batch. On the device EOPT_DEVICE names (CUDA: the index kernel). */
Test(models_grad, embedding_repeated_tokens_add_up)
{
    enum { B = 2, T = 4, C = 3, V = 6, N = B * T };
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(NULL, 2, &be), EOPT_OK, "%s", eopt_last_error());
    const int32_t tok[N] = {2, 5, 2, 2, 0, 2, 5, 2}; /* 2 five times, 5 twice, 0 once; 1, 3, 4 never */
    float dx[N * C], wte0[V * C], wpe0[T * C], ones[B] = {1, 1};
    for (int i = 0; i < N * C; i++)
        dx[i] = (float)(i + 1) * 0.25f;
    for (int i = 0; i < V * C; i++)
        wte0[i] = (float)(100 * i);
    for (int i = 0; i < T * C; i++)
        wpe0[i] = -(float)i;
    void *d_tok, *d_dx, *d_wte, *d_wpe, *d_ones;
    upload(be, &d_tok, tok, sizeof tok);
    upload(be, &d_dx, dx, sizeof dx);
    upload(be, &d_wte, wte0, sizeof wte0);
    upload(be, &d_wpe, wpe0, sizeof wpe0);
    upload(be, &d_ones, ones, sizeof ones);
    eopt_embedding_backward(be, B, T, C, V, d_tok, d_dx, d_wte, d_wpe, d_ones);
    float wte[V * C], wpe[T * C];
    be->download(be, wte, d_wte, sizeof wte);
    be->download(be, wpe, d_wpe, sizeof wpe);
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            double want = wte0[v * C + c];
            for (int r = 0; r < N; r++)
                want += tok[r] == v ? dx[r * C + c] : 0.0;
            cr_expect_eq(wte[v * C + c], (float)want, "dwte[%d, %d]: %g, want %g", v, c, wte[v * C + c], want);
        }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            float want = wpe0[t * C + c] + dx[t * C + c] + dx[(T + t) * C + c];
            cr_expect_eq(wpe[t * C + c], want, "dwpe[%d, %d]", t, c);
        }
    void *bufs[] = {d_tok, d_dx, d_wte, d_wpe, d_ones};
    for (int i = 0; i < 5; i++)
        be->free(be, bufs[i]);
    eopt_backend_close(be);
}

/* The tiny GPT on a batch of one repeated token (every position hits row 4 of the tied wte):
 * its gradient matches finite differences, as does a row no input token hits. */
Test(models_grad, gpt_one_repeated_token)
{
    tiny t = tiny_gpt();
    int32_t tok[3 * 6];
    for (int i = 0; i < 3 * 6; i++)
        tok[i] = 4;
    t.be->upload(t.be, t.in_a, tok, sizeof tok);
    float loss;
    eopt_model_zero_grad(t.m);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 1, 1.0f, &loss, NULL), EOPT_OK);
    const int C = 8;
    float g[13 * 8];
    cr_assert_eq(eopt_tensor_to_host(t.m->params[0].grad, g, sizeof g), EOPT_OK);
    for (int c = 0; c < C; c++)
        for (int row = 4; row <= 5; row++) {
            double fd = finite_diff(&t, 0, row * C + c);
            cr_expect_leq(fabs(g[row * C + c] - fd), 1e-2 * fabs(fd) + 1e-5, "wte[%d, %d]: %g vs %g", row, c,
                          g[row * C + c], fd);
        }
    tiny_free(&t);
}

/* GPT-2's vocabulary: the embedding gradient needs no [N, V] one-hot, and the cross-entropy
 * turns the logits into their own gradient, so the activations hold one [N, V] array (the
 * logits) and less than another N V floats besides. One step runs, with a finite loss. */
Test(models_api, gpt2_vocab_activation_memory)
{
    enum { B = 4, T = 16, V = 50257, N = B * T };
    eopt_backend *be = open_cpu();
    eopt_model *m;
    eopt_model_config cfg = {
        .kind = EOPT_MODEL_GPT, .vocab_size = V, .block_size = T, .n_layer = 1, .n_head = 2, .n_embd = 16};
    cr_assert_eq(eopt_model_create(&cfg, be, B, T, &m), EOPT_OK, "%s", eopt_last_error());
    const int64_t nv = (int64_t)N * V * (int64_t)sizeof(float), bytes = eopt_model_activation_bytes(m);
    cr_expect_gt(bytes, nv, "the logits alone take %lld bytes, got %lld", (long long)nv, (long long)bytes);
    cr_expect_lt(bytes - nv, nv, "activations %lld bytes: besides the logits, another N x V (%lld bytes)",
                 (long long)bytes, (long long)nv);
    cr_assert_eq(eopt_model_init(m, 1), EOPT_OK);
    int32_t tok[N], tgt[N];
    for (int i = 0; i < N; i++)
        tok[i] = (i * 7919) % V, tgt[i] = (i * 104729 + 11) % V;
    void *d_tok, *d_tgt;
    upload(be, &d_tok, tok, sizeof tok);
    upload(be, &d_tgt, tgt, sizeof tgt);
    eopt_batch b = {.B = B, .T = T, .tokens = d_tok, .targets = d_tgt};
    float loss;
    eopt_model_zero_grad(m);
    cr_assert_eq(eopt_model_forward(m, &b, 1, 1.0f, &loss, NULL), EOPT_OK);
    cr_expect(fabsf(loss - logf((float)V)) < 0.1f, "loss %g, ln V %g at initialisation", loss, logf((float)V));
    be->free(be, d_tok);
    be->free(be, d_tgt);
    eopt_model_free(m);
    eopt_backend_close(be);
}

Test(models_api, bad_arguments)
{
    eopt_backend *be = open_cpu();
    eopt_model *m = NULL;
    eopt_model_config cfg = {
        .kind = EOPT_MODEL_GPT, .vocab_size = 16, .block_size = 8, .n_layer = 1, .n_head = 3, .n_embd = 8};
    cr_expect_eq(eopt_model_create(&cfg, be, 2, 8, &m), EOPT_ERR_ARG);
    cr_expect(strstr(eopt_last_error(), "n_head"), "%s", eopt_last_error());
    cfg.n_head = 2;
    cr_expect_eq(eopt_model_create(&cfg, be, 2, 9, &m), EOPT_ERR_ARG);
    cr_assert_eq(eopt_model_create(&cfg, be, 2, 8, &m), EOPT_OK);
    float loss;
    eopt_batch b = {.B = 3, .T = 4, .tokens = (int32_t *)1, .targets = (int32_t *)1};
    cr_expect_eq(eopt_model_forward(m, &b, 0, 1.0f, &loss, NULL), EOPT_ERR_SHAPE);
    int32_t prompt[1] = {16}, out[4];
    cr_expect_eq(eopt_model_generate(m, prompt, 1, 3, 1.0f, 0, 1, out), EOPT_ERR_ARG);
    int correct;
    cr_expect_eq(eopt_model_correct(m, &b, &correct), EOPT_ERR_UNSUPPORTED);
    eopt_model_free(m);
    eopt_backend_close(be);
}

/* nanoGPT's initialisation: std 0.02, residual projections 0.02 / sqrt(2 L), biases 0,
 * LayerNorm weights 1; the same seed gives the same weights. */
Test(models_api, gpt_init)
{
    eopt_backend *be = open_cpu();
    eopt_model *m, *m2;
    eopt_model_config cfg = {
        .kind = EOPT_MODEL_GPT, .vocab_size = 256, .block_size = 32, .n_layer = 2, .n_head = 2, .n_embd = 64};
    cr_assert_eq(eopt_model_create(&cfg, be, 1, 32, &m), EOPT_OK);
    cr_assert_eq(eopt_model_create(&cfg, be, 1, 32, &m2), EOPT_OK);
    cr_assert_eq(m->nparams, 2 + 12 * 2 + 2);
    eopt_model_init(m, 5);
    eopt_model_init(m2, 5);
    for (int p = 0; p < m->nparams; p++) {
        const char *name = m->params[p].name;
        const float *w = eopt_f32(m->params[p].w); /* CPU backend: host memory */
        int64_t n = m->params[p].w->numel;
        cr_expect_eq(memcmp(w, eopt_f32(m2->params[p].w), (size_t)n * 4), 0, "%s", name);
        double s = 0, s2 = 0;
        for (int64_t j = 0; j < n; j++)
            s += w[j], s2 += (double)w[j] * w[j];
        double mean = s / n, std = sqrt(s2 / n - mean * mean);
        int bias = strstr(name, ".bias") != NULL, ln = strstr(name, "ln_") != NULL;
        double want = bias ? 0 : ln ? 0 : strstr(name, "c_proj.weight") ? 0.01 : 0.02;
        if (bias || ln)
            cr_expect(mean == (bias ? 0.0 : 1.0) && std == 0, "%s: mean %g std %g", name, mean, std);
        else
            cr_expect(fabs(std - want) < 0.1 * want && fabs(mean) < 0.2 * want, "%s: mean %g std %g (want %g)",
                      name, mean, std, want);
    }
    eopt_model_init(m2, 6);
    cr_expect_neq(memcmp(eopt_f32(m->params[0].w), eopt_f32(m2->params[0].w), 64), 0);
    eopt_model_free(m);
    eopt_model_free(m2);
    eopt_backend_close(be);
}

Test(models_api, mlp_init_and_correct)
{
    tiny t = tiny_mlp();
    eopt_model_init(t.m, 3);
    const float *w = eopt_f32(t.m->params[2].w); /* layers.1.weight [6, 9]: bound 1/3 */
    float lo = 1, hi = -1;
    for (int j = 0; j < 54; j++)
        lo = fminf(lo, w[j]), hi = fmaxf(hi, w[j]);
    cr_expect(lo >= -1.0f / 3 && hi <= 1.0f / 3 && hi - lo > 0.4f, "range %g..%g", lo, hi);
    float logits[5 * 4], loss;
    float *dlog = t.be->alloc(t.be, sizeof logits);
    cr_assert_eq(eopt_model_forward(t.m, &t.batch, 0, 1.0f, &loss, dlog), EOPT_OK);
    t.be->download(t.be, logits, dlog, sizeof logits);
    int32_t labels[5] = {0, 3, 1, 2, 3};
    int want = 0, got = -1;
    double ce = 0;
    for (int r = 0; r < 5; r++) {
        int best = 0;
        double z = 0;
        for (int j = 1; j < 4; j++)
            best = logits[r * 4 + j] > logits[r * 4 + best] ? j : best;
        for (int j = 0; j < 4; j++)
            z += exp(logits[r * 4 + j]);
        ce += log(z) - logits[r * 4 + labels[r]];
        want += best == labels[r];
    }
    cr_expect_float_eq(loss, ce / 5, 1e-5);
    cr_assert_eq(eopt_model_correct(t.m, &t.batch, &got), EOPT_OK);
    cr_expect_eq(got, want);
    t.be->free(t.be, dlog);
    tiny_free(&t);
}

Test(models_api, generate)
{
    tiny t = tiny_gpt();
    int32_t prompt[3] = {1, 2, 3}, a[15], b[15], greedy[15], top1[15];
    cr_assert_eq(eopt_model_generate(t.m, prompt, 3, 12, 1.0f, 5, 42, a), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_model_generate(t.m, prompt, 3, 12, 1.0f, 5, 42, b), EOPT_OK);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    cr_expect_eq(memcmp(a, prompt, sizeof prompt), 0);
    for (int i = 0; i < 15; i++)
        cr_expect(a[i] >= 0 && a[i] < 13);
    cr_assert_eq(eopt_model_generate(t.m, prompt, 3, 12, 0.0f, 0, 1, greedy), EOPT_OK);
    cr_assert_eq(eopt_model_generate(t.m, prompt, 3, 12, 0.8f, 1, 2, top1), EOPT_OK);
    cr_expect_eq(memcmp(greedy, top1, sizeof greedy), 0);
    int differ = 0; /* sampling at a high temperature with other seeds moves away from greedy */
    for (uint64_t s = 0; s < 4; s++) {
        cr_assert_eq(eopt_model_generate(t.m, prompt, 3, 12, 3.0f, 0, 100 + s, b), EOPT_OK);
        differ += memcmp(b, greedy, sizeof b) != 0;
    }
    cr_expect_gt(differ, 0);
    tiny_free(&t);
}

/* ---- data ---- */

static void write_text(const char *path, int n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    for (int i = 0; i < n; i++)
        fputc("abcdefghijklmnopqrstuvwxyz .,\n"[(i * 7 + i / 30) % 30], f);
    fclose(f);
}

Test(models_data, text_windows_and_split)
{
    char path[] = "/tmp/eopt_test_text_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_text(path, 1000);
    eopt_text t;
    cr_assert_eq(eopt_text_load(path, 0.1, &t), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(t.n, 1000);
    cr_expect_eq(t.split, 900);
    enum { B = 4, T = 16 };
    int32_t tok[B * T], tgt[B * T], tok2[B * T], tgt2[B * T];
    for (int split = 0; split < 2; split++) {
        cr_assert_eq(eopt_text_batch(&t, split, 9, 5, B, T, tok, tgt), EOPT_OK);
        for (int j = 0; j < B; j++) {
            /* the window is a substring of its split */
            int found = 0;
            int64_t lo = split ? 900 : 0, hi = split ? 1000 : 900;
            for (int64_t s = lo; s + T < hi && !found; s++) {
                found = 1;
                for (int k = 0; k < T && found; k++)
                    found = tok[j * T + k] == t.bytes[s + k] && tgt[j * T + k] == t.bytes[s + k + 1];
            }
            cr_expect(found, "split %d window %d", split, j);
        }
    }
    cr_assert_eq(eopt_text_batch(&t, EOPT_SPLIT_TRAIN, 9, 5, B, T, tok, tgt), EOPT_OK);
    cr_assert_eq(eopt_text_batch(&t, EOPT_SPLIT_TRAIN, 9, 5, B, T, tok2, tgt2), EOPT_OK);
    cr_expect_eq(memcmp(tok, tok2, sizeof tok), 0);
    cr_assert_eq(eopt_text_batch(&t, EOPT_SPLIT_TRAIN, 10, 5, B, T, tok2, tgt2), EOPT_OK);
    cr_expect_neq(memcmp(tok, tok2, sizeof tok), 0);
    cr_expect_eq(eopt_text_batch(&t, EOPT_SPLIT_VAL, 9, 5, B, 100, tok, tgt), EOPT_ERR_ARG);
    eopt_text_free(&t);
    remove(path);
    cr_expect_eq(eopt_text_load("/nonexistent/x.txt", 0.1, &t), EOPT_ERR_IO);
}

/* The sampler resumes from (seed, position) alone, on the device batch too. */
Test(models_data, sampler_resumes)
{
    char path[] = "/tmp/eopt_test_text_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    write_text(path, 5000);
    eopt_text t;
    cr_assert_eq(eopt_text_load(path, 0.1, &t), EOPT_OK);
    eopt_backend *be = open_cpu();
    eopt_batch_buffer bb;
    enum { B = 3, T = 8 };
    cr_assert_eq(eopt_batch_buffer_create(be, B, T, 0, &bb), EOPT_OK);
    int32_t seen[6][2 * B * T];
    eopt_sampler s = {.seed = 77, .position = 0};
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(eopt_text_next(&t, EOPT_SPLIT_TRAIN, &s, B, &bb), EOPT_OK);
        cr_expect_eq(bb.batch.B, B);
        cr_expect_eq(bb.batch.T, T);
        be->download(be, seen[k], bb.batch.tokens, B * T * 4);
        be->download(be, seen[k] + B * T, bb.batch.targets, B * T * 4);
    }
    cr_expect_eq(s.position, 6);
    eopt_sampler resumed = {.seed = 77, .position = 3};
    for (int k = 3; k < 6; k++) {
        int32_t now[2 * B * T];
        cr_assert_eq(eopt_text_next(&t, EOPT_SPLIT_TRAIN, &resumed, B, &bb), EOPT_OK);
        be->download(be, now, bb.batch.tokens, B * T * 4);
        be->download(be, now + B * T, bb.batch.targets, B * T * 4);
        cr_expect_eq(memcmp(now, seen[k], sizeof now), 0, "batch %d", k);
    }
    cr_expect_neq(memcmp(seen[0], seen[1], sizeof seen[0]), 0);
    eopt_batch_buffer_free(&bb);
    eopt_backend_close(be);
    eopt_text_free(&t);
    remove(path);
}

/* Image batches walk seeded permutations: each epoch shows every image exactly once. */
Test(models_data, image_epochs)
{
    enum { N = 1000, B = 100 };
    float x[N], bx[B];
    int32_t lab[N], bl[B];
    for (int i = 0; i < N; i++)
        x[i] = (float)i, lab[i] = i % 10;
    eopt_images d = {.n = N, .dim = 1, .classes = 10, .x = x, .labels = lab};
    int count[N] = {0}, first[B], same_order = 1;
    for (int b = 0; b < N / B; b++) {
        eopt_images_batch(&d, 4, (uint64_t)b, B, bx, bl);
        for (int j = 0; j < B; j++) {
            int i = (int)bx[j];
            cr_assert(i >= 0 && i < N);
            cr_expect_eq(bl[j], i % 10);
            count[i]++;
            if (b == 0)
                first[j] = i;
        }
    }
    for (int i = 0; i < N; i++)
        cr_expect_eq(count[i], 1, "image %d seen %d times", i, count[i]);
    eopt_images_batch(&d, 4, N / B, B, bx, bl); /* epoch 2 is another order */
    for (int j = 0; j < B; j++)
        same_order &= (int)bx[j] == first[j];
    cr_expect(!same_order);
    eopt_images_batch(&d, 4, 0, B, bx, bl);
    for (int j = 0; j < B; j++)
        cr_expect_eq((int)bx[j], first[j]);
}

Test(models_data, fashion_mnist, .timeout = 60)
{
    eopt_images train, test;
    cr_assert_eq(eopt_fashion_mnist_load(NULL, 1, 0, &train), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_fashion_mnist_load(NULL, 0, 0, &test), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(train.n, 60000);
    cr_expect_eq(test.n, 10000);
    cr_expect_eq(train.dim, 784);
    cr_expect_eq(test.dim, 784);
    int per_class[10] = {0};
    for (int i = 0; i < train.n; i++) {
        cr_assert(train.labels[i] >= 0 && train.labels[i] <= 9);
        per_class[train.labels[i]]++;
    }
    for (int c = 0; c < 10; c++)
        cr_expect_eq(per_class[c], 6000);
    for (int i = 0; i < test.n; i++)
        cr_assert(test.labels[i] >= 0 && test.labels[i] <= 9);
    float lo = 1, hi = 0;
    double mean = 0;
    for (int64_t i = 0; i < (int64_t)train.n * train.dim; i++)
        lo = fminf(lo, train.x[i]), hi = fmaxf(hi, train.x[i]), mean += train.x[i];
    mean /= (double)train.n * train.dim;
    cr_expect(lo == 0.0f && hi == 1.0f, "pixels in %g..%g", lo, hi);
    cr_expect(fabs(mean - EOPT_FASHION_MNIST_MEAN) < 1e-3, "mean %g", mean);

    eopt_backend *be = open_cpu();
    eopt_batch_buffer bb;
    cr_assert_eq(eopt_batch_buffer_create(be, 32, 0, 784, &bb), EOPT_OK);
    cr_assert_eq(eopt_images_slice(&test, 9968, 32, &bb), EOPT_OK);
    int32_t l[32];
    be->download(be, l, bb.batch.labels, sizeof l);
    cr_expect_eq(memcmp(l, test.labels + 9968, sizeof l), 0);
    cr_expect_eq(eopt_images_slice(&test, 9969, 32, &bb), EOPT_ERR_ARG);
    eopt_sampler s = {.seed = 1, .position = 0};
    cr_assert_eq(eopt_images_next(&train, &s, 32, &bb), EOPT_OK);
    cr_expect_eq(s.position, 1);
    eopt_batch_buffer_free(&bb);
    eopt_backend_close(be);
    eopt_images_free(&train);
    eopt_images_free(&test);
}

Test(models_data, moby_dick)
{
    eopt_text t;
    cr_assert_eq(eopt_text_load(EOPT_MOBY_DICK_PATH, 0.1, &t), EOPT_OK, "%s", eopt_last_error());
    cr_expect_gt(t.n, 1000000);
    cr_expect(memmem(t.bytes, (size_t)t.n, "Call me Ishmael", 15) != NULL);
    eopt_text_free(&t);
}
