/*
 * rest.h - the REST API: the original dashboard's fallback endpoints and
 * katomon's own (see kato-dashboard-protocol.md and DESIGN section 6).
 *
 *   GET /health, /api/v1/health     {"status":"healthy","service","version"}
 *   GET /api/v1/system/metrics      latest "metrics" body
 *   GET /api/v1/system/container-stats          latest "containers" body
 *   GET /api/v1/system/container-stats/{name}   one of its containers, or 404
 *   GET /api/v1/sessions/count      {"active_session_count": N} from "sessions"
 *   GET /api/v1/system/kato-health  latest "kato_health" body, or
 *                                   {"status":"error","error":"..."}
 *   GET /api/v1/topics              every topic: name, kind, type, last seq, ...
 *   GET /api/v1/ws/subscriptions    WebSocket clients, their topics, queued bytes
 *   GET /api/v1/plugins             loaded and disabled plugins, with the reason
 *   GET /api/v1/hosts               latest "hosts" body: every host, up or not
 *   GET /api/v1/history?series=SEL&from=&to=&step=  points of the matched series
 *   GET /api/v1/history/series?match=SEL  series with history, tiers, counts
 *
 * Everything is served from the bus's latest state, never by asking KATO
 * or Docker. Every answer that reads a topic's value takes ?host=NAME:
 * that host's latest value (default, or an empty NAME: this host's); a
 * host the bus does not know answers 404 {"detail":"no host NAME"}. A
 * state topic with no value yet answers 503 {"detail":...}; errors are
 * {"detail":"..."} with their status code.
 *
 * Plugins add routes under /api/v1/ through km_host.rest_route (kept by
 * the loader, km_loader_find); they are served behind the same token, CORS
 * and size limits. A built-in path wins over a plugin's. A plugin may
 * answer later (KM_REST_LATER); the server then waits for it.
 *
 * The original dashboard's routes katomon does not serve (writes, the
 * ClickHouse/Qdrant/Redis browsers under /api/v1/databases/, analytics
 * other than the overview) answer 501 {"detail": "katomon does not serve
 * METHOD PATH: why"}; the routes of the kato_api plugin answer 503 naming
 * [plugin kato_api] when it is not running.
 *
 * Pure: no I/O here. The server (server_route.c) parses, authenticates
 * and writes.
 */
#ifndef KM_REST_H
#define KM_REST_H

#include <jansson.h>
#include "core.h"
#include "loader.h"

struct km_ws;

/* Topic names the fallback endpoints read. */
#define KM_REST_TOPIC_METRICS     "metrics"
#define KM_REST_TOPIC_CONTAINERS  "containers"
#define KM_REST_TOPIC_SESSIONS    "sessions"
#define KM_REST_TOPIC_KATO_HEALTH "kato_health"
#define KM_REST_TOPIC_HOSTS       "hosts" /* the core's (core/fleet.c) */

/*
 * Answers GET `path` of a built-in endpoint (percent-decoded) with its raw
 * query (NULL or "" for none; only "host" is read here). ws may be NULL.
 * Returns the HTTP status and sets *body (new reference, always set). 404
 * for a path it does not know, or a ?host= the bus does not know.
 */
int km_rest_get(struct km_core *core, struct km_ws *ws, const char *path,
                const char *query, json_t **body);

/* 1 when path belongs to the REST side (/health and /api/v1...). */
int km_rest_owns(const char *path);

/* km_rest_handle: a plugin answers later, through the waiter. */
#define KM_REST_DEFERRED (-1)

/*
 * Answers any REST request (call->path percent-decoded): built-in GETs
 * (HEAD as GET), then plugin routes (core->loader) and the original
 * dashboard's routes katomon does not serve (501, or 503 naming [plugin
 * kato_api] for those that plugin serves). Returns the status and sets
 * *body (new reference, always set; errors are {"detail"}). For 405,
 * allow gets the methods the path takes ("GET, HEAD"). Or returns
 * KM_REST_DEFERRED, *body untouched: a plugin answers later through
 * `waiter` (see loader.h), and *pending is the handle to detach it with
 * when the connection goes first.
 */
int km_rest_handle(struct km_core *core, struct km_ws *ws,
                   const struct km_rest_call *call, json_t **body, char *allow,
                   size_t allowlen, const struct km_rest_waiter *waiter,
                   struct km_rest_pending **pending);

/* {"detail": text} (new). */
json_t *km_rest_detail(const char *text);

#endif /* KM_REST_H */
