/* Who may open a websocket: the browser Origin check (--allowed-origins) and the client address
 * (the peer, or the last X-Forwarded-For entry behind a trusted proxy) that per-address limits
 * count. Pure string functions: no lws, no state. */
#ifndef WM_SERVER_ACCESS_H
#define WM_SERVER_ACCESS_H

#include <stddef.h>

/* 1 when a websocket upgrade with this Origin may proceed, else 0. origin NULL or "" (no Origin
 * header: a non-browser client) is allowed. allowed "": the Origin's host[:port] must equal host
 * (the Host header, case-insensitive); "*": any; else a comma-separated list whose entries match
 * the whole Origin ("https://a.example") or its host[:port] ("a.example:8080"). */
int srv_origin_allowed(const char *allowed, const char *origin, const char *host);

/* The client address from an X-Forwarded-For value: its last entry (the one the trusted proxy
 * appended), trimmed. 0, or -1 when xff holds no usable entry (out is then ""). */
int srv_forwarded_client(const char *xff, char *out, size_t n);

#endif
