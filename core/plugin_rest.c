/*
 * plugin_rest.c - what a plugin's REST handler answers (see plugin_rest.h):
 * its status checked, its query parameters decoded, and the answers it
 * gives later, bounded by a deadline and settled when it stops.
 *
 * A pending answer is tracked by its plugin's context (ctx->pendings), so
 * km_rest_pending_answer_all can answer 503 for all of it when the plugin
 * goes; the connection that waits (the waiter) may leave first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <katomon/util.h>

#include "ctx.h"
#include "log.h"
#include "plugin_rest.h"
#include "url.h"

/*
 * One REST request a plugin answers later (KM_REST_LATER). The plugin's
 * handle: valid from the handler's call until its rest_finish, or until
 * the plugin is released, whichever comes first, whatever happened to the
 * client meanwhile. The waiter (the connection) may leave before.
 */
struct km_rest_pending {
    struct km_ctx *ctx;           /* the plugin that answers */
    struct km_rest_waiter waiter; /* who gets the answer; .answer NULL once
                                     it was given (or the waiter left) */
    struct event *deadline;       /* answers 504 (owned); NULL until settled */
    char what[160];               /* "GET /api/v1/..." for log lines */
    int in_handler;               /* the handler has not returned yet */
    int early;                    /* rest_finish ran inside the handler */
    int early_status;             /* ... with this status */
    json_t *early_reply;          /* ... and this body (owned) */
    struct km_rest_pending *prev; /* ctx->pendings, doubly linked */
    struct km_rest_pending *next; /* idem */
};

/* Seconds a plugin gets to answer a KM_REST_LATER request. */
double km_rest_deadline_s = KM_REST_DEADLINE_S;

/* ---- query parameters ---------------------------------------------------- */

const char *km_rest_param(const struct km_rest_call *call, const char *name, char *buf,
                          size_t len)
{
    const char *q = call && call->query ? call->query : "";
    char key[256];

    if (!name || !buf || !len)
        return NULL;
    /* names and values decode alike, by the query rule ('+' is a space, a
       stray '%' stays); one that holds a NUL or does not fit is refused */
    while (*q) {
        const char *end = strchr(q, '&');
        const char *eq;
        if (!end)
            end = q + strlen(q);
        eq = memchr(q, '=', (size_t)(end - q));
        const char *kend = eq ? eq : end, *v = eq ? eq + 1 : end;
        if (km_pct_decode(q, (size_t)(kend - q), key, sizeof key, KM_PCT_QUERY) >= 0 &&
            strcmp(key, name) == 0) {
            long n = km_pct_decode(v, (size_t)(end - v), buf, len, KM_PCT_QUERY);
            return n >= 0 ? buf : NULL;
        }
        q = *end ? end + 1 : end;
    }
    return NULL;
}

/* ---- answers ---------------------------------------------------------------- */

int km_rest_check(struct km_ctx *ctx, const char *what, int status, json_t **reply,
                  const char **detail)
{
    if (status >= 100 && status <= 599)
        return status;
    km_log(KM_LOG_ERROR, "%s: %s handler returned status %d", ctx->log_prefix, what,
           status);
    json_decref(*reply);
    *reply = NULL;
    *detail = "the plugin's handler failed";
    return 500;
}

/* What the core sends for a checked status, reply (stolen) and detail. */
static json_t *answer_body(int status, json_t *reply, const char *detail)
{
    if (reply)
        return reply;
    if (status < 400)
        return json_object();
    return json_pack("{s:s}", "detail", detail ? detail : "request failed");
}

static void pending_unlink(struct km_rest_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->ctx->pendings = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void pending_free(struct km_rest_pending *p)
{
    pending_unlink(p);
    if (p->deadline)
        event_free(p->deadline);
    json_decref(p->early_reply);
    free(p);
}

/* Hands body (stolen) to the waiter, at most once; dropped when it left. */
static void pending_deliver(struct km_rest_pending *p, int status, json_t *body)
{
    struct km_rest_waiter w = p->waiter;

    p->waiter.answer = NULL;
    if (w.answer && body)
        w.answer(w.arg, status, body);
    else
        json_decref(body);
}

static void pending_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct km_rest_pending *p = arg;
    char detail[320];

    snprintf(detail, sizeof detail, "%s did not answer %s within %g s",
             p->ctx->log_prefix, p->what, km_rest_deadline_s);
    km_log(KM_LOG_WARNING, "%s; answered 504", detail);
    pending_deliver(p, 504, json_pack("{s:s}", "detail", detail));
    /* the handle stays valid: the plugin's rest_finish will free it */
}

struct km_rest_pending *km_rest_pending_new(struct km_ctx *ctx,
                                            const struct km_rest_call *call,
                                            const struct km_rest_waiter *waiter)
{
    struct km_rest_pending *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->ctx = ctx;
    if (waiter)
        p->waiter = *waiter;
    p->in_handler = 1;
    snprintf(p->what, sizeof p->what, "%s %.140s", call->method, call->path);
    p->next = ctx->pendings;
    if (p->next)
        p->next->prev = p;
    ctx->pendings = p;
    return p;
}

int km_rest_pending_settle(struct km_rest_pending *p, int status, json_t **reply)
{
    struct timeval tv = km_timeval(km_rest_deadline_s);

    p->in_handler = 0;
    if (status != KM_REST_LATER) {
        pending_free(p); /* a direct answer wins over one given inside */
        return status;
    }
    if (p->early) {
        *reply = p->early_reply;
        p->early_reply = NULL;
        status = p->early_status;
        pending_free(p);
        return status;
    }
    p->deadline = evtimer_new(p->ctx->core->base, pending_deadline, p);
    if (!p->deadline || evtimer_add(p->deadline, &tv) != 0)
        km_log(KM_LOG_ERROR, "%s: %s: cannot arm the %g s deadline (out of memory?)",
               p->ctx->log_prefix, p->what, km_rest_deadline_s);
    return KM_LOADER_LATER;
}

void km_rest_pending_detach(struct km_rest_pending *p)
{
    if (p)
        p->waiter.answer = NULL;
}

void km_rest_finish(struct km_ctx *ctx, struct km_rest_pending *p, int status,
                    json_t *reply, const char *detail)
{
    if (!p) {
        json_decref(reply); /* steals reply in every case */
        return;
    }
    status = km_rest_check(p->ctx, p->what, status, &reply, &detail);
    if (p->in_handler) {
        /* answered before the handler returned: settle() sends it */
        if (p->early) {
            km_log(KM_LOG_ERROR, "%s: %s answered twice; the second answer is dropped",
                   p->ctx->log_prefix, p->what);
            json_decref(reply);
            return;
        }
        p->early = 1;
        p->early_status = status;
        p->early_reply = answer_body(status, reply, detail);
        return;
    }
    pending_deliver(p, status, answer_body(status, reply, detail));
    pending_free(p);
}

void km_rest_pending_answer_all(struct km_ctx *ctx)
{
    char detail[320];

    while (ctx->pendings) {
        struct km_rest_pending *p = ctx->pendings;
        snprintf(detail, sizeof detail, "%s stopped before it answered %s",
                 ctx->log_prefix, p->what);
        pending_deliver(p, 503, json_pack("{s:s}", "detail", detail));
        pending_free(p);
    }
}
