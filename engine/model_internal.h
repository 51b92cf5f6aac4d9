/* What the backends see of a model beyond the public API. */
#ifndef WM_ENGINE_MODEL_INTERNAL_H
#define WM_ENGINE_MODEL_INTERNAL_H

#include "engine/clip.h"
#include "engine/engine.h"
#include "engine/vae.h"
#include "engine/weights.h"

const eng_weights *eng_model_weights(const eng_model *m);
const vae_weights *eng_model_vae(const eng_model *m);   /* NULL without a VAE */
const clip_weights *eng_model_clip(const eng_model *m); /* NULL without CLIP */

#endif
