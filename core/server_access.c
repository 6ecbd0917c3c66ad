/*
 * server_access.c - the auth token, the Origin check and CORS (see
 * server_access.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server_access.h"
#include "http_list.h"
#include "url.h"

/* ---- settings ---- */

static void km_access_free_origins(struct km_access *a)
{
    for (size_t i = 0; i < a->n_origins; i++)
        free(a->origins[i]);
    free(a->origins);
    a->origins = NULL;
    a->n_origins = 0;
    a->any_origin = 0;
}

/* Splits "a, b ,c" into a->origins (lower case, no trailing '/'). */
static void km_access_set_origins(struct km_access *a, const char *list)
{
    km_access_free_origins(a);
    if (!list)
        return;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    if (!(a->origins = calloc(n, sizeof *a->origins)))
        return;
    const char *item, *p = list, *end = list + strlen(list);
    size_t len;
    while ((p = km_list_next(p, end, 1, &item, &len))) {
        if (!len)
            continue;
        char *o = strndup(item, len);
        if (o) {
            for (char *q = o; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            if (strcmp(o, "*") == 0)
                a->any_origin = 1;
            a->origins[a->n_origins++] = o;
        }
    }
}

void km_access_set(struct km_access *a, const struct km_config *cfg)
{
    km_access_set_origins(a, cfg ? cfg->allowed_origins : NULL);
    free(a->auth_token);
    a->auth_token =
        cfg && cfg->auth_token && *cfg->auth_token ? strdup(cfg->auth_token) : NULL;
}

void km_access_clear(struct km_access *a)
{
    km_access_free_origins(a);
    free(a->auth_token);
    a->auth_token = NULL;
}

/* ---- the token ---- */

/* Constant-time comparison (the token must not leak through timing). */
static int km_secret_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return d == 0;
}

/* Value of query parameter key (matched as written), decoded by the query
   rule into buf; NULL when absent, carrying a NUL or too long for buf. */
static const char *km_query_param(const char *query, const char *key, char *buf,
                                  size_t buflen)
{
    size_t kl = strlen(key);

    for (const char *p = query; p && *p;) {
        const char *e = strchr(p, '&');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            if (km_pct_decode(p + kl + 1, n - kl - 1, buf, buflen, KM_PCT_QUERY) < 0)
                return NULL;
            return buf;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

int km_access_authorized(const struct km_access *a, const char *authorization,
                         const char *query)
{
    const char *tok = a->auth_token, *h = authorization;
    char buf[512];

    if (!tok)
        return 1;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        size_t n = strlen(h);
        while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
            n--;
        if (km_secret_eq(h, n, tok))
            return 1;
    }
    if ((h = km_query_param(query, "token", buf, sizeof buf)) ||
        (h = km_query_param(query, "access_token", buf, sizeof buf)))
        return km_secret_eq(h, strlen(h), tok);
    return 0;
}

/* ---- Origin and CORS ---- */

/* "host:port" without a default port, lower case, into out. */
static void km_norm_authority(const char *a, size_t n, int https, char *out,
                              size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++)
        out[o++] = (char)tolower((unsigned char)a[i]);
    out[o] = '\0';
    const char *def = https ? ":443" : ":80";
    size_t dl = strlen(def);
    if (o > dl && strcmp(out + o - dl, def) == 0)
        out[o - dl] = '\0';
}

int km_access_origin_allowed(const struct km_access *a, const char *origin,
                             const char *host)
{
    char o[256], h[256];
    size_t n = strlen(origin);

    while (n && origin[n - 1] == '/')
        n--;
    if (a->any_origin)
        return 1;
    for (size_t i = 0; i < a->n_origins; i++)
        if (strlen(a->origins[i]) == n && strncasecmp(a->origins[i], origin, n) == 0)
            return 1;
    /* same host: scheme://AUTHORITY equals Host */
    const char *sep = strstr(origin, "://");
    if (!sep || !host || (size_t)(sep - origin) > n)
        return 0;
    int https = (size_t)(sep - origin) == 5 && strncasecmp(origin, "https", 5) == 0;
    const char *auth = sep + 3;
    km_norm_authority(auth, n - (size_t)(auth - origin), https, o, sizeof o);
    km_norm_authority(host, strlen(host), https, h, sizeof h);
    return o[0] && strcmp(o, h) == 0;
}

const char *km_access_cors(const struct km_access *a, const char *origin,
                           const char *host, char *buf, size_t len)
{
    buf[0] = '\0';
    /* echoed into a header: short, and no line break can smuggle another */
    if (origin && *origin && strlen(origin) < 200 &&
        km_access_origin_allowed(a, origin, host) && !strpbrk(origin, "\r\n"))
        snprintf(buf, len, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
    return buf;
}

const char *km_access_preflight(const struct km_access *a, const char *origin,
                                const char *host, char *buf, size_t len)
{
    char cors[512];

    if (!*km_access_cors(a, origin, host, cors, sizeof cors))
        return NULL;
    snprintf(buf, len,
             "%sAccess-Control-Allow-Methods: GET, HEAD, POST, PUT, PATCH, DELETE, "
             "OPTIONS\r\n"
             "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
             "Access-Control-Max-Age: 600\r\n",
             cors);
    return buf;
}
