/* The training loop (train.h). */
#include "trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../checkpoint/checkpoint.h"
#include "../checkpoint/rotate.h"
#include "../framework/log.h"
#include "data.h"
#include "diagnostics.h"
#include "parallel.h"
#include "run_dir.h"

#define CKPT_PREFIX EOPT_RUN_CKPT_PREFIX

static volatile sig_atomic_t interrupt_requested;

void eopt_train_interrupt(void) { interrupt_requested = 1; }

typedef struct {
    const eopt_config *cfg;
    const eopt_train_options *o;
    eopt_backend *be;
    eopt_model *model;
    eopt_text text;
    eopt_images train_images, test_images;
    eopt_tokens tokens[2]; /* token shards: [EOPT_SPLIT_TRAIN], [EOPT_SPLIT_VAL] */
    eopt_batch_buffer bb;
    eopt_sampler sampler;
    int nopt;
    eopt_optimizer *opt[EOPT_CFG_MAX_OPTS];
    eopt_param *oparams[EOPT_CFG_MAX_OPTS];    /* each optimizer's parameters, in state-index order */
    int *model_index[EOPT_CFG_MAX_OPTS];       /* model param index of each optimizer param */
    float *norms_dev, *norms;                  /* [3 nparams]: grad, param, update sums of squares */
    double *sums;                              /* [nparams + 1]: what the ranks sum after backward */
    eopt_tensor *before;                       /* weights before the step; after it, the step's update */
    eopt_diagnostics diag;                     /* diagnostics.h */
    eopt_spike_detector spikes;
    eopt_comm *comm;                           /* the run's processes (comm.h); rank 0 leads */
    eopt_dp dp;                                /* data parallelism over them (parallel.h) */
    int lead;                                  /* rank 0: the one that writes files and logs */
    int row0, rows;                            /* this rank's rows of every batch */
    int64_t step;
    int skipped_in_row;                        /* non-finite steps skipped since the last good one */
    double best_eval;
    FILE *metrics;
    int bar;                                   /* progress on a terminal line */
    double t_train;                            /* seconds in training steps since this call started */
    int64_t steps_run, items_done;             /* steps and tokens (or samples) since then */
    double t_before;                           /* training seconds of the run before this call */
    char *config_text;                         /* the resolved config (run folder, checkpoints) */
} trainer;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int is_gpt(const trainer *t) { return t->cfg->model.kind == EOPT_MODEL_GPT; }

/* Every rank's verdict on a step of the run (comm.h): a failure on one rank stops all of them
 * with the same message, before any goes on into a collective the failed one has left. */
static eopt_status agree(trainer *t, eopt_status st)
{
    return t->dp.size > 1 ? eopt_comm_agree(t->comm, st) : st;
}

/* Sums over ranks of a few host numbers (losses, counts). */
static eopt_status sum_over_ranks(trainer *t, double *x, int n)
{
    return t->dp.size > 1 ? eopt_comm_allreduce(t->comm, x, n, EOPT_COMM_SUM) : EOPT_OK;
}

/* ---- setup ---- */

static eopt_status load_data(trainer *t)
{
    const eopt_config *c = t->cfg;
    int B = c->run.batch_size;
    if (c->data.kind == EOPT_DATA_TEXT) {
        EOPT_TRY(eopt_text_load(c->data.path, c->data.val_fraction, &t->text));
        if (t->text.split <= c->run.seq_len || t->text.n - t->text.split <= c->run.seq_len)
            return eopt_fail(EOPT_ERR_CONFIG, "%s: data.path %s is too short for seq_len = %d", c->path,
                             c->data.path, c->run.seq_len);
        return eopt_batch_buffer_create(t->be, B, c->run.seq_len, 0, &t->bb);
    }
    if (c->data.kind == EOPT_DATA_TOKENS) {
        for (int s = 0; s < 2; s++) { /* EOPT_SPLIT_TRAIN, EOPT_SPLIT_VAL */
            const char *patterns[EOPT_CFG_MAX_SHARD_PATTERNS];
            for (int k = 0; k < c->data.nshards[s]; k++)
                patterns[k] = c->data.shards[s][k];
            EOPT_TRY(eopt_tokens_open(c->data.format, c->data.nshards[s], patterns, B, c->run.seq_len,
                                      c->model.vocab_size, s == EOPT_SPLIT_TRAIN && c->data.shuffle, &t->tokens[s]));
        }
        return eopt_batch_buffer_create(t->be, B, c->run.seq_len, 0, &t->bb);
    }
    const char *dir = c->data.path[0] ? c->data.path : NULL;
    EOPT_TRY(eopt_fashion_mnist_load(dir, 1, c->data.normalize, &t->train_images));
    EOPT_TRY(eopt_fashion_mnist_load(dir, 0, c->data.normalize, &t->test_images));
    return eopt_batch_buffer_create(t->be, B, 0, t->train_images.dim, &t->bb);
}

/* One optimizer from its config section, over the parameters the config assigns to it. */
static eopt_status build_optimizer(trainer *t, int o, const int *opt_of, const int *group_of)
{
    const eopt_cfg_optimizer *co = &t->cfg->opts[o];
    eopt_model *m = t->model;
    eopt_dict hp[EOPT_CFG_MAX_GROUPS];
    int size[EOPT_CFG_MAX_GROUPS], n = 0;
    t->oparams[o] = calloc((size_t)m->nparams, sizeof(eopt_param));
    t->model_index[o] = calloc((size_t)m->nparams, sizeof(int));
    if (!t->oparams[o] || !t->model_index[o])
        return eopt_fail(EOPT_ERR_NOMEM, "optimizer %s: out of memory", co->name);
    for (int g = 0; g < co->ngroups; g++) {
        size[g] = 0;
        for (int i = 0; i < m->nparams; i++)
            if (opt_of[i] == o && group_of[i] == g) {
                t->model_index[o][n] = i;
                t->oparams[o][n++] = m->params[i];
                size[g]++;
            }
        hp[g] = co->groups[g].hp; /* the group's keys first, then the optimizer's, then defaults */
        EOPT_TRY(eopt_dict_merge_defaults(&hp[g], &co->hp));
    }
    eopt_status st = eopt_optimizer_create(co->cls, t->be, &co->args, co->ngroups, hp, size, t->oparams[o], n,
                                           &t->opt[o]);
    if (st != EOPT_OK)
        return eopt_fail_context(st, "%s: optimizer '%s'", co->where, co->name);
    return EOPT_OK;
}

static eopt_status build(trainer *t)
{
    const eopt_config *c = t->cfg;
    EOPT_TRY(eopt_comm_world(&t->comm)); /* before the backend: NCCL's ranks pick their GPU */
    t->dp.size = eopt_comm_size(t->comm), t->dp.rank = eopt_comm_rank(t->comm);
    t->lead = t->dp.rank == 0;
    if (c->run.batch_size < t->dp.size)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: run.batch_size = %d is smaller than the %d ranks of this run (each "
                         "rank takes its own rows of every batch)", c->path, c->run.batch_size, t->dp.size);
    t->rows = eopt_dp_rows(&t->dp, c->run.batch_size, &t->row0);
    EOPT_TRY(eopt_backend_open(c->run.device, c->run.threads, &t->be));
    EOPT_TRY(load_data(t));
    /* activations for this rank's rows only: ceil(B / ranks) covers every slice of a batch of B */
    int max_rows = (c->run.batch_size + t->dp.size - 1) / t->dp.size;
    EOPT_TRY(eopt_model_create(&c->model, t->be, max_rows, is_gpt(t) ? c->run.seq_len : 1, &t->model));
    EOPT_TRY(eopt_model_init(t->model, c->run.seed));
    eopt_model *m = t->model;
    int *owner = malloc(2 * sizeof(int) * (size_t)m->nparams);
    if (!owner)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    eopt_status st = eopt_config_assign(c, m->params, m->nparams, owner, owner + m->nparams);
    for (int o = 0; o < c->nopt && st == EOPT_OK; o++, t->nopt++)
        st = build_optimizer(t, o, owner, owner + m->nparams);
    free(owner);
    EOPT_TRY(st);
    EOPT_TRY(eopt_dp_create(t->comm, m, t->nopt, t->opt, t->model_index, &t->dp));
    for (int o = 0; o < t->nopt; o++)
        eopt_dp_localize(&t->dp, t->opt[o], t->model_index[o]);

    t->norms_dev = t->be->alloc(t->be, 3 * sizeof(float) * (size_t)m->nparams);
    t->norms = malloc(3 * sizeof(float) * (size_t)m->nparams);
    t->before = calloc((size_t)m->nparams, sizeof(eopt_tensor));
    t->sums = malloc(sizeof(double) * (size_t)(m->nparams + 1));
    if (!t->norms_dev || !t->norms || !t->before || !t->sums)
        return eopt_fail(EOPT_ERR_NOMEM, "trainer: out of memory");
    for (int i = 0; i < m->nparams; i++)
        EOPT_TRY(eopt_tensor_alloc_like(&t->before[i], m->params[i].w));
    EOPT_TRY(eopt_diagnostics_create(m, c->run.seed, &t->diag));
    EOPT_TRY(eopt_spike_init(&t->spikes, c->log.spike_window, c->log.spike_z));
    t->sampler.seed = c->run.seed;
    t->best_eval = INFINITY;
    return EOPT_OK;
}

static void teardown(trainer *t)
{
    free(t->config_text);
    if (t->metrics)
        fclose(t->metrics); /* an error path: its error is already the one reported */
    for (int i = 0; t->before && t->model && i < t->model->nparams; i++)
        eopt_tensor_free(&t->before[i]);
    free(t->before);
    if (t->be)
        eopt_diagnostics_free(&t->diag);
    eopt_spike_free(&t->spikes);
    free(t->norms);
    free(t->sums);
    if (t->norms_dev)
        t->be->free(t->be, t->norms_dev);
    for (int o = 0; o < t->nopt; o++)
        eopt_optimizer_free(t->opt[o]);
    if (t->dp.owner)
        eopt_dp_free(&t->dp);
    for (int o = 0; o < EOPT_CFG_MAX_OPTS; o++)
        free(t->oparams[o]), free(t->model_index[o]);
    eopt_model_free(t->model);
    if (t->bb.be)
        eopt_batch_buffer_free(&t->bb);
    eopt_text_free(&t->text);
    eopt_tokens_close(&t->tokens[EOPT_SPLIT_TRAIN]);
    eopt_tokens_close(&t->tokens[EOPT_SPLIT_VAL]);
    eopt_images_free(&t->train_images);
    eopt_images_free(&t->test_images);
    if (t->be)
        eopt_backend_close(t->be);
}

/* ---- checkpoints ---- */

/* /schedules/<name>: the optimizer's schedules and the position they were taken to. */
static eopt_status schedule_dict(const trainer *t, int o, eopt_dict *d)
{
    memset(d, 0, sizeof *d);
    EOPT_TRY(eopt_schedules_to_dict(&t->cfg->opts[o].sched, d));
    return eopt_dict_set(d, "position", eopt_int(t->step));
}

/* views: NULL (one process), or each rank's view of the state (eopt_dp_state_views). */
static eopt_status write_checkpoint(trainer *t, eopt_train_result *res, eopt_state *const *views)
{
    const eopt_config *c = t->cfg;
    eopt_model *m = t->model;
    eopt_dict sched[EOPT_CFG_MAX_OPTS], tr = {0};
    eopt_ckpt_optimizer opts[EOPT_CFG_MAX_OPTS];
    eopt_ckpt_alias aliases[2];
    for (int o = 0; o < t->nopt; o++) {
        EOPT_TRY(schedule_dict(t, o, &sched[o]));
        opts[o] = (eopt_ckpt_optimizer){c->opts[o].name, t->opt[o], &sched[o], views ? views[o] : NULL};
    }
    for (int k = 0; k < m->ntied; k++)
        aliases[k] = (eopt_ckpt_alias){m->tied[k].name, m->params[m->tied[k].target].name};
    EOPT_TRY(eopt_dict_set(&tr, "step", eopt_int(t->step)));
    EOPT_TRY(eopt_dict_set(&tr, "data_seed", eopt_int((int64_t)t->sampler.seed)));
    EOPT_TRY(eopt_dict_set(&tr, "data_position", eopt_int((int64_t)t->sampler.position)));
    EOPT_TRY(eopt_dict_set(&tr, "best_eval_loss", eopt_float(t->best_eval)));
    EOPT_TRY(eopt_dict_set(&tr, "train_seconds", eopt_float(t->t_before + t->t_train)));
    EOPT_TRY(eopt_dict_set(&tr, "loss_spikes", eopt_int(t->spikes.spikes)));
    int64_t sampler[2] = {(int64_t)t->sampler.seed, (int64_t)t->sampler.position}, two = 2;
    eopt_tensor st = eopt_tensor_view(sampler, NULL, EOPT_I64, 1, &two);
    /* the spike detector's window, oldest first, as the bits of its float64 losses (exact) */
    double window[t->spikes.window];
    int64_t nwin = eopt_spike_values(&t->spikes, window);
    eopt_tensor sw = eopt_tensor_view(window, NULL, EOPT_I64, 1, &nwin);
    eopt_ckpt_dataset data[2] = {{"sampler", &st}, {"spike_window", &sw}};
    eopt_ckpt_write w = {.step = t->step,
                         .producer = "eopt train",
                         .nparams = m->nparams,
                         .params = m->params,
                         .naliases = m->ntied,
                         .aliases = aliases,
                         .nopt = t->nopt,
                         .opts = opts,
                         .trainer = &tr,
                         .ntrainer_data = nwin > 0 ? 2 : 1,
                         .trainer_data = data,
                         .config = t->config_text,
                         .comm = views ? t->comm : NULL};
    EOPT_TRY(agree(t, t->lead ? eopt_make_dirs(c->checkpoint.dir) : EOPT_OK));
    return eopt_checkpoint_save_rotating(c->checkpoint.dir, CKPT_PREFIX, &w, c->checkpoint.keep,
                                         res->last_checkpoint, sizeof res->last_checkpoint);
}

/* A checkpoint of every rank's state in one file, as one process would write it: rank 0 lays it
 * out, each rank writes the state it owns (checkpoint.h's data-parallel save); every rank learns
 * whether the save worked. */
static eopt_status save(trainer *t, eopt_train_result *res)
{
    eopt_state *views[EOPT_CFG_MAX_OPTS] = {0};
    if (t->dp.size == 1)
        return write_checkpoint(t, res, NULL);
    eopt_status st = agree(t, eopt_dp_state_views(&t->dp, t->nopt, t->opt, t->model_index, views));
    if (st == EOPT_OK)
        st = write_checkpoint(t, res, views);
    eopt_dp_free_views(t->nopt, views);
    return st;
}

/* The file must hold every optimizer of the config. */
static eopt_status check_optimizers(const trainer *t, const eopt_ckpt *ck)
{
    for (int o = 0; o < t->nopt; o++) {
        const char *name = t->cfg->opts[o].name;
        if (eopt_ckpt_optimizer_info(ck, name))
            continue;
        char have[512] = "";
        for (int k = 0; k < eopt_ckpt_num_optimizers(ck); k++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s'%s'", k ? ", " : "",
                     eopt_ckpt_optimizer_name(ck, k));
        return eopt_fail(EOPT_ERR_CONFIG, "%s: no optimizer '%s' (the file has %s)", eopt_ckpt_path(ck), name,
                         have[0] ? have : "none");
    }
    return EOPT_OK;
}

/* The config's value of constructor argument `key` (given, or the class default). */
static const eopt_value *config_arg(const eopt_cfg_optimizer *co, const char *key, eopt_dict *defaults)
{
    eopt_dict group = {0};
    const eopt_value *v = eopt_dict_get(&co->args, key);
    if (v)
        return v;
    *defaults = (eopt_dict){0};
    eopt_optimizer_defaults(eopt_optimizer_find(co->cls), defaults, &group);
    return eopt_dict_get(defaults, key);
}

/* A schedulable constructor argument that no ramp moves keeps the config's value: the file's
 * comes in with the optimizer (the checkpoint compares no schedulable argument). */
static int fixed_arg(const eopt_cfg_optimizer *co, const eopt_optimizer *opt, const char *key)
{
    return eopt_dict_get(&opt->args, key) && !eopt_schedules_ramp(&co->sched, -1, key);
}

/* What the config changes when optimizer o continues from the file, as "key: file -> config, ...":
 * on resume, every difference between the file's /schedules/<name> and the config's schedules;
 * then the schedulable constructor arguments no ramp moves. Fails on an unreadable
 * /schedules (nothing has changed then). */
static eopt_status config_changes(const trainer *t, const eopt_ckpt *ck, int o, char *buf, size_t size)
{
    const eopt_cfg_optimizer *co = &t->cfg->opts[o];
    const eopt_dict *file = eopt_ckpt_schedule(ck, co->name);
    const eopt_dict *file_args = &eopt_ckpt_optimizer_info(ck, co->name)->args;
    const char *const *keys = t->opt[o]->cls->schedulable;
    char what[EOPT_CFG_PATH_MAX + 2 * EOPT_NAME_MAX], va[128], vb[128];
    buf[0] = 0;
    if (t->o->resume && !file)
        snprintf(buf, size, "the file has no /schedules/%s", co->name);
    if (t->o->resume && file) {
        eopt_schedules check;
        snprintf(what, sizeof what, "%s:/schedules/%s", eopt_ckpt_path(ck), co->name);
        EOPT_TRY(eopt_schedules_from_dict(file, what, &check));
        eopt_schedules_diff(file, &co->sched, buf, size);
    }
    for (int k = 0; keys && keys[k]; k++) {
        eopt_dict defaults;
        const eopt_value *fv = eopt_dict_get(file_args, keys[k]), *cv = config_arg(co, keys[k], &defaults);
        if (!fixed_arg(co, t->opt[o], keys[k]) || (fv && eopt_value_equal(fv, cv)))
            continue;
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s: %s -> %s", len ? ", " : "", keys[k],
                 fv ? eopt_value_repr(fv, va, sizeof va) : "absent", eopt_value_repr(cv, vb, sizeof vb));
    }
    return EOPT_OK;
}

/* The ranks' verdict on a checkpoint every rank has read and checked, before any applies it. */
static eopt_status verdict_of_all(void *user, eopt_status st) { return agree(user, st); }

/* Model and optimizers together, all or nothing; then the config's values of the schedulable
 * arguments no ramp moves (ramped ones and every group's lr are set before each step). */
static eopt_status apply_checkpoint(trainer *t, const eopt_ckpt *ck)
{
    const char *names[EOPT_CFG_MAX_OPTS];
    for (int o = 0; o < t->nopt; o++)
        names[o] = t->cfg->opts[o].name;
    /* each rank checks every optimizer's whole state and keeps what it owns */
    unsigned char *keep[EOPT_CFG_MAX_OPTS] = {0};
    eopt_status st = t->dp.size > 1 ? eopt_dp_keep(&t->dp, t->nopt, t->opt, t->model_index, keep) : EOPT_OK;
    if (st == EOPT_OK)
        st = eopt_checkpoint_apply_shard(ck, t->model->params, t->model->nparams, t->nopt, names, t->opt,
                                         t->dp.size > 1 ? (const unsigned char *const *)keep : NULL,
                                         verdict_of_all, t);
    else /* the others are at the verdict: give them this rank's */
        st = agree(t, st);
    eopt_dp_free_keep(t->nopt, keep);
    EOPT_TRY(st);
    for (int o = 0; o < t->nopt; o++) /* dion's eager state of the others' parameters, their gradients */
        eopt_dp_localize(&t->dp, t->opt[o], t->model_index[o]);
    for (int o = 0; o < t->nopt; o++) {
        const char *const *keys = t->opt[o]->cls->schedulable;
        for (int k = 0; keys && keys[k]; k++) {
            eopt_dict defaults;
            const eopt_value *v = config_arg(&t->cfg->opts[o], keys[k], &defaults);
            if (fixed_arg(&t->cfg->opts[o], t->opt[o], keys[k]))
                EOPT_TRY(eopt_optimizer_set_hparam(t->opt[o], -1, keys[k],
                                                   v->kind == EOPT_VAL_INT ? (double)v->i : v->f));
        }
    }
    return EOPT_OK;
}

/* apply_checkpoint, with what the config changes logged as a warning (never applied silently):
 * the run continues with the config's schedules from `step` on. `st`: how reading the file went
 * so far. Every rank passes the ranks' verdict exactly once on every path (inside
 * apply_checkpoint, or here in its stead), so that their collectives stay in step. */
static eopt_status load_model_and_optimizers(trainer *t, const eopt_ckpt *ck, int64_t step, eopt_status st)
{
    char(*changes)[2048] = calloc((size_t)t->nopt, sizeof *changes);
    if (st == EOPT_OK && !changes)
        st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (st == EOPT_OK)
        st = check_optimizers(t, ck);
    for (int o = 0; o < t->nopt && st == EOPT_OK; o++)
        st = config_changes(t, ck, o, changes[o], sizeof changes[o]);
    st = st == EOPT_OK ? apply_checkpoint(t, ck) : agree(t, st);
    for (int o = 0; changes && o < t->nopt && st == EOPT_OK; o++)
        if (changes[o][0])
            eopt_log(EOPT_LOG_WARN, "%s: optimizer '%s': the config differs from the file and applies from step %lld "
                     "on: %s", eopt_ckpt_path(ck), t->cfg->opts[o].name, (long long)step, changes[o]);
    free(changes);
    return st;
}

typedef struct {
    int64_t step;
    double best_eval, seconds;
    eopt_sampler sampler;
    int64_t spikes;             /* loss spikes so far */
    const eopt_tensor *window;  /* the spike detector's losses (float64 bits), or NULL */
} trainer_position;

static eopt_status read_trainer(const eopt_ckpt *ck, trainer_position *p)
{
    const eopt_dict *d = eopt_ckpt_trainer(ck);
    const eopt_tensor *s = eopt_ckpt_trainer_data(ck, "sampler");
    const char *what = eopt_ckpt_path(ck);
    if (!d || !s || s->dtype != EOPT_I64 || s->numel != 2)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: no /trainer state (step and sampler); use --init for an export",
                         what);
    EOPT_TRY(eopt_dict_int(d, what, "step", &p->step));
    EOPT_TRY(eopt_dict_float(d, what, "best_eval_loss", &p->best_eval));
    if (eopt_dict_get(d, "train_seconds")) /* absent in files from before it was kept */
        EOPT_TRY(eopt_dict_float(d, what, "train_seconds", &p->seconds));
    const int64_t *v = s->data;
    p->sampler.seed = (uint64_t)v[0];
    p->sampler.position = (uint64_t)v[1];
    if (eopt_dict_get(d, "loss_spikes")) /* absent in files from before the spike detector */
        EOPT_TRY(eopt_dict_int(d, what, "loss_spikes", &p->spikes));
    p->window = eopt_ckpt_trainer_data(ck, "spike_window");
    if (p->window && (p->window->dtype != EOPT_I64 || p->window->ndim != 1))
        return eopt_fail(EOPT_ERR_FORMAT, "%s: /trainer/spike_window is not a 1-D int64 dataset", what);
    return EOPT_OK;
}

/* --resume auto on rank 0: the newest readable checkpoint of the run's folder into *ck, or
 * none (*ck NULL: a fresh run starts), or the refusal to start over unreadable checkpoints. */
static eopt_status open_latest(trainer *t, const eopt_ckpt_options *deferred, eopt_ckpt **ck)
{
    const char *dir = t->cfg->checkpoint.dir;
    eopt_status st = eopt_checkpoint_open_latest(dir, CKPT_PREFIX, deferred, ck);
    if (st == EOPT_ERR_IO) { /* the folder holds no checkpoint: a fresh run */
        eopt_clear_error();
        eopt_log(EOPT_LOG_WARN, "--resume auto: no checkpoint in %s; a fresh run starts there", dir);
        return EOPT_OK;
    }
    if (st == EOPT_OK || st == EOPT_ERR_INTERRUPTED)
        return st;
    /* checkpoints, none readable: never start over on top of them unasked */
    char why[1024];
    snprintf(why, sizeof why, "%s", eopt_last_error());
    if (!t->o->force)
        return eopt_fail(st, "--resume auto: %s; no fresh run starts over this run's files: add --force to move "
                         "them aside and start over", why);
    eopt_log(EOPT_LOG_WARN, "--resume auto --force: %s; starting over", why);
    return eopt_run_dir_claim(t->cfg, t->config_text, 0, 1);
}

/* The ranks' verdict on opening the checkpoint; a rank that opened it closes it again when
 * another could not. */
static eopt_status agreed_open(trainer *t, eopt_status st, eopt_ckpt **ck)
{
    st = agree(t, st);
    if (st != EOPT_OK && *ck) {
        eopt_checkpoint_close(*ck);
        *ck = NULL;
    }
    return st;
}

/* The checkpoint to start from, open on every rank: rank 0 picks it (--resume auto), the others
 * open the file it picked; every rank has checked the whole file before any goes on. */
static eopt_status open_start(trainer *t, const char *path, eopt_ckpt **ck)
{
    /* The tensors are read once, straight into the optimizer state being built (checkpoint.h). */
    const eopt_ckpt_options deferred = {.defer_tensors = 1};
    eopt_status st = EOPT_OK;
    char chosen[EOPT_CFG_PATH_MAX + 64] = "";
    *ck = NULL;
    if (strcmp(path, "auto") != 0 || !t->o->resume)
        return agreed_open(t, eopt_checkpoint_open(path, &deferred, ck), ck);
    if (t->lead) {
        st = open_latest(t, &deferred, ck);
        if (*ck)
            snprintf(chosen, sizeof chosen, "%s", eopt_ckpt_path(*ck));
    }
    EOPT_TRY(agreed_open(t, st, ck));
    if (t->dp.size == 1)
        return EOPT_OK;
    st = eopt_comm_bcast(t->comm, chosen, sizeof chosen, 0);
    return agreed_open(t, st == EOPT_OK && !t->lead && chosen[0] ? eopt_checkpoint_open(chosen, &deferred, ck) : st,
                       ck);
}

/* --init (weights, optionally optimizer state) or --resume (everything). Everything is
 * validated before the running model, optimizers or trainer position change, on every rank. */
static eopt_status start_from(trainer *t)
{
    const eopt_train_options *o = t->o;
    const char *path = o->resume ? o->resume : o->init;
    eopt_ckpt *ck = NULL;
    if (!path)
        return EOPT_OK;
    EOPT_TRY(open_start(t, path, &ck));
    if (!ck) /* --resume auto found nothing to resume */
        return EOPT_OK;
    trainer_position pos = {0};
    eopt_status st = o->resume ? read_trainer(ck, &pos) : EOPT_OK;
    if (o->resume || o->init_optimizer)
        st = load_model_and_optimizers(t, ck, pos.step, st);
    else if (st == EOPT_OK)
        st = eopt_ckpt_load_model(ck, t->model->params, t->model->nparams);
    st = agree(t, st); /* a rank that could not load fails them all: no half-loaded job goes on */
    if (st == EOPT_OK && o->resume) {
        t->step = pos.step;
        t->best_eval = pos.best_eval;
        t->t_before = pos.seconds;
        t->sampler = pos.sampler;
        t->spikes.spikes = pos.spikes;
        if (pos.window && pos.window->numel > 0) {
            int n = (int)(pos.window->numel < t->spikes.window ? pos.window->numel : t->spikes.window);
            double window[n]; /* the last n: the detector keeps no more */
            memcpy(window, (const int64_t *)pos.window->data + pos.window->numel - n, sizeof window);
            eopt_spike_restore(&t->spikes, window, n);
        }
    }
    if (st == EOPT_OK && !o->quiet)
        eopt_log(EOPT_LOG_INFO, "%s %s (step %lld)", o->resume ? "resuming from" : "initialised from",
                 eopt_ckpt_path(ck), (long long)eopt_ckpt_step(ck));
    eopt_checkpoint_close(ck);
    return st;
}

/* ---- one step ---- */

static eopt_status next_batch(trainer *t, eopt_split split, eopt_sampler *s)
{
    if (t->cfg->data.kind == EOPT_DATA_TOKENS)
        return eopt_tokens_next(&t->tokens[split], s, t->cfg->run.batch_size, &t->bb);
    if (is_gpt(t))
        return eopt_text_next(&t->text, split, s, t->cfg->run.batch_size, &t->bb);
    return eopt_images_next(&t->train_images, s, t->cfg->run.batch_size, &t->bb);
}

/* Sum of squares of each tensor into norms[k nparams + i] (device), then one download. */
static void sumsq(trainer *t, int k, const eopt_tensor *const *ts)
{
    eopt_model *m = t->model;
    for (int i = 0; i < m->nparams; i++) {
        const eopt_tensor *x = ts[i];
        int cols = (int)eopt_tensor_cols(x);
        t->be->reduce(t->be, EOPT_RED_SUMSQ, EOPT_AXIS_ALL, (int)eopt_tensor_rows(x), cols, eopt_f32(x), NULL, cols,
                      1.0f, t->norms_dev + (size_t)k * m->nparams + i);
    }
    t->be->download(t->be, t->norms + (size_t)k * m->nparams, t->norms_dev + (size_t)k * m->nparams,
                    sizeof(float) * (size_t)m->nparams);
}

static void grad_sumsq(trainer *t)
{
    const eopt_tensor *ts[t->model->nparams];
    for (int i = 0; i < t->model->nparams; i++)
        ts[i] = t->model->params[i].grad;
    sumsq(t, 0, ts);
}

/* Parameter norms (slot 1) and update sums of squares (slot 2, w - before, left in before),
 * every step (docs/metrics.md: per group). */
static void param_stats(trainer *t)
{
    eopt_model *m = t->model;
    const eopt_tensor *ts[m->nparams];
    for (int i = 0; i < m->nparams; i++) {
        ts[i] = m->params[i].w;
        eopt_axpby(t->be, m->params[i].w->numel, 1.0f, eopt_f32(m->params[i].w), -1.0f, eopt_f32(&t->before[i]),
                   eopt_f32(&t->before[i]));
    }
    sumsq(t, 1, ts);
    for (int i = 0; i < m->nparams; i++)
        ts[i] = &t->before[i];
    sumsq(t, 2, ts);
}

/* Every group's lr and every ramped hyperparameter at this step (every-group ramps first, then
 * a group's own), through the class's declared schedulable keys. */
static eopt_status set_schedules(trainer *t)
{
    for (int o = 0; o < t->nopt; o++) {
        const eopt_schedules *s = &t->cfg->opts[o].sched;
        for (int g = 0; g < s->ngroups; g++)
            EOPT_TRY(eopt_optimizer_set_hparam(t->opt[o], g, "lr", eopt_schedules_lr(s, g, t->step)));
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < s->nramps; k++)
                if ((s->ramps[k].group >= 0) == pass)
                    EOPT_TRY(eopt_optimizer_set_hparam(t->opt[o], s->ramps[k].group, s->ramps[k].key,
                                                       eopt_ramp_value(&s->ramps[k].ramp, t->step)));
    }
    return EOPT_OK;
}

/* This rank's part of the loss of one evaluation batch (its rows' mean loss weighted by
 * rows / B: the sum over ranks is the batch's mean) and of its correct predictions (MLP). */
static eopt_status eval_batch(trainer *t, double *loss, int *correct)
{
    int row0, rows = eopt_dp_rows(&t->dp, t->bb.batch.B, &row0);
    float l;
    *loss = 0, *correct = 0;
    if (rows == 0) /* a last MLP batch smaller than the number of ranks */
        return EOPT_OK;
    eopt_batch mine = eopt_dp_slice(&t->bb.batch, row0, rows, t->bb.dim);
    EOPT_TRY(eopt_model_forward(t->model, &mine, 0, 1.0f, &l, NULL));
    if (!is_gpt(t))
        EOPT_TRY(eopt_model_correct(t->model, &mine, correct));
    *loss = (double)l * rows / t->bb.batch.B; /* exactly l when one rank has every row */
    return EOPT_OK;
}

/* Mean loss over the held-out batches (text) or test images; MLP accuracy into *acc. Every
 * rank evaluates its rows of every batch; the sums go over ranks once at the end. */
static eopt_status evaluate(trainer *t, int full, double *loss, double *acc)
{
    const eopt_config *c = t->cfg;
    int B = c->run.batch_size;
    double sum[2] = {0, 0}; /* loss, correct */
    eopt_status st = EOPT_OK;
    *acc = NAN;
    if (is_gpt(t)) {
        eopt_sampler s = {c->run.seed ^ 0x5eed0fe7a1ULL, 0}; /* the same held-out batches every time */
        for (int k = 0; k < c->run.eval_batches && st == EOPT_OK; k++) {
            double l = 0;
            int unused;
            st = next_batch(t, EOPT_SPLIT_VAL, &s);
            if (st == EOPT_OK)
                st = eval_batch(t, &l, &unused);
            sum[0] += l;
        }
        EOPT_TRY(agree(t, st));
        EOPT_TRY(sum_over_ranks(t, sum, 1));
        *loss = sum[0] / c->run.eval_batches;
        return EOPT_OK;
    }
    int n = t->test_images.n;
    if (!full && c->run.eval_batches > 0 && c->run.eval_batches * B < n)
        n = c->run.eval_batches * B;
    for (int start = 0; start < n && st == EOPT_OK; start += B) {
        int b = n - start < B ? n - start : B, ok = 0;
        double l = 0;
        st = eopt_images_slice(&t->test_images, start, b, &t->bb);
        if (st == EOPT_OK)
            st = eval_batch(t, &l, &ok);
        sum[0] += l * b;
        sum[1] += ok;
    }
    EOPT_TRY(agree(t, st));
    EOPT_TRY(sum_over_ranks(t, sum, 2));
    *loss = sum[0] / n;
    *acc = sum[1] / n;
    return EOPT_OK;
}

/* ---- output ---- */

static void json_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.9g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

typedef struct {
    int64_t step; /* 1-based: the step just taken */
    double loss, grad_norm, clip_scale, eval_loss, accuracy, rate;
    int logged, evaluated, nonfinite, diverged;
    int spiked, diagnosed; /* a loss spike (spike); a diagnostics line */
    eopt_spike spike;
} step_info;

/* Whatever went wrong writing the metrics since the last check (a full disk, a file size limit)
 * as an error naming the file: the run stops there, its checkpoints untouched. */
static eopt_status metrics_flush(trainer *t)
{
    if (fflush(t->metrics) != 0 || ferror(t->metrics))
        return eopt_fail(EOPT_ERR_IO, "cannot write the metrics file %s: %s", t->cfg->log.metrics, strerror(errno));
    return EOPT_OK;
}

static eopt_status close_metrics(trainer *t)
{
    eopt_status st = t->metrics ? metrics_flush(t) : EOPT_OK;
    if (t->metrics && fclose(t->metrics) != 0 && st == EOPT_OK)
        st = eopt_fail(EOPT_ERR_IO, "cannot write the metrics file %s: %s", t->cfg->log.metrics, strerror(errno));
    t->metrics = NULL;
    return st;
}

/* The header line that starts a metrics file and follows each resume (docs/metrics.md). */
static eopt_status write_metrics_header(trainer *t)
{
    fprintf(t->metrics, "{\"schema\": \"eopt-metrics\", \"version\": %d, \"model\": \"%s\", \"steps\": %lld, "
            "\"items\": \"%s\"}\n", EOPT_METRICS_VERSION, is_gpt(t) ? "gpt" : "mlp", (long long)t->cfg->run.steps,
            is_gpt(t) ? "tokens" : "samples");
    return metrics_flush(t);
}

/* One optimizer's scheduled values: "lr" and every ramped group hyperparameter as a list over
 * its groups, every ramped constructor argument as a number; then its gradient, parameter and
 * update statistics, one value per group. */
static void write_optimizer_metrics(trainer *t, int o)
{
    FILE *f = t->metrics;
    const eopt_optimizer *op = t->opt[o];
    const eopt_schedules *s = &t->cfg->opts[o].sched;
    eopt_model *m = t->model;
    fprintf(f, "%s\"%s\": {\"lr\": [", o ? ", " : "", t->cfg->opts[o].name);
    for (int g = 0; g < op->ngroups; g++)
        fprintf(f, "%s%.9g", g ? ", " : "", eopt_dict_get(&op->groups[g].hp, "lr")->f);
    fputc(']', f);
    for (int k = 0; k < s->nramps; k++) {
        const char *key = s->ramps[k].key;
        int first = 1;
        for (int j = 0; j < k; j++)
            first &= strcmp(s->ramps[j].key, key) != 0;
        if (!first)
            continue;
        const eopt_value *arg = eopt_dict_get(&op->args, key);
        if (arg) {
            json_num(f, key, arg->kind == EOPT_VAL_INT ? (double)arg->i : arg->f);
            continue;
        }
        fprintf(f, ", \"%s\": [", key);
        for (int g = 0; g < op->ngroups; g++) {
            const eopt_value *v = eopt_dict_get(&op->groups[g].hp, key);
            fprintf(f, "%s%.9g", g ? ", " : "", v ? (v->kind == EOPT_VAL_INT ? (double)v->i : v->f) : NAN);
        }
        fputc(']', f);
    }
    /* per group, over its parameters (norms slots 0, 1, 2): sqrt(sum g^2), sqrt(sum W^2), sqrt(mean dW^2) */
    static const char *const stats[3] = {"grad_norm", "param_norm", "update_rms"};
    for (int k = 0; k < 3; k++) {
        fprintf(f, ", \"%s\": [", stats[k]);
        for (int g = 0; g < op->ngroups; g++) {
            double sum = 0, numel = 0;
            for (int j = 0; j < op->groups[g].n; j++) {
                int i = t->model_index[o][op->groups[g].index[j]];
                sum += t->norms[(size_t)k * m->nparams + i];
                numel += (double)m->params[i].w->numel;
            }
            const double v = sqrt(k == 2 ? sum / numel : sum);
            if (isfinite(v))
                fprintf(f, "%s%.9g", g ? ", " : "", v);
            else
                fprintf(f, "%snull", g ? ", " : "");
        }
        fputc(']', f);
    }
    fputc('}', f);
}

static eopt_status write_metrics(trainer *t, const step_info *si)
{
    FILE *f = t->metrics;
    if (!f)
        return EOPT_OK;
    fprintf(f, "{\"step\": %lld", (long long)si->step);
    if (si->diverged)
        fprintf(f, ", \"event\": \"diverged\"");
    else if (si->nonfinite)
        fprintf(f, ", \"event\": \"nonfinite\", \"action\": \"%s\"",
                t->cfg->run.on_nonfinite == EOPT_NONFINITE_SKIP ? "skip" : "stop");
    json_num(f, "train_loss", si->loss);
    json_num(f, "grad_norm", si->grad_norm);
    if (t->cfg->run.grad_clip > 0)
        json_num(f, "clip_scale", si->clip_scale);
    json_num(f, is_gpt(t) ? "tokens_per_s" : "samples_per_s", si->rate);
    json_num(f, "time_s", t->t_before + t->t_train);
    if (si->spiked) /* finite: a spike has std > 0 */
        fprintf(f, ", \"spike\": {\"z\": %.9g, \"mean\": %.9g, \"std\": %.9g}", si->spike.z, si->spike.mean,
                si->spike.std);
    if (!si->nonfinite && !si->diverged) {
        fprintf(f, ", \"optimizers\": {");
        for (int o = 0; o < t->nopt; o++)
            write_optimizer_metrics(t, o);
        fputc('}', f);
    }
    fprintf(f, "}\n");
    if (si->diagnosed)
        eopt_diagnostics_write(&t->diag, t->model, si->step, f);
    if (si->evaluated) {
        fprintf(f, "{\"step\": %lld", (long long)si->step);
        json_num(f, "eval_loss", si->eval_loss);
        if (!is_gpt(t))
            json_num(f, "eval_accuracy", si->accuracy);
        fprintf(f, "}\n");
    }
    return metrics_flush(t);
}

static void fmt_time(double s, char *buf, size_t size)
{
    long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(buf, size, "%ldh%02ldm", v / 3600, v / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", v / 60, v % 60);
}

static void progress(trainer *t, const step_info *si)
{
    const eopt_config *c = t->cfg;
    if (t->o->quiet || c->log.progress == EOPT_PROGRESS_NONE)
        return;
    char eta[32], line[256];
    fmt_time(t->t_train / (double)t->steps_run * (double)(c->run.steps - t->step), eta, sizeof eta);
    int n = snprintf(line, sizeof line, "step %lld/%lld | loss %.4f", (long long)t->step, (long long)c->run.steps,
                     si->loss);
    if (si->evaluated)
        n += snprintf(line + n, sizeof line - n, " | eval %.4f", si->eval_loss);
    if (si->evaluated && !is_gpt(t))
        n += snprintf(line + n, sizeof line - n, " (acc %.2f%%)", 100 * si->accuracy);
    if (t->spikes.spikes > 0)
        n += snprintf(line + n, sizeof line - n, " | spikes %lld", (long long)t->spikes.spikes);
    snprintf(line + n, sizeof line - n, " | %.0f %s/s | ETA %s", si->rate, is_gpt(t) ? "tok" : "samples", eta);
    if (t->bar) /* a line in place; evaluations (and the last step) stay */
        eopt_log(si->evaluated || t->step == c->run.steps ? EOPT_LOG_INFO : EOPT_LOG_PROGRESS, "%s", line);
    else if (si->logged || si->evaluated || si->nonfinite || si->spiked)
        eopt_log(EOPT_LOG_INFO, "%s%s", line, si->nonfinite ? " | non-finite loss or gradient"
                                              : si->spiked ? " | loss spike" : "");
}

static eopt_status open_metrics(trainer *t)
{
    const char *path = t->cfg->log.metrics;
    if (!path[0])
        return EOPT_OK;
    char dir[EOPT_CFG_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        EOPT_TRY(eopt_make_dirs(dir));
    }
    if (t->step > 0) /* a resume: the records after the checkpoint's step are dropped */
        EOPT_TRY(eopt_metrics_truncate(path, t->step));
    t->metrics = fopen(path, t->step > 0 ? "a" : "w");
    if (!t->metrics)
        return eopt_fail(EOPT_ERR_IO, "cannot open the metrics file %s: %s", path, strerror(errno));
    return write_metrics_header(t); /* also after a resume, which may have changed run.steps */
}

static eopt_status print_sample(trainer *t)
{
    const eopt_config *c = t->cfg;
    int np = (int)strlen(c->run.sample_prompt), n = c->run.sample_tokens;
    if (!is_gpt(t) || n <= 0 || t->o->quiet)
        return EOPT_OK;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(np + n));
    if (!tok)
        return eopt_fail(EOPT_ERR_NOMEM, "sample: out of memory");
    for (int k = 0; k < np; k++)
        tok[k] = (uint8_t)c->run.sample_prompt[k];
    eopt_status st = eopt_model_generate(t->model, tok, np, n, (float)c->run.temperature, c->run.top_k,
                                         c->run.seed + (uint64_t)t->step, tok);
    char *text = malloc((size_t)(np + n) + 1);
    if (st == EOPT_OK && !text)
        st = eopt_fail(EOPT_ERR_NOMEM, "sample: out of memory");
    if (st == EOPT_OK) {
        for (int k = 0; k < np + n; k++)
            text[k] = (char)tok[k];
        text[np + n] = 0;
        eopt_log(EOPT_LOG_INFO, "--- sample (%d bytes, temperature %g, top-k %d) ---\n%s\n---", n,
                 c->run.temperature, c->run.top_k, text);
    }
    free(text);
    free(tok);
    return st;
}

/* ---- the startup summary ---- */

static void shape_str(const eopt_tensor *w, char *buf, size_t size)
{
    int n = snprintf(buf, size, "[");
    for (int d = 0; d < w->ndim; d++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", d ? ", " : "", (long long)w->shape[d]);
    snprintf(buf + n, size - (size_t)n, "]");
}

/* Group g of optimizer o: "N tensors, P parameters: 4 x [64, 64], 1 x [64]" (shapes in order). */
static void group_line(const trainer *t, int o, int g, char *buf, size_t size)
{
    const eopt_optimizer *op = t->opt[o];
    char shapes[16][64];
    int count[16], nshapes = 0, ntensors = 0, first = 0;
    double numel = 0;
    for (int k = 0; k < g; k++)
        first += op->groups[k].n;
    for (int k = first; k < first + op->groups[g].n; k++) {
        const eopt_tensor *w = t->oparams[o][k].w;
        char sh[64];
        int j = 0;
        shape_str(w, sh, sizeof sh);
        while (j < nshapes && strcmp(shapes[j], sh) != 0)
            j++;
        if (j == nshapes && nshapes < 16)
            snprintf(shapes[nshapes], sizeof shapes[0], "%s", sh), count[nshapes++] = 0;
        if (j < nshapes)
            count[j]++;
        ntensors++;
        numel += (double)w->numel;
    }
    int n = snprintf(buf, size, "%d tensors, %.0f parameters:", ntensors, numel);
    for (int j = 0; j < nshapes && (size_t)n < size; j++)
        n += snprintf(buf + n, size - (size_t)n, "%s %d x %s", j ? "," : "", count[j], shapes[j]);
}

static void schedule_line(const eopt_lr_schedule *s, double base, char *buf, size_t size)
{
    if (s->kind == EOPT_LR_CONSTANT)
        snprintf(buf, size, "lr %g (constant)", base);
    else if (s->kind == EOPT_LR_WARMUP)
        snprintf(buf, size, "lr %g x warmup (%lld steps)", base, (long long)s->warmup);
    else if (s->kind == EOPT_LR_PIECEWISE)
        snprintf(buf, size, "lr %g x piecewise (%d points)", base, s->points.n);
    else if (s->kind == EOPT_LR_WSD)
        snprintf(buf, size, "lr %g x wsd (warmup %lld, total %lld, decay %lld, floor %g)", base, (long long)s->warmup,
                 (long long)s->total, (long long)s->decay, s->floor);
    else
        snprintf(buf, size, "lr %g x %s (warmup %lld, total %lld, floor %g)", base, eopt_lr_kind_name(s->kind),
                 (long long)s->warmup, (long long)s->total, s->floor);
}

/* What the run will do, through eopt_log (INFO): the device, the data, which parameters each
 * optimizer and group takes, the schedules and ramps. */
static void summary(const trainer *t)
{
    const eopt_config *c = t->cfg;
    char line[1024], sched[256];
    eopt_backend_describe(t->be, line, sizeof line);
    eopt_log(EOPT_LOG_INFO, "device: %s", line);
    if (is_gpt(t))
        eopt_log(EOPT_LOG_INFO, "data: text %s, %lld bytes (%lld train, %lld held out)", c->data.path,
                 (long long)t->text.n, (long long)t->text.split, (long long)(t->text.n - t->text.split));
    else
        eopt_log(EOPT_LOG_INFO, "data: fashion-mnist %s, %d train and %d test images", c->data.path[0] ? c->data.path
                 : "(default folder)", t->train_images.n, t->test_images.n);
    eopt_log(EOPT_LOG_INFO, "run: %lld steps of %d x %d %s (grad_accum %d), grad_clip %g, into %s", (long long)c->run.steps,
             c->run.batch_size, is_gpt(t) ? c->run.seq_len : 1, is_gpt(t) ? "tokens" : "images", c->run.grad_accum,
             c->run.grad_clip, c->checkpoint.dir);
    for (int o = 0; o < t->nopt; o++) {
        const eopt_cfg_optimizer *co = &c->opts[o];
        eopt_log(EOPT_LOG_INFO, "optimizer '%s' (%s):", co->name, co->cls);
        for (int g = 0; g < co->ngroups; g++) {
            group_line(t, o, g, line, sizeof line);
            schedule_line(co->sched.has_group_lr[g] ? &co->sched.group_lr[g] : &co->sched.lr, co->sched.base_lr[g],
                          sched, sizeof sched);
            eopt_log(EOPT_LOG_INFO, "  group %d: %s; %s", g, line, sched);
        }
        for (int k = 0; k < co->sched.nramps; k++) {
            const eopt_named_ramp *r = &co->sched.ramps[k];
            char grp[32] = "every group";
            if (r->group >= 0)
                snprintf(grp, sizeof grp, "group %d", r->group);
            if (r->ramp.kind == EOPT_RAMP_PIECEWISE)
                eopt_log(EOPT_LOG_INFO, "  ramp %s (%s): piecewise, %d points", r->key, grp, r->ramp.points.n);
            else
                eopt_log(EOPT_LOG_INFO, "  ramp %s (%s): %s %g -> %g over steps %lld..%lld", r->key, grp,
                         eopt_ramp_kind_name(r->ramp.kind), r->ramp.from, r->ramp.to, (long long)r->ramp.start,
                         (long long)r->ramp.end);
        }
    }
}

/* The run folder's records (run_dir.h), before step 1. */
static eopt_status record_run(trainer *t)
{
    char backend[512];
    eopt_backend_describe(t->be, backend, sizeof backend);
    eopt_run_record r = {t->o->command, backend, t->step};
    return eopt_run_dir_record(t->cfg, t->config_text, &r);
}

/* ---- the loop ---- */

/* Forward and backward over grad_accum micro-batches; the mean loss into *loss. With several
 * ranks, each takes its rows of every batch, its loss and gradients weighted by rows / B: summed
 * over ranks they are the whole batch's (the loss here is this rank's share of the sum). */
static eopt_status accumulate(trainer *t, double *loss)
{
    const eopt_config *c = t->cfg;
    int A = c->run.grad_accum;
    double share = (double)t->rows / c->run.batch_size;
    float scale = (float)share / (float)A; /* one rank: 1 / A as ever */
    *loss = 0;
    eopt_model_zero_grad(t->model);
    for (int a = 0; a < A; a++) {
        float l;
        EOPT_TRY(next_batch(t, EOPT_SPLIT_TRAIN, &t->sampler));
        eopt_batch mine = eopt_dp_slice(&t->bb.batch, t->row0, t->rows, t->bb.dim);
        EOPT_TRY(eopt_model_forward(t->model, &mine, 1, scale, &l, NULL));
        *loss += (float)(l * share) / A;
    }
    return EOPT_OK;
}

/* The step's gradients, loss and gradient norms over every rank: the gradients summed into
 * their owners (reduce-scatter), each parameter's sum of squares from its owner, the losses
 * summed; all in one small all-reduce, so that every rank takes the same decisions. */
static eopt_status combine_gradients(trainer *t, double *loss)
{
    eopt_model *m = t->model;
    EOPT_TRY(eopt_dp_reduce_gradients(&t->dp, t->be));
    grad_sumsq(t);
    if (t->dp.size == 1)
        return EOPT_OK;
    double *x = t->sums;
    for (int i = 0; i < m->nparams; i++)
        x[i] = t->dp.owner[i] == t->dp.rank ? t->norms[i] : 0.0;
    x[m->nparams] = *loss;
    EOPT_TRY(sum_over_ranks(t, x, m->nparams + 1));
    for (int i = 0; i < m->nparams; i++)
        t->norms[i] = (float)x[i];
    *loss = x[m->nparams];
    return EOPT_OK;
}

/* Clipping by the global norm (nanoGPT, llm.c): g <- g min(1, clip / ||g||), every gradient of
 * the model by the same factor, before any optimizer sees them. */
static void clip_gradients(trainer *t, double scale)
{
    eopt_model *m = t->model;
    for (int i = 0; i < m->nparams; i++)
        eopt_axpby(t->be, m->params[i].grad->numel, (float)scale, eopt_f32(m->params[i].grad), 0.0f,
                   eopt_f32(m->params[i].grad), eopt_f32(m->params[i].grad));
}

/* run.diverge_loss: a loss above it, or a non-finite step the policy would fail on, is a divergence. */
static int diverged(const eopt_config *c, step_info *si, int in_row, eopt_train_result *res)
{
    double bound = c->run.diverge_loss;
    int fatal = si->nonfinite && (c->run.on_nonfinite == EOPT_NONFINITE_STOP || in_row > c->run.max_nonfinite_skips);
    if (bound <= 0 || !(fatal || (!si->nonfinite && si->loss > bound)))
        return 0;
    if (fatal)
        snprintf(res->diverge_reason, sizeof res->diverge_reason, "non-finite loss or gradient (loss %g, gradient "
                 "norm %g)", si->loss, si->grad_norm);
    else
        snprintf(res->diverge_reason, sizeof res->diverge_reason, "loss %g above run.diverge_loss = %g", si->loss,
                 bound);
    si->logged = 0;
    return si->diverged = res->diverged = 1;
}

/* The largest attention logit of each layer over every rank's rows (each saw its own). */
static eopt_status max_attention_logits(trainer *t)
{
    int n = t->diag.nlayers;
    if (t->dp.size == 1 || n == 0)
        return EOPT_OK;
    double x[n];
    for (int l = 0; l < n; l++)
        x[l] = t->diag.attn[l];
    EOPT_TRY(eopt_comm_allreduce(t->comm, x, n, EOPT_COMM_MAX));
    for (int l = 0; l < n; l++)
        t->diag.attn[l] = (float)x[l];
    return EOPT_OK;
}

static eopt_status train_step(trainer *t, step_info *si, eopt_train_result *res)
{
    const eopt_config *c = t->cfg;
    eopt_model *m = t->model;
    double t0 = now();
    memset(si, 0, sizeof *si);
    si->step = t->step + 1;
    si->eval_loss = si->accuracy = NAN;
    EOPT_TRY(agree(t, accumulate(t, &si->loss)));
    EOPT_TRY(combine_gradients(t, &si->loss));
    double g2 = 0;
    for (int i = 0; i < m->nparams; i++)
        g2 += t->norms[i];
    si->grad_norm = sqrt(g2);
    si->clip_scale = 1;
    si->nonfinite = !isfinite(si->loss) || !isfinite(g2);
    si->logged = (t->step + 1) % c->log.interval == 0 || t->step + 1 == c->run.steps;
    si->spiked = !si->nonfinite && eopt_spike_check(&t->spikes, si->loss, &si->spike);
    si->diagnosed = !si->nonfinite && (si->spiked || (c->log.diagnostics_interval > 0 &&
                                                      (t->step + 1) % c->log.diagnostics_interval == 0));
    t->skipped_in_row = si->nonfinite ? t->skipped_in_row + 1 : 0;
    if (diverged(c, si, t->skipped_in_row, res))
        return EOPT_OK; /* the step is not taken; run() records it */
    if (si->nonfinite) {
        res->nonfinite_steps++;
        if (c->run.on_nonfinite == EOPT_NONFINITE_SKIP && t->skipped_in_row > c->run.max_nonfinite_skips) {
            (void)write_metrics(t, si);
            return eopt_fail(EOPT_ERR_NUMERIC, "step %lld: %d non-finite steps in a row (loss %g, gradient norm %g), "
                             "more than run.max_nonfinite_skips = %d; stopped (the last checkpoint is intact)",
                             (long long)t->step + 1, t->skipped_in_row, si->loss, si->grad_norm,
                             c->run.max_nonfinite_skips);
        }
        if (c->run.on_nonfinite == EOPT_NONFINITE_STOP) {
            (void)write_metrics(t, si); /* the error below is the one to report */
            return eopt_fail(EOPT_ERR_NUMERIC, "step %lld: non-finite %s (loss %g, gradient norm %g); stopped "
                             "(run.on_nonfinite = \"skip\" skips such steps)",
                             (long long)t->step + 1, isfinite(si->loss) ? "gradients" : "loss", si->loss,
                             si->grad_norm);
        }
        si->logged = 0;
    } else {
        if (c->run.grad_clip > 0 && si->grad_norm > c->run.grad_clip)
            clip_gradients(t, si->clip_scale = c->run.grad_clip / si->grad_norm);
        EOPT_TRY(set_schedules(t));
        eopt_status st = EOPT_OK;
        for (int i = 0; i < m->nparams && st == EOPT_OK; i++)
            st = eopt_tensor_copy(&t->before[i], m->params[i].w);
        for (int o = 0; o < t->nopt && st == EOPT_OK; o++) {
            if (si->diagnosed)
                eopt_optimizer_diag_begin(t->opt[o]);
            st = eopt_optimizer_step(t->opt[o]);
            if (st == EOPT_OK && si->diagnosed)
                st = eopt_optimizer_diag_end(t->opt[o]);
            if (st != EOPT_OK)
                st = eopt_fail_context(st, "step %lld, optimizer '%s'", (long long)t->step + 1, c->opts[o].name);
        }
        EOPT_TRY(agree(t, st));
        EOPT_TRY(eopt_dp_gather_weights(&t->dp, t->be)); /* every rank ends the step with the same weights */
        param_stats(t);
        if (si->diagnosed) {
            EOPT_TRY(eopt_dp_share_diagnostics(&t->dp, t->nopt, t->opt, t->model_index));
            EOPT_TRY(agree(t, eopt_diagnostics_collect(&t->diag, m, t->before, t->nopt, t->opt, t->model_index)));
            EOPT_TRY(max_attention_logits(t));
        }
    }
    t->step++;
    t->steps_run++;
    t->t_train += now() - t0;
    t->items_done += (int64_t)c->run.batch_size * c->run.grad_accum * (is_gpt(t) ? c->run.seq_len : 1);
    si->rate = (double)t->items_done / t->t_train;
    res->train_loss = si->loss;
    return EOPT_OK;
}

/* A signal on any rank stops every rank after the same step. */
static int interrupted(trainer *t)
{
    double x = interrupt_requested;
    if (t->dp.size > 1 && eopt_comm_allreduce(t->comm, &x, 1, EOPT_COMM_MAX) != EOPT_OK)
        return 1; /* the transport failed: stop here, checkpointing what can be */
    return x != 0;
}

/* The optimizer state each rank holds, through eopt_log on rank 0 (it falls as 1 / ranks). */
static eopt_status log_state_bytes(trainer *t)
{
    int n = t->dp.size;
    double bytes[n];
    memset(bytes, 0, sizeof bytes);
    bytes[t->dp.rank] = (double)eopt_dp_state_bytes(t->nopt, t->opt);
    EOPT_TRY(sum_over_ranks(t, bytes, n));
    if (n == 1 || t->o->quiet)
        return EOPT_OK;
    char line[1024];
    int len = 0;
    double total = 0;
    for (int r = 0; r < n && len < (int)sizeof line; r++) {
        len += snprintf(line + len, sizeof line - (size_t)len, "%s%.2f MiB", r ? ", " : "", bytes[r] / 1048576.0);
        total += bytes[r];
    }
    eopt_log(EOPT_LOG_INFO, "optimizer state per rank: %s (%.2f MiB in all)", line, total / 1048576.0);
    return EOPT_OK;
}

static eopt_status run(trainer *t, eopt_train_result *res)
{
    const eopt_config *c = t->cfg;
    int64_t stop_at = t->o->stop_at > 0 && t->o->stop_at < c->run.steps ? t->o->stop_at : c->run.steps;
    while (t->step < stop_at && !interrupted(t)) {
        step_info si;
        EOPT_TRY(train_step(t, &si, res));
        if (res->diverged) {
            EOPT_TRY(agree(t, write_metrics(t, &si)));
            break;
        }
        int final = t->step == c->run.steps;
        if (final || (c->run.eval_interval > 0 && t->step % c->run.eval_interval == 0)) {
            EOPT_TRY(evaluate(t, final, &si.eval_loss, &si.accuracy));
            si.evaluated = 1;
            res->eval_loss = si.eval_loss, res->accuracy = si.accuracy;
            if (si.eval_loss < t->best_eval)
                t->best_eval = si.eval_loss;
        }
        EOPT_TRY(agree(t, write_metrics(t, &si)));
        progress(t, &si);
        if (!final && c->checkpoint.interval > 0 && t->step % c->checkpoint.interval == 0)
            EOPT_TRY(save(t, res));
    }
    res->step = t->step;
    res->interrupted = t->step < c->run.steps && !res->diverged;
    res->throughput = t->t_train > 0 ? (double)t->items_done / t->t_train : 0;
    res->state_bytes = eopt_dp_state_bytes(t->nopt, t->opt);
    EOPT_TRY(log_state_bytes(t));
    EOPT_TRY(save(t, res));
    EOPT_TRY(agree(t, close_metrics(t)));
    char skipped[160] = "";
    if (res->nonfinite_steps > 0)
        snprintf(skipped, sizeof skipped, " (%lld non-finite step%s skipped)", (long long)res->nonfinite_steps,
                 res->nonfinite_steps > 1 ? "s" : "");
    if (t->spikes.spikes > 0)
        snprintf(skipped + strlen(skipped), sizeof skipped - strlen(skipped), " (%lld loss spike%s)",
                 (long long)t->spikes.spikes, t->spikes.spikes > 1 ? "s" : "");
    if (!t->o->quiet)
        eopt_log(EOPT_LOG_INFO, "%s at step %lld%s: checkpoint %s", res->diverged ? "diverged" : res->interrupted ?
                 "stopped" : "finished", (long long)t->step + res->diverged, skipped, res->last_checkpoint);
    if (!res->interrupted && !res->diverged && !isfinite(res->eval_loss))
        return eopt_fail(EOPT_ERR_NUMERIC, "the run finished at step %lld with a non-finite evaluation loss (%g)%s: "
                         "it diverged (checkpoint %s)", (long long)t->step, res->eval_loss, skipped,
                         res->last_checkpoint);
    return res->interrupted || res->diverged ? EOPT_OK : print_sample(t);
}

/* outcome.json: how this run ended (the error, when it failed, is kept as the one to report). */
static eopt_status record_outcome(const trainer *t, eopt_status st, const eopt_train_result *res)
{
    char reason[1024] = "";
    const char *state = res->diverged ? "diverged" : st == EOPT_ERR_INTERRUPTED || res->interrupted ? "interrupted"
                        : st != EOPT_OK ? "failed" : "finished";
    if (st != EOPT_OK)
        snprintf(reason, sizeof reason, "%s", eopt_last_error());
    else if (res->diverged)
        snprintf(reason, sizeof reason, "%s", res->diverge_reason);
    eopt_status w = eopt_run_dir_outcome(t->cfg->checkpoint.dir, state, t->step + res->diverged, reason);
    if (st != EOPT_OK)
        eopt_fail(st, "%s", reason);
    return st != EOPT_OK ? st : w;
}

eopt_status eopt_train(const eopt_config *cfg, const eopt_train_options *opt, eopt_train_result *res)
{
    static const eopt_train_options none = {0};
    trainer t = {.cfg = cfg, .o = opt ? opt : &none};
    eopt_train_options follower; /* ranks other than 0 log nothing and write no file */
    memset(res, 0, sizeof *res);
    res->eval_loss = res->accuracy = NAN;
    interrupt_requested = 0;
    eopt_status st = build(&t);
    res->rank = t.dp.rank, res->ranks = t.dp.size;
    if (st == EOPT_OK && !(t.config_text = eopt_config_text(cfg)))
        st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (t.comm)
        st = agree(&t, st);
    if (st == EOPT_OK && !t.lead) {
        follower = *t.o;
        follower.quiet = 1;
        t.o = &follower;
    }
    if (st == EOPT_OK && t.o->dry_run) {
        if (t.lead)
            summary(&t);
        teardown(&t);
        return EOPT_OK;
    }
    if (st == EOPT_OK)
        st = agree(&t, t.lead ? eopt_run_dir_claim(cfg, t.config_text, t.o->resume != NULL, t.o->force) : EOPT_OK);
    if (st == EOPT_OK)
        st = start_from(&t);
    res->start_step = t.step;
    if (st == EOPT_OK && t.o->resume && t.step >= cfg->run.steps) { /* nothing to do: only outcome.json */
        res->step = t.step;
        res->already_finished = 1;
        if (t.lead)
            st = record_outcome(&t, st, res);
        teardown(&t);
        return st;
    }
    if (st == EOPT_OK && !t.o->quiet)
        summary(&t);
    if (st == EOPT_OK && t.lead)
        st = record_run(&t);
    int recorded = st == EOPT_OK && t.lead;
    if (st == EOPT_OK && t.lead)
        st = eopt_run_dir_outcome(cfg->checkpoint.dir, NULL, 0, NULL);
    if (st == EOPT_OK && t.lead)
        st = open_metrics(&t);
    if (t.comm) /* every rank passes here, whatever failed on rank 0 just before */
        st = agree(&t, st);
    if (st == EOPT_OK) {
        eopt_progress p = cfg->log.progress;
        t.bar = p == EOPT_PROGRESS_BAR || (p == EOPT_PROGRESS_AUTO && isatty(STDERR_FILENO));
        st = run(&t, res);
    }
    if (recorded)
        st = record_outcome(&t, st, res);
    teardown(&t);
    return st;
}
