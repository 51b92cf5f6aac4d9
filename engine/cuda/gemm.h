/* Matrix products of the DiT through cuBLASLt: bf16 operands, fp32 accumulation
 * (CUBLAS_COMPUTE_32F), bf16 or fp32 results, all matrices row-major as in the checkpoint.
 *
 * A wmcuda_gemm holds one cuBLASLt handle, one device workspace and a fixed table of prepared
 * problems (descriptors, layouts and the heuristic's algorithm per shape, leading dimensions,
 * batch, epilogue and pointer alignment). The first call with a new problem runs the heuristic
 * and fills a table slot; later calls only set the bias pointer and enqueue the product, so they
 * allocate nothing and may be captured into a CUDA graph. A call that misses the table while its
 * stream is capturing fails with WMCUDA_ENOTPREPARED instead of running the heuristic inside the
 * capture: warm every shape first with the _prepare functions (same arguments, real pointers or
 * pointers of the same alignment, no stream) or by one uncaptured call.
 *
 * One wmcuda_gemm serves one stream at a time (the workspace and the descriptors' bias pointer
 * are shared by its calls); use one per stream for concurrent streams.
 *
 * Requirements (else WMCUDA_EINVAL): every pointer 16-byte aligned, every leading dimension and
 * batch offset a multiple of 16 bytes, ld >= the row length it covers, sizes > 0 (M = 0 is a
 * no-op). Returns 0, or a negative code: WMCUDA_EINVAL, -(cudaError_t), WMCUDA_EBLAS(status) for
 * a cuBLASLt failure, or one of the WMCUDA_E* codes below. Failures are reported on stderr and
 * kept in wmcuda_gemm_last_error(). */
#ifndef WM_ENGINE_CUDA_GEMM_H
#define WM_ENGINE_CUDA_GEMM_H

#include <stddef.h>

#include "engine/cuda/bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bad arguments: -1, the same definition as engine/cuda/cuda_check.h (expanding it needs
 * cuda_runtime.h, which every caller of the CUDA backend includes anyway). */
#ifndef WMCUDA_EINVAL
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)
#endif
#define WMCUDA_EBLAS(status)   (-(10000 + (int)(status)))
#define WMCUDA_ENOTPREPARED    (-20001) /* table miss inside a graph capture */
#define WMCUDA_ETABLEFULL      (-20002) /* more distinct problems than WMCUDA_GEMM_TABLE */
#define WMCUDA_ENOALGO         (-20003) /* the heuristic offered no algorithm */
#define WMCUDA_GEMM_TABLE      96
#define WMCUDA_GEMM_WORKSPACE  ((size_t)32 << 20) /* cuBLAS's recommendation for Hopper */

typedef struct wmcuda_gemm wmcuda_gemm;

typedef enum {
    WMCUDA_EPI_NONE = 0,      /* y = x W^T (+ bias) */
    WMCUDA_EPI_GELU_TANH = 1, /* y = GELU_tanh(x W^T (+ bias)) */
} wmcuda_epilogue;

/* How WMCUDA_EPI_GELU_TANH is computed. FUSED: cuBLASLt's GELU epilogue, which is the tanh form
 * (PyTorch's _addmm_activation relies on that; tests/gpu/test_dit_kernels_gpu checks it against
 * both forms). SEPARATE: the product with the bias epilogue, rounded to bf16, then a GELU-tanh
 * kernel over y: one more pass over y, and the same rounding points as the PyTorch reference. */
typedef enum { WMCUDA_GELU_FUSED = 0, WMCUDA_GELU_SEPARATE = 1 } wmcuda_gelu_mode;

/* workspace_bytes 0 = WMCUDA_GEMM_WORKSPACE. *out is NULL on failure. */
int wmcuda_gemm_create(wmcuda_gemm **out, size_t workspace_bytes, char *err, size_t errlen);
/* Frees the handle, the workspace and every prepared problem. NULL is a no-op. Synchronize the
 * streams that used it first. */
void wmcuda_gemm_destroy(wmcuda_gemm *g);
void wmcuda_gemm_set_gelu_mode(wmcuda_gemm *g, wmcuda_gelu_mode mode);
const char *wmcuda_gemm_last_error(const wmcuda_gemm *g);
int wmcuda_gemm_prepared_count(const wmcuda_gemm *g);

/* y[M, N] (row stride ldy) = epi(x[M, K] (row stride ldx) . W[N, K]^T + bias[N]); W contiguous
 * [N, K] as stored in the checkpoint; bias may be NULL. bf16 out. */
int wmcuda_linear(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K, const wmcuda_bf16 *W,
                  const wmcuda_bf16 *bias, int N, wmcuda_bf16 *y, int ldy, wmcuda_epilogue epi,
                  void *stream);
int wmcuda_linear_prepare(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                          const wmcuda_bf16 *W, const wmcuda_bf16 *bias, int N, wmcuda_bf16 *y,
                          int ldy, wmcuda_epilogue epi);
/* The same with fp32 out and an fp32 bias (the head, or anything that feeds fp32 math). */
int wmcuda_linear_f32(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                      const wmcuda_bf16 *W, const float *bias, int N, float *y, int ldy,
                      wmcuda_epilogue epi, void *stream);
int wmcuda_linear_f32_prepare(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                              const wmcuda_bf16 *W, const float *bias, int N, float *y, int ldy,
                              wmcuda_epilogue epi);

/* Attention scores, all heads in one strided-batched product:
 * s[h][i][j] = scale * sum_d q[i][h*dh + d] * k[j][h*dh + d], i < lq, j < lk, h < heads;
 * q rows have stride ldq, k rows ldk; s is fp32, head h at s + h*lq*lds, row i at + i*lds. */
int wmcuda_attn_scores(wmcuda_gemm *g, const wmcuda_bf16 *q, int ldq, int lq, const wmcuda_bf16 *k,
                       int ldk, int lk, int heads, int dh, float scale, float *s, int lds,
                       void *stream);
int wmcuda_attn_scores_prepare(wmcuda_gemm *g, const wmcuda_bf16 *q, int ldq, int lq,
                               const wmcuda_bf16 *k, int ldk, int lk, int heads, int dh, float *s,
                               int lds);
/* o[i][h*dh + d] = sum_j p[h][i][j] * v[j][h*dh + d]; p bf16 laid out as s above (stride ldp),
 * v rows stride ldv, o rows stride ldo (bf16). */
int wmcuda_attn_pv(wmcuda_gemm *g, const wmcuda_bf16 *p, int ldp, int lq, int lk,
                   const wmcuda_bf16 *v, int ldv, int heads, int dh, wmcuda_bf16 *o, int ldo,
                   void *stream);
int wmcuda_attn_pv_prepare(wmcuda_gemm *g, const wmcuda_bf16 *p, int ldp, int lq, int lk,
                           const wmcuda_bf16 *v, int ldv, int heads, int dh, wmcuda_bf16 *o,
                           int ldo);

#ifdef __cplusplus
}
#endif

#endif
