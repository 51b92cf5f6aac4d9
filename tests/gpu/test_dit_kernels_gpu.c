/* GPU check of the bf16 DiT building blocks (engine/cuda/gemm.h, engine/cuda/dit_kernels.h)
 * against the float32 CPU reference (engine/cpu), at the tiny model's shapes and at the full
 * shapes (L = 2640 tokens, D = 1536, FF = 8960, 12 heads x 128, Lk = 5280 keys).
 *
 * Inputs are random (xorshift, never zeros), rounded to bf16 where the kernel takes bf16; the CPU
 * reference runs on the rounded values. Outputs are poisoned (all-ones bytes = NaN) before each
 * launch, so an element left unwritten fails the check. Each check prints the relative error
 * ||out - ref|| / ||ref|| and its bound:
 *   bf16 output of one op            <= 2e-2   (BOUND_BF16; rounding alone gives ~2e-3)
 *   fp32 elementwise paths           <= 1e-5   (BOUND_F32)
 *   fp32-output GEMMs (bf16 inputs)  <= 5e-5   (BOUND_F32_GEMM: the tensor cores accumulate in
 *                                               fp32 but not in IEEE order; ~K/16 additions of
 *                                               partial sums, ~1e-5 worst at K = 1536)
 *   layout kernels and the sampler   exact     (bit for bit)
 * Large GEMM and attention references are computed on 64 sampled query rows (first and last
 * included); every output element is still scanned for poison. Then every kernel is timed at the
 * full shape (cudaEvent around the launch, L2 flushed before each run, median of 20) against its
 * floor from the datasheet peaks (H100 SXM: 989 TFLOP/s dense bf16, 3.35 TB/s; H200: 4.8 TB/s):
 * "vs datasheet", to be replaced by measured ceilings. Exit status 1 on any failure, 2 on a CUDA
 * error. Runs on the GPU host only (not a ctest): tests/gpu/run_dit_kernels_gpu.sh.
 * The fused attention (engine/cuda/attention.h) is checked, every tile variant, against a float64
 * attention on the host for each shape it serves (steady window, block 0 with empty slots, a stale
 * slot, query frames that see different slots, cross-attention over 257 keys, S not a multiple of
 * the tile, head width 64, a single key): rel err <= 2e-2 (BOUND_BF16), untouched padding, rows
 * that see nothing exactly 0; slots no query sees hold NaN, so reading one fails the check.
 * WM_DIT_TEST_SHAPES=tiny runs the tiny shapes only; WM_DIT_TEST_ONLY=attn the fused attention
 * (and the action attention's timing) only. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "engine/config.h"
#include "engine/cpu/dit_cpu.h"
#include "engine/cpu/ops.h"
#include "engine/cpu/rope.h"
#include "engine/cuda/attention.h"
#include "engine/cuda/bf16.h"
#include "engine/cuda/dit_cuda_kernels.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/cuda/gemm.h"

#define BOUND_BF16     2e-2
#define BOUND_F32      1e-5
#define BOUND_F32_GEMM 5e-5
#define NREP           20
#define SAMPLE_ROWS    64
#define PEAK_BF16      989.4e12 /* H100/H200 SXM dense bf16, datasheet */

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call,               \
                    cudaGetErrorName(e_), cudaGetErrorString(e_));                                 \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

/* A wmcuda_ call: a non-zero return is a failure of its own (the check that follows fails too). */
#define WM(call)                                                                                   \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            printf("FAIL %s:%d: %s returned %d\n", __FILE__, __LINE__, #call, rc_);                \
            g_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* ---- bookkeeping -------------------------------------------------------------------------------- */

typedef struct {
    char name[72];
    double err, bound;
    int pass;
} check_rec;
typedef struct {
    char name[72];
    double us, floor_us;
    int mem_bound, failed;
} time_rec;

static int g_failures;
static check_rec g_checks[512];
static int g_nchecks;
static time_rec g_times[64];
static int g_ntimes;
static double g_peak_bw = 3.35e12;
static const char *g_peak_name = "H100 SXM datasheet: 989 TFLOP/s bf16 dense, 3.35 TB/s";
static cudaEvent_t g_ev0, g_ev1;
static void *g_flush;
static const size_t g_flush_bytes = (size_t)256 << 20; /* > 5x the 50 MB L2 */

static void check(const char *tag, const char *what, double err, double bound) {
    const int pass = err <= bound; /* NaN fails */
    char name[72];
    snprintf(name, sizeof name, "%s %s", tag, what);
    printf("%s %-52s rel err %.3e (bound %.0e)\n", pass ? "ok  " : "FAIL", name, err, bound);
    if (g_nchecks < (int)(sizeof g_checks / sizeof g_checks[0])) {
        check_rec *r = &g_checks[g_nchecks++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->err = err, r->bound = bound, r->pass = pass;
    }
    if (!pass) g_failures++;
}

/* A count that must be zero (exact checks, untouched padding, masked entries). */
static void check_zero(const char *tag, const char *what, size_t bad, size_t total) {
    const int pass = bad == 0;
    char name[72];
    snprintf(name, sizeof name, "%s %s", tag, what);
    printf("%s %-52s %zu of %zu differ (exact)\n", pass ? "ok  " : "FAIL", name, bad, total);
    if (g_nchecks < (int)(sizeof g_checks / sizeof g_checks[0])) {
        check_rec *r = &g_checks[g_nchecks++];
        snprintf(r->name, sizeof r->name, "%s", name);
        r->err = total ? (double)bad / (double)total : 0.0, r->bound = 0.0, r->pass = pass;
    }
    if (!pass) g_failures++;
}

static void record_time(const char *name, double us, double flops, double bytes, int failed) {
    const double tf = flops / PEAK_BF16 * 1e6, tb = bytes / g_peak_bw * 1e6;
    time_rec *r = &g_times[g_ntimes < 63 ? g_ntimes++ : 63];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->us = us, r->floor_us = tf > tb ? tf : tb, r->mem_bound = tb >= tf, r->failed = failed;
    printf("time %-44s median %9.1f us, floor %8.1f us (%s-bound) = %5.1f%% of floor vs "
           "datasheet%s\n",
           name, us, r->floor_us, r->mem_bound ? "memory" : "compute", 100.0 * r->floor_us / us,
           failed ? "  [CALL FAILED]" : "");
    if (failed) g_failures++;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median of NREP runs of CALL (an int expression), each after an L2 flush; CALL is warmed up
 * three times first. Uses the legacy stream. */
#define TIME_OP(name, flops, bytes, CALL)                                                          \
    do {                                                                                           \
        int bad_ = 0;                                                                              \
        for (int w_ = 0; w_ < 3; w_++) bad_ |= (CALL) != 0;                                        \
        float ms_[NREP];                                                                           \
        for (int r_ = 0; r_ < NREP; r_++) {                                                        \
            CK(cudaMemsetAsync(g_flush, r_ & 0xff, g_flush_bytes, 0));                             \
            CK(cudaEventRecord(g_ev0, 0));                                                         \
            bad_ |= (CALL) != 0;                                                                   \
            CK(cudaEventRecord(g_ev1, 0));                                                         \
            CK(cudaEventSynchronize(g_ev1));                                                       \
            CK(cudaEventElapsedTime(&ms_[r_], g_ev0, g_ev1));                                      \
        }                                                                                          \
        qsort(ms_, NREP, sizeof ms_[0], cmp_float);                                                \
        record_time((name), 500.0 * (ms_[NREP / 2 - 1] + ms_[NREP / 2]), (flops), (bytes), bad_);  \
    } while (0)

/* ---- data --------------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t xorshift64(void) {
    uint64_t x = g_rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return g_rng = x;
}
/* uniform in [-1, 1) */
static float urand(void) { return (float)((double)(xorshift64() >> 40) * (1.0 / 8388608.0) - 1.0); }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}
static void *dmalloc(size_t n) {
    void *p = NULL;
    CK(cudaMalloc(&p, n ? n : 16));
    return p;
}
static void poison(void *d, size_t n) { CK(cudaMemset(d, 0xFF, n)); }
static void up(void *d, const void *h, size_t n) { CK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice)); }
static void down(void *h, const void *d, size_t n) { CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost)); }

/* A bf16 tensor: host bits, host floats (the rounded values) and a device copy. */
typedef struct {
    size_t n;
    wmcuda_bf16 *h;
    float *f;
    wmcuda_bf16 *d;
} bt;

static bt bt_rand(size_t n, float scale, float offset) {
    bt t;
    t.n = n;
    t.h = xmalloc(n * sizeof *t.h);
    t.f = xmalloc(n * sizeof *t.f);
    t.d = dmalloc(n * sizeof *t.d);
    for (size_t i = 0; i < n; i++) {
        t.h[i] = wm_bf16_from_float(offset + scale * urand());
        t.f[i] = wm_bf16_to_float(t.h[i]);
    }
    up(t.d, t.h, n * sizeof *t.h);
    return t;
}
static void bt_free(bt *t) {
    free(t->h), free(t->f);
    CK(cudaFree(t->d));
    memset(t, 0, sizeof *t);
}

static float *f32_rand(size_t n, float scale, float offset) {
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * urand();
    return p;
}
static float *f32_dev(const float *h, size_t n) {
    float *d = dmalloc(n * sizeof *d);
    up(d, h, n * sizeof *d);
    return d;
}

/* Device bf16 -> host floats (poison 0xFFFF becomes NaN). */
static void down_bf16(float *dst, const wmcuda_bf16 *d, size_t n) {
    wmcuda_bf16 *tmp = xmalloc(n * sizeof *tmp);
    down(tmp, d, n * sizeof *tmp);
    for (size_t i = 0; i < n; i++) dst[i] = wm_bf16_to_float(tmp[i]);
    free(tmp);
}

typedef struct {
    double num, den;
    int nonfinite;
} acc_t;
static void acc_add(acc_t *a, const float *out, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) a->nonfinite = 1;
        const double d = (double)out[i] - (double)ref[i];
        a->num += d * d;
        a->den += (double)ref[i] * (double)ref[i];
    }
}
static double acc_err(const acc_t *a) {
    if (a->nonfinite) return INFINITY;
    return a->den > 0.0 ? sqrt(a->num / a->den) : sqrt(a->num);
}
static double rel_err(const float *out, const float *ref, size_t n) {
    acc_t a = {0, 0, 0};
    acc_add(&a, out, ref, n);
    return acc_err(&a);
}
static size_t count_nonfinite(const float *p, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(p[i]);
    return bad;
}

static int pick_rows(int L, int *rows) {
    if (L <= SAMPLE_ROWS) {
        for (int i = 0; i < L; i++) rows[i] = i;
        return L;
    }
    for (int i = 0; i < SAMPLE_ROWS; i++)
        rows[i] = (int)((long long)i * (L - 1) / (SAMPLE_ROWS - 1));
    return SAMPLE_ROWS;
}

/* ---- shapes ------------------------------------------------------------------------------------------ */

typedef struct shape {
    const char *tag;
    const eng_config *c;
    int F, S, gh, gw, L, D, FF, H, dh, Fk, Lk;
    int Ha, ha, adh; /* action hidden width, heads, head width */
    int timing;
} shape;

static shape make_shape(const char *tag, const eng_config *c, int timing) {
    shape s;
    memset(&s, 0, sizeof s);
    s.tag = tag, s.c = c, s.timing = timing;
    s.F = c->frames_per_block, s.gh = eng_grid_h(c), s.gw = eng_grid_w(c), s.S = s.gh * s.gw;
    s.L = s.F * s.S, s.D = c->dim, s.FF = c->ffn_dim, s.H = c->num_heads, s.dh = c->head_dim;
    s.Fk = c->local_attn_size, s.Lk = s.Fk * s.S;
    s.Ha = c->mouse_hidden, s.ha = c->action_heads, s.adh = s.Ha / s.ha;
    return s;
}

/* ---- linear layers ------------------------------------------------------------------------------------- */

/* y = epi(x W^T + b) with optional row-stride padding; reference cpu_linear on sampled rows. */
static void test_linear(const shape *s, wmcuda_gemm *g, const char *what, int M, int K, int N,
                        int use_bias, wmcuda_epilogue epi, int pad_x, int pad_y, int timed) {
    const int ldx = K + pad_x, ldy = N + pad_y;
    bt x = bt_rand((size_t)M * ldx, 1.0f, 0.0f);
    bt W = bt_rand((size_t)N * K, 1.7f / sqrtf((float)K), 0.0f);
    bt b = bt_rand((size_t)N, 0.5f, 0.0f);
    const size_t ny = (size_t)M * ldy;
    wmcuda_bf16 *yd = dmalloc(ny * sizeof *yd);
    poison(yd, ny * sizeof *yd);
    WM(wmcuda_linear(g, x.d, ldx, M, K, W.d, use_bias ? b.d : NULL, N, yd, ldy, epi, NULL));
    float *y = xmalloc(ny * sizeof *y);
    down_bf16(y, yd, ny);

    int rows[SAMPLE_ROWS];
    const int nr = pick_rows(M, rows);
    float *xs = xmalloc((size_t)nr * K * sizeof *xs), *ref = xmalloc((size_t)nr * N * sizeof *ref);
    float *out = xmalloc((size_t)nr * N * sizeof *out);
    for (int i = 0; i < nr; i++) {
        memcpy(xs + (size_t)i * K, x.f + (size_t)rows[i] * ldx, (size_t)K * sizeof *xs);
        memcpy(out + (size_t)i * N, y + (size_t)rows[i] * ldy, (size_t)N * sizeof *out);
    }
    cpu_linear(xs, K, nr, K, W.f, use_bias ? b.f : NULL, N, ref, N);
    if (epi == WMCUDA_EPI_GELU_TANH) cpu_apply_gelu_tanh(ref, (size_t)nr * N);
    char name[72];
    snprintf(name, sizeof name, "%s %dx%d->%d", what, M, K, N);
    check(s->tag, name, rel_err(out, ref, (size_t)nr * N), BOUND_BF16);
    /* every used element written, the padding columns untouched */
    size_t unwritten = 0, clobbered = 0;
    wmcuda_bf16 *bits = xmalloc(ny * sizeof *bits);
    down(bits, yd, ny * sizeof *bits);
    for (int r = 0; r < M; r++)
        for (int c = 0; c < ldy; c++) {
            const int poisoned = bits[(size_t)r * ldy + c] == 0xFFFFu;
            if (c < N) unwritten += poisoned;
            else clobbered += !poisoned;
        }
    snprintf(name, sizeof name, "%s %dx%d->%d coverage", what, M, K, N);
    check_zero(s->tag, name, unwritten + clobbered, ny);
    if (timed) {
        snprintf(name, sizeof name, "%s %dx%d->%d", what, M, K, N);
        const double flops = 2.0 * M * (double)K * N;
        const double bytes = 2.0 * ((double)M * K + (double)N * K + (double)M * N + N);
        TIME_OP(name, flops, bytes,
                wmcuda_linear(g, x.d, ldx, M, K, W.d, use_bias ? b.d : NULL, N, yd, ldy, epi, NULL));
    }
    free(bits), free(xs), free(ref), free(out), free(y);
    CK(cudaFree(yd));
    bt_free(&x), bt_free(&W), bt_free(&b);
}

/* fp32 out, fp32 bias: the patch embedding (K = 144) and the head (N = 64) shapes. */
static void test_linear_f32(const shape *s, wmcuda_gemm *g, const char *what, int M, int K, int N,
                            int timed) {
    bt x = bt_rand((size_t)M * K, 1.0f, 0.0f);
    bt W = bt_rand((size_t)N * K, 1.7f / sqrtf((float)K), 0.0f);
    float *b = f32_rand((size_t)N, 0.5f, 0.0f), *bd = f32_dev(b, (size_t)N);
    const size_t ny = (size_t)M * N;
    float *yd = dmalloc(ny * sizeof *yd);
    poison(yd, ny * sizeof *yd);
    WM(wmcuda_linear_f32(g, x.d, K, M, K, W.d, bd, N, yd, N, WMCUDA_EPI_NONE, NULL));
    float *y = xmalloc(ny * sizeof *y);
    down(y, yd, ny * sizeof *y);
    int rows[SAMPLE_ROWS];
    const int nr = pick_rows(M, rows);
    float *xs = xmalloc((size_t)nr * K * sizeof *xs), *ref = xmalloc((size_t)nr * N * sizeof *ref);
    float *out = xmalloc((size_t)nr * N * sizeof *out);
    for (int i = 0; i < nr; i++) {
        memcpy(xs + (size_t)i * K, x.f + (size_t)rows[i] * K, (size_t)K * sizeof *xs);
        memcpy(out + (size_t)i * N, y + (size_t)rows[i] * N, (size_t)N * sizeof *out);
    }
    cpu_linear(xs, K, nr, K, W.f, b, N, ref, N);
    char name[72];
    snprintf(name, sizeof name, "%s f32out %dx%d->%d", what, M, K, N);
    check(s->tag, name, rel_err(out, ref, (size_t)nr * N), BOUND_F32_GEMM);
    snprintf(name, sizeof name, "%s f32out %dx%d->%d coverage", what, M, K, N);
    check_zero(s->tag, name, count_nonfinite(y, ny), ny);
    if (timed) {
        snprintf(name, sizeof name, "%s f32out %dx%d->%d", what, M, K, N);
        TIME_OP(name, 2.0 * M * (double)K * N,
                2.0 * ((double)M * K + (double)N * K) + 4.0 * ((double)M * N + N),
                wmcuda_linear_f32(g, x.d, K, M, K, W.d, bd, N, yd, N, WMCUDA_EPI_NONE, NULL));
    }
    free(xs), free(ref), free(out), free(y), free(b);
    CK(cudaFree(yd));
    CK(cudaFree(bd));
    bt_free(&x), bt_free(&W);
}

/* cuBLASLt's GELU epilogue is undocumented as to its form. Feed it pre-activations chosen exactly
 * (x one-hot through W = identity, K = 8) with fp32 output, and see which form it is closer to. */
static void test_gelu_flavour(wmcuda_gemm *g) {
    const int M = 8192, K = 8, N = 8;
    wmcuda_bf16 *xh = xmalloc((size_t)M * K * sizeof *xh), *wh = xmalloc((size_t)N * K * sizeof *wh);
    float *u = xmalloc((size_t)M * sizeof *u);
    for (int i = 0; i < M; i++) {
        u[i] = wm_bf16_round(-6.0f + 12.0f * (float)i / (float)(M - 1));
        for (int k = 0; k < K; k++)
            xh[(size_t)i * K + k] = wm_bf16_from_float(k == 0 ? u[i] : 0.25f * urand());
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wh[(size_t)n * K + k] = wm_bf16_from_float(n == k ? 1.0f : 0.0f);
    wmcuda_bf16 *xd = dmalloc((size_t)M * K * 2), *wd = dmalloc((size_t)N * K * 2);
    float *yd = dmalloc((size_t)M * N * 4), *y = xmalloc((size_t)M * N * 4);
    up(xd, xh, (size_t)M * K * 2);
    up(wd, wh, (size_t)N * K * 2);
    poison(yd, (size_t)M * N * 4);
    const int rc = wmcuda_linear_f32(g, xd, K, M, K, wd, NULL, N, yd, N, WMCUDA_EPI_GELU_TANH, NULL);
    if (rc == WMCUDA_ENOALGO) {
        printf("SKIP gelu flavour: cuBLASLt has no fp32-output GELU algorithm (%s)\n",
               wmcuda_gemm_last_error(g));
    } else if (rc != 0) {
        printf("FAIL gelu flavour: wmcuda_linear_f32 returned %d\n", rc);
        g_failures++;
    } else {
        down(y, yd, (size_t)M * N * 4);
        /* r = out - gelu_tanh projected on d = gelu_erf - gelu_tanh: alpha ~ 0 for the tanh form,
         * ~ 1 for the erf form, whatever (uncorrelated) error a fast tanh adds */
        double rd = 0, dd = 0, st = 0, se = 0, nrm = 0, mt = 0;
        int finite = 1;
        for (int i = 0; i < M; i++) {
            const double d = u[i];
            const double gt = 0.5 * d * (1.0 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d)));
            const double ge = 0.5 * d * (1.0 + erf(d * 0.7071067811865476));
            const double o = y[(size_t)i * N];
            finite &= isfinite(o) != 0;
            rd += (o - gt) * (ge - gt), dd += (ge - gt) * (ge - gt);
            st += (o - gt) * (o - gt), se += (o - ge) * (o - ge), nrm += gt * gt;
            if (fabs(o - gt) > mt) mt = fabs(o - gt);
        }
        const double alpha = rd / dd, rt = sqrt(st / nrm), re = sqrt(se / nrm);
        printf("info gelu flavour: cuBLASLt GELU epilogue: erf share %.3f (0 = tanh form, 1 = erf "
               "form); rel err vs tanh form %.3e (max abs %.2e), vs erf form %.3e\n",
               alpha, rt, mt, re);
        check("all", "cuBLASLt GELU epilogue: erf share", finite ? fabs(alpha) : INFINITY, 0.5);
        check("all", "cuBLASLt GELU epilogue vs tanh form (fp32)", finite ? rt : INFINITY, 2e-3);
    }
    free(xh), free(wh), free(u), free(y);
    CK(cudaFree(xd));
    CK(cudaFree(wd));
    CK(cudaFree(yd));
}

/* ---- attention ------------------------------------------------------------------------------------------- */

/* Scores, softmax and P.V for lq = s->L queries over lk keys, each checked on its own (on the
 * device's own inputs) and end to end against cpu_attention. mask: [Fq][lk / S] or NULL. */
static void test_attention(const shape *s, wmcuda_gemm *g, const char *what, int lk, int lds,
                           const unsigned char *mask, int timed) {
    const int lq = s->L, D = s->D, H = s->H, dh = s->dh, S = s->S;
    const int Fk = (lk + S - 1) / S;
    const float scale = (float)(1.0 / sqrt((double)dh));
    bt q = bt_rand((size_t)lq * D, 4.0f, 0.0f);
    bt k = bt_rand((size_t)lk * D, 1.0f, 0.0f);
    bt v = bt_rand((size_t)lk * D, 1.0f, 0.0f);
    const size_t ns = (size_t)H * lq * lds;
    float *sd = dmalloc(ns * sizeof *sd);
    wmcuda_bf16 *pd = dmalloc(ns * sizeof *pd), *od = dmalloc((size_t)lq * D * sizeof *od);
    unsigned char *maskd = NULL;
    if (mask) {
        maskd = dmalloc((size_t)s->F * Fk);
        up(maskd, mask, (size_t)s->F * Fk);
    }
    poison(sd, ns * sizeof *sd);
    poison(pd, ns * sizeof *pd);
    poison(od, (size_t)lq * D * sizeof *od);
    WM(wmcuda_attn_scores(g, q.d, D, lq, k.d, D, lk, H, dh, scale, sd, lds, NULL));
    WM(wmcuda_softmax_rows(sd, lds, pd, lds, H * lq, lk, lq, maskd, Fk, S, S, NULL));
    WM(wmcuda_attn_pv(g, pd, lds, lq, lk, v.d, D, H, dh, od, D, NULL));
    CK(cudaDeviceSynchronize());

    int rows[SAMPLE_ROWS];
    const int nr = pick_rows(lq, rows);
    float *srow = xmalloc((size_t)nr * lk * sizeof *srow), *prow = xmalloc((size_t)nr * lk * sizeof *prow);
    float *ref = xmalloc((size_t)nr * (lk > D ? lk : D) * sizeof *ref);
    float *qh = xmalloc((size_t)nr * dh * sizeof *qh), *kh = xmalloc((size_t)lk * dh * sizeof *kh);
    float *vt = xmalloc((size_t)dh * lk * sizeof *vt), *oref = xmalloc((size_t)nr * dh * sizeof *oref);
    float *o = xmalloc((size_t)lq * D * sizeof *o), *ohead = xmalloc((size_t)nr * dh * sizeof *ohead);
    wmcuda_bf16 *pbits = xmalloc((size_t)lk * sizeof *pbits);
    down_bf16(o, od, (size_t)lq * D);
    acc_t es = {0, 0, 0}, ep = {0, 0, 0}, eo = {0, 0, 0};
    size_t mask_bad = 0, mask_total = 0;
    for (int h = 0; h < H; h++) {
        for (int i = 0; i < nr; i++) {
            const size_t off = ((size_t)h * lq + rows[i]) * lds;
            down(srow + (size_t)i * lk, sd + off, (size_t)lk * sizeof *srow);
            down(pbits, pd + off, (size_t)lk * sizeof *pbits);
            for (int c = 0; c < lk; c++) prow[(size_t)i * lk + c] = wm_bf16_to_float(pbits[c]);
            memcpy(qh + (size_t)i * dh, q.f + (size_t)rows[i] * D + (size_t)h * dh, (size_t)dh * 4);
        }
        for (int j = 0; j < lk; j++) {
            memcpy(kh + (size_t)j * dh, k.f + (size_t)j * D + (size_t)h * dh, (size_t)dh * 4);
            for (int d = 0; d < dh; d++) vt[(size_t)d * lk + j] = v.f[(size_t)j * D + (size_t)h * dh + d];
        }
        /* scores */
        cpu_linear(qh, dh, nr, dh, kh, NULL, lk, ref, lk);
        for (size_t e = 0; e < (size_t)nr * lk; e++) ref[e] *= scale;
        acc_add(&es, srow, ref, (size_t)nr * lk);
        /* softmax of the device's scores, in double */
        for (int i = 0; i < nr; i++) {
            const float *sr = srow + (size_t)i * lk;
            const unsigned char *vis = mask ? mask + (size_t)(rows[i] / S) * Fk : NULL;
            double mx = -INFINITY, sum = 0.0;
            for (int c = 0; c < lk; c++)
                if ((!vis || vis[c / S]) && sr[c] > mx) mx = sr[c];
            for (int c = 0; c < lk; c++) {
                const double e = (!vis || vis[c / S]) && mx > -INFINITY ? exp(sr[c] - mx) : 0.0;
                ref[(size_t)i * lk + c] = (float)e;
                sum += e;
            }
            for (int c = 0; c < lk; c++) {
                ref[(size_t)i * lk + c] = sum > 0.0 ? (float)(ref[(size_t)i * lk + c] / sum) : 0.0f;
                if (vis && !vis[c / S]) {
                    mask_total++;
                    mask_bad += prow[(size_t)i * lk + c] != 0.0f;
                }
            }
        }
        acc_add(&ep, prow, ref, (size_t)nr * lk);
        /* P.V with the device's P */
        cpu_linear(prow, lk, nr, lk, vt, NULL, dh, oref, dh);
        for (int i = 0; i < nr; i++)
            memcpy(ohead + (size_t)i * dh, o + (size_t)rows[i] * D + (size_t)h * dh, (size_t)dh * 4);
        acc_add(&eo, ohead, oref, (size_t)nr * dh);
    }
    char name[72];
    snprintf(name, sizeof name, "attn %s scores (Lk %d)", what, lk);
    check(s->tag, name, acc_err(&es), BOUND_F32_GEMM);
    snprintf(name, sizeof name, "attn %s softmax (Lk %d)", what, lk);
    check(s->tag, name, acc_err(&ep), BOUND_BF16);
    if (mask) {
        snprintf(name, sizeof name, "attn %s softmax masked entries == 0", what);
        check_zero(s->tag, name, mask_bad, mask_total);
    }
    snprintf(name, sizeof name, "attn %s P.V (Lk %d)", what, lk);
    check(s->tag, name, acc_err(&eo), BOUND_BF16);

    /* end to end against cpu_attention, one sampled query row at a time */
    float *scratch = xmalloc((size_t)lk * sizeof *scratch), *orow = xmalloc((size_t)D * sizeof *orow);
    acc_t ee = {0, 0, 0};
    for (int i = 0; i < nr; i++) {
        const int r = rows[i];
        cpu_attn_args a = {.q = q.f + (size_t)r * D, .k = k.f, .v = v.f, .o = orow, .ldq = D,
                           .ldk = D, .ldv = D, .ldo = D, .lq = 1, .lk = lk, .heads = H, .dh = dh,
                           .mask = mask ? mask + (size_t)(r / S) * Fk : NULL, .frames_q = 1,
                           .frames_k = Fk, .rows_per_frame_q = 1, .rows_per_frame_k = S};
        cpu_attention(&a, scratch);
        acc_add(&ee, o + (size_t)r * D, orow, (size_t)D);
    }
    snprintf(name, sizeof name, "attn %s end to end vs cpu_attention", what);
    check(s->tag, name, acc_err(&ee), BOUND_BF16);

    /* coverage: every P element of every row written, padding untouched; every O element written */
    size_t unwritten = 0, clobbered = 0;
    const size_t chunk = (size_t)lq * lds;
    wmcuda_bf16 *all = xmalloc(chunk * sizeof *all);
    for (int h = 0; h < H; h++) {
        down(all, pd + (size_t)h * chunk, chunk * sizeof *all);
        for (size_t e = 0; e < chunk; e++) {
            const int poisoned = all[e] == 0xFFFFu;
            if ((int)(e % (size_t)lds) < lk) unwritten += poisoned;
            else clobbered += !poisoned;
        }
    }
    snprintf(name, sizeof name, "attn %s P coverage (all rows)", what);
    check_zero(s->tag, name, unwritten + clobbered, ns);
    snprintf(name, sizeof name, "attn %s O coverage (all rows)", what);
    check_zero(s->tag, name, count_nonfinite(o, (size_t)lq * D), (size_t)lq * D);

    if (timed) {
        const double f = 2.0 * H * (double)lq * lk * dh;
        snprintf(name, sizeof name, "attn scores %dx%d x%d heads", lq, lk, H);
        TIME_OP(name, f, 2.0 * ((double)lq * D + (double)lk * D) + 4.0 * H * (double)lq * lk,
                wmcuda_attn_scores(g, q.d, D, lq, k.d, D, lk, H, dh, scale, sd, lds, NULL));
        snprintf(name, sizeof name, "softmax %d rows x %d", H * lq, lk);
        TIME_OP(name, 0.0, 6.0 * H * (double)lq * lk,
                wmcuda_softmax_rows(sd, lds, pd, lds, H * lq, lk, lq, maskd, Fk, S, S, NULL));
        snprintf(name, sizeof name, "attn P.V %dx%d x%d heads", lq, lk, H);
        TIME_OP(name, f, 2.0 * H * (double)lq * lk + 2.0 * ((double)lk * D + (double)lq * D),
                wmcuda_attn_pv(g, pd, lds, lq, lk, v.d, D, H, dh, od, D, NULL));
    }
    free(all), free(scratch), free(orow), free(pbits), free(srow), free(prow), free(ref), free(qh);
    free(kh), free(vt), free(oref), free(o), free(ohead);
    CK(cudaFree(sd));
    CK(cudaFree(pd));
    CK(cudaFree(od));
    if (maskd) CK(cudaFree(maskd));
    bt_free(&q), bt_free(&k), bt_free(&v);
}

/* ---- fused attention (engine/cuda/attention.h) ----------------------------------------------- */

/* One problem for wmcuda_attention: lq query rows (rpf per frame) over nslots slots of kps keys;
 * vis [ceil(lq / rpf)][nslots] or NULL. Strides are padded (q +16, k/v rows +8, 3 spare rows
 * between slots, o +8) so a stride mix-up shows. Slots no query frame sees, and the spare rows,
 * hold NaN: reading one, even to mask it, makes the output NaN (the kernel must skip them). */
typedef struct fa_case {
    const char *what;
    int lq, rpf, heads, dh, kps, nslots;
    const unsigned char *vis;
} fa_case;

typedef struct fa_data {
    int ldq, ldkv, ldo, width, frames;
    size_t slot_stride, nq, nkv, no;
    float *q, *k, *v; /* host values (bf16-rounded; NaN where poisoned) */
    wmcuda_bf16 *qd, *kd, *vd, *od;
    unsigned char *visd;
} fa_data;

static int fa_visible(const fa_case *c, int f, int j) {
    return !c->vis || c->vis[f * c->nslots + j];
}

static int fa_slot_read(const fa_case *c, const fa_data *d, int j) {
    for (int f = 0; f < d->frames; f++)
        if (fa_visible(c, f, j)) return 1;
    return 0;
}

static void fa_fill(float *h, wmcuda_bf16 *bits, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) {
        bits[i] = wm_bf16_from_float(scale * urand());
        h[i] = wm_bf16_to_float(bits[i]);
    }
}

static void fa_make(const fa_case *c, fa_data *d) {
    memset(d, 0, sizeof *d);
    d->width = c->heads * c->dh;
    d->ldq = d->width + 16, d->ldkv = d->width + 8, d->ldo = d->width + 8;
    d->frames = (c->lq + c->rpf - 1) / c->rpf;
    d->slot_stride = (size_t)(c->kps + 3) * d->ldkv;
    d->nq = (size_t)c->lq * d->ldq, d->nkv = (size_t)c->nslots * d->slot_stride;
    d->no = (size_t)c->lq * d->ldo;
    wmcuda_bf16 *qb = xmalloc(d->nq * 2), *kb = xmalloc(d->nkv * 2), *vb = xmalloc(d->nkv * 2);
    d->q = xmalloc(d->nq * 4), d->k = xmalloc(d->nkv * 4), d->v = xmalloc(d->nkv * 4);
    fa_fill(d->q, qb, d->nq, 4.0f);
    fa_fill(d->k, kb, d->nkv, 1.0f);
    fa_fill(d->v, vb, d->nkv, 1.0f);
    const wmcuda_bf16 nan_bits = 0x7FC0u;
    for (int j = 0; j < c->nslots; j++) {
        const int read = fa_slot_read(c, d, j);
        for (size_t e = 0; e < d->slot_stride; e++) {
            const size_t i = (size_t)j * d->slot_stride + e;
            if (read && e < (size_t)c->kps * d->ldkv) continue;
            kb[i] = vb[i] = nan_bits;
            d->k[i] = d->v[i] = NAN;
        }
    }
    d->qd = dmalloc(d->nq * 2), d->kd = dmalloc(d->nkv * 2), d->vd = dmalloc(d->nkv * 2);
    d->od = dmalloc(d->no * 2);
    up(d->qd, qb, d->nq * 2), up(d->kd, kb, d->nkv * 2), up(d->vd, vb, d->nkv * 2);
    if (c->vis) {
        d->visd = dmalloc((size_t)d->frames * c->nslots);
        up(d->visd, c->vis, (size_t)d->frames * c->nslots);
    }
    free(qb), free(kb), free(vb);
}

static void fa_free(fa_data *d) {
    free(d->q), free(d->k), free(d->v);
    CK(cudaFree(d->qd));
    CK(cudaFree(d->kd));
    CK(cudaFree(d->vd));
    CK(cudaFree(d->od));
    if (d->visd) CK(cudaFree(d->visd));
}

static wmcuda_attn_args fa_args(const fa_case *c, const fa_data *d) {
    const wmcuda_attn_args a = {.q = d->qd, .ldq = d->ldq, .lq = c->lq, .k = d->kd, .v = d->vd,
                                .ldkv = d->ldkv, .slot_stride = d->slot_stride,
                                .keys_per_slot = c->kps, .nslots = c->nslots, .vis = d->visd,
                                .rows_per_frame_q = c->rpf, .heads = c->heads, .dh = c->dh,
                                .scale = (float)(1.0 / sqrt((double)c->dh)), .o = d->od,
                                .ldo = d->ldo};
    return a;
}

/* float64 reference of row r, all heads, into ref[width]; returns 0 if the row sees no key. */
static int fa_ref_row(const fa_case *c, const fa_data *d, int r, double *p, double *ref) {
    const int f = r / c->rpf, nk = c->nslots * c->kps;
    const double scale = 1.0 / sqrt((double)c->dh);
    int any = 0;
    for (int h = 0; h < c->heads; h++) {
        const float *qr = d->q + (size_t)r * d->ldq + (size_t)h * c->dh;
        double mx = -INFINITY, sum = 0.0;
        for (int n = 0; n < nk; n++) {
            const int j = n / c->kps;
            p[n] = -INFINITY;
            if (!fa_visible(c, f, j)) continue;
            const float *kr = d->k + (size_t)j * d->slot_stride + (size_t)(n % c->kps) * d->ldkv +
                              (size_t)h * c->dh;
            double dot = 0.0;
            for (int e = 0; e < c->dh; e++) dot += (double)qr[e] * (double)kr[e];
            p[n] = dot * scale;
            if (p[n] > mx) mx = p[n];
        }
        for (int n = 0; n < nk; n++) {
            p[n] = p[n] == -INFINITY ? 0.0 : exp(p[n] - mx);
            sum += p[n];
        }
        any |= sum > 0.0;
        for (int e = 0; e < c->dh; e++) {
            double acc = 0.0;
            for (int n = 0; n < nk; n++)
                if (p[n] != 0.0)
                    acc += p[n] * (double)d->v[(size_t)(n / c->kps) * d->slot_stride +
                                               (size_t)(n % c->kps) * d->ldkv +
                                               (size_t)h * c->dh + e];
            ref[h * c->dh + e] = sum > 0.0 ? acc / sum : 0.0;
        }
    }
    return any;
}

/* Every variant against the float64 reference on sampled rows (all rows up to SAMPLE_ROWS, else
 * SAMPLE_ROWS spread rows with the first and last); every output row scanned for poison, padding
 * columns for clobbering; rows that see no key must be exactly 0. Bound BOUND_BF16 (bf16 q, k, v,
 * bf16 probabilities and output: ~3e-3 expected). timed: each variant timed, the default one
 * last. */
static void test_fused_attention(const char *tag, const fa_case *c, int timed) {
    fa_data d;
    fa_make(c, &d);
    int rows[SAMPLE_ROWS];
    const int nr = pick_rows(c->lq, rows);
    const int nk = c->nslots * c->kps;
    double *p = xmalloc((size_t)nk * sizeof *p), *ref = xmalloc((size_t)nr * d.width * sizeof *ref);
    int *seen = xmalloc((size_t)nr * sizeof *seen);
    for (int i = 0; i < nr; i++) seen[i] = fa_ref_row(c, &d, rows[i], p, ref + (size_t)i * d.width);
    float *o = xmalloc(d.no * sizeof *o);
    wmcuda_bf16 *obits = xmalloc(d.no * sizeof *obits);
    const wmcuda_attn_args a = fa_args(c, &d);
    char name[96];
    for (int var = 0; var < WMCUDA_ATTN_VARIANTS; var++) {
        poison(d.od, d.no * 2);
        WM(wmcuda_attention_variant(&a, var, NULL));
        CK(cudaDeviceSynchronize());
        down(obits, d.od, d.no * 2);
        double num = 0.0, den = 0.0;
        size_t nonzero_empty = 0, empty_total = 0, unwritten = 0, clobbered = 0;
        for (size_t e = 0; e < d.no; e++) {
            o[e] = wm_bf16_to_float(obits[e]);
            if ((int)(e % (size_t)d.ldo) < d.width) unwritten += !isfinite(o[e]);
            else clobbered += obits[e] != 0xFFFFu;
        }
        for (int i = 0; i < nr; i++)
            for (int e = 0; e < d.width; e++) {
                const double g = o[(size_t)rows[i] * d.ldo + e], r = ref[(size_t)i * d.width + e];
                if (!seen[i]) {
                    empty_total++;
                    nonzero_empty += g != 0.0;
                }
                num += isfinite(g) ? (g - r) * (g - r) : INFINITY;
                den += r * r;
            }
        snprintf(name, sizeof name, "fused %s v%d vs float64", c->what, var);
        check(tag, name, den > 0.0 ? sqrt(num / den) : sqrt(num), BOUND_BF16);
        snprintf(name, sizeof name, "fused %s v%d coverage+padding", c->what, var);
        check_zero(tag, name, unwritten + clobbered, d.no);
        if (empty_total) {
            snprintf(name, sizeof name, "fused %s v%d rows seeing nothing == 0", c->what, var);
            check_zero(tag, name, nonzero_empty, empty_total);
        }
    }
    if (timed) {
        /* keys actually attended by the frames (for the FLOP count) */
        double keys = 0.0;
        for (int r = 0; r < c->lq; r++)
            for (int j = 0; j < c->nslots; j++) keys += fa_visible(c, r / c->rpf, j) ? c->kps : 0;
        const double flops = 4.0 * keys * c->heads * c->dh;
        const double bytes = 2.0 * 2.0 * c->lq * d.width + 2.0 * 2.0 * nk * d.width;
        for (int k = 1; k <= WMCUDA_ATTN_VARIANTS; k++) {
            const int var = (WMCUDA_ATTN_DEFAULT + k) % WMCUDA_ATTN_VARIANTS;
            snprintf(name, sizeof name, "fused %s v%d%s", c->what, var,
                     var == WMCUDA_ATTN_DEFAULT ? " (default)" : "");
            TIME_OP(name, flops, bytes, wmcuda_attention_variant(&a, var, NULL));
            printf("info   v%d = %s: %.0f TFLOP/s\n", var, wmcuda_attention_variant_name(var),
                   flops / (g_times[g_ntimes - 1].us * 1e-6) * 1e-12);
        }
    }
    free(p), free(ref), free(seen), free(o), free(obits);
    fa_free(&d);
}

/* The shapes the DiT launches and the edges around them (dh = the shape's head width). */
static void test_fused_shapes(const shape *s) {
    const int S = s->S, F = s->F, W = s->Fk, H = s->H, dh = s->dh;
    unsigned char all[64], block0[64], hole[64], causal[64], odd[64];
    for (int f = 0; f < F; f++)
        for (int j = 0; j < W; j++) {
            all[f * W + j] = 1;
            block0[f * W + j] = j < F;             /* block 0: only the block's own slots */
            hole[f * W + j] = j != 2;              /* a stale slot inside the window */
            causal[f * W + j] = f != 1 && j <= W - F + f; /* frames differ; frame 1 sees none */
        }
    for (int f = 0; f < 3; f++)
        for (int j = 0; j < 5; j++) odd[f * 5 + j] = j != 1 && !(f == 2 && j == 4);
    const fa_case cases[] = {
        {"self steady W", F * S, S, H, dh, S, W, all},
        {"self block 0", F * S, S, H, dh, S, W, block0},
        {"self stale slot", F * S, S, H, dh, S, W, hole},
        {"self per-frame", F * S, S, H, dh, S, W, causal},
        {"cross 257", F * S, S, H, dh, s->c->clip_tokens, 1, NULL},
        {"odd S=100", 300, 100, 2, dh, 100, 5, odd},
        {"S=37 dh64", 111, 37, 4, 64, 37, 3, NULL},
        {"one key", 70, 70, 3, dh, 1, 1, NULL},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++)
        test_fused_attention(s->tag, &cases[i], s->timing && (i == 0 || i == 1 || i == 4));
}

/* The action module's attention (wmcuda_action_attention) against float64 on every row: the
 * mouse layout (keys per spatial position), the keyboard layout (one key per slot, shared), and
 * a q stride that is not a multiple of 8 (the one-warp-per-row fallback). Query frame 1 sees
 * nothing (zeros expected); slots no frame sees hold NaN (never to be used). Bound BOUND_BF16. */
static void test_action_attention(const shape *s, const char *what, int keyboard, int ldq_pad) {
    const int S = s->S, F = s->F, W = s->Fk, Hm = s->Ha, heads = s->ha, hd = s->adh;
    const int rows = F * S, ldq = Hm + ldq_pad, ldo = Hm + 8;
    const size_t pos_stride = keyboard ? 0 : (size_t)Hm;
    const size_t slot_stride = keyboard ? (size_t)Hm : (size_t)S * Hm;
    const size_t nkv = (size_t)W * slot_stride;
    unsigned char vis[64];
    for (int f = 0; f < F; f++)
        for (int j = 0; j < W; j++) vis[f * W + j] = f != 1 && j != 1 && j < W - F + 1 + f;
    bt q = bt_rand((size_t)rows * ldq, 3.0f, 0.0f);
    bt k = bt_rand(nkv, 1.0f, 0.0f), v = bt_rand(nkv, 1.0f, 0.0f);
    for (int j = 0; j < W; j++) { /* slots nobody sees: NaN */
        int seen = 0;
        for (int f = 0; f < F; f++) seen |= vis[f * W + j];
        if (seen) continue;
        for (size_t e = 0; e < slot_stride; e++) {
            k.h[(size_t)j * slot_stride + e] = v.h[(size_t)j * slot_stride + e] = 0x7FC0u;
            k.f[(size_t)j * slot_stride + e] = v.f[(size_t)j * slot_stride + e] = NAN;
        }
    }
    up(k.d, k.h, nkv * 2), up(v.d, v.h, nkv * 2);
    unsigned char *visd = dmalloc(64);
    up(visd, vis, 64);
    wmcuda_bf16 *od = dmalloc((size_t)rows * ldo * 2);
    poison(od, (size_t)rows * ldo * 2);
    const double scale = 1.0 / sqrt((double)hd);
    WM(wmcuda_action_attention(q.d, ldq, k.d, v.d, slot_stride, pos_stride, W, visd, rows, S, heads,
                               hd, (float)scale, od, ldo, NULL));
    CK(cudaDeviceSynchronize());
    float *o = xmalloc((size_t)rows * ldo * sizeof *o);
    down_bf16(o, od, (size_t)rows * ldo);
    double num = 0.0, den = 0.0, p[64];
    size_t nonzero_empty = 0, bad_pad = 0;
    for (int r = 0; r < rows; r++) {
        const int f = r / S, sg = r % S;
        for (int h = 0; h < heads; h++) {
            double mx = -INFINITY, sum = 0.0;
            for (int j = 0; j < W; j++) {
                p[j] = -INFINITY;
                if (!vis[f * W + j]) continue;
                double dot = 0.0;
                for (int e = 0; e < hd; e++)
                    dot += (double)q.f[(size_t)r * ldq + h * hd + e] *
                           k.f[(size_t)j * slot_stride + sg * pos_stride + (size_t)h * hd + e];
                p[j] = dot * scale;
                if (p[j] > mx) mx = p[j];
            }
            for (int j = 0; j < W; j++) sum += p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
            for (int e = 0; e < hd; e++) {
                double acc = 0.0;
                for (int j = 0; j < W; j++)
                    if (p[j] != 0.0)
                        acc += p[j] * v.f[(size_t)j * slot_stride + sg * pos_stride +
                                          (size_t)h * hd + e];
                const double ref = sum > 0.0 ? acc / sum : 0.0, g = o[(size_t)r * ldo + h * hd + e];
                num += isfinite(g) ? (g - ref) * (g - ref) : INFINITY;
                den += ref * ref;
                nonzero_empty += sum == 0.0 && g != 0.0;
            }
        }
        for (int e = Hm; e < ldo; e++) bad_pad += !isnan(o[(size_t)r * ldo + e]);
    }
    char name[96];
    snprintf(name, sizeof name, "action attn %s vs float64", what);
    check(s->tag, name, sqrt(num / den), BOUND_BF16);
    snprintf(name, sizeof name, "action attn %s empty rows 0, padding", what);
    check_zero(s->tag, name, nonzero_empty + bad_pad, (size_t)rows * ldo);
    free(o);
    CK(cudaFree(visd));
    CK(cudaFree(od));
    bt_free(&q), bt_free(&k), bt_free(&v);
}

/* The action module's attention at the full shape, timed: is it a measurable share of a
 * forward? */
static void time_action_attention(const shape *s) {
    const int L = s->L, S = s->S, W = s->Fk, Hm = s->Ha, heads = s->ha, hd = s->adh;
    bt q = bt_rand((size_t)L * 3 * Hm, 1.0f, 0.0f);
    bt kv = bt_rand((size_t)W * S * Hm * 2, 1.0f, 0.0f);
    unsigned char vis[64];
    for (int i = 0; i < s->F * W; i++) vis[i] = 1;
    unsigned char *visd = dmalloc(64);
    up(visd, vis, 64);
    wmcuda_bf16 *od = dmalloc((size_t)L * Hm * 2);
    const size_t fsz = (size_t)S * Hm;
    const float scale = (float)(1.0 / sqrt((double)hd));
    char name[96];
    snprintf(name, sizeof name, "action attn mouse %dx%dx%d, %d slots", L, heads, hd, W);
    TIME_OP(name, 4.0 * L * W * Hm, 2.0 * (2.0 * L * Hm + 2.0 * W * fsz),
            wmcuda_action_attention(q.d, 3 * Hm, kv.d, kv.d + W * fsz, fsz, (size_t)Hm, W, visd, L,
                                    S, heads, hd, scale, od, Hm, NULL));
    snprintf(name, sizeof name, "action attn keyboard %dx%dx%d, %d keys", L, heads, hd, W);
    TIME_OP(name, 4.0 * L * W * Hm, 2.0 * 2.0 * L * Hm,
            wmcuda_action_attention(q.d, Hm, kv.d, kv.d + W * Hm, (size_t)Hm, 0, W, visd, L, S,
                                    heads, hd, scale, od, Hm, NULL));
    bt_free(&q), bt_free(&kv);
    CK(cudaFree(visd));
    CK(cudaFree(od));
}

/* ---- norms ---------------------------------------------------------------------------------------------- */

/* A residual-stream-like fp32 tensor: per-row offsets so that the mean matters. */
static float *residual_rand(int rows, int dim) {
    float *x = xmalloc((size_t)rows * dim * sizeof *x);
    for (int r = 0; r < rows; r++) {
        const float off = 4.0f * urand(), sc = 1.0f + 2.0f * (urand() + 1.0f);
        for (int d = 0; d < dim; d++) x[(size_t)r * dim + d] = off + sc * urand();
    }
    return x;
}

static void test_norms(const shape *s) {
    const int L = s->L, D = s->D, F = s->F, S = s->S;
    const float eps = s->c->eps;
    const size_t n = (size_t)L * D;
    float *x = residual_rand(L, D), *xd = f32_dev(x, n);
    bt mod = bt_rand((size_t)F * 6 * D, 0.5f, 0.0f); /* [F][6][D]: shift1, scale1, gate1, ... */
    wmcuda_bf16 *hd = dmalloc(n * sizeof *hd);
    float *h = xmalloc(n * sizeof *h), *ref = xmalloc(n * sizeof *ref);

    /* LN + modulation (4.5 a, i; 4.6) */
    poison(hd, n * 2);
    WM(wmcuda_ln_modulate(xd, hd, L, D, S, eps, mod.d, mod.d + D, (size_t)6 * D, NULL));
    down_bf16(h, hd, n);
    dit_norm_modulate(x, ref, F, S, D, eps, mod.f, mod.f + D, (size_t)6 * D);
    check(s->tag, "ln_modulate (fp32 residual in)", rel_err(h, ref, n), BOUND_BF16);
    /* the head's layout: [F][2][D] rows */
    poison(hd, n * 2);
    WM(wmcuda_ln_modulate(xd, hd, L, D, S, eps, mod.d + 3 * D, mod.d + 4 * D, (size_t)2 * D, NULL));
    down_bf16(h, hd, n);
    dit_norm_modulate(x, ref, F, S, D, eps, mod.f + 3 * D, mod.f + 4 * D, (size_t)2 * D);
    check(s->tag, "ln_modulate (frame stride 2D)", rel_err(h, ref, n), BOUND_BF16);

    /* affine LN (norm3) and plain LN, fp32 in */
    bt gamma = bt_rand((size_t)D, 0.5f, 1.0f), beta = bt_rand((size_t)D, 0.5f, 0.0f);
    poison(hd, n * 2);
    WM(wmcuda_layernorm_f32in(xd, hd, L, D, eps, gamma.d, beta.d, NULL));
    down_bf16(h, hd, n);
    cpu_layernorm(x, ref, L, D, eps, gamma.f, beta.f);
    check(s->tag, "layernorm affine (fp32 in)", rel_err(h, ref, n), BOUND_BF16);
    poison(hd, n * 2);
    WM(wmcuda_layernorm_f32in(xd, hd, L, D, eps, NULL, NULL, NULL));
    down_bf16(h, hd, n);
    cpu_layernorm(x, ref, L, D, eps, NULL, NULL);
    check(s->tag, "layernorm plain (fp32 in)", rel_err(h, ref, n), BOUND_BF16);

    /* mouse-MLP LN: bf16 in, eps 1e-5, affine, out of place and in place */
    const int Ha = s->Ha;
    const size_t na = (size_t)L * Ha;
    bt xa = bt_rand(na, 3.0f, 0.7f);
    bt ga = bt_rand((size_t)Ha, 0.5f, 1.0f), ba = bt_rand((size_t)Ha, 0.5f, 0.0f);
    wmcuda_bf16 *ya = dmalloc(na * 2);
    float *ha = xmalloc(na * sizeof *ha), *refa = xmalloc(na * sizeof *refa);
    poison(ya, na * 2);
    WM(wmcuda_layernorm_bf16in(xa.d, ya, L, Ha, 1e-5f, ga.d, ba.d, NULL));
    down_bf16(ha, ya, na);
    cpu_layernorm(xa.f, refa, L, Ha, 1e-5f, ga.f, ba.f);
    check(s->tag, "layernorm affine (bf16 in, eps 1e-5)", rel_err(ha, refa, na), BOUND_BF16);
    wmcuda_bf16 *inpl = dmalloc(na * 2);
    CK(cudaMemcpy(inpl, xa.d, na * 2, cudaMemcpyDeviceToDevice));
    WM(wmcuda_layernorm_bf16in(inpl, inpl, L, Ha, 1e-5f, ga.d, ba.d, NULL));
    {
        wmcuda_bf16 *b1 = xmalloc(na * 2), *b2 = xmalloc(na * 2);
        down(b1, ya, na * 2);
        down(b2, inpl, na * 2);
        size_t diff = 0;
        for (size_t i = 0; i < na; i++) diff += b1[i] != b2[i];
        check_zero(s->tag, "layernorm bf16 in place == out of place", diff, na);
        free(b1), free(b2);
    }

    if (s->timing) {
        char name[72];
        snprintf(name, sizeof name, "ln_modulate %dx%d", L, D);
        TIME_OP(name, 0.0, 6.0 * (double)n,
                wmcuda_ln_modulate(xd, hd, L, D, S, eps, mod.d, mod.d + D, (size_t)6 * D, NULL));
        snprintf(name, sizeof name, "layernorm affine f32 in %dx%d", L, D);
        TIME_OP(name, 0.0, 6.0 * (double)n,
                wmcuda_layernorm_f32in(xd, hd, L, D, eps, gamma.d, beta.d, NULL));
        snprintf(name, sizeof name, "layernorm affine bf16 in %dx%d", L, Ha);
        TIME_OP(name, 0.0, 4.0 * (double)na,
                wmcuda_layernorm_bf16in(xa.d, ya, L, Ha, 1e-5f, ga.d, ba.d, NULL));
    }
    free(x), free(h), free(ref), free(ha), free(refa);
    CK(cudaFree(xd));
    CK(cudaFree(hd));
    CK(cudaFree(ya));
    CK(cudaFree(inpl));
    bt_free(&mod), bt_free(&gamma), bt_free(&beta), bt_free(&xa), bt_free(&ga), bt_free(&ba);
}

/* The residual update fused with the next LayerNorm (wmcuda_residual_ln_modulate / _layernorm),
 * gated and ungated, against the CPU: x + y (* gate) in float (x after the call: <= BOUND_F32)
 * and the norm of it by dit_norm_modulate / cpu_layernorm (h: <= BOUND_BF16). Timed against the
 * two kernels it replaces. */
static void test_residual_norms(const shape *s) {
    const int L = s->L, D = s->D, F = s->F, S = s->S;
    const float eps = s->c->eps;
    const size_t n = (size_t)L * D;
    float *x = residual_rand(L, D), *xd = f32_dev(x, n), *xr = xmalloc(n * sizeof *xr);
    float *xo = xmalloc(n * sizeof *xo), *h = xmalloc(n * sizeof *h);
    float *ref = xmalloc(n * sizeof *ref);
    bt y = bt_rand(n, 2.0f, 0.0f), mod = bt_rand((size_t)F * 6 * D, 0.5f, 0.0f);
    bt gamma = bt_rand((size_t)D, 0.5f, 1.0f), beta = bt_rand((size_t)D, 0.5f, 0.0f);
    wmcuda_bf16 *hd = dmalloc(n * sizeof *hd);
    char name[72];
    for (int gated = 0; gated < 2; gated++)
        for (int affine = 0; affine < 2; affine++) {
            const wmcuda_bf16 *gd = gated ? mod.d + 2 * D : NULL;
            for (size_t i = 0; i < n; i++) {
                const float g = gated ? mod.f[(i / D / S) * 6 * D + 2 * D + i % D] : 1.0f;
                xr[i] = x[i] + y.f[i] * g;
            }
            up(xd, x, n * 4);
            poison(hd, n * 2);
            if (affine) {
                WM(wmcuda_residual_layernorm(xd, y.d, gd, (size_t)6 * D, S, hd, L, D, eps, gamma.d,
                                             beta.d, NULL));
                cpu_layernorm(xr, ref, L, D, eps, gamma.f, beta.f);
            } else {
                WM(wmcuda_residual_ln_modulate(xd, y.d, gd, (size_t)6 * D, hd, L, D, S, eps,
                                               mod.d + 3 * D, mod.d + 4 * D, (size_t)6 * D, NULL));
                dit_norm_modulate(xr, ref, F, S, D, eps, mod.f + 3 * D, mod.f + 4 * D,
                                  (size_t)6 * D);
            }
            down(xo, xd, n * 4);
            down_bf16(h, hd, n);
            snprintf(name, sizeof name, "residual%s + %s: x", gated ? " gated" : "",
                     affine ? "layernorm" : "ln_modulate");
            check(s->tag, name, rel_err(xo, xr, n), BOUND_F32);
            snprintf(name, sizeof name, "residual%s + %s: h", gated ? " gated" : "",
                     affine ? "layernorm" : "ln_modulate");
            check(s->tag, name, rel_err(h, ref, n), BOUND_BF16);
        }
    /* x += y fused into the bf16 copies of x: keyboard queries' input, mouse-MLP input (with the
     * frame's window appended); exact (one fp32 add, one rounding, as on the host) */
    {
        for (size_t i = 0; i < n; i++) xr[i] = x[i] + y.f[i];
        const int wlen = 24, U = D + wlen;
        float *win = f32_rand((size_t)F * wlen, 1.0f, 0.0f), *wind = f32_dev(win, (size_t)F * wlen);
        wmcuda_bf16 *ud = dmalloc((size_t)L * U * 2), *hb = xmalloc(n * 2);
        wmcuda_bf16 *ub = xmalloc((size_t)L * U * 2);
        size_t bad = 0;
        up(xd, x, n * 4);
        poison(hd, n * 2);
        WM(wmcuda_residual_add_to_bf16(xd, y.d, hd, n, NULL));
        down(xo, xd, n * 4);
        down(hb, hd, n * 2);
        for (size_t i = 0; i < n; i++)
            bad += memcmp(&xo[i], &xr[i], 4) != 0 || hb[i] != wm_bf16_from_float(xr[i]);
        check_zero(s->tag, "residual add + bf16 copy (x, h exact)", bad, 2 * n);
        up(xd, x, n * 4);
        poison(ud, (size_t)L * U * 2);
        WM(wmcuda_residual_mouse_input(xd, y.d, D, wind, wlen, L, S, ud, NULL));
        down(xo, xd, n * 4);
        down(ub, ud, (size_t)L * U * 2);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += memcmp(&xo[i], &xr[i], 4) != 0;
        for (int r = 0; r < L; r++)
            for (int c = 0; c < U; c++) {
                const float want = c < D ? xr[(size_t)r * D + c] : win[(r / S) * wlen + c - D];
                bad += ub[(size_t)r * U + c] != wm_bf16_from_float(want);
            }
        check_zero(s->tag, "residual add + mouse input (x, u exact)", bad, n + (size_t)L * U);
        free(win), free(hb), free(ub);
        CK(cudaFree(wind));
        CK(cudaFree(ud));
    }
    if (s->timing) {
        snprintf(name, sizeof name, "residual gate + ln_modulate fused %dx%d", L, D);
        TIME_OP(name, 0.0, 12.0 * (double)n,
                wmcuda_residual_ln_modulate(xd, y.d, mod.d + 2 * D, (size_t)6 * D, hd, L, D, S, eps,
                                            mod.d + 3 * D, mod.d + 4 * D, (size_t)6 * D, NULL));
        snprintf(name, sizeof name, "residual gate, then ln_modulate %dx%d", L, D);
        TIME_OP(name, 0.0, 16.0 * (double)n,
                wmcuda_residual_gate(xd, y.d, L, D, S, mod.d + 2 * D, (size_t)6 * D, NULL) |
                    wmcuda_ln_modulate(xd, hd, L, D, S, eps, mod.d + 3 * D, mod.d + 4 * D,
                                       (size_t)6 * D, NULL));
    }
    free(x), free(xr), free(xo), free(h), free(ref);
    CK(cudaFree(xd));
    CK(cudaFree(hd));
    bt_free(&y), bt_free(&mod), bt_free(&gamma), bt_free(&beta);
}

/* QK RMSNorm (all D channels, gain) + 3-D RoPE vs cpu_rmsnorm + rope3d_apply_frame. */
static void test_rmsnorm_rope(const shape *s, int64_t pos0, int timed) {
    const int L = s->L, D = s->D, S = s->S, H = s->H, dh = s->dh;
    const float eps = s->c->eps;
    const size_t n = (size_t)L * D;
    char err[256] = "", name[72];
    wmcuda_rope3d rope;
    const int pmax = s->c->rope_pos_limit;
    WM(wmcuda_rope3d_create(&rope, dh, pmax, s->gh, s->gw, err, sizeof err));
    if (err[0]) printf("rope3d_create: %s\n", err);
    bt x = bt_rand(n, 3.0f, 0.2f), gain = bt_rand((size_t)D, 0.3f, 1.0f);
    wmcuda_bf16 *yd = dmalloc(n * 2);
    float *y = xmalloc(n * sizeof *y), *ref = xmalloc(n * sizeof *ref);

    poison(yd, n * 2);
    WM(wmcuda_rmsnorm_rope3d(x.d, yd, L, D, eps, gain.d, &rope, pos0, NULL));
    down_bf16(y, yd, n);
    cpu_rmsnorm(x.f, ref, (size_t)L, D, eps, gain.f);
    for (int f = 0; f < s->F; f++)
        rope3d_apply_frame(ref + (size_t)f * S * D, D, s->gh, s->gw, H, dh, (double)(pos0 + f));
    snprintf(name, sizeof name, "rmsnorm+rope3d (positions %lld..%lld)", (long long)pos0,
             (long long)pos0 + s->F - 1);
    check(s->tag, name, rel_err(y, ref, n), BOUND_BF16);

    /* in place gives the same bits */
    wmcuda_bf16 *inpl = dmalloc(n * 2);
    CK(cudaMemcpy(inpl, x.d, n * 2, cudaMemcpyDeviceToDevice));
    WM(wmcuda_rmsnorm_rope3d(inpl, inpl, L, D, eps, gain.d, &rope, pos0, NULL));
    {
        wmcuda_bf16 *b1 = xmalloc(n * 2), *b2 = xmalloc(n * 2);
        down(b1, yd, n * 2);
        down(b2, inpl, n * 2);
        size_t diff = 0;
        for (size_t i = 0; i < n; i++) diff += b1[i] != b2[i];
        check_zero(s->tag, "rmsnorm+rope3d in place == out of place", diff, n);
        free(b1), free(b2);
    }

    /* no RoPE: the cross-attention q/k norm */
    poison(yd, n * 2);
    WM(wmcuda_rmsnorm_rope3d(x.d, yd, L, D, eps, gain.d, NULL, 0, NULL));
    down_bf16(y, yd, n);
    cpu_rmsnorm(x.f, ref, (size_t)L, D, eps, gain.f);
    check(s->tag, "rmsnorm (gain, no rope)", rel_err(y, ref, n), BOUND_BF16);

    if (timed) {
        snprintf(name, sizeof name, "rmsnorm+rope3d %dx%d", L, D);
        TIME_OP(name, 0.0, 4.0 * (double)n,
                wmcuda_rmsnorm_rope3d(x.d, yd, L, D, eps, gain.d, &rope, pos0, NULL));
    }
    wmcuda_rope3d_destroy(&rope);
    free(y), free(ref);
    CK(cudaFree(yd));
    CK(cudaFree(inpl));
    bt_free(&x), bt_free(&gain);
}

/* Action q/k: per-head RMS (no gain) + action RoPE, read in place from a fused qkv layout. */
static void test_action_rope(const shape *s, int64_t pos0, int timed) {
    const int L = s->L, S = s->S, Ha = s->Ha, ha = s->ha, adh = s->adh;
    const int rot = s->c->action_rope_dims[0];
    const float theta = s->c->action_rope_theta;
    const int pmax = 7500; /* the reference's action table length */
    char err[256] = "", name[72];
    wmcuda_rope_action rope;
    WM(wmcuda_rope_action_create(&rope, rot, theta, pmax, err, sizeof err));
    if (err[0]) printf("rope_action_create: %s\n", err);

    /* mouse q: columns [0, Ha) of a [L][3 Ha] qkv output, S rows per frame */
    const int ldq = 3 * Ha;
    bt qkv = bt_rand((size_t)L * ldq, 2.0f, 0.1f);
    const size_t n = (size_t)L * Ha;
    wmcuda_bf16 *yd = dmalloc(n * 2);
    float *y = xmalloc(n * sizeof *y), *ref = xmalloc(n * sizeof *ref);
    poison(yd, n * 2);
    WM(wmcuda_rms_heads_rope_action(qkv.d, ldq, yd, Ha, L, ha, adh, 1e-6f, &rope, S, pos0, NULL));
    down_bf16(y, yd, n);
    for (int r = 0; r < L; r++) memcpy(ref + (size_t)r * Ha, qkv.f + (size_t)r * ldq, (size_t)Ha * 4);
    cpu_rmsnorm(ref, ref, (size_t)L * ha, adh, 1e-6f, NULL);
    for (int f = 0; f < s->F; f++)
        rope_action_apply(ref + (size_t)f * S * Ha, Ha, (size_t)S, ha, adh, rot, theta,
                          (float)(pos0 + f));
    snprintf(name, sizeof name, "action rms+rope mouse q (pos %lld..)", (long long)pos0);
    check(s->tag, name, rel_err(y, ref, n), BOUND_BF16);

    /* keyboard k: 3 rows (one per frame) of a [3][2 Hk] kv output, normalised in place */
    const int Hk = s->c->keyboard_hidden, F = s->F, hk = s->c->action_heads, kdh = Hk / hk;
    bt kv = bt_rand((size_t)F * 2 * Hk, 2.0f, -0.1f);
    WM(wmcuda_rms_heads_rope_action(kv.d, 2 * Hk, kv.d, 2 * Hk, F, hk, kdh, 1e-6f, &rope, 1, pos0,
                                    NULL));
    float *kvo = xmalloc((size_t)F * 2 * Hk * sizeof *kvo), *kref = xmalloc((size_t)F * Hk * 4);
    down_bf16(kvo, kv.d, (size_t)F * 2 * Hk);
    float *kout = xmalloc((size_t)F * Hk * 4);
    size_t vchanged = 0;
    for (int f = 0; f < F; f++) {
        memcpy(kref + (size_t)f * Hk, kv.f + (size_t)f * 2 * Hk, (size_t)Hk * 4);
        memcpy(kout + (size_t)f * Hk, kvo + (size_t)f * 2 * Hk, (size_t)Hk * 4);
        for (int c = 0; c < Hk; c++)
            vchanged += kvo[(size_t)f * 2 * Hk + Hk + c] != kv.f[(size_t)f * 2 * Hk + Hk + c];
        cpu_rmsnorm(kref + (size_t)f * Hk, kref + (size_t)f * Hk, (size_t)hk, kdh, 1e-6f, NULL);
        rope_action_apply(kref + (size_t)f * Hk, Hk, 1, hk, kdh, rot, theta, (float)(pos0 + f));
    }
    check(s->tag, "action rms+rope keyboard k (in place, ld 2Hk)", rel_err(kout, kref, (size_t)F * Hk),
          BOUND_BF16);
    check_zero(s->tag, "action rms+rope keyboard v untouched", vchanged, (size_t)F * Hk);

    if (timed) {
        snprintf(name, sizeof name, "action rms+rope %dx%d", L, Ha);
        TIME_OP(name, 0.0, 4.0 * (double)n,
                wmcuda_rms_heads_rope_action(qkv.d, ldq, yd, Ha, L, ha, adh, 1e-6f, &rope, S, pos0,
                                             NULL));
    }
    wmcuda_rope_action_destroy(&rope);
    free(y), free(ref), free(kvo), free(kref), free(kout);
    CK(cudaFree(yd));
    bt_free(&qkv), bt_free(&kv);
}

/* ---- residual stream ---------------------------------------------------------------------------------- */

static void test_residual(const shape *s) {
    const int L = s->L, D = s->D, S = s->S, F = s->F;
    const size_t n = (size_t)L * D;
    float *x = residual_rand(L, D), *xd = f32_dev(x, n);
    bt y = bt_rand(n, 2.0f, 0.0f), mod = bt_rand((size_t)F * 6 * D, 0.5f, 0.0f);
    float *out = xmalloc(n * sizeof *out), *ref = xmalloc(n * sizeof *ref);
    const wmcuda_bf16 *gate_d = mod.d + 2 * D;
    const float *gate = mod.f + 2 * D;
    WM(wmcuda_residual_gate(xd, y.d, L, D, S, gate_d, (size_t)6 * D, NULL));
    down(out, xd, n * 4);
    for (int r = 0; r < L; r++)
        for (int d = 0; d < D; d++) {
            const size_t i = (size_t)r * D + d;
            ref[i] = x[i] + y.f[i] * gate[(size_t)(r / S) * 6 * D + d];
        }
    check(s->tag, "residual x += y * gate[f] (fp32)", rel_err(out, ref, n), BOUND_F32);
    up(xd, x, n * 4);
    WM(wmcuda_residual_add(xd, y.d, n, NULL));
    down(out, xd, n * 4);
    for (size_t i = 0; i < n; i++) ref[i] = x[i] + y.f[i];
    check(s->tag, "residual x += y (fp32)", rel_err(out, ref, n), BOUND_F32);
    if (s->timing) {
        char name[72];
        snprintf(name, sizeof name, "residual gate %dx%d", L, D);
        TIME_OP(name, 0.0, 10.0 * (double)n,
                wmcuda_residual_gate(xd, y.d, L, D, S, gate_d, (size_t)6 * D, NULL));
        snprintf(name, sizeof name, "residual add %dx%d", L, D);
        TIME_OP(name, 0.0, 10.0 * (double)n, wmcuda_residual_add(xd, y.d, n, NULL));
    }
    free(x), free(out), free(ref);
    CK(cudaFree(xd));
    bt_free(&y), bt_free(&mod);
}

/* ---- patchify / unpatchify -------------------------------------------------------------------------- */

static void test_layout(const shape *s) {
    const eng_config *c = s->c;
    const int F = s->F, Hh = c->lat_h, Ww = c->lat_w, cc = c->in_dim - 16, od = c->out_dim;
    const size_t hw = (size_t)Hh * Ww, cols = (size_t)c->in_dim * 4, L = (size_t)s->L;
    float *x = f32_rand(16 * F * hw, 2.0f, 0.0f), *cond = f32_rand((size_t)cc * F * hw, 1.0f, 0.3f);
    float *xd = f32_dev(x, 16 * F * hw), *condd = f32_dev(cond, (size_t)cc * F * hw);
    wmcuda_bf16 *pd = dmalloc(L * cols * 2), *pbits = xmalloc(L * cols * 2);
    float *pref = xmalloc(L * cols * 4);
    poison(pd, L * cols * 2);
    WM(wmcuda_patchify(xd, 16, condd, cc, F, Hh, Ww, pd, NULL));
    down(pbits, pd, L * cols * 2);
    dit_patchify(c, x, cond, F, pref);
    size_t bad = 0;
    for (size_t i = 0; i < L * cols; i++) bad += pbits[i] != wm_bf16_from_float(pref[i]);
    check_zero(s->tag, "patchify == bf16(dit_patchify)", bad, L * cols);

    const size_t nt = L * 4 * (size_t)od, nv = (size_t)od * F * hw;
    bt tok = bt_rand(nt, 2.0f, 0.0f);
    float *tokf = f32_rand(nt, 2.0f, 0.0f), *tokfd = f32_dev(tokf, nt);
    float *vd = dmalloc(nv * 4), *v = xmalloc(nv * 4), *vref = xmalloc(nv * 4);
    poison(vd, nv * 4);
    WM(wmcuda_unpatchify_bf16(tok.d, F, Hh, Ww, od, vd, NULL));
    down(v, vd, nv * 4);
    dit_unpatchify(c, tok.f, F, vref);
    bad = 0;
    for (size_t i = 0; i < nv; i++) bad += memcmp(&v[i], &vref[i], 4) != 0;
    check_zero(s->tag, "unpatchify (bf16 tokens) == dit_unpatchify", bad, nv);
    poison(vd, nv * 4);
    WM(wmcuda_unpatchify_f32(tokfd, F, Hh, Ww, od, vd, NULL));
    down(v, vd, nv * 4);
    dit_unpatchify(c, tokf, F, vref);
    bad = 0;
    for (size_t i = 0; i < nv; i++) bad += memcmp(&v[i], &vref[i], 4) != 0;
    check_zero(s->tag, "unpatchify (fp32 tokens) == dit_unpatchify", bad, nv);

    if (s->timing) {
        char name[72];
        snprintf(name, sizeof name, "patchify %zux%zu", L, cols);
        TIME_OP(name, 0.0, 4.0 * (double)(c->in_dim * F * hw) + 2.0 * (double)(L * cols),
                wmcuda_patchify(xd, 16, condd, cc, F, Hh, Ww, pd, NULL));
        snprintf(name, sizeof name, "unpatchify bf16 %zux%d", L, 4 * od);
        TIME_OP(name, 0.0, 2.0 * (double)nt + 4.0 * (double)nv,
                wmcuda_unpatchify_bf16(tok.d, F, Hh, Ww, od, vd, NULL));
    }
    free(x), free(cond), free(pbits), free(pref), free(tokf), free(v), free(vref);
    CK(cudaFree(xd));
    CK(cudaFree(condd));
    CK(cudaFree(pd));
    CK(cudaFree(tokfd));
    CK(cudaFree(vd));
    bt_free(&tok);
}

/* ---- elementwise and sampler ----------------------------------------------------------------------------- */

typedef int (*ew_fn)(const wmcuda_bf16 *, wmcuda_bf16 *, size_t, void *);

static void test_one_act(const shape *s, const char *what, ew_fn fn, void (*ref_fn)(float *, size_t),
                         size_t n, size_t offset, int timed) {
    bt x = bt_rand(n + offset, 4.0f, 0.0f);
    wmcuda_bf16 *yd = dmalloc((n + offset) * 2);
    float *y = xmalloc((n + offset) * 4), *ref = xmalloc(n * 4);
    poison(yd, (n + offset) * 2);
    WM(fn(x.d + offset, yd + offset, n, NULL));
    down_bf16(y, yd, n + offset);
    memcpy(ref, x.f + offset, n * 4);
    ref_fn(ref, n);
    char name[72];
    snprintf(name, sizeof name, "%s n=%zu%s", what, n, offset ? " unaligned" : "");
    check(s->tag, name, rel_err(y + offset, ref, n), BOUND_BF16);
    if (timed) {
        snprintf(name, sizeof name, "%s n=%zu", what, n);
        TIME_OP(name, 0.0, 4.0 * (double)n, fn(x.d, yd, n, NULL));
    }
    free(y), free(ref);
    CK(cudaFree(yd));
    bt_free(&x);
}

static void test_elementwise(const shape *s) {
    const size_t nff = (size_t)s->L * s->FF, nd = (size_t)s->L * s->D;
    test_one_act(s, "gelu_tanh", wmcuda_gelu_tanh_bf16, cpu_apply_gelu_tanh, nff, 0, s->timing);
    test_one_act(s, "gelu_erf", wmcuda_gelu_erf_bf16, cpu_apply_gelu_erf, nd, 0, 0);
    test_one_act(s, "silu", wmcuda_silu_bf16, cpu_apply_silu, nd, 0, s->timing);
    test_one_act(s, "gelu_tanh", wmcuda_gelu_tanh_bf16, cpu_apply_gelu_tanh, 1001, 1, 0);
    test_one_act(s, "silu", wmcuda_silu_bf16, cpu_apply_silu, 77, 3, 0);

    /* converts: every exponent range, ties included; exact */
    const size_t n = nd + 5;
    float *x = xmalloc(n * 4), *xd = dmalloc(n * 4), *back = xmalloc(n * 4), *backd = dmalloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = ldexpf(urand(), (int)(xorshift64() % 60) - 30);
    x[0] = 1.0f + 1.0f / 256.0f; /* tie: rounds to even (1.0) */
    x[1] = 1.0f + 3.0f / 256.0f; /* tie: rounds up */
    x[2] = -0.0f, x[3] = 3.0e38f, x[4] = 1e-40f;
    up(xd, x, n * 4);
    wmcuda_bf16 *bd = dmalloc(n * 2), *bits = xmalloc(n * 2);
    poison(bd, n * 2);
    WM(wmcuda_convert_f32_to_bf16(xd, bd, n, NULL));
    down(bits, bd, n * 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += bits[i] != wm_bf16_from_float(x[i]);
    check_zero(s->tag, "convert f32 -> bf16 (round to nearest even)", bad, n);
    poison(backd, n * 4);
    WM(wmcuda_convert_bf16_to_f32(bd + 1, backd + 1, n - 1, NULL)); /* unaligned path */
    down(back, backd, n * 4);
    bad = 0;
    for (size_t i = 1; i < n; i++) {
        const float w = wm_bf16_to_float(bits[i]);
        bad += memcmp(&back[i], &w, 4) != 0;
    }
    check_zero(s->tag, "convert bf16 -> f32", bad, n - 1);
    if (s->timing) {
        char name[72];
        snprintf(name, sizeof name, "convert f32->bf16 n=%zu", nd);
        TIME_OP(name, 0.0, 6.0 * (double)nd, wmcuda_convert_f32_to_bf16(xd, bd, nd, NULL));
    }
    free(x), free(back), free(bits);
    CK(cudaFree(xd));
    CK(cudaFree(backd));
    CK(cudaFree(bd));
}

static void test_sampler(const shape *s) {
    const size_t n = (size_t)16 * s->F * s->c->lat_h * s->c->lat_w;
    float tau[ENG_MAX_STEPS], sigma[ENG_MAX_STEPS];
    eng_sampler_schedule(s->c, tau, sigma);
    float *x = f32_rand(n, 2.0f, 0.0f), *v = f32_rand(n, 2.0f, 0.0f), *eps = f32_rand(n, 1.5f, 0.0f);
    float *xd = f32_dev(x, n), *vd = f32_dev(v, n), *epsd = f32_dev(eps, n);
    float *x0d = dmalloc(n * 4), *x0 = xmalloc(n * 4), *xn = xmalloc(n * 4);
    float *ref0 = xmalloc(n * 4), *refn = xmalloc(n * 4);
    const double sig = sigma[0];
    const float sn = sigma[1];
    poison(x0d, n * 4);
    WM(wmcuda_sampler_x0(xd, vd, sig, x0d, n, NULL));
    down(x0, x0d, n * 4);
    WM(wmcuda_sampler_renoise(x0d, epsd, sn, xd, n, NULL)); /* in place over x */
    down(xn, xd, n * 4);
    /* engine/session.c's loops (this file is built without FP contraction) */
    for (size_t i = 0; i < n; i++) ref0[i] = (float)((double)x[i] - sig * (double)v[i]);
    for (size_t i = 0; i < n; i++) refn[i] = (1.0f - sn) * ref0[i] + sn * eps[i];
    size_t bad0 = 0, badn = 0;
    for (size_t i = 0; i < n; i++) {
        bad0 += memcmp(&x0[i], &ref0[i], 4) != 0;
        badn += memcmp(&xn[i], &refn[i], 4) != 0;
    }
    check_zero(s->tag, "sampler x0 = x - sigma v (float64) bit-exact", bad0, n);
    check_zero(s->tag, "sampler re-noise (float32) bit-exact", badn, n);
    if (s->timing) {
        char name[72];
        snprintf(name, sizeof name, "sampler x0 n=%zu", n);
        TIME_OP(name, 0.0, 12.0 * (double)n, wmcuda_sampler_x0(xd, vd, sig, x0d, n, NULL));
        snprintf(name, sizeof name, "sampler renoise n=%zu", n);
        TIME_OP(name, 0.0, 12.0 * (double)n, wmcuda_sampler_renoise(x0d, epsd, sn, xd, n, NULL));
    }
    free(x), free(v), free(eps), free(x0), free(xn), free(ref0), free(refn);
    CK(cudaFree(xd));
    CK(cudaFree(vd));
    CK(cudaFree(epsd));
    CK(cudaFree(x0d));
}

/* ---- graph capture ---------------------------------------------------------------------------------- */

/* ln_modulate -> linear -> residual_gate captured in strict (global) mode equals the same
 * sequence run directly; a product not prepared before capture is refused, not run. */
static void test_capture(const shape *s, wmcuda_gemm *g) {
    const int L = s->L, D = s->D, S = s->S, F = s->F;
    const size_t n = (size_t)L * D;
    float *x = residual_rand(L, D), *xd = f32_dev(x, n);
    bt mod = bt_rand((size_t)F * 6 * D, 0.5f, 0.0f), W = bt_rand((size_t)D * D, 0.05f, 0.0f);
    bt b = bt_rand((size_t)D, 0.3f, 0.0f);
    wmcuda_bf16 *hd = dmalloc(n * 2), *yd = dmalloc(n * 2);
    float *direct = xmalloc(n * 4), *graphed = xmalloc(n * 4);
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    WM(wmcuda_linear_prepare(g, hd, D, L, D, W.d, b.d, D, yd, D, WMCUDA_EPI_NONE));
#define SEQ(stream_)                                                                                \
    do {                                                                                           \
        WM(wmcuda_ln_modulate(xd, hd, L, D, S, s->c->eps, mod.d, mod.d + D, (size_t)6 * D,         \
                              (stream_)));                                                         \
        WM(wmcuda_linear(g, hd, D, L, D, W.d, b.d, D, yd, D, WMCUDA_EPI_NONE, (stream_)));          \
        WM(wmcuda_residual_gate(xd, yd, L, D, S, mod.d + 2 * D, (size_t)6 * D, (stream_)));         \
    } while (0)
    SEQ((void *)st);
    CK(cudaStreamSynchronize(st));
    down(direct, xd, n * 4);
    up(xd, x, n * 4);

    cudaGraph_t graph;
    cudaGraphExec_t exec;
    const int before = wmcuda_gemm_prepared_count(g);
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    SEQ((void *)st);
    /* an unprepared shape inside the capture: refused, nothing enqueued */
    const int rc = wmcuda_linear(g, hd, D, L - 8, D, W.d, NULL, D, yd, D, WMCUDA_EPI_GELU_TANH,
                                 (void *)st);
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, st));
    CK(cudaStreamSynchronize(st));
    down(graphed, xd, n * 4);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += memcmp(&direct[i], &graphed[i], 4) != 0;
    check(s->tag, "graph capture replay vs direct (rel err)", rel_err(graphed, direct, n), 1e-6);
    printf("info %s graph replay: %zu of %zu values differ in bits from the direct run\n", s->tag,
           diff, n);
    check_zero(s->tag, "unprepared product refused inside capture",
               (size_t)(rc != WMCUDA_ENOTPREPARED) + (size_t)(wmcuda_gemm_prepared_count(g) != before),
               2);
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
#undef SEQ
    free(x), free(direct), free(graphed);
    CK(cudaFree(xd));
    CK(cudaFree(hd));
    CK(cudaFree(yd));
    bt_free(&mod), bt_free(&W), bt_free(&b);
}

/* ---- argument checks ---------------------------------------------------------------------------------- */

static void test_arguments(wmcuda_gemm *g) {
    float *f = dmalloc(4096 * 4);
    wmcuda_bf16 *h = dmalloc(4096 * 2);
    size_t bad = 0;
    printf("info argument checks: the next lines on stderr are expected rejections\n");
    fflush(stdout);
    bad += wmcuda_ln_modulate(f, h, 4, 12, 4, 1e-6f, h, h, 96, NULL) != WMCUDA_EINVAL;
    bad += wmcuda_linear(g, h + 1, 64, 8, 64, h, NULL, 64, h, 64, WMCUDA_EPI_NONE, NULL) != WMCUDA_EINVAL;
    bad += wmcuda_softmax_rows(f, 9000, h, 9000, 1, 9000, 1, NULL, 0, 1, 1, NULL) != WMCUDA_EINVAL;
    bad += wmcuda_rms_heads_rope_action(h, 64, h, 64, 4, 2, 24, 1e-6f, NULL, 1, 0, NULL) != WMCUDA_EINVAL;
    bad += wmcuda_residual_add(f, h, 12, NULL) != WMCUDA_EINVAL;
    const wmcuda_attn_args fa = {.q = h, .ldq = 96, .lq = 4, .k = h, .v = h, .ldkv = 96,
                                 .slot_stride = 96, .keys_per_slot = 4, .nslots = 1, .heads = 2,
                                 .dh = 48, .scale = 0.1f, .o = h, .ldo = 96};
    bad += wmcuda_attention(&fa, NULL) != WMCUDA_EINVAL; /* head width 48 */
    check_zero("all", "invalid arguments rejected with WMCUDA_EINVAL", bad, 6);
    CK(cudaFree(f));
    CK(cudaFree(h));
}

/* ---- main ------------------------------------------------------------------------------------------------ */

static void run_shape(const shape *s, wmcuda_gemm *g, int attn_only) {
    printf("== %s: L %d (F %d x S %d, grid %dx%d), D %d, FF %d, heads %d x %d, Lk %d, action %d x %d\n",
           s->tag, s->L, s->F, s->S, s->gh, s->gw, s->D, s->FF, s->H, s->dh, s->Lk, s->ha, s->adh);
    const int L = s->L, D = s->D, FF = s->FF, t = s->timing;
    test_fused_shapes(s);
    test_action_attention(s, "mouse", 0, 0);
    test_action_attention(s, "keyboard", 1, 0);
    test_action_attention(s, "mouse ldq%8=4 (warp path)", 0, 4);
    if (t) time_action_attention(s);
    if (attn_only) return;
    test_linear(s, g, "linear D->D bias", L, D, D, 1, WMCUDA_EPI_NONE, 0, 0, t);
    wmcuda_gemm_set_gelu_mode(g, WMCUDA_GELU_FUSED);
    test_linear(s, g, "linear D->FF gelu fused", L, D, FF, 1, WMCUDA_EPI_GELU_TANH, 0, 0, t);
    wmcuda_gemm_set_gelu_mode(g, WMCUDA_GELU_SEPARATE);
    test_linear(s, g, "linear D->FF gelu separate", L, D, FF, 1, WMCUDA_EPI_GELU_TANH, 0, 0, t);
    wmcuda_gemm_set_gelu_mode(g, WMCUDA_GELU_FUSED);
    test_linear(s, g, "linear FF->D", L, FF, D, 0, WMCUDA_EPI_NONE, 0, 0, t);
    test_linear(s, g, "linear strided ld+8/+16", L, D, D, 1, WMCUDA_EPI_NONE, 8, 16, 0);
    test_linear(s, g, "linear mouse 1560->1024", L, D + 24, s->Ha, 1, WMCUDA_EPI_GELU_TANH, 0, 0, 0);
    test_linear_f32(s, g, "patch embed", L, 4 * s->c->in_dim, D, t);
    test_linear_f32(s, g, "head", L, D, 4 * s->c->out_dim, t);

    /* attention: the block-causal mask of the cache-free check (query frame f sees key frames
     * <= Fk - F + f), with one query frame fully masked to exercise the empty-row rule */
    unsigned char mask[64 * 64];
    memset(mask, 0, sizeof mask);
    for (int f = 0; f < s->F; f++)
        for (int j = 0; j < s->Fk; j++) mask[f * s->Fk + j] = f != 1 && j <= s->Fk - s->F + f;
    test_attention(s, g, "self W-window", s->Lk, s->Lk, NULL, t);
    test_attention(s, g, "self masked", s->Lk, s->Lk, mask, 0);
    test_attention(s, g, "self block 0", s->L, s->L, NULL, 0);
    test_attention(s, g, "cross 257 (ld 264)", s->c->clip_tokens, (s->c->clip_tokens + 7) / 8 * 8,
                   NULL, 0);

    test_norms(s);
    test_residual_norms(s);
    test_rmsnorm_rope(s, (int64_t)s->c->rope_pos_limit - s->F, t); /* the table's last rows */
    test_rmsnorm_rope(s, 6, 0);
    test_action_rope(s, 7497, t);
    test_action_rope(s, 3, 0);
    test_residual(s);
    test_layout(s);
    test_elementwise(s);
    test_sampler(s);
    test_capture(s, g);
}

int main(void) {
    int dev;
    struct cudaDeviceProp prop;
    CK(cudaGetDevice(&dev));
    CK(cudaGetDeviceProperties(&prop, dev));
    if (strstr(prop.name, "H200")) {
        g_peak_bw = 4.8e12;
        g_peak_name = "H200 SXM datasheet: 989 TFLOP/s bf16 dense, 4.8 TB/s";
    }
    printf("device: %s (sm_%d%d, %d SMs, %.0f MB L2); floors vs %s\n", prop.name, prop.major,
           prop.minor, prop.multiProcessorCount, prop.l2CacheSize / 1048576.0, g_peak_name);
    char err[256] = "";
    eng_config tiny, full;
    if (eng_config_preset(&tiny, "tiny", ENG_VARIANT_UNIVERSAL, err, sizeof err) ||
        eng_config_preset(&full, "full", ENG_VARIANT_UNIVERSAL, err, sizeof err)) {
        fprintf(stderr, "config: %s\n", err);
        return 2;
    }
    wmcuda_gemm *g = NULL;
    if (wmcuda_gemm_create(&g, 0, err, sizeof err) != 0) {
        fprintf(stderr, "wmcuda_gemm_create: %s\n", err);
        return 2;
    }
    CK(cudaEventCreate(&g_ev0));
    CK(cudaEventCreate(&g_ev1));
    g_flush = dmalloc(g_flush_bytes);

    /* WM_DIT_TEST_SHAPES=tiny: the tiny shapes only (quick runs, emulators) */
    const char *only = getenv("WM_DIT_TEST_SHAPES");
    /* WM_DIT_TEST_ONLY=attn: the fused attention (checks and timings) and nothing else */
    const char *what = getenv("WM_DIT_TEST_ONLY");
    const int attn_only = what && strcmp(what, "attn") == 0;
    const shape st = make_shape("tiny", &tiny, 0), sf = make_shape("full", &full, 1);
    run_shape(&st, g, attn_only);
    if (!only || strcmp(only, "tiny") != 0) run_shape(&sf, g, attn_only);
    if (!attn_only) test_gelu_flavour(g);
    test_arguments(g);
    printf("info %d cuBLASLt problems prepared\n", wmcuda_gemm_prepared_count(g));

    printf("\n== summary: checks\n%-58s %10s %8s  %s\n", "check", "rel err", "bound", "result");
    for (int i = 0; i < g_nchecks; i++)
        printf("%-58s %10.3e %8.0e  %s\n", g_checks[i].name, g_checks[i].err, g_checks[i].bound,
               g_checks[i].pass ? "ok" : "FAIL");
    printf("\n== summary: timings on %s (median of %d, L2 flushed; floor vs %s)\n", prop.name, NREP,
           g_peak_name);
    printf("%-48s %10s %10s %8s %s\n", "kernel", "us", "floor us", "of floor", "bound by");
    for (int i = 0; i < g_ntimes; i++)
        printf("%-48s %10.1f %10.1f %7.1f%% %s%s\n", g_times[i].name, g_times[i].us,
               g_times[i].floor_us, 100.0 * g_times[i].floor_us / g_times[i].us,
               g_times[i].mem_bound ? "memory" : "compute", g_times[i].failed ? " (FAILED)" : "");
    printf("\n%s: %d failure(s) in %d checks\n", g_failures ? "FAILED" : "PASSED", g_failures,
           g_nchecks);

    wmcuda_gemm_destroy(g);
    CK(cudaFree(g_flush));
    CK(cudaEventDestroy(g_ev0));
    CK(cudaEventDestroy(g_ev1));
    return g_failures ? 1 : 0;
}
