/*
 * fuzz_session_events.c - what KATO's /ws/events stream sends
 * session_events (plugins/session_events.c): the payloads of its text
 * frames, run through the real plugin on a fake core (fuzz_host.h), with
 * the `sessions` counts it follows while the stream is down.
 *
 * FUZZ_SOURCES: plugins/session_events.c
 *
 * Input: parts separated by the byte 0x1e; a part's first byte says what
 * it is, the rest is the body:
 *   'M'  a text message on the open stream (the stream is opened first
 *        when it is not)
 *   'B'  a binary message
 *   'C'  a `sessions` message (kato_metrics' counts), its JSON
 *   'X'  KATO closes the stream
 *   else the timers run (a retry opens the stream again, pings)
 *
 * Properties:
 *   - every message the plugin publishes is an object the session_events
 *     schema accepts (never refused, never a failed json_pack); its counts
 *     are >= 0, delta = current_count - previous_count, never 0, and its
 *     event_type says the sign (session_created when delta > 0);
 *     timestamps strictly increase;
 *   - each stream message is published as at most one event, or dropped;
 *     a "session.created" with a data object is published as a
 *     session_created of delta 1 from the stream, carrying the message's
 *     session_id (a string), unless the count is at its bound;
 *   - nothing crashes or leaks (whatever the counts: a snapshot or a
 *     `sessions` count near INT64_MAX or below 0).
 */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "fuzz_host.h"

extern const struct km_plugin km_plugin_descriptor;

#define SEP 0x1e

static char last_stamp[64];

static void on_publish(struct fh_topic *t, json_t *m)
{
    json_t *data = json_object_get(m, "data");
    json_int_t cur = json_integer_value(json_object_get(data, "current_count"));
    json_int_t prev = json_integer_value(json_object_get(data, "previous_count"));
    json_int_t delta = json_integer_value(json_object_get(data, "delta"));
    const char *type = json_string_value(json_object_get(m, "event_type"));
    const char *stamp = json_string_value(json_object_get(m, "timestamp"));

    FUZZ_CHECK(strcmp(t->def.name, "session_events") == 0);
    FUZZ_CHECKF(cur >= 0 && prev >= 0, "counts %lld, %lld", (long long)cur,
                (long long)prev);
    FUZZ_CHECK(delta != 0);
    FUZZ_CHECK(cur - prev == delta); /* both >= 0: no overflow */
    FUZZ_CHECK(strcmp(type, delta > 0 ? "session_created" : "session_destroyed") == 0);
    FUZZ_CHECK(strlen(stamp) < sizeof last_stamp);
    FUZZ_CHECKF(strcmp(stamp, last_stamp) > 0, "timestamp %s after %s", stamp,
                last_stamp);
    snprintf(last_stamp, sizeof last_stamp, "%s", stamp);
}

/* The open stream, opened (and its on_open run) when there is none. */
static struct fh_ws *stream(void)
{
    struct fh_ws *w = fh_ws_last();
    if (!w) {
        fh_timers_fire(); /* the connect timer */
        if ((w = fh_ws_last()))
            w->opts.on_open((struct km_ws *)w, w->opts.arg);
    }
    return w;
}

static void message(const char *body, size_t len)
{
    struct fh_topic *t = fh_topic("session_events");
    struct fh_ws *w = stream();
    if (!w)
        return;
    unsigned before = t->accepted;
    w->opts.on_message((struct km_ws *)w, 0, body, len, w->opts.arg);
    FUZZ_CHECK(t->accepted <= before + 1);

    json_t *m = json_loadb(body, len, 0, NULL);
    json_t *data = json_object_get(m, "data");
    const char *type = json_string_value(json_object_get(m, "event_type"));
    if (type && strcmp(type, "session.created") == 0 && json_is_object(data)) {
        json_t *pub = t->last;
        json_t *pdata = json_object_get(pub, "data");
        FUZZ_CHECK(t->accepted == before + 1 ||
                   json_integer_value(json_object_get(pdata, "current_count")) >=
                       (json_int_t)1 << 53); /* only at the bound */
        if (t->accepted == before + 1) {
            json_t *sid = json_object_get(data, "session_id");
            FUZZ_CHECK(json_integer_value(json_object_get(pdata, "delta")) == 1);
            FUZZ_CHECK(strcmp(json_string_value(json_object_get(pdata, "source")),
                              "stream") == 0);
            if (json_is_string(sid))
                FUZZ_CHECK(json_equal(sid, json_object_get(pdata, "session_id")));
        }
    }
    json_decref(m);
}

static void part(const uint8_t *p, size_t n)
{
    uint8_t tag = n ? p[0] : 0;
    const char *body = n ? (const char *)p + 1 : "";
    size_t len = n ? n - 1 : 0;
    struct fh_ws *w;

    switch (tag) {
    case 'M':
        message(body, len);
        break;
    case 'B':
        if ((w = stream()))
            w->opts.on_message((struct km_ws *)w, 1, body, len, w->opts.arg);
        break;
    case 'C': {
        json_t *j = json_loadb(body, len, 0, NULL);
        if (json_is_object(j))
            fh_deliver("sessions", j);
        json_decref(j);
        break;
    }
    case 'X':
        if ((w = fh_ws_last())) {
            struct km_ws_closed info = {.opened = 1, .by_peer = 1, .code = 1001};
            w->open = 0;
            w->opts.on_close((struct km_ws *)w, &info, w->opts.arg);
        }
        break;
    default:
        fh_timers_fire();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fh_reset(&km_plugin_descriptor);
    fh.on_publish = on_publish;
    last_stamp[0] = '\0';
    FUZZ_CHECK(km_plugin_descriptor.init(FH_CTX, &fh_host) == 0);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++)
        if (i == size || data[i] == SEP) {
            part(data + start, i - start);
            start = i + 1;
        }
    struct fh_topic *t = fh_topic("session_events");
    FUZZ_CHECKF(t->refused == 0, "refused: %s", t->err);
    FUZZ_CHECK(fh.invalid == 0);
    km_plugin_descriptor.shutdown(FH_CTX);
    fh_reset(&km_plugin_descriptor);
    return 0;
}
