/*
 * check_alert_eval.c - alert_manager's state machine and firing counts
 * (plugins/alert_eval.c, compiled into this test with alert_rules.c).
 *
 * Rules are built as the parser builds them (the fields am_rule_parse
 * sets), messages are the shapes docker_stats publishes, and each case
 * checks both what a message raises (the batch) and what am_firing then
 * says: the body of the alerts_firing topic, whose counts must follow the
 * alerts sent, pair by pair, 0 included.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include "../../plugins/alert_eval.h"

static struct am_rule rules[4]; /* the rules of the case */
static int n_rules;             /* how many */
static uint64_t next_id;        /* alert ids */

static void setup(void)
{
    memset(rules, 0, sizeof rules);
    n_rules = 0;
    next_id = 0;
}

static void teardown(void)
{
    for (int i = 0; i < n_rules; i++)
        free(rules[i].tracks);
}

/* A threshold rule "> warning, >= critical" (a NaN leaves one out). */
static struct am_rule *threshold(const char *type, const char *path, double warning,
                                 double critical)
{
    struct am_rule *r = &rules[n_rules++];

    snprintf(r->name, sizeof r->name, "%s", type);
    snprintf(r->type, sizeof r->type, "%s", type);
    snprintf(r->topic, sizeof r->topic, "containers");
    snprintf(r->path, sizeof r->path, "%s", path);
    snprintf(r->message, sizeof r->message, "%s at {value}", type);
    r->op = AM_GT;
    r->has_warning = warning == warning;
    r->has_critical = critical == critical;
    r->warning = warning;
    r->critical = critical;
    r->clear = r->has_warning ? warning : critical;
    r->for_n = 1;
    r->cooldown = 60;
    ck_assert_int_eq(am_make_tracks(r), 0);
    return r;
}

/* container_down as shipped: status != running, level error. */
static struct am_rule *container_down(void)
{
    struct am_rule *r = &rules[n_rules++];

    snprintf(r->name, sizeof r->name, "container_down");
    snprintf(r->type, sizeof r->type, "container_down");
    snprintf(r->topic, sizeof r->topic, "containers");
    snprintf(r->path, sizeof r->path, "containers[*]");
    snprintf(r->message, sizeof r->message, "Container '{name}' is {value}");
    snprintf(r->name_field, sizeof r->name_field, "name");
    r->is_match = 1;
    r->match_level = 2;
    snprintf(r->clauses[0].field, sizeof r->clauses[0].field, "status");
    r->clauses[0].negate = 1;
    snprintf(r->clauses[0].value, sizeof r->clauses[0].value, "running");
    r->n_clauses = 1;
    r->for_n = 1;
    r->cooldown = 60;
    ck_assert_int_eq(am_make_tracks(r), 0);
    return r;
}

/* Evaluates every rule on the message `text`; returns the batch (new). */
static json_t *feed(const char *text)
{
    json_t *msg = json_loads(text, 0, NULL);
    json_t *batch = json_array();

    ck_assert_ptr_nonnull(msg);
    for (int i = 0; i < n_rules; i++)
        am_eval(&rules[i], msg, batch, &next_id);
    json_decref(msg);
    return batch;
}

/* am_firing as compact text, for exact comparisons. */
static char *firing_text(void)
{
    json_t *f = am_firing(rules, n_rules);
    char *text;

    ck_assert_ptr_nonnull(f);
    text = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    return text;
}

static void assert_firing(const char *want)
{
    char *got = firing_text();
    ck_assert_str_eq(got, want);
    free(got);
}

/* The batch holds exactly one alert, of this type, level and state. */
static void assert_one(json_t *batch, const char *type, const char *level,
                       const char *state)
{
    json_t *a = json_array_get(batch, 0);

    ck_assert_int_eq(json_array_size(batch), 1);
    ck_assert_str_eq(json_string_value(json_object_get(a, "type")), type);
    ck_assert_str_eq(json_string_value(json_object_get(a, "level")), level);
    ck_assert_str_eq(json_string_value(json_object_get(a, "state")), state);
    json_decref(batch);
}

#define CPU(x) "{\"aggregated\":{\"total_cpu_percent\":" #x "},\"containers\":[]}"

START_TEST(test_pairs_at_start)
{
    threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    threshold("only_critical", "aggregated.total_memory_percent", NAN, 95);
    container_down();
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":0},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":0},"
                  "{\"type\":\"only_critical\",\"level\":\"error\",\"firing\":0},"
                  "{\"type\":\"container_down\",\"level\":\"error\",\"firing\":0}]}");
}
END_TEST

START_TEST(test_no_rules)
{
    assert_firing("{\"alerts\":[]}");
}
END_TEST

START_TEST(test_threshold_counts)
{
    threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    assert_one(feed(CPU(85)), "high_cpu", "warning", "firing");
    ck_assert_uint_eq(next_id, 1);
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":1},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":0}]}");
    assert_one(feed(CPU(95)), "high_cpu", "error", "firing"); /* escalated */
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":0},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":1}]}");
    /* calmer, still firing: a transition too (issue 16) */
    assert_one(feed(CPU(85)), "high_cpu", "warning", "firing");
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":1},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":0}]}");
    assert_one(feed(CPU(10)), "high_cpu", "warning", "resolved");
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":0},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":0}]}");
    ck_assert_uint_eq(next_id, 4);
}
END_TEST

START_TEST(test_no_verdict)
{
    threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    assert_one(feed(CPU(99)), "high_cpu", "error", "firing");
    /* a message without the number (Docker down: "aggregated": {}) changes
       nothing: the alert still fires */
    json_t *b = feed("{\"aggregated\":{},\"containers\":[]}");
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":0},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":1}]}");
}
END_TEST

START_TEST(test_match_counts_items)
{
    container_down();
    json_t *b = feed("{\"containers\":[{\"name\":\"a\",\"status\":\"exited\"},"
                     "{\"name\":\"b\",\"status\":\"running\"},"
                     "{\"name\":\"c\",\"status\":\"missing\"}]}");
    ck_assert_int_eq(json_array_size(b), 2);
    json_decref(b);
    assert_firing("{\"alerts\":["
                  "{\"type\":\"container_down\",\"level\":\"error\",\"firing\":2}]}");
    /* a runs again, c leaves the list: both resolved */
    b = feed("{\"containers\":[{\"name\":\"a\",\"status\":\"running\"},"
             "{\"name\":\"b\",\"status\":\"running\"}]}");
    ck_assert_int_eq(json_array_size(b), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert_str_eq(
            json_string_value(json_object_get(json_array_get(b, i), "state")),
            "resolved");
    json_decref(b);
    assert_firing("{\"alerts\":["
                  "{\"type\":\"container_down\",\"level\":\"error\",\"firing\":0}]}");
}
END_TEST

START_TEST(test_same_type_summed)
{
    threshold("hot", "aggregated.total_cpu_percent", 80, NAN);
    threshold("hot", "aggregated.total_memory_percent", 50, 90);
    json_t *b = feed("{\"aggregated\":{\"total_cpu_percent\":85,"
                     "\"total_memory_percent\":60}}");
    ck_assert_int_eq(json_array_size(b), 2);
    json_decref(b);
    /* one item per (type, level), the rules' keys summed */
    assert_firing("{\"alerts\":["
                  "{\"type\":\"hot\",\"level\":\"warning\",\"firing\":2},"
                  "{\"type\":\"hot\",\"level\":\"error\",\"firing\":0}]}");
}
END_TEST

/* ---- transitions and re-sends (issue 16) ------------------------------------ */

static int64_t fake_now; /* the injected clock (µs) */

static int64_t fake_clock(void)
{
    return fake_now;
}

/* The batch's one alert (borrowed from batch). */
static json_t *only(json_t *batch)
{
    ck_assert_int_eq(json_array_size(batch), 1);
    return json_array_get(batch, 0);
}

static const char *str(json_t *a, const char *key)
{
    const char *v = json_string_value(json_object_get(a, key));
    ck_assert_msg(v != NULL, "no string %s", key);
    return v;
}

static json_int_t num(json_t *a, const char *key)
{
    json_t *v = json_object_get(a, key);
    ck_assert_msg(json_is_integer(v), "no integer %s", key);
    return json_integer_value(v);
}

/*
 * An hour of high CPU sampled every second, cooldown 60 s (the original's),
 * on an injected clock: one "fired" (a1), 59 re-sends that carry a1 and
 * count 1..59, one "resolved" (a2). Nothing else, and no id spent on a
 * re-send.
 */
START_TEST(test_hour_of_resends)
{
    threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    am_eval_set_clock(fake_clock);
    fake_now = 1000000000;
    json_t *all = json_array();
    for (int s = 0; s < 3600; s++, fake_now += 1000000) {
        json_t *b = feed(CPU(85));
        json_array_extend(all, b);
        json_decref(b);
    }
    json_t *b = feed(CPU(10));
    json_array_extend(all, b);
    json_decref(b);
    am_eval_set_clock(NULL);

    ck_assert_uint_eq(json_array_size(all), 61);
    json_t *a = json_array_get(all, 0);
    ck_assert_str_eq(str(a, "id"), "a1");
    ck_assert_str_eq(str(a, "transition"), "fired");
    ck_assert_int_eq(num(a, "repeats"), 0);
    for (size_t i = 1; i < 60; i++) {
        a = json_array_get(all, i);
        ck_assert_str_eq(str(a, "id"), "a1");
        ck_assert_str_eq(str(a, "state"), "firing");
        ck_assert_int_eq(num(a, "repeats"), (json_int_t)i);
        ck_assert_ptr_null(json_object_get(a, "transition"));
    }
    a = json_array_get(all, 60);
    ck_assert_str_eq(str(a, "id"), "a2");
    ck_assert_str_eq(str(a, "transition"), "resolved");
    ck_assert_str_eq(str(a, "state"), "resolved");
    ck_assert_uint_eq(next_id, 2);
    json_decref(all);
}
END_TEST

/* Each level change is a transition with its own id; re-sends after it
   carry that id and count from 1 again. */
START_TEST(test_level_changes)
{
    threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    rules[0].cooldown = 0; /* every sample that is no change is a re-send */
    const char *const want[][4] = {
        /* value, id, transition ("" re-send), repeats */
        {CPU(85), "a1", "fired", "0"},     {CPU(86), "a1", "", "1"},
        {CPU(95), "a2", "escalated", "0"}, {CPU(96), "a2", "", "1"},
        {CPU(97), "a2", "", "2"},          {CPU(85), "a3", "de-escalated", "0"},
        {CPU(84), "a3", "", "1"},          {CPU(10), "a4", "resolved", "0"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_t *b = feed(want[i][0]);
        json_t *a = only(b);
        ck_assert_str_eq(str(a, "id"), want[i][1]);
        json_t *tr = json_object_get(a, "transition");
        ck_assert_str_eq(tr ? json_string_value(tr) : "", want[i][2]);
        ck_assert_int_eq(num(a, "repeats"), atoi(want[i][3]));
        json_decref(b);
    }
    json_t *b = feed(CPU(10)); /* clear stays quiet */
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
}
END_TEST

/* A reload that changed the rule: its firing keys resolved with a reason,
   from the last sample seen; clear keys say nothing. */
START_TEST(test_resolve_all)
{
    struct am_rule *r = threshold("high_cpu", "aggregated.total_cpu_percent", 80, 90);
    struct am_rule *c = container_down();
    json_t *b = feed("{\"aggregated\":{\"total_cpu_percent\":93},"
                     "\"containers\":[{\"name\":\"x\",\"status\":\"exited\"},"
                     "{\"name\":\"y\",\"status\":\"running\"}]}");
    ck_assert_int_eq(json_array_size(b), 2);
    json_decref(b);
    b = json_array();
    am_resolve_all(r, "rule changed", b, &next_id);
    am_resolve_all(c, "rule removed", b, &next_id);
    ck_assert_int_eq(json_array_size(b), 2);
    json_t *a = json_array_get(b, 0);
    ck_assert_str_eq(str(a, "state"), "resolved");
    ck_assert_str_eq(str(a, "level"), "error");
    ck_assert_str_eq(str(a, "reason"), "rule changed");
    ck_assert_str_eq(str(a, "message"), "high_cpu at 93.0 (resolved: rule changed)");
    ck_assert_str_eq(str(a, "id"), "a3");
    a = json_array_get(b, 1);
    ck_assert_str_eq(str(a, "key"), "container_down_x");
    ck_assert_str_eq(str(a, "reason"), "rule removed");
    ck_assert_str_eq(str(a, "message"),
                     "Container 'x' is exited (resolved: rule removed)");
    json_decref(b);
    assert_firing("{\"alerts\":["
                  "{\"type\":\"high_cpu\",\"level\":\"warning\",\"firing\":0},"
                  "{\"type\":\"high_cpu\",\"level\":\"error\",\"firing\":0},"
                  "{\"type\":\"container_down\",\"level\":\"error\",\"firing\":0}]}");
    b = json_array(); /* nothing firing: nothing to say */
    am_resolve_all(r, "rule changed", b, &next_id);
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
}
END_TEST

/* ---- the fleet kinds (issue 15) ---------------------------------------------- */

/* A built-in fleet rule (host_down or source_down), as alert_manager adds it. */
static struct am_rule *fleet(enum am_kind kind)
{
    struct am_rule *r = &rules[n_rules++];

    ck_assert_int_eq(am_rule_builtin(kind, r), 0);
    ck_assert_int_eq(am_make_tracks(r), 0);
    return r;
}

/* The `hosts` value with A local and B up or not, age_s of B. */
static json_t *hosts_feed(int b_up, double age)
{
    char text[512];

    snprintf(text, sizeof text,
             "{\"local\":\"A\",\"stale_after_s\":15,\"hosts\":["
             "{\"name\":\"A\",\"local\":true,\"up\":true,\"age_s\":0},"
             "{\"name\":\"B\",\"local\":false,\"up\":%s,\"age_s\":%g}]}",
             b_up ? "true" : "false", age);
    return feed(text);
}

START_TEST(test_host_down)
{
    fleet(AM_HOST_DOWN);
    assert_firing(
        "{\"alerts\":[{\"type\":\"host_down\",\"level\":\"error\",\"firing\":0}]}");
    json_t *b = hosts_feed(1, 0.4); /* up: nothing, and no key spent on it */
    ck_assert_int_eq(json_array_size(b), 0);
    ck_assert_int_eq(rules[0].n_tracks, 0);
    json_decref(b);
    b = hosts_feed(0, 31.2);
    json_t *a = only(b);
    ck_assert_str_eq(str(a, "message"), "host B down: no message for 31 s");
    ck_assert_str_eq(str(a, "host"), "B");
    ck_assert_str_eq(str(a, "key"), "host_down_B");
    ck_assert_str_eq(str(a, "state"), "firing");
    ck_assert_str_eq(str(a, "level"), "error");
    ck_assert_double_eq(json_number_value(json_object_get(a, "value")), 31.2);
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"host_down\",\"level\":\"error\",\"firing\":1}]}");
    b = hosts_feed(0, 32.2); /* still down, within the cooldown: quiet */
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    b = hosts_feed(1, 0.1);
    a = only(b);
    ck_assert_str_eq(str(a, "state"), "resolved");
    ck_assert_str_eq(str(a, "host"), "B");
    /* a resolution repeats the last age seen down */
    ck_assert_str_eq(str(a, "message"), "host B down: no message for 32 s (resolved)");
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"host_down\",\"level\":\"error\",\"firing\":0}]}");
}
END_TEST

/* A host the core forgets (gone from `hosts`) while down: resolved. */
START_TEST(test_host_down_forgotten)
{
    fleet(AM_HOST_DOWN);
    json_t *b = hosts_feed(0, 20);
    ck_assert_str_eq(str(only(b), "state"), "firing");
    json_decref(b);
    b = feed("{\"local\":\"A\",\"stale_after_s\":15,\"hosts\":["
             "{\"name\":\"A\",\"local\":true,\"up\":true,\"age_s\":0}]}");
    json_t *a = only(b);
    ck_assert_str_eq(str(a, "state"), "resolved");
    ck_assert_str_eq(str(a, "host"), "B");
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"host_down\",\"level\":\"error\",\"firing\":0}]}");
}
END_TEST

START_TEST(test_host_down_local_never)
{
    fleet(AM_HOST_DOWN);
    /* a malformed local item saying down, and one named like "local" */
    json_t *b = feed("{\"local\":\"A\",\"hosts\":["
                     "{\"name\":\"A\",\"local\":true,\"up\":false,\"age_s\":99},"
                     "{\"name\":\"A\",\"up\":false,\"age_s\":99},"
                     "{\"name\":\"C\",\"up\":\"no\"},"
                     "{\"up\":false},"
                     "{\"name\":\"D\",\"local\":false,\"up\":false,\"age_s\":15}]}");
    ck_assert_str_eq(str(only(b), "host"), "D");
    json_decref(b);
    b = feed("{\"hosts\":5}"); /* not a list: no verdict */
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"host_down\",\"level\":\"error\",\"firing\":1}]}");
}
END_TEST

/* Evaluates the source_down rules on `text` as a message of topic. */
static json_t *source_feed(const char *topic, const char *text)
{
    json_t *msg = json_loads(text, 0, NULL);
    json_t *batch = json_array();

    ck_assert_ptr_nonnull(msg);
    for (int i = 0; i < n_rules; i++) {
        am_eval(&rules[i], msg, batch, &next_id); /* says nothing for source_down */
        am_eval_source(&rules[i], topic, msg, batch, &next_id);
    }
    json_decref(msg);
    return batch;
}

#define SOURCE(healthy, error)                                                           \
    "{\"connected\":" #healthy ",\"_source\":{\"healthy\":" #healthy ",\"error\":" error \
    ",\"fetched_at\":\"2026-01-01T00:00:00.000Z\",\"failures\":3}}"

START_TEST(test_source_down)
{
    fleet(AM_SOURCE_DOWN);
    json_t *b = source_feed("redis_bridge", SOURCE(true, "null"));
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    b = source_feed("redis_bridge", SOURCE(false, "\"connection refused\""));
    json_t *a = only(b);
    ck_assert_str_eq(str(a, "message"), "redis_bridge: source down: connection refused");
    ck_assert_str_eq(str(a, "topic"), "redis_bridge");
    ck_assert_str_eq(str(a, "error"), "connection refused");
    ck_assert_str_eq(str(a, "key"), "source_down_redis_bridge");
    ck_assert_str_eq(str(a, "state"), "firing");
    ck_assert_int_eq(json_integer_value(json_object_get(a, "failures")), 3);
    ck_assert_ptr_null(json_object_get(a, "host"));
    json_decref(b);
    /* another topic, no error text; one without _source says nothing */
    b = source_feed("containers", SOURCE(false, "null"));
    ck_assert_str_eq(str(only(b), "message"), "containers: source down: unhealthy");
    json_decref(b);
    b = source_feed("metrics", "{\"error\":\"x\"}");
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"source_down\",\"level\":\"error\",\"firing\":2}]}");
    b = source_feed("redis_bridge", SOURCE(true, "null"));
    a = only(b);
    ck_assert_str_eq(str(a, "state"), "resolved");
    ck_assert_str_eq(str(a, "message"),
                     "redis_bridge: source down: connection refused (resolved)");
    json_decref(b);
    assert_firing(
        "{\"alerts\":[{\"type\":\"source_down\",\"level\":\"error\",\"firing\":1}]}");
}
END_TEST

START_TEST(test_source_down_one_topic)
{
    struct am_rule *r = fleet(AM_SOURCE_DOWN);
    snprintf(r->topic, sizeof r->topic, "redis_bridge"); /* topic = redis_bridge */
    r->for_n = 2;                                        /* for = 2 */
    json_t *b = source_feed("containers", SOURCE(false, "\"docker gone\""));
    ck_assert_int_eq(json_array_size(b), 0);
    json_decref(b);
    b = source_feed("redis_bridge", SOURCE(false, "\"refused\""));
    ck_assert_int_eq(json_array_size(b), 0); /* 1 of 2 samples */
    json_decref(b);
    b = source_feed("redis_bridge", SOURCE(false, "\"refused\""));
    ck_assert_str_eq(str(only(b), "state"), "firing");
    json_decref(b);
}
END_TEST

static Suite *eval_suite(void)
{
    Suite *s = suite_create("alert_eval");
    TCase *tc = tcase_create("firing");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_pairs_at_start);
    tcase_add_test(tc, test_no_rules);
    tcase_add_test(tc, test_threshold_counts);
    tcase_add_test(tc, test_no_verdict);
    tcase_add_test(tc, test_match_counts_items);
    tcase_add_test(tc, test_same_type_summed);
    tcase_add_test(tc, test_hour_of_resends);
    tcase_add_test(tc, test_level_changes);
    tcase_add_test(tc, test_resolve_all);
    tcase_add_test(tc, test_host_down);
    tcase_add_test(tc, test_host_down_forgotten);
    tcase_add_test(tc, test_host_down_local_never);
    tcase_add_test(tc, test_source_down);
    tcase_add_test(tc, test_source_down_one_topic);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(eval_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
