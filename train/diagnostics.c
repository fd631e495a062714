/* Training diagnostics and the loss spike detector (diagnostics.h). */
#include "diagnostics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- linear algebra ---- */

eopt_status eopt_sv_summary_of(eopt_backend *be, int m, int n, const float *A, float *gram, float *w, float *host,
                               eopt_sv_summary *out)
{
    const int tall = m > n, r = tall ? n : m;
    *out = (eopt_sv_summary){NAN, NAN, NAN, NAN, NAN};
    /* s_i^2 = the eigenvalues of A A^T (wide) or A^T A (tall) */
    be->syrk(be, EOPT_PREC_FP32, tall, r, tall ? m : n, 1.0f, A, n, 0.0f, gram, r);
    eopt_status st = be->syevd(be, r, gram, w);
    if (st == EOPT_ERR_NUMERIC) { /* a non-finite matrix: no numbers, not a failed run */
        eopt_clear_error();
        return EOPT_OK;
    }
    EOPT_TRY(st);
    be->download(be, host, w, sizeof(float) * (size_t)r);
    double lmax = host[r - 1] > 0.0f ? host[r - 1] : 0.0, sum2 = 0, nuc = 0, smin = NAN;
    const double tol = lmax * r * FLT_EPSILON; /* a float32 Gram resolves lambda to about this */
    for (int k = 0; k < r; k++) {
        const double l = host[k] > 0.0f ? host[k] : 0.0;
        sum2 += l, nuc += sqrt(l);
        if (l > tol && isnan(smin))
            smin = sqrt(l); /* ascending: the first above the tolerance */
    }
    double entropy = 0;
    for (int k = 0; k < r && nuc > 0; k++) {
        const double p = sqrt(host[k] > 0.0f ? host[k] : 0.0) / nuc;
        if (p > 0)
            entropy -= p * log(p);
    }
    *out = (eopt_sv_summary){sqrt(lmax), smin, sqrt(sum2), nuc, nuc > 0 ? exp(entropy) : NAN};
    return EOPT_OK;
}

eopt_status eopt_power_sn(eopt_backend *be, int m, int n, const float *A, float *v, float *u, float *norm, int iters,
                          double *sigma)
{
    for (int k = 0; k < iters; k++) {
        /* u = A v / |A v|;  v = A^T u / |A^T u|, |A^T u| -> sigma from below */
        be->gemm(be, EOPT_PREC_FP32, 0, 0, m, 1, n, 1.0f, A, n, 0, v, 1, 0, 0.0f, u, 1, 0, 1);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, 1, m, u, NULL, m, 1.0f, norm);
        eopt_ew_run(be, EOPT_EW(div_ds_clamp, m, .y = u, .a = u, .norm = norm, .min = 1e-30f));
        be->gemm(be, EOPT_PREC_FP32, 1, 0, n, 1, m, 1.0f, A, n, 0, u, 1, 0, 0.0f, v, 1, 0, 1);
        be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, 1, n, v, NULL, n, 1.0f, norm);
        eopt_ew_run(be, EOPT_EW(div_ds_clamp, n, .y = v, .a = v, .norm = norm, .min = 1e-30f));
    }
    *sigma = eopt_read_scalar(be, norm);
    return eopt_backend_check(be, "power iteration");
}

/* ---- the per-run diagnostics ---- */

eopt_status eopt_diagnostics_create(eopt_model *m, uint64_t seed, eopt_diagnostics *d)
{
    memset(d, 0, sizeof *d);
    d->be = m->be;
    d->seed = seed ^ 0xd1a65eedULL;
    d->nparams = m->nparams;
    d->mat = calloc((size_t)m->nparams, sizeof *d->mat);
    d->notes = calloc((size_t)m->nparams, sizeof *d->notes);
    d->attn = calloc((size_t)(m->cfg.n_layer > 0 ? m->cfg.n_layer : 1), sizeof *d->attn);
    if (!d->mat || !d->notes || !d->attn)
        return eopt_fail(EOPT_ERR_NOMEM, "diagnostics: out of memory");
    int64_t r2 = 1;
    for (int i = 0; i < m->nparams; i++) {
        const eopt_tensor *w = m->params[i].w;
        if (w->ndim != 2)
            continue;
        eopt_diag_matrix *x = &d->mat[d->nmat++];
        x->index = i, x->m = (int)w->shape[0], x->n = (int)w->shape[1];
        x->v_w = m->be->alloc(m->be, sizeof(float) * (size_t)x->n);
        x->v_u = m->be->alloc(m->be, sizeof(float) * (size_t)x->n);
        if (!x->v_w || !x->v_u)
            return eopt_fail(EOPT_ERR_NOMEM, "diagnostics: out of device memory");
        const int64_t r = x->m < x->n ? x->m : x->n;
        d->max_m = x->m > d->max_m ? x->m : d->max_m;
        r2 = r > r2 ? r : r2;
    }
    /* u [mx], norm [1], Gram [r2 r2], eigenvalues [r2] */
    d->scratch = m->be->alloc(m->be, sizeof(float) * (size_t)(d->max_m + 1 + r2 * r2 + r2));
    d->host = malloc(sizeof(float) * (size_t)r2);
    if (!d->scratch || !d->host)
        return eopt_fail(EOPT_ERR_NOMEM, "diagnostics: out of memory");
    return EOPT_OK;
}

void eopt_diagnostics_free(eopt_diagnostics *d)
{
    for (int k = 0; d->mat && k < d->nmat; k++) {
        if (d->mat[k].v_w)
            d->be->free(d->be, d->mat[k].v_w);
        if (d->mat[k].v_u)
            d->be->free(d->be, d->mat[k].v_u);
    }
    if (d->scratch)
        d->be->free(d->be, d->scratch);
    free(d->mat);
    free(d->notes);
    free(d->attn);
    free(d->host);
    memset(d, 0, sizeof *d);
}

/* Power iteration on A with the kept vector v: a cold start (random normal vector of the run's
 * Philox stream, many iterations) the first time and after a zero or non-finite result. */
static eopt_status spectral_norm(eopt_diagnostics *d, int m, int n, const float *A, float *v, int *warm,
                                 uint64_t stream, double *sigma)
{
    float *u = d->scratch, *norm = d->scratch + m;
    if (!*warm)
        d->be->random(d->be, EOPT_RAND_NORMAL, d->seed, stream << 32, n, v);
    EOPT_TRY(eopt_power_sn(d->be, m, n, A, v, u, norm, *warm ? EOPT_POWER_ITERS_WARM : EOPT_POWER_ITERS_COLD, sigma));
    *warm = isfinite(*sigma) && *sigma > 0;
    return EOPT_OK;
}

eopt_status eopt_diagnostics_collect(eopt_diagnostics *d, eopt_model *m, const eopt_tensor *update, int nopt,
                                     eopt_optimizer *const *opt, int *const *model_index)
{
    for (int k = 0; k < d->nmat; k++) {
        eopt_diag_matrix *x = &d->mat[k];
        const float *W = eopt_f32(m->params[x->index].w), *U = eopt_f32(&update[x->index]);
        float *gram = d->scratch + d->max_m + 1;
        const int r = x->m < x->n ? x->m : x->n;
        EOPT_TRY(spectral_norm(d, x->m, x->n, W, x->v_w, &x->warm_w, 2 * (uint64_t)x->index, &x->weight_sn));
        EOPT_TRY(spectral_norm(d, x->m, x->n, U, x->v_u, &x->warm_u, 2 * (uint64_t)x->index + 1, &x->update_sn));
        EOPT_TRY(eopt_sv_summary_of(d->be, x->m, x->n, U, gram, gram + (int64_t)r * r, d->host, &x->update_sv));
    }
    memset(d->notes, 0, sizeof *d->notes * (size_t)d->nparams);
    for (int o = 0; o < nopt; o++)
        for (int k = 0; k < opt[o]->nparams; k++)
            d->notes[model_index[o][k]] = opt[o]->diag[k];
    return eopt_model_attn_logit_max(m, d->attn, &d->nlayers);
}

static void num(FILE *f, const char *sep, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, "%s\"%s\": %.9g", sep, key, v);
    else
        fprintf(f, "%s\"%s\": null", sep, key);
}

void eopt_diagnostics_write(const eopt_diagnostics *d, const eopt_model *m, int64_t step, FILE *f)
{
    fprintf(f, "{\"step\": %lld, \"diagnostics\": {\"params\": {", (long long)step);
    int first = 1;
    for (int i = 0; i < d->nparams; i++) {
        const eopt_diag_matrix *x = NULL;
        for (int k = 0; k < d->nmat && !x; k++)
            x = d->mat[k].index == i ? &d->mat[k] : NULL;
        const eopt_diag_values *nv = &d->notes[i];
        if (!x && nv->n == 0)
            continue;
        fprintf(f, "%s\"%s\": {", first ? "" : ", ", m->params[i].name);
        first = 0;
        const char *sep = "";
        if (x) {
            num(f, "", "weight_sn", x->weight_sn);
            num(f, ", ", "update_sn", x->update_sn);
            const eopt_sv_summary *s = &x->update_sv;
            fputs(", \"update_sv\": {", f);
            num(f, "", "max", s->max);
            num(f, ", ", "min", s->min);
            num(f, ", ", "fro", s->fro);
            num(f, ", ", "nuc", s->nuc);
            num(f, ", ", "erank", s->erank);
            fputc('}', f);
            sep = ", ";
        }
        for (int k = 0; k < nv->n; k++, sep = ", ")
            num(f, sep, nv->key[k], nv->value[k]);
        fputc('}', f);
    }
    fputc('}', f);
    if (d->nlayers > 0) {
        fputs(", \"attn_logit_max\": [", f);
        for (int l = 0; l < d->nlayers; l++) {
            if (isfinite(d->attn[l]))
                fprintf(f, "%s%.9g", l ? ", " : "", d->attn[l]);
            else
                fprintf(f, "%snull", l ? ", " : "");
        }
        fputc(']', f);
    }
    fputs("}}\n", f);
}

/* ---- loss spikes ---- */

eopt_status eopt_spike_init(eopt_spike_detector *s, int window, double threshold)
{
    memset(s, 0, sizeof *s);
    s->window = window, s->threshold = threshold;
    s->buf = calloc((size_t)(window > 0 ? window : 1), sizeof *s->buf);
    if (!s->buf)
        return eopt_fail(EOPT_ERR_NOMEM, "spike detector: out of memory");
    return EOPT_OK;
}

void eopt_spike_free(eopt_spike_detector *s)
{
    free(s->buf);
    s->buf = NULL;
}

static void push(eopt_spike_detector *s, double x)
{
    s->buf[s->head] = x;
    s->head = (s->head + 1) % s->window;
    if (s->count < s->window)
        s->count++;
}

int eopt_spike_check(eopt_spike_detector *s, double loss, eopt_spike *out)
{
    if (s->threshold <= 0 || !isfinite(loss))
        return 0;
    if (s->count < s->window) { /* warm-up */
        push(s, loss);
        return 0;
    }
    /* oldest first, so that a window restored on resume sums in the same order */
    double mean = 0, var = 0;
    for (int k = 0; k < s->count; k++)
        mean += s->buf[(s->head + k) % s->window];
    mean /= s->count;
    for (int k = 0; k < s->count; k++) {
        const double e = s->buf[(s->head + k) % s->window] - mean;
        var += e * e;
    }
    const double std = sqrt(var / (s->count - 1)), z = std > 0 ? (loss - mean) / std : 0;
    if (z > s->threshold) {
        *out = (eopt_spike){z, mean, std};
        s->spikes++;
        return 1;
    }
    push(s, loss);
    return 0;
}

int eopt_spike_values(const eopt_spike_detector *s, double *out)
{
    for (int k = 0; k < s->count; k++)
        out[k] = s->buf[(s->head - s->count + k + s->window) % s->window];
    return s->count;
}

void eopt_spike_restore(eopt_spike_detector *s, const double *v, int n)
{
    s->count = s->head = 0;
    for (int k = n > s->window ? n - s->window : 0; k < n; k++)
        push(s, v[k]);
}
