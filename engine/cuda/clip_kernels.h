/* The one kernel the GPU CLIP encoder (engine/cuda/clip_cuda.c) needs beyond dit_kernels.h and
 * gemm.h: the end of the embedding (class token, positions) fused with the pre-norm, in fp32 on
 * the fp32 residual stream.
 *
 * Conventions of dit_kernels.h: `stream` is a cudaStream_t, the launch is asynchronous and
 * allocates nothing; returns 0, WMCUDA_EINVAL (-1) on bad arguments (message on stderr) or
 * -(cudaError_t) of a failed launch. */
#ifndef WM_ENGINE_CUDA_CLIP_KERNELS_H
#define WM_ENGINE_CUDA_CLIP_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/* In place on x [tokens][dim] fp32, row t: v = (t == 0 ? cls : x[t]) + pos[t], then
 * x[t] = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta, statistics in fp32 over two passes
 * (mean, then squared deviations), as model-vae-clip.md 5.3's embedding and pre_norm. Row 0 of x
 * is only written. cls [dim], pos [tokens][dim], gamma, beta [dim]: fp32 device pointers. */
int wmcuda_clip_embed_prenorm(float *x, const float *cls, const float *pos, const float *gamma,
                              const float *beta, int tokens, int dim, float eps, void *stream);

#ifdef __cplusplus
}
#endif

#endif
