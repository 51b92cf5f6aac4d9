/* Checks a wmload JSON report (wmload --json FILE) against the field list of tests/load/README.md,
 * written out here on its own so that a field dropped or renamed in report.c fails the smoke test:
 * every field present with its type, in every run, summary and session. With --smoke N it also
 * checks what the CI run must show: one run, N sessions established and none failed, frames,
 * input-to-frame samples, viewer blocks, no protocol errors, the service level met.
 * Prints one line per check group and exits 0 when all pass, 1 otherwise, 2 on usage errors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks, failed;

static void check(int ok, const char *what, const char *detail) {
    checks++;
    if (!ok) failed++;
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "", detail ? detail : "");
}

/* Types: n number, N number or null, s string, b bool, o object, O object or null, a array. */
static int type_ok(const cJSON *v, char t) {
    switch (t) {
    case 'n':
        return cJSON_IsNumber(v);
    case 'N':
        return cJSON_IsNumber(v) || cJSON_IsNull(v);
    case 's':
        return cJSON_IsString(v);
    case 'b':
        return cJSON_IsBool(v);
    case 'o':
        return cJSON_IsObject(v);
    case 'O':
        return cJSON_IsObject(v) || cJSON_IsNull(v);
    case 'a':
        return cJSON_IsArray(v);
    default:
        return 0;
    }
}

static const cJSON *get(const cJSON *o, const char *path) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *v = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = cJSON_GetObjectItemCaseSensitive(v, k);
    return v;
}

typedef struct field {
    const char *path;
    char type;
} field;

static int fields(const cJSON *o, const char *where, const field *f) {
    int bad = 0;
    for (; f->path; f++) {
        const cJSON *v = get(o, f->path);
        if (!v || !type_ok(v, f->type)) {
            char d[512];
            snprintf(d, sizeof d, "%s.%s %s (want type %c)", where, f->path,
                     v ? "has the wrong type" : "is missing", f->type);
            check(0, "field", d);
            bad++;
        }
    }
    return bad;
}

static const field pct_fields[] = {{"n", 'n'},   {"min", 'N'}, {"p50", 'N'},  {"p95", 'N'},
                                   {"p99", 'N'}, {"max", 'N'}, {"mean", 'N'}, {NULL, 0}};

static int pct(const cJSON *o, const char *where, const char *path, int hist) {
    const cJSON *p = get(o, path);
    char w[512];
    snprintf(w, sizeof w, "%s.%s", where, path);
    if (!p || !cJSON_IsObject(p)) {
        check(0, "field", w);
        return 1;
    }
    int bad = fields(p, w, pct_fields);
    if (hist) {
        static const field h[] = {{"histogram.bounds_ms", 'a'}, {"histogram.counts", 'a'}, {0, 0}};
        bad += fields(p, w, h);
        const cJSON *b = get(p, "histogram.bounds_ms"), *c = get(p, "histogram.counts");
        if (b && c && cJSON_GetArraySize(c) != cJSON_GetArraySize(b) + 1) {
            check(0, "histogram has one count more than bounds", w);
            bad++;
        }
    }
    return bad;
}

static int summary(const cJSON *s, const char *where) {
    static const field f[] = {{"sessions", 'n'},
                              {"connects.attempted", 'n'},
                              {"connects.established", 'n'},
                              {"connects.failed", 'n'},
                              {"connects.queued", 'n'},
                              {"first_frame_late", 'n'},
                              {"fps.checked_sessions", 'n'},
                              {"fps.aggregate", 'N'},
                              {"fps.frames", 'n'},
                              {"viewer.fps", 'n'},
                              {"viewer.buffer_ms", 'n'},
                              {"viewer.blocks", 'n'},
                              {"viewer.blocks_on_deadline", 'n'},
                              {"viewer.on_deadline_share", 'N'},
                              {"viewer.stalls", 'n'},
                              {"viewer.stall_ms", 'n'},
                              {"drops.server", 'n'},
                              {"drops.client_gaps", 'n'},
                              {"drops.out_of_order", 'n'},
                              {"errors.by_code", 'o'},
                              {"errors.total", 'n'},
                              {"errors.undecodable", 'n'},
                              {"errors.fatal_sessions", 'n'},
                              {"errors.closed_early", 'n'},
                              {"closes", 'o'},
                              {"rx_mbit_s", 'n'},
                              {"inputs_sent", 'n'},
                              {"resets", 'n'},
                              {NULL, 0}};
    int bad = fields(s, where, f);
    bad += pct(s, where, "connects.connect_ms", 0);
    bad += pct(s, where, "first_frame_ms", 0);
    bad += pct(s, where, "reset_first_frame_ms", 0);
    bad += pct(s, where, "fps.per_session", 0);
    bad += pct(s, where, "inter_arrival_ms", 1);
    bad += pct(s, where, "input_to_frame_ms", 1);
    bad += pct(s, where, "server_block_ms", 0);
    bad += pct(s, where, "rtt_ms", 0);
    return bad;
}

static int session(const cJSON *s, const char *where) {
    static const field f[] = {{"player", 'n'},
                              {"kind", 's'},
                              {"nth", 'n'},
                              {"sid", 'n'},
                              {"established", 'b'},
                              {"connect_ms", 'N'},
                              {"first_frame_ms", 'N'},
                              {"queued", 'b'},
                              {"play_s", 'n'},
                              {"frames", 'n'},
                              {"fps", 'n'},
                              {"max_inter_arrival_ms", 'n'},
                              {"input_to_frame_p99_ms", 'N'},
                              {"blocks", 'n'},
                              {"blocks_on_deadline", 'n'},
                              {"stalls", 'n'},
                              {"server_dropped", 'n'},
                              {"client_gaps", 'n'},
                              {"resets", 'n'},
                              {"inputs_sent", 'n'},
                              {"close_code", 'n'},
                              {"close_reason", 's'},
                              {"closed_early", 'b'},
                              {NULL, 0}};
    int bad = fields(s, where, f);
    const cJSON *fe = get(s, "fatal_error");
    if (!fe || !(cJSON_IsString(fe) || cJSON_IsNull(fe))) {
        check(0, "field", "fatal_error (string or null)");
        bad++;
    }
    return bad;
}

static double num(const cJSON *o, const char *path) {
    const cJSON *v = get(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

int main(int argc, char **argv) {
    int smoke = -1;
    if (argc == 4 && strcmp(argv[2], "--smoke") == 0)
        smoke = atoi(argv[3]);
    else if (argc != 2) {
        fprintf(stderr, "usage: wmload_check_report REPORT.json [--smoke N_PLAYERS]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    static char buf[64 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    cJSON *root = cJSON_Parse(buf);
    check(root != NULL, "the report parses as JSON", NULL);
    if (!root) return 1;

    static const field top[] = {{"wmload", 's'},
                                {"scenario.name", 's'},
                                {"scenario.file", 's'},
                                {"scenario.url", 's'},
                                {"scenario.players", 'n'},
                                {"scenario.duration_s", 'n'},
                                {"scenario.arrival.process", 's'},
                                {"scenario.arrival.rate_hz", 'n'},
                                {"scenario.arrival.seed", 'n'},
                                {"scenario.input_hz", 'n'},
                                {"scenario.actions", 's'},
                                {"scenario.mix.scripted", 'n'},
                                {"scenario.mix.idle", 'n'},
                                {"scenario.mix.slow_reader", 'n'},
                                {"scenario.mix.churn", 'n'},
                                {"scenario.mix.reset", 'n'},
                                {"scenario.join.variant", 's'},
                                {"scenario.join.scene", 's'},
                                {"scenario.join.seed", 'N'},
                                {"service_level.min_fps", 'n'},
                                {"service_level.max_p99_input_to_frame_ms", 'n'},
                                {"service_level.min_on_deadline", 'n'},
                                {"service_level.max_first_frame_ms", 'n'},
                                {"service_level.min_session_s", 'n'},
                                {"runs", 'a'},
                                {"total.runs", 'n'},
                                {"total.connects.attempted", 'n'},
                                {"total.connects.established", 'n'},
                                {"total.connects.failed", 'n'},
                                {"total.frames", 'n'},
                                {"total.errors", 'n'},
                                {"total.server_dropped", 'n'},
                                {"total.client_gaps", 'n'},
                                {"sweep", 'O'},
                                {"passed", 'b'},
                                {NULL, 0}};
    int bad = fields(root, "report", top);
    const cJSON *runs = get(root, "runs");
    int nr = cJSON_IsArray(runs) ? cJSON_GetArraySize(runs) : 0;
    check(nr >= 1, "at least one run", NULL);
    for (int i = 0; i < nr; i++) {
        const cJSON *r = cJSON_GetArrayItem(runs, i);
        char w[64];
        snprintf(w, sizeof w, "runs[%d]", i);
        static const field rf[] = {{"n", 'n'},           {"kinds.scripted", 'n'},
                                   {"kinds.idle", 'n'},  {"kinds.slow_reader", 'n'},
                                   {"kinds.churn", 'n'}, {"kinds.reset", 'n'},
                                   {"duration_s", 'n'},  {"run_s", 'n'},
                                   {"input_hz", 'n'},    {"server", 's'},
                                   {"server_fps", 'n'},  {"interrupted", 'b'},
                                   {"passed", 'b'},      {"failures", 'a'},
                                   {"warnings", 'a'},    {"checked", 'o'},
                                   {"all", 'o'},         {"by_kind", 'o'},
                                   {"sessions", 'a'},    {NULL, 0}};
        bad += fields(r, w, rf);
        char ws[96];
        snprintf(ws, sizeof ws, "%s.checked", w);
        if (get(r, "checked")) bad += summary(get(r, "checked"), ws);
        snprintf(ws, sizeof ws, "%s.all", w);
        if (get(r, "all")) bad += summary(get(r, "all"), ws);
        const cJSON *bk = get(r, "by_kind");
        for (const cJSON *k = bk ? bk->child : NULL; k; k = k->next) {
            snprintf(ws, sizeof ws, "%s.by_kind.%s", w, k->string);
            bad += summary(k, ws);
        }
        const cJSON *ss = get(r, "sessions");
        int n = 0;
        for (const cJSON *x = ss ? ss->child : NULL; x; x = x->next, n++) {
            snprintf(ws, sizeof ws, "%s.sessions[%d]", w, n);
            bad += session(x, ws);
        }
    }
    char d[256];
    snprintf(d, sizeof d, "every documented field present with its type (%d runs)", nr);
    check(bad == 0, d, NULL);

    if (smoke >= 0 && nr >= 1) {
        const cJSON *r = cJSON_GetArrayItem(runs, 0);
        char m[256];
        snprintf(m, sizeof m, "%.0f attempted, %.0f established, %.0f failed (want %d, %d, 0)",
                 num(r, "all.connects.attempted"), num(r, "all.connects.established"),
                 num(r, "all.connects.failed"), smoke, smoke);
        check(num(r, "all.connects.attempted") == smoke &&
                  num(r, "all.connects.established") == smoke && num(r, "all.connects.failed") == 0,
              "connects", m);
        snprintf(m, sizeof m, "%.0f frames, slowest session %.2f fps, %.0f sessions checked",
                 num(r, "checked.fps.frames"), num(r, "checked.fps.per_session.min"),
                 num(r, "checked.fps.checked_sessions"));
        check(num(r, "checked.fps.frames") > 0 && num(r, "checked.fps.checked_sessions") == smoke,
              "frames", m);
        snprintf(m, sizeof m, "%.0f samples, p99 %.1f ms", num(r, "checked.input_to_frame_ms.n"),
                 num(r, "checked.input_to_frame_ms.p99"));
        check(num(r, "checked.input_to_frame_ms.n") > 0, "input-to-frame latency measured", m);
        snprintf(m, sizeof m, "%.0f of %.0f blocks on deadline, %.0f stalls",
                 num(r, "checked.viewer.blocks_on_deadline"), num(r, "checked.viewer.blocks"),
                 num(r, "checked.viewer.stalls"));
        check(num(r, "checked.viewer.blocks") > 0, "viewer blocks", m);
        snprintf(m, sizeof m, "%.0f errors, %.0f undecodable messages, %.0f closed early",
                 num(r, "all.errors.total"), num(r, "all.errors.undecodable"),
                 num(r, "all.errors.closed_early"));
        check(num(r, "all.errors.total") == 0 && num(r, "all.errors.undecodable") == 0 &&
                  num(r, "all.errors.closed_early") == 0,
              "no errors", m);
        const cJSON *p = get(root, "passed");
        const cJSON *fl = get(r, "failures");
        const cJSON *f0 = fl ? cJSON_GetArrayItem(fl, 0) : NULL;
        snprintf(m, sizeof m, "%s", cJSON_IsTrue(p) ? "passed" : f0 ? f0->valuestring : "failed");
        check(cJSON_IsTrue(p), "service level", m);
    }
    cJSON_Delete(root);
    printf("wmload_check_report: %d checks, %d failed\n", checks, failed);
    return failed ? 1 : 0;
}
