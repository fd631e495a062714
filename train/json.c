/* JSON reader (json.h): recursive descent over the text, one value per call. */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char *s, *start;
    int depth;
} cursor;

static eopt_status value(cursor *c, eopt_json *v);

static eopt_status fail(const cursor *c, const char *what)
{
    int line = 1;
    const char *bol = c->start;
    for (const char *p = c->start; p < c->s; p++)
        if (*p == '\n')
            line++, bol = p + 1;
    if (line == 1)
        return eopt_fail(EOPT_ERR_FORMAT, "JSON: expected %s at column %d", what, (int)(c->s - bol) + 1);
    return eopt_fail(EOPT_ERR_FORMAT, "JSON: expected %s at line %d, column %d", what, line, (int)(c->s - bol) + 1);
}

static void skip_space(cursor *c)
{
    while (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r')
        c->s++;
}

static int hex4(const char *s)
{
    int u = 0;
    for (int k = 0; k < 4; k++) {
        char h = s[k];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        u = 16 * u + d;
    }
    return u;
}

/* Code point u as UTF-8 at d; the bytes written. */
static int utf8(char *d, unsigned u)
{
    if (u < 0x80)
        return d[0] = (char)u, 1;
    if (u < 0x800)
        return d[0] = (char)(0xC0 | u >> 6), d[1] = (char)(0x80 | (u & 0x3F)), 2;
    if (u < 0x10000)
        return d[0] = (char)(0xE0 | u >> 12), d[1] = (char)(0x80 | (u >> 6 & 0x3F)), d[2] = (char)(0x80 | (u & 0x3F)), 3;
    d[0] = (char)(0xF0 | u >> 18), d[1] = (char)(0x80 | (u >> 12 & 0x3F));
    return d[2] = (char)(0x80 | (u >> 6 & 0x3F)), d[3] = (char)(0x80 | (u & 0x3F)), 4;
}

/* A string literal at c->s (the opening quote) into a new buffer: its escapes decoded never
 * lengthen it, so the literal's length bounds the result. */
static eopt_status string(cursor *c, char **out)
{
    const char *e = c->s + 1;
    while (*e && *e != '"')
        e += *e == '\\' && e[1] ? 2 : 1;
    if (*e != '"')
        return fail(c, "a closing '\"'");
    char *d = malloc((size_t)(e - c->s)), *p = d;
    if (!d)
        return eopt_fail(EOPT_ERR_NOMEM, "JSON: out of memory");
    for (c->s++; *c->s != '"'; c->s++) {
        if ((unsigned char)*c->s < 0x20)
            return free(d), fail(c, "no control character in a string");
        if (*c->s != '\\') {
            *p++ = *c->s;
            continue;
        }
        const char *esc = strchr("\"\\/bfnrt", *++c->s);
        if (esc && *esc) {
            *p++ = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            continue;
        }
        int u = *c->s == 'u' ? hex4(c->s + 1) : -1;
        if (u < 0)
            return free(d), fail(c, "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
        c->s += 4;
        int lo = u >= 0xD800 && u < 0xDC00 && c->s[1] == '\\' && c->s[2] == 'u' ? hex4(c->s + 3) : -1;
        if (lo >= 0xDC00 && lo < 0xE000) /* a surrogate pair: one code point above U+FFFF */
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00), c->s += 6;
        p += utf8(p, (unsigned)u);
    }
    c->s++;
    *p = 0;
    *out = d;
    return EOPT_OK;
}

static eopt_status number(cursor *c, eopt_json *v)
{
    const char *s = c->s + (*c->s == '-');
    if (*s < '0' || *s > '9') /* strtod alone would take "nan", "inf", hex and a leading '+' */
        return fail(c, "a value");
    char *end;
    v->type = EOPT_JSON_NUMBER;
    v->num = strtod(c->s, &end);
    c->s = end;
    return EOPT_OK;
}

static eopt_status grow(eopt_json *v, int object)
{
    if (v->n & (v->n - 1)) /* doubled at every power of two */
        return EOPT_OK;
    size_t cap = v->n ? 2 * (size_t)v->n : 1;
    eopt_json *items = realloc(v->items, cap * sizeof *items);
    if (items)
        v->items = items;
    char **keys = items && object ? realloc(v->keys, cap * sizeof *keys) : NULL;
    if (keys)
        v->keys = keys;
    return items && (keys || !object) ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "JSON: out of memory");
}

/* An array or object at c->s (its opening bracket); items are added one by one, so that on a
 * failure v holds only complete ones and eopt_json_free releases them. */
static eopt_status container(cursor *c, eopt_json *v, int object)
{
    const char close = object ? '}' : ']';
    v->type = object ? EOPT_JSON_OBJECT : EOPT_JSON_ARRAY;
    if (++c->depth > MAX_DEPTH)
        return fail(c, "less nesting");
    c->s++;
    skip_space(c);
    if (*c->s == close)
        return c->s++, c->depth--, EOPT_OK;
    for (;;) {
        EOPT_TRY(grow(v, object));
        char *key = NULL;
        if (object) {
            skip_space(c);
            if (*c->s != '"')
                return fail(c, "a key in quotes");
            EOPT_TRY(string(c, &key));
            skip_space(c);
            if (*c->s != ':')
                return free(key), fail(c, "':'");
            c->s++;
        }
        eopt_json item = {0};
        eopt_status st = value(c, &item);
        if (st != EOPT_OK)
            return free(key), eopt_json_free(&item), st;
        if (object)
            v->keys[v->n] = key;
        v->items[v->n++] = item;
        skip_space(c);
        if (*c->s == close)
            return c->s++, c->depth--, EOPT_OK;
        if (*c->s != ',')
            return fail(c, object ? "',' or '}'" : "',' or ']'");
        c->s++;
    }
}

static eopt_status value(cursor *c, eopt_json *v)
{
    skip_space(c);
    memset(v, 0, sizeof *v);
    switch (*c->s) {
    case '{': return container(c, v, 1);
    case '[': return container(c, v, 0);
    case '"': v->type = EOPT_JSON_STRING; return string(c, &v->str);
    case 't': case 'f': case 'n': {
        static const char *const words[] = {"true", "false", "null"};
        for (int k = 0; k < 3; k++)
            if (strncmp(c->s, words[k], strlen(words[k])) == 0) {
                v->type = k < 2 ? EOPT_JSON_BOOL : EOPT_JSON_NULL, v->num = k == 0;
                c->s += strlen(words[k]);
                return EOPT_OK;
            }
        return fail(c, "a value");
    }
    default: return number(c, v);
    }
}

eopt_status eopt_json_parse(const char *text, eopt_json *out)
{
    cursor c = {text, text, 0};
    eopt_status st = value(&c, out);
    skip_space(&c);
    if (st == EOPT_OK && *c.s)
        st = fail(&c, "the end of the text");
    if (st != EOPT_OK)
        eopt_json_free(out);
    return st;
}

void eopt_json_free(eopt_json *v)
{
    for (int k = 0; k < v->n; k++) {
        eopt_json_free(&v->items[k]);
        if (v->keys)
            free(v->keys[k]);
    }
    free(v->items), free(v->keys), free(v->str);
    memset(v, 0, sizeof *v);
}

const eopt_json *eopt_json_get(const eopt_json *v, const char *key)
{
    if (!v || v->type != EOPT_JSON_OBJECT)
        return NULL;
    for (int k = 0; k < v->n; k++)
        if (strcmp(v->keys[k], key) == 0)
            return &v->items[k];
    return NULL;
}

double eopt_json_num(const eopt_json *v, const char *key)
{
    const eopt_json *m = eopt_json_get(v, key);
    return m && m->type == EOPT_JSON_NUMBER ? m->num : NAN;
}

const char *eopt_json_str(const eopt_json *v, const char *key)
{
    const eopt_json *m = eopt_json_get(v, key);
    return m && m->type == EOPT_JSON_STRING ? m->str : NULL;
}
