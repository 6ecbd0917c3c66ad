/*
 * alert_remote.h - alert_manager's REST answers about another host
 * (?host=NAME, issue 15).
 *
 * A remote host's alerts are not in this host's history: they are the
 * batches that host published on its own `system_alerts` topic, which a
 * bridge (redis_bridge) republished here with km_host.publish_remote. The
 * bus keeps the last ring_size of them per host; these functions read them
 * back (km_host.replay_host) in the shape of the history's entries, so the
 * routes filter and answer them as they do this host's.
 *
 * Built into alert_manager.so (with -fvisibility=hidden: nothing here is
 * exported).
 */
#ifndef AM_ALERT_REMOTE_H
#define AM_ALERT_REMOTE_H

#include <stddef.h>
#include <jansson.h>

#include <katomon/plugin.h>

/*
 * Which host a request's `host` parameter names: returns 0 with *h = 0
 * when it is absent or this host's name, 0 with *h > 0 for a known remote
 * host, or 404 with *reply = {"detail": "no host NAME"} for any other name
 * (a core without hosts knows only its own name, if any).
 */
int am_remote_host(const struct km_host *host, struct km_ctx *ctx,
                   const struct km_rest_call *call, int *h, json_t **reply);

/*
 * Host h's alerts as this host received them on `topic` (system_alerts):
 * every alert of every batch still in the bus's ring for that host, oldest
 * first, each with its batch's "timestamp" and "batch" id added (as this
 * host's history entries have). New reference; an empty array when there
 * are none (or the core cannot replay); NULL on ENOMEM.
 */
json_t *am_remote_entries(const struct km_host *host, struct km_ctx *ctx,
                          struct km_topic *topic, int h);

/*
 * What is firing on that host, from its entries (oldest first): every key
 * whose last alert is "firing", as GET /api/v1/alerts/active lists them
 * ({"key", "type", "rule", "level"}). New reference; NULL on ENOMEM.
 */
json_t *am_remote_active(json_t *entries);

#endif /* AM_ALERT_REMOTE_H */
