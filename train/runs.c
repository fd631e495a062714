/* Run folders' metrics (runs.h). */
#include "runs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "json.h"

/* Appends one record to k parallel series of 8-byte elements (int64_t or double) holding n
 * each, doubling their capacity at every power of two; on failure the records are unchanged. */
static eopt_status push(int n, void **series[], int k)
{
    if (n & (n - 1))
        return EOPT_OK;
    size_t cap = n ? 2 * (size_t)n : 1;
    for (int j = 0; j < k; j++) {
        void *p = realloc(*series[j], cap * 8);
        if (!p)
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory reading metrics");
        *series[j] = p;
    }
    return EOPT_OK;
}

static void run_name(const char *where, char *name, size_t size)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", where);
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = 0;
    const char *slash = strrchr(buf, '/'), *base = slash ? slash + 1 : buf;
    size_t len = strlen(base) < size ? strlen(base) : size - 1; /* a long name is cut, by design */
    memcpy(name, base, len);
    name[len] = 0;
}

/* max(a, b) where NaN means "none yet". */
static double max_of(double a, double b) { return isnan(a) || b > a ? b : a; }

/* The largest of `key` over the members of an object, or of the numbers of an array (key NULL). */
static double largest(const eopt_json *v, const char *key)
{
    double m = NAN;
    for (int k = 0; v && k < v->n; k++) {
        const eopt_json *x = &v->items[k];
        double d = key ? eopt_json_num(x, key) : x->type == EOPT_JSON_NUMBER ? x->num : NAN;
        if (isfinite(d))
            m = max_of(m, d);
    }
    return m;
}

static eopt_status add_diagnostics(eopt_run_metrics *m, int64_t step, const eopt_json *d)
{
    EOPT_TRY(push(m->nd, (void **[]){(void **)&m->dstep, (void **)&m->weight_sn, (void **)&m->update_sn,
                                      (void **)&m->attn_logit}, 4));
    const eopt_json *params = eopt_json_get(d, "params");
    m->dstep[m->nd] = step;
    m->weight_sn[m->nd] = largest(params, "weight_sn");
    m->update_sn[m->nd] = largest(params, "update_sn");
    m->attn_logit[m->nd++] = largest(eopt_json_get(d, "attn_logit_max"), NULL);
    return EOPT_OK;
}

/* One line's record: the header, a step, its spike, an evaluation or diagnostics. */
static eopt_status add_line(eopt_run_metrics *m, const eopt_json *v)
{
    const char *schema = eopt_json_str(v, "schema");
    if (schema && strcmp(schema, "eopt-metrics") == 0) {
        double steps = eopt_json_num(v, "steps");
        const char *model = eopt_json_str(v, "model");
        m->steps = isfinite(steps) ? (int64_t)steps : 0;
        m->mlp = model && strcmp(model, "mlp") == 0;
        return EOPT_OK;
    }
    const eopt_json *at = eopt_json_get(v, "step");
    if (!at || at->type != EOPT_JSON_NUMBER)
        return EOPT_OK;
    int64_t step = (int64_t)at->num;
    const eopt_json *diag = eopt_json_get(v, "diagnostics");
    if (diag)
        return add_diagnostics(m, step, diag);
    if (eopt_json_get(v, "train_loss")) {
        EOPT_TRY(push(m->n, (void **[]){(void **)&m->step, (void **)&m->train}, 2));
        m->step[m->n] = step, m->train[m->n++] = eopt_json_num(v, "train_loss");
        m->time_s = eopt_json_num(v, "time_s");
        m->rate = eopt_json_num(v, m->mlp ? "samples_per_s" : "tokens_per_s");
        if (!eopt_json_get(v, "spike"))
            return EOPT_OK;
        EOPT_TRY(push(m->nspike, (void **[]){(void **)&m->spike_step, (void **)&m->spike_loss}, 2));
        m->spike_step[m->nspike] = step, m->spike_loss[m->nspike++] = m->train[m->n - 1];
        return EOPT_OK;
    }
    if (eopt_json_get(v, "eval_loss")) {
        EOPT_TRY(push(m->ne, (void **[]){(void **)&m->estep, (void **)&m->eval, (void **)&m->acc}, 3));
        m->estep[m->ne] = step, m->eval[m->ne] = eopt_json_num(v, "eval_loss");
        m->acc[m->ne++] = eopt_json_num(v, "eval_accuracy");
    }
    return EOPT_OK;
}

static eopt_status read_lines(eopt_run_metrics *m, FILE *f)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    eopt_status st = EOPT_OK;
    for (int no = 1; st == EOPT_OK && (len = getline(&line, &cap, f)) > 0; no++) {
        eopt_json v;
        st = eopt_json_parse(line, &v);
        if (st == EOPT_OK) {
            st = add_line(m, &v);
            eopt_json_free(&v);
        } else if (line[len - 1] != '\n') /* the last line, still being written */
            st = EOPT_OK;
        if (st != EOPT_OK)
            st = eopt_fail_context(st, "%s: line %d", m->path, no);
    }
    free(line);
    return st;
}

eopt_status eopt_run_metrics_load(const char *where, eopt_run_metrics *m)
{
    struct stat st;
    memset(m, 0, sizeof *m);
    if (stat(where, &st) != 0)
        return eopt_fail(EOPT_ERR_IO, "%s: no run folder or metrics file there", where);
    int dir = S_ISDIR(st.st_mode);
    snprintf(m->path, sizeof m->path, dir ? "%s/metrics.jsonl" : "%s", where);
    run_name(where, m->name, sizeof m->name);
    FILE *f = fopen(m->path, "r");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "%s: %s (is %s a run folder?)", m->path, strerror(errno), where);
    m->time_s = m->rate = NAN;
    eopt_status rc = read_lines(m, f);
    fclose(f);
    if (rc != EOPT_OK)
        eopt_run_metrics_free(m);
    return rc;
}

eopt_status eopt_run_metrics_read(const char *where, eopt_run_metrics *m)
{
    EOPT_TRY(eopt_run_metrics_load(where, m));
    if (m->n > 0)
        return EOPT_OK;
    eopt_run_metrics_free(m);
    return eopt_fail(EOPT_ERR_FORMAT, "%s: no training steps recorded", m->path);
}

void eopt_run_metrics_free(eopt_run_metrics *m)
{
    void *all[] = {m->step, m->train, m->estep, m->eval, m->acc, m->spike_step, m->spike_loss,
                   m->dstep, m->weight_sn, m->update_sn, m->attn_logit};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++)
        free(all[k]);
    m->step = m->estep = m->spike_step = m->dstep = NULL;
    m->train = m->eval = m->acc = m->spike_loss = m->weight_sn = m->update_sn = m->attn_logit = NULL;
    m->n = m->ne = m->nspike = m->nd = 0;
}
