/*
 * host.c - the host interface: the verb table (struct km_host) and the
 * verbs that make things on the daemon's loop for a plugin.
 *
 * Concern: what a plugin can ask of the core, and taking all of it back.
 * Most verbs are thin wrappers around the bus, the outbound HTTP and
 * WebSocket clients (libcurl) or libevent; the config and log verbs are
 * the context's (ctx.c), the REST ones the route table's (plugin_routes.c)
 * and the answers' (plugin_rest.c). What makes this more than a table of
 * wrappers is the bookkeeping: each timer, fd watch, HTTP request,
 * WebSocket, subscription, topic and route is tagged with the plugin that
 * made it, so km_host_release() can take all of it back when the plugin
 * is shut down or disabled, before its code is unmapped by dlclose().
 * After that, no callback into the plugin may ever run.
 *
 * Subscriptions and topics are tagged through the bus's `owner` argument
 * (the ctx pointer), routes in the route table likewise; timers, fd
 * watches, requests and WebSocket connections are kept in the context's
 * lists, here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <katomon/util.h>

#include "ctx.h"
#include "host.h"
#include "http_client.h"
#include "log.h"
#include "plugin_rest.h"
#include "plugin_routes.h"
#include "ws_client.h"

/*
 * One timer. The plugin's handle is not a pointer to this but its id, cast
 * to struct km_timer * (redis ae.c does the same with long long ids): a
 * stale handle matches nothing and is ignored, so deleting a one-shot timer
 * that already fired, or deleting twice, is harmless instead of a
 * use-after-free, and one-shot timers can be freed as soon as they fire.
 */
struct km_timer_slot {
    uint64_t id;                /* the plugin's handle; never reused */
    struct km_ctx *ctx;         /* owner */
    struct event *ev;           /* libevent timer (owned), never persistent */
    km_timer_cb cb;             /* the plugin's callback */
    void *arg;                  /* its argument */
    unsigned flags;             /* KM_TIMER_* */
    double interval;            /* period, seconds */
    double due;                 /* monotonic time of the next periodic fire */
    int now_pending;            /* the KM_TIMER_NOW fire has not run yet */
    int firing;                 /* inside cb: deletion is deferred to after it */
    int dead;                   /* deleted while firing; freed once cb returns */
    struct km_timer_slot *next; /* ctx->timers */
};

/*
 * One HTTP request in flight; the plugin's opaque handle points at it.
 * It lives until its callback has run or it is cancelled.
 */
struct km_http_req {
    struct km_hc_req *r;      /* the client's request; NULL once cb started */
    struct km_ctx *ctx;       /* owner */
    km_http_cb cb;            /* the plugin's callback */
    void *arg;                /* its argument */
    struct km_http_req *prev; /* ctx->requests, doubly linked: O(1) removal */
    struct km_http_req *next; /* idem */
};

/*
 * One outbound WebSocket connection (km_host.ws_open); the plugin's opaque
 * handle points at it. It lives until its on_close has run or the plugin
 * closes it.
 */
struct km_ws {
    struct km_wsc *c;   /* the client's connection; NULL once on_close started */
    struct km_ctx *ctx; /* owner */
    void (*on_open)(struct km_ws *ws, void *arg); /* the plugin's callbacks */
    void (*on_message)(struct km_ws *ws, int binary, const char *data, size_t len,
                       void *arg);
    void (*on_close)(struct km_ws *ws, const struct km_ws_closed *info, void *arg);
    void *arg;          /* their argument */
    struct km_ws *prev; /* ctx->websockets, doubly linked: O(1) removal */
    struct km_ws *next; /* idem */
};

/* Next timer id. Global, so a handle used with another plugin's ctx is
   simply not found. Starts at 1 so no handle is NULL. */
static uint64_t g_next_timer_id = 1;

/* ---- errors ------------------------------------------------------------ */

const char *km_strerror(int err)
{
    switch (err) {
    case KM_OK:
        return "success";
    case KM_ENOMEM:
        return "out of memory";
    case KM_EINVAL:
        return "invalid argument";
    case KM_ESCHEMA:
        return "message does not match the topic's type";
    case KM_EEXIST:
        return "exists already (topic or REST route)";
    case KM_ENOENT:
        return "no such topic";
    case KM_EOWNER:
        return "topic belongs to another plugin";
    case KM_EGONE:
        return "messages no longer in the replay ring";
    case KM_EKIND:
        return "wrong topic kind for this operation";
    case KM_ESTALE:
        return "stale: an older epoch, or a sequence number already seen";
    case KM_EFULL:
        return "too many hosts ([core] max_hosts)";
    case KM_EABI:
        return "plugin built for another plugin ABI";
    case KM_EINIT:
        return "plugin init failed";
    case KM_ECONFIG:
        return "bad plugin configuration";
    default:
        return "unknown error";
    }
}

/* ---- small helpers -------------------------------------------------------- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- topics and messages ---------------------------------------------------- */

static struct km_topic *host_topic_declare(struct km_ctx *ctx,
                                           const struct km_topic_def *def, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    if (!def) {
        *err = KM_EINVAL;
        return NULL;
    }
    return km_bus_declare(ctx->core->bus, def, ctx, err);
}

static struct km_topic *host_topic_find(struct km_ctx *ctx, const char *name)
{
    return name ? km_bus_find(ctx->core->bus, name) : NULL;
}

static int host_publish(struct km_ctx *ctx, struct km_topic *topic, json_t *body)
{
    int debug = km_log_get_level() >= KM_LOG_DEBUG;
    size_t len = 0;
    int rc;

    if (!topic) {
        json_decref(body); /* publish steals body in every case */
        return KM_EINVAL;
    }
    /* Measured before publish steals it; only worth the encoding at debug. */
    if (debug && body)
        len = json_dumpb(body, NULL, 0, KM_JSON_FLAGS);
    rc = km_bus_publish(topic, body, ctx);
    if (rc == KM_OK && debug)
        km_log(KM_LOG_DEBUG, "%s: published on topic %s (%zu bytes)", ctx->log_prefix,
               km_topic_name(topic), len);
    return rc;
}

static struct km_sub *host_subscribe(struct km_ctx *ctx, const char *topic, km_msg_cb cb,
                                     void *arg)
{
    if (!topic || !cb)
        return NULL;
    return km_bus_subscribe(ctx->core->bus, topic, cb, arg, ctx);
}

static void host_unsubscribe(struct km_ctx *ctx, struct km_sub *sub)
{
    if (sub)
        km_bus_unsubscribe(sub);
}

static struct km_msg *host_topic_latest(struct km_topic *topic)
{
    return topic ? km_topic_latest(topic) : NULL;
}

/* ---- timers ------------------------------------------------------------- */

static struct km_timer *timer_handle(const struct km_timer_slot *t)
{
    return (struct km_timer *)(uintptr_t)t->id;
}

/* Unlinks t from its ctx and frees it. Not while t is firing. */
static void timer_destroy(struct km_timer_slot *t)
{
    struct km_timer_slot **pp = &t->ctx->timers;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    event_free(t->ev);
    free(t);
}

/* Arms t for its next periodic fire; a late loop skips missed periods
   rather than firing a burst to catch up. */
static void timer_schedule_next(struct km_timer_slot *t, int advance)
{
    double now = mono_now();
    struct timeval tv;

    if (advance)
        t->due += t->interval;
    if (t->due < now)
        t->due = now + t->interval;
    tv = km_timeval(t->due - now);
    event_add(t->ev, &tv);
}

/*
 * libevent callback. The event is never EV_PERSIST: it is re-armed here
 * after the plugin's callback, which is what makes deleting the timer from
 * inside that callback safe (the slot is freed only once cb returned).
 */
static void timer_fire(evutil_socket_t fd, short what, void *arg)
{
    struct km_timer_slot *t = arg;
    int was_now = t->now_pending;

    t->now_pending = 0;
    t->firing = 1;
    t->cb(t->arg);
    t->firing = 0;
    if (t->dead)
        timer_destroy(t);
    else if (was_now)
        timer_schedule_next(t, 0); /* the first periodic fire is still due */
    else if (t->flags & KM_TIMER_REPEAT)
        timer_schedule_next(t, 1);
    else
        timer_destroy(t); /* one-shot: done; its stale id is harmless */
}

static struct km_timer *host_timer_add(struct km_ctx *ctx, double interval_s,
                                       unsigned flags, km_timer_cb cb, void *arg)
{
    struct km_timer_slot *t;

    /* 1e8 s keeps timeval arithmetic far from overflow; a repeating timer
       under 1 ms would only spin the loop. */
    if (!cb || !isfinite(interval_s) || interval_s < 0 || interval_s > 1e8 ||
        ((flags & KM_TIMER_REPEAT) && interval_s < 0.001))
        return NULL;
    if (!(t = calloc(1, sizeof *t)))
        return NULL;
    if (!(t->ev = event_new(ctx->core->base, -1, 0, timer_fire, t))) {
        free(t);
        return NULL;
    }
    t->id = g_next_timer_id++;
    t->ctx = ctx;
    t->cb = cb;
    t->arg = arg;
    t->flags = flags;
    t->interval = interval_s;
    t->due = mono_now() + interval_s;
    if (flags & KM_TIMER_NOW) {
        struct timeval zero = {0, 0};
        t->now_pending = 1;
        event_add(t->ev, &zero);
    } else {
        struct timeval tv = km_timeval(interval_s);
        event_add(t->ev, &tv);
    }
    t->next = ctx->timers;
    ctx->timers = t;
    return timer_handle(t);
}

static void host_timer_del(struct km_ctx *ctx, struct km_timer *timer)
{
    uint64_t id = (uint64_t)(uintptr_t)timer;
    struct km_timer_slot *t;

    for (t = ctx->timers; t; t = t->next)
        if (t->id == id)
            break;
    if (!t || t->dead)
        return; /* fired already (one-shot), deleted already, or not ours */
    if (t->firing) {
        t->dead = 1; /* timer_fire frees it once the callback returns */
        return;
    }
    timer_destroy(t);
}

/* ---- HTTP ------------------------------------------------------------- */

static void request_unlink(struct km_http_req *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        w->ctx->requests = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* The client's callback: untrack first, so that nothing (a cancel from
   inside cb, or the plugin's unload) can reach the finished request. */
static void request_done(const struct km_http_response *resp, void *arg)
{
    struct km_http_req *w = arg;

    request_unlink(w);
    w->r = NULL;
    w->cb(resp, w->arg);
    free(w);
}

static struct km_http_req *host_http_request(struct km_ctx *ctx,
                                             const struct km_http_request *req,
                                             km_http_cb cb, void *arg)
{
    struct km_http_req *w;
    char err[256] = "";

    if (!req || !cb || !(w = calloc(1, sizeof *w)))
        return NULL;
    w->ctx = ctx;
    w->cb = cb;
    w->arg = arg;
    /* the client never calls back from inside km_hc_request, so tracking
       after it returns is safe. */
    w->r = km_hc_request(ctx->core->base, req, request_done, w, err, sizeof err);
    if (!w->r) {
        km_log(KM_LOG_DEBUG, "%s: http request to %s not started: %s", ctx->log_prefix,
               req->url ? req->url : "(no url)", err[0] ? err : "out of memory");
        free(w);
        return NULL;
    }
    w->next = ctx->requests;
    if (w->next)
        w->next->prev = w;
    ctx->requests = w;
    return w;
}

static void host_http_cancel(struct km_ctx *ctx, struct km_http_req *w)
{
    /* r is NULL inside the request's own callback: request_done frees it. */
    if (!w || !w->r)
        return;
    km_hc_cancel(w->r);
    request_unlink(w);
    free(w);
}

/* ---- outbound WebSocket ---------------------------------------------------- */

static void ws_unlink(struct km_ws *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        w->ctx->websockets = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

static void ws_opened(struct km_wsc *c, void *arg)
{
    struct km_ws *w = arg;

    if (w->on_open)
        w->on_open(w, w->arg);
}

static void ws_message(struct km_wsc *c, int binary, const char *data, size_t len,
                       void *arg)
{
    struct km_ws *w = arg;

    if (w->on_message)
        w->on_message(w, binary, data, len, w->arg);
}

/* The client's on_close: untrack first, so that nothing (a ws_close from
   inside on_close, or the plugin's unload) can reach the finished one. */
static void ws_closed(struct km_wsc *c, const struct km_ws_closed *info, void *arg)
{
    struct km_ws *w = arg;

    ws_unlink(w);
    w->c = NULL;
    w->on_close(w, info, w->arg);
    free(w);
}

static struct km_ws *host_ws_open(struct km_ctx *ctx, const struct km_ws_client_opts *o)
{
    static const struct km_wsc_handlers h0 = {ws_opened, ws_message, ws_closed, NULL};
    struct km_wsc_handlers h = h0;
    struct km_ws *w;
    char err[256] = "";

    if (!o || !o->on_close || !(w = calloc(1, sizeof *w)))
        return NULL;
    w->ctx = ctx;
    w->on_open = o->on_open;
    w->on_message = o->on_message;
    w->on_close = o->on_close;
    w->arg = o->arg;
    h.arg = w;
    /* never calls back from inside km_wsc_open: tracking after it is safe */
    w->c = km_wsc_open(ctx->core->base, o, &h, err, sizeof err);
    if (!w->c) {
        km_log(KM_LOG_DEBUG, "%s: WebSocket to %s not opened: %s", ctx->log_prefix,
               o->url ? o->url : "(no url)", err[0] ? err : "out of memory");
        free(w);
        return NULL;
    }
    w->next = ctx->websockets;
    if (w->next)
        w->next->prev = w;
    ctx->websockets = w;
    return w;
}

static int host_ws_send_text(struct km_ctx *ctx, struct km_ws *w, const char *text,
                             size_t len)
{
    if (!w || !w->c)
        return KM_EINVAL;
    return km_wsc_send_text(w->c, text, len) == 0 ? KM_OK : KM_EINVAL;
}

static void host_ws_close(struct km_ctx *ctx, struct km_ws *w)
{
    /* c is NULL inside the connection's own on_close: ws_closed frees it */
    if (!w || !w->c)
        return;
    km_wsc_close(w->c); /* from inside its on_message: freed when that returns */
    ws_unlink(w);
    free(w);
}

/* ---- fd watches ---------------------------------------------------------- */

/*
 * One watched fd (km_host.io_add); the plugin's opaque handle points at it.
 * The event is persistent and level-triggered; changing what it waits for
 * re-assigns it in place (event_del, then event_assign: it is neither
 * pending nor active then, even inside its own callback), so io_set never
 * allocates.
 */
struct km_io {
    struct km_ctx *ctx; /* owner */
    struct event *ev;   /* the libevent event (owned), re-assigned in place */
    int fd;             /* the plugin's fd (not owned: never closed here) */
    unsigned events;    /* KM_IO_* it waits for; 0: none (not added) */
    km_io_cb cb;        /* the plugin's callback */
    void *arg;          /* its argument */
    int firing;         /* inside cb: a deletion is deferred to after it */
    int dead;           /* deleted while firing; freed once cb returns */
    struct km_io *prev; /* ctx->ios, doubly linked: O(1) removal */
    struct km_io *next; /* idem */
};

#define KM_IO_ALL (KM_IO_READ | KM_IO_WRITE)

static void io_fire(evutil_socket_t fd, short what, void *arg);

/* Points io->ev at io->events and adds it (nothing to add for 0). */
static int io_arm(struct km_io *io)
{
    short what = (short)(((io->events & KM_IO_READ) ? EV_READ : 0) |
                         ((io->events & KM_IO_WRITE) ? EV_WRITE : 0));

    if (event_assign(io->ev, io->ctx->core->base, io->fd, what | EV_PERSIST, io_fire,
                     io) != 0)
        return -1;
    return what ? event_add(io->ev, NULL) : 0;
}

static void io_unlink(struct km_io *io)
{
    if (io->prev)
        io->prev->next = io->next;
    else
        io->ctx->ios = io->next;
    if (io->next)
        io->next->prev = io->prev;
    io->prev = io->next = NULL;
}

static void io_destroy(struct km_io *io)
{
    event_free(io->ev);
    io_unlink(io);
    free(io);
}

/* libevent callback; deleting the watch from inside cb is deferred to
   after it, as for timers. */
static void io_fire(evutil_socket_t fd, short what, void *arg)
{
    struct km_io *io = arg;
    unsigned got =
        ((what & EV_READ) ? KM_IO_READ : 0) | ((what & EV_WRITE) ? KM_IO_WRITE : 0);

    io->firing = 1;
    io->cb(io->fd, got & io->events, io->arg);
    io->firing = 0;
    if (io->dead) {
        event_free(io->ev); /* unlinked and taken off the loop by io_del */
        free(io);
    }
}

static struct km_io *host_io_add(struct km_ctx *ctx, int fd, unsigned events, km_io_cb cb,
                                 void *arg)
{
    struct km_io *io;

    if (fd < 0 || !cb || (events & ~KM_IO_ALL) || !(io = calloc(1, sizeof *io)))
        return NULL;
    io->ctx = ctx;
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->arg = arg;
    /* allocated once; io_arm assigns what it waits for */
    if (!(io->ev = event_new(ctx->core->base, -1, 0, io_fire, io)) || io_arm(io) != 0) {
        if (io->ev)
            event_free(io->ev);
        free(io);
        return NULL;
    }
    io->next = ctx->ios;
    if (io->next)
        io->next->prev = io;
    ctx->ios = io;
    return io;
}

static int host_io_set(struct km_ctx *ctx, struct km_io *io, unsigned events)
{
    if (!io || io->dead || (events & ~KM_IO_ALL))
        return KM_EINVAL;
    if (events == io->events)
        return KM_OK;
    event_del(io->ev);
    io->events = events;
    return io_arm(io) == 0 ? KM_OK : KM_EINVAL;
}

static void host_io_del(struct km_ctx *ctx, struct km_io *io)
{
    if (!io || io->dead)
        return;
    if (io->firing) {
        event_del(io->ev);
        io_unlink(io);
        io->dead = 1; /* io_fire frees it once the callback returns */
        return;
    }
    io_destroy(io);
}

/* ---- what a bridge reads of the bus ------------------------------------------ */

static int64_t host_bus_epoch(struct km_ctx *ctx)
{
    return km_bus_epoch(ctx->core->bus);
}

/* ---- hosts (issue 15): thin wrappers of the bus's per-host functions ---------- */

static const char *host_host_name(struct km_ctx *ctx, int h)
{
    return km_bus_host_name(ctx->core->bus, h);
}

static int host_host_find(struct km_ctx *ctx, const char *name)
{
    return name ? km_bus_host_find(ctx->core->bus, name) : -1;
}

static int host_msg_host(const struct km_msg *msg)
{
    return msg ? km_msg_host(msg) : 0;
}

static int64_t host_msg_epoch(const struct km_msg *msg)
{
    return msg ? km_msg_epoch(msg) : 0;
}

static struct km_msg *host_topic_latest_host(struct km_topic *topic, int h)
{
    return topic ? km_topic_latest_host(topic, h) : NULL;
}

static struct km_sub *host_subscribe_hosts(struct km_ctx *ctx, const char *topic,
                                           km_msg_cb cb, void *arg)
{
    if (!topic || !cb)
        return NULL;
    return km_bus_subscribe_ex(ctx->core->bus, topic, cb, arg, ctx, KM_SUB_HOSTS);
}

static int host_publish_remote(struct km_ctx *ctx, struct km_topic *topic, json_t *body,
                               const struct km_remote *r)
{
    if (!topic || !r) {
        json_decref(body); /* steals body in every case */
        return KM_EINVAL;
    }
    /* refusals are the caller's to count and log (a bridge does it per reason,
       once per burst); a schema refusal is logged by the bus */
    return km_bus_publish_remote(topic, body, r);
}

static int host_replay_host(struct km_ctx *ctx, struct km_topic *topic, int h,
                            uint64_t since, km_msg_cb cb, void *arg)
{
    if (!topic || !cb)
        return KM_EINVAL;
    return km_bus_replay_host(topic, h, since, cb, arg);
}

/* ---- REST ------------------------------------------------------------------ */

static int host_rest_route(struct km_ctx *ctx, const char *method, const char *path,
                           km_rest_cb cb, void *arg)
{
    return km_plugin_routes_add(ctx->core->routes, ctx, method, path, cb, arg);
}

/* ---- the interface ------------------------------------------------------ */

const struct km_host km_host_iface = {
    .abi = KM_PLUGIN_ABI,
    .size = sizeof(struct km_host),
    .log = km_ctx_log,
    .strerror = km_strerror,
    .config_string = km_ctx_config_string,
    .config_int = km_ctx_config_int,
    .config_double = km_ctx_config_double,
    .config_bool = km_ctx_config_bool,
    .config_sections = km_ctx_config_sections,
    .state_dir = km_ctx_state_dir,
    .topic_declare = host_topic_declare,
    .topic_find = host_topic_find,
    .topic_name = km_topic_name,
    .publish = host_publish,
    .subscribe = host_subscribe,
    .unsubscribe = host_unsubscribe,
    .msg_json = km_msg_json,
    .msg_seq = km_msg_seq,
    .msg_ref = km_msg_ref,
    .msg_unref = km_msg_unref,
    .topic_latest = host_topic_latest,
    .timer_add = host_timer_add,
    .timer_del = host_timer_del,
    .http_request = host_http_request,
    .http_cancel = host_http_cancel,
    .rest_route = host_rest_route,
    .rest_param = km_rest_param,
    .rest_finish = km_rest_finish,
    .ws_open = host_ws_open,
    .ws_send_text = host_ws_send_text,
    .ws_close = host_ws_close,
    .io_add = host_io_add,
    .io_set = host_io_set,
    .io_del = host_io_del,
    .msg_text = km_msg_text,
    .msg_time_us = km_msg_time_us,
    .bus_epoch = host_bus_epoch,
    .host_name = host_host_name,
    .host_find = host_host_find,
    .msg_host = host_msg_host,
    .msg_epoch = host_msg_epoch,
    .topic_latest_host = host_topic_latest_host,
    .subscribe_hosts = host_subscribe_hosts,
    .publish_remote = host_publish_remote,
    .replay_host = host_replay_host,
};

/* ---- taking it all back ------------------------------------------------------ */

void km_host_release(struct km_ctx *ctx)
{
    if (!ctx)
        return;
    while (ctx->requests) {
        struct km_http_req *w = ctx->requests;
        request_unlink(w);
        km_hc_cancel(w->r);
        free(w);
    }
    while (ctx->websockets) {
        struct km_ws *w = ctx->websockets;
        ws_unlink(w);
        km_wsc_close(w->c);
        free(w);
    }
    /* Never called from inside one of the plugin's own callbacks, so no
       timer or fd watch is firing here. */
    while (ctx->timers)
        timer_destroy(ctx->timers);
    while (ctx->ios)
        io_destroy(ctx->ios);
    km_plugin_routes_drop(ctx->core->routes, ctx);
    km_rest_pending_answer_all(ctx);
    km_bus_unsubscribe_owner(ctx->core->bus, ctx);
    km_bus_disown(ctx->core->bus, ctx);
    km_ctx_forget(ctx);
}
