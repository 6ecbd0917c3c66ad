/*
 * fuzz_kato_api.c - what KATO sends the kato_api plugin (plugins/kato_api/),
 * run through the real plugin on a fake core (fuzz_host.h): KATO's answers
 * to the pass-through routes, its session JSON as stored in its Redis, and
 * the `metrics` message /analytics/overview is made of.
 *
 * Its sources (make fuzz reads them from one line, which clang-format
 * must not wrap):
 */
/* clang-format off */
/* FUZZ_SOURCES: plugins/kato_api/kato_api.c plugins/kato_api/kato.c plugins/kato_api/redis.c plugins/kato_api/session.c plugins/kato_api/sessions.c plugins/kato_api/session_one.c */
/* clang-format on */
/*
 * The first byte of the input picks the case, the rest is the body:
 *   0  a session value (ka_session_from, ka_session_json: session.c's own
 *      scanner, which skips KATO's large working state undecoded)
 *   1  KATO's answer to GET /cache/stats (route /api/v1/system/cache-stats):
 *      the next byte picks the status (or a timeout, or no answer), the
 *      rest is the body; then the same route again within cache_ttl
 *   2  a `metrics` message (its JSON), then GET /api/v1/analytics/overview
 *
 * Properties:
 *   - a session value that is a JSON object (unique keys, no \u escapes,
 *     no NUL byte)
 *     is read (not "unreadable"), and each field it has is the one jansson
 *     reads: node_id, created_at, last_accessed, expires_at (strings that
 *     fit), access_count, metadata and ttl_seconds; the listing entry
 *     (ka_session_json) is always made;
 *   - a pass-through request is answered exactly once: KATO's 2xx JSON as
 *     200 with that body (and the second request from the cache, the same
 *     body); KATO's 4xx object (but 404) with its status and body; anything
 *     else 502 or 504 with a {"detail"} that names KATO's url (a detail
 *     json_pack refused would reach the client as the core's default
 *     text, without KATO's words);
 *   - the overview is answered 200 with an object, or 502/503 with a
 *     detail; nothing crashes or leaks.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include <jansson.h>

#include "../../plugins/kato_api/kato_api.h"
#include "fuzz.h"
#include "fuzz_host.h"

extern const struct km_plugin km_plugin_descriptor;

/* One fake pending REST request (the plugin only passes it back). */
static int pending_token;

static json_t *call_route(const char *path, int *status, const char **detail)
{
    struct fh_route *r = fh_route(path);
    struct km_rest_call call = {.method = "GET",
                                .path = path,
                                .query = "",
                                .body = "",
                                .pending = (struct km_rest_pending *)&pending_token};
    json_t *reply = NULL;

    FUZZ_CHECKF(r != NULL, "no route %s", path);
    *detail = NULL;
    *status = r->cb(&call, &reply, detail, r->arg);
    return reply;
}

static void session_value(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"node_id",    "created_at",   "last_accessed",
                                       "expires_at", "access_count", "metadata",
                                       "ttl_seconds"};
    struct ka_session s;
    json_t *extra = NULL;

    FUZZ_CHECK(ka_session_from(&s, "session-1", (const char *)data, size, &extra) == 0);
    json_t *entry = ka_session_json(&s);
    FUZZ_CHECK(json_is_object(entry));
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(entry, "session_id")),
                      "session-1") == 0);
    json_decref(entry);

    json_t *ref = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    /* jansson reads through a NUL byte between tokens as if it were not
       there (session.c's scanner stops: no JSON text holds one) */
    if (json_is_object(ref) && !memmem(data, size, "\\u", 2) && !memchr(data, 0, size)) {
        FUZZ_CHECK(!s.unreadable);
        json_t *v[7];
        for (int i = 0; i < 7; i++)
            v[i] = json_object_get(ref, keys[i]);
        const char *node = json_string_value(v[0]);
        if (node && strlen(node) <= KA_MAX_ID)
            FUZZ_CHECK(s.node && strcmp(s.node, node) == 0);
        else
            FUZZ_CHECK(!s.node);
        const char *times[3] = {s.created, s.last, s.expires};
        for (int i = 0; i < 3; i++) {
            const char *t = json_string_value(v[1 + i]);
            FUZZ_CHECK(strcmp(times[i], t && strlen(t) < KA_TIME_LEN ? t : "") == 0);
        }
        if (json_is_integer(v[4]))
            FUZZ_CHECK(s.access_count == json_integer_value(v[4]));
        FUZZ_CHECK(json_equal(json_object_get(extra, "metadata"), v[5]) ||
                   (!v[5] && json_is_null(json_object_get(extra, "metadata"))));
        FUZZ_CHECK(json_equal(json_object_get(extra, "ttl_seconds"), v[6]) ||
                   (!v[6] && json_is_null(json_object_get(extra, "ttl_seconds"))));
    }
    json_decref(ref);
    json_decref(extra);
    ka_session_clear(&s);
}

static void check_detail(void)
{
    json_t *d = json_object_get(fh.finish_reply, "detail");
    FUZZ_CHECKF(json_is_string(d), "status %d without a detail (json_pack refused it?)",
                fh.finish_status);
    FUZZ_CHECK(strstr(json_string_value(d), "KATO at http://127.0.0.1:8000"));
}

static void passthrough(const uint8_t *data, size_t size)
{
    static const int statuses[] = {200, 201, 204, 400, 404, 422, 500, 503, 302, 0, -1};
    int st = size ? statuses[data[0] % (sizeof statuses / sizeof statuses[0])] : 200;
    const char *body = size ? (const char *)data + 1 : "";
    size_t len = size ? size - 1 : 0;
    const char *detail;
    int status;

    json_t *reply = call_route("/api/v1/system/cache-stats", &status, &detail);
    FUZZ_CHECK(status == KM_REST_LATER && !reply);
    struct fh_req *r = fh_req_find("/cache/stats");
    FUZZ_CHECK(r != NULL);
    if (st == 0)
        fh_http_answer(r, 0, "", 0, "timed out after 3000 ms");
    else if (st == -1)
        fh_http_answer(r, 0, "", 0, "connection refused");
    else
        fh_http_answer(r, st, body, len, NULL);
    FUZZ_CHECK(fh.finished == 1);

    json_t *j = st > 0 ? json_loadb(body, len, 0, NULL) : NULL;
    if (st >= 200 && st < 300 && j) {
        FUZZ_CHECK(fh.finish_status == 200);
        FUZZ_CHECK(json_equal(fh.finish_reply, j));
        /* again: from the cache, at once */
        reply = call_route("/api/v1/system/cache-stats", &status, &detail);
        FUZZ_CHECK(status == 200 && json_equal(reply, j));
        json_decref(reply);
    } else if (st >= 400 && st < 500 && st != 404 && json_is_object(j)) {
        FUZZ_CHECK(fh.finish_status == st);
        FUZZ_CHECK(json_equal(fh.finish_reply, j));
    } else {
        FUZZ_CHECKF(fh.finish_status == (st == 0 ? 504 : 502), "status %d for KATO's %d",
                    fh.finish_status, st);
        check_detail();
    }
    json_decref(j);
}

static void overview(const uint8_t *data, size_t size)
{
    const char *detail;
    int status;
    json_t *m = json_loadb((const char *)data, size, 0, NULL);

    if (json_is_object(m))
        fh_deliver("metrics", m);
    json_decref(m);
    json_t *reply = call_route("/api/v1/analytics/overview", &status, &detail);
    if (status == 200) {
        FUZZ_CHECK(json_is_object(reply));
    } else {
        FUZZ_CHECKF(status == 502 || status == 503, "status %d", status);
        FUZZ_CHECK(!reply && detail);
        /* the core sends {"detail": detail}: it must be a JSON string */
        json_t *d = json_string(detail);
        FUZZ_CHECKF(d != NULL, "a detail that is not UTF-8: %s", detail);
        json_decref(d);
    }
    json_decref(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fh_reset(&km_plugin_descriptor);
    fh_set("cache_ttl", "60");
    FUZZ_CHECK(km_plugin_descriptor.init(FH_CTX, &fh_host) == 0);
    switch (data[0] % 3) {
    case 0:
        session_value(data + 1, size - 1);
        break;
    case 1:
        passthrough(data + 1, size - 1);
        break;
    default:
        overview(data + 1, size - 1);
    }
    km_plugin_descriptor.shutdown(FH_CTX);
    fh_reset(&km_plugin_descriptor);
    return 0;
}
