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
 *   synthetic conditioning: s0 = session id, s1 = 0xFFFFFFFE, s2 = what (see noise.h)
 *
 * Details fixed here (changing any of them changes every stream):
 *   - key words: k0 = low 32 bits of the seed, k1 = high 32 bits.
 *   - the first counter word is i / 4 truncated to 32 bits, so a stream holds 2^34 distinct
 *     elements; element i + 2^34 repeats element i.
 *   - normals: lanes (0, 1) form Box-Muller pair A, lanes (2, 3) pair B. For a pair (a, b):
 *     r = sqrt(-2 log(u01_open_closed(a))), (s, c) = sincos(2 pi u01_closed_open(b));
 *     the even lane gets r * c, the odd lane r * s. The 24-bit uniforms cap |z| at
 *     sqrt(48 ln 2) = 5.77.
 *   - uniforms in [-1, 1): ((a >> 8) - 2^23) * 2^-23 of lane i % 4.
 *
 * Why not libm: logf/sinf/cosf differ between glibc and CUDA's libdevice in the last bit, and nvcc
 * contracts a * b + c into FMA where the host compiler does not. Everything below is therefore
 * written as single IEEE operations through wm_add/wm_mul/wm_div/wm_sqrt, which map to plain C
 * operators on the host (the project builds with -ffp-contract=off; float must evaluate in float)
 * and to the never-contracted __fadd_rn/__fmul_rn/__fdiv_rn/__fsqrt_rn intrinsics on the device.
 * A host build with -ffp-contract=fast on an FMA-capable -march does change the bits; the golden
 * digest in tests/test_philox.c catches that.
 * Device code must not be built with fast math or -ftz=true (subnormals are reached only by inputs
 * outside the engine's own uniform grids, but then they must round the same way). */
#ifndef WM_ENGINE_PHILOX_H
#define WM_ENGINE_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define WM_HD __host__ __device__ __forceinline__
#else
#define WM_HD static inline
#endif

#if !defined(__CUDA_ARCH__)
#include <float.h>
#include <math.h>
#include <string.h>
/* 16 and 32 (ISO/IEC TS 18661-3, GCC in GNU modes on AVX512-FP16 hosts) also keep float in float */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != 16 &&                   \
    FLT_EVAL_METHOD != 32
#error "philox.h needs float arithmetic evaluated in float precision (FLT_EVAL_METHOD 0)"
#endif
#endif

/* ---- Philox4x32-10 --------------------------------------------------------------------------- */

#define WM_PHILOX_M0 0xD2511F53u
#define WM_PHILOX_M1 0xCD9E8D57u
#define WM_PHILOX_W0 0x9E3779B9u
#define WM_PHILOX_W1 0xBB67AE85u

WM_HD uint32_t wm_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
#if defined(__CUDA_ARCH__)
    *hi = __umulhi(a, b);
    return a * b;
#else
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
#endif
}

/* Random123's philox4x32 with R = 10: round 0 uses the key as given, each later round first adds
 * the Weyl increments to the key. */
WM_HD void wm_philox4x32_10(const uint32_t ctr[4], uint32_t k0, uint32_t k1, uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += WM_PHILOX_W0;
            k1 += WM_PHILOX_W1;
        }
        uint32_t hi0, hi1;
        uint32_t lo0 = wm_mulhilo32(WM_PHILOX_M0, c0, &hi0);
        uint32_t lo1 = wm_mulhilo32(WM_PHILOX_M1, c2, &hi1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* ---- IEEE-exact float operations ------------------------------------------------------------- */

WM_HD float wm_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
WM_HD float wm_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
WM_HD float wm_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
/* Single-rounding a * b + c. Correctly rounded on both sides, but on x86-64 hosts without -mfma it
 * is a libm call, so the hot paths below do not use it. */
WM_HD float wm_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}
WM_HD float wm_div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
WM_HD float wm_sqrt(float a) {
#if defined(__CUDA_ARCH__)
    return __fsqrt_rn(a);
#else
    return sqrtf(a);
#endif
}
WM_HD uint32_t wm_f2u(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
#endif
}
WM_HD float wm_u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
#endif
}

/* ---- uniforms -------------------------------------------------------------------------------- */

/* Integers below 2^24 convert to float exactly and the scale is a power of two, so these are exact
 * on any IEEE machine. */
WM_HD float wm_u01_open_closed(uint32_t x) { /* (0, 1], never 0: safe for log */
    return (float)((x >> 8) + 1u) * 0x1p-24f;
}
WM_HD float wm_u01_closed_open(uint32_t x) { /* [0, 1) */
    return (float)(x >> 8) * 0x1p-24f;
}
WM_HD float wm_uniform_pm1(uint32_t x) { /* [-1, 1), symmetric grid of step 2^-23 */
    return (float)((int32_t)(x >> 8) - 8388608) * 0x1p-23f;
}

/* ---- log and sin/cos ------------------------------------------------------------------------- */

/* Natural log for x in (0, 1] (any positive finite x works). x = 2^k * m with m in
 * [sqrt(1/2), sqrt(2)); with f = m - 1 (exact) and s = f / (2 + f),
 * log(m) = 2 atanh(s) = f - f^2/2 + s * (f^2/2 + R(s^2)), R = 2s^2/3 + 2s^4/5 + ... (the fdlibm
 * arrangement: the large term f is exact, the rounding errors sit in small corrections).
 * |s| <= 0.1716, so Taylor terms up to s^10 leave a truncation error below 2e-11. k * ln2 is split
 * into an exact k * ln2_hi (17-bit constant) and a small k * ln2_lo. Measured over all 2^24 inputs
 * k * 2^-24: at most 0.83 ulp of the result, 4.9e-7 absolute (|log x| reaches 16.6, whose ulp is
 * 1.9e-6), 3.9e-8 absolute on [1/2, 1]. */
WM_HD float wm_logf_exact(float x) {
    const float ln2_hi = 0x1.62e300p-1f;  /* 0.693138122558594, low 7 mantissa bits zero */
    const float ln2_lo = 0x1.2fefa4p-17f; /* ln2 - ln2_hi = 9.058e-06 */
    const float L2 = 0x1.555556p-1f;      /* 2/3 */
    const float L4 = 0x1.99999ap-2f;      /* 2/5 */
    const float L6 = 0x1.24924ap-2f;      /* 2/7 */
    const float L8 = 0x1.c71c72p-3f;      /* 2/9 */
    const float L10 = 0x1.745d18p-3f;     /* 2/11 */

    uint32_t ix = wm_f2u(x);
    int k = 0;
    if (ix < 0x00800000u) { /* subnormal: scale into the normal range (exact) */
        ix = wm_f2u(wm_mul(x, 0x1p24f));
        k = -24;
    }
    k += (int)(ix >> 23) - 127;
    uint32_t mb = (ix & 0x007fffffu) | 0x3f800000u; /* m in [1, 2) */
    if (mb > 0x3fb504f3u) {                         /* m > sqrt(2): halve it (exact) */
        mb -= 0x00800000u;
        k += 1;
    }
    float m = wm_u2f(mb);
    float f = wm_sub(m, 1.0f);
    float s = wm_div(f, wm_add(2.0f, f));
    float z = wm_mul(s, s);
    float R = L10;
    R = wm_add(L8, wm_mul(z, R));
    R = wm_add(L6, wm_mul(z, R));
    R = wm_add(L4, wm_mul(z, R));
    R = wm_add(L2, wm_mul(z, R));
    R = wm_mul(z, R);
    float hfsq = wm_mul(wm_mul(0.5f, f), f);
    float dk = (float)k;
    float t = wm_mul(s, wm_add(hfsq, R));
    t = wm_add(t, wm_mul(dk, ln2_lo));
    t = wm_sub(t, hfsq);
    t = wm_add(t, f);
    return wm_add(t, wm_mul(dk, ln2_hi));
}

/* sin and cos of 2 pi u for u in [0, 1). 4u = q + r with q an integer and r in [-1/2, 1/2] (both
 * steps exact), so 2 pi u = q pi/2 + r pi/2 and the quadrant q only permutes and negates. The
 * polynomials are the Taylor series of sin(pi/2 r) and cos(pi/2 r) in r itself, so pi/2 never
 * multiplies r in float; |r pi/2| <= pi/4, and the series to r^11 / r^12 truncate below 1e-11.
 * The leading pi/2 is split hi + lo. Measured vs double libm over all 2^24 inputs k * 2^-24 and
 * 1e6 random floats: at most 7.5e-8 absolute. */
WM_HD void wm_sincos_2pi(float u, float *sin_out, float *cos_out) {
    const float S1_hi = 0x1.921fb6p+0f;   /* pi/2 rounded */
    const float S1_lo = -0x1.777a5cp-25f; /* pi/2 - S1_hi */
    const float S3 = -0x1.4abbcep-1f;     /* -(pi/2)^3 / 3! */
    const float S5 = 0x1.466bc6p-4f;      /* (pi/2)^5 / 5! */
    const float S7 = -0x1.32d2ccp-8f;
    const float S9 = 0x1.507834p-13f;
    const float S11 = -0x1.e30750p-19f;
    const float C2 = -0x1.3bd3ccp+0f; /* -(pi/2)^2 / 2! */
    const float C4 = 0x1.03c1f0p-2f;  /* (pi/2)^4 / 4! */
    const float C6 = -0x1.55d3c8p-6f;
    const float C8 = 0x1.e1f506p-11f;
    const float C10 = -0x1.a6d1f2p-16f;
    const float C12 = 0x1.f9d38ap-22f;

    float t = wm_mul(u, 4.0f);     /* exact */
    int q = (int)t;                /* t in [0, 4): truncation is floor */
    float r = wm_sub(t, (float)q); /* exact: removes the integer part */
    if (r > 0.5f) {
        r = wm_sub(r, 1.0f); /* exact for r in (1/2, 1) */
        q += 1;
    }
    float z = wm_mul(r, r);

    float ps = S11;
    ps = wm_add(S9, wm_mul(z, ps));
    ps = wm_add(S7, wm_mul(z, ps));
    ps = wm_add(S5, wm_mul(z, ps));
    ps = wm_add(S3, wm_mul(z, ps));
    float sr = wm_add(wm_mul(S1_lo, r), wm_mul(wm_mul(r, z), ps));
    sr = wm_add(wm_mul(S1_hi, r), sr);

    float pc = C12;
    pc = wm_add(C10, wm_mul(z, pc));
    pc = wm_add(C8, wm_mul(z, pc));
    pc = wm_add(C6, wm_mul(z, pc));
    pc = wm_add(C4, wm_mul(z, pc));
    pc = wm_add(C2, wm_mul(z, pc));
    float cr = wm_add(1.0f, wm_mul(z, pc));

    switch (q & 3) {
    case 0:
        *sin_out = sr;
        *cos_out = cr;
        break;
    case 1:
        *sin_out = cr;
        *cos_out = -sr;
        break;
    case 2:
        *sin_out = -sr;
        *cos_out = -cr;
        break;
    default:
        *sin_out = -cr;
        *cos_out = sr;
        break;
    }
}

/* ---- streams --------------------------------------------------------------------------------- */

/* Box-Muller on one lane pair: z_even = r cos, z_odd = r sin. The + 0 turns the -0 that
 * -2 * log(1) gives into +0, so an element is never -0 merely because u1 was 1. */
WM_HD void wm_box_muller(uint32_t a, uint32_t b, float *z_even, float *z_odd) {
    float l = wm_logf_exact(wm_u01_open_closed(a));
    float rad = wm_sqrt(wm_add(wm_mul(-2.0f, l), 0.0f));
    float sn, cs;
    wm_sincos_2pi(wm_u01_closed_open(b), &sn, &cs);
    *z_even = wm_mul(rad, cs);
    *z_odd = wm_mul(rad, sn);
}

/* The four Philox words of counter `block` (elements 4 block .. 4 block + 3) of a stream. */
WM_HD void wm_stream_words(uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2, uint32_t block,
                           uint32_t out[4]) {
    const uint32_t ctr[4] = {block, s0, s1, s2};
    wm_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32), out);
}

/* Elements 4*block .. 4*block+3 of a normal stream: one Philox call for four normals. */
WM_HD void wm_normal4(uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2, uint32_t block,
                      float z[4]) {
    uint32_t w[4];
    wm_stream_words(seed, s0, s1, s2, block, w);
    wm_box_muller(w[0], w[1], &z[0], &z[1]);
    wm_box_muller(w[2], w[3], &z[2], &z[3]);
}

/* Element i of normal stream (seed, s0, s1, s2); i below 2^34 (see the top of this file). */
WM_HD float wm_normal_at(uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2, uint64_t i) {
    uint32_t w[4];
    wm_stream_words(seed, s0, s1, s2, (uint32_t)(i >> 2), w);
    unsigned lane = (unsigned)(i & 3u);
    unsigned pair = lane & 2u;
    float ze, zo;
    wm_box_muller(w[pair], w[pair + 1u], &ze, &zo);
    return (lane & 1u) ? zo : ze;
}

/* Element i of uniform [-1, 1) stream (seed, s0, s1, s2); i below 2^34. */
WM_HD float wm_uniform_at(uint64_t seed, uint32_t s0, uint32_t s1, uint32_t s2, uint64_t i) {
    uint32_t w[4];
    wm_stream_words(seed, s0, s1, s2, (uint32_t)(i >> 2), w);
    return wm_uniform_pm1(w[i & 3u]);
}

/* ---- names ----------------------------------------------------------------------------------- */

/* FNV-1a, 32 bit, over the bytes of a NUL-terminated string: turns a tensor name into the s0 word
 * of its synthetic-weights stream. Host only. */
static inline uint32_t wm_fnv1a32(const char *str) {
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

#endif
