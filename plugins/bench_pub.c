/*
 * bench_pub.c - the publisher of the fan-out benchmark (tests/bench/).
 *
 * Built by `make bench` only, never installed. Publishes through the normal
 * host interface, bus and WebSocket transport, exactly as a real plugin:
 *
 *   state  `bench` (topics = 1) or `bench0` .. `benchK-1` (topics = K):
 *          {"t": T, "seq": S, "pad": "xxx..."} every 1/state_hz seconds,
 *          every topic at each tick;
 *   event  `bench_events`: {"t": T, "seq": S, "pad": "xxx..."} every
 *          1/event_hz seconds;
 *   state  `bench_series` (series = N > 0): {"items":[{"name":"s0","v":V},
 *          ...]} with N items every 1/series_hz seconds, for the /metrics
 *          and history benchmarks (tests/bench/metrics.sh): N series
 *          katomon_bench_series_value{item="s0"} .. {item="sN-1"}. Even
 *          items are 2-decimal percents on a random walk in [0, 100], odd
 *          items integer counters growing by a random step, so they change
 *          at every publish like real gauges and counters.
 *
 * T is CLOCK_MONOTONIC in microseconds at publish (the load client runs on
 * the same host and computes the data's age from it); S counts publishes.
 * The pads are sized so that what a client receives has exactly `size`
 * bytes of WebSocket payload:
 *   - the realtime_update of a client subscribed to every bench topic
 *     ({"type":"realtime_update","timestamp":"<27 chars>","data":{...}}),
 *     the size split evenly across the K topics (so a client subscribed to
 *     a subset gets proportionally less: scenario S3);
 *   - each event message ({"type":"event","topic":"bench_events","seq":N,
 *     "timestamp":"<27 chars>","data":<body>}).
 * The peers of the benchmark (tests/bench/floor.c, peers/) send the same
 * realtime_update text with the same size, so every server puts the same
 * bytes on the wire.
 *
 * state_hz = 0 and event_hz = 0 publish nothing (idle scenarios); series = 0
 * (the default) declares no bench_series topic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <katomon/plugin.h>

#define BP_MAX_TOPICS 64
#define BP_TS_LEN     27 /* "2025-10-13T14:30:00.123456Z" */
#define BP_SERIES_MAX 100000

static const struct km_conf_key config_keys[] = {
    {"state_hz", KM_CONF_DOUBLE, "10", 0, 1000, "state publishes per second (0: none)"},
    {"event_hz", KM_CONF_DOUBLE, "0", 0, 1000, "event publishes per second (0: none)"},
    {"topics", KM_CONF_INT, "1", 1, BP_MAX_TOPICS,
     "state topics: 1 is `bench`, K > 1 are bench0 .. benchK-1"},
    {"size", KM_CONF_INT, "2048", 256, 1048576,
     "WebSocket payload bytes of a full realtime_update and of an event message"},
    {"series", KM_CONF_INT, "0", 0, BP_SERIES_MAX,
     "items of the bench_series topic, one series each (0: no such topic)"},
    {"series_hz", KM_CONF_DOUBLE, "1", 0, 1000, "bench_series publishes per second"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

/* The series of a bench state topic: its publish count (the clock is not
   one). Names stay derived (katomon_bench_seq_total, katomon_bench0_...),
   one family per topic. */
static const struct km_metric state_metrics[] = {
    {"t", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"seq", NULL, "Messages bench_pub published on this topic", KM_METRIC_COUNTER, 0,
     NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

/* The series of bench_series: one per item, labelled item="sI". */
static const struct km_metric series_metrics[] = {
    {"items[]", NULL, NULL, 0, 0, "item=name"},
    {"items[].v", "bench_series_value",
     "A synthetic value of bench_pub (even items a percent, odd items a count)", 0, 0,
     NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static struct {
    const struct km_host *host;
    struct km_ctx *ctx;
    int n_topics;
    struct km_topic *state[BP_MAX_TOPICS];
    char names[BP_MAX_TOPICS][16];
    struct km_topic *events;
    struct km_timer *state_timer;
    struct km_timer *event_timer;
    long size;                 /* target payload bytes */
    long share[BP_MAX_TOPICS]; /* bytes of each topic's body in a full update */
    char *pad;                 /* 'x' * size, NUL-terminated */
    unsigned long long state_seq;
    unsigned long long event_seq;
    struct km_topic *series; /* bench_series; NULL when series = 0 */
    struct km_timer *series_timer;
    long n_series;          /* items per bench_series message */
    double *values;         /* their latest values (n_series) */
    char (*item_names)[16]; /* "s0" .. (n_series) */
    unsigned long long rng; /* xorshift64 state: fixed seed */
} bp;

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long digits(unsigned long long v)
{
    long n = 1;
    while (v >= 10)
        v /= 10, n++;
    return n;
}

/* {"t":T,"seq":S,"pad":"..."} of exactly `bytes` bytes (or the shortest
   possible when bytes is too small). */
static json_t *body(long long t, unsigned long long seq, long bytes)
{
    long fixed = (long)strlen("{\"t\":,\"seq\":,\"pad\":\"\"}") +
                 digits((unsigned long long)t) + digits(seq);
    long pad = bytes - fixed;
    json_t *j;

    if (pad < 0)
        pad = 0;
    if (pad > bp.size)
        pad = bp.size;
    bp.pad[pad] = '\0';
    j = json_pack("{s:I, s:I, s:s}", "t", (json_int_t)t, "seq", (json_int_t)seq, "pad",
                  bp.pad);
    bp.pad[pad] = 'x';
    return j;
}

static void publish_state(void *arg)
{
    long long t = mono_us();

    bp.state_seq++;
    for (int i = 0; i < bp.n_topics; i++)
        bp.host->publish(bp.ctx, bp.state[i], body(t, bp.state_seq, bp.share[i]));
}

static void publish_event(void *arg)
{
    long long t = mono_us();
    /* {"type":"event","topic":"bench_events","seq":N,"timestamp":"TS","data":BODY} */
    long env = (long)strlen("{\"type\":\"event\",\"topic\":\"bench_events\",\"seq\":"
                            ",\"timestamp\":\"\",\"data\":}") +
               BP_TS_LEN;

    bp.event_seq++; /* equals the bus's seq on a fresh daemon */
    env += digits(bp.event_seq);
    bp.host->publish(bp.ctx, bp.events, body(t, bp.event_seq, bp.size - env));
}

static unsigned long long xorshift(void)
{
    bp.rng ^= bp.rng << 13;
    bp.rng ^= bp.rng >> 7;
    bp.rng ^= bp.rng << 17;
    return bp.rng;
}

/* Moves every value one step (a percent's random walk, a counter's growth)
   and publishes the whole set. */
static void publish_series(void *arg)
{
    json_t *items = json_array(), *body;

    for (long i = 0; items && i < bp.n_series; i++) {
        unsigned long long u = xorshift();
        double *v = &bp.values[i];
        json_t *item;

        if (i % 2 == 0) {
            *v += (double)((long)(u % 201) - 100) / 100.0; /* +-1.00 */
            *v = *v < 0 ? -*v : *v > 100 ? 200 - *v : *v;
            *v = (double)(long long)(*v * 100 + 0.5) / 100;
            item = json_pack("{s:s, s:f}", "name", bp.item_names[i], "v", *v);
        } else {
            *v += (double)(u % 5000);
            item = json_pack("{s:s, s:I}", "name", bp.item_names[i], "v", (json_int_t)*v);
        }
        if (json_array_append_new(items, item) < 0)
            break;
    }
    if (!items || !(body = json_pack("{s:o}", "items", items)))
        return;
    bp.host->publish(bp.ctx, bp.series, body);
}

/* Declares bench_series and starts its timer (series > 0). 0 or -1. */
static int series_init(struct km_ctx *ctx, const struct km_host *host)
{
    struct km_topic_def def = {.name = "bench_series",
                               .kind = KM_TOPIC_STATE,
                               .description = "benchmark series (bench_pub series = N)",
                               .metrics = series_metrics};
    double hz = host->config_double(ctx, "series_hz");
    int err = 0;

    bp.n_series = (long)host->config_int(ctx, "series");
    if (bp.n_series == 0)
        return 0;
    bp.values = calloc((size_t)bp.n_series, sizeof *bp.values);
    bp.item_names = calloc((size_t)bp.n_series, sizeof *bp.item_names);
    if (!bp.values || !bp.item_names)
        return -1;
    bp.rng = 0x9e3779b97f4a7c15ull;
    for (long i = 0; i < bp.n_series; i++) {
        snprintf(bp.item_names[i], sizeof bp.item_names[i], "s%d", (int)i);
        bp.values[i] = i % 2 ? (double)(xorshift() % 1000000) : (double)(i % 100);
    }
    if (!(bp.series = host->topic_declare(ctx, &def, &err))) {
        host->log(ctx, KM_LOG_ERROR, "declare bench_series: %s", host->strerror(err));
        return -1;
    }
    if (hz > 0 &&
        !(bp.series_timer = host->timer_add(ctx, 1.0 / hz, KM_TIMER_REPEAT | KM_TIMER_NOW,
                                            publish_series, NULL)))
        return -1;
    return 0;
}

/* How the full realtime_update's bytes are split across the topics. */
static void compute_shares(void)
{
    /* {"type":"realtime_update","timestamp":"TS","data":{"n1":B1,"n2":B2}} */
    long fixed =
        (long)strlen("{\"type\":\"realtime_update\",\"timestamp\":\"\",\"data\":{}}") +
        BP_TS_LEN;
    long rest;

    for (int i = 0; i < bp.n_topics; i++)
        fixed += (long)strlen(bp.names[i]) + 3 + (i ? 1 : 0); /* "name": and a comma */
    rest = bp.size - fixed;
    for (int i = 0; i < bp.n_topics; i++)
        bp.share[i] = rest / bp.n_topics + (i == 0 ? rest % bp.n_topics : 0);
}

static int bp_init(struct km_ctx *ctx, const struct km_host *host)
{
    double state_hz = host->config_double(ctx, "state_hz");
    double event_hz = host->config_double(ctx, "event_hz");
    int err = 0;

    memset(&bp, 0, sizeof bp);
    bp.host = host;
    bp.ctx = ctx;
    bp.n_topics = (int)host->config_int(ctx, "topics");
    bp.size = (long)host->config_int(ctx, "size");
    if (!(bp.pad = malloc((size_t)bp.size + 1)))
        return -1;
    memset(bp.pad, 'x', (size_t)bp.size);
    bp.pad[bp.size] = '\0';
    for (int i = 0; i < bp.n_topics; i++) {
        struct km_topic_def def = {.kind = KM_TOPIC_STATE,
                                   .description = "benchmark state (bench_pub)",
                                   .metrics = state_metrics};
        if (bp.n_topics == 1)
            snprintf(bp.names[i], sizeof bp.names[i], "bench");
        else
            snprintf(bp.names[i], sizeof bp.names[i], "bench%d", i);
        def.name = bp.names[i];
        if (!(bp.state[i] = host->topic_declare(ctx, &def, &err))) {
            host->log(ctx, KM_LOG_ERROR, "declare %s: %s", def.name, host->strerror(err));
            return -1;
        }
    }
    {
        struct km_topic_def def = {.name = "bench_events",
                                   .kind = KM_TOPIC_EVENT,
                                   .description = "benchmark events (bench_pub)",
                                   .metrics = NULL};
        if (!(bp.events = host->topic_declare(ctx, &def, &err))) {
            host->log(ctx, KM_LOG_ERROR, "declare bench_events: %s", host->strerror(err));
            return -1;
        }
    }
    compute_shares();
    if (series_init(ctx, host) < 0)
        return -1;
    if (state_hz > 0 &&
        !(bp.state_timer = host->timer_add(
              ctx, 1.0 / state_hz, KM_TIMER_REPEAT | KM_TIMER_NOW, publish_state, NULL)))
        return -1;
    if (event_hz > 0 && !(bp.event_timer = host->timer_add(
                              ctx, 1.0 / event_hz, KM_TIMER_REPEAT, publish_event, NULL)))
        return -1;
    host->log(ctx, KM_LOG_NOTICE,
              "%d state topic(s) at %g Hz, events at %g Hz, %ld bytes, %ld series",
              bp.n_topics, state_hz, event_hz, bp.size, bp.n_series);
    return 0;
}

static void bp_shutdown(struct km_ctx *ctx)
{
    free(bp.pad);
    free(bp.values);
    free(bp.item_names);
    bp.pad = NULL;
    bp.values = NULL;
    bp.item_names = NULL;
}

KM_PLUGIN_DEFINE(.name = "bench_pub", .version = "1",
                 .description = "fan-out benchmark publisher (tests/bench)",
                 .config = config_keys, .init = bp_init, .shutdown = bp_shutdown);
