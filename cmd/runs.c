/* Run folders' metrics (runs.h). */
#include "runs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The number after "key": in a flat JSON line (NaN for null); found = 0 if the key is absent. */
static double field(const char *line, const char *key, int *found)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *s = strstr(line, pat);
    *found = s != NULL;
    if (!s)
        return NAN;
    s += strlen(pat);
    return strncmp(s, "null", 4) == 0 ? NAN : strtod(s, NULL);
}

static int grow(eopt_run_metrics *m, int n, int eval)
{
    if (n & (n - 1))
        return 0;
    size_t cap = n ? 2 * (size_t)n : 1; /* doubled at every power of two */
    if (eval) {
        int64_t *s = realloc(m->estep, cap * sizeof *s);
        double *e = s ? realloc(m->eval, cap * sizeof *e) : NULL, *a = e ? realloc(m->acc, cap * sizeof *a) : NULL;
        m->estep = s ? s : m->estep, m->eval = e ? e : m->eval, m->acc = a ? a : m->acc;
        return a ? 0 : -1;
    }
    int64_t *s = realloc(m->step, cap * sizeof *s);
    double *t = s ? realloc(m->train, cap * sizeof *t) : NULL;
    m->step = s ? s : m->step, m->train = t ? t : m->train;
    return t ? 0 : -1;
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

int eopt_run_metrics_read(const char *where, eopt_run_metrics *m, char *err, size_t size)
{
    struct stat st;
    memset(m, 0, sizeof *m);
    if (stat(where, &st) != 0) {
        snprintf(err, size, "%s: no run folder or metrics file there", where);
        return -1;
    }
    int dir = S_ISDIR(st.st_mode);
    snprintf(m->path, sizeof m->path, dir ? "%s/metrics.jsonl" : "%s", where);
    run_name(where, m->name, sizeof m->name);
    FILE *f = fopen(m->path, "r");
    if (!f) {
        snprintf(err, size, "%s: %s (is %s a run folder?)", m->path, strerror(errno), where);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, found;
    m->time_s = m->rate = NAN;
    while (rc == 0 && getline(&line, &cap, f) > 0) {
        if (strstr(line, "\"schema\": \"eopt-metrics\"")) {
            m->steps = (int64_t)field(line, "steps", &found);
            m->mlp = strstr(line, "\"model\": \"mlp\"") != NULL;
            continue;
        }
        int64_t step = (int64_t)field(line, "step", &found);
        if (!found)
            continue;
        double loss = field(line, "train_loss", &found);
        if (found) {
            if ((rc = grow(m, m->n, 0)) != 0)
                break;
            m->step[m->n] = step, m->train[m->n++] = loss;
            m->time_s = field(line, "time_s", &found);
            m->rate = field(line, m->mlp ? "samples_per_s" : "tokens_per_s", &found);
            continue;
        }
        double eval = field(line, "eval_loss", &found);
        if (found) {
            if ((rc = grow(m, m->ne, 1)) != 0)
                break;
            m->estep[m->ne] = step, m->eval[m->ne] = eval;
            m->acc[m->ne++] = field(line, "eval_accuracy", &found);
        }
    }
    free(line);
    fclose(f);
    if (rc != 0)
        snprintf(err, size, "%s: out of memory", m->path);
    else if (m->n == 0)
        snprintf(err, size, "%s: no training steps recorded", m->path), rc = -1;
    if (rc != 0)
        eopt_run_metrics_free(m);
    return rc;
}

void eopt_run_metrics_free(eopt_run_metrics *m)
{
    free(m->step), free(m->train), free(m->estep), free(m->eval), free(m->acc);
    m->step = m->estep = NULL, m->train = m->eval = m->acc = NULL;
}
