/*
 * katomon/util.h - small header-only helpers for plugins (no core symbols).
 */
#ifndef KATOMON_UTIL_H
#define KATOMON_UTIL_H

#include <stdint.h>
#include <stdio.h>
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

/* Microseconds of CLOCK_MONOTONIC. */
static inline int64_t km_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Formats `us` (µs since the epoch) as UTC ISO 8601 with milliseconds and
 * a Z, e.g. "2026-11-23T02:40:00.123Z", into buf (at least 32 bytes).
 * Returns buf.
 */
static inline char *km_format_utc(int64_t us, char *buf, size_t len)
{
    time_t secs = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03dZ", (int)((us / 1000) % 1000));
    return buf;
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_UTIL_H */
