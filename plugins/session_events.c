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
 * Once the 101 is in, the stream has no read timeout (KATO is silent while
 * nothing happens); liveness is the ping every `ping_interval`, and a
 * stream silent for 2.5 intervals is closed and retried.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <wslay/wslay.h>

#include <katomon/plugin.h>
#include <katomon/util.h>

#define HANDSHAKE_MAX  8192  /* bytes of the 101 response we accept */
#define STREAM_MSG_MAX 65536 /* largest /ws/events message we accept */

static const struct km_conf_key se_keys[] = {
    {"url", KM_CONF_STRING, "http://127.0.0.1:8000", 0, 0, "KATO base URL (http only)"},
    {"stream", KM_CONF_BOOL, "true", 0, 0, "use KATO's /ws/events when it offers it"},
    {"retry", KM_CONF_DOUBLE, "30", 1, 86400,
     "seconds between attempts to open the stream"},
    {"ping_interval", KM_CONF_DOUBLE, "30", 1, 3600,
     "seconds between pings on the stream"},
    {"ring_size", KM_CONF_INT, "512", 16, 65536,
     "events kept for clients that reconnect"},
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

/* Where the stream connection stands. */
enum stream_state {
    ST_IDLE,      /* not connected; a retry timer may be pending */
    ST_HANDSHAKE, /* TCP connecting or waiting for the 101 */
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
    char host_name[256];        /* KATO host, from url */
    int port;                   /* KATO port */
    int use_stream;             /* [plugin] stream */
    double retry_s;             /* seconds between stream attempts */
    double ping_s;              /* seconds between pings */
    enum stream_state state;    /* see above */
    struct bufferevent *bev;    /* the connection */
    struct evdns_base *dns;     /* resolver for host names */
    wslay_event_context_ptr ws; /* WebSocket framing once open */
    struct km_timer *retry;     /* next attempt */
    struct km_timer *ping;      /* pings while open */
    int64_t last_rx_us;         /* monotonic time of the last frame received */
    int said_fallback;          /* logged that we follow counts */
} se;

/* ---- events ---- */

/* UTC ISO 8601 with microseconds and a Z, e.g. "2026-11-23T02:40:00.123456Z". */
static char *format_utc_us(int64_t us, char *buf, size_t len)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%06dZ", (int)(us % 1000000));
    return buf;
}

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
                  "timestamp", format_utc_us(stamp, when, sizeof when), "data", data);
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

    if (se.state == ST_OPEN || !json_is_integer(n))
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

static void stream_close(const char *why)
{
    if (se.state != ST_IDLE && why)
        se.host->log(se.ctx, se.state == ST_OPEN ? KM_LOG_WARNING : KM_LOG_INFO,
                     "/ws/events %s; following session counts, retrying in %.0f s", why,
                     se.retry_s);
    if (se.ws)
        wslay_event_context_free(se.ws);
    se.ws = NULL;
    if (se.bev)
        bufferevent_free(se.bev);
    se.bev = NULL;
    if (se.ping)
        se.host->timer_del(se.ctx, se.ping);
    se.ping = NULL;
    se.state = ST_IDLE;
    se.said_fallback = 0;
    stream_schedule(se.retry_s);
}

static void on_stream_message(json_t *m)
{
    const char *type = json_string_value(json_object_get(m, "event_type"));
    json_t *data = json_object_get(m, "data");

    if (!type)
        return;
    if (strcmp(type, "state.snapshot") == 0) {
        json_t *n = json_object_get(data, "active_sessions");
        if (json_is_integer(n)) /* covers sessions missed while we were away */
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
    long long cur = created ? prev + 1 : (prev > 0 ? prev - 1 : 0);
    if (cur == prev)
        return;
    se.count = cur;
    se.have_count = 1;
    publish_event(cur, prev, json_string_value(json_object_get(data, "session_id")),
                  "stream");
}

static ssize_t ws_recv(wslay_event_context_ptr ws, uint8_t *buf, size_t len, int flags,
                       void *arg)
{
    struct evbuffer *in = bufferevent_get_input(se.bev);
    int n = evbuffer_remove(in, buf, len);

    if (n <= 0) {
        wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

static ssize_t ws_send(wslay_event_context_ptr ws, const uint8_t *data, size_t len,
                       int flags, void *arg)
{
    if (bufferevent_write(se.bev, data, len) < 0) {
        wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int ws_genmask(wslay_event_context_ptr ws, uint8_t *buf, size_t len, void *arg)
{
    if (getrandom(buf, len, GRND_NONBLOCK) != (ssize_t)len)
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)random();
    return 0;
}

static void ws_on_msg(wslay_event_context_ptr ws,
                      const struct wslay_event_on_msg_recv_arg *a, void *arg)
{
    se.last_rx_us = km_mono_us();
    if (a->opcode != WSLAY_TEXT_FRAME)
        return;
    if (a->msg_length == 4 && memcmp(a->msg, "pong", 4) == 0)
        return;
    json_t *m = json_loadb((const char *)a->msg, a->msg_length, 0, NULL);
    if (json_is_object(m))
        on_stream_message(m);
    else
        se.host->log(se.ctx, KM_LOG_WARNING,
                     "/ws/events sent a message that is not JSON");
    json_decref(m);
}

static void stream_pump(void)
{
    if (wslay_event_recv(se.ws) != 0 || wslay_event_send(se.ws) != 0) {
        stream_close("failed");
        return;
    }
    if (!wslay_event_want_read(se.ws) && !wslay_event_want_write(se.ws))
        stream_close("was closed by KATO");
}

/* Parses the 101 response; returns 1 done, 0 need more, -1 refused. */
static int handshake_read(void)
{
    struct evbuffer *in = bufferevent_get_input(se.bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    char status[64];

    if (end.pos < 0) {
        if (evbuffer_get_length(in) > HANDSHAKE_MAX) {
            stream_close("sent an oversized handshake");
            return -1;
        }
        return 0;
    }
    size_t n = evbuffer_copyout(in, status, sizeof status - 1);
    status[n] = '\0';
    int code = 0;
    sscanf(status, "HTTP/1.%*d %d", &code);
    evbuffer_drain(in, (size_t)end.pos + 4);
    if (code != 101) {
        char why[64];
        snprintf(why, sizeof why, "is not offered (HTTP %d)", code);
        stream_close(why);
        return -1;
    }
    return 1;
}

static void stream_ping(void *arg)
{
    struct wslay_event_msg ping = {WSLAY_TEXT_FRAME, (const uint8_t *)"ping", 4};
    int64_t silent = km_mono_us() - se.last_rx_us;

    if (silent > (int64_t)(2.5 * se.ping_s * 1e6)) {
        stream_close("went silent");
        return;
    }
    if (wslay_event_queue_msg(se.ws, &ping) != 0 || wslay_event_send(se.ws) != 0)
        stream_close("failed");
}

static void stream_opened(void)
{
    static const struct wslay_event_callbacks cbs = {ws_recv, ws_send, ws_genmask, NULL,
                                                     NULL,    NULL,    ws_on_msg};

    if (wslay_event_context_client_init(&se.ws, &cbs, NULL) != 0) {
        stream_close("could not be set up (out of memory)");
        return;
    }
    wslay_event_config_set_max_recv_msg_length(se.ws, STREAM_MSG_MAX);
    /* no read timeout from here on: an idle stream is silent (see top) */
    bufferevent_set_timeouts(se.bev, NULL, NULL);
    se.state = ST_OPEN;
    se.last_rx_us = km_mono_us();
    se.ping = se.host->timer_add(se.ctx, se.ping_s, KM_TIMER_REPEAT, stream_ping, NULL);
    se.host->log(se.ctx, KM_LOG_NOTICE, "following KATO /ws/events at %s:%d",
                 se.host_name, se.port);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    if (se.state == ST_HANDSHAKE) {
        if (handshake_read() <= 0)
            return;
        stream_opened();
        if (se.state != ST_OPEN)
            return;
    }
    stream_pump();
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    char req[512];

    if (what & BEV_EVENT_CONNECTED) {
        int v6 = strchr(se.host_name, ':') != NULL; /* an IPv6 literal: [::1]:8000 */
        /* The key is fixed: we trust the peer we chose, and the 101 check
           is what tells a stream from a 404. */
        snprintf(req, sizeof req,
                 "GET /ws/events HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: a2F0b21vbi1zZXNzaW9ucw==\r\n"
                 "Sec-WebSocket-Version: 13\r\nUser-Agent: katomon\r\n\r\n",
                 v6 ? "[" : "", se.host_name, v6 ? "]" : "", se.port);
        bufferevent_write(bev, req, strlen(req));
        return;
    }
    if (what & BEV_EVENT_EOF)
        stream_close("was closed by KATO");
    else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        stream_close(what & BEV_EVENT_TIMEOUT
                         ? "timed out"
                         : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void stream_connect(void *arg)
{
    struct event_base *base = se.host->event_base(se.ctx);
    struct timeval handshake_timeout = {10, 0};

    se.retry = NULL;
    se.bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!se.bev) {
        stream_schedule(se.retry_s);
        return;
    }
    bufferevent_setcb(se.bev, on_read, NULL, on_event, NULL);
    bufferevent_set_timeouts(se.bev, &handshake_timeout, NULL);
    bufferevent_enable(se.bev, EV_READ | EV_WRITE);
    se.state = ST_HANDSHAKE;
    if (!se.dns)
        se.dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (bufferevent_socket_connect_hostname(se.bev, se.dns, AF_UNSPEC, se.host_name,
                                            se.port) < 0)
        stream_close("could not be reached");
}

static void stream_schedule(double seconds)
{
    if (!se.use_stream || se.retry)
        return;
    se.retry = se.host->timer_add(se.ctx, seconds, 0, stream_connect, NULL);
}

/* "http://host[:port][/...]" -> host, port. */
static int parse_url(const char *url)
{
    const char *p = url + 7, *end;

    if (strncmp(url, "http://", 7) != 0)
        return -1;
    if (*p == '[') { /* [v6]:port */
        end = strchr(p, ']');
        if (!end || (size_t)(end - p - 1) >= sizeof se.host_name)
            return -1;
        memcpy(se.host_name, p + 1, (size_t)(end - p - 1));
        se.host_name[end - p - 1] = '\0';
        p = end + 1;
    } else {
        end = p + strcspn(p, ":/");
        if (end == p || (size_t)(end - p) >= sizeof se.host_name)
            return -1;
        memcpy(se.host_name, p, (size_t)(end - p));
        se.host_name[end - p] = '\0';
        p = end;
    }
    se.port = 80;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (port <= 0 || port > 65535 || (*e && *e != '/'))
            return -1;
        se.port = (int)port;
    }
    return 0;
}

/* ---- init/shutdown ---- */

static int se_init(struct km_ctx *ctx, const struct km_host *host)
{
    int err;

    memset(&se, 0, sizeof se);
    se.host = host;
    se.ctx = ctx;
    const char *url = host->config_string(ctx, "url");
    if (parse_url(url) < 0) {
        host->log(ctx, KM_LOG_ERROR, "url '%s' is not http://HOST[:PORT]", url);
        return -1;
    }
    se.use_stream = host->config_bool(ctx, "stream");
    se.retry_s = host->config_double(ctx, "retry");
    se.ping_s = host->config_double(ctx, "ping_interval");
    se.last_event_us = km_mono_us();
    struct km_topic_def def = {"session_events", KM_TOPIC_EVENT, event_schema,
                               (unsigned)host->config_int(ctx, "ring_size"),
                               "KATO sessions created and destroyed"};
    se.topic = host->topic_declare(ctx, &def, &err);
    if (!se.topic) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare topic session_events: %s",
                  host->strerror(err));
        return -1;
    }
    if (!host->subscribe(ctx, "sessions", on_sessions, NULL))
        return -1;
    if (se.use_stream)
        se.retry = host->timer_add(ctx, 0.01, 0, stream_connect, NULL);
    return 0;
}

static void se_shutdown(struct km_ctx *ctx)
{
    /* timers and the subscription are the core's to release */
    if (se.ws)
        wslay_event_context_free(se.ws);
    if (se.bev)
        bufferevent_free(se.bev);
    if (se.dns)
        evdns_base_free(se.dns, 0);
    memset(&se, 0, sizeof se);
}

KM_PLUGIN_DEFINE(.name = "session_events", .version = "1.0",
                 .description = "KATO session events, from /ws/events or count changes",
                 .config = se_keys, .init = se_init, .shutdown = se_shutdown);
