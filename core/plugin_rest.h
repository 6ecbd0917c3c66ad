/*
 * plugin_rest.h - what a plugin's REST handler answers: the status check,
 * the answers given later (KM_REST_LATER: the km_rest_pending handle, its
 * 504 deadline, the 503 for answers still owed when the plugin stops) and
 * the rest_param / rest_finish verbs. Which route serves a request is
 * plugin_routes.h's concern; the loader (km_loader_call) puts the two
 * together.
 */
#ifndef KM_PLUGIN_REST_H
#define KM_PLUGIN_REST_H

#include <stddef.h>
#include <jansson.h>
#include <katomon/plugin.h>

/* Who waits for a plugin's later answer (its handler returned KM_REST_LATER). */
struct km_rest_waiter {
    /* Called at most once, never from inside km_loader_rest, with the
       status and the body (new reference, stolen, never NULL). */
    void (*answer)(void *arg, int status, json_t *body);
    void *arg; /* its argument */
};

/* km_loader_rest / km_loader_call: the answer comes later, through the waiter. */
#define KM_LOADER_LATER (-1)

/* Seconds before the core answers 504 for a plugin (KM_REST_DEADLINE_S;
   tests shorten it). */
extern double km_rest_deadline_s;

/*
 * A handler's status, checked: one outside 100..599 is logged ("plugin
 * NAME: <what> handler returned status N") and becomes 500, with *reply
 * released and *detail set. Returns the status to send.
 */
int km_rest_check(struct km_ctx *ctx, const char *what, int status, json_t **reply,
                  const char **detail);
/*
 * A new pending answer for `call`, tracked by ctx; waiter may be NULL
 * (copied). NULL on ENOMEM. km_rest_pending_settle must follow the
 * handler's return.
 */
struct km_rest_pending *km_rest_pending_new(struct km_ctx *ctx,
                                            const struct km_rest_call *call,
                                            const struct km_rest_waiter *waiter);
/*
 * The handler returned `status`. Not KM_REST_LATER: p is freed and status
 * returned. KM_REST_LATER: when rest_finish ran inside the handler, its
 * answer is returned (*reply set, p freed); otherwise the deadline starts
 * and KM_LOADER_LATER is returned.
 */
int km_rest_pending_settle(struct km_rest_pending *p, int status, json_t **reply);
/*
 * The waiter of a pending answer is gone (its connection closed): the
 * answer, when it comes, is dropped; the plugin's handle stays valid
 * until its rest_finish or its release.
 */
void km_rest_pending_detach(struct km_rest_pending *p);
/* The plugin stops: every answer it still owes is sent as 503 and its
   handles are freed (km_host_release). */
void km_rest_pending_answer_all(struct km_ctx *ctx);

/* ---- the verbs this file implements (see struct km_host) ---- */

const char *km_rest_param(const struct km_rest_call *call, const char *name, char *buf,
                          size_t len);
void km_rest_finish(struct km_ctx *ctx, struct km_rest_pending *p, int status,
                    json_t *reply, const char *detail);

#endif /* KM_PLUGIN_REST_H */
