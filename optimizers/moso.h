/* MOSO: Momentum One-Sided SOAP, as NVIDIA-NeMo/Emerging-Optimizers@a0e376b
 * (../shared/spec/algorithms/soap-moso.md §1.2, §2, §4). */
#ifndef EOPT_OPT_MOSO_H
#define EOPT_OPT_MOSO_H

#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_moso;

/* Registry entries, e.g. "&eopt_class_x, &eopt_class_y," (see classes.h). */
#define EOPT_CLASSES_MOSO &eopt_class_moso,

#endif
