/* srv_buf: see buf.h. */
#include "server/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_buf_reserve(srv_buf *b, size_t extra) {
    if (extra > (size_t)-1 / 2 - b->len) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int srv_buf_append(srv_buf *b, const void *p, size_t n) {
    if (srv_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int srv_buf_puts(srv_buf *b, const char *s) {
    return srv_buf_append(b, s, strlen(s));
}

int srv_buf_printf(srv_buf *b, const char *fmt, ...) {
    if (srv_buf_reserve(b, 64)) return -1;
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        if (srv_buf_reserve(b, (size_t)n)) return -1;
    }
}

int srv_buf_json_string(srv_buf *b, const char *s) {
    if (srv_buf_append(b, "\"", 1)) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        switch (*p) {
        case '"':
            rc = srv_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            rc = srv_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            rc = srv_buf_append(b, "\\n", 2);
            break;
        case '\r':
            rc = srv_buf_append(b, "\\r", 2);
            break;
        case '\t':
            rc = srv_buf_append(b, "\\t", 2);
            break;
        default:
            rc = *p < 0x20 ? srv_buf_printf(b, "\\u%04x", *p) : srv_buf_append(b, p, 1);
        }
        if (rc) return -1;
    }
    return srv_buf_append(b, "\"", 1);
}

void srv_buf_reset(srv_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void srv_buf_free(srv_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
