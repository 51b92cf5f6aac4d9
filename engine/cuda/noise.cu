/* Device side of the Philox noise streams: the same engine/philox.h functions as the host fills in
 * engine/noise.c, one thread per counter (four elements), grid-stride so any n fits a fixed grid.
 * Built with --fmad=false and without fast math (engine/cuda/CMakeLists.txt); philox.h uses the
 * explicitly rounded intrinsics anyway, the flag guards anything added here later. */
#include <stdint.h>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/noise_cuda.h"
#include "engine/philox.h"

#define NOISE_THREADS    256
#define NOISE_MAX_BLOCKS 8192 /* 2M threads: every H100/H200 SM full, beyond that grid-stride */

/* Floor: 4 bytes stored per element, against ~20 integer multiplies, two divisions, one square
 * root and ~60 float operations per four elements; not yet measured (a block's 168960 elements
 * are likely launch-bound). */
static __global__ void noise_normal_kernel(float *dst, size_t n, uint64_t seed, uint32_t s0,
                                           uint32_t s1, const uint32_t *s1_dev, uint32_t s2,
                                           int aligned16) {
    if (s1_dev) s1 = *s1_dev; /* a graph's per-block counter, written by its first node */
    const size_t groups = (n + 3) / 4;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        float z[4];
        wm_normal4(seed, s0, s1, s2, (uint32_t)g, z);
        size_t base = 4 * g;
        if (aligned16 && base + 4 <= n) {
            reinterpret_cast<float4 *>(dst)[g] = make_float4(z[0], z[1], z[2], z[3]);
        } else {
            for (size_t l = 0; l < 4 && base + l < n; l++) dst[base + l] = z[l];
        }
    }
}

static __global__ void noise_uniform_kernel(float *dst, size_t n, float scale, float offset,
                                            uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2) {
    const size_t groups = (n + 3) / 4;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
        uint32_t w[4];
        wm_stream_words(seed, s0, s1, s2, (uint32_t)g, w);
        size_t base = 4 * g;
        for (size_t l = 0; l < 4 && base + l < n; l++)
            dst[base + l] = wm_add(offset, wm_mul(scale, wm_uniform_pm1(w[l])));
    }
}

static int launch_dims(size_t n, float *dst, unsigned *blocks) {
    if (n > ((size_t)1 << 34) || (dst == NULL && n > 0)) {
        fprintf(stderr, "wmcuda noise: invalid fill of %zu elements at %p (limit 2^34)\n", n,
                (void *)dst);
        return WMCUDA_EINVAL;
    }
    size_t groups = (n + 3) / 4;
    size_t b = (groups + NOISE_THREADS - 1) / NOISE_THREADS;
    *blocks = (unsigned)(b < NOISE_MAX_BLOCKS ? b : NOISE_MAX_BLOCKS);
    return 0;
}

static int normal_fill(float *dev_dst, size_t n, uint64_t seed, uint32_t s0, uint32_t s1,
                       const uint32_t *s1_dev, uint32_t s2, void *stream) {
    unsigned blocks;
    int rc = launch_dims(n, dev_dst, &blocks);
    if (rc != 0 || n == 0) return rc;
    int aligned16 = ((uintptr_t)dev_dst % 16) == 0;
    noise_normal_kernel<<<blocks, NOISE_THREADS, 0, (cudaStream_t)stream>>>(
        dev_dst, n, seed, s0, s1, s1_dev, s2, aligned16);
    WM_CUDA_CHECK_LAUNCH(noise_normal_kernel);
    return 0;
}

extern "C" int wmcuda_noise_fill(float *dev_dst, size_t n, uint64_t seed, uint32_t s0, uint32_t s1,
                                 uint32_t s2, void *stream) {
    return normal_fill(dev_dst, n, seed, s0, s1, NULL, s2, stream);
}

extern "C" int wmcuda_noise_fill_at(float *dev_dst, size_t n, uint64_t seed, uint32_t s0,
                                    const uint32_t *s1_dev, uint32_t s2, void *stream) {
    if (!s1_dev) {
        fprintf(stderr, "wmcuda noise: wmcuda_noise_fill_at needs a device counter\n");
        return WMCUDA_EINVAL;
    }
    return normal_fill(dev_dst, n, seed, s0, 0, s1_dev, s2, stream);
}

extern "C" int wmcuda_uniform_fill(float *dev_dst, size_t n, float scale, float offset,
                                   uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2,
                                   void *stream) {
    unsigned blocks;
    int rc = launch_dims(n, dev_dst, &blocks);
    if (rc != 0 || n == 0) return rc;
    noise_uniform_kernel<<<blocks, NOISE_THREADS, 0, (cudaStream_t)stream>>>(
        dev_dst, n, scale, offset, seed, s0, s1, s2);
    WM_CUDA_CHECK_LAUNCH(noise_uniform_kernel);
    return 0;
}
