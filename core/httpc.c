/*
 * httpc.c - a small non-blocking HTTP/1.1 client on libevent bufferevents.
 *
 * Life of a request (one connection per request, "Connection: close"):
 *
 *   km_httpc_request   checks the url, builds the request bytes, arms the
 *        |             timer; a numeric host or a unix socket is connected
 *        |             at once, a host name goes to evdns first
 *   km_httpc_connect_to  one non-blocking connect() per address; when it
 *        |             fails, the next resolved address is tried
 *   km_httpc_on_read   bytes go through http_parser as they arrive; the body
 *        |             is gathered (at most max_body) or handed to on_data
 *   km_httpc_done      closes the connection at once and activates the timer
 *        |             event, so that the callback always runs from the loop
 *   km_httpc_on_timer  and never from inside km_httpc_request; it delivers
 *                      the result and frees the request.
 *
 * The one timer event of a request serves twice: as the timeout while the
 * request runs, and as the deferred delivery once it is over.
 *
 * Name resolution never blocks: each event_base gets its own evdns_base,
 * made on its first request naming a host (reading /etc/resolv.conf and
 * /etc/hosts once, then) and freed by km_httpc_shutdown(base).
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <http_parser.h>

#include "httpc.h"
#include "log.h"

#ifndef PACKAGE_VERSION /* configure passes it with -D (see DEFS) */
#error "PACKAGE_VERSION is not defined: build through configure"
#endif

#define KM_HTTPC_TIMEOUT_MS 10000       /* timeout_ms 0 means this */
#define KM_HTTPC_MAX_BODY   (8u << 20)  /* max_body 0 means this (not streaming) */
#define KM_HTTPC_MAX_HEAD   (64u << 10) /* status line + header bytes we accept */
#define KM_HTTPC_MAX_URL    8192        /* longest url we accept */
#define KM_HTTPC_BODY_MIN   4096        /* first body allocation */
#define KM_HTTPC_FIELD_MAX  16          /* header names we need are shorter */

struct km_httpc_stats km_httpc_stats;

/* Where a request is. Only moves forward. */
enum km_httpc_state {
    KM_HTTPC_RESOLVING,  /* waiting for evdns */
    KM_HTTPC_CONNECTING, /* a connect() is under way */
    KM_HTTPC_EXCHANGING, /* connected: request going out, response coming in */
    KM_HTTPC_DONE,       /* result known, connection closed; the timer delivers */
};

/* One request, from km_httpc_request until its callback returned or it
   was cancelled. */
struct km_httpc_req {
    struct km_httpc_req *prev, *next; /* live list, so km_httpc_shutdown finds us */
    int linked;                       /* on the live list (counted in stats.live) */
    struct event_base *base;          /* the loop everything runs on */
    enum km_httpc_state state;        /* see enum km_httpc_state */
    km_http_cb cb;                    /* the final callback */
    void *arg;                        /* for cb and on_data */
    int (*on_data)(const char *, size_t, void *); /* streaming sink, or NULL */
    unsigned timeout_ms; /* whole request, or idle time when streaming */
    size_t max_body;     /* body bytes allowed; 0: no limit (streaming) */
    int head_only;       /* HEAD: the response has no body */
    struct event *timer; /* timeout, then deferred delivery */

    char *host;                                /* host from the url, without [] */
    char *unix_path;                           /* unix socket to connect to, or NULL */
    char port[6];                              /* port as text, for evdns */
    struct sockaddr_storage sa;                /* numeric host or unix socket address */
    socklen_t salen;                           /* 0 when the host needs resolving */
    struct evdns_getaddrinfo_request *dns_req; /* pending lookup, to cancel */
    struct evutil_addrinfo *addrs;             /* resolved addresses (owned) */
    struct evutil_addrinfo *next_addr;         /* next one to try when a connect fails */
    struct bufferevent *bev;                   /* the connection, once one is attempted */
    struct evbuffer *wire; /* request bytes, resent to each address tried */

    http_parser parser;             /* response parser; data points here */
    size_t head_bytes;              /* status + header bytes so far */
    char field[KM_HTTPC_FIELD_MAX]; /* current header name (truncated) */
    size_t field_len;               /* its real length */
    int in_value;                   /* last header piece was a value */
    int ct_match;                   /* the current header is Content-Type */
    int headers_done;               /* headers over: later ones are trailers */
    int interim;                    /* a 1xx response is being skipped */
    char *ct;                       /* Content-Type value, NUL-terminated */
    size_t ct_len, ct_cap;          /* its length and allocation */
    int has_ct;                     /* ct holds this response's Content-Type */
    char *body;                     /* gathered body (not streaming) */
    size_t body_len, body_cap;      /* its length and allocation */
    size_t received;                /* body bytes seen, streamed or kept */
    int status;                     /* status code once headers are in */
    int complete;                   /* the whole response was read */

    int busy;        /* inside http_parser (on_data may run) */
    int cancelled;   /* cancelled while busy: free on the way out */
    int delivering;  /* the final callback is running */
    int failed;      /* error holds why the request failed */
    char error[256]; /* the error text handed to cb */
};

/* One resolver per event_base; a process rarely has more than one base. */
struct km_httpc_dns {
    struct event_base *base;   /* the loop it serves */
    struct evdns_base *dns;    /* its resolver */
    int owned;                 /* made here, so freed by km_httpc_shutdown */
    struct km_httpc_dns *next; /* next base's */
};

static struct km_httpc_req *km_httpc_live;      /* every request not yet freed */
static struct km_httpc_dns *km_httpc_resolvers; /* per-base resolvers */

static void km_httpc_on_timer(evutil_socket_t fd, short what, void *arg);
static void km_httpc_on_read(struct bufferevent *bev, void *arg);
static void km_httpc_on_event(struct bufferevent *bev, short what, void *arg);

/* ---- small helpers ------------------------------------------------------ */

static void km_httpc_link(struct km_httpc_req *r)
{
    r->next = km_httpc_live;
    if (km_httpc_live)
        km_httpc_live->prev = r;
    km_httpc_live = r;
    r->linked = 1;
    km_httpc_stats.started++;
    km_httpc_stats.live++;
}

static void km_httpc_unlink(struct km_httpc_req *r)
{
    if (!r->linked)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        km_httpc_live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->linked = 0;
    km_httpc_stats.live--;
}

static void km_httpc_arm_timer(struct km_httpc_req *r)
{
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};

    evtimer_add(r->timer, &tv);
}

/* Records why the request fails; the first reason wins, later ones are
   consequences of it. */
static void km_httpc_vset_error(struct km_httpc_req *r, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void km_httpc_vset_error(struct km_httpc_req *r, const char *fmt, va_list ap)
{
    if (r->failed)
        return;
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    r->failed = 1;
}

static void km_httpc_set_error(struct km_httpc_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void km_httpc_set_error(struct km_httpc_req *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    km_httpc_vset_error(r, fmt, ap);
    va_end(ap);
}

/* strerror, lower-cased to read well after "cannot ...: " and alike. */
static void km_httpc_errno_text(int e, char *buf, size_t len)
{
    if (e == ENOENT)
        snprintf(buf, len, "no such file");
    else if (e == 0)
        snprintf(buf, len, "connection failed");
    else
        snprintf(buf, len, "%s", strerror(e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
}

/* Drops the connection and any lookup; the response state stays. */
static void km_httpc_disconnect(struct km_httpc_req *r)
{
    if (r->dns_req) {
        struct evdns_getaddrinfo_request *q = r->dns_req;

        /* cancel calls km_httpc_on_resolved with EVUTIL_EAI_CANCEL at once */
        r->dns_req = NULL;
        evdns_getaddrinfo_cancel(q);
    }
    if (r->bev) {
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    if (r->addrs) {
        evutil_freeaddrinfo(r->addrs);
        r->addrs = r->next_addr = NULL;
    }
    if (r->wire) {
        evbuffer_free(r->wire);
        r->wire = NULL;
    }
}

static void km_httpc_free(struct km_httpc_req *r)
{
    km_httpc_unlink(r);
    km_httpc_disconnect(r);
    if (r->timer)
        event_free(r->timer);
    free(r->host);
    free(r->unix_path);
    free(r->ct);
    free(r->body);
    free(r);
}

/*
 * The request is over (r->failed says how): release the connection now, so
 * that fds do not wait for the loop, and have the timer deliver the result.
 * Going through the loop is what keeps the callback out of
 * km_httpc_request and out of the middle of our own libevent callbacks.
 */
static void km_httpc_done(struct km_httpc_req *r)
{
    if (r->state == KM_HTTPC_DONE)
        return;
    r->state = KM_HTTPC_DONE;
    km_httpc_disconnect(r);
    event_del(r->timer);
    event_active(r->timer, EV_TIMEOUT, 1);
}

static void km_httpc_fail(struct km_httpc_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void km_httpc_fail(struct km_httpc_req *r, const char *fmt, ...)
{
    va_list ap;

    if (r->state == KM_HTTPC_DONE)
        return;
    va_start(ap, fmt);
    km_httpc_vset_error(r, fmt, ap);
    va_end(ap);
    km_httpc_done(r);
}

/* A socket error: the unix socket path tells the operator which one. */
static void km_httpc_fail_errno(struct km_httpc_req *r, int e)
{
    char what[128];

    km_httpc_errno_text(e, what, sizeof what);
    if (r->unix_path)
        km_httpc_fail(r, "%s (unix socket %s)", what, r->unix_path);
    else
        km_httpc_fail(r, "%s", what);
}

/* Runs the callback and frees the request. */
static void km_httpc_deliver(struct km_httpc_req *r)
{
    struct km_http_response resp = {0};

    resp.status = r->status;
    resp.error = r->failed ? r->error : NULL;
    resp.content_type = r->has_ct ? r->ct : NULL;
    resp.body = "";
    if (!r->failed && r->body) {
        r->body[r->body_len] = '\0'; /* room kept by km_httpc_keep */
        resp.body = r->body;
        resp.body_len = r->body_len;
    }
    /* Off the live list first: km_httpc_shutdown from inside cb must not
       find it, and km_httpc_cancel on it is a no-op (delivering). */
    km_httpc_unlink(r);
    r->delivering = 1;
    km_httpc_stats.finished++;
    r->cb(&resp, r->arg);
    km_httpc_free(r);
}

static void km_httpc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct km_httpc_req *r = arg;

    if (r->state == KM_HTTPC_DONE)
        km_httpc_deliver(r);
    else
        km_httpc_fail(r, "timed out after %u ms", r->timeout_ms); /* re-activates us */
}

/* ---- response parsing (http_parser callbacks) --------------------------- */

/* Counts status and header bytes, so a server cannot make us hold more. */
static int km_httpc_count_head(struct km_httpc_req *r, size_t len)
{
    r->head_bytes += len;
    if (r->head_bytes <= KM_HTTPC_MAX_HEAD)
        return 0;
    km_httpc_set_error(r, "bad response: headers larger than %u bytes",
                       KM_HTTPC_MAX_HEAD);
    return 1;
}

static int km_httpc_on_message_begin(http_parser *p)
{
    struct km_httpc_req *r = p->data;

    /* a new response after a skipped 1xx: nothing of that one carries over */
    r->has_ct = 0;
    r->ct_len = 0;
    r->in_value = 0;
    r->field_len = 0;
    r->headers_done = 0;
    return 0;
}

static int km_httpc_on_status(http_parser *p, const char *at, size_t len)
{
    return km_httpc_count_head(p->data, len);
}

static int km_httpc_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct km_httpc_req *r = p->data;
    size_t room;

    if (km_httpc_count_head(r, len))
        return 1;
    if (r->in_value) { /* a value ended: this is a new name */
        r->in_value = 0;
        r->field_len = 0;
    }
    /* names arrive in pieces; keep what fits, count the rest */
    room = r->field_len < sizeof r->field ? sizeof r->field - r->field_len : 0;
    if (room)
        memcpy(r->field + r->field_len, at, len < room ? len : room);
    r->field_len += len;
    return 0;
}

/* Appends to the Content-Type value; bounded by km_httpc_count_head. */
static int km_httpc_keep_ct(struct km_httpc_req *r, const char *at, size_t len)
{
    if (r->ct_len + len + 1 > r->ct_cap) {
        size_t cap = (r->ct_len + len + 1) * 2;
        char *ct = realloc(r->ct, cap);

        if (!ct) {
            km_httpc_set_error(r, "out of memory");
            return 1;
        }
        r->ct = ct;
        r->ct_cap = cap;
    }
    memcpy(r->ct + r->ct_len, at, len);
    r->ct_len += len;
    r->ct[r->ct_len] = '\0';
    return 0;
}

static int km_httpc_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct km_httpc_req *r = p->data;

    if (km_httpc_count_head(r, len))
        return 1;
    if (!r->in_value) { /* first piece of this value */
        r->in_value = 1;
        r->ct_match = !r->headers_done && r->field_len == 12 &&
                      strncasecmp(r->field, "content-type", 12) == 0;
        if (r->ct_match) { /* a repeated header: the last one wins */
            r->ct_len = 0;
            if (km_httpc_keep_ct(r, "", 0))
                return 1;
            r->has_ct = 1;
        }
    }
    return r->ct_match ? km_httpc_keep_ct(r, at, len) : 0;
}

static int km_httpc_on_headers_complete(http_parser *p)
{
    struct km_httpc_req *r = p->data;

    r->status = p->status_code;
    r->headers_done = 1;
    r->in_value = 0;
    r->field_len = 0;
    if (r->status >= 100 && r->status < 200 && r->status != 101) {
        r->interim = 1; /* "100 Continue" and alike: the real one follows */
        return 0;
    }
    if (r->head_only)
        return 1; /* tells http_parser that no body follows */
    /* refuse an announced oversize body before reading any of it */
    if (r->max_body && (p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body) {
        km_httpc_set_error(r, "response body larger than %zu bytes", r->max_body);
        return -1;
    }
    return 0;
}

/* Appends to the gathered body, growing by doubling up to max_body + 1. */
static int km_httpc_keep(struct km_httpc_req *r, const char *at, size_t len)
{
    size_t need = r->body_len + len + 1; /* + 1: the NUL for the callback */

    if (need > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : KM_HTTPC_BODY_MIN;
        char *body;

        while (cap < need)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1; /* need fits: km_httpc_on_body checked */
        body = realloc(r->body, cap);
        if (!body) {
            km_httpc_set_error(r, "out of memory");
            return 1;
        }
        r->body = body;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int km_httpc_on_body(http_parser *p, const char *at, size_t len)
{
    struct km_httpc_req *r = p->data;

    if (r->max_body && len > r->max_body - r->received) {
        km_httpc_set_error(r, "response body larger than %zu bytes", r->max_body);
        return 1;
    }
    r->received += len;
    if (!r->on_data)
        return km_httpc_keep(r, at, len);
    if (r->on_data(at, len, r->arg) != 0) {
        if (!r->cancelled)
            km_httpc_set_error(r, "stopped by caller");
        return 1;
    }
    return r->cancelled; /* cancelled from on_data: stop parsing now */
}

static int km_httpc_on_message_complete(http_parser *p)
{
    struct km_httpc_req *r = p->data;

    if (r->interim) {
        r->interim = 0;
        return 0;
    }
    r->complete = 1;
    /* anything after the response is not ours to parse */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings km_httpc_parser_settings = {
    .on_message_begin = km_httpc_on_message_begin,
    .on_status = km_httpc_on_status,
    .on_header_field = km_httpc_on_header_field,
    .on_header_value = km_httpc_on_header_value,
    .on_headers_complete = km_httpc_on_headers_complete,
    .on_body = km_httpc_on_body,
    .on_message_complete = km_httpc_on_message_complete,
};

/*
 * Acts on what http_parser_execute left: ends the request when the
 * response is complete or broken. Returns 1 when it ended it.
 */
static int km_httpc_settle(struct km_httpc_req *r)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);

    if (r->failed || r->complete) {
        km_httpc_done(r);
        return 1;
    }
    if (e == HPE_INVALID_EOF_STATE) {
        km_httpc_fail(r, "connection closed before the response was complete");
        return 1;
    }
    if (e != HPE_OK) {
        km_httpc_fail(r, "bad response: %s", http_errno_description(e));
        return 1;
    }
    return 0;
}

/* ---- connection --------------------------------------------------------- */

static void km_httpc_connected(struct km_httpc_req *r)
{
    r->state = KM_HTTPC_EXCHANGING;
    /* the request bytes are in the bufferevent now; no more addresses */
    evbuffer_free(r->wire);
    r->wire = NULL;
    if (r->addrs) {
        evutil_freeaddrinfo(r->addrs);
        r->addrs = r->next_addr = NULL;
    }
}

static void km_httpc_on_read(struct bufferevent *bev, void *arg)
{
    struct km_httpc_req *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v;

    if (r->state == KM_HTTPC_CONNECTING) /* data can beat the CONNECTED event */
        km_httpc_connected(r);
    r->busy = 1;
    /* chunk by chunk, so nothing is copied; km_httpc_done frees bev, so the
       state is checked before `in` is touched again */
    while (r->state == KM_HTTPC_EXCHANGING && !r->cancelled &&
           evbuffer_peek(in, -1, NULL, &v, 1) > 0) {
        http_parser_execute(&r->parser, &km_httpc_parser_settings, v.iov_base, v.iov_len);
        evbuffer_drain(in, v.iov_len);
        if (!r->cancelled)
            km_httpc_settle(r);
    }
    r->busy = 0;
    if (r->cancelled)
        km_httpc_free(r);
    else if (r->state == KM_HTTPC_EXCHANGING && r->on_data)
        km_httpc_arm_timer(r); /* streaming: the timeout is idle time */
}

/* The server closed its side: a close-delimited body ends here. */
static void km_httpc_on_eof(struct km_httpc_req *r)
{
    r->busy = 1;
    http_parser_execute(&r->parser, &km_httpc_parser_settings, NULL, 0);
    r->busy = 0;
    if (r->cancelled) {
        km_httpc_free(r);
        return;
    }
    if (!km_httpc_settle(r))
        km_httpc_fail(r, "connection closed before the response was complete");
}

/*
 * Starts a non-blocking connect to sa, with the request queued behind it.
 * Returns 0 when under way, else the errno of the failure. The socket is
 * made here rather than by libevent so that it is close-on-exec and so that
 * an immediate failure comes back with its errno.
 */
static int km_httpc_connect_to(struct km_httpc_req *r, const struct sockaddr *sa,
                               socklen_t salen)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct bufferevent *bev;

    if (fd < 0)
        return errno;
    if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS && errno != EINTR) {
        int e = errno;

        close(fd);
        return e;
    }
    bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return ENOMEM;
    }
    bufferevent_setcb(bev, km_httpc_on_read, NULL, km_httpc_on_event, r);
    /* no address: libevent takes the socket as connecting and reports
       BEV_EVENT_CONNECTED or the error when it is done */
    if (bufferevent_socket_connect(bev, NULL, 0) < 0 ||
        bufferevent_write(bev, evbuffer_pullup(r->wire, -1),
                          evbuffer_get_length(r->wire)) < 0 ||
        bufferevent_enable(bev, EV_READ | EV_WRITE) < 0) {
        bufferevent_free(bev);
        return ENOMEM;
    }
    r->bev = bev;
    r->state = KM_HTTPC_CONNECTING;
    return 0;
}

/* Tries the remaining addresses in turn; `last` is why the previous failed. */
static void km_httpc_connect_next(struct km_httpc_req *r, int last)
{
    if (r->bev) {
        bufferevent_free(r->bev);
        r->bev = NULL;
    }
    while (r->next_addr) {
        struct evutil_addrinfo *a = r->next_addr;

        r->next_addr = a->ai_next;
        last = km_httpc_connect_to(r, a->ai_addr, (socklen_t)a->ai_addrlen);
        if (last == 0)
            return;
    }
    km_httpc_fail_errno(r, last);
}

static void km_httpc_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct km_httpc_req *r = arg;
    int e = EVUTIL_SOCKET_ERROR(); /* first, before anything can change it */

    if (what & BEV_EVENT_CONNECTED) {
        if (r->state == KM_HTTPC_CONNECTING)
            km_httpc_connected(r);
    } else if (r->state == KM_HTTPC_CONNECTING && (what & BEV_EVENT_ERROR)) {
        km_httpc_connect_next(r, e);
    } else if (what & BEV_EVENT_WRITING) {
        /* A server may answer (413, 401) and close before reading all we
           sent; libevent stopped writing but reads on, so the answer still
           arrives, and the read side's EOF or error (or the timer) ends us. */
    } else if (what & BEV_EVENT_EOF) {
        km_httpc_on_eof(r);
    } else if (what & BEV_EVENT_ERROR) {
        km_httpc_fail_errno(r, e);
    }
}

static void km_httpc_on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct km_httpc_req *r = arg;

    if (err == EVUTIL_EAI_CANCEL) { /* from km_httpc_disconnect: r is going */
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    r->dns_req = NULL;
    if (err) { /* libevent's words for NONAME read oddly in a log */
        km_httpc_fail(r, "cannot resolve %s: %s", r->host,
                      err == EVUTIL_EAI_NONAME ? "no such host"
                                               : evutil_gai_strerror(err));
        return;
    }
    r->addrs = r->next_addr = res;
    km_httpc_connect_next(r, EHOSTUNREACH); /* an empty list: no route */
}

/* ---- resolvers ---------------------------------------------------------- */

static struct km_httpc_dns *km_httpc_dns_find(struct event_base *base)
{
    struct km_httpc_dns *d;

    for (d = km_httpc_resolvers; d; d = d->next)
        if (d->base == base)
            return d;
    return NULL;
}

/*
 * The resolver of `base`, made on first need. DISABLE_WHEN_INACTIVE keeps
 * its socket out of the loop between lookups (so an otherwise idle loop can
 * exit); it must be set before the nameservers are added, hence no
 * EVDNS_BASE_INITIALIZE_NAMESERVERS (libevent 2.1 applies the flag after).
 */
static struct evdns_base *km_httpc_dns_get(struct event_base *base)
{
    struct km_httpc_dns *d = km_httpc_dns_find(base);
    int rc;

    if (d)
        return d->dns;
    d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!d->dns) {
        free(d);
        return NULL;
    }
    /* also loads /etc/hosts; without a usable file libevent falls back to
       a nameserver on 127.0.0.1 */
    rc = evdns_base_resolv_conf_parse(d->dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
    if (rc != 0)
        km_log(KM_LOG_WARNING,
               "http client: /etc/resolv.conf unusable (evdns code %d), "
               "using defaults",
               rc);
    d->base = base;
    d->owned = 1;
    d->next = km_httpc_resolvers;
    km_httpc_resolvers = d;
    return d->dns;
}

/* Forgets the resolver of `base`, failing lookups still waiting on it. */
static void km_httpc_dns_drop(struct event_base *base)
{
    struct km_httpc_dns **pp, *d;
    struct km_httpc_req *r;

    for (r = km_httpc_live; r; r = r->next)
        if (r->base == base && r->dns_req)
            km_httpc_fail(r, "cannot resolve %s: resolver replaced", r->host);

    for (pp = &km_httpc_resolvers; (d = *pp) != NULL; pp = &d->next) {
        if (d->base != base)
            continue;
        *pp = d->next;
        if (d->owned)
            evdns_base_free(d->dns, 0); /* our lookups are all cancelled */
        free(d);
        return;
    }
}

int km_httpc_set_dns(struct event_base *base, struct evdns_base *dns)
{
    struct km_httpc_dns *d;

    km_httpc_dns_drop(base);
    if (!dns)
        return 0;
    d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->base = base;
    d->dns = dns;
    d->next = km_httpc_resolvers;
    km_httpc_resolvers = d;
    return 0;
}

void km_httpc_shutdown(struct event_base *base)
{
    struct km_httpc_req *r, *next;

    for (r = km_httpc_live; r; r = next) {
        next = r->next; /* cancel frees r only */
        if (r->base == base)
            km_httpc_cancel(r);
    }
    km_httpc_dns_drop(base);
}

/* ---- starting a request ------------------------------------------------- */

/* The host is an IP address: fill r->sa so no lookup is needed. */
static void km_httpc_numeric_host(struct km_httpc_req *r, unsigned port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&r->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->sa;

    if (evutil_inet_pton(AF_INET, r->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short)port);
        r->salen = sizeof *sin;
    } else if (evutil_inet_pton(AF_INET6, r->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short)port);
        r->salen = sizeof *sin6;
    }
}

static int km_httpc_unix_addr(struct km_httpc_req *r, const char *path, char *why,
                              size_t whylen)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&r->sa;

    if (!*path || strlen(path) >= sizeof sun->sun_path) {
        snprintf(why, whylen, "bad unix socket path \"%.200s\"", path);
        return -1;
    }
    r->unix_path = strdup(path);
    if (!r->unix_path) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, strlen(path) + 1);
    r->salen = (socklen_t)sizeof *sun;
    return 0;
}

/* 1 when s (len bytes) is a non-empty RFC 7230 token. */
static int km_httpc_is_token(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
            return 0;
    return 1;
}

/* 1 when the caller's extra headers set `name`. */
static int km_httpc_has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);

    for (; headers && *headers; headers++)
        if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':')
            return 1;
    return 0;
}

/* Checks the caller's extra header lines: no injection, nothing we own. */
static int km_httpc_check_headers(const char *const *headers, char *why, size_t whylen)
{
    static const char *const ours[] = {"Connection", "Content-Length",
                                       "Transfer-Encoding", NULL};

    for (; headers && *headers; headers++) {
        const char *h = *headers, *colon = strchr(h, ':');
        size_t i;

        if (!colon || !km_httpc_is_token(h, (size_t)(colon - h)) || strpbrk(h, "\r\n")) {
            snprintf(why, whylen, "bad header line \"%.100s\"", h);
            return -1;
        }
        for (i = 0; ours[i]; i++)
            if ((size_t)(colon - h) == strlen(ours[i]) &&
                strncasecmp(h, ours[i], strlen(ours[i])) == 0) {
                snprintf(why, whylen, "header %s is set by the HTTP client itself",
                         ours[i]);
                return -1;
            }
    }
    return 0;
}

/* Builds the request bytes into r->wire. */
static int km_httpc_build(struct km_httpc_req *r, const struct km_http_request *req,
                          const char *target, const char *hosthdr, char *why,
                          size_t whylen)
{
    const char *method = req->method ? req->method : "GET";
    const char *const *h;
    struct evbuffer *b;
    int ok;

    if (!km_httpc_is_token(method, strlen(method)) || strlen(method) > 32) {
        snprintf(why, whylen, "bad method \"%.40s\"", method);
        return -1;
    }
    if (req->body_len && !req->body) {
        snprintf(why, whylen, "body_len without body");
        return -1;
    }
    if (km_httpc_check_headers(req->headers, why, whylen) < 0)
        return -1;
    r->head_only = strcmp(method, "HEAD") == 0;
    b = r->wire = evbuffer_new();
    if (!b) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    ok = evbuffer_add_printf(b, "%s %s HTTP/1.1\r\n", method, target) > 0;
    if (!km_httpc_has_header(req->headers, "Host"))
        ok = ok && evbuffer_add_printf(b, "Host: %s\r\n", hosthdr) > 0;
    if (!km_httpc_has_header(req->headers, "User-Agent"))
        ok = ok &&
             evbuffer_add_printf(b, "User-Agent: katomon/%s\r\n", PACKAGE_VERSION) > 0;
    ok = ok && evbuffer_add_printf(b, "Connection: close\r\n") > 0;
    /* servers want a length on bodiless POST/PUT/PATCH too */
    if (req->body || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
        !strcmp(method, "PATCH"))
        ok = ok && evbuffer_add_printf(b, "Content-Length: %zu\r\n", req->body_len) > 0;
    for (h = req->headers; h && *h; h++)
        ok = ok && evbuffer_add_printf(b, "%s\r\n", *h) > 0;
    ok = ok && evbuffer_add(b, "\r\n", 2) == 0;
    if (req->body_len)
        ok = ok && evbuffer_add(b, req->body, req->body_len) == 0;
    if (!ok) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* The part `f` of url, or "" when absent, copied into out (len bytes). */
static void km_httpc_url_part(const char *url, const struct http_parser_url *u,
                              enum http_parser_url_fields f, char *out, size_t len)
{
    size_t n = 0;

    if (u->field_set & (1 << f)) {
        n = u->field_data[f].len < len - 1 ? u->field_data[f].len : len - 1;
        memcpy(out, url + u->field_data[f].off, n);
    }
    out[n] = '\0';
}

/*
 * Parses the url into r (host, port, address) and builds the request.
 * With a unix socket, a bare "/path" is accepted too (Host: localhost).
 */
static int km_httpc_prepare(struct km_httpc_req *r, const struct km_http_request *req,
                            char *why, size_t whylen)
{
    const char *url = req->url;
    size_t len = strlen(url);
    struct http_parser_url u;
    char scheme[8], *target, *hosthdr;
    unsigned port = 80;
    int rc;

    if (len > KM_HTTPC_MAX_URL) {
        snprintf(why, whylen, "url longer than %u bytes", KM_HTTPC_MAX_URL);
        return -1;
    }
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0) {
        snprintf(why, whylen, "bad url \"%.200s\"", url);
        return -1;
    }
    km_httpc_url_part(url, &u, UF_SCHEMA, scheme, sizeof scheme);
    if (url[0] == '/' && req->unix_socket) {
        r->host = strdup("localhost");
    } else if (!strcasecmp(scheme, "https")) {
        snprintf(why, whylen, "https is not supported (url %.200s)", url);
        return -1;
    } else if (strcasecmp(scheme, "http") || !(u.field_set & (1 << UF_HOST))) {
        snprintf(why, whylen, "bad url \"%.200s\": want http://host[:port]/path", url);
        return -1;
    } else if (u.field_set & (1 << UF_USERINFO)) {
        snprintf(why, whylen, "credentials in the url are not supported (url %.200s)",
                 url);
        return -1;
    } else {
        r->host = strndup(url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
        if (u.field_set & (1 << UF_PORT))
            port = u.port;
        if (port == 0) {
            snprintf(why, whylen, "bad port in url \"%.200s\"", url);
            return -1;
        }
    }
    if (!r->host) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(r->port, sizeof r->port, "%u", port);

    /* request target: path and query, never the fragment */
    target = malloc(len + 2);
    hosthdr = malloc(strlen(r->host) + 16);
    if (!target || !hosthdr) {
        free(target);
        free(hosthdr);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    km_httpc_url_part(url, &u, UF_PATH, target, len + 1);
    if (!target[0])
        strcpy(target, "/");
    if (u.field_set & (1 << UF_QUERY)) {
        strcat(target, "?");
        km_httpc_url_part(url, &u, UF_QUERY, target + strlen(target),
                          len + 2 - strlen(target));
    }
    /* Host: IPv6 literals in brackets, the port unless it is the default */
    sprintf(hosthdr, strchr(r->host, ':') ? "[%s]" : "%s", r->host);
    if (port != 80)
        sprintf(hosthdr + strlen(hosthdr), ":%u", port);

    rc = 0;
    if (req->unix_socket)
        rc = km_httpc_unix_addr(r, req->unix_socket, why, whylen);
    else
        km_httpc_numeric_host(r, port); /* else r->salen stays 0: resolve */
    if (rc == 0)
        rc = km_httpc_build(r, req, target, hosthdr, why, whylen);
    free(target);
    free(hosthdr);
    return rc;
}

/* Connects directly, or starts the lookup. Never calls cb itself. */
static void km_httpc_start(struct km_httpc_req *r)
{
    struct evutil_addrinfo hints;
    struct evdns_getaddrinfo_request *q;
    struct evdns_base *dns;
    int e;

    if (r->salen) { /* unix socket or numeric host */
        e = km_httpc_connect_to(r, (struct sockaddr *)&r->sa, r->salen);
        if (e)
            km_httpc_fail_errno(r, e);
        return;
    }
    dns = km_httpc_dns_get(r->base);
    if (!dns) {
        km_httpc_fail(r, "cannot resolve %s: no resolver", r->host);
        return;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG; /* no AAAA lookups without IPv6 */
    r->state = KM_HTTPC_RESOLVING;
    /* answers from /etc/hosts arrive before this returns (and it returns
       NULL): only a lookup still pending keeps its handle */
    q = evdns_getaddrinfo(dns, r->host, r->port, &hints, km_httpc_on_resolved, r);
    if (r->state == KM_HTTPC_RESOLVING && !r->failed) {
        if (q)
            r->dns_req = q;
        else
            km_httpc_fail(r, "cannot resolve %s: lookup failed to start", r->host);
    }
}

struct km_httpc_req *km_httpc_request(struct event_base *base,
                                      const struct km_http_request *req, km_http_cb cb,
                                      void *arg, char *err, size_t errlen)
{
    struct km_httpc_req *r;
    char why[256] = "out of memory";

    if (!base || !req || !req->url || !cb) {
        snprintf(why, sizeof why, "missing event base, request, url or callback");
        goto refuse;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        goto refuse;
    r->base = base;
    r->cb = cb;
    r->arg = arg;
    r->on_data = req->on_data;
    r->timeout_ms = req->timeout_ms ? req->timeout_ms : KM_HTTPC_TIMEOUT_MS;
    /* streaming bodies may be endless (docker /events): no default limit */
    r->max_body = req->max_body ? req->max_body : req->on_data ? 0 : KM_HTTPC_MAX_BODY;
    if (r->max_body > SIZE_MAX / 2)
        r->max_body = SIZE_MAX / 2; /* keeps max_body + 1 from wrapping */
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    if (km_httpc_prepare(r, req, why, sizeof why) < 0 ||
        !(r->timer = evtimer_new(base, km_httpc_on_timer, r))) {
        km_httpc_free(r);
        goto refuse;
    }
    km_httpc_link(r);
    km_httpc_arm_timer(r);
    km_httpc_start(r);
    return r;
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return NULL;
}

void km_httpc_cancel(struct km_httpc_req *r)
{
    if (!r || r->delivering || r->cancelled)
        return;
    r->cancelled = 1;
    if (r->busy)
        return; /* inside on_data: km_httpc_on_read frees it on the way out */
    km_httpc_free(r);
}
