/* The kernels that the CUDA DiT forward (engine/cuda/dit_cuda.c) needs beyond the building blocks
 * of dit_kernels.h: the timestep sinusoid and modulation tables, the action module's input
 * assembly and its two small attentions (mouse: per spatial position over <= W frames; keyboard:
 * every token over <= W keyboard tokens), a byte upload through kernel parameters, and the
 * temporal re-rotation of cached keys when the session moves its RoPE origin.
 *
 * Same conventions as dit_kernels.h: `stream` is a cudaStream_t, launches are asynchronous,
 * allocate nothing and take no pageable host memory (graph-capturable); bf16 storage, fp32
 * arithmetic. Return 0, WMCUDA_EINVAL (-1) on bad arguments (message on stderr), or
 * -(cudaError_t) of a failed launch. */
#ifndef WM_ENGINE_CUDA_DIT_CUDA_KERNELS_H
#define WM_ENGINE_CUDA_DIT_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/cuda/bf16.h"

#ifndef WMCUDA_EINVAL
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define WMCUDA_TEMB_MAX_FRAMES 16  /* frames per timestep-embedding launch */
#define WMCUDA_ACTION_MAX_SLOTS 16 /* keys per action-attention query (the window W) */
#define WMCUDA_PARAM_BYTES 256     /* bytes per wmcuda_upload_param launch */
#define WMCUDA_ROTATE_MAX_PAIRS 64 /* pairs per wmcuda_rotate_pairs launch */

/* out[f][k] = bf16(cos(t_f * w_k)), out[f][half + k] = bf16(sin(t_f * w_k)), w_k =
 * 10000^(-k / half), half = freq_dim / 2, in float64 (model-dit.md 4.3; the reference rounds the
 * float64 sinusoid to bf16). t: F <= WMCUDA_TEMB_MAX_FRAMES host values, passed by value. */
int wmcuda_timestep_sinusoid(const float *t, int F, int freq_dim, wmcuda_bf16 *out, void *stream);

/* out[i][f][k] = bf16(tab[i*width + k] + e[f*lde + k % period]) for i < ntab, f < F, k < width:
 * the per-layer modulation M_i = modulation_i + e6 (width = period = 6D) for all layers at once,
 * and the head's shift/scale = head.modulation + e_t (ntab 1, width 2D, period D). */
int wmcuda_add_table_rows(const wmcuda_bf16 *tab, int ntab, int width, const wmcuda_bf16 *e,
                          int lde, int period, int F, wmcuda_bf16 *out, void *stream);

/* dst[0 .. n) = src[0 .. n), n <= WMCUDA_PARAM_BYTES, the bytes travelling as a kernel
 * parameter: a small host table (the attention visibility mask) reaches device memory without a
 * pageable copy, inside a graph too. */
int wmcuda_upload_param(void *dst, const void *src, size_t n, void *stream);

/* Frame f's rows_per_frame rows of `width` bf16 values (src rows lds elements apart, frame f
 * starting at row f * rows_per_frame) to dst + slot_dev[f] * slot_stride (rows ldd apart), for
 * f < frames: a block's new keys and values into the cache slots its frames own, the slot
 * numbers read from device memory (a graph's per-block table). Exact copies. */
int wmcuda_scatter_slots_bf16(const wmcuda_bf16 *src, size_t lds, wmcuda_bf16 *dst, size_t ldd,
                              int width, int rows_per_frame, int frames, const int *slot_dev,
                              size_t slot_stride, void *stream);

/* dst[r][c] = bf16(src[r][c]) for c < n, 0 for n <= c < ld: rows of width n (the keyboard
 * vectors, kdim wide) padded to the 16-byte row the GEMMs need. */
int wmcuda_pad_rows_bf16(const float *src, int rows, int n, wmcuda_bf16 *dst, int ld,
                         void *stream);

/* Mouse-MLP input (model-dit.md 6.3 step 1): u[r] = bf16(concat(x[r][0 .. dim), win[r / rpf][0 ..
 * wlen))), u rows dim + wlen wide; x the fp32 residual stream, win fp32 [frames][wlen]. */
int wmcuda_mouse_input(const float *x, int dim, const float *win, int wlen, int rows,
                       int rows_per_frame, wmcuda_bf16 *u, void *stream);
/* The same after the pending residual update x[r] += y[r] (y bf16 [rows][dim]), which it writes
 * back: the cross-attention's update fused into the mouse branch's first read of x. */
int wmcuda_residual_mouse_input(float *x, const wmcuda_bf16 *y, int dim, const float *win,
                                int wlen, int rows, int rows_per_frame, wmcuda_bf16 *u,
                                void *stream);

/* The action module's attention (6.3 step 7, 6.4 step 5): for query row r (frame f = r / rpf,
 * spatial position sg = r % rpf) and head h,
 *   o[r][h*dh + d] = sum_j p_j v_j[h*dh + d],  p = softmax_j(scale * q[r][h*dh ..] . k_j[h*dh ..])
 * over the slots j < nslots with vis[f*nslots + j] != 0, where k_j = k + j*slot_stride +
 * sg*pos_stride (v likewise). Mouse: slot_stride = S*Hm, pos_stride = Hm (each position has its
 * own keys); keyboard: slot_stride = Hk, pos_stride = 0 (one key per frame, shared). fp32 scores
 * and softmax, one warp per (row, head); a query with no visible key gets zeros (as the CPU).
 * dh <= 256, nslots <= WMCUDA_ACTION_MAX_SLOTS, vis in device memory. */
int wmcuda_action_attention(const wmcuda_bf16 *q, int ldq, const wmcuda_bf16 *k,
                            const wmcuda_bf16 *v, size_t slot_stride, size_t pos_stride,
                            int nslots, const unsigned char *vis, int rows, int rows_per_frame,
                            int heads, int dh, float scale, wmcuda_bf16 *o, int ldo, void *stream);

/* Rotates pairs p < npairs (interleaved (x[2p], x[2p+1])) of every head of `rows` rows (stride ld)
 * in place by the angle whose cosine and sine are cs[2p], cs[2p+1] (host array, passed by value):
 * x' = (a c - b s, a s + b c), fp32, rounded to bf16. Rebasing cached keys to a new RoPE origin
 * (engine/cpu/dit_cpu.h dit_store_rebase). npairs <= WMCUDA_ROTATE_MAX_PAIRS, 2*npairs <= dh. */
int wmcuda_rotate_pairs(wmcuda_bf16 *x, size_t rows, int ld, int heads, int dh, int npairs,
                        const float *cs, void *stream);

#ifdef __cplusplus
}
#endif

#endif
