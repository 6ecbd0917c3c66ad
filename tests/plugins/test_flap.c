/*
 * test_flap.c - a plugin that makes alerts and series fast, for the crash
 * durability test (tests/integration/crash.py, issue 17).
 *
 * Nothing real flaps hundreds of times a second: the shipped sources poll
 * at most every few hundred milliseconds and a threshold rule makes one
 * transition per sample that crosses it. This plugin publishes, every
 * `interval` seconds, `per_tick` messages on the state topic `flap`,
 * {"v": V, "n": N}, V alternating 100 and 0 (N counts the messages), so a
 * threshold rule on `v` (warning 50, for 1) fires and resolves on every
 * message: 2 * per_tick / interval alert transitions a second, each one
 * written to the alert history and published on system_alerts.
 *
 * For the history store it also publishes, every `wide_interval` seconds,
 * the state topic `flap_wide`: {"probe": [{"name": "p0", "v": X}, ...],
 * "bulk": [{"name": "b0", "v": X}, ...]} with `probe` and `bulk` items
 * (series katomon_flap_wide_probe_v{probe="p0"} ...), X a value that
 * changes with every message, so each sample of the store is told from the
 * others. The probe items (at most 256, one REST answer) are what the test
 * reads back; the bulk ones make a flush of the history file take time.
 */
#include <stdio.h>

#include <katomon/plugin.h>

static const struct km_conf_key config_keys[] = {
    {"interval", KM_CONF_DOUBLE, "0.01", 0, 3600, "seconds between flap ticks; 0: none"},
    {"per_tick", KM_CONF_INT, "1", 1, 10000, "messages on `flap` per tick"},
    {"wide_interval", KM_CONF_DOUBLE, "0.5", 0, 3600,
     "seconds between flap_wide messages; 0: none"},
    {"probe", KM_CONF_INT, "0", 0, 256, "items of flap_wide's probe array"},
    {"bulk", KM_CONF_INT, "0", 0, 1000000, "items of flap_wide's bulk array"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static struct {
    const struct km_host *host; /* the core's interface */
    struct km_ctx *ctx;         /* our context */
    struct km_topic *flap;      /* {"v", "n"} */
    struct km_topic *wide;      /* {"probe": [...], "bulk": [...]} */
    long long per_tick;         /* messages on flap per tick */
    long long probe;            /* items of the probe array */
    long long bulk;             /* items of the bulk array */
    long long n;                /* flap messages so far */
    long long wide_n;           /* flap_wide messages so far */
} g;

static void on_flap(void *arg)
{
    for (long long i = 0; i < g.per_tick; i++) {
        g.n++;
        g.host->publish(
            g.ctx, g.flap,
            json_pack("{s:f, s:I}", "v", g.n % 2 ? 100.0 : 0.0, "n", (json_int_t)g.n));
    }
}

/* An array of `count` items {"name": PREFIX<i>, "v": X}, X new each message. */
static json_t *items(const char *prefix, long long count)
{
    json_t *a = json_array();
    char name[32];

    for (long long i = 0; a && i < count; i++) {
        snprintf(name, sizeof name, "%s%lld", prefix, i);
        json_array_append_new(a, json_pack("{s:s, s:f}", "name", name, "v",
                                           (double)g.wide_n + (double)i / 1024.0));
    }
    return a;
}

static void on_wide(void *arg)
{
    g.wide_n++;
    g.host->publish(g.ctx, g.wide,
                    json_pack("{s:o, s:o}", "probe", items("p", g.probe), "bulk",
                              items("b", g.bulk)));
}

static int flap_init(struct km_ctx *ctx, const struct km_host *host)
{
    struct km_topic_def flap = {.name = "flap",
                                .kind = KM_TOPIC_STATE,
                                .description = "test_flap: a value that flaps"};
    struct km_topic_def wide = {.name = "flap_wide",
                                .kind = KM_TOPIC_STATE,
                                .description = "test_flap: many series"};
    double interval = host->config_double(ctx, "interval");
    double wide_interval = host->config_double(ctx, "wide_interval");
    int err = 0;

    g.host = host;
    g.ctx = ctx;
    g.per_tick = host->config_int(ctx, "per_tick");
    g.probe = host->config_int(ctx, "probe");
    g.bulk = host->config_int(ctx, "bulk");
    if (!(g.flap = host->topic_declare(ctx, &flap, &err)) ||
        !(g.wide = host->topic_declare(ctx, &wide, &err))) {
        host->log(ctx, KM_LOG_ERROR, "declare: %s", host->strerror(err));
        return -1;
    }
    if ((interval > 0 &&
         !host->timer_add(ctx, interval, KM_TIMER_REPEAT, on_flap, NULL)) ||
        (wide_interval > 0 && g.probe + g.bulk > 0 &&
         !host->timer_add(ctx, wide_interval, KM_TIMER_REPEAT | KM_TIMER_NOW, on_wide,
                          NULL))) {
        host->log(ctx, KM_LOG_ERROR, "timer_add failed (interval under 1 ms?)");
        return -1;
    }
    return 0;
}

KM_PLUGIN_DEFINE(.name = "test_flap", .version = "1",
                 .description = "flaps a value and publishes many series (crash tests)",
                 .config = config_keys, .init = flap_init);
