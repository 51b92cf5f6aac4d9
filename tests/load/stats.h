/* Sample sets and histograms for wmload: every measured value (connect time, inter-arrival,
 * input-to-frame latency, ...) is kept as a sample so that percentiles are exact, and is also
 * counted into a fixed-bucket millisecond histogram for the JSON report.
 *
 * Percentiles use the nearest-rank definition: pXX is the smallest sample such that at least XX %
 * of the samples are <= it (p100 = the maximum). An empty set has NaN percentiles.
 *
 * Ownership: st_samples is caller-owned storage; st_free releases it (safe on a zeroed struct). */
#ifndef WM_LOAD_STATS_H
#define WM_LOAD_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_samples {
    double *v;
    size_t n, cap;
    int sorted;
} st_samples;

/* Adds one sample; -1 when memory runs out (the sample is lost, the set stays valid). */
int st_add(st_samples *s, double x);
/* Appends every sample of src to dst. */
int st_merge(st_samples *dst, const st_samples *src);
void st_free(st_samples *s);
/* Nearest-rank percentile, p in [0, 100]; sorts the set in place once. NaN when empty. */
double st_pct(st_samples *s, double p);
double st_mean(const st_samples *s);

typedef struct st_summary {
    size_t n;
    double min, p50, p95, p99, max, mean;
} st_summary;
st_summary st_summarize(st_samples *s);

/* Histogram buckets (upper bounds, ms, inclusive); the last bucket is "above the last bound". */
#define ST_HIST_BUCKETS 16
extern const double st_hist_bounds_ms[ST_HIST_BUCKETS - 1];
/* Counts per bucket of the samples in s. */
void st_histogram(const st_samples *s, uint64_t counts[ST_HIST_BUCKETS]);

#endif
