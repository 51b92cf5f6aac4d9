/* Admission control: a fixed number of session slots and a bounded FIFO of players waiting for one.
 * A join gets a slot, a queue position, or "full"; a leave frees its slot or its place in the
 * queue; promote hands free slots to the head of the queue. Pure bookkeeping over player ids (no
 * I/O), used by the loop thread only. */
#ifndef WM_SERVER_ADMISSION_H
#define WM_SERVER_ADMISSION_H

#include <stdint.h>

typedef struct srv_admission srv_admission;

typedef enum srv_admit_result {
    SRV_ADMIT_SLOT = 0,   /* *where = slot index */
    SRV_ADMIT_QUEUED = 1, /* *where = 1-based queue position */
    SRV_ADMIT_FULL = 2,   /* no slot and the queue is full */
} srv_admit_result;

/* slots >= 1, max_queue >= 0. NULL on out of memory. */
srv_admission *srv_admission_create(int slots, int max_queue);
void srv_admission_destroy(srv_admission *a);

/* id must be nonzero and not already admitted. While `closed` (shutting down) every join is FULL.
 */
srv_admit_result srv_admission_join(srv_admission *a, uint64_t id, int *where);
/* Removes id from its slot or from the queue. Returns the slot it freed, or -1 (it was queued or
 * unknown). */
int srv_admission_leave(srv_admission *a, uint64_t id);
/* When a slot is free and someone waits: pops the queue head into it, returns 1 with *id and *slot;
 * else 0. Call until it returns 0 after a leave. */
int srv_admission_promote(srv_admission *a, uint64_t *id, int *slot);
/* Admits at most `limit` players at once (clamped to 1 .. slots; initially slots), e.g. what the
 * engine is measured to keep up with. Lowering it never evicts anyone: joins queue until enough
 * players have left. After raising it, call promote. */
void srv_admission_set_limit(srv_admission *a, int limit);
int srv_admission_limit(const srv_admission *a);
/* 1-based position of id in the queue, or 0 when it is not queued. */
int srv_admission_position(const srv_admission *a, uint64_t id);
/* The i-th waiting id (0 = head), or 0 past the end. */
uint64_t srv_admission_queued_at(const srv_admission *a, int i);
/* Slot of id, or -1. */
int srv_admission_slot_of(const srv_admission *a, uint64_t id);
uint64_t srv_admission_slot_owner(const srv_admission *a, int slot);
int srv_admission_active(const srv_admission *a);
int srv_admission_queued(const srv_admission *a);
int srv_admission_slots(const srv_admission *a);
int srv_admission_queue_limit(const srv_admission *a);
void srv_admission_close(srv_admission *a);

#endif
