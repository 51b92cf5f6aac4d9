/* srv_link: see link.h. A mutex rather than atomics: input state is several fields that must be
 * read together, and both sides touch it a few times per block, far from contention. */
#include "server/link.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct srv_link {
    atomic_int refs;
    uint64_t session;
    pthread_mutex_t mu;
    srv_input_state input;
    uint64_t consumed, next_due_ns;
};

srv_link *srv_link_create(uint64_t session_id) {
    srv_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    atomic_init(&l->refs, 1);
    l->session = session_id;
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void srv_link_ref(srv_link *l) {
    atomic_fetch_add(&l->refs, 1);
}

void srv_link_unref(srv_link *l) {
    if (!l || atomic_fetch_sub(&l->refs, 1) != 1) return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

uint64_t srv_link_session(const srv_link *l) {
    return l->session;
}

void srv_link_input_apply(srv_link *l, const proto_input *in, uint64_t now_ns) {
    pthread_mutex_lock(&l->mu);
    srv_input_apply(&l->input, in, now_ns);
    pthread_mutex_unlock(&l->mu);
}

void srv_link_publish(srv_link *l, uint64_t frames_consumed, uint64_t next_due_ns) {
    pthread_mutex_lock(&l->mu);
    l->consumed = frames_consumed;
    l->next_due_ns = next_due_ns;
    pthread_mutex_unlock(&l->mu);
}

void srv_link_input_take(srv_link *l, srv_input_sample *out) {
    pthread_mutex_lock(&l->mu);
    srv_input_take(&l->input, out);
    pthread_mutex_unlock(&l->mu);
}

void srv_link_playback(srv_link *l, uint64_t *frames_consumed, uint64_t *next_due_ns) {
    pthread_mutex_lock(&l->mu);
    *frames_consumed = l->consumed;
    *next_due_ns = l->next_due_ns;
    pthread_mutex_unlock(&l->mu);
}
