/* Structured logging: see log.h. */
#include "server/log.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/clock.h"

/* The process-wide logger (a true singleton: one stderr, one level). */
static struct {
    srv_log_level level;
    srv_log_format format;
    FILE *out;
    pthread_mutex_t mu;
} g_log = {SRV_LOG_INFO, SRV_LOG_TEXT, NULL, PTHREAD_MUTEX_INITIALIZER};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int srv_log_parse_level(const char *s) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, level_names[i])) return i;
    if (!strcmp(s, "warning")) return SRV_LOG_WARN;
    return -1;
}

int srv_log_parse_format(const char *s) {
    if (!strcmp(s, "text")) return SRV_LOG_TEXT;
    if (!strcmp(s, "json")) return SRV_LOG_JSON;
    return -1;
}

const char *srv_log_level_name(srv_log_level l) {
    return (unsigned)l < 4 ? level_names[l] : "?";
}

void srv_log_setup(srv_log_level level, srv_log_format format, FILE *out) {
    g_log.level = level;
    g_log.format = format;
    g_log.out = out;
}

int srv_log_enabled(srv_log_level level) {
    return level <= g_log.level;
}

/* Text values are bare when they are "word-like", else quoted with JSON escapes. */
static int needs_quotes(const char *s) {
    if (!*s) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p >= 0x7f) return 1;
    return 0;
}

static int append_value(srv_buf *b, srv_log_format f, const srv_kv *kv) {
    switch (kv->type) {
    case SRV_KV_STR: {
        const char *s = kv->v.s ? kv->v.s : "";
        if (f == SRV_LOG_TEXT && !needs_quotes(s)) return srv_buf_puts(b, s);
        return srv_buf_json_string(b, s);
    }
    case SRV_KV_INT:
        return srv_buf_printf(b, "%lld", kv->v.i);
    case SRV_KV_UINT:
        return srv_buf_printf(b, "%llu", kv->v.u);
    case SRV_KV_DBL:
        if (!isfinite(kv->v.d)) return srv_buf_puts(b, f == SRV_LOG_JSON ? "null" : "nan");
        return srv_buf_printf(b, "%.6g", kv->v.d);
    case SRV_KV_BOOL:
        return srv_buf_puts(b, kv->v.i ? "true" : "false");
    }
    return -1;
}

int srv_log_format_line(srv_buf *b, srv_log_format format, double wall_ms, srv_log_level level,
                        const char *event, const srv_kv *kv, size_t n) {
    time_t secs = (time_t)(wall_ms / 1000.0);
    int ms = (int)(wall_ms - (double)secs * 1000.0);
    if (ms < 0) ms = 0;
    if (ms > 999) ms = 999;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[40];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    int rc = 0;
    if (format == SRV_LOG_JSON) {
        rc |= srv_buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", ts,
                             srv_log_level_name(level));
        rc |= srv_buf_json_string(b, event);
        for (size_t i = 0; i < n; i++) {
            rc |= srv_buf_puts(b, ",");
            rc |= srv_buf_json_string(b, kv[i].key);
            rc |= srv_buf_puts(b, ":");
            rc |= append_value(b, format, &kv[i]);
        }
        rc |= srv_buf_puts(b, "}\n");
    } else {
        rc |= srv_buf_printf(b, "%s %s %s", ts, srv_log_level_name(level), event);
        for (size_t i = 0; i < n; i++) {
            rc |= srv_buf_printf(b, " %s=", kv[i].key);
            rc |= append_value(b, format, &kv[i]);
        }
        rc |= srv_buf_puts(b, "\n");
    }
    return rc ? -1 : 0;
}

void srv_log_kv(srv_log_level level, const char *event, const srv_kv *kv, size_t n) {
    if (!srv_log_enabled(level)) return;
    srv_buf b = {0};
    if (srv_log_format_line(&b, g_log.format, srv_wall_ms(), level, event, kv, n) == 0) {
        FILE *out = g_log.out ? g_log.out : stderr;
        pthread_mutex_lock(&g_log.mu);
        fwrite(b.data, 1, b.len, out);
        fflush(out);
        pthread_mutex_unlock(&g_log.mu);
    }
    srv_buf_free(&b);
}
