/* One block step as one CUDA graph replay (issue 6): a wmgraph_block keeps, per block shape, the
 * cudaGraphExec captured from a caller's recording function, and replays it. The recording
 * function enqueues the whole block on one stream (per-block values copied from pinned staging by
 * its first node, the forwards, the copy of the results into pinned memory); the caller writes
 * the staging before each replay. Capture runs in cudaStreamCaptureModeThreadLocal, so a call
 * that is illegal inside a graph (allocation, synchronization, a pageable copy) fails the capture
 * instead of being recorded.
 *
 * Shapes are small integers the caller chooses (0 .. WMGRAPH_MAX_SHAPES-1): one for every
 * distinct launch sequence its blocks go through. The CUDA DiT needs one (graphs/README.md).
 *
 * WM_GRAPHS=0 in the environment turns graphs off: wmgraph_block_enabled answers 0 and the
 * caller runs its recording function eagerly on the stream instead (same kernels, same order).
 *
 * Errors: 0 or a negative code (-(cudaError_t), or the recording function's code), with a
 * message in err. Not thread-safe: one wmgraph_block per stream, driven from one thread. */
#ifndef WM_GRAPHS_BLOCK_GRAPH_H
#define WM_GRAPHS_BLOCK_GRAPH_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WMGRAPH_MAX_SHAPES 4

typedef struct wmgraph_block wmgraph_block;

/* Enqueues one block's work on the stream given at create; 0 or a negative code. */
typedef int (*wmgraph_record_fn)(void *ctx);

/* stream: a cudaStream_t (not the legacy default stream: it cannot be captured). */
int wmgraph_block_create(void *stream, wmgraph_block **out, char *err, size_t errlen);
/* Synchronizes the stream, then frees every graph. NULL is a no-op. */
void wmgraph_block_destroy(wmgraph_block *g);

/* 1 unless the environment says WM_GRAPHS=0 (read at each call: cheap, tests may flip it). */
int wmgraph_block_enabled(void);

/* Whether shape has a captured graph. */
int wmgraph_block_ready(const wmgraph_block *g, int shape);
/* Captures fn(ctx) as the graph of `shape` (replacing one captured before) without running it. On
 * failure the stream leaves capture mode and the shape has no graph. */
int wmgraph_block_capture(wmgraph_block *g, int shape, wmgraph_record_fn fn, void *ctx, char *err,
                          size_t errlen);
/* Launches the graph of `shape` on the stream; asynchronous (the caller synchronizes). */
int wmgraph_block_launch(wmgraph_block *g, int shape, char *err, size_t errlen);
/* Nodes in the graph of `shape` (0 without one), for reports. */
size_t wmgraph_block_nodes(const wmgraph_block *g, int shape);
/* Frees the graphs (a session whose buffers move must capture again). */
void wmgraph_block_clear(wmgraph_block *g);

#ifdef __cplusplus
}
#endif

#endif
