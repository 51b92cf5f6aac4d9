/* A websocket client for wmserve's protocol, on libwebsockets' own poll loop: any number of
 * connections on one context, all driven from one thread by wsc_service. The smoke test uses it and
 * the load tester (wmload) builds on it. Messages are built and parsed by proto/ only: wsc_send
 * encodes a proto_msg, on_message receives decoded ones. wsc_send_raw exists to send malformed
 * input on purpose (tests of the server's error handling).
 *
 * Ownership: the context owns its connections. A connection is freed right after its on_close
 * handler returns (also when the connection attempt fails: on_close then gets code 0). Destroying
 * the context closes what is left, calling on_close for each. */
#ifndef WM_TESTS_WS_CLIENT_H
#define WM_TESTS_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

typedef struct wsc_ctx wsc_ctx;
typedef struct wsc_conn wsc_conn;

typedef struct wsc_handlers {
    void (*on_open)(wsc_conn *c, void *user);
    /* raw/len: the message's bytes, valid during the call (m's byte fields point into them). */
    void (*on_message)(wsc_conn *c, const proto_msg *m, const uint8_t *raw, size_t len, void *user);
    /* A message the codec refused (err names the problem). */
    void (*on_bad_message)(wsc_conn *c, const char *err, void *user);
    /* code: the close code the server sent (1000, 1001, 4000 + error code, ...), 1006 when the
     * connection dropped without a close frame, 0 when it never opened (reason says why). */
    void (*on_close)(wsc_conn *c, int code, const char *reason, void *user);
} wsc_handlers;

/* Largest message accepted from the server (a frame); larger ones close the connection. */
#define WSC_MAX_MESSAGE (16u << 20)
/* Messages queued for sending per connection; wsc_send fails beyond this. */
#define WSC_MAX_QUEUE 64

int wsc_ctx_create(wsc_ctx **out, char *err, size_t errlen);
void wsc_ctx_destroy(wsc_ctx *x);
/* Services the connections for at most timeout_ms (returns sooner after an event). */
void wsc_service(wsc_ctx *x, int timeout_ms);

/* Starts connecting to ws://host:port/path. NULL on immediate failure (no on_close then). */
wsc_conn *wsc_connect(wsc_ctx *x, const char *host, int port, const char *path,
                      const wsc_handlers *h, void *user);
int wsc_send(wsc_conn *c, const proto_msg *m);
int wsc_send_raw(wsc_conn *c, const uint8_t *p, size_t n, int binary);
/* Closes with `code` (1000: normal) after what is queued has been sent. */
void wsc_close(wsc_conn *c, int code);
/* Stops (paused = 1) or resumes reading from the socket: simulates a slow reader. */
void wsc_pause_reading(wsc_conn *c, int paused);
int wsc_is_open(const wsc_conn *c);
/* Bytes received (websocket payload) on this connection so far. */
uint64_t wsc_bytes_received(const wsc_conn *c);
/* Sets the socket's kernel receive buffer (SO_RCVBUF) of an open connection, so that a reader
 * paused with wsc_pause_reading pushes back on the server after about `bytes` instead of the
 * kernel's default of a few hundred KiB (Linux doubles the value and enforces a minimum). For the
 * load tester's slow readers. 0, or -1 when the connection is not open or the kernel refuses. */
int wsc_set_rcvbuf(wsc_conn *c, int bytes);

#endif
