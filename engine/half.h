/* IEEE half (F16) bits to float32, exactly (subnormals, infinities and NaN payloads kept). Header
 * only, so the weight-file readers that the fuzz targets compile alone can share it. */
#ifndef WM_ENGINE_HALF_H
#define WM_ENGINE_HALF_H

#include <stdint.h>
#include <string.h>

static inline float wm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf, or NaN with its payload kept */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else {
        /* Zero or subnormal: man * 2^-24, exact in float (man < 2^10, result a normal float). */
        float v = (float)man * 0x1p-24f;
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#endif
