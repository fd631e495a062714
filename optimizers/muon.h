/* NVIDIA Muon and AdaptiveMuon (AdaMuon / NorMuon / NAMO), as NVIDIA-NeMo/Emerging-Optimizers
 * @b309e2f (v0.3.0) (../shared/spec/algorithms/muon.md §1-4, §7-9).
 *
 * Constructor arguments (opt->args, not in param groups), in upstream order:
 *   Muon:         nesterov, weight_decay_method, fp32_matmul_prec, coefficient_type, num_ns_steps,
 *                 scale_mode, extra_scale_factor, use_syrk
 *   AdaptiveMuon: the same without use_syrk, plus moment2_method
 * (custom_coefficient_sets, an eopt extension, follows extra_scale_factor in both).
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

/* The scale_mode values get_muon_scale_factor accepts, NULL-terminated. */
extern const char *const eopt_muon_scale_modes[];

/* The constructor-argument rows Muon, AdaptiveMuon and Muown share, in upstream order:
 * fp32_matmul_prec "medium", coefficient_type "quintic", num_ns_steps 5 (read by
 * eopt_muon_ns_config), scale_mode "spectral" (checked at construction, where upstream fails
 * only at the first step) into type.scale, extra_scale_factor 1 into type.extra, and eopt's
 * custom_coefficient_sets (None). */
#define EOPT_MUON_NS_KEYS(type)                                                                                   \
    EOPT_HP_S("fp32_matmul_prec", "medium"), EOPT_HP_S("coefficient_type", "quintic"),                            \
        EOPT_HP_I("num_ns_steps", 5, EOPT_NOWHERE),                                                               \
        EOPT_HP_E("scale_mode", "spectral", EOPT_AT(type, scale), eopt_muon_scale_modes,                          \
                  "Invalid mode for Muon update scale factor: %s (argument scale_mode)"),                         \
        EOPT_HP_F("extra_scale_factor", 1.0, EOPT_AT(type, extra)),                                               \
        EOPT_HP_NONE("custom_coefficient_sets", EOPT_HP_ANY, EOPT_NONE_KEEP, EOPT_NOWHERE)

/* Registry entries (see classes.h). */
#define EOPT_CLASSES_MUON &eopt_class_muon, &eopt_class_adaptive_muon,

#endif
