/*
 * katomon/hiredis.h - hiredis's async client on the daemon's loop, through
 * the host's fd verbs (io_add, io_set, io_del): the adapter a plugin
 * attaches to a redisAsyncContext instead of hiredis's libevent one, since
 * no libevent type reaches a plugin. Header-only (plugins link no core
 * object); include it after <hiredis/async.h>, link hiredis.
 *
 * hiredis drives an adapter through five hooks in ac->ev (addRead,
 * delRead, addWrite, delWrite, cleanup), with ac->ev.data their argument
 * (see hiredis/adapters/libevent.h, the model). Here one fd watch waits
 * for whatever the hooks asked; cleanup, which hiredis runs from
 * redisAsyncFree (also from inside our own read callback, when a reply
 * callback or an error frees the connection), stops the watch and frees
 * the adapter once the callback that got there has returned.
 *
 * hiredis 0.14 has no timeouts: a plugin bounds its commands with a host
 * timer (kato_api's redis.c does). The watch is released with the plugin,
 * like all it made through the host; free the context (redisAsyncFree)
 * in shutdown at the latest.
 */
#ifndef KATOMON_HIREDIS_H
#define KATOMON_HIREDIS_H

#include <stdlib.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <katomon/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The adapter of one redisAsyncContext (ac->ev.data). */
struct km_redis_io {
    redisAsyncContext *ac;      /* the connection (borrowed: it owns us) */
    const struct km_host *host; /* the host's verbs (borrowed) */
    struct km_ctx *ctx;         /* the plugin (borrowed) */
    struct km_io *io;           /* the fd watch (the host's); NULL after cleanup */
    unsigned events;            /* KM_IO_* the watch waits for */
    int firing;                 /* inside km_redis_io_ready: freeing is deferred */
    int dead;                   /* cleanup ran while firing: free on the way out */
};

/* Changes what the watch waits for: events | set, without clear. */
static inline void km_redis_io_want(struct km_redis_io *e, unsigned set, unsigned clear)
{
    unsigned events = (e->events | set) & ~clear;

    if (!e->io || events == e->events)
        return;
    e->events = events;
    e->host->io_set(e->ctx, e->io, events);
}

/* The fd watch's callback: hands readiness to hiredis, read first (that
   also finishes a connect). Either may free the context and, through
   cleanup, the adapter: `dead` says so, and nothing is touched after. */
static inline void km_redis_io_ready(int fd, unsigned events, void *arg)
{
    struct km_redis_io *e = (struct km_redis_io *)arg;

    (void)fd;
    e->firing = 1;
    if (events & KM_IO_READ)
        redisAsyncHandleRead(e->ac);
    if (!e->dead && (events & KM_IO_WRITE))
        redisAsyncHandleWrite(e->ac);
    e->firing = 0;
    if (e->dead)
        free(e);
}

static inline void km_redis_io_add_read(void *p)
{
    km_redis_io_want((struct km_redis_io *)p, KM_IO_READ, 0);
}

static inline void km_redis_io_del_read(void *p)
{
    km_redis_io_want((struct km_redis_io *)p, 0, KM_IO_READ);
}

static inline void km_redis_io_add_write(void *p)
{
    km_redis_io_want((struct km_redis_io *)p, KM_IO_WRITE, 0);
}

static inline void km_redis_io_del_write(void *p)
{
    km_redis_io_want((struct km_redis_io *)p, 0, KM_IO_WRITE);
}

static inline void km_redis_io_cleanup(void *p)
{
    struct km_redis_io *e = (struct km_redis_io *)p;

    if (e->io)
        e->host->io_del(e->ctx, e->io); /* safe inside its own callback */
    e->io = NULL;
    if (e->firing)
        e->dead = 1; /* km_redis_io_ready frees it once hiredis returned */
    else
        free(e);
}

/*
 * Attaches ac (a fresh redisAsyncConnect; no adapter yet) to the daemon's
 * loop for plugin ctx. Waits for read and write at once, as hiredis's own
 * adapters do: the connect in progress ends with the fd writable. Returns
 * REDIS_OK, or REDIS_ERR (an adapter is attached already, the host has no
 * fd verbs, or out of memory): ac is then untouched, free it.
 */
static inline int km_redis_attach(redisAsyncContext *ac, const struct km_host *host,
                                  struct km_ctx *ctx)
{
    struct km_redis_io *e;

    if (!ac || ac->ev.data || !KM_HOST_HAS(host, io_del))
        return REDIS_ERR;
    if (!(e = (struct km_redis_io *)calloc(1, sizeof *e)))
        return REDIS_ERR;
    e->ac = ac;
    e->host = host;
    e->ctx = ctx;
    e->events = KM_IO_READ | KM_IO_WRITE;
    if (!(e->io = host->io_add(ctx, ac->c.fd, e->events, km_redis_io_ready, e))) {
        free(e);
        return REDIS_ERR;
    }
    ac->ev.addRead = km_redis_io_add_read;
    ac->ev.delRead = km_redis_io_del_read;
    ac->ev.addWrite = km_redis_io_add_write;
    ac->ev.delWrite = km_redis_io_del_write;
    ac->ev.cleanup = km_redis_io_cleanup;
    ac->ev.data = e;
    return REDIS_OK;
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_HIREDIS_H */
