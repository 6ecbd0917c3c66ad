/*
 * notify.c - sd_notify(3) for readiness, reload, stop and the watchdog
 * (see notify.h).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "log.h"
#include "notify.h"

/* The watchdog's keep-alive. */
struct km_notify {
    struct event *timer; /* persistent: fires every half watchdog interval */
    uint64_t usec;       /* WATCHDOG_USEC systemd gave us */
};

#ifdef HAVE_LIBSYSTEMD

int km_notify_wanted(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

/* One message; a failure is logged at debug only: systemd is the one who
   would notice (and a unit without Type=notify does not listen at all). */
static void km_notify_send(const char *msg)
{
    int rc = sd_notify(0, msg);
    if (rc < 0)
        km_log(KM_LOG_DEBUG, "sd_notify failed: %d", rc);
}

void km_notify_ready(const char *status)
{
    char msg[512];

    if (!km_notify_wanted())
        return;
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status ? status : "running");
    km_notify_send(msg);
}

void km_notify_reloading(void)
{
    struct timespec ts;
    char msg[128];

    if (!km_notify_wanted())
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof msg,
             "RELOADING=1\nSTATUS=reloading the configuration\n"
             "MONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL +
                 (unsigned long long)ts.tv_nsec / 1000ULL);
    km_notify_send(msg);
}

void km_notify_stopping(void)
{
    if (km_notify_wanted())
        km_notify_send("STOPPING=1\nSTATUS=shutting down");
}

/* The loop is alive: it ran this callback. A wedged loop stops sending,
   and systemd restarts the service after WatchdogSec=. */
static void km_notify_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    km_notify_send("WATCHDOG=1");
}

struct km_notify *km_notify_watchdog_start(struct event_base *base)
{
    uint64_t usec = 0;
    struct km_notify *n;

    /* 0: WATCHDOG_USEC stays in the environment; a child could not take it
       for its own, WATCHDOG_PID (when systemd sets it) names this process */
    if (!km_notify_wanted() || sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return NULL;
    if (!(n = calloc(1, sizeof *n)))
        return NULL;
    n->usec = usec;
    n->timer = event_new(base, -1, EV_PERSIST, km_notify_watchdog_cb, n);
    /* half the interval, as sd_watchdog_enabled(3) advises */
    struct timeval tv = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
    if (!n->timer || event_add(n->timer, &tv) < 0) {
        km_log(KM_LOG_ERROR,
               "cannot start the watchdog timer: systemd will restart katomon "
               "after WatchdogSec=");
        km_notify_watchdog_free(n);
        return NULL;
    }
    km_notify_send("WATCHDOG=1");
    km_log(KM_LOG_INFO, "systemd watchdog: keep-alive every %.3f s", (double)usec / 2e6);
    return n;
}

void km_notify_watchdog_free(struct km_notify *n)
{
    if (!n)
        return;
    if (n->timer)
        event_free(n->timer);
    free(n);
}

#else /* !HAVE_LIBSYSTEMD: configured --without-libsystemd */

int km_notify_wanted(void)
{
    return 0;
}

void km_notify_ready(const char *status)
{
    (void)status;
}

void km_notify_reloading(void) {}

void km_notify_stopping(void) {}

struct km_notify *km_notify_watchdog_start(struct event_base *base)
{
    (void)base;
    return NULL;
}

void km_notify_watchdog_free(struct km_notify *n)
{
    (void)n;
}

#endif
