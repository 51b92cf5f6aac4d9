/* The VAE's configuration presets, its network description and the parameter table driven by it:
 * arena layout, synthetic initialisation, and loading from any engine/tensor_source.h file under
 * the official (`Wan2.1_VAE.pth`) or Diffusers names, with full validation. Every key name and
 * shape is produced in exactly one place (vae_visit) from the layer list of vae_net_build. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/noise.h"
#include "engine/philox.h"
#include "engine/tensor_source.h"
#include "engine/vae/vae_internal.h"

/* ---- config ---------------------------------------------------------------------------------- */

/* model-vae-clip.md 2.7 (also `latents_mean` / `latents_std` of the Diffusers config). */
static const float latent_mean[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f,  -0.1745f, 0.9653f,
                                      -0.1517f, 1.5508f,  0.4134f,  -0.0715f, 0.5517f,  -0.3632f,
                                      -0.1922f, -0.9497f, 0.2503f,  -0.2921f};
static const float latent_std[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f,
                                     2.6052f, 2.0743f, 3.2687f, 2.1526f, 2.8652f, 1.5579f,
                                     1.6382f, 1.1253f, 2.8251f, 1.9160f};

int vae_config_preset(vae_config *out, const char *size, char *err, size_t errlen) {
    if (!out || !size)
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_config_preset: NULL argument");
    int base;
    if (strcmp(size, "full") == 0)
        base = 96;
    else if (strcmp(size, "tiny") == 0)
        base = 8; /* widths 8, 16, 32, 32: every layer kind survives */
    else
        return eng_errorf(err, errlen, ENG_EINVAL, "unknown VAE size '%s' (expected full or tiny)",
                          size);
    memset(out, 0, sizeof *out);
    snprintf(out->size_name, sizeof out->size_name, "%s", size);
    out->base_dim = base;
    out->z_dim = 16;
    const int mult[4] = {1, 2, 4, 4};
    memcpy(out->dim_mult, mult, sizeof mult);
    out->num_res_blocks = 2;
    out->temporal_down[0] = 0, out->temporal_down[1] = 1, out->temporal_down[2] = 1;
    memcpy(out->latent_mean, latent_mean, sizeof latent_mean);
    memcpy(out->latent_std, latent_std, sizeof latent_std);
    return 0;
}

static int check_config(const vae_config *c, char *err, size_t errlen) {
    if (c->z_dim != 16)
        return eng_errorf(err, errlen, ENG_ECONFIG, "VAE z_dim %d: only 16 is supported", c->z_dim);
    if (c->base_dim < 1 || c->num_res_blocks < 1 || c->num_res_blocks > VAE_MAX_RB)
        return eng_errorf(err, errlen, ENG_ECONFIG, "VAE base_dim %d / num_res_blocks %d invalid",
                          c->base_dim, c->num_res_blocks);
    for (int i = 0; i < 4; i++)
        if (c->dim_mult[i] < 1 || (c->base_dim * c->dim_mult[i]) % 2)
            return eng_errorf(err, errlen, ENG_ECONFIG,
                              "VAE dim_mult[%d] = %d invalid (widths must be even and positive)", i,
                              c->dim_mult[i]);
    for (int i = 0; i < 16; i++)
        if (!(c->latent_std[i] > 0.0f))
            return eng_errorf(err, errlen, ENG_ECONFIG, "VAE latent_std[%d] = %g is not positive",
                              i, (double)c->latent_std[i]);
    return 0;
}

/* ---- network description --------------------------------------------------------------------- */

static vae_item *add_item(vae_net *n, vae_item_kind kind, int cin, int cout, const char *oname,
                          const char *dname) {
    vae_item *it = &n->items[n->nitems++];
    memset(it, 0, sizeof *it);
    it->kind = kind, it->cin = cin, it->cout = cout;
    snprintf(it->oname, sizeof it->oname, "%s", oname);
    snprintf(it->dname, sizeof it->dname, "%s", dname);
    return it;
}

static void add_middle(vae_net *n, const char *half, int C) {
    char o[48], d[64];
    snprintf(o, sizeof o, "%s.middle.0.", half);
    snprintf(d, sizeof d, "%s.mid_block.resnets.0.", half);
    add_item(n, VAE_ITEM_RB, C, C, o, d);
    snprintf(o, sizeof o, "%s.middle.1.", half);
    snprintf(d, sizeof d, "%s.mid_block.attentions.0.", half);
    add_item(n, VAE_ITEM_ATTN, C, C, o, d);
    snprintf(o, sizeof o, "%s.middle.2.", half);
    snprintf(d, sizeof d, "%s.mid_block.resnets.1.", half);
    add_item(n, VAE_ITEM_RB, C, C, o, d);
}

/* Encoder of wan/modules/vae.py: dims [b, b*m0, .., b*m3]; per stage num_res_blocks RBs, then a
 * downsample (3d where temporal_down) except after the last stage; flat index i in
 * "encoder.downsamples.i" / "encoder.down_blocks.i". */
static void build_encoder(const vae_config *c, vae_net *n) {
    int dims[5] = {c->base_dim};
    for (int i = 0; i < 4; i++) dims[i + 1] = c->base_dim * c->dim_mult[i];
    memset(n, 0, sizeof *n);
    n->in_ch = 3, n->in_dim = dims[0];
    int idx = 0, cur = dims[0];
    char o[48], d[64];
    for (int s = 0; s < 4; s++) {
        for (int r = 0; r < c->num_res_blocks; r++, idx++) {
            snprintf(o, sizeof o, "encoder.downsamples.%d.", idx);
            snprintf(d, sizeof d, "encoder.down_blocks.%d.", idx);
            add_item(n, VAE_ITEM_RB, cur, dims[s + 1], o, d);
            cur = dims[s + 1];
        }
        if (s == 3) break;
        snprintf(o, sizeof o, "encoder.downsamples.%d.", idx);
        snprintf(d, sizeof d, "encoder.down_blocks.%d.", idx++);
        add_item(n, c->temporal_down[s] ? VAE_ITEM_DOWN3D : VAE_ITEM_DOWN2D, cur, cur, o, d);
    }
    add_middle(n, "encoder", cur);
    n->head_ch = cur, n->out_ch = 2 * c->z_dim;
}

/* Decoder: dims [b*m3, b*m3, b*m2, b*m1, b*m0]; middle first; per stage num_res_blocks + 1 RBs
 * then an upsample (3d where the reversed temporal_down says so, halving the width) except after
 * the last stage. Official index "decoder.upsamples.i" is flat; Diffusers splits it into
 * up_blocks.s.resnets.j / up_blocks.s.upsamplers.0. */
static void build_decoder(const vae_config *c, vae_net *n) {
    int dims[5] = {c->base_dim * c->dim_mult[3]};
    for (int i = 0; i < 4; i++) dims[i + 1] = c->base_dim * c->dim_mult[3 - i];
    memset(n, 0, sizeof *n);
    n->in_ch = c->z_dim, n->in_dim = dims[0];
    add_middle(n, "decoder", dims[0]);
    int idx = 0, cur = dims[0];
    char o[48], d[64];
    for (int s = 0; s < 4; s++) {
        for (int r = 0; r <= c->num_res_blocks; r++, idx++) {
            snprintf(o, sizeof o, "decoder.upsamples.%d.", idx);
            snprintf(d, sizeof d, "decoder.up_blocks.%d.resnets.%d.", s, r);
            add_item(n, VAE_ITEM_RB, cur, dims[s + 1], o, d);
            cur = dims[s + 1];
        }
        if (s == 3) break;
        snprintf(o, sizeof o, "decoder.upsamples.%d.", idx++);
        snprintf(d, sizeof d, "decoder.up_blocks.%d.upsamplers.0.", s);
        add_item(n, c->temporal_down[2 - s] ? VAE_ITEM_UP3D : VAE_ITEM_UP2D, cur, cur / 2, o, d);
        cur /= 2;
    }
    n->head_ch = cur, n->out_ch = 3;
}

int vae_net_build(const vae_config *c, vae_net *enc, vae_net *dec, char *err, size_t errlen) {
    int rc = check_config(c, err, errlen);
    if (rc) return rc;
    build_encoder(c, enc);
    build_decoder(c, dec);
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------- */

typedef struct visit_ctx {
    vae_param_fn fn;
    void *user;
    int part, rc;
} visit_ctx;

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...)  ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* One tensor "<oprefix><osuffix>" / "<dprefix><dsuffix>". */
#define T(slot, kind, op, os, dp, ds, ...)                                                         \
    emit(v, slot, kind, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), op, os, dp, ds)

static void emit(visit_ctx *v, float **slot, vae_param_kind kind, int ndim, const int64_t *shape,
                 const char *op, const char *os, const char *dp, const char *ds) {
    if (v->rc) return;
    vae_param p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s%s", op, os);
    snprintf(p.dname, sizeof p.dname, "%s%s", dp, ds);
    p.part = v->part, p.kind = kind, p.ndim = ndim, p.numel = 1, p.taps = 1;
    for (int i = 0; i < ndim; i++) {
        p.shape[i] = shape[i], p.numel *= shape[i];
        if (kind == VAE_P_CONV && i >= 2) p.taps *= (int)shape[i];
    }
    p.slot = slot;
    v->rc = v->fn(v->user, &p);
}

static void visit_rb(visit_ctx *v, vae_item *it) {
    const int64_t ci = it->cin, co = it->cout;
    const char *o = it->oname, *d = it->dname;
    T(&it->g1, VAE_P_GAIN, o, "residual.0.gamma", d, "norm1.gamma", ci, 1, 1, 1);
    T(&it->w1, VAE_P_CONV, o, "residual.2.weight", d, "conv1.weight", co, ci, 3, 3, 3);
    T(&it->b1, VAE_P_BIAS, o, "residual.2.bias", d, "conv1.bias", co);
    T(&it->g2, VAE_P_GAIN, o, "residual.3.gamma", d, "norm2.gamma", co, 1, 1, 1);
    T(&it->w2, VAE_P_CONV, o, "residual.6.weight", d, "conv2.weight", co, co, 3, 3, 3);
    T(&it->b2, VAE_P_BIAS, o, "residual.6.bias", d, "conv2.bias", co);
    if (ci == co) return;
    T(&it->sc_w, VAE_P_CONV, o, "shortcut.weight", d, "conv_shortcut.weight", co, ci, 1, 1, 1);
    T(&it->sc_b, VAE_P_BIAS, o, "shortcut.bias", d, "conv_shortcut.bias", co);
}

static void visit_item(visit_ctx *v, vae_item *it) {
    const int64_t c = it->cin;
    const char *o = it->oname, *d = it->dname;
    switch (it->kind) {
    case VAE_ITEM_RB:
        visit_rb(v, it);
        break;
    case VAE_ITEM_ATTN:
        T(&it->g, VAE_P_GAIN, o, "norm.gamma", d, "norm.gamma", c, 1, 1);
        T(&it->qkv_w, VAE_P_CONV, o, "to_qkv.weight", d, "to_qkv.weight", 3 * c, c, 1, 1);
        T(&it->qkv_b, VAE_P_BIAS, o, "to_qkv.bias", d, "to_qkv.bias", 3 * c);
        T(&it->proj_w, VAE_P_CONV, o, "proj.weight", d, "proj.weight", c, c, 1, 1);
        T(&it->proj_b, VAE_P_BIAS, o, "proj.bias", d, "proj.bias", c);
        break;
    case VAE_ITEM_UP2D:
    case VAE_ITEM_UP3D:
    case VAE_ITEM_DOWN2D:
    case VAE_ITEM_DOWN3D: {
        const int64_t co = it->cout;
        T(&it->rs_w, VAE_P_CONV, o, "resample.1.weight", d, "resample.1.weight", co, c, 3, 3);
        T(&it->rs_b, VAE_P_BIAS, o, "resample.1.bias", d, "resample.1.bias", co);
        const int64_t tco = it->kind == VAE_ITEM_UP3D ? 2 * c : c;
        if (it->kind == VAE_ITEM_UP3D || it->kind == VAE_ITEM_DOWN3D) {
            T(&it->tc_w, VAE_P_CONV, o, "time_conv.weight", d, "time_conv.weight", tco, c, 3, 1, 1);
            T(&it->tc_b, VAE_P_BIAS, o, "time_conv.bias", d, "time_conv.bias", tco);
        }
        break;
    }
    }
}

static void visit_net(visit_ctx *v, vae_net *n, const char *half) {
    char o[32], d[32];
    snprintf(o, sizeof o, "%s.", half), snprintf(d, sizeof d, "%s.", half);
    T(&n->in_w, VAE_P_CONV, o, "conv1.weight", d, "conv_in.weight", n->in_dim, n->in_ch, 3, 3, 3);
    T(&n->in_b, VAE_P_BIAS, o, "conv1.bias", d, "conv_in.bias", n->in_dim);
    for (int i = 0; i < n->nitems; i++) visit_item(v, &n->items[i]);
    T(&n->head_g, VAE_P_GAIN, o, "head.0.gamma", d, "norm_out.gamma", n->head_ch, 1, 1, 1);
    T(&n->head_w, VAE_P_CONV, o, "head.2.weight", d, "conv_out.weight", n->out_ch, n->head_ch, 3, 3,
      3);
    T(&n->head_b, VAE_P_BIAS, o, "head.2.bias", d, "conv_out.bias", n->out_ch);
}

/* The encoder's items come first in execution order but the middle block sits after them; the
 * decoder's middle comes first. Both visit in execution order, which is also Appendix A's. */
int vae_visit(vae_weights *w, vae_param_fn fn, void *user) {
    const int64_t z2 = 2 * w->cfg.z_dim, z = w->cfg.z_dim;
    visit_ctx vc = {fn, user, VAE_PART_ENCODER, 0}, *v = &vc;
    visit_net(v, &w->enc, "encoder");
    T(&w->quant_w, VAE_P_CONV, "", "conv1.weight", "", "quant_conv.weight", z2, z2, 1, 1, 1);
    T(&w->quant_b, VAE_P_BIAS, "", "conv1.bias", "", "quant_conv.bias", z2);
    vc.part = VAE_PART_DECODER;
    T(&w->post_w, VAE_P_CONV, "", "conv2.weight", "", "post_quant_conv.weight", z, z, 1, 1, 1);
    T(&w->post_b, VAE_P_BIAS, "", "conv2.bias", "", "post_quant_conv.bias", z);
    visit_net(v, &w->dec, "decoder");
    return vc.rc;
}

typedef struct count_ctx {
    int parts, tensors;
    int64_t params;
    size_t max_numel;
} count_ctx;

static int count_visitor(void *user, const vae_param *p) {
    count_ctx *c = user;
    if (!(p->part & c->parts)) return 0;
    c->tensors++;
    c->params += p->numel;
    if ((size_t)p->numel > c->max_numel) c->max_numel = (size_t)p->numel;
    return 0;
}

int vae_count(const vae_config *c, int parts, int64_t *params) {
    vae_weights *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->cfg = *c;
    count_ctx cc = {parts, 0, 0, 0};
    int rc = vae_net_build(c, &w->enc, &w->dec, NULL, 0);
    if (!rc) vae_visit(w, count_visitor, &cc);
    free(w);
    if (params) *params = rc ? -1 : cc.params;
    return rc ? -1 : cc.tensors;
}

/* ---- arena ----------------------------------------------------------------------------------- */

typedef struct place_ctx {
    int parts;
    float *cursor;
} place_ctx;

static int place_visitor(void *user, const vae_param *p) {
    place_ctx *pc = user;
    if (!(p->part & pc->parts)) {
        *p->slot = NULL;
        return 0;
    }
    *p->slot = pc->cursor;
    pc->cursor += p->numel;
    return 0;
}

/* A vae_weights with its arena laid out for `parts` (contents undefined). */
static int weights_alloc(const vae_config *c, int parts, vae_weights **out, size_t *max_numel,
                         char *err, size_t errlen) {
    *out = NULL;
    if (parts < 1 || parts > (VAE_PART_DECODER | VAE_PART_ENCODER))
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE parts %d invalid", parts);
    vae_weights *w = calloc(1, sizeof *w);
    if (!w) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    w->cfg = *c, w->parts = parts;
    int rc = vae_net_build(c, &w->enc, &w->dec, err, errlen);
    if (rc) {
        free(w);
        return rc;
    }
    count_ctx cc = {parts, 0, 0, 0};
    vae_visit(w, count_visitor, &cc);
    w->arena = malloc((size_t)cc.params * sizeof(float));
    if (!w->arena) {
        free(w);
        return eng_errorf(err, errlen, ENG_ENOMEM,
                          "cannot allocate %.2f GB for %lld VAE parameters",
                          (double)cc.params * 4e-9, (long long)cc.params);
    }
    w->arena_floats = (size_t)cc.params;
    place_ctx pc = {parts, w->arena};
    vae_visit(w, place_visitor, &pc);
    *max_numel = cc.max_numel;
    *out = w;
    return 0;
}

void vae_weights_free(vae_weights *w) {
    if (!w) return;
    free(w->arena);
    free(w);
}

const vae_config *vae_weights_config(const vae_weights *w) {
    return &w->cfg;
}

void vae_pack_taps(const float *src, int cout, int cin, int taps, float *dst) {
    for (size_t o = 0; o < (size_t)cout; o++)
        for (size_t i = 0; i < (size_t)cin; i++)
            for (size_t t = 0; t < (size_t)taps; t++)
                dst[(o * (size_t)taps + t) * (size_t)cin + i] =
                    src[(o * (size_t)cin + i) * (size_t)taps + t];
}

/* Stores an official-layout tensor into its slot ([Cout][taps][Cin] for multi-tap convs). */
static void store_param(const vae_param *p, const float *src) {
    if (p->taps > 1)
        vae_pack_taps(src, (int)p->shape[0], (int)p->shape[1], p->taps, *p->slot);
    else if (src != *p->slot)
        memcpy(*p->slot, src, (size_t)p->numel * sizeof(float));
}

void vae_param_read(const vae_param *p, float *dst) {
    const float *s = *p->slot;
    if (p->taps <= 1) {
        memcpy(dst, s, (size_t)p->numel * sizeof(float));
        return;
    }
    const size_t co = (size_t)p->shape[0], ci = (size_t)p->shape[1], taps = (size_t)p->taps;
    for (size_t o = 0; o < co; o++)
        for (size_t t = 0; t < taps; t++)
            for (size_t i = 0; i < ci; i++)
                dst[(o * ci + i) * taps + t] = s[(o * taps + t) * ci + i];
}

/* ---- synthetic ------------------------------------------------------------------------------- */

typedef struct synth_ctx {
    uint64_t seed;
    float *tmp; /* official-layout staging for multi-tap convs */
} synth_ctx;

/* Streams keyed by "vae." + official name, so the VAE's tensors never share a stream with the
 * DiT's. Conv weights U(-1,1)/sqrt(fan_in), gains 1 + 0.1u, biases 0.05u: O(1) activations. */
static int synth_visitor(void *user, const vae_param *p) {
    const synth_ctx *s = user;
    if (!*p->slot) return 0;
    float scale = 0.05f, offset = 0.0f;
    if (p->kind == VAE_P_CONV) scale = (float)(1.0 / sqrt((double)(p->numel / p->shape[0])));
    if (p->kind == VAE_P_GAIN) scale = 0.1f, offset = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "vae.%s", p->name);
    float *dst = p->taps > 1 ? s->tmp : *p->slot;
    eng_uniform_fill(dst, (size_t)p->numel, scale, offset, s->seed, wm_fnv1a32(key),
                     ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS);
    store_param(p, dst);
    return 0;
}

int vae_weights_synthetic(const vae_config *c, uint64_t seed, vae_weights **out, char *err,
                          size_t errlen) {
    if (!c || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_weights_synthetic: NULL argument");
    size_t max_numel = 0;
    int rc = weights_alloc(c, VAE_PART_DECODER | VAE_PART_ENCODER, out, &max_numel, err, errlen);
    if (rc) return rc;
    synth_ctx s = {seed, malloc(max_numel * sizeof(float))};
    if (!s.tmp) {
        vae_weights_free(*out);
        *out = NULL;
        return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    }
    vae_visit(*out, synth_visitor, &s);
    free(s.tmp);
    return 0;
}

/* ---- loading --------------------------------------------------------------------------------- */

typedef struct load_ctx {
    ts_source *src;
    const char *path;
    int parts, diffusers;
    int check_only;      /* pass 1 validates everything before pass 2 converts */
    unsigned char *used; /* per file tensor: claimed by a parameter of either part */
    float *tmp;
    char *err;
    size_t errlen;
} load_ctx;

/* Conv weights and biases must match exactly ([C,C,3,1,1] and [C,C,1,3,1] hold the same count but
 * mean different kernels). Gains may drop size-1 dimensions: [C] and [C,1,1,1] are the same data.
 */
static int shapes_equivalent(const vae_param *p, const ts_info *t) {
    int64_t a[8], b[8];
    int na = 0, nb = 0;
    if (p->kind != VAE_P_GAIN) {
        if (t->ndim != p->ndim) return 0;
        for (int i = 0; i < p->ndim; i++)
            if (t->shape[i] != p->shape[i]) return 0;
        return 1;
    }
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] != 1) a[na++] = p->shape[i];
    for (int i = 0; i < t->ndim && i < TS_MAX_DIMS; i++)
        if (t->shape[i] != 1) b[nb++] = t->shape[i];
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void format_shape(char *dst, size_t len, const int64_t *shape, int ndim) {
    size_t o = (size_t)snprintf(dst, len, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(dst + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(dst + o, len - o, "]");
}

static int check_tensor(load_ctx *l, const vae_param *p, const char *key, long idx) {
    ts_info t;
    int rc = ts_info_at(l->src, (size_t)idx, &t);
    if (rc)
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: cannot read tensor '%s'", l->path,
                          key);
    if (strcmp(t.dtype, "F32") && strcmp(t.dtype, "F16") && strcmp(t.dtype, "BF16"))
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", l->path, key,
                          t.dtype);
    if (!shapes_equivalent(p, &t) || t.numel != p->numel) {
        char want[96], got[96];
        format_shape(want, sizeof want, p->shape, p->ndim);
        format_shape(got, sizeof got, t.shape, t.ndim);
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: tensor '%s' has shape %s; the VAE config expects %s", l->path, key,
                          got, want);
    }
    return 0;
}

static int read_tensor(load_ctx *l, const vae_param *p, const char *key, long idx) {
    float *dst = p->taps > 1 ? l->tmp : *p->slot;
    int rc = ts_read_f32(l->src, (size_t)idx, dst, (size_t)p->numel, l->err, l->errlen);
    if (rc) return rc;
    for (int64_t i = 0; i < p->numel; i++)
        if (!isfinite(dst[i]))
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: tensor '%s' has a non-finite value (%g) at flat index %lld",
                              l->path, key, (double)dst[i], (long long)i);
    store_param(p, dst);
    return 0;
}

static int load_visitor(void *user, const vae_param *p) {
    load_ctx *l = user;
    const char *key = l->diffusers ? p->dname : p->name;
    long idx = ts_find(l->src, key);
    int wanted = (p->part & l->parts) != 0;
    if (l->check_only) {
        if (idx < 0 && !wanted) return 0;
        if (idx < 0)
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: missing tensor '%s'", l->path,
                              key);
        l->used[idx] = 1;
        return wanted ? check_tensor(l, p, key, idx) : 0;
    }
    return wanted ? read_tensor(l, p, key, idx) : 0;
}

static int check_unexpected(const load_ctx *l) {
    size_t n = ts_count(l->src);
    for (size_t i = 0; i < n; i++) {
        if (l->used[i]) continue;
        ts_info t;
        const char *name = ts_info_at(l->src, i, &t) ? "?" : t.name;
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                          "%s: unexpected tensor '%s' (not a Wan2.1 VAE key under %s names)",
                          l->path, name, l->diffusers ? "Diffusers" : "official");
    }
    return 0;
}

/* Official files have "decoder.conv1.*", Diffusers ones "decoder.conv_in.*" (same for encoder). */
static int detect_diffusers(const ts_source *s) {
    return ts_find(s, "decoder.conv_in.weight") >= 0 || ts_find(s, "encoder.conv_in.weight") >= 0 ||
           ts_find(s, "post_quant_conv.weight") >= 0 || ts_find(s, "quant_conv.weight") >= 0;
}

int vae_weights_load(const vae_config *c, const char *path, int parts, vae_weights **out, char *err,
                     size_t errlen) {
    if (!c || !path || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "vae_weights_load: NULL argument");
    *out = NULL;
    load_ctx l = {0};
    l.path = path, l.parts = parts, l.err = err, l.errlen = errlen;
    int rc = ts_open(path, &l.src, err, errlen);
    if (rc) return rc;
    vae_weights *w = NULL;
    size_t max_numel = 0;
    rc = weights_alloc(c, parts, &w, &max_numel, err, errlen);
    if (!rc) {
        l.used = calloc(ts_count(l.src) + 1, 1);
        l.tmp = malloc(max_numel * sizeof(float));
        if (!l.used || !l.tmp) rc = eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    }
    if (!rc) {
        l.diffusers = detect_diffusers(l.src);
        l.check_only = 1;
        rc = vae_visit(w, load_visitor, &l);
    }
    if (!rc) rc = check_unexpected(&l);
    if (!rc) {
        l.check_only = 0;
        rc = vae_visit(w, load_visitor, &l);
    }
    free(l.used);
    free(l.tmp);
    ts_close(l.src);
    if (rc) {
        vae_weights_free(w);
        return rc;
    }
    *out = w;
    return 0;
}
