/* What the backends see of a model beyond the public API, and the internal interface between the
 * backend-neutral engine (model.c, session.c, conditioning.c) and the device code:
 *   backend_select.c  WM_BACKEND / options -> CPU or CUDA, with the reason
 *   backend_cuda.c    the CUDA DiT and CLIP behind eng_gpu_* (built with CUDA only;
 *   backend_nocuda.c  its stand-in without CUDA: no device, every call fails)
 *   backend_vae.c     the VAE decode and encode dispatch (CPU VAE, or the GPU VAE with WM_CUDA_VAE)
 * Nothing here includes a CUDA header, so the engine builds the same with and without CUDA. */
#ifndef WM_ENGINE_MODEL_INTERNAL_H
#define WM_ENGINE_MODEL_INTERNAL_H

#include "engine/clip.h"
#include "engine/engine.h"
#include "engine/vae.h"
#include "engine/weights.h"

const eng_weights *eng_model_weights(const eng_model *m);
const vae_weights *eng_model_vae(const eng_model *m);   /* NULL without a VAE */
const clip_weights *eng_model_clip(const eng_model *m); /* NULL without CLIP */

/* ---- backend choice (backend_select.c) ------------------------------------------------------ */

/* requested: eng_model_options.backend. DEFAULT reads WM_BACKEND (getenv_fn, NULL = getenv).
 * Sets *out to ENG_BACKEND_CPU or ENG_BACKEND_CUDA, *automatic (may be NULL) to whether AUTO
 * chose it, and why[] to one line on how it was chosen (for CUDA: the device). Fails
 * (ENG_EINVAL) on a bad WM_BACKEND value or when CUDA is asked for and there is none, saying
 * why. */
int eng_backend_resolve(int requested, const char *(*getenv_fn)(const char *), int *out,
                        int *automatic, char *why, size_t whylen, char *err, size_t errlen);

/* ---- the device (backend_cuda.c / backend_nocuda.c) ----------------------------------------- */

/* 1 when a CUDA device answers (info: its name and memory), 0 when not (info: why: a build
 * without CUDA, no device, no or too old a driver). */
int eng_gpu_probe(char *info, size_t infolen);

typedef struct eng_gpu_model eng_gpu_model;
typedef struct eng_gpu_session eng_gpu_session;

/* Uploads the DiT and, when given, CLIP (bf16 on the device); the host weights may change or go
 * afterwards. Errors: ENG_EINVAL (config the CUDA code does not support), ENG_ENOMEM (device
 * memory), ENG_EIO (any other CUDA failure); the message names the failing call. */
int eng_gpu_model_create(const eng_weights *w, const clip_weights *clip, eng_gpu_model **out,
                         char *err, size_t errlen);
void eng_gpu_model_destroy(eng_gpu_model *g);
size_t eng_gpu_model_device_bytes(const eng_gpu_model *g);
/* Free and total memory of the device the model's stream runs on (cudaMemGetInfo). */
int eng_gpu_memory(size_t *free_bytes, size_t *total_bytes, char *err, size_t errlen);
void *eng_gpu_model_stream(const eng_gpu_model *g); /* cudaStream_t every device call runs on */
int eng_gpu_has_clip(const eng_gpu_model *g);
/* As clip_encode, on the device. */
int eng_gpu_clip_encode(eng_gpu_model *g, const float *image, int height, int width, float *tokens,
                        char *err, size_t errlen);

int eng_gpu_session_create(eng_gpu_model *g, uint64_t seed, uint32_t session_id,
                           eng_gpu_session **out, char *err, size_t errlen);
void eng_gpu_session_destroy(eng_gpu_session *s);
/* Block 0 again; the image context must be prepared again afterwards. */
int eng_gpu_session_reset(eng_gpu_session *s, char *err, size_t errlen);
int eng_gpu_session_prepare_cross(eng_gpu_session *s, const float *clip, char *err, size_t errlen);
/* wmcuda_dit_run_block: cond [20][T][H][W], mouse_win (NULL without mouse), kb_win as
 * eng_action_windows, latents_out [16][T][H][W]. */
int eng_gpu_session_run_block(eng_gpu_session *s, const float *cond, const float *mouse_win,
                              const float *kb_win, float *latents_out, eng_block_timings *timings,
                              char *err, size_t errlen);

/* ---- VAE dispatch (backend_vae.c) ----------------------------------------------------------- */

/* The model's VAE on one backend: on CUDA with the GPU VAE built in (WM_CUDA_VAE) the weights are
 * uploaded once here; otherwise the CPU VAE. stream: the device stream (NULL on the CPU). */
typedef struct eng_vae eng_vae;
typedef struct eng_vae_dec eng_vae_dec;
typedef struct eng_vae_enc eng_vae_enc;

int eng_vae_create(const vae_weights *w, int backend, void *stream, eng_vae **out, char *err,
                   size_t errlen);
void eng_vae_destroy(eng_vae *v);
const char *eng_vae_where(const eng_vae *v); /* "cpu" or "cuda" */
/* Streaming decoder of one session (latents [16][n][lat_h][lat_w] -> RGB8 frames). A session
 * whose DiT runs on the CPU reference passes cpu_only = 1 and gets the CPU decoder. */
int eng_vae_dec_create(eng_vae *v, int cpu_only, int lat_h, int lat_w, eng_vae_dec **out, char *err,
                       size_t errlen);
void eng_vae_dec_destroy(eng_vae_dec *d);
int eng_vae_dec_reset(eng_vae_dec *d, char *err, size_t errlen);
/* rgb [n][8*lat_h][8*lat_w][3]; *nframes = 1 + 4 (nlat - 1) for the first call, 4 nlat after. */
int eng_vae_decode(eng_vae_dec *d, const float *latents, int nlat, uint8_t *rgb, int *nframes,
                   char *err, size_t errlen);
/* Streaming encoder (frames [3][n][h][w] in [-1, 1] -> latents [16][nlat][h/8][w/8]). */
int eng_vae_enc_create(eng_vae *v, int cpu_only, int height, int width, eng_vae_enc **out,
                       char *err, size_t errlen);
void eng_vae_enc_destroy(eng_vae_enc *e);
int eng_vae_encode(eng_vae_enc *e, const float *frames, int n, float *latents, int *nlat, char *err,
                   size_t errlen);

/* ---- what a session needs of its model ------------------------------------------------------ */

eng_gpu_model *eng_model_gpu(const eng_model *m);   /* NULL on the CPU backend */
eng_vae *eng_model_vae_backend(const eng_model *m); /* NULL without a VAE */

#endif
