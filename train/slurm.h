/* A study on a Slurm cluster: one sbatch job array, one array task per run of the study.
 *
 * eopt_study_slurm_submit writes STUDY_DIR/slurm/study.sbatch and submits it with
 * `sbatch --parsable`. Array task I runs `eopt study STUDY.cfg --task I --dir STUDY_DIR`: run
 * number I alone, resumed from its checkpoints, or nothing when it has already ended. So
 * submitting again (or `sbatch STUDY_DIR/slurm/study.sbatch` by hand) continues a study after a
 * time limit, a preemption or a node failure, and never repeats a finished run.
 * Each task's output goes to STUDY_DIR/slurm/<job id>_<task>.out. */
#ifndef EOPT_SLURM_H
#define EOPT_SLURM_H

#include <stddef.h>

#include "framework/error.h"

#define EOPT_SLURM_SUBDIR "slurm"
#define EOPT_SLURM_SCRIPT "study.sbatch"

typedef struct {
    const char *study_dir;          /* the study's folder (created if missing) */
    const char *study_cfg;          /* the study file */
    int n_tasks;                    /* runs in the study: the array is 0..n_tasks-1 */
    const char *eopt;               /* the eopt program the tasks run */
    int threads;                    /* cores (--cpus-per-task) and threads per run */
    const char *const *sbatch_args; /* more sbatch options, given on its command line (they override
                                       the script's #SBATCH lines: --partition=..., --time=...) */
    int n_sbatch_args;
} eopt_slurm_study;

/* Writes the job script (atomically; paths made absolute) and returns its path in script. */
eopt_status eopt_study_slurm_write(const eopt_slurm_study *s, char *script, size_t script_len);

/* Writes the job script and submits it: sbatch is $EOPT_SBATCH if set, else `sbatch` from PATH
 * (spawned directly, no shell). On success job_id holds the array's job id. A missing sbatch, a
 * failed one (its exit status and stderr in the message) or an answer that is no job id is an
 * error; the script stays written. */
eopt_status eopt_study_slurm_submit(const eopt_slurm_study *s, char *job_id, size_t job_id_len);

#endif
