/* The Wan2.1 VAE of Matrix-Game-2.0 on one GPU: the streaming decoder (3 latents -> 9 video frames
 * for a session's first block, 12 afterwards) and the streaming encoder of the start image, the
 * same forwards as the float32 CPU reference engine/vae.c (model-vae-clip.md sections 2-3),
 * built on engine/cuda/vae_kernels.h (implicit-GEMM convs, RMS norm) and engine/cuda/gemm.h
 * (attention products and its qkv projection).
 *
 * A wmcuda_vae holds what every session shares: the parameters of the parts the vae_weights hold,
 * uploaded once as bf16 (biases, gains and the 1x1 latent convs fp32), one stream, the cuBLASLt
 * handle and one activation scratch (sized at each decoder/encoder create from a dry run of its
 * forward, as the CPU code does, and grown there only). A wmcuda_vae_decoder holds one session's
 * 32 cache slots (bf16, channels-last, zeroed at create and reset) and the first-latent flag, plus
 * its device staging buffers; a wmcuda_vae_encoder one encode's 24 slots. Decoders and encoders of
 * one wmcuda_vae run on its stream one call after another (they share the scratch).
 *
 * Precision: bf16 activations and weights, fp32 accumulation, fp32 norm statistics, attention
 * softmax in fp32; the decoder's output leaves its last conv in fp32, clamped. (The reference's
 * streaming decoder runs in fp16, its conditioning encode in bf16.) Distance to the fp32 CPU
 * reference: see tests/gpu/test_vae_gpu.c.
 *
 * Scratch at 44x80 latents: about 3.8 GB (three activation buffers, two normalised-input buffers
 * of a 12-frame block at 352x640x96, the head's partial products, attention scores); a session's
 * slots 1.07 GB.
 *
 * Capture: wmcuda_vae_decode_device enqueues kernels and device-to-device copies only (no
 * allocation, no synchronisation), so it can be captured into a CUDA graph once its GEMM shapes
 * are warm (one uncaptured decode of the same shape first). The first block and later blocks have
 * different frame counts, so they are different graphs.
 *
 * Ownership: the vae_weights may be freed after wmcuda_vae_create. Decoders and encoders borrow
 * their wmcuda_vae, which must outlive them. Errors: 0 or a negative code (ENG_EINVAL / ENG_ESTATE
 * from engine/errors.h, -(cudaError_t), or a wmcuda_gemm code) with a message in err (may be
 * NULL). */
#ifndef WM_ENGINE_CUDA_VAE_CUDA_H
#define WM_ENGINE_CUDA_VAE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WMCUDA_VAE_PLAN_LATENTS 3 /* most latents one decode takes (a streaming block) */
#define WMCUDA_VAE_ENC_CHUNK    4 /* frames per encoder pass after the start image */

typedef struct wmcuda_vae wmcuda_vae;                 /* device weights + shared scratch */
typedef struct wmcuda_vae_decoder wmcuda_vae_decoder; /* one session's streaming-decoder caches */
typedef struct wmcuda_vae_encoder wmcuda_vae_encoder; /* one encode's caches */

/* stream: a cudaStream_t, NULL = a stream of its own. */
int wmcuda_vae_create(const vae_weights *w, void *stream, wmcuda_vae **out, char *err,
                      size_t errlen);
void wmcuda_vae_destroy(wmcuda_vae *v);
size_t wmcuda_vae_device_bytes(const wmcuda_vae *v);
void *wmcuda_vae_stream(const wmcuda_vae *v);
/* Paths (tests and benchmarks compare them; each is checked against the CPU reference):
 *   SUBPIXEL  the upsamplers' nearest x2 + 3x3 conv as four 2x2 sub-pixel convs on the low-res
 *             frames (4/9 of the FLOPs; the weights are summed in fp32, so bf16-rounded
 *             differently);
 *   TILES     the measured-best conv tiles: 128x192 with 64-channel K steps where cout is a
 *             multiple of 192, 128x96 (two CTAs per SM) where it is 96; else the 32-channel tiles
 *             chosen from cout;
 *   FUSE_NORM the RMS norm + SiLU before a residual block's convs computed in the epilogue of the
 *             conv before them (96 and 192 channels, where one tile holds a position's channels);
 *   HEAD_TAPS the decoder head (96 -> 3) as a 1x1 GEMM to the 81 per-tap partial products (fp32)
 *             and a gather-sum.
 * Default SUBPIXEL | TILES. FUSE_NORM and HEAD_TAPS are correct but were slower on an H200 (steady
 * block, with SUBPIXEL: fused 141.6 ms vs 133.8 ms plain): with one CTA per SM the longer
 * epilogue is not hidden, and the fp32 partial products cost more traffic than they save. */
enum {
    WMCUDA_VAE_PATH_SUBPIXEL = 1,
    WMCUDA_VAE_PATH_FUSE_NORM = 2,
    WMCUDA_VAE_PATH_TILES = 4,
    WMCUDA_VAE_PATH_HEAD_TAPS = 8,
    WMCUDA_VAE_PATHS_DEFAULT = WMCUDA_VAE_PATH_SUBPIXEL | WMCUDA_VAE_PATH_TILES,
    /* benchmarks: TILES without the haloed 3x3 tile (WMCUDA_VAE_TILE_HALO, which TILES picks for
     * the same-size 3x3(x3) convs of 96k output channels and >= 64 input channels) */
    WMCUDA_VAE_PATH_NO_HALO = 16,
    /* benchmarks: the haloed tile on mma.sync only (TILES picks its wgmma form on sm_90 where the
     * frame width is a multiple of 64 and no norm is fused) */
    WMCUDA_VAE_PATH_NO_WGMMA = 32
};
void wmcuda_vae_set_paths(wmcuda_vae *v, int paths);
/* Benchmarks: with profiling on, each decode records a cudaEvent after every layer (events are
 * made here, not in the decode); the report lists "layer ms" of the last decode (synchronises). */
int wmcuda_vae_set_profile(wmcuda_vae *v, int on);
int wmcuda_vae_profile_report(wmcuda_vae *v, char *out, size_t len);

int wmcuda_vae_decoder_create(wmcuda_vae *v, int lat_h, int lat_w, wmcuda_vae_decoder **out,
                              char *err, size_t errlen);
void wmcuda_vae_decoder_destroy(wmcuda_vae_decoder *d);
/* Zeroes the slots (enqueued on the stream) and sets the first-latent flag. */
int wmcuda_vae_decoder_reset(wmcuda_vae_decoder *d, char *err, size_t errlen);
size_t wmcuda_vae_decoder_device_bytes(const wmcuda_vae_decoder *d);
/* Frames the next decode of nlat latents yields: 1 + 4(nlat-1) on the first call, 4 nlat after. */
int wmcuda_vae_decoder_frames_out(const wmcuda_vae_decoder *d, int nlat);

/* latents: HOST fp32, normalised, [16][nlat][lat_h][lat_w] (as vae_decode), nlat <=
 * WMCUDA_VAE_PLAN_LATENTS. rgb: HOST [n][8lat_h][8lat_w][3], RGB8 made on the device with
 * vae_frames_to_rgb8's rule (trunc(clip((x+1)*127.5, 0, 255))). frames (optional, may be NULL):
 * HOST fp32 [3][n][H][W] clamped, for tests. Synchronises the stream before returning. */
int wmcuda_vae_decode(wmcuda_vae_decoder *d, const float *latents, int nlat, uint8_t *rgb,
                      float *frames, int *nframes, char *err, size_t errlen);
/* The same on device memory, enqueued only (no allocation, no synchronisation): latents DEVICE
 * fp32 [16][nlat][lat_h][lat_w], rgb DEVICE [n][H][W][3], frames DEVICE fp32 [3][n][H][W] or
 * NULL. The first-latent flag flips when the call is enqueued. */
int wmcuda_vae_decode_device(wmcuda_vae_decoder *d, const float *latents, int nlat, uint8_t *rgb,
                             float *frames, int *nframes, char *err, size_t errlen);
/* The decoder's own device staging buffers (what wmcuda_vae_decode uses): latents for
 * WMCUDA_VAE_PLAN_LATENTS, RGB8 and fp32 frames for the most frames a decode yields. */
void wmcuda_vae_decoder_io(wmcuda_vae_decoder *d, float **latents, uint8_t **rgb, float **frames);

int wmcuda_vae_encoder_create(wmcuda_vae *v, int height, int width, wmcuda_vae_encoder **out,
                              char *err, size_t errlen);
void wmcuda_vae_encoder_destroy(wmcuda_vae_encoder *e);
/* As vae_encode: the first call takes exactly 1 frame, later calls 4k frames (run as k passes of
 * WMCUDA_VAE_ENC_CHUNK, which is exact: the network is causal); HOST fp32 in [3][n][H][W] and
 * out [16][nlat][H/8][W/8]. Synchronises. */
int wmcuda_vae_encode(wmcuda_vae_encoder *e, const float *frames, int n, float *latents, int *nlat,
                      char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
