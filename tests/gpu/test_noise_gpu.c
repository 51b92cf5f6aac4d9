/* GPU check of the noise streams: the CUDA fills (engine/cuda/noise_cuda.h) must equal the host
 * fills (engine/noise.h) bit for bit, for normal and uniform streams of several sizes, seeds and
 * stream words, including an odd size and an unaligned destination. Runs on the GPU host (not in
 * ctest); prints one line per stream with the mismatch count and the first mismatch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "engine/cuda/noise_cuda.h"
#include "engine/noise.h"

static int g_failures;

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                   \
                    cudaGetErrorString(e_));                                                       \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    size_t n;
    uint64_t seed;
    uint32_t s0, s1, s2;
    size_t dst_offset; /* elements: 1 makes the device pointer 4-byte but not 16-byte aligned */
    int uniform;
    float scale, offset;
} case_t;

static void run_case(const case_t *c, float *dev_base, float *host_dev, float *host_ref) {
    float *dev = dev_base + c->dst_offset;
    int rc;
    if (c->uniform) {
        rc =
            wmcuda_uniform_fill(dev, c->n, c->scale, c->offset, c->seed, c->s0, c->s1, c->s2, NULL);
        eng_uniform_fill(host_ref, c->n, c->scale, c->offset, c->seed, c->s0, c->s1, c->s2);
    } else {
        rc = wmcuda_noise_fill(dev, c->n, c->seed, c->s0, c->s1, c->s2, NULL);
        eng_noise_fill(host_ref, c->n, c->seed, c->s0, c->s1, c->s2);
    }
    if (rc != 0) {
        printf("FAIL %s n=%zu: wmcuda fill returned %d\n", c->uniform ? "uniform" : "normal", c->n,
               rc);
        g_failures++;
        return;
    }
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(host_dev, dev, c->n * sizeof(float), cudaMemcpyDeviceToHost));

    size_t bad = 0, first = (size_t)-1;
    if (memcmp(host_dev, host_ref, c->n * sizeof(float)) != 0) {
        for (size_t i = 0; i < c->n; i++) {
            uint32_t a, b;
            memcpy(&a, &host_dev[i], 4);
            memcpy(&b, &host_ref[i], 4);
            if (a != b) {
                if (bad == 0) first = i;
                bad++;
            }
        }
    }
    printf("%s %-7s n=%-8zu seed=%016llx s=(%08x,%08x,%08x) off=%zu: %zu mismatches",
           bad ? "FAIL" : "ok  ", c->uniform ? "uniform" : "normal", c->n,
           (unsigned long long)c->seed, c->s0, c->s1, c->s2, c->dst_offset, bad);
    if (bad)
        printf(", first at %zu: device %.9g (%a) host %.9g (%a)", first, (double)host_dev[first],
               (double)host_dev[first], (double)host_ref[first], (double)host_ref[first]);
    printf("\n");
    if (bad) g_failures++;
}

int main(void) {
    int dev_id;
    struct cudaDeviceProp prop;
    CK(cudaGetDevice(&dev_id));
    CK(cudaGetDeviceProperties(&prop, dev_id));
    printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);

    const size_t block = (size_t)3 * 16 * 44 * 80; /* one block's noise: 168960 */
    const case_t cases[] = {
        {block, 0, 0, 0, ENG_NOISE_INITIAL, 0, 0, 0, 0},
        {block, 42, 1, 7, 2, 0, 0, 0, 0},
        {block, 0xDEADBEEFCAFEF00Dull, 123456, 0, 1, 1, 0, 0, 0},
        {1000003, 42, 9, 8, 3, 0, 0, 0, 0},
        {1000003, 0xDEADBEEFCAFEF00Dull, 2, ENG_STREAM_COND, ENG_COND_WHAT_CONCAT, 1, 0, 0, 0},
        {(size_t)16 * 150 * 44 * 80, 7, 1, 0, 0, 0, 0, 0, 0}, /* a full 150-frame initial noise */
        {1, 42, 0, 0, 0, 0, 0, 0, 0},
        {3, 42, 0, 0, 0, 1, 0, 0, 0},
        {1000003, 42, wm_fnv1a32("blocks.0.self_attn.q.weight"), ENG_STREAM_WEIGHTS,
         ENG_STREAM_WEIGHTS, 0, 1, 0.02f, 0.0f},
        {1000001, 5, wm_fnv1a32("blocks.0.norm3.weight"), ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS, 1,
         1, 0.1f, 1.0f},
    };
    size_t maxn = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].n + cases[i].dst_offset > maxn) maxn = cases[i].n + cases[i].dst_offset;

    float *dev = NULL;
    CK(cudaMalloc((void **)&dev, maxn * sizeof(float)));
    float *a = malloc(maxn * sizeof(float)), *b = malloc(maxn * sizeof(float));
    if (!a || !b) {
        fprintf(stderr, "out of host memory\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], dev, a, b);

    /* argument checks: a stream holds 2^34 elements */
    int rc = wmcuda_noise_fill(dev, ((size_t)1 << 34) + 1, 0, 0, 0, 0, NULL);
    printf("%s oversize fill rejected: rc %d\n", rc < 0 ? "ok  " : "FAIL", rc);
    if (rc >= 0) g_failures++;
    rc = wmcuda_noise_fill(dev, 0, 0, 0, 0, 0, NULL);
    printf("%s empty fill is a no-op: rc %d\n", rc == 0 ? "ok  " : "FAIL", rc);
    if (rc != 0) g_failures++;

    free(a);
    free(b);
    CK(cudaFree(dev));
    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}
