/* Python-like values and small ordered dictionaries: the hyperparameters of an optimizer
 * (constructor arguments and param-group keys), kept in torch's key order so that a
 * checkpoint written here matches what PyTorch keeps. Flat and fixed-size: a dict is copied
 * by assignment, which makes "validate a copy, then swap" loads trivial. */
#ifndef EOPT_VALUE_H
#define EOPT_VALUE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum {
    EOPT_VAL_NONE = 0, /* Python None: an absent attribute in a checkpoint */
    EOPT_VAL_BOOL,
    EOPT_VAL_INT,
    EOPT_VAL_FLOAT,
    EOPT_VAL_STR,
    EOPT_VAL_FLOATS, /* a tuple of floats, e.g. betas */
} eopt_value_kind;

#define EOPT_KEY_MAX 40
#define EOPT_STR_MAX 64
#define EOPT_FLOATS_MAX 24 /* betas; or up to 8 custom Newton-Schulz (a, b, c) triples */
#define EOPT_DICT_MAX 40

typedef struct {
    eopt_value_kind kind;
    int64_t i; /* BOOL (0/1) and INT */
    double f;  /* FLOAT */
    int nf;    /* FLOATS */
    double fv[EOPT_FLOATS_MAX];
    char s[EOPT_STR_MAX]; /* STR */
} eopt_value;

typedef struct {
    char key[EOPT_KEY_MAX];
    eopt_value v;
} eopt_item;

typedef struct {
    int n;
    eopt_item items[EOPT_DICT_MAX];
} eopt_dict;

eopt_value eopt_bool(int b);
eopt_value eopt_int(int64_t i);
eopt_value eopt_float(double f);
eopt_value eopt_str(const char *s);
eopt_value eopt_floats(int n, const double *fv);

/* Sets key (appending it if new, keeping its position if present). */
eopt_status eopt_dict_set(eopt_dict *d, const char *key, eopt_value v);
const eopt_value *eopt_dict_get(const eopt_dict *d, const char *key);
void eopt_dict_remove(eopt_dict *d, const char *key);
/* Appends every key of `defaults` that `d` lacks, in the order of `defaults` (torch's
 * param-group rule: user keys first, then missing defaults). */
eopt_status eopt_dict_merge_defaults(eopt_dict *d, const eopt_dict *defaults);

/* Typed reads with Python's conversions (an int is a float, a bool an int); a missing key or
 * a wrong type is an error naming `what` (e.g. "Muon param group 0") and the key. */
eopt_status eopt_dict_float(const eopt_dict *d, const char *what, const char *key, double *out);
eopt_status eopt_dict_int(const eopt_dict *d, const char *what, const char *key, int64_t *out);
eopt_status eopt_dict_bool(const eopt_dict *d, const char *what, const char *key, int *out);
eopt_status eopt_dict_str(const eopt_dict *d, const char *what, const char *key, const char **out);
eopt_status eopt_dict_floats(const eopt_dict *d, const char *what, const char *key, int n, double *out);

/* Python str() of a float: shortest round trip, "0.001", "1e-08", "2.0", "-inf". */
const char *eopt_float_repr(double x, char *buf, size_t size);
/* Python str() of a value ("0.01", "True", "None", "(0.9, 0.95)"), for messages. */
const char *eopt_value_repr(const eopt_value *v, char *buf, int size);
int eopt_value_equal(const eopt_value *a, const eopt_value *b);

#endif
