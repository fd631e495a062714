/* A model and its optimizers rebuilt from a checkpoint alone, without the program that wrote it
 * (`eopt replay`, `eopt inspect --check`, the fixture tests): every stored /model tensor becomes
 * a parameter with a gradient, every /optimizers/<name> an optimizer bound to them by name. */
#ifndef EOPT_RESTORE_H
#define EOPT_RESTORE_H

#include "checkpoint.h"

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

#endif
