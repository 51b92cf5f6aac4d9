/* A session's conditioning (model-dit.md 3.4-3.5, model-vae-clip.md 4.2-4.5): cond_concat (4 mask
 * channels + 16 image-latent channels per latent frame) and visual_context, either given as tensors
 * or computed from a start image. From an image, CLIP and the first VAE latent are computed at
 * once; the latents of the grey continuation are encoded lazily, 4 zero frames per latent, when
 * the session first needs them, and stop at latent 29: every later latent equals latent 29 (the
 * encoder's receptive field then sees only zero frames), so a session of any length needs 30. */
#include "engine/conditioning.h"

#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/model_internal.h"

#define COND_DISTINCT 30

struct eng_cond {
    int lat_h, lat_w;
    float *clip;      /* [tokens][clip_dim] */
    float *cond;      /* [20][cap][H][W]: mask channels, then image latents */
    int cap, ready;   /* frames allocated / frames available */
    int bounded;      /* given tensors: frames past `ready` repeat the last */
    eng_vae_enc *enc; /* image sessions until latent 29 is encoded (backend_vae.c) */
    float *zeros;     /* [3][4][video_h][video_w] grey continuation chunk */
};

void eng_cond_destroy(eng_cond *c) {
    if (!c) return;
    eng_vae_enc_destroy(c->enc);
    free(c->clip), free(c->cond), free(c->zeros);
    free(c);
}

static eng_cond *cond_alloc(const eng_config *cfg, int cap) {
    eng_cond *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->lat_h = cfg->lat_h, c->lat_w = cfg->lat_w, c->cap = cap;
    c->clip = malloc((size_t)cfg->clip_tokens * cfg->clip_dim * sizeof(float));
    c->cond = malloc(20 * (size_t)cap * cfg->lat_h * cfg->lat_w * sizeof(float));
    if (!c->clip || !c->cond) {
        eng_cond_destroy(c);
        return NULL;
    }
    return c;
}

int eng_cond_from_tensors(const eng_config *cfg, const float *cond, int frames, const float *clip,
                          eng_cond **out, char *err, size_t errlen) {
    *out = NULL;
    if (!cond || !clip || frames < 1)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "conditioning needs cond_concat (>= 1 frame) and visual_context");
    eng_cond *c = cond_alloc(cfg, frames);
    if (!c) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for conditioning");
    const size_t HW = (size_t)cfg->lat_h * cfg->lat_w;
    memcpy(c->cond, cond, 20 * (size_t)frames * HW * sizeof(float));
    memcpy(c->clip, clip, (size_t)cfg->clip_tokens * cfg->clip_dim * sizeof(float));
    c->ready = frames, c->bounded = 1;
    *out = c;
    return 0;
}

/* Encodes image latents until `upto` (inclusive, at most 29) is available. */
static int encode_until(eng_cond *c, int upto, char *err, size_t errlen) {
    while (c->ready <= upto && c->ready < COND_DISTINCT) {
        const size_t HW = (size_t)c->lat_h * c->lat_w;
        float *dst = malloc(16 * HW * sizeof(float));
        int nlat = 0;
        int rc = dst ? eng_vae_encode(c->enc, c->zeros, 4, dst, &nlat, err, errlen)
                     : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
        if (!rc && nlat != 1)
            rc = eng_errorf(err, errlen, ENG_ESTATE, "VAE encoder returned %d latents for 4 frames",
                            nlat);
        for (int ch = 0; ch < 16 && !rc; ch++)
            memcpy(c->cond + ((size_t)(4 + ch) * c->cap + (size_t)c->ready) * HW,
                   dst + (size_t)ch * HW, HW * sizeof(float));
        free(dst);
        if (rc) return rc;
        c->ready++;
    }
    if (c->ready >= COND_DISTINCT && c->enc) { /* latent 29 reached: the rest repeats it */
        eng_vae_enc_destroy(c->enc);
        c->enc = NULL;
        free(c->zeros);
        c->zeros = NULL;
    }
    return 0;
}

/* CLIP on the model's GPU when it has one there and the session is not CPU-only. */
static int encode_clip(const eng_model *m, int cpu_only, const float *image, int vh, int vw,
                       float *tokens, char *err, size_t errlen) {
    eng_gpu_model *g = cpu_only ? NULL : eng_model_gpu(m);
    if (g && eng_gpu_has_clip(g)) return eng_gpu_clip_encode(g, image, vh, vw, tokens, err, errlen);
    return clip_encode(eng_model_clip(m), image, vh, vw, tokens, err, errlen);
}

int eng_cond_from_image(const eng_model *m, int cpu_only, const float *image, eng_cond **out,
                        char *err, size_t errlen) {
    *out = NULL;
    const eng_config *cfg = eng_model_config(m);
    const int vh = 8 * cfg->lat_h, vw = 8 * cfg->lat_w;
    const clip_config *cc = clip_weights_config(eng_model_clip(m));
    if (cc->width != cfg->clip_dim || clip_tokens(cc) != cfg->clip_tokens)
        return eng_errorf(err, errlen, ENG_ECONFIG,
                          "CLIP gives %d tokens of width %d; the DiT expects %d x %d",
                          clip_tokens(cc), cc->width, cfg->clip_tokens, cfg->clip_dim);
    eng_cond *c = cond_alloc(cfg, COND_DISTINCT);
    if (!c) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for conditioning");
    c->zeros = calloc(3 * 4 * (size_t)vh * vw, sizeof(float));
    int rc = c->zeros ? 0 : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory for conditioning");
    if (!rc) rc = encode_clip(m, cpu_only, image, vh, vw, c->clip, err, errlen);
    if (!rc)
        rc = eng_vae_enc_create(eng_model_vae_backend(m), cpu_only, vh, vw, &c->enc, err, errlen);
    int nlat = 0;
    const size_t HW = (size_t)cfg->lat_h * cfg->lat_w;
    float *first = rc ? NULL : malloc(16 * HW * sizeof(float));
    if (!rc && !first) rc = eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    if (!rc) rc = eng_vae_encode(c->enc, image, 1, first, &nlat, err, errlen);
    for (int ch = 0; ch < 16 && !rc; ch++)
        memcpy(c->cond + (size_t)(4 + ch) * c->cap * HW, first + (size_t)ch * HW,
               HW * sizeof(float));
    for (int ch = 0; ch < 4 && !rc; ch++) /* mask: 1 for latent 0 only */
        for (int f = 0; f < c->cap; f++)
            for (size_t i = 0; i < HW; i++)
                c->cond[((size_t)ch * c->cap + f) * HW + i] = f == 0 ? 1.0f : 0.0f;
    free(first);
    if (rc) {
        eng_cond_destroy(c);
        return rc;
    }
    c->ready = 1;
    *out = c;
    return 0;
}

const float *eng_cond_clip(const eng_cond *c) {
    return c->clip;
}

int eng_cond_slice(eng_cond *c, int64_t frame0, int T, float *dst, char *err, size_t errlen) {
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    int64_t last = frame0 + T - 1;
    if (!c->bounded) {
        int rc =
            encode_until(c, last < COND_DISTINCT - 1 ? (int)last : COND_DISTINCT - 1, err, errlen);
        if (rc) return rc;
    }
    for (int f = 0; f < T; f++) {
        int64_t g = frame0 + f;
        int64_t src = g < c->ready ? g : c->ready - 1;
        for (int ch = 0; ch < 20; ch++)
            memcpy(dst + ((size_t)ch * T + f) * HW,
                   c->cond + ((size_t)ch * c->cap + (size_t)src) * HW, HW * sizeof(float));
    }
    return 0;
}
