/* Tests for engine/safetensors: writer -> reader round trips (bitwise), F16/BF16 -> F32 against
 * independent references over all 65536 bit patterns, and every rejection path of the reader on
 * crafted files, checking both the status and that the message names the offending key. Files are
 * built in memory or in a mkdtemp directory under /tmp that is removed at the end. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;
static int checks;
static char tmpdir[64];
static char made[64][256]; /* files created in tmpdir, removed at exit */
static int nmade;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    checks++;
    if (!ok) failures++;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t xorshift64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static const char *tmp_path(const char *name) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static void remember(const char *path) {
    if (nmade < (int)(sizeof made / sizeof made[0])) snprintf(made[nmade++], 256, "%s", path);
}

static int write_file(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) return -1;
    size_t w = len ? fwrite(buf, 1, len, fp) : 0;
    int rc = (fclose(fp) == 0 && w == len) ? 0 : -1;
    remember(path);
    return rc;
}

/* A crafted file: 8-byte length prefix (hlen_override if nonzero, else strlen(header)), the
 * header text, then `data_len` bytes of a counting pattern. */
typedef struct {
    uint8_t *p;
    size_t len;
} blob;

static blob craft(const char *header, size_t data_len, uint64_t hlen_override) {
    size_t hl = strlen(header);
    blob b;
    b.len = 8 + hl + data_len;
    b.p = malloc(b.len);
    if (b.p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    uint64_t n = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++) b.p[i] = (uint8_t)(n >> (8 * i));
    memcpy(b.p + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b.p[8 + hl + i] = (uint8_t)(i * 7 + 1);
    return b;
}

/* Parses a crafted buffer that must be rejected: rc < 0, *out NULL, message starts with the
 * origin and contains every phrase given. */
static void expect_reject(const char *what, blob b, const char *phrase1, const char *phrase2) {
    char err[512] = "";
    st_file *f = (st_file *)(uintptr_t)1; /* must be overwritten with NULL */
    int rc = st_parse(b.p, b.len, "bad.safetensors", &f, err, sizeof err);
    bool ok = rc < 0 && f == NULL && strncmp(err, "bad.safetensors: ", 17) == 0 &&
              strstr(err, phrase1) != NULL && (phrase2 == NULL || strstr(err, phrase2) != NULL);
    check(ok, "reject %-28s rc=%d msg=\"%s\"", what, rc, err);
    if (rc == 0 && f != NULL && f != (st_file *)(uintptr_t)1) st_close(f);
    free(b.p);
}

static void expect_accept(const char *what, blob b, size_t want_count) {
    char err[512] = "";
    st_file *f = NULL;
    int rc = st_parse(b.p, b.len, "good.safetensors", &f, err, sizeof err);
    check(rc == 0 && f != NULL && st_count(f) == want_count, "accept %-28s rc=%d count=%zu %s",
          what, rc, st_count(f), err);
    st_close(f);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Round trip */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} spec;

static void test_round_trip(void) {
    static const spec specs[] = {
        {"scalar", 0, {0}},   {"blocks.0.attn.q.weight", 2, {6, 5}},
        {"vec", 1, {17}},     {"t4", 4, {2, 3, 4, 5}},
        {"empty", 2, {0, 3}}, {"quote\"back\\slash\ttab é", 1, {3}},
    };
    const size_t nspec = sizeof specs / sizeof specs[0];
    float *data[sizeof specs / sizeof specs[0]];
    size_t numel[sizeof specs / sizeof specs[0]];
    char err[512] = "";
    st_writer *w = st_writer_create();
    check(w != NULL, "writer created");
    if (w == NULL) return;
    for (size_t i = 0; i < nspec; i++) {
        size_t n = 1;
        for (int d = 0; d < specs[i].ndim; d++) n *= (size_t)specs[i].shape[d];
        numel[i] = n;
        data[i] = malloc((n ? n : 1) * sizeof(float));
        /* Random bit patterns, NaN payloads and -0 included: the copy must be bitwise. */
        for (size_t k = 0; k < n; k++) {
            uint32_t bits = (uint32_t)xorshift64();
            memcpy(&data[i][k], &bits, 4);
        }
        int rc = st_writer_add_f32(w, specs[i].name, specs[i].shape, specs[i].ndim, data[i], err,
                                   sizeof err);
        check(rc == 0, "writer add '%s' numel=%zu rc=%d %s", specs[i].name, n, rc, err);
    }
    int rc = st_writer_add_f32(w, "vec", specs[2].shape, 1, data[2], err, sizeof err);
    check(rc < 0 && strstr(err, "'vec'") && strstr(err, "already added"),
          "writer rejects duplicate name: rc=%d msg=\"%s\"", rc, err);
    int64_t neg[1] = {-1};
    rc = st_writer_add_f32(w, "neg", neg, 1, data[2], err, sizeof err);
    check(rc < 0 && strstr(err, "'neg'"), "writer rejects negative dim: rc=%d msg=\"%s\"", rc, err);
    check(st_writer_set_metadata(w, "format", "pt") == 0 &&
              st_writer_set_metadata(w, "producer", "old") == 0 &&
              st_writer_set_metadata(w, "producer", "wmserve \"test\"") == 0,
          "writer metadata set (one key replaced)");

    const char *path = tmp_path("rt.safetensors");
    char saved_path[256];
    snprintf(saved_path, sizeof saved_path, "%s", path);
    err[0] = '\0';
    rc = st_writer_save(w, saved_path, err, sizeof err);
    remember(saved_path);
    check(rc == 0, "writer save %s rc=%d %s", saved_path, rc, err);
    char tmpname[300];
    snprintf(tmpname, sizeof tmpname, "%s.tmp", saved_path);
    check(access(tmpname, F_OK) != 0, "no .tmp file left after save");

    char bad_path[300];
    snprintf(bad_path, sizeof bad_path, "%s/no/such/dir/x.safetensors", tmpdir);
    rc = st_writer_save(w, bad_path, err, sizeof err);
    check(rc < 0 && strstr(err, bad_path) && strstr(err, strerror(ENOENT)),
          "writer save into missing dir: rc=%d msg=\"%s\"", rc, err);
    st_writer_destroy(w);

    st_file *f = NULL;
    err[0] = '\0';
    rc = st_open(saved_path, &f, err, sizeof err);
    check(rc == 0 && f != NULL, "st_open round trip rc=%d %s", rc, err);
    if (f == NULL) goto out;
    check(strcmp(st_origin(f), saved_path) == 0, "st_origin is the path: %s", st_origin(f));
    check(st_count(f) == nspec, "count %zu (want %zu)", st_count(f), nspec);
    const char *fmt = st_metadata(f, "format"), *prod = st_metadata(f, "producer");
    check(fmt && strcmp(fmt, "pt") == 0 && prod && strcmp(prod, "wmserve \"test\"") == 0 &&
              st_metadata(f, "missing") == NULL,
          "metadata format=%s producer=%s", fmt ? fmt : "(null)", prod ? prod : "(null)");
    for (size_t i = 0; i < nspec && i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        bool shape_ok = t->ndim == specs[i].ndim;
        for (int d = 0; shape_ok && d < t->ndim; d++) shape_ok = t->shape[d] == specs[i].shape[d];
        bool same = t->nbytes == numel[i] * 4 && memcmp(t->data, data[i], t->nbytes) == 0;
        float *back = malloc((numel[i] ? numel[i] : 1) * sizeof(float));
        int crc = st_to_f32(t, back, numel[i], err, sizeof err);
        bool conv_same = crc == 0 && memcmp(back, data[i], numel[i] * 4) == 0;
        free(back);
        check(strcmp(t->name, specs[i].name) == 0 && t->dtype == ST_F32 && shape_ok &&
                  t->numel == (int64_t)numel[i] && same && conv_same && st_find(f, t->name) == t,
              "tensor %zu '%s' ndim=%d numel=%" PRId64 " nbytes=%zu offset=%zu bitwise=%d "
              "to_f32 bitwise=%d find=%d",
              i, t->name, t->ndim, t->numel, t->nbytes, t->offset, same, conv_same,
              st_find(f, t->name) == t);
    }
    /* The writer pads the header so the data buffer (where the first tensor sits) is 8-aligned. */
    check(st_count(f) > 0 && st_get(f, 0)->offset % 8 == 0, "data buffer starts at file byte %zu",
          st_count(f) ? st_get(f, 0)->offset : 0);
    check(st_get(f, nspec) == NULL, "st_get past the end is NULL");
    check(st_find(f, "nope") == NULL && st_find(f, "") == NULL, "st_find of absent names is NULL");
    const st_tensor *v = st_find(f, "vec");
    float small[4];
    rc = st_to_f32(v, small, 4, err, sizeof err);
    check(rc < 0 && strstr(err, "'vec'") && strstr(err, "17"), "st_to_f32 wrong n: msg=\"%s\"",
          err);
    st_close(f);
out:
    for (size_t i = 0; i < nspec; i++) free(data[i]);
}

/* Many tensors: st_find goes through the sorted index. */
static void test_many(void) {
    char err[512] = "", name[64];
    st_writer *w = st_writer_create();
    const int n = 1500;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "blocks.%d.w%d", (i * 7919) % n, i % 3);
        int64_t shape[1] = {i % 4};
        float d[3] = {(float)i, (float)-i, 0.5f};
        if (st_writer_add_f32(w, name, shape, 1, d, err, sizeof err) != 0) break;
    }
    const char *p = tmp_path("many.safetensors");
    char path[256];
    snprintf(path, sizeof path, "%s", p);
    int rc = st_writer_save(w, path, err, sizeof err);
    remember(path);
    st_writer_destroy(w);
    st_file *f = NULL;
    if (rc == 0) rc = st_open(path, &f, err, sizeof err);
    int found = 0;
    for (int i = 0; f != NULL && i < n; i++) {
        snprintf(name, sizeof name, "blocks.%d.w%d", (i * 7919) % n, i % 3);
        const st_tensor *t = st_find(f, name);
        float d[3] = {0};
        if (t && t->numel == i % 4 && st_to_f32(t, d, (size_t)t->numel, err, sizeof err) == 0 &&
            (t->numel == 0 || d[0] == (float)i) && st_get(f, (size_t)i) == t)
            found++;
    }
    check(rc == 0 && found == n, "%d tensors written, %d found by name with right data %s", n,
          found, err);
    st_close(f);
}

/* ---------------------------------------------------------------------------------------------
 * Conversions */

static double f16_reference(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24);
    else
        v = ldexp((double)(1024 + m), e - 25);
    return sign ? -v : v;
}

static double bf16_reference(uint16_t h) {
    int sign = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 255)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -133);
    else
        v = ldexp((double)(128 + m), e - 134);
    return sign ? -v : v;
}

static void test_half_conversions(void) {
    for (int which = 0; which < 2; which++) {
        /* Padding makes the data start at an odd file byte, so every load is unaligned. */
        char hdr[128];
        snprintf(hdr, sizeof hdr,
                 "{\"h\":{\"dtype\":\"%s\",\"shape\":[65536],"
                 "\"data_offsets\":[0,131072]}}",
                 which ? "BF16" : "F16");
        if ((8 + strlen(hdr)) % 2 == 0) strcat(hdr, " ");
        blob b = craft(hdr, 131072, 0);
        size_t data_at = 8 + strlen(hdr);
        for (uint32_t i = 0; i < 65536; i++) {
            b.p[data_at + 2 * i] = (uint8_t)i;
            b.p[data_at + 2 * i + 1] = (uint8_t)(i >> 8);
        }
        char err[512] = "";
        st_file *f = NULL;
        int rc = st_parse(b.p, b.len, "half", &f, err, sizeof err);
        float *out = malloc(65536 * sizeof(float));
        const st_tensor *t = f ? st_get(f, 0) : NULL;
        if (t) rc = st_to_f32(t, out, 65536, err, sizeof err);
        int bad = 0, nans = 0, first_bad = -1;
        for (uint32_t i = 0; t && rc == 0 && i < 65536; i++) {
            double ref = which ? bf16_reference((uint16_t)i) : f16_reference((uint16_t)i);
            bool ok;
            if (isnan(ref)) {
                ok = isnan(out[i]);
                nans++;
            } else {
                ok = (double)out[i] == ref && !!signbit(out[i]) == !!signbit(ref);
            }
            if (which) { /* bf16 is the top half of a float32: also check the bits */
                uint32_t want = i << 16, got;
                memcpy(&got, &out[i], 4);
                ok = ok && got == want;
            }
            if (!ok && first_bad < 0) first_bad = (int)i;
            bad += !ok;
        }
        check(t != NULL && rc == 0 && bad == 0 && (size_t)(t->offset) % 2 == 1,
              "%s -> f32 all 65536 patterns: mismatches=%d (first 0x%04x) nans=%d data offset=%zu "
              "%s",
              which ? "BF16" : "F16", bad, first_bad < 0 ? 0 : first_bad, nans, t ? t->offset : 0,
              err);
        free(out);
        st_close(f);
        free(b.p);
    }

    /* Unaligned F32 and a dtype that cannot be converted. */
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                      "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[12,16]}}";
    blob b = craft(hdr, 16, 0);
    size_t at = 8 + strlen(hdr);
    float want[3] = {1.5f, -2.25f, 3e-39f};
    memcpy(b.p + at, want, 12);
    char err[512] = "";
    st_file *f = NULL;
    int rc = st_parse(b.p, b.len, "unaligned", &f, err, sizeof err);
    float got[3] = {0};
    if (rc == 0) rc = st_to_f32(st_find(f, "a"), got, 3, err, sizeof err);
    check(rc == 0 && memcmp(got, want, 12) == 0 && at % 4 != 0,
          "unaligned F32 at file byte %zu: %g %g %g", at, got[0], got[1], got[2]);
    float one;
    rc = f ? st_to_f32(st_find(f, "i"), &one, 1, err, sizeof err) : 0;
    check(rc < 0 && strstr(err, "'i'") && strstr(err, "I32"), "st_to_f32 on I32: msg=\"%s\"", err);
    st_close(f);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Accepted edge cases */

static void test_accepts(void) {
    expect_accept("empty header {}", craft("{}", 0, 0), 0);
    expect_accept("trailing space padding", craft("{}      ", 0, 0), 0);
    expect_accept("gap between tensors",
                  craft("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
                        10, 0),
                  2);
    expect_accept("empty tensors share offsets",
                  craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[4,4]},"
                        "\"c\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
                        8, 0),
                  3);
    expect_accept("every dtype",
                  craft("{\"__metadata__\":{},"
                        "\"a\":{\"dtype\":\"BOOL\",\"shape\":[],\"data_offsets\":[0,1]},"
                        "\"b\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[1,2]},"
                        "\"c\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[2,3]},"
                        "\"d\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[3,4]},"
                        "\"e\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[4,6]},"
                        "\"f\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[6,8]},"
                        "\"g\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                        "\"h\":{\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[12,16]},"
                        "\"i\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                        "\"j\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[24,32]},"
                        "\"k\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[32,40]},"
                        "\"l\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[40,41]}}",
                        41, 0),
                  12);
}

/* ---------------------------------------------------------------------------------------------
 * Rejections */

#define T1(name, dtype, shape, offs)                                                               \
    "{\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static void test_rejects(void) {
    blob b;
    b.p = malloc(5);
    memcpy(b.p, "\x05\0\0\0\0", 5);
    b.len = 5;
    expect_reject("file shorter than 8 bytes", b, "file is 5 bytes",
                  "shorter than the 8-byte safetensors length prefix");
    expect_reject("header length past EOF", craft("{}", 0, 1000), "header length 1000",
                  "runs past the end of the file");
    expect_reject("header length over limit", craft("{}", 0, (uint64_t)ST_MAX_HEADER_BYTES + 1),
                  "header length 104857601", "exceeds the limit");
    expect_reject("huge header length", craft("{}", 0, UINT64_MAX), "exceeds the limit", NULL);
    expect_reject("header length zero", craft("", 4, 0), "header length is 0", NULL);
    expect_reject("header not JSON", craft("{not json}", 0, 0), "not valid JSON", "header byte");
    expect_reject("header not JSON (text)", craft("hello", 0, 0), "not valid JSON", NULL);
    expect_reject("header JSON not an object", craft("[1, 2]", 0, 0), "header JSON is an array",
                  "expected an object");
    expect_reject("byte 8 not '{'", craft(" {}", 0, 0), "byte 8 is 0x20", "expected '{'");
    expect_reject("garbage after JSON", craft("{}  x ", 0, 0), "header byte 4 is 0x78",
                  "only whitespace padding");
    expect_reject("invalid UTF-8", craft("{\"\xff\":1}", 0, 0), "not valid UTF-8", NULL);
    expect_reject("unknown dtype", craft(T1("w", "F17", "[1]", "[0,4]"), 4, 0),
                  "tensor 'w': unknown dtype 'F17'", "expected one of");
    expect_reject("dtype not a string",
                  craft("{\"w\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0),
                  "tensor 'w': dtype is a number", NULL);
    {
        /* The exact message promised in the brief. */
        blob m = craft(T1("blocks.0.q.weight", "F32", "[5, 6]", "[0, 100]"), 100, 0);
        char err[512] = "";
        st_file *f = NULL;
        int rc = st_parse(m.p, m.len, "model.safetensors", &f, err, sizeof err);
        const char *want = "model.safetensors: tensor 'blocks.0.q.weight': data_offsets [0, 100] "
                           "span 100 bytes but shape [5, 6] x F32 needs 120";
        check(rc < 0 && f == NULL && strcmp(err, want) == 0,
              "reject shape/offset size mismatch  rc=%d msg=\"%s\"", rc, err);
        free(m.p);
    }
    expect_reject("scalar size mismatch", craft(T1("s", "F64", "[]", "[0,4]"), 8, 0), "tensor 's'",
                  "span 4 bytes but shape [] x F64 needs 8");
    expect_reject("offsets past end of data", craft(T1("w", "U8", "[16]", "[0,16]"), 8, 0),
                  "tensor 'w': data_offsets [0, 16] end past the end of the data buffer",
                  "which is 8 bytes");
    expect_reject("begin > end", craft(T1("w", "U8", "[0]", "[8,4]"), 8, 0),
                  "tensor 'w': data_offsets [8, 4] has begin > end", NULL);
    expect_reject("overlapping tensors",
                  craft("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                        24, 0),
                  "'a' data_offsets [0, 16] and 'b' data_offsets [8, 24] overlap", NULL);
    expect_reject("tensor inside another",
                  craft("{\"a\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                        "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[5,6]}}",
                        16, 0),
                  "overlap", "'b'");
    expect_reject("duplicate names",
                  craft("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                        "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                        2, 0),
                  "tensor name 'a' appears twice", NULL);
    expect_reject("duplicate field in entry",
                  craft("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],"
                        "\"data_offsets\":[0,1]}}",
                        1, 0),
                  "tensor 'a': field 'dtype' appears twice", NULL);
    expect_reject("negative dim", craft(T1("w", "F32", "[2,-3]", "[0,24]"), 24, 0),
                  "tensor 'w': shape[1] is negative (-3)", NULL);
    expect_reject("negative zero dim", craft(T1("w", "F32", "[-0]", "[0,0]"), 0, 0),
                  "shape[0] is negative", NULL);
    expect_reject("fractional offset", craft(T1("w", "U8", "[2]", "[0,1.5]"), 4, 0),
                  "tensor 'w': data_offsets[1] is not an integer (1.5)", NULL);
    expect_reject("exponent spelling", craft(T1("w", "U8", "[1e1]", "[0,10]"), 10, 0),
                  "number '1e1' is not a plain integer", NULL);
    expect_reject("decimal point spelling", craft(T1("w", "U8", "[10]", "[0,10.0]"), 10, 0),
                  "number '10.0' is not a plain integer", NULL);
    expect_reject("leading zero", craft(T1("w", "U8", "[010]", "[0,10]"), 10, 0),
                  "number '010' is not a plain integer", NULL);
    expect_reject("offset at 2^53", craft(T1("w", "U8", "[0]", "[0,9007199254740993]"), 0, 0),
                  "data_offsets[1] is too large", "below 2^53");
    expect_reject("dim as string", craft(T1("w", "U8", "[\"4\"]", "[0,4]"), 4, 0),
                  "shape[0] is a string", NULL);
    expect_reject("shape element overflow",
                  craft(T1("w", "U8", "[4294967296,4294967296,4294967296]", "[0,1]"), 1, 0),
                  "tensor 'w': shape [4294967296, 4294967296, 4294967296] has more than 2^63",
                  NULL);
    expect_reject("bytes overflow", craft(T1("w", "U64", "[4294967296,1073741824]", "[0,8]"), 8, 0),
                  "needs more than 2^64", NULL);
    expect_reject("too many dims", craft(T1("w", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, 0),
                  "shape has more than 8 dims", NULL);
    expect_reject("unknown field in entry",
                  craft("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
                        "\"foo\":1}}",
                        1, 0),
                  "tensor 'w': unknown field 'foo'", "expected only dtype, shape and data_offsets");
    expect_reject("missing data_offsets", craft("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, 0),
                  "tensor 'w': missing field 'data_offsets'", NULL);
    expect_reject("missing dtype", craft("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0),
                  "tensor 'w': missing field 'dtype'", NULL);
    expect_reject("three data_offsets", craft(T1("w", "U8", "[1]", "[0,1,2]"), 2, 0),
                  "data_offsets has too many entries", NULL);
    expect_reject("data_offsets not array", craft(T1("w", "U8", "[1]", "{}"), 2, 0),
                  "data_offsets is an object", NULL);
    expect_reject("entry not an object", craft("{\"w\":[1,2]}", 0, 0),
                  "tensor 'w': entry is an array", NULL);
    expect_reject("empty name", craft(T1("", "U8", "[1]", "[0,1]"), 1, 0), "empty name", NULL);
    expect_reject(
        "\\u0000 in name",
        craft("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0),
        "contains \\u0000", NULL);
    expect_reject("metadata not string", craft("{\"__metadata__\":{\"k\":1}}", 0, 0),
                  "'__metadata__' key 'k' is a number", "expected a string");
    expect_reject("metadata not object", craft("{\"__metadata__\":\"x\"}", 0, 0),
                  "'__metadata__' is a string", NULL);
    expect_reject("duplicate metadata block",
                  craft("{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0),
                  "'__metadata__' appears twice", NULL);
    expect_reject("duplicate metadata key",
                  craft("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0),
                  "'__metadata__' key 'k' appears twice", NULL);
}

/* Paths: st_open on files that are not there, not files, or too short. */
static void test_paths(void) {
    char err[512] = "", path[256];
    st_file *f = (st_file *)(uintptr_t)1;

    snprintf(path, sizeof path, "%s", tmp_path("zero.safetensors"));
    write_file(path, "", 0);
    int rc = st_open(path, &f, err, sizeof err);
    check(rc < 0 && f == NULL && strstr(err, path) && strstr(err, "empty (0 bytes)"),
          "reject zero-length file            rc=%d msg=\"%s\"", rc, err);

    snprintf(path, sizeof path, "%s", tmp_path("short.safetensors"));
    write_file(path, "\x05\0\0\0\0", 5);
    f = (st_file *)(uintptr_t)1;
    rc = st_open(path, &f, err, sizeof err);
    check(rc < 0 && f == NULL && strstr(err, path) && strstr(err, "file is 5 bytes"),
          "reject 5-byte file via st_open     rc=%d msg=\"%s\"", rc, err);

    blob b = craft(T1("w", "F17", "[1]", "[0,4]"), 4, 0);
    snprintf(path, sizeof path, "%s", tmp_path("baddtype.safetensors"));
    write_file(path, b.p, b.len);
    free(b.p);
    f = (st_file *)(uintptr_t)1;
    rc = st_open(path, &f, err, sizeof err);
    check(rc < 0 && f == NULL && strncmp(err, path, strlen(path)) == 0 &&
              strstr(err, "unknown dtype 'F17'"),
          "reject bad dtype via st_open       rc=%d msg=\"%s\"", rc, err);

    f = (st_file *)(uintptr_t)1;
    rc = st_open(tmpdir, &f, err, sizeof err);
    check(rc < 0 && f == NULL && strstr(err, tmpdir) && strstr(err, "is a directory"),
          "reject directory                   rc=%d msg=\"%s\"", rc, err);

    snprintf(path, sizeof path, "%s", tmp_path("does-not-exist.safetensors"));
    f = (st_file *)(uintptr_t)1;
    rc = st_open(path, &f, err, sizeof err);
    check(rc < 0 && f == NULL && strstr(err, path) && strstr(err, "cannot open") &&
              strstr(err, strerror(ENOENT)),
          "reject nonexistent path            rc=%d msg=\"%s\"", rc, err);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_safetensors.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    printf("temp dir %s\n", tmpdir);
    test_round_trip();
    test_many();
    test_half_conversions();
    test_accepts();
    test_rejects();
    test_paths();
    for (int i = 0; i < nmade; i++) unlink(made[i]);
    if (rmdir(tmpdir) != 0) printf("note: could not remove %s: %s\n", tmpdir, strerror(errno));
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
