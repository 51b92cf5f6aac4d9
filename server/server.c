/* The wmserve process: opens the model, prepares the scenes, starts the engine worker and the JPEG
 * pool, and runs one libuv loop on the main thread with libwebsockets on it
 * (LWS_SERVER_OPTION_LIBUV with our loop passed as a foreign loop, so lws's sockets and timers are
 * libuv handles beside ours). The loop does I/O and bookkeeping only.
 *
 * Shutdown (SIGINT/SIGTERM): stop admitting, send every player a SHUTTING_DOWN error (close code
 * 1001) and wait up to 3 s for the sockets to close; then stop the engine worker (it finishes the
 * block in hand, destroys its sessions and the model), destroy the lws context, close our handles,
 * and let the loop run dry. A second signal exits at once. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/access.h"
#include "server/clock.h"
#include "server/internal.h"
#include "server/log.h"

#define DRAIN_LIMIT_NS (3 * SRV_NS_PER_S)
/* Per websocket (the kernel doubles it): ~0.2 s of full-size video at 25 fps. */
#define SRV_SOCKET_SNDBUF (128 * 1024)

typedef struct pss {
    srv_conn *conn;  /* websocket connections only */
    char client[64]; /* client address found at the upgrade (X-Forwarded-For when trusted) */
} pss;

/* lws -------------------------------------------------------------------------------------------
 */

static void lws_log_emit(int level, const char *line) {
    /* lws lines look like "[2025/01/01 00:00:00:0000] E: text\n": keep the text. */
    const char *p = line;
    if (*p == '[') {
        const char *q = strstr(p, "] ");
        if (q) p = q + 2;
    }
    if (p[0] && p[1] == ':' && p[2] == ' ') p += 3;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", p);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    srv_log_level l = level & LLL_ERR    ? SRV_LOG_ERROR
                      : level & LLL_WARN ? SRV_LOG_WARN
                                         : SRV_LOG_DEBUG;
    SRV_LOG(l, "lws", SRV_KS("msg", msg));
}

static int uri_is(struct lws *wsi, const char *want) {
    char uri[64];
    int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
    return n > 0 && !strcmp(uri, want);
}

static void header(struct lws *wsi, enum lws_token_indexes t, char *out, int n) {
    if (lws_hdr_total_length(wsi, t) <= 0 || lws_hdr_copy(wsi, out, n, t) < 0) out[0] = '\0';
}

/* A websocket upgrade on /ws: the Origin check (403 when refused) and the client address. 0 lets
 * the upgrade go on. */
static int filter_upgrade(srv_server *s, struct lws *wsi, pss *p) {
    char origin[256], host[256], xff[512], client[64];
    header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
    header(wsi, WSI_TOKEN_HOST, host, sizeof host);
    lws_get_peer_simple(wsi, client, sizeof client);
    if (s->cfg.trust_forwarded_for) {
        header(wsi, WSI_TOKEN_X_FORWARDED_FOR, xff, sizeof xff);
        char fwd[64];
        if (!srv_forwarded_client(xff, fwd, sizeof fwd)) snprintf(client, sizeof client, "%s", fwd);
    }
    if (!srv_origin_allowed(s->cfg.allowed_origins, origin, host)) {
        srv_metrics_add(s->metrics, SRV_C_REFUSED_ORIGIN, 1);
        SRV_LOG(SRV_LOG_WARN, "ws_refused", SRV_KS("client", client), SRV_KS("origin", origin),
                SRV_KS("host", host), SRV_KS("why", "origin not allowed (--allowed-origins)"));
        lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "origin not allowed");
        return 1;
    }
    if (p) snprintf(p->client, sizeof p->client, "%s", client);
    return 0;
}

/* Open websockets from c's client address, c included. */
static int count_client(srv_server *s, srv_conn *c) {
    if (!c->client[0]) snprintf(c->client, sizeof c->client, "%s", c->peer);
    int n = 0;
    for (srv_conn *o = s->conns; o; o = o->next)
        if (o->wsi && !strcmp(o->client, c->client)) n++;
    return n;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    struct lws_context *ctx = lws_get_context(wsi);
    srv_server *s = ctx ? lws_context_user(ctx) : NULL;
    pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return http_on_request(s, wsi, (const char *)in, len);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* Websocket upgrades only on /ws. */
        if (!uri_is(wsi, "/ws")) {
            SRV_LOG(SRV_LOG_DEBUG, "ws_refused", SRV_KS("why", "upgrade on a path other than /ws"));
            return 1;
        }
        return filter_upgrade(s, wsi, p);
    case LWS_CALLBACK_ESTABLISHED: {
        srv_conn *c = conn_create(s, wsi);
        if (!c) return -1;
        /* A small kernel send buffer keeps frames for a slow reader in our pacer, where stale
         * ones are dropped, instead of megabytes of old video queued in the kernel. */
        int sndbuf = SRV_SOCKET_SNDBUF;
        setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        p->conn = c;
        if (p->client[0]) snprintf(c->client, sizeof c->client, "%s", p->client);
        int same = count_client(s, c);
        if (s->draining)
            conn_error(c, PROTO_ERR_SHUTTING_DOWN, "the server is shutting down");
        else if (s->nconns > s->max_conns)
            conn_error(c, PROTO_ERR_SERVER_FULL, "server full: %d connections open", s->nconns - 1);
        else if (s->cfg.max_conns_per_ip && same > s->cfg.max_conns_per_ip) {
            srv_metrics_add(s->metrics, SRV_C_REFUSED_PER_IP, 1);
            SRV_LOG(SRV_LOG_WARN, "ws_refused", SRV_KU("conn", c->id), SRV_KS("client", c->client),
                    SRV_KS("why", "too many connections from this address"));
            conn_error_as(c, PROTO_ERR_RATE_LIMITED, 1,
                          "too many connections from your address: %d open, the limit is %d",
                          same - 1, s->cfg.max_conns_per_ip);
        }
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return p && p->conn ? conn_on_receive(p->conn, in, len) : 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p && p->conn ? conn_on_writeable(p->conn) : 0;
    case LWS_CALLBACK_CLOSED:
        if (p && p->conn) {
            conn_on_closed(p->conn);
            p->conn = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    /* One protocol for HTTP and /ws: browsers open websockets without a subprotocol, which lws
     * gives to the first protocol. rx_buffer_size bounds each receive fragment, not a message. */
    {"wmserve", callback, sizeof(pss), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Housekeeping, gauges, worker events ---------------------------------------------------------- */

void server_update_gauges(srv_server *s) {
    srv_gauges g;
    memset(&g, 0, sizeof g);
    g.sessions_active = srv_admission_active(s->adm);
    g.sessions_queued = srv_admission_queued(s->adm);
    g.session_slots = srv_admission_limit(s->adm) /* players admitted at once now */;
    g.queue_limit = srv_admission_queue_limit(s->adm);
    g.connections = s->nconns;
    for (srv_conn *c = s->conns; c; c = c->next)
        if (c->pacer_init) g.client_buffer_frames += srv_pacer_buffered(&c->pacer);
    if (s->worker) srv_worker_gauges(s->worker, &g.engine_blocks_free, &g.jpeg_queue_frames);
    g.draining = s->draining;
    srv_metrics_set_gauges(s->metrics, &g);
}

static void on_housekeeping(uv_timer_t *t) {
    srv_server *s = t->data;
    uint64_t now = srv_now_ns();
    for (srv_conn *c = s->conns; c; c = c->next) session_housekeeping(c, now);
}

static void close_handle(uv_handle_t *h) {
    if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

/* Last stage: the engine is down; take lws down and close our handles, the loop then runs dry. */
static void finish(srv_server *s) {
    SRV_LOG(SRV_LOG_INFO, "shutdown_close", SRV_KI("connections", s->nconns));
    if (s->ctx) lws_context_destroy(s->ctx);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->housekeeping);
    close_handle((uv_handle_t *)&s->drain_timer);
}

static void on_worker_closed(void *user) {
    srv_server *s = user;
    s->worker = NULL;
    finish(s);
}

static void on_worker_event(void *user, srv_worker_event *ev) {
    srv_server *s = user;
    if (ev->type == SRV_WEV_EXITED) {
        s->worker_exited = 1;
        SRV_LOG(SRV_LOG_INFO, "engine_stopped",
                SRV_KD("drain_s", srv_ns_to_s(srv_now_ns() - s->drain_started_ns)));
        srv_worker_close(s->worker, on_worker_closed, s);
        return;
    }
    session_on_worker_event(s, ev);
}

static void on_drain(uv_timer_t *t) {
    srv_server *s = t->data;
    uint64_t now = srv_now_ns();
    if (s->nconns > 0 && now - s->drain_started_ns < DRAIN_LIMIT_NS) return;
    uv_timer_stop(t);
    if (s->nconns > 0)
        SRV_LOG(SRV_LOG_WARN, "shutdown_drain_timeout", SRV_KI("connections", s->nconns));
    if (s->worker)
        srv_worker_shutdown(s->worker); /* SRV_WEV_EXITED continues the shutdown */
    else
        finish(s);
}

static void start_shutdown(srv_server *s, const char *why) {
    s->draining = 1;
    s->drain_started_ns = srv_now_ns();
    srv_admission_close(s->adm);
    SRV_LOG(SRV_LOG_INFO, "shutdown_start", SRV_KS("why", why), SRV_KI("connections", s->nconns),
            SRV_KI("sessions", srv_admission_active(s->adm)));
    for (srv_conn *c = s->conns; c; c = c->next)
        conn_error(c, PROTO_ERR_SHUTTING_DOWN, "the server is shutting down");
    uv_timer_start(&s->drain_timer, on_drain, 0, 20);
}

static void on_signal(uv_signal_t *h, int signum) {
    srv_server *s = h->data;
    if (s->draining) {
        SRV_LOG(SRV_LOG_WARN, "shutdown_forced", SRV_KI("signal", signum));
        _exit(128 + signum);
    }
    start_shutdown(s, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* Start-up ----------------------------------------------------------------------------------------
 */

/* --bind must be a numeric address (or "localhost"); lws binds IPv4 addresses correctly only with
 * IPv6 disabled on the vhost, so the family decides that option. iface NULL = every address. */
static int parse_bind(const char *bind, char *iface, size_t n, int *ipv6, char *err,
                      size_t errlen) {
    const char *a = !strcmp(bind, "localhost") ? "127.0.0.1" : bind;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, a, &a4) == 1) {
        *ipv6 = 0;
    } else if (inet_pton(AF_INET6, a, &a6) == 1) {
        *ipv6 = 1;
    } else {
        snprintf(err, errlen, "--bind %s: not a numeric IPv4 or IPv6 address", bind);
        return -1;
    }
    snprintf(iface, n, "%s", a);
    return 0;
}

/* lws defers a bind it cannot do yet instead of failing; check first so a taken port or a foreign
 * address is a clear start-up error. */
static int check_bind(const char *addr, int ipv6, int port, char *err, size_t errlen) {
    int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (ipv6) {
        struct sockaddr_in6 sa;
        memset(&sa, 0, sizeof sa);
        sa.sin6_family = AF_INET6;
        sa.sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, addr, &sa.sin6_addr);
        rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, addr, &sa.sin_addr);
        rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    int e = errno;
    close(fd);
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s", addr, port, strerror(e));
        return -1;
    }
    return 0;
}

/* --max-sessions 0: as many slots as the engine can feed at the frame rate, measured. A warm-up
 * session (synthetic conditioning) runs four blocks on this thread before the worker exists;
 * blocks 2 and 3 (12 frames each, the steady shape; block 1 still pays first-use costs such as the
 * CUDA graph capture) give the time per block, and a slot needs one
 * block per 12 frame periods, with 15% left for JPEG, the loop and jitter. The measurement stops
 * early past a 20 s budget (a full-size model on a CPU): then one slot. On the GPU it also
 * measures the device memory the session took (*session_bytes), which caps the slots
 * (memory_slots). This also warms up the engine (first-use allocations, BLAS threads) before the
 * first player. */
static int measure_slots(srv_server *s, double *block_ms, size_t *session_bytes) {
    const eng_config *c = &s->mcfg;
    const size_t HW = (size_t)c->lat_h * (size_t)c->lat_w;
    const int frames = 30;
    float *cond = malloc(20 * (size_t)frames * HW * sizeof(float));
    float *clip = malloc((size_t)c->clip_tokens * (size_t)c->clip_dim * sizeof(float));
    float *lat = malloc(16 * (size_t)c->frames_per_block * HW * sizeof(float));
    uint8_t *rgb =
        malloc((size_t)ENG_MAX_FRAMES_PER_BLOCK * (size_t)s->width * (size_t)s->height * 3);
    eng_session *es = NULL;
    char err[256];
    int slots = 1;
    *block_ms = 0;
    *session_bytes = 0;
    size_t free0 = 0, free1 = 0, total = 0;
    const int on_gpu = !eng_model_device_memory(s->model, &free0, &total, err, sizeof err);
    eng_session_params p;
    memset(&p, 0, sizeof p);
    p.cond = cond, p.cond_frames = frames, p.clip = clip, p.trace_hidden_block = -1;
    if (cond && clip && lat && rgb && !eng_synthetic_conditioning(c, 1, frames, cond, clip) &&
        !eng_session_create(s->model, &p, &es, err, sizeof err)) {
        eng_action_frame act[ENG_MAX_FRAMES_PER_BLOCK];
        memset(act, 0, sizeof act);
        uint64_t t_begin = srv_now_ns();
        double sum = 0;
        int measured = 0;
        for (int b = 0; b < 4; b++) {
            uint64_t t0 = srv_now_ns();
            eng_block_timings tm;
            int n = 0;
            if (eng_session_run_block(es, act, eng_session_block_video_frames(es), lat, &tm, err,
                                      sizeof err) ||
                eng_session_decode(es, lat, rgb, &n, err, sizeof err))
                break;
            uint64_t t1 = srv_now_ns();
            if (b > 1) sum += srv_ns_to_s(t1 - t0), measured++;
            if (t1 - t_begin > 20 * SRV_NS_PER_S) break;
        }
        /* what the session holds on the device after a decoded steady block (its caches, its
         * decoder state, first-use allocations of its shapes) */
        if (on_gpu && !eng_model_device_memory(s->model, &free1, &total, err, sizeof err) &&
            free1 < free0)
            *session_bytes = free0 - free1;
        if (measured) {
            double t = sum / measured;
            *block_ms = t * 1e3;
            double budget = 0.85 * (double)ENG_MAX_FRAMES_PER_BLOCK / (double)s->cfg.fps;
            slots = (int)(budget / t);
            if (slots < 1) slots = 1;
            if (slots > 64) slots = 64;
        }
    }
    eng_session_destroy(es);
    free(cond), free(clip), free(lat), free(rgb);
    return slots;
}

/* GPU sessions the device memory holds: what is free now (the model and the warm-up's shared
 * scratch already taken) less a reserve of 5% of the card (at least 1 GiB) for allocator slack,
 * cuBLASLt and the JPEG path, over what one session took in the warm-up. An explicit
 * --max-sessions the memory cannot hold refuses to start, naming what it could afford. */
static int memory_slots(srv_server *s, size_t session_bytes, int *slots, char *err, size_t errlen) {
    size_t free_b = 0, total = 0;
    char why[256];
    *slots = 64;
    if (session_bytes == 0 || eng_model_device_memory(s->model, &free_b, &total, why, sizeof why))
        return 0; /* nothing measured: the time rule alone */
    size_t reserve = total / 20;
    if (reserve < ((size_t)1 << 30)) reserve = (size_t)1 << 30;
    const size_t usable = free_b > reserve ? free_b - reserve : 0;
    const size_t n = usable / session_bytes;
    *slots = n > 64 ? 64 : (int)n;
    if (*slots < 1) {
        snprintf(err, errlen,
                 "the GPU has %.2f GB free (%.2f GB kept in reserve) and a session needs %.2f GB: "
                 "no session fits",
                 free_b * 1e-9, reserve * 1e-9, session_bytes * 1e-9);
        return -1;
    }
    if (s->cfg.max_sessions > *slots) {
        snprintf(err, errlen,
                 "--max-sessions %d needs %.2f GB of GPU memory, %.2f GB is free (%.2f GB kept in "
                 "reserve): this GPU can afford %d sessions",
                 s->cfg.max_sessions, s->cfg.max_sessions * session_bytes * 1e-9, free_b * 1e-9,
                 reserve * 1e-9, *slots);
        return -1;
    }
    return 0;
}

static int default_jpeg_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int t = n > 1 ? (int)(n / 2) : 1;
    return t > 4 ? 4 : t;
}

static void destroy_server(srv_server *s) {
    srv_scenes_destroy(s->scenes);
    srv_admission_destroy(s->adm);
    srv_metrics_destroy(s->metrics);
    free(s->slot_conn);
    eng_model_close(s->model);
    free(s);
}

int srv_server_main(const srv_config *cfg) {
    char err[1024] = "";
    srv_server *s = calloc(1, sizeof *s);
    if (!s) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", "out of memory"));
        return 1;
    }
    s->cfg = *cfg;
    s->started_ns = srv_now_ns();
    char iface[256];
    int ipv6 = 0;
    if ((cfg->token_secret_file[0] &&
         srv_token_secret_load(cfg->token_secret_file, s->token_secret, &s->token_secret_len, err,
                               sizeof err)) ||
        parse_bind(cfg->bind, iface, sizeof iface, &ipv6, err, sizeof err) ||
        (cfg->port && check_bind(iface, ipv6, cfg->port, err, sizeof err))) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", err));
        destroy_server(s);
        return 1;
    }

    /* The model. */
    eng_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.variant = -1;
    mo.weight_seed = cfg->weight_seed;
    mo.backend = cfg->backend; /* --backend / WM_BACKEND */
    if (cfg->variant[0] && (mo.variant = eng_variant_parse(cfg->variant)) < 0) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", "unknown --variant"),
                SRV_KS("variant", cfg->variant));
        destroy_server(s);
        return 1;
    }
    uint64_t t0 = srv_now_ns();
    if (eng_model_open(cfg->model, &mo, &s->model, err, sizeof err)) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("model", cfg->model), SRV_KS("error", err));
        destroy_server(s);
        return 1;
    }
    s->mcfg = *eng_model_config(s->model);
    snprintf(s->model_desc, sizeof s->model_desc, "%s", eng_model_describe(s->model));
    char backend[256];
    eng_cpu_backend_describe(backend, sizeof backend);
    SRV_LOG(SRV_LOG_INFO, "model_open", SRV_KS("model", eng_model_describe(s->model)),
            SRV_KD("seconds", srv_ns_to_s(srv_now_ns() - t0)), SRV_KS("cpu", backend),
            SRV_KS("backend", eng_backend_name(eng_model_backend(s->model))));
    if (!eng_model_has_decoder(s->model)) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed",
                SRV_KS("error", "the model has no VAE decoder, so it cannot stream frames"));
        destroy_server(s);
        return 1;
    }
    eng_model_video_size(s->model, &s->width, &s->height);
    s->has_encoders = eng_model_has_encoders(s->model);
    s->max_upload = s->has_encoders ? cfg->max_upload_bytes : 0;
    s->max_msg = s->max_upload + SRV_JOIN_OVERHEAD;
    if (!s->has_encoders)
        SRV_LOG(SRV_LOG_WARN, "no_image_encoders",
                SRV_KS("effect", "sessions start from synthetic conditioning; uploads refused"));
    for (int i = 0; i < PROTO_MAX_LIST; i++) {
        const char *k = eng_action_key_name(s->mcfg.variant, i);
        if (!k) break;
        snprintf(s->keys[i], sizeof s->keys[i], "%s", k);
        s->nkeys++;
    }
    int first_limit = 0;
    const int on_gpu = eng_model_backend(s->model) == ENG_BACKEND_CUDA;
    if (!s->cfg.max_sessions || on_gpu) {
        double block_ms;
        size_t session_bytes = 0;
        uint64_t t1 = srv_now_ns();
        first_limit = measure_slots(s, &block_ms, &session_bytes);
        int mem_slots = 64;
        if (on_gpu && memory_slots(s, session_bytes, &mem_slots, err, sizeof err)) {
            SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", err));
            destroy_server(s);
            return 1;
        }
        if (!s->cfg.max_sessions) {
            /* Admission then follows the block time (session.c update_capacity): room for twice
             * the first estimate, as far as the GPU's memory holds sessions. */
            s->measured_slots = 1;
            s->cfg.max_sessions = 2 * first_limit + 1 < 64 ? 2 * first_limit + 1 : 64;
        }
        if (first_limit > mem_slots) first_limit = mem_slots;
        if (s->cfg.max_sessions > mem_slots) s->cfg.max_sessions = mem_slots;
        SRV_LOG(SRV_LOG_INFO, "capacity", SRV_KD("block_ms", block_ms), SRV_KI("fps", cfg->fps),
                SRV_KI("slots", first_limit), SRV_KI("most", s->cfg.max_sessions),
                SRV_KI("memory_slots", mem_slots), SRV_KD("session_gb", session_bytes * 1e-9),
                SRV_KD("seconds", srv_ns_to_s(srv_now_ns() - t1)));
    }
    if (!s->cfg.jpeg_threads) s->cfg.jpeg_threads = default_jpeg_threads();
    s->max_conns = s->cfg.max_sessions + s->cfg.max_queue + 32;

    if (srv_scenes_load(cfg->scenes_dir[0] ? cfg->scenes_dir : NULL, s->width, s->height,
                        cfg->max_image_pixels, &s->scenes, err, sizeof err)) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", err));
        destroy_server(s);
        return 1;
    }
    if (!realpath(cfg->web_dir, s->web_root)) {
        s->web_root[0] = '\0';
        SRV_LOG(SRV_LOG_WARN, "no_web_client", SRV_KS("web", cfg->web_dir),
                SRV_KS("error", strerror(errno)));
    }
    s->metrics = srv_metrics_create();
    s->adm = srv_admission_create(s->cfg.max_sessions, s->cfg.max_queue);
    s->slot_conn = calloc((size_t)s->cfg.max_sessions, sizeof *s->slot_conn);
    if (s->adm && first_limit) srv_admission_set_limit(s->adm, first_limit);
    if (!s->metrics || !s->adm || !s->slot_conn) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", "out of memory"));
        destroy_server(s);
        return 1;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    s->loop = &loop;

    srv_worker_options wo = {
        .model = s->model,
        .max_sessions = s->cfg.max_sessions,
        .ring_frames = s->cfg.buffer_frames,
        .fps = s->cfg.fps,
        .jpeg_threads = s->cfg.jpeg_threads,
        .jpeg_quality = s->cfg.jpeg_quality,
        .fault_block_fail = s->cfg.fault_block_fail,
        .fault_session = s->cfg.fault_session,
        .loop = &loop,
        .on_event = on_worker_event,
        .user = s,
    };
    if (srv_worker_create(&wo, &s->worker, err, sizeof err)) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed", SRV_KS("error", err));
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        destroy_server(s);
        return 1;
    }
    s->model = NULL; /* the worker's */

    int lws_levels = LLL_ERR | LLL_WARN | (cfg->log_level >= SRV_LOG_DEBUG ? LLL_NOTICE : 0);
    lws_set_log_level(lws_levels, lws_log_emit);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *foreign_loops[1] = {&loop};
    info.port = cfg->port;
    info.iface = iface;
    info.protocols = protocols;
    info.vhost_name = "wmserve";
    info.server_string = "wmserve";
    info.options = LWS_SERVER_OPTION_LIBUV | (ipv6 ? 0 : LWS_SERVER_OPTION_DISABLE_IPV6);
    info.foreign_loops = foreign_loops;
    info.pcontext = &s->ctx;
    info.user = s;
    s->ctx = lws_create_context(&info);
    s->vhost = s->ctx ? lws_get_vhost_by_name(s->ctx, "wmserve") : NULL;
    s->port = s->vhost ? lws_get_vhost_listen_port(s->vhost) : -1;
    int rc = 0;
    if (!s->ctx || s->port <= 0) {
        SRV_LOG(SRV_LOG_ERROR, "startup_failed",
                SRV_KS("error", "libwebsockets could not start (is the libuv event-lib plugin "
                                "libwebsockets-evlib_uv.so installed?)"));
        rc = 1;
        s->draining = 1;
        uv_timer_init(&loop, &s->drain_timer);
        s->drain_timer.data = s;
        uv_timer_start(&s->drain_timer, on_drain, 0, 0);
    } else {
        uv_signal_init(&loop, &s->sigint);
        uv_signal_init(&loop, &s->sigterm);
        s->sigint.data = s->sigterm.data = s;
        uv_signal_start(&s->sigint, on_signal, SIGINT);
        uv_signal_start(&s->sigterm, on_signal, SIGTERM);
        uv_timer_init(&loop, &s->housekeeping);
        s->housekeeping.data = s;
        uv_timer_start(&s->housekeeping, on_housekeeping, 1000, 1000);
        uv_timer_init(&loop, &s->drain_timer);
        s->drain_timer.data = s;
        char url[320];
        snprintf(url, sizeof url, ipv6 ? "http://[%s]:%d/" : "http://%s:%d/", iface, s->port);
        SRV_LOG(SRV_LOG_INFO, "listening", SRV_KI("port", s->port), SRV_KS("bind", iface),
                SRV_KS("url", url), SRV_KS("variant", eng_variant_name(s->mcfg.variant)),
                SRV_KI("width", s->width), SRV_KI("height", s->height), SRV_KI("fps", cfg->fps),
                SRV_KI("max_sessions", s->cfg.max_sessions), SRV_KI("max_queue", cfg->max_queue),
                SRV_KI("jpeg_threads", s->cfg.jpeg_threads),
                SRV_KI("scenes", srv_scenes_count(s->scenes)), SRV_KB("token", cfg->token[0] != 0),
                SRV_KS("web", s->web_root));
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    /* With a foreign loop lws 4.1 may leave the last step of its destruction to a second call once
     * its handles are closed (info.pcontext turns NULL when it is done). */
    if (s->ctx) lws_context_destroy(s->ctx);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop) == UV_EBUSY)
        SRV_LOG(SRV_LOG_WARN, "loop_not_empty", SRV_KS("effect", "handles still open at exit"));
    SRV_LOG(SRV_LOG_INFO, "exit", SRV_KI("code", rc),
            SRV_KU("frames_sent", srv_metrics_get(s->metrics, SRV_C_FRAMES_SENT)),
            SRV_KU("sessions", srv_metrics_get(s->metrics, SRV_C_SESSIONS_STARTED)));
    destroy_server(s);
    return rc;
}
