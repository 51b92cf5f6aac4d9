/* The VAE's layer kernels on the CPU: causal 3x3x3 and 2-D 3x3 convolutions as GEMMs over a
 * zero-padded input, the (3,1,1) time convs of the resamplers, the stride-2 downsample conv, RMS
 * norm (float64 statistics), the residual block and the per-frame attention block, plus the
 * workspace / cache bookkeeping they share.
 *
 * The padded-grid trick: with the input stored [Cin][Tin][H+2][W+2] (zero border, history frames
 * in front), output position p = t*P + y*(W+2) + x (P = (H+2)(W+2)) of tap (dt, dy, dx) reads input
 * position p + dt*P + dy*(W+2) + dx for every valid (t, y, x), across all frames at once. So the
 * im2col matrix of a block of output positions is 27 * Cin contiguous slices of the padded input
 * (one memcpy each), and the conv is one GEMM W[Cout][27 Cin] x col[27 Cin][block] per block with
 * a deep K. (27 per-tap GEMMs with K = Cin work too but are memory-bound for the narrow early and
 * tiny-config layers.) The grid's border columns collect garbage that the epilogue skips.
 *
 * Narrow layers (Cout <= VAE_DIRECT_MAX_COUT: all of the tiny config, the head of the full one)
 * skip the im2col copy on x86 CPUs with AVX2 and FMA: a direct kernel reads the K rows straight
 * from the padded input at their tap offsets (an implicit GEMM) and keeps a 4-channel x 16-position
 * output tile in registers. For these shapes the im2col memcpy and OpenBLAS's own repacking of it
 * were more than half of the time; M = Cout is too small for a GEMM to amortise them. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"
#include "engine/vae/vae_internal.h"

/* im2col block budget in floats (8 MB): big enough for long GEMM rows, small enough to stay
 * near the cache; the block is at least VAE_COL_MIN_BLOCK positions wide. */
#define VAE_COL_FLOATS    ((size_t)1 << 21)
#define VAE_COL_MIN_BLOCK 256
/* Widest layer the direct conv kernel takes (wider ones are GEMM-shaped enough for OpenBLAS). */
#define VAE_DIRECT_MAX_COUT 32
/* Below this many elements of work a loop runs on one thread: a fork/join costs more, and with
 * OpenBLAS's own threads waiting on the same cores the spinning hurts (tiny configs). */
#define VAE_PAR_MIN ((size_t)1 << 18)
/* Positions per chunk of the channel-norm loops (float64 statistics kept on the stack). */
#define VAE_NORM_CHUNK 64

/* ---- workspace and caches -------------------------------------------------------------------- */

int vae_ws_require(vae_ws *ws, int which, size_t n, char *err, size_t errlen) {
    if (ws->dry) {
        if (n > ws->need[which]) ws->need[which] = n;
        return 0;
    }
    if (n > ws->cap[which])
        return eng_errorf(err, errlen, ENG_ESTATE,
                          "VAE workspace buffer %d holds %zu floats but a layer needs %zu (a shape "
                          "the create-time plan did not see)",
                          which, ws->cap[which], n);
    return 0;
}

int vae_ws_commit(vae_ws *ws, char *err, size_t errlen) {
    for (int i = 0; i < VAE_WS_COUNT; i++) {
        if (ws->need[i] <= ws->cap[i]) continue;
        free(ws->buf[i]);
        ws->buf[i] = calloc(ws->need[i], sizeof(float));
        ws->cap[i] = ws->buf[i] ? ws->need[i] : 0;
        if (!ws->buf[i])
            return eng_errorf(err, errlen, ENG_ENOMEM, "cannot allocate %.1f MB of VAE scratch",
                              (double)ws->need[i] * 4e-6);
    }
    return 0;
}

void vae_ws_free(vae_ws *ws) {
    for (int i = 0; i < VAE_WS_COUNT; i++) free(ws->buf[i]);
    memset(ws, 0, sizeof *ws);
}

vae_slot *vae_cache_take(vae_cache *k, int c, int frames, int h, int w, char *err, size_t errlen) {
    if (k->cursor >= VAE_MAX_SLOTS) {
        eng_errorf(err, errlen, ENG_ESTATE, "VAE needs more than %d cache slots", VAE_MAX_SLOTS);
        return NULL;
    }
    vae_slot *s = &k->slot[k->cursor];
    if (k->dry && k->cursor == k->n) {
        s->d = NULL, s->c = c, s->frames = frames, s->h = h, s->w = w;
        k->n++;
    }
    if (s->c != c || s->frames != frames || s->h != h || s->w != w) {
        eng_errorf(err, errlen, ENG_ESTATE,
                   "VAE cache slot %d holds [%d][%d][%d][%d], layer wants [%d][%d][%d][%d]",
                   k->cursor, s->c, s->frames, s->h, s->w, c, frames, h, w);
        return NULL;
    }
    k->cursor++;
    return s;
}

int vae_cache_commit(vae_cache *k, char *err, size_t errlen) {
    if (k->arena) return 0;
    size_t total = 0;
    for (int i = 0; i < k->n; i++)
        total += (size_t)k->slot[i].c * (size_t)k->slot[i].frames * (size_t)k->slot[i].h *
                 (size_t)k->slot[i].w;
    k->arena = calloc(total ? total : 1, sizeof(float));
    if (!k->arena)
        return eng_errorf(err, errlen, ENG_ENOMEM, "cannot allocate %.1f MB of VAE cache",
                          (double)total * 4e-6);
    k->floats = total;
    float *p = k->arena;
    for (int i = 0; i < k->n; i++) {
        k->slot[i].d = p;
        p += (size_t)k->slot[i].c * (size_t)k->slot[i].frames * (size_t)k->slot[i].h *
             (size_t)k->slot[i].w;
    }
    return 0;
}

void vae_cache_zero(vae_cache *k) {
    if (k->arena) memset(k->arena, 0, k->floats * sizeof(float));
}

void vae_cache_free(vae_cache *k) {
    free(k->arena);
    memset(k, 0, sizeof *k);
}

static int check_slot(const vae_slot *s, int c, int frames, int h, int w, char *err,
                      size_t errlen) {
    if (!s || (s->c == c && s->frames == frames && s->h == h && s->w == w)) return 0;
    return eng_errorf(err, errlen, ENG_EINVAL,
                      "VAE cache slot is [%d][%d][%d][%d], layer wants [%d][%d][%d][%d]", s->c,
                      s->frames, s->h, s->w, c, frames, h, w);
}

/* ---- elementwise pieces ---------------------------------------------------------------------- */

static inline float silu(float v) {
    return v / (1.0f + expf(-v));
}

static int simd_supported(void);

/* n (<= VAE_NORM_CHUNK) positions of C channels: dst = [silu](norm ? rms(src) * gamma : src).
 * Channel c of position j is src[c * cs_src + j] / dst[c * cs_dst + j]. */
static void norm_chunk_scalar(const float *src, size_t cs_src, float *dst, size_t cs_dst, int C,
                              int n, const float *gamma, int do_silu) {
    double s[VAE_NORM_CHUNK];
    if (gamma) {
        for (int j = 0; j < n; j++) s[j] = 0.0;
        for (int c = 0; c < C; c++) {
            const float *p = src + (size_t)c * cs_src;
            for (int j = 0; j < n; j++) s[j] += (double)p[j] * p[j];
        }
        /* max(||x||, eps) keeps an all-zero position at 0 instead of 0/0 (pitfall 2) */
        const double root_c = sqrt((double)C);
        for (int j = 0; j < n; j++) s[j] = root_c / fmax(sqrt(s[j]), VAE_NORM_EPS);
    }
    for (int c = 0; c < C; c++) {
        const float *p = src + (size_t)c * cs_src;
        float *q = dst + (size_t)c * cs_dst;
        for (int j = 0; j < n; j++) {
            float v = gamma ? (float)((double)p[j] * s[j] * (double)gamma[c]) : p[j];
            q[j] = do_silu ? silu(v) : v;
        }
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define VAE_HAVE_SIMD 1

/* expf on 8 lanes (Cephes' range reduction and degree-5 polynomial, within 2 ulp of expf over the
 * clamped range; the clamp keeps 2^n normal, so silu's exp(-v) for v > 87 is tiny, not 0/denormal).
 */
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* norm_chunk_scalar on 8 positions at a time: the same float64 statistics and the same order of
 * operations (so the same values up to the last bit of exp in silu). */
__attribute__((target("avx2,fma"))) static void norm_chunk_avx2(const float *src, size_t cs_src,
                                                                float *dst, size_t cs_dst, int C,
                                                                int n, const float *gamma,
                                                                int do_silu) {
    double s[VAE_NORM_CHUNK];
    const int n8 = n / 8 * 8;
    if (gamma) {
        for (int j = 0; j < n; j++) s[j] = 0.0;
        for (int c = 0; c < C; c++) {
            const float *p = src + (size_t)c * cs_src;
            int j = 0;
            for (; j < n8; j += 4) {
                __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(p + j));
                _mm256_storeu_pd(s + j, _mm256_add_pd(_mm256_loadu_pd(s + j), _mm256_mul_pd(v, v)));
            }
            for (; j < n; j++) s[j] += (double)p[j] * p[j];
        }
        const double root_c = sqrt((double)C);
        for (int j = 0; j < n; j++) s[j] = root_c / fmax(sqrt(s[j]), VAE_NORM_EPS);
    }
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int c = 0; c < C; c++) {
        const float *p = src + (size_t)c * cs_src;
        float *q = dst + (size_t)c * cs_dst;
        const __m256d g = _mm256_set1_pd(gamma ? (double)gamma[c] : 1.0);
        int j = 0;
        for (; j < n8; j += 8) {
            __m256 v = _mm256_loadu_ps(p + j);
            if (gamma) {
                __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(p + j)),
                        hi = _mm256_cvtps_pd(_mm_loadu_ps(p + j + 4));
                lo = _mm256_mul_pd(_mm256_mul_pd(lo, _mm256_loadu_pd(s + j)), g);
                hi = _mm256_mul_pd(_mm256_mul_pd(hi, _mm256_loadu_pd(s + j + 4)), g);
                v = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
            }
            if (do_silu)
                v = _mm256_div_ps(v,
                                  _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
            _mm256_storeu_ps(q + j, v);
        }
        for (; j < n; j++) {
            float v = gamma ? (float)((double)p[j] * s[j] * (double)gamma[c]) : p[j];
            q[j] = do_silu ? silu(v) : v;
        }
    }
}

static int simd_supported(void) {
    static int cached = -1; /* a pure function of the CPU: racing first calls agree */
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#else
#define VAE_HAVE_SIMD 0
static int simd_supported(void) {
    return 0;
}
#endif

static void norm_chunk(const float *src, size_t cs_src, float *dst, size_t cs_dst, int C, int n,
                       const float *gamma, int do_silu) {
#if VAE_HAVE_SIMD
    if (simd_supported()) {
        norm_chunk_avx2(src, cs_src, dst, cs_dst, C, n, gamma, do_silu);
        return;
    }
#endif
    norm_chunk_scalar(src, cs_src, dst, cs_dst, C, n, gamma, do_silu);
}

void vae_rms_norm(const float *x, int C, size_t npos, const float *gamma, int do_silu, float *y) {
    const long chunks = (long)((npos + VAE_NORM_CHUNK - 1) / VAE_NORM_CHUNK);
#pragma omp parallel for schedule(static) if ((size_t)C * npos >= VAE_PAR_MIN)
    for (long k = 0; k < chunks; k++) {
        size_t j0 = (size_t)k * VAE_NORM_CHUNK;
        int n = (int)(npos - j0 < VAE_NORM_CHUNK ? npos - j0 : VAE_NORM_CHUNK);
        norm_chunk(x + j0, npos, y + j0, npos, C, n, gamma, do_silu);
    }
}

void vae_conv1x1(const float *x, int cin, size_t n, const float *w, const float *b, int cout,
                 float *y) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)n, cin, 1.0f, w, cin, x,
                (int)n, 0.0f, y, (int)n);
    if (!b) return;
#pragma omp parallel for schedule(static) if ((size_t)cout * n >= VAE_PAR_MIN)
    for (int o = 0; o < cout; o++) {
        float *r = y + (size_t)o * n;
        for (size_t i = 0; i < n; i++) r[i] += b[o];
    }
}

/* ---- padded-grid convolution ----------------------------------------------------------------- */

/* Padded frames f0 .. f0+T-1 of pad [C][Tin][H+2][W+2] = prep(x [C][T][H][W]), zero border. */
static void prep_frames(float *pad, int Tin, int f0, const float *x, int C, int T, int H, int W,
                        const float *gamma, int do_silu) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, HW = (size_t)H * (size_t)W;
    const size_t cs_dst = (size_t)Tin * P, cs_src = (size_t)T * HW;
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)T * P >= VAE_PAR_MIN)
    for (long ct = 0; ct < (long)C * T; ct++) {
        float *pl = pad + (size_t)(ct / T) * cs_dst + (size_t)(f0 + ct % T) * P;
        memset(pl, 0, Wp * sizeof(float));
        memset(pl + ((size_t)H + 1) * Wp, 0, Wp * sizeof(float));
    }
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)T * HW >= VAE_PAR_MIN)
    for (long ty = 0; ty < (long)T * H; ty++) {
        const size_t t = (size_t)(ty / H), yy = (size_t)(ty % H);
        const float *src = x + t * HW + yy * (size_t)W;
        float *dst = pad + (size_t)(f0 + (int)t) * P + (yy + 1) * Wp;
        for (int c = 0; c < C; c++) dst[(size_t)c * cs_dst] = dst[(size_t)c * cs_dst + Wp - 1] = 0;
        for (int x0 = 0; x0 < W; x0 += VAE_NORM_CHUNK) {
            int n = W - x0 < VAE_NORM_CHUNK ? W - x0 : VAE_NORM_CHUNK;
            norm_chunk(src + x0, cs_src, dst + 1 + x0, cs_dst, C, n, gamma, do_silu);
        }
    }
}

/* Padded frames 0, 1 of pad = the slot's two frames (zeros without a slot). */
static void load_history(float *pad, int Tin, const vae_slot *s, int C, int H, int W) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, HW = (size_t)H * (size_t)W;
#pragma omp parallel for schedule(static) if ((size_t)C * 2 * P >= VAE_PAR_MIN)
    for (long cf = 0; cf < (long)C * 2; cf++) {
        float *pl = pad + (size_t)(cf / 2) * (size_t)Tin * P + (size_t)(cf % 2) * P;
        memset(pl, 0, P * sizeof(float));
        if (!s) continue;
        const float *src = s->d + (size_t)cf * HW;
        for (int y = 0; y < H; y++)
            memcpy(pl + ((size_t)y + 1) * Wp + 1, src + (size_t)y * (size_t)W,
                   (size_t)W * sizeof(float));
    }
}

/* slot = padded frames Tin-2, Tin-1: the last two frames of "history ++ new". */
static void save_history(const float *pad, int Tin, vae_slot *s, int C, int H, int W) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, HW = (size_t)H * (size_t)W;
#pragma omp parallel for schedule(static) if ((size_t)C * 2 * HW >= VAE_PAR_MIN)
    for (long cf = 0; cf < (long)C * 2; cf++) {
        const float *pl = pad + (size_t)(cf / 2) * (size_t)Tin * P + (size_t)(Tin - 2 + cf % 2) * P;
        float *dst = s->d + (size_t)cf * HW;
        for (int y = 0; y < H; y++)
            memcpy(dst + (size_t)y * (size_t)W, pl + ((size_t)y + 1) * Wp + 1,
                   (size_t)W * sizeof(float));
    }
}

/* Positions of a padded-grid conv output: one past the last valid one, so that the reads of the
 * last tap end exactly at the end of the Tin-frame input. */
static size_t grid_positions(int T, int H, int W) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp;
    return ((size_t)T - 1) * P + ((size_t)H - 1) * Wp + (size_t)W;
}

/* Width of the im2col block for K = taps * Cin rows and N positions. */
static size_t col_block(size_t K, size_t N) {
    size_t nb = VAE_COL_FLOATS / K;
    if (nb < VAE_COL_MIN_BLOCK) nb = VAE_COL_MIN_BLOCK;
    return nb < N ? nb : N;
}

/* g[Cout][T][P] (valid positions) = W . im2col(pad) over kt x 3 x 3 taps. pad holds
 * Tin = T + kt - 1 frames; w is [Cout][kt][3][3][Cin]; col holds K x col_block(K, N) floats. */
static void conv_taps(const float *pad, int cin, int Tin, int H, int W, int kt, const float *w,
                      int cout, int T, float *g, float *col) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, ldb = (size_t)Tin * P;
    const size_t N = grid_positions(T, H, W), K = (size_t)kt * 9 * (size_t)cin;
    const size_t NB = col_block(K, N);
    for (size_t n0 = 0; n0 < N; n0 += NB) {
        const size_t nb = N - n0 < NB ? N - n0 : NB;
        /* serial on purpose: an OpenMP region right before each sgemm leaves its workers
         * spinning on the cores OpenBLAS's threads need (measured 2x slower on 2 cores) */
        for (long r = 0; r < (long)K; r++) {
            const size_t tap = (size_t)r / (size_t)cin, ci = (size_t)r % (size_t)cin;
            const size_t off = tap / 9 * P + tap / 3 % 3 * Wp + tap % 3;
            memcpy(col + (size_t)r * nb, pad + ci * ldb + off + n0, nb * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, (int)nb, (int)K, 1.0f, w,
                    (int)K, col, (int)nb, 0.0f, g + n0, (int)((size_t)T * P));
    }
}

/* ---- direct kernel (x86 AVX2 + FMA) ---------------------------------------------------------- */

#if VAE_HAVE_SIMD
#define VAE_HAVE_DIRECT 1

#define DC_COB 4  /* output channels of a register tile */
#define DC_NB  16 /* positions of a register tile: two 8-lane vectors */

/* wp[cb][k][DC_COB] = w[cb * DC_COB + j][k], zero for channels past cout. */
static void direct_pack(const float *w, int cout, size_t K, float *wp) {
    const int nb = (cout + DC_COB - 1) / DC_COB;
    for (int cb = 0; cb < nb; cb++)
        for (size_t k = 0; k < K; k++)
            for (int j = 0; j < DC_COB; j++) {
                int co = cb * DC_COB + j;
                wp[((size_t)cb * K + k) * DC_COB + (size_t)j] =
                    co < cout ? w[(size_t)co * K + k] : 0;
            }
}

/* One 4 x 16 tile: g[co][p .. p+15] for the 4 channels of block cb (only those < cout stored).
 * Row k = tap * cin + ci of the implicit im2col is pad + ci * ldb + off[tap] + p. */
__attribute__((target("avx2,fma"))) static void direct_tile(const float *pad, size_t ldb,
                                                            const size_t *off, int taps, int cin,
                                                            const float *wp, size_t p, float *g,
                                                            size_t ldg, int nco) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
           a30 = a00, a31 = a00;
    for (int t = 0; t < taps; t++) {
        const float *x = pad + off[t] + p;
        for (int ci = 0; ci < cin; ci++, x += ldb, wp += DC_COB) {
            __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
            __m256 w = _mm256_broadcast_ss(wp);
            a00 = _mm256_fmadd_ps(w, x0, a00), a01 = _mm256_fmadd_ps(w, x1, a01);
            w = _mm256_broadcast_ss(wp + 1);
            a10 = _mm256_fmadd_ps(w, x0, a10), a11 = _mm256_fmadd_ps(w, x1, a11);
            w = _mm256_broadcast_ss(wp + 2);
            a20 = _mm256_fmadd_ps(w, x0, a20), a21 = _mm256_fmadd_ps(w, x1, a21);
            w = _mm256_broadcast_ss(wp + 3);
            a30 = _mm256_fmadd_ps(w, x0, a30), a31 = _mm256_fmadd_ps(w, x1, a31);
        }
    }
    float *r = g + p;
    _mm256_storeu_ps(r, a00), _mm256_storeu_ps(r + 8, a01);
    if (nco > 1) r += ldg, _mm256_storeu_ps(r, a10), _mm256_storeu_ps(r + 8, a11);
    if (nco > 2) r += ldg, _mm256_storeu_ps(r, a20), _mm256_storeu_ps(r + 8, a21);
    if (nco > 3) r += ldg, _mm256_storeu_ps(r, a30), _mm256_storeu_ps(r + 8, a31);
}

/* The same tile at twice the width with AVX-512 (4 x 32): broadcasts fold into the FMAs. */
__attribute__((target("avx512f"))) static void direct_tile32(const float *pad, size_t ldb,
                                                             const size_t *off, int taps, int cin,
                                                             const float *wp, size_t p, float *g,
                                                             size_t ldg, int nco) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
           a30 = a00, a31 = a00;
    for (int t = 0; t < taps; t++) {
        const float *x = pad + off[t] + p;
        for (int ci = 0; ci < cin; ci++, x += ldb, wp += DC_COB) {
            __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
            __m512 w = _mm512_set1_ps(wp[0]);
            a00 = _mm512_fmadd_ps(w, x0, a00), a01 = _mm512_fmadd_ps(w, x1, a01);
            w = _mm512_set1_ps(wp[1]);
            a10 = _mm512_fmadd_ps(w, x0, a10), a11 = _mm512_fmadd_ps(w, x1, a11);
            w = _mm512_set1_ps(wp[2]);
            a20 = _mm512_fmadd_ps(w, x0, a20), a21 = _mm512_fmadd_ps(w, x1, a21);
            w = _mm512_set1_ps(wp[3]);
            a30 = _mm512_fmadd_ps(w, x0, a30), a31 = _mm512_fmadd_ps(w, x1, a31);
        }
    }
    float *r = g + p;
    _mm512_storeu_ps(r, a00), _mm512_storeu_ps(r + 16, a01);
    if (nco > 1) r += ldg, _mm512_storeu_ps(r, a10), _mm512_storeu_ps(r + 16, a11);
    if (nco > 2) r += ldg, _mm512_storeu_ps(r, a20), _mm512_storeu_ps(r + 16, a21);
    if (nco > 3) r += ldg, _mm512_storeu_ps(r, a30), _mm512_storeu_ps(r + 16, a31);
}

static int avx512_supported(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f");
    }
    return cached;
}

/* Positions p0 .. N-1 (fewer than a tile) in scalar code, same summation order. */
static void direct_tail(const float *pad, size_t ldb, const size_t *off, int taps, int cin,
                        const float *wp, size_t p0, size_t N, float *g, size_t ldg, int nco) {
    for (size_t p = p0; p < N; p++) {
        float acc[DC_COB] = {0};
        const float *wk = wp;
        for (int t = 0; t < taps; t++)
            for (int ci = 0; ci < cin; ci++, wk += DC_COB) {
                const float v = pad[(size_t)ci * ldb + off[t] + p];
                for (int j = 0; j < DC_COB; j++) acc[j] += wk[j] * v;
            }
        for (int j = 0; j < nco; j++) g[(size_t)j * ldg + p] = acc[j];
    }
}

/* conv_taps without im2col; wp = direct_pack(w) (in the col scratch). */
static void conv_direct(const float *pad, int cin, int Tin, int H, int W, int kt, const float *wp,
                        int cout, int T, float *g) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, ldb = (size_t)Tin * P;
    const size_t N = grid_positions(T, H, W), K = (size_t)kt * 9 * (size_t)cin;
    const int wide = avx512_supported(), tile = wide ? 2 * DC_NB : DC_NB;
    const size_t ldg = (size_t)T * P, tiles = N / (size_t)tile;
    const int taps = kt * 9, nb = (cout + DC_COB - 1) / DC_COB;
    size_t off[27];
    for (int t = 0; t < taps; t++)
        off[t] = (size_t)(t / 9) * P + (size_t)(t / 3 % 3) * Wp + (size_t)(t % 3);
    const long work = (long)tiles * nb;
#pragma omp parallel for schedule(static) if ((size_t)cout * K * N >= 64 * VAE_PAR_MIN)
    for (long i = 0; i < work; i++) {
        /* channel blocks inside: a tile's K input rows stay in cache across them */
        const size_t p = (size_t)(i / nb) * (size_t)tile;
        const int cb = (int)(i % nb),
                  nco = cout - cb * DC_COB < DC_COB ? cout - cb * DC_COB : DC_COB;
        const float *w = wp + (size_t)cb * K * DC_COB;
        float *gc = g + (size_t)cb * DC_COB * ldg;
        if (wide)
            direct_tile32(pad, ldb, off, taps, cin, w, p, gc, ldg, nco);
        else
            direct_tile(pad, ldb, off, taps, cin, w, p, gc, ldg, nco);
    }
    size_t p = tiles * (size_t)tile; /* the rest: 16-wide tiles, then scalar */
    for (int cb = 0; cb < nb; cb++) {
        const int nco = cout - cb * DC_COB < DC_COB ? cout - cb * DC_COB : DC_COB;
        const float *w = wp + (size_t)cb * K * DC_COB;
        float *gc = g + (size_t)cb * DC_COB * ldg;
        size_t q = p;
        for (; q + DC_NB <= N; q += DC_NB)
            direct_tile(pad, ldb, off, taps, cin, w, q, gc, ldg, nco);
        direct_tail(pad, ldb, off, taps, cin, w, q, N, gc, ldg, nco);
    }
}
#else
#define VAE_HAVE_DIRECT 0
#endif

/* Whether a padded-grid conv with cout outputs takes the direct kernel. */
static int use_direct(int cout) {
    return cout <= VAE_DIRECT_MAX_COUT && simd_supported();
}

/* The padded-grid conv: direct kernel or im2col + GEMM. col: the COL scratch. */
static void conv_grid(const float *pad, int cin, int Tin, int H, int W, int kt, const float *w,
                      int cout, int T, float *g, float *col) {
#if VAE_HAVE_DIRECT
    if (use_direct(cout)) {
        direct_pack(w, cout, (size_t)kt * 9 * (size_t)cin, col);
        conv_direct(pad, cin, Tin, H, W, kt, col, cout, T, g);
        return;
    }
#endif
    conv_taps(pad, cin, Tin, H, W, kt, w, cout, T, g, col);
}

/* Declares the scratch of a padded-grid conv. */
static int conv_require(vae_ws *ws, int cin, int Tin, int H, int W, int kt, int cout, int T,
                        char *err, size_t errlen) {
    const size_t P = ((size_t)H + 2) * ((size_t)W + 2), K = (size_t)kt * 9 * (size_t)cin;
    int rc = vae_ws_require(ws, VAE_WS_PAD, (size_t)cin * (size_t)Tin * P, err, errlen);
    if (!rc) rc = vae_ws_require(ws, VAE_WS_GOUT, (size_t)cout * (size_t)T * P, err, errlen);
    /* the direct kernel keeps its packed weights there: K x Cout rounded up to 4 */
    size_t col = K * col_block(K, grid_positions(T, H, W)), packed = K * ((size_t)cout + 3);
    if (!rc) rc = vae_ws_require(ws, VAE_WS_COL, col > packed ? col : packed, err, errlen);
    return rc;
}

/* y[Cout][T][H][W] = g (valid positions) + b (+ res, which may alias y). */
static void unpack(const float *g, int cout, int T, int H, int W, const float *b, const float *res,
                   float *y) {
    const size_t Wp = (size_t)W + 2, P = ((size_t)H + 2) * Wp, HW = (size_t)H * (size_t)W;
#pragma omp parallel for schedule(static) if ((size_t)cout * (size_t)T * HW >= VAE_PAR_MIN)
    for (long ct = 0; ct < (long)cout * T; ct++) {
        const float *gs = g + (size_t)ct * P;
        const float bias = b ? b[ct / T] : 0.0f;
        float *d = y + (size_t)ct * HW;
        const float *r = res ? res + (size_t)ct * HW : NULL;
        for (int yy = 0; yy < H; yy++)
            for (int xx = 0; xx < W; xx++) {
                size_t i = (size_t)yy * (size_t)W + (size_t)xx;
                float v = gs[(size_t)yy * Wp + (size_t)xx] + bias;
                d[i] = r ? v + r[i] : v;
            }
    }
}

int vae_conv3d(vae_ws *ws, const float *x, vae_prep prep, const float *gamma, int cin, int T, int H,
               int W, vae_slot *slot, const float *w, const float *b, int cout, const float *res,
               float *y, char *err, size_t errlen) {
    const int Tin = T + 2;
    int rc = check_slot(slot, cin, 2, H, W, err, errlen);
    if (!rc) rc = conv_require(ws, cin, Tin, H, W, 3, cout, T, err, errlen);
    if (rc || ws->dry) return rc;
    float *pad = ws->buf[VAE_WS_PAD], *g = ws->buf[VAE_WS_GOUT];
    load_history(pad, Tin, slot, cin, H, W);
    int norm = prep == VAE_PREP_NORM_SILU;
    prep_frames(pad, Tin, 2, x, cin, T, H, W, norm ? gamma : NULL, norm);
    conv_grid(pad, cin, Tin, H, W, 3, w, cout, T, g, ws->buf[VAE_WS_COL]);
    if (slot) save_history(pad, Tin, slot, cin, H, W);
    unpack(g, cout, T, H, W, b, res, y);
    return 0;
}

/* ---- residual and attention blocks ----------------------------------------------------------- */

int vae_resblock(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, vae_slot *sa,
                 vae_slot *sb, float *tmp, float *sc, float *y, char *err, size_t errlen) {
    const float *h = x;
    if (it->cin != it->cout) {
        if (!ws->dry)
            vae_conv1x1(x, it->cin, (size_t)T * (size_t)H * (size_t)W, it->sc_w, it->sc_b, it->cout,
                        sc);
        h = sc;
    }
    /* the slots hold each conv's input, i.e. the activation after norm and SiLU (2.1) */
    int rc = vae_conv3d(ws, x, VAE_PREP_NORM_SILU, it->g1, it->cin, T, H, W, sa, it->w1, it->b1,
                        it->cout, NULL, tmp, err, errlen);
    if (rc) return rc;
    return vae_conv3d(ws, tmp, VAE_PREP_NORM_SILU, it->g2, it->cout, T, H, W, sb, it->w2, it->b2,
                      it->cout, h, y, err, errlen);
}

static void softmax_rows(float *s, int rows, int n) {
#pragma omp parallel for schedule(static) if ((size_t)rows * (size_t)n >= VAE_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *row = s + (size_t)r * (size_t)n, mx = -INFINITY;
        for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < n; j++) sum += (row[j] = expf(row[j] - mx));
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++) row[j] *= inv;
    }
}

int vae_attention(vae_ws *ws, const vae_item *it, float *x, int T, int H, int W, char *err,
                  size_t errlen) {
    const int C = it->cin, N = H * W;
    const size_t CN = (size_t)C * (size_t)N;
    int rc = vae_ws_require(ws, VAE_WS_AUX, 4 * CN, err, errlen);
    if (!rc) rc = vae_ws_require(ws, VAE_WS_ATT, (size_t)N * (size_t)N, err, errlen);
    if (rc || ws->dry) return rc;
    float *qkv = ws->buf[VAE_WS_AUX], *u = qkv + 3 * CN, *s = ws->buf[VAE_WS_ATT];
    const float *q = qkv, *k = qkv + CN, *v = qkv + 2 * CN;
    const size_t cs = (size_t)T * (size_t)N; /* channel stride of x */
    for (int t = 0; t < T; t++) {
        float *xt = x + (size_t)t * (size_t)N;
        for (int j0 = 0; j0 < N; j0 += VAE_NORM_CHUNK) {
            int n = N - j0 < VAE_NORM_CHUNK ? N - j0 : VAE_NORM_CHUNK;
            norm_chunk(xt + j0, cs, u + j0, (size_t)N, C, n, it->g, 0);
        }
        vae_conv1x1(u, C, (size_t)N, it->qkv_w, it->qkv_b, 3 * C, qkv);
        /* s[n][m] = q_n . k_m / sqrt(C): tokens are columns of the [C][N] slices */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, N, C,
                    (float)(1.0 / sqrt((double)C)), q, N, k, N, 0.0f, s, N);
        softmax_rows(s, N, N);
        /* o[c][n] = sum_m v[c][m] s[n][m], into u (no longer needed) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, N, N, 1.0f, v, N, s, N, 0.0f, u, N);
        vae_conv1x1(u, C, (size_t)N, it->proj_w, it->proj_b, C, qkv);
#pragma omp parallel for schedule(static) if (CN >= VAE_PAR_MIN)
        for (int c = 0; c < C; c++)
            for (int j = 0; j < N; j++)
                xt[(size_t)c * cs + (size_t)j] += qkv[(size_t)c * (size_t)N + (size_t)j];
    }
    return 0;
}

/* ---- resamplers ------------------------------------------------------------------------------ */

/* tin[C][2 + n][HW] = slot frames (nframes of them at the front) ++ x frames f0 .. f0+n-1. */
static void stack_history(float *tin, const vae_slot *s, int hist, const float *x, int T, int f0,
                          int n, int C, size_t HW) {
    const size_t fr = (size_t)(hist + n);
#pragma omp parallel for schedule(static) if ((size_t)C * fr * HW >= VAE_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *d = tin + (size_t)c * fr * HW;
        memcpy(d, s->d + (size_t)c * (size_t)hist * HW, (size_t)hist * HW * sizeof(float));
        memcpy(d + (size_t)hist * HW, x + ((size_t)c * (size_t)T + (size_t)f0) * HW,
               (size_t)n * HW * sizeof(float));
    }
}

/* slot (`keep` frames) = frames fr-keep .. fr-1 of tin [C][fr][HW]. */
static void keep_history(vae_slot *s, int keep, const float *tin, int fr, int C, size_t HW) {
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)keep * HW >= VAE_PAR_MIN)
    for (int c = 0; c < C; c++)
        memcpy(s->d + (size_t)c * (size_t)keep * HW,
               tin + ((size_t)c * (size_t)fr + (size_t)(fr - keep)) * HW,
               (size_t)keep * HW * sizeof(float));
}

int vae_time_up(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, int first,
                vae_slot *slot, float *y, char *err, size_t errlen) {
    const int C = it->cin, Tp = T - (first ? 1 : 0), f0 = first ? 1 : 0;
    const size_t HW = (size_t)H * (size_t)W;
    if (Tp < 0 || !slot) return eng_errorf(err, errlen, ENG_EINVAL, "vae_time_up: bad arguments");
    int rc = check_slot(slot, C, 2, H, W, err, errlen);
    if (!rc) rc = vae_ws_require(ws, VAE_WS_PAD, (size_t)C * (size_t)(Tp + 2) * HW, err, errlen);
    if (!rc) rc = vae_ws_require(ws, VAE_WS_GOUT, 2 * (size_t)C * (size_t)Tp * HW, err, errlen);
    if (rc || ws->dry) return rc;
    float *tin = ws->buf[VAE_WS_PAD], *g = ws->buf[VAE_WS_GOUT];
    const int Tout = f0 + 2 * Tp;
    if (Tp > 0) {
        stack_history(tin, slot, 2, x, T, f0, Tp, C, HW);
        for (int kt = 0; kt < 3; kt++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2 * C, (int)((size_t)Tp * HW), C,
                        1.0f, it->tc_w + (size_t)kt * (size_t)C, 3 * C, tin + (size_t)kt * HW,
                        (int)((size_t)(Tp + 2) * HW), kt ? 1.0f : 0.0f, g, (int)((size_t)Tp * HW));
        keep_history(slot, 2, tin, Tp + 2, C, HW);
    }
    /* output frame f0 + 2j + phase <- channels [phase*C, phase*C + C) at step j (pitfall 9) */
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)Tout * HW >= VAE_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float *d = y + (size_t)c * (size_t)Tout * HW;
        if (first) memcpy(d, x + (size_t)c * (size_t)T * HW, HW * sizeof(float));
        for (int j = 0; j < Tp; j++)
            for (int ph = 0; ph < 2; ph++) {
                const size_t ch = (size_t)ph * (size_t)C + (size_t)c;
                const float *gs = g + (ch * (size_t)Tp + (size_t)j) * HW;
                float *o = d + (size_t)(f0 + 2 * j + ph) * HW;
                for (size_t i = 0; i < HW; i++) o[i] = gs[i] + it->tc_b[ch];
            }
    }
    return 0;
}

int vae_up_conv(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, float *y,
                char *err, size_t errlen) {
    const int C = it->cin, H2 = 2 * H, W2 = 2 * W;
    const size_t Wp = (size_t)W2 + 2, P = ((size_t)H2 + 2) * Wp, HW = (size_t)H * (size_t)W;
    int rc = conv_require(ws, C, T, H2, W2, 1, it->cout, T, err, errlen);
    if (rc || ws->dry) return rc;
    float *pad = ws->buf[VAE_WS_PAD];
    /* nearest x2 straight into the padded grid: out[y][x] = in[y/2][x/2] */
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)T * P >= VAE_PAR_MIN)
    for (long ct = 0; ct < (long)C * T; ct++) {
        float *pl = pad + (size_t)ct * P;
        const float *src = x + (size_t)ct * HW;
        memset(pl, 0, Wp * sizeof(float));
        memset(pl + ((size_t)H2 + 1) * Wp, 0, Wp * sizeof(float));
        for (int r = 0; r < H2; r++) {
            float *row = pl + ((size_t)r + 1) * Wp;
            const float *s = src + (size_t)(r / 2) * (size_t)W;
            row[0] = row[Wp - 1] = 0.0f;
            for (int q = 0; q < W2; q++) row[q + 1] = s[q / 2];
        }
    }
    conv_grid(pad, C, T, H2, W2, 1, it->rs_w, it->cout, T, ws->buf[VAE_WS_GOUT],
              ws->buf[VAE_WS_COL]);
    unpack(ws->buf[VAE_WS_GOUT], it->cout, T, H2, W2, it->rs_b, NULL, y);
    return 0;
}

int vae_down_conv(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, float *y,
                  char *err, size_t errlen) {
    if (H < 2 || W < 2)
        return eng_errorf(err, errlen, ENG_EINVAL, "VAE downsample of a %dx%d frame", H, W);
    const int C = it->cin, Co = it->cout, Ho = (H - 2) / 2 + 1, Wo = (W - 2) / 2 + 1;
    const size_t n = (size_t)T * (size_t)Ho * (size_t)Wo, HW = (size_t)H * (size_t)W;
    int rc = vae_ws_require(ws, VAE_WS_AUX, (size_t)C * n, err, errlen);
    if (rc || ws->dry) return rc;
    float *col = ws->buf[VAE_WS_AUX];
    for (int tap = 0; tap < 9; tap++) {
        const int dy = tap / 3, dx = tap % 3;
        /* zero padding only on the right and bottom: rows/cols past the end read 0 (2.4) */
#pragma omp parallel for schedule(static) if ((size_t)C * n >= VAE_PAR_MIN)
        for (long ct = 0; ct < (long)C * T; ct++) {
            const float *src = x + (size_t)ct * HW;
            float *d = col + (size_t)ct * (size_t)Ho * (size_t)Wo;
            for (int yo = 0; yo < Ho; yo++)
                for (int xo = 0; xo < Wo; xo++) {
                    int yy = 2 * yo + dy, xx = 2 * xo + dx;
                    d[(size_t)yo * (size_t)Wo + (size_t)xo] =
                        yy < H && xx < W ? src[(size_t)yy * (size_t)W + (size_t)xx] : 0.0f;
                }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)n, C, 1.0f,
                    it->rs_w + (size_t)tap * (size_t)C, 9 * C, col, (int)n, tap ? 1.0f : 0.0f, y,
                    (int)n);
    }
#pragma omp parallel for schedule(static) if ((size_t)Co * n >= VAE_PAR_MIN)
    for (int o = 0; o < Co; o++)
        for (size_t i = 0; i < n; i++) y[(size_t)o * n + i] += it->rs_b[o];
    return 0;
}

int vae_time_down(vae_ws *ws, const vae_item *it, const float *x, int T, int H, int W, int first,
                  vae_slot *slot, float *y, char *err, size_t errlen) {
    const int C = it->cin;
    const size_t HW = (size_t)H * (size_t)W;
    if (!slot || T < 1 || (!first && T % 2))
        return eng_errorf(err, errlen, ENG_EINVAL,
                          "VAE downsample3d: %d frames (later chunks need an even count)", T);
    int rc = check_slot(slot, C, 1, H, W, err, errlen);
    if (!rc && !first)
        rc = vae_ws_require(ws, VAE_WS_PAD, (size_t)C * (size_t)(T + 1) * HW, err, errlen);
    if (rc || ws->dry) return rc;
    if (first) { /* frame 0 passes through; it becomes the history of the next chunk (pitfall 8) */
        if (y != x) memcpy(y, x, (size_t)C * (size_t)T * HW * sizeof(float));
        for (int c = 0; c < C; c++)
            memcpy(slot->d + (size_t)c * HW, x + ((size_t)c * (size_t)T + (size_t)T - 1) * HW,
                   HW * sizeof(float));
        return 0;
    }
    float *tin = ws->buf[VAE_WS_PAD];
    const int J = T / 2;
    stack_history(tin, slot, 1, x, T, 0, T, C, HW);
    keep_history(slot, 1, tin, T + 1, C, HW);
    for (int j = 0; j < J; j++)
        for (int kt = 0; kt < 3; kt++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int)HW, C, 1.0f,
                        it->tc_w + (size_t)kt * (size_t)C, 3 * C, tin + (size_t)(2 * j + kt) * HW,
                        (int)((size_t)(T + 1) * HW), kt ? 1.0f : 0.0f, y + (size_t)j * HW,
                        (int)((size_t)J * HW));
#pragma omp parallel for schedule(static) if ((size_t)C * (size_t)J * HW >= VAE_PAR_MIN)
    for (int c = 0; c < C; c++)
        for (size_t i = 0; i < (size_t)J * HW; i++)
            y[(size_t)c * (size_t)J * HW + i] += it->tc_b[c];
    return 0;
}
