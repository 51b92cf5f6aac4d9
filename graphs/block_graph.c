/* Capture and replay of block graphs (block_graph.h): a thin layer over cudaStreamBeginCapture /
 * cudaGraphInstantiate / cudaGraphLaunch that keeps the failure paths in one place, so that a
 * capture interrupted by an error never leaves the stream in capture mode. */
#include "graphs/block_graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

struct wmgraph_block {
    cudaStream_t stream;
    cudaGraphExec_t exec[WMGRAPH_MAX_SHAPES];
    size_t nodes[WMGRAPH_MAX_SHAPES];
};

static int cuda_fail(cudaError_t e, const char *call, char *err, size_t errlen) {
    if (err && errlen)
        snprintf(err, errlen, "block_graph: %s failed (%s: %s)", call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
    return -(int)e;
}

int wmgraph_block_enabled(void) {
    const char *v = getenv("WM_GRAPHS");
    return !(v && strcmp(v, "0") == 0);
}

int wmgraph_block_create(void *stream, wmgraph_block **out, char *err, size_t errlen) {
    *out = NULL;
    if (!stream) {
        if (err && errlen) snprintf(err, errlen, "block_graph: the legacy stream cannot be captured");
        return -(int)cudaErrorInvalidValue;
    }
    wmgraph_block *g = calloc(1, sizeof *g);
    if (!g) return cuda_fail(cudaErrorMemoryAllocation, "calloc", err, errlen);
    g->stream = (cudaStream_t)stream;
    *out = g;
    return 0;
}

static void drop(wmgraph_block *g, int shape) {
    if (g->exec[shape]) cudaGraphExecDestroy(g->exec[shape]);
    g->exec[shape] = NULL;
    g->nodes[shape] = 0;
}

void wmgraph_block_clear(wmgraph_block *g) {
    if (!g) return;
    cudaStreamSynchronize(g->stream);
    for (int i = 0; i < WMGRAPH_MAX_SHAPES; i++) drop(g, i);
}

void wmgraph_block_destroy(wmgraph_block *g) {
    if (!g) return;
    wmgraph_block_clear(g);
    free(g);
}

static int bad_shape(int shape, char *err, size_t errlen) {
    if (shape >= 0 && shape < WMGRAPH_MAX_SHAPES) return 0;
    if (err && errlen) snprintf(err, errlen, "block_graph: shape %d out of range", shape);
    return -(int)cudaErrorInvalidValue;
}

int wmgraph_block_ready(const wmgraph_block *g, int shape) {
    return g && shape >= 0 && shape < WMGRAPH_MAX_SHAPES && g->exec[shape] != NULL;
}

size_t wmgraph_block_nodes(const wmgraph_block *g, int shape) {
    return wmgraph_block_ready(g, shape) ? g->nodes[shape] : 0;
}

int wmgraph_block_capture(wmgraph_block *g, int shape, wmgraph_record_fn fn, void *ctx, char *err,
                          size_t errlen) {
    int rc = bad_shape(shape, err, errlen);
    if (rc) return rc;
    drop(g, shape);
    cudaError_t e = cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return cuda_fail(e, "cudaStreamBeginCapture", err, errlen);
    rc = fn(ctx);
    cudaGraph_t graph = NULL;
    /* always end the capture, so the stream is usable again whatever happened inside */
    e = cudaStreamEndCapture(g->stream, &graph);
    if (rc) {
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError(); /* the invalidated capture's sticky-free error */
        if (err && errlen) snprintf(err, errlen, "block_graph: recording shape %d failed (%d)", shape, rc);
        return rc;
    }
    if (e != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        return cuda_fail(e, "cudaStreamEndCapture (an operation illegal in a graph?)", err, errlen);
    }
    size_t n = 0;
    cudaGraphGetNodes(graph, NULL, &n);
    e = cudaGraphInstantiate(&g->exec[shape], graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        g->exec[shape] = NULL;
        return cuda_fail(e, "cudaGraphInstantiate", err, errlen);
    }
    g->nodes[shape] = n;
    return 0;
}

int wmgraph_block_launch(wmgraph_block *g, int shape, char *err, size_t errlen) {
    int rc = bad_shape(shape, err, errlen);
    if (rc) return rc;
    if (!g->exec[shape]) {
        if (err && errlen) snprintf(err, errlen, "block_graph: shape %d has no graph", shape);
        return -(int)cudaErrorInvalidValue;
    }
    const cudaError_t e = cudaGraphLaunch(g->exec[shape], g->stream);
    return e == cudaSuccess ? 0 : cuda_fail(e, "cudaGraphLaunch", err, errlen);
}
