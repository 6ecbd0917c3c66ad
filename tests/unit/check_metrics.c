/*
 * check_metrics.c - unit tests of GET /metrics: the value formatter and
 * the exposition (core/metrics.c), katomon's own figures
 * (core/selfstats.c), and the route through a real listener in this
 * process (core/server_route.c): the token, the methods, a client that
 * leaves before the answer.
 *
 * Every rendered text goes through a small line-by-line checker of the
 * text format 0.0.4 (check_exposition below), and through `promtool check
 * metrics` when Debian's prometheus package is installed.
 *
 * Leaks: run under ASan (--enable-sanitizers); every test frees what it made.
 */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "bus.h"
#include "core.h"
#include "history.h"
#include "log.h"
#include "metrics.h"
#include "selfstats.h"
#include "series.h"
#include "server.h"
#include "wsclient.h"

/* ---- a checker of the text format ---------------------------------------- */

/* What check_exposition found. */
struct expo {
    long samples;   /* sample lines */
    long families;  /* # TYPE lines */
    double *values; /* the samples' values in order (owned; when asked for) */
    size_t nvalues; /* room in values */
};

static int name_start(int c)
{
    return isalpha(c) || c == '_' || c == ':';
}

static int name_char(int c)
{
    return isalnum(c) || c == '_' || c == ':';
}

/* Length of the metric name at p (0: none). */
static size_t name_len(const char *p)
{
    size_t n = 0;
    if (!name_start((unsigned char)p[0]))
        return 0;
    while (name_char((unsigned char)p[n]))
        n++;
    return n;
}

/* A sample's value token [p, e): NaN, +Inf, -Inf or a whole float. */
static int value_ok(const char *p, const char *e, double *v)
{
    char tok[64], *end;
    size_t n = (size_t)(e - p);

    if (n == 0 || n >= sizeof tok)
        return 0;
    memcpy(tok, p, n);
    tok[n] = '\0';
    if (strcmp(tok, "NaN") == 0 || strcmp(tok, "+Inf") == 0 || strcmp(tok, "-Inf") == 0) {
        *v = strtod(tok, NULL);
        return 1;
    }
    if (strpbrk(tok, "nNiI")) /* strtod's nan/inf spellings are not the format's */
        return 0;
    *v = strtod(tok, &end);
    return *end == '\0';
}

/* Labels at p (after '{'): name="value" pairs with \\ \" \n escapes, ','
   between; returns the end after '}', or NULL. */
static const char *labels_ok(const char *p)
{
    for (int first = 1;; first = 0) {
        if (*p == '}')
            return first ? NULL : p + 1; /* we never write {} */
        if (!first && *p++ != ',')
            return NULL;
        if (!(isalpha((unsigned char)*p) || *p == '_'))
            return NULL;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (*p++ != '=' || *p++ != '"')
            return NULL;
        for (; *p != '"'; p++) {
            if (*p == '\0' || *p == '\n')
                return NULL;
            if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
                p++;
            else if (*p == '\\')
                return NULL;
        }
        p++;
    }
}

/* Checks text line by line; fails the test at the first bad line. */
static void check_exposition(const char *text, struct expo *x)
{
    char family[KM_SERIES_NAME_MAX + 1] = "", help_of[KM_SERIES_NAME_MAX + 1] = "";
    const char *p = text;
    int lineno = 0;

    x->samples = x->families = 0;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t n;
        lineno++;
        ck_assert_msg(eol != NULL, "line %d has no newline", lineno);
        if (strncmp(p, "# HELP ", 7) == 0) {
            n = name_len(p + 7);
            ck_assert_msg(n && n <= KM_SERIES_NAME_MAX, "line %d: HELP name", lineno);
            snprintf(help_of, sizeof help_of, "%.*s", (int)n, p + 7);
            const char *h = p + 7 + n;
            ck_assert_msg(*h == ' ' || *h == '\n', "line %d: after HELP name", lineno);
            for (; h < eol; h++)
                if (*h == '\\') {
                    ck_assert_msg(h[1] == '\\' || h[1] == 'n', "line %d: escape", lineno);
                    h++;
                }
        } else if (strncmp(p, "# TYPE ", 7) == 0) {
            n = name_len(p + 7);
            ck_assert_msg(n && strncmp(help_of, p + 7, n) == 0 && !help_of[n],
                          "line %d: TYPE without its HELP", lineno);
            ck_assert_msg(strncmp(family, p + 7, n) != 0 || family[n],
                          "line %d: family twice", lineno);
            snprintf(family, sizeof family, "%.*s", (int)n, p + 7);
            const char *t = p + 7 + n;
            ck_assert_msg((size_t)(eol - t) == 6
                              ? strncmp(t, " gauge", 6) == 0
                              : (size_t)(eol - t) == 8 && !strncmp(t, " counter", 8),
                          "line %d: type", lineno);
            x->families++;
        } else {
            double v;
            n = name_len(p);
            ck_assert_msg(n && family[0] && strncmp(family, p, n) == 0 && !family[n],
                          "line %d: sample outside its family: %.*s", lineno,
                          (int)(eol - p), p);
            const char *q = p + n;
            if (*q == '{')
                ck_assert_msg((q = labels_ok(q + 1)) != NULL, "line %d: labels: %.*s",
                              lineno, (int)(eol - p), p);
            ck_assert_msg(*q == ' ', "line %d: no space before the value", lineno);
            ck_assert_msg(value_ok(q + 1, eol, &v), "line %d: value: %.*s", lineno,
                          (int)(eol - p), p);
            if (x->values && (size_t)x->samples < x->nvalues)
                x->values[x->samples] = v;
            x->samples++;
        }
        p = eol + 1;
    }
}

/* `promtool check metrics` on text when promtool is installed: it must
   say nothing and exit 0. Skipped (with a line) otherwise. */
static void promtool_check(const char *text)
{
    char path[] = "/tmp/check_metrics.XXXXXX", cmd[256], out[4096];
    size_t n;

    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf(stderr,
                "check_metrics: promtool not installed, promtool check skipped\n");
        return;
    }
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    snprintf(cmd, sizeof cmd, "promtool check metrics <%s 2>&1", path);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    int rc = pclose(f);
    unlink(path);
    ck_assert_msg(rc == 0 && n == 0, "promtool check metrics (%d): %s", rc, out);
}

/* ---- values ----------------------------------------------------------------- */

static const char *val(double v)
{
    static char buf[KM_METRICS_VALUE_MAX];
    size_t n = km_metrics_value(v, buf);
    ck_assert_uint_eq(n, strlen(buf));
    return buf;
}

START_TEST(test_values)
{
    ck_assert_str_eq(val(0), "0");
    ck_assert_str_eq(val(-0.0), "0");
    ck_assert_str_eq(val(42), "42");
    ck_assert_str_eq(val(-7), "-7");
    ck_assert_str_eq(val(1e15), "1000000000000000");
    ck_assert_str_eq(val(9007199254740993.0), "9007199254740992"); /* 2^53 + 1 rounds */
    ck_assert_str_eq(val(9e18), "9000000000000000000");
    ck_assert_str_eq(val(0.1), "0.1");
    ck_assert_str_eq(val(12.35), "12.35");
    ck_assert_str_eq(val(-0.25), "-0.25");
    ck_assert_str_eq(val(0.00012), "0.00012");
    ck_assert_str_eq(val(1.0 / 3), "0.33333333333333331");
    ck_assert_str_eq(val(1e-7), "1e-07");
    ck_assert_str_eq(val(1e21), "1e+21");
    ck_assert_str_eq(val(NAN), "NaN");
    ck_assert_str_eq(val(INFINITY), "+Inf");
    ck_assert_str_eq(val(-INFINITY), "-Inf");
    ck_assert_double_eq(strtod(val(5e-324), NULL), 5e-324);
    ck_assert_double_eq(strtod(val(1.7976931348623157e308), NULL),
                        1.7976931348623157e308);
}
END_TEST

static uint64_t xs = 88172645463325252ull; /* fixed seed */
static uint64_t xorshift(void)
{
    xs ^= xs << 13;
    xs ^= xs >> 7;
    xs ^= xs << 17;
    return xs;
}

/* Any bit pattern, percents, values rounded to 0.01, wide exponents:
   every one parses back to itself, never with more than 17 digits. */
START_TEST(test_values_round_trip)
{
    char buf[KM_METRICS_VALUE_MAX];

    for (long i = 0; i < 400000; i++) {
        uint64_t u = xorshift();
        double v;
        switch (i % 4) {
        case 0:
            memcpy(&v, &u, sizeof v);
            break;
        case 1:
            v = (double)(u >> 11) / 9007199254740992.0 * 100;
            break;
        case 2:
            v = round((double)(u >> 11) / 9007199254740992.0 * 10000) * 0.01;
            break;
        default:
            v = ldexp((double)(u >> 11), (int)(u % 90) - 70);
        }
        if (isnan(v))
            continue;
        size_t n = km_metrics_value(v, buf);
        ck_assert_uint_lt(n, KM_METRICS_VALUE_MAX);
        ck_assert_msg(strtod(buf, NULL) == v, "%.17g written as %s", v, buf);
        int digits = 0;
        for (const char *p = buf; *p && *p != 'e'; p++)
            digits += isdigit((unsigned char)*p) != 0;
        ck_assert_msg(digits <= 17 || strchr(buf, 'e') == NULL, "%s", buf);
    }
}
END_TEST

/* ---- the exposition ----------------------------------------------------------- */

static struct km_series_reg *reg;

static void reg_setup(void)
{
    km_log_set_level(KM_LOG_ERROR);
    reg = km_series_reg_new(0);
    ck_assert_ptr_nonnull(reg);
}

static void reg_teardown(void)
{
    km_series_reg_free(reg);
    reg = NULL;
}

static struct km_series *put(const char *name, const char *help, enum km_series_type type,
                             const char *labels, double v)
{
    struct km_series *s = km_series_get(reg, name, help, type, labels);
    ck_assert_ptr_nonnull(s);
    km_series_set(s, v, 0);
    return s;
}

START_TEST(test_render_exact)
{
    struct km_metrics_text t;
    char lab[KM_SERIES_LABELS_MAX] = "";

    ck_assert_int_eq(km_labels_add(lab, sizeof lab, "container", "a\"b\\c\nd"), 0);
    put("katomon_test_cpu_percent", "CPU, percent.\nSecond line \\ end.", KM_SERIES_GAUGE,
        lab, 12.5);
    put("katomon_test_cpu_percent", NULL, KM_SERIES_GAUGE, "container=\"b\"", NAN);
    /* stale: left out, its family still shown */
    km_series_stale(
        put("katomon_test_cpu_percent", NULL, KM_SERIES_GAUGE, "container=\"gone\"", 1));
    /* a family with only stale series: left out entirely */
    km_series_stale(put("katomon_test_gone_bytes", "Gone.", KM_SERIES_GAUGE, "", 3));
    put("katomon_test_requests_total", "Requests.", KM_SERIES_COUNTER, "", 9e15);
    put("katomon_test_temperature", "Up and down.", KM_SERIES_GAUGE, "side=\"hot\"",
        INFINITY);
    put("katomon_test_temperature", NULL, KM_SERIES_GAUGE, "side=\"cold\"", -INFINITY);
    put("katomon_test_ratio", "A ratio.", KM_SERIES_GAUGE, "", 0.1);

    ck_assert_int_eq(km_metrics_render(reg, &t), 0);
    ck_assert_str_eq(
        t.data, "# HELP katomon_test_cpu_percent CPU, percent.\\nSecond line \\\\ end.\n"
                "# TYPE katomon_test_cpu_percent gauge\n"
                "katomon_test_cpu_percent{container=\"a\\\"b\\\\c\\nd\"} 12.5\n"
                "katomon_test_cpu_percent{container=\"b\"} NaN\n"
                "# HELP katomon_test_requests_total Requests.\n"
                "# TYPE katomon_test_requests_total counter\n"
                "katomon_test_requests_total 9000000000000000\n"
                "# HELP katomon_test_temperature Up and down.\n"
                "# TYPE katomon_test_temperature gauge\n"
                "katomon_test_temperature{side=\"hot\"} +Inf\n"
                "katomon_test_temperature{side=\"cold\"} -Inf\n"
                "# HELP katomon_test_ratio A ratio.\n"
                "# TYPE katomon_test_ratio gauge\n"
                "katomon_test_ratio 0.1\n");
    ck_assert_uint_eq(t.len, strlen(t.data));
    ck_assert_uint_eq(t.series, 6);
    struct expo x = {0};
    check_exposition(t.data, &x);
    ck_assert_int_eq(x.samples, 6);
    ck_assert_int_eq(x.families, 4);
    promtool_check(t.data);
    km_metrics_text_free(&t);
    ck_assert_ptr_null(t.data);
}
END_TEST

START_TEST(test_render_empty)
{
    struct km_metrics_text t;

    ck_assert_int_eq(km_metrics_render(reg, &t), 0);
    ck_assert_str_eq(t.data, "");
    ck_assert_uint_eq(t.len, 0);
    km_series_stale(put("katomon_test_only_stale", "x", KM_SERIES_GAUGE, "", 1));
    km_metrics_text_free(&t);
    ck_assert_int_eq(km_metrics_render(reg, &t), 0);
    ck_assert_str_eq(t.data, "");
    km_metrics_text_free(&t);
}
END_TEST

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 +
           (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* 100 families of 100 series, labelled like containers, values of every
   kind: rendered whole, checked line by line, every value read back. The
   time of one render is printed (no assertion on it: machines differ). */
START_TEST(test_render_10k)
{
    enum { NF = 100, NS = 100 };
    static double want[NF * NS];
    char name[64], help[64], lab[KM_SERIES_LABELS_MAX], cname[32];
    struct km_metrics_text t;
    double best = 1e9;

    for (int f = 0; f < NF; f++) {
        snprintf(name, sizeof name, "katomon_bench_field%d%s", f, f % 5 ? "" : "_total");
        snprintf(help, sizeof help, "Field %d of the bench.", f);
        for (int s = 0; s < NS; s++) {
            uint64_t u = xorshift();
            double v = f % 5 == 0   ? (double)(u >> 20)                   /* counter */
                       : f % 5 == 1 ? round((double)(u % 1000000)) * 0.01 /* percent */
                       : f % 5 == 2 ? (double)(u >> 11) / 9007199254740992.0 * 100
                       : f % 5 == 3 ? (double)(u % 100000000000ull) /* bytes */
                                    : ldexp((double)(u >> 11), -40);
            lab[0] = '\0';
            snprintf(cname, sizeof cname, "container-%03d", s);
            ck_assert_int_eq(km_labels_add(lab, sizeof lab, "container", cname), 0);
            put(name, help, f % 5 ? KM_SERIES_GAUGE : KM_SERIES_COUNTER, lab, v);
            want[f * NS + s] = v;
        }
    }
    ck_assert_uint_eq(km_series_live(reg), NF * NS);
    for (int run = 0; run < 5; run++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        ck_assert_int_eq(km_metrics_render(reg, &t), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (elapsed_ms(&a, &b) < best)
            best = elapsed_ms(&a, &b);
        if (run < 4)
            km_metrics_text_free(&t);
    }
    fprintf(stderr,
            "check_metrics: 10,000 series render in %.3f ms (best of 5), %zu bytes\n",
            best, t.len);
    ck_assert_uint_eq(t.series, NF * NS);
    struct expo x = {.values = calloc(NF * NS, sizeof(double)), .nvalues = NF * NS};
    check_exposition(t.data, &x);
    ck_assert_int_eq(x.samples, NF * NS);
    ck_assert_int_eq(x.families, NF);
    for (int i = 0; i < NF * NS; i++)
        ck_assert_msg(x.values[i] == want[i], "sample %d: %.17g read back as %.17g", i,
                      want[i], x.values[i]);
    free(x.values);
    promtool_check(t.data);
    km_metrics_text_free(&t);
}
END_TEST

/* ---- katomon's own figures ------------------------------------------------------ */

static struct km_core core;

static const struct km_field num_schema[] = {KM_FIELD("n", KM_NUMBER, KM_F_REQUIRED),
                                             KM_FIELD_END};

static struct km_topic *declare(const char *name, const struct km_field *schema)
{
    struct km_topic_def def = {name, KM_TOPIC_STATE, schema, 0, NULL, NULL};
    struct km_topic *t = km_bus_declare(core.bus, &def, NULL, NULL);
    ck_assert_ptr_nonnull(t);
    return t;
}

static json_t *js(const char *text)
{
    json_t *v = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(v);
    return v;
}

static void core_setup(void)
{
    km_log_set_level(KM_LOG_ERROR);
    memset(&core, 0, sizeof core);
    core.base = event_base_new();
    core.bus = km_bus_new();
    core.cfg = km_config_defaults();
    core.cfg->port = 0;
    /* no dashboard: the built-in web_root is where `make install` puts one,
       and what this machine has installed must not change the answers */
    free(core.cfg->web_root);
    core.cfg->web_root = strdup("/nonexistent/katomon-web");
    core.series = km_series_reg_new(0);
    km_series_attach(core.series, core.bus);
    ck_assert_int_eq(km_selfstats_add(&core), 0);
}

static void core_teardown(void)
{
    km_server_free(core.server);
    if (core.series) {
        km_series_detach(core.series);
        km_series_reg_free(core.series);
    }
    km_bus_free(core.bus);
    event_base_free(core.base);
    km_config_free(core.cfg);
    memset(&core, 0, sizeof core);
}

/* The value of name{labels} after a collect; must be live. */
static double self_value(const char *name, const char *labels)
{
    struct km_series *s = km_series_find(core.series, name, labels);
    ck_assert_msg(s && s->live, "no live %s{%s}", name, labels);
    return s->value;
}

START_TEST(test_selfstats)
{
    struct km_topic *t = declare("host", num_schema);
    struct km_metrics_text text;
    char want[128];

    ck_assert_int_eq(km_bus_publish(t, js("{\"n\":1}"), NULL), KM_OK);
    ck_assert_int_eq(km_bus_publish(t, js("{\"n\":2}"), NULL), KM_OK);
    ck_assert_int_ne(km_bus_publish(t, js("{\"n\":\"x\"}"), NULL), KM_OK);
    ck_assert_int_eq(km_metrics_scrape(core.series, &text), 0);

    ck_assert_double_eq(self_value("katomon_bus_messages_total", "topic=\"host\""), 2);
    ck_assert_double_eq(self_value("katomon_bus_rejected_total", "topic=\"host\""), 1);
    ck_assert_double_eq(self_value("katomon_host_n", ""), 2); /* the walk ran too */
    ck_assert_double_gt(self_value("process_resident_memory_bytes", ""), 1e6);
    ck_assert_double_ge(self_value("process_open_fds", ""), 3);
    ck_assert_double_ge(self_value("process_cpu_seconds_total", ""), 0);
    double start = self_value("process_start_time_seconds", "");
    ck_assert_double_le(start, (double)time(NULL) + 1);
    ck_assert_double_gt(start, (double)time(NULL) - 24 * 3600); /* this test's process */
    snprintf(want, sizeof want, "version=\"%s\"", PACKAGE_VERSION);
    ck_assert_double_eq(self_value("katomon_build_info", want), 1);
    ck_assert_double_eq(self_value("katomon_series_refused_total", ""), 0);
    ck_assert_double_eq(self_value("katomon_series", ""),
                        (double)km_series_count(core.series));
    /* no server, loader or history: their figures are absent, not zero */
    ck_assert_ptr_null(km_series_find(core.series, "katomon_ws_clients", ""));
    ck_assert_ptr_null(km_series_family(core.series, "katomon_plugin_up"));
    ck_assert_ptr_null(km_series_find(core.series, "katomon_history_samples", ""));

    struct expo x = {0};
    check_exposition(text.data, &x);
    ck_assert_int_eq(x.samples, (long)km_series_live(core.series));
    ck_assert_ptr_nonnull(
        strstr(text.data, "\nkatomon_bus_rejected_total{topic=\"host\"} 1\n"));
    promtool_check(text.data);
    km_metrics_text_free(&text);
}
END_TEST

/* A remote host's series in the exposition: its topic's family, labelled
   host="beta", beside this host's unlabelled sample; promtool-valid. */
START_TEST(test_remote_host_series)
{
    struct km_topic *t = declare("host", num_schema);
    struct km_remote r = {
        .host = "beta", .kind = KM_TOPIC_STATE, .epoch = 1000, .time_us = km_wall_us()};
    struct km_metrics_text text;

    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), 0);
    ck_assert_int_eq(km_bus_publish(t, js("{\"n\":1}"), NULL), KM_OK);
    ck_assert_int_eq(km_bus_publish_remote(t, js("{\"n\":2.5}"), &r), KM_OK);
    r.host = "gamma.example-1";
    ck_assert_int_eq(km_bus_publish_remote(t, js("{\"n\":3}"), &r), KM_OK);
    ck_assert_int_eq(km_metrics_scrape(core.series, &text), 0);
    ck_assert_ptr_nonnull(strstr(text.data, "\nkatomon_host_n 1\n"));
    ck_assert_ptr_nonnull(strstr(text.data, "\nkatomon_host_n{host=\"beta\"} 2.5\n"));
    ck_assert_ptr_nonnull(
        strstr(text.data, "\nkatomon_host_n{host=\"gamma.example-1\"} 3\n"));
    /* one family: one HELP and one TYPE */
    const char *help = strstr(text.data, "# HELP katomon_host_n ");
    ck_assert_ptr_nonnull(help);
    ck_assert_ptr_null(strstr(help + 1, "# HELP katomon_host_n "));
    struct expo x = {0};
    check_exposition(text.data, &x);
    ck_assert_int_eq(x.samples, (long)km_series_live(core.series));
    promtool_check(text.data);
    km_metrics_text_free(&text);
}
END_TEST

/* With a history store: its samples and its memory. */
START_TEST(test_selfstats_history)
{
    struct km_history_opts opts = {.ntiers = 1, .tier = {{1, 60}}};
    struct km_history_stats st;
    char err[256];
    struct km_topic *t = declare("host", num_schema);

    core.history = km_history_new(core.base, core.series, &opts, err, sizeof err);
    ck_assert_msg(core.history != NULL, "%s", err);
    ck_assert_int_eq(km_bus_publish(t, js("{\"n\":1}"), NULL), KM_OK);
    km_history_sample(core.history, 1000);
    km_history_sample(core.history, 1001);
    km_series_collect(core.series);
    km_history_get_stats(core.history, &st);
    ck_assert_uint_gt(st.samples, 0);
    ck_assert_double_eq(self_value("katomon_history_samples", ""), (double)st.samples);
    ck_assert_double_eq(self_value("katomon_history_bytes", ""),
                        (double)st.bytes_reserved);
    ck_assert_double_gt(self_value("katomon_history_bytes", ""), 0);
    ck_assert_double_eq(self_value("katomon_history_flushes_total", ""), (double)st.flushes);
    ck_assert_double_eq(self_value("katomon_history_flush_errors_total", ""),
                        (double)st.flush_errors);
    km_history_free(core.history);
    core.history = NULL;
}
END_TEST

/* ---- the route ------------------------------------------------------------------- */

static int start_server(const char *token)
{
    char err[256];

    if (token)
        core.cfg->auth_token = strdup(token);
    core.server = km_server_start(&core, err, sizeof err);
    ck_assert_msg(core.server != NULL, "%s", err);
    return km_server_port(core.server);
}

/* The value of header name in resp ("" when absent), into buf. */
static const char *header(const char *resp, const char *name, char *buf, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(resp, pat);
    buf[0] = '\0';
    if (p) {
        p += strlen(pat);
        snprintf(buf, len, "%.*s", (int)strcspn(p, "\r"), p);
    }
    return buf;
}

START_TEST(test_route_token)
{
    int port = start_server("s3cret");
    char *resp;
    const char *body;
    char h[128];

    ck_assert_int_eq(wsc_get(core.base, port, "/metrics", NULL, &resp, &body, 3000), 401);
    ck_assert_str_eq(header(resp, "WWW-Authenticate", h, sizeof h),
                     "Bearer realm=\"katomon\"");
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics",
                             "Authorization: Bearer wrong\r\n", &resp, &body, 3000),
                     401);
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics",
                             "Authorization: Bearer s3cret\r\n", &resp, &body, 3000),
                     200);
    ck_assert_str_eq(header(resp, "Content-Type", h, sizeof h),
                     "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_str_eq(header(resp, "Cache-Control", h, sizeof h), "no-store");
    ck_assert_ptr_nonnull(strstr(body, "# TYPE katomon_ws_clients gauge\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nkatomon_ws_clients 0\n"));
    ck_assert_ptr_nonnull(strstr(body, "# TYPE katomon_ws_frames_sent_total counter\n"));
    ck_assert_ptr_nonnull(strstr(body, "# TYPE katomon_ws_bytes_sent_total counter\n"));
    ck_assert_uint_eq(strlen(body),
                      strtoul(header(resp, "Content-Length", h, sizeof h), NULL, 10));
    struct expo x = {0};
    check_exposition(body, &x);
    ck_assert_int_gt(x.samples, 8);
    free(resp);
    /* the browser's way works too, as on REST */
    ck_assert_int_eq(
        wsc_get(core.base, port, "/metrics?token=s3cret", NULL, &resp, &body, 3000), 200);
    free(resp);
}
END_TEST

START_TEST(test_route_methods)
{
    int port = start_server(NULL);
    char *resp;
    const char *body;
    char h[64];

    ck_assert_int_eq(wsc_get(core.base, port, "/metrics", NULL, &resp, &body, 3000), 200);
    ck_assert_ptr_nonnull(strstr(body, "# HELP process_open_fds "));
    free(resp);
    ck_assert_int_eq(
        wsc_http(core.base, port,
                 "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &resp,
                 &body, 3000),
        200);
    ck_assert_str_eq(body, "");
    ck_assert_int_gt(atoi(header(resp, "Content-Length", h, sizeof h)), 100);
    free(resp);
    ck_assert_int_eq(wsc_http(core.base, port,
                              "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n",
                              &resp, &body, 3000),
                     405);
    ck_assert_str_eq(header(resp, "Allow", h, sizeof h), "GET, HEAD");
    free(resp);
    /* only the exact path: the rest is the dashboard's (404 without files) */
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics/x", NULL, &resp, &body, 3000),
                     404);
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics%00", NULL, &resp, &body, 3000),
                     404);
    free(resp);
}
END_TEST

/* [http] metrics = false: 404, token or not; so without a registry. */
START_TEST(test_route_off)
{
    core.cfg->metrics = 0;
    int port = start_server("s3cret");
    char *resp;
    const char *body;

    ck_assert_int_eq(wsc_get(core.base, port, "/metrics",
                             "Authorization: Bearer s3cret\r\n", &resp, &body, 3000),
                     404);
    ck_assert_ptr_nonnull(strstr(body, "[http] metrics = false"));
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics", NULL, &resp, &body, 3000), 404);
    free(resp);
    core.cfg->metrics = 1;
    km_series_detach(core.series);
    km_series_reg_free(core.series);
    core.series = NULL;
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics",
                             "Authorization: Bearer s3cret\r\n", &resp, &body, 3000),
                     404);
    free(resp);
}
END_TEST

static int connections_zero(void *arg)
{
    (void)arg;
    return km_server_connections(core.server) == 0;
}

/* 10,000 series; a client sends the request and leaves at once, another
   closes after reading a little: the server frees both, then answers the
   next scrape whole. */
START_TEST(test_route_client_leaves)
{
    char lab[KM_SERIES_LABELS_MAX], cname[32];
    int port = start_server(NULL);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    char *resp;
    const char *body;

    reg = core.series;
    for (int i = 0; i < 10000; i++) {
        lab[0] = '\0';
        snprintf(cname, sizeof cname, "c%05d", i);
        ck_assert_int_eq(km_labels_add(lab, sizeof lab, "container", cname), 0);
        put("katomon_test_load_percent", "Load.", KM_SERIES_GAUGE, lab, i * 0.37);
    }
    reg = NULL;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int round = 0; round < 2; round++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
        ck_assert_int_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
        if (round == 1) {
            char buf[512];
            wsc_run_for(core.base, 50);
            ck_assert_int_gt(read(fd, buf, sizeof buf), 0);
        }
        close(fd);
        ck_assert(wsc_run_until(core.base, connections_zero, NULL, 5000));
    }
    ck_assert_int_eq(wsc_get(core.base, port, "/metrics", NULL, &resp, &body, 5000), 200);
    struct expo x = {0};
    check_exposition(body, &x);
    ck_assert_int_gt(x.samples, 10000);
    free(resp);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("values");
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_values_round_trip);
    suite_add_tcase(s, tc);

    tc = tcase_create("exposition");
    tcase_add_checked_fixture(tc, reg_setup, reg_teardown);
    tcase_add_test(tc, test_render_exact);
    tcase_add_test(tc, test_render_empty);
    tcase_add_test(tc, test_render_10k);
    suite_add_tcase(s, tc);

    tc = tcase_create("selfstats");
    tcase_add_checked_fixture(tc, core_setup, core_teardown);
    tcase_add_test(tc, test_selfstats);
    tcase_add_test(tc, test_selfstats_history);
    tcase_add_test(tc, test_remote_host_series);
    suite_add_tcase(s, tc);

    tc = tcase_create("route");
    tcase_add_checked_fixture(tc, core_setup, core_teardown);
    tcase_add_test(tc, test_route_token);
    tcase_add_test(tc, test_route_methods);
    tcase_add_test(tc, test_route_off);
    tcase_add_test(tc, test_route_client_leaves);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(metrics_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
