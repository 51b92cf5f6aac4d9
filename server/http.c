/* Plain HTTP: GET /healthz (JSON), GET /metrics (Prometheus text 0.0.4), the websocket endpoint's
 * non-upgrade case, and static files of the browser client from --web (path sanitising in
 * static_files.c; lws streams the file). Bodies are small (a few KiB), so a response is written
 * whole from the HTTP callback: lws keeps any part the socket does not take and sends it when
 * writable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/buf.h"
#include "server/clock.h"
#include "server/internal.h"
#include "server/log.h"
#include "server/static_files.h"

static int respond(struct lws *wsi, unsigned int status, const char *type, const char *body,
                   size_t len) {
    size_t hdr_room = 1024;
    unsigned char *buf = malloc(LWS_PRE + hdr_room + len);
    if (!buf) return -1;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + hdr_room;
    int rc = -1;
    if (!lws_add_http_common_headers(wsi, status, type, (lws_filepos_t)len, &p, end) &&
        !lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                     (const unsigned char *)"no-store", 8, &p, end) &&
        !lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                     (const unsigned char *)"nosniff", 7, &p, end) &&
        !lws_finalize_http_header(wsi, &p, end)) {
        memcpy(p, body, len);
        size_t n = (size_t)(p - start) + len;
        if (lws_write(wsi, start, n, LWS_WRITE_HTTP_FINAL) == (int)n) rc = 0;
    }
    free(buf);
    if (rc) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int respond_text(struct lws *wsi, unsigned int status, const char *text) {
    return respond(wsi, status, "text/plain; charset=utf-8", text, strlen(text));
}

static int healthz(srv_server *s, struct lws *wsi) {
    srv_buf b = {0};
    int rc = srv_buf_printf(
        &b,
        "{\"status\":\"%s\",\"sessions_active\":%d,\"sessions_queued\":%d,\"slots\":%d,"
        "\"queue_limit\":%d,\"connections\":%d,\"fps\":%d,\"width\":%d,\"height\":%d,"
        "\"variant\":\"%s\",\"uptime_s\":%.1f,\"model\":",
        s->draining ? "draining" : "ok", srv_admission_active(s->adm), srv_admission_queued(s->adm),
        srv_admission_limit(s->adm), srv_admission_queue_limit(s->adm), s->nconns, s->cfg.fps,
        s->width, s->height, eng_variant_name(s->mcfg.variant),
        srv_ns_to_s(srv_now_ns() - s->started_ns));
    rc |= srv_buf_json_string(&b, s->model_desc);
    rc |= srv_buf_puts(&b, "}\n");
    int r = rc ? respond_text(wsi, 500, "out of memory\n")
               : respond(wsi, s->draining ? 503 : 200, "application/json", b.data, b.len);
    srv_buf_free(&b);
    return r;
}

static int metrics(srv_server *s, struct lws *wsi) {
    server_update_gauges(s);
    srv_buf b = {0};
    int r = srv_metrics_render(s->metrics, &b)
                ? respond_text(wsi, 500, "out of memory\n")
                : respond(wsi, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    srv_buf_free(&b);
    return r;
}

static int static_file(srv_server *s, struct lws *wsi, const char *path, size_t len) {
    if (!s->web_root[0]) return respond_text(wsi, 404, "no web client folder (--web)\n");
    char file[4096], err[128];
    int rc = srv_static_resolve(s->web_root, path, len, file, sizeof file, err, sizeof err);
    if (rc) {
        SRV_LOG(SRV_LOG_DEBUG, "http_refused", SRV_KS("path", path), SRV_KI("status", -rc),
                SRV_KS("why", err));
        char msg[192];
        snprintf(msg, sizeof msg, "%d %s\n", -rc, err);
        return respond_text(wsi, (unsigned int)-rc, msg);
    }
    unsigned char hdr[128], *p = hdr;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-cache", 8, &p, hdr + sizeof hdr))
        return -1;
    int n = lws_serve_http_file(wsi, file, srv_static_content_type(file), (const char *)hdr,
                                (int)(p - hdr));
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi))) return -1;
    return 0;
}

int http_on_request(srv_server *s, struct lws *wsi, const char *path, size_t len) {
    srv_metrics_add(s->metrics, SRV_C_HTTP_REQUESTS, 1);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return respond_text(wsi, 405, "only GET is served\n");
    SRV_LOG(SRV_LOG_DEBUG, "http_get", SRV_KS("path", path));
    if (!strcmp(path, "/healthz")) return healthz(s, wsi);
    if (!strcmp(path, "/metrics")) return metrics(s, wsi);
    if (!strcmp(path, "/ws"))
        return respond_text(wsi, 400, "/ws is the websocket endpoint: connect with a websocket\n");
    return static_file(s, wsi, path, len);
}
