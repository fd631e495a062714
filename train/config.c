/* Training configurations from libconfig files (config.h). Parsing reads the libconfig tree
 * into flat structs; every check names the file, the line and the key path. */
#include "config.h"
#include "data.h"

#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name; /* file name for messages */
    eopt_config *cfg;
    char run_suffix[16]; /* "-<hash of the --set overrides>" for the default run folder, or "" */
} parser;

/* ---- the keys of each section: the parser checks a file against these tables, and
 * eopt_config_key_tables() lists them (docs/config.md documents each; a test compares) ---- */

static const char *const top_keys[] = {"model", "data", "run", "optimizers", "checkpoint", "log", NULL};
static const char *const model_gpt_keys[] = {"kind", "vocab_size", "block_size", "n_layer", "n_head", "n_embd", NULL};
static const char *const model_mlp_keys[] = {"kind", "dims", NULL};
static const char *const data_text_keys[] = {"kind", "path", "val_fraction", NULL};
static const char *const data_image_keys[] = {"kind", "path", "normalize", NULL};
static const char *const data_token_keys[] = {"kind", "format", "train", "val", "shuffle", NULL};
static const char *const run_keys[] = {"steps",         "batch_size",    "seq_len",     "grad_accum", "eval_interval",
                                       "eval_batches",  "seed",          "device",      "threads",    "on_nonfinite",
                                       "sample_tokens", "sample_prompt", "temperature", "top_k",      "grad_clip",
                                       "max_nonfinite_skips", "diverge_loss", NULL};
static const char *const optimizer_keys[] = {"name", "class", "args", "schedule", "ramps", "groups", NULL};
/* and the hyperparameters of the optimizer's class */
static const char *const group_keys[] = {"name", "params", "exclude", "ndim", "schedule", "ramps", NULL};
static const char *const schedule_keys[] = {"kind", "warmup", "total", "decay", "floor", NULL};
static const char *const schedule_piecewise_keys[] = {"kind", "points", NULL};
static const char *const ramp_constant_keys[] = {"kind", "value", NULL};
static const char *const ramp_shaped_keys[] = {"kind", "from", "to", "start", "end", NULL};
static const char *const ramp_piecewise_keys[] = {"kind", "points", NULL};
static const char *const checkpoint_keys[] = {"dir", "interval", "keep", NULL};
static const char *const log_keys[] = {"metrics", "interval", "progress", "diagnostics_interval", "spike_window",
                                       "spike_z", NULL};

static const eopt_config_keys key_tables[] = {
    {"", top_keys},
    {"model", model_gpt_keys},
    {"model", model_mlp_keys},
    {"data", data_text_keys},
    {"data", data_image_keys},
    {"data", data_token_keys},
    {"run", run_keys},
    {"optimizers[]", optimizer_keys},
    {"optimizers[].groups[]", group_keys},
    {"schedule", schedule_keys},
    {"schedule", schedule_piecewise_keys},
    {"ramps.KEY", ramp_constant_keys},
    {"ramps.KEY", ramp_shaped_keys},
    {"ramps.KEY", ramp_piecewise_keys},
    {"checkpoint", checkpoint_keys},
    {"log", log_keys},
    {NULL, NULL},
};

const eopt_config_keys *eopt_config_key_tables(void) { return key_tables; }

int eopt_edit_distance(const char *a, const char *b)
{
    int n = (int)strlen(b), row[256];
    if (n > 255)
        n = 255;
    for (int j = 0; j <= n; j++)
        row[j] = j;
    for (int i = 1; a[i - 1]; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= n; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[n];
}

const char *eopt_nearest(const char *word, const char *const *words, int n)
{
    int best = -1, bestd = 0;
    for (int k = 0; k < n; k++) {
        int d = eopt_edit_distance(word, words[k]);
        if (best < 0 || d < bestd)
            best = k, bestd = d;
    }
    int len = (int)strlen(word), limit = len / 3 > 2 ? len / 3 : 2;
    return best < 0 || bestd > limit ? NULL : words[best];
}

/* " (did you mean 'x'?)" for the nearest of `cands`, or "". */
static const char *suggest(const char *word, const char *const *cands, int n, char *buf, size_t size)
{
    const char *near = eopt_nearest(word, cands, n);
    if (near)
        snprintf(buf, size, " (did you mean '%s'?)", near);
    else
        buf[0] = 0;
    return buf;
}

static void setting_path(const config_setting_t *s, char *buf, size_t size)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (!parent) {
        buf[0] = 0;
        return;
    }
    setting_path(parent, buf, size);
    size_t len = strlen(buf);
    const char *name = config_setting_name(s);
    if (name)
        snprintf(buf + len, size - len, "%s%s", len ? "." : "", name);
    else
        snprintf(buf + len, size - len, "%s[%d]", len ? "." : "", config_setting_index(s));
}

/* "file:line: path" (or "--set path" for a setting given on the command line; just "file"
 * for an absent section). */
static const char *where(const parser *p, const config_setting_t *s, char *buf, size_t size)
{
    char path[EOPT_CFG_PATH_MAX];
    if (!s) {
        snprintf(buf, size, "%s", p->name);
        return buf;
    }
    setting_path(s, path, sizeof path);
    int line = (int)config_setting_source_line(s);
    if (line > 0)
        snprintf(buf, size, "%s:%d: %s", p->name, line, path[0] ? path : "(top level)");
    else
        snprintf(buf, size, "--set %s", path);
    return buf;
}

__attribute__((format(printf, 3, 4))) static eopt_status bad(const parser *p, const config_setting_t *s,
                                                             const char *fmt, ...)
{
    char w[EOPT_CFG_PATH_MAX + 64], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return eopt_fail(EOPT_ERR_CONFIG, "%s: %s", where(p, s, w, sizeof w), msg);
}

static const char *type_name(int t)
{
    switch (t) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

static int is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static int is_number(const config_setting_t *s) { return is_int(s) || config_setting_type(s) == CONFIG_TYPE_FLOAT; }

static double number(const config_setting_t *s)
{
    return is_int(s) ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
}

/* Rejects members of group g not in `keys` (NULL-terminated), suggesting the nearest and listing
 * them all (an optimizer's args: its class's arguments and group hyperparameters). */
static eopt_status check_keys(const parser *p, const config_setting_t *g, const char *const *keys)
{
    if (!g)
        return EOPT_OK;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(p, g, "expected a group { ... }, got %s", type_name(config_setting_type(g)));
    int nkeys = 0;
    while (keys[nkeys])
        nkeys++;
    for (int k = 0; k < config_setting_length(g); k++) {
        const config_setting_t *m = config_setting_get_elem(g, k);
        const char *name = config_setting_name(m);
        int known = 0;
        for (int j = 0; j < nkeys && !known; j++)
            known = strcmp(keys[j], name) == 0;
        if (!known) {
            char hint[EOPT_NAME_MAX + 32], valid[768] = "";
            for (int j = 0; j < nkeys; j++)
                snprintf(valid + strlen(valid), sizeof valid - strlen(valid), "%s%s", j ? ", " : "", keys[j]);
            return bad(p, m, "unknown key '%s'%s; valid keys here: %s", name,
                       suggest(name, keys, nkeys, hint, sizeof hint), valid);
        }
    }
    return EOPT_OK;
}

static const config_setting_t *member(const config_setting_t *g, const char *key)
{
    return g ? config_setting_get_member(g, key) : NULL;
}

static eopt_status get_int(const parser *p, const config_setting_t *g, const char *key, int64_t lo, int64_t hi,
                           int64_t def, int64_t *out)
{
    const config_setting_t *s = member(g, key);
    *out = def;
    if (!s)
        return EOPT_OK;
    if (!is_int(s))
        return bad(p, s, "expected an integer, got %s", type_name(config_setting_type(s)));
    int64_t v = config_setting_get_int64(s);
    if (v < lo || v > hi)
        return bad(p, s, "%lld is out of range [%lld, %lld]", (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return EOPT_OK;
}

static eopt_status get_i(const parser *p, const config_setting_t *g, const char *key, int lo, int hi, int def,
                         int *out)
{
    int64_t v;
    EOPT_TRY(get_int(p, g, key, lo, hi, def, &v));
    *out = (int)v;
    return EOPT_OK;
}

static eopt_status get_float(const parser *p, const config_setting_t *g, const char *key, double lo, double hi,
                             double def, double *out)
{
    const config_setting_t *s = member(g, key);
    *out = def;
    if (!s)
        return EOPT_OK;
    if (!is_number(s))
        return bad(p, s, "expected a number, got %s", type_name(config_setting_type(s)));
    double v = number(s);
    if (!(v >= lo && v <= hi))
        return bad(p, s, "%g is out of range [%g, %g]", v, lo, hi);
    *out = v;
    return EOPT_OK;
}

static eopt_status get_bool(const parser *p, const config_setting_t *g, const char *key, int def, int *out)
{
    const config_setting_t *s = member(g, key);
    *out = def;
    if (!s)
        return EOPT_OK;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return bad(p, s, "expected true or false, got %s", type_name(config_setting_type(s)));
    *out = config_setting_get_bool(s);
    return EOPT_OK;
}

/* def NULL: the key is required (the message points at the enclosing group `g`). */
static eopt_status get_str(const parser *p, const config_setting_t *g, const char *key, const char *def, char *out,
                           size_t size)
{
    const config_setting_t *s = member(g, key);
    if (!s) {
        if (!def)
            return bad(p, g, "missing key '%s'", key);
        snprintf(out, size, "%s", def);
        return EOPT_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return bad(p, s, "expected a string, got %s", type_name(config_setting_type(s)));
    const char *v = config_setting_get_string(s);
    if (strlen(v) >= size)
        return bad(p, s, "string longer than %zu characters", size - 1);
    snprintf(out, size, "%s", v);
    return EOPT_OK;
}

/* A string that must be one of `names` (NULL-terminated); *out its index. */
static eopt_status get_choice(const parser *p, const config_setting_t *g, const char *key,
                              const char *const *names, int def, int *out)
{
    char v[64];
    EOPT_TRY(get_str(p, g, key, def >= 0 ? names[def] : NULL, v, sizeof v));
    int n = 0;
    while (names[n])
        n++;
    for (int k = 0; k < n; k++)
        if (strcmp(names[k], v) == 0) {
            *out = k;
            return EOPT_OK;
        }
    char hint[96], list[256] = "";
    for (int k = 0; k < n; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"", k ? ", " : "", names[k]);
    return bad(p, member(g, key), "'%s' is not one of %s%s", v, list, suggest(v, names, n, hint, sizeof hint));
}

/* ---- sections ---- */

static eopt_status parse_model(parser *p, const config_setting_t *g)
{
    static const char *const kinds[] = {"mlp", "gpt", NULL};
    eopt_model_config *m = &p->cfg->model;
    if (!g)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: missing section 'model'", p->name);
    int kind;
    EOPT_TRY(get_choice(p, g, "kind", kinds, -1, &kind));
    memset(m, 0, sizeof *m);
    m->kind = (eopt_model_kind)kind;
    if (m->kind == EOPT_MODEL_GPT) {
        EOPT_TRY(check_keys(p, g, model_gpt_keys));
        EOPT_TRY(get_i(p, g, "vocab_size", 1, 1 << 20, EOPT_TEXT_VOCAB, &m->vocab_size));
        EOPT_TRY(get_i(p, g, "block_size", 1, 1 << 16, 64, &m->block_size));
        EOPT_TRY(get_i(p, g, "n_layer", 1, 256, 2, &m->n_layer));
        EOPT_TRY(get_i(p, g, "n_head", 1, 256, 4, &m->n_head));
        EOPT_TRY(get_i(p, g, "n_embd", 1, 1 << 16, 64, &m->n_embd));
        if (m->n_embd % m->n_head)
            return bad(p, g, "n_embd = %d is not divisible by n_head = %d", m->n_embd, m->n_head);
        return EOPT_OK;
    }
    EOPT_TRY(check_keys(p, g, model_mlp_keys));
    const config_setting_t *d = member(g, "dims");
    if (!d)
        return bad(p, g, "missing key 'dims'");
    int t = config_setting_type(d), n = config_setting_length(d);
    if ((t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) || n < 2 || n > EOPT_MLP_MAX_LAYERS + 1)
        return bad(p, d, "expected an array of 2 to %d layer widths", EOPT_MLP_MAX_LAYERS + 1);
    m->ndims = n;
    for (int k = 0; k < n; k++) {
        const config_setting_t *e = config_setting_get_elem(d, k);
        if (!is_int(e) || config_setting_get_int64(e) < 1 || config_setting_get_int64(e) > (1 << 20))
            return bad(p, d, "element %d must be a positive integer width", k);
        m->dims[k] = (int)config_setting_get_int64(e);
    }
    return EOPT_OK;
}

/* A string or an array of strings (each shorter than `width`, at most `max`) into the rows of
 * out[max][width]; *n = 0 if the key is absent. `what` names an element in messages. */
static eopt_status get_strings(const parser *p, const config_setting_t *g, const char *key, const char *what,
                               int max, size_t width, char *out, int *n)
{
    const config_setting_t *s = member(g, key);
    *n = 0;
    if (!s)
        return EOPT_OK;
    int t = config_setting_type(s), single = t == CONFIG_TYPE_STRING;
    if (!single && t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return bad(p, s, "expected a %s or an array of them, got %s", what, type_name(t));
    int len = single ? 1 : config_setting_length(s);
    if (len > max)
        return bad(p, s, "at most %d patterns", max);
    for (int k = 0; k < len; k++) {
        const config_setting_t *e = single ? s : config_setting_get_elem(s, k);
        if (config_setting_type(e) != CONFIG_TYPE_STRING || strlen(config_setting_get_string(e)) >= width)
            return bad(p, s, "element %d is not a %s string (of at most %zu characters)", k, what, width - 1);
        snprintf(out + (size_t)k * width, width, "%s", config_setting_get_string(e));
    }
    *n = len;
    return EOPT_OK;
}

/* data.train or data.val: required, at least one pattern. */
static eopt_status get_shards(const parser *p, const config_setting_t *g, const char *key, eopt_split split)
{
    eopt_config *c = p->cfg;
    EOPT_TRY(get_strings(p, g, key, "shard path or glob", EOPT_CFG_MAX_SHARD_PATTERNS, EOPT_CFG_PATH_MAX,
                         c->data.shards[split][0], &c->data.nshards[split]));
    if (c->data.nshards[split] == 0)
        return bad(p, g, "'%s' needs token shards: a path or glob, or a list of them", key);
    return EOPT_OK;
}

/* A relative data path is looked for in the current folder, then beside the config file, then in
 * the folder above it (a repository's configs/x.cfg names data/...); the first that exists is
 * kept as an absolute path, so that the run's resolved config works from anywhere. */
static void resolve_data_path(const parser *p, char *path, size_t size)
{
    char dir[EOPT_CFG_PATH_MAX], cand[3][2 * EOPT_CFG_PATH_MAX + 8], real[PATH_MAX];
    const char *slash = strrchr(p->name, '/');
    if (!path[0] || path[0] == '/')
        return;
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - p->name) : 1, slash ? p->name : ".");
    snprintf(cand[0], sizeof cand[0], "%s", path);
    snprintf(cand[1], sizeof cand[1], "%s/%s", dir, path);
    snprintf(cand[2], sizeof cand[2], "%s/../%s", dir, path);
    for (int k = 0; k < 3; k++)
        if (realpath(cand[k], real) && strlen(real) < size) {
            snprintf(path, size, "%s", real);
            return;
        }
}

static eopt_status parse_data(parser *p, const config_setting_t *g)
{
    static const char *const kinds[] = {"text", "fashion-mnist", "tokens", NULL};
    static const char *const formats[] = {"llmc", "nanogpt", NULL};
    static const char *const *const keys[] = {data_text_keys, data_image_keys, data_token_keys};
    eopt_config *c = p->cfg;
    int kind, format;
    EOPT_TRY(get_choice(p, g, "kind", kinds, c->model.kind == EOPT_MODEL_GPT ? 0 : 1, &kind));
    EOPT_TRY(check_keys(p, g, keys[kind]));
    c->data.kind = (eopt_data_kind)kind;
    EOPT_TRY(get_str(p, g, "path", kind == EOPT_DATA_TEXT ? "data/moby-dick.txt" : "", c->data.path,
                     sizeof c->data.path));
    resolve_data_path(p, c->data.path, sizeof c->data.path);
    EOPT_TRY(get_float(p, g, "val_fraction", 0, 0.9, 0.1, &c->data.val_fraction));
    EOPT_TRY(get_bool(p, g, "normalize", 1, &c->data.normalize));
    const eopt_model_config *m = &c->model;
    if (kind == EOPT_DATA_TOKENS) {
        EOPT_TRY(get_choice(p, g, "format", formats, EOPT_TOKENS_LLMC, &format));
        c->data.format = (eopt_token_format)format;
        EOPT_TRY(get_bool(p, g, "shuffle", 0, &c->data.shuffle));
        EOPT_TRY(get_shards(p, g, "train", EOPT_SPLIT_TRAIN));
        EOPT_TRY(get_shards(p, g, "val", EOPT_SPLIT_VAL));
    }
    if (kind != EOPT_DATA_FASHION_MNIST && m->kind != EOPT_MODEL_GPT)
        return bad(p, g, "%s data needs model.kind = \"gpt\"", kinds[kind]);
    if (kind == EOPT_DATA_TEXT && m->vocab_size < EOPT_TEXT_VOCAB)
        return bad(p, g, "byte-level text needs model.vocab_size >= %d", EOPT_TEXT_VOCAB);
    if (kind == EOPT_DATA_FASHION_MNIST &&
        (m->kind != EOPT_MODEL_MLP || m->dims[0] != 784 || m->dims[m->ndims - 1] != 10))
        return bad(p, g, "fashion-mnist needs an mlp with dims [784, ..., 10]");
    return EOPT_OK;
}

static eopt_status parse_run(parser *p, const config_setting_t *g)
{
    static const char *const policies[] = {"stop", "skip", NULL};
    eopt_config *c = p->cfg;
    int gpt = c->model.kind == EOPT_MODEL_GPT, policy;
    int64_t seed;
    EOPT_TRY(check_keys(p, g, run_keys));
    EOPT_TRY(get_int(p, g, "steps", 1, INT64_MAX / 2, 1000, &c->run.steps));
    EOPT_TRY(get_i(p, g, "batch_size", 1, 1 << 20, gpt ? 16 : 128, &c->run.batch_size));
    EOPT_TRY(get_i(p, g, "seq_len", 1, gpt ? c->model.block_size : 1 << 20, gpt ? c->model.block_size : 1,
                   &c->run.seq_len));
    EOPT_TRY(get_i(p, g, "grad_accum", 1, 1 << 16, 1, &c->run.grad_accum));
    EOPT_TRY(get_int(p, g, "eval_interval", 0, INT64_MAX / 2, 0, &c->run.eval_interval));
    EOPT_TRY(get_i(p, g, "eval_batches", 0, 1 << 20, gpt ? 8 : 0, &c->run.eval_batches));
    if (gpt && c->run.eval_batches == 0)
        return bad(p, member(g, "eval_batches"), "text evaluation needs eval_batches >= 1");
    EOPT_TRY(get_int(p, g, "seed", 0, INT64_MAX, 1337, &seed));
    c->run.seed = (uint64_t)seed;
    const char *device = getenv("EOPT_DEVICE"); /* the default device: EOPT_DEVICE, else cpu */
    EOPT_TRY(get_str(p, g, "device", device && *device ? device : "cpu", c->run.device, sizeof c->run.device));
    EOPT_TRY(get_i(p, g, "threads", 0, 1024, 0, &c->run.threads));
    EOPT_TRY(get_choice(p, g, "on_nonfinite", policies, 0, &policy));
    c->run.on_nonfinite = (eopt_nonfinite_policy)policy;
    EOPT_TRY(get_i(p, g, "max_nonfinite_skips", 0, 1 << 30, 10, &c->run.max_nonfinite_skips));
    const int tokens = c->data.kind == EOPT_DATA_TOKENS;
    EOPT_TRY(get_i(p, g, "sample_tokens", 0, 1 << 20, gpt && !tokens ? 300 : 0, &c->run.sample_tokens));
    if (tokens && c->run.sample_tokens > 0) /* a sample is decoded as bytes */
        return bad(p, member(g, "sample_tokens"), "a sample needs byte-level text data (eopt has no tokenizer for "
                                                  "token shards): set it to 0");
    EOPT_TRY(get_str(p, g, "sample_prompt", "\n", c->run.sample_prompt, sizeof c->run.sample_prompt));
    EOPT_TRY(get_float(p, g, "temperature", 0, 100, 0.8, &c->run.temperature));
    EOPT_TRY(get_float(p, g, "grad_clip", 0, HUGE_VAL, 0, &c->run.grad_clip));
    EOPT_TRY(get_float(p, g, "diverge_loss", 0, HUGE_VAL, 0, &c->run.diverge_loss));
    return get_i(p, g, "top_k", 0, 1 << 20, 40, &c->run.top_k);
}

/* points = ((step, value), ...): steps strictly increasing (checked with the schedule). */
static eopt_status get_points(const parser *p, const config_setting_t *g, eopt_points *out)
{
    const config_setting_t *s = member(g, "points");
    if (!s)
        return bad(p, g, "missing key 'points' (e.g. points = ((0, 1.0), (100, 0.1)))");
    int t = config_setting_type(s), n = config_setting_length(s);
    if ((t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY) || n < 1 || n > EOPT_SCHEDULE_MAX_POINTS)
        return bad(p, s, "expected a list of 1 to %d (step, value) pairs", EOPT_SCHEDULE_MAX_POINTS);
    out->n = n;
    for (int k = 0; k < n; k++) {
        const config_setting_t *e = config_setting_get_elem(s, k);
        int te = config_setting_type(e);
        if ((te != CONFIG_TYPE_LIST && te != CONFIG_TYPE_ARRAY) || config_setting_length(e) != 2 ||
            !is_int(config_setting_get_elem(e, 0)) || !is_number(config_setting_get_elem(e, 1)))
            return bad(p, s, "point %d: expected (step, value) with an integer step", k);
        out->step[k] = config_setting_get_int64(config_setting_get_elem(e, 0));
        out->value[k] = number(config_setting_get_elem(e, 1));
    }
    return EOPT_OK;
}

static eopt_status parse_schedule(parser *p, const config_setting_t *g, eopt_lr_schedule *s)
{
    static const char *const kinds[] = {"constant", "warmup", "cosine", "linear", "wsd", "piecewise", NULL};
    int kind;
    char w[EOPT_CFG_PATH_MAX + 64];
    memset(s, 0, sizeof *s);
    EOPT_TRY(get_choice(p, g, "kind", kinds, 0, &kind));
    s->kind = (eopt_lr_kind)kind;
    if (s->kind == EOPT_LR_PIECEWISE) {
        EOPT_TRY(check_keys(p, g, schedule_piecewise_keys));
        EOPT_TRY(get_points(p, g, &s->points));
        return eopt_lr_schedule_check(s, where(p, g, w, sizeof w));
    }
    EOPT_TRY(check_keys(p, g, schedule_keys));
    EOPT_TRY(get_int(p, g, "warmup", 0, INT64_MAX / 2, 0, &s->warmup));
    EOPT_TRY(get_int(p, g, "total", 1, INT64_MAX / 2, p->cfg->run.steps, &s->total));
    EOPT_TRY(get_int(p, g, "decay", 0, INT64_MAX / 2, s->kind == EOPT_LR_WSD ? (s->total - s->warmup) / 5 : 0,
                     &s->decay));
    EOPT_TRY(get_float(p, g, "floor", 0, 1, 0, &s->floor));
    if (!member(g, "total") && s->kind != EOPT_LR_CONSTANT && s->kind != EOPT_LR_WARMUP && s->total <= s->warmup) {
        char path[EOPT_CFG_PATH_MAX];
        setting_path(g, path, sizeof path);
        return bad(p, member(g, "warmup"), "warmup = %lld must be below total, which is run.steps = %lld here (no "
                   "`total` given): lower the warmup (--set %s.warmup=%lld) or give the schedule a total",
                   (long long)s->warmup, (long long)s->total, path, (long long)s->total / 10);
    }
    return eopt_lr_schedule_check(s, where(p, g, w, sizeof w));
}

/* A number that must be given. */
static eopt_status need_float(const parser *p, const config_setting_t *g, const char *key, double *out)
{
    if (!member(g, key))
        return bad(p, g, "missing key '%s'", key);
    return get_float(p, g, key, -HUGE_VAL, HUGE_VAL, 0, out);
}

static eopt_status parse_ramp(parser *p, const config_setting_t *g, eopt_ramp *r)
{
    static const char *const kinds[] = {"constant", "linear", "cosine", "piecewise", NULL};
    int kind;
    char w[EOPT_CFG_PATH_MAX + 64];
    memset(r, 0, sizeof *r);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(p, g, "expected a ramp { kind = ...; ... }, got %s", type_name(config_setting_type(g)));
    EOPT_TRY(get_choice(p, g, "kind", kinds, -1, &kind));
    r->kind = (eopt_ramp_kind)kind;
    if (r->kind == EOPT_RAMP_CONSTANT) {
        EOPT_TRY(check_keys(p, g, ramp_constant_keys));
        EOPT_TRY(need_float(p, g, "value", &r->from));
        r->to = r->from;
    } else if (r->kind == EOPT_RAMP_PIECEWISE) {
        EOPT_TRY(check_keys(p, g, ramp_piecewise_keys));
        EOPT_TRY(get_points(p, g, &r->points));
    } else {
        EOPT_TRY(check_keys(p, g, ramp_shaped_keys));
        EOPT_TRY(need_float(p, g, "from", &r->from));
        EOPT_TRY(need_float(p, g, "to", &r->to));
        EOPT_TRY(get_int(p, g, "start", 0, INT64_MAX / 2, 0, &r->start));
        EOPT_TRY(get_int(p, g, "end", 1, INT64_MAX / 2, p->cfg->run.steps, &r->end));
    }
    return eopt_ramp_check(r, where(p, g, w, sizeof w));
}

/* ramps = { <key> = {...}; ... } of an optimizer (group -1) or of its group g. Only keys the
 * class declares schedulable; lr has `schedule`; a constructor argument is one value for all
 * groups. */
static eopt_status parse_ramps(parser *p, const config_setting_t *g, const eopt_optimizer_class *cls,
                               const eopt_dict *dargs, int group, eopt_schedules *s)
{
    if (!g)
        return EOPT_OK;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(p, g, "expected a group { <hyperparameter> = { kind = ...; ... }; ... }, got %s",
                   type_name(config_setting_type(g)));
    for (int k = 0; k < config_setting_length(g); k++) {
        const config_setting_t *m = config_setting_get_elem(g, k);
        const char *key = config_setting_name(m);
        char names[256], hint[EOPT_NAME_MAX + 32];
        int n = 0;
        while (cls->schedulable && cls->schedulable[n])
            n++;
        if (strcmp(key, "lr") == 0)
            return bad(p, m, "lr follows `schedule`; ramps move the other schedulable hyperparameters");
        if (!eopt_optimizer_schedulable(cls, key))
            return bad(p, m, "%s cannot schedule '%s'%s (schedulable: %s)", cls->id, key,
                       suggest(key, cls->schedulable, n, hint, sizeof hint),
                       eopt_optimizer_schedulable_names(cls, names, sizeof names));
        if (group >= 0 && eopt_dict_get(dargs, key))
            return bad(p, m, "'%s' is a constructor argument, one value for every group: ramp it in the "
                       "optimizer's ramps", key);
        if (s->nramps == EOPT_SCHEDULE_MAX_RAMPS)
            return bad(p, m, "at most %d ramps per optimizer", EOPT_SCHEDULE_MAX_RAMPS);
        eopt_named_ramp *r = &s->ramps[s->nramps];
        r->group = group;
        snprintf(r->key, sizeof r->key, "%s", key);
        EOPT_TRY(parse_ramp(p, m, &r->ramp));
        s->nramps++;
    }
    return EOPT_OK;
}

/* A hyperparameter typed like the class default `def` (a float default accepts integers;
 * a None default takes the value's own type). */
static eopt_status to_value(const parser *p, const config_setting_t *s, const eopt_value *def, eopt_value *out)
{
    int t = config_setting_type(s);
    eopt_value_kind want = def->kind;
    if (want == EOPT_VAL_NONE)
        want = is_int(s) ? EOPT_VAL_INT
             : t == CONFIG_TYPE_FLOAT ? EOPT_VAL_FLOAT
             : t == CONFIG_TYPE_BOOL ? EOPT_VAL_BOOL
             : t == CONFIG_TYPE_STRING ? EOPT_VAL_STR : EOPT_VAL_FLOATS;
    switch (want) {
    case EOPT_VAL_FLOAT:
        if (!is_number(s) || !isfinite(number(s)))
            return bad(p, s, "expected a finite number, got %s", type_name(t));
        *out = eopt_float(number(s));
        return EOPT_OK;
    case EOPT_VAL_INT:
        if (!is_int(s))
            return bad(p, s, "expected an integer, got %s", type_name(t));
        *out = eopt_int(config_setting_get_int64(s));
        return EOPT_OK;
    case EOPT_VAL_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return bad(p, s, "expected true or false, got %s", type_name(t));
        *out = eopt_bool(config_setting_get_bool(s));
        return EOPT_OK;
    case EOPT_VAL_STR:
        if (t != CONFIG_TYPE_STRING || strlen(config_setting_get_string(s)) >= EOPT_STR_MAX)
            return bad(p, s, "expected a string (under %d characters), got %s", EOPT_STR_MAX, type_name(t));
        *out = eopt_str(config_setting_get_string(s));
        return EOPT_OK;
    default: {
        int n = (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) ? config_setting_length(s) : -1;
        int need = def->kind == EOPT_VAL_FLOATS ? def->nf : n;
        double fv[EOPT_FLOATS_MAX];
        if (n < 1 || n != need || n > EOPT_FLOATS_MAX)
            return bad(p, s, "expected an array of %d numbers, got %s", need > 0 ? need : 2, type_name(t));
        for (int k = 0; k < n; k++) {
            const config_setting_t *e = config_setting_get_elem(s, k);
            if (!is_number(e))
                return bad(p, s, "element %d is not a number", k);
            fv[k] = number(e);
        }
        *out = eopt_floats(n, fv);
        return EOPT_OK;
    }
    }
}

static eopt_status get_ndim(const parser *p, const config_setting_t *g, unsigned *mask)
{
    const config_setting_t *s = member(g, "ndim");
    *mask = 0;
    if (!s)
        return EOPT_OK;
    int t = config_setting_type(s), single = is_int(s);
    if (!single && t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return bad(p, s, "expected a dimensionality (0 to %d) or an array of them", EOPT_MAX_DIMS);
    int len = single ? 1 : config_setting_length(s);
    for (int k = 0; k < len; k++) {
        const config_setting_t *e = single ? s : config_setting_get_elem(s, k);
        if (!is_int(e) || config_setting_get_int64(e) < 0 || config_setting_get_int64(e) > EOPT_MAX_DIMS)
            return bad(p, s, "dimensionalities lie in 0..%d", EOPT_MAX_DIMS);
        *mask |= 1u << config_setting_get_int64(e);
    }
    return EOPT_OK;
}

/* The keys of a dict as a list of names (for suggestions). */
static int dict_keys(const eopt_dict *d, const char **out, int n)
{
    for (int k = 0; k < d->n; k++)
        out[n++] = d->items[k].key;
    return n;
}

/* A value given in `g` (an optimizer's args: group -1; group g's keys) for a hyperparameter a ramp
 * moves there would be overwritten at every step: refused rather than ignored. */
static eopt_status check_not_ramped(const parser *p, const config_setting_t *g, const eopt_schedules *s, int group)
{
    for (int k = 0; k < s->nramps; k++) {
        const eopt_named_ramp *r = &s->ramps[k];
        const config_setting_t *v = member(g, r->key);
        if (v && (r->group == group || r->group < 0))
            return bad(p, v, "'%s' is also ramped (%sramps.%s), and the ramp sets it at every step: remove "
                       "one of the two", r->key, r->group < 0 ? "the optimizer's " : "this group's ", r->key);
    }
    return EOPT_OK;
}

static eopt_status parse_group(parser *p, const config_setting_t *g, const eopt_optimizer_class *cls,
                               const eopt_dict *dargs, const eopt_dict *dgroup, eopt_cfg_optimizer *o, int index)
{
    eopt_cfg_group *out = &o->groups[index];
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return bad(p, g, "expected a group { params = ...; }, got %s", type_name(config_setting_type(g)));
    memset(out, 0, sizeof *out);
    where(p, g, out->sel.where, sizeof out->sel.where);
    const char *keys[EOPT_DICT_MAX + 8];
    int nkeys = 0;
    for (; group_keys[nkeys]; nkeys++)
        keys[nkeys] = group_keys[nkeys];
    nkeys = dict_keys(dgroup, keys, nkeys);
    keys[nkeys] = NULL;
    EOPT_TRY(check_keys(p, g, keys));
    EOPT_TRY(get_strings(p, g, "params", "name pattern", EOPT_SELECT_MAX_PATTERNS, EOPT_NAME_MAX,
                         out->sel.patterns[0], &out->sel.npatterns));
    EOPT_TRY(get_strings(p, g, "exclude", "name pattern", EOPT_SELECT_MAX_PATTERNS, EOPT_NAME_MAX,
                         out->sel.exclude[0], &out->sel.nexclude));
    EOPT_TRY(get_ndim(p, g, &out->sel.ndim_mask));
    const config_setting_t *sch = member(g, "schedule");
    if (sch) {
        o->sched.has_group_lr[index] = 1;
        EOPT_TRY(parse_schedule(p, sch, &o->sched.group_lr[index]));
    }
    EOPT_TRY(parse_ramps(p, member(g, "ramps"), cls, dargs, index, &o->sched));
    EOPT_TRY(check_not_ramped(p, g, &o->sched, index));
    for (int k = 0; k < config_setting_length(g); k++) {
        const config_setting_t *m = config_setting_get_elem(g, k);
        const eopt_value *def = eopt_dict_get(dgroup, config_setting_name(m));
        eopt_value v;
        if (!def)
            continue;
        EOPT_TRY(to_value(p, m, def, &v));
        EOPT_TRY(eopt_dict_set(&out->hp, config_setting_name(m), v));
    }
    return EOPT_OK;
}

static eopt_status parse_class(parser *p, const config_setting_t *g, eopt_cfg_optimizer *o,
                               const eopt_optimizer_class **cls)
{
    EOPT_TRY(get_str(p, g, "class", NULL, o->cls, sizeof o->cls));
    *cls = eopt_optimizer_find(o->cls);
    if (*cls)
        return EOPT_OK;
    const eopt_optimizer_class *const *all = eopt_optimizer_classes();
    const char *ids[64];
    char list[1024] = "", hint[EOPT_NAME_MAX + 32];
    int n = 0;
    for (; all[n] && n < 64; n++) {
        ids[n] = all[n]->id;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", n ? ", " : "", ids[n]);
    }
    return bad(p, member(g, "class"), "unknown optimizer class '%s'%s; known: %s", o->cls,
               suggest(o->cls, ids, n, hint, sizeof hint), list);
}

static eopt_status parse_optimizer(parser *p, const config_setting_t *g, eopt_cfg_optimizer *o)
{
    const eopt_optimizer_class *cls;
    eopt_dict dargs = {0}, dgroup = {0};
    memset(o, 0, sizeof *o);
    where(p, g, o->where, sizeof o->where);
    if (member(g, "softening"))
        return bad(p, member(g, "softening"), "a softening schedule is a ramp now: ramps = { softening = { ... }; }");
    EOPT_TRY(check_keys(p, g, optimizer_keys));
    EOPT_TRY(get_str(p, g, "name", NULL, o->name, sizeof o->name));
    if (!o->name[0] || strchr(o->name, '/'))
        return bad(p, member(g, "name"), "an optimizer name must be non-empty and contain no '/'");
    EOPT_TRY(parse_class(p, g, o, &cls));
    eopt_optimizer_defaults(cls, &dargs, &dgroup);

    const config_setting_t *args = member(g, "args");
    if (args) {
        const char *names[2 * EOPT_DICT_MAX + 1];
        int n = dict_keys(&dgroup, names, dict_keys(&dargs, names, 0));
        names[n] = NULL;
        EOPT_TRY(check_keys(p, args, names));
        for (int k = 0; k < config_setting_length(args); k++) {
            const config_setting_t *m = config_setting_get_elem(args, k);
            const char *key = config_setting_name(m);
            eopt_value v;
            if (eopt_dict_get(&dargs, key)) {
                EOPT_TRY(to_value(p, m, eopt_dict_get(&dargs, key), &v));
                EOPT_TRY(eopt_dict_set(&o->args, key, v));
            }
            if (eopt_dict_get(&dgroup, key)) {
                EOPT_TRY(to_value(p, m, eopt_dict_get(&dgroup, key), &v));
                EOPT_TRY(eopt_dict_set(&o->hp, key, v));
            }
        }
    }
    EOPT_TRY(parse_schedule(p, member(g, "schedule"), &o->sched.lr));
    EOPT_TRY(parse_ramps(p, member(g, "ramps"), cls, &dargs, -1, &o->sched));
    EOPT_TRY(check_not_ramped(p, args, &o->sched, -1));

    const config_setting_t *groups = member(g, "groups");
    if (!groups)
        return bad(p, g, "missing key 'groups'");
    int t = config_setting_type(groups), n = config_setting_length(groups);
    if (t != CONFIG_TYPE_LIST || n < 1 || n > EOPT_CFG_MAX_GROUPS)
        return bad(p, groups, "expected a list ( {...}, ... ) of 1 to %d groups", EOPT_CFG_MAX_GROUPS);
    o->ngroups = o->sched.ngroups = n;
    for (int k = 0; k < n; k++) {
        EOPT_TRY(parse_group(p, config_setting_get_elem(groups, k), cls, &dargs, &dgroup, o, k));
        eopt_dict hp = o->groups[k].hp;
        EOPT_TRY(eopt_dict_merge_defaults(&hp, &o->hp));
        EOPT_TRY(eopt_dict_merge_defaults(&hp, &dgroup));
        const eopt_value *lr = eopt_dict_get(&hp, "lr");
        if (!lr || (lr->kind != EOPT_VAL_FLOAT && lr->kind != EOPT_VAL_INT))
            return bad(p, config_setting_get_elem(groups, k),
                       "no learning rate: set 'lr' in the group or in the optimizer's args");
        o->sched.base_lr[k] = lr->kind == EOPT_VAL_FLOAT ? lr->f : (double)lr->i;
    }
    return EOPT_OK;
}

static eopt_status parse_optimizers(parser *p, const config_setting_t *s)
{
    eopt_config *c = p->cfg;
    if (!s)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: missing section 'optimizers'", p->name);
    int n = config_setting_length(s);
    if (config_setting_type(s) != CONFIG_TYPE_LIST || n < 1 || n > EOPT_CFG_MAX_OPTS)
        return bad(p, s, "expected a list ( {...}, ... ) of 1 to %d optimizers", EOPT_CFG_MAX_OPTS);
    c->nopt = n;
    for (int k = 0; k < n; k++) {
        const config_setting_t *g = config_setting_get_elem(s, k);
        if (config_setting_type(g) != CONFIG_TYPE_GROUP)
            return bad(p, g, "expected an optimizer group { name = ...; class = ...; ... }");
        EOPT_TRY(parse_optimizer(p, g, &c->opts[k]));
        for (int j = 0; j < k; j++)
            if (strcmp(c->opts[j].name, c->opts[k].name) == 0)
                return bad(p, member(g, "name"), "optimizer name '%s' is used twice", c->opts[k].name);
    }
    return EOPT_OK;
}

static eopt_status parse_output(parser *p, const config_setting_t *ck, const config_setting_t *log)
{
    static const char *const progress[] = {"auto", "bar", "lines", "none", NULL};
    eopt_config *c = p->cfg;
    char run[EOPT_CFG_PATH_MAX], def[EOPT_CFG_PATH_MAX + 32];
    const char *base = strrchr(p->name, '/') ? strrchr(p->name, '/') + 1 : p->name;
    snprintf(run, sizeof run, "runs/%.*s%s", (int)strcspn(base, "."), base, p->run_suffix);
    EOPT_TRY(check_keys(p, ck, checkpoint_keys));
    EOPT_TRY(get_str(p, ck, "dir", run, c->checkpoint.dir, sizeof c->checkpoint.dir));
    EOPT_TRY(get_int(p, ck, "interval", 0, INT64_MAX / 2, 0, &c->checkpoint.interval));
    EOPT_TRY(get_i(p, ck, "keep", 0, 1 << 20, 3, &c->checkpoint.keep));
    EOPT_TRY(check_keys(p, log, log_keys));
    snprintf(def, sizeof def, "%s/metrics.jsonl", c->checkpoint.dir);
    EOPT_TRY(get_str(p, log, "metrics", def, c->log.metrics, sizeof c->log.metrics));
    EOPT_TRY(get_int(p, log, "interval", 1, INT64_MAX / 2, 10, &c->log.interval));
    int pr;
    EOPT_TRY(get_choice(p, log, "progress", progress, 0, &pr));
    c->log.progress = (eopt_progress)pr;
    EOPT_TRY(get_int(p, log, "diagnostics_interval", 0, INT64_MAX / 2, 0, &c->log.diagnostics_interval));
    EOPT_TRY(get_i(p, log, "spike_window", 2, 10000, 50, &c->log.spike_window));
    EOPT_TRY(get_float(p, log, "spike_z", 0, 1e30, 6, &c->log.spike_z));
    return EOPT_OK;
}

/* ---- --set overrides ---- */

static eopt_status copy_setting(config_setting_t *parent, const char *name, const config_setting_t *src,
                                const char *spec)
{
    int t = config_setting_type(src);
    config_setting_t *d = config_setting_add(parent, name, t);
    if (!d)
        return eopt_fail(EOPT_ERR_CONFIG, "--set %s: cannot add '%s' here (bad name or mixed array)", spec,
                         name ? name : "element");
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: config_setting_set_int64(d, config_setting_get_int64(src)); break;
    case CONFIG_TYPE_FLOAT: config_setting_set_float(d, config_setting_get_float(src)); break;
    case CONFIG_TYPE_BOOL: config_setting_set_bool(d, config_setting_get_bool(src)); break;
    case CONFIG_TYPE_STRING: config_setting_set_string(d, config_setting_get_string(src)); break;
    default:
        for (int k = 0; k < config_setting_length(src); k++) {
            const config_setting_t *e = config_setting_get_elem(src, k);
            EOPT_TRY(copy_setting(d, t == CONFIG_TYPE_GROUP ? config_setting_name(e) : NULL, e, spec));
        }
    }
    return EOPT_OK;
}

/* The child of `cur` named by one path component: a member, "[N]" / "N" of a list, or the
 * list element whose `name` is comp. */
static config_setting_t *child(config_setting_t *cur, const char *comp)
{
    if (config_setting_type(cur) == CONFIG_TYPE_GROUP)
        return config_setting_get_member(cur, comp);
    char *end;
    long idx = strtol(comp + (comp[0] == '['), &end, 10);
    if (end != comp + (comp[0] == '[') && (*end == 0 || (*end == ']' && end[1] == 0)))
        return config_setting_get_elem(cur, (unsigned)idx);
    for (int k = 0; k < config_setting_length(cur); k++) {
        config_setting_t *e = config_setting_get_elem(cur, k);
        const char *name;
        if (config_setting_type(e) == CONFIG_TYPE_GROUP && config_setting_lookup_string(e, "name", &name) &&
            strcmp(name, comp) == 0)
            return e;
    }
    return NULL;
}

static eopt_status apply_set(config_t *c, const char *spec)
{
    const char *eq = strchr(spec, '=');
    char path[EOPT_CFG_PATH_MAX];
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof path)
        return eopt_fail(EOPT_ERR_CONFIG, "--set %s: expected PATH=VALUE (e.g. run.steps=100)", spec);
    snprintf(path, sizeof path, "%.*s", (int)(eq - spec), spec);

    /* The value as a libconfig literal; anything that does not parse is a string. */
    config_t tmp;
    config_init(&tmp);
    size_t len = strlen(eq + 1) + 16;
    char *text = malloc(len);
    if (!text) {
        config_destroy(&tmp);
        return eopt_fail(EOPT_ERR_NOMEM, "--set %s: out of memory", spec);
    }
    snprintf(text, len, "v = %s;", eq + 1);
    if (config_read_string(&tmp, text) != CONFIG_TRUE) {
        config_destroy(&tmp);
        config_init(&tmp);
        config_setting_set_string(config_setting_add(config_root_setting(&tmp), "v", CONFIG_TYPE_STRING), eq + 1);
    }
    free(text);

    eopt_status st = EOPT_OK;
    config_setting_t *cur = config_root_setting(c);
    char *save = NULL, *comp = strtok_r(path, ".", &save);
    while (comp && st == EOPT_OK) {
        char *next = strtok_r(NULL, ".", &save);
        int group = config_setting_type(cur) == CONFIG_TYPE_GROUP;
        config_setting_t *ch = child(cur, comp);
        if (!next) {
            if (!group)
                st = eopt_fail(EOPT_ERR_CONFIG, "--set %s: cannot replace a list element; set its members", spec);
            else {
                if (ch)
                    config_setting_remove(cur, comp);
                st = copy_setting(cur, comp, config_lookup(&tmp, "v"), spec);
            }
        } else if (!ch && group) {
            cur = config_setting_add(cur, comp, CONFIG_TYPE_GROUP);
            if (!cur)
                st = eopt_fail(EOPT_ERR_CONFIG, "--set %s: bad key '%s'", spec, comp);
        } else if (!ch || (config_setting_type(ch) != CONFIG_TYPE_GROUP && config_setting_type(ch) != CONFIG_TYPE_LIST))
            st = eopt_fail(EOPT_ERR_CONFIG, "--set %s: '%s' is not a group or list element here", spec, comp);
        else
            cur = ch;
        comp = next;
    }
    config_destroy(&tmp);
    return st;
}

/* ---- entry points ---- */

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

uint32_t eopt_config_overrides_hash(int nset, const char *const *sets)
{
    const char *sorted[nset > 0 ? nset : 1];
    uint32_t h = 2166136261u; /* FNV-1a over the sorted overrides, each ended by a newline */
    memcpy(sorted, sets, sizeof(const char *) * (size_t)nset);
    qsort(sorted, (size_t)nset, sizeof sorted[0], compare_strings);
    for (int k = 0; k < nset; k++)
        for (const char *c = sorted[k];; c++) {
            h = (h ^ (uint8_t)(*c ? *c : '\n')) * 16777619u;
            if (!*c)
                break;
        }
    return h;
}

static eopt_status parse_tree(config_t *c, const char *name, int nset, const char *const *sets, eopt_config *cfg)
{
    parser p = {name, cfg, ""};
    for (int k = 0; k < nset; k++)
        EOPT_TRY(apply_set(c, sets[k]));
    if (nset > 0)
        snprintf(p.run_suffix, sizeof p.run_suffix, "-%08x", eopt_config_overrides_hash(nset, sets));
    const config_setting_t *root = config_root_setting(c);
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", name);
    EOPT_TRY(check_keys(&p, root, top_keys));
    EOPT_TRY(parse_model(&p, member(root, "model")));
    EOPT_TRY(parse_data(&p, member(root, "data")));
    EOPT_TRY(parse_run(&p, member(root, "run")));
    EOPT_TRY(parse_optimizers(&p, member(root, "optimizers")));
    return parse_output(&p, member(root, "checkpoint"), member(root, "log"));
}

static eopt_status read_error(config_t *c, const char *name)
{
    const char *file = config_error_file(c);
    if (config_error_type(c) == CONFIG_ERR_FILE_IO)
        return eopt_fail(EOPT_ERR_IO, "%s: cannot read the file", name);
    return eopt_fail(EOPT_ERR_CONFIG, "%s:%d: syntax error: %s", file ? file : name, config_error_line(c),
                     config_error_text(c));
}

eopt_status eopt_config_load(const char *path, int nset, const char *const *sets, eopt_config *cfg)
{
    config_t c;
    config_init(&c);
    eopt_status st = config_read_file(&c, path) == CONFIG_TRUE ? parse_tree(&c, path, nset, sets, cfg)
                                                                : read_error(&c, path);
    config_destroy(&c);
    return st;
}

eopt_status eopt_config_parse(const char *text, const char *name, int nset, const char *const *sets,
                              eopt_config *cfg)
{
    config_t c;
    config_init(&c);
    eopt_status st = config_read_string(&c, text) == CONFIG_TRUE ? parse_tree(&c, name, nset, sets, cfg)
                                                                  : read_error(&c, name);
    config_destroy(&c);
    return st;
}

/* ---- parameter ownership ---- */

eopt_status eopt_config_assign(const eopt_config *cfg, const eopt_param *params, int nparams, int *opt_of,
                               int *group_of)
{
    const eopt_param_select *sel[EOPT_CFG_MAX_OPTS * EOPT_CFG_MAX_GROUPS];
    int nsel = 0;
    for (int o = 0; o < cfg->nopt; o++)
        for (int g = 0; g < cfg->opts[o].ngroups; g++)
            sel[nsel++] = &cfg->opts[o].groups[g].sel;
    EOPT_TRY(eopt_params_assign(sel, nsel, params, nparams, cfg->path, group_of));
    for (int i = 0; i < nparams; i++) /* selector k -> (optimizer, group) */
        for (opt_of[i] = 0; group_of[i] >= cfg->opts[opt_of[i]].ngroups; opt_of[i]++)
            group_of[i] -= cfg->opts[opt_of[i]].ngroups;
    return EOPT_OK;
}
