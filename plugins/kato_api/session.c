/*
 * session.c - one of KATO's sessions, as stored in its Redis (kato_api).
 *
 * KATO keeps each session as JSON under kato:session:<id>: a few small
 * fields (node_id, created_at, last_accessed, expires_at, access_count,
 * metadata, ...) and a large working state (stm, emotives_accumulator,
 * predictions, ..., ~100 KB and more). Only the small fields are decoded:
 * scan_fields walks the top-level members and skips every other value
 * without building it, and only those fields are ever sent.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kato_api.h"

#define KA_MAX_VALUE (4u << 20) /* a longer session value is not decoded */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string whose opening quote is at p; NULL when unterminated. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past the JSON value at p, without decoding it; NULL when malformed. */
static const char *skip_value(const char *p, const char *end)
{
    size_t depth = 0;

    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && !strchr(",}] \t\r\n", *p))
            p++;
        return p;
    }
    while (p < end) {
        if (*p == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/*
 * The top-level members `keys[0..n)` of the JSON object in [s, s + len):
 * out[i] gets the decoded value (new) or stays NULL. Every other member is
 * skipped undecoded. 0, or -1 when the text is not an object (out[] is
 * then released).
 */
static int scan_fields(const char *s, size_t len, const char *const *keys, size_t n,
                       json_t **out)
{
    const char *p = skip_ws(s, s + len), *end = s + len;

    if (p >= end || *p++ != '{')
        goto bad;
    for (;;) {
        const char *k, *ke, *v;
        p = skip_ws(p, end);
        if (p < end && *p == '}')
            return 0;
        if (p >= end || *p != '"' || !(ke = skip_string(p, end)))
            goto bad;
        k = p + 1;
        p = skip_ws(ke, end);
        if (p >= end || *p != ':')
            goto bad;
        v = skip_ws(p + 1, end);
        if (!(p = skip_value(v, end)))
            goto bad;
        for (size_t i = 0; i < n; i++)
            if (!out[i] && strlen(keys[i]) == (size_t)(ke - 1 - k) &&
                memcmp(k, keys[i], (size_t)(ke - 1 - k)) == 0)
                out[i] = json_loadb(v, (size_t)(p - v), JSON_DECODE_ANY, NULL);
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}')
            return 0;
        goto bad;
    }
bad:
    for (size_t i = 0; i < n; i++) {
        json_decref(out[i]);
        out[i] = NULL;
    }
    return -1;
}

/* "2025-11-13T12:00:00[.ffffff][Z|+HH:MM|-HH:MM]" (no zone: UTC) -> µs
   since the epoch; INT64_MIN when it is not such a time. */
static int64_t iso_to_us(const char *t)
{
    int y, mo, d, h, mi, s, n = 0;
    struct tm tm = {0};
    int64_t frac = 0, scale = 100000, offset = 0;
    const char *p;

    if (sscanf(t, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 ||
        !n || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return INT64_MIN;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    p = t + n;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
            return INT64_MIN;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 1 + k;
    }
    if (*p)
        return INT64_MIN;
    return ((int64_t)timegm(&tm) - offset) * 1000000 + frac;
}

/* A string member into a fixed buffer ("" when absent or too long). */
static void copy_time(json_t *v, char *out)
{
    const char *s = json_string_value(v);
    snprintf(out, KA_TIME_LEN, "%s", s && strlen(s) < KA_TIME_LEN ? s : "");
}

/* See kato_api.h. */
int ka_session_from(struct ka_session *s, const char *id, const char *value, size_t len,
                    json_t **extra)
{
    static const char *const keys[] = {"node_id",    "created_at",   "last_accessed",
                                       "expires_at", "access_count", "metadata",
                                       "ttl_seconds"};
    json_t *v[7] = {NULL};
    size_t n = extra ? 7 : 5;

    memset(s, 0, sizeof *s);
    s->created_us = INT64_MIN;
    s->access_count = -1;
    if (!(s->id = strdup(id)))
        return -1;
    if (len > KA_MAX_VALUE || scan_fields(value, len, keys, n, v) < 0) {
        s->unreadable = 1;
        return 0;
    }
    if (json_is_string(v[0]) && strlen(json_string_value(v[0])) <= KA_MAX_ID)
        s->node = strdup(json_string_value(v[0]));
    copy_time(v[1], s->created);
    copy_time(v[2], s->last);
    copy_time(v[3], s->expires);
    if (s->created[0])
        s->created_us = iso_to_us(s->created);
    if (json_is_integer(v[4]))
        s->access_count = json_integer_value(v[4]);
    if (extra)
        *extra = json_pack("{s:O?, s:O?}", "metadata", v[5], "ttl_seconds", v[6]);
    for (size_t i = 0; i < 7; i++)
        json_decref(v[i]);
    return 0;
}

void ka_session_clear(struct ka_session *s)
{
    free(s->id);
    free(s->node);
}

/* See kato_api.h. */
json_t *ka_session_json(const struct ka_session *s)
{
    char key[sizeof KA_SESSION_PREFIX + KA_MAX_ID];

    snprintf(key, sizeof key, "%s%s", KA_SESSION_PREFIX, s->id);
    return json_pack(
        "{s:s, s:s?, s:s?, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:o, s:n}", "session_id",
        s->id, "node_name", s->node, "node_id", s->node, "redis_key", key, "status",
        "active", "session_reference", s->id, "source",
        s->unreadable ? "redis_key_only" : "redis", "created_at",
        s->created[0] ? s->created : NULL, "last_active", s->last[0] ? s->last : NULL,
        "expires_at", s->expires[0] ? s->expires : NULL, "access_count",
        s->access_count >= 0 ? json_integer(s->access_count) : json_null(), "user_id");
}
