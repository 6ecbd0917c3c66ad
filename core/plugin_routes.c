/*
 * plugin_routes.c - the table of every plugin's REST routes (see
 * plugin_routes.h): what a route path may look like, who holds a route,
 * and which route serves a request path. Calls no other core file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_routes.h"

/* One REST route a plugin serves (km_host.rest_route). */
struct km_route {
    struct km_ctx *owner;  /* the plugin that registered it (borrowed) */
    char *method;          /* "GET", "POST", ... (owned) */
    char *path;            /* path under /api/v1/ as registered, a prefix
                              route with its trailing "*" (owned) */
    size_t prefix;         /* prefix route: bytes of path before the "*";
                              0: exact */
    km_rest_cb cb;         /* the plugin's handler */
    void *arg;             /* its argument */
    struct km_route *next; /* routes->head, in registration order */
};

struct km_plugin_routes {
    struct km_route *head; /* every route, oldest first (owned) */
};

struct km_plugin_routes *km_plugin_routes_new(void)
{
    return calloc(1, sizeof(struct km_plugin_routes));
}

static void route_free(struct km_route *r)
{
    free(r->method);
    free(r->path);
    free(r);
}

void km_plugin_routes_free(struct km_plugin_routes *routes)
{
    if (!routes)
        return;
    while (routes->head) {
        struct km_route *r = routes->head;
        routes->head = r->next;
        route_free(r);
    }
    free(routes);
}

/* "GET", "POST", ...: 1 to 16 upper-case letters. */
static int valid_method(const char *m)
{
    size_t n = 0;
    for (; m[n]; n++)
        if (m[n] < 'A' || m[n] > 'Z')
            return 0;
    return n > 0 && n <= 16;
}

/* "/api/v1/..." with no query, fragment, escape or blank: matched against
   the decoded request path, so those could never match. A '*' only as the
   whole last segment: a prefix route. Returns the prefix length (bytes
   before the '*'), 0 for an exact path, -1 when invalid. */
static long route_path_kind(const char *p)
{
    static const char prefix[] = "/api/v1/";
    size_t n = strlen(p);
    if (strncmp(p, prefix, sizeof prefix - 1) != 0 || n == sizeof prefix - 1 || n > 256)
        return -1;
    for (const char *c = p; *c; c++)
        if (*c <= ' ' || *c == '?' || *c == '#' || *c == '%' || *c == 0x7f ||
            (*c == '*' && (c[1] || c[-1] != '/')))
            return -1;
    return p[n - 1] == '*' ? (long)(n - 1) : 0;
}

int km_plugin_routes_add(struct km_plugin_routes *routes, struct km_ctx *owner,
                         const char *method, const char *path, km_rest_cb cb, void *arg)
{
    struct km_route *r, **tail;
    long prefix;

    if (!routes || !method || !path || !cb || !valid_method(method) ||
        (prefix = route_path_kind(path)) < 0)
        return KM_EINVAL;
    for (tail = &routes->head; *tail; tail = &(*tail)->next)
        if (strcmp((*tail)->method, method) == 0 && strcmp((*tail)->path, path) == 0)
            return KM_EEXIST;
    if (!(r = calloc(1, sizeof *r)))
        return KM_ENOMEM;
    r->method = strdup(method);
    r->path = strdup(path);
    if (!r->method || !r->path) {
        route_free(r);
        return KM_ENOMEM;
    }
    r->owner = owner;
    r->prefix = (size_t)prefix;
    r->cb = cb;
    r->arg = arg;
    *tail = r; /* appended: on a tie the older route keeps serving */
    return KM_OK;
}

void km_plugin_routes_drop(struct km_plugin_routes *routes, const struct km_ctx *owner)
{
    struct km_route **pp = routes ? &routes->head : NULL;

    while (pp && *pp) {
        struct km_route *r = *pp;
        if (r->owner == owner) {
            *pp = r->next;
            route_free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* HEAD is answered by the GET handler (the server drops the body). */
static const char *route_method(const char *method)
{
    return strcmp(method, "HEAD") == 0 ? "GET" : method;
}

/* 1 when `method` is in the comma-separated list already. */
static int method_listed(const char *list, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = list; (p = strstr(p, method)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

/* How well r matches path: 0 not at all; SIZE_MAX exact; else the length
   of the prefix (so a longer prefix ranks higher). */
static size_t route_rank(const struct km_route *r, const char *path)
{
    if (!r->prefix)
        return strcmp(r->path, path) == 0 ? SIZE_MAX : 0;
    /* at least one byte below the prefix: "/api/v1/sessions/" is not an id */
    return strncmp(r->path, path, r->prefix) == 0 && path[r->prefix] ? r->prefix : 0;
}

int km_plugin_routes_find(const struct km_plugin_routes *routes, const char *method,
                          const char *path, struct km_route_hit *hit, char *allow,
                          size_t allowlen)
{
    const struct km_route *best = NULL;
    size_t best_rank = 0;
    int known = 0;

    if (allow && allowlen)
        allow[0] = '\0';
    method = route_method(method);
    for (const struct km_route *r = routes ? routes->head : NULL; r; r = r->next) {
        size_t rank = route_rank(r, path);
        if (!rank)
            continue;
        if (strcmp(r->method, method) == 0) {
            if (rank > best_rank) {
                best = r;
                best_rank = rank;
            }
            continue;
        }
        known = 1;
        if (allow && allowlen && !method_listed(allow, r->method)) {
            size_t used = strlen(allow);
            snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", r->method);
        }
    }
    if (!best)
        return known ? 2 : 0;
    if (hit) {
        hit->ctx = best->owner;
        hit->cb = best->cb;
        hit->arg = best->arg;
        hit->prefix = best->prefix;
    }
    return 1;
}
