/*
 * bus.h - the typed topic bus (DESIGN section 4).
 *
 * A bus holds named topics. A topic has a kind (state or event) and a type
 * (a km_field schema). km_bus_publish() validates a message against the
 * type, wraps it in an immutable, reference-counted struct km_msg, stores it
 * (latest value, or the event ring), and calls every subscriber in order.
 *
 * Ownership:
 *   - Topics are owned by the bus and live until km_bus_free().
 *   - Subscriptions are owned by the bus; km_bus_unsubscribe() ends one.
 *   - Messages are reference-counted: the bus holds one reference for the
 *     latest value / each ring slot; a consumer that keeps a message past
 *     its callback takes its own with km_msg_ref().
 *   - The JSON text of a message is produced at most once (km_msg_text) and
 *     shared by every reader; km_bus_stats.json_encodes counts encodings.
 *
 * Delivery order (bus-wide FIFO): messages reach subscribers in the order
 * they were accepted, across all topics. A topic's own subscribers are
 * called first, in subscription order, then the "*" subscribers, in
 * subscription order. A publish made from inside a callback the bus is
 * running (delivery, the initial state value, replay) is accepted, stored
 * (latest value / ring, seq) and returns at once; its delivery starts when
 * the current callback has returned and every earlier message has been
 * delivered, before the outermost bus call returns. So no callback is ever
 * re-entered by a nested publish and every subscriber sees each topic's
 * messages in seq order. A subscription gets exactly the messages accepted
 * after it was made (plus, for state topics, the value current when it was
 * made, delivered inside km_bus_subscribe).
 *
 * Not thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_BUS_H
#define KM_BUS_H

#include <stdint.h>
#include <stddef.h>
#include <jansson.h>
#include <katomon/plugin.h>

struct km_bus;

/*
 * How the daemon writes JSON: compact, and reals with 15 significant digits,
 * so 0.07 goes out as 0.07 rather than 0.070000000000000007 (17 digits
 * round-trip a double exactly but show its binary noise to every reader).
 */
#define KM_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* Process-wide counters, for tests and GET /api/v1/topics. */
struct km_bus_stats {
    uint64_t json_encodes; /* km_msg_text() encodings actually performed */
    uint64_t messages;     /* messages published (accepted) */
    uint64_t rejected;     /* messages refused by validation */
};
extern struct km_bus_stats km_bus_stats;

/* Topic names: km_topic_name_valid and KM_TOPIC_NAME_MAX, in
   <katomon/util.h> (the same rule for the core and the plugins). */
#include <katomon/util.h>

/* ---- bus ---- */

/* New bus, or NULL on ENOMEM. */
struct km_bus *km_bus_new(void);
/* Frees the bus, its topics, subscriptions and retained messages. Not from a
   callback. Messages still referenced elsewhere stay valid, but their
   km_msg_topic() then dangles. */
void km_bus_free(struct km_bus *bus);
/*
 * The bus's creation time (wall-clock µs). Event seqs start again at 1 in
 * every run of the daemon; (epoch, seq) is unique, so a client that sees a
 * new epoch knows its seqs belong to an earlier run.
 */
int64_t km_bus_epoch(const struct km_bus *bus);

/*
 * Declares a topic. `owner` identifies the declaring party (a plugin's
 * km_ctx, or NULL for the core); only the owner may publish. def->schema is
 * borrowed and must outlive the bus (or the owner's unload, see
 * km_bus_disown). Returns the topic (borrowed) or NULL with *err set:
 * KM_EINVAL (bad name or kind, ring_size > 65536, or a schema with an
 * unknown kind or nested deeper than 32 levels), KM_EEXIST, KM_ENOMEM.
 * Declaring the name of an orphaned topic (see km_bus_disown) with the
 * same kind adopts it: the same topic is returned with the new owner,
 * schema and description; seq numbers, retained messages, the ring size
 * and subscribers carry on. err may be NULL.
 */
struct km_topic *km_bus_declare(struct km_bus *bus, const struct km_topic_def *def,
                                const void *owner, int *err);
/* A declared topic by name (borrowed), or NULL. */
struct km_topic *km_bus_find(struct km_bus *bus, const char *name);
/* Calls fn for each declared topic, in declaration order. */
void km_bus_foreach(struct km_bus *bus, void (*fn)(struct km_topic *t, void *arg),
                    void *arg);
/*
 * The owner goes away (plugin unloaded): its topics stay (subscribers keep
 * their handles) but lose their owner and their schema pointer (which lived
 * in the unloaded object); they keep their retained messages. Such an
 * orphaned topic is read-only: every publish (the core's, owner NULL,
 * included) gets KM_EOWNER until someone declares the name again and so
 * adopts it (a reloaded plugin). Subscriptions are not touched: see
 * km_bus_unsubscribe_owner.
 */
void km_bus_disown(struct km_bus *bus, const void *owner);

/*
 * Publishes `body` (a JSON object) on `topic` as `publisher`. Steals body,
 * always. Returns KM_OK, KM_ESCHEMA (refused: one log line naming the
 * topic and the first mismatching path, topic's rejected counter + 1),
 * KM_EOWNER (publisher is not the owner, or the topic is orphaned),
 * KM_EINVAL (NULL topic, body not an object) or KM_ENOMEM. Only KM_ESCHEMA
 * is logged here; callers report the others (they are caller bugs).
 * Nothing is stored or delivered unless KM_OK.
 */
int km_bus_publish(struct km_topic *topic, json_t *body, const void *publisher);

/*
 * Subscribes to `name` ("*": every topic, including ones declared later).
 * The topic need not be declared yet. For a state topic with a value, cb
 * runs once with it before this returns ("*": once per state topic that
 * has a value, in declaration order). `owner` tags the subscription
 * for km_bus_unsubscribe_owner. Returns a borrowed handle, valid until
 * km_bus_unsubscribe(); NULL on ENOMEM, a NULL cb, a name that is neither
 * "*" nor a valid topic name, or when the subscription was ended by the
 * callback itself during that initial delivery (km_bus_unsubscribe_owner).
 */
struct km_sub *km_bus_subscribe(struct km_bus *bus, const char *name, km_msg_cb cb,
                                void *arg, const void *owner);
/* Ends a subscription; cb is never called again. Safe during delivery (the
   handle itself is freed once the running delivery is over). NULL is fine. */
void km_bus_unsubscribe(struct km_sub *sub);
/* Ends every subscription made with `owner`. */
void km_bus_unsubscribe_owner(struct km_bus *bus, const void *owner);

/*
 * Event topics: calls cb for every retained message with seq > since, in
 * order. Returns the number replayed, KM_EGONE when since + 1 is older than
 * the ring's oldest message (the ones still held are replayed anyway, so
 * the caller can deliver them and signal the gap), KM_EKIND on a state topic,
 * KM_EINVAL on a NULL topic or cb, KM_ENOMEM. since >= the last seq replays
 * nothing and returns 0. The set replayed is fixed when the call starts:
 * publishing from cb neither extends nor cuts it.
 */
int km_bus_replay(struct km_topic *topic, uint64_t since, km_msg_cb cb, void *arg);

/* ---- hosts (issue 15) ----
 *
 * The bus keeps each topic's messages per host. Host 0 is this one (its
 * name set with km_bus_set_host); 1, 2, ... are remote hosts, added by
 * km_bus_publish_remote in the order of their first message, at most
 * max_hosts in all. A host record lives as long as the bus, so an index
 * stays valid; memory: per remote host, per topic, one latest value or one
 * ring of the topic's ring_size.
 *
 * Delivery: a subscription made with km_bus_subscribe gets host 0's
 * messages only (so a plugin that evaluates this host's data never sees
 * another's); one made with KM_SUB_HOSTS gets every host's. "*" included.
 * Local messages carry this bus's epoch and seqs; remote ones the epoch and
 * seq their host gave them.
 */

/* Default and largest max_hosts (this host included). */
#define KM_HOSTS_DEFAULT 64
#define KM_HOSTS_MAX     1024

/* What the bus knows of one host (km_bus_host_info). */
struct km_bus_host {
    const char *name;       /* borrowed from the bus */
    int64_t epoch;          /* its bus epoch, µs (this bus's for host 0) */
    int64_t last_seen_us;   /* wall clock of its last accepted message; 0 never */
    int64_t last_seen_mono; /* CLOCK_MONOTONIC µs of the same; 0 never */
    uint64_t messages;      /* messages accepted from it */
    uint64_t refused;       /* refused: schema, kind, stale seq or epoch */
    uint64_t gaps;          /* event seq jumps seen (seq > last + 1) */
    uint64_t missed;        /* event messages those jumps skipped */
    uint64_t restarts;      /* newer epochs seen after its first message */
    int forgotten;          /* km_bus_host_forget'ed, and silent since */
};

/* Names this host (copied): 0, or KM_EINVAL (not km_host_name_valid).
   Set it before any remote host arrives. Default: "localhost". */
int km_bus_set_host(struct km_bus *bus, const char *name);
/* Caps the host count (this host included; 1..KM_HOSTS_MAX); hosts already
   known stay. */
void km_bus_set_max_hosts(struct km_bus *bus, unsigned n);
/* Hosts known (>= 1: this host is 0). */
unsigned km_bus_host_count(const struct km_bus *bus);
/* The name of host h (borrowed, valid while the bus lives), or NULL. */
const char *km_bus_host_name(const struct km_bus *bus, int h);
/* The index of host `name`, or -1. */
int km_bus_host_find(const struct km_bus *bus, const char *name);
/* Fills *out for host h: 0, or KM_EINVAL (no such host). */
int km_bus_host_info(const struct km_bus *bus, int h, struct km_bus_host *out);
/*
 * Forgets remote host h (>= 1; a host retired or renamed): drops every
 * value and event the bus holds from it, so nothing serves them any more,
 * and marks it forgotten. Its record (name, index, counters) stays, and its
 * next accepted message brings it back as at first sight (not counted as a
 * gap). KM_OK, or KM_EINVAL for host 0 or no such host.
 */
int km_bus_host_forget(struct km_bus *bus, int h);

/*
 * Publishes a message that host r->host published on its own bus (a
 * bridge's receipt). Steals body, always. Checks, in order: KM_EINVAL (NULL
 * topic or body, an undeclared topic, body not an object, r->host not a
 * host name or this host's name, r->epoch <= 0, seq 0 on an event topic),
 * KM_EOWNER (orphaned topic), KM_EKIND (r->kind differs from the topic's),
 * KM_EFULL (a new host past max_hosts), KM_ESTALE (an epoch older than
 * the host's, or an event seq <= the last one of that host on this topic in
 * this epoch), KM_ESCHEMA (not logged: the caller logs, once per burst),
 * KM_ENOMEM. Every
 * refusal of a known host counts in its `refused`; KM_ESCHEMA also in the
 * topic's rejected. A newer epoch: the host restarted (restarts + 1) and
 * its sequences on each topic start again. On KM_OK the message's time is
 * r->time_us (its mono time is now) and it reaches KM_SUB_HOSTS subscribers.
 */
int km_bus_publish_remote(struct km_topic *topic, json_t *body,
                          const struct km_remote *r);

/* km_bus_subscribe_ex flags. */
#define KM_SUB_HOSTS (1u << 0) /* every host's messages, not only this host's */

/* km_bus_subscribe with flags (KM_SUB_*). With KM_SUB_HOSTS the initial
   values of a state topic are each host's latest, host 0 first. */
struct km_sub *km_bus_subscribe_ex(struct km_bus *bus, const char *name, km_msg_cb cb,
                                   void *arg, const void *owner, unsigned flags);

/* ---- topics ---- */

const char *km_topic_name(const struct km_topic *t); /* borrowed */
enum km_topic_kind km_topic_kind(const struct km_topic *t);
const struct km_field *
km_topic_schema(const struct km_topic *t);                  /* borrowed, may be NULL */
const char *km_topic_description(const struct km_topic *t); /* borrowed, may be NULL */
/* The topic's series table (struct km_metric, borrowed), or NULL. */
const struct km_metric *km_topic_metrics(const struct km_topic *t);
uint64_t km_topic_last_seq(const struct km_topic *t); /* event: last seq; 0 none */
uint64_t
km_topic_oldest_seq(const struct km_topic *t);         /* event: oldest in ring; 0 none */
unsigned km_topic_ring_size(const struct km_topic *t); /* event; 0 on state topics */
uint64_t km_topic_published(const struct km_topic *t); /* accepted messages */
uint64_t km_topic_rejected(const struct km_topic *t);  /* refused messages */
/* State topics: the current value (borrowed), or NULL. Always NULL on event
   topics (they have no current value: use km_bus_replay). */
struct km_msg *km_topic_latest(const struct km_topic *t);
/*
 * Per host (h as km_bus_host_find; h 0 is what the functions above say).
 * latest: host h's value of a state topic (borrowed) or NULL. last_seq,
 * oldest_seq: host h's event sequence (0: none held; a remote host's ring
 * may have holes where seqs were missed, so oldest is the oldest held).
 * epoch: the epoch of host h's messages held on this topic (0: none).
 * replay: as km_bus_replay over host h's ring (messages missed on the
 * way are skipped); KM_EINVAL for an unknown host.
 */
struct km_msg *km_topic_latest_host(const struct km_topic *t, int h);
uint64_t km_topic_last_seq_host(const struct km_topic *t, int h);
uint64_t km_topic_oldest_seq_host(const struct km_topic *t, int h);
int64_t km_topic_epoch_host(const struct km_topic *t, int h);
int km_bus_replay_host(struct km_topic *topic, int h, uint64_t since, km_msg_cb cb,
                       void *arg);

/* Renders the schema as JSON for GET /api/v1/topics (km_schema_json; no
   schema: {"type":"object"}). New reference, NULL on ENOMEM. */
json_t *km_topic_schema_json(const struct km_topic *t);

/* ---- messages ---- */

/* Returns msg with one more reference. */
struct km_msg *km_msg_ref(struct km_msg *msg);
/* Drops one reference; frees at zero (NULL is fine). */
void km_msg_unref(struct km_msg *msg);
/* The body. Borrowed while msg is held; must not be modified. */
json_t *km_msg_json(const struct km_msg *msg);
/* Event seq (1, 2, ...); 0 on a state topic. */
uint64_t km_msg_seq(const struct km_msg *msg);
/* The topic it was published on (borrowed; valid while the bus lives). */
struct km_topic *km_msg_topic(const struct km_msg *msg);
/* The host that published it: index (0: this one), and name (borrowed,
   valid while the bus lives). */
int km_msg_host(const struct km_msg *msg);
const char *km_msg_host_name(const struct km_msg *msg);
/* Its host's bus epoch (km_bus_epoch for this host's messages). */
int64_t km_msg_epoch(const struct km_msg *msg);
/* Publish time: wall clock (µs since the epoch) and CLOCK_MONOTONIC (µs). */
int64_t km_msg_time_us(const struct km_msg *msg);
int64_t km_msg_mono_us(const struct km_msg *msg);
/*
 * The body as compact JSON text, encoded on the first call and cached.
 * Borrowed while msg is held. NULL on ENOMEM. *len gets its length.
 */
const char *km_msg_text(struct km_msg *msg, size_t *len);
/*
 * One opaque cache slot for the transport (e.g. the pre-built WebSocket
 * frame of an event). set: stores p (owned by the message from then on;
 * free_fn(p) runs when the message is freed or the slot is replaced).
 */
void *km_msg_cache(const struct km_msg *msg);
void km_msg_set_cache(struct km_msg *msg, void *p, void (*free_fn)(void *));

/* ---- schema validation (also usable alone) ---- */

/*
 * Checks `value` against object schema `fields` (NULL-name terminated).
 * Returns 0 when it matches; otherwise -1 and a message such as
 * "containers[2].memory.usage_bytes: expected number, got string" in err.
 */
int km_schema_check(const struct km_field *fields, json_t *value, char *err,
                    size_t errlen);
/*
 * Checks a schema itself: 0 when every kind is known and nesting is at most
 * 32 levels deep (so a cyclic table is refused); -1 otherwise. NULL is valid.
 */
int km_schema_valid(const struct km_field *fields);
/*
 * The object schema `fields` as JSON Schema (the subset km_field can say:
 * type, properties, required, additionalProperties, items, nullable as
 * ["kind", "null"], any as {}). New reference; NULL on ENOMEM.
 */
json_t *km_schema_json(const struct km_field *fields);

#endif /* KM_BUS_H */
