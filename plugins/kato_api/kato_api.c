/*
 * kato_api - the monitoring routes of the original KATO Dashboard that
 * need more than the bus: served from KATO's HTTP API and, for the
 * session listing, from KATO's Redis (read-only).
 *
 *   GET /api/v1/system/stats?minutes=N     KATO GET /stats?minutes=N (1..1440,
 *                                          default 10), cached per N
 *   GET /api/v1/system/cache-stats         KATO GET /cache/stats
 *   GET /api/v1/system/connection-pools    KATO GET /connection-pools
 *   GET /api/v1/system/distributed-stm     KATO GET /distributed-stm/stats
 *   GET /api/v1/analytics/overview         composed from the `metrics` topic
 *                                          (kato_metrics)
 *   GET /api/v1/sessions                   KATO's Redis: the active index
 *   GET /api/v1/sessions/statistics/overview
 *   GET /api/v1/sessions/{id}              KATO, else its Redis, else 404
 *   GET /api/v1/sessions/{id}/stm          KATO
 *
 * KATO bodies are passed through unchanged and reused for cache_ttl
 * seconds (KATO caches ~5 s itself). KATO down, slow, answering garbage or
 * an HTTP error: 502 (504 on a timeout) with a detail naming KATO's URL
 * and the cause. Without redis_url the session listing answers 503 saying
 * to set it. Every answer that needs KATO or Redis is given later
 * (KM_REST_LATER): the loop never waits.
 *
 * This file: config, init/shutdown, the routes, /analytics/overview and
 * the FastAPI-style validation of query parameters. See kato_api.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <katomon/util.h>

#include "kato_api.h"

struct ka_state ka;

/* ---- config ---- */

static const struct km_conf_key kato_api_keys[] = {
    {"url", KM_CONF_STRING, "http://127.0.0.1:8000", 0, 0, "KATO base URL (http only)"},
    /* below the core's 30 s deadline (KM_REST_DEADLINE_S), which would
       otherwise answer 504 first, naming the plugin instead of KATO */
    {"timeout", KM_CONF_DOUBLE, "5", 0.1, 25,
     "seconds before a KATO request is given up"},
    {"cache_ttl", KM_CONF_DOUBLE, "5", 0, 3600,
     "seconds a KATO answer or a session listing is reused (0: never)"},
    {"redis_url", KM_CONF_STRING, NULL, 0, 0,
     "KATO's Redis, redis://[:password@]host[:port][/db] (numeric host); unset: no "
     "session listing"},
    {"redis_timeout", KM_CONF_DOUBLE, "2", 0.1, 25,
     "seconds Redis may take to connect or to answer a command"},
    {"max_sessions", KM_CONF_INT, "100000", 1, 10000000,
     "index members read at most for one session listing"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- small helpers ---- */

double ka_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ka_finish_detail(struct km_rest_pending *p, int status, const char *text)
{
    ka.host->rest_finish(ka.ctx, p, status, json_pack("{s:s}", "detail", text), NULL);
}

/* ---- query validation (FastAPI's 422) ---- */

/* {"detail":[{type, loc: ["query", name], msg, input, ctx?}]} (new). */
static json_t *ka_422(const char *type, const char *name, const char *msg,
                      const char *input, json_t *ctx)
{
    json_t *item = json_pack("{s:s, s:[s,s], s:s, s:s}", "type", type, "loc", "query",
                             name, "msg", msg, "input", input);
    if (item && ctx)
        json_object_set(item, "ctx", ctx);
    json_decref(ctx);
    return json_pack("{s:[o]}", "detail", item);
}

int ka_query_has(const char *query, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = query; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == '=' || p[n] == '&' || p[n] == '\0'))
            return 1;
    return 0;
}

int ka_query_int(const struct km_rest_call *call, const char *name, long long def,
                 long long min, long long max, long long *out, json_t **reply)
{
    char buf[64], msg[96];
    const char *v = ka.host->rest_param(call, name, buf, sizeof buf);
    char *end;
    long long n;

    *out = def;
    if (!v) {
        /* absent; or too long for any integer in range, or with a NUL byte */
        if (!ka_query_has(call->query, name))
            return 0;
        *reply = ka_422("int_parsing", name,
                        "Input should be a valid integer, unable to parse string as an "
                        "integer",
                        "(too long)", NULL);
        return -1;
    }
    errno = 0;
    n = strtoll(v, &end, 10);
    if (end == v || *end || (*v != '-' && *v != '+' && (*v < '0' || *v > '9'))) {
        *reply = ka_422("int_parsing", name,
                        "Input should be a valid integer, unable to parse string as an "
                        "integer",
                        v, NULL);
        return -1;
    }
    if (n < min || (errno == ERANGE && n == LLONG_MIN)) {
        snprintf(msg, sizeof msg, "Input should be greater than or equal to %lld", min);
        *reply =
            ka_422("greater_than_equal", name, msg, v, json_pack("{s:I}", "ge", min));
        return -1;
    }
    if (n > max || errno == ERANGE) {
        snprintf(msg, sizeof msg, "Input should be less than or equal to %lld", max);
        *reply = ka_422("less_than_equal", name, msg, v, json_pack("{s:I}", "le", max));
        return -1;
    }
    *out = n;
    return 0;
}

/* ---- GET /api/v1/system/... ---- */

static int rest_stats(const struct km_rest_call *call, json_t **reply,
                      const char **detail, void *arg)
{
    long long minutes;
    char path[64];

    if (ka_query_int(call, "minutes", 10, 1, 1440, &minutes, reply) < 0)
        return 422;
    snprintf(path, sizeof path, "/stats?minutes=%lld", minutes);
    return ka_passthrough(call, path, reply, detail);
}

/* /system/cache-stats, /connection-pools, /distributed-stm: arg is KATO's path. */
static int rest_system(const struct km_rest_call *call, json_t **reply,
                       const char **detail, void *arg)
{
    return ka_passthrough(call, arg, reply, detail);
}

/* ---- GET /api/v1/analytics/overview ---- */

static void on_metrics(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    if (ka.metrics)
        ka.host->msg_unref(ka.metrics);
    ka.metrics = ka.host->msg_ref(msg);
}

/* metrics.SECTION, or a new empty object. New reference. */
static json_t *section_or_empty(json_t *m, const char *name)
{
    json_t *v = json_object_get(m, name);
    return json_is_object(v) ? json_deep_copy(v) : json_object();
}

/* {"total", "processor_ids"} from metrics.processor_manager (new). */
static json_t *overview_processors(json_t *m)
{
    json_t *pm = json_object_get(m, "processor_manager");
    json_t *list = json_object_get(pm, "processors"), *ids = json_array(), *p;
    json_t *total = json_object_get(pm, "total_processors");
    size_t i;

    json_array_foreach(list, i, p)
    {
        json_t *id = json_object_get(p, "processor_id");
        if (json_is_string(id))
            json_array_append(ids, id);
    }
    return json_pack("{s:I, s:o}", "total",
                     json_is_integer(total) ? json_integer_value(total)
                                            : (json_int_t)json_array_size(ids),
                     "processor_ids", ids);
}

static json_t *number_or_zero(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_incref(v) : json_integer(0);
}

static int rest_overview(const struct km_rest_call *call, json_t **reply,
                         const char **detail, void *arg)
{
    json_t *m = ka.metrics ? ka.host->msg_json(ka.metrics) : NULL;
    const char *err = json_string_value(json_object_get(m, "error"));
    json_t *sessions;
    static char why[600];

    if (!m) {
        *detail = ka.host->topic_find(ka.ctx, "metrics")
                      ? "no KATO metrics yet (topic metrics has no value; kato_metrics "
                        "polls KATO every interval)"
                      : "no KATO metrics: topic metrics does not exist (enable [plugin "
                        "kato_metrics] in katomon.conf)";
        return 503;
    }
    if (err) {
        /* kato_metrics' error shape, or KATO's own reduced error body */
        snprintf(why, sizeof why, "no usable KATO metrics: %.500s", err);
        km_utf8_fix(why); /* %.500s may cut inside a character */
        *detail = why;
        return 502;
    }
    sessions = json_object_get(m, "sessions");
    /* processors: KATO's in-memory processor manager (the original read
       ClickHouse); vector collections and Redis figures come from
       databases katomon does not read: zero / empty / "unknown" */
    *reply = json_pack(
        "{s:O, s:{s:o, s:o}, s:o, s:{s:i, s:[]}, s:o, s:o, s:{s:i, s:s}}", "timestamp",
        json_object_get(m, "timestamp") ?: json_null(), "sessions", "active",
        number_or_zero(sessions, "active"), "total_created",
        number_or_zero(sessions, "total_created"), "processors", overview_processors(m),
        "vector_collections", "total", 0, "collections", "performance",
        section_or_empty(m, "performance"), "resources", section_or_empty(m, "resources"),
        "redis", "connected_clients", 0, "used_memory_human", "unknown");
    return *reply ? 200 : 500;
}

/* ---- init/shutdown ---- */

static int read_config(void)
{
    const char *url = ka.host->config_string(ka.ctx, "url");
    const char *rurl = ka.host->config_string(ka.ctx, "redis_url");
    char err[300];

    if (strncmp(url, "http://", 7) != 0 || !url[7]) {
        ka.host->log(ka.ctx, KM_LOG_ERROR, "url '%s' must start with http://", url);
        return -1;
    }
    if (!(ka.base_url = strdup(url)))
        return -1;
    for (size_t n = strlen(ka.base_url); n > 7 && ka.base_url[n - 1] == '/';)
        ka.base_url[--n] = '\0';
    ka.timeout_ms = (unsigned)(ka.host->config_double(ka.ctx, "timeout") * 1000);
    ka.cache_ttl = ka.host->config_double(ka.ctx, "cache_ttl");
    ka.max_sessions = (size_t)ka.host->config_int(ka.ctx, "max_sessions");
    if (rurl && *rurl &&
        !(ka.redis = ka_redis_new(rurl, ka.host->config_double(ka.ctx, "redis_timeout"),
                                  err, sizeof err))) {
        ka.host->log(ka.ctx, KM_LOG_ERROR, "redis_url: %s", err);
        return -1;
    }
    return 0;
}

/* The routes; any failure is logged. */
static int add_routes(void)
{
    static const struct {
        const char *path;
        km_rest_cb cb;
        const char *arg;
    } routes[] = {
        {"/api/v1/system/stats", rest_stats, NULL},
        {"/api/v1/system/cache-stats", rest_system, "/cache/stats"},
        {"/api/v1/system/connection-pools", rest_system, "/connection-pools"},
        {"/api/v1/system/distributed-stm", rest_system, "/distributed-stm/stats"},
        {"/api/v1/analytics/overview", rest_overview, NULL},
        {"/api/v1/sessions", ka_sessions_list, NULL},
        {"/api/v1/sessions/statistics/overview", ka_sessions_stats, NULL},
        /* GET /api/v1/sessions/count stays the core's: exact routes win */
        {"/api/v1/sessions/*", ka_session_one, NULL},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = ka.host->rest_route(ka.ctx, "GET", routes[i].path, routes[i].cb,
                                     (void *)routes[i].arg);
        if (rc != KM_OK) {
            ka.host->log(ka.ctx, KM_LOG_ERROR, "cannot serve GET %s: %s", routes[i].path,
                         ka.host->strerror(rc));
            return -1;
        }
    }
    return 0;
}

static void release_all(void)
{
    ka.stopping = 1;
    /* what is in flight ends through its callbacks (which answer 503 and
       free), KATO's requests first, then Redis's; they need the rest */
    ka_kato_shutdown();
    ka_redis_free(ka.redis);
    ka_sessions_free(ka.sessions);
    ka_cache_free(ka.cache);
    if (ka.metrics)
        ka.host->msg_unref(ka.metrics);
    free(ka.base_url);
    ka = (struct ka_state){0};
}

static int kato_api_init(struct km_ctx *c, const struct km_host *h)
{
    ka = (struct ka_state){.host = h, .ctx = c};
    if (!KM_HOST_HAS(h, rest_finish)) {
        h->log(c, KM_LOG_ERROR, "this katomon has no rest_finish (too old); update it");
        return -1;
    }
    if (read_config() < 0 || add_routes() < 0) {
        release_all(); /* the core drops our routes; the rest is ours */
        return -1;
    }
    if (!(ka.cache = ka_cache_new()) || !(ka.sessions = ka_sessions_new()) ||
        !h->subscribe(c, "metrics", on_metrics, NULL)) {
        h->log(c, KM_LOG_ERROR, "out of memory");
        release_all();
        return -1;
    }
    h->log(c, KM_LOG_INFO, "KATO at %s, sessions from %s", ka.base_url,
           ka.redis ? ka_redis_where(ka.redis) : "nowhere (redis_url is not set)");
    return 0;
}

static void kato_api_shutdown(struct km_ctx *c)
{
    /* the core cancels our HTTP requests and answers 503 to what is pending */
    release_all();
}

KM_PLUGIN_DEFINE(.name = "kato_api", .version = "1.0",
                 .description = "KATO's /stats, cache, pools, STM and sessions (from its "
                                "Redis) for the original dashboard's REST routes",
                 .config = kato_api_keys, .init = kato_api_init,
                 .shutdown = kato_api_shutdown);
