/*
 * check_http_client.c - unit tests of the outbound HTTP client
 * (core/http_client.c on core/curl_loop.c: libcurl's multi interface on
 * libevent).
 *
 * Each test runs small scripted servers on its own event_base, next to the
 * client: an evconnlistener on 127.0.0.1 (ephemeral port) or on a unix
 * socket in a temporary directory. A server reads one request, keeps its
 * bytes for the test to check, then writes the scripted response pieces
 * (with a delay between them when asked) and closes, or stays silent, or
 * (keepalive) waits for the next request on the same connection.
 * TLS is tested end to end by tests/integration/https.py.
 */
#define _GNU_SOURCE /* strcasestr */

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <errno.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "http_client.h"
#include "wsclient.h"

/* ---- scripted test server ----------------------------------------------- */

struct srv;

/* One accepted connection. */
struct sconn {
    struct srv *s;             /* its server */
    struct bufferevent *bev;   /* the connection */
    struct event *timer;       /* paces the response pieces */
    struct evbuffer *req;      /* request bytes so far */
    int next_piece;            /* index of the next piece to write */
    int answering;             /* request complete: response under way */
    int closing;               /* last piece written: close once flushed */
    struct sconn *prev, *next; /* the server's live connections */
};

/* A listener that answers every request with the same script. */
struct srv {
    struct evconnlistener *lis; /* TCP or unix listener */
    int port;                   /* TCP port, 0 for unix */
    char path[108];             /* unix socket path, "" for TCP */
    const char *const *pieces;  /* response pieces, NULL-terminated */
    unsigned delay_ms;          /* pause between two pieces */
    int silent;                 /* read the request, never answer */
    int keep_open;              /* do not close after the last piece */
    int keepalive;              /* after the last piece, read the next request */
    int early;                  /* answer on accept, without reading */
    char req[16384];            /* bytes of the last complete request */
    size_t req_len;             /* their length */
    int requests;               /* complete requests received */
    int accepted;               /* connections accepted */
    struct sconn *conns;        /* live connections */
};

static struct event_base *base;
static char tmpdir[64];     /* for unix sockets and hosts files */
static struct srv *srvs[4]; /* servers of the current test, freed in teardown */
static int nsrvs;

static void sconn_free(struct sconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    event_free(c->timer);
    evbuffer_free(c->req);
    free(c);
}

static void sconn_write_next(struct sconn *c)
{
    const char *p = c->s->pieces[c->next_piece++];

    bufferevent_write(c->bev, p, strlen(p));
    if (c->s->pieces[c->next_piece]) {
        struct timeval tv = {c->s->delay_ms / 1000, (c->s->delay_ms % 1000) * 1000};

        evtimer_add(c->timer, &tv);
    } else if (c->s->keepalive) {
        c->answering = 0; /* the next request may come on this connection */
        c->next_piece = 0;
        evbuffer_drain(c->req, evbuffer_get_length(c->req));
    } else if (!c->s->keep_open) {
        c->closing = 1; /* sconn_on_write closes once flushed */
    }
}

static void sconn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    sconn_write_next(arg);
}

static void sconn_on_write(struct bufferevent *bev, void *arg)
{
    struct sconn *c = arg;

    if (c->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        sconn_free(c);
}

/* 1 once the whole request (headers and Content-Length body) is in. */
static int sconn_request_complete(struct sconn *c)
{
    struct evbuffer_ptr end = evbuffer_search(c->req, "\r\n\r\n", 4, NULL);
    size_t head, body = 0;
    char *text;
    const char *cl;

    if (end.pos < 0)
        return 0;
    head = (size_t)end.pos + 4;
    text = malloc(head + 1);
    evbuffer_copyout(c->req, text, head);
    text[head] = '\0';
    cl = strcasestr(text, "\r\nContent-Length: ");
    if (cl)
        body = strtoul(cl + 18, NULL, 10);
    free(text);
    return evbuffer_get_length(c->req) >= head + body;
}

static void sconn_on_read(struct bufferevent *bev, void *arg)
{
    struct sconn *c = arg;
    struct srv *s = c->s;

    evbuffer_add_buffer(c->req, bufferevent_get_input(bev));
    if (c->answering || !sconn_request_complete(c))
        return;
    c->answering = 1;
    s->requests++;
    s->req_len = evbuffer_get_length(c->req);
    if (s->req_len >= sizeof s->req)
        s->req_len = sizeof s->req - 1;
    evbuffer_copyout(c->req, s->req, s->req_len);
    s->req[s->req_len] = '\0';
    if (!s->silent && s->pieces && s->pieces[0])
        sconn_write_next(c);
}

static void sconn_on_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        sconn_free(arg); /* the client went away (cancelled, or done) */
}

static void srv_on_accept(struct evconnlistener *lis, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg)
{
    struct srv *s = arg;
    struct sconn *c = calloc(1, sizeof *c);

    c->s = s;
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(base, sconn_on_timer, c);
    c->req = evbuffer_new();
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->accepted++;
    bufferevent_setcb(c->bev, sconn_on_read, sconn_on_write, sconn_on_event, c);
    if (s->early) { /* answer now, read nothing: the client's writes fail */
        bufferevent_setcb(c->bev, NULL, sconn_on_write, sconn_on_event, c);
        bufferevent_enable(c->bev, EV_WRITE);
        c->answering = 1;
        s->requests++;
        sconn_write_next(c);
        return;
    }
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static struct srv *srv_new(const char *const *pieces)
{
    struct srv *s = calloc(1, sizeof *s);

    ck_assert_int_lt(nsrvs, 4);
    srvs[nsrvs++] = s;
    s->pieces = pieces;
    return s;
}

/* A server on 127.0.0.1 (or ::1 with v6), on an ephemeral port. */
static struct srv *srv_tcp(const char *const *pieces, int v6)
{
    struct srv *s = srv_new(pieces);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin6.sin6_addr = in6addr_loopback;
    s->lis = evconnlistener_new_bind(
        base, srv_on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
        v6 ? (struct sockaddr *)&sin6 : (struct sockaddr *)&sin,
        v6 ? (int)sizeof sin6 : (int)sizeof sin);
    if (!s->lis)
        return NULL;
    getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&ss, &len);
    s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                       : ((struct sockaddr_in *)&ss)->sin_port);
    return s;
}

/* A server on a unix socket in tmpdir. */
static struct srv *srv_unix(const char *const *pieces)
{
    struct srv *s = srv_new(pieces);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};

    snprintf(s->path, sizeof s->path, "%s/s%d.sock", tmpdir, nsrvs);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", s->path);
    s->lis = evconnlistener_new_bind(base, srv_on_accept, s, LEV_OPT_CLOSE_ON_FREE, 128,
                                     (struct sockaddr *)&sun, (int)sizeof sun);
    ck_assert_ptr_nonnull(s->lis);
    return s;
}

static void srv_free(struct srv *s)
{
    while (s->conns)
        sconn_free(s->conns);
    if (s->lis)
        evconnlistener_free(s->lis);
    if (s->path[0])
        unlink(s->path);
    free(s);
}

/* ---- client side helpers ------------------------------------------------ */

/* What a final callback saw. */
struct result {
    int calls;       /* callbacks run (must end as 1) */
    int status;      /* resp->status */
    int failed;      /* resp->error was set */
    char error[256]; /* resp->error */
    char *body;      /* copy of resp->body */
    size_t body_len; /* resp->body_len */
    int has_ct;      /* resp->content_type was set */
    char ct[128];    /* resp->content_type */
};

static int in_request; /* set while km_hc_request runs */
static int done_count; /* final callbacks run in this test */

static void result_free(struct result *res)
{
    free(res->body);
    res->body = NULL;
}

static void on_done(const struct km_http_response *resp, void *arg)
{
    struct result *res = arg;

    ck_assert_msg(!in_request, "callback ran inside km_hc_request");
    ck_assert_ptr_nonnull(resp->body);
    ck_assert_int_eq(resp->body[resp->body_len], '\0');
    res->calls++;
    done_count++;
    res->status = resp->status;
    res->failed = resp->error != NULL;
    snprintf(res->error, sizeof res->error, "%s", resp->error ? resp->error : "");
    free(res->body);
    res->body = malloc(resp->body_len + 1);
    memcpy(res->body, resp->body, resp->body_len + 1);
    res->body_len = resp->body_len;
    res->has_ct = resp->content_type != NULL;
    snprintf(res->ct, sizeof res->ct, "%s", resp->content_type ? resp->content_type : "");
}

static struct km_hc_req *start_cb(const struct km_http_request *req, km_http_cb cb,
                                  void *arg)
{
    char err[256] = "";
    struct km_hc_req *r;

    in_request = 1;
    r = km_hc_request(base, req, cb, arg, err, sizeof err);
    in_request = 0;
    ck_assert_msg(r != NULL, "request refused: %s", err);
    return r;
}

static struct km_hc_req *start(const struct km_http_request *req, struct result *res)
{
    return start_cb(req, on_done, res);
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

static double now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

/* One GET to url on the loop, waiting for its callback. */
static void get(const char *url, struct result *res)
{
    struct km_http_request req = {.url = url};

    start(&req, res);
    run_until(&res->calls, 1, 5000);
}

static char url_buf[256];

static const char *url_of(const struct srv *s, const char *path)
{
    snprintf(url_buf, sizeof url_buf, "http://127.0.0.1:%d%s", s->port, path);
    return url_buf;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_http_client.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    nsrvs = 0;
    done_count = 0;
    memset(&km_hc_stats, 0, sizeof km_hc_stats);
}

static void teardown(void)
{
    int i;

    for (i = 0; i < nsrvs; i++)
        srv_free(srvs[i]);
    nsrvs = 0;
    km_hc_shutdown(base);
    ck_assert_uint_eq(km_hc_stats.live, 0);
    event_base_free(base);
    base = NULL;
    rmdir(tmpdir);
}

/* ---- plain responses ---------------------------------------------------- */

START_TEST(test_content_length)
{
    static const char *const resp[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        "13\r\n\r\n{\"ok\": true}\n",
        NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    char want[128];

    get(url_of(s, "/v1.43/info?all=1#frag"), &res);
    ck_assert_int_eq(res.calls, 1);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.body, "{\"ok\": true}\n");
    ck_assert_uint_eq(res.body_len, 13);
    ck_assert_int_eq(res.has_ct, 1);
    ck_assert_str_eq(res.ct, "application/json");
    /* what went out */
    ck_assert_int_eq(s->requests, 1);
    ck_assert_msg(strncmp(s->req, "GET /v1.43/info?all=1 HTTP/1.1\r\n", 32) == 0, "%s",
                  s->req);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", s->port);
    ck_assert_ptr_nonnull(strstr(s->req, want));
    ck_assert_ptr_nonnull(
        strstr(s->req, "\r\nUser-Agent: katomon/" PACKAGE_VERSION "\r\n"));
    ck_assert_ptr_null(strstr(s->req, "Content-Length"));
    ck_assert_ptr_null(strstr(s->req, "Expect"));
    ck_assert_ptr_nonnull(strstr(s->req, "\r\n\r\n"));
    ck_assert_uint_eq(km_hc_stats.started, 1);
    ck_assert_uint_eq(km_hc_stats.finished, 1);
    ck_assert_uint_eq(km_hc_stats.live, 0);
    result_free(&res);
}
END_TEST

START_TEST(test_chunked)
{
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                       "chunked\r\nContent-Type: text/plain\r\n\r\n",
                                       "5\r\nhello\r\n", "1\r\n \r\n6\r\nworld!\r\n",
                                       "0\r\n\r\n", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    s->delay_ms = 20;
    get(url_of(s, "/"), &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 200);
    ck_assert_str_eq(res.body, "hello world!");
    ck_assert_str_eq(res.ct, "text/plain");
    ck_assert_msg(strncmp(s->req, "GET / HTTP/1.1\r\n", 16) == 0, "%s", s->req);
    result_free(&res);
}
END_TEST

START_TEST(test_close_delimited)
{
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\n\r\nuntil ", "the end", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    s->delay_ms = 20;
    get(url_of(s, "/x"), &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_str_eq(res.body, "until the end");
    ck_assert_int_eq(res.has_ct, 0);
    result_free(&res);
}
END_TEST

START_TEST(test_404_passed_through)
{
    static const char *const resp[] = {
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: "
        "29\r\n\r\n{\"message\":\"no such image\"}\r\n",
        NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    get(url_of(s, "/images/x/json"), &res);
    ck_assert_int_eq(res.failed, 0);
    ck_assert_int_eq(res.status, 404);
    ck_assert_str_eq(res.body, "{\"message\":\"no such image\"}\r\n");
    result_free(&res);
}
END_TEST

START_TEST(test_empty_body_and_head)
{
    static const char *const r204[] = {"HTTP/1.1 204 No Content\r\n\r\n", NULL};
    static const char *const rhead[] = {"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                                        NULL};
    struct srv *s1 = srv_tcp(r204, 0), *s2 = srv_tcp(rhead, 0);
    struct result res = {0};
    struct km_http_request req = {.method = "HEAD"};

    s1->keep_open = s2->keep_open = 1; /* the client must not wait for EOF */
    get(url_of(s1, "/"), &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 204);
    ck_assert_str_eq(res.body, "");
    ck_assert_uint_eq(res.body_len, 0);

    req.url = url_of(s2, "/_ping");
    start(&req, &res);
    run_until(&res.calls, 2, 5000);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 200);
    ck_assert_uint_eq(res.body_len, 0);
    ck_assert_msg(strncmp(s2->req, "HEAD /_ping HTTP/1.1\r\n", 22) == 0, "%s", s2->req);
    result_free(&res);
}
END_TEST

START_TEST(test_interim_100)
{
    static const char *const resp[] = {
        "HTTP/1.1 100 Continue\r\nContent-Type: bogus\r\n\r\n",
        "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    get(url_of(s, "/"), &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 201);
    ck_assert_str_eq(res.body, "ok");
    ck_assert_int_eq(res.has_ct, 0);
    result_free(&res);
}
END_TEST

START_TEST(test_post_body_and_headers)
{
    static const char *const resp[] = {"HTTP/1.1 204 No Content\r\n\r\n", NULL};
    static const char *const headers[] = {"Content-Type: application/json",
                                          "X-Registry-Auth: abc", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    struct km_http_request req = {
        .method = "POST", .headers = headers, .body = "{\"a\":1}", .body_len = 7};
    char want[128];

    req.url = url_of(s, "/containers/abc/start");
    start(&req, &res);
    run_until(&res.calls, 1, 5000);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_int_eq(res.status, 204);
    ck_assert_msg(strncmp(s->req, "POST /containers/abc/start HTTP/1.1\r\n", 37) == 0,
                  "%s", s->req);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", s->port);
    ck_assert_ptr_nonnull(strstr(s->req, want));
    ck_assert_ptr_nonnull(strstr(s->req, "\r\nContent-Length: 7\r\n"));
    ck_assert_ptr_nonnull(strstr(s->req, "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(s->req, "\r\nX-Registry-Auth: abc\r\n"));
    ck_assert_ptr_null(strstr(s->req, "Expect"));
    ck_assert_msg(strcmp(s->req + s->req_len - 11, "\r\n\r\n{\"a\":1}") == 0, "%s",
                  s->req);

    /* a Host from the caller replaces ours; POST without body says 0 */
    {
        static const char *const h2[] = {"Host: docker", NULL};
        struct km_http_request r2 = {.method = "POST", .headers = h2};

        r2.url = url_of(s, "/x");
        start(&r2, &res);
        run_until(&res.calls, 2, 5000);
        ck_assert_ptr_nonnull(strstr(s->req, "\r\nHost: docker\r\n"));
        ck_assert_ptr_null(strstr(s->req, "Host: 127"));
        ck_assert_ptr_nonnull(strstr(s->req, "\r\nContent-Length: 0\r\n"));
        ck_assert_ptr_null(strstr(s->req, "Content-Type")); /* no form label */
    }
    result_free(&res);
}
END_TEST

START_TEST(test_early_answer)
{
    /* the server refuses a big upload without reading it, and closes */
    static const char *const resp[] = {
        "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    struct km_http_request req = {.method = "PUT", .body_len = 8 << 20};
    char *body = calloc(1, req.body_len);

    s->early = 1;
    req.body = body;
    req.url = url_of(s, "/upload");
    start(&req, &res);
    run_until(&res.calls, 1, 10000);
    /* the answer is read although writing the body failed; should the
       kernel reset the connection first, the error says so */
    if (res.failed)
        ck_assert_msg(strstr(res.error, "reset") || strstr(res.error, "closed"), "%s",
                      res.error);
    else
        ck_assert_int_eq(res.status, 413);
    free(body);
    result_free(&res);
}
END_TEST

/* ---- limits and failures ------------------------------------------------ */

START_TEST(test_max_body)
{
    static const char *const big_cl[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789a", NULL};
    static const char *const big_chunked[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n",
        "5\r\n6789a\r\n0\r\n\r\n", NULL};
    static const char *const exact[] = {"HTTP/1.1 200 OK\r\n\r\n0123456789", NULL};
    struct srv *s1 = srv_tcp(big_cl, 0), *s2 = srv_tcp(big_chunked, 0),
               *s3 = srv_tcp(exact, 0);
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    struct km_http_request req = {.max_body = 10};

    req.url = url_of(s1, "/");
    start(&req, &r1);
    req.url = url_of(s2, "/");
    start(&req, &r2);
    req.url = url_of(s3, "/");
    start(&req, &r3);
    run_until(&done_count, 3, 5000);
    ck_assert_str_eq(r1.error, "response body larger than 10 bytes");
    ck_assert_int_eq(r1.status, 200);
    ck_assert_str_eq(r1.body, "");
    ck_assert_str_eq(r2.error, "response body larger than 10 bytes");
    ck_assert_msg(!r3.failed, "error: %s", r3.error);
    ck_assert_str_eq(r3.body, "0123456789");
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
}
END_TEST

START_TEST(test_default_max_body)
{
    /* 8 MiB + 1 announced: refused on the headers, before any body */
    static const char *const resp[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 8388609\r\n\r\n", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    s->keep_open = 1;
    get(url_of(s, "/"), &res);
    ck_assert_str_eq(res.error, "response body larger than 8388608 bytes");
    result_free(&res);
}
END_TEST

START_TEST(test_header_limit)
{
    static char head[80 * 1024];
    static const char *resp[] = {head, NULL};
    struct srv *s;
    struct result res = {0};
    size_t n;

    n = (size_t)snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(head + n, 'a', 70 * 1024);
    strcpy(head + n + 70 * 1024, "\r\nContent-Length: 0\r\n\r\n");
    s = srv_tcp(resp, 0);
    get(url_of(s, "/"), &res);
    ck_assert_str_eq(res.error, "bad response: headers larger than 65536 bytes");
    result_free(&res);
}
END_TEST

START_TEST(test_timeout)
{
    struct srv *s = srv_tcp(NULL, 0);
    struct result res = {0};
    struct km_http_request req = {.timeout_ms = 150};
    double t0 = now_ms(), took;

    s->silent = 1;
    req.url = url_of(s, "/");
    start(&req, &res);
    run_until(&res.calls, 1, 5000);
    took = now_ms() - t0;
    ck_assert_str_eq(res.error, "timed out after 150 ms");
    ck_assert_int_eq(res.status, 0);
    ck_assert_msg(took >= 140 && took < 2000, "took %.0f ms", took);
    ck_assert_int_eq(s->requests, 1);
    result_free(&res);
}
END_TEST

START_TEST(test_timeout_covers_slow_body)
{
    /* non-streaming: the timeout is for the whole request */
    static const char *const resp[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", "a", "b", "c", "d", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    struct km_http_request req = {.timeout_ms = 200};

    s->delay_ms = 80; /* 320 ms in all, never 200 ms silent */
    req.url = url_of(s, "/");
    start(&req, &res);
    run_until(&res.calls, 1, 5000);
    ck_assert_str_eq(res.error, "timed out after 200 ms");
    ck_assert_int_eq(res.status, 200);
    result_free(&res);
}
END_TEST

START_TEST(test_connection_refused)
{
    struct srv *s = srv_tcp(NULL, 0);
    int port = s->port;
    struct result res = {0};

    evconnlistener_free(s->lis); /* nothing listens there any more */
    s->lis = NULL;
    s->port = port;
    get(url_of(s, "/"), &res);
    ck_assert_str_eq(res.error, "connection refused");
    ck_assert_int_eq(res.status, 0);
    result_free(&res);
}
END_TEST

START_TEST(test_unix_missing)
{
    struct result res = {0};
    struct km_http_request req = {.url = "http://localhost/v1.43/info"};
    char path[128], want[256];

    snprintf(path, sizeof path, "%s/nope.sock", tmpdir);
    req.unix_socket = path;
    start(&req, &res); /* fails at once, yet the callback waits for the loop */
    ck_assert_int_eq(res.calls, 0);
    run_until(&res.calls, 1, 5000);
    snprintf(want, sizeof want, "no such file (unix socket %s)", path);
    ck_assert_str_eq(res.error, want);
    result_free(&res);
}
END_TEST

START_TEST(test_garbage)
{
    static const char *const resp[] = {"SSH-2.0-OpenSSH_9.6\r\n\r\n", NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};

    get(url_of(s, "/"), &res);
    ck_assert_msg(strncmp(res.error, "bad response: ", 14) == 0, "%s", res.error);
    ck_assert_int_eq(res.status, 0);
    result_free(&res);
}
END_TEST

START_TEST(test_closed_mid_body)
{
    static const char *const cl[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..", NULL};
    static const char *const chunked[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", NULL};
    static const char *const nothing[] = {"HTTP/1.1 200", NULL};
    struct srv *s1 = srv_tcp(cl, 0), *s2 = srv_tcp(chunked, 0), *s3 = srv_tcp(nothing, 0);
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    struct km_http_request req = {0};

    req.url = url_of(s1, "/");
    start(&req, &r1);
    req.url = url_of(s2, "/");
    start(&req, &r2);
    req.url = url_of(s3, "/");
    start(&req, &r3);
    run_until(&done_count, 3, 5000);
    ck_assert_str_eq(r1.error, "connection closed before the response was complete");
    ck_assert_str_eq(r2.error, "connection closed before the response was complete");
    ck_assert_str_eq(r3.error, "connection closed before the response was complete");
    ck_assert_int_eq(r1.status, 200);
    result_free(&r1);
    result_free(&r2);
    result_free(&r3);
}
END_TEST

START_TEST(test_refused_at_request_time)
{
    static const char *const bad_header[] = {"X-A: 1\r\nX-Injected: 2", NULL};
    static const char *const our_header[] = {"Connection: keep-alive", NULL};
    struct km_http_request req = {.url = "http://user:secret@127.0.0.1/"};
    char err[256], *long_url;

    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_str_eq(err, "credentials in the url are not supported "
                          "(url http://user:secret@127.0.0.1/)");
    req.url = "ftp://host/";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "bad url") != NULL, "%s", err);
    req.url = "not a url";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "bad url") != NULL, "%s", err);
    req.url = "/containers/json"; /* a bare path needs a unix socket */
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    req.url = "http://127.0.0.1:0/";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    req.url = "http://127.0.0.1/a b";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    long_url = malloc(9000);
    memset(long_url, 'a', 8999);
    memcpy(long_url, "http://h/", 9);
    long_url[8999] = '\0';
    req.url = long_url;
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_str_eq(err, "url longer than 8192 bytes");
    free(long_url);
    req.url = "http://127.0.0.1/";
    req.method = "GE T";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "bad method") != NULL, "%s", err);
    req.method = NULL;
    req.headers = bad_header;
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "bad header line") != NULL, "%s", err);
    req.headers = our_header;
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    req.headers = NULL;
    req.unix_socket = "";
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    req.unix_socket = NULL;
    req.body_len = 3; /* without a body */
    ck_assert_ptr_null(km_hc_request(base, &req, on_done, NULL, err, sizeof err));
    req.body_len = 0;
    ck_assert_ptr_null(km_hc_request(base, NULL, on_done, NULL, NULL, 0));
    ck_assert_uint_eq(km_hc_stats.started, 0);
    ck_assert_uint_eq(km_hc_stats.live, 0);
}
END_TEST

/* ---- unix sockets, names, IPv6 ------------------------------------------ */

START_TEST(test_unix_socket)
{
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nContent-Type: "
                                       "application/json\r\nContent-Length: 2\r\n\r\n[]",
                                       NULL};
    struct srv *s = srv_unix(resp);
    struct result res = {0};
    struct km_http_request req = {.url = "http://localhost/v1.43/containers/json?all=1"};

    req.unix_socket = s->path;
    start(&req, &res);
    run_until(&res.calls, 1, 5000);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_str_eq(res.body, "[]");
    ck_assert_msg(
        strncmp(s->req,
                "GET /v1.43/containers/json?all=1 HTTP/1.1\r\nHost: localhost\r\n",
                59) == 0,
        "%s", s->req);

    req.url = "/_ping"; /* a bare path is fine with a unix socket */
    start(&req, &res);
    run_until(&res.calls, 2, 5000);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_msg(strncmp(s->req, "GET /_ping HTTP/1.1\r\nHost: localhost\r\n", 38) == 0,
                  "%s", s->req);
    result_free(&res);
}
END_TEST

START_TEST(test_ipv6_literal)
{
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv6",
                                       NULL};
    struct srv *s = srv_tcp(resp, 1);
    struct result res = {0};
    char url[64], want[64];

    if (!s) { /* no IPv6 on this host */
        fprintf(stderr, "test_ipv6_literal: cannot listen on [::1], skipped\n");
        return;
    }
    snprintf(url, sizeof url, "http://[::1]:%d/", s->port);
    get(url, &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_str_eq(res.body, "v6");
    snprintf(want, sizeof want, "\r\nHost: [::1]:%d\r\n", s->port);
    ck_assert_ptr_nonnull(strstr(s->req, want));
    result_free(&res);
}
END_TEST

START_TEST(test_hostname_system_resolver)
{
    /* "localhost" comes from /etc/hosts through libcurl's threaded resolver
       (getaddrinfo in a helper thread, never on the loop) */
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhost",
                                       NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    char url[64], want[64];

    snprintf(url, sizeof url, "http://localhost:%d/", s->port);
    get(url, &res);
    ck_assert_msg(!res.failed, "error: %s", res.error);
    ck_assert_str_eq(res.body, "host");
    snprintf(want, sizeof want, "\r\nHost: localhost:%d\r\n", s->port);
    ck_assert_ptr_nonnull(strstr(s->req, want));
    result_free(&res);
}
END_TEST

START_TEST(test_hostname_fixed_addresses)
{
    /* names given fixed addresses (CURLOPT_RESOLVE), so no test depends on
       the network: with two, a refused first one falls through to the next */
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                       NULL};
    struct srv *s = srv_tcp(resp, 0); /* 127.0.0.1 only: 127.0.0.2 refuses */
    struct result r1 = {0}, r2 = {0};
    struct km_http_request req = {0};
    char e1[64], e2[96], url[64];
    const char *entries[] = {e1, e2, NULL};

    snprintf(e1, sizeof e1, "km-one.test:%d:127.0.0.1", s->port);
    snprintf(e2, sizeof e2, "km-two.test:%d:127.0.0.2,127.0.0.1", s->port);
    ck_assert_int_eq(km_hc_set_resolve(base, entries), 0);
    snprintf(url, sizeof url, "http://km-one.test:%d/", s->port);
    req.url = url;
    start(&req, &r1);
    snprintf(url, sizeof url, "http://km-two.test:%d/", s->port);
    start(&req, &r2);
    run_until(&done_count, 2, 5000);
    ck_assert_msg(!r1.failed, "error: %s", r1.error);
    ck_assert_str_eq(r1.body, "ok");
    ck_assert_msg(!r2.failed, "error: %s", r2.error);
    ck_assert_str_eq(r2.body, "ok");
    ck_assert_int_eq(km_hc_set_resolve(base, NULL), 0);
    result_free(&r1);
    result_free(&r2);
}
END_TEST

START_TEST(test_error_texts)
{
    char out[256];

    km_hc_error_text(CURLE_COULDNT_RESOLVE_HOST, "Could not resolve host: km-none.test",
                     0, NULL, out, sizeof out);
    ck_assert_str_eq(out, "cannot resolve km-none.test: no such host");
    km_hc_error_text(CURLE_PEER_FAILED_VERIFICATION,
                     "SSL certificate problem: unable to get local issuer certificate", 0,
                     NULL, out, sizeof out);
    ck_assert_str_eq(out, "TLS: certificate verify failed (SSL certificate problem: "
                          "unable to get local issuer certificate)");
    km_hc_error_text(CURLE_SSL_CONNECT_ERROR, "", 0, NULL, out, sizeof out);
    ck_assert_msg(strncmp(out, "TLS: handshake failed (", 23) == 0, "%s", out);
    km_hc_error_text(CURLE_COULDNT_CONNECT, "Failed to connect", ECONNREFUSED, NULL, out,
                     sizeof out);
    ck_assert_str_eq(out, "connection refused");
    km_hc_error_text(CURLE_COULDNT_CONNECT, "", ENOENT, "/x.sock", out, sizeof out);
    ck_assert_str_eq(out, "no such file (unix socket /x.sock)");
    km_hc_error_text(CURLE_RECV_ERROR, "", ECONNRESET, NULL, out, sizeof out);
    ck_assert_str_eq(out, "connection reset by peer");
    km_hc_error_text(CURLE_PARTIAL_FILE, "transfer closed", 0, NULL, out, sizeof out);
    ck_assert_str_eq(out, "connection closed before the response was complete");
}
END_TEST

/* ---- streaming ---------------------------------------------------------- */

/* What on_data saw. */
struct stream {
    struct result res;   /* the final callback */
    char pieces[8][32];  /* the pieces, in order */
    int npieces;         /* how many */
    int stop_after;      /* return 1 after this many pieces (0: never) */
    int cancel_after;    /* cancel after this many pieces (0: never) */
    struct km_hc_req *r; /* the request, for cancel */
};

static int on_piece(const char *data, size_t len, void *arg)
{
    struct stream *st = arg;

    ck_assert_msg(!in_request, "on_data ran inside km_hc_request");
    ck_assert_int_lt(st->npieces, 8);
    ck_assert_uint_lt(len, 32);
    memcpy(st->pieces[st->npieces], data, len);
    st->pieces[st->npieces][len] = '\0';
    st->npieces++;
    if (st->cancel_after && st->npieces == st->cancel_after)
        km_hc_cancel(st->r);
    return st->stop_after && st->npieces >= st->stop_after;
}

static const char *const events_stream[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
    "chunked\r\n\r\n",
    "c\r\n{\"Action\":1}\r\n",
    "c\r\n{\"Action\":2}\r\n",
    "c\r\n{\"Action\":3}\r\n",
    "0\r\n\r\n",
    NULL};

START_TEST(test_stream)
{
    struct srv *s = srv_tcp(events_stream, 0);
    struct stream st = {.npieces = 0};
    struct km_http_request req = {.on_data = on_piece, .timeout_ms = 300};

    s->delay_ms = 120; /* 480 ms in all: more than timeout_ms, yet never idle as long */
    req.url = url_of(s, "/v1.43/events");
    st.r = start(&req, &st.res);
    run_until(&st.res.calls, 1, 5000);
    ck_assert_msg(!st.res.failed, "error: %s", st.res.error);
    ck_assert_int_eq(st.res.status, 200);
    ck_assert_uint_eq(st.res.body_len, 0);
    ck_assert_str_eq(st.res.body, "");
    ck_assert_str_eq(st.res.ct, "application/json");
    ck_assert_int_eq(st.npieces, 3);
    ck_assert_str_eq(st.pieces[0], "{\"Action\":1}");
    ck_assert_str_eq(st.pieces[1], "{\"Action\":2}");
    ck_assert_str_eq(st.pieces[2], "{\"Action\":3}");
    result_free(&st.res);
}
END_TEST

START_TEST(test_stream_idle_timeout)
{
    struct srv *s = srv_tcp(events_stream, 0);
    struct stream st = {.npieces = 0};
    struct km_http_request req = {.on_data = on_piece, .timeout_ms = 100};

    s->delay_ms = 400;
    req.url = url_of(s, "/v1.43/events");
    st.r = start(&req, &st.res);
    run_until(&st.res.calls, 1, 5000);
    ck_assert_str_eq(st.res.error, "timed out after 100 ms");
    ck_assert_int_eq(st.npieces, 0); /* the headers came alone */
    ck_assert_int_eq(st.res.status, 200);
    result_free(&st.res);
}
END_TEST

START_TEST(test_stream_stop)
{
    struct srv *s = srv_tcp(events_stream, 0);
    struct stream st = {.stop_after = 1};
    struct km_http_request req = {.on_data = on_piece};

    s->delay_ms = 30;
    req.url = url_of(s, "/v1.43/events");
    st.r = start(&req, &st.res);
    run_until(&st.res.calls, 1, 5000);
    ck_assert_str_eq(st.res.error, "stopped by caller");
    ck_assert_int_eq(st.npieces, 1);
    run_for(150); /* the rest of the stream goes nowhere */
    ck_assert_int_eq(st.npieces, 1);
    ck_assert_int_eq(st.res.calls, 1);
    result_free(&st.res);
}
END_TEST

START_TEST(test_stream_cancel_inside_on_data)
{
    struct srv *s = srv_tcp(events_stream, 0);
    struct stream st = {.cancel_after = 2};
    struct km_http_request req = {.on_data = on_piece};

    s->delay_ms = 30;
    req.url = url_of(s, "/v1.43/events");
    st.r = start(&req, &st.res);
    run_until(&st.npieces, 2, 5000);
    ck_assert_uint_eq(km_hc_stats.live, 0);
    run_for(200);
    ck_assert_int_eq(st.npieces, 2);
    ck_assert_int_eq(st.res.calls, 0);
}
END_TEST

START_TEST(test_stream_max_body)
{
    struct srv *s = srv_tcp(events_stream, 0);
    struct stream st = {.npieces = 0};
    struct km_http_request req = {.on_data = on_piece, .max_body = 30};

    req.url = url_of(s, "/v1.43/events");
    st.r = start(&req, &st.res);
    run_until(&st.res.calls, 1, 5000);
    ck_assert_str_eq(st.res.error, "response body larger than 30 bytes");
    ck_assert_int_eq(st.npieces, 2);
    result_free(&st.res);
}
END_TEST

/* ---- lifecycle ---------------------------------------------------------- */

START_TEST(test_cancel)
{
    struct srv *s = srv_tcp(NULL, 0);
    struct result r1 = {0}, r2 = {0};
    struct km_http_request req = {0};
    struct km_hc_req *h1, *h2;

    s->silent = 1;
    req.url = url_of(s, "/");
    h1 = start(&req, &r1);
    h2 = start(&req, &r2);
    km_hc_cancel(h1); /* before it even connected */
    ck_assert_uint_eq(km_hc_stats.live, 1);
    run_until(&s->requests, 1, 5000);
    km_hc_cancel(h2); /* waiting for the response */
    ck_assert_uint_eq(km_hc_stats.live, 0);
    run_for(100);
    ck_assert_int_eq(r1.calls + r2.calls, 0);
    ck_assert_ptr_null(s->conns); /* the server saw the connection close */
    ck_assert_uint_eq(km_hc_stats.finished, 0);
}
END_TEST

START_TEST(test_cancel_after_failure_before_delivery)
{
    struct result res = {0};
    struct km_http_request req = {.url = "http://127.0.0.1:1/",
                                  .unix_socket = "/nonexistent/x.sock"};
    struct km_hc_req *h;

    h = start(&req, &res); /* already failed, its callback pending */
    km_hc_cancel(h);
    run_for(50);
    ck_assert_int_eq(res.calls, 0);
    ck_assert_uint_eq(km_hc_stats.live, 0);
}
END_TEST

START_TEST(test_shutdown_cancels)
{
    struct srv *s = srv_tcp(NULL, 0);
    struct result res[5] = {{0}};
    struct km_http_request req = {0};
    int i;

    s->silent = 1;
    req.url = url_of(s, "/");
    for (i = 0; i < 5; i++)
        start(&req, &res[i]);
    run_until(&s->requests, 5, 5000);
    km_hc_shutdown(base);
    ck_assert_uint_eq(km_hc_stats.live, 0);
    run_for(50);
    for (i = 0; i < 5; i++)
        ck_assert_int_eq(res[i].calls, 0);
}
END_TEST

#define MANY 200

static const char *const many_resp[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nmany!",
    NULL};

START_TEST(test_many_concurrent)
{
    struct srv *s = srv_tcp(many_resp, 0), *u = srv_unix(many_resp);
    static struct result res[MANY];
    struct km_http_request req = {0};
    int i;

    memset(res, 0, sizeof res);
    for (i = 0; i < MANY; i++) {
        req.url = url_of(s, "/");
        req.unix_socket =
            i % 4 == 3 ? u->path : NULL; /* a quarter over the unix socket */
        start(&req, &res[i]);
    }
    ck_assert_uint_eq(km_hc_stats.live, MANY);
    run_until(&done_count, MANY, 20000);
    for (i = 0; i < MANY; i++) {
        ck_assert_int_eq(res[i].calls, 1);
        ck_assert_msg(!res[i].failed, "request %d: %s", i, res[i].error);
        ck_assert_str_eq(res[i].body, "many!");
        result_free(&res[i]);
    }
    ck_assert_int_eq(s->requests + u->requests, MANY);
    ck_assert_uint_eq(km_hc_stats.started, MANY);
    ck_assert_uint_eq(km_hc_stats.finished, MANY);
    ck_assert_uint_eq(km_hc_stats.live, 0);
}
END_TEST

/* Chains: each callback starts the next request, as plugins do. */
struct chain {
    struct srv *s;          /* where to send */
    int left;               /* requests still to start */
    int done;               /* callbacks run */
    int last_status;        /* status of the last one */
    struct km_hc_req *self; /* the request whose callback runs */
};

static void on_chain(const struct km_http_response *resp, void *arg)
{
    struct chain *c = arg;

    ck_assert_msg(!in_request, "callback ran inside km_hc_request");
    ck_assert_msg(resp->error == NULL, "%s", resp->error);
    km_hc_cancel(c->self); /* a no-op from inside its own callback */
    c->done++;
    c->last_status = resp->status;
    if (c->left-- > 0) {
        struct km_http_request req = {0};

        req.url = url_of(c->s, "/next");
        c->self = start_cb(&req, on_chain, c);
    }
}

START_TEST(test_request_from_callback)
{
    struct srv *s = srv_tcp(many_resp, 0);
    struct chain c = {.s = s, .left = 4};
    struct km_http_request req = {0};

    req.url = url_of(s, "/first");
    c.self = start_cb(&req, on_chain, &c);
    run_until(&c.done, 5, 5000);
    ck_assert_int_eq(c.last_status, 200);
    ck_assert_int_eq(s->requests, 5);
    ck_assert_uint_eq(km_hc_stats.finished, 5);
    ck_assert_uint_eq(km_hc_stats.live, 0);
}
END_TEST

/* on_data of one stream starts a request and cancels another one: libcurl
   is inside its callback then, so both wait for it to return */
struct meddler {
    struct stream st;             /* the stream whose on_data meddles */
    struct km_hc_req *victim;     /* cancelled from on_data */
    struct km_http_request *next; /* started from on_data */
    struct result next_res;       /* its result */
    int done;                     /* meddled */
};

static int on_meddle(const char *data, size_t len, void *arg)
{
    struct meddler *m = arg;

    if (!m->done) {
        m->done = 1;
        km_hc_cancel(m->victim);
        ck_assert_uint_eq(km_hc_stats.live, 1); /* only the stream */
        in_request = 1;
        ck_assert_ptr_nonnull(
            km_hc_request(base, m->next, on_done, &m->next_res, NULL, 0));
        in_request = 0;
    }
    return on_piece(data, len, &m->st);
}

START_TEST(test_meddling_inside_on_data)
{
    struct srv *ev = srv_tcp(events_stream, 0), *slow = srv_tcp(NULL, 0),
               *ok = srv_tcp(many_resp, 0);
    struct meddler m;
    struct result victim_res = {0};
    struct km_http_request sreq = {.on_data = on_meddle}, vreq = {0}, nreq = {0};
    char vurl[64], nurl[64];

    memset(&m, 0, sizeof m);
    slow->silent = 1;
    ev->delay_ms = 50;
    snprintf(vurl, sizeof vurl, "http://127.0.0.1:%d/", slow->port);
    vreq.url = vurl;
    m.victim = start(&vreq, &victim_res);
    snprintf(nurl, sizeof nurl, "http://127.0.0.1:%d/next", ok->port);
    nreq.url = nurl;
    m.next = &nreq;
    sreq.url = url_of(ev, "/v1.43/events");
    start_cb(&sreq, on_done, &m);
    run_until(&slow->requests, 1, 5000); /* the victim is waiting for its answer */
    run_until(&m.next_res.calls, 1, 5000);
    ck_assert_msg(!m.next_res.failed, "error: %s", m.next_res.error);
    ck_assert_str_eq(m.next_res.body, "many!");
    run_until(&m.st.npieces, 3, 5000);
    run_for(100);
    ck_assert_int_eq(victim_res.calls, 0);
    ck_assert_ptr_null(slow->conns); /* the victim's connection was closed */
    result_free(&m.next_res);
    result_free(&m.st.res);
}
END_TEST

START_TEST(test_keepalive_reuse)
{
    static const char *const resp[] = {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                       NULL};
    struct srv *s = srv_tcp(resp, 0);
    struct result res = {0};
    int i;

    s->keepalive = 1;
    for (i = 0; i < 3; i++) {
        struct km_http_request req = {.url = url_of(s, "/again")};

        start(&req, &res);
        run_until(&res.calls, i + 1, 5000);
        ck_assert_msg(!res.failed, "error: %s", res.error);
        ck_assert_str_eq(res.body, "ok");
    }
    ck_assert_int_eq(s->requests, 3);
    ck_assert_int_eq(s->accepted, 1); /* one connection for all three */
    result_free(&res);
}
END_TEST

static Suite *http_client_suite(void)
{
    Suite *s = suite_create("http_client");
    TCase *tc = tcase_create("http_client");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_content_length);
    tcase_add_test(tc, test_chunked);
    tcase_add_test(tc, test_close_delimited);
    tcase_add_test(tc, test_404_passed_through);
    tcase_add_test(tc, test_empty_body_and_head);
    tcase_add_test(tc, test_interim_100);
    tcase_add_test(tc, test_post_body_and_headers);
    tcase_add_test(tc, test_early_answer);
    tcase_add_test(tc, test_max_body);
    tcase_add_test(tc, test_default_max_body);
    tcase_add_test(tc, test_header_limit);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_timeout_covers_slow_body);
    tcase_add_test(tc, test_connection_refused);
    tcase_add_test(tc, test_unix_missing);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_closed_mid_body);
    tcase_add_test(tc, test_refused_at_request_time);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_ipv6_literal);
    tcase_add_test(tc, test_hostname_system_resolver);
    tcase_add_test(tc, test_hostname_fixed_addresses);
    tcase_add_test(tc, test_error_texts);
    tcase_add_test(tc, test_stream);
    tcase_add_test(tc, test_stream_idle_timeout);
    tcase_add_test(tc, test_stream_stop);
    tcase_add_test(tc, test_stream_cancel_inside_on_data);
    tcase_add_test(tc, test_stream_max_body);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_cancel_after_failure_before_delivery);
    tcase_add_test(tc, test_shutdown_cancels);
    tcase_add_test(tc, test_many_concurrent);
    tcase_add_test(tc, test_request_from_callback);
    tcase_add_test(tc, test_meddling_inside_on_data);
    tcase_add_test(tc, test_keepalive_reuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(http_client_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
