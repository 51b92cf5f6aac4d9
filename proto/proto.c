/* The wire codec of PROTOCOL.md over msgpack-c. Every message is described once, by a table of its
 * fields (wire key, kind, optionality, range, place in proto_msg); decoding, encoding and the
 * checks both apply are loops over that table, so the two directions cannot disagree.
 *
 * Decoding first walks the raw bytes with a small non-recursive scanner that checks the structure
 * (a single map, string keys in every map, no truncation, no trailing bytes, bounded depth and
 * element count) and sizes the msgpack-c zone exactly: msgpack-c allocates count * 24 bytes for an
 * array header before reading a single element, so a 5-byte input could otherwise ask for 96 GiB.
 * Strings and blobs are referenced in place by msgpack-c; byte fields keep pointing into the
 * caller's buffer.
 *
 * Encoding is canonical and byte-identical to web/proto.js (PROTOCOL.md "Canonical encoding"):
 * "t" first, then the fields in table order, optional fields at their default left out, integers
 * in the smallest format, float fields as an int when integral in [-2^31, 2^32) else float64. */
#include "proto/proto.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Structural bounds (PROTOCOL.md "Decoding rules"). Our messages nest 2 deep and hold < 64
 * elements; the slack is for unknown keys added by later versions. */
#define MAX_DEPTH    8
#define MAX_ELEMENTS 1024

/* Ranges (PROTOCOL.md "Messages"). */
#define MOUSE_MAX       1000.0
#define MS_MAX          1e9 /* server timings and percentiles */
#define FPS_MAX         1e4
#define DIM_MAX         16384
#define FPS_SETTING_MAX 1000
#define CODE_MAX        999 /* close code 4000 + code stays within 4000..4999 */

typedef enum kind { K_U32, K_U64, K_F32, K_F64, K_BOOL, K_STR, K_LIST, K_BYTES } kind;

typedef struct field {
    const char *key;
    uint8_t kind;
    uint8_t opt;       /* may be absent or nil; then it holds its default (0, "", empty, no seed) */
    uint16_t cap;      /* K_STR: size of the char array (longest string is cap - 1 bytes) */
    size_t off;        /* of the value in proto_msg */
    size_t aux;        /* K_LIST: offset of the int count; optional K_U64: of its uint8_t presence
                          flag; 0: none (offset 0 is proto_msg.type, never a field) */
    uint64_t ilo, ihi; /* integer range; K_BYTES: ilo is the minimum length */
    double flo, fhi;   /* float range (finite by construction) */
} field;

// clang-format off
#define OFF(m) offsetof(proto_msg, u.m)
#define CAP(m) ((uint16_t)sizeof(((proto_msg *)0)->u.m))
#define U32(k, m, lo, hi) {.key = k, .kind = K_U32, .off = OFF(m), .ilo = lo, .ihi = hi}
#define U64(k, m) {.key = k, .kind = K_U64, .off = OFF(m), .ihi = UINT64_MAX}
#define U64_OPT(k, m, has)                                                                        \
    {.key = k, .kind = K_U64, .opt = 1, .off = OFF(m), .aux = OFF(has), .ihi = UINT64_MAX}
#define F32(k, m, lo, hi) {.key = k, .kind = K_F32, .off = OFF(m), .flo = lo, .fhi = hi}
#define F32_OPT(k, m, lo, hi)                                                                     \
    {.key = k, .kind = K_F32, .opt = 1, .off = OFF(m), .flo = lo, .fhi = hi}
#define F64(k, m) {.key = k, .kind = K_F64, .off = OFF(m), .flo = -DBL_MAX, .fhi = DBL_MAX}
#define BOOL(k, m) {.key = k, .kind = K_BOOL, .off = OFF(m)}
#define STR(k, m) {.key = k, .kind = K_STR, .cap = CAP(m), .off = OFF(m)}
#define STR_OPT(k, m) {.key = k, .kind = K_STR, .opt = 1, .cap = CAP(m), .off = OFF(m)}
#define LIST(k, m, n) {.key = k, .kind = K_LIST, .off = OFF(m), .aux = OFF(n)}
#define BYTES(k, m, minlen) {.key = k, .kind = K_BYTES, .off = OFF(m), .ilo = minlen}
#define BYTES_OPT(k, m) {.key = k, .kind = K_BYTES, .opt = 1, .off = OFF(m)}

static const field f_hello[] = {
    U32("min", hello.min_version, 1, UINT32_MAX),
    U32("max", hello.max_version, 1, UINT32_MAX),
    STR_OPT("client", hello.client),
};
static const field f_welcome[] = {
    U32("v", welcome.version, 1, UINT32_MAX),
    STR("server", welcome.server),
    U32("max_msg", welcome.limits.max_message_bytes, 1, UINT32_MAX),
    U32("max_upload", welcome.limits.max_upload_bytes, 0, UINT32_MAX),
    U32("max_px", welcome.limits.max_image_pixels, 0, UINT32_MAX),
    U32("max_hz", welcome.limits.max_input_hz, 1, UINT32_MAX),
    LIST("variants", welcome.variants, welcome.n_variants),
    LIST("scenes", welcome.scenes, welcome.n_scenes),
    BOOL("auth", welcome.token_required),
};
static const field f_join[] = {
    STR_OPT("variant", join.variant),
    STR_OPT("scene", join.scene),
    BYTES_OPT("img", join.image),
    STR_OPT("token", join.token),
    U64_OPT("seed", join.seed, join.has_seed),
};
static const field f_joined[] = {
    U64("sid", joined.session),
    STR("variant", joined.variant),
    U32("w", joined.width, 1, DIM_MAX),
    U32("h", joined.height, 1, DIM_MAX),
    U32("fps", joined.fps, 1, FPS_SETTING_MAX),
    LIST("keys", joined.keys, joined.n_keys),
    BOOL("mouse", joined.mouse),
};
static const field f_queue[] = {
    U32("pos", queue.position, 1, UINT32_MAX),
    U32("len", queue.length, 1, UINT32_MAX),
};
static const field f_input[] = {
    U32("seq", input.seq, 1, UINT32_MAX),
    F64("ms", input.client_ms),
    U32("keys", input.keys, 0, UINT32_MAX),
    F32_OPT("dy", input.mouse_dy, -MOUSE_MAX, MOUSE_MAX),
    F32_OPT("dx", input.mouse_dx, -MOUSE_MAX, MOUSE_MAX),
};
static const field f_ping[] = {
    U32("id", ping.id, 0, UINT32_MAX),
    F64("ms", ping.client_ms),
};
static const field f_pong[] = {
    U32("id", pong.id, 0, UINT32_MAX),
    F64("ms", pong.client_ms),
    F64("sms", pong.server_ms),
};
static const field f_frame[] = {
    U64("n", frame.frame),
    U64("blk", frame.block),
    U32("seq", frame.input_seq, 0, UINT32_MAX),
    F64("ms", frame.input_client_ms),
    F64("sms", frame.server_ms),
    F32("q_ms", frame.timings.queue_ms, 0, MS_MAX),
    F32("dit_ms", frame.timings.dit_ms, 0, MS_MAX),
    F32("vae_ms", frame.timings.vae_ms, 0, MS_MAX),
    F32("jpg_ms", frame.timings.jpeg_ms, 0, MS_MAX),
    F32("blk_ms", frame.timings.block_ms, 0, MS_MAX),
    BYTES("jpg", frame.jpeg, 1),
};
static const field f_stats[] = {
    F32("fps", stats.fps, 0, FPS_MAX),
    U64("sent", stats.frames_sent),
    U64("dropped", stats.frames_dropped),
    F32("p50_ms", stats.block_ms_p50, 0, MS_MAX),
    F32("p99_ms", stats.block_ms_p99, 0, MS_MAX),
    U32("buffered", stats.queue_depth, 0, UINT32_MAX),
};
static const field f_error[] = {
    U32("code", error.code, 1, CODE_MAX),
    BOOL("fatal", error.fatal),
    STR("msg", error.message),
};

typedef struct msg_desc {
    const char *name;
    const field *f;
    int n;
} msg_desc;

#define DESC(name, f) {name, f, (int)(sizeof f / sizeof f[0])}
static const msg_desc descs[PROTO_TYPE_COUNT] = {
    [PROTO_HELLO] = DESC("hello", f_hello),    [PROTO_WELCOME] = DESC("welcome", f_welcome),
    [PROTO_JOIN] = DESC("join", f_join),       [PROTO_JOINED] = DESC("joined", f_joined),
    [PROTO_QUEUE] = DESC("queue", f_queue),    [PROTO_INPUT] = DESC("input", f_input),
    [PROTO_PING] = DESC("ping", f_ping),       [PROTO_PONG] = DESC("pong", f_pong),
    [PROTO_RESET] = {"reset", NULL, 0},        [PROTO_LEAVE] = {"leave", NULL, 0},
    [PROTO_FRAME] = DESC("frame", f_frame),    [PROTO_STATS] = DESC("stats", f_stats),
    [PROTO_ERROR] = DESC("error", f_error),
};
// clang-format on
#define MAX_FIELDS 16 /* more than any table above */

/* Errors --------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    bool fatal;
} errors[] = {
    [PROTO_ERR_BAD_MESSAGE] = {"bad_message", true},
    [PROTO_ERR_UNKNOWN_TYPE] = {"unknown_type", false},
    [PROTO_ERR_BAD_FIELD] = {"bad_field", false},
    [PROTO_ERR_VERSION] = {"version", true},
    [PROTO_ERR_NOT_JOINED] = {"not_joined", false},
    [PROTO_ERR_ALREADY_JOINED] = {"already_joined", false},
    [PROTO_ERR_SERVER_FULL] = {"server_full", true},
    [PROTO_ERR_UNAUTHORIZED] = {"unauthorized", true},
    [PROTO_ERR_TOO_LARGE] = {"too_large", true},
    [PROTO_ERR_RATE_LIMITED] = {"rate_limited", false},
    [PROTO_ERR_BAD_IMAGE] = {"bad_image", false},
    [PROTO_ERR_IDLE_TIMEOUT] = {"idle_timeout", true},
    [PROTO_ERR_SLOW_CONSUMER] = {"slow_consumer", true},
    [PROTO_ERR_ENGINE] = {"engine", true},
    [PROTO_ERR_SHUTTING_DOWN] = {"shutting_down", true},
    [PROTO_ERR_UNKNOWN_VARIANT] = {"unknown_variant", false},
    [PROTO_ERR_UNKNOWN_SCENE] = {"unknown_scene", false},
    [PROTO_ERR_INTERNAL] = {"internal", true},
};
#define N_ERRORS ((int)(sizeof errors / sizeof errors[0]))

static int abs_code(int code) {
    return code < 0 ? (code == INT32_MIN ? 0 : -code) : code;
}

const char *proto_error_name(int code) {
    code = abs_code(code);
    return code > 0 && code < N_ERRORS ? errors[code].name : "unknown";
}

int proto_error_fatal(int code) {
    code = abs_code(code);
    /* Codes this build does not know come from a newer peer; the message's flag decides. */
    return code > 0 && code < N_ERRORS ? errors[code].fatal : 1;
}

int proto_close_code(int code) {
    code = abs_code(code);
    if (code == PROTO_ERR_SHUTTING_DOWN) return 1001;
    return code > 0 && code <= CODE_MAX ? 4000 + code : 4000 + PROTO_ERR_INTERNAL;
}

const char *proto_type_name(proto_type t) {
    return (int)t > 0 && (int)t < PROTO_TYPE_COUNT ? descs[t].name : "unknown";
}

uint32_t proto_choose_version(uint32_t client_min, uint32_t client_max) {
    uint32_t hi = client_max < PROTO_VERSION ? client_max : PROTO_VERSION;
    uint32_t lo = client_min > PROTO_VERSION_MIN ? client_min : PROTO_VERSION_MIN;
    return client_min <= client_max && lo <= hi ? hi : 0;
}

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int code,
                                                      const char *fmt, ...) {
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -code;
}

/* Shared checks -------------------------------------------------------------------------------- */

/* 0: valid UTF-8 without NUL; 1: contains NUL; 2: not valid UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF are invalid, as in RFC 3629). */
static int utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0) return 1;
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1Fu, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0Fu, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07u, min = 0x10000;
        } else {
            return 2;
        }
        if (n - i <= k) return 2;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 2;
            cp = (cp << 6) | (s[i + j] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 2;
        i += k + 1;
    }
    return 0;
}

/* Checks a string about to be stored or sent; path is "type.key" or "type.key[i]". */
static int check_str(const uint8_t *s, size_t n, size_t cap, const char *path, char *err,
                     size_t errlen) {
    if (n > cap - 1)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: %zu bytes, over the limit of %zu", path,
                    n, cap - 1);
    int u = utf8_check(s, n);
    if (u == 1) return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: contains a NUL byte", path);
    if (u == 2) return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: not valid UTF-8", path);
    return 0;
}

static int check_int(const field *f, uint64_t u, const char *path, char *err, size_t errlen) {
    if (u < f->ilo || u > f->ihi)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD,
                    "%s: %" PRIu64 " out of range [%" PRIu64 ", %" PRIu64 "]", path, u, f->ilo,
                    f->ihi);
    return 0;
}

static int check_float(const field *f, double d, const char *path, char *err, size_t errlen) {
    if (!isfinite(d)) return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: not finite", path);
    if (!(d >= f->flo && d <= f->fhi))
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: %g out of range [%g, %g]", path, d,
                    f->flo, f->fhi);
    return 0;
}

/* Rules that involve two fields. */
static int cross_check(const proto_msg *m, char *err, size_t errlen) {
    if (m->type == PROTO_HELLO && m->u.hello.max_version < m->u.hello.min_version)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "hello.max: %" PRIu32 " below min %" PRIu32,
                    m->u.hello.max_version, m->u.hello.min_version);
    if (m->type == PROTO_JOIN && m->u.join.scene[0] != '\0' && m->u.join.image.len > 0)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "join.img: given together with a scene");
    if (m->type == PROTO_QUEUE && m->u.queue.position > m->u.queue.length)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "queue.pos: %" PRIu32 " past len %" PRIu32,
                    m->u.queue.position, m->u.queue.length);
    return 0;
}

static const char *head_kind(uint8_t b);

/* Structural scan ------------------------------------------------------------------------------ */

typedef struct scan_counts {
    size_t array_elems, map_pairs, containers;
} scan_counts;

static uint64_t be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Walks buf as exactly one msgpack value, without recursion. Every container's element count must
 * fit in the bytes left (each element takes at least one), which is what bounds msgpack-c's
 * allocations by the input length; MAX_ELEMENTS and MAX_DEPTH bound them further. */
static int scan(const uint8_t *p, size_t len, scan_counts *sc, char *err, size_t errlen) {
    size_t pending[MAX_DEPTH + 1];
    bool is_map[MAX_DEPTH + 1];
    size_t pos = 0, elems = 0;
    int depth = 0;
    pending[0] = 1;
    is_map[0] = false;
    memset(sc, 0, sizeof *sc);
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        /* A map's items alternate key, value: an even count left means a key comes next. */
        bool is_key = is_map[depth] && pending[depth] % 2 == 0;
        pending[depth]--;
        if (pos >= len)
            return fail(err, errlen, PROTO_ERR_BAD_MESSAGE, "message: truncated at byte %zu", pos);
        size_t at = pos;
        uint8_t b = p[pos++];
        if (is_key && !((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)))
            return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                        "message: map key at offset %zu is a %s, not a string", at, head_kind(b));
        size_t lenbytes = 0, skip = 0, extra = 0;
        int container = 0; /* 1 array, 2 map */
        uint64_t count = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            container = 2, count = b & 0x0fu;
        } else if (b <= 0x9f) {
            container = 1, count = b & 0x0fu;
        } else if (b <= 0xbf) {
            skip = b & 0x1fu;
        } else {
            // clang-format off
            switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; break; /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;
            case 0xc6: case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1, extra = 1; break; /* ext8/16/32: + type byte */
            case 0xc8: lenbytes = 2, extra = 1; break;
            case 0xc9: lenbytes = 4, extra = 1; break;
            case 0xca: skip = 4; break;
            case 0xcb: skip = 8; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xce: case 0xd2: skip = 4; break;
            case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break; /* fixext 1..16: type byte + data */
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: container = 1, lenbytes = 2; break;
            case 0xdd: container = 1, lenbytes = 4; break;
            case 0xde: container = 2, lenbytes = 2; break;
            case 0xdf: container = 2, lenbytes = 4; break;
            default: /* 0xc1 */
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                            "message: invalid msgpack byte 0x%02x at offset %zu", b, at);
            }
            // clang-format on
        }
        if (lenbytes) {
            if (len - pos < lenbytes)
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE, "message: truncated at byte %zu",
                            len);
            uint64_t n = be(p + pos, lenbytes);
            pos += lenbytes;
            if (container)
                count = n;
            else
                skip = (size_t)n + extra; /* n < 2^32: no overflow */
        }
        if (skip) {
            if (len - pos < skip)
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                            "message: truncated (value at offset %zu needs %zu bytes, %zu left)",
                            at, skip, len - pos);
            pos += skip;
        }
        if (container) {
            uint64_t items = container == 2 ? 2 * count : count;
            if (items > len - pos)
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                            "message: truncated (container at offset %zu holds %" PRIu64
                            " values, %zu bytes left)",
                            at, items, len - pos);
            elems += (size_t)count;
            if (elems > MAX_ELEMENTS)
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                            "message: more than %d container elements", MAX_ELEMENTS);
            if (depth == MAX_DEPTH)
                return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                            "message: nested deeper than %d at offset %zu", MAX_DEPTH, at);
            if (container == 1)
                sc->array_elems += (size_t)count;
            else
                sc->map_pairs += (size_t)count;
            sc->containers++;
            pending[++depth] = (size_t)items;
            is_map[depth] = container == 2;
        }
    }
    if (pos != len)
        return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                    "message: %zu trailing bytes after the map (which ends at offset %zu)",
                    len - pos, pos);
    return 0;
}

/* Decoding ------------------------------------------------------------------------------------- */

// clang-format off
static const char *obj_kind(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "?";
}

static const char *head_kind(uint8_t b) {
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) return "int";
    if (b >= 0x90 && b <= 0x9f) return "array";
    if (b >= 0xa0 && b <= 0xbf) return "str";
    switch (b) {
    case 0xc0: return "nil";
    case 0xc2: case 0xc3: return "bool";
    case 0xc4: case 0xc5: case 0xc6: return "bin";
    case 0xca: case 0xcb: return "float";
    case 0xd9: case 0xda: case 0xdb: return "str";
    case 0xdc: case 0xdd: return "array";
    default: return "ext or invalid";
    }
}

// clang-format on

static bool key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

static int get_field(const field *f, const msgpack_object *o, const char *tname, uint8_t *base,
                     size_t max_bytes_field, char *err, size_t errlen) {
    char path[96];
    snprintf(path, sizeof path, "%s.%s", tname, f->key);
    void *dst = base + f->off;
    switch ((kind)f->kind) {
    case K_U32:
    case K_U64: {
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: negative (%" PRId64 ")", path,
                        o->via.i64);
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected an integer, got %s", path,
                        obj_kind(o));
        int rc = check_int(f, o->via.u64, path, err, errlen);
        if (rc) return rc;
        if (f->kind == K_U32) {
            uint32_t v = (uint32_t)o->via.u64;
            memcpy(dst, &v, sizeof v);
        } else {
            memcpy(dst, &o->via.u64, sizeof(uint64_t));
            if (f->aux) base[f->aux] = 1;
        }
        return 0;
    }
    case K_F32:
    case K_F64: {
        double d;
        if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
            d = o->via.f64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            d = (double)o->via.u64;
        else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            d = (double)o->via.i64;
        else
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected a number, got %s", path,
                        obj_kind(o));
        int rc = check_float(f, d, path, err, errlen);
        if (rc) return rc;
        /* -0 (also from a tiny negative narrowed to float) reads as 0, as the encoders send it,
         * so that decode(encode(m)) == m. */
        if (f->kind == K_F32) {
            float v = (float)d; /* in range: no overflow */
            if (v == 0) v = 0;
            memcpy(dst, &v, sizeof v);
        } else {
            if (d == 0) d = 0;
            memcpy(dst, &d, sizeof d);
        }
        return 0;
    }
    case K_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected a bool, got %s", path,
                        obj_kind(o));
        *(uint8_t *)dst = o->via.boolean ? 1 : 0;
        return 0;
    case K_STR: {
        if (o->type != MSGPACK_OBJECT_STR)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected a string, got %s", path,
                        obj_kind(o));
        int rc =
            check_str((const uint8_t *)o->via.str.ptr, o->via.str.size, f->cap, path, err, errlen);
        if (rc) return rc;
        memcpy(dst, o->via.str.ptr, o->via.str.size);
        ((char *)dst)[o->via.str.size] = '\0';
        return 0;
    }
    case K_LIST: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected an array, got %s", path,
                        obj_kind(o));
        if (o->via.array.size > PROTO_MAX_LIST)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD,
                        "%s: %" PRIu32 " entries, over the limit of %d", path, o->via.array.size,
                        PROTO_MAX_LIST);
        char(*names)[PROTO_MAX_NAME] = dst;
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *e = &o->via.array.ptr[i];
            char epath[112];
            snprintf(epath, sizeof epath, "%s[%" PRIu32 "]", path, i);
            if (e->type != MSGPACK_OBJECT_STR)
                return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected a string, got %s",
                            epath, obj_kind(e));
            int rc = check_str((const uint8_t *)e->via.str.ptr, e->via.str.size, PROTO_MAX_NAME,
                               epath, err, errlen);
            if (rc) return rc;
            memcpy(names[i], e->via.str.ptr, e->via.str.size);
            names[i][e->via.str.size] = '\0';
        }
        int count = (int)o->via.array.size;
        memcpy(base + f->aux, &count, sizeof count);
        return 0;
    }
    case K_BYTES: {
        if (o->type != MSGPACK_OBJECT_BIN)
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: expected bin, got %s", path,
                        obj_kind(o));
        size_t n = o->via.bin.size;
        if (n > max_bytes_field)
            return fail(err, errlen, PROTO_ERR_TOO_LARGE, "%s: %zu bytes, over the limit of %zu",
                        path, n, max_bytes_field);
        if (n < f->ilo) return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s: empty", path);
        proto_bytes v = {(const uint8_t *)o->via.bin.ptr, n};
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    }
    return fail(err, errlen, PROTO_ERR_INTERNAL, "%s: bad field table", path);
}

/* Fills out from the root map; the zone holding it is the caller's. */
static int decode_map(const msgpack_object *root, size_t max_bytes_field, proto_msg *out, char *err,
                      size_t errlen) {
    const msgpack_object_map *map = &root->via.map;
    const msgpack_object *t = NULL;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return fail(err, errlen, PROTO_ERR_BAD_MESSAGE,
                        "message: key %" PRIu32 " of the map is a %s, not a string", i,
                        obj_kind(k));
        if (key_is(k, "t")) {
            if (t != NULL) return fail(err, errlen, PROTO_ERR_BAD_FIELD, "t: appears twice");
            t = &map->ptr[i].val;
        }
    }
    if (t == NULL || t->type == MSGPACK_OBJECT_NIL)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "t: missing");
    if (t->type != MSGPACK_OBJECT_STR)
        return fail(err, errlen, PROTO_ERR_BAD_FIELD, "t: expected a string, got %s", obj_kind(t));
    int type = 0;
    for (int i = 1; i < PROTO_TYPE_COUNT; i++)
        if (key_is(t, descs[i].name)) type = i;
    if (type == 0) {
        char shown[33];
        size_t n = t->via.str.size < 32 ? t->via.str.size : 32;
        for (size_t i = 0; i < n; i++) {
            char c = t->via.str.ptr[i];
            shown[i] = c >= 0x20 && c < 0x7f ? c : '?';
        }
        shown[n] = '\0';
        return fail(err, errlen, PROTO_ERR_UNKNOWN_TYPE, "t: unknown type \"%s%s\"", shown,
                    t->via.str.size > 32 ? "..." : "");
    }
    const msg_desc *d = &descs[type];
    memset(out, 0, sizeof *out);
    out->type = (proto_type)type;

    const msgpack_object *vals[MAX_FIELDS] = {0};
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        for (int j = 0; j < d->n; j++) {
            if (!key_is(k, d->f[j].key)) continue;
            if (vals[j] != NULL)
                return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s.%s: appears twice", d->name,
                            d->f[j].key);
            vals[j] = &map->ptr[i].val;
        }
        /* Keys of no field are ignored: later versions may add optional fields. */
    }
    for (int j = 0; j < d->n; j++) {
        const field *f = &d->f[j];
        if (vals[j] == NULL || vals[j]->type == MSGPACK_OBJECT_NIL) {
            if (f->opt) continue; /* default: zero, "" or no seed, from the memset */
            return fail(err, errlen, PROTO_ERR_BAD_FIELD, "%s.%s: missing", d->name, f->key);
        }
        int rc = get_field(f, vals[j], d->name, (uint8_t *)out, max_bytes_field, err, errlen);
        if (rc) return rc;
    }
    return cross_check(out, err, errlen);
}

int proto_decode(const uint8_t *buf, size_t len, size_t max_bytes_field, proto_msg *out, char *err,
                 size_t errlen) {
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (buf == NULL || len == 0) return fail(err, errlen, PROTO_ERR_BAD_MESSAGE, "message: empty");
    uint8_t b = buf[0];
    if (!((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf))
        return fail(err, errlen, PROTO_ERR_BAD_MESSAGE, "message: not a map (starts with %s)",
                    head_kind(b));
    scan_counts sc;
    int rc = scan(buf, len, &sc, err, errlen);
    if (rc) return rc;

    /* One chunk that holds every container msgpack-c will allocate, so decoding mallocs once. */
    size_t need = sc.array_elems * sizeof(msgpack_object) +
                  sc.map_pairs * sizeof(msgpack_object_kv) + sc.containers * MSGPACK_ZONE_ALIGN +
                  64;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, need))
        return fail(err, errlen, PROTO_ERR_INTERNAL, "message: out of memory");
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack((const char *)buf, len, &off, &zone, &root);
    if (ur == MSGPACK_UNPACK_SUCCESS && root.type == MSGPACK_OBJECT_MAP)
        rc = decode_map(&root, max_bytes_field, out, err, errlen);
    else if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = fail(err, errlen, PROTO_ERR_INTERNAL, "message: out of memory");
    else /* the scan accepted what msgpack-c refused: report it rather than trust either */
        rc = fail(err, errlen, PROTO_ERR_BAD_MESSAGE, "message: msgpack-c could not unpack it (%d)",
                  (int)ur);
    msgpack_zone_destroy(&zone);
    return rc;
}

/* Encoding ------------------------------------------------------------------------------------- */

void proto_buf_free(proto_buf *b) {
    if (b == NULL) return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

typedef struct writer {
    proto_buf *b;
    bool oom;
} writer;

static int write_cb(void *data, const char *p, size_t n) {
    writer *w = data;
    proto_buf *b = w->b;
    if (w->oom) return -1;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                w->oom = true;
                return -1;
            }
            cap *= 2;
        }
        uint8_t *nd = realloc(b->data, cap);
        if (nd == NULL) {
            w->oom = true;
            return -1;
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* A float field the way @msgpack/msgpack (useBigInt64) writes a JS number: integral values in
 * [-2^31, 2^32) as the smallest int (so -0 becomes 0), anything else float64. */
static void pack_number(msgpack_packer *pk, double v) {
    if (v == floor(v) && v >= -2147483648.0 && v < 4294967296.0) {
        if (v >= 0)
            msgpack_pack_uint64(pk, (uint64_t)v);
        else
            msgpack_pack_int64(pk, (int64_t)v);
    } else {
        msgpack_pack_double(pk, v);
    }
}

static void pack_key(msgpack_packer *pk, const char *k) {
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

/* Checks field f of m as the decoder would; *present is false for an optional field at its
 * default (left out of the map). */
static int check_field(const field *f, const proto_msg *m, bool *present) {
    const uint8_t *base = (const uint8_t *)m;
    const void *src = base + f->off;
    *present = true;
    switch ((kind)f->kind) {
    case K_U32: {
        uint32_t v;
        memcpy(&v, src, sizeof v);
        return check_int(f, v, "", NULL, 0);
    }
    case K_U64: {
        uint64_t v;
        memcpy(&v, src, sizeof v);
        if (f->aux && !base[f->aux]) {
            *present = false;
            return 0;
        }
        return check_int(f, v, "", NULL, 0);
    }
    case K_F32:
    case K_F64: {
        double d;
        if (f->kind == K_F32) {
            float v;
            memcpy(&v, src, sizeof v);
            d = v;
        } else {
            memcpy(&d, src, sizeof d);
        }
        if (f->opt && d == 0) *present = false; /* -0 too */
        return check_float(f, d, "", NULL, 0);
    }
    case K_BOOL:
        return 0;
    case K_STR: {
        size_t n = strnlen(src, f->cap);
        if (n == f->cap) return -PROTO_ERR_BAD_FIELD; /* no terminator */
        if (f->opt && n == 0) *present = false;
        return check_str(src, n, f->cap, "", NULL, 0);
    }
    case K_LIST: {
        int count;
        memcpy(&count, base + f->aux, sizeof count);
        if (count < 0 || count > PROTO_MAX_LIST) return -PROTO_ERR_BAD_FIELD;
        const char(*names)[PROTO_MAX_NAME] = src;
        for (int i = 0; i < count; i++) {
            size_t n = strnlen(names[i], PROTO_MAX_NAME);
            if (n == PROTO_MAX_NAME) return -PROTO_ERR_BAD_FIELD;
            int rc = check_str((const uint8_t *)names[i], n, PROTO_MAX_NAME, "", NULL, 0);
            if (rc) return rc;
        }
        return 0;
    }
    case K_BYTES: {
        proto_bytes v;
        memcpy(&v, src, sizeof v);
        if ((v.data == NULL && v.len > 0) || v.len > UINT32_MAX || v.len < f->ilo)
            return -PROTO_ERR_BAD_FIELD;
        if (f->opt && v.len == 0) *present = false;
        return 0;
    }
    }
    return -PROTO_ERR_INTERNAL;
}

static void pack_field(msgpack_packer *pk, const field *f, const proto_msg *m) {
    const uint8_t *base = (const uint8_t *)m;
    const void *src = base + f->off;
    pack_key(pk, f->key);
    switch ((kind)f->kind) {
    case K_U32: {
        uint32_t v;
        memcpy(&v, src, sizeof v);
        msgpack_pack_uint32(pk, v);
        break;
    }
    case K_U64: {
        uint64_t v;
        memcpy(&v, src, sizeof v);
        msgpack_pack_uint64(pk, v);
        break;
    }
    case K_F32: {
        float v;
        memcpy(&v, src, sizeof v);
        pack_number(pk, v);
        break;
    }
    case K_F64: {
        double v;
        memcpy(&v, src, sizeof v);
        pack_number(pk, v);
        break;
    }
    case K_BOOL:
        if (*(const uint8_t *)src)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case K_STR:
        msgpack_pack_str_with_body(pk, src, strlen(src));
        break;
    case K_LIST: {
        int count;
        memcpy(&count, base + f->aux, sizeof count);
        const char(*names)[PROTO_MAX_NAME] = src;
        msgpack_pack_array(pk, (size_t)count);
        for (int i = 0; i < count; i++) msgpack_pack_str_with_body(pk, names[i], strlen(names[i]));
        break;
    }
    case K_BYTES: {
        proto_bytes v;
        memcpy(&v, src, sizeof v);
        msgpack_pack_bin_with_body(pk, v.data, v.len);
        break;
    }
    }
}

int proto_encode(const proto_msg *m, proto_buf *b) {
    b->len = 0;
    if ((int)m->type <= 0 || (int)m->type >= PROTO_TYPE_COUNT) return -PROTO_ERR_UNKNOWN_TYPE;
    const msg_desc *d = &descs[m->type];
    bool present[MAX_FIELDS];
    size_t n = 1; /* "t" */
    for (int j = 0; j < d->n; j++) {
        int rc = check_field(&d->f[j], m, &present[j]);
        if (rc) return rc;
        n += present[j];
    }
    int rc = cross_check(m, NULL, 0);
    if (rc) return rc;

    writer w = {b, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, write_cb);
    msgpack_pack_map(&pk, n);
    pack_key(&pk, "t");
    pack_key(&pk, d->name);
    for (int j = 0; j < d->n; j++)
        if (present[j]) pack_field(&pk, &d->f[j], m);
    if (w.oom) {
        b->len = 0;
        return -ENOMEM;
    }
    return 0;
}
