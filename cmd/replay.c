/* `eopt replay CHECKPOINT TRAJECTORY [--save-at K FILE] [--device cpu|cuda]` and the replay
 * library of replay.h. */
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint/h5.h"
#include "commands.h"

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
        EOPT_TRY(eopt_tensor_copy(p->w, t));
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
            opts[k] =
                (eopt_ckpt_optimizer){r->opt_names[k], r->opts[k], ck ? eopt_ckpt_schedule(ck, r->opt_names[k]) : NULL};
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

/* ------------------------------------------------------------------------------------------
 * The trajectory file */

typedef struct {
    hid_t fid;
    const char *path;
    const eopt_ckpt *ck;
} trajectory;

/* /<group>/<name> as float32 of the expected shape; a stored tensor may appear under an alias.
 * *found = 0 (and no error) if `optional` and absent. */
static eopt_status traj_read(const trajectory *tr, const char *group, const eopt_param *p, int optional,
                             eopt_tensor *out, int *found)
{
    char where[1200], sa[64], sb[64];
    snprintf(where, sizeof where, "%.1000s:%.100s", tr->path, group);
    *found = 0;
    hid_t g = H5Gopen2(tr->fid, group, H5P_DEFAULT);
    if (g < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: group is missing", where);
    const char *name = p->name;
    if (eopt_h5_kind_of(g, name, NULL) != EOPT_H5_DATASET)
        for (int k = 0; k < eopt_ckpt_num_aliases(tr->ck); k++) {
            eopt_ckpt_alias a = eopt_ckpt_alias_at(tr->ck, k);
            if (strcmp(a.target, p->name) == 0 && eopt_h5_kind_of(g, a.alias, NULL) == EOPT_H5_DATASET)
                name = a.alias;
        }
    eopt_status st = EOPT_OK;
    if (eopt_h5_kind_of(g, name, NULL) != EOPT_H5_DATASET) {
        if (!optional)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: dataset is missing", where, p->name);
    } else if ((st = eopt_h5_dataset_read(g, name, where, out)) == EOPT_OK) {
        *found = 1;
        if (out->dtype != EOPT_F32 || !eopt_tensor_same_shape(out, p->w)) {
            st = eopt_fail(EOPT_ERR_SHAPE, "%s/%s: shape %s, the model has %s", where, name,
                           eopt_shape_str(out->ndim, out->shape, sa, sizeof sa),
                           eopt_shape_str(p->w->ndim, p->w->shape, sb, sizeof sb));
            eopt_tensor_free(out);
        }
    }
    H5Gclose(g);
    return st;
}

/* Uploads the gradients of step t and points every optimizer's parameter at its gradient, or
 * at none when the trajectory has none for it. */
static eopt_status feed_grads(eopt_restored *r, const trajectory *tr, int64_t t, char *has)
{
    char group[64];
    snprintf(group, sizeof group, "/grads/%lld", (long long)t);
    for (int i = 0; i < r->nparams; i++) {
        eopt_tensor g;
        int found;
        EOPT_TRY(traj_read(tr, group, &r->params[i], 1, &g, &found));
        has[i] = (char)found;
        if (found) {
            eopt_status st = eopt_tensor_copy(r->params[i].grad, &g);
            eopt_tensor_free(&g);
            EOPT_TRY(st);
        }
    }
    for (int k = 0; k < r->nopt; k++)
        for (int j = 0; j < r->opts[k]->nparams; j++) {
            eopt_param *p = &r->opts[k]->params[j];
            for (int i = 0; i < r->nparams; i++)
                if (r->params[i].w == p->w)
                    p->grad = has[i] ? r->params[i].grad : NULL;
        }
    return EOPT_OK;
}

/* max|p - ref| and max|ref - init| of one tensor (host data). */
static void deviation(const float *p, const float *ref, const float *init, int64_t n, double *err, double *scale)
{
    double e = 0, s = 0;
    for (int64_t k = 0; k < n; k++) {
        double d = fabs((double)p[k] - ref[k]), m = fabs((double)ref[k] - init[k]);
        e = d > e || isnan(d) ? d : e;
        s = m > s ? m : s;
    }
    *err = e;
    *scale = s;
}

/* Compares every tensor with /params/<t>; updates res and returns the step's worst ratio. */
static eopt_status compare_step(const eopt_restored *r, const trajectory *tr, const eopt_tensor *init, int64_t t,
                                eopt_replay_result *res, double *step_worst, const char **step_tensor)
{
    char group[64];
    snprintf(group, sizeof group, "/params/%lld", (long long)t);
    *step_worst = 0;
    *step_tensor = "";
    for (int i = 0; i < r->nparams; i++) {
        eopt_tensor ref, p;
        int found;
        EOPT_TRY(traj_read(tr, group, &r->params[i], 0, &ref, &found));
        eopt_status st = eopt_tensor_alloc(&p, NULL, EOPT_F32, r->params[i].w->ndim, r->params[i].w->shape);
        if (st == EOPT_OK)
            st = eopt_tensor_copy(&p, r->params[i].w);
        double err = 0, scale = 0;
        if (st == EOPT_OK)
            deviation(eopt_f32(&p), eopt_f32(&ref), eopt_f32(&init[i]), p.numel, &err, &scale);
        eopt_tensor_free(&p);
        eopt_tensor_free(&ref);
        EOPT_TRY(st);
        double rel = scale > 0 ? err / scale : err == 0 ? 0 : INFINITY;
        if (isnan(rel))
            rel = INFINITY;
        if (!(err <= res->tolerance * scale))
            res->ok = 0;
        if (rel > *step_worst || !*step_tensor[0]) {
            *step_worst = rel;
            *step_tensor = r->params[i].name;
        }
        if (rel > res->worst || res->worst_step < 0) {
            res->worst = rel;
            res->worst_step = t;
            snprintf(res->worst_tensor, sizeof res->worst_tensor, "%s", r->params[i].name);
        }
    }
    return EOPT_OK;
}

static eopt_status traj_attrs(const trajectory *tr, eopt_replay_result *res, int64_t *steps)
{
    char where[1100];
    snprintf(where, sizeof where, "%.1000s:/", tr->path);
    eopt_value v;
    EOPT_TRY(eopt_h5_attr_read(tr->fid, "tolerance", where, &v));
    if (v.kind != EOPT_VAL_FLOAT || !(v.f > 0))
        return eopt_fail(EOPT_ERR_FORMAT, "%s: tolerance must be a positive number", where);
    res->tolerance = v.f;
    EOPT_TRY(eopt_h5_attr_read(tr->fid, "steps", where, &v));
    if (v.kind != EOPT_VAL_INT && v.kind != EOPT_VAL_BOOL)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: steps must be an integer", where);
    *steps = v.i;
    if (eopt_h5_attr_exists(tr->fid, "case"))
        EOPT_TRY(eopt_h5_attr_read_str(tr->fid, "case", where, res->case_name, sizeof res->case_name));
    return EOPT_OK;
}

static eopt_status replay_steps(eopt_restored *r, const eopt_ckpt *ck, const trajectory *tr,
                                const eopt_replay_options *opt, eopt_replay_result *res)
{
    eopt_tensor *init = calloc((size_t)r->nparams + 1, sizeof *init);
    char *has = calloc((size_t)r->nparams + 1, 1);
    eopt_status st = init && has ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->nparams && st == EOPT_OK; i++) {
        int found;
        st = traj_read(tr, "/init", &r->params[i], 0, &init[i], &found);
    }
    if (st == EOPT_OK && opt && opt->save_path && opt->save_at == r->step)
        st = eopt_restored_save(r, ck, r->step, "eopt replay", 0, opt->save_path);
    for (int64_t t = res->first; t <= res->last && st == EOPT_OK; t++) {
        st = feed_grads(r, tr, t, has);
        for (int k = 0; k < r->nopt && st == EOPT_OK; k++)
            if ((st = eopt_optimizer_step(r->opts[k])) != EOPT_OK)
                eopt_fail_context(st, "step %lld, optimizer '%s'", (long long)t, r->opt_names[k]);
        double worst = 0;
        const char *where = "";
        if (st == EOPT_OK)
            st = compare_step(r, tr, init, t, res, &worst, &where);
        if (st == EOPT_OK && opt && opt->log)
            fprintf(opt->log, "step %lld: worst_rel_err=%.3e (%s)\n", (long long)t, worst, where);
        r->step = st == EOPT_OK ? t : r->step;
        if (st == EOPT_OK && opt && opt->save_path && opt->save_at == t)
            st = eopt_restored_save(r, ck, t, "eopt replay", 0, opt->save_path);
    }
    for (int i = 0; init && i < r->nparams; i++)
        eopt_tensor_free(&init[i]);
    free(init);
    free(has);
    return st;
}

eopt_status eopt_replay_run(eopt_restored *r, const eopt_ckpt *ck, const char *trajectory_path,
                            const eopt_replay_options *opt, eopt_replay_result *res)
{
    *res = (eopt_replay_result){.ok = 1, .worst_step = -1};
    eopt_h5_quiet();
    trajectory tr = {.path = trajectory_path, .ck = ck};
    tr.fid = H5Fis_hdf5(trajectory_path) > 0 ? H5Fopen(trajectory_path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (tr.fid < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot open trajectory '%s'", trajectory_path);
    int64_t steps = 0;
    eopt_status st = traj_attrs(&tr, res, &steps);
    res->first = r->step + 1;
    res->last = steps;
    if (st == EOPT_OK && r->step > steps)
        st = eopt_fail(EOPT_ERR_ARG, "checkpoint step %lld is past the trajectory's %lld steps", (long long)r->step,
                       (long long)steps);
    if (st == EOPT_OK && opt && opt->save_path && (opt->save_at < r->step || opt->save_at > steps))
        st = eopt_fail(EOPT_ERR_ARG, "--save-at %lld is outside the replayed steps %lld..%lld", (long long)opt->save_at,
                       (long long)r->step, (long long)steps);
    if (st == EOPT_OK)
        st = replay_steps(r, ck, &tr, opt, res);
    H5Fclose(tr.fid);
    if (res->worst_step < 0)
        res->worst = 0;
    return st;
}

/* ------------------------------------------------------------------------------------------
 * The command */

static int replay_usage(void)
{
    fprintf(stderr, "usage: eopt replay CHECKPOINT TRAJECTORY [--save-at K FILE] [--device cpu|cuda]\n");
    return 2;
}

int eopt_cmd_replay(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *device = "cpu";
    eopt_replay_options opt = {.save_at = -1, .log = stdout};
    int npos = 0;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--save-at") == 0 && k + 2 < argc) {
            char *end;
            opt.save_at = strtoll(argv[k + 1], &end, 10);
            if (*end || opt.save_at < 0)
                return replay_usage();
            opt.save_path = argv[k + 2];
            k += 2;
        } else if (strcmp(argv[k], "--device") == 0 && k + 1 < argc) {
            device = argv[++k];
        } else if (argv[k][0] != '-' && npos < 2) {
            pos[npos++] = argv[k];
        } else {
            return replay_usage();
        }
    }
    if (npos != 2)
        return replay_usage();
    eopt_backend *be = NULL;
    eopt_ckpt *ck = NULL;
    eopt_restored r = {0};
    eopt_replay_result res;
    eopt_status st = eopt_backend_open(device, 0, &be);
    if (st == EOPT_OK)
        st = eopt_checkpoint_open(pos[0], NULL, &ck);
    if (st == EOPT_OK)
        st = eopt_restore(ck, be, &r);
    if (st == EOPT_OK)
        st = eopt_replay_run(&r, ck, pos[1], &opt, &res);
    eopt_restored_free(&r);
    eopt_checkpoint_close(ck);
    if (be)
        eopt_backend_close(be);
    if (st != EOPT_OK) {
        fprintf(stderr, "eopt replay: %s\n", eopt_last_error());
        return 2;
    }
    printf("replay %s: case=%s steps=%lld..%lld worst_rel_err=%.3e tolerance=%g\n", res.ok ? "ok" : "FAIL",
           res.case_name, (long long)res.first, (long long)res.last, res.worst, res.tolerance);
    return res.ok ? 0 : 1;
}
