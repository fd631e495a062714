/* Replaying recorded gradients through optimizers restored from a checkpoint (`eopt replay`, the
 * fixture tests): the model tensors and every optimizer of the file are rebuilt on a backend,
 * fed /grads/<t> of a trajectory file (../shared/fixtures/README.md) and compared after every
 * step with /params/<t>, relative to how far the reference moved from /init. */
#ifndef EOPT_REPLAY_H
#define EOPT_REPLAY_H

#include <stdio.h>

#include "../checkpoint/checkpoint.h"

/* A model and its optimizers as a checkpoint describes them. */
typedef struct {
    eopt_backend *be;
    int64_t step;
    int nparams;
    eopt_param *params; /* the stored /model tensors on `be` (aliases excluded), with gradients */
    int nopt;
    char (*opt_names)[EOPT_NAME_MAX];
    eopt_optimizer **opts; /* in the file's order of /optimizers */
} eopt_restored;

eopt_status eopt_restore(const eopt_ckpt *ck, eopt_backend *be, eopt_restored *out);
/* The model alone (nopt = 0). */
eopt_status eopt_restore_model(const eopt_ckpt *ck, eopt_backend *be, eopt_restored *out);
void eopt_restored_free(eopt_restored *r);
/* Writes r as a checkpoint at `step`: model (with ck's aliases), optimizers with ck's schedules,
 * and with_trainer = 1: ck's /trainer too. ck may be NULL (no aliases, schedules or trainer). */
eopt_status eopt_restored_save(const eopt_restored *r, const eopt_ckpt *ck, int64_t step, const char *producer,
                               int with_trainer, const char *path);

typedef struct {
    int64_t save_at; /* write a checkpoint after this step (< 0: none) */
    const char *save_path;
    FILE *log; /* one line per step; NULL: quiet */
} eopt_replay_options;

typedef struct {
    char case_name[128];
    int64_t first, last; /* the steps fed: first..last (first > last: none) */
    double worst;        /* max over steps and tensors of max|p - ref| / max|ref - init| */
    int64_t worst_step;
    char worst_tensor[EOPT_NAME_MAX];
    double tolerance; /* the trajectory's `tolerance` attribute */
    int ok;           /* every tensor at every step within tolerance */
} eopt_replay_result;

/* Feeds /grads/<t> for t = r->step + 1 .. steps to every optimizer of r and compares. A
 * parameter without a gradient at step t gets none (torch's p.grad = None); a gradient stored
 * under an alias belongs to the stored tensor. Returns an error only when the replay cannot run
 * (files, shapes, an optimizer failing); a mismatch is res->ok = 0. */
eopt_status eopt_replay_run(eopt_restored *r, const eopt_ckpt *ck, const char *trajectory,
                            const eopt_replay_options *opt, eopt_replay_result *res);

#endif
