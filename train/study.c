/* Studies (study.h): parsing, expansion into runs, names, the study folder and run states. */
#include "study.h"

#include <dirent.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run_dir.h"

static const char *const study_keys[] = {"base", "set", "axes", "runs", "grid", "seeds", "jobs", "threads", "dir", NULL};
static const char *const axis_keys[] = {"key", "path", NULL};
static const char *const grid_keys[] = {"key", "path", "values", NULL};

/* "file:line: key: message" */
__attribute__((format(printf, 3, 4))) static eopt_status bad(const eopt_study *s, const config_setting_t *at,
                                                             const char *fmt, ...)
{
    char msg[1024], path[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (const config_setting_t *p = at; p && config_setting_parent(p); p = config_setting_parent(p)) {
        char part[sizeof path];
        if (config_setting_name(p))
            snprintf(part, sizeof part, "%.60s%s%.180s", config_setting_name(p), path[0] ? "." : "", path);
        else
            snprintf(part, sizeof part, "[%d]%s%.180s", config_setting_index(p), path[0] ? "." : "", path);
        memcpy(path, part, sizeof path);
    }
    if (!at)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: %s", s->path, msg);
    return eopt_fail(EOPT_ERR_CONFIG, "%s:%d: %s: %s", s->path, (int)config_setting_source_line(at),
                     path[0] ? path : "(top level)", msg);
}

static eopt_status check_keys(const eopt_study *s, const config_setting_t *g, const char *const *keys)
{
    int nkeys = 0;
    while (keys[nkeys])
        nkeys++;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(s, g, "expected a group { ... }");
    for (int k = 0; k < config_setting_length(g); k++) {
        const config_setting_t *m = config_setting_get_elem(g, k);
        int known = 0;
        for (int j = 0; j < nkeys; j++)
            known |= strcmp(keys[j], config_setting_name(m)) == 0;
        if (known)
            continue;
        char valid[256] = "", hint[96] = "";
        for (int j = 0; j < nkeys; j++)
            snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s%s", j ? ", " : "", keys[j]);
        const char *near = eopt_nearest(config_setting_name(m), keys, nkeys);
        if (near)
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
        return bad(s, m, "unknown key '%s'%s; valid keys here: %s", config_setting_name(m), hint, valid);
    }
    return EOPT_OK;
}

/* ---- values as libconfig text, JSON and name labels ---- */

/* The shortest decimal that reads back as v; `point`: always a float literal ("1.0"). */
static void float_text(double v, int point, char *buf, size_t size)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, size, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (strchr(buf, 'e') && fabs(v) >= 1e-4 && fabs(v) < 1e15) /* 50, not 5e+01 */
        for (int p = 0; p <= 20; p++) {
            snprintf(buf, size, "%.*f", p, v);
            if (strtod(buf, NULL) == v)
                break;
        }
    if (point && isfinite(v) && !strpbrk(buf, ".e"))
        snprintf(buf + strlen(buf), size - strlen(buf), ".0");
}

static void append(char *buf, size_t size, const char *text)
{
    size_t n = strlen(buf);
    snprintf(buf + n, size - n, "%s", text);
}

/* Appends a setting as libconfig text (what `eopt train --set PATH=TEXT` reads back) to buf. */
static void append_setting(const config_setting_t *v, char *buf, size_t size)
{
    int t = config_setting_type(v);
    char tmp[64];
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(tmp, sizeof tmp, "%lld", (long long)config_setting_get_int64(v));
        append(buf, size, tmp);
        return;
    case CONFIG_TYPE_FLOAT:
        float_text(config_setting_get_float(v), 1, tmp, sizeof tmp);
        append(buf, size, tmp);
        return;
    case CONFIG_TYPE_BOOL: append(buf, size, config_setting_get_bool(v) ? "true" : "false"); return;
    case CONFIG_TYPE_STRING:
        append(buf, size, "\"");
        for (const char *c = config_setting_get_string(v); *c; c++) {
            snprintf(tmp, sizeof tmp, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
            append(buf, size, tmp);
        }
        append(buf, size, "\"");
        return;
    default: break;
    }
    append(buf, size, t == CONFIG_TYPE_GROUP ? "{ " : t == CONFIG_TYPE_ARRAY ? "[" : "(");
    for (int k = 0; k < config_setting_length(v); k++) {
        const config_setting_t *e = config_setting_get_elem(v, k);
        if (t == CONFIG_TYPE_GROUP)
            snprintf(tmp, sizeof tmp, "%s = ", config_setting_name(e));
        else
            snprintf(tmp, sizeof tmp, "%s", k ? ", " : "");
        append(buf, size, tmp);
        append_setting(e, buf, size);
        append(buf, size, t == CONFIG_TYPE_GROUP ? "; " : "");
    }
    append(buf, size, t == CONFIG_TYPE_GROUP ? "}" : t == CONFIG_TYPE_ARRAY ? "]" : ")");
}

/* Keeps the characters safe in a file name (letters, digits, . _ + -), the rest as '_'. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (!strchr("._+-", *s) && !(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9'))
            *s = '_';
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* A group's label: its kind and numbers ("cosine-0.3-0-250") when short, else kind and a hash. */
static void group_label(const config_setting_t *v, const char *text, char *buf, size_t size)
{
    const char *kind = NULL;
    char num[64];
    buf[0] = 0;
    if (config_setting_type(v) == CONFIG_TYPE_GROUP)
        config_setting_lookup_string(v, "kind", &kind);
    append(buf, size, kind ? kind : "v");
    for (int k = 0; k < config_setting_length(v); k++) {
        const config_setting_t *e = config_setting_get_elem(v, k);
        int t = config_setting_type(e);
        if (t == CONFIG_TYPE_FLOAT)
            float_text(config_setting_get_float(e), 0, num, sizeof num);
        else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            snprintf(num, sizeof num, "%lld", (long long)config_setting_get_int64(e));
        else
            continue;
        append(buf, size, "-");
        append(buf, size, num);
    }
    if (strlen(buf) > 40 || config_setting_type(v) != CONFIG_TYPE_GROUP)
        snprintf(buf, size, "%s-%08x", kind ? kind : "v", fnv1a(text));
}

static eopt_status make_value(const eopt_study *s, const config_setting_t *v, eopt_study_value *out)
{
    int t = config_setting_type(v);
    memset(out, 0, sizeof *out);
    append_setting(v, out->text, sizeof out->text);
    if (strlen(out->text) + 1 >= sizeof out->text)
        return bad(s, v, "the value is longer than %d characters", (int)sizeof out->text - 2);
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT) {
        out->kind = EOPT_STUDY_NUMBER;
        if (t == CONFIG_TYPE_FLOAT)
            float_text(config_setting_get_float(v), 0, out->label, sizeof out->label);
        else
            snprintf(out->label, sizeof out->label, "%.63s", out->text);
    } else if (t == CONFIG_TYPE_BOOL) {
        out->kind = EOPT_STUDY_BOOL;
        snprintf(out->label, sizeof out->label, "%.63s", out->text);
    } else if (t == CONFIG_TYPE_STRING) {
        out->kind = EOPT_STUDY_STRING;
        snprintf(out->label, sizeof out->label, "%s", config_setting_get_string(v));
        if (!out->label[0])
            return bad(s, v, "an empty string cannot name a run");
    } else {
        out->kind = EOPT_STUDY_GROUP;
        group_label(v, out->text, out->label, sizeof out->label);
    }
    sanitize(out->label);
    return EOPT_OK;
}

/* ---- axes ---- */

static eopt_status add_axis(eopt_study *s, const config_setting_t *at, const char *path, const char *key, int grid,
                            int capacity, eopt_study_axis **out)
{
    if (s->naxes == EOPT_STUDY_MAX_AXES)
        return bad(s, at, "at most %d axes", EOPT_STUDY_MAX_AXES);
    eopt_study_axis *a = &s->axes[s->naxes];
    memset(a, 0, sizeof *a);
    if (!path || !path[0] || strlen(path) >= sizeof a->path || strchr(path, '='))
        return bad(s, at, "expected path = \"a.config.setting\" (e.g. \"optimizers.matrix.args.lr\")");
    snprintf(a->path, sizeof a->path, "%s", path);
    const char *last = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
    snprintf(a->key, sizeof a->key, "%s", key ? key : last);
    for (const char *c = a->key; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return bad(s, at, "key '%s': letters, digits and '_' only", a->key);
    if (!a->key[0] || (a->key[0] >= '0' && a->key[0] <= '9'))
        return bad(s, at, "key '%s' must start with a letter", a->key);
    for (int k = 0; k < s->naxes; k++) {
        if (strcmp(s->axes[k].path, a->path) == 0)
            return bad(s, at, "the path '%s' is swept twice", a->path);
        if (strcmp(s->axes[k].key, a->key) == 0)
            return bad(s, at, "axes '%s' and '%s' both have the key '%s' (used in run names): give one its own "
                       "key = \"...\"", s->axes[k].path, a->path, a->key);
    }
    a->grid = grid;
    a->line = (int)config_setting_source_line(at);
    if (config_setting_name(at))
        snprintf(a->where, sizeof a->where, "%s", config_setting_name(at));
    else
        snprintf(a->where, sizeof a->where, "%.30s.[%d]", config_setting_name(config_setting_parent(at)),
                 config_setting_index(at));
    a->values = calloc((size_t)(capacity > 0 ? capacity : 1), sizeof *a->values);
    if (!a->values)
        return eopt_fail(EOPT_ERR_NOMEM, "%s: out of memory", s->path);
    s->naxes++;
    *out = a;
    return EOPT_OK;
}

static eopt_status parse_axes(eopt_study *s, const config_setting_t *list, int nruns)
{
    for (int k = 0; list && k < config_setting_length(list); k++) {
        const config_setting_t *g = config_setting_get_elem(list, k);
        const char *path = NULL, *key = NULL;
        eopt_study_axis *a;
        EOPT_TRY(check_keys(s, g, axis_keys));
        config_setting_lookup_string(g, "path", &path);
        config_setting_lookup_string(g, "key", &key);
        EOPT_TRY(add_axis(s, g, path, key, 0, nruns, &a));
    }
    return EOPT_OK;
}

static eopt_status parse_values(eopt_study *s, const config_setting_t *vals, eopt_study_axis *a)
{
    for (int k = 0; k < config_setting_length(vals); k++) {
        EOPT_TRY(make_value(s, config_setting_get_elem(vals, k), &a->values[k]));
        for (int j = 0; j < k; j++)
            if (strcmp(a->values[j].text, a->values[k].text) == 0)
                return bad(s, vals, "the value %s appears twice", a->values[k].text);
    }
    a->nvalues = config_setting_length(vals);
    return EOPT_OK;
}

static eopt_status get_values(const eopt_study *s, const config_setting_t *g, const char *key,
                              const config_setting_t **vals)
{
    *vals = config_setting_get_member(g, key);
    int t = *vals ? config_setting_type(*vals) : CONFIG_TYPE_NONE;
    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return bad(s, *vals ? *vals : g, "expected %s = [v1, v2, ...] (numbers, strings, booleans) or ( {...}, ... )",
                   key);
    if (config_setting_length(*vals) < 1 || config_setting_length(*vals) > EOPT_STUDY_MAX_VALUES)
        return bad(s, *vals, "an axis needs 1 to %d values", EOPT_STUDY_MAX_VALUES);
    return EOPT_OK;
}

static eopt_status parse_grid(eopt_study *s, const config_setting_t *grid, const config_setting_t *seeds)
{
    for (int k = 0; grid && k < config_setting_length(grid); k++) {
        const config_setting_t *g = config_setting_get_elem(grid, k), *vals;
        const char *path = NULL, *key = NULL;
        eopt_study_axis *a;
        EOPT_TRY(check_keys(s, g, grid_keys));
        EOPT_TRY(get_values(s, g, "values", &vals));
        config_setting_lookup_string(g, "path", &path);
        config_setting_lookup_string(g, "key", &key);
        EOPT_TRY(add_axis(s, g, path, key, 1, config_setting_length(vals), &a));
        EOPT_TRY(parse_values(s, vals, a));
    }
    s->seed_axis = -1;
    if (seeds) {
        const config_setting_t *root = config_setting_parent(seeds), *vals;
        eopt_study_axis *a;
        EOPT_TRY(get_values(s, root, "seeds", &vals));
        EOPT_TRY(add_axis(s, seeds, "run.seed", "seed", 1, config_setting_length(vals), &a));
        EOPT_TRY(parse_values(s, vals, a));
        for (int k = 0; k < a->nvalues; k++)
            if (a->values[k].kind != EOPT_STUDY_NUMBER)
                return bad(s, seeds, "seeds are integers");
        s->seed_axis = s->naxes - 1;
    }
    return EOPT_OK;
}

/* ---- expansion ---- */

/* The value index of non-grid axis a in `runs` entry e (appended to the axis's values). */
static eopt_status entry_values(eopt_study *s, const config_setting_t *e, int *value)
{
    for (int a = 0; a < s->naxes; a++)
        value[a] = -1;
    if (config_setting_type(e) != CONFIG_TYPE_GROUP)
        return bad(s, e, "expected a run { key = value; ... } with keys declared in `axes`");
    for (int k = 0; k < config_setting_length(e); k++) {
        const config_setting_t *m = config_setting_get_elem(e, k);
        int a = 0;
        while (a < s->naxes && (s->axes[a].grid || strcmp(s->axes[a].key, config_setting_name(m)) != 0))
            a++;
        if (a == s->naxes) {
            const char *keys[EOPT_STUDY_MAX_AXES];
            char valid[512] = "", hint[96] = "";
            int n = 0;
            for (int j = 0; j < s->naxes; j++)
                if (!s->axes[j].grid) {
                    keys[n++] = s->axes[j].key;
                    snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s%s", n > 1 ? ", " : "",
                             s->axes[j].key);
                }
            const char *near = eopt_nearest(config_setting_name(m), keys, n);
            if (near)
                snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
            return bad(s, m, "unknown key '%s'%s; the keys of `axes` are: %s", config_setting_name(m), hint,
                       n ? valid : "(none: declare axes = ( { key = \"...\"; path = \"...\"; } ))");
        }
        eopt_study_axis *ax = &s->axes[a];
        EOPT_TRY(make_value(s, m, &ax->values[ax->nvalues]));
        value[a] = ax->nvalues;
        for (int j = 0; j < ax->nvalues; j++) /* a value given before: the same index */
            if (strcmp(ax->values[j].text, ax->values[ax->nvalues].text) == 0)
                value[a] = j;
        ax->nvalues += value[a] == ax->nvalues;
    }
    return EOPT_OK;
}

static void run_name(const eopt_study *s, eopt_study_run *r)
{
    r->name[0] = 0;
    for (int a = 0; a < s->naxes; a++) {
        if (r->value[a] < 0)
            continue;
        const eopt_study_value *v = &s->axes[a].values[r->value[a]];
        if (r->name[0])
            append(r->name, sizeof r->name, "-");
        if (v->kind != EOPT_STUDY_STRING)
            append(r->name, sizeof r->name, s->axes[a].key);
        if (v->kind == EOPT_STUDY_GROUP)
            append(r->name, sizeof r->name, "-");
        append(r->name, sizeof r->name, v->label);
    }
    if (r->name[0] == '.')
        r->name[0] = '_';
}

static eopt_status expand(eopt_study *s, const config_setting_t *runs)
{
    int nentries = runs ? config_setting_length(runs) : 1;
    long long ngrid = 1;
    for (int a = 0; a < s->naxes; a++)
        if (s->axes[a].grid)
            ngrid *= s->axes[a].nvalues;
    if (ngrid * nentries > EOPT_STUDY_MAX_RUNS)
        return bad(s, NULL, "%lld runs: at most %d", ngrid * nentries, EOPT_STUDY_MAX_RUNS);
    s->nruns = (int)(ngrid * nentries);
    s->runs = calloc((size_t)s->nruns, sizeof *s->runs);
    if (!s->runs)
        return eopt_fail(EOPT_ERR_NOMEM, "%s: out of memory", s->path);
    for (int e = 0; e < nentries; e++) {
        int fixed[EOPT_STUDY_MAX_AXES];
        if (runs)
            EOPT_TRY(entry_values(s, config_setting_get_elem(runs, e), fixed));
        else
            for (int a = 0; a < s->naxes; a++)
                fixed[a] = -1;
        for (long long g = 0; g < ngrid; g++) { /* the first grid axis varies slowest */
            eopt_study_run *r = &s->runs[e * ngrid + g];
            long long rest = g;
            for (int a = s->naxes - 1; a >= 0; a--) {
                if (!s->axes[a].grid) {
                    r->value[a] = fixed[a];
                    continue;
                }
                r->value[a] = (int)(rest % s->axes[a].nvalues);
                rest /= s->axes[a].nvalues;
            }
            run_name(s, r);
        }
    }
    for (int i = 0; i < s->nruns; i++) {
        if (!s->runs[i].name[0])
            return bad(s, runs, "run %d sets nothing: every run needs at least one setting", i);
        for (int j = 0; j < i; j++)
            if (strcmp(s->runs[i].name, s->runs[j].name) == 0)
                return bad(s, runs, "runs %d and %d are both named '%s' (the same settings twice?)", j, i,
                           s->runs[i].name);
    }
    return EOPT_OK;
}

/* ---- the file ---- */

static eopt_status parse_base(eopt_study *s, const config_setting_t *b)
{
    if (!b)
        return bad(s, NULL, "missing key 'base' (a training config: base = \"configs/x.cfg\" or base = { ... })");
    s->base_line = (int)config_setting_source_line(b);
    if (config_setting_type(b) == CONFIG_TYPE_STRING) {
        const char *p = config_setting_get_string(b), *slash = strrchr(s->path, '/');
        int dirlen = p[0] == '/' || !slash ? 0 : (int)(slash - s->path + 1);
        if (snprintf(s->base, sizeof s->base, "%.*s%s", dirlen, s->path, p) >= (int)sizeof s->base)
            return bad(s, b, "the path is too long");
        return EOPT_OK;
    }
    if (config_setting_type(b) != CONFIG_TYPE_GROUP)
        return bad(s, b, "expected a config file name (relative to this file) or an inline config { ... }");
    size_t size = 1 << 20;
    char *text = calloc(size, 1);
    if (!text)
        return eopt_fail(EOPT_ERR_NOMEM, "%s: out of memory", s->path);
    for (int k = 0; k < config_setting_length(b); k++) {
        const config_setting_t *m = config_setting_get_elem(b, k);
        append(text, size, config_setting_name(m));
        append(text, size, " = ");
        append_setting(m, text, size);
        append(text, size, ";\n");
    }
    s->base_text = text;
    return EOPT_OK;
}

static eopt_status parse_int(const eopt_study *s, const config_setting_t *root, const char *key, int *out)
{
    const config_setting_t *v = config_setting_get_member(root, key);
    *out = 0;
    if (!v)
        return EOPT_OK;
    if (config_setting_type(v) != CONFIG_TYPE_INT || config_setting_get_int(v) < 1 || config_setting_get_int(v) > 4096)
        return bad(s, v, "expected an integer from 1 to 4096");
    *out = config_setting_get_int(v);
    return EOPT_OK;
}

static eopt_status parse_study(eopt_study *s, const config_setting_t *root)
{
    const config_setting_t *set = config_setting_get_member(root, "set"), *dir = config_setting_get_member(root, "dir");
    const config_setting_t *axes = config_setting_get_member(root, "axes"), *runs = config_setting_get_member(root, "runs");
    const config_setting_t *grid = config_setting_get_member(root, "grid"), *seeds = config_setting_get_member(root, "seeds");
    EOPT_TRY(check_keys(s, root, study_keys));
    EOPT_TRY(parse_base(s, config_setting_get_member(root, "base")));
    EOPT_TRY(parse_int(s, root, "jobs", &s->jobs));
    EOPT_TRY(parse_int(s, root, "threads", &s->threads));
    if (dir && config_setting_type(dir) != CONFIG_TYPE_STRING)
        return bad(s, dir, "expected a folder name");
    if (dir)
        snprintf(s->dir, sizeof s->dir, "%s", config_setting_get_string(dir));
    else
        snprintf(s->dir, sizeof s->dir, "studies/%s", s->name);
    int n = set ? config_setting_length(set) : 0;
    if (set && (config_setting_type(set) != CONFIG_TYPE_ARRAY || n > EOPT_STUDY_MAX_SETS))
        return bad(s, set, "expected an array of at most %d \"PATH=VALUE\" strings (as eopt train --set takes)",
                   EOPT_STUDY_MAX_SETS);
    for (int k = 0; k < n; k++) {
        const char *v = config_setting_get_string_elem(set, k);
        if (!v || !strchr(v, '=') || v[0] == '=' || strlen(v) >= sizeof s->sets[0])
            return bad(s, set, "element %d: expected \"PATH=VALUE\" (e.g. \"run.steps=200\")", k);
        snprintf(s->sets[s->nsets++], sizeof s->sets[0], "%s", v);
    }
    for (const config_setting_t *l = axes; l; l = l == axes ? runs : NULL)
        if (l && (config_setting_type(l) != CONFIG_TYPE_LIST || config_setting_length(l) < 1))
            return bad(s, l, "expected a non-empty list ( {...}, ... )");
    if (!axes != !runs)
        return bad(s, axes ? axes : runs, "`axes` (each a key and a config path) and `runs` (each a group of those "
                   "keys) go together");
    if (grid && (config_setting_type(grid) != CONFIG_TYPE_LIST || config_setting_length(grid) < 1))
        return bad(s, grid, "expected a non-empty list ( { path = \"...\"; values = [...]; }, ... )");
    if (!runs && !grid && !seeds)
        return bad(s, NULL, "nothing to sweep: give grid = ( ... ), axes and runs, or seeds = [...]");
    EOPT_TRY(parse_axes(s, axes, runs ? config_setting_length(runs) : 0));
    EOPT_TRY(parse_grid(s, grid, seeds));
    return expand(s, runs);
}

eopt_status eopt_study_load(const char *path, eopt_study *s)
{
    memset(s, 0, sizeof *s);
    s->seed_axis = -1;
    if (strlen(path) >= sizeof s->path)
        return eopt_fail(EOPT_ERR_ARG, "%s: the path is too long", path);
    snprintf(s->path, sizeof s->path, "%s", path);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(s->name, sizeof s->name, "%.*s", (int)strcspn(base, "."), base);
    config_t c;
    config_init(&c);
    eopt_status st;
    if (config_read_file(&c, path) != CONFIG_TRUE)
        st = config_error_type(&c) == CONFIG_ERR_FILE_IO
                 ? eopt_fail(EOPT_ERR_IO, "%s: cannot read the file", path)
                 : eopt_fail(EOPT_ERR_CONFIG, "%s:%d: syntax error: %s", path, config_error_line(&c),
                             config_error_text(&c));
    else
        st = parse_study(s, config_root_setting(&c));
    config_destroy(&c);
    if (st != EOPT_OK)
        eopt_study_free(s);
    return st;
}

void eopt_study_free(eopt_study *s)
{
    for (int a = 0; a < s->naxes; a++)
        free(s->axes[a].values);
    free(s->runs);
    free(s->base_text);
    s->naxes = s->nruns = 0;
    s->runs = NULL;
    s->base_text = NULL;
}

/* ---- runs ---- */

void eopt_study_run_sets(const eopt_study *s, int r, const char *extra, const char **sets, int *n)
{
    static __thread char buf[EOPT_STUDY_MAX_AXES][EOPT_CFG_PATH_MAX + EOPT_STUDY_VALUE_MAX + 2];
    *n = 0;
    for (int k = 0; k < s->nsets; k++)
        sets[(*n)++] = s->sets[k];
    for (int a = 0; a < s->naxes; a++) {
        int v = s->runs[r].value[a];
        if (v < 0)
            continue;
        snprintf(buf[a], sizeof buf[a], "%s=%s", s->axes[a].path, s->axes[a].values[v].text);
        sets[(*n)++] = buf[a];
    }
    if (extra)
        sets[(*n)++] = extra;
}

static eopt_status resolve(const eopt_study *s, int nset, const char *const *sets, eopt_config *cfg)
{
    return s->base_text ? eopt_config_parse(s->base_text, s->path, nset, sets, cfg)
                        : eopt_config_load(s->base, nset, sets, cfg);
}

/* Run r fails: the axis whose value fails alone on the base and set, named with its line. */
static eopt_status blame(const eopt_study *s, int r, eopt_status st, eopt_config *cfg)
{
    const char *sets[EOPT_STUDY_MAX_SETS + 1];
    char one[EOPT_CFG_PATH_MAX + EOPT_STUDY_VALUE_MAX + 2], why[1024];
    snprintf(why, sizeof why, "%s", eopt_last_error());
    for (int k = 0; k < s->nsets; k++)
        sets[k] = s->sets[k];
    if (resolve(s, s->nsets, sets, cfg) != EOPT_OK)
        return eopt_fail_context(st, "%s:%d: base%s", s->path, s->base_line, s->nsets ? " and set" : "");
    for (int a = 0; a < s->naxes; a++) {
        int v = s->runs[r].value[a];
        if (v < 0)
            continue;
        snprintf(one, sizeof one, "%s=%s", s->axes[a].path, s->axes[a].values[v].text);
        sets[s->nsets] = one;
        if (resolve(s, s->nsets + 1, sets, cfg) != EOPT_OK)
            return eopt_fail_context(st, "%s:%d: %s (%s = %s)", s->path, s->axes[a].line, s->axes[a].where,
                                     s->axes[a].path, s->axes[a].values[v].text);
    }
    return eopt_fail(st, "%s: run '%s' (task %d): %s", s->path, s->runs[r].name, r, why); /* only together */
}

eopt_status eopt_study_check(const eopt_study *s)
{
    eopt_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return eopt_fail(EOPT_ERR_NOMEM, "%s: out of memory", s->path);
    eopt_status st = EOPT_OK;
    for (int r = 0; r < s->nruns && st == EOPT_OK; r++) {
        const char *sets[EOPT_STUDY_MAX_SETS + EOPT_STUDY_MAX_AXES + 1];
        int n;
        eopt_study_run_sets(s, r, NULL, sets, &n);
        st = resolve(s, n, sets, cfg);
        if (st != EOPT_OK)
            st = blame(s, r, st, cfg);
    }
    free(cfg);
    return st;
}

/* ---- the study folder ---- */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *more = realloc(buf, cap *= 2);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

static eopt_status write_text(const char *path, const char *text)
{
    char tmp[EOPT_CFG_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()); /* Slurm tasks write at once */
    FILE *f = fopen(tmp, "w");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fputs(text, f);
    EOPT_TRY(eopt_file_commit(f, tmp, path));
    return EOPT_OK;
}

/* STUDY_DIR/study.cfg: the study file as first given; a different one is refused (force: replaced). */
static eopt_status claim_study_file(const eopt_study *s, int force)
{
    char path[EOPT_CFG_PATH_MAX + 16], diff[2048];
    snprintf(path, sizeof path, "%s/study.cfg", s->dir);
    char *now = read_all(s->path), *then = read_all(path);
    eopt_status st = EOPT_OK;
    if (!now)
        st = eopt_fail(EOPT_ERR_IO, "%s: cannot read the file", s->path);
    else if (then && strcmp(now, then) != 0 && !force) {
        int n = eopt_config_text_diff(then, now, diff, sizeof diff);
        st = eopt_fail(EOPT_ERR_CONFIG, "%s: the study file differs from the one this study started with (%s): %s; "
                       "restore it, give this study another --dir, or accept the change with --force",
                       s->path, path, n > 0 ? diff : "its text changed, not its settings");
    } else if (!then || strcmp(now, then) != 0)
        st = write_text(path, now);
    free(now);
    free(then);
    return st;
}

eopt_status eopt_study_prepare_dir(const eopt_study *s, int force, char *base_path, size_t size)
{
    char path[EOPT_CFG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/runs", s->dir);
    EOPT_TRY(eopt_make_dirs(path));
    EOPT_TRY(claim_study_file(s, force));
    snprintf(base_path, size, "%s", s->base);
    if (s->base_text) {
        snprintf(base_path, size, "%s/base.cfg", s->dir);
        EOPT_TRY(write_text(base_path, s->base_text));
    }
    snprintf(path, sizeof path, "%s/study.json", s->dir);
    return eopt_study_write_json(s, path);
}

static void json_str(FILE *f, const char *v)
{
    fputc('"', f);
    for (; *v; v++)
        if (*v == '"' || *v == '\\')
            fprintf(f, "\\%c", *v);
        else if ((unsigned char)*v < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*v);
        else
            fputc(*v, f);
    fputc('"', f);
}

static void json_value(FILE *f, const eopt_study_value *v)
{
    if (v->kind == EOPT_STUDY_NUMBER && isfinite(strtod(v->text, NULL)))
        fputs(v->text, f);
    else if (v->kind == EOPT_STUDY_BOOL)
        fputs(v->text, f);
    else if (v->kind == EOPT_STUDY_STRING) /* libconfig's quoted text with \" and \\ is a JSON string */
        fputs(v->text, f);
    else
        json_str(f, v->text);
}

eopt_status eopt_study_write_json(const eopt_study *s, const char *path)
{
    char tmp[EOPT_CFG_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()); /* Slurm tasks write at once */
    FILE *f = fopen(tmp, "w");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "{\"schema\": \"eopt-study\", \"version\": 1, \"name\": ");
    json_str(f, s->name);
    fprintf(f, ",\n \"axes\": [");
    for (int a = 0; a < s->naxes; a++) {
        fputs(a ? ", " : "", f);
        json_str(f, s->axes[a].path);
    }
    fprintf(f, "],\n \"seed_axis\": ");
    if (s->seed_axis >= 0)
        json_str(f, s->axes[s->seed_axis].path);
    else
        fputs("null", f);
    fprintf(f, ",\n \"runs\": [\n");
    for (int r = 0; r < s->nruns; r++) {
        fprintf(f, "  {\"name\": ");
        json_str(f, s->runs[r].name);
        fprintf(f, ", \"settings\": {");
        for (int a = 0, first = 1; a < s->naxes; a++) {
            if (s->runs[r].value[a] < 0)
                continue;
            fputs(first ? "" : ", ", f);
            first = 0;
            json_str(f, s->axes[a].path);
            fputs(": ", f);
            json_value(f, &s->axes[a].values[s->runs[r].value[a]]);
        }
        fprintf(f, "}}%s\n", r + 1 < s->nruns ? "," : "");
    }
    fprintf(f, "]}\n");
    EOPT_TRY(eopt_file_commit(f, tmp, path));
    return EOPT_OK;
}

eopt_status eopt_study_read_names(const char *dir, char (**names)[EOPT_STUDY_NAME_MAX], int *n)
{
    char path[EOPT_CFG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/study.json", dir);
    char *text = read_all(path);
    *names = NULL;
    *n = 0;
    if (!text)
        return eopt_fail(EOPT_ERR_IO, "%s: cannot read it (is %s a study folder?)", path, dir);
    const char *tag = "{\"name\": \"";
    int count = 0;
    for (const char *p = text; (p = strstr(p, tag)); p++)
        count++;
    *names = calloc((size_t)(count ? count : 1), sizeof **names);
    if (!*names) {
        free(text);
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    }
    for (const char *p = text; (p = strstr(p, tag)); p++) { /* names are file-name safe: no escapes */
        p += strlen(tag);
        snprintf((*names)[*n], EOPT_STUDY_NAME_MAX, "%.*s", (int)strcspn(p, "\""), p);
        (*n)++;
    }
    free(text);
    return EOPT_OK;
}

/* ---- run states ---- */

/* The text after "key": in a JSON line (a string's content, or a number), into buf. */
static int json_field(const char *line, const char *key, char *buf, size_t size)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    if (*p == '"') {
        size_t n = 0;
        for (p++; *p && *p != '"' && n + 1 < size; p++)
            buf[n++] = *p == '\\' && p[1] ? *++p : *p;
        buf[n] = 0;
    } else
        snprintf(buf, size, "%.*s", (int)strcspn(p, ",}\n"), p);
    return 1;
}

static int has_checkpoint(const char *dir)
{
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        found = strncmp(e->d_name, EOPT_RUN_CKPT_PREFIX, strlen(EOPT_RUN_CKPT_PREFIX)) == 0 && strstr(e->d_name, ".h5");
    if (d)
        closedir(d);
    return found;
}

/* The `running` marker names a live process: "host pid", the pid checked on this host. */
static int marked_running(const char *dir)
{
    char path[EOPT_CFG_PATH_MAX + 16], host[256] = "", here[256] = "";
    long pid = 0;
    snprintf(path, sizeof path, "%s/running", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int ok = fscanf(f, "%255s %ld", host, &pid) == 2;
    fclose(f);
    gethostname(here, sizeof here - 1);
    if (!ok || strcmp(host, here) != 0)
        return ok;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

void eopt_study_state(const char *dir, eopt_study_run_state *st)
{
    char path[EOPT_CFG_PATH_MAX + 32], buf[64];
    memset(st, 0, sizeof *st);
    st->step = st->steps = -1;
    st->loss = NAN;
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        if (strstr(line, "\"schema\": \"eopt-metrics\"") && json_field(line, "steps", buf, sizeof buf))
            st->steps = atoll(buf);
        else if (json_field(line, "train_loss", buf, sizeof buf) && json_field(line, "step", path, sizeof path)) {
            st->step = atoll(path);
            st->loss = strcmp(buf, "null") == 0 ? NAN : strtod(buf, NULL);
        }
    }
    free(line);
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "%s/" EOPT_RUN_OUTCOME, dir);
    char *outcome = read_all(path);
    if (outcome && json_field(outcome, "state", st->state, sizeof st->state)) {
        json_field(outcome, "reason", st->reason, sizeof st->reason);
        if (json_field(outcome, "step", buf, sizeof buf))
            st->step = atoll(buf);
    } else if (marked_running(dir))
        snprintf(st->state, sizeof st->state, "running");
    else if (st->step >= 0 || has_checkpoint(dir))
        snprintf(st->state, sizeof st->state, "unfinished");
    else
        snprintf(st->state, sizeof st->state, "pending");
    free(outcome);
}

int eopt_study_run_threads(const char *dir, int def)
{
    char path[EOPT_CFG_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" EOPT_RUN_CONFIG, dir);
    config_t c;
    config_init(&c);
    int threads = def;
    if (config_read_file(&c, path) == CONFIG_TRUE && !config_lookup_int(&c, "run.threads", &threads))
        threads = def;
    config_destroy(&c);
    return threads;
}
