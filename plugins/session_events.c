/*
 * session_events - KATO session created/destroyed events.
 *
 * Two sources, best first:
 *   stream  KATO's WebSocket GET /ws/events sends one event per session, with
 *           its id: exact even when sessions come and go between two polls.
 *   counts  differences between two `sessions` messages (kato_metrics polls
 *           /sessions/count): only the net change, without ids.
 * The stream is used whenever KATO offers it; while it is down (KATO without
 * /ws/events, KATO restarting) the plugin follows the counts, and it retries
 * the stream every `retry` seconds. When the stream comes back, its snapshot
 * count is compared with ours so sessions missed in between still show up.
 *
 * Publishes the `session_events` event topic; each message is
 *   {"event_type": "session_created" | "session_destroyed",
 *    "timestamp": "...Z" (microseconds, strictly increasing),
 *    "data": {"current_count", "previous_count", "delta" (current - previous,
 *             so negative for destroyed), "time_since_last_event" (seconds
 *             since the previous event, or since the plugin started for the
 *             first one, as the original counted from its first poll),
 *             "session_id" (stream only), "source" ("stream" or "count")}}
 * which the transport sends as the original dashboard's session_event. The
 * original frontend keys its toasts by timestamp + event_type, so two
 * sessions created in the same millisecond must not share a timestamp:
 * hence microseconds, bumped by one when the clock has not moved on.
 *
 * The stream is the core's WebSocket client (km_host.ws_open: libcurl
 * connects, TLS for an https url, wslay frames): ws://HOST:PORT/ws/events
 * for url = http://HOST:PORT, wss:// for https://, below the url's path
 * when it has one (url = https://gw/kato follows wss://gw/kato/ws/events);
 * a ws:// or wss:// url is the stream itself, whatever its path.
 * Once open, the stream has no read timeout (KATO is silent while nothing
 * happens); liveness is the ping every `ping_interval`, and a stream silent
 * for 2.5 intervals is closed and retried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/plugin.h>
#include <katomon/tls.h>
#include <katomon/util.h>

#define HANDSHAKE_MS   10000 /* connect + TLS + the 101 */
#define STREAM_MSG_MAX 65536 /* largest /ws/events message we accept */
/* Largest session count believed: a count from KATO outside [0, COUNT_MAX]
   is ignored. Below 0 is no count at all, and with counts this small
   current - previous and count + 1 cannot overflow (a snapshot of
   INT64_MAX then a session.created did; found by tests/fuzz). */
#define COUNT_MAX (1LL << 53)

static const struct km_conf_key se_keys[] = {
    {"url", KM_CONF_STRING, "http://127.0.0.1:8000", 0, 0,
     "KATO base URL (http(s)://; the stream is its /ws/events), or the stream's own "
     "URL (ws:// or wss://, any path)"},
    {"stream", KM_CONF_BOOL, "true", 0, 0, "use KATO's /ws/events when it offers it"},
    {"retry", KM_CONF_DOUBLE, "30", 1, 86400,
     "seconds between attempts to open the stream"},
    {"ping_interval", KM_CONF_DOUBLE, "30", 1, 3600,
     "seconds between pings on the stream"},
    {"ring_size", KM_CONF_INT, "512", 16, 65536,
     "events kept for clients that reconnect"},
    KM_TLS_CONF_KEYS,
    {NULL, 0, NULL, 0, 0, NULL},
};

static const struct km_field data_fields[] = {
    KM_FIELD("current_count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("previous_count", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("delta", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("time_since_last_event", KM_NUMBER, KM_F_REQUIRED | KM_F_NULLABLE),
    KM_FIELD("session_id", KM_STRING, 0),
    KM_FIELD("source", KM_STRING, 0),
    KM_FIELD_END,
};

static const struct km_field event_schema[] = {
    KM_FIELD("event_type", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("timestamp", KM_STRING, KM_F_REQUIRED),
    KM_FIELD_OBJECT("data", KM_F_REQUIRED, data_fields),
    KM_FIELD_END,
};

/* The topic init declares (its ring from ring_size; here the default), named
   in the descriptor too (.topics), so a katomon with collect = false knows it
   without running the plugin. .metrics NULL: an event topic has no series. */
static const struct km_topic_def se_topics[] = {
    {"session_events", KM_TOPIC_EVENT, event_schema, 512,
     "KATO sessions created and destroyed", NULL},
    {NULL, 0, NULL, 0, NULL, NULL},
};

/* Where the stream connection stands. */
enum stream_state {
    ST_IDLE,      /* not connected; a retry timer may be pending */
    ST_HANDSHAKE, /* connecting, TLS, or waiting for the 101 */
    ST_OPEN,      /* WebSocket open: events come from here */
};

static struct {
    const struct km_host *host; /* the core */
    struct km_ctx *ctx;         /* our handle */
    struct km_topic *topic;     /* session_events */
    long long count;            /* sessions we believe are active */
    int have_count;             /* count is known */
    int64_t last_event_us;      /* monotonic time of the last event (or of init) */
    int64_t last_stamp_us;      /* wall time of the last event's timestamp */
    /* stream */
    char *ws_url;            /* ws(s)://.../ws/events, from url (owned) */
    struct km_tls_conf tls;  /* ca_file, tls_verify */
    int use_stream;          /* [plugin] stream */
    double retry_s;          /* seconds between stream attempts */
    double ping_s;           /* seconds between pings */
    enum stream_state state; /* see above */
    struct km_ws *ws;        /* the stream, from ws_open until its on_close */
    struct km_timer *retry;  /* next attempt */
    struct km_timer *ping;   /* pings while open */
    int64_t last_rx_us;      /* monotonic time of the last frame received */
    int said_fallback;       /* logged that we follow counts */
} se;

/* ---- events ---- */

static void publish_event(long long current, long long previous, const char *session_id,
                          const char *source)
{
    char when[40];
    int64_t now = km_mono_us();
    int64_t stamp = km_wall_us();
    json_t *since = json_real((double)(now - se.last_event_us) / 1e6);

    if (stamp <= se.last_stamp_us) /* same microsecond (or the clock stepped back) */
        stamp = se.last_stamp_us + 1;
    se.last_stamp_us = stamp;
    json_t *data = json_pack("{s:I, s:I, s:I, s:o, s:s}", "current_count",
                             (json_int_t)current, "previous_count", (json_int_t)previous,
                             "delta", (json_int_t)(current - previous),
                             "time_since_last_event", since, "source", source);
    if (data && session_id)
        json_object_set_new(data, "session_id", json_string(session_id));
    json_t *msg =
        json_pack("{s:s, s:s, s:o}", "event_type",
                  current > previous ? "session_created" : "session_destroyed",
                  "timestamp", km_format_iso(stamp, 6, when, sizeof when), "data", data);
    se.last_event_us = now;
    se.host->publish(se.ctx, se.topic, msg);
}

/* A new absolute count from a source that sees only counts. */
static void count_observed(long long n, const char *source)
{
    if (se.have_count && n != se.count)
        publish_event(n, se.count, NULL, source);
    se.count = n;
    se.have_count = 1;
}

/* `sessions` topic (kato_metrics): used while the stream is not open. */
static void on_sessions(struct km_topic *t, struct km_msg *msg, void *arg)
{
    json_t *n = json_object_get(se.host->msg_json(msg), "active_count");

    if (se.state == ST_OPEN || !json_is_integer(n) || json_integer_value(n) < 0 ||
        json_integer_value(n) > COUNT_MAX)
        return; /* stream is exact; a failed poll (null) says nothing */
    if (!se.said_fallback && se.use_stream) {
        se.host->log(se.ctx, KM_LOG_INFO,
                     "following session counts (no /ws/events stream open)");
        se.said_fallback = 1;
    }
    count_observed(json_integer_value(n), "count");
}

/* ---- the /ws/events stream ---- */

static void stream_schedule(double seconds);

/* The stream is over (ws already closed or being closed): log, follow the
   counts, retry later. */
static void stream_down(const char *why)
{
    if (se.state != ST_IDLE && why)
        se.host->log(se.ctx, se.state == ST_OPEN ? KM_LOG_WARNING : KM_LOG_INFO,
                     "/ws/events %s; following session counts, retrying in %.0f s", why,
                     se.retry_s);
    if (se.ping)
        se.host->timer_del(se.ctx, se.ping);
    se.ping = NULL;
    se.state = ST_IDLE;
    se.said_fallback = 0;
    stream_schedule(se.retry_s);
}

/* We end the stream (it went silent, a ping could not be sent). */
static void stream_close(const char *why)
{
    if (se.ws)
        se.host->ws_close(se.ctx, se.ws); /* no on_close afterwards */
    se.ws = NULL;
    stream_down(why);
}

static void on_stream_message(json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "event_type"));
    json_t *data = json_object_get(m, "data");

    if (!type)
        return;
    if (strcmp(type, "state.snapshot") == 0) {
        json_t *n = json_object_get(data, "active_sessions");
        /* covers sessions missed while we were away */
        if (json_is_integer(n) && json_integer_value(n) >= 0 &&
            json_integer_value(n) <= COUNT_MAX)
            count_observed(json_integer_value(n), "stream");
        return;
    }
    int created = strcmp(type, "session.created") == 0;
    if (!created && strcmp(type, "session.destroyed") != 0)
        return;
    if (!json_is_object(data)) { /* not KATO's shape: counting it would drift */
        se.host->log(se.ctx, KM_LOG_WARNING,
                     "/ws/events sent %s without a data object; "
                     "ignored",
                     type);
        return;
    }
    long long prev = se.have_count ? se.count : 0;
    long long cur =
        created ? (prev < COUNT_MAX ? prev + 1 : prev) : (prev > 0 ? prev - 1 : 0);
    if (cur == prev)
        return;
    se.count = cur;
    se.have_count = 1;
    publish_event(cur, prev, json_string_value(json_object_get(data, "session_id")),
                  "stream");
}

static void ws_on_message(struct km_ws *ws, int binary, const char *data, size_t len,
                          void *arg)
{
    se.last_rx_us = km_mono_us();
    if (binary)
        return;
    if (len == 4 && memcmp(data, "pong", 4) == 0)
        return;
    json_t *m = json_loadb(data, len, 0, NULL);
    if (json_is_object(m))
        on_stream_message(m);
    else
        se.host->log(se.ctx, KM_LOG_WARNING,
                     "/ws/events sent a message that is not JSON");
    json_decref(m);
}

static void stream_ping(void *arg)
{
    int64_t silent = km_mono_us() - se.last_rx_us;

    if (silent > (int64_t)(2.5 * se.ping_s * 1e6)) {
        stream_close("went silent");
        return;
    }
    if (se.host->ws_send_text(se.ctx, se.ws, "ping", 4) != KM_OK)
        stream_close("failed");
}

static void ws_on_open(struct km_ws *ws, void *arg)
{
    se.state = ST_OPEN;
    se.last_rx_us = km_mono_us();
    se.ping = se.host->timer_add(se.ctx, se.ping_s, KM_TIMER_REPEAT, stream_ping, NULL);
    se.host->log(se.ctx, KM_LOG_NOTICE, "following KATO /ws/events at %s", se.ws_url);
}

static void ws_on_close(struct km_ws *ws, const struct km_ws_closed *info, void *arg)
{
    char why[600];

    se.ws = NULL; /* gone once we return */
    if (se.state == ST_OPEN && info->by_peer)
        snprintf(why, sizeof why, "was closed by KATO");
    else if (se.state == ST_OPEN)
        snprintf(why, sizeof why, "failed (%s)", info->reason);
    else if (info->http_status)
        snprintf(why, sizeof why, "is not offered (HTTP %d)", info->http_status);
    else
        snprintf(why, sizeof why, "could not be reached (%s)", info->reason);
    stream_down(why);
}

static void stream_connect(void *arg)
{
    struct km_ws_client_opts o = {.url = se.ws_url,
                                  .ca_file = se.tls.ca_file,
                                  .tls_insecure = se.tls.insecure,
                                  .timeout_ms = HANDSHAKE_MS,
                                  .max_message = STREAM_MSG_MAX,
                                  .on_open = ws_on_open,
                                  .on_message = ws_on_message,
                                  .on_close = ws_on_close};

    se.retry = NULL;
    se.ws = se.host->ws_open(se.ctx, &o);
    if (!se.ws) { /* a bad url was refused at init: out of memory */
        stream_schedule(se.retry_s);
        return;
    }
    se.state = ST_HANDSHAKE;
}

static void stream_schedule(double seconds)
{
    if (!se.use_stream || se.retry)
        return;
    se.retry = se.host->timer_add(se.ctx, seconds, 0, stream_connect, NULL);
}

/*
 * The stream's url: "ws(s)://host[:port][/path]" as it is (the stream is
 * where the operator says: a proxy may serve it anywhere);
 * "http(s)://host[:port][/prefix]" -> "ws(s)://host[:port][/prefix]/ws/events"
 * (KATO's own path below its base url). NULL when the url names no host.
 * New string.
 */
static char *make_ws_url(const char *url)
{
    size_t scheme = !strncmp(url, "http://", 7)    ? 7
                    : !strncmp(url, "https://", 8) ? 8
                                                   : 0;
    size_t ws = !strncmp(url, "ws://", 5) ? 5 : !strncmp(url, "wss://", 6) ? 6 : 0;
    size_t n = strlen(url);
    char *out;

    if (ws)
        return strchr("/:?#", url[ws]) || strpbrk(url, " \t\r\n#") ? NULL : strdup(url);
    if (!scheme || strchr("/:?#", url[scheme]) || strpbrk(url, " \t\r\n?#"))
        return NULL;
    while (n > scheme && url[n - 1] == '/')
        n--;
    out = malloc(n + 16);
    if (out)
        snprintf(out, n + 16, "ws%s%.*s/ws/events", scheme == 8 ? "s" : "",
                 (int)(n - scheme + 3), url + scheme - 3);
    return out;
}

/* ---- init/shutdown ---- */

static int se_init(struct km_ctx *ctx, const struct km_host *host)
{
    int err;

    memset(&se, 0, sizeof se);
    se.host = host;
    se.ctx = ctx;
    if (!KM_HOST_HAS(host, ws_close)) {
        host->log(ctx, KM_LOG_ERROR, "this katomon has no WebSocket client (ws_open)");
        return -1;
    }
    const char *url = host->config_string(ctx, "url");
    if (km_tls_conf_read(host, ctx, url, &se.tls) < 0)
        return -1;
    se.ws_url = make_ws_url(url);
    if (!se.ws_url) {
        host->log(ctx, KM_LOG_ERROR,
                  "url '%s' is neither http(s)://HOST[:PORT][/PREFIX] (the stream is "
                  "PREFIX/ws/events) nor ws(s)://HOST[:PORT][/PATH] (the stream itself)",
                  url);
        return -1;
    }
    se.use_stream = host->config_bool(ctx, "stream");
    se.retry_s = host->config_double(ctx, "retry");
    se.ping_s = host->config_double(ctx, "ping_interval");
    se.last_event_us = km_mono_us();
    struct km_topic_def def = se_topics[0];
    def.ring_size = (unsigned)host->config_int(ctx, "ring_size");
    se.topic = host->topic_declare(ctx, &def, &err);
    if (!se.topic) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic session_events: %s",
                  host->strerror(err));
        goto fail;
    }
    if (!host->subscribe(ctx, "sessions", on_sessions, NULL))
        goto fail;
    if (se.use_stream)
        se.retry = host->timer_add(ctx, 0.01, 0, stream_connect, NULL);
    return 0;
fail: /* no shutdown follows a failed init */
    free(se.ws_url);
    se.ws_url = NULL;
    return -1;
}

static void se_shutdown(struct km_ctx *ctx)
{
    /* timers, the subscription and the stream are the core's to release */
    free(se.ws_url);
    memset(&se, 0, sizeof se);
}

KM_PLUGIN_DEFINE(.name = "session_events", .version = "1.0",
                 .description = "KATO session events, from /ws/events or count changes",
                 .config = se_keys, .init = se_init, .shutdown = se_shutdown,
                 .topics = se_topics);
