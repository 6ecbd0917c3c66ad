/*
 * fuzz_ws_request.c - a client's message on /ws (core/ws_proto.c,
 * km_ws_parse_request), both dialects: compatible (no "protocol") and
 * katomon/1.
 *
 * Properties, for every input:
 *   - it is either refused with one of the documented error codes and a
 *     detail, leaving nothing owned in the request, or it parses;
 *   - a parsed subscribe is within its bounds: at most KM_WS_MAX_SUBS names,
 *     sorted and unique, each a valid topic name; at most KM_WS_MAX_SINCE
 *     since entries, each a valid topic and (when it has one) host name;
 *   - a parsed request re-encoded as JSON (the harness's own encoder)
 *     parses again to the same request (type, names, since entries,
 *     dialect), and parsing is deterministic.
 */
#include <string.h>

#include <jansson.h>
#include <katomon/util.h>

#include "fuzz.h"
#include "ws_proto.h"

static int since_cmp(const void *a, const void *b)
{
    const struct km_ws_since *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c)
        return c;
    if (!x->host || !y->host)
        return !!x->host - !!y->host;
    return strcmp(x->host, y->host);
}

/* a == b, since entries compared as sets (sorts both in place). */
static void same_request(struct km_ws_request *a, struct km_ws_request *b)
{
    FUZZ_CHECK(a->type == b->type);
    FUZZ_CHECK(a->katomon == b->katomon);
    FUZZ_CHECK(a->n_names == b->n_names);
    for (size_t i = 0; i < a->n_names; i++)
        FUZZ_CHECK(strcmp(a->names[i], b->names[i]) == 0);
    FUZZ_CHECK(a->n_since == b->n_since);
    if (a->n_since) {
        qsort(a->since, a->n_since, sizeof *a->since, since_cmp);
        qsort(b->since, b->n_since, sizeof *b->since, since_cmp);
    }
    for (size_t i = 0; i < a->n_since; i++) {
        FUZZ_CHECK(since_cmp(&a->since[i], &b->since[i]) == 0);
        FUZZ_CHECK(a->since[i].seq == b->since[i].seq);
    }
}

/* The request as a client would write it (new text, malloc'd). */
static char *encode(const struct km_ws_request *r)
{
    json_t *j = json_object();
    char *s;

    if (r->type == KM_WS_REQ_PING) {
        json_object_set_new(j, "type", json_string("ping"));
    } else {
        json_t *subs = json_array(), *since = json_object();
        json_object_set_new(j, "type", json_string("subscribe"));
        if (r->katomon)
            json_object_set_new(j, "protocol", json_string(KM_WS_PROTOCOL));
        for (size_t i = 0; i < r->n_names; i++)
            json_array_append_new(subs, json_string(r->names[i]));
        json_object_set_new(j, "subscriptions", subs);
        for (size_t i = 0; i < r->n_since; i++) {
            const struct km_ws_since *e = &r->since[i];
            json_t *cur = json_object_get(since, e->topic);
            /* JSON's seq is a signed 64-bit integer */
            FUZZ_CHECK(e->seq <= (uint64_t)INT64_MAX);
            if (!e->host) {
                FUZZ_CHECKF(!cur, "since.%s given both as a seq and per host", e->topic);
                json_object_set_new(since, e->topic, json_integer((json_int_t)e->seq));
            } else {
                if (!cur) {
                    cur = json_object();
                    json_object_set_new(since, e->topic, cur);
                }
                FUZZ_CHECKF(json_is_object(cur), "since.%s given both ways", e->topic);
                FUZZ_CHECK(!json_object_get(cur, e->host)); /* one entry per host */
                json_object_set_new(cur, e->host, json_integer((json_int_t)e->seq));
            }
        }
        if (r->n_since)
            json_object_set_new(j, "since", since);
        else
            json_decref(since);
    }
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    FUZZ_CHECK(s != NULL);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct km_ws_request req, again;
    char code[32], detail[256], code2[32], detail2[256];
    const char *text = (const char *)data;

    int rc =
        km_ws_parse_request(text, size, &req, code, sizeof code, detail, sizeof detail);
    FUZZ_CHECK(rc == 0 || rc == -1);
    /* deterministic */
    int rc2 = km_ws_parse_request(text, size, &again, code2, sizeof code2, detail2,
                                  sizeof detail2);
    FUZZ_CHECK(rc2 == rc);
    if (rc != 0) {
        FUZZ_CHECKF(strcmp(code, "bad_json") == 0 || strcmp(code, "bad_request") == 0 ||
                        strcmp(code, "unknown_type") == 0 ||
                        strcmp(code, "bad_protocol") == 0,
                    "code %s", code);
        FUZZ_CHECK(detail[0] != '\0');
        FUZZ_CHECK(strcmp(code, code2) == 0 && strcmp(detail, detail2) == 0);
        /* nothing left to clear: a caller that does not clear leaks nothing */
        FUZZ_CHECK(req.names == NULL && req.n_names == 0);
        FUZZ_CHECK(req.since == NULL && req.n_since == 0);
        return 0;
    }
    same_request(&req, &again);
    km_ws_request_clear(&again);

    FUZZ_CHECK(req.type == KM_WS_REQ_PING || req.type == KM_WS_REQ_SUBSCRIBE);
    if (req.type == KM_WS_REQ_PING) {
        FUZZ_CHECK(req.n_names == 0 && req.n_since == 0);
    } else {
        FUZZ_CHECK(req.n_names <= KM_WS_MAX_SUBS);
        FUZZ_CHECK(req.n_since <= KM_WS_MAX_SINCE);
        for (size_t i = 0; i < req.n_names; i++) {
            FUZZ_CHECK(km_topic_name_valid(req.names[i]));
            FUZZ_CHECK(i == 0 || strcmp(req.names[i - 1], req.names[i]) < 0);
        }
        for (size_t i = 0; i < req.n_since; i++) {
            FUZZ_CHECK(km_topic_name_valid(req.since[i].topic));
            FUZZ_CHECK(!req.since[i].host || km_host_name_valid(req.since[i].host));
        }
    }

    /* round trip: what it parsed to, written out, parses to the same */
    char *enc = encode(&req);
    rc = km_ws_parse_request(enc, strlen(enc), &again, code, sizeof code, detail,
                             sizeof detail);
    FUZZ_CHECKF(rc == 0, "re-encoded %s refused: %s: %s", enc, code, detail);
    same_request(&req, &again);
    km_ws_request_clear(&again);
    free(enc);
    km_ws_request_clear(&req);
    return 0;
}
