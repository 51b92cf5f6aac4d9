/* The streaming path (rolling KV caches, eviction, action caches, context pass, RoPE rebase)
 * against a cache-free computation: one forward over the whole sequence so far, where earlier
 * blocks enter as their clean x0 at t = 0 and the current block as its noisy input at the step's
 * timestep, with the block-causal local attention mask of model-dit.md 4.5 e. For every variant,
 * block and forward (3 or 4 steps and the context pass) the current block's model output must
 * agree to float32 rounding. Also: determinism (same seed, bit-identical latents, any thread
 * count) and the long-session RoPE rebase. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/dit_cpu.h"
#include "engine/engine.h"
#include "engine/model_internal.h"
#include "test_util.h"

#define MAX_BLOCKS   5
#define CACHE_BOUND  2e-5 /* float32, different key order and masking in the products */
#define REBASE_BOUND 1e-4 /* rotating cached keys back adds float32 rounding per rebase */

typedef struct recorder {
    const eng_config *c;
    size_t nblk;
    float *x[MAX_BLOCKS][ENG_MAX_STEPS + 1], *v[MAX_BLOCKS][ENG_MAX_STEPS + 1];
} recorder;

static void record(void *user, const char *name, const float *data, int ndim,
                   const int64_t *shape) {
    (void)ndim, (void)shape;
    recorder *r = user;
    int b, k;
    char what;
    if (sscanf(name, "b%d.s%d.%c", &b, &k, &what) != 3 || b >= MAX_BLOCKS) return;
    float **slot = what == 'x' ? &r->x[b][k] : what == 'v' ? &r->v[b][k] : NULL;
    if (!slot) return;
    if (!*slot) *slot = malloc(r->nblk * sizeof(float));
    memcpy(*slot, data, r->nblk * sizeof(float));
}

typedef struct session_run {
    eng_model *m;
    float *cond, *clip, *latents[MAX_BLOCKS];
    eng_action_script script;
    int cond_frames;
} session_run;

static int open_run(session_run *r, eng_variant v, int rope_limit, int blocks) {
    char err[512];
    memset(r, 0, sizeof *r);
    eng_model_options o = {.variant = (int)v, .weight_seed = 7, .rope_pos_limit = rope_limit};
    if (eng_model_open("synthetic:tiny", &o, &r->m, err, sizeof err)) {
        printf("model: %s\n", err);
        return -1;
    }
    const eng_config *c = eng_model_config(r->m);
    r->cond_frames = 3 * blocks;
    size_t HW = (size_t)c->lat_h * c->lat_w;
    r->cond = malloc(20 * (size_t)r->cond_frames * HW * sizeof(float));
    r->clip = malloc((size_t)c->clip_tokens * c->clip_dim * sizeof(float));
    eng_synthetic_conditioning(c, 3, r->cond_frames, r->cond, r->clip);
    return eng_actions_random(c, 11, (size_t)12 * blocks, &r->script);
}

static void close_run(session_run *r) {
    for (int b = 0; b < MAX_BLOCKS; b++) free(r->latents[b]);
    free(r->cond), free(r->clip);
    eng_actions_free(&r->script);
    eng_model_close(r->m);
}

/* Runs `blocks` blocks; latents and (with rec) every forward's input/output are kept. */
static int run_session(session_run *r, int blocks, recorder *rec, uint64_t seed) {
    const eng_config *c = eng_model_config(r->m);
    char err[512];
    eng_session *s = NULL;
    eng_session_params p = {.seed = seed,
                            .session_id = 1,
                            .cond = r->cond,
                            .cond_frames = r->cond_frames,
                            .clip = r->clip,
                            .trace = rec ? record : NULL,
                            .trace_hidden_block = -1,
                            .user = rec};
    if (eng_session_create(r->m, &p, &s, err, sizeof err)) {
        printf("session: %s\n", err);
        return -1;
    }
    size_t nblk = 16 * 3 * (size_t)c->lat_h * c->lat_w;
    int64_t vf = 0;
    for (int b = 0; b < blocks; b++) {
        eng_action_frame acts[12];
        int n = eng_session_block_video_frames(s);
        for (int i = 0; i < n; i++) acts[i] = eng_actions_at(&r->script, (size_t)(vf + i));
        vf += n;
        if (!r->latents[b]) r->latents[b] = malloc(nblk * sizeof(float));
        if (eng_session_run_block(s, acts, n, r->latents[b], NULL, err, sizeof err)) {
            printf("block %d: %s\n", b, err);
            eng_session_destroy(s);
            return -1;
        }
    }
    eng_session_destroy(s);
    return 0;
}

/* One forward over frames 0 .. 3n+2 with the mask; returns the rel. error of the last block. */
static double whole_sequence_error(session_run *r, recorder *rec, int n, int k, float t_block) {
    if (!rec->x[n][k] || !rec->v[n][k]) return 1.0; /* that forward never ran */
    const eng_weights *w = eng_model_weights(r->m);
    const eng_config *c = &w->cfg;
    const int F = 3 * (n + 1), T = 3;
    const size_t HW = (size_t)c->lat_h * c->lat_w;
    float *x = malloc(16 * (size_t)F * HW * sizeof(float));
    float *cond = malloc(20 * (size_t)F * HW * sizeof(float));
    float *v = malloc(16 * (size_t)F * HW * sizeof(float)),
          *vlast = malloc(rec->nblk * sizeof(float));
    float *t = malloc((size_t)F * sizeof(float));
    float *mw = malloc((size_t)F * 24 * sizeof(float)),
          *kw = malloc((size_t)F * 12 * ENG_MAX_KDIM * sizeof(float));
    for (int f = 0; f < F; f++) {
        const int b = f / T, fi = f % T;
        const float *src = b < n ? r->latents[b] : rec->x[n][k];
        for (int ch = 0; ch < 16; ch++)
            memcpy(x + ((size_t)ch * F + f) * HW, src + ((size_t)ch * T + fi) * HW,
                   HW * sizeof(float));
        for (int ch = 0; ch < 20; ch++)
            memcpy(cond + ((size_t)ch * F + f) * HW,
                   r->cond + ((size_t)ch * r->cond_frames + f) * HW, HW * sizeof(float));
        t[f] = b < n ? 0.0f : t_block;
    }
    eng_action_windows(c, r->script.frames, (int64_t)r->script.count, 0, F,
                       c->enable_mouse ? mw : NULL, kw);
    dit_store st;
    char err[256];
    dit_workspace *ws = dit_workspace_create(c, F, F);
    double e = 1.0;
    if (ws && !dit_store_create(&st, c, F, err, sizeof err)) {
        dit_cpu_prepare_cross(w, r->clip, &st, ws);
        dit_inputs in = {.nframes = F,
                         .frame0 = 0,
                         .rope_base = 0,
                         .x = x,
                         .cond = cond,
                         .t = t,
                         .mouse_win = c->enable_mouse ? mw : NULL,
                         .kb_win = kw};
        if (!dit_cpu_forward(w, &in, &st, ws, v, err, sizeof err)) {
            for (int ch = 0; ch < 16; ch++)
                memcpy(vlast + (size_t)ch * T * HW, v + ((size_t)ch * F + 3 * n) * HW,
                       (size_t)T * HW * sizeof(float));
            e = tu_rel_err(vlast, rec->v[n][k], rec->nblk);
        }
        dit_store_destroy(&st);
    }
    dit_workspace_destroy(ws);
    free(x), free(cond), free(v), free(vlast), free(t), free(mw), free(kw);
    return e;
}

static void test_cache_equivalence(eng_variant v, int blocks) {
    session_run r;
    recorder rec = {0};
    if (open_run(&r, v, 0, blocks)) {
        tu_check(0, "%s: set-up", eng_variant_name(v));
        return;
    }
    const eng_config *c = eng_model_config(r.m);
    rec.c = c, rec.nblk = 16 * 3 * (size_t)c->lat_h * c->lat_w;
    if (run_session(&r, blocks, &rec, 5)) {
        tu_check(0, "%s: streaming session", eng_variant_name(v));
        close_run(&r);
        return;
    }
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS];
    eng_sampler_schedule(c, tau, sigma);
    for (int n = 0; n < blocks; n++) {
        double worst = 0;
        for (int k = 0; k <= c->num_steps; k++) {
            double e = whole_sequence_error(&r, &rec, n, k, k < c->num_steps ? tau[k] : 0.0f);
            if (!(e <= worst)) worst = e;
        }
        tu_check(worst < CACHE_BOUND,
                 "%s (W=%d) block %d: streaming vs whole-sequence masked forward, all %d forwards: "
                 "max rel err %.2e",
                 eng_variant_name(v), c->local_attn_size, n, c->num_steps + 1, worst);
    }
    for (int b = 0; b < MAX_BLOCKS; b++)
        for (int k = 0; k <= ENG_MAX_STEPS; k++) free(rec.x[b][k]), free(rec.v[b][k]);
    close_run(&r);
}

static void test_determinism(void) {
    session_run r;
    if (open_run(&r, ENG_VARIANT_UNIVERSAL, 0, 3)) return tu_check(0, "determinism set-up");
    const eng_config *c = eng_model_config(r.m);
    const size_t nblk = 16 * 3 * (size_t)c->lat_h * c->lat_w;
    float *first[3];
    run_session(&r, 3, NULL, 42);
    for (int b = 0; b < 3; b++) first[b] = r.latents[b], r.latents[b] = NULL;
    int nthreads = omp_get_max_threads();
    omp_set_num_threads(1);
    run_session(&r, 3, NULL, 42);
    omp_set_num_threads(nthreads);
    int same = 1;
    for (int b = 0; b < 3; b++) same &= memcmp(first[b], r.latents[b], nblk * sizeof(float)) == 0;
    tu_check(same, "same seed: bit-identical latents over 3 blocks (%d threads vs 1 thread)",
             nthreads);
    run_session(&r, 3, NULL, 43);
    double e = tu_rel_err(r.latents[0], first[0], nblk);
    tu_check(e > 0.1, "a different seed gives different latents (rel diff %.2f)", e);
    for (int b = 0; b < 3; b++) free(first[b]);
    close_run(&r);
}

/* A session that rebases its RoPE positions every few blocks against one that never does. */
static void test_rope_rebase(eng_variant v) {
    const int blocks = MAX_BLOCKS;
    session_run a, b;
    if (open_run(&a, v, 0, blocks) || open_run(&b, v, 0, blocks))
        return tu_check(0, "rebase set-up");
    const eng_config *c = eng_model_config(a.m);
    int limit = c->local_attn_size + c->frames_per_block; /* rebase at every block from block 1 */
    eng_model_close(b.m);
    eng_model_options o = {.variant = (int)v, .weight_seed = 7, .rope_pos_limit = limit};
    char err[256];
    eng_model_open("synthetic:tiny", &o, &b.m, err, sizeof err);
    run_session(&a, blocks, NULL, 9);
    run_session(&b, blocks, NULL, 9);
    const size_t nblk = 16 * 3 * (size_t)c->lat_h * c->lat_w;
    double worst = 0;
    for (int i = 0; i < blocks; i++) {
        double e = tu_rel_err(b.latents[i], a.latents[i], nblk);
        if (!(e <= worst)) worst = e;
    }
    int differs = memcmp(a.latents[blocks - 1], b.latents[blocks - 1], nblk * sizeof(float)) != 0;
    tu_check(worst < REBASE_BOUND && differs,
             "%s: RoPE rebased every block (limit %d) vs never, %d blocks: max rel err %.2e%s",
             eng_variant_name(v), limit, blocks, worst,
             differs ? "" : " (identical: rebase not run?)");
    close_run(&a), close_run(&b);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_cache_equivalence(ENG_VARIANT_UNIVERSAL, 4);
    test_cache_equivalence(ENG_VARIANT_GTA_DRIVE, 4);
    test_cache_equivalence(ENG_VARIANT_TEMPLERUN, 3);
    test_determinism();
    test_rope_rebase(ENG_VARIANT_UNIVERSAL);
    test_rope_rebase(ENG_VARIANT_GTA_DRIVE);
    return tu_finish("test_streaming");
}
