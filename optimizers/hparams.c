#include "hparams.h"

#include <stdio.h>
#include <string.h>

eopt_status eopt_hparams_defaults(const eopt_hparam *table, eopt_dict *d)
{
    for (const eopt_hparam *h = table; h && h->key; h++)
        if (!eopt_dict_get(d, h->key))
            EOPT_TRY(eopt_dict_set(d, h->key, h->def));
    return EOPT_OK;
}

eopt_status eopt_choice(const char *what, const char *key, const char *val, const char *const *choices,
                        const char *invalid, int *out)
{
    for (int k = 0; choices[k]; k++)
        if (strcmp(val, choices[k]) == 0) {
            *out = k;
            return EOPT_OK;
        }
    char msg[256];
    if (invalid)
        snprintf(msg, sizeof msg, invalid, val);
    else
        snprintf(msg, sizeof msg, "Invalid %s: %s", key, val);
    return eopt_fail(EOPT_ERR_ARG, "%s: %s", what, msg);
}

/* One row: the typed read into `at` (NULL: check only). */
static eopt_status read_one(const eopt_hparam *h, const eopt_dict *d, const char *what, void *at)
{
    double f;
    int64_t i;
    int b;
    const char *s;
    switch (h->kind) {
    case EOPT_HP_FLOAT:
        EOPT_TRY(eopt_dict_float(d, what, h->key, &f));
        if (at)
            memcpy(at, &f, sizeof f);
        return EOPT_OK;
    case EOPT_HP_INT:
        EOPT_TRY(eopt_dict_int(d, what, h->key, &i));
        if (at)
            memcpy(at, &i, sizeof i);
        return EOPT_OK;
    case EOPT_HP_BOOL:
        EOPT_TRY(eopt_dict_bool(d, what, h->key, &b));
        if (at)
            memcpy(at, &b, sizeof b);
        return EOPT_OK;
    case EOPT_HP_STR: return eopt_dict_str(d, what, h->key, &s);
    case EOPT_HP_ENUM:
        EOPT_TRY(eopt_dict_str(d, what, h->key, &s));
        EOPT_TRY(eopt_choice(what, h->key, s, h->choices, h->invalid, &b));
        if (at)
            memcpy(at, &b, sizeof b);
        return EOPT_OK;
    case EOPT_HP_FLOATS: {
        double fv[EOPT_FLOATS_MAX];
        EOPT_TRY(eopt_dict_floats(d, what, h->key, h->n, fv));
        if (at)
            memcpy(at, fv, sizeof(double) * (size_t)h->n);
        return EOPT_OK;
    }
    case EOPT_HP_ANY: return EOPT_OK;
    }
    return EOPT_OK;
}

eopt_status eopt_hparams_read(const eopt_hparam *table, const eopt_dict *d, const char *what, void *out)
{
    for (const eopt_hparam *h = table; h && h->key; h++) {
        const eopt_value *v = eopt_dict_get(d, h->key);
        if (v && v->kind == EOPT_VAL_NONE && h->none == EOPT_NONE_KEEP)
            continue;
        if (v && v->kind == EOPT_VAL_NONE && h->none == EOPT_NONE_REQUIRED)
            return eopt_fail(EOPT_ERR_ARG, "%s: missing required argument '%s'", what, h->key);
        EOPT_TRY(read_one(h, d, what, h->offset >= 0 ? (char *)out + h->offset : NULL));
    }
    return EOPT_OK;
}
