/*
 * redis.c - one non-blocking, read-only connection to KATO's Redis
 * (kato_api), on the daemon's loop through the host's fd verbs
 * (katomon/hiredis.h, the adapter) and its timers.
 *
 * Connected lazily by the first command; AUTH and SELECT (from the url)
 * go first on the new connection, pipelined with it. hiredis 0.14 has no
 * timeouts of its own, so one timer watches progress: while commands are
 * outstanding, Redis must answer one of them (or accept the connection)
 * within redis_timeout, or the connection is dropped and every
 * outstanding command fails with "did not answer within N s". A failed or
 * dropped connection is not retried before a backoff (0.25 s doubling to
 * 8 s, reset by a successful connect): meanwhile commands fail at once
 * with the last reason, so a dead Redis never makes a request wait, and
 * the first request after the backoff reconnects.
 *
 * The url is read by katomon/redis_url.h (shared with redis_bridge): a
 * numeric host only, since hiredis would resolve a name with a blocking
 * getaddrinfo() inside redisAsyncConnect.
 *
 * Only reading commands are sent (a list below): katomon never writes to
 * KATO's Redis.
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <katomon/hiredis.h>
#include <katomon/redis_url.h>

#include "kato_api.h"

#define KA_BACKOFF_MIN 0.25 /* seconds before the first retry */
#define KA_BACKOFF_MAX 8.0  /* longest wait between attempts */

struct ka_redis {
    struct km_redis_url url; /* where, and AUTH/SELECT (katomon/redis_url.h) */
    double timeout_s;        /* redis_timeout */
    redisAsyncContext *ac;   /* the connection; NULL: none */
    unsigned failures;       /* consecutive failed connections */
    double retry_at;         /* no new connection before (ka_now) */
    char error[400];         /* why the last connection failed */
    char why[480];           /* error + when the next try is */
    size_t inflight;         /* commands sent, not answered */
    struct km_timer *stall;  /* fires when no progress in time; NULL:
                                not armed (a host timer, one-shot) */
    int freeing;             /* in ka_redis_free */
};

/* One command sent. */
struct ka_rcmd {
    struct ka_redis *r; /* its connection */
    ka_redis_cb cb;     /* the caller's callback; NULL: AUTH/SELECT of ours */
    void *arg;          /* its argument */
    char name[8];       /* command name, for messages */
};

/* ---- connection ---- */

static double backoff(unsigned failures)
{
    double s = KA_BACKOFF_MIN;
    for (unsigned i = 1; i < failures && s < KA_BACKOFF_MAX; i++)
        s *= 2;
    return s < KA_BACKOFF_MAX ? s : KA_BACKOFF_MAX;
}

static void stall_stop(struct ka_redis *r)
{
    if (r->stall)
        ka.host->timer_del(ka.ctx, r->stall);
    r->stall = NULL;
}

/* The connection failed: remember why, and when to try again. */
static void failed(struct ka_redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void failed(struct ka_redis *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->ac = NULL;
    r->failures++;
    r->retry_at = ka_now() + backoff(r->failures);
    if (r->failures == 1 && !r->freeing)
        ka.host->log(ka.ctx, KM_LOG_WARNING, "%s", r->error);
    stall_stop(r);
}

/* Drops the connection (from anywhere, hiredis callbacks included):
   every outstanding command fails with `why`. */
static void drop(struct ka_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    if (!ac)
        return;
    failed(r, "%s", why);
    redisAsyncFree(ac); /* inside a hiredis callback: once it returns */
}

static void on_stall(void *arg)
{
    struct ka_redis *r = arg;
    char why[200];

    r->stall = NULL; /* one-shot: the host frees it after this */
    snprintf(why, sizeof why, "Redis at %s did not answer within %g s", r->url.where,
             r->timeout_s);
    drop(r, why);
}

/* Redis answered something, or accepted the connection: more time. The
   stall timer is one-shot and started afresh (a stale handle is harmless
   to timer_del). */
static void progress(struct ka_redis *r)
{
    stall_stop(r);
    if (r->inflight && r->ac)
        r->stall = ka.host->timer_add(ka.ctx, r->timeout_s, 0, on_stall, r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct ka_redis *r = ac->data;

    if (r->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac next and fails its commands */
        failed(r, "cannot connect to Redis at %s: %s", r->url.where, ac->errstr);
        return;
    }
    if (r->failures)
        ka.host->log(ka.ctx, KM_LOG_NOTICE, "connected to Redis at %s again",
                     r->url.where);
    r->failures = 0;
    progress(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct ka_redis *r = ac->data;

    if (r->ac != ac)
        return; /* dropped by us */
    if (r->inflight == 0) {
        /* an idle connection closed (Redis's `timeout`, a restart): not a
           failure; the next command connects again at once */
        ka.host->log(ka.ctx, KM_LOG_INFO, "Redis at %s closed the idle connection: %s",
                     r->url.where, ac->errstr ? ac->errstr : "(no reason)");
        r->ac = NULL;
        return;
    }
    failed(r, "Redis at %s closed the connection: %s", r->url.where,
           ac->errstr ? ac->errstr : "(no reason)");
}

/* hiredis's callback for every command. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct ka_rcmd *c = privdata;
    struct ka_redis *r = c->r;
    redisReply *rep = reply;
    char err[600];

    r->inflight--;
    if (!rep) {
        if (r->ac == ac) /* failing under us: hiredis frees ac after this */
            failed(r, "Redis at %s: connection lost: %s", r->url.where,
                   ac->errstr ? ac->errstr : "(no reason)");
        if (c->cb)
            c->cb(NULL, r->error, c->arg);
        free(c);
        return;
    }
    progress(r);
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, sizeof err, "Redis at %s refused %s: %.400s", r->url.where, c->name,
                 rep->str);
        if (c->cb)
            c->cb(NULL, err, c->arg);
        else
            drop(r, err); /* AUTH/SELECT refused: the connection is unusable */
    } else if (c->cb) {
        c->cb(rep, NULL, c->arg);
    }
    free(c);
}

/* Queues one command on r->ac. 0 or -1. */
static int send_cmd(struct ka_redis *r, ka_redis_cb cb, void *arg, int argc,
                    const char **argv, const size_t *lens)
{
    struct ka_rcmd *c = calloc(1, sizeof *c);

    if (!c)
        return -1;
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    snprintf(c->name, sizeof c->name, "%.*s", (int)(lens ? lens[0] : strlen(argv[0])),
             argv[0]);
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -1;
    }
    if (r->inflight++ == 0)
        progress(r);
    return 0;
}

static int connect_now(struct ka_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
    char db[16];

    if (!ac || ac->err) {
        failed(r, "cannot connect to Redis at %s: %s", r->url.where,
               ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = r;
    if (km_redis_attach(ac, ka.host, ka.ctx) != REDIS_OK) {
        redisAsyncFree(ac);
        failed(r, "cannot connect to Redis at %s: out of memory", r->url.where);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    snprintf(db, sizeof db, "%d", r->url.db);
    if (r->url.password) {
        const char *argv[] = {"AUTH", r->url.user ? r->url.user : r->url.password,
                              r->url.password};
        send_cmd(r, NULL, NULL, r->url.user ? 3 : 2, argv, NULL);
    }
    if (r->url.db) {
        const char *argv[] = {"SELECT", db};
        send_cmd(r, NULL, NULL, 2, argv, NULL);
    }
    return r->ac ? 0 : -1;
}

/* ---- public ---- */

struct ka_redis *ka_redis_new(const char *url, double timeout_s, char *err, size_t errlen)
{
    struct ka_redis *r = calloc(1, sizeof *r);

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->timeout_s = timeout_s;
    if (km_redis_url_parse(&r->url, url, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

void ka_redis_free(struct ka_redis *r)
{
    if (!r)
        return;
    r->freeing = 1;
    drop(r, "katomon is shutting down"); /* the callbacks run now */
    stall_stop(r);
    km_redis_url_clear(&r->url);
    free(r);
}

const char *ka_redis_where(const struct ka_redis *r)
{
    return r->url.where;
}

int ka_redis_cmd(struct ka_redis *r, ka_redis_cb cb, void *arg, int argc,
                 const char **argv, const size_t *lens, const char **why)
{
    static const char *const reads[] = {"PING", "SCARD", "SSCAN", "GET", "MGET"};
    size_t i, n = sizeof reads / sizeof reads[0];

    for (i = 0; i < n && strcasecmp(argv[0], reads[i]) != 0; i++)
        ;
    if (i == n || !cb) {
        *why = "refused: katomon only reads KATO's Redis";
        return -1;
    }
    if (r->freeing) {
        *why = "katomon is shutting down";
        return -1;
    }
    if (!r->ac) {
        double wait = r->retry_at - ka_now();
        if (wait > 0) {
            snprintf(r->why, sizeof r->why, "%s (next attempt in %.1f s)", r->error,
                     wait);
            *why = r->why;
            return -1;
        }
        if (connect_now(r) < 0) {
            *why = r->error;
            return -1;
        }
    }
    if (send_cmd(r, cb, arg, argc, argv, lens) < 0) {
        *why = "Redis connection is closing; try again";
        return -1;
    }
    return 0;
}
