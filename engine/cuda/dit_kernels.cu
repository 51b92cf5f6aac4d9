/* The DiT's non-GEMM kernels (see dit_kernels.h). All are memory-bound: each comment states the
 * floor at the full-size steady shape (L = 2640 tokens, D = 1536, FF = 8960, 12 heads x 128,
 * Lk = 5280 keys) as bytes that must cross HBM once, and its time at the H100 SXM datasheet's
 * 3.35 TB/s. Measured fractions go to BENCHMARKS.md (tests/gpu/test_dit_kernels_gpu times them).
 *
 * Shape of the row kernels: one block per row, each thread keeps V 8-element pieces of the row in
 * registers (16-byte loads of bf16, 2 x 16-byte of fp32), so the row is read from memory once and
 * the statistics are exact two-pass (mean, then squared deviations) without re-reading. */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/dit_kernels.h"

typedef __nv_bfloat16 bf16;

#define ROW_THREADS_MAX 256
#define EW_THREADS      256
#define EW_MAX_BLOCKS   4096 /* 1M threads in flight: every H100/H200 SM full; grid-stride beyond */

/* ---- host-side argument checks ------------------------------------------------------------------ */

static int bad_args(const char *fn, const char *what) {
    fprintf(stderr, "wmcuda %s: invalid arguments: %s\n", fn, what);
    return WMCUDA_EINVAL;
}

static bool al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static unsigned ew_blocks(size_t work_items) {
    size_t b = (work_items + EW_THREADS - 1) / EW_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b < EW_MAX_BLOCKS ? b : EW_MAX_BLOCKS);
}

/* Pieces per thread (1, 2, 4 or 8) and threads (a multiple of 32, <= 256) for a row of npack
 * 8-element pieces; 0 if the row is too long (more than 8 * 256 pieces). */
static int row_plan(int npack, int max_v, int *threads) {
    int v = 1;
    while (v < max_v && (npack + v - 1) / v > ROW_THREADS_MAX) v *= 2;
    const int t = (npack + v - 1) / v;
    if (t > ROW_THREADS_MAX) return 0;
    *threads = (t + 31) / 32 * 32;
    return v;
}

/* ---- device helpers ----------------------------------------------------------------------------- */

static __device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf16_hi(uint32_t w) {
    return __uint_as_float(w & 0xffff0000u);
}
static __device__ __forceinline__ uint32_t pack_bf16x2(float a, float b) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(a)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(b)) << 16);
}
static __device__ __forceinline__ float round_bf16(float a) {
    return __bfloat162float(__float2bfloat16_rn(a));
}

/* 8 consecutive elements, 16-byte aligned. */
static __device__ __forceinline__ void load8(const float *p, float v[8]) {
    const float4 a = reinterpret_cast<const float4 *>(p)[0];
    const float4 b = reinterpret_cast<const float4 *>(p)[1];
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
static __device__ __forceinline__ void load8(const bf16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    v[0] = bf16_lo(u.x), v[1] = bf16_hi(u.x), v[2] = bf16_lo(u.y), v[3] = bf16_hi(u.y);
    v[4] = bf16_lo(u.z), v[5] = bf16_hi(u.z), v[6] = bf16_lo(u.w), v[7] = bf16_hi(u.w);
}
static __device__ __forceinline__ void store8(float *p, const float v[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
static __device__ __forceinline__ void store8(bf16 *p, const float v[8]) {
    uint4 u;
    u.x = pack_bf16x2(v[0], v[1]);
    u.y = pack_bf16x2(v[2], v[3]);
    u.z = pack_bf16x2(v[4], v[5]);
    u.w = pack_bf16x2(v[6], v[7]);
    *reinterpret_cast<uint4 *>(p) = u;
}
static __device__ __forceinline__ float load1(const float *p) { return *p; }
static __device__ __forceinline__ float load1(const bf16 *p) { return __bfloat162float(*p); }
static __device__ __forceinline__ void store1(float *p, float v) { *p = v; }
static __device__ __forceinline__ void store1(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum (or max) over the block; every thread of the block must call it (blockDim a multiple of
 * 32); every thread gets the result. sh: 33 floats of shared memory, reusable right away. */
template <bool MAX>
static __device__ __forceinline__ float block_reduce(float v, float *sh) {
    v = MAX ? warp_max(v) : warp_sum(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* the previous call's readers of sh[32] are done */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : (MAX ? -INFINITY : 0.0f);
        t = MAX ? warp_max(t) : warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    return sh[32];
}

/* ---- LayerNorm (plain, affine, modulated) ------------------------------------------------------------ */

enum { LN_PLAIN = 0, LN_AFFINE = 1, LN_MODULATE = 2 };

/* A pending residual update fused into the LayerNorm that reads the row next (RES kernels):
 * x[row] += y[row] (* gate[row / rows_per_frame]) written back before the statistics. */
struct res_args {
    float *x;
    const bf16 *y, *gate;
    size_t gate_stride;
    int rows_per_frame;
};

/* Floor (L x D = 2640 x 1536, fp32 in, bf16 out): 4 + 2 bytes per element = 24.3 MB -> 7.3 us.
 * bf16 in (mouse MLP norm, 2640 x 1024): 2 + 2 bytes = 10.8 MB -> 3.2 us. The modulation rows
 * (F x 2 x D bf16) are 18 KB and stay in L2. ~10 FLOPs per element: never compute-bound.
 * For LN_MODULATE, a = scale and b = shift (frame rows); for LN_AFFINE, a = gamma, b = beta. x
 * and y may alias (bf16 in): the row is in registers before the first barrier. */
template <int V, typename Tin, int MODE, bool RES>
static __global__ void __launch_bounds__(ROW_THREADS_MAX)
    layernorm_kernel(const Tin *x, bf16 *y, int dim, float eps, const bf16 *a, const bf16 *b,
                     int rows_per_frame, size_t frame_stride, res_args ra) {
    __shared__ float sh[33];
    const int row = blockIdx.x;
    const int npack = dim >> 3;
    const Tin *xr = x + (size_t)row * (size_t)dim;
    float v[V][8];
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
#pragma unroll
        for (int e = 0; e < 8; e++) v[i][e] = 0.0f;
        if (pk < npack) {
            load8(xr + (size_t)pk * 8, v[i]);
            if (RES) { /* the residual update, as residual_gate_kernel computes it */
                const size_t at = (size_t)row * (size_t)dim + (size_t)pk * 8;
                float yv[8], gv[8];
                load8(ra.y + at, yv);
                if (ra.gate) {
                    load8(ra.gate + (size_t)(row / ra.rows_per_frame) * ra.gate_stride +
                              (size_t)pk * 8,
                          gv);
#pragma unroll
                    for (int e = 0; e < 8; e++) v[i][e] += yv[e] * gv[e];
                } else {
#pragma unroll
                    for (int e = 0; e < 8; e++) v[i][e] += yv[e];
                }
                store8(ra.x + at, v[i]);
            }
#pragma unroll
            for (int e = 0; e < 8; e++) sum += v[i][e];
        }
    }
    /* short rows (V <= 2, every DiT width): the scale/shift (gamma/beta) pieces are loaded before
     * the reductions, so their latency hides behind them */
    constexpr bool PRE = V <= 2;
    const bf16 *ar = a, *br = b;
    if (MODE == LN_MODULATE) {
        const size_t off = (size_t)(row / rows_per_frame) * frame_stride;
        ar += off;
        br += off;
    }
    float ta[PRE ? V : 1][8], tb[PRE ? V : 1][8];
    if (PRE) {
#pragma unroll
        for (int i = 0; i < (PRE ? V : 1); i++) {
            const int pk = threadIdx.x + i * blockDim.x;
#pragma unroll
            for (int e = 0; e < 8; e++) ta[i][e] = 0.0f, tb[i][e] = 0.0f;
            if (pk >= npack || MODE == LN_PLAIN) continue;
            if (ar) load8(ar + (size_t)pk * 8, ta[i]);
            if (br) load8(br + (size_t)pk * 8, tb[i]);
        }
    }
    const float mean = block_reduce<false>(sum, sh) / (float)dim;
    float sq = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
        if (pk < npack) {
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float d = v[i][e] - mean;
                sq += d * d;
            }
        }
    }
    const float var = block_reduce<false>(sq, sh) / (float)dim;
    const float inv = 1.0f / sqrtf(var + eps);
    bf16 *yr = y + (size_t)row * (size_t)dim;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
        if (pk >= npack) continue;
        float o[8], t[8];
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = (v[i][e] - mean) * inv;
        if (MODE == LN_MODULATE) {
            if (PRE) {
#pragma unroll
                for (int e = 0; e < 8; e++) t[e] = ta[PRE ? i : 0][e];
            } else {
                load8(ar + (size_t)pk * 8, t); /* scale */
            }
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] *= 1.0f + t[e];
            if (PRE) {
#pragma unroll
                for (int e = 0; e < 8; e++) t[e] = tb[PRE ? i : 0][e];
            } else {
                load8(br + (size_t)pk * 8, t); /* shift */
            }
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] += t[e];
        } else if (MODE == LN_AFFINE) {
            if (ar) {
                if (PRE) {
#pragma unroll
                    for (int e = 0; e < 8; e++) t[e] = ta[PRE ? i : 0][e];
                } else {
                    load8(ar + (size_t)pk * 8, t);
                }
#pragma unroll
                for (int e = 0; e < 8; e++) o[e] *= t[e];
            }
            if (br) {
                if (PRE) {
#pragma unroll
                    for (int e = 0; e < 8; e++) t[e] = tb[PRE ? i : 0][e];
                } else {
                    load8(br + (size_t)pk * 8, t);
                }
#pragma unroll
                for (int e = 0; e < 8; e++) o[e] += t[e];
            }
        }
        store8(yr + (size_t)pk * 8, o);
    }
}

template <typename Tin, int MODE, bool RES = false>
static int launch_layernorm(const char *fn, const Tin *x, bf16 *y, int rows, int dim, float eps,
                            const bf16 *a, const bf16 *b, int rows_per_frame, size_t frame_stride,
                            cudaStream_t stream, res_args ra = res_args()) {
    if (rows < 0 || dim <= 0 || dim % 8 != 0) return bad_args(fn, "dim must be a positive multiple of 8");
    if (!x || !y || !al16(x) || !al16(y)) return bad_args(fn, "x and y must be 16-byte aligned device pointers");
    if ((a && !al16(a)) || (b && !al16(b))) return bad_args(fn, "parameter rows must be 16-byte aligned");
    if (MODE == LN_MODULATE && (!a || !b || rows_per_frame <= 0 || frame_stride % 8 != 0))
        return bad_args(fn, "shift/scale, rows_per_frame > 0 and frame_stride % 8 == 0 required");
    if (rows == 0) return 0;
    int threads = 0;
    const int v = row_plan(dim / 8, 8, &threads);
    if (v == 0) return bad_args(fn, "dim above 16384");
    switch (v) {
    case 1:
        layernorm_kernel<1, Tin, MODE, RES><<<rows, threads, 0, stream>>>(
            x, y, dim, eps, a, b, rows_per_frame, frame_stride, ra);
        break;
    case 2:
        layernorm_kernel<2, Tin, MODE, RES><<<rows, threads, 0, stream>>>(
            x, y, dim, eps, a, b, rows_per_frame, frame_stride, ra);
        break;
    case 4:
        layernorm_kernel<4, Tin, MODE, RES><<<rows, threads, 0, stream>>>(
            x, y, dim, eps, a, b, rows_per_frame, frame_stride, ra);
        break;
    default:
        layernorm_kernel<8, Tin, MODE, RES><<<rows, threads, 0, stream>>>(
            x, y, dim, eps, a, b, rows_per_frame, frame_stride, ra);
        break;
    }
    WM_CUDA_CHECK_LAUNCH(layernorm_kernel);
    return 0;
}

extern "C" int wmcuda_ln_modulate(const float *x, wmcuda_bf16 *h, int rows, int dim,
                                  int rows_per_frame, float eps, const wmcuda_bf16 *shift,
                                  const wmcuda_bf16 *scale, size_t frame_stride, void *stream) {
    return launch_layernorm<float, LN_MODULATE>(
        "ln_modulate", x, (bf16 *)h, rows, dim, eps, (const bf16 *)scale, (const bf16 *)shift,
        rows_per_frame, frame_stride, (cudaStream_t)stream);
}

extern "C" int wmcuda_layernorm_f32in(const float *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                                      const wmcuda_bf16 *gamma, const wmcuda_bf16 *beta,
                                      void *stream) {
    return launch_layernorm<float, LN_AFFINE>("layernorm_f32in", x, (bf16 *)y, rows, dim, eps,
                                              (const bf16 *)gamma, (const bf16 *)beta, 1, 0,
                                              (cudaStream_t)stream);
}

/* The residual update checks of wmcuda_residual_gate / _add, for the fused versions. */
static int res_check(const char *fn, float *x, const wmcuda_bf16 *y, const wmcuda_bf16 *gate,
                     size_t gate_stride, int rows_per_frame, res_args *ra) {
    if (!x || !y || !al16(y) ||
        (gate && (!al16(gate) || gate_stride % 8 != 0 || rows_per_frame <= 0)))
        return bad_args(fn, "16-byte aligned y, gate: gate_stride % 8 == 0, rows_per_frame > 0");
    ra->x = x, ra->y = (const bf16 *)y, ra->gate = (const bf16 *)gate;
    ra->gate_stride = gate_stride, ra->rows_per_frame = gate ? rows_per_frame : 1;
    return 0;
}

extern "C" int wmcuda_residual_ln_modulate(float *x, const wmcuda_bf16 *y, const wmcuda_bf16 *gate,
                                           size_t gate_stride, wmcuda_bf16 *h, int rows, int dim,
                                           int rows_per_frame, float eps, const wmcuda_bf16 *shift,
                                           const wmcuda_bf16 *scale, size_t frame_stride,
                                           void *stream) {
    res_args ra;
    const int rc = res_check("residual_ln_modulate", x, y, gate, gate_stride, rows_per_frame, &ra);
    if (rc) return rc;
    return launch_layernorm<float, LN_MODULATE, true>(
        "residual_ln_modulate", x, (bf16 *)h, rows, dim, eps, (const bf16 *)scale,
        (const bf16 *)shift, rows_per_frame, frame_stride, (cudaStream_t)stream, ra);
}

extern "C" int wmcuda_residual_layernorm(float *x, const wmcuda_bf16 *y, const wmcuda_bf16 *gate,
                                         size_t gate_stride, int rows_per_frame, wmcuda_bf16 *h,
                                         int rows, int dim, float eps, const wmcuda_bf16 *gamma,
                                         const wmcuda_bf16 *beta, void *stream) {
    res_args ra;
    const int rc = res_check("residual_layernorm", x, y, gate, gate_stride, rows_per_frame, &ra);
    if (rc) return rc;
    return launch_layernorm<float, LN_AFFINE, true>("residual_layernorm", x, (bf16 *)h, rows, dim,
                                                    eps, (const bf16 *)gamma, (const bf16 *)beta,
                                                    1, 0, (cudaStream_t)stream, ra);
}

extern "C" int wmcuda_layernorm_bf16in(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim,
                                       float eps, const wmcuda_bf16 *gamma,
                                       const wmcuda_bf16 *beta, void *stream) {
    return launch_layernorm<bf16, LN_AFFINE>("layernorm_bf16in", (const bf16 *)x, (bf16 *)y, rows,
                                             dim, eps, (const bf16 *)gamma, (const bf16 *)beta, 1,
                                             0, (cudaStream_t)stream);
}

/* ---- RoPE tables --------------------------------------------------------------------------------- */

static int upload_table(float **dst, const float *src, size_t floats, char *err, size_t errlen) {
    WM_CUDA_CHECK_MSG(cudaMalloc((void **)dst, floats * sizeof(float)), err, errlen);
    WM_CUDA_CHECK_MSG(cudaMemcpy(*dst, src, floats * sizeof(float), cudaMemcpyHostToDevice), err,
                      errlen);
    return 0;
}

extern "C" int wmcuda_rope3d_create(wmcuda_rope3d *r, int dh, int pmax, int grid_h, int grid_w,
                                    char *err, size_t errlen) {
    if (!r) return bad_args("rope3d_create", "NULL table");
    memset(r, 0, sizeof *r);
    if (dh <= 0 || dh % 8 != 0 || pmax <= 0 || grid_h <= 0 || grid_w <= 0) {
        if (err && errlen) snprintf(err, errlen, "rope3d: bad dims dh %d pmax %d grid %dx%d", dh, pmax, grid_h, grid_w);
        return WMCUDA_EINVAL;
    }
    /* rope3d_split / rope3d_freq of engine/cpu/rope.c, in float64 */
    const int hp = dh / 6, wp = dh / 6, tp = dh / 2 - 2 * (dh / 6);
    const int S = grid_h * grid_w;
    const size_t nt = (size_t)pmax * (size_t)tp * 2, nhw = (size_t)S * (size_t)(hp + wp) * 2;
    float *t = (float *)malloc(nt * sizeof(float)), *hw = (float *)malloc(nhw * sizeof(float));
    if (!t || !hw) {
        free(t), free(hw);
        if (err && errlen) snprintf(err, errlen, "rope3d: out of host memory");
        return -(int)cudaErrorMemoryAllocation;
    }
    for (int pos = 0; pos < pmax; pos++)
        for (int j = 0; j < tp; j++) {
            const double ang = (double)pos * (1.0 / pow(10000.0, (double)(2 * j) / (double)(2 * tp)));
            t[((size_t)pos * tp + j) * 2 + 0] = (float)cos(ang);
            t[((size_t)pos * tp + j) * 2 + 1] = (float)sin(ang);
        }
    for (int sg = 0; sg < S; sg++) {
        const double ph = (double)(sg / grid_w), pw = (double)(sg % grid_w);
        float *row = hw + (size_t)sg * (size_t)(hp + wp) * 2;
        for (int j = 0; j < hp; j++) {
            const double ang = ph * (1.0 / pow(10000.0, (double)(2 * j) / (double)(2 * hp)));
            row[2 * j] = (float)cos(ang), row[2 * j + 1] = (float)sin(ang);
        }
        for (int j = 0; j < wp; j++) {
            const double ang = pw * (1.0 / pow(10000.0, (double)(2 * j) / (double)(2 * wp)));
            row[2 * (hp + j)] = (float)cos(ang), row[2 * (hp + j) + 1] = (float)sin(ang);
        }
    }
    int rc = upload_table(&r->t_tab, t, nt, err, errlen);
    if (rc == 0) rc = upload_table(&r->hw_tab, hw, nhw, err, errlen);
    free(t), free(hw);
    if (rc != 0) {
        wmcuda_rope3d_destroy(r);
        return rc;
    }
    r->dh = dh, r->t_pairs = tp, r->h_pairs = hp, r->w_pairs = wp, r->pmax = pmax;
    r->grid_h = grid_h, r->grid_w = grid_w;
    return 0;
}

extern "C" void wmcuda_rope3d_destroy(wmcuda_rope3d *r) {
    if (!r) return;
    if (r->t_tab) cudaFree(r->t_tab);
    if (r->hw_tab) cudaFree(r->hw_tab);
    memset(r, 0, sizeof *r);
}

extern "C" int wmcuda_rope_action_create(wmcuda_rope_action *r, int rot_dims, float theta,
                                         int pmax, char *err, size_t errlen) {
    if (!r) return bad_args("rope_action_create", "NULL table");
    memset(r, 0, sizeof *r);
    if (rot_dims <= 0 || rot_dims % 2 != 0 || rot_dims > 256 || pmax <= 0 || !(theta > 0.0f)) {
        if (err && errlen) snprintf(err, errlen, "rope_action: bad rot_dims %d / pmax %d / theta %g", rot_dims, pmax, (double)theta);
        return WMCUDA_EINVAL;
    }
    const int pairs = rot_dims / 2;
    const size_t n = (size_t)pmax * (size_t)pairs * 2;
    float *t = (float *)malloc(n * sizeof(float));
    if (!t) {
        if (err && errlen) snprintf(err, errlen, "rope_action: out of host memory");
        return -(int)cudaErrorMemoryAllocation;
    }
    for (int pos = 0; pos < pmax; pos++)
        for (int j = 0; j < pairs; j++) {
            /* rope_action_apply of engine/cpu/rope.c: float32 frequency, angle, cos and sin */
            const float freq = 1.0f / powf(theta, (float)(2 * j) / (float)rot_dims);
            const float angle = (float)pos * freq;
            t[((size_t)pos * pairs + j) * 2 + 0] = cosf(angle);
            t[((size_t)pos * pairs + j) * 2 + 1] = sinf(angle);
        }
    const int rc = upload_table(&r->tab, t, n, err, errlen);
    free(t);
    if (rc != 0) {
        wmcuda_rope_action_destroy(r);
        return rc;
    }
    r->pairs = pairs, r->pmax = pmax;
    return 0;
}

extern "C" void wmcuda_rope_action_destroy(wmcuda_rope_action *r) {
    if (!r) return;
    if (r->tab) cudaFree(r->tab);
    memset(r, 0, sizeof *r);
}

/* ---- QK RMSNorm + 3-D RoPE ----------------------------------------------------------------------- */

struct rope3d_args {
    const float2 *t_tab, *hw_tab;
    int dh, t_pairs, hw_pairs, S;
};

/* Floor (2640 x 1536 bf16 in and out): 4 bytes per element = 16.2 MB -> 4.8 us (tables: 180 KB
 * temporal + 296 KB spatial, L2-resident). Rounding points as the reference: the normalised value
 * to bf16, times the bf16 gain to bf16, then the rotation (fp32 here, float64 there) to bf16. */
template <int V>
static __global__ void __launch_bounds__(ROW_THREADS_MAX)
    rmsnorm_rope3d_kernel(const bf16 *x, bf16 *y, int dim, float eps, const bf16 *gain,
                          rope3d_args r, int use_rope, long long pos0, const long long *pos_dev) {
    __shared__ float sh[33];
    const int row = blockIdx.x;
    const int npack = dim >> 3;
    const bf16 *xr = x + (size_t)row * (size_t)dim;
    float v[V][8];
    float sq = 0.0f;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
#pragma unroll
        for (int e = 0; e < 8; e++) v[i][e] = 0.0f;
        if (pk < npack) {
            load8(xr + (size_t)pk * 8, v[i]);
#pragma unroll
            for (int e = 0; e < 8; e++) sq += v[i][e] * v[i][e];
        }
    }
    /* the gain and the rotation's cos/sin do not depend on the statistics: their loads are
     * issued before the reduction, so their latency hides behind it */
    int pos = 0, sigma = 0;
    if (use_rope) {
        pos = (int)(pos0 + (pos_dev ? *pos_dev : 0) + row / r.S);
        sigma = row % r.S;
    }
    float g[V][8];
    float2 cs[V][4];
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
#pragma unroll
        for (int e = 0; e < 8; e++) g[i][e] = 1.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) cs[i][j] = make_float2(1.0f, 0.0f);
        if (pk >= npack) continue;
        if (gain) load8(gain + (size_t)pk * 8, g[i]);
        if (use_rope) {
            const int p0 = ((pk * 8) % r.dh) >> 1; /* dh % 8 == 0: the piece is inside one head */
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int p = p0 + j;
                cs[i][j] = p < r.t_pairs ? r.t_tab[(size_t)pos * r.t_pairs + p]
                                         : r.hw_tab[(size_t)sigma * r.hw_pairs + (p - r.t_pairs)];
            }
        }
    }
    const float inv = 1.0f / sqrtf(block_reduce<false>(sq, sh) / (float)dim + eps);
    bf16 *yr = y + (size_t)row * (size_t)dim;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int pk = threadIdx.x + i * blockDim.x;
        if (pk >= npack) continue;
        float o[8];
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = round_bf16(v[i][e] * inv);
        if (gain) {
#pragma unroll
            for (int e = 0; e < 8; e++) o[e] = round_bf16(o[e] * g[i][e]);
        }
        if (use_rope) {
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float2 c2 = cs[i][j];
                const float a = o[2 * j], b = o[2 * j + 1];
                o[2 * j] = a * c2.x - b * c2.y;
                o[2 * j + 1] = a * c2.y + b * c2.x;
            }
        }
        store8(yr + (size_t)pk * 8, o);
    }
}

static int rmsnorm_rope3d(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                          const wmcuda_bf16 *gain, const wmcuda_rope3d *rope, int64_t pos0,
                          const int64_t *pos_dev, void *stream) {
    const char *fn = "rmsnorm_rope3d";
    if (rows < 0 || dim <= 0 || dim % 8 != 0) return bad_args(fn, "dim must be a positive multiple of 8");
    if (!x || !y || !al16(x) || !al16(y) || (gain && !al16(gain)))
        return bad_args(fn, "x, y and gain must be 16-byte aligned device pointers");
    rope3d_args ra;
    memset(&ra, 0, sizeof ra);
    if (rope) {
        if (!rope->t_tab || rope->dh <= 0 || dim % rope->dh != 0)
            return bad_args(fn, "dim must be heads * the table's head width");
        const int S = rope->grid_h * rope->grid_w;
        if (!pos_dev && rows > 0 && (pos0 < 0 || pos0 + (rows - 1) / S >= rope->pmax))
            return bad_args(fn, "a temporal position falls outside the RoPE table");
        ra.t_tab = (const float2 *)rope->t_tab, ra.hw_tab = (const float2 *)rope->hw_tab;
        ra.dh = rope->dh, ra.t_pairs = rope->t_pairs, ra.hw_pairs = rope->h_pairs + rope->w_pairs;
        ra.S = S;
    }
    if (rows == 0) return 0;
    int threads = 0;
    const int v = row_plan(dim / 8, 8, &threads);
    if (v == 0) return bad_args(fn, "dim above 16384");
    const cudaStream_t st = (cudaStream_t)stream;
    const bf16 *bx = (const bf16 *)x, *bg = (const bf16 *)gain;
    bf16 *by = (bf16 *)y;
    const int use = rope != NULL;
    const long long p0 = (long long)pos0;
    const long long *pd = (const long long *)pos_dev;
    switch (v) {
    case 1: rmsnorm_rope3d_kernel<1><<<rows, threads, 0, st>>>(bx, by, dim, eps, bg, ra, use, p0, pd); break;
    case 2: rmsnorm_rope3d_kernel<2><<<rows, threads, 0, st>>>(bx, by, dim, eps, bg, ra, use, p0, pd); break;
    case 4: rmsnorm_rope3d_kernel<4><<<rows, threads, 0, st>>>(bx, by, dim, eps, bg, ra, use, p0, pd); break;
    default: rmsnorm_rope3d_kernel<8><<<rows, threads, 0, st>>>(bx, by, dim, eps, bg, ra, use, p0, pd); break;
    }
    WM_CUDA_CHECK_LAUNCH(rmsnorm_rope3d_kernel);
    return 0;
}

extern "C" int wmcuda_rmsnorm_rope3d(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim,
                                     float eps, const wmcuda_bf16 *gain, const wmcuda_rope3d *rope,
                                     int64_t pos0, void *stream) {
    return rmsnorm_rope3d(x, y, rows, dim, eps, gain, rope, pos0, NULL, stream);
}

extern "C" int wmcuda_rmsnorm_rope3d_at(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim,
                                        float eps, const wmcuda_bf16 *gain,
                                        const wmcuda_rope3d *rope, const int64_t *pos_dev,
                                        int64_t pos_off, void *stream) {
    if (!pos_dev || !rope) return bad_args("rmsnorm_rope3d_at", "a table and a device position");
    return rmsnorm_rope3d(x, y, rows, dim, eps, gain, rope, pos_off, pos_dev, stream);
}

/* ---- action module: per-head RMS + action RoPE ----------------------------------------------------------- */

/* One thread per 8-element piece; the G = dh/8 threads of a head are consecutive lanes of one warp
 * and reduce with shuffles. Every thread reaches the shuffles (no early exit), so warps are whole.
 * Floor (mouse q or k, 2640 x 1024 bf16 in and out): 4 bytes per element = 10.8 MB -> 3.2 us. */
template <int G>
static __global__ void __launch_bounds__(EW_THREADS)
    rms_heads_rope_action_kernel(const bf16 *x, int ldx, bf16 *y, int ldy, int rows, int ppr,
                                 int dh, float eps, const float2 *tab, int pairs,
                                 int rows_per_frame, long long pos0, const long long *pos_dev) {
    const size_t gp = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const bool ok = gp < (size_t)rows * (size_t)ppr;
    int row = 0, pk = 0;
    float v[8];
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = 0.0f;
    if (ok) {
        row = (int)(gp / (size_t)ppr);
        pk = (int)(gp % (size_t)ppr);
        load8(x + (size_t)row * (size_t)ldx + (size_t)pk * 8, v);
    }
    float sq = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) sq += v[e] * v[e];
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    const float inv = 1.0f / sqrtf(sq / (float)dh + eps);
    float o8[8];
#pragma unroll
    for (int e = 0; e < 8; e++) o8[e] = v[e] * inv;
    if (tab && ok) {
        const int p0 = ((pk * 8) % dh) >> 1;
        const size_t pos = (size_t)(pos0 + (pos_dev ? *pos_dev : 0) + row / rows_per_frame);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int p = p0 + j;
            if (p < pairs) {
                const float2 cs = tab[pos * (size_t)pairs + p];
                const float a = o8[2 * j], b = o8[2 * j + 1];
                o8[2 * j] = a * cs.x + (-b * cs.y);
                o8[2 * j + 1] = b * cs.x + a * cs.y;
            }
        }
    }
    if (ok) store8(y + (size_t)row * (size_t)ldy + (size_t)pk * 8, o8);
}

static int rms_heads_rope_action(const wmcuda_bf16 *x, int ldx, wmcuda_bf16 *y, int ldy, int rows,
                                 int heads, int dh, float eps, const wmcuda_rope_action *rope,
                                 int rows_per_frame, int64_t pos0, const int64_t *pos_dev,
                                 void *stream) {
    const char *fn = "rms_heads_rope_action";
    const int G = dh / 8;
    if (rows < 0 || heads <= 0 || dh < 8 || dh > 256 || dh % 8 != 0 || (G & (G - 1)) != 0)
        return bad_args(fn, "dh must be 8, 16, 32, 64, 128 or 256");
    if (!x || !y || !al16(x) || !al16(y) || ldx % 8 != 0 || ldy % 8 != 0 || ldx < heads * dh ||
        ldy < heads * dh)
        return bad_args(fn, "16-byte aligned x, y and row strides >= heads*dh, multiples of 8");
    if (rope) {
        if (!rope->tab || rope->pairs > dh / 2 || rows_per_frame <= 0)
            return bad_args(fn, "table wider than the head, or rows_per_frame <= 0");
        if (!pos_dev && rows > 0 && (pos0 < 0 || pos0 + (rows - 1) / rows_per_frame >= rope->pmax))
            return bad_args(fn, "a position falls outside the action RoPE table");
    }
    if (rows == 0) return 0;
    const int ppr = heads * dh / 8;
    const size_t total = (size_t)rows * (size_t)ppr;
    const size_t blocks = (total + EW_THREADS - 1) / EW_THREADS;
    if (blocks > 0x7fffffffu) return bad_args(fn, "too many rows");
    const cudaStream_t st = (cudaStream_t)stream;
    const bf16 *bx = (const bf16 *)x;
    bf16 *by = (bf16 *)y;
    const float2 *tab = rope ? (const float2 *)rope->tab : NULL;
    const int pairs = rope ? rope->pairs : 0, rpf = rope ? rows_per_frame : 1;
    const long long p0 = (long long)pos0;
    const long long *pd = (const long long *)pos_dev;
    const unsigned nb = (unsigned)blocks;
#define RHA(g)                                                                                     \
    rms_heads_rope_action_kernel<g><<<nb, EW_THREADS, 0, st>>>(bx, ldx, by, ldy, rows, ppr, dh,   \
                                                                eps, tab, pairs, rpf, p0, pd)
    switch (G) {
    case 1: RHA(1); break;
    case 2: RHA(2); break;
    case 4: RHA(4); break;
    case 8: RHA(8); break;
    case 16: RHA(16); break;
    default: RHA(32); break;
    }
#undef RHA
    WM_CUDA_CHECK_LAUNCH(rms_heads_rope_action_kernel);
    return 0;
}

extern "C" int wmcuda_rms_heads_rope_action(const wmcuda_bf16 *x, int ldx, wmcuda_bf16 *y, int ldy,
                                            int rows, int heads, int dh, float eps,
                                            const wmcuda_rope_action *rope, int rows_per_frame,
                                            int64_t pos0, void *stream) {
    return rms_heads_rope_action(x, ldx, y, ldy, rows, heads, dh, eps, rope, rows_per_frame, pos0,
                                 NULL, stream);
}

extern "C" int wmcuda_rms_heads_rope_action_at(const wmcuda_bf16 *x, int ldx, wmcuda_bf16 *y,
                                               int ldy, int rows, int heads, int dh, float eps,
                                               const wmcuda_rope_action *rope, int rows_per_frame,
                                               const int64_t *pos_dev, int64_t pos_off,
                                               void *stream) {
    if (!pos_dev || !rope)
        return bad_args("rms_heads_rope_action_at", "a table and a device position");
    return rms_heads_rope_action(x, ldx, y, ldy, rows, heads, dh, eps, rope, rows_per_frame,
                                 pos_off, pos_dev, stream);
}

/* ---- residual stream -------------------------------------------------------------------------------- */

/* Floor (2640 x 1536): x read and written in fp32 plus y in bf16 = 10 bytes per element = 40.6 MB
 * -> 12.1 us (gate rows: 9 KB, L2). Same for the plain add. */
static __global__ void __launch_bounds__(EW_THREADS)
    residual_gate_kernel(float *x, const bf16 *y, size_t packs, int ppr, int rows_per_frame,
                         const bf16 *gate, size_t frame_stride, bf16 *h) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t gp = (size_t)blockIdx.x * blockDim.x + threadIdx.x; gp < packs; gp += stride) {
        const size_t row = gp / (size_t)ppr;
        const size_t pk = gp % (size_t)ppr;
        float xv[8], yv[8], gv[8];
        load8(x + gp * 8, xv);
        load8(y + gp * 8, yv);
        if (gate) {
            load8(gate + (row / (size_t)rows_per_frame) * frame_stride + pk * 8, gv);
#pragma unroll
            for (int e = 0; e < 8; e++) xv[e] += yv[e] * gv[e];
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) xv[e] += yv[e];
        }
        store8(x + gp * 8, xv);
        if (h) store8(h + gp * 8, xv);
    }
}

extern "C" int wmcuda_residual_gate(float *x, const wmcuda_bf16 *y, int rows, int dim,
                                    int rows_per_frame, const wmcuda_bf16 *gate,
                                    size_t frame_stride, void *stream) {
    const char *fn = "residual_gate";
    if (rows < 0 || dim <= 0 || dim % 8 != 0 || rows_per_frame <= 0 || frame_stride % 8 != 0)
        return bad_args(fn, "dim % 8, frame_stride % 8 == 0 and rows_per_frame > 0 required");
    if (!x || !y || !gate || !al16(x) || !al16(y) || !al16(gate))
        return bad_args(fn, "16-byte aligned device pointers required");
    if (rows == 0) return 0;
    const size_t packs = (size_t)rows * (size_t)(dim / 8);
    residual_gate_kernel<<<ew_blocks(packs), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, (const bf16 *)y, packs, dim / 8, rows_per_frame, (const bf16 *)gate, frame_stride,
        NULL);
    WM_CUDA_CHECK_LAUNCH(residual_gate_kernel);
    return 0;
}

extern "C" int wmcuda_residual_add(float *x, const wmcuda_bf16 *y, size_t n, void *stream) {
    if (n % 8 != 0 || (n && (!x || !y || !al16(x) || !al16(y))))
        return bad_args("residual_add", "n % 8 == 0 and 16-byte aligned device pointers required");
    if (n == 0) return 0;
    const size_t packs = n / 8;
    residual_gate_kernel<<<ew_blocks(packs), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, (const bf16 *)y, packs, 1, 1, NULL, 0, NULL);
    WM_CUDA_CHECK_LAUNCH(residual_gate_kernel);
    return 0;
}

extern "C" int wmcuda_residual_add_to_bf16(float *x, const wmcuda_bf16 *y, wmcuda_bf16 *h,
                                           size_t n, void *stream) {
    if (n % 8 != 0 || (n && (!x || !y || !h || !al16(x) || !al16(y) || !al16(h))))
        return bad_args("residual_add_to_bf16",
                        "n % 8 == 0 and 16-byte aligned device pointers required");
    if (n == 0) return 0;
    const size_t packs = n / 8;
    residual_gate_kernel<<<ew_blocks(packs), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, (const bf16 *)y, packs, 1, 1, NULL, 0, (bf16 *)h);
    WM_CUDA_CHECK_LAUNCH(residual_gate_kernel);
    return 0;
}

/* ---- row softmax ------------------------------------------------------------------------------------- */

/* Floor (12 heads x 2640 rows x 5280 keys): 4 bytes read + 2 written per score = 1.00 GB -> 300 us
 * (this, not the two products, is what the unfused attention spends; FlashAttention-style fusion
 * removes it). VEC: rows start 16-byte aligned in s and p, so whole 8-element pieces move at
 * once; the tail piece of a row (cols % 8) goes element by element. */
template <int V, bool VEC>
static __global__ void __launch_bounds__(ROW_THREADS_MAX)
    softmax_kernel(const float *s, int lds, bf16 *p, int ldp, int cols, int lq,
                   const unsigned char *mask, int frames_k, int rows_per_frame_q,
                   int rows_per_frame_k) {
    __shared__ float sh[33];
    const int r = blockIdx.x;
    const float *sr = s + (size_t)r * (size_t)lds;
    bf16 *pr = p + (size_t)r * (size_t)ldp;
    const unsigned char *vis =
        mask ? mask + (size_t)((r % lq) / rows_per_frame_q) * (size_t)frames_k : NULL;
    float v[V][8];
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int base = (threadIdx.x + i * blockDim.x) * 8;
        if (VEC && base + 8 <= cols) {
            load8(sr + base, v[i]);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) v[i][e] = base + e < cols ? sr[base + e] : -INFINITY;
        }
        if (vis) {
#pragma unroll
            for (int e = 0; e < 8; e++)
                if (base + e < cols && !vis[(base + e) / rows_per_frame_k]) v[i][e] = -INFINITY;
        }
#pragma unroll
        for (int e = 0; e < 8; e++) mx = fmaxf(mx, v[i][e]);
    }
    mx = block_reduce<true>(mx, sh);
    float sum = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
        for (int i = 0; i < V; i++)
#pragma unroll
            for (int e = 0; e < 8; e++) {
                v[i][e] = expf(v[i][e] - mx); /* masked and padding: exp(-inf) = 0 */
                sum += v[i][e];
            }
    }
    sum = block_reduce<false>(sum, sh);
    const float inv = mx != -INFINITY ? 1.0f / sum : 0.0f; /* nothing visible: all zeros */
#pragma unroll
    for (int i = 0; i < V; i++) {
        const int base = (threadIdx.x + i * blockDim.x) * 8;
        if (base >= cols) continue;
        float o[8];
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = mx != -INFINITY ? v[i][e] * inv : 0.0f;
        if (VEC && base + 8 <= cols) {
            store8(pr + base, o);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++)
                if (base + e < cols) store1(pr + base + e, o[e]);
        }
    }
}

extern "C" int wmcuda_softmax_rows(const float *s, int lds, wmcuda_bf16 *p, int ldp, int rows,
                                   int cols, int lq, const unsigned char *mask, int frames_k,
                                   int rows_per_frame_q, int rows_per_frame_k, void *stream) {
    const char *fn = "softmax_rows";
    if (rows < 0 || cols <= 0 || cols > 8192 || lds < cols || ldp < cols || lq <= 0)
        return bad_args(fn, "0 < cols <= 8192, lds and ldp >= cols, lq > 0 required");
    if (!s || !p) return bad_args(fn, "NULL pointer");
    if (mask && (frames_k <= 0 || rows_per_frame_q <= 0 || rows_per_frame_k <= 0 ||
                 (cols - 1) / rows_per_frame_k >= frames_k))
        return bad_args(fn, "mask needs frames_k covering cols and rows_per_frame_q/k > 0");
    if (rows == 0) return 0;
    int threads = 0;
    const int v = row_plan((cols + 7) / 8, 4, &threads);
    if (v == 0) return bad_args(fn, "row too long");
    const bool vec = al16(s) && al16(p) && lds % 4 == 0 && ldp % 8 == 0;
    const cudaStream_t st = (cudaStream_t)stream;
    bf16 *bp = (bf16 *)p;
#define SMX(V_, VEC_)                                                                              \
    softmax_kernel<V_, VEC_><<<rows, threads, 0, st>>>(s, lds, bp, ldp, cols, lq, mask, frames_k,  \
                                                       rows_per_frame_q, rows_per_frame_k)
    if (vec) {
        switch (v) {
        case 1: SMX(1, true); break;
        case 2: SMX(2, true); break;
        default: SMX(4, true); break;
        }
    } else {
        switch (v) {
        case 1: SMX(1, false); break;
        case 2: SMX(2, false); break;
        default: SMX(4, false); break;
        }
    }
#undef SMX
    WM_CUDA_CHECK_LAUNCH(softmax_kernel);
    return 0;
}

/* ---- patchify / unpatchify ---------------------------------------------------------------------------- */

/* One thread per patch-matrix element (consecutive threads write consecutive columns). Floor:
 * 36 x 3 x 44 x 80 fp32 read (1.52 MB) + 2640 x 144 bf16 written (0.76 MB) = 2.28 MB -> 0.7 us:
 * launch-bound in practice. */
static __global__ void __launch_bounds__(EW_THREADS)
    patchify_kernel(const float *x, int cx, const float *cond, int F, int H, int W, bf16 *out,
                    int cols, size_t total) {
    const int gw = W / 2, S = (H / 2) * gw;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int n = (int)(i / (size_t)cols), col = (int)(i % (size_t)cols);
        const int ch = col >> 2, a = (col >> 1) & 1, b = col & 1;
        const int f = n / S, t = n % S, hh = t / gw, ww = t % gw;
        const float *src = ch < cx ? x + ((size_t)ch * F + f) * (size_t)H * W
                                   : cond + ((size_t)(ch - cx) * F + f) * (size_t)H * W;
        out[i] = __float2bfloat16_rn(src[(size_t)(2 * hh + a) * W + (size_t)(2 * ww + b)]);
    }
}

/* One thread per latent element (consecutive threads write consecutive columns). Floor: 2640 x 64
 * bf16 read (0.34 MB) + 16 x 3 x 44 x 80 fp32 written (0.68 MB) -> 0.3 us: launch-bound. */
template <typename T>
static __global__ void __launch_bounds__(EW_THREADS)
    unpatchify_kernel(const T *tok, int F, int H, int W, int od, float *v, size_t total) {
    const int gw = W / 2, S = (H / 2) * gw;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int xx = (int)(i % (size_t)W);
        size_t rest = i / (size_t)W;
        const int yy = (int)(rest % (size_t)H);
        rest /= (size_t)H;
        const int f = (int)(rest % (size_t)F), c = (int)(rest / (size_t)F);
        const int n = f * S + (yy >> 1) * gw + (xx >> 1);
        const int k = ((yy & 1) * 2 + (xx & 1)) * od + c;
        v[i] = load1(tok + (size_t)n * (size_t)(4 * od) + (size_t)k);
    }
}

extern "C" int wmcuda_patchify(const float *x, int cx, const float *cond, int ccond, int frames,
                               int lat_h, int lat_w, wmcuda_bf16 *patches, void *stream) {
    if (cx <= 0 || ccond < 0 || frames < 0 || lat_h <= 0 || lat_w <= 0 || lat_h % 2 || lat_w % 2 ||
        !x || (ccond > 0 && !cond) || !patches)
        return bad_args("patchify", "even latent size, cx > 0 and device pointers required");
    const int cols = 4 * (cx + ccond);
    const size_t total = (size_t)frames * (size_t)(lat_h / 2) * (size_t)(lat_w / 2) * (size_t)cols;
    if (total == 0) return 0;
    patchify_kernel<<<ew_blocks(total), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, cx, cond, frames, lat_h, lat_w, (bf16 *)patches, cols, total);
    WM_CUDA_CHECK_LAUNCH(patchify_kernel);
    return 0;
}

template <typename T>
static int launch_unpatchify(const T *tok, int frames, int lat_h, int lat_w, int out_dim, float *v,
                             cudaStream_t stream) {
    if (frames < 0 || lat_h <= 0 || lat_w <= 0 || lat_h % 2 || lat_w % 2 || out_dim <= 0 || !tok ||
        !v)
        return bad_args("unpatchify", "even latent size, out_dim > 0 and device pointers required");
    const size_t total = (size_t)out_dim * (size_t)frames * (size_t)lat_h * (size_t)lat_w;
    if (total == 0) return 0;
    unpatchify_kernel<T><<<ew_blocks(total), EW_THREADS, 0, stream>>>(tok, frames, lat_h, lat_w,
                                                                      out_dim, v, total);
    WM_CUDA_CHECK_LAUNCH(unpatchify_kernel);
    return 0;
}

extern "C" int wmcuda_unpatchify_bf16(const wmcuda_bf16 *tok, int frames, int lat_h, int lat_w,
                                      int out_dim, float *v, void *stream) {
    return launch_unpatchify<bf16>((const bf16 *)tok, frames, lat_h, lat_w, out_dim, v,
                                   (cudaStream_t)stream);
}

extern "C" int wmcuda_unpatchify_f32(const float *tok, int frames, int lat_h, int lat_w,
                                     int out_dim, float *v, void *stream) {
    return launch_unpatchify<float>(tok, frames, lat_h, lat_w, out_dim, v, (cudaStream_t)stream);
}

/* ---- elementwise ------------------------------------------------------------------------------------- */

enum { EW_COPY = 0, EW_SILU = 1, EW_GELU_TANH = 2, EW_GELU_ERF = 3 };

template <int OP>
static __device__ __forceinline__ float ew_op(float u) {
    if (OP == EW_SILU) return u / (1.0f + expf(-u));
    if (OP == EW_GELU_TANH)
        return 0.5f * u * (1.0f + tanhf(0.7978845608028654f * (u + 0.044715f * u * u * u)));
    if (OP == EW_GELU_ERF) return 0.5f * u * (1.0f + erff(u * 0.7071067811865476f));
    return u;
}

/* Floor (FFN hidden, 2640 x 8960 bf16 in and out): 4 bytes per element = 94.6 MB -> 28 us; the
 * converts: 6 bytes per element. tanhf/erff/expf are ~20 instructions per element, still well
 * under the memory time. In place is fine: each element is read, then written, by one thread. */
template <typename Tin, typename Tout, int OP, bool VEC>
static __global__ void __launch_bounds__(EW_THREADS) ew_kernel(const Tin *x, Tout *y, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t packs = 0;
    if (VEC) {
        packs = n / 8;
        for (size_t gp = tid; gp < packs; gp += stride) {
            float v[8];
            load8(x + gp * 8, v);
#pragma unroll
            for (int e = 0; e < 8; e++) v[e] = ew_op<OP>(v[e]);
            store8(y + gp * 8, v);
        }
    }
    for (size_t i = packs * 8 + tid; i < n; i += stride) store1(y + i, ew_op<OP>(load1(x + i)));
}

template <typename Tin, typename Tout, int OP>
static int launch_ew(const char *fn, const Tin *x, Tout *y, size_t n, cudaStream_t stream) {
    if (n == 0) return 0;
    if (!x || !y) return bad_args(fn, "NULL pointer");
    if (al16(x) && al16(y)) {
        ew_kernel<Tin, Tout, OP, true><<<ew_blocks((n + 7) / 8), EW_THREADS, 0, stream>>>(x, y, n);
    } else {
        ew_kernel<Tin, Tout, OP, false><<<ew_blocks(n), EW_THREADS, 0, stream>>>(x, y, n);
    }
    WM_CUDA_CHECK_LAUNCH(ew_kernel);
    return 0;
}

extern "C" int wmcuda_silu_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream) {
    return launch_ew<bf16, bf16, EW_SILU>("silu_bf16", (const bf16 *)x, (bf16 *)y, n,
                                          (cudaStream_t)stream);
}
extern "C" int wmcuda_gelu_tanh_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream) {
    return launch_ew<bf16, bf16, EW_GELU_TANH>("gelu_tanh_bf16", (const bf16 *)x, (bf16 *)y, n,
                                               (cudaStream_t)stream);
}
extern "C" int wmcuda_gelu_erf_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream) {
    return launch_ew<bf16, bf16, EW_GELU_ERF>("gelu_erf_bf16", (const bf16 *)x, (bf16 *)y, n,
                                              (cudaStream_t)stream);
}
extern "C" int wmcuda_convert_f32_to_bf16(const float *x, wmcuda_bf16 *y, size_t n, void *stream) {
    return launch_ew<float, bf16, EW_COPY>("convert_f32_to_bf16", x, (bf16 *)y, n,
                                           (cudaStream_t)stream);
}
extern "C" int wmcuda_convert_bf16_to_f32(const wmcuda_bf16 *x, float *y, size_t n, void *stream) {
    return launch_ew<bf16, float, EW_COPY>("convert_bf16_to_f32", (const bf16 *)x, y, n,
                                           (cudaStream_t)stream);
}

/* In-place GELU-tanh over a strided [rows][cols] block (wmcuda_linear's SEPARATE mode). Same
 * floor as ew_kernel over rows*cols elements. */
template <typename T>
static __global__ void __launch_bounds__(EW_THREADS)
    gelu_tanh_2d_kernel(T *y, int cols, int ld, size_t total) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        T *e = y + (i / (size_t)cols) * (size_t)ld + i % (size_t)cols;
        store1(e, ew_op<EW_GELU_TANH>(load1(e)));
    }
}

template <typename T>
static int launch_gelu_2d(T *y, int rows, int cols, int ld, cudaStream_t stream) {
    if (rows < 0 || cols <= 0 || ld < cols || (rows > 0 && !y))
        return bad_args("gelu_tanh_2d", "ld >= cols > 0 and a device pointer required");
    const size_t total = (size_t)rows * (size_t)cols;
    if (total == 0) return 0;
    gelu_tanh_2d_kernel<T><<<ew_blocks(total), EW_THREADS, 0, stream>>>(y, cols, ld, total);
    WM_CUDA_CHECK_LAUNCH(gelu_tanh_2d_kernel);
    return 0;
}

extern "C" int wmcuda_gelu_tanh_bf16_2d(wmcuda_bf16 *y, int rows, int cols, int ld, void *stream) {
    return launch_gelu_2d<bf16>((bf16 *)y, rows, cols, ld, (cudaStream_t)stream);
}

/* Not in the public header: the fp32 twin for wmcuda_linear_f32's SEPARATE mode (gemm.cu). */
extern "C" int wmcuda_gelu_tanh_f32_2d(float *y, int rows, int cols, int ld, void *stream) {
    return launch_gelu_2d<float>(y, rows, cols, ld, (cudaStream_t)stream);
}

/* ---- sampler ----------------------------------------------------------------------------------------- */

/* Floor (one block's latent, 16 x 3 x 44 x 80 = 168960 values): x, v read and x0 written in fp32 =
 * 2.0 MB -> 0.6 us (the re-noise the same): launch-bound. Explicitly rounded intrinsics keep the
 * compiler from contracting into FMAs, so the result equals engine/session.c's host loop. */
static __global__ void __launch_bounds__(EW_THREADS)
    sampler_x0_kernel(const float *x, const float *v, double sigma, float *x0, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x0[i] = __double2float_rn(__dsub_rn((double)x[i], __dmul_rn(sigma, (double)v[i])));
}

static __global__ void __launch_bounds__(EW_THREADS)
    sampler_renoise_kernel(const float *x0, const float *eps, float one_minus, float sn, float *x,
                           size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        x[i] = __fadd_rn(__fmul_rn(one_minus, x0[i]), __fmul_rn(sn, eps[i]));
}

extern "C" int wmcuda_sampler_x0(const float *x, const float *v, double sigma, float *x0, size_t n,
                                 void *stream) {
    if (n == 0) return 0;
    if (!x || !v || !x0) return bad_args("sampler_x0", "NULL pointer");
    sampler_x0_kernel<<<ew_blocks(n), EW_THREADS, 0, (cudaStream_t)stream>>>(x, v, sigma, x0, n);
    WM_CUDA_CHECK_LAUNCH(sampler_x0_kernel);
    return 0;
}

extern "C" int wmcuda_sampler_renoise(const float *x0, const float *eps, float sigma_next, float *x,
                                      size_t n, void *stream) {
    if (n == 0) return 0;
    if (!x0 || !eps || !x) return bad_args("sampler_renoise", "NULL pointer");
    const float one_minus = 1.0f - sigma_next; /* rounded once, as (1.0f - sn) on the host */
    sampler_renoise_kernel<<<ew_blocks(n), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x0, eps, one_minus, sigma_next, x, n);
    WM_CUDA_CHECK_LAUNCH(sampler_renoise_kernel);
    return 0;
}
