/* Host fills of the Philox streams: one Philox call per four elements, blocks of four spread over
 * OpenMP threads with a static schedule. Output does not depend on the schedule because every
 * element is a pure function of its index. */
#include "engine/noise.h"

/* Below this many elements the thread start-up costs more than the work. */
#define NOISE_PAR_MIN 16384

void eng_noise_fill(float *dst, size_t n, uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2) {
    const int64_t blocks = (int64_t)(n / 4);
#pragma omp parallel for schedule(static) if (n >= NOISE_PAR_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        float z[4];
        wm_normal4(seed, s0, s1, s2, (uint32_t)b, z);
        float *d = dst + 4 * (size_t)b;
        d[0] = z[0];
        d[1] = z[1];
        d[2] = z[2];
        d[3] = z[3];
    }
    size_t done = 4 * (size_t)blocks;
    if (done < n) {
        float z[4];
        wm_normal4(seed, s0, s1, s2, (uint32_t)blocks, z);
        for (size_t i = done; i < n; i++) dst[i] = z[i - done];
    }
}

void eng_uniform_fill(float *dst, size_t n, float scale, float offset, uint64_t seed, uint32_t s0,
                      uint32_t s1, uint32_t s2) {
    const int64_t blocks = (int64_t)((n + 3) / 4);
#pragma omp parallel for schedule(static) if (n >= NOISE_PAR_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t w[4];
        wm_stream_words(seed, s0, s1, s2, (uint32_t)b, w);
        size_t base = 4 * (size_t)b;
        size_t cnt = n - base < 4 ? n - base : 4;
        /* offset + scale * u as two roundings, as the CUDA kernel does it */
        for (size_t l = 0; l < cnt; l++)
            dst[base + l] = wm_add(offset, wm_mul(scale, wm_uniform_pm1(w[l])));
    }
}
