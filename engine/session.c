/* A streaming session: action history, conditioning, then per block either the CPU reference
 * (rolling caches, the few-step sampler with re-noising and the context pass, model-dit.md
 * section 7, all here) or the same loop on the GPU (wmcuda_dit_run_block through
 * backend_cuda.c, fed the same conditioning slice and action windows); decoding through the
 * VAE dispatch of backend_vae.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/conditioning.h"
#include "engine/cpu/dit_cpu.h"
#include "engine/engine.h"
#include "engine/model_internal.h"
#include "engine/noise.h"

/* Video frames of action history kept: a block reads frames 4s-12 .. 4s+7, so 32 is enough. */
#define HISTORY 64

struct eng_session {
    eng_model *model;
    const eng_config *cfg;
    eng_session_params p;
    int backend;          /* ENG_BACKEND_CPU or ENG_BACKEND_CUDA */
    eng_cond *cond;       /* conditioning (given, or from the start image) */
    eng_vae_dec *dec;     /* streaming VAE decoder, when the model has one */
    eng_gpu_session *gpu; /* CUDA: the DiT session on the device */
    int gpu_cross_ready;  /* CUDA: image context prepared since the last reset */
    char broken[256];     /* CUDA: a failed reset; every block fails with this until a good one */
    dit_store store;      /* CPU: caches */
    dit_workspace *ws;
    eng_action_frame history[HISTORY];
    int64_t next_block;
    int64_t rope_base; /* RoPE position = latent frame - rope_base */
    /* per-block buffers */
    float *x, *x0, *v, *eps, *cond_blk, *mouse_win, *kb_win;
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS];
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static size_t block_floats(const eng_config *c, int channels) {
    return (size_t)channels * (size_t)c->frames_per_block * (size_t)c->lat_h * (size_t)c->lat_w;
}

void eng_session_destroy(eng_session *s) {
    if (!s) return;
    dit_store_destroy(&s->store);
    dit_workspace_destroy(s->ws);
    eng_gpu_session_destroy(s->gpu);
    eng_cond_destroy(s->cond);
    eng_vae_dec_destroy(s->dec);
    float *bufs[] = {s->x, s->x0, s->v, s->eps, s->cond_blk, s->mouse_win, s->kb_win};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(s);
}

static int make_conditioning(eng_session *s, const eng_session_params *p, char *err,
                             size_t errlen) {
    const eng_config *c = s->cfg;
    if (p->image && (p->cond || p->clip))
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "give either a start image or cond/clip tensors, not both");
    if (p->image) {
        if (!eng_model_has_encoders(s->model))
            return eng_errorf(
                err, errlen, ENG_ESTATE,
                "this model has no VAE encoder and CLIP (%s): it cannot start from an image",
                eng_model_describe(s->model));
        return eng_cond_from_image(s->model, s->backend == ENG_BACKEND_CPU, p->image, &s->cond, err,
                                   errlen);
    }
    return eng_cond_from_tensors(c, p->cond, p->cond_frames, p->clip, &s->cond, err, errlen);
}

int eng_session_create(eng_model *m, const eng_session_params *p, eng_session **out, char *err,
                       size_t errlen) {
    *out = NULL;
    const eng_config *c = eng_model_config(m);
    eng_session *s = calloc(1, sizeof *s);
    if (!s) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    s->model = m, s->cfg = c, s->p = *p;
    /* the trace and noise hooks exist on the CPU reference only (engine.h) */
    s->backend = p->trace || p->noise ? ENG_BACKEND_CPU : eng_model_backend(m);
    const int cpu = s->backend == ENG_BACKEND_CPU;
    const size_t T = (size_t)c->frames_per_block, P = (size_t)eng_action_window(c);
    int ok = 1;
#define ALLOC(ptr, n) ok &= ((ptr) = malloc((n) * sizeof *(ptr))) != NULL
    if (cpu) {
        ALLOC(s->x, block_floats(c, 16));
        ALLOC(s->x0, block_floats(c, 16));
        ALLOC(s->v, block_floats(c, 16));
        ALLOC(s->eps, block_floats(c, 16));
    }
    ALLOC(s->cond_blk, block_floats(c, 20));
    ALLOC(s->mouse_win, T * P * 2);
    ALLOC(s->kb_win, T * P * (size_t)c->keyboard_dim_in);
#undef ALLOC
    int rc = ok ? 0 : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for session buffers");
    if (!rc && cpu) {
        s->ws = dit_workspace_create(c, c->frames_per_block, c->local_attn_size);
        rc = s->ws ? dit_store_create(&s->store, c, c->local_attn_size, err, errlen)
                   : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for session buffers");
    }
    if (!rc && !cpu)
        rc = eng_gpu_session_create(eng_model_gpu(m), p->seed, p->session_id, &s->gpu, err, errlen);
    if (!rc) rc = make_conditioning(s, p, err, errlen);
    if (!rc && eng_model_has_decoder(m))
        rc = eng_vae_dec_create(eng_model_vae_backend(m), cpu, c->lat_h, c->lat_w, &s->dec, err,
                                errlen);
    if (rc) {
        eng_session_destroy(s);
        return rc;
    }
    s->p.cond = s->p.clip = s->p.image = NULL; /* the caller's buffers are not kept */
    eng_sampler_schedule(c, s->tau, s->sigma);
    eng_session_reset(s);
    *out = s;
    return 0;
}

/* The CPU parts cannot fail; a device failure is kept and reported by the next block. */
void eng_session_reset(eng_session *s) {
    char err[200] = "";
    int rc = 0;
    if (s->gpu) {
        rc = eng_gpu_session_reset(s->gpu, err, sizeof err);
        s->gpu_cross_ready = 0;
    } else {
        dit_store_reset(&s->store);
    }
    if (s->dec && !rc) rc = eng_vae_dec_reset(s->dec, err, sizeof err);
    snprintf(s->broken, sizeof s->broken, "%s", rc ? err : "");
    memset(s->history, 0, sizeof s->history);
    s->next_block = 0;
    s->rope_base = 0;
}

int eng_session_backend(const eng_session *s) {
    return s->backend;
}

int eng_session_block_video_frames(const eng_session *s) {
    const eng_config *c = s->cfg;
    return s->next_block == 0 ? 1 + c->vae_time_ratio * (c->frames_per_block - 1)
                              : c->vae_time_ratio * c->frames_per_block;
}

int64_t eng_session_next_block(const eng_session *s) {
    return s->next_block;
}

void eng_action_windows(const eng_config *c, const eng_action_frame *history, int64_t history_len,
                        int64_t frame0, int F, float *mouse_win, float *kb_win) {
    const int P = eng_action_window(c), kd = c->keyboard_dim_in;
    for (int f = 0; f < F; f++)
        for (int m = 0; m < P; m++) {
            const eng_action_frame *a =
                &history[eng_action_window_index(c, frame0 + f, m) % history_len];
            if (mouse_win) {
                mouse_win[((size_t)f * P + m) * 2 + 0] = a->mouse[0];
                mouse_win[((size_t)f * P + m) * 2 + 1] = a->mouse[1];
            }
            for (int k = 0; k < kd; k++) kb_win[((size_t)f * P + m) * kd + k] = a->keyboard[k];
        }
}

static void trace_block_tensor(eng_session *s, const char *name, const float *data, int channels) {
    if (!s->p.trace) return;
    const eng_config *c = s->cfg;
    int64_t shape[4] = {channels, c->frames_per_block, c->lat_h, c->lat_w};
    s->p.trace(s->p.user, name, data, 4, shape);
}

static int draw_noise(eng_session *s, int k, float *dst, char *err, size_t errlen) {
    const size_t n = block_floats(s->cfg, 16);
    int got = s->p.noise ? s->p.noise(s->p.user, s->next_block, k, dst, n, err, errlen) : 0;
    if (got < 0) return got;
    if (!got)
        eng_noise_fill(dst, n, s->p.seed, s->p.session_id, (uint32_t)s->next_block, (uint32_t)k);
    char name[48];
    snprintf(name, sizeof name, "b%lld.noise%d", (long long)s->next_block, k);
    trace_block_tensor(s, name, dst, 16);
    return 0;
}

/* Hidden-state observer that prefixes the layer names with the forward's tag. */
typedef struct hidden_trace {
    eng_session *s;
    const char *tag;
} hidden_trace;

static void hidden_trace_fn(void *user, const char *name, const float *data, int ndim,
                            const int64_t *shape) {
    hidden_trace *h = user;
    char full[64];
    snprintf(full, sizeof full, "%s.%s", h->tag, name);
    h->s->p.trace(h->s->p.user, full, data, ndim, shape);
}

static int forward(eng_session *s, int step, const float *x, float t, float *v, double *ms,
                   char *err, size_t errlen) {
    const eng_config *c = s->cfg;
    const int T = c->frames_per_block;
    char tag[32];
    snprintf(tag, sizeof tag, "b%lld.s%d", (long long)s->next_block, step);
    char name[48];
    snprintf(name, sizeof name, "%s.x", tag);
    trace_block_tensor(s, name, x, 16);
    float tf[ENG_MAX_STEPS];
    for (int f = 0; f < T; f++) tf[f] = t;
    hidden_trace ht = {s, tag};
    const int hidden =
        s->p.trace && s->p.trace_hidden_block == s->next_block && s->p.trace_hidden_step == step;
    dit_inputs in = {.nframes = T,
                     .frame0 = s->next_block * T,
                     .rope_base = s->rope_base,
                     .x = x,
                     .cond = s->cond_blk,
                     .t = tf,
                     .mouse_win = c->enable_mouse ? s->mouse_win : NULL,
                     .kb_win = s->kb_win,
                     .trace = hidden ? hidden_trace_fn : NULL,
                     .trace_user = &ht};
    double t0 = now_ms();
    int rc = dit_cpu_forward(eng_model_weights(s->model), &in, &s->store, s->ws, v, err, errlen);
    *ms = now_ms() - t0;
    snprintf(name, sizeof name, "%s.v", tag);
    if (!rc) trace_block_tensor(s, name, v, 16);
    return rc;
}

/* Before RoPE positions of this block would reach the table limit, move the origin so that the
 * oldest frame still visible gets position 0, and rotate the cached keys to match. */
static void maybe_rebase(eng_session *s) {
    const eng_config *c = s->cfg;
    const int64_t s0 = s->next_block * c->frames_per_block;
    if (s0 - s->rope_base + c->frames_per_block <= c->rope_pos_limit) return;
    int64_t delta = s0 + c->frames_per_block - c->local_attn_size - s->rope_base;
    dit_store_rebase(&s->store, c, delta);
    s->rope_base += delta;
}

/* The same block on the device: wmcuda_dit_run_block draws the noise from the same streams and
 * moves the RoPE origin at the same blocks as the CPU loop below. */
static int run_block_gpu(eng_session *s, float *latents_out, eng_block_timings *timings,
                         double t_start, char *err, size_t errlen) {
    const eng_config *c = s->cfg;
    int rc = 0;
    if (!s->gpu_cross_ready) {
        rc = eng_gpu_session_prepare_cross(s->gpu, eng_cond_clip(s->cond), err, errlen);
        s->gpu_cross_ready = !rc;
    }
    eng_block_timings tm;
    if (!rc)
        rc = eng_gpu_session_run_block(s->gpu, s->cond_blk, c->enable_mouse ? s->mouse_win : NULL,
                                       s->kb_win, latents_out, &tm, err, errlen);
    if (rc) return rc;
    tm.total_ms = now_ms() - t_start; /* as the CPU path: from the action windows on */
    if (timings) *timings = tm;
    s->next_block++;
    return 0;
}

int eng_session_run_block(eng_session *s, const eng_action_frame *actions, int nactions,
                          float *latents_out, eng_block_timings *timings, char *err,
                          size_t errlen) {
    const eng_config *c = s->cfg;
    const int T = c->frames_per_block, K = c->num_steps;
    const int want = eng_session_block_video_frames(s);
    if (nactions != want)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "block %lld needs %d video frames of actions, got %d",
                          (long long)s->next_block, want, nactions);
    if (s->broken[0])
        return eng_errorf(err, errlen, ENG_ESTATE, "session reset failed: %s", s->broken);
    double t_start = now_ms();
    const int64_t s0 = s->next_block * T;
    /* actions of video frames [0, 9) for block 0, [4s-3, 4s+9) afterwards (7.7) */
    const int64_t v0 = s->next_block == 0 ? 0 : (int64_t)c->vae_time_ratio * s0 - 3;
    for (int i = 0; i < nactions; i++) s->history[(v0 + i) % HISTORY] = actions[i];
    eng_action_windows(c, s->history, HISTORY, s0, T, s->mouse_win, s->kb_win);
    int rc = eng_cond_slice(s->cond, s0, T, s->cond_blk, err, errlen);
    if (rc) return rc;
    if (s->gpu) return run_block_gpu(s, latents_out, timings, t_start, err, errlen);
    maybe_rebase(s);
    if (!s->store.cross_ready)
        dit_cpu_prepare_cross(eng_model_weights(s->model), eng_cond_clip(s->cond), &s->store,
                              s->ws);

    eng_block_timings tm = {0};
    const size_t n = block_floats(c, 16);
    rc = draw_noise(s, 0, s->x, err, errlen);
    for (int k = 0; k < K && !rc; k++) {
        rc = forward(s, k, s->x, s->tau[k], s->v, &tm.forward_ms[k], err, errlen);
        if (rc) break;
        const double sig = s->sigma[k];
        for (size_t i = 0; i < n; i++) s->x0[i] = (float)((double)s->x[i] - sig * (double)s->v[i]);
        if (k + 1 < K) {
            rc = draw_noise(s, k + 1, s->eps, err, errlen);
            const float sn = s->sigma[k + 1];
            for (size_t i = 0; i < n && !rc; i++) s->x[i] = (1.0f - sn) * s->x0[i] + sn * s->eps[i];
        }
    }
    /* context pass: clean x0 at t = 0 rewrites this block's cache entries; output discarded */
    if (!rc) rc = forward(s, K, s->x0, 0.0f, s->v, &tm.forward_ms[K], err, errlen);
    if (rc) return rc;
    memcpy(latents_out, s->x0, n * sizeof(float));
    tm.forwards = K + 1;
    tm.total_ms = now_ms() - t_start;
    if (timings) *timings = tm;
    s->next_block++;
    return 0;
}

int eng_session_decode(eng_session *s, const float *latents, uint8_t *rgb, int *nframes, char *err,
                       size_t errlen) {
    *nframes = 0;
    if (!s->dec)
        return eng_errorf(err, errlen, ENG_ESTATE, "this model has no VAE decoder (%s)",
                          eng_model_describe(s->model));
    return eng_vae_decode(s->dec, latents, s->cfg->frames_per_block, rgb, nframes, err, errlen);
}

int eng_synthetic_conditioning(const eng_config *c, uint64_t seed, int frames, float *cond,
                               float *clip) {
    const size_t HW = (size_t)c->lat_h * c->lat_w, F = (size_t)frames;
    /* image latents: frames 0 .. min(F, 30) - 1 distinct, later ones equal to latent 29 */
    size_t distinct = F < 30 ? F : 30;
    float *lat = malloc(16 * distinct * HW * sizeof(float));
    if (!lat) return ENG_ENOMEM;
    eng_noise_fill(lat, 16 * distinct * HW, seed, 0, ENG_STREAM_COND, ENG_COND_WHAT_CONCAT);
    for (size_t ch = 0; ch < 20; ch++)
        for (size_t f = 0; f < F; f++) {
            float *dst = cond + (ch * F + f) * HW;
            if (ch < 4) {
                for (size_t i = 0; i < HW; i++) dst[i] = f == 0 ? 1.0f : 0.0f;
            } else {
                size_t src = f < distinct ? f : distinct - 1;
                for (size_t i = 0; i < HW; i++) dst[i] = lat[((ch - 4) * distinct + src) * HW + i];
            }
        }
    free(lat);
    eng_noise_fill(clip, (size_t)c->clip_tokens * c->clip_dim, seed, 0, ENG_STREAM_COND,
                   ENG_COND_WHAT_VISUAL);
    return 0;
}
