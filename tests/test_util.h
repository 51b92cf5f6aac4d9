/* Small helpers shared by the engine tests: a check counter that prints every comparison, random
 * data from a self-contained generator (independent of the engine's Philox), and error norms. */
#ifndef WM_TESTS_TEST_UTIL_H
#define WM_TESTS_TEST_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

static int tu_checks, tu_failed;

__attribute__((format(printf, 2, 3))) static inline void tu_check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    tu_checks++;
    if (!ok) tu_failed++;
}

static inline int tu_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failed);
    return tu_failed ? 1 : 0;
}

/* splitmix64: test data only. */
static inline uint64_t tu_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline double tu_uniform(uint64_t *s) {
    return (double)(tu_next(s) >> 11) * 0x1.0p-53;
}
static inline void tu_fill(float *x, size_t n, uint64_t seed, float scale) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) x[i] = (float)((2.0 * tu_uniform(&s) - 1.0) * scale);
}

/* ||a - b|| / ||b|| over n floats against a double reference. */
static inline double tu_rel_err_d(const float *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static inline double tu_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

#endif
