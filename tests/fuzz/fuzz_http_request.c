/*
 * fuzz_http_request.c - bytes a client sends the HTTP server
 * (core/server_conn.c: http-parser, the request arena, the limits,
 * keep-alive and pipelining, the error answers), through a real connection
 * object on one end of a bufferevent pair (km_listener_adopt): no socket.
 *
 * Input: byte 0 picks [http] max_request_bytes (bit 0: 300, else 8192);
 * byte 1 where the stream is split in two writes; the rest: the stream.
 *
 * Properties, for every input:
 *   - each request handed to the handler has a known method, a target and
 *     the values of its Host, Connection, Upgrade, Content-Length and
 *     Expect headers that are byte strings of the input, all within
 *     max_request_bytes; a body within max_request_bytes, NUL-terminated
 *     after body_len, a string of the input unless chunked;
 *   - the answers are well-formed status lines with a status the server
 *     may give (100, 200, 400, 408, 413, 414, 431, 503), one per request
 *     handed over plus at most one refusal, and nothing is handed over
 *     after a refusal;
 *   - the stream split in two writes gives the same requests and the same
 *     answers as in one write, but that a refusal may give another 4xx
 *     (when byte 1 is odd);
 *   - once the client has gone, no connection is left counted or held.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "fuzz.h"
#include "log.h"
#include "server_conn.h"

static const uint8_t *in; /* this input's stream */
static size_t in_len;
static size_t limit; /* max_request_bytes */

/* What one run saw. */
struct run {
    unsigned long reqs;   /* requests handed to the handler */
    unsigned long digest; /* of their method, target, body */
    char status[1024][4]; /* answers' status codes, in order (the first 1024) */
    size_t n_status;      /* answers, all counted */
};
static struct run *cur;

static unsigned long mix(unsigned long h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ul;
    return h * 31 + n;
}

static uint8_t *unfolded; /* the input with each obs-fold's CRLF taken out */
static size_t unfolded_len;

/* s (len bytes) occurs in the input. */
static int in_input(const char *s, size_t len)
{
    return len == 0 || memmem(in, in_len, s, len) != NULL;
}

/* ... once each header line continued on the next (obs-fold: CRLF, then SP
   or HTAB) is joined to it, as http-parser hands the pieces over and the
   server joins them (RFC 7230 3.2.4 allows it). */
static int in_unfolded(const char *s, size_t len)
{
    return len == 0 || memmem(unfolded, unfolded_len, s, len) != NULL;
}

static int handler(void *arg, struct km_conn *c, struct km_req *req)
{
    static const char *const hdrs[] = {"Host", "Connection", "Upgrade", "Content-Length",
                                       "Expect"};
    FUZZ_CHECK(req->method && req->target && req->body);
    FUZZ_CHECK(strlen(req->method) > 0 && strlen(req->method) < 16);
    size_t tl = strlen(req->target);
    FUZZ_CHECK(tl < limit);
    FUZZ_CHECKF(in_input(req->target, tl), "target \"%s\" is not in the input",
                req->target);
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        const char *v = km_conn_header(c, hdrs[i]);
        if (v) {
            FUZZ_CHECK(strlen(v) < limit);
            FUZZ_CHECKF(in_unfolded(v, strlen(v)), "%s: \"%s\" is not in the input",
                        hdrs[i], v);
        }
    }
    FUZZ_CHECK(req->body_len <= limit);
    FUZZ_CHECK(req->body[req->body_len] == '\0');
    const char *te = km_conn_header(c, "Transfer-Encoding");
    if (!te)
        FUZZ_CHECK(in_input(req->body, req->body_len));
    cur->reqs++;
    cur->digest = mix(cur->digest, req->method, strlen(req->method));
    cur->digest = mix(cur->digest, req->target, tl);
    cur->digest = mix(cur->digest, req->body, req->body_len);
    if (req->upgrade) { /* as server_route.c answers an upgrade that is not /ws */
        km_conn_end(c);
        km_conn_detail(c, req, 400, NULL, "Upgrade is only supported on /ws");
        return 0;
    }
    km_conn_send(c, req, 200, "text/plain", NULL, "ok\n", 3);
    return 0;
}

static struct event_base *base;
static struct km_listener *listeners[2]; /* max_request_bytes 8192, 300 */
static struct km_listener *listener;     /* this input's */

/* The answers in out: their status codes into r. */
static void read_answers(struct evbuffer *out, struct run *r)
{
    size_t n = evbuffer_get_length(out);
    if (n == 0)
        return;
    char *p = (char *)evbuffer_pullup(out, (ev_ssize_t)n);
    FUZZ_CHECK(p != NULL);
    char *end = p + n;

    while (p < end) {
        char *h = memmem(p, (size_t)(end - p), "HTTP/1.1 ", 9);
        if (!h)
            break;
        FUZZ_CHECK(h + 12 <= end);
        if (r->n_status < 1024) {
            memcpy(r->status[r->n_status], h + 9, 3);
            r->status[r->n_status][3] = '\0';
        }
        r->n_status++;
        p = h + 12;
    }
    evbuffer_drain(out, n);
}

static void run(const uint8_t *s, size_t n, size_t cut, struct run *r)
{
    struct bufferevent *pair[2];

    memset(r, 0, sizeof *r);
    cur = r;
    FUZZ_CHECK(bufferevent_pair_new(base, 0, pair) == 0);
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    km_listener_adopt(listener, pair[0], "fuzz:1");
    FUZZ_CHECK(km_listener_connections(listener) == 1);
    struct evbuffer *out = bufferevent_get_input(pair[1]);
    bufferevent_write(pair[1], s, cut);
    event_base_loop(base, EVLOOP_NONBLOCK);
    read_answers(out, r);
    bufferevent_write(pair[1], s + cut, n - cut);
    event_base_loop(base, EVLOOP_NONBLOCK);
    read_answers(out, r);
    /* the client goes: EOF, then nothing of it may be left */
    bufferevent_flush(pair[1], EV_WRITE, BEV_FINISHED);
    event_base_loop(base, EVLOOP_NONBLOCK);
    read_answers(out, r);
    bufferevent_free(pair[1]);
    event_base_loop(base, EVLOOP_NONBLOCK);
    FUZZ_CHECKF(km_listener_connections(listener) == 0, "%zu connections left",
                km_listener_connections(listener));
    cur = NULL;
}

static void check_answers(const struct run *r)
{
    unsigned long ok = 0, refused = 0;
    for (size_t i = 0; i < r->n_status && i < 1024; i++) {
        const char *st = r->status[i];
        FUZZ_CHECKF(!strcmp(st, "100") || !strcmp(st, "200") || !strcmp(st, "400") ||
                        !strcmp(st, "408") || !strcmp(st, "413") || !strcmp(st, "414") ||
                        !strcmp(st, "431") || !strcmp(st, "503"),
                    "status %s", st);
        if (!strcmp(st, "100"))
            continue;
        FUZZ_CHECKF(refused == 0, "an answer (%s) after a refusal", st);
        if (!strcmp(st, "200"))
            ok++;
        else
            refused++;
    }
    /* every request handed over was answered (an upgrade: 400, which ends) */
    if (r->n_status <= 1024)
        FUZZ_CHECKF(ok + refused >= r->reqs && ok <= r->reqs,
                    "%lu requests, %lu ok, %lu refused", r->reqs, ok, refused);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct run whole, split;
    char err[256];

    if (size < 2)
        return 0;
    if (!base) {
        km_log_set_level(KM_LOG_ERROR); /* no line per refused request */
        base = event_base_new();
        FUZZ_CHECK(base != NULL);
    }
    limit = data[0] & 1 ? 300 : 8192;
    listener = listeners[data[0] & 1];
    if (!listener) { /* bound once (loopback, ephemeral port), never accepts */
        listener = km_listener_new(base, "127.0.0.1", 0, 16, limit, handler, NULL, err,
                                   sizeof err);
        FUZZ_CHECKF(listener != NULL, "%s", err);
        km_listener_set_request_timeout(listener, 30);
        listeners[data[0] & 1] = listener;
    }
    in = data + 2;
    in_len = size - 2;
    unfolded = realloc(unfolded, in_len + 1);
    FUZZ_CHECK(unfolded != NULL);
    unfolded_len = 0;
    for (size_t i = 0; i < in_len; i++) {
        /* the CR LF (or a bare LF, which http-parser takes too) goes, the
           blank stays */
        if (in[i] == '\r' && i + 2 < in_len && in[i + 1] == '\n' &&
            (in[i + 2] == ' ' || in[i + 2] == '\t')) {
            i++;
            continue;
        }
        if (in[i] == '\n' && i + 1 < in_len && (in[i + 1] == ' ' || in[i + 1] == '\t'))
            continue;
        unfolded[unfolded_len++] = in[i];
    }
    run(in, in_len, in_len, &whole);
    check_answers(&whole);
    /* the split run on half the inputs (byte 1 odd): each run is most of the
       time spent */
    if (!(data[1] & 1))
        return 0;
    size_t cut = in_len * data[1] / 256;
    run(in, in_len, cut, &split);
    FUZZ_CHECK(whole.reqs == split.reqs && whole.digest == split.digest);
    FUZZ_CHECK(whole.n_status == split.n_status);
    /* the same answers; a refusal may name another limit or error (which one
       a request breaks first can depend on where a read ends: the limits
       are checked as http-parser hands the pieces over) */
    for (size_t i = 0; i < whole.n_status && i < 1024; i++)
        FUZZ_CHECKF(strcmp(whole.status[i], split.status[i]) == 0 ||
                        (whole.status[i][0] == '4' && split.status[i][0] == '4'),
                    "answer %zu: %s whole, %s split at %zu", i, whole.status[i],
                    split.status[i], cut);
    return 0;
}
