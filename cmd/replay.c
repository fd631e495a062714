/* `eopt replay CHECKPOINT TRAJECTORY [--save-at K FILE] [--device cpu|cuda]` and the replay
 * library of replay.h. */
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

/* ------------------------------------------------------------------------------------------
 * Replaying a trajectory */

typedef struct {
    eopt_trajectory *tr;
    const eopt_ckpt *ck;
} trajectory;

/* The name under which record `rec` of step t holds parameter p: its own, or an alias of it in
 * the checkpoint (a gradient stored under an alias belongs to the stored tensor). */
static eopt_status record_name(const trajectory *tr, eopt_traj_record rec, int64_t t, const eopt_param *p,
                               const char **name, int *found)
{
    *name = p->name;
    EOPT_TRY(eopt_trajectory_has(tr->tr, rec, t, p->name, found));
    for (int k = 0; k < eopt_ckpt_num_aliases(tr->ck) && !*found; k++) {
        eopt_ckpt_alias a = eopt_ckpt_alias_at(tr->ck, k);
        if (strcmp(a.target, p->name) == 0) {
            EOPT_TRY(eopt_trajectory_has(tr->tr, rec, t, a.alias, found));
            *name = *found ? a.alias : *name;
        }
    }
    return EOPT_OK;
}

/* Parameter p's tensor in record `rec` of step t (float32 of p's shape). *found = 0 (and no
 * error) if `optional` and absent. */
static eopt_status traj_read(const trajectory *tr, eopt_traj_record rec, int64_t t, const eopt_param *p, int optional,
                             eopt_tensor *out, int *found)
{
    const char *name;
    EOPT_TRY(record_name(tr, rec, t, p, &name, found));
    if (!*found && optional)
        return EOPT_OK;
    EOPT_TRY(eopt_trajectory_read(tr->tr, rec, t, name, p->w, out));
    *found = 1;
    return EOPT_OK;
}

/* Uploads the gradients of step t and points every optimizer's parameter at its gradient, or
 * at none when the trajectory has none for it. */
static eopt_status feed_grads(eopt_restored *r, const trajectory *tr, int64_t t, char *has)
{
    for (int i = 0; i < r->nparams; i++) {
        eopt_tensor g;
        int found;
        EOPT_TRY(traj_read(tr, EOPT_TRAJ_GRADS, t, &r->params[i], 1, &g, &found));
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
    *step_worst = 0;
    *step_tensor = "";
    for (int i = 0; i < r->nparams; i++) {
        eopt_tensor ref, p;
        int found;
        EOPT_TRY(traj_read(tr, EOPT_TRAJ_PARAMS, t, &r->params[i], 0, &ref, &found));
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

static eopt_status replay_steps(eopt_restored *r, const eopt_ckpt *ck, const trajectory *tr,
                                const eopt_replay_options *opt, eopt_replay_result *res)
{
    eopt_tensor *init = calloc((size_t)r->nparams + 1, sizeof *init);
    char *has = calloc((size_t)r->nparams + 1, 1);
    eopt_status st = init && has ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < r->nparams && st == EOPT_OK; i++) {
        int found;
        st = traj_read(tr, EOPT_TRAJ_INIT, 0, &r->params[i], 0, &init[i], &found);
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
    trajectory tr = {.ck = ck};
    EOPT_TRY(eopt_trajectory_open(trajectory_path, &tr.tr));
    int64_t steps = eopt_trajectory_steps(tr.tr);
    res->tolerance = eopt_trajectory_tolerance(tr.tr);
    snprintf(res->case_name, sizeof res->case_name, "%s", eopt_trajectory_case(tr.tr));
    res->first = r->step + 1;
    res->last = steps;
    eopt_status st = EOPT_OK;
    if (r->step > steps)
        st = eopt_fail(EOPT_ERR_ARG, "checkpoint step %lld is past the trajectory's %lld steps", (long long)r->step,
                       (long long)steps);
    if (st == EOPT_OK && opt && opt->save_path && (opt->save_at < r->step || opt->save_at > steps))
        st = eopt_fail(EOPT_ERR_ARG, "--save-at %lld is outside the replayed steps %lld..%lld", (long long)opt->save_at,
                       (long long)r->step, (long long)steps);
    if (st == EOPT_OK)
        st = replay_steps(r, ck, &tr, opt, res);
    eopt_trajectory_close(tr.tr);
    if (res->worst_step < 0)
        res->worst = 0;
    return st;
}

/* ------------------------------------------------------------------------------------------
 * The command */

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--save-at", "K FILE", "write a checkpoint of the replayed state after step K into FILE"},
    {"--device", "cpu|cuda", "the backend that runs the optimizers (default: cpu)"},
    {0}};

const eopt_command eopt_cmd_replay = {
    "replay", "CHECKPOINT TRAJECTORY",
    "replay the gradients a trajectory file recorded through the optimizers of a checkpoint and compare "
    "every parameter after every step with the recorded ones",
    "The trajectory's layout: ../shared/fixtures/README.md. Prints one line per step and a verdict; exit status "
    "0 (every step within the trajectory's tolerance), 1 (a mismatch), 2 (the files cannot be replayed).",
    options, run};

static int run(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *device = "cpu";
    eopt_replay_options opt = {.save_at = -1, .log = stdout};
    int npos = 0;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_replay, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        const char *name = id >= 0 ? options[id].name : "";
        char *end;
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (id == EOPT_ARGS_POS && npos == 2)
            return eopt_usage_error(&eopt_cmd_replay, "unexpected argument '%s'", a.val[0]);
        if (id == EOPT_ARGS_POS)
            pos[npos++] = a.val[0];
        else if (strcmp(name, "--device") == 0)
            device = a.val[0];
        else if ((opt.save_at = strtoll(a.val[0], &end, 10)) < 0 || *end || end == a.val[0])
            return eopt_usage_error(&eopt_cmd_replay, "--save-at: '%s' is not a step number", a.val[0]);
        else
            opt.save_path = a.val[1];
    }
    if (npos != 2)
        return eopt_usage_error(&eopt_cmd_replay, "needs a checkpoint and a trajectory file");
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
