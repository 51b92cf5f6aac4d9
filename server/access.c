/* Origin check and forwarded client address: see access.h. */
#include "server/access.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The host[:port] part of an Origin ("https://a.example:8080" -> "a.example:8080"). */
static const char *origin_host(const char *origin) {
    const char *p = strstr(origin, "://");
    return p ? p + 3 : origin;
}

static int entry_matches(const char *e, size_t n, const char *origin) {
    while (n && isspace((unsigned char)*e)) e++, n--;
    while (n && isspace((unsigned char)e[n - 1])) n--;
    if (!n) return 0;
    if (n == 1 && *e == '*') return 1;
    const char *oh = origin_host(origin);
    return (strlen(origin) == n && !strncasecmp(origin, e, n)) ||
           (strlen(oh) == n && !strncasecmp(oh, e, n));
}

int srv_origin_allowed(const char *allowed, const char *origin, const char *host) {
    if (!origin || !origin[0]) return 1;
    if (!allowed || !allowed[0]) return host && host[0] && !strcasecmp(origin_host(origin), host);
    for (const char *p = allowed;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (entry_matches(p, n, origin)) return 1;
        if (!c) return 0;
        p = c + 1;
    }
}

int srv_forwarded_client(const char *xff, char *out, size_t n) {
    out[0] = '\0';
    if (!xff || !n) return -1;
    const char *last = strrchr(xff, ',');
    const char *p = last ? last + 1 : xff;
    while (isspace((unsigned char)*p)) p++;
    size_t len = strlen(p);
    while (len && isspace((unsigned char)p[len - 1])) len--;
    if (!len || len >= n) return -1;
    for (size_t i = 0; i < len; i++)
        if (!isxdigit((unsigned char)p[i]) && p[i] != '.' && p[i] != ':') return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}
