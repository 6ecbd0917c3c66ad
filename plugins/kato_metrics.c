/*
 * kato_metrics - polls the KATO service's HTTP API.
 *
 * Every `interval` it asks KATO for GET /metrics, /health and
 * /sessions/count, concurrently and without blocking, and publishes:
 *
 *   metrics      the /metrics body as KATO sent it (sections optional: KATO's
 *                own error paths drop some), or {"error": "..."}
 *   sessions     {"active_count": N, "total_count": M}, N read from
 *                /sessions/count's active_session_count (the original
 *                dashboard read a key KATO never sends)
 *   kato_health  the /health body, or {"status": "error", "error": "..."}
 *
 * Each message carries "_source": {"healthy", "error", "fetched_at",
 * "failures"} so a consumer can tell fresh data from a failing source:
 * when a request fails (unreachable, timeout, non-200, bad JSON, a body of
 * the wrong shape) the topic gets the error shape, never the last good body.
 * A 200 body that carries KATO's own "error" member (the reduced body of
 * KATO's error paths, e.g. {"error", "timestamp", "processor_manager", ...})
 * is published as KATO sent it, but marked "_source": {"healthy": false,
 * "error": <KATO's text>}: its numbers are partial, not fresh figures.
 *
 * Series (GET /metrics, history; the *_metrics tables): from `metrics`,
 * katomon_kato_requests_total, _errors_total, _sessions_created_total,
 * _sessions_deleted_total, _session_operations_total (counters; they
 * restart with KATO), katomon_kato_error_rate_ratio,
 * _response_time_seconds, _sessions_active, _cpu_percent, _memory_percent,
 * _disk_percent, _requests_per_second, _errors_per_minute, _processors,
 * _processors_max (gauges), katomon_kato_database_operations_total{
 * database="clickhouse"|"qdrant"|"redis"} (the keys of "databases"); from
 * `sessions`,
 * katomon_sessions_active (total_count is a copy of
 * katomon_kato_sessions_created_total: not a series); from each of the
 * three, katomon_source_up{source="kato",topic=...} and
 * katomon_source_failures. The error shape holds no figures: the series
 * go stale (no longer exported) and source_up is 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/plugin.h>
#include <katomon/source.h>
#include <katomon/tls.h>
#include <katomon/util.h>

/* ---- config ---- */

static const struct km_conf_key kato_keys[] = {
    {"url", KM_CONF_STRING, "http://127.0.0.1:8000", 0, 0,
     "KATO base URL (http:// or https://)"},
    {"interval", KM_CONF_DOUBLE, "5", 0.1, 86400, "seconds between polls"},
    {"timeout", KM_CONF_DOUBLE, "3", 0.1, 600, "seconds before a request is given up"},
    KM_TLS_CONF_KEYS,
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- schemas (open objects: KATO may add fields) ---- */

static const struct km_field source_fields[] = KM_SOURCE_FIELDS;

static const struct km_field perf_fields[] = {
    KM_FIELD("total_requests", KM_NUMBER, 0),
    KM_FIELD("total_errors", KM_NUMBER, 0),
    KM_FIELD("error_rate", KM_NUMBER, 0),
    KM_FIELD("average_response_time", KM_NUMBER, 0),
    KM_FIELD_END,
};

static const struct km_field metrics_sessions_fields[] = {
    KM_FIELD("total_created", KM_NUMBER, 0),
    KM_FIELD("total_deleted", KM_NUMBER, 0),
    KM_FIELD("active", KM_NUMBER, 0),
    KM_FIELD("operations_total", KM_NUMBER, 0),
    KM_FIELD_END,
};

static const struct km_field resources_fields[] = {
    KM_FIELD("cpu_percent", KM_NUMBER, 0),
    KM_FIELD("memory_percent", KM_NUMBER, 0),
    KM_FIELD("disk_percent", KM_NUMBER, 0),
    KM_FIELD_END,
};

static const struct km_field rates_fields[] = {
    KM_FIELD("requests_per_second", KM_NUMBER, 0),
    KM_FIELD("requests_per_minute", KM_NUMBER, 0),
    KM_FIELD("errors_per_minute", KM_NUMBER, 0),
    KM_FIELD_END,
};

static const struct km_field processor_item = KM_FIELD(NULL, KM_OBJECT, 0);

static const struct km_field pm_fields[] = {
    KM_FIELD("total_processors", KM_NUMBER, 0),
    KM_FIELD("max_processors", KM_NUMBER, 0),
    KM_FIELD_ARRAY("processors", 0, &processor_item),
    KM_FIELD_END,
};

static const struct km_field metrics_schema[] = {
    KM_FIELD("timestamp", KM_NUMBER, 0),
    KM_FIELD("error", KM_STRING, 0),
    KM_FIELD_OBJECT("sessions", 0, metrics_sessions_fields),
    KM_FIELD_OBJECT("performance", 0, perf_fields),
    KM_FIELD_OBJECT("resources", 0, resources_fields),
    KM_FIELD("databases", KM_OBJECT, 0),
    KM_FIELD_OBJECT("processor_manager", 0, pm_fields),
    KM_FIELD_OBJECT("rates", 0, rates_fields),
    KM_FIELD_OBJECT("_source", KM_F_REQUIRED, source_fields),
    KM_FIELD_END,
};

static const struct km_field sessions_schema[] = {
    KM_FIELD("active_count", KM_INTEGER, KM_F_REQUIRED | KM_F_NULLABLE),
    KM_FIELD("total_count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("error", KM_STRING, 0),
    KM_FIELD_OBJECT("_source", KM_F_REQUIRED, source_fields),
    KM_FIELD_END,
};

static const struct km_field health_schema[] = {
    KM_FIELD("status", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("error", KM_STRING, 0),
    KM_FIELD_OBJECT("_source", KM_F_REQUIRED, source_fields),
    KM_FIELD_END,
};

/*
 * The series of the three topics (katomon/plugin.h): KATO's figures as
 * katomon_kato_*, in base units (error_rate is a 0..1 fraction,
 * average_response_time already seconds). Left out: the clock (timestamp),
 * requests_per_minute (requests_per_second times 60), the processors list,
 * eviction_ttl_seconds (a setting), each database's errors and
 * avg_response_time (no unit documented), and the reduced error body's
 * uptime_seconds and active_sessions (a copy of sessions.active); /health's
 * numbers (uptime, metrics_collected, last_collection, active_sessions)
 * are not series either: the health topic is for its status.
 */
static const struct km_metric metrics_metrics[] = {
    {"timestamp", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"sessions.total_created", "kato_sessions_created_total",
     "Sessions KATO created since it started", KM_METRIC_COUNTER, 0, NULL},
    {"sessions.total_deleted", "kato_sessions_deleted_total",
     "Sessions KATO deleted since it started", KM_METRIC_COUNTER, 0, NULL},
    {"sessions.active", "kato_sessions_active", "Sessions active in KATO now", 0, 0,
     NULL},
    {"sessions.operations_total", "kato_session_operations_total",
     "Session operations KATO served since it started", KM_METRIC_COUNTER, 0, NULL},
    {"performance.total_requests", "kato_requests_total",
     "Requests KATO served since it started", KM_METRIC_COUNTER, 0, NULL},
    {"performance.total_errors", "kato_errors_total",
     "Requests KATO answered with an error since it started", KM_METRIC_COUNTER, 0, NULL},
    {"performance.error_rate", "kato_error_rate_ratio",
     "Share of KATO's requests that failed, as KATO reports it, ratio (0-1)", 0, 0, NULL},
    {"performance.average_response_time", "kato_response_time_seconds",
     "Average time KATO took to answer a request, seconds", 0, 0, NULL},
    {"resources.cpu_percent", "kato_cpu_percent",
     "CPU used on KATO's machine, as KATO reports it, percent (0-100)", 0, 0, NULL},
    {"resources.memory_percent", "kato_memory_percent",
     "Memory used on KATO's machine, as KATO reports it, percent (0-100)", 0, 0, NULL},
    {"resources.disk_percent", "kato_disk_percent",
     "Disk space used on KATO's machine, as KATO reports it, percent (0-100)", 0, 0,
     NULL},
    {"rates.requests_per_second", "kato_requests_per_second",
     "Requests per second KATO served recently, as KATO reports it", 0, 0, NULL},
    {"rates.requests_per_minute", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"rates.errors_per_minute", "kato_errors_per_minute",
     "Failed requests per minute at KATO recently, as KATO reports it", 0, 0, NULL},
    {"processor_manager.total_processors", "kato_processors",
     "Processors KATO holds in memory now", 0, 0, NULL},
    {"processor_manager.max_processors", "kato_processors_max",
     "Processors KATO may hold in memory at most (its setting)", 0, 0, NULL},
    {"processor_manager.eviction_ttl_seconds", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"processor_manager.processors[]", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"databases{}", NULL, NULL, 0, 0, "database"},
    {"databases{}.operations", "kato_database_operations_total",
     "Operations KATO ran on this database since it started", KM_METRIC_COUNTER, 0, NULL},
    {"databases{}.errors", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"databases{}.avg_response_time", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"uptime_seconds", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"active_sessions", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"_source", "kato", NULL, 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static const struct km_metric sessions_metrics[] = {
    {"active_count", "sessions_active",
     "Sessions active in KATO (its /sessions/count active_session_count)", 0, 0, NULL},
    /* total_count is a copy of metrics' sessions.total_created
       (katomon_kato_sessions_created_total); "sessions_count" would also
       trip promtool, which reserves _count for histograms and summaries */
    {"total_count", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"_source", "kato", NULL, 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static const struct km_metric health_metrics[] = {
    {"uptime_seconds", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"metrics_collected", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"last_collection", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"active_sessions", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"issues", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"_source", "kato", NULL, 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/*
 * The topics init declares, one per polled endpoint (sources[i] feeds
 * kato_topics[i]); named in the descriptor too (.topics), so a katomon with
 * collect = false knows them without running the plugin.
 */
static const struct km_topic_def kato_topics[] = {
    {"metrics", KM_TOPIC_STATE, metrics_schema, 0, "KATO GET /metrics body",
     metrics_metrics},
    {"sessions", KM_TOPIC_STATE, sessions_schema, 0, "active and total KATO sessions",
     sessions_metrics},
    {"kato_health", KM_TOPIC_STATE, health_schema, 0, "KATO GET /health body",
     health_metrics},
    {NULL, 0, NULL, 0, NULL, NULL},
};

/* ---- state ---- */

/* One polled endpoint. */
struct kato_source {
    const char *path;               /* e.g. "/metrics" */
    const struct km_topic_def *def; /* the topic it feeds (kato_topics) */
    struct km_topic *topic;         /* declared at init */
    struct km_http_req *req;        /* request in flight, or NULL */
    unsigned failures;              /* consecutive failed polls */
    json_t *(*shape)(json_t *body); /* turns a good body into the topic's message
                                       (steals body); NULL: as is */
};

static const struct km_host *host;
static struct km_ctx *ctx;
static struct km_timer *timer;
static char *base_url;            /* url without a trailing slash */
static unsigned timeout_ms;       /* per request */
static struct km_tls_conf tls;    /* ca_file, tls_verify */
static double last_total_created; /* for sessions.total_count */

static json_t *shape_sessions(json_t *body);

static struct kato_source sources[] = {
    {"/metrics", &kato_topics[0], NULL, NULL, 0, NULL},
    {"/sessions/count", &kato_topics[1], NULL, NULL, 0, shape_sessions},
    {"/health", &kato_topics[2], NULL, NULL, 0, NULL},
};
#define N_SOURCES (sizeof sources / sizeof sources[0])
_Static_assert(N_SOURCES + 1 == sizeof kato_topics / sizeof kato_topics[0],
               "one topic per source, and the {NULL} end");

/* ---- messages ---- */

/* /sessions/count -> {"active_count","total_count"}; NULL when the key is absent. */
static json_t *shape_sessions(json_t *body)
{
    json_t *n = json_object_get(body, "active_session_count");
    json_t *out = NULL;

    if (json_is_integer(n))
        out = json_pack("{s:O, s:I}", "active_count", n, "total_count",
                        (json_int_t)last_total_created);
    json_decref(body);
    return out;
}

/* The error shape of each topic, as the original dashboard sent it. */
static json_t *error_message(struct kato_source *s, const char *error)
{
    json_t *m;

    if (strcmp(s->def->name, "kato_health") == 0)
        m = json_pack("{s:s, s:s}", "status", "error", "error", error);
    else if (strcmp(s->def->name, "sessions") == 0)
        m = json_pack("{s:n, s:I, s:s}", "active_count", "total_count",
                      (json_int_t)last_total_created, "error", error);
    else
        m = json_pack("{s:s}", "error", error);
    if (m)
        json_object_set_new(m, "_source", km_source_json(error, s->failures));
    return m;
}

static void publish_error(struct kato_source *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void publish_error(struct kato_source *s, const char *fmt, ...)
{
    char error[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(error, sizeof error, fmt, ap);
    va_end(ap);
    km_utf8_fix(error);
    s->failures++;
    /* say it once when the source goes bad, not every interval */
    if (s->failures == 1)
        host->log(ctx, KM_LOG_WARNING, "%s: %s (retrying every poll)", s->def->name,
                  error);
    host->publish(ctx, s->topic, error_message(s, error));
}

/* ---- polling ---- */

static void on_response(const struct km_http_response *resp, void *arg)
{
    struct kato_source *s = arg;
    json_error_t jerr;

    s->req = NULL;
    if (resp->error) {
        publish_error(s, "KATO unreachable: GET %s%s: %s", base_url, s->path,
                      resp->error);
        return;
    }
    if (resp->status != 200) {
        publish_error(s, "KATO answered HTTP %d to GET %s", resp->status, s->path);
        return;
    }
    json_t *body = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (!json_is_object(body)) {
        json_decref(body);
        publish_error(s, "KATO sent bad JSON for GET %s: %s", s->path,
                      body ? "not an object" : jerr.text);
        return;
    }
    if (s == &sources[0]) { /* remember sessions.total_created for the sessions topic */
        json_t *tc = json_object_get(json_object_get(body, "sessions"), "total_created");
        /* a count: below 0 or past json_int_t it is no figure (the cast to
           total_count would be undefined; found by tests/fuzz) */
        if (json_is_number(tc) && json_number_value(tc) >= 0 &&
            json_number_value(tc) < 9223372036854775808.0)
            last_total_created = json_number_value(tc);
    }
    if (s->shape && !(body = s->shape(body))) {
        publish_error(s, "KATO sent an unexpected shape for GET %s", s->path);
        return;
    }
    const char *kato_error = json_string_value(json_object_get(body, "error"));
    if (kato_error) { /* KATO's own error path: partial body, source unhealthy */
        char error[512];
        snprintf(error, sizeof error, "KATO reported an error for GET %s: %s", s->path,
                 kato_error);
        km_utf8_fix(error);
        s->failures++;
        if (s->failures == 1)
            host->log(ctx, KM_LOG_WARNING, "%s: %s", s->def->name, error);
        json_object_set_new(body, "_source", km_source_json(error, s->failures));
        if (host->publish(ctx, s->topic, body) == KM_ESCHEMA) {
            s->failures--; /* publish_error counts this poll */
            publish_error(s, "%s (and an unexpected shape, see the log)", error);
        }
        return;
    }
    json_object_set_new(body, "_source", km_source_json(NULL, 0));
    if (s->failures)
        host->log(ctx, KM_LOG_NOTICE, "%s: KATO answers again after %u failed polls",
                  s->def->name, s->failures);
    unsigned failures = s->failures;
    s->failures = 0;
    if (host->publish(ctx, s->topic, body) == KM_ESCHEMA) {
        s->failures = failures;
        publish_error(s, "KATO sent an unexpected shape for GET %s (see the log)",
                      s->path);
    }
}

static void poll_source(struct kato_source *s)
{
    char url[1024];

    if (s->req) /* KATO is slower than the interval: don't pile requests up */
        return;
    snprintf(url, sizeof url, "%s%s", base_url, s->path);
    struct km_http_request req = {.url = url,
                                  .timeout_ms = timeout_ms,
                                  .max_body = 4 << 20,
                                  .ca_file = tls.ca_file,
                                  .tls_insecure = tls.insecure};
    s->req = host->http_request(ctx, &req, on_response, s);
    if (!s->req)
        publish_error(s, "cannot request %s", url);
}

static void poll_all(void *arg)
{
    for (size_t i = 0; i < N_SOURCES; i++)
        poll_source(&sources[i]);
}

/* ---- init/shutdown ---- */

static int kato_init(struct km_ctx *c, const struct km_host *h)
{
    int err;

    host = h;
    ctx = c;
    last_total_created = 0; /* of the KATO this run polls */
    const char *url = host->config_string(ctx, "url");
    size_t scheme = !strncmp(url, "http://", 7)    ? 7
                    : !strncmp(url, "https://", 8) ? 8
                                                   : 0;
    if (!scheme) {
        host->log(ctx, KM_LOG_ERROR, "url '%s' must start with http:// or https://", url);
        return -1;
    }
    if (km_tls_conf_read(host, ctx, url, &tls) < 0)
        return -1;
    base_url = strdup(url);
    if (!base_url)
        return -1;
    size_t n = strlen(base_url);
    while (n > scheme && base_url[n - 1] == '/')
        base_url[--n] = '\0';
    timeout_ms = (unsigned)(host->config_double(ctx, "timeout") * 1000);

    for (size_t i = 0; i < N_SOURCES; i++) {
        struct kato_source *s = &sources[i];
        s->failures = 0;
        s->req = NULL;
        s->topic = host->topic_declare(ctx, s->def, &err);
        if (!s->topic) {
            host->log(ctx, KM_LOG_ERROR, "cannot declare topic %s: %s", s->def->name,
                      host->strerror(err));
            return -1;
        }
    }
    timer = host->timer_add(ctx, host->config_double(ctx, "interval"),
                            KM_TIMER_REPEAT | KM_TIMER_NOW, poll_all, NULL);
    return timer ? 0 : -1;
}

static void kato_shutdown(struct km_ctx *c)
{
    /* the core cancels our timer and requests itself */
    free(base_url);
    base_url = NULL;
}

KM_PLUGIN_DEFINE(.name = "kato_metrics", .version = "1.0",
                 .description = "polls KATO /metrics, /health and /sessions/count",
                 .config = kato_keys, .init = kato_init, .shutdown = kato_shutdown,
                 .topics = kato_topics);
