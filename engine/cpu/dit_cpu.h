/* One forward of the causal DiT on the CPU (float32), over a group of latent frames whose keys and
 * values are written into a frame store before attention reads it.
 *
 * The frame store holds per layer the self-attention K/V, the mouse K/V (per spatial position) and
 * the keyboard K/V of `cap` latent frames; frame f lives in slot f mod cap. A query frame sees the
 * stored frames of its attention window, [max(0, b + T - W), b + T - 1] with b the first frame of
 * its block (block-causal local attention, model-dit.md 4.5 e). Streaming uses cap = W and a
 * forward over one block: the store is the rolling KV cache. The cache-free check uses cap = all
 * frames and a forward over the whole sequence at once: the same rule is then a mask. */
#ifndef WM_ENGINE_CPU_DIT_CPU_H
#define WM_ENGINE_CPU_DIT_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "engine/weights.h"

typedef struct dit_layer_store {
    float *k, *v;   /* [cap][S][D], keys after RMSNorm and RoPE */
    float *mk, *mv; /* [cap][S][Hm] mouse keys/values (action layers with a mouse branch) */
    float *kk, *kv; /* [cap][Hk] keyboard keys/values (action layers) */
    float *ck, *cv; /* [clip_tokens][D] cross-attention keys/values of the image context */
} dit_layer_store;

typedef struct dit_store {
    int cap;
    int64_t *slot_frame; /* [cap] absolute frame held by each slot, -1 when empty */
    int cross_ready;     /* cross K/V computed (first forward of the session) */
    dit_layer_store layers[ENG_MAX_LAYERS];
    float *arena;
    size_t arena_floats;
} dit_store;

int dit_store_create(dit_store *st, const eng_config *c, int cap, char *err, size_t errlen);
void dit_store_destroy(dit_store *st);
void dit_store_reset(dit_store *st);
/* Rotates every stored key (self-attention, mouse, keyboard) back by `delta` temporal positions,
 * so that after the session subtracts delta from its RoPE positions the stored keys read as if
 * they had been written with the new positions (model-dit.md 10.12; README "Long sessions"). */
void dit_store_rebase(dit_store *st, const eng_config *c, int64_t delta);

/* Observer for layer-by-layer comparison: called with each named intermediate. */
typedef void (*dit_trace_fn)(void *user, const char *name, const float *data, int ndim,
                             const int64_t *shape);

typedef struct dit_inputs {
    int nframes;            /* F: 3 for a streaming block, 3K for the cache-free check */
    int64_t frame0;         /* absolute latent index of the first frame (multiple of 3) */
    int64_t rope_base;      /* RoPE position = absolute frame - rope_base */
    const float *x;         /* [16][F][H][W] noisy latents */
    const float *cond;      /* [20][F][H][W] mask + image-latent conditioning */
    const float *t;         /* [F] timestep per frame */
    const float *mouse_win; /* [F][P * mouse_dim] mouse window per frame (m-major), or NULL */
    const float *kb_win;    /* [F][P][kdim] keyboard vectors of the window's video frames */
    dit_trace_fn trace;     /* optional: hidden state after each transformer block */
    void *trace_user;
} dit_inputs;

typedef struct dit_workspace dit_workspace;
/* Scratch for forwards of up to `max_frames` frames over a store of `cap` slots. */
dit_workspace *dit_workspace_create(const eng_config *c, int max_frames, int cap);
void dit_workspace_destroy(dit_workspace *ws);

/* Image context -> cross-attention K/V of every layer (once per session). clip: [tokens][clip_dim].
 */
void dit_cpu_prepare_cross(const eng_weights *w, const float *clip, dit_store *st,
                           dit_workspace *ws);

/* The forward: writes the frames' K/V into the store and the velocity prediction into
 * v_out [16][F][H][W]. The store's cross K/V must be prepared. */
int dit_cpu_forward(const eng_weights *w, const dit_inputs *in, dit_store *st, dit_workspace *ws,
                    float *v_out, char *err, size_t errlen);

/* Building blocks exposed for the unit tests. */
void dit_timestep_sinusoid(int freq_dim, float t, float *out); /* [freq_dim] */
void dit_patchify(const eng_config *c, const float *x, const float *cond, int nframes,
                  float *patches); /* [F*S][36*4] */
void dit_unpatchify(const eng_config *c, const float *tokens, int nframes,
                    float *v); /* [F*S][64] */
/* h = LN(x; eps) * (1 + scale[f]) + shift[f] for the F*S tokens of F frames ([F*S][D]); the
 * frame's shift/scale rows are frame_stride floats apart. */
void dit_norm_modulate(const float *x, float *h, int F, int S, int D, float eps, const float *shift,
                       const float *scale, size_t frame_stride);

#endif
