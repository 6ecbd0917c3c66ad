/*
 * host.c - the host interface (struct km_host) and the per-plugin context.
 *
 * Every function a plugin can call lands here as a thin wrapper around the
 * bus, the config, the outbound HTTP and WebSocket clients (libcurl) or
 * libevent. What makes this more than a
 * table of wrappers is the bookkeeping in struct km_ctx: each timer, HTTP
 * request, subscription and topic is tagged with the plugin that made it,
 * so km_ctx_release() can take all of it back when the plugin is shut down
 * or disabled, before its code is unmapped by dlclose(). After that, no
 * callback into the plugin may ever run and nothing may touch its context.
 *
 * Subscriptions and topics are tagged through the bus's `owner` argument
 * (the ctx pointer); timers, requests, WebSocket connections, REST routes
 * and REST answers owed (KM_REST_LATER) are kept in lists here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "loader.h"
#include "http_client.h"
#include "log.h"
#include "url.h"
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

/* One REST route a plugin serves (km_host.rest_route). */
struct km_route {
    char *method;          /* "GET", "POST", ... (owned) */
    char *path;            /* path under /api/v1/ as registered, a prefix
                              route with its trailing "*" (owned) */
    size_t prefix;         /* prefix route: bytes of path before the "*";
                              0: exact */
    km_rest_cb cb;         /* the plugin's handler */
    void *arg;             /* its argument */
    struct km_route *next; /* ctx->routes */
};

/*
 * One REST request a plugin answers later (KM_REST_LATER). The plugin's
 * handle: valid from the handler's call until its rest_finish, or until
 * the plugin is released, whichever comes first, whatever happened to the
 * client meanwhile. The waiter (the connection) may leave before.
 */
struct km_rest_pending {
    struct km_ctx *ctx;           /* the plugin that answers */
    struct km_rest_waiter waiter; /* who gets the answer; .answer NULL once
                                     it was given (or the waiter left) */
    struct event *deadline;       /* answers 504 (owned); NULL until settled */
    char what[160];               /* "GET /api/v1/..." for log lines */
    int in_handler;               /* the handler has not returned yet */
    int early;                    /* rest_finish ran inside the handler */
    int early_status;             /* ... with this status */
    json_t *early_reply;          /* ... and this body (owned) */
    struct km_rest_pending *prev; /* ctx->pendings, doubly linked */
    struct km_rest_pending *next; /* idem */
};

/* config_sections() answer for one kind, kept until the next reload. */
struct km_kind_list {
    char *kind;                          /* the kind asked for (owned) */
    const struct km_conf_section **secs; /* borrowed from core->cfg; owned array */
    size_t n;                            /* number of sections */
    struct km_kind_list *next;           /* ctx->kinds */
};

struct km_ctx {
    struct km_core *core;         /* the daemon (borrowed) */
    char *name;                   /* section NAME (owned) */
    char *log_prefix;             /* "plugin NAME", before each of its lines (owned) */
    const struct km_plugin *desc; /* descriptor in the loaded object (borrowed);
                                     NULL after km_ctx_release */
    char **values;                /* per desc->config key, in order: value or
                                     default, NULL when neither (owned) */
    size_t n_values;              /* keys in desc->config */
    char **retired;               /* values replaced by a reload; the plugin may
                                     still hold them, so freed only at the end */
    size_t n_retired;             /* entries in retired */
    char *state_dir;              /* copy of [core] state_dir, NULL if unset */
    struct km_kind_list *kinds;   /* config_sections() answers (owned) */
    struct km_timer_slot *timers; /* its live timers (owned) */
    struct km_http_req *requests; /* its requests in flight (owned) */
    struct km_ws *websockets;     /* its WebSocket connections (owned) */
    struct km_route *routes;      /* its REST routes (owned) */
    struct km_rest_pending *pendings; /* REST answers it owes (owned) */
    char last_error[256];             /* last error/warning line it logged */
};

/* Seconds a plugin gets to answer a KM_REST_LATER request. */
double km_rest_deadline_s = KM_REST_DEADLINE_S;

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

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Both NULL, or both set and equal. */
static int same_text(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval to_timeval(double s)
{
    struct timeval tv;
    if (s < 0)
        s = 0;
    tv.tv_sec = (time_t)s;
    tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
    if (tv.tv_usec >= 1000000)
        tv.tv_usec = 999999;
    return tv;
}

/* ---- logging ----------------------------------------------------------- */

static void host_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void host_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < KM_LOG_ERROR)
        level = KM_LOG_ERROR;
    if (level > KM_LOG_DEBUG)
        level = KM_LOG_DEBUG;
    /* Kept so the loader can say why init failed in GET /api/v1/plugins. */
    if (level <= KM_LOG_WARNING) {
        va_start(ap, fmt);
        vsnprintf(ctx->last_error, sizeof ctx->last_error, fmt, ap);
        va_end(ap);
    }
    va_start(ap, fmt);
    km_vlog(level, ctx->log_prefix, fmt, ap);
    va_end(ap);
}

/* ---- configuration ------------------------------------------------------- */

/* Index of key in desc->config, or -1 (not a key of this plugin). */
static long find_key(const struct km_ctx *ctx, const char *key)
{
    if (!ctx->desc || !ctx->desc->config || !key)
        return -1;
    for (size_t i = 0; i < ctx->n_values; i++)
        if (strcmp(ctx->desc->config[i].name, key) == 0)
            return (long)i;
    return -1;
}

/* The value, or the default, of every declared key, from `sec`. */
static int resolve_values(struct km_ctx *ctx, const struct km_conf_section *sec,
                          char **out)
{
    for (size_t i = 0; i < ctx->n_values; i++) {
        const struct km_conf_key *k = &ctx->desc->config[i];
        const char *v = sec ? km_conf_value(sec, k->name) : NULL;
        out[i] = dup_or_null(v ? v : k->def);
        if ((v || k->def) && !out[i])
            return -1;
    }
    return 0;
}

static const char *host_config_string(struct km_ctx *ctx, const char *key)
{
    long i = find_key(ctx, key);
    return i < 0 ? NULL : ctx->values[i];
}

static long long host_config_int(struct km_ctx *ctx, const char *key)
{
    const char *v = host_config_string(ctx, key);
    long long n = 0;
    if (!v || km_parse_int(v, &n) < 0)
        return 0;
    return n;
}

static double host_config_double(struct km_ctx *ctx, const char *key)
{
    const char *v = host_config_string(ctx, key);
    double d = 0;
    if (!v || km_parse_double(v, &d) < 0)
        return 0;
    return d;
}

static int host_config_bool(struct km_ctx *ctx, const char *key)
{
    const char *v = host_config_string(ctx, key);
    int b = 0;
    if (!v || km_parse_bool(v, &b) < 0)
        return 0;
    return b;
}

static void free_kinds(struct km_ctx *ctx)
{
    while (ctx->kinds) {
        struct km_kind_list *k = ctx->kinds;
        ctx->kinds = k->next;
        free(k->kind);
        free(k->secs);
        free(k);
    }
}

/* Builds the list of `kind` sections of the current config. */
static struct km_kind_list *build_kind(struct km_ctx *ctx, const char *kind)
{
    const struct km_config *cfg = ctx->core->cfg;
    struct km_kind_list *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->kind = strdup(kind);
    if (cfg && cfg->n_sections)
        k->secs = calloc(cfg->n_sections, sizeof *k->secs);
    if (!k->kind || (cfg && cfg->n_sections && !k->secs)) {
        free(k->kind);
        free(k->secs);
        free(k);
        return NULL;
    }
    for (size_t i = 0; cfg && i < cfg->n_sections; i++)
        if (cfg->sections[i]->kind && strcmp(cfg->sections[i]->kind, kind) == 0)
            k->secs[k->n++] = cfg->sections[i];
    k->next = ctx->kinds;
    ctx->kinds = k;
    return k;
}

static const struct km_conf_section *const *
host_config_sections(struct km_ctx *ctx, const char *kind, size_t *n)
{
    struct km_kind_list *k;

    if (n)
        *n = 0;
    if (!kind)
        return NULL;
    for (k = ctx->kinds; k; k = k->next)
        if (strcmp(k->kind, kind) == 0)
            break;
    if (!k && !(k = build_kind(ctx, kind)))
        return NULL;
    if (n)
        *n = k->n;
    return k->n ? (const struct km_conf_section *const *)k->secs : NULL;
}

static const char *host_state_dir(struct km_ctx *ctx)
{
    return ctx->state_dir;
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
    tv = to_timeval(t->due - now);
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
        struct timeval tv = to_timeval(interval_s);
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

static void *host_event_base(struct km_ctx *ctx)
{
    return ctx->core->base;
}

/* ---- REST routes ---------------------------------------------------------- */

/* "GET", "POST", ...: 1 to 16 upper-case letters. */
static int valid_method(const char *m)
{
    size_t n = 0;
    for (; m[n]; n++)
        if (m[n] < 'A' || m[n] > 'Z')
            return 0;
    return n > 0 && n <= 16;
}

/* "/api/v1/..." with no query, fragment, escape or blank: matched against
   the decoded request path, so those could never match. A '*' only as the
   whole last segment: a prefix route. Returns the prefix length (bytes
   before the '*'), 0 for an exact path, -1 when invalid. */
static long route_path_kind(const char *p)
{
    static const char prefix[] = "/api/v1/";
    size_t n = strlen(p);
    if (strncmp(p, prefix, sizeof prefix - 1) != 0 || n == sizeof prefix - 1 || n > 256)
        return -1;
    for (const char *c = p; *c; c++)
        if (*c <= ' ' || *c == '?' || *c == '#' || *c == '%' || *c == 0x7f ||
            (*c == '*' && (c[1] || c[-1] != '/')))
            return -1;
    return p[n - 1] == '*' ? (long)(n - 1) : 0;
}

/* HEAD is answered by the GET handler (the server drops the body). */
static const char *route_method(const char *method)
{
    return strcmp(method, "HEAD") == 0 ? "GET" : method;
}

/* 1 when `method` is in the comma-separated list already. */
static int method_listed(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; (p = strstr(p, method)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* How well r matches path: 0 not at all; SIZE_MAX exact; else the length
   of the prefix (so a longer prefix ranks higher). */
static size_t route_rank(const struct km_route *r, const char *path)
{
    if (!r->prefix)
        return strcmp(r->path, path) == 0 ? SIZE_MAX : 0;
    /* at least one byte below the prefix: "/api/v1/sessions/" is not an id */
    return strncmp(r->path, path, r->prefix) == 0 && path[r->prefix] ? r->prefix : 0;
}

int km_ctx_route(const struct km_ctx *ctx, const char *method, const char *path,
                 km_rest_cb *cb, void **arg, size_t *prefix, char *allow, size_t allowlen)
{
    const struct km_route *best = NULL;
    size_t best_rank = 0;
    int known = 0;

    method = route_method(method);
    for (const struct km_route *r = ctx->routes; r; r = r->next) {
        size_t rank = route_rank(r, path);
        if (!rank)
            continue;
        if (strcmp(r->method, method) == 0) {
            if (rank > best_rank) {
                best = r;
                best_rank = rank;
            }
            continue;
        }
        known = 2;
        if (allow && allowlen && !method_listed(allow, r->method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", r->method);
        }
    }
    if (!best)
        return known;
    if (cb)
        *cb = best->cb;
    if (arg)
        *arg = best->arg;
    if (prefix)
        *prefix = best->prefix;
    return 1;
}

int km_ctx_has_route(const struct km_ctx *ctx, const char *method, const char *route)
{
    for (const struct km_route *r = ctx->routes; r; r = r->next)
        if (strcmp(r->method, method) == 0 && strcmp(r->path, route) == 0)
            return 1;
    return 0;
}

static int host_rest_route(struct km_ctx *ctx, const char *method, const char *path,
                           km_rest_cb cb, void *arg)
{
    struct km_route *r;
    long prefix;

    if (!method || !path || !cb || !valid_method(method) ||
        (prefix = route_path_kind(path)) < 0)
        return KM_EINVAL;
    if (km_ctx_has_route(ctx, method, path) ||
        (ctx->core->loader && km_loader_route_taken(ctx->core->loader, method, path)))
        return KM_EEXIST;
    if (!(r = calloc(1, sizeof *r)))
        return KM_ENOMEM;
    r->method = strdup(method);
    r->path = strdup(path);
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        free(r);
        return KM_ENOMEM;
    }
    r->prefix = (size_t)prefix;
    r->cb = cb;
    r->arg = arg;
    r->next = ctx->routes;
    ctx->routes = r;
    return KM_OK;
}

static void free_routes(struct km_ctx *ctx)
{
    while (ctx->routes) {
        struct km_route *r = ctx->routes;
        ctx->routes = r->next;
        free(r->method);
        free(r->path);
        free(r);
    }
}

static const char *host_rest_param(const struct km_rest_call *call, const char *name,
                                   char *buf, size_t len)
{
    const char *q = call && call->query ? call->query : "";
    char key[256];

    if (!name || !buf || !len)
        return NULL;
    /* names and values decode alike, by the query rule ('+' is a space, a
       stray '%' stays); one that holds a NUL or does not fit is refused */
    while (*q) {
        const char *end = strchr(q, '&');
        const char *eq;
        if (!end)
            end = q + strlen(q);
        eq = memchr(q, '=', (size_t)(end - q));
        const char *kend = eq ? eq : end, *v = eq ? eq + 1 : end;
        if (km_pct_decode(q, (size_t)(kend - q), key, sizeof key, KM_PCT_QUERY) >= 0 &&
            strcmp(key, name) == 0) {
            long n = km_pct_decode(v, (size_t)(end - v), buf, len, KM_PCT_QUERY);
            return n >= 0 ? buf : NULL;
        }
        q = *end ? end + 1 : end;
    }
    return NULL;
}

/* ---- REST answers given later -------------------------------------------- */

static void pending_unlink(struct km_rest_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->ctx->pendings = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void pending_free(struct km_rest_pending *p)
{
    pending_unlink(p);
    if (p->deadline)
        event_free(p->deadline);
    json_decref(p->early_reply);
    free(p);
}

/* Hands body (stolen) to the waiter, at most once; dropped when it left. */
static void pending_deliver(struct km_rest_pending *p, int status, json_t *body)
{
    struct km_rest_waiter w = p->waiter;

    p->waiter.answer = NULL;
    if (w.answer && body)
        w.answer(w.arg, status, body);
    else
        json_decref(body);
}

int km_ctx_rest_check(struct km_ctx *ctx, const char *what, int status, json_t **reply,
                      const char **detail)
{
    if (status >= 100 && status <= 599)
        return status;
    km_log(KM_LOG_ERROR, "%s: %s handler returned status %d", ctx->log_prefix, what,
           status);
    json_decref(*reply);
    *reply = NULL;
    *detail = "the plugin's handler failed";
    return 500;
}

/* What the core sends for a checked status, reply (stolen) and detail. */
static json_t *answer_body(int status, json_t *reply, const char *detail)
{
    if (reply)
        return reply;
    if (status < 400)
        return json_object();
    return json_pack("{s:s}", "detail", detail ? detail : "request failed");
}

static void pending_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct km_rest_pending *p = arg;
    char detail[320];

    snprintf(detail, sizeof detail, "%s did not answer %s within %g s",
             p->ctx->log_prefix, p->what, km_rest_deadline_s);
    km_log(KM_LOG_WARNING, "%s; answered 504", detail);
    pending_deliver(p, 504, json_pack("{s:s}", "detail", detail));
    /* the handle stays valid: the plugin's rest_finish will free it */
}

struct km_rest_pending *km_rest_pending_new(struct km_ctx *ctx,
                                            const struct km_rest_call *call,
                                            const struct km_rest_waiter *waiter)
{
    struct km_rest_pending *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->ctx = ctx;
    if (waiter)
        p->waiter = *waiter;
    p->in_handler = 1;
    snprintf(p->what, sizeof p->what, "%s %.140s", call->method, call->path);
    p->next = ctx->pendings;
    if (p->next)
        p->next->prev = p;
    ctx->pendings = p;
    return p;
}

int km_rest_pending_settle(struct km_rest_pending *p, int status, json_t **reply)
{
    struct timeval tv = to_timeval(km_rest_deadline_s);

    p->in_handler = 0;
    if (status != KM_REST_LATER) {
        pending_free(p); /* a direct answer wins over one given inside */
        return status;
    }
    if (p->early) {
        *reply = p->early_reply;
        p->early_reply = NULL;
        status = p->early_status;
        pending_free(p);
        return status;
    }
    p->deadline = evtimer_new(p->ctx->core->base, pending_deadline, p);
    if (!p->deadline || evtimer_add(p->deadline, &tv) != 0)
        km_log(KM_LOG_ERROR, "%s: %s: cannot arm the %g s deadline (out of memory?)",
               p->ctx->log_prefix, p->what, km_rest_deadline_s);
    return KM_LOADER_LATER;
}

void km_rest_pending_detach(struct km_rest_pending *p)
{
    if (p)
        p->waiter.answer = NULL;
}

static void host_rest_finish(struct km_ctx *ctx, struct km_rest_pending *p, int status,
                             json_t *reply, const char *detail)
{
    if (!p) {
        json_decref(reply); /* steals reply in every case */
        return;
    }
    status = km_ctx_rest_check(p->ctx, p->what, status, &reply, &detail);
    if (p->in_handler) {
        /* answered before the handler returned: settle() sends it */
        if (p->early) {
            km_log(KM_LOG_ERROR, "%s: %s answered twice; the second answer is dropped",
                   p->ctx->log_prefix, p->what);
            json_decref(reply);
            return;
        }
        p->early = 1;
        p->early_status = status;
        p->early_reply = answer_body(status, reply, detail);
        return;
    }
    pending_deliver(p, status, answer_body(status, reply, detail));
    pending_free(p);
}

/* Every answer the plugin still owes: 503, from the core. */
static void answer_pendings(struct km_ctx *ctx)
{
    char detail[320];

    while (ctx->pendings) {
        struct km_rest_pending *p = ctx->pendings;
        snprintf(detail, sizeof detail, "%s stopped before it answered %s",
                 ctx->log_prefix, p->what);
        pending_deliver(p, 503, json_pack("{s:s}", "detail", detail));
        pending_free(p);
    }
}

const char *km_ctx_log_prefix(const struct km_ctx *ctx)
{
    return ctx->log_prefix;
}

/* ---- the interface ------------------------------------------------------ */

const struct km_host km_host_iface = {
    .abi = KM_PLUGIN_ABI,
    .size = sizeof(struct km_host),
    .log = host_log,
    .strerror = km_strerror,
    .config_string = host_config_string,
    .config_int = host_config_int,
    .config_double = host_config_double,
    .config_bool = host_config_bool,
    .config_sections = host_config_sections,
    .state_dir = host_state_dir,
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
    .event_base = host_event_base,
    .rest_route = host_rest_route,
    .rest_param = host_rest_param,
    .rest_finish = host_rest_finish,
    .ws_open = host_ws_open,
    .ws_send_text = host_ws_send_text,
    .ws_close = host_ws_close,
};

/* ---- the context ------------------------------------------------------------ */

struct km_ctx *km_ctx_new(struct km_core *core, const char *name,
                          const struct km_plugin *desc, const struct km_conf_section *sec)
{
    struct km_ctx *ctx = calloc(1, sizeof *ctx);
    size_t prefix_len = strlen(name) + sizeof "plugin ";

    if (!ctx)
        return NULL;
    ctx->core = core;
    ctx->desc = desc;
    ctx->name = strdup(name);
    ctx->log_prefix = malloc(prefix_len);
    if (core->cfg && core->cfg->state_dir)
        ctx->state_dir = strdup(core->cfg->state_dir);
    for (const struct km_conf_key *k = desc->config; k && k->name; k++)
        ctx->n_values++;
    ctx->values = calloc(ctx->n_values + 1, sizeof *ctx->values);
    if (!ctx->name || !ctx->log_prefix || !ctx->values ||
        (core->cfg && core->cfg->state_dir && !ctx->state_dir) ||
        resolve_values(ctx, sec, ctx->values) < 0) {
        km_ctx_free(ctx);
        return NULL;
    }
    snprintf(ctx->log_prefix, prefix_len, "plugin %s", name);
    return ctx;
}

/* Keeps `old` alive until km_ctx_free: the plugin may hold it. */
static void retire(struct km_ctx *ctx, char *old)
{
    char **r;
    if (!old)
        return;
    r = realloc(ctx->retired, (ctx->n_retired + 1) * sizeof *r);
    if (!r)
        return; /* leaking one string beats a dangling one */
    ctx->retired = r;
    ctx->retired[ctx->n_retired++] = old;
}

void km_ctx_reconfigure(struct km_ctx *ctx, const struct km_conf_section *sec)
{
    char **fresh;

    free_kinds(ctx); /* borrowed from the old config */
    if (!sec || !ctx->desc || !(fresh = calloc(ctx->n_values + 1, sizeof *fresh)))
        return;
    if (resolve_values(ctx, sec, fresh) < 0) {
        for (size_t i = 0; i < ctx->n_values; i++)
            free(fresh[i]);
        free(fresh);
        return; /* ENOMEM: keep the old values */
    }
    /* Unchanged values keep their old pointer, so retired only grows with
       actual changes. */
    for (size_t i = 0; i < ctx->n_values; i++) {
        if (same_text(fresh[i], ctx->values[i])) {
            free(fresh[i]);
        } else {
            retire(ctx, ctx->values[i]);
            ctx->values[i] = fresh[i];
        }
    }
    free(fresh);
}

void km_ctx_release(struct km_ctx *ctx)
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
       timer is firing here. */
    while (ctx->timers)
        timer_destroy(ctx->timers);
    free_routes(ctx);
    answer_pendings(ctx);
    km_bus_unsubscribe_owner(ctx->core->bus, ctx);
    km_bus_disown(ctx->core->bus, ctx);
    free_kinds(ctx);
    ctx->desc = NULL; /* about to be unmapped */
}

void km_ctx_free(struct km_ctx *ctx)
{
    if (!ctx)
        return;
    for (size_t i = 0; ctx->values && i < ctx->n_values; i++)
        free(ctx->values[i]);
    free(ctx->values);
    for (size_t i = 0; i < ctx->n_retired; i++)
        free(ctx->retired[i]);
    free(ctx->retired);
    free_kinds(ctx);
    free_routes(ctx);
    answer_pendings(ctx); /* none after km_ctx_release; a ctx never released */
    free(ctx->state_dir);
    free(ctx->log_prefix);
    free(ctx->name);
    free(ctx);
}

const char *km_ctx_last_error(const struct km_ctx *ctx)
{
    return ctx ? ctx->last_error : "";
}
