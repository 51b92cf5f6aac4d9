/* Prometheus metrics: see metrics.h. Histograms use fixed buckets chosen for the quantities
 * measured: engine stages from 0.5 ms (tiny model on a CPU, a GPU block) to 5 s (full model on a
 * CPU); input-to-frame latency from 10 ms to 5 s. */
#include "server/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#define MAX_BUCKETS  16
#define MAX_ERR_CODE 63

typedef struct histogram {
    const double *le; /* upper bounds, increasing; +Inf implicit */
    int n;
    uint64_t counts[MAX_BUCKETS + 1]; /* per bucket (not cumulative); [n] = above the last bound */
    double sum;
    uint64_t count;
} histogram;

struct srv_metrics {
    uint64_t counters[SRV_C_COUNT];
    uint64_t errors[MAX_ERR_CODE + 1];
    histogram hist[SRV_H_COUNT];
    srv_gauges gauges;
};

static const double stage_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5};
static const double latency_le[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                    0.3,  0.5,   0.75, 1,     2,   5};

static const struct {
    const char *name, *help;
} counter_info[SRV_C_COUNT] = {
    [SRV_C_CONNECTIONS] = {"wmserve_connections_total", "Websocket connections accepted."},
    [SRV_C_HTTP_REQUESTS] = {"wmserve_http_requests_total", "HTTP requests answered."},
    [SRV_C_SESSIONS_STARTED] = {"wmserve_sessions_started_total", "Play sessions started."},
    [SRV_C_SESSIONS_ENDED] = {"wmserve_sessions_ended_total", "Play sessions ended."},
    [SRV_C_BLOCKS] = {"wmserve_blocks_total", "Blocks generated and delivered to the loop."},
    [SRV_C_FRAMES_SENT] = {"wmserve_frames_sent_total", "Video frames written to clients."},
    [SRV_C_FRAMES_DROPPED] = {"wmserve_frames_dropped_total",
                              "Stale video frames dropped because a client read too slowly."},
    [SRV_C_UNDERRUNS] = {"wmserve_underruns_total",
                         "Pacing ticks of playing sessions that found no frame ready."},
    [SRV_C_BYTES_SENT] = {"wmserve_bytes_sent_total", "Websocket payload bytes sent."},
    [SRV_C_BYTES_RECEIVED] = {"wmserve_bytes_received_total", "Websocket payload bytes received."},
    [SRV_C_MESSAGES_RECEIVED] = {"wmserve_messages_received_total", "Websocket messages received."},
    [SRV_C_REFUSED_ORIGIN] = {"wmserve_ws_refused_origin_total",
                              "Websocket upgrades refused with 403 for their Origin."},
    [SRV_C_REFUSED_PER_IP] = {"wmserve_ws_refused_per_ip_total",
                              "Websockets refused: too many open from one client address."},
};

srv_metrics *srv_metrics_create(void) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    for (int h = 0; h < SRV_H_COUNT; h++) {
        int lat = h == SRV_H_INPUT_TO_FRAME;
        m->hist[h].le = lat ? latency_le : stage_le;
        m->hist[h].n = lat ? (int)(sizeof latency_le / sizeof *latency_le)
                           : (int)(sizeof stage_le / sizeof *stage_le);
    }
    return m;
}

void srv_metrics_destroy(srv_metrics *m) {
    free(m);
}

void srv_metrics_add(srv_metrics *m, srv_counter c, uint64_t n) {
    if ((unsigned)c < SRV_C_COUNT) m->counters[c] += n;
}

uint64_t srv_metrics_get(const srv_metrics *m, srv_counter c) {
    return (unsigned)c < SRV_C_COUNT ? m->counters[c] : 0;
}

void srv_metrics_error(srv_metrics *m, int code) {
    if (code >= 0 && code <= MAX_ERR_CODE) m->errors[code]++;
}

uint64_t srv_metrics_errors(const srv_metrics *m, int code) {
    return code >= 0 && code <= MAX_ERR_CODE ? m->errors[code] : 0;
}

void srv_metrics_observe(srv_metrics *m, srv_hist h, double seconds) {
    if ((unsigned)h >= SRV_H_COUNT || !(seconds >= 0) || !isfinite(seconds)) return;
    histogram *hg = &m->hist[h];
    int b = 0;
    while (b < hg->n && seconds > hg->le[b]) b++;
    hg->counts[b]++;
    hg->sum += seconds;
    hg->count++;
}

uint64_t srv_metrics_hist_count(const srv_metrics *m, srv_hist h) {
    return (unsigned)h < SRV_H_COUNT ? m->hist[h].count : 0;
}

void srv_metrics_set_gauges(srv_metrics *m, const srv_gauges *g) {
    m->gauges = *g;
}

static int render_hist(srv_buf *o, const char *name, const char *label, const histogram *h) {
    /* label: "" or `stage="dit",` (with the trailing comma) */
    int rc = 0;
    uint64_t cum = 0;
    for (int b = 0; b < h->n; b++) {
        cum += h->counts[b];
        rc |= srv_buf_printf(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, h->le[b],
                             (unsigned long long)cum);
    }
    cum += h->counts[h->n];
    rc |=
        srv_buf_printf(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, (unsigned long long)cum);
    /* Labels without the trailing comma for _sum and _count. */
    char lab[64] = "";
    size_t ll = strlen(label);
    if (ll && ll < sizeof lab) {
        memcpy(lab, label, ll - 1);
        lab[ll - 1] = '\0';
    }
    rc |= srv_buf_printf(o, "%s_sum%s%s%s %.9g\n", name, ll ? "{" : "", lab, ll ? "}" : "", h->sum);
    rc |= srv_buf_printf(o, "%s_count%s%s%s %llu\n", name, ll ? "{" : "", lab, ll ? "}" : "",
                         (unsigned long long)h->count);
    return rc;
}

static int gauge(srv_buf *o, const char *name, const char *help, long long v) {
    return srv_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

int srv_metrics_render(const srv_metrics *m, srv_buf *o) {
    int rc = 0;
    const srv_gauges *g = &m->gauges;
    rc |=
        gauge(o, "wmserve_sessions_active", "Sessions holding an engine slot.", g->sessions_active);
    rc |= gauge(o, "wmserve_sessions_queued", "Players waiting for a slot.", g->sessions_queued);
    rc |= gauge(o, "wmserve_session_slots", "Engine session slots (--max-sessions).",
                g->session_slots);
    rc |= gauge(o, "wmserve_queue_limit", "Waiting-queue capacity (--max-queue).", g->queue_limit);
    rc |= gauge(o, "wmserve_connections_active", "Open websocket connections.", g->connections);
    rc |= gauge(o, "wmserve_client_buffer_frames",
                "Encoded frames waiting in clients' pacing buffers.", g->client_buffer_frames);
    rc |= gauge(o, "wmserve_jpeg_queue_frames", "Frames waiting for a JPEG encoder thread.",
                g->jpeg_queue_frames);
    rc |= gauge(o, "wmserve_engine_blocks_free", "Free block buffers of the engine worker.",
                g->engine_blocks_free);
    rc |= gauge(o, "wmserve_draining", "1 while the server shuts down.", g->draining);
    for (int c = 0; c < SRV_C_COUNT; c++)
        rc |= srv_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counter_info[c].name,
                             counter_info[c].help, counter_info[c].name, counter_info[c].name,
                             (unsigned long long)m->counters[c]);
    rc |= srv_buf_puts(o, "# HELP wmserve_errors_total Protocol errors sent to clients, by code.\n"
                          "# TYPE wmserve_errors_total counter\n");
    for (int code = 1; code <= PROTO_ERR_INTERNAL; code++)
        rc |= srv_buf_printf(o, "wmserve_errors_total{code=\"%s\"} %llu\n", proto_error_name(code),
                             (unsigned long long)m->errors[code]);

    rc |= srv_buf_puts(o, "# HELP wmserve_block_seconds A block's actions taken to its frames in "
                          "host memory (frame.blk_ms).\n# TYPE wmserve_block_seconds histogram\n");
    rc |= render_hist(o, "wmserve_block_seconds", "", &m->hist[SRV_H_BLOCK]);
    rc |=
        srv_buf_puts(o, "# HELP wmserve_block_ready_seconds A block's actions taken to its encoded "
                        "frames reaching the pacing buffers.\n"
                        "# TYPE wmserve_block_ready_seconds histogram\n");
    rc |= render_hist(o, "wmserve_block_ready_seconds", "", &m->hist[SRV_H_DELIVER]);
    rc |= srv_buf_puts(o, "# HELP wmserve_stage_seconds Time per block in each stage: queue "
                          "(due to started: waiting for the engine), dit, vae, jpeg (all frames).\n"
                          "# TYPE wmserve_stage_seconds histogram\n");
    static const char *const stage_label[] = {"stage=\"queue\",", "stage=\"dit\",",
                                              "stage=\"vae\",", "stage=\"jpeg\","};
    for (int s = 0; s < 4; s++)
        rc |= render_hist(o, "wmserve_stage_seconds", stage_label[s],
                          &m->hist[SRV_H_STAGE_QUEUE + s]);
    rc |= srv_buf_puts(o, "# HELP wmserve_input_to_frame_seconds Arrival of an input to the first "
                          "frame reflecting it being sent.\n"
                          "# TYPE wmserve_input_to_frame_seconds histogram\n");
    rc |= render_hist(o, "wmserve_input_to_frame_seconds", "", &m->hist[SRV_H_INPUT_TO_FRAME]);
    return rc ? -1 : 0;
}
