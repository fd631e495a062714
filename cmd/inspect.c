/* `eopt inspect FILE [--check]`: a readable summary of a checkpoint and, with --check, its
 * validation against ../shared/spec/checkpoint.md (every problem listed, exit status 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint/checkpoint.h"
#include "commands.h"

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

static void print_problem(void *user, const char *msg)
{
    (void)user;
    printf("problem: %s\n", msg);
}

static int run_check(const eopt_ckpt *ck)
{
    eopt_ckpt_report report = {.problem = print_problem};
    int p = eopt_ckpt_check_layout(ck, &report);
    printf("%s: %d problem%s\n", eopt_ckpt_path(ck), p, p == 1 ? "" : "s");
    return p ? 1 : 0;
}

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--check", NULL,
     "validate the file against the checkpoint layout as well (../shared/spec/checkpoint.md): every problem "
     "is listed and the exit status is 1 if there is one"},
    {0}};

const eopt_command eopt_cmd_inspect = {
    "inspect", "FILE", "summarise a checkpoint: step, model tensors, each optimizer's arguments, groups and state",
    "Exit status: 0, 1 (--check found problems), 2 (the file cannot be read).", options, run};

static int run(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_inspect, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (id == EOPT_ARGS_POS && path)
            return eopt_usage_error(&eopt_cmd_inspect, "one file, not '%s' as well", a.val[0]);
        if (id == EOPT_ARGS_POS)
            path = a.val[0];
        else /* --check */
            check = 1;
    }
    if (!path)
        return eopt_usage_error(&eopt_cmd_inspect, "no file");
    eopt_ckpt *ck = NULL;
    eopt_ckpt_options opt = {.allow_nonfinite = 1}; /* show them; --check reports them */
    if (eopt_checkpoint_open(path, &opt, &ck) != EOPT_OK) {
        printf("problem: %s\n", eopt_last_error());
        return check ? 1 : 2;
    }
    print_summary(ck);
    int rc = check ? run_check(ck) : 0;
    eopt_checkpoint_close(ck);
    return rc;
}
