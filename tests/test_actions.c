/* Tests of engine/actions: the examples of engine/ACTIONS.md (embedded below and checked to be
 * identical to the document's) parse to the frames written out here; key names round-trip; every
 * documented error is rejected with a message naming the entry and field; random scripts are
 * deterministic and obey their constraints; and the window index arithmetic matches the explicit
 * table of model-dit.md §3.3. Each check prints what it compared. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/actions.h"
#include "engine/config.h"
#include "engine/errors.h"

static int n_checks, n_failed;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    n_checks++;
    if (!ok) n_failed++;
}

static eng_config cfgs[ENG_VARIANT_COUNT];

static const eng_config *cfg_of(eng_variant v) {
    return &cfgs[v];
}

/* Expected frames as runs of identical frames. */
typedef struct run {
    int count;
    float kb[ENG_MAX_KDIM];
    float mouse[2];
} run;

// clang-format off
#define END_RUNS {-1, {0}, {0}}
// clang-format on

static void fmt_frame(char *dst, size_t cap, const eng_action_frame *f, int kdim) {
    size_t u = 0;
    u += (size_t)snprintf(dst + u, cap - u, "kb [");
    for (int k = 0; k < kdim && u < cap; k++)
        u += (size_t)snprintf(dst + u, cap - u, "%s%g", k ? " " : "", (double)f->keyboard[k]);
    if (u < cap)
        snprintf(dst + u, cap - u, "] mouse [%g %g]", (double)f->mouse[0], (double)f->mouse[1]);
}

static int frame_eq(const eng_action_frame *a, const eng_action_frame *b) {
    for (int k = 0; k < ENG_MAX_KDIM; k++)
        if (a->keyboard[k] != b->keyboard[k]) return 0;
    return a->mouse[0] == b->mouse[0] && a->mouse[1] == b->mouse[1];
}

/* Compares a script with runs; prints the first mismatch. */
static int script_matches(const eng_action_script *s, const run *runs, int kdim, char *why,
                          size_t cap) {
    size_t at = 0;
    for (const run *r = runs; r->count >= 0; r++) {
        eng_action_frame want;
        memset(&want, 0, sizeof want);
        memcpy(want.keyboard, r->kb, sizeof want.keyboard);
        memcpy(want.mouse, r->mouse, sizeof want.mouse);
        for (int i = 0; i < r->count; i++, at++) {
            if (at >= s->count) {
                snprintf(why, cap, "script has %zu frames, expected more", s->count);
                return 0;
            }
            if (!frame_eq(&s->frames[at], &want)) {
                char g[160], w[160];
                fmt_frame(g, sizeof g, &s->frames[at], kdim);
                fmt_frame(w, sizeof w, &want, kdim);
                snprintf(why, cap, "frame %zu: got %s, want %s", at, g, w);
                return 0;
            }
        }
    }
    if (at != s->count) {
        snprintf(why, cap, "script has %zu frames, expected %zu", s->count, at);
        return 0;
    }
    snprintf(why, cap, "%zu frames equal", at);
    return 1;
}

/* ACTIONS.md examples ------------------------------------------------------------------------ */

/* Each text is byte-identical to a ```json block of engine/ACTIONS.md (checked below). */
typedef struct example {
    const char *name;
    eng_variant variant;
    const char *text;
    run runs[6];
} example;

static const example examples[] = {
    {"universal full form",
     ENG_VARIANT_UNIVERSAL,
     "{\n"
     "  \"variant\": \"universal\",\n"
     "  \"frames\": [\n"
     "    {\"keys\": [\"forward\", \"left\"], \"mouse\": [0.0, 0.1], \"repeat\": 12},\n"
     "    {\"keyboard\": [1, 0, 0, 0], \"repeat\": 4},\n"
     "    {}\n"
     "  ]\n"
     "}",
     {{12, {1, 0, 1, 0}, {0.0f, 0.1f}}, {4, {1, 0, 0, 0}, {0, 0}}, {1, {0}, {0, 0}}, END_RUNS}},
    {"universal shorthand",
     ENG_VARIANT_UNIVERSAL,
     "[\n"
     "  {\"mouse\": [0.1, 0], \"repeat\": 2},\n"
     "  {\"keys\": [\"back\", \"right\"], \"mouse\": [-0.1, -0.1]}\n"
     "]",
     {{2, {0}, {0.1f, 0}}, {1, {0, 1, 0, 1}, {-0.1f, -0.1f}}, END_RUNS}},
    {"gta_drive",
     ENG_VARIANT_GTA_DRIVE,
     "{\n"
     "  \"variant\": \"gta_drive\",\n"
     "  \"frames\": [\n"
     "    {\"keys\": [\"forward\"], \"repeat\": 9},\n"
     "    {\"keys\": [\"forward\"], \"mouse\": [0, 0.1], \"repeat\": 12},\n"
     "    {\"keys\": [\"back\"], \"mouse\": [0, -0.1], \"repeat\": 12}\n"
     "  ]\n"
     "}",
     {{9, {1, 0}, {0, 0}}, {12, {1, 0}, {0, 0.1f}}, {12, {0, 1}, {0, -0.1f}}, END_RUNS}},
    {"templerun",
     ENG_VARIANT_TEMPLERUN,
     "{\n"
     "  \"variant\": \"templerun\",\n"
     "  \"frames\": [\n"
     "    {\"keys\": [\"no-move\"], \"repeat\": 9},\n"
     "    {\"keys\": [\"turn-left\"], \"repeat\": 12},\n"
     "    {\"keyboard\": [0, 1, 0, 0, 0, 0, 0], \"repeat\": 12}\n"
     "  ]\n"
     "}",
     {{9, {1, 0, 0, 0, 0, 0, 0}, {0, 0}},
      {12, {0, 0, 0, 1, 0, 0, 0}, {0, 0}},
      {12, {0, 1, 0, 0, 0, 0, 0}, {0, 0}},
      END_RUNS}},
    {"templerun shorthand",
     ENG_VARIANT_TEMPLERUN,
     "[{\"keys\": [\"jump\"], \"repeat\": 3}, {\"keys\": [\"slide\"], \"mouse\": [0, 0]}]",
     {{3, {0, 1, 0, 0, 0, 0, 0}, {0, 0}}, {1, {0, 0, 1, 0, 0, 0, 0}, {0, 0}}, END_RUNS}},
};
#define N_EXAMPLES (sizeof examples / sizeof *examples)

static void test_examples(void) {
    char err[512], why[512];
    for (size_t i = 0; i < N_EXAMPLES; i++) {
        const example *e = &examples[i];
        eng_action_script s = {0};
        int rc = eng_actions_parse_json(e->text, strlen(e->text), "ACTIONS.md", cfg_of(e->variant),
                                        &s, err, sizeof err);
        check(rc == 0, "example '%s' (%s) parses: rc %d%s%s", e->name, eng_variant_name(e->variant),
              rc, rc ? ": " : "", rc ? err : "");
        if (rc == 0) {
            int ok =
                script_matches(&s, e->runs, cfg_of(e->variant)->keyboard_dim_in, why, sizeof why);
            check(ok, "example '%s' frames: %s", e->name, why);
        }
        eng_actions_free(&s);
    }
}

/* Error messages quoted verbatim in the ```text block of ACTIONS.md, with the inputs giving them.
 */
typedef struct doc_error {
    eng_variant variant;
    const char *text;
    const char *message;
} doc_error;

static const doc_error doc_errors[] = {
    {ENG_VARIANT_UNIVERSAL, "{\"frames\": [{}, {}, {}, {\"keys\": [\"forward\", \"jump\"]}]}",
     "script.json: frames[3].keys[1]: unknown key 'jump' for variant universal (keys: forward back "
     "left right)"},
    {ENG_VARIANT_TEMPLERUN, "[{\"keys\": [\"jump\"]}, {\"mouse\": [0, 0.1]}]",
     "script.json: frames[1].mouse: templerun has no mouse (only [0, 0] or no 'mouse' field)"},
    {ENG_VARIANT_UNIVERSAL, "{\"frames\": [{\"repeat\": 0}]}",
     "script.json: frames[0].repeat: must be an integer 1..4194304, got 0"},
    {ENG_VARIANT_UNIVERSAL, "{\"frames\": [{\"keys\": [\"forward\"]",
     "script.json: invalid JSON: unexpected end of input at byte 32 (line 1, column 33; "
     "truncated?)"},
};
#define N_DOC_ERRORS (sizeof doc_errors / sizeof *doc_errors)

static void test_doc_errors(void) {
    char err[512];
    for (size_t i = 0; i < N_DOC_ERRORS; i++) {
        const doc_error *d = &doc_errors[i];
        eng_action_script s = {0};
        int rc = eng_actions_parse_json(d->text, strlen(d->text), "script.json", cfg_of(d->variant),
                                        &s, err, sizeof err);
        check(rc < 0 && strcmp(err, d->message) == 0, "documented message: rc %d, got \"%s\"", rc,
              rc < 0 ? err : "(none)");
        eng_actions_free(&s);
    }
}

/* Reads engine/ACTIONS.md next to this source file (CMake compiles with absolute paths) and checks
 * that its ```json blocks are exactly the embedded examples and its ```text lines exactly the
 * documented messages, in both directions. */
static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) free(buf);
            buf = nb, cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

static void test_doc_sync(void) {
    char path[1024];
    const char *src = __FILE__;
    const char *slash = strrchr(src, '/');
    if (!slash || src[0] != '/') {
        printf("note: %s is not an absolute path; ACTIONS.md sync check skipped\n", src);
        return;
    }
    snprintf(path, sizeof path, "%.*s/../engine/ACTIONS.md", (int)(slash - src), src);
    char *doc = read_all(path);
    check(doc != NULL, "read %s for the sync check", path);
    if (!doc) return;

    int seen_ex[N_EXAMPLES] = {0}, seen_err[N_DOC_ERRORS] = {0};
    int n_json = 0, n_text = 0;
    for (const char *p = doc; (p = strstr(p, "```")) != NULL;) {
        const char *lang = p + 3;
        const char *body = strchr(lang, '\n');
        if (!body) break;
        body++;
        const char *close = strstr(body, "\n```");
        if (!close) break;
        size_t blen = (size_t)(close - body);
        int is_json = strncmp(lang, "json\n", 5) == 0, is_text = strncmp(lang, "text\n", 5) == 0;
        if (is_json) {
            n_json++;
            int found = 0;
            for (size_t i = 0; i < N_EXAMPLES; i++)
                if (strlen(examples[i].text) == blen && memcmp(examples[i].text, body, blen) == 0)
                    seen_ex[i] = found = 1;
            const char *nl = memchr(body, '\n', blen);
            int shown = (int)(nl ? (size_t)(nl - body) : blen);
            check(found, "ACTIONS.md json block %d (\"%.*s ...\") is embedded in the test", n_json,
                  shown, body);
        } else if (is_text) {
            for (const char *l = body; l < close;) {
                const char *nl = memchr(l, '\n', (size_t)(close - l));
                size_t llen = nl ? (size_t)(nl - l) : (size_t)(close - l);
                n_text++;
                int found = 0;
                for (size_t i = 0; i < N_DOC_ERRORS; i++)
                    if (strlen(doc_errors[i].message) == llen &&
                        memcmp(doc_errors[i].message, l, llen) == 0)
                        seen_err[i] = found = 1;
                check(found, "ACTIONS.md message \"%.*s\" is produced by a test input", (int)llen,
                      l);
                l += llen + 1;
            }
        }
        p = close + 4;
    }
    for (size_t i = 0; i < N_EXAMPLES; i++)
        check(seen_ex[i], "embedded example '%s' appears in ACTIONS.md", examples[i].name);
    for (size_t i = 0; i < N_DOC_ERRORS; i++)
        check(seen_err[i], "documented message %zu appears in ACTIONS.md", i);
    free(doc);
}

/* Key names ---------------------------------------------------------------------------------- */

static void test_key_names(void) {
    static const char *const want[ENG_VARIANT_COUNT][8] = {
        {"forward", "back", "left", "right", NULL},
        {"forward", "back", NULL},
        {"no-move", "jump", "slide", "turn-left", "turn-right", "left-side", "right-side", NULL},
    };
    for (int v = 0; v < ENG_VARIANT_COUNT; v++) {
        int n = 0;
        while (want[v][n]) n++;
        check(n == cfgs[v].keyboard_dim_in, "%s: %d key names, config kdim %d",
              eng_variant_name((eng_variant)v), n, cfgs[v].keyboard_dim_in);
        for (int i = 0; i < n; i++) {
            const char *name = eng_action_key_name((eng_variant)v, i);
            int back = name ? eng_action_key_index((eng_variant)v, name) : -2;
            check(name && strcmp(name, want[v][i]) == 0 && back == i,
                  "%s key %d: name '%s' (want '%s'), index of name %d",
                  eng_variant_name((eng_variant)v), i, name ? name : "(null)", want[v][i], back);
        }
        check(eng_action_key_name((eng_variant)v, n) == NULL &&
                  eng_action_key_name((eng_variant)v, -1) == NULL,
              "%s: no key name at index %d or -1", eng_variant_name((eng_variant)v), n);
        check(eng_action_key_index((eng_variant)v, "jumpp") == -1 &&
                  eng_action_key_index((eng_variant)v, NULL) == -1 &&
                  eng_action_key_index((eng_variant)v, "Forward") == -1,
              "%s: unknown, NULL and wrong-case names give -1", eng_variant_name((eng_variant)v));
    }
    check(eng_action_key_index(ENG_VARIANT_COUNT, "forward") == -1 &&
              eng_action_key_name(ENG_VARIANT_COUNT, 0) == NULL,
          "invalid variant has no keys");
}

/* Parsing ------------------------------------------------------------------------------------ */

static int parse(eng_variant v, const char *text, eng_action_script *s, char *err, size_t cap) {
    return eng_actions_parse_json(text, strlen(text), "case.json", cfg_of(v), s, err, cap);
}

static void expect_ok(const char *what, eng_variant v, const char *text, const run *runs) {
    char err[512], why[512];
    eng_action_script s = {0};
    int rc = parse(v, text, &s, err, sizeof err);
    check(rc == 0, "%s: parses (rc %d%s%s)", what, rc, rc ? ": " : "", rc ? err : "");
    if (rc == 0) {
        int ok = script_matches(&s, runs, cfg_of(v)->keyboard_dim_in, why, sizeof why);
        check(ok, "%s: %s", what, why);
    }
    eng_actions_free(&s);
}

static void test_parse_ok(void) {
    expect_ok("repeat expansion", ENG_VARIANT_UNIVERSAL,
              "{\"frames\": [{\"keys\": [\"left\"], \"repeat\": 3}, {\"keys\": [\"right\"], "
              "\"repeat\": 2}, {\"keys\": [\"forward\", \"back\"]}]}",
              (const run[]){{3, {0, 0, 1, 0}, {0, 0}},
                            {2, {0, 0, 0, 1}, {0, 0}},
                            {1, {1, 1, 0, 0}, {0, 0}},
                            END_RUNS});
    expect_ok("raw vector, non-binary values kept", ENG_VARIANT_TEMPLERUN,
              "[{\"keyboard\": [0.5, 0, -1, 0, 0, 2, 0.25], \"repeat\": 2}]",
              (const run[]){{2, {0.5f, 0, -1, 0, 0, 2, 0.25f}, {0, 0}}, END_RUNS});
    expect_ok("raw vector gta_drive, mouse both components", ENG_VARIANT_GTA_DRIVE,
              "[{\"keyboard\": [0, 1], \"mouse\": [-0.25, 0.5]}]",
              (const run[]){{1, {0, 1}, {-0.25f, 0.5f}}, END_RUNS});
    expect_ok("empty keys array, integral float repeat", ENG_VARIANT_UNIVERSAL,
              "[{\"keys\": [], \"repeat\": 2.0}]", (const run[]){{2, {0}, {0, 0}}, END_RUNS});
    expect_ok("variant alias gta", ENG_VARIANT_GTA_DRIVE,
              "{\"variant\": \"gta\", \"frames\": [{\"keys\": [\"back\"]}]}",
              (const run[]){{1, {0, 1}, {0, 0}}, END_RUNS});
    expect_ok("empty frames object", ENG_VARIANT_UNIVERSAL, "{\"frames\": []}",
              (const run[]){END_RUNS});
    expect_ok("empty array shorthand, whitespace around", ENG_VARIANT_UNIVERSAL, " \n[ ]\n\t ",
              (const run[]){END_RUNS});

    /* Non-NUL-terminated input: the parser must honour len. */
    char buf[64];
    const char *t = "[{\"repeat\": 2}]";
    size_t tl = strlen(t);
    memcpy(buf, t, tl);
    memset(buf + tl, 'x', sizeof buf - tl);
    char err[256];
    eng_action_script s = {0};
    int rc =
        eng_actions_parse_json(buf, tl, "buf", cfg_of(ENG_VARIANT_UNIVERSAL), &s, err, sizeof err);
    check(rc == 0 && s.count == 2, "input without NUL terminator: rc %d, %zu frames (want 2)", rc,
          s.count);
    eng_actions_free(&s);

    /* The largest script allowed: exactly ENG_ACTIONS_MAX_FRAMES frames. */
    rc = parse(ENG_VARIANT_UNIVERSAL,
               "[{\"repeat\": 4194300}, {\"keys\": [\"back\"], \"repeat\": 4}]", &s, err,
               sizeof err);
    check(rc == 0 && s.count == ENG_ACTIONS_MAX_FRAMES &&
              s.frames[s.count - 1].keyboard[1] == 1.0f &&
              s.frames[s.count - 5].keyboard[1] == 0.0f,
          "script of exactly %u frames: rc %d, %zu frames", ENG_ACTIONS_MAX_FRAMES, rc, s.count);
    eng_actions_free(&s);
}

typedef struct bad_case {
    const char *what;
    eng_variant variant;
    const char *text;
    const char *needles[4]; /* substrings the message must contain */
} bad_case;

static const bad_case bad_cases[] = {
    {"unknown key",
     ENG_VARIANT_UNIVERSAL,
     "[{}, {\"keys\": [\"forward\", \"jump\"]}]",
     {"case.json: frames[1].keys[1]: ", "unknown key 'jump'", "forward back left right"}},
    {"unknown key for gta_drive",
     ENG_VARIANT_GTA_DRIVE,
     "[{\"keys\": [\"left\"]}]",
     {"frames[0].keys[0]: ", "unknown key 'left' for variant gta_drive", "(keys: forward back)"}},
    {"key not a string",
     ENG_VARIANT_UNIVERSAL,
     "[{\"keys\": [0]}]",
     {"frames[0].keys[0]: ", "got number"}},
    {"keys not an array",
     ENG_VARIANT_UNIVERSAL,
     "[{\"keys\": \"forward\"}]",
     {"frames[0].keys: ", "got string"}},
    {"unknown field in entry",
     ENG_VARIANT_UNIVERSAL,
     "[{}, {\"mouse\": [0, 0], \"rpeat\": 2}]",
     {"frames[1].rpeat: ", "unknown field"}},
    {"unknown top-level field",
     ENG_VARIANT_UNIVERSAL,
     "{\"frames\": [], \"fps\": 30}",
     {"case.json: fps: ", "unknown top-level field"}},
    {"duplicate field",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": 1, \"repeat\": 2}]",
     {"frames[0].repeat: ", "duplicate field"}},
    {"wrong vector length",
     ENG_VARIANT_UNIVERSAL,
     "[{\"keyboard\": [1, 0, 0]}]",
     {"frames[0].keyboard: ", "exactly 4 numbers", "length 3"}},
    {"wrong vector length templerun",
     ENG_VARIANT_TEMPLERUN,
     "[{\"keyboard\": [1, 0, 0, 0]}]",
     {"frames[0].keyboard: ", "exactly 7 numbers", "length 4"}},
    {"keyboard element not a number",
     ENG_VARIANT_GTA_DRIVE,
     "[{\"keyboard\": [1, true]}]",
     {"frames[0].keyboard[1]: ", "got boolean"}},
    {"mouse of one number",
     ENG_VARIANT_UNIVERSAL,
     "[{\"mouse\": [0.1]}]",
     {"frames[0].mouse: ", "2 numbers", "length 1"}},
    {"mouse not an array",
     ENG_VARIANT_UNIVERSAL,
     "[{\"mouse\": 0.1}]",
     {"frames[0].mouse: ", "got number"}},
    {"mouse for templerun",
     ENG_VARIANT_TEMPLERUN,
     "[{\"keys\": [\"jump\"]}, {\"mouse\": [0.1, 0]}]",
     {"frames[1].mouse: ", "templerun has no mouse"}},
    {"inf via 1e999 in mouse",
     ENG_VARIANT_UNIVERSAL,
     "[{\"mouse\": [1e999, 0]}]",
     {"frames[0].mouse[0]: ", "finite"}},
    {"-inf via -1e999 in keyboard",
     ENG_VARIANT_UNIVERSAL,
     "[{}, {}, {\"keyboard\": [0, -1e999, 0, 0]}]",
     {"frames[2].keyboard[1]: ", "finite"}},
    {"1e300 beyond float range",
     ENG_VARIANT_GTA_DRIVE,
     "[{\"mouse\": [0, -1e300]}]",
     {"frames[0].mouse[1]: ", "beyond float range"}},
    {"1e39 beyond float range in keyboard",
     ENG_VARIANT_GTA_DRIVE,
     "[{\"keyboard\": [1e39, 0]}]",
     {"frames[0].keyboard[0]: ", "beyond float range"}},
    {"repeat 0",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": 0}]",
     {"frames[0].repeat: ", "1..4194304", "got 0"}},
    {"repeat too large",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": 4194305}]",
     {"frames[0].repeat: ", "1..4194304", "got 4194305"}},
    {"repeat negative", ENG_VARIANT_UNIVERSAL, "[{\"repeat\": -3}]", {"frames[0].repeat: "}},
    {"repeat fractional",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": 2.5}]",
     {"frames[0].repeat: ", "got 2.5"}},
    {"repeat as string",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": \"3\"}]",
     {"frames[0].repeat: ", "got string"}},
    {"repeat 1e999", ENG_VARIANT_UNIVERSAL, "[{\"repeat\": 1e999}]", {"frames[0].repeat: "}},
    {"total too large",
     ENG_VARIANT_UNIVERSAL,
     "[{\"repeat\": 4194304}, {\"repeat\": 1}]",
     {"frames[1].repeat: ", "exceeds 4194304"}},
    {"duplicate key",
     ENG_VARIANT_UNIVERSAL,
     "[{\"keys\": [\"left\", \"forward\", \"left\"]}]",
     {"frames[0].keys[2]: ", "duplicate key 'left'"}},
    {"keys and keyboard",
     ENG_VARIANT_UNIVERSAL,
     "[{}, {\"keys\": [\"left\"], \"keyboard\": [0, 0, 1, 0]}]",
     {"frames[1]: ", "'keys' and 'keyboard'"}},
    {"variant mismatch",
     ENG_VARIANT_UNIVERSAL,
     "{\"variant\": \"templerun\", \"frames\": []}",
     {"case.json: variant: ", "templerun", "model is universal"}},
    {"unknown variant",
     ENG_VARIANT_UNIVERSAL,
     "{\"variant\": \"minecraft\", \"frames\": []}",
     {"variant: ", "unknown variant 'minecraft'"}},
    {"variant not a string",
     ENG_VARIANT_UNIVERSAL,
     "{\"variant\": 0, \"frames\": []}",
     {"variant: ", "got number"}},
    {"top level a number", ENG_VARIANT_UNIVERSAL, "42", {"case.json: top level", "got number"}},
    {"top level a string", ENG_VARIANT_UNIVERSAL, "\"frames\"", {"top level", "got string"}},
    {"entry not an object",
     ENG_VARIANT_UNIVERSAL,
     "[{}, [1, 0, 0, 0]]",
     {"frames[1]: ", "must be an object", "got array"}},
    {"frames not an array",
     ENG_VARIANT_UNIVERSAL,
     "{\"frames\": {}}",
     {"frames: ", "must be an array", "got object"}},
    {"frames missing", ENG_VARIANT_UNIVERSAL, "{\"variant\": \"universal\"}", {"frames: missing"}},
    {"truncated JSON",
     ENG_VARIANT_UNIVERSAL,
     "{\"frames\": [{\"keys\": [\"forward\"]",
     {"case.json: invalid JSON", "truncated"}},
    {"syntax error mid-file",
     ENG_VARIANT_UNIVERSAL,
     "[\n  {\"repeat\": 2},\n  {repeat: 2}\n]",
     {"invalid JSON near byte", "(line 3, column"}},
    {"bad last byte is not called truncation",
     ENG_VARIANT_UNIVERSAL,
     "[}",
     {"invalid JSON near byte 1 (line 1, column 2)"}},
    {"truncated inside a string",
     ENG_VARIANT_UNIVERSAL,
     "[{\"keys\": [\"forw",
     {"unexpected end of input at byte 16", "truncated"}},
    {"only whitespace", ENG_VARIANT_UNIVERSAL, " \n ", {"empty input"}},
    {"NaN literal", ENG_VARIANT_UNIVERSAL, "[{\"mouse\": [NaN, 0]}]", {"invalid JSON"}},
    {"trailing data", ENG_VARIANT_UNIVERSAL, "[] x", {"unexpected data after", "byte 3"}},
    {"two values", ENG_VARIANT_UNIVERSAL, "[] []", {"unexpected data after"}},
    {"empty input", ENG_VARIANT_UNIVERSAL, "", {"case.json: empty input"}},
};
#define N_BAD (sizeof bad_cases / sizeof *bad_cases)

static void test_parse_errors(void) {
    for (size_t i = 0; i < N_BAD; i++) {
        const bad_case *b = &bad_cases[i];
        char err[512];
        strcpy(err, "(no message)");
        eng_action_script s = {(eng_action_frame *)&s, 99}; /* must be reset to empty */
        int rc = parse(b->variant, b->text, &s, err, sizeof err);
        int ok = rc < 0 && s.frames == NULL && s.count == 0;
        const char *missing = NULL;
        for (int k = 0; k < 4 && b->needles[k]; k++)
            if (!strstr(err, b->needles[k])) ok = 0, missing = b->needles[k];
        check(ok, "error '%s': rc %d, output %s, message \"%s\"%s%s%s", b->what, rc,
              s.frames == NULL && s.count == 0 ? "empty" : "NOT EMPTY", err,
              missing ? " (missing \"" : "", missing ? missing : "", missing ? "\")" : "");
        eng_actions_free(&s);
    }

    /* Argument errors. */
    char err[256];
    eng_action_script s = {0};
    int rc =
        eng_actions_parse_json(NULL, 0, "x", cfg_of(ENG_VARIANT_UNIVERSAL), &s, err, sizeof err);
    check(rc == ENG_EINVAL, "NULL text: rc %d (want %d), \"%s\"", rc, ENG_EINVAL, err);
    rc = eng_actions_parse_json("[]", 2, "x", NULL, &s, err, sizeof err);
    check(rc == ENG_EINVAL, "NULL config: rc %d (want %d), \"%s\"", rc, ENG_EINVAL, err);
    rc = eng_actions_parse_json("[{\"repeat\": 0}]", 15, NULL, cfg_of(ENG_VARIANT_UNIVERSAL), &s,
                                NULL, 0);
    check(rc < 0, "NULL origin and no error buffer: rc %d, no crash", rc);
    char tiny[8];
    rc = parse(ENG_VARIANT_UNIVERSAL, "[{\"repeat\": 0}]", &s, tiny, sizeof tiny);
    check(rc < 0 && strlen(tiny) == sizeof tiny - 1, "8-byte error buffer: truncated to \"%s\"",
          tiny);
}

/* Files -------------------------------------------------------------------------------------- */

static void test_load(void) {
    char path[] = "/tmp/wm_test_actions_XXXXXX";
    int fd = mkstemp(path);
    check(fd >= 0, "create temporary file %s", path);
    if (fd < 0) return;
    const char *text = examples[0].text;
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    check(w == (ssize_t)strlen(text), "wrote %zd bytes", w);

    char err[512], why[512];
    eng_action_script s = {0};
    int rc = eng_actions_load(path, cfg_of(ENG_VARIANT_UNIVERSAL), &s, err, sizeof err);
    check(rc == 0 && script_matches(&s, examples[0].runs, 4, why, sizeof why), "load %s: rc %d, %s",
          path, rc, rc ? err : why);
    eng_actions_free(&s);

    rc = eng_actions_load(path, cfg_of(ENG_VARIANT_TEMPLERUN), &s, err, sizeof err);
    check(rc < 0 && strncmp(err, path, strlen(path)) == 0 && strstr(err, "variant"),
          "load with the wrong model names the file and the variant: \"%s\"", err);

    /* One byte over the 64 MiB limit (sparse file, so cheap to make). */
    FILE *f = fopen(path, "wb");
    int made = f && fseek(f, (64L << 20), SEEK_SET) == 0 && fputc(' ', f) != EOF;
    if (f) fclose(f);
    check(made, "made a 64 MiB + 1 byte file");
    rc = eng_actions_load(path, cfg_of(ENG_VARIANT_UNIVERSAL), &s, err, sizeof err);
    check(rc < 0 && strstr(err, path) && strstr(err, "64 MiB"), "oversized file: rc %d, \"%s\"", rc,
          err);
    unlink(path);

    rc = eng_actions_load(path, cfg_of(ENG_VARIANT_UNIVERSAL), &s, err, sizeof err);
    check(rc == ENG_EIO && strstr(err, path) && s.frames == NULL,
          "missing file: rc %d (want %d), \"%s\"", rc, ENG_EIO, err);
}

/* eng_actions_at ----------------------------------------------------------------------------- */

static void test_at(void) {
    eng_action_script s = {0};
    char err[256];
    int rc =
        parse(ENG_VARIANT_UNIVERSAL,
              "[{\"keys\": [\"left\"], \"repeat\": 2}, {\"keys\": [\"right\"], \"mouse\": [0.1, "
              "0]}]",
              &s, err, sizeof err);
    check(rc == 0 && s.count == 3, "script for eng_actions_at: %zu frames", s.count);
    if (rc == 0) {
        eng_action_frame f1 = eng_actions_at(&s, 1), f2 = eng_actions_at(&s, 2),
                         f9 = eng_actions_at(&s, 1000000);
        check(f1.keyboard[2] == 1 && f1.keyboard[3] == 0, "at(1) is 'left'");
        check(f2.keyboard[3] == 1 && f2.mouse[0] == 0.1f, "at(2) is 'right' with mouse");
        check(frame_eq(&f9, &f2), "at(1000000) past the end repeats the last frame");
    }
    eng_actions_free(&s);
    check(s.frames == NULL && s.count == 0, "eng_actions_free empties the script");
    eng_actions_free(&s); /* twice is fine */
    eng_actions_free(NULL);

    eng_action_frame zero, z0 = eng_actions_at(&s, 0), z5 = eng_actions_at(&s, 5),
                           zn = eng_actions_at(NULL, 0);
    memset(&zero, 0, sizeof zero);
    check(frame_eq(&z0, &zero) && frame_eq(&z5, &zero) && frame_eq(&zn, &zero),
          "empty or NULL script gives all zeros");
}

/* Random scripts ----------------------------------------------------------------------------- */

static void test_random(void) {
    const size_t n = 12 * 2000 + 7; /* a partial last segment */
    for (int v = 0; v < ENG_VARIANT_COUNT; v++) {
        const eng_config *c = &cfgs[v];
        const char *vn = eng_variant_name((eng_variant)v);
        eng_action_script a = {0}, b = {0}, d = {0};
        int ra = eng_actions_random(c, 1234, n, &a), rb = eng_actions_random(c, 1234, n, &b),
            rd = eng_actions_random(c, 1235, n, &d);
        check(ra == 0 && rb == 0 && rd == 0 && a.count == n && b.count == n && d.count == n,
              "%s random: rc %d %d %d, counts %zu %zu %zu (want %zu)", vn, ra, rb, rd, a.count,
              b.count, d.count, n);
        if (ra || rb || rd) continue;
        check(memcmp(a.frames, b.frames, n * sizeof *a.frames) == 0, "%s: same seed, same script",
              vn);
        size_t differ = 0;
        for (size_t i = 0; i < n; i += 12) differ += !frame_eq(&a.frames[i], &d.frames[i]);
        check(differ > 0, "%s: seeds 1234 and 1235 differ in %zu of %zu segments", vn, differ,
              (n + 11) / 12);

        size_t seg_bad = 0, mouse_bad = 0, kb_bad = 0, rule_bad = 0, nseg = 0;
        size_t key_count[ENG_MAX_KDIM] = {0}, mouse_nonzero = 0, distinct_changes = 0;
        for (size_t i = 0; i < n; i++) {
            const eng_action_frame *f = &a.frames[i];
            if (i % 12 != 0 && !frame_eq(f, &a.frames[i - i % 12])) seg_bad++;
            for (int m = 0; m < 2; m++) {
                float x = f->mouse[m];
                if (x != -0.1f && x != 0.0f && x != 0.1f) mouse_bad++;
                if (!c->enable_mouse && x != 0.0f) mouse_bad++;
            }
            int held = 0;
            for (int k = 0; k < ENG_MAX_KDIM; k++) {
                float x = f->keyboard[k];
                if (x != 0.0f && x != 1.0f) kb_bad++;
                if (k >= c->keyboard_dim_in && x != 0.0f) kb_bad++;
                held += x == 1.0f;
            }
            if (v == ENG_VARIANT_TEMPLERUN && held != 1) rule_bad++;
            if (v != ENG_VARIANT_TEMPLERUN && f->keyboard[0] == 1 && f->keyboard[1] == 1)
                rule_bad++;
            if (v == ENG_VARIANT_UNIVERSAL && f->keyboard[2] == 1 && f->keyboard[3] == 1)
                rule_bad++;
            if (i % 12 == 0) {
                nseg++;
                for (int k = 0; k < c->keyboard_dim_in; k++) key_count[k] += f->keyboard[k] == 1;
                mouse_nonzero += f->mouse[0] != 0 || f->mouse[1] != 0;
                if (i && !frame_eq(f, &a.frames[i - 1])) distinct_changes++;
            }
        }
        check(seg_bad == 0, "%s: every frame of [12k, 12k+12) equals frame 12k (%zu mismatches)",
              vn, seg_bad);
        check(mouse_bad == 0, "%s: mouse components in {-0.1, 0, 0.1}%s (%zu violations)", vn,
              c->enable_mouse ? "" : " and all zero", mouse_bad);
        check(kb_bad == 0, "%s: keyboard entries 0/1, nothing past kdim (%zu violations)", vn,
              kb_bad);
        check(rule_bad == 0, "%s: %s (%zu violations)", vn,
              v == ENG_VARIANT_TEMPLERUN ? "exactly one key per frame"
                                         : "opposite keys never together",
              rule_bad);
        check(distinct_changes > nseg / 2, "%s: action changes at %zu of %zu segment starts", vn,
              distinct_changes, nseg - 1);
        /* Bias: forward ~50 %, other keys ~20 % (templerun uniform ~1/7); 2000 segments put 5
         * standard deviations at about +-5.6 %. */
        for (int k = 0; k < c->keyboard_dim_in; k++) {
            double p = (double)key_count[k] / (double)nseg;
            double want = v == ENG_VARIANT_TEMPLERUN ? 1.0 / 7.0 : k == 0 ? 0.5 : 0.2;
            check(fabs(p - want) < 0.06, "%s: key '%s' held in %.3f of segments (want %.3f)", vn,
                  eng_action_key_name((eng_variant)v, k), p, want);
        }
        if (c->enable_mouse) {
            double p = (double)mouse_nonzero / (double)nseg;
            check(fabs(p - 8.0 / 9.0) < 0.05, "%s: mouse moves in %.3f of segments (want %.3f)", vn,
                  p, 8.0 / 9.0);
        }
        eng_actions_free(&a), eng_actions_free(&b), eng_actions_free(&d);
    }

    eng_action_script s = {0};
    int rc = eng_actions_random(&cfgs[0], 1, 0, &s);
    check(rc == 0 && s.count == 0 && s.frames == NULL, "random of 0 frames: empty script");
    rc = eng_actions_random(&cfgs[0], 1, (size_t)ENG_ACTIONS_MAX_FRAMES + 1, &s);
    check(rc < 0 && s.count == 0, "random over ENG_ACTIONS_MAX_FRAMES refused: rc %d", rc);
    rc = eng_actions_random(NULL, 1, 12, &s);
    check(rc < 0, "random with NULL config refused: rc %d", rc);
}

/* The generator is part of the format (a seed names a script): pin its first segments. */
static void test_random_golden(void) {
    /* universal, seed 42: keyboard vector and mouse of the first 6 segments (cross-checked with an
     * independent Python splitmix64 of the generator as documented in ACTIONS.md). */
    static const float want_kb[6][4] = {{0, 0, 1, 0}, {1, 0, 0, 0}, {1, 0, 0, 0},
                                        {0, 1, 0, 0}, {1, 0, 0, 0}, {0, 0, 1, 0}};
    static const float want_mouse[6][2] = {{-0.1f, 0}, {-0.1f, 0.1f}, {-0.1f, 0},
                                           {0, -0.1f}, {-0.1f, 0.1f}, {0, 0}};
    eng_action_script s = {0};
    int rc = eng_actions_random(&cfgs[ENG_VARIANT_UNIVERSAL], 42, 72, &s);
    int ok = rc == 0 && s.count == 72;
    for (int g = 0; ok && g < 6; g++) {
        const eng_action_frame *f = &s.frames[12 * g];
        for (int k = 0; k < 4; k++) ok &= f->keyboard[k] == want_kb[g][k];
        ok &= f->mouse[0] == want_mouse[g][0] && f->mouse[1] == want_mouse[g][1];
    }
    check(ok, "universal seed 42: first 6 segments equal the pinned values");
    if (!ok && rc == 0)
        for (int g = 0; g < 6; g++) {
            char buf[160];
            fmt_frame(buf, sizeof buf, &s.frames[12 * g], 4);
            printf("     segment %d: %s\n", g, buf);
        }
    eng_actions_free(&s);
}

/* Window index arithmetic -------------------------------------------------------------------- */

static void check_window(const eng_config *c, int64_t f, const int64_t want[12]) {
    int64_t got[12];
    int ok = 1;
    for (int m = 0; m < 12; m++) {
        got[m] = eng_action_window_index(c, f, m);
        ok &= got[m] == want[m];
    }
    char g[256];
    size_t u = 0;
    for (int m = 0; m < 12; m++)
        u += (size_t)snprintf(g + u, sizeof g - u, "%s%lld", m ? " " : "", (long long)got[m]);
    check(ok, "latent f=%lld reads video frames [%s]", (long long)f, g);
}

static void test_windows(void) {
    const eng_config *c = &cfgs[ENG_VARIANT_UNIVERSAL];
    check(eng_action_window(c) == 12, "window P = vae_time_ratio * windows_size = %d (want 12)",
          eng_action_window(c));
    /* model-dit.md 3.3, block 0 (s = 0). */
    static const int64_t f0[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    static const int64_t f1[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3};
    static const int64_t f2[12] = {0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7};
    /* Block 1 (s = 3): 4s-12 .. 4s-1, 4s-8 .. 4s+3, 4s-4 .. 4s+7, no clamping. */
    static const int64_t f3[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const int64_t f4[12] = {4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const int64_t f5[12] = {8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    /* Block 2 (s = 6). */
    static const int64_t f6[12] = {12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23};
    static const int64_t f7[12] = {16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27};
    static const int64_t f8[12] = {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
    /* A long session, block 1000 (s = 3000): 11988 .. 12007. */
    static const int64_t f3000[12] = {11988, 11989, 11990, 11991, 11992, 11993,
                                      11994, 11995, 11996, 11997, 11998, 11999};
    static const int64_t f3002[12] = {11996, 11997, 11998, 11999, 12000, 12001,
                                      12002, 12003, 12004, 12005, 12006, 12007};
    check_window(c, 0, f0), check_window(c, 1, f1), check_window(c, 2, f2);
    check_window(c, 3, f3), check_window(c, 4, f4), check_window(c, 5, f5);
    check_window(c, 6, f6), check_window(c, 7, f7), check_window(c, 8, f8);
    check_window(c, 3000, f3000), check_window(c, 3002, f3002);

    /* Every variant shares the window; the union of a block s >= 3 is 4s-12 .. 4s+7 and the
     * block's last passed frame 4s+8 is never read. */
    int ok = 1;
    for (int v = 0; v < ENG_VARIANT_COUNT; v++)
        for (int64_t s = 3; s <= 300; s += 3) {
            int64_t lo = INT64_MAX, hi = -1;
            for (int64_t f = s; f < s + 3; f++)
                for (int m = 0; m < 12; m++) {
                    int64_t j = eng_action_window_index(&cfgs[v], f, m);
                    lo = j < lo ? j : lo, hi = j > hi ? j : hi;
                }
            ok &= lo == 4 * s - 12 && hi == 4 * s + 7;
        }
    check(ok, "all variants, blocks s = 3 .. 300: union of windows is 4s-12 .. 4s+7");
}

int main(void) {
    char err[256];
    for (int v = 0; v < ENG_VARIANT_COUNT; v++) {
        int rc = eng_config_preset(&cfgs[v], "tiny", (eng_variant)v, err, sizeof err);
        if (rc) {
            printf("FAIL tiny preset for %s: %s\n", eng_variant_name((eng_variant)v), err);
            return 1;
        }
    }
    check(cfgs[ENG_VARIANT_TEMPLERUN].enable_mouse == 0 && cfgs[ENG_VARIANT_UNIVERSAL].enable_mouse,
          "tiny presets: templerun without mouse, universal with");

    test_examples();
    test_doc_errors();
    test_doc_sync();
    test_key_names();
    test_parse_ok();
    test_parse_errors();
    test_load();
    test_at();
    test_random();
    test_random_golden();
    test_windows();

    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
