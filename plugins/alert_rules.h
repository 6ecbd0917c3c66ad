/*
 * alert_rules.h - the [alert NAME] rule grammar of alert_manager.
 *
 * One parser, am_rule_parse, serves both the plugin's check (run by
 * --check-config, at start-up before init and on SIGHUP before reload)
 * and init/reload, which build the rules with it: what the check accepts
 * is exactly what the rules are made of. The message templates' expander
 * (am_render) lives here too, so the placeholders a check accepts are the
 * ones it expands.
 *
 * Built into alert_manager.so (with -fvisibility=hidden: nothing here is
 * exported) and into tests/unit/check_alert_rules.
 */
#ifndef AM_ALERT_RULES_H
#define AM_ALERT_RULES_H

#include <stddef.h>

#include <katomon/plugin.h>
#include <katomon/util.h>

#define AM_MAX_RULES   64 /* enabled [alert] sections evaluated */
#define AM_MAX_CLAUSES 4  /* "a || b || c || d" */

/*
 * What a rule watches. threshold and match read `path` in each message of
 * `topic`; the fleet kinds need no path: host_down reads the core's `hosts`
 * topic (one alert per remote host that is not up), source_down every state
 * topic's "_source" (one alert per topic whose source is unhealthy).
 */
enum am_kind {
    AM_THRESHOLD,   /* a number past warning / critical */
    AM_MATCH,       /* items of a list tested with FIELD ==|!= VALUE */
    AM_HOST_DOWN,   /* a remote host that stopped publishing (issue 15) */
    AM_SOURCE_DOWN, /* a collector's source unhealthy (issue 15) */
};

/* Threshold comparisons. */
enum am_op {
    AM_GT, /* > (critical: >=) */
    AM_GE, /* >= */
    AM_LT, /* < (critical: <=) */
    AM_LE, /* <= */
};

/* One "FIELD ==|!= VALUE" test of a match rule. */
struct am_clause {
    char field[64]; /* item member tested, dotted */
    int negate;     /* != rather than == */
    char value[64]; /* compared as text (numbers as written) */
};

struct am_track; /* alert_eval.h: the state of one alert key */

/* One parsed [alert NAME] rule, and its alert keys' states. */
struct am_rule {
    char name[64];                            /* [alert NAME] */
    char type[64];                            /* alert type on the wire */
    enum am_kind kind;                        /* what it watches */
    char topic[KM_TOPIC_NAME_MAX + 1];        /* source topic; source_down: "*"
                                                 (every state topic) or one */
    char path[128];                           /* dotted path; match rules end in [*] */
    char message[256];                        /* template */
    char name_field[64];                      /* match rules: item name member */
    int is_match;                             /* match rule (else threshold) */
    enum am_op op;                            /* threshold comparison */
    int has_warning, has_critical;            /* which thresholds are set */
    double warning, critical, clear;          /* thresholds; clear: hysteresis */
    unsigned for_n;                           /* consecutive samples before firing */
    double cooldown;                          /* seconds between reminders */
    int match_level;                          /* match and fleet rules: 1 warning,
                                                 2 error */
    struct am_clause clauses[AM_MAX_CLAUSES]; /* match rules: or-ed tests */
    int n_clauses;                            /* used clauses */
    /* (a member added above must be compared in am_rule_same) */
    struct am_track *tracks; /* alert keys (alert_eval.c; owned) */
    int n_tracks;            /* used */
};

/* The kinds of section alert_manager owns: [alert NAME], with its keys. */
extern const struct km_conf_kind am_kinds[];

/*
 * Parses `sec` into *r (zeroed first; tracks left NULL) and reports every
 * problem of it through report. Returns the number reported: 0 means *r
 * is a valid rule. A value that is not of its key's type (the loader
 * reported it) is skipped, as is every rule that needs it.
 */
int am_rule_parse(const struct km_conf_section *sec, struct am_rule *r,
                  km_conf_report report, void *arg);
/* 0 when sec says enabled = false (in any spelling the loader accepts). */
int am_rule_enabled(const struct km_conf_section *sec);
/* The kind sec's rule is of (its `kind`, else host_down or source_down for
   a section of that NAME, else match when it has `match`, else threshold);
   -1 when `kind` names none. */
int am_rule_kind(const struct km_conf_section *sec);
/*
 * The built-in rule of a fleet kind (AM_HOST_DOWN, AM_SOURCE_DOWN) into *r,
 * exactly as an empty [alert host_down] / [alert source_down] section
 * parses: alert_manager adds it when no section (enabled or not) is of
 * that kind, so a fleet is watched by default and a section disables or
 * tunes it. 0, or -1 for another kind.
 */
int am_rule_builtin(enum am_kind kind, struct am_rule *r);
/* 1 when a rule has one alert key per item (match, host_down, source_down);
   0 when it has one key, its type (threshold). */
int am_rule_itemized(const struct am_rule *r);
/*
 * 1 when a and b are the same rule: every member am_rule_parse sets is
 * equal (name, kind, topic, path, thresholds, for, cooldown, message...;
 * not the tracks). A reload keeps the alert states of such a rule. A member
 * added to struct am_rule must be compared here.
 */
int am_rule_same(const struct am_rule *a, const struct am_rule *b);
/* The descriptor's check: every [alert NAME] parsed, and at most
   AM_MAX_RULES enabled. */
int am_check(const struct km_conf_section *own,
             const struct km_conf_section *const *sections, size_t n_sections,
             km_conf_report report, void *arg);

/* "error", "warning" or "info" for levels 2, 1, 0. */
const char *am_level_name(int level);
/*
 * Expands r->message into out (len bytes): {value} (a match rule: the
 * field's text that matched, like {matched}), {value_pct} ({value} x 100),
 * {threshold}, {name}, {matched}, {type}, {level}. host_down: {host} and
 * {name} are `name`, {age} and {value} are `value` (seconds, rounded);
 * source_down: {topic} and {name} are `name`, {error} and {value} are
 * `matched`.
 */
void am_render(char *out, size_t len, const struct am_rule *r, double value,
               double threshold, const char *name, const char *matched, int level);

#endif /* AM_ALERT_RULES_H */
