/* Measurements behind `eopt bench` (bench.h). */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../checkpoint/checkpoint.h"
#include "../optimizers/newton_schulz.h"
#include "data.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the counting backend ---- */

double eopt_flops_total(const eopt_flops *f) { return f->gemm + f->syrk + f->syevd + f->qr + f->elementwise; }

static eopt_counting_backend *counting(eopt_backend *be) { return (eopt_counting_backend *)be; }

/* Each wrapper counts (atomically: a step updates several matrices at once), then runs the real
 * operation on the wrapper itself (same context), so that a failure is recorded in the status
 * the measured code checks. */
static void count_gemm(eopt_backend *be, eopt_prec prec, int ta, int tb, int m, int n, int k, float alpha,
                       const void *A, int lda, int64_t sa, const void *B, int ldb, int64_t sb, float beta, void *C,
                       int ldc, int64_t sc, int batch)
{
    eopt_counting_backend *c = counting(be);
    const double f = 2.0 * m * n * k * (batch > 1 ? batch : 1);
#pragma omp atomic
    c->flops.gemm += f;
    c->inner->gemm(be, prec, ta, tb, m, n, k, alpha, A, lda, sa, B, ldb, sb, beta, C, ldc, sc, batch);
}

static void count_syrk(eopt_backend *be, eopt_prec prec, int trans, int n, int k, float alpha, const float *A,
                       int lda, float beta, float *C, int ldc)
{
    eopt_counting_backend *c = counting(be);
#pragma omp atomic
    c->flops.syrk += (double)n * (n + 1) * k;
    c->inner->syrk(be, prec, trans, n, k, alpha, A, lda, beta, C, ldc);
}

static eopt_status count_syevd(eopt_backend *be, int n, float *A, float *w)
{
    eopt_counting_backend *c = counting(be);
#pragma omp atomic
    c->flops.syevd += 14.0 / 3.0 * n * n * n;
    return c->inner->syevd(be, n, A, w);
}

static eopt_status count_qr(eopt_backend *be, int m, int n, float *A)
{
    eopt_counting_backend *c = counting(be);
#pragma omp atomic
    c->flops.qr += 4.0 * m * n * n - 4.0 / 3.0 * n * n * n;
    return c->inner->qr(be, m, n, A);
}

static void count_ew(eopt_backend *be, const eopt_ew *e)
{
    eopt_counting_backend *c = counting(be);
#pragma omp atomic
    c->flops.elementwise += (double)e->n;
    c->inner->ew(be, e);
}

static void count_reduce(eopt_backend *be, eopt_reduce_op op, eopt_axis axis, int rows, int cols, const float *a,
                         const float *b, int ld, float alpha, float *out)
{
    eopt_counting_backend *c = counting(be);
#pragma omp atomic
    c->flops.elementwise += (double)rows * cols;
    c->inner->reduce(be, op, axis, rows, cols, a, b, ld, alpha, out);
}

void eopt_counting_backend_init(eopt_counting_backend *c, const eopt_backend *inner)
{
    memset(c, 0, sizeof *c);
    c->be = *inner;
    c->inner = inner;
    c->be.gemm = count_gemm;
    c->be.syrk = count_syrk;
    c->be.syevd = count_syevd;
    c->be.qr = count_qr;
    c->be.ew = count_ew;
    c->be.reduce = count_reduce;
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void eopt_bench_summarize(const double *seconds, int n, eopt_bench_times *out)
{
    double s[n > 0 ? n : 1];
    memcpy(s, seconds, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    out->n = n;
    out->min = n ? s[0] : 0;
    out->max = n ? s[n - 1] : 0;
    out->median = n == 0 ? 0 : n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* A measured call: `prepare` (untimed: fresh inputs) then `run`, waited for. */
typedef struct {
    eopt_status (*prepare)(void *arg, int call);
    eopt_status (*run)(void *arg);
    void *arg;
} bench_call;

/* warmup untimed calls, then `steps` timed ones on the counting backend c; flops per call are
 * the timed calls' mean. */
static eopt_status time_calls(eopt_counting_backend *c, const bench_call *f, int warmup, int steps,
                              eopt_bench_result *r)
{
    if (steps < 1 || warmup < 0)
        return eopt_fail(EOPT_ERR_ARG, "bench: steps must be >= 1 and warmup >= 0 (got %d, %d)", steps, warmup);
    double *t = malloc(sizeof(double) * (size_t)steps);
    if (!t)
        return eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory");
    eopt_status st = EOPT_OK;
    for (int k = 0; k < warmup + steps && st == EOPT_OK; k++) {
        if (k == warmup)
            memset(&c->flops, 0, sizeof c->flops);
        st = f->prepare(f->arg, k);
        if (st == EOPT_OK)
            st = eopt_backend_sync(&c->be);
        double t0 = now();
        if (st == EOPT_OK)
            st = f->run(f->arg);
        if (st == EOPT_OK)
            st = eopt_backend_sync(&c->be);
        if (k >= warmup)
            t[k - warmup] = now() - t0;
    }
    if (st == EOPT_OK) {
        eopt_bench_summarize(t, steps, &r->time);
        r->flops = c->flops;
        r->flops.gemm /= steps, r->flops.syrk /= steps, r->flops.syevd /= steps, r->flops.qr /= steps;
        r->flops.elementwise /= steps;
        st = eopt_bench_sgemm(&c->be, eopt_flops_total(&r->flops), &r->sgemm_s);
    }
    free(t);
    return st;
}

eopt_status eopt_bench_sgemm(eopt_backend *be, double flops, double *seconds)
{
    int N = (int)lround(cbrt(flops / 2));
    N = N < 16 ? 16 : N > 2048 ? 2048 : N;
    size_t bytes = sizeof(float) * (size_t)N * (size_t)N;
    float *a = be->alloc(be, bytes), *b = be->alloc(be, bytes), *c = be->alloc(be, bytes);
    eopt_status st = a && b && c ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory for a %d^3 sgemm", N);
    double t[5];
    int reps = 1; /* products per timing: enough for a millisecond (small sizes) */
    if (st == EOPT_OK) {
        be->random(be, EOPT_RAND_NORMAL, 1, 0, (int64_t)N * N, a);
        be->random(be, EOPT_RAND_NORMAL, 2, 0, (int64_t)N * N, b);
    }
    for (int k = -1; k < 5 && st == EOPT_OK; k++) { /* k = -1: warm-up, sets reps */
        double t0 = now();
        for (int r = 0; r < reps; r++)
            be->gemm(be, EOPT_PREC_FP32, 0, 0, N, N, N, 1, a, N, 0, b, N, 0, 0, c, N, 0, 1);
        st = eopt_backend_sync(be);
        double dt = (now() - t0) / reps;
        if (k < 0)
            reps = dt < 1e-3 ? (int)(1e-3 / (dt > 1e-7 ? dt : 1e-7)) + 1 : 1;
        else
            t[k] = dt;
    }
    if (st == EOPT_OK) {
        eopt_bench_times s;
        eopt_bench_summarize(t, 5, &s);
        *seconds = s.median * flops / (2.0 * N * N * N);
    }
    be->free(be, a), be->free(be, b), be->free(be, c);
    return st;
}

/* ---- an optimizer's step ---- */

typedef struct {
    eopt_backend *be;
    int n;
    eopt_tensor *g; /* [n] */
    eopt_optimizer *opt;
} optimizer_call;

static eopt_status fresh_gradient(void *arg, int call)
{
    optimizer_call *o = arg;
    for (int k = 0; k < o->n; k++)
        o->be->random(o->be, EOPT_RAND_NORMAL, 100 + (uint64_t)call, (uint64_t)k << 32, o->g[k].numel,
                      eopt_f32(&o->g[k]));
    return EOPT_OK;
}

/* Values for the group hyperparameters a class requires (no default, or None: SOAP's lr,
 * AdaptiveMuon's lr, momentum, weight_decay); the rest keep the class defaults. */
static eopt_status required_hparams(const char *cls, eopt_dict *hp)
{
    static const struct {
        const char *key;
        double value;
    } required[] = {{"lr", 1e-3}, {"momentum", 0.95}, {"weight_decay", 0.0}};
    const eopt_optimizer_class *c = eopt_optimizer_find(cls);
    if (!c)
        return eopt_fail(EOPT_ERR_ARG, "bench: unknown optimizer class '%s'", cls);
    eopt_dict args = {0}, group = {0};
    EOPT_TRY(eopt_optimizer_defaults(c, &args, &group));
    for (size_t k = 0; k < sizeof required / sizeof *required; k++) {
        const eopt_value *v = eopt_dict_get(&group, required[k].key);
        if (!v || v->kind == EOPT_VAL_NONE)
            EOPT_TRY(eopt_dict_set(hp, required[k].key, eopt_float(required[k].value)));
    }
    return EOPT_OK;
}

static eopt_status optimizer_step(void *arg) { return eopt_optimizer_step(((optimizer_call *)arg)->opt); }

int eopt_bench_model_shapes(const char *name, int (*shapes)[2], int max)
{
    static const int gpt2_block[4][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
    if (strcmp(name, "gpt2-small-matrices") != 0 || max < 48)
        return 0;
    for (int k = 0; k < 48; k++)
        shapes[k][0] = gpt2_block[k % 4][0], shapes[k][1] = gpt2_block[k % 4][1];
    return 48;
}

eopt_status eopt_bench_optimizer_params(eopt_backend *be, const char *cls, const eopt_dict *args, int n,
                                        const int (*shapes)[2], int warmup, int steps, eopt_bench_result *r)
{
    eopt_counting_backend c;
    eopt_counting_backend_init(&c, be);
    eopt_tensor *w = calloc((size_t)n, sizeof *w), *g = calloc((size_t)n, sizeof *g);
    eopt_param *p = calloc((size_t)n, sizeof *p);
    eopt_status st = w && g && p ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory");
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        const int64_t shape[2] = {shapes[k][0], shapes[k][1]};
        st = eopt_tensor_alloc(&w[k], &c.be, EOPT_F32, 2, shape);
        if (st == EOPT_OK)
            st = eopt_tensor_alloc(&g[k], &c.be, EOPT_F32, 2, shape);
        if (st == EOPT_OK)
            c.be.random(&c.be, EOPT_RAND_NORMAL, 1, (uint64_t)k << 32, w[k].numel, eopt_f32(&w[k]));
        p[k] = (eopt_param){.w = &w[k], .grad = &g[k]};
        snprintf(p[k].name, sizeof p[k].name, n == 1 ? "weight" : "weight%d", k);
    }
    optimizer_call o = {&c.be, n, g, NULL};
    if (st == EOPT_OK) {
        eopt_dict hp = {0}, none = {0};
        st = required_hparams(cls, &hp);
        if (st == EOPT_OK)
            st = eopt_optimizer_create(cls, &c.be, args ? args : &none, 1, &hp, &n, p, n, &o.opt);
    }
    if (st == EOPT_OK)
        st = time_calls(&c, &(bench_call){fresh_gradient, optimizer_step, &o}, warmup, steps, r);
    eopt_optimizer_free(o.opt);
    for (int k = 0; w && g && k < n; k++)
        eopt_tensor_free(&w[k]), eopt_tensor_free(&g[k]);
    free(w), free(g), free(p);
    return st;
}

eopt_status eopt_bench_optimizer(eopt_backend *be, const char *cls, const eopt_dict *args, int rows, int cols,
                                 int warmup, int steps, eopt_bench_result *r)
{
    const int shape[1][2] = {{rows, cols}};
    return eopt_bench_optimizer_params(be, cls, args, 1, shape, warmup, steps, r);
}

/* ---- Newton-Schulz ---- */

typedef struct {
    eopt_backend *be;
    eopt_workspace ws;
    eopt_ns_config cfg;
    int rows, cols;
    float *x, *out;
} ns_call;

static eopt_status ns_prepare(void *arg, int call)
{
    ns_call *n = arg;
    n->be->random(n->be, EOPT_RAND_NORMAL, 100 + (uint64_t)call, 0, (int64_t)n->rows * n->cols, n->x);
    return eopt_ws_reset(&n->ws);
}

static eopt_status ns_run(void *arg)
{
    ns_call *n = arg;
    return eopt_ns_orthogonalize(n->be, &n->ws, &n->cfg, n->rows, n->cols, n->x, n->out);
}

eopt_status eopt_bench_ns(eopt_backend *be, const char *coefficients, int iters, int rows, int cols, int warmup,
                          int steps, eopt_bench_result *r)
{
    eopt_counting_backend c;
    eopt_counting_backend_init(&c, be);
    ns_call n = {.be = &c.be, .rows = rows, .cols = cols};
    eopt_ws_init(&n.ws, &c.be);
    size_t bytes = sizeof(float) * (size_t)rows * (size_t)cols;
    eopt_status st = eopt_ns_emerging(coefficients, iters, NULL, 0, &n.cfg);
    if (st == EOPT_OK) {
        n.x = c.be.alloc(&c.be, bytes), n.out = c.be.alloc(&c.be, bytes);
        if (!n.x || !n.out)
            st = eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory for a %dx%d matrix", rows, cols);
    }
    if (st == EOPT_OK)
        st = time_calls(&c, &(bench_call){ns_prepare, ns_run, &n}, warmup, steps, r);
    c.be.free(&c.be, n.x), c.be.free(&c.be, n.out);
    eopt_ws_free(&n.ws);
    return st;
}

/* ---- a training step ---- */

typedef struct {
    const eopt_config *cfg;
    eopt_backend *be;
    eopt_text text;
    eopt_tokens tokens; /* the training shards of data.kind = "tokens" */
    eopt_images images;
    eopt_batch_buffer bb;
    eopt_sampler sampler;
    eopt_model *model;
    int nopt;
    eopt_optimizer *opt[EOPT_CFG_MAX_OPTS];
    eopt_param *oparams[EOPT_CFG_MAX_OPTS];
} train_rig;

static int rig_gpt(const train_rig *t) { return t->cfg->model.kind == EOPT_MODEL_GPT; }

static eopt_status rig_data(train_rig *t)
{
    const eopt_config *c = t->cfg;
    if (c->data.kind == EOPT_DATA_TEXT) {
        EOPT_TRY(eopt_text_load(c->data.path, c->data.val_fraction, &t->text));
        if (t->text.split <= c->run.seq_len)
            return eopt_fail(EOPT_ERR_CONFIG, "%s: data.path %s is too short for seq_len = %d", c->path,
                             c->data.path, c->run.seq_len);
        return eopt_batch_buffer_create(t->be, c->run.batch_size, c->run.seq_len, 0, &t->bb);
    }
    if (c->data.kind == EOPT_DATA_TOKENS) {
        const char *patterns[EOPT_CFG_MAX_SHARD_PATTERNS];
        for (int k = 0; k < c->data.nshards[EOPT_SPLIT_TRAIN]; k++)
            patterns[k] = c->data.shards[EOPT_SPLIT_TRAIN][k];
        EOPT_TRY(eopt_tokens_open(c->data.format, c->data.nshards[EOPT_SPLIT_TRAIN], patterns, c->run.batch_size,
                                  c->run.seq_len, c->model.vocab_size, c->data.shuffle, &t->tokens));
        return eopt_batch_buffer_create(t->be, c->run.batch_size, c->run.seq_len, 0, &t->bb);
    }
    EOPT_TRY(eopt_fashion_mnist_load(c->data.path[0] ? c->data.path : NULL, 1, c->data.normalize, &t->images));
    return eopt_batch_buffer_create(t->be, c->run.batch_size, 0, t->images.dim, &t->bb);
}

/* Optimizer o over the parameters the config assigns to it, group by group (as the trainer). */
static eopt_status rig_optimizer(train_rig *t, int o, const int *opt_of, const int *group_of)
{
    const eopt_cfg_optimizer *co = &t->cfg->opts[o];
    eopt_model *m = t->model;
    eopt_dict hp[EOPT_CFG_MAX_GROUPS];
    int size[EOPT_CFG_MAX_GROUPS], n = 0;
    t->oparams[o] = calloc((size_t)m->nparams, sizeof(eopt_param));
    if (!t->oparams[o])
        return eopt_fail(EOPT_ERR_NOMEM, "optimizer %s: out of memory", co->name);
    for (int g = 0; g < co->ngroups; g++) {
        size[g] = 0;
        for (int i = 0; i < m->nparams; i++)
            if (opt_of[i] == o && group_of[i] == g)
                t->oparams[o][n++] = m->params[i], size[g]++;
        hp[g] = co->groups[g].hp;
        EOPT_TRY(eopt_dict_merge_defaults(&hp[g], &co->hp));
    }
    eopt_status st = eopt_optimizer_create(co->cls, t->be, &co->args, co->ngroups, hp, size, t->oparams[o], n,
                                           &t->opt[o]);
    return st == EOPT_OK ? st : eopt_fail_context(st, "%s: optimizer '%s'", co->where, co->name);
}

static eopt_status rig_build(train_rig *t)
{
    const eopt_config *c = t->cfg;
    EOPT_TRY(eopt_backend_open(c->run.device, c->run.threads, &t->be));
    EOPT_TRY(rig_data(t));
    EOPT_TRY(eopt_model_create(&c->model, t->be, c->run.batch_size, rig_gpt(t) ? c->run.seq_len : 1, &t->model));
    EOPT_TRY(eopt_model_init(t->model, c->run.seed));
    int np = t->model->nparams, *owner = malloc(2 * sizeof(int) * (size_t)np);
    if (!owner)
        return eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory");
    eopt_status st = eopt_config_assign(c, t->model->params, np, owner, owner + np);
    for (int o = 0; o < c->nopt && st == EOPT_OK; o++, t->nopt++)
        st = rig_optimizer(t, o, owner, owner + np);
    free(owner);
    t->sampler.seed = c->run.seed;
    return st;
}

static void rig_free(train_rig *t)
{
    for (int o = 0; o < t->nopt; o++)
        eopt_optimizer_free(t->opt[o]);
    for (int o = 0; o < EOPT_CFG_MAX_OPTS; o++)
        free(t->oparams[o]);
    eopt_model_free(t->model);
    if (t->bb.be)
        eopt_batch_buffer_free(&t->bb);
    eopt_text_free(&t->text);
    eopt_tokens_close(&t->tokens);
    eopt_images_free(&t->images);
    if (t->be)
        eopt_backend_close(t->be);
}

static eopt_status rig_next(train_rig *t)
{
    int B = t->cfg->run.batch_size;
    switch (t->cfg->data.kind) {
    case EOPT_DATA_TEXT:
        return eopt_text_next(&t->text, EOPT_SPLIT_TRAIN, &t->sampler, B, &t->bb);
    case EOPT_DATA_TOKENS:
        return eopt_tokens_next(&t->tokens, &t->sampler, B, &t->bb);
    default:
        return eopt_images_next(&t->images, &t->sampler, B, &t->bb);
    }
}

/* One step, each part's seconds added into part[]: data, forward, backward, optimizers. */
static eopt_status rig_step(train_rig *t, double *part)
{
    const eopt_config *c = t->cfg;
    int A = c->run.grad_accum;
    eopt_model_zero_grad(t->model);
    for (int a = 0; a < A; a++) {
        float loss;
        double t0 = now();
        EOPT_TRY(rig_next(t));
        EOPT_TRY(eopt_backend_sync(t->be));
        double t1 = now();
        EOPT_TRY(eopt_model_forward(t->model, &t->bb.batch, 0, 1.0f, &loss, NULL));
        double t2 = now();
        EOPT_TRY(eopt_model_forward(t->model, &t->bb.batch, 1, 1.0f / (float)A, &loss, NULL));
        EOPT_TRY(eopt_backend_sync(t->be));
        double t3 = now();
        part[0] += t1 - t0, part[1] += t2 - t1, part[2] += (t3 - t2) - (t2 - t1);
    }
    for (int o = 0; o < t->nopt; o++) {
        double t0 = now();
        EOPT_TRY(eopt_optimizer_step(t->opt[o]));
        EOPT_TRY(eopt_backend_sync(t->be));
        part[3 + o] += now() - t0;
    }
    return EOPT_OK;
}

/* Per-part medians and shares from steps x nparts timings (row per step). */
static void train_summary(const double *t, int steps, eopt_bench_train_result *r)
{
    double col[steps > 0 ? steps : 1], sum[EOPT_BENCH_PARTS] = {0}, total = 0, step[steps > 0 ? steps : 1];
    for (int s = 0; s < steps; s++)
        step[s] = 0;
    for (int p = 0; p < r->nparts; p++) {
        for (int s = 0; s < steps; s++) {
            col[s] = t[s * EOPT_BENCH_PARTS + p];
            sum[p] += col[s], step[s] += col[s];
        }
        total += sum[p];
        eopt_bench_summarize(col, steps, &r->part[p]);
    }
    for (int p = 0; p < r->nparts; p++)
        r->share[p] = total > 0 ? sum[p] / total : 0;
    eopt_bench_summarize(step, steps, &r->step);
    r->items_per_s = total > 0 ? steps / total : 0; /* steps per second: the caller scales by the items */
}

eopt_status eopt_bench_train(const eopt_config *cfg, int warmup, int steps, eopt_bench_train_result *r)
{
    if (steps < 1 || warmup < 0)
        return eopt_fail(EOPT_ERR_ARG, "bench: steps must be >= 1 and warmup >= 0 (got %d, %d)", steps, warmup);
    train_rig t = {.cfg = cfg};
    memset(r, 0, sizeof *r);
    double *times = calloc((size_t)(warmup + steps) * EOPT_BENCH_PARTS, sizeof(double));
    eopt_status st = times ? rig_build(&t) : eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory");
    for (int s = 0; s < warmup + steps && st == EOPT_OK; s++)
        st = rig_step(&t, times + (size_t)s * EOPT_BENCH_PARTS);
    if (st == EOPT_OK) {
        static const char *fixed[3] = {"data", "forward", "backward"};
        r->gpt = rig_gpt(&t);
        r->nparts = 3 + t.nopt;
        for (int p = 0; p < r->nparts; p++)
            snprintf(r->name[p], sizeof r->name[p], "%s", p < 3 ? fixed[p] : cfg->opts[p - 3].name);
        train_summary(times + (size_t)warmup * EOPT_BENCH_PARTS, steps, r);
        r->items_per_s *= (double)cfg->run.batch_size * cfg->run.grad_accum * (r->gpt ? cfg->run.seq_len : 1);
    }
    free(times);
    rig_free(&t);
    return st;
}

/* ---- checkpoints ---- */

/* CPU seconds of the calling thread and of reaped children (the checkpoint guard): on a shared
 * machine the work done, where wall time mostly measures the others. */
static double cpu_now(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_THREAD, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
           1e-6 * (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec + kids.ru_stime.tv_usec);
}

/* Copies src to dst as coreutils' cp does (copy_file_range: the kernel moves the bytes from
 * page cache to page cache); *copy_s is that time, *sync_s adds an fsync of dst (the bytes on
 * the disk, as a save writes them). */
static eopt_status copy_file(const char *src, const char *dst, eopt_bench_checkpoint_result *r)
{
    double t0 = now(), c0 = cpu_now();
    int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    eopt_status st = in >= 0 && out >= 0 ? EOPT_OK
                                         : eopt_fail(EOPT_ERR_IO, "bench: cannot copy %s to %s: %s", src, dst, strerror(errno));
    for (ssize_t n = 1; st == EOPT_OK && n != 0;)
        if ((n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0)) < 0)
            st = eopt_fail(EOPT_ERR_IO, "bench: copying %s to %s: %s", src, dst, strerror(errno));
    r->copy_s = now() - t0;
    r->copy_cpu_s = cpu_now() - c0;
    if (st == EOPT_OK && fsync(out) != 0)
        st = eopt_fail(EOPT_ERR_IO, "bench: fsync %s: %s", dst, strerror(errno));
    r->copy_sync_s = now() - t0;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return st;
}

typedef struct {
    int n;
    eopt_param *params;
    eopt_tensor *w; /* [2 n]: weights, then gradients */
    eopt_optimizer *opt;
} ckpt_state;

static eopt_status ckpt_state_build(eopt_backend *be, int nmat, int rows, int cols, ckpt_state *s)
{
    s->params = calloc((size_t)nmat, sizeof(eopt_param));
    s->w = calloc(2 * (size_t)nmat, sizeof(eopt_tensor));
    if (!s->params || !s->w)
        return eopt_fail(EOPT_ERR_NOMEM, "bench: out of memory");
    for (; s->n < nmat; s->n++) {
        int i = s->n;
        eopt_tensor *w = &s->w[2 * i], *g = &s->w[2 * i + 1];
        EOPT_TRY(eopt_tensor_alloc(w, be, EOPT_F32, 2, (int64_t[]){rows, cols}));
        EOPT_TRY(eopt_tensor_alloc(g, be, EOPT_F32, 2, (int64_t[]){rows, cols}));
        be->random(be, EOPT_RAND_NORMAL, 1, (uint64_t)i * w->numel, w->numel, eopt_f32(w));
        be->random(be, EOPT_RAND_NORMAL, 2, (uint64_t)i * g->numel, g->numel, eopt_f32(g));
        snprintf(s->params[i].name, sizeof s->params[i].name, "layers.%d.weight", i);
        s->params[i].w = w, s->params[i].grad = g;
    }
    eopt_dict args = {0}, group = {0};
    EOPT_TRY(eopt_optimizer_create("AdamW", be, &args, 1, &group, &nmat, s->params, nmat, &s->opt));
    return eopt_optimizer_step(s->opt); /* creates exp_avg and exp_avg_sq */
}

static void ckpt_state_free(ckpt_state *s)
{
    eopt_optimizer_free(s->opt);
    for (int i = 0; i < 2 * s->n; i++)
        eopt_tensor_free(&s->w[i]);
    free(s->w);
    free(s->params);
}

/* The load reads the copy as a resume does: a file this process did not write (the guard checks
 * it), its tensors read straight into the optimizer state and the model (defer_tensors). */
static eopt_status ckpt_measure(ckpt_state *s, const char *path, const char *copy, eopt_bench_checkpoint_result *r)
{
    eopt_ckpt_optimizer o = {.name = "0", .opt = s->opt};
    eopt_ckpt_write cw = {.step = 1, .producer = "eopt bench", .nparams = s->n, .params = s->params, .nopt = 1,
                          .opts = &o};
    double t0 = now(), c0 = cpu_now();
    EOPT_TRY(eopt_checkpoint_save(path, &cw));
    r->save_s = now() - t0;
    r->save_cpu_s = cpu_now() - c0;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return eopt_fail(EOPT_ERR_IO, "bench: cannot stat %s: %s", path, strerror(errno));
    r->mib = (double)sb.st_size / (1 << 20);
    EOPT_TRY(copy_file(path, copy, r));
    t0 = now(), c0 = cpu_now();
    eopt_ckpt *ck;
    EOPT_TRY(eopt_checkpoint_open(copy, &(eopt_ckpt_options){.defer_tensors = 1}, &ck));
    r->open_s = now() - t0;
    const char *names[] = {"0"};
    eopt_status st = eopt_checkpoint_apply(ck, s->params, s->n, 1, names, &s->opt);
    r->load_s = now() - t0;
    r->load_cpu_s = cpu_now() - c0;
    eopt_checkpoint_close(ck);
    return st;
}

eopt_status eopt_bench_checkpoint(eopt_backend *be, const char *dir, int nmat, int rows, int cols,
                                  eopt_bench_checkpoint_result *r)
{
    char path[EOPT_CFG_PATH_MAX + 64], copy[EOPT_CFG_PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/eopt-bench-ckpt-%d.h5", dir, (int)getpid());
    snprintf(copy, sizeof copy, "%s.copy", path);
    memset(r, 0, sizeof *r);
    ckpt_state s = {0};
    eopt_status st = ckpt_state_build(be, nmat, rows, cols, &s);
    if (st == EOPT_OK)
        st = ckpt_measure(&s, path, copy, r);
    unlink(path);
    unlink(copy);
    ckpt_state_free(&s);
    return st;
}
