/*
 * fleet.c - the core's state topic `hosts` (see fleet.h).
 *
 * Decisions worth knowing:
 *  - Up or stale is the fleet's own judgement, not the bus's: the bus only
 *    records when each host's last message arrived (km_bus_host_info), and
 *    a host that falls silent sends nothing that could tell the bus so. The
 *    1 s timer compares that time with [core] host_stale.
 *  - A silent host turns stale when its stale time is up: the 1 s tick
 *    also arms a one-shot timer for the earliest deadline of the hosts that
 *    are up, so host_down is not late by up to a second; a stale host that speaks again
 * is noticed by the "*" subscription at its first message, which arms an immediate check.
 * The check runs from the loop, never inside the bus's delivery, so the publish of
 *    `hosts` is never a nested one.
 *  - The per-host memory here is one small record per host the bus knows,
 *    bounded by [core] max_hosts (at most KM_HOSTS_MAX).
 */
#include "fleet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <katomon/util.h>

#include "host.h" /* km_strerror */
#include "log.h"

/* What the fleet remembers of one host between checks. */
struct km_fleet_host {
    int up;             /* up at the last check */
    int64_t stale_seen; /* stale: last_seen_mono when it went stale */
};

struct km_fleet {
    struct km_core *core;        /* the daemon (borrowed) */
    struct km_topic *topic;      /* `hosts` (the bus's) */
    struct event *tick_ev;       /* 1 s persistent timer */
    struct event *now_ev;        /* an immediate check (a host appeared or is back) */
    struct event *deadline_ev;   /* one-shot: the earliest up host's stale time */
    int64_t next_stale_us;       /* that time (monotonic µs); 0: no host up */
    int now_armed;               /* now_ev is active and has not run yet */
    struct km_sub *sub;          /* "*" of every host: notices returns at once */
    struct km_fleet_host *hosts; /* per host index (owned); [0] unused */
    unsigned n_hosts;            /* entries of hosts in use (= hosts known) */
    unsigned cap;                /* entries allocated */
    double stale_published;      /* stale_after_s of the last publish; < 0: none */
};

/* ---- the topic ----------------------------------------------------------- */

static const struct km_field km_fleet_host_fields[] = {
    KM_FIELD("name", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("local", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("up", KM_BOOL, KM_F_REQUIRED),
    KM_FIELD("last_seen", KM_STRING, KM_F_REQUIRED | KM_F_NULLABLE),
    KM_FIELD("age_s", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD("epoch", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("messages", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("refused", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("gaps", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("missed", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD("restarts", KM_INTEGER, KM_F_REQUIRED),
    KM_FIELD_END,
};

static const struct km_field km_fleet_host_item =
    KM_FIELD_OBJECT(NULL, 0, km_fleet_host_fields);

static const struct km_field km_fleet_schema[] = {
    KM_FIELD("local", KM_STRING, KM_F_REQUIRED),
    KM_FIELD("stale_after_s", KM_NUMBER, KM_F_REQUIRED),
    KM_FIELD_ARRAY("hosts", KM_F_REQUIRED, &km_fleet_host_item),
    KM_FIELD_END,
};

// clang-format off
/* one entry a line reads better than clang-format's six */
static const struct km_metric km_fleet_metrics[] = {
    {"hosts[]", NULL, NULL, 0, 0, "host=name"},
    {"hosts[].up", "host_up",
     "1 while the host is up: this host always; a remote one while its last message "
     "is younger than [core] host_stale", 0, 0, NULL},
    {"hosts[].age_s", "host_last_seen_age_seconds",
     "Seconds since the host's last message reached this katomon (this host: 0)",
     0, 0, NULL},
    {"hosts[].messages", "host_messages_total",
     "Messages of the host this katomon's bus accepted", KM_METRIC_COUNTER, 0, NULL},
    {"hosts[].refused", "host_refused_total",
     "Messages of the host refused (schema, kind, stale seq or epoch)",
     KM_METRIC_COUNTER, 0, NULL},
    {"hosts[].gaps", "host_gaps_total",
     "Event sequence jumps seen from the host (messages lost on the way)",
     KM_METRIC_COUNTER, 0, NULL},
    {"hosts[].missed", "host_missed_total",
     "Event messages of the host those jumps skipped", KM_METRIC_COUNTER, 0, NULL},
    {"hosts[].restarts", "host_restarts_total",
     "Restarts of the host seen (a newer bus epoch)", KM_METRIC_COUNTER, 0, NULL},
    {"hosts[].epoch", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"hosts[].local", NULL, NULL, KM_METRIC_IGNORE, 0, NULL},
    {"stale_after_s", "host_stale_seconds",
     "[core] host_stale: seconds without a message before a remote host is down",
     0, 0, NULL},
    {NULL, NULL, NULL, 0, 0, NULL},
};
// clang-format on

static const struct km_topic_def km_fleet_def = {
    .name = KM_FLEET_TOPIC,
    .kind = KM_TOPIC_STATE,
    .schema = km_fleet_schema,
    .description = "every host of the fleet: up or stale, last seen, what the bus "
                   "counted of it",
    .metrics = km_fleet_metrics,
};

/* ---- checking ------------------------------------------------------------ */

static double km_fleet_stale_s(const struct km_fleet *f)
{
    const struct km_config *cfg = f->core->cfg;
    return cfg && cfg->host_stale >= KM_HOST_STALE_MIN ? cfg->host_stale
                                                       : KM_HOST_STALE_DEFAULT;
}

/* Room for n host records; 0, or -1 on ENOMEM. */
static int km_fleet_grow(struct km_fleet *f, unsigned n)
{
    if (n <= f->cap)
        return 0;
    unsigned cap = f->cap ? f->cap : 8;
    while (cap < n)
        cap *= 2;
    struct km_fleet_host *grown = realloc(f->hosts, cap * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + f->cap, 0, (cap - f->cap) * sizeof *grown);
    f->hosts = grown;
    f->cap = cap;
    return 0;
}

/* Seconds, rounded to the millisecond (µs noise is not worth a reader's eye). */
static double km_fleet_secs(int64_t us)
{
    return round((double)us / 1000.0) / 1000.0;
}

/* One host's entry of the message. */
static json_t *km_fleet_host_json(const struct km_bus_host *hi, int local, int up,
                                  int64_t now_us)
{
    char iso[KM_ISO_LEN];
    int64_t seen_us = local ? km_wall_us() : hi->last_seen_us;
    double age =
        local || !hi->last_seen_mono ? 0 : km_fleet_secs(now_us - hi->last_seen_mono);

    return json_pack("{s:s, s:b, s:b, s:s?, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "name",
                     hi->name ? hi->name : "", "local", local, "up", up, "last_seen",
                     seen_us > 0 ? km_format_iso(seen_us, 3, iso, sizeof iso) : NULL,
                     "age_s", age < 0 ? 0 : age, "epoch", (json_int_t)hi->epoch,
                     "messages", (json_int_t)hi->messages, "refused",
                     (json_int_t)hi->refused, "gaps", (json_int_t)hi->gaps, "missed",
                     (json_int_t)hi->missed, "restarts", (json_int_t)hi->restarts);
}

static int km_fleet_publish(struct km_fleet *f, int64_t now_us, double stale_s)
{
    struct km_bus *bus = f->core->bus;
    json_t *list = json_array();
    const char *local = km_bus_host_name(bus, 0);

    for (unsigned h = 0; list && h < f->n_hosts; h++) {
        struct km_bus_host hi;
        if (km_bus_host_info(bus, (int)h, &hi) != 0 || hi.forgotten)
            continue;
        if (json_array_append_new(
                list,
                km_fleet_host_json(&hi, h == 0, h == 0 || f->hosts[h].up, now_us)) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *body = list ? json_pack("{s:s, s:f, s:o}", "local", local ? local : "",
                                    "stale_after_s", stale_s, "hosts", list)
                        : NULL;
    if (!body) {
        km_log(KM_LOG_WARNING, "hosts: cannot build the message: out of memory");
        return 0;
    }
    int rc = km_bus_publish(f->topic, body, NULL);
    if (rc != KM_OK) {
        km_log(KM_LOG_WARNING, "hosts: publish failed: %s", km_strerror(rc));
        return 0;
    }
    f->stale_published = stale_s;
    return 1;
}

int km_fleet_check(struct km_fleet *f, int64_t now_us)
{
    struct km_bus *bus = f->core->bus;
    double stale_s = km_fleet_stale_s(f);
    int64_t stale_us = (int64_t)(stale_s * 1e6);
    double forget_s = f->core->cfg ? f->core->cfg->host_forget : KM_HOST_FORGET_DEFAULT;
    /* never before it is stale: a host is forgotten only once it is down */
    int64_t forget_us = forget_s > 0 ? (int64_t)(fmax(forget_s, stale_s) * 1e6) : 0;
    unsigned n = km_bus_host_count(bus);
    int changed = stale_s != f->stale_published;

    if (n > f->n_hosts && km_fleet_grow(f, n) < 0) {
        km_log(KM_LOG_WARNING, "hosts: out of memory; %u hosts not shown",
               n - f->n_hosts);
        n = f->n_hosts;
    }
    f->next_stale_us = 0;
    for (unsigned h = 1; h < n; h++) {
        struct km_fleet_host *fh = &f->hosts[h];
        struct km_bus_host hi;
        int fresh = h >= f->n_hosts;
        if (km_bus_host_info(bus, (int)h, &hi) != 0)
            continue;
        int up = hi.last_seen_mono > 0 && now_us - hi.last_seen_mono < stale_us;
        if (!up && !hi.forgotten && forget_us > 0 && hi.last_seen_mono > 0 &&
            now_us - hi.last_seen_mono >= forget_us) {
            /* retired or renamed: stop showing it and firing host_down */
            km_bus_host_forget(bus, (int)h);
            km_log(KM_LOG_NOTICE,
                   "host %s: forgotten after %lld s without a message (its values "
                   "dropped; its next message brings it back)",
                   hi.name, (long long)((now_us - hi.last_seen_mono) / 1000000));
            changed = 1;
        }
        if (fresh) {
            km_log(KM_LOG_INFO, "host %s: first message (epoch %lld)", hi.name,
                   (long long)hi.epoch);
            changed = 1;
        } else if (fh->up && !up) {
            km_log(KM_LOG_NOTICE, "host %s: stale, no message for %lld s", hi.name,
                   (long long)((now_us - hi.last_seen_mono) / 1000000));
            fh->stale_seen = hi.last_seen_mono;
            changed = 1;
        } else if (!fh->up && up) {
            km_log(KM_LOG_NOTICE, "host %s: back after %lld s", hi.name,
                   (long long)((hi.last_seen_mono - fh->stale_seen) / 1000000));
            changed = 1;
        }
        fh->up = up;
        int64_t due = hi.last_seen_mono + stale_us;
        if (up && (!f->next_stale_us || due < f->next_stale_us))
            f->next_stale_us = due;
    }
    f->n_hosts = n > f->n_hosts ? n : f->n_hosts;
    if (n <= 1 && !changed)
        return 0;
    return km_fleet_publish(f, now_us, stale_s);
}

int km_fleet_tick(struct km_fleet *f)
{
    int rc = km_fleet_check(f, km_mono_us());
    /* Wake up just past the earliest deadline when it comes before the
       next tick (a host's new messages only push it later: then that
       check finds it up and the next tick re-arms). */
    if (f->deadline_ev && f->next_stale_us) {
        int64_t wait = f->next_stale_us - km_mono_us() + 1000;
        if (wait < 1000000) {
            struct timeval tv = {0, wait > 0 ? (suseconds_t)wait : 0};
            event_add(f->deadline_ev, &tv);
        }
    }
    return rc;
}

int km_fleet_host_up(const struct km_fleet *f, int h)
{
    if (h == 0)
        return 1;
    return f && h > 0 && (unsigned)h < f->n_hosts && f->hosts[h].up;
}

/* ---- the loop ---------------------------------------------------------------- */

static void km_fleet_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    km_fleet_tick(arg);
}

static void km_fleet_now_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_fleet *f = arg;
    f->now_armed = 0;
    km_fleet_tick(f);
}

/* Every host's messages: a remote host that is new or stale is news now. */
static void km_fleet_on_msg(struct km_topic *topic, struct km_msg *msg, void *arg)
{
    struct km_fleet *f = arg;
    int h = km_msg_host(msg);

    if (h <= 0 || f->now_armed || ((unsigned)h < f->n_hosts && f->hosts[h].up))
        return;
    f->now_armed = 1;
    event_active(f->now_ev, EV_TIMEOUT, 0);
}

struct km_fleet *km_fleet_new(struct km_core *core)
{
    struct km_fleet *f = calloc(1, sizeof *f);
    struct timeval one = {1, 0};
    int err = 0;

    if (!f)
        return NULL;
    f->core = core;
    f->stale_published = -1;
    f->n_hosts = 1;
    if (km_fleet_grow(f, 8) < 0)
        goto fail;
    f->hosts[0].up = 1;
    if (!(f->topic = km_bus_declare(core->bus, &km_fleet_def, NULL, &err))) {
        km_log(KM_LOG_ERROR, "cannot declare the core's topic %s: %s", KM_FLEET_TOPIC,
               km_strerror(err));
        goto fail;
    }
    f->tick_ev = event_new(core->base, -1, EV_PERSIST, km_fleet_tick_cb, f);
    f->now_ev = event_new(core->base, -1, 0, km_fleet_now_cb, f);
    f->deadline_ev = event_new(core->base, -1, 0, km_fleet_tick_cb, f);
    if (!f->tick_ev || !f->now_ev || !f->deadline_ev || event_add(f->tick_ev, &one) != 0)
        goto fail;
    f->sub = km_bus_subscribe_ex(core->bus, "*", km_fleet_on_msg, f, f, KM_SUB_HOSTS);
    if (!f->sub)
        goto fail;
    km_fleet_publish(f, km_mono_us(), km_fleet_stale_s(f));
    return f;
fail:
    km_fleet_free(f);
    return NULL;
}

void km_fleet_free(struct km_fleet *f)
{
    if (!f)
        return;
    km_bus_unsubscribe(f->sub);
    if (f->tick_ev)
        event_free(f->tick_ev);
    if (f->now_ev)
        event_free(f->now_ev);
    if (f->deadline_ev)
        event_free(f->deadline_ev);
    free(f->hosts);
    free(f);
}
