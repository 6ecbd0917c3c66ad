/*
 * server_static.h - the dashboard's static files: [http] web_root (with
 * client-side routes answered by index.html) and [http] vendor_root under
 * /vendor/, GET and HEAD only, ETag / Last-Modified / Cache-Control, 304
 * for If-None-Match.
 *
 * Owns mapping a request path to a file without ever leaving the root
 * (no "..", no hidden ".name" segment, symlinks resolved and checked),
 * content types, and caching headers. Answers through server_conn.h;
 * decodes with url.h.
 */
#ifndef KM_SERVER_STATIC_H
#define KM_SERVER_STATIC_H

#include <stddef.h>
#include "server_conn.h"

/* Where static files come from (both borrowed). */
struct km_static_roots {
    const char *web_root;    /* [http] web_root */
    const char *vendor_root; /* [http] vendor_root, served as /vendor/; NULL: off */
};

/* Answers req (GET or HEAD, else 405) with the file its raw target names
   under roots, or 400 / 403 / 404 / 414 as km_static_resolve says. */
void km_static_serve(const struct km_static_roots *roots, struct km_conn *c,
                     const struct km_req *req);

/*
 * Maps a request path to a file under root, or fails: the path is
 * percent-decoded once (the path rule: '+' stays '+'), must start with
 * '/', may not contain NUL, a ".." segment (403) or a hidden ".name"
 * segment (404), and the file found (symlinks resolved) must lie inside
 * root. "/" and directories map to index.html. Returns 0 with the real
 * path in out, or the HTTP status to answer: 400 (bad encoding), 403
 * (traversal), 404 (no such file). Exposed for tests.
 */
int km_static_resolve(const char *root, const char *raw_path, char *out, size_t outlen);

/* Content-Type for a file name ("application/octet-stream" when unknown). */
const char *km_mime_type(const char *path);

#endif /* KM_SERVER_STATIC_H */
