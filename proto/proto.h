/* The wmserve wire protocol: one C codec over msgpack-c, shared by the server and the load tester.
 * proto/PROTOCOL.md is the specification (every message, field, unit, limit and error code); this
 * header is its C form. Nothing outside proto/ builds or parses protocol messages.
 *
 * Every websocket message is one binary frame holding one msgpack map with a "t" (type) key and
 * short keys for the fields. Decoding is strict: unknown types, missing or mistyped fields,
 * strings or blobs past their limits, and trailing bytes are errors with a stable code. Byte
 * fields (uploaded image, JPEG frame) point into the decoded buffer: they are valid as long as it
 * is. */
#ifndef WM_PROTO_PROTO_H
#define WM_PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1
#define PROTO_MAX_NAME 64   /* variant, scene, client and server names, key names */
#define PROTO_MAX_TEXT 256  /* error messages, tokens */
#define PROTO_MAX_LIST 16   /* variants, scenes and key names listed in one message */

typedef enum proto_type {
    PROTO_HELLO = 1, /* c->s: versions the client speaks */
    PROTO_WELCOME,   /* s->c: chosen version, limits, what can be played */
    PROTO_JOIN,      /* c->s: start playing (variant, scene or uploaded image, token) */
    PROTO_JOINED,    /* s->c: session started: size, fps, key names */
    PROTO_QUEUE,     /* s->c: waiting for a slot: position */
    PROTO_INPUT,     /* c->s: held keys and accumulated mouse since the last input */
    PROTO_PING,      /* either way */
    PROTO_PONG,      /* answer to a ping */
    PROTO_RESET,     /* c->s: restart the world from the same start image */
    PROTO_LEAVE,     /* c->s: end the session */
    PROTO_FRAME,     /* s->c: one video frame (JPEG) */
    PROTO_STATS,     /* s->c: periodic session statistics */
    PROTO_ERROR,     /* s->c: an error; fatal ones are followed by a close */
    PROTO_TYPE_COUNT
} proto_type;

/* Stable error codes (never renumbered). A fatal error closes the websocket with close code
 * 4000 + code. */
typedef enum proto_error_code {
    PROTO_ERR_BAD_MESSAGE = 1,     /* not msgpack, not a map, trailing bytes */
    PROTO_ERR_UNKNOWN_TYPE = 2,
    PROTO_ERR_BAD_FIELD = 3,       /* missing, mistyped or out-of-range field */
    PROTO_ERR_VERSION = 4,         /* no common protocol version */
    PROTO_ERR_NOT_JOINED = 5,      /* input/reset before join */
    PROTO_ERR_ALREADY_JOINED = 6,
    PROTO_ERR_SERVER_FULL = 7,     /* no slot and the queue is full */
    PROTO_ERR_UNAUTHORIZED = 8,    /* token missing, wrong or expired */
    PROTO_ERR_TOO_LARGE = 9,       /* message or upload over the limit */
    PROTO_ERR_RATE_LIMITED = 10,   /* input flood */
    PROTO_ERR_BAD_IMAGE = 11,      /* upload not a PNG/JPEG, corrupt, or too many pixels */
    PROTO_ERR_IDLE_TIMEOUT = 12,
    PROTO_ERR_SLOW_CONSUMER = 13,  /* client read too slowly past the hard limit */
    PROTO_ERR_ENGINE = 14,         /* the engine failed this session */
    PROTO_ERR_SHUTTING_DOWN = 15,
    PROTO_ERR_UNKNOWN_VARIANT = 16,
    PROTO_ERR_UNKNOWN_SCENE = 17,
    PROTO_ERR_INTERNAL = 18,
} proto_error_code;
const char *proto_error_name(int code); /* "server_full", ... */

typedef struct proto_bytes {
    const uint8_t *data; /* into the decoded buffer (or the caller's data when encoding) */
    size_t len;
} proto_bytes;

typedef struct proto_limits {
    uint32_t max_message_bytes; /* any client message */
    uint32_t max_upload_bytes;  /* join image */
    uint32_t max_image_pixels;
    uint32_t max_input_hz;      /* input messages per second before rate limiting */
} proto_limits;

typedef struct proto_hello {
    uint32_t min_version, max_version;
    char client[PROTO_MAX_NAME];
} proto_hello;

typedef struct proto_welcome {
    uint32_t version;
    char server[PROTO_MAX_NAME];
    proto_limits limits;
    int n_variants, n_scenes;
    char variants[PROTO_MAX_LIST][PROTO_MAX_NAME];
    char scenes[PROTO_MAX_LIST][PROTO_MAX_NAME];
    uint8_t token_required;
} proto_welcome;

typedef struct proto_join {
    char variant[PROTO_MAX_NAME]; /* "" = server default */
    char scene[PROTO_MAX_NAME];   /* "" = none (then image or the default scene) */
    proto_bytes image;            /* PNG/JPEG upload, len 0 = none */
    char token[PROTO_MAX_TEXT];   /* "" = none */
    uint64_t seed;
    uint8_t has_seed;
} proto_join;

typedef struct proto_joined {
    uint64_t session;
    char variant[PROTO_MAX_NAME];
    uint32_t width, height, fps;
    int n_keys;
    char keys[PROTO_MAX_LIST][PROTO_MAX_NAME]; /* bit i of input.keys = keys[i] */
    uint8_t mouse;                             /* the variant takes mouse input */
} proto_joined;

typedef struct proto_queue {
    uint32_t position; /* 1 = next */
    uint32_t length;
} proto_queue;

typedef struct proto_input {
    uint32_t seq;       /* increases by 1 per input message */
    double client_ms;   /* client clock, echoed for latency measurement */
    uint32_t keys;      /* bitmask over joined.keys */
    float mouse_dy, mouse_dx; /* accumulated since the previous input (model units) */
} proto_input;

typedef struct proto_ping {
    uint32_t id;
    double client_ms;
} proto_ping;

typedef struct proto_pong {
    uint32_t id;
    double client_ms; /* echoed */
    double server_ms;
} proto_pong;

typedef struct proto_timings { /* server-side, milliseconds, for the block this frame came from */
    float queue_ms, dit_ms, vae_ms, jpeg_ms, block_ms;
} proto_timings;

typedef struct proto_frame {
    uint64_t frame;      /* frame number in the session (0-based) */
    uint64_t block;
    uint32_t input_seq;  /* last input sequence applied to this frame's block (0: none yet) */
    double input_client_ms; /* that input's client_ms, echoed */
    double server_ms;    /* server clock when sent */
    proto_timings timings;
    proto_bytes jpeg;
} proto_frame;

typedef struct proto_stats {
    float fps;            /* delivered over the last second */
    uint64_t frames_sent, frames_dropped;
    float block_ms_p50, block_ms_p99;
    uint32_t queue_depth; /* frames waiting in this client's buffer */
} proto_stats;

typedef struct proto_error {
    uint32_t code;
    uint8_t fatal;
    char message[PROTO_MAX_TEXT];
} proto_error;

typedef struct proto_msg {
    proto_type type;
    union {
        proto_hello hello;
        proto_welcome welcome;
        proto_join join;
        proto_joined joined;
        proto_queue queue;
        proto_input input;
        proto_ping ping;
        proto_pong pong;
        proto_frame frame;
        proto_stats stats;
        proto_error error;
    } u; /* PROTO_RESET and PROTO_LEAVE have no fields */
} proto_msg;

/* Decodes one message. On failure returns a negative PROTO_ERR_* code (as -code) and writes a
 * message naming the field. `max_bytes_field` bounds any byte field (upload/JPEG). */
int proto_decode(const uint8_t *buf, size_t len, size_t max_bytes_field, proto_msg *out, char *err,
                 size_t errlen);

/* Growable output buffer owned by the caller (reuse it: encoding allocates only to grow). */
typedef struct proto_buf {
    uint8_t *data;
    size_t len, cap;
} proto_buf;
void proto_buf_free(proto_buf *b);

/* Encodes m into b (b->len reset first). Returns 0 or a negative code (out of memory, a string
 * over its limit). */
int proto_encode(const proto_msg *m, proto_buf *b);

const char *proto_type_name(proto_type t); /* "hello", ... */

/* Added with the codec (PROTOCOL.md "Version negotiation" and "Errors"). */
#define PROTO_VERSION_MIN 1 /* the oldest version this build still speaks */

/* The version to answer a hello {min, max} with: the highest one both sides speak, or 0 when there
 * is none (then send a fatal PROTO_ERR_VERSION). */
uint32_t proto_choose_version(uint32_t client_min, uint32_t client_max);

/* Whether an error with this code is fatal by default (PROTOCOL.md's table); either sign. Errors
 * answering a hello are always fatal. */
int proto_error_fatal(int code);

/* The websocket close code sent after a fatal error: 4000 + code, except 1001 (going away) for
 * PROTO_ERR_SHUTTING_DOWN. Either sign. */
int proto_close_code(int code);

#endif
