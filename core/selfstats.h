/*
 * selfstats.h - katomon's own figures as series (issue 14): a
 * km_series_collector that sets, at every km_series_collect (a scrape, a
 * history sample):
 *
 *   katomon_ws_clients                  WebSocket clients now
 *   katomon_ws_frames_sent_total        frames queued to clients (shared
 *                                       broadcast references + private replies)
 *   katomon_ws_bytes_sent_total         bytes of those frames
 *   katomon_bus_messages_total{topic}   messages accepted per topic
 *   katomon_bus_rejected_total{topic}   messages refused by validation per topic
 *   katomon_plugin_up{plugin}           1 running, 0 disabled or off
 *   katomon_series                      series held by the registry
 *   katomon_series_refused_total        series not created: the cap
 *   katomon_history_samples             tier-0 samples held (with a history store)
 *   katomon_history_bytes               memory reserved for history chunks (ditto)
 *   katomon_history_flushes_total       history files written whole (ditto)
 *   katomon_history_flush_errors_total  history writes that failed (ditto)
 *   katomon_history_flush_skipped_total flushes skipped: the last writer still ran
 *   process_resident_memory_bytes       from /proc/self/statm
 *   process_open_fds                    entries of /proc/self/fd
 *   process_start_time_seconds          unix time the process started
 *   process_cpu_seconds_total           user + system CPU (getrusage)
 *   katomon_build_info{version}         1
 *
 * The process_* names and meanings are the Prometheus client libraries'
 * own, so dashboards made for them work. Each figure costs a counter read
 * or one small procfs read: nothing here blocks.
 *
 * Ownership: reads core (borrowed; its server, loader and history may be
 * NULL and are looked up at each call, so a restart of any is fine).
 */
#ifndef KM_SELFSTATS_H
#define KM_SELFSTATS_H

#include "core.h"
#include "series.h"

/* The collector; arg is the struct km_core. */
void km_selfstats_collect(struct km_series_reg *reg, void *arg);

/* Adds km_selfstats_collect to core->series with core as its argument.
   0, or -1 on ENOMEM or without a registry. */
int km_selfstats_add(struct km_core *core);

#endif /* KM_SELFSTATS_H */
