/* Replaying recorded gradients through optimizers restored from a checkpoint (`eopt replay`, the
 * fixture tests): the model tensors and every optimizer of the file are rebuilt on a backend,
 * fed /grads/<t> of a trajectory file (../shared/fixtures/README.md) and compared after every
 * step with /params/<t>, relative to how far the reference moved from /init. */
#ifndef EOPT_REPLAY_H
#define EOPT_REPLAY_H

#include <stdio.h>

#include "../checkpoint/restore.h"
#include "../checkpoint/trajectory.h"

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
