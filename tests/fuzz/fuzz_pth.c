/* libFuzzer target for the .pth reader (engine/pth.c): any byte string must either be refused
 * with a message or yield tensors whose every field is consistent with the buffer, and whose
 * float32 copy matches an element-by-element reading of the view.
 *
 * Two kinds of input, so that mutations reach the pickle machine without first having to keep a
 * zip archive consistent: an input starting with "PK" is parsed as a whole file; anything else is
 * taken as the data.pkl of an archive built here, with storages "0" (16 x F32), "1" (8 x F16)
 * and "2" (4 x BF16), the ones the bare-pickle seeds of corpus/pth/ refer to. Invariant violations
 * trap, which libFuzzer and the standalone driver both report as a crash. */
#include "engine/pth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Conversion is capped so one input cannot make a run allocate without bound (a stride-0 view
 * can describe many elements over a tiny storage). */
#define FUZZ_MAX_CONVERT (1u << 16)

static void require(int cond) {
    if (!cond) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    put16(p, v & 0xFFFF);
    put16(p + 2, v >> 16);
}

/* A minimal stored zip (no alignment, no ZIP64) around `pkl`. Returns a malloc'd buffer. */
static uint8_t *wrap(const uint8_t *pkl, size_t pkl_len, size_t *out_len) {
    static const char *const names[] = {"archive/data.pkl", "archive/data/0", "archive/data/1",
                                        "archive/data/2"};
    static const size_t sizes[] = {0, 64, 16, 8};
    enum { N = 4 };
    size_t total = 22;
    for (int i = 0; i < N; i++) total += 30 + 46 + 2 * strlen(names[i]) + (i ? sizes[i] : pkl_len);
    uint8_t *b = calloc(1, total);
    if (b == NULL) return NULL;
    size_t off[N], at = 0;
    for (int i = 0; i < N; i++) {
        size_t nl = strlen(names[i]), sz = i ? sizes[i] : pkl_len;
        off[i] = at;
        put32(b + at, 0x04034b50u);
        put16(b + at + 26, (uint32_t)nl);
        memcpy(b + at + 30, names[i], nl);
        at += 30 + nl;
        if (i == 0) {
            if (sz) memcpy(b + at, pkl, sz);
        } else {
            /* Storage bytes that are valid numbers of every type, with some NaN/inf patterns. */
            for (size_t k = 0; k < sz; k++) b[at + k] = (uint8_t)(0x3c + 29 * k + 7 * i);
        }
        at += sz;
    }
    size_t cd = at;
    for (int i = 0; i < N; i++) {
        size_t nl = strlen(names[i]), sz = i ? sizes[i] : pkl_len;
        put32(b + at, 0x02014b50u);
        put32(b + at + 20, (uint32_t)sz);
        put32(b + at + 24, (uint32_t)sz);
        put16(b + at + 28, (uint32_t)nl);
        put32(b + at + 42, (uint32_t)off[i]);
        memcpy(b + at + 46, names[i], nl);
        at += 46 + nl;
    }
    put32(b + at, 0x06054b50u);
    put16(b + at + 8, N);
    put16(b + at + 10, N);
    put32(b + at + 12, (uint32_t)(at - cd));
    put32(b + at + 16, (uint32_t)cd);
    at += 22;
    *out_len = at;
    return b;
}

/* float32 bits of a half, by normalising subnormals with a loop rather than pth.c's multiply,
 * so the two readings are independent. */
static uint32_t half_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1F) return sign | 0x7F800000u | (man << 13);
    if (exp != 0) return sign | ((exp - 15 + 127) << 23) | (man << 13);
    if (man == 0) return sign;
    int e = -14;
    while (!(man & 0x400u)) man <<= 1, e--;
    return sign | ((uint32_t)(e + 127) << 23) | ((man & 0x3FFu) << 13);
}

/* Element `flat` (row-major) of the view, read straight from the formula. */
static uint32_t elem_bits(const pth_tensor *t, int64_t flat) {
    int64_t idx = t->storage_offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx += (flat % t->shape[d]) * t->stride[d];
        flat /= t->shape[d];
    }
    const uint8_t *p = (const uint8_t *)t->storage + idx * (int64_t)pth_dtype_size(t->dtype);
    uint32_t bits;
    uint16_t h;
    if (t->dtype == PTH_F32) {
        memcpy(&bits, p, 4);
        return bits;
    }
    memcpy(&h, p, 2);
    return t->dtype == PTH_BF16 ? (uint32_t)h << 16 : half_bits(h);
}

static void check(const pth_file *f, const uint8_t *buf, size_t len) {
    char err[512];
    size_t n = pth_count(f);
    require(pth_archive(f) != NULL);
    for (size_t i = 0; i < n; i++) {
        const pth_tensor *t = pth_get(f, i);
        require(t != NULL && t->name != NULL && pth_find(f, t->name) == t && pth_index(f, t) == i);
        require(t->ndim >= 0 && t->ndim <= PTH_MAX_DIMS && (unsigned)t->dtype < PTH_DTYPE_COUNT);
        int64_t numel = 1, last = t->storage_offset;
        for (int d = 0; d < t->ndim; d++) {
            require(t->shape[d] >= 0 && t->stride[d] >= 0);
            numel *= t->shape[d];
            if (t->shape[d] > 0) last += (t->shape[d] - 1) * t->stride[d];
        }
        require(numel == t->numel);
        size_t es = pth_dtype_size(t->dtype);
        const uint8_t *s = t->storage;
        require(s >= buf && t->storage_file_offset <= len && s == buf + t->storage_file_offset);
        require((uint64_t)t->storage_numel * es <= len - t->storage_file_offset);
        require(numel == 0 ? t->storage_offset <= t->storage_numel : last < t->storage_numel);
        require(strncmp(t->storage_member, pth_archive(f), strlen(pth_archive(f))) == 0);
        if (t->dtype != PTH_F32 && t->dtype != PTH_F16 && t->dtype != PTH_BF16) {
            require(pth_to_f32(t, NULL, 0, err, sizeof err) < 0);
            continue;
        }
        if ((uint64_t)numel > FUZZ_MAX_CONVERT) continue;
        size_t ne = (size_t)numel;
        float *out = malloc((ne ? ne : 1) * sizeof(float));
        if (out == NULL) continue;
        require(pth_to_f32(t, out, ne, err, sizeof err) == 0);
        for (size_t k = 0; k < ne; k++) {
            uint32_t want = elem_bits(t, (int64_t)k), got;
            memcpy(&got, &out[k], 4);
            require(want == got);
        }
        if (ne > 0) require(pth_to_f32(t, out, ne - 1, err, sizeof err) < 0);
        free(out);
    }
    require(pth_get(f, n) == NULL);
}

static void run(const uint8_t *buf, size_t len) {
    char err[512];
    err[0] = '\0';
    pth_file *f = NULL;
    int rc = pth_parse(buf, len, "fuzz", &f, err, sizeof err);
    if (rc != 0) {
        require(f == NULL && rc < 0 && strlen(err) > 0);
        return;
    }
    require(f != NULL);
    check(f, buf, len);
    pth_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size >= 2 && data[0] == 'P' && data[1] == 'K') {
        run(data, size);
        return 0;
    }
    size_t len;
    uint8_t *z = wrap(data, size, &len);
    if (z == NULL) return 0;
    run(z, len);
    free(z);
    return 0;
}
