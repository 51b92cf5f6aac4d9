/* wmserve engine: the public API that the server, the tools and the tests drive.
 *
 * A model is a config plus its weights (a checkpoint directory or synthetic weights from a seed).
 * A session is one player's world: conditioning (start-image latents and CLIP features), the
 * rolling KV caches, the action history and the noise streams. Each call to
 * eng_session_run_block generates the next block of 3 latent frames from the actions of its video
 * frames: the few-step sampler (model-dit.md 7.3) then the context pass that writes the caches.
 *
 * Ownership: eng_model_open returns a model the caller closes; sessions borrow their model, which
 * must outlive them. Nothing here prints; errors come back as codes (engine/errors.h) and text. */
#ifndef WM_ENGINE_ENGINE_H
#define WM_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/actions.h"
#include "engine/config.h"
#include "engine/errors.h"

typedef struct eng_model eng_model;
typedef struct eng_session eng_session;

/* Where a model computes (README "Backends"). ENG_BACKEND_DEFAULT (0, what a zeroed options struct
 * holds) takes the environment variable WM_BACKEND (cpu | cuda | auto) and is AUTO when it is
 * unset. AUTO is CUDA when the engine was built with CUDA and a device answers, else the CPU
 * reference; the reason for the choice is in eng_model_describe. CUDA fails eng_model_open with a
 * message when the build has no CUDA or no device answers. */
typedef enum eng_backend {
    ENG_BACKEND_DEFAULT = 0,
    ENG_BACKEND_AUTO = 1,
    ENG_BACKEND_CPU = 2,
    ENG_BACKEND_CUDA = 3,
} eng_backend;

/* "auto", "cpu" or "cuda" -> ENG_BACKEND_*; anything else (NULL, "", "gpu", "CPU") -> -1. */
int eng_backend_parse(const char *name);
/* "default", "auto", "cpu", "cuda" or "?". */
const char *eng_backend_name(int backend);

typedef struct eng_model_options {
    int variant;    /* eng_variant, or -1: from config.json / the weights (synthetic: universal) */
    int num_layers; /* 0: as configured; n > 0: only the first n layers (reduced depth) */
    uint64_t weight_seed; /* synthetic weights' seed */
    int rope_pos_limit;   /* 0: default (1024, the reference's table) */
    int backend;          /* eng_backend; 0 = DEFAULT (WM_BACKEND, else AUTO) */
} eng_model_options;

/* spec: "synthetic:tiny", "synthetic:full", a checkpoint directory, or a .safetensors file.
 * Directory layouts (README "Model directories"): the official release
 * (base_distilled_model/base_distill.safetensors, gta_distilled_model/gta_keyboard2dim.safetensors,
 * templerun_distilled_model/templerun_7dim_onlykey.safetensors, with or without config.json), a
 * Diffusers repository (transformer/), or a folder with config.json and *.safetensors. */
int eng_model_open(const char *spec, const eng_model_options *opt, eng_model **out, char *err,
                   size_t errlen);
void eng_model_close(eng_model *m);
const eng_config *eng_model_config(const eng_model *m);
/* One line: where the weights came from, variant, layers, parameter count, then the backend:
 * "backend cuda (GPU name, memory, device bytes held)" or "backend cpu (why: requested, or what
 * AUTO found: no CUDA in this build, no device, the driver's error)". */
const char *eng_model_describe(const eng_model *m);
/* ENG_BACKEND_CPU or ENG_BACKEND_CUDA: what the model resolved to. With CUDA, the DiT, CLIP and
 * (when the build enables the GPU VAE, CMake WM_CUDA_VAE) the VAE run on the device; the host
 * copy of the weights stays, so CPU reference sessions remain possible (see eng_session_create). */
int eng_model_backend(const eng_model *m);
/* Free and total memory of the model's GPU now (what a new session can still take); ENG_ESTATE on
 * the CPU backend. */
int eng_model_device_memory(const eng_model *m, size_t *free_bytes, size_t *total_bytes, char *err,
                            size_t errlen);

/* Observer of named intermediates (wmgen's dumps, parity tests). Names:
 *   "b{n}.s{k}.x"        input latents of forward k of block n ([16][3][H][W]); k = num_steps is
 *                        the context pass
 *   "b{n}.s{k}.v"        that forward's raw model output (velocity)
 *   "b{n}.s{k}.layer{i}" hidden state after transformer block i ([3*S][D]), for the forward
 *                        selected by trace_hidden_block / trace_hidden_step only
 *   "b{n}.noise{k}"      the noise tensor used (k = 0 initial, k >= 1 re-noising before step k+1)
 */
typedef void (*eng_trace_fn)(void *user, const char *name, const float *data, int ndim,
                             const int64_t *shape);
/* Supplies noise instead of the generator: fill dst (n floats, [16][3][H][W]) for block `block`,
 * draw `k` (0 = initial noise of the block, k >= 1 = re-noising before step k+1). Return 1 when
 * filled, 0 to use the generator, negative to fail the block (message in err). */
typedef int (*eng_noise_fn)(void *user, int64_t block, int k, float *dst, size_t n, char *err,
                            size_t errlen);

typedef struct eng_session_params {
    uint64_t seed;       /* noise streams: Philox key */
    uint32_t session_id; /* noise streams: stream word s0 */
    /* Conditioning, either given directly ... */
    const float *cond; /* [20][cond_frames][H][W]; latent f uses frame min(f, cond_frames - 1) */
    int cond_frames;
    const float *clip; /* [clip_tokens][clip_dim] visual_context */
    /* ... or computed from a start image by the model's VAE encoder and CLIP (cond and clip NULL):
     * [3][video_h][video_w] in [-1, 1] (engine/image.h img_prepare makes it from a PNG/JPEG). */
    const float *image;
    eng_trace_fn trace;
    int64_t trace_hidden_block; /* -1: no hidden-state dumps */
    int trace_hidden_step;
    eng_noise_fn noise;
    void *user;
} eng_session_params;

typedef struct eng_block_timings {
    double forward_ms[ENG_MAX_STEPS + 1]; /* sampler steps, then the context pass */
    int forwards;
    double total_ms;
} eng_block_timings;

/* On a CUDA model the session runs on the device (DiT block loop, CLIP and VAE of its start image,
 * decoding), except when p->trace or p->noise is set: those hooks exist on the CPU reference only,
 * so such a session is a CPU reference session throughout (its conditioning and decoding too). */
int eng_session_create(eng_model *m, const eng_session_params *p, eng_session **out, char *err,
                       size_t errlen);
/* ENG_BACKEND_CPU or ENG_BACKEND_CUDA: where this session computes. */
int eng_session_backend(const eng_session *s);
void eng_session_destroy(eng_session *s);
/* Back to block 0 with the same conditioning and seed: caches and history cleared. On the CUDA
 * backend a device failure here is kept and returned by the next eng_session_run_block. */
void eng_session_reset(eng_session *s);
/* Video frames of actions the next block consumes: 9 for block 0, 12 afterwards. */
int eng_session_block_video_frames(const eng_session *s);
int64_t eng_session_next_block(const eng_session *s);
/* Runs one block. actions: exactly eng_session_block_video_frames(s) frames. latents_out:
 * [16][3][H][W] (the block's final x0). */
int eng_session_run_block(eng_session *s, const eng_action_frame *actions, int nactions,
                          float *latents_out, eng_block_timings *timings, char *err, size_t errlen);

/* Pixels: the model's video size (8x the latent size), and whether it can decode latents to frames
 * (VAE decoder) and start sessions from images (VAE encoder and CLIP). Synthetic models have all
 * three; a checkpoint directory has them when its VAE and CLIP files are present. */
void eng_model_video_size(const eng_model *m, int *width, int *height);
int eng_model_has_decoder(const eng_model *m);
int eng_model_has_encoders(const eng_model *m);

/* Decodes the block just generated (its latents from eng_session_run_block) with the session's
 * streaming VAE decoder into RGB8 frames rgb [n][video_h][video_w][3]; n = 9 for block 0, 12 after
 * (ENG_MAX_FRAMES_PER_BLOCK bounds it). Blocks must be decoded in order. */
#define ENG_MAX_FRAMES_PER_BLOCK 12
int eng_session_decode(eng_session *s, const float *latents, uint8_t *rgb, int *nframes, char *err,
                       size_t errlen);

/* Call first in main(): makes idle OpenMP threads sleep instead of spinning against OpenBLAS's
 * threads (sets OMP_WAIT_POLICY=passive and re-executes the program when it is unset). */
void eng_cpu_threads_setup(char **argv);

/* One line about the CPU backend: BLAS library, its kernel and thread count, with a hint when
 * OpenBLAS fell back to a generic kernel on a CPU that has AVX2 (common in VMs). */
void eng_cpu_backend_describe(char *dst, size_t len);

/* Synthetic conditioning for tests and benchmarks (no VAE/CLIP yet): cond [20][frames][H][W] with
 * the mask channels set for latent 0 and N(0,1) image latents that become constant from latent 29
 * on (as the real encoder's grey continuation does), clip [clip_tokens][clip_dim] N(0,1). */
int eng_synthetic_conditioning(const eng_config *c, uint64_t seed, int frames, float *cond,
                               float *clip);

/* Fills the action-module windows of latent frames frame0 .. frame0+F-1 from video-frame actions
 * history[j % history_len] (j = absolute video frame; history_len must exceed the span read):
 * mouse_win [F][P*2] (m-major), kb_win [F][P][kdim]. */
void eng_action_windows(const eng_config *c, const eng_action_frame *history, int64_t history_len,
                        int64_t frame0, int F, float *mouse_win, float *kb_win);

#endif
