/*
 * ws.h - the WebSocket hub behind GET /ws (DESIGN sections 2, 5, 8): the
 * transport's public face for the rest of the core (server_route.c, server.c, rest.c) and
 * the tests.
 *
 * Owns: every client of /ws (through a struct km_ws_conns), the
 * subscription sets they share (interned: one struct km_subset per
 * distinct set and dialect), the one "*" bus subscription and the fan-out of shared
 * frames, realtime_update ticks, `since` replay, the housekeeping timers,
 * the counters and GET /api/v1/ws/subscriptions.
 *
 * The transport's other files, each with its one concern:
 *   ws_handshake.{c,h}  Sec-WebSocket-Key / Sec-WebSocket-Accept
 *   ws_frame.{c,h}      frames: the incoming reader, the shared server frame
 *   ws_proto.{c,h}      the client protocol: requests, both dialects' texts
 *   ws_conn.{c,h}       one connection: queue, sending, closing, flood limits
 * Calls go one way: server_route.c -> ws.c (hub) -> ws_proto.c, ws_conn.c ->
 * ws_frame.c. A connection reports to the hub only through the callbacks
 * the hub gives it (struct km_ws_conn_ops). The path of one message:
 *   plugin -> km_bus_publish (bus.c) -> km_ws_bus_cb (ws.c: each set that
 *   wants it, each member) -> km_ws_event_frame (ws.c, text by ws_proto.c,
 *   once per message and dialect) -> km_ws_client_send (ws_conn.c) ->
 *   send()/sendmsg() or the pump into the bufferevent -> socket.
 *
 * Ownership words as in include/katomon/plugin.h ("new", "borrowed",
 * "steals"). Not thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_WS_H
#define KM_WS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <event2/bufferevent.h>

#include "core.h"

struct km_ws; /* opaque: every client, subscription sets, timers */

/* Settings the hub runs with; copied. Zero values fall back to defaults. */
struct km_ws_limits {
    double update_interval;   /* seconds between realtime_update ticks (3) */
    size_t max_message_bytes; /* largest client message; close 1009 past it (64 KiB) */
    size_t max_queue_bytes;   /* unsent bytes per client before backpressure (1 MiB) */
    double ping_interval;     /* seconds between server pings; <= 0: none */
    double idle_timeout;      /* seconds without a client frame; <= 0: never */
    double close_wait;        /* seconds to wait for the peer's close frame (5) */
    double frame_timeout;     /* seconds a client frame may take from its first byte
                                 to its last ([http] request_timeout); <= 0: none */
    int compatible_aggregate; /* [websocket] compatible_fleet = aggregate: 1, compatible
                                 clients get every host's items; 0: this host's only */
};

/* Counters, for tests and GET /api/v1/ws/subscriptions. */
struct km_ws_stats {
    uint64_t json_encodes;         /* broadcast JSON texts built (1 per event message,
                                      1 per realtime_update per distinct set) */
    uint64_t frames_built;         /* broadcast frames built (shared by receivers) */
    uint64_t frames_queued;        /* references to shared frames put in client queues */
    uint64_t bytes_sent;           /* bytes of every frame handed to a client */
    uint64_t private_frames;       /* one-client frames: ack, error, heartbeat, gap */
    uint64_t state_conflated;      /* queued realtime_update replaced by a newer one */
    uint64_t state_skipped;        /* realtime_update not queued: client at its bound */
    uint64_t closed_slow;          /* clients closed because their queue was full */
    uint64_t closed_protocol;      /* clients closed for bad frames or flooding */
    uint64_t subscribes;           /* subscribe requests handled (both dialects) */
    uint64_t subscribes_unchanged; /* compatible subscribes recognised as no change
                                      (no parse, no allocation, no send) */
    uint64_t compat_ignored;       /* compatible clients' bad requests, dropped silently
                                      (the original protocol has no error reply) */
    uint64_t union_capped;         /* topic names a compatible union had no room for */
    uint64_t accepted;             /* clients ever attached */
    uint64_t clients;              /* clients now */
    uint64_t sets;                 /* distinct subscription sets now */
    uint64_t ticks;                /* realtime_update ticks */
};

/* Told when a client is gone (its socket closed); arg as given to attach. */
typedef void (*km_ws_gone_cb)(void *arg);

/*
 * New hub on core's loop and bus: subscribes to every topic ("*") of every
 * host (KM_SUB_HOSTS) once and starts the realtime_update timer. Returns
 * NULL on ENOMEM. core is borrowed and must outlive the hub.
 */
struct km_ws *km_ws_new(struct km_core *core, const struct km_ws_limits *lim);
/* Closes every client with 1001 (best effort, without blocking), frees. */
void km_ws_free(struct km_ws *ws);
/* New settings: timers re-armed, limits apply at once. */
void km_ws_set_limits(struct km_ws *ws, const struct km_ws_limits *lim);
/* The settings in force (defaults filled in). */
struct km_ws_limits km_ws_get_limits(const struct km_ws *ws);

/*
 * Takes over an upgraded connection: steals bev (the 101 response already
 * queued in its output; bytes already read past the request stay in its
 * input and are parsed now). peer is copied. gone(arg) runs once when the
 * connection is finally closed. Returns 0, or -1 on ENOMEM (bev freed,
 * gone not called).
 */
int km_ws_attach(struct km_ws *ws, struct bufferevent *bev, const char *peer,
                 km_ws_gone_cb gone, void *arg);

/* Counters now. */
void km_ws_get_stats(const struct km_ws *ws, struct km_ws_stats *out);
/* The body of GET /api/v1/ws/subscriptions (new reference). */
json_t *km_ws_clients_json(struct km_ws *ws);
/* Runs one realtime_update tick now (tests; the timer does it otherwise). */
void km_ws_tick(struct km_ws *ws);

#endif /* KM_WS_H */
