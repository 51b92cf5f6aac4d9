/* The CPU VAE (engine/vae.h) against independent references:
 *  1. every convolution kind (causal 3x3x3 with cache, 2-D stride-2 downsample with right/bottom
 *     padding, nearest x2 + 3x3, both (3,1,1) time convs with their cache rules, 1x1x1) against a
 *     naive nested-loop convolution in double;
 *  2. RMS norm (incl. the all-zero guard), the attention block and residual blocks against double
 *     references;
 *  3. streaming decode: 3 blocks of 3 latents == one call of 9 latents == 9 calls of 1 latent;
 *  4. streaming encode: 1 + 4 + 4 + 4 frames == 1 + 12 frames; encoder -> decoder frame counts;
 *  5. the conditioning-latent saturation of model-vae-clip.md 4.4 (cheap at 16x16 tiny);
 *  6. the parameter table against Appendix A (counts, a hash of every key pair and shape) and the
 *     loader on safetensors files with official and Diffusers names, and its refusals;
 *  7. vae_frames_to_rgb8's truncation rule.
 * All data is random (tests/test_util.h), weights synthetic (tiny preset). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/safetensors.h"
#include "engine/vae.h"
#include "engine/vae/vae_internal.h"
#include "test_util.h"

#define F32_BOUND 1e-5 /* relative error of a float32 op against its double reference */

static char err[1024];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rnd(size_t n, uint64_t seed, float scale) {
    float *x = malloc(n * sizeof *x);
    tu_fill(x, n, seed, scale);
    return x;
}

static double *dalloc(size_t n) {
    return calloc(n, sizeof(double));
}

/* Runs a layer call dry (declaring its scratch), sizes the workspace, then runs it live. */
#define WITH_WS(ws, call)                                                                          \
    ((ws).dry = 1,                                                                                 \
     (call) ? -1 : (vae_ws_commit(&(ws), err, sizeof err) ? -1 : ((ws).dry = 0, (call))))

/* ---- double references ----------------------------------------------------------------------- */

/* out[co][t][y][x] = b[co] + sum w[co][ci][dt][dy][dx] in[ci][t*st+dt][y*sh+dy][x*sw+dx] over an
 * input that is already padded; w official layout [cout][cin][kt][kh][kw]. */
static void naive_conv(const double *in, int cin, int Ti, int Hi, int Wi, const float *w,
                       const float *b, int cout, int kt, int kh, int kw, int st, int sh, int sw,
                       double *out, int To, int Ho, int Wo) {
    for (int co = 0; co < cout; co++)
        for (int t = 0; t < To; t++)
            for (int y = 0; y < Ho; y++)
                for (int x = 0; x < Wo; x++) {
                    double s = b ? b[co] : 0.0;
                    for (int ci = 0; ci < cin; ci++)
                        for (int dt = 0; dt < kt; dt++)
                            for (int dy = 0; dy < kh; dy++)
                                for (int dx = 0; dx < kw; dx++)
                                    s += (double)w[(((size_t)co * cin + ci) * kt + dt) * kh * kw +
                                                   (size_t)dy * kw + dx] *
                                         in[(((size_t)ci * Ti + t * st + dt) * Hi + y * sh + dy) *
                                                Wi +
                                            x * sw + dx];
                    out[(((size_t)co * To + t) * Ho + y) * Wo + x] = s;
                }
}

/* [C][nh + T][H + top + bot][W + left + right]: history frames (float, or zeros when hist is
 * NULL) then x (double), zero spatial border. */
static double *pad_input(const float *hist, int nh, const double *x, int C, int T, int H, int W,
                         int top, int bot, int left, int right) {
    const int Tf = nh + T, Hp = H + top + bot, Wp = W + left + right;
    double *o = dalloc((size_t)C * Tf * Hp * Wp);
    for (int c = 0; c < C; c++)
        for (int f = 0; f < Tf; f++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    double v;
                    if (f < nh)
                        v = hist ? hist[(((size_t)c * nh + f) * H + y) * W + xx] : 0.0;
                    else
                        v = x[(((size_t)c * T + f - nh) * H + y) * W + xx];
                    o[(((size_t)c * Tf + f) * Hp + y + top) * Wp + xx + left] = v;
                }
    return o;
}

static double *to_d(const float *x, size_t n) {
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static float *packed(const float *w, int cout, int cin, int taps) {
    float *p = malloc((size_t)cout * cin * taps * sizeof *p);
    vae_pack_taps(w, cout, cin, taps, p);
    return p;
}

static double silu_d(double v) {
    return v / (1.0 + exp(-v));
}

/* y = x / max(||x||, 1e-12) * sqrt(C) * g over channels of [C][npos] (then silu). */
static void ref_rms(const double *x, int C, size_t npos, const float *g, int silu, double *y) {
    for (size_t j = 0; j < npos; j++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += x[(size_t)c * npos + j] * x[(size_t)c * npos + j];
        double inv = sqrt((double)C) / fmax(sqrt(s), 1e-12);
        for (int c = 0; c < C; c++) {
            double v = x[(size_t)c * npos + j] * inv * g[c];
            y[(size_t)c * npos + j] = silu ? silu_d(v) : v;
        }
    }
}

/* Causal 3x3x3 conv in double with an explicit float history [cin][2][H][W] (NULL: zeros). */
static void ref_conv3(const float *hist, const double *x, int cin, int T, int H, int W,
                      const float *w, const float *b, int cout, double *y) {
    double *p = pad_input(hist, 2, x, cin, T, H, W, 1, 1, 1, 1);
    naive_conv(p, cin, T + 2, H + 2, W + 2, w, b, cout, 3, 3, 3, 1, 1, 1, y, T, H, W);
    free(p);
}

/* ---- 1. convolutions ------------------------------------------------------------------------- */

/* Shapes: the narrow layers (cout <= 32) take the direct kernel on AVX2 machines, whose register
 * tiles are 4 channels x 16 positions: the wide shapes below have full tiles, a partial channel
 * block and a position tail; cout = 40 takes the im2col + GEMM path. */
static void test_conv3d_dims(int cin, int cout, int H, int W, int T, int with_slot, int with_res) {
    const size_t HW = (size_t)H * W;
    float *x = rnd((size_t)cin * T * HW, 11 + T, 1.0f);
    float *w = rnd((size_t)cout * cin * 27, 12, 0.3f), *b = rnd(cout, 13, 0.5f);
    float *hist = rnd((size_t)cin * 2 * HW, 14, 1.0f);
    float *res = rnd((size_t)cout * T * HW, 15, 1.0f);
    float *wp = packed(w, cout, cin, 27), *y = malloc((size_t)cout * T * HW * sizeof *y);
    float *sd = malloc((size_t)cin * 2 * HW * sizeof *sd);
    memcpy(sd, hist, (size_t)cin * 2 * HW * sizeof *sd);
    vae_slot slot = {sd, cin, 2, H, W};
    vae_ws ws = {0};
    /* the dry pass must not touch the slot: run it on a copy-free path, then check the slot */
    int rc =
        WITH_WS(ws, vae_conv3d(&ws, x, VAE_PREP_PLAIN, NULL, cin, T, H, W, with_slot ? &slot : NULL,
                               wp, b, cout, with_res ? res : NULL, y, err, sizeof err));
    double *xd = to_d(x, (size_t)cin * T * HW), *ref = dalloc((size_t)cout * T * HW);
    ref_conv3(with_slot ? hist : NULL, xd, cin, T, H, W, w, b, cout, ref);
    if (with_res)
        for (size_t i = 0; i < (size_t)cout * T * HW; i++) ref[i] += res[i];
    double e = tu_rel_err_d(y, ref, (size_t)cout * T * HW);
    tu_check(!rc && e <= F32_BOUND,
             "CausalConv3d 3x3x3 %d->%d, T=%d, %dx%d, history %s%s vs naive double: rel err %.2e "
             "(bound 1e-5)",
             cin, cout, T, H, W, with_slot ? "from slot" : "zeros", with_res ? ", + residual" : "",
             e);
    if (with_slot) { /* slot = last 2 frames of history ++ x */
        int ok = 1;
        for (int c = 0; c < cin; c++)
            for (int f = 0; f < 2; f++) {
                int g = T + f; /* index in history ++ x */
                const float *src =
                    g < 2 ? hist + ((size_t)c * 2 + g) * HW : x + ((size_t)c * T + g - 2) * HW;
                ok &= memcmp(sd + ((size_t)c * 2 + f) * HW, src, HW * sizeof(float)) == 0;
            }
        tu_check(
            ok, "CausalConv3d T=%d: slot holds the last 2 frames of history ++ input (bitwise)", T);
    }
    vae_ws_free(&ws);
    free(x), free(w), free(b), free(hist), free(res), free(wp), free(y), free(sd), free(xd),
        free(ref);
}

static void test_conv3d(int T, int with_slot, int with_res) {
    test_conv3d_dims(5, 7, 5, 6, T, with_slot, with_res);
}

static void test_conv1x1(void) {
    const int cin = 6, cout = 9;
    const size_t n = 3 * 4 * 5;
    float *x = rnd(cin * n, 21, 1.0f), *w = rnd((size_t)cout * cin, 22, 0.4f),
          *b = rnd(cout, 23, 0.5f), *y = malloc(cout * n * sizeof *y);
    vae_conv1x1(x, cin, n, w, b, cout, y);
    double *xd = to_d(x, cin * n), *ref = dalloc(cout * n);
    naive_conv(xd, cin, 3, 4, 5, w, b, cout, 1, 1, 1, 1, 1, 1, ref, 3, 4, 5);
    double e = tu_rel_err_d(y, ref, cout * n);
    tu_check(e <= F32_BOUND, "conv 1x1x1 %d->%d vs naive double: rel err %.2e", cin, cout, e);
    free(x), free(w), free(b), free(y), free(xd), free(ref);
}

/* Downsample conv: pad right/bottom by one zero, 3x3 stride 2, no other padding. */
static void test_down_conv(int H, int W) {
    const int C = 6, T = 2, Ho = (H - 2) / 2 + 1, Wo = (W - 2) / 2 + 1;
    float *x = rnd((size_t)C * T * H * W, 31, 1.0f), *w = rnd((size_t)C * C * 9, 32, 0.3f),
          *b = rnd(C, 33, 0.5f), *y = malloc((size_t)C * T * Ho * Wo * sizeof *y);
    vae_item it = {
        .kind = VAE_ITEM_DOWN2D, .cin = C, .cout = C, .rs_w = packed(w, C, C, 9), .rs_b = b};
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_down_conv(&ws, &it, x, T, H, W, y, err, sizeof err));
    double *xd = to_d(x, (size_t)C * T * H * W);
    double *p = pad_input(NULL, 0, xd, C, T, H, W, 0, 1, 0, 1);
    double *ref = dalloc((size_t)C * T * Ho * Wo);
    naive_conv(p, C, T, H + 1, W + 1, w, b, C, 1, 3, 3, 1, 2, 2, ref, T, Ho, Wo);
    double e = tu_rel_err_d(y, ref, (size_t)C * T * Ho * Wo);
    tu_check(!rc && e <= F32_BOUND,
             "downsample conv 3x3 stride 2, pad right/bottom, %dx%d -> %dx%d vs naive double: rel "
             "err %.2e",
             H, W, Ho, Wo, e);
    vae_ws_free(&ws);
    free(x), free(w), free(b), free(y), free(it.rs_w), free(xd), free(p), free(ref);
}

/* Nearest x2 then 3x3 pad 1, C -> C/2. */
static void test_up_conv(void) {
    const int C = 6, Co = 3, T = 2, H = 3, W = 4;
    float *x = rnd((size_t)C * T * H * W, 41, 1.0f), *w = rnd((size_t)Co * C * 9, 42, 0.3f),
          *b = rnd(Co, 43, 0.5f), *y = malloc((size_t)Co * T * 4 * H * W * sizeof *y);
    vae_item it = {
        .kind = VAE_ITEM_UP2D, .cin = C, .cout = Co, .rs_w = packed(w, Co, C, 9), .rs_b = b};
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_up_conv(&ws, &it, x, T, H, W, y, err, sizeof err));
    double *up = dalloc((size_t)C * T * 4 * H * W);
    for (int ct = 0; ct < C * T; ct++)
        for (int r = 0; r < 2 * H; r++)
            for (int q = 0; q < 2 * W; q++)
                up[((size_t)ct * 2 * H + r) * 2 * W + q] = x[((size_t)ct * H + r / 2) * W + q / 2];
    double *p = pad_input(NULL, 0, up, C, T, 2 * H, 2 * W, 1, 1, 1, 1);
    double *ref = dalloc((size_t)Co * T * 4 * H * W);
    naive_conv(p, C, T, 2 * H + 2, 2 * W + 2, w, b, Co, 1, 3, 3, 1, 1, 1, ref, T, 2 * H, 2 * W);
    double e = tu_rel_err_d(y, ref, (size_t)Co * T * 4 * H * W);
    tu_check(!rc && e <= F32_BOUND,
             "upsample nearest x2 + conv 3x3 %d->%d, %dx%d -> %dx%d vs naive double: rel err %.2e",
             C, Co, H, W, 2 * H, 2 * W, e);
    vae_ws_free(&ws);
    free(x), free(w), free(b), free(y), free(it.rs_w), free(up), free(p), free(ref);
}

/* Decoder time_conv (3,1,1) C -> 2C, causal, phases interleaved; with `first` frame 0 bypasses. */
static void test_time_up(int first) {
    const int C = 4, T = 3, H = 2, W = 3;
    const size_t HW = (size_t)H * W;
    const int Tp = T - first, Tout = first + 2 * Tp;
    float *x = rnd((size_t)C * T * HW, 51 + first, 1.0f), *w = rnd((size_t)2 * C * C * 3, 52, 0.4f),
          *b = rnd(2 * C, 53, 0.5f), *hist = rnd((size_t)C * 2 * HW, 54, 1.0f);
    float *sd = malloc((size_t)C * 2 * HW * sizeof *sd),
          *y = malloc((size_t)C * Tout * HW * sizeof *y);
    memcpy(sd, hist, (size_t)C * 2 * HW * sizeof *sd);
    vae_slot slot = {sd, C, 2, H, W};
    vae_item it = {
        .kind = VAE_ITEM_UP3D, .cin = C, .cout = C / 2, .tc_w = packed(w, 2 * C, C, 3), .tc_b = b};
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_time_up(&ws, &it, x, T, H, W, first, &slot, y, err, sizeof err));
    /* reference: history ++ x[first..], conv (3,1,1) over time, then interleave */
    double *xs = dalloc((size_t)C * Tp * HW);
    for (int c = 0; c < C; c++)
        for (int t = 0; t < Tp; t++)
            for (size_t i = 0; i < HW; i++)
                xs[((size_t)c * Tp + t) * HW + i] = x[((size_t)c * T + t + first) * HW + i];
    double *p = pad_input(hist, 2, xs, C, Tp, H, W, 0, 0, 0, 0);
    double *yc = dalloc((size_t)2 * C * Tp * HW), *ref = dalloc((size_t)C * Tout * HW);
    naive_conv(p, C, Tp + 2, H, W, w, b, 2 * C, 3, 1, 1, 1, 1, 1, yc, Tp, H, W);
    for (int c = 0; c < C; c++) {
        if (first)
            for (size_t i = 0; i < HW; i++)
                ref[(size_t)c * Tout * HW + i] = x[(size_t)c * T * HW + i];
        for (int j = 0; j < Tp; j++)
            for (int ph = 0; ph < 2; ph++)
                for (size_t i = 0; i < HW; i++)
                    ref[((size_t)c * Tout + first + 2 * j + ph) * HW + i] =
                        yc[(((size_t)ph * C + c) * Tp + j) * HW + i];
    }
    double e = tu_rel_err_d(y, ref, (size_t)C * Tout * HW);
    tu_check(!rc && e <= F32_BOUND,
             "upsample3d time_conv (3,1,1) %d->%d, %d frames -> %d%s vs naive double: rel err "
             "%.2e",
             C, 2 * C, T, Tout, first ? " (first: frame 0 passes through)" : "", e);
    /* slot = last 2 frames of history ++ x[first..] */
    double slot_err = 0;
    for (int c = 0; c < C; c++)
        for (int f = 0; f < 2; f++)
            for (size_t i = 0; i < HW; i++)
                slot_err = fmax(slot_err, fabs(sd[((size_t)c * 2 + f) * HW + i] -
                                               p[((size_t)c * (Tp + 2) + Tp + f) * HW + i]));
    tu_check(slot_err == 0, "upsample3d time_conv%s: slot = last 2 time_conv inputs (max |d| %g)",
             first ? " (first)" : "", slot_err);
    vae_ws_free(&ws);
    free(x), free(w), free(b), free(hist), free(sd), free(y), free(it.tc_w), free(xs), free(p),
        free(yc), free(ref);
}

/* Encoder time_conv (3,1,1) stride 2 with a one-frame cache. */
static void test_time_down(void) {
    const int C = 4, H = 2, W = 3;
    const size_t HW = (size_t)H * W;
    float *w = rnd((size_t)C * C * 3, 61, 0.4f), *b = rnd(C, 62, 0.5f);
    float *x0 = rnd((size_t)C * HW, 63, 1.0f), *x1 = rnd((size_t)C * 4 * HW, 64, 1.0f);
    float *sd = calloc((size_t)C * HW, sizeof *sd), *y0 = malloc((size_t)C * HW * sizeof *y0),
          *y1 = malloc((size_t)C * 2 * HW * sizeof *y1);
    vae_slot slot = {sd, C, 1, H, W};
    vae_item it = {
        .kind = VAE_ITEM_DOWN3D, .cin = C, .cout = C, .tc_w = packed(w, C, C, 3), .tc_b = b};
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_time_down(&ws, &it, x0, 1, H, W, 1, &slot, y0, err, sizeof err));
    tu_check(!rc && !memcmp(y0, x0, (size_t)C * HW * 4) && !memcmp(sd, x0, (size_t)C * HW * 4),
             "downsample3d time_conv, first chunk: frame 0 passes through and becomes the cache");
    rc = WITH_WS(ws, vae_time_down(&ws, &it, x1, 4, H, W, 0, &slot, y1, err, sizeof err));
    /* full sequence x0 x1..x4: out_j = sum_t W_t x_{2j-2+t}, j = 1, 2 */
    double *seq = dalloc((size_t)C * 5 * HW), *ref = dalloc((size_t)C * 2 * HW);
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < HW; i++) {
            seq[(size_t)c * 5 * HW + i] = x0[(size_t)c * HW + i];
            for (int t = 0; t < 4; t++)
                seq[((size_t)c * 5 + 1 + t) * HW + i] = x1[((size_t)c * 4 + t) * HW + i];
        }
    naive_conv(seq, C, 5, H, W, w, b, C, 3, 1, 1, 2, 1, 1, ref, 2, H, W);
    double e = tu_rel_err_d(y1, ref, (size_t)C * 2 * HW);
    int cache_ok = 1;
    for (int c = 0; c < C; c++)
        cache_ok &= !memcmp(sd + (size_t)c * HW, x1 + ((size_t)c * 4 + 3) * HW, HW * 4);
    tu_check(!rc && e <= F32_BOUND && cache_ok,
             "downsample3d time_conv stride 2, cache 1 frame ++ 4 frames -> 2 vs naive double: "
             "rel err %.2e, cache = last frame: %s",
             e, cache_ok ? "yes" : "no");
    vae_ws_free(&ws);
    free(w), free(b), free(x0), free(x1), free(sd), free(y0), free(y1), free(it.tc_w), free(seq),
        free(ref);
}

/* ---- 2. norm, attention, residual block ------------------------------------------------------ */

static void test_rms(void) {
    const int C = 12;
    const size_t n = 150;
    float *x = rnd(C * n, 71, 2.0f), *g = rnd(C, 72, 0.5f), *y = malloc(C * n * sizeof *y);
    for (int c = 0; c < C; c++) g[c] += 1.0f, x[(size_t)c * n + 37] = 0.0f; /* one zero vector */
    double *xd = to_d(x, C * n), *ref = dalloc(C * n);
    for (int silu = 0; silu < 2; silu++) {
        vae_rms_norm(x, C, n, g, silu, y);
        ref_rms(xd, C, n, g, silu, ref);
        double e = tu_rel_err_d(y, ref, C * n);
        int zero_ok = 1;
        for (int c = 0; c < C; c++) zero_ok &= y[(size_t)c * n + 37] == 0.0f;
        tu_check(e <= F32_BOUND && zero_ok,
                 "RMS_norm%s over %d channels vs double: rel err %.2e; all-zero position -> 0 "
                 "(not NaN): %s",
                 silu ? " + SiLU" : "", C, e, zero_ok ? "yes" : "no");
    }
    free(x), free(g), free(y), free(xd), free(ref);
}

/* Attention block of 2.5 in double on x [C][T][N], written to out (may not alias x). */
static void ref_attention(const double *x, int C, int T, int N, const vae_item *it, double *out) {
    double *u = dalloc((size_t)C * N), *qkv = dalloc((size_t)3 * C * N),
           *xt = dalloc((size_t)C * N), *o = dalloc((size_t)C * N), *s = dalloc(N);
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++)
            for (int j = 0; j < N; j++) xt[(size_t)c * N + j] = x[((size_t)c * T + t) * N + j];
        ref_rms(xt, C, N, it->g, 0, u);
        naive_conv(u, C, 1, 1, N, it->qkv_w, it->qkv_b, 3 * C, 1, 1, 1, 1, 1, 1, qkv, 1, 1, N);
        for (int i = 0; i < N; i++) { /* query token i */
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < N; j++) {
                double d = 0;
                for (int c = 0; c < C; c++)
                    d += qkv[(size_t)c * N + i] * qkv[(size_t)(C + c) * N + j];
                s[j] = d / sqrt((double)C);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < N; j++) sum += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < C; c++) {
                double a = 0;
                for (int j = 0; j < N; j++) a += s[j] / sum * qkv[(size_t)(2 * C + c) * N + j];
                o[(size_t)c * N + i] = a;
            }
        }
        naive_conv(o, C, 1, 1, N, it->proj_w, it->proj_b, C, 1, 1, 1, 1, 1, 1, u, 1, 1, N);
        for (int c = 0; c < C; c++)
            for (int j = 0; j < N; j++)
                out[((size_t)c * T + t) * N + j] = u[(size_t)c * N + j] + xt[(size_t)c * N + j];
    }
    free(u), free(qkv), free(xt), free(o), free(s);
}

static void test_attention(void) {
    const int C = 8, T = 2, H = 3, W = 4, N = H * W;
    const size_t n = (size_t)C * T * N;
    float *x = rnd(n, 81, 1.0f), *g = rnd(C, 82, 0.1f);
    for (int c = 0; c < C; c++) g[c] += 1.0f;
    vae_item it = {.kind = VAE_ITEM_ATTN,
                   .cin = C,
                   .cout = C,
                   .g = g,
                   .qkv_w = rnd((size_t)3 * C * C, 83, 0.5f),
                   .qkv_b = rnd(3 * C, 84, 0.1f),
                   .proj_w = rnd((size_t)C * C, 85, 0.4f),
                   .proj_b = rnd(C, 86, 0.1f)};
    double *xd = to_d(x, n), *ref = dalloc(n);
    ref_attention(xd, C, T, N, &it, ref);
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_attention(&ws, &it, x, T, H, W, err, sizeof err));
    double e = tu_rel_err_d(x, ref, n);
    tu_check(!rc && e <= F32_BOUND,
             "attention block (C=%d single head, %d frames of %dx%d tokens, + identity) vs double: "
             "rel err %.2e",
             C, T, H, W, e);
    vae_ws_free(&ws);
    free(x), free(g), free(it.qkv_w), free(it.qkv_b), free(it.proj_w), free(it.proj_b), free(xd),
        free(ref);
}

static void test_resblock(int cin, int cout) {
    const int T = 3, H = 4, W = 5;
    const size_t HW = (size_t)H * W, nin = (size_t)cin * T * HW, nout = (size_t)cout * T * HW;
    float *g1 = rnd(cin, 91, 0.1f), *g2 = rnd(cout, 92, 0.1f);
    for (int c = 0; c < cin; c++) g1[c] += 1.0f;
    for (int c = 0; c < cout; c++) g2[c] += 1.0f;
    float *w1 = rnd((size_t)cout * cin * 27, 93, 1.0f / sqrtf(27.0f * cin));
    float *w2 = rnd((size_t)cout * cout * 27, 94, 1.0f / sqrtf(27.0f * cout));
    float *scw = rnd((size_t)cout * cin, 95, 0.4f);
    vae_item it = {.kind = VAE_ITEM_RB,
                   .cin = cin,
                   .cout = cout,
                   .g1 = g1,
                   .g2 = g2,
                   .w1 = packed(w1, cout, cin, 27),
                   .b1 = rnd(cout, 96, 0.05f),
                   .w2 = packed(w2, cout, cout, 27),
                   .b2 = rnd(cout, 97, 0.05f),
                   .sc_w = cin != cout ? scw : NULL,
                   .sc_b = cin != cout ? rnd(cout, 98, 0.05f) : NULL};
    float *ha = rnd((size_t)cin * 2 * HW, 99, 1.0f), *hb = rnd((size_t)cout * 2 * HW, 100, 1.0f);
    float *sa_d = malloc((size_t)cin * 2 * HW * 4), *sb_d = malloc((size_t)cout * 2 * HW * 4);
    memcpy(sa_d, ha, (size_t)cin * 2 * HW * 4), memcpy(sb_d, hb, (size_t)cout * 2 * HW * 4);
    vae_slot sa = {sa_d, cin, 2, H, W}, sb = {sb_d, cout, 2, H, W};
    size_t big = nin > nout ? nin : nout;
    float *x = malloc(big * 4), *tmp = malloc(nout * 4), *sc = malloc(nout * 4);
    tu_fill(x, nin, 101, 1.5f);
    double *xd = to_d(x, nin), *a = dalloc(nin), *c1 = dalloc(nout), *a2 = dalloc(nout),
           *ref = dalloc(nout);
    /* reference: h = shortcut(x); y = conv1(silu(rms x)); y = conv2(silu(rms y)) + h */
    ref_rms(xd, cin, T * HW, g1, 1, a);
    ref_conv3(ha, a, cin, T, H, W, w1, it.b1, cout, c1);
    ref_rms(c1, cout, T * HW, g2, 1, a2);
    ref_conv3(hb, a2, cout, T, H, W, w2, it.b2, cout, ref);
    for (int o = 0; o < cout; o++)
        for (size_t i = 0; i < T * HW; i++) {
            double h;
            if (cin == cout) {
                h = xd[(size_t)o * T * HW + i];
            } else {
                h = it.sc_b[o];
                for (int ci = 0; ci < cin; ci++)
                    h += (double)scw[(size_t)o * cin + ci] * xd[(size_t)ci * T * HW + i];
            }
            ref[(size_t)o * T * HW + i] += h;
        }
    vae_ws ws = {0};
    int rc = WITH_WS(ws, vae_resblock(&ws, &it, x, T, H, W, &sa, &sb, tmp, sc, x, err, sizeof err));
    double e = tu_rel_err_d(x, ref, nout);
    /* slot A holds conv1's input = silu(rms(x)); slot B conv2's input */
    double ea = 0, eb = 0;
    for (int c = 0; c < cin; c++)
        for (int f = 0; f < 2; f++)
            for (size_t i = 0; i < HW; i++)
                ea = fmax(ea, fabs(sa_d[((size_t)c * 2 + f) * HW + i] -
                                   a[((size_t)c * T + T - 2 + f) * HW + i]));
    for (int c = 0; c < cout; c++)
        for (int f = 0; f < 2; f++)
            for (size_t i = 0; i < HW; i++)
                eb = fmax(eb, fabs(sb_d[((size_t)c * 2 + f) * HW + i] -
                                   a2[((size_t)c * T + T - 2 + f) * HW + i]));
    tu_check(!rc && e <= F32_BOUND,
             "residual block %d->%d%s, %d frames with cached history vs double: rel err %.2e", cin,
             cout, cin != cout ? " (1x1x1 shortcut)" : "", T, e);
    tu_check(ea < 1e-5 && eb < 1e-5,
             "residual block slots hold the convs' inputs (post norm+SiLU): max |d| A %.1e, B %.1e",
             ea, eb);
    vae_ws_free(&ws);
    free(g1), free(g2), free(w1), free(w2), free(scw), free(it.w1), free(it.b1), free(it.w2),
        free(it.b2), free(it.sc_b), free(ha), free(hb), free(sa_d), free(sb_d), free(x), free(tmp),
        free(sc), free(xd), free(a), free(c1), free(a2), free(ref);
}

/* ---- 3. streaming decode --------------------------------------------------------------------- */

/* Latents k0 .. k0+n-1 of a [16][N][hw] tensor. */
static float *lat_slice(const float *lat, int N, size_t hw, int k0, int n) {
    float *o = malloc((size_t)16 * n * hw * sizeof *o);
    for (int c = 0; c < 16; c++)
        memcpy(o + (size_t)c * n * hw, lat + ((size_t)c * N + k0) * hw, (size_t)n * hw * 4);
    return o;
}

/* Appends frames [3][n][HW] at frame offset f0 of a [3][total][HW] tensor. */
static void put_frames(float *all, int total, const float *f, int n, int f0, size_t HW) {
    for (int c = 0; c < 3; c++)
        memcpy(all + ((size_t)c * total + f0) * HW, f + (size_t)c * n * HW, (size_t)n * HW * 4);
}

/* Decodes N latents in calls of `per` latents on a fresh decoder; returns the frame count. */
static int decode_in_calls(const vae_weights *w, const float *lat, int N, int h, int wd, int per,
                           float *out, int total, int *counts) {
    vae_decoder *d = NULL;
    if (vae_decoder_create(w, h, wd, &d, err, sizeof err)) return -1;
    const size_t HW = (size_t)64 * h * wd, hw = (size_t)h * wd;
    float *buf = malloc((size_t)3 * (4 * per + 1) * HW * sizeof *buf);
    int f0 = 0, calls = 0;
    for (int k = 0; k < N; k += per, calls++) {
        float *sl = lat_slice(lat, N, hw, k, per);
        int nf = 0, want = vae_decoder_frames_out(d, per);
        int rc = vae_decode(d, sl, per, buf, &nf, err, sizeof err);
        free(sl);
        if (rc || nf != want || f0 + nf > total) {
            f0 = -1;
            break;
        }
        if (counts) counts[calls] = nf;
        put_frames(out, total, buf, nf, f0, HW);
        f0 += nf;
    }
    free(buf);
    vae_decoder_destroy(d);
    return f0;
}

static void test_stream_decode(const vae_weights *w) {
    const int h = 4, wd = 6, N = 9, total = 1 + 4 * (N - 1);
    const size_t hw = (size_t)h * wd, HW = 64 * hw, nf = (size_t)3 * total * HW;
    float *lat = rnd((size_t)16 * N * hw, 201, 1.7f);
    float *whole = malloc(nf * 4), *blocks = malloc(nf * 4), *single = malloc(nf * 4);
    int counts[9] = {0};
    int n_whole = decode_in_calls(w, lat, N, h, wd, N, whole, total, NULL);
    int n_blocks = decode_in_calls(w, lat, N, h, wd, 3, blocks, total, counts);
    tu_check(n_blocks == total && counts[0] == 9 && counts[1] == 12 && counts[2] == 12,
             "streaming decode, tiny %dx%d latents: 3 blocks of 3 latents give %d, %d, %d frames "
             "(want 9, 12, 12)%s%s",
             h, wd, counts[0], counts[1], counts[2], n_blocks < 0 ? ": " : "",
             n_blocks < 0 ? err : "");
    int n_single = decode_in_calls(w, lat, N, h, wd, 1, single, total, counts);
    tu_check(n_whole == total && n_single == total && counts[0] == 1 && counts[1] == 4,
             "one call of %d latents gives %d frames, %d calls of 1 latent give %d (1, 4, 4, ...)",
             N, n_whole, N, n_single);
    if (n_whole != total || n_blocks != total || n_single != total) goto out;
    double e1 = tu_max_abs(blocks, whole, nf), r1 = tu_rel_err(blocks, whole, nf);
    double e2 = tu_max_abs(single, whole, nf), r2 = tu_rel_err(single, whole, nf);
    /* different GEMM shapes -> float32 summation order only; outputs are O(1) */
    tu_check(e1 <= 1e-5 && r1 <= 1e-5,
             "decode 3+3+3 latents == 9 latents in one call: max |d| %.2e, rel %.2e (bound 1e-5)",
             e1, r1);
    tu_check(e2 <= 1e-5 && r2 <= 1e-5,
             "decode 1 latent per call == 9 latents in one call: max |d| %.2e, rel %.2e (bound "
             "1e-5)",
             e2, r2);
    double mn = 1, mx = -1, ss = 0;
    size_t clamped = 0;
    for (size_t i = 0; i < nf; i++) {
        mn = fmin(mn, whole[i]), mx = fmax(mx, whole[i]), ss += (double)whole[i] * whole[i];
        clamped += fabsf(whole[i]) == 1.0f;
    }
    tu_check(mn >= -1 && mx <= 1 && sqrt(ss / (double)nf) > 0.05 && clamped < nf / 2,
             "decoded frames in [-1, 1]: min %.3f max %.3f rms %.3f, %.1f%% at the clamp", mn, mx,
             sqrt(ss / (double)nf), 100.0 * (double)clamped / (double)nf);
    /* reset: the same first block again, bitwise */
    vae_decoder *d = NULL;
    vae_decoder_create(w, h, wd, &d, err, sizeof err);
    float *a = malloc((size_t)3 * 12 * HW * 4), *b = malloc((size_t)3 * 12 * HW * 4);
    float *sl = lat_slice(lat, N, hw, 0, 3), *sl2 = lat_slice(lat, N, hw, 3, 3);
    int na = 0, nb = 0;
    vae_decode(d, sl, 3, a, &na, err, sizeof err);
    vae_decode(d, sl2, 3, b, &nb, err, sizeof err);
    vae_decoder_reset(d);
    int nr = vae_decoder_frames_out(d, 3);
    vae_decode(d, sl, 3, b, &nb, err, sizeof err);
    tu_check(nr == 9 && nb == 9 && !memcmp(a, b, (size_t)3 * 9 * HW * 4),
             "vae_decoder_reset: first block decodes again to 9 bitwise-equal frames");
    free(a), free(b), free(sl), free(sl2);
    /* timing of one steady block (not a benchmark: the shared test machine is noisy) */
    double t0 = now_s();
    float *buf = malloc((size_t)3 * 12 * HW * 4);
    sl = lat_slice(lat, N, hw, 3, 3);
    int rc = vae_decode(d, sl, 3, buf, &nb, err, sizeof err);
    double t1 = now_s();
    tu_check(!rc && nb == 12,
             "steady tiny decode block, 3 latents %dx%d -> %d frames %dx%d; timing (not a "
             "benchmark, shared machine): %.1f ms",
             h, wd, nb, 8 * h, 8 * wd, 1e3 * (t1 - t0));
    free(buf), free(sl);
    vae_decoder_destroy(d);
out:
    free(lat), free(whole), free(blocks), free(single);
}

/* ---- 4. streaming encode --------------------------------------------------------------------- */

static float *frame_slice(const float *v, int N, size_t HW, int f0, int n) {
    float *o = malloc((size_t)3 * n * HW * 4);
    for (int c = 0; c < 3; c++)
        memcpy(o + (size_t)c * n * HW, v + ((size_t)c * N + f0) * HW, (size_t)n * HW * 4);
    return o;
}

/* Encodes frames in calls of the given sizes; latents land at [16][total_lat][hw]. */
static int encode_calls(const vae_weights *w, const float *video, int N, int H, int W,
                        const int *sizes, int ncalls, float *lat, int total_lat) {
    vae_encoder *e = NULL;
    if (vae_encoder_create(w, H, W, &e, err, sizeof err)) return -1;
    const size_t HW = (size_t)H * W, hw = HW / 64;
    float *buf = malloc((size_t)16 * total_lat * hw * 4);
    int f0 = 0, k0 = 0;
    for (int i = 0; i < ncalls; i++) {
        float *fr = frame_slice(video, N, HW, f0, sizes[i]);
        int nl = 0;
        int rc = vae_encode(e, fr, sizes[i], buf, &nl, err, sizeof err);
        free(fr);
        if (rc || nl != (i == 0 ? 1 : sizes[i] / 4) || k0 + nl > total_lat) {
            k0 = -1;
            break;
        }
        for (int c = 0; c < 16; c++)
            memcpy(lat + ((size_t)c * total_lat + k0) * hw, buf + (size_t)c * nl * hw,
                   (size_t)nl * hw * 4);
        f0 += sizes[i], k0 += nl;
    }
    free(buf);
    vae_encoder_destroy(e);
    return k0;
}

static void test_stream_encode(const vae_weights *w) {
    const int H = 32, W = 48, N = 13, L = 4;
    const size_t HW = (size_t)H * W, hw = HW / 64, nl = (size_t)16 * L * hw;
    float *video = rnd((size_t)3 * N * HW, 401, 1.0f);
    float *a = malloc(nl * 4), *b = malloc(nl * 4);
    const int chunks[] = {1, 4, 4, 4}, two[] = {1, 12};
    int la = encode_calls(w, video, N, H, W, chunks, 4, a, L);
    int lb = encode_calls(w, video, N, H, W, two, 2, b, L);
    tu_check(la == L && lb == L,
             "streaming encode %dx%d, %d frames: calls of 1,4,4,4 and 1,12 give %d and %d latents "
             "(want %d) of %dx%d%s%s",
             H, W, N, la, lb, L, H / 8, W / 8, la < 0 || lb < 0 ? ": " : "",
             la < 0 || lb < 0 ? err : "");
    if (la == L && lb == L) {
        double e = tu_max_abs(a, b, nl), r = tu_rel_err(a, b, nl), ss = 0;
        for (size_t i = 0; i < nl; i++) ss += (double)b[i] * b[i];
        tu_check(r <= 1e-5 && sqrt(ss / (double)nl) > 0.01,
                 "encode 1+4+4+4 frames == 1+12 frames: max |d| %.2e, rel %.2e (bound 1e-5); "
                 "latent rms %.3f",
                 e, r, sqrt(ss / (double)nl));
        /* encoder -> decoder: 4 latents decode to 1 + 4*3 = 13 frames of 32x48 */
        vae_decoder *d = NULL;
        float *fr = malloc((size_t)3 * N * HW * 4);
        int nf = 0, rc = vae_decoder_create(w, H / 8, W / 8, &d, err, sizeof err);
        int want = rc ? -1 : vae_decoder_frames_out(d, L);
        if (!rc) rc = vae_decode(d, a, L, fr, &nf, err, sizeof err);
        tu_check(!rc && nf == N && want == N,
                 "encoder -> decoder round trip of a 1+4k video: %d frames -> %d latents -> %d "
                 "frames of %dx%d",
                 N, L, nf, H, W);
        free(fr);
        vae_decoder_destroy(d);
    }
    /* argument checks */
    vae_encoder *e = NULL;
    vae_encoder_create(w, H, W, &e, err, sizeof err);
    int n = 0, rc1 = vae_encode(e, video, 4, a, &n, err, sizeof err);
    tu_check(rc1 < 0 && strstr(err, "exactly 1 frame"),
             "first encode call with 4 frames refused: %s", err);
    vae_encode(e, video, 1, a, &n, err, sizeof err);
    int rc2 = vae_encode(e, video, 3, a, &n, err, sizeof err);
    tu_check(rc2 < 0 && strstr(err, "multiple of 4"), "later encode call with 3 frames refused: %s",
             err);
    vae_encoder_destroy(e);
    int rc3 = vae_encoder_create(w, 36, 48, &e, err, sizeof err);
    tu_check(rc3 < 0 && !e, "encoder for a 36x48 frame (not a multiple of 8) refused: %s", err);
    free(video), free(a), free(b);
}

/* ---- whole-network reference ------------------------------------------------------------------
 * The full-sequence formulation of model-vae-clip.md 2.4-2.8 in double, written from the spec
 * with naive convolutions and no caches: causal convs see two zero frames in front of the whole
 * sequence; upsample3d passes frame 0 through and runs time_conv over 0, 0, x1, x2, ...;
 * downsample3d passes frame 0 through and convolves frames 2j-2 .. 2j. Weights are read back in
 * the official layout (vae_param_read), independent of the engine's packing. */

typedef struct dten {
    double *d;
    int C, T, H, W;
} dten;

static dten dnew(int C, int T, int H, int W) {
    dten t = {dalloc((size_t)C * T * H * W), C, T, H, W};
    return t;
}

static size_t dsize(dten t) {
    return (size_t)t.C * t.T * t.H * t.W;
}

typedef struct offw {
    const float *stored;
    float *official;
} offw;

typedef struct official_set {
    offw e[256];
    int n;
} official_set;

static int official_visitor(void *user, const vae_param *p) {
    official_set *o = user;
    if (!*p->slot || o->n == 256) return 0;
    o->e[o->n].stored = *p->slot;
    o->e[o->n].official = malloc((size_t)p->numel * 4);
    vae_param_read(p, o->e[o->n++].official);
    return 0;
}

static const float *official(const official_set *o, const float *stored) {
    for (int i = 0; i < o->n; i++)
        if (o->e[i].stored == stored) return o->e[i].official;
    return NULL;
}

/* Causal 3x3x3 conv over the whole sequence (zero history). */
static dten d_conv3(const official_set *o, dten x, const float *w, const float *b, int cout) {
    dten y = dnew(cout, x.T, x.H, x.W);
    double *p = pad_input(NULL, 2, x.d, x.C, x.T, x.H, x.W, 1, 1, 1, 1);
    naive_conv(p, x.C, x.T + 2, x.H + 2, x.W + 2, official(o, w), b, cout, 3, 3, 3, 1, 1, 1, y.d,
               x.T, x.H, x.W);
    free(p);
    return y;
}

static dten d_conv1(dten x, const float *w, const float *b, int cout) {
    dten y = dnew(cout, x.T, x.H, x.W);
    naive_conv(x.d, x.C, 1, 1, (int)dsize(x) / x.C, w, b, cout, 1, 1, 1, 1, 1, 1, y.d, 1, 1,
               (int)dsize(x) / x.C);
    return y;
}

static dten d_rb(const official_set *o, const vae_item *it, dten x) {
    dten h = it->cin != it->cout ? d_conv1(x, it->sc_w, it->sc_b, it->cout) : x;
    dten a = dnew(x.C, x.T, x.H, x.W);
    ref_rms(x.d, x.C, dsize(x) / x.C, it->g1, 1, a.d);
    dten y = d_conv3(o, a, it->w1, it->b1, it->cout);
    ref_rms(y.d, y.C, dsize(y) / y.C, it->g2, 1, y.d);
    dten z = d_conv3(o, y, it->w2, it->b2, it->cout);
    for (size_t i = 0; i < dsize(z); i++) z.d[i] += h.d[i];
    if (h.d != x.d) free(h.d);
    free(a.d), free(y.d), free(x.d);
    return z;
}

static dten d_up(const official_set *o, const vae_item *it, dten x) {
    const int C = x.C, H = x.H, W = x.W;
    const size_t HW = (size_t)H * W;
    if (it->kind == VAE_ITEM_UP3D) { /* [x0, P0(y1), P1(y1), ...], y over 0, 0, x1, x2, ... */
        const int Tp = x.T - 1;
        dten t = dnew(C, 1 + 2 * Tp, H, W), yc = dnew(2 * C, Tp, H, W);
        double *xs = dalloc((size_t)C * Tp * HW);
        for (int c = 0; c < C; c++)
            memcpy(xs + (size_t)c * Tp * HW, x.d + ((size_t)c * x.T + 1) * HW, (size_t)Tp * HW * 8);
        double *p = pad_input(NULL, 2, xs, C, Tp, H, W, 0, 0, 0, 0);
        naive_conv(p, C, Tp + 2, H, W, official(o, it->tc_w), it->tc_b, 2 * C, 3, 1, 1, 1, 1, 1,
                   yc.d, Tp, H, W);
        for (int c = 0; c < C; c++) {
            memcpy(t.d + (size_t)c * t.T * HW, x.d + (size_t)c * x.T * HW, HW * 8);
            for (int j = 0; j < Tp; j++)
                for (int ph = 0; ph < 2; ph++)
                    memcpy(t.d + ((size_t)c * t.T + 1 + 2 * j + ph) * HW,
                           yc.d + (((size_t)ph * C + c) * Tp + j) * HW, HW * 8);
        }
        free(p), free(xs), free(yc.d), free(x.d);
        x = t;
    }
    dten u = dnew(C, x.T, 2 * H, 2 * W);
    for (int ct = 0; ct < C * x.T; ct++)
        for (int r = 0; r < 2 * H; r++)
            for (int q = 0; q < 2 * W; q++)
                u.d[((size_t)ct * 2 * H + r) * 2 * W + q] =
                    x.d[((size_t)ct * H + r / 2) * W + q / 2];
    dten y = dnew(it->cout, x.T, 2 * H, 2 * W);
    double *p = pad_input(NULL, 0, u.d, C, x.T, 2 * H, 2 * W, 1, 1, 1, 1);
    naive_conv(p, C, x.T, 2 * H + 2, 2 * W + 2, official(o, it->rs_w), it->rs_b, it->cout, 1, 3, 3,
               1, 1, 1, y.d, x.T, 2 * H, 2 * W);
    free(p), free(u.d), free(x.d);
    return y;
}

static dten d_down(const official_set *o, const vae_item *it, dten x) {
    const int C = x.C, Ho = (x.H - 2) / 2 + 1, Wo = (x.W - 2) / 2 + 1;
    dten y = dnew(C, x.T, Ho, Wo);
    double *p = pad_input(NULL, 0, x.d, C, x.T, x.H, x.W, 0, 1, 0, 1);
    naive_conv(p, C, x.T, x.H + 1, x.W + 1, official(o, it->rs_w), it->rs_b, C, 1, 3, 3, 1, 2, 2,
               y.d, x.T, Ho, Wo);
    free(p), free(x.d);
    if (it->kind != VAE_ITEM_DOWN3D) return y;
    /* out0 = y0; out_j = sum_t W_t y_{2j-2+t} + b (T = 1 + 2m -> 1 + m) */
    const int m = (y.T - 1) / 2;
    const size_t HW = (size_t)Ho * Wo;
    dten z = dnew(C, 1 + m, Ho, Wo), r = dnew(C, m, Ho, Wo);
    naive_conv(y.d, C, y.T, Ho, Wo, official(o, it->tc_w), it->tc_b, C, 3, 1, 1, 2, 1, 1, r.d, m,
               Ho, Wo);
    for (int c = 0; c < C; c++) {
        memcpy(z.d + (size_t)c * z.T * HW, y.d + (size_t)c * y.T * HW, HW * 8);
        memcpy(z.d + ((size_t)c * z.T + 1) * HW, r.d + (size_t)c * m * HW, (size_t)m * HW * 8);
    }
    free(y.d), free(r.d);
    return z;
}

static dten d_items(const official_set *o, const vae_net *n, dten x) {
    for (int i = 0; i < n->nitems; i++) {
        const vae_item *it = &n->items[i];
        if (it->kind == VAE_ITEM_RB) x = d_rb(o, it, x);
        if (it->kind == VAE_ITEM_UP2D || it->kind == VAE_ITEM_UP3D) x = d_up(o, it, x);
        if (it->kind == VAE_ITEM_DOWN2D || it->kind == VAE_ITEM_DOWN3D) x = d_down(o, it, x);
        if (it->kind == VAE_ITEM_ATTN) {
            dten y = dnew(x.C, x.T, x.H, x.W);
            ref_attention(x.d, x.C, x.T, x.H * x.W, it, y.d);
            free(x.d);
            x = y;
        }
    }
    return x;
}

static dten d_head(const official_set *o, const vae_net *n, dten x) {
    ref_rms(x.d, x.C, dsize(x) / x.C, n->head_g, 1, x.d);
    dten y = d_conv3(o, x, n->head_w, n->head_b, n->out_ch);
    free(x.d);
    return y;
}

/* Decoder over N latents [16][N][h][w] as one sequence: frames [3][1 + 4(N-1)][8h][8w]. */
static dten d_decoder(const vae_weights *w, const official_set *o, const float *lat, int N, int h,
                      int wd) {
    dten z = dnew(16, N, h, wd);
    const size_t per = (size_t)N * h * wd;
    for (int c = 0; c < 16; c++)
        for (size_t i = 0; i < per; i++)
            z.d[(size_t)c * per + i] =
                (double)lat[(size_t)c * per + i] * w->cfg.latent_std[c] + w->cfg.latent_mean[c];
    dten x = d_conv1(z, w->post_w, w->post_b, 16);
    free(z.d);
    dten y = d_conv3(o, x, w->dec.in_w, w->dec.in_b, w->dec.in_dim);
    free(x.d);
    y = d_head(o, &w->dec, d_items(o, &w->dec, y));
    for (size_t i = 0; i < dsize(y); i++) y.d[i] = fmin(1.0, fmax(-1.0, y.d[i]));
    return y;
}

/* Encoder over a whole 1 + 4k video [3][n][H][W]: normalised latents [16][1 + k][H/8][W/8]. */
static dten d_encoder(const vae_weights *w, const official_set *o, const float *video, int n, int H,
                      int W) {
    dten v = {to_d(video, (size_t)3 * n * H * W), 3, n, H, W};
    dten x = d_conv3(o, v, w->enc.in_w, w->enc.in_b, w->enc.in_dim);
    free(v.d);
    x = d_head(o, &w->enc, d_items(o, &w->enc, x));
    dten m = d_conv1(x, w->quant_w, w->quant_b, 32);
    free(x.d);
    dten z = dnew(16, m.T, m.H, m.W);
    const size_t per = (size_t)m.T * m.H * m.W;
    for (int c = 0; c < 16; c++)
        for (size_t i = 0; i < per; i++)
            z.d[(size_t)c * per + i] =
                (m.d[(size_t)c * per + i] - w->cfg.latent_mean[c]) / w->cfg.latent_std[c];
    free(m.d);
    return z;
}

static void test_whole_network(vae_weights *w) {
    official_set *o = calloc(1, sizeof *o);
    vae_visit(w, official_visitor, o);
    /* decoder: 4 latents of 2x3 in one call and in a 1 + 3 stream vs the whole-sequence reference
     */
    const int N = 4, h = 2, wd = 3, nf = 1 + 4 * (N - 1);
    const size_t hw = (size_t)h * wd, nfr = (size_t)3 * nf * 64 * hw;
    float *lat = rnd((size_t)16 * N * hw, 601, 1.5f), *fr = malloc(nfr * 4);
    dten ref = d_decoder(w, o, lat, N, h, wd);
    int got = decode_in_calls(w, lat, N, h, wd, N, fr, nf, NULL);
    double e = got == nf ? tu_rel_err_d(fr, ref.d, nfr) : -1;
    tu_check(got == nf && ref.T == nf && e >= 0 && e <= 1e-5,
             "whole decoder (tiny, %d latents %dx%d -> %d frames) vs the spec's full-sequence "
             "formulation in double: rel err %.2e (bound 1e-5)",
             N, h, wd, got, e);
    got = decode_in_calls(w, lat, N, h, wd, 1, fr, nf, NULL);
    e = got == nf ? tu_rel_err_d(fr, ref.d, nfr) : -1;
    tu_check(got == nf && e >= 0 && e <= 1e-5,
             "streaming decoder, 1 latent per call (cache slots, first-latent rule) vs the same "
             "double reference: rel err %.2e",
             e);
    free(ref.d), free(lat), free(fr);
    /* encoder: 1 + 4 + 4 frames of 16x24 in chunks vs the whole-sequence reference */
    const int H = 16, W = 24, n = 9, L = 3;
    const size_t nl = (size_t)16 * L * (H / 8) * (W / 8);
    float *video = rnd((size_t)3 * n * H * W, 602, 1.0f), *z = malloc(nl * 4);
    const int chunks[] = {1, 4, 4};
    dten zr = d_encoder(w, o, video, n, H, W);
    got = encode_calls(w, video, n, H, W, chunks, 3, z, L);
    e = got == L ? tu_rel_err_d(z, zr.d, nl) : -1;
    tu_check(got == L && zr.T == L && e >= 0 && e <= 1e-5,
             "streaming encoder (tiny, %dx%d, chunks 1,4,4 -> %d latents) vs the spec's "
             "full-sequence formulation in double: rel err %.2e (bound 1e-5)",
             H, W, got, e);
    free(zr.d), free(video), free(z);
    for (int i = 0; i < o->n; i++) free(o->e[i].official);
    free(o);
}

/* 4.4: image then zero frames; latents from 29 on are bitwise equal to latent 29. */
static void test_saturation(const vae_weights *w) {
    const int H = 16, W = 16, L = 32;
    const size_t HW = (size_t)H * W, hw = HW / 64;
    vae_encoder *e = NULL;
    if (vae_encoder_create(w, H, W, &e, err, sizeof err)) return;
    float *img = rnd(3 * HW, 501, 1.0f), *zeros = calloc(3 * 4 * HW, 4);
    float *lat = malloc((size_t)L * 16 * hw * 4); /* [k][16][hw] here: one call per latent */
    int n = 0, rc = vae_encode(e, img, 1, lat, &n, err, sizeof err);
    for (int k = 1; k < L && !rc; k++)
        rc = vae_encode(e, zeros, 4, lat + (size_t)k * 16 * hw, &n, err, sizeof err);
    const size_t per = 16 * hw;
    int same = 1;
    for (int k = 30; k < L; k++) same &= !memcmp(lat + k * per, lat + 29 * per, per * 4);
    double d28 = tu_max_abs(lat + 28 * per, lat + 29 * per, per);
    double d1 = tu_max_abs(lat + 1 * per, lat + 2 * per, per);
    tu_check(!rc && same && d28 > 0,
             "conditioning saturation (tiny, 16x16): latents 30..%d == latent 29 bitwise, 28 vs 29 "
             "max |d| %.1e (1 vs 2: %.1e)",
             L - 1, d28, d1);
    free(img), free(zeros), free(lat);
    vae_encoder_destroy(e);
}

/* ---- 6. parameter table and loader ----------------------------------------------------------- */

typedef struct table_ctx {
    uint32_t hash;
    int n;
} table_ctx;

static void fnv(uint32_t *h, const char *s) {
    for (; *s; s++) *h = (*h ^ (unsigned char)*s) * 16777619u;
}

static int table_visitor(void *user, const vae_param *p) {
    table_ctx *t = user;
    char line[320];
    int o = snprintf(line, sizeof line, "%s|%s|[", p->name, p->dname);
    for (int i = 0; i < p->ndim; i++)
        o += snprintf(line + o, sizeof line - (size_t)o, "%s%lld", i ? "," : "",
                      (long long)p->shape[i]);
    snprintf(line + o, sizeof line - (size_t)o, "]\n");
    fnv(&t->hash, line);
    t->n++;
    return 0;
}

static void test_table(void) {
    vae_config c;
    vae_config_preset(&c, "full", err, sizeof err);
    int64_t pe = 0, pd = 0, pa = 0;
    int te = vae_count(&c, VAE_PART_ENCODER, &pe), td = vae_count(&c, VAE_PART_DECODER, &pd);
    int ta = vae_count(&c, VAE_PART_ENCODER | VAE_PART_DECODER, &pa);
    tu_check(ta == 194 && te == 86 && td == 108 && pa == 126892531 && pe == 53595872 + 1056 &&
                 pd == 73295331 + 272,
             "full VAE table: %d tensors (%d encoder side, %d decoder side), %lld parameters "
             "(want 194, 86, 108, 126892531)",
             ta, te, td, (long long)pa);
    /* every "official|diffusers|[shape]" line of Appendix A, in order, hashed (FNV-1a 32) */
    vae_weights *w = calloc(1, sizeof *w);
    w->cfg = c;
    vae_net_build(&c, &w->enc, &w->dec, err, sizeof err);
    table_ctx t = {2166136261u, 0};
    vae_visit(w, table_visitor, &t);
    tu_check(t.n == 194 && t.hash == 0x09683434u,
             "full VAE table: key pairs and shapes hash to 0x%08x (Appendix A: 0x09683434)",
             t.hash);
    free(w);
    vae_config bad;
    tu_check(vae_config_preset(&bad, "huge", err, sizeof err) < 0 && strstr(err, "huge"),
             "unknown VAE size refused: %s", err);
}

typedef struct write_ctx {
    st_writer *wr;
    int diffusers;
    const char *skip;    /* official name to leave out */
    const char *reshape; /* official name to write as [s0, s1, 1, 3, 1] */
    const char *poison;  /* official name to write with a NaN */
} write_ctx;

static int write_visitor(void *user, const vae_param *p) {
    write_ctx *c = user;
    if (c->skip && !strcmp(p->name, c->skip)) return 0;
    float *v = malloc((size_t)p->numel * 4);
    vae_param_read(p, v);
    int64_t shape[5];
    memcpy(shape, p->shape, sizeof shape);
    if (c->reshape && !strcmp(p->name, c->reshape)) shape[2] = 1, shape[3] = 3;
    if (c->poison && !strcmp(p->name, c->poison)) v[1] = NAN;
    int rc = st_writer_add_f32(c->wr, c->diffusers ? p->dname : p->name, shape, p->ndim, v, err,
                               sizeof err);
    free(v);
    return rc;
}

static int write_file(vae_weights *w, const char *path, write_ctx *c, const char *extra) {
    c->wr = st_writer_create();
    int rc = vae_visit(w, write_visitor, c);
    if (!rc && extra) {
        float v[2] = {1, 2};
        int64_t s[1] = {2};
        rc = st_writer_add_f32(c->wr, extra, s, 1, v, err, sizeof err);
    }
    if (!rc) rc = st_writer_save(c->wr, path, err, sizeof err);
    st_writer_destroy(c->wr);
    return rc;
}

/* Two weight sets of the same config and parts share one arena layout: compare them whole. */
static int equal_arenas(const vae_weights *a, const vae_weights *b) {
    return a->arena_floats == b->arena_floats &&
           memcmp(a->arena, b->arena, a->arena_floats * sizeof(float)) == 0;
}

static void expect_load_error(const vae_config *c, const char *path, const char *what,
                              const char *needle) {
    vae_weights *w = NULL;
    int rc = vae_weights_load(c, path, VAE_PART_DECODER | VAE_PART_ENCODER, &w, err, sizeof err);
    tu_check(rc < 0 && !w && strstr(err, needle) && strstr(err, path),
             "loader refuses %s, naming the file and '%s': %s", what, needle, err);
    vae_weights_free(w);
}

static void test_loader(const vae_config *c, vae_weights *syn) {
    char path[512];
    snprintf(path, sizeof path, "/tmp/test_vae_%d.safetensors", (int)getpid());
    for (int diffusers = 0; diffusers < 2; diffusers++) {
        write_ctx wc = {.diffusers = diffusers};
        int rc = write_file(syn, path, &wc, NULL);
        vae_weights *w = NULL;
        if (!rc)
            rc =
                vae_weights_load(c, path, VAE_PART_DECODER | VAE_PART_ENCODER, &w, err, sizeof err);
        tu_check(!rc && equal_arenas(syn, w),
                 "loader: synthetic tiny weights written with %s names load back bitwise (%zu "
                 "floats)%s%s",
                 diffusers ? "Diffusers" : "official", syn->arena_floats, rc ? ": " : "",
                 rc ? err : "");
        vae_weights_free(w);
    }
    /* decode-only load from the full file: the decoder side only, encoder refused */
    {
        write_ctx wc = {0};
        write_file(syn, path, &wc, NULL);
        vae_weights *w = NULL;
        int rc = vae_weights_load(c, path, VAE_PART_DECODER, &w, err, sizeof err);
        int64_t pd = 0;
        int nd = vae_count(c, VAE_PART_DECODER, &pd);
        /* the decoder side comes last in the table, so it is the tail of the full arena */
        int same = !rc && w->arena_floats == (size_t)pd &&
                   !memcmp(w->arena, syn->arena + (syn->arena_floats - (size_t)pd), (size_t)pd * 4);
        vae_encoder *e = NULL;
        int re = rc ? 0 : vae_encoder_create(w, 16, 16, &e, err, sizeof err);
        tu_check(same && re < 0 && !e,
                 "loader: VAE_PART_DECODER takes the %d decoder-side tensors (%lld floats) "
                 "bitwise; encoder creation then refused: %s",
                 nd, (long long)pd, err);
        vae_weights_free(w);
    }
    {
        write_ctx wc = {.skip = "decoder.upsamples.3.time_conv.bias"};
        write_file(syn, path, &wc, NULL);
        expect_load_error(c, path, "a missing key", "decoder.upsamples.3.time_conv.bias");
        vae_weights *w = NULL;
        int rc = vae_weights_load(c, path, VAE_PART_ENCODER, &w, err, sizeof err);
        tu_check(!rc && w,
                 "loader: the same file loads for VAE_PART_ENCODER (key of the other part "
                 "missing)");
        vae_weights_free(w);
    }
    {
        write_ctx wc = {0};
        write_file(syn, path, &wc, "decoder.upsamples.99.extra.weight");
        expect_load_error(c, path, "an unexpected key", "decoder.upsamples.99.extra.weight");
    }
    {
        write_ctx wc = {.reshape = "encoder.downsamples.5.time_conv.weight"};
        write_file(syn, path, &wc, NULL);
        expect_load_error(c, path, "a wrong shape ([16, 16, 1, 3, 1] for [16, 16, 3, 1, 1])",
                          "encoder.downsamples.5.time_conv.weight");
    }
    {
        write_ctx wc = {.diffusers = 1, .poison = "decoder.middle.1.to_qkv.weight"};
        write_file(syn, path, &wc, NULL);
        expect_load_error(c, path, "a non-finite value",
                          "decoder.mid_block.attentions.0.to_qkv.weight");
    }
    {
        write_ctx wc = {.diffusers = 1};
        write_file(syn, path, &wc,
                   "encoder.conv1.weight"); /* an official key in a Diffusers file */
        expect_load_error(c, path, "a key of the other naming scheme", "encoder.conv1.weight");
    }
    unlink(path);
}

/* ---- 7. RGB8 --------------------------------------------------------------------------------- */

static void test_rgb8(void) {
    const float v[10] = {0.0f, 1.0f, -1.0f, 0.999f, -0.999f, 0.5f, 2.0f, -2.0f, NAN, 0.99f};
    const uint8_t want[10] = {127, 255, 0, 254, 0, 191, 255, 0, 0, 253};
    /* frames [3][n=2][1][5] -> rgb [2][1][5][3]; channel c of pixel i of frame f = v[...] */
    float fr[3 * 2 * 5];
    uint8_t rgb[2 * 5 * 3];
    for (int c = 0; c < 3; c++)
        for (int f = 0; f < 2; f++)
            for (int i = 0; i < 5; i++) fr[(c * 2 + f) * 5 + i] = v[(f * 5 + i + 3 * c) % 10];
    vae_frames_to_rgb8(fr, 2, 1, 5, rgb);
    int ok = 1;
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 5; i++)
            for (int c = 0; c < 3; c++)
                ok &= rgb[(f * 5 + i) * 3 + c] == want[(f * 5 + i + 3 * c) % 10];
    tu_check(ok, "RGB8 = trunc(clip((x+1)*127.5)): 0->127, 1->255, -1->0, 0.999->254, -0.999->0, "
                 "0.5->191, 2->255, -2->0, NaN->0, 0.99->253; [3][n][H][W] -> [n][H][W][3]");
}

int main(void) {
    test_conv3d(3, 1, 0);
    test_conv3d(1, 1, 1);
    test_conv3d(2, 0, 1);
    test_conv3d_dims(8, 8, 18, 37, 3, 1, 1);
    test_conv3d_dims(16, 3, 12, 20, 3, 1, 0);
    test_conv3d_dims(12, 40, 6, 7, 2, 1, 0);
    test_conv1x1();
    test_down_conv(6, 8);
    test_down_conv(6, 7);
    test_up_conv();
    test_time_up(0);
    test_time_up(1);
    test_time_down();

    test_rms();
    test_attention();
    test_resblock(6, 6);
    test_resblock(6, 10);

    vae_config c;
    vae_weights *w = NULL;
    int rc = vae_config_preset(&c, "tiny", err, sizeof err);
    if (!rc) rc = vae_weights_synthetic(&c, 1234, &w, err, sizeof err);
    tu_check(!rc, "tiny synthetic VAE weights: %s", rc ? err : "made");
    if (!rc) {
        test_stream_decode(w);
        test_stream_encode(w);
        test_whole_network(w);
        test_saturation(w);
        test_table();
        test_loader(&c, w);
    }
    vae_weights_free(w);
    test_rgb8();
    return tu_finish("test_vae");
}
