/*
 * server_static.c - the dashboard's static files (see server_static.h).
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server_static.h"
#include "url.h"

const char *km_mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".htm", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".webmanifest", "application/manifest+json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".jpg", "image/jpeg"},
        {".jpeg", "image/jpeg"},
        {".gif", "image/gif"},
        {".webp", "image/webp"},
        {".ico", "image/x-icon"},
        {".woff", "font/woff"},
        {".woff2", "font/woff2"},
        {".ttf", "font/ttf"},
        {".otf", "font/otf"},
        {".txt", "text/plain; charset=utf-8"},
        {".wasm", "application/wasm"},
        {".xml", "application/xml"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');

    if (dot && (!slash || dot > slash)) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0)
                return types[i].type;
    }
    return "application/octet-stream";
}

int km_static_resolve(const char *root, const char *raw_path, char *out, size_t outlen)
{
    char dec[PATH_MAX], real[PATH_MAX], rroot[PATH_MAX];
    char cand[PATH_MAX * 2 + sizeof "/index.html"]; /* never cut: too long is 404 */
    size_t rawlen = strlen(raw_path);
    long n;
    struct stat st;

    if (rawlen >= sizeof dec)
        return 404;
    if ((n = km_pct_decode(raw_path, rawlen, dec, sizeof dec, KM_PCT_PATH)) < 0)
        return n == KM_PCT_EBAD ? 400 : 404; /* 404: an encoded NUL */
    if (dec[0] != '/')
        return 400;
    /* no ".." segment, whatever spelled it (%2e%2e, ..%2f, ...) */
    for (const char *p = dec; *p;) {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t sl = e ? (size_t)(e - p) : strlen(p);
        if (sl == 2 && p[0] == '.' && p[1] == '.')
            return 403;
        /* hidden files (.git, .env, ...) are never part of a dashboard */
        if (sl > 1 && p[0] == '.')
            return 404;
        p += sl;
    }
    if (!realpath(root, rroot))
        return 404;
    snprintf(cand, sizeof cand, "%s%s%s", rroot, dec,
             dec[n - 1] == '/' ? "index.html" : "");
    if (strlen(cand) >= PATH_MAX || !realpath(cand, real))
        return 404;
    if (stat(real, &st) != 0)
        return 404;
    if (S_ISDIR(st.st_mode)) {
        snprintf(cand, sizeof cand, "%s/index.html", real);
        if (strlen(cand) >= PATH_MAX || !realpath(cand, real) || stat(real, &st) != 0)
            return 404;
    }
    /* symlinks were resolved: the file itself must be inside the root */
    size_t rl = strlen(rroot);
    if (strncmp(real, rroot, rl) != 0 ||
        (real[rl] != '/' && !(rl == 1 && rroot[0] == '/')))
        return 403;
    if (!S_ISREG(st.st_mode))
        return 404;
    if (strlen(real) + 1 > outlen)
        return 404;
    strcpy(out, real);
    return 0;
}

/*
 * The dashboard's client-side routes, the keys of ROUTES in web/js/app.js
 * ("/" is index.html itself): these load the app, so deep links work.
 * Only these: any other missing path is a 404, not the app with 200
 * (issue 16). tests/integration/service.py reads app.js's ROUTES and
 * fails when this list has drifted from it.
 */
static const char *const km_dashboard_routes[] = {"/sessions", "/alerts", "/fleet"};

static int km_is_route(const char *path)
{
    for (size_t i = 0; i < sizeof km_dashboard_routes / sizeof km_dashboard_routes[0];
         i++)
        if (strcmp(path, km_dashboard_routes[i]) == 0)
            return 1;
    return 0;
}

/* Under /api/ a client is a program: errors are JSON like the API's own. */
static int km_is_api(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0;
}

/*
 * An error for a static path: {"detail": text} under /api/, elsewhere a
 * small HTML page a person can read, with a link back to the dashboard.
 * text is one of the fixed reason phrases (never the request's path, so
 * nothing of the request is echoed into HTML).
 */
static void km_static_error(struct km_conn *c, const struct km_req *req, const char *path,
                            int status, const char *extra, const char *text)
{
    char page[1024];

    if (km_is_api(path)) {
        km_conn_detail(c, req, status, extra, text);
        return;
    }
    int n = snprintf(page, sizeof page,
                     "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                     "<title>%d %s - katomon</title></head>\n<body><h1>%s</h1>\n"
                     "<p>katomon has no page at this address (HTTP %d).</p>\n"
                     "<p><a href=\"/\">Go to the dashboard</a></p></body></html>\n",
                     status, text, status == 404 ? "Page not found" : text, status);
    char hdrs[512];
    snprintf(hdrs, sizeof hdrs,
             "%sCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
             extra ? extra : "");
    km_conn_send(c, req, status, "text/html; charset=utf-8", hdrs, page,
                 n > 0 && (size_t)n < sizeof page ? (size_t)n : 0);
}

/*
 * Picks the file for a static path: /vendor/... from vendor_root (Debian's
 * shared JavaScript libraries, e.g. chart.js, never copied into web/);
 * anything else from web_root, where a missing dot-less path is a
 * client-side route and gets index.html, so deep links load the app.
 */
static int km_static_pick(const struct km_static_roots *roots, const char *path,
                          char *file, size_t len)
{
    if (strncmp(path, "/vendor/", 8) == 0)
        return roots->vendor_root
                   ? km_static_resolve(roots->vendor_root, path + 7, file, len)
                   : 404;
    int status = km_static_resolve(roots->web_root, path, file, len);
    if (status == 404 && km_is_route(path))
        status = km_static_resolve(roots->web_root, "/index.html", file, len);
    return status;
}

void km_static_serve(const struct km_static_roots *roots, struct km_conn *c,
                     const struct km_req *req)
{
    char file[PATH_MAX], extra[768], mod[64], etag[64];
    const char *inm, *rawpath = req->target;
    char pathbuf[PATH_MAX];
    struct stat st;
    int status, fd;

    /* the raw path (up to '?'): km_static_resolve decodes it itself */
    size_t pl = strcspn(rawpath, "?#");
    if (pl >= sizeof pathbuf) {
        km_conn_detail(c, req, 414, NULL, "URI Too Long");
        return;
    }
    memcpy(pathbuf, rawpath, pl);
    pathbuf[pl] = '\0';
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        km_static_error(c, req, pathbuf, 405, "Allow: GET, HEAD\r\n",
                        "Method Not Allowed");
        return;
    }
    status = km_static_pick(roots, pathbuf, file, sizeof file);
    if (status) {
        km_static_error(c, req, pathbuf, status, NULL,
                        status == 403   ? "Forbidden"
                        : status == 400 ? "Bad Request"
                                        : "Not Found");
        return;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        km_static_error(c, req, pathbuf, 404, NULL, "Not Found");
        return;
    }
    km_header_date(st.st_mtime, mod, sizeof mod);
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtime);
    /* HTML is revalidated every time so a new dashboard shows up at once;
       assets may be reused for 5 minutes, then revalidated by ETag. */
    snprintf(extra, sizeof extra,
             "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: %s\r\n"
             "X-Content-Type-Options: nosniff\r\n",
             etag, mod,
             strncmp(km_mime_type(file), "text/html", 9) == 0 ? "no-cache"
                                                              : "public, max-age=300");
    inm = km_conn_header(c, "If-None-Match");
    if (inm && (strcmp(inm, etag) == 0 || km_header_has_token(inm, etag) ||
                strcmp(inm, "*") == 0)) {
        close(fd);
        km_conn_send(c, req, 304, NULL, extra, NULL, 0);
        return;
    }
    km_conn_send(c, req, 200, km_mime_type(file), extra, NULL, (size_t)st.st_size);
    if (req->head || st.st_size == 0) {
        close(fd);
        return;
    }
    km_conn_send_file(c, fd, (size_t)st.st_size);
}
