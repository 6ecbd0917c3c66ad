/*
 * url.h - the one percent-decoder, for request paths and for query
 * strings (RFC 3986 section 2.1; the WHATWG URL standard's
 * application/x-www-form-urlencoded parser for queries).
 *
 * Owns only the decoding rules: which '+' is a space, what a stray '%'
 * means, and that no decoded string carries a NUL byte. The HTTP server
 * decodes paths and the token parameter with it, the plugin host
 * (km_host.rest_param) query parameters. Calls no other core file.
 */
#ifndef KM_URL_H
#define KM_URL_H

#include <stddef.h>

/* Which part of a URL is decoded: the two differ on '+' and on a stray '%'. */
enum km_pct_rule {
    KM_PCT_PATH,  /* '+' stays '+'; '%' must start two hex digits (else KM_PCT_EBAD) */
    KM_PCT_QUERY, /* '+' is a space; a '%' not followed by two hex digits stays '%' */
};

/* km_pct_decode's failures, in order of precedence. */
#define KM_PCT_EBAD     (-1) /* a bad escape (KM_PCT_PATH only) */
#define KM_PCT_ENUL     (-2) /* %00 or a NUL byte in the input */
#define KM_PCT_ETOOLONG (-3) /* the decoded text and its NUL do not fit outlen */

/*
 * Percent-decodes the n bytes of s (borrowed; NUL bytes in it are refused,
 * not ended at) into out (outlen bytes, always NUL-terminated when outlen >
 * 0) by rule. Returns the decoded length, or a KM_PCT_E* code. A NUL is
 * refused because a C string cut short there names something else
 * ("/api/v1/a%00b" is not "/api/v1/a"); on KM_PCT_ENUL out still holds
 * what came before the NUL (truncated to outlen), for a caller that must
 * answer such a path the way it answers its prefix.
 */
long km_pct_decode(const char *s, size_t n, char *out, size_t outlen,
                   enum km_pct_rule rule);

#endif /* KM_URL_H */
