/* Trajectory files (../shared/fixtures/README.md): the tensors a reference run recorded, by
 * parameter name: /init (before the first step), /grads/<t> (fed at step t) and /params/<t>
 * (after step t) for t = 1..steps, with root attributes `steps`, `tolerance` and `case`. Read
 * by `eopt replay` and the fixture tests. */
#ifndef EOPT_TRAJECTORY_H
#define EOPT_TRAJECTORY_H

#include "../framework/tensor.h"

typedef struct eopt_trajectory eopt_trajectory;

typedef enum { EOPT_TRAJ_INIT, EOPT_TRAJ_GRADS, EOPT_TRAJ_PARAMS } eopt_traj_record;

/* Opens a trajectory and reads its root attributes: tolerance (a positive number), steps (an
 * integer) and case (optional). */
eopt_status eopt_trajectory_open(const char *path, eopt_trajectory **out);
void eopt_trajectory_close(eopt_trajectory *tr);
int64_t eopt_trajectory_steps(const eopt_trajectory *tr);
double eopt_trajectory_tolerance(const eopt_trajectory *tr);
const char *eopt_trajectory_case(const eopt_trajectory *tr); /* "" if absent */

/* Whether record `rec` (of step t; t is ignored for /init) holds a tensor `name`. The record
 * itself must exist: a missing /grads/<t> is an error, not a step without gradients. */
eopt_status eopt_trajectory_has(const eopt_trajectory *tr, eopt_traj_record rec, int64_t t, const char *name,
                                int *has);
/* Reads that tensor into a new host tensor, which must be float32 of the shape of `like` (the
 * model's tensor). */
eopt_status eopt_trajectory_read(const eopt_trajectory *tr, eopt_traj_record rec, int64_t t, const char *name,
                                 const eopt_tensor *like, eopt_tensor *out);

#endif
