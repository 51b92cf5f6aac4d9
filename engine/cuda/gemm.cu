/* cuBLASLt wrapper for the DiT's products (see gemm.h).
 *
 * Row-major to column-major: a row-major [R, C] matrix with row stride ld is, read column-major,
 * its transpose [C, R] with the same ld. So y = x . W^T (row-major) is computed as the
 * column-major y^T[N, M] = W[N, K] . x^T[K, M]: A = W read as the column-major K x N matrix with
 * op(A) = T, B = x read as the column-major K x M matrix with op(B) = N, D = y as N x M with
 * ld = ldy; the epilogue's bias runs along D's rows, i.e. along N, as wanted. This "TN" layout
 * is the one the Hopper kernels favour. The attention products are the same trick per head, as
 * strided batches whose batch offset is the head's column offset (dh) or a whole [lq, lk] plane.
 *
 * Floors at the full-size steady shapes (2 FLOPs per multiply-add; H100 SXM datasheet 989 TFLOP/s
 * dense bf16, 3.35 TB/s): q/k/v/o projections 2640 x 1536 x 1536: 12.5 GFLOP -> 12.6 us
 * (bytes 20.9 MB -> 6.2 us); FFN up 2640 x 1536 -> 8960: 72.7 GFLOP -> 73.5 us; FFN down the
 * same; attention scores 12 x 2640 x 5280 x 128: 42.8 GFLOP -> 43.3 us but the fp32 scores are
 * 669 MB -> 200 us (memory-bound); P.V: 42.8 GFLOP -> 43.3 us, reading P (334 MB) -> 100 us. */
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_check.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/cuda/gemm.h"

/* dit_kernels.cu: the fp32 twin of wmcuda_gelu_tanh_bf16_2d (not public). */
extern "C" int wmcuda_gelu_tanh_f32_2d(float *y, int rows, int cols, int ld, void *stream);

enum { KIND_LIN_BF16 = 1, KIND_LIN_F32 = 2, KIND_ATT_QK = 3, KIND_ATT_PV = 4 };

/* A problem as cuBLASLt sees it. Compared with memcmp: always memset before filling. */
typedef struct gemm_key {
    int32_t kind, m, n, k, batch, epi, has_bias, align;
    int64_t lda, ldb, ldd, sa, sb, sd;
} gemm_key;

typedef struct gemm_entry {
    gemm_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    size_t ws;
    int per_head; /* the batched layout was refused: one single-matrix product per batch entry */
} gemm_entry;

struct wmcuda_gemm {
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    int gelu_mode;
    int count;
    gemm_entry table[WMCUDA_GEMM_TABLE];
    char err[384];
};

typedef struct gemm_problem {
    gemm_key key;
    cudaDataType_t ta, tb, td;
    int32_t opa, opb;
    uint64_t a_rows, a_cols, b_rows, b_cols, d_rows, d_cols;
    const void *A, *B, *bias;
    void *D;
    float alpha;
} gemm_problem;

static int gemm_fail(wmcuda_gemm *g, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wmcuda gemm: %s\n", g->err);
    return rc;
}

#define LT_CHECK(g, call)                                                                          \
    do {                                                                                           \
        cublasStatus_t lt_st_ = (call);                                                            \
        if (lt_st_ != CUBLAS_STATUS_SUCCESS)                                                       \
            return gemm_fail((g), WMCUDA_EBLAS(lt_st_), "%s:%d: %s failed: %s (%s)", __FILE__,    \
                             __LINE__, #call, cublasLtGetStatusName(lt_st_),                      \
                             cublasLtGetStatusString(lt_st_));                                     \
    } while (0)

/* Largest power of two dividing v, capped at 256 (0 counts as 256). */
static int align_of(uint64_t v) {
    int a = 1;
    while (a < 256 && (v & (uint64_t)a) == 0) a <<= 1;
    return a;
}

static int min_align(const uint64_t *v, int n) {
    int a = 256;
    for (int i = 0; i < n; i++) {
        const int b = align_of(v[i]);
        if (b < a) a = b;
    }
    return a;
}

/* ---- handle -------------------------------------------------------------------------------------- */

extern "C" int wmcuda_gemm_create(wmcuda_gemm **out, size_t workspace_bytes, char *err,
                                  size_t errlen) {
    if (!out) return WMCUDA_EINVAL;
    *out = NULL;
    wmcuda_gemm *g = (wmcuda_gemm *)calloc(1, sizeof *g);
    if (!g) {
        if (err && errlen) snprintf(err, errlen, "wmcuda gemm: out of host memory");
        return -(int)cudaErrorMemoryAllocation;
    }
    g->ws_bytes = workspace_bytes ? workspace_bytes : WMCUDA_GEMM_WORKSPACE;
    g->gelu_mode = WMCUDA_GELU_FUSED;
    const cublasStatus_t st = cublasLtCreate(&g->lt);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (err && errlen)
            snprintf(err, errlen, "wmcuda gemm: cublasLtCreate failed: %s",
                     cublasLtGetStatusString(st));
        free(g);
        return WMCUDA_EBLAS(st);
    }
    const cudaError_t ce = cudaMalloc(&g->ws, g->ws_bytes);
    if (ce != cudaSuccess) {
        if (err && errlen)
            snprintf(err, errlen, "wmcuda gemm: cudaMalloc of a %zu-byte workspace failed: %s",
                     g->ws_bytes, cudaGetErrorString(ce));
        cublasLtDestroy(g->lt);
        free(g);
        return -(int)ce;
    }
    *out = g;
    return 0;
}

static void entry_release(gemm_entry *e) {
    if (e->la) cublasLtMatrixLayoutDestroy(e->la);
    if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
    if (e->ld) cublasLtMatrixLayoutDestroy(e->ld);
    if (e->op) cublasLtMatmulDescDestroy(e->op);
    memset(e, 0, sizeof *e);
}

extern "C" void wmcuda_gemm_destroy(wmcuda_gemm *g) {
    if (!g) return;
    for (int i = 0; i < g->count; i++) entry_release(&g->table[i]);
    if (g->ws) cudaFree(g->ws);
    if (g->lt) cublasLtDestroy(g->lt);
    free(g);
}

extern "C" void wmcuda_gemm_set_gelu_mode(wmcuda_gemm *g, wmcuda_gelu_mode mode) {
    if (g) g->gelu_mode = mode == WMCUDA_GELU_SEPARATE ? WMCUDA_GELU_SEPARATE : WMCUDA_GELU_FUSED;
}

extern "C" const char *wmcuda_gemm_last_error(const wmcuda_gemm *g) { return g ? g->err : ""; }

extern "C" int wmcuda_gemm_prepared_count(const wmcuda_gemm *g) { return g ? g->count : 0; }

/* ---- the table ------------------------------------------------------------------------------------ */

static int layout(wmcuda_gemm *g, cublasLtMatrixLayout_t *l, cudaDataType_t t, uint64_t rows,
                  uint64_t cols, int64_t ld, int32_t batch, int64_t stride) {
    LT_CHECK(g, cublasLtMatrixLayoutCreate(l, t, rows, cols, ld));
    if (batch > 1) {
        LT_CHECK(g, cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                     sizeof batch));
        LT_CHECK(g, cublasLtMatrixLayoutSetAttribute(
                        *l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    }
    return 0;
}

static int heuristic(wmcuda_gemm *g, gemm_entry *e, cublasLtMatmulPreference_t pref) {
    const uint64_t ws = g->ws_bytes;
    const uint32_t al = (uint32_t)e->key.align;
    LT_CHECK(g, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &ws, sizeof ws));
    LT_CHECK(g, cublasLtMatmulPreferenceSetAttribute(
                    pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    LT_CHECK(g, cublasLtMatmulPreferenceSetAttribute(
                    pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    LT_CHECK(g, cublasLtMatmulPreferenceSetAttribute(
                    pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    LT_CHECK(g, cublasLtMatmulPreferenceSetAttribute(
                    pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, e->op, e->la, e->lb, e->ld,
                                                             e->ld, pref, 1, &res, &found);
    /* NOT_SUPPORTED is how the heuristic says "nothing for this configuration" */
    if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED)
        return gemm_fail(g, WMCUDA_EBLAS(st), "cublasLtMatmulAlgoGetHeuristic failed: %s (%s)",
                         cublasLtGetStatusName(st), cublasLtGetStatusString(st));
    if (st != CUBLAS_STATUS_SUCCESS || found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
        return gemm_fail(g, WMCUDA_ENOALGO,
                         "no cuBLASLt algorithm for kind %d m %d n %d k %d batch %d epilogue %d "
                         "alignment %d",
                         e->key.kind, e->key.m, e->key.n, e->key.k, e->key.batch, e->key.epi,
                         e->key.align);
    e->algo = res.algo;
    e->ws = res.workspaceSize;
    return 0;
}

static int entry_build(wmcuda_gemm *g, gemm_entry *e, const gemm_problem *pb) {
    const gemm_key *k = &pb->key;
    LT_CHECK(g, cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    LT_CHECK(g, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &pb->opa,
                                               sizeof pb->opa));
    LT_CHECK(g, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &pb->opb,
                                               sizeof pb->opb));
    const uint32_t epi = (uint32_t)k->epi;
    LT_CHECK(g, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                               sizeof epi));
    /* the heuristic reads the bias pointer's alignment (cublasLt.h) */
    if (pb->bias)
        LT_CHECK(g, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &pb->bias, sizeof pb->bias));
    int rc = layout(g, &e->la, pb->ta, pb->a_rows, pb->a_cols, k->lda, k->batch, k->sa);
    if (!rc) rc = layout(g, &e->lb, pb->tb, pb->b_rows, pb->b_cols, k->ldb, k->batch, k->sb);
    if (!rc) rc = layout(g, &e->ld, pb->td, pb->d_rows, pb->d_cols, k->ldd, k->batch, k->sd);
    if (rc) return rc;
    cublasLtMatmulPreference_t pref = NULL;
    LT_CHECK(g, cublasLtMatmulPreferenceCreate(&pref));
    rc = heuristic(g, e, pref);
    cublasLtMatmulPreferenceDestroy(pref);
    return rc;
}

/* Same problem, and the entry's algorithm needs no more alignment than this call offers. */
static bool entry_fits(const gemm_key *have, const gemm_key *want) {
    gemm_key a = *have, b = *want;
    a.align = b.align = 0;
    return memcmp(&a, &b, sizeof a) == 0 && have->align <= want->align;
}

static int find_entry(wmcuda_gemm *g, const gemm_problem *pb, cudaStream_t stream, bool check_capture,
                      gemm_entry **out) {
    for (int i = 0; i < g->count; i++)
        if (entry_fits(&g->table[i].key, &pb->key)) {
            *out = &g->table[i];
            return 0;
        }
    if (check_capture) {
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        const cudaError_t ce = cudaStreamIsCapturing(stream, &cs);
        if (ce != cudaSuccess)
            return gemm_fail(g, -(int)ce, "cudaStreamIsCapturing failed: %s",
                             cudaGetErrorString(ce));
        if (cs != cudaStreamCaptureStatusNone)
            return gemm_fail(g, WMCUDA_ENOTPREPARED,
                             "kind %d m %d n %d k %d batch %d was not prepared before graph capture",
                             pb->key.kind, pb->key.m, pb->key.n, pb->key.k, pb->key.batch);
    }
    if (g->count >= WMCUDA_GEMM_TABLE)
        return gemm_fail(g, WMCUDA_ETABLEFULL, "more than %d distinct products", WMCUDA_GEMM_TABLE);
    gemm_entry *e = &g->table[g->count];
    memset(e, 0, sizeof *e);
    e->key = pb->key;
    int rc = entry_build(g, e, pb);
    if (rc && pb->key.batch > 1 &&
        (rc == WMCUDA_ENOALGO || rc == WMCUDA_EBLAS(CUBLAS_STATUS_INVALID_VALUE))) {
        /* Insurance for the interleaved head layouts (batch offset dh inside a row): if cuBLASLt
         * refuses them, keep the problem in the table as one matrix per head, launched `batch`
         * times. The alignment in the key already covers every head's offset. */
        fprintf(stderr, "wmcuda gemm: batched layout refused (%s); kind %d runs one product per head\n",
                g->err, pb->key.kind);
        entry_release(e);
        gemm_problem one = *pb;
        one.key.batch = 1;
        e->key = pb->key;
        rc = entry_build(g, e, &one);
        e->key = pb->key;
        e->per_head = 1;
    }
    if (rc) {
        entry_release(e);
        return rc;
    }
    g->count++;
    *out = e;
    return 0;
}

/* launch = false: only make sure the problem is in the table (the _prepare functions). */
static int gemm_exec(wmcuda_gemm *g, const gemm_problem *pb, cudaStream_t stream, bool launch) {
    gemm_entry *e = NULL;
    int rc = find_entry(g, pb, stream, launch, &e);
    if (rc || !launch) return rc;
    if (pb->bias)
        LT_CHECK(g, cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &pb->bias, sizeof pb->bias));
    const float beta = 0.0f;
    void *ws = e->ws ? g->ws : NULL;
    if (!e->per_head) {
        LT_CHECK(g, cublasLtMatmul(g->lt, e->op, &pb->alpha, pb->A, e->la, pb->B, e->lb, &beta,
                                   pb->D, e->ld, pb->D, e->ld, &e->algo, ws, e->ws, stream));
        return 0;
    }
    const size_t ea = pb->ta == CUDA_R_32F ? 4 : 2, eb = pb->tb == CUDA_R_32F ? 4 : 2;
    const size_t ed = pb->td == CUDA_R_32F ? 4 : 2;
    for (int h = 0; h < pb->key.batch; h++) {
        const char *A = (const char *)pb->A + (size_t)h * (size_t)pb->key.sa * ea;
        const char *B = (const char *)pb->B + (size_t)h * (size_t)pb->key.sb * eb;
        char *D = (char *)pb->D + (size_t)h * (size_t)pb->key.sd * ed;
        LT_CHECK(g, cublasLtMatmul(g->lt, e->op, &pb->alpha, A, e->la, B, e->lb, &beta, D, e->ld, D,
                                   e->ld, &e->algo, ws, e->ws, stream));
    }
    return 0;
}

/* ---- linear layers ------------------------------------------------------------------------------------ */

/* Fills pb for y = epi(x W^T + b); *gelu_after: apply GELU-tanh with a separate kernel. */
static int linear_problem(wmcuda_gemm *g, gemm_problem *pb, int kind, const void *x, int ldx, int M,
                          int K, const void *W, const void *bias, int N, void *y, int ldy,
                          wmcuda_epilogue epi, bool *gelu_after) {
    if (!g) return WMCUDA_EINVAL;
    if (M < 0 || K <= 0 || N <= 0 || ldx < K || ldy < N || !x || !W || !y ||
        (epi != WMCUDA_EPI_NONE && epi != WMCUDA_EPI_GELU_TANH))
        return gemm_fail(g, WMCUDA_EINVAL,
                         "linear: bad arguments M %d K %d N %d ldx %d ldy %d epilogue %d", M, K, N,
                         ldx, ldy, (int)epi);
    const size_t de = kind == KIND_LIN_F32 ? 4 : 2;
    const uint64_t al[7] = {(uint64_t)(uintptr_t)x, (uint64_t)(uintptr_t)W,
                            (uint64_t)(uintptr_t)y, (uint64_t)(uintptr_t)bias,
                            (uint64_t)K * 2,          (uint64_t)ldx * 2,
                            (uint64_t)ldy * de};
    const int align = min_align(al, 7);
    if (align < 16)
        return gemm_fail(g, WMCUDA_EINVAL,
                         "linear: pointers and row strides must be 16-byte aligned (M %d K %d N %d "
                         "ldx %d ldy %d)",
                         M, K, N, ldx, ldy);
    const bool gelu = epi == WMCUDA_EPI_GELU_TANH;
    const bool fused = gelu && g->gelu_mode == WMCUDA_GELU_FUSED;
    *gelu_after = gelu && !fused;
    memset(pb, 0, sizeof *pb);
    cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_DEFAULT;
    if (fused) e = bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
    else if (bias) e = CUBLASLT_EPILOGUE_BIAS;
    pb->key.kind = kind, pb->key.m = N, pb->key.n = M, pb->key.k = K, pb->key.batch = 1;
    pb->key.epi = (int32_t)e, pb->key.has_bias = bias != NULL, pb->key.align = align;
    pb->key.lda = K, pb->key.ldb = ldx, pb->key.ldd = ldy;
    pb->ta = CUDA_R_16BF, pb->tb = CUDA_R_16BF;
    pb->td = kind == KIND_LIN_F32 ? CUDA_R_32F : CUDA_R_16BF;
    pb->opa = CUBLAS_OP_T, pb->opb = CUBLAS_OP_N;
    pb->a_rows = (uint64_t)K, pb->a_cols = (uint64_t)N;
    pb->b_rows = (uint64_t)K, pb->b_cols = (uint64_t)M;
    pb->d_rows = (uint64_t)N, pb->d_cols = (uint64_t)M;
    pb->A = W, pb->B = x, pb->bias = bias, pb->D = y;
    pb->alpha = 1.0f;
    return 0;
}

static int linear_any(wmcuda_gemm *g, int kind, const void *x, int ldx, int M, int K, const void *W,
                      const void *bias, int N, void *y, int ldy, wmcuda_epilogue epi, void *stream,
                      bool launch) {
    gemm_problem pb;
    bool gelu_after = false;
    int rc = linear_problem(g, &pb, kind, x, ldx, M, K, W, bias, N, y, ldy, epi, &gelu_after);
    if (rc) return rc;
    if (M == 0) return 0;
    rc = gemm_exec(g, &pb, (cudaStream_t)stream, launch);
    if (rc || !launch || !gelu_after) return rc;
    return kind == KIND_LIN_F32 ? wmcuda_gelu_tanh_f32_2d((float *)y, M, N, ldy, stream)
                                : wmcuda_gelu_tanh_bf16_2d((wmcuda_bf16 *)y, M, N, ldy, stream);
}

extern "C" int wmcuda_linear(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                             const wmcuda_bf16 *W, const wmcuda_bf16 *bias, int N, wmcuda_bf16 *y,
                             int ldy, wmcuda_epilogue epi, void *stream) {
    return linear_any(g, KIND_LIN_BF16, x, ldx, M, K, W, bias, N, y, ldy, epi, stream, true);
}

extern "C" int wmcuda_linear_prepare(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                                     const wmcuda_bf16 *W, const wmcuda_bf16 *bias, int N,
                                     wmcuda_bf16 *y, int ldy, wmcuda_epilogue epi) {
    return linear_any(g, KIND_LIN_BF16, x, ldx, M, K, W, bias, N, y, ldy, epi, NULL, false);
}

extern "C" int wmcuda_linear_f32(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M, int K,
                                 const wmcuda_bf16 *W, const float *bias, int N, float *y, int ldy,
                                 wmcuda_epilogue epi, void *stream) {
    return linear_any(g, KIND_LIN_F32, x, ldx, M, K, W, bias, N, y, ldy, epi, stream, true);
}

extern "C" int wmcuda_linear_f32_prepare(wmcuda_gemm *g, const wmcuda_bf16 *x, int ldx, int M,
                                         int K, const wmcuda_bf16 *W, const float *bias, int N,
                                         float *y, int ldy, wmcuda_epilogue epi) {
    return linear_any(g, KIND_LIN_F32, x, ldx, M, K, W, bias, N, y, ldy, epi, NULL, false);
}

/* ---- attention products --------------------------------------------------------------------------------- */

/* S_h^T (column-major lk x lq) = K_h (op T of the dh x lk column-major view) . Q_h^T (dh x lq). */
static int scores_problem(wmcuda_gemm *g, gemm_problem *pb, const void *q, int ldq, int lq,
                          const void *k, int ldk, int lk, int heads, int dh, float scale, void *s,
                          int lds) {
    if (!g) return WMCUDA_EINVAL;
    if (lq < 0 || lk <= 0 || heads <= 0 || dh <= 0 || ldq < heads * dh || ldk < heads * dh ||
        lds < lk || !q || !k || !s)
        return gemm_fail(g, WMCUDA_EINVAL,
                         "attn_scores: bad arguments lq %d lk %d heads %d dh %d ldq %d ldk %d lds %d",
                         lq, lk, heads, dh, ldq, ldk, lds);
    const int64_t sd = (int64_t)lq * lds;
    const uint64_t al[7] = {(uint64_t)(uintptr_t)q, (uint64_t)(uintptr_t)k, (uint64_t)(uintptr_t)s,
                            (uint64_t)ldq * 2,       (uint64_t)ldk * 2,       (uint64_t)lds * 4,
                            (uint64_t)dh * 2};
    const int align = min_align(al, 7);
    if (align < 16)
        return gemm_fail(g, WMCUDA_EINVAL, "attn_scores: pointers, strides and dh must be 16-byte aligned");
    memset(pb, 0, sizeof *pb);
    pb->key.kind = KIND_ATT_QK, pb->key.m = lk, pb->key.n = lq, pb->key.k = dh;
    pb->key.batch = heads, pb->key.epi = (int32_t)CUBLASLT_EPILOGUE_DEFAULT, pb->key.align = align;
    pb->key.lda = ldk, pb->key.ldb = ldq, pb->key.ldd = lds;
    pb->key.sa = dh, pb->key.sb = dh, pb->key.sd = sd;
    pb->ta = CUDA_R_16BF, pb->tb = CUDA_R_16BF, pb->td = CUDA_R_32F;
    pb->opa = CUBLAS_OP_T, pb->opb = CUBLAS_OP_N;
    pb->a_rows = (uint64_t)dh, pb->a_cols = (uint64_t)lk;
    pb->b_rows = (uint64_t)dh, pb->b_cols = (uint64_t)lq;
    pb->d_rows = (uint64_t)lk, pb->d_cols = (uint64_t)lq;
    pb->A = k, pb->B = q, pb->D = s;
    pb->alpha = scale;
    return 0;
}

extern "C" int wmcuda_attn_scores(wmcuda_gemm *g, const wmcuda_bf16 *q, int ldq, int lq,
                                  const wmcuda_bf16 *k, int ldk, int lk, int heads, int dh,
                                  float scale, float *s, int lds, void *stream) {
    gemm_problem pb;
    const int rc = scores_problem(g, &pb, q, ldq, lq, k, ldk, lk, heads, dh, scale, s, lds);
    if (rc || lq == 0) return rc;
    return gemm_exec(g, &pb, (cudaStream_t)stream, true);
}

extern "C" int wmcuda_attn_scores_prepare(wmcuda_gemm *g, const wmcuda_bf16 *q, int ldq, int lq,
                                          const wmcuda_bf16 *k, int ldk, int lk, int heads, int dh,
                                          float *s, int lds) {
    gemm_problem pb;
    const int rc = scores_problem(g, &pb, q, ldq, lq, k, ldk, lk, heads, dh, 1.0f, s, lds);
    if (rc || lq == 0) return rc;
    return gemm_exec(g, &pb, NULL, false);
}

/* O_h^T (column-major dh x lq) = V_h (dh x lk view, op N) . P_h^T (lk x lq view, op N). */
static int pv_problem(wmcuda_gemm *g, gemm_problem *pb, const void *p, int ldp, int lq, int lk,
                      const void *v, int ldv, int heads, int dh, void *o, int ldo) {
    if (!g) return WMCUDA_EINVAL;
    if (lq < 0 || lk <= 0 || heads <= 0 || dh <= 0 || ldv < heads * dh || ldo < heads * dh ||
        ldp < lk || !p || !v || !o)
        return gemm_fail(g, WMCUDA_EINVAL,
                         "attn_pv: bad arguments lq %d lk %d heads %d dh %d ldp %d ldv %d ldo %d",
                         lq, lk, heads, dh, ldp, ldv, ldo);
    const int64_t sb = (int64_t)lq * ldp;
    const uint64_t al[7] = {(uint64_t)(uintptr_t)p, (uint64_t)(uintptr_t)v, (uint64_t)(uintptr_t)o,
                            (uint64_t)ldp * 2,       (uint64_t)ldv * 2,       (uint64_t)ldo * 2,
                            (uint64_t)dh * 2};
    const int align = min_align(al, 7);
    if (align < 16)
        return gemm_fail(g, WMCUDA_EINVAL, "attn_pv: pointers, strides and dh must be 16-byte aligned");
    memset(pb, 0, sizeof *pb);
    pb->key.kind = KIND_ATT_PV, pb->key.m = dh, pb->key.n = lq, pb->key.k = lk;
    pb->key.batch = heads, pb->key.epi = (int32_t)CUBLASLT_EPILOGUE_DEFAULT, pb->key.align = align;
    pb->key.lda = ldv, pb->key.ldb = ldp, pb->key.ldd = ldo;
    pb->key.sa = dh, pb->key.sb = sb, pb->key.sd = dh;
    pb->ta = CUDA_R_16BF, pb->tb = CUDA_R_16BF, pb->td = CUDA_R_16BF;
    pb->opa = CUBLAS_OP_N, pb->opb = CUBLAS_OP_N;
    pb->a_rows = (uint64_t)dh, pb->a_cols = (uint64_t)lk;
    pb->b_rows = (uint64_t)lk, pb->b_cols = (uint64_t)lq;
    pb->d_rows = (uint64_t)dh, pb->d_cols = (uint64_t)lq;
    pb->A = v, pb->B = p, pb->D = o;
    pb->alpha = 1.0f;
    return 0;
}

extern "C" int wmcuda_attn_pv(wmcuda_gemm *g, const wmcuda_bf16 *p, int ldp, int lq, int lk,
                              const wmcuda_bf16 *v, int ldv, int heads, int dh, wmcuda_bf16 *o,
                              int ldo, void *stream) {
    gemm_problem pb;
    const int rc = pv_problem(g, &pb, p, ldp, lq, lk, v, ldv, heads, dh, o, ldo);
    if (rc || lq == 0) return rc;
    return gemm_exec(g, &pb, (cudaStream_t)stream, true);
}

extern "C" int wmcuda_attn_pv_prepare(wmcuda_gemm *g, const wmcuda_bf16 *p, int ldp, int lq,
                                      int lk, const wmcuda_bf16 *v, int ldv, int heads, int dh,
                                      wmcuda_bf16 *o, int ldo) {
    gemm_problem pb;
    const int rc = pv_problem(g, &pb, p, ldp, lq, lk, v, ldv, heads, dh, o, ldo);
    if (rc || lq == 0) return rc;
    return gemm_exec(g, &pb, NULL, false);
}
