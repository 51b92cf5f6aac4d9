/* Websocket transport of one connection: reassembling messages from fragments (bounded), the queue
 * of control messages, writing (only from LWS_CALLBACK_SERVER_WRITEABLE, one message per callback:
 * control messages first, then the pacing outbox frame), the pacing timer, fatal-error closes, and
 * the connection's memory. The play protocol itself is session.c's.
 *
 * Memory per connection is bounded by: the receive buffer (at most max_msg = max upload + 4 KiB,
 * and freed after any message over 64 KiB), SRV_CTL_MAX small control messages, the pacer
 * (buffer_frames + 1 encoded frames), one frame's encoding and its send copy, lws's own buffer for
 * a partially written message (one message) and the kernel's send buffer (SO_SNDBUF, set small).
 * See server/README.md for the numbers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/clock.h"
#include "server/internal.h"
#include "server/log.h"

static void remove_from_list(srv_conn *c) {
    srv_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

srv_conn *conn_create(srv_server *s, struct lws *wsi) {
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->srv = s;
    c->wsi = wsi;
    c->id = ++s->next_conn_id;
    c->slot = -1;
    c->scene = -1;
    uint64_t now = srv_now_ns();
    c->opened_ns = c->last_activity_ns = now;
    lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
    srv_rate_init(&c->rate, s->cfg.max_input_hz);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    srv_metrics_add(s->metrics, SRV_C_CONNECTIONS, 1);
    SRV_LOG(SRV_LOG_INFO, "ws_open", SRV_KU("conn", c->id), SRV_KS("peer", c->peer),
            SRV_KI("connections", s->nconns));
    return c;
}

static void free_conn(srv_conn *c) {
    free(c->rx);
    for (int i = 0; i < SRV_CTL_MAX; i++) proto_buf_free(&c->ctl[i]);
    proto_buf_free(&c->enc);
    free(c->tx);
    free(c->upload);
    if (c->pacer_init) srv_pacer_free(&c->pacer);
    srv_link_unref(c->link);
    free(c);
}

void conn_maybe_free(srv_conn *c) {
    if (c->wsi || c->work_pending) return;
    if (c->timer_init && !c->timer_closed) return;
    free_conn(c);
}

static void on_timer_closed(uv_handle_t *h) {
    srv_conn *c = h->data;
    c->timer_closed = 1;
    conn_maybe_free(c);
}

void conn_on_closed(srv_conn *c) {
    srv_server *s = c->srv;
    c->wsi = NULL; /* nothing more is written to it */
    session_end(c, "connection closed");
    remove_from_list(c);
    s->nconns--;
    SRV_LOG(SRV_LOG_INFO, "ws_close", SRV_KU("conn", c->id), SRV_KS("peer", c->peer),
            SRV_KD("seconds", srv_ns_to_s(srv_now_ns() - c->opened_ns)),
            SRV_KI("connections", s->nconns));
    if (c->timer_init && !c->timer_closed && !uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    conn_maybe_free(c);
}

void conn_request_write(srv_conn *c) {
    if (c->wsi) lws_callback_on_writable(c->wsi);
}

int conn_send(srv_conn *c, const proto_msg *m) {
    if (!c->wsi || c->closing) return -1;
    if (c->ctl_count == SRV_CTL_MAX) {
        /* Not reading its control messages either: nothing more can be told to this client. */
        SRV_LOG(SRV_LOG_WARN, "ws_ctl_overflow", SRV_KU("conn", c->id), SRV_KS("peer", c->peer));
        c->closing = 1;
        c->closing_ns = srv_now_ns();
        c->close_code = 4000 + PROTO_ERR_SLOW_CONSUMER;
        snprintf(c->close_reason, sizeof c->close_reason, "slow_consumer");
        conn_kill(c);
        return -1;
    }
    proto_buf *b = &c->ctl[(c->ctl_head + c->ctl_count) % SRV_CTL_MAX];
    int rc = proto_encode(m, b);
    if (rc) {
        SRV_LOG(SRV_LOG_ERROR, "encode_failed", SRV_KU("conn", c->id),
                SRV_KS("type", proto_type_name(m->type)), SRV_KI("code", rc));
        return -1;
    }
    c->ctl_count++;
    conn_request_write(c);
    return 0;
}

static void verror(srv_conn *c, int code, int fatal, const char *fmt, va_list ap) {
    if (!c->wsi || c->closing) return;
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_ERROR;
    m.u.error.code = (uint32_t)code;
    m.u.error.fatal = (uint8_t)(fatal ? 1 : 0);
    vsnprintf(m.u.error.message, sizeof m.u.error.message, fmt, ap);
    srv_metrics_error(c->srv->metrics, code);
    SRV_LOG(fatal ? SRV_LOG_INFO : SRV_LOG_DEBUG, "error_sent", SRV_KU("conn", c->id),
            SRV_KU("session", c->session), SRV_KS("code", proto_error_name(code)),
            SRV_KB("fatal", fatal), SRV_KS("message", m.u.error.message));
    conn_send(c, &m);
    if (fatal && !c->closing) {
        /* The session ends now (its slot and engine time go to others); the socket closes once
         * the error is written, or by the close timeout. */
        char why[64];
        snprintf(why, sizeof why, "error %s", proto_error_name(code));
        session_end(c, why);
        conn_close(c, proto_close_code(code), proto_error_name(code));
    }
}

void conn_error(srv_conn *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(c, code, proto_error_fatal(code), fmt, ap);
    va_end(ap);
}

void conn_error_as(srv_conn *c, int code, int fatal, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(c, code, fatal, fmt, ap);
    va_end(ap);
}

/* lws 4.1 on a foreign libuv loop re-arms its timer for wsi timeouts only when it services one of
 * its own events: a timeout set from one of our callbacks could wait for unrelated traffic (or
 * forever, on a connection that stalls). lws_cancel_service wakes its event pipe, which re-arms it.
 */
static void set_timeout(srv_conn *c, int secs) {
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, secs);
    lws_cancel_service(c->srv->ctx);
}

void conn_kill(srv_conn *c) {
    if (c->wsi) set_timeout(c, LWS_TO_KILL_ASYNC);
}

void conn_close(srv_conn *c, int code, const char *reason) {
    if (!c->wsi || c->closing) return;
    c->closing = 1;
    c->closing_ns = srv_now_ns();
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    /* A client that does not read what is queued is closed anyway, 2 s later. */
    set_timeout(c, 2);
    conn_request_write(c);
}

static int grow(uint8_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    uint8_t *q = realloc(*p, n);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

int conn_on_receive(srv_conn *c, const uint8_t *in, size_t len) {
    srv_server *s = c->srv;
    struct lws *wsi = c->wsi;
    srv_metrics_add(s->metrics, SRV_C_BYTES_RECEIVED, len);
    if (lws_is_first_fragment(wsi)) {
        c->rx_len = 0;
        c->rx_skip = 0;
        if (!lws_frame_is_binary(wsi)) {
            conn_error(c, PROTO_ERR_BAD_MESSAGE,
                       "text frames are not part of the protocol: send msgpack in binary frames");
            c->rx_skip = 1;
        }
    }
    if (!c->rx_skip) {
        size_t limit = s->max_msg; /* welcome's max_msg: every message, a join with an image too */
        size_t total = c->rx_len + len + lws_remaining_packet_payload(wsi);
        if (total > limit) {
            conn_error(c, PROTO_ERR_TOO_LARGE,
                       "message of %zu bytes or more is over the limit of %zu bytes", total, limit);
            c->rx_skip = 1;
        } else if (grow(&c->rx, &c->rx_cap, c->rx_len + len)) {
            conn_error(c, PROTO_ERR_INTERNAL, "out of memory");
            c->rx_skip = 1;
        } else {
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += len;
        }
    }
    if (!lws_is_final_fragment(wsi)) return 0;
    if (c->rx_skip) {
        c->rx_skip = 0;
        return 0;
    }
    srv_metrics_add(s->metrics, SRV_C_MESSAGES_RECEIVED, 1);
    proto_msg m;
    char err[PROTO_MAX_TEXT];
    int rc = proto_decode(c->rx, c->rx_len, s->max_upload, &m, err, sizeof err);
    /* Pings keep the round trip measured but are not play: a tab left open without input must
     * still reach the idle timeout (PROTOCOL.md "Idle timeout"). */
    if (rc < 0 || m.type != PROTO_PING) c->last_activity_ns = srv_now_ns();
    if (rc < 0) /* errors answering a hello (the first message) are always fatal */
        conn_error_as(c, -rc, c->state == CONN_OPEN || proto_error_fatal(-rc), "%s", err);
    else
        session_on_message(c, &m, c->rx_len);
    c->rx_len = 0;
    /* An upload-sized buffer is not kept once its message is handled. */
    if (c->rx_cap > SRV_RX_KEEP) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

static int write_msg(srv_conn *c, const uint8_t *p, size_t n) {
    if (grow(&c->tx, &c->tx_cap, LWS_PRE + n)) return -1;
    memcpy(c->tx + LWS_PRE, p, n);
    int w = lws_write(c->wsi, c->tx + LWS_PRE, n, LWS_WRITE_BINARY);
    if (w < 0) return -1;
    srv_metrics_add(c->srv->metrics, SRV_C_BYTES_SENT, n);
    return 0;
}

int conn_on_writeable(srv_conn *c) {
    if (c->ctl_count) {
        proto_buf *b = &c->ctl[c->ctl_head];
        int rc = write_msg(c, b->data, b->len);
        c->ctl_head = (c->ctl_head + 1) % SRV_CTL_MAX;
        c->ctl_count--;
        if (rc) return -1;
    } else if (c->closing) {
        /* Start lws's close handshake from here instead of returning -1: Debian's lws 4.1.6 is
         * built with _DEBUG, which on the libuv event loop closes a wsi a second time right after
         * a callback returns -1 ("uv repeat test" in lws_service_fd_tsi), killing the socket
         * before the close frame goes out (the client would see 1006, not our code). A
         * synchronous close from inside the callback only moves the wsi to "waiting to send
         * close"; lws then sends the frame with this reason and waits for the peer's answer.
         * Once only: lws asks for writable callbacks while it waits for that answer, and a
         * second "kill" there would cut the socket under the answer arriving, which lws 4.1 then
         * reads on a dead wsi ("lws_read_h1: Unhandled state LRS_DEAD_SOCKET" in the log). */
        if (c->close_started) return 0;
        c->close_started = 1;
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        return 0;
    } else if (c->pacer_init && srv_pacer_outbox(&c->pacer)) {
        srv_frame *f = srv_pacer_outbox(&c->pacer);
        proto_msg m;
        memset(&m, 0, sizeof m);
        m.type = PROTO_FRAME;
        m.u.frame.frame = f->frame;
        m.u.frame.block = f->block;
        m.u.frame.input_seq = f->input_seq;
        m.u.frame.input_client_ms = f->input_client_ms;
        m.u.frame.server_ms = srv_mono_ms();
        m.u.frame.timings = f->timings;
        m.u.frame.jpeg.data = f->data;
        m.u.frame.jpeg.len = f->len;
        if (proto_encode(&m, &c->enc)) {
            SRV_LOG(SRV_LOG_ERROR, "encode_failed", SRV_KU("conn", c->id), SRV_KS("type", "frame"));
            return -1;
        }
        if (write_msg(c, c->enc.data, c->enc.len)) return -1;
        srv_pacer_sent(&c->pacer);
        session_frame_sent(c, f, c->enc.len, srv_now_ns());
    }
    if (c->ctl_count || (c->closing && !c->close_started) ||
        (c->pacer_init && srv_pacer_outbox(&c->pacer)))
        conn_request_write(c);
    return 0;
}

void conn_publish_playback(srv_conn *c) {
    if (c->link && c->pacer_init)
        srv_link_publish(c->link, c->pacer.consumed, c->pacer.next_due_ns);
}

static void on_tick(uv_timer_t *t) {
    srv_conn *c = t->data;
    if (!c->pacer_init || !c->wsi) return;
    uint64_t now = srv_now_ns();
    int was_started = c->pacer.started;
    int r = srv_pacer_tick(&c->pacer, now);
    if (r & SRV_TICK_RELEASED) conn_request_write(c);
    if (r & SRV_TICK_DROPPED) srv_metrics_add(c->srv->metrics, SRV_C_FRAMES_DROPPED, 1);
    if ((r & SRV_TICK_UNDERRUN) && was_started && c->state == CONN_PLAYING)
        srv_metrics_add(c->srv->metrics, SRV_C_UNDERRUNS, 1);
    conn_publish_playback(c);
    uint64_t stall = srv_pacer_stall_ns(&c->pacer, now);
    if ((double)stall > c->srv->cfg.slow_client_s * 1e9) {
        conn_error(c, PROTO_ERR_SLOW_CONSUMER, "a frame waited %.1f s for the client to read",
                   srv_ns_to_s(stall));
        return;
    }
    conn_schedule_tick(c);
}

void conn_schedule_tick(srv_conn *c) {
    if (!c->pacer_init || !c->wsi) return;
    if (!c->timer_init) {
        uv_timer_init(c->srv->loop, &c->timer);
        c->timer.data = c;
        c->timer_init = 1;
    }
    uint64_t due = c->pacer.next_due_ns;
    if (!due) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = srv_now_ns();
    /* libuv timers have millisecond resolution; round up so a tick never fires early, and let
     * the pacer's absolute schedule absorb the rounding (it does not accumulate). */
    uint64_t ms = due > now ? (due - now + SRV_NS_PER_MS - 1) / SRV_NS_PER_MS : 0;
    uv_update_time(c->srv->loop);
    uv_timer_start(&c->timer, on_tick, ms, 0);
}
