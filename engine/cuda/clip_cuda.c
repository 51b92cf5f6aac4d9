/* The CLIP visual tower on the GPU (clip_cuda.h), in the order of the CPU reference engine/clip.c:
 * the weight upload, then one encode (host preprocessing and im2col, patch embedding, pre-norm,
 * the blocks). The math lives in gemm.h, dit_kernels.h and clip_kernels.h; this file orders the
 * launches on one stream. */
#include "engine/cuda/clip_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_check.h" /* before the other CUDA headers: WMCUDA_EINVAL */

#include "engine/cuda/bf16.h"
#include "engine/cuda/clip_kernels.h"
#include "engine/cuda/dit_kernels.h"
#include "engine/cuda/gemm.h"

typedef wmcuda_bf16 bf16;

#define CLIP_LN_EPS 1e-5f
#define STAGING     ((size_t)1 << 22) /* floats converted to bf16 per upload step */

typedef struct dev_block {
    bf16 *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    bf16 *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} dev_block;

struct wmcuda_clip {
    clip_config cfg;
    int S, p, g, P, T, W, M, H, dh, K, kpad, lds;
    bf16 *warena;  /* every bf16 parameter */
    float *farena; /* cls [W], pos [T][W], pre-norm gain and bias [W]: fp32 */
    bf16 *patch_w; /* [W][kpad], zero columns past K */
    float *cls, *pos, *pre_w, *pre_b;
    dev_block *blocks;
    /* activations of one image */
    bf16 *patches; /* [P][kpad] */
    float *x;      /* [T][W] residual stream */
    bf16 *h, *qkv, *att, *mlp;
    float *scores; /* [H][T][lds] */
    bf16 *probs;   /* [H][T][lds] */
    /* host scratch */
    float *pix;         /* [3][S][S] preprocessed image */
    bf16 *patches_host; /* [P][kpad] */
    wmcuda_gemm *gemm;
    cudaStream_t stream;
    int own_stream;
    size_t device_bytes;
    char err[512];
};

/* ---- errors (as dit_cuda.c) ------------------------------------------------------------------ */

static int fail(wmcuda_clip *m, int rc, int line, const char *call) {
    wmcuda_failure_text(m->err, sizeof m->err, "clip_cuda.c", line, call, rc,
                        m->gemm ? wmcuda_gemm_last_error(m->gemm) : NULL);
    return rc;
}

static int failf(wmcuda_clip *m, int rc, const char *msg) {
    snprintf(m->err, sizeof m->err, "%s", msg);
    return rc;
}

static int report(const wmcuda_clip *m, int rc, char *err, size_t errlen) {
    if (rc && err && errlen) snprintf(err, errlen, "%s", m->err);
    return rc;
}

#define TRY(call) WMCUDA_TRY_WITH(fail, m, call)
#define CK(call)  WMCUDA_CK_WITH(fail, m, call)

/* ---- weight upload --------------------------------------------------------------------------- */

/* Tensors placed in two passes: pass 0 counts (bf16 elements, each tensor starting 16-byte
 * aligned), pass 1 converts on the host (round to nearest even, as __float2bfloat16_rn) and
 * copies. The patch weight [W][3][p][p] becomes [W][kpad] with zero columns. */
typedef struct placer {
    wmcuda_clip *m;
    const clip_weights *w;
    int pass;
    size_t used;
    bf16 *staging; /* STAGING elements, host */
    int rc;
    char missing[96];
} placer;

static size_t round8(size_t n) {
    return (n + 7) / 8 * 8;
}

/* rows x cols of host values into rows x ld of the device (ld >= cols, extra columns zero). */
static bf16 *place_rows(placer *pl, const float *src, size_t rows, size_t cols, size_t ld) {
    const size_t n = round8(rows * ld);
    bf16 *dst = pl->pass == 0 ? NULL : pl->m->warena + pl->used;
    pl->used += n;
    if (pl->pass == 0 || pl->rc) return dst;
    if (ld > STAGING) {
        pl->rc = failf(pl->m, WMCUDA_EINVAL, "CLIP weight rows longer than the upload staging");
        return dst;
    }
    const size_t per = STAGING / ld; /* whole rows per step */
    for (size_t r0 = 0; r0 < rows && !pl->rc; r0 += per) {
        const size_t nr = rows - r0 < per ? rows - r0 : per;
        for (size_t r = 0; r < nr; r++)
            for (size_t c = 0; c < ld; c++)
                pl->staging[r * ld + c] =
                    c < cols ? wm_bf16_from_float(src[(r0 + r) * cols + c]) : 0;
        const cudaError_t e =
            cudaMemcpy(dst + r0 * ld, pl->staging, nr * ld * sizeof(bf16), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) pl->rc = fail(pl->m, -(int)e, __LINE__, "cudaMemcpy(weights)");
    }
    return dst;
}

static const float *lookup(placer *pl, const char *name, size_t want) {
    size_t n = 0;
    const float *src = clip_weights_tensor(pl->w, name, &n);
    if ((!src || n != want) && !pl->missing[0])
        snprintf(pl->missing, sizeof pl->missing, "%s", name);
    return src && n == want ? src : NULL;
}

static bf16 *place(placer *pl, const char *name, size_t rows, size_t cols) {
    const float *src = lookup(pl, name, rows * cols);
    if (!src) return NULL;
    return place_rows(pl, src, rows, cols, cols);
}

static void place_all(placer *pl) {
    wmcuda_clip *m = pl->m;
    const size_t W = (size_t)m->W, M = (size_t)m->M;
    const float *pw = lookup(pl, "visual.patch_embedding.weight", W * (size_t)m->K);
    if (pw) m->patch_w = place_rows(pl, pw, W, (size_t)m->K, (size_t)m->kpad);
    char name[96];
    for (int i = 0; i < m->cfg.layers_used; i++) {
        dev_block *b = &m->blocks[i];
#define PLACE(field, leaf, rows, cols)                                                             \
    (snprintf(name, sizeof name, "visual.transformer.%d.%s", i, leaf),                             \
     b->field = place(pl, name, rows, cols))
        PLACE(ln1_w, "norm1.weight", 1, W);
        PLACE(ln1_b, "norm1.bias", 1, W);
        PLACE(qkv_w, "attn.to_qkv.weight", 3 * W, W);
        PLACE(qkv_b, "attn.to_qkv.bias", 1, 3 * W);
        PLACE(proj_w, "attn.proj.weight", W, W);
        PLACE(proj_b, "attn.proj.bias", 1, W);
        PLACE(ln2_w, "norm2.weight", 1, W);
        PLACE(ln2_b, "norm2.bias", 1, W);
        PLACE(fc1_w, "mlp.0.weight", M, W);
        PLACE(fc1_b, "mlp.0.bias", 1, M);
        PLACE(fc2_w, "mlp.2.weight", W, M);
        PLACE(fc2_b, "mlp.2.bias", 1, W);
#undef PLACE
    }
}

/* cls, pos, pre-norm gain and bias: fp32, back to back ([W], [T][W], [W], [W]). */
static int upload_f32(wmcuda_clip *m, const clip_weights *w) {
    const size_t W = (size_t)m->W, T = (size_t)m->T;
    static const char *const names[4] = {"visual.cls_embedding", "visual.pos_embedding",
                                         "visual.pre_norm.weight", "visual.pre_norm.bias"};
    const size_t sizes[4] = {W, T * W, W, W};
    float **dst[4] = {&m->cls, &m->pos, &m->pre_w, &m->pre_b};
    CK(cudaMalloc((void **)&m->farena, (T + 3) * W * sizeof(float)));
    m->device_bytes += (T + 3) * W * sizeof(float);
    float *cursor = m->farena;
    for (int i = 0; i < 4; i++) {
        size_t n = 0;
        const float *src = clip_weights_tensor(w, names[i], &n);
        if (!src || n != sizes[i]) {
            char msg[160];
            snprintf(msg, sizeof msg, "CLIP weights lack '%s' of %zu values", names[i], sizes[i]);
            return failf(m, WMCUDA_EINVAL, msg);
        }
        *dst[i] = cursor;
        CK(cudaMemcpy(cursor, src, n * sizeof(float), cudaMemcpyHostToDevice));
        cursor += n;
    }
    return 0;
}

static int upload_weights(wmcuda_clip *m, const clip_weights *w) {
    placer pl = {.m = m, .w = w};
    place_all(&pl); /* pass 0: sizes only */
    if (pl.missing[0]) {
        char msg[160];
        snprintf(msg, sizeof msg, "CLIP weights lack '%s' (or it has another size)", pl.missing);
        return failf(m, WMCUDA_EINVAL, msg);
    }
    const size_t total = pl.used;
    CK(cudaMalloc((void **)&m->warena, total * sizeof(bf16)));
    m->device_bytes += total * sizeof(bf16);
    pl.staging = malloc(STAGING * sizeof(bf16));
    if (!pl.staging) return failf(m, -(int)cudaErrorMemoryAllocation, "out of host memory");
    pl.pass = 1, pl.used = 0;
    place_all(&pl);
    free(pl.staging);
    if (pl.rc) return pl.rc;
    return upload_f32(m, w);
}

/* ---- create / destroy ------------------------------------------------------------------------ */

static int alloc_dev(wmcuda_clip *m, void **p, size_t bytes) {
    CK(cudaMalloc(p, bytes));
    m->device_bytes += bytes;
    return 0;
}

static int model_init(wmcuda_clip *m, const clip_weights *w, void *stream) {
    const clip_config *c = &m->cfg;
    m->S = c->image_size, m->p = c->patch, m->g = m->S / m->p, m->P = m->g * m->g;
    m->T = clip_tokens(c), m->W = c->width, m->M = c->mlp, m->H = c->heads;
    m->dh = m->W / m->H, m->K = 3 * m->p * m->p, m->kpad = (m->K + 7) / 8 * 8;
    m->lds = (m->T + 7) / 8 * 8;
    if (m->W % 8 || m->M % 8 || m->dh % 8 || m->P + 1 != m->T) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "CLIP config not supported on the GPU: width %d, mlp %d and head dim %d must be "
                 "multiples of 8",
                 m->W, m->M, m->dh);
        return failf(m, WMCUDA_EINVAL, msg);
    }
    m->blocks = calloc((size_t)c->layers_used, sizeof *m->blocks);
    m->pix = malloc(3 * (size_t)m->S * (size_t)m->S * sizeof(float));
    m->patches_host = malloc((size_t)m->P * (size_t)m->kpad * sizeof(bf16));
    if (!m->blocks || !m->pix || !m->patches_host)
        return failf(m, -(int)cudaErrorMemoryAllocation, "out of host memory");
    if (stream) {
        m->stream = (cudaStream_t)stream;
    } else {
        CK(cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking));
        m->own_stream = 1;
    }
    TRY(wmcuda_gemm_create(&m->gemm, 0, m->err, sizeof m->err));
    m->device_bytes += WMCUDA_GEMM_WORKSPACE;
    TRY(upload_weights(m, w));
    const size_t T = (size_t)m->T, W = (size_t)m->W, HL = (size_t)m->H * T * (size_t)m->lds;
    TRY(alloc_dev(m, (void **)&m->patches, (size_t)m->P * (size_t)m->kpad * sizeof(bf16)));
    TRY(alloc_dev(m, (void **)&m->x, T * W * sizeof(float)));
    TRY(alloc_dev(m, (void **)&m->h, T * W * sizeof(bf16)));
    TRY(alloc_dev(m, (void **)&m->qkv, T * 3 * W * sizeof(bf16)));
    TRY(alloc_dev(m, (void **)&m->att, T * W * sizeof(bf16)));
    TRY(alloc_dev(m, (void **)&m->mlp, T * (size_t)m->M * sizeof(bf16)));
    TRY(alloc_dev(m, (void **)&m->scores, HL * sizeof(float)));
    TRY(alloc_dev(m, (void **)&m->probs, HL * sizeof(bf16)));
    CK(cudaDeviceSynchronize());
    return 0;
}

int wmcuda_clip_create(const clip_weights *w, void *stream, wmcuda_clip **out, char *err,
                       size_t errlen) {
    if (!out || !w) {
        if (err && errlen) snprintf(err, errlen, "wmcuda_clip_create: NULL argument");
        return WMCUDA_EINVAL;
    }
    *out = NULL;
    wmcuda_clip *m = calloc(1, sizeof *m);
    if (!m) {
        if (err && errlen) snprintf(err, errlen, "wmcuda_clip_create: out of host memory");
        return -(int)cudaErrorMemoryAllocation;
    }
    m->cfg = *clip_weights_config(w);
    const int rc = model_init(m, w, stream);
    if (rc) {
        report(m, rc, err, errlen);
        wmcuda_clip_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

void wmcuda_clip_destroy(wmcuda_clip *m) {
    if (!m) return;
    if (m->stream) cudaStreamSynchronize(m->stream);
    void *dev[] = {m->warena, m->farena, m->patches, m->x,      m->h,
                   m->qkv,    m->att,    m->mlp,     m->scores, m->probs};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) cudaFree(dev[i]);
    wmcuda_gemm_destroy(m->gemm);
    if (m->own_stream) cudaStreamDestroy(m->stream);
    free(m->blocks), free(m->pix), free(m->patches_host);
    free(m);
}

size_t wmcuda_clip_device_bytes(const wmcuda_clip *m) {
    return m->device_bytes;
}
const clip_config *wmcuda_clip_config(const wmcuda_clip *m) {
    return &m->cfg;
}

/* ---- encode ---------------------------------------------------------------------------------- */

/* Patch q's pixels in the conv weight's order [3][p][p] (clip.c embed), as bf16, K..kpad zero. */
static void im2col_host(wmcuda_clip *m) {
    const int S = m->S, p = m->p, g = m->g, kpad = m->kpad;
    for (int q = 0; q < m->P; q++) {
        bf16 *row = m->patches_host + (size_t)q * (size_t)kpad;
        const int y0 = (q / g) * p, x0 = (q % g) * p;
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < p; ky++) {
                const float *src = m->pix + ((size_t)ch * S + (size_t)(y0 + ky)) * S + (size_t)x0;
                for (int kx = 0; kx < p; kx++)
                    row[(ch * p + ky) * p + kx] = wm_bf16_from_float(src[kx]);
            }
        for (int k = m->K; k < kpad; k++) row[k] = 0;
    }
}

static int linear(wmcuda_clip *m, const bf16 *x, int M, int K, const bf16 *W, const bf16 *b, int N,
                  bf16 *y) {
    return wmcuda_linear(m->gemm, x, K, M, K, W, b, N, y, N, WMCUDA_EPI_NONE, m->stream);
}

/* x = x + proj(Attn(LN1(x))); x = x + fc2(GELU_erf(fc1(LN2(x)))). */
static int run_block(wmcuda_clip *m, const dev_block *b) {
    const int T = m->T, W = m->W, H = m->H, dh = m->dh;
    const float scale = (float)(1.0 / sqrt((double)dh));
    TRY(wmcuda_layernorm_f32in(m->x, m->h, T, W, CLIP_LN_EPS, b->ln1_w, b->ln1_b, m->stream));
    TRY(linear(m, m->h, T, W, b->qkv_w, b->qkv_b, 3 * W, m->qkv));
    /* rows of qkv are [q | k | v], each H heads of dh */
    TRY(wmcuda_attn_scores(m->gemm, m->qkv, 3 * W, T, m->qkv + W, 3 * W, T, H, dh, scale, m->scores,
                           m->lds, m->stream));
    TRY(wmcuda_softmax_rows(m->scores, m->lds, m->probs, m->lds, H * T, T, T, NULL, 1, T, T,
                            m->stream));
    TRY(wmcuda_attn_pv(m->gemm, m->probs, m->lds, T, T, m->qkv + 2 * W, 3 * W, H, dh, m->att, W,
                       m->stream));
    TRY(linear(m, m->att, T, W, b->proj_w, b->proj_b, W, m->h));
    TRY(wmcuda_residual_add(m->x, m->h, (size_t)T * W, m->stream));
    TRY(wmcuda_layernorm_f32in(m->x, m->h, T, W, CLIP_LN_EPS, b->ln2_w, b->ln2_b, m->stream));
    TRY(linear(m, m->h, T, W, b->fc1_w, b->fc1_b, m->M, m->mlp));
    TRY(wmcuda_gelu_erf_bf16(m->mlp, m->mlp, (size_t)T * m->M, m->stream));
    TRY(linear(m, m->mlp, T, m->M, b->fc2_w, b->fc2_b, W, m->h));
    TRY(wmcuda_residual_add(m->x, m->h, (size_t)T * W, m->stream));
    return 0;
}

static int encode(wmcuda_clip *m, const float *image, int height, int width, float *tokens) {
    const int T = m->T, W = m->W;
    clip_preprocess(&m->cfg, image, height, width, m->pix);
    im2col_host(m);
    CK(cudaMemcpyAsync(m->patches, m->patches_host, (size_t)m->P * m->kpad * sizeof(bf16),
                       cudaMemcpyHostToDevice, m->stream));
    /* patches -> token rows 1..P of the fp32 stream; row 0 is the class token */
    TRY(wmcuda_linear_f32(m->gemm, m->patches, m->kpad, m->P, m->kpad, m->patch_w, NULL, W,
                          m->x + W, W, WMCUDA_EPI_NONE, m->stream));
    TRY(wmcuda_clip_embed_prenorm(m->x, m->cls, m->pos, m->pre_w, m->pre_b, T, W, CLIP_LN_EPS,
                                  m->stream));
    /* stop after block layers_used - 1, no post_norm (5.3, 5.4) */
    for (int i = 0; i < m->cfg.layers_used; i++) TRY(run_block(m, &m->blocks[i]));
    CK(cudaMemcpyAsync(tokens, m->x, (size_t)T * W * sizeof(float), cudaMemcpyDeviceToHost,
                       m->stream));
    CK(cudaStreamSynchronize(m->stream));
    return 0;
}

int wmcuda_clip_encode(wmcuda_clip *m, const float *image, int height, int width, float *tokens,
                       char *err, size_t errlen) {
    if (!m || !image || !tokens || height < 1 || width < 1 || height > 16384 || width > 16384) {
        if (err && errlen)
            snprintf(err, errlen, "wmcuda_clip_encode: NULL argument or image size %dx%d invalid",
                     height, width);
        return WMCUDA_EINVAL;
    }
    return report(m, encode(m, image, height, width, tokens), err, errlen);
}
