/*
 * alert_eval.c - the alert state machine and the firing counts (see
 * alert_eval.h).
 *
 * Per alert key (the rule's type, or TYPE_NAME per item) the state machine:
 *   - fires when the condition held for `for` consecutive samples;
 *   - escalates warning -> error, and de-escalates back, at once;
 *   - while firing, reminds every `cooldown` seconds (the original re-sent
 *     an alert each 60 s while it held; the cooldown is that period): a
 *     re-send with the id of the key's last transition and its count;
 *   - resolves (an alert with "state": "resolved") when the value comes
 *     back past `clear` (hysteresis; default: the warning threshold) or the
 *     item stops matching or disappears.
 * A track's level is what was last sent, so the firing counts (am_firing)
 * say what the dashboard and the history say.
 *
 * The fleet kinds (issue 15) run the same machine with one key per subject:
 * host_down per remote host of the core's `hosts` topic ("up" false), and
 * source_down per state topic ("_source"."healthy" false). A subject gets a
 * key only when its condition first holds, so healthy hosts and topics cost
 * nothing; a resolution repeats the last age or error that was seen down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/util.h>

#include "alert_eval.h"

/* ---- evaluation ---- */

static int64_t (*clock_us)(void) = km_mono_us; /* the cooldowns' clock */

void am_eval_set_clock(int64_t (*now_us)(void))
{
    clock_us = now_us ? now_us : km_mono_us;
}

/* Follows "a.b.c" (an optional trailing "[*]" is left to the caller). Borrowed. */
static json_t *lookup(json_t *root, const char *path)
{
    char buf[128];
    char *save = NULL;

    snprintf(buf, sizeof buf, "%s", path);
    char *star = strstr(buf, "[*]");
    if (star)
        *star = '\0';
    json_t *cur = root;
    for (char *k = strtok_r(buf, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, k);
    return cur;
}

static int compare(enum am_op op, double v, double t, int inclusive)
{
    switch (op) {
    case AM_GT:
        return inclusive ? v >= t : v > t;
    case AM_GE:
        return v >= t;
    case AM_LT:
        return inclusive ? v <= t : v < t;
    case AM_LE:
        return v <= t;
    }
    return 0;
}

/* Sets "message"; a resolved alert says so (and why, after a reload). */
static void set_message(json_t *alert, const char *msg, const char *state,
                        const struct am_track *t)
{
    char text[420];

    if (state[0] != 'r')
        snprintf(text, sizeof text, "%s", msg);
    else if (t->reason)
        snprintf(text, sizeof text, "%s (resolved: %s)", msg, t->reason);
    else
        snprintf(text, sizeof text, "%s (resolved)", msg);
    json_object_set_new(alert, "message", json_string(text));
}

/* The alert's common members. A transition gets a new id, which becomes
   the key's open record; a re-send (t->transition NULL) carries the open
   record's id and its count, so the history folds it there. */
static json_t *new_alert(const struct am_rule *r, struct am_track *t, int level,
                         const char *state, uint64_t *next_id)
{
    char id[sizeof t->open_id]; /* "a" and 20 digits at most */

    if (t->transition || !t->open_id[0]) {
        snprintf(id, sizeof id, "a%llu", (unsigned long long)++*next_id);
        snprintf(t->open_id, sizeof t->open_id, "%s", id);
    } else {
        snprintf(id, sizeof id, "%s", t->open_id);
    }
    json_t *a =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", id, "level",
                  am_level_name(level), "type", r->type, "state", state, "rule", r->name,
                  "key", t->key, "repeats", (json_int_t)(t->transition ? 0 : t->repeats));
    if (a && t->transition)
        json_object_set_new(a, "transition", json_string(t->transition));
    if (a && t->reason)
        json_object_set_new(a, "reason", json_string(t->reason));
    return a;
}

/* Decides what one track does with this sample; appends alerts to batch. */
static void step(const struct am_rule *r, struct am_track *t, int cond, int hold,
                 json_t *batch,
                 json_t *(*describe)(const struct am_rule *, struct am_track *, int,
                                     const char *, void *),
                 void *arg)
{
    int64_t now = clock_us();
    int level = cond;

    if (!level && t->level && hold) /* hysteresis: not back past `clear` yet */
        level = t->level;
    t->streak = level ? t->streak + 1 : 0;
    if (level && t->streak < r->for_n)
        return;
    const char *tr;
    if (level > t->level)
        tr = t->level ? "escalated" : "fired";
    else if (level && level < t->level)
        tr = "de-escalated"; /* calmer but still firing: a transition too */
    else if (level && now - t->last_sent >= (int64_t)(r->cooldown * 1e6))
        tr = NULL; /* re-send */
    else if (!level && t->level)
        tr = "resolved";
    else
        return;
    if (!tr && !t->open_id[0])
        tr = "fired"; /* no open record to count it on (cannot happen) */
    t->transition = tr;
    t->repeats = tr ? 0 : t->repeats + 1;
    const char *state = tr && tr[0] == 'r' ? "resolved" : "firing";
    json_t *a = describe(r, t, state[0] == 'r' ? t->level : level, state, arg);
    if (a)
        json_array_append_new(batch, a);
    if (state[0] == 'f')
        t->last_sent = now;
    else
        t->open_id[0] = '\0';
    t->transition = NULL;
    t->level = level;
}

struct threshold_arg {
    double value;      /* sample */
    double threshold;  /* threshold crossed */
    uint64_t *next_id; /* the history's ids */
};

static json_t *describe_threshold(const struct am_rule *r, struct am_track *t, int level,
                                  const char *state, void *argp)
{
    struct threshold_arg *a = argp;
    char msg[400];
    json_t *alert = new_alert(r, t, level, state, a->next_id);

    am_render(msg, sizeof msg, r, a->value, a->threshold, NULL, NULL, level);
    set_message(alert, msg, state, t);
    json_object_set_new(alert, "value", json_real(a->value));
    json_object_set_new(alert, "threshold", json_real(a->threshold));
    return alert;
}

/* The threshold crossed at level (as eval_threshold picks it). */
static double threshold_of(const struct am_rule *r, int level)
{
    return level >= 2 && r->has_critical ? r->critical
           : r->has_warning              ? r->warning
                                         : r->critical;
}

static void eval_threshold(struct am_rule *r, json_t *msg, json_t *batch,
                           uint64_t *next_id)
{
    json_t *v = lookup(msg, r->path);

    if (!json_is_number(v))
        return; /* source failing or field absent: no verdict */
    double x = json_number_value(v);
    struct am_track *t = &r->tracks[0];
    t->value = x; /* what a resolution by reload repeats */
    int cond = 0;
    if (r->has_critical && compare(r->op, x, r->critical, 1))
        cond = 2;
    else if (r->has_warning && compare(r->op, x, r->warning, 0))
        cond = 1;
    int hold = compare(r->op, x, r->clear, 0);
    int level_now = cond ? cond : (t->level && hold ? t->level : 0);
    struct threshold_arg a = {x, threshold_of(r, level_now), next_id};
    step(r, t, cond, hold, batch, describe_threshold, &a);
}

struct match_arg {
    const char *matched; /* value that matched (or the last value seen) */
    uint64_t *next_id;   /* the history's ids */
};

static json_t *describe_match(const struct am_rule *r, struct am_track *t, int level,
                              const char *state, void *argp)
{
    struct match_arg *a = argp;
    char msg[400];
    json_t *alert = new_alert(r, t, level, state, a->next_id);

    am_render(msg, sizeof msg, r, 0, 0, t->item, a->matched, level);
    set_message(alert, msg, state, t);
    json_object_set_new(alert, "item", json_string(t->item));
    if (strcmp(r->topic, "containers") == 0)
        json_object_set_new(alert, "container_name", json_string(t->item));
    if (a->matched)
        json_object_set_new(alert, "status", json_string(a->matched));
    return alert;
}

/* The item member as text ("" when absent). */
static void member_text(json_t *item, const char *field, char *buf, size_t len)
{
    json_t *v = lookup(item, field);

    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "true" : "false");
    else
        buf[0] = '\0';
}

/* The key of item; a new one when create (NULL: none, or the table is
   full). */
static struct am_track *track_for(struct am_rule *r, const char *item, int create)
{
    for (int i = 0; i < r->n_tracks; i++)
        if (strcmp(r->tracks[i].item, item) == 0)
            return &r->tracks[i];
    if (!create || r->n_tracks == AM_MAX_TRACKS)
        return NULL;
    struct am_track *t = &r->tracks[r->n_tracks++];
    memset(t, 0, sizeof *t);
    snprintf(t->item, sizeof t->item, "%s", item);
    snprintf(t->key, sizeof t->key, "%s_%s", r->type, item);
    return t;
}

static void eval_match(struct am_rule *r, json_t *msg, json_t *batch, uint64_t *next_id)
{
    json_t *items = lookup(msg, r->path);
    size_t i;
    json_t *item;

    if (!json_is_array(items))
        return;
    for (int k = 0; k < r->n_tracks; k++)
        r->tracks[k].seen = 0;
    json_array_foreach(items, i, item)
    {
        char name[96], value[64];
        member_text(item, r->name_field, name, sizeof name);
        struct am_track *t = name[0] ? track_for(r, name, 1) : NULL;
        if (!t)
            continue;
        t->seen = 1;
        const char *matched = NULL;
        for (int c = 0; c < r->n_clauses && !matched; c++) {
            member_text(item, r->clauses[c].field, value, sizeof value);
            int eq = strcmp(value, r->clauses[c].value) == 0;
            if (eq != r->clauses[c].negate && (value[0] || r->clauses[c].negate))
                matched = value;
        }
        char first[64];
        member_text(item, r->clauses[0].field, first, sizeof first);
        if (matched) /* what a resolution by reload repeats */
            snprintf(t->detail, sizeof t->detail, "%s", matched);
        struct match_arg a = {matched ? matched : first, next_id};
        step(r, t, matched ? r->match_level : 0, 0, batch, describe_match, &a);
    }
    for (int k = 0; k < r->n_tracks; k++) { /* gone from the list: resolved */
        struct am_track *t = &r->tracks[k];
        if (!t->seen && t->level) {
            struct match_arg a = {"gone", next_id};
            t->streak = 0;
            step(r, t, 0, 0, batch, describe_match, &a);
        }
    }
}

/* host_down and source_down alerts: the subject's name and what was seen. */
static json_t *describe_fleet(const struct am_rule *r, struct am_track *t, int level,
                              const char *state, void *argp)
{
    char msg[400];
    json_t *alert = new_alert(r, t, level, state, argp);

    if (r->kind == AM_HOST_DOWN) {
        am_render(msg, sizeof msg, r, t->value, 0, t->item, NULL, level);
        json_object_set_new(alert, "host", json_string(t->item));
        json_object_set_new(alert, "value", json_real(t->value));
    } else {
        am_render(msg, sizeof msg, r, t->value, 0, t->item, t->detail, level);
        json_object_set_new(alert, "topic", json_string(t->item));
        json_object_set_new(alert, "error", json_string(t->detail));
        json_object_set_new(alert, "failures", json_integer((json_int_t)t->value));
    }
    set_message(alert, msg, state, t);
    json_object_set_new(alert, "item", json_string(t->item));
    return alert;
}

static void eval_host_down(struct am_rule *r, json_t *msg, json_t *batch,
                           uint64_t *next_id)
{
    json_t *hosts = json_object_get(msg, "hosts"), *h;
    const char *local = json_string_value(json_object_get(msg, "local"));
    size_t i;

    if (!json_is_array(hosts))
        return; /* not a list: no verdict on anyone */
    for (int k = 0; k < r->n_tracks; k++)
        r->tracks[k].seen = 0;
    json_array_foreach(hosts, i, h)
    {
        const char *name = json_string_value(json_object_get(h, "name"));
        json_t *up = json_object_get(h, "up"), *age = json_object_get(h, "age_s");
        if (!name || !*name || !json_is_boolean(up) ||
            json_is_true(json_object_get(h, "local")) || (local && !strcmp(name, local)))
            continue; /* this host is up while it runs */
        int down = json_is_false(up);
        struct am_track *t = track_for(r, name, down);
        if (!t)
            continue; /* up and never down: nothing to say */
        t->seen = 1;
        if (down)
            t->value = json_is_number(age) ? json_number_value(age) : 0;
        step(r, t, down ? r->match_level : 0, 0, batch, describe_fleet, next_id);
    }
    for (int k = 0; k < r->n_tracks; k++) { /* forgotten by the core: resolved */
        struct am_track *t = &r->tracks[k];
        if (!t->seen && t->level) {
            t->streak = 0;
            step(r, t, 0, 0, batch, describe_fleet, next_id);
        }
    }
}

void am_eval_source(struct am_rule *r, const char *topic, json_t *msg, json_t *batch,
                    uint64_t *next_id)
{
    json_t *src = json_object_get(msg, "_source");
    json_t *healthy = json_object_get(src, "healthy");

    if (r->kind != AM_SOURCE_DOWN || !json_is_boolean(healthy) ||
        (strcmp(r->topic, "*") != 0 && strcmp(r->topic, topic) != 0))
        return;
    int down = json_is_false(healthy);
    struct am_track *t = track_for(r, topic, down);
    if (!t)
        return;
    if (down) {
        const char *err = json_string_value(json_object_get(src, "error"));
        json_t *failures = json_object_get(src, "failures");
        snprintf(t->detail, sizeof t->detail, "%s", err && *err ? err : "unhealthy");
        t->value = json_is_integer(failures) ? (double)json_integer_value(failures) : 0;
    }
    step(r, t, down ? r->match_level : 0, 0, batch, describe_fleet, next_id);
}

void am_resolve_all(struct am_rule *r, const char *reason, json_t *batch,
                    uint64_t *next_id)
{
    for (int k = 0; k < r->n_tracks; k++) {
        struct am_track *t = &r->tracks[k];
        if (!t->level)
            continue;
        t->streak = 0;
        t->reason = reason;
        if (r->kind == AM_HOST_DOWN || r->kind == AM_SOURCE_DOWN) {
            step(r, t, 0, 0, batch, describe_fleet, next_id);
        } else if (r->is_match) {
            struct match_arg a = {t->detail, next_id};
            step(r, t, 0, 0, batch, describe_match, &a);
        } else {
            struct threshold_arg a = {t->value, threshold_of(r, t->level), next_id};
            step(r, t, 0, 0, batch, describe_threshold, &a);
        }
        t->reason = NULL;
    }
}

int am_make_tracks(struct am_rule *r)
{
    r->tracks = calloc(am_rule_itemized(r) ? AM_MAX_TRACKS : 1, sizeof *r->tracks);
    if (!r->tracks)
        return -1;
    if (!am_rule_itemized(r)) {
        r->n_tracks = 1;
        snprintf(r->tracks[0].key, sizeof r->tracks[0].key, "%s", r->type);
    }
    return 0;
}

void am_eval(struct am_rule *r, json_t *msg, json_t *batch, uint64_t *next_id)
{
    if (r->kind == AM_HOST_DOWN)
        eval_host_down(r, msg, batch, next_id);
    else if (r->kind == AM_SOURCE_DOWN)
        return; /* needs the topic's name: am_eval_source */
    else if (r->is_match)
        eval_match(r, msg, batch, next_id);
    else
        eval_threshold(r, msg, batch, next_id);
}

/* ---- firing counts ---- */

/* The item of (type, level) in alerts, appended with "firing": 0 when new.
   Borrowed; NULL on ENOMEM. */
static json_t *firing_item(json_t *alerts, const char *type, int level)
{
    const char *lv = am_level_name(level);
    size_t i;
    json_t *a;

    json_array_foreach(alerts, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "type")), type) == 0 &&
            strcmp(json_string_value(json_object_get(a, "level")), lv) == 0)
            return a;
    }
    a = json_pack("{s:s, s:s, s:i}", "type", type, "level", lv, "firing", 0);
    if (!a || json_array_append_new(alerts, a) < 0)
        return NULL;
    return a;
}

/* Adds n to the count of (type, level); -1 on ENOMEM. */
static int firing_add(json_t *alerts, const char *type, int level, int n)
{
    json_t *a = firing_item(alerts, type, level);
    json_t *f = json_object_get(a, "firing");

    if (!a)
        return -1;
    return json_integer_set(f, json_integer_value(f) + n);
}

json_t *am_firing(const struct am_rule *rules, int n_rules)
{
    json_t *alerts = json_array();
    int bad = !alerts;

    for (int i = 0; i < n_rules && !bad; i++) {
        const struct am_rule *r = &rules[i];
        int items = am_rule_itemized(r);
        int has[3] = {0, items ? r->match_level == 1 : r->has_warning,
                      items ? r->match_level == 2 : r->has_critical};
        for (int level = 1; level <= 2 && !bad; level++) {
            int n = 0;
            for (int k = 0; k < r->n_tracks; k++)
                n += r->tracks[k].level == level;
            if (has[level] || n) /* a level it raised is listed too */
                bad = firing_add(alerts, r->type, level, n) < 0;
        }
    }
    if (bad) {
        json_decref(alerts);
        return NULL;
    }
    return json_pack("{s:o}", "alerts", alerts);
}
