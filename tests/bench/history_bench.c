/*
 * history_bench.c - the in-process half of the issue 14 benchmarks
 * (tests/bench/metrics.sh runs it; tests/bench/README.md, "History and
 * /metrics"). Links libkmcore: the same registry, store, renderer and
 * range handler the daemon runs, without the daemon around them.
 *
 * Three parts, each printed as one JSON object on stdout (one line each):
 *
 *   render   for N series (--series, default 1000 and 10000): a bus with
 *            bench_pub's `bench_series` topic (same metrics table, same
 *            value shapes), N items published; times the walk of a fresh
 *            message (km_series_collect), km_metrics_render,
 *            km_metrics_scrape (collectors + render, nothing new to walk)
 *            and one tier-0 sample of every series (km_history_sample):
 *            the loop-blocking times of a scrape and of the sampler;
 *   query    10 series (4 two-decimal percents, 4 integer counters, 2 noisy
 *            doubles) in a store with the default tiers, backfilled with
 *            3,600 samples (1 h at 1 s); times km_history_query of the 10
 *            series over the hour at 1 s, and the whole REST answer
 *            (km_rest_history_text, the JSON text the server sends; its
 *            json_dumps time is 0 since h14-resttext);
 *   memory   1,000 series of those shapes, 1 h at 1 s; km_history_get_stats
 *            of the default tiers and of a tier-0-only store fed the same
 *            values (bytes used per fine-tier sample), and VmRSS growth
 *            across creating and filling the store, per sample stored.
 *
 * Every timing is the median (and p99, min) of --runs repetitions.
 * Values come from a fixed-seed generator: every run stores the same data.
 *
 * usage: history_bench [--runs R] [--series N]... [--part render|query|memory]...
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "bus.h"
#include "core.h"
#include "history.h"
#include "metrics.h"
#include "rest_history.h"
#include "series.h"

#define HB_RUNS_MAX   10000
#define HB_SERIES_MAX 100000
#define HB_HOUR       3600

/* The topic bench_pub publishes with series = N (plugins/bench_pub.c). */
static const struct km_metric hb_series_metrics[] = {
    {"items[]", NULL, NULL, 0, 0, "item=name"},
    {"items[].v", "bench_series_value",
     "A synthetic value of bench_pub (even items a percent, odd items a count)", 0, 0,
     NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static uint64_t hb_rng = 0x9e3779b97f4a7c15ull;

static uint64_t hb_xorshift(void)
{
    hb_rng ^= hb_rng << 13;
    hb_rng ^= hb_rng >> 7;
    hb_rng ^= hb_rng << 17;
    return hb_rng;
}

static double hb_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double hb_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hb_die(const char *what)
{
    fprintf(stderr, "history_bench: %s\n", what);
    exit(1);
}

/* ---- value shapes ------------------------------------------------------ */

enum hb_shape {
    HB_PERCENT = 0, /* 2-decimal percent on a random walk in [0, 100] */
    HB_COUNTER,     /* integer counter growing by a random step */
    HB_NOISY,       /* a double with full-precision noise (load, a rate) */
    HB_SHAPES
};

static const char *const hb_shape_name[HB_SHAPES] = {"percent", "counter", "noisy"};

/* The next value of a series of `shape` whose last value was v. */
static double hb_next(enum hb_shape shape, double v)
{
    uint64_t u = hb_xorshift();

    switch (shape) {
    case HB_PERCENT:
        v += (double)((long)(u % 201) - 100) / 100.0;
        v = v < 0 ? -v : v > 100 ? 200 - v : v;
        return round(v * 100) / 100;
    case HB_COUNTER:
        return v + (double)(u % 5000);
    default: /* around 1.5, like a load average or a per-second rate */
        return 1.5 + sin(v) * 0.25 + (double)(u >> 11) / 9007199254740992.0 * 0.1;
    }
}

/* A first value of a series of `shape` (the i-th). */
static double hb_initial(enum hb_shape shape, size_t i)
{
    return shape == HB_COUNTER   ? (double)(hb_xorshift() % 1000000)
           : shape == HB_PERCENT ? (double)(i % 100)
                                 : 1.5;
}

/* The mix of the query and memory parts: 2 percents, 2 counters and 1 noisy
   double in every 5 series. */
static enum hb_shape hb_mix(size_t i)
{
    static const enum hb_shape mix[5] = {HB_PERCENT, HB_PERCENT, HB_COUNTER, HB_COUNTER,
                                         HB_NOISY};
    return mix[i % 5];
}

/* ---- statistics --------------------------------------------------------- */

static int hb_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prints "name":{"median":..,"p99":..,"min":..,"max":..} in ms from n
   samples in seconds (sorted in place). */
static void hb_print_times(const char *name, double *s, int n, int comma)
{
    qsort(s, (size_t)n, sizeof *s, hb_cmp);
    int p99 = (int)ceil(0.99 * n) - 1;
    printf(
        "\"%s\":{\"median_ms\":%.4f,\"p99_ms\":%.4f,\"min_ms\":%.4f,\"max_ms\":%.4f}%s",
        name, s[n / 2] * 1e3, s[p99 < 0 ? 0 : p99] * 1e3, s[0] * 1e3, s[n - 1] * 1e3,
        comma ? "," : "");
}

/* VmRSS of this process, KiB. */
static long hb_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");

    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Tier 0 of the default tiers alone: what the fine tier costs by itself. */
static struct km_history_opts hb_tier0_only(void)
{
    struct km_history_opts o = {.ntiers = 1};
    o.tier[0] = (struct km_history_tier){1, 3600};
    return o;
}

/* The default tiers, spelled out ("1s:1h 1m:1d 10m:7d"). */
static struct km_history_opts hb_default_tiers(void)
{
    struct km_history_opts o = {.ntiers = 3};
    o.tier[0] = (struct km_history_tier){1, 3600};
    o.tier[1] = (struct km_history_tier){60, 86400};
    o.tier[2] = (struct km_history_tier){600, 7 * 86400};
    return o;
}

static struct km_history *hb_store(struct km_series_reg *reg,
                                   const struct km_history_opts *o)
{
    char err[256] = "";
    struct km_history *h = km_history_new(NULL, reg, o, err, sizeof err);
    if (!h)
        hb_die(err);
    return h;
}

/* ---- part 1: render ----------------------------------------------------- */

/* bench_pub's bench_series message of n items (values moved one step). */
static json_t *hb_series_message(double *values, size_t n)
{
    json_t *items = json_array();
    char name[16];

    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "s%d", (int)i);
        values[i] = hb_next(i % 2 ? HB_COUNTER : HB_PERCENT, values[i]);
        json_array_append_new(
            items, i % 2
                       ? json_pack("{s:s, s:I}", "name", name, "v", (json_int_t)values[i])
                       : json_pack("{s:s, s:f}", "name", name, "v", values[i]));
    }
    return json_pack("{s:o}", "items", items);
}

static void hb_render(size_t n, int runs)
{
    struct km_bus *bus = km_bus_new();
    struct km_series_reg *reg = km_series_reg_new(n + 16);
    struct km_topic_def def = {
        .name = "bench_series", .kind = KM_TOPIC_STATE, .metrics = hb_series_metrics};
    double *values = calloc(n, sizeof *values);
    double *walk = calloc((size_t)runs, sizeof(double));
    double *render = calloc((size_t)runs, sizeof(double));
    double *scrape = calloc((size_t)runs, sizeof(double));
    double *sample = calloc((size_t)runs, sizeof(double));
    struct km_metrics_text t = {0};
    struct km_topic *topic;
    struct km_history *h;
    struct km_history_opts o = hb_default_tiers();
    double t0 = floor(hb_wall()), a;
    size_t bytes = 0, lines = 0;

    if (!bus || !reg || !values || !walk || !render || !scrape || !sample)
        hb_die("out of memory");
    km_series_attach(reg, bus);
    if (!(topic = km_bus_declare(bus, &def, NULL, NULL)))
        hb_die("declare bench_series");
    h = hb_store(reg, &o);
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up (creates the series) */
        if (km_bus_publish(topic, hb_series_message(values, n), NULL) != KM_OK)
            hb_die("publish bench_series");
        a = hb_mono();
        km_series_collect(reg); /* the walk of the fresh message */
        if (r >= 0)
            walk[r] = hb_mono() - a;
        a = hb_mono();
        km_history_sample(h, t0 + r + 1); /* the 1 s sampler's work */
        if (r >= 0)
            sample[r] = hb_mono() - a;
        a = hb_mono();
        if (km_metrics_render(reg, &t) < 0)
            hb_die("render: out of memory");
        if (r >= 0)
            render[r] = hb_mono() - a;
        bytes = t.len, lines = t.series;
        km_metrics_text_free(&t);
        a = hb_mono();
        if (km_metrics_scrape(reg, &t) < 0)
            hb_die("scrape: out of memory");
        if (r >= 0)
            scrape[r] = hb_mono() - a;
        km_metrics_text_free(&t);
    }
    printf("{\"part\":\"render\",\"series\":%zu,\"lines\":%zu,\"bytes\":%zu,\"runs\":%d,",
           n, lines, bytes, runs);
    hb_print_times("walk", walk, runs, 1);
    hb_print_times("render", render, runs, 1);
    hb_print_times("scrape", scrape, runs, 1);
    hb_print_times("sample", sample, runs, 0);
    printf("}\n");
    km_history_free(h);
    km_series_detach(reg);
    km_series_reg_free(reg);
    km_bus_free(bus);
    free(values), free(walk), free(render), free(scrape), free(sample);
}

/* ---- series of the query and memory parts -------------------------------- */

/* n series of the mix, in families by shape, labelled item="I". */
static struct km_series **hb_mixed_series(struct km_series_reg *reg, size_t n)
{
    static const char *const family[HB_SHAPES] = {
        "katomon_hb_cpu_percent", "katomon_hb_bytes_total", "katomon_hb_load"};
    struct km_series **s = calloc(n, sizeof *s);
    char labels[64], item[16];

    if (!s)
        hb_die("out of memory");
    for (size_t i = 0; i < n; i++) {
        enum hb_shape k = hb_mix(i);
        labels[0] = '\0';
        snprintf(item, sizeof item, "%zu", i);
        km_labels_add(labels, sizeof labels, "item", item);
        s[i] =
            km_series_get(reg, family[k], "history bench",
                          k == HB_COUNTER ? KM_SERIES_COUNTER : KM_SERIES_GAUGE, labels);
        if (!s[i])
            hb_die("km_series_get");
        s[i]->value = hb_initial(k, i);
    }
    return s;
}

/* 1 h of samples at 1 s ending at t_end into h, the values moving by their
   shape (`only`: every series that shape; HB_SHAPES: the mix). Returns the seconds it
   took. */
static double hb_backfill(struct km_history *h, struct km_series **s, size_t n,
                          double t_end, enum hb_shape only)
{
    double a = hb_mono();

    for (int k = 0; k < HB_HOUR; k++) {
        double t = t_end - (HB_HOUR - 1) + k;
        for (size_t i = 0; i < n; i++) {
            enum hb_shape shape = only < HB_SHAPES ? only : hb_mix(i);
            double v = hb_next(shape, shape == HB_NOISY ? (double)k * 0.01 : s[i]->value);
            km_series_set(s[i], v, (int64_t)(t * 1e6));
        }
        km_history_sample(h, t);
    }
    return hb_mono() - a;
}

/* ---- part 2: the 1 h query ----------------------------------------------- */

/*
 * Not katomon's code: what the same answer's points cost when written
 * straight to text (km_metrics_value per number, no json_t per point), to
 * size the fix proposed for rest_history.c. Returns the text's length.
 */
static size_t hb_direct_answer(const struct km_history *h, struct km_series **s, int ns,
                               double from, double to, struct km_history_point *pts,
                               char *out, size_t cap)
{
    char *p = out, *end = out + cap - 128;

    p += sprintf(p, "{\"series\":[");
    for (int i = 0; i < ns; i++) {
        long n = km_history_query(h, s[i], 0, from, to, 1, pts, HB_HOUR + 8);
        p += sprintf(p, "%s{\"name\":\"%s\",\"points\":[", i ? "," : "",
                     s[i]->family->name);
        for (long k = 0; k < n && p < end; k++) {
            *p++ = k ? ',' : '[';
            if (k)
                *p++ = '[';
            p += km_metrics_value(pts[k].t, p);
            *p++ = ',';
            p += km_metrics_value(pts[k].v, p);
            *p++ = ']';
        }
        p += sprintf(p, "]}");
    }
    p += sprintf(p, "]}");
    return (size_t)(p - out);
}

static void hb_query(int runs)
{
    enum { NQ = 10 };
    struct km_series_reg *reg = km_series_reg_new(64);
    struct km_history_opts o = hb_default_tiers();
    struct km_history *h = hb_store(reg, &o);
    struct km_series **s = hb_mixed_series(reg, NQ);
    struct km_history_point *pts = calloc(HB_HOUR + 8, sizeof *pts);
    struct km_core core;
    double *q = calloc((size_t)runs, sizeof(double)),
           *rest = calloc((size_t)runs, sizeof(double));
    double *dump = calloc((size_t)runs, sizeof(double)),
           *total = calloc((size_t)runs, sizeof(double));
    double *dflt = calloc((size_t)runs, sizeof(double));
    double *direct = calloc((size_t)runs, sizeof(double));
    size_t direct_cap = 64 * (HB_HOUR + 8) * NQ, direct_bytes = 0;
    char *direct_text = malloc(direct_cap);
    double now = floor(hb_wall()), from = now - (HB_HOUR - 1), a, b;
    char query[640], query_default[512];
    size_t text_bytes = 0, text_default = 0;
    long points = 0;

    if (!pts || !q || !rest || !dump || !total || !dflt || !direct || !direct_text)
        hb_die("out of memory");
    hb_backfill(h, s, NQ, now, HB_SHAPES);
    memset(&core, 0, sizeof core);
    core.series = reg;
    core.history = h;
    snprintf(query_default, sizeof query_default,
             "series=katomon_hb_cpu_percent&series=katomon_hb_bytes_total&"
             "series=katomon_hb_load&from=%.0f&to=%.0f",
             from, now);
    snprintf(query, sizeof query, "%s&step=1", query_default);
    for (int r = -1; r < runs; r++) {
        struct km_rh_text text;
        long got = 0;

        a = hb_mono();
        for (int i = 0; i < NQ; i++)
            got += km_history_query(h, s[i], 0, from, now, 1, pts, HB_HOUR + 8);
        b = hb_mono();
        if (r >= 0)
            q[r] = b - a;
        points = got;
        /* the answer as the server makes it: JSON text, nothing to dump */
        a = hb_mono();
        if (km_rest_history_text(&core, query, now, &text) != 200)
            hb_die(text.data ? text.data : "query failed");
        b = hb_mono();
        if (r >= 0) {
            rest[r] = b - a;
            dump[r] = 0;
            total[r] = b - a;
        }
        text_bytes = text.len;
        km_rh_text_free(&text);
        a = hb_mono();
        if (km_rest_history_text(&core, query_default, now, &text) != 200)
            hb_die("default-step query failed");
        if (r >= 0)
            dflt[r] = hb_mono() - a;
        text_default = text.len;
        km_rh_text_free(&text);
        a = hb_mono();
        direct_bytes =
            hb_direct_answer(h, s, NQ, from, now, pts, direct_text, direct_cap);
        if (r >= 0)
            direct[r] = hb_mono() - a;
    }
    printf("{\"part\":\"query\",\"series\":%d,\"points\":%ld,\"text_bytes\":%zu,"
           "\"default_step_text_bytes\":%zu,\"direct_text_bytes\":%zu,\"runs\":%d,",
           NQ, points, text_bytes, text_default, direct_bytes, runs);
    hb_print_times("store_query", q, runs, 1);
    hb_print_times("rest_handler", rest, runs, 1);
    hb_print_times("json_dumps", dump, runs, 1);
    hb_print_times("rest_total", total, runs, 1);
    hb_print_times("rest_default_step_total", dflt, runs, 1);
    hb_print_times("direct_writer", direct, runs, 0);
    printf("}\n");
    km_history_free(h);
    km_series_reg_free(reg);
    free(s), free(pts), free(q), free(rest), free(dump), free(total), free(dflt);
    free(direct), free(direct_text);
}

/* ---- part 3: memory per sample -------------------------------------------- */

/* Prints the figures of one store after 1 h: "name":{...}. */
static void hb_print_stats(const char *name, const struct km_history *h, int comma)
{
    struct km_history_stats st;

    km_history_get_stats(h, &st);
    printf("\"%s\":{\"series\":%zu,\"samples\":%llu,\"bytes_reserved\":%zu,"
           "\"bytes_used\":%zu,\"bytes_per_series\":%zu,\"tier0_bytes_per_series\":%zu,"
           "\"samples_skipped\":%llu,\"alloc_failed\":%llu}%s",
           name, st.series, (unsigned long long)st.samples, st.bytes_reserved,
           st.bytes_used, st.bytes_per_series, st.tier0_bytes_per_series,
           (unsigned long long)st.samples_skipped, (unsigned long long)st.alloc_failed,
           comma ? "," : "");
}

/* One shape alone in a tier-0-only store: bytes used per sample. */
static void hb_memory_shape(enum hb_shape k, size_t n, double now, int comma)
{
    struct km_series_reg *reg = km_series_reg_new(n + 16);
    struct km_history_opts o = hb_tier0_only();
    struct km_history *h = hb_store(reg, &o);
    struct km_series **s = hb_mixed_series(reg, n);
    char name[32];

    for (size_t i = 0; i < n; i++)
        s[i]->value = hb_initial(k, i);
    hb_backfill(h, s, n, now, k);
    snprintf(name, sizeof name, "tier0_only_%s", hb_shape_name[k]);
    hb_print_stats(name, h, comma);
    km_history_free(h);
    km_series_reg_free(reg);
    free(s);
}

/* The fine tier's resident memory alone at steady state: a tier-0-only
   store fed three hours of `only` (or the mix), in a child process of its
   own (a fresh heap: pages freed by an earlier store would hide the
   growth). Writes the VmRSS growth in KiB and
   the samples held to *kib and *samples; -1 when the child failed. */
static void hb_memory_tier0_rss(size_t n, double now, enum hb_shape only, long *kib,
                                long *samples)
{
    int fds[2];
    long out[2] = {-1, -1};
    pid_t pid;

    *kib = *samples = -1;
    if (pipe(fds) < 0 || (pid = fork()) < 0)
        return;
    if (pid == 0) {
        struct km_series_reg *reg = km_series_reg_new(n + 16);
        struct km_history_opts o0 = hb_tier0_only();
        struct km_series **s = hb_mixed_series(reg, n);
        struct km_history_stats st;
        long before = hb_rss_kib();
        struct km_history *h = hb_store(reg, &o0);
        /* three hours: every ring has wrapped, so what it holds is what
           its fixed memory holds at steady state (data compressing better
           than the budget keeps more than the retention) */
        for (int hour = 2; hour >= 0; hour--)
            hb_backfill(h, s, n, now - hour * HB_HOUR, only);
        km_history_get_stats(h, &st);
        out[0] = hb_rss_kib() - before;
        out[1] = (long)st.samples;
        if (write(fds[1], out, sizeof out) != (ssize_t)sizeof out)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], out, sizeof out) == (ssize_t)sizeof out) {
        *kib = out[0];
        *samples = out[1];
    }
    close(fds[0]);
    waitpid(pid, NULL, 0);
}

static void hb_memory(size_t n)
{
    struct km_series_reg *reg = km_series_reg_new(n + 16);
    struct km_series_reg *reg0 = km_series_reg_new(n + 16);
    struct km_history_opts o = hb_default_tiers(), o0 = hb_tier0_only();
    struct km_series **s = hb_mixed_series(reg, n);
    struct km_history *h;
    double now = floor(hb_wall()), secs;
    long rss0, rss1, t0_kib[HB_SHAPES + 1], t0_samples[HB_SHAPES + 1];

    for (int k = 0; k <= HB_SHAPES; k++) /* each in a heap of its own, first */
        hb_memory_tier0_rss(n, now, (enum hb_shape)k, &t0_kib[k], &t0_samples[k]);
    /* the registry exists before: only the store's memory is counted */
    rss0 = hb_rss_kib();
    h = hb_store(reg, &o);
    secs = hb_backfill(h, s, n, now, HB_SHAPES);
    rss1 = hb_rss_kib();
    printf("{\"part\":\"memory\",\"series_n\":%zu,\"backfill_s\":%.3f,"
           "\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"tier0_rss\":{",
           n, secs, rss0, rss1);
    for (int k = 0; k <= HB_SHAPES; k++)
        printf("%s\"%s\":{\"growth_kib\":%ld,\"samples\":%ld}", k ? "," : "",
               k < HB_SHAPES ? hb_shape_name[k] : "mix", t0_kib[k], t0_samples[k]);
    printf("},");
    hb_print_stats("default_tiers", h, 1);
    km_history_free(h);
    km_series_reg_free(reg);
    free(s);
    /* the same values (same seed) in a tier-0-only store */
    hb_rng = 0x9e3779b97f4a7c15ull;
    s = hb_mixed_series(reg0, n);
    h = hb_store(reg0, &o0);
    hb_backfill(h, s, n, now, HB_SHAPES);
    hb_print_stats("tier0_only", h, 1);
    km_history_free(h);
    km_series_reg_free(reg0);
    free(s);
    for (int k = 0; k < HB_SHAPES; k++)
        hb_memory_shape((enum hb_shape)k, n, now, k + 1 < HB_SHAPES);
    printf("}\n");
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    size_t series[8];
    int nseries = 0, runs = 200, parts = 0; /* bit 0 render, 1 query, 2 memory */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--series") == 0 && i + 1 < argc && nseries < 8)
            series[nseries++] = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--part") == 0 && i + 1 < argc) {
            const char *p = argv[++i];
            parts |= strcmp(p, "render") == 0  ? 1
                     : strcmp(p, "query") == 0 ? 2
                     : strcmp(p, "memory") == 0
                         ? 4
                         : (hb_die("--part: render, query or memory"), 0);
        } else
            hb_die("usage: history_bench [--runs R] [--series N]... "
                   "[--part render|query|memory]...");
    }
    if (runs < 1 || runs > HB_RUNS_MAX)
        hb_die("--runs: 1 to 10000");
    if (nseries == 0)
        series[nseries++] = 1000, series[nseries++] = 10000;
    for (int i = 0; i < nseries; i++)
        if (series[i] < 1 || series[i] > HB_SERIES_MAX)
            hb_die("--series: 1 to 100000");
    if (!parts)
        parts = 7;
    if (parts & 4) /* first: the RSS figure wants a heap not yet grown */
        hb_memory(1000);
    if (parts & 1)
        for (int i = 0; i < nseries; i++)
            hb_render(series[i], runs);
    if (parts & 2)
        hb_query(runs);
    return 0;
}
