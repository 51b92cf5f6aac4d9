/* Player actions per video frame (keys held, mouse deltas), the action-script file format used by
 * wmgen and the load tester, and the window index arithmetic of the action module. */
#ifndef WM_ENGINE_ACTIONS_H
#define WM_ENGINE_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"

/* One video frame's conditioning: the keyboard vector (kdim entries, 0/1 in the releases) and the
 * mouse pair (component 0 vertical camera delta, 1 horizontal; unused by templerun). */
typedef struct eng_action_frame {
    float keyboard[ENG_MAX_KDIM];
    float mouse[2];
} eng_action_frame;

typedef struct eng_action_script {
    eng_action_frame *frames;
    size_t count;
} eng_action_script;

/* Key names of a variant, in keyboard-vector order:
 *   universal: forward back left right
 *   gta_drive: forward back
 *   templerun: no-move jump slide turn-left turn-right left-side right-side
 * Returns the index or -1. */
int eng_action_key_index(eng_variant v, const char *name);
const char *eng_action_key_name(eng_variant v, int index); /* NULL past kdim */

/* Parses an action script (format in engine/ACTIONS.md). Rejects unknown fields, unknown key
 * names, wrong vector lengths, non-finite numbers, mouse values for templerun, and scripts over
 * ENG_ACTIONS_MAX_FRAMES. On error *out is left empty and the message names the entry index. */
#define ENG_ACTIONS_MAX_FRAMES (1u << 22)
int eng_actions_parse_json(const char *text, size_t len, const char *origin, const eng_config *cfg,
                           eng_action_script *out, char *err, size_t errlen);
int eng_actions_load(const char *path, const eng_config *cfg, eng_action_script *out, char *err,
                     size_t errlen);
/* A deterministic random script of `nframes` video frames in segments of 12 frames, each segment
 * holding one random key combination and one random mouse move of +-0.1 (like the reference's
 * offline action generator). */
int eng_actions_random(const eng_config *cfg, uint64_t seed, size_t nframes, eng_action_script *out);
void eng_actions_free(eng_action_script *s);
/* Frame `i`; past the end of the script the last frame holds (an empty script gives no action). */
eng_action_frame eng_actions_at(const eng_action_script *s, size_t i);

/* Window index arithmetic (model-dit.md 3.3): latent frame f reads video frames
 * j_m(f) = max(0, 4f - 12 + m), m = 0 .. P-1. */
static inline int64_t eng_action_window_index(const eng_config *c, int64_t latent_frame, int m) {
    int64_t j = (int64_t)c->vae_time_ratio * latent_frame - eng_action_window(c) + m;
    return j < 0 ? 0 : j;
}

#endif
