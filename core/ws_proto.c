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
 * Subscribe: a compatible client's set grows to the union of every set it
 * sent, silently (the hub's km_ws_subscribe_compat); a katomon/1 client's
 * is replaced and acknowledged. The dialect is declared by "protocol":
 * "katomon/1" in a subscribe and holds for the connection.
 *
 * Replies (katomon/1 only, but heartbeat): {"type":"heartbeat","timestamp"}
 * for text "ping";
 * {"type":"subscription_ack","subscriptions":[...],"unknown":[...],
 * "timestamp","epoch":E,"last_seq":{"session_events":N,...}} for every
 * subscribe (epoch: this run of the daemon, see km_bus_epoch - a client
 * whose seqs came from another epoch must start again from 0; last_seq: the
 * current seq of each subscribed event topic) ("unknown" lists names with no topic on
 * the bus yet; they stay subscribed and are delivered if a plugin declares
 * them later); {"type":"error","error":CODE,"detail":TEXT[,"topics":[..]]}
 * for bad JSON (bad_json), a bad request (bad_request, bad_since), an
 * unknown type (unknown_type) or unknown topics (unknown_topic); and for a
 * `since` that cannot be honoured fully, before the replayed messages:
 * {"type":"replay_gap","topic":T,"requested_since":N,"oldest_available":M,
 *  "last_seq":L,"missed":K,"reason":R} (M is 0 when the ring is empty):
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
    for (size_t i = 0; i < req->n_since; i++)
        free(req->since[i].topic);
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
        const char *key;
        if (!json_is_object(since)) {
            snprintf(detail, detaillen,
                     "\"since\" must be an object of topic -> last seq seen");
            return -1;
        }
        if (json_object_size(since) > KM_WS_MAX_SUBS) {
            snprintf(detail, detaillen, "at most %d entries in \"since\"",
                     KM_WS_MAX_SUBS);
            return -1;
        }
        out->since = calloc(json_object_size(since) + 1, sizeof *out->since);
        if (!out->since)
            goto nomem;
        json_object_foreach(since, key, v)
        {
            if (!km_topic_name_valid(key)) {
                snprintf(detail, detaillen,
                         "\"since\" has a key that is not a topic name");
                return -1;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                snprintf(detail, detaillen,
                         "since.%s must be a non-negative integer (the last seq seen)",
                         key);
                return -1;
            }
            if (!(out->since[out->n_since].topic = strdup(key)))
                goto nomem;
            out->since[out->n_since].seq = (uint64_t)json_integer_value(v);
            out->n_since++;
        }
    }
    return 0;
nomem:
    snprintf(detail, detaillen, "out of memory");
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
 * katomon's "state" stays out.
 */
static json_t *km_compat_alert(json_t *a)
{
    const char *state = json_string_value(json_object_get(a, "state"));
    json_t *o;

    if (!json_is_object(a) || !(o = json_copy(a)))
        return json_incref(a);
    if (state && strcmp(state, "resolved") == 0)
        json_object_set_new(o, "level", json_string("info"));
    json_object_del(o, "state");
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
static json_t *km_compat_alerts(json_t *alerts)
{
    json_t *list = json_array(), *a;
    size_t i;

    for (int rank = 0; list && rank <= 3; rank++)
        json_array_foreach(alerts, i, a)
        {
            json_t *c = km_compat_alert(a);
            if (km_level_rank(c) == rank)
                json_array_append(list, c);
            json_decref(c);
        }
    return list;
}

/* The text of a session_event or system_alert for one dialect, into tb. */
static void km_event_text(struct km_tb *tb, struct km_msg *msg, int alerts,
                          enum km_ws_dialect d, const char *ts)
{
    json_t *body = km_msg_json(msg), *o = json_object(), *v;
    const char *k;

    if (!o) {
        tb->failed = 1;
        return;
    }
    json_object_set_new(o, "type",
                        json_string(alerts ? "system_alert" : "session_event"));
    if (alerts && !json_object_get(body, "id")) {
        char id[40];
        snprintf(id, sizeof id, "alert_%lld", (long long)(km_msg_time_us(msg) / 1000));
        json_object_set_new(o, "id", json_string(id));
    }
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "seq") == 0)
            continue;
        if (alerts && d == KM_WS_COMPAT && strcmp(k, "alerts") == 0 && json_is_array(v)) {
            json_object_set_new(o, k, km_compat_alerts(v));
        } else {
            json_object_set(o, k, v); /* a reference, not a copy */
        }
    }
    if (!json_object_get(body, "timestamp"))
        json_object_set_new(o, "timestamp", json_string(ts));
    if (d == KM_WS_KATOMON)
        json_object_set_new(o, "seq", json_integer((json_int_t)km_msg_seq(msg)));
    km_tb_json(tb, o);
    json_decref(o);
}

int km_ws_encode_event(struct km_tb *tb, struct km_msg *msg, enum km_ws_dialect d)
{
    const char *name = km_topic_name(km_msg_topic(msg));
    int alerts = strcmp(name, "system_alerts") == 0;
    char ts[KM_ISO_LEN];

    km_format_iso(km_msg_time_us(msg), 6, ts, sizeof ts);
    if (alerts || strcmp(name, "session_events") == 0) {
        km_event_text(tb, msg, alerts, d, ts);
        return 0;
    }
    /* katomon's own envelope: the same bytes for both dialects */
    const char *text;
    size_t tlen;
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)km_msg_seq(msg));
    km_tb_str(tb, "{\"type\":\"event\",\"topic\":\"");
    km_tb_str(tb, name); /* [a-z0-9_.-]: nothing to escape */
    km_tb_str(tb, "\",\"seq\":");
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

/* Appends "name":<latest text> for a state topic with a value. */
static void km_rt_add(struct km_tb *tb, struct km_topic *t, int *count)
{
    struct km_msg *m;
    const char *text;
    size_t len;

    if (!t || km_topic_kind(t) != KM_TOPIC_STATE || !(m = km_topic_latest(t)))
        return;
    if (!(text = km_msg_text(m, &len))) {
        tb->failed = 1;
        return;
    }
    km_tb_str(tb, *count ? ",\"" : "\"");
    km_tb_str(tb, km_topic_name(t));
    km_tb_str(tb, "\":");
    km_tb_add(tb, text, len);
    (*count)++;
}

struct km_rt_all {
    struct km_tb *tb; /* text being built */
    int *count;       /* keys so far */
};

static void km_rt_add_each(struct km_topic *t, void *arg)
{
    struct km_rt_all *a = arg;
    km_rt_add(a->tb, t, a->count);
}

int km_ws_encode_state(struct km_tb *tb, struct km_bus *bus, char *const *names, size_t n,
                       int all)
{
    char ts[KM_ISO_LEN];
    int count = 0;

    km_format_iso(km_wall_us(), 6, ts, sizeof ts);
    km_tb_str(tb, "{\"type\":\"realtime_update\",\"timestamp\":\"");
    km_tb_str(tb, ts);
    km_tb_str(tb, "\",\"data\":{");
    if (all) {
        struct km_rt_all a = {tb, &count};
        km_bus_foreach(bus, km_rt_add_each, &a);
    } else {
        for (size_t i = 0; i < n; i++)
            km_rt_add(tb, km_bus_find(bus, names[i]), &count);
    }
    km_tb_str(tb, "}}");
    return count;
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
        if (t && km_topic_kind(t) == KM_TOPIC_EVENT)
            json_object_set_new(seqs, req->names[i],
                                json_integer((json_int_t)km_topic_last_seq(t)));
    }
    return seqs ? seqs : json_object();
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
        json_array_append_new(subs, json_string(req->names[i]));
        if (!km_bus_find(bus, req->names[i]))
            json_array_append_new(unk, json_string(req->names[i]));
    }
    km_format_iso(km_wall_us(), 6, ts, sizeof ts);
    ack = json_pack("{s:s, s:O, s:O, s:s, s:I, s:o}", "type", "subscription_ack",
                    "subscriptions", subs, "unknown", unk, "timestamp", ts, "epoch",
                    (json_int_t)km_bus_epoch(bus), "last_seq",
                    km_subscribed_seqs(bus, req));
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

    if (o && strcmp(g->reason, "truncated") == 0 &&
        json_object_set_new(o, "resume_since",
                            json_integer((json_int_t)g->resume_since)) != 0) {
        json_decref(o); /* all or nothing, as one json_pack was */
        return NULL;
    }
    return o;
}
