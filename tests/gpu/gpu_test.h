/* What the GPU-host test programs share: setup-error macros (a failing CUDA or engine call is a
 * setup error, exit 2, not a failed check), host allocation, timing, the relative error every
 * comparison uses, and the median of timings. One test program is one translation unit, so the
 * error buffer lives here. */
#ifndef WM_TESTS_GPU_GPU_TEST_H
#define WM_TESTS_GPU_GPU_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cuda_runtime.h>

static char err[1024]; /* the message of the last engine / wmcuda call */

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,               \
                    cudaGetErrorName(e_), cudaGetErrorString(e_));                                 \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* An engine or wmcuda call that must succeed. */
#define MUST(call)                                                                                 \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #call, rc_, err);   \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* Zeroed host memory or exit 2. */
static inline void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ||out - ref|| / ||ref|| in float64 (the absolute norm when ref is 0); infinite when out holds a
 * non-finite value, so no bound passes it. */
static inline double rel_err(const float *out, const float *ref, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        const double d = (double)out[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static inline int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
