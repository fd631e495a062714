/* cuRAND's device API drawing on the GPU, for the parity test in tests/test_rng.c. */
#include <cuda_runtime.h>
#include <curand_kernel.h>
#include <string.h>

extern "C" {
#include "tests/curand_draw.h"
}

static __global__ void draw_kernel(int what, uint64_t seed, uint64_t subsequence, uint64_t offset, int n, uint32_t *out)
{
    curandStatePhilox4_32_10_t s;
    curand_init(seed, subsequence, offset, &s);
    for (int j = 0; j < n; j++) {
        float f = 0.0f;
        if (what == 0)
            out[j] = curand(&s);
        else {
            f = what == 1 ? curand_uniform(&s) : curand_normal(&s);
            memcpy(&out[j], &f, 4);
        }
    }
}

extern "C" int tu_curand_draw(int what, uint64_t seed, uint64_t subsequence, uint64_t offset, int n, uint32_t *host)
{
    uint32_t *d = NULL;
    if (cudaMalloc(&d, (size_t)n * sizeof *d) != cudaSuccess)
        return -1;
    draw_kernel<<<1, 1>>>(what, seed, subsequence, offset, n, d);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess)
        err = cudaMemcpy(host, d, (size_t)n * sizeof *d, cudaMemcpyDeviceToHost);
    cudaFree(d);
    return err == cudaSuccess ? 0 : -1;
}
