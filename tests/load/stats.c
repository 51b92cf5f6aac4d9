/* Sample sets, exact nearest-rank percentiles and fixed millisecond histograms: see stats.h. */
#include "tests/load/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double st_hist_bounds_ms[ST_HIST_BUCKETS - 1] = {1,  2,   5,   10,  20,   40,   50,  60,
                                                       80, 100, 200, 500, 1000, 2000, 5000};

int st_add(st_samples *s, double x) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *p = realloc(s->v, cap * sizeof *p);
        if (!p) return -1;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    s->sorted = 0;
    return 0;
}

int st_merge(st_samples *dst, const st_samples *src) {
    for (size_t i = 0; i < src->n; i++)
        if (st_add(dst, src->v[i])) return -1;
    return 0;
}

void st_free(st_samples *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double st_pct(st_samples *s, double p) {
    if (!s->n) return NAN;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof *s->v, cmp_double);
        s->sorted = 1;
    }
    if (p <= 0) return s->v[0];
    /* nearest rank: ceil(p/100 * n), 1-based */
    double r = ceil(p / 100.0 * (double)s->n - 1e-9);
    size_t k = r < 1 ? 1 : (size_t)r;
    if (k > s->n) k = s->n;
    return s->v[k - 1];
}

double st_mean(const st_samples *s) {
    if (!s->n) return NAN;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    return sum / (double)s->n;
}

st_summary st_summarize(st_samples *s) {
    st_summary r;
    r.n = s->n;
    r.min = st_pct(s, 0);
    r.p50 = st_pct(s, 50);
    r.p95 = st_pct(s, 95);
    r.p99 = st_pct(s, 99);
    r.max = st_pct(s, 100);
    r.mean = st_mean(s);
    return r;
}

void st_histogram(const st_samples *s, uint64_t counts[ST_HIST_BUCKETS]) {
    memset(counts, 0, ST_HIST_BUCKETS * sizeof counts[0]);
    for (size_t i = 0; i < s->n; i++) {
        int b = 0;
        while (b < ST_HIST_BUCKETS - 1 && s->v[i] > st_hist_bounds_ms[b]) b++;
        counts[b]++;
    }
}
