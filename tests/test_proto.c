/* Tests of the protocol codec (proto/proto.c) against PROTOCOL.md:
 *   1. literal msgpack bytes written out below, independently of the encoder, for every message
 *      type: decoded field by field against the values in the comments, and (for the canonical
 *      ones) re-encoded to the same bytes;
 *   2. random round trips of every type (strings at their byte limit with multibyte characters,
 *      16-entry lists, byte fields, extreme and boundary numbers, zero and empty values):
 *      encode -> decode gives the same canonical text (proto_text.h) and the same bytes again;
 *   3. every error path: code and the field named in err, including every truncation of a
 *      message of each type (exact-size copies, so ASan sees any read past the end);
 *   4. the encoder's refusals and the small helpers (names, fatality, close codes, versions).
 * `test_proto --write-corpus DIR` writes the fuzz seed corpus (one valid message of each type and
 * a few non-canonical forms) into DIR. */
#include "proto/proto.h"
#include "proto_text.h"
#include "test_util.h"

#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Literal messages ----------------------------------------------------------------------------- */

/* Short strings as fixstr bytes. */
// clang-format off
#define S1(a) 0xa1, a
#define S2(a, b) 0xa2, a, b
#define S3(a, b, c) 0xa3, a, b, c
#define S4(a, b, c, d) 0xa4, a, b, c, d
#define S5(a, b, c, d, e) 0xa5, a, b, c, d, e
#define TYPE(...) S1('t'), __VA_ARGS__
#define F64_1234_5 0xcb, 0x40, 0x93, 0x4a, 0x00, 0x00, 0x00, 0x00, 0x00

static const uint8_t lit_hello[] = {
    0x84, TYPE(S5('h', 'e', 'l', 'l', 'o')),
    S3('m', 'i', 'n'), 0x01,                                     /* min 1 */
    S3('m', 'a', 'x'), 0x03,                                     /* max 3 */
    0xa6, 'c', 'l', 'i', 'e', 'n', 't',                          /* client "wmload/1" */
    0xa8, 'w', 'm', 'l', 'o', 'a', 'd', '/', '1',
};
static const uint8_t lit_welcome[] = {
    0x8a, TYPE(0xa7, 'w', 'e', 'l', 'c', 'o', 'm', 'e'),
    S1('v'), 0x01,                                               /* v 1 */
    0xa6, 's', 'e', 'r', 'v', 'e', 'r', S2('w', 'm'),            /* server "wm" */
    0xa7, 'm', 'a', 'x', '_', 'm', 's', 'g', 0xce, 0x00, 0x10, 0x00, 0x00, /* 1048576 */
    0xaa, 'm', 'a', 'x', '_', 'u', 'p', 'l', 'o', 'a', 'd', 0xce, 0x00, 0x0f, 0x42, 0x40, /* 1e6 */
    0xa6, 'm', 'a', 'x', '_', 'p', 'x', 0xce, 0x00, 0x40, 0x00, 0x00, /* 4194304 */
    0xa6, 'm', 'a', 'x', '_', 'h', 'z', 0x78,                    /* 120 */
    0xa8, 'v', 'a', 'r', 'i', 'a', 'n', 't', 's', 0x93,          /* variants: 3 */
    0xa9, 'u', 'n', 'i', 'v', 'e', 'r', 's', 'a', 'l',
    0xa9, 'g', 't', 'a', '_', 'd', 'r', 'i', 'v', 'e',
    0xa9, 't', 'e', 'm', 'p', 'l', 'e', 'r', 'u', 'n',
    0xa6, 's', 'c', 'e', 'n', 'e', 's', 0x90,                    /* scenes: [] */
    S4('a', 'u', 't', 'h'), 0xc2,                                /* auth false */
};
static const uint8_t lit_join[] = {
    0x84, TYPE(S4('j', 'o', 'i', 'n')),
    0xa7, 'v', 'a', 'r', 'i', 'a', 'n', 't',                     /* variant "templerun" */
    0xa9, 't', 'e', 'm', 'p', 'l', 'e', 'r', 'u', 'n',
    S3('i', 'm', 'g'), 0xc4, 0x03, 0x89, 'P', 'N',               /* img 3 bytes 89 50 4e */
    S4('s', 'e', 'e', 'd'), 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0x05,  /* seed 2^63 + 5 */
};
static const uint8_t lit_joined[] = {
    0x88, TYPE(0xa6, 'j', 'o', 'i', 'n', 'e', 'd'),
    S3('s', 'i', 'd'), 0xcf, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0xa7, 'v', 'a', 'r', 'i', 'a', 'n', 't', 0xa9, 'u', 'n', 'i', 'v', 'e', 'r', 's', 'a', 'l',
    S1('w'), 0xcd, 0x02, 0x80,                                   /* w 640 */
    S1('h'), 0xcd, 0x01, 0x60,                                   /* h 352 */
    S3('f', 'p', 's'), 0x19,                                     /* fps 25 */
    S4('k', 'e', 'y', 's'), 0x94,                                /* keys: 4 */
    0xa7, 'f', 'o', 'r', 'w', 'a', 'r', 'd', S4('b', 'a', 'c', 'k'),
    S4('l', 'e', 'f', 't'), S5('r', 'i', 'g', 'h', 't'),
    S5('m', 'o', 'u', 's', 'e'), 0xc3,                           /* mouse true */
};
static const uint8_t lit_queue[] = {
    0x83, TYPE(S5('q', 'u', 'e', 'u', 'e')),
    S3('p', 'o', 's'), 0x03,
    S3('l', 'e', 'n'), 0x07,
};
static const uint8_t lit_input[] = {
    0x86, TYPE(S5('i', 'n', 'p', 'u', 't')),
    S3('s', 'e', 'q'), 0x2a,                                     /* seq 42 */
    S2('m', 's'), F64_1234_5,                                    /* ms 1234.5 */
    S4('k', 'e', 'y', 's'), 0x05,                                /* keys 0b101 */
    S2('d', 'y'), 0xcb, 0x3f, 0xd0, 0, 0, 0, 0, 0, 0,            /* dy 0.25 */
    S2('d', 'x'), 0xcb, 0xbf, 0xc0, 0, 0, 0, 0, 0, 0,            /* dx -0.125 */
};
static const uint8_t lit_ping[] = {
    0x83, TYPE(S4('p', 'i', 'n', 'g')),
    S2('i', 'd'), 0x09,
    S2('m', 's'), F64_1234_5,
};
static const uint8_t lit_pong[] = {
    0x84, TYPE(S4('p', 'o', 'n', 'g')),
    S2('i', 'd'), 0x09,
    S2('m', 's'), F64_1234_5,
    S3('s', 'm', 's'), 0xcb, 0x40, 0xf8, 0x1c, 0xd4, 0, 0, 0, 0, /* sms 98765.25 */
};
static const uint8_t lit_reset[] = {0x81, TYPE(S5('r', 'e', 's', 'e', 't'))};
static const uint8_t lit_leave[] = {0x81, TYPE(S5('l', 'e', 'a', 'v', 'e'))};
static const uint8_t lit_frame[] = {
    0x8c, TYPE(S5('f', 'r', 'a', 'm', 'e')),
    S1('n'), 0x0c,                                               /* n 12 */
    S3('b', 'l', 'k'), 0x01,                                     /* blk 1 */
    S3('s', 'e', 'q'), 0x2a,                                     /* seq 42 */
    S2('m', 's'), F64_1234_5,                                    /* ms 1234.5 */
    S3('s', 'm', 's'), 0xcd, 0x13, 0x88,                         /* sms 5000 (integral: an int) */
    S4('q', '_', 'm', 's'), 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0,  /* q_ms 0.5 */
    0xa6, 'd', 'i', 't', '_', 'm', 's', 0x28,                    /* dit_ms 40 */
    0xa6, 'v', 'a', 'e', '_', 'm', 's', 0xcb, 0x40, 0x28, 0x80, 0, 0, 0, 0, 0, /* vae_ms 12.25 */
    0xa6, 'j', 'p', 'g', '_', 'm', 's', 0x03,                    /* jpg_ms 3 */
    0xa6, 'b', 'l', 'k', '_', 'm', 's', 0xcb, 0x40, 0x4b, 0xe0, 0, 0, 0, 0, 0, /* blk_ms 55.75 */
    S3('j', 'p', 'g'), 0xc4, 0x04, 0xff, 0xd8, 0xff, 0xd9,      /* jpg ff d8 ff d9 */
};
static const uint8_t lit_stats[] = {
    0x87, TYPE(S5('s', 't', 'a', 't', 's')),
    S3('f', 'p', 's'), 0x19,                                     /* fps 25 */
    S4('s', 'e', 'n', 't'), 0xcd, 0x03, 0xe8,                    /* sent 1000 */
    0xa7, 'd', 'r', 'o', 'p', 'p', 'e', 'd', 0x00,               /* dropped 0 */
    0xa6, 'p', '5', '0', '_', 'm', 's', 0xcb, 0x40, 0x46, 0xc0, 0, 0, 0, 0, 0, /* 45.5 */
    0xa6, 'p', '9', '9', '_', 'm', 's', 0xcb, 0x40, 0x54, 0x08, 0, 0, 0, 0, 0, /* 80.125 */
    0xa8, 'b', 'u', 'f', 'f', 'e', 'r', 'e', 'd', 0x02,          /* buffered 2 */
};
static const uint8_t lit_error[] = {
    0x84, TYPE(S5('e', 'r', 'r', 'o', 'r')),
    S4('c', 'o', 'd', 'e'), 0x07,                                /* code 7 */
    S5('f', 'a', 't', 'a', 'l'), 0xc3,                           /* fatal true */
    S3('m', 's', 'g'), 0xab,                                     /* msg "server full" */
    's', 'e', 'r', 'v', 'e', 'r', ' ', 'f', 'u', 'l', 'l',
};

/* Non-canonical but valid: other int and float formats, str8, nil for optional fields, keys out
 * of order, unknown keys (with nested and ext values) that must be ignored. */
static const uint8_t lit_input_loose[] = {
    0x86,
    S4('k', 'e', 'y', 's'), 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05,     /* keys 5 as uint64 */
    S2('z', 'z'), 0x92, 0x81, 0xa0, 0xc0, 0xd4, 0x01, 0x02,      /* zz: [{"": nil}, fixext1] */
    S2('m', 's'), 0xca, 0x44, 0x9a, 0x50, 0x00,                  /* ms 1234.5 as float32 */
    S3('s', 'e', 'q'), 0xd2, 0x00, 0x00, 0x00, 0x2a,             /* seq 42 as int32 */
    TYPE(0xd9, 0x05, 'i', 'n', 'p', 'u', 't'),                   /* t as str8 */
    S2('d', 'x'), 0xc0,                                          /* dx nil = 0; dy absent */
};
static const uint8_t lit_join_loose[] = {
    0x84, TYPE(S4('j', 'o', 'i', 'n')),
    0xa7, 'v', 'a', 'r', 'i', 'a', 'n', 't', 0xc0,               /* variant nil */
    0xa5, 's', 'c', 'e', 'n', 'e', 0xa0,                         /* scene "" */
    0xa6, 'f', 'u', 't', 'u', 'r', 'e', 0xc7, 0x02, 0x05, 0xaa, 0xbb, /* future: ext8 */
};
static const uint8_t lit_joined_loose[] = {
    0x88, TYPE(0xa6, 'j', 'o', 'i', 'n', 'e', 'd'),
    S3('s', 'i', 'd'), 0xd0, 0x05,                               /* sid 5 as int8 */
    0xa7, 'v', 'a', 'r', 'i', 'a', 'n', 't', 0xa2, 'g', 'r',
    S1('w'), 0xd1, 0x00, 0x10,                                   /* w 16 as int16 */
    S1('h'), 0xcc, 0x09,                                         /* h 9 as uint8 */
    S3('f', 'p', 's'), 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x19,
    S4('k', 'e', 'y', 's'), 0xdc, 0x00, 0x01, 0xd9, 0x02, 'n', 'o', /* array16 of one str8 */
    S5('m', 'o', 'u', 's', 'e'), 0xc2,
};

// clang-format on

/* Helpers -------------------------------------------------------------------------------------- */

/* proto_decode on an exact-size heap copy, so ASan reports any read past the end. */
static int decode_copy(const uint8_t *p, size_t n, size_t maxb, proto_msg *m, char *err,
                       size_t errlen) {
    uint8_t *c = malloc(n ? n : 1);
    if (c == NULL) return -PROTO_ERR_INTERNAL;
    if (n) memcpy(c, p, n);
    int rc = proto_decode(n ? c : NULL, n, maxb, m, err, errlen);
    free(c); /* byte fields of m now dangle; callers here only look at codes and scalars */
    return rc;
}

static bool starts_with_path(const char *err, const char *path) {
    size_t n = strlen(path);
    return strncmp(err, path, n) == 0 && err[n] == ':';
}

static void expect_err(const uint8_t *p, size_t n, size_t maxb, int code, const char *path,
                       const char *what) {
    proto_msg m;
    char err[256] = "";
    int rc = decode_copy(p, n, maxb, &m, err, sizeof err);
    tu_check(rc == -code && starts_with_path(err, path), "%-44s -> %s (%d) \"%s\" (want %s, %s)",
             what, proto_error_name(rc), rc, err, proto_error_name(code), path);
}

/* A growable msgpack writer for the error cases, independent of the codec: raw format bytes. */
typedef struct mb {
    uint8_t *p;
    size_t n, cap;
} mb;

static void mb_raw(mb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void mb_u8(mb *b, uint8_t v) {
    mb_raw(b, &v, 1);
}
static void mb_be(mb *b, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) mb_u8(b, (uint8_t)(v >> (8 * i)));
}
static void mb_map(mb *b, uint32_t n) {
    if (n < 16)
        mb_u8(b, (uint8_t)(0x80 | n));
    else
        mb_u8(b, 0xdf), mb_be(b, n, 4);
}
static void mb_array(mb *b, uint32_t n) {
    if (n < 16)
        mb_u8(b, (uint8_t)(0x90 | n));
    else
        mb_u8(b, 0xdd), mb_be(b, n, 4);
}
static void mb_strn(mb *b, const char *s, size_t n) {
    if (n < 32)
        mb_u8(b, (uint8_t)(0xa0 | n));
    else
        mb_u8(b, 0xdb), mb_be(b, n, 4);
    mb_raw(b, s, n);
}
static void mb_str(mb *b, const char *s) {
    mb_strn(b, s, strlen(s));
}
static void mb_uint(mb *b, uint64_t v) {
    mb_u8(b, 0xcf), mb_be(b, v, 8);
}
static void mb_int(mb *b, int64_t v) {
    mb_u8(b, 0xd3), mb_be(b, (uint64_t)v, 8);
}
static void mb_f64(mb *b, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    mb_u8(b, 0xcb), mb_be(b, u, 8);
}
static void mb_bin(mb *b, size_t n, uint8_t fill) {
    mb_u8(b, 0xc6), mb_be(b, n, 4);
    for (size_t i = 0; i < n; i++) mb_u8(b, fill);
}
static void mb_list(mb *b, int n, const char *s) {
    mb_array(b, (uint32_t)n);
    for (int i = 0; i < n; i++) mb_str(b, s);
}
static void mb_free(mb *b) {
    free(b->p);
    *b = (mb){0};
}

/* A canonical message with one key dropped and/or one value replaced by raw msgpack bytes, via
 * msgpack-c's unpack and pack (not via proto.c). */
static void rewrite(const proto_buf *canon, const char *key, const uint8_t *val, size_t vlen,
                    bool drop, mb *out) {
    msgpack_zone z;
    msgpack_zone_init(&z, 4096);
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack((const char *)canon->data, canon->len, &off, &z, &root);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t n = root.via.map.size, kept = 0;
    bool found = false;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &root.via.map.ptr[i].key;
        bool hit =
            k->via.str.size == strlen(key) && memcmp(k->via.str.ptr, key, k->via.str.size) == 0;
        found |= hit;
        kept += !(hit && drop);
    }
    if (!found && !drop) kept++; /* a replacement of an absent (optional) key adds it */
    msgpack_pack_map(&pk, kept);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object_kv *kv = &root.via.map.ptr[i];
        bool hit = kv->key.via.str.size == strlen(key) &&
                   memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0;
        if (hit && drop) continue;
        msgpack_pack_object(&pk, kv->key);
        if (hit)
            msgpack_sbuffer_write(&sb, (const char *)val, vlen);
        else
            msgpack_pack_object(&pk, kv->val);
    }
    if (!found && !drop) {
        msgpack_pack_str_with_body(&pk, key, strlen(key));
        msgpack_sbuffer_write(&sb, (const char *)val, vlen);
    }
    out->n = 0;
    mb_raw(out, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    msgpack_zone_destroy(&z);
}

/* The fields of every type as PROTOCOL.md lists them: kind u (u32), U (u64), f (f32), d (f64),
 * b (bool), s (string), l (string list), y (bytes); opt = optional. */
typedef struct spec_field {
    const char *key;
    char kind;
    bool opt;
} spec_field;
static const struct {
    proto_type t;
    spec_field f[12];
} spec[] = {
    {PROTO_HELLO, {{"min", 'u', 0}, {"max", 'u', 0}, {"client", 's', 1}}},
    {PROTO_WELCOME,
     {{"v", 'u', 0},
      {"server", 's', 0},
      {"max_msg", 'u', 0},
      {"max_upload", 'u', 0},
      {"max_px", 'u', 0},
      {"max_hz", 'u', 0},
      {"variants", 'l', 0},
      {"scenes", 'l', 0},
      {"auth", 'b', 0}}},
    {PROTO_JOIN,
     {{"variant", 's', 1},
      {"scene", 's', 1},
      {"img", 'y', 1},
      {"token", 's', 1},
      {"seed", 'U', 1}}},
    {PROTO_JOINED,
     {{"sid", 'U', 0},
      {"variant", 's', 0},
      {"w", 'u', 0},
      {"h", 'u', 0},
      {"fps", 'u', 0},
      {"keys", 'l', 0},
      {"mouse", 'b', 0}}},
    {PROTO_QUEUE, {{"pos", 'u', 0}, {"len", 'u', 0}}},
    {PROTO_INPUT,
     {{"seq", 'u', 0}, {"ms", 'd', 0}, {"keys", 'u', 0}, {"dy", 'f', 1}, {"dx", 'f', 1}}},
    {PROTO_PING, {{"id", 'u', 0}, {"ms", 'd', 0}}},
    {PROTO_PONG, {{"id", 'u', 0}, {"ms", 'd', 0}, {"sms", 'd', 0}}},
    {PROTO_RESET, {{0}}},
    {PROTO_LEAVE, {{0}}},
    {PROTO_FRAME,
     {{"n", 'U', 0},
      {"blk", 'U', 0},
      {"seq", 'u', 0},
      {"ms", 'd', 0},
      {"sms", 'd', 0},
      {"q_ms", 'f', 0},
      {"dit_ms", 'f', 0},
      {"vae_ms", 'f', 0},
      {"jpg_ms", 'f', 0},
      {"blk_ms", 'f', 0},
      {"jpg", 'y', 0}}},
    {PROTO_STATS,
     {{"fps", 'f', 0},
      {"sent", 'U', 0},
      {"dropped", 'U', 0},
      {"p50_ms", 'f', 0},
      {"p99_ms", 'f', 0},
      {"buffered", 'u', 0}}},
    {PROTO_ERROR, {{"code", 'u', 0}, {"fatal", 'b', 0}, {"msg", 's', 0}}},
};
#define N_SPEC ((int)(sizeof spec / sizeof spec[0]))

/* A fixed valid message of each type with every optional field present and non-default (but
 * join.scene, which may not come with join.img). */
static void sample(proto_msg *m, proto_type t) {
    static const uint8_t blob[] = {0xff, 0xd8, 0xff, 0xd9};
    uint64_t s = 1000 + (uint64_t)t;
    uint8_t dummy[8];
    pt_random(m, t, &s, dummy, sizeof dummy);
    switch (t) {
    case PROTO_HELLO:
        strcpy(m->u.hello.client, "c");
        break;
    case PROTO_JOIN:
        strcpy(m->u.join.variant, "universal");
        m->u.join.image = (proto_bytes){blob, sizeof blob};
        strcpy(m->u.join.token, "tok");
        m->u.join.has_seed = 1;
        m->u.join.seed = 77;
        break;
    case PROTO_INPUT:
        m->u.input.mouse_dx = 0.5f, m->u.input.mouse_dy = -0.25f;
        break;
    case PROTO_FRAME:
        m->u.frame.jpeg = (proto_bytes){blob, sizeof blob};
        break;
    default:
        break;
    }
}

/* Tests ---------------------------------------------------------------------------------------- */

static void test_literals(void) {
    printf("-- literal messages (bytes written out in this file)\n");
    proto_msg m;
    char err[256];
    proto_buf b = {0};
    const struct {
        const char *name;
        const uint8_t *p;
        size_t n;
        proto_type t;
        bool canonical;
    } lits[] = {
        {"hello", lit_hello, sizeof lit_hello, PROTO_HELLO, true},
        {"welcome", lit_welcome, sizeof lit_welcome, PROTO_WELCOME, true},
        {"join", lit_join, sizeof lit_join, PROTO_JOIN, true},
        {"joined", lit_joined, sizeof lit_joined, PROTO_JOINED, true},
        {"queue", lit_queue, sizeof lit_queue, PROTO_QUEUE, true},
        {"input", lit_input, sizeof lit_input, PROTO_INPUT, true},
        {"ping", lit_ping, sizeof lit_ping, PROTO_PING, true},
        {"pong", lit_pong, sizeof lit_pong, PROTO_PONG, true},
        {"reset", lit_reset, sizeof lit_reset, PROTO_RESET, true},
        {"leave", lit_leave, sizeof lit_leave, PROTO_LEAVE, true},
        {"frame", lit_frame, sizeof lit_frame, PROTO_FRAME, true},
        {"stats", lit_stats, sizeof lit_stats, PROTO_STATS, true},
        {"error", lit_error, sizeof lit_error, PROTO_ERROR, true},
        {"input (loose forms)", lit_input_loose, sizeof lit_input_loose, PROTO_INPUT, false},
        {"join (loose forms)", lit_join_loose, sizeof lit_join_loose, PROTO_JOIN, false},
        {"joined (loose forms)", lit_joined_loose, sizeof lit_joined_loose, PROTO_JOINED, false},
    };
    for (size_t i = 0; i < sizeof lits / sizeof lits[0]; i++) {
        int rc = proto_decode(lits[i].p, lits[i].n, 1 << 20, &m, err, sizeof err);
        tu_check(rc == 0 && m.type == lits[i].t, "literal %-22s decodes (rc %d %s)", lits[i].name,
                 rc, rc ? err : "");
        if (rc != 0) continue;
        bool ok = false;
        switch (i) {
        case 0: {
            const proto_hello *x = &m.u.hello;
            ok = x->min_version == 1 && x->max_version == 3 && !strcmp(x->client, "wmload/1");
            break;
        }
        case 1: {
            const proto_welcome *x = &m.u.welcome;
            ok = x->version == 1 && !strcmp(x->server, "wm") &&
                 x->limits.max_message_bytes == 1048576 && x->limits.max_upload_bytes == 1000000 &&
                 x->limits.max_image_pixels == 4194304 && x->limits.max_input_hz == 120 &&
                 x->n_variants == 3 && !strcmp(x->variants[0], "universal") &&
                 !strcmp(x->variants[1], "gta_drive") && !strcmp(x->variants[2], "templerun") &&
                 x->n_scenes == 0 && x->token_required == 0;
            break;
        }
        case 2: {
            const proto_join *x = &m.u.join;
            ok = !strcmp(x->variant, "templerun") && x->scene[0] == 0 && x->token[0] == 0 &&
                 x->image.len == 3 && x->image.data == lits[i].p + 32 && x->image.data[0] == 0x89 &&
                 x->image.data[2] == 'N' && x->has_seed && x->seed == 0x8000000000000005ull;
            break;
        }
        case 3: {
            const proto_joined *x = &m.u.joined;
            ok = x->session == 0x0102030405060708ull && !strcmp(x->variant, "universal") &&
                 x->width == 640 && x->height == 352 && x->fps == 25 && x->n_keys == 4 &&
                 !strcmp(x->keys[0], "forward") && !strcmp(x->keys[3], "right") && x->mouse == 1;
            break;
        }
        case 4:
            ok = m.u.queue.position == 3 && m.u.queue.length == 7;
            break;
        case 5: {
            const proto_input *x = &m.u.input;
            ok = x->seq == 42 && x->client_ms == 1234.5 && x->keys == 5 && x->mouse_dy == 0.25f &&
                 x->mouse_dx == -0.125f;
            break;
        }
        case 6:
            ok = m.u.ping.id == 9 && m.u.ping.client_ms == 1234.5;
            break;
        case 7:
            ok = m.u.pong.id == 9 && m.u.pong.client_ms == 1234.5 && m.u.pong.server_ms == 98765.25;
            break;
        case 8:
        case 9:
            ok = true;
            break;
        case 10: {
            const proto_frame *x = &m.u.frame;
            ok = x->frame == 12 && x->block == 1 && x->input_seq == 42 &&
                 x->input_client_ms == 1234.5 && x->server_ms == 5000 &&
                 x->timings.queue_ms == 0.5f && x->timings.dit_ms == 40 &&
                 x->timings.vae_ms == 12.25f && x->timings.jpeg_ms == 3 &&
                 x->timings.block_ms == 55.75f && x->jpeg.len == 4 &&
                 x->jpeg.data == lits[i].p + lits[i].n - 4 && x->jpeg.data[1] == 0xd8;
            break;
        }
        case 11: {
            const proto_stats *x = &m.u.stats;
            ok = x->fps == 25 && x->frames_sent == 1000 && x->frames_dropped == 0 &&
                 x->block_ms_p50 == 45.5f && x->block_ms_p99 == 80.125f && x->queue_depth == 2;
            break;
        }
        case 12:
            ok = m.u.error.code == 7 && m.u.error.fatal == 1 &&
                 !strcmp(m.u.error.message, "server full");
            break;
        case 13: {
            const proto_input *x = &m.u.input;
            ok = x->seq == 42 && x->client_ms == 1234.5 && x->keys == 5 && x->mouse_dy == 0 &&
                 x->mouse_dx == 0;
            break;
        }
        case 14: {
            const proto_join *x = &m.u.join;
            ok = x->variant[0] == 0 && x->scene[0] == 0 && x->image.len == 0 && !x->has_seed;
            break;
        }
        case 15: {
            const proto_joined *x = &m.u.joined;
            ok = x->session == 5 && !strcmp(x->variant, "gr") && x->width == 16 && x->height == 9 &&
                 x->fps == 25 && x->n_keys == 1 && !strcmp(x->keys[0], "no") && x->mouse == 0;
            break;
        }
        }
        tu_check(ok, "literal %-22s field values as written", lits[i].name);
        if (lits[i].canonical) {
            rc = proto_encode(&m, &b);
            tu_check(rc == 0 && b.len == lits[i].n && memcmp(b.data, lits[i].p, b.len) == 0,
                     "literal %-22s re-encodes to the same %zu bytes (got %zu)", lits[i].name,
                     lits[i].n, b.len);
        }
    }
    proto_buf_free(&b);
}

static void test_round_trip(void) {
    printf("-- random round trips, every type\n");
    static uint8_t blob[70000];
    proto_buf b = {0}, b2 = {0};
    uint64_t s = 42;
    for (int t = 1; t < PROTO_TYPE_COUNT; t++) {
        int bad = 0, n = 300;
        size_t max_len = 0;
        for (int i = 0; i < n; i++) {
            proto_msg m, d;
            /* Mostly small blobs; now and then one past 64 KiB (bin32). */
            pt_random(&m, (proto_type)t, &s, blob, i % 50 == 7 ? sizeof blob : 300);
            char err[256] = "";
            int rc = proto_encode(&m, &b);
            if (rc == 0) rc = proto_decode(b.data, b.len, sizeof blob, &d, err, sizeof err);
            char *t1 = pt_render_str(&m), *t2 = rc == 0 ? pt_render_str(&d) : NULL;
            bool same = rc == 0 && t1 && t2 && strcmp(t1, t2) == 0;
            /* Zero copy: decoded byte fields point into the encoded buffer. */
            if (same && t == PROTO_JOIN && d.u.join.image.len)
                same = d.u.join.image.data >= b.data &&
                       d.u.join.image.data + d.u.join.image.len <= b.data + b.len;
            if (same && t == PROTO_FRAME)
                same = d.u.frame.jpeg.data >= b.data &&
                       d.u.frame.jpeg.data + d.u.frame.jpeg.len <= b.data + b.len;
            /* Canonical: the decoded message encodes to the same bytes. */
            if (same)
                same = proto_encode(&d, &b2) == 0 && b2.len == b.len &&
                       memcmp(b.data, b2.data, b.len) == 0;
            if (!same && bad++ < 3)
                printf("  mismatch (rc %d %s):\n--- sent\n%s--- got\n%s", rc, err, t1 ? t1 : "",
                       t2 ? t2 : "");
            if (b.len > max_len) max_len = b.len;
            free(t1);
            free(t2);
        }
        tu_check(bad == 0,
                 "%-8s %d random messages: encode -> decode equal, re-encode identical "
                 "(largest %zu bytes), %d mismatches",
                 proto_type_name((proto_type)t), n, max_len, bad);
    }

    /* Explicit extremes. */
    proto_msg m, d;
    char err[256];
    memset(&m, 0, sizeof m);
    m.type = PROTO_WELCOME;
    m.u.welcome.version = UINT32_MAX;
    memset(m.u.welcome.server, 'x', PROTO_MAX_NAME - 1);
    m.u.welcome.limits = (proto_limits){UINT32_MAX, 0, 0, UINT32_MAX};
    m.u.welcome.n_variants = m.u.welcome.n_scenes = PROTO_MAX_LIST;
    for (int i = 0; i < PROTO_MAX_LIST; i++) {
        /* 21 x 3-byte characters = 63 bytes */
        for (int j = 0; j < 21; j++) memcpy(m.u.welcome.variants[i] + 3 * j, "\xe2\x82\xac", 3);
        memset(m.u.welcome.scenes[i], 'a' + i, PROTO_MAX_NAME - 1);
    }
    int rc = proto_encode(&m, &b);
    if (rc == 0) rc = proto_decode(b.data, b.len, 0, &d, err, sizeof err);
    tu_check(rc == 0 && strlen(d.u.welcome.server) == 63 && d.u.welcome.n_variants == 16 &&
                 strlen(d.u.welcome.variants[15]) == 63 &&
                 !strcmp(d.u.welcome.variants[15], m.u.welcome.variants[15]) &&
                 d.u.welcome.limits.max_message_bytes == UINT32_MAX,
             "welcome with 63-byte names and 16-entry lists round-trips (%zu bytes)", b.len);

    memset(&m, 0, sizeof m);
    m.type = PROTO_ERROR;
    m.u.error.code = 999;
    memset(m.u.error.message, '"', PROTO_MAX_TEXT - 1);
    rc = proto_encode(&m, &b);
    if (rc == 0) rc = proto_decode(b.data, b.len, 0, &d, err, sizeof err);
    tu_check(rc == 0 && strlen(d.u.error.message) == 255 && d.u.error.code == 999,
             "error with a 255-byte message and code 999 round-trips");

    memset(&m, 0, sizeof m);
    m.type = PROTO_JOIN; /* every field at its default: only "t" is sent */
    rc = proto_encode(&m, &b);
    static const uint8_t bare_join[] = {0x81, TYPE(S4('j', 'o', 'i', 'n'))};
    tu_check(rc == 0 && b.len == sizeof bare_join && !memcmp(b.data, bare_join, b.len),
             "join with all defaults encodes as {t: join} only (%zu bytes)", b.len);
    rc = proto_decode(b.data, b.len, 0, &d, err, sizeof err);
    tu_check(rc == 0 && d.u.join.image.len == 0 && d.u.join.image.data == NULL &&
                 !d.u.join.has_seed && d.u.join.variant[0] == 0,
             "... and decodes back to defaults (empty image, no seed)");

    memset(&m, 0, sizeof m);
    m.type = PROTO_INPUT;
    m.u.input.seq = 1;
    m.u.input.client_ms = -0.0;
    m.u.input.mouse_dx = -0.0f;
    m.u.input.mouse_dy = FLT_TRUE_MIN;
    rc = proto_encode(&m, &b);
    if (rc == 0) rc = proto_decode(b.data, b.len, 0, &d, err, sizeof err);
    tu_check(rc == 0 && !signbit(d.u.input.client_ms) && d.u.input.mouse_dx == 0 &&
                 !signbit(d.u.input.mouse_dx) && d.u.input.mouse_dy == FLT_TRUE_MIN,
             "-0 is sent as 0, the smallest subnormal float survives");

    memset(&m, 0, sizeof m);
    m.type = PROTO_FRAME;
    m.u.frame.frame = UINT64_MAX;
    m.u.frame.block = 9007199254740993ull;
    m.u.frame.input_seq = UINT32_MAX;
    m.u.frame.input_client_ms = DBL_MAX;
    m.u.frame.server_ms = -DBL_MAX;
    m.u.frame.timings = (proto_timings){1e9f, 0, FLT_TRUE_MIN, 123456.5f, 0.1f};
    static const uint8_t one = 0xff;
    m.u.frame.jpeg = (proto_bytes){&one, 1};
    rc = proto_encode(&m, &b);
    if (rc == 0) rc = proto_decode(b.data, b.len, 1, &d, err, sizeof err);
    tu_check(rc == 0 && d.u.frame.frame == UINT64_MAX && d.u.frame.block == 9007199254740993ull &&
                 d.u.frame.input_client_ms == DBL_MAX && d.u.frame.server_ms == -DBL_MAX &&
                 d.u.frame.timings.queue_ms == 1e9f && d.u.frame.timings.block_ms == 0.1f &&
                 d.u.frame.timings.jpeg_ms == 123456.5f && d.u.frame.jpeg.len == 1,
             "frame with extreme numbers round-trips (u64 max, 2^53+1, +-DBL_MAX, 1e9f, 0.1f)");

    /* Buffer reuse: no allocation once big enough. */
    proto_buf r = {0};
    sample(&m, PROTO_FRAME);
    proto_encode(&m, &r);
    uint8_t *first = r.data;
    size_t cap = r.cap;
    for (int i = 0; i < 100; i++) proto_encode(&m, &r);
    tu_check(r.data == first && r.cap == cap, "re-encoding into one proto_buf does not reallocate");
    proto_buf_free(&r);
    tu_check(r.data == NULL && r.len == 0 && r.cap == 0, "proto_buf_free resets the buffer");
    proto_buf_free(&b);
    proto_buf_free(&b2);
}

static void test_structure_errors(void) {
    printf("-- structural errors\n");
    static const uint8_t fixint[] = {0x05}, arr[] = {0x91, 0x01}, str[] = {0xa1, 'x'},
                         nil[] = {0xc0}, bin[] = {0xc4, 0x00}, flt[] = {0xca, 0, 0, 0, 0};
    expect_err(NULL, 0, 0, PROTO_ERR_BAD_MESSAGE, "message", "empty");
    expect_err(fixint, sizeof fixint, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: int");
    expect_err(arr, sizeof arr, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: array");
    expect_err(str, sizeof str, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: str");
    expect_err(nil, sizeof nil, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: nil");
    expect_err(bin, sizeof bin, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: bin");
    expect_err(flt, sizeof flt, 0, PROTO_ERR_BAD_MESSAGE, "message", "not a map: float");

    uint8_t two[2 * sizeof lit_reset + 1];
    memcpy(two, lit_reset, sizeof lit_reset);
    two[sizeof lit_reset] = 0xc0;
    expect_err(two, sizeof lit_reset + 1, 0, PROTO_ERR_BAD_MESSAGE, "message", "trailing nil");
    memcpy(two + sizeof lit_reset, lit_reset, sizeof lit_reset);
    expect_err(two, 2 * sizeof lit_reset, 0, PROTO_ERR_BAD_MESSAGE, "message",
               "two messages in one");

    /* Counts and lengths far past the input: no allocation of their size. */
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 't'};
    static const uint8_t arr32[] = {
        0x82, TYPE(S5('r', 'e', 's', 'e', 't')), S1('x'), 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    static const uint8_t str32[] = {0x81, S1('t'), 0xdb, 0xff, 0xff, 0xff, 0xff, 'r'};
    static const uint8_t bin32[] = {
        0x82, TYPE(S5('r', 'e', 's', 'e', 't')), S1('x'), 0xc6, 0xff, 0xff, 0xff, 0xf0, 0x00};
    static const uint8_t ext32[] = {
        0x82, TYPE(S5('r', 'e', 's', 'e', 't')), S1('x'), 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t c1[] = {0x82, TYPE(S5('r', 'e', 's', 'e', 't')), S1('x'), 0xc1};
    static const uint8_t intkey[] = {0x82, TYPE(S5('r', 'e', 's', 'e', 't')), 0x01, 0x02};
    expect_err(map32, sizeof map32, 0, PROTO_ERR_BAD_MESSAGE, "message", "map32 claiming 2^32-1");
    expect_err(arr32, sizeof arr32, 0, PROTO_ERR_BAD_MESSAGE, "message", "array32 claiming 2^32-1");
    expect_err(str32, sizeof str32, 0, PROTO_ERR_BAD_MESSAGE, "message", "str32 claiming 4 GiB");
    expect_err(bin32, sizeof bin32, 0, PROTO_ERR_BAD_MESSAGE, "message", "bin32 claiming 4 GiB");
    expect_err(ext32, sizeof ext32, 0, PROTO_ERR_BAD_MESSAGE, "message", "ext32 claiming 4 GiB");
    expect_err(c1, sizeof c1, 0, PROTO_ERR_BAD_MESSAGE, "message", "never-used byte 0xc1");
    expect_err(intkey, sizeof intkey, 0, PROTO_ERR_BAD_MESSAGE, "message", "an int map key");

    /* Depth: the root map is level 1; 8 levels pass, 9 do not. Elements: 1024 in all. */
    for (int levels = 8; levels <= 9; levels++) {
        mb b = {0};
        mb_map(&b, 2);
        mb_str(&b, "t"), mb_str(&b, "leave");
        mb_str(&b, "deep");
        for (int i = 2; i < levels; i++) mb_array(&b, 1);
        mb_array(&b, 0);
        proto_msg m;
        char err[256] = "";
        int rc = decode_copy(b.p, b.n, 0, &m, err, sizeof err);
        if (levels == 8)
            tu_check(rc == 0 && m.type == PROTO_LEAVE, "unknown key nested to depth 8 is ignored");
        else
            expect_err(b.p, b.n, 0, PROTO_ERR_BAD_MESSAGE, "message", "nesting depth 9");
        mb_free(&b);
    }
    for (int elems = 1024; elems <= 1025; elems++) {
        mb b = {0};
        mb_map(&b, 2);
        mb_str(&b, "t"), mb_str(&b, "leave");
        mb_str(&b, "many");
        mb_array(&b, (uint32_t)elems - 2); /* + the 2 pairs of the root map */
        for (int i = 0; i < elems - 2; i++) mb_u8(&b, 0xc0);
        proto_msg m;
        char err[256] = "";
        int rc = decode_copy(b.p, b.n, 0, &m, err, sizeof err);
        if (elems == 1024)
            tu_check(rc == 0, "1024 container elements in all are accepted (%s)", err);
        else
            expect_err(b.p, b.n, 0, PROTO_ERR_BAD_MESSAGE, "message", "1025 container elements");
        mb_free(&b);
    }

    /* Every truncation of a valid message of every type. */
    static uint8_t blob[64];
    uint64_t s = 7;
    proto_buf b = {0};
    for (int t = 1; t < PROTO_TYPE_COUNT; t++) {
        for (int rep = 0; rep < 3; rep++) {
            proto_msg m;
            pt_random(&m, (proto_type)t, &s, blob, sizeof blob);
            if (proto_encode(&m, &b) != 0) continue;
            int bad = 0;
            char err[256];
            for (size_t n = 0; n < b.len; n++) {
                proto_msg d;
                int rc = decode_copy(b.data, n, 1 << 20, &d, err, sizeof err);
                if (rc != -PROTO_ERR_BAD_MESSAGE || !starts_with_path(err, "message")) bad++;
            }
            tu_check(bad == 0, "%-8s every truncation (0..%zu of %zu bytes) is bad_message",
                     proto_type_name((proto_type)t), b.len - 1, b.len);
        }
    }
    proto_buf_free(&b);
}

static void test_type_errors(void) {
    printf("-- the type key\n");
    static const uint8_t unknown[] = {0x81, TYPE(S3('f', 'o', 'o'))};
    static const uint8_t empty[] = {0x81, TYPE(0xa0)};
    static const uint8_t upper[] = {0x81, TYPE(S5('H', 'E', 'L', 'L', 'O'))};
    static const uint8_t num[] = {0x81, TYPE(0x01)};
    static const uint8_t tnil[] = {0x81, TYPE(0xc0)};
    static const uint8_t none[] = {0x81, S3('s', 'e', 'q'), 0x01};
    static const uint8_t emptymap[] = {0x80};
    static const uint8_t twice[] = {0x82, TYPE(S5('r', 'e', 's', 'e', 't')),
                                    TYPE(S5('l', 'e', 'a', 'v', 'e'))};
    expect_err(unknown, sizeof unknown, 0, PROTO_ERR_UNKNOWN_TYPE, "t", "t: \"foo\"");
    expect_err(empty, sizeof empty, 0, PROTO_ERR_UNKNOWN_TYPE, "t", "t: \"\"");
    expect_err(upper, sizeof upper, 0, PROTO_ERR_UNKNOWN_TYPE, "t", "t: \"HELLO\" (case matters)");
    expect_err(num, sizeof num, 0, PROTO_ERR_BAD_FIELD, "t", "t: an int");
    expect_err(tnil, sizeof tnil, 0, PROTO_ERR_BAD_FIELD, "t", "t: nil");
    expect_err(none, sizeof none, 0, PROTO_ERR_BAD_FIELD, "t", "no t");
    expect_err(emptymap, sizeof emptymap, 0, PROTO_ERR_BAD_FIELD, "t", "empty map");
    expect_err(twice, sizeof twice, 0, PROTO_ERR_BAD_FIELD, "t", "t twice");
}

/* Per field of every type: missing, nil, wrong kinds, duplicated. */
static void test_field_errors(void) {
    printf("-- every field: missing, nil, wrong type, duplicate\n");
    static const uint8_t v_str[] = {0xa1, 'x'}, v_int[] = {0x05}, v_neg[] = {0xff},
                         v_float[] = {0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}, v_nil[] = {0xc0},
                         v_bin[] = {0xc4, 0x01, 'x'}, v_true[] = {0xc3},
                         v_arr[] = {0x91, 0xa1, 'x'}, v_map[] = {0x80};
    proto_buf canon = {0};
    mb out = {0};
    char path[96];
    for (int i = 0; i < N_SPEC; i++) {
        proto_msg m;
        sample(&m, spec[i].t);
        if (proto_encode(&m, &canon) != 0) {
            tu_check(0, "sample %s encodes", proto_type_name(spec[i].t));
            continue;
        }
        const char *tn = proto_type_name(spec[i].t);
        for (const spec_field *f = spec[i].f; f->key; f++) {
            snprintf(path, sizeof path, "%s.%s", tn, f->key);
            char what[128];
            rewrite(&canon, f->key, NULL, 0, true, &out);
            if (f->opt) {
                proto_msg d;
                char err[256] = "";
                int rc = decode_copy(out.p, out.n, 1 << 20, &d, err, sizeof err);
                tu_check(rc == 0, "%-20s absent is fine (optional) %s", path, err);
            } else {
                snprintf(what, sizeof what, "%s missing", path);
                expect_err(out.p, out.n, 1 << 20, PROTO_ERR_BAD_FIELD, path, what);
            }
            rewrite(&canon, f->key, v_nil, sizeof v_nil, false, &out);
            if (f->opt) {
                proto_msg d;
                char err[256] = "";
                int rc = decode_copy(out.p, out.n, 1 << 20, &d, err, sizeof err);
                tu_check(rc == 0, "%-20s nil is fine (optional) %s", path, err);
            } else {
                snprintf(what, sizeof what, "%s nil", path);
                expect_err(out.p, out.n, 1 << 20, PROTO_ERR_BAD_FIELD, path, what);
            }
            /* Wrong kinds: every kind of value the field does not take. */
            const struct {
                const uint8_t *v;
                size_t n;
                const char *name;
                const char *ok_for; /* kinds that accept it */
            } wrong[] = {
                {v_str, sizeof v_str, "a str", "s"},    {v_int, sizeof v_int, "an int", "uUfd"},
                {v_neg, sizeof v_neg, "-1", "fd"},      {v_float, sizeof v_float, "1.0", "fd"},
                {v_bin, sizeof v_bin, "a bin", "y"},    {v_true, sizeof v_true, "true", "b"},
                {v_arr, sizeof v_arr, "an array", "l"}, {v_map, sizeof v_map, "a map", ""},
            };
            for (size_t w = 0; w < sizeof wrong / sizeof wrong[0]; w++) {
                if (strchr(wrong[w].ok_for, f->kind)) continue;
                rewrite(&canon, f->key, wrong[w].v, wrong[w].n, false, &out);
                snprintf(what, sizeof what, "%s as %s", path, wrong[w].name);
                expect_err(out.p, out.n, 1 << 20, PROTO_ERR_BAD_FIELD, path, what);
            }
            /* The same key twice. */
            mb dup = {0};
            mb_raw(&dup, canon.data, canon.len);
            dup.p[0]++; /* fixmap count + 1 */
            mb_str(&dup, f->key);
            mb_raw(&dup, v_int, sizeof v_int);
            snprintf(what, sizeof what, "%s twice", path);
            expect_err(dup.p, dup.n, 1 << 20, PROTO_ERR_BAD_FIELD, path, what);
            mb_free(&dup);
        }
        /* An unknown key is ignored. */
        mb extra = {0};
        mb_raw(&extra, canon.data, canon.len);
        extra.p[0]++;
        mb_str(&extra, "later_field");
        mb_raw(&extra, v_map, sizeof v_map);
        proto_msg d;
        char err[256] = "";
        int rc = decode_copy(extra.p, extra.n, 1 << 20, &d, err, sizeof err);
        tu_check(rc == 0 && d.type == spec[i].t, "%-20s an unknown key is ignored %s", tn, err);
        mb_free(&extra);
    }
    mb_free(&out);
    proto_buf_free(&canon);
}

/* Values out of range, strings too long or malformed, byte fields over the limit. */
static void test_value_errors(void) {
    printf("-- ranges, string and byte limits\n");
    proto_buf canon = {0};
    mb out = {0}, v = {0};
    proto_msg m;
#define WITH(type, key, build, maxb, code, path, what)                                             \
    do {                                                                                           \
        sample(&m, type);                                                                          \
        proto_encode(&m, &canon);                                                                  \
        v.n = 0;                                                                                   \
        build;                                                                                     \
        rewrite(&canon, key, v.p, v.n, false, &out);                                               \
        if (code == 0) {                                                                           \
            proto_msg d_;                                                                          \
            char e_[256] = "";                                                                     \
            int rc_ = decode_copy(out.p, out.n, maxb, &d_, e_, sizeof e_);                         \
            tu_check(rc_ == 0, "%-44s -> accepted %s", what, e_);                                  \
        } else {                                                                                   \
            expect_err(out.p, out.n, maxb, code, path, what);                                      \
        }                                                                                          \
    } while (0)
    const int BF = PROTO_ERR_BAD_FIELD;
    WITH(PROTO_INPUT, "seq", mb_int(&v, -1), 0, BF, "input.seq", "input.seq -1 (int64)");
    WITH(PROTO_INPUT, "seq", mb_u8(&v, 0xff), 0, BF, "input.seq", "input.seq -1 (fixint)");
    WITH(PROTO_INPUT, "seq", mb_uint(&v, 0), 0, BF, "input.seq", "input.seq 0");
    WITH(PROTO_INPUT, "seq", mb_uint(&v, 1ull << 32), 0, BF, "input.seq", "input.seq 2^32");
    WITH(PROTO_INPUT, "seq", mb_uint(&v, UINT32_MAX), 0, 0, "", "input.seq 2^32-1 (as uint64)");
    WITH(PROTO_INPUT, "dx", mb_f64(&v, 1000.0), 0, 0, "", "input.dx 1000");
    WITH(PROTO_INPUT, "dx", mb_int(&v, -1000), 0, 0, "", "input.dx -1000 (an int)");
    WITH(PROTO_INPUT, "dx", mb_f64(&v, 1000.5), 0, BF, "input.dx", "input.dx 1000.5");
    WITH(PROTO_INPUT, "dy", mb_f64(&v, -1e300), 0, BF, "input.dy", "input.dy -1e300");
    WITH(PROTO_INPUT, "dy", mb_f64(&v, NAN), 0, BF, "input.dy", "input.dy NaN");
    WITH(PROTO_INPUT, "ms", mb_f64(&v, INFINITY), 0, BF, "input.ms", "input.ms +inf");
    WITH(PROTO_INPUT, "ms", mb_f64(&v, -INFINITY), 0, BF, "input.ms", "input.ms -inf");
    WITH(PROTO_INPUT, "ms", mb_int(&v, INT64_MIN), 0, 0, "", "input.ms -2^63 (an int)");
    WITH(PROTO_INPUT, "keys", mb_uint(&v, 1ull << 32), 0, BF, "input.keys", "input.keys 2^32");
    WITH(PROTO_HELLO, "min", mb_uint(&v, 0), 0, BF, "hello.min", "hello.min 0");
    WITH(PROTO_HELLO, "max", mb_uint(&v, 0), 0, BF, "hello.max", "hello.max 0");
    WITH(PROTO_JOINED, "w", mb_uint(&v, 0), 0, BF, "joined.w", "joined.w 0");
    WITH(PROTO_JOINED, "h", mb_uint(&v, 16385), 0, BF, "joined.h", "joined.h 16385");
    WITH(PROTO_JOINED, "fps", mb_uint(&v, 1001), 0, BF, "joined.fps", "joined.fps 1001");
    WITH(PROTO_QUEUE, "pos", mb_uint(&v, 0), 0, BF, "queue.pos", "queue.pos 0");
    WITH(PROTO_WELCOME, "v", mb_uint(&v, 0), 0, BF, "welcome.v", "welcome.v 0");
    WITH(PROTO_WELCOME, "max_msg", mb_uint(&v, 0), 0, BF, "welcome.max_msg", "welcome.max_msg 0");
    WITH(PROTO_WELCOME, "max_hz", mb_uint(&v, 0), 0, BF, "welcome.max_hz", "welcome.max_hz 0");
    WITH(PROTO_WELCOME, "max_upload", mb_uint(&v, 0), 0, 0, "", "welcome.max_upload 0");
    WITH(PROTO_FRAME, "q_ms", mb_f64(&v, -0.5), 0, BF, "frame.q_ms", "frame.q_ms -0.5");
    WITH(PROTO_FRAME, "blk_ms", mb_f64(&v, 1.5e9), 0, BF, "frame.blk_ms", "frame.blk_ms 1.5e9");
    WITH(PROTO_FRAME, "seq", mb_uint(&v, 0), 1 << 20, 0, "", "frame.seq 0 (no input yet)");
    WITH(PROTO_STATS, "fps", mb_f64(&v, 10001), 0, BF, "stats.fps", "stats.fps 10001");
    WITH(PROTO_ERROR, "code", mb_uint(&v, 0), 0, BF, "error.code", "error.code 0");
    WITH(PROTO_ERROR, "code", mb_uint(&v, 1000), 0, BF, "error.code", "error.code 1000");
    WITH(PROTO_ERROR, "code", mb_uint(&v, 999), 0, 0, "", "error.code 999 (unknown, allowed)");

    /* Two-field rules. */
    sample(&m, PROTO_HELLO);
    m.u.hello.min_version = 2, m.u.hello.max_version = 5;
    proto_encode(&m, &canon);
    v.n = 0, mb_uint(&v, 1);
    rewrite(&canon, "max", v.p, v.n, false, &out);
    expect_err(out.p, out.n, 0, BF, "hello.max", "hello max 1 below min 2");
    m.type = PROTO_QUEUE, m.u.queue.position = 3, m.u.queue.length = 3;
    proto_encode(&m, &canon);
    v.n = 0, mb_uint(&v, 2);
    rewrite(&canon, "len", v.p, v.n, false, &out);
    expect_err(out.p, out.n, 0, BF, "queue.pos", "queue pos 3 past len 2");

    /* Strings: byte limits (not characters), UTF-8, NUL. */
    char big[300];
    memset(big, 'a', sizeof big);
    WITH(PROTO_JOIN, "variant", mb_strn(&v, big, 63), 1 << 20, 0, "", "join.variant 63 bytes");
    WITH(PROTO_JOIN, "variant", mb_strn(&v, big, 64), 1 << 20, BF, "join.variant",
         "join.variant 64 bytes");
    WITH(PROTO_JOIN, "token", mb_strn(&v, big, 255), 1 << 20, 0, "", "join.token 255 bytes");
    WITH(PROTO_JOIN, "token", mb_strn(&v, big, 256), 1 << 20, BF, "join.token",
         "join.token 256 bytes");
    WITH(PROTO_ERROR, "msg", mb_strn(&v, big, 256), 0, BF, "error.msg", "error.msg 256 bytes");
    char euros[64]; /* 21 three-byte characters and one 'a': 22 characters, 64 bytes */
    for (int i = 0; i < 21; i++) memcpy(euros + 3 * i, "\xe2\x82\xac", 3);
    euros[63] = 'a';
    WITH(PROTO_HELLO, "client", mb_strn(&v, euros, 64), 0, BF, "hello.client",
         "hello.client 22 chars / 64 bytes");
    WITH(PROTO_HELLO, "client", mb_strn(&v, euros, 63), 0, 0, "",
         "hello.client 21 chars / 63 bytes");
    static const struct {
        const char *s;
        size_t n;
        const char *name;
    } bad_utf8[] = {
        {"\xc0\x80", 2, "overlong NUL"},
        {"\xe0\x80\xaf", 3, "overlong '/'"},
        {"\xed\xa0\x80", 3, "surrogate D800"},
        {"\xf4\x90\x80\x80", 4, "U+110000"},
        {"\xff", 1, "byte ff"},
        {"\x80", 1, "lone continuation"},
        {"a\xe2\x82", 3, "cut 3-byte char"},
        {"a\0b", 3, "NUL inside"},
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        char what[96];
        snprintf(what, sizeof what, "joined.variant %s", bad_utf8[i].name);
        WITH(PROTO_JOINED, "variant", mb_strn(&v, bad_utf8[i].s, bad_utf8[i].n), 0, BF,
             "joined.variant", what);
    }
    WITH(PROTO_JOINED, "variant", mb_strn(&v, "\xf0\x9f\x8e\xae\xef\xbf\xbf", 7), 0, 0, "",
         "joined.variant U+1F3AE U+FFFF");

    /* Lists. */
    WITH(PROTO_WELCOME, "variants", mb_list(&v, 16, "v"), 0, 0, "", "welcome.variants 16 entries");
    WITH(PROTO_WELCOME, "variants", mb_list(&v, 17, "v"), 0, BF, "welcome.variants",
         "welcome.variants 17 entries");
    WITH(PROTO_WELCOME, "scenes",
         (mb_array(&v, 3), mb_str(&v, "a"), mb_str(&v, "b"), mb_strn(&v, big, 64)), 0, BF,
         "welcome.scenes[2]", "welcome.scenes[2] 64 bytes");
    WITH(PROTO_JOINED, "keys", (mb_array(&v, 2), mb_str(&v, "a"), mb_uint(&v, 1)), 0, BF,
         "joined.keys[1]", "joined.keys[1] an int");
    WITH(PROTO_JOINED, "keys", (mb_array(&v, 1), mb_strn(&v, "\xff", 1)), 0, BF, "joined.keys[0]",
         "joined.keys[0] bad UTF-8");

    /* Byte fields: the caller's limit; the JPEG may not be empty. */
    WITH(PROTO_JOIN, "img", mb_bin(&v, 100, 0x42), 100, 0, "", "join.img 100 bytes, limit 100");
    WITH(PROTO_JOIN, "img", mb_bin(&v, 101, 0x42), 100, PROTO_ERR_TOO_LARGE, "join.img",
         "join.img 101 bytes, limit 100");
    WITH(PROTO_JOIN, "img", mb_bin(&v, 0, 0), 0, 0, "", "join.img empty (= no image)");
    WITH(PROTO_JOIN, "img", mb_strn(&v, "abc", 3), 100, BF, "join.img", "join.img as str");
    WITH(PROTO_FRAME, "jpg", mb_bin(&v, 70000, 0x11), 69999, PROTO_ERR_TOO_LARGE, "frame.jpg",
         "frame.jpg 70000 bytes, limit 69999");
    WITH(PROTO_FRAME, "jpg", mb_bin(&v, 0, 0), 100, BF, "frame.jpg", "frame.jpg empty");
    WITH(PROTO_JOIN, "scene", mb_str(&v, "city"), 1 << 20, BF, "join.img",
         "join with both scene and img");
    WITH(PROTO_JOIN, "seed", mb_uint(&v, UINT64_MAX), 1 << 20, 0, "", "join.seed 2^64-1");
    WITH(PROTO_JOIN, "seed", mb_int(&v, -5), 1 << 20, BF, "join.seed", "join.seed -5");
#undef WITH
    mb_free(&out);
    mb_free(&v);
    proto_buf_free(&canon);
}

static void test_encode_errors(void) {
    printf("-- encoder refusals\n");
    proto_buf b = {0};
    proto_msg m;
    int rc;
#define REFUSE(setup, want, what)                                                                  \
    do {                                                                                           \
        sample(&m, PROTO_WELCOME);                                                                 \
        setup;                                                                                     \
        proto_encode(&(proto_msg){.type = PROTO_RESET}, &b); /* b->len > 0 before */               \
        rc = proto_encode(&m, &b);                                                                 \
        tu_check(rc == -(want) && b.len == 0, "encode refuses %-40s -> %d, len %zu", what, rc,     \
                 b.len);                                                                           \
    } while (0)
    REFUSE(m.type = 0, PROTO_ERR_UNKNOWN_TYPE, "type 0");
    REFUSE(m.type = PROTO_TYPE_COUNT, PROTO_ERR_UNKNOWN_TYPE, "type past the last");
    REFUSE(memset(m.u.welcome.server, 'a', PROTO_MAX_NAME), PROTO_ERR_BAD_FIELD,
           "a name without terminator (64 bytes)");
    REFUSE(strcpy(m.u.welcome.server, "\xc3"), PROTO_ERR_BAD_FIELD, "a name that is not UTF-8");
    REFUSE(m.u.welcome.n_variants = 17, PROTO_ERR_BAD_FIELD, "17 variants");
    REFUSE(m.u.welcome.n_scenes = -1, PROTO_ERR_BAD_FIELD, "-1 scenes");
    REFUSE((m.u.welcome.n_variants = 1, memset(m.u.welcome.variants[0], 'a', 64)),
           PROTO_ERR_BAD_FIELD, "a list entry without terminator");
    REFUSE(m.u.welcome.version = 0, PROTO_ERR_BAD_FIELD, "welcome.v 0");
    REFUSE((m.type = PROTO_INPUT, m.u.input.seq = 1, m.u.input.client_ms = NAN),
           PROTO_ERR_BAD_FIELD, "input.ms NaN");
    REFUSE((m.type = PROTO_INPUT, m.u.input.seq = 1, m.u.input.client_ms = 0,
            m.u.input.mouse_dx = 1000.5f),
           PROTO_ERR_BAD_FIELD, "input.dx 1000.5");
    REFUSE(
        (m.type = PROTO_INPUT, m.u.input.seq = 0, m.u.input.client_ms = 0, m.u.input.mouse_dx = 0),
        PROTO_ERR_BAD_FIELD, "input.seq 0");
    REFUSE((sample(&m, PROTO_FRAME), m.u.frame.jpeg.len = 0), PROTO_ERR_BAD_FIELD,
           "frame with an empty JPEG");
    REFUSE((sample(&m, PROTO_JOIN), m.u.join.image.data = NULL), PROTO_ERR_BAD_FIELD,
           "join image NULL with a length");
    REFUSE((m.type = PROTO_HELLO, m.u.hello.min_version = 3, m.u.hello.max_version = 2,
            m.u.hello.client[0] = 0),
           PROTO_ERR_BAD_FIELD, "hello max below min");
    REFUSE((sample(&m, PROTO_ERROR), m.u.error.code = 1000), PROTO_ERR_BAD_FIELD,
           "error code 1000");
    REFUSE((sample(&m, PROTO_JOIN), strcpy(m.u.join.scene, "city")), PROTO_ERR_BAD_FIELD,
           "join with both scene and image");
#undef REFUSE
    proto_buf_free(&b);
}

static void test_helpers(void) {
    printf("-- names, fatality, close codes, version choice\n");
    static const char *const names[] = {"",
                                        "bad_message",
                                        "unknown_type",
                                        "bad_field",
                                        "version",
                                        "not_joined",
                                        "already_joined",
                                        "server_full",
                                        "unauthorized",
                                        "too_large",
                                        "rate_limited",
                                        "bad_image",
                                        "idle_timeout",
                                        "slow_consumer",
                                        "engine",
                                        "shutting_down",
                                        "unknown_variant",
                                        "unknown_scene",
                                        "internal"};
    static const int fatal[] = {0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1};
    int ok = 1;
    for (int c = 1; c <= PROTO_ERR_INTERNAL; c++)
        ok &= !strcmp(proto_error_name(c), names[c]) && !strcmp(proto_error_name(-c), names[c]) &&
              proto_error_fatal(c) == fatal[c] && proto_error_fatal(-c) == fatal[c] &&
              proto_close_code(c) == (c == PROTO_ERR_SHUTTING_DOWN ? 1001 : 4000 + c);
    tu_check(ok, "all 18 error names, fatal flags and close codes as in PROTOCOL.md");
    tu_check(!strcmp(proto_error_name(0), "unknown") && !strcmp(proto_error_name(19), "unknown") &&
                 !strcmp(proto_error_name(INT32_MIN), "unknown") && proto_error_fatal(500) == 1 &&
                 proto_close_code(500) == 4500,
             "unknown codes: name \"unknown\", fatal, close 4000 + code");
    static const char *const types[] = {"",      "hello", "welcome", "join", "joined",
                                        "queue", "input", "ping",    "pong", "reset",
                                        "leave", "frame", "stats",   "error"};
    ok = 1;
    for (int t = 1; t < PROTO_TYPE_COUNT; t++)
        ok &= !strcmp(proto_type_name((proto_type)t), types[t]);
    tu_check(ok && !strcmp(proto_type_name((proto_type)0), "unknown") &&
                 !strcmp(proto_type_name(PROTO_TYPE_COUNT), "unknown"),
             "type names");
    tu_check(proto_choose_version(1, 1) == 1 && proto_choose_version(1, 7) == PROTO_VERSION &&
                 proto_choose_version(0, 1) == 1 && proto_choose_version(2, 9) == 0 &&
                 proto_choose_version(1, 0) == 0 && proto_choose_version(0, 0) == 0,
             "version choice: highest common, 0 when none");
}

/* Seeds for fuzzing ---------------------------------------------------------------------------- */

static int write_corpus(const char *dir) {
    proto_buf b = {0};
    char path[4096];
    int rc = 0;
    for (int t = 1; t < PROTO_TYPE_COUNT; t++) {
        proto_msg m;
        sample(&m, (proto_type)t);
        if (t == PROTO_WELCOME) { /* short lists keep the seed small */
            m.u.welcome.n_variants = 2, m.u.welcome.n_scenes = 1;
            strcpy(m.u.welcome.variants[0], "universal");
            strcpy(m.u.welcome.variants[1], "templerun");
            strcpy(m.u.welcome.scenes[0], "city");
            strcpy(m.u.welcome.server, "wmserve");
        }
        if (t == PROTO_ERROR) strcpy(m.u.error.message, "queue full");
        if (t == PROTO_JOINED) {
            strcpy(m.u.joined.variant, "universal");
            m.u.joined.n_keys = 2;
            strcpy(m.u.joined.keys[0], "forward");
            strcpy(m.u.joined.keys[1], "back");
        }
        if (t == PROTO_HELLO) strcpy(m.u.hello.client, "web");
        if (proto_encode(&m, &b) != 0) return 1;
        snprintf(path, sizeof path, "%s/%s.bin", dir, proto_type_name((proto_type)t));
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len) rc = 1;
        if (f) fclose(f);
        printf("%s: %zu bytes\n", path, b.len);
    }
    const struct {
        const char *name;
        const uint8_t *p;
        size_t n;
    } loose[] = {{"input_loose", lit_input_loose, sizeof lit_input_loose},
                 {"join_loose", lit_join_loose, sizeof lit_join_loose},
                 {"joined_loose", lit_joined_loose, sizeof lit_joined_loose}};
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.bin", dir, loose[i].name);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(loose[i].p, 1, loose[i].n, f) != loose[i].n) rc = 1;
        if (f) fclose(f);
        printf("%s: %zu bytes\n", path, loose[i].n);
    }
    proto_buf_free(&b);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    test_literals();
    test_round_trip();
    test_structure_errors();
    test_type_errors();
    test_field_errors();
    test_value_errors();
    test_encode_errors();
    test_helpers();
    return tu_finish("test_proto");
}
