/*
 * katomon/url.h - the one percent-decoder, for request paths and for query
 * strings (RFC 3986 section 2.1; the WHATWG URL standard's
 * application/x-www-form-urlencoded parser for queries).
 *
 * Header-only, so that plugins (which link no core object) decode with the
 * same code as the core: the HTTP server decodes paths and the token
 * parameter with it, the plugin host (km_host.rest_param) query
 * parameters, kato_api the user and password of its redis:// url.
 *
 * Owns only the decoding rules: which '+' is a space, what a stray '%'
 * means, and that no decoded string carries a NUL byte.
 */
#ifndef KATOMON_URL_H
#define KATOMON_URL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which part of a URL is decoded: the two differ on '+' and on a stray '%'. */
enum km_pct_rule {
    KM_PCT_PATH,  /* '+' stays '+'; '%' must start two hex digits (else KM_PCT_EBAD) */
    KM_PCT_QUERY, /* '+' is a space; a '%' not followed by two hex digits stays '%' */
};

/* km_pct_decode's failures, in order of precedence. */
#define KM_PCT_EBAD     (-1) /* a bad escape (KM_PCT_PATH only) */
#define KM_PCT_ENUL     (-2) /* %00 or a NUL byte in the input */
#define KM_PCT_ETOOLONG (-3) /* the decoded text and its NUL do not fit outlen */

/* 0..15 for a hex digit, else -1. */
static inline int km_pct_hex(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes the n bytes of s (borrowed; NUL bytes in it are refused,
 * not ended at) into out (outlen bytes, always NUL-terminated when outlen >
 * 0) by rule. Returns the decoded length, or a KM_PCT_E* code. A NUL is
 * refused because a C string cut short there names something else
 * ("/api/v1/a%00b" is not "/api/v1/a"); on KM_PCT_ENUL out still holds
 * what came before the NUL (truncated to outlen), for a caller that must
 * answer such a path the way it answers its prefix. Decoding never makes
 * text longer: outlen = n + 1 always fits.
 */
static inline long km_pct_decode(const char *s, size_t n, char *out, size_t outlen,
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
            int hi = i + 2 < n ? km_pct_hex((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? km_pct_hex((unsigned char)s[i + 2]) : -1;
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

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_URL_H */
