/*
 * alert_manager - turns topic values into alerts, keeps their history.
 *
 * Rules come from the [alert NAME] sections of katomon.conf, a kind of
 * section this plugin declares (.kinds); their grammar is alert_rules.c's,
 * shared by the plugin's check (--check-config, start-up, SIGHUP) and by
 * init/reload, which build the rules with it. Four kinds:
 *
 *   threshold  `path` names a number in each message of `topic`; `op` (>, >=,
 *              <, <=) compares it with `warning`; `critical` escalates to
 *              level error and is inclusive (>= for >), as in the original
 *              dashboard ("> 80 warning, error at >= 90").
 *   match      `path` ends in [*] and names an array of items (containers);
 *              `match` ("status != running || health == unhealthy") is
 *              tested on each item; `name_field` names the item.
 *   host_down  (issue 15) one alert per remote host whose "up" is false in
 *              the core's `hosts` topic ("host B down: no message for 31 s",
 *              with "host": "B"), resolved when it is up again.
 *   source_down (issue 15) one alert per state topic whose "_source" says
 *              healthy false ("redis_bridge: source down: connection
 *              refused", with "topic" and "error"), resolved when healthy;
 *              it subscribes to "*", this host's topics only.
 * Both fleet kinds are built in: when no section is of that kind, a rule
 * parsed as an empty [alert host_down] / [alert source_down] is added, so
 * a fleet is watched without configuration and such a section tunes it or
 * (enabled = false) turns it off.
 *
 * Per alert key (the rule's type, or TYPE_NAME per item) a state machine
 * (alert_eval.c) fires after `for` samples, escalates, reminds every
 * `cooldown` and resolves past `clear`. A message whose source is
 * unhealthy (it has an "error" member) is not evaluated: unknown is not
 * recovered.
 *
 * Alerts of one evaluation (one message of a topic) go out as one batch on
 * the `system_alerts` event topic: {"id", "timestamp", "alerts": [...]}.
 * The batch id is "alert_<ms>" as in the original, made unique (the next
 * millisecond when two batches fall in one): the original frontend keys
 * its toasts by it.
 *
 * What is firing now goes on the `alerts_firing` state topic, published at
 * start, after a reload and whenever the counts change:
 *   {"alerts": [{"type": "high_cpu", "level": "warning", "firing": 0}, ...]}
 * one item per (type, level) pair the rules can raise, 0 included, so
 * GET /metrics has katomon_alerts_firing{type="high_cpu",level="warning"}
 * from the start (a Prometheus rule on it never sees the series appear
 * only when something fires). A compatible WebSocket client never receives
 * it: it is not one of the original's topics (see the report on issue 14
 * for a client that never subscribed).
 *
 * History (alert_history.c): STATE_DIR/alerts.jsonl and its copy in
 * memory hold the transitions (issue 16): one record when an alert fires,
 * escalates, de-escalates or resolves. A re-send every `cooldown` while it
 * holds is still published on system_alerts, as the original re-sent
 * (its frontend toasts each one), but it carries the id of the key's open
 * record and "repeats": N, and the history only counts it there
 * ("repeats", "last_seen"); alert_webhook does not post it.
 *
 * SIGHUP (am_reload): a rule whose section did not change (am_rule_same)
 * keeps its alerts' states, so nothing re-fires and nothing is recorded;
 * the alerts of a changed rule, or of one removed or disabled, are
 * resolved with "reason": "rule changed" / "rule removed", and a changed
 * rule fires again from clear if its condition still holds.
 *
 * REST: GET /api/v1/alerts (level, type, state, since = epoch seconds or ISO
 * 8601 such as 2026-11-23T02:40:00Z or ...+00:00; limit 1..10000, default
 * 100; newest first: {"alerts", "total" (matching), "unread" (all)}),
 * GET /api/v1/alerts/active, POST /api/v1/alerts/read ({"ids": [...]} or
 * {"all": true}), DELETE /api/v1/alerts. Each takes ?host=NAME (issue 15;
 * absent or this host's name: as before; an unknown name: 404): GET
 * answers another host's alerts from the batches its system_alerts
 * brought here over a bridge (alert_remote.c); POST and DELETE refuse
 * (400), a host's read marks and history being its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <katomon/plugin.h>
#include <katomon/util.h>

#include "alert_eval.h"
#include "alert_history.h"
#include "alert_remote.h"
#include "alert_rules.h"

static const struct km_conf_key am_keys[] = {
    {"max_entries", KM_CONF_INT, "1000", 10, 1000000, "alerts kept in history"},
    {"max_bytes", KM_CONF_INT, "1048576", 4096, 1073741824,
     "history file size that triggers compaction"},
    {"max_age_days", KM_CONF_DOUBLE, "30", 0.001, 36500, "older alerts are dropped"},
    {"sync_interval", KM_CONF_DOUBLE, "5", 0.1, 3600,
     "seconds between fdatasync of new history lines"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static const struct km_field alert_item[] = {
    KM_FIELD("level", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("type", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("message", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("state", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("id", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("value", KM_NUMBER, 0),
    KM_FIELD("threshold", KM_NUMBER, 0),
    KM_FIELD("host", KM_STRING, 0), /* host_down: the host it is about */
    KM_FIELD_END,
};
static const struct km_field alert_array_item = KM_FIELD_OBJECT(NULL, 0, alert_item);
static const struct km_field batch_schema[] = {
    KM_FIELD("id", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("timestamp", KM_STRING, KM_F_REQUIRED),
    KM_FIELD_ARRAY("alerts", KM_F_REQUIRED, &alert_array_item),
    KM_FIELD_END,
};

static const struct km_field firing_item[] = {
    KM_FIELD("type", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("level", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("firing", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};
static const struct km_field firing_array_item = KM_FIELD_OBJECT(NULL, 0, firing_item);
static const struct km_field firing_schema[] = {
    KM_FIELD_ARRAY("alerts", KM_F_REQUIRED, &firing_array_item),
    KM_FIELD_END,
};
/* alerts_firing's series: katomon_alerts_firing{type=...,level=...}. */
static const struct km_metric firing_metrics[] = {
    {"alerts[]", NULL, NULL, 0, 0, "type=type,level=level"},
    {"alerts[].firing", "alerts_firing",
     "Alerts of katomon's [alert] rules firing now, by alert type and level (warning, "
     "error)",
     0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/* ---- rules ---- */

/* One subscribed topic with the rules reading it. */
struct watched {
    char topic[65];     /* topic name; "*": every topic (source_down) */
    struct km_sub *sub; /* our subscription */
};

static struct {
    const struct km_host *host; /* the core */
    struct km_ctx *ctx;         /* our handle */
    struct km_topic *out;       /* system_alerts */
    struct km_topic *firing;    /* alerts_firing */
    json_t *firing_last;        /* its last body (a reference kept to compare) */
    struct am_rule *rules;      /* parsed [alert] sections */
    int n_rules;                /* count */
    struct watched *watched;    /* one subscription per source topic */
    int n_watched;              /* count */
    struct am_history hist;     /* the history (alert_history.c); its next_id
                                   numbers the alerts */
    struct km_timer *sync;      /* fdatasync timer */
} am;

static void on_sync(void *arg)
{
    am_history_sync(&am.hist);
}

/* ---- publishing ---- */

/* Publishes what is firing now when it differs from what was published. */
static void publish_firing(void)
{
    json_t *now = am_firing(am.rules, am.n_rules);

    if (!now || (am.firing_last && json_equal(now, am.firing_last))) {
        json_decref(now);
        return;
    }
    json_decref(am.firing_last);
    am.firing_last = json_incref(now); /* read only from here on, as the bus wants */
    am.host->publish(am.ctx, am.firing, now);
}

static void publish_batch(json_t *alerts)
{
    char when[32], id[48];
    int64_t now = km_wall_us();
    size_t i;
    json_t *a;

    static long long last_ms;
    long long ms = (long long)(now / 1000);

    if (ms <= last_ms) /* two batches in one millisecond: keep ids unique */
        ms = last_ms + 1;
    last_ms = ms;
    km_format_iso(now, 3, when, sizeof when);
    snprintf(id, sizeof id, "alert_%lld", ms);
    json_array_foreach(alerts, i, a) am_history_add(&am.hist, a, when, id);
    am_history_done(&am.hist);
    am.host->publish(
        am.ctx, am.out,
        json_pack("{s:s, s:s, s:o}", "id", id, "timestamp", when, "alerts", alerts));
}

/* Publishes what one evaluation raised (steals batch), then the counts. */
static void finish(json_t *batch)
{
    if (json_array_size(batch) > 0)
        publish_batch(batch);
    else
        json_decref(batch);
    publish_firing();
}

static void on_message(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    const char *name = am.host->topic_name(topic);
    json_t *body = am.host->msg_json(msg);
    json_t *batch = json_array();

    if (!batch)
        return;
    if (json_object_get(body, "error") == NULL) { /* unhealthy source: no verdict */
        for (int i = 0; i < am.n_rules; i++) {
            struct am_rule *r = &am.rules[i];
            if (strcmp(r->topic, name) != 0)
                continue;
            am_eval(r, body, batch, &am.hist.next_id);
        }
    }
    finish(batch);
}

/* Every topic of this host ("*"): the source_down rules read each state
   topic's "_source" (events and our own alerts_firing have none). */
static void on_any(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    json_t *body = am.host->msg_json(msg);
    json_t *batch;

    if (am.host->msg_seq(msg) != 0 || topic == am.firing ||
        !json_is_object(json_object_get(body, "_source")) || !(batch = json_array()))
        return;
    for (int i = 0; i < am.n_rules; i++)
        if (am.rules[i].kind == AM_SOURCE_DOWN)
            am_eval_source(&am.rules[i], am.host->topic_name(topic), body, batch,
                           &am.hist.next_id);
    finish(batch);
}

/* ---- REST ---- */

/*
 * "1795400000.5" (epoch seconds) or ISO 8601 "2026-11-23T02:40:00[.fff][Z|
 * +HH:MM|-HH:MM]" (no zone: UTC) -> microseconds since the epoch.
 */
static int parse_time(const char *text, int64_t *us)
{
    char *end;
    double secs = strtod(text, &end);

    if (end != text && *end == '\0' && isfinite(secs)) {
        *us = (int64_t)(secs * 1e6);
        return 0;
    }
    return km_parse_iso(text, us);
}

static int rest_list(const struct km_rest_call *call, json_t **reply, const char **detail,
                     void *arg)
{
    char level[16], type[64], state[16], since[40], limit_s[16];
    const char *lv = am.host->rest_param(call, "level", level, sizeof level);
    const char *ty = am.host->rest_param(call, "type", type, sizeof type);
    const char *st = am.host->rest_param(call, "state", state, sizeof state);
    const char *si = am.host->rest_param(call, "since", since, sizeof since);
    const char *li = am.host->rest_param(call, "limit", limit_s, sizeof limit_s);
    long limit = li ? strtol(li, NULL, 10) : 100;
    int h, status = am_remote_host(am.host, am.ctx, call, &h, reply);

    if (status)
        return status;
    if (limit <= 0 || limit > 10000) {
        *detail = "limit must be between 1 and 10000";
        return 400;
    }
    char since_iso[32] = "";
    if (si) {
        int64_t us;
        if (parse_time(si, &us) < 0) {
            *detail = "since must be epoch seconds or ISO 8601 (2026-11-23T02:40:00Z)";
            return 400;
        }
        /* stored timestamps have milliseconds: compare with since cut to them
           (km_format_iso truncates toward the past) */
        km_format_iso(us, 3, since_iso, sizeof since_iso);
    }
    /* another host: what its system_alerts brought here (none read here) */
    json_t *remote = h > 0 ? am_remote_entries(am.host, am.ctx, am.out, h) : NULL;
    json_t *entries = h > 0 ? remote : am.hist.entries;
    json_t *out = json_array();
    size_t unread = 0, total = 0;
    for (size_t i = json_array_size(entries); i-- > 0;) {
        json_t *e = json_array_get(entries, i);
        if (!json_is_true(json_object_get(e, "read")))
            unread++;
        if ((lv && strcmp(lv, json_string_value(json_object_get(e, "level")) ?: "")) ||
            (ty && strcmp(ty, json_string_value(json_object_get(e, "type")) ?: "")) ||
            (st && strcmp(st, json_string_value(json_object_get(e, "state")) ?: "")) ||
            (si && strcmp(json_string_value(json_object_get(e, "timestamp")) ?: "",
                          since_iso) <= 0))
            continue;
        total++;
        if ((long)json_array_size(out) < limit)
            json_array_append(out, e);
    }
    json_decref(remote);
    *reply = json_pack("{s:o, s:I, s:I}", "alerts", out, "total", (json_int_t)total,
                       "unread", (json_int_t)unread);
    return 200;
}

static int rest_active(const struct km_rest_call *call, json_t **reply,
                       const char **detail, void *arg)
{
    int h, status = am_remote_host(am.host, am.ctx, call, &h, reply);

    if (status)
        return status;
    if (h > 0) {
        json_t *entries = am_remote_entries(am.host, am.ctx, am.out, h);
        json_t *active = am_remote_active(entries);
        json_decref(entries);
        *reply = json_pack("{s:o*}", "active", active);
        return *reply ? 200 : 500;
    }
    json_t *out = json_array();
    for (int i = 0; i < am.n_rules; i++)
        for (int k = 0; k < am.rules[i].n_tracks; k++) {
            struct am_track *t = &am.rules[i].tracks[k];
            if (t->level)
                json_array_append_new(
                    out, json_pack("{s:s, s:s, s:s, s:s, s:s}", "key", t->key, "type",
                                   am.rules[i].type, "rule", am.rules[i].name, "level",
                                   am_level_name(t->level), "id", t->open_id));
        }
    *reply = json_pack("{s:o}", "active", out);
    return 200;
}

/* POST and DELETE with ?host=: 0 for this host, else the status to answer
   (404 for an unknown host, 400 for another one: its history is its own). */
static int local_only(const struct km_rest_call *call, json_t **reply,
                      const char **detail)
{
    int h, status = am_remote_host(am.host, am.ctx, call, &h, reply);

    if (status || h == 0)
        return status;
    *detail = "the alerts of another host are marked read and cleared on that host";
    return 400;
}

static int rest_read(const struct km_rest_call *call, json_t **reply, const char **detail,
                     void *arg)
{
    int status = local_only(call, reply, detail);
    if (status)
        return status;
    json_t *body = json_loadb(call->body, call->body_len, 0, NULL);
    json_t *ids = json_object_get(body, "ids");
    size_t marked = 0, i;
    json_t *e, *id;

    if (!json_is_object(body) ||
        (!json_is_array(ids) && !json_is_true(json_object_get(body, "all")))) {
        json_decref(body);
        *detail = "send {\"ids\": [\"a1\", ...]} or {\"all\": true}";
        return 400;
    }
    if (json_is_array(ids)) {
        json_array_foreach(ids, i, id)
        {
            json_t *hit = json_is_string(id)
                              ? am_history_find(&am.hist, json_string_value(id))
                              : NULL;
            if (hit && !json_is_true(json_object_get(hit, "read"))) {
                json_object_set_new(hit, "read", json_true());
                marked++;
            }
        }
        json_t *line = json_pack("{s:s, s:O}", "op", "read", "ids", ids);
        am_history_op(&am.hist, line);
        json_decref(line);
    } else {
        json_array_foreach(am.hist.entries, i, e)
        {
            if (!json_is_true(json_object_get(e, "read")))
                marked++;
            json_object_set_new(e, "read", json_true());
        }
        json_t *line = json_pack("{s:s}", "op", "read_all");
        am_history_op(&am.hist, line);
        json_decref(line);
    }
    json_decref(body);
    size_t unread = 0;
    json_array_foreach(am.hist.entries, i, e) unread +=
        !json_is_true(json_object_get(e, "read"));
    *reply = json_pack("{s:I, s:I}", "marked", (json_int_t)marked, "unread",
                       (json_int_t)unread);
    return 200;
}

static int rest_clear(const struct km_rest_call *call, json_t **reply,
                      const char **detail, void *arg)
{
    int status = local_only(call, reply, detail);
    if (status)
        return status;
    size_t n = json_array_size(am.hist.entries);
    json_t *line =
        json_pack("{s:s, s:I}", "op", "clear", "next_id", (json_int_t)am.hist.next_id);

    json_array_clear(am.hist.entries);
    am_history_op(&am.hist, line);
    json_decref(line);
    *reply = json_pack("{s:I}", "cleared", (json_int_t)n);
    return 200;
}

/* ---- init/reload/shutdown ---- */

static void free_rules(void)
{
    for (int i = 0; i < am.n_rules; i++)
        free(am.rules[i].tracks);
    free(am.rules);
    am.rules = NULL;
    am.n_rules = 0;
}

/* Subscribes once to topic ("*": every topic, for the source_down rules). */
static int watch(const char *topic)
{
    for (int i = 0; i < am.n_watched; i++)
        if (strcmp(am.watched[i].topic, topic) == 0)
            return 0;
    struct watched *w = realloc(am.watched, (size_t)(am.n_watched + 1) * sizeof *w);
    if (!w)
        return -1;
    am.watched = w;
    w = &am.watched[am.n_watched];
    snprintf(w->topic, sizeof w->topic, "%s", topic);
    w->sub =
        am.host->subscribe(am.ctx, topic, strcmp(topic, "*") ? on_message : on_any, NULL);
    if (!w->sub)
        return -1;
    am.n_watched++;
    return 0;
}

/* The rules' problems, logged "FILE:LINE: ..." like the loader's. The
   loader ran the same check before init and before reload, so this only
   speaks when something else went wrong. */
static void __attribute__((format(printf, 4, 5)))
log_problem(void *arg, const struct km_conf_section *sec, int line, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    am.host->log(am.ctx, KM_LOG_ERROR, "%s:%d: %s", sec->file,
                 line > 0 ? line : sec->line, text);
}

/* (Re)reads the [alert] sections with the grammar the check used; on error
   keeps nothing half-made. */
static int load_rules(void)
{
    size_t n = 0;
    const struct km_conf_section *const *secs =
        am.host->config_sections(am.ctx, "alert", &n);
    static const enum am_kind fleet[] = {AM_HOST_DOWN, AM_SOURCE_DOWN};
    struct am_rule *rules;
    int count = 0, builtin = 0;

    if (am_check(NULL, secs, n, log_problem, NULL) != 0)
        return -1;
    if (!(rules = calloc(n + 2, sizeof *rules)))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!am_rule_enabled(secs[i]))
            continue;
        if (am_rule_parse(secs[i], &rules[count], log_problem, NULL) != 0 ||
            am_make_tracks(&rules[count]) < 0) {
            for (int k = 0; k < count; k++)
                free(rules[k].tracks);
            free(rules);
            return -1;
        }
        count++;
    }
    for (size_t k = 0; k < 2; k++) { /* the fleet kinds' built-ins, unless said */
        size_t i = 0;
        while (i < n && am_rule_kind(secs[i]) != (int)fleet[k])
            i++;
        if (i < n)
            continue;
        if (am_rule_builtin(fleet[k], &rules[count]) < 0 ||
            am_make_tracks(&rules[count]) < 0) {
            for (int j = 0; j < count; j++)
                free(rules[j].tracks);
            free(rules);
            return -1;
        }
        count++;
        builtin |= 1 << k;
    }
    /* a reload: an unchanged rule keeps its alerts' states; the alerts of
       the others are resolved, saying why */
    json_t *batch = json_array();
    for (int i = 0; i < am.n_rules; i++) {
        struct am_rule *old = &am.rules[i];
        int j = 0;
        while (j < count && strcmp(rules[j].name, old->name) != 0)
            j++;
        if (j < count && am_rule_same(old, &rules[j])) {
            struct am_track *fresh = rules[j].tracks;
            int n_fresh = rules[j].n_tracks;
            rules[j].tracks = old->tracks;
            rules[j].n_tracks = old->n_tracks;
            old->tracks = fresh; /* freed with the old rules */
            old->n_tracks = n_fresh;
        } else if (batch) {
            am_resolve_all(old, j < count ? "rule changed" : "rule removed", batch,
                           &am.hist.next_id);
        }
    }
    free_rules();
    am.rules = rules;
    am.n_rules = count;
    if (batch)
        finish(batch); /* the resolutions, then the counts */
    for (int i = 0; i < count; i++)
        if (watch(rules[i].topic) < 0)
            return -1;
    /* "N alert rules" counts the sections, as before the built-ins */
    am.host->log(am.ctx, KM_LOG_INFO, "%d alert rules%s%s%s",
                 count - !!(builtin & 1) - !!(builtin & 2),
                 builtin ? ", and the built-in " : "", builtin & 1 ? "host_down" : "",
                 builtin == 3  ? " and source_down"
                 : builtin & 2 ? "source_down"
                               : "");
    return 0;
}

static int am_init(struct km_ctx *ctx, const struct km_host *host)
{
    int err;

    memset(&am, 0, sizeof am);
    am.host = host;
    am.ctx = ctx;
    struct km_topic_def def = {"system_alerts",
                               KM_TOPIC_EVENT,
                               batch_schema,
                               512,
                               "alert batches (firing and resolved)",
                               NULL};
    struct km_topic_def fdef = {"alerts_firing",
                                KM_TOPIC_STATE,
                                firing_schema,
                                0,
                                "alerts firing now, by type and level",
                                firing_metrics};
    am.out = host->topic_declare(ctx, &def, &err);
    if (!am.out) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic system_alerts: %s",
                  host->strerror(am.out ? KM_ENOMEM : err));
        return -1;
    }
    if (!(am.firing = host->topic_declare(ctx, &fdef, &err))) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic alerts_firing: %s",
                  host->strerror(err));
        return -1;
    }
    /* history first: a state topic's value may raise alerts at subscribe */
    if (am_history_open(&am.hist, host, ctx, host->config_int(ctx, "max_entries"),
                        host->config_int(ctx, "max_bytes"),
                        host->config_double(ctx, "max_age_days") * 86400) < 0 ||
        load_rules() < 0)
        return -1;
    publish_firing();
    am.sync = host->timer_add(ctx, host->config_double(ctx, "sync_interval"),
                              KM_TIMER_REPEAT, on_sync, NULL);
    if (host->rest_route(ctx, "GET", "/api/v1/alerts", rest_list, NULL) < 0 ||
        host->rest_route(ctx, "GET", "/api/v1/alerts/active", rest_active, NULL) < 0 ||
        host->rest_route(ctx, "POST", "/api/v1/alerts/read", rest_read, NULL) < 0 ||
        host->rest_route(ctx, "DELETE", "/api/v1/alerts", rest_clear, NULL) < 0) {
        host->log(ctx, KM_LOG_ERROR, "cannot register the /api/v1/alerts routes");
        return -1;
    }
    return 0;
}

static int am_reload(struct km_ctx *ctx)
{
    /* new thresholds apply at once; unchanged rules keep their states */
    int rc = load_rules();
    publish_firing(); /* the pairs may have changed, and every count is 0 */
    return rc;
}

static void am_shutdown(struct km_ctx *ctx)
{
    am_history_close(&am.hist);
    free_rules();
    free(am.watched);
    json_decref(am.firing_last);
    memset(&am, 0, sizeof am);
}

/* The topics init declares, named in the descriptor (.topics) for collect = false. */
static const struct km_topic_def am_topics[] = {
    {"system_alerts", KM_TOPIC_EVENT, batch_schema, 512,
     "alert batches (firing and resolved)", NULL},
    {"alerts_firing", KM_TOPIC_STATE, firing_schema, 0,
     "alerts firing now, by type and level", firing_metrics},
    {NULL, 0, NULL, 0, NULL, NULL},
};

KM_PLUGIN_DEFINE(
        .name = "alert_manager", .version = "1.0",
        .description = "alert rules from [alert] sections, with persistent history",
        .config = am_keys, .init = am_init, .reload = am_reload, .shutdown = am_shutdown,
        .kinds = am_kinds, .check = am_check, .topics = am_topics);
