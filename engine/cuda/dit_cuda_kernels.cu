/* Kernels of the CUDA DiT forward beyond dit_kernels.cu (see dit_cuda_kernels.h). All are small:
 * the floors below are at the full-size steady shape (L = 2640 tokens, D = 1536, action width
 * 1024 = 16 heads x 64, W = 6 slots) against the H100 SXM datasheet's 3.35 TB/s; none of them is
 * a measurable share of a forward (tests/gpu/test_dit_gpu prints the breakdown). */
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/dit_cuda_kernels.h"

typedef __nv_bfloat16 bf16;

#define EW_THREADS    256
#define EW_MAX_BLOCKS 4096
#define AA_WARPS      8 /* warps per block of the action attention */

static int bad_args(const char *fn, const char *what) {
    fprintf(stderr, "wmcuda %s: invalid arguments: %s\n", fn, what);
    return WMCUDA_EINVAL;
}

static unsigned ew_blocks(size_t work_items) {
    size_t b = (work_items + EW_THREADS - 1) / EW_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b < EW_MAX_BLOCKS ? b : EW_MAX_BLOCKS);
}

/* 8 consecutive bf16 (16-byte aligned) to and from fp32. */
static __device__ __forceinline__ void load8(const bf16 *p, float v[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        v[2 * i] = __uint_as_float(w[i] << 16);
        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
static __device__ __forceinline__ void store8(bf16 *p, const float v[8]) {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        w[i] = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * i])) |
               ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * i + 1])) << 16);
    *reinterpret_cast<uint4 *>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

static __device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- time path ------------------------------------------------------------------------------ */

struct temb_args {
    float t[WMCUDA_TEMB_MAX_FRAMES];
};

/* F x 256 values: launch-bound. */
static __global__ void __launch_bounds__(EW_THREADS)
    timestep_sinusoid_kernel(temb_args a, int F, int half, bf16 *out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= F * half) return;
    const int f = i / half, k = i % half;
    const double w = pow(10000.0, -(double)k / (double)half);
    const double ang = (double)a.t[f] * w;
    out[(size_t)f * 2 * half + k] = __double2bfloat16(cos(ang));
    out[(size_t)f * 2 * half + half + k] = __double2bfloat16(sin(ang));
}

extern "C" int wmcuda_timestep_sinusoid(const float *t, int F, int freq_dim, wmcuda_bf16 *out,
                                        void *stream) {
    if (!t || !out || F <= 0 || F > WMCUDA_TEMB_MAX_FRAMES || freq_dim <= 0 || freq_dim % 2)
        return bad_args("timestep_sinusoid", "1 <= F <= 16 frames and an even freq_dim required");
    temb_args a;
    memset(&a, 0, sizeof a);
    for (int f = 0; f < F; f++) a.t[f] = t[f];
    const int half = freq_dim / 2, n = F * half;
    timestep_sinusoid_kernel<<<(n + EW_THREADS - 1) / EW_THREADS, EW_THREADS, 0,
                               (cudaStream_t)stream>>>(a, F, half, (bf16 *)out);
    WM_CUDA_CHECK_LAUNCH(timestep_sinusoid_kernel);
    return 0;
}

/* Floor (30 layers x 3 frames x 9216): 2 x 1.66 MB bf16 written + read of the 0.55 MB tables
 * -> ~1.2 us. */
static __global__ void __launch_bounds__(EW_THREADS)
    add_table_rows_kernel(const bf16 *tab, int width, const bf16 *e, int lde, int period, int F,
                          bf16 *out, size_t total) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int k = (int)(idx % (size_t)width);
        const size_t rest = idx / (size_t)width;
        const int f = (int)(rest % (size_t)F);
        const size_t i = rest / (size_t)F;
        const float a = __bfloat162float(tab[i * (size_t)width + (size_t)k]);
        const float b = __bfloat162float(e[(size_t)f * (size_t)lde + (size_t)(k % period)]);
        out[idx] = __float2bfloat16_rn(a + b);
    }
}

extern "C" int wmcuda_add_table_rows(const wmcuda_bf16 *tab, int ntab, int width,
                                     const wmcuda_bf16 *e, int lde, int period, int F,
                                     wmcuda_bf16 *out, void *stream) {
    if (!tab || !e || !out || ntab <= 0 || width <= 0 || period <= 0 || F <= 0 || lde < period)
        return bad_args("add_table_rows", "positive sizes, lde >= period and device pointers");
    const size_t total = (size_t)ntab * (size_t)F * (size_t)width;
    add_table_rows_kernel<<<ew_blocks(total), EW_THREADS, 0, (cudaStream_t)stream>>>(
        (const bf16 *)tab, width, (const bf16 *)e, lde, period, F, (bf16 *)out, total);
    WM_CUDA_CHECK_LAUNCH(add_table_rows_kernel);
    return 0;
}

/* ---- small inputs ------------------------------------------------------------------------------ */

struct param_bytes {
    unsigned char b[WMCUDA_PARAM_BYTES];
};

static __global__ void upload_param_kernel(param_bytes p, int n, unsigned char *dst) {
    if ((int)threadIdx.x < n) dst[threadIdx.x] = p.b[threadIdx.x];
}

extern "C" int wmcuda_upload_param(void *dst, const void *src, size_t n, void *stream) {
    if (n == 0) return 0;
    if (!dst || !src || n > WMCUDA_PARAM_BYTES)
        return bad_args("upload_param", "at most 256 bytes and non-NULL pointers");
    param_bytes p;
    memset(&p, 0, sizeof p);
    memcpy(p.b, src, n);
    upload_param_kernel<<<1, WMCUDA_PARAM_BYTES, 0, (cudaStream_t)stream>>>(p, (int)n,
                                                                          (unsigned char *)dst);
    WM_CUDA_CHECK_LAUNCH(upload_param_kernel);
    return 0;
}

/* Floor (full size, v of one layer: 2640 x 1536 bf16 read and written): 16.2 MB -> 4.8 us; moves
 * 16-byte pieces when widths, strides and pointers allow, 2-byte elements otherwise. */
template <typename U>
static __global__ void __launch_bounds__(EW_THREADS)
    scatter_slots_kernel(const U *src, size_t lds, U *dst, size_t ldd, int width, int rpf,
                         const int *slot, size_t slot_stride, size_t total) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = i / (size_t)width, c = i % (size_t)width;
        const size_t f = r / (size_t)rpf, rr = r % (size_t)rpf;
        dst[(size_t)slot[f] * slot_stride + rr * ldd + c] = src[r * lds + c];
    }
}

extern "C" int wmcuda_scatter_slots_bf16(const wmcuda_bf16 *src, size_t lds, wmcuda_bf16 *dst,
                                         size_t ldd, int width, int rows_per_frame, int frames,
                                         const int *slot_dev, size_t slot_stride, void *stream) {
    if (width <= 0 || rows_per_frame <= 0 || frames < 0 || !src || !dst || !slot_dev ||
        lds < (size_t)width || ldd < (size_t)width)
        return bad_args("scatter_slots_bf16", "positive widths, strides >= width, device pointers");
    const size_t rows = (size_t)frames * (size_t)rows_per_frame;
    if (rows == 0) return 0;
    const cudaStream_t st = (cudaStream_t)stream;
    const int wide = width % 8 == 0 && lds % 8 == 0 && ldd % 8 == 0 && slot_stride % 8 == 0 &&
                     (uintptr_t)src % 16 == 0 && (uintptr_t)dst % 16 == 0;
    if (wide) {
        const size_t total = rows * (size_t)(width / 8);
        scatter_slots_kernel<uint4><<<ew_blocks(total), EW_THREADS, 0, st>>>(
            (const uint4 *)src, lds / 8, (uint4 *)dst, ldd / 8, width / 8, rows_per_frame,
            slot_dev, slot_stride / 8, total);
    } else {
        const size_t total = rows * (size_t)width;
        scatter_slots_kernel<uint16_t><<<ew_blocks(total), EW_THREADS, 0, st>>>(
            (const uint16_t *)src, lds, (uint16_t *)dst, ldd, width, rows_per_frame, slot_dev,
            slot_stride, total);
    }
    WM_CUDA_CHECK_LAUNCH(scatter_slots_kernel);
    return 0;
}

/* 36 rows x 16: launch-bound. */
static __global__ void __launch_bounds__(EW_THREADS)
    pad_rows_kernel(const float *src, int n, bf16 *dst, int ld, size_t total) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = i / (size_t)ld;
        const int c = (int)(i % (size_t)ld);
        dst[i] = __float2bfloat16_rn(c < n ? src[r * (size_t)n + (size_t)c] : 0.0f);
    }
}

extern "C" int wmcuda_pad_rows_bf16(const float *src, int rows, int n, wmcuda_bf16 *dst, int ld,
                                    void *stream) {
    if (rows < 0 || n <= 0 || ld < n || (rows > 0 && (!src || !dst)))
        return bad_args("pad_rows_bf16", "ld >= n > 0 and device pointers required");
    const size_t total = (size_t)rows * (size_t)ld;
    if (total == 0) return 0;
    pad_rows_kernel<<<ew_blocks(total), EW_THREADS, 0, (cudaStream_t)stream>>>(src, n, (bf16 *)dst,
                                                                              ld, total);
    WM_CUDA_CHECK_LAUNCH(pad_rows_kernel);
    return 0;
}

/* Floor (2640 x 1536 fp32 read, 2640 x 1560 bf16 written): 24.5 MB -> 7.3 us. One element per
 * thread, consecutive threads on consecutive columns: coalesced both ways. */
static __global__ void __launch_bounds__(EW_THREADS)
    mouse_input_kernel(float *x, const bf16 *y, int dim, const float *win, int wlen, int rpf,
                       bf16 *u, size_t total) {
    const int U = dim + wlen;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = i / (size_t)U;
        const int c = (int)(i % (size_t)U);
        float val;
        if (c < dim) {
            const size_t at = r * (size_t)dim + (size_t)c;
            val = x[at];
            if (y) { /* the pending residual update x += y, done here (one thread per element) */
                val += __bfloat162float(y[at]);
                x[at] = val;
            }
        } else {
            val = win[(r / (size_t)rpf) * (size_t)wlen + (size_t)(c - dim)];
        }
        u[i] = __float2bfloat16_rn(val);
    }
}

static int launch_mouse_input(const char *fn, float *x, const wmcuda_bf16 *y, int dim,
                              const float *win, int wlen, int rows, int rows_per_frame,
                              wmcuda_bf16 *u, void *stream) {
    if (rows < 0 || dim <= 0 || wlen < 0 || rows_per_frame <= 0 ||
        (rows > 0 && (!x || !u || (wlen > 0 && !win))))
        return bad_args(fn, "positive sizes and device pointers required");
    const size_t total = (size_t)rows * (size_t)(dim + wlen);
    if (total == 0) return 0;
    mouse_input_kernel<<<ew_blocks(total), EW_THREADS, 0, (cudaStream_t)stream>>>(
        x, (const bf16 *)y, dim, win, wlen, rows_per_frame, (bf16 *)u, total);
    WM_CUDA_CHECK_LAUNCH(mouse_input_kernel);
    return 0;
}

extern "C" int wmcuda_mouse_input(const float *x, int dim, const float *win, int wlen, int rows,
                                  int rows_per_frame, wmcuda_bf16 *u, void *stream) {
    /* y = NULL: x is only read */
    return launch_mouse_input("mouse_input", (float *)x, NULL, dim, win, wlen, rows,
                              rows_per_frame, u, stream);
}

extern "C" int wmcuda_residual_mouse_input(float *x, const wmcuda_bf16 *y, int dim,
                                           const float *win, int wlen, int rows,
                                           int rows_per_frame, wmcuda_bf16 *u, void *stream) {
    if (!y) return bad_args("residual_mouse_input", "NULL y");
    return launch_mouse_input("residual_mouse_input", x, y, dim, win, wlen, rows, rows_per_frame,
                              u, stream);
}

/* ---- action attention ------------------------------------------------------------------------------ */

/* One warp per (query row, head); lane l holds dims l, l+32, ... of the query. Floor (mouse,
 * steady): q 2640 x 1024 bf16 (5.4 MB) + the visible keys and values, read once per frame
 * position though each is used by 3 queries (6 x 880 x 1024 x 2 x 2 B = 21.6 MB) + o (5.4 MB)
 * = 32.4 MB -> 9.7 us; the keyboard one reads only q and o (10.8 MB -> 3.2 us). 2 x 64 FLOPs
 * per key per head: never compute-bound. */
static __global__ void __launch_bounds__(AA_WARPS * 32)
    action_attention_kernel(const bf16 *q, int ldq, const bf16 *k, const bf16 *v,
                            size_t slot_stride, size_t pos_stride, int nslots,
                            const unsigned char *vis, int rows, int rpf, int heads, int dh,
                            float scale, bf16 *o, int ldo) {
    const int lane = threadIdx.x & 31;
    const size_t w = (size_t)blockIdx.x * AA_WARPS + (threadIdx.x >> 5);
    if (w >= (size_t)rows * (size_t)heads) return; /* w is the same for the whole warp */
    const int r = (int)(w / (size_t)heads), h = (int)(w % (size_t)heads);
    const int f = r / rpf, sg = r % rpf;
    const bf16 *qr = q + (size_t)r * (size_t)ldq + (size_t)h * dh;
    float qv[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int d = lane + 32 * i;
        qv[i] = d < dh ? __bfloat162float(qr[d]) : 0.0f;
    }
    const size_t koff = (size_t)sg * pos_stride + (size_t)h * dh;
    const unsigned char *fv = vis + (size_t)f * (size_t)nslots;
    float sc[WMCUDA_ACTION_MAX_SLOTS];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < WMCUDA_ACTION_MAX_SLOTS; j++) {
        sc[j] = -INFINITY;
        if (j >= nslots || !fv[j]) continue; /* uniform across the warp */
        const bf16 *kr = k + (size_t)j * slot_stride + koff;
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int d = lane + 32 * i;
            if (d < dh) dot += qv[i] * __bfloat162float(kr[d]);
        }
        sc[j] = warp_sum(dot) * scale;
        mx = fmaxf(mx, sc[j]);
    }
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;
    float sum = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
        for (int j = 0; j < WMCUDA_ACTION_MAX_SLOTS; j++) {
            if (sc[j] == -INFINITY) continue; /* invisible, or past nslots */
            const float p = expf(sc[j] - mx);
            sum += p;
            const bf16 *vr = v + (size_t)j * slot_stride + koff;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                const int d = lane + 32 * i;
                if (d < dh) acc[i] += p * __bfloat162float(vr[d]);
            }
        }
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    bf16 *orow = o + (size_t)r * (size_t)ldo + (size_t)h * dh;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int d = lane + 32 * i;
        if (d < dh) orow[d] = __float2bfloat16_rn(acc[i] * inv);
    }
}

/* The same with G = dh / 8 lanes per (query row, head), each lane holding 8 dims (16-byte loads
 * and stores) for dh = 32, 64, 128 and 16-byte-aligned operands: what the DiT launches. The scores
 * are reduced over the G lanes by xor shuffles; every lane of the warp runs every shuffle (no early
 * exit: a group past the last row computes a clamped row and stores nothing), and every slot's
 * key is read (invisible ones are discarded by a select, so a stale or NaN key cannot leak), their
 * values only when visible. Same floors as above; 16-byte traffic and ~8x fewer shuffles per key
 * than the warp version, which left it latency-bound at 50-70 us (H100). */
template <int G>
static __global__ void __launch_bounds__(AA_WARPS * 32)
    action_attention_vec_kernel(const bf16 *q, int ldq, const bf16 *k, const bf16 *v,
                                size_t slot_stride, size_t pos_stride, int nslots,
                                const unsigned char *vis, int rows, int rpf, int heads, float scale,
                                bf16 *o, int ldo) {
    constexpr int DH = 8 * G;
    const size_t total = (size_t)rows * (size_t)heads;
    const size_t gid = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / G;
    const int sub = (int)(threadIdx.x % G);
    const bool live = gid < total;
    const size_t w = live ? gid : total - 1;
    const int r = (int)(w / (size_t)heads), h = (int)(w % (size_t)heads);
    const int f = r / rpf, sg = r % rpf;
    const int col = h * DH + sub * 8;
    float qv[8];
    load8(q + (size_t)r * (size_t)ldq + col, qv);
    const size_t koff = (size_t)sg * pos_stride + (size_t)col;
    const unsigned char *fv = vis + (size_t)f * (size_t)nslots;
    float sc[WMCUDA_ACTION_MAX_SLOTS];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < WMCUDA_ACTION_MAX_SLOTS; j++) {
        sc[j] = -INFINITY;
        if (j >= nslots) continue; /* uniform across the grid */
        float kv[8];
        load8(k + (size_t)j * slot_stride + koff, kv);
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) dot += qv[e] * kv[e];
#pragma unroll
        for (int off = G / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        sc[j] = fv[j] ? dot * scale : -INFINITY;
        mx = fmaxf(mx, sc[j]);
    }
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] = 0.0f;
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < WMCUDA_ACTION_MAX_SLOTS; j++) {
        if (sc[j] == -INFINITY) continue; /* invisible, past nslots, or nothing visible */
        const float p = expf(sc[j] - mx);
        sum += p;
        float vv[8];
        load8(v + (size_t)j * slot_stride + koff, vv);
#pragma unroll
        for (int e = 0; e < 8; e++) acc[e] += p * vv[e];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) acc[e] *= inv;
    if (live) store8(o + (size_t)r * (size_t)ldo + col, acc);
}

static bool al16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" int wmcuda_action_attention(const wmcuda_bf16 *q, int ldq, const wmcuda_bf16 *k,
                                       const wmcuda_bf16 *v, size_t slot_stride,
                                       size_t pos_stride, int nslots, const unsigned char *vis,
                                       int rows, int rows_per_frame, int heads, int dh,
                                       float scale, wmcuda_bf16 *o, int ldo, void *stream) {
    const char *fn = "action_attention";
    if (rows < 0 || heads <= 0 || dh <= 0 || dh > 256 || nslots <= 0 ||
        nslots > WMCUDA_ACTION_MAX_SLOTS || rows_per_frame <= 0 || ldq < heads * dh ||
        ldo < heads * dh)
        return bad_args(fn, "dh <= 256, 1 <= nslots <= 16, row strides >= heads*dh");
    if (rows > 0 && (!q || !k || !v || !vis || !o)) return bad_args(fn, "NULL pointer");
    if (rows == 0) return 0;
    const cudaStream_t st = (cudaStream_t)stream;
    const bool vec = (dh == 32 || dh == 64 || dh == 128) && al16(q) && al16(k) && al16(v) &&
                     al16(o) && ldq % 8 == 0 && ldo % 8 == 0 && slot_stride % 8 == 0 &&
                     pos_stride % 8 == 0;
    if (vec) {
        const size_t threads = (size_t)rows * (size_t)heads * (size_t)(dh / 8);
        const size_t vblocks = (threads + AA_WARPS * 32 - 1) / (AA_WARPS * 32);
        if (vblocks > 0x7fffffffu) return bad_args(fn, "too many rows");
#define AAV(G_)                                                                                    \
    action_attention_vec_kernel<G_><<<(unsigned)vblocks, AA_WARPS * 32, 0, st>>>(                  \
        (const bf16 *)q, ldq, (const bf16 *)k, (const bf16 *)v, slot_stride, pos_stride, nslots,   \
        vis, rows, rows_per_frame, heads, scale, (bf16 *)o, ldo)
        if (dh == 32) AAV(4);
        else if (dh == 64) AAV(8);
        else AAV(16);
#undef AAV
        WM_CUDA_CHECK_LAUNCH(action_attention_vec_kernel);
        return 0;
    }
    const size_t warps = (size_t)rows * (size_t)heads;
    const size_t blocks = (warps + AA_WARPS - 1) / AA_WARPS;
    if (blocks > 0x7fffffffu) return bad_args(fn, "too many rows");
    action_attention_kernel<<<(unsigned)blocks, AA_WARPS * 32, 0, (cudaStream_t)stream>>>(
        (const bf16 *)q, ldq, (const bf16 *)k, (const bf16 *)v, slot_stride, pos_stride, nslots,
        vis, rows, rows_per_frame, heads, dh, scale, (bf16 *)o, ldo);
    WM_CUDA_CHECK_LAUNCH(action_attention_kernel);
    return 0;
}

/* ---- key rebase ------------------------------------------------------------------------------------ */

struct rotate_args {
    float cs[2 * WMCUDA_ROTATE_MAX_PAIRS];
};

/* Only when the RoPE origin moves (every ~340 blocks): 2 x 4 bytes per rotated pair. */
static __global__ void __launch_bounds__(EW_THREADS)
    rotate_pairs_kernel(bf16 *x, int ld, int heads, int dh, int npairs, rotate_args a,
                        size_t total) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int p = (int)(i % (size_t)npairs);
        const size_t rest = i / (size_t)npairs;
        const int h = (int)(rest % (size_t)heads);
        const size_t r = rest / (size_t)heads;
        bf16 *e = x + r * (size_t)ld + (size_t)h * dh + 2 * p;
        const float c = a.cs[2 * p], s = a.cs[2 * p + 1];
        const float u = __bfloat162float(e[0]), w = __bfloat162float(e[1]);
        e[0] = __float2bfloat16_rn(u * c - w * s);
        e[1] = __float2bfloat16_rn(u * s + w * c);
    }
}

extern "C" int wmcuda_rotate_pairs(wmcuda_bf16 *x, size_t rows, int ld, int heads, int dh,
                                   int npairs, const float *cs, void *stream) {
    if (heads <= 0 || dh <= 0 || npairs <= 0 || npairs > WMCUDA_ROTATE_MAX_PAIRS ||
        2 * npairs > dh || ld < heads * dh || !cs || (rows > 0 && !x))
        return bad_args("rotate_pairs", "npairs <= 64, 2*npairs <= dh, ld >= heads*dh");
    const size_t total = rows * (size_t)heads * (size_t)npairs;
    if (total == 0) return 0;
    rotate_args a;
    memset(&a, 0, sizeof a);
    memcpy(a.cs, cs, (size_t)npairs * 2 * sizeof(float));
    rotate_pairs_kernel<<<ew_blocks(total), EW_THREADS, 0, (cudaStream_t)stream>>>(
        (bf16 *)x, ld, heads, dh, npairs, a, total);
    WM_CUDA_CHECK_LAUNCH(rotate_pairs_kernel);
    return 0;
}
