/* The random numbers are cuRAND's Philox4_32_10 stream (framework/rng.h): the cipher against
 * Random123's published known answers, the (seed, subsequence, offset) mapping and the uniform and
 * normal transforms against cuRAND's definitions, and, on a GPU, against curand itself bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "framework/rng.h"
#include "tests/testutil.h"

/* Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter[4], key[2] -> output[4]. */
Test(rng, philox4x32_10_known_answers)
{
    static const uint32_t kat[3][10] = {
        {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x6627e8d5, 0xe169c58d,
         0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        eopt_philox4x32_10(kat[v], kat[v] + 4, out);
        for (int w = 0; w < 4; w++)
            cr_expect_eq(out[w], kat[v][6 + w], "vector %d word %d: %08x, expected %08x", v, w, out[w], kat[v][6 + w]);
    }
}

/* curand_init(seed, subsequence, offset): key = seed (low word first), counter = subsequence 2^64 +
 * offset / 4, word offset % 4. The third vector is subsequence 0x0370734413198a2e, block
 * 0x85a308d3243f6a88 of seed 0x299f31d0a4093822; the first is seed 0's first four numbers. */
Test(rng, curand_stream_mapping)
{
    uint32_t out[4];
    eopt_philox(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull, out);
    cr_expect_eq(out[0], 0xd16cfe09u);
    cr_expect_eq(out[3], 0x24126ea1u);
    const uint32_t first[4] = {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8};
    for (int j = 0; j < 4; j++)
        cr_expect_eq(eopt_rand_bits(0, (uint64_t)j), first[j], "seed 0, number %d", j);
    for (uint64_t j = 0; j < 64; j++) { /* number j is word j % 4 of block j / 4 */
        eopt_philox(77, 0, j / 4, out);
        cr_expect_eq(eopt_rand_bits(77, j), out[j % 4], "number %llu", (unsigned long long)j);
    }
}

/* _curand_uniform: x 2^-32 + 2^-33 in float, so (0, 1], 1 included. */
Test(rng, uniform_is_curand_uniform)
{
    cr_expect_eq(eopt_uniform_of(0), ldexpf(1.0f, -33));
    cr_expect_eq(eopt_uniform_of(0xffffffffu), 1.0f);
    cr_expect_eq(eopt_uniform_of(0x80000000u), 0.5f + ldexpf(1.0f, -33));
    for (uint64_t j = 0; j < 16; j++)
        cr_expect_eq(eopt_rand_uniform(5, j), (float)eopt_rand_bits(5, j) * ldexpf(1.0f, -32) + ldexpf(1.0f, -33));
}

/* curand_normal's pairing: numbers 2p and 2p + 1 are s sin v and s cos v of raw numbers 2p, 2p + 1,
 * u = x 2^-32 + 2^-33, v = 2pi (y 2^-32 + 2^-33), s = sqrt(-2 ln u) (float32 rounding of each). */
Test(rng, normal_is_curand_box_muller)
{
    for (uint64_t p = 0; p < 64; p++) {
        const uint32_t x = eopt_rand_bits(9, 2 * p), y = eopt_rand_bits(9, 2 * p + 1);
        const double u = ((double)x + 0.5) / 4294967296.0, v = 2 * M_PI * ((double)y + 0.5) / 4294967296.0;
        const double s = sqrt(-2 * log(u));
        const float z0 = eopt_rand_normal(9, 2 * p), z1 = eopt_rand_normal(9, 2 * p + 1);
        cr_expect(fabs(z0 - s * sin(v)) <= 1e-5 * (1 + fabs(s)), "pair %llu: %.9g vs %.9g", (unsigned long long)p,
                  z0, s * sin(v));
        cr_expect(fabs(z1 - s * cos(v)) <= 1e-5 * (1 + fabs(s)), "pair %llu: %.9g vs %.9g", (unsigned long long)p,
                  z1, s * cos(v));
        cr_expect_eq(z0, eopt_box_muller(x, y, 0));
        cr_expect_eq(z1, eopt_box_muller(x, y, 1));
    }
}

#if EOPT_CUDA
#include "tests/curand_draw.h"

/* On the GPU: curand()'s raw numbers and curand_uniform bit for bit, for several (seed,
 * subsequence, offset) starts and a sequential walk across blocks; curand_normal within its float
 * arithmetic (logf, __sincosf) of the shared Box-Muller, and the backend's normals bit for bit. */
Test(rng, gpu_curand_matches_cpu)
{
    eopt_backend *be = tu_backend(1);
    if (be->device != EOPT_DEV_CUDA) {
        eopt_backend_close(be);
        cr_skip_test("needs a GPU (run a CUDA build with EOPT_DEVICE=cuda)");
    }
    enum { N = 4099 };
    static const uint64_t starts[][3] = {{0, 0, 0}, {1234, 0, 3}, {~0ull, 5, 1ull << 40}, {42, 1ull << 33, 7}};
    uint32_t *got = malloc(N * sizeof *got);
    for (size_t s = 0; s < sizeof starts / sizeof *starts; s++) {
        const uint64_t seed = starts[s][0], sub = starts[s][1], off = starts[s][2];
        for (int what = 0; what < 3; what++) {
            cr_assert_eq(tu_curand_draw(what, seed, sub, off, N, got), 0, "curand kernel failed");
            for (uint64_t j = 0; j < N; j++) {
                const uint64_t q = off + j;
                uint32_t blk[4];
                eopt_philox(seed, sub, q / 4, blk);
                const uint32_t bits = blk[q % 4];
                if (what == 0)
                    cr_assert_eq(got[j], bits, "start %zu: curand number %llu: %08x vs %08x", s,
                                 (unsigned long long)j, got[j], bits);
                float g, c = what == 1 ? eopt_uniform_of(bits) : 0.0f;
                memcpy(&g, &got[j], 4);
                if (what == 1)
                    cr_assert_eq(g, c, "start %zu: curand_uniform %llu: %.9g vs %.9g", s, (unsigned long long)j, g, c);
                if (what == 2 && off % 2 == 0 && sub == 0) { /* pairs from an even start */
                    c = eopt_rand_normal(seed, q);
                    cr_assert(fabsf(g - c) <= 2e-6f * (1 + fabsf(c)), "start %zu: curand_normal %llu: %.9g vs %.9g",
                              s, (unsigned long long)j, g, c);
                }
            }
        }
    }
    free(got);
    const int n = 1 << 20;
    float *d = be->alloc(be, n * sizeof(float)), *h = malloc(n * sizeof(float));
    cr_assert(d && h);
    be->random(be, EOPT_RAND_NORMAL, 31337, 12345, n, d);
    be->download(be, h, d, n * sizeof(float));
    cr_assert_eq(eopt_backend_sync(be), EOPT_OK, "%s", eopt_last_error());
    int exact = 0;
    for (int j = 0; j < n; j++) {
        const float c = eopt_rand_normal(31337, 12345 + (uint64_t)j);
        exact += memcmp(&c, &h[j], 4) == 0;
        cr_assert(fabsf(h[j] - c) <= ldexpf(fabsf(c), -23), "backend normal %d: %.9g vs %.9g", j, h[j], c);
    }
    cr_log_info("backend normals identical to the CPU's: %d of %d (the rest within 1 ulp: double libm)", exact, n);
    cr_expect_geq(exact, n - 16, "only %d of %d backend normals identical to the CPU's", exact, n);
    be->free(be, d);
    free(h);
    eopt_backend_close(be);
}
#endif
