/*
 * katomon/redis_url.h - the one reader of redis:// urls, for every plugin
 * that talks to Redis through hiredis (kato_api, redis_bridge).
 * Header-only: plugins link no core object.
 *
 *   redis://[[user]:password@]host[:port][/db]
 *
 * The user and password are percent-decoded (a '%' is written %25, %00 is
 * refused). The host must be a numeric IPv4 or [IPv6] address, or
 * localhost (taken as 127.0.0.1): hiredis resolves a name with a blocking
 * getaddrinfo() inside redisAsyncConnect, which would stall the daemon's
 * loop on a slow DNS. No TLS (rediss://), no ?options.
 *
 * Ownership: km_redis_url_parse fills a caller's struct; its user and
 * password are owned by it and freed by km_redis_url_clear.
 */
#ifndef KATOMON_REDIS_URL_H
#define KATOMON_REDIS_URL_H

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <katomon/url.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A parsed redis:// url. */
struct km_redis_url {
    char host[INET6_ADDRSTRLEN];       /* numeric address (IPv6 without brackets) */
    int port;                          /* TCP port; 6379 when not given */
    char *user;                        /* AUTH user (Redis 6 ACL), NULL: none (owned) */
    char *password;                    /* AUTH password, NULL: no AUTH (owned) */
    int db;                            /* SELECT db; 0: none sent */
    char where[INET6_ADDRSTRLEN + 24]; /* "127.0.0.1:6379/0", for messages (no
                                          password in it) */
};

/* Frees what km_redis_url_parse allocated; the struct may be parsed again. */
static inline void km_redis_url_clear(struct km_redis_url *u)
{
    free(u->user);
    free(u->password);
    u->user = u->password = NULL;
}

/* Percent-decodes [s, s + n) into a new string (*out), by the path rule
   ('+' is itself); 0, -1 on ENOMEM, -2 on a bad escape or %00. */
static inline int km_redis_url_decode(const char *s, size_t n, char **out)
{
    if (!(*out = (char *)malloc(n + 1)))
        return -1;
    if (km_pct_decode(s, n, *out, n + 1, KM_PCT_PATH) >= 0)
        return 0;
    free(*out);
    *out = NULL;
    return -2;
}

/* user:password -> u->user, u->password ("secret" alone: a password).
   0, -1 on ENOMEM, -2 on a bad escape. */
static inline int km_redis_url_userinfo(struct km_redis_url *u, const char *s, size_t n)
{
    const char *colon = (const char *)memchr(s, ':', n);
    int rc;

    if (!colon)
        return km_redis_url_decode(s, n, &u->password);
    if (colon > s && (rc = km_redis_url_decode(s, (size_t)(colon - s), &u->user)) < 0)
        return rc;
    return km_redis_url_decode(colon + 1, n - (size_t)(colon - s) - 1, &u->password);
}

/* host[:port] of [s, s + n), host numeric or localhost. 0 or -1 (err set). */
static inline int km_redis_url_hostport(struct km_redis_url *u, const char *s, size_t n,
                                        char *err, size_t errlen)
{
    const char *end = s + n, *port = NULL;
    char host[256];
    unsigned char addr[16];
    size_t hl;

    if (n && *s == '[') {
        const char *close = (const char *)memchr(s, ']', n);
        if (!close || (size_t)(close - s - 1) >= sizeof host)
            goto bad;
        hl = (size_t)(close - s - 1);
        memcpy(host, s + 1, hl);
        port = close + 1 < end && close[1] == ':' ? close + 2 : NULL;
        if (close + 1 < end && !port)
            goto bad;
    } else {
        const char *colon = (const char *)memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
        if (hl >= sizeof host)
            goto bad;
        memcpy(host, s, hl);
        port = colon ? colon + 1 : NULL;
    }
    host[hl] = '\0';
    if (strcasecmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
        snprintf(err, errlen,
                 "the host '%s' is not a numeric address; give an IPv4 or [IPv6] address "
                 "(hiredis would resolve a name with a blocking lookup)",
                 host);
        return -1;
    }
    snprintf(u->host, sizeof u->host, "%s", host);
    u->port = 6379;
    if (port) {
        char *e;
        long p = strtol(port, &e, 10);
        if (e != end || p < 1 || p > 65535)
            goto bad;
        u->port = (int)p;
    }
    return 0;
bad:
    snprintf(err, errlen, "cannot read host[:port] in it");
    return -1;
}

/*
 * Parses url into u (zeroed first). Returns 0, or -1 with a message in err
 * (nothing left to free in u).
 */
static inline int km_redis_url_parse(struct km_redis_url *u, const char *url, char *err,
                                     size_t errlen)
{
    const char *s, *at = NULL, *slash, *hp;
    size_t n;
    int rc;

    memset(u, 0, sizeof *u);
    if (!url || strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "'%s' must start with redis:// (TLS is not supported)",
                 url ? url : "");
        return -1;
    }
    s = url + 8;
    if (strpbrk(s, "?#")) {
        snprintf(err, errlen, "options (?...) are not supported in '%s'", url);
        return -1;
    }
    slash = strchr(s, '/');
    n = slash ? (size_t)(slash - s) : strlen(s);
    for (size_t i = n; i > 0; i--) /* the last '@': a password may hold one */
        if (s[i - 1] == '@') {
            at = s + i - 1;
            break;
        }
    if (at && (rc = km_redis_url_userinfo(u, s, (size_t)(at - s))) < 0) {
        km_redis_url_clear(u);
        if (rc == -1)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(err, errlen,
                     "bad %%-escape in the user or password of the url: write a "
                     "'%%' as %%25, and no %%00");
        return -1;
    }
    hp = at ? at + 1 : s;
    if (km_redis_url_hostport(u, hp, (size_t)(s + n - hp), err, errlen) < 0)
        goto fail;
    if (slash && slash[1]) {
        char *e;
        long db = strtol(slash + 1, &e, 10);
        if (*e || db < 0 || db > 1000000) {
            snprintf(err, errlen, "the database '%s' is not a number", slash + 1);
            goto fail;
        }
        u->db = (int)db;
    }
    snprintf(u->where, sizeof u->where, strchr(u->host, ':') ? "[%s]:%d/%d" : "%s:%d/%d",
             u->host, u->port, u->db);
    return 0;
fail:
    km_redis_url_clear(u);
    return -1;
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_REDIS_URL_H */
