/*
 * check_series.c - unit tests of the series registry (core/series.c): how
 * state messages become named, labelled series, staleness, the cap, label
 * text, and dropping.
 *
 * Leaks are checked by running this under ASan (--enable-sanitizers).
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "series.h"

static struct km_bus *bus;
static struct km_series_reg *reg;

static void setup(void)
{
    bus = km_bus_new();
    reg = km_series_reg_new(0);
    ck_assert_ptr_nonnull(bus);
    ck_assert_ptr_nonnull(reg);
    km_series_attach(reg, bus);
}

static void teardown(void)
{
    km_series_detach(reg);
    km_series_reg_free(reg);
    km_bus_free(bus);
}

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    ck_assert_msg(v != NULL, "bad test JSON: %s", e.text);
    return v;
}

/* The value of name{labels}, which must exist and be live. */
static double value_of(const char *name, const char *labels)
{
    struct km_series *s = km_series_find(reg, name, labels);
    ck_assert_msg(s != NULL, "no series %s{%s}", name, labels);
    ck_assert_msg(s->live, "%s{%s} is stale", name, labels);
    return s->value;
}

static const struct km_metric host_metrics[] = {
    {"memory.used_bytes", "host_memory_used_bytes", "Memory in use, bytes", 0, 0, NULL},
    {"load.1m", "host_load1", NULL, 0, 0, NULL},
    {"containers[]", NULL, NULL, 0, 0, "container=name"},
    {"containers[].cpu", "container_cpu_percent", "CPU", 0, 0, NULL},
    {"containers[].rx", "container_rx_bytes", NULL, KM_METRIC_COUNTER, 0, NULL},
    {"containers[].mb", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"mem_mb", "host_mem_bytes", NULL, 0, 1048576, NULL},
    {"dbs{}", NULL, NULL, 0, 0, "database"},
    {"_source", "docker", NULL, 0, 0, NULL},
    {"up", "host_up", "1 up, 0 down", 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static struct km_topic *declare(const char *name, const struct km_metric *m)
{
    struct km_topic_def def = {name, KM_TOPIC_STATE, NULL, 0, NULL, m};
    struct km_topic *t = km_bus_declare(bus, &def, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

START_TEST(test_walk_names_labels)
{
    struct km_topic *t = declare("host", host_metrics);
    ck_assert_int_eq(
        km_bus_publish(
            t,
            js("{\"memory\":{\"used_bytes\":1024,\"free\":5.5},"
               "\"load\":{\"1m\":0.25},\"name\":\"x\",\"ok\":true,\"up\":false,"
               "\"containers\":[{\"name\":\"kato\",\"cpu\":12.5,\"rx\":7,\"mb\":1},"
               "{\"name\":\"redis\",\"cpu\":1}],\"mem_mb\":2,"
               "\"dbs\":{\"redis\":{\"ops\":3}},"
               "\"_source\":{\"healthy\":true,\"failures\":0}}"),
            NULL),
        KM_OK);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", ""), 1024);
    /* derived: topic + path, no table entry */
    ck_assert_double_eq(value_of("katomon_host_memory_free", ""), 5.5);
    ck_assert_double_eq(value_of("katomon_host_load1", ""), 0.25);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"kato\""),
                        12.5);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"redis\""),
                        1);
    /* a counter gets _total and its type */
    ck_assert_double_eq(
        value_of("katomon_container_rx_bytes_total", "container=\"kato\""), 7);
    ck_assert_int_eq(km_series_family(reg, "katomon_container_rx_bytes_total")->type,
                     KM_SERIES_COUNTER);
    ck_assert_ptr_null(km_series_family(reg, "katomon_host_containers_mb"));
    ck_assert_double_eq(value_of("katomon_host_mem_bytes", ""), 2097152);
    ck_assert_double_eq(value_of("katomon_host_dbs_ops", "database=\"redis\""), 3);
    ck_assert_double_eq(value_of("katomon_source_up", "source=\"docker\",topic=\"host\""),
                        1);
    ck_assert_double_eq(
        value_of("katomon_source_failures", "source=\"docker\",topic=\"host\""), 0);
    ck_assert_str_eq(km_series_family(reg, "katomon_host_memory_used_bytes")->help,
                     "Memory in use, bytes");
    /* strings and booleans outside _source are not series */
    ck_assert_ptr_null(km_series_family(reg, "katomon_host_ok"));
    /* a boolean the table names is 0/1 */
    ck_assert_double_eq(value_of("katomon_host_up", ""), 0);
    ck_assert_int_eq(km_series_count(reg), 11);
}
END_TEST

START_TEST(test_stale_and_return)
{
    struct km_topic *t = declare("containers", host_metrics);
    km_bus_publish(
        t, js("{\"containers\":[{\"name\":\"a\",\"cpu\":1},{\"name\":\"b\",\"cpu\":2}]}"),
        NULL);
    km_series_collect(reg);
    ck_assert_int_eq(km_series_live(reg), 2);
    km_bus_publish(t, js("{\"containers\":[{\"name\":\"a\",\"cpu\":3}]}"), NULL);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"a\""), 3);
    struct km_series *b =
        km_series_find(reg, "katomon_container_cpu_percent", "container=\"b\"");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->live, 0);
    ck_assert_double_eq(b->value, 2); /* kept, not exported */
    km_bus_publish(t, js("{\"containers\":[{\"name\":\"b\",\"cpu\":4}]}"), NULL);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"b\""), 4);
    ck_assert_int_eq(km_series_live(reg), 1);
    /* nothing new published: collect does not walk again */
    b->value = 99;
    km_series_collect(reg);
    ck_assert_double_eq(b->value, 99);
}
END_TEST

START_TEST(test_default_array_label)
{
    struct km_topic *t = declare("pool", NULL);
    km_bus_publish(t,
                   js("{\"workers\":[{\"name\":\"w1\",\"busy\":1},{\"id\":7,\"busy\":0},"
                      "{\"busy\":5}]}"),
                   NULL);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_pool_workers_busy", "worker=\"w1\""), 1);
    ck_assert_double_eq(value_of("katomon_pool_workers_busy", "worker=\"7\""), 0);
    ck_assert_double_eq(value_of("katomon_pool_workers_busy", "worker=\"2\""), 5);
}
END_TEST

static int dropped;
static void on_drop(struct km_series *s, void *arg)
{
    (void)s;
    (void)arg;
    dropped++;
}

START_TEST(test_cap_and_drop)
{
    km_series_reg_free(reg);
    reg = km_series_reg_new(3);
    km_series_attach(reg, bus);
    km_series_on_drop(reg, on_drop, NULL);
    dropped = 0;
    ck_assert_ptr_nonnull(km_series_get(reg, "a", "help a", KM_SERIES_GAUGE, ""));
    ck_assert_ptr_nonnull(km_series_get(reg, "b", NULL, KM_SERIES_GAUGE, "x=\"1\""));
    struct km_series *b2 = km_series_get(reg, "b", NULL, KM_SERIES_GAUGE, "x=\"2\"");
    ck_assert_ptr_nonnull(b2);
    ck_assert_ptr_null(km_series_get(reg, "c", NULL, KM_SERIES_GAUGE, ""));
    ck_assert_int_eq(km_series_refused(reg), 1);
    /* the same series again is found, not refused */
    ck_assert_ptr_eq(km_series_get(reg, "b", NULL, KM_SERIES_GAUGE, "x=\"2\""), b2);
    km_series_drop(reg, b2);
    ck_assert_int_eq(dropped, 1);
    ck_assert_int_eq(km_series_count(reg), 2);
    ck_assert_ptr_nonnull(km_series_get(reg, "c", NULL, KM_SERIES_GAUGE, ""));
    km_series_drop(reg, km_series_find(reg, "a", ""));
    ck_assert_ptr_null(km_series_family(reg, "a"));
    ck_assert_str_eq(km_series_families(reg)->name, "b");
    /* bad names */
    ck_assert_ptr_null(km_series_get(reg, "9x", NULL, KM_SERIES_GAUGE, ""));
    ck_assert_ptr_null(km_series_get(reg, "a-b", NULL, KM_SERIES_GAUGE, ""));
}
END_TEST

START_TEST(test_many_series)
{
    char labels[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        struct km_series *s =
            km_series_get(reg, i % 2 ? "odd" : "even", NULL, KM_SERIES_GAUGE, labels);
        ck_assert_ptr_nonnull(s);
        km_series_set(s, i, 1);
    }
    for (int i = 0; i < 5000; i += 7) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        struct km_series *s = km_series_find(reg, i % 2 ? "odd" : "even", labels);
        ck_assert_ptr_nonnull(s);
        ck_assert_double_eq(s->value, i);
    }
    ck_assert_int_eq(km_series_family(reg, "odd")->nseries, 2500);
}
END_TEST

START_TEST(test_labels_text)
{
    char buf[128] = "";
    char k[32], v[64];
    const char *p;

    ck_assert_int_eq(km_labels_add(buf, sizeof buf, "zeta", "1"), 0);
    ck_assert_int_eq(km_labels_add(buf, sizeof buf, "alpha", "a\"b\\c\nd"), 0);
    ck_assert_int_eq(km_labels_add(buf, sizeof buf, "mid", ""), 0);
    ck_assert_str_eq(buf, "alpha=\"a\\\"b\\\\c\\nd\",mid=\"\",zeta=\"1\"");
    ck_assert_int_eq(km_labels_add(buf, sizeof buf, "mid", "again"), -1);
    ck_assert_int_eq(km_labels_add(buf, sizeof buf, "bad-key", "x"), -1);
    ck_assert_int_eq(km_labels_has(buf, "alpha", "a\"b\\c\nd"), 1);
    ck_assert_int_eq(km_labels_has(buf, "zeta", "2"), 0);
    p = buf;
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), 1);
    ck_assert_str_eq(k, "alpha");
    ck_assert_str_eq(v, "a\"b\\c\nd");
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), 1);
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), 1);
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), 0);
    /* too long for the buffer: refused, buffer unchanged */
    char small[16] = "a=\"1\"";
    ck_assert_int_eq(km_labels_add(small, sizeof small, "b", "0123456789"), -1);
    ck_assert_str_eq(small, "a=\"1\"");
    /* malformed text */
    p = "a=1";
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), -1);
    p = "a=\"x";
    ck_assert_int_eq(km_labels_next(&p, k, sizeof k, v, sizeof v), -1);
}
END_TEST

static int collected;
static void collector(struct km_series_reg *r, void *arg)
{
    (void)arg;
    collected++;
    km_series_set(km_series_get(r, "katomon_ws_clients", "clients", KM_SERIES_GAUGE, ""),
                  collected, 0);
}

START_TEST(test_collector)
{
    ck_assert_int_eq(km_series_add_collector(reg, collector, NULL), 0);
    km_series_collect(reg);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_ws_clients", ""), 2);
}
END_TEST

/* Host `host` publishes body on t, as a bridge hands it over. */
static void pub_remote(struct km_topic *t, const char *host, const char *body)
{
    struct km_remote r = {
        .host = host, .kind = KM_TOPIC_STATE, .epoch = 1000, .time_us = km_wall_us()};
    ck_assert_int_eq(km_bus_publish_remote(t, js(body), &r), KM_OK);
}

/* A remote host's series: the topic's series labelled host="NAME"; this
   host's keep no host label; each host goes stale on its own; the core's
   hosts topic is this host's only. */
START_TEST(test_remote_hosts)
{
    ck_assert_int_eq(km_bus_set_host(bus, "alpha"), 0);
    struct km_topic *t = declare("host", host_metrics);
    struct km_topic *hosts = declare("hosts", NULL);
    ck_assert_int_eq(
        km_bus_publish(t,
                       js("{\"memory\":{\"used_bytes\":100},\"containers\":[{\"name\":"
                          "\"kato\",\"cpu\":1.5}],\"_source\":{\"healthy\":true}}"),
                       NULL),
        KM_OK);
    pub_remote(t, "beta",
               "{\"memory\":{\"used_bytes\":200},\"containers\":[{\"name\":\"kato\","
               "\"cpu\":2.5},{\"name\":\"redis\",\"cpu\":0.5}],"
               "\"_source\":{\"healthy\":false}}");
    ck_assert_int_eq(km_bus_publish(hosts,
                                    js("{\"hosts\":[{\"name\":\"alpha\",\"up\":1},"
                                       "{\"name\":\"beta\",\"up\":1}]}"),
                                    NULL),
                     KM_OK);
    pub_remote(hosts, "beta", "{\"hosts\":[{\"name\":\"beta\",\"up\":1}]}");
    km_series_collect(reg);

    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", ""), 100);
    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", "host=\"beta\""), 200);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"kato\""),
                        1.5);
    ck_assert_double_eq(
        value_of("katomon_container_cpu_percent", "container=\"kato\",host=\"beta\""),
        2.5);
    ck_assert_double_eq(
        value_of("katomon_container_cpu_percent", "container=\"redis\",host=\"beta\""),
        0.5);
    ck_assert_double_eq(value_of("katomon_source_up", "source=\"docker\",topic=\"host\""),
                        1);
    ck_assert_double_eq(
        value_of("katomon_source_up", "host=\"beta\",source=\"docker\",topic=\"host\""),
        0);
    struct km_series *s =
        km_series_find(reg, "katomon_host_memory_used_bytes", "host=\"beta\"");
    ck_assert_int_eq(s->host, km_bus_host_find(bus, "beta"));
    ck_assert_ptr_eq(s->topic, t);
    /* the hosts topic: this host's items only (labelled by item, not by host) */
    ck_assert_double_eq(value_of("katomon_hosts_hosts_up", "host=\"alpha\""), 1);
    ck_assert_double_eq(value_of("katomon_hosts_hosts_up", "host=\"beta\""), 1);
    ck_assert_int_eq(km_series_family(reg, "katomon_hosts_hosts_up")->nseries, 2);
    /* 2 + 1 + source_up: this host 3, beta 4, hosts 2 */
    ck_assert_int_eq(km_series_count(reg), 9);

    /* beta drops redis: only beta's redis goes stale; alpha untouched */
    pub_remote(t, "beta",
               "{\"memory\":{\"used_bytes\":300},\"containers\":[{\"name\":\"kato\","
               "\"cpu\":3.5}]}");
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", "host=\"beta\""), 300);
    ck_assert_int_eq(km_series_find(reg, "katomon_container_cpu_percent",
                                    "container=\"redis\",host=\"beta\"")
                         ->live,
                     0);
    ck_assert_double_eq(value_of("katomon_container_cpu_percent", "container=\"kato\""),
                        1.5);
    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", ""), 100);
    /* a local publish does not make beta's series stale, nor the reverse */
    ck_assert_int_eq(km_bus_publish(t, js("{\"memory\":{\"used_bytes\":101}}"), NULL),
                     KM_OK);
    km_series_collect(reg);
    ck_assert_double_eq(value_of("katomon_host_memory_used_bytes", ""), 101);
    ck_assert_double_eq(
        value_of("katomon_container_cpu_percent", "container=\"kato\",host=\"beta\""),
        3.5);
    /* nothing new: no walk (a value changed by hand stays) */
    s->value = 99;
    km_series_collect(reg);
    ck_assert_double_eq(s->value, 99);
}
END_TEST

/* max_series counts every host's series. */
START_TEST(test_remote_hosts_cap)
{
    km_series_detach(reg);
    km_series_reg_free(reg);
    reg = km_series_reg_new(3);
    km_series_attach(reg, bus);
    ck_assert_int_eq(km_bus_set_host(bus, "alpha"), 0);
    struct km_topic *t = declare("host", host_metrics);
    ck_assert_int_eq(km_bus_publish(t,
                                    js("{\"memory\":{\"used_bytes\":1},\"load\":{"
                                       "\"1m\":2}}"),
                                    NULL),
                     KM_OK);
    pub_remote(t, "beta", "{\"memory\":{\"used_bytes\":3},\"load\":{\"1m\":4}}");
    km_series_collect(reg);
    ck_assert_int_eq(km_series_count(reg), 3);
    ck_assert_int_eq(km_series_refused(reg), 1);
    ck_assert_double_eq(value_of("katomon_host_load1", ""), 2);
}
END_TEST

static Suite *series_suite(void)
{
    Suite *s = suite_create("series");
    TCase *tc = tcase_create("registry");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_walk_names_labels);
    tcase_add_test(tc, test_stale_and_return);
    tcase_add_test(tc, test_default_array_label);
    tcase_add_test(tc, test_cap_and_drop);
    tcase_add_test(tc, test_many_series);
    tcase_add_test(tc, test_labels_text);
    tcase_add_test(tc, test_collector);
    tcase_add_test(tc, test_remote_hosts);
    tcase_add_test(tc, test_remote_hosts_cap);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(series_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
