/*
 * redis_bridge - this host's bus on Redis pub/sub, and the other hosts'
 * from it (issue 15). Two halves, each with its own connection, each
 * switched off by its key (`publish`, `subscribe`), each working while the
 * other's connection is down:
 *
 * Publishing (this file; conn.c): every message of the chosen topics
 * (`topics`, default every topic but our own and the core's `hosts`,
 * which are this katomon's view, not its data) goes out as
 *
 *   PUBLISH PREFIX:HOST:TOPIC "KM1 SIG JSON"
 *
 * JSON being {"v":1,"host","topic","kind","seq","epoch","time","body"}
 * around the message's own JSON text as the bus encoded it, SIG its
 * HMAC-SHA256 with the shared secret (or "-"). When Redis is down, slow
 * or refuses, the local host keeps working: a message that cannot go out
 * now is dropped and counted (no connection; max_pending replies
 * outstanding; larger than max_payload), never queued without bound.
 * On (re)connect the latest value of every state topic sent so far goes
 * out again, so a receiver sees the current state without waiting for
 * the next update; and a state topic not sent for resend_interval goes
 * out again too (pub/sub keeps nothing for an edge that subscribes later).
 *
 * Only this host's messages go out (km_host.subscribe gets host 0 only),
 * so what came from Redis never goes back to it.
 *
 * Subscribing (sub.c): PSUBSCRIBE PREFIX:*; every other host's message,
 * checked (names, size, signature, the channel matching the envelope, a
 * topic declared here), is published on this bus as that host's
 * (km_host.publish_remote); refusals are counted by reason.
 *
 * HOST is [core] host_name (km_host.host_name(ctx, 0)).
 *
 * Health: the state topic `redis_bridge` with "_source" (healthy when
 * every half that runs is connected, and the last PUBLISH succeeded) and
 * the counters of both halves, published when a connection's health
 * changes, when a burst of refusals starts, and every KB_TICK_S seconds;
 * series katomon_source_up{source="redis",topic="redis_bridge"},
 * katomon_redis_bridge_*_total and
 * katomon_redis_bridge_refused_total{reason=...}.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <katomon/plugin.h>
#include <katomon/source.h>
#include <katomon/util.h>

#include "bridge.h"

#define KB_TICK_S      5.0  /* health topic at least this often, seconds */
#define KB_TOPICS_MAX  256  /* names in `topics` */
#define KB_STATES_MAX  1024 /* state topics remembered for the resend */
#define KB_CHANNEL_MAX (KB_HOST_NAME_MAX * 3 + 3)

struct kb_state kb;

/* A state topic sent so far, for kb_resend_states and the refresh. */
struct kb_seen {
    struct km_topic *topic; /* borrowed from the bus */
    uint64_t round;         /* the refresh round it was last sent in */
};

static struct kb_seen seen[KB_STATES_MAX];
static size_t nseen;
static uint64_t round_no;        /* refresh rounds so far */
static struct km_timer *refresh; /* every resend_interval; NULL: none */
static int oversize_warned;      /* the first oversized message was logged */

/* ---- config ---- */

static const struct km_conf_key kb_keys[] = {
    {"url", KM_CONF_STRING, "redis://127.0.0.1:6379/0", 0, 0,
     "Redis, redis://[[user]:password@]host[:port][/db] (numeric host or localhost)"},
    {"publish", KM_CONF_BOOL, "true", 0, 0,
     "publish this host's topics on Redis (false: an edge that only listens)"},
    {"subscribe", KM_CONF_BOOL, "true", 0, 0,
     "take the other hosts' topics from Redis onto this bus"},
    {"prefix", KM_CONF_STRING, "katomon", 0, 0,
     "channel prefix, [A-Za-z0-9_.-]{1,64}: channels are PREFIX:HOST:TOPIC"},
    {"topics", KM_CONF_STRING, "*", 0, 0,
     "comma-separated topics to publish; * = every topic but redis_bridge and hosts"},
    {"secret", KM_CONF_STRING, NULL, 0, 0,
     "shared secret: payloads are signed with HMAC-SHA256 (unset: unsigned)"},
    {"secret_file", KM_CONF_STRING, NULL, 0, 0,
     "file holding the shared secret (read at start; instead of secret)"},
    {"max_payload", KM_CONF_INT, "1048576", 1024, 512 << 20,
     "largest payload sent or taken, bytes; a larger message is dropped and counted"},
    {"max_pending", KM_CONF_INT, "1000", 1, 1000000,
     "PUBLISH replies outstanding before new messages are dropped and counted"},
    {"timeout", KM_CONF_DOUBLE, "3", 0.1, 600,
     "seconds Redis may take to accept the connection or to answer"},
    {"reconnect_min", KM_CONF_DOUBLE, "0.5", 0.01, 3600,
     "seconds before the first reconnect; doubles per failure, jittered"},
    {"reconnect_max", KM_CONF_DOUBLE, "30", 0.01, 86400,
     "longest wait between reconnect attempts, seconds"},
    {"resend_interval", KM_CONF_DOUBLE, "5", 0, 86400,
     "a state topic not sent for this many seconds is sent again (its latest "
     "value): edges that joined late catch up; 0: only on reconnect"},
    {"log_interval", KM_CONF_DOUBLE, "10", 0.1, 86400,
     "refused messages from Redis: the first of a burst is logged, then one "
     "summary line per this many seconds"},
    {NULL, 0, NULL, 0, 0, NULL},
};

/* ---- the health topic ---- */

static const struct km_field source_fields[] = KM_SOURCE_FIELDS;

static const struct km_field refused_fields[] = {
    KM_FIELD("reason", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_field refused_item[] = {
    KM_FIELD_OBJECT(NULL, 0, refused_fields),
    KM_FIELD_END,
};

static const struct km_field health_schema[] = {
    KM_FIELD("publish", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("subscribe", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("connected", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("subscribed", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("redis", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("host", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("prefix", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("published", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("failed", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("dropped_oversize", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("dropped_pending", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("dropped_disconnected", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("reconnects", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("pending", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("received", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_ARRAY("refused", KM_F_REQUIRED, refused_item),
    KM_FIELD("sub_reconnects", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_OBJECT("_source", KM_F_REQUIRED, source_fields),
    KM_FIELD_END,
};

static const struct km_metric health_metrics[] = {
    {"published", "redis_bridge_published_total",
     "Messages the bridge published on Redis (PUBLISH answered)", KM_METRIC_COUNTER, 0,
     NULL},
    {"failed", "redis_bridge_publish_failed_total",
     "PUBLISHes Redis refused or lost with the connection", KM_METRIC_COUNTER, 0, NULL},
    {"dropped_oversize", "redis_bridge_dropped_oversize_total",
     "Messages not sent: larger than max_payload", KM_METRIC_COUNTER, 0, NULL},
    {"dropped_pending", "redis_bridge_dropped_pending_total",
     "Messages not sent: max_pending replies outstanding", KM_METRIC_COUNTER, 0, NULL},
    {"dropped_disconnected", "redis_bridge_dropped_disconnected_total",
     "Messages not sent: no connection to Redis", KM_METRIC_COUNTER, 0, NULL},
    {"reconnects", "redis_bridge_reconnects_total",
     "Connections to Redis made again after a loss", KM_METRIC_COUNTER, 0, NULL},
    {"pending", "redis_bridge_pending", "PUBLISHes sent and not answered yet", 0, 0,
     NULL},
    {"connected", "redis_bridge_connected",
     "1 while the publishing connection to Redis is ready", 0, 0, NULL},
    {"subscribed", "redis_bridge_subscribed",
     "1 while subscribed to the other hosts' channels on Redis", 0, 0, NULL},
    {"received", "redis_bridge_received_total",
     "Messages of other hosts taken from Redis onto this bus", KM_METRIC_COUNTER, 0,
     NULL},
    {"refused[]", NULL, NULL, 0, 0, "reason=reason"},
    {"refused[].count", "redis_bridge_refused_total",
     "Messages from Redis refused, by reason", KM_METRIC_COUNTER, 0, NULL},
    {"sub_reconnects", "redis_bridge_subscribe_reconnects_total",
     "Subscribing connections to Redis made again after a loss", KM_METRIC_COUNTER, 0,
     NULL},
    {"_source", "redis", NULL, 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/* "_source": healthy when every connection that runs is; else what is
   wrong with each ("publish: ...; subscribe: ..."). */
static json_t *source_json(void)
{
    const char *pe = kb.conn ? kb_conn_error(kb.conn) : NULL;
    const char *se = kb.sconn ? kb_conn_error(kb.sconn) : NULL;
    unsigned pf = kb.conn ? kb_conn_failures(kb.conn) : 0;
    unsigned sf = kb.sconn ? kb_conn_failures(kb.sconn) : 0;
    char error[1024];

    if (!pe && !se)
        return km_source_json(NULL, 0);
    snprintf(error, sizeof error, "%s%s%s%s%s", pe ? "publish: " : "", pe ? pe : "",
             pe && se ? "; " : "", se ? "subscribe: " : "", se ? se : "");
    return km_source_json(error, pf > sf ? pf : sf);
}

static json_t *refused_json(void)
{
    json_t *a = json_array();

    for (int r = 0; a && r < KB_R_COUNT; r++)
        json_array_append_new(a, json_pack("{s:s, s:I}", "reason",
                                           kb_reason_name((enum kb_reason)r), "count",
                                           (json_int_t)kb.r.refused[r]));
    return a;
}

static void publish_health(void)
{
    struct kb_conn *any = kb.conn ? kb.conn : kb.sconn;
    json_t *m;

    if (!kb.health || !any || kb.stopping)
        return;
    m = json_pack("{s:b, s:b, s:b, s:b, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
                  "s:I, s:I, s:o, "
                  "s:I, s:o}",
                  "publish", kb.conn != NULL, "subscribe", kb.sconn != NULL, "connected",
                  kb.conn && kb_conn_ready(kb.conn), "subscribed",
                  kb.sconn && kb_conn_ready(kb.sconn), "redis", kb_conn_where(any),
                  "host", kb.host_name, "prefix", kb.prefix, "published",
                  (json_int_t)kb.n.published, "failed", (json_int_t)kb.n.failed,
                  "dropped_oversize", (json_int_t)kb.n.dropped_oversize,
                  "dropped_pending", (json_int_t)kb.n.dropped_pending,
                  "dropped_disconnected", (json_int_t)kb.n.dropped_disconnected,
                  "reconnects", (json_int_t)(kb.conn ? kb_conn_reconnects(kb.conn) : 0),
                  "pending", (json_int_t)(kb.conn ? kb_conn_pending(kb.conn, NULL) : 0),
                  "received", (json_int_t)kb.r.received, "refused", refused_json(),
                  "sub_reconnects",
                  (json_int_t)(kb.sconn ? kb_conn_reconnects(kb.sconn) : 0), "_source",
                  source_json());
    if (!m)
        return;
    kb.host->publish(kb.ctx, kb.health, m);
}

void kb_health_changed(void)
{
    publish_health();
}

static void on_tick(void *arg)
{
    (void)arg;
    publish_health();
}

/* ---- sending ---- */

/* 1 when topic t's messages go out. */
static int wanted(struct km_topic *t)
{
    const char *name = kb.host->topic_name(t);

    if (!kb.topics) /* our health and the core's hosts view are this katomon's own */
        return t != kb.health && strcmp(name, "hosts") != 0;
    for (size_t i = 0; i < kb.ntopics; i++)
        if (strcmp(kb.topics[i], name) == 0)
            return 1;
    return 0;
}

/* Notes that state topic t is being sent now. */
static void remember_state(struct km_topic *t)
{
    size_t i;

    for (i = 0; i < nseen && seen[i].topic != t; i++)
        ;
    if (i == nseen && nseen < KB_STATES_MAX)
        seen[nseen++].topic = t;
    if (i < nseen)
        seen[i].round = round_no;
}

/* Sends msg of topic t, or counts why not. */
static void send_msg(struct km_topic *t, struct km_msg *msg)
{
    struct kb_envelope e = {.kind = KB_STATE};
    char channel[KB_CHANNEL_MAX + 1];
    size_t text_len, len, bytes;
    const char *text;
    char *payload;

    if (!kb_conn_ready(kb.conn)) {
        kb.n.dropped_disconnected++;
        return;
    }
    if (kb_conn_pending(kb.conn, &bytes) >= kb.max_pending ||
        bytes >= KB_PENDING_BYTES_MAX) {
        kb.n.dropped_pending++;
        return;
    }
    if (!(text = kb.host->msg_text(msg, &text_len))) {
        kb.n.failed++; /* out of memory */
        return;
    }
    snprintf(e.host, sizeof e.host, "%s", kb.host_name);
    snprintf(e.topic, sizeof e.topic, "%s", kb.host->topic_name(t));
    e.seq = kb.host->msg_seq(msg);
    e.kind = e.seq ? KB_EVENT : KB_STATE;
    e.epoch = kb.epoch;
    e.time = kb.host->msg_time_us(msg);
    payload = kb_envelope_encode(&e, text, text_len, kb.secret, kb.secret_len,
                                 kb.max_payload, &len);
    if (!payload) {
        if (len <= kb.max_payload) {
            kb.n.failed++; /* out of memory */
            return;
        }
        kb.n.dropped_oversize++;
        if (!oversize_warned++)
            kb.host->log(
                kb.ctx, KM_LOG_WARNING,
                "a message of topic %s needs %zu bytes, above max_payload (%zu): "
                "not sent (counted in dropped_oversize; logged once)",
                e.topic, len, kb.max_payload);
        return;
    }
    snprintf(channel, sizeof channel, "%s:%s:%s", kb.prefix, kb.host_name, e.topic);
    if (kb_conn_publish(kb.conn, channel, payload, len) < 0)
        kb.n.failed++;
    free(payload);
}

static void on_msg(struct km_topic *t, struct km_msg *msg, void *arg)
{
    (void)arg;
    if (kb.stopping || !kb.conn || !wanted(t))
        return;
    if (kb.host->msg_seq(msg) == 0)
        remember_state(t);
    send_msg(t, msg);
}

void kb_resend_states(void)
{
    for (size_t i = 0; i < nseen && !kb.stopping; i++) {
        struct km_msg *m = kb.host->topic_latest(seen[i].topic);
        seen[i].round = round_no;
        if (m)
            send_msg(seen[i].topic, m);
    }
}

/* Pub/sub keeps nothing: a receiver that subscribed after a state was
   sent, or missed it, would wait for its next change (a minute for a
   source in backoff). So every state topic not sent during the last
   round goes out again: each at least once per resend_interval, which
   costs nothing for topics that change more often. */
static void on_refresh(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < nseen && !kb.stopping; i++) {
        struct km_msg *m;
        if (seen[i].round == round_no || !(m = kb.host->topic_latest(seen[i].topic)))
            continue;
        send_msg(seen[i].topic, m);
    }
    round_no++;
}

/* ---- init/shutdown ---- */

/* [core] host_name, from the core (it checked the name). */
static int read_host_name(void)
{
    kb.host_name = kb.host->host_name(kb.ctx, 0);
    if (!km_host_name_valid(kb.host_name)) {
        kb.host->log(kb.ctx, KM_LOG_ERROR, "[core] host_name '%.80s' is not a host name",
                     kb.host_name ? kb.host_name : "(none)");
        return -1;
    }
    return 0;
}

/* topics = a, b, c -> kb.topics; "*" -> NULL (every topic). */
static int read_topics(void)
{
    const char *v = kb.host->config_string(kb.ctx, "topics");
    char *copy, *save = NULL;

    if (strspn(v, " \t") == strlen(v) || strcmp(v + strspn(v, " \t"), "*") == 0)
        return 0;
    if (!(copy = strdup(v)) || !(kb.topics = calloc(KB_TOPICS_MAX, sizeof *kb.topics))) {
        free(copy);
        return -1;
    }
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *end = tok + strlen(tok);
        tok += strspn(tok, " \t");
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        if (!km_topic_name_valid(tok) || kb.ntopics == KB_TOPICS_MAX) {
            kb.host->log(
                kb.ctx, KM_LOG_ERROR,
                "topics: '%.80s' is not a topic name ([a-z0-9_.-], 1-64 bytes)%s", tok,
                kb.ntopics == KB_TOPICS_MAX ? ", or one too many" : "");
            free(copy);
            return -1;
        }
        if (!(kb.topics[kb.ntopics] = strdup(tok))) {
            free(copy);
            return -1;
        }
        kb.ntopics++;
    }
    free(copy);
    return 0;
}

/* secret or secret_file -> kb.secret. */
static int read_secret(void)
{
    const char *s = kb.host->config_string(kb.ctx, "secret");
    const char *file = kb.host->config_string(kb.ctx, "secret_file");
    char buf[KB_SECRET_MAX + 2];
    size_t n = 0;

    if (s && file) {
        kb.host->log(kb.ctx, KM_LOG_ERROR, "set secret or secret_file, not both");
        return -1;
    }
    if (file) { /* read once at start: a small local file */
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        ssize_t r = 1;
        if (fd < 0) {
            kb.host->log(kb.ctx, KM_LOG_ERROR, "secret_file %s: %s", file,
                         strerror(errno));
            return -1;
        }
        while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
            n += (size_t)r;
        close(fd);
        if (r < 0 || n > KB_SECRET_MAX) {
            kb.host->log(kb.ctx, KM_LOG_ERROR, "secret_file %s: %s", file,
                         r < 0 ? strerror(errno) : "longer than 4096 bytes");
            return -1;
        }
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            n--;
        s = buf;
    } else if (s) {
        n = strlen(s);
    }
    if (!s)
        return 0;
    if (n == 0 || n > KB_SECRET_MAX) {
        kb.host->log(kb.ctx, KM_LOG_ERROR, "the shared secret is %s",
                     n ? "longer than 4096 bytes" : "empty");
        return -1;
    }
    if (!(kb.secret = malloc(n)))
        return -1;
    memcpy(kb.secret, s, n);
    kb.secret_len = n;
    memset(buf, 0, sizeof buf); /* no copy of a secret_file left on the stack */
    return 0;
}

static void on_pub_ready(void)
{
    kb_resend_states();
}

static int read_config(void)
{
    const char *prefix = kb.host->config_string(kb.ctx, "prefix");
    const char *url = kb.host->config_string(kb.ctx, "url");
    struct kb_conn_conf cc = {
        .role = "publish",
        .timeout = kb.host->config_double(kb.ctx, "timeout"),
        .reconnect_min = kb.host->config_double(kb.ctx, "reconnect_min"),
        .reconnect_max = kb.host->config_double(kb.ctx, "reconnect_max"),
        .on_change = kb_health_changed,
        .on_ready = on_pub_ready};
    char err[512] = "";

    kb.publish = kb.host->config_bool(kb.ctx, "publish");
    kb.subscribe = kb.host->config_bool(kb.ctx, "subscribe");
    kb.log_interval = kb.host->config_double(kb.ctx, "log_interval");
    if (!kb.publish && !kb.subscribe) {
        kb.host->log(kb.ctx, KM_LOG_ERROR,
                     "publish and subscribe are both false: nothing to do (set "
                     "enabled = false to switch the bridge off)");
        return -1;
    }
    if (read_host_name() < 0 || read_topics() < 0 || read_secret() < 0)
        return -1;
    if (!km_host_name_valid(prefix)) {
        kb.host->log(kb.ctx, KM_LOG_ERROR,
                     "prefix '%.80s' is not [A-Za-z0-9_.-], 1-64 bytes", prefix);
        return -1;
    }
    if (!(kb.prefix = strdup(prefix)))
        return -1;
    if (cc.reconnect_min > cc.reconnect_max) {
        kb.host->log(kb.ctx, KM_LOG_ERROR,
                     "reconnect_min (%g) is above reconnect_max (%g)", cc.reconnect_min,
                     cc.reconnect_max);
        return -1;
    }
    kb.max_payload = (size_t)kb.host->config_int(kb.ctx, "max_payload");
    kb.max_pending = (size_t)kb.host->config_int(kb.ctx, "max_pending");
    if (kb.publish && !(kb.conn = kb_conn_new(url, &cc, err, sizeof err))) {
        kb.host->log(kb.ctx, KM_LOG_ERROR, "url: %s", err);
        return -1;
    }
    if (kb.subscribe && kb_sub_start(url, cc.timeout, cc.reconnect_min, cc.reconnect_max,
                                     err, sizeof err) < 0) {
        kb.host->log(kb.ctx, KM_LOG_ERROR, "url: %s", err);
        return -1;
    }
    return 0;
}

static void kb_shutdown(struct km_ctx *ctx);

/* The topic init declares (also struct km_plugin's .topics). */
static const struct km_topic_def kb_topics[] = {
    {"redis_bridge", KM_TOPIC_STATE, health_schema, 0,
     "redis_bridge: connections to Redis and the counters of both halves",
     health_metrics},
    {NULL, 0, NULL, 0, NULL, NULL},
};

static int kb_init(struct km_ctx *ctx, const struct km_host *host)
{
    int err;

    memset(&kb, 0, sizeof kb);
    nseen = 0;
    round_no = 0;
    refresh = NULL;
    oversize_warned = 0;
    kb.host = host;
    kb.ctx = ctx;
    if (!KM_HOST_HAS(host, replay_host) || !host->host_name || !host->publish_remote) {
        host->log(ctx, KM_LOG_ERROR,
                  "this katomon is too old for redis_bridge (no host-aware bus: "
                  "host_name, publish_remote)");
        return -1;
    }
    kb.epoch = host->bus_epoch(ctx);
    if (!(kb.health = host->topic_declare(ctx, &kb_topics[0], &err))) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic redis_bridge: %s",
                  host->strerror(err));
        return -1;
    }
    if (read_config() < 0)
        goto fail;
    publish_health();
    kb.tick = host->timer_add(ctx, KB_TICK_S, KM_TIMER_REPEAT, on_tick, NULL);
    if (kb.publish)
        kb.sub = host->subscribe(ctx, "*", on_msg, NULL);
    if (kb.publish && host->config_double(ctx, "resend_interval") > 0)
        refresh = host->timer_add(ctx, host->config_double(ctx, "resend_interval"),
                                  KM_TIMER_REPEAT, on_refresh, NULL);
    if (!kb.tick || (kb.publish && !kb.sub) ||
        (kb.publish && host->config_double(ctx, "resend_interval") > 0 && !refresh))
        goto fail;
    if (kb.publish)
        host->log(ctx, KM_LOG_INFO, "publishing %s to Redis at %s as %s:%s:TOPIC (%s)",
                  kb.topics ? "the topics listed" : "every topic", kb_conn_where(kb.conn),
                  kb.prefix, kb.host_name, kb.secret ? "signed" : "unsigned");
    if (kb.subscribe)
        host->log(ctx, KM_LOG_INFO,
                  "taking the other hosts' topics from Redis at %s (%s:*; %s)",
                  kb_conn_where(kb.sconn), kb.prefix,
                  kb.secret ? "signed ones only" : "unsigned accepted: no secret");
    return 0;
fail:
    kb_shutdown(ctx);
    return -1;
}

static void kb_shutdown(struct km_ctx *ctx)
{
    (void)ctx;
    kb.stopping = 1;
    kb_conn_free(kb.conn); /* the core removes our timers and subscription */
    kb.conn = NULL;
    kb_sub_stop();
    for (size_t i = 0; i < kb.ntopics; i++)
        free(kb.topics[i]);
    free(kb.topics);
    free(kb.prefix);
    if (kb.secret)
        memset(kb.secret, 0, kb.secret_len);
    free(kb.secret);
    memset(&kb, 0, sizeof kb);
}

KM_PLUGIN_DEFINE(.name = "redis_bridge", .version = "1.1",
                 .description = "bridges katomon hosts over Redis pub/sub: publishes "
                                "this bus's topics (signed envelopes) and takes the "
                                "other hosts' onto it",
                 .config = kb_keys, .init = kb_init, .shutdown = kb_shutdown,
                 .topics = kb_topics);
