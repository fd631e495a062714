/* eopt: matrix optimizers (Muon family, SOAP, MOSO, dion) with AdamW, in C. The public API:
 * errors and logging, values and dictionaries (hyperparameters), backends and tensors, the
 * optimizer interface and class registry, training schedules, and checkpoints.
 *
 * An installed eopt is used as `#include <eopt/eopt.h>` with the flags of `pkg-config eopt`
 * (examples/muon_step.c shows a whole program). The header compiles as C11 and as C++. */
#ifndef EOPT_H
#define EOPT_H

/* The C library headers eopt's headers use, included first so that none of them ends up
 * inside the extern "C" block below (C++'s <math.h> declares templates). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "framework/version.h"
#include "framework/error.h"
#include "framework/log.h"
#include "framework/params.h"
#include "framework/value.h"
#include "framework/backend.h"
#include "framework/tensor.h"
#include "framework/schedule.h"
#include "optimizers/optimizer.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/rotate.h"

#ifdef __cplusplus
}
#endif

#endif
