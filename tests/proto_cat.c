/* proto_cat: the C codec on the command line, for people and for tests/test_proto_js.mjs.
 *
 *   proto_cat [--max-bytes N] [FILE]   decode one binary message (stdin by default) and print its
 *                                      canonical text (tests/proto_text.h); on error print
 *                                      "error=<code> <name> <path>" and the message, exit 1
 *   proto_cat [--max-bytes N] --hex    batch mode: each stdin line is one message in hex; for each,
 *                                      print the text (or the error line), then "wire=<hex>" of
 *                                      the C re-encoding when it decoded, then a line "."
 *   proto_cat --samples SEED N         N random valid messages of every type built in C: for each,
 *                                      "hex=<C encoding>", the text, then "."
 *
 * <path> is the part of the codec's error message before the first ':' ("input.seq", "message"),
 * which web/proto.js reports identically. */
#include "proto/proto.h"
#include "proto_text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t max_bytes = 16u << 20;

static void put_hex(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

static void print_error(int rc, const char *err) {
    size_t plen = strcspn(err, ":");
    printf("error=%d %s %.*s\n", -rc, proto_error_name(rc), (int)plen, err);
}

/* Decodes and prints; returns 0 when it decoded. */
static int cat_one(const uint8_t *buf, size_t len, bool wire, proto_buf *out) {
    proto_msg m;
    char err[256];
    int rc = proto_decode(buf, len, max_bytes, &m, err, sizeof err);
    if (rc != 0) {
        print_error(rc, err);
        if (!wire) fprintf(stderr, "proto_cat: %s\n", err);
        return 1;
    }
    pt_render(stdout, &m);
    if (wire) {
        rc = proto_encode(&m, out);
        if (rc != 0) {
            printf("wire=error %d\n", -rc);
        } else {
            fputs("wire=", stdout);
            put_hex(out->data, out->len);
            fputc('\n', stdout);
        }
    }
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int run_hex(void) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    proto_buf out = {0};
    uint8_t *buf = NULL;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        size_t len = (size_t)n / 2;
        free(buf);
        buf = malloc(len ? len : 1); /* exact size: ASan sees reads past the message */
        if (buf == NULL) {
            rc = 2;
            break;
        }
        bool ok = n % 2 == 0;
        for (size_t i = 0; ok && i < len; i++) {
            int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            buf[i] = (uint8_t)(hi * 16 + lo);
        }
        if (!ok) {
            fprintf(stderr, "proto_cat: bad hex line\n");
            rc = 2;
            break;
        }
        cat_one(buf, len, true, &out);
        puts(".");
    }
    free(buf);
    free(line);
    proto_buf_free(&out);
    return rc;
}

static int run_samples(uint64_t seed, unsigned long n) {
    static uint8_t blob[300];
    proto_buf out = {0};
    uint64_t s = seed;
    for (unsigned long i = 0; i < n; i++) {
        for (int t = 1; t < PROTO_TYPE_COUNT; t++) {
            proto_msg m;
            pt_random(&m, (proto_type)t, &s, blob, sizeof blob);
            int rc = proto_encode(&m, &out);
            if (rc != 0) {
                fprintf(stderr, "proto_cat: encoding a random %s failed: %d\n",
                        proto_type_name((proto_type)t), rc);
                proto_buf_free(&out);
                return 1;
            }
            fputs("hex=", stdout);
            put_hex(out.data, out.len);
            fputc('\n', stdout);
            pt_render(stdout, &m);
            puts(".");
        }
    }
    proto_buf_free(&out);
    return 0;
}

static int read_all(FILE *fp, uint8_t **data, size_t *len) {
    size_t cap = 0;
    *data = NULL;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *nd = realloc(*data, cap);
            if (nd == NULL) return -1;
            *data = nd;
        }
        size_t r = fread(*data + *len, 1, cap - *len, fp);
        *len += r;
        if (r == 0) return ferror(fp) ? -1 : 0;
    }
}

int main(int argc, char **argv) {
    const char *path = NULL;
    bool hex = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--max-bytes") == 0 && i + 1 < argc) {
            max_bytes = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--hex") == 0) {
            hex = true;
        } else if (strcmp(argv[i], "--samples") == 0 && i + 2 < argc) {
            uint64_t seed = strtoull(argv[i + 1], NULL, 10);
            unsigned long n = strtoul(argv[i + 2], NULL, 10);
            return run_samples(seed, n);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "usage: %s [--max-bytes N] [FILE] | --hex | --samples SEED N\n",
                    argv[0]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (hex) return run_hex();
    FILE *fp = path ? fopen(path, "rb") : stdin;
    if (fp == NULL) {
        fprintf(stderr, "proto_cat: %s: %s\n", path, strerror(errno));
        return 2;
    }
    uint8_t *data;
    size_t len;
    int rc = read_all(fp, &data, &len);
    if (fp != stdin) fclose(fp);
    if (rc != 0) {
        fprintf(stderr, "proto_cat: read error\n");
        free(data);
        return 2;
    }
    rc = cat_one(data, len, false, NULL);
    free(data);
    return rc;
}
