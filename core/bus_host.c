/*
 * bus_host.c - the bus's hosts (the contract is bus.h, "hosts").
 *
 * Shape:
 *   - bus->hosts holds one record per host, each allocated on its own so a
 *     name handed out (km_msg_host_name) never moves; hosts[0] is this one.
 *     A remote host is added by its first accepted message, never removed:
 *     max_hosts bounds them.
 *   - A topic keeps this host's messages in its own fields (bus.c) and
 *     each remote host's in a struct km_hslot at t->hs[h - 1], grown on
 *     that host's first message on the topic. An event slot's ring is
 *     indexed by the remote seq, like the local ring, but may have holes
 *     (seqs lost on the way): readers check each slot's seq.
 *   - A remote message is checked whole before anything changes, so a
 *     refused one leaves no trace but its counters.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "bus_int.h"
#include "log.h"

/* ---- host records ----------------------------------------------------------------- */

int km_bus_hosts_init(struct km_bus *bus)
{
    bus->max_hosts = KM_HOSTS_DEFAULT;
    bus->hosts = calloc(1, sizeof *bus->hosts);
    if (!bus->hosts || !(bus->hosts[0] = calloc(1, sizeof **bus->hosts))) {
        free(bus->hosts);
        bus->hosts = NULL;
        return KM_ENOMEM;
    }
    strcpy(bus->hosts[0]->name, "localhost");
    bus->hosts[0]->epoch = bus->epoch;
    bus->nhosts = 1;
    return KM_OK;
}

void km_bus_hosts_free(struct km_bus *bus)
{
    for (unsigned i = 0; i < bus->nhosts; i++)
        free(bus->hosts[i]);
    free(bus->hosts);
}

int km_bus_set_host(struct km_bus *bus, const char *name)
{
    if (!bus || !km_host_name_valid(name) || km_bus_host_find(bus, name) > 0)
        return KM_EINVAL;
    snprintf(bus->hosts[0]->name, sizeof bus->hosts[0]->name, "%s", name);
    return KM_OK;
}

void km_bus_set_max_hosts(struct km_bus *bus, unsigned n)
{
    if (bus)
        bus->max_hosts = n < 1 ? 1 : n > KM_HOSTS_MAX ? KM_HOSTS_MAX : n;
}

unsigned km_bus_host_count(const struct km_bus *bus)
{
    return bus ? bus->nhosts : 0;
}

const char *km_bus_host_name(const struct km_bus *bus, int h)
{
    return bus && h >= 0 && (unsigned)h < bus->nhosts ? bus->hosts[h]->name : NULL;
}

int km_bus_host_find(const struct km_bus *bus, const char *name)
{
    if (!bus || !name)
        return -1;
    for (unsigned i = 0; i < bus->nhosts; i++)
        if (strcmp(bus->hosts[i]->name, name) == 0)
            return (int)i;
    return -1;
}

int km_bus_host_info(const struct km_bus *bus, int h, struct km_bus_host *out)
{
    if (!bus || h < 0 || (unsigned)h >= bus->nhosts || !out)
        return KM_EINVAL;
    const struct km_hostrec *r = bus->hosts[h];
    *out = (struct km_bus_host){.name = r->name,
                                .epoch = r->epoch,
                                .last_seen_us = r->last_seen_us,
                                .last_seen_mono = r->last_seen_mono,
                                .messages = r->messages,
                                .refused = r->refused,
                                .gaps = r->gaps,
                                .missed = r->missed,
                                .restarts = r->restarts,
                                .forgotten = r->forgotten};
    return KM_OK;
}

/* A new record for host `name` (valid, unknown, room left): its index, or
   -1 on ENOMEM. */
static int km_host_add(struct km_bus *bus, const char *name)
{
    struct km_hostrec **v = realloc(bus->hosts, (bus->nhosts + 1) * sizeof *v);
    if (!v)
        return -1;
    bus->hosts = v;
    struct km_hostrec *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    snprintf(r->name, sizeof r->name, "%s", name);
    v[bus->nhosts] = r;
    return (int)bus->nhosts++;
}

/* ---- slots ------------------------------------------------------------------------ */

/* Drops what slot holds (its epoch ended, or the topic goes). */
static void km_hslot_clear(struct km_hslot *s, unsigned ring_size)
{
    km_msg_unref(s->latest);
    s->latest = NULL;
    if (s->ring)
        for (unsigned i = 0; i < ring_size; i++) {
            km_msg_unref(s->ring[i]);
            s->ring[i] = NULL;
        }
    s->last_seq = 0;
}

void km_hslots_free(struct km_topic *t)
{
    for (size_t i = 0; i < t->nhs; i++) {
        km_hslot_clear(&t->hs[i], t->ring_size);
        free(t->hs[i].ring);
    }
    free(t->hs);
    t->hs = NULL;
    t->nhs = 0;
}

/* km_bus_foreach's worker for km_bus_host_forget: one topic's slot. */
struct km_forget {
    int h; /* the host */
};

static void km_forget_topic(struct km_topic *t, void *arg)
{
    int h = ((struct km_forget *)arg)->h;
    if ((size_t)h <= t->nhs) {
        km_hslot_clear(&t->hs[h - 1], t->ring_size);
        t->hs[h - 1].epoch = 0; /* its next message is a first sight */
    }
}

int km_bus_host_forget(struct km_bus *bus, int h)
{
    if (!bus || h < 1 || (unsigned)h >= bus->nhosts)
        return KM_EINVAL;
    struct km_forget f = {h};
    km_bus_foreach(bus, km_forget_topic, &f);
    bus->hosts[h]->forgotten = true;
    return KM_OK;
}

/* Host h's slot on t (h >= 1), or NULL when it has none. */
static struct km_hslot *km_hslot(const struct km_topic *t, int h)
{
    return h >= 1 && (size_t)h <= t->nhs ? &t->hs[h - 1] : NULL;
}

/* Host h's slot on t, made (with its ring) when missing; NULL on ENOMEM. */
static struct km_hslot *km_hslot_get(struct km_topic *t, int h)
{
    if ((size_t)h > t->nhs) {
        struct km_hslot *v = realloc(t->hs, (size_t)h * sizeof *v);
        if (!v)
            return NULL;
        memset(v + t->nhs, 0, ((size_t)h - t->nhs) * sizeof *v);
        t->hs = v;
        t->nhs = (size_t)h;
    }
    struct km_hslot *s = &t->hs[h - 1];
    if (t->kind == KM_TOPIC_EVENT && !s->ring &&
        !(s->ring = calloc(t->ring_size, sizeof *s->ring)))
        return NULL;
    return s;
}

void km_hslots_initial(struct km_sub *sub, struct km_topic *t,
                       void (*fn)(struct km_sub *sub, struct km_topic *t,
                                  struct km_msg *msg))
{
    /* By index: a callback may publish and so grow t->hs. */
    for (size_t i = 0; i < t->nhs; i++)
        fn(sub, t, t->hs[i].latest);
}

/* ---- remote publish --------------------------------------------------------------- */

/* The checks that need no host record: KM_OK or the refusal. */
static int km_remote_check(const struct km_topic *t, const json_t *body,
                           const struct km_remote *r)
{
    if (!t || !t->declared || !body || !r || !json_is_object(body) ||
        !km_host_name_valid(r->host) || r->epoch <= 0 ||
        strcmp(r->host, t->bus->hosts[0]->name) == 0 ||
        (t->kind == KM_TOPIC_EVENT && r->seq == 0))
        return KM_EINVAL;
    if (t->orphan)
        return KM_EOWNER;
    if (r->kind != t->kind)
        return KM_EKIND;
    return KM_OK;
}

/* Whether an event seq is new for slot s (its epoch already settled). */
static int km_remote_seq_check(const struct km_hslot *s, int64_t epoch, uint64_t seq)
{
    if (s && s->epoch == epoch && seq <= s->last_seq)
        return KM_ESTALE;
    return KM_OK;
}

/* Keeps msg in host h's slot s; counts a seq jump on the host. */
static void km_hslot_store(struct km_topic *t, struct km_hslot *s, struct km_hostrec *rec,
                           struct km_msg *msg)
{
    if (s->epoch != msg->epoch) {
        /* First sight, or the host restarted: its sequences start again. A
           restart's first seq past 1 means messages were lost; on first
           sight we only joined late. */
        bool restarted = s->epoch != 0;
        km_hslot_clear(s, t->ring_size);
        s->epoch = msg->epoch;
        if (!restarted && t->kind == KM_TOPIC_EVENT)
            s->last_seq = msg->seq - 1;
    }
    t->published++;
    if (t->kind == KM_TOPIC_STATE) {
        km_msg_unref(s->latest);
        s->latest = km_msg_ref(msg);
        return;
    }
    if (msg->seq > s->last_seq + 1) {
        rec->gaps++;
        rec->missed += msg->seq - s->last_seq - 1;
    }
    s->last_seq = msg->seq;
    struct km_msg **slot = &s->ring[(msg->seq - 1) % t->ring_size];
    km_msg_unref(*slot);
    *slot = km_msg_ref(msg);
}

int km_bus_publish_remote(struct km_topic *topic, json_t *body, const struct km_remote *r)
{
    int rc = km_remote_check(topic, body, r);
    struct km_bus *bus = topic ? topic->bus : NULL;
    int h = rc == KM_OK ? km_bus_host_find(bus, r->host) : -1;
    struct km_hostrec *rec = h > 0 ? bus->hosts[h] : NULL;

    if (rc == KM_OK && !rec && bus->nhosts >= bus->max_hosts)
        rc = KM_EFULL;
    if (rc == KM_OK && rec && r->epoch < rec->epoch)
        rc = KM_ESTALE;
    if (rc == KM_OK && topic->kind == KM_TOPIC_EVENT)
        rc = km_remote_seq_check(km_hslot(topic, h), r->epoch, r->seq);
    if (rc == KM_OK)
        rc = km_bus_validate(topic, body, true);
    if (rc == KM_OK && !rec) {
        if ((h = km_host_add(bus, r->host)) < 0)
            rc = KM_ENOMEM;
        else
            rec = bus->hosts[h];
    }
    struct km_hslot *slot = rc == KM_OK ? km_hslot_get(topic, h) : NULL;
    struct km_msg *msg = slot ? calloc(1, sizeof *msg) : NULL;
    if (rc == KM_OK && !msg)
        rc = KM_ENOMEM;
    if (rc != KM_OK) {
        if (rec)
            rec->refused++;
        json_decref(body);
        return rc;
    }

    if (rec->epoch != r->epoch) {
        rec->restarts += rec->epoch != 0;
        rec->epoch = r->epoch;
    }
    msg->refs = 1; /* ours, dropped below once queued and stored */
    msg->body = body;
    msg->topic = topic;
    msg->gen = ++bus->gen;
    msg->host = h;
    msg->epoch = r->epoch;
    msg->seq = topic->kind == KM_TOPIC_EVENT ? r->seq : 0;
    msg->time_us = r->time_us;
    msg->mono_us = km_bus_clock_us(CLOCK_MONOTONIC);
    rec->forgotten = false;
    rec->messages++;
    rec->last_seen_us = km_bus_clock_us(CLOCK_REALTIME);
    rec->last_seen_mono = msg->mono_us;
    km_hslot_store(topic, slot, rec, msg);
    km_bus_stats.messages++;
    km_bus_enqueue(bus, msg);
    km_msg_unref(msg);
    km_bus_flush(bus, NULL);
    return KM_OK;
}

/* ---- per-host reads --------------------------------------------------------------- */

int km_msg_host(const struct km_msg *msg)
{
    return msg->host;
}

const char *km_msg_host_name(const struct km_msg *msg)
{
    return msg->topic->bus->hosts[msg->host]->name;
}

int64_t km_msg_epoch(const struct km_msg *msg)
{
    return msg->epoch;
}

struct km_msg *km_topic_latest_host(const struct km_topic *t, int h)
{
    if (h == 0)
        return km_topic_latest(t);
    const struct km_hslot *s = km_hslot(t, h);
    return s ? s->latest : NULL;
}

uint64_t km_topic_last_seq_host(const struct km_topic *t, int h)
{
    if (h == 0)
        return km_topic_last_seq(t);
    const struct km_hslot *s = km_hslot(t, h);
    return s && s->ring ? s->last_seq : 0;
}

/* The message of seq `seq` in slot s, or NULL (never held, or overwritten). */
static struct km_msg *km_hslot_at(const struct km_topic *t, const struct km_hslot *s,
                                  uint64_t seq)
{
    struct km_msg *m = s->ring[(seq - 1) % t->ring_size];
    return m && m->seq == seq ? m : NULL;
}

/* The first seq the ring of s can still hold. */
static uint64_t km_hslot_floor(const struct km_topic *t, const struct km_hslot *s)
{
    return s->last_seq > t->ring_size ? s->last_seq - t->ring_size + 1 : 1;
}

uint64_t km_topic_oldest_seq_host(const struct km_topic *t, int h)
{
    if (h == 0)
        return km_topic_oldest_seq(t);
    const struct km_hslot *s = km_hslot(t, h);
    if (!s || !s->ring)
        return 0;
    for (uint64_t q = km_hslot_floor(t, s); q && q <= s->last_seq; q++)
        if (km_hslot_at(t, s, q))
            return q;
    return 0;
}

int64_t km_topic_epoch_host(const struct km_topic *t, int h)
{
    if (h == 0)
        return t->bus->epoch;
    const struct km_hslot *s = km_hslot(t, h);
    return s ? s->epoch : 0;
}

int km_bus_replay_host(struct km_topic *topic, int h, uint64_t since, km_msg_cb cb,
                       void *arg)
{
    if (!topic || !topic->declared || !cb || h < 0 || (unsigned)h >= topic->bus->nhosts)
        return KM_EINVAL;
    if (h == 0)
        return km_bus_replay(topic, since, cb, arg);
    if (topic->kind != KM_TOPIC_EVENT)
        return KM_EKIND;
    const struct km_hslot *s = km_hslot(topic, h);
    if (!s || !s->ring || since >= s->last_seq)
        return 0;
    uint64_t floor = km_hslot_floor(topic, s);
    uint64_t from = since + 1 > floor ? since + 1 : floor;
    size_t cap = (size_t)(s->last_seq - from + 1), n = 0;

    /* Take the set (with references) first: a callback may publish. */
    struct km_msg **snap = malloc(cap * sizeof *snap);
    if (!snap)
        return KM_ENOMEM;
    for (uint64_t q = from; q <= s->last_seq; q++) {
        struct km_msg *m = km_hslot_at(topic, s, q);
        if (m)
            snap[n++] = km_msg_ref(m);
    }
    uint64_t wanted = s->last_seq - since;
    km_bus_replay_snapshot(topic, snap, n, cb, arg);
    return n < wanted ? KM_EGONE : (int)n;
}
