/* Cost model of one generation step: FLOPs (2 per multiply-add, dense) and the minimum bytes, per
 * component, from the model's shapes alone (model-dit.md 9, model-vae-clip.md 8). The benchmark
 * divides measured times by these to report the fraction of the floor; tests/test_flops.c checks
 * them against the specs' tables. */
#ifndef WM_ENGINE_FLOPS_H
#define WM_ENGINE_FLOPS_H

#include "engine/clip.h"
#include "engine/config.h"
#include "engine/vae.h"

/* One DiT forward of a streaming block that attends over `window_frames` latent frames (the
 * block's own frames included: frames_per_block at block 0, local_attn_size in steady state).
 * The per-session work (image MLP, cross-attention K/V of the context) is not included. The
 * components match the GPU profiler's (engine/cuda/dit_cuda.h WMCUDA_DIT_PROF_*). */
typedef struct eng_dit_cost {
    double embed;      /* patch embedding, time path, head */
    double proj;       /* self-attention q/k/v/o, cross-attention q/o */
    double self_attn;  /* QK^T and PV over the window */
    double cross_attn; /* QK^T and PV over the image tokens */
    double ffn;
    double mouse;    /* mouse MLP, t_qkv, mouse_attn_q, proj_mouse and its attention core */
    double keyboard; /* keyboard embedding, kv, proj_keyboard and its attention core */
    double total;
    /* Bytes every forward must move at least: the weights it uses once (bf16) and the self-
     * attention and mouse caches it reads and writes (bf16). */
    double weight_bytes, cache_bytes;
} eng_dit_cost;
void eng_dit_forward_cost(const eng_config *c, int window_frames, eng_dit_cost *out);

/* VAE decode of nlat latents of lat_h x lat_w; `first`: the session's first call (its first latent
 * yields one frame). */
double eng_vae_decode_flops(const vae_config *c, int nlat, int first, int lat_h, int lat_w);
/* VAE encode of nframes video frames of height x width; `first`: the start image (1 frame). */
double eng_vae_encode_flops(const vae_config *c, int nframes, int first, int height, int width);
/* CLIP visual tower on one image (the blocks that run). */
double eng_clip_encode_flops(const clip_config *c);

#endif
