/*
 * notify.h - telling systemd how the daemon is doing (sd_notify(3)).
 *
 * Under a Type=notify unit systemd waits for READY=1 before it calls the
 * service started, shows RELOADING=1 ... READY=1 around a SIGHUP reload,
 * STOPPING=1 at shut-down, and restarts a daemon whose loop stops sending
 * WATCHDOG=1 (WatchdogSec=). Outside systemd (NOTIFY_SOCKET unset), or in
 * a build without libsystemd, every call here does nothing.
 */
#ifndef KM_NOTIFY_H
#define KM_NOTIFY_H

#include <event2/event.h>

/* The watchdog's keep-alive timer; opaque. */
struct km_notify;

/* 1 when systemd listens (NOTIFY_SOCKET is set and this build can talk). */
int km_notify_wanted(void);

/* READY=1 with a STATUS= line; status may be NULL. */
void km_notify_ready(const char *status);
/* RELOADING=1 and MONOTONIC_USEC= (systemd 253's Type=notify-reload wants
   the stamp; 252's Type=notify shows it), before a reload. */
void km_notify_reloading(void);
/* STOPPING=1, before shut-down. */
void km_notify_stopping(void);

/* Starts sending WATCHDOG=1 from base every half WATCHDOG_USEC when
   systemd asked for it (sd_watchdog_enabled); NULL when it did not or
   the timer could not be made (logged). */
struct km_notify *km_notify_watchdog_start(struct event_base *base);
void km_notify_watchdog_free(struct km_notify *n);

#endif /* KM_NOTIFY_H */
