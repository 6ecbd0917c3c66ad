/*
 * core.h - the daemon's shared state: one event loop, one bus, one config.
 */
#ifndef KM_CORE_H
#define KM_CORE_H

#include <event2/event.h>
#include "bus.h"
#include "config.h"

struct km_loader;
struct km_plugin_routes;
struct km_server;
struct km_series_reg;
struct km_history;

struct km_core {
    struct event_base *base;         /* the one event loop */
    struct km_bus *bus;              /* topic bus */
    struct km_config *cfg;           /* current config (replaced on SIGHUP) */
    struct km_loader *loader;        /* loaded plugins */
    struct km_plugin_routes *routes; /* plugins' REST routes (plugin_routes.h),
                                        the loader's; NULL without a loader */
    struct km_server *server;        /* HTTP + WebSocket listener; NULL when not
                                        started */
    struct km_series_reg *series;    /* every number of every state topic
                                        (series.h); NULL in some tests */
    struct km_history *history;      /* history store (history.h); NULL when
                                        [history] enabled = false */
};

#endif /* KM_CORE_H */
