/* GPU check of the CLIP encoder (engine/cuda/clip_cuda.h) against the float32 CPU reference
 * clip_encode (engine/clip.h), then its timing at full size. Runs on the GPU host only (not a
 * ctest): tests/gpu/run_clip_gpu.sh.
 *
 * Random images in [-1, 1] (splitmix64, independent of the engine's generator), synthetic weights
 * (clip_weights_synthetic). rel err = ||gpu - cpu|| / ||cpu|| over all 257 x width tokens; a
 * non-finite value fails. Bound 2e-2 everywhere (BOUND). Expected, from a CPU emulation of the
 * GPU path with bf16 rounding at the same points (weights, GEMM inputs and outputs, LayerNorm
 * outputs, probabilities; fp32 residual and statistics): 2.8e-3 tiny, 2.8e-3 full width at 4
 * blocks, 5.0e-3 full depth. To show the bound can fail, each part also prints how far the CPU
 * reference moves for the same image scaled by 0.9 (about 4.8e-2) and for one block fewer (about
 * 0.2), and checks that both exceed the bound.
 *   (a) tiny (clip_config_preset "tiny": width 48, 3 heads, 3 of 4 blocks): images of 352x640,
 *       224x224 (no resampling) and 97x131 (upsampling, odd sizes), two encodes of the first
 *       (the second must equal the first bit for bit: nothing left over between calls).
 *   (b) full width (1280, 16 heads x 80, mlp 5120) at 4 blocks: one 352x640 image.
 *   (c) the full encoder (31 of 32 blocks): one 352x640 image (the CPU takes seconds), then the
 *       GPU time per encode (median of 20 after 3 warm-ups, preprocessing and copies included)
 *       and the fraction of the bf16 dense peak of the card that the GEMM FLOPs reach.
 * WM_CLIP_TEST_PARTS=a,b,c picks the parts (default all). Exit status 0 pass, 1 a check failed,
 * 2 a setup or CUDA error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "engine/clip.h"
#include "engine/cuda/clip_cuda.h"
#include "engine/engine.h"

#include "tests/gpu/gpu_test.h"

#define BOUND 2e-2
#define SEED  11u

static int g_failures, g_checks;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float *random_image(int h, int w, uint64_t seed) {
    float *img = xmalloc(3 * (size_t)h * (size_t)w * sizeof(float));
    for (size_t i = 0; i < 3 * (size_t)h * (size_t)w; i++)
        img[i] = (float)((double)(splitmix(&seed) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    return img;
}

static void check(const char *what, double e, double bound, int above) {
    const int ok = above ? e > bound : e <= bound;
    g_checks++;
    if (!ok) g_failures++;
    printf("%s %-58s %.3e (%s %.1e)\n", ok ? "ok  " : "FAIL", what, e, above ? ">" : "<=", bound);
}

static clip_weights *make_weights(const char *size, int layers_used) {
    clip_config c;
    MUST(clip_config_preset(&c, size, err, sizeof err));
    if (layers_used > 0) c.layers_used = layers_used;
    clip_weights *w = NULL;
    MUST(clip_weights_synthetic(&c, SEED, &w, err, sizeof err));
    return w;
}

/* GPU against CPU for one image, plus the two sensitivity checks when `sens` is set. */
static void compare_image(const char *tag, clip_weights *w, wmcuda_clip *g, int h, int wd,
                          uint64_t seed, int sens) {
    const clip_config *c = clip_weights_config(w);
    const size_t n = (size_t)clip_tokens(c) * (size_t)c->width;
    float *img = random_image(h, wd, seed);
    float *ref = xmalloc(n * sizeof(float)), *out = xmalloc(n * sizeof(float));
    double t0 = now_ms();
    MUST(clip_encode(w, img, h, wd, ref, err, sizeof err));
    const double cpu_ms = now_ms() - t0;
    MUST(wmcuda_clip_encode(g, img, h, wd, out, err, sizeof err));
    char what[160];
    snprintf(what, sizeof what, "%s %dx%d: GPU vs CPU (CPU %.0f ms)", tag, h, wd, cpu_ms);
    check(what, rel_err(out, ref, n), BOUND, 0);
    if (sens) {
        float *alt = xmalloc(n * sizeof(float));
        for (size_t i = 0; i < 3 * (size_t)h * (size_t)wd; i++) img[i] *= 0.9f;
        MUST(clip_encode(w, img, h, wd, alt, err, sizeof err));
        snprintf(what, sizeof what, "%s sensitivity: CPU, image x 0.9", tag);
        check(what, rel_err(alt, ref, n), BOUND, 1);
        for (size_t i = 0; i < 3 * (size_t)h * (size_t)wd; i++) img[i] /= 0.9f;
        clip_config fewer = *c;
        fewer.layers_used--;
        clip_weights *w2 = NULL;
        if (fewer.layers_used >= 1) {
            MUST(clip_weights_synthetic(&fewer, SEED, &w2, err, sizeof err));
            MUST(clip_encode(w2, img, h, wd, alt, err, sizeof err));
            snprintf(what, sizeof what, "%s sensitivity: CPU, one block fewer", tag);
            check(what, rel_err(alt, ref, n), BOUND, 1);
            clip_weights_free(w2);
        }
        free(alt);
    }
    free(img), free(ref), free(out);
}

static void part_tiny(void) {
    printf("\n(a) tiny CLIP (width 48, 3 heads, 3 of 4 blocks)\n");
    clip_weights *w = make_weights("tiny", 0);
    wmcuda_clip *g = NULL;
    MUST(wmcuda_clip_create(w, NULL, &g, err, sizeof err));
    compare_image("tiny", w, g, 352, 640, 1, 1);
    compare_image("tiny", w, g, 224, 224, 2, 0);
    compare_image("tiny", w, g, 97, 131, 3, 0);
    /* a second encode of the same image: bit for bit the first */
    const size_t n = (size_t)clip_tokens(clip_weights_config(w)) * 48;
    float *img = random_image(352, 640, 1), *a = xmalloc(n * 4), *b = xmalloc(n * 4);
    MUST(wmcuda_clip_encode(g, img, 352, 640, a, err, sizeof err));
    MUST(wmcuda_clip_encode(g, img, 352, 640, b, err, sizeof err));
    check("tiny: repeated encode differs by", memcmp(a, b, n * 4) ? 1.0 : 0.0, 0.0, 0);
    /* refusals */
    const int bad = wmcuda_clip_encode(g, img, 0, 640, a, err, sizeof err);
    g_checks++;
    if (bad == 0) g_failures++;
    printf("%s tiny: a 0x640 image is refused: %s\n", bad ? "ok  " : "FAIL", err);
    free(img), free(a), free(b);
    wmcuda_clip_destroy(g);
    clip_weights_free(w);
}

static void part_full_reduced(void) {
    printf("\n(b) CLIP ViT-H/14 width, 4 blocks\n");
    clip_weights *w = make_weights("full", 4);
    wmcuda_clip *g = NULL;
    MUST(wmcuda_clip_create(w, NULL, &g, err, sizeof err));
    compare_image("full-4", w, g, 352, 640, 4, 1);
    wmcuda_clip_destroy(g);
    clip_weights_free(w);
}

/* GEMM FLOPs of one encode: patch embedding, then per block qkv, scores, P.V, proj, fc1, fc2. */
static double encode_flops(const clip_config *c) {
    const double T = clip_tokens(c), W = c->width, M = c->mlp, K = 3.0 * c->patch * c->patch;
    const double blk = 2 * T * W * 3 * W + 2 * 2 * T * T * W + 2 * T * W * W + 2 * 2 * T * W * M;
    return 2 * (T - 1) * K * W + c->layers_used * blk;
}

static void part_full(void) {
    printf("\n(c) CLIP ViT-H/14, 31 of 32 blocks\n");
    clip_weights *w = make_weights("full", 0);
    wmcuda_clip *g = NULL;
    double t0 = now_ms();
    MUST(wmcuda_clip_create(w, NULL, &g, err, sizeof err));
    printf("upload: %.0f ms, %.2f GB on the device\n", now_ms() - t0,
           (double)wmcuda_clip_device_bytes(g) * 1e-9);
    compare_image("full", w, g, 352, 640, 5, 0);

    const clip_config *c = clip_weights_config(w);
    float *img = random_image(352, 640, 6);
    float *tok = xmalloc((size_t)clip_tokens(c) * c->width * sizeof(float));
    for (int i = 0; i < 3; i++) MUST(wmcuda_clip_encode(g, img, 352, 640, tok, err, sizeof err));
    double ms[20];
    for (int i = 0; i < 20; i++) {
        t0 = now_ms();
        MUST(wmcuda_clip_encode(g, img, 352, 640, tok, err, sizeof err));
        ms[i] = now_ms() - t0;
    }
    qsort(ms, 20, sizeof *ms, cmp_double);
    const double fl = encode_flops(c), med = 0.5 * (ms[9] + ms[10]);
    /* dense bf16 tensor peak: 989 TFLOP/s on H100 SXM and H200 (without sparsity) */
    printf("encode 352x640 -> 257x1280: median %.2f ms (min %.2f, max %.2f) host wall time, "
           "%.1f GFLOP, %.0f TFLOP/s = %.1f%% of 989 TFLOP/s\n",
           med, ms[0], ms[19], fl * 1e-9, fl / (med * 1e-3) * 1e-12,
           100.0 * fl / (med * 1e-3) / 989e12);
    free(img), free(tok);
    wmcuda_clip_destroy(g);
    clip_weights_free(w);
}

static int want(const char *parts, char p) {
    return !parts || strchr(parts, p) != NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    eng_cpu_threads_setup(argv); /* the CPU reference: OpenMP workers must not spin */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int dev = 0;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        fprintf(stderr, "no CUDA device\n");
        return 2;
    }
    char backend[160];
    eng_cpu_backend_describe(backend, sizeof backend);
    printf("device: %s (sm_%d%d, %d SMs, %.1f GB); CPU reference: %s\n", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem * 1e-9, backend);
    const char *parts = getenv("WM_CLIP_TEST_PARTS");
    if (want(parts, 'a')) part_tiny();
    if (want(parts, 'b')) part_full_reduced();
    if (want(parts, 'c')) part_full();
    printf("\n%s: %d failure(s) in %d checks\n", g_failures ? "FAILED" : "PASSED", g_failures,
           g_checks);
    return g_failures ? 1 : 0;
}
