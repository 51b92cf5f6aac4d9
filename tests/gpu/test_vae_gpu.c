/* GPU check of the CUDA VAE (engine/cuda/vae_cuda.h, vae_kernels.h) against the float32 CPU
 * reference (engine/vae.h) with the same synthetic weights (vae_weights_synthetic), then its
 * timing at full size. Runs on the GPU host only (not a ctest): tests/gpu/run_vae_gpu.sh.
 *
 * (k) the conv kernel alone on random bf16 data vs a float64 loop over the same bf16 inputs, at
 *     several channel counts and every mode the VAE uses (causal 3x3x3 with and without history,
 *     residual in place, 1x1, nearest-x2 3x3, stride-2 3x3, the time_conv phase interleave, the
 *     stride-2 time conv, the fp32 clamped head); and the RMS norm + SiLU vs float64.
 *     Bounds: bf16 out 6e-3 (one bf16 rounding of the result, 2^-9 = 2e-3 rms relative at most),
 *     fp32 out 1e-5 (fp32 accumulation of exact products).
 *     Also the sub-pixel form of the upsampling conv (4 launches vs the up2 definition) and the
 *     RMS norm + SiLU fused into the conv epilogue (vs float64 of the bf16-rounded output).
 *     The haloed 3x3 tiles (WMCUDA_VAE_TILE_HALO, _K32, _FRAG, _WG on wgmma) on the same float64
 *     reference and bounds: 4x64 / 8x32 / 16x16 tiles, ragged tiles, K chunks and N, history or
 *     not, kt 1, residual, fp32 clamped output, fused norm.
 * (a) tiny config, latents 4x6: 4 streaming blocks (3 latents -> 9 frames, then 12 each), reset,
 *     2 more blocks; frames rel err per block <= BOUND_FRAMES_TINY; the device RGB8 must equal
 *     vae_frames_to_rgb8 of the device frames exactly. Each block is decoded by three GPU
 *     decoders: default paths (sub-pixel, tuned tiles), plain paths, fused paths (sub-pixel,
 *     norms fused into conv epilogues, head as partial products). Same for the encoder.
 * (b) full config at latents 6x10 (48x80 video), 3 blocks, and 2x16 (64- and 128-wide frames,
 *     where the default path runs the wgmma conv), 2 blocks; same checks, <= BOUND_FRAMES.
 * (c) the encoder (1 frame, then a 4-frame chunk, then 8 frames = 2 passes), tiny at 32x48 and
 *     full at 48x80: latents rel err <= BOUND_LAT.
 * (t) timing at 44x80 -> 352x640, full config: first block, steady block (median of 7 after 2
 *     warm-ups, cudaEvents) for the default paths and with the wgmma conv, the halo tiles or
 *     both off, its per-layer and per-stage breakdown, encoder image + 4-frame chunk, and the main
 *     conv shapes alone (each tile variant), with
 *     TFLOP/s from the FLOP counts of model-vae-clip.md section 8.
 * rel err = ||gpu - cpu|| / ||cpu||; a non-finite value fails. WM_VAE_TEST_PARTS=k,a,b,c,t
 * (default all); WM_VAE_TEST_NO_WGMMA set: the decoders' default path without the wgmma conv. Exit
 * status 0 pass, 1 a check failed, 2 a setup or CUDA error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "engine/cuda/bf16.h"
#include "engine/cuda/vae_cuda.h"
#include "engine/cuda/vae_kernels.h"
#include "engine/engine.h"
#include "engine/vae.h"

#include "tests/gpu/gpu_test.h"

/* bf16 activations through ~40 layers (no CPU emulation of the bf16 rounding exists to predict
 * them). Seen on an H200 (2026-11-27), every path: frames 2.8e-2 .. 3.0e-2 (tiny: 8-channel
 * norms), 1.4e-2 .. 1.8e-2 (full); latents 1.7e-3 .. 3.5e-3. A wrong cache frame, phase or tap
 * gives O(1). */
#define BOUND_FRAMES_TINY 5e-2
#define BOUND_FRAMES      3e-2
#define BOUND_LAT         1e-2
#define BOUND_BF16        6e-3
#define BOUND_F32         1e-5
#define SEED              4242u

static int g_failures, g_checks;

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void check(const char *what, double e, double bound) {
    const int pass = e <= bound; /* NaN fails */
    printf("%s %-56s rel err %.3e (bound %.1e)\n", pass ? "ok  " : "FAIL", what, e, bound);
    g_checks++;
    if (!pass) g_failures++;
}

static void check_true(const char *what, int ok) {
    printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    g_checks++;
    if (!ok) g_failures++;
}

/* ---- (k) the conv kernel alone
 * --------------------------------------------------------------------- */

typedef struct conv_case {
    const char *name;
    int cin, cout, hist_n, has_hist, hin, win, t_out, hout, wout, kt, kh, kw, tstride, sstride,
        spad, up2, f0, tmul, csplit, res, y_f32, clamp, tile;
} conv_case;

static wmcuda_bf16 *rand_bf16(size_t n, float scale, float *shadow) {
    wmcuda_bf16 *h = xmalloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        h[i] = wm_bf16_from_float(urand() * scale);
        shadow[i] = wm_bf16_to_float(h[i]);
    }
    return h;
}

static void *to_dev(const void *h, size_t bytes) {
    void *d = NULL;
    CK(cudaMalloc(&d, bytes ? bytes : 16));
    if (bytes) CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* mode 0: as described; MODE_SUBPIXEL: an up2 3x3 case run as four 2x2 sub-pixel convs with
 * weights summed here; MODE_NORM: also the fused RMS norm + SiLU output ny, checked against the
 * float64 norm of the bf16-rounded reference y. */
enum { MODE_PLAIN, MODE_SUBPIXEL, MODE_NORM };

static void conv_case_run(const conv_case *k, int mode) {
    const int csplit = k->csplit ? k->csplit : k->cout, taps = k->kt * k->kh * k->kw;
    const int tin = (k->t_out - 1) * k->tstride + k->kt - k->hist_n;
    const size_t fe = (size_t)k->hin * k->win * k->cin, HWo = (size_t)k->hout * k->wout;
    const int frames_out = k->f0 + k->tmul * (k->t_out - 1) + k->cout / csplit;
    const size_t ny = (size_t)frames_out * HWo * (size_t)csplit, K = (size_t)taps * k->cin;
    float *xs = xmalloc((size_t)(tin > 0 ? tin : 1) * fe * 4), *hs = xmalloc(2 * fe * 4 + 4);
    float *ws = xmalloc((size_t)k->cout * K * 4), *bs = xmalloc((size_t)k->cout * 4);
    float *rs = xmalloc(ny * 4), *ref = xmalloc(ny * 8), *out = xmalloc(ny * 4);
    wmcuda_bf16 *xh = rand_bf16((size_t)(tin > 0 ? tin : 1) * fe, 1.0f, xs);
    wmcuda_bf16 *hh = rand_bf16((size_t)(k->hist_n ? k->hist_n : 1) * fe, 1.0f, hs);
    wmcuda_bf16 *wh = rand_bf16((size_t)k->cout * K, (float)(1.0 / sqrt((double)K)), ws);
    wmcuda_bf16 *rh = rand_bf16(ny, 1.0f, rs);
    for (int n = 0; n < k->cout; n++) bs[n] = 0.1f * urand();
    /* float64 reference straight from the header's definition */
    double *refd = (double *)ref;
    for (size_t i = 0; i < ny; i++) refd[i] = k->res ? rs[i] : 0.0;
    const int hl = k->up2 ? 2 * k->hin : k->hin, wl = k->up2 ? 2 * k->win : k->win;
    for (int t = 0; t < k->t_out; t++)
        for (int yo = 0; yo < k->hout; yo++)
            for (int xo = 0; xo < k->wout; xo++)
                for (int n = 0; n < k->cout; n++) {
                    double s = bs[n];
                    for (int tap = 0; tap < taps; tap++) {
                        const int dt = tap / (k->kh * k->kw), dy = tap / k->kw % k->kh,
                                  dx = tap % k->kw;
                        const int si = t * k->tstride + dt - k->hist_n;
                        const float *fr =
                            si < 0 ? (k->has_hist ? hs + (size_t)(si + k->hist_n) * fe : NULL)
                                   : xs + (size_t)si * fe;
                        if (!fr) continue;
                        int yy, xx;
                        if (k->up2)
                            yy = yo + dy - k->spad, xx = xo + dx - k->spad;
                        else
                            yy = yo * k->sstride + dy - k->spad,
                            xx = xo * k->sstride + dx - k->spad;
                        if (yy < 0 || yy >= hl || xx < 0 || xx >= wl) continue;
                        if (k->up2) yy /= 2, xx /= 2;
                        const float *px = fr + ((size_t)yy * k->win + xx) * k->cin;
                        const float *pw = ws + ((size_t)n * taps + tap) * k->cin;
                        for (int c = 0; c < k->cin; c++) s += (double)pw[c] * px[c];
                    }
                    const int ph = n / csplit, c = n % csplit;
                    const size_t o =
                        ((size_t)(k->f0 + t * k->tmul + ph) * HWo + (size_t)yo * k->wout + xo) *
                            csplit +
                        c;
                    double v = s + refd[o];
                    if (k->clamp) v = v < -1 ? -1 : v > 1 ? 1 : v;
                    refd[o] = v;
                }
    for (size_t i = 0; i < ny; i++)
        ref[i] = (float)refd[i]; /* in place: i-th float <= i-th double */
    /* device */
    void *xd = to_dev(xh, (size_t)(tin > 0 ? tin : 1) * fe * 2);
    void *hd = to_dev(hh, (size_t)(k->hist_n ? k->hist_n : 1) * fe * 2);
    void *wd = to_dev(wh, (size_t)k->cout * K * 2), *bd = to_dev(bs, (size_t)k->cout * 4);
    void *yd = NULL, *rd = NULL;
    const size_t yb = ny * (k->y_f32 ? 4 : 2);
    CK(cudaMalloc(&yd, yb));
    if (k->res) { /* residual in place: y starts as res */
        CK(cudaMemcpy(yd, rh, ny * 2, cudaMemcpyHostToDevice));
        rd = yd;
    } else {
        CK(cudaMemset(yd, 0, yb)); /* positions the conv does not write stay 0 in both */
    }
    float *gs = xmalloc((size_t)k->cout * 4);
    for (int n = 0; n < k->cout; n++) gs[n] = 1.0f + 0.1f * urand();
    void *gd = to_dev(gs, (size_t)k->cout * 4), *nyd = NULL;
    CK(cudaMalloc(&nyd, ny * 2));
    CK(cudaMemset(nyd, 0, ny * 2));
    wmcuda_vae_conv_desc d;
    wmcuda_vae_conv_desc_init(&d);
    d.x = xd, d.hist = k->has_hist ? hd : NULL, d.hist_n = k->hist_n;
    d.cin = k->cin, d.hin = k->hin, d.win = k->win;
    d.t_out = k->t_out, d.hout = k->hout, d.wout = k->wout;
    d.kt = k->kt, d.kh = k->kh, d.kw = k->kw;
    d.tstride = k->tstride, d.sstride = k->sstride, d.spad = k->spad, d.up2 = k->up2;
    d.w = wd, d.bias = bd, d.cout = k->cout, d.res = rd, d.y = yd;
    d.y_f32 = k->y_f32, d.clamp = k->clamp, d.f0 = k->f0, d.tmul = k->tmul, d.csplit = k->csplit;
    d.tile = k->tile;
    void *spw[4] = {NULL, NULL, NULL, NULL};
    if (mode == MODE_SUBPIXEL) { /* output phase (py, px): low-res rows {i-1 | i, i+1} */
        static const int lo[2][2] = {{0, 1}, {0, 2}}, hi[2][2] = {{0, 2}, {1, 2}};
        const size_t per = (size_t)k->cout * 4 * k->cin;
        float *t = xmalloc(per * 4);
        wmcuda_bf16 *tb = xmalloc(per * 2);
        d.kh = d.kw = 2, d.up2 = 0, d.hout = k->hin, d.wout = k->win, d.ostride = 2;
        d.hfull = k->hout, d.wfull = k->wout;
        for (int p = 0; p < 4; p++) {
            const int py = p / 2, px = p % 2;
            memset(t, 0, per * 4);
            for (int o = 0; o < k->cout; o++)
                for (int e = 0; e < 4; e++)
                    for (int dy = lo[py][e / 2]; dy <= hi[py][e / 2]; dy++)
                        for (int dx = lo[px][e % 2]; dx <= hi[px][e % 2]; dx++)
                            for (int c = 0; c < k->cin; c++)
                                t[((size_t)o * 4 + e) * k->cin + c] +=
                                    ws[((size_t)o * 9 + dy * 3 + dx) * k->cin + c];
            for (size_t i = 0; i < per; i++) tb[i] = wm_bf16_from_float(t[i]);
            spw[p] = to_dev(tb, per * 2);
            d.w = spw[p], d.spad = py ? 0 : 1, d.spadx = px ? 0 : 1, d.oy0 = py, d.ox0 = px;
            MUST(wmcuda_vae_conv(&d, NULL));
        }
        free(t), free(tb);
    } else {
        if (mode == MODE_NORM) d.ngamma = gd, d.ny = nyd;
        MUST(wmcuda_vae_conv(&d, NULL));
    }
    CK(cudaDeviceSynchronize());
    if (k->y_f32) {
        CK(cudaMemcpy(out, yd, ny * 4, cudaMemcpyDeviceToHost));
    } else {
        wmcuda_bf16 *yh = xmalloc(ny * 2);
        CK(cudaMemcpy(yh, yd, ny * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < ny; i++) out[i] = wm_bf16_to_float(yh[i]);
        free(yh);
    }
    char what[160];
    snprintf(what, sizeof what, "conv %s%s", k->name,
             mode == MODE_SUBPIXEL ? " as 4 sub-pixel 2x2"
             : mode == MODE_NORM   ? " +norm: y"
                                   : "");
    check(what, rel_err(out, ref, ny), k->y_f32 ? BOUND_F32 : BOUND_BF16);
    if (mode == MODE_NORM) { /* ny = silu(rms(bf16(y)) * g), positions of cout channels */
        wmcuda_bf16 *nh = xmalloc(ny * 2);
        float *nref = xmalloc(ny * 4), *nout = xmalloc(ny * 4);
        CK(cudaMemcpy(nh, nyd, ny * 2, cudaMemcpyDeviceToHost));
        for (size_t p = 0; p < ny / k->cout; p++) {
            double ss = 0;
            for (int c = 0; c < k->cout; c++) {
                const double v = wm_bf16_round(ref[p * k->cout + c]);
                ss += v * v;
            }
            const double sc = sqrt((double)k->cout) / fmax(sqrt(ss), 1e-12);
            for (int c = 0; c < k->cout; c++) {
                const double v = wm_bf16_round(ref[p * k->cout + c]) * sc * gs[c];
                nref[p * k->cout + c] = (float)(v / (1.0 + exp(-v)));
                nout[p * k->cout + c] = wm_bf16_to_float(nh[p * k->cout + c]);
            }
        }
        snprintf(what, sizeof what, "conv %s +norm: ny", k->name);
        check(what, rel_err(nout, nref, ny), BOUND_BF16);
        free(nh), free(nref), free(nout);
    }
    for (int p = 0; p < 4; p++) cudaFree(spw[p]);
    cudaFree(gd), cudaFree(nyd), free(gs);
    cudaFree(xd), cudaFree(hd), cudaFree(wd), cudaFree(bd), cudaFree(yd);
    free(xs), free(hs), free(ws), free(bs), free(rs), free(ref), free(out);
    free(xh), free(hh), free(wh), free(rh);
}

static void norm_case(int C, size_t np, int silu) {
    float *xs = xmalloc(np * C * 4), *g = xmalloc((size_t)C * 4), *ref = xmalloc(np * C * 4);
    float *out = xmalloc(np * C * 4);
    wmcuda_bf16 *xh = rand_bf16(np * C, 2.0f, xs);
    for (int c = 0; c < C; c++) g[c] = 1.0f + 0.1f * urand();
    for (size_t p = 0; p < 3; p++) /* an all-zero position stays 0 */
        for (int c = 0; c < C; c++) xh[p * C + c] = 0, xs[p * C + c] = 0;
    for (size_t p = 0; p < np; p++) {
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)xs[p * C + c] * xs[p * C + c];
        const double sc = sqrt((double)C) / fmax(sqrt(ss), 1e-12);
        for (int c = 0; c < C; c++) {
            double v = xs[p * C + c] * sc * g[c];
            ref[p * C + c] = (float)(silu ? v / (1.0 + exp(-v)) : v);
        }
    }
    void *xd = to_dev(xh, np * C * 2), *gd = to_dev(g, (size_t)C * 4);
    MUST(wmcuda_vae_rms_norm(xd, xd, np, C, gd, silu, NULL)); /* in place */
    CK(cudaDeviceSynchronize());
    wmcuda_bf16 *yh = xmalloc(np * C * 2);
    CK(cudaMemcpy(yh, xd, np * C * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < np * C; i++) out[i] = wm_bf16_to_float(yh[i]);
    char what[96];
    snprintf(what, sizeof what, "rms_norm C=%d silu=%d", C, silu);
    check(what, rel_err(out, ref, np * C), BOUND_BF16);
    cudaFree(xd), cudaFree(gd);
    free(xs), free(g), free(ref), free(out), free(xh), free(yh);
}

/* wmcuda_vae_conv_halo_ok for a test case's shape (kh = kw = k). */
static int halo_selects(const conv_case *k, int kk) {
    wmcuda_vae_conv_desc d;
    wmcuda_vae_conv_desc_init(&d);
    d.cin = k->cin, d.hin = k->hin, d.win = k->win, d.t_out = k->t_out;
    d.hout = k->hout, d.wout = k->wout, d.kt = k->kt, d.kh = d.kw = kk == 1 ? k->kh : 2;
    d.tstride = k->tstride, d.sstride = k->sstride, d.spad = k->spad, d.up2 = k->up2;
    d.cout = k->cout, d.f0 = k->f0, d.tmul = k->tmul, d.csplit = k->csplit;
    return wmcuda_vae_conv_halo_ok(&d);
}

static void part_kernels(void) {
    printf("\n== (k) conv kernel and RMS norm vs float64 ==\n");
    /* name cin cout hist_n has_hist hin win t_out hout wout kt kh kw tst sst spad up2 f0 tmul
     * csplit res f32 clamp */
    /* clang-format off */
    const conv_case cases[] = {
        {"causal3 96->96 hist+res (256x96 tile)", 96, 96, 2, 1, 6, 10, 3, 6, 10, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0},
        {"causal3 192->192 zero hist (128x192)", 192, 192, 2, 0, 5, 7, 2, 5, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0},
        {"causal3 16->384 hist T=1", 16, 384, 2, 1, 4, 9, 1, 4, 9, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0},
        {"causal3 40->24 (ragged K and N, 128x16)", 40, 24, 2, 1, 5, 6, 2, 5, 6, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0},
        {"1x1 384->384 +res", 384, 384, 0, 0, 7, 9, 2, 7, 9, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0},
        {"up2 3x3 384->192", 384, 192, 0, 0, 3, 5, 2, 6, 10, 1, 3, 3, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0},
        {"up2 3x3 192->96", 192, 96, 0, 0, 4, 3, 1, 8, 6, 1, 3, 3, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 0},
        {"down 3x3 s2 24->24 (odd H)", 24, 24, 0, 0, 9, 8, 2, 4, 4, 1, 3, 3, 1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0},
        {"down 3x3 s2 96->96", 96, 96, 0, 0, 8, 12, 1, 4, 6, 1, 3, 3, 1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0},
        {"time_up 384->768 phases f0=1", 384, 768, 2, 1, 3, 4, 2, 3, 4, 3, 1, 1, 1, 1, 0, 0, 1, 2, 384, 0, 0, 0, 0},
        {"time_up 32->64 phases f0=0", 32, 64, 2, 1, 3, 5, 3, 3, 5, 3, 1, 1, 1, 1, 0, 0, 0, 2, 32, 0, 0, 0, 0},
        {"time_down s2 hist1 192->192", 192, 192, 1, 1, 4, 6, 2, 4, 6, 3, 1, 1, 2, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0},
        {"head 96->3 f32 clamp", 96, 3, 2, 1, 6, 8, 3, 6, 8, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0},
        {"causal3 8->8 f32", 8, 8, 2, 1, 5, 5, 2, 5, 5, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0},
        {"causal3 96->96 hist+res (128x96 tile)", 96, 96, 2, 1, 6, 10, 3, 6, 10, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_128x96},
        {"causal3 192->192 (128x96 tile)", 192, 192, 2, 1, 5, 7, 2, 5, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_128x96},
        {"up2 3x3 192->96 (128x96 tile)", 192, 96, 0, 0, 4, 3, 1, 8, 6, 1, 3, 3, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_128x96},
        {"causal3 96->96 hist+res (256x96 K64)", 96, 96, 2, 1, 6, 10, 3, 6, 10, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_256x96_K64},
        {"causal3 192->192 (128x192 K64)", 192, 192, 2, 1, 5, 7, 2, 5, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_128x192_K64},
        {"1x1 384->384 +res (128x192 K64)", 384, 384, 0, 0, 7, 9, 2, 7, 9, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_128x192_K64},
        {"up2 3x3 192->96 (256x96 K64)", 192, 96, 0, 0, 4, 3, 1, 8, 6, 1, 3, 3, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_256x96_K64},
        {"causal3 384->384 +res (128x128)", 384, 384, 2, 1, 4, 7, 2, 4, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_128x128},
        /* the haloed tile: 4x64 (ragged both ways), 8x32, 16x16 tiles; ragged 16-channel chunk
         * (40) and N (24, 3); zero and real history; 2-D 3x3 (kt 1); fp32 clamped out */
        {"causal3 96->96 hist+res 5x130 (halo 4x64)", 96, 96, 2, 1, 5, 130, 2, 5, 130, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO},
        {"causal3 192->192 zero hist 8x90 (halo 8x32)", 192, 192, 2, 0, 8, 90, 1, 8, 90, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_HALO},
        {"causal3 384->384 +res T=2 3x7 (halo 16x16)", 384, 384, 2, 1, 3, 7, 2, 3, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO},
        {"causal3 40->24 ragged K and N (halo)", 40, 24, 2, 1, 5, 6, 2, 5, 6, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO},
        {"2-D 3x3 96->192 6x40 (halo, kt 1)", 96, 192, 0, 0, 6, 40, 2, 6, 40, 1, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_HALO},
        {"head 96->3 f32 clamp (halo)", 96, 3, 2, 1, 6, 8, 3, 6, 8, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, WMCUDA_VAE_TILE_HALO},
        {"causal3 96->96 f32 clamp 5x20 (halo)", 96, 96, 2, 1, 5, 20, 2, 5, 20, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, WMCUDA_VAE_TILE_HALO},
        {"causal3 96->96 hist+res 5x130 (halo K32)", 96, 96, 2, 1, 5, 130, 2, 5, 130, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"causal3 40->24 ragged K and N (halo K32)", 40, 24, 2, 1, 5, 6, 2, 5, 6, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"causal3 192->192 zero hist 8x90 (halo K32)", 192, 192, 2, 0, 8, 90, 1, 8, 90, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"causal3 96->96 hist+res 5x130 (halo frag)", 96, 96, 2, 1, 5, 130, 2, 5, 130, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        {"causal3 384->384 +res T=2 3x7 (halo frag)", 384, 384, 2, 1, 3, 7, 2, 3, 7, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        /* the wgmma form (4x64 tiles; sm_90 only, else it runs HALO) */
        {"causal3 96->96 hist+res 5x128 (wgmma)", 96, 96, 2, 1, 5, 128, 2, 5, 128, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_WG},
        {"causal3 192->192 zero hist 3x64 (wgmma)", 192, 192, 2, 0, 3, 64, 1, 3, 64, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, WMCUDA_VAE_TILE_HALO_WG},
        {"causal3 40->24 ragged K and N 2x64 (wgmma)", 40, 24, 2, 1, 2, 64, 2, 2, 64, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_WG},
        {"2-D 3x3 96->96 f32 clamp 4x64 (wgmma)", 96, 96, 0, 0, 4, 64, 1, 4, 64, 1, 3, 3, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, WMCUDA_VAE_TILE_HALO_WG},
        {"causal3 384->384 +res 2x64 (wgmma)", 384, 384, 2, 1, 2, 64, 1, 2, 64, 3, 3, 3, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, WMCUDA_VAE_TILE_HALO_WG},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        conv_case_run(&cases[i], MODE_PLAIN);
    conv_case_run(&cases[5], MODE_SUBPIXEL); /* up2 384->192 */
    conv_case_run(&cases[6], MODE_SUBPIXEL); /* up2 192->96 */
    conv_case_run(&cases[0], MODE_NORM);     /* 96, 256x96 tile, residual */
    conv_case_run(&cases[1], MODE_NORM);     /* 192, 128x192 tile */
    conv_case_run(&cases[13], MODE_NORM);    /* 8, 128x16 tile */
    conv_case_run(&cases[14], MODE_NORM);    /* 96, 128x96 tile */
    conv_case_run(&cases[17], MODE_NORM);    /* 96, 256x96 K64 (ragged 64 + 32 chunks) */
    conv_case_run(&cases[18], MODE_NORM);    /* 192, 128x192 K64 */
    conv_case_run(&cases[22], MODE_NORM);    /* 96, halo 4x64, residual */
    conv_case_run(&cases[29], MODE_NORM);    /* 96, halo K32, residual */
    check_true("halo tile serves 3x3x3 pad 1 same size, not up2 / stride 2 / 2x2",
               halo_selects(&cases[22], 1) && halo_selects(&cases[26], 1) &&
                   !halo_selects(&cases[5], 1) && !halo_selects(&cases[8], 1) &&
                   !halo_selects(&cases[22], 2));
    norm_case(96, 1000, 1);
    norm_case(384, 300, 0);
    norm_case(8, 500, 1);
    norm_case(192, 777, 1);
}

/* ---- (a, b) the streaming decoder vs the CPU
 * ------------------------------------------------------- */

static vae_weights *make_weights(const char *size) {
    vae_config c;
    vae_weights *w = NULL;
    MUST(vae_config_preset(&c, size, err, sizeof err));
    MUST(vae_weights_synthetic(&c, SEED, &w, err, sizeof err));
    return w;
}

#define NPATHS 3
#define PATHS_FUSED                                                                                \
    (WMCUDA_VAE_PATH_SUBPIXEL | WMCUDA_VAE_PATH_FUSE_NORM | WMCUDA_VAE_PATH_HEAD_TAPS)
static int g_paths[NPATHS] = {WMCUDA_VAE_PATHS_DEFAULT, 0, PATHS_FUSED};
static const char *g_path_name[NPATHS] = {"default", "plain", "fused"};

/* One CPU decoder and GPU decoders on the same latents, one per path set: the default (sub-pixel
 * upsampling, norms fused into conv epilogues), the plain forms, and the default with the K64
 * conv tiles. */
static void decode_compare(const char *label, vae_weights *w, wmcuda_vae *v, int lh, int lw,
                           int blocks, int after_reset, double bound) {
    const int H = 8 * lh, W = 8 * lw, nl = 3;
    const size_t hw = (size_t)lh * lw, HW = (size_t)H * W, maxf = 12;
    vae_decoder *cpu = NULL;
    wmcuda_vae_decoder *gpu[NPATHS] = {NULL};
    const char **path = g_path_name;
    MUST(vae_decoder_create(w, lh, lw, &cpu, err, sizeof err));
    for (int g = 0; g < NPATHS; g++)
        MUST(wmcuda_vae_decoder_create(v, lh, lw, &gpu[g], err, sizeof err));
    printf("  decoder %dx%d: %.1f MB of slots + staging\n", lh, lw,
           (double)wmcuda_vae_decoder_device_bytes(gpu[0]) * 1e-6);
    float *lat = xmalloc(16 * nl * hw * 4), *fc = xmalloc(3 * maxf * HW * 4);
    float *fg = xmalloc(3 * maxf * HW * 4);
    uint8_t *rgb = xmalloc(maxf * HW * 3), *rgb_ref = xmalloc(maxf * HW * 3);
    for (int b = 0; b < blocks + after_reset; b++) {
        if (b == blocks) {
            vae_decoder_reset(cpu);
            for (int g = 0; g < NPATHS; g++)
                MUST(wmcuda_vae_decoder_reset(gpu[g], err, sizeof err));
        }
        for (size_t i = 0; i < 16 * nl * hw; i++) lat[i] = 1.7f * urand();
        int nc = 0;
        const double t0 = now_ms();
        MUST(vae_decode(cpu, lat, nl, fc, &nc, err, sizeof err));
        const double t1 = now_ms();
        for (int g = 0; g < NPATHS; g++) {
            int ng = 0;
            wmcuda_vae_set_paths(v, g_paths[g]);
            const double t2 = now_ms();
            MUST(wmcuda_vae_decode(gpu[g], lat, nl, rgb, fg, &ng, err, sizeof err));
            const double t3 = now_ms();
            char what[160];
            snprintf(what, sizeof what, "%s/%s block %d%s: %d frames (cpu %d)", label, path[g], b,
                     b >= blocks ? " after reset" : "", ng, nc);
            check_true(what, nc == ng && ng == (b == 0 || b == blocks ? 9 : 12));
            if (nc != ng) continue;
            snprintf(what, sizeof what, "%s/%s block %d%s frames (cpu %.0f ms, gpu %.0f ms)", label,
                     path[g], b, b >= blocks ? " after reset" : "", t1 - t0, t3 - t2);
            check(what, rel_err(fg, fc, 3 * (size_t)ng * HW), bound);
            vae_frames_to_rgb8(fg, ng, H, W, rgb_ref);
            size_t mism = 0;
            for (size_t i = 0; i < (size_t)ng * HW * 3; i++) mism += rgb[i] != rgb_ref[i];
            vae_frames_to_rgb8(fc, ng, H, W, rgb_ref);
            double mad = 0;
            for (size_t i = 0; i < (size_t)ng * HW * 3; i++)
                mad += fabs((double)rgb[i] - rgb_ref[i]);
            snprintf(what, sizeof what,
                     "%s/%s block %d RGB8 = rule(device frames): %zu mismatches (mean |d| vs cpu "
                     "%.3f)",
                     label, path[g], b, mism, mad / ((double)ng * HW * 3));
            check_true(what, mism == 0);
        }
    }
    wmcuda_vae_set_paths(v, WMCUDA_VAE_PATHS_DEFAULT);
    vae_decoder_destroy(cpu);
    for (int g = 0; g < NPATHS; g++) wmcuda_vae_decoder_destroy(gpu[g]);
    free(lat), free(fc), free(fg), free(rgb), free(rgb_ref);
}

static void part_decoder(const char *size, int lh, int lw, int blocks) {
    printf("\n== decoder, %s config, latents %dx%d ==\n", size, lh, lw);
    vae_weights *w = make_weights(size);
    wmcuda_vae *v = NULL;
    MUST(wmcuda_vae_create(w, NULL, &v, err, sizeof err));
    char label[32];
    snprintf(label, sizeof label, "%s", size);
    decode_compare(label, w, v, lh, lw, blocks, 2,
                   strcmp(size, "tiny") == 0 ? BOUND_FRAMES_TINY : BOUND_FRAMES);
    printf("  device bytes: %.1f MB (weights + scratch)\n",
           (double)wmcuda_vae_device_bytes(v) * 1e-6);
    wmcuda_vae_destroy(v);
    vae_weights_free(w);
}

/* ---- (c) the encoder
 * ------------------------------------------------------------------------------- */

static void part_encoder(const char *size, int H, int W) {
    printf("\n== encoder, %s config, %dx%d ==\n", size, H, W);
    vae_weights *w = make_weights(size);
    wmcuda_vae *v = NULL;
    MUST(wmcuda_vae_create(w, NULL, &v, err, sizeof err));
    vae_encoder *cpu = NULL;
    wmcuda_vae_encoder *gpu[NPATHS] = {NULL};
    const char **path = g_path_name;
    MUST(vae_encoder_create(w, H, W, &cpu, err, sizeof err));
    for (int g = 0; g < NPATHS; g++)
        MUST(wmcuda_vae_encoder_create(v, H, W, &gpu[g], err, sizeof err));
    const size_t HW = (size_t)H * W, hw = HW / 64;
    const int calls[3] = {1, 4, 8};
    float *fr = xmalloc(3 * 8 * HW * 4), *lc = xmalloc(16 * 2 * hw * 4),
          *lg = xmalloc(16 * 2 * hw * 4);
    for (int k = 0; k < 3; k++) {
        const int n = calls[k];
        for (size_t i = 0; i < 3 * (size_t)n * HW; i++) fr[i] = urand();
        int nc = 0;
        MUST(vae_encode(cpu, fr, n, lc, &nc, err, sizeof err));
        for (int g = 0; g < NPATHS; g++) {
            int ng = 0;
            wmcuda_vae_set_paths(v, g_paths[g]);
            MUST(wmcuda_vae_encode(gpu[g], fr, n, lg, &ng, err, sizeof err));
            char what[128];
            snprintf(what, sizeof what, "%s/%s encode %d frame(s) -> %d latents (cpu %d)", size,
                     path[g], n, ng, nc);
            check_true(what, nc == ng);
            if (nc != ng) continue;
            snprintf(what, sizeof what, "%s/%s encode %d frame(s) latents", size, path[g], n);
            check(what, rel_err(lg, lc, 16 * (size_t)ng * hw), BOUND_LAT);
        }
    }
    vae_encoder_destroy(cpu);
    for (int g = 0; g < NPATHS; g++) wmcuda_vae_encoder_destroy(gpu[g]);
    wmcuda_vae_destroy(v);
    vae_weights_free(w);
    free(fr), free(lc), free(lg);
}

/* ---- (t) timing at full size
 * ----------------------------------------------------------------------- */

static double time_conv(const wmcuda_vae_conv_desc *d, cudaStream_t st, int reps) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    MUST(wmcuda_vae_conv(d, st));
    double t[16];
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a, st));
        MUST(wmcuda_vae_conv(d, st));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t[i] = ms;
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    return median(t, reps);
}

static void conv_bench(void) {
    printf("\n  conv shapes alone (12-frame block shapes; median of 5):\n");
    const size_t big = (size_t)12 * 352 * 640 * 96 * 2;
    void *x = NULL, *y = NULL, *w = NULL, *b = NULL;
    CK(cudaMalloc(&x, big));
    CK(cudaMalloc(&y, big));
    CK(cudaMalloc(&w, (size_t)27 * 384 * 768 * 2));
    CK(cudaMalloc(&b, 768 * 4));
    CK(cudaMemset(x, 0x3c, big));
    CK(cudaMemset(w, 0x3b, (size_t)27 * 384 * 768 * 2));
    CK(cudaMemset(b, 0, 768 * 4));
    struct {
        const char *name;
        int cin, cout, T, h, w, taps, up2, tile;
    } s[] = {
        {"subpixel 4x 2x2 192->96 ->352x640 x12", 192, 96, 12, 176, 320, 4, 2, 0},
        {"subpixel 4x 2x2 384->192 ->176x320 x12", 384, 192, 12, 88, 160, 4, 2, 0},
        {"3x3x3 96->96 @352x640 x12", 96, 96, 12, 352, 640, 27, 0, 0},
        {"  same, halo tile", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_HALO},
        {"  same, halo wgmma", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_HALO_WG},
        {"  same, halo K32", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"  same, halo frag epilogue", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        {"  same, 128x96 tile", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_128x96},
        {"  same, 256x96 K64", 96, 96, 12, 352, 640, 27, 0, WMCUDA_VAE_TILE_256x96_K64},
        {"3x3x3 192->192 @176x320 x12", 192, 192, 12, 176, 320, 27, 0, 0},
        {"  same, 128x96 tile", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_128x96},
        {"  same, halo tile", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_HALO},
        {"  same, halo wgmma", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_HALO_WG},
        {"  same, halo K32", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"  same, halo frag epilogue", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        {"  same, 128x192 K64", 192, 192, 12, 176, 320, 27, 0, WMCUDA_VAE_TILE_128x192_K64},
        {"3x3x3 384->384 @88x160 x6", 384, 384, 6, 88, 160, 27, 0, 0},
        {"  same, halo tile", 384, 384, 6, 88, 160, 27, 0, WMCUDA_VAE_TILE_HALO},
        {"  same, halo K32", 384, 384, 6, 88, 160, 27, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"  same, halo frag epilogue", 384, 384, 6, 88, 160, 27, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        {"  same, 128x192 K64", 384, 384, 6, 88, 160, 27, 0, WMCUDA_VAE_TILE_128x192_K64},
        {"  same, 128x128 tile", 384, 384, 6, 88, 160, 27, 0, WMCUDA_VAE_TILE_128x128},
        {"3x3x3 384->384 @44x80 x3", 384, 384, 3, 44, 80, 27, 0, 0},
        {"  same, halo tile", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_HALO},
        {"  same, halo K32", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_HALO_K32},
        {"  same, halo frag epilogue", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_HALO_FRAG},
        {"  same, 128x96 tile", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_128x96},
        {"  same, 128x192 K64", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_128x192_K64},
        {"  same, 128x128 tile", 384, 384, 3, 44, 80, 27, 0, WMCUDA_VAE_TILE_128x128},
        {"up2+3x3 192->96 ->352x640 x12", 192, 96, 12, 176, 320, 9, 1, 0},
        {"up2+3x3 384->192 ->176x320 x12", 384, 192, 12, 88, 160, 9, 1, 0},
        {"head 3x3x3 96->3 @352x640 x12", 96, 3, 12, 352, 640, 27, 0, 0},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        wmcuda_vae_conv_desc d;
        wmcuda_vae_conv_desc_init(&d);
        d.x = x, d.hist = x, d.hist_n = s[i].taps == 27 ? 2 : 0, d.cin = s[i].cin;
        d.hin = s[i].h, d.win = s[i].w, d.t_out = s[i].T;
        d.hout = s[i].up2 ? 2 * s[i].h : s[i].h, d.wout = s[i].up2 ? 2 * s[i].w : s[i].w;
        d.kt = s[i].taps == 27 ? 3 : 1, d.kh = d.kw = 3, d.spad = 1, d.up2 = s[i].up2;
        d.w = w, d.bias = b, d.cout = s[i].cout, d.y = y, d.tile = s[i].tile;
        double ms;
        if (s[i].up2 == 2) { /* the four phases of a sub-pixel upsampling conv */
            d.up2 = 0, d.kh = d.kw = 2, d.hist_n = 0, d.ostride = 2, d.hfull = 2 * s[i].h;
            d.hout = s[i].h, d.wout = s[i].w;
            d.wfull = 2 * s[i].w;
            ms = 0;
            for (int p = 0; p < 4; p++) {
                d.spad = p / 2 ? 0 : 1, d.spadx = p % 2 ? 0 : 1, d.oy0 = p / 2, d.ox0 = p % 2;
                ms += time_conv(&d, NULL, 5);
            }
        } else {
            ms = time_conv(&d, NULL, 5);
        }
        const double fl = 2.0 * s[i].T * d.hout * d.wout * (double)s[i].taps * s[i].cin *
                          s[i].cout * (s[i].up2 == 2 ? 4 : 1);
        printf("    %-34s %8.3f ms  %6.1f TFLOP/s\n", s[i].name, ms, fl / ms * 1e-9);
    }
    cudaEvent_t a, e;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&e));
    float *g = NULL;
    CK(cudaMalloc((void **)&g, 96 * 4));
    CK(cudaMemset(g, 0, 96 * 4));
    const size_t np = (size_t)12 * 352 * 640;
    MUST(wmcuda_vae_rms_norm(x, y, np, 96, g, 1, NULL));
    CK(cudaEventRecord(a, NULL));
    MUST(wmcuda_vae_rms_norm(x, y, np, 96, g, 1, NULL));
    CK(cudaEventRecord(e, NULL));
    CK(cudaEventSynchronize(e));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, e));
    printf("    %-34s %8.3f ms  %6.0f GB/s\n", "rms_norm+silu 96 @352x640 x12", ms,
           2.0 * np * 96 * 2 / ms * 1e-6);
    cudaEventDestroy(a), cudaEventDestroy(e);
    cudaFree(x), cudaFree(y), cudaFree(w), cudaFree(b), cudaFree(g);
}

/* Median of 7 steady decodes after 2 warm-ups (cudaEvents on the VAE's stream). */
static double time_steady(wmcuda_vae_decoder *d, float *lat_d, uint8_t *rgb_d, cudaStream_t st) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    double t[9];
    int nf = 0;
    for (int i = 0; i < 9; i++) {
        float ms = 0;
        CK(cudaEventRecord(a, st));
        MUST(wmcuda_vae_decode_device(d, lat_d, 3, rgb_d, NULL, &nf, err, sizeof err));
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        CK(cudaEventElapsedTime(&ms, a, b));
        t[i] = ms;
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    return median(t + 2, 7);
}

/* The profile report ("name ms, name ms, ...") summed per layer name: the per-stage breakdown. */
static void print_stages(const char *rep) {
    char name[32][24];
    double ms[32], total = 0;
    int n = 0;
    const char *p = rep;
    char nm[24];
    double v;
    int used;
    while (sscanf(p, " %23[^ ,] %lf%n", nm, &v, &used) == 2) {
        p += used;
        if (*p == ',') p++;
        int i = 0;
        while (i < n && strcmp(name[i], nm)) i++;
        if (i == n && n < 32) snprintf(name[n], sizeof name[n], "%s", nm), ms[n++] = 0;
        if (i < n) ms[i] += v;
        total += v;
    }
    printf("  steady block by stage (ms, total %.2f):", total);
    for (int i = 0; i < n; i++) printf(" %s %.2f", name[i], ms[i]);
    printf("\n");
}

static void part_timing(void) {
    printf("\n== (t) timing, full config, latents 44x80 -> 352x640 ==\n");
    const int lh = 44, lw = 80, H = 352, W = 640;
    vae_weights *w = make_weights("full");
    wmcuda_vae *v = NULL;
    MUST(wmcuda_vae_create(w, NULL, &v, err, sizeof err));
    wmcuda_vae_decoder *d = NULL;
    MUST(wmcuda_vae_decoder_create(v, lh, lw, &d, err, sizeof err));
    const cudaStream_t st = wmcuda_vae_stream(v);
    float *lat_d = NULL, *fr_d = NULL;
    uint8_t *rgb_d = NULL;
    wmcuda_vae_decoder_io(d, &lat_d, &rgb_d, &fr_d);
    const size_t nlat = (size_t)16 * 3 * lh * lw;
    float *lat = xmalloc(nlat * 4);
    for (size_t i = 0; i < nlat; i++) lat[i] = 1.7f * urand();
    CK(cudaMemcpy(lat_d, lat, nlat * 4, cudaMemcpyHostToDevice));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    /* warm the GEMM heuristics on a throwaway first block, then time a fresh session's first */
    int nf = 0;
    MUST(wmcuda_vae_decode_device(d, lat_d, 3, rgb_d, NULL, &nf, err, sizeof err));
    CK(cudaStreamSynchronize(st));
    MUST(wmcuda_vae_decoder_reset(d, err, sizeof err));
    float ms = 0;
    CK(cudaEventRecord(a, st));
    MUST(wmcuda_vae_decode_device(d, lat_d, 3, rgb_d, fr_d, &nf, err, sizeof err));
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&ms, a, b));
    const double first_ms = ms;
    /* full-size output is finite and not saturated everywhere */
    float *fr = xmalloc(3 * (size_t)nf * H * W * 4);
    CK(cudaMemcpy(fr, fr_d, 3 * (size_t)nf * H * W * 4, cudaMemcpyDeviceToHost));
    size_t bad = 0, sat = 0;
    for (size_t i = 0; i < 3 * (size_t)nf * H * W; i++) {
        bad += !isfinite(fr[i]);
        sat += fabsf(fr[i]) >= 1.0f;
    }
    char what[160];
    snprintf(what, sizeof what, "full-size first block: %d frames, %zu non-finite, %.1f%% at +-1",
             nf, bad, 100.0 * sat / (3.0 * nf * H * W));
    check_true(what, nf == 9 && bad == 0);
    const double steady = time_steady(d, lat_d, rgb_d, st);
    wmcuda_vae_set_paths(v, WMCUDA_VAE_PATHS_DEFAULT | WMCUDA_VAE_PATH_NO_HALO);
    const double steady_nohalo = time_steady(d, lat_d, rgb_d, st);
    wmcuda_vae_set_paths(v, WMCUDA_VAE_PATHS_DEFAULT | WMCUDA_VAE_PATH_NO_WGMMA);
    const double steady_nowg = time_steady(d, lat_d, rgb_d, st);
    wmcuda_vae_set_paths(v, 0);
    const double steady_plain = time_steady(d, lat_d, rgb_d, st);
    wmcuda_vae_set_paths(v, PATHS_FUSED);
    const double steady_fused = time_steady(d, lat_d, rgb_d, st);
    wmcuda_vae_set_paths(v, WMCUDA_VAE_PATHS_DEFAULT);
    printf("  decode first block (3 lat -> 9 frames):   %8.2f ms  %6.1f TFLOP/s (17.698 TFLOP)\n",
           first_ms, 17.698 / first_ms * 1e3);
    printf("  decode steady block (3 lat -> 12 frames): %8.2f ms  %6.1f TFLOP/s (22.887 TFLOP; "
           "target <= 45 ms, floor 28.6)\n",
           steady, 22.887 / steady * 1e3);
    printf("  decode steady block, halo on mma.sync:    %8.2f ms  (default paths, no wgmma)\n",
           steady_nowg);
    printf(
        "  decode steady block, no halo tile:        %8.2f ms  (default paths, previous tiles)\n",
        steady_nohalo);
    printf(
        "  decode steady block, plain paths:         %8.2f ms  (no sub-pixel, 32-channel tiles)\n",
        steady_plain);
    printf("  decode steady block, fused paths:         %8.2f ms  (sub-pixel, fused norms, head "
           "taps)\n",
           steady_fused);
    MUST(wmcuda_vae_set_profile(v, 1));
    MUST(wmcuda_vae_decode_device(d, lat_d, 3, rgb_d, NULL, &nf, err, sizeof err));
    static char rep[4096];
    MUST(wmcuda_vae_profile_report(v, rep, sizeof rep));
    printf("  steady block by layer (ms): %s\n", rep);
    print_stages(rep);
    wmcuda_vae_set_paths(v, 0);
    MUST(wmcuda_vae_decode_device(d, lat_d, 3, rgb_d, NULL, &nf, err, sizeof err));
    MUST(wmcuda_vae_profile_report(v, rep, sizeof rep));
    printf("  same, plain paths (ms): %s\n", rep);
    wmcuda_vae_set_paths(v, WMCUDA_VAE_PATHS_DEFAULT);
    MUST(wmcuda_vae_set_profile(v, 0));
    printf("  device bytes: model %.1f MB, session %.1f MB\n",
           (double)wmcuda_vae_device_bytes(v) * 1e-6,
           (double)wmcuda_vae_decoder_device_bytes(d) * 1e-6);
    wmcuda_vae_decoder_destroy(d);
    free(fr), free(lat);
    /* encoder: image, then a 4-frame chunk (host API: includes the small copies) */
    wmcuda_vae_encoder *e = NULL;
    MUST(wmcuda_vae_encoder_create(v, H, W, &e, err, sizeof err));
    float *in = xmalloc((size_t)3 * 4 * H * W * 4), *z = xmalloc((size_t)16 * lh * lw * 4);
    for (size_t i = 0; i < (size_t)3 * 4 * H * W; i++) in[i] = urand();
    int nz = 0;
    double t0 = now_ms();
    MUST(wmcuda_vae_encode(e, in, 1, z, &nz, err, sizeof err));
    const double enc1_cold = now_ms() - t0;
    t0 = now_ms();
    MUST(wmcuda_vae_encode(e, in, 4, z, &nz, err, sizeof err));
    const double enc4_cold = now_ms() - t0;
    double te[5];
    for (int i = 0; i < 5; i++) {
        t0 = now_ms();
        MUST(wmcuda_vae_encode(e, in, 4, z, &nz, err, sizeof err));
        te[i] = now_ms() - t0;
    }
    wmcuda_vae_encoder_destroy(e);
    MUST(wmcuda_vae_encoder_create(v, H, W, &e, err, sizeof err));
    t0 = now_ms();
    MUST(wmcuda_vae_encode(e, in, 1, z, &nz, err, sizeof err));
    const double enc1 = now_ms() - t0;
    const double enc4 = median(te, 5);
    printf("  encode image (1 frame):  %8.2f ms  %6.1f TFLOP/s (1.519 TFLOP; cold %.1f ms)\n", enc1,
           1.5187 / enc1 * 1e3, enc1_cold);
    printf("  encode 4-frame chunk:    %8.2f ms  %6.1f TFLOP/s (4.527 TFLOP; cold %.1f ms)\n", enc4,
           4.5272 / enc4 * 1e3, enc4_cold);
    wmcuda_vae_encoder_destroy(e);
    free(in), free(z);
    cudaEventDestroy(a), cudaEventDestroy(b);
    wmcuda_vae_destroy(v);
    vae_weights_free(w);
    conv_bench();
}

static int want(const char *parts, char p) {
    return !parts || strchr(parts, p) != NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    eng_cpu_threads_setup(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int dev;
    struct cudaDeviceProp prop;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    char backend[160];
    eng_cpu_backend_describe(backend, sizeof backend);
    printf("device: %s (sm_%d%d, %d SMs, %.1f GB); CPU reference: %s\n", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, (double)prop.totalGlobalMem * 1e-9, backend);
    const char *parts = getenv("WM_VAE_TEST_PARTS");
    if (getenv("WM_VAE_TEST_NO_WGMMA")) { /* the default decoder path without the wgmma conv */
        g_paths[0] |= WMCUDA_VAE_PATH_NO_WGMMA;
        printf("default decoder path: no wgmma (WM_VAE_TEST_NO_WGMMA)\n");
    }
    if (want(parts, 'k')) part_kernels();
    if (want(parts, 'a')) part_decoder("tiny", 4, 6, 4);
    if (want(parts, 'c')) part_encoder("tiny", 32, 48);
    if (want(parts, 't')) part_timing();
    if (want(parts, 'b')) part_decoder("full", 6, 10, 3);
    if (want(parts, 'b')) part_decoder("full", 2, 16, 2); /* 128- and 64-wide frames: wgmma */
    if (want(parts, 'c')) part_encoder("full", 48, 80);
    printf("\n%s: %d failure(s) in %d checks\n", g_failures ? "FAILED" : "PASSED", g_failures,
           g_checks);
    return g_failures ? 1 : 0;
}
