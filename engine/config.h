/* Model configuration of the Matrix-Game-2.0 causal DiT: the checkpoint's config.json, the three
 * released variants, the `tiny` test model and the sampler constants that come with each variant.
 * Every shape used anywhere in the engine is derived from this struct. */
#ifndef WM_ENGINE_CONFIG_H
#define WM_ENGINE_CONFIG_H

#include <stddef.h>

#define ENG_MAX_LAYERS 64
#define ENG_MAX_STEPS  8
#define ENG_MAX_KDIM   16

typedef enum {
    ENG_VARIANT_UNIVERSAL = 0, /* keyboard 4 + mouse 2, window 6 */
    ENG_VARIANT_GTA_DRIVE = 1, /* keyboard 2 + mouse 2, window 4 */
    ENG_VARIANT_TEMPLERUN = 2, /* keyboard 7, no mouse, window 6, 4 steps */
    ENG_VARIANT_COUNT
} eng_variant;

typedef struct eng_config {
    eng_variant variant;
    char size_name[16]; /* "full", "tiny" or "checkpoint" */

    /* backbone */
    int dim, ffn_dim, num_layers, num_heads, head_dim;
    int in_dim, out_dim, freq_dim;
    float eps;                 /* 1e-6: block/head LayerNorms and main QK RMSNorms */
    int patch[3];              /* (1, 2, 2) */
    int lat_h, lat_w;          /* latent frame size: 44 x 80 for 352 x 640 video */
    int frames_per_block;      /* T = 3 */
    int local_attn_size;       /* W, attention window in latent frames, current block included */
    int sink_size;             /* 0 in every release; anything else is rejected */
    int clip_dim, clip_tokens; /* visual_context: 257 x 1280 */

    /* action module */
    unsigned char action_layer[ENG_MAX_LAYERS]; /* 1 where the block has an action module */
    int enable_mouse, enable_keyboard;
    int keyboard_dim_in, mouse_dim_in;
    int kb_embed_dim;        /* `hidden_size`: per-video-frame keyboard embedding width (128) */
    int keyboard_hidden;     /* 1024 */
    int mouse_hidden;        /* 1024 */
    int action_heads;        /* 16 */
    int action_rope_dims[3]; /* mouse_qk_dim_list: only the first (temporal) part rotates */
    float action_rope_theta; /* 256 */
    int vae_time_ratio;      /* 4 video frames per latent frame */
    int windows_size;        /* 3: the action window spans 4 * 3 = 12 video frames */

    /* sampler (from the variant's inference yaml) */
    int num_steps;
    int denoising_steps[ENG_MAX_STEPS]; /* configured integers, e.g. 1000 666 333 */
    float timestep_shift;               /* 5.0 */
    int warp_denoising_step;            /* 1 */

    /* engine policy: temporal RoPE positions are rebased before they reach this limit (see
     * README "Long sessions"). 1024 = the reference's main RoPE table, so positions are the
     * reference's own for its whole range. */
    int rope_pos_limit;
} eng_config;

/* Derived sizes. */
static inline int eng_tokens_per_frame(const eng_config *c) {
    return (c->lat_h / c->patch[1]) * (c->lat_w / c->patch[2]);
}
static inline int eng_grid_h(const eng_config *c) {
    return c->lat_h / c->patch[1];
}
static inline int eng_grid_w(const eng_config *c) {
    return c->lat_w / c->patch[2];
}
static inline int eng_action_window(const eng_config *c) {
    return c->vae_time_ratio * c->windows_size; /* P = 12 video frames */
}
static inline int eng_action_head_dim(const eng_config *c) {
    return c->keyboard_hidden / c->action_heads;
}
static inline int eng_num_action_layers(const eng_config *c) {
    int n = 0;
    for (int i = 0; i < c->num_layers; i++) n += c->action_layer[i] != 0;
    return n;
}

const char *eng_variant_name(eng_variant v);
/* Parses "universal", "gta_drive" (or "gta"), "templerun"; returns -1 if unknown. */
int eng_variant_parse(const char *name);

/* Presets. `size` is "full" (the released widths) or "tiny" (small widths, same structure). */
int eng_config_preset(eng_config *out, const char *size, eng_variant v, char *err, size_t errlen);

/* Reads a checkpoint config.json (official CausalWanModel keys) over a preset for `v`; unknown
 * keys are ignored with no effect on the math only if they are known-vestigial (text_len, ...);
 * values that the engine cannot honour (sink_size != 0, mismatched widths) are errors. */
int eng_config_load_json(eng_config *out, const char *path, int variant_or_minus1, char *err,
                         size_t errlen);
int eng_config_parse_json(eng_config *out, const char *text, size_t len, const char *origin,
                          int variant_or_minus1, char *err, size_t errlen);

/* Checks internal consistency (divisibility, limits). */
int eng_config_validate(const eng_config *c, char *err, size_t errlen);

/* Sampler constants of section 7.2: model timestep tau_k and sigma_k for step k (0-based). */
void eng_sampler_schedule(const eng_config *c, float *tau, float *sigma);

#endif
