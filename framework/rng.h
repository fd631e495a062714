/* Counter-based random numbers: cuRAND's Philox4_32_10 stream, computed here so that the CPU
 * draws exactly what the GPU draws with cuRAND's device API (curand_kernel.h), and number j of a
 * stream depends only on (seed, j): any thread count and any split of the work give the same
 * values. Shared by both backends (the CUDA backend draws the bits with curand itself).
 *
 * The mapping is cuRAND's (curand_philox4x32_x.h): curand_init(seed, subsequence, offset, &s)
 * sets key = (seed low word, seed high word) and the 128-bit counter (words x, y, z, w) to
 * subsequence * 2^64 + offset / 4; curand(&s) then returns word offset % 4 of the Philox4x32-10
 * block of that counter, and the next calls walk on through the words and blocks. */
#ifndef EOPT_RNG_H
#define EOPT_RNG_H

#include <math.h>
#include <stdint.h>

#include "kernels/ew.h"

/* Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32_R(10, ctr, key)): ten rounds of
 *   (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)),
 * the key bumped by the Weyl constants (W0, W1) between rounds. */
EOPT_HD void eopt_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
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

/* Block `block` of subsequence `subsequence` of stream `seed`: its raw numbers 4 block .. 4 block + 3
 * (cuRAND counter subsequence * 2^64 + block). */
EOPT_HD void eopt_philox(uint64_t seed, uint64_t subsequence, uint64_t block, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)subsequence,
                             (uint32_t)(subsequence >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    eopt_philox4x32_10(ctr, key, out);
}

/* Raw number j of stream `seed`: curand() after curand_init(seed, 0, j). */
EOPT_HD uint32_t eopt_rand_bits(uint64_t seed, uint64_t j)
{
    uint32_t r[4];
    eopt_philox(seed, 0, j / 4, r);
    return r[j % 4];
}

/* cuRAND's uniform of raw x (_curand_uniform): x 2^-32 + 2^-33 in float, in (0, 1]. The product
 * is exact (a power of two), so a fused multiply-add rounds the same. */
EOPT_HD float eopt_uniform_of(uint32_t x) { return (float)x * 2.3283064e-10f + 2.3283064e-10f / 2.0f; }

/* Uniform number j of stream `seed`: curand_uniform() after curand_init(seed, 0, j). */
EOPT_HD float eopt_rand_uniform(uint64_t seed, uint64_t j) { return eopt_uniform_of(eopt_rand_bits(seed, j)); }

/* cuRAND's Box-Muller on raw numbers (x, y) (_curand_box_muller): u = x 2^-32 + 2^-33,
 * v = y 2^-32 2pi + 2^-33 2pi (float, cuRAND's constants), s = sqrt(-2 ln u); the pair is
 * (s sin v, s cos v). u and v are cuRAND's floats; s, sin and cos are evaluated in double and
 * rounded once, so that the two backends' libm differences stay below float32 rounding (cuRAND
 * itself uses float logf and the GPU's approximate __sincosf: its normals differ from these in
 * the last bits). */
EOPT_HD float eopt_box_muller(uint32_t x, uint32_t y, int second)
{
    const float two_pi_inv32 = 2.3283064e-10f * 6.2831855f;
    float u = eopt_uniform_of(x);
    float v = (float)y * two_pi_inv32 + two_pi_inv32 / 2.0f;
    double s = sqrt(-2.0 * log((double)u));
    return (float)(s * (second ? cos((double)v) : sin((double)v)));
}

/* Normal number j of stream `seed`: the j-th curand_normal() after curand_init(seed, 0, 0),
 * which draws raw numbers 2p and 2p + 1 for pair p = j / 2 and returns s sin v, then s cos v. */
EOPT_HD float eopt_rand_normal(uint64_t seed, uint64_t j)
{
    uint32_t r[4];
    eopt_philox(seed, 0, j / 4, r);
    const int lane = (int)(j % 4) & 2; /* the pair's first word in the block */
    return eopt_box_muller(r[lane], r[lane + 1], (int)(j & 1));
}

#endif
