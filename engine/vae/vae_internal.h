/* Internals of the CPU VAE (engine/vae.h) shared by its three files and by tests/test_vae.c: the
 * network description built from a vae_config (encoder and decoder as flat lists of layers in
 * execution order, each with its official and Diffusers key prefixes), the parameter table that
 * drives synthetic init, loading and the unexpected-key check, and the layer kernels.
 *
 * Layouts. Activations are compact [C][T][H][W] float32, the same order as the public API. Conv
 * weights whose kernel has more than one tap are stored [Cout][kt][kh][kw][Cin]: the row of an
 * output channel then matches an im2col block whose rows are (tap, input channel), and tap t alone
 * is the [Cout][Cin] matrix at column t * Cin with leading dimension taps * Cin. 1x1 weights keep
 * [Cout][Cin]. vae_param_read gives any tensor back in the official layout.
 *
 * Workspace and dry runs. Layer functions take their scratch from a vae_ws and their temporal
 * history from a vae_cache. In a dry run (ws->dry) every layer only declares the scratch it needs
 * and the cache slots it uses, touching no data; the decoder and encoder run their forward once
 * dry at create time, so the buffer sizes and the 32 (decoder) / 24 (encoder) slot shapes come
 * from the very code that uses them. */
#ifndef WM_ENGINE_VAE_INTERNAL_H
#define WM_ENGINE_VAE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"

#define VAE_MAX_RB    4  /* num_res_blocks accepted by the table (Wan2.1: 2) */
#define VAE_MAX_ITEMS 32 /* layers in one encoder/decoder body (Wan2.1 decoder: 18) */
#define VAE_MAX_SLOTS 48 /* cached temporal convs (decoder 32, encoder 24) */
#define VAE_NORM_EPS  1e-12

/* ---- network description --------------------------------------------------------------------- */

typedef enum {
    VAE_ITEM_RB,     /* residual block cin -> cout (2 cached 3x3x3 convs, optional 1x1 shortcut) */
    VAE_ITEM_ATTN,   /* per-frame single-head self-attention, c = cin = cout */
    VAE_ITEM_UP2D,   /* nearest x2 + conv 3x3, cin -> cin/2 */
    VAE_ITEM_UP3D,   /* time_conv (3,1,1) cin -> 2 cin with phase interleave, then UP2D */
    VAE_ITEM_DOWN2D, /* zero pad right/bottom, conv 3x3 stride 2, cin -> cin */
    VAE_ITEM_DOWN3D  /* DOWN2D, then time_conv (3,1,1) stride 2 with a one-frame cache */
} vae_item_kind;

typedef struct vae_item {
    vae_item_kind kind;
    int cin, cout;
    char oname[48]; /* official key prefix, e.g. "decoder.upsamples.3." */
    char dname[64]; /* Diffusers key prefix, e.g. "decoder.up_blocks.0.upsamplers.0." */
    /* RB */
    float *g1, *w1, *b1, *g2, *w2, *b2, *sc_w, *sc_b;
    /* ATTN */
    float *g, *qkv_w, *qkv_b, *proj_w, *proj_b;
    /* resamples: resample.1 (spatial conv) and time_conv */
    float *rs_w, *rs_b, *tc_w, *tc_b;
} vae_item;

typedef struct vae_net {
    int in_ch, in_dim; /* conv_in: in_ch -> in_dim, 3x3x3 */
    float *in_w, *in_b;
    vae_item items[VAE_MAX_ITEMS]; /* body in execution order, middle block included */
    int nitems;
    int head_ch, out_ch; /* head: rms(head_ch), silu, conv 3x3x3 head_ch -> out_ch */
    float *head_g, *head_w, *head_b;
} vae_net;

struct vae_weights {
    vae_config cfg;
    int parts;    /* VAE_PART_* held */
    float *arena; /* every tensor of the held parts points into it */
    size_t arena_floats;
    float *quant_w, *quant_b; /* top-level conv1 (2z -> 2z, 1x1x1): encoder side */
    float *post_w, *post_b;   /* top-level conv2 (z -> z, 1x1x1): decoder side */
    vae_net enc, dec;
};

/* Fills the network description (kinds, channels, key prefixes) of both halves from c. */
int vae_net_build(const vae_config *c, vae_net *enc, vae_net *dec, char *err, size_t errlen);

/* ---- parameter table ------------------------------------------------------------------------- */

typedef enum { VAE_P_CONV, VAE_P_BIAS, VAE_P_GAIN } vae_param_kind;

typedef struct vae_param {
    char name[112];  /* official key */
    char dname[112]; /* Diffusers / FastVideo key */
    int part;        /* VAE_PART_ENCODER or VAE_PART_DECODER */
    vae_param_kind kind;
    int ndim;
    int64_t shape[5]; /* official shape */
    int64_t numel;
    int taps;     /* kernel volume of a conv weight (stored [Cout][taps][Cin] when > 1), else 1 */
    float **slot; /* where the tensor's pointer lives in the vae_weights */
} vae_param;

typedef int (*vae_param_fn)(void *user, const vae_param *p);
/* Calls fn for every parameter of both halves in Appendix-A order (encoder, conv1, conv2,
 * decoder), whatever parts w holds; stops at the first non-zero return and returns it. */
int vae_visit(vae_weights *w, vae_param_fn fn, void *user);
/* Number of tensors / parameters of the given parts. */
int vae_count(const vae_config *c, int parts, int64_t *params);
/* Tensor p of w in the official layout (dst holds p->numel floats). p must come from vae_visit
 * on w and belong to a part w holds. */
void vae_param_read(const vae_param *p, float *dst);

/* ---- workspace and caches -------------------------------------------------------------------- */

enum {
    VAE_WS_PAD,  /* padded conv input [Cin][T(+2)][H+2][W+2], time-conv input */
    VAE_WS_GOUT, /* conv output on the padded grid [Cout][T][H+2][W+2] */
    VAE_WS_AUX,  /* stride-2 tap gather, attention q/k/v/o */
    VAE_WS_COL,  /* im2col block of the padded-grid convs [taps * Cin][block] */
    VAE_WS_ATT,  /* attention scores [N][N] */
    VAE_WS_ACT0, /* three compact activation buffers the orchestrators rotate through */
    VAE_WS_ACT1,
    VAE_WS_ACT2,
    VAE_WS_COUNT
};

typedef struct vae_ws {
    int dry;
    float *buf[VAE_WS_COUNT];
    size_t cap[VAE_WS_COUNT];  /* floats allocated */
    size_t need[VAE_WS_COUNT]; /* largest request seen in dry runs */
} vae_ws;

/* Declares (dry) or checks (live) that buffer `which` holds n floats. A live shortfall is an
 * internal error: the dry run must have seen every shape. */
int vae_ws_require(vae_ws *ws, int which, size_t n, char *err, size_t errlen);
/* Grows every buffer to its recorded need (zeroed); keeps what is big enough. */
int vae_ws_commit(vae_ws *ws, char *err, size_t errlen);
void vae_ws_free(vae_ws *ws);

/* One cached temporal conv: the last `frames` input frames, [c][frames][h][w]. */
typedef struct vae_slot {
    float *d;
    int c, frames, h, w;
} vae_slot;

typedef struct vae_cache {
    int dry;
    int n, cursor; /* slots made; next slot in execution order */
    vae_slot slot[VAE_MAX_SLOTS];
    float *arena;
    size_t floats;
} vae_cache;

/* Next slot in execution order. Dry: records its shape. Live: returns it after checking the shape.
 */
vae_slot *vae_cache_take(vae_cache *k, int c, int frames, int h, int w, char *err, size_t errlen);
/* Allocates the slots recorded by a dry run, zeroed. */
int vae_cache_commit(vae_cache *k, char *err, size_t errlen);
void vae_cache_zero(vae_cache *k);
void vae_cache_free(vae_cache *k);

/* ---- layers (engine/vae/vae_layers.c) -------------------------------------------------------- */

/* How a 3x3x3 conv's input is made from the compact source. */
typedef enum { VAE_PREP_PLAIN, VAE_PREP_NORM_SILU } vae_prep;

/* Causal 3x3x3 conv, stride 1, zero padding 1 in H and W, history = the slot's 2 frames (zeros
 * when slot is NULL): y[cout][T][H][W] = conv(prep(x)) + b (+ res when non-NULL). y may alias x or
 * res. The slot then holds the last 2 frames of "history ++ prep(x)". */
int vae_conv3d(vae_ws *ws, const float *x, vae_prep prep, const float *gamma, int cin, int T, int H,
               int W, vae_slot *slot, const float *w, const float *b, int cout, const float *res,
               float *y, char *err, size_t errlen);
/* y[cout][n] = W[cout][cin] x[cin][n] + b (1x1 or 1x1x1 conv over n positions). */
void vae_conv1x1(const float *x, int cin, size_t n, const float *w, const float *b, int cout,
                 float *y);
/* y = x / max(||x||_2, 1e-12) * sqrt(C) * gamma over channels (then silu when asked), for the
 * compact [C][npos] x. In place allowed. */
void vae_rms_norm(const float *x, int C, size_t npos, const float *gamma, int silu, float *y);
/* Residual block (model-vae-clip.md 2.3) with slots A and B (either NULL: zero history).
 * tmp: [cout][T][H][W]; sc: [cout][T][H][W] when cin != cout. y may alias x (buffers big enough
 * for either width); tmp and sc must be distinct from x. */
int vae_resblock(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, vae_slot *sa,
                 vae_slot *sb, float *tmp, float *sc, float *y, char *err, size_t errlen);
/* Attention block (2.5) on every frame of x [C][T][H][W], in place. */
int vae_attention(vae_ws *ws, const vae_item *it, float *x, int T, int H, int W, char *err,
                  size_t errlen);
/* Temporal part of upsample3d: x [C][T][H][W] -> y [C][Tout][H][W], Tout = 2T, or 2T - 1 with
 * `first` (frame 0 passes through and stays out of the history). y must not alias x. */
int vae_time_up(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, int first,
                vae_slot *slot, float *y, char *err, size_t errlen);
/* Spatial part of upsample2d/3d: nearest x2 then conv 3x3 pad 1: [C][T][H][W] -> [C/2][T][2H][2W].
 * y may alias x. */
int vae_up_conv(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, float *y,
                char *err, size_t errlen);
/* Spatial part of downsample2d/3d: pad right/bottom with zeros, conv 3x3 stride 2:
 * [C][T][H][W] -> [C][T][Ho][Wo], Ho = (H - 2) / 2 + 1. y must not alias x. */
int vae_down_conv(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, float *y,
                  char *err, size_t errlen);
/* Temporal part of downsample3d: with `first`, y = x and the slot keeps x's last frame; otherwise
 * y[j] = time_conv over ("slot frame" ++ x) frames 2j..2j+2 (T even -> T/2 frames) and the slot
 * keeps x's last frame. y may alias x. */
int vae_time_down(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, int first,
                  vae_slot *slot, float *y, char *err, size_t errlen);

/* Repacks an official [Cout][Cin][taps] conv weight as [Cout][taps][Cin]. */
void vae_pack_taps(const float *src, int cout, int cin, int taps, float *dst);

#endif
