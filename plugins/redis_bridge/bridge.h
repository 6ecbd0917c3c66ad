/*
 * bridge.h - what the files of the redis_bridge plugin share.
 *
 *   redis_bridge.c  config, init/shutdown, the bus subscription (which
 *                   messages go out, the drop counters), the health topic
 *   conn.c          the one connection to Redis: connect, AUTH/SELECT,
 *                   PUBLISH, timeouts, reconnects with jittered backoff
 *   envelope.c      the payload format (envelope.h), pure functions
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
    uint64_t reconnects;           /* connections made after the first */
    uint64_t failed;               /* PUBLISHes refused or lost with the connection */
};

struct kb_conn;

/* The plugin's state. */
struct kb_state {
    const struct km_host *host;           /* the core's interface */
    struct km_ctx *ctx;                   /* our context */
    char host_name[KB_HOST_NAME_MAX + 1]; /* this host's name in channels */
    char *prefix;                         /* channel prefix (owned) */
    char **topics;                        /* topics sent (owned); NULL: every topic */
    size_t ntopics;                       /* entries of topics */
    unsigned char *secret;                /* shared secret (owned); NULL: unsigned */
    size_t secret_len;                    /* its bytes */
    size_t max_payload;                   /* largest payload sent, bytes */
    size_t max_pending;                   /* replies outstanding at most */
    struct km_topic *health;              /* our state topic */
    struct km_sub *sub;                   /* the "*" subscription */
    struct km_timer *tick;                /* the periodic health publish */
    struct kb_conn *conn;                 /* the connection (owned) */
    struct kb_counters n;                 /* counters */
    int64_t epoch;                        /* our bus's epoch, µs */
    int stopping;                         /* in shutdown: callbacks only clean up */
};

KB_HIDDEN extern struct kb_state kb;

/* ---- redis_bridge.c ---- */

/* The connection's health changed (connected, lost, an error): publish
   the health topic now. */
KB_HIDDEN void kb_health_changed(void);
/* Connected (again): send the latest value of every state topic sent. */
KB_HIDDEN void kb_resend_states(void);

/* ---- conn.c ---- */

/* Reconnect delays and the timeout, seconds. */
struct kb_conn_conf {
    double timeout;       /* connect or answer within this */
    double reconnect_min; /* first retry after a failure */
    double reconnect_max; /* longest wait between attempts */
};

/* Parses url (katomon/redis_url.h) and connects at once (and again after
   every failure, with backoff). NULL with err filled on a bad url. */
KB_HIDDEN struct kb_conn *kb_conn_new(const char *url, const struct kb_conn_conf *conf,
                                      char *err, size_t errlen);
/* Closes the connection: every PUBLISH outstanding is given up. */
KB_HIDDEN void kb_conn_free(struct kb_conn *c);
/* 1 when connected and ready for PUBLISH. */
KB_HIDDEN int kb_conn_ready(const struct kb_conn *c);
/* PUBLISHes outstanding, and their payload bytes. */
KB_HIDDEN size_t kb_conn_pending(const struct kb_conn *c, size_t *bytes);
/* NULL when healthy (connected and the last PUBLISH succeeded); else why
   not: "connection refused", "timeout", "AUTH failed: ...". Borrowed. */
KB_HIDDEN const char *kb_conn_error(const struct kb_conn *c);
/* Consecutive failed connection attempts. */
KB_HIDDEN unsigned kb_conn_failures(const struct kb_conn *c);
/* "127.0.0.1:6379/0", for messages. Borrowed. */
KB_HIDDEN const char *kb_conn_where(const struct kb_conn *c);
/* Sends PUBLISH channel payload (both copied). 0, or -1 (not ready). */
KB_HIDDEN int kb_conn_publish(struct kb_conn *c, const char *channel, const char *payload,
                              size_t len);

#endif /* KB_BRIDGE_H */
