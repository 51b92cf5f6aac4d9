/* The parameter table of the causal DiT and everything driven by it: arena layout, synthetic
 * initialisation, and loading from safetensors with full validation. */
#include "engine/weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/noise.h"
#include "engine/philox.h"
#include "engine/safetensors.h"

/* ---- the table ---------------------------------------------------------------------------- */

typedef struct visit_ctx {
    eng_param_visitor fn;
    void *user;
    int rc;
} visit_ctx;

static void emit(visit_ctx *v, float **slot, eng_param_kind kind, int ndim, const int64_t *shape,
                 const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void emit(visit_ctx *v, float **slot, eng_param_kind kind, int ndim, const int64_t *shape,
                 const char *fmt, ...) {
    if (v->rc) return;
    eng_param p;
    memset(&p, 0, sizeof p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p.name, sizeof p.name, fmt, ap);
    va_end(ap);
    p.ndim = ndim;
    p.numel = 1;
    for (int i = 0; i < ndim; i++) p.shape[i] = shape[i], p.numel *= shape[i];
    p.kind = kind;
    p.slot = slot;
    v->rc = v->fn(v->user, &p);
}

#define SHAPE(...)               ((const int64_t[]){__VA_ARGS__})
#define NDIM(...)                ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define P(slot, kind, name, ...) emit(v, slot, kind, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), name)
#define PL(slot, kind, fmt, arg, ...)                                                              \
    emit(v, slot, kind, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), fmt, arg)

/* A linear layer "<prefix>.weight" [out, in] with an optional bias. */
static void linear(visit_ctx *v, float **w, float **b, int64_t out, int64_t in, const char *prefix,
                   int layer) {
    char name[96];
    snprintf(name, sizeof name, prefix, layer);
    emit(v, w, ENG_PARAM_LINEAR, 2, SHAPE(out, in), "%s.weight", name);
    if (b) emit(v, b, ENG_PARAM_BIAS, 1, SHAPE(out), "%s.bias", name);
}

static void visit_action(visit_ctx *v, const eng_config *c, eng_action_weights *a, int i) {
    const int64_t D = c->dim, E = c->kb_embed_dim, Hk = c->keyboard_hidden, Hm = c->mouse_hidden;
    const int64_t P = eng_action_window(c), hd = Hk / c->action_heads;
    linear(v, &a->kb0_w, &a->kb0_b, E, c->keyboard_dim_in,
           "blocks.%d.action_model.keyboard_embed.0", i);
    linear(v, &a->kb2_w, &a->kb2_b, E, E, "blocks.%d.action_model.keyboard_embed.2", i);
    if (c->enable_mouse) {
        linear(v, &a->mm0_w, &a->mm0_b, Hm, D + (int64_t)c->mouse_dim_in * P,
               "blocks.%d.action_model.mouse_mlp.0", i);
        linear(v, &a->mm2_w, &a->mm2_b, Hm, Hm, "blocks.%d.action_model.mouse_mlp.2", i);
        PL(&a->mm3_w, ENG_PARAM_NORM_GAIN, "blocks.%d.action_model.mouse_mlp.3.weight", i, Hm);
        PL(&a->mm3_b, ENG_PARAM_NORM_BIAS, "blocks.%d.action_model.mouse_mlp.3.bias", i, Hm);
        linear(v, &a->t_qkv, NULL, 3 * Hm, Hm, "blocks.%d.action_model.t_qkv", i);
        PL(&a->img_q_norm, ENG_PARAM_UNUSED_GAIN, "blocks.%d.action_model.img_attn_q_norm.weight",
           i, Hm / c->action_heads);
        PL(&a->img_k_norm, ENG_PARAM_UNUSED_GAIN, "blocks.%d.action_model.img_attn_k_norm.weight",
           i, Hm / c->action_heads);
        linear(v, &a->proj_mouse, NULL, D, Hm, "blocks.%d.action_model.proj_mouse", i);
    }
    PL(&a->key_q_norm, ENG_PARAM_UNUSED_GAIN, "blocks.%d.action_model.key_attn_q_norm.weight", i,
       hd);
    PL(&a->key_k_norm, ENG_PARAM_UNUSED_GAIN, "blocks.%d.action_model.key_attn_k_norm.weight", i,
       hd);
    linear(v, &a->mouse_attn_q, NULL, Hk, D, "blocks.%d.action_model.mouse_attn_q", i);
    linear(v, &a->kb_attn_kv, NULL, 2 * Hk, P * E, "blocks.%d.action_model.keyboard_attn_kv", i);
    linear(v, &a->proj_keyboard, NULL, D, Hk, "blocks.%d.action_model.proj_keyboard", i);
}

static void visit_layer(visit_ctx *v, const eng_config *c, eng_layer_weights *l, int i) {
    const int64_t D = c->dim, FF = c->ffn_dim;
    PL(&l->modulation, ENG_PARAM_MODULATION, "blocks.%d.modulation", i, 1, 6, D);
    linear(v, &l->q_w, &l->q_b, D, D, "blocks.%d.self_attn.q", i);
    linear(v, &l->k_w, &l->k_b, D, D, "blocks.%d.self_attn.k", i);
    linear(v, &l->v_w, &l->v_b, D, D, "blocks.%d.self_attn.v", i);
    linear(v, &l->o_w, &l->o_b, D, D, "blocks.%d.self_attn.o", i);
    PL(&l->norm_q, ENG_PARAM_NORM_GAIN, "blocks.%d.self_attn.norm_q.weight", i, D);
    PL(&l->norm_k, ENG_PARAM_NORM_GAIN, "blocks.%d.self_attn.norm_k.weight", i, D);
    PL(&l->norm3_w, ENG_PARAM_NORM_GAIN, "blocks.%d.norm3.weight", i, D);
    PL(&l->norm3_b, ENG_PARAM_NORM_BIAS, "blocks.%d.norm3.bias", i, D);
    linear(v, &l->cq_w, &l->cq_b, D, D, "blocks.%d.cross_attn.q", i);
    linear(v, &l->ck_w, &l->ck_b, D, D, "blocks.%d.cross_attn.k", i);
    linear(v, &l->cv_w, &l->cv_b, D, D, "blocks.%d.cross_attn.v", i);
    linear(v, &l->co_w, &l->co_b, D, D, "blocks.%d.cross_attn.o", i);
    PL(&l->cnorm_q, ENG_PARAM_NORM_GAIN, "blocks.%d.cross_attn.norm_q.weight", i, D);
    PL(&l->cnorm_k, ENG_PARAM_NORM_GAIN, "blocks.%d.cross_attn.norm_k.weight", i, D);
    linear(v, &l->ffn0_w, &l->ffn0_b, FF, D, "blocks.%d.ffn.0", i);
    linear(v, &l->ffn2_w, &l->ffn2_b, D, FF, "blocks.%d.ffn.2", i);
    l->has_action = c->action_layer[i];
    if (l->has_action) visit_action(v, c, &l->act, i);
}

int weights_visit(eng_weights *w, eng_param_visitor fn, void *user) {
    const eng_config *c = &w->cfg;
    const int64_t D = c->dim, C = c->clip_dim;
    visit_ctx vc = {fn, user, 0}, *v = &vc;
    P(&w->patch_w, ENG_PARAM_LINEAR, "patch_embedding.weight", D, c->in_dim, c->patch[0],
      c->patch[1], c->patch[2]);
    P(&w->patch_b, ENG_PARAM_BIAS, "patch_embedding.bias", D);
    linear(v, &w->te0_w, &w->te0_b, D, c->freq_dim, "time_embedding.0", 0);
    linear(v, &w->te2_w, &w->te2_b, D, D, "time_embedding.2", 0);
    linear(v, &w->tp_w, &w->tp_b, 6 * D, D, "time_projection.1", 0);
    P(&w->img0_w, ENG_PARAM_NORM_GAIN, "img_emb.proj.0.weight", C);
    P(&w->img0_b, ENG_PARAM_NORM_BIAS, "img_emb.proj.0.bias", C);
    linear(v, &w->img1_w, &w->img1_b, C, C, "img_emb.proj.1", 0);
    linear(v, &w->img3_w, &w->img3_b, D, C, "img_emb.proj.3", 0);
    P(&w->img4_w, ENG_PARAM_NORM_GAIN, "img_emb.proj.4.weight", D);
    P(&w->img4_b, ENG_PARAM_NORM_BIAS, "img_emb.proj.4.bias", D);
    P(&w->head_mod, ENG_PARAM_MODULATION, "head.modulation", 1, 2, D);
    linear(v, &w->head_w, &w->head_b, (int64_t)c->out_dim * c->patch[0] * c->patch[1] * c->patch[2],
           D, "head.head", 0);
    for (int i = 0; i < c->num_layers && !vc.rc; i++) visit_layer(v, c, &w->layers[i], i);
    return vc.rc;
}

/* ---- arena ---------------------------------------------------------------------------------- */

static int count_visitor(void *user, const eng_param *p) {
    *(size_t *)user += (size_t)p->numel;
    return 0;
}

static int place_visitor(void *user, const eng_param *p) {
    float **cursor = user;
    *p->slot = *cursor;
    *cursor += p->numel;
    return 0;
}

int64_t weights_count_params(const eng_config *cfg) {
    eng_weights *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->cfg = *cfg;
    size_t n = 0;
    weights_visit(w, count_visitor, &n);
    free(w);
    return (int64_t)n;
}

int weights_alloc(eng_weights *w, const eng_config *cfg, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    w->cfg = *cfg;
    size_t n = 0;
    weights_visit(w, count_visitor, &n);
    w->arena = malloc(n * sizeof(float));
    if (!w->arena)
        return eng_errorf(err, errlen, ENG_ENOMEM, "cannot allocate %.2f GB for %zu parameters",
                          (double)n * 4e-9, n);
    w->arena_floats = n;
    float *cursor = w->arena;
    weights_visit(w, place_visitor, &cursor);
    return 0;
}

void weights_free(eng_weights *w) {
    if (!w) return;
    free(w->arena);
    memset(w, 0, sizeof *w);
}

/* ---- synthetic --------------------------------------------------------------------------------
 */

typedef struct synth_ctx {
    uint64_t seed;
} synth_ctx;

static int synth_visitor(void *user, const eng_param *p) {
    const synth_ctx *s = user;
    float scale = 0.0f, offset = 0.0f;
    switch (p->kind) {
    case ENG_PARAM_LINEAR:
        scale = (float)(1.0 / sqrt((double)(p->numel / p->shape[0])));
        break;
    case ENG_PARAM_BIAS:
        scale = 0.05f;
        break;
    case ENG_PARAM_NORM_GAIN:
    case ENG_PARAM_UNUSED_GAIN:
        scale = 0.1f, offset = 1.0f;
        break;
    case ENG_PARAM_NORM_BIAS:
        scale = 0.05f;
        break;
    case ENG_PARAM_MODULATION:
        scale = 0.1f;
        break;
    }
    eng_uniform_fill(*p->slot, (size_t)p->numel, scale, offset, s->seed, wm_fnv1a32(p->name),
                     ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS);
    return 0;
}

int weights_init_synthetic(eng_weights *w, const eng_config *cfg, uint64_t seed, char *err,
                           size_t errlen) {
    int rc = weights_alloc(w, cfg, err, errlen);
    if (rc) return rc;
    synth_ctx s = {seed};
    return weights_visit(w, synth_visitor, &s);
}

/* ---- names -------------------------------------------------------------------------------------
 */

typedef struct name_rule {
    const char *official; /* prefix (after "blocks.N." for block rules) */
    const char *diffusers;
} name_rule;

static const name_rule top_rules[] = {
    {"time_embedding.0.", "condition_embedder.time_embedder.linear_1."},
    {"time_embedding.2.", "condition_embedder.time_embedder.linear_2."},
    {"time_projection.1.", "condition_embedder.time_proj."},
    {"img_emb.proj.0.", "condition_embedder.image_embedder.norm1."},
    {"img_emb.proj.1.", "condition_embedder.image_embedder.ff.net.0.proj."},
    {"img_emb.proj.3.", "condition_embedder.image_embedder.ff.net.2."},
    {"img_emb.proj.4.", "condition_embedder.image_embedder.norm2."},
    {"head.modulation", "scale_shift_table"},
    {"head.head.", "proj_out."},
};

static const name_rule block_rules[] = {
    {"modulation", "scale_shift_table"},
    {"self_attn.q.", "attn1.to_q."},
    {"self_attn.k.", "attn1.to_k."},
    {"self_attn.v.", "attn1.to_v."},
    {"self_attn.o.", "attn1.to_out.0."},
    {"self_attn.norm_q.", "attn1.norm_q."},
    {"self_attn.norm_k.", "attn1.norm_k."},
    {"norm3.", "norm2."}, /* official norm3 (cross pre-norm) is Diffusers norm2 */
    {"cross_attn.q.", "attn2.to_q."},
    {"cross_attn.k.", "attn2.to_k."},
    {"cross_attn.v.", "attn2.to_v."},
    {"cross_attn.o.", "attn2.to_out.0."},
    {"cross_attn.norm_q.", "attn2.norm_q."},
    {"cross_attn.norm_k.", "attn2.norm_k."},
    {"ffn.0.", "ffn.net.0.proj."},
    {"ffn.2.", "ffn.net.2."},
    {"action_model.", "action_model."},
};

static int apply_rules(const name_rule *rules, size_t n, const char *head, const char *rest,
                       char *dst, size_t dstlen) {
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(rules[i].official);
        if (strncmp(rest, rules[i].official, k) == 0) {
            int w = snprintf(dst, dstlen, "%s%s%s", head, rules[i].diffusers, rest + k);
            return w < 0 || (size_t)w >= dstlen ? ENG_EINVAL : 0;
        }
    }
    int w = snprintf(dst, dstlen, "%s%s", head, rest); /* unchanged (patch_embedding.*) */
    return w < 0 || (size_t)w >= dstlen ? ENG_EINVAL : 0;
}

int weights_map_name(eng_name_scheme scheme, const char *official, char *dst, size_t dstlen) {
    int w;
    switch (scheme) {
    case ENG_NAMES_OFFICIAL:
        w = snprintf(dst, dstlen, "model.%s", official);
        return w < 0 || (size_t)w >= dstlen ? ENG_EINVAL : 0;
    case ENG_NAMES_OFFICIAL_BARE:
        w = snprintf(dst, dstlen, "%s", official);
        return w < 0 || (size_t)w >= dstlen ? ENG_EINVAL : 0;
    case ENG_NAMES_DIFFUSERS:
        if (strncmp(official, "blocks.", 7) == 0) {
            const char *dot = strchr(official + 7, '.');
            if (!dot) return ENG_EINVAL;
            char head[32];
            size_t hl = (size_t)(dot + 1 - official);
            if (hl >= sizeof head) return ENG_EINVAL;
            memcpy(head, official, hl);
            head[hl] = 0;
            return apply_rules(block_rules, sizeof block_rules / sizeof *block_rules, head, dot + 1,
                               dst, dstlen);
        }
        return apply_rules(top_rules, sizeof top_rules / sizeof *top_rules, "", official, dst,
                           dstlen);
    }
    return ENG_EINVAL;
}

/* ---- loading ------------------------------------------------------------------------------------
 */

typedef struct load_ctx {
    st_file **files;
    int nfiles;
    eng_name_scheme scheme;
    unsigned char **used; /* per file, per tensor: consumed by an expected parameter */
    char *err;
    size_t errlen;
    int check_only; /* pass 1 validates everything before pass 2 converts */
} load_ctx;

static const st_tensor *find_tensor(const load_ctx *l, const char *name, int *file, size_t *index) {
    for (int f = 0; f < l->nfiles; f++) {
        const st_tensor *t = st_find(l->files[f], name);
        if (t) {
            *file = f;
            *index = st_index(l->files[f], t);
            return t;
        }
    }
    return NULL;
}

/* Shapes match when they agree after dropping size-1 dimensions (a [1, 6, D] table stored as
 * [6, D] is the same row-major data). */
static int shapes_equivalent(const eng_param *p, const st_tensor *t) {
    int64_t a[8], b[8];
    int na = 0, nb = 0;
    for (int i = 0; i < p->ndim; i++)
        if (p->shape[i] != 1) a[na++] = p->shape[i];
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) b[nb++] = t->shape[i];
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void format_shape(char *dst, size_t len, const int64_t *shape, int ndim) {
    size_t o = 0;
    o += (size_t)snprintf(dst + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(dst + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(dst + o, len - o, "]");
}

static int load_visitor(void *user, const eng_param *p) {
    load_ctx *l = user;
    char key[128];
    if (weights_map_name(l->scheme, p->name, key, sizeof key))
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "parameter name too long: %s", p->name);
    int file = -1;
    size_t index = 0;
    const st_tensor *t = find_tensor(l, key, &file, &index);
    if (!t && l->scheme == ENG_NAMES_DIFFUSERS && strncmp(p->name, "patch_embedding.", 16) == 0) {
        snprintf(key, sizeof key, "patch_embedding.proj.%s", p->name + 16);
        t = find_tensor(l, key, &file, &index);
    }
    if (!t)
        return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: missing tensor '%s'",
                          st_origin(l->files[0]), key);
    const char *origin = st_origin(l->files[file]);
    if (l->check_only) {
        if (l->used[file][index])
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS, "%s: tensor '%s' used twice", origin,
                              key);
        l->used[file][index] = 1;
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", origin,
                              key, st_dtype_name(t->dtype));
        if (!shapes_equivalent(p, t)) {
            char want[96], got[96];
            format_shape(want, sizeof want, p->shape, p->ndim);
            format_shape(got, sizeof got, t->shape, t->ndim);
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: tensor '%s' has shape %s; the config expects %s", origin, key,
                              got, want);
        }
        return 0;
    }
    int rc = st_to_f32(t, *p->slot, (size_t)p->numel, l->err, l->errlen);
    if (rc) return rc;
    const float *d = *p->slot;
    for (int64_t i = 0; i < p->numel; i++)
        if (!isfinite(d[i]))
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: tensor '%s' has a non-finite value (%g) at flat index %lld",
                              origin, key, (double)d[i], (long long)i);
    return 0;
}

/* Layer index of a key if it names a transformer block ("...blocks.N..."), else -1. */
static int key_layer(const char *key) {
    const char *b = strstr(key, "blocks.");
    if (!b) return -1;
    char *end;
    long n = strtol(b + 7, &end, 10);
    return end != b + 7 && *end == '.' ? (int)n : -1;
}

static eng_name_scheme detect_scheme(st_file *const *files, int n) {
    for (int f = 0; f < n; f++) {
        if (st_find(files[f], "model.patch_embedding.weight")) return ENG_NAMES_OFFICIAL;
        if (st_find(files[f], "condition_embedder.time_embedder.linear_1.weight"))
            return ENG_NAMES_DIFFUSERS;
    }
    return ENG_NAMES_OFFICIAL_BARE;
}

static int check_unexpected(const load_ctx *l, const eng_config *cfg, int allow_extra_layers) {
    for (int f = 0; f < l->nfiles; f++)
        for (size_t i = 0; i < st_count(l->files[f]); i++) {
            if (l->used[f][i]) continue;
            const char *name = st_get(l->files[f], i)->name;
            if (allow_extra_layers && key_layer(name) >= cfg->num_layers) continue;
            return eng_errorf(l->err, l->errlen, ENG_EWEIGHTS,
                              "%s: unexpected tensor '%s' (not a parameter of the %s model with "
                              "%d layers)",
                              st_origin(l->files[f]), name, eng_variant_name(cfg->variant),
                              cfg->num_layers);
        }
    return 0;
}

int weights_load_safetensors(eng_weights *w, const eng_config *cfg, const char *const *paths,
                             int npaths, int allow_extra_layers, char *err, size_t errlen) {
    if (npaths < 1) return eng_errorf(err, errlen, ENG_EINVAL, "no weight files given");
    load_ctx l = {0};
    l.err = err, l.errlen = errlen, l.nfiles = npaths;
    l.files = calloc((size_t)npaths, sizeof *l.files);
    l.used = calloc((size_t)npaths, sizeof *l.used);
    int rc = l.files && l.used ? 0 : eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    for (int f = 0; f < npaths && !rc; f++) {
        rc = st_open(paths[f], &l.files[f], err, errlen);
        if (!rc) {
            l.used[f] = calloc(st_count(l.files[f]) + 1, 1);
            if (!l.used[f]) rc = eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
        }
    }
    eng_weights tmp;
    memset(&tmp, 0, sizeof tmp);
    if (!rc) {
        l.scheme = detect_scheme(l.files, npaths);
        tmp.cfg = *cfg;
        l.check_only = 1;
        rc = weights_visit(&tmp, load_visitor, &l);
    }
    if (!rc) rc = check_unexpected(&l, cfg, allow_extra_layers);
    if (!rc) rc = weights_alloc(&tmp, cfg, err, errlen);
    if (!rc) {
        l.check_only = 0;
        rc = weights_visit(&tmp, load_visitor, &l);
    }
    for (int f = 0; f < npaths; f++) {
        if (l.files) st_close(l.files[f]);
        if (l.used) free(l.used[f]);
    }
    free(l.files);
    free(l.used);
    if (rc) {
        weights_free(&tmp);
        return rc;
    }
    *w = tmp;
    return 0;
}
