/* Frame pacing and the slow-client policy for one session, as pure state (times are passed in; the
 * uv_timer that drives it lives with the connection).
 *
 * Encoded frames wait in a bounded ring. Every 1/fps a tick moves the oldest one into the outbox,
 * the single frame handed to the socket next. The policy for a client that reads too slowly:
 *   - a tick that finds the outbox still unsent drops that frame as stale and puts the newer one
 *     there (the client sees the freshest frame it can take, never a backlog);
 *   - a block arriving at a full ring drops the oldest frames;
 *   - when the outbox has waited for the socket longer than the hard limit, the caller disconnects
 *     the client (SLOW_CONSUMER); see srv_pacer_stall_ns.
 * Memory is therefore bounded per client by (ring capacity + 1) encoded frames, whatever the client
 * does. Frame buffers move between the engine's blocks, the ring and the outbox by swapping, so the
 * steady state allocates nothing. */
#ifndef WM_SERVER_PACING_H
#define WM_SERVER_PACING_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

typedef struct srv_frame {
    uint8_t *data; /* JPEG bytes, owned; capacity kept across uses */
    size_t len, cap;
    uint64_t frame, block;
    uint32_t input_seq;
    double input_client_ms;
    uint64_t input_recv_ns; /* server arrival time of input_seq (0: none) */
    proto_timings timings;
} srv_frame;

/* Copies n bytes into f's buffer, growing it if needed (never shrinking). 0 or -1. */
int srv_frame_set_jpeg(srv_frame *f, const uint8_t *p, size_t n);
void srv_frame_swap(srv_frame *a, srv_frame *b);
void srv_frame_free(srv_frame *f);

typedef struct srv_pacer {
    srv_frame *ring;
    int cap, head, count;
    srv_frame outbox;
    int outbox_full;
    uint64_t period_ns;
    uint64_t next_due_ns;     /* 0: stopped (not started, or starved) */
    uint64_t choked_since_ns; /* when the unsent outbox frame first got there; 0 if drained */
    uint64_t consumed;        /* frames that left the pipeline: moved to the outbox, dropped at a
                                 full ring, flushed or discarded */
    uint64_t sent, dropped, underruns;
    int started;   /* a frame has been pushed at least once */
    int prebuffer; /* frames that must wait before a stopped pacer starts */
} srv_pacer;

int srv_pacer_init(srv_pacer *p, int capacity, int fps);
void srv_pacer_free(srv_pacer *p);

/* Appends f (its contents are swapped into the ring; f receives a spare buffer). When the ring is
 * full the oldest frame is dropped first. A stopped pacer becomes due now once `prebuffer` frames
 * wait. Returns frames dropped. */
int srv_pacer_push(srv_pacer *p, srv_frame *f, uint64_t now_ns);

enum {
    SRV_TICK_NONE = 0,
    SRV_TICK_RELEASED = 1, /* a frame went to the outbox: ask for a writable callback */
    SRV_TICK_DROPPED = 2,  /* the previous outbox frame was never sent and was dropped */
    SRV_TICK_UNDERRUN = 4, /* nothing to release (the engine is late); the pacer stopped */
};
/* The tick due at next_due_ns (call at or after it). Schedules the next tick: next_due + period,
 * re-anchored at now + period when the tick came more than a period late. */
int srv_pacer_tick(srv_pacer *p, uint64_t now_ns);

/* Frames to accumulate before (re)starting after the start, a reset or an underrun (clamped to
 * 1 .. capacity): enough to last until the next block arrives, so playback starts once and runs
 * smoothly instead of stuttering through every block. */
void srv_pacer_set_prebuffer(srv_pacer *p, int frames);

/* The frame to send, or NULL. After writing it, call srv_pacer_sent. */
srv_frame *srv_pacer_outbox(srv_pacer *p);
void srv_pacer_sent(srv_pacer *p);
/* How long the outbox frame has waited for the socket (0 when it is empty). */
uint64_t srv_pacer_stall_ns(const srv_pacer *p, uint64_t now_ns);
/* Drops every waiting frame, the outbox included, and stops (a reset). Returns frames removed. */
int srv_pacer_flush(srv_pacer *p);
/* Frames the caller threw away before they reached the ring (results of an outdated generation). */
void srv_pacer_discarded(srv_pacer *p, int n);
int srv_pacer_buffered(const srv_pacer *p); /* ring frames, outbox excluded */

#endif
