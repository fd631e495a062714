/* Reading run folders for `eopt metrics`, `eopt plot` and `eopt report`: a run's metrics.jsonl
 * (docs/metrics.md) as series. */
#ifndef EOPT_RUNS_H
#define EOPT_RUNS_H

#include <stddef.h>
#include <stdint.h>

#include "framework/error.h"

typedef struct {
    char path[1024]; /* the metrics file */
    char name[256];  /* the run folder's name */
    int64_t steps;   /* run.steps from the header (0 if absent) */
    int mlp;
    int n, ne;             /* train and eval records */
    int64_t *step, *estep; /* [n], [ne] */
    double *train, *eval, *acc;
    double time_s, rate; /* of the last train record */
    /* Loss spikes (the "spike" member of a step's line): [nspike] */
    int nspike;
    int64_t *spike_step;
    double *spike_loss;
    /* Diagnostics lines, [nd]: the largest weight_sn and update_sn over the parameters and the
     * largest attn_logit_max over the layers (NaN where a line has none). */
    int nd;
    int64_t *dstep;
    double *weight_sn, *update_sn, *attn_logit;
} eopt_run_metrics;

/* Reads RUN_DIR/metrics.jsonl (or the file, when `where` is one). A line that is not JSON fails
 * the read, naming the file and line, except a last line without its newline (a line being
 * written), which is skipped. A file without steps fails too. */
eopt_status eopt_run_metrics_read(const char *where, eopt_run_metrics *m);
/* The same, where a file without steps (a run that has not taken one yet) is no error. */
eopt_status eopt_run_metrics_load(const char *where, eopt_run_metrics *m);
void eopt_run_metrics_free(eopt_run_metrics *m);

#endif
