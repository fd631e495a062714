/* The resolved configuration as a libconfig file (config.h): every setting after the overrides,
 * defaults included, written so that eopt_config_load reads back the same eopt_config. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shortest form that reads back to the same double, always with a '.' or an exponent so
 * that libconfig reads a float. */
static void put_float(FILE *f, double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof buf, "%.17g", v);
    fprintf(f, "%s%s", buf, strpbrk(buf, ".e") ? "" : ".0");
}

static void put_int(FILE *f, int64_t v)
{
    fprintf(f, "%lld%s", (long long)v, v > INT32_MAX || v < INT32_MIN ? "L" : "");
}

static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '\t')
            fputs("\\t", f);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\x%02x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void put_value(FILE *f, const char *key, const eopt_value *v)
{
    if (v->kind == EOPT_VAL_NONE) /* Python's None: absent */
        return;
    fprintf(f, " %s = ", key);
    switch (v->kind) {
    case EOPT_VAL_BOOL: fputs(v->i ? "true" : "false", f); break;
    case EOPT_VAL_INT: put_int(f, v->i); break;
    case EOPT_VAL_FLOAT: put_float(f, v->f); break;
    case EOPT_VAL_STR: put_str(f, v->s); break;
    default:
        fputc('[', f);
        for (int k = 0; k < v->nf; k++) {
            fputs(k ? ", " : "", f);
            put_float(f, v->fv[k]);
        }
        fputc(']', f);
    }
    fputc(';', f);
}

static void put_points(FILE *f, const eopt_points *p)
{
    fputs(" points = (", f);
    for (int k = 0; k < p->n; k++) {
        fprintf(f, "%s(", k ? ", " : "");
        put_int(f, p->step[k]);
        fputs(", ", f);
        put_float(f, p->value[k]);
        fputc(')', f);
    }
    fputs(");", f);
}

static void put_schedule(FILE *f, const eopt_lr_schedule *s)
{
    fprintf(f, " schedule = { kind = \"%s\";", eopt_lr_kind_name(s->kind));
    if (s->kind == EOPT_LR_PIECEWISE)
        put_points(f, &s->points);
    else {
        fprintf(f, " warmup = %lld; total = %lld; decay = %lld; floor = ", (long long)s->warmup, (long long)s->total,
                (long long)s->decay);
        put_float(f, s->floor);
        fputc(';', f);
    }
    fputs(" };", f);
}

/* The ramps that set `group` (-1: the optimizer's, for every group). */
static void put_ramps(FILE *f, const eopt_schedules *s, int group, const char *indent)
{
    for (int k = 0; k < s->nramps; k++) {
        const eopt_named_ramp *r = &s->ramps[k];
        if (r->group != group)
            continue;
        fprintf(f, "\n%s%s = { kind = \"%s\";", indent, r->key, eopt_ramp_kind_name(r->ramp.kind));
        if (r->ramp.kind == EOPT_RAMP_CONSTANT) {
            fputs(" value = ", f);
            put_float(f, r->ramp.from);
            fputc(';', f);
        } else if (r->ramp.kind == EOPT_RAMP_PIECEWISE)
            put_points(f, &r->ramp.points);
        else {
            fputs(" from = ", f);
            put_float(f, r->ramp.from);
            fputs("; to = ", f);
            put_float(f, r->ramp.to);
            fprintf(f, "; start = %lld; end = %lld;", (long long)r->ramp.start, (long long)r->ramp.end);
        }
        fputs(" };", f);
    }
}

static int has_ramps(const eopt_schedules *s, int group)
{
    for (int k = 0; k < s->nramps; k++)
        if (s->ramps[k].group == group)
            return 1;
    return 0;
}

static void put_patterns(FILE *f, const char *key, char (*p)[EOPT_NAME_MAX], int n)
{
    if (n == 0)
        return;
    fprintf(f, " %s = [", key);
    for (int k = 0; k < n; k++) {
        fputs(k ? ", " : "", f);
        put_str(f, p[k]);
    }
    fputs("];", f);
}

static void put_group(FILE *f, const eopt_cfg_optimizer *o, int g)
{
    const eopt_cfg_group *gr = &o->groups[g];
    fputs("      {", f);
    put_patterns(f, "params", (char(*)[EOPT_NAME_MAX])gr->sel.patterns, gr->sel.npatterns);
    put_patterns(f, "exclude", (char(*)[EOPT_NAME_MAX])gr->sel.exclude, gr->sel.nexclude);
    if (gr->sel.ndim_mask) {
        fputs(" ndim = [", f);
        for (int d = 0, n = 0; d < 32; d++)
            if (gr->sel.ndim_mask >> d & 1)
                fprintf(f, "%s%d", n++ ? ", " : "", d);
        fputs("];", f);
    }
    for (int k = 0; k < gr->hp.n; k++)
        put_value(f, gr->hp.items[k].key, &gr->hp.items[k].v);
    if (o->sched.has_group_lr[g])
        put_schedule(f, &o->sched.group_lr[g]);
    if (has_ramps(&o->sched, g)) {
        fputs(" ramps = {", f);
        put_ramps(f, &o->sched, g, "          ");
        fputs(" };", f);
    }
    fputs(" }", f);
}

/* args: every constructor argument and default group hyperparameter, given or the class's. */
static void put_optimizer(FILE *f, const eopt_cfg_optimizer *o)
{
    eopt_dict dargs = {0}, dgroup = {0};
    const eopt_optimizer_class *cls = eopt_optimizer_find(o->cls);
    if (cls)
        eopt_optimizer_defaults(cls, &dargs, &dgroup);
    fputs("  {\n    name = ", f);
    put_str(f, o->name);
    fputs(";\n    class = ", f);
    put_str(f, o->cls);
    fputs(";\n    args = {", f);
    for (int pass = 0; pass < 2; pass++) {
        const eopt_dict *def = pass ? &dgroup : &dargs, *given = pass ? &o->hp : &o->args;
        for (int k = 0; k < def->n; k++) {
            const char *key = def->items[k].key;
            const eopt_value *v = eopt_dict_get(given, key);
            if ((pass && eopt_dict_get(&dargs, key)) || eopt_schedules_ramp(&o->sched, -1, key))
                continue; /* written with the constructor arguments, or set by a ramp */
            put_value(f, key, v ? v : &def->items[k].v);
        }
    }
    fputs(" };\n   ", f);
    put_schedule(f, &o->sched.lr);
    if (has_ramps(&o->sched, -1)) {
        fputs("\n    ramps = {", f);
        put_ramps(f, &o->sched, -1, "      ");
        fputs("\n    };", f);
    }
    fputs("\n    groups = (\n", f);
    for (int g = 0; g < o->ngroups; g++) {
        put_group(f, o, g);
        fputs(g + 1 < o->ngroups ? ",\n" : "\n", f);
    }
    fputs("    );\n  }", f);
}
/* The data section: each kind writes only the keys it accepts. */
static void write_data(FILE *f, const eopt_data_config *d)
{
    static const char *const kinds[] = {"text", "fashion-mnist", "tokens"};
    static const char *const formats[] = {"llmc", "nanogpt"};
    fprintf(f, "data = { kind = \"%s\"; ", kinds[d->kind]);
    if (d->kind == EOPT_DATA_TOKENS) {
        fprintf(f, "format = \"%s\"; shuffle = %s;", formats[d->format], d->shuffle ? "true" : "false");
        for (int split = 0; split < 2; split++) {
            fprintf(f, " %s = [", split ? "val" : "train");
            for (int k = 0; k < d->nshards[split]; k++) {
                fputs(k ? ", " : "", f);
                put_str(f, d->shards[split][k]);
            }
            fputs("];", f);
        }
    } else {
        fputs("path = ", f);
        put_str(f, d->path);
        if (d->kind == EOPT_DATA_TEXT) {
            fputs("; val_fraction = ", f);
            put_float(f, d->val_fraction);
        } else {
            fprintf(f, "; normalize = %s", d->normalize ? "true" : "false");
        }
        fputc(';', f);
    }
    fputs(" };\n\n", f);
}


void eopt_config_write(const eopt_config *c, FILE *f)
{
    static const char *const policies[] = {"stop", "skip"};
    static const char *const progress[] = {"auto", "bar", "lines", "none"};
    const eopt_model_config *m = &c->model;
    fputs("# The resolved configuration of a run: every setting after the overrides, defaults included.\n", f);
    fputs("# `eopt train` reads it as is.\n\n", f);
    if (m->kind == EOPT_MODEL_GPT)
        fprintf(f, "model = { kind = \"gpt\"; vocab_size = %d; block_size = %d; n_layer = %d; n_head = %d; "
                   "n_embd = %d; };\n", m->vocab_size, m->block_size, m->n_layer, m->n_head, m->n_embd);
    else {
        fputs("model = { kind = \"mlp\"; dims = [", f);
        for (int k = 0; k < m->ndims; k++)
            fprintf(f, "%s%d", k ? ", " : "", m->dims[k]);
        fputs("]; };\n", f);
    }
    write_data(f, &c->data);

    fputs("run = {\n  steps = ", f);
    put_int(f, c->run.steps);
    fprintf(f, ";\n  batch_size = %d;\n  seq_len = %d;\n  grad_accum = %d;\n  eval_interval = ", c->run.batch_size,
            c->run.seq_len, c->run.grad_accum);
    put_int(f, c->run.eval_interval);
    fprintf(f, ";\n  eval_batches = %d;\n  seed = ", c->run.eval_batches);
    put_int(f, (int64_t)c->run.seed);
    fputs(";\n  device = ", f);
    put_str(f, c->run.device);
    fprintf(f, ";\n  threads = %d;\n  on_nonfinite = \"%s\";\n  max_nonfinite_skips = %d;\n  sample_tokens = %d;\n"
            "  sample_prompt = ", c->run.threads, policies[c->run.on_nonfinite], c->run.max_nonfinite_skips,
            c->run.sample_tokens);
    put_str(f, c->run.sample_prompt);
    fputs(";\n  temperature = ", f);
    put_float(f, c->run.temperature);
    fprintf(f, ";\n  top_k = %d;\n  grad_clip = ", c->run.top_k);
    put_float(f, c->run.grad_clip);
    if (c->run.diverge_loss > 0) { /* written only when set: the configs of earlier runs stay the same */
        fputs(";\n  diverge_loss = ", f);
        put_float(f, c->run.diverge_loss);
    }
    fputs(";\n};\n\noptimizers = (\n", f);
    for (int o = 0; o < c->nopt; o++) {
        put_optimizer(f, &c->opts[o]);
        fputs(o + 1 < c->nopt ? ",\n" : "\n", f);
    }
    fputs(");\n\ncheckpoint = { dir = ", f);
    put_str(f, c->checkpoint.dir);
    fputs("; interval = ", f);
    put_int(f, c->checkpoint.interval);
    fprintf(f, "; keep = %d; };\nlog = { metrics = ", c->checkpoint.keep);
    put_str(f, c->log.metrics);
    fputs("; interval = ", f);
    put_int(f, c->log.interval);
    fprintf(f, "; progress = \"%s\"; diagnostics_interval = ", progress[c->log.progress]);
    put_int(f, c->log.diagnostics_interval);
    fprintf(f, "; spike_window = %d; spike_z = ", c->log.spike_window);
    put_float(f, c->log.spike_z);
    fputs("; };\n", f);
}

char *eopt_config_text(const eopt_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    eopt_config_write(c, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
