/* The engine worker: one thread that owns the model and every engine session (the engine API is not
 * thread-safe, so only this thread calls it once the worker exists). It creates sessions from start
 * images, picks which session's block runs next (scheduler.h), samples that session's input just
 * before running the block, decodes the block to RGB8, and hands the frames to the JPEG pool.
 * Finished blocks and session events come back to the loop thread through a bounded queue and one
 * uv_async_t (uv_async_send coalesces, so a burst of results costs one wake-up).
 *
 * Bounds: a fixed pool of blocks (max_sessions + 2, at least 3) limits the work in flight; when
 * every block is out (JPEG or loop behind), the worker waits for one to come back. The command
 * queue holds 4 commands per slot plus slack; the event queue holds every block plus as many
 * session events. */
#ifndef WM_SERVER_ENGINE_WORKER_H
#define WM_SERVER_ENGINE_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"
#include "proto/proto.h"
#include "server/block.h"
#include "server/link.h"

typedef enum srv_worker_event_type {
    SRV_WEV_READY,  /* the session's engine session exists; frames follow */
    SRV_WEV_FAILED, /* creating it failed, or the engine failed it later: code + message */
    SRV_WEV_BLOCK,  /* a block's frames are encoded: move them out, then srv_worker_release */
    SRV_WEV_EXITED, /* the worker thread has finished (after srv_worker_shutdown) */
} srv_worker_event_type;

typedef struct srv_worker_event {
    srv_worker_event_type type;
    uint64_t session;
    int code; /* FAILED: PROTO_ERR_ENGINE, PROTO_ERR_BAD_IMAGE or PROTO_ERR_INTERNAL */
    char message[PROTO_MAX_TEXT];
    srv_block *block;
} srv_worker_event;

/* Called on the loop thread for each event, in order. */
typedef void (*srv_worker_event_fn)(void *user, srv_worker_event *ev);

typedef struct srv_worker_options {
    eng_model *model; /* taken over: the worker closes it */
    int max_sessions;
    int ring_frames; /* capacity of each client's frame ring (the scheduler never overfills it) */
    int fps;
    int jpeg_threads;
    int jpeg_quality;
    /* TEST ONLY fault injection: the fault_block_fail-th block (1-based, server-wide) fails, and
     * every block of session fault_session fails, as if the engine had returned an error. 0: off.
     */
    uint64_t fault_block_fail, fault_session;
    uv_loop_t *loop;
    srv_worker_event_fn on_event;
    void *user;
} srv_worker_options;

typedef struct srv_worker srv_worker;

/* Starts the thread. On failure the model is still the caller's. */
int srv_worker_create(const srv_worker_options *o, srv_worker **out, char *err, size_t errlen);

typedef struct srv_session_start {
    uint64_t session;
    srv_link *link; /* the worker takes its own reference */
    uint64_t seed;
    const float *image; /* [3][h][w] in [-1, 1] at the model's video size, kept alive by the
                           caller for the worker's lifetime (scenes); or NULL */
    float *image_owned; /* the same but handed over (uploads): the worker frees it */
} srv_session_start;

/* Loop thread. Each returns 0, or -1 when the worker is stopping or its command queue is full
 * (then image_owned stays the caller's). */
int srv_worker_start(srv_worker *w, const srv_session_start *s);
/* Restart from the same start image; blocks produced before it carry an older generation. */
int srv_worker_reset(srv_worker *w, uint64_t session, uint32_t generation);
int srv_worker_stop(srv_worker *w, uint64_t session);
void srv_worker_release(srv_worker *w, srv_block *b);
void srv_worker_gauges(srv_worker *w, int *blocks_free, int *jpeg_queued_frames);

/* Asks the thread to finish; it destroys its sessions and the model, then posts SRV_WEV_EXITED. */
void srv_worker_shutdown(srv_worker *w);
/* After SRV_WEV_EXITED (or if the thread never started): joins the threads and closes the async
 * handle; frees everything and calls done(user) from the handle's close callback. */
void srv_worker_close(srv_worker *w, void (*done)(void *user), void *user);

#endif
