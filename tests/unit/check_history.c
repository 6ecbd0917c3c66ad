/*
 * check_history.c - unit tests of the history store (core/history.c,
 * core/history_file.c): tiers and their aggregates, the ring's wrap,
 * query bucketing and bounds, the file (flush and reload, every truncation
 * and bit flip refused and set aside, a missing file, a changed tier
 * table, the series cap on load), stale series dropped, the timers and
 * the forked writer. Prints the bytes reserved per stored tier-0 sample.
 *
 * Samples are taken with km_history_sample at synthetic times; only the
 * timer test runs the loop (polled with a deadline, no sleeps). Leaks are
 * checked by running this under ASan (--enable-sanitizers).
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "log.h"
#include "series.h"

#define T0     1700000400.0 /* first sample time of most tests (a multiple of 600 and 7) */
#define PMAX   20000        /* points a test query may return */
#define BIG_TO 4e12         /* a `to` after everything */

static struct km_series_reg *reg;
static char dir[64];        /* the test's private directory */
static char path[128];      /* dir/history.db */
static int log_errors;      /* lines at warning or worse */
static char log_last[1024]; /* the last of them */
static struct km_history_point p1[PMAX], p2[PMAX];

static void log_hook(enum km_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (level > KM_LOG_WARNING)
        return;
    log_errors++;
    snprintf(log_last, sizeof log_last, "%s", line);
}

static void setup(void)
{
    reg = km_series_reg_new(0);
    ck_assert_ptr_nonnull(reg);
    /* tmpfs when there is one: the file tests fsync a few thousand times */
    snprintf(dir, sizeof dir, "%s/check_history.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/history.db", dir);
    log_errors = 0;
    log_last[0] = '\0';
    km_log_set_hook(log_hook, NULL);
    km_log_set_level(KM_LOG_WARNING);
}

/* Removes every file of dir. */
static void clean_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
}

static void teardown(void)
{
    km_series_reg_free(reg);
    clean_dir();
    rmdir(dir);
    km_log_set_hook(NULL, NULL);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- helpers ---------------------------------------------------------------------- */

/* Options: "STEP:RETENTION" pairs in seconds, e.g. "1:60 10:600". */
static struct km_history_opts opts_of(const char *tiers, const char *file)
{
    struct km_history_opts o = {0};
    const char *p = tiers;
    int n;
    while (o.ntiers < KM_HISTORY_TIERS_MAX &&
           sscanf(p, "%lf:%lf%n", &o.tier[o.ntiers].step, &o.tier[o.ntiers].retention,
                  &n) == 2) {
        o.ntiers++;
        p += n;
    }
    o.path = file;
    return o;
}

static struct km_history *store(const char *tiers, const char *file)
{
    char err[256] = "";
    struct km_history_opts o = opts_of(tiers, file);
    struct km_history *h = km_history_new(NULL, reg, &o, err, sizeof err);
    ck_assert_msg(h != NULL, "km_history_new: %s", err);
    return h;
}

static struct km_series *series(const char *name, const char *labels)
{
    struct km_series *s = km_series_get(reg, name, "help text", KM_SERIES_GAUGE, labels);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Sets s to v and samples the store at t. */
static void feed(struct km_history *h, struct km_series *s, double t, double v)
{
    km_series_set(s, v, (int64_t)(t * 1e6));
    km_history_sample(h, t);
}

/* A known test value: quarters, so sums and averages are exact. */
static double val(long i)
{
    return (double)((i * 37) % 101) / 4.0 - 5.0;
}

static long query(struct km_history *h, struct km_series *s, unsigned tier, double from,
                  double to, double step, struct km_history_point *out)
{
    return km_history_query(h, s, tier, from, to, step, out, PMAX);
}

/* Byte-exact equality of two query answers (NaN compares equal to itself). */
static void same_points(const struct km_history_point *a, long na,
                        const struct km_history_point *b, long nb)
{
    ck_assert_int_eq(na, nb);
    ck_assert_msg(memcmp(a, b, (size_t)na * sizeof *a) == 0, "points differ");
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* How many PATH.corrupt-* files dir holds (removing them when `rm`). */
static int corrupt_files(int rm)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    char p[512];
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "history.db.corrupt-", 19) == 0) {
            n++;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (rm)
                unlink(p);
        }
    if (d)
        closedir(d);
    return n;
}

static unsigned char *read_all(const char *p, size_t *len)
{
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *p, const unsigned char *buf, size_t len)
{
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* ---- tiers and aggregation ----------------------------------------------------------
 */

START_TEST(test_raw_and_tiers)
{
    struct km_history *h = store("1:600 10:3600 60:7200", NULL);
    struct km_series *s = series("km_test_value", "");
    for (long i = 0; i < 125; i++)
        feed(h, s, T0 + i, val(i));

    /* tier 0 at its step: every sample raw */
    long n = query(h, s, 0, T0, T0 + 1000, 1, p1);
    ck_assert_int_eq(n, 125);
    for (long i = 0; i < n; i++) {
        ck_assert_double_eq(p1[i].t, T0 + i);
        ck_assert_double_eq(p1[i].v, val(i));
        ck_assert_double_eq(p1[i].min, val(i));
        ck_assert_double_eq(p1[i].max, val(i));
    }
    /* tier 1 (10 s): 12 closed buckets and the open one (120..124) */
    n = query(h, s, 1, T0, T0 + 1000, 10, p1);
    ck_assert_int_eq(n, 13);
    for (long b = 0; b < n; b++) {
        long k = b < 12 ? 10 : 5;
        double min = INFINITY, max = -INFINITY, sum = 0;
        for (long i = b * 10; i < b * 10 + k; i++) {
            min = fmin(min, val(i));
            max = fmax(max, val(i));
            sum += val(i);
        }
        ck_assert_double_eq(p1[b].t, T0 + b * 10);
        ck_assert_double_eq(p1[b].min, min);
        ck_assert_double_eq(p1[b].max, max);
        ck_assert_double_eq(p1[b].v, sum / k);
    }
    /* tier 2 (60 s): two closed buckets, one open */
    n = query(h, s, 2, T0, T0 + 1000, 60, p1);
    ck_assert_int_eq(n, 3);
    double sum = 0;
    for (long i = 60; i < 120; i++)
        sum += val(i);
    ck_assert_double_eq(p1[1].v, sum / 60);
    /* tier 1 re-bucketed at 30 s equals tier 0 bucketed at 30 s */
    long n0 = query(h, s, 0, T0, T0 + 1000, 30, p1);
    long n1 = query(h, s, 1, T0, T0 + 1000, 30, p2);
    ck_assert_int_eq(n0, 5);
    same_points(p1, n0, p2, n1);
    ck_assert_double_eq(km_history_first(h, s), T0);
    ck_assert_double_eq(km_history_last(h, s), T0 + 124);
    km_history_free(h);
}
END_TEST

START_TEST(test_pick_and_tiers)
{
    struct km_history *h = store("1:3600 60:86400 600:604800", NULL);
    ck_assert_uint_eq(km_history_ntiers(h), 3);
    ck_assert_double_eq(km_history_tier(h, 1)->step, 60);
    ck_assert_ptr_null(km_history_tier(h, 3));
    ck_assert_uint_eq(km_history_pick(h, T0 - 600, T0), 0);
    ck_assert_uint_eq(km_history_pick(h, T0 - 3600, T0), 0);
    ck_assert_uint_eq(km_history_pick(h, T0 - 3601, T0), 1);
    ck_assert_uint_eq(km_history_pick(h, T0 - 86400 * 2, T0), 2);
    ck_assert_uint_eq(km_history_pick(h, 0, T0), 2);
    km_history_free(h);
}
END_TEST

START_TEST(test_bad_opts)
{
    static const char *bad[] = {"",
                                "0:60",
                                "1:0.5",
                                "1:60 1:600",
                                "1:60 1.5:600",
                                "1:60 60:30",
                                "0.001:60",
                                "1:60 2:600 4:900 8:1600 16:3200",
                                "1:1e12"};
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct km_history_opts o = opts_of(bad[i], NULL);
        if (i == 7)
            o.ntiers = KM_HISTORY_TIERS_MAX + 1;
        err[0] = '\0';
        ck_assert_msg(km_history_new(NULL, reg, &o, err, sizeof err) == NULL,
                      "accepted \"%s\"", bad[i]);
        ck_assert_msg(strncmp(err, "history: ", 9) == 0, "no reason for \"%s\"", bad[i]);
    }
}
END_TEST

/* ---- the ring -----------------------------------------------------------------------
 */

START_TEST(test_ring_wrap)
{
    struct km_history *h = store("1:120", NULL);
    struct km_series *s = series("km_test_cpu", "container=\"a\"");
    struct km_history_stats st0, st;
    double v = 50;
    srand(42);
    feed(h, s, T0, v);
    km_history_get_stats(h, &st0);
    ck_assert_uint_eq(st0.series, 1);
    ck_assert_uint_eq(st0.bytes_reserved, st0.bytes_per_series);
    for (long i = 1; i < 20000; i++) {
        v += (double)(rand() % 201 - 100) / 100.0; /* a CPU figure, 2 decimals */
        feed(h, s, T0 + i, round(v * 100) / 100);
        km_history_get_stats(h, &st);
        ck_assert_uint_eq(st.bytes_reserved, st0.bytes_reserved);
        ck_assert_uint_le(st.bytes_used, st.bytes_reserved);
    }
    /* the oldest went; the retention is still held */
    double first = km_history_first(h, s);
    ck_assert_double_gt(first, T0 + 20000 - 1000);
    ck_assert_double_le(first, T0 + 19999 - 120);
    long n = query(h, s, 0, 0, BIG_TO, 1, p1);
    ck_assert_int_eq(n, (long)st.samples);
    ck_assert_double_eq(p1[0].t, first);
    for (long i = 1; i < n; i++)
        ck_assert_double_eq(p1[i].t, p1[i - 1].t + 1); /* no hole in the ring */
    ck_assert_double_eq(p1[n - 1].t, T0 + 19999);
    ck_assert_int_eq(query(h, s, 0, T0 + 19999 - 119, BIG_TO, 1, p1), 120);
    km_history_free(h);
}
END_TEST

/* ---- queries ------------------------------------------------------------------------
 */

START_TEST(test_query_bounds)
{
    struct km_history *h = store("1:600 10:3600", NULL);
    struct km_series *s = series("km_test_value", "");
    struct km_series *none = series("km_test_none", "");
    for (long i = 0; i < 100; i++)
        feed(h, s, T0 + i, i == 50 ? NAN : val(i));

    ck_assert_int_eq(query(h, none, 0, 0, BIG_TO, 1, p1), -1);     /* no history */
    ck_assert_int_eq(query(h, s, 2, 0, BIG_TO, 1, p1), -1);        /* no such tier */
    ck_assert_int_eq(query(h, s, 0, T0 + 10, T0 + 5, 1, p1), 0);   /* from after to */
    ck_assert_int_eq(query(h, s, 0, T0 - 100, T0 - 1, 1, p1), 0);  /* before it ran */
    ck_assert_int_eq(query(h, s, 0, T0 + 10, T0 + 19, 1, p1), 10); /* both ends in */
    ck_assert_double_eq(p1[0].t, T0 + 10);
    ck_assert_int_eq(query(h, s, 0, T0 + 10.5, T0 + 12.5, 1, p1), 2);
    ck_assert_int_eq(km_history_query(h, s, 0, 0, BIG_TO, 1, p1, 7), 7); /* max */
    ck_assert_int_eq(km_history_query(h, s, 0, 0, BIG_TO, 7, p1, 3), 3);
    /* a step below the tier's, 0, NaN: the tier's own */
    ck_assert_int_eq(query(h, s, 0, 0, BIG_TO, 0.001, p1), 100);
    ck_assert_int_eq(query(h, s, 0, 0, BIG_TO, 0, p1), 100);
    ck_assert_int_eq(query(h, s, 0, 0, BIG_TO, NAN, p1), 100);
    ck_assert(isnan(p1[50].v)); /* a raw NaN stays */
    /* buckets aligned to multiples of the step, the NaN left out */
    long n = query(h, s, 0, T0, T0 + 99, 7, p1);
    ck_assert_int_eq(n, 15); /* T0 is a multiple of 7 */
    for (long b = 0; b < n; b++)
        ck_assert_double_eq(fmod(p1[b].t, 7), 0);
    ck_assert_double_eq(p1[0].t, T0);
    ck_assert_double_eq(p1[14].t, T0 + 98);
    ck_assert_double_eq(p1[14].v, (val(98) + val(99)) / 2); /* cut by `to` */
    /* a bucket that starts before `from` holds only what is after it */
    ck_assert_int_eq(query(h, s, 0, T0 + 5, T0 + 99, 7, p1), 15);
    ck_assert_double_eq(p1[0].t, T0);
    ck_assert_double_eq(p1[0].v, (val(5) + val(6)) / 2);
    for (long b = 0; b < n; b++)
        if (p1[b].t <= T0 + 50 && T0 + 50 < p1[b].t + 7) {
            double sum = 0, k = 0;
            for (long i = (long)(p1[b].t - T0); i < (long)(p1[b].t - T0) + 7; i++)
                if (i != 50)
                    sum += val(i), k++;
            ck_assert_double_eq(p1[b].v, sum / k);
        }
    /* an hour's step: one bucket with everything */
    n = query(h, s, 1, 0, BIG_TO, 3600, p1);
    ck_assert_int_eq(n, 1);
    ck_assert_double_eq(p1[0].t, T0 - fmod(T0, 3600));
    km_history_free(h);
}
END_TEST

/* ---- the file -----------------------------------------------------------------------
 */

/* Three series over two tiers, plus an untouched one; flushed. */
static struct km_history *filled(const char *tiers, long nsamples)
{
    struct km_history *h = store(tiers, path);
    struct km_series *a = series("km_test_a", "");
    struct km_series *b = series("km_test_b", "container=\"x\\\"y\"");
    struct km_series *c =
        km_series_get(reg, "km_test_c_total", "a counter", KM_SERIES_COUNTER, "");
    series("km_test_never", "");
    for (long i = 0; i < nsamples; i++) {
        km_series_set(a, val(i), 1);
        km_series_set(b, i * 1e9 + 0.5, 1);
        km_series_set(c, (double)(i / 3), 1);
        if (i == nsamples / 2)
            km_series_stale(c);
        km_history_sample(h, T0 + i);
    }
    ck_assert_int_eq(km_history_flush(h), 0);
    return h;
}

/* Every query answer of every series with history, in order, into out. */
static long answers(struct km_history *h, struct km_history_point *out)
{
    long n = 0;
    for (struct km_family *f = km_series_families(reg); f; f = f->next)
        for (struct km_series *s = f->first; s; s = s->next)
            for (unsigned i = 0; i < km_history_ntiers(h); i++) {
                long k =
                    km_history_query(h, s, i, 0, BIG_TO, 0, out + n, (size_t)(PMAX - n));
                n += k > 0 ? k : 0;
                k = km_history_query(h, s, i, 0, BIG_TO, 120, out + n,
                                     (size_t)(PMAX - n));
                n += k > 0 ? k : 0;
            }
    return n;
}

START_TEST(test_flush_reload)
{
    struct km_history *h = filled("1:600 10:3600", 1000);
    long n1 = answers(h, p1);
    ck_assert_int_gt(n1, 2000);
    struct km_history_stats st;
    km_history_get_stats(h, &st);
    ck_assert_uint_eq(st.series, 3);
    ck_assert_uint_eq(st.flushes, 1);
    km_history_free(h); /* writes once more */
    km_series_reg_free(reg);

    reg = km_series_reg_new(0);
    h = store("1:600 10:3600", path);
    km_history_get_stats(h, &st);
    ck_assert_uint_eq(st.loaded_series, 3);
    ck_assert_uint_eq(st.load_skipped, 0);
    ck_assert_int_eq(log_errors, 0);
    long n2 = answers(h, p2);
    same_points(p1, n1, p2, n2);
    struct km_series *b = km_series_find(reg, "km_test_b", "container=\"x\\\"y\"");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->live, 0); /* stale until its topic publishes it */
    ck_assert_str_eq(b->family->help, "help text");
    ck_assert_int_eq(km_series_find(reg, "km_test_c_total", "")->family->type,
                     KM_SERIES_COUNTER);
    /* it goes on where it stopped; the open bucket was kept */
    feed(h, b, T0 + 1000, 7);
    feed(h, b, T0 + 1010, 8);
    ck_assert_double_eq(km_history_last(h, b), T0 + 1010);
    long n = query(h, b, 1, T0 + 990, BIG_TO, 10, p1);
    ck_assert_int_eq(n, 3);
    ck_assert_double_eq(p1[0].min, 990 * 1e9 + 0.5);
    ck_assert_double_eq(p1[0].max, 999 * 1e9 + 0.5);
    ck_assert_double_eq(p1[1].v, 7);
    km_history_free(h);
}
END_TEST

START_TEST(test_missing_file)
{
    struct km_history *h = store("1:600 10:3600", path);
    struct km_history_stats st;
    km_history_get_stats(h, &st);
    ck_assert_uint_eq(st.loaded_series, 0);
    ck_assert_int_eq(log_errors, 0);
    ck_assert_int_eq(corrupt_files(0), 0);
    km_history_free(h);
    ck_assert(file_exists(path)); /* written at exit, even empty */
    km_series_reg_free(reg);
    reg = km_series_reg_new(0);
    h = store("1:600 10:3600", path);
    ck_assert_int_eq(log_errors, 0);
    km_history_free(h);

    /* a directory in its place: logged, left alone, the store starts */
    unlink(path);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    h = store("1:600 10:3600", path);
    ck_assert_int_eq(log_errors, 1);
    ck_assert_ptr_nonnull(strstr(log_last, "not a regular file"));
    ck_assert_int_eq(km_history_flush(h), -1); /* rename over a directory */
    km_history_free(h);
    ck_assert_int_eq(rmdir(path), 0);
    ck_assert_int_eq(corrupt_files(0), 0);
}
END_TEST

/* Loads `buf` as the file: it must be refused, set aside, the store empty. */
static void refused(const unsigned char *buf, size_t len, const char *what, size_t at)
{
    write_all(path, buf, len);
    km_series_reg_free(reg);
    reg = km_series_reg_new(0);
    log_errors = 0;
    struct km_history *h = store("1:60 10:600", path);
    struct km_history_stats st;
    km_history_get_stats(h, &st);
    ck_assert_msg(st.loaded_series == 0 && km_series_count(reg) == 0,
                  "%s at %zu: loaded %llu series", what, at,
                  (unsigned long long)st.loaded_series);
    ck_assert_msg(log_errors == 1 && strstr(log_last, "set aside as"),
                  "%s at %zu: logged %d lines, last \"%s\"", what, at, log_errors,
                  log_last);
    ck_assert_msg(!file_exists(path), "%s at %zu: not set aside", what, at);
    ck_assert_int_eq(corrupt_files(1), 1);
    km_history_free(h);
    unlink(path); /* written at exit, empty */
}

START_TEST(test_truncated_and_flipped)
{
    struct km_history *h = filled("1:60 10:600", 40);
    km_history_free(h);
    size_t len;
    unsigned char *buf = read_all(path, &len);
    ck_assert_uint_gt(len, 100);
    ck_assert_uint_lt(len, 4096);
    /* ~2 lines a refusal: to stderr only with CHECK_VERBOSE (the hook sees them) */
    int saved = dup(2), null = open("/dev/null", O_WRONLY);
    if (!getenv("CHECK_VERBOSE"))
        dup2(null, 2);
    for (size_t cut = 0; cut < len; cut++)
        refused(buf, cut, "truncated", cut);
    for (size_t at = 0; at < len; at++) {
        buf[at] ^= (unsigned char)(1u << (at % 8));
        refused(buf, len, "bit flipped", at);
        buf[at] ^= (unsigned char)(1u << (at % 8));
    }
    dup2(saved, 2);
    close(saved);
    close(null);
    /* junk appended, and the intact file still loads */
    unsigned char *more = malloc(len + 1);
    ck_assert_ptr_nonnull(more);
    memcpy(more, buf, len);
    more[len] = 0;
    refused(more, len + 1, "junk after the trailer", len);
    free(more);
    write_all(path, buf, len);
    km_series_reg_free(reg);
    reg = km_series_reg_new(0);
    h = store("1:60 10:600", path);
    ck_assert_uint_eq(km_series_count(reg), 3);
    km_history_free(h);
    free(buf);
    printf("check_history: a %zu-byte file refused at every truncation and bit flip\n",
           len);
}
END_TEST

START_TEST(test_tier_table_changed)
{
    struct km_history *h = filled("1:600 10:3600", 2000);
    struct km_series *a = km_series_find(reg, "km_test_a", "");
    long n0 = query(h, a, 0, 0, BIG_TO, 0, p1);
    km_history_free(h);
    km_series_reg_free(reg);

    /* tier 0 the same step (longer), tier 1 another step: dropped, logged */
    reg = km_series_reg_new(0);
    h = store("1:1200 30:3600", path);
    ck_assert_int_eq(log_errors, 1);
    ck_assert_ptr_nonnull(strstr(log_last, "tier 1 (10 s step"));
    a = km_series_find(reg, "km_test_a", "");
    ck_assert_ptr_nonnull(a);
    same_points(p1, n0, p2, query(h, a, 0, 0, BIG_TO, 0, p2));
    ck_assert_int_eq(query(h, a, 1, 0, BIG_TO, 0, p2), 0);
    ck_assert_int_eq(corrupt_files(0), 0);
    km_history_free(h);
    km_series_reg_free(reg);

    /* a shorter ring now: the newest chunks are kept */
    reg = km_series_reg_new(0);
    h = store("1:60", path);
    a = km_series_find(reg, "km_test_a", "");
    long n = query(h, a, 0, 0, BIG_TO, 0, p2);
    ck_assert_int_gt(n, 59);
    ck_assert_int_lt(n, n0);
    ck_assert_double_eq(p2[n - 1].t, p1[n0 - 1].t);
    km_history_free(h);
}
END_TEST

START_TEST(test_series_cap_on_load)
{
    struct km_history *h = filled("1:600", 100);
    km_history_free(h);
    km_series_reg_free(reg);
    reg = km_series_reg_new(2);
    h = store("1:600", path);
    struct km_history_stats st;
    km_history_get_stats(h, &st);
    ck_assert_uint_eq(st.loaded_series, 2);
    ck_assert_uint_eq(st.load_skipped, 1);
    ck_assert_uint_eq(km_series_refused(reg), 1);
    ck_assert_uint_eq(km_series_count(reg), 2);
    km_history_free(h);
}
END_TEST

/* ---- stale series -------------------------------------------------------------------
 */

START_TEST(test_stale_dropped)
{
    struct km_history *h = store("1:60 10:600", NULL);
    char labels[64];
    struct km_series *live = series("km_test_live", "");
    for (int i = 0; i < 40; i++) {
        snprintf(labels, sizeof labels, "n=\"%d\"", i);
        feed(h, series("km_test_gone", labels), T0, i);
    }
    for (struct km_series *s = km_series_family(reg, "km_test_gone")->first; s;
         s = s->next)
        km_series_stale(s);
    feed(h, live, T0 + 600, 1); /* not yet older than 600 s */
    ck_assert_uint_eq(km_series_count(reg), 41);
    feed(h, live, T0 + 601, 1);
    ck_assert_uint_eq(km_series_count(reg), 41 - 16); /* a bounded number per tick */
    feed(h, live, T0 + 602, 1);
    feed(h, live, T0 + 603, 1);
    ck_assert_uint_eq(km_series_count(reg), 1);
    ck_assert_ptr_null(km_series_family(reg, "km_test_gone"));
    struct km_history_stats st;
    km_history_get_stats(h, &st);
    ck_assert_uint_eq(st.series, 1);
    ck_assert_uint_eq(st.dropped, 40);
    km_history_free(h);
}
END_TEST

/* ---- timers and the forked writer ----------------------------------------------------
 */

static int ticks;
static void tick_collector(struct km_series_reg *r, void *arg)
{
    (void)arg;
    ticks++;
    km_series_set(km_series_get(r, "km_test_ticks", "ticks", KM_SERIES_COUNTER, ""),
                  ticks, 0);
}

START_TEST(test_timers_fork)
{
    struct event_base *base = event_base_new();
    char err[256];
    struct km_history_opts o = opts_of("0.05:60 0.5:600", path);
    o.flush_interval = 0.2;
    ck_assert_int_eq(km_series_add_collector(reg, tick_collector, NULL), 0);
    struct km_history *h = km_history_new(base, reg, &o, err, sizeof err);
    ck_assert_ptr_nonnull(h);
    struct km_history_stats st = {0};
    double deadline = mono() + 20;
    while ((st.flushes < 2 || ticks < 10) && mono() < deadline) {
        event_base_loop(base, EVLOOP_ONCE);
        km_history_get_stats(h, &st);
    }
    ck_assert_uint_ge(st.flushes, 2);
    ck_assert_uint_eq(st.flush_errors, 0);
    ck_assert(file_exists(path));
    struct km_series *s = km_series_find(reg, "km_test_ticks", "");
    long n = query(h, s, 0, 0, BIG_TO, 0, p1);
    ck_assert_int_ge(n, 8);
    for (long i = 0; i < n; i++) /* aligned to the step */
        ck_assert_int_eq(llround(p1[i].t * 1000) % 50, 0);
    km_history_free(h);

    /* a directory that is not there (two levels: katomon makes only the
       last, so it cannot): the child's reason is logged */
    char bad[256];
    snprintf(bad, sizeof bad, "%s/nowhere/deeper/history.db", dir);
    o.path = bad;
    log_errors = 0;
    h = km_history_new(base, reg, &o, err, sizeof err);
    ck_assert_ptr_nonnull(h);
    deadline = mono() + 20;
    st.flush_errors = 0;
    while (st.flush_errors < 1 && mono() < deadline) {
        event_base_loop(base, EVLOOP_ONCE);
        km_history_get_stats(h, &st);
    }
    ck_assert_uint_ge(st.flush_errors, 1);
    ck_assert_ptr_nonnull(strstr(log_last, "No such file or directory"));
    ck_assert_ptr_nonnull(strstr(log_last, "nowhere/deeper/history.db.tmp"));
    km_history_free(h); /* its own write fails too, logged */
    event_base_free(base);
}
END_TEST

/* ---- memory per sample --------------------------------------------------------------
 */

START_TEST(test_bytes_per_sample)
{
    struct km_history *h = store("1:3600 60:86400 600:604800", NULL);
    struct km_series *s = series("km_test_cpu_percent", "container=\"kato\"");
    struct km_history_stats st;
    double v = 20;
    srand(7);
    for (long i = 0; i < 3 * 3600; i++) {
        v += (double)(rand() % 201 - 100) / 100.0;
        v = v < 0 ? -v : v > 100 ? 200 - v : v;
        feed(h, s, T0 + i, round(v * 100) / 100);
    }
    km_history_get_stats(h, &st);
    double per = (double)st.tier0_bytes_per_series / (double)st.samples;
    printf("check_history: default tiers: %zu bytes per series (tier 0: %zu); "
           "tier 0 holds %llu samples (%.0f s): %.2f bytes reserved, %.2f used per "
           "stored sample\n",
           st.bytes_per_series, st.tier0_bytes_per_series, (unsigned long long)st.samples,
           (double)st.samples, per, (double)st.bytes_used / (double)st.samples);
    ck_assert_uint_ge(st.samples, 3600);
    ck_assert_double_le(per, 4.0);
    /* the bench's query: 1 h at 1 s, here 10 times over one series (a
       figure, not asserted) */
    double t = mono();
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(query(h, s, 0, T0 + 3 * 3600 - 3600, BIG_TO, 1, p1), 3600);
    printf("check_history: 10 queries of 1 h at 1 s (3600 points each): %.2f ms\n",
           (mono() - t) * 1e3);
    km_history_free(h);
}
END_TEST

static Suite *history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_raw_and_tiers);
    tcase_add_test(tc, test_pick_and_tiers);
    tcase_add_test(tc, test_bad_opts);
    tcase_add_test(tc, test_ring_wrap);
    tcase_add_test(tc, test_query_bounds);
    tcase_add_test(tc, test_stale_dropped);
    tcase_add_test(tc, test_bytes_per_sample);
    suite_add_tcase(s, tc);

    tc = tcase_create("file");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_flush_reload);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_truncated_and_flipped);
    tcase_add_test(tc, test_tier_table_changed);
    tcase_add_test(tc, test_series_cap_on_load);
    tcase_add_test(tc, test_timers_fork);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(history_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
