/* Element-wise kernels: the per-element math of every fused pass, written once.
 *
 * Each kernel is an inline function `eopt_ew_<name>(const eopt_ew *e, int64_t i)` that
 * computes element i. The CPU backend calls it in a (parallel) loop, the CUDA backend from a
 * one-thread-per-element kernel, so the CPU tests check the GPU math too. A family of kernels
 * lives in its own header (core.h, muon.h, ...), each with an X-macro list of names;
 * EOPT_EW_ALL below joins the lists and is expanded by both backends.
 *
 * Arguments of one launch: n elements; up to three outputs y, y2, y3 (state updated in
 * place) and four inputs a..d; host scalars s[0..7] (hyperparameters, already rounded to
 * float32 as torch does); `ia` an integer input (labels, token ids); device scalars ds (results of reductions, so that no value goes
 * through the host during a step); `cols` gives the (row, col) of element i of a row-major
 * matrix for kernels that broadcast a per-row (i / cols) or per-column (i % cols) vector. */
#ifndef EOPT_KERNELS_EW_H
#define EOPT_KERNELS_EW_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define EOPT_HD static __host__ __device__ __forceinline__
#else
#define EOPT_HD static inline
#endif

typedef struct {
    int64_t n;
    int64_t cols;
    float *y, *y2, *y3;
    const float *a, *b, *c, *d;
    const int32_t *ia;          /* integer input (labels, token ids) */
    const float *ds;
    float s[8];
} eopt_ew;

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

#endif
