/*
 * check_rest.c - plugin REST routes beyond the exact ones: prefix routes
 * and their ranking, answers given later (KM_REST_LATER, rest_finish,
 * the core's 504 deadline and 503 at shutdown), and the core's table of
 * the original dashboard's routes katomon does not serve.
 *
 * First through the loader (km_loader_rest with a recording waiter), then
 * through a real server in this process (same event loop as the test's
 * clients): pipelining behind a pending answer, a client that leaves
 * first, a client that half-closes, bad paths. The plugins are
 * tests/plugins/test_good (prefix and later routes) and test_route
 * (exact and longer prefix routes in a second plugin).
 *
 * Leaks and stale handles show up under ASan (--enable-sanitizers).
 */
#define _GNU_SOURCE /* nftw */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "core.h"
#include "ctx.h"
#include "host.h"
#include "http_client.h"
#include "loader.h"
#include "log.h"
#include "rest.h"
#include "server.h"

/* ---- fixture ----------------------------------------------------------- */

static struct km_core core;    /* the daemon under test */
static struct km_server *srv;  /* its HTTP server, when a test starts one */
static char tmpdir[256];       /* per-test scratch directory */
static const char *plugin_dir; /* built test plugins */

static void setup(void)
{
    char conf[512], text[2048], err[1024];
    FILE *f;

    plugin_dir = getenv("TEST_PLUGIN_DIR");
    if (!plugin_dir)
        plugin_dir = "tests/plugins/.libs";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_rest.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(conf, sizeof conf, "%s/katomon.conf", tmpdir);
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = warning\n"
             "[http]\nport = 0\nweb_root = %s\n"
             "[plugin test_good]\ninterval = 100\n[plugin test_route]\n",
             plugin_dir, tmpdir, tmpdir);
    ck_assert_ptr_nonnull(f = fopen(conf, "w"));
    fputs(text, f);
    fclose(f);
    memset(&core, 0, sizeof core);
    srv = NULL;
    km_log_set_level(KM_LOG_WARNING);
    core.base = event_base_new();
    core.bus = km_bus_new();
    ck_assert_msg(km_config_load(conf, &core.cfg, err, sizeof err) == 0, "%s", err);
    core.loader = km_loader_new(&core);
    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), 0);
    km_rest_deadline_s = KM_REST_DEADLINE_S;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    km_server_free(srv);
    km_loader_free(core.loader);
    km_bus_free(core.bus);
    km_hc_shutdown(core.base); /* whoever frees the loop frees its CURLM */
    event_base_free(core.base);
    km_config_free(core.cfg);
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void run_loop(double seconds)
{
    struct timeval tv = {(time_t)seconds,
                         (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(core.base, &tv);
    event_base_dispatch(core.base);
}

/* ---- through the loader ------------------------------------------------ */

/* Answers a waiter received. */
struct inbox {
    int n;        /* answers */
    int status;   /* last status */
    json_t *body; /* last body (owned) */
};

static void on_answer(void *arg, int status, json_t *body)
{
    struct inbox *in = arg;
    in->n++;
    in->status = status;
    json_decref(in->body);
    in->body = body;
}

/* km_loader_rest for method and path; *reply gets the body, whatever the
   status (the detail as {"detail"} when the plugin gave none). */
static int call(const char *method, const char *path, json_t **reply, char *allow,
                size_t allowlen, struct inbox *in, struct km_rest_pending **pending)
{
    struct km_rest_call c = {method, path, "", "", 0, NULL};
    const struct km_rest_waiter w = {on_answer, in};
    const char *detail = NULL;
    int status = km_loader_rest(core.loader, &c, reply, &detail, allow, allowlen,
                                in ? &w : NULL, pending);
    if (!*reply && detail)
        *reply = json_pack("{s:s}", "detail", detail);
    return status;
}

/* The "route" member of GET path's answer (a static copy). */
static const char *route_of(const char *method, const char *path)
{
    static char route[64];
    json_t *reply = NULL;
    int status = call(method, path, &reply, NULL, 0, NULL, NULL);

    snprintf(route, sizeof route, "%d %s", status,
             json_string_value(json_object_get(reply, "route"))
                 ?: json_string_value(json_object_get(reply, "detail")) ?: "-");
    json_decref(reply);
    return route;
}

START_TEST(test_prefix_ranking)
{
    char allow[64];
    json_t *reply = NULL;

    /* an exact route beats every prefix */
    ck_assert_int_eq(call("GET", "/api/v1/test/echo", &reply, NULL, 0, NULL, NULL), 200);
    ck_assert_ptr_nonnull(json_object_get(reply, "greeting"));
    json_decref(reply);
    ck_assert_str_eq(route_of("GET", "/api/v1/test/x"), "200 test");
    ck_assert_str_eq(route_of("HEAD", "/api/v1/test/x/y/z"), "200 test");
    /* the longest prefix wins, whichever plugin has it */
    ck_assert_str_eq(route_of("GET", "/api/v1/test/deep/x"), "200 deep");
    ck_assert_str_eq(route_of("GET", "/api/v1/test/deep/er/1"), "200 test_route:longer");
    /* another plugin's exact route beats test_good's prefix */
    ck_assert_str_eq(route_of("GET", "/api/v1/test/deep/exact"), "200 test_route:exact");
    ck_assert_str_eq(route_of("GET", "/api/v1/test/deep/exactly"), "200 deep");
    /* methods are routed apart */
    ck_assert_str_eq(route_of("DELETE", "/api/v1/test/x"), "200 test_route:delete");
    /* a prefix needs at least one byte below it */
    ck_assert_str_eq(route_of("GET", "/api/v1/test/"), "0 -");
    ck_assert_str_eq(route_of("GET", "/api/v1/test"), "0 -");
    /* 405 lists the methods of every route matching the path */
    ck_assert_int_eq(
        call("POST", "/api/v1/test/x", &reply, allow, sizeof allow, NULL, NULL), 405);
    ck_assert_ptr_nonnull(strstr(allow, "GET"));
    ck_assert_ptr_nonnull(strstr(allow, "DELETE"));
    json_decref(reply);
}
END_TEST

static int dummy(const struct km_rest_call *c, json_t **reply, const char **detail,
                 void *arg)
{
    return 204;
}

START_TEST(test_prefix_registration)
{
    static const struct km_plugin desc = {.abi = KM_PLUGIN_ABI, .name = "unit"};
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = km_ctx_new(&core, "unit", &desc, NULL);
    struct km_route_hit hit = {0};

    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/u/*", dummy, NULL), KM_OK);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/*", dummy, NULL), KM_OK);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/u/*", dummy, NULL), KM_EEXIST);
    /* "*" only as a whole last segment */
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/u*", dummy, NULL), KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/*/x", dummy, NULL), KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/u/**", dummy, NULL), KM_EINVAL);
    /* test_good (loaded) has GET /api/v1/test/ + "*" already */
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/test/*", dummy, NULL), KM_EEXIST);
    ck_assert_int_eq(h->rest_route(ctx, "PUT", "/api/v1/test/*", dummy, NULL), KM_OK);
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "GET", "/api/v1/u/7", &hit, NULL, 0), 1);
    ck_assert_uint_eq(hit.prefix, strlen("/api/v1/u/"));
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "GET", "/api/v1/v", &hit, NULL, 0), 1);
    ck_assert_uint_eq(hit.prefix, strlen("/api/v1/"));
    /* an exact route below a prefix is another route, and wins */
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/u/7", dummy, NULL), KM_OK);
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "GET", "/api/v1/u/7", &hit, NULL, 0), 1);
    ck_assert_uint_eq(hit.prefix, 0);
    km_host_release(ctx);
    km_ctx_free(ctx);
}
END_TEST

START_TEST(test_later_through_the_loader)
{
    struct inbox in = {0}, gone = {0};
    struct km_rest_pending *p = NULL;
    json_t *reply = NULL;

    /* answered from inside the handler: an ordinary synchronous answer */
    ck_assert_int_eq(call("GET", "/api/v1/test/later/now", &reply, NULL, 0, &in, &p),
                     201);
    ck_assert(json_is_true(json_object_get(reply, "inside")));
    ck_assert_ptr_null(p);
    json_decref(reply);
    reply = NULL;

    /* answered from a timer: the waiter gets it, once, never synchronously */
    ck_assert_int_eq(call("GET", "/api/v1/test/later/30", &reply, NULL, 0, &in, &p),
                     KM_LOADER_LATER);
    ck_assert_ptr_null(reply);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(in.n, 0);
    for (int i = 0; i < 40 && in.n == 0; i++)
        run_loop(0.02);
    ck_assert_int_eq(in.n, 1);
    ck_assert_int_eq(in.status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(in.body, "later")), "30");

    /* the waiter left: the answer is dropped (freed) */
    ck_assert_int_eq(call("GET", "/api/v1/test/later/10", &reply, NULL, 0, &gone, &p),
                     KM_LOADER_LATER);
    km_rest_pending_detach(p);
    run_loop(0.1);
    ck_assert_int_eq(gone.n, 0);

    /* nobody waits at all */
    ck_assert_int_eq(call("GET", "/api/v1/test/later/10", &reply, NULL, 0, NULL, NULL),
                     KM_LOADER_LATER);
    run_loop(0.1);

    /* past the deadline the core answers 504; the late rest_finish only frees */
    km_rest_deadline_s = 0.1;
    ck_assert_int_eq(call("GET", "/api/v1/test/later/never", &reply, NULL, 0, &in, &p),
                     KM_LOADER_LATER);
    for (int i = 0; i < 50 && in.n == 1; i++)
        run_loop(0.02);
    ck_assert_int_eq(in.n, 2);
    ck_assert_int_eq(in.status, 504);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(in.body, "detail")), "did not answer"));
    ck_assert_int_eq(call("GET", "/api/v1/test/flush", &reply, NULL, 0, NULL, NULL), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "flushed")), 1);
    json_decref(reply);
    run_loop(0.05);
    ck_assert_int_eq(in.n, 2);

    /* still pending when the plugin stops: 503 from the core */
    km_rest_deadline_s = KM_REST_DEADLINE_S;
    ck_assert_int_eq(call("GET", "/api/v1/test/later/never", &reply, NULL, 0, &in, &p),
                     KM_LOADER_LATER);
    ck_assert_int_eq(call("GET", "/api/v1/test/later/5000", &reply, NULL, 0, &gone, &p),
                     KM_LOADER_LATER);
    km_loader_free(core.loader);
    core.loader = NULL;
    ck_assert_int_eq(in.n, 3);
    ck_assert_int_eq(in.status, 503);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(in.body, "detail")), "stopped"));
    ck_assert_int_eq(gone.n, 1);
    ck_assert_int_eq(gone.status, 503);
    json_decref(in.body);
    json_decref(gone.body);
}
END_TEST

/* ---- through the server ----------------------------------------------------- */

/* A raw client: sends bytes, keeps everything that comes back. */
struct raw {
    struct bufferevent *bev; /* the socket */
    struct evbuffer *got;    /* bytes received */
    int eof;                 /* the server closed (or an error) */
};

static void raw_read(struct bufferevent *bev, void *arg)
{
    struct raw *r = arg;
    evbuffer_add_buffer(r->got, bufferevent_get_input(bev));
}

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
    struct raw *r = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        evbuffer_add_buffer(r->got, bufferevent_get_input(bev));
        r->eof = 1;
    }
}

static struct raw *raw_open(const char *request)
{
    struct raw *r = calloc(1, sizeof *r);
    struct sockaddr_in sin = {.sin_family = AF_INET};

    sin.sin_port = htons((uint16_t)km_server_port(srv));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->got = evbuffer_new();
    r->bev = bufferevent_socket_new(core.base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(r->bev, raw_read, NULL, raw_event, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    ck_assert_int_eq(
        bufferevent_socket_connect(r->bev, (struct sockaddr *)&sin, sizeof sin), 0);
    evbuffer_add(bufferevent_get_output(r->bev), request, strlen(request));
    return r;
}

/* What came back so far, as a string (owned by the caller). */
static char *raw_text(struct raw *r)
{
    size_t n = evbuffer_get_length(r->got);
    char *t = malloc(n + 1);
    evbuffer_copyout(r->got, t, n);
    t[n] = '\0';
    return t;
}

/* Number of responses received (status lines). */
static int raw_responses(struct raw *r)
{
    char *t = raw_text(r);
    int n = 0;
    for (char *p = t; (p = strstr(p, "HTTP/1.1 ")); p++)
        n++;
    free(t);
    return n;
}

static void raw_close(struct raw *r)
{
    bufferevent_free(r->bev);
    evbuffer_free(r->got);
    free(r);
}

/* Runs the loop until r has `n` responses (or EOF) or `seconds` passed. */
static void raw_wait(struct raw *r, int n, double seconds)
{
    for (int i = 0; i < seconds / 0.01 && raw_responses(r) < n && !r->eof; i++)
        run_loop(0.01);
}

static void start_server(void)
{
    char err[512];
    srv = km_server_start(&core, err, sizeof err);
    ck_assert_msg(srv != NULL, "%s", err);
    core.server = srv;
}

/* One request on its own connection (Connection: close); the response. */
static char *exchange(const char *method, const char *path, double seconds)
{
    char req[8192];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
             method, path);
    struct raw *r = raw_open(req);
    raw_wait(r, 1, seconds);
    for (int i = 0; i < 100 && !r->eof; i++)
        run_loop(0.01);
    char *t = raw_text(r);
    raw_close(r);
    return t;
}

START_TEST(test_later_over_http)
{
    char *t;

    start_server();
    t = exchange("GET", "/api/v1/test/later/20", 2);
    ck_assert_msg(strncmp(t, "HTTP/1.1 200 ", 13) == 0, "%s", t);
    ck_assert_ptr_nonnull(strstr(t, "{\"later\":\"20\"}"));
    ck_assert_ptr_nonnull(strstr(t, "Cache-Control: no-store"));
    free(t);
    t = exchange("HEAD", "/api/v1/test/later/20", 2);
    ck_assert_msg(strncmp(t, "HTTP/1.1 200 ", 13) == 0, "%s", t);
    ck_assert_ptr_null(strstr(t, "later")); /* no body */
    free(t);

    /* pipelined: the second request waits for the first's later answer */
    struct raw *r =
        raw_open("GET /api/v1/test/later/100 HTTP/1.1\r\nHost: x\r\n\r\n"
                 "GET /api/v1/test/echo?msg=second HTTP/1.1\r\nHost: x\r\n\r\n");
    run_loop(0.05);
    ck_assert_int_eq(raw_responses(r), 0); /* nothing parsed past the first */
    raw_wait(r, 2, 2);
    t = raw_text(r);
    char *first = strstr(t, "\"later\""), *second = strstr(t, "\"second\"");
    ck_assert_msg(first && second && first < second, "%s", t);
    free(t);
    ck_assert(!r->eof); /* keep-alive */
    raw_close(r);

    /* the client leaves first: nothing breaks, the connection is freed */
    r = raw_open("GET /api/v1/test/later/100 HTTP/1.1\r\nHost: x\r\n\r\n");
    run_loop(0.03);
    raw_close(r);
    run_loop(0.2);
    ck_assert_uint_eq(km_server_connections(srv), 0);

    /* a client that half-closes after its request still gets the answer */
    r = raw_open("GET /api/v1/test/later/50 HTTP/1.1\r\nHost: x\r\n\r\n");
    run_loop(0.02);
    shutdown(bufferevent_getfd(r->bev), SHUT_WR);
    raw_wait(r, 1, 2);
    t = raw_text(r);
    ck_assert_msg(strstr(t, "{\"later\":\"50\"}") != NULL, "%s", t);
    free(t);
    raw_close(r);
}
END_TEST

START_TEST(test_deadline_and_shutdown_over_http)
{
    char *t;

    start_server();
    km_rest_deadline_s = 0.2;
    t = exchange("GET", "/api/v1/test/later/never", 3);
    ck_assert_msg(strncmp(t, "HTTP/1.1 504 Gateway Timeout", 28) == 0, "%s", t);
    ck_assert_ptr_nonnull(
        strstr(t, "plugin test_good did not answer GET /api/v1/test/later/never"));
    free(t);

    /* pending while the plugin stops: 503 */
    km_rest_deadline_s = KM_REST_DEADLINE_S;
    struct raw *r = raw_open("GET /api/v1/test/later/never HTTP/1.1\r\nHost: x\r\n\r\n");
    run_loop(0.05);
    ck_assert_int_eq(raw_responses(r), 0);
    km_loader_free(core.loader);
    core.loader = NULL;
    raw_wait(r, 1, 1);
    t = raw_text(r);
    ck_assert_msg(strncmp(t, "HTTP/1.1 503 ", 13) == 0, "%s", t);
    ck_assert_ptr_nonnull(strstr(t, "stopped before it answered"));
    free(t);
    raw_close(r);
}
END_TEST

START_TEST(test_unserved_and_bad_paths)
{
    char *t, path[6000];

    start_server();
    /* routes of the original dashboard katomon does not serve */
    t = exchange("DELETE", "/api/v1/sessions/session-abc", 1);
    ck_assert_msg(strncmp(t, "HTTP/1.1 501 Not Implemented", 28) == 0, "%s", t);
    ck_assert_ptr_nonnull(strstr(t, "katomon does not serve DELETE "
                                    "/api/v1/sessions/session-abc: it is a monitor and "
                                    "never writes to KATO"));
    free(t);
    t = exchange("POST", "/api/v1/sessions/bulk-delete", 1);
    ck_assert_msg(strstr(t, " 501 ") && strstr(t, "never writes"), "%s", t);
    free(t);
    t = exchange("GET", "/api/v1/databases/redis/keys/a%2Fb", 1);
    ck_assert_msg(strstr(t, " 501 ") && strstr(t, "Redis keys"), "%s", t);
    free(t);
    t = exchange("GET", "/api/v1/databases/clickhouse/databases/kato/tables/x/schema", 1);
    ck_assert_msg(strstr(t, " 501 ") && strstr(t, "ClickHouse"), "%s", t);
    free(t);
    t = exchange("GET", "/api/v1/analytics/comprehensive?pattern_limit=5", 1);
    ck_assert_msg(strstr(t, " 501 ") && strstr(t, "analytics"), "%s", t);
    free(t);
    t = exchange("GET", "/api/v1/sessions/redis-keys/diagnostic", 1);
    ck_assert_msg(strstr(t, " 501 "), "%s", t);
    free(t);
    /* kato_api's routes without kato_api: 503 naming it */
    t = exchange("GET", "/api/v1/system/stats?minutes=5", 1);
    ck_assert_msg(strstr(t, " 503 ") && strstr(t, "[plugin kato_api]"), "%s", t);
    free(t);
    t = exchange("GET", "/api/v1/sessions/session-1/stm", 1);
    ck_assert_msg(strstr(t, " 503 ") && strstr(t, "[plugin kato_api]"), "%s", t);
    free(t);
    t = exchange("POST", "/api/v1/analytics/overview", 1);
    ck_assert_msg(strstr(t, " 405 ") && strstr(t, "Allow: GET, HEAD"), "%s", t);
    free(t);
    /* the core's own routes still win */
    t = exchange("GET", "/api/v1/sessions/count", 1);
    ck_assert_msg(strstr(t, " 503 ") && strstr(t, "topic"), "%s", t);
    free(t);
    /* not the original's: 404 */
    t = exchange("GET", "/api/v1/databases/nothing", 1);
    ck_assert_msg(strstr(t, " 404 "), "%s", t);
    free(t);
    /* an encoded NUL never reaches a handler; nor does a 5000-byte path */
    t = exchange("GET", "/api/v1/test/a%00b", 1);
    ck_assert_msg(strncmp(t, "HTTP/1.1 400 ", 13) == 0 && strstr(t, "%00"), "%s", t);
    free(t);
    snprintf(path, sizeof path, "/api/v1/test/%04990d", 7);
    t = exchange("GET", path, 1);
    ck_assert_msg(strncmp(t, "HTTP/1.1 414 ", 13) == 0, "%.300s", t);
    free(t);
    for (int i = 0; i < 100 && km_server_connections(srv) > 0; i++)
        run_loop(0.01); /* the lingering closes end */
    ck_assert_uint_eq(km_server_connections(srv), 0);
}
END_TEST

/* ---- hosts (issue 15) --------------------------------------------------- */

/* GET path?query through km_rest_handle: the status; *out the body (owned). */
static int get_q(const char *path, const char *query, json_t **out)
{
    struct km_rest_call c = {"GET", path, query, "", 0, NULL};
    char allow[64];

    *out = NULL;
    return km_rest_handle(&core, NULL, &c, out, allow, sizeof allow, NULL, NULL);
}

/* A state topic declared by the core (owner NULL) for these tests. */
static struct km_topic *declare_state(const char *name)
{
    struct km_topic_def def = {.name = name, .kind = KM_TOPIC_STATE};
    struct km_topic *t = km_bus_declare(core.bus, &def, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

/* host publishes text on t, as a bridge would hand it over. */
static void pub_remote(struct km_topic *t, const char *host, const char *text)
{
    struct km_remote r = {
        .host = host, .kind = KM_TOPIC_STATE, .epoch = 1000, .time_us = km_wall_us()};
    ck_assert_int_eq(km_bus_publish_remote(t, json_loads(text, 0, NULL), &r), KM_OK);
}

static void pub_local(struct km_topic *t, const char *text)
{
    ck_assert_int_eq(km_bus_publish(t, json_loads(text, 0, NULL), NULL), KM_OK);
}

/* The "detail" of an error body (a static copy). */
static const char *detail_of(json_t *j)
{
    static char d[256];
    snprintf(d, sizeof d, "%s", json_string_value(json_object_get(j, "detail")) ?: "-");
    return d;
}

/* ?host= on every answer that reads a topic's value, 404 for an unknown
   host, GET /api/v1/hosts, and the per-host counts of /api/v1/topics. */
START_TEST(test_host_query)
{
    json_t *j;

    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), 0);
    /* no hosts topic yet (core/fleet.c declares it in the daemon) */
    ck_assert_int_eq(get_q("/api/v1/hosts", "", &j), 503);
    ck_assert_str_eq(detail_of(j), "no hosts topic");
    json_decref(j);

    struct km_topic *metrics = declare_state("metrics");
    struct km_topic *containers = declare_state("containers");
    struct km_topic *sessions = declare_state("sessions");
    struct km_topic *hosts = declare_state("hosts");
    pub_local(metrics, "{\"who\":\"alpha\"}");
    pub_local(containers, "{\"containers\":[{\"name\":\"kato\",\"cpu\":1}]}");
    pub_local(hosts, "{\"local\":\"alpha\",\"hosts\":[{\"name\":\"alpha\"},"
                     "{\"name\":\"beta\"}]}");
    pub_remote(metrics, "beta", "{\"who\":\"beta\"}");
    pub_remote(containers, "beta", "{\"containers\":[{\"name\":\"kato\",\"cpu\":2}]}");
    pub_remote(sessions, "beta", "{\"active_count\":7}");

    /* default, an empty host, this host's own name: this host's value */
    static const char *const mine[] = {"", "host=", "host=alpha", "x=1&host=alpha&y"};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++) {
        ck_assert_int_eq(get_q("/api/v1/system/metrics", mine[i], &j), 200);
        ck_assert_str_eq(json_string_value(json_object_get(j, "who")), "alpha");
        json_decref(j);
    }
    ck_assert_int_eq(get_q("/api/v1/system/metrics", "host=beta", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "who")), "beta");
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/system/metrics", "host=%62eta", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "who")), "beta");
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/topics/metrics/latest", "host=beta", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "who")), "beta");
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/system/container-stats/kato", "host=beta", &j), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "cpu")), 2);
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/system/container-stats/kato", "", &j), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "cpu")), 1);
    json_decref(j);
    /* sessions: beta has a value, alpha none */
    ck_assert_int_eq(get_q("/api/v1/sessions/count", "host=beta", &j), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "active_session_count")), 7);
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/sessions/count", "", &j), 503);
    json_decref(j);
    ck_assert_int_eq(get_q("/api/v1/system/container-stats", "host=beta", &j), 200);
    json_decref(j);

    /* unknown hosts: 404 naming them, on every route that reads a value */
    static const char *const routes[] = {
        "/api/v1/system/metrics",
        "/api/v1/system/container-stats",
        "/api/v1/sessions/count",
        "/api/v1/system/kato-health",
        "/api/v1/topics/metrics/latest",
        "/api/v1/system/container-stats/kato",
        "/api/v1/hosts",
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        ck_assert_msg(get_q(routes[i], "host=gamma", &j) == 404, "%s", routes[i]);
        ck_assert_str_eq(detail_of(j), "no host gamma");
        json_decref(j);
    }
    ck_assert_int_eq(get_q("/api/v1/system/metrics", "host=no%20such", &j), 404);
    ck_assert_str_eq(detail_of(j), "no host no such");
    json_decref(j);
    /* routes that read no topic value do not care */
    ck_assert_int_eq(get_q("/api/v1/health", "host=gamma", &j), 200);
    json_decref(j);

    /* /api/v1/hosts: the hosts topic's value */
    ck_assert_int_eq(get_q("/api/v1/hosts", "", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "local")), "alpha");
    ck_assert_int_eq(json_array_size(json_object_get(j, "hosts")), 2);
    json_decref(j);

    /* /api/v1/topics: the hosts, and per topic the remote hosts with data */
    ck_assert_int_eq(get_q("/api/v1/topics", "", &j), 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "host")), "alpha");
    ck_assert_int_eq(json_array_size(json_object_get(j, "hosts")), 2);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "hosts"), 1)),
                     "beta");
    json_t *t;
    size_t i;
    int seen = 0;
    json_array_foreach(json_object_get(j, "topics"), i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        json_t *hs = json_object_get(t, "hosts");
        ck_assert(json_is_object(hs));
        if (strcmp(name, "metrics") == 0 || strcmp(name, "sessions") == 0) {
            json_t *b = json_object_get(hs, "beta");
            ck_assert(json_is_true(json_object_get(b, "has_value")));
            ck_assert_int_eq(json_integer_value(json_object_get(b, "epoch")), 1000);
            seen++;
        } else if (strcmp(name, "hosts") == 0) {
            ck_assert_int_eq(json_object_size(hs), 0);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 3);
    json_decref(j);
}
END_TEST

static Suite *rest_suite(void)
{
    Suite *s = suite_create("rest");
    TCase *tc = tcase_create("rest");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_prefix_ranking);
    tcase_add_test(tc, test_prefix_registration);
    tcase_add_test(tc, test_later_through_the_loader);
    tcase_add_test(tc, test_later_over_http);
    tcase_add_test(tc, test_deadline_and_shutdown_over_http);
    tcase_add_test(tc, test_unserved_and_bad_paths);
    tcase_add_test(tc, test_host_query);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rest_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
