/*
 * test_good.c - a well-behaved plugin for tests/unit/check_loader.
 *
 * Declares the state topic `test` and the event topic `test_events`,
 * publishes {"greeting": G, "count": N, "self_seen": S, "sections": P}
 * (P: [plugin] sections in the file, via config_sections) on `test` at init
 * and on every tick of a timer (`interval` seconds), and {"kind": "tick",
 * "n": N} on `test_events` per tick. It subscribes to its own `test` topic
 * and counts what it sees (self_seen), which exercises subscribe from a
 * plugin and delivery in the middle of publish. When `url` is set it
 * starts one HTTP request at init and reports the outcome on `test_events`
 * as {"kind": "http", "status": S, "error": E|null}. It serves
 * GET /api/v1/test/echo?msg=M ({"msg": M, "greeting": G}) and
 * POST /api/v1/test/broken (returns a bogus status). reload re-reads
 * `greeting` and publishes again; shutdown logs "shutdown".
 *
 * Prefix routes: GET /api/v1/test/<anything> answers {"route": "test",
 * "path": P}, GET /api/v1/test/deep/<anything> {"route": "deep", ...}.
 * Later answers (KM_REST_LATER): GET /api/v1/test/later/MS answers
 * {"later": "MS"} after MS milliseconds; .../later/now answers with
 * rest_finish from inside the handler; .../later/never is held (up to 16)
 * until GET /api/v1/test/flush answers every held one with 200 (late:
 * after the core's deadline, only freed) and says how many.
 *
 * The greeting pointer from config_string is kept across reloads on
 * purpose: the ABI says it stays valid until shutdown, and the test's
 * sanitizer run checks exactly that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/plugin.h>

static const struct km_conf_key config_keys[] = {
    {"interval", KM_CONF_DOUBLE, "1", 0.01, 3600, "seconds between ticks"},
    {"greeting", KM_CONF_STRING, "hello", 0, 0, "text of the greeting field"},
    {"url", KM_CONF_STRING, NULL, 0, 0, "when set: one HTTP request at init"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_field test_fields[] = {
    KM_FIELD("greeting", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("self_seen", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("sections", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_field event_fields[] = {
    KM_FIELD("kind", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("n", KM_INTEGER, 0),
    KM_FIELD("status", KM_INTEGER, 0),
    KM_FIELD("error", KM_STRING, KM_F_NULLABLE),
    KM_FIELD_END,
};

/* Everything the plugin keeps; reset at init (the object may be reused). */
static struct {
    const struct km_host *host;       /* the core's interface */
    struct km_ctx *ctx;               /* our context */
    struct km_topic *state;           /* `test` */
    struct km_topic *events;          /* `test_events` */
    struct km_timer *tick;            /* the interval timer */
    const char *greeting;             /* borrowed from the core until shutdown */
    long long count;                  /* state messages published */
    long long self_seen;              /* `test` messages our subscription saw */
    long long ticks;                  /* timer fires */
    size_t sections;                  /* [plugin] sections in the config */
    struct km_rest_pending *held[16]; /* .../later/never requests, unanswered */
    int n_held;                       /* entries in held */
    struct later *laters;             /* .../later/MS requests waiting */
} g;

/* One .../later/MS request waiting for its timer. */
struct later {
    struct km_rest_pending *p; /* the core's handle */
    char tail[32];             /* MS as written */
    struct later *next;        /* g.laters */
};

static void on_self(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    g.self_seen++;
}

static int publish_state(void)
{
    g.count++;
    return g.host->publish(g.ctx, g.state,
                           json_pack("{s:s, s:I, s:I, s:I}", "greeting", g.greeting,
                                     "count", (json_int_t)g.count, "self_seen",
                                     (json_int_t)g.self_seen, "sections",
                                     (json_int_t)g.sections));
}

static void on_tick(void *arg)
{
    g.ticks++;
    g.host->publish(g.ctx, g.events,
                    json_pack("{s:s, s:I}", "kind", "tick", "n", (json_int_t)g.ticks));
    publish_state();
}

static void on_http(const struct km_http_response *resp, void *arg)
{
    g.host->publish(g.ctx, g.events,
                    json_pack("{s:s, s:i, s:s?}", "kind", "http", "status", resp->status,
                              "error", resp->error));
}

/* GET /api/v1/test/echo?msg=...: {"msg": msg or null, "greeting": G}. */
static int on_echo(const struct km_rest_call *call, json_t **reply, const char **detail,
                   void *arg)
{
    char msg[64];
    const char *m = g.host->rest_param(call, "msg", msg, sizeof msg);
    *reply = json_pack("{s:s?, s:s}", "msg", m, "greeting", g.greeting);
    return 200;
}

/* POST /api/v1/test/broken: a handler returning a status that is not one. */
static int on_broken(const struct km_rest_call *call, json_t **reply, const char **detail,
                     void *arg)
{
    *reply = json_object(); /* must be released by the core */
    return 7;
}

/* GET /api/v1/test/... and /api/v1/test/deep/...: which route, which path. */
static int on_prefix(const struct km_rest_call *call, json_t **reply, const char **detail,
                     void *arg)
{
    *reply = json_pack("{s:s, s:s}", "route", (const char *)arg, "path", call->path);
    return 200;
}

static void on_later_timer(void *arg)
{
    struct later *l = arg, **pp = &g.laters;
    while (*pp != l)
        pp = &(*pp)->next;
    *pp = l->next;
    g.host->rest_finish(g.ctx, l->p, 200, json_pack("{s:s}", "later", l->tail), NULL);
    free(l);
}

/* GET /api/v1/test/later/{MS|now|never}. */
static int on_later(const struct km_rest_call *call, json_t **reply, const char **detail,
                    void *arg)
{
    const char *tail = call->path + sizeof "/api/v1/test/later/" - 1;
    struct later *l;

    if (strcmp(tail, "now") == 0) {
        g.host->rest_finish(g.ctx, call->pending, 201, json_pack("{s:b}", "inside", 1),
                            NULL);
        return KM_REST_LATER;
    }
    if (strcmp(tail, "never") == 0) {
        if (g.n_held == 16) {
            *detail = "16 held already";
            return 429;
        }
        g.held[g.n_held++] = call->pending;
        return KM_REST_LATER;
    }
    if (strlen(tail) >= sizeof l->tail || !(l = calloc(1, sizeof *l)))
        return 400;
    l->p = call->pending;
    snprintf(l->tail, sizeof l->tail, "%s", tail);
    if (!g.host->timer_add(g.ctx, atof(tail) / 1000.0, 0, on_later_timer, l)) {
        free(l);
        return 500;
    }
    l->next = g.laters;
    g.laters = l;
    return KM_REST_LATER;
}

/* GET /api/v1/test/flush: answers the held requests (late). */
static int on_flush(const struct km_rest_call *call, json_t **reply, const char **detail,
                    void *arg)
{
    int n = g.n_held;
    for (int i = 0; i < n; i++)
        g.host->rest_finish(g.ctx, g.held[i], 200, json_pack("{s:b}", "late", 1), NULL);
    g.n_held = 0;
    *reply = json_pack("{s:i}", "flushed", n);
    return 200;
}

static int test_init(struct km_ctx *ctx, const struct km_host *host)
{
    const struct km_topic_def state_def = {"test", KM_TOPIC_STATE,      test_fields,
                                           0,      "test_good's state", NULL};
    const struct km_topic_def events_def = {
        "test_events", KM_TOPIC_EVENT, event_fields, 16, "test_good's ticks", NULL};
    const char *url;
    int err = 0;

    g = (__typeof__(g)){.host = host, .ctx = ctx};
    g.greeting = host->config_string(ctx, "greeting");
    host->config_sections(ctx, "plugin", &g.sections);
    if (!(g.state = host->topic_declare(ctx, &state_def, &err)) ||
        !(g.events = host->topic_declare(ctx, &events_def, &err))) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topics: %s", host->strerror(err));
        return -1;
    }
    if (!host->subscribe(ctx, "test", on_self, NULL))
        return -1;
    if (host->rest_route(ctx, "GET", "/api/v1/test/echo", on_echo, NULL) != KM_OK ||
        host->rest_route(ctx, "POST", "/api/v1/test/broken", on_broken, NULL) != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/*", on_prefix, "test") != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/deep/*", on_prefix, "deep") != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/later/*", on_later, NULL) != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/flush", on_flush, NULL) != KM_OK ||
        host->rest_route(ctx, "GET", "/api/v1/test/*", on_prefix, "test") != KM_EEXIST) {
        host->log(ctx, KM_LOG_ERROR, "cannot add REST routes");
        return -1;
    }
    g.tick = host->timer_add(ctx, host->config_double(ctx, "interval"), KM_TIMER_REPEAT,
                             on_tick, NULL);
    if (!g.tick) {
        host->log(ctx, KM_LOG_ERROR, "cannot add a timer");
        return -1;
    }
    if ((url = host->config_string(ctx, "url"))) {
        struct km_http_request req = {.url = url, .timeout_ms = 5000};
        if (!host->http_request(ctx, &req, on_http, NULL))
            host->log(ctx, KM_LOG_WARNING, "http request to %s not started", url);
    }
    return publish_state() == KM_OK ? 0 : -1;
}

static int test_reload(struct km_ctx *ctx)
{
    g.greeting = g.host->config_string(ctx, "greeting");
    g.host->config_sections(ctx, "plugin", &g.sections);
    g.host->log(ctx, KM_LOG_INFO, "reloaded");
    return publish_state() == KM_OK ? 0 : -1;
}

static void test_shutdown(struct km_ctx *ctx)
{
    /* Deleting our own timer is allowed; the core frees the rest. */
    g.host->timer_del(ctx, g.tick);
    /* requests still waiting: the core answers them 503 */
    while (g.laters) {
        struct later *l = g.laters;
        g.laters = l->next;
        free(l);
    }
    g.host->log(ctx, KM_LOG_INFO, "shutdown");
}

KM_PLUGIN_DEFINE(.name = "test_good", .version = "1.0",
                 .description = "loader test: publishes a known message",
                 .config = config_keys, .init = test_init, .reload = test_reload,
                 .shutdown = test_shutdown);
