/* Slots and the waiting queue: see admission.h. Both are small arrays (tens of entries), so linear
 * scans are the simplest correct choice. */
#include "server/admission.h"

#include <stdlib.h>
#include <string.h>

struct srv_admission {
    int nslots, qcap, qlen, active, closed;
    int limit;       /* players admitted at once: <= nslots (the engine's measured capacity) */
    uint64_t *slot;  /* owner id per slot, 0 = free */
    uint64_t *queue; /* FIFO, [0] = head */
};

srv_admission *srv_admission_create(int slots, int max_queue) {
    if (slots < 1 || max_queue < 0) return NULL;
    srv_admission *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->nslots = slots;
    a->limit = slots;
    a->qcap = max_queue;
    a->slot = calloc((size_t)slots, sizeof *a->slot);
    a->queue = calloc((size_t)max_queue + 1, sizeof *a->queue);
    if (!a->slot || !a->queue) {
        srv_admission_destroy(a);
        return NULL;
    }
    return a;
}

void srv_admission_destroy(srv_admission *a) {
    if (!a) return;
    free(a->slot);
    free(a->queue);
    free(a);
}

static int free_slot(const srv_admission *a) {
    if (a->active >= a->limit) return -1;
    for (int i = 0; i < a->nslots; i++)
        if (!a->slot[i]) return i;
    return -1;
}

srv_admit_result srv_admission_join(srv_admission *a, uint64_t id, int *where) {
    *where = -1;
    if (a->closed || !id) return SRV_ADMIT_FULL;
    /* Nobody jumps the queue: a free slot goes to a new player only when nobody waits. */
    int s = a->qlen ? -1 : free_slot(a);
    if (s >= 0) {
        a->slot[s] = id;
        a->active++;
        *where = s;
        return SRV_ADMIT_SLOT;
    }
    if (a->qlen >= a->qcap) return SRV_ADMIT_FULL;
    a->queue[a->qlen++] = id;
    *where = a->qlen;
    return SRV_ADMIT_QUEUED;
}

int srv_admission_leave(srv_admission *a, uint64_t id) {
    if (!id) return -1;
    for (int i = 0; i < a->nslots; i++)
        if (a->slot[i] == id) {
            a->slot[i] = 0;
            a->active--;
            return i;
        }
    for (int i = 0; i < a->qlen; i++)
        if (a->queue[i] == id) {
            memmove(a->queue + i, a->queue + i + 1, (size_t)(a->qlen - i - 1) * sizeof *a->queue);
            a->qlen--;
            break;
        }
    return -1;
}

int srv_admission_promote(srv_admission *a, uint64_t *id, int *slot) {
    if (a->closed || !a->qlen) return 0;
    int s = free_slot(a);
    if (s < 0) return 0;
    *id = a->queue[0];
    *slot = s;
    memmove(a->queue, a->queue + 1, (size_t)(a->qlen - 1) * sizeof *a->queue);
    a->qlen--;
    a->slot[s] = *id;
    a->active++;
    return 1;
}

void srv_admission_set_limit(srv_admission *a, int limit) {
    a->limit = limit < 1 ? 1 : limit > a->nslots ? a->nslots : limit;
}

int srv_admission_limit(const srv_admission *a) {
    return a->limit;
}

int srv_admission_position(const srv_admission *a, uint64_t id) {
    for (int i = 0; i < a->qlen; i++)
        if (a->queue[i] == id) return i + 1;
    return 0;
}

uint64_t srv_admission_queued_at(const srv_admission *a, int i) {
    return i >= 0 && i < a->qlen ? a->queue[i] : 0;
}

int srv_admission_slot_of(const srv_admission *a, uint64_t id) {
    for (int i = 0; id && i < a->nslots; i++)
        if (a->slot[i] == id) return i;
    return -1;
}

uint64_t srv_admission_slot_owner(const srv_admission *a, int slot) {
    return slot >= 0 && slot < a->nslots ? a->slot[slot] : 0;
}

int srv_admission_active(const srv_admission *a) {
    return a->active;
}
int srv_admission_queued(const srv_admission *a) {
    return a->qlen;
}
int srv_admission_slots(const srv_admission *a) {
    return a->nslots;
}
int srv_admission_queue_limit(const srv_admission *a) {
    return a->qcap;
}
void srv_admission_close(srv_admission *a) {
    a->closed = 1;
}
