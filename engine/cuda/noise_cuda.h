/* Device fills of the Philox streams of engine/philox.h, bit for bit equal to the host fills of
 * engine/noise.h (same element order, same stream words). Plain C interface: no CUDA types, so C
 * code can call it; `stream` is a cudaStream_t (NULL for the legacy default stream).
 *
 * The launches are asynchronous and allocate nothing, so they may be captured into CUDA graphs.
 * Return 0, or a negative code: -(cudaError_t) of the failing call (reported on stderr with file
 * and line), or -1 (-cudaErrorInvalidValue) for n above the 2^34-element stream limit or a NULL
 * destination with n > 0. */
#ifndef WM_ENGINE_CUDA_NOISE_CUDA_H
#define WM_ENGINE_CUDA_NOISE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dev_dst[i] = N(0,1) element i of stream (seed, s0, s1, s2), i < n (device memory). */
int wmcuda_noise_fill(float *dev_dst, size_t n, uint64_t seed, uint32_t s0, uint32_t s1,
                      uint32_t s2, void *stream);

/* The same, with the stream word s1 (the block index) read by the kernel from device memory at
 * s1_dev: a graph captured once fills the noise of whichever block its first node staged. */
int wmcuda_noise_fill_at(float *dev_dst, size_t n, uint64_t seed, uint32_t s0,
                         const uint32_t *s1_dev, uint32_t s2, void *stream);

/* dev_dst[i] = offset + scale * u_i, u_i the uniform [-1, 1) element i (as eng_uniform_fill). */
int wmcuda_uniform_fill(float *dev_dst, size_t n, float scale, float offset, uint64_t seed,
                        uint32_t s0, uint32_t s1, uint32_t s2, void *stream);

#ifdef __cplusplus
}
#endif

#endif
