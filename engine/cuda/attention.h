/* Fused softmax attention of the DiT on the GPU (FlashAttention-2 style: the scores never leave
 * the chip), for the two main attentions of a transformer block (model-dit.md 4.5 e, g):
 *
 *   self-attention: the forward's queries over the keys of the session's ring of W frame slots
 *     ([W][S][D] per layer), the slots each query frame may see given by a visibility table in
 *     device memory; invisible slots are skipped whole (never read), so an empty or stale slot
 *     costs nothing and its contents (even NaN) cannot leak in;
 *   cross-attention: the queries over the image-context keys (one "slot" of clip_tokens rows,
 *     no visibility table).
 *
 * For query row r (frame f = r / rows_per_frame_q) and head h:
 *   o[r][h*dh + d] = sum_n p_n v_n[h*dh + d],  p = softmax_n(scale * q[r][h*dh ..] . k_n[h*dh ..])
 * over the keys n of the slots j < nslots with vis[f*nslots + j] != 0 (all slots if vis is NULL);
 * slot j holds keys_per_slot rows at k + j*slot_stride, rows ldkv apart (v alike). A query with
 * no visible key gets zeros (as cpu_attention). Keys are visited in slot order; softmax is
 * invariant to it (model-dit.md 7.4).
 *
 * Precision: bf16 q, k, v, o; products on the tensor cores with fp32 accumulation; online
 * softmax in fp32 (exp2 with the scale folded in); the probabilities are rounded to bf16 for the
 * P.V product, as FlashAttention does.
 *
 * Graph capture: the launch reads the visibility table from device memory and its grid depends
 * only on lq and heads, so one block shape replays with the same parameters whatever the ring
 * holds. Nothing is allocated; each variant's shared-memory limit is raised (a host-side kernel
 * attribute) on its first launch on a device, so launch once before capturing (a warm-up
 * forward does).
 *
 * Requirements (else WMCUDA_EINVAL, message on stderr): dh in 32, 64, 128; q, k, v, o 16-byte
 * aligned; ldq, ldkv, ldo, slot_stride multiples of 8 elements and ld >= heads*dh; 1 <= nslots <=
 * WMCUDA_ATTN_MAX_SLOTS; keys_per_slot >= 1; rows_per_frame_q >= 1 when vis is given (vis then has
 * ceil(lq / rows_per_frame_q) rows of nslots bytes). lq = 0 is a no-op. Returns 0,
 * WMCUDA_EINVAL or -(cudaError_t) of a failed launch. */
#ifndef WM_ENGINE_CUDA_ATTENTION_H
#define WM_ENGINE_CUDA_ATTENTION_H

#include <stddef.h>

#include "engine/cuda/bf16.h"

#ifndef WMCUDA_EINVAL
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define WMCUDA_ATTN_MAX_SLOTS 16

typedef struct wmcuda_attn_args {
    const wmcuda_bf16 *q; /* [lq] rows of stride ldq, head h at column h*dh */
    int ldq, lq;
    const wmcuda_bf16 *k, *v; /* slot j, row n at k + j*slot_stride + n*ldkv */
    int ldkv;
    size_t slot_stride;
    int keys_per_slot, nslots;
    const unsigned char *vis; /* device [frames_q][nslots], 1 = visible; NULL: all visible */
    int rows_per_frame_q;
    int heads, dh;
    float scale;    /* 1 / sqrt(dh) for the DiT */
    wmcuda_bf16 *o; /* [lq] rows of stride ldo */
    int ldo;
} wmcuda_attn_args;

/* Tile configurations, for benchmarks; WMCUDA_ATTN_DEFAULT is what wmcuda_attention runs. Each
 * warp owns 32 query rows and walks the keys 64 (or 32) at a time. */
enum {
    WMCUDA_ATTN_M128_S2 = 0,     /* 4 warps, 128 query rows per block, K/V double-buffered */
    WMCUDA_ATTN_M256_S2 = 1,     /* 8 warps, 256 rows: half the K/V traffic from L2 */
    WMCUDA_ATTN_M256_S3 = 2,     /* 8 warps, 256 rows, three K/V stages */
    WMCUDA_ATTN_M128_N32 = 3,    /* as M128_S2 with 32-key tiles: fewer registers, more rescaling */
    WMCUDA_ATTN_M256_S3_N32 = 4, /* as M256_S3 with 32-key tiles */
    WMCUDA_ATTN_VARIANTS = 5
};
/* The fastest in tests/gpu/test_dit_kernels_gpu on an H200 (M128_S2, M256_S2, M256_S3 within
 * 1% of each other at the steady shape; BENCHMARKS.md). */
#define WMCUDA_ATTN_DEFAULT WMCUDA_ATTN_M256_S2

int wmcuda_attention(const wmcuda_attn_args *a, void *stream);
int wmcuda_attention_variant(const wmcuda_attn_args *a, int variant, void *stream);
const char *wmcuda_attention_variant_name(int variant);

#ifdef __cplusplus
}
#endif

#endif
