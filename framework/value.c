#include "value.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

eopt_value eopt_bool(int b) { return (eopt_value){.kind = EOPT_VAL_BOOL, .i = b != 0}; }
eopt_value eopt_int(int64_t i) { return (eopt_value){.kind = EOPT_VAL_INT, .i = i}; }
eopt_value eopt_float(double f) { return (eopt_value){.kind = EOPT_VAL_FLOAT, .f = f}; }

eopt_value eopt_str(const char *s)
{
    eopt_value v = {.kind = EOPT_VAL_STR};
    snprintf(v.s, sizeof v.s, "%s", s);
    return v;
}

eopt_value eopt_floats(int n, const double *fv)
{
    eopt_value v = {.kind = EOPT_VAL_FLOATS, .nf = n < EOPT_FLOATS_MAX ? n : EOPT_FLOATS_MAX};
    for (int k = 0; k < v.nf; k++)
        v.fv[k] = fv[k];
    return v;
}

static int dict_find(const eopt_dict *d, const char *key)
{
    for (int k = 0; k < d->n; k++)
        if (strcmp(d->items[k].key, key) == 0)
            return k;
    return -1;
}

eopt_status eopt_dict_set(eopt_dict *d, const char *key, eopt_value v)
{
    if (strlen(key) >= EOPT_KEY_MAX)
        return eopt_fail(EOPT_ERR_ARG, "key '%s' is longer than %d characters", key, EOPT_KEY_MAX - 1);
    int k = dict_find(d, key);
    if (k < 0) {
        if (d->n == EOPT_DICT_MAX)
            return eopt_fail(EOPT_ERR_ARG, "too many keys (more than %d) when adding '%s'", EOPT_DICT_MAX, key);
        k = d->n++;
        snprintf(d->items[k].key, EOPT_KEY_MAX, "%s", key);
    }
    d->items[k].v = v;
    return EOPT_OK;
}

const eopt_value *eopt_dict_get(const eopt_dict *d, const char *key)
{
    int k = dict_find(d, key);
    return k < 0 ? NULL : &d->items[k].v;
}

void eopt_dict_remove(eopt_dict *d, const char *key)
{
    int k = dict_find(d, key);
    if (k < 0)
        return;
    memmove(&d->items[k], &d->items[k + 1], (size_t)(d->n - k - 1) * sizeof d->items[0]);
    d->n--;
}

eopt_status eopt_dict_merge_defaults(eopt_dict *d, const eopt_dict *defaults)
{
    for (int k = 0; k < defaults->n; k++)
        if (dict_find(d, defaults->items[k].key) < 0)
            EOPT_TRY(eopt_dict_set(d, defaults->items[k].key, defaults->items[k].v));
    return EOPT_OK;
}

static const eopt_value *need(const eopt_dict *d, const char *what, const char *key, eopt_status *st)
{
    const eopt_value *v = eopt_dict_get(d, key);
    *st = v ? EOPT_OK : eopt_fail(EOPT_ERR_ARG, "%s: missing key '%s'", what, key);
    return v;
}

static eopt_status wrong_type(const char *what, const char *key, const eopt_value *v, const char *want)
{
    char buf[128];
    return eopt_fail(EOPT_ERR_ARG, "%s: '%s' must be %s, got %s", what, key, want, eopt_value_repr(v, buf, sizeof buf));
}

eopt_status eopt_dict_float(const eopt_dict *d, const char *what, const char *key, double *out)
{
    eopt_status st;
    const eopt_value *v = need(d, what, key, &st);
    if (!v)
        return st;
    if (v->kind == EOPT_VAL_FLOAT)
        *out = v->f;
    else if (v->kind == EOPT_VAL_INT || v->kind == EOPT_VAL_BOOL)
        *out = (double)v->i;
    else
        return wrong_type(what, key, v, "a number");
    return EOPT_OK;
}

eopt_status eopt_dict_int(const eopt_dict *d, const char *what, const char *key, int64_t *out)
{
    eopt_status st;
    const eopt_value *v = need(d, what, key, &st);
    if (!v)
        return st;
    if (v->kind == EOPT_VAL_INT || v->kind == EOPT_VAL_BOOL)
        *out = v->i;
    else if (v->kind == EOPT_VAL_FLOAT && v->f == floor(v->f) && fabs(v->f) < 9e15)
        *out = (int64_t)v->f;
    else
        return wrong_type(what, key, v, "an integer");
    return EOPT_OK;
}

eopt_status eopt_dict_bool(const eopt_dict *d, const char *what, const char *key, int *out)
{
    eopt_status st;
    const eopt_value *v = need(d, what, key, &st);
    if (!v)
        return st;
    if (v->kind != EOPT_VAL_BOOL && v->kind != EOPT_VAL_INT)
        return wrong_type(what, key, v, "a boolean");
    *out = v->i != 0;
    return EOPT_OK;
}

eopt_status eopt_dict_str(const eopt_dict *d, const char *what, const char *key, const char **out)
{
    eopt_status st;
    const eopt_value *v = need(d, what, key, &st);
    if (!v)
        return st;
    if (v->kind != EOPT_VAL_STR)
        return wrong_type(what, key, v, "a string");
    *out = v->s;
    return EOPT_OK;
}

eopt_status eopt_dict_floats(const eopt_dict *d, const char *what, const char *key, int n, double *out)
{
    eopt_status st;
    const eopt_value *v = need(d, what, key, &st);
    if (!v)
        return st;
    if (v->kind != EOPT_VAL_FLOATS || v->nf != n) {
        char want[48];
        snprintf(want, sizeof want, "a tuple of %d numbers", n);
        return wrong_type(what, key, v, want);
    }
    for (int k = 0; k < n; k++)
        out[k] = v->fv[k];
    return EOPT_OK;
}

/* Python's str() of a float ("0.001", "1e-08", "2.0", "-inf"), for torch's messages. */
const char *eopt_float_repr(double x, char *buf, size_t size)
{
    if (isnan(x))
        snprintf(buf, size, "nan");
    else if (isinf(x))
        snprintf(buf, size, x > 0 ? "inf" : "-inf");
    else if (x == 0.0 || (fabs(x) >= 1e-4 && fabs(x) < 1e16)) { /* fixed notation, shortest round trip */
        for (int d = 0; d <= 20; d++) {
            snprintf(buf, size, "%.*f", d, x);
            if (strtod(buf, NULL) == x)
                break;
        }
        if (!strchr(buf, '.'))
            strncat(buf, ".0", size - strlen(buf) - 1);
    } else {
        for (int p = 0; p <= 17; p++) {
            snprintf(buf, size, "%.*e", p, x);
            if (strtod(buf, NULL) == x)
                break;
        }
    }
    return buf;
}

const char *eopt_value_repr(const eopt_value *v, char *buf, int size)
{
    switch (v->kind) {
    case EOPT_VAL_NONE: snprintf(buf, (size_t)size, "None"); break;
    case EOPT_VAL_BOOL: snprintf(buf, (size_t)size, "%s", v->i ? "True" : "False"); break;
    case EOPT_VAL_INT: snprintf(buf, (size_t)size, "%lld", (long long)v->i); break;
    case EOPT_VAL_FLOAT: eopt_float_repr(v->f, buf, (size_t)size); break;
    case EOPT_VAL_STR: snprintf(buf, (size_t)size, "%s", v->s); break;
    case EOPT_VAL_FLOATS: {
        int off = snprintf(buf, (size_t)size, "(");
        for (int k = 0; k < v->nf && off < size; k++) {
            char num[40];
            off += snprintf(buf + off, (size_t)(size - off), k ? ", %s" : "%s", eopt_float_repr(v->fv[k], num, sizeof num));
        }
        if (off < size)
            snprintf(buf + off, (size_t)(size - off), ")");
        break;
    }
    }
    return buf;
}

int eopt_value_equal(const eopt_value *a, const eopt_value *b)
{
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case EOPT_VAL_NONE: return 1;
    case EOPT_VAL_BOOL:
    case EOPT_VAL_INT: return a->i == b->i;
    case EOPT_VAL_FLOAT: return a->f == b->f || (isnan(a->f) && isnan(b->f));
    case EOPT_VAL_STR: return strcmp(a->s, b->s) == 0;
    case EOPT_VAL_FLOATS:
        if (a->nf != b->nf)
            return 0;
        for (int k = 0; k < a->nf; k++)
            if (a->fv[k] != b->fv[k])
                return 0;
        return 1;
    }
    return 0;
}
