/* A class's hyperparameters declared as a table: key, kind, default, what None means, allowed
 * values and where the typed value goes in the class's struct. The table gives the defaults in
 * upstream's key order (a checkpoint's param_groups and constructor-argument dicts must match
 * upstream's), the typed reads and their messages; each class adds only its value checks. */
#ifndef EOPT_HPARAMS_H
#define EOPT_HPARAMS_H

#include <stddef.h>

#include "../framework/value.h"

typedef enum {
    EOPT_HP_FLOAT = 1, /* double */
    EOPT_HP_INT,       /* int64_t */
    EOPT_HP_BOOL,      /* int */
    EOPT_HP_STR,       /* type-checked only (no target: a pointer would dangle into the dict) */
    EOPT_HP_ENUM,      /* int: the index of the value in `choices` */
    EOPT_HP_FLOATS,    /* double[n] */
    EOPT_HP_ANY,       /* stored, not read (the class reads it) */
} eopt_hp_kind;

/* What a None value means. */
typedef enum {
    EOPT_NONE_TYPE = 0, /* a type error, as for any other wrong type */
    EOPT_NONE_KEEP,     /* the target keeps what the class preset (None reads as False, or "use the default") */
    EOPT_NONE_REQUIRED, /* "missing required argument 'key'": a required key left unset */
} eopt_hp_none;

typedef struct {
    const char *key;
    eopt_hp_kind kind;
    eopt_value def;            /* default (kind EOPT_VAL_NONE: None) */
    eopt_hp_none none;
    int offset;                /* offsetof the target in the class's struct; -1: checked, not stored */
    int n;                     /* EOPT_HP_FLOATS: the tuple's length */
    const char *const *choices; /* EOPT_HP_ENUM: allowed values, NULL-terminated */
    const char *invalid;       /* EOPT_HP_ENUM: message for another value, one %s for it */
} eopt_hparam;

/* Table rows: key, default, target (struct type and field; use EOPT_NOWHERE for none). */
#define EOPT_AT(type, field) ((int)offsetof(type, field))
#define EOPT_NOWHERE (-1)
#define EOPT_HP_F(key, def, at) {key, EOPT_HP_FLOAT, {.kind = EOPT_VAL_FLOAT, .f = (def)}, EOPT_NONE_TYPE, at, 0, 0, 0}
#define EOPT_HP_I(key, def, at) {key, EOPT_HP_INT, {.kind = EOPT_VAL_INT, .i = (def)}, EOPT_NONE_TYPE, at, 0, 0, 0}
#define EOPT_HP_B(key, def, at) {key, EOPT_HP_BOOL, {.kind = EOPT_VAL_BOOL, .i = (def)}, EOPT_NONE_TYPE, at, 0, 0, 0}
/* A float that None leaves unset: "missing required argument". */
#define EOPT_HP_FR(key, def, at) {key, EOPT_HP_FLOAT, {.kind = EOPT_VAL_FLOAT, .f = (def)}, EOPT_NONE_REQUIRED, at, 0, 0, 0}
/* A bool that may also be None (reading as False). */
#define EOPT_HP_BN(key, def, at) {key, EOPT_HP_BOOL, {.kind = EOPT_VAL_BOOL, .i = (def)}, EOPT_NONE_KEEP, at, 0, 0, 0}
#define EOPT_HP_S(key, def) {key, EOPT_HP_STR, {.kind = EOPT_VAL_STR, .s = def}, EOPT_NONE_TYPE, EOPT_NOWHERE, 0, 0, 0}
#define EOPT_HP_E(key, def, at, choices, invalid)                                                                  \
    {key, EOPT_HP_ENUM, {.kind = EOPT_VAL_STR, .s = def}, EOPT_NONE_TYPE, at, 0, choices, invalid}
#define EOPT_HP_F2(key, a, b, at)                                                                                  \
    {key, EOPT_HP_FLOATS, {.kind = EOPT_VAL_FLOATS, .nf = 2, .fv = {a, b}}, EOPT_NONE_TYPE, at, 2, 0, 0}
/* A key whose default is None: read as `hk` when set, None as `none` says. */
#define EOPT_HP_NONE(key, hk, none, at) {key, hk, {.kind = EOPT_VAL_NONE}, none, at, 0, 0, 0}
#define EOPT_HP_END {0}

/* Appends every key of `table` to d (keeping the position of keys already there), in order. */
eopt_status eopt_hparams_defaults(const eopt_hparam *table, eopt_dict *d);

/* Reads every key of `table` from d into the struct at `out` (rows with offset -1 are only
 * checked). Messages name `what` ("Muon param group 0") and the key. */
eopt_status eopt_hparams_read(const eopt_hparam *table, const eopt_dict *d, const char *what, void *out);

/* The index of `val` in the NULL-terminated `choices`; otherwise "<what>: " + `invalid` with
 * `val` for its %s (NULL: "Invalid <key>: <val>"). */
eopt_status eopt_choice(const char *what, const char *key, const char *val, const char *const *choices,
                        const char *invalid, int *out);

#endif
