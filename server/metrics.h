/* Process metrics: counters, gauges and fixed-bucket histograms, rendered in the Prometheus text
 * exposition format 0.0.4 for GET /metrics. Owned and updated by the loop thread only (the engine
 * worker's timings reach it inside block results), so nothing here locks. */
#ifndef WM_SERVER_METRICS_H
#define WM_SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "server/buf.h"

typedef enum srv_counter {
    SRV_C_CONNECTIONS,      /* websocket connections accepted */
    SRV_C_HTTP_REQUESTS,    /* HTTP requests answered (static, /metrics, /healthz) */
    SRV_C_SESSIONS_STARTED, /* sessions that got an engine session */
    SRV_C_SESSIONS_ENDED,
    SRV_C_BLOCKS, /* blocks generated and delivered to the loop */
    SRV_C_FRAMES_SENT,
    SRV_C_FRAMES_DROPPED, /* stale frames dropped for slow clients (ring full or outbox replaced) */
    SRV_C_UNDERRUNS,      /* pacing ticks that found no frame (the engine fell behind) */
    SRV_C_BYTES_SENT,     /* websocket payload bytes, all messages */
    SRV_C_BYTES_RECEIVED,
    SRV_C_MESSAGES_RECEIVED,
    SRV_C_REFUSED_ORIGIN, /* websocket upgrades refused (403) for their Origin */
    SRV_C_REFUSED_PER_IP, /* websockets refused: too many open from one client address */
    SRV_C_COUNT
} srv_counter;

typedef enum srv_hist {
    SRV_H_BLOCK,          /* a block's actions taken to its frames in host memory (blk_ms) */
    SRV_H_STAGE_QUEUE,    /* a session needing a block to its block starting */
    SRV_H_STAGE_DIT,      /* eng_session_run_block */
    SRV_H_STAGE_VAE,      /* eng_session_decode */
    SRV_H_STAGE_JPEG,     /* block handed to the JPEG pool to all its frames encoded */
    SRV_H_INPUT_TO_FRAME, /* an input's arrival to the first frame reflecting it being sent */
    SRV_H_DELIVER,        /* a block's actions taken to its encoded frames reaching the loop */
    SRV_H_COUNT
} srv_hist;

typedef struct srv_gauges {
    int sessions_active, sessions_queued, session_slots, queue_limit;
    int connections;          /* open websocket connections */
    int client_buffer_frames; /* frames waiting in all clients' rings */
    int jpeg_queue_frames;    /* frames waiting for a JPEG thread */
    int engine_blocks_free;   /* free block buffers of the engine worker */
    int draining;
} srv_gauges;

typedef struct srv_metrics srv_metrics;

srv_metrics *srv_metrics_create(void);
void srv_metrics_destroy(srv_metrics *m);

void srv_metrics_add(srv_metrics *m, srv_counter c, uint64_t n);
uint64_t srv_metrics_get(const srv_metrics *m, srv_counter c);
/* Counts an error sent to a client, by protocol error code (1 .. PROTO_ERR_INTERNAL). */
void srv_metrics_error(srv_metrics *m, int code);
uint64_t srv_metrics_errors(const srv_metrics *m, int code);
void srv_metrics_observe(srv_metrics *m, srv_hist h, double seconds);
uint64_t srv_metrics_hist_count(const srv_metrics *m, srv_hist h);
void srv_metrics_set_gauges(srv_metrics *m, const srv_gauges *g);

/* Appends the whole exposition to out. 0 or -1 (out of memory). */
int srv_metrics_render(const srv_metrics *m, srv_buf *out);

#endif
