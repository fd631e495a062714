/* Training schedules, evaluated step-wise (step = the 0-based number of the step being taken).
 *
 * Learning rate: a factor that multiplies each group's base lr:
 *   constant   1
 *   warmup     linear warm-up (t + 1) / warmup for t < warmup, then 1
 *   cosine     warm-up, then floor + (1 - floor) (1 + cos(pi p)) / 2, p = (t - warmup) / (total - warmup)
 *   linear     warm-up, then floor + (1 - floor) (1 - p)
 *   wsd        warm-up, stable 1, then a linear decay to floor over the last `decay` steps of `total`
 *   piecewise  linear between the points (step_k, factor_k); the first factor before the first
 *              point, the last after the last
 * Ramp (any schedulable hyperparameter of a class: dion's softening, momentum, weight decay, ...):
 * its value moves from `from` to `to` over steps [start, end), constant outside, linear or
 * cosine-shaped inside; or piecewise-linear through (step_k, value_k) points. The class checks
 * the values it is given.
 *
 * eopt_schedules is one optimizer's set: the lr schedule (and groups' own), each group's base lr,
 * and the ramps. A checkpoint keeps it as the attributes of /schedules/<optimizer name>. */
#ifndef EOPT_SCHEDULE_H
#define EOPT_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"

#define EOPT_SCHEDULE_MAX_POINTS (EOPT_FLOATS_MAX / 2)
#define EOPT_SCHEDULE_MAX_GROUPS 8
#define EOPT_SCHEDULE_MAX_RAMPS 8

typedef struct {
    int n;
    int64_t step[EOPT_SCHEDULE_MAX_POINTS]; /* strictly increasing */
    double value[EOPT_SCHEDULE_MAX_POINTS];
} eopt_points;

typedef enum {
    EOPT_LR_CONSTANT = 0,
    EOPT_LR_WARMUP,
    EOPT_LR_COSINE,
    EOPT_LR_LINEAR,
    EOPT_LR_WSD,
    EOPT_LR_PIECEWISE
} eopt_lr_kind;

typedef struct {
    eopt_lr_kind kind;
    int64_t warmup, total, decay;
    double floor;
    eopt_points points; /* piecewise */
} eopt_lr_schedule;

typedef enum { EOPT_RAMP_CONSTANT = 0, EOPT_RAMP_LINEAR, EOPT_RAMP_COSINE, EOPT_RAMP_PIECEWISE } eopt_ramp_kind;

typedef struct {
    eopt_ramp_kind kind;
    double from, to;
    int64_t start, end;
    eopt_points points; /* piecewise */
} eopt_ramp;

/* Names <-> kinds ("cosine" <-> EOPT_LR_COSINE); parse returns -1 for an unknown name. */
const char *eopt_lr_kind_name(eopt_lr_kind k);
int eopt_lr_kind_parse(const char *name);
const char *eopt_ramp_kind_name(eopt_ramp_kind k);
int eopt_ramp_kind_parse(const char *name);

/* Checks the arguments (warmup <= total, 0 <= floor <= 1, increasing points, ...); `what`
 * names the owner. */
eopt_status eopt_lr_schedule_check(const eopt_lr_schedule *s, const char *what);
eopt_status eopt_ramp_check(const eopt_ramp *r, const char *what);

double eopt_points_value(const eopt_points *p, int64_t step);
double eopt_lr_factor(const eopt_lr_schedule *s, int64_t step);
double eopt_ramp_value(const eopt_ramp *r, int64_t step);

typedef struct {
    char key[EOPT_KEY_MAX]; /* the hyperparameter */
    int group;              /* the param group it sets; -1: every group (and constructor arguments) */
    eopt_ramp ramp;
} eopt_named_ramp;

typedef struct {
    eopt_lr_schedule lr; /* every group's, unless the group has its own */
    int ngroups;
    double base_lr[EOPT_SCHEDULE_MAX_GROUPS];
    int has_group_lr[EOPT_SCHEDULE_MAX_GROUPS];
    eopt_lr_schedule group_lr[EOPT_SCHEDULE_MAX_GROUPS];
    int nramps;
    eopt_named_ramp ramps[EOPT_SCHEDULE_MAX_RAMPS]; /* every-group ramps before a group's own */
} eopt_schedules;

/* Group g's lr at `step`: base_lr[g] x its schedule's factor. */
double eopt_schedules_lr(const eopt_schedules *s, int g, int64_t step);
/* The ramp that sets `key` in group g (a group's own before an every-group one), or NULL. */
const eopt_named_ramp *eopt_schedules_ramp(const eopt_schedules *s, int g, const char *key);

/* Checkpoint attributes: `kind`, `warmup`, `total`, `decay`, `floor` (and `points`, a flat
 * [step, factor, ...] float array, for piecewise) for the lr schedule; `group<g>.kind`, ... for
 * a group's own; `group<g>.base_lr`; `<key>.kind`, `<key>.from`, `<key>.to`, `<key>.start`,
 * `<key>.end` (`<key>.points`) for an every-group ramp and `group<g>.<key>.*` for a group's.
 * Reading checks every key and value and names `what` in messages; other attributes (the
 * trainer's `position`) are ignored; files written before base_lr was kept lack it (read as 0). */
eopt_status eopt_schedules_to_dict(const eopt_schedules *s, eopt_dict *d);
eopt_status eopt_schedules_from_dict(const eopt_dict *d, const char *what, eopt_schedules *s);
/* Every attribute in which a checkpoint's /schedules attributes `file` and the schedules `s`
 * differ (numbers compare by value; `position` is not compared), as "key: file-value ->
 * s-value" ("absent" for a missing one) joined by ", " into buf (truncated to size); the count. */
int eopt_schedules_diff(const eopt_dict *file, const eopt_schedules *s, char *buf, size_t size);

#endif
