/* The Wan2.1 VAE's streaming decoder and encoder on the CPU (engine/vae.h), readable top to bottom:
 * each forward walks its layer list (engine/vae/vae_weights.c) and calls the kernels of
 * engine/vae/vae_layers.c on all frames of the call at once, layer by layer. That is exact for a
 * causal network (model-vae-clip.md 3.4): every layer is per-frame or causal in time, so it only
 * ever sees frames that are already available.
 *
 * Decoder state is 32 zero-initialised 2-frame slots plus the first-latent flag (3.4); encoder
 * state is 24 slots (the two downsample3d slots hold one frame) plus its first-chunk flag. Both
 * run their forward once "dry" at create time to size every scratch buffer and slot; a call with
 * more latents/frames than planned re-plans (the only allocation outside create). */
#include "engine/vae.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/vae/vae_internal.h"

#define VAE_PLAN_LATENTS 3 /* a streaming block: the decoder's create-time plan */
#define VAE_PLAN_FRAMES  4 /* one encoder chunk after the image */
#define VAE_MAX_SIDE     8192

/* BLAS takes int sizes and leading dimensions: one channel of the largest padded tensor of a call
 * (frames x (H+2) x (W+2) at full resolution) must fit. */
static int fits_blas(size_t frames, int H, int W) {
    return frames * ((size_t)H + 2) * ((size_t)W + 2) < (size_t)INT_MAX;
}

struct vae_decoder {
    const vae_weights *w;
    int lat_h, lat_w;
    int first_pending; /* the next latent is the session's latent 0 */
    int planned;       /* latents per call the scratch is sized for */
    vae_ws ws;
    vae_cache cache;
};

struct vae_encoder {
    const vae_weights *w;
    int height, width;
    int first_pending; /* the next call is the start image */
    int planned;       /* frames per call the scratch is sized for */
    vae_ws ws;
    vae_cache cache;
};

/* ---- shared walk over a layer list ----------------------------------------------------------- */

/* One forward in progress: the current activation's shape and which compact buffer holds it. */
typedef struct vae_run {
    vae_ws *ws;
    vae_cache *k;
    int first; /* the session's / encode's first call */
    int C, T, H, W;
    int cur;
    char *err;
    size_t errlen;
} vae_run;

static float *act(const vae_run *r, int i) {
    return r->ws->buf[VAE_WS_ACT0 + (i % 3)];
}

/* The three activation buffers must hold C channels of the current frame shape (recorded when
 * dry, checked when live). */
static int run_need_c(vae_run *r, int C) {
    const size_t n = (size_t)C * (size_t)r->T * (size_t)r->H * (size_t)r->W;
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = vae_ws_require(r->ws, VAE_WS_ACT0 + i, n, r->err, r->errlen);
    return rc;
}

static int run_need(vae_run *r) {
    return run_need_c(r, r->C);
}

static vae_slot *run_slot(vae_run *r, int c, int frames) {
    return vae_cache_take(r->k, c, frames, r->H, r->W, r->err, r->errlen);
}

static int run_rb(vae_run *r, const vae_item *it) {
    vae_slot *sa = run_slot(r, it->cin, 2), *sb = sa ? run_slot(r, it->cout, 2) : NULL;
    if (!sb) return ENG_ESTATE;
    r->C = it->cout;
    int rc = run_need(r);
    if (rc) return rc;
    return vae_resblock(r->ws, it, act(r, r->cur), r->T, r->H, r->W, sa, sb, act(r, r->cur + 1),
                        act(r, r->cur + 2), act(r, r->cur), r->err, r->errlen);
}

static int run_up(vae_run *r, const vae_item *it) {
    int rc = 0;
    if (it->kind == VAE_ITEM_UP3D) {
        vae_slot *s = run_slot(r, it->cin, 2);
        if (!s) return ENG_ESTATE;
        const int T = r->T;
        r->T = r->first ? 2 * T - 1 : 2 * T; /* latent 0's frame is not doubled (2.4) */
        rc = run_need(r);
        if (!rc)
            rc = vae_time_up(r->ws, it, act(r, r->cur), T, r->H, r->W, r->first, s,
                             act(r, r->cur + 1), r->err, r->errlen);
        r->cur = (r->cur + 1) % 3;
    }
    const int H = r->H, W = r->W;
    r->C = it->cout, r->H = 2 * H, r->W = 2 * W;
    if (!rc) rc = run_need(r);
    if (!rc)
        rc = vae_up_conv(r->ws, it, act(r, r->cur), r->T, H, W, act(r, r->cur), r->err, r->errlen);
    return rc;
}

static int run_down(vae_run *r, const vae_item *it) {
    const int H = r->H, W = r->W;
    r->H = (H - 2) / 2 + 1, r->W = (W - 2) / 2 + 1;
    int rc = run_need(r);
    if (!rc)
        rc = vae_down_conv(r->ws, it, act(r, r->cur), r->T, H, W, act(r, r->cur + 1), r->err,
                           r->errlen);
    r->cur = (r->cur + 1) % 3;
    if (rc || it->kind != VAE_ITEM_DOWN3D) return rc;
    vae_slot *s = run_slot(r, it->cin, 1);
    if (!s) return ENG_ESTATE;
    const int T = r->T;
    rc = vae_time_down(r->ws, it, act(r, r->cur), T, r->H, r->W, r->first, s, act(r, r->cur),
                       r->err, r->errlen);
    if (!r->first) r->T = T / 2;
    return rc;
}

static int run_items(vae_run *r, const vae_net *n) {
    int rc = 0;
    for (int i = 0; i < n->nitems && !rc; i++) {
        const vae_item *it = &n->items[i];
        switch (it->kind) {
        case VAE_ITEM_RB:
            rc = run_rb(r, it);
            break;
        case VAE_ITEM_ATTN:
            rc = vae_attention(r->ws, it, act(r, r->cur), r->T, r->H, r->W, r->err, r->errlen);
            break;
        case VAE_ITEM_UP2D:
        case VAE_ITEM_UP3D:
            rc = run_up(r, it);
            break;
        case VAE_ITEM_DOWN2D:
        case VAE_ITEM_DOWN3D:
            rc = run_down(r, it);
            break;
        }
    }
    return rc;
}

/* conv_in (plain input, cached) from `x`, into the next buffer. */
static int run_conv_in(vae_run *r, const vae_net *n, const float *x) {
    vae_slot *s = run_slot(r, n->in_ch, 2);
    if (!s) return ENG_ESTATE;
    const int cin = r->C, dst = (r->cur + 1) % 3;
    r->C = n->in_dim;
    int rc = run_need(r);
    if (!rc)
        rc = vae_conv3d(r->ws, x, VAE_PREP_PLAIN, NULL, cin, r->T, r->H, r->W, s, n->in_w, n->in_b,
                        n->in_dim, NULL, act(r, dst), r->err, r->errlen);
    r->cur = dst;
    return rc;
}

/* head: rms, silu, cached conv 3x3x3 -> out_ch, into y. */
static int run_head(vae_run *r, const vae_net *n, float *y) {
    vae_slot *s = run_slot(r, n->head_ch, 2);
    if (!s) return ENG_ESTATE;
    return vae_conv3d(r->ws, act(r, r->cur), VAE_PREP_NORM_SILU, n->head_g, r->C, r->T, r->H, r->W,
                      s, n->head_w, n->head_b, n->out_ch, NULL, y, r->err, r->errlen);
}

static int count_items(const vae_net *n, vae_item_kind kind) {
    int k = 0;
    for (int i = 0; i < n->nitems; i++) k += n->items[i].kind == kind;
    return k;
}

static int check_slots_used(const vae_cache *k, char *err, size_t errlen) {
    if (k->cursor == k->n) return 0;
    return eng_errorf(err, errlen, ENG_ESTATE, "VAE forward used %d cache slots, planned %d",
                      k->cursor, k->n);
}

/* ---- decoder --------------------------------------------------------------------------------- */

/* 3.4: de-normalise, conv2, conv_in, middle, stages, head, clamp. Dry: sizes only. */
static int dec_forward(vae_decoder *d, const float *lat, int nlat, float *frames, int first,
                       int dry, char *err, size_t errlen) {
    const vae_weights *w = d->w;
    const vae_net *n = &w->dec;
    const int z = w->cfg.z_dim;
    d->ws.dry = d->cache.dry = dry;
    d->cache.cursor = 0;
    vae_run r = {&d->ws, &d->cache, first, z, nlat, d->lat_h, d->lat_w, 0, err, errlen};
    int rc = run_need(&r);
    if (rc) return rc;
    const size_t per_c = (size_t)nlat * (size_t)d->lat_h * (size_t)d->lat_w;
    if (!dry) {
        float *x = act(&r, 1);
        for (int c = 0; c < z; c++)
            for (size_t i = 0; i < per_c; i++)
                x[(size_t)c * per_c + i] =
                    lat[(size_t)c * per_c + i] * w->cfg.latent_std[c] + w->cfg.latent_mean[c];
        vae_conv1x1(x, z, per_c, w->post_w, w->post_b, z, act(&r, 0));
    }
    rc = run_conv_in(&r, n, act(&r, 0));
    if (!rc) rc = run_items(&r, n);
    if (!rc) rc = run_head(&r, n, frames);
    if (rc || dry) return rc;
    const size_t total = (size_t)n->out_ch * (size_t)r.T * (size_t)r.H * (size_t)r.W;
    for (size_t i = 0; i < total; i++) /* clamp only here, at the very end (pitfall 5) */
        frames[i] = frames[i] < -1.0f ? -1.0f : frames[i] > 1.0f ? 1.0f : frames[i];
    return check_slots_used(&d->cache, err, errlen);
}

/* Sizes scratch (and, the first time, the slots) for calls of up to nlat latents. */
static int dec_plan(vae_decoder *d, int nlat, char *err, size_t errlen) {
    int rc = dec_forward(d, NULL, nlat, NULL, 0, 1, err, errlen);
    if (!rc) rc = vae_ws_commit(&d->ws, err, errlen);
    if (!rc) rc = vae_cache_commit(&d->cache, err, errlen);
    if (!rc) d->planned = nlat;
    return rc;
}

int vae_decoder_create(const vae_weights *w, int lat_h, int lat_w, vae_decoder **out, char *err,
                       size_t errlen) {
    if (!w || !out) return eng_errorf(err, errlen, ENG_EINVAL, "vae_decoder_create: NULL argument");
    *out = NULL;
    if (!(w->parts & VAE_PART_DECODER))
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE weights were loaded without the decoder");
    if (lat_h < 1 || lat_w < 1 || lat_h > VAE_MAX_SIDE / 8 || lat_w > VAE_MAX_SIDE / 8)
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE decoder latent size %dx%d out of range",
                          lat_h, lat_w);
    vae_decoder *d = calloc(1, sizeof *d);
    if (!d) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    d->w = w, d->lat_h = lat_h, d->lat_w = lat_w, d->first_pending = 1;
    int rc = dec_plan(d, VAE_PLAN_LATENTS, err, errlen);
    if (rc) {
        vae_decoder_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

void vae_decoder_destroy(vae_decoder *d) {
    if (!d) return;
    vae_ws_free(&d->ws);
    vae_cache_free(&d->cache);
    free(d);
}

void vae_decoder_reset(vae_decoder *d) {
    vae_cache_zero(&d->cache);
    d->first_pending = 1;
}

int vae_decoder_frames_out(const vae_decoder *d, int nlat) {
    const int r = 1 << count_items(&d->w->dec, VAE_ITEM_UP3D); /* 4 for Wan2.1 */
    if (nlat < 1) return 0;
    return d->first_pending ? 1 + r * (nlat - 1) : r * nlat;
}

int vae_decode(vae_decoder *d, const float *latents, int nlat, float *frames, int *nframes,
               char *err, size_t errlen) {
    if (!d || !latents || !frames || nlat < 1)
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_decode: bad arguments (nlat %d)", nlat);
    if (!fits_blas((size_t)vae_decoder_frames_out(d, nlat) + 2, 8 * d->lat_h, 8 * d->lat_w))
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_decode: %d latents in one call is too many",
                          nlat);
    int rc = nlat > d->planned ? dec_plan(d, nlat, err, errlen) : 0;
    if (rc) return rc;
    const int nf = vae_decoder_frames_out(d, nlat);
    rc = dec_forward(d, latents, nlat, frames, d->first_pending, 0, err, errlen);
    if (rc) return rc;
    d->first_pending = 0;
    if (nframes) *nframes = nf;
    return 0;
}

/* ---- encoder --------------------------------------------------------------------------------- */

/* 2.6: conv_in, stages, middle, head, conv1, keep mu, normalise. Dry: sizes only. */
static int enc_forward(vae_encoder *e, const float *frames, int n, float *lat, int first, int dry,
                       char *err, size_t errlen) {
    const vae_weights *w = e->w;
    const vae_net *net = &w->enc;
    const int z = w->cfg.z_dim;
    e->ws.dry = e->cache.dry = dry;
    e->cache.cursor = 0;
    vae_run r = {&e->ws, &e->cache, first, net->in_ch, n, e->height, e->width, 2, err, errlen};
    int rc = run_conv_in(&r, net, frames); /* reads the caller's frames directly */
    if (!rc) rc = run_items(&r, net);
    const int head = (r.cur + 1) % 3;
    if (!rc) rc = run_need_c(&r, net->out_ch);
    if (!rc) rc = run_head(&r, net, act(&r, head));
    if (rc || dry) return rc;
    r.C = net->out_ch;
    const size_t per_c = (size_t)r.T * (size_t)r.H * (size_t)r.W;
    float *mom = act(&r, head + 1);
    vae_conv1x1(act(&r, head), net->out_ch, per_c, w->quant_w, w->quant_b, net->out_ch, mom);
    /* channels [0, z) are mu, the log-variance half is dropped: the encode is deterministic */
    for (int c = 0; c < z; c++)
        for (size_t i = 0; i < per_c; i++)
            lat[(size_t)c * per_c + i] =
                (mom[(size_t)c * per_c + i] - w->cfg.latent_mean[c]) / w->cfg.latent_std[c];
    return check_slots_used(&e->cache, err, errlen);
}

static int enc_plan(vae_encoder *e, int frames, char *err, size_t errlen) {
    int rc = enc_forward(e, NULL, frames, NULL, 0, 1, err, errlen);
    if (!rc) rc = vae_ws_commit(&e->ws, err, errlen);
    if (!rc) rc = vae_cache_commit(&e->cache, err, errlen);
    if (!rc) e->planned = frames;
    return rc;
}

int vae_encoder_create(const vae_weights *w, int height, int width, vae_encoder **out, char *err,
                       size_t errlen) {
    if (!w || !out) return eng_errorf(err, errlen, ENG_EINVAL, "vae_encoder_create: NULL argument");
    *out = NULL;
    if (!(w->parts & VAE_PART_ENCODER))
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE weights were loaded without the encoder");
    if (height < 8 || width < 8 || height % 8 || width % 8 || height > VAE_MAX_SIDE ||
        width > VAE_MAX_SIDE)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "VAE encoder frame size %dx%d: need positive multiples of 8", height,
                          width);
    vae_encoder *e = calloc(1, sizeof *e);
    if (!e) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    e->w = w, e->height = height, e->width = width, e->first_pending = 1;
    int rc = enc_plan(e, VAE_PLAN_FRAMES, err, errlen);
    if (rc) {
        vae_encoder_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
}

void vae_encoder_destroy(vae_encoder *e) {
    if (!e) return;
    vae_ws_free(&e->ws);
    vae_cache_free(&e->cache);
    free(e);
}

int vae_encode(vae_encoder *e, const float *frames, int n, float *latents, int *nlat, char *err,
               size_t errlen) {
    if (!e || !frames || !latents)
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_encode: NULL argument");
    const int r = 1 << count_items(&e->w->enc, VAE_ITEM_DOWN3D); /* 4 for Wan2.1 */
    if (e->first_pending && n != 1)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "vae_encode: the first call takes exactly 1 frame (the start image), "
                          "got %d",
                          n);
    if (!e->first_pending && (n < r || n % r))
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "vae_encode: later calls take a positive multiple of %d frames, got %d",
                          r, n);
    if (!fits_blas((size_t)n + 2, e->height, e->width))
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_encode: %d frames in one call is too many",
                          n);
    int rc = n > e->planned ? enc_plan(e, n, err, errlen) : 0;
    if (rc) return rc;
    rc = enc_forward(e, frames, n, latents, e->first_pending, 0, err, errlen);
    if (rc) return rc;
    if (nlat) *nlat = e->first_pending ? 1 : n / r;
    e->first_pending = 0;
    return 0;
}

/* ---- output ---------------------------------------------------------------------------------- */

void vae_frames_to_rgb8(const float *frames, int n, int height, int width, uint8_t *rgb) {
    const size_t hw = (size_t)height * (size_t)width, per_c = (size_t)n * hw;
    for (size_t f = 0; f < (size_t)n; f++)
        for (size_t i = 0; i < hw; i++)
            for (size_t c = 0; c < 3; c++) {
                /* float math as the reference's fp32 tensors; the cast truncates (2.8); NaN -> 0 */
                float v = (frames[c * per_c + f * hw + i] + 1.0f) * 127.5f;
                v = v > 0.0f ? (v < 255.0f ? v : 255.0f) : 0.0f;
                rgb[(f * hw + i) * 3 + c] = (uint8_t)v;
            }
}
