/*
 * server_conn.c - the HTTP listener and its connections (see
 * server_conn.h).
 *
 * Requests on a connection are handled one at a time: on_message_complete
 * pauses the parser, the handler answers (synchronously: REST reads the
 * bus, static files go out with evbuffer_add_file), and parsing resumes,
 * so pipelined requests are answered in order. A plugin's route may
 * answer later (KM_REST_LATER): the connection then keeps the handle
 * (c->pending), parses nothing more (what arrives waits in the input
 * buffer, bounded by the read watermark), has no read timeout (the core's
 * deadline answers 504), and resumes once the answer has drained; a
 * client leaving first just detaches the handle. While more than
 * KM_HTTP_OUT_MAX bytes of answers are unsent, reading stops, so a client
 * that pipelines and never reads costs at most that. A socket handed over
 * (the /ws upgrade) stays counted against max_connections until its new
 * owner reports it gone.
 *
 * An answer that ends the connection (errors, Connection: close, 503) is
 * followed by a "lingering close": once the answer has drained, the write
 * side is shut and input is read and dropped until the peer closes or
 * KM_HTTP_LINGER_S passes. Closing with unread input would send a RST that
 * can destroy the answer before the client reads it.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>

#include "bus.h"
#include "log.h"
#include "rest.h"
#include "server_conn.h"
#include "http_list.h"

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

/* One HTTP connection (before any hand-over). */
struct km_conn {
    struct km_listener *l;   /* owner */
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
    struct event *deadline_ev;              /* a request begun must be whole by then */
    struct km_conn *next;                   /* listener's list */
    struct km_conn *prev;                   /* listener's list */
};

struct km_listener {
    struct event_base *base;         /* the loop (borrowed) */
    struct evconnlistener *listener; /* the listening socket */
    struct event *resume_ev;         /* re-enables accepting after EMFILE */
    km_conn_handler handler;         /* answers each request */
    void *handler_arg;               /* its argument (borrowed) */
    struct km_conn *conns;           /* HTTP connections */
    size_t n_conns;                  /* HTTP + handed-over connections counted */
    size_t n_rejecting;              /* 503 connections in flight */
    char addr[64];                   /* bound address, numeric */
    int port;                        /* bound port */
    int v6;                          /* addr is IPv6 */
    size_t max_connections;          /* [http] max_connections */
    size_t max_request_bytes;        /* [http] max_request_bytes */
    double request_timeout;          /* [http] request_timeout: a request's first
                                        byte to its last, seconds; <= 0: none */
};

static void km_conn_free(struct km_conn *c);
static void km_conn_release(struct km_conn *c);
static void km_conn_finish(struct km_conn *c);
static void km_conn_read_cb(struct bufferevent *bev, void *arg);

/* ---- header values ---- */

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

void km_header_date(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int km_header_has_token(const char *value, const char *token)
{
    return value && km_list_has(value, strlen(value), token);
}

/* ---- answering ---- */

const char *km_conn_header(const struct km_conn *c, const char *name)
{
    for (size_t i = 0; i < c->n_hdr; i++) {
        if (strcasecmp(c->arena + c->hdr[i].name, name) == 0)
            return c->hdr[i].value == SIZE_MAX ? "" : c->arena + c->hdr[i].value;
    }
    return NULL;
}

void km_conn_end(struct km_conn *c)
{
    c->closing = 1;
}

void km_conn_send(struct km_conn *c, const struct km_req *req, int status,
                  const char *ctype, const char *extra, const void *body, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char date[64];

    km_header_date(time(NULL), date, sizeof date);
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

void km_conn_json(struct km_conn *c, const struct km_req *req, int status,
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

void km_conn_detail(struct km_conn *c, const struct km_req *req, int status,
                    const char *extra, const char *detail)
{
    km_conn_json(c, req, status, extra, km_rest_detail(detail));
}

void km_conn_send_file(struct km_conn *c, int fd, size_t len)
{
    /* sendfile/mmap by libevent; it owns fd from here */
    if (evbuffer_add_file(bufferevent_get_output(c->bev), fd, 0, (ev_off_t)len) != 0) {
        close(fd);
        c->closing = 1; /* headers promised a body we cannot send */
    }
}

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

struct km_rest_pending **km_conn_prepare_later(struct km_conn *c,
                                               struct km_rest_waiter *waiter)
{
    waiter->answer = km_conn_later;
    waiter->arg = c;
    return &c->pending;
}

void km_conn_wait_later(struct km_conn *c, const struct km_req *req, const char *extra)
{
    /* answered by km_conn_later; until then nothing more is parsed */
    c->later_extra = extra ? strdup(extra) : NULL;
    c->later_head = req->head;
    km_conn_timeouts(c, 1);
}

struct bufferevent *km_conn_hand_over(struct km_conn *c, const char *head, char *peer,
                                      size_t peerlen)
{
    struct bufferevent *bev = c->bev;

    evbuffer_add(bufferevent_get_output(bev), head, strlen(head));
    /* the conn goes, the count stays until km_listener_gone */
    snprintf(peer, peerlen, "%s", c->peer);
    c->bev = NULL;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    km_conn_release(c);
    return bev;
}

/* Hands the request just parsed to the handler, unless the connection
   refuses it. Returns 1 when c is gone (handed over). */
static int km_conn_dispatch(struct km_conn *c)
{
    struct km_req req = {0};

    req.method = http_method_str((enum http_method)c->parser.method);
    req.target = c->arena ? c->arena + c->url : "";
    req.query = "";
    req.body = c->body ? c->body : "";
    req.body_len = c->body_len;
    req.head = strcmp(req.method, "HEAD") == 0;
    req.http11 = c->parser.http_major > 1 ||
                 (c->parser.http_major == 1 && c->parser.http_minor >= 1);
    req.upgrade = c->parser.upgrade;
    if (!c->keep_alive)
        c->closing = 1;
    if (c->error) {
        c->closing = 1;
        km_conn_detail(c, &req, c->error, NULL, km_status_text(c->error));
        return 0;
    }
    return c->l->handler(c->l->handler_arg, c, &req);
}

/* ---- http-parser callbacks ---- */

static int km_arena_add(struct km_conn *c, const char *at, size_t len)
{
    size_t limit = c->l->max_request_bytes;

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

/* A request that is not whole request_timeout after its first byte (a
   slowloris: one header line every few seconds never trips the read
   timeout, which each byte restarts): 408, and the connection closes. */
static void km_conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_conn *c = arg;
    struct km_req req = {.method = "GET", .target = "", .query = ""};
    char detail[96];

    if (c->closing || c->lingering)
        return;
    km_log(KM_LOG_INFO, "%s: request not whole within %g s ([http] request_timeout): 408",
           c->peer, c->l->request_timeout);
    snprintf(detail, sizeof detail, "request not whole within %g s",
             c->l->request_timeout);
    c->closing = 1;
    http_parser_pause(&c->parser, 1);
    km_conn_detail(c, &req, 408, NULL, detail);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        km_conn_finish(c);
}

static void km_conn_deadline(struct km_conn *c, int arm)
{
    double t = c->l->request_timeout;
    if (!arm || t <= 0) {
        if (c->deadline_ev)
            evtimer_del(c->deadline_ev);
        return;
    }
    if (!c->deadline_ev &&
        !(c->deadline_ev = evtimer_new(c->l->base, km_conn_deadline_cb, c)))
        return; /* out of memory: the read timeout still bounds silence */
    struct timeval tv = {(time_t)t, (suseconds_t)((t - (time_t)t) * 1e6)};
    evtimer_add(c->deadline_ev, &tv);
}

static int km_on_message_begin(http_parser *p)
{
    struct km_conn *c = km_conn_of(p);
    km_conn_deadline(c, 1);
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
    /* RFC 7230 3.2.4: whitespace between a field name and its colon is a 400
       (http-parser takes "Transfer-Encoding :chunked" as chunking, which a
       proxy in front may not: request smuggling) */
    for (size_t i = 0; i < c->n_hdr; i++) {
        const char *name = c->arena + c->hdr[i].name;
        size_t n = strlen(name);
        if (n && (name[n - 1] == ' ' || name[n - 1] == '\t')) {
            c->error = 400;
            return -1;
        }
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > c->l->max_request_bytes) {
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
    if (c->body_len + len > c->l->max_request_bytes) {
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
    km_conn_deadline(c, 0);
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
    struct km_listener *l = c->l;

    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->bev)
        bufferevent_free(c->bev);
    if (c->linger_ev)
        event_free(c->linger_ev);
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    km_rest_pending_detach(c->pending); /* its answer, when it comes, is dropped */
    free(c->later_extra);
    free(c->arena);
    free(c->body);
    free(c);
}

static void km_conn_free(struct km_conn *c)
{
    if (c->rejecting)
        c->l->n_rejecting--;
    else
        c->l->n_conns--;
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
                     c->error == 400 ? "whitespace between a header name and its colon"
                     : c->error      ? "request over [http] max_request_bytes or header limit"
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

/* Serves bev (stolen) as a new connection from peer; reject: past
   max_connections (a 503, then closed). */
static void km_conn_start(struct km_listener *l, struct bufferevent *bev,
                          const char *peer, int reject)
{
    struct km_conn *c;
    struct timeval tv = {KM_HTTP_TIMEOUT_S, 0};

    if (!(c = calloc(1, sizeof *c))) {
        bufferevent_free(bev);
        return;
    }
    c->l = l;
    c->bev = bev;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    bufferevent_setcb(c->bev, km_conn_read_cb, km_conn_write_cb, km_conn_event_cb, c);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setwatermark(c->bev, EV_READ, 0, l->max_request_bytes + 16 * 1024);
    if (reject) {
        c->rejecting = 1;
        l->n_rejecting++;
        c->closing = 1;
        km_log(KM_LOG_WARNING,
               "%s: %zu connections open, [http] max_connections reached: 503", c->peer,
               l->n_conns);
        km_conn_detail(c, NULL, 503, "Retry-After: 5\r\n",
                       "too many connections ([http] max_connections)");
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        return;
    }
    l->n_conns++;
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void km_listener_adopt(struct km_listener *l, struct bufferevent *bev, const char *peer)
{
    km_conn_start(l, bev, peer, l->n_conns >= l->max_connections);
}

static void km_listener_accept_cb(struct evconnlistener *evl, evutil_socket_t fd,
                                  struct sockaddr *sa, int socklen, void *arg)
{
    struct km_listener *l = arg;
    struct bufferevent *bev;
    char peer[64];
    int one = 1;
    int reject = l->n_conns >= l->max_connections;

    if (reject && l->n_rejecting >= KM_HTTP_MAX_REJECTS) {
        close(fd); /* under a flood even the 503 is too much */
        return;
    }
    bev = bufferevent_socket_new(l->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    km_peer_name(sa, (socklen_t)socklen, peer, sizeof peer);
    km_conn_start(l, bev, peer, reject);
}

static void km_listener_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_listener *l = arg;
    evconnlistener_enable(l->listener);
}

static void km_listener_accept_error_cb(struct evconnlistener *evl, void *arg)
{
    struct km_listener *l = arg;
    struct timeval tv = {1, 0};
    int err = EVUTIL_SOCKET_ERROR();

    /* EMFILE and friends: pause accepting for a second instead of spinning */
    km_log(KM_LOG_WARNING, "accept: %s; pausing for 1 s",
           evutil_socket_error_to_string(err));
    evconnlistener_disable(evl);
    evtimer_add(l->resume_ev, &tv);
}

/* ---- binding ---- */

static int km_listener_bind(struct km_listener *l, const char *host, int port, char *err,
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
    getnameinfo((struct sockaddr *)&ss, sl, l->addr, sizeof l->addr, serv, sizeof serv,
                NI_NUMERICHOST | NI_NUMERICSERV);
    l->port = atoi(serv);
    l->v6 = ss.ss_family == AF_INET6;
    l->listener =
        evconnlistener_new(l->base, km_listener_accept_cb, l,
                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!l->listener) {
        close(fd);
        snprintf(err, errlen, "cannot listen on %s:%d: out of memory", host, port);
        return -1;
    }
    evconnlistener_set_error_cb(l->listener, km_listener_accept_error_cb);
    return 0;
}

/* ---- the listener ---- */

void km_listener_set_request_timeout(struct km_listener *l, double seconds)
{
    l->request_timeout = seconds;
}

struct km_listener *km_listener_new(struct event_base *base, const char *host, int port,
                                    size_t max_connections, size_t max_request_bytes,
                                    km_conn_handler handler, void *arg, char *err,
                                    size_t errlen)
{
    struct km_listener *l = calloc(1, sizeof *l);

    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->base = base;
    l->handler = handler;
    l->handler_arg = arg;
    l->max_connections = max_connections;
    l->max_request_bytes = max_request_bytes;
    if (!(l->resume_ev = evtimer_new(base, km_listener_resume_cb, l))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (km_listener_bind(l, host, port, err, errlen) != 0)
        goto fail;
    return l;
fail:
    km_listener_free(l);
    return NULL;
}

void km_listener_free(struct km_listener *l)
{
    if (!l)
        return;
    if (l->listener)
        evconnlistener_free(l->listener);
    while (l->conns)
        km_conn_free(l->conns);
    if (l->resume_ev)
        event_free(l->resume_ev);
    free(l);
}

int km_listener_port(const struct km_listener *l)
{
    return l->port;
}

const char *km_listener_url(const struct km_listener *l, char *buf, size_t len)
{
    snprintf(buf, len, l->v6 ? "http://[%s]:%d" : "http://%s:%d", l->addr, l->port);
    return buf;
}

size_t km_listener_connections(const struct km_listener *l)
{
    return l->n_conns;
}

void km_listener_gone(struct km_listener *l)
{
    l->n_conns--;
}
