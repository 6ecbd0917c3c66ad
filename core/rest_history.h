/*
 * rest_history.h - the history range API (issue 14; brief "Range API"):
 *
 *   GET /api/v1/history?series=SEL[&series=SEL...]&from=T&to=T&step=S
 *                       (or since=D instead of from)
 *   GET /api/v1/history/series[?match=SEL...]
 *
 * SEL is `name` or `name{label="value",...}` (equality matchers only;
 * values in double quotes with \", \\ and \n escapes; a name alone takes
 * every series of the family; label="" matches series without the label).
 * T is unix seconds (fractional allowed) or ISO 8601 with Z or an offset.
 * S and D are durations: a number of seconds with an optional unit (ms, s,
 * m, h, d, w).
 *
 * Two halves. The parsers below are pure (no registry, no store, no
 * clock): they turn the query string into a struct km_rh_query and the
 * range into a step, and say in `err` what is wrong, naming the
 * parameter. The handlers match the selectors in the series registry,
 * pick the history tier, query the store into one bounded buffer and
 * write the answer.
 *
 * The range answer is written as JSON text (km_rest_history_text), not as
 * a json_t: one json_t per point and json_dumps took 17 ms for 1 h of 10
 * series at 1 s (31,592 points), the text takes about 2.5 (history_bench).
 * jansson still writes the envelope and each series' name, labels, type and live flag
 * (its escaping); the points are written by hand: t and values with
 * km_metrics_value (metrics.h: integers as integers, other values with
 * the fewest digits that parse back, so exact where %.15g was not), null
 * for NaN and infinities. The server sends that text as it is (its own
 * route, server_route.c); km_rest_history parses it back for callers that
 * want a json_t (km_rest_handle, the tests).
 *
 * Limits (400 beyond): KM_RH_SELECTORS_MAX selectors, KM_RH_SERIES_MAX
 * matched series, KM_RH_SELECTOR_MAX bytes of selector text,
 * KM_SERIES_LABELS_MAX bytes of label text, KM_RH_POINTS_MAX points per
 * series for an explicit step (Prometheus's limit), KM_RH_ANSWER_MAX
 * points per answer.
 *
 * Ownership: the parsers write into caller-owned structs; the handlers'
 * *body and text are new (the caller frees them). Nothing here keeps
 * state between calls.
 */
#ifndef KM_REST_HISTORY_H
#define KM_REST_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "core.h"
#include "history.h"
#include "series.h"

#define KM_RH_SELECTORS_MAX 64               /* series= (or match=) parameters */
#define KM_RH_SERIES_MAX    256              /* series one answer may hold */
#define KM_RH_SELECTOR_MAX  1024             /* bytes of one selector, decoded */
#define KM_RH_MATCHERS_MAX  32               /* label matchers in one selector */
#define KM_RH_POINTS_MAX    11000            /* points per series, explicit step */
#define KM_RH_POINTS_AUTO   1000             /* points per series, default step */
#define KM_RH_ANSWER_MAX    500000           /* points in one answer, all series */
#define KM_RH_LIST_MAX      65536            /* series one listing holds */
#define KM_RH_TIME_MAX      253402300799.0   /* 9999-12-31T23:59:59Z */
#define KM_RH_DURATION_MAX  (3650.0 * 86400) /* ten years */
#define KM_RH_DURATION_MIN  0.001            /* one millisecond */
#define KM_RH_RANGE_DEFAULT 3600.0 /* from = to - 1 h when neither from nor since */
/* bytes of one answer's text: KM_RH_ANSWER_MAX points of 4 numbers take
   at most ~55 MB, 256 series' labels under 1 MB more */
#define KM_RH_TEXT_MAX ((size_t)128 << 20)

#define KM_RH_PATH        "/api/v1/history"
#define KM_RH_PATH_SERIES "/api/v1/history/series"

/* One `label="value"` of a selector; offsets into its selector's buf. */
struct km_rh_matcher {
    uint16_t key;   /* label name */
    uint16_t value; /* value, unescaped ("" matches a missing label too) */
};

/* One parsed selector. */
struct km_rh_selector {
    char name[KM_SERIES_NAME_MAX + 1];                       /* family name */
    unsigned nmatch;                                         /* matchers used */
    struct km_rh_matcher m[KM_RH_MATCHERS_MAX];              /* in the order given */
    char buf[KM_SERIES_LABELS_MAX + 2 * KM_RH_MATCHERS_MAX]; /* their text,
                                                    NUL-separated */
};

/* A parsed query string of either route. */
struct km_rh_query {
    unsigned nsel;                                  /* selectors given */
    struct km_rh_selector sel[KM_RH_SELECTORS_MAX]; /* series= or match= */
    int has_from, has_to, has_step, has_since;      /* which were given */
    double from;                                    /* unix seconds */
    double to;                                      /* unix seconds */
    double step;                                    /* seconds */
    double since;                                   /* seconds */
};

/* Which route a query string belongs to (they take different parameters). */
enum km_rh_route {
    KM_RH_RANGE,  /* /api/v1/history: series, from, to, since, step */
    KM_RH_LISTING /* /api/v1/history/series: match */
};

/* ---- the pure parsers: 0, or -1 with a sentence in err ---- */

/* `name` or `name{k="v",...}` (decoded text) into *sel. */
int km_rh_selector(const char *text, struct km_rh_selector *sel, char *err,
                   size_t errlen);
/* Unix seconds or ISO 8601 (with Z or +HH:MM) into *t. */
int km_rh_time(const char *text, double *t, char *err, size_t errlen);
/* "30", "1.5s", "15m", "1h", "2d", "1w", "500ms" into seconds, in
   [KM_RH_DURATION_MIN, KM_RH_DURATION_MAX]. */
int km_rh_duration(const char *text, double *secs, char *err, size_t errlen);
/* A whole raw query string (call->query) of `route` into *q (every field
   set). token and access_token (the server's auth) are ignored. */
int km_rh_parse(const char *query, enum km_rh_route route, struct km_rh_query *q,
                char *err, size_t errlen);
/* from and to of q with the defaults (to = now; from = to - since, or to -
   1 h); -1 when from > to. */
int km_rh_range(const struct km_rh_query *q, double now, double *from, double *to,
                char *err, size_t errlen);

/*
 * The step of a query on [from, to] of a tier of step tier_step. Without
 * an explicit step (want <= 0): the smallest round multiple of tier_step
 * that gives at most KM_RH_POINTS_AUTO points. With one: -1 when it gives
 * more than KM_RH_POINTS_MAX points, else it is rounded up to a multiple
 * of tier_step. *points gets the number of step buckets [from, to] spans.
 */
int km_rh_step(double from, double to, double tier_step, double want, double *step,
               size_t *points, char *err, size_t errlen);

/* 1 when a series' canonical label text satisfies every matcher of sel. */
int km_rh_matches(const struct km_rh_selector *sel, const char *labels);

/* ---- the handlers ---- */

/* An answer's body as JSON text. */
struct km_rh_text {
    char *data; /* the text, NUL-terminated (owned; NULL: none) */
    size_t len; /* bytes in data, NUL excluded */
    size_t cap; /* bytes allocated */
};

/* 1 when path is one of the two routes above. */
int km_rest_history_owns(const char *path);

/*
 * Answers GET path?query at wall-clock time `now` (unix seconds; the tests
 * pass a synthetic one). Returns the status and sets *body (new, always
 * set): 200, 400 {"detail"} for bad input, 503 when core has no history
 * store or no registry, 500 on ENOMEM.
 */
int km_rest_history(struct km_core *core, const char *path, const char *query, double now,
                    json_t **body);

/*
 * GET /api/v1/history?query at `now`, the body as JSON text into *out (its
 * previous content ignored): what km_rest_history answers, same status,
 * same JSON value (the errors too, as {"detail"}), but never a json_t per
 * point. out->data is NULL only when memory ran out (answer 500).
 */
int km_rest_history_text(struct km_core *core, const char *query, double now,
                         struct km_rh_text *out);

/* ---- the answer's text (rest_history_text.c): 0, or -1 on ENOMEM or
   past KM_RH_TEXT_MAX; t starts zeroed ---- */

/* Appends n bytes of s (t->data stays NUL-terminated). */
int km_rh_text_put(struct km_rh_text *t, const char *s, size_t n);
/* Appends v (stolen) dumped as the server dumps JSON (KM_JSON_FLAGS). */
int km_rh_text_json(struct km_rh_text *t, json_t *v);
/* The same for a non-empty object o (stolen), less its closing '}': the
   members written next end up last in it. */
int km_rh_text_open(struct km_rh_text *t, json_t *o);
/* n points as a JSON array: [[t,v],...] or, downsampled, [[t,avg,min,max],
   ...]; each number null when not finite, an integer while whole and below
   2^53, else a real in the fewest digits that parse back to it. */
int km_rh_text_points(struct km_rh_text *t, const struct km_history_point *pts, long n,
                      int downsampled);
/* Frees the text and zeroes it. */
void km_rh_text_free(struct km_rh_text *t);

#endif /* KM_REST_HISTORY_H */
