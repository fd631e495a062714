/* The GPU side of the cuRAND parity test (tests/curand_draw.cu, CUDA builds only). */
#ifndef EOPT_TESTS_CURAND_DRAW_H
#define EOPT_TESTS_CURAND_DRAW_H

#include <stdint.h>

/* One GPU thread: curand_init(seed, subsequence, offset), then n calls of curand (what = 0),
 * curand_uniform (1) or curand_normal (2), their 32 bits into host[0 .. n-1]. 0, or -1 if a CUDA
 * call failed. */
int tu_curand_draw(int what, uint64_t seed, uint64_t subsequence, uint64_t offset, int n, uint32_t *host);

#endif
