/* The CLIP image encoder (open-clip ViT-H/14 visual tower, model-vae-clip.md section 5) on the CPU
 * reference backend in float32: the reference's preprocessing (5.2), the parameter table that
 * drives synthetic init and loading under the official or HF CLIPVisionModel names (5.6), and the
 * forward pass that stops after block layers_used - 1 without the final LayerNorm (5.3, 5.4).
 *
 * Every key name and shape comes from one place (build_table); synthetic init, the loader's
 * missing/shape/unexpected checks and the forward pass all read that table. */
#include "engine/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/ops.h"
#include "engine/errors.h"
#include "engine/noise.h"
#include "engine/philox.h"
#include "engine/tensor_source.h"

#define CLIP_LN_EPS     1e-5f
#define CLIP_MAX_LAYERS 256   /* a sanity bound for hand-made configs; ViT-H has 32 */
#define CLIP_MAX_DIM    65536 /* keeps every product of two dimensions inside int */

/* ---- config ---------------------------------------------------------------------------------- */

int clip_config_preset(clip_config *out, const char *size, char *err, size_t errlen) {
    if (!out || !size)
        return eng_errorf(err, errlen, ENG_EINVAL, "clip_config_preset: NULL argument");
    memset(out, 0, sizeof *out);
    out->image_size = 224;
    out->patch = 14;
    if (strcmp(size, "full") == 0) {
        out->width = 1280, out->layers = 32, out->layers_used = 31, out->heads = 16,
        out->mlp = 5120;
    } else if (strcmp(size, "tiny") == 0) {
        /* Same 224/14 grid, so 257 tokens: the DiT's tiny config expects 257 x 48 tokens. */
        out->width = 48, out->layers = 4, out->layers_used = 3, out->heads = 3, out->mlp = 96;
    } else {
        return eng_errorf(err, errlen, ENG_EINVAL, "unknown CLIP size '%s' (expected full or tiny)",
                          size);
    }
    snprintf(out->size_name, sizeof out->size_name, "%s", size);
    return 0;
}

static int check_config(const clip_config *c, char *err, size_t errlen) {
    if (c->image_size < 1 || c->patch < 1 || c->image_size % c->patch || c->image_size > 4096)
        return eng_errorf(err, errlen, ENG_ECONFIG,
                          "CLIP image_size %d / patch %d invalid (image_size must be a multiple "
                          "of patch, at most 4096)",
                          c->image_size, c->patch);
    if (c->width < 1 || c->heads < 1 || c->width % c->heads || c->mlp < 1 ||
        c->width > CLIP_MAX_DIM || c->mlp > CLIP_MAX_DIM)
        return eng_errorf(err, errlen, ENG_ECONFIG,
                          "CLIP width %d / heads %d / mlp %d invalid (width a multiple of heads)",
                          c->width, c->heads, c->mlp);
    if (c->layers < 1 || c->layers > CLIP_MAX_LAYERS || c->layers_used < 1 ||
        c->layers_used > c->layers)
        return eng_errorf(err, errlen, ENG_ECONFIG,
                          "CLIP layers %d / layers_used %d invalid (1 <= layers_used <= layers)",
                          c->layers, c->layers_used);
    return 0;
}

/* ---- parameter table ------------------------------------------------------------------------- */

/* What a tensor is decides its synthetic init: linears (the patch conv counts as one)
 * U(+-1/sqrt(fan_in)), LayerNorm gains 1 + 0.1u, all biases 0.05u, embeddings 0.5u. */
typedef enum { CLIP_P_LINEAR, CLIP_P_BIAS, CLIP_P_GAIN, CLIP_P_EMBED } clip_param_kind;

#define CLIP_NAME_LEN 80
typedef struct clip_param {
    char name[CLIP_NAME_LEN];  /* official key, e.g. "visual.transformer.0.attn.to_qkv.weight" */
    char hf[3][CLIP_NAME_LEN]; /* HF keys without "vision_model."; three for the fused q/k/v */
    int nhf;                   /* 1, or 3: each HF tensor fills numel/3 consecutive values */
    clip_param_kind kind;
    int ndim, hf_ndim; /* hf_ndim/hf_shape: one HF tensor's native shape */
    int64_t shape[4], hf_shape[4];
    int64_t numel;
    float **slot;
} clip_param;

typedef struct clip_block {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_block;

struct clip_weights {
    clip_config cfg;
    float *arena;
    float *cls, *patch_w, *pos, *pre_w, *pre_b; /* cls [W], patch [W][3*p*p], pos [T][W] */
    clip_block *blocks;                         /* layers_used of them: only blocks that run */
    clip_param *params;
    int nparams;
};

static clip_param *add_param(clip_weights *w, float **slot, clip_param_kind kind, const char *name,
                             const char *hf, int ndim, const int64_t *shape) {
    clip_param *p = &w->params[w->nparams++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->hf[0], sizeof p->hf[0], "%s", hf);
    p->nhf = 1;
    p->kind = kind, p->slot = slot;
    p->ndim = p->hf_ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = p->hf_shape[i] = shape[i], p->numel *= shape[i];
    return p;
}

/* HF keeps q, k and v as three Linears; the official checkpoint has one to_qkv with rows
 * [q | k | v] (5.6), so the three HF tensors are the thirds of that matrix, in that order. */
static void split_qkv(clip_param *p, const char *hf_prefix, const char *leaf) {
    static const char qkv[3] = {'q', 'k', 'v'};
    p->nhf = 3;
    for (int k = 0; k < 3; k++)
        snprintf(p->hf[k], sizeof p->hf[k], "%sself_attn.%c_proj.%s", hf_prefix, qkv[k], leaf);
    p->hf_shape[0] = p->shape[0] / 3;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...)  ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ADD(slot, kind, name, hf, ...)                                                             \
    add_param(w, slot, kind, name, hf, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__))

static void add_block(clip_weights *w, int i) {
    const int64_t W = w->cfg.width, M = w->cfg.mlp;
    clip_block *b = &w->blocks[i];
    char o[48], h[48], on[CLIP_NAME_LEN], hn[CLIP_NAME_LEN];
    snprintf(o, sizeof o, "visual.transformer.%d.", i);
    snprintf(h, sizeof h, "encoder.layers.%d.", i);
#define BLK(slot, kind, oleaf, hleaf, ...)                                                         \
    (snprintf(on, sizeof on, "%s%s", o, oleaf), snprintf(hn, sizeof hn, "%s%s", h, hleaf),         \
     ADD(slot, kind, on, hn, __VA_ARGS__))
    BLK(&b->ln1_w, CLIP_P_GAIN, "norm1.weight", "layer_norm1.weight", W);
    BLK(&b->ln1_b, CLIP_P_BIAS, "norm1.bias", "layer_norm1.bias", W);
    split_qkv(BLK(&b->qkv_w, CLIP_P_LINEAR, "attn.to_qkv.weight", "", 3 * W, W), h, "weight");
    split_qkv(BLK(&b->qkv_b, CLIP_P_BIAS, "attn.to_qkv.bias", "", 3 * W), h, "bias");
    BLK(&b->proj_w, CLIP_P_LINEAR, "attn.proj.weight", "self_attn.out_proj.weight", W, W);
    BLK(&b->proj_b, CLIP_P_BIAS, "attn.proj.bias", "self_attn.out_proj.bias", W);
    BLK(&b->ln2_w, CLIP_P_GAIN, "norm2.weight", "layer_norm2.weight", W);
    BLK(&b->ln2_b, CLIP_P_BIAS, "norm2.bias", "layer_norm2.bias", W);
    BLK(&b->fc1_w, CLIP_P_LINEAR, "mlp.0.weight", "mlp.fc1.weight", M, W);
    BLK(&b->fc1_b, CLIP_P_BIAS, "mlp.0.bias", "mlp.fc1.bias", M);
    BLK(&b->fc2_w, CLIP_P_LINEAR, "mlp.2.weight", "mlp.fc2.weight", W, M);
    BLK(&b->fc2_b, CLIP_P_BIAS, "mlp.2.bias", "mlp.fc2.bias", W);
#undef BLK
}

#define CLIP_PARAMS_PER_BLOCK 12
#define CLIP_PARAMS_OUTSIDE   5

/* Fills w->params (the official order) for the blocks that run; post_norm and head are never
 * used (5.3), so they have no entry. */
static void build_table(clip_weights *w) {
    const int64_t W = w->cfg.width, T = clip_tokens(&w->cfg), p = w->cfg.patch;
    clip_param *q;
    q = ADD(&w->cls, CLIP_P_EMBED, "visual.cls_embedding", "embeddings.class_embedding", 1, 1, W);
    q->hf_ndim = 1, q->hf_shape[0] = W;
    ADD(&w->patch_w, CLIP_P_LINEAR, "visual.patch_embedding.weight",
        "embeddings.patch_embedding.weight", W, 3, p, p);
    q = ADD(&w->pos, CLIP_P_EMBED, "visual.pos_embedding", "embeddings.position_embedding.weight",
            1, T, W);
    q->hf_ndim = 2, q->hf_shape[0] = T, q->hf_shape[1] = W;
    ADD(&w->pre_w, CLIP_P_GAIN, "visual.pre_norm.weight", "pre_layrnorm.weight", W);
    ADD(&w->pre_b, CLIP_P_BIAS, "visual.pre_norm.bias", "pre_layrnorm.bias", W);
    for (int i = 0; i < w->cfg.layers_used; i++) add_block(w, i);
}

static int weights_alloc(const clip_config *c, clip_weights **out, char *err, size_t errlen) {
    *out = NULL;
    int rc = check_config(c, err, errlen);
    if (rc) return rc;
    clip_weights *w = calloc(1, sizeof *w);
    if (!w) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory (CLIP weights)");
    w->cfg = *c;
    w->blocks = calloc((size_t)c->layers_used, sizeof *w->blocks);
    w->params = calloc(CLIP_PARAMS_OUTSIDE + (size_t)CLIP_PARAMS_PER_BLOCK * (size_t)c->layers_used,
                       sizeof *w->params);
    if (!w->blocks || !w->params) {
        clip_weights_free(w);
        return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory (CLIP parameter table)");
    }
    build_table(w);
    size_t total = 0;
    for (int i = 0; i < w->nparams; i++) total += (size_t)w->params[i].numel;
    w->arena = malloc(total * sizeof(float));
    if (!w->arena) {
        clip_weights_free(w);
        return eng_errorf(err, errlen, ENG_ENOMEM,
                          "cannot allocate %.2f GB for %zu CLIP parameters", (double)total * 4e-9,
                          total);
    }
    float *cursor = w->arena;
    for (int i = 0; i < w->nparams; i++) {
        *w->params[i].slot = cursor;
        cursor += w->params[i].numel;
    }
    *out = w;
    return 0;
}

void clip_weights_free(clip_weights *w) {
    if (!w) return;
    free(w->arena);
    free(w->blocks);
    free(w->params);
    free(w);
}

const clip_config *clip_weights_config(const clip_weights *w) {
    return w ? &w->cfg : NULL;
}

const float *clip_weights_tensor(const clip_weights *w, const char *name, size_t *numel) {
    for (int i = 0; w && name && i < w->nparams; i++)
        if (strcmp(w->params[i].name, name) == 0) {
            if (numel) *numel = (size_t)w->params[i].numel;
            return *w->params[i].slot;
        }
    return NULL;
}

/* ---- synthetic weights ----------------------------------------------------------------------- */

int clip_weights_synthetic(const clip_config *c, uint64_t seed, clip_weights **out, char *err,
                           size_t errlen) {
    if (!c || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "clip_weights_synthetic: NULL argument");
    int rc = weights_alloc(c, out, err, errlen);
    if (rc) return rc;
    clip_weights *w = *out;
    for (int i = 0; i < w->nparams; i++) {
        const clip_param *p = &w->params[i];
        float scale = 0.0f, offset = 0.0f;
        switch (p->kind) {
        case CLIP_P_LINEAR:
            scale = (float)(1.0 / sqrt((double)(p->numel / p->shape[0])));
            break;
        case CLIP_P_BIAS:
            scale = 0.05f;
            break;
        case CLIP_P_GAIN:
            scale = 0.1f, offset = 1.0f;
            break;
        case CLIP_P_EMBED:
            scale = 0.5f;
            break;
        }
        /* "clip." keeps these streams apart from a DiT tensor that happens to share a name. */
        char sname[CLIP_NAME_LEN + 8];
        snprintf(sname, sizeof sname, "clip.%s", p->name);
        eng_uniform_fill(*p->slot, (size_t)p->numel, scale, offset, seed, wm_fnv1a32(sname),
                         ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS);
    }
    return 0;
}

/* ---- loading --------------------------------------------------------------------------------- */

typedef enum { CLIP_NAMES_OFFICIAL, CLIP_NAMES_HF } clip_names;

typedef struct load_ctx {
    ts_source *src;
    const char *path;
    const clip_config *cfg;
    clip_names names;
    const char *hf_prefix; /* "vision_model." or "" */
    unsigned char *used;   /* per file tensor: claimed by a parameter */
    char *err;
    size_t errlen;
} load_ctx;

static int starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Block index of "<prefix><i>.<rest>", or -1 if `name` does not have that form. */
static long block_index(const char *name, const char *prefix) {
    if (!starts_with(name, prefix)) return -1;
    const char *p = name + strlen(prefix);
    char *end;
    if (*p < '0' || *p > '9') return -1;
    long i = strtol(p, &end, 10);
    return *end == '.' && i < 100000 ? i : -1;
}

/* The file's naming, from the first key that belongs to a vision tower: official ("visual."),
 * HF with the transformers-4 prefix ("vision_model."), or HF without it (transformers 5). */
static int detect_names(load_ctx *l) {
    size_t n = ts_count(l->src);
    int official = 0, hf_prefixed = 0, hf_bare = 0;
    for (size_t i = 0; i < n; i++) {
        ts_info t;
        if (ts_info_at(l->src, i, &t)) continue;
        official |= starts_with(t.name, "visual.");
        hf_prefixed |= starts_with(t.name, "vision_model.");
        hf_bare |= starts_with(t.name, "embeddings.") || starts_with(t.name, "encoder.layers.") ||
                   starts_with(t.name, "pre_layrnorm.");
    }
    if (official)
        l->names = CLIP_NAMES_OFFICIAL, l->hf_prefix = "";
    else if (hf_prefixed || hf_bare)
        l->names = CLIP_NAMES_HF, l->hf_prefix = hf_prefixed ? "vision_model." : "";
    else
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: no CLIP vision tensors (expected official 'visual.*' keys or HF "
                          "CLIPVisionModel keys, with or without 'vision_model.')",
                          l->path);
    return 0;
}

/* Tensors the file may hold that the encoder never uses (5.6): the text tower, the logit scale,
 * the final norm and projection, HF's position_ids buffer, and blocks past the ones that run. */
static int skippable(const load_ctx *l, const char *name) {
    long blk;
    if (l->names == CLIP_NAMES_OFFICIAL) {
        if (!strcmp(name, "log_scale") || starts_with(name, "textual.") ||
            starts_with(name, "visual.post_norm.") || !strcmp(name, "visual.head"))
            return 1;
        blk = block_index(name, "visual.transformer.");
    } else {
        if (!strcmp(name, "visual_projection.weight")) return 1;
        if (!starts_with(name, l->hf_prefix)) return 0;
        const char *rest = name + strlen(l->hf_prefix);
        if (starts_with(rest, "post_layernorm.") || !strcmp(rest, "embeddings.position_ids"))
            return 1;
        blk = block_index(rest, "encoder.layers.");
    }
    return blk >= l->cfg->layers_used && blk < l->cfg->layers;
}

static void key_of(const load_ctx *l, const clip_param *p, int part, char *dst, size_t len) {
    if (l->names == CLIP_NAMES_OFFICIAL)
        snprintf(dst, len, "%s", p->name);
    else
        snprintf(dst, len, "%s%s", l->hf_prefix, p->hf[part]);
}

/* Equal after dropping size-1 dimensions: the same row-major data, e.g. a class embedding saved
 * as [1, 1, W] or [W]. */
static int shapes_equivalent(const int64_t *a, int na, const int64_t *b, int nb) {
    int i = 0, j = 0;
    for (;;) {
        while (i < na && a[i] == 1) i++;
        while (j < nb && b[j] == 1) j++;
        if (i == na || j == nb) return i == na && j == nb;
        if (a[i++] != b[j++]) return 0;
    }
}

static void format_shape(char *dst, size_t len, const int64_t *shape, int ndim) {
    size_t o = (size_t)snprintf(dst, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(dst + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(dst + o, len - o, "]");
}

static int check_part(load_ctx *l, const clip_param *p, int part) {
    char key[CLIP_NAME_LEN + 16];
    key_of(l, p, part, key, sizeof key);
    long idx = ts_find(l->src, key);
    if (idx < 0)
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: missing tensor '%s'", l->path, key);
    ts_info t;
    if (ts_info_at(l->src, (size_t)idx, &t))
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: cannot read tensor '%s'", l->path,
                          key);
    if (strcmp(t.dtype, "F32") && strcmp(t.dtype, "F16") && strcmp(t.dtype, "BF16"))
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", l->path, key,
                          t.dtype);
    const int64_t *want = l->names == CLIP_NAMES_OFFICIAL ? p->shape : p->hf_shape;
    const int wn = l->names == CLIP_NAMES_OFFICIAL ? p->ndim : p->hf_ndim;
    if (!shapes_equivalent(want, wn, t.shape, t.ndim)) {
        char ws[96], gs[96];
        format_shape(ws, sizeof ws, want, wn);
        format_shape(gs, sizeof gs, t.shape, t.ndim);
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: tensor '%s' has shape %s; the CLIP '%s' config expects %s", l->path,
                          key, gs, l->cfg->size_name, ws);
    }
    l->used[idx] = 1;
    return 0;
}

static int check_unexpected(const load_ctx *l) {
    size_t n = ts_count(l->src);
    for (size_t i = 0; i < n; i++) {
        ts_info t;
        if (ts_info_at(l->src, i, &t))
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: cannot read tensor %zu",
                              l->path, i);
        if (l->used[i] || skippable(l, t.name)) continue;
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: unexpected tensor '%s' (not a CLIP vision key under %s names)",
                          l->path, t.name,
                          l->names == CLIP_NAMES_OFFICIAL ? "official"
                          : *l->hf_prefix                 ? "HF 'vision_model.'"
                                                          : "HF unprefixed");
    }
    return 0;
}

/* Official files hold each parameter whole; HF files split to_qkv into q, k and v. */
static int parts_of(const load_ctx *l, const clip_param *p) {
    return l->names == CLIP_NAMES_HF ? p->nhf : 1;
}

static int read_part(load_ctx *l, const clip_param *p, int part) {
    char key[CLIP_NAME_LEN + 16];
    key_of(l, p, part, key, sizeof key);
    const size_t n = (size_t)(p->numel / parts_of(l, p));
    float *dst = *p->slot + (size_t)part * n;
    int rc = ts_read_f32(l->src, (size_t)ts_find(l->src, key), dst, n, l->err, l->errlen);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: tensor '%s' has a non-finite value (%g) at flat index %zu",
                              l->path, key, (double)dst[i], i);
    return 0;
}

/* Pass 1 checks presence, dtype and shape of every part and rejects unexpected tensors, so a bad
 * file fails before gigabytes are converted; pass 2 reads. */
static int load_all(load_ctx *l, const clip_weights *w) {
    int rc = detect_names(l);
    for (int i = 0; i < w->nparams && !rc; i++)
        for (int k = 0; k < parts_of(l, &w->params[i]) && !rc; k++)
            rc = check_part(l, &w->params[i], k);
    if (!rc) rc = check_unexpected(l);
    for (int i = 0; i < w->nparams && !rc; i++)
        for (int k = 0; k < parts_of(l, &w->params[i]) && !rc; k++)
            rc = read_part(l, &w->params[i], k);
    return rc;
}

int clip_weights_load(const clip_config *c, const char *path, clip_weights **out, char *err,
                      size_t errlen) {
    if (!c || !path || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "clip_weights_load: NULL argument");
    *out = NULL;
    clip_weights *w = NULL;
    int rc = weights_alloc(c, &w, err, errlen);
    if (rc) return rc;
    load_ctx l = {0};
    l.path = path, l.cfg = &w->cfg, l.err = err, l.errlen = errlen;
    rc = ts_open(path, &l.src, err, errlen);
    if (!rc) {
        l.used = calloc(ts_count(l.src) + 1, 1);
        rc = l.used ? load_all(&l, w) : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    }
    free(l.used);
    ts_close(l.src);
    if (rc) {
        clip_weights_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* ---- preprocessing --------------------------------------------------------------------------- */

/* float -> bf16 -> float with round-to-nearest-even (the constants are finite, so no NaN case). */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

/* torchvision's Normalize builds mean/std in the tensor's dtype, and the reference normalises a
 * bf16 tensor (5.2 step 4), so the constants are the bf16 roundings of the OpenAI values:
 *   mean 0.48145466 -> 0.482421875 (0x3EF7), 0.4578275  -> 0.45703125  (0x3EEA),
 *        0.40821073 -> 0.408203125 (0x3ED1)
 *   std  0.26862954 -> 0.26953125  (0x3E8A), 0.26130258 -> 0.26171875  (0x3E86),
 *        0.27577711 -> 0.275390625 (0x3E8D) */
static void normalize_constants(float mean[3], float std[3]) {
    static const float m[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float s[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (int i = 0; i < 3; i++) mean[i] = bf16_round(m[i]), std[i] = bf16_round(s[i]);
}

/* PyTorch's cubic convolution weights (A = -0.75) for |d| <= 1 and 1 < |d| < 2, in its own
 * arithmetic order. */
static float cubic_near(float x, float A) {
    return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
}
static float cubic_far(float x, float A) {
    return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

typedef struct cubic_taps {
    int idx[4]; /* source indices i0-1 .. i0+2, clamped to [0, in-1] */
    float w[4]; /* weights at distances t+1, t, 1-t, 2-t */
} cubic_taps;

/* align_corners=False source coordinate, computed in float like PyTorch (accscalar_t is float for
 * bf16/float inputs); for cubic the negative coordinates are not clamped to 0, only the taps. */
static cubic_taps cubic_taps_at(int dst, int in, int out) {
    const float A = -0.75f;
    const float scale = (float)in / (float)out;
    const float s = scale * ((float)dst + 0.5f) - 0.5f;
    const float f = floorf(s);
    const float t = s - f;
    cubic_taps c;
    for (int k = 0; k < 4; k++) {
        int i = (int)f - 1 + k;
        c.idx[k] = i < 0 ? 0 : i > in - 1 ? in - 1 : i;
    }
    c.w[0] = cubic_far(t + 1.0f, A);
    c.w[1] = cubic_near(t, A);
    c.w[2] = cubic_near(1.0f - t, A);
    c.w[3] = cubic_far(2.0f - t, A);
    return c;
}

static float cubic_mix(const float v[4], const float w[4]) {
    return v[0] * w[0] + v[1] * w[1] + v[2] * w[2] + v[3] * w[3];
}

/* The reference resizes a bf16 tensor (fp32 inside, result rounded to bf16) and then runs
 * x*0.5+0.5 and Normalize in bf16. This fp32 reference keeps every step in fp32 and only takes
 * the bf16-rounded Normalize constants, which are part of the function, not of the precision.
 * Per output pixel: 4 horizontal interpolations on the 4 source rows, then one vertical, the order
 * of PyTorch's bicubic kernel. No allocation, so it cannot fail. */
void clip_preprocess(const clip_config *c, const float *image, int height, int width, float *out) {
    const int S = c->image_size;
    float mean[3], std[3];
    normalize_constants(mean, std);
    for (int ch = 0; ch < 3; ch++) {
        const float *src = image + (size_t)ch * (size_t)height * (size_t)width;
        float *dst = out + (size_t)ch * (size_t)S * (size_t)S;
#pragma omp parallel for schedule(static)
        for (int oy = 0; oy < S; oy++) {
            const cubic_taps ty = cubic_taps_at(oy, height, S);
            for (int ox = 0; ox < S; ox++) {
                const cubic_taps tx = cubic_taps_at(ox, width, S);
                float col[4];
                for (int k = 0; k < 4; k++) {
                    const float *row = src + (size_t)ty.idx[k] * (size_t)width;
                    const float v[4] = {row[tx.idx[0]], row[tx.idx[1]], row[tx.idx[2]],
                                        row[tx.idx[3]]};
                    col[k] = cubic_mix(v, tx.w);
                }
                const float x = cubic_mix(col, ty.w) * 0.5f + 0.5f;
                dst[(size_t)oy * (size_t)S + (size_t)ox] = (x - mean[ch]) / std[ch];
            }
        }
    }
}

/* ---- forward --------------------------------------------------------------------------------- */

typedef struct clip_scratch {
    float *pix;     /* [3][S][S] preprocessed image */
    float *patches; /* [P][3*p*p] im2col rows, channel-major like the conv weight */
    float *h;       /* [T][W] normed activations */
    float *qkv;     /* [T][3W] */
    float *att;     /* [T][W] attention output */
    float *mlp;     /* [T][mlp] */
    float *scores;  /* [T][T] */
    float *block;   /* the single allocation all of the above live in */
} clip_scratch;

static int scratch_alloc(const clip_config *c, clip_scratch *s) {
    const size_t S = (size_t)c->image_size, p = (size_t)c->patch, T = (size_t)clip_tokens(c);
    const size_t W = (size_t)c->width, M = (size_t)c->mlp, P = T - 1;
    const size_t n[7] = {3 * S * S, P * 3 * p * p, T * W, T * 3 * W, T * W, T * M, T * T};
    size_t total = 0;
    for (int i = 0; i < 7; i++) total += n[i];
    s->block = malloc(total * sizeof(float));
    if (!s->block) return -1;
    float **dst[7] = {&s->pix, &s->patches, &s->h, &s->qkv, &s->att, &s->mlp, &s->scores};
    float *cursor = s->block;
    for (int i = 0; i < 7; i++) *dst[i] = cursor, cursor += n[i];
    return 0;
}

/* Patch conv (kernel = stride = patch, no bias) as one GEMM over im2col rows; patches in row-major
 * grid order go to token rows 1..P, the class token to row 0, then positions are added. */
static void embed(const clip_weights *w, clip_scratch *s, float *x) {
    const int S = w->cfg.image_size, p = w->cfg.patch, g = S / p, W = w->cfg.width;
    const int K = 3 * p * p, T = clip_tokens(&w->cfg);
#pragma omp parallel for schedule(static)
    for (int q = 0; q < g * g; q++) {
        float *row = s->patches + (size_t)q * (size_t)K;
        const int y0 = (q / g) * p, x0 = (q % g) * p;
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < p; ky++)
                memcpy(row + (ch * p + ky) * p,
                       s->pix + ((size_t)ch * (size_t)S + (size_t)(y0 + ky)) * (size_t)S +
                           (size_t)x0,
                       (size_t)p * sizeof(float));
    }
    cpu_linear(s->patches, K, g * g, K, w->patch_w, NULL, W, x + W, W);
    memcpy(x, w->cls, (size_t)W * sizeof(float));
    for (size_t i = 0; i < (size_t)T * (size_t)W; i++) x[i] += w->pos[i];
}

static void add_into(float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* x = x + proj(Attn(LN1(x))); x = x + fc2(GELU_erf(fc1(LN2(x)))). */
static void run_block(const clip_config *c, const clip_block *b, clip_scratch *s, float *x) {
    const int T = clip_tokens(c), W = c->width, M = c->mlp;
    const size_t TW = (size_t)T * (size_t)W;
    cpu_layernorm(x, s->h, T, W, CLIP_LN_EPS, b->ln1_w, b->ln1_b);
    cpu_linear(s->h, W, T, W, b->qkv_w, b->qkv_b, 3 * W, s->qkv, 3 * W);
    /* rows of qkv are [q | k | v], each heads x dh; cpu_attention scales by 1/sqrt(dh). */
    const cpu_attn_args a = {.q = s->qkv,
                             .k = s->qkv + W,
                             .v = s->qkv + 2 * W,
                             .o = s->att,
                             .ldq = 3 * W,
                             .ldk = 3 * W,
                             .ldv = 3 * W,
                             .ldo = W,
                             .lq = T,
                             .lk = T,
                             .heads = c->heads,
                             .dh = W / c->heads,
                             .mask = NULL,
                             .frames_q = 1,
                             .frames_k = 1,
                             .rows_per_frame_q = T,
                             .rows_per_frame_k = T};
    cpu_attention(&a, s->scores);
    cpu_linear(s->att, W, T, W, b->proj_w, b->proj_b, W, s->h, W);
    add_into(x, s->h, TW);
    cpu_layernorm(x, s->h, T, W, CLIP_LN_EPS, b->ln2_w, b->ln2_b);
    cpu_linear(s->h, W, T, W, b->fc1_w, b->fc1_b, M, s->mlp, M);
    cpu_apply_gelu_erf(s->mlp, (size_t)T * (size_t)M);
    cpu_linear(s->mlp, M, T, M, b->fc2_w, b->fc2_b, W, s->h, W);
    add_into(x, s->h, TW);
}

int clip_encode(const clip_weights *w, const float *image, int height, int width, float *tokens,
                char *err, size_t errlen) {
    if (!w || !image || !tokens)
        return eng_errorf(err, errlen, ENG_EINVAL, "clip_encode: NULL argument");
    if (height < 1 || width < 1 || height > 16384 || width > 16384)
        return eng_errorf(err, errlen, ENG_EINVAL, "clip_encode: image size %dx%d invalid", height,
                          width);
    /* Once per session start, so the scratch is allocated per call rather than kept. */
    clip_scratch s;
    if (scratch_alloc(&w->cfg, &s))
        return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory (CLIP activations)");
    clip_preprocess(&w->cfg, image, height, width, s.pix);
    embed(w, &s, tokens);
    const int T = clip_tokens(&w->cfg);
    cpu_layernorm(tokens, tokens, T, w->cfg.width, CLIP_LN_EPS, w->pre_w, w->pre_b);
    /* Stop after block layers_used - 1 and skip post_norm: the reference's visual_context (5.4). */
    for (int i = 0; i < w->cfg.layers_used; i++) run_block(&w->cfg, &w->blocks[i], &s, tokens);
    free(s.block);
    return 0;
}
