/*
 * alert_eval.h - alert_manager's state machine: one message of a rule's
 * topic in, the alerts it raises, re-sends or resolves out; and what is
 * firing now, counted per (type, level).
 *
 * The rules (struct am_rule, alert_rules.h) are parsed by alert_rules.c;
 * each carries the states of its alert keys (struct am_track, here), which
 * only this file changes. alert_manager.c owns the rules, publishes what
 * comes out and keeps the history.
 *
 * Built into alert_manager.so (with -fvisibility=hidden: nothing here is
 * exported) and into tests/unit/check_alert_eval.
 */
#ifndef AM_ALERT_EVAL_H
#define AM_ALERT_EVAL_H

#include <stdint.h>
#include <jansson.h>

#include "alert_rules.h"

#define AM_MAX_TRACKS 512 /* alert keys tracked per match rule (items) */

/* The state of one alert key. */
struct am_track {
    char key[160];          /* TYPE or TYPE_ITEMNAME */
    char item[96];          /* item name (match rules), host (host_down), topic
                               (source_down); "" otherwise */
    int level;              /* 0 clear, 1 warning, 2 error: what was last sent */
    unsigned streak;        /* consecutive samples the condition held */
    int64_t last_sent;      /* monotonic µs of the last firing/reminder sent */
    int seen;               /* match rules: present in this evaluation */
    double value;           /* fleet rules: the last sample that held (host_down:
                               age_s; source_down: failures), which a resolution
                               repeats */
    char detail[160];       /* source_down: the last error while it held; match
                               rules: the last value that matched */
    char open_id[24];       /* id of the history record of this key's last
                               transition ("" while clear): its re-sends carry it */
    unsigned repeats;       /* re-sends since that record (its "repeats") */
    const char *transition; /* only while an alert is described: "fired",
                               "escalated", "de-escalated", "resolved", or
                               NULL for a re-send */
    const char *reason;     /* only while am_resolve_all describes: why */
};

/* Gives r its alert keys: room for AM_MAX_TRACKS items (a match, host_down
   or source_down rule), or its one key, the rule's type. 0, or -1 on
   ENOMEM (r->tracks NULL). */
int am_make_tracks(struct am_rule *r);

/*
 * What a message of one evaluation can raise per key, each a transition
 * but the re-send:
 *   fired         clear -> firing: a new id ("a<N>" from ++*next_id);
 *   escalated     warning -> error: a new id;
 *   de-escalated  error -> warning, still firing: a new id;
 *   (re-send)     still firing, `cooldown` after the last send: the id of
 *                 the key's open record (its last transition), "repeats" N
 *                 (the Nth re-send since it) and no "transition";
 *   resolved      firing -> clear: a new id.
 * Every alert has "repeats" (0 on a transition) and a transition has
 * "transition" naming it; alert_manager keeps transitions as history
 * records and counts re-sends on the open one.
 *
 * Evaluates rule r on msg, a message of its topic (the caller checks the
 * topic and that the source is healthy): appends to the array batch each
 * alert it raises, re-sends or resolves, numbered "a<N>" from ++*next_id.
 * A host_down rule reads the core's `hosts` value: one alert per remote
 * host whose "up" is false ("host" names it), resolved when it is up; the
 * local host is never its subject. A source_down rule does nothing here
 * (see am_eval_source).
 */
void am_eval(struct am_rule *r, json_t *msg, json_t *batch, uint64_t *next_id);

/*
 * Evaluates a source_down rule r on msg, a message of the state topic
 * `topic` (any topic: the rule's own `topic`, when it has one, filters):
 * fires when msg's "_source"."healthy" is false (the alert has "topic" and
 * "error"), resolves when it is true again. A message without a boolean
 * "_source"."healthy" says nothing. Alerts go to batch as in am_eval.
 */
void am_eval_source(struct am_rule *r, const char *topic, json_t *msg, json_t *batch,
                    uint64_t *next_id);

/*
 * Resolves every key of r that is firing now (a reload that changed or
 * removed the rule): one "resolved" alert each in batch, with "reason" and
 * the message "... (resolved: REASON)", from the last sample seen. The
 * keys are clear afterwards.
 */
void am_resolve_all(struct am_rule *r, const char *reason, json_t *batch,
                    uint64_t *next_id);

/* The monotonic clock of the cooldowns (µs); NULL: km_mono_us. For tests
   that simulate hours. */
void am_eval_set_clock(int64_t (*now_us)(void));

/*
 * What is firing now: {"alerts": [{"type", "level", "firing"}, ...]} with
 * one item per (type, level) pair the rules can raise (a threshold rule:
 * warning and/or error as it has `warning` and `critical`; a match,
 * host_down or source_down rule: its level), in rule order, warning before error, rules
 * of one type summed, and "firing" the number of their keys at that level now (0
 * included). The body of the alerts_firing topic. New reference; NULL
 * on ENOMEM.
 */
json_t *am_firing(const struct am_rule *rules, int n_rules);

#endif /* AM_ALERT_EVAL_H */
