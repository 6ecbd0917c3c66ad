/*
 * check_fleet.c - the core's `hosts` topic (core/fleet.c): what it says of
 * this host and of remote ones, up and stale against [core] host_stale,
 * when it publishes, what it logs, and the series its table names.
 *
 * Remote hosts come in through km_bus_publish_remote, as a bridge brings
 * them. Time is not waited for: km_fleet_check takes the time of the check,
 * so "16 s later" is a number, not a sleep. The immediate check that a
 * returning host triggers runs from the loop, which the tests turn once
 * without blocking.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <katomon/util.h>

#include "bus.h"
#include "core.h"
#include "fleet.h"
#include "log.h"
#include "series.h"

/* ---- fixture ----------------------------------------------------------- */

#define MAX_LINES 64

static struct km_core core;        /* base, bus, cfg: what the fleet reads */
static struct km_fleet *fleet;     /* under test */
static struct km_topic *hosts;     /* `hosts` */
static struct km_topic *st;        /* a state topic remote hosts publish on */
static int owner;                  /* st's owner: any address will do */
static char lines[MAX_LINES][512]; /* notice lines caught */
static int n_lines;                /* how many */

static const struct km_field v_schema[] = {
    KM_FIELD("v", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static void catch_line(enum km_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (level <= KM_LOG_NOTICE && n_lines < MAX_LINES)
        snprintf(lines[n_lines++], sizeof lines[0], "%s", line);
}

/* Lines caught that contain needle. */
static int count_lines(const char *needle)
{
    int n = 0;
    for (int i = 0; i < n_lines; i++)
        n += strstr(lines[i], needle) != NULL;
    return n;
}

static void setup(void)
{
    struct km_topic_def def = {"st", KM_TOPIC_STATE, v_schema, 0, NULL, NULL};

    memset(&core, 0, sizeof core);
    core.base = event_base_new();
    core.bus = km_bus_new();
    core.cfg = km_config_defaults();
    ck_assert_ptr_nonnull(core.base);
    ck_assert_ptr_nonnull(core.bus);
    ck_assert_ptr_nonnull(core.cfg);
    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), KM_OK);
    st = km_bus_declare(core.bus, &def, &owner, NULL);
    ck_assert_ptr_nonnull(st);
    n_lines = 0;
    km_log_set_level(KM_LOG_DEBUG);
    km_log_set_hook(catch_line, NULL);
    fleet = km_fleet_new(&core);
    ck_assert_ptr_nonnull(fleet);
    hosts = km_bus_find(core.bus, KM_FLEET_TOPIC);
    ck_assert_ptr_nonnull(hosts);
}

static void teardown(void)
{
    km_fleet_free(fleet);
    fleet = NULL;
    km_bus_free(core.bus);
    event_base_free(core.base);
    km_config_free(core.cfg);
    km_log_set_hook(NULL, NULL);
}

/* ---- helpers ------------------------------------------------------------ */

/* {"v": x} on st as host `host`, epoch 1. */
static int rpub(const char *host, long long x)
{
    struct km_remote r = {host, KM_TOPIC_STATE, 1, 0, km_wall_us()};
    return km_bus_publish_remote(st, json_pack("{s:I}", "v", (json_int_t)x), &r);
}

/* The latest `hosts` value (borrowed). */
static json_t *latest(void)
{
    struct km_msg *m = km_topic_latest(hosts);
    ck_assert_ptr_nonnull(m);
    return km_msg_json(m);
}

/* Entry i of the latest value's hosts[]. */
static json_t *entry(size_t i)
{
    json_t *list = json_object_get(latest(), "hosts");
    ck_assert_msg(json_is_array(list), "hosts[] missing");
    ck_assert_uint_lt(i, json_array_size(list));
    return json_array_get(list, i);
}

static int entry_bool(size_t i, const char *key)
{
    json_t *b = json_object_get(entry(i), key);
    ck_assert_msg(json_is_boolean(b), "%s is not a boolean", key);
    return json_is_true(b);
}

/* Runs what is ready on the loop (the immediate check), without waiting. */
static void run_ready(void)
{
    event_base_loop(core.base, EVLOOP_NONBLOCK);
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_start)
{
    json_t *v = latest();

    /* published once at start, this host alone */
    ck_assert_uint_eq(km_topic_published(hosts), 1);
    ck_assert_int_eq(km_topic_kind(hosts), KM_TOPIC_STATE);
    ck_assert_ptr_nonnull(km_topic_metrics(hosts));
    ck_assert_str_eq(json_string_value(json_object_get(v, "local")), "alpha");
    ck_assert_double_eq(json_number_value(json_object_get(v, "stale_after_s")), 15);
    ck_assert_uint_eq(json_array_size(json_object_get(v, "hosts")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(entry(0), "name")), "alpha");
    ck_assert_int_eq(entry_bool(0, "local"), 1);
    ck_assert_int_eq(entry_bool(0, "up"), 1);
    ck_assert_double_eq(json_number_value(json_object_get(entry(0), "age_s")), 0);
    ck_assert(json_is_string(json_object_get(entry(0), "last_seen")));
    ck_assert_int_eq(json_integer_value(json_object_get(entry(0), "epoch")),
                     km_bus_epoch(core.bus));
    ck_assert_int_eq(km_fleet_host_up(fleet, 0), 1);
    /* alone: nothing to say every second */
    ck_assert_int_eq(km_fleet_tick(fleet), 0);
    ck_assert_int_eq(km_fleet_check(fleet, km_mono_us() + 3600 * 1000000LL), 0);
    ck_assert_uint_eq(km_topic_published(hosts), 1);
    /* a plugin cannot take the core's topic */
    int err = 0;
    struct km_topic_def def = {"hosts", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    ck_assert_ptr_null(km_bus_declare(core.bus, &def, &owner, &err));
    ck_assert_int_eq(err, KM_EEXIST);
}
END_TEST

START_TEST(test_remote_appears_at_once)
{
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    /* not from inside the delivery: on the loop, at once */
    ck_assert_uint_eq(km_topic_published(hosts), 1);
    run_ready();
    ck_assert_uint_eq(km_topic_published(hosts), 2);
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(entry(1), "name")), "beta");
    ck_assert_int_eq(entry_bool(1, "local"), 0);
    ck_assert_int_eq(entry_bool(1, "up"), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(entry(1), "epoch")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(entry(1), "messages")), 1);
    ck_assert_int_eq(km_fleet_host_up(fleet, 1), 1);
    /* a second message of an up host arms nothing */
    ck_assert_int_eq(rpub("beta", 2), KM_OK);
    run_ready();
    ck_assert_uint_eq(km_topic_published(hosts), 2);
    /* with a remote host: every check publishes (the timer's second) */
    ck_assert_int_eq(km_fleet_tick(fleet), 1);
    ck_assert_uint_eq(km_topic_published(hosts), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(entry(1), "messages")), 2);
}
END_TEST

START_TEST(test_stale_and_back)
{
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    run_ready();
    int64_t now = km_mono_us();

    /* 14 s of silence: still up */
    ck_assert_int_eq(km_fleet_check(fleet, now + 14 * 1000000LL), 1);
    ck_assert_int_eq(entry_bool(1, "up"), 1);
    ck_assert_int_eq(count_lines("stale"), 0);
    /* 16 s: stale, said once */
    ck_assert_int_eq(km_fleet_check(fleet, now + 16 * 1000000LL), 1);
    ck_assert_int_eq(entry_bool(1, "up"), 0);
    ck_assert_int_eq(entry_bool(0, "up"), 1); /* this host never is stale */
    ck_assert_double_ge(json_number_value(json_object_get(entry(1), "age_s")), 16);
    ck_assert_int_eq(km_fleet_host_up(fleet, 1), 0);
    ck_assert_int_eq(count_lines("host beta: stale, no message for 16 s"), 1);
    ck_assert_int_eq(km_fleet_check(fleet, now + 17 * 1000000LL), 1);
    ck_assert_int_eq(count_lines("stale"), 1);
    /* it speaks again: up at once, without waiting for the timer */
    uint64_t before = km_topic_published(hosts);
    ck_assert_int_eq(rpub("beta", 2), KM_OK);
    run_ready();
    ck_assert_uint_eq(km_topic_published(hosts), before + 1);
    ck_assert_int_eq(entry_bool(1, "up"), 1);
    ck_assert_int_eq(count_lines("host beta: back after "), 1);
}
END_TEST

START_TEST(test_forget_and_back)
{
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    run_ready();
    int64_t now = km_mono_us();

    core.cfg->host_forget = 60;
    ck_assert_int_eq(km_fleet_check(fleet, now + 16 * 1000000LL), 1);
    ck_assert_ptr_nonnull(km_topic_latest_host(st, 1)); /* stale: still held */
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 2);
    /* 61 s of silence with host_forget 60: forgotten, its value dropped, unlisted */
    ck_assert_int_eq(km_fleet_check(fleet, now + 61 * 1000000LL), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 1);
    ck_assert_ptr_null(km_topic_latest_host(st, 1));
    ck_assert_int_eq(count_lines("host beta: forgotten after 61 s"), 1);
    ck_assert_int_eq(km_fleet_host_up(fleet, 1), 0);
    struct km_bus_host hi;
    km_bus_host_info(core.bus, 1, &hi);
    ck_assert_int_eq(hi.forgotten, 1);
    km_fleet_check(fleet, now + 62 * 1000000LL);
    ck_assert_int_eq(count_lines("forgotten"), 1); /* said once */
    /* its next message brings it back, listed and up */
    ck_assert_int_eq(rpub("beta", 2), KM_OK);
    run_ready();
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 2);
    ck_assert_int_eq(entry_bool(1, "up"), 1);
    ck_assert_ptr_nonnull(km_topic_latest_host(st, 1));
    /* 0: never */
    core.cfg->host_forget = 0;
    ck_assert_int_eq(km_fleet_check(fleet, km_mono_us() + 86400 * 1000000LL), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 2);
}
END_TEST

START_TEST(test_host_stale_from_config)
{
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    run_ready();
    int64_t now = km_mono_us();

    /* SIGHUP replaces core->cfg; the next check reads the new value */
    core.cfg->host_stale = 2;
    ck_assert_int_eq(km_fleet_check(fleet, now + 1500000), 1);
    ck_assert_double_eq(json_number_value(json_object_get(latest(), "stale_after_s")), 2);
    ck_assert_int_eq(entry_bool(1, "up"), 1);
    ck_assert_int_eq(km_fleet_check(fleet, now + 2500000), 1);
    ck_assert_int_eq(entry_bool(1, "up"), 0);
    ck_assert_int_eq(count_lines("host beta: stale, no message for 2 s"), 1);
}
END_TEST

START_TEST(test_stale_change_alone)
{
    /* no remote host: a new host_stale is still published, once */
    core.cfg->host_stale = 30;
    ck_assert_int_eq(km_fleet_tick(fleet), 1);
    ck_assert_double_eq(json_number_value(json_object_get(latest(), "stale_after_s")),
                        30);
    ck_assert_int_eq(km_fleet_tick(fleet), 0);
}
END_TEST

START_TEST(test_many_hosts_in_order)
{
    static const char *const names[] = {"h1", "h2", "h3", "h4", "h5",
                                        "h6", "h7", "h8", "h9", "h10"};
    /* more than the fleet's first allocation of records */
    for (size_t i = 0; i < 10; i++)
        ck_assert_int_eq(rpub(names[i], 1), KM_OK);
    run_ready();
    ck_assert_int_eq(km_fleet_tick(fleet), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(latest(), "hosts")), 11);
    ck_assert_str_eq(json_string_value(json_object_get(entry(0), "name")), "alpha");
    for (size_t i = 0; i < 10; i++) {
        ck_assert_str_eq(json_string_value(json_object_get(entry(i + 1), "name")),
                         names[i]);
        ck_assert_int_eq(entry_bool(i + 1, "up"), 1);
    }
}
END_TEST

START_TEST(test_series)
{
    struct km_series_reg *reg = km_series_reg_new(1000);
    struct km_series *s;

    ck_assert_ptr_nonnull(reg);
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    run_ready();
    ck_assert_int_eq(km_fleet_check(fleet, km_mono_us() + 20 * 1000000LL), 1);
    km_series_ingest(reg, hosts, km_topic_latest(hosts));
    /* up is a bool made a series because the table names it */
    s = km_series_find(reg, "katomon_host_up", "host=\"beta\"");
    ck_assert_msg(s != NULL, "no katomon_host_up{host=\"beta\"}");
    ck_assert_double_eq(s->value, 0);
    s = km_series_find(reg, "katomon_host_up", "host=\"alpha\"");
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq(s->value, 1);
    s = km_series_find(reg, "katomon_host_last_seen_age_seconds", "host=\"beta\"");
    ck_assert_ptr_nonnull(s);
    ck_assert_double_ge(s->value, 20);
    s = km_series_find(reg, "katomon_host_messages_total", "host=\"beta\"");
    ck_assert_ptr_nonnull(s);
    ck_assert_double_eq(s->value, 1);
    ck_assert_int_eq(s->family->type, KM_SERIES_COUNTER);
    ck_assert_ptr_nonnull(
        km_series_find(reg, "katomon_host_refused_total", "host=\"beta\""));
    ck_assert_ptr_nonnull(
        km_series_find(reg, "katomon_host_gaps_total", "host=\"beta\""));
    ck_assert_ptr_nonnull(
        km_series_find(reg, "katomon_host_missed_total", "host=\"beta\""));
    ck_assert_ptr_nonnull(
        km_series_find(reg, "katomon_host_restarts_total", "host=\"beta\""));
    ck_assert_ptr_nonnull(km_series_find(reg, "katomon_host_stale_seconds", ""));
    /* the epoch (a clock) and local are not series */
    for (struct km_family *f = km_series_families(reg); f; f = f->next)
        ck_assert_msg(!strstr(f->name, "epoch") && !strstr(f->name, "local"),
                      "unexpected series %s", f->name);
    km_series_reg_free(reg);
}
END_TEST

START_TEST(test_free_stops_everything)
{
    /* an immediate check armed, then the fleet goes: nothing may run */
    ck_assert_int_eq(rpub("beta", 1), KM_OK);
    km_fleet_free(fleet);
    fleet = NULL;
    run_ready();
    ck_assert_int_eq(rpub("beta", 2), KM_OK); /* no subscriber left to call */
    ck_assert_uint_eq(km_topic_published(hosts), 1);
    km_fleet_free(NULL);
}
END_TEST

static Suite *fleet_suite(void)
{
    Suite *s = suite_create("fleet");
    TCase *tc = tcase_create("hosts");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_start);
    tcase_add_test(tc, test_remote_appears_at_once);
    tcase_add_test(tc, test_stale_and_back);
    tcase_add_test(tc, test_forget_and_back);
    tcase_add_test(tc, test_host_stale_from_config);
    tcase_add_test(tc, test_stale_change_alone);
    tcase_add_test(tc, test_many_hosts_in_order);
    tcase_add_test(tc, test_series);
    tcase_add_test(tc, test_free_stops_everything);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fleet_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
