/* Tests of the .pth reader (engine/pth.c) and the format-neutral tensor source over it and over
 * safetensors (engine/tensor_source.c).
 *
 * What each part compares against:
 *  - good fixtures (written by torch.save, tests/fixtures/make_pth_fixtures.py): every field and
 *    every element against expected.json, which holds torch's own dtype, shape, stride, storage
 *    offset, storage key and the float32 bits of each element (bitwise: f16/bf16 -> f32 is exact);
 *  - hostile fixtures (os.system / eval pickles, unknown opcode, damaged containers): refused with
 *    rc < 0 and a message naming the reason; no pickle ever ran (the marker file the pickles would
 *    create is absent);
 *  - pickles built here opcode by opcode inside in-memory archives: the machine's limits and
 *    each refusal, and views read back against values computed here;
 *  - every truncation and every bit flip of a small archive: refused or parsed, never a crash;
 *  - tensor_source over a safetensors file written from the .pth's values: same names, shapes
 *    and values bit for bit. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/errors.h"
#include "engine/pth.h"
#include "engine/safetensors.h"
#include "engine/tensor_source.h"
#include "tests/test_util.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The hostile pickles' command would create this (make_pth_fixtures.py's MARKER). */
#define MARKER "/tmp/wmserve_pth_pwned"

static const char *fixdir = "tests/fixtures/pth";

static void fixture(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", fixdir, name);
}

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b != NULL && n > 0 && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *len = n > 0 ? (size_t)n : 0;
    return b;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---------------------------------------------------------------------------------------------
 * Good fixtures against torch's values */

static cJSON *expected;

/* Compares one file's tensors, opened both directly and through tensor_source, with expected. */
static void check_good(const char *fname) {
    char path[1024], err[512] = "";
    fixture(path, sizeof path, fname);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(expected, "files"), fname);
    tu_check(e != NULL, "%s: listed in expected.json", fname);
    if (e == NULL) return;
    pth_file *f = NULL;
    int rc = pth_open(path, &f, err, sizeof err);
    tu_check(rc == 0 && f != NULL, "%s: pth_open rc %d %s", fname, rc, rc ? err : "");
    if (rc) return;
    const char *arch = cJSON_GetObjectItemCaseSensitive(e, "archive")->valuestring;
    tu_check(strcmp(pth_archive(f), arch) == 0, "%s: archive folder '%s' (torch wrote '%s/')",
             fname, pth_archive(f), arch);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(e, "tensors");
    tu_check((size_t)cJSON_GetArraySize(ts) == pth_count(f), "%s: %zu tensors, torch saved %d",
             fname, pth_count(f), cJSON_GetArraySize(ts));
    ts_source *src = NULL;
    rc = ts_open(path, &src, err, sizeof err);
    tu_check(rc == 0 && strcmp(ts_format(src), "pth") == 0 && ts_count(src) == pth_count(f),
             "%s: ts_open as pth, same count (rc %d %s)", fname, rc, rc ? err : "");
    size_t i = 0, fields_bad = 0, values = 0, values_bad = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, ts) {
        const pth_tensor *p = pth_get(f, i);
        const char *name = cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring;
        if (p == NULL) break;
        bool ok =
            strcmp(p->name, name) == 0 && pth_find(f, name) == p &&
            strcmp(pth_dtype_name(p->dtype),
                   cJSON_GetObjectItemCaseSensitive(t, "dtype")->valuestring) == 0 &&
            p->storage_offset ==
                (int64_t)cJSON_GetObjectItemCaseSensitive(t, "offset")->valuedouble &&
            p->numel == (int64_t)cJSON_GetObjectItemCaseSensitive(t, "numel")->valuedouble &&
            strcmp(p->storage_key, cJSON_GetObjectItemCaseSensitive(t, "key")->valuestring) == 0;
        char member[256];
        snprintf(member, sizeof member, "%s/data/%s", arch, p->storage_key);
        ok = ok && strcmp(p->storage_member, member) == 0;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape"),
                    *stride = cJSON_GetObjectItemCaseSensitive(t, "stride");
        ok = ok && cJSON_GetArraySize(shape) == p->ndim;
        for (int d = 0; ok && d < p->ndim; d++)
            ok = p->shape[d] == (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble &&
                 p->stride[d] == (int64_t)cJSON_GetArrayItem(stride, d)->valuedouble;
        if (!ok) {
            fields_bad++;
            printf("     %s: tensor %zu '%s' fields differ from torch's\n", fname, i, p->name);
        }
        /* Through tensor_source: the same description. */
        ts_info info;
        if (src && (ts_info_at(src, i, &info) != 0 || strcmp(info.name, p->name) != 0 ||
                    strcmp(info.dtype, pth_dtype_name(p->dtype)) != 0 || info.ndim != p->ndim ||
                    info.numel != p->numel || ts_find(src, p->name) != (long)i ||
                    memcmp(info.shape, p->shape, (size_t)p->ndim * sizeof(int64_t)) != 0)) {
            fields_bad++;
            printf("     %s: ts_info_at(%zu) differs from pth_get\n", fname, i);
        }
        const cJSON *bits = cJSON_GetObjectItemCaseSensitive(t, "f32_bits");
        size_t n = (size_t)p->numel;
        float *a = malloc((n ? n : 1) * sizeof(float)), *b = malloc((n ? n : 1) * sizeof(float));
        if (bits != NULL) {
            int r1 = pth_to_f32(p, a, n, err, sizeof err);
            int r2 = src ? ts_read_f32(src, i, b, n, err, sizeof err) : -1;
            for (size_t k = 0; k < n; k++) {
                uint32_t want = (uint32_t)cJSON_GetArrayItem(bits, (int)k)->valuedouble;
                values++;
                if (r1 || r2 || bits_of(a[k]) != want || bits_of(b[k]) != want) {
                    if (values_bad++ < 5)
                        printf("     %s: '%s'[%zu] = 0x%08x / 0x%08x, torch 0x%08x\n", fname,
                               p->name, k, bits_of(a[k]), bits_of(b[k]), want);
                }
            }
        } else {
            /* Listed but not float: reading as float32 must say which dtype is in the way. */
            int r1 = pth_to_f32(p, a, n, err, sizeof err);
            bool named = strstr(err, pth_dtype_name(p->dtype)) != NULL;
            int r2 = src ? ts_read_f32(src, i, b, n, err, sizeof err) : 0;
            tu_check(r1 == ENG_EWEIGHTS && named && r2 == ENG_EWEIGHTS &&
                         strstr(err, pth_dtype_name(p->dtype)) != NULL,
                     "%s: '%s' (%s) refused as float32: %s", fname, p->name,
                     pth_dtype_name(p->dtype), err);
        }
        free(a);
        free(b);
        i++;
    }
    tu_check(fields_bad == 0,
             "%s: name, dtype, shape, stride, offset, storage key of %zu tensors "
             "equal torch's (%zu differ)",
             fname, i, fields_bad);
    tu_check(values_bad == 0 && values > 0,
             "%s: %zu elements bitwise equal to torch's float32 values (%zu differ)", fname, values,
             values_bad);
    ts_close(src);
    pth_close(f);
}

/* The views of state_dict.pth, beyond matching torch: they really share storage and are strided. */
static void check_views(void) {
    char path[1024], err[512] = "";
    fixture(path, sizeof path, "state_dict.pth");
    pth_file *f = NULL;
    if (pth_open(path, &f, err, sizeof err)) {
        tu_check(0, "state_dict.pth: %s", err);
        return;
    }
    const pth_tensor *a = pth_find(f, "share_a"), *b = pth_find(f, "share_b"),
                     *tr = pth_find(f, "transposed"), *ex = pth_find(f, "expanded"),
                     *sc = pth_find(f, "scalar"), *pa = pth_find(f, "param"),
                     *w = pth_find(f, "0.weight");
    tu_check(a && b && a->storage == b->storage &&
                 strcmp(a->storage_member, b->storage_member) == 0 && a->storage_offset == 2 &&
                 b->storage_offset == 5 && a->storage_numel == 12,
             "share_a/share_b: one storage (%s, 12 elements), offsets 2 and 5",
             a ? a->storage_member : "?");
    tu_check(tr && !tr->contiguous && tr->stride[0] == 1 && tr->stride[1] == 5,
             "transposed: non-contiguous, strides (1, 5)");
    tu_check(ex && !ex->contiguous && ex->stride[0] == 0 && ex->numel == 6 &&
                 ex->storage_numel == 3,
             "expanded: stride 0 over a 3-element storage, 6 elements");
    tu_check(sc && sc->ndim == 0 && sc->numel == 1 && sc->contiguous, "scalar: 0-d, one element");
    tu_check(pa && pa->ndim == 2 && pa->dtype == PTH_F32, "param: nn.Parameter read as its tensor");
    tu_check(w && w->contiguous && (w->storage_file_offset % 64) == 0,
             "0.weight: contiguous, data 64-byte aligned at byte %llu (from the local header)",
             w ? (unsigned long long)w->storage_file_offset : 0ull);
    float v[12];
    int rc = a ? pth_to_f32(a, v, 3, err, sizeof err) : -1;
    tu_check(rc == ENG_EINVAL && strstr(err, "share_a"), "wrong element count refused: %s", err);
    tu_check(pth_find(f, "absent") == NULL && pth_get(f, pth_count(f)) == NULL,
             "absent name and index past the end give NULL");
    pth_close(f);

    /* The ZIP64 fixture really goes through the ZIP64 records: its classic end record defers. */
    size_t len;
    fixture(path, sizeof path, "zip64.pth");
    uint8_t *z = slurp(path, &len);
    tu_check(z && len > 22 && memcmp(z + len - 22 + 16, "\xff\xff\xff\xff", 4) == 0,
             "zip64.pth: classic end record holds 0xFFFFFFFF for the directory offset");
    free(z);
}

/* ---------------------------------------------------------------------------------------------
 * Refused fixtures */

static void expect_refused(const char *fname, const char *const *needles) {
    char path[1024], err[1024] = "";
    fixture(path, sizeof path, fname);
    pth_file *f = (pth_file *)&err; /* must come back NULL */
    int rc = pth_open(path, &f, err, sizeof err);
    bool named = true;
    for (const char *const *n = needles; *n; n++) named = named && strstr(err, *n) != NULL;
    tu_check(rc < 0 && f == NULL && named && strstr(err, fname) != NULL, "%s refused (rc %d): %s",
             fname, rc, err);
    ts_source *s = (ts_source *)&err;
    err[0] = '\0';
    rc = ts_open(path, &s, err, sizeof err);
    named = true;
    for (const char *const *n = needles; *n; n++) named = named && strstr(err, *n) != NULL;
    tu_check(rc < 0 && s == NULL && named, "%s refused by ts_open too (rc %d)", fname, rc);
}

#define REFUSED(file, ...)                                                                         \
    do {                                                                                           \
        static const char *const needles_[] = {__VA_ARGS__, NULL};                                 \
        expect_refused(file, needles_);                                                            \
    } while (0)

static void check_hostile(void) {
    if (unlink(MARKER) != 0 && errno != ENOENT) tu_check(0, "cannot remove stale " MARKER);
    REFUSED("evil_os_system.pth", "global 'os.system' is refused", "data.pkl byte 35",
            "nothing was imported or executed");
    REFUSED("evil_posix_system.pth", "global 'posix.system' is refused", "GLOBAL");
    REFUSED("evil_builtins_eval.pth", "global 'builtins.eval' is refused");
    REFUSED("evil_stack_global.pth", "global 'posix.system' is refused", "STACK_GLOBAL");
    REFUSED("evil_inst.pth", "opcode INST (0x69) is refused");
    REFUSED("unknown_opcode.pth", "unknown opcode 0xfe");
    REFUSED("complex_storage.pth", "storage type 'torch.ComplexFloatStorage' is not supported");
    REFUSED("truncated.pth", "no zip end-of-central-directory record");
    REFUSED("deflate.pth", "member 'archive/data/0' is compressed (method 8, deflate)");
    REFUSED("missing_storage.pth", "needs member 'archive/data/1', which is not in the archive");
    REFUSED("short_storage.pth", "size mismatch", "6 elements of F32", "archive/data/0",
            "holds 20 bytes");
    REFUSED("view_oob.pth", "reaches element 6 of storage '0', which has 6 elements");
    REFUSED("byteorder_big.pth", "byteorder' says 'big'");
    REFUSED("legacy.pth", "legacy torch.save format");
    struct stat st;
    tu_check(stat(MARKER, &st) != 0 && errno == ENOENT,
             "no pickle ran: %s does not exist after refusing every hostile file", MARKER);
}

/* ---------------------------------------------------------------------------------------------
 * Pickles built opcode by opcode, inside archives built in memory */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) abort(); /* test scaffolding only */
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_s(buf *b, const char *s) {
    put(b, s, strlen(s));
}
static void put_u8(buf *b, unsigned v) {
    uint8_t c = (uint8_t)v;
    put(b, &c, 1);
}
static void put_le(buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) put_u8(b, (unsigned)(v >> (8 * i)) & 0xFF);
}
static void p_str(buf *b, const char *s) {
    put_u8(b, 'X');
    put_le(b, strlen(s), 4);
    put_s(b, s);
}
static void p_int(buf *b, int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        put_u8(b, 'J');
        put_le(b, (uint64_t)v, 4);
    } else {
        put_s(b, "\x8a\x08"); /* LONG1, 8 bytes */
        put_le(b, (uint64_t)v, 8);
    }
}

/* One _rebuild_tensor_v2 call on storage `key` (`stype`, numel elements), the way torch writes
 * it; ndim sizes and strides. */
static void p_tensor(buf *b, const char *stype, const char *key, int64_t numel, int64_t off,
                     int ndim, const int64_t *size, const int64_t *stride) {
    put_s(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    p_str(b, "storage");
    put_s(b, "ctorch\n");
    put_s(b, stype);
    put_s(b, "\n");
    p_str(b, key);
    p_str(b, "cpu");
    p_int(b, numel);
    put_s(b, "tQ");
    p_int(b, off);
    put_u8(b, '(');
    for (int d = 0; d < ndim; d++) p_int(b, size[d]);
    put_u8(b, 't');
    put_u8(b, '(');
    for (int d = 0; d < ndim; d++) p_int(b, stride[d]);
    put_u8(b, 't');
    put_u8(b, 0x89);
    put_s(b, "ccollections\nOrderedDict\n)R");
    put_s(b, "tR");
}

static void p_begin(buf *b) {
    put_s(b, "\x80\x02"
             "ccollections\nOrderedDict\n)R(");
}
static void p_end(buf *b) {
    put_s(b, "u.");
}

typedef struct member {
    const char *name;
    const uint8_t *data;
    size_t len;
} member;

/* A stored zip with data 64-byte aligned through a padding extra field, as torch writes it. */
static void build_zip(buf *z, const member *m, int n) {
    size_t *off = calloc((size_t)n, sizeof *off);
    z->n = 0;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name), pad = (64 - (z->n + 30 + nl + 4) % 64) % 64;
        off[i] = z->n;
        put_le(z, 0x04034b50u, 4);
        put_le(z, 20, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 4);
        put_le(z, 0, 4);
        put_le(z, m[i].len, 4);
        put_le(z, m[i].len, 4);
        put_le(z, nl, 2);
        put_le(z, 4 + pad, 2);
        put_s(z, m[i].name);
        put_s(z, "FB");
        put_le(z, pad, 2);
        for (size_t k = 0; k < pad; k++) put_u8(z, 'Z');
        if (m[i].len) put(z, m[i].data, m[i].len);
    }
    size_t cd = z->n;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(m[i].name);
        put_le(z, 0x02014b50u, 4);
        put_le(z, 20, 2);
        put_le(z, 20, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 4);
        put_le(z, 0, 4);
        put_le(z, m[i].len, 4);
        put_le(z, m[i].len, 4);
        put_le(z, nl, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 2);
        put_le(z, 0, 4);
        put_le(z, off[i], 4);
        put_s(z, m[i].name);
    }
    size_t cds = z->n - cd;
    put_le(z, 0x06054b50u, 4);
    put_le(z, 0, 4);
    put_le(z, (uint64_t)n, 2);
    put_le(z, (uint64_t)n, 2);
    put_le(z, cds, 4);
    put_le(z, cd, 4);
    put_le(z, 0, 2);
    free(off);
}

/* Storage "0": 12 floats 0, 1, ..., 11; "1": 4 halves 1, 2, 3, 4; "2": 3 bf16 -1, 0.5, 2. */
static float st0[12];
static const uint8_t st1[8] = {0x00, 0x3c, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44};
static const uint8_t st2[6] = {0x80, 0xbf, 0x00, 0x3f, 0x00, 0x40};

/* Parses pickle `pk` inside archive folder `arch` with the three storages. The archive is
 * returned in *zip (the pth_file points into it): free it after pth_close. */
static int parse_pickle(const buf *pk, const char *arch, pth_file **f, uint8_t **zip, char *err,
                        size_t errlen) {
    char n0[64], n1[64], n2[64], n3[64];
    snprintf(n0, sizeof n0, "%s/data.pkl", arch);
    snprintf(n1, sizeof n1, "%s/data/0", arch);
    snprintf(n2, sizeof n2, "%s/data/1", arch);
    snprintf(n3, sizeof n3, "%s/data/2", arch);
    member m[] = {{n0, pk->p, pk->n},
                  {n1, (const uint8_t *)st0, sizeof st0},
                  {n2, st1, sizeof st1},
                  {n3, st2, sizeof st2}};
    buf z = {0};
    build_zip(&z, m, 4);
    *zip = z.p;
    return pth_parse(z.p, z.n, "built.pth", f, err, errlen);
}

/* A pickle that must be refused with a message containing `needle`. */
static void refuse_pickle(const char *what, const buf *pk, const char *needle) {
    char err[1024] = "";
    pth_file *f = NULL;
    uint8_t *zip = NULL;
    int rc = parse_pickle(pk, "archive", &f, &zip, err, sizeof err);
    tu_check(rc < 0 && f == NULL && strstr(err, needle) != NULL, "%s refused: %s", what, err);
    pth_close(f);
    free(zip);
}

static void check_built(void) {
    for (int i = 0; i < 12; i++) st0[i] = (float)i;
    char err[1024] = "";
    const int64_t s23[] = {2, 3}, t31[] = {3, 1}, t14[] = {1, 4}, s3[] = {3}, t0[] = {0};

    /* Views read back against values worked out by hand; a folder name with a dot. */
    buf pk = {0};
    p_begin(&pk);
    p_str(&pk, "m");
    p_tensor(&pk, "FloatStorage", "0", 12, 1, 2, s23, t31); /* rows 1..3, 4..6 */
    p_str(&pk, "mt");
    p_tensor(&pk, "FloatStorage", "0", 12, 0, 2, s23, t14); /* [[0,4,8],[1,5,9]] */
    p_str(&pk, "h");
    p_tensor(&pk, "HalfStorage", "1", 4, 1, 1, s3, (const int64_t[]){1});
    p_str(&pk, "bb");
    p_tensor(&pk, "BFloat16Storage", "2", 3, 2, 1, s3, t0); /* 2, 2, 2 */
    p_str(&pk, "empty");
    p_tensor(&pk, "FloatStorage", "0", 12, 12, 1, (const int64_t[]){0}, (const int64_t[]){1});
    p_end(&pk);
    pth_file *f = NULL;
    uint8_t *zip = NULL;
    int rc = parse_pickle(&pk, "my.model-v2", &f, &zip, err, sizeof err);
    tu_check(rc == 0, "hand-built state dict parses (%s)", rc ? err : "ok");
    if (rc == 0) {
        float v[6];
        static const float want_m[6] = {1, 2, 3, 4, 5, 6}, want_mt[6] = {0, 4, 8, 1, 5, 9},
                           want_h[3] = {2, 3, 4}, want_b[3] = {2, 2, 2};
        tu_check(strcmp(pth_archive(f), "my.model-v2") == 0, "archive folder 'my.model-v2'");
        tu_check(pth_to_f32(pth_find(f, "m"), v, 6, err, sizeof err) == 0 &&
                     memcmp(v, want_m, sizeof want_m) == 0,
                 "offset view reads 1..6");
        tu_check(pth_to_f32(pth_find(f, "mt"), v, 6, err, sizeof err) == 0 &&
                     memcmp(v, want_mt, sizeof want_mt) == 0,
                 "strided view (1, 4) reads 0 4 8 1 5 9");
        tu_check(pth_to_f32(pth_find(f, "h"), v, 3, err, sizeof err) == 0 &&
                     memcmp(v, want_h, sizeof want_h) == 0,
                 "f16 view at offset 1 reads 2 3 4");
        tu_check(pth_to_f32(pth_find(f, "bb"), v, 3, err, sizeof err) == 0 &&
                     memcmp(v, want_b, sizeof want_b) == 0,
                 "bf16 stride-0 view reads 2 2 2");
        const pth_tensor *e = pth_find(f, "empty");
        tu_check(e && e->numel == 0 && pth_to_f32(e, v, 0, err, sizeof err) == 0,
                 "empty view at the storage's end is accepted");
        pth_close(f);
    }
    free(zip);

    /* The machine's refusals, one per rule. */
#define CASE(what, bytes, needle)                                                                  \
    { what, bytes, sizeof(bytes) - 1, needle }
    static const struct {
        const char *what, *bytes;
        size_t n;
        const char *needle;
    } cases[] = {
        CASE("stack underflow", "\x80\x02\x85.", "stack underflow"),
        CASE("no STOP", "\x80\x02}", "ends without STOP"),
        CASE("bytes after STOP", "\x80\x02}.}", "1 bytes follow STOP"),
        CASE("two results", "\x80\x02}}.", "STOP with 2 stack entries"),
        CASE("top is not a dict", "\x80\x02).", "holds a tuple, expected a state dict"),
        CASE("value is not a tensor",
             "\x80\x02}X\x01\x00\x00\x00"
             "aK\x01s.",
             "key 'a' holds an int"),
        CASE("key is not a str", "\x80\x02}K\x01K\x01s.", "has an int as its key"),
        CASE("unset memo", "\x80\x02h\x05", "memo index 5 was never stored"),
        CASE("huge memo index", "\x80\x02}r\xff\xff\xff\x7f",
             "memo index 2147483647 is out of range"),
        CASE("string past the end",
             "\x80\x02X\xf0\xff\x00\x00"
             "ab",
             "runs past the end"),
        CASE("string over the limit", "\x80\x02X\xf0\xff\xff\x7f", "over the reader's limit"),
        CASE("9-byte LONG1", "\x80\x02\x8a\x09", "does not fit 64 bits"),
        CASE("protocol 1", "\x80\x01}.", "protocol 1"),
        CASE("PROTO twice", "\x80\x02\x80\x02}.", "expected 2..5 at byte 0"),
        CASE("no PROTO", "}.", "does not start with a pickle PROTO"),
        CASE("SETITEMS odd", "\x80\x02}(K\x01u.", "odd number"),
        CASE("SETITEMS on a list", "\x80\x02](K\x01K\x02u.", "SETITEMS without a dict"),
        CASE("APPEND to a dict",
             "\x80\x02}K\x01"
             "a.",
             "APPEND to a dict"),
        CASE("BUILD on a list", "\x80\x02]}b.", "BUILD of a list"),
        CASE("REDUCE on a storage",
             "\x80\x02"
             "ctorch\nFloatStorage\n)R.",
             "not callable"),
        CASE("OrderedDict with args",
             "\x80\x02"
             "ccollections\nOrderedDict\nK\x01\x85R.",
             "OrderedDict called with 1 arguments"),
        CASE("REDUCE on a str",
             "\x80\x02X\x01\x00\x00\x00"
             "a)R.",
             "callable is a str"),
        CASE("global without newline",
             "\x80\x02"
             "cos",
             "no newline"),
        CASE("nested module path",
             "\x80\x02"
             "ctorch._utils.os\nsystem\n",
             "torch._utils.os.system"),
        CASE("subprocess",
             "\x80\x02"
             "csubprocess\nPopen\n",
             "'subprocess.Popen' is refused"),
        CASE("POP", "\x80\x02}0.", "opcode POP (0x30) is refused"),
        CASE("OBJ", "\x80\x02(ccollections\nOrderedDict\no.", "opcode OBJ"),
        CASE("NEWOBJ",
             "\x80\x02"
             "ccollections\nOrderedDict\n)\x81.",
             "opcode NEWOBJ"),
        CASE("BINPERSID of an int", "\x80\x02K\x01Q.", "persistent id is an int"),
        CASE("persistent id of 4", "\x80\x02(X\x07\x00\x00\x00storageK\x01K\x01K\x01tQ.",
             "persistent id is a tuple of another shape"),
        CASE("MARK without close", "\x80\x02}(.", "open MARKs"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b = {0};
        put(&b, cases[i].bytes, cases[i].n);
        refuse_pickle(cases[i].what, &b, cases[i].needle);
        free(b.p);
    }

    /* Refusals of tensors and storages. */
    struct {
        const char *what, *stype, *key, *needle;
        int64_t numel, off;
        int ndim;
        int64_t size[9], stride[9];
    } tc[] = {
        {"view past the storage",
         "FloatStorage",
         "0",
         "reaches element 12",
         12,
         7,
         2,
         {2, 3},
         {3, 1}},
        {"offset past an empty view",
         "FloatStorage",
         "0",
         "reaches element 13",
         12,
         13,
         1,
         {0},
         {1}},
        {"negative stride", "FloatStorage", "0", "non-negative", 12, 11, 1, {3}, {-1}},
        {"nine dimensions",
         "FloatStorage",
         "0",
         "length <= 8",
         12,
         0,
         9,
         {1, 1, 1, 1, 1, 1, 1, 1, 1},
         {1, 1, 1, 1, 1, 1, 1, 1, 1}},
        {"extent overflow",
         "FloatStorage",
         "0",
         "overflows",
         12,
         0,
         2,
         {3, 2},
         {INT64_MAX / 2, INT64_MAX / 2}},
        {"wrong numel", "FloatStorage", "0", "size mismatch", 11, 0, 1, {3}, {1}},
        {"wrong storage type", "HalfStorage", "0", "size mismatch", 12, 0, 1, {3}, {1}},
        {"key with a slash", "FloatStorage", "../0", "byte 0x2e", 12, 0, 1, {3}, {1}},
        {"missing key", "FloatStorage", "7", "needs member 'archive/data/7'", 12, 0, 1, {3}, {1}},
    };
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++) {
        buf b = {0};
        p_begin(&b);
        p_str(&b, "t");
        p_tensor(&b, tc[i].stype, tc[i].key, tc[i].numel, tc[i].off, tc[i].ndim, tc[i].size,
                 tc[i].stride);
        p_end(&b);
        refuse_pickle(tc[i].what, &b, tc[i].needle);
        free(b.p);
    }
    { /* Duplicate key; one storage declared with two types. */
        buf b = {0};
        p_begin(&b);
        p_str(&b, "t");
        p_tensor(&b, "FloatStorage", "0", 12, 0, 1, s3, (const int64_t[]){1});
        p_str(&b, "t");
        p_tensor(&b, "FloatStorage", "0", 12, 3, 1, s3, (const int64_t[]){1});
        p_end(&b);
        refuse_pickle("duplicate key", &b, "key 't' appears twice");
        b.n = 0;
        p_begin(&b);
        p_str(&b, "a");
        p_tensor(&b, "FloatStorage", "0", 12, 0, 1, s3, (const int64_t[]){1});
        p_str(&b, "b");
        p_tensor(&b, "IntStorage", "0", 12, 0, 1, s3, (const int64_t[]){1});
        p_end(&b);
        refuse_pickle("storage redeclared", &b, "declared again as 12 x I32, first as 12 x F32");
        /* _rebuild_parameter with the wrong arity. */
        b.n = 0;
        p_begin(&b);
        p_str(&b, "p");
        put_s(&b, "ctorch._utils\n_rebuild_parameter\n(");
        p_tensor(&b, "FloatStorage", "0", 12, 0, 1, s3, (const int64_t[]){1});
        put_s(&b, "tR");
        p_end(&b);
        refuse_pickle("_rebuild_parameter(tensor)", &b, "_rebuild_parameter takes");
        free(b.p);
    }
    { /* Limits: 70 000 open MARKs, 2 M stack entries. */
        buf b = {0};
        put_s(&b, "\x80\x02");
        for (int i = 0; i < 70000; i++) put_u8(&b, '(');
        refuse_pickle("70000 MARKs", &b, "more than 65536 open MARKs");
        b.n = 0;
        put_s(&b, "\x80\x02");
        for (int i = 0; i < (1 << 20) + 5; i++) put_u8(&b, 'N');
        refuse_pickle("2^20 + 5 stack entries", &b, "more than 1048576 stack entries");
        free(b.p);
    }
    { /* Container damage built here: two archive folders; a member whose local name differs. */
        buf pk0 = {0};
        put_s(&pk0, "\x80\x02}.");
        member m[] = {{"a/data.pkl", pk0.p, pk0.n}, {"b/data.pkl", pk0.p, pk0.n}};
        buf z = {0};
        build_zip(&z, m, 2);
        pth_file *f2 = NULL;
        rc = pth_parse(z.p, z.n, "two.pth", &f2, err, sizeof err);
        tu_check(rc < 0 && strstr(err, "two archive folders"), "two data.pkl refused: %s", err);
        build_zip(&z, m, 1);
        rc = pth_parse(z.p, z.n, "empty.pth", &f2, err, sizeof err);
        tu_check(rc == 0 && pth_count(f2) == 0, "an empty state dict is a valid, empty file");
        pth_close(f2);
        z.p[30] = 'x'; /* the local header's copy of the name */
        rc = pth_parse(z.p, z.n, "name.pth", &f2, err, sizeof err);
        tu_check(rc < 0 && strstr(err, "has another name"), "local/central name mismatch: %s", err);
        member none[] = {{"archive/version", (const uint8_t *)"3\n", 2}};
        build_zip(&z, none, 1);
        rc = pth_parse(z.p, z.n, "nopkl.pth", &f2, err, sizeof err);
        tu_check(rc < 0 && strstr(err, "no '<archive>/data.pkl' member"), "no data.pkl: %s", err);
        free(z.p);
        free(pk0.p);
    }
    free(pk.p);
}

/* Every truncation and every single-bit flip of a small archive: refused cleanly or parsed into
 * a consistent file. Under the sanitizer build this is where out-of-bounds reads would show. */
static void check_damage(void) {
    char path[1024], err[512];
    fixture(path, sizeof path, "file_object.pth");
    size_t len;
    uint8_t *whole = slurp(path, &len);
    if (whole == NULL) {
        tu_check(0, "cannot read %s", path);
        return;
    }
    size_t bad = 0, ok = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1); /* exact size: ASan sees one-past reads */
        memcpy(cut, whole, n);
        pth_file *f = NULL;
        err[0] = '\0';
        int rc = pth_parse(cut, n, "cut", &f, err, sizeof err);
        if (rc == 0 || f != NULL || err[0] == '\0') bad++;
        pth_close(f);
        free(cut);
    }
    tu_check(bad == 0, "every one of %zu truncations refused with a message", len);
    bad = 0;
    uint8_t *flip = malloc(len);
    for (size_t i = 0; i < len * 8; i++) {
        memcpy(flip, whole, len);
        flip[i / 8] ^= (uint8_t)(1u << (i % 8));
        pth_file *f = NULL;
        err[0] = '\0';
        int rc = pth_parse(flip, len, "flip", &f, err, sizeof err);
        if (rc == 0) {
            ok++;
            for (size_t k = 0; k < pth_count(f); k++) {
                const pth_tensor *t = pth_get(f, k);
                float v[16];
                if (t->numel <= 16 && t->dtype == PTH_F32 &&
                    pth_to_f32(t, v, (size_t)t->numel, err, sizeof err) != 0)
                    bad++;
            }
        } else if (rc > 0 || f != NULL || err[0] == '\0') {
            bad++;
        }
        pth_close(f);
    }
    tu_check(bad == 0,
             "%zu bit flips: %zu still parse (padding, values, names), the rest refused "
             "with a message",
             len * 8, ok);
    free(flip);
    free(whole);
}

/* ---------------------------------------------------------------------------------------------
 * tensor_source: the same tensors from a safetensors file and from a .pth */

static void check_tensor_source(void) {
    char path[1024], err[512] = "";
    fixture(path, sizeof path, "state_dict.pth");
    ts_source *p = NULL;
    if (ts_open(path, &p, err, sizeof err) != 0) {
        tu_check(0, "ts_open %s: %s", path, err);
        return;
    }
    char dir[] = "/tmp/test_pth_XXXXXX";
    if (mkdtemp(dir) == NULL) {
        tu_check(0, "mkdtemp: %s", strerror(errno));
        ts_close(p);
        return;
    }
    char stpath[1100];
    snprintf(stpath, sizeof stpath, "%s/same.safetensors", dir);
    st_writer *w = st_writer_create();
    size_t written = 0;
    for (size_t i = 0; i < ts_count(p); i++) {
        ts_info info;
        ts_info_at(p, i, &info);
        float *v = malloc((size_t)(info.numel ? info.numel : 1) * sizeof(float));
        if (ts_read_f32(p, i, v, (size_t)info.numel, err, sizeof err) == 0 &&
            st_writer_add_f32(w, info.name, info.shape, info.ndim, v, err, sizeof err) == 0)
            written++;
        free(v);
    }
    int rc = st_writer_save(w, stpath, err, sizeof err);
    st_writer_destroy(w);
    ts_source *s = NULL;
    if (rc == 0) rc = ts_open(stpath, &s, err, sizeof err);
    tu_check(rc == 0 && strcmp(ts_format(s), "safetensors") == 0 && ts_count(s) == written,
             "safetensors copy of %zu float tensors opens as safetensors (%s)", written,
             rc ? err : "ok");
    size_t same = 0, compared = 0;
    for (size_t i = 0; s && i < ts_count(p); i++) {
        ts_info a, b;
        ts_info_at(p, i, &a);
        long j = ts_find(s, a.name);
        if (strcmp(a.dtype, "I64") == 0) {
            tu_check(j < 0, "'%s' (I64) has no float copy", a.name);
            continue;
        }
        compared++;
        if (j < 0 || ts_info_at(s, (size_t)j, &b) != 0) continue;
        size_t n = (size_t)a.numel;
        float *x = malloc((n ? n : 1) * 4), *y = malloc((n ? n : 1) * 4);
        bool eq = strcmp(a.name, b.name) == 0 && a.ndim == b.ndim && a.numel == b.numel &&
                  memcmp(a.shape, b.shape, sizeof a.shape) == 0 && strcmp(b.dtype, "F32") == 0 &&
                  ts_read_f32(p, i, x, n, err, sizeof err) == 0 &&
                  ts_read_f32(s, (size_t)j, y, n, err, sizeof err) == 0 && memcmp(x, y, n * 4) == 0;
        same += eq;
        free(x);
        free(y);
    }
    tu_check(compared > 0 && same == compared,
             "pth and safetensors sources: %zu/%zu tensors with the same name, shape and values",
             same, compared);
    float one;
    tu_check(ts_find(s, "no such tensor") == -1 && ts_find(p, "no such tensor") == -1,
             "ts_find of an absent name is -1 in both formats");
    rc = ts_read_f32(s, 0, &one, 0, err, sizeof err);
    tu_check(rc == ENG_EINVAL, "ts_read_f32 with a wrong count: %s", err);
    ts_close(s);
    ts_close(p);
    unlink(stpath);
    rmdir(dir);

    /* Opening errors name the file; a missing file is an I/O error. */
    rc = ts_open("/nonexistent/x.pth", &s, err, sizeof err);
    tu_check(rc == ENG_EIO && s == NULL && strstr(err, "/nonexistent/x.pth"), "missing file: %s",
             err);
}

int main(int argc, char **argv) {
    if (argc > 1) fixdir = argv[1];
    char path[1024];
    fixture(path, sizeof path, "expected.json");
    size_t len;
    char *text = (char *)slurp(path, &len);
    if (text != NULL) {
        char *t = realloc(text, len + 1);
        if (t != NULL) {
            text = t;
            text[len] = '\0';
            expected = cJSON_Parse(text);
        }
        free(text);
    }
    tu_check(expected != NULL, "expected values read from %s", path);
    if (expected == NULL) return tu_finish("test_pth");
    printf("expected.json written by torch %s\n",
           cJSON_GetObjectItemCaseSensitive(expected, "torch_version")->valuestring);
    check_good("state_dict.pth");
    check_good("stem_differs.pth");
    check_good("file_object.pth");
    check_good("zip64.pth");
    check_views();
    check_hostile();
    check_built();
    check_damage();
    check_tensor_source();
    cJSON_Delete(expected);
    return tu_finish("test_pth");
}
