/* The VAE's kernels (see vae_kernels.h). The convolution is an implicit GEMM on the tensor cores:
 * mma.sync m16n8k16 (bf16 in, fp32 accumulate), operands staged through shared memory by
 * cp.async in a 4-stage pipeline and read with ldmatrix. The A tile (BM output positions x 32
 * input channels of one tap) is gathered straight from the channels-last activation: each thread
 * owns fixed rows of the tile and, per K step, computes the source pixel of its rows for the
 * step's tap, with cp.async's zero fill standing in for the padding, the missing history and the
 * channels past Cin. K is walked tap by tap, 32 channels at a time. Three tile shapes cover the
 * VAE's widths: 128x192 (Cout a multiple of 192), 256x96 (96) and 128x16 (the narrow rest: the
 * head's 3 channels, the encoder's 32, the tiny config); each warp owns 64x48 (16x16 for the
 * narrow one) of the tile. Shared-memory rows are padded to 40 bf16 (80 bytes), which makes the
 * ldmatrix row addresses of 8 consecutive rows hit 8 distinct 16-byte bank groups.
 * The same-size 3x3 convs (nearly all of the decoder's FLOPs) have haloed-tile kernels below
 * (WMCUDA_VAE_TILE_HALO*): each input pixel is staged once per time tap and channel chunk with its
 * 1-pixel halo and the 9 spatial taps are read from shared memory, on mma.sync or on wgmma. */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/vae_kernels.h"

typedef __nv_bfloat16 bf16;

#define EW_THREADS 256

static int bad_args(const char *fn, const char *what) {
    fprintf(stderr, "wmcuda %s: invalid arguments: %s\n", fn, what);
    return WMCUDA_EINVAL;
}

static bool al16(const void *p) {
    return ((uintptr_t)p & 15u) == 0;
}

static unsigned blocks_for(size_t threads) {
    return (unsigned)((threads + EW_THREADS - 1) / EW_THREADS);
}

/* ---- implicit-GEMM convolution ------------------------------------------------------------------
 */

namespace {

/* BK input channels per K step (32 or 64); shared rows padded by 8 bf16 (80 or 144 bytes: 8
 * consecutive rows start in 8 distinct 16-byte bank groups); 4 or 3 pipeline stages. */
template <int BK> struct KCfg {
    static constexpr int LDS = BK + 8, STAGES = BK == 32 ? 4 : 3, KCH = BK / 8;
};

struct ConvArgs {
    wmcuda_vae_conv_desc d;
    int M, HWo, K, cchunks, ksteps, hl, wl, wf;
    size_t fe, HWf;       /* elements of one input frame; positions of one output frame */
    int tw, th, ntx, nty; /* halo kernel: output tile TH x TW of one frame, tiles per row/column */
};

__device__ __forceinline__ void cp_async_ca(void *smem, const void *gmem, int src_bytes) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_cg(void *smem, const void *gmem, int src_bytes) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *smem) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Output position (frame f0 + t * tmul, row, column) of GEMM row m, phase 0, as an index of
 * [frames][hfull][wfull] (valid rows only; m >= M gives 0). */
__device__ __forceinline__ size_t out_pos(const ConvArgs &a, int m) {
    const wmcuda_vae_conv_desc &d = a.d;
    if (m >= a.M) return 0;
    const int t = m / a.HWo, hw = m - t * a.HWo;
    const int yo = hw / d.wout, xo = hw - yo * d.wout;
    return (size_t)(d.f0 + t * d.tmul) * a.HWf + (size_t)(yo * d.ostride + d.oy0) * (size_t)a.wf +
           (size_t)(xo * d.ostride + d.ox0);
}

__device__ __forceinline__ size_t out_index(const ConvArgs &a, size_t pp, int n) {
    const int ph = n / a.d.csplit, c = n - ph * a.d.csplit;
    return (pp + (size_t)ph * a.HWf) * (size_t)a.d.csplit + (size_t)c;
}

__device__ __forceinline__ void store1(const wmcuda_vae_conv_desc &d, size_t o, float v) {
    if (d.y_f32)
        ((float *)d.y)[o] = v;
    else
        ((bf16 *)d.y)[o] = __float2bfloat16_rn(v);
}

__device__ __forceinline__ float finish(const wmcuda_vae_conv_desc &d, float v, int n, size_t o) {
    if (d.bias) v += d.bias[n];
    if (d.res) v += __bfloat162float(__ushort_as_bfloat16(d.res[o]));
    if (d.clamp) v = fminf(fmaxf(v, -1.0f), 1.0f);
    return v;
}

/* The conv epilogue straight from the mma fragments (c0,c1 at row g, columns 2q, 2q+1; c2,c3 at
 * row g+8): bias, residual, clamp, store, and the optional fused RMS norm + SiLU (its row sums in
 * smem, which the caller has made free). pos(ml) gives tile row ml's output position (out_pos) or
 * NO_POS for a row outside the output. */
#define NO_POS ((size_t)-1)
template <int WM, int WN, int MI, int NI, class Pos>
__device__ __forceinline__ void conv_epilogue(const ConvArgs &a, float (&acc)[MI][NI][4], int n0,
                                              unsigned char *smem_raw, Pos pos) {
    const wmcuda_vae_conv_desc &d = a.d;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp % WM, wn = warp / WM;
    const bool pair = d.csplit % 2 == 0;
    float *red = (float *)smem_raw; /* [BM][WN] partial sums of squares (fused norm) */
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int ml = wm * MI * 16 + mi * 16 + (lane >> 2) + h * 8;
            const size_t pp = pos(ml);
            float ss = 0.0f;
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int n = n0 + wn * NI * 8 + ni * 8 + (lane & 3) * 2;
                if (pp == NO_POS || n >= d.cout) continue;
                const int ph = n / d.csplit, c = n - ph * d.csplit;
                const size_t o = (pp + (size_t)ph * a.HWf) * (size_t)d.csplit + (size_t)c;
                const bool two = n + 1 < d.cout;
                const size_t o1 = !two ? o : pair ? o + 1 : out_index(a, pp, n + 1);
                const float v0 = finish(d, acc[mi][ni][2 * h], n, o);
                const float v1 = two ? finish(d, acc[mi][ni][2 * h + 1], n + 1, o1) : 0.0f;
                if (d.ngamma) { /* the norm sees the activation as stored in bf16 */
                    const float r0 = __bfloat162float(__float2bfloat16_rn(v0));
                    const float r1 = __bfloat162float(__float2bfloat16_rn(v1));
                    acc[mi][ni][2 * h] = r0, acc[mi][ni][2 * h + 1] = r1;
                    ss += r0 * r0 + r1 * r1;
                }
                if (!d.y) continue;
                if (pair && two) {
                    if (d.y_f32)
                        *(float2 *)((float *)d.y + o) = make_float2(v0, v1);
                    else
                        *(__nv_bfloat162 *)((bf16 *)d.y + o) = __floats2bfloat162_rn(v0, v1);
                } else {
                    store1(d, o, v0);
                    if (two) store1(d, o1, v1);
                }
            }
            if (d.ngamma) {
                ss += __shfl_xor_sync(0xffffffffu, ss, 1);
                ss += __shfl_xor_sync(0xffffffffu, ss, 2);
                if ((lane & 3) == 0) red[ml * WN + wn] = ss;
            }
        }
    if (!d.ngamma) return;
    __syncthreads();
    const float root_c = sqrtf((float)d.cout);
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int ml = wm * MI * 16 + mi * 16 + (lane >> 2) + h * 8;
            const size_t pp = pos(ml);
            if (pp == NO_POS) continue;
            float tot = 0.0f;
#pragma unroll
            for (int w = 0; w < WN; w++) tot += red[ml * WN + w];
            /* max(||x||, eps): an all-zero position stays 0 (pitfall 2) */
            const float sc = root_c / fmaxf(sqrtf(tot), 1e-12f);
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int n = n0 + wn * NI * 8 + ni * 8 + (lane & 3) * 2;
                if (n >= d.cout) continue;
                const size_t o = pp * (size_t)d.cout + (size_t)n;
                float f0 = acc[mi][ni][2 * h] * sc * d.ngamma[n];
                f0 = f0 / (1.0f + __expf(-f0));
                if (n + 1 < d.cout) {
                    float f1 = acc[mi][ni][2 * h + 1] * sc * d.ngamma[n + 1];
                    f1 = f1 / (1.0f + __expf(-f1));
                    if (d.cout % 2 == 0)
                        *(__nv_bfloat162 *)((bf16 *)d.ny + o) = __floats2bfloat162_rn(f0, f1);
                    else
                        ((bf16 *)d.ny)[o] = __float2bfloat16_rn(f0),
                               ((bf16 *)d.ny)[o + 1] = __float2bfloat16_rn(f1);
                } else {
                    ((bf16 *)d.ny)[o] = __float2bfloat16_rn(f0);
                }
            }
        }
}

template <int WM, int WN, int MI, int NI, int BK>
__global__ void __launch_bounds__(WM *WN * 32, WM *WN == 4 ? 2 : 1) conv_kernel(const ConvArgs a) {
    constexpr int BM = WM * MI * 16, BN = WN * NI * 8, NT = WM * WN * 32;
    constexpr int LDS = KCfg<BK>::LDS, STAGES = KCfg<BK>::STAGES, KCH = KCfg<BK>::KCH;
    constexpr int A_IT = BM * KCH / NT;
    static_assert(NI % 2 == 0, "B fragments are loaded in pairs");
    static_assert((BM * KCH) % NT == 0 && NT % KCH == 0, "A chunks per thread");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *As = (bf16 *)smem_raw;
    bf16 *Bs = As + STAGES * BM * LDS;
    const wmcuda_vae_conv_desc &d = a.d;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wn = warp / WM;
    const int ntn = (d.cout + BN - 1) / BN;
    const int m0 = (int)(blockIdx.x / ntn) * BM, n0 = (int)(blockIdx.x % ntn) * BN;
    const int kc = tid % KCH;

    /* the tile rows this thread gathers: base frame / row / column of their receptive field */
    int rt[A_IT], ry[A_IT], rx[A_IT];
    bool rok[A_IT];
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
        const int m = m0 + tid / KCH + i * (NT / KCH);
        rok[i] = m < a.M;
        const int mm = rok[i] ? m : 0;
        const int t = mm / a.HWo, hw = mm - t * a.HWo;
        const int yo = hw / d.wout, xo = hw - yo * d.wout;
        rt[i] = t * d.tstride - d.hist_n;
        ry[i] = d.up2 ? yo - d.spad : yo * d.sstride - d.spad;
        rx[i] = d.up2 ? xo - d.spadx : xo * d.sstride - d.spadx;
    }

    /* The loader walks K as (dt, dy, channel chunk, dx), dx innermost: consecutive steps gather
     * the same input lines shifted by one pixel (L1 hits through cp.async.ca), and the per-row
     * source row pointers change only when (dt, dy) does. Integer work per step is a few adds. */
    int l_dt = 0, l_dy = 0, l_dx = 0, l_cb = 0;
    const bf16 *rp[A_IT]; /* start of the source row of (l_dt, l_dy), or NULL */
    const size_t row_elems = (size_t)d.win * (size_t)d.cin;
    auto set_rows = [&]() {
#pragma unroll
        for (int i = 0; i < A_IT; i++) {
            const int si = rt[i] + l_dt, yy = ry[i] + l_dy;
            const bf16 *fp =
                si < 0 ? (d.hist ? (const bf16 *)d.hist + (size_t)(si + d.hist_n) * a.fe : nullptr)
                       : (const bf16 *)d.x + (size_t)si * a.fe;
            const bool v = rok[i] && fp && yy >= 0 && yy < a.hl;
            rp[i] = v ? fp + (size_t)(d.up2 ? yy >> 1 : yy) * row_elems : nullptr;
        }
    };
    set_rows();
    auto load = [&](int stage) {
        const int c = l_cb + kc * 8;
        const bool cok = c < d.cin;
        bf16 *as = As + (size_t)stage * BM * LDS;
#pragma unroll
        for (int i = 0; i < A_IT; i++) {
            const int xx = rx[i] + l_dx;
            const bool v = rp[i] && cok && xx >= 0 && xx < a.wl;
            const int xs = d.up2 ? xx >> 1 : xx;
            const bf16 *src =
                v ? rp[i] + (size_t)xs * (size_t)d.cin + (size_t)c : (const bf16 *)d.x;
            cp_async_ca(as + (tid / KCH + i * (NT / KCH)) * LDS + kc * 8, src, v ? 16 : 0);
        }
        const int koff = ((l_dt * d.kh + l_dy) * d.kw + l_dx) * d.cin + c;
        bf16 *bs = Bs + (size_t)stage * BN * LDS;
#pragma unroll
        for (int j = 0; j < (BN * KCH + NT - 1) / NT; j++) {
            const int n = tid / KCH + j * (NT / KCH), ng = n0 + n;
            if (n < BN) {
                const bool v = ng < d.cout && cok;
                const bf16 *src = v ? (const bf16 *)d.w + (size_t)ng * (size_t)a.K + (size_t)koff
                                    : (const bf16 *)d.w;
                cp_async_cg(bs + n * LDS + kc * 8, src, v ? 16 : 0);
            }
        }
        if (++l_dx == d.kw) { /* advance to the next K step */
            l_dx = 0;
            l_cb += BK;
            if (l_cb >= d.cin) {
                l_cb = 0;
                if (++l_dy == d.kh) l_dy = 0, l_dt++;
                set_rows();
            }
        }
    };

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < a.ksteps) load(s);
        cp_async_commit();
    }
    int c_dx = 0, c_cb = 0; /* the compute side's (dx, chunk) in the loader's order */
    for (int ks = 0; ks < a.ksteps; ks++) {
        const int kv = d.cin - c_cb; /* valid channels of this step's chunk (zeros beyond) */
        if (++c_dx == d.kw) {
            c_dx = 0;
            c_cb += BK;
            if (c_cb >= d.cin) c_cb = 0;
        }
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* stage ks landed for everyone; stage ks-1 is free to refill */
        const int nxt = ks + STAGES - 1;
        if (nxt < a.ksteps) load(nxt % STAGES);
        cp_async_commit();
        const bf16 *as = As + (size_t)(ks % STAGES) * BM * LDS;
        const bf16 *bs = Bs + (size_t)(ks % STAGES) * BN * LDS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            if (BK > 32 && kk >= kv) break; /* a ragged last chunk: skip the all-zero part */
            uint32_t af[MI][4], bfr[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
                ldsm_x4(af[mi],
                        as + (wm * MI * 16 + mi * 16 + (lane & 15)) * LDS + kk + (lane >> 4) * 8);
#pragma unroll
            for (int nj = 0; nj < NI / 2; nj++) {
                uint32_t r[4];
                ldsm_x4(r, bs + (wn * NI * 8 + nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * LDS +
                               kk + ((lane >> 3) & 1) * 8);
                bfr[2 * nj][0] = r[0], bfr[2 * nj][1] = r[1];
                bfr[2 * nj + 1][0] = r[2], bfr[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
                    mma_bf16(acc[mi][ni], af[mi], bfr[ni][0], bfr[ni][1]);
        }
    }
    cp_async_wait<0>();
    if (d.ngamma) __syncthreads(); /* the norm's row sums reuse the operand tiles */
    conv_epilogue<WM, WN, MI, NI>(a, acc, n0, smem_raw, [&](int ml) {
        const int m = m0 + ml;
        return m < a.M ? out_pos(a, m) : NO_POS;
    });
}

/* ---- the haloed 3x3(x kt) conv -----------------------------------------------------------------
 * For the same-size 3x3 convs (pad 1, stride 1; kt frames of "hist ++ x"), which are nearly all of
 * the decoder's FLOPs. A CTA owns a TH x TW tile of output positions of one frame (TH * TW = 256)
 * and 96 output channels. Per K stage (HK input channels of one time tap dt) it loads the
 * (TH+2) x (TW+2) input pixels around the tile once, with the zero halo, and the 9 spatial taps'
 * weights; the 9 taps' A fragments are then ldmatrix reads of the same haloed tile shifted by
 * (dy, dx), so each input pixel crosses L2 -> smem about (1 + 2/TH)(1 + 2/TW) times per time tap
 * instead of 9. 8 warps of 64x48 as the 256x96 tile; 3 stages; smem pixel rows of HK + 8 bf16
 * (48 bytes: 8 consecutive pixels hit 8 distinct 16-byte bank groups). */
#define HALO_BM     256
#define HALO_BN     96
#define HALO_PX     400           /* the largest haloed tile: (4 + 2) x (64 + 2) = 396 */
#define HALO_EPI_LD (HALO_BN + 8) /* fp32 row of the staged epilogue (conflict-free float2) */

__device__ __forceinline__ const bf16 *halo_frame(const ConvArgs &a, int si) {
    const wmcuda_vae_conv_desc &d = a.d;
    if (si >= 0) return (const bf16 *)d.x + (size_t)si * a.fe;
    return d.hist ? (const bf16 *)d.hist + (size_t)(si + d.hist_n) * a.fe : nullptr;
}

/* The second half of the staged epilogue: st [HALO_BM][HALO_EPI_LD] fp32 (bias added) -> y. */
template <class Pos>
__device__ __forceinline__ void halo_store_staged(const ConvArgs &a, int n0, const float *st,
                                                  Pos pos) {
    const wmcuda_vae_conv_desc &d = a.d;
    constexpr int CH = HALO_BN / 8; /* 16-byte chunks of bf16 per row */
    for (int i = threadIdx.x; i < HALO_BM * CH; i += blockDim.x) {
        const int ml = i / CH, nl = (i - ml * CH) * 8, n = n0 + nl;
        const size_t pp = pos(ml);
        if (pp == NO_POS || n >= d.cout) continue;
        const size_t o = pp * (size_t)d.cout + (size_t)n;
        float v[8];
        *(float4 *)v = *(const float4 *)(st + ml * HALO_EPI_LD + nl);
        *(float4 *)(v + 4) = *(const float4 *)(st + ml * HALO_EPI_LD + nl + 4);
        if (d.res) {
            const uint4 r = *(const uint4 *)((const bf16 *)d.res + o);
            const bf16 *re = (const bf16 *)&r;
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] += __bfloat162float(re[k]);
        }
        if (d.clamp)
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = fminf(fmaxf(v[k], -1.0f), 1.0f);
        if (d.y_f32) {
            *(float4 *)((float *)d.y + o) = *(const float4 *)v;
            *(float4 *)((float *)d.y + o + 4) = *(const float4 *)(v + 4);
        } else {
            uint4 out;
            __nv_bfloat162 *oe = (__nv_bfloat162 *)&out;
#pragma unroll
            for (int k = 0; k < 4; k++) oe[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
            *(uint4 *)((bf16 *)d.y + o) = out;
        }
    }
}

/* The staged epilogue: the fragments (+ bias) as fp32 into smem, then 16-byte coalesced
 * residual loads and stores of 8 channels per thread. Plain bf16 or fp32 output, cout % 8 == 0,
 * no fused norm (conv_epilogue does that). The caller has made the smem free. */
template <int WM, int WN, int MI, int NI, class Pos>
__device__ __forceinline__ void halo_epilogue_staged(const ConvArgs &a, float (&acc)[MI][NI][4],
                                                     int n0, unsigned char *smem_raw, Pos pos) {
    const wmcuda_vae_conv_desc &d = a.d;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wn = warp / WM;
    float *st = (float *)smem_raw; /* [HALO_BM][HALO_EPI_LD] */
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int ml = wm * MI * 16 + mi * 16 + (lane >> 2) + h * 8;
#pragma unroll
            for (int ni = 0; ni < NI; ni++) {
                const int nl = wn * NI * 8 + ni * 8 + (lane & 3) * 2, n = n0 + nl;
                float v0 = acc[mi][ni][2 * h], v1 = acc[mi][ni][2 * h + 1];
                if (d.bias && n < d.cout) v0 += d.bias[n], v1 += d.bias[n + 1];
                *(float2 *)(st + ml * HALO_EPI_LD + nl) = make_float2(v0, v1);
            }
        }
    __syncthreads();
    halo_store_staged(a, n0, st, pos);
}

/* HK input channels per K stage (16 or 32), HST pipeline stages; STG: the staged epilogue where it
 * applies (else the fragment one). */
template <int HK, int HST, bool STG>
__global__ void __launch_bounds__(256, 1) conv_halo_kernel(const ConvArgs a) {
    constexpr int WM = 4, WN = 2, MI = 4, NI = 6, NT = 256, KCH = HK / 8, HLDS = HK + 8;
    constexpr int HSTAGES = HST;
    constexpr int A_IT = (HALO_PX * KCH + NT - 1) / NT, B_IT = (9 * HALO_BN * KCH + NT - 1) / NT;
    constexpr int A_ELEMS = HALO_PX * HLDS, B_ELEMS = 9 * HALO_BN * HLDS;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *As = (bf16 *)smem_raw;
    bf16 *Bs = As + HSTAGES * A_ELEMS;
    const wmcuda_vae_conv_desc &d = a.d;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wn = warp / WM;
    const int ntn = (d.cout + HALO_BN - 1) / HALO_BN;
    const int nn = (int)(blockIdx.x % ntn), mt = (int)(blockIdx.x / ntn);
    const int n0 = nn * HALO_BN;
    const int tx0 = mt % a.ntx, ty0 = mt / a.ntx % a.nty, t = mt / (a.ntx * a.nty);
    const int x0 = tx0 * a.tw, y0 = ty0 * a.th;
    const int hw = a.tw + 2, npx = (a.th + 2) * hw;
    const int kc = (tid % KCH) * 8; /* NT % KCH == 0: every chunk this thread copies has kc */

    /* the haloed pixels this thread copies: element offset in a frame (-1: zero) and smem row */
    int goff[A_IT], srow[A_IT];
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
        const int p = (tid + i * NT) / KCH;
        const int hy = p / hw, hx = p - hy * hw, gy = y0 - 1 + hy, gx = x0 - 1 + hx;
        const bool v = p < npx && gy >= 0 && gy < d.hin && gx >= 0 && gx < d.win;
        goff[i] = v ? (gy * d.win + gx) * d.cin + kc : -1;
        srow[i] = p < npx ? p : -1;
    }
    const int ksteps = a.cchunks * d.kt;
    auto load = [&](int ks, int stage) {
        const int dt = ks % d.kt, cb = ks / d.kt * HK;
        const bool cok = cb + kc < d.cin;
        const bf16 *fp = halo_frame(a, t + dt - d.hist_n);
        bf16 *as = As + stage * A_ELEMS;
#pragma unroll
        for (int i = 0; i < A_IT; i++) {
            if (srow[i] < 0) continue;
            const bool v = fp && cok && goff[i] >= 0;
            cp_async_ca(as + srow[i] * HLDS + kc, v ? fp + goff[i] + cb : (const bf16 *)d.x,
                        v ? 16 : 0);
        }
        bf16 *bs = Bs + stage * B_ELEMS;
#pragma unroll
        for (int j = 0; j < B_IT; j++) {
            const int r = (tid + j * NT) / KCH; /* tap * BN + n */
            if (r >= 9 * HALO_BN) continue;
            const int tap = r / HALO_BN, n = r - tap * HALO_BN, ng = n0 + n;
            const bool v = ng < d.cout && cok;
            const bf16 *src = v ? (const bf16 *)d.w + (size_t)ng * (size_t)a.K +
                                      (size_t)((dt * 9 + tap) * d.cin + cb + kc)
                                : (const bf16 *)d.w;
            cp_async_cg(bs + r * HLDS + kc, src, v ? 16 : 0);
        }
    };

    /* each fragment's 16 rows are 16 consecutive columns of one tile row (TW % 16 == 0) */
    int abase[MI];
#pragma unroll
    for (int mi = 0; mi < MI; mi++) {
        const int ml = wm * MI * 16 + mi * 16 + (lane & 15);
        const int ty = ml / a.tw, tx = ml - ty * a.tw;
        abase[mi] = (ty * hw + tx) * HLDS + (lane >> 4) * 8;
    }
    const int bbase =
        (wn * NI * 8 + (lane & 7) + ((lane >> 4) << 3)) * HLDS + ((lane >> 3) & 1) * 8;

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NI; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < HSTAGES - 1; s++) {
        if (s < ksteps) load(s, s);
        cp_async_commit();
    }
    for (int ks = 0; ks < ksteps; ks++) {
        cp_async_wait<HSTAGES - 2>();
        __syncthreads();
        const int nxt = ks + HSTAGES - 1;
        if (nxt < ksteps) load(nxt, nxt % HSTAGES);
        cp_async_commit();
        const bf16 *as = As + (ks % HSTAGES) * A_ELEMS;
        const bf16 *bs = Bs + (ks % HSTAGES) * B_ELEMS;
#pragma unroll
        for (int tk = 0; tk < 9 * (HK / 16); tk++) {
            const int tap = tk / (HK / 16), kk = tk % (HK / 16) * 16;
            const int sh = ((tap / 3) * hw + tap % 3) * HLDS + kk;
            uint32_t af[MI][4], bfr[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; mi++) ldsm_x4(af[mi], as + abase[mi] + sh);
#pragma unroll
            for (int nj = 0; nj < NI / 2; nj++) {
                uint32_t r[4];
                ldsm_x4(r, bs + tap * HALO_BN * HLDS + bbase + nj * 16 * HLDS + kk);
                bfr[2 * nj][0] = r[0], bfr[2 * nj][1] = r[1];
                bfr[2 * nj + 1][0] = r[2], bfr[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < MI; mi++)
#pragma unroll
                for (int ni = 0; ni < NI; ni++)
                    mma_bf16(acc[mi][ni], af[mi], bfr[ni][0], bfr[ni][1]);
        }
    }
    cp_async_wait<0>();
    auto pos = [&](int ml) {
        const int ty = ml / a.tw, tx = ml - ty * a.tw, yo = y0 + ty, xo = x0 + tx;
        return yo < d.hout && xo < d.wout ? out_pos(a, (t * d.hout + yo) * d.wout + xo) : NO_POS;
    };
    const bool staged = STG && !d.ngamma && d.cout % 8 == 0;
    if (d.ngamma || staged) __syncthreads(); /* the epilogue reuses the operand tiles */
    if (staged)
        halo_epilogue_staged<WM, WN, MI, NI>(a, acc, n0, smem_raw, pos);
    else
        conv_epilogue<WM, WN, MI, NI>(a, acc, n0, smem_raw, pos);
}

template <int HK, int HST, bool STG> int launch_conv_halo(ConvArgs a, cudaStream_t st) {
    size_t smem = (size_t)HST * (HALO_PX + 9 * HALO_BN) * (HK + 8) * sizeof(bf16);
    const size_t epi = (size_t)HALO_BM * HALO_EPI_LD * sizeof(float);
    if (STG && smem < epi) smem = epi;
    a.cchunks = (a.d.cin + HK - 1) / HK;
    /* the tile width of 64, 32 or 16 columns that pads the frame least (ties: the wider) */
    long best = -1;
    for (int tw = 64; tw >= 16; tw /= 2) {
        const int th = HALO_BM / tw;
        const long area = (long)((a.d.wout + tw - 1) / tw * tw) * ((a.d.hout + th - 1) / th * th);
        if (best < 0 || area < best) best = area, a.tw = tw, a.th = th;
    }
    a.ntx = (a.d.wout + a.tw - 1) / a.tw, a.nty = (a.d.hout + a.th - 1) / a.th;
    static int attr_device = -1;
    int dev = 0;
    WM_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != attr_device) {
        WM_CUDA_CHECK(cudaFuncSetAttribute(conv_halo_kernel<HK, HST, STG>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_device = dev;
    }
    const size_t blocks = (size_t)a.d.t_out * a.nty * a.ntx * ((a.d.cout + HALO_BN - 1) / HALO_BN);
    conv_halo_kernel<HK, HST, STG><<<(unsigned)blocks, 256, smem, st>>>(a);
    WM_CUDA_CHECK_LAUNCH(conv_halo_kernel);
    return 0;
}

/* ---- the haloed 3x3 conv on wgmma (sm_90a) ----------------------------------------------------
 * The haloed tile of conv_halo_kernel (4 x 64 positions x 96 channels, 16-channel K stages) with
 * the products on wgmma: two warpgroups, each two m64n96k16 per tap (its two tile rows). Both
 * operands are read from smem through descriptors in the non-swizzled K-major layout: 16-byte
 * core-matrix rows, [k chunk][pixel] for the haloed input (so a tap's A is the same layout started
 * dy rows and dx pixels later), [k chunk][tap][n] for the weights. 4 buffers, loads 2 stages
 * ahead, one wgmma group in flight. Needs wout % 64 == 0 (a 64-row A block is one tile row), no
 * fused norm, cout % 8 == 0 (staged epilogue). */
#define WG_ST 4
#define WG_PD 2 /* load distance */
#define HK_WG 16

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ uint64_t wg_desc(const void *smem, int lbo, int sbo) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    return (uint64_t)((s & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) |
           ((uint64_t)(sbo >> 4) << 32);
}

__device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* keeps the compiler from moving accumulator reads or writes across a wgmma issue or wait */
__device__ __forceinline__ void wg_fence_acc(float (&acc)[2][48]) {
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int e = 0; e < 48; e++) asm volatile("" : "+f"(acc[j][e])::"memory");
}
__device__ __forceinline__ void fence_async_smem() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* d (64 x 96 fp32 of a warpgroup) += A (64 x 16, desc) * B (16 x 96, desc) */
__device__ __forceinline__ void wg_m64n96k16(float (&d)[48], uint64_t da, uint64_t db) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n96k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, "
                 "%6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, "
                 "%23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, "
                 "%39, %40, %41, %42, %43, %44, %45, %46, %47}, %48, %49, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),
                   "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                   "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),
                   "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
                 : "l"(da), "l"(db), "r"(1)
                 : "memory");
}
#endif

__global__ void __launch_bounds__(256, 1) conv_halo_wg_kernel(const ConvArgs a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int NT = 256, KCH = HK_WG / 8, TW = 64, HW = TW + 2;
    constexpr int A_IT = (HALO_PX * KCH + NT - 1) / NT, B_IT = (9 * HALO_BN * KCH + NT - 1) / NT;
    constexpr int A_ELEMS = HALO_PX * HK_WG, B_ELEMS = 9 * HALO_BN * HK_WG;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *As = (bf16 *)smem_raw;
    bf16 *Bs = As + WG_ST * A_ELEMS;
    const wmcuda_vae_conv_desc &d = a.d;
    const int tid = threadIdx.x, g = tid >> 7;
    const int ntn = (d.cout + HALO_BN - 1) / HALO_BN;
    const int nn = (int)(blockIdx.x % ntn), mt = (int)(blockIdx.x / ntn);
    const int n0 = nn * HALO_BN;
    const int tx0 = mt % a.ntx, ty0 = mt / a.ntx % a.nty, t = mt / (a.ntx * a.nty);
    const int x0 = tx0 * TW, y0 = ty0 * 4;
    constexpr int npx = 6 * HW;
    const int kci = tid % KCH, kc = kci * 8;

    int goff[A_IT], srow[A_IT];
#pragma unroll
    for (int i = 0; i < A_IT; i++) {
        const int p = (tid + i * NT) / KCH;
        const int hy = p / HW, hx = p - hy * HW, gy = y0 - 1 + hy, gx = x0 - 1 + hx;
        const bool v = p < npx && gy >= 0 && gy < d.hin && gx >= 0 && gx < d.win;
        goff[i] = v ? (gy * d.win + gx) * d.cin + kc : -1;
        srow[i] = p < npx ? (kci * HALO_PX + p) * 8 : -1;
    }
    const int ksteps = a.cchunks * d.kt;
    auto load = [&](int ks, int stage) {
        const int dt = ks % d.kt, cb = ks / d.kt * HK_WG;
        const bool cok = cb + kc < d.cin;
        const bf16 *fp = halo_frame(a, t + dt - d.hist_n);
        bf16 *as = As + stage * A_ELEMS;
#pragma unroll
        for (int i = 0; i < A_IT; i++) {
            if (srow[i] < 0) continue;
            const bool v = fp && cok && goff[i] >= 0;
            cp_async_ca(as + srow[i], v ? fp + goff[i] + cb : (const bf16 *)d.x, v ? 16 : 0);
        }
        bf16 *bs = Bs + stage * B_ELEMS;
#pragma unroll
        for (int j = 0; j < B_IT; j++) {
            const int r = (tid + j * NT) / KCH; /* tap * BN + n */
            if (r >= 9 * HALO_BN) continue;
            const int tap = r / HALO_BN, n = r - tap * HALO_BN, ng = n0 + n;
            const bool v = ng < d.cout && cok;
            const bf16 *src = v ? (const bf16 *)d.w + (size_t)ng * (size_t)a.K +
                                      (size_t)((dt * 9 + tap) * d.cin + cb + kc)
                                : (const bf16 *)d.w;
            cp_async_cg(bs + (kci * 9 * HALO_BN + r) * 8, src, v ? 16 : 0);
        }
    };

    float acc[2][48];
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int e = 0; e < 48; e++) acc[j][e] = 0.0f;
#pragma unroll
    for (int s = 0; s < WG_PD; s++) {
        if (s < ksteps) load(s, s);
        cp_async_commit();
    }
    for (int ks = 0; ks < ksteps; ks++) {
        cp_async_wait<WG_PD - 1>(); /* stage ks landed (this thread's copies) */
        fence_async_smem();         /* ... and is visible to the tensor cores' async proxy */
        __syncthreads(); /* everyone's copies; every warpgroup's wgmma of stage ks-2 done */
        if (ks + WG_PD < ksteps) load(ks + WG_PD, (ks + WG_PD) % WG_ST);
        cp_async_commit();
        const bf16 *as = As + (ks % WG_ST) * A_ELEMS;
        const bf16 *bs = Bs + (ks % WG_ST) * B_ELEMS;
        wg_fence_acc(acc);
        wg_fence();
#pragma unroll
        for (int tap = 0; tap < 9; tap++) {
            const int dy = tap / 3, dx = tap % 3;
            const uint64_t db = wg_desc(bs + tap * HALO_BN * 8, 9 * HALO_BN * 16, 128);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const uint64_t da =
                    wg_desc(as + ((2 * g + j + dy) * HW + dx) * 8, HALO_PX * 16, 128);
                wg_m64n96k16(acc[j], da, db);
            }
        }
        wg_commit();
        wg_wait<1>();
        wg_fence_acc(acc);
    }
    wg_wait<0>();
    wg_fence_acc(acc);
    cp_async_wait<0>();
    __syncthreads(); /* the staging reuses the operand buffers */
    /* accumulator layout: warp w of the warpgroup holds rows 16w..16w+15 of each m64 block, as
     * the m16n8 fragments: d[4i + e] at row lane/4 (+8 for e >= 2), column 8i + 2(lane%4) + e%2 */
    float *st = (float *)smem_raw;
    const int lane = tid & 31, w4 = (tid >> 5) & 3;
#pragma unroll
    for (int j = 0; j < 2; j++)
#pragma unroll
        for (int i = 0; i < HALO_BN / 8; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int ml = g * 128 + j * 64 + w4 * 16 + (lane >> 2) + h * 8;
                const int nl = i * 8 + (lane & 3) * 2, n = n0 + nl;
                float v0 = acc[j][4 * i + 2 * h], v1 = acc[j][4 * i + 2 * h + 1];
                if (d.bias && n < d.cout) v0 += d.bias[n], v1 += d.bias[n + 1];
                *(float2 *)(st + ml * HALO_EPI_LD + nl) = make_float2(v0, v1);
            }
    __syncthreads();
    halo_store_staged(a, n0, st, [&](int ml) {
        const int yo = y0 + (ml >> 6), xo = x0 + (ml & 63);
        return yo < d.hout && xo < d.wout ? out_pos(a, (t * d.hout + yo) * d.wout + xo) : NO_POS;
    });
#else
    __trap(); /* launched only on sm_90 devices, which run the sm_90a code */
#endif
}

int launch_conv_halo_wg(ConvArgs a, cudaStream_t st) {
    size_t smem = (size_t)WG_ST * (HALO_PX + 9 * HALO_BN) * HK_WG * sizeof(bf16);
    const size_t epi = (size_t)HALO_BM * HALO_EPI_LD * sizeof(float);
    if (smem < epi) smem = epi;
    a.cchunks = (a.d.cin + HK_WG - 1) / HK_WG;
    a.tw = 64, a.th = 4;
    a.ntx = (a.d.wout + 63) / 64, a.nty = (a.d.hout + 3) / 4;
    static int attr_device = -1;
    int dev = 0;
    WM_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != attr_device) {
        WM_CUDA_CHECK(cudaFuncSetAttribute(conv_halo_wg_kernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_device = dev;
    }
    const size_t blocks = (size_t)a.d.t_out * a.nty * a.ntx * ((a.d.cout + HALO_BN - 1) / HALO_BN);
    conv_halo_wg_kernel<<<(unsigned)blocks, 256, smem, st>>>(a);
    WM_CUDA_CHECK_LAUNCH(conv_halo_wg_kernel);
    return 0;
}

/* Whether this device runs the sm_90a code (compute capability 9.0), cached per device. */
bool device_is_sm90() {
    static int cached_dev = -1, is90 = 0;
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (dev != cached_dev) {
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        is90 = major == 9 && minor == 0, cached_dev = dev;
    }
    return is90 != 0;
}

template <int WM, int WN, int MI, int NI, int BK> int launch_conv(ConvArgs a, cudaStream_t st) {
    constexpr int BM = WM * MI * 16, BN = WN * NI * 8, NT = WM * WN * 32;
    const size_t smem = (size_t)KCfg<BK>::STAGES * (BM + BN) * KCfg<BK>::LDS * sizeof(bf16);
    a.cchunks = (a.d.cin + BK - 1) / BK;
    a.ksteps = a.d.kt * a.d.kh * a.d.kw * a.cchunks;
    /* the shared-memory opt-in once per instantiation and device, so that a captured launch
     * makes no attribute call */
    static int attr_device = -1;
    int dev = 0;
    WM_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev != attr_device) {
        WM_CUDA_CHECK(cudaFuncSetAttribute(conv_kernel<WM, WN, MI, NI, BK>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_device = dev;
    }
    const size_t blocks = (size_t)((a.M + BM - 1) / BM) * (size_t)((a.d.cout + BN - 1) / BN);
    conv_kernel<WM, WN, MI, NI, BK><<<(unsigned)blocks, NT, smem, st>>>(a);
    WM_CUDA_CHECK_LAUNCH(conv_kernel);
    return 0;
}

} // namespace

extern "C" void wmcuda_vae_conv_desc_init(wmcuda_vae_conv_desc *d) {
    *d = wmcuda_vae_conv_desc{};
    d->kt = d->kh = d->kw = 1;
    d->tstride = d->sstride = 1;
    d->spadx = -1;
    d->tmul = 1;
    d->ostride = 1;
}

static int auto_tile(int cout) {
    return cout % 192 == 0  ? WMCUDA_VAE_TILE_128x192
           : cout % 96 == 0 ? WMCUDA_VAE_TILE_256x96
                            : WMCUDA_VAE_TILE_128x16;
}

static int tile_bn(int tile) {
    switch (tile) {
    case WMCUDA_VAE_TILE_128x192:
    case WMCUDA_VAE_TILE_128x192_K64:
        return 192;
    case WMCUDA_VAE_TILE_256x96_K64:
    case WMCUDA_VAE_TILE_256x96:
    case WMCUDA_VAE_TILE_128x96:
    case WMCUDA_VAE_TILE_HALO:
    case WMCUDA_VAE_TILE_HALO_K32:
    case WMCUDA_VAE_TILE_HALO_FRAG:
    case WMCUDA_VAE_TILE_HALO_WG:
        return 96;
    case WMCUDA_VAE_TILE_128x16:
        return 16;
    case WMCUDA_VAE_TILE_128x128:
        return 128;
    default:
        return 0;
    }
}

extern "C" int wmcuda_vae_conv_halo_ok(const wmcuda_vae_conv_desc *d) {
    const int csplit = d->csplit ? d->csplit : d->cout;
    return d->kh == 3 && d->kw == 3 && d->tstride == 1 && d->sstride == 1 && !d->up2 &&
           d->spad == 1 && (d->spadx == 1 || d->spadx < 0) && d->hout == d->hin &&
           d->wout == d->win && d->ostride == 1 && d->oy0 == 0 && d->ox0 == 0 && d->f0 == 0 &&
           d->tmul == 1 && csplit == d->cout && (!d->hfull || d->hfull == d->hout) &&
           (!d->wfull || d->wfull == d->wout) &&
           (size_t)d->hin * (size_t)d->win * (size_t)d->cin < (size_t)INT32_MAX;
}

extern "C" int wmcuda_vae_conv_fuses_norm(int cout) {
    return cout > 0 && cout <= tile_bn(auto_tile(cout));
}

extern "C" int wmcuda_vae_conv(const wmcuda_vae_conv_desc *dp, void *stream) {
    const char *fn = "vae_conv";
    if (!dp) return bad_args(fn, "NULL descriptor");
    const wmcuda_vae_conv_desc &d = *dp;
    if (!d.x || !d.w || (!d.y && !d.ny)) return bad_args(fn, "NULL x, w or y");
    if (d.cin <= 0 || d.cin % 8 || d.cout <= 0 || d.hin <= 0 || d.win <= 0 || d.t_out < 0 ||
        d.hout <= 0 || d.wout <= 0 || d.kt <= 0 || d.kh <= 0 || d.kw <= 0 || d.hist_n < 0 ||
        d.tstride <= 0 || d.sstride <= 0 || d.spad < 0 || d.tmul <= 0 || d.f0 < 0 ||
        d.ostride <= 0 || d.oy0 < 0 || d.ox0 < 0 || d.hfull < 0 || d.wfull < 0)
        return bad_args(fn, "sizes (cin must be a positive multiple of 8)");
    const int csplit = d.csplit ? d.csplit : d.cout;
    if (d.cout % csplit) return bad_args(fn, "cout must be a multiple of csplit");
    if (!al16(d.x) || !al16(d.w) || (d.hist && !al16(d.hist)) || (d.y && !al16(d.y)) ||
        (d.res && !al16(d.res)) || (d.ny && !al16(d.ny)))
        return bad_args(fn, "x, hist, w, res, y and ny must be 16-byte aligned");
    if (d.res && csplit != d.cout) return bad_args(fn, "res needs the plain channel layout");
    int tile = d.tile ? d.tile : auto_tile(d.cout);
    const bool halo = tile == WMCUDA_VAE_TILE_HALO || tile == WMCUDA_VAE_TILE_HALO_K32 ||
                      tile == WMCUDA_VAE_TILE_HALO_FRAG;
    if (tile == WMCUDA_VAE_TILE_HALO_WG &&
        (d.wout % 64 || d.ngamma || d.cout % 8 || !device_is_sm90()))
        tile = WMCUDA_VAE_TILE_HALO;
    if ((halo || tile == WMCUDA_VAE_TILE_HALO) && !wmcuda_vae_conv_halo_ok(&d))
        tile = auto_tile(d.cout);
    if (!tile_bn(tile)) return bad_args(fn, "unknown tile");
    if ((d.ngamma != NULL) != (d.ny != NULL) ||
        (d.ngamma && (csplit != d.cout || d.cout > tile_bn(tile))))
        return bad_args(fn, "the fused norm needs ngamma and ny, csplit = cout and one N tile");
    const size_t M = (size_t)d.t_out * (size_t)d.hout * (size_t)d.wout;
    if (M >= (size_t)INT32_MAX || (size_t)d.hout * d.wout >= (size_t)INT32_MAX)
        return bad_args(fn, "too many output positions");
    if (M == 0) return 0;
    ConvArgs a;
    a.d = d;
    a.d.csplit = csplit;
    if (a.d.spadx < 0) a.d.spadx = d.spad;
    a.M = (int)M;
    a.HWo = d.hout * d.wout;
    a.wf = d.wfull ? d.wfull : d.wout;
    a.HWf = (size_t)(d.hfull ? d.hfull : d.hout) * (size_t)a.wf;
    a.K = d.kt * d.kh * d.kw * d.cin;
    a.hl = d.up2 ? 2 * d.hin : d.hin;
    a.wl = d.up2 ? 2 * d.win : d.win;
    a.fe = (size_t)d.hin * (size_t)d.win * (size_t)d.cin;
    const cudaStream_t st = (cudaStream_t)stream;
    switch (tile) {
    case WMCUDA_VAE_TILE_128x192:
        return launch_conv<2, 4, 4, 6, 32>(a, st);
    case WMCUDA_VAE_TILE_256x96:
        return launch_conv<4, 2, 4, 6, 32>(a, st);
    case WMCUDA_VAE_TILE_128x96:
        return launch_conv<2, 2, 4, 6, 32>(a, st);
    case WMCUDA_VAE_TILE_128x192_K64:
        return launch_conv<2, 4, 4, 6, 64>(a, st);
    case WMCUDA_VAE_TILE_256x96_K64:
        return launch_conv<4, 2, 4, 6, 64>(a, st);
    case WMCUDA_VAE_TILE_128x128:
        return launch_conv<2, 4, 4, 4, 32>(a, st);
    case WMCUDA_VAE_TILE_HALO:
        return launch_conv_halo<16, 3, true>(a, st);
    case WMCUDA_VAE_TILE_HALO_K32:
        return launch_conv_halo<32, 2, true>(a, st);
    case WMCUDA_VAE_TILE_HALO_FRAG:
        return launch_conv_halo<16, 3, false>(a, st);
    case WMCUDA_VAE_TILE_HALO_WG:
        return launch_conv_halo_wg(a, st);
    default:
        return launch_conv<8, 1, 1, 2, 32>(a, st);
    }
}

/* ---- RMS norm (+SiLU) ---------------------------------------------------------------------------
 */

/* G lanes per position, each holding up to 4 chunks of 8 channels in registers. Floor: read and
 * write the tensor once (4 * npos * C bytes). */
template <int G>
__global__ void rms_norm_kernel(const bf16 *x, bf16 *y, size_t npos, int C, const float *gamma,
                                int silu) {
    const size_t gid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t p = gid / G;
    const int j = (int)(gid % G), nch = C >> 3;
    const bool ok = p < npos;
    uint4 v[4];
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int ch = j + i * G;
        if (ok && ch < nch) {
            v[i] = *(const uint4 *)(x + p * (size_t)C + (size_t)ch * 8);
            const bf16 *e = (const bf16 *)&v[i];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const float f = __bfloat162float(e[k]);
                ss += f * f;
            }
        }
    }
#pragma unroll
    for (int o = G / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    /* max(||x||, eps): an all-zero position stays 0 (pitfall 2) */
    const float sc = sqrtf((float)C) / fmaxf(sqrtf(ss), 1e-12f);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int ch = j + i * G;
        if (ok && ch < nch) {
            const bf16 *e = (const bf16 *)&v[i];
            uint4 out;
            bf16 *oe = (bf16 *)&out;
#pragma unroll
            for (int k = 0; k < 8; k++) {
                float f = __bfloat162float(e[k]) * sc * gamma[ch * 8 + k];
                if (silu) f = f / (1.0f + __expf(-f));
                oe[k] = __float2bfloat16_rn(f);
            }
            *(uint4 *)(y + p * (size_t)C + (size_t)ch * 8) = out;
        }
    }
}

extern "C" int wmcuda_vae_rms_norm(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t npos, int C,
                                   const float *gamma, int silu, void *stream) {
    const char *fn = "vae_rms_norm";
    if (C <= 0 || C % 8 || C > 1024) return bad_args(fn, "C must be a multiple of 8, <= 1024");
    if (!x || !y || !gamma || !al16(x) || !al16(y)) return bad_args(fn, "pointers");
    if (npos == 0) return 0;
    const int nch = C / 8;
    const cudaStream_t st = (cudaStream_t)stream;
    const bf16 *bx = (const bf16 *)x;
    bf16 *by = (bf16 *)y;
    if (nch <= 16) {
        rms_norm_kernel<4>
            <<<blocks_for(npos * 4), EW_THREADS, 0, st>>>(bx, by, npos, C, gamma, silu);
    } else if (nch <= 32) {
        rms_norm_kernel<8>
            <<<blocks_for(npos * 8), EW_THREADS, 0, st>>>(bx, by, npos, C, gamma, silu);
    } else if (nch <= 64) {
        rms_norm_kernel<16>
            <<<blocks_for(npos * 16), EW_THREADS, 0, st>>>(bx, by, npos, C, gamma, silu);
    } else {
        rms_norm_kernel<32>
            <<<blocks_for(npos * 32), EW_THREADS, 0, st>>>(bx, by, npos, C, gamma, silu);
    }
    WM_CUDA_CHECK_LAUNCH(rms_norm_kernel);
    return 0;
}

/* ---- decoder head from per-tap partial products -------------------------------------------------
 */

__global__ void head_taps_kernel(const float *P, int T, int H, int W, int pc, int oc,
                                 const float *bias, int clamp, float *y) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const size_t HW = (size_t)H * (size_t)W;
    if (p >= (size_t)T * HW) return;
    const int t = (int)(p / HW), hw = (int)(p % HW), yy = hw / W, xx = hw % W;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int dt = 0; dt < 3; dt++)
        for (int dy = 0; dy < 3; dy++) {
            const int sy = yy + dy - 1;
            if (sy < 0 || sy >= H) continue;
            for (int dx = 0; dx < 3; dx++) {
                const int sx = xx + dx - 1;
                if (sx < 0 || sx >= W) continue;
                const int tap = (dt * 3 + dy) * 3 + dx;
                const float *q =
                    P + (((size_t)(t + dt) * H + sy) * W + sx) * (size_t)pc + (size_t)tap * oc;
                for (int c = 0; c < oc; c++) acc[c] += q[c];
            }
        }
    for (int c = 0; c < oc; c++) {
        float v = acc[c] + (bias ? bias[c] : 0.0f);
        if (clamp) v = fminf(fmaxf(v, -1.0f), 1.0f);
        y[p * (size_t)oc + (size_t)c] = v;
    }
}

extern "C" int wmcuda_vae_head_taps(const float *P, int T, int H, int W, int pc, int oc,
                                    const float *bias, int clamp, float *y, void *stream) {
    if (!P || !y || T < 0 || H <= 0 || W <= 0 || oc <= 0 || oc > 4 || pc < 27 * oc)
        return bad_args("vae_head_taps", "sizes (oc <= 4, pc >= 27 oc) or NULL pointers");
    const size_t n = (size_t)T * (size_t)H * (size_t)W;
    if (n == 0) return 0;
    head_taps_kernel<<<blocks_for(n), EW_THREADS, 0, (cudaStream_t)stream>>>(P, T, H, W, pc, oc,
                                                                             bias, clamp, y);
    WM_CUDA_CHECK_LAUNCH(head_taps_kernel);
    return 0;
}

/* ---- the ends of the decoder and the encoder ----------------------------------------------------
 */

#define VAE_MAX_Z 32

__global__ void latent_in_kernel(const float *z, size_t npos, int zc, const float *mean,
                                 const float *std, const float *w, const float *b, bf16 *y) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npos) return;
    float v[VAE_MAX_Z];
    for (int c = 0; c < zc; c++) v[c] = z[(size_t)c * npos + p] * std[c] + mean[c];
    for (int o = 0; o < zc; o++) {
        float s = b[o];
        for (int c = 0; c < zc; c++) s += w[o * zc + c] * v[c];
        y[p * (size_t)zc + (size_t)o] = __float2bfloat16_rn(s);
    }
}

extern "C" int wmcuda_vae_latent_in(const float *z, size_t npos, int zc, const float *mean,
                                    const float *std, const float *w, const float *b,
                                    wmcuda_bf16 *y, void *stream) {
    if (zc <= 0 || zc > VAE_MAX_Z || !z || !mean || !std || !w || !b || !y)
        return bad_args("vae_latent_in", "zc in 1..32 and non-NULL pointers required");
    if (npos == 0) return 0;
    latent_in_kernel<<<blocks_for(npos), EW_THREADS, 0, (cudaStream_t)stream>>>(
        z, npos, zc, mean, std, w, b, (bf16 *)y);
    WM_CUDA_CHECK_LAUNCH(latent_in_kernel);
    return 0;
}

__global__ void frames_out_kernel(const float *x, size_t npos, uint8_t *rgb, float *frames) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npos) return;
    for (int c = 0; c < 3; c++) {
        const float f = x[p * 3 + (size_t)c];
        /* as vae_frames_to_rgb8: the cast truncates; NaN -> 0 */
        float v = (f + 1.0f) * 127.5f;
        v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
        rgb[p * 3 + (size_t)c] = (uint8_t)v;
        if (frames) frames[(size_t)c * npos + p] = f;
    }
}

extern "C" int wmcuda_vae_frames_out(const float *x, size_t npos, uint8_t *rgb, float *frames,
                                     void *stream) {
    if (!x || !rgb) return bad_args("vae_frames_out", "NULL x or rgb");
    if (npos == 0) return 0;
    frames_out_kernel<<<blocks_for(npos), EW_THREADS, 0, (cudaStream_t)stream>>>(x, npos, rgb,
                                                                                 frames);
    WM_CUDA_CHECK_LAUNCH(frames_out_kernel);
    return 0;
}

__global__ void frames_in_kernel(const float *frames, size_t npos, int cpad, bf16 *y) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npos) return;
    for (int c = 0; c < cpad; c++)
        y[p * (size_t)cpad + (size_t)c] =
            __float2bfloat16_rn(c < 3 ? frames[(size_t)c * npos + p] : 0.0f);
}

extern "C" int wmcuda_vae_frames_in(const float *frames, size_t npos, int cpad, wmcuda_bf16 *y,
                                    void *stream) {
    if (!frames || !y || cpad < 3) return bad_args("vae_frames_in", "NULL pointer or cpad < 3");
    if (npos == 0) return 0;
    frames_in_kernel<<<blocks_for(npos), EW_THREADS, 0, (cudaStream_t)stream>>>(frames, npos, cpad,
                                                                                (bf16 *)y);
    WM_CUDA_CHECK_LAUNCH(frames_in_kernel);
    return 0;
}

__global__ void latent_out_kernel(const float *x, size_t npos, int zc, const float *w,
                                  const float *b, const float *mean, const float *std, float *z) {
    const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npos) return;
    const int c2 = 2 * zc;
    const float *xp = x + p * (size_t)c2;
    for (int o = 0; o < zc; o++) { /* the log-variance half is dropped: mu only */
        float s = b[o];
        for (int c = 0; c < c2; c++) s += w[o * c2 + c] * xp[c];
        z[(size_t)o * npos + p] = (s - mean[o]) / std[o];
    }
}

extern "C" int wmcuda_vae_latent_out(const float *x, size_t npos, int zc, const float *w,
                                     const float *b, const float *mean, const float *std, float *z,
                                     void *stream) {
    if (zc <= 0 || zc > VAE_MAX_Z || !x || !w || !b || !mean || !std || !z)
        return bad_args("vae_latent_out", "zc in 1..32 and non-NULL pointers required");
    if (npos == 0) return 0;
    latent_out_kernel<<<blocks_for(npos), EW_THREADS, 0, (cudaStream_t)stream>>>(x, npos, zc, w, b,
                                                                                 mean, std, z);
    WM_CUDA_CHECK_LAUNCH(latent_out_kernel);
    return 0;
}
