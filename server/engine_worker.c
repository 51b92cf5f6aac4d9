/* The engine worker thread: see engine_worker.h.
 *
 * Locking: `mu` guards the command queue, the session table's bookkeeping, the free blocks and the
 * stop flag; engine calls run with it released. `ev_mu` guards the event queue shared with the JPEG
 * threads. Order: mu may be held while taking a link's mutex (srv_link_playback), never the
 * reverse, and ev_mu is never held with anything else. */
#include "server/engine_worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/clock.h"
#include "server/jpeg.h"
#include "server/log.h"
#include "server/scheduler.h"

typedef enum cmd_type { CMD_START, CMD_RESET, CMD_STOP } cmd_type;

/* A new session waits at most this long for the players already on the engine to be topped up. */
#define MAX_START_DEFER_NS (1000 * SRV_NS_PER_MS)

typedef struct cmd {
    cmd_type type;
    uint64_t queued_ns;
    srv_session_start start; /* CMD_START */
    uint64_t session;
    uint32_t generation; /* CMD_RESET */
} cmd;

typedef struct wsess {
    int used, ready;
    uint64_t id;
    srv_link *link;
    eng_session *es;
    uint32_t generation;
    uint64_t produced; /* frames generated since the last reset (scheduler accounting) */
    uint64_t frame_no; /* session frame counter, never reset */
    uint64_t last_done_ns;
    uint64_t waiting_since; /* pacing stopped with nothing on its way: since when (0: not) */
} wsess;

struct srv_worker {
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: commands, released blocks, stop */
    int stop;

    cmd *cmds;
    int cmd_cap, cmd_head, cmd_count;

    wsess *sess;
    int nsess;

    srv_block *blocks;
    int nblocks;
    srv_block *free_blocks;
    int nfree;

    eng_model *model;
    const eng_config *cfg;
    int width, height, has_encoders;
    float *latents;
    float *syn_cond, *syn_clip; /* synthetic conditioning (models without encoders) */
    int syn_frames;
    eng_action_frame actions[ENG_MAX_FRAMES_PER_BLOCK];

    srv_jpeg_pool *jpeg;
    uint64_t fault_block_fail, fault_session, blocks_run; /* fault injection (options) */
    _Atomic uint64_t last_jpeg_ns;
    uint64_t est_engine_ns, est_create_ns; /* decaying maxima: a block, a session start */
    uint64_t period_ns;
    int ring_frames;

    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv;
    srv_worker_event *ev;
    int ev_cap, ev_head, ev_count, ev_session_limit;
    uv_async_t async;
    int async_init;
    srv_worker_event_fn on_event;
    void *user;
    void (*closed_cb)(void *);
    void *closed_user;
};

/* Events -----------------------------------------------------------------------------------------
 */

/* Session events wait when the queue's session share is full; block events never wait (there are at
 * most nblocks of them and the queue reserves room for all). */
static void post_event(srv_worker *w, const srv_worker_event *e) {
    pthread_mutex_lock(&w->ev_mu);
    if (e->type != SRV_WEV_BLOCK)
        while (w->ev_count >= w->ev_session_limit) pthread_cond_wait(&w->ev_cv, &w->ev_mu);
    w->ev[(w->ev_head + w->ev_count) % w->ev_cap] = *e;
    w->ev_count++;
    pthread_mutex_unlock(&w->ev_mu);
    uv_async_send(&w->async);
}

static void post_session_event(srv_worker *w, srv_worker_event_type t, uint64_t session, int code,
                               const char *msg) {
    srv_worker_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.session = session;
    e.code = code;
    if (msg) snprintf(e.message, sizeof e.message, "%s", msg);
    post_event(w, &e);
}

static int pop_event(srv_worker *w, srv_worker_event *out) {
    pthread_mutex_lock(&w->ev_mu);
    int got = w->ev_count > 0;
    if (got) {
        *out = w->ev[w->ev_head];
        w->ev_head = (w->ev_head + 1) % w->ev_cap;
        w->ev_count--;
        pthread_cond_broadcast(&w->ev_cv);
    }
    pthread_mutex_unlock(&w->ev_mu);
    return got;
}

static void on_async(uv_async_t *a) {
    srv_worker *w = a->data;
    srv_worker_event e;
    while (pop_event(w, &e)) w->on_event(w->user, &e);
}

/* Called on a JPEG thread when a block's frames are all encoded. */
static void on_jpeg_done(void *user, srv_block *b) {
    srv_worker *w = user;
    atomic_store(&w->last_jpeg_ns, b->t_jpeg_done - b->t_jpeg_submit);
    srv_worker_event e;
    memset(&e, 0, sizeof e);
    e.type = SRV_WEV_BLOCK;
    e.session = b->session;
    e.block = b;
    post_event(w, &e);
}

/* Sessions ---------------------------------------------------------------------------------------
 */

static wsess *find_session(srv_worker *w, uint64_t id) {
    for (int i = 0; i < w->nsess; i++)
        if (w->sess[i].used && w->sess[i].id == id) return &w->sess[i];
    return NULL;
}

/* Runs without mu. queued_ns: when the start was asked for, the client's wait for frames began. */
static void do_start(srv_worker *w, srv_session_start *st, uint64_t queued_ns) {
    char err[PROTO_MAX_TEXT] = "";
    pthread_mutex_lock(&w->mu);
    wsess *s = NULL;
    for (int i = 0; i < w->nsess && !s; i++)
        if (!w->sess[i].used) s = &w->sess[i];
    if (s) {
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->id = st->session;
        s->link = st->link;
    }
    pthread_mutex_unlock(&w->mu);
    if (!s) {
        post_session_event(w, SRV_WEV_FAILED, st->session, PROTO_ERR_INTERNAL,
                           "no free engine session slot");
        srv_link_unref(st->link);
        free(st->image_owned);
        return;
    }
    eng_session_params p;
    memset(&p, 0, sizeof p);
    p.seed = st->seed;
    p.session_id = (uint32_t)st->session;
    p.trace_hidden_block = -1;
    const float *image = st->image_owned ? st->image_owned : st->image;
    if (image && w->has_encoders) {
        p.image = image;
    } else {
        p.cond = w->syn_cond;
        p.cond_frames = w->syn_frames;
        p.clip = w->syn_clip;
    }
    uint64_t t0 = srv_now_ns();
    eng_session *es = NULL;
    int rc = eng_session_create(w->model, &p, &es, err, sizeof err);
    free(st->image_owned);
    st->image_owned = NULL;
    pthread_mutex_lock(&w->mu);
    if (!rc) {
        s->es = es;
        s->ready = 1;
        s->last_done_ns = srv_now_ns();
        s->waiting_since = queued_ns;
    }
    pthread_mutex_unlock(&w->mu);
    if (rc) {
        SRV_LOG(SRV_LOG_ERROR, "engine_session_failed", SRV_KU("session", st->session),
                SRV_KS("error", err));
        post_session_event(w, SRV_WEV_FAILED, st->session, PROTO_ERR_ENGINE, err);
    } else {
        SRV_LOG(SRV_LOG_DEBUG, "engine_session_created", SRV_KU("session", st->session),
                SRV_KD("ms", srv_ns_to_ms(srv_now_ns() - t0)),
                SRV_KB("from_image", p.image != NULL));
        post_session_event(w, SRV_WEV_READY, st->session, 0, NULL);
    }
}

static void do_stop(srv_worker *w, uint64_t id) {
    pthread_mutex_lock(&w->mu);
    wsess *s = find_session(w, id);
    eng_session *es = NULL;
    srv_link *link = NULL;
    if (s) {
        es = s->es;
        link = s->link;
        memset(s, 0, sizeof *s);
    }
    pthread_mutex_unlock(&w->mu);
    eng_session_destroy(es);
    srv_link_unref(link);
}

static void do_reset(srv_worker *w, uint64_t id, uint32_t generation) {
    pthread_mutex_lock(&w->mu);
    wsess *s = find_session(w, id);
    if (s && s->es) {
        eng_session_reset(s->es); /* cheap: clears caches and history */
        s->generation = generation;
        s->frame_no = 0; /* PROTOCOL.md: frames restart at n = 0 after a reset */
        /* The loop flushed its ring and discards older blocks, so the accounting restarts from
         * whatever it reports as consumed; produced follows the same frames. */
    }
    pthread_mutex_unlock(&w->mu);
}

/* Blocks -----------------------------------------------------------------------------------------
 */

static void fail_session(srv_worker *w, wsess *s, const char *err) {
    /* mu held. The loop answers with ENGINE error + close, then CMD_STOP frees the slot. */
    s->ready = 0;
    SRV_LOG(SRV_LOG_ERROR, "engine_block_failed", SRV_KU("session", s->id), SRV_KS("error", err));
    uint64_t id = s->id;
    pthread_mutex_unlock(&w->mu);
    post_session_event(w, SRV_WEV_FAILED, id, PROTO_ERR_ENGINE, err);
    pthread_mutex_lock(&w->mu);
}

/* Test-only fault injection (srv_worker_options): -1 with a message when this block must fail.
 * Worker thread only (blocks_run is the worker's). */
static int inject_fault(srv_worker *w, uint64_t session, char *err, size_t errlen) {
    uint64_t n = ++w->blocks_run;
    if (!(w->fault_block_fail && n == w->fault_block_fail) &&
        !(w->fault_session && session == w->fault_session))
        return 0;
    snprintf(err, errlen, "injected fault: block %llu of the server, session %llu",
             (unsigned long long)n, (unsigned long long)session);
    return -1;
}

/* Runs one block for s with mu released; returns with mu held. */
static void run_block(srv_worker *w, wsess *s, srv_block *b, uint64_t t_due) {
    eng_session *es = s->es;
    srv_link *link = s->link;
    b->session = s->id;
    b->generation = s->generation;
    b->first_frame = s->frame_no;
    b->t_due = t_due;
    pthread_mutex_unlock(&w->mu);

    char err[PROTO_MAX_TEXT] = "";
    int nvf = eng_session_block_video_frames(es);
    b->block_index = (uint64_t)eng_session_next_block(es);
    /* As late as possible: the input is read right before the engine consumes it. */
    b->t_sample = srv_now_ns();
    srv_link_input_take(link, &b->input);
    srv_actions_fill(w->cfg, &b->input, nvf, w->actions);
    eng_block_timings tm;
    b->t_start = srv_now_ns();
    int rc = eng_session_run_block(es, w->actions, nvf, w->latents, &tm, err, sizeof err);
    if (!rc) rc = inject_fault(w, b->session, err, sizeof err);
    b->t_dit = srv_now_ns();
    int nframes = 0;
    if (!rc) rc = eng_session_decode(es, w->latents, b->rgb, &nframes, err, sizeof err);
    b->t_vae = srv_now_ns();
    if (!rc && (nframes < 1 || nframes > ENG_MAX_FRAMES_PER_BLOCK)) {
        snprintf(err, sizeof err, "decoder returned %d frames", nframes);
        rc = -1;
    }
    pthread_mutex_lock(&w->mu);
    if (rc) {
        b->next = w->free_blocks;
        w->free_blocks = b;
        w->nfree++;
        if (s->used && s->es == es) fail_session(w, s, err);
        return;
    }
    b->nframes = nframes;
    s->produced += (uint64_t)nframes;
    s->frame_no += (uint64_t)nframes;
    s->last_done_ns = b->t_vae;
    /* A decaying maximum rather than a mean: starting a block a little early costs some input
     * freshness, starting it late costs a visible stall. */
    uint64_t eng_ns = b->t_vae - b->t_start;
    uint64_t decayed = w->est_engine_ns - w->est_engine_ns / 8;
    w->est_engine_ns = eng_ns > decayed ? eng_ns : decayed;
    for (int i = 0; i < nframes; i++) {
        srv_frame *f = &b->frames[i];
        f->frame = b->first_frame + (uint64_t)i;
        f->block = b->block_index;
        f->input_seq = b->input.seq;
        f->input_client_ms = b->input.client_ms;
        f->input_recv_ns = b->input.recv_ns;
        /* PROTOCOL.md "frame": q_ms from the actions being taken to the engine starting, blk_ms
         * from the actions being taken to the frames in host memory; jpg_ms is set per frame by
         * the JPEG pool. */
        f->timings.queue_ms = (float)srv_ns_to_ms(b->t_start - b->t_sample);
        f->timings.dit_ms = (float)srv_ns_to_ms(b->t_dit - b->t_start);
        f->timings.vae_ms = (float)srv_ns_to_ms(b->t_vae - b->t_dit);
        f->timings.block_ms = (float)srv_ns_to_ms(b->t_vae - b->t_sample);
    }
    pthread_mutex_unlock(&w->mu);
    srv_jpeg_pool_submit(w->jpeg, b);
    pthread_mutex_lock(&w->mu);
}

/* The thread -------------------------------------------------------------------------------------
 */

static void wait_until(srv_worker *w, uint64_t wake_ns) {
    if (wake_ns == UINT64_MAX) {
        pthread_cond_wait(&w->cv, &w->mu);
        return;
    }
    struct timespec ts = {(time_t)(wake_ns / SRV_NS_PER_S), (long)(wake_ns % SRV_NS_PER_S)};
    pthread_cond_timedwait(&w->cv, &w->mu, &ts);
}

/* Fills the scheduler's snapshot (mu held); returns the number of playing sessions. */
static int snapshot(srv_worker *w, srv_sched_entry *ents, uint64_t now) {
    int nready = 0;
    for (int i = 0; i < w->nsess; i++) {
        wsess *s = &w->sess[i];
        srv_sched_entry *e = &ents[i];
        memset(e, 0, sizeof *e);
        if (!s->used || !s->ready) continue;
        nready++;
        e->ready = 1;
        e->produced = s->produced;
        srv_link_playback(s->link, &e->consumed, &e->next_due_ns);
        e->period_ns = w->period_ns;
        e->block_frames = eng_session_block_video_frames(s->es);
        e->capacity = w->ring_frames;
        /* Waiting with nothing on its way: keep when that began, so the longest wait goes
         * first (scheduler.h). */
        if (!e->next_due_ns && e->produced <= e->consumed) {
            if (!s->waiting_since) s->waiting_since = now;
        } else {
            s->waiting_since = 0;
        }
        e->waiting_since_ns = s->waiting_since;
    }
    return nready;
}

/* Takes a free block and runs `pick`'s block in it (mu held on entry and on return). */
static void run_pick(srv_worker *w, srv_sched_entry *ents, int pick, uint64_t now, uint64_t lead) {
    srv_block *b = w->free_blocks;
    w->free_blocks = b->next;
    w->nfree--;
    b->next = NULL;
    wsess *s = &w->sess[pick];
    uint64_t eligible = srv_sched_eligible_at(&ents[pick], now, lead);
    uint64_t t_due = eligible > s->last_done_ns ? eligible : s->last_done_ns;
    if (t_due > now) t_due = now;
    uint64_t deadline = srv_sched_deadline(&ents[pick], now);
    const srv_sched_entry *e = &ents[pick];
    uint64_t id = s->id, buffered = e->produced > e->consumed ? e->produced - e->consumed : 0;
    int playing = e->next_due_ns != 0;
    run_block(w, s, b, t_due);
    SRV_LOG(SRV_LOG_DEBUG, "block", SRV_KU("session", id), SRV_KB("playing", playing),
            SRV_KU("buffered", buffered), SRV_KD("lead_ms", srv_ns_to_ms(lead)),
            SRV_KD("wait_ms", srv_ns_to_ms(b->t_start - t_due)),
            SRV_KD("engine_ms", srv_ns_to_ms(b->t_vae - b->t_start)),
            SRV_KD("slack_ms", ((double)deadline - (double)b->t_vae) * 1e-6));
}

static void *worker_main(void *arg) {
    srv_worker *w = arg;
    srv_sched_entry *ents = calloc((size_t)w->nsess, sizeof *ents);
    pthread_mutex_lock(&w->mu);
    while (!w->stop && ents) {
        uint64_t now = srv_now_ns();
        int nready = snapshot(w, ents, now);
        /* Lead: a block's time through the engine and the JPEG pool, once per competing session,
         * plus a margin for the loop, the network and a block slower than the estimate: one frame
         * period, or a quarter of a block where blocks are long (a loaded or slow machine). */
        uint64_t per_block = w->est_engine_ns + atomic_load(&w->last_jpeg_ns);
        if (!per_block) per_block = 30 * SRV_NS_PER_MS;
        uint64_t margin = per_block / 4 > w->period_ns ? per_block / 4 : w->period_ns;
        uint64_t lead = per_block * (uint64_t)(nready ? nready : 1) + margin;
        uint64_t wake;
        if (w->cmd_count) {
            cmd c = w->cmds[w->cmd_head];
            /* Starting a session (VAE encoder and CLIP on the start image) holds the engine for
             * a while, and then the newcomer's first block comes before anyone else's (its client
             * waits): the players' leads so far counted one competitor less. So first top up the
             * players whose frames would run out before the start, the newcomer's block and their
             * own next block are done, with the lead of nready + 1 sessions, as far as their rings
             * allow (for at most MAX_START_DEFER_NS), then start it. */
            if (c.type == CMD_START && nready && w->free_blocks &&
                now - c.queued_ns < MAX_START_DEFER_NS) {
                uint64_t create = w->est_create_ns ? w->est_create_ns : 4 * per_block;
                uint64_t horizon = lead + per_block + create;
                int pick = srv_sched_pick(ents, w->nsess, now, horizon, &wake);
                if (pick >= 0) {
                    run_pick(w, ents, pick, now, horizon);
                    continue;
                }
            }
            w->cmd_head = (w->cmd_head + 1) % w->cmd_cap;
            w->cmd_count--;
            pthread_mutex_unlock(&w->mu);
            switch (c.type) {
            case CMD_START: {
                uint64_t t0 = srv_now_ns();
                do_start(w, &c.start, c.queued_ns);
                uint64_t dt = srv_now_ns() - t0, decayed = w->est_create_ns - w->est_create_ns / 8;
                w->est_create_ns = dt > decayed ? dt : decayed;
                break;
            }
            case CMD_RESET:
                do_reset(w, c.session, c.generation);
                break;
            case CMD_STOP:
                do_stop(w, c.session);
                break;
            }
            pthread_mutex_lock(&w->mu);
            continue;
        }
        int pick = srv_sched_pick(ents, w->nsess, now, lead, &wake);
        if (pick < 0) {
            wait_until(w, wake);
            continue;
        }
        if (!w->free_blocks) { /* everything in flight: wait for the loop to return a block */
            wait_until(w, UINT64_MAX);
            continue;
        }
        run_pick(w, ents, pick, now, lead);
    }
    /* Shutdown: the engine sessions and the model go down on the thread that owns them. */
    for (int i = 0; i < w->nsess; i++) {
        wsess *s = &w->sess[i];
        if (!s->used) continue;
        eng_session_destroy(s->es);
        srv_link_unref(s->link);
        memset(s, 0, sizeof *s);
    }
    while (w->cmd_count) { /* commands that will never run */
        cmd *c = &w->cmds[w->cmd_head];
        if (c->type == CMD_START) {
            srv_link_unref(c->start.link);
            free(c->start.image_owned);
        }
        w->cmd_head = (w->cmd_head + 1) % w->cmd_cap;
        w->cmd_count--;
    }
    eng_model_close(w->model);
    w->model = NULL;
    pthread_mutex_unlock(&w->mu);
    free(ents);
    post_session_event(w, SRV_WEV_EXITED, 0, 0, NULL);
    return NULL;
}

/* API -------------------------------------------------------------------------------------------
 */

static void free_worker(srv_worker *w) {
    if (w->blocks)
        for (int i = 0; i < w->nblocks; i++) {
            free(w->blocks[i].rgb);
            for (int f = 0; f < ENG_MAX_FRAMES_PER_BLOCK; f++)
                srv_frame_free(&w->blocks[i].frames[f]);
        }
    free(w->blocks);
    free(w->cmds);
    free(w->sess);
    free(w->ev);
    free(w->latents);
    free(w->syn_cond);
    free(w->syn_clip);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->ev_cv);
    pthread_mutex_destroy(&w->ev_mu);
    free(w);
}

int srv_worker_create(const srv_worker_options *o, srv_worker **out, char *err, size_t errlen) {
    *out = NULL;
    srv_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->ev_mu, NULL);
    pthread_cond_init(&w->ev_cv, NULL);

    w->model = o->model;
    w->cfg = eng_model_config(o->model);
    eng_model_video_size(o->model, &w->width, &w->height);
    w->has_encoders = eng_model_has_encoders(o->model);
    w->nsess = o->max_sessions;
    w->fault_block_fail = o->fault_block_fail;
    w->fault_session = o->fault_session;
    w->ring_frames = o->ring_frames;
    w->period_ns = SRV_NS_PER_S / (uint64_t)(o->fps > 0 ? o->fps : 25);
    w->on_event = o->on_event;
    w->user = o->user;
    w->nblocks = o->max_sessions + 2 < 3 ? 3 : o->max_sessions + 2;
    w->cmd_cap = 4 * o->max_sessions + 16;
    w->ev_cap = w->nblocks + 4 * o->max_sessions + 16;
    w->ev_session_limit = w->ev_cap - w->nblocks;
    const eng_config *c = w->cfg;
    const size_t HW = (size_t)c->lat_h * (size_t)c->lat_w;
    const size_t frame_bytes = (size_t)w->width * (size_t)w->height * 3;
    int ok = w->width > 0 && w->height > 0;
    ok = ok && (w->sess = calloc((size_t)w->nsess, sizeof *w->sess)) != NULL;
    ok = ok && (w->cmds = calloc((size_t)w->cmd_cap, sizeof *w->cmds)) != NULL;
    ok = ok && (w->ev = calloc((size_t)w->ev_cap, sizeof *w->ev)) != NULL;
    ok = ok && (w->blocks = calloc((size_t)w->nblocks, sizeof *w->blocks)) != NULL;
    ok = ok && (w->latents = malloc(16 * (size_t)c->frames_per_block * HW * sizeof(float))) != NULL;
    for (int i = 0; ok && i < w->nblocks; i++) {
        srv_block *b = &w->blocks[i];
        b->width = w->width;
        b->height = w->height;
        ok = (b->rgb = malloc(ENG_MAX_FRAMES_PER_BLOCK * frame_bytes)) != NULL;
        b->next = w->free_blocks;
        w->free_blocks = b;
        w->nfree++;
    }
    if (ok && !w->has_encoders) {
        /* No VAE encoder / CLIP: every session plays from synthetic conditioning. */
        w->syn_frames = 30;
        ok = (w->syn_cond = malloc(20 * (size_t)w->syn_frames * HW * sizeof(float))) != NULL &&
             (w->syn_clip = malloc((size_t)c->clip_tokens * (size_t)c->clip_dim * sizeof(float))) !=
                 NULL;
        if (ok && eng_synthetic_conditioning(c, 0, w->syn_frames, w->syn_cond, w->syn_clip)) ok = 0;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory for the engine worker (%d blocks of %dx%d frames)",
                 w->nblocks, w->width, w->height);
        w->model = NULL;
        free_worker(w);
        return -1;
    }
    if (srv_jpeg_pool_create(o->jpeg_threads, o->jpeg_quality, on_jpeg_done, w, &w->jpeg, err,
                             errlen)) {
        w->model = NULL;
        free_worker(w);
        return -1;
    }
    if (uv_async_init(o->loop, &w->async, on_async)) {
        snprintf(err, errlen, "uv_async_init failed");
        srv_jpeg_pool_destroy(w->jpeg);
        w->model = NULL;
        free_worker(w);
        return -1;
    }
    w->async.data = w;
    w->async_init = 1;
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        w->model = NULL; /* still the caller's */
        srv_worker_close(w, NULL, NULL);
        return -1;
    }
    w->thread_started = 1;
    *out = w;
    return 0;
}

static int push_cmd(srv_worker *w, const cmd *c) {
    pthread_mutex_lock(&w->mu);
    int ok = !w->stop && w->cmd_count < w->cmd_cap;
    if (ok) {
        cmd *slot = &w->cmds[(w->cmd_head + w->cmd_count) % w->cmd_cap];
        *slot = *c;
        slot->queued_ns = srv_now_ns();
        w->cmd_count++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return ok ? 0 : -1;
}

int srv_worker_start(srv_worker *w, const srv_session_start *s) {
    cmd c;
    memset(&c, 0, sizeof c);
    c.type = CMD_START;
    c.start = *s;
    c.session = s->session;
    srv_link_ref(s->link);
    if (push_cmd(w, &c)) {
        srv_link_unref(s->link);
        return -1;
    }
    return 0;
}

int srv_worker_reset(srv_worker *w, uint64_t session, uint32_t generation) {
    cmd c;
    memset(&c, 0, sizeof c);
    c.type = CMD_RESET;
    c.session = session;
    c.generation = generation;
    return push_cmd(w, &c);
}

int srv_worker_stop(srv_worker *w, uint64_t session) {
    cmd c;
    memset(&c, 0, sizeof c);
    c.type = CMD_STOP;
    c.session = session;
    return push_cmd(w, &c);
}

void srv_worker_release(srv_worker *w, srv_block *b) {
    pthread_mutex_lock(&w->mu);
    b->next = w->free_blocks;
    w->free_blocks = b;
    w->nfree++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void srv_worker_gauges(srv_worker *w, int *blocks_free, int *jpeg_queued_frames) {
    pthread_mutex_lock(&w->mu);
    *blocks_free = w->nfree;
    pthread_mutex_unlock(&w->mu);
    *jpeg_queued_frames = srv_jpeg_pool_queued_frames(w->jpeg);
}

void srv_worker_shutdown(srv_worker *w) {
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void on_async_closed(uv_handle_t *h) {
    srv_worker *w = h->data;
    void (*cb)(void *) = w->closed_cb;
    void *user = w->closed_user;
    free_worker(w);
    if (cb) cb(user);
}

void srv_worker_close(srv_worker *w, void (*done)(void *user), void *user) {
    srv_worker_shutdown(w);
    if (w->thread_started) pthread_join(w->thread, NULL);
    w->thread_started = 0;
    /* Encodes what is queued; its blocks land in the event queue and are dropped below. */
    srv_jpeg_pool_destroy(w->jpeg);
    w->jpeg = NULL;
    srv_worker_event e;
    while (pop_event(w, &e)) {
    }
    w->closed_cb = done;
    w->closed_user = user;
    uv_close((uv_handle_t *)&w->async, on_async_closed);
}
