/* Deadline scheduling of blocks: see scheduler.h. */
#include "server/scheduler.h"

static uint64_t buffered(const srv_sched_entry *e) {
    return e->produced > e->consumed ? e->produced - e->consumed : 0;
}

uint64_t srv_sched_deadline(const srv_sched_entry *e, uint64_t now_ns) {
    uint64_t b = buffered(e);
    if (e->next_due_ns) return e->next_due_ns + b * e->period_ns;
    /* Pacing stopped. With nothing on its way the client has been waiting since waiting_since;
     * with frames on their way, as if playback started now (scheduler.h). */
    if (!b)
        return e->waiting_since_ns && e->waiting_since_ns < now_ns ? e->waiting_since_ns : now_ns;
    return now_ns + b * e->period_ns;
}

uint64_t srv_sched_eligible_at(const srv_sched_entry *e, uint64_t now_ns, uint64_t lead_ns) {
    if (!e->ready) return UINT64_MAX;
    uint64_t b = buffered(e);
    int room = b + (uint64_t)e->block_frames <= (uint64_t)e->capacity;
    if (!e->next_due_ns) return room ? now_ns : UINT64_MAX; /* stopped: frames wanted now */
    uint64_t deadline = srv_sched_deadline(e, now_ns);
    uint64_t t = deadline > lead_ns ? deadline - lead_ns : 0;
    if (!room) {
        /* Room appears as pacing consumes frames: after (b + block - capacity) more ticks. */
        uint64_t ticks = b + (uint64_t)e->block_frames - (uint64_t)e->capacity;
        uint64_t at = e->next_due_ns + (ticks - 1) * e->period_ns;
        if (at > t) t = at;
    }
    return t;
}

int srv_sched_pick(const srv_sched_entry *e, int n, uint64_t now_ns, uint64_t lead_ns,
                   uint64_t *wake_ns) {
    int best = -1;
    uint64_t best_deadline = UINT64_MAX, wake = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        uint64_t at = srv_sched_eligible_at(&e[i], now_ns, lead_ns);
        if (at == UINT64_MAX) continue;
        if (at > now_ns) {
            if (at < wake) wake = at;
            continue;
        }
        uint64_t d = srv_sched_deadline(&e[i], now_ns);
        if (best < 0 || d < best_deadline) {
            best = i;
            best_deadline = d;
        }
    }
    *wake_ns = best >= 0 ? now_ns : wake;
    return best;
}
