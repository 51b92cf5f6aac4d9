/* Static path sanitising and content types: see static_files.h. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "server/static_files.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int fail(char *err, size_t errlen, int code, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
    return code;
}

int srv_static_clean_path(const char *url_path, size_t len, char *rel, size_t rellen, char *err,
                          size_t errlen) {
    if (!url_path || strlen(url_path) != len)
        return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path contains a NUL byte");
    if (len == 0 || url_path[0] != '/')
        return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path must start with '/'");
    const char *q = memchr(url_path, '?', len);
    if (q) len = (size_t)(q - url_path);
    size_t o = 0;
    const char *p = url_path + 1, *end = url_path + len;
    int last_was_dir = 1; /* "/" itself names the root folder */
    while (p < end) {
        const char *seg = p;
        while (p < end && *p != '/') p++;
        size_t sl = (size_t)(p - seg);
        int slash = p < end;
        if (slash) p++;
        if (sl == 0) { /* "//": collapse */
            last_was_dir = 1;
            continue;
        }
        for (size_t i = 0; i < sl; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < 0x20 || c == 0x7f)
                return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "control character in path");
            if (c == '\\') return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "backslash in path");
        }
        if (seg[0] == '.') {
            if (sl == 1 || (sl == 2 && seg[1] == '.'))
                return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "'.' or '..' segment in path");
            return fail(err, errlen, SRV_STATIC_FORBIDDEN, "hidden file");
        }
        if (o + (o ? 1 : 0) + sl + 1 > rellen)
            return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path too long");
        if (o) rel[o++] = '/';
        memcpy(rel + o, seg, sl);
        o += sl;
        last_was_dir = slash;
    }
    if (last_was_dir) {
        static const char idx[] = "index.html";
        if (o + (o ? 1 : 0) + sizeof idx > rellen)
            return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path too long");
        if (o) rel[o++] = '/';
        memcpy(rel + o, idx, sizeof idx - 1);
        o += sizeof idx - 1;
    }
    rel[o] = '\0';
    return 0;
}

/* Inside: equal to root or below it at a '/' boundary. */
static int inside(const char *root, const char *path) {
    size_t rl = strlen(root);
    if (rl == 1 && root[0] == '/') return path[0] == '/';
    return !strncmp(root, path, rl) && (path[rl] == '/' || path[rl] == '\0');
}

int srv_static_resolve(const char *root_real, const char *url_path, size_t len, char *out,
                       size_t outlen, char *err, size_t errlen) {
    char rel[1024];
    int rc = srv_static_clean_path(url_path, len, rel, sizeof rel, err, errlen);
    if (rc) return rc;
    char joined[PATH_MAX + 16];
    for (int attempt = 0; attempt < 2; attempt++) {
        int n = snprintf(joined, sizeof joined, "%s/%s%s", root_real, rel,
                         attempt ? "/index.html" : "");
        if (n < 0 || (size_t)n >= sizeof joined)
            return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path too long");
        char real[PATH_MAX];
        if (!realpath(joined, real))
            return fail(err, errlen, SRV_STATIC_NOT_FOUND,
                        errno == EACCES ? "permission denied" : "no such file");
        if (!inside(root_real, real))
            return fail(err, errlen, SRV_STATIC_FORBIDDEN, "path leaves the web root");
        struct stat st;
        if (stat(real, &st)) return fail(err, errlen, SRV_STATIC_NOT_FOUND, "no such file");
        if (S_ISDIR(st.st_mode) && !attempt) continue; /* a folder: its index.html */
        if (!S_ISREG(st.st_mode)) return fail(err, errlen, SRV_STATIC_NOT_FOUND, "not a file");
        if (strlen(real) + 1 > outlen)
            return fail(err, errlen, SRV_STATIC_BAD_REQUEST, "path too long");
        memcpy(out, real, strlen(real) + 1);
        return 0;
    }
    return fail(err, errlen, SRV_STATIC_NOT_FOUND, "no such file");
}

const char *srv_static_content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {"html", "text/html; charset=utf-8"},
        {"htm", "text/html; charset=utf-8"},
        {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"},
        {"css", "text/css; charset=utf-8"},
        {"json", "application/json"},
        {"map", "application/json"},
        {"txt", "text/plain; charset=utf-8"},
        {"md", "text/markdown; charset=utf-8"},
        {"svg", "image/svg+xml"},
        {"png", "image/png"},
        {"jpg", "image/jpeg"},
        {"jpeg", "image/jpeg"},
        {"gif", "image/gif"},
        {"webp", "image/webp"},
        {"ico", "image/x-icon"},
        {"wasm", "application/wasm"},
        {"woff2", "font/woff2"},
        {"woff", "font/woff"},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot && dot[1])
        for (size_t i = 0; i < sizeof types / sizeof *types; i++)
            if (!strcasecmp(dot + 1, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}
