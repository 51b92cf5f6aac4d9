/* Structured logging: one line per event, either key=value text or a JSON object, with a UTC
 * timestamp, the level and an event name, then typed fields. The logger is the process's one true
 * singleton (set up once in main, before any thread starts); lines are written whole under a mutex,
 * so threads never interleave within a line.
 *
 *   SRV_LOG(SRV_LOG_INFO, "session_joined", SRV_KU("session", id), SRV_KS("peer", ip));
 *
 * text: 2025-01-02T03:04:05.678Z info session_joined session=7 peer=127.0.0.1
 * json: {"ts":"2025-01-02T03:04:05.678Z","level":"info","event":"session_joined","session":7,...}
 * Text values with spaces, quotes or '=' are quoted and escaped. */
#ifndef WM_SERVER_LOG_H
#define WM_SERVER_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "server/buf.h"

typedef enum srv_log_level {
    SRV_LOG_ERROR = 0,
    SRV_LOG_WARN = 1,
    SRV_LOG_INFO = 2,
    SRV_LOG_DEBUG = 3,
} srv_log_level;

typedef enum srv_log_format { SRV_LOG_TEXT = 0, SRV_LOG_JSON = 1 } srv_log_format;

typedef enum srv_kv_type {
    SRV_KV_STR,
    SRV_KV_INT,
    SRV_KV_UINT,
    SRV_KV_DBL,
    SRV_KV_BOOL
} srv_kv_type;

typedef struct srv_kv {
    const char *key;
    srv_kv_type type;
    union {
        const char *s;
        long long i;
        unsigned long long u;
        double d;
    } v;
} srv_kv;

#define SRV_KS(k, x) ((srv_kv){.key = (k), .type = SRV_KV_STR, .v.s = (x)})
#define SRV_KI(k, x) ((srv_kv){.key = (k), .type = SRV_KV_INT, .v.i = (long long)(x)})
#define SRV_KU(k, x) ((srv_kv){.key = (k), .type = SRV_KV_UINT, .v.u = (unsigned long long)(x)})
#define SRV_KD(k, x) ((srv_kv){.key = (k), .type = SRV_KV_DBL, .v.d = (double)(x)})
#define SRV_KB(k, x) ((srv_kv){.key = (k), .type = SRV_KV_BOOL, .v.i = (x) ? 1 : 0})

/* "error" | "warn" | "info" | "debug" -> level, or -1. */
int srv_log_parse_level(const char *s);
/* "text" | "json" -> format, or -1. */
int srv_log_parse_format(const char *s);
const char *srv_log_level_name(srv_log_level l);

/* Sets the level, format and stream (NULL: stderr). Call before threads start. */
void srv_log_setup(srv_log_level level, srv_log_format format, FILE *out);
int srv_log_enabled(srv_log_level level);
void srv_log_kv(srv_log_level level, const char *event, const srv_kv *kv, size_t n);

/* Formats one line (with the trailing newline) into b; used by srv_log_kv and by tests. */
int srv_log_format_line(srv_buf *b, srv_log_format format, double wall_ms, srv_log_level level,
                        const char *event, const srv_kv *kv, size_t n);

#define SRV_LOG(level, event, ...)                                                                 \
    do {                                                                                           \
        if (srv_log_enabled(level)) {                                                              \
            const srv_kv srv_log_kv_[] = {__VA_ARGS__};                                            \
            srv_log_kv((level), (event), srv_log_kv_, sizeof srv_log_kv_ / sizeof *srv_log_kv_);   \
        }                                                                                          \
    } while (0)

#endif
