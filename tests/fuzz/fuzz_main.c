/* Standalone driver for fuzz targets when not linking libFuzzer (gcc builds, the sanitizer CI
 * job). `fuzz_safetensors_run FILE|DIR...` runs each file (every regular file of a directory);
 * `--random N SEED` runs N mutations of a small valid built-in safetensors file: bit flips, byte
 * overwrites, inserts, deletes and token splices in the header (length prefix kept consistent),
 * then now and then truncation, raw bit flips or header-length tampering of the whole file. Same
 * SEED, same inputs, so a CI failure can be replayed; `--dump DIR` writes each random input to DIR
 * first so a crashing one can be kept. `--mutate N SEED` is the format-neutral variant for other
 * targets: N mutations (bit flips, interesting bytes and 16/32-bit fields, inserts, deletes,
 * duplicated runs, truncation) of the files run before it on the command line, so
 * `fuzz_image_run CORPUS_DIR --mutate N SEED` works from that target's own seed corpus. A crash
 * shows up as the process dying under the sanitizers.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* the build defines it; this keeps the file buildable alone */
#endif
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 4096

static size_t n_run;

/* Inputs run from files, kept for --mutate. */
#define MAX_SEEDS 64
static uint8_t *seeds[MAX_SEEDS];
static size_t seed_len[MAX_SEEDS], n_seeds;

static void keep_seed(const uint8_t *d, size_t n) {
    if (n_seeds == MAX_SEEDS || n == 0 || n > MAX_INPUT) return;
    uint8_t *c = malloc(n);
    if (c == NULL) return;
    memcpy(c, d, n);
    seeds[n_seeds] = c;
    seed_len[n_seeds++] = n;
}

static int run_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                fprintf(stderr, "%s: out of memory\n", path);
                free(buf);
                fclose(fp);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, fp);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        fprintf(stderr, "%s: read error\n", path);
        free(buf);
        return -1;
    }
    /* An exact-size copy so ASan catches reads one byte past the input. */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact == NULL) {
        free(buf);
        return -1;
    }
    if (len) memcpy(exact, buf, len);
    free(buf);
    LLVMFuzzerTestOneInput(exact, len);
    keep_seed(exact, len);
    free(exact);
    n_run++;
    return 0;
}

static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    DIR *d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISREG(st.st_mode) && run_file(sub) != 0) rc = -1;
    }
    closedir(d);
    return rc;
}

static uint64_t rng;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static size_t below(size_t n) {
    return n ? (size_t)(next_rand() % n) : 0;
}

/* A valid file touching every reader path: metadata, F32 / F16 / BF16 / I32, a scalar, an empty
 * tensor, a gap and unaligned data. */
static const char seed_header[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[24,26]},"
    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[26,26]},"
    "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[26,30]}}  ";
#define SEED_DATA 30

static const char *const tokens[] = {
    "-1",
    "1.5",
    "0",
    "1e2",
    "010",
    "-0",
    "9007199254740991",
    "9007199254740993",
    "4294967296",
    "18446744073709551616",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"U8\"",
    "\"F64\"",
    "\"F8_E4M3\"",
    "\"X\"",
    "[]",
    "{}",
    "[0,4]",
    "[4,0]",
    "null",
    "true",
    "\"\"",
    "\"a\"",
    "\"__metadata__\"",
    "\"dtype\"",
    "\"shape\"",
    "\"data_offsets\"",
    "\\u0000",
    "\\ud800",
    "\xc3\xa9",
    "\xff",
    " ",
    ",",
};

/* Finds a `"key": value` member starting at or after `from` (a '"' right after '{' or ','), and
 * returns its end (exclusive) in *end; returns n when there is none. Lets the mutator copy or drop
 * whole entries and fields, which byte edits almost never manage without breaking the JSON. */
static size_t find_member(const uint8_t *b, size_t n, size_t from, size_t *end) {
    for (size_t s = from; s < n; s++) {
        if (b[s] != '"' || s == 0 || (b[s - 1] != '{' && b[s - 1] != ',')) continue;
        int depth = 0;
        bool in_str = false;
        for (size_t i = s; i < n; i++) {
            uint8_t c = b[i];
            if (in_str) {
                if (c == '\\')
                    i++;
                else if (c == '"')
                    in_str = false;
                continue;
            }
            if (c == '"')
                in_str = true;
            else if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && depth-- == 0) {
                *end = i;
                return s;
            } else if (c == ',' && depth == 0) {
                *end = i;
                return s;
            }
        }
        return n;
    }
    return n;
}

/* Picks the k-th (mod count) number run or string literal, scanning from the start so string
 * boundaries are known; [start, *end). Returns n when there is none. */
static size_t find_value(const uint8_t *b, size_t n, size_t k, size_t *end) {
    size_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            if (count == 0) return n;
            k %= count;
            count = 0;
        }
        for (size_t s = 0; s < n; s++) {
            size_t e;
            if (b[s] == '"') {
                e = s + 1;
                while (e < n && b[e] != '"') e += (b[e] == '\\') ? 2 : 1;
                if (e >= n) break;
                e++;
            } else if ((b[s] >= '0' && b[s] <= '9') || b[s] == '-') {
                e = s + 1;
                while (e < n && b[e] >= '0' && b[e] <= '9') e++;
            } else {
                continue;
            }
            if (pass == 1 && count == k) {
                *end = e;
                return s;
            }
            count++;
            s = e - 1;
        }
    }
    return n;
}

static bool splice(uint8_t *buf, size_t *n, size_t cap, size_t at, size_t del, const uint8_t *ins,
                   size_t inl) {
    if (*n - del + inl > cap) return false;
    memmove(buf + at + inl, buf + at + del, *n - at - del);
    if (inl) memcpy(buf + at, ins, inl);
    *n = *n - del + inl;
    return true;
}

/* Mutations of the header text; the length prefix is recomputed afterwards, so most inputs get
 * past the prefix checks and exercise the JSON and entry validation. */
static void mutate_text(uint8_t *buf, size_t *len, size_t cap) {
    static const char interesting[] = "{}[]\":,-.0123456789eE \\u";
    size_t n = *len;
    size_t op = below(18);
    if (op >= 7) {
        size_t s, e = 0;
        if (op <= 12) { /* replace a whole number or string with a token */
            s = find_value(buf, n, below(1024), &e);
            if (s < n) {
                const char *t = tokens[below(sizeof tokens / sizeof tokens[0])];
                splice(buf, &n, cap, s, e - s, (const uint8_t *)t, strlen(t));
            }
        } else { /* copy a member after itself (duplicates) or drop it */
            s = find_member(buf, n, below(n + 1), &e);
            if (s < n && op <= 15) {
                uint8_t tmp[MAX_INPUT];
                size_t k = e - s;
                if (k + 1 <= sizeof tmp) {
                    tmp[0] = ',';
                    memcpy(tmp + 1, buf + s, k);
                    splice(buf, &n, cap, e, 0, tmp, k + 1);
                }
            } else if (s < n) {
                /* Take the comma before it too, when there is one. */
                if (buf[s - 1] == ',')
                    s--;
                else if (e < n && buf[e] == ',')
                    e++;
                splice(buf, &n, cap, s, e - s, NULL, 0);
            }
        }
        *len = n;
        return;
    }
    switch (op) {
    case 0: /* bit flip */
        if (n) buf[below(n)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: /* overwrite with a JSON-significant byte */
        if (n) buf[below(n)] = (uint8_t)interesting[below(sizeof interesting - 1)];
        break;
    case 2: /* insert a byte */
        if (n < cap) {
            size_t at = below(n + 1);
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = below(2) ? (uint8_t)interesting[below(sizeof interesting - 1)]
                               : (uint8_t)next_rand();
            n++;
        }
        break;
    case 3: /* delete a run */
        if (n) {
            size_t at = below(n), k = 1 + below(4);
            if (k > n - at) k = n - at;
            memmove(buf + at, buf + at + k, n - at - k);
            n -= k;
        }
        break;
    case 4: { /* replace a run with a token */
        const char *t = tokens[below(sizeof tokens / sizeof tokens[0])];
        size_t tl = strlen(t), at = below(n + 1), k = below(4);
        if (k > n - at) k = n - at;
        if (n - k + tl > cap) break;
        memmove(buf + at + tl, buf + at + k, n - at - k);
        memcpy(buf + at, t, tl);
        n = n - k + tl;
        break;
    }
    case 5: { /* duplicate a chunk in place: repeated entries, names and fields */
        if (n == 0) break;
        size_t from = below(n), k = 1 + below(64);
        if (k > n - from) k = n - from;
        if (n + k > cap) break;
        size_t to = below(n + 1);
        uint8_t tmp[64];
        memcpy(tmp, buf + from, k);
        memmove(buf + to + k, buf + to, n - to);
        memcpy(buf + to, tmp, k);
        n += k;
        break;
    }
    default: { /* bump a digit so offsets and dims drift by one */
        if (n == 0) break;
        size_t at = below(n);
        for (size_t j = 0; j < n; j++) {
            size_t q = (at + j) % n;
            if (buf[q] >= '0' && buf[q] <= '9') {
                buf[q] = (uint8_t)('0' + (buf[q] - '0' + 1 + below(9)) % 10);
                break;
            }
        }
        break;
    }
    }
    *len = n;
}

/* Raw mutations of the serialized file: the prefix, truncation, bytes anywhere. */
static size_t mutate_raw(uint8_t *buf, size_t len) {
    switch (below(4)) {
    case 0:
        if (len) buf[below(len)] ^= (uint8_t)(1u << below(8));
        return len;
    case 1:
        return below(len + 1);
    default: {
        if (len < 8) return len;
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | buf[i];
        switch (below(5)) {
        case 0:
            v += below(33) - 16;
            break;
        case 1:
            v = len - 8 - below(4);
            break;
        case 2:
            v = 104857600u + below(3) - 1;
            break;
        case 3:
            v = next_rand();
            break;
        default:
            v = below(len);
            break;
        }
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(v >> (8 * i));
        return len;
    }
    }
}

static int run_random(unsigned long n, unsigned long seed, const char *dump_dir) {
    static uint8_t hdr[MAX_INPUT], file[8 + MAX_INPUT + 64];
    size_t hl = 0, dl = SEED_DATA;
    rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed * 0xD1B54A32D192ED03ull);
    if (rng == 0) rng = 1;
    for (unsigned long it = 0; it < n; it++) {
        /* Mutations stack over a couple of inputs only: JSON breaks quickly, and an input that
         * fails to parse as JSON tests little of the reader. */
        if (it % 2 == 0) {
            hl = sizeof seed_header - 1;
            memcpy(hdr, seed_header, hl);
            dl = SEED_DATA;
        }
        int k = 1 + (int)below(3);
        for (int j = 0; j < k; j++) mutate_text(hdr, &hl, MAX_INPUT);
        if (below(8) == 0) dl = below(64);
        size_t len = 8 + hl + dl;
        for (int i = 0; i < 8; i++) file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        memcpy(file + 8, hdr, hl);
        for (size_t i = 0; i < dl; i++) file[8 + hl + i] = (uint8_t)(0x3C + 17 * i);
        if (below(8) == 0) len = mutate_raw(file, len);
        if (dump_dir != NULL) {
            char path[4096];
            snprintf(path, sizeof path, "%s/random-%lu-%lu", dump_dir, seed, it);
            FILE *fp = fopen(path, "wb");
            if (fp != NULL) {
                if (len) fwrite(file, 1, len, fp);
                fclose(fp);
            }
        }
        uint8_t *exact = malloc(len ? len : 1); /* exact size so ASan sees one-past reads */
        if (exact == NULL) return -1;
        if (len) memcpy(exact, file, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        n_run++;
    }
    return 0;
}

/* One format-neutral mutation of buf[0, *len) in place (capacity cap). */
static void mutate_bytes(uint8_t *buf, size_t *len, size_t cap) {
    static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x10, 0x40};
    static const uint32_t words[] = {0,      1,      0x7f,    0x80,       0xff,        0x100,
                                     0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000u, 0xffffffffu};
    size_t n = *len;
    switch (below(8)) {
    case 0: /* bit flip */
        if (n) buf[below(n)] ^= (uint8_t)(1u << below(8));
        break;
    case 1: /* interesting byte */
        if (n) buf[below(n)] = bytes[below(sizeof bytes)];
        break;
    case 2: /* interesting big-endian 16- or 32-bit field (sizes, lengths, dimensions) */
    case 3: {
        size_t w = below(2) ? 2 : 4;
        if (n < w) break;
        size_t at = below(n - w + 1);
        uint32_t v = words[below(sizeof words / sizeof words[0])];
        if (below(4) == 0) v += (uint32_t)below(5) - 2;
        for (size_t i = 0; i < w; i++) buf[at + i] = (uint8_t)(v >> (8 * (w - 1 - i)));
        break;
    }
    case 4: /* insert a random byte */
        if (n < cap) {
            size_t at = below(n + 1);
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = (uint8_t)next_rand();
            n++;
        }
        break;
    case 5: /* delete a run */
        if (n) {
            size_t at = below(n), k = 1 + below(16);
            if (k > n - at) k = n - at;
            memmove(buf + at, buf + at + k, n - at - k);
            n -= k;
        }
        break;
    case 6: { /* duplicate a run somewhere else */
        if (n == 0) break;
        size_t from = below(n), k = 1 + below(64);
        if (k > n - from) k = n - from;
        if (n + k > cap) break;
        uint8_t tmp[64];
        memcpy(tmp, buf + from, k);
        size_t to = below(n + 1);
        memmove(buf + to + k, buf + to, n - to);
        memcpy(buf + to, tmp, k);
        n += k;
        break;
    }
    default: /* truncate */
        n = below(n + 1);
        break;
    }
    *len = n;
}

static int run_mutate(unsigned long n, unsigned long seed, const char *dump_dir) {
    static uint8_t file[MAX_INPUT + 256];
    if (n_seeds == 0) {
        fprintf(stderr, "--mutate needs seed files (of 1..%d bytes) before it\n", MAX_INPUT);
        return -1;
    }
    rng = 0x2545F4914F6CDD1Dull ^ ((uint64_t)seed * 0xD1B54A32D192ED03ull);
    if (rng == 0) rng = 1;
    for (unsigned long it = 0; it < n; it++) {
        size_t s = below(n_seeds), len = seed_len[s];
        memcpy(file, seeds[s], len);
        int k = 1 + (int)below(4);
        for (int j = 0; j < k; j++) mutate_bytes(file, &len, sizeof file);
        if (dump_dir != NULL) {
            char path[4096];
            snprintf(path, sizeof path, "%s/mutate-%lu-%lu", dump_dir, seed, it);
            FILE *fp = fopen(path, "wb");
            if (fp != NULL) {
                if (len) fwrite(file, 1, len, fp);
                fclose(fp);
            }
        }
        uint8_t *exact = malloc(len ? len : 1); /* exact size so ASan sees one-past reads */
        if (exact == NULL) return -1;
        if (len) memcpy(exact, file, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        n_run++;
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = 0;
    const char *dump_dir = NULL;
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s [--dump DIR] [--random N SEED] [FILE|DIR]... [--mutate N SEED]\n",
                argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            dump_dir = argv[++i];
        } else if (strcmp(argv[i], "--random") == 0 || strcmp(argv[i], "--mutate") == 0) {
            bool mutate = argv[i][2] == 'm';
            if (i + 2 >= argc) {
                fprintf(stderr, "%s needs N and SEED\n", argv[i]);
                return 2;
            }
            char *e1, *e2;
            unsigned long n = strtoul(argv[i + 1], &e1, 10), seed = strtoul(argv[i + 2], &e2, 10);
            if (*e1 != '\0' || *e2 != '\0') {
                fprintf(stderr, "%s needs numeric N and SEED, got '%s' '%s'\n", argv[i],
                        argv[i + 1], argv[i + 2]);
                return 2;
            }
            i += 2;
            if ((mutate ? run_mutate(n, seed, dump_dir) : run_random(n, seed, dump_dir)) != 0)
                rc = 1;
            printf("%s: %lu mutated inputs from seed %lu done\n", mutate ? "mutate" : "random", n,
                   seed);
        } else if (run_path(argv[i]) != 0) {
            rc = 1;
        }
    }
    printf("%zu inputs run, no crash\n", n_run);
    return rc;
}
