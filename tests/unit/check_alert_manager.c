/*
 * check_alert_manager.c - alert_manager.so on a real bus: the fleet kinds
 * (host_down, source_down) driven by what the core and collectors publish,
 * the firing counts, ?host= on its REST routes, and its check at
 * file:line through the loader.
 *
 * Each test builds a struct km_core (event_base, bus named "A", a config
 * file in a temporary directory), declares the topics the plugin reads as
 * the core and a collector would (`hosts`, `redis_bridge`), loads the
 * built plugin (PLUGIN_BUILD_DIR) and watches `system_alerts` through its
 * own subscription. Delivery is synchronous: what a publish raises is
 * there when it returns, so no test waits.
 */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <jansson.h>

#include "bus.h"
#include "core.h"
#include "http_client.h"
#include "loader.h"
#include "log.h"

#define MAX_LINES 256

static struct km_core core;        /* the daemon under test */
static char tmpdir[256];           /* per-test scratch directory (state_dir) */
static char conf_path[512];        /* tmpdir/katomon.conf */
static const char *build_dir;      /* built alert_manager.so */
static json_t *alerts;             /* every alert of every system_alerts batch */
static char lines[MAX_LINES][512]; /* caught log lines */
static int n_lines;                /* number caught */
static const char me[] = "test";   /* owner of the topics the test publishes */
static struct km_topic *hosts;     /* the core's `hosts` */
static struct km_topic *bridge;    /* a collector's topic with "_source" */

static void catch_line(enum km_log_level level, const char *line, void *arg)
{
    if (n_lines < MAX_LINES)
        snprintf(lines[n_lines++], sizeof lines[0], "%s", line);
}

/* Index of the first log line holding every NULL-ended needle, or -1. */
static int find_line(const char *needle, ...)
{
    for (int i = 0; i < n_lines; i++) {
        va_list ap;
        int all = strstr(lines[i], needle) != NULL;
        va_start(ap, needle);
        for (const char *n; all && (n = va_arg(ap, const char *));)
            all = strstr(lines[i], n) != NULL;
        va_end(ap);
        if (all)
            return i;
    }
    return -1;
}

static void on_alerts(struct km_topic *t, struct km_msg *msg, void *arg)
{
    json_t *a;
    size_t i;

    json_array_foreach(json_object_get(km_msg_json(msg), "alerts"), i, a)
        json_array_append(alerts, a);
}

static const struct km_field source_fields[] = {
    KM_FIELD("healthy", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("error", KM_STRING, KM_F_NULLABLE),
    KM_FIELD("fetched_at", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("failures", KM_INTEGER, 0),
    KM_FIELD_END,
};
static const struct km_field bridge_schema[] = {
    KM_FIELD_OBJECT("_source", KM_F_REQUIRED, source_fields),
    KM_FIELD_END,
};

static void setup(void)
{
    static const struct km_topic_def hosts_def = {
        "hosts", KM_TOPIC_STATE, NULL, 0, "the fleet (as core/fleet.c)", NULL};
    static const struct km_topic_def bridge_def = {
        "redis_bridge", KM_TOPIC_STATE, bridge_schema, 0, "a source's health", NULL};

    build_dir = getenv("PLUGIN_BUILD_DIR") ? getenv("PLUGIN_BUILD_DIR") : ".libs";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_alert_manager.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(conf_path, sizeof conf_path, "%s/katomon.conf", tmpdir);
    memset(&core, 0, sizeof core);
    ck_assert_ptr_nonnull(core.base = event_base_new());
    ck_assert_ptr_nonnull(core.bus = km_bus_new());
    ck_assert_int_eq(km_bus_set_host(core.bus, "A"), 0);
    ck_assert_ptr_nonnull(hosts = km_bus_declare(core.bus, &hosts_def, me, NULL));
    ck_assert_ptr_nonnull(bridge = km_bus_declare(core.bus, &bridge_def, me, NULL));
    ck_assert_ptr_nonnull(alerts = json_array());
    ck_assert_ptr_nonnull(
        km_bus_subscribe(core.bus, "system_alerts", on_alerts, NULL, me));
    n_lines = 0;
    km_log_set_level(KM_LOG_DEBUG);
    km_log_set_hook(catch_line, NULL);
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    km_loader_free(core.loader);
    km_bus_free(core.bus);
    km_hc_shutdown(core.base);
    event_base_free(core.base);
    km_config_free(core.cfg);
    km_log_set_hook(NULL, NULL);
    json_decref(alerts);
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes the config ([core], [plugin alert_manager], then `rules`) and
   loads it; returns km_loader_load_all's result. */
static int load(const char *rules)
{
    char text[4096], err[1024];
    FILE *f = fopen(conf_path, "w");

    ck_assert_ptr_nonnull(f);
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = debug\n\n"
             "[plugin alert_manager]\n\n%s",
             build_dir, tmpdir, rules);
    fputs(text, f);
    fclose(f);
    ck_assert_msg(km_config_load(conf_path, &core.cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(core.loader = km_loader_new(&core));
    return km_loader_load_all(core.loader, err, sizeof err);
}

/* Publishes the `hosts` value: A (local, up) and B up or not. */
static void publish_hosts(int b_up, double age)
{
    json_t *v =
        json_pack("{s:s, s:i, s:[{s:s, s:b, s:b, s:f}, {s:s, s:b, s:b, s:f}]}", "local",
                  "A", "stale_after_s", 15, "hosts", "name", "A", "local", 1, "up", 1,
                  "age_s", 0.0, "name", "B", "local", 0, "up", b_up, "age_s", age);
    ck_assert_int_eq(km_bus_publish(hosts, v, me), KM_OK);
}

static void publish_source(const char *error)
{
    json_t *v = json_pack("{s:{s:b, s:s?, s:s, s:i}}", "_source", "healthy",
                          error == NULL, "error", error, "fetched_at",
                          "2026-01-01T00:00:00.000Z", "failures", error ? 2 : 0);
    ck_assert_int_eq(km_bus_publish(bridge, v, me), KM_OK);
}

/* The alerts seen of `type`, as "state:key:message" lines. */
static void seen(const char *type, char *out, size_t len)
{
    json_t *a;
    size_t i, n = 0;

    out[0] = '\0';
    json_array_foreach(alerts, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "type")), type) != 0)
            continue;
        n += (size_t)snprintf(out + n, len - n, "%s:%s:%s\n",
                              json_string_value(json_object_get(a, "state")),
                              json_string_value(json_object_get(a, "key")),
                              json_string_value(json_object_get(a, "message")));
        ck_assert_uint_lt(n, len);
    }
}

/* alerts_firing's count of (type, level), -1 when it has no such pair. */
static int firing(const char *type, const char *level)
{
    struct km_topic *t = km_bus_find(core.bus, "alerts_firing");
    struct km_msg *m = t ? km_topic_latest(t) : NULL;
    json_t *a;
    size_t i;

    ck_assert_ptr_nonnull(m);
    json_array_foreach(json_object_get(km_msg_json(m), "alerts"), i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "type")), type) == 0 &&
            strcmp(json_string_value(json_object_get(a, "level")), level) == 0)
            return (int)json_integer_value(json_object_get(a, "firing"));
    }
    return -1;
}

/* A REST call to the plugin's routes; the reply goes to *reply (new). */
static int rest(const char *method, const char *path, const char *query, const char *body,
                json_t **reply)
{
    struct km_rest_call call = {method, path, query, body, strlen(body), NULL};
    const char *detail = NULL;

    *reply = NULL;
    int status = km_loader_rest(core.loader, &call, reply, &detail, NULL, 0, NULL, NULL);
    if (!*reply && detail)
        *reply = json_pack("{s:s}", "detail", detail);
    return status;
}

/* ---- host_down ----------------------------------------------------------- */

START_TEST(test_host_down_through_the_bus)
{
    char got[2048];

    ck_assert_int_eq(load(""), 0);
    ck_assert_int_ge(
        find_line("0 alert rules, and the built-in host_down and source_down", NULL), 0);
    ck_assert_int_eq(firing("host_down", "error"), 0);
    publish_hosts(1, 0.5);
    ck_assert_uint_eq(json_array_size(alerts), 0);
    publish_hosts(0, 31.4);
    seen("host_down", got, sizeof got);
    ck_assert_str_eq(got, "firing:host_down_B:host B down: no message for 31 s\n");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(alerts, 0), "host")), "B");
    ck_assert_int_eq(firing("host_down", "error"), 1);
    publish_hosts(0, 32.4); /* down still, within the cooldown: quiet */
    ck_assert_uint_eq(json_array_size(alerts), 1);
    publish_hosts(1, 0.1);
    seen("host_down", got, sizeof got);
    ck_assert_str_eq(got, "firing:host_down_B:host B down: no message for 31 s\n"
                          "resolved:host_down_B:host B down: no message for 32 s "
                          "(resolved)\n");
    ck_assert_int_eq(firing("host_down", "error"), 0);

    /* the history has both, newest first, "host" kept */
    json_t *reply;
    ck_assert_int_eq(rest("GET", "/api/v1/alerts", "type=host_down", "", &reply), 200);
    json_t *list = json_object_get(reply, "alerts");
    ck_assert_uint_eq(json_array_size(list), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "state")),
                     "resolved");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "host")),
                     "B");
    json_decref(reply);
}
END_TEST

START_TEST(test_host_down_already_down)
{
    char got[1024];

    publish_hosts(0, 60); /* B is down before the plugin starts */
    ck_assert_int_eq(load("[alert host_down]\nlevel = warning\nmessage = {host} silent "
                          "{age} s\n"),
                     0);
    ck_assert_int_ge(find_line("1 alert rules, and the built-in source_down", NULL), 0);
    seen("host_down", got, sizeof got);
    ck_assert_str_eq(got, "firing:host_down_B:B silent 60 s\n");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(alerts, 0), "level")),
        "warning");
    ck_assert_int_eq(firing("host_down", "warning"), 1);
    ck_assert_int_eq(firing("host_down", "error"), -1);
}
END_TEST

/* ---- source_down ---------------------------------------------------------- */

START_TEST(test_source_down_through_the_bus)
{
    char got[1024];

    ck_assert_int_eq(load(""), 0);
    publish_source(NULL);
    ck_assert_uint_eq(json_array_size(alerts), 0);
    ck_assert_int_eq(firing("source_down", "error"), 0);
    publish_source("connection refused");
    seen("source_down", got, sizeof got);
    ck_assert_str_eq(got, "firing:source_down_redis_bridge:redis_bridge: source down: "
                          "connection refused\n");
    json_t *a = json_array_get(alerts, 0);
    ck_assert_str_eq(json_string_value(json_object_get(a, "topic")), "redis_bridge");
    ck_assert_str_eq(json_string_value(json_object_get(a, "error")),
                     "connection refused");
    ck_assert_int_eq(firing("source_down", "error"), 1);
    /* the rules' own topics and the hosts value say nothing to it */
    publish_hosts(1, 0);
    ck_assert_uint_eq(json_array_size(alerts), 1);
    publish_source(NULL);
    seen("source_down", got, sizeof got);
    ck_assert_str_eq(got, "firing:source_down_redis_bridge:redis_bridge: source down: "
                          "connection refused\n"
                          "resolved:source_down_redis_bridge:redis_bridge: source down: "
                          "connection refused (resolved)\n");
    ck_assert_int_eq(firing("source_down", "error"), 0);
}
END_TEST

START_TEST(test_source_down_disabled)
{
    publish_source("refused"); /* down already: would fire at subscribe */
    ck_assert_int_eq(load("[alert source_down]\nenabled = false\n"), 0);
    ck_assert_int_ge(find_line("0 alert rules, and the built-in host_down", NULL), 0);
    publish_source("still refused");
    ck_assert_uint_eq(json_array_size(alerts), 0);
    ck_assert_int_eq(firing("source_down", "error"), -1);
    ck_assert_int_eq(firing("host_down", "error"), 0);
}
END_TEST

/* ---- the check, at file:line ---------------------------------------------- */

START_TEST(test_check_at_line)
{
    /* line 8: [alert host_down], 9: path */
    load("[alert host_down]\npath = hosts[*]\n"); /* the plugin is refused, not the daemon
                                                   */
    ck_assert_ptr_null(km_bus_find(core.bus, "alerts_firing")); /* never started */
    char where[600];
    snprintf(where, sizeof where, "%s:9:", conf_path);
    ck_assert_msg(find_line(where, "`path` means nothing in [alert host_down]", NULL) >=
                      0,
                  "no line %s ... (%d lines)", where, n_lines);
}
END_TEST

/* ---- ?host= ---------------------------------------------------------------- */

/* Host B's system_alerts batch number seq, as a bridge republishes it. */
static void remote_batch(int64_t epoch, uint64_t seq, const char *state)
{
    struct km_remote r = {"B", KM_TOPIC_EVENT, epoch, seq, 1767225600000000};
    char id[32], key[64];

    snprintf(id, sizeof id, "b%llu", (unsigned long long)seq);
    snprintf(key, sizeof key, "high_cpu");
    json_t *body =
        json_pack("{s:s, s:s, s:[{s:s, s:s, s:s, s:s, s:s, s:s, s:s}]}", "id", id,
                  "timestamp", "2026-01-01T00:00:00.000Z", "alerts", "id", id, "level",
                  "warning", "type", "high_cpu", "message", "High CPU usage: 85%",
                  "state", state, "key", key, "rule", "high_cpu");
    ck_assert_int_eq(
        km_bus_publish_remote(km_bus_find(core.bus, "system_alerts"), body, &r), KM_OK);
}

START_TEST(test_rest_host)
{
    json_t *reply;

    ck_assert_int_eq(load(""), 0);
    publish_hosts(0, 40); /* one local alert: host_down_B */
    remote_batch(1000, 1, "firing");
    remote_batch(1000, 2, "resolved");
    remote_batch(1000, 3, "firing");
    ck_assert_uint_eq(json_array_size(alerts), 1); /* B's are not this host's */

    ck_assert_int_eq(rest("GET", "/api/v1/alerts", "host=B", "", &reply), 200);
    json_t *list = json_object_get(reply, "alerts");
    ck_assert_uint_eq(json_array_size(list), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "total")), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "id")),
                     "b3"); /* newest first */
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(list, 0), "timestamp")),
        "2026-01-01T00:00:00.000Z");
    json_decref(reply);
    ck_assert_int_eq(
        rest("GET", "/api/v1/alerts", "host=B&state=resolved&limit=5", "", &reply), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(reply, "alerts")), 1);
    json_decref(reply);

    /* this host, by name or by default: its own history */
    const char *const mine[] = {"host=A", "", "host="};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(rest("GET", "/api/v1/alerts", mine[i], "", &reply), 200);
        list = json_object_get(reply, "alerts");
        ck_assert_uint_eq(json_array_size(list), 1);
        ck_assert_str_eq(
            json_string_value(json_object_get(json_array_get(list, 0), "type")),
            "host_down");
        json_decref(reply);
    }

    /* active on B: the key whose last alert fires */
    ck_assert_int_eq(rest("GET", "/api/v1/alerts/active", "host=B", "", &reply), 200);
    list = json_object_get(reply, "active");
    ck_assert_uint_eq(json_array_size(list), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "key")),
                     "high_cpu");
    json_decref(reply);
    ck_assert_int_eq(rest("GET", "/api/v1/alerts/active", "", "", &reply), 200);
    list = json_object_get(reply, "active");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "key")),
                     "host_down_B");
    json_decref(reply);

    /* unknown host: 404 naming it, on every route */
    ck_assert_int_eq(rest("GET", "/api/v1/alerts", "host=Z", "", &reply), 404);
    ck_assert_str_eq(json_string_value(json_object_get(reply, "detail")), "no host Z");
    json_decref(reply);
    ck_assert_int_eq(rest("GET", "/api/v1/alerts/active", "host=Z", "", &reply), 404);
    json_decref(reply);
    ck_assert_int_eq(rest("DELETE", "/api/v1/alerts", "host=Z", "", &reply), 404);
    json_decref(reply);

    /* B's read marks and history are B's */
    ck_assert_int_eq(
        rest("POST", "/api/v1/alerts/read", "host=B", "{\"all\":true}", &reply), 400);
    json_decref(reply);
    ck_assert_int_eq(rest("DELETE", "/api/v1/alerts", "host=B", "", &reply), 400);
    json_decref(reply);
    ck_assert_int_eq(
        rest("POST", "/api/v1/alerts/read", "host=A", "{\"all\":true}", &reply), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "marked")), 1);
    json_decref(reply);
}
END_TEST

static Suite *manager_suite(void)
{
    Suite *s = suite_create("alert_manager");
    TCase *tc = tcase_create("fleet");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_host_down_through_the_bus);
    tcase_add_test(tc, test_host_down_already_down);
    tcase_add_test(tc, test_source_down_through_the_bus);
    tcase_add_test(tc, test_source_down_disabled);
    tcase_add_test(tc, test_check_at_line);
    tcase_add_test(tc, test_rest_host);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(manager_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
