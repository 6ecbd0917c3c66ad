/*
 * config.h - katomon.conf (DESIGN section 7).
 *
 * INI, read with libinih. Sections: [core], [http], [websocket], one
 * [plugin NAME] per plugin to load, [alert NAME] per alert rule. Every
 * error names file:line and says what to do next.
 *
 * [plugin NAME] sections take the core's keys `file` (the .so, default
 * NAME.so in plugin_dir) and `enabled` (bool, default true); every other key
 * is checked later against the plugin's descriptor (km_config_check_keys),
 * since only the plugin knows them.
 */
#ifndef KM_CONFIG_H
#define KM_CONFIG_H

#include <stddef.h>
#include <katomon/plugin.h>

struct km_config {
    char *path; /* file it was read from */

    /* [core] */
    char *plugin_dir;            /* where [plugin NAME] looks for NAME.so */
    char *state_dir;             /* persistent state (alert history) */
    char *pid_file;              /* written at start when set; NULL: none */
    enum km_log_level log_level; /* lines below it are dropped */
    int plugin_failure_fatal;    /* a plugin that fails to load stops start-up */

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

    /* [websocket] */
    int enabled;              /* serve /ws at all */
    double update_interval;   /* seconds between realtime_update messages */
    size_t max_message_bytes; /* largest client message (close 1009 past it) */
    size_t max_queue_bytes;   /* unsent bytes per client before backpressure acts */
    double ping_interval;     /* seconds between server pings; 0: none */
    double idle_timeout; /* seconds without any client frame before closing; 0: never */

    /* [plugin NAME] and [alert NAME] sections, in file order */
    struct km_conf_section **sections; /* owned */
    size_t n_sections;                 /* number of sections */
};

/*
 * Reads `path`. Returns 0 and a new config in *out (free with
 * km_config_free), or -1 with a message in err:
 * "FILE:LINE: what is wrong; what to do" (or "FILE: ..." when no line).
 */
int km_config_load(const char *path, struct km_config **out, char *err, size_t errlen);
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

/*
 * Checks sec's keys (other than the core's `file` and `enabled`) against
 * `keys`: unknown key, or a value not of the key's type or out of range.
 * Returns 0, or -1 with "FILE:LINE: ..." in err.
 */
int km_config_check_keys(const struct km_conf_section *sec,
                         const struct km_conf_key *keys, char *err, size_t errlen);

/* Value parsers shared with the loader. Return 0 and *out, or -1. */
int km_parse_bool(const char *text, int *out);
int km_parse_int(const char *text, long long *out);
int km_parse_double(const char *text, double *out);

#endif /* KM_CONFIG_H */
