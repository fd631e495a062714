/* Reading run folders for `eopt metrics` and `eopt plot`: a run's metrics.jsonl
 * (docs/metrics.md) as series. */
#ifndef EOPT_CMD_RUNS_H
#define EOPT_CMD_RUNS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char path[1024]; /* the metrics file */
    char name[256];  /* the run folder's name */
    int64_t steps;   /* run.steps from the header (0 if absent) */
    int mlp;
    int n, ne;             /* train and eval records */
    int64_t *step, *estep; /* [n], [ne] */
    double *train, *eval, *acc;
    double time_s, rate; /* of the last train record */
} eopt_run_metrics;

/* Reads RUN_DIR/metrics.jsonl (or the file, when `where` is one); 0 on success, else -1 with
 * the reason in err. */
int eopt_run_metrics_read(const char *where, eopt_run_metrics *m, char *err, size_t size);
void eopt_run_metrics_free(eopt_run_metrics *m);

#endif
