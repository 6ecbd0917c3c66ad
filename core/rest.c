/*
 * rest.c - the REST API (see rest.h). Every handler reads the bus and
 * returns JSON; nothing here blocks or performs I/O.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "loader.h"
#include "rest.h"
#include "ws.h"

json_t *km_rest_detail(const char *text)
{
    return json_pack("{s:s}", "detail", text);
}

/* Latest body of a state topic (borrowed), or NULL with a 503 detail. */
static json_t *km_rest_latest(struct km_core *core, const char *topic, json_t **body,
                              int *status)
{
    struct km_topic *t = km_bus_find(core->bus, topic);
    struct km_msg *m = t ? km_topic_latest(t) : NULL;
    char detail[160];

    if (m)
        return km_msg_json(m);
    snprintf(detail, sizeof detail,
             t ? "no data yet on topic '%s'"
               : "no topic '%s': no plugin publishes it (is it enabled in katomon.conf?)",
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
static int km_rest_state(struct km_core *core, const char *topic, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, topic, body, &status);
    if (v)
        *body = json_incref(v);
    return status;
}

static int km_rest_container(struct km_core *core, const char *name, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, KM_REST_TOPIC_CONTAINERS, body, &status);
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

static int km_rest_sessions_count(struct km_core *core, json_t **body)
{
    int status = 200;
    json_t *v = km_rest_latest(core, KM_REST_TOPIC_SESSIONS, body, &status);
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

static int km_rest_kato_health(struct km_core *core, json_t **body)
{
    struct km_topic *t = km_bus_find(core->bus, KM_REST_TOPIC_KATO_HEALTH);
    struct km_msg *m = t ? km_topic_latest(t) : NULL;

    /* the original answers 200 with a status "error" body, not an HTTP error */
    if (m)
        *body = json_incref(km_msg_json(m));
    else
        *body = json_pack("{s:s, s:s}", "status", "error", "error",
                          t ? "no KATO health data yet"
                            : "no KATO health source (topic kato_health) is configured");
    return 200;
}

static void km_rest_topic_each(struct km_topic *t, void *arg)
{
    json_t *list = arg;
    enum km_topic_kind kind = km_topic_kind(t);
    const char *desc = km_topic_description(t);
    json_t *type = km_topic_schema_json(t);

    json_array_append_new(
        list,
        json_pack("{s:s, s:s, s:o, s:s?, s:I, s:I, s:I, s:I, s:I, s:b}", "name",
                  km_topic_name(t), "kind", kind == KM_TOPIC_EVENT ? "event" : "state",
                  "type", type ? type : json_null(), "description", desc, "last_seq",
                  (json_int_t)km_topic_last_seq(t), "oldest_seq",
                  (json_int_t)km_topic_oldest_seq(t), "ring_size",
                  (json_int_t)(kind == KM_TOPIC_EVENT ? km_topic_ring_size(t) : 0),
                  "published", (json_int_t)km_topic_published(t), "rejected",
                  (json_int_t)km_topic_rejected(t), "has_value",
                  km_topic_latest(t) != NULL));
}

static int km_rest_topics(struct km_core *core, json_t **body)
{
    json_t *list = json_array();
    km_bus_foreach(core->bus, km_rest_topic_each, list);
    *body = json_pack("{s:o, s:I, s:{s:I, s:I, s:I}}", "topics", list, "epoch",
                      (json_int_t)km_bus_epoch(core->bus), "bus", "messages",
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
    static const char *const states[] = {"", "running", "disabled", "off"};
    const struct km_plugin *d = info->desc;
    int st = info->state >= KM_PLUGIN_RUNNING && info->state <= KM_PLUGIN_OFF
                 ? (int)info->state
                 : 0;

    json_array_append_new(
        arg, json_pack("{s:s, s:s?, s:s, s:s?, s:s?, s:s?}", "name", info->name, "file",
                       info->file, "state", states[st], "reason", info->reason, "version",
                       d ? d->version : NULL, "description", d ? d->description : NULL));
}

static int km_rest_plugins(struct km_core *core, json_t **body)
{
    json_t *list = json_array();
    if (core->loader)
        km_loader_foreach(core->loader, km_rest_plugin_each, list);
    *body = json_pack("{s:o}", "plugins", list);
    return 200;
}

/* The built-in paths (GET only); a plugin cannot take them. */
static int km_rest_builtin(const char *path)
{
    static const char *const paths[] = {
        "/health",
        "/api/v1/health",
        "/api/v1/system/metrics",
        "/api/v1/system/container-stats",
        "/api/v1/sessions/count",
        "/api/v1/system/kato-health",
        "/api/v1/topics",
        "/api/v1/plugins",
        "/api/v1/ws/subscriptions",
    };
    static const char cs[] = "/api/v1/system/container-stats/";
    static const char tl[] = "/api/v1/topics/";

    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (strcmp(path, paths[i]) == 0)
            return 1;
    return strncmp(path, cs, sizeof cs - 1) == 0 || strncmp(path, tl, sizeof tl - 1) == 0;
}

int km_rest_owns(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/api/v1") == 0 ||
           strncmp(path, "/api/v1/", 8) == 0;
}

int km_rest_get(struct km_core *core, struct km_ws *ws, const char *path, json_t **body)
{
    static const char cs[] = "/api/v1/system/container-stats/";
    static const char tl[] = "/api/v1/topics/";
    char name[72];
    char detail[200];
    int status;

    *body = NULL;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/api/v1/health") == 0)
        status = km_rest_health(body);
    else if (strcmp(path, "/api/v1/system/metrics") == 0)
        status = km_rest_state(core, KM_REST_TOPIC_METRICS, body);
    else if (strcmp(path, "/api/v1/system/container-stats") == 0)
        status = km_rest_state(core, KM_REST_TOPIC_CONTAINERS, body);
    else if (strncmp(path, cs, sizeof cs - 1) == 0 && path[sizeof cs - 1] &&
             !strchr(path + sizeof cs - 1, '/'))
        status = km_rest_container(core, path + sizeof cs - 1, body);
    else if (strcmp(path, "/api/v1/sessions/count") == 0)
        status = km_rest_sessions_count(core, body);
    else if (strcmp(path, "/api/v1/system/kato-health") == 0)
        status = km_rest_kato_health(core, body);
    else if (strcmp(path, "/api/v1/topics") == 0)
        status = km_rest_topics(core, body);
    else if (strncmp(path, tl, sizeof tl - 1) == 0 &&
             km_rest_latest_name(path, name, sizeof name))
        status = km_bus_find(core->bus, name)
                     ? km_rest_state(core, name, body) /* e.g. host */
                     : km_rest_no_topic(name, body);
    else if (strcmp(path, "/api/v1/plugins") == 0)
        status = km_rest_plugins(core, body);
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

/* ---- any request ---- */

long km_pct_decode(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n)
            return -1;
        const char *hi = strchr(hex, tolower((unsigned char)s[i + 1]));
        const char *lo = strchr(hex, tolower((unsigned char)s[i + 2]));
        if (!s[i + 1] || !s[i + 2] || !hi || !lo)
            return -1;
        out[o++] = (char)((hi - hex) << 4 | (lo - hex));
        i += 2;
    }
    out[o] = '\0';
    return (long)o;
}

int km_rest_handle(struct km_core *core, struct km_ws *ws,
                   const struct km_rest_call *call, json_t **body, char *allow,
                   size_t allowlen)
{
    int head = strcmp(call->method, "HEAD") == 0;
    const char *method = head ? "GET" : call->method;
    char detail[200];

    allow[0] = '\0';
    if (km_rest_builtin(call->path)) {
        if (strcmp(method, "GET") == 0)
            return km_rest_get(core, ws, call->path, body);
        snprintf(allow, allowlen, "GET, HEAD");
        *body = km_rest_detail("Method Not Allowed");
        return 405;
    }
    if (core->loader) {
        struct km_rest_call c = *call;
        json_t *reply = NULL;
        const char *why = NULL;
        int status = km_loader_rest(core->loader, &c, &reply, &why, allow, allowlen);
        if (status) {
            if (!reply)
                reply = status < 400 ? json_object()
                                     : km_rest_detail(why ? why : "request failed");
            *body = reply ? reply : json_object();
            return status;
        }
    }
    snprintf(detail, sizeof detail, "Not Found: %.150s", call->path);
    *body = km_rest_detail(detail);
    return 404;
}
