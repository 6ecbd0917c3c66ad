/*
 * test_topics.c - a plugin that names its topics in its descriptor
 * (.topics), for tests/unit/check_loader's `collect = false` tests.
 *
 * .topics: the state topic `tt` ({"v": integer}, with a series table) and
 * the event topic `tt_events` (ring of 8). Its init declares exactly those,
 * logs "init ran" and publishes {"v": 1} on `tt`; reload logs "reloaded",
 * shutdown "shutdown". With collect = false none of those lines may appear:
 * the core declares the topics itself and never runs the plugin's code.
 */
#include <katomon/plugin.h>

static const struct km_field tt_fields[] = {
    KM_FIELD("v", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_metric tt_metrics[] = {
    {"v", "tt_value", "test_topics' value", 0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static const struct km_topic_def tt_topics[] = {
    {"tt", KM_TOPIC_STATE, tt_fields, 0, "test_topics' state", tt_metrics},
    {"tt_events", KM_TOPIC_EVENT, tt_fields, 8, "test_topics' events", NULL},
    {NULL, 0, NULL, 0, NULL, NULL},
};

static const struct km_host *g_host; /* the core's interface, from init */

static int tt_init(struct km_ctx *ctx, const struct km_host *host)
{
    struct km_topic *t = NULL;
    int err = 0;

    g_host = host;
    host->log(ctx, KM_LOG_INFO, "init ran");
    for (const struct km_topic_def *d = tt_topics; d->name; d++) {
        struct km_topic *got = host->topic_declare(ctx, d, &err);
        if (!got) {
            host->log(ctx, KM_LOG_ERROR, "cannot declare %s: %s", d->name,
                      host->strerror(err));
            return -1;
        }
        if (!t)
            t = got;
    }
    return host->publish(ctx, t, json_pack("{s:i}", "v", 1)) == KM_OK ? 0 : -1;
}

static int tt_reload(struct km_ctx *ctx)
{
    g_host->log(ctx, KM_LOG_INFO, "reloaded");
    return 0;
}

static void tt_shutdown(struct km_ctx *ctx)
{
    g_host->log(ctx, KM_LOG_INFO, "shutdown");
}

KM_PLUGIN_DEFINE(.name = "test_topics", .version = "1.0",
                 .description = "loader test: names its topics for collect = false",
                 .init = tt_init, .reload = tt_reload, .shutdown = tt_shutdown,
                 .topics = tt_topics);
