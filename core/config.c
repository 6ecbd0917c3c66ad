/*
 * config.c - the core's own sections of katomon.conf (DESIGN section 7):
 * which sections and keys the core knows, what their values must be, and
 * where they go in struct km_config. Reading the file is confread.c's job,
 * plugins' keys confcheck.c's.
 *
 * Decisions worth knowing:
 *  - Keys and section kinds are case-sensitive (a near-miss gets a hint).
 *  - An empty pid_file, allowed_origins or auth_token means "none" (NULL).
 *  - Sizes take k/K, M, G suffixes (powers of 1024); durations are plain
 *    seconds, fractions allowed, except the KM_V_DURATION keys ([core]
 *    host_stale), which take km_parse_duration's units too ("15s", "1m").
 *  - [core] host_name defaults to the hostname made valid, not refused: a
 *    machine called "db_1:prod" still starts (as "db_1-prod"); a configured
 *    name that is not valid is an error, since the operator chose it.
 *  - The core knows no plugin's kinds of section: any [KIND NAME] that is
 *    not its own is kept for the loader to hand to the plugin declaring it.
 */
#include "confint.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <katomon/conf.h>
#include <katomon/util.h>

#include "bus.h" /* KM_HOSTS_MAX, KM_HOSTS_DEFAULT */
#include "log.h"

/* Makefile.am defines these from the configured paths; fallbacks for a bare
   compile (e.g. a test built by hand). */
#ifndef KM_PLUGIN_DIR
#define KM_PLUGIN_DIR "/usr/local/lib/katomon/plugins"
#endif
#ifndef KM_STATE_DIR
#define KM_STATE_DIR "/usr/local/var/lib/katomon"
#endif
#ifndef KM_VENDOR_ROOT
#define KM_VENDOR_ROOT "/usr/share/javascript"
#endif
#ifndef KM_WEB_ROOT
#define KM_WEB_ROOT "/usr/local/share/katomon/web"
#endif

#define KM_SIZE_MAX      (1024.0 * 1024 * 1024) /* 1G: more is a typo, not a need */
#define KM_TIERS_DEFAULT "1s:1h 1m:1d 10m:7d"   /* [history] tiers */
#define KM_CFG(field)    offsetof(struct km_config, field)

/* ---- key tables -------------------------------------------------------- */

// clang-format off
/* clang-format would spread each of these over four lines */
#define KM_STR(n, f)  {.name = n, .type = KM_V_STRING, .offset = KM_CFG(f)}
#define KM_OPT(n, f)  {.name = n, .type = KM_V_OPTSTR, .offset = KM_CFG(f)}
#define KM_BOOL(n, f) {.name = n, .type = KM_V_BOOL, .offset = KM_CFG(f)}
#define KM_SIZE(n, f) \
    {.name = n, .type = KM_V_SIZE, .min = 1, .max = KM_SIZE_MAX, .offset = KM_CFG(f)}
#define KM_SECS(n, f, lo, open, hi) \
    {.name = n, .type = KM_V_DOUBLE, .min = lo, .max = hi, .min_open = open, \
     .unit = "seconds", .offset = KM_CFG(f)}
#define KM_CHECK(n, t) {.name = n, .type = t, .offset = KM_NOFIELD}
// clang-format on

static const struct km_key core_keys[] = {
    KM_STR("plugin_dir", plugin_dir),
    KM_STR("state_dir", state_dir),
    KM_OPT("pid_file", pid_file),
    {.name = "log_level", .type = KM_V_LOGLEVEL, .offset = KM_CFG(log_level)},
    KM_BOOL("plugin_failure_fatal", plugin_failure_fatal),
    {.name = "host_name", .type = KM_V_HOSTNAME, .offset = KM_CFG(host_name)},
    {.name = "max_hosts",
     .type = KM_V_INT,
     .min = 1,
     .max = KM_HOSTS_MAX,
     .offset = KM_CFG(max_hosts)},
    {.name = "host_stale",
     .type = KM_V_DURATION,
     .min = KM_HOST_STALE_MIN,
     .max = 86400,
     .unit = "seconds",
     .offset = KM_CFG(host_stale)},
    {.name = "host_forget",
     .type = KM_V_DURATION,
     .min = 0,
     .max = 30 * 86400,
     .unit = "seconds",
     .offset = KM_CFG(host_forget)},
    {.name = NULL},
};

static const struct km_key http_keys[] = {
    KM_STR("bind", bind),
    {.name = "port", .type = KM_V_INT, .min = 0, .max = 65535, .offset = KM_CFG(port)},
    KM_STR("web_root", web_root),
    KM_OPT("vendor_root", vendor_root),
    KM_OPT("allowed_origins", allowed_origins),
    KM_OPT("auth_token", auth_token),
    {.name = "max_connections",
     .type = KM_V_INT,
     .min = 1,
     .max = INT_MAX,
     .offset = KM_CFG(max_connections)},
    KM_SIZE("max_request_bytes", max_request_bytes),
    KM_SECS("request_timeout", request_timeout, 0, 0, 3600),
    KM_BOOL("metrics", metrics),
    {.name = NULL},
};

static const struct km_key websocket_keys[] = {
    KM_BOOL("enabled", enabled),
    KM_SECS("update_interval", update_interval, 0, 1, 3600),
    KM_SIZE("max_message_bytes", max_message_bytes),
    KM_SIZE("max_queue_bytes", max_queue_bytes),
    KM_SECS("ping_interval", ping_interval, 0, 0, 86400),
    KM_SECS("idle_timeout", idle_timeout, 0, 0, 86400),
    {.name = "compatible_fleet", .type = KM_V_FLEET, .offset = KM_CFG(compatible_fleet)},
    {.name = NULL},
};

static const struct km_key history_keys[] = {
    KM_BOOL("enabled", history),
    {.name = "tiers", .type = KM_V_TIERS, .offset = KM_CFG(tiers)},
    {.name = "max_series",
     .type = KM_V_INT,
     .min = 1,
     .max = 1000000,
     .offset = KM_CFG(max_series)},
    KM_SECS("flush_interval", flush_interval, 0, 0, 86400),
    KM_OPT("file", history_file),
    {.name = NULL},
};

/* The core's own keys of [plugin NAME]; the plugin's are checked at load. */
static const struct km_key plugin_keys[] = {
    KM_CHECK("file", KM_V_STRING),
    KM_CHECK("enabled", KM_V_BOOL),
    KM_CHECK("collect", KM_V_BOOL),
    {.name = NULL},
};

static const struct km_key no_keys[] = {{.name = NULL}};

const struct km_sect_spec km_sect_specs[] = {
    {"core", 0, 0, core_keys, "[core]"},
    {"http", 0, 0, http_keys, "[http]"},
    {"websocket", 0, 0, websocket_keys, "[websocket]"},
    {"history", 0, 0, history_keys, "[history]"},
    {"plugin", 1, 1, plugin_keys, "[plugin NAME]"},
    {NULL, 0, 0, NULL, NULL},
};

/* A plugin's [KIND NAME]: every key kept, checked by the loader against the
   plugin that declares KIND. */
const struct km_sect_spec km_plugin_kind_spec = {"", 1, 1, no_keys, "[KIND NAME]"};

const struct km_sect_spec *km_spec_find(const char *kind)
{
    for (const struct km_sect_spec *s = km_sect_specs; s->kind; s++)
        if (strcmp(s->kind, kind) == 0)
            return s;
    return NULL;
}

int km_config_core_kind(const char *kind)
{
    return kind && km_spec_find(kind) != NULL;
}

const char *km_config_core_kinds(void)
{
    return "[core], [http], [websocket], [history], [plugin NAME]";
}

const struct km_key *km_key_find(const struct km_key *keys, const char *name)
{
    for (; keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

/* ---- value parsers ------------------------------------------------------- */

int km_parse_bool(const char *text, int *out)
{
    return km_conf_parse_bool(text, out);
}

int km_parse_int(const char *text, long long *out)
{
    return km_conf_parse_int(text, out);
}

int km_parse_double(const char *text, double *out)
{
    return km_conf_parse_double(text, out);
}

/* Bytes, with an optional k/K, M or G suffix (powers of 1024). */
static int km_parse_size(const char *text, size_t *out)
{
    char *end;
    size_t digits = strspn(text, "0123456789");
    if (digits == 0)
        return -1;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned long long mul = 1;
    if (errno != 0)
        return -1;
    if (*end == 'k' || *end == 'K')
        mul = 1024ULL;
    else if (*end == 'M')
        mul = 1024ULL * 1024;
    else if (*end == 'G')
        mul = 1024ULL * 1024 * 1024;
    else if (*end != '\0')
        return -1;
    if (mul > 1 && end[1] != '\0')
        return -1;
    if (v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* ---- checking and storing core keys -------------------------------------- */

static int km_in_range(const struct km_key *k, double v)
{
    return (k->min_open ? v > k->min : v >= k->min) && v <= k->max;
}

/* Replaces the string at *field with a copy of text (NULL: none). */
static int km_set_str(char **field, const char *text)
{
    char *copy = NULL;
    if (text && !(copy = strdup(text)))
        return -2;
    free(*field);
    *field = copy;
    return 0;
}

/* Numeric keys: 0 and the value in *out, or -1. */
static int km_number(const struct km_key *k, const char *text, double *out)
{
    long long i;
    size_t z;
    if (k->type == KM_V_INT && km_parse_int(text, &i) == 0)
        *out = (double)i;
    else if (k->type == KM_V_SIZE && km_parse_size(text, &z) == 0)
        *out = (double)z;
    else if (k->type != KM_V_DOUBLE || km_parse_double(text, out) < 0)
        return -1;
    return km_in_range(k, *out) ? 0 : -1;
}

int km_key_apply(const struct km_key *k, const char *text, struct km_config *cfg)
{
    void *field = k->offset == KM_NOFIELD ? NULL : (char *)cfg + k->offset;
    double num;
    int b;
    enum km_log_level level;

    switch (k->type) {
    case KM_V_STRING:
        if (!*text)
            return -1;
        return field ? km_set_str(field, text) : 0;
    case KM_V_OPTSTR:
        return field ? km_set_str(field, *text ? text : NULL) : 0;
    case KM_V_BOOL:
        if (km_parse_bool(text, &b) < 0)
            return -1;
        if (field)
            *(int *)field = b;
        return 0;
    case KM_V_INT:
    case KM_V_DOUBLE:
    case KM_V_SIZE:
        if (km_number(k, text, &num) < 0)
            return -1;
        if (field && k->type == KM_V_INT)
            *(int *)field = (int)num;
        else if (field && k->type == KM_V_DOUBLE)
            *(double *)field = num;
        else if (field)
            km_parse_size(text, (size_t *)field); /* exact, not via double */
        return 0;
    case KM_V_LOGLEVEL:
        if (km_log_parse_level(text, &level) < 0)
            return -1;
        if (field)
            *(enum km_log_level *)field = level;
        return 0;
    case KM_V_DURATION:
        if (km_parse_duration(text, &num) < 0 || !km_in_range(k, num))
            return -1;
        if (field)
            *(double *)field = num;
        return 0;
    case KM_V_HOSTNAME:
        if (!km_host_name_valid(text))
            return -1;
        return field ? km_set_str(field, text) : 0;
    case KM_V_FLEET:
        if (strcmp(text, "local") == 0)
            b = KM_FLEET_LOCAL;
        else if (strcmp(text, "aggregate") == 0)
            b = KM_FLEET_AGGREGATE;
        else
            return -1;
        if (field)
            *(int *)field = b;
        return 0;
    case KM_V_TIERS: {
        struct km_tiers tiers;
        char why[160];
        if (km_parse_tiers(text, &tiers, why, sizeof why) < 0)
            return -1;
        if (field)
            *(struct km_tiers *)field = tiers;
        return 0;
    }
    }
    return -1;
}

/* " from 1 to 3600", " > 0 and <= 3600", " >= 0" or "" for a number. */
static void km_describe_range(const struct km_key *k, char *buf, size_t n)
{
    const char *lo = k->min_open ? ">" : ">=";
    /* INT_MAX is "no limit" to an operator */
    int open_top = isinf(k->max) || (k->type == KM_V_INT && k->max == INT_MAX);
    if (isinf(k->min) && isinf(k->max))
        buf[0] = '\0';
    else if (open_top)
        snprintf(buf, n, " %s %.15g", lo, k->min);
    else if (k->min_open)
        snprintf(buf, n, " > %.15g and <= %.15g", k->min, k->max);
    else if (k->type == KM_V_SIZE && k->max == KM_SIZE_MAX)
        snprintf(buf, n, " from %.15g to 1G (suffix k, M or G allowed, e.g. 64k)",
                 k->min);
    else
        snprintf(buf, n, " from %.15g to %.15g", k->min, k->max);
}

const char *km_key_describe(const struct km_key *k, char *buf, size_t n)
{
    char range[96];
    switch (k->type) {
    case KM_V_INT:
    case KM_V_DOUBLE:
    case KM_V_SIZE:
        km_describe_range(k, range, sizeof range);
        snprintf(buf, n, "%s%s%s%s",
                 k->type == KM_V_INT      ? "an integer"
                 : k->type == KM_V_DOUBLE ? "a number"
                                          : "a size in bytes",
                 k->unit ? " of " : "", k->unit ? k->unit : "", range);
        return buf;
    case KM_V_DURATION:
        km_describe_range(k, range, sizeof range);
        snprintf(buf, n, "a duration%s (seconds, or with a unit s, m, h, d: 15s, 1m)",
                 range);
        return buf;
    case KM_V_HOSTNAME:
        return "a host name of 1 to 64 characters from A-Z a-z 0-9 _ . - (e.g. web-1)";
    case KM_V_FLEET:
        return "local (compatible clients see this host only) or aggregate (every "
               "host's items, labelled with their host)";
    case KM_V_BOOL:
        return "true or false (also yes/no, on/off, 1/0)";
    case KM_V_LOGLEVEL:
        return "one of error, warning, notice, info, debug";
    case KM_V_TIERS:
        return "STEP:RETENTION pairs, finest first, e.g. 1s:1h 1m:1d 10m:7d (at most 4; "
               "steps of 1 s or more, growing, each a multiple of the first; retention "
               "a multiple of its step, at most 400d and 1,000,000 points)";
    default:
        return "a non-empty value";
    }
}

/* ---- durations and tiers ------------------------------------------------ */

int km_parse_duration(const char *text, double *out)
{
    static const struct {
        char unit;   /* suffix */
        double secs; /* its length */
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    char num[32];
    size_t n = strlen(text);
    double mult = 1, v;

    if (n == 0 || n >= sizeof num)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (text[n - 1] == units[i].unit) {
            mult = units[i].secs;
            n--;
            break;
        }
    memcpy(num, text, n);
    num[n] = '\0';
    if (km_parse_double(num, &v) < 0 || !isfinite(v * mult))
        return -1;
    *out = v * mult;
    return 0;
}

/* Is a a whole multiple of b (both > 0), allowing for float noise? */
static int km_multiple(double a, double b)
{
    double q = a / b;
    return q >= 1 && fabs(q - round(q)) < 1e-9 * q;
}

/* Checks one tier against the ones before it; NULL or the reason. */
static const char *km_tier_check(const struct km_tiers *t, unsigned i)
{
    double step = t->t[i].step, ret = t->t[i].retention;
    if (!(step >= 1) || step > 86400)
        return "a step must be from 1s to 1d";
    if (!(ret >= 2 * step) || ret > 400 * 86400.0)
        return "a retention must be at least two steps and at most 400d";
    if (!km_multiple(ret, step))
        return "a retention must be a whole number of its steps";
    if (ret / step > 1e6)
        return "a tier may hold at most 1,000,000 points";
    if (i > 0 && !(step > t->t[i - 1].step))
        return "each step must be longer than the one before";
    if (i > 0 && !km_multiple(step, t->t[0].step))
        return "each step must be a multiple of the first tier's";
    return NULL;
}

int km_parse_tiers(const char *text, struct km_tiers *out, char *why, size_t whylen)
{
    struct km_tiers t = {0};
    const char *p = text, *reason = NULL;
    char item[64];

    while (!reason) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t,");
        if (n == 0)
            break;
        char *colon;
        if (t.n == KM_TIERS_MAX)
            reason = "at most 4 tiers";
        else if (n >= sizeof item)
            reason = "a tier is STEP:RETENTION, e.g. 1m:1d";
        if (reason)
            break;
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        if ((colon = strchr(item, ':')) != NULL)
            *colon = '\0';
        if (!colon || km_parse_duration(item, &t.t[t.n].step) < 0 ||
            km_parse_duration(colon + 1, &t.t[t.n].retention) < 0)
            reason = "a tier is STEP:RETENTION, e.g. 1m:1d (units s, m, h, d, w)";
        else
            reason = km_tier_check(&t, t.n++);
    }
    if (!reason && t.n == 0)
        reason = "at least one tier";
    if (reason) {
        if (why)
            snprintf(why, whylen, "%s", reason);
        return -1;
    }
    *out = t;
    return 0;
}

/* ---- the config as a whole ------------------------------------------------ */

void km_sect_free(struct km_sect *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->pub.n_entries; i++) {
        free((char *)s->ents[i].key);
        free((char *)s->ents[i].value);
    }
    free(s->ents);
    free((char *)s->pub.name);
    free(s->kind);
    free(s);
}

char *km_config_host_name_from(const char *raw, char *buf, size_t n)
{
    static const char ok[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    size_t len = 0;

    if (n == 0)
        return buf;
    for (const char *p = raw ? raw : ""; *p && len < KM_HOST_NAME_MAX && len + 1 < n; p++)
        buf[len++] = strchr(ok, *p) ? *p : '-';
    buf[len] = '\0';
    if (len == 0)
        snprintf(buf, n, "localhost");
    return buf;
}

char *km_config_default_host_name(char *buf, size_t n)
{
    char raw[256];

    /* gethostname may not terminate a name it had to cut */
    if (gethostname(raw, sizeof raw - 1) < 0)
        raw[0] = '\0';
    raw[sizeof raw - 1] = '\0';
    return km_config_host_name_from(raw, buf, n);
}

struct km_config *km_config_defaults(void)
{
    struct km_config *cfg = calloc(1, sizeof *cfg);
    char host[KM_HOST_NAME_MAX + 1];

    if (!cfg)
        return NULL;
    cfg->host_name = strdup(km_config_default_host_name(host, sizeof host));
    cfg->plugin_dir = strdup(KM_PLUGIN_DIR);
    cfg->state_dir = strdup(KM_STATE_DIR);
    cfg->web_root = strdup(KM_WEB_ROOT);
    cfg->vendor_root = strdup(KM_VENDOR_ROOT);
    cfg->bind = strdup("127.0.0.1");
    if (!cfg->plugin_dir || !cfg->state_dir || !cfg->web_root || !cfg->vendor_root ||
        !cfg->bind || !cfg->host_name) {
        km_config_free(cfg);
        return NULL;
    }
    cfg->log_level = KM_LOG_INFO;
    cfg->max_hosts = KM_HOSTS_DEFAULT;
    cfg->host_stale = KM_HOST_STALE_DEFAULT;
    cfg->host_forget = KM_HOST_FORGET_DEFAULT;
    cfg->compatible_fleet = KM_FLEET_LOCAL;
    cfg->port = 8080;
    cfg->max_connections = 10000;
    cfg->max_request_bytes = 64 * 1024;
    cfg->enabled = 1;
    cfg->update_interval = 3;
    cfg->max_message_bytes = 64 * 1024;
    cfg->max_queue_bytes = 1024 * 1024;
    cfg->ping_interval = 30;
    cfg->idle_timeout = 120;
    cfg->request_timeout = 30;
    cfg->metrics = 1;
    cfg->history = 1;
    km_parse_tiers(KM_TIERS_DEFAULT, &cfg->tiers, NULL, 0);
    cfg->max_series = 4096;
    cfg->flush_interval = 60;
    return cfg;
}

void km_config_free(struct km_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_sections; i++)
        km_sect_free((struct km_sect *)cfg->sections[i]);
    free(cfg->sections);
    free(cfg->path);
    free(cfg->plugin_dir);
    free(cfg->state_dir);
    free(cfg->pid_file);
    free(cfg->host_name);
    free(cfg->bind);
    free(cfg->web_root);
    free(cfg->vendor_root);
    free(cfg->allowed_origins);
    free(cfg->auth_token);
    free(cfg->history_file);
    free(cfg);
}

/* ---- lookups ------------------------------------------------------------- */

const struct km_conf_section *km_config_section(const struct km_config *cfg,
                                                const char *kind, const char *name)
{
    for (size_t i = 0; cfg && kind && name && i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        if (strcmp(sec->kind, kind) == 0 && strcmp(sec->name, name) == 0)
            return sec;
    }
    return NULL;
}

const struct km_conf_entry *km_conf_entry(const struct km_conf_section *sec,
                                          const char *key)
{
    if (!sec || !key)
        return NULL;
    for (size_t i = 0; i < sec->n_entries; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return &sec->entries[i];
    return NULL;
}

const char *km_conf_value(const struct km_conf_section *sec, const char *key)
{
    const struct km_conf_entry *e = km_conf_entry(sec, key);
    return e ? e->value : NULL;
}
