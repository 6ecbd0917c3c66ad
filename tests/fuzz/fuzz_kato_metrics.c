/*
 * fuzz_kato_metrics.c - what KATO's HTTP API answers kato_metrics
 * (plugins/kato_metrics.c): the JSON bodies of GET /metrics,
 * /sessions/count and /health, run through the real plugin on a fake core
 * (fuzz_host.h).
 *
 * FUZZ_SOURCES: plugins/kato_metrics.c
 *
 * Input: parts separated by the byte 0x1e; a part's first byte says what
 * it is, the rest is the body:
 *   'M', 'S', 'H'  the answer (200) to /metrics, /sessions/count, /health
 *                  (the polls are started first when that one is not in
 *                  flight)
 *   'F'            the first request in flight fails (HTTP 503 when the
 *                  body is empty, else a transport error)
 *   else           the poll timer runs
 *
 * Properties, for every answer:
 *   - the topic gets exactly one message, and the schema accepts it (when
 *     KATO's body does not fit the schema, the plugin's fallback, the
 *     error shape, does): never nothing, never a failed json_pack;
 *   - a body that is not a JSON object marks the source unhealthy:
 *     "_source": {"healthy": false, "error": "KATO sent bad JSON ..."};
 *     so does an "error" member (KATO's own error path), a /sessions/count
 *     without an integer active_session_count, and a failed request;
 *   - a healthy message is KATO's object with "_source" added (the other
 *     members as sent); /sessions/count's active_count is KATO's figure,
 *     total_count an integer >= 0;
 *   - nothing crashes or leaks.
 */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "fuzz_host.h"

extern const struct km_plugin km_plugin_descriptor;

#define SEP 0x1e

/* The request in flight for path, after starting the polls when none is. */
static struct fh_req *request(const char *path)
{
    struct fh_req *r = fh_req_find(path);
    if (!r) {
        fh_timers_fire();
        r = fh_req_find(path);
    }
    return r;
}

static const char *topic_of(const char *url)
{
    return strstr(url, "/metrics")          ? "metrics"
           : strstr(url, "/sessions/count") ? "sessions"
                                            : "kato_health";
}

static json_t *source_of(json_t *m)
{
    json_t *src = json_object_get(m, "_source");
    FUZZ_CHECK(json_is_object(src));
    return src;
}

static void unhealthy(json_t *m, const char *why)
{
    json_t *src = source_of(m);
    const char *err = json_string_value(json_object_get(src, "error"));
    FUZZ_CHECK(json_is_false(json_object_get(src, "healthy")));
    FUZZ_CHECKF(err && (!why || strstr(err, why)), "error %s, not %s", err ? err : "null",
                why);
}

static void answer(const char *path, const char *body, size_t len, int fail)
{
    struct fh_req *r = request(path);
    if (!r)
        return;
    struct fh_topic *t = fh_topic(topic_of(r->url));
    unsigned before = t->accepted, invalid = fh.invalid;

    if (fail)
        fh_http_answer(r, len ? 0 : 503, "", 0, len ? "timed out" : NULL);
    else
        fh_http_answer(r, 200, body, len, NULL);
    FUZZ_CHECKF(t->accepted == before + 1 && fh.invalid == invalid,
                "%s: %u messages accepted (of %u refused: %s), %u invalid", t->def.name,
                t->accepted - before, t->refused, t->err, fh.invalid - invalid);
    json_t *m = t->last;
    if (fail) {
        unhealthy(m, "KATO");
        return;
    }
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        unhealthy(m, "KATO sent bad JSON");
    } else if (json_is_true(json_object_get(source_of(m), "healthy"))) {
        if (strcmp(t->def.name, "sessions") == 0) { /* its shape is katomon's */
            FUZZ_CHECK(json_equal(json_object_get(m, "active_count"),
                                  json_object_get(j, "active_session_count")));
            FUZZ_CHECK(json_integer_value(json_object_get(m, "total_count")) >= 0);
        } else { /* KATO's body as sent, plus _source */
            FUZZ_CHECK(!json_is_string(json_object_get(j, "error")));
            json_object_set(j, "_source", json_object_get(m, "_source"));
            FUZZ_CHECK(json_equal(j, m));
        }
    } else if (json_is_string(json_object_get(j, "error"))) {
        unhealthy(m, "KATO");
    } else {
        /* unhealthy otherwise: the wrong shape for its schema, or no
           active_session_count */
        unhealthy(m, "unexpected shape");
    }
    json_decref(j);
}

static void part(const uint8_t *p, size_t n)
{
    uint8_t tag = n ? p[0] : 0;
    const char *body = n ? (const char *)p + 1 : "";
    size_t len = n ? n - 1 : 0;

    switch (tag) {
    case 'M':
        answer("/metrics", body, len, 0);
        break;
    case 'S':
        answer("/sessions/count", body, len, 0);
        break;
    case 'H':
        answer("/health", body, len, 0);
        break;
    case 'F':
        for (int i = 0; i < fh.n_reqs; i++)
            if (fh.reqs[i].cb) {
                const char *u = fh.reqs[i].url;
                answer(strstr(u, "/metrics")          ? "/metrics"
                       : strstr(u, "/sessions/count") ? "/sessions/count"
                                                      : "/health",
                       body, len, 1);
                break;
            }
        break;
    default:
        fh_timers_fire();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fh_reset(&km_plugin_descriptor);
    FUZZ_CHECK(km_plugin_descriptor.init(FH_CTX, &fh_host) == 0);
    size_t start = 0;
    for (size_t i = 0; i <= size; i++)
        if (i == size || data[i] == SEP) {
            part(data + start, i - start);
            start = i + 1;
        }
    km_plugin_descriptor.shutdown(FH_CTX);
    fh_reset(&km_plugin_descriptor);
    return 0;
}
