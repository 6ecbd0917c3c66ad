/*
 * wsclient.c - see wsclient.h.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>
#include <wslay/wslay.h>

#include "wsclient.h"
#include "ws_handshake.h" /* km_ws_accept_key (checked against RFC 6455's example in check_ws) */

struct wsc {
    struct event_base *base;     /* caller's loop */
    struct bufferevent *bev;     /* the socket (owned) */
    wslay_event_context_ptr ctx; /* frame parser once open (owned) */
    char key[32];                /* Sec-WebSocket-Key sent; "" when not checked */
    int status;                  /* HTTP status of the handshake; 0 while none */
    int open;                    /* 101 received and accepted */
    int done;                    /* handshake over, either way */
    int eof;                     /* TCP connection over */
    int muted;                   /* write nothing (dead peer) */
    int closed;                  /* close frame received */
    int close_code;              /* its code */
    char *close_reason;          /* its reason (owned) */
    char *response;              /* HTTP response text (owned) */
    size_t response_len;         /* bytes in response */
    struct wsc_msg *head;        /* received messages, oldest first */
    struct wsc_msg *tail;        /* newest */
    size_t n_pending;            /* messages in the queue */
    uint64_t n_received;         /* messages ever */
    uint64_t bytes_received;     /* payload bytes ever */
    uint64_t pings;              /* pings from the server */
};

static int g_rcvbuf;

void wsc_set_rcvbuf(int bytes)
{
    g_rcvbuf = bytes;
}

/* ---- waiting ---- */

static int64_t wsc_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wsc_noop(evutil_socket_t fd, short what, void *arg) {}

int wsc_run_until(struct event_base *base, int (*done)(void *arg), void *arg,
                  int timeout_ms)
{
    int64_t deadline = wsc_ms() + timeout_ms;
    struct event *t = evtimer_new(base, wsc_noop, NULL);

    while (!done(arg)) {
        int64_t rem = deadline - wsc_ms();
        if (rem <= 0)
            break;
        struct timeval tv = {0, (rem > 20 ? 20 : rem) * 1000};
        evtimer_add(t, &tv);
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(t);
    return done(arg);
}

static int wsc_never(void *arg)
{
    return 0;
}

void wsc_run_for(struct event_base *base, int ms)
{
    wsc_run_until(base, wsc_never, NULL, ms);
}

/* ---- wslay callbacks ---- */

static ssize_t wsc_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                           int flags, void *user_data)
{
    struct wsc *c = user_data;
    int n = evbuffer_remove(bufferevent_get_input(c->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t wsc_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                           int flags, void *user_data)
{
    struct wsc *c = user_data;
    if (c->muted) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
    return (ssize_t)len;
}

static int wsc_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                          void *user_data)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rand();
    return 0;
}

static void wsc_push(struct wsc *c, int opcode, const uint8_t *data, size_t len)
{
    struct wsc_msg *m = calloc(1, sizeof *m);
    m->opcode = opcode;
    m->data = malloc(len + 1);
    memcpy(m->data, data, len);
    m->data[len] = '\0';
    m->len = len;
    if (c->tail)
        c->tail->next = m;
    else
        c->head = m;
    c->tail = m;
    c->n_pending++;
    c->n_received++;
    c->bytes_received += len;
}

static void wsc_on_msg_cb(wslay_event_context_ptr ctx,
                          const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
    struct wsc *c = user_data;

    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        c->closed = 1;
        c->close_code = arg->status_code;
        free(c->close_reason);
        size_t rl = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        c->close_reason = calloc(1, rl + 1);
        if (rl)
            memcpy(c->close_reason, arg->msg + 2, rl);
    } else if (arg->opcode == WSLAY_PING) {
        c->pings++;
    } else if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        wsc_push(c, arg->opcode, arg->msg, arg->msg_length);
    }
}

/* ---- socket ---- */

static void wsc_flush(struct wsc *c)
{
    if (c->ctx && !c->muted)
        wslay_event_send(c->ctx);
}

/* Parses the handshake response once its head is in. */
static void wsc_handshake(struct wsc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    size_t head;
    char *text;

    if (end.pos < 0)
        return;
    head = (size_t)end.pos + 4;
    text = malloc(head + 1);
    evbuffer_copyout(in, text, head);
    text[head] = '\0';
    if (sscanf(text, "HTTP/1.%*d %d", &c->status) != 1)
        c->status = -1;
    if (c->status == 101) {
        char want[29];
        const char *h = strcasestr(text, "\r\nSec-WebSocket-Accept:");
        evbuffer_drain(in, head);
        km_ws_accept_key(c->key, want);
        if (c->key[0] && (!h || strncmp(h + 23 + strspn(h + 23, " "), want, 28) != 0)) {
            c->status = -2; /* wrong accept key */
            free(text);
            c->done = 1;
            return;
        }
        free(text);
        static const struct wslay_event_callbacks cbs = {
            wsc_recv_cb, wsc_send_cb, wsc_genmask_cb, NULL, NULL, NULL, wsc_on_msg_cb};
        wslay_event_context_client_init(&c->ctx, &cbs, c);
        wslay_event_config_set_max_recv_msg_length(c->ctx, 64u << 20);
        c->open = 1;
        c->done = 1;
        return;
    }
    free(text);
    /* not upgraded: the rest of the response comes with EOF or Content-Length */
    c->done = 1;
}

static void wsc_take_response(struct wsc *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);
    c->response = realloc(c->response, c->response_len + n + 1);
    evbuffer_remove(in, c->response + c->response_len, n);
    c->response_len += n;
    c->response[c->response_len] = '\0';
}

static void wsc_read_cb(struct bufferevent *bev, void *arg)
{
    struct wsc *c = arg;

    if (!c->done)
        wsc_handshake(c);
    if (c->done && !c->open) {
        wsc_take_response(c);
        return;
    }
    if (c->open) {
        wslay_event_recv(c->ctx);
        wsc_flush(c);
    }
}

static void wsc_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wsc *c = arg;

    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        wsc_read_cb(bev, c); /* whatever is left */
        c->eof = 1;
        c->done = 1;
        if (!c->open && !c->response)
            wsc_take_response(c);
        bufferevent_disable(bev, EV_READ | EV_WRITE);
    }
}

static struct wsc *wsc_start(struct event_base *base, int port, const char *request,
                             const char *key)
{
    struct wsc *c = calloc(1, sizeof *c);
    struct sockaddr_in sin = {0};

    c->base = base;
    if (key)
        snprintf(c->key, sizeof c->key, "%s", key);
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bufferevent_setcb(c->bev, wsc_read_cb, NULL, wsc_event_cb, c);
    if (g_rcvbuf > 0) {
        /* the socket must exist before connect for SO_RCVBUF to bound the window */
        evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &g_rcvbuf, sizeof g_rcvbuf);
        evutil_make_socket_nonblocking(fd);
        bufferevent_setfd(c->bev, fd);
    }
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof sin) != 0) {
        c->eof = c->done = 1;
        c->status = -1;
        return c;
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    evbuffer_add(bufferevent_get_output(c->bev), request, strlen(request));
    return c;
}

struct wsc *wsc_connect_raw(struct event_base *base, int port, const char *request,
                            const char *key)
{
    return wsc_start(base, port, request, key);
}

struct wsc *wsc_connect(struct event_base *base, int port, const char *path,
                        const char *extra_headers)
{
    unsigned char raw[16];
    char key[32], req[4096];
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (int i = 0; i < 16; i++)
        raw[i] = (unsigned char)rand();
    /* base64 of 16 bytes: 22 characters + "==" */
    for (int i = 0, o = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 |
                     (i + 1 < 16 ? (uint32_t)raw[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? raw[i + 2] : 0);
        key[o++] = b64[(v >> 18) & 63];
        key[o++] = b64[(v >> 12) & 63];
        key[o++] = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
        key[o++] = i + 2 < 16 ? b64[v & 63] : '=';
        key[o] = '\0';
    }
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n%s\r\n",
             path, port, key, extra_headers ? extra_headers : "");
    return wsc_start(base, port, req, key);
}

static int wsc_done_p(void *arg)
{
    return ((struct wsc *)arg)->done;
}

int wsc_wait_open(struct wsc *c, int timeout_ms)
{
    if (!wsc_run_until(c->base, wsc_done_p, c, timeout_ms))
        return 0;
    return c->open ? 101 : c->status;
}

int wsc_handshake_done(const struct wsc *c)
{
    return c->done;
}

int wsc_status(const struct wsc *c)
{
    return c->status;
}

static int wsc_eof_p(void *arg)
{
    return ((struct wsc *)arg)->eof;
}

const char *wsc_response(const struct wsc *c)
{
    /* the body may still be coming: wait a little for EOF */
    if (!c->eof && !c->open)
        wsc_run_until(c->base, wsc_eof_p, (void *)c, 2000);
    return c->response ? c->response : "";
}

/* ---- sending ---- */

int wsc_send_raw(struct wsc *c, const void *data, size_t len)
{
    if (c->eof)
        return -1;
    return evbuffer_add(bufferevent_get_output(c->bev), data, len);
}

int wsc_send_frame(struct wsc *c, int fin, int rsv, int opcode, const void *payload,
                   size_t len)
{
    unsigned char hdr[14], mask[4];
    size_t hl = 0;
    unsigned char *buf;
    int rc;

    hdr[hl++] = (unsigned char)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0xf));
    if (len < 126) {
        hdr[hl++] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        hdr[hl++] = 0x80 | 126;
        hdr[hl++] = (unsigned char)(len >> 8);
        hdr[hl++] = (unsigned char)len;
    } else {
        hdr[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    for (int i = 0; i < 4; i++)
        hdr[hl++] = mask[i] = (unsigned char)rand();
    buf = malloc(hl + len + 1);
    memcpy(buf, hdr, hl);
    for (size_t i = 0; i < len; i++)
        buf[hl + i] = ((const unsigned char *)payload)[i] ^ mask[i & 3];
    rc = wsc_send_raw(c, buf, hl + len);
    free(buf);
    return rc;
}

int wsc_send_text(struct wsc *c, const char *text)
{
    return wsc_send_frame(c, 1, 0, 1, text, strlen(text));
}

void wsc_pause(struct wsc *c, int paused)
{
    if (paused) {
        bufferevent_disable(c->bev, EV_READ);
    } else {
        bufferevent_enable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            wsc_read_cb(c->bev, c);
    }
}

void wsc_mute(struct wsc *c, int muted)
{
    c->muted = muted;
    if (!muted)
        wsc_flush(c);
}

/* ---- receiving ---- */

static int wsc_has_msg_p(void *arg)
{
    struct wsc *c = arg;
    return c->head != NULL || c->eof;
}

struct wsc_msg *wsc_next(struct wsc *c, int timeout_ms)
{
    struct wsc_msg *m;

    wsc_run_until(c->base, wsc_has_msg_p, c, timeout_ms);
    if (!(m = c->head))
        return NULL;
    c->head = m->next;
    if (!c->head)
        c->tail = NULL;
    m->next = NULL;
    c->n_pending--;
    return m;
}

struct wsc_msg *wsc_next_type(struct wsc *c, const char *type, int timeout_ms)
{
    int64_t deadline = wsc_ms() + timeout_ms;

    for (;;) {
        int64_t rem = deadline - wsc_ms();
        struct wsc_msg *m = wsc_next(c, rem > 0 ? (int)rem : 0);
        if (!m)
            return NULL;
        json_t *j = json_loads(m->data, 0, NULL);
        const char *t = json_string_value(json_object_get(j, "type"));
        int match = t && strcmp(t, type) == 0;
        json_decref(j);
        if (match)
            return m;
        wsc_msg_free(m);
        if (rem <= 0)
            return NULL;
    }
}

void wsc_msg_free(struct wsc_msg *m)
{
    if (!m)
        return;
    free(m->data);
    free(m);
}

size_t wsc_pending(const struct wsc *c)
{
    return c->n_pending;
}

uint64_t wsc_received(const struct wsc *c)
{
    return c->n_received;
}

uint64_t wsc_received_bytes(const struct wsc *c)
{
    return c->bytes_received;
}

uint64_t wsc_pings(const struct wsc *c)
{
    return c->pings;
}

static int wsc_closed_p(void *arg)
{
    struct wsc *c = arg;
    return c->closed || c->eof;
}

int wsc_wait_close(struct wsc *c, int timeout_ms, int *code, const char **reason)
{
    if (!wsc_run_until(c->base, wsc_closed_p, c, timeout_ms))
        return -1;
    if (!c->closed)
        return 0;
    if (code)
        *code = c->close_code;
    if (reason)
        *reason = c->close_reason ? c->close_reason : "";
    return 1;
}

int wsc_eof(const struct wsc *c)
{
    return c->eof;
}

void wsc_free(struct wsc *c)
{
    if (!c)
        return;
    while (c->head) {
        struct wsc_msg *m = c->head;
        c->head = m->next;
        wsc_msg_free(m);
    }
    if (c->ctx)
        wslay_event_context_free(c->ctx);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c->close_reason);
    free(c->response);
    free(c);
}

/* ---- plain HTTP ---- */

struct wsc_http {
    struct bufferevent *bev; /* socket */
    struct evbuffer *resp;   /* what came back */
    int head_only;           /* HEAD: no body follows */
    int done;                /* response complete or connection over */
};

static void wsc_http_check(struct wsc_http *h)
{
    struct evbuffer_ptr end = evbuffer_search(h->resp, "\r\n\r\n", 4, NULL);
    size_t len = evbuffer_get_length(h->resp);

    if (end.pos < 0)
        return;
    size_t head = (size_t)end.pos + 4;
    char *text = malloc(head + 1);
    evbuffer_copyout(h->resp, text, head);
    text[head] = '\0';
    const char *cl = strcasestr(text, "\r\nContent-Length:");
    int status = 0;
    sscanf(text, "HTTP/1.%*d %d", &status);
    if (h->head_only || status == 204 || status == 304 || (status >= 100 && status < 200))
        h->done = 1;
    else if (cl && head + strtoul(cl + 17, NULL, 10) <= len)
        h->done = 1;
    free(text);
}

static void wsc_http_read_cb(struct bufferevent *bev, void *arg)
{
    struct wsc_http *h = arg;
    evbuffer_add_buffer(h->resp, bufferevent_get_input(bev));
    wsc_http_check(h);
}

static void wsc_http_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wsc_http *h = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        evbuffer_add_buffer(h->resp, bufferevent_get_input(bev));
        h->done = 1;
    }
}

static int wsc_http_done_p(void *arg)
{
    return ((struct wsc_http *)arg)->done;
}

int wsc_http(struct event_base *base, int port, const char *request, char **resp,
             const char **body, int timeout_ms)
{
    struct wsc_http h = {0};
    struct sockaddr_in sin = {0};
    int status = 0;

    if (resp)
        *resp = NULL;
    if (body)
        *body = NULL;
    h.resp = evbuffer_new();
    h.head_only = strncmp(request, "HEAD ", 5) == 0;
    h.bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bufferevent_setcb(h.bev, wsc_http_read_cb, NULL, wsc_http_event_cb, &h);
    bufferevent_enable(h.bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(h.bev, (struct sockaddr *)&sin, sizeof sin) == 0) {
        evbuffer_add(bufferevent_get_output(h.bev), request, strlen(request));
        wsc_run_until(base, wsc_http_done_p, &h, timeout_ms);
    }
    size_t n = evbuffer_get_length(h.resp);
    char *text = malloc(n + 1);
    evbuffer_remove(h.resp, text, n);
    text[n] = '\0';
    if (sscanf(text, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    if (body) {
        char *b = strstr(text, "\r\n\r\n");
        *body = b ? b + 4 : text + n;
    }
    if (resp)
        *resp = text;
    else
        free(text);
    bufferevent_free(h.bev);
    evbuffer_free(h.resp);
    return status;
}

int wsc_get(struct event_base *base, int port, const char *path,
            const char *extra_headers, char **resp, const char **body, int timeout_ms)
{
    char req[8192];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n", path,
             port, extra_headers ? extra_headers : "");
    return wsc_http(base, port, req, resp, body, timeout_ms);
}

void wsc_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
