/* The link between one session's loop side and its engine-worker side: the input state the loop
 * fills from input messages and the worker samples just before each block, and the playback
 * position (frames consumed by pacing, next pacing tick) from which the worker computes the
 * session's deadline. Reference-counted: the loop and the worker each hold a reference, so
 * whichever lets go last frees it. All accessors are thread-safe. */
#ifndef WM_SERVER_LINK_H
#define WM_SERVER_LINK_H

#include <stdint.h>

#include "server/input.h"

typedef struct srv_link srv_link;

/* One reference, held by the caller. NULL on out of memory. */
srv_link *srv_link_create(uint64_t session_id);
void srv_link_ref(srv_link *l);
void srv_link_unref(srv_link *l);
uint64_t srv_link_session(const srv_link *l);

/* Loop thread. */
void srv_link_input_apply(srv_link *l, const proto_input *in, uint64_t now_ns);
/* frames_consumed: frames that left the pipeline (sent, dropped or discarded);
 * next_due_ns: the pacing tick that takes the next frame, 0 when pacing waits for frames. */
void srv_link_publish(srv_link *l, uint64_t frames_consumed, uint64_t next_due_ns);

/* Engine worker thread. */
void srv_link_input_take(srv_link *l, srv_input_sample *out);
void srv_link_playback(srv_link *l, uint64_t *frames_consumed, uint64_t *next_due_ns);

#endif
