/* The scenario reader: JSON (cJSON) over defaults, strict; see scenario.h and README.md. */
#include "tests/load/scenario.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[WL_KIND_COUNT] = {"scripted", "idle", "slow_reader", "churn",
                                                      "reset"};

const char *wl_kind_name(wl_kind k) {
    return (unsigned)k < WL_KIND_COUNT ? kind_names[k] : "?";
}

void wl_scenario_defaults(wl_scenario *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "default");
    snprintf(s->dir, sizeof s->dir, ".");
    snprintf(s->host, sizeof s->host, "127.0.0.1");
    s->port = 8080;
    snprintf(s->ws_path, sizeof s->ws_path, "/ws");
    s->players = 1;
    s->duration_s = 20;
    s->arrival_poisson = 0;
    s->arrival_rate_hz = 2;
    s->seed = 1;
    s->input_hz = 25;
    s->actions_loop = 1;
    s->mix[WL_SCRIPTED] = 1;
    s->churn_session_s = 5;
    s->churn_gap_s = 1;
    s->churn_random = 1;
    s->reset_every_s = 5;
    s->slow_start_s = 3;
    s->slow_pause_s = 4;
    s->slow_read_s = 0;
    s->slow_rcvbuf = 16384;
    s->viewer_fps = 0; /* the server's fps (joined.fps) */
    s->viewer_buffer_ms = 480;
    s->ping_s = 2;
    s->sl.min_fps = 24;
    s->sl.max_p99_ms = 1000;
    s->sl.min_on_deadline = 0.99;
    s->sl.max_first_frame_ms = 5000;
    s->sl.min_session_s = 5;
    for (int i = 0; i < 64; i++) s->sweep_n[i] = i + 1;
    s->sweep_count = 64;
    s->settle_s = 2;
}

/* ---- strict JSON helpers -----------------------------------------------------------------------
 */

typedef struct jctx {
    const char *origin;
    char *err;
    size_t errlen;
} jctx;

__attribute__((format(printf, 2, 3))) static int fail(jctx *j, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(j->err, j->errlen, "%s: %s", j->origin, msg);
    return -1;
}

/* Every key of obj must be one of `keys` (NULL-terminated) and appear once. */
static int check_keys(jctx *j, const cJSON *obj, const char *path, const char *const *keys) {
    if (!cJSON_IsObject(obj)) return fail(j, "%s: must be an object", path);
    for (const cJSON *a = obj->child; a; a = a->next) {
        int known = 0;
        for (int i = 0; keys[i]; i++) known |= strcmp(a->string, keys[i]) == 0;
        if (!known) {
            char list[512] = "";
            for (int i = 0; keys[i]; i++) {
                strncat(list, " ", sizeof list - strlen(list) - 1);
                strncat(list, keys[i], sizeof list - strlen(list) - 1);
            }
            return fail(j, "%s%s%s: unknown key (keys:%s)", path, *path ? "." : "", a->string,
                        list);
        }
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return fail(j, "%s%s%s: given twice", path, *path ? "." : "", a->string);
    }
    return 0;
}

static int get_num(jctx *j, const cJSON *obj, const char *path, const char *key, double lo,
                   double hi, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return fail(j, "%s%s%s: must be a number in [%g, %g]", path, *path ? "." : "", key, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int get_int(jctx *j, const cJSON *obj, const char *path, const char *key, double lo,
                   double hi, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        return fail(j, "%s%s%s: must be an integer in [%g, %g]", path, *path ? "." : "", key, lo,
                    hi);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_u64(jctx *j, const cJSON *obj, const char *path, const char *key, uint64_t *out,
                   int *present) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    /* JSON numbers are doubles here: integers up to 2^53 are exact. */
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740992.0)
        return fail(j, "%s%s%s: must be an integer in [0, 2^53]", path, *path ? "." : "", key);
    *out = (uint64_t)v->valuedouble;
    if (present) *present = 1;
    return 0;
}

static int get_bool(jctx *j, const cJSON *obj, const char *path, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v))
        return fail(j, "%s%s%s: must be true or false", path, *path ? "." : "", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_str(jctx *j, const cJSON *obj, const char *path, const char *key, char *out,
                   size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return fail(j, "%s%s%s: must be a string", path, *path ? "." : "", key);
    if (strlen(v->valuestring) >= cap)
        return fail(j, "%s%s%s: longer than %zu bytes", path, *path ? "." : "", key, cap - 1);
    snprintf(out, cap, "%s", v->valuestring);
    return 0;
}

/* ---- sections
 * ------------------------------------------------------------------------------------ */

static int read_arrival(jctx *j, const cJSON *o, wl_scenario *s) {
    static const char *const keys[] = {"process", "rate_hz", "seed", NULL};
    if (check_keys(j, o, "arrival", keys)) return -1;
    char proc[32] = "";
    if (get_str(j, o, "arrival", "process", proc, sizeof proc)) return -1;
    if (*proc) {
        if (strcmp(proc, "poisson") == 0)
            s->arrival_poisson = 1;
        else if (strcmp(proc, "fixed") == 0)
            s->arrival_poisson = 0;
        else
            return fail(j, "arrival.process: must be \"poisson\" or \"fixed\", got \"%s\"", proc);
    }
    if (get_num(j, o, "arrival", "rate_hz", 0, 1e6, &s->arrival_rate_hz)) return -1;
    return get_u64(j, o, "arrival", "seed", &s->seed, NULL);
}

static int read_join(jctx *j, const cJSON *o, wl_scenario *s) {
    static const char *const keys[] = {"variant", "scene", "seed", "token", NULL};
    if (check_keys(j, o, "join", keys)) return -1;
    if (get_str(j, o, "join", "variant", s->variant, sizeof s->variant) ||
        get_str(j, o, "join", "scene", s->scene, sizeof s->scene) ||
        get_str(j, o, "join", "token", s->token, sizeof s->token))
        return -1;
    return get_u64(j, o, "join", "seed", &s->join_seed, &s->has_join_seed);
}

static int read_mix(jctx *j, const cJSON *o, wl_scenario *s) {
    static const char *const keys[] = {"scripted", "idle", "slow_reader", "churn", "reset", NULL};
    if (check_keys(j, o, "mix", keys)) return -1;
    double w[WL_KIND_COUNT] = {0};
    double sum = 0;
    for (int k = 0; k < WL_KIND_COUNT; k++) {
        if (get_num(j, o, "mix", kind_names[k], 0, 1e9, &w[k])) return -1;
        sum += w[k];
    }
    if (sum <= 0) return fail(j, "mix: the weights must not all be 0");
    memcpy(s->mix, w, sizeof w);
    return 0;
}

static int read_service_level(jctx *j, const cJSON *o, wl_service_level *sl) {
    static const char *const keys[] = {"min_fps",         "max_p99_input_to_frame_ms",
                                       "min_on_deadline", "max_first_frame_ms",
                                       "min_session_s",   NULL};
    const char *p = "service_level";
    if (check_keys(j, o, p, keys)) return -1;
    return get_num(j, o, p, "min_fps", 0, 1000, &sl->min_fps) ||
                   get_num(j, o, p, "max_p99_input_to_frame_ms", 0, 1e9, &sl->max_p99_ms) ||
                   get_num(j, o, p, "min_on_deadline", 0, 1, &sl->min_on_deadline) ||
                   get_num(j, o, p, "max_first_frame_ms", 0, 1e9, &sl->max_first_frame_ms) ||
                   get_num(j, o, p, "min_session_s", 0, 1e6, &sl->min_session_s)
               ? -1
               : 0;
}

static int read_sweep(jctx *j, const cJSON *o, wl_scenario *s) {
    static const char *const keys[] = {"from", "to", "step", "ns", "settle_s", NULL};
    if (check_keys(j, o, "sweep", keys)) return -1;
    if (get_num(j, o, "sweep", "settle_s", 0, 3600, &s->settle_s)) return -1;
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(o, "ns");
    int has_range = cJSON_GetObjectItemCaseSensitive(o, "from") ||
                    cJSON_GetObjectItemCaseSensitive(o, "to") ||
                    cJSON_GetObjectItemCaseSensitive(o, "step");
    if (ns && has_range) return fail(j, "sweep: give either ns or from/to/step, not both");
    if (ns) {
        if (!cJSON_IsArray(ns) || cJSON_GetArraySize(ns) < 1 ||
            cJSON_GetArraySize(ns) > WL_MAX_SWEEP)
            return fail(j, "sweep.ns: must be an array of 1..%d player counts", WL_MAX_SWEEP);
        int i = 0;
        for (const cJSON *v = ns->child; v; v = v->next, i++) {
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
                v->valuedouble < 1 || v->valuedouble > 100000)
                return fail(j, "sweep.ns[%d]: must be an integer in [1, 100000]", i);
            if (i && v->valuedouble <= s->sweep_n[i - 1])
                return fail(j, "sweep.ns[%d]: must be larger than the one before", i);
            s->sweep_n[i] = (int)v->valuedouble;
        }
        s->sweep_count = i;
        return 0;
    }
    if (!has_range) return 0;
    int from = 1, to = 64, step = 1;
    if (get_int(j, o, "sweep", "from", 1, 100000, &from) ||
        get_int(j, o, "sweep", "to", 1, 100000, &to) ||
        get_int(j, o, "sweep", "step", 1, 100000, &step))
        return -1;
    if (to < from) return fail(j, "sweep.to: must be >= sweep.from");
    if ((to - from) / step + 1 > WL_MAX_SWEEP)
        return fail(j, "sweep: more than %d sizes", WL_MAX_SWEEP);
    s->sweep_count = 0;
    for (int n = from; n <= to; n += step) s->sweep_n[s->sweep_count++] = n;
    return 0;
}

static int read_top(jctx *j, const cJSON *root, wl_scenario *s) {
    static const char *const keys[] = {
        "name",    "url",           "players", "duration_s", "arrival", "input_hz",    "join",
        "actions", "actions_loop",  "mix",     "churn",      "reset",   "slow_reader", "viewer",
        "ping_s",  "service_level", "sweep",   "comment",    NULL};
    if (check_keys(j, root, "", keys)) return -1;
    char url[512] = "";
    if (get_str(j, root, "", "name", s->name, sizeof s->name) ||
        get_str(j, root, "", "url", url, sizeof url) ||
        get_int(j, root, "", "players", 1, 100000, &s->players) ||
        get_num(j, root, "", "duration_s", 0.1, 86400, &s->duration_s) ||
        get_num(j, root, "", "input_hz", 0, 1000, &s->input_hz) ||
        get_str(j, root, "", "actions", s->actions, sizeof s->actions) ||
        get_bool(j, root, "", "actions_loop", &s->actions_loop) ||
        get_num(j, root, "", "ping_s", 0, 3600, &s->ping_s))
        return -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "comment");
    if (c && !cJSON_IsString(c)) return fail(j, "comment: must be a string");
    if (*url && wl_scenario_set_url(s, url, j->err, j->errlen)) return -1;
    const cJSON *o;
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "arrival")) && read_arrival(j, o, s)) return -1;
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "join")) && read_join(j, o, s)) return -1;
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "mix")) && read_mix(j, o, s)) return -1;
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "churn"))) {
        static const char *const k[] = {"session_s", "gap_s", "random", NULL};
        if (check_keys(j, o, "churn", k) ||
            get_num(j, o, "churn", "session_s", 0.1, 86400, &s->churn_session_s) ||
            get_num(j, o, "churn", "gap_s", 0, 86400, &s->churn_gap_s) ||
            get_bool(j, o, "churn", "random", &s->churn_random))
            return -1;
    }
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "reset"))) {
        static const char *const k[] = {"every_s", NULL};
        if (check_keys(j, o, "reset", k) ||
            get_num(j, o, "reset", "every_s", 0.1, 86400, &s->reset_every_s))
            return -1;
    }
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "slow_reader"))) {
        static const char *const k[] = {"start_s", "pause_s", "read_s", "rcvbuf_bytes", NULL};
        if (check_keys(j, o, "slow_reader", k) ||
            get_int(j, o, "slow_reader", "rcvbuf_bytes", 0, 1 << 30, &s->slow_rcvbuf) ||
            get_num(j, o, "slow_reader", "start_s", 0, 86400, &s->slow_start_s) ||
            get_num(j, o, "slow_reader", "pause_s", 0.01, 86400, &s->slow_pause_s) ||
            get_num(j, o, "slow_reader", "read_s", 0, 86400, &s->slow_read_s))
            return -1;
    }
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "viewer"))) {
        static const char *const k[] = {"fps", "buffer_ms", NULL};
        if (check_keys(j, o, "viewer", k) ||
            get_num(j, o, "viewer", "fps", 0, 1000, &s->viewer_fps) ||
            get_num(j, o, "viewer", "buffer_ms", 0, 60000, &s->viewer_buffer_ms))
            return -1;
    }
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "service_level")) &&
        read_service_level(j, o, &s->sl))
        return -1;
    if ((o = cJSON_GetObjectItemCaseSensitive(root, "sweep")) && read_sweep(j, o, s)) return -1;
    return 0;
}

int wl_scenario_load(const char *path, wl_scenario *s, char *err, size_t errlen) {
    jctx j = {path, err, errlen};
    FILE *f = fopen(path, "rb");
    if (!f) return fail(&j, "cannot open: %s", strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                return fail(&j, "larger than 16 MiB");
            }
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return fail(&j, "out of memory");
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return fail(&j, "read error");
    }
    buf[len] = '\0';
    const char *end = NULL;
    /* len + 1: cJSON wants the terminating NUL inside the length to accept the end */
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len + 1, &end, 1);
    if (!root) {
        size_t off = end ? (size_t)(end - buf) : 0;
        int line = 1;
        for (size_t i = 0; i < off && i < len; i++) line += buf[i] == '\n';
        free(buf);
        return fail(&j, "invalid JSON near byte %zu (line %d)", off, line);
    }
    free(buf);
    /* relative paths in the file are relative to its folder */
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(s->dir, sizeof s->dir, "%.*s", (int)(slash - path), path);
    else
        snprintf(s->dir, sizeof s->dir, ".");
    if (slash == path) snprintf(s->dir, sizeof s->dir, "/");
    int rc = read_top(&j, root, s);
    cJSON_Delete(root);
    return rc;
}

int wl_scenario_set_url(wl_scenario *s, const char *url, char *err, size_t errlen) {
    const char *p = url;
    if (strncmp(p, "ws://", 5) != 0) {
        snprintf(err, errlen, "url '%s': only ws://host[:port][/path] is supported", url);
        return -1;
    }
    p += 5;
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= sizeof s->host) {
        snprintf(err, errlen, "url '%s': missing or over-long host", url);
        return -1;
    }
    char host[256];
    memcpy(host, p, hl);
    host[hl] = '\0';
    p += hl;
    int port = 80;
    if (*p == ':') {
        char *e;
        long v = strtol(p + 1, &e, 10);
        if (e == p + 1 || v < 1 || v > 65535 || (*e && *e != '/')) {
            snprintf(err, errlen, "url '%s': bad port", url);
            return -1;
        }
        port = (int)v;
        p = e;
    }
    if (strlen(*p ? p : "/ws") >= sizeof s->ws_path) {
        snprintf(err, errlen, "url '%s': path too long", url);
        return -1;
    }
    snprintf(s->host, sizeof s->host, "%s", host);
    s->port = port;
    snprintf(s->ws_path, sizeof s->ws_path, "%s", *p ? p : "/ws");
    return 0;
}

int wl_scenario_set_sweep(wl_scenario *s, const char *spec, char *err, size_t errlen) {
    int ns[WL_MAX_SWEEP], count = 0;
    if (strchr(spec, ':')) {
        int a = 0, b = 0, st = 1;
        int got = sscanf(spec, "%d:%d:%d", &a, &b, &st);
        if (got < 2 || a < 1 || b < a || st < 1 || (b - a) / st + 1 > WL_MAX_SWEEP) {
            snprintf(err, errlen,
                     "--sweep '%s': expected FROM:TO[:STEP] with 1 <= FROM <= TO, at most %d sizes",
                     spec, WL_MAX_SWEEP);
            return -1;
        }
        for (int n = a; n <= b; n += st) ns[count++] = n;
    } else {
        const char *p = spec;
        while (*p) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p || v < 1 || v > 100000 || (count && v <= ns[count - 1]) ||
                count == WL_MAX_SWEEP || (*e && *e != ',')) {
                snprintf(err, errlen,
                         "--sweep '%s': expected increasing player counts separated by commas",
                         spec);
                return -1;
            }
            ns[count++] = (int)v;
            p = *e ? e + 1 : e;
        }
        if (!count) {
            snprintf(err, errlen, "--sweep: empty list");
            return -1;
        }
    }
    memcpy(s->sweep_n, ns, (size_t)count * sizeof ns[0]);
    s->sweep_count = count;
    return 0;
}

void wl_mix_counts(const wl_scenario *s, int n, int counts[WL_KIND_COUNT]) {
    double sum = 0;
    for (int k = 0; k < WL_KIND_COUNT; k++) sum += s->mix[k];
    double rem[WL_KIND_COUNT];
    int total = 0;
    for (int k = 0; k < WL_KIND_COUNT; k++) {
        double exact = sum > 0 ? s->mix[k] / sum * n : (k == 0 ? n : 0);
        counts[k] = (int)floor(exact);
        rem[k] = exact - counts[k];
        total += counts[k];
    }
    while (total < n) {
        int best = 0;
        for (int k = 1; k < WL_KIND_COUNT; k++)
            if (rem[k] > rem[best]) best = k;
        counts[best]++;
        rem[best] = -1;
        total++;
    }
}

void wl_scenario_path(const wl_scenario *s, const char *rel, char *out, size_t outlen) {
    if (rel[0] == '/' || !strcmp(s->dir, "."))
        snprintf(out, outlen, "%s", rel);
    else
        snprintf(out, outlen, "%s/%s", s->dir, rel);
}
