/*
 * test_initfail.c - a plugin whose init fails after it created things: a
 * topic (`initfail`), a repeating timer that would fire at once, a
 * subscription to every topic ("*"), a REST route and, when `url` is
 * set, an HTTP request. The loader must disable it and the host must release all of it
 * before the object is unmapped: afterwards none of these callbacks may
 * run (they would jump into unmapped code) and nothing may leak.
 */
#include <stdlib.h>
#include <katomon/plugin.h>

static const struct km_conf_key config_keys[] = {
    {"url", KM_CONF_STRING, NULL, 0, 0, "when set: start an HTTP request before failing"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

/* Set when init gives up. A callback after that is a core bug; once the
   object is unmapped it would crash anyway, this catches it even earlier. */
static int g_failed;

static void on_any(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    /* During init, "*" may deliver the state other plugins published. */
    if (g_failed)
        abort(); /* the subscription outlived the plugin */
}

static void on_timer(void *arg)
{
    abort(); /* must never run */
}

static void on_http(const struct km_http_response *resp, void *arg)
{
    abort(); /* must never run: the request is cancelled with the plugin */
}

static int on_rest(const struct km_rest_call *call, json_t **reply, const char **detail,
                   void *arg)
{
    abort(); /* must never run: the route goes with the plugin */
}

static int initfail_init(struct km_ctx *ctx, const struct km_host *host)
{
    const struct km_topic_def def = {"initfail", KM_TOPIC_STATE, NULL, 0, NULL, NULL};
    const char *url = host->config_string(ctx, "url");
    int err = 0;

    g_failed = 0;
    if (!host->topic_declare(ctx, &def, &err))
        return -1;
    host->timer_add(ctx, 0.01, KM_TIMER_REPEAT | KM_TIMER_NOW, on_timer, NULL);
    host->subscribe(ctx, "*", on_any, NULL);
    host->subscribe(ctx, "initfail", on_any, NULL);
    host->rest_route(ctx, "GET", "/api/v1/initfail", on_rest, NULL);
    if (url) {
        struct km_http_request req = {.url = url, .timeout_ms = 5000};
        host->http_request(ctx, &req, on_http, NULL);
    }
    host->log(ctx, KM_LOG_ERROR, "failing on purpose");
    g_failed = 1;
    return -1;
}

KM_PLUGIN_DEFINE(.name = "test_initfail", .version = "1.0",
                 .description = "loader test: init fails after creating things",
                 .config = config_keys, .init = initfail_init);
