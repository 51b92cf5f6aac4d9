/* Integration tests of wmserve: each scenario starts the real server (argv[1]) on a free loopback
 * port with the flags it needs and drives it with real websocket clients: tests/ws_client (the
 * libwebsockets client the smoke test and wmload use) for players, and a raw socket client
 * (harness.h) for what a well-behaved client library will not do: never reading with a tiny
 * receive window, fragments, lying length headers, dropping the TCP connection mid-block.
 *
 *   usage: test_server_integration path/to/wmserve SCENARIO   (or "all")
 *
 * Scenarios (one ctest each, see CMakeLists.txt):
 *   play       welcome, joined (size, fps, keys) for all three variants, >= 3 blocks of frames
 *              (JPEG SOI..EOI, SOF size = joined size, decodable), numbering, block structure,
 *              input echo, pacing rate, stats, ping, leave -> 1000 and the slot freed
 *   reset      frames restart at n = 0 / blk = 0, the world restarts bit for bit (same seed, no
 *              input), input seq continues across resets
 *   upload     PNG / JPEG / fixture start images; corrupt, non-image, over max_px (exact boundary),
 *              decompression-bomb headers (RSS bounded), over max_upload
 *   admission  slots and queue: queued, server_full (4007), promotion, leaving the queue
 *   idle       idle timeout with and without a session, activity that keeps a player
 *   token      missing / wrong / prefix tokens refused (4008), the right one plays
 *   malformed  structural and field errors with their codes, fatal or not as documented, the
 *              connection usable after non-fatal ones, a concurrent player unaffected
 *   limits     max_msg exactly and above (whole, fragmented, lying header), input floods
 *   slow       a client that stops reading frames (tiny SO_RCVBUF): the others keep their rate,
 *              server memory and buffers bounded, frames dropped and counted; with a short
 *              --slow-client-timeout it is disconnected (slow_consumer); a client flooding pings
 *              without reading the answers costs no memory
 *   abrupt     TCP connections dropped mid-block / mid-start / mid-upload / while queued /
 *              mid-frame: the server keeps serving, slots are freed
 *   shutdown   SIGTERM: shutting_down + 1001 for everyone, exit 0
 *
 * Every check prints what it expected and what it saw (tests/test_util.h). Expectations come from
 * proto/PROTOCOL.md, the server's documented flags (`wmserve --help`), and the engine's model
 * presets; never from the server's own answers to the same question.
 *
 * Timing: one synthetic:tiny session costs about 0.27 s of CPU per 12-frame block (mostly the VAE
 * decode), so the groups with several sessions play at 10 fps (CFPS) to fit a 2-core CI machine,
 * and the ctests run serially. Rate bounds: >= 85 % of fps and no gap over 0.5 s for a player
 * beside abuse; for pacing itself never faster than fps, and in the steady state within 10 % at
 * 10-12 fps (30 % at the default 25 fps, which a lone session barely sustains on 2 cores).
 *
 * Not a ctest: "soak" prints each second the frame rate of SOAK_PLAYERS players (1..4) at SOAK_FPS
 * with the server's underrun and block counters (SOAK_DEBUG=1: server debug log), for sizing. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "engine/config.h"
#include "proto/proto.h"
#include "tests/integration/harness.h"
#include "tests/test_util.h"
#include "tests/ws_client.h"

/* A one-character msgpack fixstr, for hand-written messages. */
#define S1(c) 0xa1, c

#ifndef WM_SOURCE_DIR
#define WM_SOURCE_DIR "."
#endif

/* Players (libwebsockets clients) ---------------------------------------------------------------- */

#define MAX_ERRS 32
#define CAP_GENS 3
#define CAP_FRAMES 24

typedef struct player {
    const char *name;
    wsc_conn *c;
    int opened, closed, close_code;
    double t_open, t_closed;
    char close_reason[128];
    int errors_at_close; /* error messages received before the close */

    int welcomed;
    proto_welcome welcome;
    int joined_count;
    proto_joined joined;
    double t_joined;
    int queue_msgs;
    uint32_t queue_pos, queue_len;

    int n_err; /* every error message */
    int errors[64];
    struct {
        int code, fatal;
        char msg[PROTO_MAX_TEXT];
    } err[MAX_ERRS];
    int pongs;
    proto_pong last_pong;
    int stats;
    proto_stats last_stats;
    int undecodable;
    int other_msgs;

    /* frames */
    int frames;
    uint64_t bytes_frames;
    uint64_t last_n, last_blk;
    int restarts, resets_sent;
    int n_gaps;            /* a frame number not following the previous one */
    char gap_note[128];
    int stale_after_joined; /* frames of an older world after the reset's joined */
    int not_from_zero;     /* a session (or reset) whose first frame was not n = 0 */
    int blk_bad;           /* blk differing from the documented block structure */
    char blk_note[128];
    int bad_jpeg;
    char jpeg_note[160];
    uint32_t max_seq_echo;
    int seq_regress, seq_unsent, echo_ms_ok, echo_ms_bad, timings_bad;
    double t_first_frame, t_last_frame, max_gap_s;
    double t_frame[256]; /* arrival of the k-th frame received (k < 256) */
    int mark_frames;
    double mark_t;
    /* engine time (dit + vae, as the frames report it) of each block received since mark() */
    int n_blk_eng;
    float blk_eng_ms[64];
    int capture;
    uint8_t *cap[CAP_GENS][CAP_FRAMES];
    size_t cap_len[CAP_GENS][CAP_FRAMES];

    /* input */
    uint32_t sent_seq;
    double auto_hz; /* > 0: send an input at this rate while joined */
    uint32_t auto_keys;
    float auto_dx;
    double next_input;
    int send_fail;
    double t_last_sent;
    double ping_every; /* > 0: send a ping this often (seconds) while open */
    double next_ping;
    uint32_t pings_sent;
} player;

static const char *g_bin;
static wsc_ctx *g_ws;
static h_server *g_srv;
#define MAX_PLAYERS 64
static player *g_pl[MAX_PLAYERS];
static int g_npl;

/* The ms a client puts in input `seq`: exact in binary, so its echo can be compared with ==. */
static double client_ms_of(uint32_t seq) { return 1000.25 + 40.0 * seq; }

static int expected_blk(uint64_t n) { return n < 9 ? 0 : (int)(1 + (n - 9) / 12); }

static void on_open(wsc_conn *c, void *user) {
    (void)c;
    player *p = user;
    p->opened = 1;
    p->t_open = h_now();
}

static void on_frame(player *p, const proto_frame *f) {
    double t = h_now();
    if (p->frames) {
        double gap = t - p->t_last_frame;
        if (gap > p->max_gap_s) p->max_gap_s = gap;
    } else {
        p->t_first_frame = t;
    }
    /* the picture */
    int w = 0, h = 0, nc = 0, mk = 0, dw = 0, dh = 0;
    char err[128];
    if (h_jpeg_sof(f->jpeg.data, f->jpeg.len, &w, &h, &nc, &mk, err, sizeof err)) {
        if (!p->bad_jpeg++) snprintf(p->jpeg_note, sizeof p->jpeg_note, "frame %llu: %s",
                                     (unsigned long long)f->frame, err);
    } else if (p->joined_count && ((uint32_t)w != p->joined.width || (uint32_t)h != p->joined.height ||
                                   mk != 0xC0 || nc != 3)) {
        if (!p->bad_jpeg++)
            snprintf(p->jpeg_note, sizeof p->jpeg_note,
                     "frame %llu: SOF%d %dx%d with %d components, joined said %ux%u baseline",
                     (unsigned long long)f->frame, mk - 0xC0, w, h, nc, p->joined.width, p->joined.height);
    } else if (h_jpeg_decode(f->jpeg.data, f->jpeg.len, &dw, &dh, err, sizeof err) || dw != w ||
               dh != h) {
        if (!p->bad_jpeg++) snprintf(p->jpeg_note, sizeof p->jpeg_note, "frame %llu: decode: %s (%dx%d)",
                                     (unsigned long long)f->frame, err, dw, dh);
    }
    /* numbering: consecutive from 0, restarting at 0 after a reset */
    int first_of_world = 0;
    if (!p->frames) {
        first_of_world = 1;
    } else if (f->frame == 0 && p->resets_sent > p->restarts) {
        p->restarts++;
        first_of_world = 1;
    } else if (p->joined_count > p->restarts + 1) {
        /* the reset's joined came: everything of the old world should have been dropped */
        p->stale_after_joined++;
    } else if (f->frame != p->last_n + 1) {
        if (!p->n_gaps++)
            snprintf(p->gap_note, sizeof p->gap_note, "frame %llu after %llu",
                     (unsigned long long)f->frame, (unsigned long long)p->last_n);
    }
    if (first_of_world && f->frame != 0) p->not_from_zero++;
    if ((int)f->block != expected_blk(f->frame)) {
        if (!p->blk_bad++)
            snprintf(p->blk_note, sizeof p->blk_note, "frame %llu has blk %llu, expected %d",
                     (unsigned long long)f->frame, (unsigned long long)f->block,
                     expected_blk(f->frame));
    }
    /* input echo */
    if (f->input_seq > p->sent_seq) p->seq_unsent++;
    if (f->input_seq < p->max_seq_echo) p->seq_regress++;
    if (f->input_seq > p->max_seq_echo) p->max_seq_echo = f->input_seq;
    if (f->input_seq ? f->input_client_ms == client_ms_of(f->input_seq) : f->input_client_ms == 0)
        p->echo_ms_ok++;
    else
        p->echo_ms_bad++;
    const proto_timings *tm = &f->timings;
    if (!(tm->queue_ms >= 0 && tm->dit_ms >= 0 && tm->vae_ms >= 0 && tm->jpeg_ms >= 0 &&
          tm->block_ms >= tm->dit_ms + tm->vae_ms - 0.01f && f->server_ms > 0))
        p->timings_bad++;
    if (p->capture && p->restarts < CAP_GENS && f->frame < CAP_FRAMES) {
        uint8_t **slot = &p->cap[p->restarts][f->frame];
        free(*slot);
        *slot = malloc(f->jpeg.len);
        if (*slot) memcpy(*slot, f->jpeg.data, f->jpeg.len);
        p->cap_len[p->restarts][f->frame] = f->jpeg.len;
    }
    if (!p->frames || f->block != p->last_blk) {
        p->blk_eng_ms[p->n_blk_eng % 64] = tm->dit_ms + tm->vae_ms;
        p->n_blk_eng++;
    }
    p->last_blk = f->block;
    p->last_n = f->frame;
    if (p->frames < 256) p->t_frame[p->frames] = t;
    p->frames++;
    p->bytes_frames += f->jpeg.len;
    p->t_last_frame = t;
}

static void on_message(wsc_conn *c, const proto_msg *m, const uint8_t *raw, size_t len, void *user) {
    (void)c, (void)raw, (void)len;
    player *p = user;
    switch (m->type) {
    case PROTO_WELCOME:
        p->welcomed++;
        p->welcome = m->u.welcome;
        break;
    case PROTO_JOINED:
        p->joined_count++;
        p->joined = m->u.joined;
        p->t_joined = h_now();
        break;
    case PROTO_QUEUE:
        p->queue_msgs++;
        p->queue_pos = m->u.queue.position;
        p->queue_len = m->u.queue.length;
        break;
    case PROTO_PONG:
        p->pongs++;
        p->last_pong = m->u.pong;
        break;
    case PROTO_STATS:
        p->stats++;
        p->last_stats = m->u.stats;
        break;
    case PROTO_FRAME: on_frame(p, &m->u.frame); break;
    case PROTO_ERROR: {
        const proto_error *e = &m->u.error;
        if (e->code < 64) p->errors[e->code]++;
        if (p->n_err < MAX_ERRS) {
            p->err[p->n_err].code = (int)e->code;
            p->err[p->n_err].fatal = e->fatal;
            snprintf(p->err[p->n_err].msg, sizeof p->err[p->n_err].msg, "%s", e->message);
        }
        p->n_err++;
        printf("  [%s] error %s (%u, fatal %d): %s\n", p->name, proto_error_name((int)e->code),
               e->code, e->fatal, e->message);
        break;
    }
    default: p->other_msgs++; break;
    }
}

static void on_bad(wsc_conn *c, const char *err, void *user) {
    (void)c;
    player *p = user;
    p->undecodable++;
    printf("  [%s] undecodable message from the server: %s\n", p->name, err);
}

static void on_close(wsc_conn *c, int code, const char *reason, void *user) {
    (void)c;
    player *p = user;
    p->closed = 1;
    p->close_code = code;
    p->t_closed = h_now();
    p->errors_at_close = p->n_err;
    snprintf(p->close_reason, sizeof p->close_reason, "%s", reason);
    p->c = NULL;
    printf("  [%s] closed: code %d reason '%s'\n", p->name, code, reason);
}

static const wsc_handlers handlers = {on_open, on_message, on_bad, on_close};

static int send_msg(player *p, const proto_msg *m) {
    p->t_last_sent = h_now();
    if (!p->c || wsc_send(p->c, m)) {
        p->send_fail++;
        printf("  [%s] could not send %s (%s)\n", p->name, proto_type_name(m->type),
               p->c ? "refused by the encoder or queue full" : "closed");
        return -1;
    }
    return 0;
}

static proto_msg mk(proto_type t) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    return m;
}

static int send_input_seq(player *p, uint32_t seq, uint32_t keys, float dy, float dx) {
    proto_msg m = mk(PROTO_INPUT);
    m.u.input.seq = seq;
    m.u.input.client_ms = client_ms_of(seq);
    m.u.input.keys = keys;
    m.u.input.mouse_dy = dy;
    m.u.input.mouse_dx = dx;
    return send_msg(p, &m);
}

static int send_input(player *p, uint32_t keys, float dx) {
    if (send_input_seq(p, p->sent_seq + 1, keys, 0, dx)) return -1;
    p->sent_seq++;
    return 0;
}

static void send_ping(player *p, uint32_t id, double ms) {
    proto_msg m = mk(PROTO_PING);
    m.u.ping.id = id;
    m.u.ping.client_ms = ms;
    send_msg(p, &m);
}

static void send_simple(player *p, proto_type t) {
    proto_msg m = mk(t);
    send_msg(p, &m);
}

/* The loop: clients, the server's log, automatic inputs. */
static void service(int ms) {
    wsc_service(g_ws, ms);
    if (g_srv) h_server_pump_log(g_srv);
    double t = h_now();
    for (int i = 0; i < g_npl; i++) {
        player *p = g_pl[i];
        if (p->ping_every > 0 && p->c && t >= p->next_ping) {
            p->next_ping = t + p->ping_every;
            send_ping(p, ++p->pings_sent, 1.0);
        }
        if (p->auto_hz <= 0 || !p->c || !p->joined_count || t < p->next_input) continue;
        p->next_input = t + 1.0 / p->auto_hz; /* no catching up: never a burst */
        send_input(p, p->auto_keys, p->auto_dx);
    }
}

#define WAIT_UNTIL(cond, timeout_s)                                                                \
    do {                                                                                           \
        double t0_ = h_now();                                                                      \
        while (!(cond) && h_now() - t0_ < (timeout_s)) service(5);                                 \
    } while (0)

static void run_for(double s) {
    double t0 = h_now();
    while (h_now() - t0 < s) service(5);
}

static player *pl_connect(const char *name) {
    player *p = calloc(1, sizeof *p);
    if (!p || g_npl == MAX_PLAYERS) {
        free(p);
        return NULL;
    }
    p->name = name;
    g_pl[g_npl++] = p;
    p->c = wsc_connect(g_ws, "127.0.0.1", g_srv->port, "/ws", &handlers, p);
    if (!p->c) {
        p->closed = 1;
        printf("  [%s] connect failed at once\n", name);
        return p;
    }
    WAIT_UNTIL(p->opened || p->closed, 5);
    return p;
}

static void pl_hello(player *p, uint32_t min, uint32_t max) {
    proto_msg m = mk(PROTO_HELLO);
    m.u.hello.min_version = min;
    m.u.hello.max_version = max;
    snprintf(m.u.hello.client, sizeof m.u.hello.client, "itest/%s", p->name);
    send_msg(p, &m);
}

typedef struct join_opts {
    const char *variant, *scene, *token;
    const uint8_t *img;
    size_t img_len;
    int has_seed;
    uint64_t seed;
} join_opts;

static void pl_join(player *p, const join_opts *o) {
    proto_msg m = mk(PROTO_JOIN);
    proto_join *j = &m.u.join;
    if (o && o->variant) snprintf(j->variant, sizeof j->variant, "%s", o->variant);
    if (o && o->scene) snprintf(j->scene, sizeof j->scene, "%s", o->scene);
    if (o && o->token) snprintf(j->token, sizeof j->token, "%s", o->token);
    if (o && o->img) {
        j->image.data = o->img;
        j->image.len = o->img_len;
    }
    if (o && o->has_seed) {
        j->seed = o->seed;
        j->has_seed = 1;
    }
    send_msg(p, &m);
}

/* connect + hello + welcome (checked) */
static player *pl_welcomed(const char *name) {
    player *p = pl_connect(name);
    if (!p) return NULL;
    pl_hello(p, 1, 1);
    WAIT_UNTIL(p->welcomed || p->closed, 5);
    tu_check(p->opened && p->welcomed == 1 && p->welcome.version == 1,
             "%s: websocket open, hello {1,1} -> welcome v=%u", name, p->welcome.version);
    return p;
}

/* ... + join + joined (checked) */
static player *pl_joined(const char *name, const join_opts *o) {
    player *p = pl_welcomed(name);
    if (!p) return NULL;
    pl_join(p, o);
    WAIT_UNTIL(p->joined_count || p->closed || p->n_err, 10);
    tu_check(p->joined_count == 1 && !p->closed && !p->n_err, "%s: join -> joined (sid %llu, %ux%u)",
             name, (unsigned long long)p->joined.session, p->joined.width, p->joined.height);
    return p;
}


static const char *last_err_msg(const player *p) {
    int i = p->n_err < MAX_ERRS ? p->n_err - 1 : MAX_ERRS - 1;
    return i >= 0 ? p->err[i].msg : "";
}
static int last_err_code(const player *p) {
    int i = p->n_err < MAX_ERRS ? p->n_err - 1 : MAX_ERRS - 1;
    return i >= 0 ? p->err[i].code : 0;
}
static int last_err_fatal(const player *p) {
    int i = p->n_err < MAX_ERRS ? p->n_err - 1 : MAX_ERRS - 1;
    return i >= 0 ? p->err[i].fatal : -1;
}

static void mark(player *p) {
    p->mark_frames = p->frames;
    p->mark_t = h_now();
    p->max_gap_s = 0;
    p->n_blk_eng = 0;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median engine time per block (s) of p's blocks since mark(), as the server reported it in the
 * frames; 0 when none came. */
static double block_engine_s(const player *p) {
    int n = p->n_blk_eng < 64 ? p->n_blk_eng : 64;
    if (!n) return 0;
    float v[64];
    memcpy(v, p->blk_eng_ms, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return 1e-3 * (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}
static double rate_since_mark(const player *p) {
    double dt = h_now() - p->mark_t;
    return dt > 0 ? (p->frames - p->mark_frames) / dt : 0;
}

/* A fatal error: the error message with code and fatal = true, then close code 4000 + code (1001
 * for shutting_down), within timeout_s. */
static void expect_fatal(player *p, int code, double timeout_s, const char *what) {
    int before = p->n_err;
    WAIT_UNTIL(p->closed, timeout_s);
    int want_close = code == PROTO_ERR_SHUTTING_DOWN ? 1001 : 4000 + code;
    int got_err = p->n_err > before || (before > 0 && last_err_code(p) == code);
    tu_check(got_err && last_err_code(p) == code && last_err_fatal(p) == 1 && p->closed &&
                 p->close_code == want_close,
             "%s: %s -> error %s (%d, fatal) then close %d; saw error %s (%d, fatal %d) '%s', "
             "%s %d",
             p->name, what, proto_error_name(code), code, want_close,
             proto_error_name(last_err_code(p)), last_err_code(p), last_err_fatal(p), last_err_msg(p),
             p->closed ? "closed with" : "still open, close", p->closed ? p->close_code : 0);
}

/* A non-fatal error: error message with code and fatal = false; the connection stays open and
 * answers a ping. `path`: the prefix PROTOCOL.md prescribes for msg ("<path>: "), or NULL. */
static void expect_nonfatal(player *p, int code, const char *path, const char *what) {
    int before = p->n_err, pongs = p->pongs;
    WAIT_UNTIL(p->n_err > before || p->closed, 5);
    int new_err = p->n_err > before;
    int path_ok = 1;
    char want[96] = "";
    if (path) {
        snprintf(want, sizeof want, "%s: ", path);
        path_ok = new_err && !strncmp(last_err_msg(p), want, strlen(want));
    }
    send_ping(p, 99, 1.5);
    WAIT_UNTIL(p->pongs > pongs || p->closed, 5);
    tu_check(new_err && last_err_code(p) == code && last_err_fatal(p) == 0 && path_ok && !p->closed &&
                 p->pongs > pongs,
             "%s: %s -> error %s (%d, not fatal)%s%s%s, still open, ping -> pong; saw %s%s (%d, "
             "fatal %d) '%s', %s, %d pong(s)",
             p->name, what, proto_error_name(code), code, path ? " msg starting '" : "", want,
             path ? "'" : "", new_err ? "" : "no new error; last ", proto_error_name(last_err_code(p)),
             last_err_code(p), last_err_fatal(p), last_err_msg(p), p->closed ? "CLOSED" : "open",
             p->pongs - pongs);
}

/* Closes what is left, frees the players. */
static void players_free(void) {
    if (g_ws) {
        wsc_ctx_destroy(g_ws);
        g_ws = NULL;
    }
    for (int i = 0; i < g_npl; i++) {
        for (int g = 0; g < CAP_GENS; g++)
            for (int f = 0; f < CAP_FRAMES; f++) free(g_pl[i]->cap[g][f]);
        free(g_pl[i]);
    }
    g_npl = 0;
}

/* Server helpers --------------------------------------------------------------------------------- */

static h_server g_server;

static int server_up(const char *const *args) {
    char err[256];
    int ok = h_server_start(&g_server, g_bin, args) == 0;
    tu_check(ok, "server started, listening on port %d", g_server.port);
    if (!ok) {
        h_server_stop(&g_server);
        return 0;
    }
    g_srv = &g_server;
    ok = wsc_ctx_create(&g_ws, err, sizeof err) == 0;
    tu_check(ok, "websocket client context (%s)", ok ? "ok" : err);
    return ok;
}

static void server_down(void) {
    players_free();
    h_server_stop(&g_server);
    /* libwebsockets' own errors come through the server's log ("error lws msg=..."); each has
     * meant a misuse of lws so far (e.g. killing a socket that waited for the close answer). */
    tu_check(g_server.lws_errors == 0, "server log: %d libwebsockets error line(s) (want 0)",
             g_server.lws_errors);
    g_srv = NULL;
}

/* Polls /metrics (servicing the clients) until key == want or timeout; returns the last value. */
static double wait_metric(const char *key, double want, double timeout_s) {
    double t0 = h_now(), v = NAN;
    for (;;) {
        v = h_server_metric(g_srv, key);
        if (v == want || h_now() - t0 > timeout_s) return v;
        run_for(0.05);
    }
}

static int healthz_ok(char *body, size_t n) {
    int st = h_http_get(g_srv->port, "/healthz", body, n, 3);
    return st == 200 && strstr(body, "\"status\":\"ok\"") != NULL;
}

/* Expected frame size of synthetic:tiny for a variant: the engine's preset, latent size x 8. */
static void tiny_size(const char *variant, int *w, int *h) {
    eng_config c;
    char err[256];
    *w = *h = -1;
    int v = eng_variant_parse(variant);
    if (v >= 0 && !eng_config_preset(&c, "tiny", (eng_variant)v, err, sizeof err)) {
        *w = 8 * c.lat_w;
        *h = 8 * c.lat_h;
    }
}

/* Common checks of a player's frame stream so far. */
static void check_stream(const player *p, const char *what) {
    tu_check(p->bad_jpeg == 0, "%s: %s: all %d frames are baseline JPEGs (SOI..EOI, SOF = %ux%u, 3 "
                               "components, decodable); %d bad%s%s",
             p->name, what, p->frames, p->joined.width, p->joined.height, p->bad_jpeg,
             p->bad_jpeg ? ": " : "", p->jpeg_note);
    tu_check(p->n_gaps == 0 && p->not_from_zero == 0 && p->stale_after_joined == 0,
             "%s: %s: frame numbers from 0 without gaps (%d gaps%s%s, %d worlds not from 0, %d stale "
             "after a reset's joined)",
             p->name, what, p->n_gaps, p->n_gaps ? ": " : "", p->gap_note, p->not_from_zero,
             p->stale_after_joined);
    tu_check(p->blk_bad == 0,
             "%s: %s: blk follows the block structure (9 frames, then 12 a block): %d off%s%s",
             p->name, what, p->blk_bad, p->blk_bad ? ": " : "", p->blk_note);
    tu_check(p->seq_unsent == 0 && p->seq_regress == 0 && p->echo_ms_bad == 0 && p->timings_bad == 0,
             "%s: %s: frame seq never above the last sent (%d) nor decreasing (%d); ms echoes the "
             "input's ms (%d ok, %d wrong); timings consistent (%d bad)",
             p->name, what, p->seq_unsent, p->seq_regress, p->echo_ms_ok, p->echo_ms_bad,
             p->timings_bad);
}

/* Frame rate of the groups where several sessions play at once. One synthetic:tiny session costs
 * about 0.27 s of CPU per 12-frame block (the VAE decode is most of it: see wmgen's table), so
 * on a 2-core CI machine two sessions at 25 fps would need more than the machine; at 10 fps two
 * or three fit, and a player that falls behind shows the server's fault, not the CPU's. */
#if defined(__SANITIZE_ADDRESS__)
#define WM_ITEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WM_ITEST_ASAN 1
#endif
#endif
#ifdef WM_ITEST_ASAN
/* Under AddressSanitizer the engine is several times slower (a tiny block 0.6-1 s on 2 loaded
 * cores): 4 fps keeps two sessions well within what it can do, so the checks still measure the
 * server's fairness, not the sanitizer's cost. */
#define CFPS 4
#define CFPS_S "4"
/* ASan's quarantine keeps freed memory resident (256 MB by default), so RSS growth under ASan
 * says nothing about our buffers: the memory bounds are enforced in the plain build. */
#define MEM_SLACK_KB (320L * 1024)
#else
#define CFPS 10
#define CFPS_S "10"
#define MEM_SLACK_KB 0L
#endif

/* The rate a player can expect when `k` sessions share the engine fairly: fps, unless the engine
 * (at the block time the server reported in p's frames since mark(), which includes whatever else
 * loads the machine) cannot make 12 frames per 12 / fps seconds for each of them. */
static double fair_rate(const player *p, int fps, int k, double *block_s) {
    double b = block_engine_s(p), engine = b > 0 ? 12.0 / (k * b) : fps;
    *block_s = b;
    return engine < fps ? engine : fps;
}

/* The concurrent player kept its pace since mark(): >= 85 % of its fair rate (fair_rate: fps on a
 * machine that has the time, less on a slow or loaded one, never less than the engine's own
 * measured pace allows), no gap over 0.5 s, or over 1.5 x k block times where the engine has less
 * than 1.5 x the time the k sessions need (then a player can run dry and waits for the k blocks
 * in front of its own), no error. What a misbehaving client must not do
 * is stall the loop, hold the engine or jump the queue; each of those shows as a rate below the
 * fair share or a long gap, whatever the machine's speed. The window is stretched to 5 s at least
 * (servicing everyone), so that one late block is not a rate by itself and the aftermath of the
 * abuse is included. k: sessions the scenario lets play at once (its --max-sessions). */
static void check_unaffected_k(const player *p, int frames0, int fps, int k, const char *what) {
    while (h_now() - p->mark_t < 5.0) service(5);
    double rate = rate_since_mark(p), b = 0, fair = fair_rate(p, fps, k, &b);
    int tight = b > 0 && 12.0 / (k * b) < 1.5 * fps;
    double gap_max = tight && 1.5 * k * b > 0.5 ? 1.5 * k * b : 0.5;
    tu_check(!p->closed && p->n_err == 0 && rate >= 0.85 * fair && p->max_gap_s < gap_max,
             "%s: unaffected %s: %d frames in %.1f s (%.1f fps, want >= 85%% of %.1f = min(fps %d, "
             "12 frames / (%d sessions x %.0f ms median engine time a block))), longest gap %.0f ms "
             "(want < %.0f), %d error(s), %s",
             p->name, what, p->frames - frames0, h_now() - p->mark_t, rate, fair, fps, k, b * 1e3,
             p->max_gap_s * 1e3, gap_max * 1e3, p->n_err, p->closed ? "CLOSED" : "open");
    check_stream(p, what);
}

/* Sessions at once in the groups with a concurrent player (their --max-sessions). */
#define CSESSIONS 2

static void check_unaffected(const player *p, int frames0, int fps, const char *what) {
    check_unaffected_k(p, frames0, fps, CSESSIONS, what);
}

/* 1. join / play / leave ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int nkeys;
    const char *keys[7];
    int mouse;
} k_variants[3] = {
    /* PROTOCOL.md "Input semantics" */
    {"universal", 4, {"forward", "back", "left", "right"}, 1},
    {"gta_drive", 2, {"forward", "back"}, 1},
    {"templerun", 7, {"no-move", "jump", "slide", "turn-left", "turn-right", "left-side", "right-side"}, 0},
};

/* The default of a flag as `wmserve --help` documents it ("default: N; env ..."), or -1. */
static long help_default(const char *flag) {
    char cmd[600], line[512];
    snprintf(cmd, sizeof cmd, "'%s' --help", g_bin);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    long v = -1;
    int in_flag = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "--");
        if (p && !strncmp(p + 2, flag, strlen(flag)) && p[2 + strlen(flag)] == ' ') in_flag = 1;
        const char *d = strstr(line, "default: ");
        if (in_flag && d) {
            v = atol(d + 9);
            break;
        }
    }
    pclose(f);
    return v;
}

static void play_variant(int vi) {
    const char *vname = k_variants[vi].name;
    /* universal at the default fps (--help's), the others at a given --fps. One tiny session at
     * 25 fps takes most of a 2-core machine (the first seconds underrun there: see the report
     * printed below), so the rate floor is loose at 25 fps and tight at 10 and 12. */
    long def_fps = help_default("fps");
    int fps = vi == 0 ? (int)def_fps : vi == 1 ? 10 : 12;
    double floor_frac = vi == 0 ? 0.7 : 0.9;
    char fps_s[8];
    snprintf(fps_s, sizeof fps_s, "%d", fps);
    printf("\n-- play: variant %s at %d fps%s\n", vname, fps, vi == 0 ? " (the default)" : "");
    const char *args[] = {"--variant", vname, "--max-sessions", "1", "--max-queue", "0",
                          "--max-upload-bytes", "300000", vi ? "--fps" : NULL, fps_s, NULL};
    if (!server_up(args)) return;
    char body[1 << 16];
    tu_check(healthz_ok(body, sizeof body), "GET /healthz -> 200 {\"status\":\"ok\"...}");

    player *a = pl_connect("A");
    pl_hello(a, 1, 3); /* the client speaks 1..3: the server picks the highest common, 1 */
    WAIT_UNTIL(a->welcomed || a->closed, 5);
    const proto_welcome *w = &a->welcome;
    tu_check(a->welcomed == 1 && w->version == 1 && !strncmp(w->server, "wmserve", 7),
             "A: hello {1,3} -> welcome v=%u (want 1), server '%s'", w->version, w->server);
    long def_px = help_default("max-image-pixels"), def_hz = help_default("max-input-hz");
    tu_check(w->limits.max_upload_bytes == 300000 &&
                 w->limits.max_message_bytes >= w->limits.max_upload_bytes + 1024 &&
                 def_px > 0 && w->limits.max_image_pixels == (uint32_t)def_px && def_hz > 0 &&
                 w->limits.max_input_hz == (uint32_t)def_hz,
             "A: welcome limits: max_upload %u (want 300000 from --max-upload-bytes), max_msg %u (want "
             ">= max_upload + 1024), max_px %u and max_hz %u (want --help's defaults %ld, %ld)",
             w->limits.max_upload_bytes, w->limits.max_message_bytes, w->limits.max_image_pixels,
             w->limits.max_input_hz, def_px, def_hz);
    tu_check(w->n_variants >= 1 && !strcmp(w->variants[0], vname) && w->n_scenes >= 1 &&
                 !w->token_required,
             "A: welcome variants[0] '%s' (want '%s'), %d scene(s) (first '%s'), auth %d (want 0)",
             w->n_variants ? w->variants[0] : "", vname, w->n_scenes, w->scenes[0], w->token_required);

    join_opts jo = {.variant = vi == 1 ? NULL : vname, /* gta_drive: the default variant ("") */
                    .scene = w->scenes[0], .has_seed = 1, .seed = 11};
    pl_join(a, &jo);
    WAIT_UNTIL(a->joined_count || a->closed || a->n_err, 10);
    int ew, eh;
    tiny_size(vname, &ew, &eh);
    const proto_joined *j = &a->joined;
    tu_check(a->joined_count == 1 && !strcmp(j->variant, vname) && (int)j->width == ew &&
                 (int)j->height == eh && j->fps == (uint32_t)fps,
             "A: join {variant '%s'} -> joined variant '%s' %ux%u (want %dx%d, the tiny preset) at %u "
             "fps (want %d, --fps or --help's default)",
             jo.variant ? jo.variant : "", j->variant, j->width, j->height, ew, eh, j->fps, fps);
    int keys_ok = j->n_keys == k_variants[vi].nkeys && j->mouse == k_variants[vi].mouse;
    for (int k = 0; keys_ok && k < j->n_keys; k++) keys_ok = !strcmp(j->keys[k], k_variants[vi].keys[k]);
    tu_check(keys_ok, "A: joined keys (%d: %s %s %s ...) and mouse %d are PROTOCOL.md's for %s (%d keys, "
                      "mouse %d)",
             j->n_keys, j->n_keys > 0 ? j->keys[0] : "", j->n_keys > 1 ? j->keys[1] : "",
             j->n_keys > 2 ? j->keys[2] : "", j->mouse, vname, k_variants[vi].nkeys,
             k_variants[vi].mouse);

    /* Three blocks of frames (9 + 12 + 12); inputs at 20 Hz from the 4th frame on. */
    WAIT_UNTIL(a->frames >= 4 || a->closed, 10);
    a->auto_hz = 20;
    a->auto_keys = 1u << (k_variants[vi].nkeys - 1);
    a->auto_dx = 0.02f;
    send_ping(a, 42, 1234.5);
    WAIT_UNTIL(a->frames >= 45 || a->closed, 15);
    /* Pacing: never faster than fps from the first frame (no bursts, whatever the engine does),
     * and from the third block on not much slower. */
    double whole = a->frames >= 45 ? 44 / (a->t_frame[44] - a->t_frame[0]) : 0;
    double steady = a->frames >= 45 ? 23 / (a->t_frame[44] - a->t_frame[21]) : 0;
    /* not much slower than fps, or than the engine's own pace where that is slower (fair_rate) */
    double blk = 0, fair = fair_rate(a, fps, 1, &blk);
    tu_check(fps > 0 && a->frames >= 45 && steady >= floor_frac * fair && steady <= 1.1 * fps &&
                 whole <= 1.05 * fps,
             "A: %d frames (want >= 45: four blocks); frames 21..44 paced at %.2f fps (want %.1f .. "
             "%.1f: %.0f%% of min(fps, 12 frames / %.0f ms engine time a block)), frames 0..44 at "
             "%.2f fps (want <= %.2f)",
             a->frames, steady, floor_frac * fair, 1.1 * fps, floor_frac * 100, blk * 1e3, whole,
             1.05 * fps);
    check_stream(a, "four blocks");
    tu_check(a->max_seq_echo >= 3 && a->echo_ms_ok > 0,
             "A: input echo advances: newest frame seq %u of %u sent (want >= 3)", a->max_seq_echo,
             a->sent_seq);
    tu_check(a->pongs == 1 && a->last_pong.id == 42 && a->last_pong.client_ms == 1234.5 &&
                 a->last_pong.server_ms > 0,
             "A: ping {42, 1234.5} -> pong {id %u, ms %.2f, sms %.1f}", a->last_pong.id,
             a->last_pong.client_ms, a->last_pong.server_ms);
    tu_check(a->stats >= 1 && a->last_stats.frames_sent > 0 && a->last_stats.frames_dropped == 0 &&
                 a->last_stats.fps > 0 && a->last_stats.fps <= 1.2f * fps &&
                 a->last_stats.frames_sent <= (uint64_t)a->frames,
             "A: %d stats message(s) (want >= 1 a second); last: fps %.1f (want 0 .. 1.2 x fps), sent "
             "%llu (want > 0 and <= the frames received), dropped %llu (want 0)",
             a->stats, a->last_stats.fps, (unsigned long long)a->last_stats.frames_sent,
             (unsigned long long)a->last_stats.frames_dropped);
    tu_check(a->n_err == 0 && a->undecodable == 0 && !a->closed,
             "A: no error and no undecodable message while playing (%d, %d)", a->n_err, a->undecodable);

    /* leave -> close 1000, the slot is freed */
    a->auto_hz = 0;
    send_simple(a, PROTO_LEAVE);
    double tl = h_now();
    WAIT_UNTIL(a->closed, 5);
    tu_check(a->closed && a->close_code == 1000 && a->n_err == 0,
             "A: leave -> close 1000 (PROTOCOL.md 'Leave'); saw %s %d after %.2f s",
             a->closed ? "close" : "still open after 5 s,", a->close_code, h_now() - tl);
    double active = wait_metric("wmserve_sessions_active", 0, 3);
    tu_check(active == 0, "/metrics wmserve_sessions_active back to 0 after the leave (%g)", active);
    double sent = h_server_metric(g_srv, "wmserve_frames_sent_total");
    tu_check(sent >= a->frames, "/metrics wmserve_frames_sent_total %g >= the %d frames A received",
             sent, a->frames);
    printf("  (pacing ticks that found no frame: wmserve_underruns_total %g)\n",
           h_server_metric(g_srv, "wmserve_underruns_total"));
    tu_check(healthz_ok(body, sizeof body) && strstr(body, "\"sessions_active\":0"),
             "GET /healthz ok with sessions_active 0");
    /* With one slot and no queue, a new player gets the freed slot at once. */
    player *b = pl_joined("B", &(join_opts){.has_seed = 1, .seed = 3});
    WAIT_UNTIL(b->frames >= 3 || b->closed, 10);
    tu_check(b->frames >= 3, "B: plays in the freed slot (%d frames)", b->frames);
    wsc_close(b->c, 1000); /* closing the websocket has the same effect as leave */
    WAIT_UNTIL(b->closed, 5);
    active = wait_metric("wmserve_sessions_active", 0, 3);
    tu_check(active == 0, "B closed its websocket (1000): wmserve_sessions_active back to 0 (%g)", active);
    server_down();
}

static void scenario_play(void) {
    for (int vi = 0; vi < 3; vi++) play_variant(vi);
}

/* 2. reset ----------------------------------------------------------------------------------------- */

static int cap_equal(const player *p, int g0, int g1, int n, int *first_diff) {
    for (int i = 0; i < n; i++) {
        if (!p->cap[g0][i] || !p->cap[g1][i] || p->cap_len[g0][i] != p->cap_len[g1][i] ||
            memcmp(p->cap[g0][i], p->cap[g1][i], p->cap_len[g0][i])) {
            *first_diff = i;
            return 0;
        }
    }
    *first_diff = -1;
    return 1;
}

static void scenario_reset(void) {
    printf("\n-- reset\n");
    const char *args[] = {"--max-sessions", "1", NULL};
    if (!server_up(args)) return;
    /* No input before the first reset: both worlds get the same actions (keys 0, mouse 0). */
    player *a = pl_joined("A", &(join_opts){.has_seed = 1, .seed = 1234});
    a->capture = 1;
    uint64_t sid = a->joined.session;
    WAIT_UNTIL(a->frames >= 21 || a->closed, 10);
    tu_check(a->frames >= 21, "A: %d frames of the first world (want >= 21: two blocks)", a->frames);

    int frames0 = a->frames;
    a->resets_sent++;
    send_simple(a, PROTO_RESET);
    WAIT_UNTIL((a->restarts >= 1 && a->frames - frames0 >= 21 + 24) || a->closed, 10);
    /* PROTOCOL.md "Reset": joined again, same sid; frames restart at n = 0, blk = 0. */
    tu_check(a->joined_count == 2 && a->joined.session == sid,
             "A: reset -> joined again with the same sid (PROTOCOL.md 'Reset'): %d joined, sid %llu "
             "(want %llu)",
             a->joined_count, (unsigned long long)a->joined.session, (unsigned long long)sid);
    tu_check(a->restarts == 1, "A: after the reset the frames restart at n = 0 (%d restart)", a->restarts);
    int diff;
    int same = cap_equal(a, 0, 1, 21, &diff);
    tu_check(same, "A: the first 21 frames after the reset equal the first world's bit for bit (same "
                   "seed, same start image, no input); first difference at frame %d (-1: none)",
             diff);
    check_stream(a, "across a reset");

    /* Inputs, then a second reset: seq numbers continue. */
    a->auto_hz = 20;
    a->auto_keys = 1;
    run_for(1.0);
    a->auto_hz = 0;
    uint32_t last = a->sent_seq;
    WAIT_UNTIL(a->max_seq_echo == last || a->closed, 10);
    tu_check(last >= 10 && a->max_seq_echo == last, "A: %u inputs sent, newest echoed %u", last,
             a->max_seq_echo);
    a->resets_sent++;
    send_simple(a, PROTO_RESET);
    WAIT_UNTIL(a->restarts >= 2 || a->closed, 5);
    send_input_seq(a, 1, 1, 0, 0); /* seq must stay above the last one, across resets */
    /* PROTOCOL.md "Sending": a seq not greater than the last one is bad_field input.seq. */
    expect_nonfatal(a, PROTO_ERR_BAD_FIELD, "input.seq", "input seq 1 after a reset (seq continues)");
    send_input(a, 2, 0.05f); /* last + 1 */
    WAIT_UNTIL(a->max_seq_echo == a->sent_seq || a->closed, 10);
    tu_check(a->max_seq_echo == last + 1 && a->restarts == 2,
             "A: input seq %u after the second reset is applied (frames echo %u) in the restarted "
             "world (%d restarts)",
             last + 1, a->max_seq_echo, a->restarts);
    check_stream(a, "after two resets");
    double started = h_server_metric(g_srv, "wmserve_sessions_started_total");
    double active = h_server_metric(g_srv, "wmserve_sessions_active");
    tu_check(started == 1 && active == 1,
             "metrics: resets keep one session (sessions_started_total %g, sessions_active %g)", started,
             active);

    player *b = pl_welcomed("B");
    send_simple(b, PROTO_RESET);
    expect_nonfatal(b, PROTO_ERR_NOT_JOINED, NULL, "reset before join");
    server_down();
}

/* 3. uploads --------------------------------------------------------------------------------------- */

static void upload_plays(const char *name, const uint8_t *img, size_t n, const char *what) {
    player *p = pl_joined(name, &(join_opts){.img = img, .img_len = n, .has_seed = 1, .seed = 5});
    WAIT_UNTIL(p->frames >= 12 || p->closed, 10);
    tu_check(p->frames >= 12 && p->bad_jpeg == 0,
             "%s: started from %s (%zu bytes): %d frames of %ux%u, %d bad JPEG", name, what, n,
             p->frames, p->joined.width, p->joined.height, p->bad_jpeg);
    send_simple(p, PROTO_LEAVE);
    WAIT_UNTIL(p->closed, 5);
    wait_metric("wmserve_sessions_active", 0, 3);
}

static void scenario_upload(void) {
    printf("\n-- upload\n");
    const char *args[] = {"--max-sessions", "2", "--max-upload-bytes", "200000", "--max-image-pixels",
                          "1000000", NULL};
    if (!server_up(args)) return;
    uint8_t *png = NULL, *jpg = NULL, *fix = NULL, *big_ok = NULL, *big_px = NULL;
    size_t png_n = 0, jpg_n = 0, fix_n = 0, big_ok_n = 0, big_px_n = 0;
    int made = !h_make_png(320, 180, &png, &png_n) && !h_make_jpeg(300, 200, &jpg, &jpg_n);
    tu_check(made, "made a 320x180 PNG (%zu bytes) and a 300x200 JPEG (%zu bytes)", png_n, jpg_n);
    fix = h_read_file(WM_SOURCE_DIR "/tests/fixtures/start.png", &fix_n);
    tu_check(fix != NULL, "read tests/fixtures/start.png (%zu bytes)", fix_n);
    /* max_px boundary: exactly 1000000 pixels is allowed, one row more is not ("more than max_px") */
    made = !h_make_png(1000, 1000, &big_ok, &big_ok_n) && !h_make_png(1000, 1001, &big_px, &big_px_n);
    tu_check(made && big_ok_n < 200000 && big_px_n < 200000,
             "made 1000x1000 (%zu bytes) and 1000x1001 (%zu bytes) PNGs, both under max_upload",
             big_ok_n, big_px_n);

    player *a = pl_welcomed("A");
    tu_check(a->welcome.limits.max_upload_bytes == 200000 && a->welcome.limits.max_image_pixels == 1000000 &&
                 a->welcome.limits.max_message_bytes >= 200000 + 1024,
             "A: welcome max_upload %u, max_px %u, max_msg %u (want 200000, 1000000, >= 201024)",
             a->welcome.limits.max_upload_bytes, a->welcome.limits.max_image_pixels,
             a->welcome.limits.max_message_bytes);
    wsc_close(a->c, 1000);
    if (png && jpg) {
        upload_plays("U1", png, png_n, "a PNG made here");
        upload_plays("U2", jpg, jpg_n, "a JPEG made here");
    }
    if (fix) upload_plays("U3", fix, fix_n, "tests/fixtures/start.png");
    if (big_ok) upload_plays("U4", big_ok, big_ok_n, "a PNG of exactly max_px pixels (1000x1000)");

    /* Refused uploads on one connection: each non-fatal, then a good join on the same connection. */
    player *c = pl_welcomed("C");
    if (png) {
        uint8_t *bad = malloc(png_n);
        memcpy(bad, png, png_n);
        for (size_t i = 60; i < png_n; i++) bad[i] = (uint8_t)(i * 131u + 7u); /* data garbled */
        pl_join(c, &(join_opts){.img = bad, .img_len = png_n});
        expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "a PNG with garbled data");
        pl_join(c, &(join_opts){.img = png, .img_len = 100}); /* truncated */
        expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "a PNG truncated to 100 bytes");
        free(bad);
    }
    static const char text[] = "this is not an image, just some text that is long enough";
    pl_join(c, &(join_opts){.img = (const uint8_t *)text, .img_len = sizeof text});
    expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "text bytes as an image");
    if (big_px) {
        pl_join(c, &(join_opts){.img = big_px, .img_len = big_px_n});
        expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "a 1000x1001 PNG (1001000 px > max_px 1000000)");
    }
    {
        /* {t: join, scene: <first scene>, img: <PNG signature>}, hand-written: the encoder refuses
         * scene and img together. */
        uint8_t raw[128];
        size_t sl = strlen(c->welcome.scenes[0]), i = 0;
        const uint8_t head[] = {0x83, S1('t'), 0xa4, 'j', 'o', 'i', 'n', 0xa5, 's', 'c', 'e', 'n', 'e'};
        memcpy(raw, head, sizeof head);
        i = sizeof head;
        raw[i++] = (uint8_t)(0xa0 | sl);
        memcpy(raw + i, c->welcome.scenes[0], sl);
        i += sl;
        const uint8_t tail[] = {0xa3, 'i', 'm', 'g', 0xc4, 0x04, 0x89, 'P', 'N', 'G'};
        memcpy(raw + i, tail, sizeof tail);
        i += sizeof tail;
        wsc_send_raw(c->c, raw, i, 1);
        expect_nonfatal(c, PROTO_ERR_BAD_FIELD, "join.img", "a join with both scene and img");
    }
    /* Decompression bombs: a few hundred bytes declaring 1.6 G (PNG) and 3.6 G (JPEG) pixels. */
    long rss0 = h_server_mem_kb(g_srv, "VmRSS"), hwm0 = h_server_mem_kb(g_srv, "VmHWM");
    if (png) {
        uint8_t *bomb = malloc(png_n);
        memcpy(bomb, png, png_n);
        h_png_set_size(bomb, png_n, 40000, 40000);
        pl_join(c, &(join_opts){.img = bomb, .img_len = png_n});
        expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "a PNG header declaring 40000x40000");
        free(bomb);
    }
    if (jpg) {
        uint8_t *bomb = malloc(jpg_n);
        memcpy(bomb, jpg, jpg_n);
        h_jpeg_set_size(bomb, jpg_n, 60000, 60000);
        pl_join(c, &(join_opts){.img = bomb, .img_len = jpg_n});
        expect_nonfatal(c, PROTO_ERR_BAD_IMAGE, NULL, "a JPEG SOF declaring 60000x60000");
        free(bomb);
    }
    long rss1 = h_server_mem_kb(g_srv, "VmRSS"), hwm1 = h_server_mem_kb(g_srv, "VmHWM");
    /* Decoding either would need >= 4.8 GB; 16 MiB covers allocator noise. */
    tu_check(rss0 > 0 && rss1 - rss0 < 16384 + MEM_SLACK_KB && hwm1 - hwm0 < 16384 + MEM_SLACK_KB,
             "server memory across the bombs: VmRSS %ld -> %ld KiB, VmHWM %ld -> %ld KiB (growth "
             "under 16 MiB)",
             rss0, rss1, hwm0, hwm1);
    if (png) {
        pl_join(c, &(join_opts){.img = png, .img_len = png_n});
        WAIT_UNTIL(c->joined_count || c->closed, 10);
        WAIT_UNTIL(c->frames >= 3 || c->closed, 10);
        tu_check(c->joined_count == 1 && c->frames >= 3,
                 "C: after 7 refused joins, a good PNG on the same connection plays (%d frames)",
                 c->frames);
        send_simple(c, PROTO_LEAVE);
        WAIT_UNTIL(c->closed, 5);
    }
    /* Over max_upload (the message itself stays under max_msg): too_large, fatal. */
    player *d = pl_welcomed("D");
    uint8_t *over = calloc(1, 200001);
    if (png) memcpy(over, png, png_n < 200001 ? png_n : 200001);
    pl_join(d, &(join_opts){.img = over, .img_len = 200001});
    expect_fatal(d, PROTO_ERR_TOO_LARGE, 5, "an image of max_upload + 1 bytes");
    free(over);
    char body[1 << 16];
    tu_check(healthz_ok(body, sizeof body), "GET /healthz still ok");
    double active = wait_metric("wmserve_sessions_active", 0, 3);
    tu_check(active == 0, "no session left (wmserve_sessions_active %g)", active);
    free(png);
    free(jpg);
    free(fix);
    free(big_ok);
    free(big_px);
    server_down();
}

/* 4. admission: slots and queue -------------------------------------------------------------------- */

static void scenario_admission(void) {
    printf("\n-- admission (--max-sessions 1 --max-queue 1)\n");
    const char *args[] = {"--max-sessions", "1", "--max-queue", "1", NULL};
    if (!server_up(args)) return;
    player *a = pl_joined("A", &(join_opts){.has_seed = 1, .seed = 1});
    a->auto_hz = 10;
    WAIT_UNTIL(a->frames >= 12 || a->closed, 10);
    tu_check(a->frames >= 12, "A: plays (%d frames)", a->frames);

    player *b = pl_welcomed("B");
    pl_join(b, NULL);
    WAIT_UNTIL(b->queue_msgs || b->joined_count || b->closed, 5);
    tu_check(b->queue_msgs >= 1 && b->queue_pos == 1 && b->queue_len == 1 && !b->joined_count,
             "B: join with the slot taken -> queue {pos %u, len %u} (want 1, 1), not joined",
             b->queue_pos, b->queue_len);
    pl_join(b, NULL);
    expect_nonfatal(b, PROTO_ERR_ALREADY_JOINED, NULL, "join while queued");
    send_input(b, 1, 0);
    /* PROTOCOL.md "Session flow": input and reset before joined are not_joined. */
    expect_nonfatal(b, PROTO_ERR_NOT_JOINED, NULL, "input while queued (before joined)");

    player *c = pl_welcomed("C");
    pl_join(c, NULL);
    expect_fatal(c, PROTO_ERR_SERVER_FULL, 5, "join with the slot and the queue taken");
    double q = h_server_metric(g_srv, "wmserve_sessions_queued");
    double full = h_server_metric(g_srv, "wmserve_errors_total{code=\"server_full\"}");
    tu_check(q == 1 && full == 1, "metrics: sessions_queued %g (want 1), errors_total{server_full} %g "
                                  "(want 1)",
             q, full);

    /* A leaves: B is promoted and plays from frame 0. */
    a->auto_hz = 0;
    send_simple(a, PROTO_LEAVE);
    double t0 = h_now();
    WAIT_UNTIL(b->joined_count || b->closed, 5);
    tu_check(b->joined_count == 1, "B: promoted (joined) %.2f s after A's leave", h_now() - t0);
    b->auto_hz = 10;
    WAIT_UNTIL(b->frames >= 12 || b->closed, 10);
    tu_check(b->frames >= 12 && !b->closed, "B: plays after the promotion (%d frames)", b->frames);
    check_stream(b, "after promotion");
    tu_check(a->closed && a->close_code == 1000, "A: closed with %d after leave (want 1000)",
             a->close_code);

    /* The queue place is free again; a queued player may leave. */
    player *d = pl_welcomed("D");
    pl_join(d, NULL);
    WAIT_UNTIL(d->queue_msgs || d->closed, 5);
    tu_check(d->queue_pos == 1 && !d->closed, "D: queued at position %u (want 1)", d->queue_pos);
    send_simple(d, PROTO_LEAVE);
    WAIT_UNTIL(d->closed, 5);
    tu_check(d->closed && d->close_code == 1000, "D: leave while queued -> close %d (want 1000)",
             d->close_code);
    q = wait_metric("wmserve_sessions_queued", 0, 3);
    tu_check(q == 0, "metrics: sessions_queued %g after D left the queue (want 0)", q);
    wsc_close(b->c, 1001);
    WAIT_UNTIL(b->closed, 5);
    double active = wait_metric("wmserve_sessions_active", 0, 3);
    tu_check(active == 0, "B closed its websocket (1001): sessions_active %g (want 0)", active);
    server_down();
}

/* 5. idle timeout ------------------------------------------------------------------------------------ */

static void scenario_idle(void) {
    printf("\n-- idle timeout (--idle-timeout 2)\n");
    const char *args[] = {"--idle-timeout", "2", "--max-sessions", "3", "--fps", CFPS_S, NULL};
    if (!server_up(args)) return;
    /* The idle player joins first (alone, so at once) and then sends nothing. The players that
     * must stay keep up some activity while their join waits for the engine (the server may take
     * a while to start a session; nothing says waiting counts as activity), then: input only for
     * "active", pings only for "pinger". */
    player *idle = pl_joined("idle", &(join_opts){.has_seed = 1, .seed = 1});
    player *active = pl_welcomed("active");
    active->ping_every = 0.5;
    pl_join(active, &(join_opts){.has_seed = 1, .seed = 2});
    player *pinger = pl_welcomed("pinger");
    pinger->ping_every = 0.5; /* pings are not play: it times out like "idle" (PROTOCOL.md) */
    pl_join(pinger, &(join_opts){.has_seed = 1, .seed = 3});
    player *silent = pl_connect("no-hello");
    player *lurker = pl_welcomed("no-join");
    WAIT_UNTIL(active->joined_count || active->closed, 10);
    active->ping_every = 0;
    active->auto_hz = 5;
    WAIT_UNTIL(pinger->joined_count || pinger->closed, 10);
    tu_check(active->joined_count == 1 && pinger->joined_count == 1,
             "active and pinger joined (%d, %d); from now on active sends input at 5 Hz and no ping, "
             "pinger pings every 0.5 s and sends no input",
             active->joined_count, pinger->joined_count);
    run_for(6.5);
    expect_fatal(idle, PROTO_ERR_IDLE_TIMEOUT, 0.1, "no input after joined");
    double after = idle->t_closed - idle->t_last_sent;
    tu_check(idle->joined_count == 1 && idle->closed && after >= 1.9 && after <= 4.5,
             "idle: closed %.2f s after its last message, the join (want 2 s + the server's 1 s "
             "check period)",
             after);
    expect_fatal(silent, PROTO_ERR_IDLE_TIMEOUT, 0.1, "no hello");
    after = silent->t_closed - silent->t_open;
    tu_check(silent->closed && after >= 1.9 && after <= 4.5, "no-hello: closed %.2f s after opening",
             after);
    expect_fatal(lurker, PROTO_ERR_IDLE_TIMEOUT, 0.1, "welcomed, then nothing");
    after = lurker->t_closed - lurker->t_last_sent;
    tu_check(lurker->closed && after >= 1.9 && after <= 4.5, "no-join: closed %.2f s after its hello",
             after);
    /* PROTOCOL.md "ping/pong": pings do not count as activity; the idle clock restarts at joined. */
    expect_fatal(pinger, PROTO_ERR_IDLE_TIMEOUT, 0.1, "pings every 0.5 s, no input after joined");
    after = pinger->t_closed - pinger->t_joined;
    tu_check(pinger->closed && after >= 1.9 && after <= 4.5 && pinger->pongs >= 2,
             "pinger: closed %.2f s after joined although it kept pinging (%d pongs)", after,
             pinger->pongs);
    mark(active);
    run_for(2.0);
    double b = 0, fair = fair_rate(active, CFPS, 3, &b);
    tu_check(!active->closed && active->n_err == 0 && rate_since_mark(active) >= 0.85 * fair,
             "active (input at 5 Hz): still playing, %.1f fps in the last 2 s (want >= 85%% of "
             "%.1f, its fair rate: engine %.0f ms a block)",
             rate_since_mark(active), fair, b * 1e3);
    double n = h_server_metric(g_srv, "wmserve_errors_total{code=\"idle_timeout\"}");
    tu_check(n == 4, "metrics: errors_total{idle_timeout} %g (want 4: idle, no-hello, no-join, "
                     "pinger)", n);
    server_down();
}

/* 6. token ----------------------------------------------------------------------------------------- */

static void scenario_token(void) {
    printf("\n-- token (--token s3cret)\n");
    const char *args[] = {"--token", "s3cret", "--max-sessions", "1", NULL};
    if (!server_up(args)) return;
    static const struct {
        const char *name, *token;
    } bad[] = {{"none", NULL}, {"wrong", "nope"}, {"prefix", "s3cre"}, {"longer", "s3cretX"},
               {"case", "S3CRET"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        player *p = pl_welcomed(bad[i].name);
        if (i == 0)
            tu_check(p->welcome.token_required == 1, "welcome.auth is true (%d)",
                     p->welcome.token_required);
        pl_join(p, &(join_opts){.token = bad[i].token});
        char what[96];
        snprintf(what, sizeof what, "join with token '%s'", bad[i].token ? bad[i].token : "(none)");
        expect_fatal(p, PROTO_ERR_UNAUTHORIZED, 5, what);
        tu_check(!p->joined_count && !p->frames, "%s: never joined, no frames", p->name);
    }
    player *ok = pl_joined("right", &(join_opts){.token = "s3cret"});
    WAIT_UNTIL(ok->frames >= 12 || ok->closed, 10);
    tu_check(ok->frames >= 12, "right: token 's3cret' plays (%d frames)", ok->frames);
    double n = h_server_metric(g_srv, "wmserve_errors_total{code=\"unauthorized\"}");
    double active = h_server_metric(g_srv, "wmserve_sessions_active");
    tu_check(n == 5 && active == 1, "metrics: errors_total{unauthorized} %g (want 5), sessions_active "
                                    "%g (want 1)",
             n, active);
    server_down();
}

/* Raw-socket clients ----------------------------------------------------------------------------- */

/* A raw client that joins, reads up to `frames` frames, and then stops reading. */
static int raw_join(h_rawws *r, int rcvbuf, uint64_t seed, int frames, const char *name) {
    char err[256];
    if (h_rawws_connect(r, g_srv->port, rcvbuf, err, sizeof err)) {
        tu_check(0, "%s: raw websocket connect: %s", name, err);
        return -1;
    }
    proto_msg m = mk(PROTO_HELLO);
    m.u.hello.min_version = m.u.hello.max_version = 1;
    h_rawws_send_msg(r, &m);
    m = mk(PROTO_JOIN);
    m.u.join.seed = seed;
    m.u.join.has_seed = 1;
    h_rawws_send_msg(r, &m);
    int joined = 0, got = 0, op;
    const uint8_t *p;
    size_t n;
    double t0 = h_now();
    while (h_now() - t0 < 10 && got < frames && !r->eof) {
        service(1);
        if (h_rawws_recv(r, 10, &op, &p, &n) != 1 || op != 2) continue;
        proto_msg in;
        char e[128];
        if (proto_decode(p, n, 1u << 24, &in, e, sizeof e)) continue;
        if (in.type == PROTO_JOINED) joined = 1;
        if (in.type == PROTO_FRAME) got++;
    }
    return joined && got >= frames ? 0 : -1;
}

typedef struct raw_outcome {
    int errors, last_code, last_fatal; /* error messages seen */
    int close_code;                    /* 0: none, -1: the TCP connection ended without one */
    int frames;
} raw_outcome;

/* Reads (servicing the players too) until the server closes, or timeout_s. */
static raw_outcome raw_until_closed(h_rawws *r, double timeout_s) {
    raw_outcome o = {0, 0, -1, 0, 0};
    double t0 = h_now();
    while (h_now() - t0 < timeout_s && !r->eof && !r->close_code) {
        service(1);
        int op;
        const uint8_t *p;
        size_t n;
        if (h_rawws_recv(r, 10, &op, &p, &n) != 1 || op != 2) continue;
        proto_msg m;
        char e[128];
        if (proto_decode(p, n, 1u << 24, &m, e, sizeof e)) continue;
        if (m.type == PROTO_FRAME) o.frames++;
        if (m.type == PROTO_ERROR) {
            o.errors++;
            o.last_code = (int)m.u.error.code;
            o.last_fatal = m.u.error.fatal;
        }
    }
    o.close_code = r->close_code ? r->close_code : r->eof ? -1 : 0;
    return o;
}

static void raw_hello(h_rawws *r) {
    proto_msg m = mk(PROTO_HELLO);
    m.u.hello.min_version = m.u.hello.max_version = 1;
    h_rawws_send_msg(r, &m);
}

/* 7. malformed messages ---------------------------------------------------------------------------- */

/* msgpack written by hand: the codec refuses to produce these. */
static const uint8_t m_c1[] = {0xc1};
static const uint8_t m_not_map[] = {0x93, 0x01, 0x02, 0x03};
static const uint8_t m_truncated[] = {0x83, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd'};
static const uint8_t m_int_key[] = {0x82, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0x01, 0x02};
/* ping {id 1, ms 0} followed by a stray byte */
static const uint8_t m_trailing[] = {0x83, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01,
                                     0xa2, 'm', 's', 0x00, 0x00};
/* ping {id 1, ms 0, x: [[[[[[[[]]]]]]]]}: 8 arrays inside the map = 9 levels */
static const uint8_t m_deep[] = {0x84, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01, 0xa2,
                                 'm', 's', 0x00, S1('x'), 0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                                 0x90};
/* ping {id 1, ms 0, x: [[[[[[[]]]]]]]}: 8 levels, allowed; unknown keys are ignored */
static const uint8_t m_deep8[] = {0x84, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01,
                                  0xa2, 'm', 's', 0x00, S1('x'), 0x91, 0x91, 0x91, 0x91, 0x91, 0x91,
                                  0x90};
static const uint8_t m_bogus_type[] = {0x81, S1('t'), 0xa5, 'b', 'o', 'g', 'u', 's'};
static const uint8_t m_no_t[] = {0x81, S1('x'), 0x01};
static const uint8_t m_t_int[] = {0x81, S1('t'), 0x05};
static const uint8_t m_ping_no_ms[] = {0x82, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0x01};
static const uint8_t m_ping_id_str[] = {0x83, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd',
                                        0xa1, 'x', 0xa2, 'm', 's', 0x00};
static const uint8_t m_ping_id_neg[] = {0x83, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd',
                                        0xff, 0xa2, 'm', 's', 0x00};
static const uint8_t m_ping_id_float[] = {0x83, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd',
                                          0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xa2, 'm', 's', 0x00};
/* hello {min 1, max 1} as the server must take it, then sent a second time */
static const uint8_t m_hello[] = {0x83, S1('t'), 0xa5, 'h', 'e', 'l', 'l', 'o', 0xa3, 'm', 'i', 'n',
                                  0x01, 0xa3, 'm', 'a', 'x', 0x01};
/* hello {min 3, max 2} */
static const uint8_t m_hello_inverted[] = {0x83, S1('t'), 0xa5, 'h', 'e', 'l', 'l', 'o', 0xa3, 'm',
                                           'i', 'n', 0x03, 0xa3, 'm', 'a', 'x', 0x02};

static player *fatal_case(const char *name, int hello_first, const uint8_t *raw, size_t n, int text,
                          int code, const char *what) {
    player *p = hello_first ? pl_welcomed(name) : pl_connect(name);
    if (p->c) wsc_send_raw(p->c, raw, n, !text);
    expect_fatal(p, code, 5, what);
    return p;
}

static void nonfatal_raw(player *p, const uint8_t *raw, size_t n, int code, const char *path,
                         const char *what) {
    if (p->c) wsc_send_raw(p->c, raw, n, 1);
    expect_nonfatal(p, code, path, what);
}

static void scenario_malformed(void) {
    printf("\n-- malformed messages, with a concurrent player\n");
    const char *args[] = {"--max-sessions", "2", "--fps", CFPS_S, NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 9});
    pl->auto_hz = 20;
    WAIT_UNTIL(pl->frames >= 10 || pl->closed, 10);
    mark(pl);
    int p_frames0 = pl->frames;

    /* Fatal, each on its own connection. */
    fatal_case("F1", 0, m_c1, sizeof m_c1, 0, PROTO_ERR_BAD_MESSAGE, "0xc1 as the first message");
    fatal_case("F2", 1, m_c1, sizeof m_c1, 0, PROTO_ERR_BAD_MESSAGE, "0xc1 after welcome");
    fatal_case("F3", 1, (const uint8_t *)"{\"t\":\"ping\"}", 12, 1, PROTO_ERR_BAD_MESSAGE,
               "a text websocket message");
    fatal_case("F4", 1, m_not_map, sizeof m_not_map, 0, PROTO_ERR_BAD_MESSAGE, "an array, not a map");
    fatal_case("F5", 1, m_truncated, sizeof m_truncated, 0, PROTO_ERR_BAD_MESSAGE, "a truncated map");
    fatal_case("F6", 1, m_int_key, sizeof m_int_key, 0, PROTO_ERR_BAD_MESSAGE, "an integer map key");
    fatal_case("F7", 1, m_trailing, sizeof m_trailing, 0, PROTO_ERR_BAD_MESSAGE,
               "a byte after the map");
    fatal_case("F8", 1, m_deep, sizeof m_deep, 0, PROTO_ERR_BAD_MESSAGE, "nesting 9 levels deep");
    fatal_case("F9", 0, m_hello_inverted, sizeof m_hello_inverted, 0, PROTO_ERR_BAD_FIELD,
               "hello {min 3, max 2} (errors answering hello are fatal)");
    {
        player *p = pl_connect("F10");
        pl_hello(p, 2, 9);
        expect_fatal(p, PROTO_ERR_VERSION, 5, "hello {min 2, max 9} (the server speaks 1)");
        tu_check(!p->welcomed, "F10: no welcome");
    }
    {
        player *p = pl_connect("F11");
        pl_join(p, NULL);
        int before = p->n_err;
        WAIT_UNTIL(p->closed || p->joined_count || p->n_err > before, 5);
        WAIT_UNTIL(p->closed, 2);
        tu_check(p->closed && p->n_err > before && last_err_fatal(p) == 1 &&
                     p->close_code == 4000 + last_err_code(p) && !p->joined_count,
                 "F11: join before hello -> a fatal error and close 4000 + code (PROTOCOL.md: "
                 "'hello must be the first message. Anything else first ... fatal'); saw %d "
                 "error(s), last %s fatal %d, %s %d, joined %d",
                 p->n_err, proto_error_name(last_err_code(p)), last_err_fatal(p),
                 p->closed ? "close" : "open", p->close_code, p->joined_count);
    }
    {
        player *p = pl_connect("F12");
        send_input_seq(p, 1, 0, 0, 0);
        WAIT_UNTIL(p->closed, 5);
        tu_check(p->closed && p->n_err >= 1 && last_err_fatal(p) == 1 &&
                     p->close_code == 4000 + last_err_code(p),
                 "F12: input before hello -> a fatal error and close 4000 + code; saw %d error(s), "
                 "last %s fatal %d, %s %d",
                 p->n_err, proto_error_name(last_err_code(p)), last_err_fatal(p),
                 p->closed ? "close" : "open", p->close_code);
    }
    {
        /* PROTOCOL.md leaves a second hello open; `fatal` is authoritative: an error, and the
         * connection closes (4000 + code) exactly when it says fatal. */
        player *p = pl_welcomed("F13");
        wsc_send_raw(p->c, m_hello, sizeof m_hello, 1);
        WAIT_UNTIL(p->n_err || p->closed, 5);
        int fatal = last_err_fatal(p), pongs = p->pongs;
        if (fatal == 1) {
            WAIT_UNTIL(p->closed, 5);
        } else {
            send_ping(p, 5, 5.0);
            WAIT_UNTIL(p->pongs > pongs || p->closed, 5);
        }
        tu_check(p->n_err == 1 && (fatal == 1 ? p->closed && p->close_code == 4000 + last_err_code(p)
                                              : !p->closed && p->pongs > pongs),
                 "F13: a second hello -> error %s (fatal %d) and the connection %s accordingly",
                 proto_error_name(last_err_code(p)), fatal,
                 fatal == 1 ? (p->closed ? "closed" : "NOT closed") : (p->closed ? "CLOSED" : "usable"));
    }

    /* Non-fatal, all on one connection, which then plays. */
    player *n = pl_welcomed("N");
    nonfatal_raw(n, m_bogus_type, sizeof m_bogus_type, PROTO_ERR_UNKNOWN_TYPE, NULL,
                 "{t: 'bogus'}");
    {
        proto_buf b = {0};
        proto_msg m = mk(PROTO_STATS); /* a server-to-client type, encoded by the codec */
        m.u.stats.fps = 25;
        proto_encode(&m, &b);
        nonfatal_raw(n, b.data, b.len, PROTO_ERR_UNKNOWN_TYPE, NULL, "a stats message (s->c type)");
        proto_buf_free(&b);
    }
    nonfatal_raw(n, m_no_t, sizeof m_no_t, PROTO_ERR_BAD_FIELD, "t", "a map without t");
    nonfatal_raw(n, m_t_int, sizeof m_t_int, PROTO_ERR_BAD_FIELD, "t", "t as an integer");
    nonfatal_raw(n, m_ping_no_ms, sizeof m_ping_no_ms, PROTO_ERR_BAD_FIELD, "ping.ms",
                 "ping without ms");
    nonfatal_raw(n, m_ping_id_str, sizeof m_ping_id_str, PROTO_ERR_BAD_FIELD, "ping.id",
                 "ping with id a string");
    nonfatal_raw(n, m_ping_id_neg, sizeof m_ping_id_neg, PROTO_ERR_BAD_FIELD, "ping.id",
                 "ping with id -1");
    nonfatal_raw(n, m_ping_id_float, sizeof m_ping_id_float, PROTO_ERR_BAD_FIELD, "ping.id",
                 "ping with id 1.0 (a float for a u32)");
    {
        int pongs = n->pongs, errs = n->n_err;
        wsc_send_raw(n->c, m_deep8, sizeof m_deep8, 1);
        WAIT_UNTIL(n->pongs > pongs || n->n_err > errs || n->closed, 5);
        tu_check(n->pongs == pongs + 1 && n->n_err == errs,
                 "N: ping with an unknown key nesting 8 levels -> pong (unknown keys ignored, 8 "
                 "levels allowed)");
    }
    send_input_seq(n, 1, 1, 0, 0);
    expect_nonfatal(n, PROTO_ERR_NOT_JOINED, NULL, "input before join");
    send_simple(n, PROTO_RESET);
    expect_nonfatal(n, PROTO_ERR_NOT_JOINED, NULL, "reset before join");
    pl_join(n, &(join_opts){.variant = "no_such_variant"});
    expect_nonfatal(n, PROTO_ERR_UNKNOWN_VARIANT, NULL, "join with variant 'no_such_variant'");
    pl_join(n, &(join_opts){.scene = "no_such_scene"});
    expect_nonfatal(n, PROTO_ERR_UNKNOWN_SCENE, NULL, "join with scene 'no_such_scene'");
    pl_join(n, &(join_opts){.has_seed = 1, .seed = 4});
    WAIT_UNTIL(n->joined_count || n->closed, 10);
    tu_check(n->joined_count == 1, "N: after the refused messages, join -> joined");
    pl_join(n, NULL);
    expect_nonfatal(n, PROTO_ERR_ALREADY_JOINED, NULL, "join while joined");
    send_input(n, 1, 0);
    send_input_seq(n, n->sent_seq, 1, 0, 0); /* the same seq again */
    expect_nonfatal(n, PROTO_ERR_BAD_FIELD, "input.seq", "an input repeating the previous seq");
    {
        /* input {seq, ms 0, keys 1, dx 1200.0}, hand-written */
        uint32_t s = n->sent_seq + 1;
        uint8_t raw[] = {0x85, S1('t'), 0xa5, 'i', 'n', 'p', 'u', 't', 0xa3, 's', 'e', 'q', 0xce,
                         (uint8_t)(s >> 24), (uint8_t)(s >> 16), (uint8_t)(s >> 8), (uint8_t)s,
                         0xa2, 'm', 's', 0x00, 0xa4, 'k', 'e', 'y', 's', 0x01, 0xa2, 'd', 'x',
                         0xcd, 0x04, 0xb0};
        nonfatal_raw(n, raw, sizeof raw, PROTO_ERR_BAD_FIELD, "input.dx", "input with dx 1200");
    }
    {
        /* Bits at or above the number of keys are ignored (PROTOCOL.md "Keys"). */
        int errs = n->n_err;
        send_input(n, 0xFFFF0001u, 0);
        uint32_t s = n->sent_seq;
        WAIT_UNTIL(n->max_seq_echo >= s || n->n_err > errs || n->closed, 10);
        tu_check(n->n_err == errs && n->max_seq_echo >= s,
                 "N: input with keys 0xFFFF0001 (bits beyond the variant's keys) is applied without "
                 "an error (frames echo seq %u, want %u; %d new error(s))",
                 n->max_seq_echo, s, n->n_err - errs);
    }
    WAIT_UNTIL(n->frames >= 12 || n->closed, 10);
    tu_check(!n->closed && n->frames >= 12, "N: plays after all that (%d frames)", n->frames);
    check_stream(n, "after the refused messages");

    check_unaffected(pl, p_frames0, CFPS, "by the malformed messages");
    char body[1 << 16];
    tu_check(healthz_ok(body, sizeof body), "GET /healthz ok");
    server_down();
}

/* 8. oversized messages and input floods ------------------------------------------------------------ */

/* A ping {id, ms 0, pad: bin32} of exactly `total` bytes (>= 29): the key "pad" is unknown, so
 * the message is valid whatever its size. */
static uint8_t *padded_ping(size_t total, uint32_t id) {
    static const uint8_t head[] = {0x84, S1('t'), 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'i', 'd', 0xce};
    static const uint8_t mid[] = {0xa2, 'm', 's', 0x00, 0xa3, 'p', 'a', 'd', 0xc6};
    size_t hdr = sizeof head + 4 + sizeof mid + 4;
    if (total < hdr) return NULL;
    uint8_t *p = calloc(1, total);
    if (!p) return NULL;
    size_t i = 0, pad = total - hdr;
    memcpy(p, head, sizeof head);
    i = sizeof head;
    for (int k = 3; k >= 0; k--) p[i++] = (uint8_t)(id >> (8 * k));
    memcpy(p + i, mid, sizeof mid);
    i += sizeof mid;
    for (int k = 3; k >= 0; k--) p[i++] = (uint8_t)(pad >> (8 * k));
    return p;
}

static void scenario_limits(void) {
    printf("\n-- limits: message size and input rate, with a concurrent player\n");
    const char *args[] = {"--max-sessions", "2", "--max-input-hz", "30", "--max-upload-bytes", "16384",
                          "--fps", CFPS_S, NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 9});
    pl->auto_hz = 20;
    WAIT_UNTIL(pl->frames >= 10 || pl->closed, 10);
    mark(pl);
    int p_frames0 = pl->frames;
    uint32_t max_msg = pl->welcome.limits.max_message_bytes;
    tu_check(pl->welcome.limits.max_input_hz == 30 && max_msg >= 16384 + 1024,
             "P: welcome max_hz %u (want 30), max_msg %u (want >= 17408)",
             pl->welcome.limits.max_input_hz, max_msg);

    /* Exactly max_msg: fine. One byte more: too_large, fatal. */
    {
        player *o = pl_welcomed("O1");
        uint8_t *m = padded_ping(max_msg, 77);
        int pongs = o->pongs;
        wsc_send_raw(o->c, m, max_msg, 1);
        WAIT_UNTIL(o->pongs > pongs || o->closed || o->n_err, 5);
        tu_check(o->pongs == pongs + 1 && o->last_pong.id == 77 && !o->closed,
                 "O1: a ping of exactly max_msg (%u) bytes -> pong id %u", max_msg, o->last_pong.id);
        free(m);
        m = padded_ping(max_msg + 1, 78);
        wsc_send_raw(o->c, m, max_msg + 1, 1);
        expect_fatal(o, PROTO_ERR_TOO_LARGE, 5, "a message of max_msg + 1 bytes");
        free(m);
    }
    long rss0 = h_server_mem_kb(g_srv, "VmRSS"), hwm0 = h_server_mem_kb(g_srv, "VmHWM");
    {
        /* 4 x max_msg in 1 KiB fragments: the limit is on the reassembled message. */
        h_rawws r;
        char err[256];
        int ok = h_rawws_connect(&r, g_srv->port, 0, err, sizeof err) == 0;
        tu_check(ok, "O2: raw websocket connected (%s)", ok ? "ok" : err);
        raw_hello(&r);
        size_t total = 4 * (size_t)max_msg;
        uint8_t *m = padded_ping(total, 79);
        int sent_all = 1;
        for (size_t off = 0; off < total && sent_all; off += 1024) {
            size_t len = total - off < 1024 ? total - off : 1024;
            sent_all = !h_rawws_send_frame(&r, off ? 0 : 2, off + len == total, m + off, len, 0);
        }
        free(m);
        raw_outcome o = raw_until_closed(&r, 5);
        tu_check(o.last_code == PROTO_ERR_TOO_LARGE && o.last_fatal == 1 &&
                     o.close_code == 4000 + PROTO_ERR_TOO_LARGE,
                 "O2: %zu bytes in 1 KiB fragments (max_msg %u) -> error %s (fatal %d), close %d (want "
                 "too_large, 4009)%s",
                 total, max_msg, proto_error_name(o.last_code), o.last_fatal, o.close_code,
                 sent_all ? "" : " [the server stopped reading: not every fragment was sent]");
        h_rawws_abort(&r, 0);
    }
    {
        /* A frame header claiming 1 TiB, then 64 KiB of it: refused without buffering it. */
        h_rawws r;
        char err[256];
        h_rawws_connect(&r, g_srv->port, 0, err, sizeof err);
        raw_hello(&r);
        uint8_t *junk = calloc(1, 65536);
        h_rawws_send_frame(&r, 2, 1, junk, 65536, 1ull << 40);
        free(junk);
        raw_outcome o = raw_until_closed(&r, 5);
        tu_check(o.last_code == PROTO_ERR_TOO_LARGE && o.last_fatal == 1 &&
                     o.close_code == 4000 + PROTO_ERR_TOO_LARGE,
                 "O3: a frame header declaring 1 TiB, 64 KiB of it sent -> error %s (fatal %d), close "
                 "%d (want too_large, 4009)",
                 proto_error_name(o.last_code), o.last_fatal, o.close_code);
        h_rawws_abort(&r, 0);
    }
    long rss1 = h_server_mem_kb(g_srv, "VmRSS"), hwm1 = h_server_mem_kb(g_srv, "VmHWM");
    tu_check(rss1 - rss0 < 8192 + MEM_SLACK_KB && hwm1 - hwm0 < 8192 + MEM_SLACK_KB,
             "server memory across the oversized messages: VmRSS %ld -> %ld KiB, VmHWM %ld -> %ld KiB "
             "(growth under 8 MiB)",
             rss0, rss1, hwm0, hwm1);

    /* Input at 2 x max_hz for 3 s: extra inputs dropped, one non-fatal rate_limited a second. */
    {
        player *f = pl_joined("F1", &(join_opts){.has_seed = 1, .seed = 2});
        f->auto_hz = 60;
        double t0 = h_now();
        run_for(3.0);
        f->auto_hz = 0;
        double dt = h_now() - t0;
        run_for(1.2); /* past the rate limiter's one-second window */
        int rl = f->errors[PROTO_ERR_RATE_LIMITED], fatal = 0;
        for (int i = 0; i < f->n_err && i < MAX_ERRS; i++) fatal |= f->err[i].fatal;
        tu_check(rl >= 2 && rl <= 4 && !fatal && !f->closed,
                 "F1: %u inputs in %.1f s (2 x max_hz 30) -> %d non-fatal rate_limited (want one a "
                 "second: 2..4), still open",
                 f->sent_seq, dt, rl);
        uint32_t s = f->sent_seq;
        send_input(f, 2, 0);
        WAIT_UNTIL(f->max_seq_echo > s || f->closed, 10);
        tu_check(f->max_seq_echo == s + 1, "F1: the next input after the flood is applied (frames echo "
                                           "seq %u, want %u)",
                 f->max_seq_echo, s + 1);
        send_simple(f, PROTO_LEAVE);
        WAIT_UNTIL(f->closed, 5);
        wait_metric("wmserve_sessions_active", 1, 3);
    }
    /* Far above: more than 4 x max_hz in one second is fatal. A raw client sends 300 inputs
     * back to back (the libwebsockets client queues at most 64). */
    {
        h_rawws r;
        int ok = raw_join(&r, 0, 3, 2, "F2") == 0;
        proto_buf b = {0};
        int sent = 0;
        double t0 = h_now();
        for (uint32_t seq = 1; ok && seq <= 300; seq++) {
            proto_msg m = mk(PROTO_INPUT);
            m.u.input.seq = seq;
            m.u.input.client_ms = client_ms_of(seq);
            m.u.input.keys = 1;
            if (proto_encode(&m, &b) || h_rawws_send_frame(&r, 2, 1, b.data, b.len, 0)) break;
            sent++;
        }
        double dt = h_now() - t0;
        proto_buf_free(&b);
        raw_outcome o = raw_until_closed(&r, 5);
        tu_check(ok && sent == 300 && o.last_code == PROTO_ERR_RATE_LIMITED && o.last_fatal == 1 &&
                     o.close_code == 4000 + PROTO_ERR_RATE_LIMITED,
                 "F2: %d inputs in %.3f s (> 4 x max_hz 30 within a second) -> %d error(s), last %s "
                 "(fatal %d), close %d (want rate_limited, fatal, 4010)",
                 sent, dt, o.errors, proto_error_name(o.last_code), o.last_fatal, o.close_code);
        h_rawws_abort(&r, 0);
    }
    check_unaffected(pl, p_frames0, CFPS, "by oversized messages and floods");
    server_down();
}

/* 9. slow reader ------------------------------------------------------------------------------------- */

/* Samples the server's VmRSS and the client-buffer gauge every 0.5 s for `seconds`, servicing the
 * players. */
typedef struct mem_watch {
    long rss0, rss_max;
    double buffered_max;
} mem_watch;

static mem_watch watch_memory(double seconds) {
    mem_watch w;
    w.rss0 = w.rss_max = h_server_mem_kb(g_srv, "VmRSS");
    w.buffered_max = 0;
    double t0 = h_now(), next = t0;
    while (h_now() - t0 < seconds) {
        service(5);
        if (h_now() < next) continue;
        long r = h_server_mem_kb(g_srv, "VmRSS");
        if (r > w.rss_max) w.rss_max = r;
        double b = h_server_metric(g_srv, "wmserve_client_buffer_frames");
        if (b > w.buffered_max) w.buffered_max = b;
        next += 0.5;
    }
    return w;
}

static void slow_frames_phase(void) {
    printf("\n-- slow reader (1/3): a client that stops reading frames for 15 s\n");
    const char *args[] = {"--max-sessions", "2", "--fps", CFPS_S, "--jpeg-quality", "100",
                          "--slow-client-timeout", "60", NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 1});
    pl->auto_hz = 10;
    h_rawws s;
    int ok = raw_join(&s, 4096, 2, 5, "S") == 0;
    tu_check(ok, "S: raw client (SO_RCVBUF 4096) joined and read 5 frames; now it stops reading");
    run_for(2.0); /* both sessions warm: the engine's lazy allocations are done */
    mark(pl);
    int f0 = pl->frames;
    uint64_t b0 = pl->bytes_frames;
    double dropped0 = h_server_metric(g_srv, "wmserve_frames_dropped_total");
    const double window = 15;
    mem_watch w = watch_memory(window);
    double dropped = h_server_metric(g_srv, "wmserve_frames_dropped_total") - dropped0;
    uint64_t s_would = (pl->bytes_frames - b0) / 1024; /* what S was due meanwhile, like P */
    check_unaffected(pl, f0, CFPS, "beside a client that does not read");
    /* 8 MiB: several times what S was due in the window, so keeping its frames would not cross it
     * by itself; the precise evidence is the drop count and the buffer gauge below. This bound
     * catches growth per frame produced or per byte not sent beyond the frames themselves. */
    tu_check(w.rss_max - w.rss0 < 8192 + MEM_SLACK_KB,
             "server VmRSS over %.0f s: %ld -> max %ld KiB (+%ld KiB, want < 8 MiB; S was due %llu "
             "KiB meanwhile)",
             window, w.rss0, w.rss_max, w.rss_max - w.rss0, (unsigned long long)s_would);
    tu_check(w.buffered_max <= 2 * 24,
             "/metrics wmserve_client_buffer_frames peaked at %g (want <= 2 players x 24, the "
             "default --buffer-frames)",
             w.buffered_max);
    /* S was due as many frames as P received meanwhile (same engine, same fps); at most the ring
     * (24), the outbox and what the sockets hold (a few 12 KiB frames) can be kept, the rest must
     * be dropped. */
    double due = pl->frames - f0;
    tu_check(dropped >= due - 24 - 1 - 20,
             "/metrics wmserve_frames_dropped_total rose by %g in %.0f s (want >= %.0f: the %.0f "
             "frames S was due, as P got, less the ring, the outbox and 20 in socket buffers)",
             dropped, window, due - 45, due);
    /* S reads again: fresh frames (numbers jumped), and its stats count the drops. */
    uint64_t last_n = 0;
    int frames_after = 0, jumped = 0, stats_seen = 0, op;
    uint64_t stats_dropped = 0;
    const uint8_t *p;
    size_t n;
    double t0 = h_now();
    while (h_now() - t0 < 3 && !s.eof) {
        service(1);
        if (h_rawws_recv(&s, 5, &op, &p, &n) != 1 || op != 2) continue;
        proto_msg in;
        char e[128];
        if (proto_decode(p, n, 1u << 24, &in, e, sizeof e)) continue;
        if (in.type == PROTO_FRAME) {
            if (frames_after && in.u.frame.frame > last_n + 1) jumped = 1;
            last_n = in.u.frame.frame;
            frames_after++;
        }
        if (in.type == PROTO_STATS) {
            stats_seen++;
            stats_dropped = in.u.stats.frames_dropped;
        }
    }
    tu_check(!s.eof && frames_after > 0 && jumped && stats_seen && stats_dropped >= dropped * 0.9,
             "S: reading again: %d frames, numbers jump over the dropped ones (%d), stats.dropped "
             "%llu (want about the %g dropped), connection %s",
             frames_after, jumped, (unsigned long long)stats_dropped, dropped, s.eof ? "LOST" : "open");
    h_rawws_abort(&s, 0);
    server_down();
}

static void slow_close_phase(void) {
    printf("\n-- slow reader (2/3): --slow-client-timeout 2 disconnects it\n");
    const char *args[] = {"--max-sessions", "2", "--fps", CFPS_S, "--jpeg-quality", "100",
                          "--slow-client-timeout", "2", NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 1});
    pl->auto_hz = 10;
    h_rawws s;
    int ok = raw_join(&s, 4096, 2, 5, "S") == 0;
    tu_check(ok, "S: raw client (SO_RCVBUF 4096) joined and read 5 frames; now it stops reading");
    mark(pl);
    int f0 = pl->frames;
    double t0 = h_now(), slow = 0, conns = 0;
    while (h_now() - t0 < 15) {
        run_for(0.25);
        slow = h_server_metric(g_srv, "wmserve_errors_total{code=\"slow_consumer\"}");
        conns = h_server_metric(g_srv, "wmserve_connections_active");
        if (slow >= 1 && conns == 1) break;
    }
    double after = h_now() - t0;
    /* 2 s of stall after the socket buffers fill (about a second at 120 KiB/s), checked every
     * second: 10 s is generous. */
    tu_check(slow == 1 && conns == 1 && after < 10,
             "S: disconnected as slow_consumer %.1f s after it stopped reading (errors_total "
             "{slow_consumer} %g, connections_active %g: P only)",
             after, slow, conns);
    int gone = 0;
    t0 = h_now();
    while (h_now() - t0 < 5 && !gone) {
        service(1);
        gone = h_rawws_drain(&s) < 0;
    }
    tu_check(gone, "S: reading again finds the connection closed by the server");
    double active = wait_metric("wmserve_sessions_active", 1, 3);
    tu_check(active == 1, "S's slot freed: sessions_active %g (want 1: P)", active);
    check_unaffected(pl, f0, CFPS, "beside a client disconnected for not reading");
    h_rawws_abort(&s, 0);
    server_down();
}

static void slow_replies_phase(void) {
    printf("\n-- slow reader (3/3): a client that sends 200000 pings and reads no answer\n");
    const char *args[] = {"--max-sessions", "2", "--fps", CFPS_S, NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 1});
    pl->auto_hz = 10;
    WAIT_UNTIL(pl->frames >= 10 || pl->closed, 10);
    h_rawws r;
    char err[128];
    int ok = h_rawws_connect(&r, g_srv->port, 4096, err, sizeof err) == 0;
    raw_hello(&r);
    run_for(0.5);
    mark(pl);
    int f0 = pl->frames;
    long rss0 = h_server_mem_kb(g_srv, "VmRSS");
    double msgs0 = h_server_metric(g_srv, "wmserve_messages_received_total");
    /* 200000 pings of 18 bytes, one websocket frame each, written as fast as the server reads
     * them (up to 10 s); answered in full they would be 200000 pongs of 31 bytes (6 MB). */
    proto_buf b = {0};
    proto_msg m = mk(PROTO_PING);
    m.u.ping.id = 1;
    m.u.ping.client_ms = 6000;
    proto_encode(&m, &b);
    size_t one = b.len + 6, batch = 1000;
    uint8_t *buf = malloc(one * batch);
    static const uint8_t mask[4] = {0, 0, 0, 0}; /* a zero mask: payload bytes as they are */
    for (size_t i = 0; i < batch; i++) {
        uint8_t *f = buf + i * one;
        f[0] = 0x82;
        f[1] = (uint8_t)(0x80 | b.len);
        memcpy(f + 2, mask, 4);
        memcpy(f + 6, b.data, b.len);
    }
    proto_buf_free(&b);
    int sent = 0;
    double t0 = h_now();
    long rss_max = rss0;
    while (ok && sent < 200000 && h_now() - t0 < 10) {
        /* write_all-like with a short budget, so the players keep being serviced */
        ssize_t w = send(r.fd, buf, one * batch, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        if (w > 0 && (size_t)w < one * batch) { /* finish this batch before the next */
            size_t done = (size_t)w;
            double tb = h_now();
            while (done < one * batch && h_now() - tb < 5) {
                service(1);
                ssize_t w2 = send(r.fd, buf + done, one * batch - done, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w2 > 0) done += (size_t)w2;
                else if (w2 < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
            }
            if (done < one * batch) break;
        }
        if (w > 0) sent += (int)batch;
        service(1);
        long rs = h_server_mem_kb(g_srv, "VmRSS");
        if (rs > rss_max) rss_max = rs;
    }
    double dt = h_now() - t0;
    free(buf);
    mem_watch after = watch_memory(2);
    if (after.rss_max > rss_max) rss_max = after.rss_max;
    /* The pings may still sit in socket buffers: wait until the server has read them all. */
    double got = 0;
    double t1 = h_now();
    while (h_now() - t1 < 15) {
        got = h_server_metric(g_srv, "wmserve_messages_received_total") - msgs0;
        if (got >= sent) break;
        mem_watch mw = watch_memory(0.25);
        if (mw.rss_max > rss_max) rss_max = mw.rss_max;
    }
    double conns = h_server_metric(g_srv, "wmserve_connections_active");
    /* Either the server read every ping (answering only while its control queue has room), or,
     * once R's unread pongs fill the socket, libwebsockets stops reading R until it can write
     * again: backpressure, R's own sends then block. Both keep the memory bounded; which one
     * happens depends on how the reads and writes interleave on the machine. */
    int backpressure = got < sent && dt > 1.0;
    tu_check(ok && sent >= 20000 && (got >= sent || backpressure) &&
                 rss_max - rss0 < 4096 + MEM_SLACK_KB,
             "R: %d pings sent in %.1f s without reading a byte, %g read by the server (%s); server "
             "VmRSS %ld -> max %ld KiB (+%ld KiB, want < 4 MiB; the unanswered pongs alone would be "
             "%d KiB)",
             sent, dt, got,
             got >= sent ? "all" : backpressure ? "then it stopped reading R: backpressure" : "lost?",
             rss0, rss_max, rss_max - rss0, sent * 31 / 1024);
    printf("  (R afterwards: connections_active %g, %s)\n", conns,
           conns == 1 ? "the server closed R" : "R still connected");
    check_unaffected(pl, f0, CFPS, "beside a client flooding pings without reading");
    char body[1 << 16];
    tu_check(healthz_ok(body, sizeof body), "GET /healthz ok");
    h_rawws_abort(&r, 1);
    server_down();
}

static void scenario_slow(void) {
    slow_frames_phase();
    slow_close_phase();
    slow_replies_phase();
}

/* 10. abrupt disconnects ------------------------------------------------------------------------------ */

static void wait_only_p(const char *what) {
    double t0 = h_now();
    double act = wait_metric("wmserve_sessions_active", 1, 3);
    double conns = wait_metric("wmserve_connections_active", 1, 3);
    double q = h_server_metric(g_srv, "wmserve_sessions_queued");
    tu_check(act == 1 && conns == 1 && q == 0,
             "%s: slot freed within %.2f s (sessions_active %g, connections_active %g, queued %g; "
             "want 1, 1, 0)",
             what, h_now() - t0, act, conns, q);
}

static void scenario_abrupt(void) {
    printf("\n-- abrupt disconnects, with a concurrent player\n");
    const char *args[] = {"--max-sessions", "2", "--max-queue", "2", "--fps", CFPS_S, NULL};
    if (!server_up(args)) return;
    player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 1});
    pl->auto_hz = 20;
    WAIT_UNTIL(pl->frames >= 10 || pl->closed, 10);
    uint64_t sid = pl->joined.session;
    mark(pl);
    int f0 = pl->frames;
    uint8_t *png = NULL;
    size_t png_n = 0;
    h_make_png(640, 360, &png, &png_n);
    for (int it = 0; it < 4; it++) {
        h_rawws r;
        int ok = raw_join(&r, 0, 100 + (uint64_t)it, 3, "X") == 0;
        h_rawws_abort(&r, it % 2 == 0);
        char what[96];
        snprintf(what, sizeof what, "X%d: %s after 3 frames of the first block (joined: %d)", it,
                 it % 2 == 0 ? "TCP reset" : "TCP close without a close frame", ok);
        wait_only_p(what);
    }
    {
        /* During the session start: join sent, reset at once. */
        h_rawws r;
        char err[128];
        h_rawws_connect(&r, g_srv->port, 0, err, sizeof err);
        proto_msg m = mk(PROTO_HELLO);
        m.u.hello.min_version = m.u.hello.max_version = 1;
        h_rawws_send_msg(&r, &m);
        m = mk(PROTO_JOIN);
        h_rawws_send_msg(&r, &m);
        h_rawws_abort(&r, 1);
        wait_only_p("Y1: TCP reset right after join");
    }
    if (png) {
        /* During the upload's decode. */
        h_rawws r;
        char err[128];
        h_rawws_connect(&r, g_srv->port, 0, err, sizeof err);
        proto_msg m = mk(PROTO_HELLO);
        m.u.hello.min_version = m.u.hello.max_version = 1;
        h_rawws_send_msg(&r, &m);
        m = mk(PROTO_JOIN);
        m.u.join.image.data = png;
        m.u.join.image.len = png_n;
        h_rawws_send_msg(&r, &m);
        h_rawws_abort(&r, 1);
        wait_only_p("Y2: TCP reset right after a join with a 640x360 PNG");
    }
    {
        /* While queued: X plays in the second slot, Q waits, Q vanishes, then X. */
        h_rawws x, q;
        raw_join(&x, 0, 7, 3, "X");
        char err[128];
        h_rawws_connect(&q, g_srv->port, 0, err, sizeof err);
        proto_msg m = mk(PROTO_HELLO);
        m.u.hello.min_version = m.u.hello.max_version = 1;
        h_rawws_send_msg(&q, &m);
        m = mk(PROTO_JOIN);
        h_rawws_send_msg(&q, &m);
        double queued = wait_metric("wmserve_sessions_queued", 1, 3);
        tu_check(queued == 1, "Q: queued behind P and X (sessions_queued %g)", queued);
        h_rawws_abort(&q, 1);
        double q0 = wait_metric("wmserve_sessions_queued", 0, 3);
        tu_check(q0 == 0, "Q: TCP reset while queued leaves the queue (sessions_queued %g)", q0);
        h_rawws_abort(&x, 1);
        wait_only_p("X: TCP reset after Q left");
    }
    {
        /* Mid-frame: half a websocket frame header and payload, then a reset. */
        h_rawws r;
        char err[128];
        raw_join(&r, 0, 8, 2, "Z");
        proto_msg m = mk(PROTO_PING);
        m.u.ping.id = 1;
        proto_buf b = {0};
        proto_encode(&m, &b);
        /* A frame declaring 100 bytes, of which 5 are sent. */
        h_rawws_send_frame(&r, 2, 1, b.data, 5, 100);
        proto_buf_free(&b);
        h_rawws_abort(&r, 1);
        wait_only_p("Z: TCP reset in the middle of a websocket frame");
        /* Not even a websocket: half an HTTP request. */
        h_rawws_connect(&r, g_srv->port, 0, err, sizeof err);
        h_rawws_abort(&r, 1);
        wait_only_p("H: TCP reset right after the websocket handshake");
    }
    free(png);
    char body[1 << 16];
    tu_check(h_server_alive(g_srv) && healthz_ok(body, sizeof body), "server alive, /healthz ok");
    tu_check(pl->joined_count == 1 && pl->joined.session == sid,
             "P: the same session throughout (one joined, sid %llu)", (unsigned long long)sid);
    check_unaffected(pl, f0, CFPS, "by the abrupt disconnects");
    player *n = pl_joined("N", &(join_opts){.has_seed = 1, .seed = 5});
    WAIT_UNTIL(n->frames >= 12 || n->closed, 10);
    tu_check(n->frames >= 12, "N: a new player gets the freed slot and plays (%d frames)", n->frames);
    server_down();
}

/* 11. graceful shutdown -------------------------------------------------------------------------- */

static void scenario_shutdown(void) {
    printf("\n-- shutdown (SIGTERM)\n");
    const char *args[] = {"--max-sessions", "1", "--max-queue", "1", NULL};
    if (!server_up(args)) return;
    player *a = pl_joined("A", &(join_opts){.has_seed = 1, .seed = 1});
    a->auto_hz = 10;
    WAIT_UNTIL(a->frames >= 12 || a->closed, 10);
    player *b = pl_welcomed("B");
    pl_join(b, NULL);
    WAIT_UNTIL(b->queue_msgs || b->closed, 5);
    player *c = pl_welcomed("C");
    tu_check(a->frames >= 12 && b->queue_pos == 1 && c->welcomed,
             "A plays (%d frames), B is queued (pos %u), C is welcomed", a->frames, b->queue_pos);
    double t0 = h_now();
    kill(g_srv->pid, SIGTERM);
    WAIT_UNTIL(a->closed && b->closed && c->closed, 5);
    expect_fatal(a, PROTO_ERR_SHUTTING_DOWN, 0.1, "SIGTERM while playing");
    expect_fatal(b, PROTO_ERR_SHUTTING_DOWN, 0.1, "SIGTERM while queued");
    expect_fatal(c, PROTO_ERR_SHUTTING_DOWN, 0.1, "SIGTERM while welcomed");
    int status = -1;
    int exited = h_server_wait_exit(g_srv, 8, &status);
    tu_check(exited && WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "server exited %.2f s after SIGTERM with status %d (want 0, within 8 s)", h_now() - t0,
             exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    server_down();
}

/* Not a ctest: frame rate of N players for 10 s, with the server's own counters (diagnostics). */
static void scenario_soak(void) {
    const char *np_env = getenv("SOAK_PLAYERS");
    int np = np_env ? atoi(np_env) : 1;
    const char *fps = getenv("SOAK_FPS") ? getenv("SOAK_FPS") : "25";
    const char *args[] = {"--max-sessions", "4", "--fps", fps, "--log-level",
                          getenv("SOAK_DEBUG") ? "debug" : "info", NULL};
    if (!server_up(args)) return;
    player *p[4];
    for (int i = 0; i < np && i < 4; i++) {
        p[i] = pl_joined("P", &(join_opts){.has_seed = 1, .seed = (uint64_t)i});
        p[i]->auto_hz = 20;
    }
    run_for(1);
    for (int i = 0; i < np && i < 4; i++) mark(p[i]);
    for (int k = 0; k < 10; k++) {
        run_for(1);
        for (int i = 0; i < np && i < 4; i++) printf("  p%d %.1f fps gap %.0f ms |", i, rate_since_mark(p[i]), p[i]->max_gap_s * 1e3);
        printf(" underruns %g blocks %g block_s_sum %g\n", h_server_metric(g_srv, "wmserve_underruns_total"),
               h_server_metric(g_srv, "wmserve_blocks_total"), h_server_metric(g_srv, "wmserve_block_seconds_sum"));
    }
    server_down();
}

/* 12. access: Origin check, per-address connection limit, X-Forwarded-For ---------------------- */

/* A raw websocket upgrade with extra headers; the HTTP status of the answer (101 on success; the
 * socket then stays open in *r, else it is closed). */
static int upgrade_status(h_rawws *r, const char *headers) {
    char err[256];
    int status = 0;
    if (h_rawws_connect_ex(r, g_srv->port, 0, headers, &status, err, sizeof err)) {
        h_rawws_abort(r, 0);
        return status;
    }
    return status;
}

/* A fatal error `code` then close 4000 + code on a raw connection, within 5 s. */
static void raw_expect_fatal(h_rawws *r, int code, const char *what) {
    raw_outcome o = raw_until_closed(r, 5);
    tu_check(o.errors == 1 && o.last_code == code && o.last_fatal == 1 &&
                 o.close_code == 4000 + code,
             "%s -> error %s (fatal) then close %d; saw %d error(s), last %s (fatal %d), close %d",
             what, proto_error_name(code), 4000 + code, o.errors, proto_error_name(o.last_code),
             o.last_fatal, o.close_code);
}

/* 1 when the connection is still open and answers hello with welcome. */
static int raw_welcomed(h_rawws *r) {
    raw_hello(r);
    double t0 = h_now();
    while (h_now() - t0 < 5 && !r->eof && !r->close_code) {
        int op;
        const uint8_t *p;
        size_t n;
        if (h_rawws_recv(r, 20, &op, &p, &n) != 1 || op != 2) continue;
        proto_msg m;
        char e[128];
        if (!proto_decode(p, n, 1u << 24, &m, e, sizeof e)) return m.type == PROTO_WELCOME;
    }
    return 0;
}

static void scenario_access(void) {
    printf("\n-- access: --allowed-origins (default), --max-conns-per-ip 3\n");
    {
        const char *args[] = {"--max-sessions", "1", "--max-conns-per-ip", "3", NULL};
        if (!server_up(args)) return;
        char same[96];
        snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", g_srv->port);
        h_rawws a, b, c, d, e;
        int st = upgrade_status(&a, "");
        tu_check(st == 101, "no Origin (non-browser client): upgrade -> %d (want 101)", st);
        st = upgrade_status(&b, same);
        tu_check(st == 101, "same-host Origin: upgrade -> %d (want 101)", st);
        st = upgrade_status(&e, "Origin: http://evil.example\r\n");
        tu_check(st == 403, "Origin http://evil.example: upgrade -> %d (want 403)", st);
        st = upgrade_status(&e, "Origin: http://127.0.0.1:1\r\n");
        tu_check(st == 403, "Origin of another port: upgrade -> %d (want 403)", st);
        double refused = h_server_metric(g_srv, "wmserve_ws_refused_origin_total");
        h_server_pump_log(g_srv);
        int logged = h_server_log_count(g_srv, "origin=http://evil.example");
        tu_check(refused == 2 && logged == 1,
                 "refusals counted (ws_refused_origin_total %g, want 2) and logged (%d line)",
                 refused, logged);
        tu_check(raw_welcomed(&a) && raw_welcomed(&b), "the allowed connections are served");
        st = upgrade_status(&c, "");
        tu_check(st == 101 && raw_welcomed(&c), "3rd connection from 127.0.0.1 served");
        /* X-Forwarded-For is ignored without --trust-forwarded-for. */
        st = upgrade_status(&d, "X-Forwarded-For: 10.9.9.9\r\n");
        tu_check(st == 101, "4th connection: upgrade %d, then refused in the protocol", st);
        if (st == 101) raw_expect_fatal(&d, PROTO_ERR_RATE_LIMITED, "4th connection from one address");
        h_rawws_abort(&d, 0);
        double per_ip = h_server_metric(g_srv, "wmserve_ws_refused_per_ip_total");
        tu_check(per_ip == 1, "ws_refused_per_ip_total %g (want 1)", per_ip);
        h_rawws_abort(&c, 1);
        double conns = wait_metric("wmserve_connections_active", 2, 5);
        st = upgrade_status(&c, "");
        tu_check(conns == 2 && st == 101 && raw_welcomed(&c),
                 "after one closed (connections_active %g): a new one is served", conns);
        /* Static serving: no path out of --web, whatever the spelling. */
        static const char *paths[] = {"/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                                      "/..%2f..%2fetc/passwd", "//etc/passwd", "/.git/config"};
        for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
            char body[4096];
            int code = h_http_get(g_srv->port, paths[i], body, sizeof body, 5);
            tu_check(code >= 400 && code < 500 && !strstr(body, "root:") && !strstr(body, "[core]"),
                     "GET %s -> %d (want 4xx, no file content)", paths[i], code);
        }
        h_rawws_abort(&a, 0);
        h_rawws_abort(&b, 0);
        h_rawws_abort(&c, 0);
        server_down();
    }
    printf("\n-- access: --allowed-origins list, --trust-forwarded-for 1, --max-conns-per-ip 1\n");
    {
        const char *args[] = {"--max-sessions", "1", "--allowed-origins",
                              "https://game.example, play.example:8443", "--trust-forwarded-for",
                              "1", "--max-conns-per-ip", "1", NULL};
        if (!server_up(args)) return;
        char same[96];
        snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", g_srv->port);
        h_rawws a, b, c, x;
        int st = upgrade_status(&x, same);
        tu_check(st == 403, "same-host Origin not in the list: %d (want 403)", st);
        st = upgrade_status(&a, "Origin: https://game.example\r\nX-Forwarded-For: 10.0.0.1\r\n");
        tu_check(st == 101 && raw_welcomed(&a), "listed Origin https://game.example: %d (want 101)",
                 st);
        st = upgrade_status(&b, "Origin: https://play.example:8443\r\n"
                                "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n");
        tu_check(st == 101 && raw_welcomed(&b),
                 "listed host play.example:8443, another forwarded address: %d (want 101)", st);
        st = upgrade_status(&c, "X-Forwarded-For: 192.168.7.7, 10.0.0.1\r\n");
        tu_check(st == 101, "same forwarded address 10.0.0.1: upgrade %d", st);
        if (st == 101) raw_expect_fatal(&c, PROTO_ERR_RATE_LIMITED, "2nd connection from 10.0.0.1");
        h_rawws_abort(&a, 0);
        h_rawws_abort(&b, 0);
        h_rawws_abort(&c, 0);
        server_down();
    }
}

/* 13. signed tokens (--token-secret, --make-token) ------------------------------------------------ */

/* wmserve --make-token S --token-secret FILE into tok; 0 or -1. */
static int make_token(const char *secret_file, int seconds, char *tok, size_t n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --make-token %d --token-secret '%s'", g_bin, seconds,
             secret_file);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    int ok = fgets(tok, (int)n, f) != NULL;
    int st = pclose(f);
    tok[strcspn(tok, "\n")] = '\0';
    return ok && st == 0 ? 0 : -1;
}

static void scenario_token_signed(void) {
    printf("\n-- signed tokens (--token-secret FILE, --token s3cret)\n");
    char secret_file[] = "/tmp/wm-itest-secret-XXXXXX";
    int fd = mkstemp(secret_file);
    /* A random 32-byte secret as hex (the file may hold any bytes; newlines are trimmed). */
    char hex[80];
    srand((unsigned)getpid());
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", (unsigned)(rand() & 255));
    strcat(hex, "\n");
    int ok = fd >= 0 && write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex);
    if (fd >= 0) close(fd);
    tu_check(ok, "secret file %s", secret_file);
    char good[256] = "", soon[256] = "", tok[256];
    tu_check(!make_token(secret_file, 600, good, sizeof good) && !strncmp(good, "v1.", 3) &&
                 strlen(good) > 70,
             "wmserve --make-token 600: '%s'", good);
    tu_check(!make_token(secret_file, 1, soon, sizeof soon), "wmserve --make-token 1: '%s'", soon);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --make-token 60 >/dev/null 2>&1", g_bin);
    int st = system(cmd);
    tu_check(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--make-token without --token-secret: exit %d",
             WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    const char *args[] = {"--token", "s3cret", "--token-secret", secret_file, "--max-sessions", "1",
                          NULL};
    if (!server_up(args)) {
        unlink(secret_file);
        return;
    }
    /* Let the 1-second token expire (expiry <= now is expired). */
    double t0 = h_now();
    while (h_now() - t0 < 2.2) service(50);
    char tampered_sig[256], tampered_exp[256];
    snprintf(tampered_sig, sizeof tampered_sig, "%s", good);
    size_t last = strlen(tampered_sig) - 1;
    tampered_sig[last] = tampered_sig[last] == '0' ? '1' : '0';
    snprintf(tampered_exp, sizeof tampered_exp, "%s", good);
    tampered_exp[3] = tampered_exp[3] == '9' ? '8' : (char)(tampered_exp[3] + 1); /* later expiry */
    const struct {
        const char *name, *token, *msg;
    } bad[4] = {{"expired", soon, "expired"},
                {"tampered signature", tampered_sig, "signature"},
                {"tampered expiry", tampered_exp, "signature"},
                {"malformed", "v1.123.abc", "malformed"}};
    for (int i = 0; i < 4; i++) {
        player *p = pl_welcomed(bad[i].name);
        if (i == 0) tu_check(p->welcome.token_required == 1, "welcome.auth is true");
        pl_join(p, &(join_opts){.token = bad[i].token});
        expect_fatal(p, PROTO_ERR_UNAUTHORIZED, 5, bad[i].name);
        tu_check(strstr(last_err_msg(p), bad[i].msg) != NULL && !p->frames,
                 "%s: message '%s' names '%s', no frames", bad[i].name, last_err_msg(p), bad[i].msg);
    }
    player *ok1 = pl_joined("signed", &(join_opts){.token = good});
    WAIT_UNTIL(ok1->frames >= 12 || ok1->closed, 10);
    tu_check(ok1->frames >= 12, "signed: a valid signed token plays (%d frames)", ok1->frames);
    snprintf(tok, sizeof tok, "%s", "s3cret");
    send_simple(ok1, PROTO_LEAVE);
    WAIT_UNTIL(ok1->closed, 5);
    player *ok2 = pl_joined("static", &(join_opts){.token = tok});
    WAIT_UNTIL(ok2->frames >= 12 || ok2->closed, 10);
    tu_check(ok2->frames >= 12, "static: --token still accepted beside signed ones (%d frames)",
             ok2->frames);
    double n = h_server_metric(g_srv, "wmserve_errors_total{code=\"unauthorized\"}");
    tu_check(n == 4, "metrics: errors_total{unauthorized} %g (want 4)", n);
    server_down();
    unlink(secret_file);
}

/* 14. engine fault injection ---------------------------------------------------------------------- */

static void scenario_fault(void) {
    printf("\n-- engine faults: --fault-session 2 with a concurrent player\n");
    {
        const char *args[] = {"--max-sessions", "2", "--max-queue", "2", "--fps", CFPS_S,
                              "--fault-session", "2", NULL};
        if (!server_up(args)) return;
        player *pl = pl_joined("P", &(join_opts){.has_seed = 1, .seed = 1});
        pl->auto_hz = 20;
        WAIT_UNTIL(pl->frames >= 10 || pl->closed, 10);
        tu_check(pl->joined.session == 1, "P: session 1 (%llu)",
                 (unsigned long long)pl->joined.session);
        mark(pl);
        int f0 = pl->frames;
        player *f = pl_welcomed("F");
        pl_join(f, &(join_opts){.has_seed = 1, .seed = 2});
        expect_fatal(f, PROTO_ERR_ENGINE, 15, "F (session 2): every block fails");
        tu_check(strstr(last_err_msg(f), "injected fault") != NULL && f->frames == 0,
                 "F: message '%s', %d frames", last_err_msg(f), f->frames);
        char body[1 << 16];
        tu_check(h_server_alive(g_srv) && healthz_ok(body, sizeof body), "server alive, /healthz ok");
        check_unaffected(pl, f0, CFPS, "by the engine failing F's session");
        double eng = h_server_metric(g_srv, "wmserve_errors_total{code=\"engine\"}");
        double active = wait_metric("wmserve_sessions_active", 1, 5);
        tu_check(eng == 1 && active == 1, "metrics: errors_total{engine} %g (want 1), "
                                          "sessions_active %g (want 1)", eng, active);
        h_server_pump_log(g_srv);
        tu_check(h_server_log_count(g_srv, "engine_block_failed") == 1,
                 "log: one engine_block_failed line");
        player *n = pl_joined("N", &(join_opts){.has_seed = 1, .seed = 5});
        WAIT_UNTIL(n->frames >= 12 || n->closed, 15);
        tu_check(n->frames >= 12, "N (session 3): takes the freed slot and plays (%d frames)",
                 n->frames);
        server_down();
    }
    printf("\n-- engine faults: WMSERVE_FAULT_BLOCK_FAIL=1 (environment)\n");
    {
        setenv("WMSERVE_FAULT_BLOCK_FAIL", "1", 1);
        const char *args[] = {"--max-sessions", "1", NULL};
        int up = server_up(args);
        unsetenv("WMSERVE_FAULT_BLOCK_FAIL");
        if (!up) return;
        player *a = pl_welcomed("A");
        pl_join(a, NULL);
        expect_fatal(a, PROTO_ERR_ENGINE, 15, "A: the server's first block fails");
        player *b = pl_joined("B", NULL);
        WAIT_UNTIL(b->frames >= 12 || b->closed, 15);
        tu_check(b->frames >= 12 && !b->n_err, "B: the next session plays (%d frames)", b->frames);
        server_down();
    }
}

/* main -------------------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*fn)(void);
} k_scenarios[] = {
    {"play", scenario_play},           {"reset", scenario_reset},   {"upload", scenario_upload},
    {"admission", scenario_admission}, {"idle", scenario_idle},     {"token", scenario_token},
    {"malformed", scenario_malformed}, {"limits", scenario_limits}, {"slow", scenario_slow},
    {"abrupt", scenario_abrupt},       {"shutdown", scenario_shutdown}, {"soak", scenario_soak},
    {"access", scenario_access},       {"token_signed", scenario_token_signed},
    {"fault", scenario_fault},
};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s path/to/wmserve SCENARIO|all\nscenarios:", argv[0]);
        for (size_t i = 0; i < sizeof k_scenarios / sizeof *k_scenarios; i++)
            fprintf(stderr, " %s", k_scenarios[i].name);
        fprintf(stderr, "\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR, NULL);
    g_bin = argv[1];
    int found = 0;
    double t0 = h_now();
    for (size_t i = 0; i < sizeof k_scenarios / sizeof *k_scenarios; i++) {
        if (strcmp(argv[2], "all") ? strcmp(argv[2], k_scenarios[i].name) != 0
                                   : k_scenarios[i].fn == scenario_soak)
            continue;
        found = 1;
        k_scenarios[i].fn();
    }
    if (!found) {
        fprintf(stderr, "unknown scenario '%s'\n", argv[2]);
        return 2;
    }
    printf("(%.1f s)\n", h_now() - t0);
    char name[64];
    snprintf(name, sizeof name, "test_server_integration %s", argv[2]);
    return tu_finish(name);
}
