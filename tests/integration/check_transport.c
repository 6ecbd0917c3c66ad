/*
 * check_transport.c - acceptance tests of the HTTP/WebSocket transport
 * against the real daemon: each test starts `katomon -f` on an ephemeral
 * port ([http] port = 0; the port is read from the "listening on" log
 * line) with the test_pub plugin, tells the plugin what to publish through
 * its FIFO, and talks to the daemon with the C WebSocket client
 * (wsclient.c, libevent + wslay).
 *
 * The daemon must exit 0 on SIGTERM at the end of each test; in the
 * sanitizer build that also means no leak and no memory error.
 *
 * Environment (set by make check): top_builddir (katomon), TEST_PLUGIN_DIR
 * (test_pub.so).
 */
#define _GNU_SOURCE /* memmem */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "wsclient.h"

/* ---- the daemon ----------------------------------------------------------- */

static struct {
    pid_t pid;     /* katomon */
    int port;      /* its HTTP port */
    char dir[256]; /* scratch directory */
    char log[300]; /* its stderr */
    int fifo;      /* test_pub's control FIFO, write end */
    int termed;    /* SIGTERM sent already (by the test) */
} d = {.pid = -1, .fifo = -1};

static struct event_base *base;
/* When set: the [plugin] sections to use instead of test_pub's (no FIFO). */
static const char *plugin_conf;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc(1, (size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    return s;
}

/*
 * Starts katomon with a config made of the defaults below plus extra lines
 * for [http] and [websocket]. Fails the test when it does not come up.
 */
static void daemon_start(const char *http_extra, const char *ws_extra)
{
    const char *top = getenv("top_builddir");
    const char *plugins = getenv("TEST_PLUGIN_DIR");
    char bin[PATH_MAX + 16], conf[300], text[16384], path[PATH_MAX];
    char tmpl[] = "/tmp/check_transport.XXXXXX";

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(d.dir, sizeof d.dir, "%s", tmpl);
    snprintf(bin, sizeof bin, "%s/katomon", top ? top : ".");
    snprintf(d.log, sizeof d.log, "%s/katomon.log", d.dir);
    snprintf(conf, sizeof conf, "%s/katomon.conf", d.dir);

    /* web root with a file, a sub directory, and a symlink out of it */
    snprintf(path, sizeof path, "%s/web", d.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/web/index.html", d.dir);
    write_file(path, "<!doctype html><title>katomon</title>");
    snprintf(path, sizeof path, "%s/web/app.js", d.dir);
    write_file(path, "console.log('dashboard');\n");
    snprintf(path, sizeof path, "%s/web/assets", d.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/web/assets/style.css", d.dir);
    write_file(path, "body{}\n");
    snprintf(path, sizeof path, "%s/secret", d.dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/secret/passwd", d.dir);
    write_file(path, "root:x:0:0:SECRET\n");
    snprintf(path, sizeof path, "%s/web/escape", d.dir);
    ck_assert_int_eq(symlink("../secret", path), 0);

    /* [websocket] defaults for tests, unless the fixture sets the key */
    static const char *const ws_defaults[] = {
        "update_interval = 0.3\n", "ping_interval = 0\n", "idle_timeout = 0\n"};
    char ws[512] = "";
    for (size_t i = 0; i < sizeof ws_defaults / sizeof ws_defaults[0]; i++) {
        size_t kl = strcspn(ws_defaults[i], " ");
        if (!ws_extra || !memmem(ws_extra, strlen(ws_extra), ws_defaults[i], kl))
            strcat(ws, ws_defaults[i]);
    }
    snprintf(text, sizeof text,
             "[core]\nplugin_dir = %s\nstate_dir = %s\nlog_level = info\n"
             "[http]\nbind = 127.0.0.1\nport = 0\nweb_root = %s/web\n%s\n"
             "[websocket]\n%s%s\n"
             "%s",
             plugins ? plugins : "tests/plugins/.libs", d.dir, d.dir,
             http_extra ? http_extra : "", ws, ws_extra ? ws_extra : "", "");
    size_t tl = strlen(text);
    if (plugin_conf)
        snprintf(text + tl, sizeof text - tl, "%s", plugin_conf);
    else
        snprintf(
            text + tl, sizeof text - tl,
            "[plugin test_pub]\ncontrol = %s/ctl\nring = 8\n[plugin test_initfail]\n",
            d.dir);
    write_file(conf, text);

    wsc_raise_nofile();
    d.pid = fork();
    ck_assert_int_ge(d.pid, 0);
    if (d.pid == 0) {
        int fd = open(d.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        /* sanitizer build: a small quarantine, so RSS measures the daemon's
           memory and not ASan's recycling of freed blocks */
        char asan[512];
        const char *prev = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof asan, "%s%squarantine_size_mb=2", prev ? prev : "",
                 prev && *prev ? ":" : "");
        setenv("ASAN_OPTIONS", asan, 1);
        dup2(fd, 2);
        dup2(fd, 1);
        execl(bin, "katomon", "-f", "-c", conf, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    /* the port comes from the one line main.c leaves to the server */
    for (int i = 0; i < 400 && !d.port; i++) {
        char *log = read_file(d.log);
        const char *p = strstr(log, "listening on http://127.0.0.1:");
        if (p)
            d.port = atoi(p + strlen("listening on http://127.0.0.1:"));
        free(log);
        if (!d.port) {
            int st;
            if (waitpid(d.pid, &st, WNOHANG) == d.pid) {
                char *l = read_file(d.log);
                d.pid = -1;
                ck_abort_msg("katomon exited at start: %s", l);
            }
            usleep(50000);
        }
    }
    ck_assert_msg(d.port > 0, "no \"listening on\" line in %s", d.log);
    base = event_base_new();
    if (plugin_conf)
        return;
    snprintf(path, sizeof path, "%s/ctl", d.dir);
    for (int i = 0; i < 200 && d.fifo < 0; i++) {
        d.fifo = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (d.fifo < 0)
            usleep(20000);
    }
    ck_assert_msg(d.fifo >= 0, "cannot open test_pub's FIFO %s", path);
    fcntl(d.fifo, F_SETFL, fcntl(d.fifo, F_GETFL) & ~O_NONBLOCK);
}

/* SIGTERM; the daemon must exit 0 (sanitizer build: no leak, no error). */
static void daemon_stop(void)
{
    int st = 0, code = -1;

    if (base) {
        event_base_free(base);
        base = NULL;
    }
    if (d.fifo >= 0)
        close(d.fifo);
    d.fifo = -1;
    if (d.pid > 0) {
        if (!d.termed) /* a second one could hit the default handler mid-exit */
            kill(d.pid, SIGTERM);
        d.termed = 0;
        for (int i = 0; i < 200; i++) {
            if (waitpid(d.pid, &st, WNOHANG) == d.pid) {
                code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
                break;
            }
            usleep(50000);
        }
        if (code < 0) {
            kill(d.pid, SIGKILL);
            waitpid(d.pid, &st, 0);
        }
    }
    char *log = read_file(d.log);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", d.dir);
    pid_t pid = d.pid;
    d.pid = -1;
    d.port = 0;
    if (pid > 0 && code != 0) {
        fprintf(stderr, "---- katomon log ----\n%s\n", log);
        free(log);
        ck_abort_msg("katomon exited with %d on SIGTERM", code);
    }
    free(log);
}

/* One command line to test_pub. */
static void __attribute__((format(printf, 1, 2))) cmd(const char *fmt, ...)
{
    static char line[60000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof line - 1);
    line[n++] = '\n';
    /* blocking (see daemon_start): a long line may take more than one write */
    for (int off = 0; off < n;) {
        ssize_t w = write(d.fifo, line + off, (size_t)(n - off));
        ck_assert_msg(w > 0, "FIFO write: %s", strerror(errno));
        off += (int)w;
    }
}

/* ---- client helpers ---------------------------------------------------------- */

static struct wsc *ws_open_path(const char *path, const char *headers)
{
    struct wsc *c = wsc_connect(base, d.port, path, headers);
    int st = wsc_wait_open(c, 10000);
    ck_assert_msg(st == 101, "handshake: %d %s", st, wsc_response(c));
    return c;
}

static struct wsc *ws_open(void)
{
    return ws_open_path("/ws", NULL);
}

static json_t *recv_type(struct wsc *c, const char *type, int ms)
{
    struct wsc_msg *m = wsc_next_type(c, type, ms);
    if (!m)
        return NULL;
    json_t *j = json_loads(m->data, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %s", m->data);
    wsc_msg_free(m);
    return j;
}

static json_t *must_recv(struct wsc *c, const char *type)
{
    json_t *j = recv_type(c, type, 5000);
    ck_assert_msg(j != NULL, "no %s message", type);
    return j;
}

static json_t *recv_any(struct wsc *c, int ms)
{
    struct wsc_msg *m = wsc_next(c, ms);
    if (!m)
        return NULL;
    json_t *j = json_loads(m->data, 0, NULL);
    wsc_msg_free(m);
    return j;
}

static void drain(struct wsc *c, int ms)
{
    json_t *j;
    while ((j = recv_any(c, ms)))
        json_decref(j);
}

static const char *str(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static json_int_t num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Checks that o has exactly these keys (NULL-terminated). */
static void keys_are(json_t *o, ...)
{
    va_list ap;
    size_t n = 0;
    const char *k;
    va_start(ap, o);
    while ((k = va_arg(ap, const char *))) {
        ck_assert_msg(json_object_get(o, k) != NULL, "missing key %s", k);
        n++;
    }
    va_end(ap);
    ck_assert_int_eq(json_object_size(o), n);
}

static void is_utc_time(const char *s)
{
    int y, mo, da, h, mi, se, us;
    char z = 0;
    ck_assert_ptr_nonnull(s);
    ck_assert_msg(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%6d%c", &y, &mo, &da, &h, &mi, &se,
                         &us, &z) == 8 &&
                      z == 'Z' && strlen(s) == 27,
                  "not UTC ISO 8601 with Z: %s", s);
}

static void subscribe(struct wsc *c, const char *names, const char *since)
{
    char buf[1024];
    snprintf(
        buf, sizeof buf,
        "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\",\"subscriptions\":%s%s%s}",
        names, since ? ",\"since\":" : "", since ? since : "");
    wsc_send_text(c, buf);
}

static int expect_close(struct wsc *c, const char **reason)
{
    int code = -1;
    const char *r = NULL;
    int rc = wsc_wait_close(c, 5000, &code, &r);
    ck_assert_msg(rc == 1, "no close frame (rc %d)", rc);
    if (reason)
        *reason = r;
    return code;
}

static int http_get(const char *path, const char *headers, char **resp, const char **body)
{
    return wsc_get(base, d.port, path, headers, resp, body, 5000);
}

static json_t *rest_json(const char *path, const char *headers, int want)
{
    char *resp;
    const char *body;
    int st = http_get(path, headers, &resp, &body);
    ck_assert_msg(st == want, "%s: %d %s", path, st, resp);
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_msg(j != NULL, "%s: not JSON: %s", path, body);
    free(resp);
    return j;
}

static json_t *ws_stats(void)
{
    json_t *j = rest_json("/api/v1/ws/subscriptions", NULL, 200);
    return j;
}

static json_int_t stat_of(json_t *subs, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(subs, "stats"), k));
}

/* Publishes the dashboard's state topics with known values. */
static void publish_state(void)
{
    cmd("pub metrics {\"performance\":{\"error_rate\":0.01},\"requests_total\":42}");
    cmd("pub containers "
        "{\"containers\":[{\"name\":\"kato\",\"status\":\"running\",\"cpu\":12.34}],"
        "\"aggregated\":{\"total_cpu_percent\":15.2,\"container_count\":1}}");
    cmd("pub sessions {\"active_count\":3,\"total_count\":0}");
    cmd("pub host {\"load1\":0.5}");
}

/* Waits for a realtime_update with n data keys. */
static json_t *realtime_with(struct wsc *c, size_t n)
{
    for (int i = 0; i < 40; i++) {
        json_t *j = must_recv(c, "realtime_update");
        if (json_object_size(json_object_get(j, "data")) == n)
            return j;
        json_decref(j);
    }
    ck_abort_msg("no realtime_update with %zu topics", n);
    return NULL;
}

/* ---- tests: handshake ------------------------------------------------------ */

static void fixture_default(void)
{
    daemon_start(NULL, NULL);
}

START_TEST(test_handshake)
{
    static const char *const good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    static const struct {
        const char *req;
        int status;
        const char *why;
    } bad[] = {
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n",
         400, "Sec-WebSocket-Key"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
         400, "Sec-WebSocket-Key"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "8\r\n\r\n",
         400, "Version"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "13\r\n\r\n",
         400, "Upgrade: websocket"},
        {"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "13\r\n\r\n",
         400, "Connection: Upgrade"},
        {"POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
         "Content-Length: 0\r\n\r\n",
         400, "GET"},
        {"GET /ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "13\r\n\r\n",
         400, "HTTP/1.1"},
        {"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
         "13\r\n\r\n",
         400, "only supported on /ws"},
    };
    char req[512];

    /* good: the RFC's own example key, checked by the client */
    snprintf(req, sizeof req,
             "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n",
             d.port, good_key);
    struct wsc *c = wsc_connect_raw(base, d.port, req, good_key);
    ck_assert_int_eq(wsc_wait_open(c, 5000), 101);
    wsc_send_text(c, "ping");
    json_decref(must_recv(c, "heartbeat"));
    wsc_free(c);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = wsc_connect_raw(base, d.port, bad[i].req, NULL);
        int st = wsc_wait_open(c, 5000);
        const char *resp = wsc_response(c);
        ck_assert_msg(st == bad[i].status, "case %zu: %d %s", i, st, resp);
        ck_assert_msg(strstr(resp, bad[i].why), "case %zu: no reason in %s", i, resp);
        ck_assert_msg(strstr(resp, "{\"detail\":"), "case %zu: %s", i, resp);
        if (strstr(bad[i].req, "Version: 8"))
            ck_assert(strstr(resp, "Sec-WebSocket-Version: 13\r\n"));
        wsc_free(c);
    }
}
END_TEST

/* ---- tests: protocol --------------------------------------------------------- */

/* A client that never subscribes gets every topic, untrimmed. */
START_TEST(test_no_subscribe_gets_everything)
{
    struct wsc *c = ws_open();
    json_t *j;

    publish_state();
    /* the test's four state topics and the core's own "hosts" */
    j = realtime_with(c, 5);
    json_t *data = json_object_get(j, "data");
    ck_assert_int_eq(num(json_object_get(data, "metrics"), "requests_total"), 42);
    ck_assert_int_eq(num(json_object_get(data, "sessions"), "active_count"), 3);
    ck_assert_ptr_nonnull(json_object_get(data, "containers"));
    ck_assert_ptr_nonnull(json_object_get(data, "host"));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(data, "hosts"), "hosts"));
    json_decref(j);

    cmd("pub session_events {\"event_type\":\"session_created\",\"timestamp\":"
        "\"2026-01-01T00:00:00.000000Z\",\"data\":{\"current_count\":5,\"previous_"
        "count\":3,"
        "\"delta\":2,\"time_since_last_event\":42.7}}");
    json_decref(must_recv(c, "session_event"));
    cmd("pub system_alerts "
        "{\"id\":\"alert_1\",\"timestamp\":\"2026-01-01T00:00:00.000000Z\","
        "\"alerts\":[{\"level\":\"warning\",\"type\":\"high_cpu\",\"message\":\"m\","
        "\"value\":83.4,\"threshold\":80.0}]}");
    json_decref(must_recv(c, "system_alert"));
    cmd("pub test_events {\"kind\":\"x\"}");
    json_decref(must_recv(c, "event"));
    wsc_free(c);
}
END_TEST

/* The exact shapes of kato-dashboard-protocol.md to a compatible client; the
   same events with katomon's seq (and alert state) to a katomon/1 client. */
START_TEST(test_message_shapes)
{
    struct wsc *c = ws_open();
    struct wsc *k = ws_open();
    json_t *j;

    subscribe(k, "[\"session_events\",\"system_alerts\",\"test_events\"]", NULL);
    json_decref(must_recv(k, "subscription_ack"));
    publish_state();
    j = realtime_with(c, 5); /* four state topics and the core's "hosts" */
    keys_are(j, "type", "timestamp", "data", NULL);
    is_utc_time(str(j, "timestamp"));
    json_t *ct = json_object_get(json_object_get(j, "data"), "containers");
    json_t *c0 = json_array_get(json_object_get(ct, "containers"), 0);
    ck_assert_str_eq(str(c0, "name"), "kato");
    ck_assert(json_real_value(json_object_get(c0, "cpu")) == 12.34);
    json_decref(j);

    cmd("pub session_events {\"event_type\":\"session_destroyed\",\"timestamp\":"
        "\"2026-01-01T00:00:00.000000Z\",\"data\":{\"current_count\":2,\"previous_"
        "count\":3,"
        "\"delta\":-1,\"time_since_last_event\":1.5}}");
    j = must_recv(c, "session_event");
    keys_are(j, "type", "event_type", "timestamp", "data", NULL);
    ck_assert_str_eq(str(j, "event_type"), "session_destroyed");
    ck_assert_int_eq(num(json_object_get(j, "data"), "delta"), -1);
    /* key order as the original sends it */
    const char *first = json_object_iter_key(json_object_iter(j));
    ck_assert_str_eq(first, "type");
    json_decref(j);
    j = must_recv(k, "session_event");
    keys_are(j, "type", "event_type", "timestamp", "data", "seq", NULL);
    ck_assert_int_eq(num(j, "seq"), 1);
    json_decref(j);

    cmd("pub system_alerts {\"id\":\"alert_1697207400123\",\"timestamp\":"
        "\"2026-01-01T00:00:00.000000Z\",\"alerts\":[{\"level\":\"error\",\"type\":"
        "\"container_down\",\"message\":\"Container 'kato-redis' is exited\","
        "\"container_name\":\"kato-redis\",\"status\":\"exited\"}]}");
    j = must_recv(c, "system_alert");
    keys_are(j, "type", "id", "timestamp", "alerts", NULL);
    ck_assert_str_eq(str(j, "id"), "alert_1697207400123");
    ck_assert_str_eq(str(json_array_get(json_object_get(j, "alerts"), 0), "type"),
                     "container_down");
    json_decref(j);
    j = must_recv(k, "system_alert");
    keys_are(j, "type", "id", "timestamp", "alerts", "seq", NULL);
    ck_assert_int_eq(num(j, "seq"), 1);
    json_decref(j);

    /* a resolved notice: "info" without katomon's state to the original
       frontend (as "error" it shows a red ERROR toast), after the firing
       items (the frontend colours the toast by the first); as is to
       katomon/1 */
    cmd("pub system_alerts {\"id\":\"alert_2\",\"timestamp\":"
        "\"2026-01-01T00:00:01.000000Z\",\"alerts\":[{\"level\":\"error\",\"type\":"
        "\"container_down\",\"message\":\"Container 'kato-redis' is exited "
        "(resolved)\",\"state\":\"resolved\"},{\"level\":\"warning\",\"type\":"
        "\"high_cpu\",\"message\":\"m\",\"state\":\"firing\"}]}");
    j = must_recv(c, "system_alert");
    json_t *a0 = json_array_get(json_object_get(j, "alerts"), 0);
    json_t *a1 = json_array_get(json_object_get(j, "alerts"), 1);
    keys_are(a0, "level", "type", "message", NULL);
    ck_assert_str_eq(str(a0, "level"), "warning");
    keys_are(a1, "level", "type", "message", NULL);
    ck_assert_str_eq(str(a1, "level"), "info");
    ck_assert(strstr(str(a1, "message"), "resolved"));
    json_decref(j);
    j = must_recv(k, "system_alert");
    a0 = json_array_get(json_object_get(j, "alerts"), 0);
    ck_assert_str_eq(str(a0, "level"), "error");
    ck_assert_str_eq(str(a0, "state"), "resolved");
    ck_assert_int_eq(num(j, "seq"), 2);
    json_decref(j);

    cmd("pub test_events {\"kind\":\"x\",\"n\":7}");
    j = must_recv(c, "event");
    keys_are(j, "type", "topic", "seq", "timestamp", "data", NULL);
    ck_assert_str_eq(str(j, "topic"), "test_events");
    ck_assert_int_eq(num(json_object_get(j, "data"), "n"), 7);
    is_utc_time(str(j, "timestamp"));
    json_decref(j);
    json_decref(must_recv(k, "event"));
    wsc_free(k);

    wsc_send_text(c, "ping");
    j = must_recv(c, "heartbeat");
    keys_are(j, "type", "timestamp", NULL);
    is_utc_time(str(j, "timestamp"));
    json_decref(j);
    wsc_send_text(c, "{\"type\":\"ping\"}");
    json_decref(must_recv(c, "heartbeat"));
    wsc_free(c);
}
END_TEST

START_TEST(test_subscribe_ack_trim)
{
    struct wsc *c = ws_open();
    json_t *j;

    publish_state();
    subscribe(c, "[\"system_alerts\",\"metrics\"]", NULL);
    j = must_recv(c, "subscription_ack");
    ck_assert_int_eq(json_array_size(json_object_get(j, "subscriptions")), 2);
    ck_assert_str_eq(
        json_string_value(json_array_get(json_object_get(j, "subscriptions"), 0)),
        "metrics");
    ck_assert_int_eq(json_array_size(json_object_get(j, "unknown")), 0);
    /* this run's epoch, and where each subscribed event topic stands */
    ck_assert(json_integer_value(json_object_get(j, "epoch")) > 1700000000000000LL);
    json_t *seqs = json_object_get(j, "last_seq");
    ck_assert(json_is_integer(json_object_get(seqs, "system_alerts")));
    ck_assert_ptr_null(json_object_get(seqs, "metrics")); /* state topic: no seq */
    json_decref(j);
    /* trimmed to metrics */
    for (int i = 0; i < 3; i++) {
        j = must_recv(c, "realtime_update");
        json_t *data = json_object_get(j, "data");
        ck_assert_int_eq(json_object_size(data), 1);
        ck_assert_ptr_nonnull(json_object_get(data, "metrics"));
        json_decref(j);
    }
    /* session_events not subscribed: not delivered; system_alerts is */
    cmd("pub session_events "
        "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");
    cmd("pub system_alerts {\"id\":\"a\",\"timestamp\":\"t\",\"alerts\":[]}");
    for (;;) {
        j = recv_any(c, 3000);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_ne(str(j, "type"), "session_event");
        int done = strcmp(str(j, "type"), "system_alert") == 0;
        json_decref(j);
        if (done)
            break;
    }

    /* subscribe replaces the set: now only host */
    subscribe(c, "[\"host\"]", NULL);
    json_decref(must_recv(c, "subscription_ack"));
    cmd("pub system_alerts {\"id\":\"b\",\"timestamp\":\"t\",\"alerts\":[]}");
    for (int i = 0; i < 3; i++) {
        j = must_recv(c, "realtime_update");
        json_t *data = json_object_get(j, "data");
        ck_assert_int_eq(json_object_size(data), 1);
        ck_assert_ptr_nonnull(json_object_get(data, "host"));
        json_decref(j);
    }
    /* every topic on the bus is subscribable, and nothing else came */
    ck_assert_ptr_null(recv_type(c, "system_alert", 500));

    /* an empty set: nothing but replies */
    subscribe(c, "[]", NULL);
    json_decref(must_recv(c, "subscription_ack"));
    drain(c, 100);
    ck_assert_ptr_null(recv_type(c, "realtime_update", 1000));
    wsc_free(c);
}
END_TEST

START_TEST(test_error_replies)
{
    struct wsc *c = ws_open();
    json_t *j;

    subscribe(c, "[\"metrics\",\"no_such_topic\"]", NULL);
    j = must_recv(c, "subscription_ack");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "unknown"), 0)),
                     "no_such_topic");
    json_decref(j);
    j = must_recv(c, "error");
    keys_are(j, "type", "error", "detail", "topics", NULL);
    ck_assert_str_eq(str(j, "error"), "unknown_topic");
    json_decref(j);

    wsc_send_text(c, "{not json");
    j = must_recv(c, "error");
    ck_assert_str_eq(str(j, "error"), "bad_json");
    ck_assert(json_is_string(json_object_get(j, "detail")));
    json_decref(j);
    wsc_send_text(c, "{\"type\":\"unsubscribe_all\"}");
    j = must_recv(c, "error");
    ck_assert_str_eq(str(j, "error"), "unknown_type");
    json_decref(j);
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/"
                     "1\",\"subscriptions\":\"metrics\"}");
    j = must_recv(c, "error");
    ck_assert_str_eq(str(j, "error"), "bad_request");
    json_decref(j);
    /* binary frames carry requests too */
    wsc_send_frame(c, 1, 0, 2, "ping", 4);
    json_decref(must_recv(c, "heartbeat"));
    /* the connection stayed open */
    wsc_send_text(c, "ping");
    json_decref(must_recv(c, "heartbeat"));
    ck_assert(!wsc_eof(c));

    /* ...unless the client floods */
    for (int i = 0; i < 40; i++)
        wsc_send_text(c, "{oops");
    const char *reason;
    ck_assert_int_eq(expect_close(c, &reason), 1008);
    ck_assert(strstr(reason, "too many"));
    wsc_free(c);
}
END_TEST

START_TEST(test_since_replay)
{
    struct wsc *c;
    json_t *j;

    for (int i = 1; i <= 5; i++)
        cmd("pub session_events {\"event_type\":\"session_created\",\"timestamp\":\"t\","
            "\"data\":{\"n\":%d}}",
            i);
    /* wait until all 5 are on the bus */
    c = ws_open();
    for (int i = 0; i < 100; i++) {
        json_t *t = rest_json("/api/v1/topics", NULL, 200);
        json_t *topic;
        size_t k;
        json_int_t last = 0;
        json_array_foreach(json_object_get(t, "topics"), k,
                           topic) if (strcmp(str(topic, "name"), "session_events") == 0)
            last = num(topic, "last_seq");
        json_decref(t);
        if (last == 5)
            break;
        usleep(50000);
    }
    subscribe(c, "[\"session_events\"]", "{\"session_events\":2}");
    json_decref(must_recv(c, "subscription_ack"));
    for (int want = 3; want <= 5; want++) {
        j = recv_any(c, 3000);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(str(j, "type"), "session_event");
        ck_assert_int_eq(num(j, "seq"), want);
        ck_assert_int_eq(num(json_object_get(j, "data"), "n"), want);
        json_decref(j);
    }
    /* live ones continue the sequence */
    cmd("pub session_events {\"event_type\":\"session_destroyed\",\"timestamp\":\"t\","
        "\"data\":{\"n\":6}}");
    j = must_recv(c, "session_event");
    ck_assert_int_eq(num(j, "seq"), 6);
    json_decref(j);
    wsc_free(c);

    /* the edge: test_events keeps 8; 20 published; since 3 lost 4..12 */
    cmd("burst test_events 20 10");
    c = ws_open();
    for (int i = 0; i < 100; i++) {
        json_t *t = rest_json("/api/v1/topics", NULL, 200);
        json_t *topic;
        size_t k;
        json_int_t last = 0;
        json_array_foreach(json_object_get(t, "topics"), k,
                           topic) if (strcmp(str(topic, "name"), "test_events") == 0)
            last = num(topic, "last_seq");
        json_decref(t);
        if (last == 20)
            break;
        usleep(50000);
    }
    subscribe(c, "[\"test_events\"]", "{\"test_events\":3}");
    json_decref(must_recv(c, "subscription_ack"));
    j = recv_any(c, 3000);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(str(j, "type"), "replay_gap");
    ck_assert_str_eq(str(j, "topic"), "test_events");
    ck_assert_int_eq(num(j, "requested_since"), 3);
    ck_assert_int_eq(num(j, "oldest_available"), 13);
    ck_assert_int_eq(num(j, "last_seq"), 20);
    ck_assert_int_eq(num(j, "missed"), 9);
    json_decref(j);
    for (int want = 13; want <= 20; want++) {
        j = recv_any(c, 3000);
        ck_assert_ptr_nonnull(j);
        ck_assert_str_eq(str(j, "type"), "event");
        ck_assert_int_eq(num(j, "seq"), want);
        json_decref(j);
    }
    /* exactly at the ring's edge: since 12 -> 13..20, no gap */
    subscribe(c, "[\"test_events\"]", "{\"test_events\":12}");
    json_decref(must_recv(c, "subscription_ack"));
    j = recv_any(c, 3000);
    ck_assert_str_eq(str(j, "type"), "event");
    ck_assert_int_eq(num(j, "seq"), 13);
    json_decref(j);
    drain(c, 300);
    /* up to date: nothing */
    subscribe(c, "[\"test_events\"]", "{\"test_events\":20}");
    json_decref(must_recv(c, "subscription_ack"));
    ck_assert_ptr_null(recv_any(c, 500));
    /* ahead (daemon restarted): said so */
    subscribe(c, "[\"test_events\"]", "{\"test_events\":99}");
    json_decref(must_recv(c, "subscription_ack"));
    j = must_recv(c, "replay_gap");
    ck_assert_str_eq(str(j, "reason"), "since_ahead");
    ck_assert_int_eq(num(j, "last_seq"), 20);
    json_decref(j);
    /* since on a state topic, or a topic not subscribed: error */
    subscribe(c, "[\"metrics\"]", "{\"metrics\":1}");
    json_decref(must_recv(c, "subscription_ack"));
    j = must_recv(c, "error");
    ck_assert_str_eq(str(j, "error"), "bad_since");
    json_decref(j);
    subscribe(c, "[\"metrics\"]", "{\"test_events\":1}");
    json_decref(must_recv(c, "subscription_ack"));
    j = must_recv(c, "error");
    ck_assert_str_eq(str(j, "error"), "bad_since");
    json_decref(j);
    wsc_free(c);
}
END_TEST

/* SIGTERM: every client is told 1001 going away, and the daemon exits 0
   (checked by the fixture's teardown). */
START_TEST(test_shutdown_going_away)
{
    struct wsc *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = ws_open();
    subscribe(c[1], "[\"metrics\"]", NULL);
    json_decref(must_recv(c[1], "subscription_ack"));
    kill(d.pid, SIGTERM);
    d.termed = 1;
    for (int i = 0; i < 3; i++) {
        const char *reason;
        ck_assert_int_eq(expect_close(c[i], &reason), 1001);
        wsc_free(c[i]);
    }
}
END_TEST

/* ---- tests: frames and close codes ---------------------------------------------- */

static void fixture_small_messages(void)
{
    daemon_start(NULL, "max_message_bytes = 4k\n");
}

START_TEST(test_bad_frames)
{
    static const unsigned char nonminimal[] = {0x81, 0xFE, 0x00, 0x05, 1, 2, 3, 4};
    char big[200];
    static char huge[5000];
    memset(big, 'a', sizeof big);
    memset(huge, 'a', sizeof huge);
    struct wsc *c;
    const char *reason;

#define CASE(send, want)                                                                 \
    do {                                                                                 \
        c = ws_open();                                                                   \
        send;                                                                            \
        int code_ = expect_close(c, &reason);                                            \
        ck_assert_msg(code_ == (want), "%s: got %d (%s)", #send, code_, reason);         \
        wsc_free(c);                                                                     \
    } while (0)

    CASE(wsc_send_frame(c, 1, 1, 1, "x", 1), 1002);     /* RSV bit */
    CASE(wsc_send_raw(c, "\x81\x01x", 3), 1002);        /* not masked */
    CASE(wsc_send_frame(c, 1, 0, 0x3, "x", 1), 1002);   /* reserved opcode */
    CASE(wsc_send_frame(c, 1, 0, 0x0, "x", 1), 1002);   /* stray continuation */
    CASE(wsc_send_frame(c, 1, 0, 0x9, big, 126), 1002); /* control > 125 */
    CASE(wsc_send_frame(c, 0, 0, 0x9, "x", 1), 1002);   /* fragmented ping */
    CASE((wsc_send_frame(c, 0, 0, 1, "a", 1), wsc_send_frame(c, 1, 0, 1, "b", 1)), 1002);
    CASE(wsc_send_raw(c, nonminimal, sizeof nonminimal), 1002); /* non-minimal length */
    CASE(wsc_send_frame(c, 1, 0, 0x8, "\x03", 1), 1002);        /* close of 1 byte */
    CASE(wsc_send_frame(c, 1, 0, 1, "\xc3\x28", 2), 1007);      /* invalid UTF-8 */
    CASE((wsc_send_frame(c, 0, 0, 1, "\xe2\x82", 2),
          wsc_send_frame(c, 1, 0, 0, "\x28", 1)),
         1007); /* across fragments */
    CASE(wsc_send_frame(c, 1, 0, 1, huge, sizeof huge),
         1009); /* over max_message_bytes */
    CASE((wsc_send_frame(c, 0, 0, 1, huge, 3000), wsc_send_frame(c, 1, 0, 0, huge, 3000)),
         1009); /* fragments add up */
#undef CASE
    /* our 1009 says why */
    c = ws_open();
    wsc_send_frame(c, 1, 0, 1, huge, sizeof huge);
    ck_assert_int_eq(expect_close(c, &reason), 1009);
    ck_assert(strstr(reason, "too big"));
    wsc_free(c);

    /* fragmented and control-interleaved messages are fine */
    c = ws_open();
    wsc_send_frame(c, 0, 0, 1, "pi", 2);
    wsc_send_frame(c, 1, 0, 0x9, "hello", 5); /* ping in between */
    wsc_send_frame(c, 1, 0, 0, "ng", 2);
    json_decref(must_recv(c, "heartbeat"));
    /* a ping alone in its read: the pong is sent while the frame reader is
       between frames (it once freed its context there) */
    for (int i = 0; i < 3; i++) {
        wsc_send_frame(c, 1, 0, 0x9, "alone", 5);
        wsc_run_for(base, 50);
    }
    wsc_send_text(c, "ping");
    json_decref(must_recv(c, "heartbeat"));
    /* a clean close is echoed */
    wsc_send_frame(c, 1, 0, 0x8,
                   "\x03\xe8"
                   "bye",
                   5);
    ck_assert_int_eq(expect_close(c, NULL), 1000);
    wsc_free(c);

    /* the daemon counted them */
    json_t *s = ws_stats();
    ck_assert_int_ge(stat_of(s, "closed_protocol"), 14);
    json_decref(s);
}
END_TEST

static void fixture_pings(void)
{
    daemon_start(NULL, "ping_interval = 0.2\nidle_timeout = 1\n");
}

/* Server pings reach live clients (which answer and stay), and a peer that
   answers nothing is closed once idle_timeout passes. */
START_TEST(test_ping_idle)
{
    struct wsc *live = ws_open();
    struct wsc *dead = ws_open();

    wsc_mute(dead, 1);
    wsc_run_for(base, 2500);
    ck_assert_uint_ge(wsc_pings(live), 3);
    ck_assert(!wsc_eof(live));
    wsc_send_text(live, "ping");
    json_decref(must_recv(live, "heartbeat"));
    const char *reason;
    ck_assert_int_eq(expect_close(dead, &reason), 1001);
    ck_assert(strstr(reason, "idle"));
    wsc_free(live);
    wsc_free(dead);
}
END_TEST

/* ---- tests: security and limits -------------------------------------------------- */

static void fixture_secure(void)
{
    daemon_start("auth_token = s3cret\nallowed_origins = http://dash.example, "
                 "https://ops.example:8443\n",
                 NULL);
}

START_TEST(test_origin)
{
    char h[256];
    struct wsc *c;

    c = wsc_connect(base, d.port, "/ws?token=s3cret", "Origin: http://evil.example\r\n");
    ck_assert_int_eq(wsc_wait_open(c, 5000), 403);
    ck_assert(strstr(wsc_response(c), "allowed_origins"));
    wsc_free(c);
    c = wsc_connect(base, d.port, "/ws?token=s3cret", "Origin: null\r\n");
    ck_assert_int_eq(wsc_wait_open(c, 5000), 403);
    wsc_free(c);
    /* same host as Host: */
    snprintf(h, sizeof h, "Origin: http://127.0.0.1:%d\r\n", d.port);
    wsc_free(ws_open_path("/ws?token=s3cret", h));
    /* listed */
    wsc_free(ws_open_path("/ws?token=s3cret", "Origin: http://dash.example\r\n"));
    wsc_free(ws_open_path("/ws?token=s3cret", "Origin: https://ops.example:8443\r\n"));
    /* no Origin: not a browser */
    wsc_free(ws_open_path("/ws?token=s3cret", NULL));
}
END_TEST

START_TEST(test_token)
{
    struct wsc *c;
    char *resp;
    const char *body;

    c = wsc_connect(base, d.port, "/ws", NULL);
    ck_assert_int_eq(wsc_wait_open(c, 5000), 401);
    wsc_free(c);
    c = wsc_connect(base, d.port, "/ws?token=wrong", NULL);
    ck_assert_int_eq(wsc_wait_open(c, 5000), 401);
    wsc_free(c);
    wsc_free(ws_open_path("/ws?token=s3cret", NULL));
    wsc_free(ws_open_path("/ws", "Authorization: Bearer s3cret\r\n"));

    ck_assert_int_eq(http_get("/api/v1/topics", NULL, &resp, &body), 401);
    ck_assert(strstr(body, "\"detail\""));
    ck_assert(strstr(resp, "WWW-Authenticate: Bearer"));
    free(resp);
    ck_assert_int_eq(
        http_get("/api/v1/topics", "Authorization: Bearer s3crex\r\n", &resp, &body),
        401);
    free(resp);
    ck_assert_int_eq(
        http_get("/api/v1/topics", "Authorization: Bearer s3cret\r\n", &resp, &body),
        200);
    free(resp);
    ck_assert_int_eq(http_get("/api/v1/topics?token=s3cret", NULL, &resp, &body), 200);
    free(resp);
    /* liveness probes and the page itself need no token */
    ck_assert_int_eq(http_get("/health", NULL, &resp, &body), 200);
    free(resp);
    ck_assert_int_eq(http_get("/", NULL, &resp, &body), 200);
    free(resp);

    /* CORS for allowed origins only */
    ck_assert_int_eq(http_get("/api/v1/health?token=s3cret",
                              "Origin: http://dash.example\r\n", &resp, &body),
                     200);
    ck_assert(strstr(resp, "Access-Control-Allow-Origin: http://dash.example\r\n"));
    free(resp);
    ck_assert_int_eq(http_get("/api/v1/health?token=s3cret",
                              "Origin: http://evil.example\r\n", &resp, &body),
                     200);
    ck_assert(!strstr(resp, "Access-Control-Allow-Origin"));
    free(resp);
    char req[512];
    snprintf(
        req, sizeof req,
        "OPTIONS /api/v1/system/metrics HTTP/1.1\r\nHost: x\r\nOrigin: "
        "http://dash.example\r\nAccess-Control-Request-Method: GET\r\n"
        "Access-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 204);
    ck_assert(strstr(resp, "Access-Control-Allow-Headers: Authorization"));
    free(resp);
}
END_TEST

/* SIGHUP takes a new auth_token and allowed_origins at once. */
START_TEST(test_reload)
{
    char conf[300], *text, *p, *resp;
    const char *body;

    snprintf(conf, sizeof conf, "%s/katomon.conf", d.dir);
    text = read_file(conf);
    p = strstr(text, "s3cret");
    ck_assert_ptr_nonnull(p);
    memcpy(p, "n3wtok", 6);
    p = strstr(text, "http://dash.example");
    memcpy(p, "http://new0.example", 19);
    write_file(conf, text);
    free(text);
    kill(d.pid, SIGHUP);
    for (int i = 0; i < 100; i++) {
        char *log = read_file(d.log);
        int done = strstr(log, "reloaded ") != NULL;
        free(log);
        if (done)
            break;
        usleep(50000);
    }
    ck_assert_int_eq(http_get("/api/v1/topics?token=s3cret", NULL, &resp, &body), 401);
    free(resp);
    ck_assert_int_eq(http_get("/api/v1/topics?token=n3wtok", NULL, &resp, &body), 200);
    free(resp);
    struct wsc *c =
        wsc_connect(base, d.port, "/ws?token=n3wtok", "Origin: http://dash.example\r\n");
    ck_assert_int_eq(wsc_wait_open(c, 5000), 403);
    wsc_free(c);
    wsc_free(ws_open_path("/ws?token=n3wtok", "Origin: http://new0.example\r\n"));
}
END_TEST

static void fixture_routes(void)
{
    plugin_conf = "[plugin test_good]\ninterval = 60\n";
    daemon_start("auth_token = tok\n", NULL);
    plugin_conf = NULL;
}

/* Plugin routes (km_host.rest_route, kept by the loader) are served behind
   the same token, with the plugin's status, and 405 for other methods. */
START_TEST(test_plugin_routes)
{
    char *resp, req[512];
    const char *body;

    ck_assert_int_eq(http_get("/api/v1/test/echo?msg=hi", NULL, &resp, &body), 401);
    free(resp);
    ck_assert_int_eq(
        http_get("/api/v1/test/echo?msg=hi%20there&token=tok", NULL, &resp, &body), 200);
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_str_eq(str(j, "msg"), "hi there");
    ck_assert_str_eq(str(j, "greeting"), "hello");
    json_decref(j);
    free(resp);
    snprintf(
        req, sizeof req,
        "POST /api/v1/test/broken HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
        "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n"
        "\r\n{}");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 500);
    ck_assert(strstr(body, "\"detail\""));
    free(resp);
    snprintf(req, sizeof req,
             "DELETE /api/v1/test/echo?token=tok HTTP/1.1\r\nHost: x\r\n"
             "Connection: close\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 405);
    ck_assert(strstr(resp, "Allow: GET"));
    free(resp);
    snprintf(req, sizeof req,
             "HEAD /api/v1/test/echo?token=tok HTTP/1.1\r\nHost: x\r\n"
             "Connection: close\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 200);
    ck_assert_str_eq(body, "");
    free(resp);
}
END_TEST

static void fixture_limits(void)
{
    daemon_start("max_connections = 3\nmax_request_bytes = 2k\n", NULL);
}

START_TEST(test_limits)
{
    struct wsc *c[3];
    char *resp;
    const char *body;
    char req[4096], hdr[3000];

    /* request size */
    memset(hdr, 'a', sizeof hdr - 1);
    hdr[sizeof hdr - 1] = '\0';
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", hdr);
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 431);
    free(resp);
    snprintf(req, sizeof req,
             "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 413);
    free(resp);
    /* methods */
    snprintf(req, sizeof req,
             "DELETE /api/v1/topics HTTP/1.1\r\nHost: x\r\n"
             "Connection: close\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 405);
    ck_assert(strstr(resp, "Allow: GET, HEAD"));
    free(resp);
    /* garbage */
    ck_assert_int_eq(wsc_http(base, d.port, "HELLO\r\n\r\n", &resp, &body, 5000), 400);
    free(resp);

    /* max_connections: the 4th is told 503 */
    for (int i = 0; i < 3; i++)
        c[i] = ws_open();
    ck_assert_int_eq(http_get("/api/v1/health", NULL, &resp, &body), 503);
    ck_assert(strstr(body, "max_connections"));
    free(resp);
    wsc_free(c[0]);
    /* a slot is free again once the daemon saw the close */
    int st = 0;
    for (int i = 0; i < 50 && st != 200; i++) {
        st = http_get("/api/v1/health", NULL, &resp, &body);
        free(resp);
        if (st != 200)
            wsc_run_for(base, 100);
    }
    ck_assert_int_eq(st, 200);
    wsc_free(c[1]);
    wsc_free(c[2]);
}
END_TEST

START_TEST(test_path_traversal)
{
    static const char *const forms[] = {
        "/../secret/passwd",
        "/..%2fsecret/passwd",
        "/%2e%2e/secret/passwd",
        "/%2E%2E%2Fsecret%2Fpasswd",
        "/assets/../../secret/passwd",
        "/./../secret/passwd",
        "/assets/%2e%2e/%2e%2e/secret/passwd",
        "/escape/passwd",
        "/escape/",
        "/..%00/secret/passwd",
        "/%252e%252e/secret/passwd",
        "/..\\..\\secret\\passwd",
        "/assets/..%2F..%2Fsecret%2Fpasswd",
        "//etc/passwd",
        "/.%2e/secret/passwd",
        "/%2e./secret/passwd",
        "/index.html/../../secret/passwd",
        "/../../../../../../etc/passwd",
    };
    char req[512], *resp;
    const char *body;

    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", forms[i]);
        int st = wsc_http(base, d.port, req, &resp, &body, 5000);
        ck_assert_msg(st == 403 || st == 404, "%s: %d", forms[i], st);
        ck_assert_msg(!strstr(resp, "SECRET") && !strstr(resp, "root:"), "%s leaked",
                      forms[i]);
        free(resp);
    }
}
END_TEST

START_TEST(test_static_files)
{
    char *resp, req[512], etag[64] = "";
    const char *body;

    ck_assert_int_eq(http_get("/", NULL, &resp, &body), 200);
    ck_assert_str_eq(body, "<!doctype html><title>katomon</title>");
    ck_assert(strstr(resp, "Content-Type: text/html; charset=utf-8\r\n"));
    ck_assert(strstr(resp, "Cache-Control: no-cache\r\n"));
    free(resp);
    ck_assert_int_eq(http_get("/app.js", NULL, &resp, &body), 200);
    ck_assert(strstr(resp, "Content-Type: text/javascript"));
    ck_assert(strstr(resp, "Cache-Control: public, max-age=300\r\n"));
    const char *e = strstr(resp, "ETag: ");
    ck_assert_ptr_nonnull(e);
    sscanf(e + 6, "%63[^\r]", etag);
    free(resp);
    snprintf(req, sizeof req, "If-None-Match: %s\r\n", etag);
    ck_assert_int_eq(http_get("/app.js", req, &resp, &body), 304);
    free(resp);
    ck_assert_int_eq(http_get("/assets/style.css", NULL, &resp, &body), 200);
    ck_assert(strstr(resp, "Content-Type: text/css"));
    free(resp);
    snprintf(req, sizeof req, "HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(wsc_http(base, d.port, req, &resp, &body, 5000), 200);
    ck_assert(strstr(resp, "Content-Length: 26\r\n"));
    ck_assert_str_eq(body, "");
    free(resp);
    ck_assert_int_eq(http_get("/missing.js", NULL, &resp, &body), 404);
    free(resp);
    /* keep-alive: two requests on one connection, answered in order */
    snprintf(req, sizeof req,
             "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/health HTTP/1.1\r\n"
             "Host: x\r\nConnection: close\r\n\r\n");
    struct wsc *c = wsc_connect_raw(base, d.port, req, NULL);
    wsc_wait_open(c, 5000);
    const char *r = wsc_response(c);
    ck_assert(strstr(r, "console.log"));
    ck_assert(strstr(r, "\"status\":\"healthy\""));
    ck_assert(strstr(r, "console.log") < strstr(r, "healthy"));
    wsc_free(c);
}
END_TEST

/* ---- tests: REST ----------------------------------------------------------------- */

START_TEST(test_rest)
{
    json_t *j;

    j = rest_json("/api/v1/health", NULL, 200);
    ck_assert_str_eq(str(j, "status"), "healthy");
    json_decref(j);
    j = rest_json("/health", NULL, 200);
    ck_assert_str_eq(str(j, "status"), "healthy");
    json_decref(j);
    j = rest_json("/api/v1/system/metrics", NULL, 503);
    ck_assert(json_is_string(json_object_get(j, "detail")));
    json_decref(j);
    j = rest_json("/api/v1/system/kato-health", NULL, 200);
    ck_assert_str_eq(str(j, "status"), "error");
    json_decref(j);

    publish_state();
    cmd("pub kato_health {\"status\":\"healthy\",\"version\":\"1.2\"}");
    for (int i = 0; i < 100; i++) {
        char *resp;
        const char *body;
        int st = http_get("/api/v1/system/kato-health", NULL, &resp, &body);
        int ok = st == 200 && strstr(body, "1.2");
        free(resp);
        if (ok)
            break;
        usleep(50000);
    }
    j = rest_json("/api/v1/system/metrics", NULL, 200);
    ck_assert_int_eq(num(j, "requests_total"), 42);
    json_decref(j);
    j = rest_json("/api/v1/system/container-stats", NULL, 200);
    ck_assert_int_eq(num(json_object_get(j, "aggregated"), "container_count"), 1);
    json_decref(j);
    j = rest_json("/api/v1/system/container-stats/kato", NULL, 200);
    ck_assert_str_eq(str(j, "status"), "running");
    json_decref(j);
    j = rest_json("/api/v1/system/container-stats/kato-redis", NULL, 404);
    ck_assert(strstr(str(j, "detail"), "kato-redis"));
    json_decref(j);
    j = rest_json("/api/v1/sessions/count", NULL, 200);
    ck_assert_int_eq(num(j, "active_session_count"), 3);
    json_decref(j);
    j = rest_json("/api/v1/system/kato-health", NULL, 200);
    ck_assert_str_eq(str(j, "version"), "1.2");
    json_decref(j);
    j = rest_json("/api/v1/nope", NULL, 404);
    keys_are(j, "detail", NULL);
    json_decref(j);

    cmd("pub session_events "
        "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");
    usleep(200000);
    j = rest_json("/api/v1/topics", NULL, 200);
    json_t *t;
    size_t i;
    int seen = 0;
    json_array_foreach(json_object_get(j, "topics"), i, t)
    {
        ck_assert(json_is_string(json_object_get(t, "name")));
        ck_assert(json_is_string(json_object_get(t, "kind")));
        ck_assert_ptr_nonnull(json_object_get(t, "type"));
        ck_assert(json_is_integer(json_object_get(t, "last_seq")));
        if (strcmp(str(t, "name"), "session_events") == 0) {
            ck_assert_str_eq(str(t, "kind"), "event");
            ck_assert_int_eq(num(t, "last_seq"), 1);
            seen++;
        }
        if (strcmp(str(t, "name"), "host") == 0) {
            ck_assert_str_eq(str(t, "kind"), "state");
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
    json_decref(j);

    j = rest_json("/api/v1/plugins", NULL, 200);
    json_t *p = json_array_get(json_object_get(j, "plugins"), 0);
    ck_assert_str_eq(str(p, "name"), "test_pub");
    ck_assert_str_eq(str(p, "state"), "running");
    ck_assert(json_is_null(json_object_get(p, "reason")));
    p = json_array_get(json_object_get(j, "plugins"), 1);
    ck_assert_str_eq(str(p, "name"), "test_initfail");
    ck_assert_str_eq(str(p, "state"), "disabled");
    ck_assert(strlen(str(p, "reason")) > 0);
    json_decref(j);

    struct wsc *c = ws_open();
    subscribe(c, "[\"metrics\",\"session_events\"]", NULL);
    json_decref(must_recv(c, "subscription_ack"));
    j = ws_stats();
    ck_assert_int_eq(num(j, "count"), 1);
    json_t *cl = json_array_get(json_object_get(j, "clients"), 0);
    ck_assert_int_eq(json_array_size(json_object_get(cl, "topics")), 2);
    ck_assert(json_is_integer(json_object_get(cl, "queued_bytes")));
    json_decref(j);
    wsc_free(c);
}
END_TEST

/* ---- tests: scale, fan-out, backpressure ---------------------------------------------
 */

static void fixture_scale(void)
{
    daemon_start("max_connections = 1100\n", "update_interval = 1\n");
}

struct many {
    struct wsc **c;   /* clients */
    int n;            /* how many */
    const char *type; /* message type waited for */
    int *got;         /* per client: got it */
};

static int all_open_p(void *arg)
{
    struct many *m = arg;
    for (int i = 0; i < m->n; i++)
        if (!wsc_handshake_done(m->c[i]))
            return 0;
    return 1;
}

static int all_got_p(void *arg)
{
    struct many *m = arg;
    int all = 1;
    for (int i = 0; i < m->n; i++) {
        if (m->got[i])
            continue;
        struct wsc_msg *msg;
        while (!m->got[i] && wsc_pending(m->c[i]) && (msg = wsc_next(m->c[i], 0))) {
            json_t *j = json_loads(msg->data, 0, NULL);
            const char *t = str(j, "type");
            if (t && strcmp(t, m->type) == 0)
                m->got[i] = 1;
            json_decref(j);
            wsc_msg_free(msg);
        }
        all &= m->got[i];
    }
    return all;
}

/*
 * 1,000 clients in 4 subscription sets all receive one broadcast; the
 * event is encoded once and framed once; a realtime_update tick is encoded
 * and framed once per distinct set that has state to send (3 of the 4).
 */
START_TEST(test_thousand_clients)
{
    enum { N = 1000 };
    struct wsc **c = calloc(N, sizeof *c);
    int *got = calloc(N, sizeof *got);
    struct many m = {c, N, "subscription_ack", got};
    struct rlimit rl;

    /* this process and the daemon each hold N sockets */
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_cur >= N + 100,
                  "RLIMIT_NOFILE is %llu; 1,000 clients need %d (ulimit -n)",
                  (unsigned long long)rl.rlim_cur, N + 100);

    publish_state();
    for (int i = 0; i < N; i++)
        c[i] = wsc_connect(base, d.port, "/ws", NULL);
    ck_assert(wsc_run_until(base, all_open_p, &m, 60000));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(wsc_wait_open(c[i], 0), 101);
    for (int i = 0; i < N; i++) {
        switch (i % 4) {
        case 0:
            got[i] = 1; /* never subscribes: gets everything */
            break;
        case 1:
            subscribe(c[i], "[\"metrics\",\"session_events\"]", NULL);
            break;
        case 2:
            subscribe(c[i], "[\"containers\",\"sessions\",\"session_events\"]", NULL);
            break;
        case 3:
            subscribe(c[i], "[\"session_events\"]", NULL);
            break;
        }
    }
    ck_assert(wsc_run_until(base, all_got_p, &m, 60000));

    json_t *s0 = ws_stats();
    ck_assert_int_eq(num(s0, "count"), N);
    ck_assert_int_eq(num(s0, "subscription_sets"), 4);

    /* one event to everyone */
    memset(got, 0, N * sizeof *got);
    m.type = "session_event";
    cmd("pub session_events {\"event_type\":\"session_created\",\"timestamp\":\"t\","
        "\"data\":{\"current_count\":1}}");
    ck_assert_msg(wsc_run_until(base, all_got_p, &m, 60000), "not every client got it");
    json_t *s1 = ws_stats();
    /* once per dialect present (compatible and katomon/1), not per client */
    ck_assert_int_eq(stat_of(s1, "json_encodes") - stat_of(s0, "json_encodes") -
                         3 * (stat_of(s1, "ticks") - stat_of(s0, "ticks")),
                     2);
    ck_assert_int_eq(stat_of(s1, "frames_built") - stat_of(s0, "frames_built") -
                         3 * (stat_of(s1, "ticks") - stat_of(s0, "ticks")),
                     2);

    /* one tick: 3 encodings and 3 frames (the session_events-only set has
       no state), queued N - N/4 times */
    json_t *a = NULL, *b = NULL;
    for (int tries = 0; tries < 20; tries++) {
        json_decref(a);
        a = ws_stats();
        do {
            json_decref(b);
            wsc_run_for(base, 100);
            b = ws_stats();
        } while (stat_of(b, "ticks") == stat_of(a, "ticks"));
        if (stat_of(b, "ticks") == stat_of(a, "ticks") + 1)
            break;
    }
    ck_assert_int_eq(stat_of(b, "ticks") - stat_of(a, "ticks"), 1);
    ck_assert_int_eq(stat_of(b, "json_encodes") - stat_of(a, "json_encodes"), 3);
    ck_assert_int_eq(stat_of(b, "frames_built") - stat_of(a, "frames_built"), 3);
    ck_assert_int_eq(stat_of(b, "frames_queued") - stat_of(a, "frames_queued"),
                     N - N / 4);
    json_decref(a);
    json_decref(b);
    json_decref(s0);
    json_decref(s1);
    for (int i = 0; i < N; i++)
        wsc_free(c[i]);
    free(c);
    free(got);
}
END_TEST

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void fixture_slow(void)
{
    daemon_start(NULL, "max_queue_bytes = 256k\nupdate_interval = 0.1\n");
}

/*
 * A client that stops reading: the other clients get every event at once,
 * its queue never passes max_queue_bytes, realtime_update conflates for it,
 * the daemon's memory stays flat, and once the events no longer fit it is
 * closed with 1008 and told to come back with since.
 */
START_TEST(test_slow_client)
{
    /* a burst (10 x 16 KB) fits in the bound; the slow client's backlog
       does not after a few */
    enum { FAST = 20, BURSTS = 40, PER = 10, PAD = 16000 };
    struct wsc *fast[FAST], *slow;
    int counts[FAST] = {0};

    wsc_set_rcvbuf(4096);
    slow = ws_open();
    wsc_set_rcvbuf(0);
    for (int i = 0; i < FAST; i++)
        fast[i] = ws_open();
    subscribe(slow, "[\"metrics\",\"test_events\"]", NULL);
    json_decref(must_recv(slow, "subscription_ack"));
    wsc_pause(slow, 1);
    for (int i = 0; i < FAST; i++) {
        subscribe(fast[i], "[\"test_events\"]", NULL);
        json_decref(must_recv(fast[i], "subscription_ack"));
    }
    long rss0 = 0;

    /* big state for a while: conflates for the slow one */
    static char big[40000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    /* ~40 ticks of 40 KB: more than kernel buffers and the bound together */
    for (int i = 0; i < 40; i++) {
        cmd("pub metrics {\"i\":%d,\"blob\":\"%s\"}", i, big);
        wsc_run_for(base, 100);
    }
    json_t *s = ws_stats();
    ck_assert_int_gt(stat_of(s, "state_conflated") + stat_of(s, "state_skipped"), 0);
    json_t *cl;
    size_t k;
    json_array_foreach(json_object_get(s, "clients"), k, cl)
        ck_assert_int_le(num(cl, "queued_bytes"), 256 * 1024);
    ck_assert_int_eq(stat_of(s, "closed_slow"), 0);
    json_decref(s);

    /* events: the fast ones get every one, promptly */
    for (int b = 0; b < BURSTS; b++) {
        if (b == 5)
            rss0 = rss_kb(d.pid); /* warmed up: buffers and caches in place */
        cmd("burst test_events %d %d", PER, PAD);
        int64_t deadline = 0;
        for (int tries = 0; tries < 200; tries++) {
            int done = 1;
            for (int i = 0; i < FAST; i++) {
                struct wsc_msg *msg;
                while ((msg = wsc_next(fast[i], 0))) {
                    if (strstr(msg->data, "\"type\":\"event\""))
                        counts[i]++;
                    wsc_msg_free(msg);
                }
                done &= counts[i] == (b + 1) * PER;
            }
            if (done)
                break;
            wsc_run_for(base, 25);
            deadline++;
        }
        if (getenv("KM_DEBUG")) {
            json_t *dbg = ws_stats();
            char *t = json_dumps(dbg, JSON_COMPACT);
            fprintf(stderr, "burst %d tries %d: %s\n", b, (int)deadline, t);
            for (int i = 0; i < FAST; i++)
                fprintf(stderr, "%d ", counts[i]);
            fprintf(stderr, "\n");
            free(t);
            json_decref(dbg);
        }
        for (int i = 0; i < FAST; i++)
            ck_assert_msg(counts[i] == (b + 1) * PER, "fast client %d has %d of %d", i,
                          counts[i], (b + 1) * PER);
        /* 5 s for 10 x 16 KB to 20 clients is generous even under ASan */
        ck_assert_msg(deadline < 200, "fast clients were held up");
    }
    s = ws_stats();
    ck_assert_int_eq(stat_of(s, "closed_slow"), 1);
    json_array_foreach(json_object_get(s, "clients"), k, cl)
        ck_assert_int_le(num(cl, "queued_bytes"), 256 * 1024);
    json_decref(s);
    long rss1 = rss_kb(d.pid);
    /* 350 more events x 16 KB x 21 clients went out (over 100 MB): the
       daemon's memory did not follow */
    ck_assert_msg(rss1 - rss0 < 16 * 1024, "RSS grew from %ld to %ld kB", rss0, rss1);

    /* the slow one, reading again, finds its close */
    wsc_pause(slow, 0);
    const char *reason;
    int code = expect_close(slow, &reason);
    ck_assert_msg(code == 1008 || code == 1013, "code %d", code);
    ck_assert(strstr(reason, "since"));
    wsc_free(slow);
    for (int i = 0; i < FAST; i++)
        wsc_free(fast[i]);
}
END_TEST

/* ---- suite ---------------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name, void (*setup)(void), int timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, daemon_stop);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *transport_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase(s, "protocol", fixture_default, 60);
    tcase_add_test(tc, test_handshake);
    tcase_add_test(tc, test_no_subscribe_gets_everything);
    tcase_add_test(tc, test_message_shapes);
    tcase_add_test(tc, test_subscribe_ack_trim);
    tcase_add_test(tc, test_error_replies);
    tcase_add_test(tc, test_since_replay);
    tcase_add_test(tc, test_path_traversal);
    tcase_add_test(tc, test_static_files);
    tcase_add_test(tc, test_rest);
    tcase_add_test(tc, test_shutdown_going_away);
    tc = tcase(s, "frames", fixture_small_messages, 60);
    tcase_add_test(tc, test_bad_frames);
    tc = tcase(s, "pings", fixture_pings, 60);
    tcase_add_test(tc, test_ping_idle);
    tc = tcase(s, "secure", fixture_secure, 60);
    tcase_add_test(tc, test_origin);
    tcase_add_test(tc, test_token);
    tcase_add_test(tc, test_reload);
    tc = tcase(s, "routes", fixture_routes, 60);
    tcase_add_test(tc, test_plugin_routes);
    tc = tcase(s, "limits", fixture_limits, 60);
    tcase_add_test(tc, test_limits);
    tc = tcase(s, "scale", fixture_scale, 240);
    tcase_add_test(tc, test_thousand_clients);
    tc = tcase(s, "slow", fixture_slow, 120);
    tcase_add_test(tc, test_slow_client);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a peer gone mid-write is not fatal */
    SRunner *sr = srunner_create(transport_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
