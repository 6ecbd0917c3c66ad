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

static struct km_core core;          /* the daemon under test */
static char tmpdir[256];             /* per-test scratch directory (state_dir) */
static char conf_path[512];          /* tmpdir/katomon.conf */
static const char *build_dir;        /* built alert_manager.so */
static json_t *alerts;               /* every alert of every system_alerts batch */
static char lines[MAX_LINES][512];   /* caught log lines */
static int n_lines;                  /* number caught */
static const char me[] = "test";     /* owner of the topics the test publishes */
static struct km_topic *hosts;       /* the core's `hosts` */
static struct km_topic *bridge;      /* a collector's topic with "_source" */
static struct km_topic *cpu;         /* a topic with a number: {"v": N} */
static struct km_config *old_cfg[8]; /* configs replaced by reload(), freed last */
static int n_old_cfg;                /* how many */

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
    static const struct km_topic_def cpu_def = {
        "cpu", KM_TOPIC_STATE, NULL, 0, "a number for threshold rules", NULL};

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
    ck_assert_ptr_nonnull(cpu = km_bus_declare(core.bus, &cpu_def, me, NULL));
    n_old_cfg = 0;
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
    for (int i = 0; i < n_old_cfg; i++)
        km_config_free(old_cfg[i]);
    km_log_set_hook(NULL, NULL);
    json_decref(alerts);
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes the config: [core], [plugin alert_manager], then `rules`. */
static void write_conf(const char *rules)
{
    char text[4096];
    FILE *f = fopen(conf_path, "w");

    ck_assert_ptr_nonnull(f);
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = debug\n\n"
             "[plugin alert_manager]\n\n%s",
             build_dir, tmpdir, rules);
    fputs(text, f);
    fclose(f);
}

/* Writes the config with `rules` and loads it; returns km_loader_load_all's
   result. */
static int load(const char *rules)
{
    char err[1024];

    write_conf(rules);
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

/* ---- history = transitions (issue 16) ---------------------------------------- */

/* The rule of these tests: {"v"} of `cpu`, > 80 warning, >= 90 error. */
#define HOT(cooldown, warning)                                                           \
    "[alert hot]\ntopic = cpu\npath = v\nwarning = " #warning                            \
    "\ncritical = 90\ncooldown = " #cooldown "\nmessage = hot {value}\n"

static void publish_cpu(double v)
{
    ck_assert_int_eq(km_bus_publish(cpu, json_pack("{s:f}", "v", v), me), KM_OK);
}

/* GET /api/v1/alerts?limit=10000 (new reference). */
static json_t *history(void)
{
    json_t *reply;

    ck_assert_int_eq(rest("GET", "/api/v1/alerts", "limit=10000", "", &reply), 200);
    return reply;
}

/* The history as "id:transition:level:repeats" lines, oldest first. */
static void records(char *out, size_t len)
{
    json_t *reply = history(), *list = json_object_get(reply, "alerts");
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = json_array_size(list); i-- > 0;) {
        json_t *e = json_array_get(list, i);
        json_t *tr = json_object_get(e, "transition");
        n += (size_t)snprintf(
            out + n, len - n, "%s:%s:%s:%lld\n",
            json_string_value(json_object_get(e, "id")), tr ? json_string_value(tr) : "-",
            json_string_value(json_object_get(e, "level")),
            (long long)json_integer_value(json_object_get(e, "repeats")));
        ck_assert_uint_lt(n, len);
        ck_assert_ptr_nonnull(json_object_get(e, "last_seen"));
    }
    json_decref(reply);
}

/* Stops the plugin and loads it again on the same state_dir. */
static void restart(const char *rules)
{
    km_loader_free(core.loader);
    core.loader = NULL;
    km_config_free(core.cfg);
    core.cfg = NULL;
    ck_assert_int_eq(load(rules), 0);
}

/* SIGHUP as core/main.c does it: the file read again, then the reload hooks. */
static void reload(const char *rules)
{
    char err[1024];
    struct km_config *cfg = NULL;

    write_conf(rules);
    ck_assert_msg(km_config_load(conf_path, &cfg, err, sizeof err) == 0, "%s", err);
    ck_assert_int_lt(n_old_cfg, 8);
    old_cfg[n_old_cfg++] = core.cfg;
    core.cfg = cfg;
    km_loader_reload(core.loader);
}

/*
 * Many re-sends (cooldown 0: every sample that changes nothing is one) are
 * all published, and the history holds only the transitions, each with its
 * re-sends counted; a restart reads the same back.
 */
START_TEST(test_history_transitions)
{
    char got[1024];

    ck_assert_int_eq(load(HOT(0, 80) "[alert source_down]\nenabled = false\n"), 0);
    for (int i = 0; i < 30; i++)
        publish_cpu(85);
    for (int i = 0; i < 10; i++)
        publish_cpu(95);
    for (int i = 0; i < 5; i++)
        publish_cpu(85);
    publish_cpu(10);
    ck_assert_uint_eq(json_array_size(alerts), 46); /* live: every re-send */
    records(got, sizeof got);
    ck_assert_str_eq(got, "a1:fired:warning:29\n"
                          "a2:escalated:error:9\n"
                          "a3:de-escalated:warning:4\n"
                          "a4:resolved:warning:0\n");
    json_t *before = history();
    ck_assert_int_eq(json_integer_value(json_object_get(before, "unread")), 4);
    /* a re-send on the bus carries its record's id */
    json_t *a = json_array_get(alerts, 35); /* the 6th 95: its 5th re-send */
    ck_assert_str_eq(json_string_value(json_object_get(a, "id")), "a2");
    ck_assert_int_eq(json_integer_value(json_object_get(a, "repeats")), 5);

    restart(HOT(0, 80) "[alert source_down]\nenabled = false\n");
    json_t *after = history();
    ck_assert_msg(json_equal(before, after), "the same history after a restart");
    json_decref(before);
    json_decref(after);
    publish_cpu(85); /* ids go on */
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(alerts, json_array_size(alerts) - 1), "id")),
                     "a5");
}
END_TEST

/*
 * max_entries records larger than max_bytes (issue 17): the file is
 * compacted when it doubles, not at every new line (each a rewrite and an
 * fdatasync of the whole file on the loop), and every record is kept.
 */
START_TEST(test_history_compaction_amortized)
{
    char path[600];
    struct stat st;
    ino_t ino = 0;
    int compactions = 0;

    ck_assert_int_eq(load("max_entries = 100000\nmax_bytes = 4096\n" HOT(
                         3600, 80) "[alert source_down]\nenabled = false\n"),
                     0);
    snprintf(path, sizeof path, "%s/alerts.jsonl", tmpdir);
    for (int i = 0; i < 400; i++) { /* 400 transitions, ~100 KB of records */
        publish_cpu(i % 2 ? 10 : 85);
        ck_assert_int_eq(stat(path, &st), 0);
        if (ino && st.st_ino != ino) /* a compaction renames a new file over it */
            compactions++;
        ino = st.st_ino;
    }
    ck_assert_msg(compactions >= 2 && compactions <= 10,
                  "%d compactions for 400 records past a 4 KB max_bytes", compactions);
    json_t *reply = history();
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "total")), 400);
    json_decref(reply);
}
END_TEST

/* An alerts.jsonl of the format before issue 16 (one record per re-send). */
static void write_old_history(void)
{
    char path[600];
    FILE *f;
    static const char *const old_lines[] = {
        "{\"id\":\"a1\",\"level\":\"warning\",\"type\":\"hot\",\"state\":\"firing\","
        "\"key\":\"hot\",\"message\":\"hot "
        "85\",\"timestamp\":\"2099-01-01T00:00:00.000Z\","
        "\"batch\":\"alert_1\",\"read\":false}",
        "{\"id\":\"a2\",\"level\":\"warning\",\"type\":\"hot\",\"state\":\"firing\","
        "\"key\":\"hot\",\"message\":\"hot "
        "85\",\"timestamp\":\"2099-01-01T00:01:00.000Z\","
        "\"batch\":\"alert_2\",\"read\":false}",
        "{\"id\":\"a3\",\"level\":\"warning\",\"type\":\"hot\",\"state\":\"firing\","
        "\"key\":\"hot\",\"message\":\"hot "
        "85\",\"timestamp\":\"2099-01-01T00:02:00.000Z\","
        "\"batch\":\"alert_3\",\"read\":false}",
        "{\"op\":\"read\",\"ids\":[\"a3\"]}",
        "{\"id\":\"a4\",\"level\":\"error\",\"type\":\"hot\",\"state\":\"firing\","
        "\"key\":\"hot\",\"message\":\"hot "
        "95\",\"timestamp\":\"2099-01-01T00:02:30.000Z\","
        "\"batch\":\"alert_4\",\"read\":false}",
        "{\"id\":\"a5\",\"level\":\"error\",\"type\":\"hot\",\"state\":\"firing\","
        "\"key\":\"hot\",\"message\":\"hot "
        "95\",\"timestamp\":\"2099-01-01T00:03:30.000Z\","
        "\"batch\":\"alert_5\",\"read\":false}",
        "{\"id\":\"a6\",\"level\":\"error\",\"type\":\"hot\",\"state\":\"resolved\","
        "\"key\":\"hot\",\"message\":\"hot 10 (resolved)\","
        "\"timestamp\":\"2099-01-01T00:04:00.000Z\",\"batch\":\"alert_6\",\"read\":"
        "false}",
        "{\"id\":\"a7\",\"level\":\"error\",\"type\":\"container_down\",\"state\":"
        "\"firing\","
        "\"key\":\"container_down_x\",\"message\":\"x down\","
        "\"timestamp\":\"2099-01-01T00:05:00.000Z\",\"batch\":\"alert_7\",\"read\":"
        "false}",
        "{\"id\":\"a8\",\"level\":\"error\",\"type\":\"container_down\",\"state\":"
        "\"firing\","
        "\"key\":\"container_down_x\",\"message\":\"x down\","
        "\"timestamp\":\"2099-01-01T00:06:00.000Z\",\"batch\":\"alert_8\",\"read\":"
        "false}",
    };

    snprintf(path, sizeof path, "%s/alerts.jsonl", tmpdir);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    for (size_t i = 0; i < sizeof old_lines / sizeof old_lines[0]; i++)
        fprintf(f, "%s\n", old_lines[i]);
    fclose(f);
}

/* The old format loads folded: re-sends counted on their transition, a read
   mark on a folded id lands on its record, ids go on past the folded ones;
   the file is rewritten once (the old one kept as .1). */
START_TEST(test_history_migration)
{
    char got[1024], path[600];
    struct stat st;

    write_old_history();
    ck_assert_int_eq(load(HOT(3600, 80)), 0);
    ck_assert_int_ge(
        find_line("8 records of the format before issue 16", "4 re-sends folded", NULL),
        0);
    records(got, sizeof got);
    ck_assert_str_eq(got, "a1:-:warning:2\n"
                          "a4:-:error:1\n"
                          "a6:-:error:0\n"
                          "a7:-:error:1\n");
    json_t *reply = history(), *list = json_object_get(reply, "alerts");
    json_t *a1 = json_array_get(list, 3);
    ck_assert_str_eq(json_string_value(json_object_get(a1, "last_seen")),
                     "2099-01-01T00:02:00.000Z");
    ck_assert(json_is_true(json_object_get(a1, "read")));
    ck_assert_int_eq(json_integer_value(json_object_get(reply, "unread")), 3);
    snprintf(path, sizeof path, "%s/alerts.jsonl.1", tmpdir);
    ck_assert_int_eq(stat(path, &st), 0);
    publish_cpu(85);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(alerts, 0), "id")),
                     "a9");
    /* the next start reads the new file as it is (cpu clear first: a value
       that holds fires anew after a start) */
    publish_cpu(10);
    json_t *before = history();
    n_lines = 0;
    restart(HOT(3600, 80));
    ck_assert_int_lt(find_line("format before issue 16", NULL), 0);
    json_t *after = history();
    char *tb = json_dumps(before, JSON_COMPACT), *ta = json_dumps(after, JSON_COMPACT);
    ck_assert_str_eq(ta, tb);
    free(tb);
    free(ta);
    json_decref(before);
    json_decref(after);
    json_decref(reply);
}
END_TEST

/* SIGHUP: an unchanged rule keeps its state (nothing re-fires, no record);
   a changed or removed one resolves its alert, saying why. */
START_TEST(test_reload_keeps_state)
{
    char got[1024];
    json_t *reply;

    ck_assert_int_eq(load(HOT(3600, 80)), 0);
    publish_cpu(85);
    ck_assert_uint_eq(json_array_size(alerts), 1);
    reload(HOT(3600, 80));
    ck_assert_int_ge(find_line("1 alert rules", NULL), 0);
    publish_cpu(86); /* within the cooldown kept */
    ck_assert_uint_eq(json_array_size(alerts), 1);
    ck_assert_int_eq(firing("hot", "warning"), 1);
    ck_assert_int_eq(rest("GET", "/api/v1/alerts/active", "", "", &reply), 200);
    json_t *act = json_array_get(json_object_get(reply, "active"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(act, "id")), "a1");
    json_decref(reply);
    records(got, sizeof got);
    ck_assert_str_eq(got, "a1:fired:warning:0\n");

    reload(HOT(3600, 70)); /* changed: resolved, and fires again from clear */
    ck_assert_uint_eq(json_array_size(alerts), 2);
    json_t *a = json_array_get(alerts, 1);
    ck_assert_str_eq(json_string_value(json_object_get(a, "state")), "resolved");
    ck_assert_str_eq(json_string_value(json_object_get(a, "reason")), "rule changed");
    ck_assert_str_eq(json_string_value(json_object_get(a, "message")),
                     "hot 86.0 (resolved: rule changed)");
    ck_assert_int_eq(firing("hot", "warning"), 0);
    publish_cpu(86);
    ck_assert_int_eq(firing("hot", "warning"), 1);
    reload(""); /* removed */
    a = json_array_get(alerts, json_array_size(alerts) - 1);
    ck_assert_str_eq(json_string_value(json_object_get(a, "reason")), "rule removed");
    records(got, sizeof got);
    ck_assert_str_eq(got, "a1:fired:warning:0\n"
                          "a2:resolved:warning:0\n"
                          "a3:fired:warning:0\n"
                          "a4:resolved:warning:0\n");
    ck_assert_int_eq(firing("hot", "warning"), -1);
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
    tcase_add_test(tc, test_history_transitions);
    tcase_add_test(tc, test_history_migration);
    tcase_add_test(tc, test_history_compaction_amortized);
    tcase_add_test(tc, test_reload_keeps_state);
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
