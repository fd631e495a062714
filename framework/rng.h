/* Counter-based random numbers (Philox4x32-10): number j of stream `seed` depends only on
 * (seed, j), so CPU and GPU, any thread count and any split of the work give the same
 * values. Shared by both backends. */
#ifndef EOPT_RNG_H
#define EOPT_RNG_H

#include <stdint.h>

#include "kernels/ew.h"

EOPT_HD void eopt_philox(uint64_t seed, uint64_t counter, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* Uniform in [0, 1) with 24 random bits. */
EOPT_HD float eopt_rand_uniform(uint64_t seed, uint64_t j)
{
    uint32_t r[4];
    eopt_philox(seed, j, r);
    return (float)(r[0] >> 8) * (1.0f / 16777216.0f);
}

/* Standard normal by Box-Muller on two uniforms of the same counter (computed in double so
 * that CPU and GPU libm differences stay below float32 rounding). */
EOPT_HD float eopt_rand_normal(uint64_t seed, uint64_t j)
{
    uint32_t r[4];
    eopt_philox(seed, j, r);
    double u1 = ((double)(r[0] >> 8) + 1.0) * (1.0 / 16777217.0); /* (0, 1] */
    double u2 = (double)(r[1] >> 8) * (1.0 / 16777216.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
