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
 * Host names: hiredis resolves them with a blocking getaddrinfo() inside
 * redisAsyncConnect, which would stall the whole loop on a slow DNS. The
 * url must therefore give a numeric IPv4 or [IPv6] address (localhost is
 * taken as 127.0.0.1).
 *
 * Only reading commands are sent (a list below): katomon never writes to
 * KATO's Redis.
 */
#define _GNU_SOURCE /* memrchr */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <katomon/hiredis.h>
#include <katomon/url.h>

#include "kato_api.h"

#define KA_BACKOFF_MIN 0.25 /* seconds before the first retry */
#define KA_BACKOFF_MAX 8.0  /* longest wait between attempts */

struct ka_redis {
    char host[INET6_ADDRSTRLEN];       /* numeric address (IPv6 without brackets) */
    int port;                          /* TCP port */
    char *user;                        /* AUTH user (Redis 6 ACL), NULL: none (owned) */
    char *password;                    /* AUTH password, NULL: no AUTH (owned) */
    int db;                            /* SELECT db; 0: none sent */
    char where[INET6_ADDRSTRLEN + 24]; /* "127.0.0.1:6379/0" for messages */
    double timeout_s;                  /* redis_timeout */
    redisAsyncContext *ac;             /* the connection; NULL: none */
    unsigned failures;                 /* consecutive failed connections */
    double retry_at;                   /* no new connection before (ka_now) */
    char error[400];                   /* why the last connection failed */
    char why[480];                     /* error + when the next try is */
    size_t inflight;                   /* commands sent, not answered */
    struct km_timer *stall;            /* fires when no progress in time; NULL:
                                          not armed (a host timer, one-shot) */
    int freeing;                       /* in ka_redis_free */
};

/* One command sent. */
struct ka_rcmd {
    struct ka_redis *r; /* its connection */
    ka_redis_cb cb;     /* the caller's callback; NULL: AUTH/SELECT of ours */
    void *arg;          /* its argument */
    char name[8];       /* command name, for messages */
};

/* ---- url ---- */

/* Percent-decodes [s, s + n) into a new string (*out), by the path rule
   ('+' is itself); 0, -1 on ENOMEM, -2 on a bad escape or %00. */
static int decode_part(const char *s, size_t n, char **out)
{
    long len;

    if (!(*out = malloc(n + 1)))
        return -1;
    len = km_pct_decode(s, n, *out, n + 1, KM_PCT_PATH);
    if (len >= 0)
        return 0;
    free(*out);
    *out = NULL;
    return -2;
}

/* user:password@ -> r->user, r->password ("secret@" alone: a password).
   0, -1 on ENOMEM, -2 on a bad escape. */
static int parse_userinfo(struct ka_redis *r, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    int rc;

    if (!colon)
        return decode_part(s, n, &r->password);
    if (colon > s && (rc = decode_part(s, (size_t)(colon - s), &r->user)) < 0)
        return rc;
    return decode_part(colon + 1, n - (size_t)(colon - s) - 1, &r->password);
}

/* host[:port], host numeric or localhost. */
static int parse_hostport(struct ka_redis *r, const char *s, size_t n, char *err,
                          size_t errlen)
{
    const char *end = s + n, *port = NULL;
    char host[256];
    unsigned char addr[16];
    size_t hl;

    if (n && *s == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            goto bad;
        hl = (size_t)(close - s - 1);
        if (hl >= sizeof host)
            goto bad;
        memcpy(host, s + 1, hl);
        port = close + 1 < end && close[1] == ':' ? close + 2 : NULL;
        if (close + 1 < end && !port)
            goto bad;
    } else {
        const char *colon = memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
        if (hl >= sizeof host)
            goto bad;
        memcpy(host, s, hl);
        port = colon ? colon + 1 : NULL;
    }
    host[hl] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
        snprintf(err, errlen,
                 "the host '%s' is not a numeric address; give an IPv4 or [IPv6] address "
                 "(hiredis would resolve a name with a blocking lookup)",
                 host);
        return -1;
    }
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = 6379;
    if (port) {
        char *e;
        long p = strtol(port, &e, 10);
        if (e != end || p < 1 || p > 65535)
            goto bad;
        r->port = (int)p;
    }
    return 0;
bad:
    snprintf(err, errlen, "cannot read host[:port] in it");
    return -1;
}

static int parse_url(struct ka_redis *r, const char *url, char *err, size_t errlen)
{
    const char *s = url + 8, *at, *slash, *hp;
    size_t n;
    int rc;

    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "'%s' must start with redis:// (TLS is not supported)",
                 url);
        return -1;
    }
    if (strpbrk(s, "?#")) {
        snprintf(err, errlen, "options (?...) are not supported in '%s'", url);
        return -1;
    }
    slash = strchr(s, '/');
    n = slash ? (size_t)(slash - s) : strlen(s);
    at = memrchr(s, '@', n);
    if (at && (rc = parse_userinfo(r, s, (size_t)(at - s))) < 0) {
        if (rc == -1)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(err, errlen,
                     "bad %%-escape in the user or password of the url: write a "
                     "'%%' as %%25, and no %%00");
        return -1;
    }
    hp = at ? at + 1 : s;
    if (parse_hostport(r, hp, (size_t)(s + n - hp), err, errlen) < 0)
        return -1;
    if (slash && slash[1]) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 1000000) {
            snprintf(err, errlen, "the database '%s' is not a number", slash + 1);
            return -1;
        }
        r->db = (int)db;
    }
    snprintf(r->where, sizeof r->where, strchr(r->host, ':') ? "[%s]:%d/%d" : "%s:%d/%d",
             r->host, r->port, r->db);
    return 0;
}

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
    snprintf(why, sizeof why, "Redis at %s did not answer within %g s", r->where,
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
        failed(r, "cannot connect to Redis at %s: %s", r->where, ac->errstr);
        return;
    }
    if (r->failures)
        ka.host->log(ka.ctx, KM_LOG_NOTICE, "connected to Redis at %s again", r->where);
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
                     r->where, ac->errstr ? ac->errstr : "(no reason)");
        r->ac = NULL;
        return;
    }
    failed(r, "Redis at %s closed the connection: %s", r->where,
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
            failed(r, "Redis at %s: connection lost: %s", r->where,
                   ac->errstr ? ac->errstr : "(no reason)");
        if (c->cb)
            c->cb(NULL, r->error, c->arg);
        free(c);
        return;
    }
    progress(r);
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, sizeof err, "Redis at %s refused %s: %.400s", r->where, c->name,
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
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    char db[16];

    if (!ac || ac->err) {
        failed(r, "cannot connect to Redis at %s: %s", r->where,
               ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = r;
    if (km_redis_attach(ac, ka.host, ka.ctx) != REDIS_OK) {
        redisAsyncFree(ac);
        failed(r, "cannot connect to Redis at %s: out of memory", r->where);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    snprintf(db, sizeof db, "%d", r->db);
    if (r->password) {
        const char *argv[] = {"AUTH", r->user ? r->user : r->password, r->password};
        send_cmd(r, NULL, NULL, r->user ? 3 : 2, argv, NULL);
    }
    if (r->db) {
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
    if (parse_url(r, url, err, errlen) < 0) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        ka_redis_free(r);
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
    free(r->user);
    free(r->password);
    free(r);
}

const char *ka_redis_where(const struct ka_redis *r)
{
    return r->where;
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
