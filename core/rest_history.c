/*
 * rest_history.c - the history range API (see rest_history.h): the pure
 * parsers of selectors, times, durations and query strings first, then the
 * two handlers over the series registry and the history store.
 *
 * Every input is bounded before it is used: a query string is read one
 * parameter at a time into fixed buffers and refused at the first
 * parameter past a limit, so 10,000 series= parameters cost no more than
 * 65. The store is read into one buffer sized by the step (at most
 * KM_RH_POINTS_MAX + 2 points), reused for every series of an answer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/util.h>

#include "history.h"
#include "rest.h"
#include "rest_history.h"
#include "url.h"

/* Longest parameter name we read; a longer one is unknown. */
#define KM_RH_KEY_MAX 64 /* bytes of a parameter name we keep */

/* Writes the reason into err; returns -1 (the parsers' failure). */
static int __attribute__((format(printf, 3, 4)))
km_rh_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- selectors ------------------------------------------------------------ */

static int km_rh_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int km_rh_digit(int c)
{
    return c >= '0' && c <= '9';
}

static const char *km_rh_space(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Length of the metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or label name
   ([a-zA-Z_][a-zA-Z0-9_]*) at p; 0 when there is none. */
static size_t km_rh_name_len(const char *p, int colon)
{
    size_t n = 0;

    if (!km_rh_alpha((unsigned char)p[0]) && !(colon && p[0] == ':'))
        return 0;
    while (km_rh_alpha((unsigned char)p[n]) || km_rh_digit((unsigned char)p[n]) ||
           (colon && p[n] == ':'))
        n++;
    return n;
}

/* Appends n bytes of s and a NUL to sel->buf at *used; -1 when full. */
static int km_rh_keep(struct km_rh_selector *sel, size_t *used, const char *s, size_t n)
{
    if (*used + n + 1 > sizeof sel->buf)
        return -1;
    memcpy(sel->buf + *used, s, n);
    sel->buf[*used + n] = '\0';
    *used += n + 1;
    return 0;
}

/* Reads the quoted value at *pp (at its opening quote) into sel->buf;
   -1 with err on an unknown escape, a missing quote or a full buffer. */
static int km_rh_value(const char **pp, struct km_rh_selector *sel, size_t *used,
                       char *err, size_t errlen)
{
    const char *p = *pp;
    char c;

    if (*p != '"')
        return km_rh_fail(err, errlen,
                          "a label value must be in double quotes (label=\"value\")");
    for (p++; *p && *p != '"'; p++) {
        c = *p;
        if (c == '\\') {
            p++;
            if (*p == 'n')
                c = '\n';
            else if (*p == '"' || *p == '\\')
                c = *p;
            else
                return km_rh_fail(err, errlen,
                                  "unknown escape in a label value (\\\", \\\\ and \\n "
                                  "are known)");
        }
        if (*used + 2 > sizeof sel->buf)
            return km_rh_fail(err, errlen, "label text longer than %d bytes",
                              KM_SERIES_LABELS_MAX);
        sel->buf[(*used)++] = c;
    }
    if (*p != '"')
        return km_rh_fail(err, errlen, "a label value has no closing quote");
    sel->buf[(*used)++] = '\0';
    *pp = p + 1;
    return 0;
}

/* The operator at p: only '=' is served (not !=, =~, !~). */
static int km_rh_op(const char **pp, char *err, size_t errlen)
{
    const char *p = *pp;

    if (p[0] == '=' && p[1] != '~') {
        *pp = p + 1;
        return 0;
    }
    if ((p[0] == '!' && (p[1] == '=' || p[1] == '~')) || (p[0] == '=' && p[1] == '~')) {
        char op[3] = {p[0], p[1], '\0'};
        return km_rh_fail(err, errlen,
                          "matcher '%s' is not supported: only label=\"value\" is%s", op,
                          "");
    }
    return km_rh_fail(err, errlen, "expected '=' after a label name");
}

/* One `key="value"` at *pp into sel. */
static int km_rh_matcher(const char **pp, struct km_rh_selector *sel, size_t *used,
                         char *err, size_t errlen)
{
    const char *p = *pp;
    size_t n = km_rh_name_len(p, 0);
    struct km_rh_matcher *m;

    if (n == 0)
        return km_rh_fail(err, errlen,
                          "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) inside {}");
    if (sel->nmatch >= KM_RH_MATCHERS_MAX)
        return km_rh_fail(err, errlen, "more than %d label matchers", KM_RH_MATCHERS_MAX);
    m = &sel->m[sel->nmatch];
    m->key = (uint16_t)*used;
    if (km_rh_keep(sel, used, p, n) < 0)
        return km_rh_fail(err, errlen, "label text longer than %d bytes",
                          KM_SERIES_LABELS_MAX);
    for (unsigned i = 0; i < sel->nmatch; i++)
        if (strcmp(sel->buf + sel->m[i].key, sel->buf + m->key) == 0)
            return km_rh_fail(err, errlen, "label '%s' is given twice",
                              sel->buf + m->key);
    p = km_rh_space(p + n);
    if (km_rh_op(&p, err, errlen) < 0)
        return -1;
    p = km_rh_space(p);
    m->value = (uint16_t)*used;
    if (km_rh_value(&p, sel, used, err, errlen) < 0)
        return -1;
    sel->nmatch++;
    *pp = km_rh_space(p);
    return 0;
}

/* The `{...}` part at p (at its '{'); the label text is bounded. */
static int km_rh_braces(const char *p, struct km_rh_selector *sel, char *err,
                        size_t errlen)
{
    const char *open = p++;
    size_t used = 0;

    for (p = km_rh_space(p); *p != '}'; p = km_rh_space(p)) {
        if (km_rh_matcher(&p, sel, &used, err, errlen) < 0)
            return -1;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return km_rh_fail(err, errlen,
                              *p ? "expected ',' or '}' after a label value"
                                   ""
                                 : "missing '}'");
    }
    if ((size_t)(p - open - 1) > KM_SERIES_LABELS_MAX)
        return km_rh_fail(err, errlen, "label text longer than %d bytes",
                          KM_SERIES_LABELS_MAX);
    if (*km_rh_space(p + 1))
        return km_rh_fail(err, errlen, "unexpected text after '}'");
    return 0;
}

int km_rh_selector(const char *text, struct km_rh_selector *sel, char *err, size_t errlen)
{
    const char *p = km_rh_space(text);
    size_t n;

    sel->name[0] = '\0';
    sel->nmatch = 0;
    if (strlen(text) > KM_RH_SELECTOR_MAX)
        return km_rh_fail(err, errlen, "selector longer than %d bytes",
                          KM_RH_SELECTOR_MAX);
    if (!*p)
        return km_rh_fail(err, errlen, "empty selector: give a series name");
    n = km_rh_name_len(p, 1);
    if (n == 0)
        return km_rh_fail(err, errlen,
                          "a selector starts with a series name "
                          "([a-zA-Z_:][a-zA-Z0-9_:]*)");
    if (n > KM_SERIES_NAME_MAX)
        return km_rh_fail(err, errlen, "series name longer than %d bytes",
                          KM_SERIES_NAME_MAX);
    memcpy(sel->name, p, n);
    sel->name[n] = '\0';
    p = km_rh_space(p + n);
    if (!*p)
        return 0;
    if (*p != '{')
        return km_rh_fail(err, errlen,
                          "unexpected text after the series name '%s' (expected '{')",
                          sel->name);
    return km_rh_braces(p, sel, err, errlen);
}

/* 1 when labels hold `key` with any value. */
static int km_rh_has_key(const char *labels, const char *key)
{
    char k[KM_SERIES_LABELS_MAX + 1], v[KM_SERIES_LABELS_MAX + 1];
    const char *p = labels;

    while (km_labels_next(&p, k, sizeof k, v, sizeof v) == 1)
        if (strcmp(k, key) == 0)
            return 1;
    return 0;
}

int km_rh_matches(const struct km_rh_selector *sel, const char *labels)
{
    if (!labels)
        labels = "";
    for (unsigned i = 0; i < sel->nmatch; i++) {
        const char *k = sel->buf + sel->m[i].key, *v = sel->buf + sel->m[i].value;
        /* as in PromQL, label="" also matches a series without the label */
        if (*v ? !km_labels_has(labels, k, v)
               : km_rh_has_key(labels, k) && !km_labels_has(labels, k, ""))
            return 0;
    }
    return 1;
}

/* ---- numbers, times and durations ----------------------------------------- */

/* Length of a plain decimal number at p ([0-9]+(.[0-9]*)? or .[0-9]+): no
   sign, no exponent, no nan or inf; 0 when there is none. */
static size_t km_rh_number_len(const char *p)
{
    size_t n = 0, digits = 0;

    while (km_rh_digit((unsigned char)p[n]))
        n++, digits++;
    if (p[n] == '.')
        for (n++; km_rh_digit((unsigned char)p[n]); n++)
            digits++;
    return digits ? n : 0;
}

/* Days in month m (1-12) of year y. */
static unsigned km_rh_mdays(int y, int m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/*
 * 1 when text has the exact shape of an ISO 8601 time with a zone:
 * DDDD-DD-DD(T|t| )DD:DD:DD(.D+)?(Z|z|(+|-)DD:DD), its day exists and the
 * zone is at most 23:59. km_parse_iso alone is lenient (sscanf's %d takes
 * signs and spaces, "2026-02-31" is 3 March, no zone is UTC).
 */
static int km_rh_iso_shape(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    const char *p = s;
    int y, mo, d, oh, om;

    for (size_t i = 0; i < sizeof shape - 1; i++, p++) {
        if (shape[i] == 'd'   ? !km_rh_digit((unsigned char)*p)
            : shape[i] == 'T' ? *p != 'T' && *p != 't' && *p != ' '
                              : *p != shape[i])
            return 0;
    }
    if (*p == '.') {
        size_t n = 0;
        while (km_rh_digit((unsigned char)p[n + 1]))
            n++;
        if (n == 0)
            return 0;
        p += n + 1;
    }
    if (sscanf(s, "%4d-%2d-%2d", &y, &mo, &d) != 3 || mo < 1 || mo > 12 || d < 1 ||
        (unsigned)d > km_rh_mdays(y, mo))
        return 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 1;
    return (*p == '+' || *p == '-') && km_rh_digit((unsigned char)p[1]) &&
           km_rh_digit((unsigned char)p[2]) && p[3] == ':' &&
           km_rh_digit((unsigned char)p[4]) && km_rh_digit((unsigned char)p[5]) &&
           p[6] == '\0' && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 && oh <= 23 &&
           om <= 59;
}

int km_rh_time(const char *text, double *t, char *err, size_t errlen)
{
    size_t n = km_rh_number_len(text);
    char iso[64];
    int64_t us;

    if (n && text[n] == '\0') {
        *t = strtod(text, NULL);
    } else if (strlen(text) < sizeof iso && km_rh_iso_shape(text)) {
        strcpy(iso, text);
        iso[10] = 'T'; /* km_parse_iso takes no lower-case t (RFC 3339 does) */
        if (km_parse_iso(iso, &us) < 0)
            return km_rh_fail(err, errlen, "not a time: '%s'", iso);
        *t = (double)us / 1e6;
    } else {
        return km_rh_fail(err, errlen,
                          "not a time: give unix seconds (1767261600.5) or ISO 8601 "
                          "with Z or an offset (2026-01-01T10:00:00Z)");
    }
    if (!(*t >= 0 && *t <= KM_RH_TIME_MAX))
        return km_rh_fail(err, errlen, "time out of range (1970 to 9999)");
    return 0;
}

int km_rh_duration(const char *text, double *secs, char *err, size_t errlen)
{
    static const struct {
        const char *unit; /* suffix */
        double mult;      /* seconds per unit */
    } units[] = {{"", 1},     {"ms", 0.001}, {"s", 1},        {"m", 60},
                 {"h", 3600}, {"d", 86400},  {"w", 7 * 86400}};
    size_t n = km_rh_number_len(text);
    size_t i;

    if (n == 0)
        return km_rh_fail(err, errlen,
                          "not a duration: give a positive number of seconds with an "
                          "optional unit (30, 1.5s, 15m, 1h, 2d, 1w, 500ms)");
    for (i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(text + n, units[i].unit) == 0)
            break;
    if (i == sizeof units / sizeof units[0])
        return km_rh_fail(err, errlen, "unknown unit '%.16s' (ms, s, m, h, d or w)",
                          text + n);
    *secs = strtod(text, NULL) * units[i].mult;
    if (*secs == 0)
        return km_rh_fail(err, errlen, "must be more than 0");
    if (*secs < KM_RH_DURATION_MIN)
        return km_rh_fail(err, errlen, "shorter than 1 ms");
    if (!(*secs <= KM_RH_DURATION_MAX))
        return km_rh_fail(err, errlen, "longer than 10 years");
    return 0;
}

/* ---- query strings -------------------------------------------------------- */

/* A scalar parameter (from, to, since, step) given once. */
static int km_rh_scalar(const char *key, const char *val, int *has, double *out,
                        int duration, char *err, size_t errlen)
{
    char why[200];

    if (*has)
        return km_rh_fail(err, errlen, "%s: given twice", key);
    if ((duration ? km_rh_duration(val, out, why, sizeof why)
                  : km_rh_time(val, out, why, sizeof why)) < 0)
        return km_rh_fail(err, errlen, "%s: %s", key, why);
    *has = 1;
    return 0;
}

/* A series= or match= parameter: one more selector. */
static int km_rh_add_selector(struct km_rh_query *q, const char *key, const char *val,
                              char *err, size_t errlen)
{
    char why[200];

    if (q->nsel >= KM_RH_SELECTORS_MAX)
        return km_rh_fail(err, errlen, "%s: more than %d selectors in one request", key,
                          KM_RH_SELECTORS_MAX);
    if (km_rh_selector(val, &q->sel[q->nsel], why, sizeof why) < 0)
        return km_rh_fail(err, errlen, "%s: %s", key, why);
    q->nsel++;
    return 0;
}

/* Notes an unknown parameter's name in the list for the error. */
static void km_rh_unknown(char *list, size_t len, const char *key)
{
    size_t used = strlen(list);
    if (used + 4 < len)
        snprintf(list + used, len - used, "%s'%.40s'", used ? ", " : "", key);
}

/* Which parameters a route takes. */
static const char *const km_rh_range_keys[] = {"series", "from", "to", "since", "step"};
static const char *const km_rh_listing_keys[] = {"match"};

/* 1 when route takes key; 0 when it is unknown; -1 to ignore it (the
   server's token). */
static int km_rh_known(enum km_rh_route route, const char *key)
{
    const char *const *keys =
        route == KM_RH_LISTING ? km_rh_listing_keys : km_rh_range_keys;
    size_t n = route == KM_RH_LISTING ? 1 : 5;

    if (strcmp(key, "token") == 0 || strcmp(key, "access_token") == 0)
        return -1; /* checked by the server before we are called */
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, keys[i]) == 0)
            return 1;
    return 0;
}

/* One decoded parameter the route takes. */
static int km_rh_param(struct km_rh_query *q, const char *key, const char *val, char *err,
                       size_t errlen)
{
    if (strcmp(key, "series") == 0 || strcmp(key, "match") == 0)
        return km_rh_add_selector(q, key, val, err, errlen);
    if (strcmp(key, "from") == 0)
        return km_rh_scalar(key, val, &q->has_from, &q->from, 0, err, errlen);
    if (strcmp(key, "to") == 0)
        return km_rh_scalar(key, val, &q->has_to, &q->to, 0, err, errlen);
    if (strcmp(key, "since") == 0)
        return km_rh_scalar(key, val, &q->has_since, &q->since, 1, err, errlen);
    return km_rh_scalar(key, val, &q->has_step, &q->step, 1, err, errlen);
}

/* The piece [p, end) of a query string: key=value. */
static int km_rh_piece(struct km_rh_query *q, enum km_rh_route route, const char *p,
                       const char *end, char *unknown, size_t ulen, char *err,
                       size_t errlen)
{
    const char *eq = memchr(p, '=', (size_t)(end - p)), *v = eq ? eq + 1 : end;
    char key[KM_RH_KEY_MAX], val[KM_RH_SELECTOR_MAX + 1];
    long kl = km_pct_decode(p, (size_t)((eq ? eq : end) - p), key, sizeof key,
                            KM_PCT_QUERY),
         vl;
    int known;

    if (kl == KM_PCT_ENUL)
        return km_rh_fail(err, errlen, "a parameter name holds a NUL byte");
    if (kl == 0 && !eq)
        return 0;                                 /* an empty piece (a&&b) is nothing */
    known = kl < 0 ? 0 : km_rh_known(route, key); /* too long: not ours */
    if (known <= 0) {
        if (known == 0)
            km_rh_unknown(unknown, ulen, key);
        return 0;
    }
    vl = km_pct_decode(v, (size_t)(end - v), val, sizeof val, KM_PCT_QUERY);
    if (vl == KM_PCT_ETOOLONG)
        return km_rh_fail(err, errlen, "%s: longer than %d bytes", key,
                          KM_RH_SELECTOR_MAX);
    if (vl < 0)
        return km_rh_fail(err, errlen, "%s: holds a NUL byte", key);
    return km_rh_param(q, key, val, err, errlen);
}

int km_rh_parse(const char *query, enum km_rh_route route, struct km_rh_query *q,
                char *err, size_t errlen)
{
    const char *p = query ? query : "", *stop = p + strcspn(p, "#");
    char unknown[200] = "";

    q->nsel = 0;
    q->has_from = q->has_to = q->has_step = q->has_since = 0;
    q->from = q->to = q->step = q->since = 0;
    while (p < stop) {
        const char *end = memchr(p, '&', (size_t)(stop - p));
        if (!end)
            end = stop;
        if (km_rh_piece(q, route, p, end, unknown, sizeof unknown, err, errlen) < 0)
            return -1;
        p = end < stop ? end + 1 : stop;
    }
    if (*unknown)
        return km_rh_fail(err, errlen, "unknown parameter %s (known: %s)", unknown,
                          route == KM_RH_LISTING ? "match"
                                                 : "series, from, to, since, step");
    if (q->has_from && q->has_since)
        return km_rh_fail(err, errlen, "give from or since, not both");
    return 0;
}

int km_rh_range(const struct km_rh_query *q, double now, double *from, double *to,
                char *err, size_t errlen)
{
    char a[40], b[40];

    *to = q->has_to ? q->to : now;
    *from = q->has_from    ? q->from
            : q->has_since ? *to - q->since
                           : *to - KM_RH_RANGE_DEFAULT;
    if (*from < 0)
        *from = 0;
    if (*from > *to) {
        snprintf(a, sizeof a, "%.3f", *from);
        snprintf(b, sizeof b, "%.3f", *to);
        return km_rh_fail(err, errlen, "from (%s) is after to (%s)", a, b);
    }
    return 0;
}

/* ---- steps ----------------------------------------------------------------- */

/* Buckets of `step` (aligned to its multiples) that [from, to] touches. */
static double km_rh_buckets(double from, double to, double step)
{
    return floor(to / step) - floor(from / step) + 1;
}

/* 1 when a is a whole multiple of b (to a relative 1e-9). */
static int km_rh_multiple(double a, double b)
{
    double k = round(a / b);
    return k >= 1 && fabs(a - k * b) <= 1e-9 * a;
}

/* Round numbers: of seconds for a step, of tier steps for a multiple. */
static const double km_rh_nice[] = {1,     2,     5,     10,    15,     30,    60,
                                    120,   300,   600,   900,   1800,   3600,  7200,
                                    10800, 21600, 43200, 86400, 172800, 604800};
#define KM_RH_NNICE (sizeof km_rh_nice / sizeof km_rh_nice[0])

/* The default step: the smaller of the first round number of seconds >=
   need that is a multiple of tier_step, and tier_step times the first round
   number that reaches need (600 s for 1 m, 1200 s for 10 m tiers). */
static double km_rh_auto_step(double need, double tier_step)
{
    double best = INFINITY;
    size_t i;

    for (i = 0; i < KM_RH_NNICE; i++)
        if (km_rh_nice[i] >= need && km_rh_nice[i] >= tier_step &&
            km_rh_multiple(km_rh_nice[i], tier_step)) {
            best = km_rh_nice[i];
            break;
        }
    for (i = 0; i < KM_RH_NNICE; i++)
        if (km_rh_nice[i] * tier_step >= need) {
            best = fmin(best, km_rh_nice[i] * tier_step);
            break;
        }
    if (isinf(best)) /* a range of more than 604800 tier steps of 1000 */
        best = ceil(need / tier_step - 1e-9) * tier_step;
    return best;
}

int km_rh_step(double from, double to, double tier_step, double want, double *step,
               size_t *points, char *err, size_t errlen)
{
    double range = to - from, s;

    if (!(tier_step > 0) || !(range >= 0))
        return km_rh_fail(err, errlen, "bad range or tier");
    if (want > 0) {
        if (range / want > KM_RH_POINTS_MAX)
            return km_rh_fail(err, errlen,
                              "step: exceeded maximum resolution of 11,000 points per "
                              "timeseries. Try decreasing the query resolution "
                              "(?step=XX)");
        /* the store answers in whole tier steps */
        s = fmax(1, ceil(want / tier_step - 1e-9)) * tier_step;
    } else {
        /* + 2: an unaligned range touches up to two more buckets */
        s = km_rh_auto_step(range / (KM_RH_POINTS_AUTO - 2), tier_step);
    }
    *step = s;
    *points = (size_t)km_rh_buckets(from, to, s);
    return 0;
}

/* ---- the handlers ----------------------------------------------------------- */

int km_rest_history_owns(const char *path)
{
    return strcmp(path, KM_RH_PATH) == 0 || strcmp(path, KM_RH_PATH_SERIES) == 0;
}

/* A number as JSON: an integer when it is one (t and step read better),
   null when it is not finite. */
static json_t *km_rh_num(double x)
{
    if (!isfinite(x))
        return json_null();
    if (x == floor(x) && fabs(x) < 9007199254740992.0)
        return json_integer((json_int_t)x);
    return json_real(x);
}

/* A series' canonical label text as a JSON object. */
static json_t *km_rh_labels_json(const char *labels)
{
    char k[KM_SERIES_LABELS_MAX + 1], v[KM_SERIES_LABELS_MAX + 1];
    const char *p = labels ? labels : "";
    json_t *o = json_object();

    while (o && km_labels_next(&p, k, sizeof k, v, sizeof v) == 1)
        json_object_set_new(o, k, json_string(v));
    return o;
}

static const char *km_rh_type(const struct km_family *f)
{
    return f->type == KM_SERIES_COUNTER ? "counter" : "gauge";
}

static int km_rh_error(int status, const char *detail, json_t **body)
{
    *body = km_rest_detail(detail);
    return status;
}

/*
 * The series the selectors of q match, each once, in the order of the
 * selectors, into found (KM_RH_SERIES_MAX). Returns how many, or -1 when
 * there are more.
 */
static long km_rh_collect(struct km_series_reg *reg, const struct km_rh_query *q,
                          struct km_series **found)
{
    size_t n = 0;

    for (unsigned i = 0; i < q->nsel; i++) {
        struct km_family *f = km_series_family(reg, q->sel[i].name);
        for (struct km_series *s = f ? f->first : NULL; s; s = s->next) {
            size_t j;
            if (!km_rh_matches(&q->sel[i], s->labels))
                continue;
            for (j = 0; j < n && found[j] != s; j++)
                ;
            if (j < n)
                continue; /* matched by an earlier selector */
            if (n == KM_RH_SERIES_MAX)
                return -1;
            found[n++] = s;
        }
    }
    return (long)n;
}

/* One series of a range answer, its points read into buf (max points):
   {"name","labels","type","live","points"}. */
static int km_rh_put_series(struct km_rh_text *t, const struct km_history *h,
                            const struct km_series *s, unsigned tier, double from,
                            double to, double step, int downsampled,
                            struct km_history_point *buf, size_t max)
{
    long n = km_history_query(h, s, tier, from, to, step, buf, max);
    json_t *head = json_pack("{s:s, s:o, s:s, s:b}", "name", s->family->name, "labels",
                             km_rh_labels_json(s->labels), "type", km_rh_type(s->family),
                             "live", s->live);

    if (km_rh_text_open(t, head) < 0 || km_rh_text_put(t, ",\"points\":", 10) < 0 ||
        km_rh_text_points(t, buf, n, downsampled) < 0)
        return -1;
    return km_rh_text_put(t, "}", 1);
}

/* The tier and its figures as JSON. */
static json_t *km_rh_tier_json(const struct km_history_tier *t)
{
    return json_pack("{s:o, s:o}", "step", km_rh_num(t->step), "retention",
                     km_rh_num(t->retention));
}

/* Writes the 200 answer of GET /api/v1/history for the matched series
   into out: the envelope through jansson, "series" spliced in last. */
static int km_rh_answer(const struct km_history *h, struct km_series **found, long n,
                        double from, double to, unsigned tier, double step, size_t points,
                        struct km_rh_text *out, json_t **body)
{
    const struct km_history_tier *t = km_history_tier(h, tier);
    int downsampled = tier > 0 || step > t->step * (1 + 1e-9);
    struct km_history_point *buf = calloc(points ? points : 1, sizeof *buf);
    int rc = buf ? 0 : -1;

    if (!rc)
        rc = km_rh_text_open(out, json_pack("{s:o, s:o, s:o, s:{s:i, s:o, s:o}, s:b}",
                                            "from", km_rh_num(from), "to", km_rh_num(to),
                                            "step", km_rh_num(step), "tier", "index",
                                            (int)tier, "step", km_rh_num(t->step),
                                            "retention", km_rh_num(t->retention),
                                            "downsampled", downsampled));
    if (!rc)
        rc = km_rh_text_put(out, ",\"series\":[", 11);
    for (long i = 0; !rc && i < n; i++)
        if ((i && km_rh_text_put(out, ",", 1) < 0) ||
            km_rh_put_series(out, h, found[i], tier, from, to, step, downsampled, buf,
                             points) < 0)
            rc = -1;
    if (!rc)
        rc = km_rh_text_put(out, "]}", 2);
    free(buf);
    if (rc < 0) {
        km_rh_text_free(out);
        return km_rh_error(500, "out of memory", body);
    }
    return 200;
}

/* GET /api/v1/history with q parsed: 200 with the answer in out, or the
   status with its {"detail"} in *body. */
static int km_rh_range_get(struct km_core *core, const struct km_rh_query *q, double now,
                           struct km_rh_text *out, json_t **body)
{
    struct km_series *found[KM_RH_SERIES_MAX];
    char err[400];
    double from, to, step;
    size_t points;
    unsigned tier;
    long n;

    if (q->nsel == 0)
        return km_rh_error(400,
                           "series: missing; give at least one series=NAME or "
                           "series=NAME{label=\"value\"} (GET /api/v1/history/series "
                           "lists them)",
                           body);
    if (km_rh_range(q, now, &from, &to, err, sizeof err) < 0)
        return km_rh_error(400, err, body);
    tier = km_history_pick(core->history, from, now);
    if (km_rh_step(from, to, km_history_tier(core->history, tier)->step,
                   q->has_step ? q->step : 0, &step, &points, err, sizeof err) < 0)
        return km_rh_error(400, err, body);
    n = km_rh_collect(core->series, q, found);
    if (n < 0)
        return km_rh_error(400,
                           "series: the selectors match more than 256 series; narrow "
                           "them with labels",
                           body);
    if ((double)n * (double)points > KM_RH_ANSWER_MAX) {
        snprintf(err, sizeof err,
                 "step: %ld series of %zu points is more than %d points in one answer; "
                 "raise step or narrow the series",
                 n, points, KM_RH_ANSWER_MAX);
        return km_rh_error(400, err, body);
    }
    return km_rh_answer(core->history, found, n, from, to, tier, step, points, out, body);
}

/* 1 when s is listed for q (no selector: every series). */
static int km_rh_listed(const struct km_rh_query *q, const struct km_series *s)
{
    if (q->nsel == 0)
        return 1;
    for (unsigned i = 0; i < q->nsel; i++)
        if (strcmp(q->sel[i].name, s->family->name) == 0 &&
            km_rh_matches(&q->sel[i], s->labels))
            return 1;
    return 0;
}

static json_t *km_rh_listing_item(const struct km_history *h, const struct km_series *s)
{
    double first = km_history_first(h, s), last = km_history_last(h, s);

    return json_pack("{s:s, s:o, s:s, s:s, s:b, s:o, s:o}", "name", s->family->name,
                     "labels", km_rh_labels_json(s->labels), "type",
                     km_rh_type(s->family), "help",
                     s->family->help ? s->family->help : "", "live", s->live, "first",
                     first > 0 ? km_rh_num(first) : json_null(), "last",
                     last > 0 ? km_rh_num(last) : json_null());
}

/* GET /api/v1/history/series with q parsed. */
static int km_rh_listing_get(struct km_core *core, const struct km_rh_query *q,
                             json_t **body)
{
    json_t *list = json_array(), *tiers = json_array();
    size_t n = 0;
    int truncated = 0;

    for (struct km_family *f = km_series_families(core->series); f; f = f->next)
        for (struct km_series *s = f->first; s; s = s->next) {
            if (!km_rh_listed(q, s))
                continue;
            if (n == KM_RH_LIST_MAX) {
                truncated = 1;
                break;
            }
            json_array_append_new(list, km_rh_listing_item(core->history, s));
            n++;
        }
    for (unsigned i = 0; i < km_history_ntiers(core->history); i++)
        json_array_append_new(tiers, km_rh_tier_json(km_history_tier(core->history, i)));
    *body =
        json_pack("{s:o, s:I, s:I, s:I, s:o, s:b}", "series", list, "count",
                  (json_int_t)n, "max_series", (json_int_t)km_series_max(core->series),
                  "refused", (json_int_t)km_series_refused(core->series), "tiers", tiers,
                  "truncated", truncated);
    return *body ? 200 : km_rh_error(500, "out of memory", body);
}

/* The start of both routes: 503 without a store, the registry brought up
   to date, the query parsed into *q (new). 0, or the status with *body. */
static int km_rh_begin(struct km_core *core, const char *query, enum km_rh_route route,
                       struct km_rh_query **q, json_t **body)
{
    char err[400];

    *q = NULL;
    if (!core->history || !core->series)
        return km_rh_error(503,
                           "history is disabled: set [history] enabled = true in "
                           "katomon.conf to keep and query it",
                           body);
    /* the series' live flags and latest values as of now */
    km_series_collect(core->series);
    /* ~85 KiB: on the heap, not on the loop's stack */
    *q = malloc(sizeof **q);
    if (!*q)
        return km_rh_error(500, "out of memory", body);
    if (km_rh_parse(query, route, *q, err, sizeof err) < 0)
        return km_rh_error(400, err, body);
    return 0;
}

int km_rest_history(struct km_core *core, const char *path, const char *query, double now,
                    json_t **body)
{
    int listing = strcmp(path, KM_RH_PATH_SERIES) == 0;
    struct km_rh_text text = {NULL, 0, 0};
    struct km_rh_query *q;
    int status =
        km_rh_begin(core, query, listing ? KM_RH_LISTING : KM_RH_RANGE, &q, body);

    if (!status && listing)
        status = km_rh_listing_get(core, q, body);
    else if (!status) {
        /* the one writer of the range answer: parsed back (the server sends
           the text itself) */
        status = km_rh_range_get(core, q, now, &text, body);
        if (status == 200 && !(*body = json_loadb(text.data, text.len, 0, NULL)))
            status = km_rh_error(500, "out of memory", body);
        km_rh_text_free(&text);
    }
    free(q);
    return status;
}

int km_rest_history_text(struct km_core *core, const char *query, double now,
                         struct km_rh_text *out)
{
    struct km_rh_query *q;
    json_t *body = NULL;
    int status;

    memset(out, 0, sizeof *out);
    status = km_rh_begin(core, query, KM_RH_RANGE, &q, &body);
    if (!status)
        status = km_rh_range_get(core, q, now, out, &body);
    free(q);
    if (body) { /* an error: its {"detail"} as text */
        if (km_rh_text_json(out, body) < 0)
            km_rh_text_free(out);
    } else if (status != 200) /* the detail itself failed */
        km_rh_text_free(out);
    return status;
}
