/* The CLIP image encoder (open-clip ViT-H/14 visual tower, model-vae-clip.md section 5) on one GPU:
 * the same function as the float32 CPU reference engine/clip.c, in bf16 with fp32 accumulation.
 *
 * Split: the preprocessing (bicubic squash to 224x224 with the bf16-rounded Normalize constants,
 * clip_preprocess) and the im2col of the 14x14 patches stay on the host: they are exact, cheap and
 * shared with the reference. The device runs the patch embedding (one GEMM over the 256 patches,
 * K padded from 588 to 592 with zeros), class token + positions + pre-norm (one fp32 kernel), then
 * layers_used blocks (31 of 32 for ViT-H): LN1, fused qkv GEMM, attention of 16 heads x 80 over
 * the 257 tokens (strided-batched score GEMM, row softmax, P.V GEMM), out-projection, residual,
 * LN2, fc1, exact (erf) GELU, fc2, residual; no post-norm, no head.
 *
 * Precision (5.5): weights bf16 (round to nearest even); GEMMs bf16 x bf16 -> fp32 accumulate ->
 * bf16, except the patch embedding, which writes the fp32 residual stream; the residual stream,
 * LayerNorm statistics and softmax in fp32; LayerNorm gains and biases bf16 (the reference's
 * weights are bf16) except the pre-norm's, which stay fp32; attention probabilities bf16. The
 * reference runs a bf16 residual stream: the wider one is more accurate, as in the DiT.
 *
 * Ownership: the caller's clip_weights may be freed after wmcuda_clip_create. All device memory
 * (weights, activations of one image, the cuBLASLt workspace) is allocated by _create; an encode
 * allocates nothing. One encode at a time per wmcuda_clip (its activations and host scratch are
 * shared), on the stream given at creation. Errors: 0 or a negative code (-1 bad argument,
 * -(cudaError_t), or a wmcuda_gemm code), with a message naming the failing call in err (may be
 * NULL). */
#ifndef WM_ENGINE_CUDA_CLIP_CUDA_H
#define WM_ENGINE_CUDA_CLIP_CUDA_H

#include <stddef.h>

#include "engine/clip.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wmcuda_clip wmcuda_clip;

/* stream: the cudaStream_t to run on (e.g. wmcuda_dit_stream), or NULL for one of its own. */
int wmcuda_clip_create(const clip_weights *w, void *stream, wmcuda_clip **out, char *err,
                       size_t errlen);
void wmcuda_clip_destroy(wmcuda_clip *c);
size_t wmcuda_clip_device_bytes(const wmcuda_clip *c);
const clip_config *wmcuda_clip_config(const wmcuda_clip *c);

/* image [3][height][width] fp32 in [-1, 1] (host), any size -> tokens [257][width] fp32 (host).
 * Returns after tokens is written. */
int wmcuda_clip_encode(wmcuda_clip *c, const float *image, int height, int width, float *tokens,
                       char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
