/* The loop thread's shared state: the server object and the per-connection object, seen by
 * server.c (process, lws context, signals, shutdown), conn.c (websocket transport: receive,
 * send queue, pacing timer), session.c (the play protocol: hello, join, queue, input, reset,
 * leave) and http.c (static files, /healthz, /metrics). Not a public API: nothing outside server/
 * includes it. Everything here is touched by the loop thread only. */
#ifndef WM_SERVER_INTERNAL_H
#define WM_SERVER_INTERNAL_H

#include <libwebsockets.h>
#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"
#include "proto/proto.h"
#include "server/admission.h"
#include "server/config.h"
#include "server/engine_worker.h"
#include "server/input.h"
#include "server/link.h"
#include "server/metrics.h"
#include "server/pacing.h"
#include "server/scenes.h"
#include "server/token.h"

/* Control messages (everything but frames) waiting to be written, per connection. A client that
 * lets more pile up than this is not reading and is disconnected. */
#define SRV_CTL_MAX 32
/* max_msg = max_upload + this (PROTOCOL.md: max_msg >= max_upload + 1024). */
#define SRV_JOIN_OVERHEAD 4096
/* A receive buffer bigger than this (an upload) is freed once its message is handled. */
#define SRV_RX_KEEP 65536
/* Block times kept for the stats percentiles (server-wide: one engine). */
#define SRV_BLOCK_SAMPLES 64

typedef struct srv_server srv_server;

typedef enum conn_state {
    CONN_OPEN,      /* connected, no hello yet */
    CONN_HELLO,     /* welcomed (or left a session); may join */
    CONN_PREPARING, /* an uploaded start image is being decoded off the loop */
    CONN_QUEUED,    /* waiting for a slot */
    CONN_STARTING,  /* has a slot; the engine session is being created */
    CONN_PLAYING,   /* frames flow */
} conn_state;

typedef struct srv_conn {
    srv_server *srv;
    struct lws *wsi; /* NULL once lws has closed the connection */
    struct srv_conn *prev, *next;
    uint64_t id; /* connection number (logs) */
    char peer[64];
    char client[64]; /* the address per-address limits count: peer, or X-Forwarded-For's */
    conn_state state;
    uint64_t opened_ns, last_activity_ns;

    /* receive: one message reassembled from its fragments, bounded */
    uint8_t *rx;
    size_t rx_len, rx_cap;
    int rx_skip; /* the rest of an oversize or text message is being ignored */
    srv_rate rate;
    uint64_t rate_error_ns;

    /* send */
    proto_buf ctl[SRV_CTL_MAX];
    int ctl_head, ctl_count;
    proto_buf enc; /* frame encoding (reused) */
    uint8_t *tx;   /* LWS_PRE + message (reused) */
    size_t tx_cap;
    int closing;       /* after the queued control messages: close with close_code */
    int close_started; /* the close frame is handed to lws: nothing more to write */
    uint64_t closing_ns;
    int close_code;
    char close_reason[96];

    /* the play session */
    uint64_t session; /* 0 when none */
    int slot;
    srv_link *link;
    uint32_t generation;
    uint64_t seed;
    int scene;        /* start image: scene index, or -1 with upload planes */
    float *upload;    /* prepared uploaded image [3][h][w] while queued; owned */
    int work_pending; /* an upload decode is running on the threadpool */
    srv_pacer pacer;
    int pacer_init;
    uv_timer_t timer; /* pacing tick */
    int timer_init, timer_closed;
    uint64_t joined_ns;
    uint32_t last_input_seq;   /* newest input seq received (continues across resets) */
    uint32_t last_seen_seq;    /* newest input seq seen in a sent frame (latency metric) */
    uint64_t block_gap_ns;     /* decaying max of due -> frames here for its blocks (prebuffer) */
    uint64_t frames_sent_mark; /* for stats fps */
    uint64_t stats_mark_ns;
    /* queue updates: at most one a second (PROTOCOL.md "Queue") */
    uint32_t queue_pos_sent, queue_len_sent;
    uint64_t queue_sent_ns;
} srv_conn;

struct srv_server {
    srv_config cfg;
    uv_loop_t *loop;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    int port;                             /* actual listening port */
    uint32_t max_upload, max_msg;         /* announced in welcome and enforced */
    char web_root[4096];                  /* realpath of --web, "" when missing */
    uint8_t token_secret[SRV_SECRET_MAX]; /* --token-secret's bytes */
    size_t token_secret_len;              /* 0: signed tokens are not accepted */

    eng_model *model; /* until handed to the worker */
    eng_config mcfg;  /* copy of the model's config */
    char model_desc[512];
    int width, height, has_encoders;
    int nkeys;
    char keys[PROTO_MAX_LIST][PROTO_MAX_NAME];
    srv_scenes *scenes;
    srv_worker *worker;
    srv_admission *adm;
    srv_metrics *metrics;

    srv_conn *conns; /* all websocket connections */
    int nconns, max_conns;
    uint64_t next_conn_id, next_session_id;
    int uploads_in_flight;             /* start images being decoded on the libuv threadpool */
    srv_conn **slot_conn;              /* [max_sessions]: the connection holding each slot */
    int measured_slots;                /* --max-sessions 0: admission follows the block time */
    int warned_capacity;               /* players at the last over_capacity warning */
    float block_ms[SRV_BLOCK_SAMPLES]; /* recent blk_ms, for stats p50/p99 */
    int block_ms_n, block_ms_i;

    uv_signal_t sigint, sigterm;
    uv_timer_t housekeeping;
    uv_timer_t drain_timer;
    int draining, worker_exited, signals;
    uint64_t drain_started_ns, started_ns;
    int exit_code;
};

/* conn.c */
srv_conn *conn_create(srv_server *s, struct lws *wsi);
void conn_on_closed(srv_conn *c);
int conn_on_receive(srv_conn *c, const uint8_t *in, size_t len);
int conn_on_writeable(srv_conn *c);
/* Queues a control message; 0, or -1 when the queue is full (the client is then disconnected). */
int conn_send(srv_conn *c, const proto_msg *m);
/* Sends an error; fatal ones (proto_error_fatal) close the connection after it is written. */
void conn_error(srv_conn *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with the fatal flag given (errors answering a hello are always fatal). */
void conn_error_as(srv_conn *c, int code, int fatal, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Closes with `code` once the queued control messages are written (leave: 1000); a client that
 * does not take them is cut off 2 s later. */
void conn_close(srv_conn *c, int code, const char *reason);
/* Drops the connection now, without a close handshake. */
void conn_kill(srv_conn *c);
void conn_request_write(srv_conn *c);
/* Schedules the pacing timer for the pacer's next tick (or stops it). */
void conn_schedule_tick(srv_conn *c);
void conn_publish_playback(srv_conn *c);
/* Frees the connection once lws and every handle and job let go of it. */
void conn_maybe_free(srv_conn *c);

/* session.c */
void session_on_message(srv_conn *c, const proto_msg *m, size_t raw_len);
void session_on_worker_event(srv_server *s, srv_worker_event *ev);
/* Ends the connection's session or queue place (leave, close, fatal error). */
void session_end(srv_conn *c, const char *why);
/* Once a second: stats, idle timeouts, stalled readers. */
void session_housekeeping(srv_conn *c, uint64_t now_ns);
void session_promote_queue(srv_server *s);
void session_frame_sent(srv_conn *c, const srv_frame *f, size_t bytes, uint64_t now_ns);

/* http.c: answers one GET; returns the lws callback's return value. */
int http_on_request(srv_server *s, struct lws *wsi, const char *path, size_t len);

/* server.c */
void server_update_gauges(srv_server *s);

#endif
