/* Run folders: what a run leaves behind, so that a researcher can trust, find and compare it.
 *
 * A run folder (checkpoint.dir) holds
 *   config.cfg       the resolved config (config.h: eopt_config_write), which `eopt train` reads as is
 *   run.json         {"schema", "eopt_version", "command", "config_source", "started", "machine":
 *                    {"device", "threads", "backend"}}: written when a fresh run starts
 *   resumes.jsonl    one such object (plus "step") per resume
 *   metrics.jsonl    (docs/metrics.md), unless log.metrics names another file
 *   step_*.h5        checkpoints (each with the resolved config as its root `config` attribute)
 *   outcome.json     how the run ended: {"state": "finished" | "diverged" | "interrupted" | "failed",
 *                    "step": N, "reason": "..."}; written atomically at every end of a run that got
 *                    as far as recording its folder, removed when the run (re)starts
 * all written before step 1. A fresh run into a folder that holds another run's files is refused
 * (force: they move into <dir>/previous-<UTC time>/, nothing is deleted). A resume compares the
 * folder's config.cfg with the run's and refuses any difference (force: the old one is kept as
 * config.replaced-<UTC time>.cfg, the differences logged as a warning). */
#ifndef EOPT_RUN_DIR_H
#define EOPT_RUN_DIR_H

#include <stdio.h>

#include <stddef.h>

#include "config.h"

#define EOPT_RUN_CONFIG "config.cfg"
#define EOPT_RUN_INFO "run.json"
#define EOPT_RUN_RESUMES "resumes.jsonl"
#define EOPT_RUN_CKPT_PREFIX "step_"
#define EOPT_RUN_OUTCOME "outcome.json"

/* What the run's folder must allow before anything is written: `config_text` is the run's
 * resolved config. */
eopt_status eopt_run_dir_claim(const eopt_config *cfg, const char *config_text, int resume, int force);

typedef struct {
    const char *command;  /* the command line ("" if unknown) */
    const char *backend;  /* eopt_backend_describe's line */
    int64_t step;         /* the step the run starts from (> 0: a resume) */
} eopt_run_record;

/* Writes config.cfg and run.json (a fresh run) or appends to resumes.jsonl (a resume). */
eopt_status eopt_run_dir_record(const eopt_config *cfg, const char *config_text, const eopt_run_record *r);

/* outcome.json in the run's folder (state NULL: removed, a run under way has none). */
eopt_status eopt_run_dir_outcome(const char *dir, const char *state, int64_t step, const char *reason);

/* Every difference between two resolved configs (libconfig texts) as "path: a -> b" joined by
 * "; " into buf (truncated to size); the count (-1 if either does not parse). */
int eopt_config_text_diff(const char *a, const char *b, char *buf, size_t size);

/* Drops the lines of a metrics file whose "step" exceeds `step` (a resume from that step's
 * checkpoint); atomic (a new file renamed over the old). A missing file is no error. */
eopt_status eopt_metrics_truncate(const char *path, int64_t step);

/* mkdir -p */
eopt_status eopt_make_dirs(const char *path);

/* Ends an atomic write: flushes and closes f (written to tmp) and renames tmp over path; on any
 * failure tmp is removed, path is left as it was and the error names path. */
eopt_status eopt_file_commit(FILE *f, const char *tmp, const char *path);

#endif
