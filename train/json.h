/* A small JSON reader for the files eopt writes (metrics lines, run.json, study.json,
 * outcome.json): one text parsed into a tree of values. Numbers are doubles; `null` is its own
 * type (eopt writes non-finite numbers as null), read as NaN by eopt_json_num. */
#ifndef EOPT_JSON_H
#define EOPT_JSON_H

#include "framework/error.h"

typedef enum { EOPT_JSON_NULL, EOPT_JSON_BOOL, EOPT_JSON_NUMBER, EOPT_JSON_STRING, EOPT_JSON_ARRAY, EOPT_JSON_OBJECT } eopt_json_type;

typedef struct eopt_json {
    eopt_json_type type;
    double num;              /* NUMBER; BOOL: 0 or 1 */
    char *str;               /* STRING (NUL-terminated, escapes decoded) */
    int n;                   /* ARRAY, OBJECT: the number of items */
    struct eopt_json *items; /* [n] */
    char **keys;             /* OBJECT: [n], in file order */
} eopt_json;

/* Parses the whole of `text` (whitespace around the value allowed, nothing else); on failure
 * the message gives the column and what was expected, and *out is left empty. */
eopt_status eopt_json_parse(const char *text, eopt_json *out);
void eopt_json_free(eopt_json *v);

/* The member `key` of an object (NULL if v is not an object or has no such key). */
const eopt_json *eopt_json_get(const eopt_json *v, const char *key);
/* The number at `key` (NaN when absent, null or not a number). */
double eopt_json_num(const eopt_json *v, const char *key);
/* The string at `key` (NULL when absent or not a string). */
const char *eopt_json_str(const eopt_json *v, const char *key);

#endif
