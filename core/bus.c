/*
 * bus.c - the typed topic bus (DESIGN section 4; the contract is bus.h).
 *
 * Shape:
 *   - Topics sit in a small chained hash table keyed by name, and in an
 *     array in declaration order (km_bus_foreach, "*" initial values).
 *     Subscribing by name to a topic nobody declared yet creates a
 *     placeholder entry (declared == false) that only holds subscribers;
 *     declare fills it in. A placeholder left without subscribers is freed,
 *     so names subscribed to and dropped do not pile up.
 *   - Each topic keeps its subscriptions in an array; "*" subscriptions are
 *     in one bus-wide array, delivered after the topic's own.
 *   - Accepted messages go through one bus-wide FIFO. Only the outermost
 *     bus call drains it, so callbacks are never re-entered and everyone
 *     sees messages in acceptance order. While any callback runs
 *     (bus->depth > 0), ended subscriptions are only marked dead and are
 *     removed afterwards, so the arrays being walked never shift under a
 *     delivery loop.
 *   - A subscription records the bus-wide message counter when it is made
 *     (start) and gets exactly the messages numbered after it: one made
 *     during a delivery does not get the message being delivered, and the
 *     initial state value never duplicates a queued delivery.
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus_int.h"
#include "log.h"

struct km_bus_stats km_bus_stats;

/* ---- small helpers ---------------------------------------------------------------- */

int64_t km_bus_clock_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* FNV-1a: names are short, a few dozen topics; anything simple will do. */
static uint32_t km_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void km_set_err(int *err, int code)
{
    if (err)
        *err = code;
}

/* Array v (n used, *cap allocated, entries of `size` bytes) with room for
   one more: v itself, a moved copy (*cap updated), or NULL (v untouched). */
static void *km_grow(void *v, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return v;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *nv = realloc(v, ncap * size);
    if (nv)
        *cap = ncap;
    return nv;
}

/* ---- the hash table --------------------------------------------------------------- */

static struct km_topic *km_lookup(const struct km_bus *bus, const char *name)
{
    uint32_t h = km_hash(name);
    for (struct km_topic *t = bus->buckets[h & (bus->nbuckets - 1)]; t; t = t->hnext)
        if (t->hash == h && strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Doubles the table when it holds more entries than buckets. A failed
   resize is harmless: chains just get longer. */
static void km_rehash(struct km_bus *bus)
{
    if (bus->nentries < bus->nbuckets)
        return;
    size_t nb = bus->nbuckets * 2;
    struct km_topic **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < bus->nbuckets; i++) {
        struct km_topic *t = bus->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            t->hnext = b[t->hash & (nb - 1)];
            b[t->hash & (nb - 1)] = t;
        }
    }
    free(bus->buckets);
    bus->buckets = b;
    bus->nbuckets = nb;
}

/* A new, empty entry for name (already validated), in the table. */
static struct km_topic *km_entry_new(struct km_bus *bus, const char *name)
{
    struct km_topic *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->bus = bus;
    t->hash = km_hash(name);
    strcpy(t->name, name);
    struct km_topic **slot = &bus->buckets[t->hash & (bus->nbuckets - 1)];
    t->hnext = *slot;
    *slot = t;
    bus->nentries++;
    km_rehash(bus);
    return t;
}

static void km_entry_unlink(struct km_bus *bus, struct km_topic *t)
{
    struct km_topic **p = &bus->buckets[t->hash & (bus->nbuckets - 1)];
    while (*p != t)
        p = &(*p)->hnext;
    *p = t->hnext;
    bus->nentries--;
}

/* ---- messages --------------------------------------------------------------------- */

struct km_msg *km_msg_ref(struct km_msg *msg)
{
    if (msg)
        msg->refs++;
    return msg;
}

void km_msg_unref(struct km_msg *msg)
{
    if (!msg || --msg->refs > 0)
        return;
    if (msg->cache_free)
        msg->cache_free(msg->cache);
    free(msg->text);
    json_decref(msg->body);
    free(msg);
}

json_t *km_msg_json(const struct km_msg *msg)
{
    return msg->body;
}

uint64_t km_msg_seq(const struct km_msg *msg)
{
    return msg->seq;
}

struct km_topic *km_msg_topic(const struct km_msg *msg)
{
    return msg->topic;
}

int64_t km_msg_time_us(const struct km_msg *msg)
{
    return msg->time_us;
}

int64_t km_msg_mono_us(const struct km_msg *msg)
{
    return msg->mono_us;
}

const char *km_msg_text(struct km_msg *msg, size_t *len)
{
    if (!msg->text) {
        msg->text = json_dumps(msg->body, KM_JSON_FLAGS);
        if (!msg->text)
            return NULL;
        msg->text_len = strlen(msg->text);
        km_bus_stats.json_encodes++;
    }
    if (len)
        *len = msg->text_len;
    return msg->text;
}

void *km_msg_cache(const struct km_msg *msg)
{
    return msg->cache;
}

void km_msg_set_cache(struct km_msg *msg, void *p, void (*free_fn)(void *))
{
    /* Setting the same pointer again only changes how it is freed. */
    if (msg->cache_free && msg->cache != p)
        msg->cache_free(msg->cache);
    msg->cache = p;
    msg->cache_free = free_fn;
}

/* ---- subscriptions ---------------------------------------------------------------- */

static void km_sublist_free(struct km_sublist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* Drops the dead entries, keeping the order of the others. */
static void km_sublist_compact(struct km_sublist *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->dead)
            free(l->v[i]);
        else
            l->v[j++] = l->v[i];
    }
    l->n = j;
    l->ndead = 0;
}

static void km_topic_free(struct km_topic *t);

/* Removes dead subscriptions, and placeholders nobody waits on any more.
   Only when no callback runs: then no loop is walking a list. */
static void km_bus_collect(struct km_bus *bus)
{
    if (bus->depth > 0 || bus->ndead == 0)
        return;
    if (bus->wild.ndead)
        km_sublist_compact(&bus->wild);
    for (size_t i = 0; i < bus->nbuckets; i++) {
        struct km_topic *t = bus->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            if (t->subs.ndead)
                km_sublist_compact(&t->subs);
            if (!t->declared && t->subs.n == 0) {
                km_entry_unlink(bus, t);
                km_topic_free(t);
            }
        }
    }
    bus->ndead = 0;
}

static void km_sub_kill(struct km_sub *sub)
{
    if (sub->dead)
        return;
    sub->dead = true;
    if (sub->topic)
        sub->topic->subs.ndead++;
    else
        sub->bus->wild.ndead++;
    sub->bus->ndead++;
}

static void km_sublist_kill_owner(struct km_sublist *l, const void *owner)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i]->owner == owner)
            km_sub_kill(l->v[i]);
}

/* ---- delivery --------------------------------------------------------------------- */

/* Calls each live subscription of l made before msg was accepted. Indexes,
   not pointers: a callback may subscribe and so move l->v. */
static void km_sublist_deliver(struct km_sublist *l, struct km_msg *msg)
{
    for (size_t i = 0; i < l->n; i++) {
        struct km_sub *s = l->v[i];
        if (!s->dead && s->start < msg->gen &&
            (msg->host == 0 || s->flags & KM_SUB_HOSTS))
            s->cb(msg->topic, msg, s->arg);
    }
}

/*
 * Delivers queued messages until none is left, unless a callback is running
 * already: the outermost bus call does it, after that callback. Returns
 * whether `watch` (may be NULL) was ended by then, read before it is freed.
 */
bool km_bus_flush(struct km_bus *bus, const struct km_sub *watch)
{
    if (bus->depth > 0)
        return watch && watch->dead;
    bus->depth++;
    while (bus->qhead) {
        struct km_msg *msg = bus->qhead;
        bus->qhead = msg->next;
        if (!bus->qhead)
            bus->qtail = NULL;
        msg->next = NULL;
        km_sublist_deliver(&msg->topic->subs, msg);
        km_sublist_deliver(&bus->wild, msg);
        km_msg_unref(msg);
    }
    bus->depth--;
    bool dead = watch && watch->dead;
    km_bus_collect(bus);
    return dead;
}

void km_bus_enqueue(struct km_bus *bus, struct km_msg *msg)
{
    km_msg_ref(msg);
    if (bus->qtail)
        bus->qtail->next = msg;
    else
        bus->qhead = msg;
    bus->qtail = msg;
}

/* ---- the bus ---------------------------------------------------------------------- */

static int64_t km_bus_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t km_bus_epoch(const struct km_bus *bus)
{
    return bus->epoch;
}

struct km_bus *km_bus_new(void)
{
    struct km_bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    bus->nbuckets = KM_HASH_MIN;
    bus->epoch = km_bus_now_us();
    bus->buckets = calloc(bus->nbuckets, sizeof *bus->buckets);
    if (!bus->buckets || km_bus_hosts_init(bus) != KM_OK) {
        free(bus->buckets);
        free(bus);
        return NULL;
    }
    return bus;
}

static void km_topic_free(struct km_topic *t)
{
    km_sublist_free(&t->subs);
    km_msg_unref(t->latest);
    for (unsigned i = 0; i < t->ring_size; i++)
        km_msg_unref(t->ring[i]);
    free(t->ring);
    km_hslots_free(t);
    free(t->description);
    free(t);
}

void km_bus_free(struct km_bus *bus)
{
    if (!bus)
        return;
    while (bus->qhead) {
        struct km_msg *msg = bus->qhead;
        bus->qhead = msg->next;
        km_msg_unref(msg);
    }
    for (size_t i = 0; i < bus->nbuckets; i++) {
        struct km_topic *t = bus->buckets[i], *next;
        for (; t; t = next) {
            next = t->hnext;
            km_topic_free(t);
        }
    }
    km_sublist_free(&bus->wild);
    km_bus_hosts_free(bus);
    free(bus->buckets);
    free(bus->order);
    free(bus);
}

/* Checks a definition; KM_OK or KM_EINVAL. */
static int km_def_check(const struct km_topic_def *def)
{
    if (!def || !km_topic_name_valid(def->name))
        return KM_EINVAL;
    if (def->kind != KM_TOPIC_STATE && def->kind != KM_TOPIC_EVENT)
        return KM_EINVAL;
    if (def->kind == KM_TOPIC_EVENT && def->ring_size > KM_RING_MAX)
        return KM_EINVAL;
    if (km_schema_valid(def->schema) < 0)
        return KM_EINVAL;
    return KM_OK;
}

/* A reloaded plugin re-declares its orphaned topic: same topic, new owner. */
static struct km_topic *km_topic_adopt(struct km_topic *t, const struct km_topic_def *def,
                                       const void *owner, int *err)
{
    char *desc = NULL;
    if (def->description && !(desc = strdup(def->description))) {
        km_set_err(err, KM_ENOMEM);
        return NULL;
    }
    free(t->description);
    t->description = desc;
    t->schema = def->schema;
    t->metrics = def->metrics;
    t->owner = owner;
    t->orphan = false;
    return t;
}

struct km_topic *km_bus_declare(struct km_bus *bus, const struct km_topic_def *def,
                                const void *owner, int *err)
{
    int rc = bus ? km_def_check(def) : KM_EINVAL;
    if (rc != KM_OK) {
        km_set_err(err, rc);
        return NULL;
    }
    struct km_topic *t = km_lookup(bus, def->name);
    if (t && t->declared) {
        if (t->orphan && t->kind == def->kind)
            return km_topic_adopt(t, def, owner, err);
        km_set_err(err, KM_EEXIST);
        return NULL;
    }

    /* Allocate everything first so that a failure leaves no trace. */
    unsigned ring_size = def->ring_size ? def->ring_size : KM_RING_DEFAULT;
    struct km_msg **ring = NULL;
    char *desc = NULL;
    bool fresh = !t;
    struct km_topic **order =
        km_grow(bus->order, bus->ntopics, &bus->cap_topics, sizeof *order);
    if (order)
        bus->order = order;
    if (!order ||
        (def->kind == KM_TOPIC_EVENT && !(ring = calloc(ring_size, sizeof *ring))) ||
        (def->description && !(desc = strdup(def->description))) ||
        (fresh && !(t = km_entry_new(bus, def->name)))) {
        free(ring);
        free(desc);
        km_set_err(err, KM_ENOMEM);
        return NULL;
    }
    t->declared = true;
    t->kind = def->kind;
    t->schema = def->schema;
    t->metrics = def->metrics;
    t->description = desc;
    t->owner = owner;
    t->ring = ring;
    t->ring_size = ring ? ring_size : 0;
    bus->order[bus->ntopics++] = t;
    return t;
}

struct km_topic *km_bus_find(struct km_bus *bus, const char *name)
{
    if (!bus || !name)
        return NULL;
    struct km_topic *t = km_lookup(bus, name);
    return t && t->declared ? t : NULL;
}

void km_bus_foreach(struct km_bus *bus, void (*fn)(struct km_topic *t, void *arg),
                    void *arg)
{
    if (!bus)
        return;
    /* By index: fn may declare topics (and so move bus->order). */
    for (size_t i = 0; i < bus->ntopics; i++)
        fn(bus->order[i], arg);
}

void km_bus_disown(struct km_bus *bus, const void *owner)
{
    if (!bus)
        return;
    for (size_t i = 0; i < bus->ntopics; i++) {
        struct km_topic *t = bus->order[i];
        if (t->orphan || t->owner != owner)
            continue;
        t->orphan = true;
        t->owner = NULL;
        t->schema = NULL; /* it pointed into the unloaded object */
        t->metrics = NULL;
    }
}

/* ---- publish ---------------------------------------------------------------------- */

/* Keeps msg as a state topic's value, or in an event topic's ring. */
static void km_topic_store(struct km_topic *t, struct km_msg *msg)
{
    t->published++;
    if (t->kind == KM_TOPIC_STATE) {
        km_msg_unref(t->latest);
        t->latest = km_msg_ref(msg);
        return;
    }
    msg->seq = ++t->last_seq;
    struct km_msg **slot = &t->ring[(msg->seq - 1) % t->ring_size];
    km_msg_unref(*slot);
    *slot = km_msg_ref(msg);
    if (t->held < t->ring_size)
        t->held++;
}

int km_bus_validate(struct km_topic *t, json_t *body, bool quiet)
{
    char err[KM_ERR_MAX];
    if (km_schema_check(t->schema, body, err, sizeof err) == 0)
        return KM_OK;
    t->rejected++;
    km_bus_stats.rejected++;
    if (!quiet)
        km_log(KM_LOG_WARNING, "topic %s: message refused: %s", t->name, err);
    return KM_ESCHEMA;
}

int km_bus_publish(struct km_topic *topic, json_t *body, const void *publisher)
{
    int rc = KM_OK;
    if (!topic || !topic->declared || !body)
        rc = KM_EINVAL;
    else if (topic->orphan || topic->owner != publisher)
        rc = KM_EOWNER;
    else if (!json_is_object(body))
        rc = KM_EINVAL;
    else
        rc = km_bus_validate(topic, body, false);
    if (rc != KM_OK) {
        json_decref(body);
        return rc;
    }

    struct km_msg *msg = calloc(1, sizeof *msg);
    if (!msg) {
        json_decref(body);
        return KM_ENOMEM;
    }
    struct km_bus *bus = topic->bus;
    msg->refs = 1; /* ours, dropped below once queued and stored */
    msg->body = body;
    msg->topic = topic;
    msg->gen = ++bus->gen;
    msg->time_us = km_bus_clock_us(CLOCK_REALTIME);
    msg->mono_us = km_bus_clock_us(CLOCK_MONOTONIC);
    msg->epoch = bus->epoch;
    bus->hosts[0]->messages++;
    bus->hosts[0]->last_seen_us = msg->time_us;
    bus->hosts[0]->last_seen_mono = msg->mono_us;
    km_topic_store(topic, msg);
    km_bus_stats.messages++;
    km_bus_enqueue(bus, msg);
    km_msg_unref(msg);
    km_bus_flush(bus, NULL);
    return KM_OK;
}

/* ---- subscribe -------------------------------------------------------------------- */

/* One initial value, if the subscription would not otherwise get it. */
static void km_sub_initial_msg(struct km_sub *sub, struct km_topic *t, struct km_msg *msg)
{
    if (sub->dead || !msg || msg->gen > sub->start)
        return;
    /* Hold it: the callback may publish and so replace the latest value. */
    km_msg_ref(msg);
    sub->cb(t, msg, sub->arg);
    km_msg_unref(msg);
}

/* The initial values of state topic t for a new subscription: this host's,
   then (KM_SUB_HOSTS) each remote host's. */
static void km_sub_initial(struct km_sub *sub, struct km_topic *t)
{
    if (!t->declared || t->kind != KM_TOPIC_STATE)
        return;
    km_sub_initial_msg(sub, t, t->latest);
    if (sub->flags & KM_SUB_HOSTS)
        km_hslots_initial(sub, t, km_sub_initial_msg);
}

struct km_sub *km_bus_subscribe(struct km_bus *bus, const char *name, km_msg_cb cb,
                                void *arg, const void *owner)
{
    return km_bus_subscribe_ex(bus, name, cb, arg, owner, 0);
}

struct km_sub *km_bus_subscribe_ex(struct km_bus *bus, const char *name, km_msg_cb cb,
                                   void *arg, const void *owner, unsigned flags)
{
    bool wild = name && strcmp(name, "*") == 0;
    if (!bus || !cb || (!wild && !km_topic_name_valid(name)))
        return NULL;
    struct km_topic *t = wild ? NULL : km_lookup(bus, name);
    bool fresh = !wild && !t;
    if (fresh && !(t = km_entry_new(bus, name)))
        return NULL;
    struct km_sublist *l = wild ? &bus->wild : &t->subs;
    struct km_sub **v = km_grow(l->v, l->n, &l->cap, sizeof *v);
    if (v)
        l->v = v;
    struct km_sub *sub = v ? calloc(1, sizeof *sub) : NULL;
    if (!sub) {
        free(sub);
        if (fresh) {
            km_entry_unlink(bus, t);
            km_topic_free(t);
        }
        return NULL;
    }
    *sub = (struct km_sub){.bus = bus,
                           .topic = t,
                           .cb = cb,
                           .arg = arg,
                           .owner = owner,
                           .start = bus->gen,
                           .flags = flags};
    l->v[l->n++] = sub;

    bus->depth++;
    if (wild) {
        /* n fixed up front: topics declared by the callbacks have no value
           older than this subscription. */
        size_t n = bus->ntopics;
        for (size_t i = 0; i < n; i++)
            km_sub_initial(sub, bus->order[i]);
    } else {
        km_sub_initial(sub, t);
    }
    bus->depth--;
    /* Deliver what the callbacks published; one of them may end sub. */
    return km_bus_flush(bus, sub) ? NULL : sub;
}

void km_bus_unsubscribe(struct km_sub *sub)
{
    if (!sub)
        return;
    km_sub_kill(sub);
    km_bus_collect(sub->bus);
}

void km_bus_unsubscribe_owner(struct km_bus *bus, const void *owner)
{
    if (!bus)
        return;
    km_sublist_kill_owner(&bus->wild, owner);
    for (size_t i = 0; i < bus->nbuckets; i++)
        for (struct km_topic *t = bus->buckets[i]; t; t = t->hnext)
            km_sublist_kill_owner(&t->subs, owner);
    km_bus_collect(bus);
}

/* ---- replay ----------------------------------------------------------------------- */

int km_bus_replay(struct km_topic *topic, uint64_t since, km_msg_cb cb, void *arg)
{
    if (!topic || !topic->declared || !cb)
        return KM_EINVAL;
    if (topic->kind != KM_TOPIC_EVENT)
        return KM_EKIND;
    uint64_t oldest = km_topic_oldest_seq(topic);
    if (topic->held == 0 || since >= topic->last_seq)
        return 0;
    uint64_t from = since + 1 > oldest ? since + 1 : oldest;
    size_t n = (size_t)(topic->last_seq - from + 1);

    /* Take the set (with references) before calling anyone: a callback may
       publish on this topic and so overwrite ring slots. */
    struct km_msg **snap = malloc(n * sizeof *snap);
    if (!snap)
        return KM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        snap[i] = km_msg_ref(topic->ring[(from + i - 1) % topic->ring_size]);

    struct km_bus *bus = topic->bus;
    bus->depth++;
    for (size_t i = 0; i < n; i++)
        cb(topic, snap[i], arg);
    bus->depth--;
    for (size_t i = 0; i < n; i++)
        km_msg_unref(snap[i]);
    free(snap);
    km_bus_flush(bus, NULL);
    return since + 1 < oldest ? KM_EGONE : (int)n;
}

/* ---- topic accessors -------------------------------------------------------------- */

const char *km_topic_name(const struct km_topic *t)
{
    return t->name;
}

enum km_topic_kind km_topic_kind(const struct km_topic *t)
{
    return t->kind;
}

const struct km_field *km_topic_schema(const struct km_topic *t)
{
    return t->schema;
}

const struct km_metric *km_topic_metrics(const struct km_topic *t)
{
    return t->metrics;
}

const char *km_topic_description(const struct km_topic *t)
{
    return t->description;
}

uint64_t km_topic_last_seq(const struct km_topic *t)
{
    return t->last_seq;
}

uint64_t km_topic_oldest_seq(const struct km_topic *t)
{
    return t->held ? t->last_seq - t->held + 1 : 0;
}

unsigned km_topic_ring_size(const struct km_topic *t)
{
    return t->ring_size;
}

uint64_t km_topic_published(const struct km_topic *t)
{
    return t->published;
}

uint64_t km_topic_rejected(const struct km_topic *t)
{
    return t->rejected;
}

struct km_msg *km_topic_latest(const struct km_topic *t)
{
    return t->latest;
}

json_t *km_topic_schema_json(const struct km_topic *t)
{
    return km_schema_json(t->schema);
}
