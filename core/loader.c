/*
 * loader.c - loads, tracks and unloads plugins (DESIGN section 3).
 *
 * One slot per [plugin NAME] section, in file order, whatever became of
 * it: running, disabled (and why), or switched off. Loading is a chain of
 * checks, each of which can end in exactly one error line
 * "plugin NAME (FILE): reason" that says what to do about it:
 *
 *   resolve file -> exists -> dlopen -> descriptor symbol -> ABI -> name
 *   -> its sections (keys, kinds, check) -> init
 *
 * Start-up runs it in three passes: open and check every enabled plugin;
 * then make sure every plugin's [KIND NAME] section has the plugin that
 * declares KIND among them (a section nobody reads is a typo, and fatal:
 * the file is wrong, not a plugin); then init them in file order.
 * --check-config runs the first two passes and stops: the checks are the
 * same code, so a file it accepts starts. SIGHUP runs a running plugin's
 * checks against the new file before its reload hook.
 *
 * A section with `collect = false` makes its plugin passive: pass 1 and 2
 * as for any other (so --check-config checks it the same way), then in
 * pass 3, instead of init, the core declares the topics its descriptor's
 * .topics names, owned by the plugin's context. It keeps its object mapped
 * (the topics borrow their schemas and series tables from it) and its
 * context (the topics' owner, and what km_host_release disowns at the end),
 * but none of its code ever runs: no init, reload or shutdown.
 *
 * Shutdown runs in reverse load order, so a plugin that subscribed to the
 * topics of one loaded before it is stopped before that one. Per plugin:
 * its shutdown hook, then the host takes back whatever the plugin left
 * (km_host_release: requests, timers, fd watches, subscriptions, topic
 * ownership, routes), and
 * only then is the object unmapped.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ctx.h"
#include "host.h"
#include "loader.h"
#include "log.h"
#include "plugcheck.h"

/* One configured plugin. */
struct km_slot {
    char *name;                   /* section NAME (owned) */
    char *file;                   /* resolved .so path (owned) */
    enum km_plugin_state state;   /* running, disabled or off */
    char *reason;                 /* DISABLED: why (owned); else NULL */
    void *dl;                     /* dlopen() handle: RUNNING, or opened and not
                                     yet started (start-up only) */
    const struct km_plugin *desc; /* descriptor inside dl, while dl is open */
    size_t desc_size;             /* bytes of *desc (older plugins have fewer
                                     members; see KM_DESC_HAS) */
    struct km_ctx *ctx;           /* RUNNING, PASSIVE: the plugin's context (owned) */
    size_t n_topics;              /* PASSIVE: topics declared for it */
    struct km_plugin snap;        /* DISABLED after its descriptor was read:
                                     name/version/description copied (owned),
                                     no functions, so the API can still show them */
    int has_snap;                 /* snap is filled */
};

struct km_loader {
    struct km_core *core;            /* the daemon (borrowed) */
    struct km_slot *slots;           /* configured plugins in load order (owned) */
    struct km_plugin_routes *routes; /* every plugin's REST routes (owned; also
                                 core->routes, where the host adds to it) */
    size_t n_slots;                  /* number of slots */
    int loaded;                      /* km_loader_load_all ran */
};

/* ---- helpers ---------------------------------------------------------- */

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* New string, printf-style (NULL on ENOMEM). */
static char *format(const char *fmt, ...)
{
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(s = malloc((size_t)n + 1)))
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static int is_plugin_section(const struct km_conf_section *sec)
{
    return sec->kind && strcmp(sec->kind, "plugin") == 0;
}

/* `enabled` of a plugin section: default true. The config reader checked
   the value already; anything unreadable counts as on, so the loader
   reports the plugin instead of silently skipping it. */
static int is_enabled(const struct km_conf_section *sec)
{
    const char *v = km_conf_value(sec, "enabled");
    int on = 1;
    if (v && km_parse_bool(v, &on) < 0)
        on = 1;
    return on;
}

/* The .so of a section: `file` (relative to plugin_dir unless absolute),
   or plugin_dir/NAME.so. New string. */
static char *resolve_file(const struct km_config *cfg, const struct km_conf_section *sec)
{
    const char *file = km_conf_value(sec, "file");
    const char *dir = cfg->plugin_dir && cfg->plugin_dir[0] ? cfg->plugin_dir : ".";

    if (file && file[0] == '/')
        return strdup(file);
    if (file && file[0])
        return format("%s/%s", dir, file);
    return format("%s/%s.so", dir, sec->name);
}

/* The line an operator should edit for a problem with the .so itself. */
static int file_line(const struct km_conf_section *sec)
{
    const struct km_conf_entry *e = km_conf_entry(sec, "file");
    return e ? e->line : sec->line;
}

static void copy_snapshot(struct km_slot *s, const struct km_plugin *desc)
{
    s->snap.abi = desc->abi;
    s->snap.name = desc->name ? strdup(desc->name) : NULL;
    s->snap.version = desc->version ? strdup(desc->version) : NULL;
    s->snap.description = desc->description ? strdup(desc->description) : NULL;
    s->has_snap = 1;
}

static void free_snapshot(struct km_slot *s)
{
    free((char *)s->snap.name);
    free((char *)s->snap.version);
    free((char *)s->snap.description);
    memset(&s->snap, 0, sizeof s->snap);
    s->has_snap = 0;
}

/* A km_config_report_fn for the daemon's log. */
static void log_problem(void *arg, enum km_log_level level, const char *file, int line,
                        const char *text)
{
    struct km_problem p = {level, (char *)file, line, (char *)text};
    char buf[1400];
    const char *prefix = arg;

    km_problem_format(&p, 0, buf, sizeof buf);
    km_log(level, "%s%s", prefix ? prefix : "", buf);
}

/* ---- opening one plugin ---------------------------------------------------- */

/*
 * Opens `file` and checks that it is a katomon plugin called `name`. On
 * success *dl and *desc are set and the object stays open. On failure it
 * is closed and `reason` says why; when the descriptor could be read
 * safely (ABI matched), it is copied into `snap` of `s` (when s is not
 * NULL) before the unmap.
 */
static int open_plugin(const char *name, const char *file, void **dl_out,
                       const struct km_plugin **desc_out, struct km_slot *s, char *reason,
                       size_t len)
{
    struct stat st;
    const struct km_plugin *desc;
    void *dl;

    /* dlopen's own text for a missing file says nothing about where katomon
       looked or why; this does. Other stat errors are left to dlopen. */
    if (stat(file, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        snprintf(reason, len, "not found; check [core] plugin_dir or the file key");
        return -1;
    }
    dlerror();
    if (!(dl = dlopen(file, RTLD_NOW | RTLD_LOCAL))) {
        const char *e = dlerror();
        size_t flen = strlen(file);
        if (!e)
            e = "dlopen failed";
        /* "FILE: file too short": the line names the file already. */
        if (strncmp(e, file, flen) == 0 && e[flen] == ':' && e[flen + 1] == ' ')
            e += flen + 2;
        snprintf(reason, len, "cannot load it: %s", e);
        return -1;
    }
    desc = dlsym(dl, KM_PLUGIN_SYMBOL);
    if (!desc) {
        snprintf(reason, len, "no %s symbol: not a katomon plugin?", KM_PLUGIN_SYMBOL);
        goto fail;
    }
    /* Only .abi is read before this check: past it the layout may differ. */
    if (desc->abi != KM_PLUGIN_ABI) {
        snprintf(reason, len,
                 "built for plugin ABI %u, this katomon needs %u; rebuild it against "
                 "this katomon's headers",
                 (unsigned)desc->abi, (unsigned)KM_PLUGIN_ABI);
        goto fail;
    }
    if (s)
        copy_snapshot(s, desc);
    if (!desc->name || strcmp(desc->name, name) != 0) {
        snprintf(reason, len,
                 "the plugin in this file is called '%s'; rename the section to "
                 "[plugin %s] or point the file key at the right plugin",
                 desc->name ? desc->name : "(none)", desc->name ? desc->name : "...");
        goto fail;
    }
    if (!desc->init) {
        snprintf(reason, len, "its descriptor has no init function; fix the plugin");
        goto fail;
    }
    *dl_out = dl;
    *desc_out = desc;
    return 0;

fail:
    dlclose(dl);
    return -1;
}

/* ---- the loader ----------------------------------------------------------- */

const char *km_plugin_state_name(enum km_plugin_state state)
{
    switch (state) {
    case KM_PLUGIN_RUNNING:
        return "running";
    case KM_PLUGIN_DISABLED:
        return "disabled";
    case KM_PLUGIN_OFF:
        return "off";
    case KM_PLUGIN_PASSIVE:
        return "passive";
    }
    return "";
}

struct km_loader *km_loader_new(struct km_core *core)
{
    struct km_loader *L = calloc(1, sizeof *L);

    if (!L || !(L->routes = km_plugin_routes_new())) {
        free(L);
        return NULL;
    }
    L->core = core;
    core->routes = L->routes;
    return L;
}

/* Marks s disabled, with its one log line. */
static void disable(struct km_slot *s, const char *reason)
{
    km_log(KM_LOG_ERROR, "plugin %s (%s): %s", s->name, s->file, reason);
    s->state = KM_PLUGIN_DISABLED;
    free(s->reason);
    s->reason = strdup(reason);
}

/* Unmaps an opened plugin that was never started. */
static void unmap(struct km_slot *s)
{
    if (s->dl && !s->ctx) {
        dlclose(s->dl);
        s->dl = NULL;
        s->desc = NULL;
    }
}

/* Takes back everything of a loaded plugin and unmaps it. */
static void unload(struct km_slot *s)
{
    km_host_release(s->ctx);
    dlclose(s->dl);
    km_ctx_free(s->ctx);
    s->ctx = NULL;
    s->dl = NULL;
    s->desc = NULL;
}

/* Problems of one plugin as its disable reason: the one problem, or the
   first and a count (each is logged then). */
static void problems_reason(struct km_slot *s, struct km_problems *list, char *reason,
                            size_t len)
{
    char first[1200];

    if (list->n == 0) {
        snprintf(reason, len, "%zu configuration errors (out of memory listing them)",
                 list->errors);
        return;
    }
    km_problems_sort(list); /* the first in the file comes first */
    km_problem_format(&list->v[0], 0, first, sizeof first);
    if (list->errors == 1) {
        snprintf(reason, len, "%s", first);
        return;
    }
    for (size_t i = 0; i < list->n; i++) {
        km_problem_format(&list->v[i], 0, first, sizeof first);
        km_log(KM_LOG_ERROR, "plugin %s: %s", s->name, first);
    }
    km_problem_format(&list->v[0], 0, first, sizeof first);
    snprintf(reason, len, "%zu configuration errors (each logged), the first: %s",
             list->errors, first);
}

/*
 * Pass 1 of start-up for one enabled plugin: open it and check its
 * sections. Returns 0 with s->dl open; or -1 with reason set, s->dl open
 * when only the checks failed (its kinds still count in pass 2), closed
 * otherwise.
 */
static int prepare_one(struct km_loader *L, struct km_slot *s,
                       const struct km_conf_section *sec, char *reason, size_t len)
{
    struct km_problems list = {0};
    const struct km_plugin *desc;
    void *dl;

    if (open_plugin(s->name, s->file, &dl, &desc, s, reason, len) < 0)
        return -1;
    s->dl = dl;
    s->desc = desc;
    s->desc_size = km_plugin_desc_size(desc);
    km_log(KM_LOG_DEBUG, "plugin %s: opened %s (descriptor of %zu bytes%s)", s->name,
           s->file, s->desc_size,
           KM_DESC_HAS(s->desc_size, check) ? "" : ": built before kinds and check");
    km_plugin_check(L->core->cfg, sec, desc, s->desc_size, km_problems_add, &list);
    size_t errors = list.errors;
    if (errors)
        problems_reason(s, &list, reason, len);
    km_problems_clear(&list);
    return errors ? -1 : 0;
}

/* Pass 3 for a prepared plugin with collect = false: its context and its
   topics, declared for it; no init. */
static int start_passive(struct km_loader *L, struct km_slot *s, char *reason, size_t len)
{
    /* km_plugin_check made sure the table is there and ends */
    const struct km_topic_def *t = km_plugin_topics(s->desc, s->desc_size);

    s->n_topics = 0;
    for (; t && t->name; t++, s->n_topics++) {
        int err = 0;
        if (km_bus_declare(L->core->bus, t, s->ctx, &err))
            continue;
        snprintf(reason, len, "collect = false: cannot declare its topic %s: %s", t->name,
                 km_strerror(err));
        unload(s); /* disowns the ones declared, as after a failed init */
        s->n_topics = 0;
        return -1;
    }
    free_snapshot(s);
    s->state = KM_PLUGIN_PASSIVE;
    km_log(
        KM_LOG_NOTICE,
        "plugin %s %s loaded from %s, passive (collect = false): %zu topic%s declared, "
        "not started",
        s->name, s->desc->version ? s->desc->version : "(no version)", s->file,
        s->n_topics, s->n_topics == 1 ? "" : "s");
    return 0;
}

/* Pass 3 for one prepared plugin: its context and init. */
static int start_one(struct km_loader *L, struct km_slot *s,
                     const struct km_conf_section *sec, char *reason, size_t len)
{
    if (!(s->ctx = km_ctx_new(L->core, s->name, s->desc, sec))) {
        snprintf(reason, len, "out of memory");
        unmap(s);
        return -1;
    }
    if (!km_plugin_collects(sec))
        return start_passive(L, s, reason, len);
    if (s->desc->init(s->ctx, &km_host_iface) != 0) {
        const char *why = km_ctx_last_error(s->ctx);
        if (why[0])
            snprintf(reason, len, "init failed: %s", why);
        else
            snprintf(reason, len, "init failed (the plugin logged no reason)");
        unload(s);
        return -1;
    }
    /* It runs: the copy is not needed, the real descriptor is mapped. */
    free_snapshot(s);
    s->state = KM_PLUGIN_RUNNING;
    km_log(KM_LOG_NOTICE, "plugin %s %s loaded from %s", s->name,
           s->desc->version ? s->desc->version : "(no version)", s->file);
    return 0;
}

/* Fills the slots from the config's plugin sections. */
static int make_slots(struct km_loader *L)
{
    const struct km_config *cfg = L->core->cfg;
    size_t n = 0;

    for (size_t i = 0; i < cfg->n_sections; i++)
        n += is_plugin_section(cfg->sections[i]);
    if (n == 0)
        return 0;
    if (!(L->slots = calloc(n, sizeof *L->slots)))
        return -1;
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        struct km_slot *s;
        if (!is_plugin_section(sec))
            continue;
        s = &L->slots[L->n_slots++];
        s->name = strdup(sec->name);
        s->file = resolve_file(cfg, sec);
        s->state = KM_PLUGIN_OFF;
        if (!s->name || !s->file)
            return -1;
    }
    return 0;
}

/* The [plugin NAME] section of slot i (slots are in section order). */
static const struct km_conf_section *slot_section(const struct km_config *cfg, size_t i)
{
    for (size_t j = 0; j < cfg->n_sections; j++)
        if (is_plugin_section(cfg->sections[j]) && i-- == 0)
            return cfg->sections[j];
    return NULL;
}

/* Pass 2: the kinds of every opened plugin (started or not) against the
   file. Returns the errors (logged). */
static size_t check_slot_owners(struct km_loader *L, const struct km_config *cfg)
{
    struct km_owner *owners = calloc(L->n_slots + 1, sizeof *owners);
    char missing[1024] = "";
    size_t n = 0, errors;

    if (!owners) {
        km_log(KM_LOG_ERROR, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        const struct km_conf_section *sec = km_config_section(cfg, "plugin", s->name);
        if (s->dl && sec)
            owners[n++] =
                (struct km_owner){s->name, sec, km_plugin_kinds(s->desc, s->desc_size)};
        else
            km_plugin_note_missing(missing, sizeof missing, s->name,
                                   s->state == KM_PLUGIN_OFF ? "enabled = false"
                                                             : "not loaded");
    }
    /* sections enabled since start-up are not slots, and not loaded either */
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        size_t j = 0;
        while (j < L->n_slots && strcmp(L->slots[j].name, sec->name) != 0)
            j++;
        if (is_plugin_section(sec) && j == L->n_slots)
            km_plugin_note_missing(missing, sizeof missing, sec->name, "not loaded yet");
    }
    errors = km_plugin_check_owners(cfg, owners, n, missing, log_problem, NULL);
    free(owners);
    return errors;
}

/* Start-up stops: unmap what was opened and not started. */
static int stop_loading(struct km_loader *L, char *err, size_t errlen, const char *why)
{
    for (size_t i = 0; i < L->n_slots; i++)
        unmap(&L->slots[i]);
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return -1;
}

/* Stops start-up after plugin s failed while [core] plugin_failure_fatal is
   set. Not the reason again (it was just logged): what follows. */
static int stop_fatal(struct km_loader *L, const struct km_slot *s, char *err,
                      size_t errlen)
{
    char why[400];
    snprintf(why, sizeof why,
             "plugin %s failed to load and [core] plugin_failure_fatal is set; "
             "not starting (fix it, or set plugin_failure_fatal = false)",
             s->name);
    return stop_loading(L, err, errlen, why);
}

int km_loader_load_all(struct km_loader *L, char *err, size_t errlen)
{
    const struct km_config *cfg = L->core->cfg;
    char reason[1600];

    if (err && errlen)
        err[0] = '\0';
    if (L->loaded)
        return 0;
    L->loaded = 1;
    if (make_slots(L) < 0)
        return stop_loading(L, err, errlen, "out of memory");
    /* pass 1: open and check every enabled plugin */
    for (size_t i = 0; i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        const struct km_conf_section *sec = slot_section(cfg, i);
        if (!is_enabled(sec)) {
            km_log(KM_LOG_INFO, "plugin %s: enabled = false, not loaded", s->name);
            continue;
        }
        if (prepare_one(L, s, sec, reason, sizeof reason) == 0)
            continue;
        disable(s, reason);
        if (cfg->plugin_failure_fatal)
            return stop_fatal(L, s, err, errlen);
    }
    /* pass 2: every plugin's section has its plugin */
    if (check_slot_owners(L, cfg) > 0)
        return stop_loading(L, err, errlen,
                            "a [KIND NAME] section above is read by no plugin; not "
                            "starting (katomon --check-config lists every problem)");
    /* pass 3: start them, in file order */
    for (size_t i = 0; i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        if (s->state == KM_PLUGIN_DISABLED)
            unmap(s); /* its checks failed; it was kept open for pass 2 */
        if (!s->dl || s->state == KM_PLUGIN_DISABLED)
            continue;
        if (start_one(L, s, slot_section(cfg, i), reason, sizeof reason) == 0)
            continue;
        disable(s, reason);
        if (cfg->plugin_failure_fatal)
            return stop_fatal(L, s, err, errlen);
    }
    return 0;
}

void km_loader_free(struct km_loader *L)
{
    if (!L)
        return;
    for (size_t i = L->n_slots; i-- > 0;) {
        struct km_slot *s = &L->slots[i];
        unmap(s);
        if (s->state != KM_PLUGIN_RUNNING && s->state != KM_PLUGIN_PASSIVE)
            continue;
        /* a passive plugin never started: nothing of it to shut down, but its
           topics are disowned like any plugin's before its object goes */
        int passive = s->state == KM_PLUGIN_PASSIVE;
        if (!passive && s->desc->shutdown)
            s->desc->shutdown(s->ctx);
        unload(s);
        s->state = KM_PLUGIN_OFF;
        km_log(KM_LOG_INFO, "plugin %s: %s", s->name,
               passive ? "released (passive)" : "shut down");
    }
    for (size_t i = 0; i < L->n_slots; i++) {
        free_snapshot(&L->slots[i]);
        free(L->slots[i].reason);
        free(L->slots[i].file);
        free(L->slots[i].name);
    }
    free(L->slots);
    if (L->core->routes == L->routes)
        L->core->routes = NULL;
    km_plugin_routes_free(L->routes);
    free(L);
}

size_t km_loader_check(const struct km_config *cfg, km_config_report_fn report, void *arg)
{
    struct km_owner *owners = calloc(cfg->n_sections + 1, sizeof *owners);
    void **dls = calloc(cfg->n_sections + 1, sizeof *dls);
    char reason[1024], text[2400], missing[1024] = "";
    size_t n = 0, errors = 0;

    if (!owners || !dls) {
        report(arg, KM_LOG_ERROR, cfg->path, 0, "out of memory");
        free(owners);
        free(dls);
        return 1;
    }
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        const struct km_plugin *desc;
        char *file;

        if (!is_plugin_section(sec))
            continue;
        if (!is_enabled(sec)) {
            km_plugin_note_missing(missing, sizeof missing, sec->name, "enabled = false");
            continue;
        }
        if (!(file = resolve_file(cfg, sec)) ||
            open_plugin(sec->name, file, &dls[n], &desc, NULL, reason, sizeof reason) <
                0) {
            snprintf(text, sizeof text, "plugin %s (%s): %s", sec->name,
                     file ? file : "?", file ? reason : "out of memory");
            report(arg, KM_LOG_ERROR, sec->file, file_line(sec), text);
            km_plugin_note_missing(missing, sizeof missing, sec->name, "not loadable");
            errors++;
            free(file);
            continue;
        }
        free(file);
        size_t size = km_plugin_desc_size(desc);
        errors += km_plugin_check(cfg, sec, desc, size, report, arg);
        owners[n++] = (struct km_owner){sec->name, sec, km_plugin_kinds(desc, size)};
    }
    errors += km_plugin_check_owners(cfg, owners, n, missing, report, arg);
    while (n-- > 0)
        dlclose(dls[n]);
    free(owners);
    free(dls);
    return errors;
}

/* Running slot of `name`, or NULL. */
static struct km_slot *find_slot(struct km_loader *L, const char *name)
{
    for (size_t i = 0; i < L->n_slots; i++)
        if (strcmp(L->slots[i].name, name) == 0)
            return &L->slots[i];
    return NULL;
}

/* Reload of one running plugin against its (new) section: the checks of
   start-up first; any problem keeps its previous settings. */
static void reload_one(struct km_loader *L, struct km_slot *s,
                       const struct km_conf_section *sec)
{
    struct km_problems list = {0};
    char buf[1400];

    if (!sec || !is_enabled(sec)) {
        km_log(KM_LOG_WARNING,
               "plugin %s: removed or disabled in the config; it runs until katomon "
               "restarts",
               s->name);
        km_ctx_reconfigure(s->ctx, NULL);
        return;
    }
    int passive = s->state == KM_PLUGIN_PASSIVE;
    if (passive == km_plugin_collects(sec))
        km_log(KM_LOG_WARNING, "plugin %s: collect changed; restart katomon to apply it",
               s->name);
    km_plugin_check(L->core->cfg, sec, s->desc, s->desc_size, km_problems_add, &list);
    for (size_t i = 0; i < list.n; i++)
        km_log(KM_LOG_ERROR, "plugin %s (%s): %s; keeping its previous settings", s->name,
               s->file, km_problem_format(&list.v[i], 0, buf, sizeof buf));
    if (list.errors) {
        km_problems_clear(&list);
        km_ctx_reconfigure(s->ctx, NULL);
        return;
    }
    km_ctx_reconfigure(s->ctx, sec);
    if (passive)
        return; /* its code never runs, reload included */
    if (s->desc->reload && s->desc->reload(s->ctx) != 0)
        km_log(KM_LOG_ERROR, "plugin %s: reload failed; it keeps running as it was",
               s->name);
}

void km_loader_reload(struct km_loader *L)
{
    const struct km_config *cfg = L->core->cfg;

    for (size_t i = 0; i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        if (s->state == KM_PLUGIN_RUNNING || s->state == KM_PLUGIN_PASSIVE)
            reload_one(L, s, km_config_section(cfg, "plugin", s->name));
    }
    /* a section of a kind no running plugin reads: said, not refused */
    check_slot_owners(L, cfg);
    /* Loading or unloading on SIGHUP would need a second init path for
       every plugin; say plainly that a restart is needed instead. */
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        struct km_slot *s;
        if (!is_plugin_section(sec) || !is_enabled(sec))
            continue;
        s = find_slot(L, sec->name);
        if (!s || s->state == KM_PLUGIN_OFF)
            km_log(KM_LOG_NOTICE,
                   "plugin %s: enabled in the config; restart katomon to "
                   "load it",
                   sec->name);
    }
}

void km_loader_foreach(struct km_loader *L,
                       void (*fn)(const struct km_plugin_info *info, void *arg),
                       void *arg)
{
    for (size_t i = 0; L && i < L->n_slots; i++) {
        const struct km_slot *s = &L->slots[i];
        struct km_plugin_info info = {
            .name = s->name,
            .file = s->file,
            .state = s->state,
            .reason = s->state == KM_PLUGIN_DISABLED ? s->reason : NULL,
            .desc = s->state == KM_PLUGIN_RUNNING || s->state == KM_PLUGIN_PASSIVE
                        ? s->desc
                    : s->has_snap ? &s->snap
                                  : NULL,
            .n_topics = s->state == KM_PLUGIN_PASSIVE ? s->n_topics : 0,
        };
        fn(&info, arg);
    }
}

/* ---- plugin REST routes --------------------------------------------------- */

int km_loader_find(struct km_loader *L, const char *method, const char *path,
                   struct km_route_hit *hit, char *allow, size_t allowlen)
{
    /* a plugin's routes are in the table from its rest_route until its
       release: only running plugins (or one in its init) have any */
    return km_plugin_routes_find(L ? L->routes : NULL, method, path, hit, allow,
                                 allowlen);
}

int km_loader_call(const struct km_route_hit *hit, const struct km_rest_call *call,
                   json_t **reply, const char **detail,
                   const struct km_rest_waiter *waiter, struct km_rest_pending **pending)
{
    struct km_rest_call c = *call;
    char what[160];
    int status;

    *reply = NULL;
    *detail = NULL;
    if (pending)
        *pending = NULL;
    /* the handle exists before the handler runs: it may answer inside */
    if (!(c.pending = km_rest_pending_new(hit->ctx, call, waiter))) {
        *detail = "out of memory";
        return 503;
    }
    status = hit->cb(&c, reply, detail, hit->arg);
    if (status == KM_REST_LATER) {
        json_decref(*reply); /* a LATER handler sets nothing; be safe */
        *reply = NULL;
        *detail = NULL;
    }
    status = km_rest_pending_settle(c.pending, status, reply);
    if (status == KM_LOADER_LATER) {
        if (pending)
            *pending = c.pending;
        return status;
    }
    snprintf(what, sizeof what, "%s %.140s", call->method, call->path);
    return km_rest_check(hit->ctx, what, status, reply, detail);
}

int km_loader_rest(struct km_loader *L, const struct km_rest_call *call, json_t **reply,
                   const char **detail, char *allow, size_t allowlen,
                   const struct km_rest_waiter *waiter, struct km_rest_pending **pending)
{
    struct km_route_hit hit;
    int rc = km_loader_find(L, call->method, call->path, &hit, allow, allowlen);

    *reply = NULL;
    *detail = NULL;
    if (pending)
        *pending = NULL;
    if (rc == 1)
        return km_loader_call(&hit, call, reply, detail, waiter, pending);
    if (rc == 2)
        *detail = "method not allowed";
    return rc == 2 ? 405 : 0;
}
