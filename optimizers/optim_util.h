/* Helpers shared by the optimizer classes: None-aware argument reads and parameter checks with
 * their upstream messages. */
#ifndef EOPT_OPT_UTIL_H
#define EOPT_OPT_UTIL_H

#include "optimizer.h"

/* Whether `key` is absent from d or None (Python's d.get(key) is None). */
int eopt_is_none(const eopt_dict *d, const char *key);

/* A stepped parameter of a float32-only class: weight and gradient float32 of one shape, else
 * "<cls>: parameter 'x' and its gradient must be float32 of one shape". */
eopt_status eopt_param_check_f32(const char *cls, const eopt_param *p);

/* BLAS and LAPACK take int sizes and leading dimensions (the products and offsets eopt computes
 * are int64): a matrix side (the last two dimensions) beyond INT_MAX is refused, naming the
 * parameter, rather than truncated. */
eopt_status eopt_param_check_sides(const char *cls, const eopt_param *p);

/* The same for a 2-D-only class, 2-D first: "<cls> is only supported for 2D <noun> (parameter 'x')", then the sides. */
eopt_status eopt_param_check_2d(const char *cls, const char *noun, const eopt_param *p);

#endif
