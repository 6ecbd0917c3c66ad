/*
 * plugin_routes.h - the table of every plugin's REST routes.
 *
 * One table per loader (core->routes). The host's rest_route verb adds to
 * it, the REST dispatch (km_loader_find) looks a request up in it, and
 * km_host_release drops a plugin's routes. Each route is tagged with the
 * context that registered it, as the bus tags topics and subscriptions.
 * Knowing every route in one place is what lets a registration be refused
 * when another plugin took the route, without the host asking the loader.
 */
#ifndef KM_PLUGIN_ROUTES_H
#define KM_PLUGIN_ROUTES_H

#include <stddef.h>
#include <katomon/plugin.h>

struct km_plugin_routes; /* opaque: the table */

/* The plugin route that serves one request (km_plugin_routes_find). */
struct km_route_hit {
    struct km_ctx *ctx; /* the plugin whose route it is */
    km_rest_cb cb;      /* its handler */
    void *arg;          /* its argument */
    size_t prefix;      /* 0: an exact route; else the length of the matched prefix */
};

/* A new, empty table; NULL on ENOMEM. */
struct km_plugin_routes *km_plugin_routes_new(void);
/* Frees the table and whatever routes are left. NULL is fine. */
void km_plugin_routes_free(struct km_plugin_routes *routes);

/*
 * km_host.rest_route for `owner`: checks method (1-16 upper-case letters)
 * and path ("/api/v1/..." with no blank, '?', '#' or '%'; a '*' only as
 * the whole last segment: a prefix route), then adds it. Returns KM_OK,
 * KM_EINVAL, KM_EEXIST (any plugin has this method and path already) or
 * KM_ENOMEM. path and method are copied.
 */
int km_plugin_routes_add(struct km_plugin_routes *routes, struct km_ctx *owner,
                         const char *method, const char *path, km_rest_cb cb, void *arg);

/* Removes every route of `owner`. */
void km_plugin_routes_drop(struct km_plugin_routes *routes, const struct km_ctx *owner);

/*
 * The best route for method (HEAD counts as GET) on path: an exact route,
 * else the longest prefix route (with at least one byte below it). Returns
 * 1 with *hit set; 2 when routes serve the path only under other methods
 * (`allow`, when not NULL, gets them, e.g. "GET, DELETE"); 0 when none
 * serves the path. routes may be NULL (nothing is served).
 */
int km_plugin_routes_find(const struct km_plugin_routes *routes, const char *method,
                          const char *path, struct km_route_hit *hit, char *allow,
                          size_t allowlen);

#endif /* KM_PLUGIN_ROUTES_H */
