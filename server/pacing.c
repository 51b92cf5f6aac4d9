/* Pacing ring and slow-client policy: see pacing.h. */
#include "server/pacing.h"

#include <stdlib.h>
#include <string.h>

int srv_frame_set_jpeg(srv_frame *f, const uint8_t *p, size_t n) {
    if (n > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        while (cap < n) cap *= 2;
        uint8_t *d = realloc(f->data, cap);
        if (!d) return -1;
        f->data = d;
        f->cap = cap;
    }
    if (n) memcpy(f->data, p, n);
    f->len = n;
    return 0;
}

void srv_frame_swap(srv_frame *a, srv_frame *b) {
    srv_frame t = *a;
    *a = *b;
    *b = t;
}

void srv_frame_free(srv_frame *f) {
    free(f->data);
    memset(f, 0, sizeof *f);
}

int srv_pacer_init(srv_pacer *p, int capacity, int fps) {
    memset(p, 0, sizeof *p);
    if (capacity < 1 || fps < 1) return -1;
    p->ring = calloc((size_t)capacity, sizeof *p->ring);
    if (!p->ring) return -1;
    p->cap = capacity;
    p->period_ns = 1000000000ull / (uint64_t)fps;
    p->prebuffer = 1;
    return 0;
}

void srv_pacer_free(srv_pacer *p) {
    for (int i = 0; p->ring && i < p->cap; i++) srv_frame_free(&p->ring[i]);
    free(p->ring);
    srv_frame_free(&p->outbox);
    memset(p, 0, sizeof *p);
}

int srv_pacer_push(srv_pacer *p, srv_frame *f, uint64_t now_ns) {
    int dropped = 0;
    if (p->count == p->cap) { /* drop the oldest: its buffer becomes the new tail's */
        p->head = (p->head + 1) % p->cap;
        p->count--;
        p->dropped++;
        p->consumed++;
        dropped = 1;
    }
    int tail = (p->head + p->count) % p->cap;
    srv_frame_swap(&p->ring[tail], f);
    p->count++;
    p->started = 1;
    if (!p->next_due_ns && p->count >= p->prebuffer) p->next_due_ns = now_ns ? now_ns : 1;
    return dropped;
}

void srv_pacer_set_prebuffer(srv_pacer *p, int frames) {
    p->prebuffer = frames < 1 ? 1 : frames > p->cap ? p->cap : frames;
}

int srv_pacer_tick(srv_pacer *p, uint64_t now_ns) {
    int r = SRV_TICK_NONE;
    if (!p->count) {
        if (p->started) p->underruns++;
        p->next_due_ns = 0;
        return SRV_TICK_UNDERRUN;
    }
    if (p->outbox_full) { /* never sent: stale now */
        p->dropped++;
        r |= SRV_TICK_DROPPED;
    } else {
        p->choked_since_ns = now_ns ? now_ns : 1;
    }
    srv_frame_swap(&p->outbox, &p->ring[p->head]);
    p->outbox_full = 1;
    p->head = (p->head + 1) % p->cap;
    p->count--;
    p->consumed++;
    r |= SRV_TICK_RELEASED;
    uint64_t next = p->next_due_ns + p->period_ns;
    if (next + p->period_ns < now_ns || next < now_ns) next = now_ns + p->period_ns;
    p->next_due_ns = next;
    return r;
}

srv_frame *srv_pacer_outbox(srv_pacer *p) {
    return p->outbox_full ? &p->outbox : NULL;
}

void srv_pacer_sent(srv_pacer *p) {
    if (!p->outbox_full) return;
    p->outbox_full = 0;
    p->choked_since_ns = 0;
    p->sent++;
}

uint64_t srv_pacer_stall_ns(const srv_pacer *p, uint64_t now_ns) {
    if (!p->outbox_full || !p->choked_since_ns || now_ns < p->choked_since_ns) return 0;
    return now_ns - p->choked_since_ns;
}

int srv_pacer_flush(srv_pacer *p) {
    int n = p->count;
    p->consumed += (uint64_t)p->count;
    p->head = 0;
    p->count = 0;
    if (p->outbox_full) n++;
    p->outbox_full = 0;
    p->choked_since_ns = 0;
    p->next_due_ns = 0;
    return n;
}

void srv_pacer_discarded(srv_pacer *p, int n) {
    if (n > 0) p->consumed += (uint64_t)n;
}

int srv_pacer_buffered(const srv_pacer *p) {
    return p->count;
}
