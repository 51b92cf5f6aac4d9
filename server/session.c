/* The play protocol on the loop thread: hello/welcome, join (token, variant, scene or uploaded
 * image, admission to a slot or the queue), input, ping, reset, leave, the engine worker's events
 * (session ready or failed, finished blocks into the pacing ring), queue positions, per-second
 * stats, idle timeouts and the end of a session, whatever ends it. The transport is conn.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/image.h"
#include "server/clock.h"
#include "server/internal.h"
#include "server/log.h"

#define MAX_UPLOADS_IN_FLIGHT 2

/* Helpers ----------------------------------------------------------------------------------- */

static srv_conn *conn_of_session(srv_server *s, uint64_t session) {
    if (!session) return NULL;
    for (int i = 0; i < s->cfg.max_sessions; i++)
        if (s->slot_conn[i] && s->slot_conn[i]->session == session) return s->slot_conn[i];
    return NULL;
}

static int consttime_eq(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Sends each queued player its position when it changed, at most once a second per player
 * (PROTOCOL.md "Queue"); `force` sends regardless (the answer to a join). */
static void send_queue_position(srv_conn *c, int force, uint64_t now) {
    srv_server *s = c->srv;
    uint32_t pos = (uint32_t)srv_admission_position(s->adm, c->session);
    uint32_t len = (uint32_t)srv_admission_queued(s->adm);
    if (!pos || (!force && pos == c->queue_pos_sent && len == c->queue_len_sent)) return;
    if (!force && now - c->queue_sent_ns < SRV_NS_PER_S) return; /* housekeeping sends it later */
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_QUEUE;
    m.u.queue.position = pos;
    m.u.queue.length = len;
    conn_send(c, &m);
    c->queue_pos_sent = pos;
    c->queue_len_sent = len;
    c->queue_sent_ns = now;
}

static void send_queue_positions(srv_server *s) {
    uint64_t now = srv_now_ns();
    for (srv_conn *c = s->conns; c; c = c->next)
        if (c->state == CONN_QUEUED) send_queue_position(c, 0, now);
}

/* Session start and end --------------------------------------------------------------------- */

static void start_session(srv_conn *c, int slot) {
    srv_server *s = c->srv;
    c->slot = slot;
    s->slot_conn[slot] = c;
    c->state = CONN_STARTING;
    c->generation = 0;
    c->link = srv_link_create(c->session);
    if (!c->link || srv_pacer_init(&c->pacer, s->cfg.buffer_frames, s->cfg.fps)) {
        conn_error(c, PROTO_ERR_INTERNAL, "out of memory starting the session");
        return;
    }
    c->pacer_init = 1;
    srv_session_start st = {
        .session = c->session,
        .link = c->link,
        .seed = c->seed,
        .image = c->scene >= 0 ? srv_scenes_planes(s->scenes, c->scene) : NULL,
        .image_owned = c->upload,
    };
    if (!s->worker || srv_worker_start(s->worker, &st)) {
        conn_error(c, PROTO_ERR_INTERNAL, "the engine worker cannot take a session now");
        return;
    }
    c->upload = NULL; /* the worker's now */
    SRV_LOG(SRV_LOG_INFO, "session_start", SRV_KU("conn", c->id), SRV_KU("session", c->session),
            SRV_KI("slot", slot),
            SRV_KS("scene", c->scene >= 0 ? srv_scenes_name(s->scenes, c->scene) : "(upload)"),
            SRV_KU("seed", c->seed));
}

void session_promote_queue(srv_server *s) {
    if (s->draining) return;
    uint64_t id;
    int slot, changed = 0;
    while (srv_admission_promote(s->adm, &id, &slot)) {
        srv_conn *c = s->conns;
        while (c && !(c->session == id && c->state == CONN_QUEUED)) c = c->next;
        if (!c) { /* cannot happen: queued players leave the queue when they go */
            srv_admission_leave(s->adm, id);
            continue;
        }
        SRV_LOG(SRV_LOG_INFO, "queue_promoted", SRV_KU("conn", c->id), SRV_KU("session", id),
                SRV_KD("waited_s", srv_ns_to_s(srv_now_ns() - c->joined_ns)));
        start_session(c, slot);
        changed = 1;
    }
    if (changed) send_queue_positions(s);
}

void session_end(srv_conn *c, const char *why) {
    srv_server *s = c->srv;
    conn_state st = c->state;
    if (st == CONN_QUEUED) {
        srv_admission_leave(s->adm, c->session);
        SRV_LOG(SRV_LOG_INFO, "queue_left", SRV_KU("conn", c->id), SRV_KU("session", c->session),
                SRV_KS("why", why));
        send_queue_positions(s);
    } else if (st == CONN_STARTING || st == CONN_PLAYING) {
        int slot = srv_admission_leave(s->adm, c->session);
        if (slot >= 0 && s->slot_conn[slot] == c) s->slot_conn[slot] = NULL;
        if (s->worker) srv_worker_stop(s->worker, c->session);
        uint64_t sent = c->pacer_init ? c->pacer.sent : 0;
        uint64_t dropped = c->pacer_init ? c->pacer.dropped : 0;
        if (st == CONN_PLAYING) srv_metrics_add(s->metrics, SRV_C_SESSIONS_ENDED, 1);
        SRV_LOG(SRV_LOG_INFO, "session_end", SRV_KU("conn", c->id), SRV_KU("session", c->session),
                SRV_KS("why", why), SRV_KU("frames_sent", sent), SRV_KU("frames_dropped", dropped),
                SRV_KD("seconds", c->joined_ns ? srv_ns_to_s(srv_now_ns() - c->joined_ns) : 0.0));
    }
    srv_link_unref(c->link);
    c->link = NULL;
    if (c->pacer_init) {
        srv_pacer_free(&c->pacer);
        c->pacer_init = 0;
    }
    if (c->timer_init && !uv_is_closing((uv_handle_t *)&c->timer)) uv_timer_stop(&c->timer);
    free(c->upload);
    c->upload = NULL;
    c->session = 0;
    c->slot = -1;
    if (st != CONN_OPEN) c->state = CONN_HELLO;
    if (st == CONN_STARTING || st == CONN_PLAYING) session_promote_queue(s);
}

/* Join ------------------------------------------------------------------------------------------
 */

static void admit(srv_conn *c) {
    srv_server *s = c->srv;
    c->session = ++s->next_session_id;
    c->joined_ns = srv_now_ns();
    int where;
    switch (srv_admission_join(s->adm, c->session, &where)) {
    case SRV_ADMIT_SLOT:
        start_session(c, where);
        break;
    case SRV_ADMIT_QUEUED:
        c->state = CONN_QUEUED;
        SRV_LOG(SRV_LOG_INFO, "queue_join", SRV_KU("conn", c->id), SRV_KU("session", c->session),
                SRV_KI("position", where),
                SRV_KS("why", srv_admission_active(s->adm) < srv_admission_slots(s->adm)
                                  ? "engine at its measured capacity"
                                  : "every slot taken"));
        send_queue_position(c, 1, srv_now_ns());
        send_queue_positions(s); /* the others' queue length changed */
        break;
    case SRV_ADMIT_FULL:
        c->session = 0;
        c->state = CONN_HELLO;
        free(c->upload);
        c->upload = NULL;
        if (s->draining)
            conn_error(c, PROTO_ERR_SHUTTING_DOWN, "the server is shutting down");
        else
            conn_error(c, PROTO_ERR_SERVER_FULL,
                       "server full: %d of %d slots in use and %d of %d queue places taken",
                       srv_admission_active(s->adm), srv_admission_slots(s->adm),
                       srv_admission_queued(s->adm), srv_admission_queue_limit(s->adm));
        break;
    }
}

typedef struct upload_job {
    uv_work_t req;
    srv_conn *c;
    uint8_t *data;
    size_t len, max_pixels;
    int width, height;
    float *planes;
    int rc;
    char err[PROTO_MAX_TEXT];
} upload_job;

/* On a libuv threadpool thread: image.c is pure, so this touches nothing shared. */
static void upload_work(uv_work_t *req) {
    upload_job *j = req->data;
    img_rgb8 img;
    j->rc = img_decode(j->data, j->len, "upload", j->max_pixels, &img, j->err, sizeof j->err);
    free(j->data);
    j->data = NULL;
    if (j->rc) return;
    j->planes = malloc(3 * (size_t)j->width * (size_t)j->height * sizeof(float));
    if (!j->planes) {
        snprintf(j->err, sizeof j->err, "out of memory");
        j->rc = -1;
    } else {
        j->rc = img_prepare(&img, j->width, j->height, j->planes, j->err, sizeof j->err);
    }
    img_free(&img);
}

static void upload_done(uv_work_t *req, int status) {
    upload_job *j = req->data;
    srv_conn *c = j->c;
    c->srv->uploads_in_flight--;
    c->work_pending = 0;
    if (!c->wsi || c->state != CONN_PREPARING) { /* gone or moved on meanwhile */
        free(j->planes);
        free(j);
        conn_maybe_free(c);
        return;
    }
    if (status || j->rc) {
        c->state = CONN_HELLO;
        conn_error(c, PROTO_ERR_BAD_IMAGE, "%s", status ? "upload cancelled" : j->err);
        free(j->planes);
    } else {
        c->upload = j->planes;
        c->scene = -1;
        admit(c);
    }
    free(j);
}

/* --token and/or signed tokens (--token-secret): 1 when the join may go on, else the error is sent.
 */
static int token_ok(srv_conn *c, const char *token) {
    srv_server *s = c->srv;
    if (!s->cfg.token[0] && !s->token_secret_len) return 1;
    if (s->cfg.token[0] && consttime_eq(token, s->cfg.token)) return 1;
    char why[PROTO_MAX_TEXT];
    if (s->token_secret_len && srv_token_is_signed(token)) {
        if (!srv_token_check(s->token_secret, s->token_secret_len, token, (int64_t)time(NULL), why,
                             sizeof why))
            return 1;
        conn_error(c, PROTO_ERR_UNAUTHORIZED, "%s", why);
        return 0;
    }
    conn_error(c, PROTO_ERR_UNAUTHORIZED, token[0] ? "wrong token" : "this server needs a token");
    return 0;
}

static void handle_join(srv_conn *c, const proto_join *j) {
    srv_server *s = c->srv;
    if (c->state >= CONN_PREPARING) {
        conn_error(c, PROTO_ERR_ALREADY_JOINED, "join: already %s; leave first",
                   c->state == CONN_QUEUED ? "queued" : "in a session");
        return;
    }
    if (s->draining) {
        conn_error(c, PROTO_ERR_SHUTTING_DOWN, "the server is shutting down");
        return;
    }
    if (!token_ok(c, j->token)) return;
    if (j->variant[0] && eng_variant_parse(j->variant) != (int)s->mcfg.variant) {
        conn_error(c, PROTO_ERR_UNKNOWN_VARIANT,
                   "join.variant: '%s' is not served here (this server: %s)", j->variant,
                   eng_variant_name(s->mcfg.variant));
        return;
    }
    c->seed = j->has_seed ? j->seed : mix64(srv_now_ns() ^ (c->id << 32));
    if (j->image.len) {
        if (j->scene[0]) {
            conn_error(c, PROTO_ERR_BAD_FIELD, "join.img: give a scene or an image, not both");
            return;
        }
        if (!s->max_upload) {
            conn_error(c, PROTO_ERR_BAD_IMAGE,
                       "join.img: uploads are disabled (this model has no VAE encoder / CLIP); "
                       "pick a scene");
            return;
        }
        if (j->image.len > s->max_upload) {
            conn_error(c, PROTO_ERR_TOO_LARGE, "join.img: %zu bytes, over the limit of %u",
                       j->image.len, s->max_upload);
            return;
        }
        if (s->uploads_in_flight >= MAX_UPLOADS_IN_FLIGHT) {
            conn_error(c, PROTO_ERR_RATE_LIMITED,
                       "other uploads are being decoded; send the join again in a moment");
            return;
        }
        upload_job *job = calloc(1, sizeof *job);
        uint8_t *copy = job ? malloc(j->image.len) : NULL;
        if (!copy) {
            free(job);
            conn_error(c, PROTO_ERR_INTERNAL, "out of memory for the upload");
            return;
        }
        memcpy(copy, j->image.data, j->image.len);
        job->req.data = job;
        job->c = c;
        job->data = copy;
        job->len = j->image.len;
        job->max_pixels = s->cfg.max_image_pixels;
        job->width = s->width;
        job->height = s->height;
        if (uv_queue_work(s->loop, &job->req, upload_work, upload_done)) {
            free(copy);
            free(job);
            conn_error(c, PROTO_ERR_INTERNAL, "cannot queue the upload");
            return;
        }
        s->uploads_in_flight++;
        c->work_pending = 1;
        c->state = CONN_PREPARING;
        return;
    }
    int scene = 0;
    if (j->scene[0]) {
        scene = srv_scenes_find(s->scenes, j->scene);
        if (scene < 0) {
            conn_error(c, PROTO_ERR_UNKNOWN_SCENE, "join.scene: no scene '%s' (welcome lists them)",
                       j->scene);
            return;
        }
    }
    c->scene = scene;
    admit(c);
}

/* Other messages ------------------------------------------------------------------------------- */

static void send_welcome(srv_conn *c, uint32_t version) {
    srv_server *s = c->srv;
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_WELCOME;
    proto_welcome *w = &m.u.welcome;
    w->version = version;
    snprintf(w->server, sizeof w->server, "wmserve %s", WMSERVE_VERSION);
    w->limits.max_message_bytes = s->max_msg;
    w->limits.max_upload_bytes = s->max_upload;
    w->limits.max_image_pixels = s->has_encoders ? s->cfg.max_image_pixels : 0;
    w->limits.max_input_hz = s->cfg.max_input_hz;
    w->n_variants = 1;
    snprintf(w->variants[0], sizeof w->variants[0], "%s", eng_variant_name(s->mcfg.variant));
    w->n_scenes = srv_scenes_count(s->scenes);
    for (int i = 0; i < w->n_scenes; i++)
        snprintf(w->scenes[i], sizeof w->scenes[i], "%s", srv_scenes_name(s->scenes, i));
    w->token_required = s->cfg.token[0] || s->token_secret_len ? 1 : 0;
    conn_send(c, &m);
}

static void handle_hello(srv_conn *c, const proto_hello *h) {
    if (c->state != CONN_OPEN) {
        conn_error_as(c, PROTO_ERR_BAD_MESSAGE, 0, "hello: already received; ignored");
        return;
    }
    uint32_t v = proto_choose_version(h->min_version, h->max_version);
    if (!v) {
        conn_error_as(c, PROTO_ERR_VERSION, 1,
                      "hello: no common protocol version: the client speaks %u..%u, this server "
                      "%d..%d",
                      h->min_version, h->max_version, PROTO_VERSION_MIN, PROTO_VERSION);
        return;
    }
    SRV_LOG(SRV_LOG_DEBUG, "hello", SRV_KU("conn", c->id), SRV_KS("client", h->client),
            SRV_KU("version", v));
    c->state = CONN_HELLO;
    send_welcome(c, v);
}

static void handle_input(srv_conn *c, const proto_input *in, uint64_t now) {
    srv_server *s = c->srv;
    int r = srv_rate_hit(&c->rate, now);
    if (r == SRV_RATE_FATAL) {
        conn_error_as(c, PROTO_ERR_RATE_LIMITED, 1, "more than %u inputs within one second",
                      4 * s->cfg.max_input_hz);
        return;
    }
    if (r == SRV_RATE_DROP) { /* dropped unapplied; one error a second while it goes on */
        if (now - c->rate_error_ns >= SRV_NS_PER_S) {
            c->rate_error_ns = now;
            conn_error(c, PROTO_ERR_RATE_LIMITED, "over %u inputs per second: extra inputs dropped",
                       s->cfg.max_input_hz);
        }
        return;
    }
    if (c->state != CONN_PLAYING) {
        conn_error(c, PROTO_ERR_NOT_JOINED, "input before joined");
        return;
    }
    if (in->seq <= c->last_input_seq) {
        conn_error(c, PROTO_ERR_BAD_FIELD, "input.seq: %u is not greater than the last one (%u)",
                   in->seq, c->last_input_seq);
        return;
    }
    c->last_input_seq = in->seq;
    /* Key bits past the variant's keys are ignored (srv_actions_fill). */
    srv_link_input_apply(c->link, in, now);
}

static void send_joined(srv_conn *c);

static void handle_reset(srv_conn *c) {
    if (c->state != CONN_PLAYING) {
        conn_error(c, PROTO_ERR_NOT_JOINED, "reset before joined");
        return;
    }
    /* Frames not yet sent are dropped; those of blocks still in flight are discarded when they
     * arrive (older generation); the worker restarts the world and numbers frames from 0. */
    c->generation++;
    int dropped = srv_pacer_flush(&c->pacer);
    if (c->timer_init) uv_timer_stop(&c->timer);
    conn_publish_playback(c);
    if (srv_worker_reset(c->srv->worker, c->session, c->generation)) {
        conn_error(c, PROTO_ERR_INTERNAL, "the engine worker cannot take a reset now");
        return;
    }
    c->last_seen_seq = 0;
    send_joined(c);
    SRV_LOG(SRV_LOG_INFO, "session_reset", SRV_KU("conn", c->id), SRV_KU("session", c->session),
            SRV_KI("frames_flushed", dropped));
}

void session_on_message(srv_conn *c, const proto_msg *m, size_t raw_len) {
    (void)raw_len;
    uint64_t now = srv_now_ns();
    if (c->state == CONN_OPEN && m->type != PROTO_HELLO) {
        conn_error_as(c, PROTO_ERR_BAD_MESSAGE, 1, "%s: hello must be the first message",
                      proto_type_name(m->type));
        return;
    }
    switch (m->type) {
    case PROTO_HELLO:
        handle_hello(c, &m->u.hello);
        break;
    case PROTO_JOIN:
        handle_join(c, &m->u.join);
        break;
    case PROTO_INPUT:
        handle_input(c, &m->u.input, now);
        break;
    case PROTO_PING: {
        /* A ping flood must not crowd out the messages that matter: past half the control queue,
         * pings go unanswered. */
        if (c->ctl_count >= SRV_CTL_MAX / 2) break;
        proto_msg r;
        memset(&r, 0, sizeof r);
        r.type = PROTO_PONG;
        r.u.pong.id = m->u.ping.id;
        r.u.pong.client_ms = m->u.ping.client_ms;
        r.u.pong.server_ms = srv_mono_ms();
        conn_send(c, &r);
        break;
    }
    case PROTO_PONG:
        break; /* an answer to a server ping: nothing to do */
    case PROTO_RESET:
        handle_reset(c);
        break;
    case PROTO_LEAVE:
        /* Ends the session or the wait (if any) and closes with 1000 (PROTOCOL.md "Leave"). */
        session_end(c, "leave");
        conn_close(c, 1000, "leave");
        break;
    default:
        conn_error(c, PROTO_ERR_UNKNOWN_TYPE, "t: '%s' is not a client-to-server message",
                   proto_type_name(m->type));
    }
}

/* Engine worker events ------------------------------------------------------------------------ */

static void send_joined(srv_conn *c) {
    srv_server *s = c->srv;
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_JOINED;
    proto_joined *j = &m.u.joined;
    j->session = c->session;
    snprintf(j->variant, sizeof j->variant, "%s", eng_variant_name(s->mcfg.variant));
    j->width = (uint32_t)s->width;
    j->height = (uint32_t)s->height;
    j->fps = (uint32_t)s->cfg.fps;
    j->n_keys = s->nkeys;
    memcpy(j->keys, s->keys, sizeof j->keys);
    j->mouse = (uint8_t)(s->mcfg.enable_mouse ? 1 : 0);
    conn_send(c, &m);
}

static void on_ready(srv_server *s, uint64_t session) {
    srv_conn *c = conn_of_session(s, session);
    if (!c || c->state != CONN_STARTING) return;
    c->state = CONN_PLAYING;
    c->stats_mark_ns = srv_now_ns();
    c->last_activity_ns = c->stats_mark_ns; /* the idle clock restarts at joined */
    c->block_gap_ns = 0;
    c->frames_sent_mark = 0;
    c->last_seen_seq = 0;
    srv_metrics_add(s->metrics, SRV_C_SESSIONS_STARTED, 1);
    send_joined(c);
    SRV_LOG(SRV_LOG_INFO, "session_joined", SRV_KU("conn", c->id), SRV_KU("session", session),
            SRV_KI("slot", c->slot), SRV_KD("start_ms", srv_ns_to_ms(srv_now_ns() - c->joined_ns)));
}

static int cmp_float(const void *a, const void *b);

/* With --max-sessions 0, admission follows the engine's measured pace: a player needs a 12-frame
 * block every 12 / fps seconds, so with the recent median block time m (which includes whatever
 * else loads the machine) the engine keeps up with 12 / fps / m players, less a margin for the
 * slower blocks: the limit rises to floor(0.8 * 12 / fps / m) and falls to floor(0.9 * ...) (the
 * gap keeps it from flapping). Beyond it a join is queued: admitting more would make everyone
 * stall (PROTOCOL.md "Queue"). Nobody is
 * evicted; a queued player starts when players leave or blocks get faster. A --max-sessions the
 * operator set is kept as given (tests and deployments that pin it), with a warning when the
 * engine falls short of it. */
static void update_capacity(srv_server *s) {
    if (s->block_ms_n < 8) return; /* too few blocks to know: the warm-up's estimate */
    float v[SRV_BLOCK_SAMPLES];
    memcpy(v, s->block_ms, sizeof(float) * (size_t)s->block_ms_n);
    qsort(v, (size_t)s->block_ms_n, sizeof *v, cmp_float);
    double med_s = 1e-3 * v[(s->block_ms_n - 1) / 2];
    double need_s = (double)ENG_MAX_FRAMES_PER_BLOCK / s->cfg.fps;
    int cap = med_s > 0 ? (int)(0.9 * need_s / med_s) : s->cfg.max_sessions;
    if (!s->measured_slots) {
        int active = srv_admission_active(s->adm);
        if (active > cap && active > s->warned_capacity) {
            s->warned_capacity = active;
            SRV_LOG(SRV_LOG_WARN, "over_capacity", SRV_KI("players", active),
                    SRV_KI("engine_keeps_up_with", cap), SRV_KD("block_ms_p50", med_s * 1e3),
                    SRV_KS("hint", "--max-sessions 0 queues players beyond what the engine keeps "
                                   "up with"));
        }
        return;
    }
    int before = srv_admission_limit(s->adm), raise = (int)(0.8 * need_s / med_s);
    if (raise > before)
        srv_admission_set_limit(s->adm, raise);
    else if (cap < before)
        srv_admission_set_limit(s->adm, cap);
    int after = srv_admission_limit(s->adm);
    if (after == before) return;
    /* The next decision waits for 8 blocks run under the new limit: block times measured with one
     * player fewer or more are a different population, and mixing them made the limit flip at
     * every block near the boundary (seen on an H100 at ~200 ms blocks). */
    s->block_ms_n = 0;
    s->block_ms_i = 0;
    SRV_LOG(SRV_LOG_INFO, "capacity_changed", SRV_KI("players", after), SRV_KI("was", before),
            SRV_KD("block_ms_p50", med_s * 1e3), SRV_KI("max_sessions", s->cfg.max_sessions));
    if (after > before) session_promote_queue(s);
}

static void on_block(srv_server *s, srv_block *b) {
    uint64_t now = srv_now_ns();
    srv_conn *c = conn_of_session(s, b->session);
    int n = b->nframes;
    if (c && c->pacer_init && c->state == CONN_PLAYING && b->generation == c->generation) {
        double blk_s = srv_ns_to_s(b->t_vae - b->t_sample);
        srv_metrics_add(s->metrics, SRV_C_BLOCKS, 1);
        srv_metrics_observe(s->metrics, SRV_H_BLOCK, blk_s);
        srv_metrics_observe(s->metrics, SRV_H_STAGE_QUEUE, srv_ns_to_s(b->t_start - b->t_due));
        srv_metrics_observe(s->metrics, SRV_H_STAGE_DIT, srv_ns_to_s(b->t_dit - b->t_start));
        srv_metrics_observe(s->metrics, SRV_H_STAGE_VAE, srv_ns_to_s(b->t_vae - b->t_dit));
        srv_metrics_observe(s->metrics, SRV_H_STAGE_JPEG,
                            srv_ns_to_s(b->t_jpeg_done - b->t_jpeg_submit));
        srv_metrics_observe(s->metrics, SRV_H_DELIVER, srv_ns_to_s(now - b->t_sample));
        s->block_ms[s->block_ms_i] = (float)(blk_s * 1e3);
        s->block_ms_i = (s->block_ms_i + 1) % SRV_BLOCK_SAMPLES;
        if (s->block_ms_n < SRV_BLOCK_SAMPLES) s->block_ms_n++;
        update_capacity(s);
        /* Prebuffer: start (or restart after an underrun) only with enough frames to last until
         * the next block can arrive when it is urgent: the time from a block being due to its
         * frames being here (the engine queue behind other players, the block, JPEG), as a
         * decaying maximum. With a fast engine the first block alone is enough. */
        uint64_t lat = now > b->t_due ? now - b->t_due : 0;
        uint64_t decayed = c->block_gap_ns - c->block_gap_ns / 8;
        c->block_gap_ns = lat > decayed ? lat : decayed;
        /* At most what the scheduler is sure to fill: it stops adding blocks only once more than
         * capacity - 12 frames wait, so a larger threshold could wait forever. */
        uint64_t period = c->pacer.period_ns;
        int want = (int)((c->block_gap_ns + period - 1) / period) + 1;
        int most = s->cfg.buffer_frames - ENG_MAX_FRAMES_PER_BLOCK + 1;
        srv_pacer_set_prebuffer(&c->pacer, want < most ? want : most);
        int dropped = 0;
        for (int i = 0; i < n; i++) {
            srv_frame *f = &b->frames[i];
            if (!f->len) { /* its encoding failed (logged by the pool) */
                srv_pacer_discarded(&c->pacer, 1);
                continue;
            }
            dropped += srv_pacer_push(&c->pacer, f, now);
        }
        if (dropped) srv_metrics_add(s->metrics, SRV_C_FRAMES_DROPPED, (uint64_t)dropped);
        conn_publish_playback(c);
        conn_schedule_tick(c);
    } else if (c && c->pacer_init) { /* from before a reset */
        srv_pacer_discarded(&c->pacer, n);
        conn_publish_playback(c);
    }
    srv_worker_release(s->worker, b);
}

void session_on_worker_event(srv_server *s, srv_worker_event *ev) {
    switch (ev->type) {
    case SRV_WEV_READY:
        on_ready(s, ev->session);
        break;
    case SRV_WEV_BLOCK:
        on_block(s, ev->block);
        break;
    case SRV_WEV_FAILED: {
        srv_conn *c = conn_of_session(s, ev->session);
        if (!c) break;
        conn_error(c, ev->code, "%s", ev->message);
        if (!proto_error_fatal(ev->code)) session_end(c, "engine failure");
        break;
    }
    case SRV_WEV_EXITED:
        break; /* server.c's */
    }
}

/* Per frame and per second ----------------------------------------------------------------------
 */

void session_frame_sent(srv_conn *c, const srv_frame *f, size_t bytes, uint64_t now_ns) {
    (void)bytes;
    srv_metrics_add(c->srv->metrics, SRV_C_FRAMES_SENT, 1);
    if (f->input_seq && f->input_seq != c->last_seen_seq && f->input_recv_ns &&
        now_ns > f->input_recv_ns) {
        srv_metrics_observe(c->srv->metrics, SRV_H_INPUT_TO_FRAME,
                            srv_ns_to_s(now_ns - f->input_recv_ns));
        c->last_seen_seq = f->input_seq;
    }
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void session_housekeeping(srv_conn *c, uint64_t now) {
    srv_server *s = c->srv;
    if (c->wsi && c->closing && now - c->closing_ns > 4 * SRV_NS_PER_S) {
        /* Backstop: the close timeout set when closing began has not taken it down. */
        SRV_LOG(SRV_LOG_WARN, "ws_kill", SRV_KU("conn", c->id),
                SRV_KS("why", "close not completed"));
        conn_kill(c);
    }
    if (!c->wsi || c->closing) return;
    /* PROTOCOL.md: any message but a ping counts as activity; without one for the idle timeout (or
     * no hello in that time) the connection is closed. The clock stops while the server keeps the
     * client waiting (decoding its upload, queued, starting its session) and restarts at joined. */
    uint64_t idle = (uint64_t)s->cfg.idle_timeout_s * SRV_NS_PER_S;
    int waiting =
        c->state == CONN_PREPARING || c->state == CONN_QUEUED || c->state == CONN_STARTING;
    if (waiting) c->last_activity_ns = now;
    if (idle && !waiting && now - c->last_activity_ns > idle) {
        conn_error(c, PROTO_ERR_IDLE_TIMEOUT, "nothing received for %d s%s", s->cfg.idle_timeout_s,
                   c->state == CONN_OPEN ? " (no hello)" : "");
        return;
    }
    if (c->state == CONN_QUEUED) send_queue_position(c, 0, now);
    if (c->state != CONN_PLAYING) return;
    uint64_t stall = srv_pacer_stall_ns(&c->pacer, now);
    if ((double)stall > s->cfg.slow_client_s * 1e9) {
        conn_error(c, PROTO_ERR_SLOW_CONSUMER, "a frame waited %.1f s for the client to read",
                   srv_ns_to_s(stall));
        return;
    }
    proto_msg m;
    memset(&m, 0, sizeof m);
    m.type = PROTO_STATS;
    proto_stats *st = &m.u.stats;
    double dt = srv_ns_to_s(now - c->stats_mark_ns);
    st->fps = dt > 0 ? (float)((double)(c->pacer.sent - c->frames_sent_mark) / dt) : 0;
    c->frames_sent_mark = c->pacer.sent;
    c->stats_mark_ns = now;
    st->frames_sent = c->pacer.sent;
    st->frames_dropped = c->pacer.dropped;
    if (s->block_ms_n) {
        float v[SRV_BLOCK_SAMPLES];
        memcpy(v, s->block_ms, sizeof(float) * (size_t)s->block_ms_n);
        qsort(v, (size_t)s->block_ms_n, sizeof *v, cmp_float);
        st->block_ms_p50 = v[(s->block_ms_n - 1) / 2];
        st->block_ms_p99 = v[(s->block_ms_n - 1) * 99 / 100];
    }
    st->queue_depth =
        (uint32_t)(srv_pacer_buffered(&c->pacer) + (srv_pacer_outbox(&c->pacer) ? 1 : 0));
    conn_send(c, &m);
}
