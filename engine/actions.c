/* Player actions: key names per variant, the strict action-script reader (format in
 * engine/ACTIONS.md), the deterministic random script generator used by wmgen and the load tester,
 * and per-frame lookup. The reader validates the whole script before allocating, so a rejected
 * script costs no memory and the error names the first offending entry and field. */
#include "engine/actions.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/errors.h"

/* Largest script file eng_actions_load reads; a full-length script of ENG_ACTIONS_MAX_FRAMES
 * frames written with `repeat` is a few kilobytes, so this only stops accidents. */
#define ACTIONS_MAX_FILE_BYTES ((size_t)64 << 20)

/* Key names ---------------------------------------------------------------------------------- */

static const char *const keys_universal[] = {"forward", "back", "left", "right"};
static const char *const keys_gta_drive[] = {"forward", "back"};
static const char *const keys_templerun[] = {"no-move",    "jump",      "slide",     "turn-left",
                                             "turn-right", "left-side", "right-side"};

static const char *const *variant_keys(eng_variant v, int *count) {
    switch (v) {
    case ENG_VARIANT_UNIVERSAL:
        *count = (int)(sizeof keys_universal / sizeof *keys_universal);
        return keys_universal;
    case ENG_VARIANT_GTA_DRIVE:
        *count = (int)(sizeof keys_gta_drive / sizeof *keys_gta_drive);
        return keys_gta_drive;
    case ENG_VARIANT_TEMPLERUN:
        *count = (int)(sizeof keys_templerun / sizeof *keys_templerun);
        return keys_templerun;
    default:
        *count = 0;
        return NULL;
    }
}

int eng_action_key_index(eng_variant v, const char *name) {
    int n;
    const char *const *keys = variant_keys(v, &n);
    if (!name) return -1;
    for (int i = 0; i < n; i++)
        if (strcmp(keys[i], name) == 0) return i;
    return -1;
}

const char *eng_action_key_name(eng_variant v, int index) {
    int n;
    const char *const *keys = variant_keys(v, &n);
    return index >= 0 && index < n ? keys[index] : NULL;
}

/* Script reader ------------------------------------------------------------------------------ */

typedef struct parse_ctx {
    const char *origin;
    const eng_config *cfg;
    int kdim;
    char *err;
    size_t errlen;
} parse_ctx;

/* "origin: " + message; returns ENG_EFORMAT so call sites read `return fail(...)`. */
static int fail(const parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const parse_ctx *p, const char *fmt, ...) {
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "%s: ", p->origin);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return ENG_EFORMAT;
}

static const char *json_type_name(const cJSON *j) {
    if (cJSON_IsObject(j)) return "object";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsBool(j)) return "boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid value";
}

/* Strings from the script are echoed into messages; keep them short so the rest still fits. */
#define QUOTE_MAX 40
static void quote(char *dst, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n + 1 <= cap && n <= QUOTE_MAX) {
        memcpy(dst, s, n + 1);
    } else {
        size_t keep = cap - 4 < QUOTE_MAX ? cap - 4 : QUOTE_MAX;
        memcpy(dst, s, keep);
        memcpy(dst + keep, "...", 4);
    }
}

static void key_list(eng_variant v, char *dst, size_t cap) {
    int n;
    const char *const *keys = variant_keys(v, &n);
    size_t used = 0;
    dst[0] = '\0';
    for (int i = 0; i < n && used < cap; i++) {
        int w = snprintf(dst + used, cap - used, "%s%s", i ? " " : "", keys[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

/* The vectors are stored as float: a finite double beyond float range (1e300) would become
 * infinite, so it is refused like 1e999 (which cJSON already reads as infinity). */
static int is_float_number(const cJSON *j) {
    return cJSON_IsNumber(j) && isfinite(j->valuedouble) && fabs(j->valuedouble) <= FLT_MAX;
}

static const char *number_problem(const cJSON *j) {
    if (!cJSON_IsNumber(j)) return json_type_name(j);
    return isfinite(j->valuedouble) ? "a number beyond float range" : "a non-finite number";
}

/* One `frames` entry, checked and decoded. */
typedef struct entry {
    eng_action_frame frame;
    size_t repeat;
} entry;

static int parse_entry(const parse_ctx *p, const cJSON *e, size_t idx, entry *out) {
    const eng_config *cfg = p->cfg;
    const cJSON *keys = NULL, *keyboard = NULL, *mouse = NULL, *repeat = NULL;
    char q[QUOTE_MAX + 4];

    memset(out, 0, sizeof *out);
    out->repeat = 1;
    if (!cJSON_IsObject(e))
        return fail(p, "frames[%zu]: must be an object, got %s", idx, json_type_name(e));

    for (const cJSON *f = e->child; f; f = f->next) {
        const cJSON **slot = NULL;
        if (strcmp(f->string, "keys") == 0)
            slot = &keys;
        else if (strcmp(f->string, "keyboard") == 0)
            slot = &keyboard;
        else if (strcmp(f->string, "mouse") == 0)
            slot = &mouse;
        else if (strcmp(f->string, "repeat") == 0)
            slot = &repeat;
        quote(q, sizeof q, f->string);
        if (!slot)
            return fail(p, "frames[%zu].%s: unknown field (fields: keys keyboard mouse repeat)",
                        idx, q);
        if (*slot) return fail(p, "frames[%zu].%s: duplicate field", idx, q);
        *slot = f;
    }
    if (keys && keyboard)
        return fail(p, "frames[%zu]: 'keys' and 'keyboard' are mutually exclusive", idx);

    if (keys) {
        if (!cJSON_IsArray(keys))
            return fail(p, "frames[%zu].keys: must be an array of key names, got %s", idx,
                        json_type_name(keys));
        size_t k = 0;
        for (const cJSON *it = keys->child; it; it = it->next, k++) {
            if (!cJSON_IsString(it))
                return fail(p, "frames[%zu].keys[%zu]: must be a key name string, got %s", idx, k,
                            json_type_name(it));
            int ki = eng_action_key_index(cfg->variant, it->valuestring);
            if (ki < 0 || ki >= p->kdim) {
                char list[128];
                key_list(cfg->variant, list, sizeof list);
                quote(q, sizeof q, it->valuestring);
                return fail(p, "frames[%zu].keys[%zu]: unknown key '%s' for variant %s (keys: %s)",
                            idx, k, q, eng_variant_name(cfg->variant), list);
            }
            if (out->frame.keyboard[ki] != 0.0f)
                return fail(p, "frames[%zu].keys[%zu]: duplicate key '%s'", idx, k,
                            eng_action_key_name(cfg->variant, ki));
            out->frame.keyboard[ki] = 1.0f;
        }
    }

    if (keyboard) {
        int n = cJSON_IsArray(keyboard) ? cJSON_GetArraySize(keyboard) : -1;
        if (n != p->kdim)
            return fail(p,
                        "frames[%zu].keyboard: must be an array of exactly %d numbers for variant "
                        "%s, got %s%s%d",
                        idx, p->kdim, eng_variant_name(cfg->variant),
                        n < 0 ? json_type_name(keyboard) : "", n < 0 ? "" : "length ",
                        n < 0 ? 0 : n);
        int k = 0;
        for (const cJSON *it = keyboard->child; it; it = it->next, k++) {
            if (!is_float_number(it))
                return fail(p, "frames[%zu].keyboard[%d]: must be a finite number, got %s", idx, k,
                            number_problem(it));
            out->frame.keyboard[k] = (float)it->valuedouble;
        }
    }

    if (mouse) {
        int n = cJSON_IsArray(mouse) ? cJSON_GetArraySize(mouse) : -1;
        if (n != 2)
            return fail(p,
                        "frames[%zu].mouse: must be an array of 2 numbers [vertical, horizontal], "
                        "got %s%s%d",
                        idx, n < 0 ? json_type_name(mouse) : "", n < 0 ? "" : "length ",
                        n < 0 ? 0 : n);
        int k = 0;
        for (const cJSON *it = mouse->child; it; it = it->next, k++) {
            if (!is_float_number(it))
                return fail(p, "frames[%zu].mouse[%d]: must be a finite number, got %s", idx, k,
                            number_problem(it));
            out->frame.mouse[k] = (float)it->valuedouble;
        }
        if (!cfg->enable_mouse && (out->frame.mouse[0] != 0.0f || out->frame.mouse[1] != 0.0f))
            return fail(p, "frames[%zu].mouse: %s has no mouse (only [0, 0] or no 'mouse' field)",
                        idx, eng_variant_name(cfg->variant));
    }

    if (repeat) {
        double d = cJSON_IsNumber(repeat) ? repeat->valuedouble : 0.0;
        if (!cJSON_IsNumber(repeat) || !(d >= 1.0 && d <= (double)ENG_ACTIONS_MAX_FRAMES) ||
            d != floor(d)) {
            char got[48];
            if (cJSON_IsNumber(repeat))
                snprintf(got, sizeof got, "%.10g", d);
            else
                snprintf(got, sizeof got, "%s", json_type_name(repeat));
            return fail(p, "frames[%zu].repeat: must be an integer 1..%u, got %s", idx,
                        ENG_ACTIONS_MAX_FRAMES, got);
        }
        out->repeat = (size_t)d;
    }
    return ENG_OK;
}

/* Byte offset -> 1-based line and column, for JSON syntax errors. */
static void line_col(const char *text, size_t off, size_t *line, size_t *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (text[i] == '\n')
            (*line)++, *col = 1;
        else
            (*col)++;
    }
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int only_space(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!is_space(text[i])) return 0;
    return 1;
}

/* True when the text ends inside a string or with an array/object still open: the usual shape of
 * a truncated file, which cJSON's error position does not distinguish from a bad last byte. */
static int ends_open(const char *text, size_t len) {
    long depth = 0;
    int in_str = 0, esc = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (c == ']' || c == '}') {
            if (--depth < 0) return 0;
        }
    }
    return in_str || depth > 0;
}

static int parse_root(const parse_ctx *p, const cJSON *root, eng_action_script *out) {
    const eng_config *cfg = p->cfg;
    const cJSON *frames = NULL;

    if (cJSON_IsArray(root)) {
        frames = root;
    } else if (cJSON_IsObject(root)) {
        const cJSON *variant = NULL;
        char q[QUOTE_MAX + 4];
        for (const cJSON *f = root->child; f; f = f->next) {
            const cJSON **slot = NULL;
            if (strcmp(f->string, "variant") == 0)
                slot = &variant;
            else if (strcmp(f->string, "frames") == 0)
                slot = &frames;
            quote(q, sizeof q, f->string);
            if (!slot) return fail(p, "%s: unknown top-level field (fields: variant frames)", q);
            if (*slot) return fail(p, "%s: duplicate top-level field", q);
            *slot = f;
        }
        if (variant) {
            if (!cJSON_IsString(variant))
                return fail(p, "variant: must be a string, got %s", json_type_name(variant));
            int v = eng_variant_parse(variant->valuestring);
            quote(q, sizeof q, variant->valuestring);
            if (v < 0)
                return fail(p, "variant: unknown variant '%s' (universal gta_drive templerun)", q);
            if (v != (int)cfg->variant)
                return fail(p, "variant: script is for variant %s but the model is %s",
                            eng_variant_name((eng_variant)v), eng_variant_name(cfg->variant));
        }
        if (!frames) return fail(p, "frames: missing (required array of frame entries)");
        if (!cJSON_IsArray(frames))
            return fail(p, "frames: must be an array, got %s", json_type_name(frames));
    } else {
        return fail(p,
                    "top level must be an object {\"frames\": [...]} or an array of frame "
                    "entries, got %s",
                    json_type_name(root));
    }

    /* Pass 1: validate everything and count, so nothing is allocated for a bad script. */
    uint64_t total = 0;
    size_t idx = 0;
    entry e;
    for (const cJSON *it = frames->child; it; it = it->next, idx++) {
        int rc = parse_entry(p, it, idx, &e);
        if (rc) return rc;
        total += e.repeat;
        if (total > ENG_ACTIONS_MAX_FRAMES)
            return fail(p, "frames[%zu].repeat: script exceeds %u video frames", idx,
                        ENG_ACTIONS_MAX_FRAMES);
    }
    if (total == 0) return ENG_OK;

    /* Pass 2: expand. */
    eng_action_frame *buf = malloc((size_t)total * sizeof *buf);
    if (!buf)
        return eng_errorf(p->err, p->errlen, ENG_ENOMEM, "%s: out of memory for %llu frames",
                          p->origin, (unsigned long long)total);
    size_t at = 0;
    for (const cJSON *it = frames->child; it; it = it->next) {
        parse_entry(p, it, 0, &e); /* validated above */
        for (size_t r = 0; r < e.repeat; r++) buf[at++] = e.frame;
    }
    out->frames = buf;
    out->count = at;
    return ENG_OK;
}

int eng_actions_parse_json(const char *text, size_t len, const char *origin, const eng_config *cfg,
                           eng_action_script *out, char *err, size_t errlen) {
    if (out) out->frames = NULL, out->count = 0;
    if (!origin) origin = "(action script)";
    if (!text || !cfg || !out)
        return eng_errorf(err, errlen, ENG_EINVAL, "%s: NULL text, config or output", origin);
    parse_ctx p = {origin, cfg, cfg->keyboard_dim_in, err, errlen};
    if (p.kdim < 1 || p.kdim > ENG_MAX_KDIM)
        return eng_errorf(err, errlen, ENG_EINVAL, "%s: config keyboard_dim_in %d outside 1..%d",
                          origin, p.kdim, ENG_MAX_KDIM);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root && end) {
        /* Only whitespace may follow the value. */
        size_t off = (size_t)(end - text);
        while (off < len && is_space(text[off])) off++;
        if (off < len) {
            size_t line, col;
            line_col(text, off, &line, &col);
            cJSON_Delete(root);
            return fail(&p,
                        "unexpected data after the JSON value at byte %zu (line %zu, column %zu)",
                        off, line, col);
        }
    }
    if (!root) {
        size_t off = end && end >= text && (size_t)(end - text) < len ? (size_t)(end - text) : 0;
        size_t line, col;
        if (only_space(text, len)) return fail(&p, "empty input (expected a JSON object or array)");
        if (ends_open(text, len)) {
            line_col(text, len, &line, &col);
            return fail(&p,
                        "invalid JSON: unexpected end of input at byte %zu (line %zu, column %zu; "
                        "truncated?)",
                        len, line, col);
        }
        line_col(text, off, &line, &col);
        return fail(&p, "invalid JSON near byte %zu (line %zu, column %zu)", off, line, col);
    }
    int rc = parse_root(&p, root, out);
    cJSON_Delete(root);
    return rc;
}

int eng_actions_load(const char *path, const eng_config *cfg, eng_action_script *out, char *err,
                     size_t errlen) {
    if (out) out->frames = NULL, out->count = 0;
    if (!path) return eng_errorf(err, errlen, ENG_EINVAL, "action script: NULL path");
    FILE *f = fopen(path, "rb");
    if (!f) return eng_errorf(err, errlen, ENG_EIO, "%s: cannot open: %s", path, strerror(errno));

    /* Read in growing chunks rather than trusting a size from stat, so pipes work too; read up to
     * one byte past the limit to tell "exactly the limit" from "too large". */
    size_t cap = 0, len = 0;
    char *buf = NULL;
    int rc = ENG_OK;
    for (;;) {
        if (len == cap) {
            if (cap > ACTIONS_MAX_FILE_BYTES) {
                rc = eng_errorf(err, errlen, ENG_EFORMAT,
                                "%s: larger than the %zu MiB limit for action scripts", path,
                                ACTIONS_MAX_FILE_BYTES >> 20);
                break;
            }
            size_t ncap = cap ? cap * 2 : 65536;
            if (ncap > ACTIONS_MAX_FILE_BYTES) ncap = ACTIONS_MAX_FILE_BYTES + 1;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = eng_errorf(err, errlen, ENG_ENOMEM, "%s: out of memory reading %zu bytes",
                                path, ncap);
                break;
            }
            buf = nb, cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                rc = eng_errorf(err, errlen, ENG_EIO, "%s: read error: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (rc == ENG_OK) rc = eng_actions_parse_json(buf ? buf : "", len, path, cfg, out, err, errlen);
    free(buf);
    return rc;
}

/* Random scripts ----------------------------------------------------------------------------- */

/* splitmix64 (Steele, Lea, Flood 2014): tiny, full-period, good enough for choosing actions, and
 * self-contained so a seed names the same script on every platform. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform integer in [0, n) from the top 32 bits (bias below 2^-32 * n, irrelevant here). */
static unsigned rand_below(uint64_t *state, unsigned n) {
    return (unsigned)(((splitmix64(state) >> 32) * (uint64_t)n) >> 32);
}

/* One of three outcomes for an opposite-key pair: first key with probability pa %, second with
 * pb %, neither otherwise. Never both. */
static void pick_pair(uint64_t *state, float *kb, int a, int b, unsigned pa, unsigned pb) {
    unsigned r = rand_below(state, 100);
    if (r < pa)
        kb[a] = 1.0f;
    else if (r < pa + pb)
        kb[b] = 1.0f;
}

int eng_actions_random(const eng_config *cfg, uint64_t seed, size_t nframes,
                       eng_action_script *out) {
    if (!out) return ENG_EINVAL;
    out->frames = NULL, out->count = 0;
    if (!cfg || nframes > ENG_ACTIONS_MAX_FRAMES || cfg->keyboard_dim_in < 1 ||
        cfg->keyboard_dim_in > ENG_MAX_KDIM)
        return ENG_EINVAL;
    if (nframes == 0) return ENG_OK;
    eng_action_frame *buf = calloc(nframes, sizeof *buf);
    if (!buf) return ENG_ENOMEM;

    const int kdim = cfg->keyboard_dim_in;
    const size_t seg = 12; /* = eng_action_window() of every release; fixed so scripts are too */
    static const float mouse_vals[3] = {-0.1f, 0.0f, 0.1f};
    uint64_t state = seed;
    for (size_t s0 = 0; s0 < nframes; s0 += seg) {
        eng_action_frame fr;
        memset(&fr, 0, sizeof fr);
        switch (cfg->variant) {
        case ENG_VARIANT_UNIVERSAL:
            pick_pair(&state, fr.keyboard, 0, 1, 50, 20); /* forward / back */
            pick_pair(&state, fr.keyboard, 2, 3, 20, 20); /* left / right */
            break;
        case ENG_VARIANT_GTA_DRIVE:
            pick_pair(&state, fr.keyboard, 0, 1, 50, 20); /* forward / back */
            break;
        case ENG_VARIANT_TEMPLERUN:
        default:
            /* The reference's templerun bench holds exactly one of the 7 actions. */
            fr.keyboard[rand_below(&state, (unsigned)kdim)] = 1.0f;
            break;
        }
        for (int c = 0; c < 2; c++) {
            float m = mouse_vals[rand_below(&state, 3)];
            fr.mouse[c] = cfg->enable_mouse ? m : 0.0f;
        }
        for (int k = kdim; k < ENG_MAX_KDIM; k++) fr.keyboard[k] = 0.0f;
        size_t s1 = s0 + seg < nframes ? s0 + seg : nframes;
        for (size_t i = s0; i < s1; i++) buf[i] = fr;
    }
    out->frames = buf;
    out->count = nframes;
    return ENG_OK;
}

void eng_actions_free(eng_action_script *s) {
    if (!s) return;
    free(s->frames);
    s->frames = NULL;
    s->count = 0;
}

eng_action_frame eng_actions_at(const eng_action_script *s, size_t i) {
    eng_action_frame zero;
    if (!s || !s->frames || s->count == 0) {
        memset(&zero, 0, sizeof zero);
        return zero;
    }
    return s->frames[i < s->count ? i : s->count - 1];
}
