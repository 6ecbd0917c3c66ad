/*
 * server.c - the HTTP listener: connections, request parsing (http-parser),
 * routing, static files, auth / Origin / CORS, and the /ws upgrade.
 * See server.h for what is served and the limits.
 *
 * A connection starts as HTTP (struct km_conn). Requests are handled one
 * at a time: on_message_complete pauses the parser, the request is
 * answered (synchronously: REST reads the bus, static files go out with
 * evbuffer_add_file), and parsing resumes, so pipelined requests are
 * answered in order. A plugin's route may answer later (KM_REST_LATER):
 * the connection then keeps the handle (c->pending), parses nothing more
 * (what arrives waits in the input buffer, bounded by the read
 * watermark), has no read timeout (the core's deadline answers 504), and
 * resumes once the answer has drained; a client leaving first just
 * detaches the handle. While more than KM_HTTP_OUT_MAX bytes of answers are
 * unsent, reading stops, so a client that pipelines and never reads costs
 * at most that. A successful upgrade hands the bufferevent to the
 * WebSocket hub (km_ws_attach) and frees the km_conn; the connection stays
 * counted against max_connections until the hub reports it gone.
 *
 * An answer that ends the connection (errors, Connection: close, 503) is
 * followed by a "lingering close": once the answer has drained, the write
 * side is shut and input is read and dropped until the peer closes or
 * KM_HTTP_LINGER_S passes. Closing with unread input would send a RST that
 * can destroy the answer before the client reads it.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>

#include "log.h"
#include "rest.h"
#include "server.h"
#include "url.h"
#include "ws.h"

#ifndef KM_WEB_ROOT
#define KM_WEB_ROOT "/usr/share/katomon/web"
#endif

#define KM_HTTP_MAX_HEADERS 64        /* headers in one request (431 past it) */
#define KM_HTTP_TIMEOUT_S   30        /* to send a request / take an answer */
#define KM_HTTP_LINGER_S    2         /* lingering close, see top */
#define KM_HTTP_OUT_MAX     (1 << 20) /* unsent answer bytes before reading stops */
#define KM_HTTP_MAX_REJECTS 64        /* 503 answers in flight; more are just closed */

/* ---- types ---- */

/* One header: offsets into the connection's arena. */
struct km_hdr {
    size_t name;  /* offset of the NUL-terminated name */
    size_t value; /* offset of the value; SIZE_MAX: empty */
};

/* What is being parsed into the arena (a new kind ends the previous string). */
enum km_piece { KM_PIECE_NONE, KM_PIECE_URL, KM_PIECE_FIELD, KM_PIECE_VALUE };

/* One HTTP connection (before any upgrade). */
struct km_conn {
    struct km_server *srv;   /* owner */
    struct bufferevent *bev; /* the socket (owned) */
    http_parser parser;      /* request parser state */
    char peer[64];           /* "ADDR:PORT" for logs */
    int rejecting;           /* a 503 connection past max_connections */
    int closing;             /* answer out, close after it drains */
    int lingering;           /* write side shut; reading until EOF */
    int complete;            /* a whole request is parsed, not yet answered */
    int keep_alive;          /* that request allows another */
    int error;               /* status for a request we refuse (413, 431) */
    char *arena;             /* URL and headers, NUL-separated (owned) */
    size_t arena_len;        /* bytes used */
    size_t arena_cap;        /* bytes allocated */
    enum km_piece piece;     /* what the last bytes appended were */
    size_t url;              /* arena offset of the request target */
    struct km_hdr hdr[KM_HTTP_MAX_HEADERS]; /* headers, in order */
    size_t n_hdr;                           /* number of headers */
    char *body;                             /* request body, NUL-terminated (owned) */
    size_t body_len;                        /* bytes in body */
    struct km_rest_pending *pending;        /* a plugin's answer awaited (KM_REST_LATER):
                                               parsing waits for it */
    char *later_extra;                      /* header lines for that answer (owned) */
    int later_head;                         /* that request was HEAD */
    int resume;                             /* parse what waits once the answer drained */
    struct event *linger_ev;                /* ends a lingering close */
    struct km_conn *next;                   /* server's list */
    struct km_conn *prev;                   /* server's list */
};

/* The parts of a request the handlers look at. Borrowed from the conn. */
struct km_req {
    const char *method; /* "GET", ... */
    const char *target; /* raw request target */
    char *path;         /* percent-decoded path (owned by the caller's buffer) */
    const char *query;  /* raw query after '?', "" when none */
    int head;           /* HEAD: headers only */
    int http11;         /* HTTP/1.1 or later */
};

struct km_server {
    struct km_core *core;            /* loop, bus, config (borrowed) */
    struct evconnlistener *listener; /* the listening socket */
    struct event *resume_ev;         /* re-enables accepting after EMFILE */
    struct km_ws *ws;                /* WebSocket hub (owned) */
    struct km_conn *conns;           /* HTTP connections */
    size_t n_conns;                  /* HTTP + WebSocket connections counted */
    size_t n_rejecting;              /* 503 connections in flight */
    char addr[64];                   /* bound address, numeric */
    int port;                        /* bound port */
    int v6;                          /* addr is IPv6 */
    char *web_root;                  /* [http] web_root (owned) */
    char *vendor_root;               /* [http] vendor_root, served as /vendor/ (owned);
                                        NULL: off */
    char **origins;                  /* [http] allowed_origins, split (owned) */
    size_t n_origins;                /* number of origins */
    int any_origin;                  /* allowed_origins has "*" */
    char *auth_token;                /* [http] auth_token or NULL (owned) */
    size_t max_connections;          /* [http] max_connections */
    size_t max_request_bytes;        /* [http] max_request_bytes */
    int ws_enabled;                  /* [websocket] enabled */
};

static void km_conn_free(struct km_conn *c);
static void km_conn_release(struct km_conn *c);
static void km_conn_finish(struct km_conn *c);
static void km_conn_read_cb(struct bufferevent *bev, void *arg);

/* ---- small helpers ---- */

static const char *km_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 422:
        return "Unprocessable Entity";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static void km_http_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* 1 when the comma-separated header value has token (case-insensitive). */
static int km_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *p = value;

    while (p && *p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t'))
            te--;
        if ((size_t)(te - p) == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p = e;
    }
    return 0;
}

/* Constant-time comparison (the token must not leak through timing). */
static int km_secret_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return d == 0;
}

/* ---- configuration ---- */

static void km_server_free_origins(struct km_server *srv)
{
    for (size_t i = 0; i < srv->n_origins; i++)
        free(srv->origins[i]);
    free(srv->origins);
    srv->origins = NULL;
    srv->n_origins = 0;
    srv->any_origin = 0;
}

/* Splits "a, b ,c" into srv->origins (lower case, no trailing '/'). */
static void km_server_set_origins(struct km_server *srv, const char *list)
{
    km_server_free_origins(srv);
    if (!list)
        return;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    if (!(srv->origins = calloc(n, sizeof *srv->origins)))
        return;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *te = e;
        while (te > p && (te[-1] == ' ' || te[-1] == '\t' || te[-1] == '/'))
            te--;
        if (te > p) {
            char *o = strndup(p, (size_t)(te - p));
            if (o) {
                for (char *q = o; *q; q++)
                    *q = (char)tolower((unsigned char)*q);
                if (strcmp(o, "*") == 0)
                    srv->any_origin = 1;
                srv->origins[srv->n_origins++] = o;
            }
        }
        p = e;
    }
}

/* The settings that can change live (SIGHUP): origins and token. */
static void km_server_apply_live(struct km_server *srv, const struct km_config *cfg)
{
    km_server_set_origins(srv, cfg ? cfg->allowed_origins : NULL);
    free(srv->auth_token);
    srv->auth_token =
        cfg && cfg->auth_token && *cfg->auth_token ? strdup(cfg->auth_token) : NULL;
}

/* [websocket] settings as the hub takes them. */
static struct km_ws_limits km_server_ws_limits(const struct km_config *cfg)
{
    struct km_ws_limits lim = {0};
    if (cfg) {
        lim.update_interval = cfg->update_interval;
        lim.max_message_bytes = cfg->max_message_bytes;
        lim.max_queue_bytes = cfg->max_queue_bytes;
        lim.ping_interval = cfg->ping_interval;
        lim.idle_timeout = cfg->idle_timeout;
    }
    return lim;
}

/* ---- writing answers ---- */

/*
 * Writes status line, standard headers, `extra` (whole "Name: value\r\n"
 * lines or NULL), and the body (skipped for HEAD, but counted in
 * Content-Length). Connection: close when c->closing.
 */
static void km_conn_send(struct km_conn *c, const struct km_req *req, int status,
                         const char *ctype, const char *extra, const void *body,
                         size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[64];

    km_http_date(time(NULL), date, sizeof date);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nServer: katomon/%s\r\nDate: %s\r\n",
                        status, km_status_text(status), PACKAGE_VERSION, date);
    if (ctype)
        evbuffer_add_printf(out, "Content-Type: %s\r\n", ctype);
    if (status != 304 && status != 204)
        evbuffer_add_printf(out, "Content-Length: %zu\r\n", len);
    if (extra)
        evbuffer_add(out, extra, strlen(extra));
    evbuffer_add_printf(out, "Connection: %s\r\n\r\n",
                        c->closing ? "close" : "keep-alive");
    if (body && len && !(req && req->head) && status != 204 && status != 304)
        evbuffer_add(out, body, len);
}

/* JSON answer; steals body. */
static void km_conn_json(struct km_conn *c, const struct km_req *req, int status,
                         const char *extra, json_t *body)
{
    char *text = body ? json_dumps(body, KM_JSON_FLAGS) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"detail\":\"out of memory\"}";
        c->closing = 1;
        km_conn_send(c, req, 500, "application/json", extra, oom, sizeof oom - 1);
        return;
    }
    km_conn_send(c, req, status, "application/json", extra, text, strlen(text));
    free(text);
}

static void km_conn_detail(struct km_conn *c, const struct km_req *req, int status,
                           const char *extra, const char *detail)
{
    km_conn_json(c, req, status, extra, km_rest_detail(detail));
}

/* ---- request access ---- */

static const char *km_conn_header(const struct km_conn *c, const char *name)
{
    for (size_t i = 0; i < c->n_hdr; i++) {
        if (strcasecmp(c->arena + c->hdr[i].name, name) == 0)
            return c->hdr[i].value == SIZE_MAX ? "" : c->arena + c->hdr[i].value;
    }
    return NULL;
}

/* Value of query parameter key (matched as written), decoded by the query
   rule into buf; NULL when absent, carrying a NUL or too long for buf. */
static const char *km_query_param(const char *query, const char *key, char *buf,
                                  size_t buflen)
{
    size_t kl = strlen(key);

    for (const char *p = query; p && *p;) {
        const char *e = strchr(p, '&');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            if (km_pct_decode(p + kl + 1, n - kl - 1, buf, buflen, KM_PCT_QUERY) < 0)
                return NULL;
            return buf;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

/* 1 when the request carries the auth token (or none is configured). */
static int km_conn_authorized(const struct km_conn *c, const struct km_req *req)
{
    const char *tok = c->srv->auth_token, *h;
    char buf[512];

    if (!tok)
        return 1;
    h = km_conn_header(c, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
            n--;
        if (km_secret_eq(h, n, tok))
            return 1;
    }
    if ((h = km_query_param(req->query, "token", buf, sizeof buf)) ||
        (h = km_query_param(req->query, "access_token", buf, sizeof buf)))
        return km_secret_eq(h, strlen(h), tok);
    return 0;
}

/* "host:port" without a default port, lower case, into out. */
static void km_norm_authority(const char *a, size_t n, int https, char *out,
                              size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++)
        out[o++] = (char)tolower((unsigned char)a[i]);
    out[o] = '\0';
    const char *def = https ? ":443" : ":80";
    size_t dl = strlen(def);
    if (o > dl && strcmp(out + o - dl, def) == 0)
        out[o - dl] = '\0';
}

/*
 * 1 when origin may use /ws and get CORS answers: listed in
 * allowed_origins (or "*"), or the same host as the request's Host.
 */
static int km_origin_allowed(const struct km_conn *c, const char *origin)
{
    const struct km_server *srv = c->srv;
    const char *host = km_conn_header(c, "Host");
    char o[256], h[256];
    size_t n = strlen(origin);

    while (n && origin[n - 1] == '/')
        n--;
    if (srv->any_origin)
        return 1;
    for (size_t i = 0; i < srv->n_origins; i++)
        if (strlen(srv->origins[i]) == n && strncasecmp(srv->origins[i], origin, n) == 0)
            return 1;
    /* same host: scheme://AUTHORITY equals Host */
    const char *sep = strstr(origin, "://");
    if (!sep || !host || (size_t)(sep - origin) > n)
        return 0;
    int https = (size_t)(sep - origin) == 5 && strncasecmp(origin, "https", 5) == 0;
    const char *auth = sep + 3;
    km_norm_authority(auth, n - (size_t)(auth - origin), https, o, sizeof o);
    km_norm_authority(host, strlen(host), https, h, sizeof h);
    return o[0] && strcmp(o, h) == 0;
}

/* CORS header lines for an allowed Origin (empty otherwise) into buf. */
static const char *km_cors_headers(const struct km_conn *c, char *buf, size_t len)
{
    const char *origin = km_conn_header(c, "Origin");

    buf[0] = '\0';
    if (origin && *origin && strlen(origin) < 200 && km_origin_allowed(c, origin) &&
        !strpbrk(origin, "\r\n"))
        snprintf(buf, len, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    return buf;
}

/* ---- static files ---- */

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
 * A client-side route of the dashboard, such as /alerts or /sessions:
 * letters, digits, '-' and '_' in single-slash segments, no trailing slash,
 * outside /api/. Anything else that is missing stays a 404.
 */
static int km_is_route(const char *path)
{
    size_t n = strlen(path);

    if (n < 2 || path[n - 1] == '/' || strstr(path, "//") ||
        strncmp(path, "/api/", 5) == 0)
        return 0;
    return strspn(path,
                  "/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") ==
           n;
}

/*
 * Picks the file for a static path: /vendor/... from vendor_root (Debian's
 * shared JavaScript libraries, e.g. chart.js, never copied into web/);
 * anything else from web_root, where a missing dot-less path is a
 * client-side route and gets index.html, so deep links load the app.
 */
static int km_static_pick(const struct km_server *srv, const char *path, char *file,
                          size_t len)
{
    if (strncmp(path, "/vendor/", 8) == 0)
        return srv->vendor_root ? km_static_resolve(srv->vendor_root, path + 7, file, len)
                                : 404;
    int status = km_static_resolve(srv->web_root, path, file, len);
    if (status == 404 && km_is_route(path))
        status = km_static_resolve(srv->web_root, "/index.html", file, len);
    return status;
}

static void km_conn_static(struct km_conn *c, struct km_req *req)
{
    char file[PATH_MAX], extra[768], mod[64], etag[64];
    const char *inm, *rawpath = req->target;
    char pathbuf[PATH_MAX];
    struct stat st;
    int status, fd;

    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        km_conn_detail(c, req, 405, "Allow: GET, HEAD\r\n", "Method Not Allowed");
        return;
    }
    /* the raw path (up to '?'): km_static_resolve decodes it itself */
    size_t pl = strcspn(rawpath, "?#");
    if (pl >= sizeof pathbuf) {
        km_conn_detail(c, req, 414, NULL, "URI Too Long");
        return;
    }
    memcpy(pathbuf, rawpath, pl);
    pathbuf[pl] = '\0';
    status = km_static_pick(c->srv, pathbuf, file, sizeof file);
    if (status) {
        km_conn_detail(c, req, status, NULL,
                       status == 403   ? "Forbidden"
                       : status == 400 ? "Bad Request"
                                       : "Not Found");
        return;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        km_conn_detail(c, req, 404, NULL, "Not Found");
        return;
    }
    km_http_date(st.st_mtime, mod, sizeof mod);
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
    if (inm &&
        (strcmp(inm, etag) == 0 || km_has_token(inm, etag) || strcmp(inm, "*") == 0)) {
        close(fd);
        km_conn_send(c, req, 304, NULL, extra, NULL, 0);
        return;
    }
    km_conn_send(c, req, 200, km_mime_type(file), extra, NULL, (size_t)st.st_size);
    if (req->head || st.st_size == 0) {
        close(fd);
        return;
    }
    /* sendfile/mmap by libevent; it owns fd from here */
    if (evbuffer_add_file(bufferevent_get_output(c->bev), fd, 0, st.st_size) != 0) {
        close(fd);
        c->closing = 1; /* headers promised a body we cannot send */
    }
}

/* ---- WebSocket upgrade ---- */

static void km_server_ws_gone(void *arg)
{
    struct km_server *srv = arg;
    srv->n_conns--;
}

/* Checks the handshake; answers 101 and hands over (returns 1: c is gone),
   or answers the error (returns 0). */
static int km_conn_upgrade(struct km_conn *c, struct km_req *req)
{
    struct km_server *srv = c->srv;
    const char *upgrade = km_conn_header(c, "Upgrade");
    const char *connection = km_conn_header(c, "Connection");
    const char *version = km_conn_header(c, "Sec-WebSocket-Version");
    const char *key = km_conn_header(c, "Sec-WebSocket-Key");
    const char *origin = km_conn_header(c, "Origin");
    const char *why = NULL;
    const char *extra = NULL;
    char accept[29], detail[320];

    if (!srv->ws_enabled || !srv->ws) {
        km_conn_detail(c, req, 404, NULL, "WebSocket is disabled ([websocket] enabled)");
        return 0;
    }
    if (strcmp(req->method, "GET") != 0)
        why = "WebSocket handshake: method must be GET";
    else if (!req->http11)
        why = "WebSocket handshake: HTTP/1.1 required";
    else if (!upgrade || !km_has_token(upgrade, "websocket"))
        why = "WebSocket handshake: missing \"Upgrade: websocket\"";
    else if (!connection || !km_has_token(connection, "upgrade"))
        why = "WebSocket handshake: missing \"Connection: Upgrade\"";
    else if (!version || strcmp(version, "13") != 0) {
        why = "WebSocket handshake: unsupported Sec-WebSocket-Version (13 only)";
        extra = "Sec-WebSocket-Version: 13\r\n";
    } else if (!key || !km_ws_key_valid(key))
        why = "WebSocket handshake: missing or bad Sec-WebSocket-Key";
    if (why) {
        c->closing = 1;
        km_conn_detail(c, req, 400, extra, why);
        return 0;
    }
    if (origin && !km_origin_allowed(c, origin)) {
        snprintf(detail, sizeof detail,
                 "Origin %.200s is not allowed; add it to [http] allowed_origins",
                 origin);
        c->closing = 1;
        km_conn_detail(c, req, 403, NULL, detail);
        return 0;
    }
    if (!km_conn_authorized(c, req)) {
        c->closing = 1;
        km_conn_detail(c, req, 401, "WWW-Authenticate: Bearer realm=\"katomon\"\r\n",
                       "authentication required: Authorization: Bearer TOKEN or ?token=");
        return 0;
    }
    km_ws_accept_key(key, accept);
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        accept);

    /* hand the socket over: the conn goes, the count stays until ws says gone */
    struct bufferevent *bev = c->bev;
    char peer[64];
    snprintf(peer, sizeof peer, "%s", c->peer);
    c->bev = NULL;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    km_conn_release(c);
    if (km_ws_attach(srv->ws, bev, peer, km_server_ws_gone, srv) != 0)
        srv->n_conns--;
    return 1;
}

/* ---- routing ---- */

/* The timeouts of a connection that reads (a request may take
   KM_HTTP_TIMEOUT_S to arrive) or waits for a plugin (no read timeout:
   the core's deadline bounds the wait). */
static void km_conn_timeouts(struct km_conn *c, int waiting)
{
    struct timeval tv = {KM_HTTP_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, waiting ? NULL : &tv, &tv);
}

/* A plugin's later answer (struct km_rest_waiter): sent like any other,
   then parsing resumes once it has drained (km_conn_write_cb). */
static void km_conn_later(void *arg, int status, json_t *body)
{
    struct km_conn *c = arg;
    struct km_req req = {
        .method = "GET", .target = "", .query = "", .head = c->later_head};

    c->pending = NULL;
    km_conn_timeouts(c, 0);
    km_conn_json(c, &req, status,
                 c->later_extra ? c->later_extra : "Cache-Control: no-store\r\n", body);
    free(c->later_extra);
    c->later_extra = NULL;
    if (!c->closing) {
        http_parser_pause(&c->parser, 0);
        c->resume = 1;
    }
}

static void km_conn_rest(struct km_conn *c, struct km_req *req)
{
    char cors[512], extra[1024], allow[128];
    struct km_rest_call call = {.method = req->method,
                                .path = req->path,
                                .query = req->query,
                                .body = c->body ? c->body : "",
                                .body_len = c->body_len};
    json_t *body = NULL;
    int status;

    km_cors_headers(c, cors, sizeof cors);
    if (strcmp(req->method, "OPTIONS") == 0) {
        if (!cors[0]) {
            km_conn_detail(c, req, 403, NULL, "Origin not allowed");
            return;
        }
        snprintf(extra, sizeof extra,
                 "%sAccess-Control-Allow-Methods: GET, HEAD, POST, PUT, PATCH, DELETE, "
                 "OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                 "Access-Control-Max-Age: 600\r\n",
                 cors);
        km_conn_send(c, req, 204, NULL, extra, NULL, 0);
        return;
    }
    if (strcmp(req->path, "/health") != 0 && !km_conn_authorized(c, req)) {
        snprintf(extra, sizeof extra, "%sWWW-Authenticate: Bearer realm=\"katomon\"\r\n",
                 cors);
        km_conn_detail(c, req, 401, extra,
                       "authentication required: Authorization: Bearer TOKEN or ?token=");
        return;
    }
    struct km_rest_waiter waiter = {km_conn_later, c};
    status = km_rest_handle(c->srv->core, c->srv->ws, &call, &body, allow, sizeof allow,
                            &waiter, &c->pending);
    if (status == KM_REST_DEFERRED) {
        /* answered by km_conn_later; until then nothing more is parsed */
        snprintf(extra, sizeof extra, "%sCache-Control: no-store\r\n", cors);
        c->later_extra = strdup(extra);
        c->later_head = req->head;
        km_conn_timeouts(c, 1);
        return;
    }
    if (status == 405)
        snprintf(extra, sizeof extra, "%sAllow: %s\r\nCache-Control: no-store\r\n", cors,
                 allow);
    else
        snprintf(extra, sizeof extra, "%sCache-Control: no-store\r\n", cors);
    km_conn_json(c, req, status, extra, body);
}

/* Answers the request just parsed. Returns 1 when c is gone (upgraded). */
static int km_conn_dispatch(struct km_conn *c)
{
    struct km_req req = {0};
    char path[4096];
    const char *target = c->arena ? c->arena + c->url : "";

    req.method = http_method_str((enum http_method)c->parser.method);
    req.target = target;
    req.head = strcmp(req.method, "HEAD") == 0;
    req.http11 = c->parser.http_major > 1 ||
                 (c->parser.http_major == 1 && c->parser.http_minor >= 1);
    if (!c->keep_alive)
        c->closing = 1;
    if (c->error) {
        c->closing = 1;
        km_conn_detail(c, &req, c->error, NULL, km_status_text(c->error));
        return 0;
    }
    size_t pl = strcspn(target, "?#");
    long dl;
    req.query = target[pl] == '?' ? target + pl + 1 : "";
    if (target[0] == '/' && pl >= sizeof path) {
        c->closing = 1;
        km_conn_detail(c, &req, 414, NULL, "URI Too Long: the path is over 4095 bytes");
        return 0;
    }
    /* an encoded NUL is each route's to answer: /ws and the API see the
       path before it, static files decode the raw target again (404) */
    if (target[0] != '/' ||
        ((dl = km_pct_decode(target, pl, path, sizeof path, KM_PCT_PATH)) < 0 &&
         dl != KM_PCT_ENUL)) {
        c->closing = 1;
        km_conn_detail(c, &req, 400, NULL, "Bad request target");
        return 0;
    }
    req.path = path;

    if (strcmp(path, "/ws") == 0)
        return km_conn_upgrade(c, &req);
    if (c->parser.upgrade) {
        c->closing = 1;
        km_conn_detail(c, &req, 400, NULL, "Upgrade is only supported on /ws");
        return 0;
    }
    if (km_rest_owns(path)) {
        /* handlers get a C string: one cut short at an encoded NUL would
           name another resource (static files check the raw path) */
        if (dl == KM_PCT_ENUL) {
            km_conn_detail(c, &req, 400, NULL,
                           "Bad request target: %00 (a NUL byte) in an API path");
            return 0;
        }
        km_conn_rest(c, &req);
    } else {
        km_conn_static(c, &req);
    }
    return 0;
}

/* ---- http-parser callbacks ---- */

static int km_arena_add(struct km_conn *c, const char *at, size_t len)
{
    size_t limit = c->srv->max_request_bytes;

    if (c->arena_len + len + 1 > limit) {
        c->error = c->piece == KM_PIECE_URL ? 414 : 431;
        return -1;
    }
    if (c->arena_len + len + 1 > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 1024;
        while (cap < c->arena_len + len + 1)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        char *a = realloc(c->arena, cap);
        if (!a) {
            c->error = 503;
            return -1;
        }
        c->arena = a;
        c->arena_cap = cap;
    }
    memcpy(c->arena + c->arena_len, at, len);
    c->arena_len += len;
    c->arena[c->arena_len] = '\0';
    return 0;
}

/*
 * Appends a piece of kind k. A new kind starts a new string: the NUL that
 * km_arena_add always leaves after the previous one is kept by stepping
 * over it.
 */
static int km_arena_piece(struct km_conn *c, enum km_piece k, const char *at, size_t len)
{
    if (c->piece != k) {
        if (c->piece != KM_PIECE_NONE)
            c->arena_len++;
        if (k == KM_PIECE_URL) {
            c->url = c->arena_len;
        } else if (k == KM_PIECE_FIELD) {
            if (c->n_hdr == KM_HTTP_MAX_HEADERS) {
                c->error = 431;
                return -1;
            }
            c->hdr[c->n_hdr].name = c->arena_len;
            c->hdr[c->n_hdr].value = SIZE_MAX;
            c->n_hdr++;
        } else if (k == KM_PIECE_VALUE) {
            c->hdr[c->n_hdr - 1].value = c->arena_len;
        }
        c->piece = k;
        if (km_arena_add(c, "", 0) != 0) /* the string exists, even if empty */
            return -1;
    }
    return km_arena_add(c, at, len);
}

static struct km_conn *km_conn_of(http_parser *p)
{
    return p->data;
}

static int km_on_message_begin(http_parser *p)
{
    struct km_conn *c = km_conn_of(p);
    c->arena_len = 0;
    c->piece = KM_PIECE_NONE;
    c->url = 0;
    c->n_hdr = 0;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->error = 0;
    c->complete = 0;
    return 0;
}

static int km_on_url(http_parser *p, const char *at, size_t len)
{
    return km_arena_piece(km_conn_of(p), KM_PIECE_URL, at, len) ? 1 : 0;
}

static int km_on_header_field(http_parser *p, const char *at, size_t len)
{
    return km_arena_piece(km_conn_of(p), KM_PIECE_FIELD, at, len) ? 1 : 0;
}

static int km_on_header_value(http_parser *p, const char *at, size_t len)
{
    return km_arena_piece(km_conn_of(p), KM_PIECE_VALUE, at, len) ? 1 : 0;
}

static int km_on_headers_complete(http_parser *p)
{
    struct km_conn *c = km_conn_of(p);

    if (c->piece == KM_PIECE_NONE) /* no URL? http-parser never allows it */
        km_arena_piece(c, KM_PIECE_URL, "", 0);
    c->arena_len++; /* keep the last string's NUL */
    if (c->error)
        return -1; /* stop: the limit was hit */
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->srv->max_request_bytes) {
        c->error = 413;
        return -1;
    }
    /* curl and others wait a second for this before sending a body */
    const char *expect = km_conn_header(c, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && c->parser.content_length > 0)
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int km_on_body(http_parser *p, const char *at, size_t len)
{
    struct km_conn *c = km_conn_of(p);
    char *b;

    /* kept for plugin routes (POST /api/v1/alerts/read ...), bounded */
    if (c->body_len + len > c->srv->max_request_bytes) {
        c->error = 413;
        return 1;
    }
    if (!(b = realloc(c->body, c->body_len + len + 1))) {
        c->error = 503;
        return 1;
    }
    memcpy(b + c->body_len, at, len);
    c->body = b;
    c->body_len += len;
    b[c->body_len] = '\0';
    return 0;
}

static int km_on_message_complete(http_parser *p)
{
    struct km_conn *c = km_conn_of(p);
    c->complete = 1;
    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1); /* one request at a time, see top */
    return 0;
}

static const http_parser_settings km_parser_settings = {
    .on_message_begin = km_on_message_begin,
    .on_url = km_on_url,
    .on_header_field = km_on_header_field,
    .on_header_value = km_on_header_value,
    .on_headers_complete = km_on_headers_complete,
    .on_body = km_on_body,
    .on_message_complete = km_on_message_complete,
};

/* ---- connection life ---- */

/* Unlinks and frees c without touching the connection count or the socket
   (which must be gone or handed over). */
static void km_conn_release(struct km_conn *c)
{
    struct km_server *srv = c->srv;

    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->linger_ev)
        event_free(c->linger_ev);
    km_rest_pending_detach(c->pending); /* its answer, when it comes, is dropped */
    free(c->later_extra);
    free(c->arena);
    free(c->body);
    free(c);
}

static void km_conn_free(struct km_conn *c)
{
    if (c->rejecting)
        c->srv->n_rejecting--;
    else
        c->srv->n_conns--;
    km_conn_release(c);
}

static void km_conn_linger_cb(evutil_socket_t fd, short what, void *arg)
{
    km_conn_free(arg);
}

/* The last answer drained: shut the write side, read until EOF (see top). */
static void km_conn_finish(struct km_conn *c)
{
    struct timeval tv = {KM_HTTP_LINGER_S, 0};

    if (c->lingering)
        return;
    c->lingering = 1;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
    c->linger_ev = evtimer_new(bufferevent_get_base(c->bev), km_conn_linger_cb, c);
    if (!c->linger_ev) {
        km_conn_free(c);
        return;
    }
    evtimer_add(c->linger_ev, &tv);
}

static void km_conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct km_conn *c = arg;

    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return;
    if (c->pending)
        return; /* an earlier answer drained; the awaited one is not here yet */
    if (c->closing) {
        km_conn_finish(c);
        return;
    }
    /* answers drained: resume reading (and parse what waits) */
    if (!(bufferevent_get_enabled(bev) & EV_READ) || c->resume) {
        c->resume = 0;
        bufferevent_enable(bev, EV_READ);
        km_conn_read_cb(bev, c);
    }
}

static void km_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct km_conn *c = arg;

    /* a client that half-closed after its request still gets the answer a
       plugin gives later (then the connection ends) */
    if (c->pending && (what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        c->closing = 1;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    km_conn_free(c);
}

static void km_conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct km_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);

    if (c->lingering || c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (c->pending)
        return; /* one request at a time: the rest waits in `in` (bounded by
                   the read watermark) until the awaited answer is out */
    while (evbuffer_get_length(in) > 0) {
        if (evbuffer_get_length(out) > KM_HTTP_OUT_MAX) {
            bufferevent_disable(bev, EV_READ); /* resumed by the write callback */
            return;
        }
        size_t n = evbuffer_get_length(in);
        char *data = (char *)evbuffer_pullup(in, (ev_ssize_t)n);
        if (!data)
            break;
        size_t used = http_parser_execute(&c->parser, &km_parser_settings, data, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        evbuffer_drain(in, used);
        if (c->complete) {
            c->complete = 0;
            if (km_conn_dispatch(c))
                return; /* upgraded: c is gone */
            if (c->pending)
                return; /* answered later; km_conn_later resumes */
            if (c->closing)
                break;
            http_parser_pause(&c->parser, 0);
            continue;
        }
        if (e != HPE_OK) {
            struct km_req req = {.method = "GET", .target = "", .query = ""};
            int status = c->error ? c->error : 400;
            char detail[160];
            snprintf(detail, sizeof detail, "%s: %s", km_status_text(status),
                     c->error ? "request over [http] max_request_bytes or header limit"
                              : http_errno_description(e));
            if (e == HPE_HEADER_OVERFLOW)
                status = 431;
            c->closing = 1;
            km_conn_detail(c, &req, status, NULL, detail);
            break;
        }
        if (used < n)
            break; /* cannot happen without an error; be safe */
    }
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        if (evbuffer_get_length(out) == 0)
            km_conn_finish(c);
    }
}

static void km_peer_name(const struct sockaddr *sa, socklen_t len, char *out,
                         size_t outlen)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];

    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static void km_server_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
                                struct sockaddr *sa, int socklen, void *arg)
{
    struct km_server *srv = arg;
    struct km_conn *c;
    struct timeval tv = {KM_HTTP_TIMEOUT_S, 0};
    int one = 1;
    int reject = srv->n_conns >= srv->max_connections;

    if (reject && srv->n_rejecting >= KM_HTTP_MAX_REJECTS) {
        close(fd); /* under a flood even the 503 is too much */
        return;
    }
    if (!(c = calloc(1, sizeof *c))) {
        close(fd);
        return;
    }
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->core->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        close(fd);
        free(c);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    km_peer_name(sa, (socklen_t)socklen, c->peer, sizeof c->peer);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    bufferevent_setcb(c->bev, km_conn_read_cb, km_conn_write_cb, km_conn_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setwatermark(c->bev, EV_READ, 0, srv->max_request_bytes + 16 * 1024);
    if (reject) {
        c->rejecting = 1;
        srv->n_rejecting++;
        c->closing = 1;
        km_log(KM_LOG_WARNING,
               "%s: %zu connections open, [http] max_connections reached: 503", c->peer,
               srv->n_conns);
        km_conn_detail(c, NULL, 503, "Retry-After: 5\r\n",
                       "too many connections ([http] max_connections)");
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    srv->n_conns++;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void km_server_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_server *srv = arg;
    evconnlistener_enable(srv->listener);
}

static void km_server_accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct km_server *srv = arg;
    struct timeval tv = {1, 0};
    int err = EVUTIL_SOCKET_ERROR();

    /* EMFILE and friends: pause accepting for a second instead of spinning */
    km_log(KM_LOG_WARNING, "accept: %s; pausing for 1 s",
           evutil_socket_error_to_string(err));
    evconnlistener_disable(l);
    evtimer_add(srv->resume_ev, &tv);
}

/* ---- binding ---- */

static int km_server_bind(struct km_server *srv, const char *host, int port, char *err,
                          size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[16];
    int fd = -1, e = 0, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof portstr, "%d", port);
    if ((rc = getaddrinfo(host, portstr, &hints, &res)) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s; set [http] bind", host, port,
                 gai_strerror(rc));
        return -1;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s; set [http] %s", host, port,
                 strerror(e), e == EADDRINUSE || e == EACCES ? "port" : "bind");
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char serv[NI_MAXSERV];
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    getnameinfo((struct sockaddr *)&ss, sl, srv->addr, sizeof srv->addr, serv,
                sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
    srv->port = atoi(serv);
    srv->v6 = ss.ss_family == AF_INET6;
    srv->listener =
        evconnlistener_new(srv->core->base, km_server_accept_cb, srv,
                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!srv->listener) {
        close(fd);
        snprintf(err, errlen, "cannot listen on %s:%d: out of memory", host, port);
        return -1;
    }
    evconnlistener_set_error_cb(srv->listener, km_server_accept_error_cb);
    return 0;
}

/* ---- public ---- */

struct km_server *km_server_start(struct km_core *core, char *err, size_t errlen)
{
    const struct km_config *cfg = core->cfg;
    struct km_server *srv = calloc(1, sizeof *srv);
    const char *bind_addr = cfg && cfg->bind && *cfg->bind ? cfg->bind : "127.0.0.1";
    char real[PATH_MAX];

    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->core = core;
    srv->web_root =
        strdup(cfg && cfg->web_root && *cfg->web_root ? cfg->web_root : KM_WEB_ROOT);
    if (cfg && cfg->vendor_root && *cfg->vendor_root)
        srv->vendor_root = strdup(cfg->vendor_root);
    srv->resume_ev = evtimer_new(core->base, km_server_resume_cb, srv);
    if (!srv->web_root || !srv->resume_ev) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    km_server_apply_live(srv, cfg);
    srv->max_connections =
        cfg && cfg->max_connections > 0 ? (size_t)cfg->max_connections : 1024;
    srv->max_request_bytes =
        cfg && cfg->max_request_bytes ? cfg->max_request_bytes : 64 * 1024;
    srv->ws_enabled = cfg ? cfg->enabled : 1;
    if (km_server_bind(srv, bind_addr, cfg ? cfg->port : 8080, err, errlen) != 0)
        goto fail;
    struct km_ws_limits lim = km_server_ws_limits(cfg);
    /* [websocket] enabled = false: no hub at all (/ws answers 404) */
    if (srv->ws_enabled && !(srv->ws = km_ws_new(core, &lim))) {
        snprintf(err, errlen, "cannot start the WebSocket hub: out of memory");
        goto fail;
    }
    if (!realpath(srv->web_root, real))
        km_log(KM_LOG_WARNING, "[http] web_root %s: %s; static files will answer 404",
               srv->web_root, strerror(errno));
    km_log(KM_LOG_NOTICE,
           srv->v6 ? "listening on http://[%s]:%d" : "listening on http://%s:%d",
           srv->addr, srv->port);
    return srv;
fail:
    km_server_free(srv);
    return NULL;
}

int km_server_port(const struct km_server *srv)
{
    return srv->port;
}

struct km_ws *km_server_ws(struct km_server *srv)
{
    return srv->ws;
}

size_t km_server_connections(const struct km_server *srv)
{
    return srv->n_conns;
}

void km_server_reload(struct km_server *srv, const struct km_config *cfg)
{
    km_server_apply_live(srv, cfg);
    if (srv->ws && cfg) {
        /* only the interval is live; the other limits need a restart (main.c
           says so), so the hub keeps the ones it started with */
        struct km_ws_limits lim = km_ws_get_limits(srv->ws);
        lim.update_interval = cfg->update_interval;
        km_ws_set_limits(srv->ws, &lim);
    }
    km_log(KM_LOG_INFO, "http: reloaded allowed_origins, auth_token, update_interval");
}

void km_server_free(struct km_server *srv)
{
    if (!srv)
        return;
    if (srv->listener)
        evconnlistener_free(srv->listener);
    km_ws_free(srv->ws); /* 1001 to every client; each one's gone() runs */
    srv->ws = NULL;
    while (srv->conns)
        km_conn_free(srv->conns);
    if (srv->resume_ev)
        event_free(srv->resume_ev);
    km_server_free_origins(srv);
    free(srv->auth_token);
    free(srv->web_root);
    free(srv->vendor_root);
    free(srv);
}
