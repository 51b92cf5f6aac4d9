/* What the backends see of a model beyond the public API. */
#ifndef WM_ENGINE_MODEL_INTERNAL_H
#define WM_ENGINE_MODEL_INTERNAL_H

#include "engine/engine.h"
#include "engine/weights.h"

const eng_weights *eng_model_weights(const eng_model *m);

#endif
