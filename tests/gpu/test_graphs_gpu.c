/* GPU check that a block step replayed as one CUDA graph (engine/cuda/dit_cuda.h,
 * graphs/block_graph.h) gives the same bits as the same step run eagerly, then its timing at full
 * size. Runs on the GPU host only (not a ctest): tests/gpu/run_graphs_gpu.sh.
 *
 * (a) tiny model (synthetic weights, random conditioning and actions), each variant (universal:
 *     W 6; gta_drive: W 4, so the ring wraps inside a block and evicts part of a block;
 *     templerun: 4 steps, no mouse), rope_pos_limit 9 so the RoPE origin moves every other block
 *     (cached keys rotated eagerly before the replay). Two sessions of one model with the same
 *     seed: one replays graphs, one runs eagerly. NBLOCKS blocks, a reset after RESET_AT (then
 *     block 0 again from the same captured graph), every block's latents compared with memcmp:
 *     bound 0 differing bytes. The model's first block ever runs eagerly (GEMM table cold) and
 *     the next captures: the graph session must have replayed every other block. Also checked:
 *     the latents are finite and change from block to block (a graph that replayed stale inputs
 *     or one block's values for all would show), WM_GRAPHS=0 turns replays off.
 * (b) full size (30 layers, universal, synthetic weights): FULL_BLOCKS blocks through block 0,
 *     filling and the steady window, graph vs eager with memcmp; then per-block timing medians
 *     over the steady blocks: device time (cudaEvents around the block), host time to enqueue it
 *     (the graph launch vs every eager launch) and the wall time of wmcuda_dit_run_block.
 * WM_GRAPHS_TEST_PARTS=a,b (default both). Exit 0 pass, 1 a check failed, 2 setup or CUDA error.
 * No VAE here: the block graph covers the DiT (graphs/README.md). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "engine/config.h"
#include "engine/cuda/dit_cuda.h"
#include "engine/engine.h"
#include "engine/model_internal.h"
#include "engine/weights.h"

#include "tests/gpu/gpu_test.h"

#define SEED        4321u
#define SESSION     11u
#define NBLOCKS     40
#define RESET_AT    23 /* blocks 0 .. RESET_AT-1, reset, then the rest from block 0 */
#define FULL_BLOCKS 8

static int g_failures, g_checks;

static void check(int pass, const char *fmt, const char *what, double value) {
    printf("%s ", pass ? "ok  " : "FAIL");
    printf(fmt, what, value);
    printf("\n");
    g_checks++;
    if (!pass) g_failures++;
}

typedef struct inputs {
    const eng_config *c;
    int cond_frames, total_video;
    float *cond, *clip;
    eng_action_script actions;
    size_t nlat, ncond;
} inputs;

static void inputs_make(inputs *in, const eng_config *c, int nblocks) {
    memset(in, 0, sizeof *in);
    const int T = c->frames_per_block;
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    in->c = c, in->cond_frames = nblocks * T;
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

static void inputs_free(inputs *in) {
    free(in->cond), free(in->clip);
    eng_actions_free(&in->actions);
}

/* Block n's cond slice and action windows (as eng_cond_slice / eng_action_windows). */
static void block_inputs(const inputs *in, int n, float *cond_blk, float *mw, float *kw) {
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
    eng_action_windows(c, in->actions.frames, in->total_video, (int64_t)n * T, T, mw, kw);
}

typedef struct pair_run {
    int blocks, diff_blocks, replays, nonfinite, unchanged, first_diff;
    double dev_g[64], dev_e[64], enq_g[64], enq_e[64], wall_g[64], wall_e[64];
    size_t nodes;
} pair_run;

static int finite_all(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* A graph session and an eager session of one model, block by block, reset at reset_at (< 0:
 * never). Block index b of the run is block b (or b - reset_at after the reset) of the session. */
static void run_pair(wmcuda_dit *dit, const eng_config *c, int nblocks, int reset_at, pair_run *r) {
    memset(r, 0, sizeof *r);
    r->first_diff = -1;
    const int T = c->frames_per_block, P = eng_action_window(c);
    inputs in;
    inputs_make(&in, c, nblocks);
    wmcuda_dit_session *gs = NULL, *es = NULL;
    MUST(wmcuda_dit_session_create(dit, SEED, SESSION, &gs, err, sizeof err));
    MUST(wmcuda_dit_session_create(dit, SEED, SESSION, &es, err, sizeof err));
    wmcuda_dit_session_set_graphs(gs, 1);
    wmcuda_dit_session_set_graphs(es, 0);
    MUST(wmcuda_dit_prepare_cross(gs, in.clip, err, sizeof err));
    MUST(wmcuda_dit_prepare_cross(es, in.clip, err, sizeof err));
    float *cond_blk = xmalloc(in.ncond * sizeof(float));
    float *mw = xmalloc((size_t)T * P * 2 * sizeof(float));
    float *kw = xmalloc((size_t)T * P * c->keyboard_dim_in * sizeof(float));
    float *lg = xmalloc(in.nlat * sizeof(float)), *le = xmalloc(in.nlat * sizeof(float));
    float *prev = xmalloc(in.nlat * sizeof(float));
    for (int b = 0; b < nblocks; b++) {
        if (b == reset_at) {
            MUST(wmcuda_dit_session_reset(gs, err, sizeof err));
            MUST(wmcuda_dit_session_reset(es, err, sizeof err));
            MUST(wmcuda_dit_prepare_cross(gs, in.clip, err, sizeof err));
            MUST(wmcuda_dit_prepare_cross(es, in.clip, err, sizeof err));
        }
        const int n = (int)wmcuda_dit_next_block(gs);
        block_inputs(&in, n, cond_blk, mw, kw);
        wmcuda_dit_block_stats st;
        /* the graph session first: on a fresh model its first block meets the cold GEMM table */
        MUST(wmcuda_dit_run_block(gs, cond_blk, c->enable_mouse ? mw : NULL, kw, lg, NULL, err,
                                  sizeof err));
        wmcuda_dit_last_block(gs, &st);
        r->replays += st.graph;
        r->dev_g[b % 64] = st.device_ms, r->enq_g[b % 64] = st.enqueue_ms, r->wall_g[b % 64] = st.wall_ms;
        r->nodes = st.graph_nodes;
        MUST(wmcuda_dit_run_block(es, cond_blk, c->enable_mouse ? mw : NULL, kw, le, NULL, err,
                                  sizeof err));
        wmcuda_dit_last_block(es, &st);
        if (st.graph) r->replays += 1000; /* an eager session must never replay */
        r->dev_e[b % 64] = st.device_ms, r->enq_e[b % 64] = st.enqueue_ms, r->wall_e[b % 64] = st.wall_ms;
        if (memcmp(lg, le, in.nlat * sizeof(float)) != 0) {
            r->diff_blocks++;
            if (r->first_diff < 0) r->first_diff = b;
        }
        if (!finite_all(le, in.nlat)) r->nonfinite++;
        if (b > 0 && memcmp(prev, le, in.nlat * sizeof(float)) == 0) r->unchanged++;
        memcpy(prev, le, in.nlat * sizeof(float));
        r->blocks++;
    }
    /* the switch: WM_GRAPHS=0 turns a default session eager */
    wmcuda_dit_session_set_graphs(gs, -1);
    setenv("WM_GRAPHS", "0", 1);
    const int n = (int)wmcuda_dit_next_block(gs);
    block_inputs(&in, n < nblocks ? n : nblocks - 1, cond_blk, mw, kw);
    MUST(wmcuda_dit_run_block(gs, cond_blk, c->enable_mouse ? mw : NULL, kw, lg, NULL, err,
                              sizeof err));
    wmcuda_dit_block_stats st;
    wmcuda_dit_last_block(gs, &st);
    unsetenv("WM_GRAPHS");
    check(st.graph == 0, "%-56s %.0f (bound 0)", "WM_GRAPHS=0: replays in a default session",
          (double)st.graph);
    free(cond_blk), free(mw), free(kw), free(lg), free(le), free(prev);
    wmcuda_dit_session_destroy(gs);
    wmcuda_dit_session_destroy(es);
    inputs_free(&in);
}

static void part_tiny(int variant) {
    eng_model_options o;
    memset(&o, 0, sizeof o);
    o.variant = variant, o.weight_seed = 77, o.rope_pos_limit = 9;
    o.backend = ENG_BACKEND_CPU; /* only the weights: the test makes its own CUDA DiT */
    eng_model *model = NULL;
    MUST(eng_model_open("synthetic:tiny", &o, &model, err, sizeof err));
    const eng_weights *w = eng_model_weights(model);
    const eng_config *c = &w->cfg;
    printf("\n== tiny %s: T %d, W %d, %d steps, rope_pos_limit %d, %d blocks, reset after %d\n",
           eng_variant_name(c->variant), c->frames_per_block, c->local_attn_size, c->num_steps,
           c->rope_pos_limit, NBLOCKS, RESET_AT);
    wmcuda_dit *dit = NULL;
    MUST(wmcuda_dit_create(w, &dit, err, sizeof err));
    pair_run r;
    run_pair(dit, c, NBLOCKS, RESET_AT, &r);
    printf("info graph nodes %zu, replays %d of %d blocks\n", r.nodes, r.replays, r.blocks);
    char what[96];
    snprintf(what, sizeof what, "%s: blocks whose latents differ (first %d)",
             eng_variant_name(c->variant), r.first_diff);
    check(r.diff_blocks == 0, "%-56s %.0f (bound 0)", what, (double)r.diff_blocks);
    snprintf(what, sizeof what, "%s: blocks not replayed (of %d)", eng_variant_name(c->variant),
             r.blocks);
    check(r.blocks - r.replays == 1, "%-56s %.0f (must be 1: the cold first)", what,
          (double)(r.blocks - r.replays));
    snprintf(what, sizeof what, "%s: non-finite or repeated blocks", eng_variant_name(c->variant));
    check(r.nonfinite + r.unchanged == 0, "%-56s %.0f (bound 0)", what,
          (double)(r.nonfinite + r.unchanged));
    wmcuda_dit_destroy(dit);
    eng_model_close(model);
}

static double med(const double *v, int from, int to) {
    double t[64];
    int n = 0;
    for (int i = from; i < to; i++) t[n++] = v[i];
    return median(t, n);
}

static void part_full(void) {
    eng_config cfg;
    MUST(eng_config_preset(&cfg, "full", ENG_VARIANT_UNIVERSAL, err, sizeof err));
    printf("\n== full size: %d layers, universal, synthetic weights, %d blocks\n", cfg.num_layers,
           FULL_BLOCKS);
    eng_weights w;
    memset(&w, 0, sizeof w);
    MUST(weights_init_synthetic(&w, &cfg, 99, err, sizeof err));
    wmcuda_dit *dit = NULL;
    MUST(wmcuda_dit_create(&w, &dit, err, sizeof err));
    weights_free(&w);
    const eng_config *c = wmcuda_dit_config(dit);
    pair_run r;
    run_pair(dit, c, FULL_BLOCKS, -1, &r);
    printf("info graph nodes %zu, replays %d of %d blocks\n", r.nodes, r.replays, r.blocks);
    check(r.diff_blocks == 0, "%-56s %.0f (bound 0)", "full: blocks whose latents differ",
          (double)r.diff_blocks);
    check(r.blocks - r.replays == 1, "%-56s %.0f (must be 1)", "full: blocks not replayed",
          (double)(r.blocks - r.replays));
    check(r.nonfinite + r.unchanged == 0, "%-56s %.0f (bound 0)", "full: non-finite or repeated",
          (double)(r.nonfinite + r.unchanged));
    const int a = 2, z = FULL_BLOCKS; /* steady blocks (block 1 captured) */
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("\ntiming on %s, blocks %d..%d (steady window), medians, ms per block:\n", prop.name,
           a, z - 1);
    printf("  %-8s %12s %16s %12s\n", "mode", "device", "host enqueue", "wall");
    printf("  %-8s %12.2f %16.3f %12.2f\n", "eager", med(r.dev_e, a, z), med(r.enq_e, a, z),
           med(r.wall_e, a, z));
    printf("  %-8s %12.2f %16.3f %12.2f\n", "graph", med(r.dev_g, a, z), med(r.enq_g, a, z),
           med(r.wall_g, a, z));
    wmcuda_dit_destroy(dit);
}

static int want(const char *parts, char p) { return !parts || strchr(parts, p) != NULL; }

int main(void) {
    const char *parts = getenv("WM_GRAPHS_TEST_PARTS");
    if (want(parts, 'a'))
        for (int v = 0; v < ENG_VARIANT_COUNT; v++) part_tiny(v);
    if (want(parts, 'b')) part_full();
    printf("\n%s: %d of %d checks failed\n", g_failures ? "FAIL" : "PASS", g_failures, g_checks);
    return g_failures ? 1 : 0;
}
