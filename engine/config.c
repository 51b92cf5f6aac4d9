/* Model configuration: presets for the released variants and the tiny test model, the official
 * config.json reader (strict: an unknown key is an error, so a checkpoint of another model family
 * is refused rather than run with wrong shapes), validation, and the sampler's timestep table. */
#include "engine/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"

static const char *const variant_names[ENG_VARIANT_COUNT] = {"universal", "gta_drive", "templerun"};

const char *eng_variant_name(eng_variant v) {
    return (unsigned)v < ENG_VARIANT_COUNT ? variant_names[v] : "unknown";
}

int eng_variant_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < ENG_VARIANT_COUNT; i++)
        if (strcmp(name, variant_names[i]) == 0) return i;
    if (strcmp(name, "gta") == 0) return ENG_VARIANT_GTA_DRIVE;
    return -1;
}

/* The parts every variant shares, at released widths. */
static void preset_full(eng_config *c) {
    snprintf(c->size_name, sizeof c->size_name, "full");
    c->dim = 1536, c->ffn_dim = 8960, c->num_layers = 30, c->num_heads = 12, c->head_dim = 128;
    c->clip_dim = 1280, c->clip_tokens = 257;
    c->lat_h = 44, c->lat_w = 80;
    for (int i = 0; i < 15; i++) c->action_layer[i] = 1;
    c->kb_embed_dim = 128, c->keyboard_hidden = 1024, c->mouse_hidden = 1024, c->action_heads = 16;
    c->action_rope_dims[0] = 8, c->action_rope_dims[1] = 28, c->action_rope_dims[2] = 28;
}

/* Same structure, small widths: every kind of layer (with and without action module), a
 * non-trivial patch grid, the local window and 3-frame blocks. */
static void preset_tiny(eng_config *c) {
    snprintf(c->size_name, sizeof c->size_name, "tiny");
    c->dim = 64, c->ffn_dim = 128, c->num_layers = 3, c->num_heads = 2, c->head_dim = 32;
    c->clip_dim = 48, c->clip_tokens = 257;
    c->lat_h = 8, c->lat_w = 16;
    c->action_layer[0] = 1, c->action_layer[1] = 1;
    c->kb_embed_dim = 16, c->keyboard_hidden = 64, c->mouse_hidden = 64, c->action_heads = 2;
    c->action_rope_dims[0] = 8, c->action_rope_dims[1] = 12, c->action_rope_dims[2] = 12;
}

static void preset_variant(eng_config *c, eng_variant v) {
    c->variant = v;
    c->enable_keyboard = 1;
    c->enable_mouse = v != ENG_VARIANT_TEMPLERUN;
    c->keyboard_dim_in = v == ENG_VARIANT_UNIVERSAL ? 4 : v == ENG_VARIANT_GTA_DRIVE ? 2 : 7;
    c->mouse_dim_in = c->enable_mouse ? 2 : 0;
    c->local_attn_size = v == ENG_VARIANT_GTA_DRIVE ? 4 : 6;
    if (v == ENG_VARIANT_TEMPLERUN) {
        static const int steps[4] = {1000, 750, 500, 250};
        c->num_steps = 4;
        memcpy(c->denoising_steps, steps, sizeof steps);
    } else {
        static const int steps[3] = {1000, 666, 333};
        c->num_steps = 3;
        memcpy(c->denoising_steps, steps, sizeof steps);
    }
}

int eng_config_preset(eng_config *out, const char *size, eng_variant v, char *err, size_t errlen) {
    eng_config c;
    memset(&c, 0, sizeof c);
    if ((unsigned)v >= ENG_VARIANT_COUNT)
        return eng_errorf(err, errlen, ENG_EINVAL, "unknown variant %d", (int)v);
    if (strcmp(size, "full") == 0)
        preset_full(&c);
    else if (strcmp(size, "tiny") == 0)
        preset_tiny(&c);
    else
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "unknown model size '%s' (expected full or tiny)", size);
    c.in_dim = 36, c.out_dim = 16, c.freq_dim = 256, c.eps = 1e-6f;
    c.patch[0] = 1, c.patch[1] = 2, c.patch[2] = 2;
    c.frames_per_block = 3;
    c.sink_size = 0;
    c.action_rope_theta = 256.0f;
    c.vae_time_ratio = 4, c.windows_size = 3;
    c.timestep_shift = 5.0f, c.warp_denoising_step = 1;
    c.rope_pos_limit = 1024;
    preset_variant(&c, v);
    *out = c;
    return 0;
}

/* ---- config.json --------------------------------------------------------------------------- */

typedef struct json_ctx {
    const char *origin;
    char *err;
    size_t errlen;
} json_ctx;

static int json_int(const json_ctx *j, const cJSON *o, const char *path, int lo, int hi, int *dst) {
    if (!cJSON_IsNumber(o) || o->valuedouble != floor(o->valuedouble) || o->valuedouble < lo ||
        o->valuedouble > hi)
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: '%s' must be an integer in [%d, %d]",
                          j->origin, path, lo, hi);
    *dst = (int)o->valuedouble;
    return 0;
}

static int json_bool(const json_ctx *j, const cJSON *o, const char *path, int *dst) {
    if (!cJSON_IsBool(o))
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: '%s' must be true or false",
                          j->origin, path);
    *dst = cJSON_IsTrue(o);
    return 0;
}

static int json_int_list(const json_ctx *j, const cJSON *o, const char *path, int *dst, int n) {
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != n)
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: '%s' must be a list of %d integers",
                          j->origin, path, n);
    for (int i = 0; i < n; i++) {
        int rc = json_int(j, cJSON_GetArrayItem(o, i), path, 0, 1 << 20, &dst[i]);
        if (rc) return rc;
    }
    return 0;
}

static int json_expect_bool(const json_ctx *j, const cJSON *o, const char *path, int want) {
    int v = 0, rc = json_bool(j, o, path, &v);
    if (rc) return rc;
    if (v != want)
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                          "%s: '%s' = %s is not supported (the released models use %s)", j->origin,
                          path, v ? "true" : "false", want ? "true" : "false");
    return 0;
}

static int parse_action_config(const json_ctx *j, const cJSON *ac, eng_config *c) {
    int rc = 0, img_hidden = c->dim, patch[3], rope_dims[3];
    if (!cJSON_IsObject(ac))
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: 'action_config' must be an object",
                          j->origin);
    c->mouse_dim_in = 0;
    for (const cJSON *it = ac->child; it && !rc; it = it->next) {
        const char *k = it->string;
        if (strcmp(k, "blocks") == 0) {
            if (!cJSON_IsArray(it))
                return eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                                  "%s: 'action_config.blocks' must be a list of layer indices",
                                  j->origin);
            memset(c->action_layer, 0, sizeof c->action_layer);
            for (const cJSON *b = it->child; b && !rc; b = b->next) {
                int idx = 0;
                rc = json_int(j, b, "action_config.blocks[]", 0, ENG_MAX_LAYERS - 1, &idx);
                if (!rc) c->action_layer[idx] = 1;
            }
        } else if (strcmp(k, "enable_keyboard") == 0) {
            rc = json_bool(j, it, "action_config.enable_keyboard", &c->enable_keyboard);
        } else if (strcmp(k, "enable_mouse") == 0) {
            rc = json_bool(j, it, "action_config.enable_mouse", &c->enable_mouse);
        } else if (strcmp(k, "heads_num") == 0) {
            rc = json_int(j, it, "action_config.heads_num", 1, 4096, &c->action_heads);
        } else if (strcmp(k, "hidden_size") == 0) {
            rc = json_int(j, it, "action_config.hidden_size", 1, 1 << 16, &c->kb_embed_dim);
        } else if (strcmp(k, "img_hidden_size") == 0) {
            rc = json_int(j, it, "action_config.img_hidden_size", 1, 1 << 16, &img_hidden);
        } else if (strcmp(k, "keyboard_dim_in") == 0) {
            rc = json_int(j, it, "action_config.keyboard_dim_in", 1, ENG_MAX_KDIM,
                          &c->keyboard_dim_in);
        } else if (strcmp(k, "keyboard_hidden_dim") == 0) {
            rc = json_int(j, it, "action_config.keyboard_hidden_dim", 1, 1 << 16,
                          &c->keyboard_hidden);
        } else if (strcmp(k, "mouse_dim_in") == 0) {
            rc = json_int(j, it, "action_config.mouse_dim_in", 2, 2, &c->mouse_dim_in);
        } else if (strcmp(k, "mouse_hidden_dim") == 0) {
            rc = json_int(j, it, "action_config.mouse_hidden_dim", 1, 1 << 16, &c->mouse_hidden);
        } else if (strcmp(k, "mouse_qk_dim_list") == 0) {
            rc = json_int_list(j, it, "action_config.mouse_qk_dim_list", c->action_rope_dims, 3);
        } else if (strcmp(k, "rope_dim_list") == 0) {
            /* stored by the reference but unused: its tables come from mouse_qk_dim_list */
            rc = json_int_list(j, it, "action_config.rope_dim_list", rope_dims, 3);
        } else if (strcmp(k, "patch_size") == 0) {
            rc = json_int_list(j, it, "action_config.patch_size", patch, 3);
        } else if (strcmp(k, "qk_norm") == 0) {
            rc = json_expect_bool(j, it, "action_config.qk_norm", 1);
        } else if (strcmp(k, "qkv_bias") == 0) {
            rc = json_expect_bool(j, it, "action_config.qkv_bias", 0);
        } else if (strcmp(k, "rope_theta") == 0) {
            int theta = 0;
            rc = json_int(j, it, "action_config.rope_theta", 1, 1 << 20, &theta);
            c->action_rope_theta = (float)theta;
        } else if (strcmp(k, "vae_time_compression_ratio") == 0) {
            rc = json_int(j, it, "action_config.vae_time_compression_ratio", 1, 64,
                          &c->vae_time_ratio);
        } else if (strcmp(k, "windows_size") == 0) {
            rc = json_int(j, it, "action_config.windows_size", 1, 64, &c->windows_size);
        } else {
            return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: unknown key 'action_config.%s'",
                              j->origin, k);
        }
    }
    if (rc) return rc;
    if (img_hidden != c->dim)
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                          "%s: 'action_config.img_hidden_size' = %d must equal 'dim' = %d",
                          j->origin, img_hidden, c->dim);
    if (c->enable_mouse && c->mouse_dim_in == 0) c->mouse_dim_in = 2;
    if (!c->enable_mouse) c->mouse_dim_in = 0;
    return 0;
}

/* "wmserve": engine settings that the official config.json does not carry because the reference
 * hard-codes them (resolution, CLIP width) or reads them from the inference yaml (sampler steps).
 * Only needed for models other than the releases, e.g. the tiny test model saved as a checkpoint.
 */
static int parse_wmserve_block(const json_ctx *j, const cJSON *o, eng_config *c) {
    if (!cJSON_IsObject(o))
        return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: 'wmserve' must be an object",
                          j->origin);
    int rc = 0;
    for (const cJSON *it = o->child; it && !rc; it = it->next) {
        const char *k = it->string;
        if (strcmp(k, "latent_height") == 0)
            rc = json_int(j, it, "wmserve.latent_height", 2, 1 << 12, &c->lat_h);
        else if (strcmp(k, "latent_width") == 0)
            rc = json_int(j, it, "wmserve.latent_width", 2, 1 << 12, &c->lat_w);
        else if (strcmp(k, "clip_dim") == 0)
            rc = json_int(j, it, "wmserve.clip_dim", 1, 1 << 16, &c->clip_dim);
        else if (strcmp(k, "clip_tokens") == 0)
            rc = json_int(j, it, "wmserve.clip_tokens", 1, 1 << 16, &c->clip_tokens);
        else if (strcmp(k, "denoising_step_list") == 0) {
            int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 0;
            if (n < 1 || n > ENG_MAX_STEPS)
                return eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                                  "%s: 'wmserve.denoising_step_list' must list 1 to %d steps",
                                  j->origin, ENG_MAX_STEPS);
            rc = json_int_list(j, it, "wmserve.denoising_step_list", c->denoising_steps, n);
            c->num_steps = n;
        } else
            return eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: unknown key 'wmserve.%s'",
                              j->origin, k);
    }
    return rc;
}

/* Top-level keys that carry no meaning for inference of the distilled i2v models. */
static int is_vestigial_key(const char *k) {
    static const char *const keys[] = {"_class_name", "_diffusers_version", "text_len", "text_dim",
                                       "_name_or_path"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(k, keys[i]) == 0) return 1;
    return 0;
}

static int parse_top_level(const json_ctx *j, const cJSON *root, eng_config *c) {
    int rc = 0, have_action = 0;
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        const char *k = it->string;
        if (strcmp(k, "dim") == 0)
            rc = json_int(j, it, k, 1, 1 << 16, &c->dim);
        else if (strcmp(k, "ffn_dim") == 0)
            rc = json_int(j, it, k, 1, 1 << 18, &c->ffn_dim);
        else if (strcmp(k, "num_layers") == 0)
            rc = json_int(j, it, k, 1, ENG_MAX_LAYERS, &c->num_layers);
        else if (strcmp(k, "num_heads") == 0)
            rc = json_int(j, it, k, 1, 4096, &c->num_heads);
        else if (strcmp(k, "in_dim") == 0)
            rc = json_int(j, it, k, 36, 36, &c->in_dim);
        else if (strcmp(k, "out_dim") == 0)
            rc = json_int(j, it, k, 16, 16, &c->out_dim);
        else if (strcmp(k, "freq_dim") == 0)
            rc = json_int(j, it, k, 2, 1 << 16, &c->freq_dim);
        else if (strcmp(k, "local_attn_size") == 0)
            rc = json_int(j, it, k, 3, 1 << 16, &c->local_attn_size);
        else if (strcmp(k, "sink_size") == 0)
            rc = json_int(j, it, k, 0, 0, &c->sink_size);
        else if (strcmp(k, "patch_size") == 0) {
            rc = json_int_list(j, it, k, c->patch, 3);
            if (!rc && (c->patch[0] != 1 || c->patch[1] != 2 || c->patch[2] != 2))
                rc = eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                                "%s: 'patch_size' must be [1, 2, 2]", j->origin);
        } else if (strcmp(k, "eps") == 0) {
            if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || it->valuedouble > 1e-2)
                rc = eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: 'eps' must be in (0, 0.01]",
                                j->origin);
            else
                c->eps = (float)it->valuedouble;
        } else if (strcmp(k, "model_type") == 0) {
            if (!cJSON_IsString(it) || strcmp(it->valuestring, "i2v") != 0)
                rc = eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                                "%s: 'model_type' must be \"i2v\" (the Matrix-Game-2.0 models)",
                                j->origin);
        } else if (strcmp(k, "inject_sample_info") == 0) {
            rc = json_expect_bool(j, it, k, 0);
        } else if (strcmp(k, "wmserve") == 0) {
            rc = 0; /* applied after the variant's sampler defaults, below */
        } else if (strcmp(k, "action_config") == 0) {
            have_action = 1; /* parsed below, once 'dim' is known whatever the key order */
        } else if (!is_vestigial_key(k)) {
            rc = eng_errorf(j->err, j->errlen, ENG_ECONFIG, "%s: unknown key '%s'", j->origin, k);
        }
    }
    if (!rc && !have_action)
        rc = eng_errorf(j->err, j->errlen, ENG_ECONFIG,
                        "%s: no 'action_config' (not a Matrix-Game-2.0 distilled config)",
                        j->origin);
    if (!rc)
        rc = parse_action_config(j, cJSON_GetObjectItemCaseSensitive(root, "action_config"), c);
    return rc;
}

/* Which release a parsed config is, from the fields that differ between them. */
static eng_variant infer_variant(const eng_config *c) {
    if (!c->enable_mouse) return ENG_VARIANT_TEMPLERUN;
    if (c->keyboard_dim_in == 2) return ENG_VARIANT_GTA_DRIVE;
    return ENG_VARIANT_UNIVERSAL;
}

int eng_config_parse_json(eng_config *out, const char *text, size_t len, const char *origin,
                          int variant_or_minus1, char *err, size_t errlen) {
    json_ctx j = {origin, err, errlen};
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        return eng_errorf(err, errlen, ENG_ECONFIG, "%s: not valid JSON (near byte %ld)", origin,
                          off);
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cJSON_IsObject(root) ||
        (cls && (!cJSON_IsString(cls) || strcmp(cls->valuestring, "CausalWanModel") != 0))) {
        int rc = eng_errorf(err, errlen, ENG_ECONFIG_FOREIGN,
                            "%s: not an official CausalWanModel config (_class_name %s)", origin,
                            cJSON_IsString(cls) ? cls->valuestring : "missing");
        cJSON_Delete(root);
        return rc;
    }
    /* Start from the full preset of the variant the file describes, then apply every key. */
    eng_config c;
    eng_config_preset(&c, "full", ENG_VARIANT_UNIVERSAL, NULL, 0);
    snprintf(c.size_name, sizeof c.size_name, "checkpoint");
    int rc = parse_top_level(&j, root, &c);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    eng_variant inferred = infer_variant(&c);
    if (variant_or_minus1 >= 0 && (eng_variant)variant_or_minus1 != inferred) {
        cJSON_Delete(root);
        return eng_errorf(err, errlen, ENG_ECONFIG,
                          "%s: describes the %s variant (keyboard_dim_in %d, mouse %s) but %s was "
                          "requested",
                          origin, eng_variant_name(inferred), c.keyboard_dim_in,
                          c.enable_mouse ? "on" : "off",
                          eng_variant_name((eng_variant)variant_or_minus1));
    }
    /* Sampler settings live in the inference yaml, not config.json: take the variant's. */
    eng_config v;
    eng_config_preset(&v, "full", inferred, NULL, 0);
    c.variant = inferred;
    c.num_steps = v.num_steps;
    memcpy(c.denoising_steps, v.denoising_steps, sizeof c.denoising_steps);
    c.head_dim = c.num_heads > 0 ? c.dim / c.num_heads : 0;
    const cJSON *ext = cJSON_GetObjectItemCaseSensitive(root, "wmserve");
    if (ext) rc = parse_wmserve_block(&j, ext, &c);
    cJSON_Delete(root);
    if (rc) return rc;
    char why[256];
    if (eng_config_validate(&c, why, sizeof why) != 0) /* name the file, as every other error */
        return eng_errorf(err, errlen, ENG_ECONFIG, "%s: %s", origin, why);
    *out = c;
    return 0;
}

int eng_config_load_json(eng_config *out, const char *path, int variant_or_minus1, char *err,
                         size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return eng_errorf(err, errlen, ENG_EIO, "%s: %s", path, strerror(errno));
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    int too_big = !feof(f);
    fclose(f);
    if (too_big)
        return eng_errorf(err, errlen, ENG_ECONFIG, "%s: larger than %zu bytes; not a model config",
                          path, sizeof buf);
    return eng_config_parse_json(out, buf, n, path, variant_or_minus1, err, errlen);
}

int eng_config_validate(const eng_config *c, char *err, size_t errlen) {
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) return eng_errorf(err, errlen, ENG_ECONFIG, __VA_ARGS__);                     \
    } while (0)
    REQUIRE(c->num_heads > 0 && c->dim % c->num_heads == 0, "dim %d is not divisible by %d heads",
            c->dim, c->num_heads);
    REQUIRE(c->head_dim == c->dim / c->num_heads && c->head_dim % 6 == 2,
            "head width %d: the 3-D RoPE split needs head_dim = dim / num_heads with head_dim %% 6 "
            "== 2 (128 in the releases)",
            c->head_dim);
    REQUIRE(c->num_layers > 0 && c->num_layers <= ENG_MAX_LAYERS, "num_layers %d out of range",
            c->num_layers);
    REQUIRE(c->frames_per_block == 3, "frames_per_block must be 3");
    REQUIRE(c->local_attn_size >= c->frames_per_block,
            "local_attn_size %d is smaller than one block (%d frames)", c->local_attn_size,
            c->frames_per_block);
    REQUIRE(c->sink_size == 0, "sink_size %d: only 0 is supported (as in every release)",
            c->sink_size);
    REQUIRE(c->lat_h % 2 == 0 && c->lat_w % 2 == 0 && c->lat_h > 0 && c->lat_w > 0,
            "latent size %dx%d must be even", c->lat_h, c->lat_w);
    REQUIRE(c->in_dim == 36 && c->out_dim == 16, "in_dim/out_dim must be 36/16");
    REQUIRE(c->freq_dim % 2 == 0, "freq_dim %d must be even", c->freq_dim);
    REQUIRE(c->enable_keyboard, "enable_keyboard false is not supported (every release has it)");
    REQUIRE(c->keyboard_dim_in >= 1 && c->keyboard_dim_in <= ENG_MAX_KDIM,
            "keyboard_dim_in %d out of range", c->keyboard_dim_in);
    REQUIRE(c->action_heads > 0 && c->keyboard_hidden % c->action_heads == 0 &&
                c->mouse_hidden == c->keyboard_hidden,
            "action widths: keyboard_hidden_dim %d and mouse_hidden_dim %d must be equal and "
            "divisible by heads_num %d",
            c->keyboard_hidden, c->mouse_hidden, c->action_heads);
    int adh = c->keyboard_hidden / c->action_heads;
    REQUIRE(c->action_rope_dims[0] + c->action_rope_dims[1] + c->action_rope_dims[2] == adh &&
                c->action_rope_dims[0] % 2 == 0,
            "mouse_qk_dim_list must sum to the action head width %d", adh);
    for (int i = c->num_layers; i < ENG_MAX_LAYERS; i++)
        REQUIRE(!c->action_layer[i], "action_config.blocks names layer %d but there are %d", i,
                c->num_layers);
    REQUIRE(c->num_steps >= 1 && c->num_steps <= ENG_MAX_STEPS, "num_steps %d out of range",
            c->num_steps);
    for (int k = 0; k < c->num_steps; k++)
        REQUIRE(c->denoising_steps[k] >= 1 && c->denoising_steps[k] <= 1000,
                "denoising step %d out of [1, 1000]", c->denoising_steps[k]);
    REQUIRE(c->rope_pos_limit >= c->local_attn_size + c->frames_per_block,
            "rope_pos_limit %d must exceed the attention window", c->rope_pos_limit);
#undef REQUIRE
    return 0;
}

/* FlowMatchScheduler(shift, sigma_min 0, extra_one_step) with 1000 steps, warped: step d maps to
 * table entry 1000 - d. Every operation is a float32 tensor op in the reference, so each is
 * rounded here too; torch.linspace computes the first half forward from the start and the second
 * half backward from the end. */
static float linspace_1_0_1001(int k) {
    const float start = 1.0f, end = 0.0f;
    const float step = (end - start) / 1000.0f;
    return k < 1001 / 2 ? start + step * (float)k : end - step * (float)(1001 - k - 1);
}

void eng_sampler_schedule(const eng_config *c, float *tau, float *sigma) {
    for (int k = 0; k < c->num_steps; k++) {
        int idx = c->warp_denoising_step ? 1000 - c->denoising_steps[k] : c->denoising_steps[k];
        float sh = linspace_1_0_1001(idx);
        float num = c->timestep_shift * sh;
        float den = 1.0f + (c->timestep_shift - 1.0f) * sh;
        sigma[k] = num / den;
        tau[k] = sigma[k] * 1000.0f;
    }
}
