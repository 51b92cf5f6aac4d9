/* bf16 as the CUDA backend's C interface sees it: raw bits in a uint16_t (C has no __nv_bfloat16),
 * plus host conversions that round exactly as the device's __float2bfloat16_rn does (round to
 * nearest even), so host-prepared tensors and device-written ones agree bit for bit. */
#ifndef WM_ENGINE_CUDA_BF16_H
#define WM_ENGINE_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t wmcuda_bf16;

/* Round to nearest even; NaN stays NaN (quieted), infinities and signed zeros are kept. */
static inline wmcuda_bf16 wm_bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)
        return (wmcuda_bf16)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (wmcuda_bf16)(u >> 16);
}

static inline float wm_bf16_to_float(wmcuda_bf16 b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float nearest to f that bf16 can hold. */
static inline float wm_bf16_round(float f) { return wm_bf16_to_float(wm_bf16_from_float(f)); }

#endif
