/* A study's results (docs/studies.md): its study.json, each run's outcome.json, run.json and
 * metrics.jsonl, read and aggregated per configuration (a run's settings minus the seed axis)
 * over the seeds; the summary table as Markdown and CSV. `eopt report` draws the plots from it.
 *
 * Over a configuration's seeds: the final and best eval loss (mean, sample std, n) of the
 * finished runs; the spikes of all its runs; its diverged runs and their steps; its runs not
 * finished (pending, running, unfinished, interrupted, failed); the mean tokens/s of its runs.
 * A run's state is the study's (train/study.h: eopt_study_state). */
#ifndef EOPT_REPORT_H
#define EOPT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "runs.h"

typedef enum {
    EOPT_RUN_PENDING,     /* nothing recorded yet */
    EOPT_RUN_RUNNING,     /* no outcome.json; its `running` marker names a live process */
    EOPT_RUN_UNFINISHED,  /* no outcome.json; metrics or checkpoints: killed, or not started again */
    EOPT_RUN_FINISHED,
    EOPT_RUN_DIVERGED,
    EOPT_RUN_INTERRUPTED,
    EOPT_RUN_FAILED,
} eopt_run_state;

/* One axis value of a run: its text as the table shows it ("0.02", "Muon", "true"), and the
 * number when it is one (is_num). */
typedef struct {
    char *text;
    double num;
    int is_num;
} eopt_report_value;

typedef struct {
    char name[256];
    eopt_report_value *values; /* [naxes] */
    int config;                /* its configuration (an index into configs) */
    eopt_run_state state;
    int64_t step;       /* outcome.json's step; else the last step recorded */
    char reason[256];   /* outcome.json's reason ("" if none) */
    int threads;        /* run.json's machine.threads (0 if unknown) */
    eopt_run_metrics m; /* empty (n == 0) when none recorded */
    double final_eval, best_eval; /* the last and lowest eval loss recorded (NaN if none) */
} eopt_report_run;

typedef struct {
    int first;               /* one of its runs: their values outside the seed axis are its settings */
    int nruns, *runs;        /* its runs, in study order */
    int n;                   /* finished runs with an eval loss: the final/best statistics are over them */
    double final_mean, final_std, best_mean, best_std; /* std: sample (n - 1); NaN for n < 2 */
    int spikes, diverged, unfinished;
    double tokens_per_s;     /* mean over its runs that recorded one (NaN if none) */
} eopt_report_config;

typedef struct {
    char dir[1024], name[256];
    int naxes;
    char **axes;        /* config paths, in the study file's order */
    char **labels;      /* the shortest dotted suffix of each path that tells the axes apart */
    int seed_axis;      /* -1: none */
    int x_axis;         /* the learning-rate axis (-1: none) */
    int nby, *by;       /* the axes that tell lines apart in the plots (default: all but seed and x) */
    int nruns;
    eopt_report_run *runs;
    int nconfigs;
    eopt_report_config *configs; /* sorted by the `by` axes, then x, then the other axes */
} eopt_report;

/* Reads STUDY_DIR. x_axis: the axis plotted along x (a path or dotted suffix; NULL: the axis
 * whose path ends in "lr"); by: a comma-separated list of axes (NULL: every axis but the seed
 * and x). A damaged file fails the read with its path (and line) named. */
eopt_status eopt_report_load(const char *dir, const char *x_axis, const char *by, eopt_report *r);
void eopt_report_free(eopt_report *r);

/* The axis matching `name` (a path, or a dotted suffix of exactly one); -1 if none. */
int eopt_report_axis(const eopt_report *r, const char *name);
const char *eopt_run_state_name(eopt_run_state s);

/* The summary table (one row per configuration, the axes but the seed as columns). */
eopt_status eopt_report_write_md(const eopt_report *r, FILE *f);
eopt_status eopt_report_write_csv(const eopt_report *r, FILE *f);

#endif
