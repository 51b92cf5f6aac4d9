/* One wmload run: players, their schedules and their measurements (see run.h). Everything runs on
 * the calling thread: a loop that fires the players' timers (arrivals, inputs, pings, leaves,
 * resets, read pauses) and services the websocket context until the next one is due. */
#include "tests/load/run.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/ws_client.h"

/* Video frames per block in steady state (the first block has 9): the mouse value a script gives
 * for one frame is spread over this many frames' worth of time, because the server applies the
 * sum of a block's deltas to each of its frames (PROTOCOL.md "Input semantics"). */
#define WL_FRAMES_PER_BLOCK 12
/* Random scripts: this many frames (48 s at 25 fps), looped. */
#define WL_RANDOM_SCRIPT_FRAMES (12 * 100)
/* After a leave (or at the end of the run) the server closes; if it has not after this, we do. */
#define WL_LEAVE_TIMEOUT_MS 3000.0
/* At the end of a run, how long to wait for every connection to close. */
#define WL_DRAIN_MS 5000.0

typedef enum pstate {
    PS_WAIT,       /* not arrived yet */
    PS_CONNECTING, /* websocket handshake */
    PS_HELLO,      /* hello sent */
    PS_JOINING,    /* join sent */
    PS_QUEUED,
    PS_PLAYING,
    PS_LEAVING, /* leave sent (churn, end of run) or closing */
    PS_GAP,     /* churn: between sessions */
    PS_DONE
} pstate;

typedef struct runner runner;

typedef struct player {
    runner *r;
    int index;
    wl_kind kind;
    pstate state;
    wsc_conn *c;
    long sess; /* index of the current session in r->res->sessions, -1 = none */
    int nth;
    double t_arrive, t_reconnect, next_input, next_ping, leave_at, next_reset, pause_at, resume_at,
        leaving_since;
    int paused, close_asked;
    uint32_t seq, ping_id;
    int64_t last_j;   /* last script frame whose mouse motion has been sent */
    double t_script0; /* the script's frame 0 starts at joined */
    uint32_t key_bit[ENG_MAX_KDIM];
    int mouse;
    uint32_t fps;
    eng_action_script own_script;
    const eng_action_script *script;
    uint64_t rng;
} player;

struct runner {
    const wl_scenario *s;
    const eng_config *cfg;
    wl_result *res;
    wsc_ctx *ws;
    player *players;
    int np;
    struct timespec t0;
    int ending;
    double t_end;
    double input_period_ms;
    int live; /* connections that have not reported on_close */
    int warned_keys, warned_variant, warned_hz;
    FILE *trace; /* one CSV line per frame counted, or NULL */
};

static const double INF = 1e300;

static double now_ms(const runner *R) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - R->t0.tv_sec) * 1e3 + (double)(ts.tv_nsec - R->t0.tv_nsec) * 1e-6;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]. */
static double uniform01(uint64_t *state) {
    return ((double)(splitmix64(state) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static double exp_draw(uint64_t *state, double mean) {
    return -mean * log(uniform01(state));
}

__attribute__((format(printf, 2, 3))) static void warn(wl_result *res, const char *fmt, ...) {
    if (res->n_warnings >= (int)(sizeof res->warnings / sizeof res->warnings[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->warnings[res->n_warnings++], sizeof res->warnings[0], fmt, ap);
    va_end(ap);
}

static wl_session *cur(player *p) {
    return p->sess >= 0 ? &p->r->res->sessions[p->sess] : NULL;
}

static long new_session(runner *R, player *p, double t) {
    wl_result *res = R->res;
    if (res->n_sessions == res->cap_sessions) {
        size_t cap = res->cap_sessions ? res->cap_sessions * 2 : 64;
        wl_session *q = realloc(res->sessions, cap * sizeof *q);
        if (!q) return -1;
        res->sessions = q;
        res->cap_sessions = cap;
    }
    wl_session *x = &res->sessions[res->n_sessions];
    memset(x, 0, sizeof *x);
    x->player = p->index;
    x->kind = p->kind;
    x->nth = p->nth++;
    x->t_connect = t;
    x->t_open = x->t_join = x->t_queued = x->t_joined = x->t_first_frame = x->t_end = x->t_close =
        x->t_reset_sent = NAN;
    return (long)res->n_sessions++;
}

/* Blocks whose first frame has a number in [1, n]: block 0 is frames 0..8, block b >= 1 starts at
 * frame 9 + 12 (b - 1) (PROTOCOL.md "Frames and latency"). */
static uint64_t block_starts_upto(uint64_t n) {
    return n < 9 ? 0 : (n - 9) / WL_FRAMES_PER_BLOCK + 1;
}

/* The viewer at the end of a segment (not a reset's, which drops the frames on purpose): a frame
 * that was due before t and never came is a stall still going on, and every block that should
 * have started meanwhile missed its deadline. */
static void viewer_close(wl_session *x, double t) {
    if (!x->seg_active || x->viewer_fps <= 0) return;
    double due = x->play0 + (double)(x->last_n + 1 - x->seg_n0) * 1000.0 / x->viewer_fps;
    if (t <= due) return;
    x->stalls++;
    x->stall_ms += t - due;
    uint64_t missing = (uint64_t)floor((t - due) * x->viewer_fps / 1000.0) + 1;
    x->blocks += block_starts_upto(x->last_n + missing) - block_starts_upto(x->last_n);
}

/* The measurement of a session stops (leave, end of run, close): its open segment ends here. */
static void session_stop(wl_session *x, double t) {
    if (!isnan(x->t_end)) return;
    x->t_end = t;
    if (x->seg_active) {
        viewer_close(x, t);
        x->play_ms += t - x->seg_first;
        x->seg_active = 0;
    }
}

static eng_action_frame frame_at(const player *p, int64_t j) {
    const eng_action_script *s = p->script;
    if (s && s->count && p->r->s->actions_loop) j %= (int64_t)s->count;
    return eng_actions_at(s, (size_t)j);
}

/* Sending
 * ------------------------------------------------------------------------------------------ */

static void send_simple(player *p, proto_type t) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = t;
    wsc_send(p->c, &m);
}

static void send_hello(player *p) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_HELLO;
    m.u.hello.min_version = 1;
    m.u.hello.max_version = PROTO_VERSION;
    snprintf(m.u.hello.client, sizeof m.u.hello.client, "wmload/0.1");
    wsc_send(p->c, &m);
}

static void send_join(runner *R, player *p) {
    const wl_scenario *s = R->s;
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_JOIN;
    snprintf(m.u.join.variant, sizeof m.u.join.variant, "%s", s->variant);
    snprintf(m.u.join.scene, sizeof m.u.join.scene, "%s", s->scene);
    snprintf(m.u.join.token, sizeof m.u.join.token, "%s", s->token);
    if (s->has_join_seed) {
        m.u.join.seed = s->join_seed + (uint64_t)p->index;
        m.u.join.has_seed = 1;
    }
    wsc_send(p->c, &m);
}

static void send_ping(player *p, double t) {
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_PING;
    m.u.ping.id = ++p->ping_id;
    m.u.ping.client_ms = t;
    wsc_send(p->c, &m);
}

/* One input: the keys of the script's current frame, and the mouse motion of the frames since the
 * previous input (each frame's value / 12, so a value held over a block sums to that value). */
static void send_input(player *p, wl_session *x, double t) {
    int64_t j = (int64_t)floor((t - p->t_script0) * (double)p->fps / 1000.0);
    if (j < 0) j = 0;
    eng_action_frame fr = frame_at(p, j);
    uint32_t keys = 0;
    for (int i = 0; i < p->r->cfg->keyboard_dim_in && i < ENG_MAX_KDIM; i++)
        if (fr.keyboard[i] > 0.5f) keys |= p->key_bit[i];
    double dy = 0, dx = 0;
    int64_t from = p->last_j + 1;
    if (j - from > 100000) from = j - 100000;
    for (int64_t k = from; k <= j; k++) {
        eng_action_frame a = frame_at(p, k);
        dy += a.mouse[0];
        dx += a.mouse[1];
    }
    if (j > p->last_j) p->last_j = j;
    dy /= WL_FRAMES_PER_BLOCK;
    dx /= WL_FRAMES_PER_BLOCK;
    if (!p->mouse) dy = dx = 0;
    dy = dy > 1000 ? 1000 : dy < -1000 ? -1000 : dy;
    dx = dx > 1000 ? 1000 : dx < -1000 ? -1000 : dx;
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_INPUT;
    m.u.input.seq = ++p->seq;
    m.u.input.client_ms = t;
    m.u.input.keys = keys;
    m.u.input.mouse_dy = (float)dy;
    m.u.input.mouse_dx = (float)dx;
    if (wsc_send(p->c, &m) == 0) x->inputs_sent++;
}

/* Receiving
 * ---------------------------------------------------------------------------------------- */

static void on_joined(runner *R, player *p, wl_session *x, const proto_joined *j, double t) {
    const wl_scenario *s = R->s;
    x->sid = j->session;
    if (x->awaiting_rejoin) { /* the answer to a reset */
        x->awaiting_rejoin = 0;
        p->next_reset = t + s->reset_every_s * 1000.0;
        return;
    }
    if (!isnan(x->t_joined)) return;
    x->t_joined = t;
    p->state = PS_PLAYING;
    p->fps = j->fps ? j->fps : 25;
    R->res->server_fps = j->fps;
    x->viewer_fps = s->viewer_fps > 0 ? s->viewer_fps : p->fps;
    p->mouse = j->mouse;
    /* script key i -> the bit of the key of that name announced by the server */
    const eng_config *cfg = R->cfg;
    for (int i = 0; i < cfg->keyboard_dim_in && i < ENG_MAX_KDIM; i++) {
        const char *name = eng_action_key_name(cfg->variant, i);
        p->key_bit[i] = 0;
        for (int k = 0; name && k < j->n_keys; k++)
            if (strcmp(j->keys[k], name) == 0) p->key_bit[i] = 1u << k;
        if (!p->key_bit[i] && !R->warned_keys) {
            R->warned_keys = 1;
            warn(R->res, "the server's %s does not offer key '%s' of the script's variant %s",
                 j->variant, name ? name : "?", eng_variant_name(cfg->variant));
        }
    }
    if (strcmp(j->variant, eng_variant_name(cfg->variant)) != 0 && !R->warned_variant) {
        R->warned_variant = 1;
        warn(R->res, "playing variant %s with a script for %s (keys mapped by name)", j->variant,
             eng_variant_name(cfg->variant));
    }
    p->t_script0 = t;
    p->last_j = -1;
    int inputs = p->kind != WL_IDLE && R->input_period_ms > 0;
    p->next_input = inputs ? t : INF;
    p->leave_at = p->kind == WL_CHURN
                      ? t + 1000.0 * (s->churn_random ? exp_draw(&p->rng, s->churn_session_s)
                                                      : s->churn_session_s)
                      : INF;
    p->next_reset = p->kind == WL_RESET ? t + s->reset_every_s * 1000.0 : INF;
    p->pause_at = p->kind == WL_SLOW ? t + s->slow_start_s * 1000.0 : INF;
    p->resume_at = INF;
}

static void on_frame(runner *R, player *p, wl_session *x, const proto_frame *f, double t) {
    if (p->state != PS_PLAYING || R->ending || x->awaiting_rejoin || !isnan(x->t_end)) return;
    double due = NAN; /* the viewer's due time; none for a segment's first frame */
    if (!x->seg_active) {
        x->seg_active = 1;
        x->segments++;
        x->seg_first = x->seg_last = t;
        x->play0 = t + R->s->viewer_buffer_ms;
        x->seg_n0 = x->last_n = f->frame;
        x->cur_blk = f->block;
        if (isnan(x->t_first_frame)) {
            x->t_first_frame = t;
        } else if (!isnan(x->t_reset_sent)) {
            st_add(&x->reset_first_frame_ms, t - x->t_reset_sent);
            x->t_reset_sent = NAN;
        }
        st_add(&x->blk_ms, f->timings.block_ms);
    } else {
        if (f->frame <= x->last_n) {
            x->out_of_order++;
            return;
        }
        x->gaps += f->frame - x->last_n - 1;
        x->last_n = f->frame;
        double ia = t - x->seg_last;
        st_add(&x->inter_ms, ia);
        if (ia > x->max_inter_ms) x->max_inter_ms = ia;
        x->seg_last = t;
        due = x->play0 + (double)(f->frame - x->seg_n0) * 1000.0 / x->viewer_fps;
        double late = t - due;
        if (f->block != x->cur_blk) {
            x->cur_blk = f->block;
            x->blocks++;
            if (late <= 0) x->blocks_on_time++;
            st_add(&x->blk_ms, f->timings.block_ms);
        }
        if (late > 0) {
            /* the picture froze until this frame came; the viewer then buffers again as it did at
             * the start, so one underrun is one stall, not a cascade of late frames with no slack
             */
            x->stalls++;
            x->stall_ms += late + R->s->viewer_buffer_ms;
            x->play0 += late + R->s->viewer_buffer_ms;
        }
    }
    x->frames++;
    double latency = NAN;
    if (f->input_seq > x->max_seq) {
        x->max_seq = f->input_seq;
        latency = t - f->input_client_ms;
        st_add(&x->latency_ms, latency);
    }
    if (R->trace)
        fprintf(R->trace, "%d,%ld,%d,%s,%llu,%llu,%u,%.3f,%.3f,%.3f,%.3f,%.3f\n", R->np, p->sess,
                p->index, wl_kind_name(p->kind), (unsigned long long)f->frame,
                (unsigned long long)f->block, f->input_seq, t, due, latency,
                (double)f->timings.block_ms, (double)f->timings.queue_ms);
}

static void h_open(wsc_conn *c, void *user) {
    player *p = user;
    wl_session *x = cur(p);
    x->established = 1;
    x->t_open = now_ms(p->r);
    if (p->state != PS_CONNECTING) return; /* the run ended meanwhile: ws_client closes it now */
    /* a slow reader with a small receive buffer pushes back on the server soon after pausing,
     * as a congested client would, instead of parking seconds of frames in the kernel */
    if (p->kind == WL_SLOW && p->r->s->slow_rcvbuf > 0) wsc_set_rcvbuf(c, p->r->s->slow_rcvbuf);
    p->state = PS_HELLO;
    send_hello(p);
}

static void h_message(wsc_conn *c, const proto_msg *m, const uint8_t *raw, size_t len, void *user) {
    (void)c, (void)raw, (void)len;
    player *p = user;
    runner *R = p->r;
    wl_session *x = cur(p);
    double t = now_ms(R);
    switch (m->type) {
    case PROTO_WELCOME: {
        const proto_welcome *w = &m->u.welcome;
        snprintf(R->res->server_name, sizeof R->res->server_name, "%s", w->server);
        double min_period = w->limits.max_input_hz ? 1000.0 / w->limits.max_input_hz : 0;
        if (R->input_period_ms > 0 && R->input_period_ms < min_period) {
            R->input_period_ms = min_period;
            R->res->input_hz = w->limits.max_input_hz;
            if (!R->warned_hz) {
                R->warned_hz = 1;
                warn(R->res, "input_hz %.1f is over the server's max_hz %u: sending %u per second",
                     R->s->input_hz, w->limits.max_input_hz, w->limits.max_input_hz);
            }
        }
        if (p->state == PS_HELLO && !R->ending) {
            send_join(R, p);
            x->t_join = t;
            p->state = PS_JOINING;
            p->next_ping = R->s->ping_s > 0 ? t + R->s->ping_s * 1000.0 : INF;
        }
        break;
    }
    case PROTO_QUEUE:
        if (!x->queued) {
            x->queued = 1;
            x->t_queued = t;
        }
        if (p->state == PS_JOINING) p->state = PS_QUEUED;
        break;
    case PROTO_JOINED:
        if (p->state == PS_JOINING || p->state == PS_QUEUED || p->state == PS_PLAYING)
            on_joined(R, p, x, &m->u.joined, t);
        break;
    case PROTO_FRAME:
        on_frame(R, p, x, &m->u.frame, t);
        break;
    case PROTO_STATS:
        if (m->u.stats.frames_sent > x->srv_sent) x->srv_sent = m->u.stats.frames_sent;
        if (m->u.stats.frames_dropped > x->srv_dropped) x->srv_dropped = m->u.stats.frames_dropped;
        break;
    case PROTO_PONG:
        st_add(&x->rtt_ms, t - m->u.pong.client_ms);
        break;
    case PROTO_PING: { /* the server measuring us: answer at once */
        proto_msg r;
        memset(&r, 0, sizeof r);
        r.type = PROTO_PONG;
        r.u.pong.id = m->u.ping.id;
        r.u.pong.client_ms = m->u.ping.client_ms;
        r.u.pong.server_ms = t;
        wsc_send(p->c, &r);
        break;
    }
    case PROTO_ERROR: {
        uint32_t code = m->u.error.code;
        x->errors[code <= WL_MAX_ERROR_CODE ? code : 0]++;
        if (m->u.error.fatal) x->fatal_code = (int)code;
        break;
    }
    default:
        break;
    }
}

static void h_bad(wsc_conn *c, const char *err, void *user) {
    (void)c, (void)err;
    wl_session *x = cur(user);
    x->bad_messages++;
}

static void h_close(wsc_conn *c, int code, const char *reason, void *user) {
    player *p = user;
    runner *R = p->r;
    wl_session *x = cur(p);
    double t = now_ms(R);
    x->bytes = wsc_bytes_received(c);
    x->t_close = t;
    x->close_code = code;
    snprintf(x->close_reason, sizeof x->close_reason, "%s", reason ? reason : "");
    if (!x->established)
        x->connect_failed = 1;
    else if (!R->ending && p->state != PS_LEAVING)
        x->closed_early = 1;
    session_stop(x, R->ending ? R->t_end : t);
    p->c = NULL;
    p->paused = 0;
    R->live--;
    if (!R->ending && p->kind == WL_CHURN) {
        p->state = PS_GAP;
        /* at least 100 ms: a refused connection must not turn into a tight reconnect loop */
        p->t_reconnect = t + fmax(R->s->churn_gap_s, 0.1) * 1000.0;
    } else {
        p->state = PS_DONE;
    }
}

static const wsc_handlers handlers = {h_open, h_message, h_bad, h_close};

/* Timers
 * ------------------------------------------------------------------------------------------- */

static void do_connect(runner *R, player *p, double t) {
    long si = new_session(R, p, t);
    if (si < 0) {
        p->state = PS_DONE;
        return;
    }
    p->sess = si;
    p->seq = 0;
    p->ping_id = 0;
    p->paused = 0;
    p->close_asked = 0;
    p->next_ping = p->next_input = p->leave_at = p->next_reset = p->pause_at = p->resume_at = INF;
    p->state = PS_CONNECTING;
    p->c = wsc_connect(R->ws, R->s->host, R->s->port, R->s->ws_path, &handlers, p);
    if (!p->c) {
        wl_session *x = cur(p);
        x->connect_failed = 1;
        x->t_close = x->t_end = t;
        snprintf(x->close_reason, sizeof x->close_reason, "connect failed at once");
        if (p->kind == WL_CHURN) {
            p->state = PS_GAP;
            p->t_reconnect = t + fmax(R->s->churn_gap_s, 0.1) * 1000.0;
        } else {
            p->state = PS_DONE;
        }
        return;
    }
    R->live++;
}

static void start_leave(runner *R, player *p, double t) {
    wl_session *x = cur(p);
    session_stop(x, t);
    if (p->paused) {
        wsc_pause_reading(p->c, 0);
        p->paused = 0;
    }
    if (p->state == PS_JOINING || p->state == PS_QUEUED || p->state == PS_PLAYING) {
        send_simple(p, PROTO_LEAVE);
    } else {
        wsc_close(p->c, 1000);
        p->close_asked = 1;
    }
    p->state = PS_LEAVING;
    p->leaving_since = t;
    (void)R;
}

static double min2(double a, double b) {
    return a < b ? a : b;
}

/* Fires what is due for p at time t; returns when p next needs attention. */
static double step(runner *R, player *p, double t) {
    const wl_scenario *s = R->s;
    switch (p->state) {
    case PS_WAIT:
        if (t < p->t_arrive) return p->t_arrive;
        do_connect(R, p, t);
        return t;
    case PS_GAP:
        if (t < p->t_reconnect) return p->t_reconnect;
        do_connect(R, p, t);
        return t;
    case PS_LEAVING:
        if (!p->close_asked && p->c && t - p->leaving_since > WL_LEAVE_TIMEOUT_MS) {
            wsc_close(p->c, 1000);
            p->close_asked = 1;
        }
        return p->close_asked ? INF : p->leaving_since + WL_LEAVE_TIMEOUT_MS;
    case PS_JOINING:
    case PS_QUEUED:
    case PS_PLAYING:
        break;
    default:
        return INF;
    }
    wl_session *x = cur(p);
    if (t >= p->next_ping) {
        send_ping(p, t);
        p->next_ping += s->ping_s * 1000.0;
        if (p->next_ping < t) p->next_ping = t + s->ping_s * 1000.0;
    }
    if (p->state == PS_PLAYING) {
        if (t >= p->leave_at) {
            start_leave(R, p, t);
            return t;
        }
        if (t >= p->next_input) {
            send_input(p, x, t);
            p->next_input += R->input_period_ms;
            /* steady rate, but no catch-up burst after a hiccup (it would trip the rate limit) */
            if (p->next_input < t) p->next_input = t + R->input_period_ms;
        }
        if (t >= p->next_reset && !x->awaiting_rejoin) {
            send_simple(p, PROTO_RESET);
            x->resets++;
            x->t_reset_sent = t;
            if (x->seg_active) {
                x->play_ms += t - x->seg_first;
                x->seg_active = 0;
            }
            x->awaiting_rejoin = 1;
            p->next_reset = INF;
        }
        if (t >= p->pause_at) {
            wsc_pause_reading(p->c, 1);
            p->paused = 1;
            p->pause_at = INF;
            p->resume_at = t + s->slow_pause_s * 1000.0;
        }
        if (t >= p->resume_at) {
            wsc_pause_reading(p->c, 0);
            p->paused = 0;
            p->resume_at = INF;
            p->pause_at = s->slow_read_s > 0 ? t + s->slow_read_s * 1000.0 : INF;
        }
    }
    double next = p->next_ping;
    if (p->state == PS_PLAYING) {
        next = min2(next, p->leave_at);
        next = min2(next, p->next_input);
        if (!x->awaiting_rejoin) next = min2(next, p->next_reset);
        next = min2(next, p->pause_at);
        next = min2(next, p->resume_at);
    }
    return next;
}

static void end_run(runner *R, double t) {
    R->ending = 1;
    R->t_end = t;
    R->res->run_ms = t;
    for (int i = 0; i < R->np; i++) {
        player *p = &R->players[i];
        if (p->c && p->state != PS_LEAVING)
            start_leave(R, p, t);
        else if (!p->c)
            p->state = PS_DONE;
    }
}

/* The run
 * ------------------------------------------------------------------------------------------- */

int wl_run(const wl_scenario *s, int n_players, const eng_config *cfg,
           const eng_action_script *script, FILE *trace, volatile sig_atomic_t *stop,
           wl_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->n_players = n_players;
    out->duration_ms = s->duration_s * 1000.0;
    out->input_hz = s->input_hz;
    wl_mix_counts(s, n_players, out->kind_counts);

    runner R;
    memset(&R, 0, sizeof R);
    R.s = s;
    R.cfg = cfg;
    R.res = out;
    R.np = n_players;
    R.trace = trace;
    R.input_period_ms = s->input_hz > 0 ? 1000.0 / s->input_hz : 0;
    R.players = calloc((size_t)n_players, sizeof *R.players);
    if (!R.players) {
        snprintf(err, errlen, "out of memory for %d players", n_players);
        return -1;
    }
    if (wsc_ctx_create(&R.ws, err, errlen)) {
        free(R.players);
        return -1;
    }

    /* Kinds, spread over the arrival order by a seeded shuffle; arrival times (open loop). */
    uint64_t rng = s->seed * 0x9e3779b97f4a7c15ull + 12345;
    int k = 0, left = out->kind_counts[0];
    for (int i = 0; i < n_players; i++) {
        while (left == 0 && k < WL_KIND_COUNT - 1) left = out->kind_counts[++k];
        R.players[i].kind = (wl_kind)k;
        left--;
    }
    for (int i = n_players - 1; i > 0; i--) {
        int j = (int)(splitmix64(&rng) % (uint64_t)(i + 1));
        wl_kind tmp = R.players[i].kind;
        R.players[i].kind = R.players[j].kind;
        R.players[j].kind = tmp;
    }
    double ta = 0;
    int rc = 0;
    for (int i = 0; i < n_players && !rc; i++) {
        player *p = &R.players[i];
        p->r = &R;
        p->index = i;
        p->sess = -1;
        p->state = PS_WAIT;
        p->rng = s->seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(i + 1));
        if (i > 0 && s->arrival_rate_hz > 0)
            ta += s->arrival_poisson ? exp_draw(&rng, 1000.0 / s->arrival_rate_hz)
                                     : 1000.0 / s->arrival_rate_hz;
        p->t_arrive = ta;
        if (script) {
            p->script = script;
        } else if (p->kind != WL_IDLE) {
            if (eng_actions_random(cfg, s->seed * 1000003ull + (uint64_t)i, WL_RANDOM_SCRIPT_FRAMES,
                                   &p->own_script)) {
                snprintf(err, errlen, "cannot make a random action script");
                rc = -1;
            }
            p->script = &p->own_script;
        }
    }
    if (ta > out->duration_ms)
        warn(out, "the last arrival (%.1f s) is after the end of the run (%.1f s)", ta / 1000,
             s->duration_s);

    clock_gettime(CLOCK_MONOTONIC, &R.t0);
    while (!rc) {
        double t = now_ms(&R);
        if (!R.ending && (t >= out->duration_ms || (stop && *stop))) {
            if (stop && *stop) out->interrupted = 1;
            end_run(&R, t);
        }
        if (R.ending && (R.live == 0 || t > R.t_end + WL_DRAIN_MS)) break;
        double next = t + 50;
        int active = 0;
        for (int i = 0; i < n_players; i++) {
            next = min2(next, step(&R, &R.players[i], t));
            active += R.players[i].state != PS_DONE;
        }
        if (!R.ending && !active) { /* nobody left to play (every connection failed or ended) */
            end_run(&R, t);
            continue;
        }
        if (!R.ending) next = min2(next, out->duration_ms);
        double wait = next - now_ms(&R);
        int wait_ms = wait <= 0 ? 0 : wait >= 50 ? 50 : (int)ceil(wait);
        wsc_service(R.ws, wait_ms);
    }
    wsc_ctx_destroy(R.ws); /* on_close for whatever is left */
    if (!out->run_ms) out->run_ms = now_ms(&R);
    for (size_t i = 0; i < out->n_sessions; i++) {
        wl_session *x = &out->sessions[i];
        session_stop(x, out->run_ms);
        double window = x->play_ms;
        /* frames after each segment's first one, over the segments' spans */
        x->fps = window > 0 ? (double)(x->frames - x->segments) * 1000.0 / window : 0;
    }
    for (int i = 0; i < n_players; i++) eng_actions_free(&R.players[i].own_script);
    free(R.players);
    return rc;
}

void wl_result_free(wl_result *r) {
    for (size_t i = 0; i < r->n_sessions; i++) {
        wl_session *x = &r->sessions[i];
        st_free(&x->inter_ms);
        st_free(&x->latency_ms);
        st_free(&x->reset_first_frame_ms);
        st_free(&x->blk_ms);
        st_free(&x->rtt_ms);
    }
    free(r->sessions);
    memset(r, 0, sizeof *r);
}

/* Summaries and the service level
 * -------------------------------------------------------------------- */

int wl_filter_checked(const wl_session *x, const void *arg) {
    (void)arg;
    return x->kind != WL_SLOW;
}

int wl_filter_kind(const wl_session *x, const void *arg) {
    return x->kind == *(const wl_kind *)arg;
}

static void count_close(wl_summary *m, int code) {
    for (int i = 0; i < m->n_closes; i++)
        if (m->closes[i].code == code) {
            m->closes[i].count++;
            return;
        }
    if (m->n_closes < WL_MAX_CLOSE_CODES) m->closes[m->n_closes++] = (wl_close_count){code, 1};
}

void wl_summarize(const wl_scenario *s, wl_result *r, wl_filter keep, const void *arg,
                  wl_summary *m) {
    memset(m, 0, sizeof *m);
    st_samples connect = {0}, ff = {0}, rff = {0}, inter = {0}, lat = {0}, blk = {0}, rtt = {0},
               fps = {0};
    uint64_t bytes = 0;
    for (size_t i = 0; i < r->n_sessions; i++) {
        wl_session *x = &r->sessions[i];
        if (keep && !keep(x, arg)) continue;
        m->sessions++;
        m->attempted++;
        if (x->established) {
            m->established++;
            st_add(&connect, x->t_open - x->t_connect);
        }
        if (x->connect_failed) m->failed++;
        if (x->queued) m->queued++;
        if (!isnan(x->t_join)) {
            if (!isnan(x->t_first_frame)) {
                double d = x->t_first_frame - x->t_join;
                st_add(&ff, d);
                if (d > s->sl.max_first_frame_ms) m->first_frame_late++;
            } else if (x->t_end - x->t_join >= s->sl.max_first_frame_ms) {
                m->first_frame_late++;
            }
        }
        st_merge(&rff, &x->reset_first_frame_ms);
        st_merge(&inter, &x->inter_ms);
        st_merge(&lat, &x->latency_ms);
        st_merge(&blk, &x->blk_ms);
        st_merge(&rtt, &x->rtt_ms);
        if (x->play_ms >= s->sl.min_session_s * 1000.0) {
            m->checked_sessions++;
            st_add(&fps, x->fps);
        }
        if (x->play_ms > 0) m->fps_aggregate += x->fps;
        m->frames += x->frames;
        m->blocks += x->blocks;
        m->blocks_on_time += x->blocks_on_time;
        m->stalls += x->stalls;
        m->stall_ms += x->stall_ms;
        m->server_dropped += x->srv_dropped;
        m->client_gaps += x->gaps;
        m->out_of_order += x->out_of_order;
        m->bad_messages += x->bad_messages;
        m->inputs_sent += x->inputs_sent;
        m->resets += x->resets;
        for (int c = 0; c <= WL_MAX_ERROR_CODE; c++) m->errors[c] += x->errors[c];
        if (x->fatal_code) m->fatal_sessions++;
        if (x->closed_early) m->closed_early++;
        count_close(m, x->close_code);
        bytes += x->bytes;
    }
    m->connect_ms = st_summarize(&connect);
    m->first_frame_ms = st_summarize(&ff);
    m->reset_first_frame_ms = st_summarize(&rff);
    m->inter_ms = st_summarize(&inter);
    m->latency_ms = st_summarize(&lat);
    m->server_block_ms = st_summarize(&blk);
    m->rtt_ms = st_summarize(&rtt);
    m->fps = st_summarize(&fps);
    st_histogram(&inter, m->inter_hist);
    st_histogram(&lat, m->latency_hist);
    m->on_deadline_share = m->blocks ? (double)m->blocks_on_time / (double)m->blocks : NAN;
    m->rx_mbit_s = r->run_ms > 0 ? (double)bytes * 8.0 / (r->run_ms * 1000.0) : 0;
    st_free(&connect);
    st_free(&ff);
    st_free(&rff);
    st_free(&inter);
    st_free(&lat);
    st_free(&blk);
    st_free(&rtt);
    st_free(&fps);
}

__attribute__((format(printf, 2, 3))) static void because(wl_verdict *v, const char *fmt, ...) {
    v->passed = 0;
    if (v->n_reasons >= (int)(sizeof v->reasons / sizeof v->reasons[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->reasons[v->n_reasons++], sizeof v->reasons[0], fmt, ap);
    va_end(ap);
}

void wl_evaluate(const wl_scenario *s, const wl_result *r, const wl_summary *sm,
                 const wl_summary *all, wl_verdict *v) {
    const wl_service_level *sl = &s->sl;
    memset(v, 0, sizeof *v);
    v->passed = 1;
    if (all->failed)
        because(v, "%llu of %llu connections failed", (unsigned long long)all->failed,
                (unsigned long long)all->attempted);
    if (sm->sessions == 0)
        because(v, "no session to check (every player is a slow reader?)");
    else if (sm->checked_sessions == 0)
        because(v, "no session played for min_session_s = %g s: fps not measured",
                sl->min_session_s);
    else if (sm->fps.min < sl->min_fps)
        because(v, "slowest session delivered %.2f fps < min_fps %g", sm->fps.min, sl->min_fps);
    if (sm->latency_ms.n && sm->latency_ms.p99 > sl->max_p99_ms)
        because(v, "input-to-frame p99 %.1f ms > %g ms", sm->latency_ms.p99, sl->max_p99_ms);
    if (!sm->latency_ms.n && sm->inputs_sent && sm->frames)
        because(v, "inputs were sent but no frame echoed one");
    if (sm->blocks && sm->on_deadline_share < sl->min_on_deadline)
        because(v, "%.2f%% of blocks on deadline < %.2f%%", 100 * sm->on_deadline_share,
                100 * sl->min_on_deadline);
    if (sm->first_frame_late)
        because(v, "%d sessions had no first frame within %g ms of joining", sm->first_frame_late,
                sl->max_first_frame_ms);
    if (sm->fatal_sessions || sm->closed_early)
        because(v, "%llu sessions ended by a fatal error, %llu closed early by the server",
                (unsigned long long)sm->fatal_sessions, (unsigned long long)sm->closed_early);
    if (r->interrupted) because(v, "interrupted");
}
