/*
 * katomon/conf.h - the value syntax of katomon.conf (header-only, no core
 * symbols).
 *
 * The loader checks the typed keys of a plugin's sections (struct
 * km_conf_key) with exactly these functions, and the host's config_int,
 * config_double and config_bool read values with them. A plugin's check
 * (struct km_plugin) that reads a typed value itself uses them too, so it
 * agrees with the loader on what a valid number or boolean is: a value
 * these refuse was reported by the loader already, and check skips it.
 *
 * Each returns 0 and sets *out, or -1 and leaves *out alone.
 */
#ifndef KATOMON_CONF_H
#define KATOMON_CONF_H

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when a and b are equal ignoring ASCII case (strcasecmp is not C99). */
static inline int km_conf_same_word(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return 0;
    return *a == *b;
}

/* true/false, yes/no, on/off, 1/0, in any case. */
static inline int km_conf_parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    if (!text)
        return -1;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (km_conf_same_word(text, yes[i]) || km_conf_same_word(text, no[i])) {
            *out = km_conf_same_word(text, yes[i]);
            return 0;
        }
    }
    return -1;
}

/* A decimal integer that fits a long long: no blanks, no suffix, no hex. */
static inline int km_conf_parse_int(const char *text, long long *out)
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

/* A finite decimal number ("2.5", "-1e3", ".5"); no nan, inf or hex. */
static inline int km_conf_parse_double(const char *text, double *out)
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

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_CONF_H */
