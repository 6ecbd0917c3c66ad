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
 */
#ifndef KM_LOADER_H
#define KM_LOADER_H

#include <stddef.h>
#include "core.h"

/* Where a plugin stands. */
enum km_plugin_state {
    KM_PLUGIN_RUNNING = 1,  /* init succeeded */
    KM_PLUGIN_DISABLED = 2, /* failed somewhere; see reason */
    KM_PLUGIN_OFF = 3,      /* enabled = false in its section */
};

/* Read-only view of one configured plugin, for GET /api/v1/plugins. */
struct km_plugin_info {
    const char *name;             /* section NAME */
    const char *file;             /* resolved .so path */
    enum km_plugin_state state;   /* see above */
    const char *reason;           /* DISABLED: why; else NULL */
    const struct km_plugin *desc; /* descriptor when it was found, else NULL */
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

/* The KM_E* text. */
const char *km_strerror(int err);

/* Who waits for a plugin's later answer (its handler returned KM_REST_LATER). */
struct km_rest_waiter {
    /* Called at most once, never from inside km_loader_rest, with the
       status and the body (new reference, stolen, never NULL). */
    void (*answer)(void *arg, int status, json_t *body);
    void *arg; /* its argument */
};

/* km_loader_rest / km_loader_call: the answer comes later, through the waiter. */
#define KM_LOADER_LATER (-1)

/* The plugin route that serves one request (km_loader_find). */
struct km_route_hit {
    struct km_ctx *ctx; /* the plugin whose route it is */
    km_rest_cb cb;      /* its handler */
    void *arg;          /* its argument */
    size_t prefix;      /* 0: an exact route; else the length of the matched prefix */
};

/*
 * The best route running plugins registered with km_host.rest_route for
 * call->method (HEAD counts as GET) on call->path: an exact route, else
 * the longest prefix route. Returns 1 with *hit set; 2 when plugins serve
 * the path only under other methods (`allow`, when not NULL, gets them,
 * e.g. "GET, DELETE"); 0 when no plugin serves the path.
 */
int km_loader_find(struct km_loader *loader, const char *method, const char *path,
                   struct km_route_hit *hit, char *allow, size_t allowlen);

/*
 * Calls the handler of `hit` for `call` (call->pending is filled in here).
 * Returns its status (one outside 100..599 becomes 500, logged) with
 * *reply (new reference, may be NULL) and *detail (borrowed, may be NULL)
 * as the handler set them; or KM_LOADER_LATER when it answers later: the
 * answer then goes to `waiter` (NULL: nobody waits, the answer is dropped)
 * and *pending (when not NULL) gets the handle to detach the waiter with.
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

/*
 * The waiter of a pending answer is gone (its connection closed): the
 * answer, when it comes, is dropped; the plugin's handle stays valid
 * until its rest_finish or its release.
 */
void km_rest_pending_detach(struct km_rest_pending *p);

/* Seconds before the core answers 504 for a plugin (KM_REST_DEADLINE_S;
   tests shorten it). */
extern double km_rest_deadline_s;

/*
 * ---- internal: shared by loader.c and host.c only ----------------------
 * A km_ctx is the core's record of one loaded plugin: its resolved config
 * values and everything it created through the host (timers, HTTP
 * requests, subscriptions, topics, REST routes, pending REST answers), so
 * that all of it can be released when the plugin is shut down or disabled.
 */

/* The host interface handed to every plugin's init (static data). */
extern const struct km_host km_host_iface;

/*
 * New context for plugin `name` described by `desc` (borrowed: lives in the
 * loaded object, so the context must be freed before or right after
 * dlclose and never reads desc once km_ctx_release ran). `sec` is its
 * config section (borrowed; values are copied). NULL on ENOMEM.
 */
struct km_ctx *km_ctx_new(struct km_core *core, const char *name,
                          const struct km_plugin *desc,
                          const struct km_conf_section *sec);
/* SIGHUP: takes the values of the new `sec` (already checked); NULL keeps
   the current values. Either way config_sections() answers are rebuilt from
   core->cfg. Strings the plugin got before stay valid until km_ctx_free. */
void km_ctx_reconfigure(struct km_ctx *ctx, const struct km_conf_section *sec);
/* Cancels its HTTP requests, deletes its timers, ends its subscriptions,
   disowns its topics, removes its routes and answers 503 to its pending
   REST requests. Callbacks into the plugin never run after this. Not to be
   called from inside one of the plugin's own callbacks. */
void km_ctx_release(struct km_ctx *ctx);
/* Frees the context (after km_ctx_release). NULL is fine. */
void km_ctx_free(struct km_ctx *ctx);
/* The last error or warning line the plugin logged ("" if none). Borrowed. */
const char *km_ctx_last_error(const struct km_ctx *ctx);
/*
 * The plugin's best route for method (HEAD as GET) and path: its exact
 * route, else its longest prefix route. 1 with *cb, *arg and *prefix (0:
 * exact; else the prefix length) set (any may be NULL); 2 when it serves
 * path only under other methods (appended to allow, comma-separated, when
 * allow is not NULL); 0 when it does not serve path.
 */
int km_ctx_route(const struct km_ctx *ctx, const char *method, const char *path,
                 km_rest_cb *cb, void **arg, size_t *prefix, char *allow,
                 size_t allowlen);
/* 1 when the plugin registered exactly this method and route (a prefix
   route as written, with its "*"). */
int km_ctx_has_route(const struct km_ctx *ctx, const char *method, const char *route);
/* 1 when a loaded plugin (running, or in its init) registered method and
   route (km_ctx_has_route). */
int km_loader_route_taken(struct km_loader *loader, const char *method,
                          const char *route);
/*
 * A handler's status, checked: one outside 100..599 is logged ("plugin
 * NAME: <what> handler returned status N") and becomes 500, with *reply
 * released and *detail set. Returns the status to send.
 */
int km_ctx_rest_check(struct km_ctx *ctx, const char *what, int status, json_t **reply,
                      const char **detail);
/* "plugin NAME", for log lines about it. Borrowed. */
const char *km_ctx_log_prefix(const struct km_ctx *ctx);
/*
 * A new pending answer for `call`, tracked by ctx; waiter may be NULL
 * (copied). NULL on ENOMEM. km_rest_pending_settle must follow the
 * handler's return.
 */
struct km_rest_pending *km_rest_pending_new(struct km_ctx *ctx,
                                            const struct km_rest_call *call,
                                            const struct km_rest_waiter *waiter);
/*
 * The handler returned `status`. Not KM_REST_LATER: p is freed and status
 * returned. KM_REST_LATER: when rest_finish ran inside the handler, its
 * answer is returned (*reply set, p freed); otherwise the deadline starts
 * and KM_LOADER_LATER is returned.
 */
int km_rest_pending_settle(struct km_rest_pending *p, int status, json_t **reply);

#endif /* KM_LOADER_H */
