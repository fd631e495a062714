/* Per-value math both backends share: the reduction operators and the bfloat16 rounding,
 * written once so that the CPU and the GPU agree bit for bit (see ew.h for EOPT_HD). */
#ifndef EOPT_BACKEND_MATH_H
#define EOPT_BACKEND_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"

/* A reduction is init, then combine(acc, map(a, b)) over the values in any grouping (the
 * combine is associative up to rounding), then finish. Accumulation is in double. */
EOPT_HD double eopt_red_init(eopt_reduce_op op) { return op == EOPT_RED_MAX ? -INFINITY : 0.0; }

EOPT_HD double eopt_red_map(eopt_reduce_op op, float a, float b)
{
    switch (op) {
    case EOPT_RED_SUM:
    case EOPT_RED_MAX: return a;
    case EOPT_RED_SUMSQ:
    case EOPT_RED_NORM: return (double)a * a;
    case EOPT_RED_ABSSUM:
    case EOPT_RED_MAXABS: return a < 0 ? -(double)a : (double)a;
    case EOPT_RED_DOT: return (double)a * b;
    }
    return 0;
}

/* Max keeps a NaN once seen (x != x takes a new NaN; a NaN acc never loses a comparison). */
EOPT_HD double eopt_red_combine(eopt_reduce_op op, double acc, double x)
{
    return op == EOPT_RED_MAXABS || op == EOPT_RED_MAX ? (x > acc || x != x ? x : acc) : acc + x;
}

EOPT_HD float eopt_red_finish(eopt_reduce_op op, double acc, float alpha)
{
    return (float)(op == EOPT_RED_NORM ? alpha * sqrt(acc) : alpha * acc);
}

/* float32 -> bfloat16, round to nearest even; a NaN stays a (quiet) NaN. */
EOPT_HD uint16_t eopt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

EOPT_HD float eopt_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#endif
