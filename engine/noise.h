/* Gaussian and uniform noise on the host from the counter-based streams of engine/philox.h.
 *
 * Element i of a stream depends only on (seed, s0, s1, s2, i), so a fill gives the same bits
 * whatever the thread count, and the CUDA backend (engine/cuda/noise_cuda.h) gives the same bits
 * as these functions. Streams hold 2^34 elements; n must not exceed that (element i + 2^34
 * would repeat element i).
 *
 * Stream words (the full design is at the top of engine/philox.h):
 *   sampler noise:           s0 = session id, s1 = block index, s2 = step (ENG_NOISE_INITIAL for
 *                            the block's slice of the initial noise, k for the re-noise before
 *                            step k + 1)
 *   synthetic weights:       s0 = wm_fnv1a32(tensor name), s1 = s2 = ENG_STREAM_WEIGHTS
 *   synthetic conditioning:  s0 = session id, s1 = ENG_STREAM_COND, s2 = an eng_cond_what */
#ifndef WM_ENGINE_NOISE_H
#define WM_ENGINE_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/philox.h"

#define ENG_STREAM_WEIGHTS 0xFFFFFFFFu /* s1 and s2 of every synthetic-weights stream */
#define ENG_STREAM_COND    0xFFFFFFFEu /* s1 of the synthetic-conditioning streams */
#define ENG_NOISE_INITIAL  0u          /* s2 of a block's slice of the initial noise */

/* s2 of a synthetic-conditioning stream: which session input it stands in for. Block indices
 * (s1 of sampler noise) stay below ENG_STREAM_COND, so the families never meet. */
typedef enum {
    ENG_COND_WHAT_CONCAT = 0, /* cond_concat [20, N, 44, 80] */
    ENG_COND_WHAT_VISUAL = 1, /* visual_context [257, 1280] */
} eng_cond_what;

/* dst[i] = N(0,1) element i of stream (seed, s0, s1, s2), i < n. OpenMP-parallel. */
void eng_noise_fill(float *dst, size_t n, uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2);

/* dst[i] = offset + scale * u_i with u_i the uniform [-1, 1) element i of the stream. */
void eng_uniform_fill(float *dst, size_t n, float scale, float offset, uint64_t seed, uint32_t s0,
                      uint32_t s1, uint32_t s2);

#endif
