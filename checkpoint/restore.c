#include "restore.h"

#include <stdio.h>
#include <stdlib.h>

void eopt_restored_free(eopt_restored *r)
{
    for (int k = 0; k < r->nopt; k++)
        eopt_optimizer_free(r->opts[k]);
    for (int i = 0; r->params && i < r->nparams; i++) {
        if (r->params[i].w)
            eopt_tensor_free(r->params[i].w);
        if (r->params[i].grad)
            eopt_tensor_free(r->params[i].grad);
        free(r->params[i].w);
        free(r->params[i].grad);
    }
    free(r->params);
    free(r->opts);
    free(r->opt_names);
    *r = (eopt_restored){0};
}

static eopt_status restore_params(const eopt_ckpt *ck, eopt_restored *r)
{
    r->params = calloc((size_t)(r->nparams ? r->nparams : 1), sizeof *r->params);
    if (!r->params)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->nparams; i++) {
        eopt_param *p = &r->params[i];
        const eopt_tensor *t = eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, i));
        snprintf(p->name, sizeof p->name, "%s", eopt_ckpt_tensor_name(ck, i));
        p->w = calloc(1, sizeof *p->w);
        p->grad = calloc(1, sizeof *p->grad);
        if (!p->w || !p->grad)
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        EOPT_TRY(eopt_tensor_alloc(p->w, r->be, t->dtype, t->ndim, t->shape));
        EOPT_TRY(eopt_tensor_alloc(p->grad, r->be, t->dtype, t->ndim, t->shape));
        EOPT_TRY(eopt_ckpt_read_tensor(ck, p->name, p->w));
    }
    return EOPT_OK;
}

eopt_status eopt_restore_model(const eopt_ckpt *ck, eopt_backend *be, eopt_restored *out)
{
    eopt_restored r = {.be = be, .step = eopt_ckpt_step(ck), .nparams = eopt_ckpt_num_tensors(ck)};
    eopt_status st = restore_params(ck, &r);
    if (st != EOPT_OK) {
        eopt_restored_free(&r);
        return st;
    }
    *out = r;
    return EOPT_OK;
}

eopt_status eopt_restore(const eopt_ckpt *ck, eopt_backend *be, eopt_restored *out)
{
    eopt_restored r;
    EOPT_TRY(eopt_restore_model(ck, be, &r));
    eopt_status st = EOPT_OK;
    int n = eopt_ckpt_num_optimizers(ck);
    {
        r.opts = calloc((size_t)(n ? n : 1), sizeof *r.opts);
        r.opt_names = calloc((size_t)(n ? n : 1), sizeof *r.opt_names);
        if (!r.opts || !r.opt_names)
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    }
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        snprintf(r.opt_names[k], sizeof r.opt_names[k], "%s", eopt_ckpt_optimizer_name(ck, k));
        st = eopt_ckpt_create_optimizer(ck, r.opt_names[k], be, r.params, r.nparams, &r.opts[k]);
        if (st == EOPT_OK)
            r.nopt = k + 1;
    }
    if (st != EOPT_OK) {
        eopt_restored_free(&r);
        return st;
    }
    *out = r;
    return EOPT_OK;
}

eopt_status eopt_restored_save(const eopt_restored *r, const eopt_ckpt *ck, int64_t step, const char *producer,
                               int with_trainer, const char *path)
{
    int na = ck ? eopt_ckpt_num_aliases(ck) : 0, nd = ck && with_trainer ? eopt_ckpt_num_trainer_data(ck) : 0;
    eopt_ckpt_alias *aliases = calloc((size_t)na + 1, sizeof *aliases);
    eopt_ckpt_optimizer *opts = calloc((size_t)r->nopt + 1, sizeof *opts);
    eopt_ckpt_dataset *data = calloc((size_t)nd + 1, sizeof *data);
    eopt_status st = aliases && opts && data ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (st == EOPT_OK) {
        for (int k = 0; k < na; k++)
            aliases[k] = eopt_ckpt_alias_at(ck, k);
        for (int k = 0; k < r->nopt; k++)
            opts[k] = (eopt_ckpt_optimizer){.name = r->opt_names[k],
                                            .opt = r->opts[k],
                                            .schedule = ck ? eopt_ckpt_schedule(ck, r->opt_names[k]) : NULL};
        for (int k = 0; k < nd; k++) {
            data[k].name = eopt_ckpt_trainer_data_name(ck, k);
            data[k].t = eopt_ckpt_trainer_data(ck, data[k].name);
        }
        eopt_ckpt_write w = {.step = step,
                             .producer = producer,
                             .nparams = r->nparams,
                             .params = r->params,
                             .naliases = na,
                             .aliases = aliases,
                             .nopt = r->nopt,
                             .opts = opts,
                             .trainer = ck && with_trainer ? eopt_ckpt_trainer(ck) : NULL,
                             .ntrainer_data = nd,
                             .trainer_data = data};
        st = eopt_checkpoint_save(path, &w);
    }
    free(aliases);
    free(opts);
    free(data);
    return st;
}
