/* NVIDIA Muon and AdaptiveMuon (AdaMuon / NorMuon / NAMO), as NVIDIA-NeMo/Emerging-Optimizers
 * @b309e2f (v0.3.0) (../shared/spec/algorithms/muon.md §1-4, §7-9).
 *
 * Constructor arguments (opt->args, not in param groups), in upstream order:
 *   Muon:         nesterov, weight_decay_method, fp32_matmul_prec, coefficient_type, num_ns_steps,
 *                 scale_mode, extra_scale_factor, use_syrk
 *   AdaptiveMuon: the same without use_syrk, plus moment2_method
 * Param-group keys: lr, momentum, weight_decay (AdaptiveMuon: required, then beta2, eps). */
#ifndef EOPT_OPT_MUON_H
#define EOPT_OPT_MUON_H

#include "newton_schulz.h"
#include "optimizer.h"

extern const eopt_optimizer_class eopt_class_muon;
extern const eopt_optimizer_class eopt_class_adaptive_muon;

/* get_muon_scale_factor (muon.md §3.5) for a size_out x size_in update: scale_mode
 * "shape_scaling" sqrt(max(1, m/n)), "spectral" sqrt(max(m, n)), "unit_rms_norm" sqrt(m/n). */
eopt_status eopt_muon_scale_factor(int64_t size_out, int64_t size_in, const char *scale_mode, double *out);

/* The Newton-Schulz configuration from the Emerging-Optimizers constructor arguments
 * coefficient_type, num_ns_steps and fp32_matmul_prec of `args`; `what` names the class in
 * messages. Shared by Muon, AdaptiveMuon and Muown. */
eopt_status eopt_muon_ns_config(const eopt_dict *args, const char *what, eopt_ns_config *out);

/* scale_mode (checked now, with eopt_muon_scale_factor's message, where upstream fails only at
 * the first step) and extra_scale_factor of `args`. Shared by Muon, AdaptiveMuon and Muown. */
eopt_status eopt_muon_scale_args(const eopt_dict *args, const char *what, const char **scale_mode, double *extra);

/* The defaults of the arguments those two read, in upstream order: fp32_matmul_prec "medium",
 * coefficient_type "quintic", num_ns_steps 5, scale_mode "spectral", extra_scale_factor 1. */
void eopt_muon_ns_defaults(eopt_dict *args);
/* A param group's lr, momentum and weight_decay (Muon, AdaptiveMuon, Muown); None is an error
 * naming the key. */
eopt_status eopt_muon_group_hp(const eopt_dict *d, const char *what, double *lr, double *momentum, double *wd);

/* Registry entries (see classes.h). */
#define EOPT_CLASSES_MUON &eopt_class_muon, &eopt_class_adaptive_muon,

#endif
