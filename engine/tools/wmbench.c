/* wmbench: the CUDA backend's figures at full size on the card it runs on, against the floor.
 *
 * It measures the card's own ceilings first (a large bf16 cuBLASLt product, a device-to-device
 * copy), then times, with synthetic weights made on this host: the DiT forward at the steady
 * block shape and its breakdown, the VAE decode of one 12-frame block, the start-up encoders
 * (VAE first frame, a 4-frame chunk, CLIP), and whole blocks (the sampler's forwards + context
 * pass + decode), and prints one table: each figure, the floor (FLOPs over the measured bf16 rate
 * or bytes over the measured bandwidth, whichever is larger: engine/flops.h), the fraction of the
 * floor reached, and the target. Times are medians of cudaEvent intervals on the model's
 * stream unless the row says host wall. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "engine/actions.h"
#include "engine/clip.h"
#include "engine/cuda/clip_cuda.h"
#include "engine/cuda/dit_cuda.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/vae_cuda.h"
#include "engine/engine.h"
#include "engine/flops.h"
#include "engine/noise.h"
#include "engine/vae.h"
#include "engine/weights.h"

#define SEED    1234u
#define SESSION 7u

typedef struct bench_opts {
    eng_variant variant;
    int layers;  /* 0: all */
    int reps;    /* timed repetitions per figure */
    int blocks;  /* whole blocks timed after the caches are full */
    int no_vae, no_encoders;
    const char *json;
} bench_opts;

typedef struct row {
    char name[64];
    double ms;       /* measured */
    double flops;    /* 0: not a compute figure */
    double bytes;    /* minimum traffic */
    double target;   /* issue 5 target in ms, 0: none */
    const char *how; /* what the time is */
} row;

typedef struct bench {
    bench_opts o;
    char err[512];
    double peak_flops, peak_bw; /* measured ceilings, per second */
    row rows[32];
    int nrows;
    cudaStream_t st;
    cudaEvent_t e0, e1;
    size_t mem_model, mem_session;
} bench;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "wmbench: out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "wmbench: %s: %s\n", what, msg);
    exit(2);
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) die(#call, cudaGetErrorString(e_));                                 \
    } while (0)
#define MUST(b, call)                                                                              \
    do {                                                                                           \
        if ((call) != 0) die(#call, (b)->err);                                                     \
    } while (0)

static void add_row(bench *b, const char *name, double ms, double flops, double bytes,
                    double target, const char *how) {
    if (b->nrows == (int)(sizeof b->rows / sizeof b->rows[0])) return;
    row *r = &b->rows[b->nrows++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->ms = ms, r->flops = flops, r->bytes = bytes, r->target = target, r->how = how;
}

static double elapsed_ms(bench *b) {
    float ms = 0.0f;
    CK(cudaEventSynchronize(b->e1));
    CK(cudaEventElapsedTime(&ms, b->e0, b->e1));
    return ms;
}

/* ---- ceilings --------------------------------------------------------------------------------- */

/* The bf16 matrix rate: y[M,N] = x[M,K] W[N,K]^T at 8192^3 through the project's cuBLASLt path;
 * the bandwidth: a 2 GiB device-to-device copy (read + write counted). Medians of b->o.reps. */
static void measure_ceilings(bench *b) {
    const int n = 8192;
    const size_t elems = (size_t)n * n, copy_bytes = (size_t)1 << 31;
    wmcuda_gemm *g = NULL;
    wmcuda_bf16 *x, *w, *y;
    void *src, *dst;
    MUST(b, wmcuda_gemm_create(&g, 0, b->err, sizeof b->err));
    CK(cudaMalloc((void **)&x, elems * 2));
    CK(cudaMalloc((void **)&w, elems * 2));
    CK(cudaMalloc((void **)&y, elems * 2));
    CK(cudaMemsetAsync(x, 0x3c, elems * 2, b->st)); /* bf16 0x3c3c = 0.0115: finite operands */
    CK(cudaMemsetAsync(w, 0x3c, elems * 2, b->st));
    double t[64];
    const int reps = b->o.reps < 64 ? b->o.reps : 64;
    for (int r = -2; r < reps; r++) {
        CK(cudaEventRecord(b->e0, b->st));
        if (wmcuda_linear(g, x, n, n, n, w, NULL, n, y, n, WMCUDA_EPI_NONE, b->st))
            die("wmcuda_linear", wmcuda_gemm_last_error(g));
        CK(cudaEventRecord(b->e1, b->st));
        const double ms = elapsed_ms(b);
        if (r >= 0) t[r] = ms;
    }
    b->peak_flops = 2.0 * n * (double)n * n / (median(t, reps) * 1e-3);
    CK(cudaFree(x));
    CK(cudaFree(w));
    CK(cudaFree(y));
    wmcuda_gemm_destroy(g);

    CK(cudaMalloc(&src, copy_bytes));
    CK(cudaMalloc(&dst, copy_bytes));
    CK(cudaMemsetAsync(src, 1, copy_bytes, b->st));
    for (int r = -2; r < reps; r++) {
        CK(cudaEventRecord(b->e0, b->st));
        CK(cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice, b->st));
        CK(cudaEventRecord(b->e1, b->st));
        const double ms = elapsed_ms(b);
        if (r >= 0) t[r] = ms;
    }
    b->peak_bw = 2.0 * copy_bytes / (median(t, reps) * 1e-3);
    CK(cudaFree(src));
    CK(cudaFree(dst));
}

/* ---- one session's inputs ------------------------------------------------------------------------ */

typedef struct inputs {
    const eng_config *c;
    int nblocks, cond_frames, total_video;
    float *cond, *clip, *cond_blk, *mouse_win, *kb_win;
    eng_action_script actions;
    size_t nlat;
} inputs;

static void inputs_make(inputs *in, const eng_config *c, int nblocks) {
    const int T = c->frames_per_block, P = eng_action_window(c);
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    memset(in, 0, sizeof *in);
    in->c = c, in->nblocks = nblocks, in->cond_frames = nblocks * T;
    in->total_video = 1 + c->vae_time_ratio * (nblocks * T - 1);
    in->cond = xmalloc((size_t)20 * in->cond_frames * HW * sizeof(float));
    in->clip = xmalloc((size_t)c->clip_tokens * c->clip_dim * sizeof(float));
    in->cond_blk = xmalloc((size_t)20 * T * HW * sizeof(float));
    in->mouse_win = xmalloc((size_t)T * P * 2 * sizeof(float));
    in->kb_win = xmalloc((size_t)T * P * ENG_MAX_KDIM * sizeof(float));
    in->nlat = (size_t)c->out_dim * T * HW;
    if (eng_synthetic_conditioning(c, SEED, in->cond_frames, in->cond, in->clip) != 0 ||
        eng_actions_random(c, SEED + 1, (size_t)in->total_video, &in->actions) != 0)
        die("inputs", "synthetic conditioning or actions failed");
}

static void inputs_free(inputs *in) {
    free(in->cond), free(in->clip), free(in->cond_blk), free(in->mouse_win), free(in->kb_win);
    eng_actions_free(&in->actions);
}

/* Block n's slice of the conditioning and its action windows. */
static void inputs_block(inputs *in, int n) {
    const eng_config *c = in->c;
    const int T = c->frames_per_block;
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    for (int ch = 0; ch < 20; ch++)
        for (int f = 0; f < T; f++) {
            int src = n * T + f;
            if (src > in->cond_frames - 1) src = in->cond_frames - 1;
            memcpy(in->cond_blk + ((size_t)ch * T + f) * HW,
                   in->cond + ((size_t)ch * in->cond_frames + src) * HW, HW * sizeof(float));
        }
    eng_action_windows(c, in->actions.frames, in->total_video, (int64_t)n * T, T, in->mouse_win,
                       in->kb_win);
}

/* ---- the DiT ------------------------------------------------------------------------------------- */

typedef struct dit_run {
    wmcuda_dit *dit;
    wmcuda_dit_session *s;
    inputs in;
    float *lat; /* the last block's latents */
} dit_run;

static void dit_open(bench *b, const eng_config *cfg, dit_run *d) {
    eng_weights w;
    memset(&w, 0, sizeof w);
    double t0 = now_ms();
    MUST(b, weights_init_synthetic(&w, cfg, 99, b->err, sizeof b->err));
    printf("info synthetic DiT weights on the host: %.1f s\n", (now_ms() - t0) * 1e-3);
    size_t free0, free1, total;
    CK(cudaMemGetInfo(&free0, &total));
    MUST(b, wmcuda_dit_create(&w, &d->dit, b->err, sizeof b->err));
    weights_free(&w);
    CK(cudaMemGetInfo(&free1, &total));
    b->mem_model += free0 - free1;
    MUST(b, wmcuda_dit_session_create(d->dit, SEED, SESSION, &d->s, b->err, sizeof b->err));
    CK(cudaMemGetInfo(&free0, &total));
    b->mem_session += free1 - free0;
    b->st = (cudaStream_t)wmcuda_dit_stream(d->dit);
    inputs_make(&d->in, cfg, 8 + b->o.blocks);
    d->lat = xmalloc(d->in.nlat * sizeof(float));
    MUST(b, wmcuda_dit_prepare_cross(d->s, d->in.clip, b->err, sizeof b->err));
}

static void dit_close(dit_run *d) {
    wmcuda_dit_session_destroy(d->s);
    wmcuda_dit_destroy(d->dit);
    inputs_free(&d->in);
    free(d->lat);
}

static void dit_block(bench *b, dit_run *d, eng_block_timings *tm) {
    const int n = (int)wmcuda_dit_next_block(d->s);
    inputs_block(&d->in, n);
    MUST(b, wmcuda_dit_run_block(d->s, d->in.cond_blk, d->in.mouse_win, d->in.kb_win, d->lat, tm,
                                 b->err, sizeof b->err));
}

/* The steady forward: fill the window, then time single forwards of the next block at the
 * second step's timestep, then the profiler's breakdown. */
static void bench_dit(bench *b, dit_run *d) {
    const eng_config *c = wmcuda_dit_config(d->dit);
    const int T = c->frames_per_block, W = c->local_attn_size;
    eng_block_timings tm;
    while (wmcuda_dit_next_block(d->s) * T < W) dit_block(b, d, &tm); /* window full */
    const int64_t n = wmcuda_dit_next_block(d->s);
    int64_t rope_base = 0;
    MUST(b, wmcuda_dit_begin_block(d->s, n, &rope_base, b->err, sizeof b->err));
    inputs_block(&d->in, (int)n);
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS], tf[16];
    eng_sampler_schedule(c, tau, sigma);
    for (int f = 0; f < T; f++) tf[f] = tau[1];
    float *x = xmalloc(d->in.nlat * sizeof(float)), *v = xmalloc(d->in.nlat * sizeof(float));
    eng_noise_fill(x, d->in.nlat, SEED, SESSION, (uint32_t)n, 0);
    wmcuda_dit_inputs fi = {.nframes = T, .frame0 = n * T, .rope_base = rope_base, .x = x,
                            .cond = d->in.cond_blk, .t = tf, .mouse_win = d->in.mouse_win,
                            .kb_win = d->in.kb_win};
    double t[64];
    const int reps = b->o.reps < 64 ? b->o.reps : 64;
    for (int r = -2; r < reps; r++) {
        CK(cudaEventRecord(b->e0, b->st));
        MUST(b, wmcuda_dit_forward(d->s, &fi, v, b->err, sizeof b->err));
        CK(cudaEventRecord(b->e1, b->st));
        const double ms = elapsed_ms(b);
        if (r >= 0) t[r] = ms;
    }
    const double fwd = median(t, reps);
    eng_dit_cost k;
    eng_dit_forward_cost(c, W, &k);
    add_row(b, "DiT forward (steady window)", fwd, k.total, k.weight_bytes + k.cache_bytes, 25.0,
            "device, incl. host<->device copies of x/v");

    double prof[WMCUDA_DIT_PROF_COUNT], sum = 0.0;
    MUST(b, wmcuda_dit_profile(d->dit, 1));
    for (int r = 0; r < reps; r++) MUST(b, wmcuda_dit_forward(d->s, &fi, v, b->err, sizeof b->err));
    MUST(b, wmcuda_dit_profile_read(d->dit, prof));
    MUST(b, wmcuda_dit_profile(d->dit, 0));
    for (int i = 0; i < WMCUDA_DIT_PROF_COUNT; i++) sum += prof[i] / reps;
    const double fl[WMCUDA_DIT_PROF_COUNT] = {
        [WMCUDA_DIT_PROF_EMBED] = k.embed,         [WMCUDA_DIT_PROF_PROJ] = k.proj,
        [WMCUDA_DIT_PROF_SELF_ATTN] = k.self_attn, [WMCUDA_DIT_PROF_CROSS_ATTN] = k.cross_attn,
        [WMCUDA_DIT_PROF_FFN] = k.ffn,             [WMCUDA_DIT_PROF_MOUSE] = k.mouse,
        [WMCUDA_DIT_PROF_KEYBOARD] = k.keyboard,   [WMCUDA_DIT_PROF_NORM] = 0.0};
    for (int i = 0; i < WMCUDA_DIT_PROF_COUNT; i++) {
        char name[64];
        snprintf(name, sizeof name, "  %s", wmcuda_dit_profile_name(i));
        add_row(b, name, prof[i] / reps, fl[i], 0.0, 0.0, "device, profiled forward");
    }
    printf("info profiled forward: components add up to %.2f ms (unprofiled %.2f ms)\n", sum, fwd);
    free(x), free(v);
}

/* ---- VAE and encoders ----------------------------------------------------------------------------- */

typedef struct vae_run {
    vae_weights *w;
    wmcuda_vae *v;
    wmcuda_vae_decoder *dec;
    uint8_t *rgb;
} vae_run;

static void vae_open(bench *b, const eng_config *c, vae_run *r) {
    vae_config vc;
    size_t free0, free1, total;
    MUST(b, vae_config_preset(&vc, "full", b->err, sizeof b->err));
    MUST(b, vae_weights_synthetic(&vc, 5, &r->w, b->err, sizeof b->err));
    CK(cudaMemGetInfo(&free0, &total));
    MUST(b, wmcuda_vae_create(r->w, b->st, &r->v, b->err, sizeof b->err));
    CK(cudaMemGetInfo(&free1, &total));
    b->mem_model += free0 - free1;
    MUST(b, wmcuda_vae_decoder_create(r->v, c->lat_h, c->lat_w, &r->dec, b->err, sizeof b->err));
    CK(cudaMemGetInfo(&free0, &total));
    b->mem_session += free1 - free0;
    r->rgb = xmalloc((size_t)ENG_MAX_FRAMES_PER_BLOCK * 64 * c->lat_h * c->lat_w * 3);
}

static void vae_close(vae_run *r) {
    wmcuda_vae_decoder_destroy(r->dec);
    wmcuda_vae_destroy(r->v);
    vae_weights_free(r->w);
    free(r->rgb);
}

/* One decode of the block's latents, timed on the stream (the RGB8 copy to the host included). */
static double vae_decode_ms(bench *b, vae_run *r, const float *lat, int nlat) {
    int nframes = 0;
    CK(cudaEventRecord(b->e0, b->st));
    MUST(b, wmcuda_vae_decode(r->dec, lat, nlat, r->rgb, NULL, &nframes, b->err, sizeof b->err));
    CK(cudaEventRecord(b->e1, b->st));
    return elapsed_ms(b);
}

static void bench_vae(bench *b, dit_run *d, vae_run *r) {
    const eng_config *c = wmcuda_dit_config(d->dit);
    const vae_config *vc = vae_weights_config(r->w);
    const int T = c->frames_per_block;
    const double first = vae_decode_ms(b, r, d->lat, T);
    add_row(b, "VAE decode, first block (9 frames)", first,
            eng_vae_decode_flops(vc, T, 1, c->lat_h, c->lat_w), 0.0, 0.0, "device incl. RGB8 copy");
    double t[64];
    const int reps = b->o.reps < 64 ? b->o.reps : 64;
    for (int i = 0; i < reps; i++) t[i] = vae_decode_ms(b, r, d->lat, T);
    add_row(b, "VAE decode, steady block (12 frames)", median(t, reps),
            eng_vae_decode_flops(vc, T, 0, c->lat_h, c->lat_w), 0.0, 45.0,
            "device incl. RGB8 copy");
}

static void bench_encoders(bench *b, vae_run *r, const eng_config *c) {
    const int H = 8 * c->lat_h, W = 8 * c->lat_w;
    const size_t frame = (size_t)3 * H * W;
    float *img = xmalloc(4 * frame * sizeof(float));
    float lat[16 * 2 * 44 * 80];
    eng_noise_fill(img, 4 * frame, SEED, 99, 0, 0);
    for (size_t i = 0; i < 4 * frame; i++) img[i] = tanhf(img[i]); /* in [-1, 1] */
    wmcuda_vae_encoder *e = NULL;
    const vae_config *vc = vae_weights_config(r->w);
    double t0, first = 0, chunk = 0;
    int nlat = 0;
    if ((size_t)16 * c->lat_h * c->lat_w > sizeof lat / sizeof lat[0]) die("encoders", "latent size");
    for (int rep = 0; rep < 3; rep++) { /* the last of three cold encodes (first use warms up) */
        MUST(b, wmcuda_vae_encoder_create(r->v, H, W, &e, b->err, sizeof b->err));
        t0 = now_ms();
        MUST(b, wmcuda_vae_encode(e, img, 1, lat, &nlat, b->err, sizeof b->err));
        first = now_ms() - t0;
        t0 = now_ms();
        MUST(b, wmcuda_vae_encode(e, img, 4, lat, &nlat, b->err, sizeof b->err));
        chunk = now_ms() - t0;
        wmcuda_vae_encoder_destroy(e);
    }
    add_row(b, "VAE encode, start image (1 frame)", first, eng_vae_encode_flops(vc, 1, 1, H, W),
            0.0, 0.0, "host wall, host in/out");
    add_row(b, "VAE encode, 4-frame chunk", chunk, eng_vae_encode_flops(vc, 4, 0, H, W), 0.0, 0.0,
            "host wall, host in/out");

    clip_config cc;
    clip_weights *cw = NULL;
    wmcuda_clip *clip = NULL;
    MUST(b, clip_config_preset(&cc, "full", b->err, sizeof b->err));
    MUST(b, clip_weights_synthetic(&cc, 6, &cw, b->err, sizeof b->err));
    MUST(b, wmcuda_clip_create(cw, b->st, &clip, b->err, sizeof b->err));
    float *tokens = xmalloc((size_t)clip_tokens(&cc) * cc.width * sizeof(float));
    double t[64];
    const int reps = b->o.reps < 64 ? b->o.reps : 64;
    for (int i = -1; i < reps; i++) {
        t0 = now_ms();
        MUST(b, wmcuda_clip_encode(clip, img, H, W, tokens, b->err, sizeof b->err));
        if (i >= 0) t[i] = now_ms() - t0;
    }
    const double clip_ms = median(t, reps);
    add_row(b, "CLIP encode (31 blocks)", clip_ms, eng_clip_encode_flops(&cc), 0.0, 0.0,
            "host wall incl. preprocessing");
    add_row(b, "session start (CLIP + VAE image)", clip_ms + first,
            eng_clip_encode_flops(&cc) + eng_vae_encode_flops(vc, 1, 1, H, W), 0.0, 0.0,
            "sum of the two rows above");
    wmcuda_clip_destroy(clip);
    clip_weights_free(cw);
    free(tokens), free(img);
}

/* Whole blocks: the sampler's forwards + context pass, then the decode, host wall each. */
static void bench_blocks(bench *b, dit_run *d, vae_run *r) {
    const eng_config *c = wmcuda_dit_config(d->dit);
    const vae_config *vc = r ? vae_weights_config(r->w) : NULL;
    const int T = c->frames_per_block, K = c->num_steps;
    double t[64], tdit[64];
    const int n = b->o.blocks < 64 ? b->o.blocks : 64;
    for (int i = 0; i < n; i++) {
        eng_block_timings tm;
        const double t0 = now_ms();
        dit_block(b, d, &tm);
        tdit[i] = now_ms() - t0;
        if (r) {
            int nframes = 0;
            MUST(b, wmcuda_vae_decode(r->dec, d->lat, T, r->rgb, NULL, &nframes, b->err,
                                      sizeof b->err));
        }
        t[i] = now_ms() - t0;
    }
    eng_dit_cost k;
    eng_dit_forward_cost(c, c->local_attn_size, &k);
    const double dit_fl = (K + 1) * k.total;
    add_row(b, "DiT block (steps + context pass)", median(tdit, n), dit_fl, 0.0, 0.0,
            "host wall, host in/out");
    if (r) {
        const double blk = median(t, n);
        add_row(b, "whole block (DiT + VAE decode)", blk,
                dit_fl + eng_vae_decode_flops(vc, T, 0, c->lat_h, c->lat_w), 0.0, 150.0,
                "host wall, RGB8 on the host");
        printf("info one session: %.1f video frames/s (%d frames per %.1f ms block)\n",
               12.0 / (blk * 1e-3), 12, blk);
    }
}

/* A block as one graph replay vs the same block launched eagerly (issue 6, graphs/README.md):
 * device time around the block and the host time to enqueue it, medians over the steady blocks
 * of a fresh run of each mode (reset, then blocks 0 .. n-1; block 0 and 1 left out). */
static void bench_graphs(bench *b, dit_run *d) {
    double dev[2][64], enq[2][64];
    const int n = b->o.blocks < 64 ? b->o.blocks : 64;
    if (n < 3) return;
    for (int mode = 1; mode >= 0; mode--) {
        MUST(b, wmcuda_dit_session_reset(d->s, b->err, sizeof b->err));
        MUST(b, wmcuda_dit_prepare_cross(d->s, d->in.clip, b->err, sizeof b->err));
        wmcuda_dit_session_set_graphs(d->s, mode);
        for (int i = 0; i < n; i++) {
            eng_block_timings tm;
            wmcuda_dit_block_stats st;
            dit_block(b, d, &tm);
            wmcuda_dit_last_block(d->s, &st);
            dev[mode][i] = st.device_ms, enq[mode][i] = st.enqueue_ms;
        }
    }
    wmcuda_dit_session_set_graphs(d->s, -1);
    add_row(b, "DiT block, graph replay", median(dev[1] + 2, n - 2), 0.0, 0.0, 0.0,
            "device, events around the replay");
    add_row(b, "DiT block, eager (WM_GRAPHS=0)", median(dev[0] + 2, n - 2), 0.0, 0.0, 0.0,
            "device, same kernels launched one by one");
    add_row(b, "  host enqueue, graph replay", median(enq[1] + 2, n - 2), 0.0, 0.0, 0.0,
            "host wall of cudaGraphLaunch");
    add_row(b, "  host enqueue, eager", median(enq[0] + 2, n - 2), 0.0, 0.0, 0.0,
            "host wall of every launch of the block");
}

/* ---- report --------------------------------------------------------------------------------------- */

static void report(const bench *b) {
    int dev;
    struct cudaDeviceProp p;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&p, dev));
    printf("\n== wmbench on %s (%d SMs, %.0f GB): measured ceilings %.0f TFLOP/s bf16 "
           "(cuBLASLt 8192^3), %.2f TB/s (device copy)\n",
           p.name, p.multiProcessorCount, p.totalGlobalMem * 1e-9, b->peak_flops * 1e-12,
           b->peak_bw * 1e-12);
    printf("%-38s %10s %10s %10s %8s %8s %8s  %s\n", "figure", "ms", "TFLOP", "TFLOP/s", "floor",
           "of floor", "target", "time is");
    for (int i = 0; i < b->nrows; i++) {
        const row *r = &b->rows[i];
        const double floor_ms = fmax(r->flops / b->peak_flops, r->bytes / b->peak_bw) * 1e3;
        char rate[16] = "", fl[16] = "", fr[16] = "", fm[16] = "", tg[16] = "";
        if (r->flops > 0) {
            snprintf(fl, sizeof fl, "%.3f", r->flops * 1e-12);
            snprintf(rate, sizeof rate, "%.0f", r->flops / (r->ms * 1e-3) * 1e-12);
        }
        if (floor_ms > 0) {
            snprintf(fm, sizeof fm, "%.2f", floor_ms);
            snprintf(fr, sizeof fr, "%.0f%%", 100.0 * floor_ms / r->ms);
        }
        if (r->target > 0) snprintf(tg, sizeof tg, "%s%.0f", r->ms <= r->target ? "ok " : "> ", r->target);
        printf("%-38s %10.2f %10s %10s %8s %8s %8s  %s\n", r->name, r->ms, fl, rate, fm, fr, tg,
               r->how);
    }
    printf("GPU memory: model %.2f GB (DiT + VAE weights, tables, scratch), per session %.2f GB "
           "(KV/action caches, activations, decoder caches)\n",
           b->mem_model * 1e-9, b->mem_session * 1e-9);
}

static void write_json(const bench *b) {
    FILE *f = fopen(b->o.json, "w");
    if (!f) {
        fprintf(stderr, "wmbench: cannot write %s\n", b->o.json);
        return;
    }
    fprintf(f, "{\"peak_tflops\": %.1f, \"peak_tbps\": %.3f, \"mem_model_gb\": %.3f, "
               "\"mem_session_gb\": %.3f, \"rows\": [",
            b->peak_flops * 1e-12, b->peak_bw * 1e-12, b->mem_model * 1e-9, b->mem_session * 1e-9);
    for (int i = 0; i < b->nrows; i++)
        fprintf(f, "%s\n {\"name\": \"%s\", \"ms\": %.4f, \"tflop\": %.4f, \"target_ms\": %.1f}",
                i ? "," : "", b->rows[i].name, b->rows[i].ms, b->rows[i].flops * 1e-12,
                b->rows[i].target);
    fprintf(f, "\n]}\n");
    fclose(f);
}

static void usage(FILE *to) {
    fprintf(to,
            "usage: wmbench [options]\n"
            "Times the CUDA backend at full size (synthetic weights made here) on this GPU and\n"
            "prints each figure against the floor (FLOPs over the measured bf16 rate, bytes over\n"
            "the measured bandwidth) and the issue's targets.\n"
            "  --variant NAME   universal (default), gta_drive or templerun\n"
            "  --layers N       DiT layers (default: all 30; fewer for a quick look)\n"
            "  --reps N         timed repetitions per figure (default 10)\n"
            "  --blocks N       whole blocks timed in steady state (default 8)\n"
            "  --no-vae         skip the VAE decode and whole-block rows\n"
            "  --no-encoders    skip the start-up encoders (VAE encoder, CLIP)\n"
            "  --json FILE      also write the rows as JSON\n"
            "  -h, --help       this text\n");
}

static void parse(int argc, char **argv, bench_opts *o) {
    static const struct option longs[] = {
        {"variant", 1, 0, 'v'}, {"layers", 1, 0, 'l'}, {"reps", 1, 0, 'r'},
        {"blocks", 1, 0, 'b'},  {"no-vae", 0, 0, 'V'}, {"no-encoders", 0, 0, 'E'},
        {"json", 1, 0, 'j'},    {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    *o = (bench_opts){.variant = ENG_VARIANT_UNIVERSAL, .reps = 10, .blocks = 8};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'v': {
            const int v = eng_variant_parse(optarg);
            if (v < 0) {
                fprintf(stderr, "wmbench: unknown variant '%s'\n", optarg);
                exit(2);
            }
            o->variant = (eng_variant)v;
            break;
        }
        case 'l': o->layers = atoi(optarg); break;
        case 'r': o->reps = atoi(optarg); break;
        case 'b': o->blocks = atoi(optarg); break;
        case 'V': o->no_vae = 1; break;
        case 'E': o->no_encoders = 1; break;
        case 'j': o->json = optarg; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc || o->reps < 1 || o->reps > 64 || o->blocks < 1 || o->blocks > 64 ||
        o->layers < 0) {
        fprintf(stderr, "wmbench: bad arguments (reps and blocks 1..64, layers >= 0)\n");
        usage(stderr);
        exit(2);
    }
}

int main(int argc, char **argv) {
    static bench b;
    parse(argc, argv, &b.o);
    eng_config cfg;
    MUST(&b, eng_config_preset(&cfg, "full", b.o.variant, b.err, sizeof b.err));
    if (b.o.layers > 0 && b.o.layers < cfg.num_layers) cfg.num_layers = b.o.layers;
    CK(cudaSetDevice(0));
    CK(cudaEventCreate(&b.e0));
    CK(cudaEventCreate(&b.e1));
    dit_run d;
    memset(&d, 0, sizeof d);
    dit_open(&b, &cfg, &d); /* sets b.st: every figure runs on the model's stream */
    measure_ceilings(&b);
    bench_dit(&b, &d);
    vae_run r;
    memset(&r, 0, sizeof r);
    if (!b.o.no_vae) {
        vae_open(&b, &cfg, &r);
        bench_vae(&b, &d, &r);
    }
    bench_blocks(&b, &d, b.o.no_vae ? NULL : &r);
    bench_graphs(&b, &d);
    if (!b.o.no_vae && !b.o.no_encoders) bench_encoders(&b, &r, &cfg);
    report(&b);
    if (b.o.json) write_json(&b);
    if (!b.o.no_vae) vae_close(&r);
    dit_close(&d);
    return 0;
}
