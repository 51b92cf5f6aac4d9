/* Unit tests of the server's pure parts (no sockets, no engine thread):
 *   admission: slots, FIFO queue, "full", leave from slot and queue, promotion order, closing;
 *   pacing: ring drop policy (oldest dropped at a full ring), stale outbox replacement, underrun
 * and restart, schedule anchoring, stall measurement, flush and accounting; scheduler: deadlines,
 * earliest-deadline-first order, lead window, ring capacity, wake times; actions: key bitmask to
 * keyboard vector, summed mouse clamping, variants without mouse, input accumulation and sampling;
 * the message rate limiter; metrics: Prometheus text (types, cumulative buckets, +Inf, labels,
 * error codes); static paths: sanitising of request paths, and resolution in a real folder with a
 * symlink that leaves it; content types; logging: text and JSON lines; configuration: defaults,
 * environment, flags, errors; JPEG: an encoded frame starts with SOI and ends with EOI and decodes
 * to the right size; the built-in scene. */
#define _XOPEN_SOURCE 700 /* realpath, mkdtemp */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "engine/config.h"
#include "server/access.h"
#include "server/admission.h"
#include "server/config.h"
#include "server/input.h"
#include "server/jpeg.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/pacing.h"
#include "server/scenes.h"
#include "server/scheduler.h"
#include "server/static_files.h"
#include "server/token.h"
#include "tests/test_util.h"

#define MS 1000000ull

static void test_admission(void) {
    srv_admission *a = srv_admission_create(2, 2);
    int w;
    tu_check(srv_admission_join(a, 1, &w) == SRV_ADMIT_SLOT && w == 0,
             "admission: 1st join -> slot 0");
    tu_check(srv_admission_join(a, 2, &w) == SRV_ADMIT_SLOT && w == 1,
             "admission: 2nd join -> slot 1");
    tu_check(srv_admission_join(a, 3, &w) == SRV_ADMIT_QUEUED && w == 1,
             "admission: 3rd -> queue 1");
    tu_check(srv_admission_join(a, 4, &w) == SRV_ADMIT_QUEUED && w == 2,
             "admission: 4th -> queue 2");
    tu_check(srv_admission_join(a, 5, &w) == SRV_ADMIT_FULL, "admission: 5th -> full");
    tu_check(srv_admission_active(a) == 2 && srv_admission_queued(a) == 2,
             "admission: 2 active, 2 queued");
    /* the queued 3 leaves: 4 moves up */
    tu_check(srv_admission_leave(a, 3) == -1 && srv_admission_position(a, 4) == 1,
             "admission: queued player leaves, the next moves to position 1");
    uint64_t id;
    int slot;
    tu_check(!srv_admission_promote(a, &id, &slot), "admission: no promotion while slots are full");
    tu_check(srv_admission_leave(a, 1) == 0, "admission: slot 0 freed");
    /* a newcomer does not jump the queue */
    tu_check(srv_admission_join(a, 6, &w) == SRV_ADMIT_QUEUED && w == 2,
             "admission: newcomer queued behind the waiting player although a slot is free");
    tu_check(srv_admission_promote(a, &id, &slot) && id == 4 && slot == 0,
             "admission: promote gives slot 0 to the queue head (id %llu)", (unsigned long long)id);
    tu_check(srv_admission_position(a, 6) == 1 && srv_admission_queued_at(a, 0) == 6,
             "admission: the newcomer is now first");
    tu_check(!srv_admission_promote(a, &id, &slot), "admission: nothing more to promote");
    tu_check(srv_admission_slot_of(a, 4) == 0 && srv_admission_slot_owner(a, 1) == 2,
             "admission: slot lookups");
    srv_admission_close(a);
    tu_check(srv_admission_join(a, 7, &w) == SRV_ADMIT_FULL,
             "admission: closed -> every join full");
    srv_admission_destroy(a);
    srv_admission *z = srv_admission_create(1, 0);
    tu_check(srv_admission_join(z, 1, &w) == SRV_ADMIT_SLOT &&
                 srv_admission_join(z, 2, &w) == SRV_ADMIT_FULL,
             "admission: queue of 0 -> second player full at once");
    srv_admission_destroy(z);
    /* A limit below the slots (the engine's measured capacity): joins queue while free slots
     * remain; raising it lets promote fill them; lowering it evicts nobody. */
    srv_admission *l = srv_admission_create(3, 4);
    srv_admission_set_limit(l, 1);
    tu_check(srv_admission_join(l, 1, &w) == SRV_ADMIT_SLOT &&
                 srv_admission_join(l, 2, &w) == SRV_ADMIT_QUEUED && w == 1,
             "admission: limit 1 of 3 slots -> the 2nd player is queued");
    tu_check(!srv_admission_promote(l, &id, &slot), "admission: no promotion at the limit");
    srv_admission_set_limit(l, 9);
    tu_check(srv_admission_limit(l) == 3 && srv_admission_promote(l, &id, &slot) && id == 2,
             "admission: limit raised (clamped to the 3 slots) -> the queued player is promoted");
    srv_admission_set_limit(l, 0);
    tu_check(srv_admission_limit(l) == 1 && srv_admission_active(l) == 2 &&
                 srv_admission_join(l, 3, &w) == SRV_ADMIT_QUEUED,
             "admission: limit lowered below the active players (clamped to 1): nobody evicted, "
             "joins queue");
    tu_check(srv_admission_leave(l, 1) == 0 && !srv_admission_promote(l, &id, &slot) &&
                 srv_admission_leave(l, 2) == 1 && srv_admission_promote(l, &id, &slot) && id == 3,
             "admission: the queue moves only once the active players are below the limit");
    srv_admission_destroy(l);
}

static void push_frames(srv_pacer *p, int n, uint64_t first, uint64_t now, int *dropped) {
    for (int i = 0; i < n; i++) {
        srv_frame f;
        memset(&f, 0, sizeof f);
        uint8_t byte = (uint8_t)(first + (uint64_t)i);
        srv_frame_set_jpeg(&f, &byte, 1);
        f.frame = first + (uint64_t)i;
        *dropped += srv_pacer_push(p, &f, now);
        srv_frame_free(&f);
    }
}

static void test_pacing(void) {
    srv_pacer p;
    srv_pacer_init(&p, 24, 25);
    tu_check(p.period_ns == 40 * MS, "pacing: 25 fps -> 40 ms period");
    uint64_t t = 1000 * MS;
    int dropped = 0;
    push_frames(&p, 12, 0, t, &dropped);
    tu_check(p.next_due_ns == t && dropped == 0, "pacing: first block makes the pacer due now");
    int r = srv_pacer_tick(&p, t);
    srv_frame *o = srv_pacer_outbox(&p);
    tu_check((r & SRV_TICK_RELEASED) && o && o->frame == 0 && p.next_due_ns == t + 40 * MS,
             "pacing: tick releases frame 0, next due +40 ms");
    srv_pacer_sent(&p);
    tu_check(!srv_pacer_outbox(&p) && p.sent == 1, "pacing: sent empties the outbox");
    /* slow client: the outbox is not sent before the next tick */
    srv_pacer_tick(&p, t + 40 * MS);
    tu_check(srv_pacer_stall_ns(&p, t + 60 * MS) == 20 * MS,
             "pacing: stall measured from release (20 ms)");
    r = srv_pacer_tick(&p, t + 80 * MS);
    o = srv_pacer_outbox(&p);
    tu_check((r & SRV_TICK_DROPPED) && o->frame == 2 && p.dropped == 1,
             "pacing: unsent frame 1 dropped as stale, frame 2 in the outbox");
    tu_check(srv_pacer_stall_ns(&p, t + 100 * MS) == 60 * MS,
             "pacing: stall keeps counting from the first unsent frame (60 ms)");
    srv_pacer_sent(&p);
    /* ring overflow: 9 frames left + 24 pushed -> the 9 oldest dropped */
    tu_check(srv_pacer_buffered(&p) == 9, "pacing: 9 frames buffered");
    dropped = 0;
    push_frames(&p, 24, 100, t + 100 * MS, &dropped);
    tu_check(dropped == 9 && srv_pacer_buffered(&p) == 24, "pacing: full ring drops the 9 oldest");
    srv_pacer_tick(&p, t + 120 * MS);
    tu_check(srv_pacer_outbox(&p)->frame == 100, "pacing: the oldest kept frame (100) goes next");
    srv_pacer_sent(&p);
    tu_check(p.consumed == 3 + 9 + 1 + 0 &&
                 p.consumed + (uint64_t)srv_pacer_buffered(&p) == 12 + 24,
             "pacing: consumed %llu + buffered %d = frames pushed 36",
             (unsigned long long)p.consumed, srv_pacer_buffered(&p));
    /* a late tick re-anchors instead of bursting */
    uint64_t due = p.next_due_ns;
    srv_pacer_tick(&p, due + 500 * MS);
    tu_check(p.next_due_ns == due + 540 * MS, "pacing: tick 500 ms late -> next due now + period");
    srv_pacer_sent(&p);
    /* underrun */
    int removed = srv_pacer_flush(&p);
    tu_check(removed == 22 && p.next_due_ns == 0, "pacing: flush removes 22 and stops");
    r = srv_pacer_tick(&p, due + 600 * MS);
    tu_check((r & SRV_TICK_UNDERRUN) && p.underruns == 1 && p.next_due_ns == 0,
             "pacing: tick on an empty ring is an underrun and stops the pacer");
    dropped = 0;
    push_frames(&p, 12, 200, due + 700 * MS, &dropped);
    tu_check(p.next_due_ns == due + 700 * MS,
             "pacing: frames after an underrun restart it at once");
    srv_pacer_set_prebuffer(&p, 100);
    tu_check(p.prebuffer == 24, "pacing: prebuffer clamped to the capacity (%d)", p.prebuffer);
    srv_pacer_set_prebuffer(&p, 13);
    srv_pacer_flush(&p);
    dropped = 0;
    push_frames(&p, 9, 300, due + 800 * MS, &dropped);
    tu_check(p.next_due_ns == 0, "pacing: 9 frames do not start a pacer that wants 13");
    push_frames(&p, 12, 309, due + 900 * MS, &dropped);
    tu_check(p.next_due_ns == due + 900 * MS, "pacing: 21 frames do");
    uint64_t before = p.consumed;
    srv_pacer_discarded(&p, 12);
    tu_check(p.consumed == before + 12, "pacing: discarded frames count as consumed");
    srv_pacer_free(&p);
}

static void test_scheduler(void) {
    uint64_t now = 10000 * MS, P = 40 * MS;
    srv_sched_entry e[3];
    memset(e, 0, sizeof e);
    for (int i = 0; i < 3; i++) {
        e[i].ready = 1;
        e[i].period_ns = P;
        e[i].block_frames = 12;
        e[i].capacity = 24;
    }
    /* 0: 20 frames buffered, next tick in 10 ms -> needs frames at now + 10 + 800 ms */
    e[0].produced = 120, e[0].consumed = 100, e[0].next_due_ns = now + 10 * MS;
    /* 1: 5 frames buffered -> now + 5 + 200 ms */
    e[1].produced = 50, e[1].consumed = 45, e[1].next_due_ns = now + 5 * MS;
    /* 2: new session, nothing yet -> deadline now */
    e[2].produced = 0, e[2].consumed = 0, e[2].next_due_ns = 0;
    tu_check(srv_sched_deadline(&e[0], now) == now + 810 * MS &&
                 srv_sched_deadline(&e[1], now) == now + 205 * MS &&
                 srv_sched_deadline(&e[2], now) == now,
             "scheduler: deadlines = next tick + buffered frames x period");
    uint64_t wake;
    int pick = srv_sched_pick(e, 3, now, 100 * MS, &wake);
    tu_check(pick == 2, "scheduler: the session with no frames goes first (picked %d)", pick);
    e[2].ready = 0;
    pick = srv_sched_pick(e, 3, now, 100 * MS, &wake);
    tu_check(pick == -1 && wake == now + 105 * MS,
             "scheduler: nothing within the 100 ms lead; wake at deadline - lead (+%.0f ms)",
             (double)(wake - now) / MS);
    pick = srv_sched_pick(e, 3, now, 300 * MS, &wake);
    tu_check(pick == 1, "scheduler: with a 300 ms lead the earlier deadline (1) is picked");
    pick = srv_sched_pick(e, 3, now, 900 * MS, &wake);
    tu_check(pick == 1, "scheduler: both eligible -> earliest deadline first (1)");
    /* capacity: 20 buffered + 12 > 24 -> not before 8 more frames are consumed */
    e[1].ready = 0;
    uint64_t at = srv_sched_eligible_at(&e[0], now, 2000 * MS);
    tu_check(at == now + 10 * MS + 7 * P,
             "scheduler: a full ring makes it wait until 8 ticks have consumed room (+%.0f ms)",
             (double)(at - now) / MS);
    e[0].next_due_ns = 0;
    tu_check(srv_sched_eligible_at(&e[0], now, 2000 * MS) == UINT64_MAX,
             "scheduler: full ring with pacing stopped -> wait for an event");
    e[0].produced = 109; /* 9 on their way to a stopped pacer (prebuffering) */
    tu_check(srv_sched_deadline(&e[0], now) == now + 9 * P &&
                 srv_sched_eligible_at(&e[0], now, 0) <= now,
             "scheduler: pacing stopped with 9 frames on their way -> deadline now + 9 periods "
             "(+%.0f ms, want +360), eligible now",
             (double)(srv_sched_deadline(&e[0], now) - now) / MS);
    /* A prebuffering newcomer (0) must not make a player (1, 205 ms of frames left) stall. */
    e[1].ready = 1;
    pick = srv_sched_pick(e, 3, now, 300 * MS, &wake);
    tu_check(pick == 1,
             "scheduler: a player running dry in 205 ms goes before a newcomer filling "
             "its prebuffer (picked %d, want 1)",
             pick);
    pick = srv_sched_pick(e, 3, now, 100 * MS, &wake);
    tu_check(pick == 0,
             "scheduler: ... which gets the engine while the player is not due yet "
             "(picked %d, want 0)",
             pick);
    /* Waiting sessions (stopped, nothing on the way): the longest wait first, whatever the index;
     * both before the player. */
    e[0].produced = e[0].consumed, e[0].waiting_since_ns = now - 50 * MS;
    e[2].ready = 1, e[2].waiting_since_ns = now - 800 * MS;
    tu_check(srv_sched_deadline(&e[2], now) == now - 800 * MS &&
                 srv_sched_deadline(&e[2], now - 900 * MS) == now - 900 * MS,
             "scheduler: a waiting session's deadline is when it began to wait (never later than "
             "now)");
    pick = srv_sched_pick(e, 3, now, 300 * MS, &wake);
    tu_check(pick == 2,
             "scheduler: of two waiting sessions the one waiting longer goes first "
             "(picked %d, want 2)",
             pick);
    e[0].ready = e[1].ready = e[2].ready = 0;
    pick = srv_sched_pick(e, 3, now, 100 * MS, &wake);
    tu_check(pick == -1 && wake == UINT64_MAX, "scheduler: nobody ready -> sleep until an event");
}

static void test_actions(void) {
    eng_config cu, ct;
    char err[256];
    eng_config_preset(&cu, "tiny", ENG_VARIANT_UNIVERSAL, err, sizeof err);
    eng_config_preset(&ct, "tiny", ENG_VARIANT_TEMPLERUN, err, sizeof err);
    srv_input_state st;
    memset(&st, 0, sizeof st);
    proto_input in = {
        .seq = 1, .client_ms = 111, .keys = 0x5, .mouse_dy = 0.05f, .mouse_dx = -0.3f};
    srv_input_apply(&st, &in, 7);
    in.seq = 2, in.client_ms = 222, in.keys = 0x9, in.mouse_dy = 0.05f, in.mouse_dx = -0.3f;
    srv_input_apply(&st, &in, 9);
    srv_input_sample s;
    srv_input_take(&st, &s);
    tu_check(s.keys == 0x9 && s.seq == 2 && s.client_ms == 222 && s.recv_ns == 9,
             "input: newest keys, seq, client_ms and arrival win");
    tu_check(fabsf(s.mouse_dy - 0.1f) < 1e-6f && fabsf(s.mouse_dx + 0.6f) < 1e-6f,
             "input: mouse motion sums (dy %.3f, dx %.3f)", s.mouse_dy, s.mouse_dx);
    srv_input_sample s2;
    srv_input_take(&st, &s2);
    tu_check(s2.mouse_dy == 0 && s2.mouse_dx == 0 && s2.keys == 0x9,
             "input: taking a sample resets the mouse sums, keeps the keys");
    eng_action_frame a[12];
    srv_actions_fill(&cu, &s, 12, a);
    int same = 1;
    for (int i = 1; i < 12; i++) same &= !memcmp(&a[i], &a[0], sizeof a[0]);
    tu_check(a[0].keyboard[0] == 1 && a[0].keyboard[1] == 0 && a[0].keyboard[2] == 0 &&
                 a[0].keyboard[3] == 1 && same,
             "actions: keys 0b1001 -> keyboard [1 0 0 1] on all 12 frames");
    tu_check(fabsf(a[0].mouse[0] - 0.1f) < 1e-6f && a[0].mouse[1] == -SRV_MOUSE_MAX,
             "actions: mouse (%.3f, %.3f): dy kept, dx clamped to -%.2f", a[0].mouse[0],
             a[0].mouse[1], SRV_MOUSE_MAX);
    s.keys = 0xFFFFFFFFu;
    srv_actions_fill(&ct, &s, 9, a);
    float ksum = 0;
    for (int k = 0; k < ENG_MAX_KDIM; k++) ksum += a[8].keyboard[k];
    tu_check(ksum == 7 && a[8].mouse[0] == 0 && a[8].mouse[1] == 0,
             "actions: templerun takes 7 keys and no mouse (sum %.0f)", ksum);
    memset(&st, 0, sizeof st);
    in.mouse_dx = NAN;
    in.mouse_dy = 1e30f;
    for (int i = 0; i < 3; i++) srv_input_apply(&st, &in, 1);
    tu_check(st.mouse_dx == 0 && isfinite(st.mouse_dy),
             "input: NaN ignored, huge sums stay finite");

    srv_rate r;
    srv_rate_init(&r, 10);
    int ok = 0, drop = 0, fatal = 0;
    for (int i = 0; i < 30; i++) {
        int v = srv_rate_hit(&r, (uint64_t)i * 10 * MS); /* 100 Hz for 0.3 s */
        ok += v == SRV_RATE_OK, drop += v == SRV_RATE_DROP, fatal += v == SRV_RATE_FATAL;
    }
    tu_check(ok == 10 && drop == 20 && fatal == 0,
             "rate: 10/s limit, 30 inputs in one second -> %d pass, %d dropped, %d fatal", ok, drop,
             fatal);
    ok = 0;
    for (int i = 0; i < 10; i++)
        ok += srv_rate_hit(&r, 1000 * MS + (uint64_t)i * 100 * MS) == SRV_RATE_OK;
    tu_check(ok == 10, "rate: the next second starts a fresh window (%d of 10 pass)", ok);
    srv_rate_init(&r, 10);
    int last = 0;
    for (int i = 0; i < 41; i++) last = srv_rate_hit(&r, 5 * MS);
    tu_check(last == SRV_RATE_FATAL, "rate: the 41st input within a second (> 4 x 10) is fatal");
}

static void test_metrics(void) {
    srv_metrics *m = srv_metrics_create();
    srv_metrics_add(m, SRV_C_FRAMES_SENT, 5);
    srv_metrics_error(m, PROTO_ERR_SERVER_FULL);
    srv_metrics_observe(m, SRV_H_STAGE_DIT, 0.003);
    srv_metrics_observe(m, SRV_H_STAGE_DIT, 0.02);
    srv_metrics_observe(m, SRV_H_STAGE_DIT, 100);
    srv_metrics_observe(m, SRV_H_BLOCK, NAN);
    srv_gauges g = {.sessions_active = 2, .sessions_queued = 1};
    srv_metrics_set_gauges(m, &g);
    srv_buf b = {0};
    srv_metrics_render(m, &b);
    const char *want[] = {
        "# TYPE wmserve_sessions_active gauge\nwmserve_sessions_active 2\n",
        "wmserve_sessions_queued 1\n",
        "# TYPE wmserve_frames_sent_total counter\nwmserve_frames_sent_total 5\n",
        "wmserve_errors_total{code=\"server_full\"} 1\n",
        "wmserve_errors_total{code=\"bad_message\"} 0\n",
        "# TYPE wmserve_stage_seconds histogram\n",
        "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"0.0025\"} 0\n",
        "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"0.005\"} 1\n",
        "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"0.025\"} 2\n",
        "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"5\"} 2\n",
        "wmserve_stage_seconds_bucket{stage=\"dit\",le=\"+Inf\"} 3\n",
        "wmserve_stage_seconds_count{stage=\"dit\"} 3\n",
        "wmserve_stage_seconds_sum{stage=\"dit\"} 100.023\n",
        "wmserve_block_seconds_count 0\n",
        "wmserve_input_to_frame_seconds_bucket{le=\"+Inf\"} 0\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char shown[96];
        snprintf(shown, sizeof shown, "%s", want[i]);
        for (char *p = shown; *p; p++)
            if (*p == '\n') *p = '|';
        tu_check(strstr(b.data, want[i]) != NULL, "metrics: text has '%s'", shown);
    }
    /* Every line is a comment or "name{labels} value". */
    int bad = 0, lines = 0;
    for (char *line = b.data; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) {
            bad++;
            break;
        }
        lines++;
        if (line[0] != '#') {
            char *sp = memchr(line, ' ', (size_t)(nl - line));
            if (!sp || sp == line || strncmp(line, "wmserve_", 8)) bad++;
            char *end;
            strtod(sp ? sp + 1 : line, &end);
            if (end != nl) bad++;
        }
        line = nl + 1;
    }
    tu_check(bad == 0 && b.data[b.len - 1] == '\n', "metrics: %d lines, all well-formed", lines);
    srv_buf_free(&b);
    srv_metrics_destroy(m);
}

static void test_static_paths(void) {
    struct {
        const char *in, *out;
        int rc;
    } cases[] = {
        {"/", "index.html", 0},
        {"/app.js", "app.js", 0},
        {"/js/app.js?v=3", "js/app.js", 0},
        {"//js//x.css", "js/x.css", 0},
        {"/sub/", "sub/index.html", 0},
        {"/../etc/passwd", NULL, SRV_STATIC_BAD_REQUEST},
        {"/a/../../b", NULL, SRV_STATIC_BAD_REQUEST},
        {"/a/./b", NULL, SRV_STATIC_BAD_REQUEST},
        {"/.git/config", NULL, SRV_STATIC_FORBIDDEN},
        {"/a\\..\\b", NULL, SRV_STATIC_BAD_REQUEST},
        {"/a\x01", NULL, SRV_STATIC_BAD_REQUEST},
        {"relative", NULL, SRV_STATIC_BAD_REQUEST},
        {"", NULL, SRV_STATIC_BAD_REQUEST},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char rel[256], err[128] = "";
        int rc = srv_static_clean_path(cases[i].in, strlen(cases[i].in), rel, sizeof rel, err,
                                       sizeof err);
        int ok = rc == cases[i].rc && (rc || !strcmp(rel, cases[i].out));
        tu_check(ok, "static: '%s' -> %d %s%s", cases[i].in, rc, rc ? err : rel, "");
    }
    char rel[16], err[128];
    tu_check(srv_static_clean_path("/a\0b", 4, rel, sizeof rel, err, sizeof err) ==
                 SRV_STATIC_BAD_REQUEST,
             "static: embedded NUL refused (%s)", err);
    tu_check(srv_static_clean_path("/aaaaaaaaaaaaaaaaaaaa", 21, rel, sizeof rel, err, sizeof err) ==
                 SRV_STATIC_BAD_REQUEST,
             "static: path longer than the buffer refused");

    /* A real folder: root/index.html, root/sub/index.html, a symlink to a file outside. */
    char root[] = "/tmp/wm_static_XXXXXX";
    if (!mkdtemp(root)) {
        tu_check(0, "static: mkdtemp");
        return;
    }
    char p[512], outside[512], real_root[4096], out[4096];
    snprintf(p, sizeof p, "%s/index.html", root);
    FILE *f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/sub", root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/index.html", root);
    f = fopen(p, "w");
    fputs("y", f);
    fclose(f);
    snprintf(outside, sizeof outside, "%s.secret", root);
    f = fopen(outside, "w");
    fputs("s", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/leak", root);
    tu_check(symlink(outside, p) == 0, "static: made a symlink out of the root");
    snprintf(p, sizeof p, "%s/inner", root);
    tu_check(symlink("index.html", p) == 0, "static: made a symlink inside the root");
    tu_check(realpath(root, real_root) != NULL, "static: realpath of the root");
    int rc = srv_static_resolve(real_root, "/", 1, out, sizeof out, err, sizeof err);
    tu_check(rc == 0 && strstr(out, "/index.html"), "static: / -> %s", rc ? err : out);
    rc = srv_static_resolve(real_root, "/sub", 4, out, sizeof out, err, sizeof err);
    tu_check(rc == 0 && strstr(out, "/sub/index.html"),
             "static: /sub (a folder) -> its index.html");
    rc = srv_static_resolve(real_root, "/leak", 5, out, sizeof out, err, sizeof err);
    tu_check(rc == SRV_STATIC_FORBIDDEN, "static: symlink leaving the root -> %d (%s)", rc, err);
    rc = srv_static_resolve(real_root, "/inner", 6, out, sizeof out, err, sizeof err);
    tu_check(rc == 0, "static: symlink inside the root is served");
    rc = srv_static_resolve(real_root, "/missing.js", 11, out, sizeof out, err, sizeof err);
    tu_check(rc == SRV_STATIC_NOT_FOUND, "static: missing file -> 404");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, outside);
    if (system(cmd)) {
    }
    tu_check(!strcmp(srv_static_content_type("a/b.JS"), "text/javascript; charset=utf-8") &&
                 !strcmp(srv_static_content_type("x.html"), "text/html; charset=utf-8") &&
                 !strcmp(srv_static_content_type("x.wasm"), "application/wasm") &&
                 !strcmp(srv_static_content_type("noext"), "application/octet-stream") &&
                 !strcmp(srv_static_content_type("dir.d/noext"), "application/octet-stream"),
             "static: content types by extension");
}

static void test_log(void) {
    srv_kv kv[] = {SRV_KS("peer", "1.2.3.4"), SRV_KU("session", 7), SRV_KS("msg", "a \"b\"=c"),
                   SRV_KD("ms", 1.5),         SRV_KB("ok", 1),      SRV_KI("n", -3)};
    srv_buf b = {0};
    srv_log_format_line(&b, SRV_LOG_TEXT, 0.0, SRV_LOG_INFO, "ev", kv, 6);
    tu_check(
        !strcmp(b.data,
                "1970-01-01T00:00:00.000Z info ev peer=1.2.3.4 session=7 msg=\"a \\\"b\\\"=c\" "
                "ms=1.5 ok=true n=-3\n"),
        "log text: %s", b.data);
    srv_buf_reset(&b);
    srv_log_format_line(&b, SRV_LOG_JSON, 1234.0, SRV_LOG_WARN, "ev", kv, 6);
    tu_check(!strcmp(b.data,
                     "{\"ts\":\"1970-01-01T00:00:01.234Z\",\"level\":\"warn\",\"event\":\"ev\","
                     "\"peer\":\"1.2.3.4\",\"session\":7,\"msg\":\"a \\\"b\\\"=c\",\"ms\":1.5,"
                     "\"ok\":true,\"n\":-3}\n"),
             "log json: %s", b.data);
    srv_buf_free(&b);
    tu_check(srv_log_parse_level("debug") == SRV_LOG_DEBUG && srv_log_parse_level("loud") == -1 &&
                 srv_log_parse_format("json") == SRV_LOG_JSON,
             "log: level and format names");
}

static const char *fake_env_port(const char *name) {
    if (!strcmp(name, "WMSERVE_PORT")) return "9000";
    if (!strcmp(name, "WMSERVE_TOKEN")) return "s3cret";
    return NULL;
}
static const char *fake_env_bad(const char *name) {
    return !strcmp(name, "WMSERVE_FPS") ? "fast" : NULL;
}

static void test_config(void) {
    srv_config c;
    char err[256];
    FILE *null = fopen("/dev/null", "w");
    char *a0[] = {"wmserve", NULL};
    int rc = srv_config_parse(&c, 1, a0, NULL, null, err, sizeof err);
    tu_check(rc == 0 && c.port == 8080 && !strcmp(c.bind, "127.0.0.1") &&
                 !strcmp(c.model, "synthetic:tiny") && c.fps == 25 && c.jpeg_quality == 85 &&
                 c.max_queue == 8 && c.idle_timeout_s == 60 && !c.token[0] &&
                 c.buffer_frames == 24 && c.log_level == SRV_LOG_INFO,
             "config: defaults");
    char *a1[] = {"wmserve", "--port", "7000", "--fps=30", "--log-format", "json", NULL};
    rc = srv_config_parse(&c, 6, a1, fake_env_port, null, err, sizeof err);
    tu_check(rc == 0 && c.port == 7000 && c.fps == 30 && c.log_format == SRV_LOG_JSON &&
                 !strcmp(c.token, "s3cret"),
             "config: flags override the environment, environment fills the rest");
    char *a2[] = {"wmserve", "--fps", "0", NULL};
    rc = srv_config_parse(&c, 3, a2, NULL, null, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "--fps"), "config: out of range -> '%s'", err);
    char *a3[] = {"wmserve", "--bogus", NULL};
    rc = srv_config_parse(&c, 2, a3, NULL, null, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "--bogus"), "config: unknown flag -> '%s'", err);
    rc = srv_config_parse(&c, 1, a0, fake_env_bad, null, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "WMSERVE_FPS"), "config: bad environment -> '%s'", err);
    char *a4[] = {"wmserve", "--help", NULL};
    rc = srv_config_parse(&c, 2, a4, NULL, null, err, sizeof err);
    tu_check(rc == 1, "config: --help returns 1 (printed)");
    char *a5[] = {"wmserve", "--log-level", "verbose", NULL};
    rc = srv_config_parse(&c, 3, a5, NULL, null, err, sizeof err);
    tu_check(rc < 0 && strstr(err, "verbose"), "config: bad log level -> '%s'", err);
    fclose(null);
}

static void test_jpeg_and_scene(void) {
    img_rgb8 img;
    int rc = srv_scene_default_rgb(128, 64, &img);
    tu_check(rc == 0 && img.width == 128 && img.height == 64, "scene: built-in scene 128x64");
    long sum = 0;
    for (size_t i = 0; i < 128 * 64 * 3; i++) sum += img.pixels[i];
    tu_check(sum > 128 * 64 * 3 * 40 && sum < 128 * 64 * 3 * 230, "scene: mean level %.1f",
             (double)sum / (128 * 64 * 3));
    srv_jpeg_encoder *e = NULL;
    char err[256];
    tu_check(srv_jpeg_encoder_create(85, &e, err, sizeof err) == 0, "jpeg: encoder");
    srv_frame f;
    memset(&f, 0, sizeof f);
    rc = srv_jpeg_encode(e, img.pixels, 128, 64, &f, err, sizeof err);
    tu_check(rc == 0 && f.len > 100 && f.data[0] == 0xFF && f.data[1] == 0xD8 &&
                 f.data[f.len - 2] == 0xFF && f.data[f.len - 1] == 0xD9,
             "jpeg: %zu bytes, SOI..EOI", f.len);
    size_t cap = f.cap;
    uint8_t *ptr = f.data;
    rc = srv_jpeg_encode(e, img.pixels, 128, 64, &f, err, sizeof err);
    tu_check(rc == 0 && f.cap == cap && f.data == ptr, "jpeg: a second encode reuses the buffer");
    tjhandle d = tjInitDecompress();
    int w = 0, h = 0, ss = 0, cs = 0;
    tjDecompressHeader3(d, f.data, (unsigned long)f.len, &w, &h, &ss, &cs);
    tjDestroy(d);
    tu_check(w == 128 && h == 64, "jpeg: decodes to %dx%d", w, h);
    tu_check(srv_jpeg_max_size(640, 352) > 640 * 352,
             "jpeg: worst-case bound for 640x352 is %zu bytes", srv_jpeg_max_size(640, 352));
    srv_frame_free(&f);
    srv_jpeg_encoder_destroy(e);
    img_free(&img);
    tu_check(srv_jpeg_encoder_create(0, &e, err, sizeof err) != 0, "jpeg: quality 0 refused (%s)",
             err);
}

/* Origin check and X-Forwarded-For (server/access.c): the rules of access.h, case by case. */
static void test_access(void) {
    static const struct {
        const char *allowed, *origin, *host;
        int want;
    } o[] = {
        {"", NULL, "a.example", 1}, /* no Origin: non-browser client */
        {"", "", "a.example", 1},
        {"", "http://a.example:8080", "a.example:8080", 1}, /* same host */
        {"", "https://A.Example", "a.example", 1},          /* case-insensitive */
        {"", "http://evil.example", "a.example", 0},
        {"", "http://a.example", "a.example:8080", 0}, /* port differs */
        {"", "http://a.example.evil", "a.example", 0},
        {"", "http://a.example", "", 0}, /* no Host: refuse browsers */
        {"*", "http://evil.example", "a.example", 1},
        {"https://b.example, c.example:81", "https://b.example", "a.example", 1},
        {"https://b.example, c.example:81", "http://b.example", "a.example", 0}, /* scheme */
        {"https://b.example, c.example:81", "http://c.example:81", "a.example", 1},
        {"https://b.example, c.example:81", "http://c.example", "a.example", 0},
        {"https://b.example, c.example:81", "http://a.example", "a.example", 0}, /* list only */
        {"b.example,", "http://b.example.evil", "x", 0},
        {",,", "http://b.example", "x", 0},
    };
    for (size_t i = 0; i < sizeof o / sizeof *o; i++)
        tu_check(srv_origin_allowed(o[i].allowed, o[i].origin, o[i].host) == o[i].want,
                 "origin: allowed '%s', Origin '%s', Host '%s' -> %d", o[i].allowed,
                 o[i].origin ? o[i].origin : "(none)", o[i].host, o[i].want);
    static const struct {
        const char *xff, *want;
    } x[] = {{"10.1.2.3", "10.1.2.3"},
             {"1.1.1.1, 10.0.0.7", "10.0.0.7"}, /* the proxy appends: the last entry counts */
             {" 2001:db8::1 ", "2001:db8::1"},
             {"1.1.1.1,", NULL},
             {"", NULL},
             {"<script>", NULL},
             {"1.2.3.4 5.6.7.8", NULL}};
    for (size_t i = 0; i < sizeof x / sizeof *x; i++) {
        char out[64];
        int rc = srv_forwarded_client(x[i].xff, out, sizeof out);
        tu_check(x[i].want ? rc == 0 && !strcmp(out, x[i].want) : rc == -1 && !out[0],
                 "X-Forwarded-For '%s' -> '%s' (got rc %d '%s')", x[i].xff,
                 x[i].want ? x[i].want : "(refused)", rc, out);
    }
}

static void from_hex(const char *h, uint8_t *out) {
    for (size_t i = 0; h[2 * i]; i++) {
        unsigned v = 0;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

/* HMAC-SHA256 against RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 truncates the output), then
 * signed tokens: valid, expired, tampered (every position of the signature and the expiry), wrong
 * secret, malformed. */
static void test_tokens(void) {
    uint8_t k20b[20], k20a[20], k25[25], k131[131], d50d[50], d50c[50];
    memset(k20b, 0x0b, sizeof k20b);
    memset(k20a, 0xaa, sizeof k20a);
    memset(k131, 0xaa, sizeof k131);
    memset(d50d, 0xdd, sizeof d50d);
    memset(d50c, 0xcd, sizeof d50c);
    for (int i = 0; i < 25; i++) k25[i] = (uint8_t)(i + 1);
    static const char m6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char m7[] = "This is a test using a larger than block-size key and a larger than "
                             "block-size data. The key needs to be hashed before being used by the "
                             "HMAC algorithm.";
    const struct {
        const void *k, *m;
        size_t kn, mn;
        const char *want;
    } v[] = {
        {k20b, "Hi There", 20, 8,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"Jefe", "what do ya want for nothing?", 4, 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {k20a, d50d, 20, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {k25, d50c, 25, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {k131, m6, 131, sizeof m6 - 1,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {k131, m7, 131, sizeof m7 - 1,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        uint8_t mac[32], want[32];
        from_hex(v[i].want, want);
        int rc = srv_hmac_sha256(v[i].k, v[i].kn, v[i].m, v[i].mn, mac);
        tu_check(rc == 0 && !memcmp(mac, want, 32), "HMAC-SHA256: RFC 4231 vector %zu",
                 i < 4 ? i + 1 : i + 2);
    }
    /* A random 32-byte secret. */
    uint8_t secret[32], other[32];
    srand(4231);
    for (int i = 0; i < 32; i++) {
        secret[i] = (uint8_t)(rand() >> 7);
        other[i] = (uint8_t)(rand() >> 7);
    }
    const int64_t now = 1800000000;
    char tok[SRV_TOKEN_MAX], err[128];
    tu_check(!srv_token_make(secret, 32, now + 60, tok, sizeof tok) &&
                 strlen(tok) == 3 + 10 + 1 + 64,
             "token: made '%s'", tok);
    /* Independently: the signature is HMAC(secret, "v1.<expiry>") in lowercase hex. */
    uint8_t mac[32];
    char payload[32], hex[65];
    snprintf(payload, sizeof payload, "v1.%lld", (long long)(now + 60));
    srv_hmac_sha256(secret, 32, payload, strlen(payload), mac);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    tu_check(!strncmp(tok, payload, strlen(payload)) && !strcmp(tok + strlen(payload) + 1, hex),
             "token: layout v1.<expiry>.<hex hmac>");
    tu_check(srv_token_is_signed(tok) && !srv_token_is_signed("s3cret"), "token: v1. prefix");
    tu_check(!srv_token_check(secret, 32, tok, now, err, sizeof err), "token: valid one accepted");
    tu_check(srv_token_check(secret, 32, tok, now + 60, err, sizeof err) == -1 &&
                 strstr(err, "expired"),
             "token: expired at its expiry (%s)", err);
    tu_check(srv_token_check(other, 32, tok, now, err, sizeof err) == -1 &&
                 strstr(err, "signature"),
             "token: another secret -> bad signature (%s)", err);
    int tampered_ok = 0;
    size_t n = strlen(tok);
    for (size_t i = 3; i < n; i++) {
        if (tok[i] == '.') continue;
        char t[SRV_TOKEN_MAX];
        memcpy(t, tok, n + 1);
        t[i] = (char)(t[i] == '1' ? '2' : '1');
        if (srv_token_check(secret, 32, t, now, err, sizeof err) == 0) tampered_ok++;
    }
    tu_check(tampered_ok == 0, "token: every one-character change refused (%d accepted)",
             tampered_ok);
    static const char *bad[] = {
        "v1.",           "v1..abc",
        "v1.12x.00",     "v2.1.00",
        "v1.1800000060", "v1.-5.0000000000000000000000000000000000000000000000000000000000000000"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        tu_check(srv_token_check(secret, 32, bad[i], now, err, sizeof err) == -1 &&
                     strstr(err, "malformed"),
                 "token: '%s' malformed (%s)", bad[i], err);
}

int main(void) {
    test_admission();
    test_pacing();
    test_scheduler();
    test_actions();
    test_metrics();
    test_static_paths();
    test_log();
    test_config();
    test_jpeg_and_scene();
    test_access();
    test_tokens();
    return tu_finish("test_server_units");
}
