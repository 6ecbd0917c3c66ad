/*
 * config.c - katomon.conf (DESIGN section 7), read with libinih.
 *
 * inih's handler sees neither line numbers nor section headers, and inih
 * silently splits a line longer than its buffer. So inih reads the file
 * through our own reader (km_read_line): it reads whole lines, counts them,
 * refuses over-long ones, and reads section headers itself, which lets an
 * empty [plugin NAME] section count and a duplicate one be reported with
 * both line numbers. The reader mirrors inih's rules for what a line is
 * (comment, header, key = value, indented continuation), so the handler
 * always knows which line and section it is called for. inih still splits
 * key = value lines and its own syntax errors are reported as such.
 *
 * While parsing, every section ([core] too) is a list of entries, which is
 * what duplicate keys and continuation lines need; values of [core],
 * [http] and [websocket] are stored into struct km_config as they are
 * read. Only [plugin NAME] and [alert NAME] sections stay in cfg->sections.
 *
 * Decisions worth knowing:
 *  - Keys and section kinds are case-sensitive (a near-miss gets a hint).
 *  - An indented line continues the previous key's value (inih's
 *    multi-line values; joined with one space), which is how a value
 *    longer than a line is written. An indented line that looks like
 *    `key = value` or `[section]` is refused instead, since it is almost
 *    always a key that was meant to stand on its own.
 *  - An empty pid_file, allowed_origins or auth_token means "none" (NULL).
 *  - Sizes take k/K, M, G suffixes (powers of 1024); durations are plain
 *    seconds, fractions allowed.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <ini.h>

#include "log.h"

/* Makefile.am defines these from the configured paths; fallbacks for a bare
   compile (e.g. a test built by hand). */
#ifndef KM_PLUGIN_DIR
#define KM_PLUGIN_DIR "/usr/local/lib/katomon/plugins"
#endif
#ifndef KM_STATE_DIR
#define KM_STATE_DIR "/usr/local/var/lib/katomon"
#endif
#ifndef KM_VENDOR_ROOT
#define KM_VENDOR_ROOT "/usr/share/javascript"
#endif
#ifndef KM_WEB_ROOT
#define KM_WEB_ROOT "/usr/local/share/katomon/web"
#endif

#define KM_KIB        1024.0
#define KM_SIZE_MAX   (1024.0 * 1024 * 1024) /* 1G: more is a typo, not a need */
#define KM_NAME_MAX   63                     /* [plugin NAME] / [alert NAME] */
#define KM_TOPIC_MAX  64                     /* as in struct km_topic_def */
#define KM_SHOW       60                     /* bytes of a bad value quoted back */
#define KM_IDENT      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
#define KM_NOFIELD    ((size_t)-1) /* key is checked, not stored in km_config */
#define KM_CFG(field) offsetof(struct km_config, field)

/* What the value of a built-in key must be. */
enum km_vtype {
    KM_V_STRING,   /* non-empty text */
    KM_V_OPTSTR,   /* any text; empty means "none" (stored as NULL) */
    KM_V_BOOL,     /* see km_parse_bool */
    KM_V_INT,      /* integer within [min, max], stored as int */
    KM_V_DOUBLE,   /* number within [min, max] */
    KM_V_SIZE,     /* bytes within [min, max], k/K, M or G suffix allowed */
    KM_V_LOGLEVEL, /* error|warning|notice|info|debug */
    KM_V_OP,       /* alert comparison: > >= < <= */
    KM_V_ALEVEL,   /* alert level of a match rule: warning|error */
    KM_V_TOPIC,    /* topic name: [a-z0-9_.-], at most 64 bytes */
    KM_V_PATH,     /* dotted path; a step may end in [*] (every array item) */
    KM_V_MATCH,    /* FIELD == VALUE or FIELD != VALUE */
};

/* One key a built-in section accepts. */
struct km_key {
    const char *name;   /* key; NULL ends a table (must stay the first member) */
    enum km_vtype type; /* what its value must be */
    double min, max;    /* INT/DOUBLE/SIZE bounds, inclusive */
    int min_open;       /* 1: min itself is refused (update_interval > 0) */
    const char *unit;   /* "seconds", shown in errors; NULL: none */
    size_t offset;      /* field of struct km_config, or KM_NOFIELD */
};

/* What one kind of section accepts. */
struct km_sect_spec {
    const char *kind;          /* as written in the header (must stay first) */
    int named;                 /* 1: [KIND NAME]; 0: [KIND] */
    int open;                  /* 1: other keys are kept, checked later */
    const struct km_key *keys; /* keys checked here */
    const char *hint;          /* a valid header, for error messages */
};

/* A section being built: the public view plus what growing it needs. */
struct km_sect {
    struct km_conf_section pub;      /* what callers see; first, so casts work */
    struct km_conf_entry *ents;      /* == pub.entries, but writable */
    size_t cap;                      /* entries allocated */
    const struct km_sect_spec *spec; /* rules of its kind */
};

/* State of one km_config_load. */
struct km_parse {
    struct km_config *cfg; /* being filled; owns the sections */
    FILE *fp;              /* the file */
    char *buf;             /* getline() buffer */
    size_t bufcap;         /* its size */
    int line;              /* number of the line last read */
    int prev_key;          /* mirrors inih: an indented line continues a key */
    int cont;              /* the current line is such a continuation */
    struct km_sect *cur;   /* section being read; NULL before any header */
    int syntax_line;       /* first line inih will call a syntax error */
    char syntax_why[160];  /* what is wrong with that line */
    int failed;            /* err holds an error; stop reading */
    int err_line;          /* its line; 0: none (file-level error) */
    char err[1024];        /* "FILE:LINE: what; what to do" */
};

/* ---- key tables -------------------------------------------------------- */

// clang-format off
/* clang-format would spread each of these over four lines */
#define KM_STR(n, f)  {.name = n, .type = KM_V_STRING, .offset = KM_CFG(f)}
#define KM_OPT(n, f)  {.name = n, .type = KM_V_OPTSTR, .offset = KM_CFG(f)}
#define KM_BOOL(n, f) {.name = n, .type = KM_V_BOOL, .offset = KM_CFG(f)}
#define KM_SIZE(n, f) \
    {.name = n, .type = KM_V_SIZE, .min = 1, .max = KM_SIZE_MAX, .offset = KM_CFG(f)}
#define KM_SECS(n, f, lo, open, hi) \
    {.name = n, .type = KM_V_DOUBLE, .min = lo, .max = hi, .min_open = open, \
     .unit = "seconds", .offset = KM_CFG(f)}
#define KM_CHECK(n, t) {.name = n, .type = t, .offset = KM_NOFIELD}
#define KM_ANYNUM(n) \
    {.name = n, .type = KM_V_DOUBLE, .min = -INFINITY, .max = INFINITY, .offset = KM_NOFIELD}
// clang-format on

static const struct km_key core_keys[] = {
    KM_STR("plugin_dir", plugin_dir),
    KM_STR("state_dir", state_dir),
    KM_OPT("pid_file", pid_file),
    {.name = "log_level", .type = KM_V_LOGLEVEL, .offset = KM_CFG(log_level)},
    KM_BOOL("plugin_failure_fatal", plugin_failure_fatal),
    {.name = NULL},
};

static const struct km_key http_keys[] = {
    KM_STR("bind", bind),
    {.name = "port", .type = KM_V_INT, .min = 0, .max = 65535, .offset = KM_CFG(port)},
    KM_STR("web_root", web_root),
    KM_OPT("vendor_root", vendor_root),
    KM_OPT("allowed_origins", allowed_origins),
    KM_OPT("auth_token", auth_token),
    {.name = "max_connections",
     .type = KM_V_INT,
     .min = 1,
     .max = INT_MAX,
     .offset = KM_CFG(max_connections)},
    KM_SIZE("max_request_bytes", max_request_bytes),
    {.name = NULL},
};

static const struct km_key websocket_keys[] = {
    KM_BOOL("enabled", enabled),
    KM_SECS("update_interval", update_interval, 0, 1, 3600),
    KM_SIZE("max_message_bytes", max_message_bytes),
    KM_SIZE("max_queue_bytes", max_queue_bytes),
    KM_SECS("ping_interval", ping_interval, 0, 0, 86400),
    KM_SECS("idle_timeout", idle_timeout, 0, 0, 86400),
    {.name = NULL},
};

/* The core's own keys of [plugin NAME]; the plugin's are checked at load. */
static const struct km_key plugin_keys[] = {
    KM_CHECK("file", KM_V_STRING),
    KM_CHECK("enabled", KM_V_BOOL),
    {.name = NULL},
};

/* [alert NAME]: read by the alert_manager plugin, validated here so a bad
   rule stops start-up with file:line like any other key. */
static const struct km_key alert_keys[] = {
    KM_CHECK("enabled", KM_V_BOOL),
    KM_CHECK("topic", KM_V_TOPIC),
    KM_CHECK("path", KM_V_PATH),
    KM_CHECK("op", KM_V_OP),
    KM_ANYNUM("warning"),
    KM_ANYNUM("critical"),
    KM_ANYNUM("clear"),
    {.name = "for", .type = KM_V_INT, .min = 1, .max = INT_MAX, .offset = KM_NOFIELD},
    {.name = "cooldown",
     .type = KM_V_DOUBLE,
     .min = 0,
     .max = INFINITY,
     .unit = "seconds",
     .offset = KM_NOFIELD},
    KM_CHECK("type", KM_V_STRING),
    KM_CHECK("message", KM_V_STRING),
    KM_CHECK("match", KM_V_MATCH),
    KM_CHECK("level", KM_V_ALEVEL),
    KM_CHECK("name_field", KM_V_STRING),
    {.name = NULL},
};

static const struct km_sect_spec sect_specs[] = {
    {"core", 0, 0, core_keys, "[core]"},
    {"http", 0, 0, http_keys, "[http]"},
    {"websocket", 0, 0, websocket_keys, "[websocket]"},
    {"plugin", 1, 1, plugin_keys, "[plugin NAME]"},
    {"alert", 1, 0, alert_keys, "[alert NAME]"},
    {NULL, 0, 0, NULL, NULL},
};

/* ---- small helpers ----------------------------------------------------- */

static char *km_lskip(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    return s;
}

static char *km_rstrip(char *s)
{
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* As inih's ini_find_chars_or_comment: the first of `chars`, or an inline
   ';' comment (one that follows whitespace), or the end. Must match inih,
   or the reader and inih would disagree about a line. */
static char *km_find_chars_or_comment(char *s, const char *chars)
{
    int was_space = 0;
    while (*s && (!chars || !strchr(chars, *s)) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* Records the first error, "FILE:LINE: ..." ("FILE: ..." when line is 0). */
__attribute__((format(printf, 3, 4))) static void km_fail(struct km_parse *p, int line,
                                                          const char *fmt, ...)
{
    if (p->failed)
        return;
    const char *file = p->cfg && p->cfg->path ? p->cfg->path : "katomon.conf";
    int n = line > 0 ? snprintf(p->err, sizeof p->err, "%s:%d: ", file, line)
                     : snprintf(p->err, sizeof p->err, "%s: ", file);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof p->err)
        vsnprintf(p->err + n, sizeof p->err - (size_t)n, fmt, ap);
    va_end(ap);
    p->failed = 1;
    p->err_line = line;
}

static void km_oom(struct km_parse *p)
{
    km_fail(p, 0, "out of memory");
}

/* "[kind]" or "[kind name]", for messages. */
static const char *km_label(const struct km_conf_section *sec, char *buf, size_t n)
{
    if (sec->name && *sec->name)
        snprintf(buf, n, "[%s %s]", sec->kind, sec->name);
    else
        snprintf(buf, n, "[%s]", sec->kind);
    return buf;
}

/* Tables of keys and section specs all start with their name, so one pair
   of helpers (suggest, list) serves them all. */
static const char *km_tab_name(const void *tab, size_t stride, size_t i)
{
    return *(const char *const *)(const void *)((const char *)tab + i * stride);
}

/* Edit distance with transpositions ("prot" -> "port" is 1), ignoring case. */
static size_t km_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d[32][32];
    if (la >= 32 || lb >= 32)
        return SIZE_MAX;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (unsigned char)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (unsigned char)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]),
                cb = tolower((unsigned char)b[j - 1]);
            unsigned v = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1u < v)
                v = d[i - 1][j] + 1u;
            if (d[i][j - 1] + 1u < v)
                v = d[i][j - 1] + 1u;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1u < v)
                v = d[i - 2][j - 2] + 1u;
            d[i][j] = (unsigned char)v;
        }
    }
    return d[la][lb];
}

/* The closest name in tab to word, if close enough to be a typo. */
static const char *km_suggest(const char *word, const void *tab, size_t stride)
{
    size_t best = strlen(word) < 4 ? 1 : 2;
    const char *found = NULL;
    for (size_t i = 0; km_tab_name(tab, stride, i); i++) {
        size_t d = km_distance(word, km_tab_name(tab, stride, i));
        if (d <= best) {
            best = d;
            found = km_tab_name(tab, stride, i);
        }
    }
    return found;
}

/* "a, b, c" from tab's names. */
static const char *km_list(const void *tab, size_t stride, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; km_tab_name(tab, stride, i) && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "",
                         km_tab_name(tab, stride, i));
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

/* " did you mean `x`?" or "". */
static const char *km_hint(const char *word, const void *tab, size_t stride, char *buf,
                           size_t n)
{
    const char *s = km_suggest(word, tab, stride);
    if (s)
        snprintf(buf, n, " did you mean `%s`?", s);
    else
        buf[0] = '\0';
    return buf;
}

/* Where a value is quoted back in an error: at most KM_SHOW bytes. */
static int km_show_len(const char *v)
{
    return strlen(v) > KM_SHOW ? KM_SHOW : (int)strlen(v);
}

static const char *km_show_more(const char *v)
{
    return strlen(v) > KM_SHOW ? "..." : "";
}

/* ---- value parsers ------------------------------------------------------- */

int km_parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
            *out = strcasecmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

int km_parse_int(const char *text, long long *out)
{
    char *end;
    /* strtoll would skip leading blanks and accept "12abc" up to "12" */
    if (!text || !*text || isspace((unsigned char)*text))
        return -1;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int km_parse_double(const char *text, double *out)
{
    char *end;
    if (!text || !*text)
        return -1;
    /* plain decimal only: strtod would also take "nan", "inf" and hex */
    if (text[strspn(text, "0123456789+-.eE")] != '\0')
        return -1;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Bytes, with an optional k/K, M or G suffix (powers of 1024). */
static int km_parse_size(const char *text, size_t *out)
{
    char *end;
    size_t digits = strspn(text, "0123456789");
    if (digits == 0)
        return -1;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned long long mul = 1;
    if (errno != 0)
        return -1;
    if (*end == 'k' || *end == 'K')
        mul = 1024ULL;
    else if (*end == 'M')
        mul = 1024ULL * 1024;
    else if (*end == 'G')
        mul = 1024ULL * 1024 * 1024;
    else if (*end != '\0')
        return -1;
    if (mul > 1 && end[1] != '\0')
        return -1;
    if (v > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

/* +1 for > and >=, -1 for < and <=, 0 for anything else. */
static int km_op_dir(const char *op)
{
    if (strcmp(op, ">") == 0 || strcmp(op, ">=") == 0)
        return 1;
    if (strcmp(op, "<") == 0 || strcmp(op, "<=") == 0)
        return -1;
    return 0;
}

static int km_topic_ok(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-");
    return n > 0 && n <= KM_TOPIC_MAX && s[n] == '\0';
}

/* step('.'step)*, a step being [A-Za-z0-9_-]+, optionally followed by [*]. */
static int km_path_ok(const char *s, size_t len, int allow_star)
{
    const char *end = s + len;
    for (;;) {
        size_t n = 0;
        while (s + n < end && strchr(KM_IDENT, s[n]) && s[n])
            n++;
        if (n == 0)
            return 0;
        s += n;
        if (allow_star && end - s >= 3 && memcmp(s, "[*]", 3) == 0)
            s += 3;
        if (s == end)
            return 1;
        if (*s++ != '.')
            return 0;
    }
}

/* FIELD == VALUE or FIELD != VALUE; FIELD a path without [*], VALUE any
   non-empty text (compared with the field's value as a string). */
static int km_match_ok(const char *s)
{
    const char *eq = strstr(s, "=="), *ne = strstr(s, "!=");
    const char *op = !eq ? ne : !ne ? eq : eq < ne ? eq : ne;
    if (!op)
        return 0;
    const char *f = s, *fe = op;
    while (f < fe && isspace((unsigned char)*f))
        f++;
    while (fe > f && isspace((unsigned char)fe[-1]))
        fe--;
    const char *v = op + 2;
    while (isspace((unsigned char)*v))
        v++;
    return km_path_ok(f, (size_t)(fe - f), 0) && *v != '\0';
}

/* Plugin and alert names end up in file names, topic keys and JSON. */
static int km_name_ok(const char *s)
{
    size_t n = strspn(s, KM_IDENT);
    return n > 0 && n <= KM_NAME_MAX && s[n] == '\0';
}

/* ---- checking and storing built-in keys ---------------------------------- */

static int km_in_range(const struct km_key *k, double v)
{
    return (k->min_open ? v > k->min : v >= k->min) && v <= k->max;
}

/* Replaces the string at *field with a copy of text (NULL: none). */
static int km_set_str(char **field, const char *text)
{
    char *copy = NULL;
    if (text && !(copy = strdup(text)))
        return -2;
    free(*field);
    *field = copy;
    return 0;
}

/* Numeric keys: 0 and the value in *out, or -1. */
static int km_number(const struct km_key *k, const char *text, double *out)
{
    long long i;
    size_t z;
    if (k->type == KM_V_INT && km_parse_int(text, &i) == 0)
        *out = (double)i;
    else if (k->type == KM_V_SIZE && km_parse_size(text, &z) == 0)
        *out = (double)z;
    else if (k->type != KM_V_DOUBLE || km_parse_double(text, out) < 0)
        return -1;
    return km_in_range(k, *out) ? 0 : -1;
}

/* Checks text against k and, when k has a field, stores it in cfg.
   Returns 0, -1 (bad value) or -2 (out of memory). */
static int km_apply(const struct km_key *k, const char *text, struct km_config *cfg)
{
    void *field = k->offset == KM_NOFIELD ? NULL : (char *)cfg + k->offset;
    double num;
    int b, ok;
    enum km_log_level level;

    switch (k->type) {
    case KM_V_STRING:
        if (!*text)
            return -1;
        return field ? km_set_str(field, text) : 0;
    case KM_V_OPTSTR:
        return field ? km_set_str(field, *text ? text : NULL) : 0;
    case KM_V_BOOL:
        if (km_parse_bool(text, &b) < 0)
            return -1;
        if (field)
            *(int *)field = b;
        return 0;
    case KM_V_INT:
    case KM_V_DOUBLE:
    case KM_V_SIZE:
        if (km_number(k, text, &num) < 0)
            return -1;
        if (field && k->type == KM_V_INT)
            *(int *)field = (int)num;
        else if (field && k->type == KM_V_DOUBLE)
            *(double *)field = num;
        else if (field)
            km_parse_size(text, (size_t *)field); /* exact, not via double */
        return 0;
    case KM_V_LOGLEVEL:
        if (km_log_parse_level(text, &level) < 0)
            return -1;
        if (field)
            *(enum km_log_level *)field = level;
        return 0;
    case KM_V_OP:
        ok = km_op_dir(text) != 0;
        break;
    case KM_V_ALEVEL:
        ok = strcmp(text, "warning") == 0 || strcmp(text, "error") == 0;
        break;
    case KM_V_TOPIC:
        ok = km_topic_ok(text);
        break;
    case KM_V_PATH:
        ok = km_path_ok(text, strlen(text), 1);
        break;
    case KM_V_MATCH:
        ok = km_match_ok(text);
        break;
    default:
        ok = 0;
    }
    return ok ? 0 : -1;
}

/* " from 1 to 3600", " > 0 and <= 3600", " >= 0" or "" for a number. */
static void km_describe_range(const struct km_key *k, char *buf, size_t n)
{
    const char *lo = k->min_open ? ">" : ">=";
    /* INT_MAX is "no limit" to an operator */
    int open_top = isinf(k->max) || (k->type == KM_V_INT && k->max == INT_MAX);
    if (isinf(k->min) && isinf(k->max))
        buf[0] = '\0';
    else if (open_top)
        snprintf(buf, n, " %s %.15g", lo, k->min);
    else if (k->min_open)
        snprintf(buf, n, " > %.15g and <= %.15g", k->min, k->max);
    else if (k->type == KM_V_SIZE && k->max == KM_SIZE_MAX)
        snprintf(buf, n, " from %.15g to 1G (suffix k, M or G allowed, e.g. 64k)",
                 k->min);
    else
        snprintf(buf, n, " from %.15g to %.15g", k->min, k->max);
}

/* What a valid value of k looks like, after "expected ". */
static const char *km_describe(const struct km_key *k, char *buf, size_t n)
{
    char range[96];
    switch (k->type) {
    case KM_V_INT:
    case KM_V_DOUBLE:
    case KM_V_SIZE:
        km_describe_range(k, range, sizeof range);
        snprintf(buf, n, "%s%s%s%s",
                 k->type == KM_V_INT      ? "an integer"
                 : k->type == KM_V_DOUBLE ? "a number"
                                          : "a size in bytes",
                 k->unit ? " of " : "", k->unit ? k->unit : "", range);
        return buf;
    case KM_V_BOOL:
        return "true or false (also yes/no, on/off, 1/0)";
    case KM_V_LOGLEVEL:
        return "one of error, warning, notice, info, debug";
    case KM_V_OP:
        return "one of >, >=, <, <=";
    case KM_V_ALEVEL:
        return "warning or error";
    case KM_V_TOPIC:
        return "a topic name such as containers or metrics (a-z, 0-9, '_', '.', '-'; "
               "at most 64 characters)";
    case KM_V_PATH:
        return "a dotted path such as aggregated.total_cpu_percent (letters, digits, "
               "'_', '-'; an array step is written containers[*])";
    case KM_V_MATCH:
        return "FIELD == VALUE or FIELD != VALUE, such as status != running";
    default:
        return "a non-empty value";
    }
}

static const struct km_key *km_key_find(const struct km_key *keys, const char *name)
{
    for (; keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

/* Checks (and stores) entry e of the current section; errors name the current
   line, which for a continued value is its last line. */
static void km_check_entry(struct km_parse *p, const struct km_key *k,
                           const struct km_conf_entry *e)
{
    char label[96], what[256], cont[48] = "";
    int rc = km_apply(k, e->value, p->cfg);
    if (rc == -2)
        km_oom(p);
    if (rc != -1)
        return;
    if (e->line != p->line)
        snprintf(cont, sizeof cont, " (continued from line %d)", e->line);
    km_label(&p->cur->pub, label, sizeof label);
    if (!*e->value)
        km_fail(p, p->line, "`%s` in %s is empty: expected %s", k->name, label,
                km_describe(k, what, sizeof what));
    else
        km_fail(p, p->line, "bad value `%.*s%s` for `%s` in %s%s: expected %s",
                km_show_len(e->value), e->value, km_show_more(e->value), k->name, label,
                cont, km_describe(k, what, sizeof what));
}

/* ---- sections ------------------------------------------------------------ */

static void km_sect_free(struct km_sect *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->pub.n_entries; i++) {
        free((char *)s->ents[i].key);
        free((char *)s->ents[i].value);
    }
    free(s->ents);
    free((char *)s->pub.name);
    free(s);
}

static struct km_sect *km_sect_find(const struct km_config *cfg, const char *kind,
                                    const char *name)
{
    for (size_t i = 0; i < cfg->n_sections; i++) {
        struct km_conf_section *sec = cfg->sections[i];
        if (strcmp(sec->kind, kind) == 0 && strcmp(sec->name, name) == 0)
            return (struct km_sect *)sec;
    }
    return NULL;
}

/* Appends a new, empty section to cfg->sections. */
static struct km_sect *km_sect_new(struct km_parse *p, const struct km_sect_spec *spec,
                                   const char *name)
{
    struct km_config *cfg = p->cfg;
    struct km_conf_section **grown =
        realloc(cfg->sections, (cfg->n_sections + 1) * sizeof *grown);
    struct km_sect *s = calloc(1, sizeof *s);
    if (grown)
        cfg->sections = grown;
    if (!grown || !s || !(s->pub.name = strdup(name))) {
        free(s);
        return NULL;
    }
    s->spec = spec;
    s->pub.kind = spec->kind;
    s->pub.file = cfg->path;
    s->pub.line = p->line;
    cfg->sections[cfg->n_sections++] = &s->pub;
    return s;
}

static int km_sect_add(struct km_sect *s, const char *key, const char *value, int line)
{
    if (s->pub.n_entries == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct km_conf_entry *grown = realloc(s->ents, cap * sizeof *grown);
        if (!grown)
            return -1;
        s->ents = grown;
        s->cap = cap;
        s->pub.entries = grown;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    s->ents[s->pub.n_entries++] = (struct km_conf_entry){k, v, line};
    return 0;
}

/* Continuation lines are joined to the value with one space. */
static int km_entry_append(struct km_conf_entry *e, const char *text)
{
    size_t a = strlen(e->value), b = strlen(text);
    char *v = realloc((char *)e->value, a + b + 2);
    if (!v)
        return -1;
    v[a] = ' ';
    memcpy(v + a + 1, text, b + 1);
    e->value = v;
    return 0;
}

/* ---- [alert NAME] rules, checked when the section ends ------------------- */

static double km_entry_num(const struct km_conf_entry *e)
{
    double v = 0;
    km_parse_double(e->value, &v); /* validated when read */
    return v;
}

/* A match rule: the threshold keys make no sense with it. */
static void km_alert_match(struct km_parse *p, const struct km_conf_section *sec,
                           const struct km_conf_entry *match)
{
    static const char *const threshold_only[] = {"warning", "critical", "clear", "op"};
    for (size_t i = 0; i < sizeof threshold_only / sizeof threshold_only[0]; i++) {
        const struct km_conf_entry *e = km_conf_entry(sec, threshold_only[i]);
        if (e)
            km_fail(p, e->line,
                    "`%s` belongs to threshold rules, but [alert %s] is a match rule "
                    "(match at line %d); keep either match or warning/critical",
                    e->key, sec->name, match->line);
    }
}

/* clear must lie on the resolving side of the first threshold crossed. */
static void km_alert_clear(struct km_parse *p, const struct km_conf_section *sec,
                           const struct km_conf_entry *first, int dir, const char *op)
{
    const struct km_conf_entry *clear = km_conf_entry(sec, "clear");
    if (!clear || dir * (km_entry_num(clear) - km_entry_num(first)) <= 0)
        return;
    km_fail(p, clear->line,
            "clear (%s) is %s %s (%s): with op %s the alert resolves when the value "
            "comes back past clear, so clear must be %s %s",
            clear->value, dir > 0 ? "above" : "below", first->key, first->value, op,
            dir > 0 ? "<=" : ">=", first->value);
}

/* A threshold rule: warning and/or critical, in the order op implies. */
static void km_alert_threshold(struct km_parse *p, const struct km_conf_section *sec)
{
    const struct km_conf_entry *w = km_conf_entry(sec, "warning");
    const struct km_conf_entry *c = km_conf_entry(sec, "critical");
    const struct km_conf_entry *level = km_conf_entry(sec, "level");
    const char *op = km_conf_value(sec, "op") ? km_conf_value(sec, "op") : ">";
    int dir = km_op_dir(op);

    if (level)
        km_fail(p, level->line,
                "`level` belongs to match rules; a threshold rule is a warning past "
                "`warning` and an error past `critical`: remove `level`");
    else if (!w && !c)
        km_fail(p, sec->line,
                "[alert %s] has no threshold; add warning = N and/or critical = N "
                "(or match = FIELD != VALUE for a condition rule)",
                sec->name);
    else if (w && c && dir * (km_entry_num(c) - km_entry_num(w)) < 0)
        km_fail(p, c->line,
                "critical (%s) is less severe than warning (%s) for op %s; critical "
                "must be %s warning: swap them",
                c->value, w->value, op, dir > 0 ? ">=" : "<=");
    else
        km_alert_clear(p, sec, w ? w : c, dir, op);
}

static void km_alert_check(struct km_parse *p, const struct km_conf_section *sec)
{
    static const char *const need[][2] = {
        {"topic", "topic = containers"},
        {"path", "path = aggregated.total_cpu_percent"},
    };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        if (!km_conf_entry(sec, need[i][0]))
            km_fail(p, sec->line, "[alert %s] has no `%s`; add a line such as %s",
                    sec->name, need[i][0], need[i][1]);
    }
    const struct km_conf_entry *match = km_conf_entry(sec, "match");
    if (match)
        km_alert_match(p, sec, match);
    else
        km_alert_threshold(p, sec);
}

/* A section is complete: check what needs all of its keys. */
static void km_section_end(struct km_parse *p)
{
    if (p->cur && strcmp(p->cur->pub.kind, "alert") == 0)
        km_alert_check(p, &p->cur->pub);
}

/* ---- what the reader sees: headers ---------------------------------------- */

static void km_unknown_section(struct km_parse *p, const char *kind)
{
    const char *near = km_suggest(kind, sect_specs, sizeof sect_specs[0]);
    char hint[64] = "", all[160] = "";
    if (near)
        snprintf(hint, sizeof hint, " did you mean [%s]?", near);
    for (size_t i = 0; sect_specs[i].kind; i++) {
        strncat(all, i ? ", " : "", sizeof all - strlen(all) - 1);
        strncat(all, sect_specs[i].hint, sizeof all - strlen(all) - 1);
    }
    km_fail(p, p->line, "unknown section [%s];%s valid sections are %s", kind, hint, all);
}

static const struct km_sect_spec *km_spec_find(const char *kind)
{
    for (const struct km_sect_spec *s = sect_specs; s->kind; s++)
        if (strcmp(s->kind, kind) == 0)
            return s;
    return NULL;
}

/* Checks the NAME part against the kind's rules. */
static int km_header_name_ok(struct km_parse *p, const struct km_sect_spec *spec,
                             const char *name)
{
    if (spec->named && !*name)
        km_fail(p, p->line, "[%s] needs a name: write [%s NAME], e.g. [%s %s]",
                spec->kind, spec->kind, spec->kind,
                *spec->kind == 'p' ? "host_stats" : "high_cpu");
    else if (!spec->named && *name)
        km_fail(p, p->line, "[%s] takes no name (found `%s`); write just [%s]",
                spec->kind, name, spec->kind);
    else if (spec->named && !km_name_ok(name))
        km_fail(
            p, p->line,
            "bad name `%s` in [%s %s]: use letters, digits, '_' and '-' only, at most "
            "%d characters",
            name, spec->kind, name, KM_NAME_MAX);
    return !p->failed;
}

static void km_section_begin(struct km_parse *p, const char *kind, const char *name)
{
    const struct km_sect_spec *spec = km_spec_find(kind);
    struct km_sect *dup;
    char label[96];

    km_section_end(p);
    p->cur = NULL;
    if (p->failed)
        return;
    if (!spec) {
        km_unknown_section(p, kind);
        return;
    }
    if (!km_header_name_ok(p, spec, name))
        return;
    if ((dup = km_sect_find(p->cfg, kind, name))) {
        km_fail(p, p->line, "%s already defined at line %d; remove one",
                km_label(&dup->pub, label, sizeof label), dup->pub.line);
        return;
    }
    if (!(p->cur = km_sect_new(p, spec, name)))
        km_oom(p);
}

/* Notes the first line inih will report, and why, for a better message. */
static void km_syntax(struct km_parse *p, const char *what, const char *text)
{
    if (p->syntax_line)
        return;
    p->syntax_line = p->line;
    snprintf(p->syntax_why, sizeof p->syntax_why, "%s`%.*s%s`", what, km_show_len(text),
             text, km_show_more(text));
}

/* A "[...]" line; t points at the '['. */
static void km_header(struct km_parse *p, char *t)
{
    char *end = km_find_chars_or_comment(t + 1, "]");
    if (*end != ']') {
        km_rstrip(t);
        km_syntax(p, "a section header needs a closing ']', as in [core]: ", t);
        return;
    }
    p->prev_key = 0; /* inih forgets the previous key at a header */
    char *rest = km_lskip(end + 1);
    if (*rest && *rest != ';' && *rest != '#') {
        km_fail(p, p->line,
                "unexpected text `%.*s%s` after ']'; put a comment after ' ;' or on a "
                "line of its own",
                km_show_len(rest), rest, km_show_more(rest));
        return;
    }
    *end = '\0';
    char *kind = km_rstrip(km_lskip(t + 1)), *name = kind;
    while (*name && !isspace((unsigned char)*name))
        name++;
    if (*name)
        *name++ = '\0';
    km_section_begin(p, kind, km_lskip(name));
}

/* Decides, as inih will, what line `raw` is, and acts on headers. */
static void km_classify(struct km_parse *p, char *raw)
{
    char *s = raw;
    if (p->line == 1 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* UTF-8 byte order mark; inih skips it too */
    char *t = km_rstrip(km_lskip(s));

    p->cont = 0;
    if (*t == '\0' || *t == ';' || *t == '#')
        return; /* blank or comment */
    if (t > s && p->prev_key) {
        p->cont = 1; /* indented: inih hands it over as more of the last value */
        return;
    }
    if (*t == '[') {
        km_header(p, t);
        return;
    }
    char *end = km_find_chars_or_comment(t, "=:");
    int sep = *end == '=' || *end == ':';
    *end = '\0';
    km_rstrip(t);
    if (!sep)
        km_syntax(p, "expected `key = value`, a [section] or a ; comment, got ", t);
    else
        p->prev_key = *t != '\0';
}

/* ---- what inih calls ------------------------------------------------------ */

/* inih's reader: one whole line per call, or NULL to stop. */
static char *km_read_line(char *str, int num, void *stream)
{
    struct km_parse *p = stream;
    if (p->failed)
        return NULL;
    errno = 0;
    ssize_t n = getline(&p->buf, &p->bufcap, p->fp);
    if (n < 0) {
        /* getline's ENOMEM sets neither flag: only feof() means the end */
        if (ferror(p->fp) || !feof(p->fp))
            km_fail(p, 0, "cannot read: %s; pass the right path with -c FILE",
                    strerror(errno ? errno : EIO));
        return NULL;
    }
    p->line++;
    size_t len = (size_t)n;
    if (len && p->buf[len - 1] == '\n')
        len--;
    if (len && p->buf[len - 1] == '\r')
        len--;
    if (strlen(p->buf) != (size_t)n) {
        km_fail(p, p->line, "line contains a NUL byte; katomon.conf must be plain text");
        return NULL;
    }
    /* fgets-style: num includes the '\n' and the '\0' (and a '\r' at most) */
    if (num < 4 || len > (size_t)num - 3) {
        km_fail(p, p->line,
                "line is %zu characters long; at most %d fit: shorten it, or continue a "
                "long value on the next line, indented",
                len, num - 3);
        return NULL;
    }
    memcpy(str, p->buf, (size_t)n + 1);
    km_classify(p, p->buf); /* may modify buf; inih has its own copy */
    return p->failed ? NULL : str;
}

/* The section a key outside any section probably belongs to. */
static const char *km_home_of(const char *key)
{
    for (const struct km_sect_spec *s = sect_specs; s->kind; s++)
        if (!s->named && km_key_find(s->keys, key))
            return s->hint;
    return NULL;
}

static void km_unknown_key(struct km_parse *p, const char *key)
{
    char label[96], hint[64], all[256];
    const struct km_key *keys = p->cur->spec->keys;
    km_fail(p, p->line, "unknown key `%s` in %s;%s valid keys are: %s", key,
            km_label(&p->cur->pub, label, sizeof label),
            km_hint(key, keys, sizeof keys[0], hint, sizeof hint),
            km_list(keys, sizeof keys[0], all, sizeof all));
}

/* A `key = value` line. */
static void km_pair(struct km_parse *p, const char *key, const char *value)
{
    struct km_sect *s = p->cur;
    const struct km_conf_entry *dup;
    char label[96];

    if (!s) {
        const char *home = km_home_of(key);
        km_fail(p, p->line, "`%s` is outside any section; put it under %s", key,
                home ? home : "the [section] header it belongs to, e.g. [core]");
        return;
    }
    if (!*key) {
        km_fail(p, p->line, "a value without a key; write key = value");
        return;
    }
    const struct km_key *k = km_key_find(s->spec->keys, key);
    if (!k && !s->spec->open) {
        km_unknown_key(p, key);
        return;
    }
    if ((dup = km_conf_entry(&s->pub, key))) {
        km_fail(p, p->line, "`%s` already set at line %d in %s; remove one", key,
                dup->line, km_label(&s->pub, label, sizeof label));
        return;
    }
    if (km_sect_add(s, key, value, p->line) < 0)
        km_oom(p);
    else if (k)
        km_check_entry(p, k, &s->ents[s->pub.n_entries - 1]);
}

/* An indented line that reads like a key or a header was meant as one. */
static int km_looks_like_key(const char *text)
{
    size_t n = strspn(text, KM_IDENT);
    while (n && isspace((unsigned char)text[n]))
        n++;
    return *text == '[' || (n && (text[n] == '=' || text[n] == ':'));
}

/* An indented line: more of the previous key's value. */
static void km_continue(struct km_parse *p, const char *text)
{
    struct km_sect *s = p->cur;
    if (!s || !s->pub.n_entries) {
        km_fail(p, p->line, "indented line continues no key; remove the indentation");
        return;
    }
    struct km_conf_entry *e = &s->ents[s->pub.n_entries - 1];
    if (km_looks_like_key(text)) {
        km_fail(p, p->line,
                "this indented line would continue the value of `%s` (line %d); "
                "remove the indentation if it starts a key or section of its own",
                e->key, e->line);
        return;
    }
    if (km_entry_append(e, text) < 0) {
        km_oom(p);
        return;
    }
    const struct km_key *k = km_key_find(s->spec->keys, e->key);
    if (k)
        km_check_entry(p, k, e);
}

/* inih's handler. The section name it passes is unused: we track sections
   ourselves (inih truncates long names and never reports empty ones). */
static int km_on_pair(void *user, const char *section, const char *key, const char *value)
{
    struct km_parse *p = user;
    (void)section;
    if (p->failed)
        return 0;
    if (p->cont)
        km_continue(p, value);
    else
        km_pair(p, key, value);
    return !p->failed;
}

/* ---- loading ---------------------------------------------------------------- */

/* inih's verdict, unless we already hold an earlier error of our own. */
static void km_inih_result(struct km_parse *p, int rv)
{
    if (rv == -2)
        km_oom(p);
    if (rv <= 0 || (p->failed && (p->err_line == 0 || p->err_line <= rv)))
        return;
    p->failed = 0;
    km_fail(p, rv, "syntax error: %s",
            rv == p->syntax_line ? p->syntax_why
                                 : "expected `key = value`, a [section] or a ; comment");
}

/* [core], [http] and [websocket] are in struct km_config itself; drop their
   entry lists so cfg->sections holds [plugin] and [alert] sections only. */
static void km_drop_builtin(struct km_config *cfg)
{
    size_t kept = 0;
    for (size_t i = 0; i < cfg->n_sections; i++) {
        struct km_sect *s = (struct km_sect *)cfg->sections[i];
        if (s->spec->named)
            cfg->sections[kept++] = &s->pub;
        else
            km_sect_free(s);
    }
    cfg->n_sections = kept;
}

static void km_parse_file(struct km_parse *p)
{
    int rv = ini_parse_stream(km_read_line, p, km_on_pair, p);
    if (!p->failed)
        km_section_end(p);
    km_inih_result(p, rv);
}

int km_config_load(const char *path, struct km_config **out, char *err, size_t errlen)
{
    struct km_parse p = {0};

    *out = NULL;
    p.cfg = km_config_defaults();
    if (!p.cfg || !(p.cfg->path = strdup(path ? path : ""))) {
        km_oom(&p);
    } else if (!(p.fp = fopen(p.cfg->path, "r"))) {
        km_fail(&p, 0, "cannot open: %s; pass the right path with -c FILE",
                strerror(errno));
    } else {
        km_parse_file(&p);
    }
    free(p.buf);
    if (p.fp)
        fclose(p.fp);
    if (p.failed) {
        if (err && errlen)
            snprintf(err, errlen, "%s", p.err);
        km_config_free(p.cfg);
        return -1;
    }
    km_drop_builtin(p.cfg);
    *out = p.cfg;
    return 0;
}

struct km_config *km_config_defaults(void)
{
    struct km_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    cfg->plugin_dir = strdup(KM_PLUGIN_DIR);
    cfg->state_dir = strdup(KM_STATE_DIR);
    cfg->web_root = strdup(KM_WEB_ROOT);
    cfg->vendor_root = strdup(KM_VENDOR_ROOT);
    cfg->bind = strdup("127.0.0.1");
    if (!cfg->plugin_dir || !cfg->state_dir || !cfg->web_root || !cfg->vendor_root ||
        !cfg->bind) {
        km_config_free(cfg);
        return NULL;
    }
    cfg->log_level = KM_LOG_INFO;
    cfg->port = 8080;
    cfg->max_connections = 10000;
    cfg->max_request_bytes = 64 * 1024;
    cfg->enabled = 1;
    cfg->update_interval = 3;
    cfg->max_message_bytes = 64 * 1024;
    cfg->max_queue_bytes = 1024 * 1024;
    cfg->ping_interval = 30;
    cfg->idle_timeout = 120;
    return cfg;
}

void km_config_free(struct km_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_sections; i++)
        km_sect_free((struct km_sect *)cfg->sections[i]);
    free(cfg->sections);
    free(cfg->path);
    free(cfg->plugin_dir);
    free(cfg->state_dir);
    free(cfg->pid_file);
    free(cfg->bind);
    free(cfg->web_root);
    free(cfg->vendor_root);
    free(cfg->allowed_origins);
    free(cfg->auth_token);
    free(cfg);
}

/* ---- lookups ------------------------------------------------------------- */

const struct km_conf_section *km_config_section(const struct km_config *cfg,
                                                const char *kind, const char *name)
{
    struct km_sect *s = cfg && kind && name ? km_sect_find(cfg, kind, name) : NULL;
    return s ? &s->pub : NULL;
}

const struct km_conf_entry *km_conf_entry(const struct km_conf_section *sec,
                                          const char *key)
{
    if (!sec || !key)
        return NULL;
    for (size_t i = 0; i < sec->n_entries; i++)
        if (strcmp(sec->entries[i].key, key) == 0)
            return &sec->entries[i];
    return NULL;
}

const char *km_conf_value(const struct km_conf_section *sec, const char *key)
{
    const struct km_conf_entry *e = km_conf_entry(sec, key);
    return e ? e->value : NULL;
}

/* ---- a plugin's keys ------------------------------------------------------- */

static const struct km_conf_key *km_conf_key_find(const struct km_conf_key *keys,
                                                  const char *name)
{
    for (; keys && keys->name; keys++)
        if (strcmp(keys->name, name) == 0)
            return keys;
    return NULL;
}

/* Whether value is of k's type and within its bounds (both 0: none). */
static int km_conf_value_ok(const struct km_conf_key *k, const char *value)
{
    long long i;
    double d;
    int b;
    switch (k->type) {
    case KM_CONF_INT:
        if (km_parse_int(value, &i) < 0)
            return 0;
        d = (double)i;
        break;
    case KM_CONF_DOUBLE:
        if (km_parse_double(value, &d) < 0)
            return 0;
        break;
    case KM_CONF_BOOL:
        return km_parse_bool(value, &b) == 0;
    default:
        return 1;
    }
    return (k->min == 0 && k->max == 0) || (d >= k->min && d <= k->max);
}

static const char *km_conf_describe(const struct km_conf_key *k, char *buf, size_t n)
{
    const char *what = k->type == KM_CONF_INT ? "an integer" : "a number";
    if (k->type == KM_CONF_BOOL)
        return "true or false (also yes/no, on/off, 1/0)";
    if (k->min == 0 && k->max == 0)
        snprintf(buf, n, "%s", what);
    else
        snprintf(buf, n, "%s from %.15g to %.15g", what, k->min, k->max);
    return buf;
}

static int km_check_fail(char *err, size_t errlen, const struct km_conf_section *sec,
                         int line, const char *what, const char *more)
{
    char label[96];
    if (err && errlen)
        snprintf(err, errlen, "%s:%d: %s in %s%s", sec->file ? sec->file : "katomon.conf",
                 line, what, km_label(sec, label, sizeof label), more);
    return -1;
}

static int km_check_unknown(const struct km_conf_section *sec,
                            const struct km_conf_key *keys, const struct km_conf_entry *e,
                            char *err, size_t errlen)
{
    char what[96], hint[64] = "", all[256] = "", more[400];
    snprintf(what, sizeof what, "unknown key `%s`", e->key);
    if (keys && keys->name) {
        km_hint(e->key, keys, sizeof keys[0], hint, sizeof hint);
        km_list(keys, sizeof keys[0], all, sizeof all);
        snprintf(more, sizeof more, ";%s %s takes: %s (and file, enabled)", hint,
                 sec->name, all);
    } else {
        snprintf(more, sizeof more,
                 "; %s takes no keys besides file and enabled: remove it", sec->name);
    }
    return km_check_fail(err, errlen, sec, e->line, what, more);
}

static int km_check_bad(const struct km_conf_section *sec, const struct km_conf_key *k,
                        const struct km_conf_entry *e, char *err, size_t errlen)
{
    char what[160], type[96], more[400];
    snprintf(what, sizeof what, "bad value `%.*s%s` for `%s`", km_show_len(e->value),
             e->value, km_show_more(e->value), k->name);
    snprintf(more, sizeof more, ": expected %s%s%s%s",
             km_conf_describe(k, type, sizeof type), k->help ? " (" : "",
             k->help ? k->help : "", k->help ? ")" : "");
    return km_check_fail(err, errlen, sec, e->line, what, more);
}

int km_config_check_keys(const struct km_conf_section *sec,
                         const struct km_conf_key *keys, char *err, size_t errlen)
{
    for (size_t i = 0; sec && i < sec->n_entries; i++) {
        const struct km_conf_entry *e = &sec->entries[i];
        if (strcmp(e->key, "file") == 0 || strcmp(e->key, "enabled") == 0)
            continue; /* the core's own, checked when the file was read */
        const struct km_conf_key *k = km_conf_key_find(keys, e->key);
        if (!k)
            return km_check_unknown(sec, keys, e, err, errlen);
        if (!km_conf_value_ok(k, e->value))
            return km_check_bad(sec, k, e, err, errlen);
    }
    return 0;
}
