/*
 * ws_conn.h - one upgraded WebSocket connection, and the set of them one
 * owner keeps (DESIGN section 8).
 *
 * Owns:
 *   - struct km_ws_client: the socket (a bufferevent), its frame reader, its
 *     bounded FIFO of references to shared frames, its close state, its
 *     flood buckets and the hashes of the compatible subscribes it sent;
 *   - sending: the sendmsg fast paths, the pump into libevent, backpressure
 *     (conflation of realtime_update, the 1008 for a client that cannot
 *     keep up), control frames (pong, ping, close);
 *   - closing: close, linger, kill, reap; housekeeping (pings, the idle
 *     timeout, the close deadline); the 1001 to everyone at shutdown;
 *   - struct km_ws_conns: the live and dead connections of one owner, their
 *     limits and counters.
 *
 * A connection never calls its owner's code by name: it reports through
 * struct km_ws_conn_ops (a request arrived; the connection died), which
 * the owner (the hub, ws.c) fills in, nginx-style. The owner may read every
 * field of struct km_ws_client; the fields marked "owner's" are the
 * owner's to write, and this file only reads dialect among them. Calls
 * ws_frame.c and log.c only.
 *
 * Ownership words as in include/katomon/plugin.h. Not thread-safe:
 * everything runs on the event loop's thread.
 */
#ifndef KM_WS_CONN_H
#define KM_WS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "ws_frame.h"
#include "ws_proto.h" /* enum km_ws_dialect (a type only) */

/* Recent compatible subscribe texts remembered per client (by hash): the
   original frontend's three components send three distinct texts. */
#define KM_WS_SEEN 8

struct km_ws_client;

/* How a connection reports to its owner; every member is required. */
struct km_ws_conn_ops {
    /*
     * A text or binary message from c that passed the flood checks and is
     * not a compatible re-send (see km_ws_client_remember): the owner parses
     * it and answers through km_ws_client_reply, _send, _close. data is
     * borrowed for the call (NUL-terminated, not counted in len). h: its
     * keyed hash when c speaks the compatible dialect, else 0.
     */
    void (*request)(void *owner, struct km_ws_client *c, const unsigned char *data,
                    size_t len, uint64_t h);
    /* c died (peer gone, socket error, killed): no callback reaches it again
       and it is freed soon. The owner forgets it (its subscription set).
       Called once, from inside km_ws_conns_* or a libevent callback. */
    void (*dead)(void *owner, struct km_ws_client *c);
};

/* What the connections enforce; copied. */
struct km_ws_conn_limits {
    size_t max_message_bytes; /* largest client message; close 1009 past it */
    size_t max_queue_bytes;   /* unsent bytes per client before backpressure */
    double ping_interval;     /* seconds between server pings; <= 0: none */
    double idle_timeout;      /* seconds without a client frame; <= 0: never */
    double close_wait;        /* seconds to wait for the peer's close frame */
    double frame_timeout;     /* seconds a frame may take from its first byte to its
                                 last ([http] request_timeout); <= 0: no limit */
};

/* Counters of one owner's connections (the hub reports them in its stats). */
struct km_ws_conn_stats {
    uint64_t frames_queued;        /* references to shared frames put in client queues */
    uint64_t bytes_sent;           /* bytes of every frame handed to a client (shared and
                                      private; a realtime_update replaced unsent is
                                      taken back) */
    uint64_t private_frames;       /* one-client frames built: replies */
    uint64_t state_conflated;      /* queued realtime_update replaced by a newer one */
    uint64_t state_skipped;        /* realtime_update not queued: client at its bound */
    uint64_t closed_slow;          /* clients closed because their queue was full */
    uint64_t closed_protocol;      /* clients closed for bad frames or flooding */
    uint64_t subscribes_unchanged; /* compatible re-sends recognised by their hash */
    uint64_t accepted;             /* clients ever made */
    uint64_t clients;              /* clients not dead now */
};

/* The connections of one owner; the owner embeds it and never writes it
   but through km_ws_conns_*. */
struct km_ws_conns {
    const struct km_ws_conn_ops *ops; /* the owner's callbacks (borrowed) */
    void *owner;                      /* their first argument */
    struct km_ws_conn_limits lim;     /* in force */
    struct km_ws_client *live;        /* every client not dead (list via next) */
    struct km_ws_client *dead;        /* clients to free (list via next) */
    struct event *reap_ev;            /* frees dead clients outside callbacks */
    uint64_t next_id;                 /* id of the next client */
    uint64_t hash_key;                /* per-run key of the text hash (random) */
    struct km_ws_conn_stats stats;    /* counters */
};

enum km_wsc_state {
    KM_WSC_OPEN = 1,    /* messages flow */
    KM_WSC_CLOSING = 2, /* close frame in the output; waiting for it to drain */
    KM_WSC_LINGER = 3,  /* drained, write side shut; reading until EOF or close_wait */
    KM_WSC_DEAD = 4,    /* waiting to be freed (reap list) */
};

struct km_subset; /* the owner's: a subscription set */

struct km_ws_client {
    /* touched for every member on every tick (km_ws_client_send): kept together */
    struct km_ws_conns *conns;     /* the set it belongs to (borrowed) */
    struct evbuffer *out;          /* bev's output (cached: read per send) */
    evutil_socket_t fd;            /* bev's socket (cached) */
    enum km_wsc_state state;       /* see enum */
    enum km_ws_dialect dialect;    /* owner's: compatible until a katomon/1 subscribe */
    struct km_ws_client *set_next; /* owner's: next member of set */
    uint64_t q_head;               /* absolute index of the oldest entry */
    uint64_t q_tail;               /* absolute index one past the newest */
    uint64_t frames_out;           /* frames queued (shared and private) */
    uint64_t id;                   /* 1, 2, ... for logs and the owner's listing */
    char peer[64];                 /* "ADDR:PORT" */
    struct bufferevent *bev;       /* the socket (owned) */
    struct km_ws_reader *reader;   /* incoming frames (owned) */
    int subscribed;                /* owner's: sent at least one valid subscribe */
    struct km_subset *set;         /* owner's: current subscription set */
    struct km_ws_client *set_prev; /* owner's: previous member of set */
    struct km_ws_client *next;     /* conns' live or dead list */
    struct km_ws_client *prev;     /* conns' live list */
    struct km_frame **q;           /* FIFO ring of frame references (owned refs) */
    size_t q_cap;                  /* slots in q (power of two) */
    size_t q_bytes;                /* bytes of the frames in q */
    int state_pending;             /* q holds a realtime_update not yet pumped */
    uint64_t state_pos;            /* its absolute index */
    int64_t connected_wall_us;     /* when it was made (wall clock) */
    int64_t last_rx_us;            /* last frame from the peer (monotonic) */
    int64_t frame_start_us;        /* when the frame now in progress began (monotonic;
                                      0: none is); see km_ws_conns_housekeep */
    int64_t last_ping_us;          /* last server ping (monotonic) */
    int64_t closing_us;            /* when the close began (monotonic) */
    uint16_t close_code;           /* code we sent (0: none yet) */
    double tokens;                 /* work bucket (KM_WS_MSG_RATE) */
    double ftokens;                /* message bucket (KM_WS_FRAME_RATE) */
    double btokens;                /* byte bucket (KM_WS_BYTE_RATE) */
    int64_t tokens_us;             /* when the buckets were last refilled */
    uint64_t seen[KM_WS_SEEN];     /* hashes of compatible subscribe texts already
                                      merged into the union (0: empty slot) */
    unsigned seen_next;            /* next slot of seen to overwrite */
    int warned;                    /* owner's: a dropped request was logged already */
    unsigned errors;               /* bad requests in the current window */
    int64_t errors_since_us;       /* start of that window */
    uint64_t msgs_in;              /* messages received */
    void (*gone)(void *arg);       /* told when the socket is closed (or NULL) */
    void *gone_arg;                /* passed to gone */
};

/* ---- the set of connections ---------------------------------------------- */

/*
 * Makes cs empty on base: ops (borrowed, must outlive cs) and owner are
 * what its connections report to; lim is copied (zero values are the
 * caller's to fill in first). Returns 0, or -1 on ENOMEM (cs then needs
 * only km_ws_conns_fini).
 */
int km_ws_conns_init(struct km_ws_conns *cs, struct event_base *base,
                     const struct km_ws_conn_ops *ops, void *owner,
                     const struct km_ws_conn_limits *lim);
/*
 * Shutdown: closes every client with 1001 (one non-blocking write each:
 * shutting down must not wait on a slow peer), kills it (ops->dead runs),
 * frees them all (their gone runs) and what cs holds.
 */
void km_ws_conns_fini(struct km_ws_conns *cs);
/* New limits (copied); a message limit applies from each client's next
   message. */
void km_ws_conns_set_limits(struct km_ws_conns *cs, const struct km_ws_conn_limits *lim);
/* Pings, idle timeout, frame deadline, close deadline: O(clients); the
   owner's timer runs it a few times per shortest interval. */
void km_ws_conns_housekeep(struct km_ws_conns *cs);

/* ---- one connection -------------------------------------------------------- */

/*
 * New client on cs for bev (an upgraded socket, the 101 already queued in
 * its output; bytes read past the request still in its input). peer is
 * copied. The client is live but reads nothing until km_ws_client_start,
 * so the owner can set its own fields first. gone(arg) runs once when the
 * client is finally freed (gone may be NULL). Returns the client (owned by
 * cs, which steals bev), or NULL on ENOMEM (bev untouched).
 */
struct km_ws_client *km_ws_client_new(struct km_ws_conns *cs, struct bufferevent *bev,
                                      const char *peer, void (*gone)(void *arg),
                                      void *arg);
/* Starts I/O: socket options, callbacks, and the bytes already read. */
void km_ws_client_start(struct km_ws_client *c);

/*
 * Queues frame f (borrowed; c takes its own reference) for c, applying the
 * bound: a realtime_update (KM_FRAME_STATE) conflates or is skipped;
 * anything else closes c with 1008 when it does not fit. Returns 0 when
 * queued (or sent), -1 when not (c not open, skipped, or closed now).
 */
int km_ws_client_send(struct km_ws_client *c, struct km_frame *f);
/* Sends a one-client reply (steals o; NULL, like ENOMEM, closes c with
   1013). */
void km_ws_client_reply(struct km_ws_client *c, json_t *o);
/*
 * Starts the close handshake with code and reason (borrowed; at most 123
 * bytes are sent; NULL: none; code 0: an empty close frame). Nothing queued
 * is sent after it. No-op when c is not open.
 */
void km_ws_client_close(struct km_ws_client *c, int code, const char *reason);
/* Out of memory while serving c (`what`: doing what): one error line, then
   km_ws_client_close with 1013 "out of memory" - the client may try again,
   and the operator learns why it was cut. No-op when c is not open. */
void km_ws_client_oom(struct km_ws_client *c, const char *what);
/* Counts one bad request of c's: past 20 within 10 seconds, c is closed
   with 1008 "too many bad requests". */
void km_ws_client_count_error(struct km_ws_client *c);
/* Remembers hash h (from ops->request) as a text c sent: the same text
   again is then dropped before the owner sees it (counted in
   subscribes_unchanged). h 0: nothing. */
void km_ws_client_remember(struct km_ws_client *c, uint64_t h);

/* "open", "closing" or "closed". */
const char *km_ws_client_state_name(const struct km_ws_client *c);

/* Bytes c holds unsent: FIFO + bufferevent output. */
static inline size_t km_ws_client_queued(const struct km_ws_client *c)
{
    return c->q_bytes + evbuffer_get_length(c->out);
}

#endif /* KM_WS_CONN_H */
