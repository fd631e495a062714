/* `eopt inspect FILE [--check]`: a readable summary of a checkpoint and, with --check, its
 * validation against ../shared/spec/checkpoint.md (every problem listed, exit status 1). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint/checkpoint.h"
#include "../checkpoint/h5.h"
#include "commands.h"
#include "replay.h"

/* The shortest decimal that reads back as x (0.95, not 0.94999999999999996). */
static void print_number(double x)
{
    char buf[32];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, x);
        if (strtod(buf, NULL) == x || p == 17)
            break;
    }
    printf("%s", buf);
}

static void print_value(const eopt_value *v)
{
    char buf[256];
    if (v->kind == EOPT_VAL_FLOAT) {
        print_number(v->f);
    } else if (v->kind == EOPT_VAL_FLOATS) {
        for (int k = 0; k < v->nf; k++) {
            printf(k ? ", " : "(");
            print_number(v->fv[k]);
        }
        printf(")");
    } else {
        printf("%s", eopt_value_repr(v, buf, sizeof buf));
    }
}

static void print_dict(const char *indent, const eopt_dict *d)
{
    printf("%s", indent);
    for (int k = 0; k < d->n; k++) {
        printf("%s%s=", k ? ", " : "", d->items[k].key);
        print_value(&d->items[k].v);
    }
    printf("%s\n", d->n ? "" : "(none)");
}

static void print_tensor(const char *name, const eopt_tensor *t)
{
    char sh[64];
    printf("    %-40s %-12s %-8s %zu B\n", name, eopt_shape_str(t->ndim, t->shape, sh, sizeof sh),
           eopt_dtype_name(t->dtype), eopt_tensor_bytes(t));
}

static void print_model(const eopt_ckpt *ck)
{
    size_t bytes = 0;
    int64_t numel = 0;
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        const eopt_tensor *t = eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, k));
        bytes += eopt_tensor_bytes(t);
        numel += t->numel;
    }
    printf("model: %d tensors, %lld parameters, %zu bytes\n", eopt_ckpt_num_tensors(ck), (long long)numel, bytes);
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++)
        print_tensor(eopt_ckpt_tensor_name(ck, k), eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, k)));
    for (int k = 0; k < eopt_ckpt_num_aliases(ck); k++) {
        eopt_ckpt_alias a = eopt_ckpt_alias_at(ck, k);
        printf("    %-40s -> %s (hard link)\n", a.alias, a.target);
    }
}

static void print_optimizer(const eopt_ckpt_opt_info *o)
{
    const eopt_optimizer_class *cls = eopt_optimizer_find_checkpoint(o->cls, o->source[0] ? o->source : NULL);
    printf("optimizer '%s': class %s%s%s%s (eopt: %s)\n", o->name, o->cls, o->source[0] ? ", source \"" : "", o->source,
           o->source[0] ? "\"" : "", cls ? cls->id : "unknown class");
    print_dict("  arguments: ", &o->args);
    for (int g = 0; g < o->ngroups; g++) {
        printf("  group %d: %d parameters; ", g, o->group_n[g]);
        print_dict("", &o->group_hp[g]);
    }
    int with = 0;
    size_t bytes = 0;
    for (int i = 0; i < o->nparams; i++)
        with += o->nstate[i] > 0;
    printf("  state: %d of %d parameters\n", with, o->nparams);
    for (int i = 0; i < o->nparams; i++) {
        printf("   [%d] %s%s\n", i, o->param_names[i], o->nstate[i] ? "" : " (no state)");
        for (int k = 0; k < o->nstate[i]; k++) {
            print_tensor(o->state[i][k].key, &o->state[i][k].t);
            bytes += eopt_tensor_bytes(&o->state[i][k].t);
        }
    }
    printf("  state size: %zu bytes\n", bytes);
}

static void print_summary(const eopt_ckpt *ck)
{
    printf("%s: %s version %d, step %lld\n", eopt_ckpt_path(ck), EOPT_CKPT_FORMAT, EOPT_CKPT_VERSION,
           (long long)eopt_ckpt_step(ck));
    printf("producer: %s\n", eopt_ckpt_producer(ck)[0] ? eopt_ckpt_producer(ck) : "(absent)");
    print_model(ck);
    for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++)
        print_optimizer(eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, k)));
    for (int k = 0; k < eopt_ckpt_num_schedules(ck); k++) {
        printf("schedule '%s': ", eopt_ckpt_schedule_name(ck, k));
        print_dict("", eopt_ckpt_schedule(ck, eopt_ckpt_schedule_name(ck, k)));
    }
    if (eopt_ckpt_trainer(ck)) {
        print_dict("trainer: ", eopt_ckpt_trainer(ck));
        for (int k = 0; k < eopt_ckpt_num_trainer_data(ck); k++)
            print_tensor(eopt_ckpt_trainer_data_name(ck, k),
                         eopt_ckpt_trainer_data(ck, eopt_ckpt_trainer_data_name(ck, k)));
    }
}

/* ------------------------------------------------------------------------------------------
 * --check */

/* Prints one problem and counts it. */
static void problem(int *count, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(int *count, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("problem: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    (*count)++;
}

static void check_finite(int *p, const char *path, const char *what, const eopt_tensor *t)
{
    if (t->dtype != EOPT_F32)
        return;
    int64_t bad = 0, first = -1;
    for (int64_t k = 0; k < t->numel; k++)
        if (!isfinite(eopt_f32(t)[k])) {
            bad++;
            first = first < 0 ? k : first;
        }
    if (bad)
        problem(p, "%s:%s: %lld non-finite values (first at flat index %lld)", path, what, (long long)bad,
                (long long)first);
}

/* Dataset types the spec fixes: /model float32, param_groups/<g>/params int64, integer root
 * attributes int64. The reader accepts wider variety; --check holds files to the letter. */
static void check_raw_types(int *p, const char *path, const eopt_ckpt *ck)
{
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0)
        return;
    static const char *const int_attrs[] = {"format_version", "step"};
    for (int k = 0; k < 2; k++) {
        hid_t a = H5Aopen(fid, int_attrs[k], H5P_DEFAULT), t = H5Aget_type(a);
        if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 8)
            problem(p, "%s:/ attribute '%s' is not int64", path, int_attrs[k]);
        H5Tclose(t);
        H5Aclose(a);
    }
    char name[1024];
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        snprintf(name, sizeof name, "/model/%s", eopt_ckpt_tensor_name(ck, k));
        hid_t d = H5Dopen2(fid, name, H5P_DEFAULT), t = H5Dget_type(d);
        if (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4)
            problem(p, "%s:%s is not float32", path, name);
        H5Tclose(t);
        H5Dclose(d);
    }
    for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++) {
        const eopt_ckpt_opt_info *o = eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, k));
        for (int g = 0; g < o->ngroups; g++) {
            snprintf(name, sizeof name, "/optimizers/%s/param_groups/%d/params", o->name, g);
            hid_t d = H5Dopen2(fid, name, H5P_DEFAULT), t = H5Dget_type(d);
            if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) != 8)
                problem(p, "%s:%s is not int64", path, name);
            H5Tclose(t);
            H5Dclose(d);
        }
    }
    H5Fclose(fid);
}

static void check_optimizer(int *p, const eopt_ckpt *ck, const eopt_ckpt_opt_info *o, int *owner, int k,
                            const eopt_restored *model)
{
    const char *path = eopt_ckpt_path(ck);
    char what[512];
    for (int i = 0; i < o->nparams; i++) {
        const char *name = o->param_names[i];
        int t = -1;
        for (int j = 0; j < model->nparams; j++)
            if (eopt_ckpt_tensor(ck, name) == eopt_ckpt_tensor(ck, model->params[j].name))
                t = j;
        if (t < 0) {
            problem(p, "%s:/optimizers/%s/param_names[%d]: '%s' is not in /model", path, o->name, i, name);
            continue;
        }
        if (owner[t] >= 0)
            problem(p, "%s: parameter '%s' is owned by optimizers '%s' and '%s'", path, name,
                    eopt_ckpt_optimizer_name(ck, owner[t]), o->name);
        owner[t] = k;
        for (int q = 0; q < o->nstate[i]; q++) {
            snprintf(what, sizeof what, "/optimizers/%s/state/%d/%s", o->name, i, o->state[i][q].key);
            check_finite(p, path, what, &o->state[i][q].t);
        }
    }
    /* Building the optimizer checks the class, its arguments, and every state key, shape and dtype. */
    eopt_optimizer *opt = NULL;
    if (eopt_ckpt_create_optimizer(ck, o->name, model->be, model->params, model->nparams, &opt) != EOPT_OK)
        problem(p, "%s", eopt_last_error());
    eopt_optimizer_free(opt);
}

static int run_check(const char *path, const eopt_ckpt *ck)
{
    int p = 0;
    char what[512];
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        snprintf(what, sizeof what, "/model/%s", eopt_ckpt_tensor_name(ck, k));
        check_finite(&p, path, what, eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, k)));
    }
    check_raw_types(&p, path, ck);
    eopt_backend *be = NULL;
    eopt_restored model = {0};
    int *owner = malloc(sizeof *owner * ((size_t)eopt_ckpt_num_tensors(ck) + 1));
    /* The model alone: optimizers are built one by one, so each reports its own problems. */
    if (!owner || eopt_backend_open("cpu", 1, &be) != EOPT_OK || eopt_restore_model(ck, be, &model) != EOPT_OK) {
        problem(&p, "%s", owner ? eopt_last_error() : "out of memory");
    } else {
        for (int k = 0; k < model.nparams; k++)
            owner[k] = -1;
        for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++)
            check_optimizer(&p, ck, eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, k)), owner, k, &model);
    }
    eopt_restored_free(&model);
    free(owner);
    if (be)
        eopt_backend_close(be);
    printf("%s: %d problem%s\n", path, p, p == 1 ? "" : "s");
    return p ? 1 : 0;
}
int eopt_cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--check") == 0)
            check = 1;
        else if (argv[k][0] != '-' && !path)
            path = argv[k];
        else
            path = NULL, k = argc;
    }
    if (!path) {
        fprintf(stderr, "usage: eopt inspect FILE [--check]\n");
        return 2;
    }
    eopt_ckpt *ck = NULL;
    eopt_ckpt_options opt = {.allow_nonfinite = 1}; /* show them; --check reports them */
    if (eopt_checkpoint_open(path, &opt, &ck) != EOPT_OK) {
        printf("problem: %s\n", eopt_last_error());
        return check ? 1 : 2;
    }
    print_summary(ck);
    int rc = check ? run_check(path, ck) : 0;
    eopt_checkpoint_close(ck);
    return rc;
}
