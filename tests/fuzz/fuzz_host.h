/*
 * fuzz_host.h - a fake core (struct km_host) for the plugin harnesses of
 * tests/fuzz/ (docker_stats, kato_metrics, session_events, alert_history).
 *
 * The plugin runs unchanged: it declares its topics, adds timers, starts
 * HTTP requests and WebSocket streams through the host's verbs, and the
 * harness plays the network: fh_timers_fire() runs the timers that are
 * due (all of them: there is no clock), fh_http_answer() answers a request
 * with the fuzzer's bytes, the WebSocket callbacks are called directly.
 * publish validates the message against the topic's schema with the
 * core's own checker (km_schema_check, as the bus does) and keeps the
 * latest accepted and the latest refused message per topic, so a harness
 * can check what a plugin would have delivered.
 *
 * Header-only (static functions), included by one harness each. State is
 * one global, reset by fh_reset() at the start of every input (libFuzzer
 * runs millions of inputs in one process).
 */
#ifndef KM_FUZZ_HOST_H
#define KM_FUZZ_HOST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <katomon/plugin.h>

#include "bus.h" /* km_schema_check */
#include "fuzz.h"

#define FH_MAX    32 /* topics, timers, requests, subscriptions, streams per input */
#define FH_CONF   16 /* config overrides */
#define FH_ERRLEN 256

/* One declared topic and what was published on it. */
struct fh_topic {
    struct km_topic_def def; /* as declared (copied, as the bus does; .schema
                                borrowed) */
    json_t *last;            /* latest accepted message (owned), or NULL */
    unsigned accepted;       /* publishes that validated */
    unsigned refused;        /* publishes the schema refused (KM_ESCHEMA) */
    char err[FH_ERRLEN];     /* why the last refused one was */
};

/* One timer (no clock: fh_timers_fire runs them all). */
struct fh_timer {
    km_timer_cb cb; /* NULL: deleted or fired (one-shot) */
    void *arg;      /* its argument */
    unsigned flags; /* KM_TIMER_* */
};

/* One HTTP request in flight. */
struct fh_req {
    km_http_cb cb;                                /* NULL: answered or cancelled */
    void *arg;                                    /* its argument */
    int (*on_data)(const char *, size_t, void *); /* streaming, or NULL */
    char url[1024];                               /* what was asked */
};

/* One subscription by topic name. */
struct fh_sub {
    char topic[80]; /* name */
    km_msg_cb cb;   /* NULL: unsubscribed */
    void *arg;      /* its argument */
};

/* One outbound WebSocket. */
struct fh_ws {
    struct km_ws_client_opts opts; /* callbacks (url borrowed: not read) */
    int open;                      /* ws_open returned it and no ws_close since */
};

/* A message (fh_deliver makes them; msg_ref/msg_unref count). */
struct km_msg {
    json_t *json; /* its body (a reference) */
    int refs;     /* references held */
};

/* One REST route a plugin added. */
struct fh_route {
    char path[128]; /* as given */
    km_rest_cb cb;  /* handler */
    void *arg;      /* its argument */
};

/* A config key set by the harness (else the descriptor's default). */
struct fh_conf {
    const char *key;   /* name */
    const char *value; /* text, as in the file */
};

static struct {
    const struct km_plugin *plugin; /* the plugin under test */
    struct fh_topic topics[FH_MAX]; /* declared */
    int n_topics;                   /* used */
    struct fh_timer timers[FH_MAX]; /* added */
    int n_timers;                   /* used */
    struct fh_req reqs[FH_MAX];     /* started */
    int n_reqs;                     /* used */
    struct fh_sub subs[FH_MAX];     /* subscribed */
    int n_subs;                     /* used */
    struct fh_ws ws[FH_MAX];        /* opened */
    int n_ws;                       /* used */
    struct fh_route routes[FH_MAX]; /* rest_route */
    int n_routes;                   /* used */
    int finished;                   /* rest_finish calls */
    int finish_status;              /* the last one's status */
    json_t *finish_reply;           /* its reply (owned), or NULL */
    char finish_detail[1024];       /* its detail, or "" */
    struct fh_conf conf[FH_CONF];   /* overrides */
    int n_conf;                     /* used */
    const char *state_dir;          /* state_dir(), or NULL */
    unsigned logged;                /* log lines */
    unsigned invalid;               /* publishes of no object (NULL: a failed
                                       json_pack) or on no topic */
    /* called with every accepted message (borrowed), or NULL */
    void (*on_publish)(struct fh_topic *t, json_t *body);
} fh;

/* ASan's defaults for these harnesses (ASAN_OPTIONS still overrides them):
   a quarantine of freed blocks of 16 MB, not 256. An input here frees far
   less than that, so a use after free within an input, or of the inputs
   just before, is caught as before; cycling 256 MB through the allocator
   made most blocks fresh pages (a page fault and a fill each: 15-20% of
   the plugin harnesses' time) and most of their RSS. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "quarantine_size_mb=16";
}

/* FUZZ_VERBOSE set: print the log lines and publishes (read once; getenv
   per log line and publish showed in the profiles). */
static int fh_verbose(void)
{
    static int v = -1;
    if (v < 0)
        v = getenv("FUZZ_VERBOSE") != NULL;
    return v;
}

static void fh_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fh_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    (void)ctx;
    (void)level;
    va_start(ap, fmt); /* formatted, so a bad argument shows under the sanitizers */
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (fh_verbose())
        fprintf(stderr, "log: %s\n", line);
    fh.logged++;
}

static const char *fh_strerror(int err)
{
    (void)err;
    return "error";
}

/* The harness's value, else the descriptor's default (NULL: none). */
static const char *fh_conf_text(const char *key)
{
    for (int i = 0; i < fh.n_conf; i++)
        if (strcmp(fh.conf[i].key, key) == 0)
            return fh.conf[i].value;
    for (const struct km_conf_key *k = fh.plugin->config; k && k->name; k++)
        if (strcmp(k->name, key) == 0)
            return k->def;
    return NULL;
}

static const char *fh_config_string(struct km_ctx *ctx, const char *key)
{
    (void)ctx;
    return fh_conf_text(key);
}

static long long fh_config_int(struct km_ctx *ctx, const char *key)
{
    const char *v = fh_conf_text(key);
    (void)ctx;
    return v ? strtoll(v, NULL, 10) : 0;
}

static double fh_config_double(struct km_ctx *ctx, const char *key)
{
    const char *v = fh_conf_text(key);
    (void)ctx;
    return v ? strtod(v, NULL) : 0;
}

static int fh_config_bool(struct km_ctx *ctx, const char *key)
{
    const char *v = fh_conf_text(key);
    (void)ctx;
    return v && (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 ||
                 strcmp(v, "on") == 0 || strcmp(v, "1") == 0);
}

static const struct km_conf_section *const *
fh_config_sections(struct km_ctx *ctx, const char *kind, size_t *n)
{
    (void)ctx;
    (void)kind;
    *n = 0;
    return NULL;
}

static const char *fh_state_dir(struct km_ctx *ctx)
{
    (void)ctx;
    return fh.state_dir;
}

static struct km_topic *fh_topic_declare(struct km_ctx *ctx,
                                         const struct km_topic_def *def, int *err)
{
    (void)ctx;
    FUZZ_CHECK(fh.n_topics < FH_MAX);
    for (int i = 0; i < fh.n_topics; i++)
        if (strcmp(fh.topics[i].def.name, def->name) == 0) {
            *err = KM_EEXIST;
            return NULL;
        }
    fh.topics[fh.n_topics].def = *def;
    return (struct km_topic *)&fh.topics[fh.n_topics++];
}

static struct km_topic *fh_topic_find(struct km_ctx *ctx, const char *name)
{
    (void)ctx;
    for (int i = 0; i < fh.n_topics; i++)
        if (strcmp(fh.topics[i].def.name, name) == 0)
            return (struct km_topic *)&fh.topics[i];
    return NULL;
}

static const char *fh_topic_name(const struct km_topic *topic)
{
    return ((const struct fh_topic *)topic)->def.name;
}

/* As the bus: a JSON object that the topic's schema accepts, stolen always. */
static int fh_publish(struct km_ctx *ctx, struct km_topic *topic, json_t *body)
{
    struct fh_topic *t = (struct fh_topic *)topic;

    (void)ctx;
    if (!t || !json_is_object(body)) {
        fh.invalid++;
        json_decref(body);
        return KM_EINVAL;
    }
    if (t->def.schema &&
        km_schema_check(t->def.schema, body, t->err, sizeof t->err) < 0) {
        t->refused++;
        json_decref(body);
        return KM_ESCHEMA;
    }
    json_decref(t->last);
    t->last = body;
    t->accepted++;
    if (fh_verbose()) {
        char *text = json_dumps(body, JSON_COMPACT);
        fprintf(stderr, "publish %s: %s\n", t->def.name, text ? text : "?");
        free(text);
    }
    if (fh.on_publish)
        fh.on_publish(t, body);
    return KM_OK;
}

static struct km_sub *fh_subscribe(struct km_ctx *ctx, const char *topic, km_msg_cb cb,
                                   void *arg)
{
    (void)ctx;
    FUZZ_CHECK(fh.n_subs < FH_MAX);
    struct fh_sub *s = &fh.subs[fh.n_subs++];
    snprintf(s->topic, sizeof s->topic, "%s", topic);
    s->cb = cb;
    s->arg = arg;
    return (struct km_sub *)s;
}

static void fh_unsubscribe(struct km_ctx *ctx, struct km_sub *sub)
{
    (void)ctx;
    ((struct fh_sub *)sub)->cb = NULL;
}

static json_t *fh_msg_json(const struct km_msg *msg)
{
    return msg->json;
}

static struct km_msg *fh_msg_ref(struct km_msg *msg)
{
    msg->refs++;
    return msg;
}

static void fh_msg_unref(struct km_msg *msg)
{
    if (msg && --msg->refs == 0) {
        json_decref(msg->json);
        free(msg);
    }
}

static int fh_rest_route(struct km_ctx *ctx, const char *method, const char *path,
                         km_rest_cb cb, void *arg)
{
    (void)ctx;
    (void)method;
    FUZZ_CHECK(fh.n_routes < FH_MAX);
    struct fh_route *r = &fh.routes[fh.n_routes++];
    snprintf(r->path, sizeof r->path, "%s", path);
    r->cb = cb;
    r->arg = arg;
    return KM_OK;
}

static void fh_rest_finish(struct km_ctx *ctx, struct km_rest_pending *p, int status,
                           json_t *reply, const char *detail)
{
    (void)ctx;
    (void)p;
    fh.finished++;
    fh.finish_status = status;
    json_decref(fh.finish_reply);
    fh.finish_reply = reply;
    snprintf(fh.finish_detail, sizeof fh.finish_detail, "%s", detail ? detail : "");
}

static struct km_timer *fh_timer_add(struct km_ctx *ctx, double interval_s,
                                     unsigned flags, km_timer_cb cb, void *arg)
{
    (void)ctx;
    (void)interval_s;
    for (int i = 0; i < fh.n_timers; i++) /* reuse a spent slot */
        if (!fh.timers[i].cb) {
            fh.timers[i] = (struct fh_timer){cb, arg, flags};
            return (struct km_timer *)&fh.timers[i];
        }
    FUZZ_CHECK(fh.n_timers < FH_MAX);
    fh.timers[fh.n_timers] = (struct fh_timer){cb, arg, flags};
    return (struct km_timer *)&fh.timers[fh.n_timers++];
}

static void fh_timer_del(struct km_ctx *ctx, struct km_timer *timer)
{
    (void)ctx;
    if (timer)
        ((struct fh_timer *)timer)->cb = NULL;
}

/* Runs every one-shot timer once (those the callbacks add wait for the
   next call); repeating ones run too and stay. */
static __attribute__((unused)) void fh_timers_fire(void)
{
    int n = fh.n_timers;
    for (int i = 0; i < n; i++) {
        struct fh_timer t = fh.timers[i];
        if (!t.cb)
            continue;
        if (!(t.flags & KM_TIMER_REPEAT))
            fh.timers[i].cb = NULL;
        t.cb(t.arg);
    }
}

static struct km_http_req *fh_http_request(struct km_ctx *ctx,
                                           const struct km_http_request *req,
                                           km_http_cb cb, void *arg)
{
    (void)ctx;
    for (int i = 0; i <= fh.n_reqs && i < FH_MAX; i++)
        if (i == fh.n_reqs || !fh.reqs[i].cb) {
            struct fh_req *r = &fh.reqs[i];
            r->cb = cb;
            r->arg = arg;
            r->on_data = req->on_data;
            snprintf(r->url, sizeof r->url, "%s", req->url ? req->url : "");
            if (i == fh.n_reqs)
                fh.n_reqs++;
            return (struct km_http_req *)r;
        }
    return NULL; /* as the core out of memory: nothing started */
}

static void fh_http_cancel(struct km_ctx *ctx, struct km_http_req *req)
{
    (void)ctx;
    if (req)
        ((struct fh_req *)req)->cb = NULL;
}

/* The first request in flight whose url contains `part`, or NULL. */
static __attribute__((unused)) struct fh_req *fh_req_find(const char *part)
{
    for (int i = 0; i < fh.n_reqs; i++)
        if (fh.reqs[i].cb && strstr(fh.reqs[i].url, part))
            return &fh.reqs[i];
    return NULL;
}

/* Answers r with status and body (copied, NUL-terminated as the core's);
   error non-NULL: the request failed. */
static __attribute__((unused)) void fh_http_answer(struct fh_req *r, int status,
                                                   const void *body, size_t len,
                                                   const char *error)
{
    char *copy = malloc(len + 1);
    FUZZ_CHECK(copy != NULL);
    if (len)
        memcpy(copy, body, len);
    copy[len] = '\0';
    struct km_http_response resp = {.status = status,
                                    .error = error,
                                    .body = copy,
                                    .body_len = len,
                                    .content_type = "application/json"};
    km_http_cb cb = r->cb;
    void *arg = r->arg;
    r->cb = NULL; /* done before the callback, which may start another */
    cb(&resp, arg);
    free(copy);
}

static struct km_ws *fh_ws_open(struct km_ctx *ctx, const struct km_ws_client_opts *opts)
{
    (void)ctx;
    if (fh.n_ws >= FH_MAX)
        return NULL;
    fh.ws[fh.n_ws].opts = *opts;
    fh.ws[fh.n_ws].open = 1;
    return (struct km_ws *)&fh.ws[fh.n_ws++];
}

static int fh_ws_send_text(struct km_ctx *ctx, struct km_ws *ws, const char *text,
                           size_t len)
{
    (void)ctx;
    (void)text;
    (void)len;
    return ws && ((struct fh_ws *)ws)->open ? KM_OK : KM_EINVAL;
}

static void fh_ws_close(struct km_ctx *ctx, struct km_ws *ws)
{
    (void)ctx;
    if (ws)
        ((struct fh_ws *)ws)->open = 0;
}

/* The open stream last opened, or NULL. */
static __attribute__((unused)) struct fh_ws *fh_ws_last(void)
{
    for (int i = fh.n_ws; i-- > 0;)
        if (fh.ws[i].open)
            return &fh.ws[i];
    return NULL;
}

static const struct km_host fh_host = {
    .abi = KM_PLUGIN_ABI,
    .size = sizeof(struct km_host),
    .log = fh_log,
    .strerror = fh_strerror,
    .config_string = fh_config_string,
    .config_int = fh_config_int,
    .config_double = fh_config_double,
    .config_bool = fh_config_bool,
    .config_sections = fh_config_sections,
    .state_dir = fh_state_dir,
    .topic_declare = fh_topic_declare,
    .topic_find = fh_topic_find,
    .topic_name = fh_topic_name,
    .publish = fh_publish,
    .subscribe = fh_subscribe,
    .unsubscribe = fh_unsubscribe,
    .msg_json = fh_msg_json,
    .msg_ref = fh_msg_ref,
    .msg_unref = fh_msg_unref,
    .rest_route = fh_rest_route,
    .rest_finish = fh_rest_finish,
    .timer_add = fh_timer_add,
    .timer_del = fh_timer_del,
    .http_request = fh_http_request,
    .http_cancel = fh_http_cancel,
    .ws_open = fh_ws_open,
    .ws_send_text = fh_ws_send_text,
    .ws_close = fh_ws_close,
};

/* The fake core's context handle (the plugins only pass it back). */
#define FH_CTX ((struct km_ctx *)&fh)

/* Forgets the previous input (frees what publish kept) and sets the plugin. */
static __attribute__((unused)) void fh_reset(const struct km_plugin *plugin)
{
    for (int i = 0; i < fh.n_topics; i++)
        json_decref(fh.topics[i].last);
    json_decref(fh.finish_reply);
    memset(&fh, 0, sizeof fh);
    fh.plugin = plugin;
}

/* Sets a config key (strings borrowed: use literals). */
static __attribute__((unused)) void fh_set(const char *key, const char *value)
{
    FUZZ_CHECK(fh.n_conf < FH_CONF);
    fh.conf[fh.n_conf++] = (struct fh_conf){key, value};
}

/* Delivers json (borrowed) as a message to the subscribers of topic. */
static __attribute__((unused)) void fh_deliver(const char *topic, json_t *json)
{
    struct km_msg *m = malloc(sizeof *m);
    FUZZ_CHECK(m != NULL);
    m->json = json_incref(json);
    m->refs = 1;
    for (int i = 0; i < fh.n_subs; i++)
        if (fh.subs[i].cb && strcmp(fh.subs[i].topic, topic) == 0)
            fh.subs[i].cb(NULL, m, fh.subs[i].arg);
    fh_msg_unref(m);
}

/* The handler of route path (exactly as added), or NULL. */
static __attribute__((unused)) struct fh_route *fh_route(const char *path)
{
    for (int i = 0; i < fh.n_routes; i++)
        if (strcmp(fh.routes[i].path, path) == 0)
            return &fh.routes[i];
    return NULL;
}

/* The topic named name (it must have been declared). */
static __attribute__((unused)) struct fh_topic *fh_topic(const char *name)
{
    struct fh_topic *t = (struct fh_topic *)fh_topic_find(NULL, name);
    FUZZ_CHECKF(t != NULL, "topic %s not declared", name);
    return t;
}

#endif /* KM_FUZZ_HOST_H */
