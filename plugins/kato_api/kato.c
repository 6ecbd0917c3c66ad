/*
 * kato.c - GET requests to KATO and the pass-through cache (kato_api).
 *
 * Every KATO answer is sorted into what katomon says to its client:
 *
 *   KATO 2xx + JSON        200, KATO's body
 *   KATO 4xx               KATO's status and body (the caller decides
 *                          whether to pass it through)
 *   KATO 5xx               502 "KATO at URL answered HTTP 500 to GET PATH: ..."
 *   bad JSON               502 "KATO at URL sent bad JSON for GET PATH: ..."
 *   no answer in time      504 "KATO at URL did not answer GET PATH within N s"
 *   unreachable            502 "KATO at URL is unreachable: GET PATH: why"
 *
 * The cache keeps one entry per KATO path (with its query): the last good
 * body, reused for cache_ttl seconds, and the requests waiting for the GET
 * in flight, so concurrent requests for one path cost KATO one call.
 * Bounded: KA_CACHE_ENTRIES paths, KA_CACHE_BYTES of bodies, KA_WAITERS
 * requests waiting per path. Errors are never cached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/util.h>

#include "kato_api.h"

#define KA_MAX_BODY      (8u << 20)  /* a longer KATO body fails the request */
#define KA_CACHE_ENTRIES 64          /* distinct KATO paths kept */
#define KA_CACHE_BYTES   (32u << 20) /* KATO body bytes kept, all entries */
#define KA_WAITERS       256         /* requests waiting on one path */

/* One GET to KATO in flight. */
struct ka_get {
    struct km_http_req *req; /* the core's request */
    ka_kato_cb cb;           /* the caller's callback */
    void *arg;               /* its argument */
    struct ka_get *prev;     /* gets, doubly linked */
    struct ka_get *next;     /* idem */
    char path[];             /* what was asked, for messages */
};

/* Every GET in flight, so shutdown can end each one through its callback. */
static struct ka_get *gets;

static void get_unlink(struct ka_get *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        gets = g->next;
    if (g->next)
        g->next->prev = g->prev;
}

/* One request waiting for a cache entry's GET. */
struct ka_waiter {
    struct km_rest_pending *p; /* the core's handle */
    struct ka_waiter *next;    /* entry's list */
};

/* One KATO path of the pass-through routes. */
struct ka_entry {
    char *path;                /* KATO path and query (owned) */
    json_t *body;              /* last good body (owned); NULL: none */
    size_t bytes;              /* its size as KATO sent it */
    double fetched_at;         /* ka_now() when it came */
    int fetching;              /* a GET is in flight */
    struct ka_waiter *waiters; /* requests waiting for it (owned nodes) */
    size_t n_waiters;          /* their number */
    struct ka_entry *next;     /* cache list */
};

struct ka_cache {
    struct ka_entry *entries; /* every entry (owned) */
    size_t n;                 /* their number */
    size_t bytes;             /* sum of their bytes */
};

/* ---- KATO GET ---- */

int ka_pct_encode(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        int plain = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                    (*c >= '0' && *c <= '9') || strchr("-._~", *c);
        if (o + (plain ? 1 : 3) >= len)
            return -1;
        if (plain) {
            out[o++] = (char)*c;
        } else {
            out[o++] = '%';
            out[o++] = hex[*c >> 4];
            out[o++] = hex[*c & 15];
        }
    }
    if (len == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* KATO's own words about an error: its "detail" or "error", or the start
   of the body. */
static void kato_says(const struct km_http_response *resp, json_t *body, char *out,
                      size_t len)
{
    const char *t = json_string_value(json_object_get(body, "detail"));

    if (!t)
        t = json_string_value(json_object_get(body, "error"));
    if (t)
        snprintf(out, len, "%s", t);
    else
        snprintf(out, len, "%.*s", (int)(resp->body_len < 200 ? resp->body_len : 200),
                 resp->body);
}

/* Sorts resp into res (see the top); *owned gets the parsed body to free. */
static void classify(const struct km_http_response *resp, const char *path,
                     struct ka_kato_result *res, json_t **owned, char *err, size_t len)
{
    json_error_t jerr;
    char says[300];

    memset(res, 0, sizeof *res);
    *owned = NULL;
    res->error = err;
    if (resp->error) {
        int timeout = strncmp(resp->error, "timed out", 9) == 0;
        res->status = timeout ? 504 : 502;
        if (timeout)
            snprintf(err, len, "KATO at %s did not answer GET %s within %g s",
                     ka.base_url, path, ka.timeout_ms / 1000.0);
        else
            snprintf(err, len, "KATO at %s is unreachable: GET %s: %s", ka.base_url, path,
                     resp->error);
        return;
    }
    res->kato_status = resp->status;
    res->body_len = resp->body_len;
    *owned = json_loadb(resp->body, resp->body_len, 0, &jerr);
    if (resp->status >= 200 && resp->status < 300) {
        if (*owned) {
            res->status = 200;
            res->body = *owned;
            res->error = NULL;
            return;
        }
        res->status = 502;
        snprintf(err, len, "KATO at %s sent bad JSON for GET %s: %s", ka.base_url, path,
                 jerr.text);
        return;
    }
    kato_says(resp, *owned, says, sizeof says);
    snprintf(err, len, "KATO at %s answered HTTP %d to GET %s: %s", ka.base_url,
             resp->status, path, says);
    if (resp->status >= 400 && resp->status < 500) {
        res->status = resp->status;
        res->body = *owned;
    } else {
        res->status = 502;
    }
}

static void on_kato(const struct km_http_response *resp, void *arg)
{
    struct ka_get *g = arg;
    struct ka_kato_result res;
    json_t *owned;
    char err[700];

    get_unlink(g);
    classify(resp, g->path, &res, &owned, err, sizeof err);
    if (res.error) /* it may quote KATO's bytes, cut anywhere */
        km_utf8_fix(err);
    g->cb(&res, g->arg);
    json_decref(owned);
    free(g);
}

void ka_kato_shutdown(void)
{
    const struct ka_kato_result res = {.status = 503,
                                       .error = "katomon is shutting down"};

    while (gets) {
        struct ka_get *g = gets;
        get_unlink(g);
        ka.host->http_cancel(ka.ctx, g->req);
        g->cb(&res, g->arg); /* so its owner cleans up as on any failure */
        free(g);
    }
}

int ka_kato_get(const char *path, ka_kato_cb cb, void *arg, const char **why)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    size_t n = strlen(path);
    struct ka_get *g = malloc(sizeof *g + n + 1);
    char *url = g ? malloc(strlen(ka.base_url) + n + 1) : NULL;
    struct km_http_request req = {.url = url,
                                  .headers = headers,
                                  .timeout_ms = ka.timeout_ms,
                                  .max_body = KA_MAX_BODY};

    *why = "out of memory";
    if (!url) {
        free(g);
        return -1;
    }
    strcpy(url, ka.base_url);
    strcat(url, path);
    memcpy(g->path, path, n + 1);
    g->cb = cb;
    g->arg = arg;
    if (!(g->req = ka.host->http_request(ka.ctx, &req, on_kato, g))) {
        *why = "cannot start a request to KATO (check url in [plugin kato_api])";
        free(g);
        free(url);
        return -1;
    }
    free(url); /* copied by http_request */
    g->prev = NULL;
    g->next = gets;
    if (gets)
        gets->prev = g;
    gets = g;
    return 0;
}

/* ---- the pass-through cache ---- */

struct ka_cache *ka_cache_new(void)
{
    return calloc(1, sizeof(struct ka_cache));
}

static void entry_free(struct ka_cache *c, struct ka_entry *e)
{
    struct ka_entry **pp = &c->entries;

    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    c->n--;
    c->bytes -= e->bytes;
    while (e->waiters) {
        struct ka_waiter *w = e->waiters;
        e->waiters = w->next;
        free(w); /* its request is answered 503 by the core (shutdown only) */
    }
    json_decref(e->body);
    free(e->path);
    free(e);
}

void ka_cache_free(struct ka_cache *c)
{
    if (!c)
        return;
    while (c->entries)
        entry_free(c, c->entries);
    free(c);
}

/* The idle entry fetched longest ago, other than keep; NULL if none. */
static struct ka_entry *oldest_idle(struct ka_cache *c, const struct ka_entry *keep)
{
    struct ka_entry *best = NULL;

    for (struct ka_entry *e = c->entries; e; e = e->next)
        if (e != keep && !e->fetching && (!best || e->fetched_at < best->fetched_at))
            best = e;
    return best;
}

/* A new entry for path, evicting an idle one when full; NULL when every
   entry is busy (or ENOMEM). */
static struct ka_entry *entry_new(struct ka_cache *c, const char *path)
{
    struct ka_entry *e;

    if (c->n >= KA_CACHE_ENTRIES) {
        struct ka_entry *old = oldest_idle(c, NULL);
        if (!old)
            return NULL;
        entry_free(c, old);
    }
    if (!(e = calloc(1, sizeof *e)) || !(e->path = strdup(path))) {
        free(e);
        return NULL;
    }
    e->next = c->entries;
    c->entries = e;
    c->n++;
    return e;
}

static struct ka_entry *entry_find(struct ka_cache *c, const char *path)
{
    for (struct ka_entry *e = c->entries; e; e = e->next)
        if (strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* Keeps body (stolen) as e's, within KA_CACHE_BYTES. */
static void entry_store(struct ka_cache *c, struct ka_entry *e, json_t *body,
                        size_t bytes)
{
    struct ka_entry *old;

    c->bytes -= e->bytes;
    json_decref(e->body);
    e->body = body;
    e->bytes = bytes;
    e->fetched_at = ka_now();
    c->bytes += bytes;
    while (c->bytes > KA_CACHE_BYTES && (old = oldest_idle(c, e)))
        entry_free(c, old);
    if (c->bytes > KA_CACHE_BYTES) { /* this one alone is too big to keep */
        c->bytes -= e->bytes;
        e->bytes = 0;
        json_decref(e->body);
        e->body = NULL;
    }
}

/* What a waiter of a failed GET gets. KATO's 404 says KATO lacks the
   endpoint (an older KATO): katomon's route exists, so not a 404. */
static void answer_error(struct km_rest_pending *p, const struct ka_kato_result *res)
{
    if (res->kato_status >= 400 && res->kato_status < 500 && res->kato_status != 404 &&
        json_is_object(res->body))
        ka.host->rest_finish(ka.ctx, p, res->kato_status, json_incref(res->body), NULL);
    else
        ka_finish_detail(p, res->status >= 400 && res->status < 500 ? 502 : res->status,
                         res->error);
}

static void on_entry(const struct ka_kato_result *res, void *arg)
{
    struct ka_entry *e = arg;
    struct ka_waiter *w = e->waiters;

    e->fetching = 0;
    e->waiters = NULL;
    e->n_waiters = 0;
    if (res->status == 200) {
        entry_store(ka.cache, e, json_incref(res->body), res->body_len);
    } else {
        entry_store(ka.cache, e, NULL, 0); /* never serve a stale body after an error */
    }
    while (w) {
        struct ka_waiter *next = w->next;
        if (res->status == 200)
            ka.host->rest_finish(ka.ctx, w->p, 200, json_incref(res->body), NULL);
        else
            answer_error(w->p, res);
        free(w);
        w = next;
    }
}

int ka_passthrough(const struct km_rest_call *call, const char *kato_path, json_t **reply,
                   const char **detail)
{
    struct ka_entry *e = entry_find(ka.cache, kato_path);
    struct ka_waiter *w;
    const char *why;

    if (e && e->body && ka_now() - e->fetched_at < ka.cache_ttl) {
        *reply = json_incref(e->body);
        return 200;
    }
    if (!e && !(e = entry_new(ka.cache, kato_path))) {
        *detail = "too many different KATO requests in flight; try again";
        return 503;
    }
    if (e->n_waiters >= KA_WAITERS || !(w = calloc(1, sizeof *w))) {
        *detail = "too many requests waiting for KATO; try again";
        return 503;
    }
    if (!e->fetching && ka_kato_get(kato_path, on_entry, e, &why) < 0) {
        free(w);
        *detail = why;
        return 502;
    }
    e->fetching = 1;
    w->p = call->pending;
    w->next = e->waiters; /* answered all at once: the order does not matter */
    e->waiters = w;
    e->n_waiters++;
    return KM_REST_LATER;
}
