/*
 * katomon/util.h - small header-only helpers for plugins and the core (no
 * core symbols: plugins link none).
 */
#ifndef KATOMON_UTIL_H
#define KATOMON_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Microseconds since the epoch, wall clock. */
static inline int64_t km_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A duration in seconds as a struct timeval (negative: 0), for timers. */
static inline struct timeval km_timeval(double seconds)
{
    struct timeval tv;
    if (seconds < 0)
        seconds = 0;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    if (tv.tv_usec >= 1000000)
        tv.tv_usec = 999999;
    return tv;
}

/* Microseconds of CLOCK_MONOTONIC. */
static inline int64_t km_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- ISO 8601 time: the one formatter and parser (core and plugins) ---- */

/* Bytes a km_format_iso buffer needs for any time (27 in this era + NUL). */
#define KM_ISO_LEN 32

/* Days since 1970-01-01 of a proleptic Gregorian date; m 1-12; d is linear
   (day 31 of February is 3 March, as timegm has it). */
static inline int64_t km_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The date of day z since 1970-01-01 (inverse of km_days_from_civil). */
static inline void km_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Writes v as exactly n decimal digits at p (leading zeros); returns p + n. */
static inline char *km_iso_digits(char *p, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

/*
 * Formats `us` (µs since the epoch) as UTC ISO 8601 with `digits` (0 to 6)
 * digits of the second's fraction (truncated, not rounded) and a Z:
 *   6: "2026-11-23T02:40:00.123456Z" (the WebSocket messages)
 *   3: "2026-11-23T02:40:00.123Z"    (plugins' timestamps, "fetched_at")
 *   0: "2026-11-23T02:40:00Z"        (log lines)
 * into buf (KM_ISO_LEN bytes hold any time; a shorter buf gets a cut, NUL-
 * terminated text, as snprintf would). Returns buf. The date is computed
 * here (no gmtime_r, strftime or locale), so it is cheap enough to call per
 * message.
 */
static inline char *km_format_iso(int64_t us, int digits, char *buf, size_t len)
{
    static const int64_t div[7] = {1000000, 100000, 10000, 1000, 100, 10, 1};
    int64_t sec = us / 1000000, frac = us % 1000000, y;
    unsigned mo, d;
    char t[48];
    int n;

    if (frac < 0) {
        frac += 1000000;
        sec--;
    }
    int64_t day = sec / 86400, rem = sec % 86400;
    if (rem < 0) {
        rem += 86400;
        day--;
    }
    km_civil_from_days(day, &y, &mo, &d);
    digits = digits < 0 ? 0 : digits > 6 ? 6 : digits;
    if (y >= 0 && y <= 9999) {
        /* the common case, by hand: snprintf would cost more than the rest */
        char *p = km_iso_digits(t, (unsigned)y, 4);
        *p++ = '-';
        p = km_iso_digits(p, mo, 2);
        *p++ = '-';
        p = km_iso_digits(p, d, 2);
        *p++ = 'T';
        p = km_iso_digits(p, (unsigned)(rem / 3600), 2);
        *p++ = ':';
        p = km_iso_digits(p, (unsigned)(rem / 60 % 60), 2);
        *p++ = ':';
        p = km_iso_digits(p, (unsigned)(rem % 60), 2);
        n = (int)(p - t);
    } else {
        n = snprintf(t, sizeof t, "%lld-%02u-%02uT%02d:%02d:%02d", (long long)y, mo, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    }
    if (digits) {
        t[n++] = '.';
        n = (int)(km_iso_digits(t + n, (unsigned)(frac / div[digits]), digits) - t);
    }
    t[n++] = 'Z';
    if (len) {
        size_t k = (size_t)n < len - 1 ? (size_t)n : len - 1;
        memcpy(buf, t, k);
        buf[k] = '\0';
    }
    return buf;
}

/*
 * Parses ISO 8601 "2026-11-23T02:40:00[.fff][Z|+HH:MM|-HH:MM]" (a space may
 * stand for the T; no zone: UTC; fraction digits past the sixth are
 * ignored) into µs since the epoch. Returns 0, or -1 when text (borrowed)
 * is not of that form.
 */
static inline int km_parse_iso(const char *text, int64_t *us)
{
    int year, mon, day, hh, mm, ss, n = 0;

    if (sscanf(text, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &year, &mon, &day, &hh, &mm, &ss,
               &n) != 6 ||
        n == 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 ||
        ss > 60)
        return -1;
    int64_t frac = 0, scale = 100000;
    const char *p = text + n;
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac += (*p - '0') * scale;
            scale /= 10;
        }
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 1 + k;
    }
    if (*p)
        return -1;
    int64_t secs = km_days_from_civil(year, (unsigned)mon, (unsigned)day) * 86400 +
                   (int64_t)hh * 3600 + (int64_t)mm * 60 + ss;
    *us = (secs - offset) * 1000000 + frac;
    return 0;
}

/* Longest topic name, in bytes (struct km_topic_def's name). */
#define KM_TOPIC_NAME_MAX 64

/*
 * 1 when name (borrowed; NULL is fine) is a topic name: [a-z0-9_.-]+, at
 * most KM_TOPIC_NAME_MAX bytes; else 0. The one rule: the bus (declare,
 * subscribe), the WebSocket requests and alert_manager's [alert] topic all
 * check with it.
 */
static inline int km_topic_name_valid(const char *name)
{
    size_t len = 0;
    if (!name || !*name)
        return 0;
    for (const char *p = name; *p; p++, len++) {
        char c = *p;
        if (len >= KM_TOPIC_NAME_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* Longest host name, in bytes ([core] host_name, struct km_remote). */
#define KM_HOST_NAME_MAX 64

/*
 * 1 when name (borrowed; NULL is fine) is a host name: [A-Za-z0-9_.-]{1,64}
 * (a DNS name fits; ':' and glob characters cannot, so a bridge's channel
 * names split cleanly); else 0.
 */
static inline int km_host_name_valid(const char *name)
{
    size_t len = 0;
    if (!name || !*name)
        return 0;
    for (const char *p = name; *p; p++, len++) {
        char c = *p;
        if (len >= KM_HOST_NAME_MAX)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Makes s valid UTF-8 in place: every byte that does not start a whole,
   well-formed character becomes '?'. For texts quoting outside bytes or cut
   to a buffer inside a character, which json_pack would refuse whole (the
   message or answer carrying them then went out without them, or not at
   all: found by tests/fuzz). */
static inline void km_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        int n = *p < 0x80                           ? 1
                : (*p & 0xE0) == 0xC0 && *p >= 0xC2 ? 2
                : (*p & 0xF0) == 0xE0               ? 3
                : (*p & 0xF8) == 0xF0 && *p <= 0xF4 ? 4
                                                    : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++)
            ok = (p[i] & 0xC0) == 0x80;
        /* no overlong 3-byte form, no surrogate, nothing past U+10FFFF */
        if (ok && n == 3)
            ok = !(p[0] == 0xE0 && p[1] < 0xA0) && !(p[0] == 0xED && p[1] >= 0xA0);
        if (ok && n == 4)
            ok = !(p[0] == 0xF0 && p[1] < 0x90) && !(p[0] == 0xF4 && p[1] >= 0x90);
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_UTIL_H */
