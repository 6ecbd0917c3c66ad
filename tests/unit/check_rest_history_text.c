/*
 * check_rest_history_text.c - GET /api/v1/history written as JSON text
 * (km_rest_history_text, core/rest_history_text.c) against the json_t
 * answer it replaced: the renderer as it was before (kept below, verbatim
 * but for names) builds the answer of the same query over the same store,
 * and the two are compared as JSON values, object members in the same
 * order:
 *
 *   - exactly against that json_t (the text's numbers parse back to the
 *     very doubles: km_metrics_value, 15 or 17 digits);
 *   - against what the old json_t was sent as (json_dumps, KM_JSON_FLAGS:
 *     %.15g), reals within 1e-14 relative, the rounding of 15 digits;
 *   - byte for byte, for values that 15 digits hold exactly.
 *
 * Over raw, downsampled, default-step and coarse-tier answers, with NaN and
 * infinite values (null), doubles needing 17 digits, whole values past
 * 2^53 (still reals), -0, a label value with quotes, a backslash, a newline
 * and UTF-8, a stale series with no points, and an answer with no series;
 * then the errors (400, 503), the same {"detail"} as km_rest_history's.
 *
 * Leaks show up under ASan (--enable-sanitizers).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <jansson.h>

#include "bus.h" /* KM_JSON_FLAGS */
#include "core.h"
#include "history.h"
#include "log.h"
#include "rest.h"
#include "rest_history.h"
#include "series.h"

#define T0    1767225600.0 /* 2026-01-01T00:00:00Z, aligned to every tier */
#define PCT   "katomon_t_cpu_percent"
#define NOISY "katomon_t_noisy"
#define GAPPY "katomon_t_gappy_total"
#define EMPTY "katomon_t_empty"

static struct km_core core;
static struct km_series *pct_a, *pct_b, *noisy, *gappy, *empty;

/* ---- the renderer before the text (rest_history.c until h14-resttext) ---- */

static json_t *old_num(double x)
{
    if (!isfinite(x))
        return json_null();
    if (x == floor(x) && fabs(x) < 9007199254740992.0)
        return json_integer((json_int_t)x);
    return json_real(x);
}

static json_t *old_labels(const char *labels)
{
    char k[KM_SERIES_LABELS_MAX + 1], v[KM_SERIES_LABELS_MAX + 1];
    const char *p = labels ? labels : "";
    json_t *o = json_object();

    while (o && km_labels_next(&p, k, sizeof k, v, sizeof v) == 1)
        json_object_set_new(o, k, json_string(v));
    return o;
}

static json_t *old_point(const struct km_history_point *pt, int downsampled)
{
    if (downsampled)
        return json_pack("[o, o, o, o]", old_num(pt->t), old_num(pt->v), old_num(pt->min),
                         old_num(pt->max));
    return json_pack("[o, o]", old_num(pt->t), old_num(pt->v));
}

static json_t *old_series(const struct km_series *s, unsigned tier, double from,
                          double to, double step, int downsampled,
                          struct km_history_point *buf, size_t max)
{
    long n = km_history_query(core.history, s, tier, from, to, step, buf, max);
    json_t *points = json_array();

    for (long i = 0; points && i < n; i++)
        json_array_append_new(points, old_point(&buf[i], downsampled));
    return json_pack("{s:s, s:o, s:s, s:b, s:o}", "name", s->family->name, "labels",
                     old_labels(s->labels), "type",
                     s->family->type == KM_SERIES_COUNTER ? "counter" : "gauge", "live",
                     s->live, "points", points ? points : json_array());
}

/* The old answer to a good range query at now: the envelope from the
   public parsers, the series each selector's family holds, in order. */
static json_t *old_answer(const char *query, double now)
{
    struct km_rh_query *q = malloc(sizeof *q);
    char e[400];
    double from, to, step;
    size_t points;
    unsigned tier;
    json_t *list = json_array();

    ck_assert_ptr_nonnull(q);
    ck_assert_msg(km_rh_parse(query, KM_RH_RANGE, q, e, sizeof e) == 0, "%s", e);
    ck_assert(km_rh_range(q, now, &from, &to, e, sizeof e) == 0);
    tier = km_history_pick(core.history, from, now);
    const struct km_history_tier *t = km_history_tier(core.history, tier);
    ck_assert(km_rh_step(from, to, t->step, q->has_step ? q->step : 0, &step, &points, e,
                         sizeof e) == 0);
    int downsampled = tier > 0 || step > t->step * (1 + 1e-9);
    struct km_history_point *buf = calloc(points ? points : 1, sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    for (unsigned i = 0; i < q->nsel; i++) {
        struct km_family *f = km_series_family(core.series, q->sel[i].name);
        for (struct km_series *s = f ? f->first : NULL; s; s = s->next)
            json_array_append_new(
                list, old_series(s, tier, from, to, step, downsampled, buf, points));
    }
    free(buf);
    free(q);
    return json_pack("{s:o, s:o, s:o, s:{s:i, s:o, s:o}, s:b, s:o}", "from",
                     old_num(from), "to", old_num(to), "step", old_num(step), "tier",
                     "index", (int)tier, "step", old_num(t->step), "retention",
                     old_num(t->retention), "downsampled", downsampled, "series", list);
}

/* ---- comparing JSON values --------------------------------------------------- */

/* What the comparison saw (the test checks its data had them). */
static size_t seen_null, seen_real, seen_int;

/*
 * 0 when a and b are the same JSON value, object members in the same
 * order, reals within a relative rel; else -1 with where and why in why.
 * Plain ifs, not ck_assert per value: an answer has 100,000 numbers.
 */
static int same(json_t *a, json_t *b, double rel, const char *at, char *why, size_t len)
{
    char sub[160];

    if (json_typeof(a) != json_typeof(b))
        return snprintf(why, len, "%s: types %d and %d", at, json_typeof(a),
                        json_typeof(b)),
               -1;
    if (json_is_object(a)) {
        void *ia = json_object_iter(a), *ib = json_object_iter(b);
        if (json_object_size(a) != json_object_size(b))
            return snprintf(why, len, "%s: %zu and %zu members", at, json_object_size(a),
                            json_object_size(b)),
                   -1;
        for (; ia && ib;
             ia = json_object_iter_next(a, ia), ib = json_object_iter_next(b, ib)) {
            const char *k = json_object_iter_key(ia);
            if (strcmp(k, json_object_iter_key(ib)) != 0)
                return snprintf(why, len, "%s: member '%s' where '%s' was", at, k,
                                json_object_iter_key(ib)),
                       -1;
            snprintf(sub, sizeof sub, "%.100s.%s", at, k);
            if (same(json_object_iter_value(ia), json_object_iter_value(ib), rel, sub,
                     why, len) < 0)
                return -1;
        }
    } else if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return snprintf(why, len, "%s: %zu and %zu items", at, json_array_size(a),
                            json_array_size(b)),
                   -1;
        for (size_t i = 0; i < json_array_size(a); i++) {
            snprintf(sub, sizeof sub, "%.100s[%zu]", at, i);
            if (same(json_array_get(a, i), json_array_get(b, i), rel, sub, why, len) < 0)
                return -1;
        }
    } else if (json_is_real(a)) {
        double x = json_real_value(a), y = json_real_value(b);
        seen_real++;
        if (x != y && !(fabs(x - y) <= rel * fabs(y)))
            return snprintf(why, len, "%s: %.17g and %.17g", at, x, y), -1;
    } else if (json_is_integer(a)) {
        seen_int++;
        if (json_integer_value(a) != json_integer_value(b))
            return snprintf(why, len, "%s: %lld and %lld", at,
                            (long long)json_integer_value(a),
                            (long long)json_integer_value(b)),
                   -1;
    } else if (json_is_string(a)) {
        if (!json_equal(a, b))
            return snprintf(why, len, "%s: \"%s\" and \"%s\"", at, json_string_value(a),
                            json_string_value(b)),
                   -1;
    } else if (json_is_null(a))
        seen_null++;
    return 0;
}

/*
 * The text answer to query at now against the old json_t and the old
 * text: the same value; byte for byte too when `bytes`. Returns the parsed
 * new answer (the caller's).
 */
static json_t *check_same(const char *query, double now, int bytes)
{
    struct km_rh_text text;
    json_t *old = old_answer(query, now), *old_parsed, *got, *through_rest = NULL;
    char *old_text = json_dumps(old, KM_JSON_FLAGS), why[512] = "";
    json_error_t jerr;

    ck_assert_int_eq(km_rest_history_text(&core, query, now, &text), 200);
    ck_assert_ptr_nonnull(text.data);
    ck_assert_uint_eq(strlen(text.data), text.len);
    got = json_loadb(text.data, text.len, 0, &jerr);
    ck_assert_msg(got != NULL, "'%s': not JSON: %s at %d", query, jerr.text,
                  jerr.position);
    ck_assert_msg(same(got, old, 0, "$", why, sizeof why) == 0, "'%s' exactly: %s", query,
                  why);
    old_parsed = json_loads(old_text, 0, NULL);
    ck_assert_ptr_nonnull(old_parsed);
    ck_assert_msg(same(got, old_parsed, 1e-14, "$", why, sizeof why) == 0,
                  "'%s' as sent before: %s", query, why);
    if (bytes)
        ck_assert_msg(strcmp(text.data, old_text) == 0, "'%s': %.300s\nwas %.300s", query,
                      text.data, old_text);
    /* the json_t route gives the same */
    ck_assert_int_eq(km_rest_history(&core, KM_RH_PATH, query, now, &through_rest), 200);
    ck_assert_msg(same(through_rest, got, 0, "$", why, sizeof why) == 0, "%s", why);
    json_decref(through_rest);
    json_decref(old_parsed);
    json_decref(old);
    free(old_text);
    km_rh_text_free(&text);
    return got;
}

/* ---- the store --------------------------------------------------------------- */

/* A double that takes 17 digits, from k. */
static double noisy_value(int k)
{
    switch (k % 8) {
    case 0:
        return sin(k) * 1000.0 / 7.0;
    case 1:
        return -0.0;
    case 2:
        return 9007199254740992.0 * (1 + k % 5); /* 2^53 and up: whole reals */
    case 3:
        return 1e-7 * k / 3.0;
    case 4:
        return -1e300 / k;
    default:
        return (double)k / 3.0;
    }
}

/* n seconds of samples from T0: pct_a 2-decimal percents, pct_b whole
   ones, noisy 17-digit doubles, gappy a counter with NaN and infinities;
   empty is stale from the start (no points). */
static void fill(int n)
{
    for (int i = 0; i < n; i++) {
        int64_t us = (int64_t)((T0 + i) * 1e6);
        km_series_set(pct_a, (double)((i * 37) % 10000) / 100.0, us);
        km_series_set(pct_b, (double)(i % 100), us);
        km_series_set(noisy, noisy_value(i), us);
        km_series_set(gappy,
                      i % 7 == 3    ? NAN
                      : i % 97 == 5 ? INFINITY
                      : i % 89 == 6 ? -INFINITY
                                    : (double)i * 1000,
                      us);
        km_series_stale(empty);
        km_history_sample(core.history, T0 + i);
    }
}

static void setup(void)
{
    struct km_history_opts opts = {
        .ntiers = 3,
        .tier = {{1, 3600}, {60, 86400}, {600, 7 * 86400}},
        .flush_interval = 0,
        .path = NULL,
    };
    char why[256], labels[256] = "";

    km_log_set_level(KM_LOG_WARNING);
    memset(&core, 0, sizeof core);
    core.series = km_series_reg_new(0);
    ck_assert_ptr_nonnull(core.series);
    core.history = km_history_new(NULL, core.series, &opts, why, sizeof why);
    ck_assert_msg(core.history != NULL, "%s", why);
    ck_assert_int_eq(
        km_labels_add(labels, sizeof labels, "container", "we\"ird\\na\nme \xc3\xa9"), 0);
    ck_assert_int_eq(km_labels_add(labels, sizeof labels, "a", "first"), 0);
    pct_a = km_series_get(core.series, PCT, "CPU", KM_SERIES_GAUGE, labels);
    pct_b = km_series_get(core.series, PCT, "CPU", KM_SERIES_GAUGE, "container=\"b\"");
    noisy = km_series_get(core.series, NOISY, "", KM_SERIES_GAUGE, NULL);
    gappy = km_series_get(core.series, GAPPY, "", KM_SERIES_COUNTER, NULL);
    empty = km_series_get(core.series, EMPTY, "", KM_SERIES_GAUGE, NULL);
    ck_assert(pct_a && pct_b && noisy && gappy && empty);
    fill(7200);
    seen_null = seen_real = seen_int = 0;
}

static void teardown(void)
{
    km_history_free(core.history);
    km_series_reg_free(core.series);
}

#define ALL "series=" PCT "&series=" NOISY "&series=" GAPPY "&series=" EMPTY

/* ---- the tests ----------------------------------------------------------------- */

START_TEST(test_raw)
{
    char q[512];
    json_t *got;

    snprintf(q, sizeof q, ALL "&from=%.0f&to=%.0f&step=1", T0 + 3600, T0 + 7199);
    got = check_same(q, T0 + 7200, 0);
    ck_assert(json_is_false(json_object_get(got, "downsampled")));
    ck_assert_uint_eq(json_array_size(json_object_get(got, "series")), 5);
    /* the data had what the test is about */
    ck_assert_uint_gt(seen_null, 3600 / 7);
    ck_assert_uint_gt(seen_real, 3600);
    ck_assert_uint_gt(seen_int, 3600);
    json_decref(got);

    /* a fractional from, one series */
    snprintf(q, sizeof q, "series=" NOISY "&from=%.2f&to=%.0f&step=1", T0 + 7000.25,
             T0 + 7199);
    json_decref(check_same(q, T0 + 7200, 0));
}
END_TEST

/* Values 15 digits hold: the very bytes of before. */
START_TEST(test_raw_bytes)
{
    char q[512];

    snprintf(q, sizeof q, "series=" PCT "&from=%.0f&to=%.0f&step=1", T0 + 3600,
             T0 + 7199);
    json_decref(check_same(q, T0 + 7200, 1));
    ck_assert_uint_gt(seen_real, 3000);
}
END_TEST

START_TEST(test_downsampled)
{
    char q[512];
    json_t *got;

    snprintf(q, sizeof q, ALL "&from=%.0f&to=%.0f&step=10", T0 + 3600, T0 + 7199);
    got = check_same(q, T0 + 7200, 0);
    ck_assert(json_is_true(json_object_get(got, "downsampled")));
    ck_assert_uint_gt(seen_null, 0);
    json_decref(got);
    /* the default step */
    snprintf(q, sizeof q, ALL "&from=%.0f&to=%.0f", T0 + 3600, T0 + 7199);
    json_decref(check_same(q, T0 + 7200, 0));
    snprintf(q, sizeof q, ALL "&since=30m");
    json_decref(check_same(q, T0 + 7200.5, 0));
}
END_TEST

START_TEST(test_coarse)
{
    char q[512];
    json_t *got;

    /* older than tier 0's hour: tier 1 */
    snprintf(q, sizeof q, ALL "&from=%.0f&to=%.0f", T0, T0 + 3599);
    got = check_same(q, T0 + 7200, 0);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(got, "tier"), "index")), 1);
    ck_assert_uint_gt(json_array_size(json_object_get(
                          json_array_get(json_object_get(got, "series"), 0), "points")),
                      0);
    json_decref(got);
}
END_TEST

START_TEST(test_empty)
{
    json_t *got;

    got = check_same("series=katomon_nothing", T0 + 7200, 1);
    ck_assert_uint_eq(json_array_size(json_object_get(got, "series")), 0);
    json_decref(got);
    got = check_same("series=" EMPTY, T0 + 7200, 1);
    ck_assert_uint_eq(json_array_size(json_object_get(
                          json_array_get(json_object_get(got, "series"), 0), "points")),
                      0);
    json_decref(got);
}
END_TEST

/* The text of an error against km_rest_history's body. */
static void check_error(const char *query, int status)
{
    struct km_rh_text text;
    json_t *body = NULL, *got;

    ck_assert_int_eq(km_rest_history(&core, KM_RH_PATH, query, T0 + 7200, &body), status);
    ck_assert_int_eq(km_rest_history_text(&core, query, T0 + 7200, &text), status);
    ck_assert_ptr_nonnull(text.data);
    got = json_loads(text.data, 0, NULL);
    ck_assert_msg(got && json_equal(got, body), "'%s': %s", query, text.data);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(got, "detail")));
    json_decref(got);
    json_decref(body);
    km_rh_text_free(&text);
}

START_TEST(test_errors)
{
    struct km_history *h = core.history;

    check_error("", 400);
    check_error("series=a&step=0", 400);
    check_error("series=a{b!=\"c\"}", 400);
    check_error("series=a&from=2000000000&to=1000000000", 400);
    core.history = NULL;
    check_error("series=a", 503);
    core.history = h;
}
END_TEST

static Suite *rest_history_text_suite(void)
{
    Suite *s = suite_create("rest_history_text");
    TCase *tc = tcase_create("text");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_raw);
    tcase_add_test(tc, test_raw_bytes);
    tcase_add_test(tc, test_downsampled);
    tcase_add_test(tc, test_coarse);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(rest_history_text_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
