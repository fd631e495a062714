/* Element-wise kernels: the per-element math of every fused pass, written once.
 *
 * Kernel `name` is an argument struct eopt_ew_<name>_args with named fields and an inline
 * function eopt_ew_<name>(const eopt_ew_<name>_args *k, int64_t i) that computes element i;
 * both live in the header of its family (core.h, muon.h, ...), the math in a comment next to
 * them. The CPU backend calls the function in a (parallel) loop, the CUDA backend from a
 * one-thread-per-element kernel, so the CPU tests check the GPU math too. Each family header
 * has an X-macro list of its names; EOPT_EW_ALL below joins the lists and is expanded by both
 * backends.
 *
 * Field conventions: pointers are device memory, outputs non-const (state is updated in
 * place); float fields are host scalars, hyperparameters already rounded to float32 as torch
 * does; a `const float *` documented as a device scalar is the result of a reduction, so that
 * no value goes through the host during a step; `cols` is the row length of a row-major matrix
 * for kernels that broadcast a per-row (i / cols) or per-column (i % cols) vector.
 *
 * A launch is an eopt_ew: the op, the element count n and that op's arguments, built with
 *   EOPT_EW(adamw, n, .param = P, .grad = G, ...)
 * and run with eopt_ew_run (backend.h). */
#ifndef EOPT_KERNELS_EW_H
#define EOPT_KERNELS_EW_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define EOPT_HD static __host__ __device__ __forceinline__
#else
#define EOPT_HD static inline
#endif

/* torch.lerp: a + w (b - a) for |w| < 0.5, else b - (b - a)(1 - w); exact at w = 1. */
EOPT_HD float eopt_lerp(float a, float b, float w)
{
    return (w < 0.5f && w > -0.5f) ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

#include "core.h"
#include "muon.h"
#include "dion.h"
#include "soap.h"
#include "adam.h"
#include "model.h"

#define EOPT_EW_ALL(X) EOPT_EW_CORE(X) EOPT_EW_MUON(X) EOPT_EW_DION(X) EOPT_EW_SOAP(X) EOPT_EW_ADAM(X) EOPT_EW_MODEL(X)

typedef enum {
#define EOPT_EW_ENUM(name) EOPT_EW_##name,
    EOPT_EW_ALL(EOPT_EW_ENUM)
#undef EOPT_EW_ENUM
    EOPT_EW_COUNT
} eopt_ew_op;

/* One launch: kernel `op` over elements 0 .. n-1 with the arguments in the member named
 * after it (e.adamw for EOPT_EW_adamw). */
typedef struct {
    eopt_ew_op op;
    int64_t n;
    int64_t row_len; /* a row kernel's elements per index (its loop length), 0 = 1: the CPU's threading threshold */
    union {
#define EOPT_EW_MEMBER(name) eopt_ew_##name##_args name;
        EOPT_EW_ALL(EOPT_EW_MEMBER)
#undef EOPT_EW_MEMBER
    };
} eopt_ew;

/* EOPT_EW(name, n, .field = value, ...): the launch of kernel `name` over n elements. */
#define EOPT_EW(name, n_, ...) ((eopt_ew){.op = EOPT_EW_##name, .n = (n_), .name = {__VA_ARGS__}})
/* EOPT_EW_ROWS(name, rows, len, ...): a row kernel (one index per row, `len` elements each). */
#define EOPT_EW_ROWS(name, rows, len, ...)                                                                            \
    ((eopt_ew){.op = EOPT_EW_##name, .n = (rows), .row_len = (len), .name = {__VA_ARGS__}})

#endif
