/* `eopt verify-model FILE.h5 [--device cpu|cuda]`: runs a model's forward and backward on a
 * reference file made by PyTorch (shared/fixtures/models/, read through
 * checkpoint/reference.h) and compares loss, logits and every gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint/reference.h"
#include "../models/model.h"
#include "commands.h"

#define LOSS_TOL 1e-5
#define GRAD_TOL 1e-4

/* Reads tensor `name` of exactly `numel` elements as dt (float32 or int32) into buf. */
static eopt_status read_data(const eopt_reference *f, const char *path, const char *name, eopt_dtype dt,
                             int64_t numel, void *buf)
{
    eopt_tensor t;
    EOPT_TRY(eopt_reference_tensor(f, name, dt, &t));
    eopt_status st = EOPT_OK;
    if (t.numel != numel)
        st = eopt_fail(EOPT_ERR_SHAPE, "%s: dataset '%s' has %lld elements, expected %lld", path, name,
                       (long long)t.numel, (long long)numel);
    else
        memcpy(buf, t.data, eopt_tensor_bytes(&t));
    eopt_tensor_free(&t);
    return st;
}

static eopt_status read_config(const eopt_reference *f, const char *path, eopt_model_config *cfg, int *B, int *T)
{
    char kind[32];
    int64_t v[EOPT_MLP_MAX_LAYERS + 1];
    int n;
    memset(cfg, 0, sizeof *cfg);
    EOPT_TRY(eopt_reference_str(f, "model", kind, sizeof kind));
    EOPT_TRY(eopt_reference_ints(f, "batch_size", v, 1, NULL));
    *B = (int)v[0];
    *T = 1;
    if (strcmp(kind, "mlp") == 0) {
        cfg->kind = EOPT_MODEL_MLP;
        EOPT_TRY(eopt_reference_ints(f, "dims", v, EOPT_MLP_MAX_LAYERS + 1, &n));
        cfg->ndims = n;
        for (int i = 0; i < n; i++)
            cfg->dims[i] = (int)v[i];
        return EOPT_OK;
    }
    if (strcmp(kind, "gpt") != 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: unknown model '%s' (expected 'mlp' or 'gpt')", path, kind);
    const char *keys[5] = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd"};
    int *dst[5] = {&cfg->vocab_size, &cfg->block_size, &cfg->n_layer, &cfg->n_head, &cfg->n_embd};
    cfg->kind = EOPT_MODEL_GPT;
    for (int k = 0; k < 5; k++) {
        EOPT_TRY(eopt_reference_ints(f, keys[k], v, 1, NULL));
        *dst[k] = (int)v[0];
    }
    /* the sequence length is the second dimension of /inputs/tokens */
    eopt_tensor tokens;
    EOPT_TRY(eopt_reference_tensor(f, "/inputs/tokens", EOPT_I32, &tokens));
    int ok = tokens.ndim == 2 && tokens.shape[0] == *B;
    *T = ok ? (int)tokens.shape[1] : 1;
    eopt_tensor_free(&tokens);
    if (!ok)
        return eopt_fail(EOPT_ERR_SHAPE, "%s: /inputs/tokens must be [batch_size, T]", path);
    return EOPT_OK;
}

/* Loads parameter w from the reference's `name`, whose dimensions must be w's shape exactly (not
 * just its size). */
static eopt_status load_param(const eopt_reference *f, const char *path, const char *name, eopt_tensor *w)
{
    eopt_tensor t;
    char want[64];
    EOPT_TRY(eopt_reference_tensor(f, name, EOPT_F32, &t));
    eopt_status st;
    if (t.numel != w->numel)
        st = eopt_fail(EOPT_ERR_SHAPE, "%s: dataset '%s' has %lld elements, expected %lld", path, name,
                       (long long)t.numel, (long long)w->numel);
    else if (!eopt_tensor_same_shape(&t, w))
        st = eopt_fail(EOPT_ERR_SHAPE, "%s: dataset '%s' is not of shape %s", path, name,
                       eopt_shape_str(w->ndim, w->shape, want, sizeof want));
    else
        st = eopt_tensor_copy(w, &t);
    eopt_tensor_free(&t);
    return st;
}

static double max_abs(const float *a, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* max |a - ref| / max |ref| */
static double rel_err(const float *a, const float *ref, int64_t n)
{
    double d = 0, r = max_abs(ref, n);
    for (int64_t i = 0; i < n; i++)
        d = fabs((double)a[i] - ref[i]) > d ? fabs((double)a[i] - ref[i]) : d;
    return r > 0 ? d / r : d;
}

typedef struct {
    const eopt_reference *f;
    const char *path;
    eopt_model *m;
    float *host, *ref;          /* host buffers of the largest tensor */
    void *in_a, *in_b, *logits; /* device: inputs and logits */
} verify_ctx;

static eopt_status verify_run(verify_ctx *v, int B, int T, eopt_verify_result *res)
{
    eopt_model *m = v->m;
    eopt_backend *be = m->be;
    char name[EOPT_NAME_MAX + 16];
    for (int i = 0; i < m->nparams; i++) {
        eopt_tensor *w = m->params[i].w;
        snprintf(name, sizeof name, "/model/%s", m->params[i].name);
        EOPT_TRY(load_param(v->f, v->path, name, w));
    }
    const int mlp = m->cfg.kind == EOPT_MODEL_MLP;
    const int64_t nin = mlp ? (int64_t)B * m->cfg.dims[0] : (int64_t)B * T, nlab = mlp ? B : (int64_t)B * T;
    const int64_t nlogits = mlp ? (int64_t)B * m->cfg.dims[m->cfg.ndims - 1] : (int64_t)B * T * m->cfg.vocab_size;
    EOPT_TRY(read_data(v->f, v->path, mlp ? "/inputs/x" : "/inputs/tokens", mlp ? EOPT_F32 : EOPT_I32,
                       nin, v->host));
    be->upload(be, v->in_a, v->host, (size_t)nin * 4);
    EOPT_TRY(read_data(v->f, v->path, mlp ? "/inputs/labels" : "/inputs/targets", EOPT_I32, nlab, v->host));
    for (int64_t i = 0; i < nlab; i++) {
        int32_t t = ((const int32_t *)v->host)[i], V = mlp ? m->cfg.dims[m->cfg.ndims - 1] : m->cfg.vocab_size;
        if (t < 0 || t >= V)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: target %lld = %d outside 0..%d", v->path, (long long)i, t, V - 1);
    }
    be->upload(be, v->in_b, v->host, (size_t)nlab * 4);

    eopt_batch batch = {.B = B, .T = T};
    if (mlp)
        batch.x = v->in_a, batch.labels = v->in_b;
    else
        batch.tokens = v->in_a, batch.targets = v->in_b;
    float loss;
    eopt_model_zero_grad(m);
    EOPT_TRY(eopt_model_forward(m, &batch, 1, 1.0f, &loss, v->logits));

    float loss_ref;
    EOPT_TRY(read_data(v->f, v->path, "/expected/loss", EOPT_F32, 1, &loss_ref));
    res->loss = loss;
    res->loss_ref = loss_ref;
    res->loss_rel_err = fabs((double)loss - loss_ref) / fabs((double)loss_ref);
    EOPT_TRY(read_data(v->f, v->path, "/expected/logits", EOPT_F32, nlogits, v->ref));
    be->download(be, v->host, v->logits, (size_t)nlogits * 4);
    res->logits_rel_err = rel_err(v->host, v->ref, nlogits);
    for (int i = 0; i < m->nparams; i++) {
        eopt_tensor *g = m->params[i].grad;
        snprintf(name, sizeof name, "/expected/grads/%s", m->params[i].name);
        EOPT_TRY(read_data(v->f, v->path, name, EOPT_F32, g->numel, v->ref));
        EOPT_TRY(eopt_tensor_to_host(g, v->host, eopt_tensor_bytes(g)));
        double e = rel_err(v->host, v->ref, g->numel);
        if (e >= res->grad_rel_err) {
            res->grad_rel_err = e;
            snprintf(res->worst, sizeof res->worst, "%s", m->params[i].name);
        }
    }
    res->ok = res->loss_rel_err <= LOSS_TOL && res->grad_rel_err <= GRAD_TOL && res->logits_rel_err <= GRAD_TOL;
    return EOPT_OK;
}

eopt_status eopt_verify_model(const char *path, eopt_backend *be, eopt_verify_result *res)
{
    memset(res, 0, sizeof *res);
    eopt_reference *f;
    EOPT_TRY(eopt_reference_open(path, &f));
    eopt_model_config cfg;
    int B, T;
    verify_ctx v = {.f = f, .path = path};
    eopt_status st = read_config(f, path, &cfg, &B, &T);
    if (st == EOPT_OK)
        st = eopt_model_create(&cfg, be, B, T, &v.m);
    if (st == EOPT_OK) {
        int64_t big = 0, nlogits = cfg.kind == EOPT_MODEL_MLP ? (int64_t)B * cfg.dims[cfg.ndims - 1]
                                                              : (int64_t)B * T * cfg.vocab_size;
        for (int i = 0; i < v.m->nparams; i++)
            big = v.m->params[i].w->numel > big ? v.m->params[i].w->numel : big;
        big = nlogits > big ? nlogits : big;
        int64_t nin = (int64_t)B * (cfg.kind == EOPT_MODEL_MLP ? cfg.dims[0] : T);
        big = nin > big ? nin : big;
        v.host = malloc((size_t)big * 4);
        v.ref = malloc((size_t)big * 4);
        v.in_a = be->alloc(be, (size_t)big * 4);
        v.in_b = be->alloc(be, (size_t)big * 4);
        v.logits = be->alloc(be, (size_t)nlogits * 4);
        st = v.host && v.ref && v.in_a && v.in_b && v.logits ? verify_run(&v, B, T, res)
                                                             : eopt_fail(EOPT_ERR_NOMEM, "out of memory in verify");
    }
    free(v.host);
    free(v.ref);
    if (v.in_a)
        be->free(be, v.in_a);
    if (v.in_b)
        be->free(be, v.in_b);
    if (v.logits)
        be->free(be, v.logits);
    eopt_model_free(v.m);
    eopt_reference_close(f);
    return st;
}

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--device", "cpu|cuda", "the backend that runs the model (default: EOPT_DEVICE, else cpu)"},
    {0}};

const eopt_command eopt_cmd_verify_model = {
    "verify-model", "FILE.h5",
    "check a model's forward and backward against a reference file made by PyTorch "
    "(../shared/fixtures/models/): loss, logits and every gradient",
    "Exit status 0 when loss, logits and gradients match within the tolerances it prints, else 1.", options, run};

static int run(int argc, char **argv)
{
    const char *file = NULL, *device = NULL;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_verify_model, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (id == EOPT_ARGS_POS && file)
            return eopt_usage_error(&eopt_cmd_verify_model, "one file, not '%s' as well", a.val[0]);
        if (id == EOPT_ARGS_POS)
            file = a.val[0];
        else /* --device */
            device = a.val[0];
    }
    if (!file)
        return eopt_usage_error(&eopt_cmd_verify_model, "no reference file");
    eopt_backend *be;
    eopt_verify_result r;
    eopt_status st = eopt_backend_open(device, 0, &be);
    if (st == EOPT_OK) {
        st = eopt_verify_model(file, be, &r);
        eopt_backend_close(be);
    }
    if (st != EOPT_OK) {
        printf("verify-model FAIL: %s\n", eopt_last_error());
        return 1;
    }
    printf("verify-model: %s: loss %.8g (reference %.8g), logits_rel_err=%.3g, worst gradient %s\n", file, r.loss,
           r.loss_ref, r.logits_rel_err, r.worst);
    if (!r.ok) {
        printf("verify-model FAIL: loss_rel_err=%.3g (tolerance %g) grad_rel_err=%.3g logits_rel_err=%.3g "
               "(tolerance %g)\n",
               r.loss_rel_err, LOSS_TOL, r.grad_rel_err, r.logits_rel_err, GRAD_TOL);
        return 1;
    }
    printf("verify-model ok: loss_rel_err=%.3g grad_rel_err=%.3g\n", r.loss_rel_err, r.grad_rel_err);
    return 0;
}
