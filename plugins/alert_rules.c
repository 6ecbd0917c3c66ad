/*
 * alert_rules.c - the [alert NAME] rule grammar of alert_manager (see
 * alert_rules.h). etc/katomon.conf documents it for operators.
 *
 *   kind        threshold, match, host_down or source_down (default:
 *               NAME when the section is [alert host_down] or [alert
 *               source_down], else match when `match` is set, else
 *               threshold)
 *   topic       a topic name: [a-z0-9_.-], at most 64 bytes (required;
 *               source_down: optional, one topic instead of every one;
 *               host_down: none, it reads the core's `hosts`)
 *   path        steps of [A-Za-z0-9_-] joined by '.', at most 127 bytes
 *               (required); a match rule's ends in [*] (the items of a
 *               list), a threshold rule's names one number and has none
 *   match       makes it a match rule: TEST [|| TEST]..., at most 4, a TEST
 *               being FIELD == VALUE or FIELD != VALUE, FIELD a path
 *               without [*], VALUE one word
 *   level       warning or error (match, host_down, source_down rules)
 *   name_field  a path without [*] (match rules only; default name)
 *   op          > >= < <= (threshold rules only; default >)
 *   warning, critical, clear
 *               numbers (threshold rules only): at least one of warning
 *               and critical; critical no less severe than warning; clear
 *               on the resolving side of the first threshold crossed
 *   type        at most 63 printable bytes, no braces (default NAME)
 *   message     at most 255 bytes; the {placeholders} of the rule's kind
 * host_down and source_down rules have no path, match, op, thresholds or
 * name_field.
 *   enabled, for, cooldown
 *               typed keys only (the loader checks them)
 *
 * The loader checks every key's type against rule_keys before check runs;
 * here a value that is not of its type is skipped silently (reported
 * there), and so is every cross-key rule that needs it.
 */
#include "alert_rules.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <katomon/conf.h>
#include <katomon/util.h>

/* The typed keys of [alert NAME]; the loader checks these (def unused). */
static const struct km_conf_key rule_keys[] = {
    {"enabled", KM_CONF_BOOL, NULL, 0, 0, "false turns the rule off"},
    {"topic", KM_CONF_STRING, NULL, 0, 0, "topic the rule watches"},
    {"path", KM_CONF_STRING, NULL, 0, 0, "value in each message"},
    {"op", KM_CONF_STRING, NULL, 0, 0, "comparison with the thresholds"},
    {"warning", KM_CONF_DOUBLE, NULL, 0, 0, "threshold of a warning"},
    {"critical", KM_CONF_DOUBLE, NULL, 0, 0, "threshold of an error"},
    {"clear", KM_CONF_DOUBLE, NULL, 0, 0, "where the value resolves the alert"},
    {"for", KM_CONF_INT, NULL, 1, INT_MAX, "consecutive samples before it fires"},
    {"cooldown", KM_CONF_DOUBLE, NULL, 0, 31536000,
     "seconds between reminders while it holds"},
    {"type", KM_CONF_STRING, NULL, 0, 0, "alert type sent to the dashboard"},
    {"message", KM_CONF_STRING, NULL, 0, 0, "text with {placeholders}"},
    {"match", KM_CONF_STRING, NULL, 0, 0, "condition tested on every item of path"},
    {"level", KM_CONF_STRING, NULL, 0, 0, "level of a match rule"},
    {"name_field", KM_CONF_STRING, NULL, 0, 0, "member naming an item"},
    {"kind", KM_CONF_STRING, NULL, 0, 0, "threshold, match, host_down or source_down"},
    {NULL, KM_CONF_STRING, NULL, 0, 0, NULL},
};

const struct km_conf_kind am_kinds[] = {
    {"alert", rule_keys, "an alert rule of alert_manager"},
    {NULL, NULL, NULL},
};

/* ---- placeholders ---------------------------------------------------------- */

#define FOR_THRESHOLD 1 /* means something in a threshold rule */
#define FOR_MATCH     2 /* ... in a match rule */
#define FOR_HOST      4 /* ... in a host_down rule */
#define FOR_SOURCE    8 /* ... in a source_down rule */
#define FOR_ALL       (FOR_THRESHOLD | FOR_MATCH | FOR_HOST | FOR_SOURCE)

/* Every placeholder, in the order of enum placeholder. */
static const struct {
    const char *name; /* as written between braces */
    int rules;        /* FOR_THRESHOLD | FOR_MATCH */
} placeholders[] = {
    {"value", FOR_ALL},
    {"value_pct", FOR_THRESHOLD},
    {"threshold", FOR_THRESHOLD},
    {"name", FOR_MATCH | FOR_HOST | FOR_SOURCE},
    {"matched", FOR_MATCH},
    {"type", FOR_ALL},
    {"level", FOR_ALL},
    {"host", FOR_HOST},
    {"age", FOR_HOST},
    {"topic", FOR_SOURCE},
    {"error", FOR_SOURCE},
};

/* The FOR_ bit of a kind. */
static int kind_bit(enum am_kind kind)
{
    static const int bits[] = {FOR_THRESHOLD, FOR_MATCH, FOR_HOST, FOR_SOURCE};
    return bits[kind];
}

/* The kinds' names, as `kind` spells them, in the order of enum am_kind. */
static const char *const kind_names[] = {"threshold", "match", "host_down",
                                         "source_down"};

/* Index into placeholders[]. */
enum placeholder {
    PH_VALUE,
    PH_VALUE_PCT,
    PH_THRESHOLD,
    PH_NAME,
    PH_MATCHED,
    PH_TYPE,
    PH_LEVEL,
    PH_HOST,
    PH_AGE,
    PH_TOPIC,
    PH_ERROR
};

#define N_PLACEHOLDERS ((int)(sizeof placeholders / sizeof placeholders[0]))
#define PH_UNKNOWN     (-1) /* {word} that is no placeholder */
#define PH_TEXT        (-2) /* not {word} at all: literal text */

/* What starts at p (a '{'): a placeholder (its index), an unknown {word},
   or text. *len gets the length of "{word}". */
static int placeholder_at(const char *p, size_t *len)
{
    size_t n = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_");
    if (n == 0 || p[n + 1] != '}')
        return PH_TEXT;
    *len = n + 2;
    for (int i = 0; i < N_PLACEHOLDERS; i++)
        if (strlen(placeholders[i].name) == n &&
            memcmp(placeholders[i].name, p + 1, n) == 0)
            return i;
    return PH_UNKNOWN;
}

const char *am_level_name(int level)
{
    return level >= 2 ? "error" : level == 1 ? "warning" : "info";
}

void am_render(char *out, size_t len, const struct am_rule *r, double value,
               double threshold, const char *name, const char *matched, int level)
{
    size_t n = 0, plen = 0;

    for (const char *p = r->message; *p && n + 1 < len; p++) {
        char piece[128] = "";
        int which = *p == '{' ? placeholder_at(p, &plen) : PH_TEXT;
        switch (which) {
        case PH_VALUE:
            if (r->is_match || r->kind == AM_SOURCE_DOWN) /* e.g. exited */
                snprintf(piece, sizeof piece, "%s", matched ? matched : "");
            else if (r->kind == AM_HOST_DOWN) /* seconds */
                snprintf(piece, sizeof piece, "%.0f", value);
            else
                snprintf(piece, sizeof piece, "%.1f", value);
            break;
        case PH_AGE:
            snprintf(piece, sizeof piece, "%.0f", value);
            break;
        case PH_HOST:
        case PH_TOPIC:
            snprintf(piece, sizeof piece, "%s", name ? name : "");
            break;
        case PH_ERROR:
            snprintf(piece, sizeof piece, "%s", matched ? matched : "");
            break;
        case PH_VALUE_PCT:
            snprintf(piece, sizeof piece, "%.1f", value * 100);
            break;
        case PH_THRESHOLD:
            snprintf(piece, sizeof piece, "%g", threshold);
            break;
        case PH_NAME:
            snprintf(piece, sizeof piece, "%s", name ? name : "");
            break;
        case PH_MATCHED:
            snprintf(piece, sizeof piece, "%s", matched ? matched : "");
            break;
        case PH_TYPE:
            snprintf(piece, sizeof piece, "%s", r->type);
            break;
        case PH_LEVEL:
            snprintf(piece, sizeof piece, "%s", am_level_name(level));
            break;
        default:
            out[n++] = *p;
            continue;
        }
        n += (size_t)snprintf(out + n, len - n, "%s", piece);
        if (n >= len)
            n = len - 1;
        p += plen - 1;
    }
    out[n] = '\0';
}

/* ---- reading one section ------------------------------------------------- */

/* One am_rule_parse: where problems go and how many there were. */
struct parse {
    const struct km_conf_section *sec; /* the [alert NAME] section */
    km_conf_report report;             /* the caller's report */
    void *arg;                         /* its argument */
    int problems;                      /* reported so far */
};

static void __attribute__((format(printf, 3, 4)))
problem(struct parse *ps, int line, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ps->report(ps->arg, ps->sec, line, "%s", text);
    ps->problems++;
}

static const struct km_conf_entry *entry(const struct km_conf_section *s, const char *key)
{
    for (size_t i = 0; i < s->n_entries; i++)
        if (strcmp(s->entries[i].key, key) == 0)
            return &s->entries[i];
    return NULL;
}

/* 1 and *out when `key` is set to a number, 0 when absent, -1 when it is
   not a number (the loader said so). *e gets its entry (or NULL). */
static int number(const struct km_conf_section *s, const char *key, double *out,
                  const struct km_conf_entry **e)
{
    *e = entry(s, key);
    if (!*e)
        return 0;
    return km_conf_parse_double((*e)->value, out) == 0 ? 1 : -1;
}

/* "a.b.c" of [A-Za-z0-9_-] steps, ending in "[*]" or not. Returns 0 when
   it is not such a path, 1 without [*], 2 with a trailing [*]. */
static int path_kind(const char *s, size_t len)
{
    static const char step[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    const char *end = s + len;

    for (;;) {
        const char *start = s;
        while (s < end && *s && strchr(step, *s))
            s++;
        if (s == start)
            return 0;
        if (s == end)
            return 1;
        if (end - s == 3 && memcmp(s, "[*]", 3) == 0)
            return 2;
        if (*s++ != '.')
            return 0;
    }
}

/* "  x  " -> [s, e) without the blanks. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && isspace((unsigned char)**s))
        (*s)++;
    while (*e > *s && isspace((unsigned char)(*e)[-1]))
        (*e)--;
}

/* One "FIELD ==|!= VALUE" of [s, e) into *c. 0, or -1 with *why. */
static int parse_test(const char *s, const char *e, struct am_clause *c, const char **why)
{
    const char *op = s, *f = s, *fe, *v, *ve = e;

    while (op + 1 < e && !((op[0] == '=' || op[0] == '!') && op[1] == '='))
        op++;
    if (op + 1 >= e) {
        *why = "a test has no == or !=";
        return -1;
    }
    fe = op;
    v = op + 2;
    trim(&f, &fe);
    trim(&v, &ve);
    if (path_kind(f, (size_t)(fe - f)) != 1 || fe - f >= (long)sizeof c->field) {
        *why = "FIELD is a member such as status or health.state (no [*], at most 63 "
               "characters)";
        return -1;
    }
    if (v == ve) {
        *why = "a test has no VALUE";
        return -1;
    }
    if (memchr(v, '|', (size_t)(ve - v))) {
        *why = "tests are joined with ||, not |";
        return -1;
    }
    for (const char *q = v; q < ve; q++) {
        if (isspace((unsigned char)*q) || *q == '=') {
            *why = "VALUE is one word, compared with the field's text";
            return -1;
        }
    }
    if (ve - v >= (long)sizeof c->value) {
        *why = "VALUE is longer than 63 characters";
        return -1;
    }
    snprintf(c->field, sizeof c->field, "%.*s", (int)(fe - f), f);
    snprintf(c->value, sizeof c->value, "%.*s", (int)(ve - v), v);
    c->negate = op[0] == '!';
    return 0;
}

/* "TEST [|| TEST]..." into r->clauses. 0, or -1 with *why. */
static int parse_match(const char *text, struct am_rule *r, const char **why)
{
    const char *p = text;

    r->n_clauses = 0;
    for (;;) {
        const char *bar = strstr(p, "||"), *end = bar ? bar : p + strlen(p);
        if (r->n_clauses == AM_MAX_CLAUSES) {
            *why = "at most 4 tests can be joined with ||";
            return -1;
        }
        if (parse_test(p, end, &r->clauses[r->n_clauses], why) < 0)
            return -1;
        r->n_clauses++;
        if (!bar)
            return 0;
        p = bar + 2;
    }
}

/* topic: required, a topic name. */
static void read_topic(struct parse *ps, struct am_rule *r)
{
    const struct km_conf_entry *e = entry(ps->sec, "topic");

    if (!e) {
        problem(ps, 0, "[alert %s] has no `topic`; add a line such as topic = containers",
                ps->sec->name);
        return;
    }
    if (!km_topic_name_valid(e->value))
        problem(ps, e->line,
                "bad value `%.60s` for `topic` in [alert %s]: expected a topic name such "
                "as containers or metrics (a-z, 0-9, '_', '.', '-'; at most 64 "
                "characters)",
                e->value, ps->sec->name);
    else
        snprintf(r->topic, sizeof r->topic, "%s", e->value);
}

/* path: required; its [*] must agree with the rule's kind. */
static void read_path(struct parse *ps, struct am_rule *r,
                      const struct km_conf_entry *match)
{
    const struct km_conf_entry *e = entry(ps->sec, "path");
    int kind;

    if (!e) {
        problem(ps, 0,
                "[alert %s] has no `path`; add a line such as path = "
                "aggregated.total_cpu_percent",
                ps->sec->name);
        return;
    }
    kind = path_kind(e->value, strlen(e->value));
    if (kind == 0 || strlen(e->value) >= sizeof r->path)
        problem(ps, e->line,
                "bad value `%.60s` for `path` in [alert %s]: expected a dotted path such "
                "as aggregated.total_cpu_percent (letters, digits, '_', '-'; at most 127 "
                "characters), ending in [*] for the items of a list: containers[*]",
                e->value, ps->sec->name);
    else if (match && kind != 2)
        problem(ps, e->line,
                "[alert %s] is a match rule (match at line %d): its path names a list "
                "and ends in [*], e.g. containers[*]",
                ps->sec->name, match->line);
    else if (!match && kind == 2)
        problem(ps, e->line,
                "[alert %s] is a threshold rule: its path names one number, without "
                "[*]; to test every item of a list, write a match rule (match = FIELD != "
                "VALUE)",
                ps->sec->name);
    else
        snprintf(r->path, sizeof r->path, "%s", e->value);
}

/* type: the alert type on the wire (default NAME). */
static void read_type(struct parse *ps, struct am_rule *r)
{
    const struct km_conf_entry *e = entry(ps->sec, "type");
    const char *t = e ? e->value : ps->sec->name;
    int ok = *t && strlen(t) < sizeof r->type;

    for (const char *p = t; ok && *p; p++)
        ok = isprint((unsigned char)*p) && *p != '{' && *p != '}';
    if (!ok)
        problem(ps, e ? e->line : 0,
                "bad value `%.60s` for `type` in [alert %s]: expected a name for the "
                "dashboard such as high_cpu (printable, no braces, at most 63 "
                "characters)",
                t, ps->sec->name);
    else
        snprintf(r->type, sizeof r->type, "%s", t);
}

/* message: a template with the placeholders of the rule's kind. */
static void read_message(struct parse *ps, struct am_rule *r)
{
    const struct km_conf_entry *e = entry(ps->sec, "message");
    static const char *const kinds[] = {"a threshold rule", "a match rule",
                                        "a host_down rule", "a source_down rule"};
    const char *kind = kinds[r->kind];
    int mine = kind_bit(r->kind);
    char list[160] = "";
    size_t plen;

    if (!e) { /* e.g. "container_down 'kato-redis' is exited" */
        if (r->kind == AM_MATCH)
            snprintf(r->message, sizeof r->message, "%s '{name}' is {matched}", r->type);
        else if (r->kind == AM_HOST_DOWN) /* "host B down: no message for 31 s" */
            snprintf(r->message, sizeof r->message,
                     "host {host} down: no message for "
                     "{age} s");
        else if (r->kind == AM_SOURCE_DOWN) /* "redis_bridge: source down: ..." */
            snprintf(r->message, sizeof r->message, "{topic}: source down: {error}");
        else
            snprintf(r->message, sizeof r->message, "{type}: {value}");
        return;
    }
    if (strlen(e->value) >= sizeof r->message) {
        problem(ps, e->line,
                "`message` of [alert %s] is %zu characters long; at most %zu fit: "
                "shorten it",
                ps->sec->name, strlen(e->value), sizeof r->message - 1);
        return;
    }
    for (int i = 0; i < N_PLACEHOLDERS; i++)
        if (placeholders[i].rules & mine)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s{%s}",
                     *list ? ", " : "", placeholders[i].name);
    for (const char *p = strchr(e->value, '{'); p; p = strchr(p + 1, '{')) {
        int which = placeholder_at(p, &plen);
        if (which == PH_TEXT || (which >= 0 && (placeholders[which].rules & mine)))
            continue;
        if (which == PH_UNKNOWN)
            problem(ps, e->line,
                    "unknown placeholder {%.*s} in `message` of [alert %s]; the "
                    "placeholders of %s are: %s",
                    (int)(plen - 2), p + 1, ps->sec->name, kind, list);
        else
            problem(ps, e->line,
                    "placeholder {%s} means nothing in `message` of [alert %s], %s; its "
                    "placeholders are: %s",
                    placeholders[which].name, ps->sec->name, kind, list);
    }
    snprintf(r->message, sizeof r->message, "%s", e->value);
}

/* level: warning or error (default error), of a match or fleet rule. */
static void read_level(struct parse *ps, struct am_rule *r)
{
    const struct km_conf_entry *level = entry(ps->sec, "level");

    r->match_level = 2;
    if (level && strcmp(level->value, "warning") == 0)
        r->match_level = 1;
    else if (level && strcmp(level->value, "error") != 0)
        problem(ps, level->line,
                "bad value `%.60s` for `level` in [alert %s]: expected warning or error",
                level->value, ps->sec->name);
}

/* A match rule: match, level, name_field; no threshold keys. */
static void read_match(struct parse *ps, struct am_rule *r, const struct km_conf_entry *m)
{
    static const char *const threshold_only[] = {"warning", "critical", "clear", "op"};
    const struct km_conf_entry *nf = entry(ps->sec, "name_field");
    const char *why = NULL;

    if (parse_match(m->value, r, &why) < 0)
        problem(
            ps, m->line,
            "bad value `%.60s` for `match` in [alert %s]: %s; expected FIELD == VALUE "
            "or FIELD != VALUE, such as status != running (up to 4, joined with ||)",
            m->value, ps->sec->name, why);
    read_level(ps, r);
    snprintf(r->name_field, sizeof r->name_field, "name");
    if (nf && (path_kind(nf->value, strlen(nf->value)) != 1 ||
               strlen(nf->value) >= sizeof r->name_field))
        problem(ps, nf->line,
                "bad value `%.60s` for `name_field` in [alert %s]: expected the member "
                "that names an item, such as name (no [*], at most 63 characters)",
                nf->value, ps->sec->name);
    else if (nf)
        snprintf(r->name_field, sizeof r->name_field, "%s", nf->value);
    for (size_t i = 0; i < sizeof threshold_only / sizeof threshold_only[0]; i++) {
        const struct km_conf_entry *e = entry(ps->sec, threshold_only[i]);
        if (e)
            problem(ps, e->line,
                    "`%s` belongs to threshold rules, but [alert %s] is a match rule "
                    "(match at line %d); keep either match or warning/critical",
                    e->key, ps->sec->name, m->line);
    }
}

/* kind: what the rule watches (am_rule_kind says the default); a `kind`
   that disagrees with `match` is reported. */
static void read_kind(struct parse *ps, struct am_rule *r,
                      const struct km_conf_entry *match)
{
    const struct km_conf_entry *e = entry(ps->sec, "kind");
    int k = am_rule_kind(ps->sec);

    if (k < 0) {
        problem(ps, e->line,
                "bad value `%.60s` for `kind` in [alert %s]: expected threshold, match, "
                "host_down or source_down",
                e->value, ps->sec->name);
        k = match ? AM_MATCH : AM_THRESHOLD; /* check the rest as the keys say */
    } else if (k == AM_THRESHOLD && match) {
        problem(ps, match->line,
                "`match` makes [alert %s] a match rule, but it says kind = threshold at "
                "line %d: remove one of them",
                ps->sec->name, e->line);
        k = AM_MATCH; /* check the rest as the keys say: one problem */
    } else if (k == AM_MATCH && !match) {
        problem(ps, e->line,
                "[alert %s] is a match rule (kind = match) without `match`; add a line "
                "such as match = status != running",
                ps->sec->name);
    }
    r->kind = (enum am_kind)k;
    r->is_match = k == AM_MATCH;
}

/* A host_down or source_down rule: none of the keys that read a path; a
   source_down rule may name one topic (default: every state topic). */
static void read_fleet(struct parse *ps, struct am_rule *r)
{
    static const char *const not_here[] = {"path",     "match", "op",         "warning",
                                           "critical", "clear", "name_field", "topic"};
    const char *what = r->kind == AM_HOST_DOWN
                           ? "it watches every remote host in the core's `hosts` topic"
                           : "it watches the \"_source\" of every state topic (or of "
                             "`topic`)";
    size_t n = sizeof not_here / sizeof not_here[0];

    if (r->kind == AM_SOURCE_DOWN)
        n--; /* topic: one topic rather than every one */
    for (size_t i = 0; i < n; i++) {
        const struct km_conf_entry *e = entry(ps->sec, not_here[i]);
        if (e)
            problem(ps, e->line,
                    "`%s` means nothing in [alert %s], a %s rule: %s; remove it", e->key,
                    ps->sec->name, kind_names[r->kind], what);
    }
    if (r->kind == AM_HOST_DOWN)
        snprintf(r->topic, sizeof r->topic, "hosts");
    else if (entry(ps->sec, "topic"))
        read_topic(ps, r);
    else
        snprintf(r->topic, sizeof r->topic, "*");
    read_level(ps, r);
}

/* +1 for > and >=, -1 for < and <=: the direction that is worse. */
static int op_dir(enum am_op op)
{
    return op == AM_GT || op == AM_GE ? 1 : -1;
}

/* A threshold rule: op, warning and/or critical in the order op implies,
   clear on the resolving side; no match-rule keys. */
static void read_threshold(struct parse *ps, struct am_rule *r)
{
    static const char *const ops[] = {">", ">=", "<", "<="};
    static const char *const match_only[] = {"level", "name_field"};
    const struct km_conf_entry *op = entry(ps->sec, "op"), *w, *c, *cl;
    int hw = number(ps->sec, "warning", &r->warning, &w);
    int hc = number(ps->sec, "critical", &r->critical, &c);
    int hcl = number(ps->sec, "clear", &r->clear, &cl);
    int op_ok = 1, dir;

    r->op = AM_GT;
    if (op) {
        size_t i = 0;
        while (i < 4 && strcmp(op->value, ops[i]) != 0)
            i++;
        if (i < 4)
            r->op = (enum am_op)i;
        else
            problem(ps, op->line,
                    "bad value `%.60s` for `op` in [alert %s]: expected one of >, >=, <, "
                    "<=",
                    op->value, ps->sec->name);
        op_ok = i < 4;
    }
    for (size_t i = 0; i < sizeof match_only / sizeof match_only[0]; i++) {
        const struct km_conf_entry *e = entry(ps->sec, match_only[i]);
        if (e)
            problem(ps, e->line,
                    "`%s` belongs to match rules; a threshold rule is a warning past "
                    "`warning` and an error past `critical`: remove `%s`",
                    e->key, e->key);
    }
    r->has_warning = hw == 1;
    r->has_critical = hc == 1;
    if (hcl != 1) /* no hysteresis: back past the first threshold */
        r->clear = hw == 1 ? r->warning : r->critical;
    if (hw == 0 && hc == 0) {
        problem(ps, 0,
                "[alert %s] has no threshold; add warning = N and/or critical = N (or "
                "match = FIELD != VALUE for a condition rule)",
                ps->sec->name);
        return;
    }
    if (hw < 0 || hc < 0 || !op_ok)
        return; /* reported; nothing to compare */
    dir = op_dir(r->op);
    if (hw == 1 && hc == 1 && dir * (r->critical - r->warning) < 0)
        problem(ps, c->line,
                "critical (%s) is less severe than warning (%s) for op %s; critical "
                "must be %s warning: swap them",
                c->value, w->value, ops[r->op], dir > 0 ? ">=" : "<=");
    const struct km_conf_entry *first = hw == 1 ? w : c;
    double at = hw == 1 ? r->warning : r->critical;
    if (hcl == 1 && dir * (r->clear - at) > 0)
        problem(ps, cl->line,
                "clear (%s) is %s %s (%s): with op %s the alert resolves when the value "
                "comes back past clear, so clear must be %s %s",
                cl->value, dir > 0 ? "above" : "below", first->key, first->value,
                ops[r->op], dir > 0 ? "<=" : ">=", first->value);
}

int am_rule_parse(const struct km_conf_section *sec, struct am_rule *r,
                  km_conf_report report, void *arg)
{
    struct parse ps = {sec, report, arg, 0};
    const struct km_conf_entry *match = entry(sec, "match"), *e;
    long long n;
    double d;

    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", sec->name);
    r->is_match = match != NULL;
    r->for_n = 1;
    r->cooldown = 60;
    if ((e = entry(sec, "for")) && km_conf_parse_int(e->value, &n) == 0 && n >= 1 &&
        n <= INT_MAX)
        r->for_n = (unsigned)n;
    if ((e = entry(sec, "cooldown")) && km_conf_parse_double(e->value, &d) == 0 && d >= 0)
        r->cooldown = d;
    read_kind(&ps, r, match);
    read_type(&ps, r);
    if (r->kind == AM_HOST_DOWN || r->kind == AM_SOURCE_DOWN) {
        read_fleet(&ps, r);
    } else {
        read_topic(&ps, r);
        /* kind = match without `match` was reported: check the path as a list */
        read_path(&ps, r, r->is_match ? (match ? match : entry(sec, "kind")) : NULL);
        if (r->is_match && match)
            read_match(&ps, r, match);
        else if (!r->is_match)
            read_threshold(&ps, r);
    }
    read_message(&ps, r);
    return ps.problems;
}

int am_rule_kind(const struct km_conf_section *sec)
{
    const struct km_conf_entry *e = entry(sec, "kind");

    if (e) {
        for (int k = 0; k < (int)(sizeof kind_names / sizeof kind_names[0]); k++)
            if (strcmp(e->value, kind_names[k]) == 0)
                return k;
        return -1;
    }
    if (strcmp(sec->name, "host_down") == 0)
        return AM_HOST_DOWN;
    if (strcmp(sec->name, "source_down") == 0)
        return AM_SOURCE_DOWN;
    return entry(sec, "match") ? AM_MATCH : AM_THRESHOLD;
}

/* Reports nothing: an empty built-in section has no problem to report. */
static void __attribute__((format(printf, 4, 5)))
report_none(void *arg, const struct km_conf_section *sec, int line, const char *fmt, ...)
{
    (void)arg, (void)sec, (void)line, (void)fmt;
}

int am_rule_builtin(enum am_kind kind, struct am_rule *r)
{
    struct km_conf_section sec = {"alert", NULL, "(built in)", 0, NULL, 0};

    if (kind != AM_HOST_DOWN && kind != AM_SOURCE_DOWN)
        return -1;
    sec.name = kind_names[kind];
    return am_rule_parse(&sec, r, report_none, NULL) == 0 ? 0 : -1;
}

int am_rule_same(const struct am_rule *a, const struct am_rule *b)
{
    if (strcmp(a->name, b->name) || strcmp(a->type, b->type) || a->kind != b->kind ||
        strcmp(a->topic, b->topic) || strcmp(a->path, b->path) ||
        strcmp(a->message, b->message) || strcmp(a->name_field, b->name_field) ||
        a->is_match != b->is_match || a->op != b->op ||
        a->has_warning != b->has_warning || a->has_critical != b->has_critical ||
        a->warning != b->warning || a->critical != b->critical || a->clear != b->clear ||
        a->for_n != b->for_n || a->cooldown != b->cooldown ||
        a->match_level != b->match_level || a->n_clauses != b->n_clauses)
        return 0;
    for (int i = 0; i < a->n_clauses; i++)
        if (strcmp(a->clauses[i].field, b->clauses[i].field) ||
            a->clauses[i].negate != b->clauses[i].negate ||
            strcmp(a->clauses[i].value, b->clauses[i].value))
            return 0;
    return 1;
}

int am_rule_itemized(const struct am_rule *r)
{
    return r->is_match || r->kind != AM_THRESHOLD; /* is_match: rules made by hand */
}

int am_rule_enabled(const struct km_conf_section *sec)
{
    const struct km_conf_entry *e = entry(sec, "enabled");
    int on = 1;
    if (e && km_conf_parse_bool(e->value, &on) < 0)
        on = 1; /* not a boolean: reported by the loader */
    return on;
}

int am_check(const struct km_conf_section *own,
             const struct km_conf_section *const *sections, size_t n_sections,
             km_conf_report report, void *arg)
{
    struct am_rule rule;
    int problems = 0, enabled = 0;

    (void)own; /* its keys are all typed: the loader checks them */
    for (size_t i = 0; i < n_sections; i++) {
        problems += am_rule_parse(sections[i], &rule, report, arg);
        if (am_rule_enabled(sections[i]) && ++enabled == AM_MAX_RULES + 1) {
            report(arg, sections[i], 0,
                   "[alert %s] is enabled rule %d; alert_manager evaluates at most %d: "
                   "remove rules, or set enabled = false in some",
                   sections[i]->name, enabled, AM_MAX_RULES);
            problems++;
        }
    }
    return problems;
}
