/*
 * loader.c - loads, tracks and unloads plugins (DESIGN section 3).
 *
 * One slot per [plugin NAME] section, in file order, whatever became of
 * it: running, disabled (and why), or switched off. Loading is a chain of
 * checks, each of which can end in exactly one error line
 * "plugin NAME (FILE): reason" that says what to do about it:
 *
 *   resolve file -> exists -> dlopen -> descriptor symbol -> ABI -> name
 *   -> section keys -> init
 *
 * Shutdown runs in reverse load order, so a plugin that subscribed to the
 * topics of one loaded before it is stopped before that one. Per plugin:
 * its shutdown hook, then the host takes back whatever the plugin left
 * (km_ctx_release: requests, timers, subscriptions, topic ownership), and
 * only then is the object unmapped.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loader.h"
#include "log.h"

/* One configured plugin. */
struct km_slot {
    char *name;                   /* section NAME (owned) */
    char *file;                   /* resolved .so path (owned) */
    enum km_plugin_state state;   /* running, disabled or off */
    char *reason;                 /* DISABLED: why (owned); else NULL */
    void *dl;                     /* RUNNING: dlopen() handle */
    const struct km_plugin *desc; /* RUNNING: descriptor inside dl */
    struct km_ctx *ctx;           /* RUNNING: the plugin's context (owned) */
    struct km_plugin snap;        /* DISABLED after its descriptor was read:
                                     name/version/description copied (owned),
                                     no functions, so the API can still show them */
    int has_snap;                 /* snap is filled */
};

struct km_loader {
    struct km_core *core;  /* the daemon (borrowed) */
    struct km_slot *slots; /* configured plugins in load order (owned) */
    size_t n_slots;        /* number of slots */
    int loaded;            /* km_loader_load_all ran */
};

/* Why open_plugin failed: decides how the --check-config line is shaped. */
enum open_failure {
    OPEN_OK = 0,     /* opened and checked */
    OPEN_FAILED,     /* reason is plain text */
    OPEN_BAD_CONFIG, /* reason is "FILE:LINE: ..." already */
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

/* ---- opening and checking one plugin ------------------------------------ */

/*
 * Opens `file` and checks that it is a katomon plugin called `name` whose
 * keys match `sec`. On success *dl and *desc are set and the object stays
 * open. On failure it is closed, `reason` says why, and, when the
 * descriptor could be read safely (ABI matched), it is copied into `snap`
 * of `s` (when s is not NULL) before the unmap.
 */
static enum open_failure open_plugin(const char *name, const char *file,
                                     const struct km_conf_section *sec, void **dl_out,
                                     const struct km_plugin **desc_out, struct km_slot *s,
                                     char *reason, size_t len)
{
    struct stat st;
    const struct km_plugin *desc;
    void *dl;
    enum open_failure rc = OPEN_FAILED;

    /* dlopen's own text for a missing file says nothing about where katomon
       looked or why; this does. Other stat errors are left to dlopen. */
    if (stat(file, &st) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        snprintf(reason, len, "not found; check [core] plugin_dir or the file key");
        return OPEN_FAILED;
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
        return OPEN_FAILED;
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
    if (km_config_check_keys(sec, desc->config, reason, len) < 0) {
        rc = OPEN_BAD_CONFIG;
        goto fail;
    }
    *dl_out = dl;
    *desc_out = desc;
    return OPEN_OK;

fail:
    dlclose(dl);
    return rc;
}

/* ---- the loader ----------------------------------------------------------- */

struct km_loader *km_loader_new(struct km_core *core)
{
    struct km_loader *L = calloc(1, sizeof *L);
    if (L)
        L->core = core;
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

/* Takes back everything of a loaded plugin and unmaps it. */
static void unload(struct km_slot *s)
{
    km_ctx_release(s->ctx);
    dlclose(s->dl);
    km_ctx_free(s->ctx);
    s->ctx = NULL;
    s->dl = NULL;
    s->desc = NULL;
}

/* Loads one enabled plugin. Returns 0, or -1 with reason set. */
static int load_one(struct km_loader *L, struct km_slot *s,
                    const struct km_conf_section *sec, char *reason, size_t len)
{
    const struct km_plugin *desc;
    void *dl;

    for (size_t i = 0; i < L->n_slots; i++) {
        if (&L->slots[i] != s && L->slots[i].state == KM_PLUGIN_RUNNING &&
            strcmp(L->slots[i].name, s->name) == 0) {
            snprintf(reason, len, "loaded already; remove the second [plugin %s] section",
                     s->name);
            return -1;
        }
    }
    if (open_plugin(s->name, s->file, sec, &dl, &desc, s, reason, len) != OPEN_OK)
        return -1;
    km_log(KM_LOG_DEBUG, "plugin %s: opened %s", s->name, s->file);
    s->dl = dl;
    s->desc = desc;
    if (!(s->ctx = km_ctx_new(L->core, s->name, desc, sec))) {
        snprintf(reason, len, "out of memory");
        dlclose(dl);
        s->dl = NULL;
        s->desc = NULL;
        return -1;
    }
    if (desc->init(s->ctx, &km_host_iface) != 0) {
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
           desc->version ? desc->version : "(no version)", s->file);
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

int km_loader_load_all(struct km_loader *L, char *err, size_t errlen)
{
    const struct km_config *cfg = L->core->cfg;
    size_t k = 0;
    char reason[1024];

    if (err && errlen)
        err[0] = '\0';
    if (L->loaded)
        return 0;
    L->loaded = 1;
    if (make_slots(L) < 0) {
        if (err)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Slots are in section order, so walk both together. */
    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        struct km_slot *s;
        if (!is_plugin_section(sec))
            continue;
        s = &L->slots[k++];
        if (!is_enabled(sec)) {
            km_log(KM_LOG_INFO, "plugin %s: enabled = false, not loaded", s->name);
            continue;
        }
        if (load_one(L, s, sec, reason, sizeof reason) == 0)
            continue;
        disable(s, reason);
        if (cfg->plugin_failure_fatal) {
            /* Not the reason again (it was just logged): what follows. */
            if (err)
                snprintf(
                    err, errlen,
                    "plugin %s failed to load and [core] plugin_failure_fatal is set; "
                    "not starting (fix it, or set plugin_failure_fatal = false)",
                    s->name);
            return -1;
        }
    }
    return 0;
}

void km_loader_free(struct km_loader *L)
{
    if (!L)
        return;
    for (size_t i = L->n_slots; i-- > 0;) {
        struct km_slot *s = &L->slots[i];
        if (s->state != KM_PLUGIN_RUNNING)
            continue;
        if (s->desc->shutdown)
            s->desc->shutdown(s->ctx);
        unload(s);
        s->state = KM_PLUGIN_OFF;
        km_log(KM_LOG_INFO, "plugin %s: shut down", s->name);
    }
    for (size_t i = 0; i < L->n_slots; i++) {
        free_snapshot(&L->slots[i]);
        free(L->slots[i].reason);
        free(L->slots[i].file);
        free(L->slots[i].name);
    }
    free(L->slots);
    free(L);
}

int km_loader_check(const struct km_config *cfg, char *err, size_t errlen)
{
    char reason[1024];

    for (size_t i = 0; i < cfg->n_sections; i++) {
        const struct km_conf_section *sec = cfg->sections[i];
        const struct km_plugin *desc;
        enum open_failure rc;
        char *file;
        void *dl;

        if (!is_plugin_section(sec) || !is_enabled(sec))
            continue;
        if (!(file = resolve_file(cfg, sec))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        rc = open_plugin(sec->name, file, sec, &dl, &desc, NULL, reason, sizeof reason);
        if (rc == OPEN_OK)
            dlclose(dl);
        else if (rc == OPEN_BAD_CONFIG)
            snprintf(err, errlen, "%s", reason);
        else
            snprintf(err, errlen, "%s:%d: plugin %s (%s): %s", sec->file, file_line(sec),
                     sec->name, file, reason);
        free(file);
        if (rc != OPEN_OK)
            return -1;
    }
    return 0;
}

/* Running slot of `name`, or NULL. */
static struct km_slot *find_slot(struct km_loader *L, const char *name)
{
    for (size_t i = 0; i < L->n_slots; i++)
        if (strcmp(L->slots[i].name, name) == 0)
            return &L->slots[i];
    return NULL;
}

/* Reload of one running plugin against its (new) section. */
static void reload_one(struct km_slot *s, const struct km_conf_section *sec)
{
    char err[1024];

    if (!sec || !is_enabled(sec)) {
        km_log(KM_LOG_WARNING,
               "plugin %s: removed or disabled in the config; it runs until katomon "
               "restarts",
               s->name);
        km_ctx_reconfigure(s->ctx, NULL);
        return;
    }
    if (km_config_check_keys(sec, s->desc->config, err, sizeof err) < 0) {
        km_log(KM_LOG_ERROR, "plugin %s (%s): %s; keeping its previous settings", s->name,
               s->file, err);
        km_ctx_reconfigure(s->ctx, NULL);
        return;
    }
    km_ctx_reconfigure(s->ctx, sec);
    if (s->desc->reload && s->desc->reload(s->ctx) != 0)
        km_log(KM_LOG_ERROR, "plugin %s: reload failed; it keeps running as it was",
               s->name);
}

void km_loader_reload(struct km_loader *L)
{
    const struct km_config *cfg = L->core->cfg;

    for (size_t i = 0; i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        if (s->state == KM_PLUGIN_RUNNING)
            reload_one(s, km_config_section(cfg, "plugin", s->name));
    }
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
            .desc = s->state == KM_PLUGIN_RUNNING ? s->desc
                    : s->has_snap                 ? &s->snap
                                                  : NULL,
        };
        fn(&info, arg);
    }
}

/* ---- plugin REST routes --------------------------------------------------- */

int km_loader_route_taken(struct km_loader *L, const char *method, const char *route)
{
    /* Any slot with a context: running ones, and the one in its init. */
    for (size_t i = 0; i < L->n_slots; i++)
        if (L->slots[i].ctx && km_ctx_has_route(L->slots[i].ctx, method, route))
            return 1;
    return 0;
}

int km_loader_find(struct km_loader *L, const char *method, const char *path,
                   struct km_route_hit *hit, char *allow, size_t allowlen)
{
    int found = 0, known = 0;

    if (allow && allowlen)
        allow[0] = '\0';
    for (size_t i = 0; L && i < L->n_slots; i++) {
        struct km_slot *s = &L->slots[i];
        struct km_route_hit h = {.ctx = s->ctx};
        int rc;

        if (s->state != KM_PLUGIN_RUNNING)
            continue;
        rc =
            km_ctx_route(s->ctx, method, path, &h.cb, &h.arg, &h.prefix, allow, allowlen);
        known |= rc == 2;
        if (rc != 1)
            continue;
        /* exact (prefix 0) beats any prefix, a longer prefix a shorter one;
           on a tie the plugin loaded first keeps it */
        if (!found || (hit->prefix && (!h.prefix || h.prefix > hit->prefix)))
            *hit = h;
        found = 1;
    }
    return found ? 1 : known ? 2 : 0;
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
    return km_ctx_rest_check(hit->ctx, what, status, reply, detail);
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
