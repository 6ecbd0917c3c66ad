/*
 * server.h - the one HTTP listener (DESIGN section 6).
 *
 * One port serves the dashboard's static files from [http] web_root, the
 * REST API under /api/v1 (rest.h) plus GET /health, and the /ws upgrade
 * (ws.h). HTTP/1.1 with keep-alive, parsed with http-parser, on libevent.
 *
 * Limits: [http] max_connections (HTTP and WebSocket together; the next
 * one gets 503 and is closed), max_request_bytes (request line + headers:
 * 431; body: 413), 30 s to send a request, 64 headers.
 *
 * Access: when [http] auth_token is set, /api/v1/... and /ws need it, as
 * "Authorization: Bearer TOKEN" or, for browsers (which cannot set headers
 * on a WebSocket), "?token=TOKEN"; 401 otherwise. Static files and GET
 * /health stay open (the page must load to ask for the token; probes need
 * no secret). /ws checks Origin: absent (not a browser), the same host as
 * the Host header, or listed in [http] allowed_origins ("*" allows all);
 * others get 403. REST answers CORS for the same allowed origins.
 *
 * Owns the server's life (start, reload, free) and nothing else; the work
 * is done by one file per concern, which server.c wires together:
 *   server_conn.h    the listener and connections (parsing, limits, answers)
 *   server_route.h   what each request is for (/ws, REST, static files)
 *   server_static.h  static files
 *   server_access.h  the token, Origin and CORS
 *   url.h            the percent-decoder
 */
#ifndef KM_SERVER_H
#define KM_SERVER_H

#include <stddef.h>
#include "core.h"

struct km_server;
struct km_ws;

/*
 * Binds [http] bind:port of core->cfg (port 0: ephemeral), starts
 * accepting, and starts the WebSocket hub. Logs "listening on
 * http://ADDR:PORT" at notice level. Returns the server (new; free with
 * km_server_free), or NULL with a message in err such as "cannot listen on
 * 127.0.0.1:8080: Address already in use; set [http] port".
 * core is borrowed and must outlive the server.
 */
struct km_server *km_server_start(struct km_core *core, char *err, size_t errlen);

/* The port actually bound. */
int km_server_port(const struct km_server *srv);

/* Closes every connection (WebSocket clients get 1001 going away), frees. */
void km_server_free(struct km_server *srv);

/* SIGHUP: takes what can change live: allowed_origins, auth_token and
   [websocket] update_interval. bind, port, web_root, the [http] limits and
   the other [websocket] settings need a restart (main.c says so). */
void km_server_reload(struct km_server *srv, const struct km_config *cfg);

/* The WebSocket hub (borrowed), for tests and REST. */
struct km_ws *km_server_ws(struct km_server *srv);

/* Connections open now (HTTP + WebSocket). */
size_t km_server_connections(const struct km_server *srv);

#endif /* KM_SERVER_H */
