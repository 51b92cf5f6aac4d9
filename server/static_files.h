/* Static files for the browser client: mapping a request path to a file under the web root without
 * ever leaving it, and the content type of a file. Pure except srv_static_resolve, which asks the
 * file system (realpath, stat) so that symlinks pointing outside the root are refused too. */
#ifndef WM_SERVER_STATIC_FILES_H
#define WM_SERVER_STATIC_FILES_H

#include <stddef.h>

/* Status codes (negative HTTP status) returned by the functions below. */
#define SRV_STATIC_BAD_REQUEST (-400)
#define SRV_STATIC_FORBIDDEN   (-403)
#define SRV_STATIC_NOT_FOUND   (-404)

/* Turns a decoded URL path of `len` bytes ("/", "/js/app.js") into a relative file path
 * ("index.html", "js/app.js"). Refuses: no leading '/', an embedded NUL (len != strlen), control
 * characters, backslashes, '.' or '..' segments, hidden names (a segment starting with '.') and
 * paths longer than the output. A query string ("?...") is ignored. A trailing '/' means the
 * folder's index.html. Returns 0 or a SRV_STATIC_* code with a message in err. */
int srv_static_clean_path(const char *url_path, size_t len, char *rel, size_t rellen, char *err,
                          size_t errlen);

/* srv_static_clean_path, then the real path of root/rel, which must be a regular file inside
 * root_real (itself a canonical absolute path, as from realpath). A folder serves its index.html.
 * out receives the canonical file path. */
int srv_static_resolve(const char *root_real, const char *url_path, size_t len, char *out,
                       size_t outlen, char *err, size_t errlen);

/* "text/html; charset=utf-8", "text/javascript; charset=utf-8", ... by extension;
 * "application/octet-stream" when unknown. */
const char *srv_static_content_type(const char *path);

#endif
