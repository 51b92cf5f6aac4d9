/* The DiT's non-GEMM kernels (model-dit.md sections 4-7), launched through plain C functions:
 * norms with modulation, QK RMSNorm fused with RoPE, residual updates, row softmax, patchify /
 * unpatchify, activations, conversions and the sampler's two updates.
 *
 * Precision: bf16 storage, fp32 arithmetic (float64 where the reference uses it). The residual
 * stream is fp32 ([L][D] floats): the block's residual adds round once to fp32 instead of to bf16
 * at each op as the PyTorch reference does (model-dit.md 10.1: a wider residual is more accurate
 * and differs at bf16 noise level); every GEMM input derived from it is bf16.
 *
 * Conventions: `stream` is a cudaStream_t (NULL = legacy default stream). Launches are
 * asynchronous and allocate nothing (graph-capturable), except the _create functions, which
 * allocate and upload tables synchronously at start-up. Row-wise kernels need the row length
 * (dim) to be a multiple of 8 and every pointer / row stride / frame stride 16-byte aligned, so
 * rows move in 16-byte pieces; the exceptions are stated. Unless stated, outputs must not overlap
 * inputs. Return 0, WMCUDA_EINVAL (-1) on bad arguments (message on stderr), or -(cudaError_t) of
 * a failed launch. rows = 0 or n = 0 is a no-op. */
#ifndef WM_ENGINE_CUDA_DIT_KERNELS_H
#define WM_ENGINE_CUDA_DIT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/cuda/bf16.h"

/* Bad arguments: -1, the same definition as engine/cuda/cuda_check.h (expanding it needs
 * cuda_runtime.h, which every caller of the CUDA backend includes anyway). */
#ifndef WMCUDA_EINVAL
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- norms ------------------------------------------------------------------------------------ */

/* h[n] = LN(x[n]; eps) * (1 + scale[f]) + shift[f], f = n / rows_per_frame; x fp32 [rows][dim]
 * (the residual stream), h bf16; shift/scale rows of frame f at shift + f*frame_stride (bf16;
 * frame_stride = 6*dim for the block modulation [F][6][dim], 2*dim for the head's). */
int wmcuda_ln_modulate(const float *x, wmcuda_bf16 *h, int rows, int dim, int rows_per_frame,
                       float eps, const wmcuda_bf16 *shift, const wmcuda_bf16 *scale,
                       size_t frame_stride, void *stream);
/* y = LN(x; eps) * gamma + beta per row (gamma, beta bf16 [dim], either may be NULL): norm3 and
 * the cross pre-norm (fp32 residual in), the mouse-MLP and image-context norms (bf16 in; y may
 * equal x for the bf16 version). */
int wmcuda_layernorm_f32in(const float *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                           const wmcuda_bf16 *gamma, const wmcuda_bf16 *beta, void *stream);
int wmcuda_layernorm_bf16in(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                            const wmcuda_bf16 *gamma, const wmcuda_bf16 *beta, void *stream);

/* A branch's residual update fused with the LayerNorm that reads the residual stream next (one
 * pass over the fp32 rows instead of two): x[n] += y[n] * gate[n / gate_rows_per_frame] (gate rows
 * gate_stride apart; gate NULL: x[n] += y[n]), exactly as wmcuda_residual_gate / _add, then h as
 * wmcuda_ln_modulate / wmcuda_layernorm_f32in of the updated x. y bf16 [rows][dim]. For
 * _ln_modulate the gate's rows per frame are rows_per_frame. */
int wmcuda_residual_ln_modulate(float *x, const wmcuda_bf16 *y, const wmcuda_bf16 *gate,
                                size_t gate_stride, wmcuda_bf16 *h, int rows, int dim,
                                int rows_per_frame, float eps, const wmcuda_bf16 *shift,
                                const wmcuda_bf16 *scale, size_t frame_stride, void *stream);
int wmcuda_residual_layernorm(float *x, const wmcuda_bf16 *y, const wmcuda_bf16 *gate,
                              size_t gate_stride, int gate_rows_per_frame, wmcuda_bf16 *h,
                              int rows, int dim, float eps, const wmcuda_bf16 *gamma,
                              const wmcuda_bf16 *beta, void *stream);

/* ---- RoPE tables -------------------------------------------------------------------------------- */

/* Main 3-D RoPE (model-dit.md 5.1) as cos/sin pairs computed on the host in float64 and stored as
 * fp32: t_tab[pos][t_pairs] for temporal positions 0 .. pmax-1, hw_tab[sigma][h_pairs + w_pairs]
 * for the frame's tokens sigma = hh*grid_w + ww. Device pointers; fields read-only. */
typedef struct wmcuda_rope3d {
    float *t_tab;  /* [pmax][t_pairs][2] (cos, sin) */
    float *hw_tab; /* [grid_h*grid_w][h_pairs + w_pairs][2] */
    int dh, t_pairs, h_pairs, w_pairs, pmax, grid_h, grid_w;
} wmcuda_rope3d;
int wmcuda_rope3d_create(wmcuda_rope3d *r, int dh, int pmax, int grid_h, int grid_w, char *err,
                         size_t errlen);
void wmcuda_rope3d_destroy(wmcuda_rope3d *r);

/* Action-module RoPE (5.3): the first rot_dims dims of each head rotate with the latent-frame
 * position; cos/sin in float32 exactly as the reference builds them. tab[pos][rot_dims/2][2]. */
typedef struct wmcuda_rope_action {
    float *tab;
    int pairs, pmax;
} wmcuda_rope_action;
int wmcuda_rope_action_create(wmcuda_rope_action *r, int rot_dims, float theta, int pmax,
                              char *err, size_t errlen);
void wmcuda_rope_action_destroy(wmcuda_rope_action *r);

/* QK-norm of the main attentions fused with the 3-D RoPE: per row of dim = heads*dh values,
 * t = bf16(x / sqrt(mean(x^2) + eps)) (all dim channels at once, fp32), t = bf16(t * gain), then
 * each head rotated in fp32 with token n's positions (pos0 + n / S, sigma = n % S), S =
 * grid_h*grid_w, and rounded to bf16. pos0 = frame0 - rope_base of the first row's frame; every
 * row's position must lie in [0, pmax). rope NULL: RMSNorm with gain only (cross-attention q and
 * k); gain NULL: no gain. y may equal x. */
int wmcuda_rmsnorm_rope3d(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                          const wmcuda_bf16 *gain, const wmcuda_rope3d *rope, int64_t pos0,
                          void *stream);

/* The same with the first row's frame position read by the kernel from device memory:
 * *pos_dev + pos_off (a graph's per-block value, written by its first node). The host cannot
 * check the position against the table: the caller guarantees it lies in [0, pmax - rows / S). */
int wmcuda_rmsnorm_rope3d_at(const wmcuda_bf16 *x, wmcuda_bf16 *y, int rows, int dim, float eps,
                             const wmcuda_bf16 *gain, const wmcuda_rope3d *rope,
                             const int64_t *pos_dev, int64_t pos_off, void *stream);

/* Action q/k: per head of dh values (dh in 8, 16, .., 256), x / sqrt(mean(x^2) + eps) without a
 * gain (model-dit.md 10.3), then the action RoPE at position pos0 + row / rows_per_frame, fp32
 * math, bf16 out. Rows have strides ldx / ldy (elements, multiples of 8), so q, k of a fused
 * qkv output are read in place. rope NULL: norm only. y may equal x (same ld). */
int wmcuda_rms_heads_rope_action(const wmcuda_bf16 *x, int ldx, wmcuda_bf16 *y, int ldy, int rows,
                                 int heads, int dh, float eps, const wmcuda_rope_action *rope,
                                 int rows_per_frame, int64_t pos0, void *stream);

/* The same at position *pos_dev + pos_off + row / rows_per_frame (device memory; as
 * wmcuda_rmsnorm_rope3d_at, the caller keeps it inside the table). */
int wmcuda_rms_heads_rope_action_at(const wmcuda_bf16 *x, int ldx, wmcuda_bf16 *y, int ldy,
                                    int rows, int heads, int dh, float eps,
                                    const wmcuda_rope_action *rope, int rows_per_frame,
                                    const int64_t *pos_dev, int64_t pos_off, void *stream);

/* ---- residual stream ------------------------------------------------------------------------------ */

/* x[n][d] += y[n][d] * gate[f][d], f = n / rows_per_frame, gate row f at gate + f*frame_stride. */
int wmcuda_residual_gate(float *x, const wmcuda_bf16 *y, int rows, int dim, int rows_per_frame,
                         const wmcuda_bf16 *gate, size_t frame_stride, void *stream);
/* x[i] += y[i], i < n (n a multiple of 8). */
int wmcuda_residual_add(float *x, const wmcuda_bf16 *y, size_t n, void *stream);
/* x[i] += y[i], then h[i] = bf16(x[i]): the mouse branch's update fused into the keyboard
 * queries' conversion of x. */
int wmcuda_residual_add_to_bf16(float *x, const wmcuda_bf16 *y, wmcuda_bf16 *h, size_t n,
                                void *stream);

/* ---- attention softmax ------------------------------------------------------------------------------ */

/* The unfused attention's middle step (the DiT runs the fused engine/cuda/attention.h; the
 * kernel test keeps this path as its reference, and other attentions use it). Row softmax
 * of scores that already carry the 1/sqrt(dh) scale: p[r][c] = softmax(s[r][:cols]) for rows
 * r < rows (heads * lq), cols <= 8192; s fp32 rows of stride lds, p bf16 rows of stride ldp (any cols; rows move 16 bytes at a time when lds and ldp allow it). Optional visibility
 * mask [frames_q][frames_k] bytes in device memory, 1 = visible: row r is query row i = r % lq
 * of frame i / rows_per_frame_q, column c is key frame c / rows_per_frame_k. Masked entries get
 * 0; a row with no visible key is all zeros (as cpu_attention). */
int wmcuda_softmax_rows(const float *s, int lds, wmcuda_bf16 *p, int ldp, int rows, int cols,
                        int lq, const unsigned char *mask, int frames_k, int rows_per_frame_q,
                        int rows_per_frame_k, void *stream);

/* ---- input / output layout (4.1, 4.6) ----------------------------------------------------------------- */

/* patches[f*S + hh*gw + ww][c*4 + a*2 + b] = z[c][f][2hh+a][2ww+b], z = concat(x (cx channels),
 * cond (ccond channels)), each [channels][frames][lat_h][lat_w] fp32; patches bf16 [F*S][4(cx+ccond)],
 * gw = lat_w/2, S = (lat_h/2)*gw (as dit_patchify). No alignment needs. */
int wmcuda_patchify(const float *x, int cx, const float *cond, int ccond, int frames, int lat_h,
                    int lat_w, wmcuda_bf16 *patches, void *stream);
/* v[c][f][2hh+a][2ww+b] = tok[f*S + hh*gw + ww][(a*2 + b)*out_dim + c]; tok [F*S][4*out_dim]
 * (bf16: the reference's head output; fp32: wmcuda_linear_f32's), v fp32 (as dit_unpatchify). */
int wmcuda_unpatchify_bf16(const wmcuda_bf16 *tok, int frames, int lat_h, int lat_w, int out_dim,
                           float *v, void *stream);
int wmcuda_unpatchify_f32(const float *tok, int frames, int lat_h, int lat_w, int out_dim,
                          float *v, void *stream);

/* ---- elementwise ------------------------------------------------------------------------------------ */

/* y[i] = f(x[i]) for i < n, fp32 math, bf16 in and out; y may equal x. Any n and alignment
 * (16-byte pieces when both pointers allow). */
int wmcuda_silu_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream);
int wmcuda_gelu_tanh_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream);
int wmcuda_gelu_erf_bf16(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t n, void *stream);
/* GELU-tanh in place over a [rows][cols] block of row stride ld (wmcuda_linear's SEPARATE mode). */
int wmcuda_gelu_tanh_bf16_2d(wmcuda_bf16 *y, int rows, int cols, int ld, void *stream);
/* Round to nearest even / widen; any n and alignment. */
int wmcuda_convert_f32_to_bf16(const float *x, wmcuda_bf16 *y, size_t n, void *stream);
int wmcuda_convert_bf16_to_f32(const wmcuda_bf16 *x, float *y, size_t n, void *stream);

/* ---- sampler (7.3) ---------------------------------------------------------------------------------- */

/* x0[i] = (float)((double)x[i] - sigma * (double)v[i])  (float64 as the reference), and the
 * re-noising x[i] = (1 - sigma_next) * x0[i] + sigma_next * eps[i] in float32 with each operation
 * rounded separately (no FMA), bit for bit the host loop of engine/session.c. Any n and alignment;
 * x0 may equal x, x may equal x0. */
int wmcuda_sampler_x0(const float *x, const float *v, double sigma, float *x0, size_t n,
                      void *stream);
int wmcuda_sampler_renoise(const float *x0, const float *eps, float sigma_next, float *x, size_t n,
                           void *stream);

#ifdef __cplusplus
}
#endif

#endif
