/*
 * fleet.h - the core's state topic `hosts` (issue 15): every host the bus
 * knows, whether it is up, and what the bus counted of it.
 *
 *   {"local":"A","stale_after_s":15,
 *    "hosts":[{"name":"A","local":true,"up":true,"last_seen":"ISO8601"|null,
 *              "age_s":0.0,"epoch":E,"messages":N,"refused":N,"gaps":N,
 *              "missed":N,"restarts":N}, ...]}
 *
 * Host 0 (this one) first, then the remote hosts in index order. A remote
 * host is up while its last accepted message is younger than [core]
 * host_stale (read from core->cfg at every check, so SIGHUP applies it);
 * this host is always up, its last_seen is the time of the message and its
 * age 0. Published once by km_fleet_new, then every second while remote
 * hosts exist, and at once when a remote host appears or its up changes
 * (a "*" subscription of every host's messages notices a stale host's
 * return without waiting for the timer). A host going stale and coming
 * back is logged at notice: "host B: stale, no message for 16 s",
 * "host B: back after 40 s".
 *
 * Series (the topic's .metrics): katomon_host_up{host="B"},
 * katomon_host_last_seen_age_seconds, katomon_host_messages_total,
 * ..._refused_total, ..._gaps_total, ..._missed_total, ..._restarts_total,
 * and katomon_host_stale_seconds.
 *
 * Ownership: the topic belongs to the core (owner NULL) and lives with the
 * bus; the fleet holds its timers and subscription, freed by km_fleet_free
 * (before the bus and the loop).
 */
#ifndef KM_FLEET_H
#define KM_FLEET_H

#include <stdint.h>

#include "core.h"

/* The topic's name. */
#define KM_FLEET_TOPIC "hosts"

struct km_fleet;

/*
 * Declares `hosts` on core->bus (owner NULL), publishes it once and starts
 * the 1 s check on core->base. core->cfg may be NULL (host_stale 15 s).
 * NULL on ENOMEM or when the topic cannot be declared (logged).
 */
struct km_fleet *km_fleet_new(struct km_core *core);
/* Stops the timers and the subscription; the topic stays on the bus. NULL
   is fine. */
void km_fleet_free(struct km_fleet *f);

/*
 * One check as of CLOCK_MONOTONIC time now_us (µs, km_mono_us's clock):
 * up/stale of each remote host, the log lines of changes, and a publish
 * when there are remote hosts or something changed. The 1 s timer calls it
 * with the time; tests call it with a time of their own. Returns 1 when it
 * published, else 0.
 */
int km_fleet_check(struct km_fleet *f, int64_t now_us);
/* km_fleet_check at the current time. */
int km_fleet_tick(struct km_fleet *f);
/* 1 when host h counted as up at the last check (this host: always). */
int km_fleet_host_up(const struct km_fleet *f, int h);

#endif /* KM_FLEET_H */
