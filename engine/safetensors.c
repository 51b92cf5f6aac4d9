/* safetensors reader and writer. The reader maps the file (or takes a caller's buffer), parses the
 * JSON header with cJSON and checks every entry before handing anything out, so the rest of the
 * engine can trust st_tensor fields without re-checking them: a file either passes as a whole or is
 * rejected with one message naming the file, the key and what was expected. The writer only makes
 * float32 files (checkpoints we export and test fixtures) and writes them atomically.
 *
 * Return codes: 0 on success, -EINVAL for a malformed file or bad argument, -ENOMEM when an
 * allocation fails, -errno of the failing call for I/O errors. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include "engine/half.h"
#include "engine/safetensors.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format is little-endian; F32 data is handed out by memcpy, which is only right on a
 * little-endian host. Every machine we build for is, so refuse to build rather than carry a
 * byte-swapping path nobody tests. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_PREFIX_BYTES 8u
/* cJSON numbers are doubles. Integers below 2^53 survive the decimal -> double conversion exactly,
 * and a decimal literal >= 2^53 can never round to a double below 2^53, so rejecting every value
 * >= 2^53 means an accepted value is exactly the integer written in the file. (2^53 itself is
 * rejected too: 2^53 + 1 rounds down to it.) */
#define ST_MAX_JSON_INT 9007199254740992.0 /* 2^53 */
/* Names are printed into messages capped at this many bytes so a hostile 1 MB key cannot drown
 * the message that points at it. */
#define ST_NAME_SHOWN 200

static const char *const dtype_names[ST_DTYPE_COUNT] = {
    "BOOL", "U8",  "I8",  "I16", "U16", "F16",     "BF16",    "I32",
    "U32",  "F32", "F64", "I64", "U64", "F8_E4M3", "F8_E5M2",
};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};

struct st_file {
    char *origin;
    void *map; /* non-NULL when we own an mmap of map_len bytes */
    size_t map_len;
    st_tensor *tensors; /* header order */
    size_t count;
    const st_tensor **by_name; /* sorted by strcmp for st_find */
    const char **meta_keys;
    const char **meta_vals;
    size_t meta_count;
    char *strings; /* one arena holding every tensor name and metadata string */
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) memcpy(d, s, n);
    return d;
}

const char *st_dtype_name(st_dtype d) {
    return ((unsigned)d < ST_DTYPE_COUNT) ? dtype_names[d] : "?";
}

size_t st_dtype_size(st_dtype d) {
    return ((unsigned)d < ST_DTYPE_COUNT) ? dtype_sizes[d] : 0;
}

static int dtype_from_name(const char *s, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_names[i]) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    return "a raw value";
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as the reference library
 * demands of the header. Returns the offset of the first bad byte or n when all is well. */
static size_t utf8_bad_offset(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1Fu, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0Fu, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= need) return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += need + 1;
    }
    return n;
}

/* Renders a shape as "[5, 6]" for messages. */
static void format_shape(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t pos = 0;
    int w = snprintf(buf, len, "[");
    pos = (w > 0) ? (size_t)w : 0;
    for (int i = 0; i < ndim && pos < len; i++) {
        w = snprintf(buf + pos, len - pos, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0) return;
        pos += (size_t)w;
    }
    if (pos < len) snprintf(buf + pos, len - pos, "]");
}

/* ---------------------------------------------------------------------------------------------
 * Parsing */

typedef struct parse_ctx {
    const char *origin;
    char *err;
    size_t errlen;
} parse_ctx;

static int perr(const parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(const parse_ctx *c, const char *fmt, ...) {
    if (c->err != NULL && c->errlen > 0) {
        int w = snprintf(c->err, c->errlen, "%s: ", c->origin);
        size_t pos = (w > 0) ? (size_t)w : 0;
        if (pos < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + pos, c->errlen - pos, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static int oom(const parse_ctx *c, const char *what) {
    if (c->err != NULL && c->errlen > 0)
        snprintf(c->err, c->errlen, "%s: out of memory allocating %s", c->origin, what);
    return -ENOMEM;
}

/* Reads a JSON number that must be a non-negative integer below 2^53. On failure writes why into
 * `why` (e.g. "is negative (-3)") and returns -1. */
static int json_uint(const cJSON *v, uint64_t *out, char *why, size_t whylen) {
    if (!cJSON_IsNumber(v)) {
        snprintf(why, whylen, "is %s, expected a non-negative integer", json_kind(v));
        return -1;
    }
    double d = v->valuedouble;
    if (isnan(d)) {
        snprintf(why, whylen, "is NaN, expected a non-negative integer");
        return -1;
    }
    /* signbit also catches "-0", which no writer produces and the reference library rejects. */
    if (signbit(d)) {
        snprintf(why, whylen, "is negative (%.17g), expected a non-negative integer", d);
        return -1;
    }
    if (!isfinite(d) || d >= ST_MAX_JSON_INT) {
        snprintf(why, whylen, "is too large (%.17g), expected an integer below 2^53", d);
        return -1;
    }
    if (d != floor(d)) {
        snprintf(why, whylen, "is not an integer (%.17g)", d);
        return -1;
    }
    *out = (uint64_t)d;
    return 0;
}

/* cJSON accepts number spellings that JSON and the reference library do not ("1e2", "10.0",
 * "007") and turns them into integral doubles that json_uint cannot tell apart from "100". Every
 * number in a valid header is a shape dim or an offset, so a lexical pass over the raw header
 * enforces plain integer spelling; it runs after the entries are checked so that "1.5" gets the
 * message naming its tensor. The same scan, run first with numbers == false, rejects "\u0000" in
 * strings: cJSON would cut the name there, so different keys could collide or a name could
 * silently change. */
static int check_literals(const parse_ctx *c, const char *h, size_t n, bool numbers) {
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = h[i];
        if (in_str) {
            if (ch == '\\' && i + 1 < n) {
                if (h[i + 1] == 'u' && i + 5 < n && memcmp(h + i + 2, "0000", 4) == 0)
                    return perr(c,
                                "header byte %zu: string contains \\u0000, which names and "
                                "metadata may not contain",
                                i);
                i++;
            } else if (ch == '"') {
                in_str = false;
            }
            continue;
        }
        if (ch == '"') {
            in_str = true;
            continue;
        }
        if (!numbers || (ch != '-' && (ch < '0' || ch > '9'))) continue;
        size_t j = i + (ch == '-');
        size_t k = j;
        while (k < n && h[k] >= '0' && h[k] <= '9') k++;
        bool bad =
            (k == j) || (k - j > 1 && h[j] == '0') ||
            (k < n && (h[k] == '.' || h[k] == 'e' || h[k] == 'E' || h[k] == '+' || h[k] == '-'));
        if (bad) {
            size_t e = k;
            while (e < n && e - i < 40 &&
                   ((h[e] >= '0' && h[e] <= '9') || strchr(".eE+-", h[e]) != NULL))
                e++;
            return perr(c,
                        "header byte %zu: number '%.*s' is not a plain integer; shape and "
                        "data_offsets must be written as decimal integers",
                        i, (int)(e - i), h + i);
        }
        i = k - 1;
    }
    return 0;
}

/* Validates one tensor entry and fills *t (except name and data, set by the caller). */
static int parse_entry(const parse_ctx *c, const cJSON *item, uint64_t data_len, st_tensor *t) {
    const char *name = item->string;
    const int nshow = ST_NAME_SHOWN;
    char why[160];
    if (!cJSON_IsObject(item))
        return perr(c,
                    "tensor '%.*s': entry is %s, expected an object with dtype, shape and "
                    "data_offsets",
                    nshow, name, json_kind(item));

    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    const cJSON *field;
    cJSON_ArrayForEach(field, item) {
        const char *key = field->string ? field->string : "";
        const cJSON **slot = NULL;
        if (strcmp(key, "dtype") == 0)
            slot = &dt;
        else if (strcmp(key, "shape") == 0)
            slot = &sh;
        else if (strcmp(key, "data_offsets") == 0)
            slot = &off;
        else
            return perr(c,
                        "tensor '%.*s': unknown field '%.*s'; expected only dtype, shape and "
                        "data_offsets",
                        nshow, name, nshow, key);
        if (*slot != NULL)
            return perr(c, "tensor '%.*s': field '%s' appears twice", nshow, name, key);
        *slot = field;
    }
    if (dt == NULL) return perr(c, "tensor '%.*s': missing field 'dtype'", nshow, name);
    if (sh == NULL) return perr(c, "tensor '%.*s': missing field 'shape'", nshow, name);
    if (off == NULL) return perr(c, "tensor '%.*s': missing field 'data_offsets'", nshow, name);

    if (!cJSON_IsString(dt))
        return perr(c, "tensor '%.*s': dtype is %s, expected a string such as \"F32\"", nshow, name,
                    json_kind(dt));
    if (dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return perr(c,
                    "tensor '%.*s': unknown dtype '%.*s'; expected one of BOOL, U8, I8, I16, "
                    "U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2",
                    nshow, name, 40, dt->valuestring);

    if (!cJSON_IsArray(sh))
        return perr(c, "tensor '%.*s': shape is %s, expected an array of dims", nshow, name,
                    json_kind(sh));
    int ndim = 0;
    bool any_zero = false;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, sh) {
        if (ndim == ST_MAX_DIMS)
            return perr(c, "tensor '%.*s': shape has more than %d dims", nshow, name, ST_MAX_DIMS);
        uint64_t v;
        if (json_uint(dim, &v, why, sizeof why) != 0)
            return perr(c, "tensor '%.*s': shape[%d] %s", nshow, name, ndim, why);
        t->shape[ndim++] = (int64_t)v;
        any_zero |= (v == 0);
    }
    t->ndim = ndim;
    char shape_s[ST_MAX_DIMS * 20 + 8];
    format_shape(shape_s, sizeof shape_s, t->shape, ndim);

    /* numel is exact or the entry is rejected: a zero dim makes it 0 whatever the others are,
     * otherwise the product must fit in int64. */
    uint64_t numel = 1;
    if (any_zero) {
        numel = 0;
    } else {
        for (int i = 0; i < ndim; i++) {
            uint64_t d = (uint64_t)t->shape[i];
            if (numel > (uint64_t)INT64_MAX / d)
                return perr(c, "tensor '%.*s': shape %s has more than 2^63 elements", nshow, name,
                            shape_s);
            numel *= d;
        }
    }
    t->numel = (int64_t)numel;

    if (!cJSON_IsArray(off))
        return perr(c, "tensor '%.*s': data_offsets is %s, expected [begin, end]", nshow, name,
                    json_kind(off));
    uint64_t ofs[2];
    int nofs = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, off) {
        if (nofs == 2) {
            nofs = 3;
            break;
        }
        if (json_uint(o, &ofs[nofs], why, sizeof why) != 0)
            return perr(c, "tensor '%.*s': data_offsets[%d] %s", nshow, name, nofs, why);
        nofs++;
    }
    if (nofs != 2)
        return perr(c,
                    "tensor '%.*s': data_offsets has %s entries, expected exactly 2 "
                    "([begin, end])",
                    nshow, name, nofs < 2 ? "too few" : "too many");
    if (ofs[0] > ofs[1])
        return perr(c, "tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64 "] has begin > end",
                    nshow, name, ofs[0], ofs[1]);
    if (ofs[1] > data_len)
        return perr(c,
                    "tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64 "] end past the end "
                    "of the data buffer, which is %" PRIu64 " bytes",
                    nshow, name, ofs[0], ofs[1], data_len);
    uint64_t span = ofs[1] - ofs[0];
    uint64_t esz = dtype_sizes[t->dtype];
    if (numel > UINT64_MAX / esz || numel * esz != span) {
        char need[48];
        if (numel > UINT64_MAX / esz)
            snprintf(need, sizeof need, "more than 2^64");
        else
            snprintf(need, sizeof need, "%" PRIu64, numel * esz);
        return perr(c,
                    "tensor '%.*s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                    " bytes but shape %s x %s needs %s",
                    nshow, name, ofs[0], ofs[1], span, shape_s, dtype_names[t->dtype], need);
    }
    t->nbytes = (size_t)span;
    t->offset = (size_t)ofs[0]; /* relative to the data buffer for now; caller rebases */
    return 0;
}

static int cmp_by_name(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

void st_close(st_file *f) {
    if (f == NULL) return;
    if (f->map != NULL) munmap(f->map, f->map_len);
    free(f->origin);
    free(f->tensors);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->strings);
    free(f);
}

/* Validates the bytes and builds *out. On success f takes ownership of `map` (if any); on failure
 * the caller still owns it. */
static int parse_common(const uint8_t *buf, size_t len, const char *origin, st_file **out,
                        char *err, size_t errlen) {
    parse_ctx c = {origin, err, errlen};
    cJSON *root = NULL;
    st_file *f = NULL;
    const st_tensor **by_off = NULL;
    int rc;

    if (len == 0)
        return perr(&c, "file is empty (0 bytes), shorter than the 8-byte safetensors length "
                        "prefix");
    if (len < ST_PREFIX_BYTES)
        return perr(&c, "file is %zu bytes, shorter than the 8-byte safetensors length prefix",
                    len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    /* The limit check comes first so a huge length is reported as such, not as "past the end". */
    if (n > ST_MAX_HEADER_BYTES)
        return perr(&c, "header length %" PRIu64 " exceeds the limit of %u bytes", n,
                    ST_MAX_HEADER_BYTES);
    if (n > len - ST_PREFIX_BYTES)
        return perr(&c,
                    "header length %" PRIu64 " runs past the end of the file: the file is "
                    "%zu bytes, so at most %zu header bytes follow the 8-byte prefix",
                    n, len, len - ST_PREFIX_BYTES);
    if (n == 0) return perr(&c, "header length is 0, expected a JSON object starting at byte 8");

    const char *hdr = (const char *)buf + ST_PREFIX_BYTES;
    size_t hlen = (size_t)n;
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
    if (root == NULL) {
        size_t at = (end != NULL && end >= hdr && end <= hdr + hlen) ? (size_t)(end - hdr) : 0;
        return perr(&c, "header is not valid JSON (parse error at header byte %zu, file byte %zu)",
                    at, at + ST_PREFIX_BYTES);
    }
    if (!cJSON_IsObject(root)) {
        rc = perr(&c, "header JSON is %s, expected an object mapping tensor names to entries",
                  json_kind(root));
        goto fail;
    }
    /* cJSON skips leading whitespace and a BOM; the format does not allow either. */
    if (buf[ST_PREFIX_BYTES] != '{') {
        rc = perr(&c,
                  "file byte 8 is 0x%02x, expected '{' opening the header JSON object "
                  "(no leading whitespace or BOM)",
                  buf[ST_PREFIX_BYTES]);
        goto fail;
    }
    for (const char *p = end; p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = perr(&c,
                      "header byte %zu is 0x%02x after the end of the JSON object; only "
                      "whitespace padding may follow it",
                      (size_t)(p - hdr), (unsigned char)*p);
            goto fail;
        }
    }
    size_t bad = utf8_bad_offset((const uint8_t *)hdr, hlen);
    if (bad != hlen) {
        rc = perr(&c, "header byte %zu is not valid UTF-8", bad);
        goto fail;
    }

    rc = check_literals(&c, hdr, (size_t)(end - hdr), false);
    if (rc != 0) goto fail;

    /* First pass: count entries and string bytes so one allocation of each kind suffices. */
    size_t ntensors = 0, nmeta = 0, strbytes = 0;
    const cJSON *meta = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (item->string == NULL) { /* cannot happen for an object; keep the invariant local */
            rc = perr(&c, "header object has an entry without a name");
            goto fail;
        }
        if (strcmp(item->string, "__metadata__") == 0) {
            if (meta != NULL) {
                rc = perr(&c, "key '__metadata__' appears twice in the header");
                goto fail;
            }
            meta = item;
            if (!cJSON_IsObject(meta)) {
                rc = perr(&c, "'__metadata__' is %s, expected an object of string values",
                          json_kind(meta));
                goto fail;
            }
            const cJSON *kv;
            cJSON_ArrayForEach(kv, meta) {
                const char *k = kv->string ? kv->string : "";
                if (!cJSON_IsString(kv)) {
                    rc = perr(&c, "'__metadata__' key '%.*s' is %s, expected a string",
                              ST_NAME_SHOWN, k, json_kind(kv));
                    goto fail;
                }
                nmeta++;
                strbytes += strlen(k) + 1 + strlen(kv->valuestring) + 1;
            }
            continue;
        }
        if (item->string[0] == '\0') {
            rc = perr(&c, "a tensor has an empty name ''; names must be non-empty");
            goto fail;
        }
        ntensors++;
        strbytes += strlen(item->string) + 1;
    }

    f = calloc(1, sizeof *f);
    if (f == NULL) {
        rc = oom(&c, "the file object");
        goto fail;
    }
    f->origin = dup_str(origin);
    f->tensors = calloc(ntensors ? ntensors : 1, sizeof *f->tensors);
    f->by_name = calloc(ntensors ? ntensors : 1, sizeof *f->by_name);
    by_off = calloc(ntensors ? ntensors : 1, sizeof *by_off);
    f->meta_keys = calloc(nmeta ? nmeta : 1, sizeof *f->meta_keys);
    f->meta_vals = calloc(nmeta ? nmeta : 1, sizeof *f->meta_vals);
    f->strings = malloc(strbytes ? strbytes : 1);
    if (f->origin == NULL || f->tensors == NULL || f->by_name == NULL || by_off == NULL ||
        f->meta_keys == NULL || f->meta_vals == NULL || f->strings == NULL) {
        rc = oom(&c, "the tensor table");
        goto fail;
    }

    size_t data_start = ST_PREFIX_BYTES + hlen;
    uint64_t data_len = (uint64_t)(len - data_start);
    char *sp = f->strings;
    size_t ti = 0;
    cJSON_ArrayForEach(item, root) {
        if (item == meta) continue;
        st_tensor *t = &f->tensors[ti];
        rc = parse_entry(&c, item, data_len, t);
        if (rc != 0) goto fail;
        size_t nl = strlen(item->string) + 1;
        memcpy(sp, item->string, nl);
        t->name = sp;
        sp += nl;
        t->data = buf + data_start + t->offset;
        f->by_name[ti] = t;
        by_off[ti] = t;
        ti++;
    }
    f->count = ntensors;
    if (meta != NULL) {
        size_t mi = 0;
        const cJSON *kv;
        cJSON_ArrayForEach(kv, meta) {
            size_t kl = strlen(kv->string) + 1, vl = strlen(kv->valuestring) + 1;
            memcpy(sp, kv->string, kl);
            f->meta_keys[mi] = sp;
            sp += kl;
            memcpy(sp, kv->valuestring, vl);
            f->meta_vals[mi] = sp;
            sp += vl;
            for (size_t j = 0; j < mi; j++) {
                if (strcmp(f->meta_keys[j], f->meta_keys[mi]) == 0) {
                    rc = perr(&c, "'__metadata__' key '%.*s' appears twice", ST_NAME_SHOWN,
                              f->meta_keys[mi]);
                    goto fail;
                }
            }
            mi++;
        }
        f->meta_count = mi;
    }

    rc = check_literals(&c, hdr, (size_t)(end - hdr), true);
    if (rc != 0) goto fail;

    /* cJSON keeps duplicate keys; after sorting they are neighbours. */
    qsort(f->by_name, ntensors, sizeof *f->by_name, cmp_by_name);
    for (size_t i = 1; i < ntensors; i++) {
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            rc = perr(&c, "tensor name '%.*s' appears twice in the header", ST_NAME_SHOWN,
                      f->by_name[i]->name);
            goto fail;
        }
    }
    /* Gaps between tensors are allowed (the reference library forbids them; we have no reason
     * to), overlaps are not. Empty tensors occupy no bytes and overlap nothing. */
    qsort(by_off, ntensors, sizeof *by_off, cmp_by_offset);
    const st_tensor *prev = NULL;
    for (size_t i = 0; i < ntensors; i++) {
        const st_tensor *t = by_off[i];
        if (t->nbytes == 0) continue;
        if (prev != NULL && t->offset < prev->offset + prev->nbytes) {
            rc = perr(&c,
                      "tensors '%.*s' data_offsets [%zu, %zu] and '%.*s' data_offsets "
                      "[%zu, %zu] overlap",
                      ST_NAME_SHOWN, prev->name, prev->offset, prev->offset + prev->nbytes,
                      ST_NAME_SHOWN, t->name, t->offset, t->offset + t->nbytes);
            goto fail;
        }
        prev = t;
    }
    for (size_t i = 0; i < ntensors; i++) f->tensors[i].offset += data_start;

    free(by_off);
    cJSON_Delete(root);
    *out = f;
    return 0;

fail:
    free(by_off);
    cJSON_Delete(root);
    st_close(f);
    return rc;
}

int st_parse(const uint8_t *buf, size_t len, const char *origin, st_file **out, char *err,
             size_t errlen) {
    if (out == NULL) {
        set_err(err, errlen, "st_parse: out is NULL");
        return -EINVAL;
    }
    *out = NULL;
    if (origin == NULL) origin = "<buffer>";
    if (buf == NULL && len != 0) {
        set_err(err, errlen, "%s: buffer is NULL but length is %zu", origin, len);
        return -EINVAL;
    }
    return parse_common(buf, len, origin, out, err, errlen);
}

int st_open(const char *path, st_file **out, char *err, size_t errlen) {
    if (out == NULL || path == NULL) {
        set_err(err, errlen, "st_open: path or out is NULL");
        if (out != NULL) *out = NULL;
        return -EINVAL;
    }
    *out = NULL;
    /* O_NONBLOCK so that opening a FIFO by mistake fails at fstat below instead of hanging; it
     * has no effect on regular files. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        set_err(err, errlen, "%s: cannot stat: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s: is a directory, expected a safetensors file", path);
        close(fd);
        return -EISDIR;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: is not a regular file, expected a safetensors file", path);
        close(fd);
        return -EINVAL;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
        set_err(err, errlen, "%s: file is %lld bytes, too large to map", path,
                (long long)st.st_size);
        close(fd);
        return -EFBIG;
    }
    size_t len = (size_t)st.st_size;
    /* mmap rejects length 0 and a short file needs no mapping to be rejected: let the parser
     * produce the message from the size alone. */
    if (len < ST_PREFIX_BYTES) {
        close(fd);
        static const uint8_t none[1] = {0};
        return parse_common(none, len, path, out, err, errlen);
    }
    /* MAP_PRIVATE does not guard against another process truncating the file, which would turn
     * later reads into SIGBUS. Checkpoints are replaced by rename (see st_writer_save), never
     * rewritten in place, so the mapping is not copied to protect against that. */
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps its own reference to the file */
    if (map == MAP_FAILED) {
        set_err(err, errlen, "%s: cannot mmap %zu bytes: %s", path, len, strerror(map_errno));
        return -map_errno;
    }
    st_file *f = NULL;
    int rc = parse_common(map, len, path, &f, err, errlen);
    if (rc != 0) {
        munmap(map, len);
        return rc;
    }
    f->map = map;
    f->map_len = len;
    *out = f;
    return 0;
}

const char *st_origin(const st_file *f) {
    return f ? f->origin : NULL;
}

size_t st_count(const st_file *f) {
    return f ? f->count : 0;
}

const st_tensor *st_get(const st_file *f, size_t i) {
    return (f != NULL && i < f->count) ? &f->tensors[i] : NULL;
}

size_t st_index(const st_file *f, const st_tensor *t) {
    return (size_t)(t - f->tensors);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (f == NULL || name == NULL) return NULL;
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(name, f->by_name[mid]->name);
        if (r == 0) return f->by_name[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    if (f == NULL || key == NULL) return NULL;
    /* A handful of entries at most: a linear scan beats any index. */
    for (size_t i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Conversion */

int st_to_f32(const st_tensor *t, float *dst, size_t n, char *err, size_t errlen) {
    if (t == NULL || (dst == NULL && n != 0)) {
        set_err(err, errlen, "st_to_f32: tensor or destination is NULL");
        return -EINVAL;
    }
    if ((uint64_t)n != (uint64_t)t->numel) {
        set_err(err, errlen, "tensor '%.*s': destination holds %zu floats, expected numel %" PRId64,
                ST_NAME_SHOWN, t->name, n, t->numel);
        return -EINVAL;
    }
    /* Data sits at arbitrary file offsets, so every load goes through memcpy: no alignment is
     * assumed. */
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, src, n * sizeof(float));
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            dst[i] = wm_f16_to_f32(h);
        }
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, sizeof h);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, sizeof bits);
        }
        return 0;
    default:
        set_err(err, errlen,
                "tensor '%.*s': dtype %s cannot be converted to float32 (only F32, "
                "F16 and BF16 can)",
                ST_NAME_SHOWN, t->name, st_dtype_name(t->dtype));
        return -EINVAL;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Writer */

typedef struct wtensor {
    char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    float *data;
} wtensor;

struct st_writer {
    wtensor *t;
    size_t n, cap;
    char **mkeys, **mvals;
    size_t mn, mcap;
};

st_writer *st_writer_create(void) {
    return calloc(1, sizeof(st_writer));
}

void st_writer_destroy(st_writer *w) {
    if (w == NULL) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (size_t i = 0; i < w->mn; i++) {
        free(w->mkeys[i]);
        free(w->mvals[i]);
    }
    free(w->t);
    free(w->mkeys);
    free(w->mvals);
    free(w);
}

/* The writer refuses strings the reader would refuse, so a saved file always loads. */
static bool valid_utf8(const char *s) {
    size_t n = strlen(s);
    return utf8_bad_offset((const uint8_t *)s, n) == n;
}

int st_writer_add_f32(st_writer *w, const char *name, const int64_t *shape, int ndim,
                      const float *data, char *err, size_t errlen) {
    if (w == NULL || name == NULL) {
        set_err(err, errlen, "st_writer_add_f32: writer or name is NULL");
        return -EINVAL;
    }
    const int nshow = ST_NAME_SHOWN;
    if (name[0] == '\0' || strcmp(name, "__metadata__") == 0 || !valid_utf8(name)) {
        set_err(err, errlen,
                "tensor '%.*s': name must be non-empty valid UTF-8 and not "
                "'__metadata__'",
                nshow, name);
        return -EINVAL;
    }
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        set_err(err, errlen, "tensor '%.*s': ndim %d, expected 0..%d with a shape array", nshow,
                name, ndim, ST_MAX_DIMS);
        return -EINVAL;
    }
    /* The dim and byte limits mirror the reader's, so it can load what is written. */
    uint64_t numel = 1;
    bool any_zero = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (double)shape[i] >= ST_MAX_JSON_INT) {
            set_err(err, errlen,
                    "tensor '%.*s': shape[%d] is %" PRId64 ", expected 0 <= dim < "
                    "2^53",
                    nshow, name, i, shape[i]);
            return -EINVAL;
        }
        any_zero |= (shape[i] == 0);
    }
    for (int i = 0; i < ndim && !any_zero; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (numel > ((uint64_t)1 << 53) / sizeof(float) / d) {
            set_err(err, errlen, "tensor '%.*s': shape too large (more than 2^53 bytes)", nshow,
                    name);
            return -EINVAL;
        }
        numel *= d;
    }
    if (any_zero) numel = 0;
    if (numel > 0 && data == NULL) {
        set_err(err, errlen, "tensor '%.*s': data is NULL for %" PRIu64 " elements", nshow, name,
                numel);
        return -EINVAL;
    }
    /* Linear: writers hold at most a few thousand tensors and add each once. */
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            set_err(err, errlen, "tensor '%.*s': name already added to this writer", nshow, name);
            return -EINVAL;
        }
    }
    if (w->n == w->cap) {
        size_t ncap = w->cap ? 2 * w->cap : 16;
        wtensor *nt = realloc(w->t, ncap * sizeof *nt);
        if (nt == NULL) {
            set_err(err, errlen, "tensor '%.*s': out of memory growing the writer", nshow, name);
            return -ENOMEM;
        }
        w->t = nt;
        w->cap = ncap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->nbytes = (size_t)numel * sizeof(float);
    t->name = dup_str(name);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    if (t->name == NULL || t->data == NULL) {
        free(t->name);
        free(t->data);
        set_err(err, errlen, "tensor '%.*s': out of memory copying %zu bytes", nshow, name,
                t->nbytes);
        return -ENOMEM;
    }
    if (t->nbytes) memcpy(t->data, data, t->nbytes);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    w->n++;
    return 0;
}

int st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (w == NULL || key == NULL || value == NULL || !valid_utf8(key) || !valid_utf8(value))
        return -EINVAL;
    for (size_t i = 0; i < w->mn; i++) {
        if (strcmp(w->mkeys[i], key) == 0) {
            char *v = dup_str(value);
            if (v == NULL) return -ENOMEM;
            free(w->mvals[i]);
            w->mvals[i] = v;
            return 0;
        }
    }
    if (w->mn == w->mcap) {
        size_t ncap = w->mcap ? 2 * w->mcap : 8;
        char **nk = realloc(w->mkeys, ncap * sizeof *nk);
        if (nk == NULL) return -ENOMEM;
        w->mkeys = nk;
        char **nv = realloc(w->mvals, ncap * sizeof *nv);
        if (nv == NULL) return -ENOMEM;
        w->mvals = nv;
        w->mcap = ncap;
    }
    char *k = dup_str(key), *v = dup_str(value);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return -ENOMEM;
    }
    w->mkeys[w->mn] = k;
    w->mvals[w->mn] = v;
    w->mn++;
    return 0;
}

/* Integers go in as raw JSON text: cJSON prints doubles with %1.15g, which turns 1e15 into
 * "1e+15", a spelling the reader (and the reference library) rejects. */
static cJSON *raw_uint(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

static char *build_header(const st_writer *w) {
    cJSON *root = cJSON_CreateObject();
    if (root == NULL) return NULL;
    if (w->mn > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (m == NULL) goto fail;
        for (size_t i = 0; i < w->mn; i++)
            if (cJSON_AddStringToObject(m, w->mkeys[i], w->mvals[i]) == NULL) goto fail;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        if (e == NULL || cJSON_AddStringToObject(e, "dtype", "F32") == NULL) goto fail;
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        if (shape == NULL) goto fail;
        for (int d = 0; d < t->ndim; d++) {
            cJSON *v = raw_uint((uint64_t)t->shape[d]);
            if (v == NULL || !cJSON_AddItemToArray(shape, v)) {
                cJSON_Delete(v);
                goto fail;
            }
        }
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        if (off == NULL) goto fail;
        uint64_t ends[2] = {pos, pos + t->nbytes};
        for (int k = 0; k < 2; k++) {
            cJSON *v = raw_uint(ends[k]);
            if (v == NULL || !cJSON_AddItemToArray(off, v)) {
                cJSON_Delete(v);
                goto fail;
            }
        }
        pos += t->nbytes;
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
fail:
    cJSON_Delete(root);
    return NULL;
}

static int write_all(int fd, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Best effort: makes the rename itself durable. Some filesystems refuse fsync on directories;
 * the file's own data is already synced by then, so that is not treated as a failure. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (slash == NULL) {
        dir = dup_str(".");
    } else if (slash == path) {
        dir = dup_str("/");
    } else {
        size_t n = (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir != NULL) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (dir == NULL) return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

int st_writer_save(st_writer *w, const char *path, char *err, size_t errlen) {
    if (w == NULL || path == NULL) {
        set_err(err, errlen, "st_writer_save: writer or path is NULL");
        return -EINVAL;
    }
    char *json = build_header(w);
    if (json == NULL) {
        set_err(err, errlen, "%s: out of memory building the header", path);
        return -ENOMEM;
    }
    size_t jlen = strlen(json);
    /* Pad with spaces so the data buffer starts 8-byte aligned in the file (and in the mapping):
     * readers may then use F32/F64 data in place. */
    size_t hlen = (jlen + ST_PREFIX_BYTES + 7) / 8 * 8 - ST_PREFIX_BYTES;
    if (hlen > ST_MAX_HEADER_BYTES) {
        set_err(err, errlen, "%s: header would be %zu bytes, over the %u-byte limit", path, hlen,
                ST_MAX_HEADER_BYTES);
        cJSON_free(json);
        return -EINVAL;
    }
    uint8_t *head = malloc(ST_PREFIX_BYTES + hlen);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (head == NULL || tmp == NULL) {
        free(head);
        free(tmp);
        cJSON_free(json);
        set_err(err, errlen, "%s: out of memory preparing the header", path);
        return -ENOMEM;
    }
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(head + ST_PREFIX_BYTES, json, jlen);
    memset(head + ST_PREFIX_BYTES + jlen, ' ', hlen - jlen);
    cJSON_free(json);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);

    int rc = 0;
    const char *step = "open";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    step = "write";
    rc = write_all(fd, head, ST_PREFIX_BYTES + hlen);
    for (size_t i = 0; rc == 0 && i < w->n; i++) rc = write_all(fd, w->t[i].data, w->t[i].nbytes);
    if (rc == 0) {
        step = "fsync";
        if (fsync(fd) != 0) rc = -errno;
    }
    if (close(fd) != 0 && rc == 0) {
        step = "close";
        rc = -errno;
    }
    if (rc == 0) {
        step = "rename";
        if (rename(tmp, path) != 0) rc = -errno;
    }
    if (rc != 0)
        unlink(tmp);
    else
        sync_parent_dir(path);
out:
    if (rc != 0)
        set_err(err, errlen, "%s: %s of %s failed: %s", path, step,
                strcmp(step, "rename") == 0 ? "the temporary file" : tmp, strerror(-rc));
    free(tmp);
    free(head);
    return rc;
}
