/* A growable byte buffer (data, len, cap) used for HTTP bodies, log lines and metrics text: one
 * explicit type instead of loose pointer/length pairs. The contents stay NUL-terminated so text can
 * be handed to C string functions; the terminator is not counted in len. Growth is geometric and
 * capacity is kept across srv_buf_reset, so a reused buffer stops allocating once warm. */
#ifndef WM_SERVER_BUF_H
#define WM_SERVER_BUF_H

#include <stddef.h>

typedef struct srv_buf {
    char *data;
    size_t len, cap;
} srv_buf;

/* Ensures room for `extra` more bytes plus the terminator. 0 or -1 (out of memory). */
int srv_buf_reserve(srv_buf *b, size_t extra);
int srv_buf_append(srv_buf *b, const void *p, size_t n);
int srv_buf_puts(srv_buf *b, const char *s);
int srv_buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes included, control characters escaped). */
int srv_buf_json_string(srv_buf *b, const char *s);
void srv_buf_reset(srv_buf *b); /* len = 0, capacity kept */
void srv_buf_free(srv_buf *b);

#endif
