/* Fused attention (see attention.h): FlashAttention-2's schedule written with mma.sync.
 *
 * One block takes BM = 32 * WARPS query rows of one head; each warp owns 32 rows (two m16 atoms)
 * and keeps their fp32 output accumulators (32 x dh) and running max / sum in registers. The
 * block walks the keys of its visible slots 64 at a time as one flat sequence (slot list in
 * shared memory, so a tile may straddle two slots and only the sequence's last tile is partial):
 * cp.async brings each K and V tile into a ring of STAGES shared-memory buffers while the
 * previous tile is used; S = Q K^T (ldmatrix from a 16-byte-chunk XOR swizzle, so no bank
 * conflicts), masking only where a tile ends past the keys or the block's query frames see
 * different slots, the online softmax update in fp32 with exp2 and the scale folded in, then
 * O += P V with P taken straight from the S accumulators as bf16 A fragments.
 *
 * Floor (full size, universal steady state, per layer): 4 * 2640 * 5280 * 1536 = 85.6 GFLOP of
 * tensor-core work -> 86.6 us at the H100's 989 TFLOP/s (mma.sync reaches about two thirds of
 * that peak on Hopper; wgmma would be needed beyond). Memory: q, o 8.1 MB each + K, V of the
 * window 32.4 MB -> 14.5 us, so compute-bound; K/V tiles are read from L2 once per query block
 * (252 blocks x 2.7 MB = 680 MB per layer with BM = 128, half that with BM = 256). Cross-attention
 * over 257 image tokens: 4.17 GFLOP -> 4.2 us. Measured (H200, BENCHMARKS.md): 306 us per
 * steady-state layer = 280 TFLOP/s (28% of the datasheet), 29-31 us for the cross-attention.
 * The O rescale of the online softmax is skipped for tiles where no row of the warp finds a new
 * maximum. */
#include <cuda_bf16.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/cuda/attention.h"
#include "engine/cuda/cuda_check.h"

typedef __nv_bfloat16 bf16;

#define ROWS_PER_WARP 32 /* two m16 atoms */
#define MAX_DEVICES   64

struct attn_params {
    const bf16 *q, *k, *v;
    bf16 *o;
    const unsigned char *vis;
    size_t slot_stride;
    int ldq, lq, ldkv, kps, nslots, rpf, ldo;
    float sl2; /* scale * log2(e): scores go to exp2 */
};

/* ---- device helpers -------------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, bypassing L1; ok = false writes zeros and reads nothing. */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

static __device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t r[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t r[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c[16x8] += a[16x16] b[16x8], bf16 in, fp32 accumulate. */
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ float ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(lo)) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(hi)) << 16);
}

/* Position of 16-byte chunk ch of row r in a tile with C chunks per row: an XOR swizzle so that
 * the 8 rows an ldmatrix phase reads at one logical chunk fall in 8 different bank groups. */
template <int C>
static __device__ __forceinline__ uint32_t chunk_at(int r, int ch) {
    const int x = C >= 8 ? (r & 7) : ((r >> 1) & 3);
    return (uint32_t)(r * C + (ch ^ x)) * 16u;
}

/* Bit j set: frame f sees slot j. */
static __device__ __forceinline__ unsigned frame_bits(const unsigned char *vis, int f, int nslots) {
    unsigned b = 0;
    for (int j = 0; j < nslots; j++)
        if (vis[(size_t)f * nslots + j]) b |= 1u << j;
    return b;
}

/* Which entries of the block's slot list (the slots of `any`, in order) frame f sees. */
static __device__ __forceinline__ unsigned list_bits(const attn_params &p, int row, unsigned any) {
    const unsigned fb = frame_bits(p.vis, min(row, p.lq - 1) / p.rpf, p.nslots);
    unsigned b = 0;
    for (int j = 0, li = 0; j < p.nslots; j++) {
        if (!((any >> j) & 1u)) continue;
        if ((fb >> j) & 1u) b |= 1u << li;
        li++;
    }
    return b;
}

template <int HD, int NT, int BM>
static __device__ __forceinline__ void load_q(const attn_params &p, uint32_t sq, int m0, int h) {
    constexpr int C = HD / 8;
    for (int i = threadIdx.x; i < BM * C; i += NT) {
        const int r = i / C, ch = i % C, row = m0 + r;
        const bool ok = row < p.lq;
        const bf16 *src = ok ? p.q + (size_t)row * p.ldq + (size_t)h * HD + ch * 8 : p.q;
        cp_async16(sq + chunk_at<C>(r, ch), src, ok);
    }
}

/* Keys n0 .. n0 + BN - 1 of the flat sequence (zeros past nkeys). A thread copies chunk ch of
 * rows r0, r0 + R, ...; their (slot, row) follow from one division per tile. */
template <int HD, int NT, int BN>
static __device__ __forceinline__ void load_kv(const attn_params &p, const size_t *slot_off,
                                               uint32_t sk, uint32_t sv, int n0, int nkeys) {
    constexpr int C = HD / 8, R = NT / C;
    const int r0 = (int)threadIdx.x / C, ch = (int)threadIdx.x % C;
    int n = n0 + r0, li = n / p.kps, rr = n - li * p.kps;
#pragma unroll
    for (int r = r0; r < BN; r += R, n += R) {
        const bool ok = n < nkeys;
        const size_t off = ok ? slot_off[li] + (size_t)rr * p.ldkv + (size_t)ch * 8 : 0;
        const uint32_t at = chunk_at<C>(r, ch);
        cp_async16(sk + at, p.k + off, ok);
        cp_async16(sv + at, p.v + off, ok);
        for (rr += R; rr >= p.kps; rr -= p.kps) li++;
    }
}

/* ---- the kernel ------------------------------------------------------------------------------ */

template <int HD, int WARPS, int STAGES, int BN>
static __global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? 2 : 1)
    attn_kernel(const attn_params p) {
    constexpr int C = HD / 8, NT = WARPS * 32, BM = WARPS * ROWS_PER_WARP;
    constexpr int NJ = BN / 8;  /* n-tiles of S (keys) */
    constexpr int NO = HD / 8;  /* n-tiles of O (dims) */
    constexpr int KQ = HD / 16; /* k-steps of Q K^T */
    constexpr int KP = BN / 16; /* k-steps of P V */
    extern __shared__ __align__(128) unsigned char smem[];
    __shared__ size_t slot_off[WMCUDA_ATTN_MAX_SLOTS];
    __shared__ unsigned vis_any, vis_all;
    const uint32_t sq = smem_u32(smem);
    const uint32_t sk = sq + (uint32_t)(BM * HD * 2), sv = sk + (uint32_t)(STAGES * BN * HD * 2);
    constexpr uint32_t TILE = BN * HD * 2;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int m0 = blockIdx.x * BM, h = blockIdx.y;
    const int mlast = min(m0 + BM, p.lq) - 1;

    /* the slots any of the block's query frames sees, and whether they all see the same */
    const unsigned full = (1u << p.nslots) - 1u;
    if (tid == 0) vis_any = p.vis ? 0u : full, vis_all = full;
    __syncthreads();
    if (p.vis)
        for (int f = m0 / p.rpf + tid; f <= mlast / p.rpf; f += NT) {
            const unsigned b = frame_bits(p.vis, f, p.nslots);
            atomicOr(&vis_any, b);
            atomicAnd(&vis_all, b);
        }
    __syncthreads();
    const unsigned any = vis_any;
    const bool rowmask = any != vis_all;
    if (tid == 0)
        for (int j = 0, n = 0; j < p.nslots; j++)
            if ((any >> j) & 1u) slot_off[n++] = (size_t)j * p.slot_stride + (size_t)h * HD;
    const int nkeys = __popc(any) * p.kps;
    const int ntiles = (nkeys + BN - 1) / BN;
    __syncthreads();

    load_q<HD, NT, BM>(p, sq, m0, h);
    if (ntiles > 0) load_kv<HD, NT, BN>(p, slot_off, sk, sv, 0, nkeys);
    cp_async_commit();
#pragma unroll
    for (int s = 1; s < STAGES - 1; s++) {
        if (s < ntiles)
            load_kv<HD, NT, BN>(p, slot_off, sk + s * TILE, sv + s * TILE, s * BN, nkeys);
        cp_async_commit();
    }

    /* this thread's rows: atom a, half e -> warp row a*16 + e*8 + lane/4 (index a*2 + e) */
    const int wr = warp * ROWS_PER_WARP;
    /* ldmatrix addresses: every row a thread points at has the same swizzle key x (rows differ
     * by multiples of 8), and chunk 8u + 2i + c0 lands at 8u + ((2i + c0) ^ x); so four offsets
     * per operand and immediates cover every (row, chunk) the loops visit. Q and V rows: rA,
     * chunk bit lane/16; K rows: rB, chunk bit (lane/8)&1. */
    const int x = C >= 8 ? (lane & 7) : ((lane >> 1) & 3);
    const int rA = (lane & 7) + ((lane >> 3) & 1) * 8, rB = (lane & 7) + (lane >> 4) * 8;
    uint32_t qo[4], ko[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        qo[i] = (uint32_t)(((2 * i + (lane >> 4)) ^ x) * 16);
        ko[i] = (uint32_t)(((2 * i + ((lane >> 3) & 1)) ^ x) * 16);
    }
    const uint32_t qbase = sq + (uint32_t)((wr + rA) * C * 16);
    constexpr uint32_t ROW16 = 16u * C * 16u; /* bytes of 16 rows */
    float oacc[2][NO][4], mrow[4], lrow[4];
#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int j = 0; j < NO; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) oacc[a][j][e] = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) mrow[i] = -INFINITY, lrow[i] = 0.0f;

    for (int t = 0; t < ntiles; t++) {
        cp_async_wait<STAGES - 2>(); /* tile t (and q) landed for this thread */
        __syncthreads();             /* ... for every thread; tile t - 1's buffer is free */
        {
            const int tn = t + STAGES - 1, b = tn % STAGES;
            if (tn < ntiles)
                load_kv<HD, NT, BN>(p, slot_off, sk + b * TILE, sv + b * TILE, tn * BN, nkeys);
            cp_async_commit();
        }
        const uint32_t kbase = sk + (t % STAGES) * TILE + (uint32_t)(rB * C * 16);
        const uint32_t vbase = sv + (t % STAGES) * TILE + (uint32_t)(rA * C * 16);

        /* S = Q K^T */
        float s[2][NJ][4];
#pragma unroll
        for (int a = 0; a < 2; a++)
#pragma unroll
            for (int j = 0; j < NJ; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[a][j][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KQ; kk++) {
            uint32_t qa[2][4];
#pragma unroll
            for (int a = 0; a < 2; a++)
                ldsm_x4(qbase + a * ROW16 + qo[kk & 3] + (kk >> 2) * 128u, qa[a]);
#pragma unroll
            for (int pp = 0; pp < NJ / 2; pp++) {
                uint32_t kb[4];
                ldsm_x4(kbase + pp * ROW16 + ko[kk & 3] + (kk >> 2) * 128u, kb);
#pragma unroll
                for (int a = 0; a < 2; a++) {
                    mma_bf16(s[a][2 * pp], qa[a], kb[0], kb[1]);
                    mma_bf16(s[a][2 * pp + 1], qa[a], kb[2], kb[3]);
                }
            }
        }

        /* keys past the sequence, and slots a row's frame does not see: -inf */
        const int n0 = t * BN;
        if (n0 + BN > nkeys || rowmask) {
#pragma unroll
            for (int i = 0; i < 4; i++) { /* row a*16 + hf*8 + lane/4, i = a*2 + hf */
                /* rare (only where a block's frames see different slots): recomputed per tile
                 * rather than held in registers the main path needs */
                const unsigned lb =
                    rowmask ? list_bits(p, m0 + wr + i * 8 + (lane >> 2), any) : ~0u;
#pragma unroll
                for (int j = 0; j < NJ; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int n = n0 + j * 8 + 2 * (lane & 3) + e;
                        if (n >= nkeys || !((lb >> (n / p.kps)) & 1u))
                            s[i >> 1][j][2 * (i & 1) + e] = -INFINITY;
                    }
            }
        }

        /* online softmax: rows (a, half); the 4 lanes of a quad share a row. The O rescale is
         * skipped when no row of the warp has a new maximum (corr = 1 exactly): after the first
         * tiles that is most tiles, and it is 2 * dh multiplies per row. */
        float corr[4];
        bool grew = false;
#pragma unroll
        for (int a = 0; a < 2; a++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int ri = a * 2 + hf;
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < NJ; j++)
                    mx = fmaxf(mx, fmaxf(s[a][j][2 * hf], s[a][j][2 * hf + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mnew = fmaxf(mrow[ri], mx);
                grew |= mnew != mrow[ri];
                const float mu = mnew == -INFINITY ? 0.0f : mnew; /* nothing visible yet */
                corr[ri] = ex2((mrow[ri] - mu) * p.sl2);          /* 0 while mrow = -inf */
                const float mo = mu * p.sl2;
                mrow[ri] = mnew;
                float sum = 0.0f;
#pragma unroll
                for (int j = 0; j < NJ; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float pv = ex2(fmaf(s[a][j][2 * hf + e], p.sl2, -mo));
                        s[a][j][2 * hf + e] = pv;
                        sum += pv;
                    }
                lrow[ri] = lrow[ri] * corr[ri] + sum; /* this lane's share; quad-summed later */
            }
        if (__any_sync(0xffffffffu, grew))
#pragma unroll
            for (int a = 0; a < 2; a++)
#pragma unroll
                for (int j = 0; j < NO; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) oacc[a][j][e] *= corr[a * 2 + (e >> 1)];

        /* O += P V */
#pragma unroll
        for (int kk = 0; kk < KP; kk++) {
            uint32_t pa[2][4];
#pragma unroll
            for (int a = 0; a < 2; a++) {
                pa[a][0] = pack_bf16x2(s[a][2 * kk][0], s[a][2 * kk][1]);
                pa[a][1] = pack_bf16x2(s[a][2 * kk][2], s[a][2 * kk][3]);
                pa[a][2] = pack_bf16x2(s[a][2 * kk + 1][0], s[a][2 * kk + 1][1]);
                pa[a][3] = pack_bf16x2(s[a][2 * kk + 1][2], s[a][2 * kk + 1][3]);
            }
#pragma unroll
            for (int pp = 0; pp < NO / 2; pp++) {
                uint32_t vb[4];
                ldsm_x4_trans(vbase + kk * ROW16 + qo[pp & 3] + (pp >> 2) * 128u, vb);
#pragma unroll
                for (int a = 0; a < 2; a++) {
                    mma_bf16(oacc[a][2 * pp], pa[a], vb[0], vb[1]);
                    mma_bf16(oacc[a][2 * pp + 1], pa[a], vb[2], vb[3]);
                }
            }
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int a = 0; a < 2; a++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float l = lrow[a * 2 + hf];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const float inv = l > 0.0f ? 1.0f / l : 0.0f; /* no visible key: zeros */
            const int row = m0 + wr + a * 16 + hf * 8 + (lane >> 2);
            if (row >= p.lq) continue;
            bf16 *orow = p.o + (size_t)row * p.ldo + (size_t)h * HD + 2 * (lane & 3);
#pragma unroll
            for (int j = 0; j < NO; j++)
                *reinterpret_cast<uint32_t *>(orow + j * 8) =
                    pack_bf16x2(oacc[a][j][2 * hf] * inv, oacc[a][j][2 * hf + 1] * inv);
        }
}

/* ---- launch ---------------------------------------------------------------------------------- */

static int bad_args(const char *what) {
    fprintf(stderr, "wmcuda attention: invalid arguments: %s\n", what);
    return WMCUDA_EINVAL;
}

static bool al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

template <int HD, int WARPS, int STAGES, int BN>
static int launch(const attn_params &p, int heads, cudaStream_t st) {
    constexpr int BM = WARPS * ROWS_PER_WARP;
    const size_t smem = (size_t)(BM * HD + 2 * STAGES * BN * HD) * sizeof(bf16);
    /* raising the dynamic shared-memory limit is per device and per kernel: once each */
    static bool raised[MAX_DEVICES];
    int dev = 0;
    WM_CUDA_CHECK(cudaGetDevice(&dev));
    if (dev < 0 || dev >= MAX_DEVICES || !raised[dev]) {
        WM_CUDA_CHECK(cudaFuncSetAttribute(attn_kernel<HD, WARPS, STAGES, BN>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        if (dev >= 0 && dev < MAX_DEVICES) raised[dev] = true;
    }
    const dim3 grid((unsigned)((p.lq + BM - 1) / BM), (unsigned)heads);
    attn_kernel<HD, WARPS, STAGES, BN><<<grid, WARPS * 32, smem, st>>>(p);
    WM_CUDA_CHECK_LAUNCH(attn_kernel);
    return 0;
}

template <int HD>
static int launch_variant(const attn_params &p, int heads, int variant, cudaStream_t st) {
    switch (variant) {
    case WMCUDA_ATTN_M256_S2: return launch<HD, 8, 2, 64>(p, heads, st);
    case WMCUDA_ATTN_M256_S3: return launch<HD, 8, 3, 64>(p, heads, st);
    case WMCUDA_ATTN_M128_N32: return launch<HD, 4, 2, 32>(p, heads, st);
    case WMCUDA_ATTN_M256_S3_N32: return launch<HD, 8, 3, 32>(p, heads, st);
    default: return launch<HD, 4, 2, 64>(p, heads, st);
    }
}

extern "C" int wmcuda_attention_variant(const wmcuda_attn_args *a, int variant, void *stream) {
    if (!a) return bad_args("NULL arguments");
    if (a->lq < 0 || a->heads < 1 || a->heads > 65535)
        return bad_args("lq >= 0, 1 <= heads <= 65535");
    if (a->lq == 0) return 0;
    if (a->dh != 32 && a->dh != 64 && a->dh != 128) return bad_args("head width 32, 64 or 128");
    if (!a->q || !a->k || !a->v || !a->o || !al16(a->q) || !al16(a->k) || !al16(a->v) ||
        !al16(a->o))
        return bad_args("q, k, v, o must be 16-byte aligned device pointers");
    const int width = a->heads * a->dh;
    if (a->ldq % 8 || a->ldkv % 8 || a->ldo % 8 || a->slot_stride % 8 || a->ldq < width ||
        a->ldkv < width || a->ldo < width)
        return bad_args("ldq, ldkv, ldo, slot_stride multiples of 8 and ld >= heads * dh");
    if (a->nslots < 1 || a->nslots > WMCUDA_ATTN_MAX_SLOTS || a->keys_per_slot < 1 ||
        (long long)a->keys_per_slot * a->nslots > INT_MAX - 64)
        return bad_args("1 <= nslots <= 16 and keys_per_slot >= 1");
    if (a->vis && a->rows_per_frame_q < 1) return bad_args("rows_per_frame_q >= 1 with vis");
    if (!(a->scale > 0.0f) || !isfinite(a->scale)) return bad_args("scale > 0");
    if (variant < 0 || variant >= WMCUDA_ATTN_VARIANTS) return bad_args("unknown variant");
    attn_params p;
    p.q = (const bf16 *)a->q, p.k = (const bf16 *)a->k, p.v = (const bf16 *)a->v;
    p.o = (bf16 *)a->o, p.vis = a->vis, p.slot_stride = a->slot_stride;
    p.ldq = a->ldq, p.lq = a->lq, p.ldkv = a->ldkv, p.kps = a->keys_per_slot;
    p.nslots = a->nslots, p.rpf = a->vis ? a->rows_per_frame_q : 1, p.ldo = a->ldo;
    p.sl2 = a->scale * 1.4426950408889634f;
    const cudaStream_t st = (cudaStream_t)stream;
    switch (a->dh) {
    case 32: return launch_variant<32>(p, a->heads, variant, st);
    case 64: return launch_variant<64>(p, a->heads, variant, st);
    default: return launch_variant<128>(p, a->heads, variant, st);
    }
}

extern "C" int wmcuda_attention(const wmcuda_attn_args *a, void *stream) {
    return wmcuda_attention_variant(a, WMCUDA_ATTN_DEFAULT, stream);
}

extern "C" const char *wmcuda_attention_variant_name(int variant) {
    switch (variant) {
    case WMCUDA_ATTN_M128_S2: return "BM128 4 warps 2 stages";
    case WMCUDA_ATTN_M256_S2: return "BM256 8 warps 2 stages";
    case WMCUDA_ATTN_M256_S3: return "BM256 8 warps 3 stages";
    case WMCUDA_ATTN_M128_N32: return "BM128 4 warps 2 stages, 32 keys per tile";
    case WMCUDA_ATTN_M256_S3_N32: return "BM256 8 warps 3 stages, 32 keys per tile";
    default: return "?";
    }
}
