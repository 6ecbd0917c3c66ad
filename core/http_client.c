/*
 * http_client.c - one outbound HTTP(S) request (km_hc_request): the easy
 * handle's setup, the response gathered or streamed within its limits, and
 * the callback, under the contract of katomon/http.h. The CURLM they run
 * on, and the loop that drives it, are curl_loop.c's.
 *
 * A request's life (struct km_hc_req):
 *   km_hc_request   checks and copies everything, makes the easy handle,
 *        |          arms its own timer, adds it to the CURLM (libcurl only
 *        |          sets a 0 ms timer then: nothing runs before the loop)
 *   libcurl         header and write callbacks gather the response (or
 *        |          hand it to on_data); returning short stops the transfer
 *   req_finish      the transfer is over (req_done from the loop, or our
 *        |          timeout): the easy handle leaves the CURLM, the timer
 *        |          is activated
 *   req_on_timer    delivers the result and frees the request. Going through
 *                   the loop keeps the callback out of km_hc_request and out
 *                   of libcurl's own callbacks.
 * The one timer event of a request serves twice: as its timeout while the
 * request runs (the whole request, or with on_data the longest silence),
 * and as the deferred delivery once it is over.
 *
 * on_data runs inside libcurl: a request started or cancelled from there
 * is deferred by curl_loop.c until libcurl has returned.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#include <ctype.h>
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

#include "curl_loop.h"
#include "http_client.h"

#ifndef PACKAGE_VERSION /* configure passes it with -D (see DEFS) */
#error "PACKAGE_VERSION is not defined: build through configure"
#endif

#define HC_MAX_BODY (8u << 20)  /* max_body 0 means this (not streaming) */
#define HC_MAX_HEAD (64u << 10) /* status lines + header bytes we accept */
#define HC_BODY_MIN 4096        /* first body allocation */

struct km_hc_req {
    struct km_cl_xfer x;                          /* first: see struct km_cl_xfer */
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

static int64_t hc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
    if (r->cancelled) /* cancelled from on_data: stop now, freed by the loop */
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
    km_cl_xfer_stop(&r->x);
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
    km_cl_xfer_unlink(&r->x);
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
            km_cl_arm(r->ev, (int64_t)r->timeout_ms - idle);
            return;
        }
    }
    req_finish(r, CURLE_OPERATION_TIMEDOUT);
}

/* ops->done: libcurl finished the transfer, or could not take it. */
static void req_done(struct km_cl_xfer *x, CURLcode rc)
{
    req_finish((struct km_hc_req *)x, rc);
}

/* ops->discard: a zombie km_hc_cancel left (already not live), or
   km_hc_shutdown dropping a running request (cb never runs). */
static void req_discard(struct km_cl_xfer *x)
{
    struct km_hc_req *r = (struct km_hc_req *)x;

    req_unlive(r);
    req_free(r);
}

static const struct km_cl_ops req_ops = {req_done, req_discard};

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
    static char url[KM_CL_MAX_URL + 32];
    struct km_hc_req *r = NULL;
    struct km_cl *cl;
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
    if (km_cl_check_url(req->url, req->unix_socket != NULL, url, why, sizeof why) < 0)
        goto refuse;
    if (!(cl = km_cl_get(base)) || !(r = calloc(1, sizeof *r)))
        goto refuse;
    r->cb = cb;
    r->arg = arg;
    r->on_data = req->on_data;
    r->timeout_ms = req->timeout_ms ? req->timeout_ms : KM_CL_TIMEOUT_MS;
    /* streaming bodies may be endless (docker /events): no default limit */
    r->max_body = req->max_body ? req->max_body : req->on_data ? 0 : HC_MAX_BODY;
    if (r->max_body > SIZE_MAX / 2)
        r->max_body = SIZE_MAX / 2; /* keeps max_body + 1 from wrapping */
    if (km_cl_xfer_open(&r->x, cl, &req_ops, req->ca_file, req->tls_insecure,
                        r->timeout_ms) < 0 ||
        !(r->ev = evtimer_new(base, req_on_timer, r)) ||
        (req->unix_socket && !(r->unix_path = strdup(req->unix_socket))))
        goto fail;
    e = r->x.easy;
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
    if (km_cl_xfer_start(&r->x) < 0)
        goto fail;
    r->live = 1;
    km_hc_stats.started++;
    km_hc_stats.live++;
    r->last_ms = hc_now_ms();
    km_cl_arm(r->ev, r->timeout_ms);
    return r;
fail:
    km_cl_xfer_stop(&r->x);
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
    if (km_cl_xfer_release(&r->x))
        req_free(r);
    /* else a zombie: the loop discards it once libcurl has let go */
}

/* ---- per base ----------------------------------------------------------------- */

int km_hc_set_resolve(struct event_base *base, const char *const *entries)
{
    return km_cl_set_resolve(base, entries);
}

void km_hc_shutdown(struct event_base *base)
{
    km_cl_shutdown(base); /* discards every request (req_discard) and conn */
}
