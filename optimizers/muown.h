/* Muown: Muon on the row directions of a weight-normalised matrix, Adam on the row magnitudes,
 * as NVIDIA-NeMo/Emerging-Optimizers@9ab7b03 contrib/muown.py (../shared/spec/algorithms/
 * dion-muown.md §9).
 *
 * Constructor arguments (opt->args), in upstream order: betas, adam_eps, fp32_matmul_prec,
 * coefficient_type, num_ns_steps, scale_mode, extra_scale_factor, use_syrk. Param-group keys:
 * lr, momentum, weight_decay. State per 2-D parameter (m x n): step (int64, host), g, v_norm
 * (m x 1), momentum_buffer (m x n), m_g, v_g (m x 1). */
#ifndef EOPT_OPT_MUOWN_H
#define EOPT_OPT_MUOWN_H

#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_muown;

/* Registry entries (see classes.h). */
#define EOPT_CLASSES_MUOWN &eopt_class_muown,

#endif
