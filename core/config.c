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
 *    seconds, fractions allowed.
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

#include <katomon/conf.h>

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

#define KM_SIZE_MAX   (1024.0 * 1024 * 1024) /* 1G: more is a typo, not a need */
#define KM_CFG(field) offsetof(struct km_config, field)

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
    {.name = NULL},
};

static const struct km_key websocket_keys[] = {
    KM_BOOL("enabled", enabled),
    KM_SECS("update_interval", update_interval, 0, 1, 3600),
    KM_SIZE("max_message_bytes", max_message_bytes),
    KM_SIZE("max_queue_bytes", max_queue_bytes),
    KM_SECS("ping_interval", ping_interval, 0, 0, 86400),
    KM_SECS("idle_timeout", idle_timeout, 0, 0, 86400),
    {.name = NULL},
};

/* The core's own keys of [plugin NAME]; the plugin's are checked at load. */
static const struct km_key plugin_keys[] = {
    KM_CHECK("file", KM_V_STRING),
    KM_CHECK("enabled", KM_V_BOOL),
    {.name = NULL},
};

static const struct km_key no_keys[] = {{.name = NULL}};

const struct km_sect_spec km_sect_specs[] = {
    {"core", 0, 0, core_keys, "[core]"},
    {"http", 0, 0, http_keys, "[http]"},
    {"websocket", 0, 0, websocket_keys, "[websocket]"},
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
    return "[core], [http], [websocket], [plugin NAME]";
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
    case KM_V_BOOL:
        return "true or false (also yes/no, on/off, 1/0)";
    case KM_V_LOGLEVEL:
        return "one of error, warning, notice, info, debug";
    default:
        return "a non-empty value";
    }
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

struct km_config *km_config_defaults(void)
{
    struct km_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->plugin_dir = strdup(KM_PLUGIN_DIR);
    cfg->state_dir = strdup(KM_STATE_DIR);
    cfg->web_root = strdup(KM_WEB_ROOT);
    cfg->vendor_root = strdup(KM_VENDOR_ROOT);
    cfg->bind = strdup("127.0.0.1");
    if (!cfg->plugin_dir || !cfg->state_dir || !cfg->web_root || !cfg->vendor_root ||
        !cfg->bind) {
        km_config_free(cfg);
        return NULL;
    }
    cfg->log_level = KM_LOG_INFO;
    cfg->port = 8080;
    cfg->max_connections = 10000;
    cfg->max_request_bytes = 64 * 1024;
    cfg->enabled = 1;
    cfg->update_interval = 3;
    cfg->max_message_bytes = 64 * 1024;
    cfg->max_queue_bytes = 1024 * 1024;
    cfg->ping_interval = 30;
    cfg->idle_timeout = 120;
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
    free(cfg->bind);
    free(cfg->web_root);
    free(cfg->vendor_root);
    free(cfg->allowed_origins);
    free(cfg->auth_token);
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
