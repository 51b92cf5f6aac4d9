/* CPU reference primitives (float32 data, float64 accumulation where a reduction decides the
 * result): linear layers through OpenBLAS, norms, activations and softmax attention. Threaded with
 * OpenMP; results do not depend on the thread count except through BLAS summation order. */
#ifndef WM_ENGINE_CPU_OPS_H
#define WM_ENGINE_CPU_OPS_H

#include <stddef.h>

/* y[rows, out] = x[rows, in] . W[out, in]^T + b (b may be NULL). ldx/ldy are row strides. */
void cpu_linear(const float *x, int ldx, int rows, int in, const float *W, const float *b, int out,
                float *y, int ldy);

/* Per row of n values: y = (x - mean) / sqrt(var + eps), biased variance; then * gamma + beta when
 * given (either may be NULL). In place is allowed. */
void cpu_layernorm(const float *x, float *y, int rows, int n, float eps, const float *gamma,
                   const float *beta);
/* Per group of n consecutive values (rows * groups of them): y = x / sqrt(mean(x^2) + eps), then
 * * gain[n] when gain is non-NULL. */
void cpu_rmsnorm(const float *x, float *y, size_t count, int n, float eps, const float *gain);

float cpu_gelu_tanh(float u);
float cpu_gelu_erf(float u);
float cpu_silu(float u);
void cpu_apply_gelu_tanh(float *x, size_t n);
void cpu_apply_gelu_erf(float *x, size_t n);
void cpu_apply_silu(float *x, size_t n);

/* Softmax attention o = softmax(q k^T * scale [masked]) v, per head, for one group of queries over
 * one key set. Layout: row r of q/k/v/o holds all heads, head h at columns [h*dh, (h+1)*dh),
 * with row strides ldq/ldk/ldv/ldo.
 * mask (optional): frames_q x frames_k bytes, 1 = visible; query row r belongs to frame
 * r / rows_per_frame_q and key row c to frame c / rows_per_frame_k. A query with no visible key
 * gets zeros.
 * scratch: at least lq * lk floats. Uses BLAS for the two products (large shapes). */
typedef struct cpu_attn_args {
    const float *q, *k, *v;
    float *o;
    int ldq, ldk, ldv, ldo;
    int lq, lk, heads, dh;
    const unsigned char *mask;
    int frames_q, frames_k, rows_per_frame_q, rows_per_frame_k;
} cpu_attn_args;
void cpu_attention(const cpu_attn_args *a, float *scratch);

/* The same computation with plain loops and double accumulation, for many tiny problems (the
 * action module: a handful of keys); one call handles one query row and all its heads.
 * nk <= CPU_ATTN_ROW_MAX_KEYS. */
#define CPU_ATTN_ROW_MAX_KEYS 256
void cpu_attention_row(const float *q, const float *k, int ldk, const float *v, int ldv, int nk,
                       const unsigned char *key_visible, int heads, int dh, float *o);

#endif
