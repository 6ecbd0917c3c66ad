/*
 * server_route.c - what each HTTP request is for (see server_route.h).
 */
#include <stdio.h>
#include <string.h>

#include <katomon/util.h>

#include "metrics.h"
#include "rest.h"
#include "rest_history.h"
#include "server_route.h"
#include "url.h"
#include "ws.h"
#include "ws_handshake.h" /* the handshake's keys */

/* ---- /ws: the WebSocket upgrade ---- */

static void km_router_ws_gone(void *arg)
{
    km_listener_gone(arg);
}

/* Checks the handshake; answers 101 and hands the socket to the hub
   (returns 1: c is gone), or answers the error (returns 0). */
static int km_router_ws(const struct km_router *r, struct km_conn *c, struct km_req *req)
{
    const char *upgrade = km_conn_header(c, "Upgrade");
    const char *connection = km_conn_header(c, "Connection");
    const char *version = km_conn_header(c, "Sec-WebSocket-Version");
    const char *key = km_conn_header(c, "Sec-WebSocket-Key");
    const char *origin = km_conn_header(c, "Origin");
    const char *why = NULL;
    const char *extra = NULL;
    char accept[29], detail[320], head[192], peer[64];

    if (!r->ws) {
        km_conn_detail(c, req, 404, NULL, "WebSocket is disabled ([websocket] enabled)");
        return 0;
    }
    if (strcmp(req->method, "GET") != 0)
        why = "WebSocket handshake: method must be GET";
    else if (!req->http11)
        why = "WebSocket handshake: HTTP/1.1 required";
    else if (!upgrade || !km_header_has_token(upgrade, "websocket"))
        why = "WebSocket handshake: missing \"Upgrade: websocket\"";
    else if (!connection || !km_header_has_token(connection, "upgrade"))
        why = "WebSocket handshake: missing \"Connection: Upgrade\"";
    else if (!version || strcmp(version, "13") != 0) {
        why = "WebSocket handshake: unsupported Sec-WebSocket-Version (13 only)";
        extra = "Sec-WebSocket-Version: 13\r\n";
    } else if (!key || !km_ws_key_valid(key))
        why = "WebSocket handshake: missing or bad Sec-WebSocket-Key";
    if (why) {
        km_conn_end(c);
        km_conn_detail(c, req, 400, extra, why);
        return 0;
    }
    if (origin &&
        !km_access_origin_allowed(r->access, origin, km_conn_header(c, "Host"))) {
        snprintf(detail, sizeof detail,
                 "Origin %.200s is not allowed; add it to [http] allowed_origins",
                 origin);
        km_conn_end(c);
        km_conn_detail(c, req, 403, NULL, detail);
        return 0;
    }
    if (!km_access_authorized(r->access, km_conn_header(c, "Authorization"),
                              req->query)) {
        km_conn_end(c);
        km_conn_detail(c, req, 401, KM_ACCESS_CHALLENGE, KM_ACCESS_DENIED);
        return 0;
    }
    km_ws_accept_key(key, accept);
    snprintf(head, sizeof head,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
             accept);
    struct bufferevent *bev = km_conn_hand_over(c, head, peer, sizeof peer);
    if (km_ws_attach(r->ws, bev, peer, km_router_ws_gone, r->listener) != 0)
        km_listener_gone(r->listener);
    return 1;
}

static int km_router_no_upgrade(const struct km_router *r, struct km_conn *c,
                                struct km_req *req)
{
    km_conn_end(c);
    km_conn_detail(c, req, 400, NULL, "Upgrade is only supported on /ws");
    return 0;
}

/* ---- /health, /api/v1/...: REST ---- */

/*
 * What every API route does first: the CORS lines for the request's
 * Origin into cors; an OPTIONS preflight answered (204, or 403); without
 * the token, 401 (token = 0: /health asks for none). Returns 1 when it
 * answered the request.
 */
static int km_router_api_gate(const struct km_router *r, struct km_conn *c,
                              struct km_req *req, int token, char *cors, size_t corslen)
{
    const char *origin = km_conn_header(c, "Origin");
    const char *host = km_conn_header(c, "Host");
    char extra[1024];

    km_access_cors(r->access, origin, host, cors, corslen);
    if (strcmp(req->method, "OPTIONS") == 0) {
        if (!km_access_preflight(r->access, origin, host, extra, sizeof extra))
            km_conn_detail(c, req, 403, NULL, "Origin not allowed");
        else
            km_conn_send(c, req, 204, NULL, extra, NULL, 0);
        return 1;
    }
    if (token && !km_access_authorized(r->access, km_conn_header(c, "Authorization"),
                                       req->query)) {
        snprintf(extra, sizeof extra, "%s" KM_ACCESS_CHALLENGE, cors);
        km_conn_detail(c, req, 401, extra, KM_ACCESS_DENIED);
        return 1;
    }
    return 0;
}

static int km_router_rest(const struct km_router *r, struct km_conn *c,
                          struct km_req *req)
{
    char cors[512], extra[1024], allow[128];
    struct km_rest_call call = {.method = req->method,
                                .path = req->path,
                                .query = req->query,
                                .body = req->body,
                                .body_len = req->body_len};
    struct km_rest_waiter waiter;
    struct km_rest_pending **pending;
    json_t *body = NULL;
    int status;

    /* handlers get a C string: one cut short at an encoded NUL would name
       another resource (static files check the raw path) */
    if (req->path_nul) {
        km_conn_detail(c, req, 400, NULL,
                       "Bad request target: %00 (a NUL byte) in an API path");
        return 0;
    }
    if (km_router_api_gate(r, c, req, strcmp(req->path, "/health") != 0, cors,
                           sizeof cors))
        return 0;
    pending = km_conn_prepare_later(c, &waiter);
    status = km_rest_handle(r->core, r->ws, &call, &body, allow, sizeof allow, &waiter,
                            pending);
    if (status == KM_REST_DEFERRED) {
        snprintf(extra, sizeof extra, "%sCache-Control: no-store\r\n", cors);
        km_conn_wait_later(c, req, extra);
        return 0;
    }
    if (status == 405)
        snprintf(extra, sizeof extra, "%sAllow: %s\r\nCache-Control: no-store\r\n", cors,
                 allow);
    else
        snprintf(extra, sizeof extra, "%sCache-Control: no-store\r\n", cors);
    km_conn_json(c, req, status, extra, body);
    return 0;
}

/* ---- /api/v1/history: the range answer, as text ---- */

/*
 * GET /api/v1/history (rest_history.h): the API's gate as for REST, then
 * the answer written as JSON text and sent as it is, at once. Through
 * REST's json_t, 1 h of 10 series at 1 s took 17 ms of loop (a json_t
 * per point, then json_dumps); as text about 2. The errors are REST's
 * {"detail"} answers, the same texts.
 */
static int km_router_history(const struct km_router *r, struct km_conn *c,
                             struct km_req *req)
{
    char cors[512], extra[1024];
    struct km_rh_text text;
    int status;

    if (km_router_api_gate(r, c, req, 1, cors, sizeof cors))
        return 0;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        snprintf(extra, sizeof extra, "%sAllow: GET, HEAD\r\nCache-Control: no-store\r\n",
                 cors);
        km_conn_detail(c, req, 405, extra, "Method Not Allowed");
        return 0;
    }
    status = km_rest_history_text(r->core, req->query, (double)km_wall_us() / 1e6, &text);
    snprintf(extra, sizeof extra, "%sCache-Control: no-store\r\n", cors);
    if (text.data)
        km_conn_send(c, req, status, "application/json", extra, text.data, text.len);
    else
        km_conn_detail(c, req, 500, extra, "out of memory");
    km_rh_text_free(&text);
    return 0;
}

/* ---- /metrics: Prometheus ---- */

/* GET /metrics (metrics.h): behind the token like REST (Prometheus sends
   it as a bearer token), rendered whole now: 10,000 series take well
   under the 3 ms a scrape may hold the loop, and nothing can free the
   registry or c while it runs. */
static int km_router_metrics(const struct km_router *r, struct km_conn *c,
                             struct km_req *req)
{
    struct km_metrics_text text;

    if (!r->core->series || (r->core->cfg && !r->core->cfg->metrics)) {
        km_conn_detail(c, req, 404, NULL, "GET /metrics is off ([http] metrics = false)");
        return 0;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        km_conn_detail(c, req, 405, "Allow: GET, HEAD\r\n",
                       "GET /metrics only (or HEAD)");
        return 0;
    }
    if (!km_access_authorized(r->access, km_conn_header(c, "Authorization"),
                              req->query)) {
        km_conn_detail(c, req, 401, KM_ACCESS_CHALLENGE, KM_ACCESS_DENIED);
        return 0;
    }
    if (km_metrics_scrape(r->core->series, &text) != 0) {
        km_conn_detail(c, req, 500, NULL, "out of memory rendering /metrics");
        return 0;
    }
    km_conn_send(c, req, 200, KM_METRICS_CTYPE, "Cache-Control: no-store\r\n", text.data,
                 text.len);
    km_metrics_text_free(&text);
    return 0;
}

/* ---- everything else: static files ---- */

static int km_router_static(const struct km_router *r, struct km_conn *c,
                            struct km_req *req)
{
    km_static_serve(&r->roots, c, req);
    return 0;
}

/* ---- the table ---- */

static int km_router_is_ws(const struct km_req *req)
{
    return strcmp(req->path, "/ws") == 0;
}

static int km_router_is_upgrade(const struct km_req *req)
{
    return req->upgrade;
}

/* exactly /metrics: one with %00 in it is a static file's (404) */
static int km_router_is_metrics(const struct km_req *req)
{
    return !req->path_nul && strcmp(req->path, "/metrics") == 0;
}

/* exactly /api/v1/history; with %00 in it, REST's 400 */
static int km_router_is_history(const struct km_req *req)
{
    return !req->path_nul && strcmp(req->path, KM_RH_PATH) == 0;
}

static int km_router_is_rest(const struct km_req *req)
{
    return km_rest_owns(req->path);
}

/* One route: the first whose match says yes serves the request. */
struct km_route {
    int (*match)(const struct km_req *req); /* NULL: matches anything */
    int (*serve)(const struct km_router *r, struct km_conn *c,
                 struct km_req *req); /* answers; 1 when c was handed over */
};

/* In this order: an upgrade is only ever /ws's, /api/v1/history is taken
   before the rest of /api/v1/, and the dashboard's files are whatever no
   other route claims (/metrics included). */
static const struct km_route km_routes[] = {
    {km_router_is_ws, km_router_ws},
    {km_router_is_upgrade, km_router_no_upgrade},
    {km_router_is_history, km_router_history},
    {km_router_is_rest, km_router_rest},
    {km_router_is_metrics, km_router_metrics},
    {NULL, km_router_static},
};

int km_router_handle(void *router, struct km_conn *c, struct km_req *req)
{
    const struct km_router *r = router;
    const char *target = req->target;
    char path[4096];
    size_t pl = strcspn(target, "?#");
    long dl;

    req->query = target[pl] == '?' ? target + pl + 1 : "";
    if (target[0] == '/' && pl >= sizeof path) {
        km_conn_end(c);
        km_conn_detail(c, req, 414, NULL, "URI Too Long: the path is over 4095 bytes");
        return 0;
    }
    /* an encoded NUL is each route's to answer: /ws and the API see the
       path before it, static files decode the raw target again (404) */
    if (target[0] != '/' ||
        ((dl = km_pct_decode(target, pl, path, sizeof path, KM_PCT_PATH)) < 0 &&
         dl != KM_PCT_ENUL)) {
        km_conn_end(c);
        km_conn_detail(c, req, 400, NULL, "Bad request target");
        return 0;
    }
    req->path = path;
    req->path_nul = dl == KM_PCT_ENUL;
    for (size_t i = 0; i < sizeof km_routes / sizeof km_routes[0]; i++)
        if (!km_routes[i].match || km_routes[i].match(req))
            return km_routes[i].serve(r, c, req);
    return 0; /* not reached: the last route matches anything */
}
