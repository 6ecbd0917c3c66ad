/*
 * plugcheck.c - a plugin's configuration, checked the same way by
 * start-up, SIGHUP and --check-config (see plugcheck.h).
 *
 * A plugin's check gets a report callback of the plugin ABI (printf-style,
 * a section and a line); plugin_report turns each call into one problem of
 * the core's (file, line, text), so a plugin's problems look and count
 * like the loader's own.
 */
#define _GNU_SOURCE /* dladdr1 */
#include "plugcheck.h"

#include <dlfcn.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/util.h>

/* ---- a descriptor's appended members -------------------------------------- */

/*
 * Bytes of the descriptor as the plugin was built: the size of its symbol.
 * A plugin built before a member was appended has a smaller one, and what
 * follows it in memory is not ours to read. No size known: the base.
 */
size_t km_plugin_desc_size(const struct km_plugin *desc)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;

    if (!dladdr1(desc, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym ||
        info.dli_saddr != (void *)desc || sym->st_size < KM_DESC_BASE)
        return KM_DESC_BASE;
    return sym->st_size < sizeof *desc ? sym->st_size : sizeof *desc;
}

const struct km_conf_kind *km_plugin_kinds(const struct km_plugin *desc, size_t size)
{
    return KM_DESC_HAS(size, kinds) ? desc->kinds : NULL;
}

const struct km_topic_def *km_plugin_topics(const struct km_plugin *desc, size_t size)
{
    return KM_DESC_HAS(size, topics) ? desc->topics : NULL;
}

int km_plugin_collects(const struct km_conf_section *sec)
{
    const char *v = km_conf_value(sec, "collect");
    int on = 1;
    if (v && km_parse_bool(v, &on) < 0)
        on = 1;
    return on;
}

/* ---- collect = false: the topics the core declares for the plugin ----------- */

/* Up to this many topics in .topics: a table that does not end is a bug, not
   a plugin with that many topics. */
#define KM_TOPICS_MAX 256

/*
 * collect = false needs .topics, each a topic the bus could declare (a
 * valid name, a kind; the schema and ring are the bus's to refuse at
 * start). Reports at the `collect` line; returns the problems.
 */
static size_t check_topics(const struct km_conf_section *sec,
                           const struct km_plugin *desc, size_t size,
                           km_config_report_fn report, void *arg)
{
    const struct km_conf_entry *e = km_conf_entry(sec, "collect");
    const struct km_topic_def *t = km_plugin_topics(desc, size);
    int line = e ? e->line : sec->line;
    char text[512];
    size_t n = 0;

    if (!t || !t->name) {
        snprintf(text, sizeof text,
                 "plugin %s cannot run with collect = false: it does not name the topics "
                 "it declares (its descriptor has no .topics%s); set collect = true, or "
                 "use a version of the plugin that names them",
                 sec->name, KM_DESC_HAS(size, topics) ? "" : ": built before them");
        report(arg, KM_LOG_ERROR, sec->file, line, text);
        return 1;
    }
    for (; t->name && n < KM_TOPICS_MAX; t++, n++) {
        if (km_topic_name_valid(t->name) &&
            (t->kind == KM_TOPIC_STATE || t->kind == KM_TOPIC_EVENT))
            continue;
        snprintf(text, sizeof text,
                 "plugin %s names a topic `%.64s` in .topics that cannot be declared (a "
                 "bad name or kind); fix the plugin, or set collect = true",
                 sec->name, t->name);
        report(arg, KM_LOG_ERROR, sec->file, line, text);
        return 1;
    }
    if (n == KM_TOPICS_MAX) {
        snprintf(text, sizeof text,
                 "plugin %s names more than %d topics in .topics (is the table ended "
                 "by {NULL}?); fix the plugin",
                 sec->name, KM_TOPICS_MAX);
        report(arg, KM_LOG_ERROR, sec->file, line, text);
        return 1;
    }
    return 0;
}

/* ---- the checks start-up and --check-config run on one plugin ------------- */

/* What plugin_report needs: the caller's report and the plugin's sections. */
struct km_check_call {
    km_config_report_fn report;        /* where problems go */
    void *arg;                         /* its argument */
    const struct km_conf_section *own; /* the plugin's [plugin NAME] */
    size_t problems;                   /* reported through plugin_report */
};

/* The km_conf_report handed to a plugin's check. */
static void __attribute__((format(printf, 4, 5)))
plugin_report(void *arg, const struct km_conf_section *sec, int line, const char *fmt,
              ...)
{
    struct km_check_call *c = arg;
    char text[1024];
    va_list ap;

    if (!sec)
        sec = c->own;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt ? fmt : "(no text)", ap);
    va_end(ap);
    c->report(c->arg, KM_LOG_ERROR, sec->file, line > 0 ? line : sec->line, text);
    c->problems++;
}

/* The kind of `kinds` that `kind` is, or NULL. */
static const struct km_conf_kind *find_kind(const struct km_conf_kind *kinds,
                                            const char *kind)
{
    for (; kinds && kinds->kind; kinds++)
        if (strcmp(kinds->kind, kind) == 0)
            return kinds;
    return NULL;
}

/* A kind a plugin may declare: [a-z0-9_]+, not one of the core's. */
static int kind_ok(const char *kind)
{
    size_t n = strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789_");
    return n > 0 && kind[n] == '\0' && !km_config_core_kind(kind);
}

/*
 * Everything checked about one plugin before its init: its section's keys
 * against .config, the kinds it declares, the keys of each section of those
 * kinds, and its check. Reports each problem; returns how many.
 */
size_t km_plugin_check(const struct km_config *cfg, const struct km_conf_section *sec,
                       const struct km_plugin *desc, size_t size,
                       km_config_report_fn report, void *arg)
{
    const struct km_conf_kind *kinds = km_plugin_kinds(desc, size), *k;
    struct km_check_call call = {report, arg, sec, 0};
    const struct km_conf_section **mine = NULL;
    size_t problems = km_config_check_keys(sec, desc->config, report, arg), n = 0;
    char text[512];

    for (k = kinds; k && k->kind; k++) {
        if (kind_ok(k->kind))
            continue;
        snprintf(text, sizeof text,
                 "plugin %s declares a section kind `%s`, which a plugin cannot have "
                 "([a-z0-9_], not the core's %s); fix the plugin",
                 sec->name, k->kind, km_config_core_kinds());
        report(arg, KM_LOG_ERROR, sec->file, sec->line, text);
        problems++;
    }
    if (kinds && cfg->n_sections && !(mine = calloc(cfg->n_sections, sizeof *mine))) {
        report(arg, KM_LOG_ERROR, sec->file, sec->line, "out of memory");
        return problems + 1;
    }
    for (size_t i = 0; kinds && i < cfg->n_sections; i++) {
        if (!(k = find_kind(kinds, cfg->sections[i]->kind)) || !kind_ok(k->kind))
            continue;
        mine[n++] = cfg->sections[i];
        if (k->keys)
            problems += km_config_check_keys(cfg->sections[i], k->keys, report, arg);
    }
    if (KM_DESC_HAS(size, check) && desc->check) {
        int rc = desc->check(sec, mine, n, plugin_report, &call);
        if (rc != 0 && call.problems == 0) {
            snprintf(text, sizeof text,
                     rc < 0 ? "plugin %s could not check its sections (out of memory?)"
                            : "plugin %s found problems in its sections but named none; "
                              "fix the plugin",
                     sec->name);
            report(arg, KM_LOG_ERROR, sec->file, sec->line, text);
            problems++;
        }
        problems += call.problems;
    }
    if (!km_plugin_collects(sec))
        problems += check_topics(sec, desc, size, report, arg);
    free(mine);
    return problems;
}

/* The owner of `kind` among owners, or NULL. */
static const struct km_owner *owner_of(const struct km_owner *owners, size_t n,
                                       const char *kind)
{
    for (size_t i = 0; i < n; i++)
        if (find_kind(owners[i].kinds, kind))
            return &owners[i];
    return NULL;
}

/* "[core], ..., [alert NAME] (alert_manager)": every kind a section may have. */
static void list_kinds(const struct km_owner *owners, size_t n, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "%s", km_config_core_kinds());
    for (size_t i = 0; i < n && used < len; i++)
        for (const struct km_conf_kind *k = owners[i].kinds; k && k->kind && used < len;
             k++)
            used += (size_t)snprintf(buf + used, len - used, ", [%s NAME] (%s)", k->kind,
                                     owners[i].name);
}

/* A near-miss among the kinds sections may have, as " did you mean [x NAME]?". */
static void kind_hint(const struct km_owner *owners, size_t n,
                      const struct km_conf_section *sec, char *buf, size_t len)
{
    const char *names[64];
    size_t m = 0;
    const char *near;

    names[m++] = "plugin";
    for (size_t i = 0; i < n; i++)
        for (const struct km_conf_kind *k = owners[i].kinds; k && k->kind && m < 63; k++)
            names[m++] = k->kind;
    names[m] = NULL;
    near = km_config_suggest(sec->kind, names);
    if (near)
        snprintf(buf, len, " did you mean [%s %s]?", near, sec->name);
    else
        buf[0] = '\0';
}

/*
 * Every section of a kind that is not the core's needs one plugin declaring
 * that kind. `missing` names the plugins whose kinds are unknown (disabled
 * or not loadable; NULL or "": none), in which case a section nobody
 * declares may be theirs: a warning, not an error. Returns the errors.
 */
size_t km_plugin_check_owners(const struct km_config *cfg, const struct km_owner *owners,
                              size_t n, const char *missing, km_config_report_fn report,
                              void *arg)
{
    size_t errors = 0;
    char text[1400], all[512], hint[160];

    /* one owner per kind */
    for (size_t i = 0; i < n; i++) {
        for (const struct km_conf_kind *k = owners[i].kinds; k && k->kind; k++) {
            const struct km_owner *first = owner_of(owners, i, k->kind);
            if (!first)
                continue;
            snprintf(
                text, sizeof text,
                "plugin %s declares [%s NAME] sections, as does plugin %s (line %d); "
                "a kind has one owner: enable only one of them",
                owners[i].name, k->kind, first->name, first->sec->line);
            report(arg, KM_LOG_ERROR, owners[i].sec->file, owners[i].sec->line, text);
            errors++;
        }
    }
    /* every section has its owner: one report per kind, at its first section */
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        size_t more = 0, seen = 0;
        if (km_config_core_kind(sec->kind) || owner_of(owners, n, sec->kind))
            continue;
        for (size_t j = 0; j < cfg->n_sections; j++) {
            if (strcmp(cfg->sections[j]->kind, sec->kind) != 0)
                continue;
            seen += j < i;
            more += j > i;
        }
        if (seen)
            continue;
        list_kinds(owners, n, all, sizeof all);
        kind_hint(owners, n, sec, hint, sizeof hint);
        if (missing && *missing) {
            char ignored[64] = "it is ignored";
            if (more)
                snprintf(ignored, sizeof ignored, "this one and %zu more are ignored",
                         more);
            snprintf(text, sizeof text,
                     "no plugin loaded here reads [%s NAME] sections: %s;%s the plugin "
                     "may be one not loaded: %s",
                     sec->kind, ignored, hint, missing);
            report(arg, KM_LOG_WARNING, sec->file, sec->line, text);
            continue;
        }
        snprintf(text, sizeof text,
                 "no plugin reads [%s NAME] sections (%zu in this file);%s the sections "
                 "here can be %s: fix the kind, or add the [plugin NAME] that reads it",
                 sec->kind, more + 1, hint, all);
        report(arg, KM_LOG_ERROR, sec->file, sec->line, text);
        errors++;
    }
    return errors;
}

/* Appends "NAME (why)" to the list of plugins whose kinds are unknown. */
void km_plugin_note_missing(char *buf, size_t len, const char *name, const char *why)
{
    size_t used = strlen(buf);
    if (used < len)
        snprintf(buf + used, len - used, "%s%s (%s)", used ? ", " : "", name, why);
}
