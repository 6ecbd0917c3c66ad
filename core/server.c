/*
 * server.c - the HTTP server's top: makes the listener (server_conn.c),
 * gives it the router (server_route.c) as its handler, and holds what
 * both are given: the access settings (server_access.c), the static
 * roots, and the WebSocket hub (ws.c). See server.h for what is served.
 *
 * The only file that knows every piece; none of them calls back into it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "server_access.h"
#include "server_conn.h"
#include "server_route.h"
#include "ws.h"

#ifndef KM_WEB_ROOT
#define KM_WEB_ROOT "/usr/share/katomon/web"
#endif

struct km_server {
    struct km_core *core;         /* loop, bus, config (borrowed) */
    struct km_listener *listener; /* the socket and its HTTP connections (owned) */
    struct km_ws *ws;             /* WebSocket hub (owned); NULL: [websocket] enabled =
                                     false */
    struct km_access access;      /* [http] auth_token and allowed_origins (live) */
    char *web_root;               /* [http] web_root (owned) */
    char *vendor_root;            /* [http] vendor_root, served as /vendor/ (owned);
                                     NULL: off */
    struct km_router router;      /* the listener's handler; borrows the fields above */
};

/* [websocket] settings as the hub takes them. */
static struct km_ws_limits km_server_ws_limits(const struct km_config *cfg)
{
    struct km_ws_limits lim = {0};
    if (cfg) {
        lim.update_interval = cfg->update_interval;
        lim.max_message_bytes = cfg->max_message_bytes;
        lim.max_queue_bytes = cfg->max_queue_bytes;
        lim.ping_interval = cfg->ping_interval;
        lim.idle_timeout = cfg->idle_timeout;
        lim.frame_timeout = cfg->request_timeout; /* a frame is a request too */
        lim.compatible_aggregate = cfg->compatible_fleet == KM_FLEET_AGGREGATE;
    }
    return lim;
}

struct km_server *km_server_start(struct km_core *core, char *err, size_t errlen)
{
    const struct km_config *cfg = core->cfg;
    struct km_server *srv = calloc(1, sizeof *srv);
    const char *bind_addr = cfg && cfg->bind && *cfg->bind ? cfg->bind : "127.0.0.1";
    char real[PATH_MAX], url[128];

    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->core = core;
    srv->web_root =
        strdup(cfg && cfg->web_root && *cfg->web_root ? cfg->web_root : KM_WEB_ROOT);
    if (cfg && cfg->vendor_root && *cfg->vendor_root)
        srv->vendor_root = strdup(cfg->vendor_root);
    if (!srv->web_root) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    km_access_set(&srv->access, cfg);
    srv->listener = km_listener_new(
        core->base, bind_addr, cfg ? cfg->port : 8080,
        cfg && cfg->max_connections > 0 ? (size_t)cfg->max_connections : 1024,
        cfg && cfg->max_request_bytes ? cfg->max_request_bytes : 64 * 1024,
        km_router_handle, &srv->router, err, errlen);
    if (!srv->listener)
        goto fail;
    km_listener_set_request_timeout(srv->listener, cfg ? cfg->request_timeout : 30);
    struct km_ws_limits lim = km_server_ws_limits(cfg);
    /* [websocket] enabled = false: no hub at all (/ws answers 404) */
    if ((cfg ? cfg->enabled : 1) && !(srv->ws = km_ws_new(core, &lim))) {
        snprintf(err, errlen, "cannot start the WebSocket hub: out of memory");
        goto fail;
    }
    /* nothing is accepted before the loop runs, so the router may be
       filled in after the listener exists */
    srv->router = (struct km_router){.core = core,
                                     .ws = srv->ws,
                                     .listener = srv->listener,
                                     .access = &srv->access,
                                     .roots = {srv->web_root, srv->vendor_root}};
    if (!realpath(srv->web_root, real))
        km_log(KM_LOG_WARNING, "[http] web_root %s: %s; static files will answer 404",
               srv->web_root, strerror(errno));
    km_log(KM_LOG_NOTICE, "listening on %s",
           km_listener_url(srv->listener, url, sizeof url));
    return srv;
fail:
    km_server_free(srv);
    return NULL;
}

int km_server_port(const struct km_server *srv)
{
    return km_listener_port(srv->listener);
}

struct km_ws *km_server_ws(struct km_server *srv)
{
    return srv->ws;
}

size_t km_server_connections(const struct km_server *srv)
{
    return km_listener_connections(srv->listener);
}

void km_server_reload(struct km_server *srv, const struct km_config *cfg)
{
    km_access_set(&srv->access, cfg);
    if (cfg)
        km_listener_set_request_timeout(srv->listener, cfg->request_timeout);
    if (srv->ws && cfg) {
        /* only the interval and the frame deadline (request_timeout) are live;
           the other limits need a restart (main.c says so), so the hub keeps
           the ones it started with */
        struct km_ws_limits lim = km_ws_get_limits(srv->ws);
        lim.update_interval = cfg->update_interval;
        lim.frame_timeout = cfg->request_timeout;
        km_ws_set_limits(srv->ws, &lim);
    }
    km_log(
        KM_LOG_INFO,
        "http: reloaded allowed_origins, auth_token, request_timeout, update_interval");
}

void km_server_free(struct km_server *srv)
{
    if (!srv)
        return;
    /* the hub first: each client's gone() still counts it off the listener */
    km_ws_free(srv->ws); /* 1001 to every client */
    srv->ws = NULL;
    km_listener_free(srv->listener);
    km_access_clear(&srv->access);
    free(srv->web_root);
    free(srv->vendor_root);
    free(srv);
}
