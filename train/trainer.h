/* The training loop as a library function: `eopt train` (train_cmd.c) and the tests call it.
 *
 * Each step: grad_accum forward/backward passes (gradients scaled by 1/grad_accum), the
 * gradient norm (non-finite loss or gradients: stop or skip, as configured), the schedules
 * (every group's lr = base lr x factor, every ramped hyperparameter, through
 * eopt_optimizer_set_hparam), each optimizer's step;
 * then evaluation, metrics (JSON lines), progress, and checkpoints as configured. A checkpoint
 * holds the model, the optimizers, /schedules/<name> and /trainer (step and data sampler), so
 * that a resumed run continues bit for bit: on the CPU, N steps in one go equal k steps, a
 * resume, and N - k steps. On resume the config's schedules apply from the resume step on; where
 * they differ from the file's /schedules (or a schedulable argument no ramp moves differs from the
 * file's), a warning through eopt_log lists each change as "key: file -> config".
 * Progress, log lines and the sample go through eopt_log (PROGRESS, INFO).
 *
 * Before step 1 the run folder (checkpoint.dir) is claimed and recorded (run_dir.h): a fresh run
 * into another run's folder is refused (force: its files move aside), a resume with a changed
 * config is refused (force: it continues, the changes logged); every checkpoint holds the
 * resolved config as its root `config` attribute. The startup summary (device, data, which
 * parameters each optimizer and group takes, schedules, ramps) goes to eopt_log (INFO).
 * Gradients are clipped to run.grad_clip by their global norm when it is set.
 *
 * Metrics (log.metrics, JSON lines, docs/metrics.md): a header, then one line per step (loss,
 * gradient norm, throughput, time, every optimizer's lr and ramped values per group; gradient,
 * update and parameter statistics on log.interval steps) and one per evaluation. A resume cuts
 * the file back to the checkpoint's step. A failed write of the metrics or the run folder's
 * records is an EOPT_ERR_IO naming the file, and the run stops there (its checkpoints intact).
 *
 * --resume auto with checkpoints of which none opens is an error (force: the run's files move
 * aside and a fresh run starts); each newer file skipped for an older one is named in a warning.
 * A run that ends with a non-finite evaluation loss is an EOPT_ERR_NUMERIC (after its final
 * checkpoint); resuming a finished run does nothing (already_finished).
 *
 * Divergence (run.diverge_loss > 0): a training loss above the bound, or a non-finite loss or
 * gradient that run.on_nonfinite would fail on, ends the run as diverged (res->diverged, EOPT_OK):
 * that step is not taken, its metrics line carries "event": "diverged", the run checkpoints the
 * step before. Every end of a run that recorded its folder writes outcome.json there (run_dir.h):
 * finished, diverged (at the step whose loss diverged), interrupted or failed (the error).
 *
 * Under mpirun or srun (`make MPI=1`) the run is data-parallel over the processes, with the
 * optimizer state sharded by parameter (parallel.h): every rank trains on its own rows of each
 * batch, and rank 0 alone logs and writes the run folder, metrics and checkpoints (in the one
 * layout, whatever the number of ranks). Every failure on one rank fails all of them with the same
 * message; a resume reads and checks the whole file on every rank before any rank applies it. */
#ifndef EOPT_TRAIN_H
#define EOPT_TRAIN_H

#include "config.h"

typedef struct {
    const char *resume;   /* NULL, a checkpoint file, or "auto": the newest of the run's directory */
    const char *init;     /* NULL or a checkpoint (e.g. exported by PyTorch): weights to start from */
    int init_optimizer;   /* with init: also the optimizers' state (matched by optimizer name) */
    int64_t stop_at;      /* > 0: checkpoint and return after this step (as an interruption would) */
    int quiet;            /* no progress, log lines or sample (warnings still go to eopt_log) */
    int force;            /* a fresh run moves another run's files aside; a resume accepts a changed config */
    int dry_run;          /* build everything, log the startup summary, write nothing, return */
    const char *command;  /* the command line, for the run folder's record (NULL: none) */
} eopt_train_options;

#define EOPT_METRICS_VERSION 2 /* docs/metrics.md */

typedef struct {
    int64_t start_step;       /* the step this call started from (> 0 after a resume) */
    int64_t step;             /* steps done */
    int interrupted;          /* stopped by a signal or stop_at before the configured steps */
    int already_finished;     /* a resume from a checkpoint at or past run.steps: nothing was done */
    double train_loss;        /* the last step's */
    double eval_loss;         /* the last evaluation's (NaN if none) */
    double accuracy;          /* MLP: test accuracy of the final evaluation (NaN for GPT) */
    double throughput;        /* tokens (GPT) or samples (MLP) per second over the run */
    int64_t nonfinite_steps;  /* steps skipped for a non-finite loss or gradient (run.on_nonfinite = "skip":
                                 more than run.max_nonfinite_skips in a row stop the run, EOPT_ERR_NUMERIC) */
    char last_checkpoint[EOPT_CFG_PATH_MAX + 64];
    int diverged;             /* run.diverge_loss: the run stopped at step + 1 (not taken), checkpointed at step */
    char diverge_reason[256]; /* "loss X above run.diverge_loss = Y" or "non-finite loss ..." */
    int rank, ranks;          /* this process among the run's (train/parallel.h); 0 of 1 alone */
    int64_t state_bytes;      /* the optimizer state this process held at the end */
} eopt_train_result;

eopt_status eopt_train(const eopt_config *cfg, const eopt_train_options *opt, eopt_train_result *res);

/* Asks a running eopt_train to checkpoint and return after the current step (async-signal-safe:
 * the `eopt train` command calls it from its SIGINT/SIGTERM handler). */
void eopt_train_interrupt(void);

#endif
