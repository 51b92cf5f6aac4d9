/* The device side of model_internal.h in a build with CUDA: the probe that AUTO relies on, and the
 * model's and sessions' GPU objects (engine/cuda/dit_cuda.h, clip_cuda.h) behind the eng_gpu_*
 * calls, with wmcuda error codes turned into engine codes. Every call runs on the DiT's stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "engine/cuda/clip_cuda.h"
#include "engine/cuda/dit_cuda.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/errors.h"
#include "engine/model_internal.h"

struct eng_gpu_model {
    wmcuda_dit *dit;
    wmcuda_clip *clip; /* NULL without CLIP */
};

struct eng_gpu_session {
    wmcuda_dit_session *s;
};

/* -(cudaError_t) and wmcuda codes -> ENG_E*, keeping the message the wmcuda call wrote. */
static int eng_code(int rc) {
    if (rc == -(int)cudaErrorInvalidValue) return ENG_EINVAL;
    if (rc == -(int)cudaErrorMemoryAllocation) return ENG_ENOMEM;
    return ENG_EIO;
}

static int wrap(int rc, const char *what, const char *msg, char *err, size_t errlen) {
    return rc ? eng_errorf(err, errlen, eng_code(rc), "%s: %s", what, msg) : 0;
}

/* A device answers when it is there and runs one of this build's kernels: a card of another
 * architecture than the build's (CMAKE_CUDA_ARCHITECTURES) fails here, not in the first block. */
int eng_gpu_probe(char *info, size_t infolen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        /* without any NVIDIA driver the runtime says "insufficient driver": say which it is */
        const int driver = access("/dev/nvidiactl", F_OK) == 0;
        snprintf(info, infolen, "cudaGetDeviceCount: %s (%s)%s", cudaGetErrorString(e),
                 cudaGetErrorName(e), driver ? "" : "; no NVIDIA driver (no /dev/nvidiactl)");
        cudaGetLastError();
        return 0;
    }
    if (n < 1) {
        snprintf(info, infolen, "cudaGetDeviceCount found no device");
        return 0;
    }
    int dev = 0;
    struct cudaDeviceProp prop;
    e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, dev);
    float *f = NULL;
    wmcuda_bf16 *b = NULL;
    if (e == cudaSuccess) e = cudaMalloc((void **)&f, 64);
    if (e == cudaSuccess) e = cudaMalloc((void **)&b, 64);
    if (e == cudaSuccess) e = cudaMemset(f, 0, 64);
    if (e == cudaSuccess) {
        const int rc = wmcuda_convert_f32_to_bf16(f, b, 16, NULL);
        e = rc ? (cudaError_t)-rc : cudaDeviceSynchronize();
    }
    cudaFree(f), cudaFree(b);
    if (e != cudaSuccess) {
        snprintf(info, infolen, "device %d does not run this build's kernels: %s (%s)", dev,
                 cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return 0;
    }
    int drv = 0;
    cudaDriverGetVersion(&drv);
    snprintf(info, infolen, "device %d: %s, sm_%d%d, %.1f GiB, driver for CUDA %d.%d", dev,
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30), drv / 1000,
             drv % 1000 / 10);
    return 1;
}

int eng_gpu_model_create(const eng_weights *w, const clip_weights *clip, eng_gpu_model **out,
                         char *err, size_t errlen) {
    *out = NULL;
    eng_gpu_model *g = calloc(1, sizeof *g);
    if (!g) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    char msg[512] = "";
    int rc = wrap(wmcuda_dit_create(w, &g->dit, msg, sizeof msg), "CUDA DiT", msg, err, errlen);
    if (!rc && clip)
        rc = wrap(wmcuda_clip_create(clip, wmcuda_dit_stream(g->dit), &g->clip, msg, sizeof msg),
                  "CUDA CLIP", msg, err, errlen);
    if (rc) {
        eng_gpu_model_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

void eng_gpu_model_destroy(eng_gpu_model *g) {
    if (!g) return;
    wmcuda_clip_destroy(g->clip);
    wmcuda_dit_destroy(g->dit);
    free(g);
}

size_t eng_gpu_model_device_bytes(const eng_gpu_model *g) {
    return wmcuda_dit_device_bytes(g->dit) + (g->clip ? wmcuda_clip_device_bytes(g->clip) : 0);
}

int eng_gpu_memory(size_t *free_bytes, size_t *total_bytes, char *err, size_t errlen) {
    const cudaError_t e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e != cudaSuccess)
        return eng_errorf(err, errlen, ENG_EIO, "cudaMemGetInfo: %s", cudaGetErrorString(e));
    return 0;
}

void *eng_gpu_model_stream(const eng_gpu_model *g) {
    return wmcuda_dit_stream(g->dit);
}

int eng_gpu_has_clip(const eng_gpu_model *g) {
    return g->clip != NULL;
}

int eng_gpu_clip_encode(eng_gpu_model *g, const float *image, int height, int width, float *tokens,
                        char *err, size_t errlen) {
    if (!g->clip) return eng_errorf(err, errlen, ENG_ESTATE, "the model has no CLIP on the GPU");
    char msg[512] = "";
    return wrap(wmcuda_clip_encode(g->clip, image, height, width, tokens, msg, sizeof msg),
                "CUDA CLIP encode", msg, err, errlen);
}

int eng_gpu_session_create(eng_gpu_model *g, uint64_t seed, uint32_t session_id,
                           eng_gpu_session **out, char *err, size_t errlen) {
    *out = NULL;
    eng_gpu_session *s = calloc(1, sizeof *s);
    if (!s) return eng_errorf(err, errlen, ENG_ENOMEM, "out of memory");
    char msg[512] = "";
    const int rc = wrap(wmcuda_dit_session_create(g->dit, seed, session_id, &s->s, msg, sizeof msg),
                        "CUDA DiT session", msg, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void eng_gpu_session_destroy(eng_gpu_session *s) {
    if (!s) return;
    wmcuda_dit_session_destroy(s->s);
    free(s);
}

int eng_gpu_session_reset(eng_gpu_session *s, char *err, size_t errlen) {
    char msg[512] = "";
    return wrap(wmcuda_dit_session_reset(s->s, msg, sizeof msg), "CUDA DiT session reset", msg, err,
                errlen);
}

int eng_gpu_session_prepare_cross(eng_gpu_session *s, const float *clip, char *err, size_t errlen) {
    char msg[512] = "";
    return wrap(wmcuda_dit_prepare_cross(s->s, clip, msg, sizeof msg), "CUDA DiT image context",
                msg, err, errlen);
}

int eng_gpu_session_run_block(eng_gpu_session *s, const float *cond, const float *mouse_win,
                              const float *kb_win, float *latents_out, eng_block_timings *timings,
                              char *err, size_t errlen) {
    char msg[512] = "";
    return wrap(
        wmcuda_dit_run_block(s->s, cond, mouse_win, kb_win, latents_out, timings, msg, sizeof msg),
        "CUDA DiT block", msg, err, errlen);
}
