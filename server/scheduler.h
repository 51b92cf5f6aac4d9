/* Which session's block the engine runs next: earliest deadline first, as late as is safe.
 *
 * A playing session's deadline is the moment its client would need a frame that has not been
 * generated yet: with b frames buffered or in flight (produced - consumed) and the next pacing tick
 * at next_due, it is next_due + b * period. It becomes eligible once that deadline is within
 * `lead` of now (lead covers the time a block takes through the engine and the JPEG pool, times the
 * sessions competing for the engine) and its client ring has room for another block. Starting no
 * earlier than that is what makes the input sampled at the block's start as fresh as it can be.
 *
 * A session whose pacing is stopped (new, or refilling its prebuffer after a reset or an underrun)
 * is eligible at once, ring permitting, but how urgent it is depends on what it already has:
 *   - nothing buffered or in flight: its client is waiting, since `waiting_since` (a new session:
 *     its join), so that is its deadline; waiting sessions go first, the longest-waiting first (so
 *     that under overload nobody waits forever behind lower-numbered sessions);
 *   - b frames already on their way (a prebuffer larger than one block): it is treated as if it
 *     started playing now, deadline now + b * period. A playing session that would run dry before
 *     then goes first: a newcomer filling its prebuffer never makes a player stall, and it still
 *     gets every block the players do not need yet.
 * Among eligible sessions the earliest deadline goes first. Pure: the worker passes in a
 * snapshot. */
#ifndef WM_SERVER_SCHEDULER_H
#define WM_SERVER_SCHEDULER_H

#include <stdint.h>

typedef struct srv_sched_entry {
    int ready;                 /* has an engine session and wants frames */
    uint64_t produced;         /* frames whose generation has started */
    uint64_t consumed;         /* frames that left the client's pipeline */
    uint64_t next_due_ns;      /* the client's next pacing tick; 0 = pacing waits for frames */
    uint64_t waiting_since_ns; /* pacing stopped with nothing on its way: since when (0: now) */
    uint64_t period_ns;        /* 1 / fps */
    int block_frames;          /* frames the session's next block yields (9 or 12) */
    int capacity;              /* frames the client's ring holds */
} srv_sched_entry;

uint64_t srv_sched_deadline(const srv_sched_entry *e, uint64_t now_ns);
/* Time at which e becomes eligible (<= now: eligible now); UINT64_MAX when it waits for an event
 * (not ready, or its ring is full while pacing is stopped). */
uint64_t srv_sched_eligible_at(const srv_sched_entry *e, uint64_t now_ns, uint64_t lead_ns);
/* Index of the eligible entry with the earliest deadline, or -1. *wake_ns: when the next entry
 * becomes eligible if none is now (UINT64_MAX: none will without an event). */
int srv_sched_pick(const srv_sched_entry *e, int n, uint64_t now_ns, uint64_t lead_ns,
                   uint64_t *wake_ns);

#endif
