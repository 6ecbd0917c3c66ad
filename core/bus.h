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
 * Not thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_BUS_H
#define KM_BUS_H

#include <stdint.h>
#include <stddef.h>
#include <jansson.h>
#include <katomon/plugin.h>

struct km_bus;

/* Process-wide counters, for tests and GET /api/v1/topics. */
struct km_bus_stats {
    uint64_t json_encodes; /* km_msg_text() encodings actually performed */
    uint64_t messages;     /* messages published (accepted) */
    uint64_t rejected;     /* messages refused by validation */
};
extern struct km_bus_stats km_bus_stats;

/* ---- bus ---- */

/* New bus, or NULL on ENOMEM. */
struct km_bus *km_bus_new(void);
/* Frees the bus, its topics, subscriptions and retained messages. */
void km_bus_free(struct km_bus *bus);

/*
 * Declares a topic. `owner` identifies the declaring party (a plugin's
 * km_ctx, or NULL for the core); only the owner may publish. def->schema is
 * borrowed and must outlive the bus (or the owner's unload, see
 * km_bus_disown). Returns the topic (borrowed) or NULL with *err set:
 * KM_EINVAL (bad name or kind), KM_EEXIST, KM_ENOMEM.
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
 * in the unloaded object); they keep their retained messages.
 */
void km_bus_disown(struct km_bus *bus, const void *owner);

/*
 * Publishes `body` (a JSON object) on `topic` as `publisher`. Steals body,
 * always. Returns KM_OK, KM_ESCHEMA (refused: one log line naming the
 * topic and the first mismatching path, topic's rejected counter + 1),
 * KM_EOWNER (publisher is not the owner), KM_EINVAL (not an object) or
 * KM_ENOMEM.
 */
int km_bus_publish(struct km_topic *topic, json_t *body, const void *publisher);

/*
 * Subscribes to `name` ("*": every topic, including ones declared later).
 * The topic need not be declared yet. For a state topic with a value, cb
 * runs once with it before this returns. `owner` tags the subscription
 * for km_bus_unsubscribe_owner. Returns a borrowed handle, NULL on ENOMEM.
 */
struct km_sub *km_bus_subscribe(struct km_bus *bus, const char *name, km_msg_cb cb,
                                void *arg, const void *owner);
/* Ends a subscription; cb is never called again. Safe during delivery. */
void km_bus_unsubscribe(struct km_sub *sub);
/* Ends every subscription made with `owner`. */
void km_bus_unsubscribe_owner(struct km_bus *bus, const void *owner);

/*
 * Event topics: calls cb for every retained message with seq > since, in
 * order. Returns the number replayed, KM_EGONE when since + 1 is older than
 * the ring's oldest message (the ones still held are replayed anyway, so
 * the caller can deliver them and signal the gap), KM_EKIND on a state topic.
 */
int km_bus_replay(struct km_topic *topic, uint64_t since, km_msg_cb cb, void *arg);

/* ---- topics ---- */

const char *km_topic_name(const struct km_topic *t);          /* borrowed */
enum km_topic_kind km_topic_kind(const struct km_topic *t);
const struct km_field *km_topic_schema(const struct km_topic *t); /* borrowed, may be NULL */
const char *km_topic_description(const struct km_topic *t);   /* borrowed, may be NULL */
uint64_t km_topic_last_seq(const struct km_topic *t);         /* event: last seq; 0 none */
uint64_t km_topic_oldest_seq(const struct km_topic *t);       /* event: oldest in ring; 0 none */
unsigned km_topic_ring_size(const struct km_topic *t);
uint64_t km_topic_published(const struct km_topic *t);        /* accepted messages */
uint64_t km_topic_rejected(const struct km_topic *t);         /* refused messages */
struct km_msg *km_topic_latest(const struct km_topic *t);     /* borrowed, may be NULL */
/* Renders the schema as JSON for GET /api/v1/topics. New reference. */
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
/* The topic it was published on (borrowed). */
struct km_topic *km_msg_topic(const struct km_msg *msg);
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

#endif /* KM_BUS_H */
