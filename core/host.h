/*
 * host.h - the host interface: the verb table handed to every plugin's
 * init (struct km_host), and the inverse of its verbs, km_host_release.
 */
#ifndef KM_HOST_H
#define KM_HOST_H

#include <katomon/plugin.h>

/* The host interface handed to every plugin's init (static data). */
extern const struct km_host km_host_iface;

/*
 * Takes back whatever the plugin got through the verbs: cancels its HTTP
 * requests, closes its WebSockets, deletes its timers and fd watches,
 * ends its subscriptions, disowns its topics, removes its REST routes and
 * answers 503 to its pending REST requests; then forgets its descriptor.
 * Callbacks into the plugin never run after this. Not to be called from
 * inside one of the plugin's own callbacks. km_ctx_free follows.
 */
void km_host_release(struct km_ctx *ctx);

/* The KM_E* text (the strerror verb). Borrowed, static. */
const char *km_strerror(int err);

#endif /* KM_HOST_H */
