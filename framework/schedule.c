/* Learning-rate and softening schedules (schedule.h). */
#include "schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const lr_names[] = {"constant", "warmup", "cosine", "linear", "wsd"};
static const char *const ramp_names[] = {"constant", "linear", "cosine"};

static int parse_name(const char *const *names, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (strcmp(names[k], name) == 0)
            return k;
    return -1;
}

const char *eopt_lr_kind_name(eopt_lr_kind k) { return lr_names[k]; }
int eopt_lr_kind_parse(const char *name) { return parse_name(lr_names, 5, name); }
const char *eopt_ramp_kind_name(eopt_ramp_kind k) { return ramp_names[k]; }
int eopt_ramp_kind_parse(const char *name) { return parse_name(ramp_names, 3, name); }

eopt_status eopt_lr_schedule_check(const eopt_lr_schedule *s, const char *what)
{
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
    if (!(r->from >= 0 && r->from <= 1) || !(r->to >= 0 && r->to <= 1))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: softening values from = %g, to = %g must lie in [0, 1]", what, r->from,
                         r->to);
    if (r->kind != EOPT_RAMP_CONSTANT && (r->start < 0 || r->end <= r->start))
        return eopt_fail(EOPT_ERR_CONFIG, "%s: ramp steps start = %lld, end = %lld need 0 <= start < end", what,
                         (long long)r->start, (long long)r->end);
    return EOPT_OK;
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
    double v = r->from;
    if (r->kind != EOPT_RAMP_CONSTANT) {
        double p = (double)(step - r->start) / (double)(r->end - r->start);
        p = p < 0 ? 0 : p > 1 ? 1 : p;
        double u = r->kind == EOPT_RAMP_COSINE ? 0.5 * (1 - cos(M_PI * p)) : p;
        v = r->from + (r->to - r->from) * u;
    }
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static eopt_status put(eopt_dict *d, const char *prefix, const char *key, eopt_value v)
{
    char k[EOPT_KEY_MAX];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return eopt_dict_set(d, k, v);
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

eopt_status eopt_lr_schedule_to_dict(const eopt_lr_schedule *s, const char *prefix, eopt_dict *d)
{
    EOPT_TRY(put(d, prefix, "kind", eopt_str(eopt_lr_kind_name(s->kind))));
    EOPT_TRY(put(d, prefix, "warmup", eopt_int(s->warmup)));
    EOPT_TRY(put(d, prefix, "total", eopt_int(s->total)));
    EOPT_TRY(put(d, prefix, "decay", eopt_int(s->decay)));
    return put(d, prefix, "floor", eopt_float(s->floor));
}

eopt_status eopt_lr_schedule_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_lr_schedule *s)
{
    eopt_lr_schedule r;
    int kind;
    EOPT_TRY(get_kind(d, prefix, what, eopt_lr_kind_parse, &kind));
    r.kind = (eopt_lr_kind)kind;
    EOPT_TRY(get_int(d, prefix, "warmup", what, &r.warmup));
    EOPT_TRY(get_int(d, prefix, "total", what, &r.total));
    EOPT_TRY(get_int(d, prefix, "decay", what, &r.decay));
    EOPT_TRY(get_float(d, prefix, "floor", what, &r.floor));
    EOPT_TRY(eopt_lr_schedule_check(&r, what));
    *s = r;
    return EOPT_OK;
}

eopt_status eopt_ramp_to_dict(const eopt_ramp *r, const char *prefix, eopt_dict *d)
{
    EOPT_TRY(put(d, prefix, "kind", eopt_str(eopt_ramp_kind_name(r->kind))));
    EOPT_TRY(put(d, prefix, "from", eopt_float(r->from)));
    EOPT_TRY(put(d, prefix, "to", eopt_float(r->to)));
    EOPT_TRY(put(d, prefix, "start", eopt_int(r->start)));
    return put(d, prefix, "end", eopt_int(r->end));
}

eopt_status eopt_ramp_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_ramp *r)
{
    eopt_ramp x;
    int kind;
    EOPT_TRY(get_kind(d, prefix, what, eopt_ramp_kind_parse, &kind));
    x.kind = (eopt_ramp_kind)kind;
    EOPT_TRY(get_float(d, prefix, "from", what, &x.from));
    EOPT_TRY(get_float(d, prefix, "to", what, &x.to));
    EOPT_TRY(get_int(d, prefix, "start", what, &x.start));
    EOPT_TRY(get_int(d, prefix, "end", what, &x.end));
    EOPT_TRY(eopt_ramp_check(&x, what));
    *r = x;
    return EOPT_OK;
}
