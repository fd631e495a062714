/* Studies: many training runs from one libconfig file (docs/studies.md), e.g.
 *
 *   base  = "../gpt_dion_muon.cfg";          # a training config (relative to this file), or { ... } inline
 *   set   = ["run.steps=300", "run.diverge_loss=8.0"];   # every run (eopt train --set syntax)
 *   axes  = ( { key = "opt"; path = "optimizers.matrix.class"; } );   # set run by run in `runs`
 *   runs  = ( { opt = "dion.Muon"; }, { opt = "NorDion2"; } );
 *   grid  = ( { key = "lr"; path = "optimizers.matrix.args.lr"; values = [0.01, 0.02]; } );
 *   seeds = [1, 2, 3];                       # a last grid axis on run.seed
 *   jobs = 2; threads = 1; dir = "studies/x";
 *
 * The runs are the `runs` entries (one empty run without them) times the cartesian product of the
 * grid axes, in file order, seeds last. Each run is named from its settings ("dion.Muon-lr0.02-seed1":
 * a string value as itself, anything else as its key and value) and resolved (base + set + its
 * settings, config.h) before any run starts, so that a typo fails at once with file:line and key.
 * This module parses, expands, names and reads run states; it prints nothing and runs nothing
 * (cmd/study.c starts an `eopt train` child per run). */
#ifndef EOPT_STUDY_H
#define EOPT_STUDY_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define EOPT_STUDY_MAX_AXES 16
#define EOPT_STUDY_MAX_VALUES 256 /* per axis */
#define EOPT_STUDY_MAX_RUNS 100000
#define EOPT_STUDY_MAX_SETS 48
#define EOPT_STUDY_VALUE_MAX 512
#define EOPT_STUDY_NAME_MAX 200

typedef enum { EOPT_STUDY_NUMBER, EOPT_STUDY_BOOL, EOPT_STUDY_STRING, EOPT_STUDY_GROUP } eopt_study_value_kind;

typedef struct {
    eopt_study_value_kind kind;
    char text[EOPT_STUDY_VALUE_MAX]; /* libconfig text, as --set takes it: 0.02, "dion.Muon", true, { ... } */
    char label[64];                  /* in run names: 0.02, dion.Muon, cosine-0.3-0 */
} eopt_study_value;

typedef struct {
    char path[EOPT_CFG_PATH_MAX]; /* the config setting: "optimizers.matrix.args.lr" */
    char key[32];                 /* its name in run names and `runs` entries: "lr" */
    int grid;                     /* a grid axis (values below) rather than one set run by run */
    char where[48];               /* "grid.[1]", "axes.[0]", "seeds" and its line: for messages */
    int line;
    int nvalues;
    eopt_study_value *values;
} eopt_study_axis;

typedef struct {
    char name[EOPT_STUDY_NAME_MAX];
    int value[EOPT_STUDY_MAX_AXES]; /* index into axes[a].values; -1: the run leaves the axis as the base has it */
} eopt_study_run;

typedef struct {
    char path[EOPT_CFG_PATH_MAX];   /* the study file */
    char name[128];                 /* its name without folder and .cfg */
    char dir[EOPT_CFG_PATH_MAX];    /* `dir` or "studies/<name>" */
    char base[EOPT_CFG_PATH_MAX];   /* the base config file ("" when inline) */
    int base_line;
    char *base_text;                /* an inline base as libconfig text (malloc'd), else NULL */
    int jobs, threads;              /* 0: not given */
    int nsets;
    char sets[EOPT_STUDY_MAX_SETS][EOPT_STUDY_VALUE_MAX + EOPT_CFG_PATH_MAX];
    int naxes, seed_axis;           /* seed_axis: the axis of `seeds`, or -1 */
    eopt_study_axis axes[EOPT_STUDY_MAX_AXES];
    int nruns;
    eopt_study_run *runs;
} eopt_study;

/* Reads, expands and names the study; every error names file:line and key. Does not resolve the
 * runs' configs (eopt_study_check does). */
eopt_status eopt_study_load(const char *path, eopt_study *s);
void eopt_study_free(eopt_study *s);

/* The --set overrides of run r ("PATH=VALUE": the study's `set`, then the run's settings) into
 * sets[] (pointers into s and buf), plus `extra` (may be NULL) last; *n their count. */
void eopt_study_run_sets(const eopt_study *s, int r, const char *extra, const char **sets, int *n);

/* Resolves every run's config (base, set, settings) as `eopt train` will: the first failure is
 * an error naming the study file's line (the base and set, or the axis whose value alone fails
 * on the base), the run and the config's message. */
eopt_status eopt_study_check(const eopt_study *s);

/* Creates the study folder: study.cfg (a copy of the study file; an existing different one is
 * refused naming the differences, unless force), base.cfg (an inline base), study.json. The
 * path of the base config the children read into base_path. */
eopt_status eopt_study_prepare_dir(const eopt_study *s, int force, char *base_path, size_t size);

/* study.json (docs/studies.md). */
eopt_status eopt_study_write_json(const eopt_study *s, const char *path);

/* The run names of a study folder's study.json, in task order: malloc'd array of *n names. */
eopt_status eopt_study_read_names(const char *dir, char (**names)[EOPT_STUDY_NAME_MAX], int *n);

typedef struct {
    char state[16];  /* finished, diverged, interrupted, failed (outcome.json), running, unfinished, pending */
    int64_t step, steps; /* last step in the metrics, run.steps (-1: unknown) */
    double loss;     /* last training loss (NaN: none) */
    char reason[256];
} eopt_study_run_state;

/* The state of the run folder `run_dir` from its files (outcome.json, metrics, checkpoints, and
 * the `running` marker: "host pid" of the study process that runs it). */
void eopt_study_state(const char *run_dir, eopt_study_run_state *st);

/* run.threads of the run folder's config.cfg (a resume keeps it: the config must not change), or
 * `def` when the folder has none. */
int eopt_study_run_threads(const char *run_dir, int def);

#endif
