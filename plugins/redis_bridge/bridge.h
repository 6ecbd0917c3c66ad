/*
 * bridge.h - what the files of the redis_bridge plugin share.
 *
 *   redis_bridge.c  config, init/shutdown, the bus subscription (which
 *                   messages go out, the drop counters), the health topic
 *   conn.c          a connection to Redis, publishing or subscribing:
 *                   connect, AUTH/SELECT, PUBLISH or PSUBSCRIBE, timeouts,
 *                   reconnects with jittered backoff, the reader's bound
 *   sub.c           the subscribing half: each message from Redis checked
 *                   and handed to the bus (publish_remote), refusals counted
 *                   by reason and logged once per burst
 *   envelope.c      the payload format and channel names (envelope.h),
 *                   pure functions
 *
 * Everything runs on the daemon's loop; nothing here blocks and nothing is
 * queued without a bound: a message that cannot be sent now is dropped and
 * counted. The plugin's state is one global (`kb`): a plugin is loaded once.
 */
#ifndef KB_BRIDGE_H
#define KB_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include <katomon/plugin.h>
#include <katomon/redis_url.h>

#include "envelope.h"

#define KB_HIDDEN __attribute__((visibility("hidden")))

/* Bytes of PUBLISH payloads handed to hiredis and not yet answered, at
   most (with max_pending, this bounds hiredis's output buffer). */
#define KB_PENDING_BYTES_MAX (64u << 20)

/* Counters, as the health topic shows them. */
struct kb_counters {
    uint64_t published;            /* PUBLISHes Redis answered */
    uint64_t dropped_oversize;     /* envelopes larger than max_payload */
    uint64_t dropped_pending;      /* dropped: max_pending replies outstanding */
    uint64_t dropped_disconnected; /* dropped: no connection to Redis */
    uint64_t failed;               /* PUBLISHes refused or lost with the connection */
};

/* Why the subscribing half refused a message from Redis (the health
   topic's refused[].reason, in this order). */
enum kb_reason {
    KB_R_GARBAGE,       /* not PREFIX:HOST:TOPIC, or not an envelope */
    KB_R_OVERSIZE,      /* larger than max_payload (the connection is dropped) */
    KB_R_BAD_SIG,       /* unsigned or the wrong HMAC, a secret being set */
    KB_R_FORGED,        /* the channel's host or topic is not the envelope's */
    KB_R_UNKNOWN_TOPIC, /* no such topic declared here */
    KB_R_SCHEMA,        /* the body does not match the topic's type */
    KB_R_KIND,          /* state on an event topic or the reverse */
    KB_R_STALE,         /* an older epoch, or an event seq already seen */
    KB_R_HOSTS_FULL,    /* a new host past [core] max_hosts */
    KB_R_OTHER,         /* anything else the bus refused (out of memory) */
    KB_R_COUNT          /* number of reasons */
};

/* The subscribing half's counters. */
struct kb_sub_counters {
    uint64_t received;            /* messages handed to the bus and accepted */
    uint64_t refused[KB_R_COUNT]; /* messages refused, by reason */
};

struct kb_conn;

/* The plugin's state. */
struct kb_state {
    const struct km_host *host; /* the core's interface */
    struct km_ctx *ctx;         /* our context */
    const char *host_name;      /* this host's name in channels (the core's,
                                   borrowed for the run) */
    int publish;                /* the publishing half runs */
    int subscribe;              /* the subscribing half runs */
    char *prefix;               /* channel prefix (owned) */
    char **topics;              /* topics sent (owned); NULL: every topic */
    size_t ntopics;             /* entries of topics */
    unsigned char *secret;      /* shared secret (owned); NULL: unsigned */
    size_t secret_len;          /* its bytes */
    size_t max_payload;         /* largest payload sent or taken, bytes */
    size_t max_pending;         /* replies outstanding at most */
    struct km_topic *health;    /* our state topic */
    struct km_sub *sub;         /* the "*" subscription */
    struct km_timer *tick;      /* the periodic health publish */
    struct kb_conn *conn;       /* publishing connection (owned); NULL:
                                   publish = false */
    struct kb_conn *sconn;      /* subscribing connection (owned); NULL:
                                   subscribe = false */
    struct kb_counters n;       /* publishing counters */
    struct kb_sub_counters r;   /* subscribing counters */
    double log_interval;        /* refusals: one summary line per this, s */
    int64_t epoch;              /* our bus's epoch, µs */
    int stopping;               /* in shutdown: callbacks only clean up */
};

KB_HIDDEN extern struct kb_state kb;

/* ---- redis_bridge.c ---- */

/* The connection's health changed (connected, lost, an error): publish
   the health topic now. */
KB_HIDDEN void kb_health_changed(void);
/* Connected (again): send the latest value of every state topic sent. */
KB_HIDDEN void kb_resend_states(void);

/* ---- sub.c ---- */

/* Starts the subscribing half: connects to url (kb.sconn). 0, or -1 with
   err filled (a bad url, out of memory). */
KB_HIDDEN int kb_sub_start(const char *url, double timeout, double reconnect_min,
                           double reconnect_max, char *err, size_t errlen);
/* Stops it: the connection closed, the summary timer gone. */
KB_HIDDEN void kb_sub_stop(void);
/* The reason's name in the health topic ("garbage", "bad_sig", ...). */
KB_HIDDEN const char *kb_reason_name(enum kb_reason r);

/* ---- conn.c ---- */

/* What a connection is for, and how it behaves. Copied by kb_conn_new;
   the strings must outlive the connection. */
struct kb_conn_conf {
    const char *role;        /* "publish" or "subscribe", for messages */
    double timeout;          /* connect or answer within this */
    double reconnect_min;    /* first retry after a failure */
    double reconnect_max;    /* longest wait between attempts */
    const char *pattern;     /* PSUBSCRIBE this once logged in; NULL: publishing */
    size_t max_held;         /* subscribing: bytes hiredis's reader may hold for one
                                reply before the connection is dropped; 0: no bound */
    void (*on_change)(void); /* its health changed (connected, lost, an error) */
    void (*on_ready)(void);  /* ready (logged in; subscribed), the first time or
                                again after a loss */
    /* subscribing: one pmessage (channel and payload borrowed for the call) */
    void (*on_message)(const char *channel, size_t channel_len, const char *payload,
                       size_t len);
    /* subscribing: the reader held `held` bytes; the connection is dropped next */
    void (*on_oversize)(size_t held);
};

/* Parses url (katomon/redis_url.h) and connects at once (and again after
   every failure, with backoff). NULL with err filled on a bad url. */
KB_HIDDEN struct kb_conn *kb_conn_new(const char *url, const struct kb_conn_conf *conf,
                                      char *err, size_t errlen);
/* Closes the connection: every PUBLISH outstanding is given up. */
KB_HIDDEN void kb_conn_free(struct kb_conn *c);
/* 1 when ready: logged in (publishing), subscribed (subscribing). */
KB_HIDDEN int kb_conn_ready(const struct kb_conn *c);
/* PUBLISHes outstanding, and their payload bytes. */
KB_HIDDEN size_t kb_conn_pending(const struct kb_conn *c, size_t *bytes);
/* NULL when healthy (connected and the last PUBLISH succeeded); else why
   not: "connection refused", "timeout", "AUTH failed: ...". Borrowed. */
KB_HIDDEN const char *kb_conn_error(const struct kb_conn *c);
/* Consecutive failed connection attempts. */
KB_HIDDEN unsigned kb_conn_failures(const struct kb_conn *c);
/* Times it became ready again after a loss. */
KB_HIDDEN uint64_t kb_conn_reconnects(const struct kb_conn *c);
/* "127.0.0.1:6379/0", for messages. Borrowed. */
KB_HIDDEN const char *kb_conn_where(const struct kb_conn *c);
/* Sends PUBLISH channel payload (both copied). 0, or -1 (not ready, or a
   subscribing connection). */
KB_HIDDEN int kb_conn_publish(struct kb_conn *c, const char *channel, const char *payload,
                              size_t len);

#endif /* KB_BRIDGE_H */
