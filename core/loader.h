/*
 * loader.h - the plugin loader (DESIGN section 3) and the host interface.
 *
 * For each enabled [plugin NAME] section, in file order: dlopen() the
 * file (`file` key, or plugin_dir/NAME.so), look up KM_PLUGIN_SYMBOL, check
 * the ABI and the name, check the section's keys against the descriptor,
 * and call init with the host interface. Any failure logs one line
 * ("plugin NAME (FILE): reason") and disables that plugin; with
 * [core] plugin_failure_fatal it stops start-up instead.
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
    const char *name;           /* section NAME */
    const char *file;           /* resolved .so path */
    enum km_plugin_state state; /* see above */
    const char *reason;         /* DISABLED: why; else NULL */
    const struct km_plugin *desc; /* descriptor when it was found, else NULL */
};

struct km_loader *km_loader_new(struct km_core *core);
/* Shuts every running plugin down (reverse load order), unloads, frees. */
void km_loader_free(struct km_loader *loader);

/*
 * Loads every plugin section of core->cfg. Returns 0, or -1 when
 * plugin_failure_fatal is set and one failed (message in err).
 */
int km_loader_load_all(struct km_loader *loader, char *err, size_t errlen);

/*
 * --check-config: opens every enabled plugin and checks its section against
 * its descriptor without calling init. Returns 0, or -1 with the first
 * error ("FILE:LINE: ...") in err.
 */
int km_loader_check(const struct km_config *cfg, char *err, size_t errlen);

/* SIGHUP: calls reload on every running plugin (core->cfg already new). */
void km_loader_reload(struct km_loader *loader);

/* Calls fn for every configured plugin, in load order. */
void km_loader_foreach(struct km_loader *loader,
                       void (*fn)(const struct km_plugin_info *info, void *arg), void *arg);

/* The KM_E* text. */
const char *km_strerror(int err);

#endif /* KM_LOADER_H */
