/*
 * bus_int.h - what the files of the bus share (bus.c: topics, local
 * publish, subscriptions, delivery; bus_host.c: hosts, remote publish,
 * per-host values and rings). Not for the rest of the core: bus.h is the
 * contract.
 */
#ifndef KM_BUS_INT_H
#define KM_BUS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bus.h"

#define KM_RING_DEFAULT 256 /* event ring when the definition says 0 */
/* Larger rings are refused: one plugin must not make the daemon reserve
   unbounded memory up front. */
#define KM_RING_MAX 65536
#define KM_HASH_MIN 16  /* initial buckets (a power of two) */
#define KM_ERR_MAX  512 /* validation error text */

/* One remote host's messages on one topic. */
struct km_hslot {
    struct km_msg *latest; /* state: its latest value (a reference); NULL none */
    struct km_msg **ring;  /* event: seq s at (s - 1) % ring_size; holes where
                              seqs were missed; NULL until its first event */
    uint64_t last_seq;     /* event: its newest seq in epoch; 0 none */
    int64_t epoch;         /* the epoch of what is held; 0 nothing yet */
};

/* What the bus knows of one host (struct km_bus_host is its public view). */
struct km_hostrec {
    char name[KM_HOST_NAME_MAX + 1]; /* its name */
    int64_t epoch;                   /* its bus epoch; 0 before its first message */
    int64_t last_seen_us;            /* wall clock of its last accepted message */
    int64_t last_seen_mono;          /* CLOCK_MONOTONIC µs of the same */
    uint64_t messages;               /* accepted from it */
    uint64_t refused;                /* refused (schema, kind, stale) */
    uint64_t gaps;                   /* event seq jumps */
    uint64_t missed;                 /* event messages the jumps skipped */
    uint64_t restarts;               /* newer epochs after its first message */
    bool forgotten;                  /* km_bus_host_forget'ed, silent since */
};

/* An immutable, reference-counted published message. */
struct km_msg {
    unsigned refs;              /* references; freed at zero */
    json_t *body;               /* the message (owned; read-only once published) */
    struct km_topic *topic;     /* published on (borrowed; lives as long as the bus) */
    uint64_t seq;               /* event topics: 1, 2, ...; 0 on state topics */
    int host;                   /* publishing host: 0 this one, else a remote index */
    int64_t epoch;              /* that host's bus epoch, µs */
    uint64_t gen;               /* bus-wide acceptance number: picks its receivers */
    int64_t time_us;            /* CLOCK_REALTIME at publish, µs */
    int64_t mono_us;            /* CLOCK_MONOTONIC at publish, µs */
    char *text;                 /* compact JSON, made by the first km_msg_text */
    size_t text_len;            /* strlen(text) */
    void *cache;                /* the transport's slot (owned once set) */
    void (*cache_free)(void *); /* frees cache; NULL: nothing to free */
    struct km_msg *next;        /* next in the bus's delivery queue */
};

/* Subscriptions of one topic, or the bus's "*" ones, in subscription order. */
struct km_sublist {
    struct km_sub **v; /* the subscriptions */
    size_t n;          /* entries used */
    size_t cap;        /* entries allocated */
    size_t ndead;      /* ended, waiting for removal */
};

/* One subscription. */
struct km_sub {
    struct km_bus *bus;     /* the bus it belongs to */
    struct km_topic *topic; /* whose list holds it; NULL: the "*" list */
    km_msg_cb cb;           /* called for each message */
    void *arg;              /* passed to cb */
    const void *owner;      /* tag for km_bus_unsubscribe_owner */
    uint64_t start;         /* bus->gen when made: gets messages with gen > start */
    unsigned flags;         /* KM_SUB_*: KM_SUB_HOSTS gets remote hosts' messages */
    bool dead;              /* ended; freed once no callback is running */
};

/* A topic, or a placeholder holding early subscribers (declared false). */
struct km_topic {
    struct km_bus *bus;               /* the bus it belongs to */
    struct km_topic *hnext;           /* next in its hash bucket */
    uint32_t hash;                    /* of name, kept for rehashing */
    char name[KM_TOPIC_NAME_MAX + 1]; /* its name */
    bool declared;                    /* false: placeholder, not visible as a topic */
    bool orphan;                      /* owner unloaded: nobody may publish */
    enum km_topic_kind kind;          /* state or event */
    const struct km_field *schema;    /* borrowed from the owner; NULL: any object */
    const struct km_metric *metrics;  /* borrowed from the owner; NULL: derived */
    char *description;                /* owned copy; may be NULL */
    const void *owner;                /* the only allowed publisher; NULL: the core */
    struct km_sublist subs;           /* its own subscriptions */
    struct km_msg *latest;            /* state: current value (a reference) */
    struct km_msg **ring;             /* event: seq s in slot (s - 1) % ring_size */
    unsigned ring_size;               /* event: slots in ring; 0 on state topics */
    unsigned held;                    /* event: messages in the ring */
    uint64_t last_seq;                /* event: seq of the newest message; 0 none */
    uint64_t published;               /* messages accepted */
    uint64_t rejected;                /* messages refused by validation */
    struct km_hslot *hs;              /* remote host h's messages at hs[h - 1] */
    size_t nhs;                       /* entries of hs (grows with the hosts) */
};

/* The bus. */
struct km_bus {
    struct km_topic **buckets; /* hash table of topics and placeholders, chained */
    size_t nbuckets;           /* a power of two */
    size_t nentries;           /* topics + placeholders in the table */
    struct km_topic **order;   /* declared topics, in declaration order */
    size_t ntopics;            /* entries used in order */
    size_t cap_topics;         /* entries allocated in order */
    struct km_sublist wild;    /* "*" subscriptions */
    uint64_t gen;              /* messages accepted so far, all topics */
    struct km_msg *qhead;      /* accepted, not yet delivered (one ref each) */
    struct km_msg *qtail;      /* last of that queue, for appending */
    unsigned depth;            /* callbacks running: defers delivery, removal */
    size_t ndead;              /* dead subscriptions not yet removed, all lists */
    int64_t epoch;             /* wall-clock µs at creation: names this run's seqs */
    struct km_hostrec **hosts; /* hosts[0] this one, then remote ones (each owned) */
    unsigned nhosts;           /* entries of hosts (>= 1) */
    unsigned max_hosts;        /* nhosts may not pass it */
};

/* ---- bus.c, for bus_host.c ---- */

/* CLOCK_* now, µs. */
int64_t km_bus_clock_us(clockid_t clock);
/* Validates body against t's schema; on a mismatch counts it (topic and
   process-wide), logs it unless quiet, and returns KM_ESCHEMA. Remote
   messages are quiet: a bad host could send thousands a second, and the
   bridge that received them logs once per burst. */
int km_bus_validate(struct km_topic *t, json_t *body, bool quiet);
/* Queues msg (a reference taken) for delivery after the messages before it. */
void km_bus_enqueue(struct km_bus *bus, struct km_msg *msg);
/* Delivers what is queued unless a callback runs (see bus.c). Returns
   whether `watch` (may be NULL) was ended by then. */
bool km_bus_flush(struct km_bus *bus, const struct km_sub *watch);

/* Replays snap (n messages of topic, a reference each, in a malloc'ed
   array) to cb as one delivery: nested publishes wait until it is over.
   Frees snap and drops its references. */
void km_bus_replay_snapshot(struct km_topic *topic, struct km_msg **snap, size_t n,
                            km_msg_cb cb, void *arg);

/* ---- bus_host.c, for bus.c ---- */

/* Makes hosts[0] ("localhost"): 0 or KM_ENOMEM. */
int km_bus_hosts_init(struct km_bus *bus);
/* Frees every host record. */
void km_bus_hosts_free(struct km_bus *bus);
/* Frees t's remote slots and what they hold. */
void km_hslots_free(struct km_topic *t);
/* Calls the initial-value delivery fn(sub, msg) for each remote host's
   latest value of state topic t, in host order. */
void km_hslots_initial(struct km_sub *sub, struct km_topic *t,
                       void (*fn)(struct km_sub *sub, struct km_topic *t,
                                  struct km_msg *msg));

#endif /* KM_BUS_INT_H */
