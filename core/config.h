/*
 * config.h - katomon.conf (DESIGN section 7).
 *
 * INI, read with libinih. The core's sections are [core], [http],
 * [websocket] and one [plugin NAME] per plugin to load. Every other
 * section is a [KIND NAME] of a plugin (alert_manager's [alert NAME]): the
 * reader keeps it unchecked, and the loader checks it against the plugin
 * that declares the kind (struct km_conf_kind), or reports that none does.
 * Every problem names file:line and says what to do next, and all of them
 * are reported at once.
 *
 * [plugin NAME] sections take the core's keys `file` (the .so, default
 * NAME.so in plugin_dir), `enabled` (bool, default true) and `collect`
 * (bool, default true; false: the plugin's topics are declared but its init
 * never runs, see loader.h); every other key is checked later against the
 * plugin's descriptor (km_config_check_keys), since only the plugin knows
 * them.
 */
#ifndef KM_CONFIG_H
#define KM_CONFIG_H

#include <stddef.h>
#include <katomon/plugin.h>

/* History tiers ([history] tiers): at most KM_TIERS_MAX, finest first. */
#define KM_TIERS_MAX 4
struct km_tiers {
    unsigned n; /* tiers given */
    struct {
        double step;      /* seconds between points */
        double retention; /* seconds kept, a multiple of step */
    } t[KM_TIERS_MAX];
};

/* [websocket] compatible_fleet. */
#define KM_FLEET_LOCAL     0 /* compatible clients see this host only */
#define KM_FLEET_AGGREGATE 1 /* ... every host, remote items labelled */

/* [core] host_stale default and floor, seconds. */
#define KM_HOST_STALE_DEFAULT 15.0
#define KM_HOST_STALE_MIN     1.0
/* [core] host_forget default, seconds (netdata drops an orphan child after
   an hour too). */
#define KM_HOST_FORGET_DEFAULT 3600.0

struct km_config {
    char *path; /* file it was read from */

    /* [core] */
    char *plugin_dir;            /* where [plugin NAME] looks for NAME.so */
    char *state_dir;             /* persistent state (alert history) */
    char *pid_file;              /* written at start when set; NULL: none */
    enum km_log_level log_level; /* lines below it are dropped */
    int plugin_failure_fatal;    /* a plugin that fails to load stops start-up */
    char *host_name;             /* this host's name in the fleet (km_host_name_valid);
                                    default: the hostname made valid */
    int max_hosts;               /* hosts the bus keeps at most, this one included */
    double host_stale;           /* seconds without a message before a remote host
                                    counts as down (>= 1) */
    double host_forget;          /* seconds without a message before a remote host
                                    is forgotten (its values dropped); 0: never */

    /* [http] */
    char *bind;        /* listen address (IPv4/IPv6 literal or host name) */
    int port;          /* listen port; 0: ephemeral (tests) */
    char *web_root;    /* dashboard files */
    char *vendor_root; /* served under /vendor/: Debian's /usr/share/javascript
                          (chart library); "" turns it off */
    char
        *allowed_origins; /* extra Origins allowed on /ws and for CORS, comma-separated */
    char *auth_token;     /* when set, required on REST and /ws; NULL: none */
    int max_connections;  /* HTTP + WebSocket connections at once */
    size_t max_request_bytes; /* request line + headers + body */
    double request_timeout;   /* a request's first byte to its last, seconds (408
                                 past it); 0: none */
    int metrics;              /* serve GET /metrics (Prometheus text format) */

    /* [websocket] */
    int enabled;              /* serve /ws at all */
    double update_interval;   /* seconds between realtime_update messages */
    size_t max_message_bytes; /* largest client message (close 1009 past it) */
    size_t max_queue_bytes;   /* unsent bytes per client before backpressure acts */
    double ping_interval;     /* seconds between server pings; 0: none */
    double idle_timeout;  /* seconds without any client frame before closing; 0: never */
    int compatible_fleet; /* KM_FLEET_LOCAL or KM_FLEET_AGGREGATE: what compatible
                             (original protocol) clients see of remote hosts */

    /* [history] */
    int history;           /* keep history of every series at all */
    struct km_tiers tiers; /* its tiers */
    int max_series;        /* series kept at most (history and /metrics) */
    double flush_interval; /* seconds between writes of the history file; 0: never */
    char *history_file;    /* the file; NULL: STATE_DIR/history.db */

    /* [plugin NAME] and plugins' [KIND NAME] sections, in file order */
    struct km_conf_section **sections; /* owned */
    size_t n_sections;                 /* number of sections */
};

/*
 * Receives one problem found in the configuration: its level (KM_LOG_ERROR:
 * the file is refused; KM_LOG_WARNING: it is not), file, line (0: the file
 * as a whole) and text, "what is wrong; what to do". `text` is borrowed for
 * the call.
 */
typedef void (*km_config_report_fn)(void *arg, enum km_log_level level, const char *file,
                                    int line, const char *text);

/*
 * Reads `path`, reporting every problem in file order (it stops early only
 * when the file cannot be read, or after 100 errors). Returns the number of
 * errors, with a new config in *out either way (free with km_config_free):
 * with errors, it holds what could be read, for --check-config to go on
 * checking the plugins. *out is NULL only when memory ran out.
 */
int km_config_read(const char *path, struct km_config **out, km_config_report_fn report,
                   void *arg);
/*
 * Reads `path`. Returns 0 and a new config in *out (free with
 * km_config_free), or -1 with the first problem in err:
 * "FILE:LINE: what is wrong; what to do" (or "FILE: ..." when no line).
 */
int km_config_load(const char *path, struct km_config **out, char *err, size_t errlen);
/*
 * This machine's name as a [core] host_name: gethostname() with every
 * character outside [A-Za-z0-9_.-] made '-', cut to KM_HOST_NAME_MAX bytes;
 * "localhost" when that leaves nothing. Into buf (at least
 * KM_HOST_NAME_MAX + 1 bytes); returns buf.
 */
char *km_config_default_host_name(char *buf, size_t n);
/* The same rule on a given name (NULL or "" give "localhost"). */
char *km_config_host_name_from(const char *raw, char *buf, size_t n);
/* A config with every default and no sections (new; never NULL but on ENOMEM). */
struct km_config *km_config_defaults(void);
void km_config_free(struct km_config *cfg);

/* The [KIND NAME] section, or NULL. Borrowed from cfg. */
const struct km_conf_section *km_config_section(const struct km_config *cfg,
                                                const char *kind, const char *name);
/* Value of key in sec, or NULL. Borrowed from sec. */
const char *km_conf_value(const struct km_conf_section *sec, const char *key);
/* The entry of key in sec, or NULL. */
const struct km_conf_entry *km_conf_entry(const struct km_conf_section *sec,
                                          const char *key);

/* 1 when [KIND ...] is one of the core's own kinds (core, http, websocket,
   plugin): a plugin cannot declare it. */
int km_config_core_kind(const char *kind);
/* "[core], [http], [websocket], [history], [plugin NAME]", for messages. Static. */
const char *km_config_core_kinds(void);
/* The name in `names` (NULL-terminated) close enough to `word` to be a
   typo of it, or NULL. */
const char *km_config_suggest(const char *word, const char *const *names);

/*
 * Checks sec's keys against `keys` (a [plugin NAME] section: its .config,
 * skipping the core's `file` and `enabled`; a plugin's [KIND NAME]: the
 * kind's keys): unknown key (with a did-you-mean), a value not of the key's
 * type or out of range. Reports each problem as an error; returns how many.
 */
size_t km_config_check_keys(const struct km_conf_section *sec,
                            const struct km_conf_key *keys, km_config_report_fn report,
                            void *arg);

/* Value parsers (katomon/conf.h), for the core. Return 0 and *out, or -1. */
int km_parse_bool(const char *text, int *out);
int km_parse_int(const char *text, long long *out);
int km_parse_double(const char *text, double *out);
/* A duration: seconds, fractions allowed, with an optional unit s, m, h, d
   or w ("90", "1.5s", "15m", "7d"). 0 and *out (seconds), or -1. */
int km_parse_duration(const char *text, double *out);
/* "STEP:RETENTION ..." (durations, space- or comma-separated, finest first:
   "1s:1h 1m:1d 10m:7d"). 0, or -1 with the reason in why. */
int km_parse_tiers(const char *text, struct km_tiers *out, char *why, size_t whylen);

/* ---- a list of problems, in the order reported --------------------------- */

/* One reported problem. */
struct km_problem {
    enum km_log_level level; /* KM_LOG_ERROR or KM_LOG_WARNING */
    char *file;              /* file (owned); "" when none */
    int line;                /* line; 0: none */
    char *text;              /* what is wrong; what to do (owned) */
};

/* Problems collected with km_problems_add; zero-initialise it. */
struct km_problems {
    struct km_problem *v; /* the problems (owned) */
    size_t n;             /* number of them */
    size_t cap;           /* allocated */
    size_t errors;        /* those at KM_LOG_ERROR */
    int lost;             /* some could not be stored (out of memory) */
};

/* A km_config_report_fn: appends to the struct km_problems `list`. */
void km_problems_add(void *list, enum km_log_level level, const char *file, int line,
                     const char *text);
/* Sorts by line, keeping the order of problems on one line. */
void km_problems_sort(struct km_problems *list);
/* "FILE:LINE: text" (or "FILE: text"), with "warning: " before a warning's
   text when `tag` is 1, into buf. Returns buf. */
const char *km_problem_format(const struct km_problem *p, int tag, char *buf, size_t n);
void km_problems_clear(struct km_problems *list);

#endif /* KM_CONFIG_H */
