/*
 * test_check.c - a plugin that owns its configuration, for
 * tests/unit/check_loader and tests/integration/check_config.sh.
 *
 * Its [plugin test_check] section takes `mode` (fast or slow: a grammar no
 * key table can say) and `limit`. It owns [widget NAME] sections: `size`
 * (an integer 1..10) and `color` (red, green or blue), and a widget of
 * size over `limit` must be red (a rule across two sections). Its check is
 * a pure function of the sections it is given; init declares the state
 * topic `test_check` and publishes {"widgets": N, "mode": M}, the widgets
 * it reads through config_sections ("widget"), so a test can tell whether
 * init ran and what it saw.
 */
#include <stdio.h>
#include <string.h>

#include <katomon/conf.h>
#include <katomon/plugin.h>

static const struct km_conf_key check_keys[] = {
    {"mode", KM_CONF_STRING, "fast", 0, 0, "fast or slow"},
    {"limit", KM_CONF_INT, "5", 1, 10, "largest widget that need not be red"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_conf_key widget_keys[] = {
    {"size", KM_CONF_INT, NULL, 1, 10, "how big"},
    {"color", KM_CONF_STRING, NULL, 0, 0, "red, green or blue"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

static const struct km_conf_kind check_kinds[] = {
    {"widget", widget_keys, "a widget of test_check"},
    {NULL, NULL, NULL},
};

static const struct km_field state_fields[] = {
    KM_FIELD("widgets", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("mode", KM_STRING, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_conf_entry *entry(const struct km_conf_section *s, const char *key)
{
    for (size_t i = 0; s && i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, key) == 0)
            return &s->entries[i];
    return NULL;
}

static int test_check(const struct km_conf_section *own,
                      const struct km_conf_section *const *sections, size_t n_sections,
                      km_conf_report report, void *arg)
{
    const struct km_conf_entry *mode = entry(own, "mode"), *e;
    long long limit = 5, size;
    int problems = 0;

    if (mode && strcmp(mode->value, "fast") != 0 && strcmp(mode->value, "slow") != 0) {
        report(arg, own, mode->line, "bad value `%s` for `mode`: expected fast or slow",
               mode->value);
        problems++;
    }
    if ((e = entry(own, "limit")))
        km_conf_parse_int(e->value, &limit); /* a bad one: the loader said so */
    for (size_t i = 0; i < n_sections; i++) {
        const struct km_conf_section *w = sections[i];
        const struct km_conf_entry *color = entry(w, "color");
        if (!color) {
            report(arg, w, 0, "[widget %s] has no `color`; add color = red", w->name);
            problems++;
            continue;
        }
        if (strcmp(color->value, "red") != 0 && strcmp(color->value, "green") != 0 &&
            strcmp(color->value, "blue") != 0) {
            report(arg, w, color->line,
                   "bad value `%s` for `color` in [widget %s]: expected red, green or "
                   "blue",
                   color->value, w->name);
            problems++;
        } else if ((e = entry(w, "size")) && km_conf_parse_int(e->value, &size) == 0 &&
                   size > limit && strcmp(color->value, "red") != 0) {
            report(arg, w, e->line,
                   "[widget %s] is bigger than limit (%lld), so it must be red", w->name,
                   limit);
            problems++;
        }
    }
    return problems;
}

static int check_init(struct km_ctx *ctx, const struct km_host *host)
{
    const struct km_topic_def def = {"test_check",
                                     KM_TOPIC_STATE,
                                     state_fields,
                                     0,
                                     "test_check's view of its sections",
                                     NULL};
    struct km_topic *topic;
    size_t n = 0;
    int err = 0;

    host->config_sections(ctx, "widget", &n);
    if (!(topic = host->topic_declare(ctx, &def, &err)))
        return -1;
    return host->publish(ctx, topic,
                         json_pack("{s:I, s:s}", "widgets", (json_int_t)n, "mode",
                                   host->config_string(ctx, "mode")));
}

KM_PLUGIN_DEFINE(.name = "test_check", .version = "1.0",
                 .description = "loader test: owns [widget NAME] and checks them",
                 .config = check_keys, .init = check_init, .kinds = check_kinds,
                 .check = test_check);
