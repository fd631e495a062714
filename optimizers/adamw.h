/* torch.optim.AdamW (muon.md §6) and the inner Adam update of Emerging-Optimizers
 * (calculate_adam_update, muon.md §5), the latter shared by Muown (and usable by SOAP / MOSO).
 *
 * AdamW has no constructor arguments outside its param groups. Group keys, in torch's order:
 * lr, betas, eps, weight_decay, amsgrad, maximize, foreach (None), capturable, differentiable,
 * fused (None). State per parameter (any rank): step (0-d float32 on the host), exp_avg,
 * exp_avg_sq. amsgrad = True is rejected. */
#ifndef EOPT_OPT_ADAMW_H
#define EOPT_OPT_ADAMW_H

#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_adamw;

/* calculate_adam_update on n elements (kernel adam_update): updates exp_avg m and exp_avg_sq v
 * in place from g and writes the direction U (may alias g); t is the 1-based step. */
void eopt_adam_update(eopt_backend *be, int64_t n, const float *g, float *m, float *v, const double betas[2],
                      double eps, int correct_bias, int nesterov, int64_t t, float *U);

/* Registry entries (see classes.h). */
#define EOPT_CLASSES_ADAMW &eopt_class_adamw,

#endif
