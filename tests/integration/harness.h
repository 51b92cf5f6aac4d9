/* Test harness of the wmserve integration tests: the real server as a child process (started on a
 * free loopback port, its log in a file that the test echoes and searches, its memory read from
 * /proc), blocking HTTP GETs with a timeout for /healthz and /metrics, a raw websocket client on a
 * plain socket (for what libwebsockets will not do on purpose: a tiny receive buffer and a client
 * that never reads, fragments, lying length headers, dropping the TCP connection mid-frame), and
 * image helpers (a JPEG SOF parser written from the JPEG spec, full decoding through TurboJPEG,
 * PNG/JPEG start images made in memory, "decompression bomb" headers).
 *
 * Ownership: h_server_start/h_server_stop pair up (stop kills and reaps the child and removes its
 * folder); h_rawws_connect/h_rawws_close; buffers returned by h_make_png, h_make_jpeg and
 * h_read_file are the caller's (free()). */
#ifndef WM_TESTS_INTEGRATION_HARNESS_H
#define WM_TESTS_INTEGRATION_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/proto.h"

double h_now(void); /* monotonic seconds */

/* The server process ------------------------------------------------------------------------------ */

typedef struct h_server {
    pid_t pid;          /* 0 once reaped */
    int port;           /* from the "listening" log line */
    int exit_status;    /* waitpid status once reaped */
    char dir[128];      /* private temporary folder (log file) */
    char log_path[192];
    int log_fd;
    int lws_errors;     /* after h_server_stop: libwebsockets error lines in its log */
    char line[8192];
    size_t line_len;
    int lines;
} h_server;

/* Starts `bin` with --port 0 --bind 127.0.0.1 --model synthetic:tiny --log-level info followed by
 * `args` (NULL-terminated; later flags win) and waits up to 20 s for its "listening" line. The child
 * dies with the test process (PR_SET_PDEATHSIG). 0 or -1. */
int h_server_start(h_server *s, const char *bin, const char *const *args);
/* Echoes the new log lines ("  [server] ..."). Call often: it also finds the port. */
void h_server_pump_log(h_server *s);
/* 1 while the child runs (reaps it when it has exited). */
int h_server_alive(h_server *s);
/* Waits up to timeout_s for the child to exit; 1 with *status, else 0. */
int h_server_wait_exit(h_server *s, double timeout_s, int *status);
/* SIGTERM, up to 10 s, then SIGKILL; reaps; removes the folder. Safe to call twice. */
void h_server_stop(h_server *s);
/* A "Vm...:" field of /proc/PID/status in KiB (VmRSS, VmHWM), or -1. */
long h_server_mem_kb(const h_server *s, const char *field);
/* Number of log lines so far containing `needle` (reads the whole log file). */
int h_server_log_count(const h_server *s, const char *needle);

/* HTTP --------------------------------------------------------------------------------------------- */

/* GET path over HTTP/1.0; the body (NUL-terminated, truncated to bodylen - 1) and the status, or -1
 * on a connection failure or timeout. */
int h_http_get(int port, const char *path, char *body, size_t bodylen, double timeout_s);
/* The value of the Prometheus sample whose name-and-labels is exactly `key` (e.g.
 * `wmserve_sessions_active`, `wmserve_errors_total{code="too_large"}`), or NAN. */
double h_metric(const char *body, const char *key);
/* GET /metrics and read one sample; NAN on failure. */
double h_server_metric(const h_server *s, const char *key);

/* Raw websocket client -------------------------------------------------------------------------- */

typedef struct h_rawws {
    int fd;
    uint8_t *in;        /* bytes read, not yet parsed */
    size_t in_len, in_cap;
    uint8_t *msg;       /* message being reassembled from fragments */
    size_t msg_len, msg_cap;
    int msg_opcode;
    uint64_t bytes_read;
    int eof;            /* the peer closed or reset the TCP connection */
    int close_code;     /* from a close frame (0 = none seen) */
} h_rawws;

/* Connects to ws://127.0.0.1:port/ws and completes the handshake (checking Sec-WebSocket-Accept).
 * rcvbuf > 0 sets SO_RCVBUF before connecting (a reader whose window stays tiny). */
int h_rawws_connect(h_rawws *r, int port, int rcvbuf, char *err, size_t errlen);
/* The same with extra request header lines (each ending in \r\n; Host is 127.0.0.1:port), and
 * the HTTP status of the answer in *status (101, 403, ...; 0 when none came). On failure the
 * socket may still be open: h_rawws_abort it. */
int h_rawws_connect_ex(h_rawws *r, int port, int rcvbuf, const char *headers, int *status,
                       char *err, size_t errlen);
/* Sends one masked frame (opcode 1 text, 2 binary, 0 continuation, 8 close). With `declared` >
 * n the header claims `declared` payload bytes and only n are sent (a lying length). Blocks up to
 * 5 s for the socket; 0, or -1 (peer gone, timeout). */
int h_rawws_send_frame(h_rawws *r, int opcode, int fin, const uint8_t *p, size_t n, uint64_t declared);
int h_rawws_send_msg(h_rawws *r, const proto_msg *m);
/* Waits up to timeout_ms for one complete message: 1 with *opcode (1, 2 or 8 close) and the payload
 * (valid until the next call), 0 when none came, -1 at EOF/reset (r->eof set). */
int h_rawws_recv(h_rawws *r, int timeout_ms, int *opcode, const uint8_t **payload, size_t *n);
/* Reads and discards whatever is available without blocking; -1 once the peer is gone. */
int h_rawws_drain(h_rawws *r);
/* Drops the TCP connection without a websocket close frame: rst = 1 sends a RST (SO_LINGER 0),
 * else a plain FIN. Frees the buffers. */
void h_rawws_abort(h_rawws *r, int rst);

/* Images ------------------------------------------------------------------------------------------ */

/* Walks the JPEG markers from SOI to the first SOF (by hand, ITU T.81 B.2) and returns its
 * dimensions, component count and marker (0xC0 = baseline). Also requires the stream to end in EOI.
 * 0, or -1 with err. */
int h_jpeg_sof(const uint8_t *p, size_t n, int *w, int *h, int *ncomp, int *marker, char *err,
               size_t errlen);
/* Fully decodes with TurboJPEG (RGB); 0 with the size, or -1 with err. */
int h_jpeg_decode(const uint8_t *p, size_t n, int *w, int *h, char *err, size_t errlen);
/* A w x h RGB test picture (gradients, a disc) as PNG (libpng) or JPEG (TurboJPEG, quality 90). */
int h_make_png(int w, int h, uint8_t **out, size_t *n);
int h_make_jpeg(int w, int h, uint8_t **out, size_t *n);
/* Rewrites the declared size of a PNG (IHDR, CRC recomputed) or JPEG (first SOF) in place. */
int h_png_set_size(uint8_t *png, size_t n, uint32_t w, uint32_t h);
int h_jpeg_set_size(uint8_t *jpg, size_t n, uint16_t w, uint16_t h);
uint8_t *h_read_file(const char *path, size_t *n);

#endif
