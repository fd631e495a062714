/* A study's results (report.h). */
#include "report.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "json.h"
#include "study.h"

static const char *const state_names[] = {"pending",  "running",     "unfinished", "finished",
                                          "diverged", "interrupted", "failed"};

const char *eopt_run_state_name(eopt_run_state s) { return state_names[s]; }

/* The whole file at `path` parsed; a missing file is *found = 0 and no error (found NULL: an error). */
static eopt_status load_json(const char *path, eopt_json *v, int *found)
{
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f && found && errno == ENOENT)
        return *found = 0, EOPT_OK;
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    char buf[65536];
    for (size_t got; mem && (got = fread(buf, 1, sizeof buf, f)) > 0;)
        fwrite(buf, 1, got, mem);
    int bad = ferror(f);
    fclose(f);
    if (!mem || fclose(mem) != 0 || bad)
        return free(text), eopt_fail(EOPT_ERR_IO, "%s: cannot read", path);
    eopt_status st = eopt_json_parse(text, v);
    free(text);
    if (found)
        *found = 1;
    return st == EOPT_OK ? st : eopt_fail_context(st, "%s", path);
}

static int same_value(const eopt_report_value *a, const eopt_report_value *b)
{
    return a->is_num && b->is_num ? a->num == b->num : !a->is_num && !b->is_num && strcmp(a->text, b->text) == 0;
}

/* Numbers by value, text alphabetically, numbers first. */
static int compare_values(const eopt_report_value *a, const eopt_report_value *b)
{
    if (a->is_num && b->is_num)
        return (a->num > b->num) - (a->num < b->num);
    if (a->is_num != b->is_num)
        return b->is_num - a->is_num;
    return strcasecmp(a->text, b->text);
}

/* A group setting (a schedule, written as its libconfig text) as a short label: its one number
 * when it holds a kind and one number ({ kind = "constant"; value = 0.3; } is 0.3, a number),
 * else its kind and numeric members ("cosine from=0.3 to=0 start=0 end=250"). 0 if `text` is no
 * libconfig group. */
static int group_label(const char *text, char *buf, size_t size, eopt_report_value *v)
{
    config_t cfg;
    size_t n = strlen(text) + 8;
    char *src = malloc(n);
    if (!src)
        return 0;
    snprintf(src, n, "v = %s;", text);
    config_init(&cfg);
    int ok = config_read_string(&cfg, src) == CONFIG_TRUE;
    const config_setting_t *g = ok ? config_lookup(&cfg, "v") : NULL;
    const char *kind = NULL;
    ok = g && config_setting_type(g) == CONFIG_TYPE_GROUP;
    if (ok) {
        int nums = 0;
        size_t len = 0;
        config_setting_lookup_string(g, "kind", &kind);
        len = (size_t)snprintf(buf, size, "%s", kind ? kind : "");
        for (int k = 0; k < config_setting_length(g) && len < size; k++) {
            const config_setting_t *e = config_setting_get_elem(g, k);
            int t = config_setting_type(e);
            if (t != CONFIG_TYPE_FLOAT && t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
                continue;
            v->num = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(e) : (double)config_setting_get_int64(e);
            nums++;
            len += (size_t)snprintf(buf + len, size - len, "%s%s=%g", len ? " " : "", config_setting_name(e), v->num);
        }
        v->is_num = nums == 1 && config_setting_length(g) == 1 + (kind != NULL);
        if (v->is_num)
            snprintf(buf, size, "%g", v->num);
    }
    config_destroy(&cfg);
    free(src);
    return ok;
}

/* A setting; an axis the run does not set (j NULL: the base config's value) is "-". */
static eopt_status value_of(const eopt_json *j, eopt_report_value *v)
{
    char buf[256];
    const char *text = buf;
    v->is_num = j && j->type == EOPT_JSON_NUMBER;
    v->num = j ? j->num : 0;
    if (!j)
        text = "-";
    else if (j->type == EOPT_JSON_NUMBER)
        snprintf(buf, sizeof buf, "%g", j->num);
    else if (j->type == EOPT_JSON_BOOL)
        text = j->num ? "true" : "false";
    else if (j->type == EOPT_JSON_STRING && !(j->str[0] == '{' && group_label(j->str, buf, sizeof buf, v)))
        text = j->str;
    else if (j->type != EOPT_JSON_STRING)
        return eopt_fail(EOPT_ERR_FORMAT, "a setting is not a number, string or boolean");
    v->text = strdup(text);
    return v->text ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
}

int eopt_report_axis(const eopt_report *r, const char *name)
{
    int hit = -1;
    size_t n = strlen(name);
    for (int a = 0; a < r->naxes; a++) {
        const char *p = r->axes[a];
        size_t len = strlen(p);
        if (strcmp(p, name) == 0)
            return a;
        if (len > n && p[len - n - 1] == '.' && strcmp(p + len - n, name) == 0)
            hit = hit == -1 ? a : -2; /* -2: more than one */
    }
    return hit < 0 ? -1 : hit;
}

/* The label of each axis: its last path component, lengthened until no two axes share one. */
static eopt_status make_labels(eopt_report *r)
{
    r->labels = calloc((size_t)r->naxes, sizeof *r->labels);
    if (!r->labels)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int a = 0; a < r->naxes; a++) {
        const char *p = r->axes[a], *s = p + strlen(p);
        for (;;) {
            while (s > p && s[-1] != '.')
                s--;
            int clash = 0;
            for (int b = 0; b < r->naxes; b++) {
                size_t lb = strlen(r->axes[b]), ls = strlen(s);
                clash |= b != a && lb >= ls && strcmp(r->axes[b] + lb - ls, s) == 0 && (lb == ls || r->axes[b][lb - ls - 1] == '.');
            }
            if (!clash || s == p)
                break;
            s--; /* past the dot, to take the component before it */
        }
        if (!(r->labels[a] = strdup(s)))
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    }
    return EOPT_OK;
}

static eopt_status read_axes(eopt_report *r, const eopt_json *study, const char *path)
{
    const eopt_json *axes = eopt_json_get(study, "axes"), *seed = eopt_json_get(study, "seed_axis");
    if (!axes || axes->type != EOPT_JSON_ARRAY)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: no \"axes\" list", path);
    if (!(r->axes = calloc((size_t)axes->n + 1, sizeof *r->axes)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    r->seed_axis = -1;
    for (int a = 0; a < axes->n; a++) {
        if (axes->items[a].type != EOPT_JSON_STRING)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: axes[%d] is not a string", path, a);
        if (!(r->axes[r->naxes++] = strdup(axes->items[a].str)))
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        if (seed && seed->type == EOPT_JSON_STRING && strcmp(seed->str, axes->items[a].str) == 0)
            r->seed_axis = a;
    }
    if (seed && seed->type == EOPT_JSON_STRING && r->seed_axis < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: seed_axis \"%s\" is not one of the axes", path, seed->str);
    return make_labels(r);
}

static eopt_status read_settings(eopt_report *r, eopt_report_run *run, const eopt_json *s, const char *path)
{
    if (!(run->values = calloc((size_t)r->naxes, sizeof *run->values)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int a = 0; a < r->naxes; a++) {
        eopt_status st = value_of(eopt_json_get(s, r->axes[a]), &run->values[a]);
        if (st != EOPT_OK)
            return eopt_fail_context(st, "%s: run \"%s\", axis %s", path, run->name, r->axes[a]);
    }
    return EOPT_OK;
}

static eopt_status read_runs(eopt_report *r, const eopt_json *study, const char *path)
{
    const eopt_json *runs = eopt_json_get(study, "runs");
    if (!runs || runs->type != EOPT_JSON_ARRAY)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: no \"runs\" list", path);
    if (!(r->runs = calloc((size_t)runs->n + 1, sizeof *r->runs)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < runs->n; k++) {
        eopt_report_run *run = &r->runs[r->nruns++];
        const char *name = eopt_json_str(&runs->items[k], "name");
        if (!name || !*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strlen(name) >= sizeof run->name)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: runs[%d] has no \"name\" that is a file name", path, k);
        snprintf(run->name, sizeof run->name, "%s", name);
        const eopt_json *s = eopt_json_get(&runs->items[k], "settings");
        if (!s || s->type != EOPT_JSON_OBJECT)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: run \"%s\" has no \"settings\" object", path, name);
        EOPT_TRY(read_settings(r, run, s, path));
    }
    return EOPT_OK;
}

/* The run's state from its folder, as `eopt study --status` tells it. */
static eopt_status read_state(eopt_report_run *run, const char *dir)
{
    char path[1400];
    eopt_study_run_state st;
    snprintf(path, sizeof path, "%s/runs/%s", dir, run->name);
    eopt_study_state(path, &st);
    int s = 0;
    while (s <= EOPT_RUN_FAILED && strcmp(st.state, state_names[s]) != 0)
        s++;
    if (s > EOPT_RUN_FAILED)
        return eopt_fail(EOPT_ERR_FORMAT, "%s/outcome.json: \"state\" is \"%s\", not finished, diverged, interrupted or failed",
                         path, st.state);
    run->state = (eopt_run_state)s;
    run->step = st.step > 0 ? st.step : 0;
    snprintf(run->reason, sizeof run->reason, "%s", st.reason);
    return EOPT_OK;
}

static eopt_status read_run(eopt_report_run *run, const char *dir)
{
    char path[1400];
    struct stat sb;
    run->final_eval = run->best_eval = NAN;
    snprintf(path, sizeof path, "%s/runs/%s/metrics.jsonl", dir, run->name);
    if (stat(path, &sb) == 0)
        EOPT_TRY(eopt_run_metrics_load(path, &run->m));
    for (int k = 0; k < run->m.ne; k++)
        if (isfinite(run->m.eval[k])) {
            run->final_eval = run->m.eval[k];
            run->best_eval = fmin(run->m.eval[k], isnan(run->best_eval) ? INFINITY : run->best_eval);
        }
    eopt_json info;
    int found;
    snprintf(path, sizeof path, "%s/runs/%s/run.json", dir, run->name);
    EOPT_TRY(load_json(path, &info, &found));
    double threads = eopt_json_num(eopt_json_get(&info, "machine"), "threads");
    run->threads = isfinite(threads) ? (int)threads : 0;
    eopt_json_free(&info);
    return read_state(run, dir);
}

/* The axes of x and of `by` (NULL: all but seed and x). */
static eopt_status pick_axes(eopt_report *r, const char *x, const char *by)
{
    r->x_axis = -1;
    if (x && (r->x_axis = eopt_report_axis(r, x)) < 0)
        return eopt_fail(EOPT_ERR_ARG, "--x %s: no such axis (or more than one ends so) in %s/study.json", x, r->dir);
    for (int a = 0; !x && a < r->naxes; a++) {
        size_t n = strlen(r->axes[a]);
        if (a != r->seed_axis && n >= 2 && strcmp(r->axes[a] + n - 2, "lr") == 0 && (n == 2 || r->axes[a][n - 3] == '.'))
            r->x_axis = r->x_axis == -1 ? a : r->x_axis; /* the first such axis */
    }
    if (!(r->by = calloc((size_t)r->naxes + 1, sizeof *r->by)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (const char *s = by; s && *s;) {
        char name[256];
        size_t n = strcspn(s, ",");
        snprintf(name, sizeof name, "%.*s", (int)(n < 255 ? n : 255), s);
        int a = eopt_report_axis(r, name);
        if (a < 0)
            return eopt_fail(EOPT_ERR_ARG, "--by %s: no such axis (or more than one ends so) in %s/study.json", name, r->dir);
        r->by[r->nby++] = a;
        s += n + (s[n] == ',');
    }
    for (int a = 0; !by && a < r->naxes; a++)
        if (a != r->seed_axis && a != r->x_axis)
            r->by[r->nby++] = a;
    return EOPT_OK;
}

/* The axes but the seed in the table's order: the `by` axes, then x, then the rest in file order
 * (order has room for naxes); their count. */
static int column_order(const eopt_report *r, int *order)
{
    int n = 0;
    for (int k = 0; k < r->nby; k++)
        order[n++] = r->by[k];
    if (r->x_axis >= 0 && r->x_axis != r->seed_axis)
        order[n++] = r->x_axis;
    for (int a = 0; a < r->naxes; a++) {
        int seen = a == r->seed_axis;
        for (int k = 0; k < n; k++)
            seen |= order[k] == a;
        if (!seen)
            order[n++] = a;
    }
    return n;
}

/* The order of configurations: by their settings in column order. */
static int compare_configs(const void *pa, const void *pb, void *ctx)
{
    const eopt_report *r = ctx;
    const eopt_report_value *a = r->runs[((const eopt_report_config *)pa)->first].values,
                            *b = r->runs[((const eopt_report_config *)pb)->first].values;
    int order[r->naxes + 1], n = column_order(r, order);
    for (int k = 0; k < n; k++) {
        int c = compare_values(&a[order[k]], &b[order[k]]);
        if (c)
            return c;
    }
    return 0;
}

static double mean_of(const double *v, int n)
{
    double s = 0;
    for (int k = 0; k < n; k++)
        s += v[k];
    return n ? s / n : NAN;
}

/* Sample standard deviation sqrt(sum (v - mean)^2 / (n - 1)); NaN for n < 2. */
static double std_of(const double *v, int n)
{
    double m = mean_of(v, n), s = 0;
    for (int k = 0; k < n; k++)
        s += (v[k] - m) * (v[k] - m);
    return n > 1 ? sqrt(s / (n - 1)) : NAN;
}

static void aggregate(const eopt_report *r, eopt_report_config *c)
{
    double fin[c->nruns], best[c->nruns], rate[c->nruns];
    int nrate = 0;
    c->n = 0;
    for (int k = 0; k < c->nruns; k++) {
        const eopt_report_run *run = &r->runs[c->runs[k]];
        c->spikes += run->m.nspike;
        c->diverged += run->state == EOPT_RUN_DIVERGED;
        c->unfinished += run->state != EOPT_RUN_DIVERGED && run->state != EOPT_RUN_FINISHED;
        if (run->m.n && isfinite(run->m.rate))
            rate[nrate++] = run->m.rate;
        if (run->state == EOPT_RUN_FINISHED && isfinite(run->final_eval))
            fin[c->n] = run->final_eval, best[c->n++] = run->best_eval;
    }
    c->final_mean = mean_of(fin, c->n), c->final_std = std_of(fin, c->n);
    c->best_mean = mean_of(best, c->n), c->best_std = std_of(best, c->n);
    c->tokens_per_s = mean_of(rate, nrate);
}

/* Runs with equal settings outside the seed axis form one configuration. */
static eopt_status group(eopt_report *r)
{
    if (!(r->configs = calloc((size_t)r->nruns + 1, sizeof *r->configs)))
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < r->nruns; k++) {
        int c = 0;
        for (; c < r->nconfigs; c++) {
            int same = 1;
            for (int a = 0; a < r->naxes; a++)
                same &= a == r->seed_axis || same_value(&r->runs[k].values[a], &r->runs[r->configs[c].first].values[a]);
            if (same)
                break;
        }
        if (c == r->nconfigs)
            r->configs[r->nconfigs++].first = k;
        eopt_report_config *cf = &r->configs[c];
        int *runs = realloc(cf->runs, (size_t)(cf->nruns + 1) * sizeof *runs);
        if (!runs)
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        cf->runs = runs;
        cf->runs[cf->nruns++] = k;
    }
    qsort_r(r->configs, (size_t)r->nconfigs, sizeof *r->configs, compare_configs, r);
    for (int c = 0; c < r->nconfigs; c++) {
        for (int k = 0; k < r->configs[c].nruns; k++)
            r->runs[r->configs[c].runs[k]].config = c;
        aggregate(r, &r->configs[c]);
    }
    return EOPT_OK;
}

static eopt_status load(const char *dir, const char *x, const char *by, eopt_report *r)
{
    char path[1100];
    eopt_json study;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    snprintf(path, sizeof path, "%s/study.json", dir);
    EOPT_TRY(load_json(path, &study, NULL));
    const char *schema = eopt_json_str(&study, "schema"), *name = eopt_json_str(&study, "name");
    double version = eopt_json_num(&study, "version");
    eopt_status st = EOPT_OK;
    if (!schema || strcmp(schema, "eopt-study") != 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s: not a study file (\"schema\" is not \"eopt-study\")", path);
    else if (version != 1)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s: version %g; this eopt reads version 1", path, version);
    snprintf(r->name, sizeof r->name, "%s", name ? name : "study");
    if (st == EOPT_OK)
        st = read_axes(r, &study, path);
    if (st == EOPT_OK)
        st = read_runs(r, &study, path);
    eopt_json_free(&study);
    EOPT_TRY(st);
    for (int k = 0; k < r->nruns; k++)
        EOPT_TRY(read_run(&r->runs[k], dir));
    EOPT_TRY(pick_axes(r, x, by));
    return group(r);
}

eopt_status eopt_report_load(const char *dir, const char *x_axis, const char *by, eopt_report *r)
{
    memset(r, 0, sizeof *r);
    eopt_status st = load(dir, x_axis, by, r);
    if (st != EOPT_OK)
        eopt_report_free(r);
    return st;
}

void eopt_report_free(eopt_report *r)
{
    for (int k = 0; k < r->nruns; k++) {
        for (int a = 0; r->runs[k].values && a < r->naxes; a++)
            free(r->runs[k].values[a].text);
        free(r->runs[k].values);
        eopt_run_metrics_free(&r->runs[k].m);
    }
    for (int a = 0; a < r->naxes; a++)
        free(r->axes[a]), free(r->labels ? r->labels[a] : NULL);
    for (int c = 0; c < r->nconfigs; c++)
        free(r->configs[c].runs);
    free(r->runs), free(r->axes), free(r->labels), free(r->by), free(r->configs);
    memset(r, 0, sizeof *r);
}

/* ---- the table ---- */

/* The steps at which a configuration's runs diverged, "130, 245". */
static void diverged_steps(const eopt_report *r, const eopt_report_config *c, const char *sep, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < c->nruns && len < size; k++) {
        const eopt_report_run *run = &r->runs[c->runs[k]];
        if (run->state == EOPT_RUN_DIVERGED)
            len += (size_t)snprintf(buf + len, size - len, "%s%lld", len ? sep : "", (long long)run->step);
    }
}

static const char *num(double v, const char *fmt, char *buf, size_t size)
{
    if (!isfinite(v))
        return "";
    snprintf(buf, size, fmt, v);
    return buf;
}

/* "3.2145 ± 0.0123" (without the spread for fewer than 2 values; "-" for none). */
static const char *mean_std(double mean, double std, char *buf, size_t size)
{
    if (!isfinite(mean))
        return "-";
    if (isfinite(std))
        snprintf(buf, size, "%.4f ± %.4f", mean, std);
    else
        snprintf(buf, size, "%.4f", mean);
    return buf;
}

eopt_status eopt_report_write_md(const eopt_report *r, FILE *f)
{
    int order[r->naxes + 1], ncol = column_order(r, order);
    fprintf(f, "| ");
    for (int k = 0; k < ncol; k++)
        fprintf(f, "%s | ", r->labels[order[k]]);
    fprintf(f, "runs | final eval loss | best eval loss | n | spikes | diverged (at step) | unfinished | tokens/s |\n|");
    for (int k = 0; k < ncol; k++)
        fprintf(f, "---|");
    fprintf(f, "---:|---:|---:|---:|---:|---|---:|---:|\n");
    for (int c = 0; c < r->nconfigs; c++) {
        const eopt_report_config *cf = &r->configs[c];
        char fin[64], best[64], div[512], rate[32];
        fprintf(f, "| ");
        for (int k = 0; k < ncol; k++)
            fprintf(f, "%s | ", r->runs[cf->first].values[order[k]].text);
        diverged_steps(r, cf, ", ", div, sizeof div);
        fprintf(f, "%d | %s | %s | %d | %d | ", cf->nruns, mean_std(cf->final_mean, cf->final_std, fin, sizeof fin),
                mean_std(cf->best_mean, cf->best_std, best, sizeof best), cf->n, cf->spikes);
        if (cf->diverged)
            fprintf(f, "%d (%s) | ", cf->diverged, div);
        else
            fprintf(f, "0 | ");
        fprintf(f, "%d | %s |\n", cf->unfinished, isfinite(cf->tokens_per_s) ? num(cf->tokens_per_s, "%.0f", rate, sizeof rate) : "-");
    }
    return ferror(f) ? eopt_fail(EOPT_ERR_IO, "cannot write the summary table") : EOPT_OK;
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++)
        fputs(*s == '"' ? "\"\"" : (char[]){*s, 0}, f);
    fputc('"', f);
}

eopt_status eopt_report_write_csv(const eopt_report *r, FILE *f)
{
    int order[r->naxes + 1], ncol = column_order(r, order);
    for (int k = 0; k < ncol; k++)
        csv_field(f, r->axes[order[k]]), fputc(',', f);
    fprintf(f, "runs,final_eval_mean,final_eval_std,best_eval_mean,best_eval_std,n,spikes,diverged,diverged_steps,"
               "unfinished,tokens_per_s\n");
    for (int c = 0; c < r->nconfigs; c++) {
        const eopt_report_config *cf = &r->configs[c];
        char b[5][32], div[512];
        for (int k = 0; k < ncol; k++)
            csv_field(f, r->runs[cf->first].values[order[k]].text), fputc(',', f);
        diverged_steps(r, cf, ";", div, sizeof div);
        fprintf(f, "%d,%s,%s,%s,%s,%d,%d,%d,%s,%d,%s\n", cf->nruns, num(cf->final_mean, "%.6g", b[0], 32),
                num(cf->final_std, "%.6g", b[1], 32), num(cf->best_mean, "%.6g", b[2], 32),
                num(cf->best_std, "%.6g", b[3], 32), cf->n, cf->spikes, cf->diverged, div, cf->unfinished,
                num(cf->tokens_per_s, "%.1f", b[4], 32));
    }
    return ferror(f) ? eopt_fail(EOPT_ERR_IO, "cannot write the summary table") : EOPT_OK;
}
