/* The causal Wan DiT of Matrix-Game-2.0, float32 CPU reference, readable top to bottom in the
 * order of model-dit.md section 4 (forward), 5 (RoPE) and 6 (action module). */
#include "engine/cpu/dit_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cpu/ops.h"
#include "engine/cpu/rope.h"
#include "engine/errors.h"

/* ---- frame store ------------------------------------------------------------------------------
 */

int dit_store_create(dit_store *st, const eng_config *c, int cap, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    const size_t S = (size_t)eng_tokens_per_frame(c), D = (size_t)c->dim;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *cur = st->arena;
        size_t need = 0;
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        if (pass) (ptr) = cur, cur += (n);                                                         \
        need += (n);                                                                               \
    } while (0)
        for (int i = 0; i < c->num_layers; i++) {
            dit_layer_store *l = &st->layers[i];
            TAKE(l->k, (size_t)cap * S * D);
            TAKE(l->v, (size_t)cap * S * D);
            TAKE(l->ck, (size_t)c->clip_tokens * D);
            TAKE(l->cv, (size_t)c->clip_tokens * D);
            if (c->action_layer[i]) {
                if (c->enable_mouse) {
                    TAKE(l->mk, (size_t)cap * S * (size_t)c->mouse_hidden);
                    TAKE(l->mv, (size_t)cap * S * (size_t)c->mouse_hidden);
                }
                TAKE(l->kk, (size_t)cap * (size_t)c->keyboard_hidden);
                TAKE(l->kv, (size_t)cap * (size_t)c->keyboard_hidden);
            }
        }
#undef TAKE
        if (!pass) {
            total = need;
            st->arena = calloc(total, sizeof(float));
            st->slot_frame = malloc((size_t)cap * sizeof *st->slot_frame);
            if (!st->arena || !st->slot_frame) {
                free(st->arena), free(st->slot_frame);
                memset(st, 0, sizeof *st);
                return eng_errorf(err, errlen, ENG_ENOMEM,
                                  "cannot allocate %.1f MB of KV cache for %d frames",
                                  (double)total * 4e-6, cap);
            }
        }
    }
    st->arena_floats = total;
    st->cap = cap;
    dit_store_reset(st);
    return 0;
}

void dit_store_destroy(dit_store *st) {
    free(st->arena);
    free(st->slot_frame);
    memset(st, 0, sizeof *st);
}

void dit_store_reset(dit_store *st) {
    for (int j = 0; j < st->cap; j++) st->slot_frame[j] = -1;
    st->cross_ready = 0;
}

void dit_store_rebase(dit_store *st, const eng_config *c, int64_t delta) {
    const int S = eng_tokens_per_frame(c), D = c->dim, ahd = eng_action_head_dim(c);
    for (int j = 0; j < st->cap; j++) {
        if (st->slot_frame[j] < 0) continue;
        for (int i = 0; i < c->num_layers; i++) {
            dit_layer_store *l = &st->layers[i];
            rope3d_shift_temporal(l->k + (size_t)j * S * D, D, (size_t)S, c->num_heads, c->head_dim,
                                  -(double)delta);
            if (l->mk)
                rope_action_apply(l->mk + (size_t)j * S * c->mouse_hidden, c->mouse_hidden,
                                  (size_t)S, c->action_heads, ahd, c->action_rope_dims[0],
                                  c->action_rope_theta, -(float)delta);
            if (l->kk)
                rope_action_apply(l->kk + (size_t)j * c->keyboard_hidden, c->keyboard_hidden, 1,
                                  c->action_heads, ahd, c->action_rope_dims[0],
                                  c->action_rope_theta, -(float)delta);
        }
    }
}

/* ---- workspace ------------------------------------------------------------------------------- */

struct dit_workspace {
    int max_frames, cap;
    float *xres, *h, *q, *k, *v, *o, *ffn; /* [L][D] (ffn: [L][FF]) */
    float *scores;                         /* [L][cap * S] */
    float *patches;                        /* [L][in_dim * 4] */
    float *temb, *e_t, *e6, *mod, *head;   /* per frame time path */
    float *ctx, *ctx_tmp;                  /* [clip_tokens][max(D, clip_dim)] */
    float *mu, *mg, *mq, *mk, *mv, *mo;    /* action module, [L][...] */
    float *kb_hid, *kb_emb, *kb_kv;        /* [F*P][E], [F][P*E], [F][2*Hk] */
    float *out;                            /* [L][64] */
    unsigned char *vis;                    /* [F][cap] slot visibility */
};

dit_workspace *dit_workspace_create(const eng_config *c, int max_frames, int cap) {
    dit_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    const size_t L = (size_t)max_frames * (size_t)eng_tokens_per_frame(c), D = (size_t)c->dim;
    const size_t F = (size_t)max_frames, P = (size_t)eng_action_window(c);
    const size_t Hm = (size_t)c->mouse_hidden, Hk = (size_t)c->keyboard_hidden;
    const size_t cw = D > (size_t)c->clip_dim ? D : (size_t)c->clip_dim;
    ws->max_frames = max_frames, ws->cap = cap;
    int ok = 1;
#define ALLOC(ptr, n) ok &= ((ptr) = malloc((n) * sizeof *(ptr))) != NULL
    ALLOC(ws->xres, L * D);
    ALLOC(ws->h, L * D);
    ALLOC(ws->q, L * D);
    ALLOC(ws->k, L * D);
    ALLOC(ws->v, L * D);
    ALLOC(ws->o, L * D);
    ALLOC(ws->ffn, L * (size_t)c->ffn_dim);
    ALLOC(ws->scores,
          L * (size_t)cap * (size_t)eng_tokens_per_frame(c) + L * (size_t)c->clip_tokens);
    ALLOC(ws->patches, L * (size_t)c->in_dim * 4);
    ALLOC(ws->temb, F * (size_t)c->freq_dim);
    ALLOC(ws->e_t, F * D);
    ALLOC(ws->e6, F * 6 * D);
    ALLOC(ws->mod, F * 6 * D);
    ALLOC(ws->head, F * 2 * D);
    ALLOC(ws->ctx, (size_t)c->clip_tokens * cw);
    ALLOC(ws->ctx_tmp, (size_t)c->clip_tokens * cw);
    ALLOC(ws->mu, L * (D + 2 * P));
    ALLOC(ws->mg, L * Hm);
    ALLOC(ws->mq, L * (Hm > Hk ? Hm : Hk));
    ALLOC(ws->mk, L * Hm);
    ALLOC(ws->mv, L * Hm);
    ALLOC(ws->mo, L * (Hm > Hk ? Hm : Hk));
    ALLOC(ws->kb_hid, F * P * (size_t)c->kb_embed_dim);
    ALLOC(ws->kb_emb, F * P * (size_t)c->kb_embed_dim);
    ALLOC(ws->kb_kv, F * 2 * Hk);
    ALLOC(ws->out, L * 64);
    ALLOC(ws->vis, F * (size_t)cap);
#undef ALLOC
    if (!ok) {
        dit_workspace_destroy(ws);
        return NULL;
    }
    return ws;
}

void dit_workspace_destroy(dit_workspace *ws) {
    if (!ws) return;
    float *bufs[] = {ws->xres,   ws->h,       ws->q,      ws->k,     ws->v,  ws->o,   ws->ffn,
                     ws->scores, ws->patches, ws->temb,   ws->e_t,   ws->e6, ws->mod, ws->head,
                     ws->ctx,    ws->ctx_tmp, ws->mu,     ws->mg,    ws->mq, ws->mk,  ws->mv,
                     ws->mo,     ws->kb_hid,  ws->kb_emb, ws->kb_kv, ws->out};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(ws->vis);
    free(ws);
}

/* ---- input/output layout (4.1, 4.6) --------------------------------------------------------- */

void dit_timestep_sinusoid(int freq_dim, float t, float *out) {
    const int half = freq_dim / 2;
    for (int k = 0; k < half; k++) {
        double w = pow(10000.0, -(double)k / (double)half);
        double a = (double)t * w;
        out[k] = (float)cos(a);
        out[half + k] = (float)sin(a);
    }
}

/* z = concat(x (16 ch), cond (20 ch)); token (f, h, w) column c*4 + a*2 + b = z[c][f][2h+a][2w+b].
 */
void dit_patchify(const eng_config *c, const float *x, const float *cond, int nframes,
                  float *patches) {
    const int H = c->lat_h, W = c->lat_w, gh = eng_grid_h(c), gw = eng_grid_w(c);
    const int S = gh * gw, cols = c->in_dim * 4, F = nframes;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < F * S; n++) {
        const int f = n / S, hh = (n % S) / gw, ww = n % gw;
        float *row = patches + (size_t)n * (size_t)cols;
        for (int ch = 0; ch < c->in_dim; ch++) {
            const float *src = ch < 16 ? x + ((size_t)ch * F + f) * (size_t)(H * W)
                                       : cond + ((size_t)(ch - 16) * F + f) * (size_t)(H * W);
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    row[ch * 4 + a * 2 + b] = src[(size_t)(2 * hh + a) * W + (size_t)(2 * ww + b)];
        }
    }
}

/* Head output channel k = 32a + 16b + ch of token (f, h, w) -> v[ch][f][2h+a][2w+b]. */
void dit_unpatchify(const eng_config *c, const float *tokens, int nframes, float *v) {
    const int H = c->lat_h, W = c->lat_w, gh = eng_grid_h(c), gw = eng_grid_w(c);
    const int S = gh * gw, F = nframes, od = c->out_dim;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < F * S; n++) {
        const int f = n / S, hh = (n % S) / gw, ww = n % gw;
        const float *row = tokens + (size_t)n * (size_t)(4 * od);
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                for (int ch = 0; ch < od; ch++)
                    v[((size_t)ch * F + f) * (size_t)(H * W) + (size_t)(2 * hh + a) * W +
                      (size_t)(2 * ww + b)] = row[(a * 2 + b) * od + ch];
    }
}

/* ---- time path (4.3) and image context (4.4) ----------------------------------------------------
 */

static void time_path(const eng_weights *w, const dit_inputs *in, dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const int F = in->nframes, D = c->dim;
    for (int f = 0; f < F; f++)
        dit_timestep_sinusoid(c->freq_dim, in->t[f], ws->temb + (size_t)f * c->freq_dim);
    cpu_linear(ws->temb, c->freq_dim, F, c->freq_dim, w->te0_w, w->te0_b, D, ws->h, D);
    cpu_apply_silu(ws->h, (size_t)F * D);
    cpu_linear(ws->h, D, F, D, w->te2_w, w->te2_b, D, ws->e_t, D);
    memcpy(ws->h, ws->e_t, (size_t)F * D * sizeof(float));
    cpu_apply_silu(ws->h, (size_t)F * D);
    cpu_linear(ws->h, D, F, D, w->tp_w, w->tp_b, 6 * D, ws->e6, 6 * D);
    /* head modulation uses e_t itself (pitfall 10.7) */
    for (int f = 0; f < F; f++)
        for (int d = 0; d < D; d++) {
            ws->head[(size_t)f * 2 * D + d] = w->head_mod[d] + ws->e_t[(size_t)f * D + d];
            ws->head[(size_t)f * 2 * D + D + d] = w->head_mod[D + d] + ws->e_t[(size_t)f * D + d];
        }
}

void dit_cpu_prepare_cross(const eng_weights *w, const float *clip, dit_store *st,
                           dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const int N = c->clip_tokens, C = c->clip_dim, D = c->dim;
    cpu_layernorm(clip, ws->ctx_tmp, N, C, 1e-5f, w->img0_w, w->img0_b);
    cpu_linear(ws->ctx_tmp, C, N, C, w->img1_w, w->img1_b, C, ws->ctx, C);
    cpu_apply_gelu_erf(ws->ctx, (size_t)N * C);
    cpu_linear(ws->ctx, C, N, C, w->img3_w, w->img3_b, D, ws->ctx_tmp, D);
    cpu_layernorm(ws->ctx_tmp, ws->ctx, N, D, 1e-5f, w->img4_w, w->img4_b);
    for (int i = 0; i < c->num_layers; i++) {
        const eng_layer_weights *l = &w->layers[i];
        dit_layer_store *ls = &st->layers[i];
        cpu_linear(ws->ctx, D, N, D, l->ck_w, l->ck_b, D, ls->ck, D);
        cpu_rmsnorm(ls->ck, ls->ck, (size_t)N, D, c->eps, l->cnorm_k);
        cpu_linear(ws->ctx, D, N, D, l->cv_w, l->cv_b, D, ls->cv, D);
    }
    st->cross_ready = 1;
}

/* ---- helpers ------------------------------------------------------------------------------------
 */

/* h = LN(x) * (1 + scale[f]) + shift[f] per token, with the frame's modulation rows. */
void dit_norm_modulate(const float *x, float *h, int F, int S, int D, float eps, const float *shift,
                       const float *scale, size_t frame_stride) {
    cpu_layernorm(x, h, F * S, D, eps, NULL, NULL);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < F * S; n++) {
        const float *sh = shift + (size_t)(n / S) * frame_stride;
        const float *sc = scale + (size_t)(n / S) * frame_stride;
        float *r = h + (size_t)n * D;
        for (int d = 0; d < D; d++) r[d] = r[d] * (1.0f + sc[d]) + sh[d];
    }
}

/* x += y * gate[f] per token. */
static void add_gated(float *x, const float *y, int F, int S, int D, const float *gate,
                      size_t frame_stride) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < F * S; n++) {
        const float *g = gate + (size_t)(n / S) * frame_stride;
        float *xr = x + (size_t)n * D;
        const float *yr = y + (size_t)n * D;
        for (int d = 0; d < D; d++) xr[d] = xr[d] + yr[d] * g[d];
    }
}

static void add_inplace(float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* Window of the block that query frame f belongs to. */
static void frame_window(const eng_config *c, int64_t f, int64_t *lo, int64_t *hi) {
    const int T = c->frames_per_block;
    int64_t b = f - f % T;
    *hi = b + T - 1;
    *lo = b + T - c->local_attn_size;
    if (*lo < 0) *lo = 0;
}

static int64_t slot_of(const dit_store *st, int64_t f) {
    return f % st->cap;
}

/* vis[f][j] = slot j holds a frame inside query frame f's window. */
static void build_visibility(const eng_config *c, const dit_inputs *in, const dit_store *st,
                             unsigned char *vis) {
    for (int f = 0; f < in->nframes; f++) {
        int64_t lo, hi;
        frame_window(c, in->frame0 + f, &lo, &hi);
        for (int j = 0; j < st->cap; j++) {
            int64_t g = st->slot_frame[j];
            vis[(size_t)f * st->cap + j] = g >= lo && g <= hi;
        }
    }
}

static void trace_tokens(const dit_inputs *in, const char *name, const float *x, int rows,
                         int cols) {
    if (!in->trace) return;
    int64_t shape[2] = {rows, cols};
    in->trace(in->trace_user, name, x, 2, shape);
}

/* ---- self-attention (4.5 a-f) ------------------------------------------------------------------
 */

static void self_attention(const eng_weights *w, int i, const dit_inputs *in, dit_store *st,
                           dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const eng_layer_weights *l = &w->layers[i];
    dit_layer_store *ls = &st->layers[i];
    const int F = in->nframes, S = eng_tokens_per_frame(c), D = c->dim, L = F * S;
    const float *mod = ws->mod; /* [F][6][D] */
    dit_norm_modulate(ws->xres, ws->h, F, S, D, c->eps, mod, mod + D, (size_t)6 * D);
    cpu_linear(ws->h, D, L, D, l->q_w, l->q_b, D, ws->q, D);
    cpu_linear(ws->h, D, L, D, l->k_w, l->k_b, D, ws->k, D);
    cpu_linear(ws->h, D, L, D, l->v_w, l->v_b, D, ws->v, D);
    cpu_rmsnorm(ws->q, ws->q, (size_t)L, D, c->eps, l->norm_q);
    cpu_rmsnorm(ws->k, ws->k, (size_t)L, D, c->eps, l->norm_k);
    for (int f = 0; f < F; f++) {
        double pos = (double)(in->frame0 + f - in->rope_base);
        rope3d_apply_frame(ws->q + (size_t)f * S * D, D, eng_grid_h(c), eng_grid_w(c), c->num_heads,
                           c->head_dim, pos);
        rope3d_apply_frame(ws->k + (size_t)f * S * D, D, eng_grid_h(c), eng_grid_w(c), c->num_heads,
                           c->head_dim, pos);
        int64_t slot = slot_of(st, in->frame0 + f);
        memcpy(ls->k + (size_t)slot * S * D, ws->k + (size_t)f * S * D,
               (size_t)S * D * sizeof(float));
        memcpy(ls->v + (size_t)slot * S * D, ws->v + (size_t)f * S * D,
               (size_t)S * D * sizeof(float));
    }
    cpu_attn_args a = {.q = ws->q,
                       .k = ls->k,
                       .v = ls->v,
                       .o = ws->o,
                       .ldq = D,
                       .ldk = D,
                       .ldv = D,
                       .ldo = D,
                       .lq = L,
                       .lk = st->cap * S,
                       .heads = c->num_heads,
                       .dh = c->head_dim,
                       .mask = ws->vis,
                       .frames_q = F,
                       .frames_k = st->cap,
                       .rows_per_frame_q = S,
                       .rows_per_frame_k = S};
    cpu_attention(&a, ws->scores);
    cpu_linear(ws->o, D, L, D, l->o_w, l->o_b, D, ws->h, D);
    add_gated(ws->xres, ws->h, F, S, D, mod + 2 * D, (size_t)6 * D);
}

/* ---- cross-attention (4.5 g) -------------------------------------------------------------------
 */

static void cross_attention(const eng_weights *w, int i, const dit_inputs *in, dit_store *st,
                            dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const eng_layer_weights *l = &w->layers[i];
    const dit_layer_store *ls = &st->layers[i];
    const int S = eng_tokens_per_frame(c), D = c->dim, L = in->nframes * S;
    cpu_layernorm(ws->xres, ws->h, L, D, c->eps, l->norm3_w, l->norm3_b);
    cpu_linear(ws->h, D, L, D, l->cq_w, l->cq_b, D, ws->q, D);
    cpu_rmsnorm(ws->q, ws->q, (size_t)L, D, c->eps, l->cnorm_q);
    cpu_attn_args a = {.q = ws->q,
                       .k = ls->ck,
                       .v = ls->cv,
                       .o = ws->o,
                       .ldq = D,
                       .ldk = D,
                       .ldv = D,
                       .ldo = D,
                       .lq = L,
                       .lk = c->clip_tokens,
                       .heads = c->num_heads,
                       .dh = c->head_dim};
    cpu_attention(&a, ws->scores);
    cpu_linear(ws->o, D, L, D, l->co_w, l->co_b, D, ws->h, D);
    add_inplace(ws->xres, ws->h, (size_t)L * D); /* no gate, no modulation */
}

/* ---- action module (section 6) -----------------------------------------------------------------
 */

static void mouse_branch(const eng_weights *w, int i, const dit_inputs *in, dit_store *st,
                         dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const eng_action_weights *a = &w->layers[i].act;
    dit_layer_store *ls = &st->layers[i];
    const int F = in->nframes, S = eng_tokens_per_frame(c), D = c->dim, L = F * S;
    const int Hm = c->mouse_hidden, heads = c->action_heads, hd = Hm / heads;
    const int win = c->mouse_dim_in * eng_action_window(c), U = D + win;
    /* u = concat(token features, the frame's mouse window) */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < L; n++) {
        memcpy(ws->mu + (size_t)n * U, ws->xres + (size_t)n * D, (size_t)D * sizeof(float));
        memcpy(ws->mu + (size_t)n * U + D, in->mouse_win + (size_t)(n / S) * win,
               (size_t)win * sizeof(float));
    }
    cpu_linear(ws->mu, U, L, U, a->mm0_w, a->mm0_b, Hm, ws->mg, Hm);
    cpu_apply_gelu_tanh(ws->mg, (size_t)L * Hm);
    cpu_linear(ws->mg, Hm, L, Hm, a->mm2_w, a->mm2_b, Hm, ws->mo, Hm);
    cpu_layernorm(ws->mo, ws->mg, L, Hm, 1e-5f, a->mm3_w, a->mm3_b);
    cpu_linear(ws->mg, Hm, L, Hm, a->t_qkv, NULL, Hm, ws->mq, Hm);
    cpu_linear(ws->mg, Hm, L, Hm, a->t_qkv + (size_t)Hm * Hm, NULL, Hm, ws->mk, Hm);
    cpu_linear(ws->mg, Hm, L, Hm, a->t_qkv + (size_t)2 * Hm * Hm, NULL, Hm, ws->mv, Hm);
    cpu_rmsnorm(ws->mq, ws->mq, (size_t)L * heads, hd, 1e-6f, NULL); /* no gain (10.3) */
    cpu_rmsnorm(ws->mk, ws->mk, (size_t)L * heads, hd, 1e-6f, NULL);
    for (int f = 0; f < F; f++) {
        float pos = (float)(in->frame0 + f - in->rope_base);
        rope_action_apply(ws->mq + (size_t)f * S * Hm, Hm, (size_t)S, heads, hd,
                          c->action_rope_dims[0], c->action_rope_theta, pos);
        rope_action_apply(ws->mk + (size_t)f * S * Hm, Hm, (size_t)S, heads, hd,
                          c->action_rope_dims[0], c->action_rope_theta, pos);
        int64_t slot = slot_of(st, in->frame0 + f);
        memcpy(ls->mk + (size_t)slot * S * Hm, ws->mk + (size_t)f * S * Hm,
               (size_t)S * Hm * sizeof(float));
        memcpy(ls->mv + (size_t)slot * S * Hm, ws->mv + (size_t)f * S * Hm,
               (size_t)S * Hm * sizeof(float));
    }
    /* per spatial position: the frame's query over that position's stored frames */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < L; n++) {
        const int f = n / S, sigma = n % S;
        cpu_attention_row(ws->mq + (size_t)n * Hm, ls->mk + (size_t)sigma * Hm, S * Hm,
                          ls->mv + (size_t)sigma * Hm, S * Hm, st->cap,
                          ws->vis + (size_t)f * st->cap, heads, hd, ws->mo + (size_t)n * Hm);
    }
    cpu_linear(ws->mo, Hm, L, Hm, a->proj_mouse, NULL, D, ws->h, D);
    add_inplace(ws->xres, ws->h, (size_t)L * D);
}

static void keyboard_branch(const eng_weights *w, int i, const dit_inputs *in, dit_store *st,
                            dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const eng_action_weights *a = &w->layers[i].act;
    dit_layer_store *ls = &st->layers[i];
    const int F = in->nframes, S = eng_tokens_per_frame(c), D = c->dim, L = F * S;
    const int Hk = c->keyboard_hidden, heads = c->action_heads, hd = Hk / heads;
    const int P = eng_action_window(c), E = c->kb_embed_dim, kd = c->keyboard_dim_in;
    /* keyboard tokens: each window frame embedded on its own, concatenated m-major */
    cpu_linear(in->kb_win, kd, F * P, kd, a->kb0_w, a->kb0_b, E, ws->kb_hid, E);
    cpu_apply_silu(ws->kb_hid, (size_t)F * P * E);
    cpu_linear(ws->kb_hid, E, F * P, E, a->kb2_w, a->kb2_b, E, ws->kb_emb, E);
    cpu_linear(ws->kb_emb, P * E, F, P * E, a->kb_attn_kv, NULL, 2 * Hk, ws->kb_kv, 2 * Hk);
    for (int f = 0; f < F; f++) {
        float *kf = ws->kb_kv + (size_t)f * 2 * Hk;
        cpu_rmsnorm(kf, kf, (size_t)heads, hd, 1e-6f, NULL);
        rope_action_apply(kf, Hk, 1, heads, hd, c->action_rope_dims[0], c->action_rope_theta,
                          (float)(in->frame0 + f - in->rope_base));
        int64_t slot = slot_of(st, in->frame0 + f);
        memcpy(ls->kk + (size_t)slot * Hk, kf, (size_t)Hk * sizeof(float));
        memcpy(ls->kv + (size_t)slot * Hk, kf + Hk, (size_t)Hk * sizeof(float));
    }
    /* queries from the mouse-updated activations (10.9) */
    cpu_linear(ws->xres, D, L, D, a->mouse_attn_q, NULL, Hk, ws->mq, Hk);
    cpu_rmsnorm(ws->mq, ws->mq, (size_t)L * heads, hd, 1e-6f, NULL);
    for (int f = 0; f < F; f++)
        rope_action_apply(ws->mq + (size_t)f * S * Hk, Hk, (size_t)S, heads, hd,
                          c->action_rope_dims[0], c->action_rope_theta,
                          (float)(in->frame0 + f - in->rope_base));
#pragma omp parallel for schedule(static)
    for (int n = 0; n < L; n++)
        cpu_attention_row(ws->mq + (size_t)n * Hk, ls->kk, Hk, ls->kv, Hk, st->cap,
                          ws->vis + (size_t)(n / S) * st->cap, heads, hd, ws->mo + (size_t)n * Hk);
    cpu_linear(ws->mo, Hk, L, Hk, a->proj_keyboard, NULL, D, ws->h, D);
    add_inplace(ws->xres, ws->h, (size_t)L * D);
}

/* ---- FFN (4.5 i) and head (4.6)
 * ------------------------------------------------------------------ */

static void ffn(const eng_weights *w, int i, const dit_inputs *in, dit_workspace *ws) {
    const eng_config *c = &w->cfg;
    const eng_layer_weights *l = &w->layers[i];
    const int F = in->nframes, S = eng_tokens_per_frame(c), D = c->dim, L = F * S;
    const float *mod = ws->mod;
    dit_norm_modulate(ws->xres, ws->h, F, S, D, c->eps, mod + 3 * D, mod + 4 * D, (size_t)6 * D);
    cpu_linear(ws->h, D, L, D, l->ffn0_w, l->ffn0_b, c->ffn_dim, ws->ffn, c->ffn_dim);
    cpu_apply_gelu_tanh(ws->ffn, (size_t)L * c->ffn_dim);
    cpu_linear(ws->ffn, c->ffn_dim, L, c->ffn_dim, l->ffn2_w, l->ffn2_b, D, ws->o, D);
    add_gated(ws->xres, ws->o, F, S, D, mod + 5 * D, (size_t)6 * D);
}

/* M_i[f][j] = modulation_i[j] + e6[f][j] */
static void layer_modulation(const eng_weights *w, int i, int F, dit_workspace *ws) {
    const int D6 = 6 * w->cfg.dim;
    for (int f = 0; f < F; f++)
        for (int d = 0; d < D6; d++)
            ws->mod[(size_t)f * D6 + d] = w->layers[i].modulation[d] + ws->e6[(size_t)f * D6 + d];
}

int dit_cpu_forward(const eng_weights *w, const dit_inputs *in, dit_store *st, dit_workspace *ws,
                    float *v_out, char *err, size_t errlen) {
    const eng_config *c = &w->cfg;
    const int F = in->nframes, S = eng_tokens_per_frame(c), D = c->dim, L = F * S;
    if (F < 1 || F > ws->max_frames || st->cap != ws->cap || in->frame0 % c->frames_per_block)
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "forward over %d frames from %lld does not fit the workspace", F,
                          (long long)in->frame0);
    if (!st->cross_ready)
        return eng_errorf(err, errlen, ENG_ESTATE, "cross-attention context not prepared");
    if (c->enable_mouse && !in->mouse_win)
        return eng_errorf(err, errlen, ENG_EINVAL, "the %s variant needs mouse windows",
                          eng_variant_name(c->variant));

    dit_patchify(c, in->x, in->cond, F, ws->patches);
    cpu_linear(ws->patches, c->in_dim * 4, L, c->in_dim * 4, w->patch_w, w->patch_b, D, ws->xres,
               D);
    time_path(w, in, ws);

    /* the frames of this forward take their slots before attention reads the store */
    for (int f = 0; f < F; f++) st->slot_frame[slot_of(st, in->frame0 + f)] = in->frame0 + f;
    build_visibility(c, in, st, ws->vis);

    for (int i = 0; i < c->num_layers; i++) {
        layer_modulation(w, i, F, ws);
        self_attention(w, i, in, st, ws);
        cross_attention(w, i, in, st, ws);
        if (w->layers[i].has_action) {
            if (c->enable_mouse) mouse_branch(w, i, in, st, ws);
            keyboard_branch(w, i, in, st, ws);
        }
        ffn(w, i, in, ws);
        if (in->trace) {
            char name[32];
            snprintf(name, sizeof name, "layer%d", i);
            trace_tokens(in, name, ws->xres, L, D);
        }
    }

    dit_norm_modulate(ws->xres, ws->h, F, S, D, c->eps, ws->head, ws->head + D, (size_t)2 * D);
    const int od = c->out_dim * c->patch[0] * c->patch[1] * c->patch[2];
    cpu_linear(ws->h, D, L, D, w->head_w, w->head_b, od, ws->out, od);
    dit_unpatchify(c, ws->out, F, v_out);
    return 0;
}
