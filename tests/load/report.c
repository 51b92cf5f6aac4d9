/* wmload's table and JSON report: see report.h. */
#include "tests/load/report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

void wl_report_finish(const wl_scenario *s, wl_run_report *rr) {
    wl_summarize(s, &rr->res, wl_filter_checked, NULL, &rr->checked);
    wl_summarize(s, &rr->res, NULL, NULL, &rr->all);
    for (int k = 0; k < WL_KIND_COUNT; k++) {
        wl_kind kind = (wl_kind)k;
        wl_summarize(s, &rr->res, wl_filter_kind, &kind, &rr->by_kind[k]);
    }
    wl_evaluate(s, &rr->res, &rr->checked, &rr->all, &rr->verdict);
}

/* The simulated viewer's frame rate: the scenario's, else the server's (joined.fps). */
static double viewer_fps(const wl_scenario *s, const wl_result *r) {
    return s->viewer_fps > 0 ? s->viewer_fps : r->server_fps;
}

static const char *error_name(int code) {
    return code == 0 ? "other" : proto_error_name(code);
}

/* "12.3" or "-" for NaN, in a rotating static buffer (several per printf). */
static const char *num(double v, int decimals) {
    static char bufs[16][32];
    static int i;
    char *b = bufs[i++ % 16];
    if (isnan(v))
        snprintf(b, 32, "-");
    else
        snprintf(b, 32, "%.*f", decimals, v);
    return b;
}

static void pct_line(FILE *f, const char *label, const st_summary *p, int dec) {
    fprintf(f, "  %-15s p50 %s  p95 %s  p99 %s  max %s  (n %zu)\n", label, num(p->p50, dec),
            num(p->p95, dec), num(p->p99, dec), num(p->max, dec), p->n);
}

static uint64_t error_total(const wl_summary *m) {
    uint64_t n = 0;
    for (int c = 0; c <= WL_MAX_ERROR_CODE; c++) n += m->errors[c];
    return n;
}

static void errors_line(FILE *f, const wl_summary *m) {
    fprintf(f, "  %-15s", "errors");
    int any = 0;
    for (int c = 1; c <= WL_MAX_ERROR_CODE + 1; c++) {
        int code = c == WL_MAX_ERROR_CODE + 1 ? 0 : c;
        if (!m->errors[code]) continue;
        fprintf(f, "%s%s %llu", any ? ", " : " ", error_name(code),
                (unsigned long long)m->errors[code]);
        any = 1;
    }
    if (m->bad_messages)
        fprintf(f, "%sundecodable %llu", any ? ", " : " ", (unsigned long long)m->bad_messages),
            any = 1;
    if (!any) fprintf(f, " none");
    fprintf(f, "; sessions ended by a fatal error %llu, closed early %llu\n",
            (unsigned long long)m->fatal_sessions, (unsigned long long)m->closed_early);
}

static void kinds_text(char *out, size_t cap, const wl_result *r) {
    out[0] = '\0';
    for (int k = 0; k < WL_KIND_COUNT; k++) {
        if (!r->kind_counts[k]) continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s %d", l ? ", " : "", wl_kind_name((wl_kind)k),
                 r->kind_counts[k]);
    }
}

void wl_report_table(FILE *f, const wl_scenario *s, wl_run_report *rr, int per_session) {
    const wl_result *r = &rr->res;
    const wl_summary *m = &rr->checked;
    char kinds[256];
    kinds_text(kinds, sizeof kinds, r);
    fprintf(f, "\n== N=%d  %s  %.1f s (%s)  %s, %u fps  == %s\n", r->n_players, s->name,
            r->run_ms / 1000, kinds, r->server_name[0] ? r->server_name : "no server reached",
            r->server_fps, rr->verdict.passed ? "PASS" : "FAIL");
    fprintf(f, "  (figures below: every session except slow readers; those are under 'by kind')\n");
    fprintf(f, "  %-15s attempted %llu, established %llu, failed %llu, queued %llu\n", "connects",
            (unsigned long long)rr->all.attempted, (unsigned long long)rr->all.established,
            (unsigned long long)rr->all.failed, (unsigned long long)rr->all.queued);
    pct_line(f, "connect ms", &rr->all.connect_ms, 1);
    pct_line(f, "1st frame ms", &m->first_frame_ms, 0);
    if (m->reset_first_frame_ms.n) pct_line(f, "reset->frame ms", &m->reset_first_frame_ms, 0);
    fprintf(f,
            "  %-15s min %s  p50 %s  mean %s  max %s  (%d sessions >= %g s); aggregate %s; "
            "%llu frames\n",
            "fps/session", num(m->fps.min, 2), num(m->fps.p50, 2), num(m->fps.mean, 2),
            num(m->fps.max, 2), m->checked_sessions, s->sl.min_session_s, num(m->fps_aggregate, 1),
            (unsigned long long)m->frames);
    pct_line(f, "inter-arr. ms", &m->inter_ms, 1);
    pct_line(f, "input->frame ms", &m->latency_ms, 1);
    fprintf(f,
            "  %-15s %g fps after %g ms: %llu/%llu blocks on deadline (%s%%), %llu stalls "
            "(%s ms)\n",
            "viewer", viewer_fps(s, r), s->viewer_buffer_ms, (unsigned long long)m->blocks_on_time,
            (unsigned long long)m->blocks, num(100 * m->on_deadline_share, 2),
            (unsigned long long)m->stalls, num(m->stall_ms, 0));
    fprintf(f, "  %-15s server %llu, client gaps %llu, out of order %llu\n", "drops",
            (unsigned long long)m->server_dropped, (unsigned long long)m->client_gaps,
            (unsigned long long)m->out_of_order);
    errors_line(f, &rr->all);
    fprintf(f, "  %-15s", "closes");
    for (int i = 0; i < rr->all.n_closes; i++)
        fprintf(f, " %d x%llu", rr->all.closes[i].code,
                (unsigned long long)rr->all.closes[i].count);
    fprintf(f, "\n");
    pct_line(f, "server blk ms", &m->server_block_ms, 1);
    pct_line(f, "ping rtt ms", &m->rtt_ms, 2);
    fprintf(f, "  %-15s %.2f Mbit/s received, %llu inputs sent at %g Hz per player\n", "traffic",
            rr->all.rx_mbit_s, (unsigned long long)rr->all.inputs_sent, r->input_hz);
    fprintf(f, "  by kind        %-12s %4s %8s %8s %8s %8s %8s %7s %7s %6s\n", "kind", "sess",
            "fps min", "fps mean", "ia p99", "lat p99", "on-dl %", "stalls", "drops", "fatal");
    for (int k = 0; k < WL_KIND_COUNT; k++) {
        const wl_summary *b = &rr->by_kind[k];
        if (!b->sessions) continue;
        fprintf(f, "                 %-12s %4d %8s %8s %8s %8s %8s %7llu %7llu %6llu\n",
                wl_kind_name((wl_kind)k), b->sessions, num(b->fps.min, 2), num(b->fps.mean, 2),
                num(b->inter_ms.p99, 1), num(b->latency_ms.p99, 1),
                num(100 * b->on_deadline_share, 2), (unsigned long long)b->stalls,
                (unsigned long long)(b->server_dropped + b->client_gaps),
                (unsigned long long)b->fatal_sessions);
    }
    for (int i = 0; i < r->n_warnings; i++) fprintf(f, "  warning: %s\n", r->warnings[i]);
    if (per_session) {
        fprintf(f, "  %5s %-11s %3s %9s %7s %7s %7s %6s %7s %7s %6s %5s %s\n", "sess", "kind",
                "nth", "1st fr ms", "play s", "frames", "fps", "ia max", "lat p99", "on-dl",
                "stalls", "drops", "end");
        for (size_t i = 0; i < r->n_sessions; i++) {
            wl_session *x = &r->sessions[i];
            char end[128];
            if (x->fatal_code)
                snprintf(end, sizeof end, "fatal %s, close %d", error_name(x->fatal_code),
                         x->close_code);
            else if (x->connect_failed)
                snprintf(end, sizeof end, "connect failed: %s", x->close_reason);
            else
                snprintf(end, sizeof end, "close %d%s", x->close_code,
                         x->closed_early ? " (early)" : "");
            char ondl[16];
            snprintf(ondl, sizeof ondl, "%llu/%llu", (unsigned long long)x->blocks_on_time,
                     (unsigned long long)x->blocks);
            fprintf(f, "  %5zu %-11s %3d %9s %7.1f %7llu %7.2f %6s %7s %7s %6llu %5llu %s\n", i,
                    wl_kind_name(x->kind), x->nth, num(x->t_first_frame - x->t_join, 0),
                    x->play_ms / 1000, (unsigned long long)x->frames, x->fps,
                    num(x->max_inter_ms, 0), num(st_pct(&x->latency_ms, 99), 0), ondl,
                    (unsigned long long)x->stalls, (unsigned long long)(x->srv_dropped + x->gaps),
                    end);
        }
    }
    if (rr->verdict.passed) {
        fprintf(f,
                "  service level   met (fps >= %g, p99 input->frame <= %g ms, on deadline >= "
                "%g%%, first frame <= %g ms)\n",
                s->sl.min_fps, s->sl.max_p99_ms, 100 * s->sl.min_on_deadline,
                s->sl.max_first_frame_ms);
    } else {
        for (int i = 0; i < rr->verdict.n_reasons; i++)
            fprintf(f, "  service level   FAILED: %s\n", rr->verdict.reasons[i]);
    }
}

void wl_report_sweep_table(FILE *f, const wl_scenario *s, wl_run_report *runs, int n_runs,
                           int sweep, int largest_held) {
    fprintf(f,
            "\n%s: %s, %.0f s per N; service level: every session >= %g fps, p99 "
            "input->frame <= %g ms, >= %g%% of blocks on deadline (%g fps viewer, %g ms "
            "buffer)\n",
            sweep ? "sweep" : "summary", s->name, s->duration_s, s->sl.min_fps, s->sl.max_p99_ms,
            100 * s->sl.min_on_deadline, n_runs ? viewer_fps(s, &runs[0].res) : s->viewer_fps,
            s->viewer_buffer_ms);
    fprintf(f, "%5s %9s %8s %8s %8s %8s %8s %8s %8s %6s %6s %6s  %s\n", "N", "conn ok", "min fps",
            "agg fps", "ia p99", "ia max", "lat p50", "lat p99", "on-dl %", "stalls", "drops",
            "errors", "service level");
    for (int i = 0; i < n_runs; i++) {
        wl_run_report *rr = &runs[i];
        const wl_summary *m = &rr->checked;
        char conn[32];
        snprintf(conn, sizeof conn, "%llu/%llu", (unsigned long long)rr->all.established,
                 (unsigned long long)rr->all.attempted);
        fprintf(f, "%5d %9s %8s %8s %8s %8s %8s %8s %8s %6llu %6llu %6llu  %s\n", rr->res.n_players,
                conn, num(m->fps.min, 2), num(m->fps_aggregate, 1), num(m->inter_ms.p99, 1),
                num(m->inter_ms.max, 1), num(m->latency_ms.p50, 0), num(m->latency_ms.p99, 0),
                num(100 * m->on_deadline_share, 2), (unsigned long long)m->stalls,
                (unsigned long long)(m->server_dropped + m->client_gaps),
                (unsigned long long)error_total(&rr->all),
                rr->verdict.passed ? "held" : rr->verdict.reasons[0]);
    }
    if (sweep) {
        if (largest_held > 0)
            fprintf(f, "largest N that held: %d\n", largest_held);
        else
            fprintf(f, "largest N that held: none (N=%d already failed)\n",
                    n_runs ? runs[0].res.n_players : 0);
    }
}

/* JSON --------------------------------------------------------------------------------------------
 */

static cJSON *jnum(double v) {
    return isnan(v) || isinf(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

static cJSON *jpct(const st_summary *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)p->n);
    cJSON_AddItemToObject(o, "min", jnum(p->min));
    cJSON_AddItemToObject(o, "p50", jnum(p->p50));
    cJSON_AddItemToObject(o, "p95", jnum(p->p95));
    cJSON_AddItemToObject(o, "p99", jnum(p->p99));
    cJSON_AddItemToObject(o, "max", jnum(p->max));
    cJSON_AddItemToObject(o, "mean", jnum(p->mean));
    return o;
}

static cJSON *jhist(const uint64_t counts[ST_HIST_BUCKETS]) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "bounds_ms",
                          cJSON_CreateDoubleArray(st_hist_bounds_ms, ST_HIST_BUCKETS - 1));
    cJSON *c = cJSON_AddArrayToObject(o, "counts");
    for (int i = 0; i < ST_HIST_BUCKETS; i++)
        cJSON_AddItemToArray(c, cJSON_CreateNumber((double)counts[i]));
    return o;
}

static cJSON *jerrors(const wl_summary *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON *by = cJSON_AddObjectToObject(o, "by_code");
    for (int c = 0; c <= WL_MAX_ERROR_CODE; c++)
        if (m->errors[c]) cJSON_AddNumberToObject(by, error_name(c), (double)m->errors[c]);
    cJSON_AddNumberToObject(o, "total", (double)error_total(m));
    cJSON_AddNumberToObject(o, "undecodable", (double)m->bad_messages);
    cJSON_AddNumberToObject(o, "fatal_sessions", (double)m->fatal_sessions);
    cJSON_AddNumberToObject(o, "closed_early", (double)m->closed_early);
    return o;
}

static cJSON *jsummary(const wl_scenario *s, const wl_result *r, const wl_summary *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "sessions", m->sessions);
    cJSON *c = cJSON_AddObjectToObject(o, "connects");
    cJSON_AddNumberToObject(c, "attempted", (double)m->attempted);
    cJSON_AddNumberToObject(c, "established", (double)m->established);
    cJSON_AddNumberToObject(c, "failed", (double)m->failed);
    cJSON_AddNumberToObject(c, "queued", (double)m->queued);
    cJSON_AddItemToObject(c, "connect_ms", jpct(&m->connect_ms));
    cJSON_AddItemToObject(o, "first_frame_ms", jpct(&m->first_frame_ms));
    cJSON_AddNumberToObject(o, "first_frame_late", m->first_frame_late);
    cJSON_AddItemToObject(o, "reset_first_frame_ms", jpct(&m->reset_first_frame_ms));
    cJSON *fps = cJSON_AddObjectToObject(o, "fps");
    cJSON_AddItemToObject(fps, "per_session", jpct(&m->fps));
    cJSON_AddNumberToObject(fps, "checked_sessions", m->checked_sessions);
    cJSON_AddItemToObject(fps, "aggregate", jnum(m->fps_aggregate));
    cJSON_AddNumberToObject(fps, "frames", (double)m->frames);
    cJSON *ia = jpct(&m->inter_ms);
    cJSON_AddItemToObject(ia, "histogram", jhist(m->inter_hist));
    cJSON_AddItemToObject(o, "inter_arrival_ms", ia);
    cJSON *lat = jpct(&m->latency_ms);
    cJSON_AddItemToObject(lat, "histogram", jhist(m->latency_hist));
    cJSON_AddItemToObject(o, "input_to_frame_ms", lat);
    cJSON *v = cJSON_AddObjectToObject(o, "viewer");
    cJSON_AddNumberToObject(v, "fps", viewer_fps(s, r));
    cJSON_AddNumberToObject(v, "buffer_ms", s->viewer_buffer_ms);
    cJSON_AddNumberToObject(v, "blocks", (double)m->blocks);
    cJSON_AddNumberToObject(v, "blocks_on_deadline", (double)m->blocks_on_time);
    cJSON_AddItemToObject(v, "on_deadline_share", jnum(m->on_deadline_share));
    cJSON_AddNumberToObject(v, "stalls", (double)m->stalls);
    cJSON_AddNumberToObject(v, "stall_ms", m->stall_ms);
    cJSON *d = cJSON_AddObjectToObject(o, "drops");
    cJSON_AddNumberToObject(d, "server", (double)m->server_dropped);
    cJSON_AddNumberToObject(d, "client_gaps", (double)m->client_gaps);
    cJSON_AddNumberToObject(d, "out_of_order", (double)m->out_of_order);
    cJSON_AddItemToObject(o, "errors", jerrors(m));
    cJSON *cl = cJSON_AddObjectToObject(o, "closes");
    for (int i = 0; i < m->n_closes; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", m->closes[i].code);
        cJSON_AddNumberToObject(cl, k, (double)m->closes[i].count);
    }
    cJSON_AddItemToObject(o, "server_block_ms", jpct(&m->server_block_ms));
    cJSON_AddItemToObject(o, "rtt_ms", jpct(&m->rtt_ms));
    cJSON_AddNumberToObject(o, "rx_mbit_s", m->rx_mbit_s);
    cJSON_AddNumberToObject(o, "inputs_sent", (double)m->inputs_sent);
    cJSON_AddNumberToObject(o, "resets", (double)m->resets);
    return o;
}

static cJSON *jsession(const wl_session *x) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "player", x->player);
    cJSON_AddStringToObject(o, "kind", wl_kind_name(x->kind));
    cJSON_AddNumberToObject(o, "nth", x->nth);
    cJSON_AddNumberToObject(o, "sid", (double)x->sid);
    cJSON_AddBoolToObject(o, "established", x->established);
    cJSON_AddItemToObject(o, "connect_ms", jnum(x->t_open - x->t_connect));
    cJSON_AddItemToObject(o, "first_frame_ms", jnum(x->t_first_frame - x->t_join));
    cJSON_AddBoolToObject(o, "queued", x->queued);
    cJSON_AddNumberToObject(o, "play_s", x->play_ms / 1000);
    cJSON_AddNumberToObject(o, "frames", (double)x->frames);
    cJSON_AddNumberToObject(o, "fps", x->fps);
    cJSON_AddNumberToObject(o, "max_inter_arrival_ms", x->max_inter_ms);
    st_samples lat = x->latency_ms; /* st_pct sorts in place: harmless */
    cJSON_AddItemToObject(o, "input_to_frame_p99_ms", jnum(st_pct(&lat, 99)));
    cJSON_AddNumberToObject(o, "blocks", (double)x->blocks);
    cJSON_AddNumberToObject(o, "blocks_on_deadline", (double)x->blocks_on_time);
    cJSON_AddNumberToObject(o, "stalls", (double)x->stalls);
    cJSON_AddNumberToObject(o, "server_dropped", (double)x->srv_dropped);
    cJSON_AddNumberToObject(o, "client_gaps", (double)x->gaps);
    cJSON_AddNumberToObject(o, "resets", x->resets);
    cJSON_AddNumberToObject(o, "inputs_sent", x->inputs_sent);
    cJSON_AddNumberToObject(o, "close_code", x->close_code);
    cJSON_AddStringToObject(o, "close_reason", x->close_reason);
    cJSON_AddBoolToObject(o, "closed_early", x->closed_early);
    if (x->fatal_code)
        cJSON_AddStringToObject(o, "fatal_error", error_name(x->fatal_code));
    else
        cJSON_AddNullToObject(o, "fatal_error");
    return o;
}

static cJSON *jrun(const wl_scenario *s, wl_run_report *rr) {
    const wl_result *r = &rr->res;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", r->n_players);
    cJSON *k = cJSON_AddObjectToObject(o, "kinds");
    for (int i = 0; i < WL_KIND_COUNT; i++)
        cJSON_AddNumberToObject(k, wl_kind_name((wl_kind)i), r->kind_counts[i]);
    cJSON_AddNumberToObject(o, "duration_s", r->duration_ms / 1000);
    cJSON_AddNumberToObject(o, "run_s", r->run_ms / 1000);
    cJSON_AddNumberToObject(o, "input_hz", r->input_hz);
    cJSON_AddStringToObject(o, "server", r->server_name);
    cJSON_AddNumberToObject(o, "server_fps", r->server_fps);
    cJSON_AddBoolToObject(o, "interrupted", r->interrupted);
    cJSON_AddBoolToObject(o, "passed", rr->verdict.passed);
    cJSON *fr = cJSON_AddArrayToObject(o, "failures");
    for (int i = 0; i < rr->verdict.n_reasons; i++)
        cJSON_AddItemToArray(fr, cJSON_CreateString(rr->verdict.reasons[i]));
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    for (int i = 0; i < r->n_warnings; i++)
        cJSON_AddItemToArray(w, cJSON_CreateString(r->warnings[i]));
    cJSON_AddItemToObject(o, "checked", jsummary(s, r, &rr->checked));
    cJSON_AddItemToObject(o, "all", jsummary(s, r, &rr->all));
    cJSON *bk = cJSON_AddObjectToObject(o, "by_kind");
    for (int i = 0; i < WL_KIND_COUNT; i++)
        if (rr->by_kind[i].sessions)
            cJSON_AddItemToObject(bk, wl_kind_name((wl_kind)i), jsummary(s, r, &rr->by_kind[i]));
    cJSON *ss = cJSON_AddArrayToObject(o, "sessions");
    for (size_t i = 0; i < r->n_sessions; i++) cJSON_AddItemToArray(ss, jsession(&r->sessions[i]));
    return o;
}

static cJSON *jscenario(const char *file, const wl_scenario *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", s->name);
    cJSON_AddStringToObject(o, "file", file ? file : "");
    char url[600];
    snprintf(url, sizeof url, "ws://%s:%d%s", s->host, s->port, s->ws_path);
    cJSON_AddStringToObject(o, "url", url);
    cJSON_AddNumberToObject(o, "players", s->players);
    cJSON_AddNumberToObject(o, "duration_s", s->duration_s);
    cJSON *a = cJSON_AddObjectToObject(o, "arrival");
    cJSON_AddStringToObject(a, "process", s->arrival_poisson ? "poisson" : "fixed");
    cJSON_AddNumberToObject(a, "rate_hz", s->arrival_rate_hz);
    cJSON_AddNumberToObject(a, "seed", (double)s->seed);
    cJSON_AddNumberToObject(o, "input_hz", s->input_hz);
    cJSON_AddStringToObject(o, "actions", s->actions[0] ? s->actions : "random");
    cJSON *mx = cJSON_AddObjectToObject(o, "mix");
    for (int i = 0; i < WL_KIND_COUNT; i++)
        cJSON_AddNumberToObject(mx, wl_kind_name((wl_kind)i), s->mix[i]);
    cJSON *j = cJSON_AddObjectToObject(o, "join");
    cJSON_AddStringToObject(j, "variant", s->variant);
    cJSON_AddStringToObject(j, "scene", s->scene);
    if (s->has_join_seed)
        cJSON_AddNumberToObject(j, "seed", (double)s->join_seed);
    else
        cJSON_AddNullToObject(j, "seed");
    return o;
}

int wl_report_json(const char *path, const char *scenario_file, const wl_scenario *s,
                   wl_run_report *runs, int n_runs, int sweep, int largest_held, int passed,
                   char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "wmload", "0.1");
    cJSON_AddItemToObject(root, "scenario", jscenario(scenario_file, s));
    cJSON *sl = cJSON_AddObjectToObject(root, "service_level");
    cJSON_AddNumberToObject(sl, "min_fps", s->sl.min_fps);
    cJSON_AddNumberToObject(sl, "max_p99_input_to_frame_ms", s->sl.max_p99_ms);
    cJSON_AddNumberToObject(sl, "min_on_deadline", s->sl.min_on_deadline);
    cJSON_AddNumberToObject(sl, "max_first_frame_ms", s->sl.max_first_frame_ms);
    cJSON_AddNumberToObject(sl, "min_session_s", s->sl.min_session_s);
    cJSON *rs = cJSON_AddArrayToObject(root, "runs");
    uint64_t att = 0, est = 0, fail = 0, frames = 0, errs = 0, sdrop = 0, gaps = 0;
    for (int i = 0; i < n_runs; i++) {
        cJSON_AddItemToArray(rs, jrun(s, &runs[i]));
        att += runs[i].all.attempted;
        est += runs[i].all.established;
        fail += runs[i].all.failed;
        frames += runs[i].all.frames;
        errs += error_total(&runs[i].all);
        sdrop += runs[i].all.server_dropped;
        gaps += runs[i].all.client_gaps;
    }
    cJSON *t = cJSON_AddObjectToObject(root, "total");
    cJSON_AddNumberToObject(t, "runs", n_runs);
    cJSON *c = cJSON_AddObjectToObject(t, "connects");
    cJSON_AddNumberToObject(c, "attempted", (double)att);
    cJSON_AddNumberToObject(c, "established", (double)est);
    cJSON_AddNumberToObject(c, "failed", (double)fail);
    cJSON_AddNumberToObject(t, "frames", (double)frames);
    cJSON_AddNumberToObject(t, "errors", (double)errs);
    cJSON_AddNumberToObject(t, "server_dropped", (double)sdrop);
    cJSON_AddNumberToObject(t, "client_gaps", (double)gaps);
    if (sweep) {
        cJSON *sw = cJSON_AddObjectToObject(root, "sweep");
        cJSON *ns = cJSON_AddArrayToObject(sw, "ns_run");
        for (int i = 0; i < n_runs; i++)
            cJSON_AddItemToArray(ns, cJSON_CreateNumber(runs[i].res.n_players));
        if (largest_held > 0)
            cJSON_AddNumberToObject(sw, "largest_n_held", largest_held);
        else
            cJSON_AddNullToObject(sw, "largest_n_held");
        int first_failed = 0;
        for (int i = n_runs - 1; i >= 0; i--)
            if (!runs[i].verdict.passed) first_failed = runs[i].res.n_players;
        if (first_failed)
            cJSON_AddNumberToObject(sw, "first_failed_n", first_failed);
        else
            cJSON_AddNullToObject(sw, "first_failed_n");
    } else {
        cJSON_AddNullToObject(root, "sweep");
    }
    cJSON_AddBoolToObject(root, "passed", passed);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) {
        snprintf(err, errlen, "out of memory printing the JSON report");
        return -1;
    }
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    int rc = 0;
    if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) rc = -1;
    if (f && f != stdout && fclose(f)) rc = -1;
    if (rc) snprintf(err, errlen, "cannot write %s", path);
    free(text);
    return rc;
}
