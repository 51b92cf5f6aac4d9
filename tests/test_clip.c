/* The CLIP image encoder (engine/clip.h) against references written here, independent of
 * engine/clip.c:
 *   1. bicubic resize: weights observed through clip_preprocess (constant and impulse images)
 *      against the 5.2 kernel in double; ramps; a direct 2-D (non-separable) float64 evaluation
 *      of 5.2 including the clamped borders, at 352x640 -> 224 and on tiny images;
 *   2. the bf16-rounded Normalize constants against bit patterns worked out by hand;
 *   3. one block and the whole tiny encoder against a float64 loop implementation (no BLAS) that
 *      rebuilds the synthetic weights from the spec (names, streams, scales);
 *   4. output shape, class token row, layers_used;
 *   5. loading official and HF-named safetensors (both prefixes), skipped and refused tensors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/clip.h"
#include "engine/noise.h"
#include "engine/philox.h"
#include "engine/safetensors.h"
#include "test_util.h"

#define SEED 20250812ull

static char tmpdir[256];

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

/* ---- normalisation constants ----------------------------------------------------------------- */

/* bf16 = the top 16 bits of a float32: sign, 8 exponent bits, 7 stored mantissa bits. Every
 * constant lies in [0.25, 0.5): exponent field 125 (0b01111101), so the pattern is 0x3E80 | m with
 * m the 7 stored bits, and the value is M / 512 with M = 128 + m the 8 significant bits. By hand,
 * v * 512 rounded to the nearest integer (no ties here):
 *   mean 0.48145466 * 512 = 246.505 -> 247 = 128 + 0x77 -> 0x3EF7 (0.482421875)
 *        0.4578275  * 512 = 234.408 -> 234 = 128 + 0x6A -> 0x3EEA (0.45703125)
 *        0.40821073 * 512 = 209.004 -> 209 = 128 + 0x51 -> 0x3ED1 (0.408203125)
 *   std  0.26862954 * 512 = 137.538 -> 138 = 128 + 0x0A -> 0x3E8A (0.26953125)
 *        0.26130258 * 512 = 133.787 -> 134 = 128 + 0x06 -> 0x3E86 (0.26171875)
 *        0.27577711 * 512 = 141.198 -> 141 = 128 + 0x0D -> 0x3E8D (0.275390625) */
static const uint16_t mean_bits[3] = {0x3EF7, 0x3EEA, 0x3ED1};
static const uint16_t std_bits[3] = {0x3E8A, 0x3E86, 0x3E8D};

static float from_bf16(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- the 5.2 resize in double ---------------------------------------------------------------- */

static double cubic_w(double d) {
    const double A = -0.75;
    d = fabs(d);
    if (d <= 1.0) return ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0;
    if (d < 2.0) return A * d * d * d - 5.0 * A * d * d + 8.0 * A * d - 4.0 * A;
    return 0.0;
}

/* Source coordinate of output index i: exact, or with PyTorch's float arithmetic (its bicubic
 * kernel computes scale and coordinate in float even for double-free bf16 inputs). */
static double src_coord(int i, int in, int out, int float_coords) {
    if (!float_coords) return (i + 0.5) * ((double)in / out) - 0.5;
    float scale = (float)in / (float)out;
    return (double)(scale * ((float)i + 0.5f) - 0.5f);
}

static int clampi(int i, int n) {
    return i < 0 ? 0 : i > n - 1 ? n - 1 : i;
}

/* The 4 taps of output index i: clamped source indices and weights w(t+1), w(t), w(1-t), w(2-t). */
static void taps(int i, int in, int out, int float_coords, int idx[4], double w[4]) {
    double s = src_coord(i, in, out, float_coords), f = floor(s), t = s - f;
    for (int k = 0; k < 4; k++) {
        idx[k] = clampi((int)f - 1 + k, in);
        w[k] = cubic_w(t + 1.0 - k);
    }
}

/* Direct 2-D evaluation: out(y, x) = sum over the 16 taps of wy * wx * in, then x*0.5+0.5 and
 * (x - mean) / std with the bf16 constants. Image [3][H][W] -> [3][S][S]. */
static void ref_preprocess(const float *img, int H, int W, int S, int float_coords, double *out) {
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int iy[4], ix[4];
                double wy[4], wx[4], acc = 0.0;
                taps(y, H, S, float_coords, iy, wy);
                taps(x, W, S, float_coords, ix, wx);
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++)
                        acc += wy[a] * wx[b] * img[((size_t)c * H + iy[a]) * W + ix[b]];
                out[((size_t)c * S + y) * S + x] =
                    (acc * 0.5 + 0.5 - from_bf16(mean_bits[c])) / from_bf16(std_bits[c]);
            }
}

/* Undo x*0.5+0.5 and Normalize in double, to read the resize's own value back. */
static double unnormalize(float v, int c) {
    return ((double)v * from_bf16(std_bits[c]) + from_bf16(mean_bits[c]) - 0.5) * 2.0;
}

static void random_image(float *img, int H, int W, uint64_t seed) {
    tu_fill(img, (size_t)3 * H * W, seed, 1.0f);
}

/* ---- 1. bicubic ------------------------------------------------------------------------------ */

static clip_config tiny_config(void) {
    clip_config c;
    char err[256];
    if (clip_config_preset(&c, "tiny", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    return c;
}

/* A 224-row image resizes rows by the identity (t = 0, weights exactly 0, 1, 0, 0), so column x of
 * any output row shows the horizontal pass alone. A constant 1 image shows sum_k w_k(t). */
static void test_weight_sums(void) {
    const clip_config c = tiny_config();
    const int S = c.image_size;
    uint64_t rng = 11;
    double worst = 0.0;
    int n = 0;
    float *out = xmalloc((size_t)3 * S * S * sizeof(float));
    for (int trial = 0; trial < 12; trial++) {
        const int W = 2 + (int)(tu_uniform(&rng) * 1500.0);
        float *img = xmalloc((size_t)3 * S * W * sizeof(float));
        for (size_t i = 0; i < (size_t)3 * S * W; i++) img[i] = 1.0f;
        clip_preprocess(&c, img, S, W, out);
        for (int x = 0; x < S; x++, n++) {
            double d = fabs(unnormalize(out[(size_t)37 * S + x], 0) - 1.0);
            if (!(d <= worst)) worst = d;
        }
        free(img);
    }
    free(out);
    tu_check(worst < 2e-6,
             "bicubic weights sum to 1: %d outputs (t from 12 random widths 2..1501), max "
             "|sum - 1| = %.2e (bound 2e-6, fp32 weights and sums)",
             n, worst);
}

/* An impulse at source column j: output column x reads the weights of the taps that land on j
 * (several at a clamped border), which must equal the 5.2 kernel at that x's t. */
static void test_weight_values(int W) {
    const clip_config c = tiny_config();
    const int S = c.image_size;
    float *img = xmalloc((size_t)3 * S * W * sizeof(float));
    float *out = xmalloc((size_t)3 * S * S * sizeof(float));
    double worst = 0.0;
    for (int j = 0; j < W; j++) {
        memset(img, 0, (size_t)3 * S * W * sizeof(float));
        for (int y = 0; y < S; y++) img[(size_t)y * W + j] = 1.0f;
        clip_preprocess(&c, img, S, W, out);
        for (int x = 0; x < S; x++) {
            int idx[4];
            double w[4], want = 0.0;
            taps(x, W, S, 1, idx, w);
            for (int k = 0; k < 4; k++)
                if (idx[k] == j) want += w[k];
            double d = fabs(unnormalize(out[(size_t)101 * S + x], 0) - want);
            if (!(d <= worst)) worst = d;
        }
    }
    tu_check(worst < 2e-6,
             "bicubic weights, impulse responses %d -> %d columns vs the 5.2 kernel in double: max "
             "|err| = %.2e (bound 2e-6: the far-tap cubic cancels terms near 6 in fp32)",
             W, S, worst);
    free(img);
    free(out);
}

/* Ramp v = a + b x + c y. Where every t is 0 or 1/2 (integer scale factors; symmetric weights)
 * the resize gives the ramp at the source coordinate. For other t it does not: with A = -0.75 the
 * kernel's first moment is m1(t) = sum_k w_k * offset_k = 0.5 t (1-t) (1-2t), nonzero, so the
 * 352x640 result is the ramp at s + m1(t) instead; checked too, against that prediction. */
static void test_ramp(int H, int W, int expect_exact) {
    const clip_config c = tiny_config();
    const int S = c.image_size;
    const double a = -0.9, b = 0.9 / (W - 1), cy = 0.9 / (H - 1);
    float *img = xmalloc((size_t)3 * H * W * sizeof(float));
    float *out = xmalloc((size_t)3 * S * S * sizeof(float));
    for (int ch = 0; ch < 3; ch++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                img[((size_t)ch * H + y) * W + x] = (float)(a + b * x + cy * y);
    clip_preprocess(&c, img, H, W, out);
    double worst_plain = 0.0, worst_moment = 0.0;
    int n = 0;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double sy = src_coord(y, H, S, 0), sx = src_coord(x, W, S, 0);
            if (floor(sy) - 1 < 0 || floor(sy) + 2 > H - 1 || floor(sx) - 1 < 0 ||
                floor(sx) + 2 > W - 1)
                continue; /* clamped taps: not a ramp any more */
            double ty = sy - floor(sy), tx = sx - floor(sx);
            double m1y = 0.5 * ty * (1 - ty) * (1 - 2 * ty),
                   m1x = 0.5 * tx * (1 - tx) * (1 - 2 * tx);
            for (int ch = 0; ch < 3; ch++) {
                double got = unnormalize(out[((size_t)ch * S + y) * S + x], ch);
                double d0 = fabs(got - (a + b * sx + cy * sy));
                double d1 = fabs(got - (a + b * (sx + m1x) + cy * (sy + m1y)));
                if (!(d0 <= worst_plain)) worst_plain = d0;
                if (!(d1 <= worst_moment)) worst_moment = d1;
                n++;
            }
        }
    if (expect_exact)
        tu_check(worst_plain < 2e-6,
                 "ramp %dx%d -> %d (t in {0, 1/2}): %d interior outputs, max |out - ramp(s)| = "
                 "%.2e (bound 2e-6)",
                 H, W, S, n, worst_plain);
    else
        tu_check(worst_moment < 2e-6 && worst_plain > 1e-5,
                 "ramp %dx%d -> %d: %d interior outputs, max |out - ramp(s + m1(t))| = %.2e "
                 "(bound 2e-6); |out - ramp(s)| reaches %.2e, so A = -0.75 is not exact on "
                 "ramps at this scale",
                 H, W, S, n, worst_moment, worst_plain);
    free(img);
    free(out);
}

/* clip_preprocess against the direct 2-D double evaluation, with PyTorch's float source
 * coordinates (tight) and with exact coordinates: float coordinates move t by up to about
 * ulp(in) = in * 6e-8, i.e. 4e-5 at 640 (PyTorch's own fp32-vs-fp64 difference of 10.1), and a
 * random image changes by up to 2 per source pixel, so that bound is 5e-7 * in. */
static void test_resize_vs_direct(int H, int W, uint64_t seed) {
    const clip_config c = tiny_config();
    const int S = c.image_size;
    const size_t n = (size_t)3 * S * S;
    float *img = xmalloc((size_t)3 * H * W * sizeof(float)), *out = xmalloc(n * sizeof(float));
    double *ref = xmalloc(n * sizeof(double));
    random_image(img, H, W, seed);
    clip_preprocess(&c, img, H, W, out);
    double e_float = 0.0, e_exact = 0.0;
    ref_preprocess(img, H, W, S, 1, ref);
    for (size_t i = 0; i < n; i++) e_float = fmax(e_float, fabs(out[i] - ref[i]));
    ref_preprocess(img, H, W, S, 0, ref);
    for (size_t i = 0; i < n; i++) e_exact = fmax(e_exact, fabs(out[i] - ref[i]));
    tu_check(e_float < 5e-6,
             "preprocess %dx%d -> %d vs direct 2-D float64 (float source coords): max |err| = "
             "%.2e (bound 5e-6, normalised units)",
             H, W, S, e_float);
    const double bound = 5e-7 * (H > W ? H : W) + 5e-6;
    tu_check(e_exact < bound,
             "preprocess %dx%d -> %d vs direct 2-D float64 (exact source coords): max |err| = "
             "%.2e (bound %.1e)",
             H, W, S, e_exact, bound);
    free(img);
    free(out);
    free(ref);
}

static void test_bicubic(void) {
    test_weight_sums();
    test_weight_values(97);
    test_weight_values(61);
    test_weight_values(3);
    test_ramp(448, 672, 1);
    test_ramp(352, 640, 0);
    test_resize_vs_direct(352, 640, 1);
    test_resize_vs_direct(5, 3, 2);
    test_resize_vs_direct(1, 1, 3);
    test_resize_vs_direct(224, 224, 4);
    test_resize_vs_direct(230, 2000, 5);
}

/* ---- 2. Normalize constants ------------------------------------------------------------------ */

/* At 224x224 the resize is the identity exactly, so a constant image v gives (v*0.5+0.5 - m) / s
 * computed in float: the output bits pin m and s. */
static void test_normalize_constants(void) {
    const clip_config c = tiny_config();
    const int S = c.image_size;
    const size_t n = (size_t)3 * S * S;
    float *img = xmalloc(n * sizeof(float)), *out = xmalloc(n * sizeof(float));
    const float unrounded_m[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float unrounded_s[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const float vals[3] = {-1.0f, 0.0f, 1.0f};
    for (int vi = 0; vi < 3; vi++) {
        for (size_t i = 0; i < n; i++) img[i] = vals[vi];
        clip_preprocess(&c, img, S, S, out);
        for (int ch = 0; ch < 3; ch++) {
            const float x = vals[vi] * 0.5f + 0.5f;
            const float m = from_bf16(mean_bits[ch]), s = from_bf16(std_bits[ch]);
            const float want = (x - m) / s, plain = (x - unrounded_m[ch]) / unrounded_s[ch];
            int all = 1;
            for (size_t i = 0; i < (size_t)S * S; i++)
                all &= memcmp(&out[(size_t)ch * S * S + i], &want, sizeof want) == 0;
            tu_check(all && want != plain,
                     "normalize ch %d, input %+g: out %.9g == (x - bf16 0x%04X = %.9g) / bf16 "
                     "0x%04X = %.9g bit for bit (the unrounded constants would give %.9g)",
                     ch, (double)vals[vi], (double)out[(size_t)ch * S * S], mean_bits[ch],
                     (double)m, std_bits[ch], (double)s, (double)plain);
        }
    }
    free(img);
    free(out);
}

/* ---- synthetic weights rebuilt from the spec ------------------------------------------------- */

typedef struct tblock {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b, *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w,
        *fc2_b;
} tblock;

#define TM_MAX 160
typedef struct tparam {
    char name[96];
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *data;
} tparam;

typedef struct tmodel {
    clip_config c;
    int n;
    tparam p[TM_MAX];
    float *cls, *patch, *pos, *pre_w, *pre_b;
    tblock b[8];
} tmodel;

/* kind: 'L' linear U(+-1/sqrt(fan_in)), 'B' bias 0.05u, 'G' gain 1 + 0.1u, 'E' embedding 0.5u;
 * stream (seed, fnv1a32("clip." + name), WEIGHTS, WEIGHTS). */
static float *tm_add(tmodel *m, const char *name, char kind, int ndim, int64_t d0, int64_t d1,
                     int64_t d2, int64_t d3) {
    tparam *p = &m->p[m->n++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    const int64_t d[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = d[i], p->numel *= (size_t)d[i];
    p->data = xmalloc(p->numel * sizeof(float));
    float scale = 0.5f, offset = 0.0f;
    if (kind == 'L') scale = (float)(1.0 / sqrt((double)(p->numel / (size_t)d0)));
    if (kind == 'B') scale = 0.05f;
    if (kind == 'G') scale = 0.1f, offset = 1.0f;
    char sname[128];
    snprintf(sname, sizeof sname, "clip.%s", name);
    eng_uniform_fill(p->data, p->numel, scale, offset, SEED, wm_fnv1a32(sname), ENG_STREAM_WEIGHTS,
                     ENG_STREAM_WEIGHTS);
    return p->data;
}

/* All `layers` blocks of the checkpoint (files carry the unused ones too). */
static void tm_build(tmodel *m, const clip_config *c) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    const int64_t W = c->width, M = c->mlp, T = clip_tokens(c), p = c->patch;
    m->cls = tm_add(m, "visual.cls_embedding", 'E', 3, 1, 1, W, 0);
    m->patch = tm_add(m, "visual.patch_embedding.weight", 'L', 4, W, 3, p, p);
    m->pos = tm_add(m, "visual.pos_embedding", 'E', 3, 1, T, W, 0);
    m->pre_w = tm_add(m, "visual.pre_norm.weight", 'G', 1, W, 0, 0, 0);
    m->pre_b = tm_add(m, "visual.pre_norm.bias", 'B', 1, W, 0, 0, 0);
    for (int i = 0; i < c->layers; i++) {
        tblock *b = &m->b[i];
        char nm[96];
#define TB(field, leaf, kind, nd, a0, a1)                                                          \
    (snprintf(nm, sizeof nm, "visual.transformer.%d.%s", i, leaf),                                 \
     b->field = tm_add(m, nm, kind, nd, a0, a1, 0, 0))
        TB(ln1_w, "norm1.weight", 'G', 1, W, 0);
        TB(ln1_b, "norm1.bias", 'B', 1, W, 0);
        TB(qkv_w, "attn.to_qkv.weight", 'L', 2, 3 * W, W);
        TB(qkv_b, "attn.to_qkv.bias", 'B', 1, 3 * W, 0);
        TB(proj_w, "attn.proj.weight", 'L', 2, W, W);
        TB(proj_b, "attn.proj.bias", 'B', 1, W, 0);
        TB(ln2_w, "norm2.weight", 'G', 1, W, 0);
        TB(ln2_b, "norm2.bias", 'B', 1, W, 0);
        TB(fc1_w, "mlp.0.weight", 'L', 2, M, W);
        TB(fc1_b, "mlp.0.bias", 'B', 1, M, 0);
        TB(fc2_w, "mlp.2.weight", 'L', 2, W, M);
        TB(fc2_b, "mlp.2.bias", 'B', 1, W, 0);
#undef TB
    }
}

static void tm_free(tmodel *m) {
    for (int i = 0; i < m->n; i++) free(m->p[i].data);
}

/* ---- the float64 reference network ----------------------------------------------------------- */

static void ref_layernorm(const double *x, double *y, int T, int W, const float *g,
                          const float *b) {
    for (int r = 0; r < T; r++) {
        const double *xr = x + (size_t)r * W;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < W; i++) mean += xr[i];
        mean /= W;
        for (int i = 0; i < W; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= W;
        for (int i = 0; i < W; i++)
            y[(size_t)r * W + i] = (xr[i] - mean) / sqrt(var + 1e-5) * g[i] + b[i];
    }
}

/* y[T][out] = x[T][in] . Wt[out][in]^T + b */
static void ref_linear(const double *x, int T, int in, const float *Wt, const float *b, int out,
                       double *y) {
    for (int r = 0; r < T; r++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) acc += x[(size_t)r * in + i] * Wt[(size_t)o * in + i];
            y[(size_t)r * out + o] = acc;
        }
}

static void ref_block(const tmodel *m, const tblock *b, double *x) {
    const int T = clip_tokens(&m->c), W = m->c.width, M = m->c.mlp, H = m->c.heads, dh = W / H;
    double *h = xmalloc((size_t)T * W * sizeof(double)),
           *qkv = xmalloc((size_t)T * 3 * W * sizeof(double));
    double *att = xmalloc((size_t)T * W * sizeof(double)),
           *mm = xmalloc((size_t)T * M * sizeof(double));
    double *y = xmalloc((size_t)T * W * sizeof(double)), *p = xmalloc((size_t)T * sizeof(double));
    ref_layernorm(x, h, T, W, b->ln1_w, b->ln1_b);
    ref_linear(h, T, W, b->qkv_w, b->qkv_b, 3 * W, qkv);
    for (int hd = 0; hd < H; hd++)
        for (int r = 0; r < T; r++) {
            const double *q = qkv + (size_t)r * 3 * W + hd * dh;
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < T; j++) {
                const double *k = qkv + (size_t)j * 3 * W + W + hd * dh;
                double dot = 0.0;
                for (int d = 0; d < dh; d++) dot += q[d] * k[d];
                p[j] = dot / sqrt((double)dh);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < T; j++) sum += (p[j] = exp(p[j] - mx));
            for (int d = 0; d < dh; d++) {
                double acc = 0.0;
                for (int j = 0; j < T; j++)
                    acc += p[j] * qkv[(size_t)j * 3 * W + 2 * W + hd * dh + d];
                att[(size_t)r * W + hd * dh + d] = acc / sum;
            }
        }
    ref_linear(att, T, W, b->proj_w, b->proj_b, W, y);
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += y[i];
    ref_layernorm(x, h, T, W, b->ln2_w, b->ln2_b);
    ref_linear(h, T, W, b->fc1_w, b->fc1_b, M, mm);
    for (size_t i = 0; i < (size_t)T * M; i++) mm[i] = 0.5 * mm[i] * (1.0 + erf(mm[i] / sqrt(2.0)));
    ref_linear(mm, T, M, b->fc2_w, b->fc2_b, W, y);
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += y[i];
    free(h), free(qkv), free(att), free(mm), free(y), free(p);
}

/* pix [3][S][S] (already preprocessed) -> x [T][W] after `used` blocks, no post-norm. */
static void ref_encode(const tmodel *m, int used, const float *pix, double *x) {
    const int S = m->c.image_size, P = m->c.patch, g = S / P, W = m->c.width,
              T = clip_tokens(&m->c);
    for (int w = 0; w < W; w++) x[w] = m->cls[w];
    for (int py = 0; py < g; py++)
        for (int px = 0; px < g; px++)
            for (int w = 0; w < W; w++) {
                double acc = 0.0;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            acc += (double)m->patch[(((size_t)w * 3 + ch) * P + ky) * P + kx] *
                                   pix[((size_t)ch * S + py * P + ky) * S + px * P + kx];
                x[(size_t)(1 + py * g + px) * W + w] = acc;
            }
    for (size_t i = 0; i < (size_t)T * W; i++) x[i] += m->pos[i];
    ref_layernorm(x, x, T, W, m->pre_w, m->pre_b);
    for (int i = 0; i < used; i++) ref_block(m, &m->b[i], x);
}

/* ---- 3 and 4. the encoder -------------------------------------------------------------------- */

static float *encode_or_die(const clip_weights *w, const float *img, int H, int W) {
    const clip_config *c = clip_weights_config(w);
    const size_t n = (size_t)clip_tokens(c) * c->width;
    float *tok = xmalloc(n * sizeof(float));
    char err[256];
    if (clip_encode(w, img, H, W, tok, err, sizeof err)) {
        fprintf(stderr, "clip_encode: %s\n", err);
        exit(2);
    }
    return tok;
}

static clip_weights *synth_or_die(const clip_config *c) {
    clip_weights *w;
    char err[256];
    if (clip_weights_synthetic(c, SEED, &w, err, sizeof err)) {
        fprintf(stderr, "clip_weights_synthetic: %s\n", err);
        exit(2);
    }
    return w;
}

/* fp32 GEMMs (OpenBLAS), fp32 residual stream, double norm statistics: relative error a few 1e-7
 * per block; the stated bound is the project's fp32 one. */
static void test_vs_reference(const tmodel *m, int used, const float *img, int H, int W,
                              float **tokens_out) {
    clip_config c = m->c;
    c.layers_used = used;
    clip_weights *w = synth_or_die(&c);
    const int T = clip_tokens(&c), S = c.image_size;
    float *tok = encode_or_die(w, img, H, W);
    float *pix = xmalloc((size_t)3 * S * S * sizeof(float));
    double *ref = xmalloc((size_t)T * c.width * sizeof(double));
    clip_preprocess(&c, img, H, W, pix);
    ref_encode(m, used, pix, ref);
    double e = tu_rel_err_d(tok, ref, (size_t)T * c.width);
    tu_check(e < 1e-5,
             "tiny encoder, %d of %d blocks, %dx%d image vs float64 loops: rel err %.2e (bound "
             "1e-5, fp32)",
             used, c.layers, H, W, e);
    free(pix);
    free(ref);
    clip_weights_free(w);
    if (tokens_out)
        *tokens_out = tok;
    else
        free(tok);
}

static void test_presets(void) {
    clip_config c;
    char err[256];
    int rc = clip_config_preset(&c, "full", err, sizeof err);
    tu_check(!rc && c.image_size == 224 && c.patch == 14 && c.width == 1280 && c.layers == 32 &&
                 c.layers_used == 31 && c.heads == 16 && c.mlp == 5120 && clip_tokens(&c) == 257,
             "preset full: 224/14, width 1280, 31 of 32 layers, 16 heads x %d, mlp 5120, %d tokens",
             c.width / c.heads, clip_tokens(&c));
    rc = clip_config_preset(&c, "tiny", err, sizeof err);
    tu_check(!rc && c.width == 48 && c.heads == 3 && c.mlp == 96 && c.layers == 4 &&
                 c.layers_used == 3 && clip_tokens(&c) == 257,
             "preset tiny: width 48, 3 heads, mlp 96, 3 of 4 layers, %d tokens", clip_tokens(&c));
    rc = clip_config_preset(&c, "huge", err, sizeof err);
    tu_check(rc && strstr(err, "huge"), "unknown preset refused: %s", err);
    c = tiny_config();
    c.layers_used = 5;
    clip_weights *w = NULL;
    rc = clip_weights_synthetic(&c, 1, &w, err, sizeof err);
    tu_check(rc && !w && strstr(err, "layers_used"), "layers_used 5 > layers 4 refused: %s", err);
}

static void test_encoder(void) {
    const clip_config c = tiny_config();
    tmodel *m = xmalloc(sizeof *m);
    clip_config c4 = c;
    c4.layers_used = 4;
    tm_build(m, &c4);
    const int H = 352, W = 640, T = clip_tokens(&c), D = c.width;
    float *img = xmalloc((size_t)3 * H * W * sizeof(float));
    random_image(img, H, W, 77);

    float *tok3 = NULL, *tok4 = NULL;
    test_vs_reference(m, 1, img, H, W, NULL); /* embedding, pre-norm and one block */
    test_vs_reference(m, 3, img, H, W, &tok3);
    test_vs_reference(m, 4, img, H, W, &tok4);
    test_vs_reference(m, 3, img, 224, 224, NULL);

    double d34 = tu_rel_err(tok4, tok3, (size_t)T * D);
    tu_check(d34 > 1e-2, "layers_used respected: 4 blocks vs 3 blocks differ by rel %.3f", d34);

    /* Class token row against every patch row. */
    double closest = INFINITY;
    for (int r = 1; r < T; r++)
        closest = fmin(closest, tu_max_abs(tok3, tok3 + (size_t)r * D, (size_t)D));
    tu_check(closest > 1e-2,
             "class token row differs from all 256 patch rows: min max|diff| = %.3f", closest);

    /* Exactly T x D floats written: a canary after them survives, nothing non-finite inside. */
    clip_weights *w = synth_or_die(&c);
    const size_t n = (size_t)T * D;
    float *buf = xmalloc((n + 64) * sizeof(float));
    for (size_t i = 0; i < n + 64; i++) buf[i] = -12345.0f;
    char err[256];
    int rc = clip_encode(w, img, H, W, buf, err, sizeof err);
    int canary = 1, finite = 1, written = 1;
    for (size_t i = n; i < n + 64; i++) canary &= buf[i] == -12345.0f;
    for (size_t i = 0; i < n; i++) finite &= isfinite(buf[i]) != 0, written &= buf[i] != -12345.0f;
    tu_check(!rc && canary && finite && written && memcmp(buf, tok3, n * sizeof(float)) == 0,
             "output is %d tokens x %d: all written, finite, nothing past the end, repeatable bit "
             "for bit",
             T, D);
    rc = clip_encode(w, img, 0, W, buf, err, sizeof err);
    tu_check(rc != 0, "image height 0 refused: %s", err);
    clip_weights_free(w);

    free(tok3), free(tok4), free(img), free(buf);
    tm_free(m);
    free(m);
}

/* ---- 5. loading ------------------------------------------------------------------------------ */

typedef enum { NAMES_OFFICIAL, NAMES_HF_PREFIXED, NAMES_HF_BARE } names_kind;

/* The 5.6 table, written out again here: official key -> HF keys (3 for the fused q/k/v). */
static int hf_keys(const char *official, const char *prefix, char keys[3][128]) {
    static const char *const top[][2] = {
        {"visual.cls_embedding", "embeddings.class_embedding"},
        {"visual.patch_embedding.weight", "embeddings.patch_embedding.weight"},
        {"visual.pos_embedding", "embeddings.position_embedding.weight"},
        {"visual.pre_norm.weight", "pre_layrnorm.weight"},
        {"visual.pre_norm.bias", "pre_layrnorm.bias"},
    };
    static const char *const leaf[][2] = {
        {"norm1.", "layer_norm1."}, {"attn.proj.", "self_attn.out_proj."},
        {"norm2.", "layer_norm2."}, {"mlp.0.", "mlp.fc1."},
        {"mlp.2.", "mlp.fc2."},
    };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (!strcmp(official, top[i][0])) {
            snprintf(keys[0], 128, "%s%s", prefix, top[i][1]);
            return 1;
        }
    int blk, off = 0;
    if (sscanf(official, "visual.transformer.%d.%n", &blk, &off) != 1 || !off) return 0;
    const char *rest = official + off;
    if (!strncmp(rest, "attn.to_qkv.", 12)) {
        const char qkv[3] = {'q', 'k', 'v'};
        for (int k = 0; k < 3; k++)
            snprintf(keys[k], 128, "%sencoder.layers.%d.self_attn.%c_proj.%s", prefix, blk, qkv[k],
                     rest + 12);
        return 3;
    }
    for (size_t i = 0; i < sizeof leaf / sizeof leaf[0]; i++)
        if (!strncmp(rest, leaf[i][0], strlen(leaf[i][0]))) {
            snprintf(keys[0], 128, "%sencoder.layers.%d.%s%s", prefix, blk, leaf[i][1],
                     rest + strlen(leaf[i][0]));
            return 1;
        }
    return 0;
}

typedef struct fixture {
    names_kind names;
    int blocks;             /* blocks written (the checkpoint's first `blocks`) */
    int extras;             /* the tensors a real file has and the encoder skips */
    const char *omit;       /* a key left out */
    const char *bad_shape;  /* a key written with its last dimension one short */
    const char *nan_key;    /* a key with a NaN in it */
    const char *unexpected; /* an extra key that is no CLIP tensor */
} fixture;

static int add_tensor(st_writer *sw, const fixture *f, const char *key, const int64_t *shape,
                      int ndim, const float *data, size_t numel) {
    if (f->omit && !strcmp(key, f->omit)) return 0;
    int64_t sh[4] = {0};
    if (ndim) memcpy(sh, shape, (size_t)ndim * sizeof *sh);
    float *copy = xmalloc(numel * sizeof(float));
    memcpy(copy, data, numel * sizeof(float));
    if (f->bad_shape && !strcmp(key, f->bad_shape)) sh[ndim - 1] -= 1;
    if (f->nan_key && !strcmp(key, f->nan_key)) copy[numel / 2] = NAN;
    char err[256];
    int rc = st_writer_add_f32(sw, key, sh, ndim, copy, err, sizeof err);
    if (rc) fprintf(stderr, "st_writer_add_f32: %s\n", err);
    free(copy);
    return rc;
}

static int write_fixture(const tmodel *m, const fixture *f, const char *path) {
    const char *prefix = f->names == NAMES_HF_PREFIXED ? "vision_model." : "";
    const int64_t W = m->c.width, T = clip_tokens(&m->c);
    st_writer *sw = st_writer_create();
    int rc = 0;
    for (int i = 0; i < m->n && !rc; i++) {
        const tparam *p = &m->p[i];
        int blk = -1;
        if (sscanf(p->name, "visual.transformer.%d.", &blk) == 1 && blk >= f->blocks) continue;
        if (f->names == NAMES_OFFICIAL) {
            rc = add_tensor(sw, f, p->name, p->shape, p->ndim, p->data, p->numel);
            continue;
        }
        char keys[3][128];
        int nk = hf_keys(p->name, prefix, keys);
        int64_t sh[4];
        memcpy(sh, p->shape, sizeof sh);
        int nd = p->ndim;
        if (!strcmp(p->name, "visual.cls_embedding")) nd = 1, sh[0] = W;
        if (!strcmp(p->name, "visual.pos_embedding")) nd = 2, sh[0] = T, sh[1] = W;
        sh[0] /= nk;
        for (int k = 0; k < nk && !rc; k++)
            rc = add_tensor(sw, f, keys[k], sh, nd, p->data + (size_t)k * (p->numel / (size_t)nk),
                            p->numel / (size_t)nk);
    }
    const float junk[64] = {0};
    if (f->extras && !rc) {
        if (f->names == NAMES_OFFICIAL) {
            rc |= add_tensor(sw, f, "log_scale", NULL, 0, junk, 1);
            rc |=
                add_tensor(sw, f, "textual.token_embedding.weight", (int64_t[]){8, 4}, 2, junk, 32);
            rc |= add_tensor(sw, f, "textual.head.weight", (int64_t[]){4, 4}, 2, junk, 16);
            rc |= add_tensor(sw, f, "visual.post_norm.weight", (int64_t[]){W}, 1, junk, (size_t)W);
            rc |= add_tensor(sw, f, "visual.post_norm.bias", (int64_t[]){W}, 1, junk, (size_t)W);
            rc |= add_tensor(sw, f, "visual.head", (int64_t[]){W, 1}, 2, junk, (size_t)W);
        } else {
            char k[128];
            snprintf(k, sizeof k, "%spost_layernorm.weight", prefix);
            rc |= add_tensor(sw, f, k, (int64_t[]){W}, 1, junk, (size_t)W);
            snprintf(k, sizeof k, "%spost_layernorm.bias", prefix);
            rc |= add_tensor(sw, f, k, (int64_t[]){W}, 1, junk, (size_t)W);
            snprintf(k, sizeof k, "%sembeddings.position_ids", prefix);
            rc |= add_tensor(sw, f, k, (int64_t[]){1, 8}, 2, junk, 8);
            rc |= add_tensor(sw, f, "visual_projection.weight", (int64_t[]){1, W}, 2, junk,
                             (size_t)W);
        }
    }
    if (f->unexpected && !rc) rc = add_tensor(sw, f, f->unexpected, (int64_t[]){4}, 1, junk, 4);
    char err[256];
    if (!rc) rc = st_writer_save(sw, path, err, sizeof err);
    if (rc) fprintf(stderr, "writing %s failed\n", path);
    st_writer_destroy(sw);
    return rc;
}

static const char *names_label(names_kind k) {
    return k == NAMES_OFFICIAL      ? "official"
           : k == NAMES_HF_PREFIXED ? "HF vision_model."
                                    : "HF bare";
}

/* Loads `f` with config c; on success compares clip_encode bit for bit with `want`. */
static void check_load_ok(const tmodel *m, const clip_config *c, const fixture *f, const char *what,
                          const float *img, const float *want) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/ok.safetensors", tmpdir);
    if (write_fixture(m, f, path)) {
        tu_check(0, "%s: could not write the fixture", what);
        return;
    }
    clip_weights *w = NULL;
    int rc = clip_weights_load(c, path, &w, err, sizeof err);
    if (rc) {
        tu_check(0, "%s (%s names): load failed: %s", what, names_label(f->names), err);
        return;
    }
    float *tok = encode_or_die(w, img, 352, 640);
    const size_t n = (size_t)clip_tokens(c) * c->width;
    tu_check(memcmp(tok, want, n * sizeof(float)) == 0,
             "%s (%s names): tokens bitwise equal to the synthetic weights' (max |diff| %.2e)",
             what, names_label(f->names), tu_max_abs(tok, want, n));
    free(tok);
    clip_weights_free(w);
}

/* Loading must fail with a message naming the file and `key`. */
static void check_load_fails(const tmodel *m, const clip_config *c, const fixture *f,
                             const char *what, const char *key) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    if (write_fixture(m, f, path)) {
        tu_check(0, "%s: could not write the fixture", what);
        return;
    }
    clip_weights *w = (clip_weights *)&w; /* must come back NULL */
    int rc = clip_weights_load(c, path, &w, err, sizeof err);
    tu_check(rc != 0 && w == NULL && strstr(err, key) && strstr(err, path),
             "%s refused, naming the file and '%s': %s", what, key, err);
    if (rc == 0) clip_weights_free(w);
}

static void test_loading(void) {
    const clip_config c = tiny_config();
    clip_config c4 = c;
    c4.layers_used = 4;
    tmodel *m = xmalloc(sizeof *m);
    tm_build(m, &c4);
    float *img = xmalloc((size_t)3 * 352 * 640 * sizeof(float));
    random_image(img, 352, 640, 78);
    clip_weights *sw3 = synth_or_die(&c), *sw4 = synth_or_die(&c4);
    float *want3 = encode_or_die(sw3, img, 352, 640), *want4 = encode_or_die(sw4, img, 352, 640);
    clip_weights_free(sw3);
    clip_weights_free(sw4);

    for (int k = 0; k < 3; k++) {
        const fixture full = {.names = (names_kind)k, .blocks = 4, .extras = 1};
        check_load_ok(m, &c, &full, "4-block file with the unused tensors, 3 blocks run", img,
                      want3);
        const fixture trunc = {.names = (names_kind)k, .blocks = 3};
        check_load_ok(m, &c, &trunc, "3-block file, nothing else", img, want3);
        check_load_ok(m, &c4, &full, "4-block file, 4 blocks run", img, want4);
    }

    fixture f = {.names = NAMES_OFFICIAL, .blocks = 4, .extras = 1};
    f.omit = "visual.transformer.1.attn.proj.bias";
    check_load_fails(m, &c, &f, "missing key (official)", f.omit);
    f.omit = NULL, f.bad_shape = "visual.pos_embedding";
    check_load_fails(m, &c, &f, "pos_embedding [1, 257, 47] (official)", f.bad_shape);
    f.bad_shape = NULL, f.nan_key = "visual.transformer.2.mlp.0.weight";
    check_load_fails(m, &c, &f, "NaN in a weight (official)", f.nan_key);
    f.nan_key = NULL, f.unexpected = "visual.transformer.0.attn.extra";
    check_load_fails(m, &c, &f, "unknown key (official)", f.unexpected);
    f.unexpected = "visual.transformer.4.norm1.weight";
    check_load_fails(m, &c, &f, "block 4 in a 4-block config (official)", f.unexpected);
    f.unexpected = NULL, f.blocks = 3;
    check_load_fails(m, &c4, &f, "3-block file for 4 blocks run",
                     "visual.transformer.3.norm1.weight");

    f = (fixture){.names = NAMES_HF_PREFIXED, .blocks = 4, .extras = 1};
    f.omit = "vision_model.encoder.layers.2.self_attn.k_proj.weight";
    check_load_fails(m, &c, &f, "missing k_proj (HF)", f.omit);
    f.omit = NULL, f.bad_shape = "vision_model.encoder.layers.0.mlp.fc1.weight";
    check_load_fails(m, &c, &f, "fc1 [96, 47] (HF)", f.bad_shape);
    f.bad_shape = NULL, f.unexpected = "text_model.embeddings.token_embedding.weight";
    check_load_fails(m, &c, &f, "text tower key in an HF vision file", f.unexpected);
    f = (fixture){.names = NAMES_HF_BARE, .blocks = 4, .extras = 1};
    f.bad_shape = "embeddings.class_embedding";
    check_load_fails(m, &c, &f, "class_embedding [47] (HF bare)", f.bad_shape);

    char path[512], err[512];
    snprintf(path, sizeof path, "%s/none.safetensors", tmpdir);
    clip_weights *w = NULL;
    int rc = clip_weights_load(&c, path, &w, err, sizeof err);
    tu_check(rc != 0 && !w && strstr(err, "none.safetensors"), "missing file refused: %s", err);

    free(want3), free(want4), free(img);
    tm_free(m);
    free(m);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wm-test-clip-XXXXXX");
    if (!mkdtemp(tmpdir)) return perror("mkdtemp"), 1;
    test_bicubic();
    test_normalize_constants();
    test_presets();
    test_encoder();
    test_loading();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) printf("note: could not remove %s\n", tmpdir);
    return tu_finish("test_clip");
}
