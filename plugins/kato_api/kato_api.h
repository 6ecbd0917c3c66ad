/*
 * kato_api.h - what the files of the kato_api plugin share.
 *
 *   kato_api.c   config, init/shutdown, the routes, /analytics/overview,
 *                query validation (FastAPI-style 422s)
 *   kato.c       GET requests to KATO, their errors, the pass-through cache
 *   redis.c      one non-blocking connection to KATO's Redis (hiredis on
 *                the host's fd verbs and timers), read-only, with timeouts
 *   session.c    one session as KATO stores it (decoding its small fields)
 *   sessions.c   /sessions, /sessions/statistics/overview (the listing)
 *   session_one.c  /sessions/{id}, /sessions/{id}/stm
 *
 * Everything runs on the daemon's loop; nothing here blocks. The plugin's
 * state is one global (`ka`): a plugin is loaded once.
 */
#ifndef KA_KATO_API_H
#define KA_KATO_API_H

#include <stddef.h>
#include <stdint.h>

#include <katomon/plugin.h>

#define KA_HIDDEN __attribute__((visibility("hidden")))

/* KATO's keys in its Redis (reference/kato-redis.md). */
#define KA_SESSION_PREFIX "kato:session:"
#define KA_ACTIVE_INDEX   KA_SESSION_PREFIX "_active_index"
/* Longest session id accepted, from a client or from the index. */
#define KA_MAX_ID 256

struct ka_redis;
struct ka_sessions;
struct ka_cache;

/* The plugin's state. */
struct ka_state {
    const struct km_host *host;   /* the core's interface */
    struct km_ctx *ctx;           /* our context */
    char *base_url;               /* KATO, without a trailing '/' (owned) */
    unsigned timeout_ms;          /* per KATO request */
    double cache_ttl;             /* seconds an answer is reused; 0: never */
    size_t max_sessions;          /* index members read at most per listing */
    struct km_msg *metrics;       /* latest `metrics` message (a reference) */
    struct ka_cache *cache;       /* KATO pass-through answers (owned) */
    struct ka_redis *redis;       /* KATO's Redis; NULL: redis_url unset */
    struct ka_sessions *sessions; /* the session listing's state (owned) */
    int stopping;                 /* in shutdown: callbacks only clean up */
};

KA_HIDDEN extern struct ka_state ka;

/* ---- answers ---------------------------------------------------------- */

/* Answers p (KM_REST_LATER) with status and {"detail": text}. */
KA_HIDDEN void ka_finish_detail(struct km_rest_pending *p, int status, const char *text);
/* Seconds of CLOCK_MONOTONIC. */
KA_HIDDEN double ka_now(void);

/* ---- kato.c: KATO over HTTP ------------------------------------------------ */

/*
 * The outcome of one GET to KATO, as katomon answers it: status 200 with
 * KATO's JSON body; KATO's own 4xx with its body (kato_status set); or
 * 502/504 with a detail naming KATO's URL and the cause.
 */
struct ka_kato_result {
    int status;        /* what to answer */
    int kato_status;   /* KATO's HTTP status; 0 when none came */
    json_t *body;      /* 2xx/4xx: KATO's JSON (borrowed during the callback) */
    size_t body_len;   /* bytes of KATO's body */
    const char *error; /* not 2xx: the detail text (borrowed) */
};

/* Called once per ka_kato_get, from the loop. */
typedef void (*ka_kato_cb)(const struct ka_kato_result *res, void *arg);

/* GET base_url + path (path already percent-encoded). 0, or -1 when it
   could not start (cb then never runs; *why says so). */
KA_HIDDEN int ka_kato_get(const char *path, ka_kato_cb cb, void *arg, const char **why);

/*
 * GET /api/v1/system/... routes: KATO's body for `kato_path` passed
 * through, reused for cache_ttl seconds, concurrent requests for the same
 * path joined. A handler's return value (KM_REST_LATER, or a status with
 * *reply / *detail set).
 */
KA_HIDDEN int ka_passthrough(const struct km_rest_call *call, const char *kato_path,
                             json_t **reply, const char **detail);

/* Shutdown: cancels every GET in flight; each callback runs once more with
   status 503 "katomon is shutting down", so its owner frees what it holds. */
KA_HIDDEN void ka_kato_shutdown(void);

KA_HIDDEN struct ka_cache *ka_cache_new(void);
KA_HIDDEN void ka_cache_free(struct ka_cache *c);


/* Percent-encodes s (any byte but A-Z a-z 0-9 - . _ ~) into out; -1 when
   it does not fit. */
KA_HIDDEN int ka_pct_encode(const char *s, char *out, size_t len);

/* ---- redis.c: KATO's Redis ------------------------------------------------------ */

struct redisReply;

/* Called once per command: reply (borrowed during the call), or NULL with
   error set (the connection failed, timed out, or Redis answered -ERR). */
typedef void (*ka_redis_cb)(struct redisReply *reply, const char *error, void *arg);

/*
 * Parses redis://[[user]:password@]host[:port][/db]; host must be a
 * numeric IPv4 or [IPv6] address or localhost, since hiredis resolves
 * names with a blocking getaddrinfo(). NULL with err filled on a bad url.
 * Connects lazily, on the first command.
 */
KA_HIDDEN struct ka_redis *ka_redis_new(const char *url, double timeout_s, char *err,
                                        size_t errlen);
/* Closes the connection; pending callbacks run with an error first. */
KA_HIDDEN void ka_redis_free(struct ka_redis *r);
/*
 * Sends one read-only command (AUTH, SELECT, PING, SCARD, SSCAN, GET, MGET
 * only: katomon never writes to KATO's Redis). 0 when sent (cb runs
 * later, exactly once), or -1 (cb never runs) with *why: Redis is down
 * and its retry is not due yet, the url's host could not be reached, or
 * the command is not a read.
 */
KA_HIDDEN int ka_redis_cmd(struct ka_redis *r, ka_redis_cb cb, void *arg, int argc,
                           const char **argv, const size_t *lens, const char **why);
/* "127.0.0.1:6379/0", for messages. Borrowed. */
KA_HIDDEN const char *ka_redis_where(const struct ka_redis *r);

/* ---- session.c: one session as KATO stores it ------------------------------------ */

#define KA_TIME_LEN 48 /* room for an ISO 8601 time */

/* What katomon keeps of one session. */
struct ka_session {
    char *id;                  /* session id: the index member (owned) */
    char *node;                /* node_id; NULL when absent (owned) */
    char created[KA_TIME_LEN]; /* created_at as KATO wrote it; "" unknown */
    char last[KA_TIME_LEN];    /* last_accessed; "" unknown */
    char expires[KA_TIME_LEN]; /* expires_at; "" unknown */
    int64_t created_us;        /* created_at, µs since the epoch; INT64_MIN:
                                  unknown (sorts last) */
    json_int_t access_count;   /* -1: absent */
    int unreadable;            /* the value is not KATO's session JSON */
};

/*
 * Fills s from KATO's session JSON (value, len bytes) stored for id. extra
 * (may be NULL) gets what a single session shows besides: {metadata,
 * ttl_seconds} (new). -1 on ENOMEM only: a value that is not KATO's JSON
 * gives an `unreadable` session. Free with ka_session_clear.
 */
KA_HIDDEN int ka_session_from(struct ka_session *s, const char *id, const char *value,
                              size_t len, json_t **extra);
KA_HIDDEN void ka_session_clear(struct ka_session *s);
/* The original's listing fields plus KATO's times (new). */
KA_HIDDEN json_t *ka_session_json(const struct ka_session *s);

/* ---- sessions.c, session_one.c ---------------------------------------------------- */

KA_HIDDEN struct ka_sessions *ka_sessions_new(void);
KA_HIDDEN void ka_sessions_free(struct ka_sessions *s);
/* GET /api/v1/sessions and /sessions/statistics/overview (handlers). */
KA_HIDDEN int ka_sessions_list(const struct km_rest_call *call, json_t **reply,
                               const char **detail, void *arg);
KA_HIDDEN int ka_sessions_stats(const struct km_rest_call *call, json_t **reply,
                                const char **detail, void *arg);
/* GET /api/v1/sessions/{id} and /sessions/{id}/stm (one prefix handler). */
KA_HIDDEN int ka_session_one(const struct km_rest_call *call, json_t **reply,
                             const char **detail, void *arg);

/* ---- kato_api.c: query validation ------------------------------------------------ */

/* 1 when the query has parameter `name` (written plainly, as every client
   writes ours), whatever its value. */
KA_HIDDEN int ka_query_has(const char *query, const char *name);

/*
 * Integer query parameter `name` within [min, max], default def when
 * absent. 0 with *out set, or -1 with *reply set to FastAPI's 422 body
 * {"detail":[{"type","loc":["query",name],"msg","input"(,"ctx")}]}.
 */
KA_HIDDEN int ka_query_int(const struct km_rest_call *call, const char *name,
                           long long def, long long min, long long max, long long *out,
                           json_t **reply);

#endif /* KA_KATO_API_H */
