/* The Wan2.1 VAE's kernels on the GPU (model-vae-clip.md sections 2-3), launched through plain C
 * functions: one implicit-GEMM convolution on tensor cores that serves every conv of the VAE
 * (causal 3x3x3 with its cached history, the (3,1,1) time convs, the 2-D 3x3 convs of the
 * upsamplers with the nearest x2 folded into the gather, the encoder's stride-2 convs, the 1x1
 * convs), the channel RMS norm (+SiLU), and the conversions at the ends of the decoder and the
 * encoder.
 *
 * Precision: activations and weights bf16, fp32 accumulation, fp32 norm statistics, fp32 bias.
 * (The reference's streaming decoder runs in fp16 and its conditioning encode in bf16; bf16 is
 * used for both here: no range issue, and the DiT's GEMM/softmax helpers are bf16.)
 *
 * Layout: activations are channels-last, [T][H][W][C] (a position's channels contiguous), so a
 * conv is a GEMM with M = output positions, N = Cout, K = taps * Cin. Conv weights are
 * [Cout][kt][kh][kw][Cin] (the CPU reference's packed order, engine/vae/vae_internal.h).
 *
 * Conventions: `stream` is a cudaStream_t (NULL = legacy default). Launches allocate nothing and
 * never synchronise (graph-capturable). Return 0, WMCUDA_EINVAL (-1) on bad arguments (message on
 * stderr), or -(cudaError_t) of a failed launch. */
#ifndef WM_ENGINE_CUDA_VAE_KERNELS_H
#define WM_ENGINE_CUDA_VAE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/cuda/bf16.h"

#ifndef WMCUDA_EINVAL
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* One convolution. Output position m = (t, yo, xo) of a t_out x hout x wout grid and tap
 * (dt, dy, dx) of a kt x kh x kw kernel read input frame si = t * tstride + dt - hist_n of the
 * sequence "hist (hist_n frames) ++ x" (si < 0: hist frame si + hist_n; hist NULL: zeros) at
 *   up2 = 0: row yo * sstride + dy - spad, column xo * sstride + dx - spadx (zero outside
 *            hin x win; spadx < 0 means spadx = spad);
 *   up2 = 1: the nearest-x2 upsampled frame (2hin x 2win) at row yo + dy - spad, column
 *            xo + dx - spadx, i.e. input row (yo + dy - spad) / 2 (zero outside 2hin x 2win).
 * y = sum + bias (+ res) is stored at frame f0 + t * tmul + n / csplit, row yo * ostride + oy0,
 * column xo * ostride + ox0, channel n % csplit of a [frames][hfull][wfull][csplit] tensor
 * (defaults: csplit = cout, f0 = 0, tmul = 1, ostride = 1, hfull x wfull = hout x wout, i.e. a
 * plain [M][cout]; the upsample3d time_conv uses csplit = C, tmul = 2 for its phase interleave,
 * the sub-pixel upsampling convs ostride = 2 and the phase as (oy0, ox0)). res (optional) has the
 * output's layout and may alias y. y_f32: y is float (else bf16); clamp: clip to [-1, 1]; y may be
 * NULL when only the normalised output is wanted.
 * ngamma (optional): also write ny (bf16, y's layout) = silu(rms(y) * ngamma), the RMS norm + SiLU
 * of the next conv's input computed from the bf16-rounded y of each position; needs csplit = cout
 * and wmcuda_vae_conv_fuses_norm(cout).
 * Needs cin % 8 == 0 and 16-byte aligned x / hist / w / res / y / ny. Floor: 2 * M * K * cout
 * FLOPs. */
typedef struct wmcuda_vae_conv_desc {
    const wmcuda_bf16 *x, *hist;
    int hist_n;
    int cin, hin, win;
    int t_out, hout, wout;
    int kt, kh, kw;
    int tstride, sstride, spad, spadx, up2;
    const wmcuda_bf16 *w; /* [cout][kt*kh*kw*cin] */
    const float *bias;    /* [cout] or NULL */
    int cout;
    const wmcuda_bf16 *res;
    void *y;
    int y_f32, clamp;
    int f0, tmul, csplit;
    int ostride, oy0, ox0, hfull, wfull;
    const float *ngamma;
    wmcuda_bf16 *ny;
    int tile; /* 0: chosen from cout; else WMCUDA_VAE_TILE_* (benchmarks) */
} wmcuda_vae_conv_desc;

enum {
    WMCUDA_VAE_TILE_AUTO = 0,
    WMCUDA_VAE_TILE_128x192 = 1,     /* 8 warps of 64x48: cout a multiple of 192 */
    WMCUDA_VAE_TILE_256x96 = 2,      /* 8 warps of 64x48: cout 96 */
    WMCUDA_VAE_TILE_128x16 = 3,      /* 8 warps of 16x16: narrow or ragged cout */
    WMCUDA_VAE_TILE_128x96 = 4,      /* 4 warps of 64x48, 2 blocks per SM */
    WMCUDA_VAE_TILE_128x192_K64 = 5, /* as 1 and 2 with 64-channel K steps, 3 stages */
    WMCUDA_VAE_TILE_256x96_K64 = 6,
    WMCUDA_VAE_TILE_128x128 = 7, /* 8 warps of 64x32: cout a multiple of 128 */
    /* same-size 3x3 convs (kh = kw = 3, pad 1, stride 1, kt time taps, plain output layout):
     * CTAs of 256 positions (a 4x64, 8x32 or 16x16 tile of one frame) x 96 channels that load
     * each input pixel with its 1-pixel halo once per time tap and channel chunk and form the 9
     * spatial taps from shared memory. Other shapes fall back to the tile chosen from cout.
     * 16-channel K stages, 3 stages, epilogue staged through smem for 16-byte stores (the
     * fragment epilogue with a fused norm or cout % 8 != 0). */
    WMCUDA_VAE_TILE_HALO = 8,
    WMCUDA_VAE_TILE_HALO_K32 = 9,   /* the same with 32-channel K stages, 2 stages */
    WMCUDA_VAE_TILE_HALO_FRAG = 10, /* HALO with the fragment epilogue (benchmarks) */
    /* HALO on wgmma (sm_90 devices; the sm_90a build): wout % 64 == 0, no fused norm, cout % 8
     * == 0; otherwise HALO */
    WMCUDA_VAE_TILE_HALO_WG = 11
};

/* Fills the fields a plain conv needs: 1x1x1, stride 1, no history, plain output layout. */
void wmcuda_vae_conv_desc_init(wmcuda_vae_conv_desc *d);
int wmcuda_vae_conv(const wmcuda_vae_conv_desc *d, void *stream);
/* Whether WMCUDA_VAE_TILE_HALO serves this conv (else it falls back). */
int wmcuda_vae_conv_halo_ok(const wmcuda_vae_conv_desc *d);
/* Whether a conv with this cout can fuse the next RMS norm (one tile covers all channels). */
int wmcuda_vae_conv_fuses_norm(int cout);

/* y[p][c] = [silu](x[p][c] / max(||x[p]||_2, 1e-12) * sqrt(C) * gamma[c]) over npos positions of
 * C channels (C % 8 == 0, C <= 1024), fp32 statistics; y may equal x. Floor: 4 * npos * C bytes. */
int wmcuda_vae_rms_norm(const wmcuda_bf16 *x, wmcuda_bf16 *y, size_t npos, int C,
                        const float *gamma, int silu, void *stream);

/* The decoder head as "taps first": P [T+2][H][W][pc] fp32 holds, for every input frame (2 history
 * frames, then the T new ones), the 27 * oc partial products of a 3x3x3 conv (channel tap * oc + c,
 * tap = (dt * 3 + dy) * 3 + dx); y [T][H][W][oc] fp32 = bias + sum over taps of
 * P[t + dt][y + dy - 1][x + dx - 1][tap * oc + c] (zero outside the frame), clipped to [-1, 1]
 * with clamp. The 1x1 GEMM that makes P reads each input once instead of 27 times (the head's 3
 * output channels leave the tensor cores idle otherwise). Floor: reading P once. */
int wmcuda_vae_head_taps(const float *P, int T, int H, int W, int pc, int oc, const float *bias,
                         int clamp, float *y, void *stream);

/* Decoder input: z fp32 [zc][npos] (normalised latents, [16][n][h][w]) -> v = z * std + mean ->
 * y bf16 [npos][zc] = W v + b (conv2, 1x1x1, fp32 math). mean, std, w [zc][zc], b device fp32;
 * zc <= 32. */
int wmcuda_vae_latent_in(const float *z, size_t npos, int zc, const float *mean, const float *std,
                         const float *w, const float *b, wmcuda_bf16 *y, void *stream);
/* Decoder output: x fp32 [npos][3] (clamped) -> rgb [npos][3] u8 = trunc(clip((x+1)*127.5, 0, 255))
 * and, when frames is not NULL, frames fp32 [3][npos]. */
int wmcuda_vae_frames_out(const float *x, size_t npos, uint8_t *rgb, float *frames, void *stream);
/* Encoder input: frames fp32 [3][npos] -> y bf16 [npos][cpad] (channels 3.. cpad-1 zero). */
int wmcuda_vae_frames_in(const float *frames, size_t npos, int cpad, wmcuda_bf16 *y, void *stream);
/* Encoder output: x fp32 [npos][2zc] (head conv) -> m = W x + b (conv1, 1x1x1, only the zc mean
 * rows) -> z fp32 [zc][npos] = (m - mean) / std. w [2zc][2zc]; zc <= 32. */
int wmcuda_vae_latent_out(const float *x, size_t npos, int zc, const float *w, const float *b,
                          const float *mean, const float *std, float *z, void *stream);

#ifdef __cplusplus
}
#endif

#endif
