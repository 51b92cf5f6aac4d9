/* The causal Wan DiT of Matrix-Game-2.0 on the GPU, readable top to bottom in the order of the
 * CPU reference engine/cpu/dit_cpu.c: the model (bf16 weight upload, RoPE tables, handles), the
 * session (caches, scratch), then one forward (model-dit.md 4: input assembly and time path,
 * self-attention, cross-attention, action module 6, FFN, head) and the block loop of
 * engine/session.c (7.3). The math lives in the kernels of dit_kernels.h, gemm.h and
 * dit_cuda_kernels.h; this file only orders the launches on the model's stream. */
#include "engine/cuda/dit_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/cuda/cuda_check.h" /* before the other CUDA headers: WMCUDA_EINVAL */

#include "engine/cpu/rope.h"
#include "engine/cuda/attention.h"
#include "engine/cuda/bf16.h"
#include "engine/cuda/dit_cuda_kernels.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/noise_cuda.h"
#include "engine/noise.h"
#include "graphs/block_graph.h"

typedef wmcuda_bf16 bf16;

#define PROF_EVENTS 4096 /* brackets kept before the profiler folds them into its totals: a block */

/* ---- model ------------------------------------------------------------------------------------- */

typedef struct dev_action {
    bf16 *kb0_w, *kb0_b;     /* keyboard_embed.0, the weight padded to [E][kpad] with zeros */
    bf16 *kb2_w, *kb2_b;     /* keyboard_embed.2 */
    bf16 *mm0_w, *mm0_b;     /* mouse_mlp.0 [Hm][D + 2P] */
    bf16 *mm2_w, *mm2_b;     /* mouse_mlp.2 */
    bf16 *mm3_w, *mm3_b;     /* mouse_mlp.3 LayerNorm */
    bf16 *t_qkv;             /* [3 Hm][Hm] */
    bf16 *proj_mouse;        /* [D][Hm] */
    bf16 *mouse_attn_q;      /* [Hk][D] */
    bf16 *kb_attn_kv;        /* [2 Hk][P E] */
    bf16 *proj_keyboard;     /* [D][Hk] */
} dev_action;

typedef struct dev_layer {
    bf16 *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *norm_q, *norm_k;
    bf16 *norm3_w, *norm3_b;
    bf16 *cq_w, *cq_b, *ck_w, *ck_b, *cv_w, *cv_b, *co_w, *co_b, *cnorm_q, *cnorm_k;
    bf16 *ffn0_w, *ffn0_b, *ffn2_w, *ffn2_b;
    int has_action;
    dev_action act;
} dev_layer;

struct wmcuda_dit {
    eng_config cfg;
    int T, S, L, P, E, U, kpad, od, cap, pmax;
    int attn_variant; /* wmcuda_attention tile configuration (WMCUDA_ATTN_VARIANT to override) */
    /* weights: one bf16 arena; the two biases that feed fp32 GEMM outputs also as fp32 */
    bf16 *warena;
    size_t welems;
    float *f32;
    bf16 *patch_w, *te0_w, *te0_b, *te2_w, *te2_b, *tp_w, *tp_b;
    bf16 *img0_w, *img0_b, *img1_w, *img1_b, *img3_w, *img3_b, *img4_w, *img4_b;
    bf16 *head_mod, *head_w;
    float *patch_b, *head_b;
    bf16 *mod_all; /* [layers][6 D]: every block's modulation table, contiguous */
    dev_layer layers[ENG_MAX_LAYERS];
    wmcuda_rope3d rope;
    wmcuda_rope_action arope;
    wmcuda_gemm *gemm;
    cudaStream_t stream;
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS];
    cudaEvent_t fwd_ev[2 * (ENG_MAX_STEPS + 1)];
    cudaEvent_t blk_ev[2]; /* around a whole block, replayed or eager */
    int blocks_warm;       /* a block ran eagerly: the GEMM table holds every block shape */
    /* profiler */
    int prof_on, prof_n;
    cudaEvent_t prof_ev[PROF_EVENTS];
    int prof_cat[PROF_EVENTS];
    double prof_ms[WMCUDA_DIT_PROF_COUNT];
    size_t device_bytes;
    char err[512];
};

/* ---- errors -------------------------------------------------------------------------------------- */

/* The message of the failing call stays in m->err until a public function copies it out. */
static int fail(wmcuda_dit *m, int rc, int line, const char *call) {
    wmcuda_failure_text(m->err, sizeof m->err, "dit_cuda.c", line, call, rc,
                        wmcuda_gemm_last_error(m->gemm));
    return rc;
}

static int failf(wmcuda_dit *m, int rc, const char *msg) {
    snprintf(m->err, sizeof m->err, "%s", msg);
    return rc;
}

static int report(const wmcuda_dit *m, int rc, char *err, size_t errlen) {
    if (rc && err && errlen) snprintf(err, errlen, "%s", m->err);
    return rc;
}

/* A wmcuda_ call (returns 0 or a negative code) and a CUDA runtime call; both need `m` in scope. */
#define TRY(call) WMCUDA_TRY_WITH(fail, m, call)
#define CK(call)  WMCUDA_CK_WITH(fail, m, call)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- profiler ------------------------------------------------------------------------------------- */

/* Folds the closed brackets into the totals; the last mark stays open as the first. */
static int prof_flush(wmcuda_dit *m) {
    const int n = m->prof_n;
    if (n == 0) return 0;
    CK(cudaEventSynchronize(m->prof_ev[n - 1]));
    for (int i = 0; i + 1 < n; i++) {
        if (m->prof_cat[i] < 0) continue;
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, m->prof_ev[i], m->prof_ev[i + 1]));
        m->prof_ms[m->prof_cat[i]] += ms;
    }
    cudaEvent_t last = m->prof_ev[n - 1];
    m->prof_ev[n - 1] = m->prof_ev[0];
    m->prof_ev[0] = last;
    m->prof_cat[0] = m->prof_cat[n - 1];
    m->prof_n = 1;
    return 0;
}

/* Closes the open bracket and opens one of component `cat` (-1: not counted). */
static void prof_mark(wmcuda_dit *m, int cat) {
    if (!m->prof_on) return;
    if (m->prof_n == PROF_EVENTS && prof_flush(m) != 0) {
        fprintf(stderr, "wmcuda dit profiler: %s; profiling off\n", m->err);
        m->prof_on = 0;
        return;
    }
    const cudaError_t e = cudaEventRecord(m->prof_ev[m->prof_n], m->stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "wmcuda dit profiler: cudaEventRecord failed: %s; profiling off\n",
                cudaGetErrorName(e));
        m->prof_on = 0;
        return;
    }
    m->prof_cat[m->prof_n++] = cat;
}

int wmcuda_dit_profile(wmcuda_dit *m, int on) {
    if (on && !m->prof_ev[0])
        for (int i = 0; i < PROF_EVENTS; i++) CK(cudaEventCreate(&m->prof_ev[i]));
    m->prof_on = on;
    m->prof_n = 0;
    memset(m->prof_ms, 0, sizeof m->prof_ms);
    return 0;
}

int wmcuda_dit_profile_read(wmcuda_dit *m, double ms[WMCUDA_DIT_PROF_COUNT]) {
    const int rc = prof_flush(m);
    memcpy(ms, m->prof_ms, sizeof m->prof_ms);
    memset(m->prof_ms, 0, sizeof m->prof_ms);
    m->prof_n = 0;
    return rc;
}

const char *wmcuda_dit_profile_name(int component) {
    static const char *const names[WMCUDA_DIT_PROF_COUNT] = {
        "embed, time path, head", "q/k/v/o projections", "self-attention core",
        "cross-attention core",   "FFN GEMMs",           "mouse branch",
        "keyboard branch",        "norms, RoPE, residual", "action attention cores"};
    return component >= 0 && component < WMCUDA_DIT_PROF_COUNT ? names[component] : "?";
}

/* ---- weight upload --------------------------------------------------------------------------------- */

/* Two passes over the parameters: the first measures the arena and the largest tensor, the
 * second places each tensor (16-byte aligned) and uploads it through a device fp32 staging
 * buffer, rounding to bf16 on the device (wmcuda_convert_f32_to_bf16: round to nearest even). */
typedef struct placer {
    wmcuda_dit *m;
    int pass;
    size_t used;      /* bf16 elements */
    size_t max_numel; /* staging size */
    float *staging;
    int rc;
} placer;

static bf16 *reserve(placer *p, size_t n) {
    const size_t at = p->used;
    p->used += (n + 7) / 8 * 8;
    return p->pass ? p->m->warena + at : NULL;
}

static void upload(placer *p, bf16 *dst, const float *src, size_t n) {
    if (n > p->max_numel) p->max_numel = n;
    if (!p->pass || p->rc) return;
    wmcuda_dit *m = p->m;
    /* pageable source: cudaMemcpy returns once src is consumed and orders after the previous
     * conversion on the legacy stream, so the staging buffer can be reused right away */
    const cudaError_t e = cudaMemcpy(p->staging, src, n * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        p->rc = fail(m, -(int)e, __LINE__, "cudaMemcpy(staging <- weight)");
        return;
    }
    const int rc = wmcuda_convert_f32_to_bf16(p->staging, dst, n, NULL);
    if (rc) p->rc = fail(m, rc, __LINE__, "wmcuda_convert_f32_to_bf16(weight)");
}

static bf16 *put(placer *p, const float *src, size_t n) {
    bf16 *d = reserve(p, n);
    upload(p, d, src, n);
    return d;
}

static void place_weights(placer *p, const eng_weights *w, float *kb0_pad) {
    wmcuda_dit *m = p->m;
    const eng_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, FF = (size_t)c->ffn_dim, C = (size_t)c->clip_dim;
    const size_t Hm = (size_t)c->mouse_hidden, Hk = (size_t)c->keyboard_hidden;
    const size_t E = (size_t)m->E, P = (size_t)m->P, kd = (size_t)c->keyboard_dim_in;
    m->patch_w = put(p, w->patch_w, D * (size_t)c->in_dim * 4);
    m->te0_w = put(p, w->te0_w, D * (size_t)c->freq_dim);
    m->te0_b = put(p, w->te0_b, D);
    m->te2_w = put(p, w->te2_w, D * D);
    m->te2_b = put(p, w->te2_b, D);
    m->tp_w = put(p, w->tp_w, 6 * D * D);
    m->tp_b = put(p, w->tp_b, 6 * D);
    m->img0_w = put(p, w->img0_w, C);
    m->img0_b = put(p, w->img0_b, C);
    m->img1_w = put(p, w->img1_w, C * C);
    m->img1_b = put(p, w->img1_b, C);
    m->img3_w = put(p, w->img3_w, D * C);
    m->img3_b = put(p, w->img3_b, D);
    m->img4_w = put(p, w->img4_w, D);
    m->img4_b = put(p, w->img4_b, D);
    m->head_mod = put(p, w->head_mod, 2 * D);
    m->head_w = put(p, w->head_w, (size_t)m->od * D);
    m->mod_all = reserve(p, (size_t)c->num_layers * 6 * D);
    for (int i = 0; i < c->num_layers; i++)
        upload(p, p->pass ? m->mod_all + (size_t)i * 6 * D : NULL, w->layers[i].modulation, 6 * D);
    for (int i = 0; i < c->num_layers; i++) {
        const eng_layer_weights *hl = &w->layers[i];
        dev_layer *l = &m->layers[i];
        l->q_w = put(p, hl->q_w, D * D), l->q_b = put(p, hl->q_b, D);
        l->k_w = put(p, hl->k_w, D * D), l->k_b = put(p, hl->k_b, D);
        l->v_w = put(p, hl->v_w, D * D), l->v_b = put(p, hl->v_b, D);
        l->o_w = put(p, hl->o_w, D * D), l->o_b = put(p, hl->o_b, D);
        l->norm_q = put(p, hl->norm_q, D), l->norm_k = put(p, hl->norm_k, D);
        l->norm3_w = put(p, hl->norm3_w, D), l->norm3_b = put(p, hl->norm3_b, D);
        l->cq_w = put(p, hl->cq_w, D * D), l->cq_b = put(p, hl->cq_b, D);
        l->ck_w = put(p, hl->ck_w, D * D), l->ck_b = put(p, hl->ck_b, D);
        l->cv_w = put(p, hl->cv_w, D * D), l->cv_b = put(p, hl->cv_b, D);
        l->co_w = put(p, hl->co_w, D * D), l->co_b = put(p, hl->co_b, D);
        l->cnorm_q = put(p, hl->cnorm_q, D), l->cnorm_k = put(p, hl->cnorm_k, D);
        l->ffn0_w = put(p, hl->ffn0_w, FF * D), l->ffn0_b = put(p, hl->ffn0_b, FF);
        l->ffn2_w = put(p, hl->ffn2_w, D * FF), l->ffn2_b = put(p, hl->ffn2_b, D);
        l->has_action = hl->has_action;
        if (!hl->has_action) continue;
        /* the four action-norm gains are never read (model-dit.md 6.3): not uploaded */
        const eng_action_weights *ha = &hl->act;
        dev_action *a = &l->act;
        if (p->pass) /* keyboard_embed.0 [E][kdim] -> [E][kpad], zero columns past kdim */
            for (size_t r = 0; r < E; r++)
                for (size_t k = 0; k < (size_t)m->kpad; k++)
                    kb0_pad[r * (size_t)m->kpad + k] = k < kd ? ha->kb0_w[r * kd + k] : 0.0f;
        a->kb0_w = put(p, kb0_pad, E * (size_t)m->kpad), a->kb0_b = put(p, ha->kb0_b, E);
        a->kb2_w = put(p, ha->kb2_w, E * E), a->kb2_b = put(p, ha->kb2_b, E);
        if (c->enable_mouse) {
            a->mm0_w = put(p, ha->mm0_w, Hm * (size_t)m->U), a->mm0_b = put(p, ha->mm0_b, Hm);
            a->mm2_w = put(p, ha->mm2_w, Hm * Hm), a->mm2_b = put(p, ha->mm2_b, Hm);
            a->mm3_w = put(p, ha->mm3_w, Hm), a->mm3_b = put(p, ha->mm3_b, Hm);
            a->t_qkv = put(p, ha->t_qkv, 3 * Hm * Hm);
            a->proj_mouse = put(p, ha->proj_mouse, D * Hm);
        }
        a->mouse_attn_q = put(p, ha->mouse_attn_q, Hk * D);
        a->kb_attn_kv = put(p, ha->kb_attn_kv, 2 * Hk * P * E);
        a->proj_keyboard = put(p, ha->proj_keyboard, D * Hk);
    }
}

/* fp32 copies of the bf16-rounded patch and head biases (their GEMMs write fp32). */
static int upload_f32_biases(wmcuda_dit *m, const eng_weights *w) {
    const size_t D = (size_t)m->cfg.dim, od = (size_t)m->od;
    float *tmp = malloc((D + od) * sizeof *tmp);
    if (!tmp) return failf(m, -(int)cudaErrorMemoryAllocation, "out of host memory");
    for (size_t i = 0; i < D; i++) tmp[i] = wm_bf16_round(w->patch_b[i]);
    for (size_t i = 0; i < od; i++) tmp[D + i] = wm_bf16_round(w->head_b[i]);
    const cudaError_t e = cudaMemcpy(m->f32, tmp, (D + od) * sizeof *tmp, cudaMemcpyHostToDevice);
    free(tmp);
    CK(e);
    m->patch_b = m->f32;
    m->head_b = m->f32 + D; /* D is a multiple of 8: 16-byte aligned */
    return 0;
}

static int check_config(wmcuda_dit *m) {
    const eng_config *c = &m->cfg;
    const char *why = NULL;
    const int ahd = c->action_heads > 0 ? c->mouse_hidden / c->action_heads : 0;
    const int khd = c->action_heads > 0 ? c->keyboard_hidden / c->action_heads : 0;
    if (c->patch[0] != 1 || c->patch[1] != 2 || c->patch[2] != 2 || c->lat_h % 2 || c->lat_w % 2)
        why = "patch (1, 2, 2) and even latent sizes";
    else if (c->frames_per_block < 1 || c->frames_per_block > WMCUDA_TEMB_MAX_FRAMES)
        why = "1 <= frames_per_block <= 16";
    else if (c->local_attn_size < c->frames_per_block || c->local_attn_size > WMCUDA_DIT_MAX_SLOTS ||
             c->frames_per_block * c->local_attn_size > WMCUDA_PARAM_BYTES)
        why = "frames_per_block <= local_attn_size <= 16";
    else if (c->dim % 8 || c->num_heads * c->head_dim != c->dim || c->head_dim % 8 ||
             c->ffn_dim % 8 || c->clip_dim % 8 || c->freq_dim % 8)
        why = "widths multiples of 8 and heads * head_dim == dim";
    else if (c->head_dim != 32 && c->head_dim != 64 && c->head_dim != 128)
        why = "head_dim 32, 64 or 128 (the fused attention's tiles)";
    else if (c->keyboard_dim_in < 1 || c->keyboard_dim_in > ENG_MAX_KDIM)
        why = "1 <= keyboard_dim_in <= 16";
    else if (c->action_heads < 1 || ahd * c->action_heads != c->mouse_hidden ||
             khd * c->action_heads != c->keyboard_hidden || (ahd != 32 && ahd != 64 && ahd != 128) ||
             (khd != 32 && khd != 64 && khd != 128))
        why = "action head widths of 32, 64 or 128";
    else if (c->action_rope_dims[0] < 2 || c->action_rope_dims[0] > ahd ||
             c->action_rope_dims[0] > khd)
        why = "action RoPE dims within a head";
    else if (c->enable_mouse && c->mouse_dim_in != 2)
        why = "mouse_dim_in 2";
    else if ((c->dim + c->mouse_dim_in * eng_action_window(c)) % 8 || c->kb_embed_dim % 8)
        why = "mouse-MLP input and keyboard embedding widths multiples of 8";
    if (!why) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "config not supported by the CUDA DiT: needs %s", why);
    return failf(m, WMCUDA_EINVAL, msg);
}

static int model_init(wmcuda_dit *m, const eng_weights *w) {
    const eng_config *c = &m->cfg;
    int rc = check_config(m);
    if (rc) return rc;
    m->T = c->frames_per_block;
    m->S = eng_tokens_per_frame(c);
    m->L = m->T * m->S;
    m->P = eng_action_window(c);
    m->E = c->kb_embed_dim;
    m->U = c->dim + c->mouse_dim_in * m->P;
    m->kpad = (c->keyboard_dim_in + 7) / 8 * 8;
    m->od = c->out_dim * c->patch[0] * c->patch[1] * c->patch[2];
    m->cap = c->local_attn_size;
    m->pmax = c->rope_pos_limit + m->cap;
    m->attn_variant = WMCUDA_ATTN_DEFAULT;
    const char *av = getenv("WMCUDA_ATTN_VARIANT"); /* benchmarks: pick another tile shape */
    if (av && atoi(av) >= 0 && atoi(av) < WMCUDA_ATTN_VARIANTS) m->attn_variant = atoi(av);
    eng_sampler_schedule(c, m->tau, m->sigma);

    CK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
    TRY(wmcuda_gemm_create(&m->gemm, 0, m->err, sizeof m->err));
    TRY(wmcuda_rope3d_create(&m->rope, c->head_dim, m->pmax, eng_grid_h(c), eng_grid_w(c), m->err,
                             sizeof m->err));
    TRY(wmcuda_rope_action_create(&m->arope, c->action_rope_dims[0], c->action_rope_theta,
                                  m->pmax, m->err, sizeof m->err));
    for (int i = 0; i < 2 * (ENG_MAX_STEPS + 1); i++) CK(cudaEventCreate(&m->fwd_ev[i]));
    for (int i = 0; i < 2; i++) CK(cudaEventCreate(&m->blk_ev[i]));

    placer p = {.m = m};
    place_weights(&p, w, NULL);
    m->welems = p.used;
    CK(cudaMalloc((void **)&m->warena, m->welems * sizeof(bf16)));
    CK(cudaMalloc((void **)&p.staging, p.max_numel * sizeof(float)));
    float *kb0_pad = malloc((size_t)m->E * (size_t)m->kpad * sizeof *kb0_pad);
    if (!kb0_pad) rc = failf(m, -(int)cudaErrorMemoryAllocation, "out of host memory");
    if (!rc) {
        p.pass = 1, p.used = 0;
        place_weights(&p, w, kb0_pad);
        rc = p.rc;
    }
    free(kb0_pad);
    const cudaError_t e = cudaDeviceSynchronize();
    cudaFree(p.staging);
    if (rc) return rc;
    CK(e);
    CK(cudaMalloc((void **)&m->f32, ((size_t)c->dim + (size_t)m->od) * sizeof(float)));
    TRY(upload_f32_biases(m, w));

    m->device_bytes = m->welems * sizeof(bf16) + WMCUDA_GEMM_WORKSPACE;
    CK(cudaDeviceSynchronize());
    return 0;
}

int wmcuda_dit_create(const eng_weights *w, wmcuda_dit **out, char *err, size_t errlen) {
    if (!out || !w) {
        if (err && errlen) snprintf(err, errlen, "wmcuda_dit_create: NULL argument");
        return WMCUDA_EINVAL;
    }
    *out = NULL;
    wmcuda_dit *m = calloc(1, sizeof *m);
    if (!m) {
        if (err && errlen) snprintf(err, errlen, "wmcuda_dit_create: out of host memory");
        return -(int)cudaErrorMemoryAllocation;
    }
    m->cfg = w->cfg;
    const int rc = model_init(m, w);
    if (rc) {
        report(m, rc, err, errlen);
        wmcuda_dit_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

void wmcuda_dit_destroy(wmcuda_dit *m) {
    if (!m) return;
    if (m->stream) cudaStreamSynchronize(m->stream);
    for (int i = 0; i < PROF_EVENTS; i++)
        if (m->prof_ev[i]) cudaEventDestroy(m->prof_ev[i]);
    for (int i = 0; i < 2 * (ENG_MAX_STEPS + 1); i++)
        if (m->fwd_ev[i]) cudaEventDestroy(m->fwd_ev[i]);
    for (int i = 0; i < 2; i++)
        if (m->blk_ev[i]) cudaEventDestroy(m->blk_ev[i]);
    cudaFree(m->f32);
    cudaFree(m->warena);
    wmcuda_rope3d_destroy(&m->rope);
    wmcuda_rope_action_destroy(&m->arope);
    wmcuda_gemm_destroy(m->gemm);
    if (m->stream) cudaStreamDestroy(m->stream);
    free(m);
}

const eng_config *wmcuda_dit_config(const wmcuda_dit *m) { return &m->cfg; }
size_t wmcuda_dit_device_bytes(const wmcuda_dit *m) { return m->device_bytes; }
void *wmcuda_dit_stream(const wmcuda_dit *m) { return (void *)m->stream; }

/* ---- session --------------------------------------------------------------------------------------- */

/* Everything in a block that changes from block to block, in one small struct: the host fills a
 * pinned copy (stage_block), the block's first node copies it to the device, and every kernel
 * that needs a per-block value reads it there. The launches of every block are then the same, so
 * one captured graph serves them all (graphs/README.md). */
typedef struct block_params {
    int64_t pos0;                            /* RoPE position of the block's first frame */
    uint32_t block;                          /* the noise streams' block counter */
    uint32_t pad_;
    int slot[WMCUDA_DIT_MAX_SLOTS];          /* cache slot of each of the block's frames */
    unsigned char vis[WMCUDA_PARAM_BYTES];   /* [T][cap] slot visibility of each query frame */
} block_params;

typedef struct layer_cache {
    bf16 *k, *v;   /* [cap][S][D], keys after RMSNorm and RoPE */
    bf16 *mk, *mv; /* [cap][S][Hm] mouse keys/values (action layers with a mouse branch) */
    bf16 *kk, *kv; /* [cap][Hk] keyboard keys/values (action layers) */
    bf16 *ck, *cv; /* [clip_tokens][D] cross-attention keys/values */
} layer_cache;

struct wmcuda_dit_session {
    wmcuda_dit *m;
    uint64_t seed;
    uint32_t session_id;
    int64_t slot_frame[WMCUDA_DIT_MAX_SLOTS]; /* absolute frame held by each slot, -1 empty */
    int cross_ready;
    int pend;              /* a branch's residual update x += y (* pend_gate) not yet applied */
    const bf16 *pend_gate; /* [T][6][D] modulation gate rows, or NULL */
    int64_t next_block, rope_base;
    layer_cache layers[ENG_MAX_LAYERS];
    /* one forward's activations, L = T*S rows */
    float *xres;                 /* [L][D] fp32 residual stream */
    bf16 *h, *q, *k, *o, *y;     /* [L][D] */
    bf16 *ffh;                   /* [L][FF] */
    bf16 *patches;               /* [L][4 in_dim] */
    float *head_out;             /* [L][od] */
    bf16 *mu;                    /* [L][U] mouse-MLP input */
    bf16 *mg, *mg2;              /* [L][Hm] */
    bf16 *mqkv;                  /* [L][3 Hm] */
    bf16 *aq;                    /* [L][Hk] keyboard queries */
    bf16 *ao;                    /* [L][max(Hm, Hk)] action attention output */
    float *kbin;                 /* [T*P][kdim] keyboard window vectors */
    bf16 *kbw;                   /* [T*P][kpad] the same, bf16, padded */
    bf16 *kbh, *kbe;             /* [T*P][E] keyboard embedding hidden / output */
    bf16 *kbkv;                  /* [T][2 Hk] */
    bf16 *temb, *th, *et, *ets;  /* [T][freq_dim], [T][D] x 3: time path */
    bf16 *e6;                    /* [T][6 D] */
    bf16 *mod;                   /* [layers][T][6 D] per-layer modulation */
    bf16 *headm;                 /* [T][2 D] head shift, scale */
    float *clip;                 /* [clip_tokens][clip_dim] */
    bf16 *ctx_a, *ctx_b;         /* [clip_tokens][max(clip_dim, D)] */
    block_params *bp;            /* the current block's values, read by the kernels */
    /* the block's latents and inputs */
    float *x, *x0, *v, *eps;     /* [16][T][H][W] */
    float *cond;                 /* [20][T][H][W] */
    float *mwin;                 /* [T][2P] */
    void *arena;
    size_t arena_bytes;
    /* pinned staging: the host writes it before a block, the block's first nodes copy it in */
    void *pinned;
    block_params *hp;
    float *h_cond, *h_mwin, *h_kb, *h_lat;
    /* the block as a graph (graphs/block_graph.h); use_graphs -1: as WM_GRAPHS says */
    wmgraph_block *graph;
    int use_graphs;
    wmcuda_dit_block_stats last;
};

typedef struct carver {
    char *base;
    size_t used;
} carver;

static void *carve(carver *cv, size_t bytes) {
    const size_t at = (cv->used + 255) / 256 * 256;
    cv->used = at + bytes;
    return cv->base ? cv->base + at : NULL;
}
#define CARVE(cv, ptr, count) ((ptr) = carve((cv), (size_t)(count) * sizeof *(ptr)))

/* Lays the session's buffers out in one allocation (base NULL: measure only). */
static size_t session_layout(wmcuda_dit_session *s, char *base) {
    const wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const size_t S = (size_t)m->S, L = (size_t)m->L, T = (size_t)m->T, D = (size_t)c->dim;
    const size_t cap = (size_t)m->cap, Hm = (size_t)c->mouse_hidden;
    const size_t Hk = (size_t)c->keyboard_hidden, N = (size_t)c->clip_tokens;
    const size_t TP = T * (size_t)m->P, E = (size_t)m->E, HW = (size_t)c->lat_h * c->lat_w;
    const size_t cw = (size_t)c->clip_dim > D ? (size_t)c->clip_dim : D;
    carver cv = {base, 0};
    for (int i = 0; i < c->num_layers; i++) {
        layer_cache *l = &s->layers[i];
        memset(l, 0, sizeof *l);
        CARVE(&cv, l->k, cap * S * D);
        CARVE(&cv, l->v, cap * S * D);
        CARVE(&cv, l->ck, N * D);
        CARVE(&cv, l->cv, N * D);
        if (m->layers[i].has_action) {
            if (c->enable_mouse) {
                CARVE(&cv, l->mk, cap * S * Hm);
                CARVE(&cv, l->mv, cap * S * Hm);
            }
            CARVE(&cv, l->kk, cap * Hk);
            CARVE(&cv, l->kv, cap * Hk);
        }
    }
    CARVE(&cv, s->xres, L * D);
    CARVE(&cv, s->h, L * D);
    CARVE(&cv, s->q, L * D);
    CARVE(&cv, s->k, L * D);
    CARVE(&cv, s->o, L * D);
    CARVE(&cv, s->y, L * D);
    CARVE(&cv, s->ffh, L * (size_t)c->ffn_dim);
    CARVE(&cv, s->patches, L * 4 * (size_t)c->in_dim);
    CARVE(&cv, s->head_out, L * (size_t)m->od);
    CARVE(&cv, s->mu, L * (size_t)m->U);
    CARVE(&cv, s->mg, L * Hm);
    CARVE(&cv, s->mg2, L * Hm);
    CARVE(&cv, s->mqkv, L * 3 * Hm);
    CARVE(&cv, s->aq, L * Hk);
    CARVE(&cv, s->ao, L * (Hm > Hk ? Hm : Hk));
    CARVE(&cv, s->kbin, TP * (size_t)c->keyboard_dim_in);
    CARVE(&cv, s->kbw, TP * (size_t)m->kpad);
    CARVE(&cv, s->kbh, TP * E);
    CARVE(&cv, s->kbe, TP * E);
    CARVE(&cv, s->kbkv, T * 2 * Hk);
    CARVE(&cv, s->temb, T * (size_t)c->freq_dim);
    CARVE(&cv, s->th, T * D);
    CARVE(&cv, s->et, T * D);
    CARVE(&cv, s->ets, T * D);
    CARVE(&cv, s->e6, T * 6 * D);
    CARVE(&cv, s->mod, (size_t)c->num_layers * T * 6 * D);
    CARVE(&cv, s->headm, T * 2 * D);
    CARVE(&cv, s->clip, N * (size_t)c->clip_dim);
    CARVE(&cv, s->ctx_a, N * cw);
    CARVE(&cv, s->ctx_b, N * cw);
    CARVE(&cv, s->bp, 1);
    CARVE(&cv, s->x, (size_t)c->out_dim * T * HW);
    CARVE(&cv, s->x0, (size_t)c->out_dim * T * HW);
    CARVE(&cv, s->v, (size_t)c->out_dim * T * HW);
    CARVE(&cv, s->eps, (size_t)c->out_dim * T * HW);
    CARVE(&cv, s->cond, (size_t)(c->in_dim - c->out_dim) * T * HW);
    CARVE(&cv, s->mwin, T * 2 * (size_t)m->P);
    return cv.used;
}

static int session_clear(wmcuda_dit_session *s) {
    wmcuda_dit *m = s->m;
    /* zeros everywhere: the main attentions never read a slot they do not see, but the action
     * attention's reads and the caches' first contents stay deterministic */
    CK(cudaMemsetAsync(s->arena, 0, s->arena_bytes, m->stream));
    CK(cudaStreamSynchronize(m->stream));
    for (int j = 0; j < WMCUDA_DIT_MAX_SLOTS; j++) s->slot_frame[j] = -1;
    s->cross_ready = 0;
    s->pend = 0;
    s->next_block = 0;
    s->rope_base = 0;
    return 0;
}

/* Pinned host staging for one block's inputs, per-block values and latents (one allocation). */
static int session_staging(wmcuda_dit_session *s) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const size_t T = (size_t)m->T, HW = (size_t)c->lat_h * c->lat_w;
    const size_t ncond = (size_t)(c->in_dim - c->out_dim) * T * HW, nlat = (size_t)c->out_dim * T * HW;
    const size_t nm = T * 2 * (size_t)m->P, nk = T * (size_t)m->P * (size_t)c->keyboard_dim_in;
    carver cv = {NULL, 0};
    for (int pass = 0; pass < 2; pass++) {
        cv.used = 0;
        CARVE(&cv, s->hp, 1);
        CARVE(&cv, s->h_cond, ncond);
        CARVE(&cv, s->h_mwin, nm);
        CARVE(&cv, s->h_kb, nk);
        CARVE(&cv, s->h_lat, nlat);
        if (pass == 0) {
            CK(cudaHostAlloc(&s->pinned, cv.used, cudaHostAllocDefault));
            cv.base = s->pinned;
        }
    }
    memset(s->pinned, 0, cv.used);
    return 0;
}

int wmcuda_dit_session_create(wmcuda_dit *m, uint64_t seed, uint32_t session_id,
                              wmcuda_dit_session **out, char *err, size_t errlen) {
    *out = NULL;
    wmcuda_dit_session *s = calloc(1, sizeof *s);
    if (!s) return report(m, failf(m, -(int)cudaErrorMemoryAllocation, "out of host memory"), err, errlen);
    s->m = m, s->seed = seed, s->session_id = session_id;
    s->arena_bytes = session_layout(s, NULL);
    cudaError_t e = cudaMalloc(&s->arena, s->arena_bytes);
    if (e != cudaSuccess) {
        char msg[160];
        snprintf(msg, sizeof msg, "cudaMalloc of %.1f MB of session state failed: %s",
                 (double)s->arena_bytes * 1e-6, cudaGetErrorName(e));
        free(s);
        return report(m, failf(m, -(int)e, msg), err, errlen);
    }
    session_layout(s, s->arena);
    s->use_graphs = -1;
    int rc = session_staging(s);
    if (!rc) rc = wmgraph_block_create(m->stream, &s->graph, m->err, sizeof m->err);
    if (!rc) rc = session_clear(s);
    if (rc) {
        wmcuda_dit_session_destroy(s);
        return report(m, rc, err, errlen);
    }
    *out = s;
    return 0;
}

void wmcuda_dit_session_destroy(wmcuda_dit_session *s) {
    if (!s) return;
    cudaStreamSynchronize(s->m->stream);
    wmgraph_block_destroy(s->graph);
    cudaFreeHost(s->pinned);
    cudaFree(s->arena);
    free(s);
}

size_t wmcuda_dit_session_device_bytes(const wmcuda_dit_session *s) { return s->arena_bytes; }

int wmcuda_dit_session_reset(wmcuda_dit_session *s, char *err, size_t errlen) {
    return report(s->m, session_clear(s), err, errlen);
}

int64_t wmcuda_dit_next_block(const wmcuda_dit_session *s) { return s->next_block; }

/* ---- helpers ------------------------------------------------------------------------------------------ */

/* y[M][N] = epi(x[M][K] W^T + b), contiguous rows, on the model's stream. */
static int linear(wmcuda_dit *m, const bf16 *x, int M, int K, const bf16 *W, const bf16 *b, int N,
                  bf16 *y, wmcuda_epilogue epi) {
    return wmcuda_linear(m->gemm, x, K, M, K, W, b, N, y, N, epi, m->stream);
}

/* Fused softmax attention of the forward's L queries (rows of q, all heads) over nslots slots of
 * keys_per_slot rows of k, v (slot_stride elements apart); vis: the slot visibility [T][nslots]
 * in device memory (invisible slots are never read), or NULL for all. The launch's arguments
 * depend on the block shape only, not on which slots the ring holds. */
static int attention(wmcuda_dit_session *s, const bf16 *q, const bf16 *k, const bf16 *v,
                     int nslots, int keys_per_slot, size_t slot_stride, const unsigned char *vis,
                     bf16 *o) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int D = c->dim;
    const wmcuda_attn_args a = {.q = q, .ldq = D, .lq = m->L, .k = k, .v = v, .ldkv = D,
                                .slot_stride = slot_stride, .keys_per_slot = keys_per_slot,
                                .nslots = nslots, .vis = vis, .rows_per_frame_q = m->S,
                                .heads = c->num_heads, .dh = c->head_dim,
                                .scale = (float)(1.0 / sqrt((double)c->head_dim)),
                                .o = o,
                                .ldo = D};
    TRY(wmcuda_attention_variant(&a, m->attn_variant, m->stream));
    return 0;
}

/* ---- the residual stream --------------------------------------------------------------------- */

/* A branch ends with its output in s->y; the update x += y (* gate) waits (s->pend) for the next
 * reader of the residual stream, so that a LayerNorm reading it next does both in one pass over
 * the fp32 rows (wmcuda_residual_ln_modulate / _layernorm). gate: the frame rows of a block
 * modulation [T][6][D], or NULL (cross-attention and the action branches add ungated). */
static void leave_residual(wmcuda_dit_session *s, const bf16 *gate) {
    s->pend = 1;
    s->pend_gate = gate;
}

/* For a reader that is not a LayerNorm. */
static int flush_residual(wmcuda_dit_session *s) {
    wmcuda_dit *m = s->m;
    const int D = m->cfg.dim, L = m->L;
    if (!s->pend) return 0;
    s->pend = 0;
    if (s->pend_gate)
        TRY(wmcuda_residual_gate(s->xres, s->y, L, D, m->S, s->pend_gate, (size_t)6 * D,
                                 m->stream));
    else
        TRY(wmcuda_residual_add(s->xres, s->y, (size_t)L * D, m->stream));
    return 0;
}

/* s->h = LN(x) * (1 + scale[f]) + shift[f] (rows of frame f at frame_stride), after the pending
 * update. */
static int norm_modulate(wmcuda_dit_session *s, const bf16 *shift, const bf16 *scale,
                         size_t frame_stride) {
    wmcuda_dit *m = s->m;
    const int D = m->cfg.dim, L = m->L, S = m->S;
    const float eps = m->cfg.eps;
    if (s->pend) {
        s->pend = 0;
        TRY(wmcuda_residual_ln_modulate(s->xres, s->y, s->pend_gate, (size_t)6 * D, s->h, L, D, S,
                                        eps, shift, scale, frame_stride, m->stream));
    } else {
        TRY(wmcuda_ln_modulate(s->xres, s->h, L, D, S, eps, shift, scale, frame_stride, m->stream));
    }
    return 0;
}

/* s->h = LN(x) * gamma + beta, after the pending update. */
static int norm_affine(wmcuda_dit_session *s, const bf16 *gamma, const bf16 *beta) {
    wmcuda_dit *m = s->m;
    const int D = m->cfg.dim, L = m->L;
    const float eps = m->cfg.eps;
    if (s->pend) {
        s->pend = 0;
        TRY(wmcuda_residual_layernorm(s->xres, s->y, s->pend_gate, (size_t)6 * D, m->S, s->h, L, D,
                                      eps, gamma, beta, m->stream));
    } else {
        TRY(wmcuda_layernorm_f32in(s->xres, s->h, L, D, eps, gamma, beta, m->stream));
    }
    return 0;
}

static int64_t slot_of(const wmcuda_dit *m, int64_t frame) { return frame % m->cap; }

/* The forward's frames take their slots before attention reads the store; then vis[f][j] = slot
 * j holds a frame inside the window of query frame f, [max(0, b + T - W), b + T - 1] with b the
 * block's first frame (dit_cpu.c build_visibility). Attention walks all W slots and skips the
 * invisible ones (empty in block 0, or holding a frame outside the window). */
static void take_slots(wmcuda_dit_session *s, int64_t frame0, unsigned char *vis) {
    const wmcuda_dit *m = s->m;
    const int T = m->T, W = m->cap;
    for (int f = 0; f < T; f++) s->slot_frame[slot_of(m, frame0 + f)] = frame0 + f;
    for (int f = 0; f < T; f++) {
        const int64_t b = (frame0 + f) - (frame0 + f) % T;
        const int64_t hi = b + T - 1, lo = b + T - W > 0 ? b + T - W : 0;
        for (int j = 0; j < W; j++) {
            const int64_t g = s->slot_frame[j];
            vis[f * W + j] = g >= lo && g <= hi;
        }
    }
}

/* ---- time path (4.3) and image context (4.4) --------------------------------------------------------- */

static int time_path(wmcuda_dit_session *s, const float *t) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int T = m->T, D = c->dim, fd = c->freq_dim;
    TRY(wmcuda_timestep_sinusoid(t, T, fd, s->temb, m->stream));
    TRY(linear(m, s->temb, T, fd, m->te0_w, m->te0_b, D, s->th, WMCUDA_EPI_NONE));
    TRY(wmcuda_silu_bf16(s->th, s->th, (size_t)T * D, m->stream));
    TRY(linear(m, s->th, T, D, m->te2_w, m->te2_b, D, s->et, WMCUDA_EPI_NONE));
    TRY(wmcuda_silu_bf16(s->et, s->ets, (size_t)T * D, m->stream));
    TRY(linear(m, s->ets, T, D, m->tp_w, m->tp_b, 6 * D, s->e6, WMCUDA_EPI_NONE));
    /* M_i[f] = modulation_i + e6[f] for every layer; the head uses e_t itself (pitfall 10.7) */
    TRY(wmcuda_add_table_rows(m->mod_all, c->num_layers, 6 * D, s->e6, 6 * D, 6 * D, T, s->mod,
                              m->stream));
    TRY(wmcuda_add_table_rows(m->head_mod, 1, 2 * D, s->et, D, D, T, s->headm, m->stream));
    return 0;
}

static int prepare_cross(wmcuda_dit_session *s, const float *clip) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int N = c->clip_tokens, C = c->clip_dim, D = c->dim;
    CK(cudaMemcpyAsync(s->clip, clip, (size_t)N * C * sizeof(float), cudaMemcpyHostToDevice,
                       m->stream));
    TRY(wmcuda_layernorm_f32in(s->clip, s->ctx_a, N, C, 1e-5f, m->img0_w, m->img0_b, m->stream));
    TRY(linear(m, s->ctx_a, N, C, m->img1_w, m->img1_b, C, s->ctx_b, WMCUDA_EPI_NONE));
    TRY(wmcuda_gelu_erf_bf16(s->ctx_b, s->ctx_b, (size_t)N * C, m->stream));
    TRY(linear(m, s->ctx_b, N, C, m->img3_w, m->img3_b, D, s->ctx_a, WMCUDA_EPI_NONE));
    TRY(wmcuda_layernorm_bf16in(s->ctx_a, s->ctx_a, N, D, 1e-5f, m->img4_w, m->img4_b, m->stream));
    for (int i = 0; i < c->num_layers; i++) {
        const dev_layer *l = &m->layers[i];
        layer_cache *lc = &s->layers[i];
        TRY(linear(m, s->ctx_a, N, D, l->ck_w, l->ck_b, D, lc->ck, WMCUDA_EPI_NONE));
        TRY(wmcuda_rmsnorm_rope3d(lc->ck, lc->ck, N, D, c->eps, l->cnorm_k, NULL, 0, m->stream));
        TRY(linear(m, s->ctx_a, N, D, l->cv_w, l->cv_b, D, lc->cv, WMCUDA_EPI_NONE));
    }
    CK(cudaStreamSynchronize(m->stream));
    s->cross_ready = 1;
    return 0;
}

int wmcuda_dit_prepare_cross(wmcuda_dit_session *s, const float *clip, char *err, size_t errlen) {
    if (!clip) return report(s->m, failf(s->m, WMCUDA_EINVAL, "prepare_cross: NULL clip"), err, errlen);
    return report(s->m, prepare_cross(s, clip), err, errlen);
}

/* ---- self-attention (4.5 a-f) --------------------------------------------------------------------- */

static int self_attention(wmcuda_dit_session *s, int i, const bf16 *mod) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const dev_layer *l = &m->layers[i];
    layer_cache *lc = &s->layers[i];
    const int S = m->S, D = c->dim, L = m->L;
    const size_t fsz = (size_t)S * D; /* one frame's rows */
    prof_mark(m, WMCUDA_DIT_PROF_NORM);
    TRY(norm_modulate(s, mod, mod + D, (size_t)6 * D));
    prof_mark(m, WMCUDA_DIT_PROF_PROJ);
    TRY(linear(m, s->h, L, D, l->q_w, l->q_b, D, s->q, WMCUDA_EPI_NONE));
    TRY(linear(m, s->h, L, D, l->k_w, l->k_b, D, s->k, WMCUDA_EPI_NONE));
    /* v through s->o (free until the attention writes it) into the frames' slots */
    TRY(linear(m, s->h, L, D, l->v_w, l->v_b, D, s->o, WMCUDA_EPI_NONE));
    TRY(wmcuda_scatter_slots_bf16(s->o, (size_t)D, lc->v, (size_t)D, D, S, m->T, s->bp->slot, fsz,
                                  m->stream));
    prof_mark(m, WMCUDA_DIT_PROF_NORM);
    TRY(wmcuda_rmsnorm_rope3d_at(s->q, s->q, L, D, c->eps, l->norm_q, &m->rope, &s->bp->pos0, 0,
                                 m->stream));
    /* normalised, rotated k in place, then into the slots */
    TRY(wmcuda_rmsnorm_rope3d_at(s->k, s->k, L, D, c->eps, l->norm_k, &m->rope, &s->bp->pos0, 0,
                                 m->stream));
    TRY(wmcuda_scatter_slots_bf16(s->k, (size_t)D, lc->k, (size_t)D, D, S, m->T, s->bp->slot, fsz,
                                  m->stream));
    prof_mark(m, WMCUDA_DIT_PROF_SELF_ATTN);
    TRY(attention(s, s->q, lc->k, lc->v, m->cap, S, fsz, s->bp->vis, s->o));
    prof_mark(m, WMCUDA_DIT_PROF_PROJ);
    TRY(linear(m, s->o, L, D, l->o_w, l->o_b, D, s->y, WMCUDA_EPI_NONE));
    leave_residual(s, mod + 2 * D);
    return 0;
}

/* ---- cross-attention (4.5 g) ------------------------------------------------------------------------ */

static int cross_attention(wmcuda_dit_session *s, int i) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const dev_layer *l = &m->layers[i];
    const layer_cache *lc = &s->layers[i];
    const int D = c->dim, L = m->L;
    prof_mark(m, WMCUDA_DIT_PROF_NORM);
    TRY(norm_affine(s, l->norm3_w, l->norm3_b));
    prof_mark(m, WMCUDA_DIT_PROF_PROJ);
    TRY(linear(m, s->h, L, D, l->cq_w, l->cq_b, D, s->q, WMCUDA_EPI_NONE));
    prof_mark(m, WMCUDA_DIT_PROF_NORM);
    TRY(wmcuda_rmsnorm_rope3d(s->q, s->q, L, D, c->eps, l->cnorm_q, NULL, 0, m->stream));
    prof_mark(m, WMCUDA_DIT_PROF_CROSS_ATTN);
    TRY(attention(s, s->q, lc->ck, lc->cv, 1, c->clip_tokens, (size_t)c->clip_tokens * D, NULL,
                  s->o));
    prof_mark(m, WMCUDA_DIT_PROF_PROJ);
    TRY(linear(m, s->o, L, D, l->co_w, l->co_b, D, s->y, WMCUDA_EPI_NONE));
    leave_residual(s, NULL); /* no gate, no modulation */
    return 0;
}

/* ---- action module (section 6) ---------------------------------------------------------------------- */

static int mouse_branch(wmcuda_dit_session *s, int i) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const dev_action *a = &m->layers[i].act;
    layer_cache *lc = &s->layers[i];
    const int S = m->S, D = c->dim, L = m->L, Hm = c->mouse_hidden;
    const int heads = c->action_heads, hd = Hm / heads, ld = 3 * Hm;
    const size_t fsz = (size_t)S * Hm;
    prof_mark(m, WMCUDA_DIT_PROF_MOUSE);
    /* u = concat(token features, the frame's mouse window) -> MLP -> LayerNorm -> q, k, v */
    if (s->pend && !s->pend_gate) { /* the cross-attention's update, in the same pass */
        s->pend = 0;
        TRY(wmcuda_residual_mouse_input(s->xres, s->y, D, s->mwin, m->U - D, L, S, s->mu,
                                        m->stream));
    } else {
        TRY(flush_residual(s));
        TRY(wmcuda_mouse_input(s->xres, D, s->mwin, m->U - D, L, S, s->mu, m->stream));
    }
    TRY(linear(m, s->mu, L, m->U, a->mm0_w, a->mm0_b, Hm, s->mg, WMCUDA_EPI_GELU_TANH));
    TRY(linear(m, s->mg, L, Hm, a->mm2_w, a->mm2_b, Hm, s->mg2, WMCUDA_EPI_NONE));
    TRY(wmcuda_layernorm_bf16in(s->mg2, s->mg2, L, Hm, 1e-5f, a->mm3_w, a->mm3_b, m->stream));
    TRY(linear(m, s->mg2, L, Hm, a->t_qkv, NULL, 3 * Hm, s->mqkv, WMCUDA_EPI_NONE));
    /* per-head RMS without gain (10.3) and the action RoPE; k and v of each frame to its slot */
    TRY(wmcuda_rms_heads_rope_action_at(s->mqkv, ld, s->mqkv, ld, L, heads, hd, 1e-6f, &m->arope,
                                        S, &s->bp->pos0, 0, m->stream));
    /* k (through s->mg, free by now) and v of each frame into its slot */
    TRY(wmcuda_rms_heads_rope_action_at(s->mqkv + Hm, ld, s->mg, Hm, L, heads, hd, 1e-6f,
                                        &m->arope, S, &s->bp->pos0, 0, m->stream));
    TRY(wmcuda_scatter_slots_bf16(s->mg, (size_t)Hm, lc->mk, (size_t)Hm, Hm, S, m->T, s->bp->slot,
                                  fsz, m->stream));
    TRY(wmcuda_scatter_slots_bf16(s->mqkv + 2 * Hm, (size_t)ld, lc->mv, (size_t)Hm, Hm, S, m->T,
                                  s->bp->slot, fsz, m->stream));
    /* per spatial position: the frame's query over that position's visible frames */
    prof_mark(m, WMCUDA_DIT_PROF_ACTION_ATTN);
    TRY(wmcuda_action_attention(s->mqkv, ld, lc->mk, lc->mv, fsz, (size_t)Hm, m->cap, s->bp->vis, L,
                                S, heads, hd, (float)(1.0 / sqrt((double)hd)), s->ao, Hm,
                                m->stream));
    prof_mark(m, WMCUDA_DIT_PROF_MOUSE);
    TRY(linear(m, s->ao, L, Hm, a->proj_mouse, NULL, D, s->y, WMCUDA_EPI_NONE));
    leave_residual(s, NULL);
    return 0;
}

static int keyboard_branch(wmcuda_dit_session *s, int i) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const dev_action *a = &m->layers[i].act;
    layer_cache *lc = &s->layers[i];
    const int T = m->T, S = m->S, D = c->dim, L = m->L, Hk = c->keyboard_hidden;
    const int heads = c->action_heads, hd = Hk / heads, P = m->P, E = m->E;
    prof_mark(m, WMCUDA_DIT_PROF_KEYBOARD);
    /* keyboard tokens: each window frame embedded on its own, concatenated m-major */
    TRY(linear(m, s->kbw, T * P, m->kpad, a->kb0_w, a->kb0_b, E, s->kbh, WMCUDA_EPI_NONE));
    TRY(wmcuda_silu_bf16(s->kbh, s->kbh, (size_t)T * P * E, m->stream));
    TRY(linear(m, s->kbh, T * P, E, a->kb2_w, a->kb2_b, E, s->kbe, WMCUDA_EPI_NONE));
    TRY(linear(m, s->kbe, T, P * E, a->kb_attn_kv, NULL, 2 * Hk, s->kbkv, WMCUDA_EPI_NONE));
    /* each frame's key (through s->aq, free until the queries) and value into its slot */
    TRY(wmcuda_rms_heads_rope_action_at(s->kbkv, 2 * Hk, s->aq, Hk, T, heads, hd, 1e-6f, &m->arope,
                                        1, &s->bp->pos0, 0, m->stream));
    TRY(wmcuda_scatter_slots_bf16(s->aq, (size_t)Hk, lc->kk, (size_t)Hk, Hk, 1, T, s->bp->slot,
                                  (size_t)Hk, m->stream));
    TRY(wmcuda_scatter_slots_bf16(s->kbkv + Hk, (size_t)2 * Hk, lc->kv, (size_t)Hk, Hk, 1, T,
                                  s->bp->slot, (size_t)Hk, m->stream));
    /* queries from the mouse-updated activations (10.9) */
    if (s->pend && !s->pend_gate) { /* the mouse branch's update, in the same pass */
        s->pend = 0;
        TRY(wmcuda_residual_add_to_bf16(s->xres, s->y, s->h, (size_t)L * D, m->stream));
    } else {
        TRY(flush_residual(s));
        TRY(wmcuda_convert_f32_to_bf16(s->xres, s->h, (size_t)L * D, m->stream));
    }
    TRY(linear(m, s->h, L, D, a->mouse_attn_q, NULL, Hk, s->aq, WMCUDA_EPI_NONE));
    TRY(wmcuda_rms_heads_rope_action_at(s->aq, Hk, s->aq, Hk, L, heads, hd, 1e-6f, &m->arope, S,
                                        &s->bp->pos0, 0, m->stream));
    /* every token over the visible keyboard tokens (one key set per frame) */
    prof_mark(m, WMCUDA_DIT_PROF_ACTION_ATTN);
    TRY(wmcuda_action_attention(s->aq, Hk, lc->kk, lc->kv, (size_t)Hk, 0, m->cap, s->bp->vis, L, S,
                                heads, hd, (float)(1.0 / sqrt((double)hd)), s->ao, Hk, m->stream));
    prof_mark(m, WMCUDA_DIT_PROF_KEYBOARD);
    TRY(linear(m, s->ao, L, Hk, a->proj_keyboard, NULL, D, s->y, WMCUDA_EPI_NONE));
    leave_residual(s, NULL);
    return 0;
}

/* ---- FFN (4.5 i) ------------------------------------------------------------------------------------- */

static int ffn(wmcuda_dit_session *s, int i, const bf16 *mod) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const dev_layer *l = &m->layers[i];
    const int D = c->dim, L = m->L, FF = c->ffn_dim;
    prof_mark(m, WMCUDA_DIT_PROF_NORM);
    TRY(norm_modulate(s, mod + 3 * D, mod + 4 * D, (size_t)6 * D));
    prof_mark(m, WMCUDA_DIT_PROF_FFN);
    TRY(linear(m, s->h, L, D, l->ffn0_w, l->ffn0_b, FF, s->ffh, WMCUDA_EPI_GELU_TANH));
    TRY(linear(m, s->ffh, L, FF, l->ffn2_w, l->ffn2_b, D, s->y, WMCUDA_EPI_NONE));
    leave_residual(s, mod + 5 * D);
    return 0;
}

/* ---- the forward --------------------------------------------------------------------------------------- */

/* x: device latents [16][T][H][W]; the block's cond and windows are on the device already
 * (upload_block_inputs). Writes the frames' K/V into their slots and v into s->v. */
static int forward_dev(wmcuda_dit_session *s, const float *t, const float *x) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int T = m->T, D = c->dim, L = m->L, pd = 4 * c->in_dim;
    s->pend = 0; /* nothing carried over from a forward that failed half-way */

    prof_mark(m, WMCUDA_DIT_PROF_EMBED);
    TRY(wmcuda_patchify(x, c->out_dim, s->cond, c->in_dim - c->out_dim, T, c->lat_h, c->lat_w,
                        s->patches, m->stream));
    TRY(wmcuda_linear_f32(m->gemm, s->patches, pd, L, pd, m->patch_w, m->patch_b, D, s->xres, D,
                          WMCUDA_EPI_NONE, m->stream));
    TRY(time_path(s, t));

    for (int i = 0; i < c->num_layers; i++) {
        const bf16 *mod = s->mod + (size_t)i * T * 6 * D; /* [T][6][D] */
        TRY(self_attention(s, i, mod));
        TRY(cross_attention(s, i));
        if (m->layers[i].has_action) {
            if (c->enable_mouse) TRY(mouse_branch(s, i));
            TRY(keyboard_branch(s, i));
        }
        TRY(ffn(s, i, mod));
    }

    prof_mark(m, WMCUDA_DIT_PROF_EMBED);
    TRY(norm_modulate(s, s->headm, s->headm + D, (size_t)2 * D));
    TRY(wmcuda_linear_f32(m->gemm, s->h, D, L, D, m->head_w, m->head_b, m->od, s->head_out, m->od,
                          WMCUDA_EPI_NONE, m->stream));
    TRY(wmcuda_unpatchify_f32(s->head_out, T, c->lat_h, c->lat_w, c->out_dim, s->v, m->stream));
    prof_mark(m, -1);
    return 0;
}

static size_t latent_floats(const wmcuda_dit *m) {
    return (size_t)m->cfg.out_dim * (size_t)m->T * (size_t)m->cfg.lat_h * (size_t)m->cfg.lat_w;
}

/* Host side, before a block (or a lone forward): the caller's conditioning slice and action
 * windows into the pinned staging, and the block's per-block values (the frames take their slots
 * here, in the host's slot map). */
static void stage_block(wmcuda_dit_session *s, int64_t frame0, int64_t rope_base, const float *cond,
                        const float *mouse_win, const float *kb_win) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const size_t T = (size_t)m->T, HW = (size_t)c->lat_h * c->lat_w, TP = T * (size_t)m->P;
    memcpy(s->h_cond, cond, (size_t)(c->in_dim - c->out_dim) * T * HW * sizeof(float));
    if (c->enable_mouse) memcpy(s->h_mwin, mouse_win, (size_t)(m->U - c->dim) * T * sizeof(float));
    memcpy(s->h_kb, kb_win, TP * (size_t)c->keyboard_dim_in * sizeof(float));
    block_params *p = s->hp;
    memset(p, 0, sizeof *p);
    take_slots(s, frame0, p->vis);
    p->pos0 = frame0 - rope_base;
    p->block = (uint32_t)(frame0 / m->T);
    for (int f = 0; f < m->T; f++) p->slot[f] = (int)slot_of(m, frame0 + f);
}

/* Device side: the staged values and inputs, pinned -> device (a graph's first nodes). */
static int upload_block_inputs(wmcuda_dit_session *s) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const size_t T = (size_t)m->T, HW = (size_t)c->lat_h * c->lat_w, TP = T * (size_t)m->P;
    CK(cudaMemcpyAsync(s->bp, s->hp, sizeof *s->bp, cudaMemcpyHostToDevice, m->stream));
    CK(cudaMemcpyAsync(s->cond, s->h_cond,
                       (size_t)(c->in_dim - c->out_dim) * T * HW * sizeof(float),
                       cudaMemcpyHostToDevice, m->stream));
    if (c->enable_mouse)
        CK(cudaMemcpyAsync(s->mwin, s->h_mwin, (size_t)(m->U - c->dim) * T * sizeof(float),
                           cudaMemcpyHostToDevice, m->stream));
    CK(cudaMemcpyAsync(s->kbin, s->h_kb, TP * (size_t)c->keyboard_dim_in * sizeof(float),
                       cudaMemcpyHostToDevice, m->stream));
    TRY(wmcuda_pad_rows_bf16(s->kbin, (int)TP, c->keyboard_dim_in, s->kbw, m->kpad, m->stream));
    return 0;
}

static int forward_host(wmcuda_dit_session *s, const wmcuda_dit_inputs *in, float *v_out) {
    wmcuda_dit *m = s->m;
    const size_t n = latent_floats(m);
    stage_block(s, in->frame0, in->rope_base, in->cond, in->mouse_win, in->kb_win);
    CK(cudaMemcpyAsync(s->x, in->x, n * sizeof(float), cudaMemcpyHostToDevice, m->stream));
    TRY(upload_block_inputs(s));
    TRY(forward_dev(s, in->t, s->x));
    CK(cudaMemcpyAsync(v_out, s->v, n * sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    CK(cudaStreamSynchronize(m->stream));
    return 0;
}

int wmcuda_dit_forward(wmcuda_dit_session *s, const wmcuda_dit_inputs *in, float *v_out,
                       char *err, size_t errlen) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    char msg[200];
    msg[0] = 0;
    int code = WMCUDA_EINVAL;
    if (!in || !v_out || !in->x || !in->cond || !in->t || !in->kb_win ||
        (c->enable_mouse && !in->mouse_win))
        snprintf(msg, sizeof msg, "wmcuda_dit_forward: missing input (the %s variant needs %s)",
                 eng_variant_name(c->variant), c->enable_mouse ? "mouse windows" : "no mouse");
    else if (in->nframes != m->T || in->frame0 < 0 || in->frame0 % m->T)
        snprintf(msg, sizeof msg, "wmcuda_dit_forward: %d frames from %lld: need %d from a multiple of %d",
                 in->nframes, (long long)in->frame0, m->T, m->T);
    else if (in->frame0 - in->rope_base < 0 || in->frame0 - in->rope_base + m->T > m->pmax)
        snprintf(msg, sizeof msg,
                 "wmcuda_dit_forward: RoPE positions %lld.. outside the table (%d rows): call "
                 "wmcuda_dit_begin_block",
                 (long long)(in->frame0 - in->rope_base), m->pmax);
    else if (!s->cross_ready) {
        snprintf(msg, sizeof msg, "wmcuda_dit_forward: cross-attention context not prepared");
        code = WMCUDA_DIT_ESTATE;
    }
    if (msg[0]) return report(m, failf(m, code, msg), err, errlen);
    return report(m, forward_host(s, in, v_out), err, errlen);
}

/* ---- RoPE origin (engine/session.c maybe_rebase, dit_cpu.c dit_store_rebase) ------------------------------ */

/* Rotates every stored key back by delta temporal positions: main keys' temporal pairs with
 * float64 angles, mouse and keyboard keys' rotating pairs with float32 ones (as rope.c). */
static int rebase(wmcuda_dit_session *s, int64_t delta) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int S = m->S, D = c->dim, dh = c->head_dim;
    const int Hm = c->mouse_hidden, Hk = c->keyboard_hidden, ah = c->action_heads;
    const rope3d_dims rd = rope3d_split(dh);
    float cs_main[2 * WMCUDA_ROTATE_MAX_PAIRS], cs_act[2 * WMCUDA_ROTATE_MAX_PAIRS];
    for (int p = 0; p < rd.t_pairs && p < WMCUDA_ROTATE_MAX_PAIRS; p++) {
        const double ang = -(double)delta * rope3d_freq(dh, p);
        cs_main[2 * p] = (float)cos(ang), cs_main[2 * p + 1] = (float)sin(ang);
    }
    const int apairs = c->action_rope_dims[0] / 2;
    for (int j = 0; j < apairs && j < WMCUDA_ROTATE_MAX_PAIRS; j++) {
        const float freq = 1.0f / powf(c->action_rope_theta,
                                       (float)(2 * j) / (float)c->action_rope_dims[0]);
        const float ang = -(float)delta * freq;
        cs_act[2 * j] = cosf(ang), cs_act[2 * j + 1] = sinf(ang);
    }
    for (int j = 0; j < m->cap; j++) {
        if (s->slot_frame[j] < 0) continue;
        for (int i = 0; i < c->num_layers; i++) {
            layer_cache *lc = &s->layers[i];
            TRY(wmcuda_rotate_pairs(lc->k + (size_t)j * S * D, (size_t)S, D, c->num_heads, dh,
                                    rd.t_pairs, cs_main, m->stream));
            if (lc->mk)
                TRY(wmcuda_rotate_pairs(lc->mk + (size_t)j * S * Hm, (size_t)S, Hm, ah, Hm / ah,
                                        apairs, cs_act, m->stream));
            if (lc->kk)
                TRY(wmcuda_rotate_pairs(lc->kk + (size_t)j * Hk, 1, Hk, ah, Hk / ah, apairs,
                                        cs_act, m->stream));
        }
    }
    return 0;
}

static int begin_block(wmcuda_dit_session *s, int64_t block, int64_t *rope_base) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int64_t s0 = block * m->T;
    if (s0 - s->rope_base + m->T > c->rope_pos_limit) {
        const int64_t delta = s0 + m->T - c->local_attn_size - s->rope_base;
        TRY(rebase(s, delta));
        s->rope_base += delta;
    }
    *rope_base = s->rope_base;
    return 0;
}

int wmcuda_dit_begin_block(wmcuda_dit_session *s, int64_t block, int64_t *rope_base, char *err,
                           size_t errlen) {
    if (block < 0 || !rope_base)
        return report(s->m, failf(s->m, WMCUDA_EINVAL, "begin_block: bad block or NULL rope_base"),
                      err, errlen);
    return report(s->m, begin_block(s, block, rope_base), err, errlen);
}

/* ---- the block loop (engine/session.c, model-dit.md 7.3) --------------------------------------------------- */

/* The whole block on the model's stream, eagerly or as the recording of its graph: staged values
 * and inputs in, noise from the same Philox streams as the CPU session (the block counter read
 * from the staged values), the K sampler steps, the context pass, the final x0 out to pinned
 * memory. Nothing here allocates, synchronizes or reads pageable memory; the launches do not
 * depend on the block (graphs/README.md). timed: cudaEvents around each forward (eager only). */
static int block_body(wmcuda_dit_session *s, int timed) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int T = m->T, K = c->num_steps;
    const size_t n = latent_floats(m);
    const uint32_t *blk = &s->bp->block;
    float tf[WMCUDA_TEMB_MAX_FRAMES];
    TRY(upload_block_inputs(s));
    TRY(wmcuda_noise_fill_at(s->x, n, s->seed, s->session_id, blk, ENG_NOISE_INITIAL, m->stream));
    for (int k = 0; k < K; k++) {
        for (int f = 0; f < T; f++) tf[f] = m->tau[k];
        if (timed) CK(cudaEventRecord(m->fwd_ev[2 * k], m->stream));
        TRY(forward_dev(s, tf, s->x));
        if (timed) CK(cudaEventRecord(m->fwd_ev[2 * k + 1], m->stream));
        /* x0 = x - sigma v in float64; re-noise (1 - sigma') x0 + sigma' eps in float32 */
        TRY(wmcuda_sampler_x0(s->x, s->v, (double)m->sigma[k], s->x0, n, m->stream));
        if (k + 1 < K) {
            TRY(wmcuda_noise_fill_at(s->eps, n, s->seed, s->session_id, blk, (uint32_t)(k + 1),
                                     m->stream));
            TRY(wmcuda_sampler_renoise(s->x0, s->eps, m->sigma[k + 1], s->x, n, m->stream));
        }
    }
    /* context pass: clean x0 at t = 0 rewrites this block's cache entries; output discarded */
    for (int f = 0; f < T; f++) tf[f] = 0.0f;
    if (timed) CK(cudaEventRecord(m->fwd_ev[2 * K], m->stream));
    TRY(forward_dev(s, tf, s->x0));
    if (timed) CK(cudaEventRecord(m->fwd_ev[2 * K + 1], m->stream));
    CK(cudaMemcpyAsync(s->h_lat, s->x0, n * sizeof(float), cudaMemcpyDeviceToHost, m->stream));
    return 0;
}

static int record_block(void *ctx) { return block_body(ctx, 0); }

static int want_graphs(const wmcuda_dit_session *s) {
    if (s->m->prof_on) return 0; /* the profiler's event brackets need eager launches */
    return s->use_graphs >= 0 ? s->use_graphs : wmgraph_block_enabled();
}

/* Replays the session's block graph, capturing it first where it has none. The model's first block
 * runs eagerly (run_block), which prepares every GEMM shape of a block; should a capture still
 * meet a shape the table has not seen, this block runs eagerly instead and the next captures.
 * *replayed: whether it did. */
static int launch_graph(wmcuda_dit_session *s, int *replayed) {
    wmcuda_dit *m = s->m;
    *replayed = 0;
    if (!wmgraph_block_ready(s->graph, 0)) {
        char msg[256];
        const int rc = wmgraph_block_capture(s->graph, 0, record_block, s, msg, sizeof msg);
        if (rc == WMCUDA_ENOTPREPARED) return 0;
        if (rc) {
            if (rc > -10000) snprintf(m->err, sizeof m->err, "%s", msg); /* else m->err says why */
            return rc;
        }
    }
    char msg[256];
    const int rc = wmgraph_block_launch(s->graph, 0, msg, sizeof msg);
    if (rc) return failf(m, rc, msg);
    *replayed = 1;
    return 0;
}

static int run_block(wmcuda_dit_session *s, const float *cond, const float *mouse_win,
                     const float *kb_win, float *latents_out, double *fwd_ms) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    const int T = m->T, K = c->num_steps;
    const size_t n = latent_floats(m);
    const int64_t frame0 = s->next_block * T;
    int64_t rope_base = 0;
    TRY(begin_block(s, s->next_block, &rope_base)); /* the rare rebase runs eagerly, before */
    stage_block(s, frame0, rope_base, cond, mouse_win, kb_win);
    const double h0 = now_ms();
    int replayed = 0;
    CK(cudaEventRecord(m->blk_ev[0], m->stream));
    if (want_graphs(s) && m->blocks_warm) TRY(launch_graph(s, &replayed));
    if (!replayed) {
        TRY(block_body(s, 1));
        m->blocks_warm = 1;
    }
    CK(cudaEventRecord(m->blk_ev[1], m->stream));
    const double h1 = now_ms();
    CK(cudaStreamSynchronize(m->stream));
    memcpy(latents_out, s->h_lat, n * sizeof(float));
    float dev = 0.0f;
    CK(cudaEventElapsedTime(&dev, m->blk_ev[0], m->blk_ev[1]));
    for (int k = 0; k <= K; k++) {
        float ms = dev / (float)(K + 1); /* a replay has no per-forward brackets: its share */
        if (!replayed) CK(cudaEventElapsedTime(&ms, m->fwd_ev[2 * k], m->fwd_ev[2 * k + 1]));
        fwd_ms[k] = ms;
    }
    s->last.graph = replayed;
    s->last.device_ms = dev;
    s->last.enqueue_ms = h1 - h0;
    s->last.graph_nodes = wmgraph_block_nodes(s->graph, 0);
    s->next_block++;
    return 0;
}

int wmcuda_dit_run_block(wmcuda_dit_session *s, const float *cond, const float *mouse_win,
                         const float *kb_win, float *latents_out, eng_block_timings *timings,
                         char *err, size_t errlen) {
    wmcuda_dit *m = s->m;
    const eng_config *c = &m->cfg;
    if (!cond || !kb_win || !latents_out || (c->enable_mouse && !mouse_win))
        return report(m, failf(m, WMCUDA_EINVAL, "run_block: missing cond, windows or output"),
                      err, errlen);
    if (!s->cross_ready)
        return report(m, failf(m, WMCUDA_DIT_ESTATE, "run_block: cross-attention context not prepared"),
                      err, errlen);
    eng_block_timings tm;
    memset(&tm, 0, sizeof tm);
    const double t0 = now_ms();
    const int rc = run_block(s, cond, mouse_win, kb_win, latents_out, tm.forward_ms);
    if (rc) return report(m, rc, err, errlen);
    tm.forwards = c->num_steps + 1;
    tm.total_ms = now_ms() - t0;
    s->last.wall_ms = tm.total_ms;
    if (timings) *timings = tm;
    return 0;
}

void wmcuda_dit_session_set_graphs(wmcuda_dit_session *s, int mode) {
    s->use_graphs = mode < 0 ? -1 : mode != 0;
}

void wmcuda_dit_last_block(const wmcuda_dit_session *s, wmcuda_dit_block_stats *out) {
    *out = s->last;
}
