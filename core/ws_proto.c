/*
 * ws_proto.c - the client protocol of /ws (see ws_proto.h): parsing a
 * client's requests and writing every server message, per dialect.
 *
 * ---- Wire mapping of bus topics -----------------------------------------
 *
 * State topics feed `realtime_update`, one key per topic, named after it:
 *
 *   {"type":"realtime_update","timestamp":"...Z",
 *    "data":{"metrics":<latest metrics body>,"containers":<...>,
 *            "sessions":<...>,"host":<...>, ...}}
 *
 * sent every [websocket] update_interval from the latest values (not on
 * every publish: state conflates by design), trimmed to the state topics
 * the client subscribed to (a client that never subscribed gets every state
 * topic), and skipped when there is nothing to put in `data`. A katomon/1
 * client that subscribes also gets one at once, so a dashboard paints
 * without waiting for the next tick (a compatible client does not: the
 * original frontend would re-render, re-subscribe and loop).
 *
 * Event topics go out as soon as they are published:
 *
 *   session_events  body {"event_type","timestamp","data"}
 *                -> {"type":"session_event",<body keys>[,"seq":N]}
 *   system_alerts   body {"id","timestamp","alerts"}
 *                -> {"type":"system_alert",<body keys>[,"seq":N]}
 *   any other T  -> {"type":"event","topic":T,"seq":N,"timestamp":<publish
 *                    time>,"data":<body>}
 *
 * (A body key named "type" or "seq" is dropped in the first two forms; a
 * missing "timestamp" is filled with the publish time, a missing alert "id"
 * with "alert_<ms>" as the original did.) The first two forms exist twice,
 * one frame per dialect: katomon/1's carries the topic's seq and the alert
 * items as published (a resolved one: its level, "state":"resolved");
 * the compatible one has no seq, and its alert items have no "state" and a
 * resolved one goes as level "info" (see km_compat_alert). Timestamps are
 * UTC ISO 8601 with microseconds and a Z.
 *
 * ---- Hosts (issue 15) ------------------------------------------------------
 *
 * The hub gets every host's messages (KM_SUB_HOSTS). For katomon/1:
 *   - realtime_update: "data" is this host's, as above; then
 *     "hosts":{"B":{TOPIC:<B's latest>,...},...} for every remote host
 *     with a value among the subscribed state topics (host order; the key
 *     is absent when there is none; the core's "hosts" topic is this
 *     host's alone, never shown under another host);
 *   - a remote host's event carries "host":"B" and "epoch":<B's epoch>,
 *     and its "seq" is B's seq on that topic (no "host": this host);
 *   - "since":{"T":N} is this host's sequence; {"T":{"A":N,"B":M}} one per
 *     host, replayed from each host's ring; replay_gap then names "host".
 * For compatible clients, nothing changes unless [websocket]
 * compatible_fleet = aggregate: then every state topic in "data" that a
 * remote host has a value of is merged: the first host's value (this host
 * when it has one) gives the keys, and every top-level array is the
 * concatenation of every host's array under that key, each remote item
 * (an object) with "host":"B" added and its string "name" prefixed "B/";
 * remote events go out too, with "host":"B" and each alert's "message"
 * prefixed "[B] " (and the alert item a "host" too).
 *
 * Subscribe: a compatible client's set grows to the union of every set it
 * sent, silently (the hub's km_ws_subscribe_compat); a katomon/1 client's
 * is replaced and acknowledged. The dialect is declared by "protocol":
 * "katomon/1" in a subscribe and holds for the connection.
 *
 * Replies (katomon/1 only, but heartbeat): {"type":"heartbeat","timestamp"}
 * for text "ping";
 * {"type":"subscription_ack","subscriptions":[...],"unknown":[...],
 * "timestamp","epoch":E,"last_seq":{"session_events":N,...},"host":"A",
 * "hosts":["A","B"],"epochs":{"A":E,"B":F},
 * "hosts_last_seq":{"B":{"session_events":M}}} for every subscribe (epoch:
 * this run of the daemon, see km_bus_epoch - a client whose seqs came from
 * another epoch must start again from 0; last_seq: the current seq of each
 * subscribed event topic; epochs and hosts_last_seq: the same per host)
 * ("unknown" lists names with no topic on the bus yet; they stay subscribed
 * and are delivered if a plugin declares them later);
 * {"type":"error","error":CODE,"detail":TEXT[,"topics":[..]]} for bad JSON
 * (bad_json), a bad request (bad_request, bad_since), an unknown type
 * (unknown_type) or unknown topics (unknown_topic); and for a `since` that
 * cannot be honoured fully, before the replayed messages:
 * {"type":"replay_gap","topic":T,"requested_since":N,"oldest_available":M,
 *  "last_seq":L,"missed":K,"reason":R,"host":H} (M is 0 when the ring is
 * empty; H the host whose sequence it is, this host's name for a since
 * given as a number):
 * R "not_in_ring" - messages N+1..M-1 are gone (sent before the replay);
 * R "since_ahead" - N > L: the daemon restarted and seq began again;
 * R "truncated"   - the replay stopped at half the client's queue bound
 *                   (sent after the replayed messages); "resume_since" is
 *                   the seq to ask from once these are read.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <katomon/util.h>

#include "ws_proto.h"

const char *km_ws_dialect_name(enum km_ws_dialect d)
{
    return d == KM_WS_KATOMON ? KM_WS_PROTOCOL : "compatible";
}

/* ======================================================================
 * Client requests
 * ====================================================================== */

int km_ws_strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void km_ws_request_clear(struct km_ws_request *req)
{
    for (size_t i = 0; i < req->n_names; i++)
        free(req->names[i]);
    free(req->names);
    for (size_t i = 0; i < req->n_since; i++) {
        free(req->since[i].topic);
        free(req->since[i].host);
    }
    free(req->since);
    memset(req, 0, sizeof *req);
}

static int km_is_text_ping(const char *text, size_t len)
{
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    while (len && isspace((unsigned char)*text))
        text++, len--;
    return len == 4 && strncasecmp(text, "ping", 4) == 0;
}

/* One since entry (topic, host or NULL, seq v) into out->since (room made
   by the caller). 0, or -1 with detail. */
static int km_since_add(struct km_ws_request *out, const char *topic, const char *host,
                        json_t *v, char *detail, size_t detaillen)
{
    struct km_ws_since *e = &out->since[out->n_since];

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        if (host)
            snprintf(detail, detaillen,
                     "since.%s.%s must be a non-negative integer (the last seq seen)",
                     topic, host);
        else
            snprintf(detail, detaillen,
                     "since.%s must be a non-negative integer (the last seq seen) or "
                     "an object of host -> last seq seen",
                     topic);
        return -1;
    }
    if (!(e->topic = strdup(topic)) || (host && !(e->host = strdup(host)))) {
        free(e->topic);
        e->topic = NULL;
        snprintf(detail, detaillen, KM_WS_NOMEM);
        return -1;
    }
    e->seq = (uint64_t)json_integer_value(v);
    out->n_since++;
    return 0;
}

static int km_parse_subscribe(json_t *j, struct km_ws_request *out, char *detail,
                              size_t detaillen)
{
    json_t *subs = json_object_get(j, "subscriptions");
    json_t *since = json_object_get(j, "since");
    size_t i;
    json_t *v;

    if (!json_is_array(subs)) {
        snprintf(detail, detaillen, "\"subscriptions\" must be an array of topic names");
        return -1;
    }
    if (json_array_size(subs) > KM_WS_MAX_SUBS) {
        snprintf(detail, detaillen, "at most %d subscriptions", KM_WS_MAX_SUBS);
        return -1;
    }
    out->names = calloc(json_array_size(subs) + 1, sizeof *out->names);
    if (!out->names)
        goto nomem;
    json_array_foreach(subs, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || !km_topic_name_valid(s)) {
            snprintf(detail, detaillen,
                     "subscriptions[%zu] is not a topic name ([a-z0-9_.-], at most %d "
                     "bytes)",
                     i, KM_TOPIC_NAME_MAX);
            return -1;
        }
        if (!(out->names[out->n_names] = strdup(s)))
            goto nomem;
        out->n_names++;
    }
    qsort(out->names, out->n_names, sizeof *out->names, km_ws_strcmp_p);
    /* unique */
    size_t w = 0;
    for (i = 0; i < out->n_names; i++) {
        if (w && strcmp(out->names[w - 1], out->names[i]) == 0) {
            free(out->names[i]);
            continue;
        }
        out->names[w++] = out->names[i];
    }
    out->n_names = w;

    if (since && !json_is_null(since)) {
        const char *key, *hk;
        size_t total = 0;
        json_t *hv;
        if (!json_is_object(since)) {
            snprintf(detail, detaillen,
                     "\"since\" must be an object of topic -> last seq seen (or of "
                     "topic -> {host: last seq seen})");
            return -1;
        }
        if (json_object_size(since) > KM_WS_MAX_SUBS) {
            snprintf(detail, detaillen, "at most %d entries in \"since\"",
                     KM_WS_MAX_SUBS);
            return -1;
        }
        /* count first: one allocation, and the bound before any work */
        json_object_foreach(since, key, v)
        {
            total += json_is_object(v) ? json_object_size(v) : 1;
        }
        if (total > KM_WS_MAX_SINCE) {
            snprintf(detail, detaillen, "at most %d host entries in \"since\"",
                     KM_WS_MAX_SINCE);
            return -1;
        }
        out->since = calloc(total + 1, sizeof *out->since);
        if (!out->since)
            goto nomem;
        json_object_foreach(since, key, v)
        {
            if (!km_topic_name_valid(key)) {
                snprintf(detail, detaillen,
                         "\"since\" has a key that is not a topic name");
                return -1;
            }
            if (!json_is_object(v)) {
                if (km_since_add(out, key, NULL, v, detail, detaillen) != 0)
                    return -1;
                continue;
            }
            json_object_foreach(v, hk, hv)
            {
                if (!km_host_name_valid(hk)) {
                    snprintf(detail, detaillen,
                             "since.%s has a key that is not a host name "
                             "([A-Za-z0-9_.-], at most %d bytes)",
                             key, KM_HOST_NAME_MAX);
                    return -1;
                }
                if (km_since_add(out, key, hk, hv, detail, detaillen) != 0)
                    return -1;
            }
        }
    }
    return 0;
nomem:
    snprintf(detail, detaillen, KM_WS_NOMEM);
    return -1;
}

int km_ws_parse_request(const char *text, size_t len, struct km_ws_request *out,
                        char *code, size_t codelen, char *detail, size_t detaillen)
{
    json_error_t jerr;
    json_t *j;
    const char *type;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (km_is_text_ping(text, len)) {
        out->type = KM_WS_REQ_PING;
        return 0;
    }
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        /* Jansson out of memory: it says so, or sets nothing at all (line
           -1, no text). Not the client's bad JSON: say so, not bad_json. */
        if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0]) {
            snprintf(code, codelen, "bad_request");
            snprintf(detail, detaillen, KM_WS_NOMEM);
            return -1;
        }
        snprintf(code, codelen, "bad_json");
        snprintf(detail, detaillen, "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    snprintf(code, codelen, "bad_request");
    if (!json_is_object(j)) {
        snprintf(detail, detaillen, "a request is a JSON object with a \"type\"");
        goto out;
    }
    type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        snprintf(detail, detaillen, "the request has no \"type\" string");
        goto out;
    }
    if (strcmp(type, "ping") == 0) {
        out->type = KM_WS_REQ_PING;
        rc = 0;
    } else if (strcmp(type, "subscribe") == 0) {
        json_t *proto = json_object_get(j, "protocol");
        out->type = KM_WS_REQ_SUBSCRIBE;
        if (proto) {
            const char *ps = json_string_value(proto);
            if (!ps || strcmp(ps, KM_WS_PROTOCOL) != 0) {
                snprintf(code, codelen, "bad_protocol");
                snprintf(detail, detaillen,
                         "unsupported \"protocol\" (this server speaks \"%s\", or the "
                         "original dashboard's protocol when none is given)",
                         KM_WS_PROTOCOL);
                goto out;
            }
            out->katomon = 1;
        }
        rc = km_parse_subscribe(j, out, detail, detaillen);
    } else {
        snprintf(code, codelen, "unknown_type");
        snprintf(detail, detaillen,
                 "unknown message type \"%.64s\" (known: subscribe, ping)", type);
    }
out:
    json_decref(j);
    if (rc != 0) {
        int katomon = out->katomon; /* the caller picks its answer by dialect */
        km_ws_request_clear(out);
        out->katomon = katomon;
    }
    return rc;
}

/* ======================================================================
 * Server messages: shared texts
 * ====================================================================== */

/*
 * An alert item as the original frontend knows it (new reference): a
 * resolved notice goes as level "info" (its message already says
 * "(resolved)"; as "error" it would show as a red ERROR toast), and
 * katomon's "state" stays out. host (a remote host's name, or NULL): the
 * item gains "host" and its message the prefix "[HOST] ", the only place
 * the original frontend shows where an alert comes from.
 */
static json_t *km_compat_alert(json_t *a, const char *host)
{
    const char *state = json_string_value(json_object_get(a, "state"));
    const char *message = json_string_value(json_object_get(a, "message"));
    json_t *o;
    int rc = 0;

    if (!json_is_object(a))
        return json_incref(a);
    /* every step checked: an alert half rewritten (no "[HOST] ", still
       "state") must not go out as if whole; NULL lets the caller fail the
       frame, which it logs */
    if (!(o = json_copy(a)))
        return NULL;
    if (state && strcmp(state, "resolved") == 0)
        rc |= json_object_set_new(o, "level", json_string("info"));
    json_object_del(o, "state");
    if (host) {
        size_t n = message ? strlen(host) + strlen(message) + 4 : 0;
        char *text = n ? malloc(n) : NULL;
        rc |= json_object_set_new(o, "host", json_string(host));
        if (n && !text)
            rc = -1;
        if (text) {
            snprintf(text, n, "[%s] %s", host, message);
            rc |= json_object_set_new(o, "message", json_string(text));
            free(text);
        }
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Rank of an original alert level: the frontend colours a batch's toast by
   its FIRST item, so the most severe goes first. */
static int km_level_rank(json_t *a)
{
    const char *l = json_string_value(json_object_get(a, "level"));
    return !l ? 3 : strcmp(l, "error") == 0 ? 0 : strcmp(l, "warning") == 0 ? 1 : 2;
}

/*
 * The alert list as the original frontend knows it (new reference): each
 * item through km_compat_alert, errors first, then warnings, then info (a
 * resolved notice), each group in published order. A batch that resolves
 * one alert and fires another must not show as a blue INFO toast.
 */
static json_t *km_compat_alerts(json_t *alerts, const char *host)
{
    json_t *list = json_array(), *a;
    size_t i;

    for (int rank = 0; list && rank <= 3; rank++)
        json_array_foreach(alerts, i, a)
        {
            json_t *c = km_compat_alert(a, host);
            /* a lost item would be an alert never shown: all or nothing */
            if (!c || (km_level_rank(c) == rank && json_array_append(list, c) != 0)) {
                json_decref(c);
                json_decref(list);
                return NULL;
            }
            json_decref(c);
        }
    return list;
}

/* The text of a session_event or system_alert for one dialect, into tb.
   host: the remote host that published msg, or NULL (this host). */
static void km_event_text(struct km_tb *tb, struct km_msg *msg, int alerts,
                          enum km_ws_dialect d, const char *ts, const char *host)
{
    json_t *body = km_msg_json(msg), *o = json_object(), *v;
    const char *k;
    int rc = 0; /* any -1: a field is missing, the text must not go out */

    if (!o) {
        tb->failed = 1;
        return;
    }
    rc |= json_object_set_new(o, "type",
                              json_string(alerts ? "system_alert" : "session_event"));
    if (alerts && !json_object_get(body, "id")) {
        char id[40];
        snprintf(id, sizeof id, "alert_%lld", (long long)(km_msg_time_us(msg) / 1000));
        rc |= json_object_set_new(o, "id", json_string(id));
    }
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "seq") == 0 ||
            (host && (strcmp(k, "host") == 0 || strcmp(k, "epoch") == 0)))
            continue;
        if (alerts && d == KM_WS_COMPAT && strcmp(k, "alerts") == 0 && json_is_array(v)) {
            rc |= json_object_set_new(o, k, km_compat_alerts(v, host));
        } else {
            rc |= json_object_set(o, k, v); /* a reference, not a copy */
        }
    }
    if (!json_object_get(body, "timestamp"))
        rc |= json_object_set_new(o, "timestamp", json_string(ts));
    if (d == KM_WS_KATOMON)
        rc |= json_object_set_new(o, "seq", json_integer((json_int_t)km_msg_seq(msg)));
    if (host) {
        rc |= json_object_set_new(o, "host", json_string(host));
        if (d == KM_WS_KATOMON)
            rc |= json_object_set_new(o, "epoch",
                                      json_integer((json_int_t)km_msg_epoch(msg)));
    }
    /* Before this check, a failed set (ENOMEM) left the field out and the
       event went out without it - e.g. a session_event without its "data" -
       with nothing logged (issue 17, allocation-failure test). */
    if (rc)
        tb->failed = 1;
    else
        km_tb_json(tb, o);
    json_decref(o);
}

int km_ws_encode_event(struct km_tb *tb, struct km_msg *msg, enum km_ws_dialect d)
{
    const char *name = km_topic_name(km_msg_topic(msg));
    const char *host = km_msg_host(msg) != 0 ? km_msg_host_name(msg) : NULL;
    int alerts = strcmp(name, "system_alerts") == 0;
    char ts[KM_ISO_LEN];

    km_format_iso(km_msg_time_us(msg), 6, ts, sizeof ts);
    if (alerts || strcmp(name, "session_events") == 0) {
        km_event_text(tb, msg, alerts, d, ts, host);
        return 0;
    }
    /* katomon's own envelope: the same bytes for both dialects */
    const char *text;
    size_t tlen;
    char num[32];
    km_tb_str(tb, "{\"type\":\"event\",\"topic\":\"");
    km_tb_str(tb, name); /* [a-z0-9_.-]: nothing to escape */
    if (host) {
        km_tb_str(tb, "\",\"host\":\"");
        km_tb_str(tb, host); /* [A-Za-z0-9_.-]: nothing to escape */
        snprintf(num, sizeof num, "%lld", (long long)km_msg_epoch(msg));
        km_tb_str(tb, "\",\"epoch\":");
        km_tb_str(tb, num);
        km_tb_str(tb, ",\"seq\":");
    } else {
        km_tb_str(tb, "\",\"seq\":");
    }
    snprintf(num, sizeof num, "%llu", (unsigned long long)km_msg_seq(msg));
    km_tb_str(tb, num);
    km_tb_str(tb, ",\"timestamp\":\"");
    km_tb_str(tb, ts);
    km_tb_str(tb, "\",\"data\":");
    if ((text = km_msg_text(msg, &tlen)))
        km_tb_add(tb, text, tlen);
    else
        tb->failed = 1;
    km_tb_str(tb, "}");
    return 1;
}

/* One realtime_update being written. */
struct km_rt {
    struct km_tb *tb;     /* the text */
    struct km_bus *bus;   /* read */
    enum km_ws_view view; /* what of the other hosts goes in */
    int host;             /* whose values the current pass writes */
    int count;            /* topic values written in all */
    int in_obj;           /* keys written in the current object */
    int hosts_open;       /* KM_WS_VIEW_HOSTS: the "hosts" object is open */
};

/* 1 when a remote host's value of t counts as that host's data: the core's
   hosts topic describes the fleet as this host sees it, and a copy bridged
   from another host would only confuse. */
static int km_rt_remote_ok(const struct km_topic *t)
{
    return strcmp(km_topic_name(t), KM_WS_TOPIC_HOSTS) != 0;
}

/* Appends "name":<text>, the key of t and the cached text of m. */
static void km_rt_put(struct km_rt *r, const struct km_topic *t, const char *text,
                      size_t len)
{
    km_tb_str(r->tb, r->in_obj ? ",\"" : "\"");
    km_tb_str(r->tb, km_topic_name(t));
    km_tb_str(r->tb, "\":");
    km_tb_add(r->tb, text, len);
    r->in_obj++;
    r->count++;
}

/*
 * A remote item of a compatible client's aggregate (new reference): an
 * object gets "host" and its string "name" the prefix "HOST/" (so two hosts'
 * "kato" containers stay apart in the original frontend's lists, which key
 * on the name); anything else goes as is.
 */
static json_t *km_rt_remote_item(json_t *item, const char *host)
{
    const char *name = json_string_value(json_object_get(item, "name"));
    json_t *o;
    int rc = 0;

    if (!json_is_object(item))
        return json_incref(item);
    /* NULL on ENOMEM (the caller fails the frame): an item without its
       "host" or its "HOST/" prefix would merge with this host's own */
    if (!(o = json_copy(item)))
        return NULL;
    rc |= json_object_set_new(o, "host", json_string(host));
    if (name) {
        size_t n = strlen(host) + strlen(name) + 2;
        char *text = malloc(n);
        if (text) {
            snprintf(text, n, "%s/%s", host, name);
            rc |= json_object_set_new(o, "name", json_string(text));
            free(text);
        } else {
            rc = -1;
        }
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/*
 * The aggregate of every host's value of t (new reference), base its
 * value from host `base` (the first host that has one): base's keys, and
 * each top-level array the concatenation of every host's array under
 * that key, host order, remote items through km_rt_remote_item. NULL on
 * ENOMEM.
 */
static json_t *km_rt_merge(struct km_rt *r, struct km_topic *t, int base)
{
    unsigned nh = km_bus_host_count(r->bus);
    json_t *body = km_msg_json(km_topic_latest_host(t, base)), *o = json_object(), *v;
    const char *k;

    if (!o)
        return NULL;
    /* every set and append checked: a key or an item lost to ENOMEM made
       a realtime_update with part of the fleet missing, silently */
    json_object_foreach(body, k, v)
    {
        json_t *list;
        if (!json_is_array(v)) {
            if (json_object_set(o, k, v) != 0) { /* a reference, not a copy */
                json_decref(o);
                return NULL;
            }
            continue;
        }
        if (!(list = json_array())) {
            json_decref(o);
            return NULL;
        }
        for (unsigned h = (unsigned)base; h < nh; h++) {
            struct km_msg *m = km_topic_latest_host(t, (int)h);
            json_t *arr = m ? json_object_get(km_msg_json(m), k) : NULL, *item;
            const char *host = h ? km_bus_host_name(r->bus, (int)h) : NULL;
            size_t i;
            if (!json_is_array(arr))
                continue;
            json_array_foreach(arr, i, item)
            {
                if (json_array_append_new(list, host ? km_rt_remote_item(item, host)
                                                     : json_incref(item)) != 0) {
                    json_decref(list);
                    json_decref(o);
                    return NULL;
                }
            }
        }
        if (json_object_set_new(o, k, list) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* KM_WS_VIEW_AGGREGATE: t's value in "data" with every host's items. A
   topic no remote host has a value of goes as it would locally. */
static void km_rt_add_aggregate(struct km_rt *r, struct km_topic *t)
{
    unsigned nh = km_bus_host_count(r->bus);
    int base = km_topic_latest_host(t, 0) ? 0 : -1, remote = 0;
    struct km_msg *m;
    json_t *o;
    const char *text;
    size_t len;

    for (unsigned h = 1; h < nh && km_rt_remote_ok(t); h++)
        if (km_topic_latest_host(t, (int)h)) {
            remote = 1;
            if (base < 0)
                base = (int)h;
            break;
        }
    if (base < 0)
        return;
    if (!remote) {
        m = km_topic_latest_host(t, 0);
        if ((text = km_msg_text(m, &len)))
            km_rt_put(r, t, text, len);
        else
            r->tb->failed = 1;
        return;
    }
    if (!(o = km_rt_merge(r, t, base))) {
        r->tb->failed = 1;
        return;
    }
    km_tb_str(r->tb, r->in_obj ? ",\"" : "\"");
    km_tb_str(r->tb, km_topic_name(t));
    km_tb_str(r->tb, "\":");
    km_tb_json(r->tb, o);
    json_decref(o);
    r->in_obj++;
    r->count++;
}

/* Appends t's value of host r->host, when it has one (for a remote host the
   first one opens "hosts" and the host's object). */
static void km_rt_add(struct km_topic *t, void *arg)
{
    struct km_rt *r = arg;
    struct km_msg *m;
    const char *text;
    size_t len;

    if (!t || km_topic_kind(t) != KM_TOPIC_STATE)
        return;
    if (r->view == KM_WS_VIEW_AGGREGATE) {
        km_rt_add_aggregate(r, t);
        return;
    }
    if (r->host && !km_rt_remote_ok(t))
        return;
    if (!(m = km_topic_latest_host(t, r->host)))
        return;
    if (!(text = km_msg_text(m, &len))) {
        r->tb->failed = 1;
        return;
    }
    if (r->host && r->in_obj == 0) {
        km_tb_str(r->tb, r->hosts_open ? "},\"" : "},\"hosts\":{\"");
        km_tb_str(r->tb, km_bus_host_name(r->bus, r->host)); /* nothing to escape */
        km_tb_str(r->tb, "\":{");
        r->hosts_open = 1;
    }
    km_rt_put(r, t, text, len);
}

/* Calls km_rt_add for names[0..n), or every topic when all. */
static void km_rt_pass(struct km_rt *r, char *const *names, size_t n, int all)
{
    if (all) {
        km_bus_foreach(r->bus, km_rt_add, r);
        return;
    }
    for (size_t i = 0; i < n; i++)
        km_rt_add(km_bus_find(r->bus, names[i]), r);
}

int km_ws_encode_state(struct km_tb *tb, struct km_bus *bus, char *const *names, size_t n,
                       int all, enum km_ws_view view)
{
    struct km_rt r = {.tb = tb, .bus = bus, .view = view};
    char ts[KM_ISO_LEN];

    km_format_iso(km_wall_us(), 6, ts, sizeof ts);
    km_tb_str(tb, "{\"type\":\"realtime_update\",\"timestamp\":\"");
    km_tb_str(tb, ts);
    km_tb_str(tb, "\",\"data\":{");
    km_rt_pass(&r, names, n, all);
    if (view == KM_WS_VIEW_HOSTS) {
        unsigned nh = km_bus_host_count(bus);
        /* "data" is closed by the first remote host's "},": see km_rt_add */
        for (unsigned h = 1; h < nh; h++) {
            r.host = (int)h;
            r.in_obj = 0;
            km_rt_pass(&r, names, n, all);
        }
        if (r.hosts_open)
            km_tb_str(tb, "}}}");
        else
            km_tb_str(tb, "}}");
        return r.count;
    }
    km_tb_str(tb, "}}");
    return r.count;
}

/* ======================================================================
 * Server messages: one-client replies
 * ====================================================================== */

json_t *km_ws_heartbeat_msg(void)
{
    char ts[KM_ISO_LEN];
    km_format_iso(km_wall_us(), 6, ts, sizeof ts);
    return json_pack("{s:s, s:s}", "type", "heartbeat", "timestamp", ts);
}

json_t *km_ws_error_msg(const char *code, const char *detail, json_t *topics)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "type", "error", "error", code, "detail", detail);

    if (o && topics)
        json_object_set(o, "topics", topics);
    return o;
}

/* {"topic": last seq} of the subscribed event topics, for the ack: where a
   client that asked no `since` starts. New reference. */
static json_t *km_subscribed_seqs(struct km_bus *bus, const struct km_ws_request *req)
{
    json_t *seqs = json_object();

    for (size_t i = 0; seqs && i < req->n_names; i++) {
        struct km_topic *t = km_bus_find(bus, req->names[i]);
        /* NULL on ENOMEM (the ack then fails): an ack with a topic's
           last_seq missing would tell the client a wrong place to resume */
        if (t && km_topic_kind(t) == KM_TOPIC_EVENT &&
            json_object_set_new(seqs, req->names[i],
                                json_integer((json_int_t)km_topic_last_seq(t))) != 0) {
            json_decref(seqs);
            return NULL;
        }
    }
    return seqs;
}

/* The ack's fleet part: "host", "hosts", "epochs" and "hosts_last_seq"
   (remote host -> subscribed event topic -> its last seq there, for the
   topics it has messages on). 0, or -1 on ENOMEM. */
static int km_ack_hosts(json_t *ack, struct km_bus *bus, const struct km_ws_request *req)
{
    unsigned nh = km_bus_host_count(bus);
    json_t *names = json_array(), *epochs = json_object(), *seqs = json_object();
    int rc = -1;

    if (!names || !epochs || !seqs)
        goto out;
    for (unsigned h = 0; h < nh; h++) {
        const char *name = km_bus_host_name(bus, (int)h);
        struct km_bus_host info;
        json_t *hs = NULL;
        if (!name || km_bus_host_info(bus, (int)h, &info) != 0 || info.forgotten)
            continue;
        /* every step checked: a host left out of the ack is silently absent */
        if (json_array_append_new(names, json_string(name)) != 0 ||
            json_object_set_new(epochs, name, json_integer((json_int_t)info.epoch)) != 0)
            goto out;
        for (size_t i = 0; h && i < req->n_names; i++) {
            struct km_topic *t = km_bus_find(bus, req->names[i]);
            uint64_t last;
            if (!t || km_topic_kind(t) != KM_TOPIC_EVENT ||
                !(last = km_topic_last_seq_host(t, (int)h)))
                continue;
            if (!hs &&
                (!(hs = json_object()) || json_object_set_new(seqs, name, hs) != 0))
                goto out;
            if (json_object_set_new(hs, req->names[i], json_integer((json_int_t)last)) !=
                0)
                goto out;
        }
    }
    if (json_object_set_new(ack, "host", json_string(km_bus_host_name(bus, 0))) == 0 &&
        json_object_set(ack, "hosts", names) == 0 &&
        json_object_set(ack, "epochs", epochs) == 0 &&
        json_object_set(ack, "hosts_last_seq", seqs) == 0)
        rc = 0;
out:
    json_decref(names);
    json_decref(epochs);
    json_decref(seqs);
    return rc;
}

json_t *km_ws_ack_msg(struct km_bus *bus, const struct km_ws_request *req,
                      json_t **unknown)
{
    json_t *subs = json_array(), *unk = json_array(), *ack = NULL;
    char ts[KM_ISO_LEN];

    *unknown = NULL;
    if (!subs || !unk)
        goto out;
    for (size_t i = 0; i < req->n_names; i++) {
        /* a name lost here would be a subscription the client believes
           acknowledged, or an unknown topic it is never told about */
        if (json_array_append_new(subs, json_string(req->names[i])) != 0 ||
            (!km_bus_find(bus, req->names[i]) &&
             json_array_append_new(unk, json_string(req->names[i])) != 0))
            goto out;
    }
    km_format_iso(km_wall_us(), 6, ts, sizeof ts);
    ack = json_pack("{s:s, s:O, s:O, s:s, s:I, s:o}", "type", "subscription_ack",
                    "subscriptions", subs, "unknown", unk, "timestamp", ts, "epoch",
                    (json_int_t)km_bus_epoch(bus), "last_seq",
                    km_subscribed_seqs(bus, req));
    if (ack && km_ack_hosts(ack, bus, req) != 0) {
        json_decref(ack);
        ack = NULL;
    }
    if (ack)
        *unknown = json_incref(unk);
out:
    json_decref(subs);
    json_decref(unk);
    return ack;
}

void km_ws_unknown_detail(json_t *unknown, char *buf, size_t len)
{
    size_t n = 0;

    n += (size_t)snprintf(buf, len, "unknown topic(s):");
    for (size_t i = 0; i < json_array_size(unknown) && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s %s", i ? "," : "",
                              json_string_value(json_array_get(unknown, i)));
    if (n < len)
        snprintf(buf + n, len - n, "; kept, and delivered if a plugin declares them");
}

json_t *km_ws_replay_gap_msg(const struct km_ws_gap *g)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "type", "replay_gap", "topic", g->topic,
        "requested_since", (json_int_t)g->requested_since, "oldest_available",
        (json_int_t)g->oldest_available, "last_seq", (json_int_t)g->last_seq, "missed",
        (json_int_t)g->missed, "reason", g->reason);

    if (o && ((g->host && json_object_set_new(o, "host", json_string(g->host)) != 0) ||
              (strcmp(g->reason, "truncated") == 0 &&
               json_object_set_new(o, "resume_since",
                                   json_integer((json_int_t)g->resume_since)) != 0))) {
        json_decref(o); /* all or nothing, as one json_pack was */
        return NULL;
    }
    return o;
}
