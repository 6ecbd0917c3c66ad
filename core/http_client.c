/*
 * http_client.c - outbound HTTP(S) on libcurl's multi interface, driven by
 * the libevent loop (the "multi_socket" API, as in curl's hiperfifo.c).
 *
 * Per event_base, one struct hc_multi holds a CURLM, one libevent timer
 * for libcurl's timeouts and one libevent event per socket libcurl wants
 * watched:
 *
 *   libcurl --CURLMOPT_SOCKETFUNCTION--> hc_on_socket: (re)arm that
 *            socket's event for IN/OUT, or drop it
 *   libcurl --CURLMOPT_TIMERFUNCTION---> hc_on_timer_set: arm the timer
 *   event fires --> curl_multi_socket_action --> hc_settle:
 *            curl_multi_info_read hands over finished transfers
 *
 * A request's life (struct km_hc_req):
 *   km_hc_request   checks and copies everything, makes the easy handle,
 *        |          arms its own timer, adds it to the CURLM (libcurl only
 *        |          sets a 0 ms timer then: nothing runs before the loop)
 *   libcurl         header and write callbacks gather the response (or
 *        |          hand it to on_data); returning short stops the transfer
 *   req_finish      the transfer is over (hc_settle, or our timeout): the
 *        |          easy handle leaves the CURLM, the timer is activated
 *   req_on_timer    delivers the result and frees the request. Going through
 *                   the loop keeps the callback out of km_hc_request and out
 *                   of libcurl's own callbacks.
 * The one timer event of a request serves twice: as its timeout while the
 * request runs (the whole request, or with on_data the longest silence),
 * and as the deferred delivery once it is over.
 *
 * libcurl refuses multi calls made from inside its callbacks
 * (CURLM_RECURSIVE_API_CALL), and on_data is such a callback: whatever a
 * plugin does from there (start a request, cancel one, publish to a
 * subscriber that does) is recorded and carried out by hc_settle once
 * curl_multi_socket_action has returned: a transfer started then is
 * `pending`, one freed then a `zombie` (kept until libcurl lets go of it).
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/un.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "http_client.h"
#include "log.h"

#ifndef PACKAGE_VERSION /* configure passes it with -D (see DEFS) */
#error "PACKAGE_VERSION is not defined: build through configure"
#endif

#define HC_TIMEOUT_MS 10000       /* timeout_ms 0 means this */
#define HC_MAX_BODY   (8u << 20)  /* max_body 0 means this (not streaming) */
#define HC_MAX_HEAD   (64u << 10) /* status lines + header bytes we accept */
#define HC_MAX_URL    8192        /* longest url we accept */
#define HC_BODY_MIN   4096        /* first body allocation */

struct km_hc_stats km_hc_stats;

struct hc_multi;

enum hc_kind {
    HC_REQ,  /* struct km_hc_req */
    HC_CONN, /* struct km_hc_conn */
};

/* What requests and connect-only transfers share; first member of both,
   and what CURLOPT_PRIVATE points at. */
struct hc_xfer {
    enum hc_kind kind;
    struct hc_multi *m;           /* its CURLM */
    CURL *easy;                   /* NULL once the transfer is over */
    struct curl_slist *headers;   /* CURLOPT_HTTPHEADER (owned) */
    int added;                    /* in the CURLM */
    int pending;                  /* to be added by hc_settle */
    int zombie;                   /* owner is done with it: hc_settle frees it */
    int linked;                   /* on m->xfers */
    struct hc_xfer *prev, *next;  /* m->xfers */
    char errbuf[CURL_ERROR_SIZE]; /* CURLOPT_ERRORBUFFER */
};

/* One socket libcurl asked us to watch. */
struct hc_sock {
    struct event ev;             /* its event (EV_PERSIST) */
    struct hc_multi *m;          /* owner */
    struct hc_sock *prev, *next; /* m->socks, so km_hc_shutdown frees leftovers */
};

/* The client of one event_base. */
struct hc_multi {
    struct event_base *base;    /* the loop */
    CURLM *multi;               /* libcurl's multi handle */
    struct event *timer;        /* libcurl's timeout */
    int in_curl;                /* inside curl_multi_socket_action */
    unsigned todo;              /* transfers pending or zombie */
    struct hc_xfer *xfers;      /* every transfer not yet freed */
    struct hc_sock *socks;      /* watched sockets */
    struct curl_slist *resolve; /* km_hc_set_resolve entries (owned) */
    struct hc_multi *next;      /* next base's */
};

struct km_hc_req {
    struct hc_xfer x;                             /* first: see struct hc_xfer */
    struct event *ev;                             /* timeout, then deferred delivery */
    km_http_cb cb;                                /* the final callback */
    void *arg;                                    /* for cb and on_data */
    int (*on_data)(const char *, size_t, void *); /* streaming sink, or NULL */
    unsigned timeout_ms; /* whole request, or idle time when streaming */
    size_t max_body;     /* body bytes allowed; 0: no limit (streaming) */
    int head_only;       /* HEAD: the response has no body */
    char *unix_path;     /* unix socket, for error texts (owned) */
    int64_t last_ms;     /* streaming: when bytes last came in */
    int live;            /* counted in km_hc_stats.live */
    int done;            /* over, out of the CURLM: ev delivers */
    int delivering;      /* cb is running */
    int cancelled;       /* km_hc_cancel was called */

    size_t head_bytes;         /* status + header bytes so far */
    int interim;               /* the current response is a 1xx */
    int headers_done;          /* final headers over: later ones are trailers */
    char *ct;                  /* Content-Type of the final response (owned) */
    char *body;                /* gathered body (not streaming) */
    size_t body_len, body_cap; /* its length and allocation */
    size_t received;           /* body bytes seen, streamed or kept */
    int status;                /* status code */
    int failed;                /* error holds why */
    char error[512];           /* the error text handed to cb */
};

struct km_hc_conn {
    struct hc_xfer x;    /* first: see struct hc_xfer */
    struct event *ev;    /* deferred callback */
    km_hc_conn_cb cb;    /* called once */
    void *arg;           /* its argument */
    unsigned timeout_ms; /* for the error text */
    int done;            /* connected or failed: ev calls back */
    int connected;       /* connected (easy still in the CURLM) */
    char error[512];     /* why not */
};

static struct hc_multi *hc_multis; /* one per event_base */

static void hc_settle(struct hc_multi *m);

/* ---- small helpers ------------------------------------------------------ */

static int64_t hc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void hc_arm(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    evtimer_add(ev, &tv);
}

/* strerror, lower-cased to read well after "cannot ...: " and alike. */
static void hc_errno_text(long e, char *buf, size_t len)
{
    if (e == ENOENT)
        snprintf(buf, len, "no such file");
    else if (e == EPIPE)
        snprintf(buf, len, "connection closed by the server (broken pipe)");
    else
        snprintf(buf, len, "%s", strerror((int)e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
}

void km_hc_error_text(CURLcode rc, const char *what, long os_errno, const char *unix_path,
                      char *out, size_t len)
{
    static const char no_host[] = "Could not resolve host: ";
    char sys[160];
    const char *detail = what && *what ? what : curl_easy_strerror(rc);

    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        if (os_errno) {
            hc_errno_text(os_errno, sys, sizeof sys);
            if (unix_path)
                snprintf(out, len, "%s (unix socket %s)", sys, unix_path);
            else
                snprintf(out, len, "%s", sys);
        } else {
            snprintf(out, len, "cannot connect: %s", detail);
        }
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        if (strncmp(detail, no_host, sizeof no_host - 1) == 0)
            snprintf(out, len, "cannot resolve %s: no such host",
                     detail + sizeof no_host - 1);
        else
            snprintf(out, len, "cannot resolve: %s", detail);
        return;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(out, len, "TLS: certificate verify failed (%s)", detail);
        return;
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, len, "TLS: cannot use the CA file (%s)", detail);
        return;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(out, len, "TLS: handshake failed (%s)", detail);
        return;
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        snprintf(out, len, "TLS: %s", detail);
        return;
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
        snprintf(out, len, "connection closed before the response was complete");
        return;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        if (os_errno) {
            hc_errno_text(os_errno, out, len);
            return;
        }
        break;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING:
        snprintf(out, len, "bad response: %s", detail);
        return;
    case CURLE_OUT_OF_MEMORY:
        snprintf(out, len, "out of memory");
        return;
    default:
        break;
    }
    snprintf(out, len, "%s", detail);
    out[0] = (char)tolower((unsigned char)out[0]);
}

/* ---- the CURLM of a base ------------------------------------------------ */

/* A socket's event fired: tell libcurl, then act on what it finished. */
static void hc_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct hc_multi *m = arg;
    int running, action = 0;

    if (what & EV_READ)
        action |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        action |= CURL_CSELECT_OUT;
    m->in_curl++;
    curl_multi_socket_action(m->multi, fd, action, &running);
    m->in_curl--;
    hc_settle(m);
}

/* libcurl's timeout expired. */
static void hc_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct hc_multi *m = arg;
    int running;

    m->in_curl++;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    m->in_curl--;
    hc_settle(m);
}

/* CURLMOPT_TIMERFUNCTION: never calls libcurl back from here (0 ms is a
   timer that fires on the loop's next round). */
static int hc_on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct hc_multi *m = userp;

    if (timeout_ms < 0)
        evtimer_del(m->timer);
    else
        hc_arm(m->timer, timeout_ms);
    return 0;
}

static void hc_sock_free(struct hc_sock *s)
{
    event_del(&s->ev);
    if (s->prev)
        s->prev->next = s->next;
    else
        s->m->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/*
 * CURLMOPT_SOCKETFUNCTION: watch `fd` for what libcurl wants, or stop.
 * Freeing an event from inside its own callback (libcurl drops a socket
 * while we are in hc_on_event for it) is safe: libevent reads nothing of
 * a persistent event once its callback has been called.
 */
static int hc_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                        void *socketp)
{
    struct hc_multi *m = userp;
    struct hc_sock *s = socketp;
    short flags = EV_PERSIST;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            hc_sock_free(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return 0; /* unwatched: the transfer times out */
        s->m = m;
        s->next = m->socks;
        if (m->socks)
            m->socks->prev = s;
        m->socks = s;
        curl_multi_assign(m->multi, fd, s);
    } else {
        event_del(&s->ev);
    }
    if (what & CURL_POLL_IN)
        flags |= EV_READ;
    if (what & CURL_POLL_OUT)
        flags |= EV_WRITE;
    event_assign(&s->ev, m->base, fd, flags, hc_on_event, m);
    event_add(&s->ev, NULL);
    return 0;
}

static struct hc_multi *hc_find(struct event_base *base)
{
    struct hc_multi *m;

    for (m = hc_multis; m; m = m->next)
        if (m->base == base)
            return m;
    return NULL;
}

/* The client of `base`, made on first need. */
static struct hc_multi *hc_get(struct event_base *base)
{
    struct hc_multi *m = hc_find(base);

    if (m)
        return m;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    m = calloc(1, sizeof *m);
    if (!m || !(m->multi = curl_multi_init()) ||
        !(m->timer = evtimer_new(base, hc_on_timeout, m))) {
        if (m && m->multi)
            curl_multi_cleanup(m->multi);
        free(m);
        curl_global_cleanup();
        return NULL;
    }
    m->base = base;
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, hc_on_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, hc_on_timer_set);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    m->next = hc_multis;
    hc_multis = m;
    return m;
}

/* ---- transfers ------------------------------------------------------------ */

static void xfer_link(struct hc_multi *m, struct hc_xfer *x)
{
    x->m = m;
    x->linked = 1;
    x->next = m->xfers;
    if (m->xfers)
        m->xfers->prev = x;
    m->xfers = x;
}

static void xfer_unlink(struct hc_xfer *x)
{
    if (!x->linked)
        return;
    x->linked = 0;
    if (x->prev)
        x->prev->next = x->next;
    else
        x->m->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Hands the easy handle to libcurl now, or after the current libcurl call. */
static int xfer_add(struct hc_xfer *x)
{
    if (x->m->in_curl) {
        x->pending = 1;
        x->m->todo++;
        return 0;
    }
    if (curl_multi_add_handle(x->m->multi, x->easy) != CURLM_OK)
        return -1;
    x->added = 1;
    return 0;
}

/* Ends the transfer: out of the CURLM, easy handle freed. Never from inside
   libcurl (the callers check in_curl or run from hc_settle / a timer). */
static void xfer_stop(struct hc_xfer *x)
{
    if (x->pending) {
        x->pending = 0;
        x->m->todo--;
    }
    if (x->added) {
        curl_multi_remove_handle(x->m->multi, x->easy);
        x->added = 0;
    }
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
}

/*
 * The owner is done with x. Inside libcurl (on_data), a transfer libcurl
 * holds cannot leave the CURLM: it becomes a zombie that hc_settle frees.
 * Returns 1 when x was freed, 0 when it lives on as a zombie.
 */
static int xfer_release(struct hc_xfer *x)
{
    if (x->m->in_curl && x->added) {
        if (!x->zombie) {
            x->zombie = 1;
            x->m->todo++;
        }
        return 0;
    }
    xfer_stop(x);
    xfer_unlink(x);
    return 1;
}

/* Options every transfer has. */
static void xfer_common(struct hc_xfer *x, const char *ca_file, int tls_insecure,
                        unsigned timeout_ms)
{
    CURL *e = x->easy;

    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* a transfer given up during a lookup does not wait for the resolver
       thread (which finishes and cleans up on its own) */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the environment */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    if (x->m->resolve)
        curl_easy_setopt(e, CURLOPT_RESOLVE, x->m->resolve);
    if (ca_file && *ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    if (tls_insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

/* ---- requests: response callbacks (run inside libcurl) ------------------ */

static void req_set_error(struct km_hc_req *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void req_set_error(struct km_hc_req *r, const char *fmt, ...)
{
    va_list ap;

    if (r->failed)
        return; /* the first reason wins; later ones are its consequences */
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->failed = 1;
}

/* CURLOPT_HEADERFUNCTION: one whole line at a time, status lines and the
   blank line included, those of 1xx responses and trailers too. */
static size_t req_on_header(char *line, size_t size, size_t n, void *arg)
{
    struct km_hc_req *r = arg;
    size_t len = size * n;

    if (r->cancelled)
        return 0;
    if (r->on_data)
        r->last_ms = hc_now_ms();
    r->head_bytes += len;
    if (r->head_bytes > HC_MAX_HEAD) {
        req_set_error(r, "bad response: headers larger than %u bytes", HC_MAX_HEAD);
        return 0;
    }
    if (r->headers_done)
        return len;                                   /* a trailer */
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a (new) response */
        const char *sp = memchr(line, ' ', len);
        int code = sp ? atoi(sp + 1) : 0;

        r->interim = code >= 100 && code < 200 && code != 101;
        free(r->ct);
        r->ct = NULL;
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) { /* end of headers */
        curl_off_t cl = -1;

        if (r->interim)
            return len; /* "100 Continue" and alike: the real one follows */
        r->headers_done = 1;
        curl_easy_getinfo(r->x.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (!r->head_only && r->max_body && cl > 0 && (uint64_t)cl > r->max_body) {
            req_set_error(r, "response body larger than %zu bytes", r->max_body);
            return 0;
        }
        return len;
    }
    if (len > 13 && strncasecmp(line, "content-type:", 13) == 0) {
        const char *v = line + 13, *end = line + len;

        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v &&
               (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        free(r->ct); /* a repeated header: the last one wins */
        r->ct = strndup(v, (size_t)(end - v));
        if (!r->ct) {
            req_set_error(r, "out of memory");
            return 0;
        }
    }
    return len;
}

/* Appends to the gathered body, growing by doubling up to max_body + 1. */
static int req_keep(struct km_hc_req *r, const char *at, size_t len)
{
    size_t need = r->body_len + len + 1; /* + 1: the NUL for the callback */

    if (need > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : HC_BODY_MIN;
        char *body;

        while (cap < need)
            cap *= 2;
        if (cap > r->max_body + 1)
            cap = r->max_body + 1; /* need fits: req_on_body checked */
        body = realloc(r->body, cap);
        if (!body)
            return -1;
        r->body = body;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

/* CURLOPT_WRITEFUNCTION: body bytes, de-chunked. Returning less than len
   stops the transfer (CURLE_WRITE_ERROR; our error text wins). */
static size_t req_on_body(char *at, size_t size, size_t n, void *arg)
{
    struct km_hc_req *r = arg;
    size_t len = size * n;
    int stop;

    if (r->cancelled || r->failed)
        return 0;
    if (r->max_body && len > r->max_body - r->received) {
        req_set_error(r, "response body larger than %zu bytes", r->max_body);
        return 0;
    }
    r->received += len;
    if (!r->on_data) {
        if (req_keep(r, at, len) == 0)
            return len;
        req_set_error(r, "out of memory");
        return 0;
    }
    r->last_ms = hc_now_ms();
    stop = r->on_data(at, len, r->arg);
    if (r->cancelled) /* cancelled from on_data: stop now, free in hc_settle */
        return 0;
    if (stop) {
        req_set_error(r, "stopped by caller");
        return 0;
    }
    return len;
}

/* ---- requests: end and delivery ----------------------------------------- */

static void req_unlive(struct km_hc_req *r)
{
    if (r->live) {
        r->live = 0;
        km_hc_stats.live--;
    }
}

static void req_free(struct km_hc_req *r)
{
    if (r->ev)
        event_free(r->ev);
    free(r->unix_path);
    free(r->ct);
    free(r->body);
    free(r);
}

/* The transfer is over (rc says how, unless an error was set already): the
   easy handle goes, and the timer delivers from the loop. */
static void req_finish(struct km_hc_req *r, CURLcode rc)
{
    long status = 0, os_errno = 0;

    if (r->x.easy) {
        curl_easy_getinfo(r->x.easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(r->x.easy, CURLINFO_OS_ERRNO, &os_errno);
    }
    r->status = (int)status;
    if (rc == CURLE_OPERATION_TIMEDOUT)
        req_set_error(r, "timed out after %u ms", r->timeout_ms);
    else if (rc != CURLE_OK && !r->failed) {
        km_hc_error_text(rc, r->x.errbuf, os_errno, r->unix_path, r->error,
                         sizeof r->error);
        r->failed = 1;
    }
    xfer_stop(&r->x);
    r->done = 1;
    event_del(r->ev);
    event_active(r->ev, EV_TIMEOUT, 1);
}

/* Runs the callback and frees the request. */
static void req_deliver(struct km_hc_req *r)
{
    struct km_http_response resp = {0};

    resp.status = r->status;
    resp.error = r->failed ? r->error : NULL;
    resp.content_type = r->ct;
    resp.body = "";
    if (!r->failed && r->body) {
        r->body[r->body_len] = '\0'; /* room kept by req_keep */
        resp.body = r->body;
        resp.body_len = r->body_len;
    }
    /* untracked first: km_hc_shutdown from inside cb must not find it, and
       km_hc_cancel on it is a no-op (delivering) */
    req_unlive(r);
    xfer_unlink(&r->x);
    r->delivering = 1;
    km_hc_stats.finished++;
    r->cb(&resp, r->arg);
    req_free(r);
}

/* The request's timer: its timeout while it runs, its delivery once done. */
static void req_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct km_hc_req *r = arg;

    if (r->done) {
        req_deliver(r);
        return;
    }
    if (r->on_data) { /* streaming: only silence counts */
        int64_t idle = hc_now_ms() - r->last_ms;

        if (idle < (int64_t)r->timeout_ms) {
            hc_arm(r->ev, (int64_t)r->timeout_ms - idle);
            return;
        }
    }
    req_finish(r, CURLE_OPERATION_TIMEDOUT);
}

/* ---- requests: starting --------------------------------------------------- */

/* 1 when s (len bytes) is a non-empty RFC 7230 token. */
static int hc_is_token(const char *s, size_t len)
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
static int hc_has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);

    for (; headers && *headers; headers++)
        if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':')
            return 1;
    return 0;
}

/* Checks the caller's extra header lines: no injection, nothing libcurl
   owns. */
static int hc_check_headers(const char *const *headers, char *why, size_t whylen)
{
    static const char *const ours[] = {"Connection", "Content-Length",
                                       "Transfer-Encoding", NULL};

    for (; headers && *headers; headers++) {
        const char *h = *headers, *colon = strchr(h, ':');
        size_t i;

        if (!colon || !hc_is_token(h, (size_t)(colon - h)) || strpbrk(h, "\r\n")) {
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

/*
 * Checks `url` (http:// or https://, a host, no credentials, a port other
 * than 0) and writes it without its fragment into out (HC_MAX_URL + 32
 * bytes). With a unix socket, a bare "/path" is accepted too (it becomes
 * http://localhost/path, so Host: localhost).
 */
static int hc_check_url(const char *url, int unix_socket, char *out, char *why,
                        size_t whylen)
{
    size_t len = strcspn(url, "#");
    CURLU *u;
    char *scheme = NULL, *host = NULL, *user = NULL, *port = NULL;
    int rc = -1;

    if (len > HC_MAX_URL) {
        snprintf(why, whylen, "url longer than %u bytes", HC_MAX_URL);
        return -1;
    }
    if (url[0] == '/' && unix_socket)
        snprintf(out, HC_MAX_URL + 32, "http://localhost%.*s", (int)len, url);
    else
        snprintf(out, HC_MAX_URL + 32, "%.*s", (int)len, url);
    if (strpbrk(out, " \t\r\n")) {
        snprintf(why, whylen, "bad url \"%.200s\"", url);
        return -1;
    }
    u = curl_url();
    if (!u) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, out, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") && strcmp(scheme, "https")) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        snprintf(why, whylen, "bad url \"%.200s\": want http(s)://host[:port]/path", url);
    } else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(why, whylen, "credentials in the url are not supported (url %.200s)",
                 url);
    } else if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
               strtol(port, NULL, 10) == 0) {
        snprintf(why, whylen, "bad port in url \"%.200s\"", url);
    } else {
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* Appends a copy of line to *l. 0, or -1 on ENOMEM (*l unchanged). */
static int hc_append(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);

    if (!n)
        return -1;
    *l = n;
    return 0;
}

/* Method, body and headers onto the easy handle. */
static int req_setup(struct km_hc_req *r, const struct km_http_request *req, char *why,
                     size_t whylen)
{
    const char *method = req->method ? req->method : "GET";
    CURL *e = r->x.easy;
    int post = !strcmp(method, "POST"), put = !strcmp(method, "PUT"),
        patch = !strcmp(method, "PATCH");
    const char *const *h;

    if (!hc_is_token(method, strlen(method)) || strlen(method) > 32) {
        snprintf(why, whylen, "bad method \"%.40s\"", method);
        return -1;
    }
    if (req->body_len && !req->body) {
        snprintf(why, whylen, "body_len without body");
        return -1;
    }
    if (hc_check_headers(req->headers, why, whylen) < 0)
        return -1;
    r->head_only = strcmp(method, "HEAD") == 0;
    if (r->head_only)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    /* servers want a length on bodiless POST/PUT/PATCH too: an empty body */
    if (req->body || post || put || patch) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "") !=
            CURLE_OK) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        /* libcurl would label it a form and ask for 100-continue first */
        if ((!hc_has_header(req->headers, "Content-Type") &&
             hc_append(&r->x.headers, "Content-Type:") < 0) ||
            (!hc_has_header(req->headers, "Expect") &&
             hc_append(&r->x.headers, "Expect:") < 0))
            goto nomem;
    }
    for (h = req->headers; h && *h; h++)
        if (hc_append(&r->x.headers, *h) < 0)
            goto nomem;
    if (r->x.headers)
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->x.headers);
    return 0;
nomem:
    snprintf(why, whylen, "out of memory");
    return -1;
}

struct km_hc_req *km_hc_request(struct event_base *base,
                                const struct km_http_request *req, km_http_cb cb,
                                void *arg, char *err, size_t errlen)
{
    static char url[HC_MAX_URL + 32];
    struct km_hc_req *r = NULL;
    struct hc_multi *m;
    char why[256] = "out of memory";
    CURL *e;

    if (!base || !req || !req->url || !cb) {
        snprintf(why, sizeof why, "missing event base, request, url or callback");
        goto refuse;
    }
    if (req->unix_socket &&
        (!*req->unix_socket ||
         strlen(req->unix_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))) {
        snprintf(why, sizeof why, "bad unix socket path \"%.200s\"", req->unix_socket);
        goto refuse;
    }
    if (hc_check_url(req->url, req->unix_socket != NULL, url, why, sizeof why) < 0)
        goto refuse;
    if (!(m = hc_get(base)) || !(r = calloc(1, sizeof *r)))
        goto refuse;
    r->x.kind = HC_REQ;
    r->x.m = m;
    r->cb = cb;
    r->arg = arg;
    r->on_data = req->on_data;
    r->timeout_ms = req->timeout_ms ? req->timeout_ms : HC_TIMEOUT_MS;
    /* streaming bodies may be endless (docker /events): no default limit */
    r->max_body = req->max_body ? req->max_body : req->on_data ? 0 : HC_MAX_BODY;
    if (r->max_body > SIZE_MAX / 2)
        r->max_body = SIZE_MAX / 2; /* keeps max_body + 1 from wrapping */
    if (!(r->x.easy = e = curl_easy_init()) ||
        !(r->ev = evtimer_new(base, req_on_timer, r)) ||
        (req->unix_socket && !(r->unix_path = strdup(req->unix_socket))))
        goto fail;
    xfer_common(&r->x, req->ca_file, req->tls_insecure, r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "katomon/" PACKAGE_VERSION);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, req_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, req_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    if (req->unix_socket)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
    if (req_setup(r, req, why, sizeof why) < 0)
        goto fail;
    if (xfer_add(&r->x) < 0)
        goto fail;
    xfer_link(m, &r->x);
    r->live = 1;
    km_hc_stats.started++;
    km_hc_stats.live++;
    r->last_ms = hc_now_ms();
    hc_arm(r->ev, r->timeout_ms);
    return r;
fail:
    xfer_stop(&r->x);
    req_free(r);
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return NULL;
}

void km_hc_cancel(struct km_hc_req *r)
{
    if (!r || r->delivering || r->cancelled)
        return;
    r->cancelled = 1;
    req_unlive(r);
    event_del(r->ev);
    if (xfer_release(&r->x))
        req_free(r);
    /* else a zombie: hc_settle frees it once libcurl has let go */
}

/* ---- connect-only transfers ---------------------------------------------- */

static void conn_on_ev(evutil_socket_t fd, short what, void *arg)
{
    struct km_hc_conn *c = arg;

    if (!c->done) { /* libcurl never answered: our own backstop */
        snprintf(c->error, sizeof c->error, "timed out after %u ms", c->timeout_ms);
        xfer_stop(&c->x);
        c->done = 1;
    }
    c->cb(c, c->connected ? NULL : c->error, c->arg); /* may free c */
}

static void conn_finish(struct km_hc_conn *c, CURLcode rc)
{
    long os_errno = 0;

    if (rc == CURLE_OK) {
        c->connected = 1; /* stays in the CURLM: curl_easy_send/recv need it */
    } else {
        if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(c->error, sizeof c->error, "timed out after %u ms", c->timeout_ms);
        else {
            curl_easy_getinfo(c->x.easy, CURLINFO_OS_ERRNO, &os_errno);
            km_hc_error_text(rc, c->x.errbuf, os_errno, NULL, c->error, sizeof c->error);
        }
        xfer_stop(&c->x);
    }
    c->done = 1;
    event_del(c->ev);
    event_active(c->ev, EV_TIMEOUT, 1);
}

static void conn_free(struct km_hc_conn *c)
{
    if (c->ev)
        event_free(c->ev);
    free(c);
}

struct km_hc_conn *km_hc_connect(struct event_base *base, const struct km_hc_target *t,
                                 km_hc_conn_cb cb, void *arg, char *err, size_t errlen)
{
    static char url[HC_MAX_URL + 32];
    struct km_hc_conn *c = NULL;
    struct hc_multi *m;
    char why[256] = "out of memory";

    if (!base || !t || !t->url || !cb) {
        snprintf(why, sizeof why, "missing event base, url or callback");
        goto refuse;
    }
    if (hc_check_url(t->url, 0, url, why, sizeof why) < 0)
        goto refuse;
    if (!(m = hc_get(base)) || !(c = calloc(1, sizeof *c)))
        goto refuse;
    c->x.kind = HC_CONN;
    c->x.m = m;
    c->cb = cb;
    c->arg = arg;
    c->timeout_ms = t->timeout_ms ? t->timeout_ms : HC_TIMEOUT_MS;
    if (!(c->x.easy = curl_easy_init()) || !(c->ev = evtimer_new(base, conn_on_ev, c)))
        goto fail;
    xfer_common(&c->x, t->ca_file, t->tls_insecure, c->timeout_ms);
    curl_easy_setopt(c->x.easy, CURLOPT_URL, url);
    curl_easy_setopt(c->x.easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    /* 1: resolve, connect, TLS, then stop. (7.86's 2 is for libcurl's own
       WebSocket support, which Debian 12's 7.88 is not built with.) */
    curl_easy_setopt(c->x.easy, CURLOPT_CONNECT_ONLY, 1L);
    if (xfer_add(&c->x) < 0)
        goto fail;
    xfer_link(m, &c->x);
    km_hc_stats.conns++;
    /* should libcurl never report (it always does), the callback still
       comes: a second after libcurl's own timeout */
    hc_arm(c->ev, (int64_t)c->timeout_ms + 1000);
    return c;
fail:
    xfer_stop(&c->x);
    conn_free(c);
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return NULL;
}

CURL *km_hc_conn_easy(struct km_hc_conn *c)
{
    return c && c->connected ? c->x.easy : NULL;
}

curl_socket_t km_hc_conn_socket(struct km_hc_conn *c)
{
    curl_socket_t fd = CURL_SOCKET_BAD;

    if (c && c->connected &&
        curl_easy_getinfo(c->x.easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK)
        fd = CURL_SOCKET_BAD;
    return fd;
}

void km_hc_conn_free(struct km_hc_conn *c)
{
    if (!c)
        return;
    km_hc_stats.conns--;
    event_free(c->ev);
    c->ev = NULL;
    c->cb = NULL;
    if (xfer_release(&c->x))
        conn_free(c);
}

/* ---- after every libcurl call ---------------------------------------------- */

/* Frees a transfer whose owner let go of it inside libcurl. */
static void hc_bury(struct hc_xfer *x)
{
    x->zombie = 0;
    x->m->todo--;
    xfer_stop(x);
    xfer_unlink(x);
    if (x->kind == HC_REQ)
        req_free((struct km_hc_req *)x);
    else
        conn_free((struct km_hc_conn *)x);
}

/*
 * Acts on what libcurl finished, then carries out what was asked of us
 * while libcurl was in a callback (zombies to free, transfers to add).
 * Runs only outside libcurl; calls no plugin code.
 */
static void hc_settle(struct hc_multi *m)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        struct hc_xfer *x = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (!x || x->zombie)
            continue; /* freed below */
        if (x->kind == HC_REQ)
            req_finish((struct km_hc_req *)x, rc);
        else
            conn_finish((struct km_hc_conn *)x, rc);
    }
    while (m->todo) {
        struct hc_xfer *x;

        for (x = m->xfers; x && !x->zombie && !x->pending; x = x->next)
            ;
        if (!x) { /* cannot happen; never loop forever on a miscount */
            m->todo = 0;
            break;
        }
        if (x->zombie) {
            hc_bury(x);
        } else {
            x->pending = 0;
            m->todo--;
            if (xfer_add(x) < 0) { /* fails only on ENOMEM: report it */
                if (x->kind == HC_REQ) {
                    req_set_error((struct km_hc_req *)x, "out of memory");
                    req_finish((struct km_hc_req *)x, CURLE_OUT_OF_MEMORY);
                } else {
                    conn_finish((struct km_hc_conn *)x, CURLE_OUT_OF_MEMORY);
                }
            }
        }
    }
}

/* ---- per base ----------------------------------------------------------------- */

int km_hc_set_resolve(struct event_base *base, const char *const *entries)
{
    struct hc_multi *m = hc_get(base);
    struct curl_slist *list = NULL, *l;

    if (!m)
        return -1;
    for (; entries && *entries; entries++) {
        if (!(l = curl_slist_append(list, *entries))) {
            curl_slist_free_all(list);
            return -1;
        }
        list = l;
    }
    curl_slist_free_all(m->resolve);
    m->resolve = list;
    return 0;
}

void km_hc_shutdown(struct event_base *base)
{
    struct hc_multi **pp, *m;

    for (pp = &hc_multis; (m = *pp) != NULL; pp = &m->next)
        if (m->base == base)
            break;
    if (!m)
        return;
    while (m->xfers) {
        struct hc_xfer *x = m->xfers;

        if (x->zombie) {
            hc_bury(x);
        } else if (x->kind == HC_REQ) {
            struct km_hc_req *r = (struct km_hc_req *)x;

            req_unlive(r);
            xfer_stop(x);
            xfer_unlink(x);
            req_free(r);
        } else {
            km_hc_conn_free((struct km_hc_conn *)x);
        }
    }
    *pp = m->next;
    curl_multi_cleanup(m->multi); /* may still drop sockets through hc_on_socket */
    while (m->socks)
        hc_sock_free(m->socks);
    event_free(m->timer);
    curl_slist_free_all(m->resolve);
    free(m);
    curl_global_cleanup();
}
