/* A session's conditioning: cond_concat and visual_context, given or computed from a start image
 * (lazily, see conditioning.c). Internal to the engine. */
#ifndef WM_ENGINE_CONDITIONING_H
#define WM_ENGINE_CONDITIONING_H

#include <stddef.h>
#include <stdint.h>

#include "engine/clip.h"
#include "engine/config.h"
#include "engine/engine.h"
#include "engine/vae.h"

typedef struct eng_cond eng_cond;

/* cond [20][frames][H][W] and clip [tokens][clip_dim] are copied; latent f >= frames uses the
 * last given frame. */
int eng_cond_from_tensors(const eng_config *cfg, const float *cond, int frames, const float *clip,
                          eng_cond **out, char *err, size_t errlen);
/* image [3][8*lat_h][8*lat_w] in [-1, 1]: CLIP and the first latent now, the rest on demand, with
 * the model's CLIP and VAE encoder on its backend (cpu_only: on the CPU reference whatever the
 * model's backend). The model must outlive the conditioning. */
int eng_cond_from_image(const eng_model *m, int cpu_only, const float *image, eng_cond **out,
                        char *err, size_t errlen);
void eng_cond_destroy(eng_cond *c);
const float *eng_cond_clip(const eng_cond *c);
/* Frames frame0 .. frame0+T-1 of cond_concat into dst [20][T][H][W] (encoding what is missing). */
int eng_cond_slice(eng_cond *c, int64_t frame0, int T, float *dst, char *err, size_t errlen);

#endif
