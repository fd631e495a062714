/* eopt_ckpt_check_layout (`eopt inspect --check`): an open checkpoint held to the letter of
 * ../shared/spec/checkpoint.md, every problem reported rather than the first. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "h5.h"
#include "restore.h"

/* Formats one problem and hands it to the report. */
static void problem(eopt_ckpt_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(eopt_ckpt_report *r, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->count++;
    if (r->problem)
        r->problem(r->user, msg);
}

static void check_finite(eopt_ckpt_report *r, const char *path, const char *what, const eopt_tensor *t)
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
        problem(r, "%s:%s: %lld non-finite values (first at flat index %lld)", path, what, (long long)bad,
                (long long)first);
}

/* Whether the attribute (attr != NULL) or dataset at `name` is stored as `kind` ('f', 'i') of
 * `bytes` bytes. */
static int stored_as(hid_t fid, const char *name, const char *attr, char kind, size_t bytes)
{
    size_t got;
    return eopt_h5_stored_type(fid, name, attr, &got) == kind && got == bytes;
}

/* Types the spec fixes: /model float32, param_groups/<g>/params int64, integer root attributes
 * int64. The reader accepts wider variety; the check holds files to the letter. */
static void check_raw_types(eopt_ckpt_report *r, const eopt_ckpt *ck)
{
    const char *path = eopt_ckpt_path(ck);
    hid_t fid = eopt_h5_open_read(path);
    if (fid < 0)
        return;
    static const char *const int_attrs[] = {"format_version", "step"};
    for (int k = 0; k < 2; k++)
        if (!stored_as(fid, ".", int_attrs[k], 'i', 8))
            problem(r, "%s:/ attribute '%s' is not int64", path, int_attrs[k]);
    char name[1024];
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        snprintf(name, sizeof name, "/model/%s", eopt_ckpt_tensor_name(ck, k));
        if (!stored_as(fid, name, NULL, 'f', 4))
            problem(r, "%s:%s is not float32", path, name);
    }
    for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++) {
        const eopt_ckpt_opt_info *o = eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, k));
        for (int g = 0; g < o->ngroups; g++) {
            snprintf(name, sizeof name, "/optimizers/%s/param_groups/%d/params", o->name, g);
            if (!stored_as(fid, name, NULL, 'i', 8))
                problem(r, "%s:%s is not int64", path, name);
        }
    }
    H5Fclose(fid);
}

/* Optimizer k: its parameters are in /model and owned by no other optimizer (owner[] tracks
 * that), its state is finite, and it builds from its class, arguments and state. */
static void check_optimizer(eopt_ckpt_report *r, const eopt_ckpt *ck, const eopt_ckpt_opt_info *o, int *owner, int k,
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
            problem(r, "%s:/optimizers/%s/param_names[%d]: '%s' is not in /model", path, o->name, i, name);
            continue;
        }
        if (owner[t] >= 0)
            problem(r, "%s: parameter '%s' is owned by optimizers '%s' and '%s'", path, name,
                    eopt_ckpt_optimizer_name(ck, owner[t]), o->name);
        owner[t] = k;
        for (int q = 0; q < o->nstate[i]; q++) {
            snprintf(what, sizeof what, "/optimizers/%s/state/%d/%s", o->name, i, o->state[i][q].key);
            check_finite(r, path, what, &o->state[i][q].t);
        }
    }
    /* Building the optimizer checks the class, its arguments, and every state key, shape and dtype. */
    eopt_optimizer *opt = NULL;
    if (eopt_ckpt_create_optimizer(ck, o->name, model->be, model->params, model->nparams, &opt) != EOPT_OK)
        problem(r, "%s", eopt_last_error());
    eopt_optimizer_free(opt);
}

int eopt_ckpt_check_layout(const eopt_ckpt *ck, eopt_ckpt_report *report)
{
    const char *path = eopt_ckpt_path(ck);
    char what[512];
    report->count = 0;
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        snprintf(what, sizeof what, "/model/%s", eopt_ckpt_tensor_name(ck, k));
        check_finite(report, path, what, eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, k)));
    }
    check_raw_types(report, ck);
    eopt_backend *be = NULL;
    eopt_restored model = {0};
    int *owner = malloc(sizeof *owner * ((size_t)eopt_ckpt_num_tensors(ck) + 1));
    /* The model alone: optimizers are built one by one, so each reports its own problems. */
    if (!owner || eopt_backend_open("cpu", 1, &be) != EOPT_OK || eopt_restore_model(ck, be, &model) != EOPT_OK) {
        problem(report, "%s", owner ? eopt_last_error() : "out of memory");
    } else {
        for (int k = 0; k < model.nparams; k++)
            owner[k] = -1;
        for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++)
            check_optimizer(report, ck, eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, k)), owner, k,
                            &model);
    }
    eopt_restored_free(&model);
    free(owner);
    if (be)
        eopt_backend_close(be);
    return report->count;
}
