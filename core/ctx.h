/*
 * ctx.h - the plugin context: the core's record of one loaded plugin.
 *
 * A struct km_ctx holds who the plugin is (name, log prefix, descriptor),
 * its resolved configuration, and the heads of the lists of what it made
 * through the host verbs. ctx.c owns the first two (new, reconfigure,
 * free, the config and log verbs); the lists are filled and emptied by
 * the modules that own those things (host.c: timers, fd watches, HTTP,
 * WebSocket; plugin_rest.c: REST answers owed; plugin_routes.c: routes),
 * which is why the struct is visible here and not opaque. Internal to the
 * core: plugins see struct km_ctx as opaque.
 */
#ifndef KM_CTX_H
#define KM_CTX_H

#include <stddef.h>
#include "core.h"

struct km_kind_list;
struct km_timer_slot;
struct km_http_req;
struct km_io;
struct km_ws;
struct km_rest_pending;

struct km_ctx {
    struct km_core *core;         /* the daemon (borrowed) */
    char *name;                   /* section NAME (owned) */
    char *log_prefix;             /* "plugin NAME", before each of its lines (owned) */
    const struct km_plugin *desc; /* descriptor in the loaded object (borrowed);
                                     NULL once km_host_release ran */
    char **values;                /* per desc->config key, in order: value or
                                     default, NULL when neither (owned) */
    size_t n_values;              /* keys in desc->config */
    char **retired;               /* values replaced by a reload; the plugin may
                                     still hold them, so freed only at the end */
    size_t n_retired;             /* entries in retired */
    char *state_dir;              /* copy of [core] state_dir, NULL if unset */
    struct km_kind_list *kinds;   /* config_sections() answers (owned) */
    struct km_timer_slot *timers; /* its live timers (owned; host.c) */
    struct km_io *ios;            /* its fd watches (owned; host.c) */
    struct km_http_req *requests; /* its requests in flight (owned; host.c) */
    struct km_ws *websockets;     /* its WebSocket connections (owned; host.c) */
    struct km_rest_pending *pendings; /* REST answers it owes (owned; plugin_rest.c) */
    char last_error[256];             /* last error/warning line it logged */
};

/*
 * New context for plugin `name` described by `desc` (borrowed: lives in the
 * loaded object, so the context must be freed before or right after
 * dlclose and never reads desc once km_host_release ran). `sec` is its
 * config section (borrowed; values are copied). NULL on ENOMEM.
 */
struct km_ctx *km_ctx_new(struct km_core *core, const char *name,
                          const struct km_plugin *desc,
                          const struct km_conf_section *sec);
/* SIGHUP: takes the values of the new `sec` (already checked); NULL keeps
   the current values. Either way config_sections() answers are rebuilt from
   core->cfg. Strings the plugin got before stay valid until km_ctx_free. */
void km_ctx_reconfigure(struct km_ctx *ctx, const struct km_conf_section *sec);
/* Forgets the config_sections() answers (borrowed from a config that is
   going away) and the descriptor (about to be unmapped). */
void km_ctx_forget(struct km_ctx *ctx);
/* Frees the context (after km_host_release). NULL is fine. */
void km_ctx_free(struct km_ctx *ctx);
/* The last error or warning line the plugin logged ("" if none). Borrowed. */
const char *km_ctx_last_error(const struct km_ctx *ctx);
/* "plugin NAME", for log lines about it. Borrowed. */
const char *km_ctx_log_prefix(const struct km_ctx *ctx);

/* ---- the verbs this file implements (see struct km_host) ---- */

void km_ctx_log(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *km_ctx_config_string(struct km_ctx *ctx, const char *key);
long long km_ctx_config_int(struct km_ctx *ctx, const char *key);
double km_ctx_config_double(struct km_ctx *ctx, const char *key);
int km_ctx_config_bool(struct km_ctx *ctx, const char *key);
const struct km_conf_section *const *km_ctx_config_sections(struct km_ctx *ctx,
                                                            const char *kind, size_t *n);
const char *km_ctx_state_dir(struct km_ctx *ctx);

#endif /* KM_CTX_H */
