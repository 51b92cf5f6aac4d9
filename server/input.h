/* Player input between messages and blocks: the accumulated state of one session's input messages
 * (held keys, mouse motion summed since the last block, the newest sequence number and its client
 * time), turning a sample of it into the engine's per-frame actions, and the per-connection message
 * rate limiter. Pure functions; the locking that lets the engine thread take samples is in link.h.
 */
#ifndef WM_SERVER_INPUT_H
#define WM_SERVER_INPUT_H

#include <stdint.h>

#include "engine/engine.h"
#include "proto/proto.h"

/* PROTOCOL.md "Input semantics": the mouse value of every frame of a block is the sum of the deltas
 * received since the previous block, each component clamped to [-0.5, 0.5]. */
#define SRV_MOUSE_MAX 0.5f

typedef struct srv_input_state {
    uint32_t keys;            /* held keys: bit i = joined.keys[i] */
    float mouse_dy, mouse_dx; /* summed since the last sample */
    uint32_t seq;             /* newest input message's seq (0: none yet) */
    double client_ms;         /* its client_ms */
    uint64_t recv_ns;         /* when it arrived (server monotonic clock) */
    uint64_t messages;        /* input messages applied */
} srv_input_state;

typedef struct srv_input_sample {
    uint32_t keys;
    float mouse_dy, mouse_dx;
    uint32_t seq;
    double client_ms;
    uint64_t recv_ns;
} srv_input_sample;

/* Applies one input message: keys replace the held set, mouse motion adds up (non-finite values
 * count as 0). */
void srv_input_apply(srv_input_state *s, const proto_input *in, uint64_t now_ns);
/* Takes the state for the next block: everything as is, and the mouse sums reset to 0. */
void srv_input_take(srv_input_state *s, srv_input_sample *out);

/* The block's actions: every one of its n video frames gets the same keys and the same mouse pair,
 * the sample's summed motion clamped to +-SRV_MOUSE_MAX per component (component 0 vertical, 1
 * horizontal; zero for variants without mouse). Key bits past the variant's kdim are ignored.
 * (PROTOCOL.md "Input semantics".) */
void srv_actions_fill(const eng_config *cfg, const srv_input_sample *s, int n,
                      eng_action_frame *out);

/* Input rate limit (PROTOCOL.md "Limits"): within each one-second window, inputs past `limit` are
 * dropped, and more than 4 x limit is fatal. */
typedef struct srv_rate {
    uint32_t limit, count;
    uint64_t window_ns; /* start of the current window */
} srv_rate;

enum { SRV_RATE_OK = 0, SRV_RATE_DROP = 1, SRV_RATE_FATAL = 2 };

void srv_rate_init(srv_rate *r, uint32_t limit_per_s);
/* Counts one input at now_ns; SRV_RATE_OK, SRV_RATE_DROP or SRV_RATE_FATAL. */
int srv_rate_hit(srv_rate *r, uint64_t now_ns);

#endif
