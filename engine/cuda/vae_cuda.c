/* The Wan2.1 VAE's streaming decoder and encoder on the GPU (engine/cuda/vae_cuda.h), readable top
 * to bottom like its CPU twin engine/vae.c: each forward walks the layer list that
 * engine/vae/vae_weights.c builds, on all frames of the call at once, layer by layer (exact for
 * this causal network, model-vae-clip.md 3.4).
 *
 * Every forward runs once "dry" at decoder/encoder create: the layers then only declare the
 * scratch they need and the cache slots they use, so buffer sizes and slot shapes come from the
 * code that uses them, and a live forward allocates nothing. Activations rotate through three
 * channels-last bf16 buffers (ACT0..2) as in the CPU code; NRM / NRM2 hold the normalised input
 * of a residual block's first / second conv (which is also what its cache slot keeps: 2.1),
 * written by the norm kernel or, on the fused path, by the epilogue of the conv before; the
 * attention's q/k/v, scores and probabilities and the head's partial products have their own
 * buffers. The paths (wmcuda_vae_set_paths) change how a layer is computed, never its result
 * beyond bf16 rounding, and may differ between calls. */
#include "engine/cuda/vae_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_check.h" /* before the other CUDA headers: WMCUDA_EINVAL */

#include "engine/cuda/bf16.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/vae_kernels.h"
#include "engine/errors.h"
#include "engine/vae/vae_internal.h"

#define VAE_PROF_EV 64 /* profiler marks per forward */

enum { VS_ACT0, VS_ACT1, VS_ACT2, VS_NRM, VS_NRM2, VS_QKV, VS_S, VS_P, VS_F32, VS_HEADP, VS_COUNT };

/* One conv's device weights: w bf16 [cout][kt*kh*kw][cin], b fp32 [cout]. */
typedef struct dconv {
    wmcuda_bf16 *w;
    float *b;
    int cin, cout;
} dconv;

typedef struct ditem {
    vae_item_kind kind;
    int cin, cout;
    float *g1, *g2, *g; /* norm gains (fp32) */
    dconv c1, c2, sc, proj, rs, tc;
    dconv sp[4]; /* sub-pixel form of rs (upsamplers): 2x2 kernels, phase (py, px) = sp[2py + px] */
    wmcuda_bf16 *qkv_w, *qkv_b; /* attention qkv as a wmcuda_linear: [3C][C], [3C] */
} ditem;

typedef struct dnet {
    int in_ch, in_dim; /* in_ch as stored on the device: the encoder's 3 is padded to 8 */
    dconv in;
    ditem items[VAE_MAX_ITEMS];
    int nitems;
    int head_ch, out_ch;
    float *head_g;
    dconv head;
    dconv head_p; /* head as a 1x1 to per-tap partial products (out_ch * 27 <= HEAD_PC rows) */
} dnet;

#define HEAD_PC 84 /* partial-product channels: 27 taps x 3 colours, padded to a multiple of 4 */

struct wmcuda_vae {
    vae_config cfg;
    int parts;
    cudaStream_t stream;
    int own_stream;
    wmcuda_gemm *gemm;
    void *arena;
    size_t arena_bytes;
    dnet enc, dec;
    float *post_w, *post_b, *quant_w, *quant_b, *mean, *std;
    void *scratch[VS_COUNT];
    size_t cap[VS_COUNT]; /* bytes */
    int paths;            /* WMCUDA_VAE_PATH_* (wmcuda_vae_set_paths) */
    int prof, nev;        /* optional per-layer cudaEvent marks of the last forward */
    cudaEvent_t ev[VAE_PROF_EV];
    char evname[VAE_PROF_EV][24];
};

typedef struct gslot {
    wmcuda_bf16 *d; /* [frames][h][w][c] */
    int c, frames, h, w;
} gslot;

typedef struct gslots {
    int n, cursor;
    gslot s[VAE_MAX_SLOTS];
    void *arena;
    size_t bytes;
} gslots;

struct wmcuda_vae_decoder {
    wmcuda_vae *v;
    int lat_h, lat_w, first_pending;
    gslots k;
    float *lat, *frames;
    uint8_t *rgb;
    size_t io_bytes;
};

struct wmcuda_vae_encoder {
    wmcuda_vae *v;
    int height, width, first_pending;
    gslots k;
    float *in, *out;
    size_t io_bytes;
};

/* ---- weight upload: one arena, filled by two passes (sizes, then data) -------------------------
 */

typedef struct upl {
    int dry;
    size_t off;
    unsigned char *host, *dev;
} upl;

static size_t align256(size_t n) {
    return (n + 255) & ~(size_t)255;
}

static void *upl_take(upl *u, size_t bytes, void **host) {
    const size_t off = u->off;
    u->off = align256(off + bytes);
    if (u->dry) {
        *host = NULL;
        return NULL;
    }
    *host = u->host + off;
    return u->dev + off;
}

static float *up_f32(upl *u, const float *src, size_t n) {
    void *h;
    float *d = upl_take(u, n * sizeof(float), &h);
    if (h) memcpy(h, src, n * sizeof(float));
    return d;
}

static wmcuda_bf16 *up_bf16(upl *u, const float *src, size_t n) {
    void *h;
    wmcuda_bf16 *d = upl_take(u, n * sizeof(wmcuda_bf16), &h);
    if (h)
        for (size_t i = 0; i < n; i++) ((wmcuda_bf16 *)h)[i] = wm_bf16_from_float(src[i]);
    return d;
}

/* w [cout][taps][cin] fp32 -> bf16 [cout][taps][cpad], channels cin .. cpad-1 zero. */
static void up_conv(upl *u, dconv *c, const float *w, const float *b, int cout, int cin, int cpad,
                    int taps) {
    void *h;
    const size_t n = (size_t)cout * (size_t)taps * (size_t)cpad;
    c->w = upl_take(u, n * sizeof(wmcuda_bf16), &h);
    if (h) {
        wmcuda_bf16 *o = h;
        for (size_t r = 0; r < (size_t)cout * (size_t)taps; r++)
            for (int ci = 0; ci < cpad; ci++)
                o[r * (size_t)cpad + (size_t)ci] =
                    ci < cin ? wm_bf16_from_float(w[r * (size_t)cin + (size_t)ci]) : 0;
    }
    c->b = b ? up_f32(u, b, (size_t)cout) : NULL;
    c->cin = cpad, c->cout = cout;
}

/* Nearest x2 then a 3x3 conv equals, per output phase (py, px), a 2x2 conv on the low-res input:
 * hi-res tap dy reads low-res row i + floor((py + dy - 1) / 2), so for py = 0 rows i-1, i take taps
 * {0}, {1, 2} and for py = 1 rows i, i+1 take {0, 1}, {2} (same for x). 4/9 of the FLOPs. */
static void up_subpixel(upl *u, dconv sp[4], const float *w, const float *b, int cout, int cin) {
    static const int lo[2][2] = {{0, 1}, {0, 2}}, hi[2][2] = {{0, 2}, {1, 2}}; /* [p][e]: taps */
    const size_t per = (size_t)cout * 4 * (size_t)cin;
    float *tmp = u->dry ? NULL : malloc(per * sizeof(float));
    for (int p = 0; p < 4; p++) {
        const int py = p / 2, px = p % 2;
        if (tmp) {
            memset(tmp, 0, per * sizeof(float));
            for (int o = 0; o < cout; o++)
                for (int ey = 0; ey < 2; ey++)
                    for (int ex = 0; ex < 2; ex++)
                        for (int dy = lo[py][ey]; dy <= hi[py][ey]; dy++)
                            for (int dx = lo[px][ex]; dx <= hi[px][ex]; dx++) {
                                float *dst = tmp + ((size_t)o * 4 + (size_t)(ey * 2 + ex)) * cin;
                                const float *src =
                                    w + ((size_t)o * 9 + (size_t)(dy * 3 + dx)) * cin;
                                for (int c = 0; c < cin; c++) dst[c] += src[c];
                            }
        }
        up_conv(u, &sp[p], tmp ? tmp : w, b, cout, cin, cin, 4);
    }
    free(tmp);
}

static void up_item(upl *u, const vae_item *it, ditem *d) {
    const int C = it->cin;
    d->kind = it->kind, d->cin = it->cin, d->cout = it->cout;
    switch (it->kind) {
    case VAE_ITEM_RB:
        d->g1 = up_f32(u, it->g1, (size_t)it->cin);
        up_conv(u, &d->c1, it->w1, it->b1, it->cout, it->cin, it->cin, 27);
        d->g2 = up_f32(u, it->g2, (size_t)it->cout);
        up_conv(u, &d->c2, it->w2, it->b2, it->cout, it->cout, it->cout, 27);
        if (it->cin != it->cout) up_conv(u, &d->sc, it->sc_w, it->sc_b, it->cout, C, C, 1);
        break;
    case VAE_ITEM_ATTN:
        d->g = up_f32(u, it->g, (size_t)C);
        d->qkv_w = up_bf16(u, it->qkv_w, 3 * (size_t)C * (size_t)C);
        d->qkv_b = up_bf16(u, it->qkv_b, 3 * (size_t)C);
        up_conv(u, &d->proj, it->proj_w, it->proj_b, C, C, C, 1);
        break;
    case VAE_ITEM_UP3D:
        up_conv(u, &d->tc, it->tc_w, it->tc_b, 2 * C, C, C, 3);
        /* fall through */
    case VAE_ITEM_UP2D:
        up_conv(u, &d->rs, it->rs_w, it->rs_b, it->cout, C, C, 9);
        up_subpixel(u, d->sp, it->rs_w, it->rs_b, it->cout, C);
        break;
    case VAE_ITEM_DOWN3D:
        up_conv(u, &d->tc, it->tc_w, it->tc_b, C, C, C, 3);
        up_conv(u, &d->rs, it->rs_w, it->rs_b, C, C, C, 9);
        break;
    case VAE_ITEM_DOWN2D:
        up_conv(u, &d->rs, it->rs_w, it->rs_b, C, C, C, 9);
        break;
    }
}

static void up_net(upl *u, const vae_net *n, dnet *d, int in_pad) {
    d->in_ch = in_pad, d->in_dim = n->in_dim;
    up_conv(u, &d->in, n->in_w, n->in_b, n->in_dim, n->in_ch, in_pad, 27);
    d->nitems = n->nitems;
    for (int i = 0; i < n->nitems; i++) up_item(u, &n->items[i], &d->items[i]);
    d->head_ch = n->head_ch, d->out_ch = n->out_ch;
    d->head_g = up_f32(u, n->head_g, (size_t)n->head_ch);
    up_conv(u, &d->head, n->head_w, n->head_b, n->out_ch, n->head_ch, n->head_ch, 27);
    if (n->out_ch * 27 <= HEAD_PC) { /* row tap * out_ch + c of W_p = head weight [c][tap][:] */
        const size_t per = (size_t)HEAD_PC * (size_t)n->head_ch;
        float *wp = u->dry ? NULL : calloc(per, sizeof(float));
        if (wp)
            for (int c = 0; c < n->out_ch; c++)
                for (int tap = 0; tap < 27; tap++)
                    memcpy(wp + (size_t)(tap * n->out_ch + c) * n->head_ch,
                           n->head_w + ((size_t)c * 27 + tap) * n->head_ch,
                           (size_t)n->head_ch * sizeof(float));
        up_conv(u, &d->head_p, wp ? wp : n->head_w, NULL, HEAD_PC, n->head_ch, n->head_ch, 1);
        free(wp);
    }
}

static void up_all(upl *u, const vae_weights *w, wmcuda_vae *v) {
    const int z = w->cfg.z_dim;
    if (w->parts & VAE_PART_DECODER) {
        up_net(u, &w->dec, &v->dec, (z + 7) / 8 * 8);
        v->post_w = up_f32(u, w->post_w, (size_t)z * (size_t)z);
        v->post_b = up_f32(u, w->post_b, (size_t)z);
    }
    if (w->parts & VAE_PART_ENCODER) {
        up_net(u, &w->enc, &v->enc, 8);
        v->quant_w = up_f32(u, w->quant_w, 4 * (size_t)z * (size_t)z);
        v->quant_b = up_f32(u, w->quant_b, 2 * (size_t)z);
    }
    v->mean = up_f32(u, w->cfg.latent_mean, (size_t)z);
    v->std = up_f32(u, w->cfg.latent_std, (size_t)z);
}

static int cuda_fail(char *err, size_t errlen, cudaError_t e, const char *what) {
    return eng_errorf(err, errlen, -(int)e, "VAE (CUDA): %s failed: %s", what,
                      cudaGetErrorString(e));
}

int wmcuda_vae_create(const vae_weights *w, void *stream, wmcuda_vae **out, char *err,
                      size_t errlen) {
    if (!w || !out) return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae_create: NULL argument");
    *out = NULL;
    if (w->cfg.z_dim < 1 || w->cfg.z_dim > 16 || w->cfg.z_dim % 8)
        return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae: z_dim %d unsupported",
                          w->cfg.z_dim);
    wmcuda_vae *v = calloc(1, sizeof *v);
    if (!v) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    v->cfg = w->cfg, v->parts = w->parts;
    v->paths = WMCUDA_VAE_PATHS_DEFAULT;
    int rc = 0;
    cudaError_t e = cudaSuccess;
    unsigned char *host = NULL;
    if (stream) {
        v->stream = (cudaStream_t)stream;
    } else {
        e = cudaStreamCreateWithFlags(&v->stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            rc = cuda_fail(err, errlen, e, "cudaStreamCreate");
            goto fail;
        }
        v->own_stream = 1;
    }
    rc = wmcuda_gemm_create(&v->gemm, 0, err, errlen);
    if (rc) goto fail;
    upl u = {1, 0, NULL, NULL};
    up_all(&u, w, v);
    v->arena_bytes = u.off;
    host = malloc(u.off);
    if (!host) {
        rc = eng_errorf(err, errlen, ENG_ENOMEM, "out of host memory for the VAE upload");
        goto fail;
    }
    e = cudaMalloc(&v->arena, u.off);
    if (e != cudaSuccess) {
        rc = cuda_fail(err, errlen, e, "cudaMalloc of the VAE weights");
        goto fail;
    }
    u = (upl){0, 0, host, v->arena};
    up_all(&u, w, v);
    e = cudaMemcpy(v->arena, host, u.off, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        rc = cuda_fail(err, errlen, e, "cudaMemcpy of the VAE weights");
        goto fail;
    }
    free(host);
    *out = v;
    return 0;
fail:
    free(host);
    wmcuda_vae_destroy(v);
    return rc;
}

void wmcuda_vae_destroy(wmcuda_vae *v) {
    if (!v) return;
    if (v->stream) cudaStreamSynchronize(v->stream);
    wmcuda_vae_set_profile(v, 0);
    for (int i = 0; i < VS_COUNT; i++) cudaFree(v->scratch[i]);
    cudaFree(v->arena);
    wmcuda_gemm_destroy(v->gemm);
    if (v->own_stream) cudaStreamDestroy(v->stream);
    free(v);
}

size_t wmcuda_vae_device_bytes(const wmcuda_vae *v) {
    if (!v) return 0;
    size_t n = v->arena_bytes + WMCUDA_GEMM_WORKSPACE;
    for (int i = 0; i < VS_COUNT; i++) n += v->cap[i];
    return n;
}

void *wmcuda_vae_stream(const wmcuda_vae *v) {
    return v ? (void *)v->stream : NULL;
}

void wmcuda_vae_set_paths(wmcuda_vae *v, int paths) {
    v->paths = paths;
}

int wmcuda_vae_set_profile(wmcuda_vae *v, int on) {
    if (!v) return ENG_EINVAL;
    if (on && !v->prof) {
        for (int i = 0; i < VAE_PROF_EV; i++) {
            cudaError_t e = cudaEventCreate(&v->ev[i]);
            if (e != cudaSuccess) {
                for (int j = 0; j < i; j++) cudaEventDestroy(v->ev[j]);
                return -(int)e;
            }
        }
    } else if (!on && v->prof) {
        for (int i = 0; i < VAE_PROF_EV; i++) cudaEventDestroy(v->ev[i]);
    }
    v->prof = on != 0, v->nev = 0;
    return 0;
}

int wmcuda_vae_profile_report(wmcuda_vae *v, char *out, size_t len) {
    if (!v || !out || !len) return ENG_EINVAL;
    out[0] = 0;
    if (!v->prof || v->nev < 2) return 0;
    cudaError_t e = cudaEventSynchronize(v->ev[v->nev - 1]);
    if (e != cudaSuccess) return -(int)e;
    size_t used = 0;
    for (int i = 1; i < v->nev && used + 1 < len; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, v->ev[i - 1], v->ev[i]);
        int k = snprintf(out + used, len - used, "%s%s %.3f", i > 1 ? ", " : "", v->evname[i], ms);
        if (k < 0) break;
        used += (size_t)k;
    }
    return 0;
}

/* Grows every scratch buffer to its recorded need (waits for the stream first). */
static int scratch_commit(wmcuda_vae *v, const size_t *need, char *err, size_t errlen) {
    for (int i = 0; i < VS_COUNT; i++) {
        if (need[i] <= v->cap[i]) continue;
        cudaError_t e = cudaStreamSynchronize(v->stream);
        if (e == cudaSuccess) e = cudaFree(v->scratch[i]);
        v->scratch[i] = NULL, v->cap[i] = 0;
        if (e == cudaSuccess) e = cudaMalloc(&v->scratch[i], need[i]);
        if (e == cudaSuccess) e = cudaMemset(v->scratch[i], 0, need[i]);
        if (e != cudaSuccess) return cuda_fail(err, errlen, e, "cudaMalloc of the VAE scratch");
        v->cap[i] = need[i];
    }
    return 0;
}

static size_t slot_elems(const gslot *s) {
    return (size_t)s->c * (size_t)s->frames * (size_t)s->h * (size_t)s->w;
}

static int slots_commit(gslots *k, char *err, size_t errlen) {
    size_t total = 0;
    for (int i = 0; i < k->n; i++) total += align256(slot_elems(&k->s[i]) * sizeof(wmcuda_bf16));
    cudaError_t e = cudaMalloc(&k->arena, total ? total : 256);
    if (e == cudaSuccess) e = cudaMemset(k->arena, 0, total ? total : 256);
    if (e != cudaSuccess) return cuda_fail(err, errlen, e, "cudaMalloc of the VAE cache slots");
    k->bytes = total;
    unsigned char *p = k->arena;
    for (int i = 0; i < k->n; i++) {
        k->s[i].d = (wmcuda_bf16 *)p;
        p += align256(slot_elems(&k->s[i]) * sizeof(wmcuda_bf16));
    }
    return 0;
}

/* ---- one forward in progress
 * --------------------------------------------------------------------- */

typedef struct grun {
    wmcuda_vae *v;
    cudaStream_t st;
    int dry, first; /* first: the session's / encode's first call */
    gslots *k;
    size_t need[VS_COUNT];
    int C, T, H, W, cur;
    int nrm_ready; /* VS_NRM already holds the next RB's / the head's normalised input */
    char *err;
    size_t errlen;
} grun;

static int fail(grun *r, int rc, int line, const char *call) {
    wmcuda_failure_text(r->err, r->errlen, "vae_cuda.c", line, call, rc,
                        wmcuda_gemm_last_error(r->v->gemm));
    return rc;
}

/* A wmcuda_ call (0 or a negative code) and a CUDA runtime call; both need `r` in scope. */
#define TRY(call) WMCUDA_TRY_WITH(fail, r, call)
#define CK(call)  WMCUDA_CK_WITH(fail, r, call)

/* Profiler mark after a layer (live forwards with profiling on only). */
static void mark(grun *r, const char *name) {
    wmcuda_vae *v = r->v;
    if (r->dry || !v->prof || v->nev >= VAE_PROF_EV) return;
    snprintf(v->evname[v->nev], sizeof v->evname[0], "%s", name);
    cudaEventRecord(v->ev[v->nev++], r->st);
}

static size_t npos(const grun *r) {
    return (size_t)r->T * (size_t)r->H * (size_t)r->W;
}

/* Declares (dry) or checks (live) that scratch `which` holds `bytes`. */
static int need(grun *r, int which, size_t bytes) {
    if (r->dry) {
        if (bytes > r->need[which]) r->need[which] = bytes;
        return 0;
    }
    if (bytes <= r->v->cap[which]) return 0;
    return eng_errorf(r->err, r->errlen, ENG_ESTATE,
                      "VAE scratch %d holds %zu bytes but a layer needs %zu (a shape the "
                      "create-time plan did not see)",
                      which, r->v->cap[which], bytes);
}

/* The three activation buffers hold C channels of the current frame shape. */
static int need_act(grun *r, int C) {
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++)
        rc = need(r, VS_ACT0 + i, (size_t)C * npos(r) * sizeof(wmcuda_bf16));
    return rc;
}

static wmcuda_bf16 *act(const grun *r, int i) {
    return r->v->scratch[VS_ACT0 + i % 3];
}

static wmcuda_bf16 *nrm(const grun *r) {
    return r->v->scratch[VS_NRM];
}

/* Next slot in execution order. Dry: records its shape. Live: checks it. */
static gslot *take(grun *r, int c, int frames) {
    gslots *k = r->k;
    if (k->cursor >= VAE_MAX_SLOTS) {
        eng_errorf(r->err, r->errlen, ENG_ESTATE, "VAE needs more than %d cache slots",
                   VAE_MAX_SLOTS);
        return NULL;
    }
    gslot *s = &k->s[k->cursor];
    if (r->dry && k->cursor == k->n) {
        s->d = NULL, s->c = c, s->frames = frames, s->h = r->H, s->w = r->W;
        k->n++;
    }
    if (s->c != c || s->frames != frames || s->h != r->H || s->w != r->W) {
        eng_errorf(r->err, r->errlen, ENG_ESTATE,
                   "VAE cache slot %d holds [%d][%d][%d][%d], layer wants [%d][%d][%d][%d]",
                   k->cursor, s->frames, s->h, s->w, s->c, frames, r->H, r->W, c);
        return NULL;
    }
    k->cursor++;
    return s;
}

/* The slot keeps the last s->frames frames of "slot ++ x (T frames)". */
static int push(grun *r, gslot *s, const wmcuda_bf16 *x, int T) {
    if (r->dry || T <= 0) return 0;
    const size_t fe = (size_t)s->c * (size_t)s->h * (size_t)s->w, fb = fe * sizeof(wmcuda_bf16);
    const int F = s->frames;
    if (T >= F) {
        CK(cudaMemcpyAsync(s->d, x + (size_t)(T - F) * fe, (size_t)F * fb, cudaMemcpyDeviceToDevice,
                           r->st));
        return 0;
    }
    for (int f = 0; f < F - T; f++) /* shift the older frames down, one frame at a time */
        CK(cudaMemcpyAsync(s->d + (size_t)f * fe, s->d + (size_t)(f + T) * fe, fb,
                           cudaMemcpyDeviceToDevice, r->st));
    CK(cudaMemcpyAsync(s->d + (size_t)(F - T) * fe, x, (size_t)T * fb, cudaMemcpyDeviceToDevice,
                       r->st));
    return 0;
}

/* Every conv goes through here: the tile policy of WMCUDA_VAE_PATH_TILES (conv shapes of a
 * 12-frame block timed alone on an H200: 192->192 @176x320 6.44 -> 5.68 ms, 384->384 @88x160
 * 2.94 -> 2.59 ms with 64-channel K steps; 96->96 @352x640 8.09 -> 7.82 ms with 128x96). */
static int vconv(grun *r, wmcuda_vae_conv_desc *d) {
    if ((r->v->paths & WMCUDA_VAE_PATH_TILES) && !d->tile) {
        /* the same-size 3x3(x3) convs: the haloed tile (each input pixel read once per time tap
         * and channel chunk instead of 9 times); 96-channel N tiles, so a fused norm only at 96 */
        if (!(r->v->paths & WMCUDA_VAE_PATH_NO_HALO) && d->cout % 96 == 0 && d->cin >= 64 &&
            wmcuda_vae_conv_halo_ok(d) && (!d->ngamma || d->cout <= 96))
            d->tile = !(r->v->paths & WMCUDA_VAE_PATH_NO_WGMMA) && d->wout % 64 == 0 && !d->ngamma
                          ? WMCUDA_VAE_TILE_HALO_WG /* HALO where the device is not sm_90 */
                          : WMCUDA_VAE_TILE_HALO;
        else if (d->cout % 192 == 0 && d->cin >= 64)
            d->tile = WMCUDA_VAE_TILE_128x192_K64;
        else if (d->cout % 96 == 0 && d->cout % 192 != 0)
            d->tile = WMCUDA_VAE_TILE_128x96;
    }
    return wmcuda_vae_conv(d, r->st);
}

static void desc_same(const grun *r, wmcuda_vae_conv_desc *d, const wmcuda_bf16 *x, int cin,
                      const dconv *c, void *y) {
    wmcuda_vae_conv_desc_init(d);
    d->x = x, d->cin = cin, d->hin = r->H, d->win = r->W;
    d->t_out = r->T, d->hout = r->H, d->wout = r->W;
    d->w = c->w, d->bias = c->b, d->cout = c->cout, d->y = y;
}

/* Causal 3x3x3 conv of the current shape over "slot ++ x"; the slot then keeps x's tail. */
static int conv3(grun *r, const wmcuda_bf16 *x, int cin, gslot *s, const dconv *c,
                 const wmcuda_bf16 *res, void *y, int y_f32, int clamp) {
    wmcuda_vae_conv_desc d;
    desc_same(r, &d, x, cin, c, y);
    d.hist = s->d, d.hist_n = 2, d.kt = d.kh = d.kw = 3, d.spad = 1;
    d.res = res, d.y_f32 = y_f32, d.clamp = clamp;
    TRY(vconv(r, &d));
    return push(r, s, x, r->T);
}

/* ---- layers
 * -------------------------------------------------------------------------------------- */

/* Residual block (2.3). VS_NRM holds norm1's output (made here unless the previous layer's
 * epilogue made it: r->nrm_ready), VS_NRM2 norm2's. When the conv's tile covers all output
 * channels, conv A emits norm2(its output) directly (its raw output is not needed), and conv B
 * emits next_g's norm of the block output into VS_NRM for the next RB or the head. */
static int run_rb(grun *r, const ditem *it, const float *next_g) {
    gslot *sa = take(r, it->cin, 2), *sb = sa ? take(r, it->cout, 2) : NULL;
    if (!sb) return ENG_ESTATE;
    const int cmax = it->cin > it->cout ? it->cin : it->cout;
    int rc = need_act(r, cmax);
    if (!rc) rc = need(r, VS_NRM, (size_t)cmax * npos(r) * sizeof(wmcuda_bf16));
    if (!rc) rc = need(r, VS_NRM2, (size_t)cmax * npos(r) * sizeof(wmcuda_bf16));
    r->C = it->cout;
    const int fuse =
        (r->v->paths & WMCUDA_VAE_PATH_FUSE_NORM) && wmcuda_vae_conv_fuses_norm(it->cout);
    const int ready = r->nrm_ready;
    r->nrm_ready = fuse && next_g;
    if (rc || r->dry) return rc;
    wmcuda_bf16 *x = act(r, r->cur), *tmp = act(r, r->cur + 1), *sc = act(r, r->cur + 2);
    wmcuda_bf16 *n1 = nrm(r), *n2 = r->v->scratch[VS_NRM2];
    const wmcuda_bf16 *h = x;
    if (it->cin != it->cout) { /* 1x1x1 shortcut */
        wmcuda_vae_conv_desc d;
        desc_same(r, &d, x, it->cin, &it->sc, sc);
        TRY(vconv(r, &d));
        h = sc;
    }
    if (!ready) TRY(wmcuda_vae_rms_norm(x, n1, npos(r), it->cin, it->g1, 1, r->st));
    wmcuda_vae_conv_desc d;
    desc_same(r, &d, n1, it->cin, &it->c1, fuse ? NULL : tmp);
    d.hist = sa->d, d.hist_n = 2, d.kt = d.kh = d.kw = 3, d.spad = 1;
    if (fuse) d.ngamma = it->g2, d.ny = n2;
    TRY(vconv(r, &d));
    rc = push(r, sa, n1, r->T); /* the slots hold each conv's input (2.1) */
    if (rc) return rc;
    if (!fuse) TRY(wmcuda_vae_rms_norm(tmp, n2, npos(r), it->cout, it->g2, 1, r->st));
    /* y = conv + h into x: the residual is read and written by the same thread (alias safe) */
    desc_same(r, &d, n2, it->cout, &it->c2, x);
    d.hist = sb->d, d.hist_n = 2, d.kt = d.kh = d.kw = 3, d.spad = 1, d.res = h;
    if (r->nrm_ready) d.ngamma = next_g, d.ny = n1;
    TRY(vconv(r, &d));
    return push(r, sb, n2, r->T);
}

static int run_attn(grun *r, const ditem *it) {
    const int C = it->cin, N = r->H * r->W, Np = (N + 7) / 8 * 8;
    const size_t NC = (size_t)N * (size_t)C;
    r->nrm_ready = 0;
    int rc = need(r, VS_NRM, NC * sizeof(wmcuda_bf16));
    if (!rc) rc = need(r, VS_QKV, 3 * NC * sizeof(wmcuda_bf16));
    if (!rc) rc = need(r, VS_S, (size_t)N * (size_t)Np * sizeof(float));
    if (!rc) rc = need(r, VS_P, (size_t)N * (size_t)Np * sizeof(wmcuda_bf16));
    if (rc || r->dry) return rc;
    wmcuda_bf16 *u = nrm(r), *qkv = r->v->scratch[VS_QKV], *p = r->v->scratch[VS_P];
    float *s = r->v->scratch[VS_S];
    const float scale = (float)(1.0 / sqrt((double)C));
    for (int t = 0; t < r->T; t++) { /* per frame: no mixing across frames (2.5) */
        wmcuda_bf16 *xt = act(r, r->cur) + (size_t)t * NC;
        TRY(wmcuda_vae_rms_norm(xt, u, (size_t)N, C, it->g, 0, r->st));
        TRY(wmcuda_linear(r->v->gemm, u, C, N, C, it->qkv_w, it->qkv_b, 3 * C, qkv, 3 * C,
                          WMCUDA_EPI_NONE, r->st));
        TRY(wmcuda_attn_scores(r->v->gemm, qkv, 3 * C, N, qkv + C, 3 * C, N, 1, C, scale, s, Np,
                               r->st));
        TRY(wmcuda_softmax_rows(s, Np, p, Np, N, N, N, NULL, 0, N, N, r->st));
        TRY(wmcuda_attn_pv(r->v->gemm, p, Np, N, N, qkv + 2 * C, 3 * C, 1, C, u, C, r->st));
        wmcuda_vae_conv_desc d; /* proj 1x1 + bias + the block's residual, in place */
        desc_same(r, &d, u, C, &it->proj, xt);
        d.t_out = 1, d.res = xt;
        TRY(vconv(r, &d));
    }
    return 0;
}

static int run_up(grun *r, const ditem *it) {
    const int C = it->cin;
    r->nrm_ready = 0;
    if (it->kind == VAE_ITEM_UP3D) { /* time_conv C -> 2C, phases interleaved in time (2.4) */
        gslot *s = take(r, C, 2);
        if (!s) return ENG_ESTATE;
        const int f0 = r->first ? 1 : 0, Tp = r->T - f0; /* latent 0's frame passes through */
        r->T = f0 + 2 * Tp;
        int rc = need_act(r, C);
        if (rc) return rc;
        if (!r->dry) {
            const wmcuda_bf16 *x = act(r, r->cur);
            wmcuda_bf16 *y = act(r, r->cur + 1);
            const size_t fe = (size_t)C * (size_t)r->H * (size_t)r->W;
            if (f0)
                CK(cudaMemcpyAsync(y, x, fe * sizeof(wmcuda_bf16), cudaMemcpyDeviceToDevice,
                                   r->st));
            if (Tp > 0) {
                wmcuda_vae_conv_desc d;
                desc_same(r, &d, x + (size_t)f0 * fe, C, &it->tc, y);
                d.hist = s->d, d.hist_n = 2, d.t_out = Tp, d.kt = 3;
                d.f0 = f0, d.tmul = 2, d.csplit = C;
                TRY(vconv(r, &d));
                rc = push(r, s, x + (size_t)f0 * fe, Tp);
                if (rc) return rc;
            }
        }
        r->cur = (r->cur + 1) % 3;
    }
    /* nearest x2 folded into the conv's gather, then 3x3 pad 1: C -> C/2 at 2H x 2W */
    const int H = r->H, W = r->W;
    r->C = it->cout, r->H = 2 * H, r->W = 2 * W;
    int rc = need_act(r, it->cout);
    if (rc || r->dry) {
        r->cur = (r->cur + 1) % 3;
        return rc;
    }
    wmcuda_vae_conv_desc d;
    wmcuda_vae_conv_desc_init(&d);
    d.x = act(r, r->cur), d.cin = C, d.hin = H, d.win = W, d.t_out = r->T;
    d.bias = it->rs.b, d.cout = it->cout, d.y = act(r, r->cur + 1);
    if (r->v->paths &
        WMCUDA_VAE_PATH_SUBPIXEL) { /* four 2x2 convs on the low-res frames, one per output phase */
        d.hout = H, d.wout = W, d.kh = d.kw = 2;
        d.ostride = 2, d.hfull = r->H, d.wfull = r->W;
        for (int p = 0; p < 4; p++) {
            d.spad = p / 2 ? 0 : 1, d.spadx = p % 2 ? 0 : 1, d.oy0 = p / 2, d.ox0 = p % 2;
            d.w = it->sp[p].w;
            TRY(vconv(r, &d));
        }
    } else { /* nearest x2 folded into the gather, then 3x3 pad 1 */
        d.hout = r->H, d.wout = r->W, d.kh = d.kw = 3, d.spad = 1, d.up2 = 1, d.w = it->rs.w;
        TRY(vconv(r, &d));
    }
    r->cur = (r->cur + 1) % 3;
    return 0;
}

static int run_down(grun *r, const ditem *it) {
    const int C = it->cin, H = r->H, W = r->W;
    r->nrm_ready = 0;
    if (H < 2 || W < 2)
        return eng_errorf(r->err, r->errlen, ENG_EINVAL, "VAE downsample of a %dx%d frame", H, W);
    r->H = (H - 2) / 2 + 1, r->W = (W - 2) / 2 + 1; /* zero pad right/bottom, 3x3 stride 2 */
    int rc = need_act(r, C);
    if (rc) return rc;
    if (!r->dry) {
        wmcuda_vae_conv_desc d;
        wmcuda_vae_conv_desc_init(&d);
        d.x = act(r, r->cur), d.cin = C, d.hin = H, d.win = W;
        d.t_out = r->T, d.hout = r->H, d.wout = r->W;
        d.kh = d.kw = 3, d.sstride = 2, d.spad = 0;
        d.w = it->rs.w, d.bias = it->rs.b, d.cout = C, d.y = act(r, r->cur + 1);
        TRY(vconv(r, &d));
    }
    r->cur = (r->cur + 1) % 3;
    if (it->kind != VAE_ITEM_DOWN3D) return 0;
    gslot *s = take(r, C, 1);
    if (!s) return ENG_ESTATE;
    const wmcuda_bf16 *x = act(r, r->cur);
    if (r->first) return push(r, s, x, r->T); /* frame 0 passes through and becomes history */
    if (r->T % 2)
        return eng_errorf(r->err, r->errlen, ENG_EINVAL,
                          "VAE downsample3d: %d frames (later chunks need an even count)", r->T);
    const int T = r->T;
    r->T = T / 2;
    if (!r->dry) { /* out_j = sum_tau W_tau ("slot frame" ++ x)[2j + tau] + b */
        wmcuda_vae_conv_desc d;
        desc_same(r, &d, x, C, &it->tc, act(r, r->cur + 1));
        d.hist = s->d, d.hist_n = 1, d.kt = 3, d.tstride = 2;
        TRY(vconv(r, &d));
        rc = push(r, s, x, T);
        if (rc) return rc;
    }
    r->cur = (r->cur + 1) % 3;
    return 0;
}

static int run_items(grun *r, const dnet *n) {
    int rc = 0;
    static const char *kname[] = {"rb", "attn", "up2d", "up3d", "down2d", "down3d"};
    for (int i = 0; i < n->nitems && !rc; i++) {
        const ditem *it = &n->items[i];
        if (i) {
            char nm[24];
            snprintf(nm, sizeof nm, "%s%d", kname[n->items[i - 1].kind], n->items[i - 1].cout);
            mark(r, nm);
        }
        switch (it->kind) {
        case VAE_ITEM_RB: { /* whose norm follows: the next RB's first, or the head's */
            const float *next_g =
                i + 1 < n->nitems
                    ? (n->items[i + 1].kind == VAE_ITEM_RB ? n->items[i + 1].g1 : NULL)
                    : n->head_g;
            rc = run_rb(r, it, next_g);
            break;
        }
        case VAE_ITEM_ATTN:
            rc = run_attn(r, it);
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
    if (n->nitems) {
        char nm[24];
        snprintf(nm, sizeof nm, "%s%d", kname[n->items[n->nitems - 1].kind],
                 n->items[n->nitems - 1].cout);
        mark(r, nm);
    }
    return rc;
}

/* conv_in (plain input, cached) from act(cur) into the next buffer. */
static int run_conv_in(grun *r, const dnet *n) {
    gslot *s = take(r, n->in_ch, 2);
    if (!s) return ENG_ESTATE;
    const int cin = r->C;
    r->C = n->in_dim, r->nrm_ready = 0;
    int rc = need_act(r, n->in_dim > cin ? n->in_dim : cin);
    if (!rc && !r->dry)
        rc = conv3(r, act(r, r->cur), cin, s, &n->in, NULL, act(r, r->cur + 1), 0, 0);
    r->cur = (r->cur + 1) % 3;
    return rc;
}

/* head: rms, silu, cached conv 3x3x3 -> out_ch, fp32 into VS_F32 [npos][out_ch]. With
 * WMCUDA_VAE_PATH_HEAD_TAPS (3 output channels) as a 1x1 GEMM to per-tap partial products over
 * "slot ++ input" and a gather-sum (wmcuda_vae_head_taps). */
static int run_head(grun *r, const dnet *n, int clamp) {
    gslot *s = take(r, n->head_ch, 2);
    if (!s) return ENG_ESTATE;
    const int taps = n->head_p.w != NULL || (r->dry && n->out_ch * 27 <= HEAD_PC);
    const size_t hw = (size_t)r->H * (size_t)r->W;
    int rc = need(r, VS_NRM, (size_t)n->head_ch * npos(r) * sizeof(wmcuda_bf16));
    if (!rc) rc = need(r, VS_F32, (size_t)n->out_ch * npos(r) * sizeof(float));
    if (!rc && taps) rc = need(r, VS_HEADP, (size_t)(r->T + 2) * hw * HEAD_PC * sizeof(float));
    if (rc || r->dry) return rc;
    if (!r->nrm_ready)
        TRY(wmcuda_vae_rms_norm(act(r, r->cur), nrm(r), npos(r), n->head_ch, n->head_g, 1, r->st));
    if (!taps || !(r->v->paths & WMCUDA_VAE_PATH_HEAD_TAPS))
        return conv3(r, nrm(r), n->head_ch, s, &n->head, NULL, r->v->scratch[VS_F32], 1, clamp);
    float *P = r->v->scratch[VS_HEADP];
    wmcuda_vae_conv_desc d;
    for (int part = 0; part < 2; part++) { /* the 2 history frames, then the block's */
        desc_same(r, &d, part ? nrm(r) : s->d, n->head_ch, &n->head_p,
                  P + (part ? 2 * hw * HEAD_PC : 0));
        d.t_out = part ? r->T : 2, d.y_f32 = 1, d.tile = WMCUDA_VAE_TILE_256x96;
        TRY(vconv(r, &d));
    }
    TRY(wmcuda_vae_head_taps(P, r->T, r->H, r->W, HEAD_PC, n->out_ch, n->head.b, clamp,
                             r->v->scratch[VS_F32], r->st));
    return push(r, s, nrm(r), r->T);
}

static int check_slots_used(const grun *r) {
    if (r->k->cursor == r->k->n) return 0;
    return eng_errorf(r->err, r->errlen, ENG_ESTATE, "VAE forward used %d cache slots, planned %d",
                      r->k->cursor, r->k->n);
}

/* ---- decoder
 * ------------------------------------------------------------------------------------- */

/* 3.4: de-normalise + conv2, conv_in, middle, stages, head (clamped), RGB8. Dry: sizes only. */
static int dec_forward(wmcuda_vae_decoder *dec, grun *r, const float *lat, int nlat, uint8_t *rgb,
                       float *frames) {
    wmcuda_vae *v = dec->v;
    const int z = v->cfg.z_dim;
    dec->k.cursor = 0;
    r->C = v->dec.in_ch, r->T = nlat, r->H = dec->lat_h, r->W = dec->lat_w, r->cur = 0;
    int rc = need_act(r, r->C);
    if (rc) return rc;
    v->nev = 0;
    mark(r, "start");
    if (!r->dry)
        TRY(wmcuda_vae_latent_in(lat, npos(r), z, v->mean, v->std, v->post_w, v->post_b, act(r, 0),
                                 r->st));
    rc = run_conv_in(r, &v->dec);
    mark(r, "conv_in");
    if (!rc) rc = run_items(r, &v->dec);
    if (!rc) rc = run_head(r, &v->dec, 1);
    mark(r, "head");
    if (rc || r->dry) return rc;
    TRY(wmcuda_vae_frames_out(v->scratch[VS_F32], npos(r), rgb, frames, r->st));
    mark(r, "rgb");
    return check_slots_used(r);
}

int wmcuda_vae_decoder_create(wmcuda_vae *v, int lat_h, int lat_w, wmcuda_vae_decoder **out,
                              char *err, size_t errlen) {
    if (!v || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae_decoder_create: NULL argument");
    *out = NULL;
    if (!(v->parts & VAE_PART_DECODER))
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE weights were loaded without the decoder");
    if (lat_h < 1 || lat_w < 1 || lat_h > 1024 || lat_w > 1024)
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE decoder latent size %dx%d out of range",
                          lat_h, lat_w);
    wmcuda_vae_decoder *d = calloc(1, sizeof *d);
    if (!d) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    d->v = v, d->lat_h = lat_h, d->lat_w = lat_w, d->first_pending = 1;
    grun r = {v, v->stream, 1, 0, &d->k, {0}, 0, 0, 0, 0, 0, 0, err, errlen};
    int rc = dec_forward(d, &r, NULL, WMCUDA_VAE_PLAN_LATENTS, NULL, NULL);
    if (!rc) rc = scratch_commit(v, r.need, err, errlen);
    if (!rc) rc = slots_commit(&d->k, err, errlen);
    if (!rc) {
        const size_t hw = (size_t)lat_h * (size_t)lat_w, HW = 64 * hw;
        const size_t nf = 4 * (size_t)WMCUDA_VAE_PLAN_LATENTS;
        const size_t lb = align256((size_t)v->cfg.z_dim * WMCUDA_VAE_PLAN_LATENTS * hw * 4);
        const size_t fb = align256(3 * nf * HW * 4), rb = align256(3 * nf * HW);
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, lb + fb + rb);
        if (e != cudaSuccess) {
            rc = cuda_fail(err, errlen, e, "cudaMalloc of the VAE decoder staging");
        } else {
            d->lat = p, d->frames = (float *)((char *)p + lb), d->rgb = (uint8_t *)p + lb + fb;
            d->io_bytes = lb + fb + rb;
        }
    }
    if (rc) {
        wmcuda_vae_decoder_destroy(d);
        return rc;
    }
    *out = d;
    return 0;
}

void wmcuda_vae_decoder_destroy(wmcuda_vae_decoder *d) {
    if (!d) return;
    cudaStreamSynchronize(d->v->stream);
    cudaFree(d->k.arena);
    cudaFree(d->lat);
    free(d);
}

int wmcuda_vae_decoder_reset(wmcuda_vae_decoder *d, char *err, size_t errlen) {
    if (!d) return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae_decoder_reset: NULL decoder");
    if (d->k.arena) {
        cudaError_t e = cudaMemsetAsync(d->k.arena, 0, d->k.bytes, d->v->stream);
        if (e != cudaSuccess) return cuda_fail(err, errlen, e, "cudaMemsetAsync of the slots");
    }
    d->first_pending = 1;
    return 0;
}

size_t wmcuda_vae_decoder_device_bytes(const wmcuda_vae_decoder *d) {
    return d ? d->k.bytes + d->io_bytes : 0;
}

int wmcuda_vae_decoder_frames_out(const wmcuda_vae_decoder *d, int nlat) {
    int up = 0;
    for (int i = 0; i < d->v->dec.nitems; i++) up += d->v->dec.items[i].kind == VAE_ITEM_UP3D;
    const int rate = 1 << up;
    if (nlat < 1) return 0;
    return d->first_pending ? 1 + rate * (nlat - 1) : rate * nlat;
}

void wmcuda_vae_decoder_io(wmcuda_vae_decoder *d, float **latents, uint8_t **rgb, float **frames) {
    if (latents) *latents = d->lat;
    if (rgb) *rgb = d->rgb;
    if (frames) *frames = d->frames;
}

int wmcuda_vae_decode_device(wmcuda_vae_decoder *d, const float *latents, int nlat, uint8_t *rgb,
                             float *frames, int *nframes, char *err, size_t errlen) {
    if (!d || !latents || !rgb || nlat < 1 || nlat > WMCUDA_VAE_PLAN_LATENTS)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "wmcuda_vae_decode: bad arguments (nlat %d, at most %d)", nlat,
                          WMCUDA_VAE_PLAN_LATENTS);
    const int nf = wmcuda_vae_decoder_frames_out(d, nlat);
    grun r = {d->v, d->v->stream, 0, d->first_pending, &d->k, {0}, 0, 0, 0, 0, 0, 0, err, errlen};
    int rc = dec_forward(d, &r, latents, nlat, rgb, frames);
    if (rc) return rc;
    d->first_pending = 0;
    if (nframes) *nframes = nf;
    return 0;
}

int wmcuda_vae_decode(wmcuda_vae_decoder *d, const float *latents, int nlat, uint8_t *rgb,
                      float *frames, int *nframes, char *err, size_t errlen) {
    if (!d || !latents || !rgb || nlat < 1 || nlat > WMCUDA_VAE_PLAN_LATENTS)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "wmcuda_vae_decode: bad arguments (nlat %d, at most %d)", nlat,
                          WMCUDA_VAE_PLAN_LATENTS);
    const cudaStream_t st = d->v->stream;
    const size_t hw = (size_t)d->lat_h * (size_t)d->lat_w, HW = 64 * hw;
    cudaError_t e = cudaMemcpyAsync(d->lat, latents,
                                    (size_t)d->v->cfg.z_dim * (size_t)nlat * hw * sizeof(float),
                                    cudaMemcpyHostToDevice, st);
    if (e != cudaSuccess) return cuda_fail(err, errlen, e, "cudaMemcpyAsync of the latents");
    int nf = 0;
    int rc = wmcuda_vae_decode_device(d, d->lat, nlat, d->rgb, frames ? d->frames : NULL, &nf, err,
                                      errlen);
    if (rc) return rc;
    e = cudaMemcpyAsync(rgb, d->rgb, (size_t)nf * HW * 3, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess && frames)
        e = cudaMemcpyAsync(frames, d->frames, 3 * (size_t)nf * HW * sizeof(float),
                            cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return cuda_fail(err, errlen, e, "VAE decode (copy back)");
    if (nframes) *nframes = nf;
    return 0;
}

/* ---- encoder
 * ------------------------------------------------------------------------------------- */

/* 2.6: conv_in, stages, middle, head, conv1, keep mu, normalise. One pass of n frames. */
static int enc_forward(wmcuda_vae_encoder *enc, grun *r, const float *in, int n, float *z) {
    wmcuda_vae *v = enc->v;
    enc->k.cursor = 0;
    r->C = v->enc.in_ch, r->T = n, r->H = enc->height, r->W = enc->width, r->cur = 0;
    int rc = need_act(r, r->C);
    if (rc) return rc;
    if (!r->dry) TRY(wmcuda_vae_frames_in(in, npos(r), v->enc.in_ch, act(r, 0), r->st));
    rc = run_conv_in(r, &v->enc);
    if (!rc) rc = run_items(r, &v->enc);
    if (!rc) rc = run_head(r, &v->enc, 0);
    if (rc || r->dry) return rc;
    TRY(wmcuda_vae_latent_out(v->scratch[VS_F32], npos(r), v->cfg.z_dim, v->quant_w, v->quant_b,
                              v->mean, v->std, z, r->st));
    return check_slots_used(r);
}

int wmcuda_vae_encoder_create(wmcuda_vae *v, int height, int width, wmcuda_vae_encoder **out,
                              char *err, size_t errlen) {
    if (!v || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae_encoder_create: NULL argument");
    *out = NULL;
    if (!(v->parts & VAE_PART_ENCODER))
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE weights were loaded without the encoder");
    if (height < 8 || width < 8 || height % 8 || width % 8 || height > 8192 || width > 8192)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "VAE encoder frame size %dx%d: need positive multiples of 8", height,
                          width);
    wmcuda_vae_encoder *e = calloc(1, sizeof *e);
    if (!e) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    e->v = v, e->height = height, e->width = width, e->first_pending = 1;
    grun r = {v, v->stream, 1, 0, &e->k, {0}, 0, 0, 0, 0, 0, 0, err, errlen};
    int rc = enc_forward(e, &r, NULL, WMCUDA_VAE_ENC_CHUNK, NULL);
    if (!rc) rc = scratch_commit(v, r.need, err, errlen);
    if (!rc) rc = slots_commit(&e->k, err, errlen);
    if (!rc) {
        const size_t HW = (size_t)height * (size_t)width;
        const size_t ib = align256(3 * WMCUDA_VAE_ENC_CHUNK * HW * 4);
        const size_t ob = align256((size_t)v->cfg.z_dim * (HW / 64) * 4);
        void *p = NULL;
        cudaError_t ce = cudaMalloc(&p, ib + ob);
        if (ce != cudaSuccess) {
            rc = cuda_fail(err, errlen, ce, "cudaMalloc of the VAE encoder staging");
        } else {
            e->in = p, e->out = (float *)((char *)p + ib), e->io_bytes = ib + ob;
        }
    }
    if (rc) {
        wmcuda_vae_encoder_destroy(e);
        return rc;
    }
    *out = e;
    return 0;
}

void wmcuda_vae_encoder_destroy(wmcuda_vae_encoder *e) {
    if (!e) return;
    cudaStreamSynchronize(e->v->stream);
    cudaFree(e->k.arena);
    cudaFree(e->in);
    free(e);
}

int wmcuda_vae_encode(wmcuda_vae_encoder *e, const float *frames, int n, float *latents, int *nlat,
                      char *err, size_t errlen) {
    if (!e || !frames || !latents)
        return eng_errorf(err, errlen, ENG_EINVAL, "wmcuda_vae_encode: NULL argument");
    const int q = WMCUDA_VAE_ENC_CHUNK;
    if (e->first_pending && n != 1)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "wmcuda_vae_encode: the first call takes exactly 1 frame, got %d", n);
    if (!e->first_pending && (n < q || n % q))
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "wmcuda_vae_encode: later calls take a positive multiple of %d frames, "
                          "got %d",
                          q, n);
    const cudaStream_t st = e->v->stream;
    const size_t HW = (size_t)e->height * (size_t)e->width, hw = HW / 64;
    const int passes = e->first_pending ? 1 : n / q, per = e->first_pending ? 1 : q;
    const int z = e->v->cfg.z_dim;
    for (int j = 0; j < passes; j++) {
        /* frames [3][n][H][W]: this pass's `per` frames of each channel are contiguous */
        cudaError_t ce = cudaMemcpy2DAsync(e->in, (size_t)per * HW * 4,
                                           frames + (size_t)j * per * HW, (size_t)n * HW * 4,
                                           (size_t)per * HW * 4, 3, cudaMemcpyHostToDevice, st);
        if (ce != cudaSuccess) return cuda_fail(err, errlen, ce, "cudaMemcpy2DAsync of frames");
        grun r = {e->v, st, 0, e->first_pending, &e->k, {0}, 0, 0, 0, 0, 0, 0, err, errlen};
        int rc = enc_forward(e, &r, e->in, per, e->out);
        if (rc) return rc;
        e->first_pending = 0;
        ce = cudaMemcpy2DAsync(latents + (size_t)j * hw, (size_t)passes * hw * 4, e->out, hw * 4,
                               hw * 4, (size_t)z, cudaMemcpyDeviceToHost, st);
        if (ce == cudaSuccess) ce = cudaStreamSynchronize(st);
        if (ce != cudaSuccess) return cuda_fail(err, errlen, ce, "VAE encode (copy back)");
    }
    if (nlat) *nlat = passes;
    return 0;
}
