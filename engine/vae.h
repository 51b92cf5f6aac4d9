/* The Wan2.1 VAE of Matrix-Game-2.0 (model-vae-clip.md sections 2-4), CPU reference in float32:
 * a streaming decoder whose causal-convolution caches belong to a session (3 latents -> 9 video
 * frames for the first block, 12 afterwards), and a streaming encoder for the start image (frame 0,
 * then chunks of 4 frames, with its own caches) that yields the normalised conditioning latents. */
#ifndef WM_ENGINE_VAE_H
#define WM_ENGINE_VAE_H

#include <stddef.h>
#include <stdint.h>

typedef struct vae_config {
    char size_name[16];       /* "full" or "tiny" */
    int base_dim;             /* 96 */
    int z_dim;                /* 16 */
    int dim_mult[4];          /* 1 2 4 4 */
    int num_res_blocks;       /* 2 (encoder stages; decoder stages have num_res_blocks + 1) */
    int temporal_down[3];     /* 0 1 1 (decoder temporal up is the reverse) */
    float latent_mean[16], latent_std[16];
} vae_config;

/* "full" (Wan2.1) or "tiny" (base_dim 8, same structure: every layer kind, both temporal
 * resamplers, attention, the latent normalisation). */
int vae_config_preset(vae_config *out, const char *size, char *err, size_t errlen);

typedef struct vae_weights vae_weights; /* opaque, immutable once made */

/* Deterministic synthetic weights (Philox streams keyed by seed and tensor name, engine/noise.h). */
int vae_weights_synthetic(const vae_config *c, uint64_t seed, vae_weights **out, char *err,
                          size_t errlen);
/* Loads from `Wan2.1_VAE.pth` (official names) or a Diffusers `vae/` safetensors file (mapped
 * names), any format engine/tensor_source.h reads. `parts`: VAE_PART_DECODER and/or
 * VAE_PART_ENCODER (a decode-only server need not hold the encoder). Missing, unexpected (for the
 * parts asked), mis-shaped or non-finite tensors are errors naming the file and key. */
enum { VAE_PART_DECODER = 1, VAE_PART_ENCODER = 2 };
int vae_weights_load(const vae_config *c, const char *path, int parts, vae_weights **out,
                     char *err, size_t errlen);
void vae_weights_free(vae_weights *w);
const vae_config *vae_weights_config(const vae_weights *w);

/* Streaming decoder: per-session state (32 cache slots of 2 frames each plus the first-latent
 * flag) for latents of lat_h x lat_w. */
typedef struct vae_decoder vae_decoder;
int vae_decoder_create(const vae_weights *w, int lat_h, int lat_w, vae_decoder **out, char *err,
                       size_t errlen);
void vae_decoder_destroy(vae_decoder *d);
void vae_decoder_reset(vae_decoder *d);
/* Frames a decode of `nlat` latents will produce: 1 + 4(nlat-1) on the first call, 4*nlat after. */
int vae_decoder_frames_out(const vae_decoder *d, int nlat);
/* latents: normalised, [16][nlat][lat_h][lat_w]. frames: [3][nframes][8*lat_h][8*lat_w], clamped to
 * [-1, 1]. */
int vae_decode(vae_decoder *d, const float *latents, int nlat, float *frames, int *nframes,
               char *err, size_t errlen);

/* Streaming encoder: per-encode state. The first call takes exactly 1 frame (the start image),
 * later calls 4*k frames; each call returns the normalised latents of its frames
 * (1 for the first, k later): [16][nlat][H/8][W/8]. frames: [3][n][H][W] in [-1, 1]. */
typedef struct vae_encoder vae_encoder;
int vae_encoder_create(const vae_weights *w, int height, int width, vae_encoder **out, char *err,
                       size_t errlen);
void vae_encoder_destroy(vae_encoder *e);
int vae_encode(vae_encoder *e, const float *frames, int n, float *latents, int *nlat, char *err,
               size_t errlen);

/* RGB8 as the reference saves frames: u8 = trunc(clip((x + 1) * 127.5, 0, 255)).
 * frames [3][n][H][W] -> rgb [n][H][W][3]. */
void vae_frames_to_rgb8(const float *frames, int n, int height, int width, uint8_t *rgb);

#endif
