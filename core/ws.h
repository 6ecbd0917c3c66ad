/*
 * ws.h - the WebSocket transport behind GET /ws (DESIGN sections 2, 5, 8).
 *
 * Two dialects on one endpoint (DESIGN section 5; README "WebSocket
 * protocol"):
 *   - compatible (every client until it declares katomon's): what the KATO
 *     Dashboard v0.3.7 frontend expects: realtime_update, session_event,
 *     system_alert, text "ping" -> heartbeat. A subscribe is silent (no
 *     reply, no immediate send) and ADDS to the client's set: the client
 *     gets the union of every set it sent (the frontend's three components
 *     re-send theirs on every render over one socket). A subscribe that
 *     changes nothing is recognised from its bytes alone (no parse, no
 *     allocation, no encoding) and is not charged as work.
 *   - katomon/1 (a subscribe with "protocol":"katomon/1"; the declaration
 *     holds for the connection): subscribe REPLACES the set and is answered
 *     by subscription_ack (epoch, last seq per event topic) and an
 *     immediate realtime_update; "since" replays missed events; error
 *     replies name bad requests; events carry seq, resolved alerts
 *     "state":"resolved".
 * See the top of ws.c for the wire mapping of bus topics and the fan-out
 * design.
 *
 * Pieces, each usable alone (tests, fuzzing):
 *   - km_ws_reader: incoming frame parser (wslay_frame) + message assembly
 *     with every RFC 6455 check that has a close code;
 *   - km_ws_parse_request: the client's JSON (or "ping") requests;
 *   - km_ws_accept_key: the handshake's Sec-WebSocket-Accept;
 *   - struct km_ws: the hub that owns the clients, subscribes to the bus
 *     once ("*"), and fans shared pre-built frames out to client queues.
 *
 * Ownership follows include/katomon/plugin.h ("new", "borrowed", "steals").
 * Not thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_WS_H
#define KM_WS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <event2/bufferevent.h>

#include "core.h"

/* ---- close codes (RFC 6455 section 7.4.1) ----------------------------- */

#define KM_WS_CLOSE_NORMAL     1000 /* done */
#define KM_WS_CLOSE_GOING_AWAY 1001 /* daemon stopping, idle timeout */
#define KM_WS_CLOSE_PROTOCOL   1002 /* bad framing */
#define KM_WS_CLOSE_BAD_DATA   1007 /* text that is not UTF-8 */
#define KM_WS_CLOSE_POLICY     1008 /* flooding, send queue full */
#define KM_WS_CLOSE_TOO_BIG    1009 /* message larger than max_message_bytes */
#define KM_WS_CLOSE_TRY_LATER  1013 /* server overloaded */

/* Frame opcodes. */
#define KM_WS_OP_CONT   0x0
#define KM_WS_OP_TEXT   0x1
#define KM_WS_OP_BINARY 0x2
#define KM_WS_OP_CLOSE  0x8
#define KM_WS_OP_PING   0x9
#define KM_WS_OP_PONG   0xA

/* ---- incoming frames ----------------------------------------------------- */

struct km_ws_reader; /* opaque: frame parser + message reassembly */

/*
 * Called once per complete message: TEXT/BINARY (reassembled from its
 * fragments, text already checked to be UTF-8), PING, PONG, or CLOSE (data
 * is the raw close payload, already checked: empty or a valid code plus
 * UTF-8 reason). data is borrowed for the call. Return 0 to go on, non-zero
 * to stop feeding (the rest of the input is left unread).
 */
typedef int (*km_ws_msg_cb)(void *arg, int opcode, const unsigned char *data, size_t len);

/* New reader (NULL on ENOMEM). max_message: largest reassembled message. */
struct km_ws_reader *km_ws_reader_new(size_t max_message, km_ws_msg_cb cb, void *arg);
void km_ws_reader_free(struct km_ws_reader *r);
/* Changes the message limit (applies from the next message). */
void km_ws_reader_set_max(struct km_ws_reader *r, size_t max_message);
/*
 * Feeds bytes from the peer. Returns 0 (all consumed, or cb asked to stop),
 * or the close code the peer earned: KM_WS_CLOSE_PROTOCOL, _BAD_DATA,
 * _TOO_BIG; *reason (static text) says why. After an error the reader is
 * dead: every later call returns the same code.
 */
int km_ws_reader_feed(struct km_ws_reader *r, const void *data, size_t len,
                      const char **reason);
/* 1 while wslay holds bytes of ours (its 4 KiB frame context exists): an
   idle client between frames holds none. */
int km_ws_reader_holding(const struct km_ws_reader *r);

/* Incremental UTF-8 check: state starts at 0; returns the new state, or -1
   when the bytes are not UTF-8. A complete text ends in state 0. */
int km_utf8_step(uint32_t *state, const unsigned char *p, size_t len);

/* ---- client requests ----------------------------------------------------- */

#define KM_WS_MAX_SUBS 64 /* names in one subscribe */

/* What a client declares in its subscribe to speak katomon's dialect. */
#define KM_WS_PROTOCOL "katomon/1"

/* How the hub talks to one client (see the top of this file). */
enum km_ws_dialect {
    KM_WS_COMPAT = 0,  /* the original frontend's protocol (the default) */
    KM_WS_KATOMON = 1, /* katomon/1: acks, errors, replay, seq, state */
};

enum km_ws_req_type {
    KM_WS_REQ_PING = 1,      /* text "ping" (or {"type":"ping"}) */
    KM_WS_REQ_SUBSCRIBE = 2, /* {"type":"subscribe","subscriptions":[...]} */
};

/* One "since" entry of a subscribe. */
struct km_ws_since {
    char *topic;  /* owned */
    uint64_t seq; /* replay messages with seq > this */
};

/* A parsed request; clear with km_ws_request_clear. */
struct km_ws_request {
    enum km_ws_req_type type;  /* what the client asked */
    char **names;              /* subscribe: sorted, unique topic names; owned */
    size_t n_names;            /* number of names */
    struct km_ws_since *since; /* subscribe: optional replay points; owned */
    size_t n_since;            /* number of since entries */
    int katomon;               /* subscribe: "protocol":"katomon/1" was given */
};

/*
 * Parses one client message. Returns 0 and fills *out, or -1 with a short
 * error code ("bad_json", "bad_request", "unknown_type", "bad_protocol": a
 * "protocol" other than KM_WS_PROTOCOL) in code and a
 * human sentence in detail. Bounded: KM_WS_MAX_SUBS names of at most
 * KM_TOPIC_NAME_MAX bytes, [a-z0-9_.-] only (km_topic_name_valid).
 */
int km_ws_parse_request(const char *text, size_t len, struct km_ws_request *out,
                        char *code, size_t codelen, char *detail, size_t detaillen);
void km_ws_request_clear(struct km_ws_request *req);

/* ---- handshake ----------------------------------------------------------- */

/* 1 when key is a valid Sec-WebSocket-Key (base64 of 16 bytes), else 0. */
int km_ws_key_valid(const char *key);
/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)); out gets 28
   characters and a NUL. */
void km_ws_accept_key(const char *key, char out[29]);
/* SHA-1 of data (RFC 3174); exposed for tests. */
void km_sha1(const void *data, size_t len, unsigned char out[20]);

/* "2025-10-13T14:30:00.123456Z" for a wall-clock time in µs. buf >= 32. */
void km_iso_time(int64_t us, char *buf, size_t buflen);

/* ---- the hub --------------------------------------------------------------- */

struct km_ws;        /* opaque: every client, subscription sets, timers */
struct km_ws_client; /* opaque: one upgraded connection */

/* Settings the hub runs with; copied. Zero values fall back to defaults. */
struct km_ws_limits {
    double update_interval;   /* seconds between realtime_update ticks (3) */
    size_t max_message_bytes; /* largest client message; close 1009 past it (64 KiB) */
    size_t max_queue_bytes;   /* unsent bytes per client before backpressure (1 MiB) */
    double ping_interval;     /* seconds between server pings; <= 0: none */
    double idle_timeout;      /* seconds without a client frame; <= 0: never */
    double close_wait;        /* seconds to wait for the peer's close frame (5) */
};

/* Counters, for tests and GET /api/v1/ws/subscriptions. */
struct km_ws_stats {
    uint64_t json_encodes;         /* broadcast JSON texts built (1 per event message,
                                      1 per realtime_update per distinct set) */
    uint64_t frames_built;         /* broadcast frames built (shared by receivers) */
    uint64_t frames_queued;        /* references to shared frames put in client queues */
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
 * New hub on core's loop and bus: subscribes to every topic ("*") once and
 * starts the realtime_update timer. Returns NULL on ENOMEM. core is
 * borrowed and must outlive the hub.
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
