/* CPU reference primitives. Matrix products go through OpenBLAS (sgemm); every other loop is an
 * OpenMP loop over independent rows. Reductions that set a row's scale (norm statistics, softmax
 * denominators) accumulate in double so the reference is closer to exact than the bf16 model. */
#include "engine/cpu/ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"

static int blas_core_is_generic(void) {
    const char *core = openblas_get_corename();
    return strcmp(core, "Prescott") == 0 || strcmp(core, "Core2") == 0 ||
           strcmp(core, "Nehalem") == 0;
}

/* Two settings that libgomp and OpenBLAS read once, when they are loaded, so a program that finds
 * them unset sets them and re-executes itself (if that fails it goes on as it is):
 * - OMP_WAIT_POLICY=passive: by default idle OpenMP workers spin on the cores that OpenBLAS's own
 *   threads need for the next sgemm, which made forwards up to 100x slower on a loaded machine.
 * - OPENBLAS_CORETYPE: OpenBLAS 0.3.21 does not recognise some virtualised CPUs and falls back to
 *   SSE3 kernels; when the CPU has AVX-512 or AVX2 the matching kernels are 2-3x faster. */
void eng_cpu_threads_setup(char **argv) {
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY")) changed |= setenv("OMP_WAIT_POLICY", "passive", 0) == 0;
    if (!getenv("OPENBLAS_CORETYPE") && blas_core_is_generic()) {
        const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                           : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                             : NULL;
        if (core) changed |= setenv("OPENBLAS_CORETYPE", core, 0) == 0;
    }
    if (changed) execv("/proc/self/exe", argv);
}

void eng_cpu_backend_describe(char *dst, size_t len) {
    snprintf(dst, len, "OpenBLAS %s kernels, %d threads%s", openblas_get_corename(),
             openblas_get_num_threads(),
             blas_core_is_generic() && __builtin_cpu_supports("avx2")
                 ? " (this CPU has AVX2: set OPENBLAS_CORETYPE=Haswell or SkylakeX for 2-3x)"
                 : "");
}

void cpu_linear(const float *x, int ldx, int rows, int in, const float *W, const float *b, int out,
                float *y, int ldy) {
    if (rows <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, ldx, W, in, 0.0f,
                y, ldy);
    if (!b) return;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * (size_t)ldy;
        for (int o = 0; o < out; o++) yr[o] += b[o];
    }
}

void cpu_layernorm(const float *x, float *y, int rows, int n, float eps, const float *gamma,
                   const float *beta) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * (size_t)n;
        float *yr = y + (size_t)r * (size_t)n;
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < n; i++) sum += xr[i];
        double mean = sum / n;
        for (int i = 0; i < n; i++) {
            double d = xr[i] - mean;
            sq += d * d;
        }
        double inv = 1.0 / sqrt(sq / n + (double)eps);
        for (int i = 0; i < n; i++) {
            float v = (float)((xr[i] - mean) * inv);
            if (gamma) v = v * gamma[i];
            if (beta) v = v + beta[i];
            yr[i] = v;
        }
    }
}

void cpu_rmsnorm(const float *x, float *y, size_t count, int n, float eps, const float *gain) {
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < count; r++) {
        const float *xr = x + r * (size_t)n;
        float *yr = y + r * (size_t)n;
        double sq = 0.0;
        for (int i = 0; i < n; i++) sq += (double)xr[i] * xr[i];
        double inv = 1.0 / sqrt(sq / n + (double)eps);
        for (int i = 0; i < n; i++) {
            float v = (float)(xr[i] * inv);
            yr[i] = gain ? v * gain[i] : v;
        }
    }
}

float cpu_gelu_tanh(float u) {
    const double k = 0.7978845608028654; /* sqrt(2 / pi) */
    double d = u;
    return (float)(0.5 * d * (1.0 + tanh(k * (d + 0.044715 * d * d * d))));
}

float cpu_gelu_erf(float u) {
    double d = u;
    return (float)(0.5 * d * (1.0 + erf(d * 0.7071067811865476)));
}

float cpu_silu(float u) {
    double d = u;
    return (float)(d / (1.0 + exp(-d)));
}

#define CPU_MAP(name, fn)                                                                          \
    void name(float *x, size_t n) {                                                                \
        _Pragma("omp parallel for schedule(static)") for (size_t i = 0; i < n; i++) x[i] =         \
            fn(x[i]);                                                                              \
    }
CPU_MAP(cpu_apply_gelu_tanh, cpu_gelu_tanh)
CPU_MAP(cpu_apply_gelu_erf, cpu_gelu_erf)
CPU_MAP(cpu_apply_silu, cpu_silu)

/* Row softmax in place over n scores; masked entries (vis[c] == 0) get probability 0. */
static void softmax_row(float *s, int n, const unsigned char *vis, int rows_per_frame_k) {
    float mx = -INFINITY;
    for (int c = 0; c < n; c++)
        if ((!vis || vis[c / rows_per_frame_k]) && s[c] > mx) mx = s[c];
    if (mx == -INFINITY) { /* nothing visible */
        memset(s, 0, (size_t)n * sizeof *s);
        return;
    }
    double sum = 0.0;
    for (int c = 0; c < n; c++) {
        float e = (!vis || vis[c / rows_per_frame_k]) ? expf(s[c] - mx) : 0.0f;
        s[c] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int c = 0; c < n; c++) s[c] *= inv;
}

void cpu_attention(const cpu_attn_args *a, float *scratch) {
    const float scale = (float)(1.0 / sqrt((double)a->dh));
    for (int h = 0; h < a->heads; h++) {
        const int off = h * a->dh;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->lq, a->lk, a->dh, scale, a->q + off,
                    a->ldq, a->k + off, a->ldk, 0.0f, scratch, a->lk);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < a->lq; r++) {
            const unsigned char *vis =
                a->mask ? a->mask + (size_t)(r / a->rows_per_frame_q) * (size_t)a->frames_k : NULL;
            softmax_row(scratch + (size_t)r * (size_t)a->lk, a->lk, vis, a->rows_per_frame_k);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, a->lq, a->dh, a->lk, 1.0f, scratch,
                    a->lk, a->v + off, a->ldv, 0.0f, a->o + off, a->ldo);
    }
}

void cpu_attention_row(const float *q, const float *k, int ldk, const float *v, int ldv, int nk,
                       const unsigned char *key_visible, int heads, int dh, float *o) {
    const double scale = 1.0 / sqrt((double)dh);
    double p[CPU_ATTN_ROW_MAX_KEYS];
    for (int h = 0; h < heads; h++) {
        const float *qh = q + h * dh;
        double mx = -INFINITY;
        for (int j = 0; j < nk; j++) {
            p[j] = -INFINITY;
            if (key_visible && !key_visible[j]) continue;
            double dot = 0.0;
            for (int d = 0; d < dh; d++) dot += (double)qh[d] * k[(size_t)j * ldk + h * dh + d];
            p[j] = dot * scale;
            if (p[j] > mx) mx = p[j];
        }
        double sum = 0.0;
        for (int j = 0; j < nk; j++) {
            p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
            sum += p[j];
        }
        for (int d = 0; d < dh; d++) {
            double acc = 0.0;
            for (int j = 0; j < nk; j++) acc += p[j] * v[(size_t)j * ldv + h * dh + d];
            o[h * dh + d] = sum > 0.0 ? (float)(acc / sum) : 0.0f;
        }
    }
}
