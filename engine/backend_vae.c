/* The one place where the engine's VAE work (a session's streaming decode, the lazy encode of its
 * start image's conditioning latents) picks a backend: the CPU reference (engine/vae.h) or the GPU
 * VAE (engine/cuda/vae_cuda.h). The GPU branch is compiled only with WM_HAVE_CUDA and WM_CUDA_VAE
 * (CMake option WM_CUDA_VAE, off until the GPU VAE lands), so the engine never depends on it
 * otherwise; a CUDA model then decodes on the CPU. */
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/model_internal.h"

#if defined(WM_HAVE_CUDA) && defined(WM_CUDA_VAE) && WM_HAVE_CUDA && WM_CUDA_VAE
#define USE_GPU_VAE 1
#include "engine/cuda/vae_cuda.h"
#else
#define USE_GPU_VAE 0
#endif

struct eng_vae {
    const vae_weights *w; /* the model's host weights (the CPU path, and cpu_only sessions) */
#if USE_GPU_VAE
    wmcuda_vae *gpu; /* NULL: CPU */
#endif
};

struct eng_vae_dec {
    vae_decoder *cpu;
    float *frames; /* CPU path: [3][cap][8 lat_h][8 lat_w] */
    int cap, vh, vw;
#if USE_GPU_VAE
    wmcuda_vae_decoder *gpu;
#endif
};

struct eng_vae_enc {
    vae_encoder *cpu;
#if USE_GPU_VAE
    wmcuda_vae_encoder *gpu;
#endif
};

int eng_vae_create(const vae_weights *w, int backend, void *stream, eng_vae **out, char *err,
                   size_t errlen) {
    *out = NULL;
    eng_vae *v = calloc(1, sizeof *v);
    if (!v) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    v->w = w;
#if USE_GPU_VAE
    if (backend == ENG_BACKEND_CUDA) {
        char msg[512] = "";
        if (wmcuda_vae_create(w, stream, &v->gpu, msg, sizeof msg)) {
            free(v);
            return eng_errorf(err, errlen, ENG_EIO, "GPU VAE: %s", msg);
        }
    }
#else
    (void)backend, (void)stream;
#endif
    *out = v;
    return 0;
}

void eng_vae_destroy(eng_vae *v) {
    if (!v) return;
#if USE_GPU_VAE
    if (v->gpu) wmcuda_vae_destroy(v->gpu);
#endif
    free(v);
}

const char *eng_vae_where(const eng_vae *v) {
#if USE_GPU_VAE
    if (v->gpu) return "cuda";
#else
    (void)v;
#endif
    return "cpu";
}

/* ---- decoder ------------------------------------------------------------------------------- */

int eng_vae_dec_create(eng_vae *v, int cpu_only, int lat_h, int lat_w, eng_vae_dec **out, char *err,
                       size_t errlen) {
    *out = NULL;
    eng_vae_dec *d = calloc(1, sizeof *d);
    if (!d) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    d->vh = 8 * lat_h, d->vw = 8 * lat_w;
    int rc;
#if USE_GPU_VAE
    if (v->gpu && !cpu_only) {
        char msg[512] = "";
        rc = wmcuda_vae_decoder_create(v->gpu, lat_h, lat_w, &d->gpu, msg, sizeof msg)
                 ? eng_errorf(err, errlen, ENG_EIO, "GPU VAE decoder: %s", msg)
                 : 0;
    } else
#endif
    {
        (void)cpu_only;
        rc = vae_decoder_create(v->w, lat_h, lat_w, &d->cpu, err, errlen);
    }
    if (rc) {
        eng_vae_dec_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

void eng_vae_dec_destroy(eng_vae_dec *d) {
    if (!d) return;
#if USE_GPU_VAE
    if (d->gpu) wmcuda_vae_decoder_destroy(d->gpu);
#endif
    vae_decoder_destroy(d->cpu);
    free(d->frames);
    free(d);
}

int eng_vae_dec_reset(eng_vae_dec *d, char *err, size_t errlen) {
#if USE_GPU_VAE
    if (d->gpu) {
        char msg[512] = "";
        return wmcuda_vae_decoder_reset(d->gpu, msg, sizeof msg)
                   ? eng_errorf(err, errlen, ENG_EIO, "GPU VAE decoder reset: %s", msg)
                   : 0;
    }
#endif
    (void)err, (void)errlen;
    vae_decoder_reset(d->cpu);
    return 0;
}

/* CPU: float frames into the decoder's scratch (grown once to the largest call), then RGB8. */
int eng_vae_decode(eng_vae_dec *d, const float *latents, int nlat, uint8_t *rgb, int *nframes,
                   char *err, size_t errlen) {
    *nframes = 0;
#if USE_GPU_VAE
    if (d->gpu) {
        char msg[512] = "";
        return wmcuda_vae_decode(d->gpu, latents, nlat, rgb, NULL, nframes, msg, sizeof msg)
                   ? eng_errorf(err, errlen, ENG_EIO, "GPU VAE decode: %s", msg)
                   : 0;
    }
#endif
    const int want = vae_decoder_frames_out(d->cpu, nlat);
    if (want > d->cap) {
        float *f =
            realloc(d->frames, 3 * (size_t)want * (size_t)d->vh * (size_t)d->vw * sizeof(float));
        if (!f) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for decoded frames");
        d->frames = f, d->cap = want;
    }
    int n = 0;
    int rc = vae_decode(d->cpu, latents, nlat, d->frames, &n, err, errlen);
    if (rc) return rc;
    vae_frames_to_rgb8(d->frames, n, d->vh, d->vw, rgb);
    *nframes = n;
    return 0;
}

/* ---- encoder ------------------------------------------------------------------------------- */

int eng_vae_enc_create(eng_vae *v, int cpu_only, int height, int width, eng_vae_enc **out,
                       char *err, size_t errlen) {
    *out = NULL;
    eng_vae_enc *e = calloc(1, sizeof *e);
    if (!e) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    int rc;
#if USE_GPU_VAE
    if (v->gpu && !cpu_only) {
        char msg[512] = "";
        rc = wmcuda_vae_encoder_create(v->gpu, height, width, &e->gpu, msg, sizeof msg)
                 ? eng_errorf(err, errlen, ENG_EIO, "GPU VAE encoder: %s", msg)
                 : 0;
    } else
#endif
    {
        (void)cpu_only;
        rc = vae_encoder_create(v->w, height, width, &e->cpu, err, errlen);
    }
    if (rc) {
        eng_vae_enc_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
}

void eng_vae_enc_destroy(eng_vae_enc *e) {
    if (!e) return;
#if USE_GPU_VAE
    if (e->gpu) wmcuda_vae_encoder_destroy(e->gpu);
#endif
    vae_encoder_destroy(e->cpu);
    free(e);
}

int eng_vae_encode(eng_vae_enc *e, const float *frames, int n, float *latents, int *nlat, char *err,
                   size_t errlen) {
#if USE_GPU_VAE
    if (e->gpu) {
        char msg[512] = "";
        return wmcuda_vae_encode(e->gpu, frames, n, latents, nlat, msg, sizeof msg)
                   ? eng_errorf(err, errlen, ENG_EIO, "GPU VAE encode: %s", msg)
                   : 0;
    }
#endif
    return vae_encode(e->cpu, frames, n, latents, nlat, err, errlen);
}
