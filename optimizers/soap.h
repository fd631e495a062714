/* SOAP: Shampoo with Adam in the preconditioner's eigenbasis, as NVIDIA-NeMo/Emerging-Optimizers
 * @1effa02 (v0.2.0) (../shared/spec/algorithms/soap-moso.md §1.1, §2, §3). */
#ifndef EOPT_OPT_SOAP_H
#define EOPT_OPT_SOAP_H

#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_soap;

/* Registry entries, e.g. "&eopt_class_x, &eopt_class_y," (see classes.h). */
#define EOPT_CLASSES_SOAP &eopt_class_soap,

#endif
