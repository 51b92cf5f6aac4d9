/* Test helpers for the protocol codec, shared by test_proto, proto_cat and fuzz_proto: a canonical
 * text rendering of a proto_msg and a generator of random valid messages.
 *
 * The rendering is written out per message type here, by hand and in PROTOCOL.md's key order,
 * independently of proto.c's field table, so comparing renderings also checks that table.
 * tests/test_proto_js.mjs renders decoded JS messages the same way, byte for byte:
 *   t=<type>, then one key=value line per field (optional ones too, at their default); integers in
 *   decimal; float fields as f32:<8 hex digits> / f64:<16 hex digits> of their IEEE bits; bools as
 *   true/false; strings in double quotes with bytes 0x20..0x7e except '"' and '\' as themselves and
 *   every other byte as \xNN; string lists as [s,s,...]; byte fields as <len>:<hex>; an absent
 *   seed as none. */
#ifndef WM_TESTS_PROTO_TEXT_H
#define WM_TESTS_PROTO_TEXT_H

#include "proto/proto.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void pt_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '\\')
            fputc(*p, f);
        else
            fprintf(f, "\\x%02x", *p);
    }
    fputc('"', f);
}

static inline void pt_f32(FILE *f, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    fprintf(f, "f32:%08" PRIx32, u);
}

static inline void pt_f64(FILE *f, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    fprintf(f, "f64:%016" PRIx64, u);
}

static inline void pt_bytes(FILE *f, proto_bytes b) {
    fprintf(f, "%zu:", b.len);
    for (size_t i = 0; i < b.len; i++) fprintf(f, "%02x", b.data[i]);
}

static inline void pt_list(FILE *f, const char (*names)[PROTO_MAX_NAME], int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        pt_str(f, names[i]);
    }
    fputc(']', f);
}

#define PT_U(k, v)   fprintf(f, k "=%" PRIu64 "\n", (uint64_t)(v))
#define PT_S(k, v)   (fputs(k "=", f), pt_str(f, v), fputc('\n', f))
#define PT_F32(k, v) (fputs(k "=", f), pt_f32(f, v), fputc('\n', f))
#define PT_F64(k, v) (fputs(k "=", f), pt_f64(f, v), fputc('\n', f))
#define PT_B(k, v)   fprintf(f, k "=%s\n", (v) ? "true" : "false")
#define PT_L(k, v, n)                                                                              \
    (fputs(k "=", f), pt_list(f, (const char(*)[PROTO_MAX_NAME])(v), n), fputc('\n', f))
#define PT_BY(k, v) (fputs(k "=", f), pt_bytes(f, v), fputc('\n', f))

static inline void pt_render(FILE *f, const proto_msg *m) {
    fprintf(f, "t=%s\n", proto_type_name(m->type));
    switch (m->type) {
    case PROTO_HELLO: {
        const proto_hello *x = &m->u.hello;
        PT_U("min", x->min_version);
        PT_U("max", x->max_version);
        PT_S("client", x->client);
        break;
    }
    case PROTO_WELCOME: {
        const proto_welcome *x = &m->u.welcome;
        PT_U("v", x->version);
        PT_S("server", x->server);
        PT_U("max_msg", x->limits.max_message_bytes);
        PT_U("max_upload", x->limits.max_upload_bytes);
        PT_U("max_px", x->limits.max_image_pixels);
        PT_U("max_hz", x->limits.max_input_hz);
        PT_L("variants", x->variants, x->n_variants);
        PT_L("scenes", x->scenes, x->n_scenes);
        PT_B("auth", x->token_required);
        break;
    }
    case PROTO_JOIN: {
        const proto_join *x = &m->u.join;
        PT_S("variant", x->variant);
        PT_S("scene", x->scene);
        PT_BY("img", x->image);
        PT_S("token", x->token);
        if (x->has_seed)
            PT_U("seed", x->seed);
        else
            fputs("seed=none\n", f);
        break;
    }
    case PROTO_JOINED: {
        const proto_joined *x = &m->u.joined;
        PT_U("sid", x->session);
        PT_S("variant", x->variant);
        PT_U("w", x->width);
        PT_U("h", x->height);
        PT_U("fps", x->fps);
        PT_L("keys", x->keys, x->n_keys);
        PT_B("mouse", x->mouse);
        break;
    }
    case PROTO_QUEUE:
        PT_U("pos", m->u.queue.position);
        PT_U("len", m->u.queue.length);
        break;
    case PROTO_INPUT: {
        const proto_input *x = &m->u.input;
        PT_U("seq", x->seq);
        PT_F64("ms", x->client_ms);
        PT_U("keys", x->keys);
        PT_F32("dy", x->mouse_dy);
        PT_F32("dx", x->mouse_dx);
        break;
    }
    case PROTO_PING:
        PT_U("id", m->u.ping.id);
        PT_F64("ms", m->u.ping.client_ms);
        break;
    case PROTO_PONG:
        PT_U("id", m->u.pong.id);
        PT_F64("ms", m->u.pong.client_ms);
        PT_F64("sms", m->u.pong.server_ms);
        break;
    case PROTO_FRAME: {
        const proto_frame *x = &m->u.frame;
        PT_U("n", x->frame);
        PT_U("blk", x->block);
        PT_U("seq", x->input_seq);
        PT_F64("ms", x->input_client_ms);
        PT_F64("sms", x->server_ms);
        PT_F32("q_ms", x->timings.queue_ms);
        PT_F32("dit_ms", x->timings.dit_ms);
        PT_F32("vae_ms", x->timings.vae_ms);
        PT_F32("jpg_ms", x->timings.jpeg_ms);
        PT_F32("blk_ms", x->timings.block_ms);
        PT_BY("jpg", x->jpeg);
        break;
    }
    case PROTO_STATS: {
        const proto_stats *x = &m->u.stats;
        PT_F32("fps", x->fps);
        PT_U("sent", x->frames_sent);
        PT_U("dropped", x->frames_dropped);
        PT_F32("p50_ms", x->block_ms_p50);
        PT_F32("p99_ms", x->block_ms_p99);
        PT_U("buffered", x->queue_depth);
        break;
    }
    case PROTO_ERROR:
        PT_U("code", m->u.error.code);
        PT_B("fatal", m->u.error.fatal);
        PT_S("msg", m->u.error.message);
        break;
    case PROTO_RESET:
    case PROTO_LEAVE:
    case PROTO_TYPE_COUNT:
        break;
    }
}

/* The rendering as a malloc'd string (NULL when out of memory). */
static inline char *pt_render_str(const proto_msg *m) {
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (f == NULL) return NULL;
    pt_render(f, m);
    fclose(f);
    return s;
}

/* Random valid messages ------------------------------------------------------------------------ */

static inline uint64_t pt_next(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t pt_below(uint64_t *s, uint64_t n) {
    return n ? pt_next(s) % n : 0;
}

/* Integers in [lo, hi], a third of the time an end of the range. */
static inline uint64_t pt_int(uint64_t *s, uint64_t lo, uint64_t hi) {
    switch (pt_below(s, 6)) {
    case 0:
        return lo;
    case 1:
        return hi;
    case 2:
        return lo + pt_below(s, (hi - lo < 300 ? hi - lo : 300) + 1); /* small */
    default:
        return hi - lo == UINT64_MAX ? pt_next(s) : lo + pt_below(s, hi - lo + 1);
    }
}
static inline uint64_t pt_u64(uint64_t *s) {
    static const uint64_t special[] = {0,
                                       1,
                                       127,
                                       128,
                                       255,
                                       256,
                                       65535,
                                       65536,
                                       4294967295u,
                                       4294967296u,
                                       9007199254740991u,
                                       9007199254740992u,
                                       9007199254740993u,
                                       UINT64_MAX};
    if (pt_below(s, 2)) return special[pt_below(s, sizeof special / sizeof special[0])];
    return pt_next(s) >> pt_below(s, 64);
}

/* Floats in [lo, hi] (lo <= 0 <= hi), as float32 values when f32. */
static inline double pt_float(uint64_t *s, double lo, double hi, int f32) {
    double v;
    switch (pt_below(s, 10)) {
    case 0:
        v = lo;
        break;
    case 1:
        v = hi;
        break;
    case 2:
        v = 0;
        break;
    case 3:
        v = (double)(int64_t)pt_below(s, 2000) - 1000;
        break; /* integral: sent as int */
    case 4:
        v = f32 ? FLT_TRUE_MIN : DBL_TRUE_MIN;
        break;
    case 5:
        v = -(f32 ? FLT_MIN : DBL_MIN);
        break;
    case 6: { /* random bits, finite */
        if (f32) {
            uint32_t u = (uint32_t)pt_next(s);
            float x;
            memcpy(&x, &u, sizeof x);
            v = x;
        } else {
            uint64_t u = pt_next(s);
            memcpy(&v, &u, sizeof v);
        }
        if (!isfinite(v)) v = 1.5;
        break;
    }
    case 7: { /* near the int/float64 boundary of the canonical encoding */
        static const double b[] = {4294967295.0, 4294967296.0, -2147483648.0,   -2147483649.0,
                                   2147483647.5, 1.7e12,       1712345678901.25};
        v = b[pt_below(s, sizeof b / sizeof b[0])];
        break;
    }
    default:
        v = lo + (hi - lo) * ((double)(pt_next(s) >> 11) * 0x1.0p-53);
        break;
    }
    if (f32) v = (float)v;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    if (f32) v = (float)v;
    if (v == 0) v = 0; /* -0 is sent as 0 */
    return v;
}
static inline double pt_f64v(uint64_t *s) {
    return pt_float(s, -DBL_MAX, DBL_MAX, 0);
}

/* A random string of valid UTF-8 without NUL, 0..cap-1 bytes (a third of the time exactly cap-1),
 * with quotes, backslashes, control bytes and 2-, 3- and 4-byte characters. */
static inline void pt_string(uint64_t *s, char *out, size_t cap) {
    size_t max = cap - 1, n;
    switch (pt_below(s, 3)) {
    case 0:
        n = max;
        break;
    case 1:
        n = pt_below(s, 12 < max ? 12 : max + 1);
        break;
    default:
        n = pt_below(s, max + 1);
        break;
    }
    size_t i = 0;
    while (i < n) {
        size_t left = n - i, k = 1 + pt_below(s, 4);
        if (k > left) k = left;
        uint32_t cp;
        switch (k) {
        case 1:
            cp = 1 + (uint32_t)pt_below(s, 0x7f);
            break;
        case 2:
            cp = 0x80 + (uint32_t)pt_below(s, 0x800 - 0x80);
            break;
        case 3:
            do cp = 0x800 + (uint32_t)pt_below(s, 0x10000 - 0x800);
            while (cp >= 0xD800 && cp <= 0xDFFF);
            break;
        default:
            cp = 0x10000 + (uint32_t)pt_below(s, 0x110000 - 0x10000);
            break;
        }
        unsigned char *p = (unsigned char *)out + i;
        if (k == 1) {
            p[0] = (unsigned char)cp;
        } else if (k == 2) {
            p[0] = (unsigned char)(0xC0 | (cp >> 6)), p[1] = (unsigned char)(0x80 | (cp & 0x3F));
        } else if (k == 3) {
            p[0] = (unsigned char)(0xE0 | (cp >> 12));
            p[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            p[2] = (unsigned char)(0x80 | (cp & 0x3F));
        } else {
            p[0] = (unsigned char)(0xF0 | (cp >> 18));
            p[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            p[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            p[3] = (unsigned char)(0x80 | (cp & 0x3F));
        }
        i += k;
    }
    out[n] = '\0';
}

static inline int pt_names(uint64_t *s, char (*names)[PROTO_MAX_NAME]) {
    int n = (int)pt_int(s, 0, PROTO_MAX_LIST);
    for (int i = 0; i < n; i++) pt_string(s, names[i], PROTO_MAX_NAME);
    return n;
}

/* Byte fields use blob[0, cap) (filled here); len >= minlen. */
static inline proto_bytes pt_blob(uint64_t *s, uint8_t *blob, size_t cap, size_t minlen) {
    size_t n = pt_below(s, 3) == 0 ? minlen : minlen + pt_below(s, cap - minlen + 1);
    for (size_t i = 0; i < n; i++) blob[i] = (uint8_t)pt_next(s);
    return (proto_bytes){n ? blob : NULL, n};
}

/* A random valid message of type t (PROTOCOL.md's ranges). */
static inline void pt_random(proto_msg *m, proto_type t, uint64_t *s, uint8_t *blob, size_t cap) {
    memset(m, 0, sizeof *m);
    m->type = t;
    switch (t) {
    case PROTO_HELLO: {
        proto_hello *x = &m->u.hello;
        uint32_t a = (uint32_t)pt_int(s, 1, UINT32_MAX), b = (uint32_t)pt_int(s, 1, UINT32_MAX);
        x->min_version = a < b ? a : b;
        x->max_version = a < b ? b : a;
        pt_string(s, x->client, sizeof x->client);
        break;
    }
    case PROTO_WELCOME: {
        proto_welcome *x = &m->u.welcome;
        x->version = (uint32_t)pt_int(s, 1, UINT32_MAX);
        pt_string(s, x->server, sizeof x->server);
        x->limits.max_message_bytes = (uint32_t)pt_int(s, 1, UINT32_MAX);
        x->limits.max_upload_bytes = (uint32_t)pt_int(s, 0, UINT32_MAX);
        x->limits.max_image_pixels = (uint32_t)pt_int(s, 0, UINT32_MAX);
        x->limits.max_input_hz = (uint32_t)pt_int(s, 1, UINT32_MAX);
        x->n_variants = pt_names(s, x->variants);
        x->n_scenes = pt_names(s, x->scenes);
        x->token_required = (uint8_t)pt_below(s, 2);
        break;
    }
    case PROTO_JOIN: {
        proto_join *x = &m->u.join;
        pt_string(s, x->variant, sizeof x->variant);
        switch (pt_below(s, 3)) { /* a scene or an image (or neither), never both */
        case 0:
            pt_string(s, x->scene, sizeof x->scene);
            break;
        case 1:
            x->image = pt_blob(s, blob, cap, 0);
            break;
        default:
            break;
        }
        pt_string(s, x->token, sizeof x->token);
        x->has_seed = (uint8_t)pt_below(s, 2);
        x->seed = x->has_seed ? pt_u64(s) : 0;
        break;
    }
    case PROTO_JOINED: {
        proto_joined *x = &m->u.joined;
        x->session = pt_u64(s);
        pt_string(s, x->variant, sizeof x->variant);
        x->width = (uint32_t)pt_int(s, 1, 16384);
        x->height = (uint32_t)pt_int(s, 1, 16384);
        x->fps = (uint32_t)pt_int(s, 1, 1000);
        x->n_keys = pt_names(s, x->keys);
        x->mouse = (uint8_t)pt_below(s, 2);
        break;
    }
    case PROTO_QUEUE: {
        uint32_t a = (uint32_t)pt_int(s, 1, UINT32_MAX), b = (uint32_t)pt_int(s, 1, UINT32_MAX);
        m->u.queue.position = a < b ? a : b;
        m->u.queue.length = a < b ? b : a;
        break;
    }
    case PROTO_INPUT: {
        proto_input *x = &m->u.input;
        x->seq = (uint32_t)pt_int(s, 1, UINT32_MAX);
        x->client_ms = pt_f64v(s);
        x->keys = (uint32_t)pt_int(s, 0, UINT32_MAX);
        x->mouse_dy = (float)pt_float(s, -1000, 1000, 1);
        x->mouse_dx = (float)pt_float(s, -1000, 1000, 1);
        break;
    }
    case PROTO_PING:
        m->u.ping.id = (uint32_t)pt_int(s, 0, UINT32_MAX);
        m->u.ping.client_ms = pt_f64v(s);
        break;
    case PROTO_PONG:
        m->u.pong.id = (uint32_t)pt_int(s, 0, UINT32_MAX);
        m->u.pong.client_ms = pt_f64v(s);
        m->u.pong.server_ms = pt_f64v(s);
        break;
    case PROTO_FRAME: {
        proto_frame *x = &m->u.frame;
        x->frame = pt_u64(s);
        x->block = pt_u64(s);
        x->input_seq = (uint32_t)pt_int(s, 0, UINT32_MAX);
        x->input_client_ms = pt_f64v(s);
        x->server_ms = pt_f64v(s);
        x->timings.queue_ms = (float)pt_float(s, 0, 1e9, 1);
        x->timings.dit_ms = (float)pt_float(s, 0, 1e9, 1);
        x->timings.vae_ms = (float)pt_float(s, 0, 1e9, 1);
        x->timings.jpeg_ms = (float)pt_float(s, 0, 1e9, 1);
        x->timings.block_ms = (float)pt_float(s, 0, 1e9, 1);
        x->jpeg = pt_blob(s, blob, cap, 1);
        break;
    }
    case PROTO_STATS: {
        proto_stats *x = &m->u.stats;
        x->fps = (float)pt_float(s, 0, 1e4, 1);
        x->frames_sent = pt_u64(s);
        x->frames_dropped = pt_u64(s);
        x->block_ms_p50 = (float)pt_float(s, 0, 1e9, 1);
        x->block_ms_p99 = (float)pt_float(s, 0, 1e9, 1);
        x->queue_depth = (uint32_t)pt_int(s, 0, UINT32_MAX);
        break;
    }
    case PROTO_ERROR:
        m->u.error.code = (uint32_t)pt_int(s, 1, 999);
        m->u.error.fatal = (uint8_t)pt_below(s, 2);
        pt_string(s, m->u.error.message, sizeof m->u.error.message);
        break;
    case PROTO_RESET:
    case PROTO_LEAVE:
    case PROTO_TYPE_COUNT:
        break;
    }
}

#endif
