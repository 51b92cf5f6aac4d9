/* The CLIP image encoder of Matrix-Game-2.0 (open-clip ViT-H/14 visual tower, model-vae-clip.md
 * section 5), CPU reference in float32, with the reference's exact preprocessing: bicubic squash to
 * 224x224 (A = -0.75, no antialias), x*0.5+0.5, Normalize with bf16-rounded constants; output the
 * 257 tokens after block 31 of 32 (index 30), no final LayerNorm. */
#ifndef WM_ENGINE_CLIP_H
#define WM_ENGINE_CLIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct clip_config {
    char size_name[16]; /* "full" or "tiny" */
    int image_size;     /* 224 */
    int patch;          /* 14 */
    int width;          /* 1280 */
    int layers;         /* blocks in the checkpoint: 32 */
    int layers_used;    /* blocks run: 31 */
    int heads;          /* 16 */
    int mlp;            /* 5120 */
} clip_config;

/* "full" (ViT-H/14) or "tiny" (width 48, 3 heads, 3 of 4 blocks, same 224/14 grid so 257 tokens). */
int clip_config_preset(clip_config *out, const char *size, char *err, size_t errlen);
static inline int clip_tokens(const clip_config *c) {
    return (c->image_size / c->patch) * (c->image_size / c->patch) + 1;
}

typedef struct clip_weights clip_weights;
int clip_weights_synthetic(const clip_config *c, uint64_t seed, clip_weights **out, char *err,
                           size_t errlen);
/* Official `models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth` (visual.*; textual.* and
 * log_scale are skipped) or an HF CLIPVisionModel safetensors (with or without the
 * `vision_model.` prefix; q/k/v fused on load). Only the blocks that run are required. */
int clip_weights_load(const clip_config *c, const char *path, clip_weights **out, char *err,
                      size_t errlen);
void clip_weights_free(clip_weights *w);
const clip_config *clip_weights_config(const clip_weights *w);
/* A parameter's host values by its official key (e.g. "visual.transformer.3.mlp.0.weight", shape
 * as in model-vae-clip.md 5.6), for a backend that uploads them; *numel (may be NULL) gets its
 * size. NULL for a key the encoder does not hold (post_norm, head, blocks that do not run). */
const float *clip_weights_tensor(const clip_weights *w, const char *name, size_t *numel);

/* Preprocessing alone (exposed for tests): image [3][H][W] in [-1, 1] -> [3][224][224] normalised. */
void clip_preprocess(const clip_config *c, const float *image, int height, int width, float *out);
/* image [3][H][W] in [-1, 1] (any size) -> tokens [257][width]. */
int clip_encode(const clip_weights *w, const float *image, int height, int width, float *tokens,
                char *err, size_t errlen);

#endif
