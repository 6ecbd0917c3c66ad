/*
 * loader.h - the plugin loader (DESIGN section 3) and the host interface.
 *
 * For each enabled [plugin NAME] section, in file order: dlopen() the
 * file (`file` key, or plugin_dir/NAME.so), look up KM_PLUGIN_SYMBOL, check
 * the ABI and the name, check its sections against the descriptor (keys,
 * kinds, the plugin's check); then that every plugin's [KIND NAME] section
 * has its plugin; then call each init with the host interface. A plugin's
 * failure logs one line ("plugin NAME (FILE): reason") and disables it;
 * with [core] plugin_failure_fatal it stops start-up instead, as does a
 * section no plugin reads.
 *
 * `collect = false` in a plugin's section makes it passive: opened and
 * checked like any other, then, instead of its init, the core declares the
 * topics of its descriptor's .topics for it (owned by its context), so an
 * edge katomon knows each topic's type and series while its data comes from
 * other hosts (a bridge's publish_remote). Nothing of the plugin ever runs:
 * no init, reload or shutdown; at the end its topics are disowned like any
 * plugin's.
 */
#ifndef KM_LOADER_H
#define KM_LOADER_H

#include <stddef.h>
#include "core.h"
#include "plugin_rest.h"   /* the waiter, KM_LOADER_LATER, km_rest_pending_detach */
#include "plugin_routes.h" /* struct km_route_hit */

/* Where a plugin stands. */
enum km_plugin_state {
    KM_PLUGIN_RUNNING = 1,  /* init succeeded */
    KM_PLUGIN_DISABLED = 2, /* failed somewhere; see reason */
    KM_PLUGIN_OFF = 3,      /* enabled = false in its section */
    KM_PLUGIN_PASSIVE = 4,  /* collect = false: its topics declared, never started */
};

/* "running", "disabled", "off" or "passive" (GET /api/v1/plugins); "" for
   anything else. Static. */
const char *km_plugin_state_name(enum km_plugin_state state);

/* Read-only view of one configured plugin, for GET /api/v1/plugins. */
struct km_plugin_info {
    const char *name;             /* section NAME */
    const char *file;             /* resolved .so path */
    enum km_plugin_state state;   /* see above */
    const char *reason;           /* DISABLED: why; else NULL */
    const struct km_plugin *desc; /* descriptor when it was found, else NULL */
    size_t n_topics;              /* PASSIVE: topics declared for it; else 0 */
};

struct km_loader *km_loader_new(struct km_core *core);
/* Shuts every running plugin down (reverse load order), unloads, frees. */
void km_loader_free(struct km_loader *loader);

/*
 * Loads every plugin section of core->cfg. Returns 0, or -1 when
 * plugin_failure_fatal is set and one failed, or a section is read by no
 * plugin (what follows in err; the problems were logged).
 */
int km_loader_load_all(struct km_loader *loader, char *err, size_t errlen);

/*
 * --check-config: opens every enabled plugin and runs the checks start-up
 * runs before init (its keys, the sections of its kinds, its own check),
 * then that every [KIND NAME] section has its plugin; nothing is started.
 * Reports every problem; returns the number of errors.
 */
size_t km_loader_check(const struct km_config *cfg, km_config_report_fn report,
                       void *arg);

/* SIGHUP: runs each running plugin's checks against core->cfg (already
   new) and calls its reload; a plugin whose checks fail keeps its previous
   settings (logged). */
void km_loader_reload(struct km_loader *loader);

/* Calls fn for every configured plugin, in load order. */
void km_loader_foreach(struct km_loader *loader,
                       void (*fn)(const struct km_plugin_info *info, void *arg),
                       void *arg);

/*
 * The best route running plugins registered with km_host.rest_route for
 * method (HEAD counts as GET) on path (km_plugin_routes_find on the loader's
 * table). Returns 1 with *hit set; 2 when plugins serve the path only
 * under other methods (`allow`, when not NULL, gets them, e.g. "GET,
 * DELETE"); 0 when no plugin serves the path.
 */
int km_loader_find(struct km_loader *loader, const char *method, const char *path,
                   struct km_route_hit *hit, char *allow, size_t allowlen);

/*
 * Calls the handler of `hit` for `call` (call->pending is filled in here).
 * Returns its status (one outside 100..599 becomes 500, logged) with
 * *reply (new reference, may be NULL) and *detail (borrowed, may be NULL)
 * as the handler set them; or KM_LOADER_LATER when it answers later: the
 * answer then goes to `waiter` (NULL: nobody waits, the answer is dropped)
 * and *pending (when not NULL) gets the handle to detach the waiter with
 * (km_rest_pending_detach).
 */
int km_loader_call(const struct km_route_hit *hit, const struct km_rest_call *call,
                   json_t **reply, const char **detail,
                   const struct km_rest_waiter *waiter, struct km_rest_pending **pending);

/*
 * km_loader_find, then km_loader_call. Returns 405 (reply NULL, detail
 * set, allow filled) when plugins serve the path only under other
 * methods, and 0 when no plugin serves it. allow may be NULL.
 */
int km_loader_rest(struct km_loader *loader, const struct km_rest_call *call,
                   json_t **reply, const char **detail, char *allow, size_t allowlen,
                   const struct km_rest_waiter *waiter, struct km_rest_pending **pending);

#endif /* KM_LOADER_H */
