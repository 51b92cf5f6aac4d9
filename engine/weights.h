/* The DiT's parameters as float32 arrays, with their official checkpoint names.
 *
 * One table (weights_visit) lists every parameter of a config in checkpoint order with its shape
 * and role; the arena layout, the synthetic initialiser, the safetensors loader and the
 * unexpected-key check are all driven by it, so a name or shape lives in exactly one place. */
#ifndef WM_ENGINE_WEIGHTS_H
#define WM_ENGINE_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"

typedef struct eng_action_weights {
    float *kb0_w, *kb0_b;           /* keyboard_embed.0  [E, kdim], [E]      (E = hidden_size) */
    float *kb2_w, *kb2_b;           /* keyboard_embed.2  [E, E], [E] */
    float *mm0_w, *mm0_b;           /* mouse_mlp.0       [Hm, D + 2P], [Hm] */
    float *mm2_w, *mm2_b;           /* mouse_mlp.2       [Hm, Hm], [Hm] */
    float *mm3_w, *mm3_b;           /* mouse_mlp.3 (LayerNorm eps 1e-5) [Hm] */
    float *t_qkv;                   /* [3 Hm, Hm], no bias */
    float *img_q_norm, *img_k_norm; /* [Hm / heads], loaded but never read (model-dit.md 6.3) */
    float *proj_mouse;              /* [D, Hm] */
    float *key_q_norm, *key_k_norm; /* [Hk / heads], never read */
    float *mouse_attn_q;            /* [Hk, D]: the keyboard branch's query, despite its name */
    float *kb_attn_kv;              /* [2 Hk, P E] */
    float *proj_keyboard;           /* [D, Hk] */
} eng_action_weights;

typedef struct eng_layer_weights {
    float *modulation; /* [6, D] */
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    float *norm_q, *norm_k;   /* [D] */
    float *norm3_w, *norm3_b; /* [D] */
    float *cq_w, *cq_b, *ck_w, *ck_b, *cv_w, *cv_b, *co_w, *co_b;
    float *cnorm_q, *cnorm_k; /* [D] */
    float *ffn0_w, *ffn0_b;   /* [FF, D], [FF] */
    float *ffn2_w, *ffn2_b;   /* [D, FF], [D] */
    int has_action;
    eng_action_weights act;
} eng_layer_weights;

typedef struct eng_weights {
    eng_config cfg;
    float *arena; /* every tensor below points into this one allocation */
    size_t arena_floats;
    float *patch_w, *patch_b; /* [D, 36, 1, 2, 2], [D] */
    float *te0_w, *te0_b;     /* time_embedding.0 [D, freq_dim] */
    float *te2_w, *te2_b;     /* time_embedding.2 [D, D] */
    float *tp_w, *tp_b;       /* time_projection.1 [6D, D] */
    float *img0_w, *img0_b;   /* img_emb.proj.0 LayerNorm [clip_dim] */
    float *img1_w, *img1_b;   /* img_emb.proj.1 [clip_dim, clip_dim] */
    float *img3_w, *img3_b;   /* img_emb.proj.3 [D, clip_dim] */
    float *img4_w, *img4_b;   /* img_emb.proj.4 LayerNorm [D] */
    float *head_mod;          /* head.modulation [1, 2, D] */
    float *head_w, *head_b;   /* head.head [64, D], [64] */
    eng_layer_weights layers[ENG_MAX_LAYERS];
} eng_weights;

/* What a parameter is, for initialisation and checks. */
typedef enum {
    ENG_PARAM_LINEAR, /* weight matrix; fan_in = product of all dims but the first */
    ENG_PARAM_BIAS,
    ENG_PARAM_NORM_GAIN,
    ENG_PARAM_NORM_BIAS,
    ENG_PARAM_MODULATION, /* added to time-embedding outputs */
    ENG_PARAM_UNUSED_GAIN /* present in checkpoints, never read by the model */
} eng_param_kind;

typedef struct eng_param {
    char name[96]; /* official name without the "model." prefix */
    int ndim;
    int64_t shape[5];
    int64_t numel;
    eng_param_kind kind;
    float **slot; /* where the tensor's pointer is stored in eng_weights */
} eng_param;

typedef int (*eng_param_visitor)(void *user, const eng_param *p);
/* Calls `fn` for every parameter of w->cfg in checkpoint order; stops at the first non-zero
 * return and returns it. */
int weights_visit(eng_weights *w, eng_param_visitor fn, void *user);

/* Lays out the arena for cfg (allocation only, contents undefined). */
int weights_alloc(eng_weights *w, const eng_config *cfg, char *err, size_t errlen);
void weights_free(eng_weights *w);

/* Deterministic synthetic weights: each tensor drawn from its own Philox stream keyed by (seed,
 * hash of its name), so values do not depend on the backend, the thread count or on which other
 * tensors exist. Scales keep activations O(1) through the whole depth. */
int weights_init_synthetic(eng_weights *w, const eng_config *cfg, uint64_t seed, char *err,
                           size_t errlen);

/* Name schemes a checkpoint may use. */
typedef enum {
    ENG_NAMES_OFFICIAL,      /* "model." + official name (WanDiffusionWrapper state dict) */
    ENG_NAMES_OFFICIAL_BARE, /* official name without the prefix (bare CausalWanModel) */
    ENG_NAMES_DIFFUSERS      /* Diffusers / FastVideo checkpoint names */
} eng_name_scheme;

/* Writes the name of official parameter `official` under `scheme` into dst. */
int weights_map_name(eng_name_scheme scheme, const char *official, char *dst, size_t dstlen);

/* Loads all parameters of cfg from one or more safetensors files (a sharded checkpoint passes all
 * its shards). Validates: every expected key present exactly once, shape and dtype (F32, F16 or
 * BF16), no unexpected keys (except keys of layers >= cfg->num_layers when `allow_extra_layers`,
 * for reduced-depth runs), all values finite. On error nothing is returned half-loaded. */
int weights_load_safetensors(eng_weights *w, const eng_config *cfg, const char *const *paths,
                             int npaths, int allow_extra_layers, char *err, size_t errlen);

/* Counts parameters of a config (for reports). */
int64_t weights_count_params(const eng_config *cfg);

#endif
