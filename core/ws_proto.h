/*
 * ws_proto.h - the client protocol of GET /ws: what a client may say, and
 * how every server message is written, in both dialects (DESIGN section 5;
 * README "WebSocket protocol").
 *
 *   - compatible (every client until it declares katomon's): what the KATO
 *     Dashboard v0.3.7 frontend expects: realtime_update, session_event,
 *     system_alert, text "ping" -> heartbeat. A subscribe is silent and adds
 *     to the client's set (the hub keeps the union).
 *   - katomon/1 (a subscribe with "protocol":"katomon/1"; the declaration
 *     holds for the connection): subscribe replaces the set and is answered
 *     by subscription_ack; "since" replays missed events; error replies name
 *     bad requests; events carry seq, resolved alerts "state":"resolved".
 *
 * Owns: KM_WS_PROTOCOL and enum km_ws_dialect; parsing a client's request
 * (struct km_ws_request); the texts of the server's messages: an event
 * (session_event / system_alert per dialect, katomon's "event" envelope),
 * realtime_update (spliced from the bus's cached texts) and the one-client
 * replies (heartbeat, subscription_ack, error, replay_gap). The wire
 * mapping of bus topics is described at the top of ws_proto.c.
 *
 * Knows nothing of connections or subscription sets: it reads the bus and
 * writes text (into a struct km_tb, ready to become a shared frame) or JSON
 * (new references). Calls the bus and ws_frame.c only.
 */
#ifndef KM_WS_PROTO_H
#define KM_WS_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "bus.h"
#include "ws_frame.h"

/* What a client declares in its subscribe to speak katomon's dialect. */
#define KM_WS_PROTOCOL "katomon/1"

/* Names in one subscribe (and, for a compatible client, in its union). */
#define KM_WS_MAX_SUBS 64

/* "since" entries in one subscribe, every host of every topic counted (a
   64 KiB message holds about 3,000; this keeps the replay work bounded). */
#define KM_WS_MAX_SINCE 1024

/* The core's state topic of hosts (core/fleet.c): this host's only; a
   remote host's value of it is never shown as that host's data. */
#define KM_WS_TOPIC_HOSTS "hosts"

/* How the server talks to one client (see the top of this file). */
enum km_ws_dialect {
    KM_WS_COMPAT = 0,  /* the original frontend's protocol (the default) */
    KM_WS_KATOMON = 1, /* katomon/1: acks, errors, replay, seq, state */
};

/* What a realtime_update shows of the other hosts (issue 15). */
enum km_ws_view {
    KM_WS_VIEW_LOCAL = 0,     /* this host only: the frame of before, byte for byte */
    KM_WS_VIEW_HOSTS = 1,     /* katomon/1: "data" this host's, "hosts" the others' */
    KM_WS_VIEW_AGGREGATE = 2, /* compatible_fleet = aggregate: every host's items
                                 concatenated into "data" */
};

/* "compatible" or KM_WS_PROTOCOL: the dialect's name (static text). */
const char *km_ws_dialect_name(enum km_ws_dialect d);

/* ---- requests ------------------------------------------------------------ */

enum km_ws_req_type {
    KM_WS_REQ_PING = 1,      /* text "ping" (or {"type":"ping"}) */
    KM_WS_REQ_SUBSCRIBE = 2, /* {"type":"subscribe","subscriptions":[...]} */
};

/* One "since" entry of a subscribe: one topic of one host. */
struct km_ws_since {
    char *topic;  /* owned */
    char *host;   /* owned; NULL: this host ("since":{"t":N}) */
    uint64_t seq; /* replay that host's messages with seq > this */
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
 * Parses one client message (text borrowed; need not be NUL-terminated).
 * Returns 0 and fills *out, or -1 with a short error code in code and a
 * human sentence in detail:
 *   "bad_json"     - not JSON (nor the text "ping");
 *   "bad_request"  - not an object with a "type", a bad "subscriptions" or
 *                    "since", or out of memory;
 *   "unknown_type" - a "type" other than subscribe or ping;
 *   "bad_protocol" - a "protocol" other than KM_WS_PROTOCOL.
 * On -1, out->katomon still says whether "protocol":"katomon/1" was given
 * (the caller picks its answer by dialect); nothing else is left to clear.
 * Bounded: KM_WS_MAX_SUBS names and since topics, each a topic name
 * (km_topic_name_valid); a since value is a seq (this host) or an object of
 * host name (km_host_name_valid) -> seq; KM_WS_MAX_SINCE entries in all.
 */
/* The detail of km_ws_parse_request's -1 when memory ran out (code
   "bad_request"): the request itself may be fine; the hub closes with 1013. */
#define KM_WS_NOMEM "out of memory"
int km_ws_parse_request(const char *text, size_t len, struct km_ws_request *out,
                        char *code, size_t codelen, char *detail, size_t detaillen);
/* Frees what req owns and zeroes it. */
void km_ws_request_clear(struct km_ws_request *req);

/* strcmp for qsort/bsearch over an array of char * (sorted topic names). */
int km_ws_strcmp_p(const void *a, const void *b);

/* ---- server messages: shared texts --------------------------------------- */

/*
 * Writes event msg (borrowed) for dialect d into tb: session_event or
 * system_alert for those two topics, else katomon's "event" envelope.
 * A remote host's message carries "host" and its host's "epoch"; for the
 * compatible dialect (sent only with compatible_fleet = aggregate) its
 * alert messages are prefixed "[HOST] ".
 * Returns 1 when the text is the same for every dialect (the envelope), 0
 * when it is d's own. An allocation failure sets tb->failed.
 */
int km_ws_encode_event(struct km_tb *tb, struct km_msg *msg, enum km_ws_dialect d);

/*
 * Writes a realtime_update into tb: "data" holds the latest text of each
 * state topic with a value among names[0..n) (sorted; bus borrowed), or of
 * every state topic when all. No body is encoded again: each is spliced
 * from the bus's cached text. view says what of the other hosts goes in:
 * KM_WS_VIEW_HOSTS adds "hosts":{"B":{TOPIC:<B's latest>,...},...} (absent
 * when no remote host has a value); KM_WS_VIEW_AGGREGATE merges every
 * host's value into each topic of "data" (see the top of ws_proto.c).
 * Returns how many topic values went in (0: nothing to send; tb then holds
 * a useless text the caller frees).
 */
int km_ws_encode_state(struct km_tb *tb, struct km_bus *bus, char *const *names, size_t n,
                       int all, enum km_ws_view view);

/* ---- server messages: one-client replies (new references; NULL on ENOMEM) - */

/* {"type":"heartbeat","timestamp"}: the answer to "ping". */
json_t *km_ws_heartbeat_msg(void);

/* {"type":"error","error":code,"detail":detail[,"topics":topics]}; topics
   (borrowed) may be NULL. */
json_t *km_ws_error_msg(const char *code, const char *detail, json_t *topics);

/*
 * The subscription_ack for req (katomon/1): "subscriptions" (req's names),
 * "unknown" (names with no topic on bus yet), "timestamp", "epoch" and
 * "last_seq" (the current seq of each subscribed event topic), "host" (this
 * host's name), "hosts" (every known host's name, this one first),
 * "epochs" (host -> its epoch) and "hosts_last_seq" (remote host -> topic
 * -> its last seq, for the subscribed event topics it has messages on).
 * *unknown gets a new reference to the "unknown" array (NULL when the ack
 * is NULL).
 */
json_t *km_ws_ack_msg(struct km_bus *bus, const struct km_ws_request *req,
                      json_t **unknown);

/* The detail of the unknown_topic error that follows an ack whose unknown
   (borrowed) is not empty; into buf. */
void km_ws_unknown_detail(json_t *unknown, char *buf, size_t len);

/* A replay_gap's fields (see the top of ws_proto.c). */
struct km_ws_gap {
    const char *topic;         /* the topic asked for (borrowed) */
    const char *host;          /* whose sequence (borrowed); NULL: not said */
    uint64_t requested_since;  /* the client's since */
    uint64_t oldest_available; /* oldest seq in the host's ring; 0 when empty */
    uint64_t last_seq;         /* the host's current seq on the topic */
    uint64_t missed;           /* messages the client will not get */
    const char *reason;        /* "not_in_ring", "since_ahead" or "truncated" */
    uint64_t resume_since;     /* "truncated" only: the seq to ask from next */
};

/* {"type":"replay_gap",...} for g (borrowed). */
json_t *km_ws_replay_gap_msg(const struct km_ws_gap *g);

#endif /* KM_WS_PROTO_H */
