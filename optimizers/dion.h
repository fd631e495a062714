/* The dion optimizer family: Muon, NorMuon, Dion2 and NorDion2 of microsoft/dion@33777ce with
 * Soft-Muon softening and the element-wise `adamw` / `lion` param groups
 * (../shared/spec/algorithms/dion-muown.md §0-§8, §10-§12).
 *
 * Constructor arguments (opt->args, not in param groups): distributed_mesh (None only), betas,
 * use_gram_newton_schulz, use_triton (both unsupported: they need external packages),
 * use_polar_express, newton_schulz_func (None only), softening (read at every step, so a
 * schedule may change it between steps); Dion2 adds verbose and triton_post_ortho, NorDion2
 * triton_post_ortho (whose fused kernel computes the same update; eopt ignores it).
 * Param-group keys in upstream order (§1.2); a group's beta1 / beta2 default to `betas`.
 * State is created at construction for every parameter, as dion does. */
#ifndef EOPT_OPT_DION_H
#define EOPT_OPT_DION_H

#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_dion_muon;
extern const eopt_optimizer_class eopt_class_normuon;
extern const eopt_optimizer_class eopt_class_dion2;
extern const eopt_optimizer_class eopt_class_nordion2;

/* Dion2's number of selected slices out of K: max(1, ceil(fraction K)) in double (§6 step 2). */
int64_t eopt_dion2_select_count(double fraction, int64_t K);

/* Registry entries (see classes.h). */
#define EOPT_CLASSES_DION &eopt_class_dion_muon, &eopt_class_normuon, &eopt_class_dion2, &eopt_class_nordion2,

#endif
