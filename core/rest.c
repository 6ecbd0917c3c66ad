/*
 * rest.c - the REST API (see rest.h). Every handler reads the bus and
 * returns JSON; nothing here blocks or performs I/O.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/util.h>

#include "bus.h"
#include "loader.h"
#include "url.h"
#include "rest.h"
#include "rest_history.h"
#include "ws.h"

json_t *km_rest_detail(const char *text)
{
    return json_pack("{s:s}", "detail", text);
}

/*
 * The host a request names with ?host=NAME (query borrowed, NULL or "" is
 * fine): *h gets its index, 0 (this host) when none or an empty one is
 * named. 0, or 404 with *body {"detail":"no host NAME"}. Only "host" is
 * read; other parameters are not this function's business.
 */
static int km_rest_host(struct km_core *core, const char *query, int *h, json_t **body)
{
    const char *p = query ? query : "";
    char detail[KM_HOST_NAME_MAX + 64];

    *h = 0;
    while (*p && *p != '#') {
        size_t n = strcspn(p, "&#");
        const char *eq = memchr(p, '=', n);
        char key[8], val[KM_HOST_NAME_MAX + 2];
        long vl;
        if (eq &&
            km_pct_decode(p, (size_t)(eq - p), key, sizeof key, KM_PCT_QUERY) == 4 &&
            strcmp(key, "host") == 0) {
            vl = km_pct_decode(eq + 1, n - (size_t)(eq + 1 - p), val, sizeof val,
                               KM_PCT_QUERY);
            if (vl == 0) {
                *h = 0; /* ?host= : the default */
            } else if (vl < 0 || (*h = km_bus_host_find(core->bus, val)) < 0) {
                /* a name longer than any host's is shown cut, with "..." */
                snprintf(detail, sizeof detail, "no host %s%s", val,
                         vl == KM_PCT_ETOOLONG ? "..." : "");
                *body = km_rest_detail(detail);
                *h = 0;
                return 404;
            }
        }
        p += n + (p[n] == '&');
    }
    return 0;
}

/* Latest body of a state topic from host h (borrowed), or NULL with a 503
   detail. */
static json_t *km_rest_latest(struct km_core *core, const char *topic, int h,
                              json_t **body, int *status)
{
    struct km_topic *t = km_bus_find(core->bus, topic);
    struct km_msg *m = t ? km_topic_latest_host(t, h) : NULL;
    char detail[160 + KM_HOST_NAME_MAX];

    if (m)
        return km_msg_json(m);
    if (t && h)
        snprintf(detail, sizeof detail, "no data yet on topic '%s' from host %s", topic,
                 km_bus_host_name(core->bus, h));
    else
        snprintf(detail, sizeof detail,
                 t ? "no data yet on topic '%s'"
                   : "no topic '%s': no plugin publishes it (is it enabled in "
                     "katomon.conf?)",
                 topic);
    *body = km_rest_detail(detail);
    *status = 503;
    return NULL;
}

/* 404 for GET /api/v1/topics/NAME/latest of a topic nobody declared. */
static int km_rest_no_topic(const char *name, json_t **body)
{
    char detail[160];
    snprintf(detail, sizeof detail, "no topic '%.64s' (GET /api/v1/topics lists them)",
             name);
    *body = km_rest_detail(detail);
    return 404;
}

static int km_rest_health(json_t **body)
{
    *body = json_pack("{s:s, s:s, s:s}", "status", "healthy", "service", PACKAGE_NAME,
                      "version", PACKAGE_VERSION);
    return 200;
}

/* GET /system/metrics, /system/container-stats: the latest body as is. */
static int km_rest_state(struct km_core *core, const char *topic, int h, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, topic, h, body, &status);
    if (v)
        *body = json_incref(v);
    return status;
}

static int km_rest_container(struct km_core *core, const char *name, int h, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, KM_REST_TOPIC_CONTAINERS, h, body, &status);
    json_t *list, *c;
    size_t i;
    char detail[200];

    if (!v)
        return status;
    list = json_object_get(v, "containers");
    json_array_foreach(list, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0) {
            *body = json_incref(c);
            return 200;
        }
    }
    snprintf(detail, sizeof detail, "Container '%.128s' not found", name);
    *body = km_rest_detail(detail);
    return 404;
}

static int km_rest_sessions_count(struct km_core *core, int h, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, KM_REST_TOPIC_SESSIONS, h, body, &status);
    json_t *n;

    if (!v)
        return status;
    /* the sessions topic carries active_count (the realtime_update shape);
       KATO's own /sessions/count says active_session_count: take either */
    n = json_object_get(v, "active_session_count");
    if (!json_is_integer(n))
        n = json_object_get(v, "active_count");
    if (!json_is_integer(n)) {
        /* the source is down: kato_metrics publishes {"active_count": null,
           "error": "..."}; pass the reason on */
        const char *why = json_string_value(json_object_get(v, "error"));
        char detail[300];
        snprintf(detail, sizeof detail, "no session count from KATO: %.250s",
                 why ? why : "the sessions topic has no active_count");
        *body = km_rest_detail(detail);
        return 502;
    }
    *body = json_pack("{s:O}", "active_session_count", n);
    return 200;
}

static int km_rest_kato_health(struct km_core *core, int h, json_t **body)
{
    struct km_topic *t = km_bus_find(core->bus, KM_REST_TOPIC_KATO_HEALTH);
    struct km_msg *m = t ? km_topic_latest_host(t, h) : NULL;

    /* the original answers 200 with a status "error" body, not an HTTP error */
    if (m)
        *body = json_incref(km_msg_json(m));
    else
        *body = json_pack("{s:s, s:s}", "status", "error", "error",
                          t ? "no KATO health data yet"
                            : "no KATO health source (topic kato_health) is configured");
    return 200;
}

/* GET /api/v1/hosts: the core's hosts topic (core/fleet.c). */
static int km_rest_hosts(struct km_core *core, int h, json_t **body)
{
    if (!km_bus_find(core->bus, KM_REST_TOPIC_HOSTS)) {
        *body = km_rest_detail("no hosts topic");
        return 503;
    }
    return km_rest_state(core, KM_REST_TOPIC_HOSTS, h, body);
}

/* A topic's remote hosts with something on it: {"B":{"epoch",
   "last_seq","oldest_seq"} (event) or {"epoch","has_value":true} (state)}. */
static json_t *km_rest_topic_hosts(struct km_bus *bus, struct km_topic *t)
{
    unsigned nh = km_bus_host_count(bus);
    json_t *o = json_object();

    for (unsigned h = 1; o && h < nh; h++) {
        const char *name = km_bus_host_name(bus, (int)h);
        json_int_t epoch = (json_int_t)km_topic_epoch_host(t, (int)h);
        if (km_topic_kind(t) == KM_TOPIC_EVENT) {
            uint64_t last = km_topic_last_seq_host(t, (int)h);
            if (last &&
                json_object_set_new(
                    o, name,
                    json_pack("{s:I, s:I, s:I}", "epoch", epoch, "last_seq",
                              (json_int_t)last, "oldest_seq",
                              (json_int_t)km_topic_oldest_seq_host(t, (int)h))) != 0)
                goto nomem;
        } else if (km_topic_latest_host(t, (int)h) &&
                   json_object_set_new(
                       o, name,
                       json_pack("{s:I, s:b}", "epoch", epoch, "has_value", 1)) != 0) {
            goto nomem;
        }
    }
    return o;
nomem:
    /* NULL: the answer fails (500) rather than list a host short */
    json_decref(o);
    return NULL;
}

static void km_rest_topic_each(struct km_topic *t, void *arg)
{
    struct km_bus *bus = ((void **)arg)[0];
    json_t *list = ((void **)arg)[1];
    int *failed = ((void **)arg)[2];
    enum km_topic_kind kind = km_topic_kind(t);
    const char *desc = km_topic_description(t);
    json_t *type = km_topic_schema_json(t);

    /* a topic missing from the list (ENOMEM) fails the answer: a short
       list would look complete */
    if (!type)
        *failed = 1;
    if (json_array_append_new(
            list,
            json_pack(
                "{s:s, s:s, s:o, s:s?, s:I, s:I, s:I, s:I, s:I, s:b, s:o}", "name",
                km_topic_name(t), "kind", kind == KM_TOPIC_EVENT ? "event" : "state",
                "type", type ? type : json_null(), "description", desc, "last_seq",
                (json_int_t)km_topic_last_seq(t), "oldest_seq",
                (json_int_t)km_topic_oldest_seq(t), "ring_size",
                (json_int_t)(kind == KM_TOPIC_EVENT ? km_topic_ring_size(t) : 0),
                "published", (json_int_t)km_topic_published(t), "rejected",
                (json_int_t)km_topic_rejected(t), "has_value", km_topic_latest(t) != NULL,
                "hosts", km_rest_topic_hosts(bus, t))) != 0)
        *failed = 1;
}

static int km_rest_topics(struct km_core *core, json_t **body)
{
    json_t *list = json_array(), *hosts = json_array();
    int failed = !list || !hosts;
    void *arg[3] = {core->bus, list, &failed};
    unsigned nh = km_bus_host_count(core->bus);

    if (list)
        km_bus_foreach(core->bus, km_rest_topic_each, arg);
    for (unsigned h = 0; hosts && h < nh; h++)
        if (json_array_append_new(hosts,
                                  json_string(km_bus_host_name(core->bus, (int)h))) != 0)
            failed = 1;
    if (failed) {
        json_decref(list);
        json_decref(hosts);
        *body = NULL; /* km_rest_get answers 500 */
        return 500;
    }
    /* "hosts" is "o", not "o*": a NULL must fail the answer, not drop the key */
    *body = json_pack("{s:o, s:I, s:s?, s:o, s:{s:I, s:I, s:I}}", "topics", list, "epoch",
                      (json_int_t)km_bus_epoch(core->bus), "host",
                      km_bus_host_name(core->bus, 0), "hosts", hosts, "bus", "messages",
                      (json_int_t)km_bus_stats.messages, "rejected",
                      (json_int_t)km_bus_stats.rejected, "json_encodes",
                      (json_int_t)km_bus_stats.json_encodes);
    return 200;
}

/* "/api/v1/topics/NAME/latest" -> NAME; 0 when the path is not of that form. */
static int km_rest_latest_name(const char *path, char *name, size_t len)
{
    const char *start = path + sizeof "/api/v1/topics/" - 1;
    const char *slash = strchr(start, '/');

    if (!slash || slash == start || strcmp(slash, "/latest") != 0 ||
        (size_t)(slash - start) >= len)
        return 0;
    memcpy(name, start, (size_t)(slash - start));
    name[slash - start] = '\0';
    return 1;
}

static void km_rest_plugin_each(const struct km_plugin_info *info, void *arg)
{
    const struct km_plugin *d = info->desc;
    json_t *list = ((void **)arg)[0];
    int *failed = ((void **)arg)[1];

    if (json_array_append_new(list,
                              json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "name",
                                        info->name, "file", info->file, "state",
                                        km_plugin_state_name(info->state), "reason",
                                        info->reason, "version", d ? d->version : NULL,
                                        "description", d ? d->description : NULL)) != 0)
        *failed = 1; /* a plugin missing from the list: the answer fails */
}

static int km_rest_plugins(struct km_core *core, json_t **body)
{
    json_t *list = json_array();
    int failed = !list;
    void *arg[2] = {list, &failed};
    if (core->loader && list)
        km_loader_foreach(core->loader, km_rest_plugin_each, arg);
    if (failed) {
        json_decref(list);
        *body = NULL; /* km_rest_get answers 500 */
        return 500;
    }
    *body = json_pack("{s:o}", "plugins", list);
    return 200;
}

/* The built-in GET paths; a plugin cannot take them. */
static const struct km_rest_path {
    const char *path; /* exact, or a prefix when it ends in '/' */
    int reads_topic;  /* answers from a topic's value, so takes ?host= */
} km_rest_paths[] = {
    {"/health", 0},
    {"/api/v1/health", 0},
    {"/api/v1/system/metrics", 1},
    {"/api/v1/system/container-stats", 1},
    {"/api/v1/system/container-stats/", 1},
    {"/api/v1/sessions/count", 1},
    {"/api/v1/system/kato-health", 1},
    {"/api/v1/topics", 0},
    {"/api/v1/topics/", 1},
    {"/api/v1/plugins", 0},
    {"/api/v1/ws/subscriptions", 0},
    {"/api/v1/hosts", 1},
    {KM_RH_PATH, 0},
    {KM_RH_PATH_SERIES, 0},
};

/* The built-in entry serving GET path, or NULL. */
static const struct km_rest_path *km_rest_path_find(const char *path)
{
    for (size_t i = 0; i < sizeof km_rest_paths / sizeof km_rest_paths[0]; i++) {
        const char *p = km_rest_paths[i].path;
        size_t n = strlen(p);
        if (p[n - 1] == '/' ? strncmp(path, p, n) == 0 : strcmp(path, p) == 0)
            return &km_rest_paths[i];
    }
    return NULL;
}

static int km_rest_builtin(const char *path)
{
    return km_rest_path_find(path) != NULL;
}

int km_rest_owns(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/api/v1") == 0 ||
           strncmp(path, "/api/v1/", 8) == 0;
}

/* 1 when the answer to GET path reads a topic's value (so takes ?host=). */
static int km_rest_reads_topic(const char *path)
{
    const struct km_rest_path *p = km_rest_path_find(path);
    return p && p->reads_topic;
}

int km_rest_get(struct km_core *core, struct km_ws *ws, const char *path,
                const char *query, json_t **body)
{
    static const char cs[] = "/api/v1/system/container-stats/";
    static const char tl[] = "/api/v1/topics/";
    char name[72];
    char detail[200];
    int status, h;

    *body = NULL;
    h = 0;
    /* ?host=NAME: every answer that reads a topic's value reads NAME's */
    if (km_rest_reads_topic(path) && (status = km_rest_host(core, query, &h, body)) != 0)
        return status;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/api/v1/health") == 0)
        status = km_rest_health(body);
    else if (strcmp(path, "/api/v1/system/metrics") == 0)
        status = km_rest_state(core, KM_REST_TOPIC_METRICS, h, body);
    else if (strcmp(path, "/api/v1/system/container-stats") == 0)
        status = km_rest_state(core, KM_REST_TOPIC_CONTAINERS, h, body);
    else if (strncmp(path, cs, sizeof cs - 1) == 0 && path[sizeof cs - 1] &&
             !strchr(path + sizeof cs - 1, '/'))
        status = km_rest_container(core, path + sizeof cs - 1, h, body);
    else if (strcmp(path, "/api/v1/sessions/count") == 0)
        status = km_rest_sessions_count(core, h, body);
    else if (strcmp(path, "/api/v1/system/kato-health") == 0)
        status = km_rest_kato_health(core, h, body);
    else if (strcmp(path, "/api/v1/hosts") == 0)
        status = km_rest_hosts(core, h, body);
    else if (strcmp(path, "/api/v1/topics") == 0)
        status = km_rest_topics(core, body);
    else if (strncmp(path, tl, sizeof tl - 1) == 0 &&
             km_rest_latest_name(path, name, sizeof name))
        status = km_bus_find(core->bus, name)
                     ? km_rest_state(core, name, h, body) /* e.g. host */
                     : km_rest_no_topic(name, body);
    else if (strcmp(path, "/api/v1/plugins") == 0)
        status = km_rest_plugins(core, body);
    else if (km_rest_history_owns(path)) /* without a query: the defaults */
        status = km_rest_history(core, path, "", (double)km_wall_us() / 1e6, body);
    else if (strcmp(path, "/api/v1/ws/subscriptions") == 0) {
        *body =
            ws ? km_ws_clients_json(ws) : json_pack("{s:i, s:[]}", "count", 0, "clients");
        status = 200;
    } else {
        snprintf(detail, sizeof detail, "Not Found: %.150s", path);
        *body = km_rest_detail(detail);
        status = 404;
    }
    if (!*body) {
        *body = json_object(); /* ENOMEM somewhere above; the server says 500 */
        return 500;
    }
    return status;
}

/* ---- routes katomon does not serve ---- */

/* Why a route of the original dashboard is not served. */
enum km_unserved_why {
    KM_WHY_WRITE,      /* changes KATO's data */
    KM_WHY_QDRANT,     /* reads Qdrant */
    KM_WHY_REDIS,      /* reads Redis keys directly */
    KM_WHY_CLICKHOUSE, /* reads ClickHouse */
    KM_WHY_PATTERNS,   /* reads the pattern stores (ClickHouse + Redis) */
    KM_WHY_ANALYTICS,  /* analytics over KATO's databases and history */
};

/* One route of the original dashboard (backend/app/api/routes.py, v0.3.7)
   that katomon answers 501. In `path`, "*" is one non-empty segment and a
   final "**" one or more. */
struct km_unserved {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* pattern */
    enum km_unserved_why why; /* the reason given */
};

static const struct km_unserved km_unserved_routes[] = {
    {"DELETE", "/api/v1/sessions/*", KM_WHY_WRITE},
    {"POST", "/api/v1/sessions/bulk-delete", KM_WHY_WRITE},
    {"POST", "/api/v1/sessions/redis-keys/cleanup", KM_WHY_WRITE},
    {"GET", "/api/v1/sessions/redis-keys/diagnostic", KM_WHY_REDIS},
    {"GET", "/api/v1/databases/qdrant/collections", KM_WHY_QDRANT},
    {"GET", "/api/v1/databases/qdrant/processors", KM_WHY_QDRANT},
    {"GET", "/api/v1/databases/qdrant/collections/*", KM_WHY_QDRANT},
    {"DELETE", "/api/v1/databases/qdrant/collections/*", KM_WHY_WRITE},
    {"GET", "/api/v1/databases/qdrant/collections/*/points", KM_WHY_QDRANT},
    {"GET", "/api/v1/databases/qdrant/collections/*/points/*", KM_WHY_QDRANT},
    {"GET", "/api/v1/databases/qdrant/collections/*/points/*/similar", KM_WHY_QDRANT},
    {"POST", "/api/v1/databases/qdrant/collections/*/search", KM_WHY_QDRANT},
    {"POST", "/api/v1/databases/qdrant/collections/*/points/bulk-delete", KM_WHY_WRITE},
    {"GET", "/api/v1/databases/redis/info", KM_WHY_REDIS},
    {"GET", "/api/v1/databases/redis/keys", KM_WHY_REDIS},
    {"GET", "/api/v1/databases/redis/keys/**", KM_WHY_REDIS},
    {"GET", "/api/v1/databases/redis/sessions", KM_WHY_REDIS},
    {"POST", "/api/v1/databases/redis/flush", KM_WHY_WRITE},
    {"GET", "/api/v1/databases/clickhouse/databases", KM_WHY_CLICKHOUSE},
    {"GET", "/api/v1/databases/clickhouse/databases/*/tables", KM_WHY_CLICKHOUSE},
    {"GET", "/api/v1/databases/clickhouse/databases/*/tables/*/schema",
     KM_WHY_CLICKHOUSE},
    {"GET", "/api/v1/databases/clickhouse/databases/*/tables/*/count", KM_WHY_CLICKHOUSE},
    {"GET", "/api/v1/databases/clickhouse/databases/*/tables/*/data", KM_WHY_CLICKHOUSE},
    {"POST", "/api/v1/databases/clickhouse/query", KM_WHY_CLICKHOUSE},
    {"GET", "/api/v1/databases/patterns/processors", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/patterns/*/patterns", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/patterns/*/patterns/*", KM_WHY_PATTERNS},
    {"PUT", "/api/v1/databases/patterns/*/patterns/*", KM_WHY_WRITE},
    {"DELETE", "/api/v1/databases/patterns/*/patterns/*", KM_WHY_WRITE},
    {"POST", "/api/v1/databases/patterns/*/patterns/bulk-delete", KM_WHY_WRITE},
    {"GET", "/api/v1/databases/patterns/*/statistics", KM_WHY_PATTERNS},
    {"DELETE", "/api/v1/databases/patterns/*", KM_WHY_WRITE},
    {"GET", "/api/v1/databases/hybrid/health", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/symbols/processors", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/symbols/*", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/symbols/*/statistics", KM_WHY_PATTERNS},
    {"GET", "/api/v1/databases/symbols/*/affinity/*", KM_WHY_PATTERNS},
    {"GET", "/api/v1/analytics/patterns/frequency", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/sessions/duration", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/system/performance", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/database/statistics", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/predictions/load", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/comprehensive", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/graphs/hierarchy", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/graphs/hierarchy/*/to/*", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/graphs/hierarchy/patterns/trace/*", KM_WHY_ANALYTICS},
    {"GET", "/api/v1/analytics/graphs/hierarchy/patterns/*/path", KM_WHY_ANALYTICS},
};

/* The original's GET routes the kato_api plugin serves: 503 without it. */
static const char *const km_kato_api_routes[] = {
    "/api/v1/system/stats",
    "/api/v1/system/cache-stats",
    "/api/v1/system/connection-pools",
    "/api/v1/system/distributed-stm",
    "/api/v1/analytics/overview",
    "/api/v1/sessions",
    "/api/v1/sessions/statistics/overview",
    "/api/v1/sessions/*",
    "/api/v1/sessions/*/stm",
};

static const char *km_unserved_text(enum km_unserved_why why)
{
    switch (why) {
    case KM_WHY_WRITE:
        return "it is a monitor and never writes to KATO or to its databases";
    case KM_WHY_QDRANT:
        return "it reads Qdrant contents (KATO's vector store), out of katomon's scope";
    case KM_WHY_REDIS:
        return "it reads Redis keys directly, out of katomon's scope (GET "
               "/api/v1/sessions "
               "lists KATO's sessions)";
    case KM_WHY_CLICKHOUSE:
        return "it reads ClickHouse contents (KATO's pattern store), out of katomon's "
               "scope";
    case KM_WHY_PATTERNS:
        return "it reads KATO's pattern stores (ClickHouse and Redis), out of katomon's "
               "scope";
    case KM_WHY_ANALYTICS:
    default:
        return "it computes analytics from KATO's databases (ClickHouse, Qdrant, Redis), "
               "out of katomon's scope (GET /api/v1/analytics/overview and "
               "/api/v1/system/stats are served)";
    }
}

/* 1 when path matches pattern ("*": one non-empty segment; a final "**":
   one or more). */
static int km_rest_pattern(const char *pattern, const char *path)
{
    while (*pattern && *path) {
        if (strcmp(pattern, "**") == 0)
            return *path != '/';
        if (*pattern == '*') {
            size_t seg = strcspn(path, "/");
            if (seg == 0)
                return 0;
            path += seg;
            pattern++;
            continue;
        }
        if (*pattern++ != *path++)
            return 0;
    }
    return *pattern == '\0' && *path == '\0';
}

static const struct km_unserved *km_rest_unserved_find(const char *method,
                                                       const char *path)
{
    const size_t n = sizeof km_unserved_routes / sizeof km_unserved_routes[0];

    for (size_t i = 0; i < n; i++)
        if (strcmp(km_unserved_routes[i].method, method) == 0 &&
            km_rest_pattern(km_unserved_routes[i].path, path))
            return &km_unserved_routes[i];
    return NULL;
}

static int km_rest_needs_kato_api(const char *path)
{
    const size_t n = sizeof km_kato_api_routes / sizeof km_kato_api_routes[0];

    for (size_t i = 0; i < n; i++)
        if (km_rest_pattern(km_kato_api_routes[i], path))
            return 1;
    return 0;
}

static int km_rest_unserved(const char *method, const char *path,
                            const struct km_unserved *u, json_t **body)
{
    char detail[512];

    snprintf(detail, sizeof detail, "katomon does not serve %s %.150s: %s", method, path,
             km_unserved_text(u->why));
    *body = km_rest_detail(detail);
    return 501;
}

/* A route of kato_api while kato_api is not running. */
static int km_rest_no_kato_api(const char *method, const char *path, json_t **body,
                               char *allow, size_t allowlen)
{
    char detail[400];

    if (strcmp(method, "GET") != 0) {
        snprintf(allow, allowlen, "GET, HEAD");
        *body = km_rest_detail("Method Not Allowed");
        return 405;
    }
    snprintf(detail, sizeof detail,
             "%.150s is served by the kato_api plugin, which is not running: enable "
             "[plugin kato_api] in katomon.conf (GET /api/v1/plugins says why it is not "
             "running)",
             path);
    *body = km_rest_detail(detail);
    return 503;
}

/* Calls a plugin's route; KM_REST_DEFERRED when it answers later. */
static int km_rest_plugin(const struct km_route_hit *hit, const struct km_rest_call *call,
                          json_t **body, const struct km_rest_waiter *waiter,
                          struct km_rest_pending **pending)
{
    json_t *reply = NULL;
    const char *why = NULL;
    int status = km_loader_call(hit, call, &reply, &why, waiter, pending);

    if (status == KM_LOADER_LATER)
        return KM_REST_DEFERRED;
    if (!reply)
        reply =
            status < 400 ? json_object() : km_rest_detail(why ? why : "request failed");
    *body = reply ? reply : json_object();
    return status;
}

int km_rest_handle(struct km_core *core, struct km_ws *ws,
                   const struct km_rest_call *call, json_t **body, char *allow,
                   size_t allowlen, const struct km_rest_waiter *waiter,
                   struct km_rest_pending **pending)
{
    int head = strcmp(call->method, "HEAD") == 0;
    const char *method = head ? "GET" : call->method;
    const struct km_unserved *u;
    struct km_route_hit hit;
    char detail[200];
    int rc;

    allow[0] = '\0';
    if (pending)
        *pending = NULL;
    if (km_rest_builtin(call->path)) {
        /* the history routes read their query (rest_history.c) */
        if (strcmp(method, "GET") == 0 && km_rest_history_owns(call->path))
            return km_rest_history(core, call->path, call->query,
                                   (double)km_wall_us() / 1e6, body);
        if (strcmp(method, "GET") == 0)
            return km_rest_get(core, ws, call->path, call->query, body);
        snprintf(allow, allowlen, "GET, HEAD");
        *body = km_rest_detail("Method Not Allowed");
        return 405;
    }
    /* Who answers, best first: a plugin's exact route; a literal route of
       the table above (501); a plugin's prefix route, longest first; a
       patterned route of the table; then 405 when plugins serve the path
       under other methods, 503 for kato_api's routes, 404. */
    rc = core->loader ? km_loader_find(core->loader, call->method, call->path, &hit,
                                       allow, allowlen)
                      : 0;
    u = km_rest_unserved_find(method, call->path);
    if (rc == 1 && (!hit.prefix || !u || strchr(u->path, '*')))
        return km_rest_plugin(&hit, call, body, waiter, pending);
    if (u)
        return km_rest_unserved(method, call->path, u, body);
    if (rc == 2) {
        *body = km_rest_detail("Method Not Allowed");
        return 405;
    }
    if (km_rest_needs_kato_api(call->path))
        return km_rest_no_kato_api(method, call->path, body, allow, allowlen);
    snprintf(detail, sizeof detail, "Not Found: %.150s", call->path);
    *body = km_rest_detail(detail);
    return 404;
}
