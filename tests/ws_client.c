/* The websocket client: see ws_client.h. */
#include "tests/ws_client.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct out_msg {
    uint8_t *data; /* LWS_PRE + payload */
    size_t len;
    int binary;
} out_msg;

struct wsc_conn {
    wsc_ctx *ctx;
    struct lws *wsi;
    wsc_handlers h;
    void *user;
    int open, closing, close_code, peer_code;
    char peer_reason[128];
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int rx_skip;
    out_msg q[WSC_MAX_QUEUE];
    int q_head, q_count;
    proto_buf enc;
    uint64_t bytes_in;
    struct wsc_conn *next, *prev;
};

struct wsc_ctx {
    struct lws_context *ctx;
    wsc_conn *conns;
    lws_sorted_usec_list_t sul;
    wsc_conn *connecting; /* inside lws_client_connect_via_info */
    int connect_failed;
};

static void unlink_conn(wsc_conn *c) {
    if (c->prev)
        c->prev->next = c->next;
    else if (c->ctx->conns == c)
        c->ctx->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void free_conn(wsc_conn *c) {
    for (int i = 0; i < c->q_count; i++) free(c->q[(c->q_head + i) % WSC_MAX_QUEUE].data);
    free(c->rx);
    proto_buf_free(&c->enc);
    free(c);
}

static void finish(wsc_conn *c, int code, const char *reason) {
    unlink_conn(c);
    c->wsi = NULL;
    if (c == c->ctx->connecting) { /* failed inside wsc_connect: it returns NULL, no on_close */
        c->ctx->connect_failed = 1;
        free_conn(c);
        return;
    }
    if (c->h.on_close) c->h.on_close(c, code, reason ? reason : "", c->user);
    free_conn(c);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    wsc_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[256];
        snprintf(why, sizeof why, "%s", in ? (const char *)in : "connection failed");
        if (c) finish(c, 0, why);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!c) return -1;
        c->open = 1;
        if (c->h.on_open) c->h.on_open(c, c->user);
        if (c->q_count || c->closing) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!c) return -1;
        c->bytes_in += len;
        if (lws_is_first_fragment(wsi)) {
            c->rx_len = 0;
            c->rx_skip = 0;
        }
        if (!c->rx_skip) {
            size_t need = c->rx_len + len;
            if (need > WSC_MAX_MESSAGE) {
                if (c->h.on_bad_message) c->h.on_bad_message(c, "message over 16 MiB", c->user);
                c->rx_skip = 1;
            } else {
                if (need > c->rx_cap) {
                    size_t cap = c->rx_cap ? c->rx_cap : 4096;
                    while (cap < need) cap *= 2;
                    uint8_t *p = realloc(c->rx, cap);
                    if (!p) return -1;
                    c->rx = p;
                    c->rx_cap = cap;
                }
                memcpy(c->rx + c->rx_len, in, len);
                c->rx_len += len;
            }
        }
        if (lws_is_final_fragment(wsi) && !c->rx_skip) {
            proto_msg m;
            char err[PROTO_MAX_TEXT];
            if (!lws_frame_is_binary(wsi)) {
                if (c->h.on_bad_message) c->h.on_bad_message(c, "text frame", c->user);
            } else if (proto_decode(c->rx, c->rx_len, WSC_MAX_MESSAGE, &m, err, sizeof err) < 0) {
                if (c->h.on_bad_message) c->h.on_bad_message(c, err, c->user);
            } else if (c->h.on_message) {
                c->h.on_message(c, &m, c->rx, c->rx_len, c->user);
            }
            c->rx_len = 0;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c) return -1;
        if (c->q_count) {
            out_msg *o = &c->q[c->q_head];
            int n = lws_write(wsi, o->data + LWS_PRE, o->len,
                              o->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
            free(o->data);
            o->data = NULL;
            c->q_head = (c->q_head + 1) % WSC_MAX_QUEUE;
            c->q_count--;
            if (n < 0) return -1;
        } else if (c->closing) {
            static const char bye[] = "bye";
            lws_close_reason(wsi, (enum lws_close_status)c->close_code, (unsigned char *)bye, 3);
            return -1;
        }
        if (c->q_count || c->closing) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && in && len >= 2) {
            const uint8_t *b = in;
            c->peer_code = (b[0] << 8) | b[1];
            size_t rl = len - 2 < sizeof c->peer_reason - 1 ? len - 2 : sizeof c->peer_reason - 1;
            memcpy(c->peer_reason, b + 2, rl);
            c->peer_reason[rl] = '\0';
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c)
            finish(c,
                   c->peer_code ? c->peer_code
                   : c->closing ? c->close_code
                                : 1006,
                   c->peer_reason);
        return 0;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"wmserve-client", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int wsc_ctx_create(wsc_ctx **out, char *err, size_t errlen) {
    *out = NULL;
    wsc_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = x;
    /* Thousands of connections for the load tester: lws sizes its tables from the fd limit. */
    x->ctx = lws_create_context(&info);
    if (!x->ctx) {
        snprintf(err, errlen, "lws_create_context failed");
        free(x);
        return -1;
    }
    *out = x;
    return 0;
}

void wsc_ctx_destroy(wsc_ctx *x) {
    if (!x) return;
    lws_sul_cancel(&x->sul);
    lws_context_destroy(x->ctx); /* closes what is left: on_close for each */
    while (x->conns) finish(x->conns, 1006, "client context destroyed");
    free(x);
}

static void sul_noop(lws_sorted_usec_list_t *sul) {
    (void)sul;
}

void wsc_service(wsc_ctx *x, int timeout_ms) {
    /* lws 4.1's poll loop waits until its next scheduled event: schedule one at the timeout. */
    lws_sul_schedule(x->ctx, 0, &x->sul, sul_noop, (lws_usec_t)timeout_ms * LWS_US_PER_MS);
    lws_service(x->ctx, 0);
    lws_sul_cancel(&x->sul);
}

wsc_conn *wsc_connect(wsc_ctx *x, const char *host, int port, const char *path,
                      const wsc_handlers *h, void *user) {
    wsc_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ctx = x;
    c->h = *h;
    c->user = user;
    c->next = x->conns;
    if (x->conns) x->conns->prev = c;
    x->conns = c;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = x->ctx;
    ci.address = host;
    ci.port = port;
    ci.path = path;
    ci.host = host;
    ci.origin = host;
    ci.local_protocol_name = "wmserve-client";
    ci.userdata = c;
    ci.pwsi = &c->wsi;
    x->connecting = c;
    x->connect_failed = 0;
    struct lws *wsi = lws_client_connect_via_info(&ci);
    x->connecting = NULL;
    if (x->connect_failed) return NULL; /* CONNECTION_ERROR already freed c */
    if (!wsi) {
        unlink_conn(c);
        free_conn(c);
        return NULL;
    }
    return c;
}

static int enqueue(wsc_conn *c, const uint8_t *p, size_t n, int binary) {
    if (!c->wsi || c->closing || c->q_count == WSC_MAX_QUEUE) return -1;
    out_msg *o = &c->q[(c->q_head + c->q_count) % WSC_MAX_QUEUE];
    o->data = malloc(LWS_PRE + n + 1);
    if (!o->data) return -1;
    memcpy(o->data + LWS_PRE, p, n);
    o->len = n;
    o->binary = binary;
    c->q_count++;
    if (c->open) lws_callback_on_writable(c->wsi);
    return 0;
}

int wsc_send(wsc_conn *c, const proto_msg *m) {
    if (proto_encode(m, &c->enc)) return -1;
    return enqueue(c, c->enc.data, c->enc.len, 1);
}

int wsc_send_raw(wsc_conn *c, const uint8_t *p, size_t n, int binary) {
    return enqueue(c, p, n, binary);
}

void wsc_close(wsc_conn *c, int code) {
    if (!c->wsi || c->closing) return;
    c->closing = 1;
    c->close_code = code;
    if (c->open) lws_callback_on_writable(c->wsi);
}

void wsc_pause_reading(wsc_conn *c, int paused) {
    if (c->wsi) lws_rx_flow_control(c->wsi, paused ? 0 : 1);
}

int wsc_is_open(const wsc_conn *c) {
    return c->open && c->wsi && !c->closing;
}

uint64_t wsc_bytes_received(const wsc_conn *c) {
    return c->bytes_in;
}

int wsc_set_rcvbuf(wsc_conn *c, int bytes) {
    if (!c->wsi || !c->open) return -1;
    int fd = (int)lws_get_socket_fd(c->wsi);
    if (fd < 0) return -1;
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) ? -1 : 0;
}
