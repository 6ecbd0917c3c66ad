/*
 * ws_client.c - outbound WebSocket connections for plugins.
 *
 * Life of a connection (struct km_wsc):
 *
 *   km_wsc_open      checks the url and headers, builds the Upgrade
 *        |           request, starts a connect-only transfer on the loop's
 *        |           CURLM and arms the handshake timer
 *   wsc_on_connected libcurl has connected (and done TLS): watch the
 *        |           socket, send the request (curl_easy_send)
 *   wsc_read_answer  read the answer (curl_easy_recv) up to its blank line:
 *        |           101, Upgrade, Connection, Sec-WebSocket-Accept; bytes
 *        |           after it are the first frames
 *   wsc_opened       wslay client context; on_open
 *   wsc_pump         wslay_event_recv (on_message per message; pings are
 *        |           answered and the peer's close echoed by wslay), then
 *        |           wslay_event_send while the socket takes it
 *   wsc_end          over: socket and transfer dropped at once, the timer
 *                    activated so that on_close runs from the loop (never
 *                    from inside one of our functions the plugin called)
 *
 * The one timer of a connection serves twice, like a request's in
 * http_client.c: handshake timeout, then deferred on_close.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "http_client.h"
#include "http_list.h"
#include "ws_client.h"

#ifndef PACKAGE_VERSION /* configure passes it with -D (see DEFS) */
#error "PACKAGE_VERSION is not defined: build through configure"
#endif

#define WSC_TIMEOUT_MS  10000      /* timeout_ms 0 means this */
#define WSC_MAX_MESSAGE (1u << 20) /* max_message 0 means this */
#define WSC_MAX_ANSWER  8192       /* bytes of the handshake answer we accept */
#define WSC_MAX_URL     8192       /* longest url we accept */
#define WSC_MAX_HEADERS 8192       /* bytes of extra handshake headers */
#define WSC_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct km_wsc_stats km_wsc_stats;

/* Where a connection is. Only moves forward. */
enum wsc_state {
    WSC_CONNECTING, /* libcurl resolves, connects, does TLS */
    WSC_HANDSHAKE,  /* Upgrade request out, waiting for the 101 */
    WSC_OPEN,       /* frames */
    WSC_CLOSED,     /* over: the timer runs on_close */
};

struct km_wsc {
    struct event_base *base;    /* the loop */
    enum wsc_state state;       /* see above */
    struct km_wsc_handlers h;   /* where news go */
    struct km_hc_conn *conn;    /* the connect-only transfer (owned) */
    CURL *easy;                 /* its easy handle, once connected (borrowed) */
    struct event *rev;          /* socket readable (persistent) */
    struct event *wev;          /* socket writable (one-shot, when blocked) */
    struct event *timer;        /* handshake timeout, then deferred on_close */
    wslay_event_context_ptr ws; /* framing, once open */
    unsigned timeout_ms;        /* connect + handshake */
    size_t max_message;         /* longest message accepted */
    char *out;                  /* the Upgrade request (owned) */
    size_t out_len, out_off;    /* its length, bytes sent */
    char accept[32];            /* the Sec-WebSocket-Accept we expect */
    char *in;                   /* the answer, then frames that came with it */
    size_t in_len, in_off;      /* bytes in `in`, bytes handed to wslay */
    int busy;                   /* inside a handler (or wslay calling one) */
    int user_closed;            /* km_wsc_close while busy: free on the way out */
    int delivering;             /* on_close is running */
    int write_blocked;          /* the socket took less than offered */
    int eof;                    /* the peer closed the stream */
    int peer_code;              /* its close frame's code, once received */
    char peer_reason[128];      /* its close frame's reason */
    char io_error[256];         /* why a send or receive failed */
    struct km_ws_closed info;   /* for on_close */
    char reason[512];           /* info.reason */
    const unsigned char *feed;  /* km_wsc_test_stream: the peer's bytes (borrowed)
                                   instead of a socket; NULL: the socket */
    size_t feed_len;            /* bytes of feed not yet read */
    size_t feed_chunk;          /* at most this many per read (0: all) */
};

static void wsc_pump(struct km_wsc *c);

/* ---- small helpers ------------------------------------------------------ */

static void wsc_arm(struct event *ev, unsigned ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(ev, &tv);
}

/* 1 when s (len bytes) is a non-empty RFC 7230 token. */
static int wsc_is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
            return 0;
    return 1;
}

/* 1 when the header line names `name` (case-insensitive). */
static int wsc_names(const char *line, const char *name)
{
    size_t n = strlen(name);

    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* 1 when one of the header lines names `name`. */
static int wsc_has_header(const char *const *headers, const char *name)
{
    for (; headers && *headers; headers++)
        if (wsc_names(*headers, name))
            return 1;
    return 0;
}

/* Random key and the Accept the server must answer with (RFC 6455 4.1). */
static int wsc_make_key(char key[25], char accept[32])
{
    unsigned char raw[16], digest[SHA_DIGEST_LENGTH];
    char cat[64];

    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw); /* 24 chars + NUL */
    snprintf(cat, sizeof cat, "%s%s", key, WSC_GUID);
    SHA1((const unsigned char *)cat, strlen(cat), digest);
    EVP_EncodeBlock((unsigned char *)accept, digest, sizeof digest); /* 28 + NUL */
    return 0;
}

static void wsc_free(struct km_wsc *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->timer)
        event_free(c->timer);
    km_hc_conn_free(c->conn); /* after the events: they watch its socket */
    if (c->ws)
        wslay_event_context_free(c->ws);
    free(c->out);
    free(c->in);
    free(c);
}

/* Stops watching the socket and drops the connection. */
static void wsc_drop(struct km_wsc *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    c->rev = c->wev = NULL;
    km_hc_conn_free(c->conn);
    c->conn = NULL;
    c->easy = NULL;
}

/*
 * The connection is over: what `info` says is kept for on_close, the
 * socket goes now, and the timer delivers from the loop.
 */
static void wsc_end(struct km_wsc *c, int by_peer, int code, int http_status,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void wsc_end(struct km_wsc *c, int by_peer, int code, int http_status,
                    const char *fmt, ...)
{
    va_list ap;

    if (c->state == WSC_CLOSED)
        return;
    c->info.opened = c->state == WSC_OPEN;
    c->info.by_peer = by_peer;
    c->info.code = code;
    c->info.http_status = http_status;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    c->info.reason = c->reason;
    c->state = WSC_CLOSED;
    wsc_drop(c);
    event_del(c->timer);
    event_active(c->timer, EV_TIMEOUT, 1);
}

/* A send or receive failed, or the stream ended: say the best we know. */
static void wsc_end_io(struct km_wsc *c)
{
    if (c->peer_code)
        wsc_end(c, 1, c->peer_code, 0, "%s", c->peer_reason);
    else if (c->eof)
        wsc_end(c, 1, 0, 0, "connection closed by the peer");
    else
        wsc_end(c, 0, 0, 0, "%s", c->io_error[0] ? c->io_error : "WebSocket failure");
}

/* The timer: handshake timeout, or on_close once over. */
static void wsc_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct km_wsc *c = arg;

    if (c->state != WSC_CLOSED) {
        wsc_end(c, 0, 0, 0, "timed out after %u ms", c->timeout_ms);
        return; /* re-activated us */
    }
    km_wsc_stats.live--;
    c->delivering = 1;
    c->h.on_close(c, &c->info, c->h.arg);
    wsc_free(c);
}

/* ---- the socket (or a test stream) ------------------------------------------ */

/* curl_easy_recv, or the next bytes of a test stream (at its end: CURLE_OK
   and no byte, as a closed socket gives). */
static CURLcode wsc_sock_recv(struct km_wsc *c, void *buf, size_t len, size_t *n)
{
    if (!c->feed)
        return curl_easy_recv(c->easy, buf, len, n);
    *n = len < c->feed_len ? len : c->feed_len;
    if (c->feed_chunk && *n > c->feed_chunk)
        *n = c->feed_chunk;
    memcpy(buf, c->feed, *n);
    c->feed += *n;
    c->feed_len -= *n;
    return CURLE_OK;
}

/* curl_easy_send; a test stream's peer takes everything. */
static CURLcode wsc_sock_send(struct km_wsc *c, const void *data, size_t len, size_t *n)
{
    if (!c->feed)
        return curl_easy_send(c->easy, data, len, n);
    *n = len;
    return CURLE_OK;
}

/* ---- wslay callbacks ------------------------------------------------------ */

/* Bytes for wslay: first what came with the 101, then the socket. */
static ssize_t wsc_recv(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags,
                        void *arg)
{
    struct km_wsc *c = arg;
    size_t n = 0;
    CURLcode rc;
    int e;

    if (c->in_off < c->in_len) {
        n = c->in_len - c->in_off < len ? c->in_len - c->in_off : len;
        memcpy(buf, c->in + c->in_off, n);
        c->in_off += n;
        return (ssize_t)n;
    }
    errno = 0;
    rc = wsc_sock_recv(c, buf, len, &n);
    e = errno;
    if (rc == CURLE_AGAIN) {
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc != CURLE_OK || n == 0) {
        if (rc != CURLE_OK)
            km_hc_error_text(rc, NULL, e, NULL, c->io_error, sizeof c->io_error);
        else
            c->eof = 1;
        wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)n;
}

static ssize_t wsc_send(wslay_event_context_ptr ws, const uint8_t *data, size_t len,
                        int flags, void *arg)
{
    struct km_wsc *c = arg;
    size_t n = 0;
    CURLcode rc;
    int e;

    errno = 0;
    rc = wsc_sock_send(c, data, len, &n);
    e = errno;
    if (rc == CURLE_AGAIN || (rc == CURLE_OK && n == 0)) {
        c->write_blocked = 1;
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (rc != CURLE_OK) {
        km_hc_error_text(rc, NULL, e, NULL, c->io_error, sizeof c->io_error);
        wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)n;
}

/* Masking keys (RFC 6455 5.3: unpredictable), from OpenSSL's CSPRNG. */
static int wsc_genmask(wslay_event_context_ptr ws, uint8_t *buf, size_t len, void *arg)
{
    if (RAND_bytes(buf, (int)len) == 1)
        return 0;
    wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static void wsc_on_msg(wslay_event_context_ptr ws,
                       const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
    struct km_wsc *c = arg;

    if (c->user_closed)
        return; /* closed from an earlier message of this read */
    if (a->opcode == WSLAY_TEXT_FRAME || a->opcode == WSLAY_BINARY_FRAME) {
        if (c->h.on_message)
            /* wslay gives NULL for an empty message; the plugin gets "" */
            c->h.on_message(c, a->opcode == WSLAY_BINARY_FRAME,
                            a->msg ? (const char *)a->msg : "", a->msg_length, c->h.arg);
        if (c->user_closed)
            wslay_event_shutdown_read(ws); /* read no further */
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        size_t n = a->msg_length > 2 ? a->msg_length - 2 : 0;

        if (n >= sizeof c->peer_reason)
            n = sizeof c->peer_reason - 1;
        if (n)
            memcpy(c->peer_reason, a->msg + 2, n);
        c->peer_reason[n] = '\0';
        c->peer_code = a->status_code ? a->status_code : 1005;
    }
    /* pings: wslay queues the pong itself; pongs: nothing to do */
}

/* ---- open connection ------------------------------------------------------ */

/* Sends what wslay has queued while the socket takes it; notices the end. */
static void wsc_flush(struct km_wsc *c)
{
    if (c->state != WSC_OPEN)
        return;
    if (wslay_event_want_write(c->ws)) {
        c->write_blocked = 0;
        if (wslay_event_send(c->ws) != 0) {
            wsc_end_io(c);
            return;
        }
        if (wslay_event_want_write(c->ws) && c->write_blocked)
            event_add(c->wev, NULL);
    }
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
        unsigned sent = wslay_event_get_status_code_sent(c->ws);

        if (c->peer_code)
            wsc_end(c, 1, c->peer_code, 0, "%s", c->peer_reason);
        else
            wsc_end(c, 0, 0, 0, "closed by katomon with %u (%s)", sent,
                    sent == 1009   ? "message too big"
                    : sent == 1002 ? "protocol error"
                                   : "bad data");
    }
}

/* Reads what there is (handing messages over), then sends. */
static void wsc_pump(struct km_wsc *c)
{
    int rc;

    c->busy++;
    rc = wslay_event_recv(c->ws);
    c->busy--;
    if (c->user_closed) {
        km_wsc_close(c);
        return;
    }
    if (rc != 0) {
        wsc_end_io(c);
        return;
    }
    wsc_flush(c);
}

static void wsc_opened(struct km_wsc *c)
{
    static const struct wslay_event_callbacks cbs = {
        wsc_recv, wsc_send, wsc_genmask, NULL, NULL, NULL, wsc_on_msg};

    if (wslay_event_context_client_init(&c->ws, &cbs, c) != 0) {
        wsc_end(c, 0, 0, 0, "out of memory");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, c->max_message);
    c->state = WSC_OPEN;
    event_del(c->timer); /* open: no timeout from here on */
    if (c->h.on_open) {
        c->busy++;
        c->h.on_open(c, c->h.arg);
        c->busy--;
        if (c->user_closed) {
            km_wsc_close(c);
            return;
        }
    }
    wsc_pump(c); /* frames that came with the 101, and what waits behind */
}

/* ---- handshake ---------------------------------------------------------------- */

/* The value of header `name` in the answer's header block, or NULL;
 *len gets its length. */
static const char *wsc_header(const char *head, const char *name, size_t *len)
{
    const char *line = strstr(head, "\r\n");

    while (line && line[2] != '\r') {
        const char *start = line + 2, *end = strstr(start, "\r\n");

        if (!end)
            return NULL;
        if (wsc_names(start, name)) {
            const char *v = start + strlen(name) + 1;

            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            *len = (size_t)(end - v);
            while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
                (*len)--;
            return v;
        }
        line = end;
    }
    return NULL;
}

/* Checks the answer's header block (NUL-terminated, up to the blank line). */
static void wsc_check_answer(struct km_wsc *c, char *head)
{
    int code = 0;
    size_t len;
    const char *v;

    if (sscanf(head, "HTTP/1.%*d %d", &code) != 1) {
        wsc_end(c, 0, 0, 0, "bad handshake: not an HTTP answer");
        return;
    }
    if (code != 101) {
        wsc_end(c, 0, 0, code, "HTTP %d instead of 101 Switching Protocols", code);
        return;
    }
    v = wsc_header(head, "Upgrade", &len);
    if (!v || !km_list_has(v, len, "websocket")) {
        wsc_end(c, 0, 0, 0, "bad handshake: no Upgrade: websocket");
        return;
    }
    v = wsc_header(head, "Connection", &len);
    if (!v || !km_list_has(v, len, "upgrade")) {
        wsc_end(c, 0, 0, 0, "bad handshake: no Connection: Upgrade");
        return;
    }
    v = wsc_header(head, "Sec-WebSocket-Accept", &len);
    if (!v || len != strlen(c->accept) || memcmp(v, c->accept, len) != 0) {
        wsc_end(c, 0, 0, 0, "bad handshake: wrong Sec-WebSocket-Accept");
        return;
    }
    wsc_opened(c);
}

/* Reads the answer up to its blank line; what follows stays in c->in. */
static void wsc_read_answer(struct km_wsc *c)
{
    for (;;) {
        size_t n = 0, room = WSC_MAX_ANSWER - c->in_len;
        CURLcode rc;
        char *end;
        int e;

        if (room == 0) {
            wsc_end(c, 0, 0, 0, "bad handshake: answer larger than %u bytes",
                    WSC_MAX_ANSWER);
            return;
        }
        errno = 0;
        rc = wsc_sock_recv(c, c->in + c->in_len, room, &n);
        e = errno;
        if (rc == CURLE_AGAIN)
            return; /* more later */
        if (rc != CURLE_OK) {
            km_hc_error_text(rc, NULL, e, NULL, c->io_error, sizeof c->io_error);
            wsc_end(c, 0, 0, 0, "%s", c->io_error);
            return;
        }
        if (n == 0) {
            wsc_end(c, 1, 0, 0, "connection closed by the peer during the handshake");
            return;
        }
        c->in_len += n;
        c->in[c->in_len] = '\0';
        end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (end) {
            c->in_off = (size_t)(end - c->in) + 4; /* frames start here */
            end[2] = '\0';                         /* the head, with its last CRLF */
            wsc_check_answer(c, c->in);
            return;
        }
    }
}

/* Sends the rest of the Upgrade request. */
static void wsc_send_request(struct km_wsc *c)
{
    while (c->out_off < c->out_len) {
        size_t n = 0;
        CURLcode rc;
        int e;

        errno = 0;
        rc = curl_easy_send(c->easy, c->out + c->out_off, c->out_len - c->out_off, &n);
        e = errno;
        if (rc == CURLE_AGAIN || (rc == CURLE_OK && n == 0)) {
            event_add(c->wev, NULL);
            return;
        }
        if (rc != CURLE_OK) {
            km_hc_error_text(rc, NULL, e, NULL, c->io_error, sizeof c->io_error);
            wsc_end(c, 0, 0, 0, "%s", c->io_error);
            return;
        }
        c->out_off += n;
    }
    free(c->out);
    c->out = NULL;
}

static void wsc_on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct km_wsc *c = arg;

    if (c->state == WSC_HANDSHAKE)
        wsc_read_answer(c);
    else if (c->state == WSC_OPEN)
        wsc_pump(c);
}

static void wsc_on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct km_wsc *c = arg;

    if (c->state == WSC_HANDSHAKE)
        wsc_send_request(c);
    else if (c->state == WSC_OPEN)
        wsc_flush(c);
}

/* libcurl is done connecting (and with TLS), or failed to. */
static void wsc_on_connected(struct km_hc_conn *conn, const char *error, void *arg)
{
    struct km_wsc *c = arg;
    curl_socket_t fd;

    if (error) {
        wsc_end(c, 0, 0, 0, "%s", error);
        return;
    }
    c->easy = km_hc_conn_easy(conn);
    fd = km_hc_conn_socket(conn);
    if (!c->easy || fd == CURL_SOCKET_BAD) {
        wsc_end(c, 0, 0, 0, "connected, yet libcurl has no socket");
        return;
    }
    c->rev = event_new(c->base, fd, EV_READ | EV_PERSIST, wsc_on_readable, c);
    c->wev = event_new(c->base, fd, EV_WRITE, wsc_on_writable, c);
    if (!c->rev || !c->wev || event_add(c->rev, NULL) < 0) {
        wsc_end(c, 0, 0, 0, "out of memory");
        return;
    }
    c->state = WSC_HANDSHAKE;
    wsc_send_request(c);
}

/* ---- starting -------------------------------------------------------------- */

/*
 * Splits opts->url into the url libcurl connects to (http/https, host,
 * port), the request target and the Host header, then builds the Upgrade
 * request into c->out. 0, or -1 with why filled.
 */
static int wsc_prepare(struct km_wsc *c, const struct km_ws_client_opts *o,
                       char *conn_url, size_t conn_url_len, char *why, size_t whylen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL,
         *user = NULL, key[25], port_part[16];
    const char *tls;
    size_t cap, n = 0;
    long portn = 0, def_port;
    int rc = -1;

    if (!u) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (strlen(o->url) > WSC_MAX_URL) {
        snprintf(why, whylen, "url longer than %u bytes", WSC_MAX_URL);
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, o->url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        snprintf(why, whylen, "bad url \"%.200s\": want ws(s)://host[:port]/path",
                 o->url);
        goto out;
    }
    if (!strcmp(scheme, "ws") || !strcmp(scheme, "http"))
        tls = "http";
    else if (!strcmp(scheme, "wss") || !strcmp(scheme, "https"))
        tls = "https";
    else {
        snprintf(why, whylen, "bad url \"%.200s\": want ws(s)://host[:port]/path",
                 o->url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(why, whylen, "credentials in the url are not supported (url %.200s)",
                 o->url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
        portn = strtol(port, NULL, 10);
        if (portn <= 0 || portn > 65535) {
            snprintf(why, whylen, "bad port in url \"%.200s\"", o->url);
            goto out;
        }
    }
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    curl_url_get(u, CURLUPART_QUERY, &query, 0);
    def_port = strcmp(tls, "https") ? 80 : 443;
    if (!portn)
        portn = def_port;
    /* host comes with its [] when it is an IPv6 literal */
    snprintf(conn_url, conn_url_len, "%s://%s:%ld/", tls, host, portn);

    for (const char *const *h = o->headers; h && *h; h++) {
        static const char *const ours[] = {
            "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
            NULL};
        const char *colon = strchr(*h, ':');

        if (!colon || !wsc_is_token(*h, (size_t)(colon - *h)) || strpbrk(*h, "\r\n")) {
            snprintf(why, whylen, "bad header line \"%.100s\"", *h);
            goto out;
        }
        for (int i = 0; ours[i]; i++)
            if (wsc_names(*h, ours[i])) {
                snprintf(why, whylen, "header %s is set by the WebSocket client itself",
                         ours[i]);
                goto out;
            }
        n += strlen(*h) + 2;
    }
    if (n > WSC_MAX_HEADERS) {
        snprintf(why, whylen, "handshake headers longer than %u bytes", WSC_MAX_HEADERS);
        goto out;
    }
    if (wsc_make_key(key, c->accept) < 0) {
        snprintf(why, whylen, "no random bytes for the handshake key");
        goto out;
    }
    cap = strlen(o->url) + strlen(host) + n + 512;
    if (!(c->out = malloc(cap))) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    port_part[0] = '\0'; /* Host: names the port unless it is the default */
    if (portn != def_port)
        snprintf(port_part, sizeof port_part, ":%ld", portn);
    c->out_len = (size_t)snprintf(
        c->out, cap,
        "GET %s%s%s HTTP/1.1\r\nHost: %s%s\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
        path && *path ? path : "/", query ? "?" : "", query ? query : "", host, port_part,
        key);
    if (!wsc_has_header(o->headers, "User-Agent"))
        c->out_len += (size_t)snprintf(c->out + c->out_len, cap - c->out_len,
                                       "User-Agent: katomon/%s\r\n", PACKAGE_VERSION);
    for (const char *const *h = o->headers; h && *h; h++)
        c->out_len +=
            (size_t)snprintf(c->out + c->out_len, cap - c->out_len, "%s\r\n", *h);
    c->out_len += (size_t)snprintf(c->out + c->out_len, cap - c->out_len, "\r\n");
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

struct km_wsc *km_wsc_open(struct event_base *base, const struct km_ws_client_opts *o,
                           const struct km_wsc_handlers *h, char *err, size_t errlen)
{
    char why[256] = "out of memory", conn_url[WSC_MAX_URL + 64];
    struct km_hc_target t = {0};
    struct km_wsc *c;

    if (!base || !o || !o->url || !h || !h->on_close) {
        snprintf(why, sizeof why, "missing event base, url or on_close");
        goto refuse;
    }
    if (!(c = calloc(1, sizeof *c)))
        goto refuse;
    c->base = base;
    c->h = *h;
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : WSC_TIMEOUT_MS;
    c->max_message = o->max_message ? o->max_message : WSC_MAX_MESSAGE;
    if (wsc_prepare(c, o, conn_url, sizeof conn_url, why, sizeof why) < 0 ||
        !(c->in = malloc(WSC_MAX_ANSWER + 1)) ||
        !(c->timer = evtimer_new(base, wsc_on_timer, c)))
        goto fail;
    t.url = conn_url;
    t.ca_file = o->ca_file;
    t.tls_insecure = o->tls_insecure;
    t.timeout_ms = c->timeout_ms;
    c->conn = km_hc_connect(base, &t, wsc_on_connected, c, why, sizeof why);
    if (!c->conn)
        goto fail;
    wsc_arm(c->timer, c->timeout_ms);
    km_wsc_stats.live++;
    return c;
fail:
    wsc_free(c);
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return NULL;
}

struct km_wsc *km_wsc_test_stream(struct event_base *base, const void *data, size_t len,
                                  size_t chunk, size_t max_message,
                                  const struct km_wsc_handlers *h)
{
    struct km_wsc *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->base = base;
    c->h = *h;
    c->timeout_ms = WSC_TIMEOUT_MS;
    c->max_message = max_message ? max_message : WSC_MAX_MESSAGE;
    c->feed = len ? data : (const unsigned char *)"";
    c->feed_len = len;
    c->feed_chunk = chunk;
    /* RFC 6455 section 1.3's example key "dGhlIHNhbXBsZSBub25jZQ==" */
    snprintf(c->accept, sizeof c->accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    if (!(c->in = malloc(WSC_MAX_ANSWER + 1)) ||
        !(c->timer = evtimer_new(base, wsc_on_timer, c))) {
        wsc_free(c);
        return NULL;
    }
    km_wsc_stats.live++;
    c->state = WSC_HANDSHAKE;
    c->busy++; /* a handler's km_wsc_close waits until we return */
    wsc_read_answer(c);
    /* a short read leaves wslay waiting for the socket to be readable again:
       here it always is, until the stream's end has been seen */
    while (c->state == WSC_OPEN && !c->user_closed) {
        size_t left = c->feed_len + (c->in_len - c->in_off);
        wsc_pump(c);
        if (c->state == WSC_OPEN && left == c->feed_len + (c->in_len - c->in_off))
            break; /* nothing read: wslay reads no more (its close came) */
    }
    c->busy--;
    if (c->user_closed) {
        km_wsc_close(c);
        return NULL;
    }
    return c;
}

int km_wsc_send_text(struct km_wsc *c, const char *text, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};

    if (!c || c->state != WSC_OPEN || c->user_closed || (!text && len))
        return -1;
    if (wslay_event_queue_msg(c->ws, &m) != 0) /* copies text */
        return -1;
    if (!c->busy)
        wsc_flush(c); /* the end, if any, is reported later by the timer */
    return 0;
}

void km_wsc_close(struct km_wsc *c)
{
    if (!c || c->delivering)
        return;
    if (c->busy) { /* inside one of c's handlers: free once it returns */
        c->user_closed = 1;
        return;
    }
    if (c->state == WSC_OPEN && c->ws && !wslay_event_get_close_sent(c->ws) &&
        wslay_event_queue_close(c->ws, 1000, NULL, 0) == 0)
        wslay_event_send(c->ws); /* best effort: what the socket takes now */
    km_wsc_stats.live--;
    wsc_free(c);
}
