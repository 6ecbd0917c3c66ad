/*
 * url.c - the one percent-decoder (see url.h).
 */
#include "url.h"

/* 0..15 for a hex digit, else -1. */
static int km_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long km_pct_decode(const char *s, size_t n, char *out, size_t outlen,
                   enum km_pct_rule rule)
{
    size_t o = 0;
    int nul = 0, full = 0;

    if (outlen == 0)
        return KM_PCT_ETOOLONG;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+' && rule == KM_PCT_QUERY) {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? km_hex((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? km_hex((unsigned char)s[i + 2]) : -1;
            if (hi >= 0 && lo >= 0) {
                c = hi << 4 | lo;
                i += 2;
            } else if (rule == KM_PCT_PATH) {
                return KM_PCT_EBAD;
            }
        }
        /* the rest is still read: a bad escape after a NUL is reported as
           such (EBAD comes first), but nothing more is written */
        if (c == 0)
            nul = 1;
        if (nul || full)
            continue;
        if (o + 1 >= outlen) {
            full = 1;
            continue;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    if (nul)
        return KM_PCT_ENUL;
    return full ? KM_PCT_ETOOLONG : (long)o;
}
