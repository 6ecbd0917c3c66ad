/*
 * katomon/plugin.h - the plugin ABI.
 *
 * A plugin is a shared object that exports one symbol, `km_plugin_descriptor`
 * (use KM_PLUGIN_DEFINE), describing it. The daemon dlopen()s it, checks
 * .abi against KM_PLUGIN_ABI, validates the plugin's [plugin NAME] section
 * against .config and the sections of its .kinds against their keys, runs
 * .check, and calls .init with the host interface. `katomon --check-config`
 * runs the same checks and stops there. A plugin reaches the core only
 * through that interface; it never links against core objects.
 *
 * Ownership, jansson-style:
 *   - "steals"    the callee takes over the caller's reference;
 *   - "new"       the caller owns the returned reference and must release it;
 *   - "borrowed"  valid for the stated time only; do not free or modify.
 * Everything a plugin creates through the host (topics, subscriptions,
 * timers, fd watches, requests, WebSockets, routes) is released by the core when the
 * plugin is shut down or disabled; a plugin may release them earlier itself.
 *
 * All host functions must be called from the event loop's thread (i.e. from
 * init, shutdown, or a callback the core invoked).
 */
#ifndef KATOMON_PLUGIN_H
#define KATOMON_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <jansson.h>

#include <katomon/schema.h>
#include <katomon/http.h>
#include <katomon/websocket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever struct km_plugin or struct km_host changes incompatibly.
   Members appended at the end of struct km_host (and struct km_rest_call)
   do not bump it: a plugin checks KM_HOST_HAS(host, member) before using
   one, so it still runs on an older core. Nor do members appended at the
   end of struct km_plugin: the loader takes the descriptor's size from its
   symbol and treats members past it as NULL, so a plugin built against an
   older header still loads. */
/* 2 (issue 13): struct km_http_request gained ca_file and tls_insecure,
   which the core reads from every request (a plugin built for 1 would pass
   a shorter struct); ws_open, ws_send_text and ws_close were appended.
   And event_base is gone (it was the member between http_cancel and
   rest_route, so every member after it moved): no libevent type or loop
   reaches a plugin any more. What plugins did with the base has verbs:
   fd watching (io_add, io_set, io_del), timers (timer_add), outbound
   HTTP(S) and WebSocket (http_request, ws_open); katomon/hiredis.h puts
   hiredis's async client on them. ABI 2 is unreleased until this
   release, so these changes stay in 2. (issue 14: struct km_topic_def
   gained .metrics, also within 2.) */
#define KM_PLUGIN_ABI 2

/* 1 when the core's struct km_host has `member` (a plugin built against a
   newer header may run on an older core of the same ABI). */
#define KM_HOST_HAS(host, member)                                                        \
    ((host)->size >= offsetof(struct km_host, member) + sizeof((host)->member))

/* Name of the descriptor symbol the loader looks up. */
#define KM_PLUGIN_SYMBOL "km_plugin_descriptor"

/* ---- error codes: returned negated by host functions ------------------ */

/* General */
#define KM_OK     0  /* success */
#define KM_ENOMEM -1 /* out of memory */
#define KM_EINVAL -2 /* a bad argument (NULL, empty name, bad kind, ...) */
/* Topics (declare, publish, subscribe, replay) */
#define KM_ESCHEMA -10 /* publish: the message does not match the topic's type */
#define KM_EEXIST  -11 /* declare: the topic is declared already */
#define KM_ENOENT  -12 /* no such topic */
#define KM_EOWNER  -13 /* publish: the topic belongs to another plugin */
#define KM_EGONE   -14 /* replay: messages after `since` are no longer in the ring */
#define KM_EKIND   -15 /* replay on a state topic; event op on the wrong kind */
#define KM_ESTALE  -16 /* publish_remote: an older epoch, or a seq already seen */
#define KM_EFULL   -17 /* publish_remote: a new host past [core] max_hosts */
/* Plugins (loader) */
#define KM_EABI    -20 /* descriptor ABI differs from KM_PLUGIN_ABI */
#define KM_EINIT   -21 /* the plugin's init failed */
#define KM_ECONFIG -22 /* the plugin's section has a bad key or value */

/* ---- log levels (the syslog numbers) ----------------------------------- */

enum km_log_level {
    KM_LOG_ERROR = 3,   /* something failed; an operator should act */
    KM_LOG_WARNING = 4, /* degraded but working (source down, retrying) */
    KM_LOG_NOTICE = 5,  /* normal but significant (start, stop, reload) */
    KM_LOG_INFO = 6,    /* routine detail */
    KM_LOG_DEBUG = 7,   /* for developers */
};

/* ---- configuration ----------------------------------------------------- */

/* Value types of configuration keys; the loader checks them before init. */
enum km_conf_type {
    KM_CONF_STRING, /* any text */
    KM_CONF_INT,    /* decimal integer within [min, max] */
    KM_CONF_DOUBLE, /* number within [min, max] */
    KM_CONF_BOOL,   /* true/false, yes/no, on/off, 1/0 */
};

/* One key a plugin accepts in its [plugin NAME] section. */
struct km_conf_key {
    const char *name;       /* key; NULL ends the list */
    enum km_conf_type type; /* value type */
    const char *def;        /* default as text; NULL: no default (key optional) */
    double min, max;        /* INT/DOUBLE bounds; both 0: unbounded */
    const char *help;       /* one line shown in errors and --help-plugin */
};

/* One `key = value` line, as read from the file. */
struct km_conf_entry {
    const char *key;   /* key, as written */
    const char *value; /* value, trimmed */
    int line;          /* line in the file */
};

/* One [KIND NAME] section, e.g. [alert high_cpu]. Borrowed from the core. */
struct km_conf_section {
    const char *kind;                    /* "plugin", "alert", ... */
    const char *name;                    /* the NAME part; "" for [core] etc. */
    const char *file;                    /* file it was read from */
    int line;                            /* line of its [header] */
    const struct km_conf_entry *entries; /* its lines, in file order */
    size_t n_entries;                    /* number of entries */
};

/*
 * A kind of section a plugin reads besides its own [plugin NAME], e.g.
 * alert_manager's [alert NAME] rules. The core keeps every [KIND NAME]
 * section of a kind it does not know itself, checks its keys against
 * `keys` exactly as it checks .config (unknown key, type, range), and
 * reports a section whose kind no configured plugin declares. Such a
 * section always has a NAME; `enabled` and `file` mean nothing special in
 * it (list them in `keys` to accept them).
 */
struct km_conf_kind {
    const char *kind;               /* KIND, [a-z0-9_]; not core, http, websocket or
                                       plugin; NULL ends the list */
    const struct km_conf_key *keys; /* keys its sections accept (def is unused);
                                       NULL: any key, the plugin's check checks them */
    const char *help;               /* what one section is ("an alert rule"), for
                                       messages; may be NULL */
};

/*
 * How a plugin's check reports one problem: in section `sec` (one of those
 * check was given) at `line` of sec->file (0: its [header] line), with a
 * text that says what is wrong and what to do about it, printf-style, e.g.
 * "`clear` (85) is above `warning` (80): with op > it must be <= 80". The
 * core prints "FILE:LINE: text" and counts it as an error.
 */
typedef void (*km_conf_report)(void *arg, const struct km_conf_section *sec, int line,
                               const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- messages, topics, subscriptions ------------------------------------ */

struct km_ctx;   /* opaque: the core's handle for one loaded plugin */
struct km_topic; /* opaque: a named, typed topic on the bus */
struct km_msg;   /* opaque: an immutable, reference-counted published message */
struct km_sub;   /* opaque: one subscription */
struct km_timer; /* opaque: one timer */
struct km_io;    /* opaque: one watched file descriptor */

/* Topic kinds. */
enum km_topic_kind {
    KM_TOPIC_STATE = 1, /* keeps its latest message; new subscribers get it at once */
    KM_TOPIC_EVENT = 2, /* numbers messages (seq 1, 2, ...) and keeps a replay ring */
};

/* km_metric flags. */
/* Only ever grows (a Prometheus counter): the name gets "_total" when it
   lacks it. */
#define KM_METRIC_COUNTER (1u << 0)
/* Not a series (a copy in other units, a clock, an id); for an array or
   object: its whole subtree. */
#define KM_METRIC_IGNORE (1u << 1)

/*
 * How the numbers of a state topic become series (history, GET /metrics).
 * Every number of every message of a state topic (a boolean too when an
 * entry names its path: 1 true, 0 false) is a series, named "katomon_" +
 * the topic + its path ("host" topic,
 * "memory.used_bytes" -> katomon_host_memory_used_bytes), typed a gauge,
 * labelled per array item. An entry of the topic's .metrics table changes
 * that for one path:
 *
 *   path    the field, from the message's top: "cpu_percent",
 *           "memory.used_bytes"; "containers[].cpu" for a field of every item
 *           of an array; "containers[]" for the array itself (only .labels
 *           and KM_METRIC_IGNORE apply); "databases{}" for an object whose
 *           keys are items (.labels is then the label its keys go in,
 *           "database"; its fields are "databases{}.operations");
 *           "_source" for the source's health (.name is then the source's
 *           name: katomon_source_up{source=NAME,topic=TOPIC} and
 *           katomon_source_failures{...}).
 *   name    the series name without "katomon_" ("container_cpu_percent");
 *           Prometheus conventions: snake_case, base units (bytes, seconds),
 *           a unit suffix, "_ratio" for a 0..1 fraction. NULL: derived.
 *   help    the HELP line. NULL: "<topic> <path>".
 *   flags   KM_METRIC_*.
 *   scale   multiplies every value (1048576 turns MiB into bytes); 0 means 1.
 *   labels  an array ("x[]"): "LABEL=FIELD,..." naming each item by its
 *           fields ("container=name"). Default: the array's name without a
 *           final "s" = the item's "name" (else "id", else its index).
 *
 * Paths with no entry are derived as said; a table ends with {NULL}.
 * Borrowed like the schema: must outlive the plugin.
 */
struct km_metric {
    const char *path;   /* field path, see above */
    const char *name;   /* series name without "katomon_"; NULL: derived */
    const char *help;   /* HELP text; NULL: derived */
    unsigned flags;     /* KM_METRIC_* */
    double scale;       /* value multiplier; 0: 1 */
    const char *labels; /* arrays: "LABEL=FIELD,..."; NULL: default */
};

/* What declare needs to know about a topic. Copied, except .schema and
   .metrics. */
struct km_topic_def {
    const char *name;        /* [a-z0-9_.-]+, at most 64 bytes */
    enum km_topic_kind kind; /* state or event */
    const struct km_field
        *schema;                     /* type of every message's top-level object;
                                        borrowed: must outlive the plugin. NULL: any object */
    unsigned ring_size;              /* event topics: messages kept for replay; 0: 256 */
    const char *description;         /* one line for GET /api/v1/topics; may be NULL */
    const struct km_metric *metrics; /* state topics: names, units and help of
                                        its series (see struct km_metric);
                                        borrowed like .schema. NULL: derived */
};

/* Where a message published on another host's bus came from
   (publish_remote). Borrowed for the call. */
struct km_remote {
    const char *host;        /* its host name: [A-Za-z0-9_.-]{1,64}, not ours */
    enum km_topic_kind kind; /* the topic's kind on that host */
    int64_t epoch;           /* that host's bus epoch, µs (> 0) */
    uint64_t seq;            /* event: its seq there (>= 1); state: ignored */
    int64_t time_us;         /* when it was published there, µs since the epoch */
};

/*
 * Delivery callback. `msg` is borrowed for the duration of the call; take
 * a reference with km_host.msg_ref() to keep it. Callbacks run synchronously
 * inside publish(), in subscription order; a callback may publish, subscribe
 * and unsubscribe (itself included).
 */
typedef void (*km_msg_cb)(struct km_topic *topic, struct km_msg *msg, void *arg);

/* Timer callback. */
typedef void (*km_timer_cb)(void *arg);

/* Timer flags. */
#define KM_TIMER_REPEAT (1u << 0) /* fire every interval until deleted */
#define KM_TIMER_NOW    (1u << 1) /* also fire once as soon as the loop runs */

/* What an fd watch waits for (io_add, io_set), and what its callback got. */
#define KM_IO_READ  (1u << 0) /* readable (or EOF, or an error pending) */
#define KM_IO_WRITE (1u << 1) /* writable (or a connect finished, or failed) */

/*
 * fd watch callback: `events` holds what the fd is ready for (KM_IO_*; a
 * subset of what the watch waits for). Level-triggered: it is called
 * again on the next loop turn while the fd stays ready, until the plugin
 * reads, writes, io_sets or io_dels. It may io_set or io_del its own watch.
 */
typedef void (*km_io_cb)(int fd, unsigned events, void *arg);

struct km_rest_pending; /* opaque: a REST request answered later (KM_REST_LATER) */

/* One REST request a plugin's route serves. Borrowed during the handler. */
struct km_rest_call {
    const char *method; /* "GET", "POST", "DELETE", ... */
    const char *path;   /* e.g. "/api/v1/alerts/read"; percent-decoded, no NUL
                           byte, at most 4095 bytes ('%2F' arrives as '/') */
    const char *query;  /* raw query string without '?'; "" when none */
    const char *body;   /* request body, NUL-terminated; "" when none */
    size_t body_len;    /* bytes of body */
    /* Appended in ABI 1 (read it only when KM_HOST_HAS(host, rest_finish)):
       the handle to answer this request later with km_host.rest_finish,
       when the handler returns KM_REST_LATER. Owned by the core. */
    struct km_rest_pending *pending;
};

/*
 * REST handler: returns the HTTP status. On success set *reply to a new
 * JSON value (the core steals it and sends it). On an error status, *reply
 * may be NULL and the core then sends {"detail": detail}, where detail is
 * set through *detail (a static or borrowed string) or a default text.
 *
 * Or it returns KM_REST_LATER, sets nothing, keeps call->pending, and
 * answers later (from any callback) with km_host.rest_finish. Meanwhile
 * the connection reads no further request (one request at a time, as for
 * any answer), and the core bounds the wait: past KM_REST_DEADLINE_S it
 * answers 504 itself. rest_finish may also be called from inside the
 * handler, before it returns KM_REST_LATER.
 */
typedef int (*km_rest_cb)(const struct km_rest_call *call, json_t **reply,
                          const char **detail, void *arg);

/* A handler's "I will answer with rest_finish" (never an HTTP status). */
#define KM_REST_LATER 0
/* Seconds the core waits for rest_finish before it answers 504 itself. */
#define KM_REST_DEADLINE_S 30

/* ---- the host interface handed to init ---------------------------------- */

struct km_host {
    uint32_t abi; /* KM_PLUGIN_ABI of the core */
    size_t size;  /* sizeof(struct km_host) of the core */

    /* Logging: one line, prefixed with the plugin's name. */
    void (*log)(struct km_ctx *ctx, enum km_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Human text for a KM_E* code. Borrowed, static. */
    const char *(*strerror)(int err);

    /*
     * Configuration of this plugin's [plugin NAME] section, already checked
     * against the descriptor's .config (so the typed getters cannot fail):
     * the value, or the key's default when unset. Strings are borrowed
     * until the plugin is shut down. A key not in .config returns NULL / 0.
     */
    const char *(*config_string)(struct km_ctx *ctx, const char *key);
    long long (*config_int)(struct km_ctx *ctx, const char *key);
    double (*config_double)(struct km_ctx *ctx, const char *key);
    int (*config_bool)(struct km_ctx *ctx, const char *key);
    /* Every [KIND NAME] section of the file (e.g. kind "alert"). Borrowed
       until the next reload; *n receives the count. */
    const struct km_conf_section *const *(*config_sections)(struct km_ctx *ctx,
                                                            const char *kind, size_t *n);
    /* [core] state_dir, where plugins keep persistent files. Borrowed. */
    const char *(*state_dir)(struct km_ctx *ctx);

    /*
     * Topics. declare returns a borrowed topic (owned by the bus, valid for
     * the daemon's lifetime), or NULL with *err set (KM_EEXIST, KM_EINVAL).
     * find returns a borrowed topic or NULL.
     */
    struct km_topic *(*topic_declare)(struct km_ctx *ctx, const struct km_topic_def *def,
                                      int *err);
    struct km_topic *(*topic_find)(struct km_ctx *ctx, const char *name);
    const char *(*topic_name)(const struct km_topic *topic);

    /*
     * publish: validates `body` (a JSON object) against the topic's type
     * and delivers it. Steals `body` in every case, even on error. Returns
     * KM_OK, KM_ESCHEMA (refused: logged and counted, nothing delivered),
     * KM_EOWNER or KM_EINVAL. The body must not be modified afterwards.
     */
    int (*publish)(struct km_ctx *ctx, struct km_topic *topic, json_t *body);

    /*
     * subscribe: by name, so a topic declared later (or by a plugin loaded
     * later) still reaches the subscriber. For a state topic that has a
     * value, cb is called once with it before subscribe returns.
     * Returns a handle owned by the core (NULL only on ENOMEM).
     */
    struct km_sub *(*subscribe)(struct km_ctx *ctx, const char *topic, km_msg_cb cb,
                                void *arg);
    /* unsubscribe: cb is never called again; safe inside cb itself. */
    void (*unsubscribe)(struct km_ctx *ctx, struct km_sub *sub);

    /* Messages. json: borrowed for as long as the caller holds `msg`; read
       only. ref returns `msg` with a new reference; unref releases one. */
    json_t *(*msg_json)(const struct km_msg *msg);
    uint64_t (*msg_seq)(const struct km_msg *msg); /* event topics; 0 on state */
    struct km_msg *(*msg_ref)(struct km_msg *msg);
    void (*msg_unref)(struct km_msg *msg);
    /* latest message of a state topic (borrowed), or NULL */
    struct km_msg *(*topic_latest)(struct km_topic *topic);

    /* Timers on the daemon's loop. The handle is owned by the core. */
    struct km_timer *(*timer_add)(struct km_ctx *ctx, double interval_s, unsigned flags,
                                  km_timer_cb cb, void *arg);
    void (*timer_del)(struct km_ctx *ctx, struct km_timer *timer);

    /*
     * Non-blocking HTTP(S) (see katomon/http.h). Returns a handle owned by the
     * core until cb has run, or NULL with nothing started (bad url, ENOMEM):
     * in that case cb is not called. cancel: cb is not called afterwards.
     */
    struct km_http_req *(*http_request)(struct km_ctx *ctx,
                                        const struct km_http_request *req, km_http_cb cb,
                                        void *arg);
    void (*http_cancel)(struct km_ctx *ctx, struct km_http_req *req);

    /*
     * REST: serve `method` `path` (must start with "/api/v1/") from the
     * daemon's HTTP port, behind the same auth token, CORS and size limits
     * as the core's endpoints. Returns KM_OK, KM_EEXIST (taken) or
     * KM_EINVAL. The route is removed when the plugin shuts down.
     *
     * `path` is matched exactly, or, when its last segment is a lone "*"
     * (say "/api/v1/sessions/" followed by "*"), as a prefix: it then
     * serves every path below it (at least one byte after that '/'), and
     * the handler reads call->path. An exact route (the core's or a plugin's) wins over a
     * prefix, and a longer prefix over a shorter one. The rest of a path is
     * untrusted input: a handler checks it (length, '/', control bytes)
     * before using it as an id.
     */
    int (*rest_route)(struct km_ctx *ctx, const char *method, const char *path,
                      km_rest_cb cb, void *arg);
    /* A query parameter of `call`, percent-decoded into buf (len bytes);
       returns buf, or NULL when absent or too long. */
    const char *(*rest_param)(const struct km_rest_call *call, const char *name,
                              char *buf, size_t len);

    /* ---- appended in ABI 1: check host->size before using them ---------- */

    /*
     * Answers a request whose handler returned KM_REST_LATER: status and
     * reply as a handler's return value and *reply (reply stolen, may be
     * NULL: {"detail": detail} is sent, detail borrowed for the call, NULL
     * for a default text). Call it exactly once per such request; `p` is
     * invalid afterwards. It is always safe: when the client went away, or
     * the core answered 504 at the deadline, it only frees. A plugin may
     * still answer from its shutdown; whatever is pending after it is
     * answered 503 by the core (also when the plugin is disabled), and
     * those handles are gone.
     */
    void (*rest_finish)(struct km_ctx *ctx, struct km_rest_pending *p, int status,
                        json_t *reply, const char *detail);

    /* ---- appended in ABI 2 (issue 13): KM_HOST_HAS(host, io_del) --------- */

    /*
     * Outbound WebSocket (see katomon/websocket.h: ws:// or wss://, the
     * callbacks and when they run). ws_open returns a handle owned by the
     * core until on_close has run or ws_close, or NULL with nothing started
     * (bad url or header, ENOMEM): no callback then. ws_send_text queues one
     * text message (copied) and returns KM_OK, or KM_EINVAL when the
     * connection is not open (yet, or any more). ws_close closes at once (a
     * close frame 1000 when the socket takes it): no callback runs
     * afterwards; safe from the connection's own on_open and on_message, a
     * no-op inside its on_close. The core closes what is left when the
     * plugin stops.
     */
    struct km_ws *(*ws_open)(struct km_ctx *ctx, const struct km_ws_client_opts *opts);
    int (*ws_send_text)(struct km_ctx *ctx, struct km_ws *ws, const char *text,
                        size_t len);
    void (*ws_close)(struct km_ctx *ctx, struct km_ws *ws);

    /*
     * File descriptors on the daemon's loop, for a plugin's own
     * non-blocking I/O (a client library's socket, a FIFO). io_add watches
     * `fd` (non-blocking, the plugin's: the core never closes it) for
     * `events` (KM_IO_READ | KM_IO_WRITE; 0: watch nothing for now) and
     * returns a handle owned by the core, or NULL (fd < 0, no cb, an
     * unknown flag, ENOMEM). io_set changes what it waits for (KM_OK, or
     * KM_EINVAL: a bad flag or handle). io_del stops the watch; the handle
     * is invalid afterwards (safe inside its own callback). Watches left at
     * shutdown are stopped by the core, before it unmaps the plugin; close
     * the fd only after io_del (or in shutdown).
     */
    struct km_io *(*io_add)(struct km_ctx *ctx, int fd, unsigned events, km_io_cb cb,
                            void *arg);
    int (*io_set)(struct km_ctx *ctx, struct km_io *io, unsigned events);
    void (*io_del)(struct km_ctx *ctx, struct km_io *io);

    /* ---- appended in ABI 2 (issue 15): KM_HOST_HAS(host, bus_epoch) ------ */

    /*
     * What a bridge to other hosts needs to forward a message as this bus
     * holds it (redis_bridge). msg_text: the body as compact JSON text,
     * encoded once per message and shared with every other reader (the
     * WebSocket fan-out, REST), borrowed while the caller holds `msg`; NULL
     * on ENOMEM; *len gets its length. msg_time_us: when it was published
     * (wall clock, µs since the epoch; a state topic's value delivered at
     * subscribe time was published earlier). bus_epoch: the bus's creation
     * time (µs), which event seqs restart with (the WebSocket protocol's
     * "epoch").
     */
    const char *(*msg_text)(struct km_msg *msg, size_t *len);
    int64_t (*msg_time_us)(const struct km_msg *msg);
    int64_t (*bus_epoch)(struct km_ctx *ctx);

    /* ---- appended in ABI 2 (issue 15): KM_HOST_HAS(host, replay_host) ---- */

    /*
     * Hosts. The bus keeps each topic's messages per host: index 0 is this
     * host ([core] host_name), 1, 2, ... the remote hosts a bridge brought
     * in, in the order of their first message, at most [core] max_hosts.
     * A host is never forgotten during a run (one that stopped publishing
     * is marked stale in the core's "hosts" topic), so an index stays valid.
     *
     * host_name: the name of host h (borrowed, valid for the run), or NULL
     *   when there is no such host. host_find: the index of `name`, or -1.
     * msg_host: the index of the host that published msg (0: this one).
     * msg_epoch: that host's bus epoch (bus_epoch for this host's messages).
     * topic_latest_host: host h's latest value of a state topic
     *   (borrowed), or NULL.
     * subscribe_hosts: as subscribe, but gets every host's messages
     *   (subscribe gets only this host's); the initial values are the
     *   latest of each host that has one, host 0 first.
     * replay_host: as the bus's replay of an event topic (messages with
     *   seq > since, oldest first) for host h's sequence; returns the number
     *   replayed, KM_EGONE (some after since are gone; the rest replayed),
     *   KM_EKIND (a state topic), KM_EINVAL (no such host, NULL cb).
     * publish_remote: a message that host r->host published on its own
     *   bus, as a bridge received it. Steals body always. It is validated
     *   like publish (KM_ESCHEMA: counted on the topic and on the host, but
     *   not logged: the caller logs, once per burst) and delivered with that host's index to subscribe_hosts
     *   subscribers only. Any plugin may call it, on a declared topic that
     *   is not orphaned. Returns KM_OK, KM_EINVAL (NULL topic, body not an
     *   object, a bad host name or this host's own name, r->seq 0 on an
     *   event topic), KM_EKIND (r->kind is not the topic's kind), KM_ESCHEMA,
     *   KM_EOWNER (an orphaned topic), KM_ESTALE (an epoch older than the
     *   host's, or an event seq that host already sent in this epoch),
     *   KM_EFULL (a new host past max_hosts) or KM_ENOMEM. A newer epoch
     *   means the host restarted: its event sequences start again. An event
     *   seq past the last one + 1 is accepted and the gap counted on the
     *   host ("hosts" topic: gaps, missed).
     */
    const char *(*host_name)(struct km_ctx *ctx, int h);
    int (*host_find)(struct km_ctx *ctx, const char *name);
    int (*msg_host)(const struct km_msg *msg);
    int64_t (*msg_epoch)(const struct km_msg *msg);
    struct km_msg *(*topic_latest_host)(struct km_topic *topic, int h);
    struct km_sub *(*subscribe_hosts)(struct km_ctx *ctx, const char *topic, km_msg_cb cb,
                                      void *arg);
    int (*publish_remote)(struct km_ctx *ctx, struct km_topic *topic, json_t *body,
                          const struct km_remote *r);
    int (*replay_host)(struct km_ctx *ctx, struct km_topic *topic, int h, uint64_t since,
                       km_msg_cb cb, void *arg);
};

/* ---- the descriptor a plugin exports ------------------------------------ */

struct km_plugin {
    uint32_t abi;                     /* KM_PLUGIN_ABI the plugin was built with */
    const char *name;                 /* matches NAME in [plugin NAME] */
    const char *version;              /* the plugin's own version */
    const char *description;          /* one line for GET /api/v1/plugins */
    const struct km_conf_key *config; /* keys its section accepts (besides the core's
                                         `file` and `enabled`); NULL: none */
    /* Start: declare topics, subscribe, add timers. Return 0, or -1 after
       logging why (the plugin is then disabled and its resources freed). */
    int (*init)(struct km_ctx *ctx, const struct km_host *host);
    /* SIGHUP: the config was re-read; may be NULL. Return 0 or -1 (logged,
       the plugin keeps running with what it had). */
    int (*reload)(struct km_ctx *ctx);
    /* Stop: free what the plugin allocated itself. May be NULL. */
    void (*shutdown)(struct km_ctx *ctx);

    /* ---- appended in ABI 1: NULL in a plugin built before them ---------- */

    /* Section kinds it owns besides [plugin NAME] (see struct km_conf_kind),
       ended by {NULL}; NULL: none. */
    const struct km_conf_kind *kinds;
    /*
     * Checks what a key table cannot say: cross-key rules, grammars (alert
     * rules, expressions, templates). `own` is its [plugin NAME] section,
     * `sections` every section of its .kinds, in file order (n_sections may
     * be 0). It calls report once per problem and returns how many it
     * reported (or -1 when it could not check at all: out of memory).
     * Any problem keeps the plugin from starting, as a bad key does.
     *
     * A pure function of its arguments: called without init and without a
     * host (--check-config loads the plugin only for this), again before
     * init at start-up and before reload on SIGHUP, so it must not touch
     * global state or keep any pointer it was given. It runs even when some
     * typed values failed the loader's check (all problems are reported at
     * once): a value that does not parse (katomon/conf.h) was reported
     * already and is skipped. May be NULL.
     */
    int (*check)(const struct km_conf_section *own,
                 const struct km_conf_section *const *sections, size_t n_sections,
                 km_conf_report report, void *arg);
    /* ---- appended in ABI 2 (issue 15): NULL in a plugin built before ---- */

    /*
     * The topics its init declares, ended by {NULL}; NULL: not said. With
     * `collect = false` in its section the core loads the plugin, runs its
     * checks and declares these topics for it (owned by the plugin) without
     * calling init: an edge katomon then knows every topic's type and
     * series while all its data comes from other hosts through a bridge.
     * Such a plugin must still declare the same definitions in init.
     */
    const struct km_topic_def *topics;
};

#if defined(__GNUC__)
#define KM_EXPORT __attribute__((visibility("default")))
#else
#define KM_EXPORT
#endif

/* Defines the exported descriptor: KM_PLUGIN_DEFINE(.name = "x", .init = f, ...) */
#define KM_PLUGIN_DEFINE(...)                                                            \
    KM_EXPORT const struct km_plugin km_plugin_descriptor = {.abi = KM_PLUGIN_ABI,       \
                                                             __VA_ARGS__}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_PLUGIN_H */
