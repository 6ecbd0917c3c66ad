/*
 * series.h - numeric series: every number of every state topic, by name
 * and labels (DESIGN section 9; issue 14).
 *
 * The registry reads every state topic of the bus. km_series_collect walks
 * the latest message of each state topic that published since the last
 * walk, with the topic's schema and km_metric table (katomon/plugin.h):
 * every number becomes the latest value of one series, a family name
 * ("katomon_container_cpu_percent") plus a label set (container="kato").
 * So the work is once per topic per reader (a scrape, a history sample),
 * however fast a topic publishes, and publishing itself costs nothing
 * more. katomon's own figures come in through collectors, which
 * km_series_collect runs after the walk.
 *
 * Hosts (issue 15): each host's latest value of a state topic is walked
 * on its own. A remote host's series are that topic's series with the
 * label host="NAME" added (sorted in with the others, as every label is);
 * this host's carry no host label, as before. The core's "hosts" topic is
 * walked for this host only. Remote series count against max_series like
 * any other, and history samples them.
 *
 * A series is live while the latest message of its topic holds it. A
 * series the latest message no longer holds (a container that went away,
 * a source that failed) is stale: it keeps its last value and history but
 * is no longer exported or sampled. The history store drops a stale series
 * once its last point has aged out of every tier (km_series_drop).
 *
 * The number of series is capped (max_series): a series past the cap is
 * not created and counted in km_series_refused(), with one warning each
 * time the cap is first hit (again only after the count fell below it).
 *
 * Label text: a series' labels are kept as the exposition format writes
 * them, sorted by label name: `container="kato",level="error"` ("" when
 * none). Values are escaped as the text format wants (\\, \" and \n).
 *
 * Ownership: the registry owns families and series; pointers to them are
 * borrowed and stay valid until km_series_drop() or km_series_reg_free().
 * Not thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_SERIES_H
#define KM_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "bus.h"

/* Longest family name, and longest label text, in bytes. */
#define KM_SERIES_NAME_MAX   160
#define KM_SERIES_LABELS_MAX 512

/* Prometheus metric types katomon exports. */
enum km_series_type {
    KM_SERIES_GAUGE = 0, /* a value that goes up and down */
    KM_SERIES_COUNTER,   /* only grows (restarts at 0 when its source does) */
};

struct km_series;
struct km_series_reg;

/* One metric name and everything with that name. */
struct km_family {
    char *name;               /* "katomon_container_cpu_percent" (owned) */
    char *help;               /* HELP text, one line (owned) */
    enum km_series_type type; /* gauge or counter */
    struct km_series *first;  /* its series, in creation order */
    struct km_series *last;   /* the last of them, for appending */
    size_t nseries;           /* how many */
    struct km_family *next;   /* next family, in creation order */
    struct km_family *hnext;  /* next in its hash bucket */
};

/* One series: a family and a label set. */
struct km_series {
    struct km_family *family;     /* its family (borrowed from the registry) */
    char *labels;                 /* canonical label text, "" when none (owned) */
    double value;                 /* latest value */
    int64_t time_us;              /* when value was set (wall clock, µs); 0: never */
    int live;                     /* 1: its source's latest message holds it */
    const struct km_topic *topic; /* the topic that feeds it; NULL: a collector's
                                     or loaded from the history file */
    int host;                     /* the host whose value of topic feeds it (0:
                                     this host); meaningful while topic is set */
    uint64_t seen;                /* walk number of its topic when last set */
    struct km_series *tnext;      /* next series fed by the same topic */
    void *hist;                   /* the history store's data (history.c owns it) */
    struct km_series *next;       /* next of its family */
    struct km_series *hnext;      /* next in its hash bucket */
};

/* A collector of katomon's own figures: sets series with km_series_get and
   km_series_set each time it is called. */
typedef void (*km_series_collector)(struct km_series_reg *reg, void *arg);

/* ---- the registry ---- */

/* New registry holding at most max_series series (0: no limit); NULL on ENOMEM. */
struct km_series_reg *km_series_reg_new(size_t max_series);
/* Frees it: every family and series (each series' drop hook runs first). */
void km_series_reg_free(struct km_series_reg *reg);
/* Reads the state topics of `bus` from now on (borrowed: call
   km_series_detach before freeing the bus). */
void km_series_attach(struct km_series_reg *reg, struct km_bus *bus);
void km_series_detach(struct km_series_reg *reg);

/* Called for a series just before it is freed (the history store frees
   s->hist here). One hook; NULL removes it. */
void km_series_on_drop(struct km_series_reg *reg,
                       void (*fn)(struct km_series *s, void *arg), void *arg);

/* Adds a collector; it runs in km_series_collect, in the order added.
   0, or -1 on ENOMEM. */
int km_series_add_collector(struct km_series_reg *reg, km_series_collector fn, void *arg);
/* Walks the state topics that published since the last call, then runs
   every collector (before a scrape, a sample or a listing). */
void km_series_collect(struct km_series_reg *reg);

/*
 * The series `name`{labels} (labels: canonical text, "" or NULL for none),
 * created when missing. A new family takes `help` and `type`; an existing
 * one keeps its own. Returns a borrowed series, or NULL when the cap is
 * reached (counted in km_series_refused), on a bad name (not
 * [a-zA-Z_:][a-zA-Z0-9_:]* or too long) or on ENOMEM.
 */
struct km_series *km_series_get(struct km_series_reg *reg, const char *name,
                                const char *help, enum km_series_type type,
                                const char *labels);
/* The series `name`{labels} if it exists (borrowed), else NULL. */
struct km_series *km_series_find(struct km_series_reg *reg, const char *name,
                                 const char *labels);
/* The family `name` (borrowed), or NULL. */
struct km_family *km_series_family(struct km_series_reg *reg, const char *name);
/* First family, in creation order (walk with ->next); NULL when none. */
struct km_family *km_series_families(struct km_series_reg *reg);

/* Sets the latest value (time_us: wall clock µs; 0: now) and makes it live. */
void km_series_set(struct km_series *s, double value, int64_t time_us);
/* Makes it stale: no longer exported or sampled, history kept. */
void km_series_stale(struct km_series *s);
/* Frees one series (the drop hook runs first); its family goes with its
   last series. */
void km_series_drop(struct km_series_reg *reg, struct km_series *s);

/* Walks one state message of `topic` now: sets the series it holds, makes
   the topic's other series of the same host (km_msg_host) stale (what
   km_series_collect does per topic and host; public for tests and for the
   bench). Keeps a reference to msg until the next walk of that topic and
   host. */
void km_series_ingest(struct km_series_reg *reg, struct km_topic *topic,
                      struct km_msg *msg);

/* Counts. */
size_t km_series_count(const struct km_series_reg *reg);     /* series held */
size_t km_series_live(const struct km_series_reg *reg);      /* of them live */
uint64_t km_series_refused(const struct km_series_reg *reg); /* not created: cap */
size_t km_series_max(const struct km_series_reg *reg);       /* the cap; 0 none */

/* ---- label text (labels.c) ---- */

/* 1 when key is a label name: [a-zA-Z_][a-zA-Z0-9_]*, at most 64 bytes. */
int km_label_name_valid(const char *key);

/*
 * Appends `key="value"` (value escaped) to the label text in buf (len bytes,
 * NUL-terminated), keeping it sorted by key. Returns 0, or -1 when it does
 * not fit, key is not a label name ([a-zA-Z_][a-zA-Z0-9_]*) or is already
 * there.
 */
int km_labels_add(char *buf, size_t len, const char *key, const char *value);
/*
 * Reads the next label of canonical text at *p: its key and its value
 * (unescaped) into the buffers, advancing *p. Returns 1, 0 at the end, or
 * -1 on malformed text or a key/value that does not fit.
 */
int km_labels_next(const char **p, char *key, size_t keylen, char *value,
                   size_t valuelen);
/* 1 when labels hold key="value" (value unescaped). */
int km_labels_has(const char *labels, const char *key, const char *value);

#endif /* KM_SERIES_H */
