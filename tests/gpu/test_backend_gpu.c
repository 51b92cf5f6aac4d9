/* GPU check of the engine's CUDA backend through the public API (engine/engine.h): a model opened
 * with ENG_BACKEND_CUDA runs its sessions on the device (wmcuda_dit_run_block fed by session.c's
 * conditioning slice and action windows, CLIP on the GPU for image starts, decoding through the VAE
 * dispatch); a session of the same model with a trace hook runs the CPU reference. Runs on the GPU
 * host only (not a ctest): tests/gpu/run_backend_gpu.sh, or scripts/gpu-suite.sh.
 *
 * synthetic:tiny, each variant (templerun has no mouse branch: its windows go as NULL), 4 blocks of
 * random actions from synthetic conditioning; rel err = ||gpu - cpu|| / ||cpu|| of each block's
 * final latents:
 *   CUDA session vs CPU reference session                         <= 1e-2 (BOUND_LAT)
 *     (test_dit_gpu's bound for the same loop called directly; it measured 2.9e-3 there)
 *   sensitivity: the CPU reference with another random action script, and with the conditioning
 *     one latent late, must each differ from the CPU session by more than the bound (measured
 *     3.3e-2 .. 7.6e-2 and 0.56 .. 0.67 on the last block), so wiring the wrong windows or slice
 *     into the GPU loop fails the check above
 *   a start image (random, 64x128) instead of tensors: CLIP on the GPU and the VAE encoder
 *     (CPU without WM_CUDA_VAE) vs the CPU reference end to end  <= 2e-2 (BOUND_IMG: CLIP's bf16
 *     error, about 3e-3 on the tokens, adds to the DiT's)
 *   eng_session_reset then the same 4 blocks: bit-identical latents
 *   eng_session_decode after each block: 9 frames, then 12, RGB within 8 levels on average of the
 *     CPU session's frames (the latents differ at bf16 level)
 * --cpu runs the "CUDA" sessions on the CPU too (errors 0): checks the test's own logic anywhere.
 * Exit status 0 pass, 1 a check failed, 2 a setup or CUDA error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/actions.h"
#include "engine/engine.h"

#include "tests/gpu/gpu_test.h"

#define BOUND_LAT 1e-2
#define BOUND_IMG 2e-2
#define BLOCKS    4
#define SEED      99u

static int g_failures, g_checks;
static int g_backend = ENG_BACKEND_CUDA; /* --cpu: both on the CPU, to check the test itself */

static void check(int ok, const char *fmt, double v, double bound) {
    g_checks++;
    if (!ok) g_failures++;
    printf("%s ", ok ? "ok  " : "FAIL");
    printf(fmt, v, bound);
    printf("\n");
}

static void trace_nothing(void *user, const char *name, const float *data, int ndim,
                          const int64_t *shape) {
    (void)user, (void)name, (void)data, (void)ndim, (void)shape;
}

/* What one session was given and what it produced. */
typedef struct run_spec {
    const float *cond, *clip, *image;
    int cond_frames;
    const eng_action_frame *actions; /* video frames 0 .. */
    int cpu;                         /* set the trace hook: the CPU reference */
} run_spec;

typedef struct run_out {
    float *lat;   /* [BLOCKS][nlat] */
    uint8_t *rgb; /* [BLOCKS][12][vh][vw][3] */
    int frames[BLOCKS];
    int backend;
} run_out;

static void run_session(eng_model *m, const run_spec *r, run_out *o, int reset_and_repeat,
                        float *repeat_lat) {
    const eng_config *c = eng_model_config(m);
    const size_t nlat = (size_t)16 * c->frames_per_block * c->lat_h * c->lat_w;
    int vw, vh;
    eng_model_video_size(m, &vw, &vh);
    const size_t nrgb = (size_t)ENG_MAX_FRAMES_PER_BLOCK * vw * vh * 3;
    o->lat = xmalloc(BLOCKS * nlat * sizeof(float));
    o->rgb = xmalloc(BLOCKS * nrgb);
    eng_session_params p;
    memset(&p, 0, sizeof p);
    p.seed = SEED, p.session_id = 3, p.trace_hidden_block = -1;
    p.cond = r->cond, p.cond_frames = r->cond_frames, p.clip = r->clip, p.image = r->image;
    if (r->cpu) p.trace = trace_nothing;
    eng_session *s = NULL;
    MUST(eng_session_create(m, &p, &s, err, sizeof err));
    o->backend = eng_session_backend(s);
    for (int pass = 0; pass < (reset_and_repeat ? 2 : 1); pass++) {
        if (pass) eng_session_reset(s);
        for (int n = 0; n < BLOCKS; n++) {
            const int v0 = n == 0 ? 0 : c->vae_time_ratio * c->frames_per_block * n - 3;
            float *dst = (pass ? repeat_lat : o->lat) + (size_t)n * nlat;
            MUST(eng_session_run_block(s, r->actions + v0, eng_session_block_video_frames(s), dst,
                                       NULL, err, sizeof err));
            if (!pass)
                MUST(eng_session_decode(s, dst, o->rgb + (size_t)n * nrgb, &o->frames[n], err,
                                        sizeof err));
        }
    }
    eng_session_destroy(s);
}

static void run_free(run_out *o) {
    free(o->lat), free(o->rgb);
}

static double mean_abs_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)a[i] - (double)b[i]);
    return n ? s / (double)n : 0;
}

static void part_variant(eng_variant v) {
    eng_model_options o = {.variant = (int)v, .weight_seed = 5, .backend = g_backend};
    eng_model *m = NULL;
    MUST(eng_model_open("synthetic:tiny", &o, &m, err, sizeof err));
    const eng_config *c = eng_model_config(m);
    printf("\n== %s: %s\n", eng_variant_name(v), eng_model_describe(m));
    const int T = c->frames_per_block, frames = BLOCKS * T + 1;
    const size_t HW = (size_t)c->lat_h * c->lat_w, nlat = (size_t)16 * T * HW;
    const int nvideo = 1 + c->vae_time_ratio * (BLOCKS * T - 1) + 1;
    float *cond = xmalloc(20 * (size_t)frames * HW * sizeof(float));
    float *clip = xmalloc((size_t)c->clip_tokens * c->clip_dim * sizeof(float));
    MUST(eng_synthetic_conditioning(c, SEED, frames, cond, clip));
    eng_action_script acts;
    MUST(eng_actions_random(c, SEED + 1, (size_t)nvideo, &acts));

    run_spec spec = {.cond = cond, .clip = clip, .cond_frames = frames, .actions = acts.frames};
    run_out gpu, cpu;
    float *again = xmalloc(BLOCKS * nlat * sizeof(float));
    run_session(m, &spec, &gpu, 1, again);
    spec.cpu = 1;
    run_session(m, &spec, &cpu, 0, NULL);
    check(gpu.backend == g_backend && cpu.backend == ENG_BACKEND_CPU,
          "sessions: hook-free one on the model's backend (%.0f), traced one on the CPU (%.0f)",
          gpu.backend, cpu.backend);
    double worst = 0;
    for (int n = 0; n < BLOCKS; n++) {
        const double e = rel_err(gpu.lat + n * nlat, cpu.lat + n * nlat, nlat);
        printf("     block %d: CUDA vs CPU latents %.3e\n", n, e);
        worst = e > worst ? e : worst;
    }
    check(worst <= BOUND_LAT, "CUDA session vs CPU session, worst block: %.3e (<= %.1e)", worst,
          BOUND_LAT);
    check(memcmp(again, gpu.lat, BLOCKS * nlat * sizeof(float)) == 0,
          "after eng_session_reset the same blocks again: rel diff %.3e (== %.0f)",
          rel_err(again, gpu.lat, BLOCKS * nlat), 0);
    int vw, vh;
    eng_model_video_size(m, &vw, &vh);
    const size_t nrgb = (size_t)ENG_MAX_FRAMES_PER_BLOCK * vw * vh * 3;
    double dmax = 0;
    int frames_ok = 1;
    for (int n = 0; n < BLOCKS; n++) {
        frames_ok &= gpu.frames[n] == (n ? 12 : 9) && cpu.frames[n] == gpu.frames[n];
        const double d = mean_abs_u8(gpu.rgb + n * nrgb, cpu.rgb + n * nrgb,
                                     (size_t)gpu.frames[n] * vw * vh * 3);
        dmax = d > dmax ? d : dmax;
    }
    check(frames_ok && dmax <= 8.0,
          "decode: 9 then 12 frames, mean |RGB CUDA - RGB CPU| worst block %.2f (<= %.0f)", dmax,
          8.0);

    /* sensitivity: wiring errors of the size of an off-by-one must exceed the bound */
    run_out alt;
    {
        eng_action_script other;
        MUST(eng_actions_random(c, SEED + 2, (size_t)nvideo, &other));
        spec.actions = other.frames;
        run_session(m, &spec, &alt, 0, NULL);
        const double e =
            rel_err(alt.lat + (BLOCKS - 1) * nlat, cpu.lat + (BLOCKS - 1) * nlat, nlat);
        check(e > BOUND_LAT, "sensitivity: another action script, last block %.3e (> %.1e)", e,
              BOUND_LAT);
        run_free(&alt);
        eng_actions_free(&other);
        spec.actions = acts.frames;
    }
    float *late = xmalloc(20 * (size_t)frames * HW * sizeof(float));
    for (int ch = 0; ch < 20; ch++) /* latent f gets frame f - 1 (frame 0 stays) */
        for (int f = 0; f < frames; f++)
            memcpy(late + ((size_t)ch * frames + f) * HW,
                   cond + ((size_t)ch * frames + (f ? f - 1 : 0)) * HW, HW * sizeof(float));
    spec.cond = late;
    run_session(m, &spec, &alt, 0, NULL);
    const double e = rel_err(alt.lat + (BLOCKS - 1) * nlat, cpu.lat + (BLOCKS - 1) * nlat, nlat);
    check(e > BOUND_LAT, "sensitivity: conditioning one latent late, last block %.3e (> %.1e)", e,
          BOUND_LAT);
    run_free(&alt);
    free(late);

    /* from a start image: CLIP on the GPU (and the VAE encoder on its backend) */
    if (v == ENG_VARIANT_UNIVERSAL) {
        float *img = xmalloc(3 * (size_t)vw * vh * sizeof(float));
        uint64_t st = 17;
        for (size_t i = 0; i < 3 * (size_t)vw * vh; i++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            img[i] = (float)((double)(st >> 11) * 0x1.0p-53 * 2.0 - 1.0);
        }
        run_spec is = {.image = img, .actions = acts.frames};
        run_out gi, ci;
        run_session(m, &is, &gi, 0, NULL);
        is.cpu = 1;
        run_session(m, &is, &ci, 0, NULL);
        double w2 = 0;
        for (int n = 0; n < BLOCKS; n++) {
            const double e2 = rel_err(gi.lat + n * nlat, ci.lat + n * nlat, nlat);
            w2 = e2 > w2 ? e2 : w2;
        }
        check(w2 <= BOUND_IMG,
              "start image: CUDA (CLIP on the GPU) vs CPU, worst block %.3e (<= %.1e)", w2,
              BOUND_IMG);
        run_free(&gi), run_free(&ci);
        free(img);
    }

    run_free(&gpu), run_free(&cpu);
    free(again), free(cond), free(clip);
    eng_actions_free(&acts);
    eng_model_close(m);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--cpu") == 0) g_backend = ENG_BACKEND_CPU;
    eng_cpu_threads_setup(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    part_variant(ENG_VARIANT_UNIVERSAL);
    part_variant(ENG_VARIANT_GTA_DRIVE);
    part_variant(ENG_VARIANT_TEMPLERUN);
    printf("\n%s: %d failure(s) in %d checks\n", g_failures ? "FAILED" : "PASSED", g_failures,
           g_checks);
    return g_failures ? 1 : 0;
}
