/*
 * server_access.h - who may use the HTTP server: the [http] auth_token
 * (Authorization: Bearer, or ?token= / ?access_token= for browsers, which
 * cannot set headers on a WebSocket), the Origin check of /ws, and the
 * CORS answers of the REST API (both from [http] allowed_origins).
 *
 * Owns those two settings and the decisions made from them; it reads
 * header values it is given and writes no answer (server_route.c does).
 * Calls only url.h.
 */
#ifndef KM_SERVER_ACCESS_H
#define KM_SERVER_ACCESS_H

#include <stddef.h>
#include "config.h"

/* The 401 answer's header line and detail, for REST and /ws alike. */
#define KM_ACCESS_CHALLENGE "WWW-Authenticate: Bearer realm=\"katomon\"\r\n"
#define KM_ACCESS_DENIED    "authentication required: Authorization: Bearer TOKEN or ?token="

/* The access settings now in force. All zero: no token, same-host origins only. */
struct km_access {
    char **origins;   /* [http] allowed_origins: lower case, no trailing / (owned) */
    size_t n_origins; /* number of origins */
    int any_origin;   /* allowed_origins has "*" */
    char *auth_token; /* [http] auth_token, NULL when unset or empty (owned) */
};

/* Takes allowed_origins and auth_token from cfg (borrowed; NULL: none),
   replacing what a was holding: at start and on SIGHUP. */
void km_access_set(struct km_access *a, const struct km_config *cfg);

/* Frees what a holds and zeroes it. */
void km_access_clear(struct km_access *a);

/*
 * 1 when a request carrying these (borrowed, each may be NULL) is
 * authorized: no token is configured, or the Authorization header is
 * "Bearer TOKEN", or the raw query has token=TOKEN or access_token=TOKEN
 * (percent-decoded by the query rule, so '+' is a space). Compared in
 * constant time.
 */
int km_access_authorized(const struct km_access *a, const char *authorization,
                         const char *query);

/* 1 when origin (borrowed) may use /ws and get CORS answers: listed in
   allowed_origins (or "*"), or the same host as host, the request's Host
   header (borrowed, may be NULL). */
int km_access_origin_allowed(const struct km_access *a, const char *origin,
                             const char *host);

/* The CORS header lines for an allowed origin (may be NULL), "" otherwise,
   into buf; returns buf. */
const char *km_access_cors(const struct km_access *a, const char *origin,
                           const char *host, char *buf, size_t len);

/* The header lines answering an OPTIONS preflight from origin into buf
   (returned), or NULL when that origin is not allowed (403). */
const char *km_access_preflight(const struct km_access *a, const char *origin,
                                const char *host, char *buf, size_t len);

#endif /* KM_SERVER_ACCESS_H */
