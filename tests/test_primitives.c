/* Each CPU reference primitive against an independent float64 computation written from the
 * formulas of model-dit.md (complex multiplication for RoPE, exp/log for frequencies, naive loops
 * for norms, linear layers and softmax attention), on random data. */
#include <complex.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/cpu/dit_cpu.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/rope.h"
#include "test_util.h"

#define F32_BOUND 1e-6 /* float32 rounding of O(1) values through a few operations */

static void test_rope3d(void) {
    const int dh = 128, heads = 3, gh = 4, gw = 5, n = gh * gw, D = heads * dh;
    float *x = malloc(sizeof(float) * n * D), *y = malloc(sizeof(float) * n * D);
    double *ref = malloc(sizeof(double) * n * D);
    const double positions[] = {0, 5, 1023, 1000003};
    for (size_t pi = 0; pi < sizeof positions / sizeof *positions; pi++) {
        double pos_t = positions[pi];
        tu_fill(x, (size_t)n * D, 11 + pi, 2.0f);
        memcpy(y, x, sizeof(float) * n * D);
        rope3d_apply_frame(y, D, gh, gw, heads, dh, pos_t);
        /* reference: axis widths from the spec (44, 42, 42 for dh 128), w = e^(-ln(1e4) 2j/dim) */
        const int t_dim = dh - 4 * (dh / 6), hw_dim = 2 * (dh / 6);
        for (int tok = 0; tok < n; tok++)
            for (int h = 0; h < heads; h++)
                for (int p = 0; p < dh / 2; p++) {
                    double pos, dim;
                    int j;
                    if (p < t_dim / 2)
                        pos = pos_t, j = p, dim = t_dim;
                    else if (p < t_dim / 2 + hw_dim / 2)
                        pos = tok / gw, j = p - t_dim / 2, dim = hw_dim;
                    else
                        pos = tok % gw, j = p - t_dim / 2 - hw_dim / 2, dim = hw_dim;
                    double w = exp(-log(10000.0) * 2.0 * j / dim);
                    size_t o = (size_t)tok * D + (size_t)h * dh + 2 * (size_t)p;
                    double complex z = (x[o] + I * x[o + 1]) * cexp(I * pos * w);
                    ref[o] = creal(z), ref[o + 1] = cimag(z);
                }
        double e = tu_rel_err_d(y, ref, (size_t)n * D);
        tu_check(e < F32_BOUND,
                 "rope3d at temporal position %.0f vs complex multiply: rel err %.2e", pos_t, e);
    }
    /* rebase: rotate at p, then shift by -d == rotate at p - d */
    tu_fill(x, (size_t)n * D, 99, 1.0f);
    memcpy(y, x, sizeof(float) * n * D);
    rope3d_apply_frame(y, D, gh, gw, heads, dh, 1030.0);
    rope3d_shift_temporal(y, D, (size_t)n, heads, dh, -1027.0);
    float *z = malloc(sizeof(float) * n * D);
    memcpy(z, x, sizeof(float) * n * D);
    rope3d_apply_frame(z, D, gh, gw, heads, dh, 3.0);
    double e = tu_rel_err(y, z, (size_t)n * D);
    tu_check(e < 4 * F32_BOUND, "rope3d(1030) then shift(-1027) vs rope3d(3): rel err %.2e", e);
    free(x), free(y), free(z), free(ref);
}

static void test_rope_action(void) {
    const int dh = 64, heads = 4, rows = 7, D = heads * dh;
    float x[7 * 256], y[7 * 256];
    double ref[7 * 256];
    tu_fill(x, (size_t)rows * D, 5, 1.5f);
    memcpy(y, x, sizeof x);
    const float pos = 41.0f;
    rope_action_apply(y, D, (size_t)rows, heads, dh, 8, 256.0f, pos);
    int identity_exact = 1;
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads; h++)
            for (int p = 0; p < dh / 2; p++) {
                size_t o = (size_t)r * D + (size_t)h * dh + 2 * (size_t)p;
                if (p < 4) {
                    double w = pow(256.0, -2.0 * p / 8.0); /* 1, 1/4, 1/16, 1/64 */
                    double complex zz = (x[o] + I * x[o + 1]) * cexp(I * (double)pos * w);
                    ref[o] = creal(zz), ref[o + 1] = cimag(zz);
                } else {
                    ref[o] = x[o], ref[o + 1] = x[o + 1];
                    identity_exact &= y[o] == x[o] && y[o + 1] == x[o + 1];
                }
            }
    double e = tu_rel_err_d(y, ref, (size_t)rows * D);
    tu_check(e < F32_BOUND, "action rope (8 of 64 dims rotate) vs complex multiply: rel err %.2e",
             e);
    tu_check(identity_exact, "action rope leaves dims 8..63 bit-identical");
}

static void test_timestep(void) {
    const float ts[] = {1000.0f, 908.8427124023438f, 713.9794311523438f, 0.0f, 937.5f};
    float out[256];
    double worst = 0;
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        dit_timestep_sinusoid(256, ts[i], out);
        for (int k = 0; k < 128; k++) {
            double w = exp(-log(10000.0) * k / 128.0);
            double dc = fabs(out[k] - cos(ts[i] * w)), ds = fabs(out[128 + k] - sin(ts[i] * w));
            if (dc > worst) worst = dc;
            if (ds > worst) worst = ds;
        }
    }
    tu_check(worst < 1e-6, "timestep sinusoid [cos, sin], w_k = 10000^(-k/128): max abs err %.2e",
             worst);
}

static void test_sampler_schedule(void) {
    /* model-dit.md 7.2, as float32 bit patterns */
    const struct {
        eng_variant v;
        uint32_t tau[4], sigma[4];
    } want[] = {
        {ENG_VARIANT_UNIVERSAL,
         {0x447a0000, 0x446335ef, 0x44327eaf},
         {0x3f800000, 0x3f68a9eb, 0x3f36c75b}},
        {ENG_VARIANT_GTA_DRIVE,
         {0x447a0000, 0x446335ef, 0x44327eaf},
         {0x3f800000, 0x3f68a9eb, 0x3f36c75b}},
        {ENG_VARIANT_TEMPLERUN,
         {0x447a0000, 0x446a6000, 0x44505555, 0x441c4000},
         {0x3f800000, 0x3f700000, 0x3f555555, 0x3f200000}},
    };
    for (size_t i = 0; i < 3; i++) {
        eng_config c;
        eng_config_preset(&c, "full", want[i].v, NULL, 0);
        float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS];
        eng_sampler_schedule(&c, tau, sigma);
        int ok = 1;
        for (int k = 0; k < c.num_steps; k++) {
            uint32_t bt, bs;
            memcpy(&bt, &tau[k], 4), memcpy(&bs, &sigma[k], 4);
            ok &= bt == want[i].tau[k] && bs == want[i].sigma[k];
            if (bt != want[i].tau[k] || bs != want[i].sigma[k])
                printf("  step %d: tau %08x (want %08x) sigma %08x (want %08x)\n", k, bt,
                       want[i].tau[k], bs, want[i].sigma[k]);
        }
        tu_check(ok, "%s sampler: %d tau/sigma pairs bit-equal to the spec table",
                 eng_variant_name(want[i].v), c.num_steps);
    }
}

static void test_norms(void) {
    enum { R = 9, N = 1536 };
    float *x = malloc(sizeof(float) * R * N), *y = malloc(sizeof(float) * R * N);
    float g[N], b[N];
    double *ref = malloc(sizeof(double) * R * N);
    tu_fill(x, R * N, 3, 4.0f);
    for (int i = 0; i < R * N; i++) x[i] += 3.0f; /* non-zero mean: checks the centring */
    tu_fill(g, N, 4, 1.0f), tu_fill(b, N, 5, 0.5f);
    for (int pass = 0; pass < 2; pass++) {
        cpu_layernorm(x, y, R, N, 1e-6f, pass ? g : NULL, pass ? b : NULL);
        for (int r = 0; r < R; r++) {
            double m = 0, v = 0;
            for (int i = 0; i < N; i++) m += x[r * N + i];
            m /= N;
            for (int i = 0; i < N; i++) v += (x[r * N + i] - m) * (x[r * N + i] - m);
            v /= N;
            for (int i = 0; i < N; i++) {
                double n = (x[r * N + i] - m) / sqrt(v + 1e-6);
                ref[r * N + i] = pass ? n * g[i] + b[i] : n;
            }
        }
        double e = tu_rel_err_d(y, ref, R * N);
        tu_check(e < F32_BOUND, "layernorm%s (biased variance, eps 1e-6) vs double: rel err %.2e",
                 pass ? " affine" : "", e);
    }
    /* RMS over all 1536 channels with gain, and per 64-wide head without gain */
    cpu_rmsnorm(x, y, R, N, 1e-6f, g);
    for (int r = 0; r < R; r++) {
        double sq = 0;
        for (int i = 0; i < N; i++) sq += (double)x[r * N + i] * x[r * N + i];
        for (int i = 0; i < N; i++) ref[r * N + i] = x[r * N + i] / sqrt(sq / N + 1e-6) * g[i];
    }
    double e = tu_rel_err_d(y, ref, R * N);
    tu_check(e < F32_BOUND, "rmsnorm over 1536 with gain vs double: rel err %.2e", e);
    cpu_rmsnorm(x, y, (size_t)R * N / 64, 64, 1e-6f, NULL);
    for (int grp = 0; grp < R * N / 64; grp++) {
        double sq = 0;
        for (int i = 0; i < 64; i++) sq += (double)x[grp * 64 + i] * x[grp * 64 + i];
        for (int i = 0; i < 64; i++) ref[grp * 64 + i] = x[grp * 64 + i] / sqrt(sq / 64 + 1e-6);
    }
    e = tu_rel_err_d(y, ref, R * N);
    tu_check(e < F32_BOUND, "rmsnorm per 64-wide head, no gain, vs double: rel err %.2e", e);

    /* LN + modulation per frame: 2 frames of 3 tokens, D = 1536 */
    const int F = 2, S = 3;
    float mod[2 * 2 * N];
    tu_fill(mod, sizeof mod / sizeof *mod, 6, 0.3f);
    dit_norm_modulate(x, y, F, S, N, 1e-6f, mod, mod + N, 2 * N);
    for (int t = 0; t < F * S; t++) {
        const float *sh = mod + (t / S) * 2 * N, *sc = sh + N;
        double m = 0, v = 0;
        for (int i = 0; i < N; i++) m += x[t * N + i];
        m /= N;
        for (int i = 0; i < N; i++) v += (x[t * N + i] - m) * (x[t * N + i] - m);
        v /= N;
        for (int i = 0; i < N; i++)
            ref[t * N + i] = (x[t * N + i] - m) / sqrt(v + 1e-6) * (1.0 + sc[i]) + sh[i];
    }
    e = tu_rel_err_d(y, ref, (size_t)F * S * N);
    tu_check(e < F32_BOUND, "LN * (1 + scale[f]) + shift[f] vs double: rel err %.2e", e);
    free(x), free(y), free(ref);
}

static void test_linear(void) {
    enum { R = 37, IN = 144, OUT = 96 };
    float x[R * IN], w[OUT * IN], b[OUT], y[R * OUT];
    double ref[R * OUT];
    tu_fill(x, R * IN, 7, 1.0f), tu_fill(w, OUT * IN, 8, 0.1f), tu_fill(b, OUT, 9, 1.0f);
    cpu_linear(x, IN, R, IN, w, b, OUT, y, OUT);
    for (int r = 0; r < R; r++)
        for (int o = 0; o < OUT; o++) {
            double acc = b[o];
            for (int i = 0; i < IN; i++) acc += (double)x[r * IN + i] * w[o * IN + i];
            ref[r * OUT + o] = acc;
        }
    double e = tu_rel_err_d(y, ref, R * OUT);
    tu_check(e < F32_BOUND, "linear x W^T + b (sgemm) vs double loops: rel err %.2e", e);
}

/* Naive softmax attention in double with a frame mask. */
static void naive_attention(const float *q, const float *k, const float *v, int lq, int lk,
                            int heads, int dh, const unsigned char *mask, int fk, int sq, int sk,
                            double *o) {
    const int D = heads * dh;
    double *p = malloc(sizeof(double) * lk);
    for (int r = 0; r < lq; r++)
        for (int h = 0; h < heads; h++) {
            double mx = -INFINITY, sum = 0;
            for (int c = 0; c < lk; c++) {
                int vis = !mask || mask[(r / sq) * fk + c / sk];
                double d = 0;
                for (int i = 0; i < dh; i++)
                    d += (double)q[r * D + h * dh + i] * k[c * D + h * dh + i];
                p[c] = vis ? d / sqrt((double)dh) : -INFINITY;
                if (p[c] > mx) mx = p[c];
            }
            for (int c = 0; c < lk; c++) sum += p[c] = p[c] == -INFINITY ? 0 : exp(p[c] - mx);
            for (int i = 0; i < dh; i++) {
                double acc = 0;
                for (int c = 0; c < lk; c++) acc += p[c] * v[c * D + h * dh + i];
                o[r * D + h * dh + i] = sum > 0 ? acc / sum : 0;
            }
        }
    free(p);
}

static void test_attention(void) {
    enum { HEADS = 3, DH = 32, D = HEADS * DH, FQ = 3, FK = 4, SQ = 5, SK = 6 };
    enum { LQ = FQ * SQ, LK = FK * SK };
    float q[LQ * D], k[LK * D], v[LK * D], o[LQ * D], scratch[LQ * LK];
    double ref[LQ * D];
    tu_fill(q, LQ * D, 21, 2.0f), tu_fill(k, LK * D, 22, 2.0f), tu_fill(v, LK * D, 23, 1.0f);
    /* frame 0 sees key frames 0-1, frame 1 sees 1-3, frame 2 sees nothing */
    const unsigned char mask[FQ * FK] = {1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0};
    cpu_attn_args a = {.q = q,
                       .k = k,
                       .v = v,
                       .o = o,
                       .ldq = D,
                       .ldk = D,
                       .ldv = D,
                       .ldo = D,
                       .lq = LQ,
                       .lk = LK,
                       .heads = HEADS,
                       .dh = DH,
                       .mask = mask,
                       .frames_q = FQ,
                       .frames_k = FK,
                       .rows_per_frame_q = SQ,
                       .rows_per_frame_k = SK};
    cpu_attention(&a, scratch);
    naive_attention(q, k, v, LQ, LK, HEADS, DH, mask, FK, SQ, SK, ref);
    double e = tu_rel_err_d(o, ref, LQ * D);
    tu_check(e < F32_BOUND, "masked attention (sgemm + softmax) vs naive double: rel err %.2e", e);
    int zeros = 1;
    for (int i = 2 * SQ * D; i < LQ * D; i++) zeros &= o[i] == 0.0f;
    tu_check(zeros, "a query frame with no visible key gets zeros");
    /* unmasked, and the per-row loop version */
    a.mask = NULL;
    cpu_attention(&a, scratch);
    naive_attention(q, k, v, LQ, LK, HEADS, DH, NULL, FK, SQ, SK, ref);
    e = tu_rel_err_d(o, ref, LQ * D);
    tu_check(e < F32_BOUND, "unmasked attention vs naive double: rel err %.2e", e);
    unsigned char vis[LK];
    for (int c = 0; c < LK; c++) vis[c] = mask[FK + c / SK]; /* frame 1's window, per key row */
    for (int r = 0; r < LQ; r++)
        cpu_attention_row(q + r * D, k, D, v, D, LK, vis, HEADS, DH, o + r * D);
    naive_attention(q, k, v, LQ, LK, HEADS, DH, vis, LK, LQ, 1, ref); /* one mask row for all */
    e = tu_rel_err_d(o, ref, LQ * D);
    tu_check(e < F32_BOUND, "per-row attention with key visibility vs naive double: rel err %.2e",
             e);
}

static void test_patchify(void) {
    eng_config c;
    eng_config_preset(&c, "tiny", ENG_VARIANT_UNIVERSAL, NULL, 0);
    const int F = 3, H = c.lat_h, W = c.lat_w, S = eng_tokens_per_frame(&c), gw = eng_grid_w(&c);
    float *x = malloc(sizeof(float) * 16 * F * H * W),
          *cond = malloc(sizeof(float) * 20 * F * H * W);
    float *pt = malloc(sizeof(float) * F * S * 144), *tok = malloc(sizeof(float) * F * S * 64);
    float *back = malloc(sizeof(float) * 16 * F * H * W);
    tu_fill(x, (size_t)16 * F * H * W, 31, 1.0f), tu_fill(cond, (size_t)20 * F * H * W, 32, 1.0f);
    dit_patchify(&c, x, cond, F, pt);
    int ok = 1;
    for (int f = 0; f < F; f++)
        for (int hh = 0; hh < H / 2; hh++)
            for (int ww = 0; ww < gw; ww++)
                for (int ch = 0; ch < 36; ch++)
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            int n = f * S + hh * gw + ww;
                            float want =
                                ch < 16
                                    ? x[((ch * F + f) * H + 2 * hh + a) * W + 2 * ww + b]
                                    : cond[(((ch - 16) * F + f) * H + 2 * hh + a) * W + 2 * ww + b];
                            ok &= pt[n * 144 + ch * 4 + a * 2 + b] == want;
                        }
    tu_check(ok, "patchify: column c*4 + a*2 + b of token (f,h,w) is z[c][f][2h+a][2w+b]");
    /* unpatchify(k = 32a + 16b + c) of the noisy channels' patch columns restores x exactly */
    for (int n = 0; n < F * S; n++)
        for (int ch = 0; ch < 16; ch++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    tok[n * 64 + 32 * a + 16 * b + ch] = pt[n * 144 + ch * 4 + a * 2 + b];
    dit_unpatchify(&c, tok, F, back);
    tu_check(memcmp(back, x, sizeof(float) * 16 * F * H * W) == 0,
             "patchify -> reorder -> unpatchify round trip is bit-exact");
    free(x), free(cond), free(pt), free(tok), free(back);
}

static void test_activations(void) {
    /* reference values: GELU_tanh(1), GELU_erf(1) = Phi(1), SiLU(1) = 1 / (1 + e^-1) */
    double e1 = fabs(cpu_gelu_tanh(1.0f) - 0.8411919906082768);
    double e2 = fabs(cpu_gelu_erf(1.0f) - 0.8413447460685429);
    double e3 = fabs(cpu_silu(1.0f) - 0.7310585786300049);
    double e4 = fabs(cpu_gelu_tanh(-3.0f) - (-0.0036373920817729943));
    tu_check(
        e1 < 1e-7 && e2 < 1e-7 && e3 < 1e-7 && e4 < 1e-7,
        "gelu_tanh(1), gelu_erf(1), silu(1), gelu_tanh(-3) vs known values: %.1e %.1e %.1e %.1e",
        e1, e2, e3, e4);
}

int main(void) {
    test_rope3d();
    test_rope_action();
    test_timestep();
    test_sampler_schedule();
    test_norms();
    test_linear();
    test_attention();
    test_patchify();
    test_activations();
    return tu_finish("test_primitives");
}
