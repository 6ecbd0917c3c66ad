/*
 * conn.c - redis_bridge's connections to Redis, on the daemon's loop
 * through the host's fd verbs (katomon/hiredis.h) and its timers. There
 * are two, each a struct kb_conn with its own role, because a connection
 * in pub/sub mode cannot PUBLISH:
 *
 *   publish    PUBLISH only (redis_bridge.c sends through it)
 *   subscribe  PSUBSCRIBE conf.pattern once logged in, then every
 *              pmessage goes to conf.on_message (sub.c)
 *
 * Both are made and kept the same way, by the code below: AUTH and
 * SELECT (from the url, katomon/redis_url.h) go first; a publishing
 * connection is ready once Redis accepted them, a subscribing one once
 * Redis acknowledged the PSUBSCRIBE. hiredis 0.14 has no timeouts of its own, so
 * one one-shot timer watches progress: while a connect or commands are
 * outstanding, Redis must accept the connection or answer one of them
 * within `timeout`, or the connection is dropped and every outstanding
 * PUBLISH counts as failed. After any failure or drop the next attempt
 * waits a backoff: reconnect_min doubling per consecutive failure up to
 * reconnect_max, times a jitter factor in [1, 2) (a seeded PRNG, so
 * several hosts that lost the same Redis do not all come back in the same
 * instant), never more than reconnect_max.
 *
 * hiredis 0.14's reader has no limit on a bulk reply: a 10 MiB PUBLISH on
 * a channel we subscribe to would be buffered whole before any callback
 * sees it. So the subscribing connection's fd watch is ours
 * (watch_reader): after each read hiredis did (at most 16 KiB) it adds
 * what the reader holds (unparsed bytes, the parts of the reply built so
 * far) and past conf.max_held drops the connection (conf.on_oversize
 * counts it) and subscribes again after the backoff: that message is lost,
 * nothing else is.
 *
 * Ownership: struct kb_conn owns the redisAsyncContext (freed through
 * redisAsyncFree, which runs every outstanding reply callback with NULL)
 * and one struct kb_cmd per command sent, freed by its reply callback.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <katomon/hiredis.h>
#include <katomon/util.h>

#include "bridge.h"

struct kb_conn {
    struct km_redis_url url;  /* where, and AUTH/SELECT */
    struct kb_conn_conf conf; /* role, timeout, backoff, hooks */
    redisAsyncContext *ac;    /* the connection; NULL: none */
    int connected;            /* the TCP connect finished */
    int login_left;           /* AUTH/SELECT replies still awaited */
    int ready;                /* publish: logged in; subscribe: PSUBSCRIBE acked */
    int ever_ready;           /* was ready once: later readiness is a reconnect */
    int sub_wait;             /* the PSUBSCRIBE acknowledgement is awaited */
    uint64_t reconnects;      /* times it became ready again after a loss */
    int last_failed;          /* the last PUBLISH was refused or lost */
    size_t inflight;          /* commands sent, not answered (all kinds) */
    size_t pending;           /* PUBLISHes sent, not answered */
    size_t pending_bytes;     /* their payload bytes */
    unsigned failures;        /* consecutive failed attempts */
    char error[400];          /* why not healthy; "" when healthy */
    struct km_timer *stall;   /* no progress in time (one-shot); NULL: not armed */
    struct km_timer *retry;   /* next connection attempt (one-shot); NULL: none */
    uint64_t rng;             /* PRNG state for the jitter (splitmix64) */
    int freeing;              /* in kb_conn_free: callbacks only clean up */
};

/* One command sent (not PSUBSCRIBE: its callback is the connection's). */
struct kb_cmd {
    struct kb_conn *c; /* its connection */
    size_t bytes;      /* PUBLISH: payload bytes; 0: AUTH/SELECT */
    char name[8];      /* command name, for messages */
};

static int connect_now(struct kb_conn *c);
static void progress(struct kb_conn *c);
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* The health changed: tell the plugin, unless it is going. */
static void changed(struct kb_conn *c)
{
    if (!c->freeing && c->conf.on_change)
        c->conf.on_change();
}

/* ---- timers, backoff ---- */

static double kb_rand01(struct kb_conn *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* The wait before attempt number failures + 1, within [min, max]. */
static double backoff(struct kb_conn *c)
{
    double s = c->conf.reconnect_min;

    for (unsigned i = 1; i < c->failures && s < c->conf.reconnect_max; i++)
        s *= 2;
    s *= 1 + kb_rand01(c);
    return s < c->conf.reconnect_max ? s : c->conf.reconnect_max;
}

static void timer_stop(struct km_timer **t)
{
    if (*t)
        kb.host->timer_del(kb.ctx, *t); /* a fired one-shot's handle is harmless */
    *t = NULL;
}

static void on_retry(void *arg)
{
    struct kb_conn *c = arg;

    c->retry = NULL;
    connect_now(c);
}

static void set_ready(struct kb_conn *c, int ready)
{
    int was = c->ready;

    c->ready = ready;
    if (!ready || c->freeing)
        return;
    if (c->failures || c->ever_ready)
        kb.host->log(kb.ctx, KM_LOG_NOTICE, "%s connection to Redis at %s made%s",
                     c->conf.role, c->url.where, c->ever_ready ? " again" : "");
    if (c->ever_ready && !was)
        c->reconnects++;
    c->ever_ready = 1;
    c->failures = 0;
    c->last_failed = 0;
    c->error[0] = '\0';
    changed(c);
    if (c->conf.on_ready)
        c->conf.on_ready();
}

/* Logged in: a publishing connection is ready; a subscribing one
   subscribes (ready on the acknowledgement, on_sub_reply). */
static void logged_in(struct kb_conn *c)
{
    const char *argv[] = {"PSUBSCRIBE", c->conf.pattern};

    if (!c->conf.pattern) {
        set_ready(c, 1);
        return;
    }
    /* privdata is the connection: hiredis keeps this callback for every
       pmessage, and runs it once more with NULL when the context goes */
    if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, NULL) != REDIS_OK)
        return;    /* the context is failing: its disconnect callback says why */
    c->inflight++; /* the acknowledgement is awaited within timeout */
    c->sub_wait = 1;
    progress(c);
}

/* The connection failed or was dropped: remember why, retry later. */
static void failed(struct kb_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void failed(struct kb_conn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    c->ac = NULL;
    c->connected = 0;
    c->ready = 0;
    c->failures++;
    timer_stop(&c->stall);
    if (c->freeing)
        return;
    if (c->failures == 1) /* once per outage, not per attempt */
        kb.host->log(kb.ctx, KM_LOG_WARNING,
                     "%s connection: %s (retrying with backoff up to %g s)", c->conf.role,
                     c->error, c->conf.reconnect_max);
    timer_stop(&c->retry);
    c->retry = kb.host->timer_add(kb.ctx, backoff(c), 0, on_retry, c);
    changed(c);
}

/* Drops the connection (from anywhere, hiredis callbacks included). */
static void drop(struct kb_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void drop(struct kb_conn *c, const char *fmt, ...)
{
    redisAsyncContext *ac = c->ac;
    char why[sizeof c->error];
    va_list ap;

    if (!ac)
        return;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    failed(c, "%s", why);
    redisAsyncFree(ac); /* inside a hiredis callback: once it returns */
}

static void on_stall(void *arg)
{
    struct kb_conn *c = arg;

    c->stall = NULL; /* one-shot: the host frees it after this */
    drop(c, "timeout: Redis at %s did not %s within %g s", c->url.where,
         c->connected ? "answer" : "accept the connection", c->conf.timeout);
}

/* Redis accepted the connection or answered: more time, while something
   is outstanding. */
static void progress(struct kb_conn *c)
{
    timer_stop(&c->stall);
    if (c->ac && (!c->connected || c->inflight))
        c->stall = kb.host->timer_add(kb.ctx, c->conf.timeout, 0, on_stall, c);
}

/* ---- hiredis callbacks ---- */

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct kb_conn *c = ac->data;

    if (c->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees ac next and fails its commands */
        failed(c, "cannot connect to Redis at %s: %s", c->url.where, ac->errstr);
        return;
    }
    c->connected = 1;
    progress(c);
    if (c->login_left == 0)
        logged_in(c);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct kb_conn *c = ac->data;

    (void)status;
    if (c->ac != ac)
        return; /* dropped by us */
    failed(c, "Redis at %s closed the connection: %s", c->url.where,
           ac->errstr[0] ? ac->errstr : "(no reason given)");
}

/* hiredis's callback for every command. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct kb_cmd *cmd = privdata;
    struct kb_conn *c = cmd->c;
    redisReply *rep = reply;

    c->inflight--;
    if (cmd->bytes) {
        c->pending--;
        c->pending_bytes -= cmd->bytes;
    }
    if (!rep) { /* the connection is going: hiredis frees ac after this */
        if (cmd->bytes)
            kb.n.failed++;
        if (c->ac == ac)
            failed(c, "Redis at %s: connection lost: %s", c->url.where,
                   ac->errstr[0] ? ac->errstr : "(no reason given)");
        free(cmd);
        return;
    }
    progress(c);
    if (!cmd->bytes) { /* AUTH or SELECT */
        if (rep->type == REDIS_REPLY_ERROR)
            drop(c, "%s failed at Redis %s: %.300s", cmd->name, c->url.where, rep->str);
        else if (--c->login_left == 0 && c->connected)
            logged_in(c);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        kb.n.failed++;
        if (!c->last_failed)
            kb.host->log(kb.ctx, KM_LOG_WARNING, "Redis at %s refused PUBLISH: %.300s",
                         c->url.where, rep->str);
        c->last_failed = 1;
        snprintf(c->error, sizeof c->error, "Redis at %s refused PUBLISH: %.300s",
                 c->url.where, rep->str);
        changed(c);
    } else {
        kb.n.published++;
        if (c->last_failed) {
            c->last_failed = 0;
            c->error[0] = '\0';
            changed(c);
        }
    }
    free(cmd);
}

/* The PSUBSCRIBE callback: its acknowledgement, then every pmessage,
   then NULL when the context goes. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct kb_conn *c = privdata;
    redisReply *rep = reply, **el;

    if (c->sub_wait && (!rep || c->ac == ac)) {
        c->sub_wait = 0;
        c->inflight--;
    }
    if (c->ac != ac)
        return; /* dropped by us, or an old context going */
    if (!rep) { /* going: hiredis frees ac after this */
        failed(c, "Redis at %s: connection lost: %s", c->url.where,
               ac->errstr[0] ? ac->errstr : "(no reason given)");
        return;
    }
    el = rep->element;
    if (rep->type == REDIS_REPLY_ERROR) {
        drop(c, "PSUBSCRIBE failed at Redis %s: %.300s", c->url.where, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        el[0]->type != REDIS_REPLY_STRING)
        return; /* not pub/sub: nothing hiredis would route here */
    if (strcmp(el[0]->str, "psubscribe") == 0) {
        progress(c);
        set_ready(c, 1);
    } else if (strcmp(el[0]->str, "pmessage") == 0 && rep->elements == 4 &&
               el[2]->type == REDIS_REPLY_STRING && el[3]->type == REDIS_REPLY_STRING &&
               c->ready && c->conf.on_message) {
        c->conf.on_message(el[2]->str, el[2]->len, el[3]->str, el[3]->len);
    }
}

/* ---- the reader's bound (subscribing connection) ---- */

/* Bytes hiredis's reader holds for the reply it has not finished: the
   unparsed buffer (a bulk string is parsed only once it is complete) and
   the strings of the array built so far (the channel of a pmessage whose
   payload is still arriving). */
static size_t reader_held(const redisAsyncContext *ac)
{
    const redisReader *r = ac->c.reader;
    size_t held;

    if (!r)
        return 0;
    held = r->len > r->pos ? r->len - r->pos : 0;
    if (r->ridx >= 0 && r->rstack[0].obj) {
        const redisReply *top = r->rstack[0].obj;
        if (top->type == REDIS_REPLY_ARRAY)
            for (size_t i = 0; i < top->elements && top->element; i++)
                if (top->element[i])
                    held += top->element[i]->len;
    }
    return held;
}

/* The subscribing connection's fd watch: hiredis's adapter
   (km_redis_io_ready) does the I/O, then the reader is measured. */
static void on_sub_io(int fd, unsigned events, void *arg)
{
    struct kb_conn *c = arg;
    redisAsyncContext *ac = c->ac;
    size_t held;

    if (!ac)
        return;
    km_redis_io_ready(fd, events, ac->ev.data);
    /* every way hiredis frees ac runs one of our callbacks, which clears c->ac */
    if (c->ac != ac || (held = reader_held(ac)) <= c->conf.max_held)
        return;
    if (c->conf.on_oversize)
        c->conf.on_oversize(held);
    drop(c,
         "a message from Redis at %s passed %zu bytes (max_payload and the envelope): "
         "dropped with the connection",
         c->url.where, c->conf.max_held);
}

/* Puts the subscribing connection's fd watch in our hands: the adapter
   keeps working through its struct (its io member is the watch it sets
   and deletes), only the callback is ours. 0 or -1. */
static int watch_reader(struct kb_conn *c, redisAsyncContext *ac)
{
    struct km_redis_io *e = ac->ev.data;
    struct km_io *io = kb.host->io_add(kb.ctx, ac->c.fd, e->events, on_sub_io, c);

    if (!io)
        return -1;
    kb.host->io_del(kb.ctx, e->io);
    e->io = io;
    return 0;
}

/* Queues one command. 0 or -1. */
static int send_cmd(struct kb_conn *c, size_t bytes, int argc, const char **argv,
                    const size_t *lens)
{
    struct kb_cmd *cmd = calloc(1, sizeof *cmd);

    if (!cmd)
        return -1;
    cmd->c = c;
    cmd->bytes = bytes;
    snprintf(cmd->name, sizeof cmd->name, "%s", argv[0]);
    if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, argv, lens) != REDIS_OK) {
        free(cmd);
        return -1;
    }
    if (bytes) {
        c->pending++;
        c->pending_bytes += bytes;
    }
    if (c->inflight++ == 0 && c->connected)
        progress(c);
    return 0;
}

static int connect_now(struct kb_conn *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->url.host, c->url.port);
    char db[16];

    if (!ac || ac->err) {
        failed(c, "cannot connect to Redis at %s: %s", c->url.where,
               ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = c;
    if (km_redis_attach(ac, kb.host, kb.ctx) != REDIS_OK ||
        (c->conf.max_held && watch_reader(c, ac) < 0)) {
        redisAsyncFree(ac);
        failed(c, "cannot connect to Redis at %s: out of memory", c->url.where);
        return -1;
    }
    if (c->conf.pattern) /* it may wait long for a message: notice a dead peer */
        redisEnableKeepAlive(&ac->c);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->connected = 0;
    c->login_left = 0;
    progress(c); /* the connect must finish within timeout */
    snprintf(db, sizeof db, "%d", c->url.db);
    if (c->url.password) {
        const char *argv[] = {"AUTH", c->url.user ? c->url.user : c->url.password,
                              c->url.password};
        if (send_cmd(c, 0, c->url.user ? 3 : 2, argv, NULL) == 0)
            c->login_left++;
    }
    if (c->url.db) {
        const char *argv[] = {"SELECT", db};
        if (send_cmd(c, 0, 2, argv, NULL) == 0)
            c->login_left++;
    }
    return 0;
}

/* ---- public ---- */

struct kb_conn *kb_conn_new(const char *url, const struct kb_conn_conf *conf, char *err,
                            size_t errlen)
{
    struct kb_conn *c = calloc(1, sizeof *c);

    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (km_redis_url_parse(&c->url, url, err, errlen) < 0) {
        free(c);
        return NULL;
    }
    c->conf = *conf;
    c->rng = (uint64_t)km_wall_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)c;
    snprintf(c->error, sizeof c->error, "connecting to Redis at %s", c->url.where);
    connect_now(c);
    return c;
}

void kb_conn_free(struct kb_conn *c)
{
    if (!c)
        return;
    c->freeing = 1;
    drop(c, "katomon is shutting down"); /* the reply callbacks run now */
    timer_stop(&c->stall);
    timer_stop(&c->retry);
    km_redis_url_clear(&c->url);
    free(c);
}

int kb_conn_ready(const struct kb_conn *c)
{
    return c->ready;
}

size_t kb_conn_pending(const struct kb_conn *c, size_t *bytes)
{
    if (bytes)
        *bytes = c->pending_bytes;
    return c->pending;
}

const char *kb_conn_error(const struct kb_conn *c)
{
    return c->ready && !c->last_failed ? NULL : c->error;
}

unsigned kb_conn_failures(const struct kb_conn *c)
{
    return c->failures;
}

uint64_t kb_conn_reconnects(const struct kb_conn *c)
{
    return c->reconnects;
}

const char *kb_conn_where(const struct kb_conn *c)
{
    return c->url.where;
}

int kb_conn_publish(struct kb_conn *c, const char *channel, const char *payload,
                    size_t len)
{
    const char *argv[] = {"PUBLISH", channel, payload};
    size_t lens[] = {7, strlen(channel), len};

    if (!c->ready || !c->ac || c->conf.pattern)
        return -1;
    return send_cmd(c, len ? len : 1, 3, argv, lens);
}
