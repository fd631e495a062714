/* Learning-rate schedules and hyperparameter ramps (schedule.h). */
#include "schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const lr_names[] = {"constant", "warmup", "cosine", "linear", "wsd", "piecewise"};
static const char *const ramp_names[] = {"constant", "linear", "cosine", "piecewise"};

static int parse_name(const char *const *names, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (strcmp(names[k], name) == 0)
            return k;
    return -1;
}

const char *eopt_lr_kind_name(eopt_lr_kind k) { return lr_names[k]; }
int eopt_lr_kind_parse(const char *name) { return parse_name(lr_names, 6, name); }
const char *eopt_ramp_kind_name(eopt_ramp_kind k) { return ramp_names[k]; }
int eopt_ramp_kind_parse(const char *name) { return parse_name(ramp_names, 4, name); }

static eopt_status points_check(const eopt_points *p, const char *what)
{
    if (p->n < 1 || p->n > EOPT_SCHEDULE_MAX_POINTS)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: piecewise needs 1 to %d points, got %d", what,
                         EOPT_SCHEDULE_MAX_POINTS, p->n);
    for (int k = 0; k < p->n; k++) {
        if (p->step[k] < 0 || (k > 0 && p->step[k] <= p->step[k - 1]))
            return eopt_fail(EOPT_ERR_CONFIG, "%s: point %d: steps must be >= 0 and strictly increasing (%lld)", what,
                             k, (long long)p->step[k]);
        if (!isfinite(p->value[k]))
            return eopt_fail(EOPT_ERR_CONFIG, "%s: point %d: value %g is not finite", what, k, p->value[k]);
    }
    return EOPT_OK;
}

eopt_status eopt_lr_schedule_check(const eopt_lr_schedule *s, const char *what)
{
    if (s->kind == EOPT_LR_PIECEWISE) {
        EOPT_TRY(points_check(&s->points, what));
        for (int k = 0; k < s->points.n; k++)
            if (s->points.value[k] < 0)
                return eopt_fail(EOPT_ERR_CONFIG, "%s: point %d: lr factor %g must be >= 0", what, k,
                                 s->points.value[k]);
        return EOPT_OK;
    }
    if (s->warmup < 0)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: warmup = %lld must be >= 0", what, (long long)s->warmup);
    if (!(s->floor >= 0 && s->floor <= 1))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: floor = %g must lie in [0, 1]", what, s->floor);
    if (s->kind == EOPT_LR_COSINE || s->kind == EOPT_LR_LINEAR || s->kind == EOPT_LR_WSD) {
        if (s->total <= s->warmup)
            return eopt_fail(EOPT_ERR_CONFIG, "%s: total = %lld must exceed warmup = %lld", what,
                             (long long)s->total, (long long)s->warmup);
    }
    if (s->kind == EOPT_LR_WSD && (s->decay <= 0 || s->decay > s->total - s->warmup))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: decay = %lld must lie in 1..total - warmup = %lld", what,
                         (long long)s->decay, (long long)(s->total - s->warmup));
    return EOPT_OK;
}

eopt_status eopt_ramp_check(const eopt_ramp *r, const char *what)
{
    if (r->kind == EOPT_RAMP_PIECEWISE)
        return points_check(&r->points, what);
    if (!isfinite(r->from) || !isfinite(r->to))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: ramp values from = %g, to = %g must be finite", what, r->from, r->to);
    if (r->kind != EOPT_RAMP_CONSTANT && (r->start < 0 || r->end <= r->start))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: ramp steps start = %lld, end = %lld need 0 <= start < end", what,
                         (long long)r->start, (long long)r->end);
    return EOPT_OK;
}

/* v_k + (v_{k+1} - v_k) (t - t_k) / (t_{k+1} - t_k) on the segment holding t. */
double eopt_points_value(const eopt_points *p, int64_t step)
{
    if (step <= p->step[0])
        return p->value[0];
    for (int k = 0; k + 1 < p->n; k++)
        if (step < p->step[k + 1]) {
            double u = (double)(step - p->step[k]) / (double)(p->step[k + 1] - p->step[k]);
            return p->value[k] + (p->value[k + 1] - p->value[k]) * u;
        }
    return p->value[p->n - 1];
}

/* The decay phase: 1 at p = 0, floor at p = 1 (p clamped). */
static double decay_shape(eopt_lr_kind kind, double p, double floor)
{
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    double u = kind == EOPT_LR_COSINE ? 0.5 * (1 + cos(M_PI * p)) : 1 - p;
    return floor + (1 - floor) * u;
}

double eopt_lr_factor(const eopt_lr_schedule *s, int64_t step)
{
    if (s->kind == EOPT_LR_CONSTANT)
        return 1;
    if (s->kind == EOPT_LR_PIECEWISE)
        return eopt_points_value(&s->points, step);
    if (step < s->warmup)
        return (double)(step + 1) / (double)s->warmup;
    switch (s->kind) {
    case EOPT_LR_COSINE:
    case EOPT_LR_LINEAR:
        return decay_shape(s->kind, (double)(step - s->warmup) / (double)(s->total - s->warmup), s->floor);
    case EOPT_LR_WSD:
        return decay_shape(EOPT_LR_LINEAR, (double)(step - (s->total - s->decay)) / (double)s->decay, s->floor);
    default:
        return 1;
    }
}

double eopt_ramp_value(const eopt_ramp *r, int64_t step)
{
    if (r->kind == EOPT_RAMP_PIECEWISE)
        return eopt_points_value(&r->points, step);
    if (r->kind == EOPT_RAMP_CONSTANT)
        return r->from;
    double p = (double)(step - r->start) / (double)(r->end - r->start);
    p = p < 0 ? 0 : p > 1 ? 1 : p;
    double u = r->kind == EOPT_RAMP_COSINE ? 0.5 * (1 - cos(M_PI * p)) : p;
    return r->from + (r->to - r->from) * u;
}

double eopt_schedules_lr(const eopt_schedules *s, int g, int64_t step)
{
    const eopt_lr_schedule *lr = s->has_group_lr[g] ? &s->group_lr[g] : &s->lr;
    return s->base_lr[g] * eopt_lr_factor(lr, step);
}

const eopt_named_ramp *eopt_schedules_ramp(const eopt_schedules *s, int g, const char *key)
{
    const eopt_named_ramp *found = NULL;
    for (int k = 0; k < s->nramps; k++)
        if (strcmp(s->ramps[k].key, key) == 0 && (s->ramps[k].group == g || (s->ramps[k].group < 0 && !found)))
            found = &s->ramps[k];
    return found;
}

/* ---- checkpoint attributes ---- */

static eopt_status put(eopt_dict *d, const char *prefix, const char *key, eopt_value v)
{
    char k[EOPT_KEY_MAX];
    if (snprintf(k, sizeof k, "%s%s", prefix, key) >= (int)sizeof k)
        return eopt_fail(EOPT_ERR_ARG, "schedule attribute '%s%s' is longer than %d characters", prefix, key,
                         EOPT_KEY_MAX - 1);
    return eopt_dict_set(d, k, v);
}

static eopt_status put_points(eopt_dict *d, const char *prefix, const eopt_points *p)
{
    double flat[EOPT_FLOATS_MAX];
    for (int k = 0; k < p->n; k++)
        flat[2 * k] = (double)p->step[k], flat[2 * k + 1] = p->value[k];
    return put(d, prefix, "points", eopt_floats(2 * p->n, flat));
}

static eopt_status lr_to_dict(const eopt_lr_schedule *s, const char *prefix, eopt_dict *d)
{
    EOPT_TRY(put(d, prefix, "kind", eopt_str(eopt_lr_kind_name(s->kind))));
    EOPT_TRY(put(d, prefix, "warmup", eopt_int(s->warmup)));
    EOPT_TRY(put(d, prefix, "total", eopt_int(s->total)));
    EOPT_TRY(put(d, prefix, "decay", eopt_int(s->decay)));
    EOPT_TRY(put(d, prefix, "floor", eopt_float(s->floor)));
    return s->kind == EOPT_LR_PIECEWISE ? put_points(d, prefix, &s->points) : EOPT_OK;
}

static eopt_status ramp_to_dict(const eopt_ramp *r, const char *prefix, eopt_dict *d)
{
    EOPT_TRY(put(d, prefix, "kind", eopt_str(eopt_ramp_kind_name(r->kind))));
    EOPT_TRY(put(d, prefix, "from", eopt_float(r->from)));
    EOPT_TRY(put(d, prefix, "to", eopt_float(r->to)));
    EOPT_TRY(put(d, prefix, "start", eopt_int(r->start)));
    EOPT_TRY(put(d, prefix, "end", eopt_int(r->end)));
    return r->kind == EOPT_RAMP_PIECEWISE ? put_points(d, prefix, &r->points) : EOPT_OK;
}

static void ramp_prefix(const eopt_named_ramp *r, char *buf, size_t size)
{
    if (r->group < 0)
        snprintf(buf, size, "%s.", r->key);
    else
        snprintf(buf, size, "group%d.%s.", r->group, r->key);
}

eopt_status eopt_schedules_to_dict(const eopt_schedules *s, eopt_dict *d)
{
    char prefix[EOPT_KEY_MAX + 16];
    EOPT_TRY(lr_to_dict(&s->lr, "", d));
    for (int g = 0; g < s->ngroups; g++) {
        snprintf(prefix, sizeof prefix, "group%d.", g);
        EOPT_TRY(put(d, prefix, "base_lr", eopt_float(s->base_lr[g])));
        if (s->has_group_lr[g])
            EOPT_TRY(lr_to_dict(&s->group_lr[g], prefix, d));
    }
    for (int k = 0; k < s->nramps; k++) {
        ramp_prefix(&s->ramps[k], prefix, sizeof prefix);
        EOPT_TRY(ramp_to_dict(&s->ramps[k].ramp, prefix, d));
    }
    return EOPT_OK;
}

static eopt_status get(const eopt_dict *d, const char *prefix, const char *key, const char *what,
                       const eopt_value **out)
{
    char k[EOPT_KEY_MAX];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    *out = eopt_dict_get(d, k);
    if (!*out)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: missing schedule attribute '%s'", what, k);
    return EOPT_OK;
}

static eopt_status get_int(const eopt_dict *d, const char *prefix, const char *key, const char *what, int64_t *out)
{
    const eopt_value *v;
    EOPT_TRY(get(d, prefix, key, what, &v));
    if (v->kind != EOPT_VAL_INT)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: schedule attribute '%s%s' must be an integer", what, prefix, key);
    *out = v->i;
    return EOPT_OK;
}

static eopt_status get_float(const eopt_dict *d, const char *prefix, const char *key, const char *what, double *out)
{
    const eopt_value *v;
    EOPT_TRY(get(d, prefix, key, what, &v));
    if (v->kind != EOPT_VAL_FLOAT && v->kind != EOPT_VAL_INT)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: schedule attribute '%s%s' must be a number", what, prefix, key);
    *out = v->kind == EOPT_VAL_INT ? (double)v->i : v->f;
    return EOPT_OK;
}

static eopt_status get_kind(const eopt_dict *d, const char *prefix, const char *what, int (*parse)(const char *),
                            int *out)
{
    const eopt_value *v;
    EOPT_TRY(get(d, prefix, "kind", what, &v));
    *out = v->kind == EOPT_VAL_STR ? parse(v->s) : -1;
    if (*out < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: unknown schedule kind in '%skind'", what, prefix);
    return EOPT_OK;
}

static eopt_status get_points(const eopt_dict *d, const char *prefix, const char *what, eopt_points *p)
{
    const eopt_value *v;
    EOPT_TRY(get(d, prefix, "points", what, &v));
    if (v->kind != EOPT_VAL_FLOATS || v->nf % 2 != 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: schedule attribute '%spoints' must be [step, value, ...] numbers",
                         what, prefix);
    p->n = v->nf / 2;
    for (int k = 0; k < p->n; k++)
        p->step[k] = (int64_t)v->fv[2 * k], p->value[k] = v->fv[2 * k + 1];
    return EOPT_OK;
}

static eopt_status lr_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_lr_schedule *s)
{
    int kind;
    memset(s, 0, sizeof *s);
    EOPT_TRY(get_kind(d, prefix, what, eopt_lr_kind_parse, &kind));
    s->kind = (eopt_lr_kind)kind;
    EOPT_TRY(get_int(d, prefix, "warmup", what, &s->warmup));
    EOPT_TRY(get_int(d, prefix, "total", what, &s->total));
    EOPT_TRY(get_int(d, prefix, "decay", what, &s->decay));
    EOPT_TRY(get_float(d, prefix, "floor", what, &s->floor));
    if (s->kind == EOPT_LR_PIECEWISE)
        EOPT_TRY(get_points(d, prefix, what, &s->points));
    return eopt_lr_schedule_check(s, what);
}

static eopt_status ramp_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_ramp *r)
{
    int kind;
    memset(r, 0, sizeof *r);
    EOPT_TRY(get_kind(d, prefix, what, eopt_ramp_kind_parse, &kind));
    r->kind = (eopt_ramp_kind)kind;
    EOPT_TRY(get_float(d, prefix, "from", what, &r->from));
    EOPT_TRY(get_float(d, prefix, "to", what, &r->to));
    EOPT_TRY(get_int(d, prefix, "start", what, &r->start));
    EOPT_TRY(get_int(d, prefix, "end", what, &r->end));
    if (r->kind == EOPT_RAMP_PIECEWISE)
        EOPT_TRY(get_points(d, prefix, what, &r->points));
    return eopt_ramp_check(r, what);
}

/* One "<prefix>kind" attribute: the lr schedule (""), a group's ("group<g>."), or a ramp
 * ("<key>." or "group<g>.<key>."). */
static eopt_status entry_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_schedules *s)
{
    int g = -1, used = 0;
    if (prefix[0] == 0)
        return lr_from_dict(d, "", what, &s->lr);
    if (sscanf(prefix, "group%d.%n", &g, &used) == 1 && used > 0) {
        if (g < 0 || g >= EOPT_SCHEDULE_MAX_GROUPS)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: schedule attribute '%skind': no param group %d", what, prefix, g);
        if (g >= s->ngroups)
            s->ngroups = g + 1;
        if (prefix[used] == 0) {
            s->has_group_lr[g] = 1;
            return lr_from_dict(d, prefix, what, &s->group_lr[g]);
        }
    }
    if (s->nramps == EOPT_SCHEDULE_MAX_RAMPS)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: more than %d ramps", what, EOPT_SCHEDULE_MAX_RAMPS);
    eopt_named_ramp *r = &s->ramps[s->nramps++];
    r->group = g;
    snprintf(r->key, sizeof r->key, "%.*s", (int)(strlen(prefix) - used - 1), prefix + used);
    return ramp_from_dict(d, prefix, what, &r->ramp);
}

/* "group<g>.base_lr": group g's base lr. */
static eopt_status base_lr_from_dict(const eopt_dict *d, const char *key, const char *what, eopt_schedules *s)
{
    int g = -1, used = 0;
    if (sscanf(key, "group%d.base_lr%n", &g, &used) != 1 || key[used] != 0 || used == 0)
        return EOPT_OK;
    if (g < 0 || g >= EOPT_SCHEDULE_MAX_GROUPS)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: schedule attribute '%s': no param group %d", what, key, g);
    if (g >= s->ngroups)
        s->ngroups = g + 1;
    return get_float(d, "", key, what, &s->base_lr[g]);
}

eopt_status eopt_schedules_from_dict(const eopt_dict *d, const char *what, eopt_schedules *out)
{
    eopt_schedules s;
    memset(&s, 0, sizeof s);
    EOPT_TRY(lr_from_dict(d, "", what, &s.lr));
    for (int k = 0; k < d->n; k++) {
        const char *key = d->items[k].key;
        size_t n = strlen(key);
        char prefix[EOPT_KEY_MAX];
        EOPT_TRY(base_lr_from_dict(d, key, what, &s));
        if (n <= 5 || strcmp(key + n - 5, ".kind") != 0)
            continue;
        snprintf(prefix, sizeof prefix, "%.*s", (int)(n - 4), key);
        EOPT_TRY(entry_from_dict(d, prefix, what, &s));
    }
    *out = s;
    return EOPT_OK;
}

/* Python's equality for numbers (1 == 1.0), exact for the rest. */
static int same_value(const eopt_value *a, const eopt_value *b)
{
    int na = a->kind == EOPT_VAL_INT || a->kind == EOPT_VAL_FLOAT, nb = b->kind == EOPT_VAL_INT || b->kind == EOPT_VAL_FLOAT;
    if (na && nb)
        return (a->kind == EOPT_VAL_FLOAT ? a->f : (double)a->i) == (b->kind == EOPT_VAL_FLOAT ? b->f : (double)b->i);
    return eopt_value_equal(a, b);
}

static int note_difference(const char *key, const eopt_value *a, const eopt_value *b, char *buf, size_t size)
{
    char va[256], vb[256];
    size_t len = strlen(buf);
    if (a && b && same_value(a, b))
        return 0;
    if (len + 8 < size)
        snprintf(buf + len, size - len, "%s%s: %s -> %s", len ? ", " : "", key,
                 a ? eopt_value_repr(a, va, sizeof va) : "absent", b ? eopt_value_repr(b, vb, sizeof vb) : "absent");
    return 1;
}

int eopt_schedules_diff(const eopt_dict *file, const eopt_schedules *s, char *buf, size_t size)
{
    eopt_dict d = {0};
    int n = 0;
    buf[0] = 0;
    if (eopt_schedules_to_dict(s, &d) != EOPT_OK) /* only for more keys than a dict holds */
        eopt_clear_error();
    for (int k = 0; k < file->n; k++)
        if (strcmp(file->items[k].key, "position") != 0)
            n += note_difference(file->items[k].key, &file->items[k].v, eopt_dict_get(&d, file->items[k].key), buf,
                                 size);
    for (int k = 0; k < d.n; k++)
        if (!eopt_dict_get(file, d.items[k].key))
            n += note_difference(d.items[k].key, NULL, &d.items[k].v, buf, size);
    return n;
}
