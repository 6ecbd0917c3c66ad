/*
 * rest_history_text.c - the range answer's JSON text (see rest_history.h,
 * "the answer's text"): a growing buffer bounded by KM_RH_TEXT_MAX, json_t
 * objects dumped into it (as server_conn.c dumps, KM_JSON_FLAGS), and the
 * points written by hand.
 *
 * The points are the whole cost of a long answer (31,592 of them for 1 h
 * of 10 series at 1 s): one reserve per point, then its numbers written in
 * place by km_metrics_value, with no allocation and no printf.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h" /* KM_JSON_FLAGS */
#include "metrics.h"
#include "rest_history.h"

/* Room for n more bytes and a NUL in t; 0, or -1 on ENOMEM or past
   KM_RH_TEXT_MAX. */
static int km_rh_reserve(struct km_rh_text *t, size_t n)
{
    size_t cap = t->cap ? t->cap : 64 * 1024;
    char *d;

    if (t->cap > t->len + n)
        return 0;
    if (n >= KM_RH_TEXT_MAX - t->len)
        return -1;
    while (cap <= t->len + n)
        cap *= 2;
    if (cap > KM_RH_TEXT_MAX)
        cap = KM_RH_TEXT_MAX;
    d = realloc(t->data, cap);
    if (!d)
        return -1;
    t->data = d;
    t->cap = cap;
    return 0;
}

int km_rh_text_put(struct km_rh_text *t, const char *s, size_t n)
{
    if (km_rh_reserve(t, n) < 0)
        return -1;
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return 0;
}

/* json_dump_callback's writer. */
static int km_rh_sink(const char *s, size_t n, void *t)
{
    return km_rh_text_put(t, s, n);
}

int km_rh_text_json(struct km_rh_text *t, json_t *v)
{
    int rc = v ? json_dump_callback(v, km_rh_sink, t, KM_JSON_FLAGS) : -1;

    json_decref(v);
    return rc < 0 ? -1 : 0;
}

int km_rh_text_open(struct km_rh_text *t, json_t *o)
{
    int object = json_is_object(o) && json_object_size(o) > 0;

    if (km_rh_text_json(t, o) < 0 || !object || t->data[t->len - 1] != '}')
        return -1;
    t->data[--t->len] = '\0';
    return 0;
}

/*
 * x as JSON at p (room: KM_METRICS_VALUE_MAX + 2); returns the end. The
 * value jansson was given for it before (km_rh_num in rest_history.c):
 * null when not finite, an integer while whole below 2^53, else a real.
 * km_metrics_value writes a whole value past 2^53 without a point: it
 * gets ".0", so a parser still reads a real.
 */
static char *km_rh_num_text(char *p, double x)
{
    size_t n;

    if (!isfinite(x)) {
        memcpy(p, "null", 4);
        return p + 4;
    }
    n = km_metrics_value(x, p);
    if (fabs(x) >= 9007199254740992.0 && !memchr(p, '.', n) && !memchr(p, 'e', n)) {
        memcpy(p + n, ".0", 2);
        n += 2;
    }
    return p + n;
}

int km_rh_text_points(struct km_rh_text *t, const struct km_history_point *pts, long n,
                      int downsampled)
{
    /* a point at most: ",[" 4 numbers, 3 commas, "]" */
    const size_t room = 4 * (KM_METRICS_VALUE_MAX + 3) + 3;

    if (km_rh_text_put(t, "[", 1) < 0)
        return -1;
    for (long i = 0; i < n; i++) {
        char *p;
        if (km_rh_reserve(t, room) < 0)
            return -1;
        p = t->data + t->len;
        if (i)
            *p++ = ',';
        *p++ = '[';
        p = km_rh_num_text(p, pts[i].t);
        *p++ = ',';
        p = km_rh_num_text(p, pts[i].v);
        if (downsampled) {
            *p++ = ',';
            p = km_rh_num_text(p, pts[i].min);
            *p++ = ',';
            p = km_rh_num_text(p, pts[i].max);
        }
        *p++ = ']';
        t->len = (size_t)(p - t->data);
    }
    return km_rh_text_put(t, "]", 1);
}

void km_rh_text_free(struct km_rh_text *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}
