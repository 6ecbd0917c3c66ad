/*
 * server_route.h - what each HTTP request is for: decodes the target
 * (url.h, the path rule), then the first route of a table that matches
 * serves it: /ws (the WebSocket upgrade: handshake, Origin, token, 101,
 * the socket handed to the hub), any other upgrade (400), /api/v1/history
 * (REST's CORS preflight and token, then rest_history.h's answer sent as
 * the JSON text it writes: GET and HEAD), /health and /api/v1/... (CORS
 * preflight, token, then rest.h, answered now or later),
 * /metrics (token, then metrics.h: the Prometheus text format; 404 when
 * [http] metrics = false, read per request so SIGHUP applies it), and
 * everything else as a static file (server_static.h).
 *
 * Owns the order of those decisions and the glue between them; each
 * decision is another file's (server_access.h for who may, rest.h for
 * the answer, ws.h for the hub). Answers through server_conn.h, which
 * reaches it only through the handler pointer the server gives it.
 */
#ifndef KM_SERVER_ROUTE_H
#define KM_SERVER_ROUTE_H

#include "core.h"
#include "server_access.h"
#include "server_conn.h"
#include "server_static.h"

struct km_ws;

/* What the routes need; all borrowed, filled in by the server. */
struct km_router {
    struct km_core *core;           /* bus and plugins, for REST */
    struct km_ws *ws;               /* WebSocket hub; NULL: [websocket] enabled = false */
    struct km_listener *listener;   /* counts the sockets handed to the hub */
    const struct km_access *access; /* the token and origins in force (live) */
    struct km_static_roots roots;   /* where static files come from */
};

/* Answers req on c; a km_conn_handler, with the struct km_router as arg.
   Sets req->query and req->path. Returns 1 when c was handed over. */
int km_router_handle(void *router, struct km_conn *c, struct km_req *req);

#endif /* KM_SERVER_ROUTE_H */
