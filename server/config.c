/* Flags and environment: see config.h. One table drives parsing, the environment and --help, so the
 * three cannot drift apart. */
#include "server/config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "server/log.h"

#ifndef WMSERVE_WEB_DIR
#define WMSERVE_WEB_DIR "web"
#endif
#ifndef WMSERVE_VERSION
#define WMSERVE_VERSION "0.0.0"
#endif

typedef enum opt_kind { K_INT, K_U32, K_U64, K_DBL, K_STR, K_LEVEL, K_FORMAT, K_BACKEND } opt_kind;

typedef struct opt_def {
    const char *flag, *env, *arg, *def, *help;
    opt_kind kind;
    size_t off, size; /* field offset and (strings) size */
    double lo, hi;    /* numeric range */
} opt_def;

#define F(field) offsetof(srv_config, field), sizeof(((srv_config *)0)->field)

static const opt_def opts[] = {
    {"port", "WMSERVE_PORT", "N", "8080",
     "TCP port; 0 picks a free one (see the 'listening' log line)", K_INT, F(port), 0, 65535},
    {"bind", "WMSERVE_BIND", "ADDR", "127.0.0.1",
     "address to listen on (0.0.0.0 for every IPv4 interface)", K_STR, F(bind), 0, 0},
    {"model", "WMSERVE_MODEL", "SPEC", "synthetic:tiny",
     "synthetic:tiny (the embedded default model), synthetic:full, or a checkpoint folder", K_STR,
     F(model), 0, 0},
    {"variant", "WMSERVE_VARIANT", "NAME", "",
     "universal | gta_drive | templerun (default: the model's)", K_STR, F(variant), 0, 0},
    {"weight-seed", "WMSERVE_WEIGHT_SEED", "N", "0", "seed of synthetic weights", K_U64,
     F(weight_seed), 0, 0},
    {"backend", "WM_BACKEND", "B", "auto",
     "cpu | cuda | auto (cuda when a GPU answers, else cpu; the log says which and why)", K_BACKEND,
     F(backend), 0, 0},
    {"fps", "WMSERVE_FPS", "N", "25", "frames per second sent to each player", K_INT, F(fps), 1,
     60},
    {"jpeg-quality", "WMSERVE_JPEG_QUALITY", "N", "85", "JPEG quality of the frames", K_INT,
     F(jpeg_quality), 1, 100},
    {"jpeg-threads", "WMSERVE_JPEG_THREADS", "N", "0",
     "JPEG encoder threads (0: half the cores, 1..4)", K_INT, F(jpeg_threads), 0, 64},
    {"max-sessions", "WMSERVE_MAX_SESSIONS", "N", "0",
     "players served at once (0: as many as a measured warm-up block allows at --fps)", K_INT,
     F(max_sessions), 0, 256},
    {"max-queue", "WMSERVE_MAX_QUEUE", "N", "8",
     "players waiting for a slot; beyond that a join gets 'server full'", K_INT, F(max_queue), 0,
     1024},
    {"idle-timeout", "WMSERVE_IDLE_TIMEOUT", "S", "60",
     "seconds without any message (outside queue and start) before a close (0: never)", K_INT,
     F(idle_timeout_s), 0, 86400},
    {"token", "WMSERVE_TOKEN", "TOKEN", "",
     "access token that join must carry (prefer the environment: flags show in ps)", K_STR,
     F(token), 0, 0},
    {"scenes", "WMSERVE_SCENES", "DIR", "",
     "folder of PNG/JPEG start images offered to players (default: one built-in scene)", K_STR,
     F(scenes_dir), 0, 0},
    {"web", "WMSERVE_WEB", "DIR", WMSERVE_WEB_DIR, "folder of the browser client served over HTTP",
     K_STR, F(web_dir), 0, 0},
    {"buffer-frames", "WMSERVE_BUFFER_FRAMES", "N", "24",
     "frames buffered per player before stale ones are dropped (>= 12)", K_INT, F(buffer_frames),
     12, 240},
    {"slow-client-timeout", "WMSERVE_SLOW_CLIENT_TIMEOUT", "S", "5",
     "seconds a player may leave a frame unread before being disconnected", K_DBL, F(slow_client_s),
     0.5, 600},
    {"max-upload-bytes", "WMSERVE_MAX_UPLOAD_BYTES", "N", "4194304",
     "largest start image a player may upload", K_U32, F(max_upload_bytes), 1024, 256u << 20},
    {"max-image-pixels", "WMSERVE_MAX_IMAGE_PIXELS", "N", "8388608",
     "largest uploaded image in pixels (checked before decoding)", K_U32, F(max_image_pixels), 64,
     64u << 20},
    {"max-input-hz", "WMSERVE_MAX_INPUT_HZ", "N", "120",
     "input messages per second; more are dropped, over 4x in a second disconnects", K_U32,
     F(max_input_hz), 1, 10000},
    {"allowed-origins", "WMSERVE_ALLOWED_ORIGINS", "LIST", "",
     "browser Origins allowed to open /ws, comma-separated (https://a.example,b.example:8080); "
     "default: only the Host the page came from; * allows any. No Origin (non-browser): allowed",
     K_STR, F(allowed_origins), 0, 0},
    {"token-secret", "WMSERVE_TOKEN_SECRET_FILE", "FILE", "",
     "file holding the secret of signed tokens v1.<expiry>.<hmac-sha256>, accepted besides --token",
     K_STR, F(token_secret_file), 0, 0},
    {"make-token", "WMSERVE_MAKE_TOKEN", "S", "0",
     "print a signed token valid for S seconds (needs --token-secret) and exit", K_INT,
     F(make_token_s), 0, 400000000},
    {"max-conns-per-ip", "WMSERVE_MAX_CONNS_PER_IP", "N", "8",
     "websocket connections open at once from one client address (0: no limit)", K_INT,
     F(max_conns_per_ip), 0, 100000},
    {"trust-forwarded-for", "WMSERVE_TRUST_FORWARDED_FOR", "0|1", "0",
     "take the client address from X-Forwarded-For (only behind a proxy that sets it)", K_INT,
     F(trust_forwarded_for), 0, 1},
    {"fault-block-fail", "WMSERVE_FAULT_BLOCK_FAIL", "N", "0",
     "TEST ONLY: the N-th engine block fails as if the engine errored (0: never)", K_U64,
     F(fault_block_fail), 0, 0},
    {"fault-session", "WMSERVE_FAULT_SESSION", "ID", "0",
     "TEST ONLY: every engine block of session ID fails (0: none)", K_U64, F(fault_session), 0, 0},
    {"log-level", "WMSERVE_LOG_LEVEL", "L", "info", "error | warn | info | debug", K_LEVEL,
     F(log_level), 0, 0},
    {"log-format", "WMSERVE_LOG_FORMAT", "F", "text", "text (key=value) | json (one object a line)",
     K_FORMAT, F(log_format), 0, 0},
};
#define NOPTS ((int)(sizeof opts / sizeof *opts))

static int set_value(srv_config *c, const opt_def *o, const char *v, const char *origin, char *err,
                     size_t errlen) {
    char *base = (char *)c + o->off;
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case K_STR:
        if (strlen(v) >= o->size) {
            snprintf(err, errlen, "%s: value longer than %zu characters", origin, o->size - 1);
            return -1;
        }
        memcpy(base, v, strlen(v) + 1);
        return 0;
    case K_LEVEL: {
        int l = srv_log_parse_level(v);
        if (l < 0) {
            snprintf(err, errlen, "%s: '%s' is not error, warn, info or debug", origin, v);
            return -1;
        }
        *(int *)base = l;
        return 0;
    }
    case K_BACKEND: {
        int b = eng_backend_parse(v);
        if (b < 0) {
            snprintf(err, errlen, "%s: '%s' is not cpu, cuda or auto", origin, v);
            return -1;
        }
        *(int *)base = b;
        return 0;
    }
    case K_FORMAT: {
        int f = srv_log_parse_format(v);
        if (f < 0) {
            snprintf(err, errlen, "%s: '%s' is not text or json", origin, v);
            return -1;
        }
        *(int *)base = f;
        return 0;
    }
    case K_DBL: {
        double d = strtod(v, &end);
        if (!*v || *end || errno || !(d >= o->lo && d <= o->hi)) {
            snprintf(err, errlen, "%s: '%s' is not a number in %g..%g", origin, v, o->lo, o->hi);
            return -1;
        }
        *(double *)base = d;
        return 0;
    }
    case K_INT:
    case K_U32:
    case K_U64: {
        if (*v == '-' && o->kind != K_INT) {
            snprintf(err, errlen, "%s: '%s' must not be negative", origin, v);
            return -1;
        }
        unsigned long long u = 0;
        long long s = 0;
        if (o->kind == K_INT)
            s = strtoll(v, &end, 10);
        else
            u = strtoull(v, &end, 10);
        if (!*v || *end || errno) {
            snprintf(err, errlen, "%s: '%s' is not an integer", origin, v);
            return -1;
        }
        if (o->kind == K_U64) {
            *(uint64_t *)base = (uint64_t)u;
            return 0;
        }
        double x = o->kind == K_INT ? (double)s : (double)u;
        if (x < o->lo || x > o->hi) {
            snprintf(err, errlen, "%s: %s is outside %.0f..%.0f", origin, v, o->lo, o->hi);
            return -1;
        }
        if (o->kind == K_INT)
            *(int *)base = (int)s;
        else
            *(uint32_t *)base = (uint32_t)u;
        return 0;
    }
    }
    return -1;
}

void srv_config_defaults(srv_config *c) {
    memset(c, 0, sizeof *c);
    char err[128];
    for (int i = 0; i < NOPTS; i++)
        set_value(c, &opts[i], opts[i].def, opts[i].flag, err, sizeof err);
}

void srv_config_usage(FILE *out) {
    fprintf(out, "usage: wmserve [options]\n\n"
                 "Serves the world model to browser players over websockets (/ws), the client in\n"
                 "--web over HTTP, Prometheus metrics on /metrics and a health check on /healthz.\n"
                 "Each option can also be set by its environment variable; a flag wins.\n\n");
    for (int i = 0; i < NOPTS; i++) {
        const opt_def *o = &opts[i];
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s %s", o->flag, o->arg);
        fprintf(out, "  %-26s %s\n  %-26s default: %s; env %s\n", lhs, o->help, "",
                o->def[0] ? o->def : "(none)", o->env);
    }
    fprintf(out, "  %-26s this text\n  %-26s the version\n", "--help", "--version");
    fprintf(out,
            "\nSIGINT or SIGTERM: players get a 'shutting_down' error, sockets close, exit 0;\n"
            "a second signal exits at once.\n");
}

int srv_config_parse(srv_config *c, int argc, char **argv, srv_getenv_fn getenv_fn, FILE *out,
                     char *err, size_t errlen) {
    srv_config_defaults(c);
    char origin[96];
    for (int i = 0; getenv_fn && i < NOPTS; i++) {
        const char *v = getenv_fn(opts[i].env);
        if (!v) continue;
        snprintf(origin, sizeof origin, "environment %s", opts[i].env);
        if (set_value(c, &opts[i], v, origin, err, errlen)) return -1;
    }
    struct option lo[NOPTS + 3];
    for (int i = 0; i < NOPTS; i++)
        lo[i] = (struct option){opts[i].flag, required_argument, 0, 1000 + i};
    lo[NOPTS] = (struct option){"help", no_argument, 0, 'h'};
    lo[NOPTS + 1] = (struct option){"version", no_argument, 0, 'V'};
    lo[NOPTS + 2] = (struct option){0, 0, 0, 0};
    optind = 1;
    opterr = 0;
    for (;;) {
        int li = -1;
        int ch = getopt_long(argc, argv, ":hV", lo, &li);
        if (ch == -1) break;
        if (ch == 'h') {
            srv_config_usage(out);
            return 1;
        }
        if (ch == 'V') {
            fprintf(out, "wmserve %s\n", WMSERVE_VERSION);
            return 1;
        }
        if (ch == '?' || ch == ':') {
            const char *bad = optind - 1 < argc && optind >= 1 ? argv[optind - 1] : "?";
            snprintf(err, errlen,
                     ch == ':' ? "%s needs a value (see --help)" : "unknown option %s (see --help)",
                     bad);
            return -1;
        }
        const opt_def *o = &opts[ch - 1000];
        snprintf(origin, sizeof origin, "--%s", o->flag);
        if (set_value(c, o, optarg, origin, err, errlen)) return -1;
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
        return -1;
    }
    if (!c->model[0]) {
        snprintf(err, errlen, "--model: empty");
        return -1;
    }
    return 0;
}
