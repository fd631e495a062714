/* Training schedules, evaluated step-wise (step = the 0-based number of the step being taken).
 *
 * Learning rate: a factor in [floor, 1] that multiplies each group's base lr:
 *   constant  1
 *   warmup    linear warm-up (t + 1) / warmup for t < warmup, then 1
 *   cosine    warm-up, then floor + (1 - floor) (1 + cos(pi p)) / 2, p = (t - warmup) / (total - warmup)
 *   linear    warm-up, then floor + (1 - floor) (1 - p)
 *   wsd       warm-up, stable 1, then a linear decay to floor over the last `decay` steps of `total`
 * Softening (dion's Soft-Muon s): a ramp from `from` to `to` over steps [start, end), constant
 * outside, linear or cosine-shaped inside; the value is clamped to [0, 1]. */
#ifndef EOPT_SCHEDULE_H
#define EOPT_SCHEDULE_H

#include <stdint.h>

#include "value.h"

typedef enum { EOPT_LR_CONSTANT = 0, EOPT_LR_WARMUP, EOPT_LR_COSINE, EOPT_LR_LINEAR, EOPT_LR_WSD } eopt_lr_kind;

typedef struct {
    eopt_lr_kind kind;
    int64_t warmup, total, decay;
    double floor;
} eopt_lr_schedule;

typedef enum { EOPT_RAMP_CONSTANT = 0, EOPT_RAMP_LINEAR, EOPT_RAMP_COSINE } eopt_ramp_kind;

typedef struct {
    eopt_ramp_kind kind;
    double from, to;
    int64_t start, end;
} eopt_ramp;

/* Names <-> kinds ("cosine" <-> EOPT_LR_COSINE); parse returns -1 for an unknown name. */
const char *eopt_lr_kind_name(eopt_lr_kind k);
int eopt_lr_kind_parse(const char *name);
const char *eopt_ramp_kind_name(eopt_ramp_kind k);
int eopt_ramp_kind_parse(const char *name);

/* Checks the arguments (warmup <= total, 0 <= floor <= 1, ...); `what` names the owner. */
eopt_status eopt_lr_schedule_check(const eopt_lr_schedule *s, const char *what);
eopt_status eopt_ramp_check(const eopt_ramp *r, const char *what);

double eopt_lr_factor(const eopt_lr_schedule *s, int64_t step);
double eopt_ramp_value(const eopt_ramp *r, int64_t step);

/* Checkpoint attributes: keys `<prefix>kind`, `<prefix>warmup`, ... (prefix "" for the
 * optimizer's own schedule, e.g. "group1." or "softening." for the others). Reading checks
 * every key and value and names `what` in messages. */
eopt_status eopt_lr_schedule_to_dict(const eopt_lr_schedule *s, const char *prefix, eopt_dict *d);
eopt_status eopt_lr_schedule_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_lr_schedule *s);
eopt_status eopt_ramp_to_dict(const eopt_ramp *r, const char *prefix, eopt_dict *d);
eopt_status eopt_ramp_from_dict(const eopt_dict *d, const char *prefix, const char *what, eopt_ramp *r);

#endif
