/* The Matrix-Game-2.0 causal DiT on one GPU (bf16 weights and activations, fp32 accumulation):
 * the same forward as the float32 CPU reference engine/cpu/dit_cpu.c, and a block loop that
 * mirrors engine/session.c (few-step sampler with re-noising, context pass, RoPE rebase), so a
 * GPU session can be compared with a CPU session given the same seed, conditioning and actions.
 *
 * A wmcuda_dit holds what all sessions of one model share: every parameter uploaded once as
 * bf16 (round to nearest even), the RoPE tables, the cuBLASLt handle and one CUDA stream (the
 * main attentions are fused, engine/cuda/attention.h: no score scratch). A wmcuda_dit_session
 * holds one player's state: the per-layer caches of W frame slots (self-attention K/V
 * [W][S][D], mouse K/V [W][S][Hm], keyboard K/V [W][Hk]), the image-context cross K/V
 * [clip_tokens][D], the slot -> frame map (host bookkeeping, turned into the attention
 * visibility table as in dit_cpu.c), the fp32 residual stream and the activation scratch of one
 * forward. Everything is allocated by the _create functions; a forward allocates no device
 * memory (the GEMM table fills its host-side descriptors on the first call of each shape).
 * Sessions of one model run on the model's stream, one forward after another.
 *
 * Precision (model-dit.md 10): GEMMs bf16 x bf16 -> fp32 accumulate -> bf16 (fp32 for the patch
 * embedding, which writes the residual stream, and the head); the residual stream is fp32 (the
 * reference's is bf16: a wider residual is more accurate and differs at bf16 noise level); norm
 * statistics, softmax and RoPE in fp32 from fp64 tables; the timestep sinusoid in fp64;
 * modulation tables, attention probabilities and caches in bf16; the sampler's x0 in fp64 and
 * its re-noising in fp32 on fp32 latents, bit for bit the CPU session's loop.
 *
 * Ownership: the caller's eng_weights may be freed after wmcuda_dit_create. Sessions borrow their
 * model, which must outlive them. Errors: functions return 0 or a negative code (-1 bad
 * argument, -(cudaError_t), or a wmcuda_gemm code) and write a message naming the failing call
 * into err (which may be NULL). Host pointers are fp32 unless stated. */
#ifndef WM_ENGINE_CUDA_DIT_CUDA_H
#define WM_ENGINE_CUDA_DIT_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WMCUDA_DIT_MAX_SLOTS 16 /* the attention window W in latent frames */
#define WMCUDA_DIT_ESTATE (-30001) /* call not valid in the session's state (cross K/V missing) */

typedef struct wmcuda_dit wmcuda_dit;
typedef struct wmcuda_dit_session wmcuda_dit_session;

/* Uploads w (any config the CPU reference runs, W <= 16, kdim <= 16, head_dim 32, 64 or 128) and
 * builds the RoPE tables for positions 0 .. cfg.rope_pos_limit + W - 1 (main 3-D and action).
 * The environment variable WMCUDA_ATTN_VARIANT (a wmcuda_attention variant number, read here)
 * picks another tile configuration of the fused attention, for benchmarks. */
int wmcuda_dit_create(const eng_weights *w, wmcuda_dit **out, char *err, size_t errlen);
void wmcuda_dit_destroy(wmcuda_dit *m);
const eng_config *wmcuda_dit_config(const wmcuda_dit *m);
/* Device bytes held by the model (weights, tables, handle workspace). */
size_t wmcuda_dit_device_bytes(const wmcuda_dit *m);
/* The model's stream (a cudaStream_t). */
void *wmcuda_dit_stream(const wmcuda_dit *m);

/* seed, session_id: the sampler noise streams, as eng_session_params. */
int wmcuda_dit_session_create(wmcuda_dit *m, uint64_t seed, uint32_t session_id,
                              wmcuda_dit_session **out, char *err, size_t errlen);
void wmcuda_dit_session_destroy(wmcuda_dit_session *s);
size_t wmcuda_dit_session_device_bytes(const wmcuda_dit_session *s);
/* Back to block 0: caches zeroed, slots empty, RoPE origin 0, cross K/V to be prepared again. */
int wmcuda_dit_session_reset(wmcuda_dit_session *s, char *err, size_t errlen);

/* Image context -> cross-attention K/V of every layer (once per session, model-dit.md 4.4, 7.5).
 * clip: [clip_tokens][clip_dim]. */
int wmcuda_dit_prepare_cross(wmcuda_dit_session *s, const float *clip, char *err, size_t errlen);

/* Before the forwards of block `block`: moves the RoPE origin when this block's positions would
 * reach cfg.rope_pos_limit, rotating the cached keys to match, exactly when and by how much
 * engine/session.c does (README "Long sessions"); *rope_base gets the origin to pass to
 * wmcuda_dit_forward. Idempotent for one block. */
int wmcuda_dit_begin_block(wmcuda_dit_session *s, int64_t block, int64_t *rope_base, char *err,
                           size_t errlen);

/* One forward, mirroring dit_inputs of engine/cpu/dit_cpu.h for a streaming block. The host
 * buffers are read with cudaMemcpyAsync on the model's stream; the call returns after v_out is
 * written. */
typedef struct wmcuda_dit_inputs {
    int nframes;           /* must be cfg.frames_per_block */
    int64_t frame0;        /* absolute latent index of the first frame (multiple of T) */
    int64_t rope_base;     /* RoPE position = absolute frame - rope_base */
    const float *x;        /* [16][F][H][W] noisy latents */
    const float *cond;     /* [20][F][H][W] mask + image-latent conditioning */
    const float *t;        /* [F] timestep per frame */
    const float *mouse_win; /* [F][P * 2] mouse windows (m-major), or NULL without a mouse branch */
    const float *kb_win;   /* [F][P][kdim] keyboard vectors of the windows' video frames */
} wmcuda_dit_inputs;
/* Writes the frames' K/V into the session's slots and v_out [16][F][H][W]. The cross K/V must be
 * prepared. */
int wmcuda_dit_forward(wmcuda_dit_session *s, const wmcuda_dit_inputs *in, float *v_out,
                       char *err, size_t errlen);

/* One block of engine/session.c's loop on the device, for block wmcuda_dit_next_block(s): noise
 * from the same Philox streams as the CPU session (seed, session_id, block, step), the K sampler
 * steps (x0 in float64, re-noising in float32), then the context pass at t = 0. cond [20][T][H][W]
 * is the block's slice of cond_concat; mouse_win [T][P*2] (NULL without mouse) and kb_win
 * [T][P][kdim] its action windows (eng_action_windows). latents_out [16][T][H][W] gets the final
 * x0. timings (optional): device time per forward (cudaEvents) and host wall time of the block. */
int wmcuda_dit_run_block(wmcuda_dit_session *s, const float *cond, const float *mouse_win,
                         const float *kb_win, float *latents_out, eng_block_timings *timings,
                         char *err, size_t errlen);
int64_t wmcuda_dit_next_block(const wmcuda_dit_session *s);

/* Blocks run as one CUDA graph replay each (graphs/block_graph.h, graphs/README.md): every value
 * that changes from block to block (noise block counter, RoPE position, the frames' cache slots,
 * the slot visibility) is staged by the host in pinned memory and copied to a small device struct
 * by the graph's first node, as are the conditioning slice and action windows; the final x0 comes
 * back to pinned memory by its last node. One graph per session, captured at its first block
 * (the model's first block ever runs eagerly to prepare the GEMM table, and captures at the
 * next); the RoPE rebase runs eagerly before a replay when due. Eager execution runs the same
 * body (same kernels, same order) and gives bit-identical results. mode: 1 graphs, 0 eager, -1
 * (default) graphs unless the environment says WM_GRAPHS=0. While the profiler is on, blocks run
 * eagerly. In a replayed block, eng_block_timings.forward_ms holds the replay's device time
 * divided evenly between its forwards. */
void wmcuda_dit_session_set_graphs(wmcuda_dit_session *s, int mode);
typedef struct wmcuda_dit_block_stats {
    int graph;          /* the last block was a graph replay (0: eager) */
    double device_ms;   /* device time of the whole block (cudaEvents around it) */
    double enqueue_ms;  /* host time to enqueue it: the launch, or every eager launch */
    double wall_ms;     /* host wall time of wmcuda_dit_run_block */
    size_t graph_nodes; /* nodes in the session's graph (0: none captured) */
} wmcuda_dit_block_stats;
void wmcuda_dit_last_block(const wmcuda_dit_session *s, wmcuda_dit_block_stats *out);

/* Per-component device time, for benchmarks: while on, every forward brackets its parts with
 * cudaEvents on the model's stream; _read adds up the time since the last read (synchronizing
 * the stream) into ms[WMCUDA_DIT_PROF_COUNT] and starts over. The brackets cost a little time. */
enum {
    WMCUDA_DIT_PROF_EMBED = 0,  /* patchify, patch embedding, time path, head, unpatchify */
    WMCUDA_DIT_PROF_PROJ,       /* self-attention q/k/v/o and cross-attention q/o GEMMs */
    WMCUDA_DIT_PROF_SELF_ATTN,  /* fused self-attention over the visible slots */
    WMCUDA_DIT_PROF_CROSS_ATTN, /* fused cross-attention over the image tokens */
    WMCUDA_DIT_PROF_FFN,        /* the two FFN GEMMs (GELU in the epilogue) */
    WMCUDA_DIT_PROF_MOUSE,      /* the mouse branch but its attention core */
    WMCUDA_DIT_PROF_KEYBOARD,   /* the keyboard branch but its attention core */
    WMCUDA_DIT_PROF_NORM,       /* LayerNorms, QK RMSNorm + RoPE, residual updates (fused with a
                                   LayerNorm or the action branches' first read where possible) */
    WMCUDA_DIT_PROF_ACTION_ATTN, /* the mouse and keyboard attention cores (out of the two above) */
    WMCUDA_DIT_PROF_COUNT
};
int wmcuda_dit_profile(wmcuda_dit *m, int on); /* creates its events on the first call */
int wmcuda_dit_profile_read(wmcuda_dit *m, double ms[WMCUDA_DIT_PROF_COUNT]);
const char *wmcuda_dit_profile_name(int component);

#ifdef __cplusplus
}
#endif

#endif
