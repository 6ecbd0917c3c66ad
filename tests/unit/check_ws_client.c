/*
 * check_ws_client.c - unit tests of the outbound WebSocket client
 * (core/ws_client.c: libcurl connects, wslay frames in client mode).
 *
 * Each test runs a small WebSocket server on its own event_base next to
 * the client: an evconnlistener on 127.0.0.1 that reads the Upgrade
 * request, answers as the test's mode says (a proper 101, a 404, a wrong
 * Sec-WebSocket-Accept, silence, a close right after the 101) and then
 * frames with wslay in server mode, so every frame the client sends is
 * checked (masked, well formed) by a WebSocket implementation that is not
 * ours. wss:// is tested end to end by tests/integration/https.py.
 */
#define _GNU_SOURCE /* strcasestr, memmem */

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <wslay/wslay.h>

#include "http_client.h"
#include "ws_client.h"
#include "wsclient.h"

/* ---- the test server ------------------------------------------------------ */

enum mode {
    M_OK,         /* 101, then frames */
    M_404,        /* answers 404 */
    M_BAD_ACCEPT, /* 101 with a wrong Sec-WebSocket-Accept */
    M_SILENT,     /* reads the request, never answers */
    M_EOF,        /* 101, then closes the connection */
    M_WITH_FRAME, /* 101 and a first text frame in the same write */
};

struct srv {
    struct evconnlistener *lis; /* on 127.0.0.1 */
    int port;                   /* its port */
    enum mode mode;             /* how to answer */
    struct bufferevent *bev;    /* the one connection */
    wslay_event_context_ptr ws; /* its framing, once open */
    int open;                   /* 101 sent */
    char request[4096];         /* the Upgrade request */
    char got[8][64];            /* text messages received */
    int ngot;                   /* how many */
    int pongs;                  /* pongs received */
    int close_code;             /* code of the client's close frame; 0: none */
    int eof;                    /* the client closed the connection */
    int hang_up;                /* close once the output is flushed */
};

static struct event_base *base;
static struct srv *srv;

static void ws_accept_of(const char *key, char out[32])
{
    unsigned char digest[SHA_DIGEST_LENGTH];
    char cat[128];

    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    SHA1((const unsigned char *)cat, strlen(cat), digest);
    EVP_EncodeBlock((unsigned char *)out, digest, sizeof digest);
}

static ssize_t s_recv(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags,
                      void *arg)
{
    int n = evbuffer_remove(bufferevent_get_input(srv->bev), buf, len);

    if (n <= 0) {
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t s_send(wslay_event_context_ptr ws, const uint8_t *data, size_t len,
                      int flags, void *arg)
{
    bufferevent_write(srv->bev, data, len);
    return (ssize_t)len;
}

static void s_on_msg(wslay_event_context_ptr ws,
                     const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
    if (a->opcode == WSLAY_TEXT_FRAME && srv->ngot < 8) {
        snprintf(srv->got[srv->ngot], sizeof srv->got[0], "%.*s", (int)a->msg_length,
                 a->msg);
        srv->ngot++;
    } else if (a->opcode == WSLAY_PONG) {
        srv->pongs++;
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        srv->close_code = a->status_code ? a->status_code : 1005;
    }
}

static void s_pump(void)
{
    if (srv->ws) {
        wslay_event_recv(srv->ws);
        wslay_event_send(srv->ws);
    }
}

/* Server side: queue a message of `opcode` and send it. */
static void s_queue(uint8_t opcode, const char *text)
{
    struct wslay_event_msg m = {opcode, (const uint8_t *)text, strlen(text)};

    ck_assert_int_eq(wslay_event_queue_msg(srv->ws, &m), 0);
    wslay_event_send(srv->ws);
}

static void s_answer(void)
{
    static const struct wslay_event_callbacks cbs = {s_recv, s_send, NULL,    NULL,
                                                     NULL,   NULL,   s_on_msg};
    const char *k = strcasestr(srv->request, "\r\nSec-WebSocket-Key: ");
    char key[64] = "", accept[32], out[512];

    if (k)
        sscanf(k + 21, "%63[^\r]", key);
    ws_accept_of(key, accept);
    switch (srv->mode) {
    case M_SILENT:
        return;
    case M_404:
        bufferevent_write(srv->bev, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                          45);
        return;
    case M_BAD_ACCEPT:
        accept[0] = accept[0] == 'A' ? 'B' : 'A';
        break;
    default:
        break;
    }
    snprintf(out, sizeof out,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n%s",
             accept, srv->mode == M_WITH_FRAME ? "\x81\x05hello" : "");
    bufferevent_write(srv->bev, out, strlen(out));
    srv->open = 1;
    if (srv->mode == M_EOF) {
        srv->hang_up = 1; /* s_on_write closes once the 101 is out */
        return;
    }
    wslay_event_context_server_init(&srv->ws, &cbs, NULL);
}

static void s_on_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    if (!srv->open) {
        struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        size_t n;

        if (end.pos < 0)
            return;
        n = (size_t)end.pos + 4;
        ck_assert_uint_lt(n, sizeof srv->request);
        evbuffer_remove(in, srv->request, n);
        srv->request[n] = '\0';
        s_answer();
    }
    s_pump();
}

static void s_on_write(struct bufferevent *bev, void *arg)
{
    if (srv->hang_up && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        bufferevent_free(srv->bev);
        srv->bev = NULL;
    }
}

static void s_on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        s_pump(); /* a close frame may still sit in the input */
        srv->eof = 1;
    }
}

static void s_on_accept(struct evconnlistener *lis, evutil_socket_t fd,
                        struct sockaddr *sa, int salen, void *arg)
{
    ck_assert_ptr_null(srv->bev); /* one connection per test */
    srv->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(srv->bev, s_on_read, s_on_write, s_on_event, NULL);
    bufferevent_enable(srv->bev, EV_READ | EV_WRITE);
}

static void srv_start(enum mode mode)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in ss;
    socklen_t len = sizeof ss;

    srv = calloc(1, sizeof *srv);
    srv->mode = mode;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv->lis = evconnlistener_new_bind(base, s_on_accept, NULL,
                                       LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                       (struct sockaddr *)&sin, sizeof sin);
    ck_assert_ptr_nonnull(srv->lis);
    getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&ss, &len);
    srv->port = ntohs(ss.sin_port);
}

/* ---- the client side ------------------------------------------------------- */

struct seen {
    struct km_wsc *c;         /* the connection */
    int opens;                /* on_open calls */
    char msgs[8][64];         /* messages */
    int nmsgs;                /* how many */
    int closes;               /* on_close calls */
    struct km_ws_closed info; /* what on_close said */
    char reason[256];         /* its reason */
    int close_in_open;        /* km_wsc_close from on_open */
    int close_on_msg;         /* km_wsc_close from the message with this number */
    int reply;                /* send "pong-me" from on_message */
};

static int in_open; /* set while km_wsc_open runs */

static void c_on_open(struct km_wsc *c, void *arg)
{
    struct seen *s = arg;

    ck_assert_msg(!in_open, "on_open inside km_wsc_open");
    s->opens++;
    if (s->close_in_open)
        km_wsc_close(c);
}

static void c_on_message(struct km_wsc *c, int binary, const char *data, size_t len,
                         void *arg)
{
    struct seen *s = arg;

    ck_assert_int_lt(s->nmsgs, 8);
    snprintf(s->msgs[s->nmsgs], sizeof s->msgs[0], "%s%.*s", binary ? "b:" : "", (int)len,
             data);
    s->nmsgs++;
    if (s->reply)
        ck_assert_int_eq(km_wsc_send_text(c, "reply", 5), 0);
    if (s->close_on_msg == s->nmsgs)
        km_wsc_close(c);
}

static void c_on_close(struct km_wsc *c, const struct km_ws_closed *info, void *arg)
{
    struct seen *s = arg;

    ck_assert_msg(!in_open, "on_close inside km_wsc_open");
    s->closes++;
    s->info = *info;
    snprintf(s->reason, sizeof s->reason, "%s", info->reason);
    s->info.reason = s->reason;
    km_wsc_close(c); /* a no-op from inside on_close */
}

static struct km_wsc *open_ws(struct seen *s, const char *path,
                              const char *const *headers, unsigned timeout_ms)
{
    struct km_wsc_handlers h = {c_on_open, c_on_message, c_on_close, s};
    struct km_ws_client_opts o = {
        .headers = headers, .timeout_ms = timeout_ms, .max_message = 64};
    char url[128], err[256] = "";

    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", srv->port, path);
    o.url = url;
    in_open = 1;
    s->c = km_wsc_open(base, &o, &h, err, sizeof err);
    in_open = 0;
    ck_assert_msg(s->c != NULL, "refused: %s", err);
    return s->c;
}

/* The loop helpers of tests/integration/wsclient.c, for a counter. */
struct reach {
    const int *counter; /* what to watch */
    int target;         /* until it reaches this */
};

static int reached(void *arg)
{
    const struct reach *r = arg;
    return *r->counter >= r->target;
}

static void run_until(const int *counter, int target, unsigned ms)
{
    struct reach r = {counter, target};
    ck_assert_msg(wsc_run_until(base, reached, &r, (int)ms),
                  "gave up after %u ms (%d of %d)", ms, *counter, target);
}

static void run_for(unsigned ms)
{
    wsc_run_for(base, (int)ms);
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    memset(&km_wsc_stats, 0, sizeof km_wsc_stats);
    memset(&km_hc_stats, 0, sizeof km_hc_stats);
}

static void teardown(void)
{
    if (srv) {
        if (srv->ws)
            wslay_event_context_free(srv->ws);
        if (srv->bev)
            bufferevent_free(srv->bev);
        if (srv->lis)
            evconnlistener_free(srv->lis);
        free(srv);
        srv = NULL;
    }
    ck_assert_uint_eq(km_wsc_stats.live, 0);
    km_hc_shutdown(base);
    ck_assert_uint_eq(km_hc_stats.conns, 0);
    event_base_free(base);
}

/* ---- tests ------------------------------------------------------------------ */

START_TEST(test_exchange)
{
    static const char *const headers[] = {"Authorization: Bearer t0ken", NULL};
    struct seen s = {0};
    char want[64];

    srv_start(M_OK);
    open_ws(&s, "/ws/events?x=1", headers, 0);
    ck_assert_int_eq(km_wsc_send_text(s.c, "early", 5), -1); /* not open yet */
    run_until(&s.opens, 1, 5000);
    /* the request: target, Host with the port, key, version, extra header */
    ck_assert_msg(strncmp(srv->request, "GET /ws/events?x=1 HTTP/1.1\r\n", 29) == 0, "%s",
                  srv->request);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", srv->port);
    ck_assert_ptr_nonnull(strstr(srv->request, want));
    ck_assert_ptr_nonnull(strstr(srv->request, "\r\nUpgrade: websocket\r\n"));
    ck_assert_ptr_nonnull(strstr(srv->request, "\r\nSec-WebSocket-Version: 13\r\n"));
    ck_assert_ptr_nonnull(strstr(srv->request, "\r\nAuthorization: Bearer t0ken\r\n"));
    ck_assert_ptr_nonnull(strstr(srv->request, "\r\nUser-Agent: katomon/"));

    /* client -> server (masked: wslay's server side insists) */
    ck_assert_int_eq(km_wsc_send_text(s.c, "ping", 4), 0);
    run_until(&srv->ngot, 1, 5000);
    ck_assert_str_eq(srv->got[0], "ping");
    /* server -> client, text and binary; a ping is answered */
    s_queue(WSLAY_TEXT_FRAME, "{\"event_type\":\"x\"}");
    s_queue(WSLAY_BINARY_FRAME, "bin");
    s_queue(WSLAY_PING, "are you there");
    run_until(&s.nmsgs, 2, 5000);
    run_until(&srv->pongs, 1, 5000);
    ck_assert_str_eq(s.msgs[0], "{\"event_type\":\"x\"}");
    ck_assert_str_eq(s.msgs[1], "b:bin");
    /* the server closes: on_close with its code and reason; close echoed */
    ck_assert_int_eq(wslay_event_queue_close(srv->ws, 1001, (const uint8_t *)"bye", 3),
                     0);
    wslay_event_send(srv->ws);
    run_until(&s.closes, 1, 5000);
    ck_assert_int_eq(s.info.opened, 1);
    ck_assert_int_eq(s.info.by_peer, 1);
    ck_assert_int_eq(s.info.code, 1001);
    ck_assert_str_eq(s.reason, "bye");
    run_until(&srv->close_code, 1, 5000);
    ck_assert_int_eq(srv->close_code, 1001); /* wslay echoes the peer's code */
    ck_assert_int_eq(s.closes, 1);
}
END_TEST

START_TEST(test_first_frame_with_the_101)
{
    struct seen s = {0};

    srv_start(M_WITH_FRAME);
    open_ws(&s, "", NULL, 0);
    run_until(&s.nmsgs, 1, 5000);
    ck_assert_int_eq(s.opens, 1);
    ck_assert_str_eq(s.msgs[0], "hello");
    ck_assert_msg(strncmp(srv->request, "GET / HTTP/1.1\r\n", 16) == 0, "%s",
                  srv->request);
    km_wsc_close(s.c);
    run_until(&srv->close_code, 1, 5000);
    ck_assert_int_eq(srv->close_code, 1000);
    ck_assert_int_eq(s.closes, 0);
}
END_TEST

START_TEST(test_not_offered)
{
    struct seen s = {0};

    srv_start(M_404);
    open_ws(&s, "/ws/events", NULL, 0);
    run_until(&s.closes, 1, 5000);
    ck_assert_int_eq(s.opens, 0);
    ck_assert_int_eq(s.info.opened, 0);
    ck_assert_int_eq(s.info.http_status, 404);
    ck_assert_str_eq(s.reason, "HTTP 404 instead of 101 Switching Protocols");
}
END_TEST

START_TEST(test_bad_accept)
{
    struct seen s = {0};

    srv_start(M_BAD_ACCEPT);
    open_ws(&s, "/", NULL, 0);
    run_until(&s.closes, 1, 5000);
    ck_assert_int_eq(s.opens, 0);
    ck_assert_str_eq(s.reason, "bad handshake: wrong Sec-WebSocket-Accept");
}
END_TEST

START_TEST(test_handshake_timeout)
{
    struct seen s = {0};

    srv_start(M_SILENT);
    open_ws(&s, "/", NULL, 200);
    run_until(&s.closes, 1, 5000);
    ck_assert_str_eq(s.reason, "timed out after 200 ms");
    ck_assert_int_eq(s.info.by_peer, 0);
}
END_TEST

START_TEST(test_refused)
{
    struct seen s = {0};
    int port;

    srv_start(M_OK);
    port = srv->port;
    evconnlistener_free(srv->lis); /* nothing listens there any more */
    srv->lis = NULL;
    srv->port = port;
    open_ws(&s, "/", NULL, 0);
    run_until(&s.closes, 1, 5000);
    ck_assert_str_eq(s.reason, "connection refused");
    ck_assert_int_eq(s.info.opened, 0);
}
END_TEST

START_TEST(test_eof_without_close)
{
    struct seen s = {0};

    srv_start(M_EOF);
    open_ws(&s, "/", NULL, 0);
    run_until(&s.closes, 1, 5000);
    ck_assert_int_eq(s.opens, 1);
    ck_assert_int_eq(s.info.by_peer, 1);
    ck_assert_int_eq(s.info.code, 0);
    ck_assert_str_eq(s.reason, "connection closed by the peer");
}
END_TEST

START_TEST(test_close_inside_callbacks)
{
    struct seen s1 = {.close_on_msg = 1}, s2 = {.close_in_open = 1};

    srv_start(M_OK);
    open_ws(&s1, "/", NULL, 0);
    run_until(&s1.opens, 1, 5000);
    s_queue(WSLAY_TEXT_FRAME, "one");
    s_queue(WSLAY_TEXT_FRAME, "two"); /* may come in the same read: not delivered */
    run_until(&srv->close_code, 1, 5000);
    ck_assert_int_eq(srv->close_code, 1000);
    ck_assert_int_eq(s1.nmsgs, 1);
    ck_assert_int_eq(s1.closes, 0);
    ck_assert_uint_eq(km_wsc_stats.live, 0);

    /* a second server for the second client: closes from on_open */
    wslay_event_context_free(srv->ws);
    srv->ws = NULL;
    bufferevent_free(srv->bev);
    srv->bev = NULL;
    srv->open = 0;
    srv->close_code = 0;
    open_ws(&s2, "/", NULL, 0);
    run_until(&s2.opens, 1, 5000);
    run_for(50);
    ck_assert_int_eq(s2.closes, 0);
    ck_assert_uint_eq(km_wsc_stats.live, 0);
}
END_TEST

START_TEST(test_reply_inside_on_message)
{
    struct seen s = {.reply = 1};

    srv_start(M_OK);
    open_ws(&s, "/", NULL, 0);
    run_until(&s.opens, 1, 5000);
    s_queue(WSLAY_TEXT_FRAME, "question");
    run_until(&srv->ngot, 1, 5000);
    ck_assert_str_eq(srv->got[0], "reply");
    km_wsc_close(s.c);
}
END_TEST

START_TEST(test_message_too_big)
{
    struct seen s = {0};
    char big[100];

    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    srv_start(M_OK);
    open_ws(&s, "/", NULL, 0); /* max_message 64 */
    run_until(&s.opens, 1, 5000);
    s_queue(WSLAY_TEXT_FRAME, big);
    run_until(&s.closes, 1, 5000);
    ck_assert_int_eq(s.nmsgs, 0);
    ck_assert_int_eq(s.info.opened, 1);
    ck_assert_int_eq(srv->close_code ? srv->close_code : 1009, 1009);
    ck_assert_msg(strstr(s.reason, "1009") != NULL, "%s", s.reason);
}
END_TEST

START_TEST(test_refused_at_open)
{
    static const char *const bad[] = {"X-A: 1\r\nX-B: 2", NULL};
    static const char *const ours[] = {"Sec-WebSocket-Key: x", NULL};
    struct km_wsc_handlers h = {NULL, NULL, c_on_close, NULL};
    struct km_ws_client_opts o = {.url = "ftp://127.0.0.1/"};
    char err[256];

    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    ck_assert_msg(strstr(err, "bad url") != NULL, "%s", err);
    o.url = "ws://127.0.0.1:0/";
    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    o.url = "ws://u:p@127.0.0.1/";
    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    o.url = "ws://127.0.0.1/";
    o.headers = bad;
    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    ck_assert_msg(strstr(err, "bad header line") != NULL, "%s", err);
    o.headers = ours;
    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    o.headers = NULL;
    h.on_close = NULL;
    ck_assert_ptr_null(km_wsc_open(base, &o, &h, err, sizeof err));
    ck_assert_uint_eq(km_wsc_stats.live, 0);
}
END_TEST

static Suite *ws_client_suite(void)
{
    Suite *s = suite_create("ws_client");
    TCase *tc = tcase_create("ws_client");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_exchange);
    tcase_add_test(tc, test_first_frame_with_the_101);
    tcase_add_test(tc, test_not_offered);
    tcase_add_test(tc, test_bad_accept);
    tcase_add_test(tc, test_handshake_timeout);
    tcase_add_test(tc, test_refused);
    tcase_add_test(tc, test_eof_without_close);
    tcase_add_test(tc, test_close_inside_callbacks);
    tcase_add_test(tc, test_reply_inside_on_message);
    tcase_add_test(tc, test_message_too_big);
    tcase_add_test(tc, test_refused_at_open);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ws_client_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
