/* Checking CUDA runtime calls and kernel launches in the CUDA backend's .cu files.
 *
 * Every runtime call and every launch goes through one of these macros. On failure they name the
 * file, the line and the call text, and return from the enclosing function with the negative of
 * the cudaError_t, so a caller holding an int code can still get the CUDA name back with
 * cudaGetErrorName((cudaError_t)-rc). There is no global "last error" state: functions without an
 * error buffer report on stderr (WM_CUDA_CHECK), functions that take one fill it
 * (WM_CUDA_CHECK_MSG). Neither aborts: the server decides what a failed GPU means. */
#ifndef WM_ENGINE_CUDA_CHECK_H
#define WM_ENGINE_CUDA_CHECK_H

#include <stdio.h>

#include <cuda_runtime.h>

/* Invalid arguments to wmcuda_ functions share the code of the runtime's own (-1). */
#define WMCUDA_EINVAL (-(int)cudaErrorInvalidValue)

#define WM_CUDA_CHECK_AS_(expr, text)                                                              \
    do {                                                                                           \
        cudaError_t wm_cuda_err_ = (expr);                                                         \
        if (wm_cuda_err_ != cudaSuccess) {                                                         \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, text,                \
                    cudaGetErrorName(wm_cuda_err_), cudaGetErrorString(wm_cuda_err_));             \
            return -(int)wm_cuda_err_;                                                             \
        }                                                                                          \
    } while (0)

#define WM_CUDA_CHECK_MSG_AS_(expr, text, err, errlen)                                             \
    do {                                                                                           \
        cudaError_t wm_cuda_err_ = (expr);                                                         \
        if (wm_cuda_err_ != cudaSuccess) {                                                         \
            if ((err) != NULL && (errlen) > 0)                                                     \
                snprintf((err), (errlen), "%s:%d: %s failed: %s: %s", __FILE__, __LINE__, text,    \
                         cudaGetErrorName(wm_cuda_err_), cudaGetErrorString(wm_cuda_err_));        \
            return -(int)wm_cuda_err_;                                                             \
        }                                                                                          \
    } while (0)

/* A runtime call: WM_CUDA_CHECK(cudaMemsetAsync(p, 0, n, s)); */
#define WM_CUDA_CHECK(call)                  WM_CUDA_CHECK_AS_((call), #call)
#define WM_CUDA_CHECK_MSG(call, err, errlen) WM_CUDA_CHECK_MSG_AS_((call), #call, err, errlen)

/* Right after a kernel<<<...>>> launch: catches bad launch configurations at once (faults inside
 * the kernel surface at the next synchronizing call, which is checked too). */
#define WM_CUDA_CHECK_LAUNCH(kernel) WM_CUDA_CHECK_AS_(cudaGetLastError(), "launch of " #kernel)
#define WM_CUDA_CHECK_LAUNCH_MSG(kernel, err, errlen)                                              \
    WM_CUDA_CHECK_MSG_AS_(cudaGetLastError(), "launch of " #kernel, err, errlen)

/* Host-side orchestrators (dit_cuda.c, clip_cuda.c, vae_cuda.c) keep the message of a failing
 * call for their caller: "<file>:<line>: <call> failed (<code>: <detail>)", the detail being the
 * GEMM layer's last message for its codes (<= -10000, engine/cuda/gemm.h) when one is given, else
 * the CUDA error name. */
static inline void wmcuda_failure_text(char *dst, size_t n, const char *file, int line,
                                       const char *call, int rc, const char *gemm_detail) {
    if (!dst || !n) return;
    const char *detail = rc <= -10000 ? gemm_detail : cudaGetErrorName((cudaError_t)-rc);
    snprintf(dst, n, "%s:%d: %s failed (%d: %s)", file, line, call, rc, detail ? detail : "");
}

/* TRY for a wmcuda_ call (0 or a negative code), CK for a CUDA runtime call; on failure both
 * return fail_(ctx, rc, __LINE__, "call text"), which records the message and returns rc. */
#define WMCUDA_TRY_WITH(fail_, ctx, call)                                                          \
    do {                                                                                           \
        const int rc_ = (call);                                                                    \
        if (rc_ != 0) return fail_(ctx, rc_, __LINE__, #call);                                     \
    } while (0)
#define WMCUDA_CK_WITH(fail_, ctx, call)                                                           \
    do {                                                                                           \
        const cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess) return fail_(ctx, -(int)e_, __LINE__, #call);                       \
    } while (0)

#endif
