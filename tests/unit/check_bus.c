/*
 * check_bus.c - unit tests of the topic bus and schema validation
 * (core/bus.c, core/schema.c).
 *
 * Leaks are checked by running this under ASan (--enable-sanitizers) or
 * valgrind: every test frees its bus in the fixture's teardown.
 */
#include "config.h"

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "log.h"

/* ---- fixture: a bus and a log hook ------------------------------------------------ */

static struct km_bus *bus;
static int log_lines;                    /* lines at warning or worse since setup */
static enum km_log_level log_last_level; /* level of the last line */
static char log_last[1024];              /* text of the last line */

/* Owners: any distinct addresses will do. */
static int owner_a, owner_b;
#define OWNER_A ((const void *)&owner_a)
#define OWNER_B ((const void *)&owner_b)

static void log_hook(enum km_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (level > KM_LOG_WARNING)
        return;
    log_lines++;
    log_last_level = level;
    snprintf(log_last, sizeof log_last, "%s", line);
}

static void setup(void)
{
    bus = km_bus_new();
    ck_assert_ptr_nonnull(bus);
    log_lines = 0;
    log_last[0] = '\0';
    km_log_set_hook(log_hook, NULL);
}

static void teardown(void)
{
    km_bus_free(bus);
    bus = NULL;
    km_log_set_hook(NULL, NULL);
}

/* ---- helpers ---------------------------------------------------------------------- */

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    ck_assert_msg(v != NULL, "bad test JSON %s: %s", text, e.text);
    return v;
}

static struct km_topic *declare(const char *name, enum km_topic_kind kind,
                                const struct km_field *schema, unsigned ring,
                                const void *owner)
{
    struct km_topic_def def = {name, kind, schema, ring, NULL, NULL};
    int err = 12345;
    struct km_topic *t = km_bus_declare(bus, &def, owner, &err);
    ck_assert_msg(t != NULL, "declare %s: %d", name, err);
    return t;
}

static int pub(struct km_topic *t, const char *json, const void *owner)
{
    return km_bus_publish(t, js(json), owner);
}

/* Runs km_schema_check; returns its error text ("" when it matched). */
static const char *check(const struct km_field *schema, const char *json)
{
    static char err[512];
    json_t *v = js(json);
    int rc = km_schema_check(schema, v, err, sizeof err);
    json_decref(v);
    ck_assert_int_eq(rc, err[0] ? -1 : 0);
    return err;
}

#define ck_accepts(schema, json)      ck_assert_str_eq(check((schema), (json)), "")
#define ck_refuses(schema, json, why) ck_assert_str_eq(check((schema), (json)), (why))

/* A recording subscriber: appends "tag:seq-or-value" to a shared log. */
#define REC_MAX 64
static char rec[REC_MAX][64]; /* what was delivered, in order */
static int nrec;              /* entries in rec */

static void rec_reset(void)
{
    nrec = 0;
}

static void rec_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    ck_assert_int_lt(nrec, REC_MAX);
    json_t *v = json_object_get(km_msg_json(m), "v");
    snprintf(rec[nrec++], sizeof rec[0], "%s:%s:%lld", (const char *)arg,
             km_topic_name(t), (long long)json_integer_value(v));
}

#define ck_rec(i, s) ck_assert_str_eq(rec[(i)], (s))

/* Counts calls through an int pointed to by arg. */
static void count_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)m;
    (*(int *)arg)++;
}

/* ---- schemas used below ----------------------------------------------------------- */

static const struct km_field kinds_schema[] = {
    KM_FIELD("s", KM_STRING, 0),
    KM_FIELD("i", KM_INTEGER, 0),
    KM_FIELD("n", KM_NUMBER, 0),
    KM_FIELD("b", KM_BOOL, 0),
    KM_FIELD("any", KM_ANY, 0),
    KM_FIELD("ns", KM_STRING, KM_F_NULLABLE),
    KM_FIELD_ARRAY("free", 0, NULL),
    KM_FIELD_OBJECT("open", 0, NULL),
    KM_FIELD_END,
};

static const struct km_field memory_fields[] = {
    KM_FIELD("usage_bytes", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD("limit_bytes", KM_NUMBER, KM_F_NULLABLE),
    KM_FIELD_END,
};
static const struct km_field container_fields[] = {
    KM_FIELD("id", KM_STRING, KM_F_REQUIRED),
    KM_FIELD_OBJECT("memory", KM_F_REQUIRED, memory_fields),
    KM_FIELD_ARRAY("ports", 0, (&(const struct km_field)KM_FIELD(NULL, KM_INTEGER, 0))),
    KM_FIELD_END,
};
static const struct km_field container_item = KM_FIELD_OBJECT(NULL, 0, container_fields);
static const struct km_field containers_schema[] = {
    KM_FIELD_ARRAY("containers", KM_F_REQUIRED, &container_item),
    KM_FIELD_END,
};

static const struct km_field closed_fields[] = {
    KM_FIELD("x", KM_INTEGER, 0),
    KM_FIELD_END,
};
static const struct km_field closed_schema[] = {
    KM_FIELD_OBJECT("o", KM_F_REQUIRED | KM_F_CLOSED, closed_fields),
    KM_FIELD_OBJECT("empty", KM_F_CLOSED, NULL),
    KM_FIELD_END,
};

static const struct km_field v_schema[] = {
    KM_FIELD("v", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

/* ---- schema validation ------------------------------------------------------------ */

START_TEST(test_schema_string)
{
    ck_accepts(kinds_schema, "{\"s\":\"x\"}");
    ck_accepts(kinds_schema, "{\"s\":\"\"}");
    ck_refuses(kinds_schema, "{\"s\":1}", "s: expected string, got integer");
    ck_refuses(kinds_schema, "{\"s\":null}", "s: expected string, got null");
    ck_refuses(kinds_schema, "{\"s\":[\"x\"]}", "s: expected string, got array");
}
END_TEST

START_TEST(test_schema_integer)
{
    ck_accepts(kinds_schema, "{\"i\":5}");
    ck_accepts(kinds_schema, "{\"i\":-9223372036854775807}");
    ck_refuses(kinds_schema, "{\"i\":5.5}", "i: expected integer, got number");
    ck_refuses(kinds_schema, "{\"i\":\"5\"}", "i: expected integer, got string");
    ck_refuses(kinds_schema, "{\"i\":true}", "i: expected integer, got boolean");
}
END_TEST

START_TEST(test_schema_number)
{
    ck_accepts(kinds_schema, "{\"n\":5}");
    ck_accepts(kinds_schema, "{\"n\":5.25}");
    ck_accepts(kinds_schema, "{\"n\":-1e300}");
    ck_refuses(kinds_schema, "{\"n\":\"5\"}", "n: expected number, got string");
    ck_refuses(kinds_schema, "{\"n\":false}", "n: expected number, got boolean");
}
END_TEST

START_TEST(test_schema_bool)
{
    ck_accepts(kinds_schema, "{\"b\":true}");
    ck_accepts(kinds_schema, "{\"b\":false}");
    ck_refuses(kinds_schema, "{\"b\":1}", "b: expected boolean, got integer");
    ck_refuses(kinds_schema, "{\"b\":\"true\"}", "b: expected boolean, got string");
}
END_TEST

START_TEST(test_schema_any)
{
    const char *values[] = {"1", "1.5", "\"x\"", "true", "null", "[1,{}]", "{\"a\":1}"};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"any\":%s}", values[i]);
        ck_accepts(kinds_schema, json);
    }
    /* unconstrained array and object fields take any contents */
    ck_accepts(kinds_schema, "{\"free\":[1,\"a\",null,[]],\"open\":{\"z\":[1]}}");
    ck_refuses(kinds_schema, "{\"free\":{}}", "free: expected array, got object");
    ck_refuses(kinds_schema, "{\"open\":[]}", "open: expected object, got array");
}
END_TEST

START_TEST(test_schema_nullable)
{
    ck_accepts(kinds_schema, "{\"ns\":null}");
    ck_accepts(kinds_schema, "{\"ns\":\"x\"}");
    ck_refuses(kinds_schema, "{\"ns\":3}", "ns: expected string or null, got integer");
    ck_refuses(kinds_schema, "{\"b\":null}", "b: expected boolean, got null");
}
END_TEST

START_TEST(test_schema_required_optional)
{
    /* optional fields may be absent; open objects take unknown keys */
    ck_accepts(kinds_schema, "{}");
    ck_accepts(kinds_schema, "{\"unknown\":1}");
    ck_refuses(v_schema, "{}", "v: required field missing");
    ck_refuses(v_schema, "{\"w\":1}", "v: required field missing");
    /* a required field must be present; null counts only when nullable */
    ck_refuses(v_schema, "{\"v\":null}", "v: expected integer, got null");
}
END_TEST

START_TEST(test_schema_nested_object)
{
    ck_accepts(containers_schema,
               "{\"containers\":[{\"id\":\"a\",\"memory\":{\"usage_bytes\":1}}]}");
    ck_refuses(containers_schema, "{\"containers\":[{\"id\":\"a\",\"memory\":{}}]}",
               "containers[0].memory.usage_bytes: required field missing");
    ck_refuses(containers_schema, "{\"containers\":[{\"id\":\"a\"}]}",
               "containers[0].memory: required field missing");
    ck_refuses(containers_schema, "{\"containers\":[{\"id\":\"a\",\"memory\":[]}]}",
               "containers[0].memory: expected object, got array");
    ck_refuses(containers_schema,
               "{\"containers\":[{\"id\":\"a\",\"memory\":{\"usage_bytes\":1,"
               "\"limit_bytes\":\"x\"}}]}",
               "containers[0].memory.limit_bytes: expected number or null, got string");
}
END_TEST

START_TEST(test_schema_array_items)
{
    const char *ok =
        "{\"containers\":["
        "{\"id\":\"a\",\"memory\":{\"usage_bytes\":1},\"ports\":[80,443]},"
        "{\"id\":\"b\",\"memory\":{\"usage_bytes\":2.5,\"limit_bytes\":null}},"
        "{\"id\":\"c\",\"memory\":{\"usage_bytes\":3},\"ports\":[]}]}";
    ck_accepts(containers_schema, ok);
    ck_accepts(containers_schema, "{\"containers\":[]}");
    ck_refuses(containers_schema,
               "{\"containers\":[{\"id\":\"a\",\"memory\":{\"usage_bytes\":1},"
               "\"ports\":[80,\"x\"]}]}",
               "containers[0].ports[1]: expected integer, got string");
    ck_refuses(containers_schema, "{\"containers\":{}}",
               "containers: expected array, got object");
    ck_refuses(containers_schema, "{\"containers\":[1]}",
               "containers[0]: expected object, got integer");
    ck_refuses(containers_schema, "{}", "containers: required field missing");
}
END_TEST

START_TEST(test_schema_exact_path)
{
    const char *bad = "{\"containers\":["
                      "{\"id\":\"a\",\"memory\":{\"usage_bytes\":1}},"
                      "{\"id\":\"b\",\"memory\":{\"usage_bytes\":2}},"
                      "{\"id\":\"c\",\"memory\":{\"usage_bytes\":\"3\"}},"
                      "{\"id\":4,\"memory\":{\"usage_bytes\":\"4\"}}]}";
    /* the first bad path wins */
    ck_refuses(containers_schema, bad,
               "containers[2].memory.usage_bytes: expected number, got string");
}
END_TEST

START_TEST(test_schema_closed)
{
    ck_accepts(closed_schema, "{\"o\":{}}");
    ck_accepts(closed_schema, "{\"o\":{\"x\":1},\"empty\":{},\"extra\":1}");
    ck_refuses(closed_schema, "{\"o\":{\"x\":1,\"y\":2}}",
               "o.y: unexpected field (closed object)");
    ck_refuses(closed_schema, "{\"o\":{},\"empty\":{\"a\":null}}",
               "empty.a: unexpected field (closed object)");
    /* known fields are checked before unknown ones are looked for */
    ck_refuses(closed_schema, "{\"o\":{\"y\":2,\"x\":\"s\"}}",
               "o.x: expected integer, got string");
}
END_TEST

START_TEST(test_schema_top_level)
{
    ck_refuses(kinds_schema, "[]", "expected object, got array");
    ck_refuses(kinds_schema, "\"x\"", "expected object, got string");
    ck_refuses(NULL, "3", "expected object, got integer");
    ck_accepts(NULL, "{\"anything\":[1]}");
    char err[64] = "junk";
    ck_assert_int_eq(km_schema_check(NULL, NULL, err, sizeof err), -1);
    /* err may be NULL */
    json_t *v = js("[]");
    ck_assert_int_eq(km_schema_check(kinds_schema, v, NULL, 0), -1);
    json_decref(v);
}
END_TEST

START_TEST(test_schema_path_sanitized)
{
    /* control bytes in keys never reach the log line */
    ck_refuses(closed_schema, "{\"o\":{\"a\\nb\\u001b\":1}}",
               "o.a?b?: unexpected field (closed object)");
    /* a very long path is cut, marked with "...", and the error stays whole */
    char json[2048];
    char key[400];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    snprintf(json, sizeof json, "{\"o\":{\"%s\":1}}", key);
    const char *err = check(closed_schema, json);
    ck_assert_ptr_nonnull(strstr(err, "k...: unexpected field (closed object)"));
    ck_assert_int_lt(strlen(err), 300);
    /* a short err buffer is truncated, not overrun */
    char small[8];
    json_t *v = js("{\"s\":1}");
    ck_assert_int_eq(km_schema_check(kinds_schema, v, small, sizeof small), -1);
    ck_assert_int_lt(strlen(small), sizeof small);
    json_decref(v);
}
END_TEST

/* A self-referencing schema (a tree): refused at declare time. */
extern const struct km_field tree_fields[];
static const struct km_field tree_child = KM_FIELD_OBJECT(NULL, 0, tree_fields);
const struct km_field tree_fields[] = {
    KM_FIELD_ARRAY("children", 0, &tree_child),
    KM_FIELD_END,
};

START_TEST(test_schema_valid)
{
    static const struct km_field bad_kind[] = {
        {"x", (enum km_kind)42, 0, NULL, NULL},
        KM_FIELD_END,
    };
    static const struct km_field bad_nested[] = {
        KM_FIELD_OBJECT("o", 0, bad_kind),
        KM_FIELD_END,
    };
    ck_assert_int_eq(km_schema_valid(NULL), 0);
    ck_assert_int_eq(km_schema_valid(containers_schema), 0);
    ck_assert_int_eq(km_schema_valid(closed_schema), 0);
    ck_assert_int_eq(km_schema_valid(bad_kind), -1);
    ck_assert_int_eq(km_schema_valid(bad_nested), -1);
    ck_assert_int_eq(km_schema_valid(tree_fields), -1);
    /* used alone, km_schema_check reports a broken table instead of guessing */
    ck_refuses(bad_nested, "{\"o\":{\"x\":1}}", "o.x: bad schema: unknown kind 42");

    struct km_topic_def def = {"t", KM_TOPIC_STATE, bad_nested, 0, NULL, NULL};
    int err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);
    def.schema = tree_fields;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);

    /* used directly, a cyclic schema still cannot recurse forever */
    json_t *deep = json_object(), *cur = deep;
    for (int i = 0; i < 100; i++) {
        json_t *child = json_object();
        json_object_set_new(cur, "children", json_pack("[o]", child));
        cur = child;
    }
    char msg[512];
    ck_assert_int_eq(km_schema_check(tree_fields, deep, msg, sizeof msg), -1);
    ck_assert_ptr_nonnull(strstr(msg, "nested deeper than 32 levels"));
    json_decref(deep);
}
END_TEST

START_TEST(test_schema_json)
{
    struct km_topic *t =
        declare("containers", KM_TOPIC_STATE, containers_schema, 0, NULL);
    json_t *got = km_topic_schema_json(t);
    json_t *want = js("{\"type\":\"object\",\"properties\":{\"containers\":{"
                      "\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
                      "\"id\":{\"type\":\"string\"},"
                      "\"memory\":{\"type\":\"object\",\"properties\":{"
                      "\"usage_bytes\":{\"type\":\"number\"},"
                      "\"limit_bytes\":{\"type\":[\"number\",\"null\"]}},"
                      "\"required\":[\"usage_bytes\"]},"
                      "\"ports\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}},"
                      "\"required\":[\"id\",\"memory\"]}}},"
                      "\"required\":[\"containers\"]}");
    ck_assert_msg(json_equal(got, want), "got %s", json_dumps(got, JSON_COMPACT));
    json_decref(got);
    json_decref(want);

    got = km_schema_json(closed_schema);
    want = js("{\"type\":\"object\",\"properties\":{"
              "\"o\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},"
              "\"additionalProperties\":false},"
              "\"empty\":{\"type\":\"object\",\"additionalProperties\":false}},"
              "\"required\":[\"o\"]}");
    ck_assert(json_equal(got, want));
    json_decref(got);
    json_decref(want);

    got = km_schema_json(kinds_schema);
    json_t *props = json_object_get(got, "properties");
    json_t *any = json_object_get(props, "any");
    ck_assert(json_is_object(any) && json_object_size(any) == 0); /* {} */
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(props, "b"), "type")),
        "boolean");
    ck_assert_ptr_null(json_object_get(got, "required"));
    ck_assert_ptr_null(json_object_get(got, "additionalProperties"));
    json_decref(got);

    /* no schema: any object */
    got = km_schema_json(NULL);
    want = js("{\"type\":\"object\"}");
    ck_assert(json_equal(got, want));
    json_decref(got);
    json_decref(want);
}
END_TEST

/* ---- publish: refusals ------------------------------------------------------------ */

static int calls;

START_TEST(test_publish_refused_logs_once)
{
    struct km_topic *t =
        declare("containers", KM_TOPIC_STATE, containers_schema, 0, NULL);
    struct km_topic *other = declare("other", KM_TOPIC_STATE, v_schema, 0, NULL);
    calls = 0;
    ck_assert_ptr_nonnull(km_bus_subscribe(bus, "containers", count_cb, &calls, NULL));
    ck_assert_ptr_nonnull(km_bus_subscribe(bus, "*", count_cb, &calls, NULL));
    uint64_t rejected0 = km_bus_stats.rejected, messages0 = km_bus_stats.messages;

    int rc = pub(t,
                 "{\"containers\":["
                 "{\"id\":\"a\",\"memory\":{\"usage_bytes\":1}},"
                 "{\"id\":\"b\",\"memory\":{\"usage_bytes\":2}},"
                 "{\"id\":\"c\",\"memory\":{\"usage_bytes\":\"3\"}}]}",
                 NULL);
    ck_assert_int_eq(rc, KM_ESCHEMA);
    ck_assert_int_eq(log_lines, 1);
    ck_assert_int_eq(log_last_level, KM_LOG_WARNING);
    ck_assert_str_eq(log_last, "topic containers: message refused: "
                               "containers[2].memory.usage_bytes: expected number, "
                               "got string");
    ck_assert_uint_eq(km_topic_rejected(t), 1);
    ck_assert_uint_eq(km_topic_rejected(other), 0);
    ck_assert_uint_eq(km_topic_published(t), 0);
    ck_assert_uint_eq(km_bus_stats.rejected, rejected0 + 1);
    ck_assert_uint_eq(km_bus_stats.messages, messages0);
    ck_assert_int_eq(calls, 0);             /* nothing delivered */
    ck_assert_ptr_null(km_topic_latest(t)); /* nothing stored */

    ck_assert_int_eq(pub(t, "{}", NULL), KM_ESCHEMA);
    ck_assert_int_eq(log_lines, 2);
    ck_assert_str_eq(
        log_last,
        "topic containers: message refused: containers: required field missing");
    ck_assert_uint_eq(km_topic_rejected(t), 2);

    ck_assert_int_eq(pub(t, "{\"containers\":[]}", NULL), KM_OK);
    ck_assert_int_eq(log_lines, 2); /* accepted messages log nothing */
    ck_assert_int_eq(calls, 2);
    ck_assert_uint_eq(km_topic_published(t), 1);
    ck_assert_uint_eq(km_bus_stats.messages, messages0 + 1);
}
END_TEST

START_TEST(test_publish_refusal_keeps_state)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 4, NULL);
    ck_assert_int_eq(pub(t, "{\"v\":1}", NULL), KM_OK);
    struct km_msg *before = km_topic_latest(t);
    ck_assert_int_eq(pub(t, "{\"v\":\"no\"}", NULL), KM_ESCHEMA);
    ck_assert_ptr_eq(km_topic_latest(t), before);
    /* a refused event takes no seq number */
    ck_assert_int_eq(pub(e, "{\"v\":1}", NULL), KM_OK);
    ck_assert_int_eq(pub(e, "{}", NULL), KM_ESCHEMA);
    ck_assert_int_eq(pub(e, "{\"v\":2}", NULL), KM_OK);
    ck_assert_uint_eq(km_topic_last_seq(e), 2);
    ck_assert_uint_eq(km_topic_oldest_seq(e), 1);
    ck_assert_uint_eq(km_topic_published(e), 2);
    ck_assert_int_eq(log_lines, 2);
}
END_TEST

START_TEST(test_publish_bad_args)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, NULL, 0, NULL);
    /* the body is stolen in every case: ASan/valgrind catch a leak */
    ck_assert_int_eq(km_bus_publish(t, js("[1,2]"), NULL), KM_EINVAL);
    ck_assert_int_eq(km_bus_publish(t, js("\"x\""), NULL), KM_EINVAL);
    ck_assert_int_eq(km_bus_publish(t, NULL, NULL), KM_EINVAL);
    ck_assert_int_eq(km_bus_publish(NULL, js("{}"), NULL), KM_EINVAL);
    ck_assert_uint_eq(km_topic_rejected(t), 0);
    ck_assert_int_eq(log_lines, 0);
    /* a NULL schema takes any object */
    ck_assert_int_eq(km_bus_publish(t, js("{\"x\":[1,{}]}"), NULL), KM_OK);
}
END_TEST

START_TEST(test_publish_owner)
{
    struct km_topic *a = declare("a", KM_TOPIC_STATE, NULL, 0, OWNER_A);
    struct km_topic *core = declare("core", KM_TOPIC_EVENT, NULL, 0, NULL);
    calls = 0;
    km_bus_subscribe(bus, "*", count_cb, &calls, NULL);
    ck_assert_int_eq(pub(a, "{}", OWNER_B), KM_EOWNER);
    ck_assert_int_eq(pub(a, "{}", NULL), KM_EOWNER);
    ck_assert_int_eq(pub(core, "{}", OWNER_A), KM_EOWNER);
    /* even a bad message from a non-owner is an owner error, not a refusal */
    ck_assert_int_eq(km_bus_publish(a, js("[]"), OWNER_B), KM_EOWNER);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_eq(log_lines, 0);
    ck_assert_uint_eq(km_topic_last_seq(core), 0);
    ck_assert_int_eq(pub(a, "{}", OWNER_A), KM_OK);
    ck_assert_int_eq(pub(core, "{}", NULL), KM_OK);
    ck_assert_int_eq(calls, 2);
}
END_TEST

/* ---- declare ---------------------------------------------------------------------- */

START_TEST(test_declare)
{
    struct km_topic_def def = {"metrics", KM_TOPIC_STATE, v_schema,
                               0,         "host metrics", NULL};
    int err = 0;
    struct km_topic *t = km_bus_declare(bus, &def, OWNER_A, &err);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(km_topic_name(t), "metrics");
    ck_assert_int_eq(km_topic_kind(t), KM_TOPIC_STATE);
    ck_assert_ptr_eq(km_topic_schema(t), v_schema);
    ck_assert_str_eq(km_topic_description(t), "host metrics");
    ck_assert_uint_eq(km_topic_ring_size(t), 0);
    ck_assert_ptr_eq(km_bus_find(bus, "metrics"), t);
    ck_assert_ptr_null(km_bus_find(bus, "metric"));

    /* the definition is copied (except the schema) */
    char name[] = "events";
    char desc[] = "some events";
    struct km_topic_def d2 = {name, KM_TOPIC_EVENT, NULL, 0, desc, NULL};
    struct km_topic *e = km_bus_declare(bus, &d2, NULL, NULL);
    name[0] = 'X';
    desc[0] = 'X';
    ck_assert_str_eq(km_topic_name(e), "events");
    ck_assert_str_eq(km_topic_description(e), "some events");
    ck_assert_uint_eq(km_topic_ring_size(e), 256);
    ck_assert_ptr_null(
        km_topic_description(declare("nodesc", KM_TOPIC_STATE, NULL, 0, NULL)));

    /* EEXIST: whoever asks, whatever the kind */
    err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, OWNER_A, &err));
    ck_assert_int_eq(err, KM_EEXIST);
    def.kind = KM_TOPIC_EVENT;
    err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, OWNER_B, &err));
    ck_assert_int_eq(err, KM_EEXIST);
    ck_assert_ptr_null(km_bus_declare(bus, &def, OWNER_B, NULL)); /* err may be NULL */
}
END_TEST

START_TEST(test_declare_einval)
{
    char long_ok[65], long_bad[66];
    memset(long_ok, 'a', 64);
    long_ok[64] = '\0';
    memset(long_bad, 'a', 65);
    long_bad[65] = '\0';
    const char *bad[] = {"",    "Upper", "a b", "a/b",    "*",     "caf\xc3\xa9",
                         "a\n", "x:y",   "ä",   long_bad, "tab\t", "semi;"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct km_topic_def def = {bad[i], KM_TOPIC_STATE, NULL, 0, NULL, NULL};
        int err = 0;
        ck_assert_msg(km_bus_declare(bus, &def, NULL, &err) == NULL, "%s accepted",
                      bad[i]);
        ck_assert_int_eq(err, KM_EINVAL);
    }
    struct km_topic_def def = {NULL, KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    int err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);
    ck_assert_ptr_null(km_bus_declare(bus, NULL, NULL, &err));
    ck_assert_ptr_null(km_bus_declare(NULL, &def, NULL, &err));
    /* bad kinds */
    def.name = "k";
    def.kind = (enum km_topic_kind)0;
    err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);
    def.kind = (enum km_topic_kind)3;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    /* ring too large */
    def.kind = KM_TOPIC_EVENT;
    def.ring_size = 65537;
    err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);
    ck_assert_ptr_null(km_bus_find(bus, "k"));

    /* the edges that are fine */
    ck_assert_ptr_nonnull(declare(long_ok, KM_TOPIC_STATE, NULL, 0, NULL));
    ck_assert_ptr_nonnull(declare("a-b_c.d-0.9", KM_TOPIC_STATE, NULL, 0, NULL));
    ck_assert_ptr_nonnull(declare("k", KM_TOPIC_EVENT, NULL, 65536, NULL));
    ck_assert_uint_eq(km_topic_ring_size(km_bus_find(bus, "k")), 65536);
}
END_TEST

static void collect_name(struct km_topic *t, void *arg)
{
    char *out = arg;
    strcat(out, km_topic_name(t));
    strcat(out, ",");
}

START_TEST(test_foreach_order)
{
    /* many topics: the hash table grows; declaration order is kept */
    char want[4096] = "", got[4096] = "";
    km_bus_subscribe(bus, "never-declared", count_cb, &calls, NULL);
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", (i * 37) % 100);
        declare(name, i % 2 ? KM_TOPIC_STATE : KM_TOPIC_EVENT, NULL, 2, NULL);
        strcat(want, name);
        strcat(want, ",");
    }
    km_bus_foreach(bus, collect_name, got);
    ck_assert_str_eq(got, want); /* the placeholder is not a topic */
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        ck_assert_ptr_nonnull(km_bus_find(bus, name));
    }
    ck_assert_ptr_null(km_bus_find(bus, "never-declared"));
}
END_TEST

/* ---- state topics ----------------------------------------------------------------- */

static int cache_frees;
static void cache_free(void *p)
{
    (void)p;
    cache_frees++;
}

START_TEST(test_state_retention)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    ck_assert_ptr_null(km_topic_latest(t));
    rec_reset();
    /* no value yet: subscribing calls nothing */
    km_bus_subscribe(bus, "s", rec_cb, "early", NULL);
    ck_assert_int_eq(nrec, 0);

    ck_assert_int_eq(pub(t, "{\"v\":1}", NULL), KM_OK);
    struct km_msg *m1 = km_topic_latest(t);
    ck_assert_ptr_nonnull(m1);
    ck_assert_uint_eq(km_msg_seq(m1), 0);
    ck_assert_ptr_eq(km_msg_topic(m1), t);
    cache_frees = 0;
    km_msg_set_cache(m1, &cache_frees, cache_free); /* detects m1 being freed */

    /* a new subscriber gets the value at once, inside subscribe */
    ck_assert_int_eq(nrec, 1);
    km_bus_subscribe(bus, "s", rec_cb, "late", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(1, "late:s:1");

    /* republish replaces it; the bus's reference to the old one goes */
    ck_assert_int_eq(pub(t, "{\"v\":2}", NULL), KM_OK);
    ck_assert_int_eq(cache_frees, 1);
    ck_assert_int_eq(nrec, 4);
    ck_rec(2, "early:s:2");
    ck_rec(3, "late:s:2");
    ck_assert_int_eq(
        json_integer_value(json_object_get(km_msg_json(km_topic_latest(t)), "v")), 2);
    km_bus_subscribe(bus, "s", rec_cb, "later", NULL);
    ck_rec(4, "later:s:2");
    ck_assert_int_eq(nrec, 5);
}
END_TEST

/* Keeps the message it is given. */
static struct km_msg *kept;
static void keep_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    km_msg_unref(kept);
    kept = km_msg_ref(m);
}

START_TEST(test_msg_ref_lifetime)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    kept = NULL;
    km_bus_subscribe(bus, "s", keep_cb, NULL, NULL);
    ck_assert_int_eq(pub(t, "{\"v\":1}", NULL), KM_OK);
    struct km_msg *m1 = kept;
    cache_frees = 0;
    km_msg_set_cache(m1, &cache_frees, cache_free);
    km_msg_ref(m1); /* a reference of our own */

    /* replaced as latest, still alive because we hold it */
    ck_assert_int_eq(pub(t, "{\"v\":2}", NULL), KM_OK);
    ck_assert_ptr_ne(kept, m1); /* keep_cb took m2, dropped its m1 reference */
    ck_assert_int_eq(cache_frees, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(m1), "v")), 1);
    size_t len;
    ck_assert_str_eq(km_msg_text(m1, &len), "{\"v\":1}");
    km_msg_unref(m1); /* ours: now it goes */
    ck_assert_int_eq(cache_frees, 1);

    /* a message outlives its topic's replacement and the bus */
    struct km_msg *m2 = kept;
    kept = NULL;
    km_bus_free(bus);
    bus = km_bus_new();
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(m2), "v")), 2);
    km_msg_unref(m2);
    km_msg_unref(NULL); /* fine */
    ck_assert_ptr_eq(km_msg_ref(NULL), NULL);
}
END_TEST

/* ---- event topics ----------------------------------------------------------------- */

static uint64_t replayed[64]; /* seqs seen by replay_cb */
static int nreplayed;         /* entries in replayed */

static void replay_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    replayed[nreplayed++] = km_msg_seq(m);
}

static int replay(struct km_topic *t, uint64_t since)
{
    nreplayed = 0;
    return km_bus_replay(t, since, replay_cb, NULL);
}

static void ck_replayed(uint64_t first, uint64_t last)
{
    ck_assert_int_eq(nreplayed, (int)(last - first + 1));
    for (int i = 0; i < nreplayed; i++)
        ck_assert_uint_eq(replayed[i], first + (uint64_t)i);
}

START_TEST(test_event_seq)
{
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    struct km_topic *f = declare("f", KM_TOPIC_EVENT, v_schema, 0, NULL);
    ck_assert_uint_eq(km_topic_last_seq(e), 0);
    ck_assert_uint_eq(km_topic_oldest_seq(e), 0);
    ck_assert_int_eq(replay(e, 0), 0);
    nreplayed = 0;
    km_bus_subscribe(bus, "e", replay_cb, NULL, NULL);
    ck_assert_int_eq(nreplayed, 0); /* event topics give nothing at subscribe */
    for (int i = 1; i <= 5; i++)
        ck_assert_int_eq(km_bus_publish(e, json_pack("{s:i}", "v", i), NULL), KM_OK);
    ck_assert_int_eq(pub(f, "{\"v\":1}", NULL), KM_OK); /* seqs are per topic */
    ck_replayed(1, 5);
    ck_assert_uint_eq(km_topic_last_seq(e), 5);
    ck_assert_uint_eq(km_topic_oldest_seq(e), 1);
    ck_assert_uint_eq(km_topic_last_seq(f), 1);
    ck_assert_uint_eq(km_topic_published(e), 5);
    /* an event topic has no "current value" */
    ck_assert_ptr_null(km_topic_latest(e));
}
END_TEST

START_TEST(test_event_replay_bounds)
{
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 4, NULL);
    struct km_topic *s = declare("s", KM_TOPIC_STATE, v_schema, 4, NULL);
    ck_assert_uint_eq(km_topic_ring_size(e), 4);
    for (int i = 1; i <= 10; i++)
        ck_assert_int_eq(km_bus_publish(e, json_pack("{s:i}", "v", i), NULL), KM_OK);
    ck_assert_uint_eq(km_topic_last_seq(e), 10);
    ck_assert_uint_eq(km_topic_oldest_seq(e), 7);

    ck_assert_int_eq(replay(e, 0), KM_EGONE);
    ck_replayed(7, 10);
    ck_assert_int_eq(replay(e, 5), KM_EGONE); /* 6 is gone */
    ck_replayed(7, 10);
    ck_assert_int_eq(replay(e, 6), 4);
    ck_replayed(7, 10);
    ck_assert_int_eq(replay(e, 8), 2);
    ck_replayed(9, 10);
    ck_assert_int_eq(replay(e, 9), 1);
    ck_replayed(10, 10);
    ck_assert_int_eq(replay(e, 10), 0);
    ck_assert_int_eq(nreplayed, 0);
    ck_assert_int_eq(replay(e, 1000), 0); /* a since from the future */
    ck_assert_int_eq(nreplayed, 0);

    ck_assert_int_eq(km_bus_replay(s, 0, replay_cb, NULL), KM_EKIND);
    ck_assert_int_eq(km_bus_replay(NULL, 0, replay_cb, NULL), KM_EINVAL);
    ck_assert_int_eq(km_bus_replay(e, 0, NULL, NULL), KM_EINVAL);
}
END_TEST

static void replay_body_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(m), "v")),
                     (json_int_t)km_msg_seq(m) * 10);
    replayed[nreplayed++] = km_msg_seq(m);
}

START_TEST(test_event_ring_wrap)
{
    /* many wraps of a small ring keep the newest in order, bodies intact */
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 3, NULL);
    for (int i = 1; i <= 1000; i++)
        ck_assert_int_eq(km_bus_publish(e, json_pack("{s:i}", "v", i * 10), NULL), KM_OK);
    nreplayed = 0;
    ck_assert_int_eq(km_bus_replay(e, 997, replay_body_cb, NULL), 3);
    ck_replayed(998, 1000);
    nreplayed = 0;
    ck_assert_int_eq(km_bus_replay(e, 0, replay_body_cb, NULL), KM_EGONE);
    ck_replayed(998, 1000);
}
END_TEST

/* Publishes on its topic from inside replay: the replayed set is fixed. */
static void replay_publish_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    replayed[nreplayed++] = km_msg_seq(m);
    ck_assert_int_eq(km_bus_publish(t, json_pack("{s:i}", "v", 0), NULL), KM_OK);
}

START_TEST(test_event_replay_reentrant)
{
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 2, NULL);
    int live = 0;
    km_bus_subscribe(bus, "e", count_cb, &live, NULL);
    pub(e, "{\"v\":1}", NULL);
    pub(e, "{\"v\":2}", NULL);
    ck_assert_int_eq(live, 2);
    nreplayed = 0;
    ck_assert_int_eq(km_bus_replay(e, 0, replay_publish_cb, NULL), 2);
    ck_replayed(1, 2);
    /* the two published during the replay were delivered after it */
    ck_assert_int_eq(live, 4);
    ck_assert_uint_eq(km_topic_last_seq(e), 4);
}
END_TEST

/* ---- subscriptions ---------------------------------------------------------------- */

static int order_seen[1000]; /* index of each call, by subscriber */
static int order_next;       /* calls so far */

static void order_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)m;
    order_seen[order_next++] = (int)(intptr_t)arg;
}

START_TEST(test_many_subscribers_in_order)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, NULL, 0, NULL);
    for (int i = 0; i < 1000; i++)
        ck_assert_ptr_nonnull(
            km_bus_subscribe(bus, "e", order_cb, (void *)(intptr_t)i, NULL));
    order_next = 0;
    ck_assert_int_eq(pub(t, "{}", NULL), KM_OK);
    ck_assert_int_eq(order_next, 1000);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(order_seen[i], i);
}
END_TEST

static struct km_sub *subs[8]; /* handles, for callbacks that end others */

/* Unsubscribes itself on its first call. */
static void self_unsub_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, arg);
    km_bus_unsubscribe(subs[0]);
}

START_TEST(test_unsubscribe_self_during_delivery)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    rec_reset();
    subs[0] = km_bus_subscribe(bus, "e", self_unsub_cb, "self", NULL);
    subs[1] = km_bus_subscribe(bus, "e", rec_cb, "next", NULL);
    pub(t, "{\"v\":1}", NULL);
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(0, "self:e:1");
    ck_rec(1, "next:e:1"); /* the one after it is not skipped */
    ck_rec(2, "next:e:2");
}
END_TEST

/* Unsubscribes subs[(int)arg]. */
static void unsub_other_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, "killer");
    km_bus_unsubscribe(subs[(intptr_t)arg]);
    subs[(intptr_t)arg] = NULL;
}

START_TEST(test_unsubscribe_later_during_delivery)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    rec_reset();
    subs[0] = km_bus_subscribe(bus, "e", unsub_other_cb, (void *)(intptr_t)1, NULL);
    subs[1] = km_bus_subscribe(bus, "e", rec_cb, "victim", NULL);
    subs[2] = km_bus_subscribe(bus, "e", rec_cb, "bystander", NULL);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(0, "killer:e:1");
    ck_rec(1, "bystander:e:1"); /* victim was not called */
    km_bus_unsubscribe(subs[0]);
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(2, "bystander:e:2");
}
END_TEST

START_TEST(test_unsubscribe_earlier_during_delivery)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    rec_reset();
    subs[0] = km_bus_subscribe(bus, "e", rec_cb, "victim", NULL);
    subs[1] = km_bus_subscribe(bus, "e", unsub_other_cb, (void *)(intptr_t)0, NULL);
    subs[2] = km_bus_subscribe(bus, "e", rec_cb, "bystander", NULL);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(0, "victim:e:1");
    ck_rec(1, "killer:e:1");
    ck_rec(2, "bystander:e:1"); /* removing an earlier entry skips no one */
    /* the "*" list too */
    subs[3] = km_bus_subscribe(bus, "*", unsub_other_cb, (void *)(intptr_t)4, NULL);
    subs[4] = km_bus_subscribe(bus, "*", rec_cb, "wild", NULL);
    rec_reset();
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(0, "killer:e:2");
    ck_rec(1, "bystander:e:2");
    ck_rec(2, "killer:e:2");
}
END_TEST

/* Subscribes a recorder on the same topic, once. */
static void sub_during_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, "subscriber");
    if (!subs[1])
        subs[1] = km_bus_subscribe(bus, km_topic_name(t), rec_cb, "new", NULL);
}

START_TEST(test_subscribe_during_delivery)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    rec_reset();
    subs[1] = NULL;
    subs[0] = km_bus_subscribe(bus, "e", sub_during_cb, NULL, NULL);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_ptr_nonnull(subs[1]);
    ck_assert_int_eq(nrec, 1); /* the new one did not get message 1 */
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(1, "subscriber:e:2");
    ck_rec(2, "new:e:2");
}
END_TEST

START_TEST(test_subscribe_during_delivery_state)
{
    /* on a state topic the newcomer gets the current value exactly once:
       as its initial value, inside subscribe */
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    rec_reset();
    subs[1] = NULL;
    subs[0] = km_bus_subscribe(bus, "s", sub_during_cb, NULL, NULL);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(0, "subscriber:s:1");
    ck_rec(1, "new:s:1");
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 4);
    ck_rec(2, "subscriber:s:2");
    ck_rec(3, "new:s:2");
}
END_TEST

static struct km_topic *nested_target; /* where nested_pub_cb publishes */

/* Publishes {"v": v * 10} on nested_target once for each message. */
static void nested_pub_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, arg);
    json_int_t v = json_integer_value(json_object_get(km_msg_json(m), "v"));
    if (v < 10) {
        uint64_t seq = km_topic_last_seq(nested_target);
        int rc = km_bus_publish(nested_target, json_pack("{s:I}", "v", v * 10), NULL);
        ck_assert_int_eq(rc, KM_OK);
        /* stored (numbered) at once, delivered after this message */
        ck_assert_uint_eq(km_topic_last_seq(nested_target), seq + 1);
    }
}

START_TEST(test_nested_publish_other_topic)
{
    struct km_topic *a = declare("a", KM_TOPIC_STATE, v_schema, 0, NULL);
    struct km_topic *b = declare("b", KM_TOPIC_EVENT, v_schema, 0, NULL);
    nested_target = b;
    rec_reset();
    km_bus_subscribe(bus, "a", nested_pub_cb, "x", NULL);
    km_bus_subscribe(bus, "a", rec_cb, "y", NULL);
    km_bus_subscribe(bus, "b", rec_cb, "z", NULL);
    km_bus_subscribe(bus, "*", rec_cb, "w", NULL);
    ck_assert_int_eq(pub(a, "{\"v\":1}", NULL), KM_OK);
    /* when the outer publish returns everything has been delivered, and
       every subscriber saw the messages in the order they were accepted */
    ck_assert_int_eq(nrec, 5);
    ck_rec(0, "x:a:1");
    ck_rec(1, "y:a:1");
    ck_rec(2, "w:a:1");
    ck_rec(3, "z:b:10");
    ck_rec(4, "w:b:10");
    ck_assert_uint_eq(km_topic_last_seq(b), 1);
}
END_TEST

START_TEST(test_nested_publish_same_topic)
{
    struct km_topic *a = declare("a", KM_TOPIC_EVENT, v_schema, 0, NULL);
    nested_target = a;
    rec_reset();
    km_bus_subscribe(bus, "a", nested_pub_cb, "x", NULL);
    km_bus_subscribe(bus, "a", rec_cb, "y", NULL);
    ck_assert_int_eq(pub(a, "{\"v\":1}", NULL), KM_OK);
    /* no interleaving: y sees 1 before 10, as x did */
    ck_assert_int_eq(nrec, 4);
    ck_rec(0, "x:a:1");
    ck_rec(1, "y:a:1");
    ck_rec(2, "x:a:10");
    ck_rec(3, "y:a:10");
}
END_TEST

/* Publishes on state topic nested_target; checks it is stored at once. */
static void nested_state_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, arg);
    ck_assert_int_eq(km_bus_publish(nested_target, json_pack("{s:i}", "v", 42), NULL),
                     KM_OK);
    struct km_msg *now = km_topic_latest(nested_target);
    ck_assert_int_eq(json_integer_value(json_object_get(km_msg_json(now), "v")), 42);
    ck_assert_int_eq(nrec, 1); /* not delivered yet */
}

START_TEST(test_nested_publish_state)
{
    struct km_topic *a = declare("a", KM_TOPIC_EVENT, v_schema, 0, NULL);
    nested_target = declare("b", KM_TOPIC_STATE, v_schema, 0, NULL);
    rec_reset();
    km_bus_subscribe(bus, "a", nested_state_cb, "x", NULL);
    km_bus_subscribe(bus, "b", rec_cb, "y", NULL);
    ck_assert_int_eq(pub(a, "{\"v\":1}", NULL), KM_OK);
    ck_assert_int_eq(nrec, 2);
    ck_rec(1, "y:b:42");
}
END_TEST

START_TEST(test_subscribe_before_declare)
{
    rec_reset();
    struct km_sub *s = km_bus_subscribe(bus, "later", rec_cb, "early", NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(km_bus_find(bus, "later"));
    struct km_topic *t = declare("later", KM_TOPIC_STATE, v_schema, 0, NULL);
    ck_assert_int_eq(nrec, 0);
    pub(t, "{\"v\":7}", NULL);
    ck_assert_int_eq(nrec, 1);
    ck_rec(0, "early:later:7");

    /* many placeholders (sharing hash buckets), dropped in another order */
    struct km_sub *many[50];
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        many[i] = km_bus_subscribe(bus, name, rec_cb, "p", NULL);
        ck_assert_ptr_nonnull(many[i]);
    }
    for (int i = 0; i < 50; i += 2)
        km_bus_unsubscribe(many[i]);
    for (int i = 49; i > 0; i -= 2)
        km_bus_unsubscribe(many[i]);
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_ptr_null(km_bus_find(bus, name));
    }

    /* a placeholder nobody waits on any more goes away; the name stays free */
    struct km_sub *s2 = km_bus_subscribe(bus, "ghost", rec_cb, "g", NULL);
    km_bus_unsubscribe(s2);
    ck_assert_ptr_null(km_bus_find(bus, "ghost"));
    struct km_topic *g = declare("ghost", KM_TOPIC_EVENT, v_schema, 0, NULL);
    pub(g, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 1);
}
END_TEST

START_TEST(test_wildcard)
{
    struct km_topic *s = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    struct km_topic *s2 = declare("s2", KM_TOPIC_STATE, v_schema, 0, NULL);
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    pub(s, "{\"v\":1}", NULL);
    pub(e, "{\"v\":2}", NULL);
    rec_reset();
    /* initial values: each state topic with a value, in declaration order */
    subs[0] = km_bus_subscribe(bus, "*", rec_cb, "all", NULL);
    ck_assert_int_eq(nrec, 1);
    ck_rec(0, "all:s:1");

    /* a per-topic subscription made later is still called before "*" */
    km_bus_subscribe(bus, "e", rec_cb, "one", NULL);
    pub(e, "{\"v\":3}", NULL);
    pub(s2, "{\"v\":4}", NULL);
    ck_assert_int_eq(nrec, 4);
    ck_rec(1, "one:e:3");
    ck_rec(2, "all:e:3");
    ck_rec(3, "all:s2:4");

    /* topics declared later reach "*" too */
    struct km_topic *n = declare("new", KM_TOPIC_EVENT, v_schema, 0, NULL);
    pub(n, "{\"v\":5}", NULL);
    ck_assert_int_eq(nrec, 5);
    ck_rec(4, "all:new:5");

    km_bus_unsubscribe(subs[0]);
    pub(n, "{\"v\":6}", NULL);
    ck_assert_int_eq(nrec, 5);
}
END_TEST

START_TEST(test_subscribe_bad_args)
{
    int n = 0;
    ck_assert_ptr_null(km_bus_subscribe(bus, "Bad Name", count_cb, &n, NULL));
    ck_assert_ptr_null(km_bus_subscribe(bus, "", count_cb, &n, NULL));
    ck_assert_ptr_null(km_bus_subscribe(bus, NULL, count_cb, &n, NULL));
    ck_assert_ptr_null(km_bus_subscribe(bus, "**", count_cb, &n, NULL));
    ck_assert_ptr_null(km_bus_subscribe(bus, "ok", NULL, &n, NULL));
    ck_assert_ptr_null(km_bus_subscribe(NULL, "ok", count_cb, &n, NULL));
    km_bus_unsubscribe(NULL);
    /* NULL buses are ignored */
    km_bus_unsubscribe_owner(NULL, NULL);
    km_bus_disown(NULL, NULL);
    km_bus_foreach(NULL, NULL, NULL);
    km_bus_free(NULL);
    ck_assert_ptr_null(km_bus_find(NULL, "x"));
    ck_assert_ptr_null(km_bus_find(bus, NULL));
}
END_TEST

START_TEST(test_unsubscribe_owner)
{
    struct km_topic *t = declare("e", KM_TOPIC_EVENT, v_schema, 0, NULL);
    rec_reset();
    km_bus_subscribe(bus, "e", rec_cb, "a1", OWNER_A);
    km_bus_subscribe(bus, "e", rec_cb, "b1", OWNER_B);
    km_bus_subscribe(bus, "*", rec_cb, "a2", OWNER_A);
    km_bus_subscribe(bus, "undeclared", rec_cb, "a3", OWNER_A);
    km_bus_subscribe(bus, "*", rec_cb, "core", NULL);
    km_bus_unsubscribe_owner(bus, OWNER_A);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(0, "b1:e:1");
    ck_rec(1, "core:e:1");
    km_bus_unsubscribe_owner(bus, NULL); /* the core's */
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 3);
    ck_rec(2, "b1:e:2");
}
END_TEST

/* Ends every subscription of OWNER_B, during delivery. */
static void unsub_owner_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    rec_cb(t, m, arg);
    km_bus_unsubscribe_owner(bus, OWNER_B);
}

START_TEST(test_unsubscribe_owner_during_delivery)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, NULL);
    rec_reset();
    km_bus_subscribe(bus, "s", unsub_owner_cb, "killer", OWNER_B);
    km_bus_subscribe(bus, "s", rec_cb, "b", OWNER_B);
    km_bus_subscribe(bus, "s", rec_cb, "a", OWNER_A);
    pub(t, "{\"v\":1}", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(0, "killer:s:1");
    ck_rec(1, "a:s:1");

    /* ended during its own initial delivery: subscribe returns NULL */
    ck_assert_ptr_null(km_bus_subscribe(bus, "s", unsub_owner_cb, "k2", OWNER_B));
    ck_assert_int_eq(nrec, 3);
    ck_rec(2, "k2:s:1");
    pub(t, "{\"v\":2}", NULL);
    ck_assert_int_eq(nrec, 4);
    ck_rec(3, "a:s:2");
}
END_TEST

START_TEST(test_disown)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, v_schema, 0, OWNER_A);
    struct km_topic *e = declare("e", KM_TOPIC_EVENT, v_schema, 4, OWNER_A);
    struct km_topic *b = declare("b", KM_TOPIC_STATE, v_schema, 0, OWNER_B);
    rec_reset();
    km_bus_subscribe(bus, "s", rec_cb, "sub", NULL);
    pub(t, "{\"v\":1}", OWNER_A);
    pub(e, "{\"v\":1}", OWNER_A);
    pub(e, "{\"v\":2}", OWNER_A);
    ck_assert_int_eq(nrec, 1);

    km_bus_disown(bus, OWNER_A);
    /* still there, with its messages, but without the schema */
    ck_assert_ptr_eq(km_bus_find(bus, "s"), t);
    ck_assert_ptr_null(km_topic_schema(t));
    ck_assert_ptr_null(km_topic_schema(e));
    ck_assert_ptr_eq(km_topic_schema(b), v_schema);
    ck_assert_ptr_nonnull(km_topic_latest(t));
    ck_assert_int_eq(replay(e, 0), 2);
    json_t *sj = km_topic_schema_json(t);
    ck_assert_ptr_nonnull(sj);
    json_decref(sj);
    /* orphaned: read-only for everybody */
    ck_assert_int_eq(pub(t, "{\"v\":2}", OWNER_A), KM_EOWNER);
    ck_assert_int_eq(pub(t, "{\"v\":2}", NULL), KM_EOWNER);
    ck_assert_int_eq(pub(b, "{\"v\":2}", OWNER_B), KM_OK);
    /* subscribers are kept */
    km_bus_subscribe(bus, "s", rec_cb, "after", NULL);
    ck_assert_int_eq(nrec, 2);
    ck_rec(1, "after:s:1");

    /* a reloaded plugin adopts its topic back: same handle, seq goes on */
    struct km_topic_def def = {"e", KM_TOPIC_EVENT, v_schema, 100, "again", NULL};
    int err = 0;
    ck_assert_ptr_eq(km_bus_declare(bus, &def, OWNER_B, &err), e);
    ck_assert_ptr_eq(km_topic_schema(e), v_schema);
    ck_assert_str_eq(km_topic_description(e), "again");
    ck_assert_uint_eq(km_topic_ring_size(e), 4);
    ck_assert_int_eq(pub(e, "{\"v\":3}", OWNER_A), KM_EOWNER);
    ck_assert_int_eq(pub(e, "{\"v\":\"x\"}", OWNER_B), KM_ESCHEMA);
    ck_assert_int_eq(pub(e, "{\"v\":3}", OWNER_B), KM_OK);
    ck_assert_uint_eq(km_topic_last_seq(e), 3);
    /* ...but only with the same kind */
    def.name = "s";
    err = 0;
    ck_assert_ptr_null(km_bus_declare(bus, &def, OWNER_B, &err));
    ck_assert_int_eq(err, KM_EEXIST);
    /* and a topic with an owner cannot be taken over */
    def.name = "e";
    ck_assert_ptr_null(km_bus_declare(bus, &def, OWNER_A, &err));
    ck_assert_int_eq(err, KM_EEXIST);
}
END_TEST

/* ---- encoding and the cache slot -------------------------------------------------- */

static const char *text_seen; /* pointer km_msg_text gave the first reader */
static int text_calls;        /* readers */

static void text_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    for (int i = 0; i < 10; i++) {
        size_t len = 0;
        const char *s = km_msg_text(m, &len);
        ck_assert_ptr_nonnull(s);
        if (!text_seen)
            text_seen = s;
        ck_assert_ptr_eq(s, text_seen);
        ck_assert_uint_eq(len, strlen(s));
        text_calls++;
    }
}

START_TEST(test_single_encoding)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, NULL, 0, NULL);
    for (int i = 0; i < 100; i++)
        km_bus_subscribe(bus, i % 2 ? "s" : "*", text_cb, NULL, OWNER_A);
    text_seen = NULL;
    text_calls = 0;
    uint64_t enc0 = km_bus_stats.json_encodes;
    ck_assert_int_eq(pub(t, "{ \"a\" : [1, 2.5, \"x\"], \"b\" : {\"c\" : null} }", NULL),
                     KM_OK);
    ck_assert_int_eq(text_calls, 1000);
    ck_assert_uint_eq(km_bus_stats.json_encodes, enc0 + 1);
    ck_assert_str_eq(text_seen, "{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null}}");
    ck_assert_ptr_eq(km_msg_text(km_topic_latest(t), NULL), text_seen);
    ck_assert_uint_eq(km_bus_stats.json_encodes, enc0 + 1);
    /* never read: never encoded */
    km_bus_unsubscribe_owner(bus, OWNER_A);
    pub(declare("quiet", KM_TOPIC_EVENT, NULL, 0, NULL), "{}", NULL);
    ck_assert_uint_eq(km_bus_stats.json_encodes, enc0 + 1);
}
END_TEST

static int frees_a, frees_b; /* calls of free_a / free_b */
static void free_a(void *p)
{
    ck_assert_ptr_eq(p, &frees_a);
    frees_a++;
}
static void free_b(void *p)
{
    ck_assert_ptr_eq(p, &frees_b);
    frees_b++;
}

START_TEST(test_cache_slot)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, NULL, 0, NULL);
    pub(t, "{}", NULL);
    struct km_msg *m = km_msg_ref(km_topic_latest(t));
    frees_a = frees_b = 0;
    ck_assert_ptr_null(km_msg_cache(m));
    km_msg_set_cache(m, &frees_a, free_a);
    ck_assert_ptr_eq(km_msg_cache(m), &frees_a);
    km_msg_set_cache(m, &frees_a, free_a); /* the same again: not freed */
    ck_assert_int_eq(frees_a, 0);
    km_msg_set_cache(m, &frees_b, free_b); /* replaced: the old one is freed */
    ck_assert_int_eq(frees_a, 1);
    ck_assert_ptr_eq(km_msg_cache(m), &frees_b);
    pub(t, "{}", NULL); /* the bus lets go; we still hold it */
    ck_assert_int_eq(frees_b, 0);
    km_msg_unref(m);
    ck_assert_int_eq(frees_a, 1);
    ck_assert_int_eq(frees_b, 1);

    /* real allocations with free(): ASan/valgrind check each is freed once,
       on replacement and when the message goes (at teardown) */
    m = km_topic_latest(t);
    km_msg_set_cache(m, strdup("frame"), free);
    ck_assert_str_eq(km_msg_cache(m), "frame");
    km_msg_set_cache(m, strdup("frame2"), free);
    ck_assert_str_eq(km_msg_cache(m), "frame2");
    /* NULL free_fn: the slot is just borrowed */
    static char borrowed[] = "b";
    pub(t, "{}", NULL);
    m = km_topic_latest(t);
    km_msg_set_cache(m, borrowed, NULL);
}
END_TEST

START_TEST(test_timestamps)
{
    struct km_topic *t = declare("s", KM_TOPIC_STATE, NULL, 0, NULL);
    struct timespec a, b, ma, mb;
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &ma);
    pub(t, "{}", NULL);
    clock_gettime(CLOCK_MONOTONIC, &mb);
    clock_gettime(CLOCK_REALTIME, &b);
    struct km_msg *m = km_topic_latest(t);
    int64_t lo = (int64_t)a.tv_sec * 1000000 + a.tv_nsec / 1000;
    int64_t hi = (int64_t)b.tv_sec * 1000000 + b.tv_nsec / 1000;
    ck_assert_int_ge(km_msg_time_us(m), lo);
    ck_assert_int_le(km_msg_time_us(m), hi);
    lo = (int64_t)ma.tv_sec * 1000000 + ma.tv_nsec / 1000;
    hi = (int64_t)mb.tv_sec * 1000000 + mb.tv_nsec / 1000;
    ck_assert_int_ge(km_msg_mono_us(m), lo);
    ck_assert_int_le(km_msg_mono_us(m), hi);
}
END_TEST

/* ---- runner ----------------------------------------------------------------------- */

static Suite *bus_suite(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("schema");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_schema_string);
    tcase_add_test(tc, test_schema_integer);
    tcase_add_test(tc, test_schema_number);
    tcase_add_test(tc, test_schema_bool);
    tcase_add_test(tc, test_schema_any);
    tcase_add_test(tc, test_schema_nullable);
    tcase_add_test(tc, test_schema_required_optional);
    tcase_add_test(tc, test_schema_nested_object);
    tcase_add_test(tc, test_schema_array_items);
    tcase_add_test(tc, test_schema_exact_path);
    tcase_add_test(tc, test_schema_closed);
    tcase_add_test(tc, test_schema_top_level);
    tcase_add_test(tc, test_schema_path_sanitized);
    tcase_add_test(tc, test_schema_valid);
    tcase_add_test(tc, test_schema_json);
    suite_add_tcase(s, tc);

    tc = tcase_create("publish");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_publish_refused_logs_once);
    tcase_add_test(tc, test_publish_refusal_keeps_state);
    tcase_add_test(tc, test_publish_bad_args);
    tcase_add_test(tc, test_publish_owner);
    tcase_add_test(tc, test_declare);
    tcase_add_test(tc, test_declare_einval);
    tcase_add_test(tc, test_foreach_order);
    suite_add_tcase(s, tc);

    tc = tcase_create("retention");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_state_retention);
    tcase_add_test(tc, test_msg_ref_lifetime);
    tcase_add_test(tc, test_event_seq);
    tcase_add_test(tc, test_event_replay_bounds);
    tcase_add_test(tc, test_event_ring_wrap);
    tcase_add_test(tc, test_event_replay_reentrant);
    suite_add_tcase(s, tc);

    tc = tcase_create("subscribe");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_many_subscribers_in_order);
    tcase_add_test(tc, test_unsubscribe_self_during_delivery);
    tcase_add_test(tc, test_unsubscribe_later_during_delivery);
    tcase_add_test(tc, test_unsubscribe_earlier_during_delivery);
    tcase_add_test(tc, test_subscribe_during_delivery);
    tcase_add_test(tc, test_subscribe_during_delivery_state);
    tcase_add_test(tc, test_nested_publish_other_topic);
    tcase_add_test(tc, test_nested_publish_same_topic);
    tcase_add_test(tc, test_nested_publish_state);
    tcase_add_test(tc, test_subscribe_before_declare);
    tcase_add_test(tc, test_wildcard);
    tcase_add_test(tc, test_subscribe_bad_args);
    tcase_add_test(tc, test_unsubscribe_owner);
    tcase_add_test(tc, test_unsubscribe_owner_during_delivery);
    tcase_add_test(tc, test_disown);
    suite_add_tcase(s, tc);

    tc = tcase_create("messages");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_single_encoding);
    tcase_add_test(tc, test_cache_slot);
    tcase_add_test(tc, test_timestamps);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(bus_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
