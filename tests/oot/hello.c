/*
 * hello.c - the smallest useful katomon plugin, built out of tree.
 *
 * tests/oot/run.sh compiles it against the *installed* headers only:
 *
 *   cc -shared -fPIC $(pkg-config --cflags katomon-plugin) -o hello.so hello.c
 *
 * It declares the state topic `hello_topic` and publishes {"message": ...,
 * "n": N} at init and then every `interval` seconds. Its check refuses an
 * empty message, which a key table cannot say.
 */
#include <string.h>

#include <katomon/plugin.h>

static const struct km_conf_key hello_keys[] = {
    {"message", KM_CONF_STRING, "hello, world", 0, 0, "text to publish"},
    {"interval", KM_CONF_DOUBLE, "1", 0.1, 3600, "seconds between messages"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_field hello_fields[] = {
    KM_FIELD("message", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("n", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

/*
 * What the key table cannot say: `message =` would publish "". The loader
 * runs this after checking the keys' types, at start-up before init and
 * for `katomon --check-config`, which loads the plugin for nothing else:
 * so it only reads what it is given (no host, no globals), and reports
 * each problem at its line.
 */
static int hello_check(const struct km_conf_section *own,
                       const struct km_conf_section *const *sections, size_t n_sections,
                       km_conf_report report, void *arg)
{
    (void)sections; /* hello owns no [KIND NAME] sections */
    (void)n_sections;
    for (size_t i = 0; i < own->n_entries; i++) {
        if (strcmp(own->entries[i].key, "message") == 0 && !own->entries[i].value[0]) {
            report(arg, own, own->entries[i].line,
                   "`message` is empty; write the text to publish, or remove the line "
                   "for the default");
            return 1;
        }
    }
    return 0;
}

static const struct km_host *g_host; /* the core's interface */
static struct km_ctx *g_ctx;         /* our context */
static struct km_topic *g_topic;     /* hello_topic */
static json_int_t g_n;               /* messages sent */

static void hello_publish(void *arg)
{
    const char *text = g_host->config_string(g_ctx, "message");

    (void)arg;
    g_host->publish(g_ctx, g_topic, json_pack("{s:s, s:I}", "message", text, "n", ++g_n));
}

/* Its one number as a Prometheus counter: katomon_hello_messages_total. */
static const struct km_metric hello_metrics[] = {
    {"n", "hello_messages_total", "Greetings this plugin has published",
     KM_METRIC_COUNTER, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};

static int hello_init(struct km_ctx *ctx, const struct km_host *host)
{
    const struct km_topic_def def = {"hello_topic",
                                     KM_TOPIC_STATE,
                                     hello_fields,
                                     0,
                                     "an out-of-tree plugin's greeting",
                                     hello_metrics};
    int err = 0;

    g_host = host;
    g_ctx = ctx;
    g_n = 0;
    if (!(g_topic = host->topic_declare(ctx, &def, &err))) {
        host->log(ctx, KM_LOG_ERROR, "cannot declare hello_topic: %s",
                  host->strerror(err));
        return -1;
    }
    if (!host->timer_add(ctx, host->config_double(ctx, "interval"), KM_TIMER_REPEAT,
                         hello_publish, NULL))
        return -1;
    hello_publish(NULL);
    return 0;
}

KM_PLUGIN_DEFINE(.name = "hello", .version = "0.1", .description = "out-of-tree example",
                 .config = hello_keys, .init = hello_init, .check = hello_check);
