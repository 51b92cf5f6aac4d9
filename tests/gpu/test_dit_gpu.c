/* GPU check of the CUDA DiT (engine/cuda/dit_cuda.h) against the float32 CPU reference session
 * (engine/engine.h), then its timing at full size. Runs on the GPU host only (not a ctest):
 * tests/gpu/run_dit_gpu.sh.
 *
 * (a) tiny model (eng_config_preset "tiny"), synthetic weights and conditioning, random actions,
 *     K = 4 blocks of each variant, plus universal with rope_pos_limit 9 (the RoPE origin moves
 *     before block 3, so the cached keys are rotated). The self-attention QK-norm gains are
 *     scaled x3 first (sharpen_attention: synthetic attention is otherwise so flat that a key at
 *     the wrong temporal position stays under bf16 noise). The CPU session
 *     (eng_session_run_block) records the input x and output v of every forward through its
 *     trace hook. Then:
 *       teacher-forced: every GPU forward gets the CPU forward's x (same cond, timestep, action
 *         windows, block position), so the caches see the same inputs; v is compared per forward,
 *         context passes included:                                  rel err <= 1.5e-2 (BOUND_V)
 *       free-running: the GPU block loop (wmcuda_dit_run_block, noise from the same Philox
 *         streams) from a reset session; each block's final latents: rel err <= 1e-2 (BOUND_LAT)
 *     Expected (a CPU emulation of every kernel with exact bf16 rounding at the same points):
 *     5.7e-3 per forward, 2.9e-3 on latents, flat over the 4 blocks; bugs such as a query or key
 *     one frame off, a missing key rebase, a value in the wrong slot, a wrong mouse window or a
 *     missing context pass give 1.5e-2 .. 8e-2 (latents 1.4e-2 .. 0.36).
 * (b) full width at reduced depth (synthetic:full, num_layers 2: action layers 0-1, universal,
 *     gains x3): 2 blocks, the same two checks and bounds (the CPU takes seconds per forward;
 *     emulated: 5.3e-3 per forward, 2.9e-3 on latents).
 * (c) timing, full size, 30 layers, synthetic weights (host, then uploaded): median forward time
 *     at the steady shape (block 2: 6 cached frames), the per-component breakdown from the
 *     model's cudaEvent profiler, and whole blocks (3 steps + context pass + sampler).
 * rel err = ||gpu - cpu|| / ||cpu|| over the whole tensor; a non-finite value fails.
 * WM_DIT_TEST_PARTS=a,b,c (default all) picks the parts. Exit status 0 pass, 1 a check failed,
 * 2 a setup or CUDA error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "engine/config.h"
#include "engine/cuda/dit_cuda.h"
#include "engine/engine.h"
#include "engine/model_internal.h"
#include "engine/noise.h"
#include "engine/weights.h"

#include "tests/gpu/gpu_test.h"

#define BOUND_V   1.5e-2
#define BOUND_LAT 1e-2
#define QK_GAIN   3.0f
#define SEED      1234u
#define SESSION   7u
#define MAX_K     (ENG_MAX_STEPS + 1)

static int g_failures, g_checks;


static void check(const char *what, double e, double bound) {
    const int pass = e <= bound; /* NaN fails */
    printf("%s %-48s rel err %.3e (bound %.1e)\n", pass ? "ok  " : "FAIL", what, e, bound);
    g_checks++;
    if (!pass) g_failures++;
}

/* ---- inputs of a session ------------------------------------------------------------------------- */

typedef struct session_inputs {
    const eng_config *c;
    int nblocks, cond_frames, total_video;
    float *cond, *clip;       /* [20][cond_frames][H][W], [clip_tokens][clip_dim] */
    eng_action_script actions; /* video frames 0 .. total_video - 1 */
    size_t nlat, ncond;       /* floats of one block's latents / cond slice */
} session_inputs;

static void inputs_make(session_inputs *in, const eng_config *c, int nblocks) {
    memset(in, 0, sizeof *in);
    const int T = c->frames_per_block;
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    in->c = c, in->nblocks = nblocks, in->cond_frames = nblocks * T;
    in->total_video = 1 + c->vae_time_ratio * (nblocks * T - 1);
    in->cond = xmalloc((size_t)20 * in->cond_frames * HW * sizeof(float));
    in->clip = xmalloc((size_t)c->clip_tokens * c->clip_dim * sizeof(float));
    if (eng_synthetic_conditioning(c, SEED, in->cond_frames, in->cond, in->clip) != 0 ||
        eng_actions_random(c, SEED + 1, (size_t)in->total_video, &in->actions) != 0) {
        fprintf(stderr, "synthetic conditioning / actions failed\n");
        exit(2);
    }
    in->nlat = (size_t)c->out_dim * T * HW;
    in->ncond = (size_t)20 * T * HW;
}

static void inputs_free(session_inputs *in) {
    free(in->cond), free(in->clip);
    eng_actions_free(&in->actions);
}

/* Block n's slice of cond_concat (latent f uses frame min(f, cond_frames - 1), as
 * eng_cond_slice) and its action windows (eng_action_windows over the whole script). */
static void block_inputs(const session_inputs *in, int n, float *cond_blk, float *mouse_win,
                         float *kb_win) {
    const eng_config *c = in->c;
    const int T = c->frames_per_block;
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    for (int ch = 0; ch < 20; ch++)
        for (int f = 0; f < T; f++) {
            int src = n * T + f;
            if (src > in->cond_frames - 1) src = in->cond_frames - 1;
            memcpy(cond_blk + ((size_t)ch * T + f) * HW,
                   in->cond + ((size_t)ch * in->cond_frames + src) * HW, HW * sizeof(float));
        }
    eng_action_windows(c, in->actions.frames, in->total_video, (int64_t)n * T, T, mouse_win,
                       kb_win);
}

/* ---- the CPU reference session ---------------------------------------------------------------------- */

typedef struct cpu_run {
    int nblocks, K;
    size_t nlat;
    float *x, *v;    /* [nblocks][K + 1][nlat]: every forward's input and output */
    float *lat;      /* [nblocks][nlat] final latents */
    double fwd_ms;   /* mean CPU forward time */
} cpu_run;

static void cpu_trace(void *user, const char *name, const float *data, int ndim,
                      const int64_t *shape) {
    cpu_run *r = user;
    int b = -1, k = -1;
    char tail[16] = "";
    (void)ndim, (void)shape;
    /* "b{n}.s{k}.x" and "b{n}.s{k}.v"; noise draws and hidden states are not kept */
    if (sscanf(name, "b%d.s%d.%15s", &b, &k, tail) != 3) return;
    const int is_x = strcmp(tail, "x") == 0, is_v = strcmp(tail, "v") == 0;
    if (b < 0 || b >= r->nblocks || k < 0 || k > r->K || (!is_x && !is_v)) return;
    float *dst = (is_x ? r->x : r->v) + ((size_t)b * (r->K + 1) + k) * r->nlat;
    memcpy(dst, data, r->nlat * sizeof(float));
}

static void cpu_session(eng_model *model, const session_inputs *in, cpu_run *r) {
    const eng_config *c = eng_model_config(model);
    memset(r, 0, sizeof *r);
    r->nblocks = in->nblocks, r->K = c->num_steps, r->nlat = in->nlat;
    r->x = xmalloc((size_t)in->nblocks * (r->K + 1) * in->nlat * sizeof(float));
    r->v = xmalloc((size_t)in->nblocks * (r->K + 1) * in->nlat * sizeof(float));
    r->lat = xmalloc((size_t)in->nblocks * in->nlat * sizeof(float));
    eng_session_params p;
    memset(&p, 0, sizeof p);
    p.seed = SEED, p.session_id = SESSION;
    p.cond = in->cond, p.cond_frames = in->cond_frames, p.clip = in->clip;
    p.trace = cpu_trace, p.trace_hidden_block = -1, p.user = r;
    eng_session *s = NULL;
    MUST(eng_session_create(model, &p, &s, err, sizeof err));
    double ms = 0.0;
    for (int n = 0; n < in->nblocks; n++) {
        const int nact = eng_session_block_video_frames(s);
        const int v0 = n == 0 ? 0 : c->vae_time_ratio * c->frames_per_block * n - 3;
        eng_block_timings tm;
        MUST(eng_session_run_block(s, in->actions.frames + v0, nact, r->lat + (size_t)n * in->nlat,
                                   &tm, err, sizeof err));
        for (int k = 0; k < tm.forwards; k++) ms += tm.forward_ms[k];
    }
    r->fwd_ms = ms / (in->nblocks * (r->K + 1));
    eng_session_destroy(s);
}

static void cpu_run_free(cpu_run *r) { free(r->x), free(r->v), free(r->lat); }

/* ---- GPU against CPU ------------------------------------------------------------------------------------ */

static void compare_session(const char *tag, eng_model *model, int nblocks) {
    const eng_weights *w = eng_model_weights(model);
    const eng_config *c = &w->cfg;
    const int T = c->frames_per_block, K = c->num_steps, P = eng_action_window(c);
    printf("\n== %s: %s, %d blocks\n", tag, eng_model_describe(model), nblocks);
    session_inputs in;
    inputs_make(&in, c, nblocks);
    cpu_run ref;
    double t0 = now_ms();
    cpu_session(model, &in, &ref);
    printf("info CPU reference: %.1f s, %.0f ms per forward\n", (now_ms() - t0) * 1e-3,
           ref.fwd_ms);

    wmcuda_dit *dit = NULL;
    wmcuda_dit_session *gs = NULL;
    t0 = now_ms();
    MUST(wmcuda_dit_create(w, &dit, err, sizeof err));
    MUST(wmcuda_dit_session_create(dit, SEED, SESSION, &gs, err, sizeof err));
    printf("info GPU model %.1f MB + session %.1f MB on the device, created in %.0f ms\n",
           wmcuda_dit_device_bytes(dit) * 1e-6, wmcuda_dit_session_device_bytes(gs) * 1e-6,
           now_ms() - t0);

    float *cond_blk = xmalloc(in.ncond * sizeof(float));
    float *mouse_win = xmalloc((size_t)T * P * 2 * sizeof(float));
    float *kb_win = xmalloc((size_t)T * P * c->keyboard_dim_in * sizeof(float));
    float *v = xmalloc(in.nlat * sizeof(float)), *lat = xmalloc(in.nlat * sizeof(float));
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS], tf[16];
    eng_sampler_schedule(c, tau, sigma);
    char what[96];

    /* a forward before the cross K/V exist is refused */
    block_inputs(&in, 0, cond_blk, mouse_win, kb_win);
    for (int f = 0; f < T; f++) tf[f] = tau[0];
    wmcuda_dit_inputs fi = {.nframes = T, .frame0 = 0, .rope_base = 0, .x = ref.x, .cond = cond_blk,
                            .t = tf, .mouse_win = c->enable_mouse ? mouse_win : NULL, .kb_win = kb_win};
    const int rc = wmcuda_dit_forward(gs, &fi, v, NULL, 0);
    printf("%s forward before prepare_cross returns %d (want %d)\n",
           rc == WMCUDA_DIT_ESTATE ? "ok  " : "FAIL", rc, WMCUDA_DIT_ESTATE);
    g_checks++, g_failures += rc != WMCUDA_DIT_ESTATE;

    /* teacher-forced: the CPU's input x of every forward */
    MUST(wmcuda_dit_prepare_cross(gs, in.clip, err, sizeof err));
    for (int n = 0; n < nblocks; n++) {
        int64_t rope_base = 0;
        MUST(wmcuda_dit_begin_block(gs, n, &rope_base, err, sizeof err));
        block_inputs(&in, n, cond_blk, mouse_win, kb_win);
        for (int k = 0; k <= K; k++) {
            for (int f = 0; f < T; f++) tf[f] = k < K ? tau[k] : 0.0f;
            fi.frame0 = (int64_t)n * T, fi.rope_base = rope_base;
            fi.x = ref.x + ((size_t)n * (K + 1) + k) * in.nlat;
            MUST(wmcuda_dit_forward(gs, &fi, v, err, sizeof err));
            char step[16] = "ctx";
            if (k < K) snprintf(step, sizeof step, "s%d", k);
            snprintf(what, sizeof what, "%s b%d %s v (RoPE base %lld)", tag, n, step,
                     (long long)rope_base);
            check(what, rel_err(v, ref.v + ((size_t)n * (K + 1) + k) * in.nlat, in.nlat),
                  BOUND_V);
        }
    }

    /* free-running: the whole block loop on the device, from a fresh session state */
    MUST(wmcuda_dit_session_reset(gs, err, sizeof err));
    MUST(wmcuda_dit_prepare_cross(gs, in.clip, err, sizeof err));
    double gpu_fwd = 0.0;
    for (int n = 0; n < nblocks; n++) {
        block_inputs(&in, n, cond_blk, mouse_win, kb_win);
        eng_block_timings tm;
        MUST(wmcuda_dit_run_block(gs, cond_blk, c->enable_mouse ? mouse_win : NULL, kb_win, lat,
                                  &tm, err, sizeof err));
        for (int k = 0; k < tm.forwards; k++) gpu_fwd += tm.forward_ms[k];
        snprintf(what, sizeof what, "%s b%d latents (free-running)", tag, n);
        check(what, rel_err(lat, ref.lat + (size_t)n * in.nlat, in.nlat), BOUND_LAT);
    }
    printf("info GPU forward %.2f ms (device time, mean over the free-running blocks)\n",
           gpu_fwd / (nblocks * (K + 1)));

    free(cond_blk), free(mouse_win), free(kb_win), free(v), free(lat);
    wmcuda_dit_session_destroy(gs);
    wmcuda_dit_destroy(dit);
    cpu_run_free(&ref);
    inputs_free(&in);
}

/* Synthetic q and k are unit-RMS noise, so the self-attention logits q.k / sqrt(dh) are O(1) and
 * the attention is nearly uniform: a key rotated to the wrong temporal position then moves v by
 * less than bf16 noise. Scaling the QK-norm gains by `gain` scales the logits by gain^2, peaked
 * like a trained model's; CPU and GPU both run the scaled weights. (The model's arrays are the
 * model's own: eng_model_weights gives a const struct whose tensors are writable.) */
static void sharpen_attention(eng_model *model, float gain) {
    const eng_weights *w = eng_model_weights(model);
    for (int i = 0; i < w->cfg.num_layers; i++)
        for (int d = 0; d < w->cfg.dim; d++) {
            w->layers[i].norm_q[d] *= gain;
            w->layers[i].norm_k[d] *= gain;
        }
}

static void part_compare(const char *spec, const char *tag, int variant, int layers,
                         int rope_pos_limit, int nblocks, float qk_gain) {
    eng_model_options o;
    memset(&o, 0, sizeof o);
    o.variant = variant, o.num_layers = layers, o.weight_seed = 99, o.rope_pos_limit = rope_pos_limit;
    eng_model *model = NULL;
    const double t0 = now_ms();
    MUST(eng_model_open(spec, &o, &model, err, sizeof err));
    printf("\ninfo opened %s in %.1f s; self-attention QK gains x%g\n", spec,
           (now_ms() - t0) * 1e-3, qk_gain);
    sharpen_attention(model, qk_gain);
    compare_session(tag, model, nblocks);
    eng_model_close(model);
}

/* ---- timing -------------------------------------------------------------------------------------------- */

/* FLOPs of one forward per profiler component at the steady shape (model-dit.md 9). */
static void component_flops(const eng_config *c, double *fl) {
    const double L = (double)c->frames_per_block * eng_tokens_per_frame(c), D = c->dim;
    const double Lk = (double)c->local_attn_size * eng_tokens_per_frame(c), FF = c->ffn_dim;
    const double nl = c->num_layers, na = eng_num_action_layers(c);
    const double Hm = c->mouse_hidden, Hk = c->keyboard_hidden;
    const double U = D + (double)c->mouse_dim_in * eng_action_window(c);
    memset(fl, 0, sizeof(double) * WMCUDA_DIT_PROF_COUNT);
    fl[WMCUDA_DIT_PROF_EMBED] = 2 * L * 4 * c->in_dim * D + 2 * L * D * 64 +
                                2 * c->frames_per_block * (c->freq_dim * D + 7 * D * D);
    fl[WMCUDA_DIT_PROF_PROJ] = nl * 6 * 2 * L * D * D;
    fl[WMCUDA_DIT_PROF_SELF_ATTN] = nl * 4 * L * Lk * D;
    fl[WMCUDA_DIT_PROF_CROSS_ATTN] = nl * 4 * L * c->clip_tokens * D;
    fl[WMCUDA_DIT_PROF_FFN] = nl * 4 * L * D * FF;
    if (c->enable_mouse)
        fl[WMCUDA_DIT_PROF_MOUSE] = na * 2 * L * (U * Hm + Hm * Hm + 3 * Hm * Hm + Hm * D);
    fl[WMCUDA_DIT_PROF_KEYBOARD] = na * 2 * L * (D * Hk + Hk * D);
}

static void part_timing(void) {
    eng_config cfg;
    MUST(eng_config_preset(&cfg, "full", ENG_VARIANT_UNIVERSAL, err, sizeof err));
    const int T = cfg.frames_per_block, K = cfg.num_steps, P = eng_action_window(&cfg);
    printf("\n== timing: full size, %d layers, universal, synthetic weights\n", cfg.num_layers);
    eng_weights w;
    memset(&w, 0, sizeof w);
    double t0 = now_ms();
    MUST(weights_init_synthetic(&w, &cfg, 99, err, sizeof err));
    printf("info synthetic weights on the host: %.1f s\n", (now_ms() - t0) * 1e-3);
    wmcuda_dit *dit = NULL;
    wmcuda_dit_session *gs = NULL;
    t0 = now_ms();
    MUST(wmcuda_dit_create(&w, &dit, err, sizeof err));
    printf("info upload: %.1f s, model %.2f GB on the device\n", (now_ms() - t0) * 1e-3,
           wmcuda_dit_device_bytes(dit) * 1e-9);
    weights_free(&w);
    MUST(wmcuda_dit_session_create(dit, SEED, SESSION, &gs, err, sizeof err));
    printf("info session state %.2f GB on the device\n", wmcuda_dit_session_device_bytes(gs) * 1e-9);

    session_inputs in;
    inputs_make(&in, &cfg, 8);
    float *cond_blk = xmalloc(in.ncond * sizeof(float));
    float *mouse_win = xmalloc((size_t)T * P * 2 * sizeof(float));
    float *kb_win = xmalloc((size_t)T * P * cfg.keyboard_dim_in * sizeof(float));
    float *x = xmalloc(in.nlat * sizeof(float)), *v = xmalloc(in.nlat * sizeof(float));
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS], tf[16];
    eng_sampler_schedule(&cfg, tau, sigma);

    t0 = now_ms();
    MUST(wmcuda_dit_prepare_cross(gs, in.clip, err, sizeof err));
    printf("info prepare_cross (image MLP + %d layers of cross K/V): %.1f ms (first call)\n",
           cfg.num_layers, now_ms() - t0);
    for (int n = 0; n < 2; n++) { /* blocks 0 and 1 fill the caches */
        block_inputs(&in, n, cond_blk, mouse_win, kb_win);
        eng_block_timings tm;
        MUST(wmcuda_dit_run_block(gs, cond_blk, mouse_win, kb_win, x, &tm, err, sizeof err));
        printf("info block %d: %.1f ms (first blocks: cuBLASLt heuristics run on first use)\n", n,
               tm.total_ms);
    }

    /* single forwards at the steady shape: block 2 sees 6 cached frames */
    int64_t rope_base = 0;
    MUST(wmcuda_dit_begin_block(gs, 2, &rope_base, err, sizeof err));
    block_inputs(&in, 2, cond_blk, mouse_win, kb_win);
    eng_noise_fill(x, in.nlat, SEED, SESSION, 2, 0);
    for (int f = 0; f < T; f++) tf[f] = tau[1];
    wmcuda_dit_inputs fi = {.nframes = T, .frame0 = 2 * T, .rope_base = rope_base, .x = x,
                            .cond = cond_blk, .t = tf, .mouse_win = mouse_win, .kb_win = kb_win};
    cudaStream_t st = (cudaStream_t)wmcuda_dit_stream(dit);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    enum { NREP = 15, NPROF = 5 };
    double dev_ms[NREP], wall_ms[NREP];
    for (int r = 0; r < 3; r++) MUST(wmcuda_dit_forward(gs, &fi, v, err, sizeof err));
    for (int r = 0; r < NREP; r++) {
        const double w0 = now_ms();
        CK(cudaEventRecord(e0, st));
        MUST(wmcuda_dit_forward(gs, &fi, v, err, sizeof err));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        dev_ms[r] = ms, wall_ms[r] = now_ms() - w0;
    }
    const double fwd = median(dev_ms, NREP), fwd_wall = median(wall_ms, NREP);
    size_t nonfinite = 0;
    for (size_t i = 0; i < in.nlat; i++) nonfinite += !isfinite(v[i]);
    printf("%s timing forward output: %zu non-finite of %zu\n", nonfinite ? "FAIL" : "ok  ",
           nonfinite, in.nlat);
    g_checks++, g_failures += nonfinite != 0;

    double prof[WMCUDA_DIT_PROF_COUNT], fl[WMCUDA_DIT_PROF_COUNT], total_fl = 0.0, prof_sum = 0.0;
    MUST(wmcuda_dit_profile(dit, 1));
    for (int r = 0; r < NPROF; r++) MUST(wmcuda_dit_forward(gs, &fi, v, err, sizeof err));
    MUST(wmcuda_dit_profile_read(dit, prof));
    MUST(wmcuda_dit_profile(dit, 0));
    component_flops(&cfg, fl);
    for (int i = 0; i < WMCUDA_DIT_PROF_COUNT; i++) {
        prof[i] /= NPROF;
        prof_sum += prof[i];
        total_fl += fl[i];
    }

    /* whole blocks at the steady shape; their forwards bracketed by events without the copies */
    double blk_ms[4], bf_ms[4 * MAX_K];
    int nbf = 0;
    for (int n = 2; n < 6; n++) {
        block_inputs(&in, n, cond_blk, mouse_win, kb_win);
        eng_block_timings tm;
        MUST(wmcuda_dit_run_block(gs, cond_blk, mouse_win, kb_win, x, &tm, err, sizeof err));
        blk_ms[n - 2] = tm.total_ms;
        for (int k = 0; k < tm.forwards; k++) bf_ms[nbf++] = tm.forward_ms[k];
    }
    const double blk = median(blk_ms, 4), fwd_blk = median(bf_ms, nbf);

    int dev;
    struct cudaDeviceProp prop;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("\n== timing summary on %s: full size, universal, steady shape (L %d, Lk %d)\n",
           prop.name, T * eng_tokens_per_frame(&cfg), cfg.local_attn_size * eng_tokens_per_frame(&cfg));
    printf("forward in the block loop: median %.2f ms device time (%d forwards): %.2f TFLOP = %.0f "
           "TFLOP/s\n",
           fwd_blk, nbf, total_fl * 1e-12, total_fl / (fwd_blk * 1e-3) * 1e-12);
    printf("forward through wmcuda_dit_forward (host inputs copied in, v out, synchronized): "
           "median %.2f ms device time, %.2f ms host wall (%d runs)\n",
           fwd, fwd_wall, NREP);
    printf("block (%d steps + context pass + sampler, host wall incl. input copies): median %.1f ms "
           "= %.1f video frames/s\n",
           K, blk, 12.0 / (blk * 1e-3));
    printf("\nper component (mean of %d profiled forwards: %.2f ms in all, against %.2f ms "
           "unprofiled):\n",
           NPROF, prof_sum, fwd);
    printf("%-28s %10s %7s %10s %10s\n", "component", "ms/fwd", "share", "GFLOP", "TFLOP/s");
    for (int i = 0; i < WMCUDA_DIT_PROF_COUNT; i++) {
        char rate[16] = "-";
        if (fl[i] > 0 && prof[i] > 0)
            snprintf(rate, sizeof rate, "%.0f", fl[i] / (prof[i] * 1e-3) * 1e-12);
        printf("%-28s %10.3f %6.1f%% %10.1f %10s\n", wmcuda_dit_profile_name(i), prof[i],
               100.0 * prof[i] / prof_sum, fl[i] * 1e-9, rate);
    }
    printf("%-28s %10.3f %6.1f%% %10.1f\n", "total (profiled)", prof_sum, 100.0, total_fl * 1e-9);

    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    free(cond_blk), free(mouse_win), free(kb_win), free(x), free(v);
    inputs_free(&in);
    wmcuda_dit_session_destroy(gs);
    wmcuda_dit_destroy(dit);
}

/* ---- main ------------------------------------------------------------------------------------------------ */

static int want(const char *parts, char p) { return !parts || strchr(parts, p) != NULL; }

int main(int argc, char **argv) {
    (void)argc;
    eng_cpu_threads_setup(argv); /* the CPU reference: OpenMP workers must not spin */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int dev;
    struct cudaDeviceProp prop;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    char backend[160];
    eng_cpu_backend_describe(backend, sizeof backend);
    printf("device: %s (sm_%d%d, %d SMs, %.1f GB); CPU reference: %s\n", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem * 1e-9, backend);
    const char *parts = getenv("WM_DIT_TEST_PARTS");

    if (want(parts, 'a')) {
        part_compare("synthetic:tiny", "tiny/universal", ENG_VARIANT_UNIVERSAL, 0, 0, 4, QK_GAIN);
        part_compare("synthetic:tiny", "tiny/gta_drive", ENG_VARIANT_GTA_DRIVE, 0, 0, 4, QK_GAIN);
        part_compare("synthetic:tiny", "tiny/templerun", ENG_VARIANT_TEMPLERUN, 0, 0, 4, QK_GAIN);
        /* positions 0..8: block 3 (frames 9-11) moves the origin by 6 */
        part_compare("synthetic:tiny", "tiny/universal+rebase", ENG_VARIANT_UNIVERSAL, 0, 9, 4,
                     QK_GAIN);
    }
    if (want(parts, 'b'))
        part_compare("synthetic:full", "full-2L/universal", ENG_VARIANT_UNIVERSAL, 2, 0, 2, QK_GAIN);
    if (want(parts, 'c')) part_timing();

    printf("\n%s: %d failure(s) in %d checks\n", g_failures ? "FAILED" : "PASSED", g_failures,
           g_checks);
    return g_failures ? 1 : 0;
}
