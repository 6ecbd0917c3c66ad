/*
 * check_loader.c - the plugin loader, the host interface and host_stats.
 *
 * Each test builds a real struct km_core (event_base, bus, a config read by
 * km_config_load from a file in a temporary directory) and loads the test
 * plugins built in tests/plugins (TEST_PLUGIN_DIR) or host_stats
 * (PLUGIN_BUILD_DIR). Log lines are caught with km_log_set_hook so every
 * failure can be checked to produce exactly one line.
 *
 * A released resource that was not really released shows up as a crash:
 * the test plugins' callbacks live in code that dlclose() unmapped.
 */
#define _GNU_SOURCE /* nftw */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <jansson.h>

#include "core.h"
#include "ctx.h"
#include "host.h"
#include "http_client.h"
#include "loader.h"
#include "log.h"

/* ---- fixture ----------------------------------------------------------- */

#define MAX_LINES 512

/* One caught log line. */
struct logline {
    enum km_log_level level; /* its level */
    char text[1024];         /* its text (no time stamp) */
};

static struct km_core core;             /* the daemon under test */
static char tmpdir[256];                /* per-test scratch directory */
static char conf_path[512];             /* tmpdir/katomon.conf */
static const char *plugin_dir;          /* built test plugins */
static const char *build_dir;           /* built host_stats.so */
static struct logline lines[MAX_LINES]; /* caught log lines */
static int n_lines;                     /* number caught */
static const char *core_extra;          /* more [core] lines for use_config */

static void catch_line(enum km_log_level level, const char *line, void *arg)
{
    if (n_lines < MAX_LINES) {
        lines[n_lines].level = level;
        snprintf(lines[n_lines].text, sizeof lines[n_lines].text, "%s", line);
        n_lines++;
    }
}

/* Lines at `level` (or any level when 0) that start with prefix. */
static int count_lines(enum km_log_level level, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < n_lines; i++)
        if ((!level || lines[i].level == level) &&
            strncmp(lines[i].text, prefix, strlen(prefix)) == 0)
            n++;
    return n;
}

/* Index of the first line containing needle, or -1. */
static int find_line(const char *needle)
{
    for (int i = 0; i < n_lines; i++)
        if (strstr(lines[i].text, needle))
            return i;
    return -1;
}

static void setup(void)
{
    plugin_dir = getenv("TEST_PLUGIN_DIR");
    build_dir = getenv("PLUGIN_BUILD_DIR");
    if (!plugin_dir)
        plugin_dir = "tests/plugins/.libs";
    if (!build_dir)
        build_dir = ".libs";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/check_loader.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    snprintf(conf_path, sizeof conf_path, "%s/katomon.conf", tmpdir);
    memset(&core, 0, sizeof core);
    core.base = event_base_new();
    core.bus = km_bus_new();
    ck_assert_ptr_nonnull(core.base);
    ck_assert_ptr_nonnull(core.bus);
    n_lines = 0;
    core_extra = "";
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
    core.loader = NULL;
    km_bus_free(core.bus);
    km_hc_shutdown(core.base); /* whoever frees the loop frees its CURLM */
    event_base_free(core.base);
    km_config_free(core.cfg);
    km_log_set_hook(NULL, NULL);
    nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* Writes the config ([core] pointing at the test plugins, then `fmt`),
   reads it into core.cfg and makes a loader. */
static void __attribute__((format(printf, 1, 2))) use_config(const char *fmt, ...)
{
    char body[4096], text[8192], err[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = debug\n%s\n%s",
             plugin_dir, tmpdir, core_extra, body);
    write_file(conf_path, text);
    km_config_free(core.cfg);
    core.cfg = NULL;
    ck_assert_msg(km_config_load(conf_path, &core.cfg, err, sizeof err) == 0,
                  "config: %s", err);
    if (!core.loader)
        core.loader = km_loader_new(&core);
    ck_assert_ptr_nonnull(core.loader);
}

/* Line number of the first line of the config file starting with text. */
static int conf_line_of(const char *text)
{
    char line[1024];
    int n = 0;
    FILE *f = fopen(conf_path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        n++;
        if (strncmp(line, text, strlen(text)) == 0) {
            fclose(f);
            return n;
        }
    }
    fclose(f);
    return -1;
}

static void load_all_ok(void)
{
    char err[1024];
    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), 0);
}

static void run_loop(double seconds)
{
    struct timeval tv = {(time_t)seconds,
                         (suseconds_t)((seconds - (time_t)seconds) * 1e6)};
    event_base_loopexit(core.base, &tv);
    event_base_dispatch(core.base);
}

/* What km_loader_foreach says about one plugin. */
struct info {
    const char *want;           /* name looked for */
    int found;                  /* seen */
    enum km_plugin_state state; /* its state */
    char reason[1024];          /* its reason, "" when none */
    char file[1024];            /* resolved file */
    char desc_name[64];         /* desc->name, "" when no desc */
    char desc_version[64];      /* desc->version */
    int has_desc;               /* desc was not NULL */
    size_t n_topics;            /* topics declared for a passive plugin */
};

static void take_info(const struct km_plugin_info *pi, void *arg)
{
    struct info *in = arg;
    if (strcmp(pi->name, in->want) != 0)
        return;
    in->found = 1;
    in->state = pi->state;
    snprintf(in->reason, sizeof in->reason, "%s", pi->reason ? pi->reason : "");
    snprintf(in->file, sizeof in->file, "%s", pi->file);
    in->has_desc = pi->desc != NULL;
    in->n_topics = pi->n_topics;
    if (pi->desc) {
        snprintf(in->desc_name, sizeof in->desc_name, "%s",
                 pi->desc->name ? pi->desc->name : "");
        snprintf(in->desc_version, sizeof in->desc_version, "%s",
                 pi->desc->version ? pi->desc->version : "");
    }
}

static struct info plugin_info(const char *name)
{
    struct info in = {.want = name};
    km_loader_foreach(core.loader, take_info, &in);
    ck_assert_msg(in.found, "plugin %s not listed", name);
    return in;
}

/* Messages seen by a test subscription. */
struct inbox {
    int n;        /* messages */
    json_t *last; /* copy of the last body (owned) */
};

static void on_msg(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    struct inbox *box = arg;
    box->n++;
    json_decref(box->last);
    box->last = json_deep_copy(km_msg_json(msg));
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    *(int *)arg = 1;
}

/* Runs the loop one turn at a time until box has n messages, or fails
   after a generous deadline: a repeating timer's count after a fixed time
   depends on the machine's load, the count of messages does not. */
static void wait_msgs(struct inbox *box, int n, double deadline_s)
{
    int late = 0;
    struct timeval tv = {(time_t)deadline_s,
                         (suseconds_t)((deadline_s - (time_t)deadline_s) * 1e6)};
    struct event *ev = evtimer_new(core.base, on_deadline, &late);
    ck_assert_ptr_nonnull(ev);
    evtimer_add(ev, &tv);
    while (box->n < n && !late)
        event_base_loop(core.base, EVLOOP_ONCE);
    event_free(ev);
    ck_assert_msg(box->n == n, "%d messages after %g s, wanted %d", box->n, deadline_s,
                  n);
}

/* A loopback TCP listener that never answers (accepted by the kernel
   backlog): requests to it stay in flight. Returns the fd; port in *port. */
static int silent_listener(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    int port, fd = silent_listener(&port);
    close(fd);
    return port;
}

static int errors(void)
{
    int n = 0;
    for (int i = 0; i < n_lines; i++)
        n += lines[i].level == KM_LOG_ERROR;
    return n;
}

/* ---- loading ------------------------------------------------------------ */

START_TEST(test_good_loads_and_publishes)
{
    struct inbox state = {0}, events = {0};
    char needle[256];

    use_config("[plugin test_good]\ninterval = 0.05\ngreeting = hi there\n");
    load_all_ok();

    struct info in = plugin_info("test_good");
    ck_assert_int_eq(in.state, KM_PLUGIN_RUNNING);
    ck_assert_str_eq(in.reason, "");
    ck_assert_str_eq(in.desc_version, "1.0");
    snprintf(needle, sizeof needle, "%s/test_good.so", plugin_dir);
    ck_assert_str_eq(in.file, needle);
    ck_assert_int_eq(count_lines(KM_LOG_NOTICE, "plugin test_good 1.0 loaded"), 1);
    ck_assert_int_eq(errors(), 0);

    /* The state message published at init is delivered at once. */
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "test", on_msg, &state, NULL));
    ck_assert_int_eq(state.n, 1);
    ck_assert_str_eq(json_string_value(json_object_get(state.last, "greeting")),
                     "hi there");
    ck_assert_int_eq(json_integer_value(json_object_get(state.last, "count")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(state.last, "sections")), 1);
    ck_assert_ptr_nonnull(
        km_bus_subscribe(core.bus, "test_events", on_msg, &events, NULL));

    run_loop(0.3);
    ck_assert_int_ge(events.n, 3);
    ck_assert_int_ge(state.n, 4);
    /* The plugin's own subscription saw every state message before the next. */
    json_int_t count = json_integer_value(json_object_get(state.last, "count"));
    ck_assert_int_eq(json_integer_value(json_object_get(state.last, "self_seen")),
                     count - 1);
    ck_assert_str_eq(json_string_value(json_object_get(events.last, "kind")), "tick");
    ck_assert_int_eq(km_topic_kind(km_bus_find(core.bus, "test_events")), KM_TOPIC_EVENT);
    ck_assert_ptr_nonnull(km_topic_schema(km_bus_find(core.bus, "test")));
    /* The publish wrapper's debug line. */
    ck_assert_int_ge(
        count_lines(KM_LOG_DEBUG, "plugin test_good: published on topic test ("), 4);
    ck_assert_int_eq(errors(), 0);
    json_decref(state.last);
    json_decref(events.last);
}
END_TEST

START_TEST(test_plugin_rest_routes)
{
    struct km_rest_call call = {"GET", "/api/v1/test/echo", "msg=hi%20there&x=1", "", 0,
                                NULL};
    json_t *reply;
    const char *detail;
    char allow[64];

    use_config("[plugin test_good]\ninterval = 10\ngreeting = yo\n");
    load_all_ok();
    ck_assert_int_eq(km_loader_rest(core.loader, &call, &reply, &detail, allow,
                                    sizeof allow, NULL, NULL),
                     200);
    ck_assert_str_eq(json_string_value(json_object_get(reply, "msg")), "hi there");
    ck_assert_str_eq(json_string_value(json_object_get(reply, "greeting")), "yo");
    json_decref(reply);

    call.method = "HEAD"; /* answered by GET */
    ck_assert_int_eq(
        km_loader_rest(core.loader, &call, &reply, &detail, NULL, 0, NULL, NULL), 200);
    json_decref(reply);

    call.method = "DELETE";
    ck_assert_int_eq(km_loader_rest(core.loader, &call, &reply, &detail, allow,
                                    sizeof allow, NULL, NULL),
                     405);
    ck_assert_ptr_null(reply);
    ck_assert_str_eq(allow, "GET");
    ck_assert_ptr_nonnull(detail);

    call.method = "GET";
    call.path = "/api/v1/other";
    ck_assert_int_eq(
        km_loader_rest(core.loader, &call, &reply, &detail, NULL, 0, NULL, NULL), 0);

    n_lines = 0;
    call.method = "POST";
    call.path = "/api/v1/test/broken";
    ck_assert_int_eq(
        km_loader_rest(core.loader, &call, &reply, &detail, NULL, 0, NULL, NULL), 500);
    ck_assert_ptr_null(reply); /* the plugin's reply was released */
    ck_assert_int_eq(
        count_lines(KM_LOG_ERROR, "plugin test_good: POST /api/v1/test/broken"), 1);

    /* Gone with the plugin. */
    km_loader_free(core.loader);
    core.loader = NULL;
    ck_assert_int_eq(km_loader_rest(NULL, &call, &reply, &detail, NULL, 0, NULL, NULL),
                     0);
}
END_TEST

START_TEST(test_disabled_section_is_off)
{
    use_config("[plugin test_good]\nenabled = false\n");
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_OFF);
    ck_assert_ptr_null(km_bus_find(core.bus, "test"));
    ck_assert_int_eq(errors(), 0);
}
END_TEST

START_TEST(test_missing_file)
{
    char line[2048];

    use_config("[plugin nothere]\n\n[plugin other]\nfile = sub/missing.so\n");
    load_all_ok(); /* not fatal: the daemon goes on */

    struct info a = plugin_info("nothere");
    ck_assert_int_eq(a.state, KM_PLUGIN_DISABLED);
    ck_assert_str_eq(a.reason, "not found; check [core] plugin_dir or the file key");
    ck_assert_int_eq(a.has_desc, 0);
    snprintf(line, sizeof line,
             "plugin nothere (%s/nothere.so): not found; check [core] plugin_dir or the "
             "file key",
             plugin_dir);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, line), 1);

    struct info b = plugin_info("other");
    snprintf(line, sizeof line, "%s/sub/missing.so", plugin_dir);
    ck_assert_str_eq(b.file, line); /* relative file key: under plugin_dir */
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin other ("), 1);
    ck_assert_int_eq(errors(), 2);
}
END_TEST

START_TEST(test_not_a_shared_object)
{
    char so[600];

    snprintf(so, sizeof so, "%s/x.so", tmpdir);
    write_file(so, "this is not an ELF file\n");
    use_config("[plugin x]\nfile = %s\n", so);
    load_all_ok();

    struct info in = plugin_info("x");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_str_eq(in.file, so);
    ck_assert_msg(strncmp(in.reason, "cannot load it: ", 16) == 0, "reason: %s",
                  in.reason);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin x ("), 1);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_missing_symbol)
{
    use_config("[plugin test_nosym]\n");
    load_all_ok();

    struct info in = plugin_info("test_nosym");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_str_eq(in.reason, "no km_plugin_descriptor symbol: not a katomon plugin?");
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_nosym ("), 1);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_abi_mismatch)
{
    char want[256];

    use_config("[plugin test_badabi]\n");
    load_all_ok();

    struct info in = plugin_info("test_badabi");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    snprintf(want, sizeof want,
             "built for plugin ABI %d, this katomon needs %d; rebuild it against this "
             "katomon's headers",
             KM_PLUGIN_ABI + 100, KM_PLUGIN_ABI);
    ck_assert_str_eq(in.reason, want);
    ck_assert_int_eq(in.has_desc, 0); /* its layout is unknown: not exposed */
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_badabi ("), 1);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_name_mismatch)
{
    use_config("[plugin other]\nfile = test_good.so\n");
    load_all_ok();

    struct info in = plugin_info("other");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_msg(strstr(in.reason, "called 'test_good'"), "reason: %s", in.reason);
    /* The descriptor was readable: its name and version are still shown. */
    ck_assert_str_eq(in.desc_name, "test_good");
    ck_assert_str_eq(in.desc_version, "1.0");
    ck_assert_ptr_null(km_bus_find(core.bus, "test")); /* init never ran */
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_unknown_key_names_file_and_line)
{
    char where[700];

    use_config("[plugin test_good]\ninterval = 0.5\nbogus = 1\n");
    load_all_ok();

    struct info in = plugin_info("test_good");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    snprintf(where, sizeof where, "%s:%d: ", conf_path, conf_line_of("bogus"));
    ck_assert_msg(strncmp(in.reason, where, strlen(where)) == 0, "reason: %s", in.reason);
    ck_assert_msg(strstr(in.reason, "bogus"), "reason: %s", in.reason);
    ck_assert_ptr_null(km_bus_find(core.bus, "test")); /* init never ran */
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_good ("), 1);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_bad_value_names_file_and_line)
{
    char where[700];

    use_config("[plugin test_good]\ninterval = 0.001\n"); /* below its 0.01 minimum */
    load_all_ok();

    struct info in = plugin_info("test_good");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    snprintf(where, sizeof where, "%s:%d: ", conf_path, conf_line_of("interval"));
    ck_assert_msg(strncmp(in.reason, where, strlen(where)) == 0, "reason: %s", in.reason);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_init_failure_releases_everything)
{
    struct inbox probe = {0}, state = {0};
    const struct km_topic_def def = {"core_probe", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    int port, listener = silent_listener(&port), err = 0;
    int events_before = event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED);

    use_config("[plugin test_initfail]\nurl = http://127.0.0.1:%d/\n\n"
               "[plugin test_good]\ninterval = 0.05\n",
               port);
    load_all_ok();

    struct info in = plugin_info("test_initfail");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_str_eq(in.reason, "init failed: failing on purpose");
    ck_assert_str_eq(in.desc_version, "1.0");
    /* Its own line plus exactly one from the loader. */
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_initfail ("), 1);
    ck_assert_int_eq(
        count_lines(KM_LOG_ERROR, "plugin test_initfail: failing on purpose"), 1);
    ck_assert_int_eq(errors(), 2);

    /* Its request was cancelled, its timer deleted: only test_good's timer is
       left on the loop. */
    ck_assert_uint_eq(km_hc_stats.live, 0);
    /* (bufferevents are finalized on the next loop pass) */
    event_base_loop(core.base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED),
                     events_before + 1);

    /* Its topic stays (others may hold it) but nobody may publish on it. */
    struct km_topic *orphan = km_bus_find(core.bus, "initfail");
    ck_assert_ptr_nonnull(orphan);
    ck_assert_int_eq(km_bus_publish(orphan, json_object(), NULL), KM_EOWNER);

    /* Its subscriptions ("*" and "initfail") are gone: this would call into
       unmapped code. */
    struct km_topic *t = km_bus_declare(core.bus, &def, NULL, &err);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "core_probe", on_msg, &probe, NULL));
    ck_assert_int_eq(km_bus_publish(t, json_pack("{s:i}", "x", 1), NULL), KM_OK);
    ck_assert_int_eq(probe.n, 1);

    /* Its REST route went with it. */
    {
        struct km_rest_call call = {"GET", "/api/v1/initfail", "", "", 0, NULL};
        json_t *reply;
        const char *detail;
        ck_assert_int_eq(
            km_loader_rest(core.loader, &call, &reply, &detail, NULL, 0, NULL, NULL), 0);
    }

    /* The other plugin still runs; the failed one's timer never fires. */
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "test", on_msg, &state, NULL));
    run_loop(0.25);
    ck_assert_int_ge(state.n, 3);
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_RUNNING);
    json_decref(probe.last);
    json_decref(state.last);
    close(listener);
}
END_TEST

START_TEST(test_failure_fatal)
{
    char err[1024] = "";

    core_extra = "plugin_failure_fatal = true\n";
    use_config("[plugin nothere]\n\n[plugin test_good]\n");
    n_lines = 0;
    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "nothere") && strstr(err, "plugin_failure_fatal"),
                  "err: %s", err);
    ck_assert_int_eq(plugin_info("nothere").state, KM_PLUGIN_DISABLED);
    /* Start-up stopped there: the next plugin was not loaded. */
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_OFF);
    ck_assert_ptr_null(km_bus_find(core.bus, "test"));
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin nothere ("), 1);
    ck_assert_int_eq(errors(), 1);
}
END_TEST

START_TEST(test_shutdown_in_reverse_order)
{
    int good_loaded, hs_loaded, good_hook, good_down, hs_down;

    use_config("[plugin test_good]\ninterval = 0.05\n\n"
               "[plugin host_stats]\nfile = %s/host_stats.so\ninterval = 0.1\n",
               build_dir);
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_RUNNING);
    ck_assert_int_eq(plugin_info("host_stats").state, KM_PLUGIN_RUNNING);
    run_loop(0.15);

    km_loader_free(core.loader);
    core.loader = NULL;
    good_loaded = find_line("plugin test_good 1.0 loaded");
    hs_loaded = find_line("plugin host_stats 1.0 loaded");
    good_hook = find_line("plugin test_good: shutdown");
    good_down = find_line("plugin test_good: shut down");
    hs_down = find_line("plugin host_stats: shut down");
    ck_assert_int_ge(good_loaded, 0);
    ck_assert_int_gt(hs_loaded, good_loaded); /* loaded in file order */
    ck_assert_int_gt(hs_down, hs_loaded);
    ck_assert_int_gt(good_down, hs_down);   /* shut down in reverse */
    ck_assert_int_gt(good_down, good_hook); /* after its own shutdown hook */
    ck_assert_int_gt(good_hook, hs_down);
    /* Nothing of theirs is left on the loop. */
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);
}
END_TEST

/* Problems of the last km_loader_check. */
static struct km_problems found;

/* km_loader_check of the current config into `found`; returns its errors. */
static size_t check_config(void)
{
    km_problems_clear(&found);
    size_t errors = km_loader_check(core.cfg, km_problems_add, &found);
    ck_assert_uint_eq(errors, found.errors);
    return errors;
}

/* A problem of `found` at `line` and `level` containing `hint`. */
static void found_at(enum km_log_level level, int line, const char *hint)
{
    for (size_t i = 0; i < found.n; i++)
        if (found.v[i].level == level && found.v[i].line == line &&
            strstr(found.v[i].text, hint) && strcmp(found.v[i].file, conf_path) == 0)
            return;
    for (size_t i = 0; i < found.n; i++)
        fprintf(stderr, "  found %d: %s\n", found.v[i].line, found.v[i].text);
    ck_abort_msg("no problem at line %d with '%s'", line, hint);
}

START_TEST(test_check_config)
{
    use_config("[plugin test_good]\ngreeting = x\n");
    ck_assert_uint_eq(check_config(), 0);
    ck_assert_uint_eq(found.n, 0);
    ck_assert_ptr_null(km_bus_find(core.bus, "test")); /* no init */
    ck_assert_int_eq(count_lines(0, "plugin test_good 1.0 loaded"), 0);

    /* every problem of every plugin, not the first only */
    use_config("[plugin test_good]\nnope = 1\ninterval = 0\n\n[plugin test_badabi]\n\n"
               "[plugin gone]\nfile = /nonexistent/gone.so\n");
    ck_assert_uint_eq(check_config(), 4);
    found_at(KM_LOG_ERROR, conf_line_of("nope"), "unknown key `nope`");
    found_at(KM_LOG_ERROR, conf_line_of("interval"), "bad value `0` for `interval`");
    found_at(KM_LOG_ERROR, conf_line_of("[plugin test_badabi]"), "plugin test_badabi (");
    found_at(KM_LOG_ERROR, conf_line_of("[plugin test_badabi]"), "plugin ABI");
    found_at(KM_LOG_ERROR, conf_line_of("file"),
             "plugin gone (/nonexistent/gone.so): not found");

    use_config("[plugin test_good]\nenabled = no\n[plugin gone]\nenabled = off\n");
    ck_assert_uint_eq(check_config(), 0);
    km_problems_clear(&found);
}
END_TEST

/* ---- collect = false: passive plugins (issue 15) ---------------------------- */

START_TEST(test_collect_false_is_passive)
{
    char needle[512];
    int err = 0;

    use_config("[plugin test_topics]\ncollect = false\n");
    ck_assert_uint_eq(check_config(), 0); /* --check-config accepts it */
    km_problems_clear(&found);
    load_all_ok();

    struct info in = plugin_info("test_topics");
    ck_assert_int_eq(in.state, KM_PLUGIN_PASSIVE);
    ck_assert_str_eq(km_plugin_state_name(in.state), "passive");
    ck_assert_int_eq(in.has_desc, 1);
    ck_assert_str_eq(in.desc_version, "1.0");
    ck_assert_uint_eq(in.n_topics, 2);
    ck_assert_str_eq(in.reason, "");
    snprintf(needle, sizeof needle,
             "plugin test_topics 1.0 loaded from %s/test_topics.so, passive (collect = "
             "false): 2 topics declared, not started",
             plugin_dir);
    ck_assert_msg(find_line(needle) >= 0, "no line '%s'", needle);
    /* none of its code ran */
    ck_assert_int_eq(count_lines(0, "plugin test_topics: init ran"), 0);
    ck_assert_int_eq(errors(), 0);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);

    /* its topics are there, as its descriptor says, and nothing published */
    struct km_topic *tt = km_bus_find(core.bus, "tt");
    struct km_topic *ev = km_bus_find(core.bus, "tt_events");
    ck_assert_ptr_nonnull(tt);
    ck_assert_ptr_nonnull(ev);
    ck_assert_int_eq(km_topic_kind(tt), KM_TOPIC_STATE);
    ck_assert_int_eq(km_topic_kind(ev), KM_TOPIC_EVENT);
    ck_assert_uint_eq(km_topic_ring_size(ev), 8);
    ck_assert_str_eq(km_topic_description(tt), "test_topics' state");
    ck_assert_ptr_nonnull(km_topic_metrics(tt));
    ck_assert_ptr_nonnull(km_topic_schema(tt));
    ck_assert_uint_eq(km_topic_published(tt), 0);
    /* owned by the plugin: the core may not publish, nor a plugin take it */
    ck_assert_int_eq(km_bus_publish(tt, json_pack("{s:i}", "v", 1), NULL), KM_EOWNER);
    struct km_topic_def def = {"tt", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    ck_assert_ptr_null(km_bus_declare(core.bus, &def, NULL, &err));
    ck_assert_int_eq(err, KM_EEXIST);
    /* what a bridge brings in is checked against the plugin's schema */
    struct km_remote r = {"beta", KM_TOPIC_STATE, 1, 0, 1000};
    ck_assert_int_eq(km_bus_publish_remote(tt, json_pack("{s:i}", "v", 7), &r), KM_OK);
    ck_assert_int_eq(km_bus_publish_remote(tt, json_pack("{s:s}", "v", "x"), &r),
                     KM_ESCHEMA);
    ck_assert_ptr_nonnull(km_topic_latest_host(tt, 1));

    /* the end: nothing to shut down, its topics disowned all the same */
    n_lines = 0;
    km_loader_free(core.loader);
    core.loader = NULL;
    ck_assert_int_eq(count_lines(0, "plugin test_topics: shutdown"), 0);
    ck_assert_int_eq(count_lines(KM_LOG_INFO, "plugin test_topics: released (passive)"),
                     1);
    ck_assert_int_eq(km_bus_publish_remote(tt, json_pack("{s:i}", "v", 8), &r),
                     KM_EOWNER);
}
END_TEST

START_TEST(test_collect_true_runs_init)
{
    /* collect = true (the default, said) changes nothing */
    use_config("[plugin test_topics]\ncollect = yes\n");
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_topics").state, KM_PLUGIN_RUNNING);
    ck_assert_uint_eq(plugin_info("test_topics").n_topics, 0);
    ck_assert_int_eq(count_lines(KM_LOG_INFO, "plugin test_topics: init ran"), 1);
    ck_assert_uint_eq(km_topic_published(km_bus_find(core.bus, "tt")), 1);
    ck_assert_int_eq(errors(), 0);
}
END_TEST

START_TEST(test_collect_false_needs_topics)
{
    struct info in;

    /* a plugin that does not name its topics cannot be passive: an error at
       the collect line, by --check-config and start-up alike */
    use_config("[plugin test_good]\ngreeting = x\n\ncollect = false\n");
    ck_assert_uint_eq(check_config(), 1);
    found_at(KM_LOG_ERROR, conf_line_of("collect"),
             "plugin test_good cannot run with collect = false: it does not name the "
             "topics it declares (its descriptor has no .topics)");
    load_all_ok();
    in = plugin_info("test_good");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_msg(strstr(in.reason, "cannot run with collect = false"), "reason: %s",
                  in.reason);
    char at[32];
    snprintf(at, sizeof at, ":%d: ", conf_line_of("collect"));
    ck_assert_msg(strstr(in.reason, at), "no line %s in: %s", at, in.reason);
    ck_assert_ptr_null(km_bus_find(core.bus, "test"));
    ck_assert_int_eq(count_lines(0, "plugin test_good: shutdown"), 0);

    /* built before .topics: said so */
    use_config("[plugin test_oldabi]\ncollect = off\n");
    ck_assert_uint_eq(check_config(), 1);
    found_at(KM_LOG_ERROR, conf_line_of("collect"), "no .topics: built before them");
    km_problems_clear(&found);
}
END_TEST

START_TEST(test_collect_false_topic_taken)
{
    char err[1024];
    int e = 0;
    /* a topic of .topics that cannot be declared: the plugin is disabled
       and keeps none of them */
    struct km_topic_def ev = {"tt_events", KM_TOPIC_EVENT, NULL, 0, NULL, NULL};
    ck_assert_ptr_nonnull(km_bus_declare(core.bus, &ev, NULL, &e));
    use_config("[plugin test_topics]\ncollect = false\n");
    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), 0);
    struct info in = plugin_info("test_topics");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_str_eq(in.reason, "collect = false: cannot declare its topic tt_events: "
                                "exists already (topic or REST route)");
    /* tt was declared first: orphaned now, like the topics of a failed init */
    ck_assert_int_eq(km_bus_publish(km_bus_find(core.bus, "tt"), json_object(), NULL),
                     KM_EOWNER);
}
END_TEST

START_TEST(test_collect_false_reload)
{
    struct km_config *old;

    use_config("[plugin test_topics]\ncollect = false\n");
    load_all_ok();
    n_lines = 0;
    /* a reload runs its checks but not its code; collect needs a restart */
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_topics]\ncollect = true\n");
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(
        count_lines(KM_LOG_WARNING,
                    "plugin test_topics: collect changed; restart katomon to apply it"),
        1);
    ck_assert_int_eq(count_lines(0, "plugin test_topics: reloaded"), 0);
    ck_assert_int_eq(count_lines(0, "plugin test_topics: init ran"), 0);
    ck_assert_int_eq(plugin_info("test_topics").state, KM_PLUGIN_PASSIVE);
    /* unchanged: quiet */
    n_lines = 0;
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_topics]\ncollect = false\n");
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(count_lines(0, "plugin test_topics: collect changed"), 0);
    ck_assert_int_eq(errors(), 0);
}
END_TEST

START_TEST(test_edge_of_the_shipped_plugins)
{
    /* an edge: every collector of katomon passive; their topics as their
       init would declare them, with their series tables */
    static const char *const topics[] = {
        "host",        "containers",     "metrics",       "sessions",
        "kato_health", "session_events", "system_alerts", "alerts_firing",
    };
    static const char *const plugins[] = {"host_stats", "docker_stats", "kato_metrics",
                                          "session_events", "alert_manager"};
    char body[2048] = "";
    size_t used = 0;

    for (size_t i = 0; i < 5; i++)
        used += (size_t)snprintf(body + used, sizeof body - used,
                                 "[plugin %s]\nfile = %s/%s.so\ncollect = false\n\n",
                                 plugins[i], build_dir, plugins[i]);
    use_config("%s", body);
    ck_assert_uint_eq(check_config(), 0);
    km_problems_clear(&found);
    load_all_ok();
    for (size_t i = 0; i < 5; i++)
        ck_assert_msg(plugin_info(plugins[i]).state == KM_PLUGIN_PASSIVE, "%s: %s",
                      plugins[i], plugin_info(plugins[i]).reason);
    for (size_t i = 0; i < 8; i++) {
        struct km_topic *t = km_bus_find(core.bus, topics[i]);
        ck_assert_msg(t != NULL, "no topic %s", topics[i]);
        ck_assert_uint_eq(km_topic_published(t), 0);
        ck_assert_ptr_nonnull(km_topic_schema(t));
        if (km_topic_kind(t) == KM_TOPIC_STATE)
            ck_assert_msg(km_topic_metrics(t) != NULL, "%s: no series table", topics[i]);
    }
    ck_assert_uint_eq(km_topic_ring_size(km_bus_find(core.bus, "session_events")), 512);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);
    ck_assert_int_eq(errors(), 0);
}
END_TEST

/* The descriptor of a running plugin, from km_loader_foreach. */
static void take_desc(const struct km_plugin_info *pi, void *arg)
{
    if (pi->state == KM_PLUGIN_RUNNING)
        *(const struct km_plugin **)arg = pi->desc;
}

START_TEST(test_topics_match_init)
{
    /* each plugin with .topics names there exactly what its init declares;
       host_stats runs here: the same name, kind, schema and series table */
    const struct km_plugin *desc = NULL;

    use_config("[plugin host_stats]\nfile = %s/host_stats.so\ninterval = 60\n",
               build_dir);
    load_all_ok();
    km_loader_foreach(core.loader, take_desc, &desc);
    ck_assert_ptr_nonnull(desc);
    ck_assert_ptr_nonnull(desc->topics);
    const struct km_topic_def *d = desc->topics;
    struct km_topic *t = km_bus_find(core.bus, d->name);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(d->name, "host");
    ck_assert_int_eq(km_topic_kind(t), d->kind);
    ck_assert_ptr_eq(km_topic_schema(t), d->schema);
    ck_assert_ptr_eq(km_topic_metrics(t), d->metrics);
    ck_assert_str_eq(km_topic_description(t), d->description);
    ck_assert_ptr_null(d[1].name);
}
END_TEST

/* A test_check config: its own section, then more lines. */
static const char check_bad[] = "[plugin test_check]\n"
                                "mode = medium\n" /* not fast or slow */
                                "limit = 5\n"
                                "[widget a]\n" /* no color */
                                "size = 2\n"
                                "[widget b]\n"
                                "size = 8\n"
                                "color = green\n" /* over limit: must be red */
                                "[widget c]\n"
                                "size = 11\n" /* typed: 1..10 */
                                "color = blue\n"
                                "shape = round\n"; /* typed: unknown */

START_TEST(test_plugin_check)
{
    use_config("%s", check_bad);
    ck_assert_uint_eq(check_config(), 6);
    found_at(KM_LOG_ERROR, conf_line_of("mode = medium"),
             "bad value `medium` for `mode`: expected fast or slow");
    found_at(KM_LOG_ERROR, conf_line_of("[widget a]"), "[widget a] has no `color`");
    found_at(KM_LOG_ERROR, conf_line_of("size = 8"),
             "[widget b] is bigger than limit (5)");
    found_at(KM_LOG_ERROR, conf_line_of("size = 11"),
             "bad value `11` for `size` in [widget c]: expected an integer from 1 to 10");
    found_at(KM_LOG_ERROR, conf_line_of("shape"),
             "unknown key `shape` in [widget c]; [widget NAME] takes: size, color");
    found_at(KM_LOG_ERROR, conf_line_of("[widget a]"), "has no `color`");
    ck_assert_ptr_null(km_bus_find(core.bus, "test_check")); /* no init */

    /* start-up runs the same checks: disabled before init, each logged */
    n_lines = 0;
    load_all_ok();
    struct info in = plugin_info("test_check");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_msg(
        strstr(in.reason, "6 configuration errors (each logged), the first: ") &&
            strstr(in.reason, "`medium`"),
        "reason: %s", in.reason);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_check: "), 6);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_check ("), 1);
    ck_assert_ptr_null(km_bus_find(core.bus, "test_check"));
    km_problems_clear(&found);
}
END_TEST

START_TEST(test_plugin_check_passes)
{
    struct inbox state = {0};

    use_config("[plugin test_check]\nmode = slow\n[widget a]\ncolor = red\nsize = 9\n"
               "[widget b]\ncolor = blue\n");
    ck_assert_uint_eq(check_config(), 0);
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_check").state, KM_PLUGIN_RUNNING);
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "test_check", on_msg, &state, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(state.last, "widgets")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(state.last, "mode")), "slow");
    ck_assert_int_eq(errors(), 0);
    json_decref(state.last);
}
END_TEST

START_TEST(test_section_nobody_reads)
{
    char err[1024] = "";
    int line;

    /* a typo of a kind: an error, with the kind it probably is */
    use_config("[plugin test_good]\n[plugin test_check]\n[widgit a]\ncolor = red\n"
               "[widgit b]\n");
    line = conf_line_of("[widgit a]");
    ck_assert_uint_eq(check_config(), 1);
    found_at(KM_LOG_ERROR, line,
             "no plugin reads [widgit NAME] sections (2 in this file); did you mean "
             "[widget a]?");
    found_at(KM_LOG_ERROR, line, "[widget NAME] (test_check)");
    /* start-up refuses the file before any init */
    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "read by no plugin"), "err: %s", err);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, conf_path), 1);
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_OFF);
    ck_assert_ptr_null(km_bus_find(core.bus, "test"));
    km_problems_clear(&found);
}
END_TEST

START_TEST(test_section_of_a_plugin_not_loaded)
{
    /* its owner may be the plugin that is off: a warning only */
    use_config("[plugin test_check]\nenabled = false\n[plugin test_good]\n"
               "[widget a]\ncolor = red\n");
    ck_assert_uint_eq(check_config(), 0);
    found_at(KM_LOG_WARNING, conf_line_of("[widget a]"),
             "no plugin loaded here reads [widget NAME] sections");
    found_at(KM_LOG_WARNING, conf_line_of("[widget a]"), "test_check (enabled = false)");
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_RUNNING);
    ck_assert_int_eq(count_lines(KM_LOG_WARNING, conf_path), 1);
    ck_assert_int_eq(errors(), 0);
    km_problems_clear(&found);
}
END_TEST

START_TEST(test_old_descriptor)
{
    /* built before .kinds and .check: what follows its descriptor is junk */
    use_config("[plugin test_oldabi]\n[plugin test_check]\n[widget w]\ncolor = red\n");
    ck_assert_uint_eq(check_config(), 0);
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_oldabi").state, KM_PLUGIN_RUNNING);
    ck_assert_int_eq(count_lines(KM_LOG_INFO, "plugin test_oldabi: an old descriptor"),
                     1);
    ck_assert_msg(find_line("built before kinds and check") >= 0, "no debug line");
    ck_assert_int_eq(errors(), 0);
}
END_TEST

START_TEST(test_reload_runs_checks)
{
    struct km_config *old;

    use_config("[plugin test_check]\n[widget a]\ncolor = red\n");
    load_all_ok();
    ck_assert_int_eq(plugin_info("test_check").state, KM_PLUGIN_RUNNING);
    n_lines = 0;
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_check]\n[widget a]\ncolor = pink\n[wodget b]\n");
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_check ("), 1);
    ck_assert_msg(find_line("`pink` for `color` in [widget a]: expected red, green or "
                            "blue; keeping its previous settings") >= 0,
                  "no line for the bad color");
    ck_assert_msg(find_line("no plugin reads [wodget NAME]") >= 0,
                  "no line for the kind");
    ck_assert_int_eq(plugin_info("test_check").state, KM_PLUGIN_RUNNING);
}
END_TEST

START_TEST(test_reload)
{
    struct inbox state = {0};
    char err[1024];
    struct km_config *old;

    use_config("[plugin test_good]\ninterval = 10\ngreeting = one\n");
    load_all_ok();
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "test", on_msg, &state, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(state.last, "greeting")), "one");

    /* New file: new greeting and one more [plugin] section. The old config
       is freed at once, so nothing may still point into it. */
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_good]\ninterval = 10\ngreeting = two\n\n"
               "[plugin test_nosym]\nenabled = false\n");
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(state.n, 2);
    ck_assert_str_eq(json_string_value(json_object_get(state.last, "greeting")), "two");
    ck_assert_int_eq(json_integer_value(json_object_get(state.last, "sections")), 2);
    ck_assert_int_eq(count_lines(KM_LOG_INFO, "plugin test_good: reloaded"), 1);

    /* A bad key on reload: one error line, previous settings kept. */
    n_lines = 0;
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_good]\ninterval = 10\ngreeting = three\nbad = 1\n");
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin test_good ("), 1);
    ck_assert_int_eq(errors(), 1);
    ck_assert_int_eq(state.n, 2); /* no reload hook call */
    ck_assert_int_eq(plugin_info("test_good").state, KM_PLUGIN_RUNNING);

    /* A section enabled after start: a restart is needed, and said so. */
    old = core.cfg;
    core.cfg = NULL;
    use_config("[plugin test_good]\ninterval = 10\n\n[plugin host_stats]\nfile = "
               "%s/host_stats.so\n",
               build_dir);
    km_config_free(old);
    km_loader_reload(core.loader);
    ck_assert_int_eq(
        count_lines(KM_LOG_NOTICE, "plugin host_stats: enabled in the config"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(state.last, "greeting")), "hello");

    ck_assert_int_eq(km_loader_load_all(core.loader, err, sizeof err), 0); /* no-op */
    json_decref(state.last);
}
END_TEST

/* ---- host_stats ------------------------------------------------------------ */

static void check_host_message(json_t *m)
{
    json_t *mem = json_object_get(m, "memory"), *load = json_object_get(m, "load");
    json_t *cpu = json_object_get(m, "cpu_percent");
    const char *ts = json_string_value(json_object_get(m, "timestamp"));
    const char *host = json_string_value(json_object_get(m, "hostname"));
    json_int_t total = json_integer_value(json_object_get(mem, "total_bytes"));
    json_int_t avail = json_integer_value(json_object_get(mem, "available_bytes"));
    json_int_t used = json_integer_value(json_object_get(mem, "used_bytes"));
    double pct = json_number_value(json_object_get(mem, "used_percent"));

    ck_assert_msg(json_is_number(cpu), "cpu_percent is not a number");
    ck_assert(json_number_value(cpu) >= 0 && json_number_value(cpu) <= 100);
    ck_assert_int_ge(json_integer_value(json_object_get(m, "cpu_count")), 1);
    ck_assert_int_gt(total, 0);
    ck_assert(avail >= 0 && avail <= total);
    ck_assert_int_eq(used, total - avail);
    ck_assert(pct >= 0 && pct <= 100);
    ck_assert(json_number_value(json_object_get(load, "1m")) >= 0);
    ck_assert(json_is_number(json_object_get(load, "5m")));
    ck_assert(json_is_number(json_object_get(load, "15m")));
    ck_assert(json_number_value(json_object_get(m, "uptime_seconds")) > 0);
    ck_assert(host && host[0]);
    /* 2026-11-23T02:40:00.123Z */
    ck_assert_msg(ts && strlen(ts) == 24 && ts[4] == '-' && ts[10] == 'T' &&
                      ts[19] == '.' && ts[23] == 'Z',
                  "timestamp %s", ts ? ts : "(none)");
}

START_TEST(test_host_stats_publishes)
{
    struct inbox host = {0};

    use_config("[plugin host_stats]\nfile = %s/host_stats.so\ninterval = 0.1\n",
               build_dir);
    load_all_ok();
    ck_assert_int_eq(plugin_info("host_stats").state, KM_PLUGIN_RUNNING);
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "host", on_msg, &host, NULL));
    ck_assert_int_eq(host.n, 0); /* the first sample comes after one interval */
    run_loop(0.35);
    ck_assert_int_ge(host.n, 2);
    check_host_message(host.last);
    struct km_topic *t = km_bus_find(core.bus, "host");
    ck_assert_ptr_nonnull(km_topic_schema(t));
    ck_assert_uint_eq(km_topic_rejected(t), 0);
    ck_assert_int_eq(errors(), 0);
    json_decref(host.last);
}
END_TEST

/* Writes a made-up procfs under tmpdir/proc. */
static void fake_proc(const char *stat, const char *meminfo, const char *loadavg,
                      const char *uptime)
{
    char path[700];
    const char *names[] = {"stat", "meminfo", "loadavg", "uptime"};
    const char *texts[] = {stat, meminfo, loadavg, uptime};

    snprintf(path, sizeof path, "%s/proc", tmpdir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/proc/sys", tmpdir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/proc/sys/kernel", tmpdir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/proc/sys/kernel/hostname", tmpdir);
    write_file(path, "fakehost\n");
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/proc/%s", tmpdir, names[i]);
        if (texts[i])
            write_file(path, texts[i]);
    }
}

static const char good_meminfo[] = "MemTotal:        1000 kB\nMemFree:          100 kB\n"
                                   "MemAvailable:     250 kB\nBuffers:           10 kB\n";

START_TEST(test_host_stats_values_from_fake_proc)
{
    struct inbox host = {0};
    json_t *m;

    fake_proc("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n"
              "cpu1 50 0 50 400 0 0 0 0 0 0\nintr 1 2 3\n",
              good_meminfo, "0.50 1.50 2.50 1/123 4567\n", "123.45 678.90\n");
    use_config("[plugin host_stats]\nfile = %s/host_stats.so\ninterval = 0.2\n"
               "proc_path = %s/proc\n",
               build_dir, tmpdir);
    load_all_ok();
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "host", on_msg, &host, NULL));
    /* +100 busy, +100 idle ticks since the baseline taken at init: 50%. */
    fake_proc("cpu  150 0 150 900 0 0 0 0 0 0\ncpu0 75 0 75 450 0 0 0 0 0 0\n"
              "cpu1 75 0 75 450 0 0 0 0 0 0\n",
              NULL, NULL, NULL);
    wait_msgs(&host, 1, 10);
    m = host.last;
    ck_assert_double_eq_tol(json_number_value(json_object_get(m, "cpu_percent")), 50.0,
                            1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "cpu_count")), 2);
    json_t *mem = json_object_get(m, "memory");
    ck_assert_int_eq(json_integer_value(json_object_get(mem, "total_bytes")), 1024000);
    ck_assert_int_eq(json_integer_value(json_object_get(mem, "available_bytes")), 256000);
    ck_assert_int_eq(json_integer_value(json_object_get(mem, "used_bytes")), 768000);
    ck_assert_double_eq_tol(json_number_value(json_object_get(mem, "used_percent")), 75.0,
                            1e-9);
    json_t *load = json_object_get(m, "load");
    ck_assert_double_eq_tol(json_number_value(json_object_get(load, "1m")), 0.5, 1e-9);
    ck_assert_double_eq_tol(json_number_value(json_object_get(load, "15m")), 2.5, 1e-9);
    ck_assert_double_eq_tol(json_number_value(json_object_get(m, "uptime_seconds")),
                            123.45, 1e-9);
    ck_assert_str_eq(json_string_value(json_object_get(m, "hostname")), "fakehost");

    /* No tick elapsed: no honest figure, so null. */
    wait_msgs(&host, 2, 10);
    ck_assert(json_is_null(json_object_get(host.last, "cpu_percent")));
    ck_assert_int_eq(errors(), 0);
    json_decref(host.last);
}
END_TEST

START_TEST(test_host_stats_survives_bad_proc)
{
    static const char *const bad_stat[] = {
        "",
        "cpu\n",
        "cpu  nan nan nan nan\n",
        "cpu  1 2 3\ncpu0 1 2 3 4\n",
        "cpu  99999999999999999999999 0 0 0\ncpu0 1 1 1 1\n",
        "cpu0 1 2 3 4\n",
        "\x01\x02\xff\xfe garbage\n",
    };
    static const char *const bad_meminfo[] = {
        "",
        "MemTotal: lots\n",
        "MemTotal: 0 kB\nMemAvailable: 0 kB\n",
        "MemTotal: 99999999999999999999 kB\nMemAvailable: 1 kB\n",
        "MemAvailable: 5 kB\n",
    };
    static const char *const bad_numbers[] = {"",         "nan nan nan\n", "inf 1 1\n",
                                              "-1 2 3\n", "1.0\n",         "x"};
    const char *ok_stat = "cpu  100 0 100 800 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0\n";
    struct inbox host = {0};
    char path[700];

    fake_proc(ok_stat, good_meminfo, "0.5 0.5 0.5 1/1 1\n", "10.0 10.0\n");
    use_config("[plugin host_stats]\nfile = %s/host_stats.so\ninterval = 0.1\n"
               "proc_path = %s/proc\n",
               build_dir, tmpdir);
    load_all_ok();
    ck_assert_ptr_nonnull(km_bus_subscribe(core.bus, "host", on_msg, &host, NULL));

    /* Every bad file content: the sample is skipped, nothing is published,
       nothing crashes; one warning for the whole failing stretch. */
    for (size_t i = 0; i < sizeof bad_stat / sizeof *bad_stat; i++) {
        fake_proc(bad_stat[i], NULL, NULL, NULL);
        run_loop(0.15);
    }
    fake_proc(ok_stat, NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof bad_meminfo / sizeof *bad_meminfo; i++) {
        fake_proc(NULL, bad_meminfo[i], NULL, NULL);
        run_loop(0.15);
    }
    fake_proc(NULL, good_meminfo, NULL, NULL);
    for (size_t i = 0; i < sizeof bad_numbers / sizeof *bad_numbers; i++) {
        fake_proc(NULL, NULL, bad_numbers[i], bad_numbers[i]);
        run_loop(0.15);
    }
    snprintf(path, sizeof path, "%s/proc/uptime", tmpdir);
    unlink(path); /* missing file */
    run_loop(0.15);
    ck_assert_int_eq(host.n, 0);
    ck_assert_int_eq(count_lines(KM_LOG_WARNING, "plugin host_stats: "), 1);
    ck_assert_uint_eq(km_topic_rejected(km_bus_find(core.bus, "host")), 0);

    /* Good files again: samples resume, with a notice. */
    fake_proc(ok_stat, good_meminfo, "0.5 0.5 0.5 1/1 1\n", "10.0 10.0\n");
    run_loop(0.15);
    ck_assert_int_ge(host.n, 1);
    ck_assert_int_eq(count_lines(KM_LOG_NOTICE, "plugin host_stats: reading "), 1);
    ck_assert_int_eq(plugin_info("host_stats").state, KM_PLUGIN_RUNNING);
    json_decref(host.last);
}
END_TEST

START_TEST(test_host_stats_bad_proc_path)
{
    use_config("[plugin host_stats]\nfile = %s/host_stats.so\nproc_path = %s/none\n",
               build_dir, tmpdir);
    load_all_ok();
    struct info in = plugin_info("host_stats");
    ck_assert_int_eq(in.state, KM_PLUGIN_DISABLED);
    ck_assert_msg(strstr(in.reason, "init failed: cannot open") &&
                      strstr(in.reason, "check proc_path"),
                  "reason: %s", in.reason);
    ck_assert_int_eq(count_lines(KM_LOG_ERROR, "plugin host_stats ("), 1);
}
END_TEST

/* ---- the host interface, driven directly ------------------------------------ */

static const struct km_conf_key unit_keys[] = {
    {"n", KM_CONF_INT, "42", 0, 0, NULL},     {"d", KM_CONF_DOUBLE, "2.5", 0, 0, NULL},
    {"b", KM_CONF_BOOL, "yes", 0, 0, NULL},   {"s", KM_CONF_STRING, NULL, 0, 0, NULL},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_plugin unit_desc = {
    .abi = KM_PLUGIN_ABI, .name = "unit", .version = "0", .config = unit_keys};

static struct km_ctx *unit_ctx(void)
{
    use_config("%s", "");
    struct km_ctx *ctx = km_ctx_new(&core, "unit", &unit_desc, NULL);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static void unit_done(struct km_ctx *ctx)
{
    km_host_release(ctx);
    km_ctx_free(ctx);
}

/* Timer callback state. */
struct ticker {
    struct km_ctx *ctx; /* owner */
    struct km_timer *t; /* its own handle */
    int n;              /* fires */
    int stop_at;        /* deletes itself at this fire; 0: never */
};

static void on_tick(void *arg)
{
    struct ticker *k = arg;
    if (++k->n == k->stop_at) {
        km_host_iface.timer_del(k->ctx, k->t);
        km_host_iface.timer_del(k->ctx, k->t); /* twice: harmless */
    }
}

START_TEST(test_host_timers)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    struct ticker self = {.ctx = ctx, .stop_at = 3}, now = {.ctx = ctx},
                  once = {.ctx = ctx}, late = {.ctx = ctx};

    self.t = h->timer_add(ctx, 0.02, KM_TIMER_REPEAT, on_tick, &self);
    now.t = h->timer_add(ctx, 0.06, KM_TIMER_NOW, on_tick, &now);
    once.t = h->timer_add(ctx, 0.01, 0, on_tick, &once);
    late.t = h->timer_add(ctx, 100, KM_TIMER_REPEAT, on_tick, &late);
    ck_assert_ptr_nonnull(self.t);
    ck_assert_ptr_nonnull(now.t);
    ck_assert_ptr_nonnull(once.t);
    ck_assert_ptr_nonnull(late.t);
    ck_assert_ptr_null(h->timer_add(ctx, 0, KM_TIMER_REPEAT, on_tick, &late));
    ck_assert_ptr_null(h->timer_add(ctx, -1, 0, on_tick, &late));
    ck_assert_ptr_null(h->timer_add(ctx, NAN, 0, on_tick, &late));
    ck_assert_ptr_null(h->timer_add(ctx, 1, 0, NULL, &late));

    run_loop(0.01 / 2); /* KM_TIMER_NOW fires as soon as the loop runs */
    ck_assert_int_eq(now.n, 1);
    run_loop(0.25);
    ck_assert_int_eq(self.n, 3); /* deleted itself from inside its callback */
    ck_assert_int_eq(now.n, 2);  /* now, then once after its interval */
    ck_assert_int_eq(once.n, 1);
    ck_assert_int_eq(late.n, 0);
    h->timer_del(ctx, once.t); /* a one-shot that fired: harmless */
    h->timer_del(ctx, now.t);
    /* Only `late` is still on the loop, and release takes it off. */
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 1);
    unit_done(ctx);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);
    run_loop(0.01);
    ck_assert_int_eq(late.n, 0);
}
END_TEST

/* fd watch callback state. */
struct watcher {
    struct km_ctx *ctx; /* owner */
    struct km_io *io;   /* its own handle */
    int n_read;         /* calls with KM_IO_READ (one byte read each) */
    int n_write;        /* calls with KM_IO_WRITE */
    int del_at_write;   /* deletes itself at this write call; 0: never */
    unsigned last;      /* events of the last call */
};

static void on_io(int fd, unsigned events, void *arg)
{
    struct watcher *w = arg;
    char c;

    w->last = events;
    if (events & KM_IO_READ) {
        w->n_read++;
        ck_assert_int_eq(read(fd, &c, 1), 1); /* one byte: level-triggered */
    }
    if ((events & KM_IO_WRITE) && ++w->n_write == w->del_at_write)
        km_host_iface.io_del(w->ctx, w->io); /* inside its own callback */
}

START_TEST(test_host_io)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    struct watcher r = {.ctx = ctx}, w = {.ctx = ctx, .del_at_write = 2};
    int p[2];

    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ck_assert_ptr_null(h->io_add(ctx, -1, KM_IO_READ, on_io, &r));
    ck_assert_ptr_null(h->io_add(ctx, p[0], KM_IO_READ, NULL, &r));
    ck_assert_ptr_null(h->io_add(ctx, p[0], 1u << 5, on_io, &r));

    /* Readable: the callback fires once per loop turn while data is left. */
    r.io = h->io_add(ctx, p[0], KM_IO_READ, on_io, &r);
    ck_assert_ptr_nonnull(r.io);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 0);
    ck_assert_int_eq(write(p[1], "ab", 2), 2);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 2);
    ck_assert_uint_eq(r.last, KM_IO_READ);

    /* Added waiting for nothing, then io_set to write; it io_dels itself. */
    w.io = h->io_add(ctx, p[1], 0, on_io, &w);
    ck_assert_ptr_nonnull(w.io);
    run_loop(0.02);
    ck_assert_int_eq(w.n_write, 0);
    ck_assert_int_eq(h->io_set(ctx, w.io, 1u << 5), KM_EINVAL);
    ck_assert_int_eq(h->io_set(ctx, w.io, KM_IO_WRITE), KM_OK);
    run_loop(0.02);
    ck_assert_int_eq(w.n_write, 2); /* stopped inside its second call */
    ck_assert_uint_eq(w.last, KM_IO_WRITE);

    /* io_set to nothing stops the reads; back to read resumes them. */
    ck_assert_int_eq(h->io_set(ctx, r.io, 0), KM_OK);
    ck_assert_int_eq(write(p[1], "cd", 2), 2);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 2);
    ck_assert_int_eq(h->io_set(ctx, r.io, KM_IO_READ), KM_OK);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 4);

    /* io_del stops it (the handle is gone: nothing fires, nothing leaks). */
    h->io_del(ctx, r.io);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);
    ck_assert_int_eq(write(p[1], "e", 1), 1);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 4);

    /* Released with the plugin: a watch left on a readable fd never fires. */
    r.io = h->io_add(ctx, p[0], KM_IO_READ, on_io, &r);
    ck_assert_ptr_nonnull(r.io);
    ck_assert_ptr_nonnull(h->io_add(ctx, p[1], KM_IO_WRITE, on_io, &w));
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 2);
    unit_done(ctx);
    ck_assert_int_eq(event_base_get_num_events(core.base, EVENT_BASE_COUNT_ADDED), 0);
    run_loop(0.02);
    ck_assert_int_eq(r.n_read, 4);
    ck_assert_int_eq(w.n_write, 2);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_host_config_and_log)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    static const struct km_conf_entry entries[] = {{"n", "7", 5}, {"s", "first", 6}};
    static const struct km_conf_entry entries2[] = {{"s", "second", 6}};
    const struct km_conf_section sec = {"plugin", "unit", "x.conf", 4, entries, 2};
    const struct km_conf_section sec2 = {"plugin", "unit", "x.conf", 4, entries2, 1};
    const char *first;
    size_t n = 99;

    /* Defaults, typed. */
    ck_assert_int_eq(h->config_int(ctx, "n"), 42);
    ck_assert_double_eq(h->config_double(ctx, "d"), 2.5);
    ck_assert_int_eq(h->config_bool(ctx, "b"), 1);
    ck_assert_ptr_null(h->config_string(ctx, "s"));
    ck_assert_ptr_null(h->config_string(ctx, "unknown"));
    ck_assert_int_eq(h->config_int(ctx, "unknown"), 0);
    ck_assert_str_eq(h->state_dir(ctx), tmpdir);
    ck_assert_ptr_null(h->config_sections(ctx, "alert", &n));
    ck_assert_uint_eq(n, 0);
    unit_done(ctx);

    /* Values from a section; a reload keeps old strings alive. */
    ctx = km_ctx_new(&core, "unit", &unit_desc, &sec);
    ck_assert_int_eq(h->config_int(ctx, "n"), 7);
    first = h->config_string(ctx, "s");
    ck_assert_str_eq(first, "first");
    km_ctx_reconfigure(ctx, &sec2);
    ck_assert_str_eq(h->config_string(ctx, "s"), "second");
    ck_assert_int_eq(h->config_int(ctx, "n"), 42); /* unset now: default */
    ck_assert_str_eq(first, "first");              /* still valid (ASan/valgrind) */
    km_ctx_reconfigure(ctx, NULL);                 /* NULL: values kept */
    ck_assert_str_eq(h->config_string(ctx, "s"), "second");

    /* Logging: prefixed, and the last error kept for the loader. */
    n_lines = 0;
    h->log(ctx, KM_LOG_INFO, "hello %d", 5);
    ck_assert_int_eq(count_lines(KM_LOG_INFO, "plugin unit: hello 5"), 1);
    ck_assert_str_eq(km_ctx_last_error(ctx), "");
    h->log(ctx, KM_LOG_WARNING, "careful %s", "now");
    ck_assert_str_eq(km_ctx_last_error(ctx), "careful now");

    ck_assert_str_eq(h->strerror(KM_EOWNER), km_strerror(KM_EOWNER));
    ck_assert_str_eq(km_strerror(12345), "unknown error");
    ck_assert_uint_eq(h->abi, KM_PLUGIN_ABI);
    ck_assert_uint_eq(h->size, sizeof(struct km_host));
    unit_done(ctx);
}
END_TEST

START_TEST(test_host_topics)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx(),
                  *other = km_ctx_new(&core, "other", &unit_desc, NULL);
    const struct km_topic_def def = {"unit", KM_TOPIC_STATE, NULL, 0, "d", NULL};
    struct inbox box = {0};
    int err = 0;

    struct km_topic *t = h->topic_declare(ctx, &def, &err);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_null(h->topic_declare(ctx, &def, &err));
    ck_assert_int_eq(err, KM_EEXIST);
    ck_assert_ptr_null(h->topic_declare(ctx, NULL, &err));
    ck_assert_int_eq(err, KM_EINVAL);
    ck_assert_ptr_eq(h->topic_find(ctx, "unit"), t);
    ck_assert_str_eq(h->topic_name(t), "unit");

    struct km_sub *sub = h->subscribe(ctx, "unit", on_msg, &box);
    ck_assert_ptr_nonnull(sub);
    ck_assert_int_eq(h->publish(ctx, t, json_pack("{s:i}", "v", 1)), KM_OK);
    ck_assert_int_eq(box.n, 1);
    ck_assert_ptr_nonnull(h->topic_latest(t));
    ck_assert_int_eq(
        json_integer_value(json_object_get(h->msg_json(h->topic_latest(t)), "v")), 1);
    ck_assert_int_eq(h->publish(other, t, json_object()), KM_EOWNER);
    ck_assert_int_eq(h->publish(ctx, NULL, json_object()), KM_EINVAL); /* body freed */
    h->unsubscribe(ctx, sub);
    ck_assert_int_eq(h->publish(ctx, t, json_pack("{s:i}", "v", 2)), KM_OK);
    ck_assert_int_eq(box.n, 1);

    /* Subscriptions end with the plugin, even to topics declared later. */
    h->subscribe(ctx, "later", on_msg, &box);
    unit_done(ctx);
    const struct km_topic_def later = {"later", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    struct km_topic *lt = km_bus_declare(core.bus, &later, NULL, &err);
    ck_assert_int_eq(km_bus_publish(lt, json_object(), NULL), KM_OK);
    ck_assert_int_eq(box.n, 1);
    ck_assert_int_eq(km_bus_publish(t, json_object(), NULL), KM_EOWNER); /* disowned */
    km_host_release(other);
    km_ctx_free(other);
    json_decref(box.last);
}
END_TEST

/* A recorder of deliveries: host index and value. */
struct hostbox {
    int n;          /* deliveries */
    int host[8];    /* msg_host of each (first 8) */
    long long v[8]; /* their "v" */
};

static void on_host_msg(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    struct hostbox *b = arg;
    if (b->n < 8) {
        b->host[b->n] = km_host_iface.msg_host(msg);
        b->v[b->n] = json_integer_value(json_object_get(km_msg_json(msg), "v"));
    }
    b->n++;
}

static void count_replay(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    (*(int *)arg)++;
}

START_TEST(test_host_hosts)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    const struct km_topic_def sdef = {"unit", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    const struct km_topic_def edef = {"unit_ev", KM_TOPIC_EVENT, NULL, 4, NULL, NULL};
    struct hostbox all = {0}, mine = {0};
    int err = 0, n = 0;

    ck_assert(KM_HOST_HAS(h, replay_host));
    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), KM_OK);
    struct km_topic *t = h->topic_declare(ctx, &sdef, &err);
    struct km_topic *e = h->topic_declare(ctx, &edef, &err);
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(h->host_name(ctx, 0), "alpha");
    ck_assert_ptr_null(h->host_name(ctx, 1));
    ck_assert_int_eq(h->host_find(ctx, "alpha"), 0);
    ck_assert_int_eq(h->host_find(ctx, "beta"), -1);
    ck_assert_int_eq(h->host_find(ctx, NULL), -1);
    ck_assert_ptr_nonnull(h->subscribe_hosts(ctx, "unit", on_host_msg, &all));
    ck_assert_ptr_nonnull(h->subscribe(ctx, "unit", on_host_msg, &mine));
    ck_assert_ptr_null(h->subscribe_hosts(ctx, NULL, on_host_msg, &all));
    ck_assert_ptr_null(h->subscribe_hosts(ctx, "unit", NULL, NULL));

    /* a remote host's message: to subscribe_hosts only, with its host */
    struct km_remote r = {"beta", KM_TOPIC_STATE, 5, 0, 1000};
    ck_assert_int_eq(h->publish_remote(ctx, t, json_pack("{s:i}", "v", 2), &r), KM_OK);
    ck_assert_int_eq(h->host_find(ctx, "beta"), 1);
    ck_assert_str_eq(h->host_name(ctx, 1), "beta");
    ck_assert_int_eq(all.n, 1);
    ck_assert_int_eq(all.host[0], 1);
    ck_assert_int_eq(mine.n, 0);
    ck_assert_int_eq(h->publish(ctx, t, json_pack("{s:i}", "v", 1)), KM_OK);
    ck_assert_int_eq(all.n, 2);
    ck_assert_int_eq(all.host[1], 0);
    ck_assert_int_eq(mine.n, 1);
    struct km_msg *m = h->topic_latest_host(t, 1);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(h->msg_host(m), 1);
    ck_assert_int_eq(h->msg_epoch(m), 5);
    ck_assert_int_eq(h->msg_epoch(h->topic_latest_host(t, 0)), km_bus_epoch(core.bus));
    ck_assert_ptr_null(h->topic_latest_host(t, 2));
    ck_assert_ptr_null(h->topic_latest_host(NULL, 0));
    ck_assert_int_eq(h->msg_host(NULL), 0);

    /* refusals, each with its code; body stolen every time (ASan says) */
    ck_assert_int_eq(h->publish_remote(ctx, NULL, json_object(), &r), KM_EINVAL);
    ck_assert_int_eq(h->publish_remote(ctx, t, json_object(), NULL), KM_EINVAL);
    r.host = "alpha"; /* our own name */
    ck_assert_int_eq(h->publish_remote(ctx, t, json_object(), &r), KM_EINVAL);
    r.host = "beta";
    r.epoch = 4; /* older than beta's */
    ck_assert_int_eq(h->publish_remote(ctx, t, json_object(), &r), KM_ESTALE);
    r.epoch = 5;
    r.kind = KM_TOPIC_EVENT;
    ck_assert_int_eq(h->publish_remote(ctx, t, json_object(), &r), KM_EKIND);

    /* events: replay per host */
    struct km_remote re = {"beta", KM_TOPIC_EVENT, 5, 1, 1000};
    ck_assert_int_eq(h->publish_remote(ctx, e, json_pack("{s:i}", "v", 1), &re), KM_OK);
    re.seq = 2;
    ck_assert_int_eq(h->publish_remote(ctx, e, json_pack("{s:i}", "v", 2), &re), KM_OK);
    ck_assert_int_eq(h->publish_remote(ctx, e, json_pack("{s:i}", "v", 2), &re),
                     KM_ESTALE);
    ck_assert_int_eq(h->replay_host(ctx, e, 1, 0, count_replay, &n), 2);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(h->replay_host(ctx, e, 0, 0, count_replay, &n), 0);
    ck_assert_int_eq(h->replay_host(ctx, e, 9, 0, count_replay, &n), KM_EINVAL);
    ck_assert_int_eq(h->replay_host(ctx, t, 1, 0, count_replay, &n), KM_EKIND);
    ck_assert_int_eq(h->replay_host(ctx, NULL, 1, 0, count_replay, &n), KM_EINVAL);
    ck_assert_int_eq(h->replay_host(ctx, e, 1, 0, NULL, NULL), KM_EINVAL);

    ck_assert_str_eq(h->strerror(KM_ESTALE),
                     "stale: an older epoch, or a sequence number already seen");
    ck_assert_str_eq(h->strerror(KM_EFULL), "too many hosts ([core] max_hosts)");
    unit_done(ctx);
}
END_TEST

static int dummy_route(const struct km_rest_call *call, json_t **reply,
                       const char **detail, void *arg)
{
    return 204;
}

START_TEST(test_host_rest)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    const struct km_rest_call call = {
        "GET",
        "/api/v1/x",
        "a=1&b=x%20y+z&c&d=%zz&e=%00&k%65y=v&long=0123456789&empty=&a=second",
        "",
        0,
        NULL};
    char buf[8], allow[32] = "";
    struct km_route_hit hit = {0};

    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/x", dummy_route, NULL), KM_OK);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/x", dummy_route, NULL),
                     KM_EEXIST);
    ck_assert_int_eq(h->rest_route(ctx, "PUT", "/api/v1/x", dummy_route, NULL), KM_OK);
    ck_assert_int_eq(h->rest_route(ctx, "get", "/api/v1/y", dummy_route, NULL),
                     KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v2/y", dummy_route, NULL),
                     KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/", dummy_route, NULL), KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/a b", dummy_route, NULL),
                     KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/a?b", dummy_route, NULL),
                     KM_EINVAL);
    ck_assert_int_eq(h->rest_route(ctx, "GET", "/api/v1/z", NULL, NULL), KM_EINVAL);
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "HEAD", "/api/v1/x", &hit, NULL, 0), 1);
    ck_assert_ptr_eq(hit.cb, dummy_route);
    ck_assert_ptr_eq(hit.ctx, ctx);
    ck_assert_int_eq(km_plugin_routes_find(core.routes, "POST", "/api/v1/x", NULL, allow,
                                           sizeof allow),
                     2);
    ck_assert_str_eq(allow, "GET, PUT"); /* in registration order */
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "GET", "/api/v1/xx", NULL, NULL, 0), 0);

    ck_assert_str_eq(h->rest_param(&call, "a", buf, sizeof buf), "1"); /* the first */
    ck_assert_str_eq(h->rest_param(&call, "b", buf, sizeof buf), "x y z");
    ck_assert_str_eq(h->rest_param(&call, "c", buf, sizeof buf), "");
    ck_assert_str_eq(h->rest_param(&call, "d", buf, sizeof buf), "%zz");
    ck_assert_ptr_null(h->rest_param(&call, "e", buf, sizeof buf)); /* NUL byte */
    ck_assert_str_eq(h->rest_param(&call, "key", buf, sizeof buf), "v");
    ck_assert_ptr_null(h->rest_param(&call, "long", buf, sizeof buf)); /* too long */
    ck_assert_str_eq(h->rest_param(&call, "empty", buf, sizeof buf), "");
    ck_assert_ptr_null(h->rest_param(&call, "missing", buf, sizeof buf));
    unit_done(ctx);
    /* its routes went with it */
    ck_assert_int_eq(
        km_plugin_routes_find(core.routes, "GET", "/api/v1/x", NULL, NULL, 0), 0);
}
END_TEST

/* HTTP callback state. */
struct answer {
    int n;           /* callbacks */
    int status;      /* last status */
    char error[256]; /* last error, "" when none */
};

static void on_answer(const struct km_http_response *resp, void *arg)
{
    struct answer *a = arg;
    a->n++;
    a->status = resp->status;
    snprintf(a->error, sizeof a->error, "%s", resp->error ? resp->error : "");
}

START_TEST(test_host_http_tracking)
{
    const struct km_host *h = &km_host_iface;
    struct km_ctx *ctx = unit_ctx();
    struct answer refused = {0}, cancelled = {0}, dropped = {0};
    char url[128];
    int port, listener = silent_listener(&port);

    /* Finished: untracked when its callback runs (release must not touch it). */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", closed_port());
    struct km_http_request req = {.url = url, .timeout_ms = 2000};
    ck_assert_ptr_nonnull(h->http_request(ctx, &req, on_answer, &refused));
    ck_assert_int_eq(refused.n, 0); /* never from inside http_request */
    for (int i = 0; i < 40 && refused.n == 0; i++)
        run_loop(0.05);
    ck_assert_int_eq(refused.n, 1);
    ck_assert_int_eq(refused.status, 0);
    ck_assert_str_ne(refused.error, "");

    /* Cancelled by the plugin, and left in flight at release. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    struct km_http_req *r = h->http_request(ctx, &req, on_answer, &cancelled);
    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(h->http_request(ctx, &req, on_answer, &dropped));
    run_loop(0.05);
    ck_assert_uint_eq(km_hc_stats.live, 2);
    h->http_cancel(ctx, r);
    ck_assert_uint_eq(km_hc_stats.live, 1);
    unit_done(ctx);
    ck_assert_uint_eq(km_hc_stats.live, 0);
    run_loop(0.05);
    ck_assert_int_eq(cancelled.n, 0);
    ck_assert_int_eq(dropped.n, 0);

    /* Not started: NULL, and no callback ever. */
    ctx = unit_ctx();
    struct km_http_request bad = {.url = "not a url"};
    ck_assert_ptr_null(h->http_request(ctx, &bad, on_answer, &dropped));
    run_loop(0.02);
    ck_assert_int_eq(dropped.n, 0);
    unit_done(ctx);
    close(listener);
}
END_TEST

START_TEST(test_plugin_http_request_reported)
{
    struct inbox events = {0};

    use_config("[plugin test_good]\ninterval = 10\nurl = http://127.0.0.1:%d/\n",
               closed_port());
    load_all_ok();
    ck_assert_ptr_nonnull(
        km_bus_subscribe(core.bus, "test_events", on_msg, &events, NULL));
    for (int i = 0; i < 40 && events.n == 0; i++)
        run_loop(0.05);
    ck_assert_int_eq(events.n, 1);
    ck_assert_str_eq(json_string_value(json_object_get(events.last, "kind")), "http");
    ck_assert(json_is_string(json_object_get(events.last, "error")));
    ck_assert_uint_eq(km_hc_stats.live, 0);
    json_decref(events.last);
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *load = tcase_create("load");
    TCase *hs = tcase_create("host_stats");
    TCase *host = tcase_create("host");

    tcase_add_checked_fixture(load, setup, teardown);
    tcase_add_test(load, test_good_loads_and_publishes);
    tcase_add_test(load, test_plugin_rest_routes);
    tcase_add_test(load, test_disabled_section_is_off);
    tcase_add_test(load, test_missing_file);
    tcase_add_test(load, test_not_a_shared_object);
    tcase_add_test(load, test_missing_symbol);
    tcase_add_test(load, test_abi_mismatch);
    tcase_add_test(load, test_name_mismatch);
    tcase_add_test(load, test_unknown_key_names_file_and_line);
    tcase_add_test(load, test_bad_value_names_file_and_line);
    tcase_add_test(load, test_init_failure_releases_everything);
    tcase_add_test(load, test_failure_fatal);
    tcase_add_test(load, test_shutdown_in_reverse_order);
    tcase_add_test(load, test_check_config);
    tcase_add_test(load, test_plugin_check);
    tcase_add_test(load, test_plugin_check_passes);
    tcase_add_test(load, test_section_nobody_reads);
    tcase_add_test(load, test_section_of_a_plugin_not_loaded);
    tcase_add_test(load, test_old_descriptor);
    tcase_add_test(load, test_reload_runs_checks);
    tcase_add_test(load, test_reload);
    tcase_add_test(load, test_plugin_http_request_reported);
    tcase_add_test(load, test_collect_false_is_passive);
    tcase_add_test(load, test_collect_true_runs_init);
    tcase_add_test(load, test_collect_false_needs_topics);
    tcase_add_test(load, test_collect_false_topic_taken);
    tcase_add_test(load, test_collect_false_reload);
    tcase_add_test(load, test_edge_of_the_shipped_plugins);
    tcase_add_test(load, test_topics_match_init);
    suite_add_tcase(s, load);

    tcase_add_checked_fixture(hs, setup, teardown);
    tcase_add_test(hs, test_host_stats_publishes);
    tcase_add_test(hs, test_host_stats_values_from_fake_proc);
    tcase_add_test(hs, test_host_stats_survives_bad_proc);
    tcase_add_test(hs, test_host_stats_bad_proc_path);
    suite_add_tcase(s, hs);

    tcase_add_checked_fixture(host, setup, teardown);
    tcase_add_test(host, test_host_timers);
    tcase_add_test(host, test_host_io);
    tcase_add_test(host, test_host_config_and_log);
    tcase_add_test(host, test_host_topics);
    tcase_add_test(host, test_host_hosts);
    tcase_add_test(host, test_host_rest);
    tcase_add_test(host, test_host_http_tracking);
    suite_add_tcase(s, host);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(loader_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
