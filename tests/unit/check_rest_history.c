/*
 * check_rest_history.c - the history range API (core/rest_history.c).
 *
 * First the pure parsers, each with good and bad input, including the
 * issue's bad-input list (10 KiB of labels, from after to, a step of 0 or
 * 1 ns, 10,000 series in one request). Then the handlers over a real
 * series registry and history store, filled with synthetic samples
 * (km_history_sample at made-up times, no sleeping, a made-up "now"): raw,
 * downsampled and coarse-tier answers, several series, label filters, an
 * empty answer, the listing, the 503 without a store, and the routing
 * through km_rest_handle.
 *
 * Leaks show up under ASan (--enable-sanitizers).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/event.h>
#include <jansson.h>

#include "core.h"
#include "history.h"
#include "log.h"
#include "rest.h"
#include "rest_history.h"
#include "series.h"

static char err[512];

/* ---- selectors ------------------------------------------------------------ */

static const char *key(const struct km_rh_selector *s, unsigned i)
{
    return s->buf + s->m[i].key;
}

static const char *val(const struct km_rh_selector *s, unsigned i)
{
    return s->buf + s->m[i].value;
}

START_TEST(test_selector_good)
{
    struct km_rh_selector s;

    ck_assert_int_eq(km_rh_selector("katomon_host_load1", &s, err, sizeof err), 0);
    ck_assert_str_eq(s.name, "katomon_host_load1");
    ck_assert_uint_eq(s.nmatch, 0);

    ck_assert_int_eq(km_rh_selector("a:b_c{}", &s, err, sizeof err), 0);
    ck_assert_str_eq(s.name, "a:b_c");
    ck_assert_uint_eq(s.nmatch, 0);

    ck_assert_int_eq(km_rh_selector("katomon_container_cpu_percent{container=\"kato\"}",
                                    &s, err, sizeof err),
                     0);
    ck_assert_str_eq(s.name, "katomon_container_cpu_percent");
    ck_assert_uint_eq(s.nmatch, 1);
    ck_assert_str_eq(key(&s, 0), "container");
    ck_assert_str_eq(val(&s, 0), "kato");

    /* spaces, a trailing comma, escapes, an empty value */
    ck_assert_int_eq(
        km_rh_selector(" m { a = \"x\\\"y\\\\z\\n\" , _b=\"\", } ", &s, err, sizeof err),
        0);
    ck_assert_str_eq(s.name, "m");
    ck_assert_uint_eq(s.nmatch, 2);
    ck_assert_str_eq(key(&s, 0), "a");
    ck_assert_str_eq(val(&s, 0), "x\"y\\z\n");
    ck_assert_str_eq(key(&s, 1), "_b");
    ck_assert_str_eq(val(&s, 1), "");

    /* values may hold anything but an unescaped quote */
    ck_assert_int_eq(km_rh_selector("m{a=\"{},=~ \"}", &s, err, sizeof err), 0);
    ck_assert_str_eq(val(&s, 0), "{},=~ ");
}
END_TEST

/* Input that must be refused, with a word its error must hold. */
struct bad {
    const char *text; /* input */
    const char *word; /* in the error */
};

/* One of the parsers, on text alone. */
typedef int (*parser)(const char *text, char *e, size_t elen);

static int try_selector(const char *text, char *e, size_t elen)
{
    struct km_rh_selector s;
    return km_rh_selector(text, &s, e, elen);
}

static int try_time(const char *text, char *e, size_t elen)
{
    double t;
    return km_rh_time(text, &t, e, elen);
}

static int try_duration(const char *text, char *e, size_t elen)
{
    double d;
    return km_rh_duration(text, &d, e, elen);
}

/* Every entry of bad[n] refused by fn with its word in the error. */
static void refuse_all(parser fn, const struct bad *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        err[0] = '\0';
        ck_assert_msg(fn(bad[i].text, err, sizeof err) == -1, "accepted '%s'",
                      bad[i].text);
        ck_assert_msg(strstr(err, bad[i].word), "'%s': error '%s' lacks '%s'",
                      bad[i].text, err, bad[i].word);
    }
}

START_TEST(test_selector_bad)
{
    // clang-format off
    static const struct bad bad[] = {
        {"", "empty"}, {"   ", "empty"}, {"{a=\"b\"}", "series name"},
        {"1abc", "series name"}, {"-x", "series name"}, {"name{", "label name"},
        {"name{a}", "'='"}, {"name{a=b}", "double quotes"},
        {"name{a='b'}", "double quotes"}, {"name{a=\"b\"", "'}'"},
        {"name{a=\"b", "closing quote"}, {"name{a!=\"b\"}", "'!='"},
        {"name{a=~\"b\"}", "'=~'"}, {"name{a!~\"b\"}", "'!~'"},
        {"name{a=\"b\" c=\"d\"}", "','"}, {"name{a=\"b\",a=\"c\"}", "twice"},
        {"name{a=\"\\x\"}", "escape"}, {"name{1a=\"b\"}", "label name"},
        {"name{a:b=\"c\"}", "'='"}, {"name}", "unexpected"}, {"name x", "unexpected"},
        {"name{a=\"b\"}x", "after '}'"}, {"name{a=\"b\"}{c=\"d\"}", "after '}'"},
    };
    // clang-format on

    refuse_all(try_selector, bad, sizeof bad / sizeof bad[0]);
}
END_TEST

START_TEST(test_selector_limits)
{
    struct km_rh_selector s;
    char text[12000];
    size_t n;

    /* a name of 160 bytes is fine, 161 is not */
    memset(text, 'a', 160);
    text[160] = '\0';
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), 0);
    text[160] = 'a';
    text[161] = '\0';
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "160"));

    /* 10 KiB of labels */
    n = (size_t)snprintf(text, sizeof text, "m{a=\"");
    memset(text + n, 'x', 10240);
    strcpy(text + n + 10240, "\"}");
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "1024"));

    /* label text of 513 bytes inside a 1 KiB selector */
    n = (size_t)snprintf(text, sizeof text, "m{a=\"");
    memset(text + n, 'x', 509); /* a="xxx...": 3 + 509 + 1 */
    strcpy(text + n + 509, "\"}");
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "512"));
    /* 512 exactly is fine */
    strcpy(text + n + 508, "\"}");
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), 0);

    /* 33 matchers */
    n = (size_t)snprintf(text, sizeof text, "m{");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "l%d=\"\",", i);
    strcpy(text + n, "}");
    ck_assert_int_eq(km_rh_selector(text, &s, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "32"));
}
END_TEST

START_TEST(test_matches)
{
    struct km_rh_selector s;
    const char *labels = "container=\"kato\",level=\"err\\\"or\"";

    ck_assert_int_eq(km_rh_selector("m", &s, err, sizeof err), 0);
    ck_assert(km_rh_matches(&s, labels));
    ck_assert(km_rh_matches(&s, ""));
    ck_assert_int_eq(km_rh_selector("m{container=\"kato\"}", &s, err, sizeof err), 0);
    ck_assert(km_rh_matches(&s, labels));
    ck_assert(!km_rh_matches(&s, ""));
    ck_assert(!km_rh_matches(&s, "container=\"katoo\""));
    ck_assert_int_eq(
        km_rh_selector("m{level=\"err\\\"or\",container=\"kato\"}", &s, err, sizeof err),
        0);
    ck_assert(km_rh_matches(&s, labels));
    ck_assert_int_eq(km_rh_selector("m{level=\"error\"}", &s, err, sizeof err), 0);
    ck_assert(!km_rh_matches(&s, labels));
    /* label="" matches a series without that label, as in PromQL */
    ck_assert_int_eq(km_rh_selector("m{host=\"\"}", &s, err, sizeof err), 0);
    ck_assert(km_rh_matches(&s, labels));
    ck_assert_int_eq(km_rh_selector("m{container=\"\"}", &s, err, sizeof err), 0);
    ck_assert(!km_rh_matches(&s, labels));
}
END_TEST

/* ---- times and durations ---------------------------------------------------- */

START_TEST(test_time)
{
    // clang-format off
    static const struct {
        const char *text; /* input */
        double t;         /* unix seconds */
    } good[] = {
        {"0", 0}, {"1767261600", 1767261600}, {"1767261600.5", 1767261600.5},
        {"1767261600.", 1767261600}, {".25", 0.25},
        {"2026-01-01T00:00:00Z", 1767225600}, {"2026-01-01T00:00:00.250Z", 1767225600.25},
        {"2026-01-01t00:00:00z", 1767225600}, {"2026-01-01 00:00:00Z", 1767225600},
        {"2026-01-01T02:00:00+02:00", 1767225600},
        {"2025-12-31T23:30:00-00:30", 1767225600},
        {"2024-02-29T00:00:00Z", 1709164800}, {"1970-01-01T00:00:00Z", 0},
    };
    /* no zone, no seconds, a one-digit month, no such day (twice), month
       or hour; two km_parse_iso takes (a negative hour, a signed offset) */
    static const struct bad bad[] = {
        {"", "not a time"}, {"-1", "not a time"}, {"+1", "not a time"},
        {"1e9", "not a time"}, {"nan", "not a time"}, {"inf", "not a time"},
        {"0x10", "not a time"}, {"1 ", "not a time"}, {" 1", "not a time"},
        {"1.2.3", "not a time"}, {".", "not a time"}, {"now", "not a time"},
        {"99999999999999", "out of range"},
        {"2026-01-01T00:00:00", "not a time"}, {"2026-01-01T00:00Z", "not a time"},
        {"2026-1-01T00:00:00Z", "not a time"}, {"2026-02-30T00:00:00Z", "not a time"},
        {"2025-02-29T00:00:00Z", "not a time"}, {"2026-13-01T00:00:00Z", "not a time"},
        {"2026-01-01T24:00:00Z", "not a time"}, {"2026-01-01T-1:00:00Z", "not a time"},
        {"2026-01-01T00:00:00+-1:00", "not a time"},
        {"2026-01-01T00:00:00+24:00", "not a time"},
        {"2026-01-01T00:00:00+0200", "not a time"},
        {" 2026-01-01T00:00:00Z", "not a time"}, {"2026-01-01T00:00:00.Z", "not a time"},
        {"2026-01-01T00:00:00Zjunk", "not a time"},
    };
    // clang-format on
    double t;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(km_rh_time(good[i].text, &t, err, sizeof err) == 0, "'%s': %s",
                      good[i].text, err);
        ck_assert_msg(fabs(t - good[i].t) < 1e-6, "'%s': %f", good[i].text, t);
    }
    refuse_all(try_time, bad, sizeof bad / sizeof bad[0]);
}
END_TEST

START_TEST(test_duration)
{
    static const struct {
        const char *text; /* input */
        double secs;      /* seconds */
    } good[] = {
        {"30", 30},     {"30s", 30},      {"1.5s", 1.5},  {"15m", 900},
        {"1h", 3600},   {"2d", 172800},   {"1w", 604800}, {"500ms", 0.5},
        {"1ms", 0.001}, {"0.001", 0.001}, {".5m", 30},    {"3650d", 315360000},
        {"0010s", 10},
    };
    static const struct bad bad[] = {
        {"", "not a duration"},       {"0", "more than 0"},
        {"0s", "more than 0"},        {"0.0", "more than 0"},
        {"-1", "not a duration"},     {"-5m", "not a duration"},
        {"nan", "not a duration"},    {"inf", "not a duration"},
        {"1ns", "unknown unit 'ns'"}, {"1us", "unknown unit"},
        {"0.0001", "1 ms"},           {"0.5ms", "1 ms"},
        {"1y", "unknown unit 'y'"},   {"1e3", "unknown unit"},
        {"3651d", "10 years"},        {"1h30m", "unknown unit"},
        {"1.5.5", "unknown unit"},    {".", "not a duration"},
        {"m", "not a duration"},      {" 1s", "not a duration"},
        {"1 s", "unknown unit"},      {"99999999999999999999999w", "10 years"},
    };
    double d;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(km_rh_duration(good[i].text, &d, err, sizeof err) == 0, "'%s': %s",
                      good[i].text, err);
        ck_assert_msg(fabs(d - good[i].secs) < 1e-9, "'%s': %f", good[i].text, d);
    }
    refuse_all(try_duration, bad, sizeof bad / sizeof bad[0]);
}
END_TEST

/* ---- query strings ------------------------------------------------------------ */

static struct km_rh_query *q;

static void q_setup(void)
{
    q = calloc(1, sizeof *q);
    ck_assert_ptr_nonnull(q);
}

static void q_teardown(void)
{
    free(q);
}

START_TEST(test_parse_good)
{
    ck_assert_int_eq(km_rh_parse("", KM_RH_RANGE, q, err, sizeof err), 0);
    ck_assert_uint_eq(q->nsel, 0);
    ck_assert(!q->has_from && !q->has_to && !q->has_step && !q->has_since);
    ck_assert_int_eq(km_rh_parse(NULL, KM_RH_RANGE, q, err, sizeof err), 0);

    ck_assert_int_eq(
        km_rh_parse("series=a&series=b%7Bc%3D%22d+e%22%7D&from=1&to=2026-01-01T00%3A00%3A"
                    "00Z&step=1m&token=secret&&access_token=x#frag&foo=1",
                    KM_RH_RANGE, q, err, sizeof err),
        0);
    ck_assert_uint_eq(q->nsel, 2);
    ck_assert_str_eq(q->sel[0].name, "a");
    ck_assert_str_eq(q->sel[1].name, "b");
    ck_assert_str_eq(val(&q->sel[1], 0), "d e");
    ck_assert(q->has_from && q->has_to && q->has_step && !q->has_since);
    ck_assert(q->from == 1 && q->to == 1767225600 && q->step == 60);

    ck_assert_int_eq(km_rh_parse("since=15m&series=x", KM_RH_RANGE, q, err, sizeof err),
                     0);
    ck_assert(q->has_since && q->since == 900);

    /* the listing takes match=, repeated */
    ck_assert_int_eq(
        km_rh_parse("match=a&match=b{c=\"d\"}", KM_RH_LISTING, q, err, sizeof err), 0);
    ck_assert_uint_eq(q->nsel, 2);
}
END_TEST

START_TEST(test_parse_bad)
{
    static const struct {
        const char *query;   /* input */
        enum km_rh_route rt; /* route */
        const char *word;    /* in the error */
    } bad[] = {
        {"foo=1&bar=2&series=a", KM_RH_RANGE, "'foo', 'bar'"},
        {"series=a&step=0", KM_RH_RANGE, "step: must be more than 0"},
        {"series=a&step=1ns", KM_RH_RANGE, "step: unknown unit 'ns'"},
        {"series=a&step=-1", KM_RH_RANGE, "step: not a duration"},
        {"series=a&step=nan", KM_RH_RANGE, "step: not a duration"},
        {"series=a&step=0.0001", KM_RH_RANGE, "step: shorter than 1 ms"},
        {"series=a&from=1&from=2", KM_RH_RANGE, "from: given twice"},
        {"series=a&from=1&since=1h", KM_RH_RANGE, "not both"},
        {"series=a&to=yesterday", KM_RH_RANGE, "to: not a time"},
        {"series=a&since=0", KM_RH_RANGE, "since: must be more than 0"},
        {"series=", KM_RH_RANGE, "series: empty selector"},
        {"series=a{b=c}", KM_RH_RANGE, "series: a label value must be in double"},
        {"series=a%00b", KM_RH_RANGE, "series: holds a NUL byte"},
        {"seri%00es=a", KM_RH_RANGE, "NUL"},
        {"series=a", KM_RH_LISTING, "unknown parameter 'series' (known: match)"},
        {"match=a&from=1", KM_RH_LISTING, "'from'"},
        {"match=1", KM_RH_LISTING, "match: a selector starts"},
        {"series=a&=x", KM_RH_RANGE, "unknown parameter ''"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(km_rh_parse(bad[i].query, bad[i].rt, q, err, sizeof err) == -1,
                      "accepted '%s'", bad[i].query);
        ck_assert_msg(strstr(err, bad[i].word), "'%s': error '%s' lacks '%s'",
                      bad[i].query, err, bad[i].word);
    }
}
END_TEST

START_TEST(test_parse_limits)
{
    size_t len = 10000 * 9 + 20 * 1024 + 64, n = 0;
    char *s = malloc(len);

    ck_assert_ptr_nonnull(s);
    /* 64 selectors are fine, 65 are not */
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(s + n, len - n, "series=a&");
    ck_assert_int_eq(km_rh_parse(s, KM_RH_RANGE, q, err, sizeof err), 0);
    ck_assert_uint_eq(q->nsel, 64);
    n += (size_t)snprintf(s + n, len - n, "series=a");
    ck_assert_int_eq(km_rh_parse(s, KM_RH_RANGE, q, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "more than 64"));

    /* 10,000 series and 10 KiB of labels: test_bad_input */
    /* a token of 10 KiB is the server's business, not an error here */
    n = (size_t)snprintf(s, len, "series=a&token=");
    memset(s + n, 't', 10240);
    s[n + 10240] = '\0';
    ck_assert_int_eq(km_rh_parse(s, KM_RH_RANGE, q, err, sizeof err), 0);

    /* many unknown parameters: the error stays bounded and names the first */
    n = 0;
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(s + n, len - n, "unknown%d=1&", i);
    ck_assert_int_eq(km_rh_parse(s, KM_RH_RANGE, q, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'unknown0'"));
    ck_assert_uint_lt(strlen(err), sizeof err - 1);
    free(s);
}
END_TEST

/* km_rh_range of query at now: its return, from and to in *from, *to. */
static int range_of(const char *query, double now, double *from, double *to)
{
    ck_assert_int_eq(km_rh_parse(query, KM_RH_RANGE, q, err, sizeof err), 0);
    return km_rh_range(q, now, from, to, err, sizeof err);
}

START_TEST(test_range)
{
    double from, to;
    const double now = 1767225600;

    ck_assert_int_eq(range_of("series=a", now, &from, &to), 0);
    ck_assert(to == now && from == now - 3600);
    ck_assert_int_eq(range_of("series=a&since=15m", now, &from, &to), 0);
    ck_assert(to == now && from == now - 900);
    ck_assert_int_eq(range_of("series=a&since=1h&to=1000000", now, &from, &to), 0);
    ck_assert(to == 1000000 && from == 1000000 - 3600);
    /* from == to is a single instant */
    ck_assert_int_eq(range_of("series=a&from=5&to=5", now, &from, &to), 0);
    /* from after to, or after the default to (now) */
    ck_assert_int_eq(range_of("series=a&from=2000&to=1000", now, &from, &to), -1);
    ck_assert_ptr_nonnull(strstr(err, "from (2000.000) is after to (1000.000)"));
    ck_assert_int_eq(range_of("series=a&from=1867225600", now, &from, &to), -1);
    /* since past 1970 starts at 0 */
    ck_assert_int_eq(range_of("series=a&since=520w&to=100", now, &from, &to), 0);
    ck_assert(from == 0);
}
END_TEST

/* ---- steps ---------------------------------------------------------------------- */

START_TEST(test_step)
{
    // clang-format off
    static const struct {
        double range, tier, want; /* input (want 0: default) */
        double step;              /* expected */
    } cases[] = {
        /* defaults: 1 h, 15 m on 1 s; 6 h, 24 h on 1 m; 7 d on 10 m; an instant */
        {3600, 1, 0, 5}, {900, 1, 0, 1}, {6 * 3600, 60, 0, 60}, {86400, 60, 0, 120},
        {7 * 86400, 600, 0, 1200}, {0, 1, 0, 1},
        /* explicit: as given, raised to the tier's, rounded to whole tier steps */
        {3600, 1, 1, 1}, {3600, 1, 0.5, 1}, {86400, 60, 90, 120}, {86400, 60, 3600, 3600},
        /* a tier step below 1 s; 1800 tier steps */
        {3600, 0.5, 0, 5}, {1e7, 7, 0, 12600},
    };
    // clang-format on
    double step, base = 1767225600;
    size_t points;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(km_rh_step(base, base + cases[i].range, cases[i].tier,
                                 cases[i].want, &step, &points, err, sizeof err) == 0,
                      "case %zu: %s", i, err);
        ck_assert_msg(fabs(step - cases[i].step) < 1e-9, "case %zu: step %f", i, step);
        ck_assert_uint_le(points, cases[i].want > 0 ? KM_RH_POINTS_MAX + 2 : 1000);
    }
    /* explicit steps giving more than 11,000 points: Prometheus's wording */
    ck_assert_int_eq(
        km_rh_step(base, base + 3600, 1, 0.001, &step, &points, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "exceeded maximum resolution of 11,000 points"));
    ck_assert_int_eq(
        km_rh_step(base, base + 11001, 1, 1, &step, &points, err, sizeof err), -1);
    ck_assert_int_eq(
        km_rh_step(base, base + 11000, 1, 1, &step, &points, err, sizeof err), 0);

    /* the default never gives more than 1000 points, whatever the range and
       alignment (fixed seed) */
    srand(14);
    for (int i = 0; i < 20000; i++) {
        static const double tiers[] = {1, 10, 60, 600, 0.25};
        double from = base + rand() % 100000 + (rand() % 1000) / 1000.0;
        double range = (double)(rand() % 2000000) * (rand() % 3 ? 1 : 0.01);
        double tier = tiers[rand() % 5];
        ck_assert_int_eq(
            km_rh_step(from, from + range, tier, 0, &step, &points, err, sizeof err), 0);
        ck_assert_msg(points <= 1000, "range %f tier %f: %zu points", range, tier,
                      points);
        ck_assert(step >= tier);
        ck_assert(fabs(step / tier - round(step / tier)) < 1e-6);
    }
}
END_TEST

/* ---- the handlers over a registry and a store ---------------------------------- */

#define T0 1767225600.0    /* 2026-01-01T00:00:00Z, aligned to every tier */
#define J  json_object_get /* short: the tests below read a lot of JSON */

static struct km_core core;
static struct km_series *cpu_kato, *cpu_redis, *mem;

/* Samples n seconds from T0: cpu_kato = i, cpu_redis = 100 + i, mem = 2 i. */
static void fill(int n)
{
    for (int i = 0; i < n; i++) {
        int64_t us = (int64_t)((T0 + i) * 1e6);
        km_series_set(cpu_kato, i, us);
        km_series_set(cpu_redis, 100 + i, us);
        km_series_set(mem, 2.0 * i, us);
        km_history_sample(core.history, T0 + i);
    }
}

static void store_setup(void)
{
    struct km_history_opts opts = {
        .ntiers = 3,
        .tier = {{1, 3600}, {60, 86400}, {600, 7 * 86400}},
        .flush_interval = 0,
        .path = NULL,
    };
    char why[256];

    km_log_set_level(KM_LOG_WARNING);
    memset(&core, 0, sizeof core);
    core.series = km_series_reg_new(0);
    ck_assert_ptr_nonnull(core.series);
    /* no loop: no timers; the test samples */
    core.history = km_history_new(NULL, core.series, &opts, why, sizeof why);
    ck_assert_msg(core.history != NULL, "%s", why);
    cpu_kato = km_series_get(core.series, "katomon_container_cpu_percent", "CPU",
                             KM_SERIES_GAUGE, "container=\"kato\"");
    cpu_redis = km_series_get(core.series, "katomon_container_cpu_percent", "CPU",
                              KM_SERIES_GAUGE, "container=\"redis\"");
    mem = km_series_get(core.series, "katomon_host_memory_used_bytes", "Memory used",
                        KM_SERIES_GAUGE, NULL);
    ck_assert(cpu_kato && cpu_redis && mem);
}

static void store_teardown(void)
{
    km_history_free(core.history);
    km_series_reg_free(core.series);
}

/* GET path?query at `now`, expecting `status`; the body (the caller's). */
static json_t *ask(const char *path, const char *query, double now, int status)
{
    json_t *body = NULL;
    int got = km_rest_history(&core, path, query, now, &body);

    ck_assert_ptr_nonnull(body);
    ck_assert_msg(got == status, "'%.80s': %d, not %d", query, got, status);
    return body;
}

/* A 400 whose detail holds `word`. */
static void expect_400(const char *query, const char *word)
{
    json_t *body = ask(KM_RH_PATH, query, T0 + 600, 400);
    const char *detail = json_string_value(J(body, "detail"));

    ck_assert_msg(detail && strstr(detail, word), "'%.80s': '%s' lacks '%s'", query,
                  detail ? detail : "(none)", word);
    json_decref(body);
}

/* A range query for sel on [from, to] (and more parameters) at now. */
static json_t *range(const char *sel, double from, double to, const char *more,
                     double now)
{
    char query[1024];
    snprintf(query, sizeof query, "series=%s&from=%.0f&to=%.0f%s", sel, from, to, more);
    return ask(KM_RH_PATH, query, now, 200);
}

static size_t nseries(json_t *body)
{
    return json_array_size(J(body, "series"));
}

static double num(json_t *v)
{
    ck_assert_msg(json_is_number(v), "not a number");
    return json_number_value(v);
}

/* Value i of point p. */
static double pv(json_t *p, size_t i)
{
    return num(json_array_get(p, i));
}

/* The series of an answer in family fam whose label `container` is
   container (or with no labels when it is NULL). */
static json_t *series_of(json_t *body, const char *fam, const char *container)
{
    json_t *s;
    size_t i;

    json_array_foreach(J(body, "series"), i, s)
    {
        const char *c = json_string_value(J(J(s, "labels"), "container"));
        if (strcmp(json_string_value(J(s, "name")), fam) == 0 &&
            (container ? c && strcmp(c, container) == 0 : !c))
            return s;
    }
    return NULL;
}

#define CPU "katomon_container_cpu_percent"
#define MEM "katomon_host_memory_used_bytes"

START_TEST(test_raw)
{
    json_t *body, *s, *pts;

    fill(120);
    body = range(CPU "%7Bcontainer%3D%22kato%22%7D", T0, T0 + 59, "&step=1s", T0 + 120);
    ck_assert(num(J(body, "from")) == T0 && num(J(body, "to")) == T0 + 59);
    ck_assert(num(J(body, "step")) == 1);
    ck_assert_int_eq(json_integer_value(J(J(body, "tier"), "index")), 0);
    ck_assert(json_is_false(J(body, "downsampled")));
    ck_assert_uint_eq(nseries(body), 1);
    ck_assert_ptr_nonnull(s = series_of(body, CPU, "kato"));
    ck_assert_str_eq(json_string_value(J(s, "type")), "gauge");
    ck_assert(json_is_true(J(s, "live")));
    pts = J(s, "points");
    ck_assert_uint_eq(json_array_size(pts), 60);
    for (size_t i = 0; i < 60; i++) {
        json_t *p = json_array_get(pts, i);
        ck_assert_uint_eq(json_array_size(p), 2);
        ck_assert(pv(p, 0) == T0 + (double)i && pv(p, 1) == (double)i);
    }
    json_decref(body);
}
END_TEST

START_TEST(test_downsampled)
{
    json_t *body, *pts, *p;

    fill(120);
    body = range(MEM, T0, T0 + 59, "&step=10", T0 + 120);
    ck_assert(json_is_true(J(body, "downsampled")));
    ck_assert(num(J(body, "step")) == 10);
    pts = J(series_of(body, MEM, NULL), "points");
    ck_assert_uint_eq(json_array_size(pts), 6);
    for (size_t i = 0; i < 6; i++) {
        double k = 20.0 * (double)i; /* mem = 2 i: 20 i .. 20 i + 18 */
        p = json_array_get(pts, i);
        ck_assert_uint_eq(json_array_size(p), 4);
        ck_assert(pv(p, 0) == T0 + 10.0 * (double)i);
        ck_assert(fabs(pv(p, 1) - (k + 9)) < 1e-9);
        ck_assert(pv(p, 2) == k && pv(p, 3) == k + 18);
    }
    json_decref(body);
}
END_TEST

START_TEST(test_coarse_tier)
{
    json_t *body, *tier, *pts, *p;

    fill(7200);
    /* two hours ago is past tier 0's hour: tier 1 (1 m) answers */
    body = range(CPU, T0, T0 + 3599, "", T0 + 7200);
    tier = J(body, "tier");
    ck_assert_int_eq(json_integer_value(J(tier, "index")), 1);
    ck_assert(num(J(tier, "step")) == 60 && num(J(tier, "retention")) == 86400);
    ck_assert(json_is_true(J(body, "downsampled")));
    ck_assert(num(J(body, "step")) == 60);
    ck_assert_uint_eq(nseries(body), 2);
    pts = J(series_of(body, CPU, "redis"), "points");
    ck_assert_uint_eq(json_array_size(pts), 60);
    p = json_array_get(pts, 1); /* redis = 100 + i: 160 .. 219 */
    ck_assert(pv(p, 0) == T0 + 60);
    ck_assert(fabs(pv(p, 1) - 189.5) < 1e-9);
    ck_assert(pv(p, 2) == 160 && pv(p, 3) == 219);
    json_decref(body);
}
END_TEST

START_TEST(test_several_and_filters)
{
    json_t *body;

    fill(60);
    /* a family by name, plus another, plus one already matched */
    body = range(CPU "&series=" MEM "&series=" CPU "{container=\"redis\"}", T0, T0 + 59,
                 "", T0 + 60);
    ck_assert_uint_eq(nseries(body), 3);
    ck_assert_ptr_nonnull(series_of(body, CPU, "kato"));
    ck_assert_ptr_nonnull(series_of(body, CPU, "redis"));
    ck_assert_ptr_nonnull(series_of(body, MEM, NULL));
    json_decref(body);

    /* the label filter */
    body = range(CPU "{container=\"redis\"}", T0, T0 + 59, "", T0 + 60);
    ck_assert_uint_eq(nseries(body), 1);
    ck_assert_ptr_nonnull(series_of(body, CPU, "redis"));
    json_decref(body);

    /* nothing matches: 200 with no series */
    body = ask(KM_RH_PATH, "series=katomon_nothing", T0 + 60, 200);
    ck_assert_uint_eq(nseries(body), 0);
    json_decref(body);
    body = ask(KM_RH_PATH, "series=" CPU "{container=\"x\"}", T0 + 60, 200);
    ck_assert_uint_eq(nseries(body), 0);
    json_decref(body);

    /* a range before anything was sampled: the series, no points */
    body = range(MEM, T0 - 600, T0 - 1, "", T0 + 60);
    ck_assert_uint_eq(json_array_size(J(series_of(body, MEM, NULL), "points")), 0);
    json_decref(body);
}
END_TEST

START_TEST(test_listing)
{
    json_t *body, *s, *tiers;

    fill(30);
    km_series_stale(cpu_redis);
    body = ask(KM_RH_PATH_SERIES, "", T0 + 30, 200);
    ck_assert_uint_eq(nseries(body), 3);
    ck_assert_int_eq(json_integer_value(J(body, "count")), 3);
    ck_assert_int_eq(json_integer_value(J(body, "max_series")), 0);
    ck_assert_int_eq(json_integer_value(J(body, "refused")), 0);
    tiers = J(body, "tiers");
    ck_assert_uint_eq(json_array_size(tiers), 3);
    ck_assert(num(J(json_array_get(tiers, 2), "step")) == 600);
    ck_assert_ptr_nonnull(s = series_of(body, CPU, "redis"));
    ck_assert(json_is_false(J(s, "live")));
    s = series_of(body, MEM, NULL);
    ck_assert_str_eq(json_string_value(J(s, "help")), "Memory used");
    ck_assert_str_eq(json_string_value(J(s, "type")), "gauge");
    ck_assert_uint_eq(json_object_size(J(s, "labels")), 0);
    ck_assert(num(J(s, "first")) == T0 && num(J(s, "last")) == T0 + 29);
    json_decref(body);

    /* a match filter */
    body = ask(KM_RH_PATH_SERIES, "match=" CPU "%7Bcontainer%3D%22kato%22%7D", T0, 200);
    ck_assert_int_eq(json_integer_value(J(body, "count")), 1);
    s = json_array_get(J(body, "series"), 0);
    ck_assert_str_eq(json_string_value(J(J(s, "labels"), "container")), "kato");
    json_decref(body);

    /* a bad filter */
    json_decref(ask(KM_RH_PATH_SERIES, "match=x{", T0, 400));
}
END_TEST

START_TEST(test_bad_input)
{
    size_t len = 10000 * 9 + 20 * 1024, n = 0;
    char *s = malloc(len);

    fill(10);
    ck_assert_ptr_nonnull(s);
    expect_400("", "series: missing");
    expect_400("series=a&from=2000000000&to=1000000000", "is after to");
    expect_400("series=a&step=0", "step:");
    expect_400("series=a&step=1ns", "step:");
    expect_400("series=a&step=0.001&from=0&to=3600", "11,000 points");
    expect_400("series=a&bogus=1", "'bogus'");
    expect_400("series=a{b!=\"c\"}", "series:");

    for (int i = 0; i < 10000; i++)
        n += (size_t)snprintf(s + n, len - n, "series=a&");
    expect_400(s, "more than 64");

    n = (size_t)snprintf(s, len, "series=m%%7Ba%%3D%%22");
    memset(s + n, 'x', 10240);
    strcpy(s + n + 10240, "%22%7D");
    expect_400(s, "series: longer than 1024");
    free(s);
}
END_TEST

START_TEST(test_too_many_series)
{
    char labels[64], query[64 * 40] = "";
    json_t *body;

    fill(1);
    for (int i = 0; i < KM_RH_SERIES_MAX + 1; i++) {
        snprintf(labels, sizeof labels, "container=\"c%d\"", i);
        ck_assert_ptr_nonnull(
            km_series_get(core.series, "katomon_many", "", KM_SERIES_GAUGE, labels));
    }
    expect_400("series=katomon_many", "more than 256 series");
    /* each alone is fine */
    body = ask(KM_RH_PATH, "series=katomon_many{container=\"c7\"}", T0, 200);
    ck_assert_uint_eq(nseries(body), 1);
    json_decref(body);
    /* 64 selectors matching the same two series: two, not 128 */
    for (int i = 0; i < 64; i++)
        strcat(query, "series=" CPU "&");
    body = ask(KM_RH_PATH, query, T0, 200);
    ck_assert_uint_eq(nseries(body), 2);
    json_decref(body);
}
END_TEST

START_TEST(test_disabled)
{
    struct km_history *h = core.history;
    json_t *body;
    const char *detail;

    core.history = NULL;
    body = ask(KM_RH_PATH, "series=a", T0, 503);
    detail = json_string_value(J(body, "detail"));
    ck_assert_ptr_nonnull(detail);
    ck_assert_ptr_nonnull(strstr(detail, "[history] enabled"));
    json_decref(body);
    json_decref(ask(KM_RH_PATH_SERIES, "", T0, 503));
    core.history = h;
}
END_TEST

/* km_rest_handle for method path?query, expecting status; the body. */
static json_t *route(const char *method, const char *path, const char *query, int status,
                     char *allow)
{
    struct km_rest_call call = {
        .method = method, .path = path, .query = query, .body = "", .body_len = 0};
    json_t *body = NULL;

    ck_assert_int_eq(km_rest_handle(&core, NULL, &call, &body, allow, 64, NULL, NULL),
                     status);
    ck_assert_ptr_nonnull(body);
    return body;
}

/* Through the REST dispatcher: GET and HEAD reach the handler, the rest 405. */
START_TEST(test_routing)
{
    json_t *body;
    char allow[64];

    fill(10);
    body = route("GET", KM_RH_PATH, "series=" MEM, 200, allow);
    ck_assert_uint_eq(nseries(body), 1);
    json_decref(body);
    json_decref(route("HEAD", KM_RH_PATH, "step=0", 400, allow));
    body = route("GET", KM_RH_PATH_SERIES, "", 200, allow);
    ck_assert_int_eq(json_integer_value(J(body, "count")), 3);
    json_decref(body);
    json_decref(route("POST", KM_RH_PATH_SERIES, "", 405, allow));
    ck_assert_str_eq(allow, "GET, HEAD");
}
END_TEST

static Suite *rest_history_suite(void)
{
    Suite *s = suite_create("rest_history");
    TCase *tc = tcase_create("parsers");
    TCase *tq = tcase_create("query");
    TCase *th = tcase_create("handler");

    tcase_add_test(tc, test_selector_good);
    tcase_add_test(tc, test_selector_bad);
    tcase_add_test(tc, test_selector_limits);
    tcase_add_test(tc, test_matches);
    tcase_add_test(tc, test_time);
    tcase_add_test(tc, test_duration);
    tcase_add_test(tc, test_step);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(tq, q_setup, q_teardown);
    tcase_add_test(tq, test_parse_good);
    tcase_add_test(tq, test_parse_bad);
    tcase_add_test(tq, test_parse_limits);
    tcase_add_test(tq, test_range);
    suite_add_tcase(s, tq);

    tcase_add_checked_fixture(th, store_setup, store_teardown);
    tcase_add_test(th, test_raw);
    tcase_add_test(th, test_downsampled);
    tcase_add_test(th, test_coarse_tier);
    tcase_add_test(th, test_several_and_filters);
    tcase_add_test(th, test_listing);
    tcase_add_test(th, test_bad_input);
    tcase_add_test(th, test_too_many_series);
    tcase_add_test(th, test_disabled);
    tcase_add_test(th, test_routing);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rest_history_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
