/* Tests of the counter-based noise (engine/philox.h, engine/noise.c): Philox against published
 * known answers and an independent implementation, the hand-written log and sin/cos against double
 * libm, the statistics of the normals, and the determinism the CPU/CUDA bitwise match relies on.
 * Each check prints what it compared and the error it saw; the exit status counts failures. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/noise.h"
#include "engine/philox.h"

static int g_failures;

#define PI_D 3.14159265358979323846 /* M_PI is not in strict C17 */

static void check(int ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check(int ok, const char *what, const char *fmt, ...) {
    va_list ap;
    printf("%s %-58s ", ok ? "ok  " : "FAIL", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!ok) g_failures++;
}

/* splitmix64: the test's own source of random arguments, unrelated to Philox. */
static uint64_t g_rng = 0x243F6A8885A308D3ull;
static uint64_t rnd64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rnd32(void) {
    return (uint32_t)(rnd64() >> 32);
}

static uint32_t f2u(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float u2f(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Size of one float ulp at magnitude |y| (normal range). */
static double ulp_at(double y) {
    int e;
    frexp(fabs(y), &e); /* |y| = m 2^e, m in [0.5, 1) */
    if (y == 0.0) return ldexp(1.0, -149);
    return ldexp(1.0, (e - 1 < -126 ? -126 : e - 1) - 23);
}

/* ---- 1. Philox known answers ----------------------------------------------------------------- */

/* Second implementation, written from the SC'11 paper's description rather than from philox.h: the
 * round keys are precomputed as k + r * W (mod 2^32) and every product is an explicit 64-bit value
 * split afterwards. It takes the round count so the 7-round known answers exercise it too. */
static void ref_philox4x32(const uint32_t ctr[4], const uint32_t key[2], int rounds,
                           uint32_t out[4]) {
    uint32_t x[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    for (int r = 0; r < rounds; r++) {
        uint32_t rk0 = (uint32_t)(((uint64_t)key[0] + (uint64_t)r * 0x9E3779B9ull) & 0xFFFFFFFFull);
        uint32_t rk1 = (uint32_t)(((uint64_t)key[1] + (uint64_t)r * 0xBB67AE85ull) & 0xFFFFFFFFull);
        uint64_t p0 = (uint64_t)0xD2511F53u * x[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * x[2];
        uint32_t y[4];
        y[0] = (uint32_t)(p1 >> 32) ^ x[1] ^ rk0;
        y[1] = (uint32_t)(p1 & 0xFFFFFFFFull);
        y[2] = (uint32_t)(p0 >> 32) ^ x[3] ^ rk1;
        y[3] = (uint32_t)(p0 & 0xFFFFFFFFull);
        memcpy(x, y, sizeof x);
    }
    memcpy(out, x, sizeof x);
}

/* Known-answer vectors: Random123 (D. E. Shaw Research), file tests/kat_vectors, lines
 * "philox4x32 <rounds> <ctr0..3> <key0..1>   <out0..3>" (github.com/DEShawResearch/random123,
 * commit 9545ff6). Counter, key and output words are listed in array order. */
typedef struct {
    int rounds;
    uint32_t ctr[4], key[2], out[4];
} kat;
static const kat kKats[] = {
    {7, {0, 0, 0, 0}, {0, 0}, {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}},
    {7,
     {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}},
    {7,
     {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}},
    {10, {0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {10,
     {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {10,
     {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

static void test_philox_kat(void) {
    for (size_t t = 0; t < sizeof kKats / sizeof kKats[0]; t++) {
        const kat *k = &kKats[t];
        uint32_t got[4], ref[4];
        ref_philox4x32(k->ctr, k->key, k->rounds, ref);
        char what[96];
        snprintf(what, sizeof what, "KAT philox4x32-%d ctr %08x.. key %08x %08x (reference impl)",
                 k->rounds, k->ctr[0], k->key[0], k->key[1]);
        check(memcmp(ref, k->out, sizeof ref) == 0, what, "got %08x %08x %08x %08x", ref[0], ref[1],
              ref[2], ref[3]);
        if (k->rounds != 10) continue;
        wm_philox4x32_10(k->ctr, k->key[0], k->key[1], got);
        snprintf(what, sizeof what, "KAT philox4x32-10 ctr %08x.. key %08x %08x (wm_philox4x32_10)",
                 k->ctr[0], k->key[0], k->key[1]);
        check(memcmp(got, k->out, sizeof got) == 0, what, "got %08x %08x %08x %08x", got[0], got[1],
              got[2], got[3]);
    }
}

static void test_philox_random(void) {
    const int n = 100000;
    int bad = 0;
    for (int t = 0; t < n; t++) {
        uint32_t ctr[4] = {rnd32(), rnd32(), rnd32(), rnd32()};
        uint32_t key[2] = {rnd32(), rnd32()};
        uint32_t a[4], b[4];
        wm_philox4x32_10(ctr, key[0], key[1], a);
        ref_philox4x32(ctr, key, 10, b);
        bad += memcmp(a, b, sizeof a) != 0;
    }
    check(bad == 0, "philox vs independent implementation, 100000 random ctr/key", "%d mismatches",
          bad);

    /* stream layout: key = (seed lo, seed hi), counter = (i/4, s0, s1, s2) */
    uint64_t seed = 0x0123456789ABCDEFull;
    uint32_t w[4], r[4];
    wm_stream_words(seed, 11, 22, 33, 77, w);
    ref_philox4x32((const uint32_t[4]){77, 11, 22, 33}, (const uint32_t[2]){0x89ABCDEF, 0x01234567},
                   10, r);
    check(memcmp(w, r, sizeof w) == 0, "stream words = philox(ctr (i/4,s0,s1,s2), key (lo,hi))",
          "%08x vs %08x", w[0], r[0]);
}

static void test_fnv(void) {
    /* FNV-1a 32 test vectors of draft-eastlake-fnv (IETF). */
    uint32_t a = wm_fnv1a32(""), b = wm_fnv1a32("a"), c = wm_fnv1a32("foobar");
    check(a == 0x811c9dc5u && b == 0xe40c292cu && c == 0xbf9cf968u,
          "wm_fnv1a32 vs draft-eastlake-fnv vectors", "%08x %08x %08x", a, b, c);
}

/* ---- 2. uniforms, log, sin/cos --------------------------------------------------------------- */

static void test_uniforms(void) {
    int ok = wm_u01_open_closed(0) == 0x1p-24f && wm_u01_open_closed(0xFFFFFFFFu) == 1.0f &&
             wm_u01_closed_open(0) == 0.0f && wm_u01_closed_open(0xFFFFFFFFu) == 1.0f - 0x1p-24f &&
             wm_uniform_pm1(0) == -1.0f && wm_uniform_pm1(0xFFFFFFFFu) == 1.0f - 0x1p-23f &&
             wm_uniform_pm1(0x80000000u) == 0.0f;
    check(ok, "uniform conversions at the ends of their ranges",
          "open_closed [%a, %a] closed_open [%a, %a] pm1 [%a, %a]", wm_u01_open_closed(0),
          wm_u01_open_closed(0xFFFFFFFFu), wm_u01_closed_open(0), wm_u01_closed_open(0xFFFFFFFFu),
          wm_uniform_pm1(0), wm_uniform_pm1(0xFFFFFFFFu));
}

typedef struct {
    double max_abs, max_ulp;
    float at_abs, at_ulp;
} errstat;

static void log_point(errstat *e, float x) {
    double ref = log((double)x);
    double got = (double)wm_logf_exact(x);
    double err = fabs(got - ref);
    double ulps = err / ulp_at(ref);
    if (ref == 0.0) ulps = got == 0.0 ? 0.0 : INFINITY;
    if (err > e->max_abs) e->max_abs = err, e->at_abs = x;
    if (ulps > e->max_ulp) e->max_ulp = ulps, e->at_ulp = x;
}

static void test_log(void) {
    /* every value wm_u01_open_closed can produce: k * 2^-24, k = 1 .. 2^24 */
    errstat grid = {0};
    errstat near1 = {0}; /* x in [1/2, 1]: the results Box-Muller mostly sees */
    for (uint32_t k = 1; k <= (1u << 24); k++) {
        float x = (float)k * 0x1p-24f;
        log_point(&grid, x);
        if (x >= 0.5f) log_point(&near1, x);
    }
    /* an absolute bound alone cannot hold at the small end: |log 2^-24| = 16.6, whose float ulp
     * is 1.9e-6, so the bound is in ulps of the result, plus < 1e-6 absolute overall */
    check(grid.max_ulp <= 2.0 && grid.max_abs < 1e-6,
          "wm_logf_exact vs log(), all 2^24 grid points k*2^-24",
          "max %.3g ulp (at %a), max abs %.3g (at %a)", grid.max_ulp, (double)grid.at_ulp,
          grid.max_abs, (double)grid.at_abs);
    check(near1.max_abs < 3e-7, "wm_logf_exact vs log(), grid points in [1/2, 1]",
          "max abs %.3g (at %a)", near1.max_abs, (double)near1.at_abs);

    /* any float in (0, 1], subnormals included, plus named edge values */
    errstat any = {0};
    for (int t = 0; t < 1000000; t++) {
        uint32_t bits = rnd32() % 0x3f800000u + 1u; /* (0, 1) as bit patterns: log-uniform */
        log_point(&any, u2f(bits));
    }
    const float edges[] = {0x1p-24f,
                           1.0f,
                           nextafterf(1.0f, 0.0f),
                           1.0f - 0x1p-23f,
                           0.70710678f,
                           nextafterf(0.70710678f, 0.0f),
                           nextafterf(0.70710678f, 1.0f),
                           0.5f,
                           0.25f,
                           FLT_MIN,
                           0x1p-149f,
                           0.36787944f,
                           0.999f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) log_point(&any, edges[i]);
    check(any.max_ulp <= 2.0, "wm_logf_exact vs log(), 1e6 random floats in (0,1) + edges",
          "max %.3g ulp (at %a), max abs %.3g (at %a)", any.max_ulp, (double)any.at_ulp,
          any.max_abs, (double)any.at_abs);
    check(wm_logf_exact(1.0f) == 0.0f && f2u(wm_logf_exact(1.0f)) == 0, "wm_logf_exact(1) is +0",
          "%a", (double)wm_logf_exact(1.0f));
}

static void sincos_point(errstat *es, errstat *ec, float u) {
    float s, c;
    wm_sincos_2pi(u, &s, &c);
    double a = 2.0 * PI_D * (double)u;
    double es_ = fabs((double)s - sin(a)), ec_ = fabs((double)c - cos(a));
    if (es_ > es->max_abs) es->max_abs = es_, es->at_abs = u;
    if (ec_ > ec->max_abs) ec->max_abs = ec_, ec->at_abs = u;
}

static void test_sincos(void) {
    errstat es = {0}, ec = {0};
    /* every value wm_u01_closed_open can produce: k * 2^-24, k = 0 .. 2^24 - 1 */
    for (uint32_t k = 0; k < (1u << 24); k++) sincos_point(&es, &ec, (float)k * 0x1p-24f);
    check(es.max_abs < 2e-7 && ec.max_abs < 2e-7,
          "wm_sincos_2pi vs sin/cos(2 pi u), all 2^24 grid points",
          "sin %.3g (at %a) cos %.3g (at %a)", es.max_abs, (double)es.at_abs, ec.max_abs,
          (double)ec.at_abs);

    errstat rs = {0}, rc = {0};
    for (int t = 0; t < 1000000; t++) {
        float u = (float)(rnd64() >> 11) * 0x1p-53f; /* any float in [0, 1) */
        if (u >= 1.0f) u = nextafterf(1.0f, 0.0f);
        sincos_point(&rs, &rc, u);
    }
    /* octant and quadrant boundaries and their neighbours */
    for (int j = 0; j <= 8; j++) {
        float b = (float)j / 8.0f;
        float cand[3] = {b, nextafterf(b, 0.0f), nextafterf(b, 1.0f)};
        for (int m = 0; m < 3; m++)
            if (cand[m] >= 0.0f && cand[m] < 1.0f) sincos_point(&rs, &rc, cand[m]);
    }
    check(rs.max_abs < 2e-7 && rc.max_abs < 2e-7,
          "wm_sincos_2pi vs sin/cos(2 pi u), 1e6 random u + boundaries",
          "sin %.3g (at %a) cos %.3g (at %a)", rs.max_abs, (double)rs.at_abs, rc.max_abs,
          (double)rc.at_abs);

    /* quadrant points come out exact */
    const float qs[4][2] = {{0.0f, 1.0f}, {1.0f, 0.0f}, {0.0f, -1.0f}, {-1.0f, 0.0f}};
    int exact = 1;
    for (int q = 0; q < 4; q++) {
        float s, c;
        wm_sincos_2pi((float)q * 0.25f, &s, &c);
        exact &= s == qs[q][0] && c == qs[q][1];
    }
    check(exact, "wm_sincos_2pi exact at u = 0, 1/4, 1/2, 3/4", "%s", exact ? "yes" : "no");
}

/* ---- 3. normals ------------------------------------------------------------------------------ */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double corr(const float *a, size_t sa, const float *b, size_t sb, size_t n) {
    double ma = 0, mb = 0;
    for (size_t i = 0; i < n; i++) ma += a[i * sa], mb += b[i * sb];
    ma /= (double)n, mb /= (double)n;
    double cab = 0, caa = 0, cbb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i * sa] - ma, y = b[i * sb] - mb;
        cab += x * y, caa += x * x, cbb += y * y;
    }
    return cab / sqrt(caa * cbb);
}

/* Box-Muller in double from the same Philox words: checks lane pairing and which lane gets cos. */
static void test_normal_vs_double(void) {
    double maxerr = 0;
    uint64_t at = 0;
    for (uint64_t i = 0; i < 1000000; i++) {
        uint64_t idx = i * 7919u;
        uint32_t w[4];
        wm_stream_words(42, 1, 2, 3, (uint32_t)(idx >> 2), w);
        unsigned lane = (unsigned)(idx & 3u), p = lane & 2u;
        double u1 = ((double)(w[p] >> 8) + 1.0) / 16777216.0;
        double u2 = (double)(w[p + 1] >> 8) / 16777216.0;
        double r = sqrt(-2.0 * log(u1));
        double ref = (lane & 1u) ? r * sin(2 * PI_D * u2) : r * cos(2 * PI_D * u2);
        double err = fabs((double)wm_normal_at(42, 1, 2, 3, idx) - ref);
        if (err > maxerr) maxerr = err, at = idx;
    }
    check(maxerr < 2e-6, "wm_normal_at vs Box-Muller in double on the same words, 1e6 elements",
          "max abs %.3g (element %llu)", maxerr, (unsigned long long)at);
}

static void test_normal_stats(void) {
    const size_t n = (size_t)4 << 20;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    if (!x || !y) {
        check(0, "allocate 2 x 4M floats", "out of memory");
        free(x), free(y);
        return;
    }
    eng_noise_fill(x, n, 1234567, 7, 100, 0);
    eng_noise_fill(y, n, 1234567, 7, 101, 0);

    double sum = 0, sq = 0;
    size_t tail4 = 0;
    float maxabs = 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i], sq += (double)x[i] * x[i];
        tail4 += fabsf(x[i]) > 4.0f;
        if (fabsf(x[i]) > maxabs) maxabs = fabsf(x[i]);
    }
    double mean = sum / (double)n, var = sq / (double)n - mean * mean;
    double sd_mean = 1.0 / sqrt((double)n), sd_var = sqrt(2.0 / (double)n);
    check(fabs(mean) < 5 * sd_mean, "normal mean, 4M samples, |mean| < 5 sigma",
          "mean %.3g (5 sigma = %.3g)", mean, 5 * sd_mean);
    check(fabs(var - 1) < 5 * sd_var, "normal variance, 4M samples, |var-1| < 5 sigma",
          "var %.6f (5 sigma = %.3g)", var, 5 * sd_var);
    /* P(|z| > 4) = erfc(4/sqrt 2) = 6.33e-5; counts are Poisson */
    double expect4 = erfc(4.0 / sqrt(2.0)) * (double)n;
    check(fabs((double)tail4 - expect4) < 5 * sqrt(expect4), "normal tail |z| > 4 count",
          "%zu seen, %.1f expected (5 sigma = %.1f); max |z| %.3f (cap 5.77)", tail4, expect4,
          5 * sqrt(expect4), (double)maxabs);

    /* independence: neighbouring stream (s1 + 1) and the lanes of one counter */
    double c_stream = corr(x, 1, y, 1, n);
    double c01 = corr(x, 4, x + 1, 4, n / 4); /* cos vs sin of pair A */
    double c02 = corr(x, 4, x + 2, 4, n / 4); /* pair A vs pair B */
    double c13 = corr(x + 1, 4, x + 3, 4, n / 4);
    double c_next = corr(x, 1, x + 1, 1, n - 1); /* lag 1 across counters too */
    double lim_all = 5.0 / sqrt((double)n), lim_lane = 5.0 / sqrt((double)(n / 4));
    check(fabs(c_stream) < lim_all, "correlation stream s1 vs s1+1", "%.3g (5 sigma = %.3g)",
          c_stream, lim_all);
    check(fabs(c01) < lim_lane && fabs(c02) < lim_lane && fabs(c13) < lim_lane,
          "correlation lanes 0/1, 0/2, 1/3", "%.3g %.3g %.3g (5 sigma = %.3g)", c01, c02, c13,
          lim_lane);
    check(fabs(c_next) < lim_all, "correlation lag 1", "%.3g (5 sigma = %.3g)", c_next, lim_all);
    /* lanes 0 and 1 share r: their squares would correlate if the angle were not uniform */
    float *sq0 = malloc(n / 4 * sizeof *sq0);
    float *sq1 = malloc(n / 4 * sizeof *sq1);
    if (sq0 && sq1) {
        for (size_t i = 0; i < n / 4; i++) {
            sq0[i] = x[4 * i] * x[4 * i];
            sq1[i] = x[4 * i + 1] * x[4 * i + 1];
        }
        double csq = corr(sq0, 1, sq1, 1, n / 4);
        check(fabs(csq) < lim_lane, "correlation of squares, lanes 0/1", "%.3g (5 sigma = %.3g)",
              csq, lim_lane);
    }
    free(sq0), free(sq1);

    /* Kolmogorov-Smirnov distance to the normal CDF; alpha = 1e-3 critical value
     * sqrt(-ln(alpha/2)/2) / sqrt(n) */
    qsort(x, n, sizeof *x, cmp_float);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double cdf = 0.5 * erfc(-(double)x[i] / sqrt(2.0));
        double lo = cdf - (double)i / (double)n, hi = (double)(i + 1) / (double)n - cdf;
        if (lo > d) d = lo;
        if (hi > d) d = hi;
    }
    double dcrit = sqrt(-log(1e-3 / 2) / 2) / sqrt((double)n);
    check(d < dcrit, "Kolmogorov-Smirnov vs normal CDF, 4M samples", "D %.3g (critical %.3g)", d,
          dcrit);
    free(x), free(y);
}

/* ---- 4. fills: determinism, element-wise equality -------------------------------------------- */

static size_t count_equal(const float *a, const float *b, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += f2u(a[i]) == f2u(b[i]);
    return k;
}

static void test_fill_determinism(void) {
    const size_t n = 1000003;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) {
        check(0, "allocate 2 x 1M floats", "out of memory");
        free(a), free(b);
        return;
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    eng_noise_fill(a, n, 99, 5, 6, 7);
    omp_set_num_threads(4);
    eng_noise_fill(b, n, 99, 5, 6, 7);
    omp_set_num_threads(saved);
    check(memcmp(a, b, n * sizeof *a) == 0, "eng_noise_fill 1 thread vs 4 threads, n = 1000003",
          "%zu of %zu elements differ", n - count_equal(a, b, n), n);
    eng_noise_fill(b, n, 99, 5, 6, 7);
    check(memcmp(a, b, n * sizeof *a) == 0, "eng_noise_fill twice with the same arguments",
          "%zu differ", n - count_equal(a, b, n));

    /* each key and counter word matters (equal elements can only be chance: exact zeros) */
    struct {
        const char *what;
        uint64_t seed;
        uint32_t s0, s1, s2;
    } v[] = {{"seed + 1", 100, 5, 6, 7},
             {"seed + 2^32", 99 + (1ull << 32), 5, 6, 7},
             {"s0 + 1", 99, 6, 6, 7},
             {"s1 + 1", 99, 5, 7, 7},
             {"s2 + 1", 99, 5, 6, 8}};
    for (size_t t = 0; t < sizeof v / sizeof v[0]; t++) {
        eng_noise_fill(b, n, v[t].seed, v[t].s0, v[t].s1, v[t].s2);
        size_t eq = count_equal(a, b, n);
        char what[96];
        snprintf(what, sizeof what, "stream with %s differs", v[t].what);
        check(eq < 16, what, "%zu of %zu elements equal", eq, n);
    }

    /* uniforms: thread independence and range */
    omp_set_num_threads(1);
    eng_uniform_fill(a, n, 0.02f, 0.5f, 3, 4, ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS);
    omp_set_num_threads(4);
    eng_uniform_fill(b, n, 0.02f, 0.5f, 3, 4, ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS);
    omp_set_num_threads(saved);
    float lo = 1e9f, hi = -1e9f;
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        lo = a[i] < lo ? a[i] : lo, hi = a[i] > hi ? a[i] : hi;
        float want = 0.5f + 0.02f * wm_uniform_at(3, 4, ENG_STREAM_WEIGHTS, ENG_STREAM_WEIGHTS, i);
        wrong += f2u(want) != f2u(a[i]);
    }
    check(memcmp(a, b, n * sizeof *a) == 0 && wrong == 0 && lo >= 0.48f &&
              hi <= 0.52f, /* 0.5 + 0.02 (1 - 2^-23) rounds to 0.52 */
          "eng_uniform_fill: 1 vs 4 threads, = offset + scale * wm_uniform_at",
          "%zu thread diffs, %zu element diffs, range [%.6f, %.6f]", n - count_equal(a, b, n),
          wrong, (double)lo, (double)hi);
    free(a), free(b);
}

static void test_fill_elementwise(void) {
    const size_t n = 1000003;
    float *a = malloc(n * sizeof *a);
    if (!a) {
        check(0, "allocate 1M floats", "out of memory");
        return;
    }
    const uint64_t seed = 0xFEEDFACECAFEBEEFull;
    eng_noise_fill(a, n, seed, 3, 16, 2);
    size_t bad = 0;
    for (int t = 0; t < 100000; t++) {
        size_t i = (size_t)(rnd64() % n);
        bad += f2u(a[i]) != f2u(wm_normal_at(seed, 3, 16, 2, i));
    }
    for (size_t i = n - 8; i < n; i++) bad += f2u(a[i]) != f2u(wm_normal_at(seed, 3, 16, 2, i));
    check(bad == 0, "eng_noise_fill[i] == wm_normal_at(i), 100000 random i + the tail",
          "%zu mismatches", bad);

    /* short fills are prefixes of long ones (tails of 1..3 elements) */
    size_t badp = 0;
    for (size_t m = 1; m <= 9; m++) {
        float b[9];
        eng_noise_fill(b, m, seed, 3, 16, 2);
        badp += memcmp(a, b, m * sizeof *b) != 0;
    }
    check(badp == 0, "eng_noise_fill(n = 1..9) are prefixes of the n = 1000003 fill",
          "%zu of 9 differ", badp);

    /* the 2^34-element period of a stream, as documented */
    uint64_t big = (1ull << 32) + 5;
    float p = wm_normal_at(seed, 3, 16, 2, big),
          q = wm_normal_at(seed, 3, 16, 2, big + (1ull << 34));
    float r = wm_normal_at(seed, 3, 16, 2, 5);
    check(f2u(p) == f2u(q) && f2u(p) != f2u(r), "stream period is 2^34 elements",
          "z[2^32+5] %a, z[2^32+5+2^34] %a, z[5] %a", (double)p, (double)q, (double)r);
    free(a);
}

/* A frozen digest of a few streams. Any change to philox.h that changes the bits fails here: the
 * streams are part of the engine's reproducibility contract (sessions replay the same noise), so
 * such a change must be deliberate and update this value. */
static void test_golden(void) {
    float buf[4099];
    uint32_t h = 2166136261u;
    const uint32_t streams[3][3] = {{0, 0, 0}, {1, 2, 3}, {0x12345678u, ENG_STREAM_COND, 1}};
    for (int s = 0; s < 3; s++) {
        eng_noise_fill(buf, 4099, 42 + (uint64_t)s * 0x100000001ull, streams[s][0], streams[s][1],
                       streams[s][2]);
        for (int i = 0; i < 4099; i++) {
            uint32_t u = f2u(buf[i]);
            for (int k = 0; k < 4; k++) h = (h ^ ((u >> (8 * k)) & 0xFFu)) * 16777619u;
        }
    }
    const uint32_t expect = 0x0b64cb28u;
    check(h == expect, "golden FNV-1a digest of 3 x 4099 normals", "%08x (frozen %08x)", h, expect);
    printf("     first elements of stream (42, 0, 0, 0): %.9g %.9g %.9g %.9g\n",
           (double)wm_normal_at(42, 0, 0, 0, 0), (double)wm_normal_at(42, 0, 0, 0, 1),
           (double)wm_normal_at(42, 0, 0, 0, 2), (double)wm_normal_at(42, 0, 0, 0, 3));
}

int main(void) {
    test_philox_kat();
    test_philox_random();
    test_fnv();
    test_uniforms();
    test_log();
    test_sincos();
    test_normal_vs_double();
    test_normal_stats();
    test_fill_determinism();
    test_fill_elementwise();
    test_golden();
    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
    return g_failures ? 1 : 0;
}
