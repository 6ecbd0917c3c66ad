/*
 * ws.c - the WebSocket hub (see ws.h): who gets what. Subscription sets,
 * the fan-out of shared frames, realtime_update ticks, `since` replay, and
 * the requests that change what a client gets.
 *
 * ---- Fan-out --------------------------------------------------------------
 *
 * The hub subscribes to the bus once with "*". Each message becomes JSON
 * and a complete server frame (header + payload, struct km_frame, reference
 * counted) once (per dialect, for session_event and system_alert), and that
 * frame is shared by every client that receives it:
 *   - an event's frames are built on first need and kept in the message's
 *     cache slot (km_msg_set_cache), so replay reuses them too;
 *   - clients with the same subscription set share one interned struct
 *     km_subset; a realtime_update is built once per set per tick (or per
 *     state change, for immediate sends on subscribe) and cached in it.
 * Each receiver gets a reference through km_ws_client_send (ws_conn.c),
 * which applies its bound and writes to its socket.
 *
 * ---- Requests ---------------------------------------------------------------
 *
 * A connection hands each request it did not drop itself to
 * km_ws_on_request (its struct km_ws_conn_ops); the hub parses it
 * (ws_proto.c) and acts: a heartbeat for "ping"; for a subscribe, a
 * katomon/1 client's set is replaced, acknowledged, replayed from `since`
 * and its state sent at once, a compatible client's set grows to the union,
 * silently. Bad requests get an error reply (katomon/1) or are dropped and
 * logged once (compatible); either way they count toward the connection's
 * bad-request limit. A dead connection leaves its set (km_ws_on_dead).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <katomon/util.h>

#include "bus.h"
#include "log.h"
#include "ws.h"
#include "ws_conn.h"
#include "ws_frame.h"
#include "ws_proto.h"

/* Clients with the same subscription set and dialect share one of these
   (the dialect decides what they receive of other hosts). */
struct km_subset {
    char *key;                    /* canonical: sorted names joined by '\n'; "*" = all */
    enum km_ws_dialect dialect;   /* its members' dialect */
    int all;                      /* never subscribed: every topic */
    char **names;                 /* sorted topic names (owned); NULL when all */
    size_t n_names;               /* number of names */
    struct km_ws_client *members; /* clients in the set (list via set_next) */
    size_t n_members;             /* number of members */
    struct km_frame *rt;          /* realtime_update built for this set, or NULL */
    uint64_t rt_gen;              /* hub state_gen when rt was built */
    uint64_t rt_tick;             /* hub tick when rt was built */
    struct km_subset *next;       /* hub's list */
    struct km_subset *prev;       /* hub's list */
};

struct km_ws {
    struct km_core *core;     /* loop, bus (borrowed) */
    struct km_ws_limits lim;  /* current settings */
    struct km_ws_conns conns; /* every client (live and dead), their counters */
    struct km_sub *sub;       /* the one "*" bus subscription */
    struct event *tick_ev;    /* realtime_update timer */
    struct event *hk_ev;      /* housekeeping: pings, idle, close_wait */
    struct km_subset *sets;   /* interned subscription sets */
    uint64_t state_gen;       /* + 1 on every state-topic publish */
    uint64_t tick_no;         /* realtime_update ticks so far */
    struct km_ws_stats stats; /* the hub's counters (the connections' are in conns) */
};

/* ======================================================================
 * Subscription sets
 * ====================================================================== */

static int km_subset_wants(const struct km_subset *s, const char *topic)
{
    if (s->all)
        return 1;
    if (s->n_names == 0)
        return 0; /* names is NULL then, and bsearch's base must not be */
    return bsearch(&topic, s->names, s->n_names, sizeof *s->names, km_ws_strcmp_p) !=
           NULL;
}

static void km_subset_free(struct km_ws *ws, struct km_subset *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        ws->sets = s->next;
    if (s->next)
        s->next->prev = s->prev;
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    free(s->key);
    km_frame_unref(s->rt);
    free(s);
    ws->stats.sets--;
}

/* The interned set for (names, all, d): found or made. names are sorted and
   unique; copied. NULL on ENOMEM. */
static struct km_subset *km_subset_get(struct km_ws *ws, char *const *names, size_t n,
                                       int all, enum km_ws_dialect d)
{
    size_t keylen = 2;
    struct km_subset *s;
    char *key;

    for (size_t i = 0; i < n; i++)
        keylen += strlen(names[i]) + 1;
    if (!(key = malloc(keylen)))
        return NULL;
    if (all) {
        strcpy(key, "*");
    } else {
        char *p = key;
        *p = '\0';
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(names[i]);
            if (i)
                *p++ = '\n';
            memcpy(p, names[i], l);
            p += l;
            *p = '\0';
        }
    }
    for (s = ws->sets; s; s = s->next) {
        if (s->dialect == d && strcmp(s->key, key) == 0) {
            free(key);
            return s;
        }
    }
    if (!(s = calloc(1, sizeof *s)))
        goto fail;
    s->key = key;
    s->dialect = d;
    s->all = all;
    if (!all && n) {
        if (!(s->names = calloc(n, sizeof *s->names)))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (!(s->names[i] = strdup(names[i])))
                goto fail;
            s->n_names++;
        }
    }
    s->next = ws->sets;
    if (ws->sets)
        ws->sets->prev = s;
    ws->sets = s;
    ws->stats.sets++;
    return s;
fail:
    if (s) {
        for (size_t i = 0; i < s->n_names; i++)
            free(s->names[i]);
        free(s->names);
        free(s);
    }
    free(key);
    return NULL;
}

static void km_subset_leave(struct km_ws *ws, struct km_ws_client *c)
{
    struct km_subset *s = c->set;
    if (!s)
        return;
    if (c->set_prev)
        c->set_prev->set_next = c->set_next;
    else
        s->members = c->set_next;
    if (c->set_next)
        c->set_next->set_prev = c->set_prev;
    c->set = NULL;
    c->set_next = c->set_prev = NULL;
    if (--s->n_members == 0)
        km_subset_free(ws, s);
}

static void km_subset_join(struct km_ws *ws, struct km_ws_client *c, struct km_subset *s)
{
    if (c->set == s)
        return;
    km_subset_leave(ws, c); /* may free the old set, never s (s has no client c) */
    c->set = s;
    c->set_prev = NULL;
    c->set_next = s->members;
    if (s->members)
        s->members->set_prev = c;
    s->members = c;
    s->n_members++;
}

/* ======================================================================
 * Shared frames
 * ====================================================================== */

/* The frames of one event message, one per dialect, kept in the message's
   cache slot (one allocation). A topic other than session_events and
   system_alerts has one frame, referenced from both slots. */
struct km_ev_frames {
    struct km_frame *f[2]; /* [enum km_ws_dialect]: built on first need, or NULL */
};

static void km_ev_frames_free(void *p)
{
    struct km_ev_frames *ef = p;
    km_frame_unref(ef->f[0]);
    km_frame_unref(ef->f[1]);
    free(ef);
}

/* The event frame of msg for dialect d, built once and kept in msg's cache
   slot. Borrowed. NULL on ENOMEM. */
static struct km_frame *km_ws_event_frame(struct km_ws *ws, struct km_msg *msg,
                                          enum km_ws_dialect d)
{
    struct km_ev_frames *ef = km_msg_cache(msg);
    struct km_frame *f;
    struct km_tb tb = {0};
    int shared;

    if (ef && ef->f[d])
        return ef->f[d];
    if (!ef) {
        if (!(ef = calloc(1, sizeof *ef)))
            return NULL;
        km_msg_set_cache(msg, ef, km_ev_frames_free);
    }
    shared = km_ws_encode_event(&tb, msg, d);
    if (!(f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_EVENT)))
        return NULL;
    ws->stats.json_encodes++;
    ws->stats.frames_built++;
    ef->f[d] = f;
    if (shared) /* katomon's own envelope: the same bytes for both dialects */
        ef->f[!d] = km_frame_ref(f);
    return f;
}

/* What s's realtime_update shows of the other hosts. */
static enum km_ws_view km_subset_view(const struct km_ws *ws, const struct km_subset *s)
{
    if (s->dialect == KM_WS_KATOMON)
        return KM_WS_VIEW_HOSTS;
    return ws->lim.compatible_aggregate ? KM_WS_VIEW_AGGREGATE : KM_WS_VIEW_LOCAL;
}

/*
 * The realtime_update frame of set s for the current tick and state
 * (borrowed, cached in s), or NULL when s has no state topic with a value.
 */
static struct km_frame *km_ws_state_frame(struct km_ws *ws, struct km_subset *s)
{
    struct km_tb tb = {0};

    if (s->rt && s->rt_gen == ws->state_gen && s->rt_tick == ws->tick_no)
        return s->rt;
    /* The last one's size is a good guess: one allocation, no realloc. */
    if (s->rt)
        km_tb_reserve(&tb, s->rt->len + 256);
    int n = km_ws_encode_state(&tb, ws->core->bus, s->names, s->n_names, s->all,
                               km_subset_view(ws, s));
    struct km_frame *f = NULL;
    if (n == 0 && !tb.failed) {
        free(tb.p);
        return NULL;
    }
    if (!(f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_STATE))) {
        /* said, not skipped quietly; the state is whole again at the next
           tick (or the next subscribe) */
        km_log(KM_LOG_ERROR, "ws: out of memory building a realtime_update");
        return NULL;
    }
    ws->stats.json_encodes++;
    ws->stats.frames_built++;
    km_frame_unref(s->rt);
    s->rt = f;
    s->rt_gen = ws->state_gen;
    s->rt_tick = ws->tick_no;
    return f;
}

/* ======================================================================
 * Fan-out
 * ====================================================================== */

/*
 * The one bus subscription: every topic, every host. A remote host's event
 * goes to the katomon/1 sets, and to the compatible ones only when
 * compatible_fleet = aggregate (the original frontend sees this host alone
 * otherwise, as before). Each set speaks one dialect, so a frame is picked
 * per set, built at most once per dialect.
 */
static void km_ws_bus_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    struct km_ws *ws = arg;
    const char *name;
    int remote = km_msg_host(m) != 0;

    if (km_topic_kind(t) == KM_TOPIC_STATE) {
        ws->state_gen++; /* goes out with the next tick */
        return;
    }
    name = km_topic_name(t);
    struct km_frame *fr[2] = {NULL, NULL}; /* [dialect], borrowed from m's cache */
    for (struct km_subset *s = ws->sets; s; s = s->next) {
        if (!km_subset_wants(s, name) ||
            (remote && s->dialect == KM_WS_COMPAT && !ws->lim.compatible_aggregate))
            continue;
        for (struct km_ws_client *c = s->members; c; c = c->set_next) {
            struct km_frame *f;
            if (c->state != KM_WSC_OPEN)
                continue;
            if (!(f = fr[s->dialect]) &&
                !(f = fr[s->dialect] = km_ws_event_frame(ws, m, s->dialect))) {
                km_log(KM_LOG_ERROR, "ws: out of memory building a %s frame", name);
                return;
            }
            km_ws_client_send(c, f);
        }
    }
}

void km_ws_tick(struct km_ws *ws)
{
    ws->tick_no++;
    ws->stats.ticks++;
    for (struct km_subset *s = ws->sets; s; s = s->next) {
        struct km_frame *f;
        if (!s->n_members || !(f = km_ws_state_frame(ws, s)))
            continue;
        /* km_ws_client_send may close a member, but closing never unlinks it
           from the set (only its death does, from callbacks), so the walk
           is safe. */
        km_frame_ref(f);
        for (struct km_ws_client *c = s->members; c; c = c->set_next) {
            if (c->set_next)
                __builtin_prefetch(c->set_next);
            km_ws_client_send(c, f);
        }
        km_frame_unref(f);
    }
}

static void km_ws_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    km_ws_tick(arg);
}

/* ======================================================================
 * Requests
 * ====================================================================== */

/* Sends an error reply (katomon/1); counts toward c's bad-request limit. */
static void km_ws_error(struct km_ws_client *c, const char *code, const char *detail,
                        json_t *topics)
{
    km_ws_client_reply(c, km_ws_error_msg(code, detail, topics));
    km_ws_client_count_error(c);
}

/* Sends the current realtime_update of c's set, if there is anything. */
static void km_ws_state_now(struct km_ws *ws, struct km_ws_client *c)
{
    struct km_frame *f = km_ws_state_frame(ws, c->set);
    if (f)
        km_ws_client_send(c, f);
}

/* One replay in progress. */
struct km_replay {
    struct km_ws *ws;       /* the hub */
    struct km_ws_client *c; /* who asked */
    size_t budget;          /* bytes it may still queue */
    uint64_t last;          /* seq of the last message queued */
    int truncated;          /* the budget ran out: the rest was not sent */
};

static void km_replay_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    struct km_replay *rp = arg;
    struct km_frame *f;

    if (rp->truncated || rp->c->state != KM_WSC_OPEN)
        return; /* the bus has no way to stop a replay early: skip the rest */
    if (!(f = km_ws_event_frame(rp->ws, m, KM_WS_KATOMON))) {
        /* Out of memory: stop here and let the replay_gap "truncated" say
           where to resume. Returning quietly skipped this message and sent
           the next ones: a hole the client could not see. */
        km_log(KM_LOG_ERROR,
               "ws client %llu (%s): out of memory building a replayed %s frame",
               (unsigned long long)rp->c->id, rp->c->peer, km_topic_name(t));
        rp->truncated = 1;
        return;
    }
    if (f->len > rp->budget) {
        rp->truncated = 1;
        return;
    }
    if (km_ws_client_send(rp->c, f) == 0) {
        rp->budget -= f->len;
        rp->last = km_msg_seq(m);
    }
}

/*
 * Honours one since entry: gap signal first, then the retained messages of
 * the host it names (this host when none). A host this katomon has not
 * heard from has an empty sequence here: a since past 0 is "since_ahead"
 * (start again from 0), as after a restart.
 */
static void km_ws_replay(struct km_ws *ws, struct km_ws_client *c,
                         const struct km_ws_since *s)
{
    struct km_topic *t = km_bus_find(ws->core->bus, s->topic);
    int h = s->host ? km_bus_host_find(ws->core->bus, s->host) : 0;
    char detail[160];

    if (!km_subset_wants(c->set, s->topic)) {
        snprintf(detail, sizeof detail, "since.%s: not in \"subscriptions\"", s->topic);
        km_ws_error(c, "bad_since", detail, NULL);
        return;
    }
    if (!t)
        return; /* reported as unknown already */
    if (km_topic_kind(t) != KM_TOPIC_EVENT) {
        snprintf(detail, sizeof detail,
                 "since.%s: a state topic has no history; its latest value comes with "
                 "realtime_update",
                 s->topic);
        km_ws_error(c, "bad_since", detail, NULL);
        return;
    }
    struct km_ws_gap gap = {
        .topic = s->topic,
        .host = s->host ? s->host : km_bus_host_name(ws->core->bus, 0),
        .requested_since = s->seq,
        .oldest_available = h < 0 ? 0 : km_topic_oldest_seq_host(t, h),
        .last_seq = h < 0 ? 0 : km_topic_last_seq_host(t, h)};
    uint64_t last = gap.last_seq, oldest = gap.oldest_available;
    if (s->seq > last) {
        gap.reason = "since_ahead";
        km_ws_client_reply(c, km_ws_replay_gap_msg(&gap));
        return;
    }
    if (last > s->seq && (oldest == 0 || oldest > s->seq + 1)) {
        uint64_t first_kept = oldest ? oldest : last + 1;
        gap.missed = first_kept - s->seq - 1;
        gap.reason = "not_in_ring";
        km_ws_client_reply(c, km_ws_replay_gap_msg(&gap));
    }
    if (c->state != KM_WSC_OPEN || last <= s->seq)
        return;
    /*
     * A replay may use half the client's bound, so live traffic still fits.
     * Closing with 1008 instead would make a client that reconnects with
     * the same since loop forever; so say where to resume.
     */
    size_t queued = km_ws_client_queued(c), half = ws->lim.max_queue_bytes / 2;
    struct km_replay rp = {ws, c, queued < half ? half - queued : 0, s->seq, 0};
    if (km_bus_replay_host(t, h, s->seq, km_replay_cb, &rp) == KM_ENOMEM) {
        /* nothing replayed: said as a truncated replay from since itself,
           not skipped in silence (the client would believe it had all) */
        km_log(KM_LOG_ERROR, "ws client %llu (%s): out of memory replaying %s",
               (unsigned long long)c->id, c->peer, s->topic);
        rp.truncated = 1;
    }
    if (rp.truncated && c->state == KM_WSC_OPEN) {
        gap.missed = last - rp.last;
        gap.reason = "truncated";
        gap.resume_since = rp.last;
        km_ws_client_reply(c, km_ws_replay_gap_msg(&gap));
    }
}

/* katomon/1: the set is replaced, acknowledged, replayed from `since`, and
   the current state sent at once. */
static void km_ws_subscribe(struct km_ws *ws, struct km_ws_client *c,
                            struct km_ws_request *req)
{
    json_t *unknown = NULL;
    json_t *ack = km_ws_ack_msg(ws->core->bus, req, &unknown);
    struct km_subset *s =
        ack ? km_subset_get(ws, req->names, req->n_names, 0, KM_WS_KATOMON) : NULL;

    if (!s) {
        json_decref(ack);
        json_decref(unknown);
        km_ws_client_oom(c, "answering a subscribe");
        return;
    }
    km_subset_join(ws, c, s);
    c->subscribed = 1;
    km_ws_client_reply(c, ack);
    if (json_array_size(unknown) > 0 && c->state == KM_WSC_OPEN) {
        char detail[256];
        km_ws_unknown_detail(unknown, detail, sizeof detail);
        km_ws_error(c, "unknown_topic", detail, unknown);
    }
    json_decref(unknown);
    for (size_t i = 0; i < req->n_since && c->state == KM_WSC_OPEN; i++)
        km_ws_replay(ws, c, &req->since[i]);
    if (c->state == KM_WSC_OPEN)
        km_ws_state_now(ws, c);
}

/*
 * Compatible: the set becomes the union of every set the client sent,
 * silently (no reply, no immediate update: the original frontend renders on
 * every message and re-subscribes on every render). At most KM_WS_MAX_SUBS
 * names in all; names past that are dropped (counted). The union is merged
 * from the two sorted lists through the stack: no allocation unless the set
 * really changes (then the interned set is found or made).
 */
static void km_ws_subscribe_compat(struct km_ws *ws, struct km_ws_client *c,
                                   const struct km_ws_request *req, uint64_t h)
{
    char *merged[KM_WS_MAX_SUBS];
    char *const *have = c->subscribed ? c->set->names : NULL;
    size_t nh = c->subscribed ? c->set->n_names : 0, i = 0, j = 0, n = 0;

    while (i < nh || j < req->n_names) {
        int cmp = i == nh ? 1 : j == req->n_names ? -1 : strcmp(have[i], req->names[j]);
        char *next = cmp <= 0 ? have[i] : req->names[j];
        i += cmp <= 0;
        j += cmp >= 0;
        if (n == KM_WS_MAX_SUBS) {
            ws->stats.union_capped++;
            continue;
        }
        merged[n++] = next;
    }
    if (!c->subscribed || n != nh) {
        struct km_subset *s = km_subset_get(ws, merged, n, 0, KM_WS_COMPAT);
        if (!s) {
            km_ws_client_oom(c, "joining a subscription set");
            return;
        }
        km_subset_join(ws, c, s);
        c->subscribed = 1;
    }
    km_ws_client_remember(c, h);
}

/* A request a compatible client cannot be told about: logged once, counted;
   a client that keeps sending them is still closed by the connection's
   bad-request limit (without the replies). */
static void km_ws_drop(struct km_ws *ws, struct km_ws_client *c, const char *code,
                       const char *detail)
{
    ws->stats.compat_ignored++;
    if (!c->warned) {
        c->warned = 1;
        km_log(KM_LOG_INFO,
               "ws client %llu (%s): %s: %s (ignored: the original protocol "
               "has no error reply; further ones are not logged)",
               (unsigned long long)c->id, c->peer, code, detail);
    }
    km_ws_client_count_error(c);
}

/* ops.request: one text message from c; h is its hash for a compatible
   client (else 0). */
static void km_ws_on_request(void *owner, struct km_ws_client *c,
                             const unsigned char *data, size_t len, uint64_t h)
{
    struct km_ws *ws = owner;
    struct km_ws_request req;
    char code[32], detail[256];

    if (km_ws_parse_request((const char *)data, len, &req, code, sizeof code, detail,
                            sizeof detail) != 0) {
        if (strcmp(detail, KM_WS_NOMEM) == 0) {
            /* ours, not the client's: an error reply or a silent drop would
               leave it without the set it asked for; 1013 makes it retry */
            km_ws_client_oom(c, "parsing a request");
            return;
        }
        /* "protocol" given: not the original frontend, whatever it declared */
        if (c->dialect == KM_WS_KATOMON || req.katomon ||
            strcmp(code, "bad_protocol") == 0)
            km_ws_error(c, code, detail, NULL);
        else
            km_ws_drop(ws, c, code, detail);
        return;
    }
    if (req.type == KM_WS_REQ_PING) {
        km_ws_client_reply(c, km_ws_heartbeat_msg());
    } else {
        ws->stats.subscribes++;
        if (req.katomon)
            c->dialect = KM_WS_KATOMON; /* for the rest of the connection */
        if (c->dialect == KM_WS_KATOMON)
            km_ws_subscribe(ws, c, &req);
        else
            km_ws_subscribe_compat(ws, c, &req, h);
    }
    km_ws_request_clear(&req);
}

/* ops.dead: c is gone; it leaves its set. */
static void km_ws_on_dead(void *owner, struct km_ws_client *c)
{
    km_subset_leave(owner, c);
}

static const struct km_ws_conn_ops km_ws_conn_ops = {
    .request = km_ws_on_request,
    .dead = km_ws_on_dead,
};

/* ======================================================================
 * Timers and settings
 * ====================================================================== */

static void km_ws_hk_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_ws *ws = arg;
    km_ws_conns_housekeep(&ws->conns);
}

static void km_ws_arm(struct km_ws *ws)
{
    struct timeval tv =
        km_timeval(ws->lim.update_interval < 0.001 ? 0.001 : ws->lim.update_interval);
    double hk = 1.0;

    evtimer_add(ws->tick_ev, &tv);
    if (ws->lim.ping_interval > 0 && ws->lim.ping_interval / 4 < hk)
        hk = ws->lim.ping_interval / 4;
    if (ws->lim.idle_timeout > 0 && ws->lim.idle_timeout / 4 < hk)
        hk = ws->lim.idle_timeout / 4;
    if (ws->lim.close_wait / 4 < hk)
        hk = ws->lim.close_wait / 4;
    if (ws->lim.frame_timeout > 0 && ws->lim.frame_timeout / 4 < hk)
        hk = ws->lim.frame_timeout / 4;
    if (hk < 0.05)
        hk = 0.05;
    tv = km_timeval(hk); /* hk >= 0.05 */
    evtimer_add(ws->hk_ev, &tv);
}

static void km_ws_limits_fix(struct km_ws_limits *l)
{
    if (l->update_interval <= 0)
        l->update_interval = 3.0;
    if (l->max_message_bytes == 0)
        l->max_message_bytes = 64 * 1024;
    if (l->max_queue_bytes == 0)
        l->max_queue_bytes = 1024 * 1024;
    if (l->close_wait <= 0)
        l->close_wait = 5.0;
}

/* The part of the settings the connections apply. */
static struct km_ws_conn_limits km_ws_conn_limits(const struct km_ws_limits *l)
{
    struct km_ws_conn_limits cl = {l->max_message_bytes, l->max_queue_bytes,
                                   l->ping_interval,     l->idle_timeout,
                                   l->close_wait,        l->frame_timeout};
    return cl;
}

/* ======================================================================
 * Public
 * ====================================================================== */

struct km_ws *km_ws_new(struct km_core *core, const struct km_ws_limits *lim)
{
    struct km_ws *ws = calloc(1, sizeof *ws);
    struct km_ws_conn_limits cl;

    if (!ws)
        return NULL;
    ws->core = core;
    ws->lim = *lim;
    km_ws_limits_fix(&ws->lim);
    cl = km_ws_conn_limits(&ws->lim);
    if (km_ws_conns_init(&ws->conns, core->base, &km_ws_conn_ops, ws, &cl) != 0)
        goto fail;
    ws->tick_ev = event_new(core->base, -1, EV_PERSIST, km_ws_tick_cb, ws);
    ws->hk_ev = event_new(core->base, -1, EV_PERSIST, km_ws_hk_cb, ws);
    if (!ws->tick_ev || !ws->hk_ev)
        goto fail;
    ws->sub = km_bus_subscribe_ex(core->bus, "*", km_ws_bus_cb, ws, ws, KM_SUB_HOSTS);
    if (!ws->sub)
        goto fail;
    km_ws_arm(ws);
    return ws;
fail:
    km_ws_free(ws);
    return NULL;
}

void km_ws_free(struct km_ws *ws)
{
    if (!ws)
        return;
    if (ws->sub)
        km_bus_unsubscribe(ws->sub);
    km_ws_conns_fini(&ws->conns); /* 1001 to everyone; each leaves its set */
    while (ws->sets)
        km_subset_free(ws, ws->sets);
    if (ws->tick_ev)
        event_free(ws->tick_ev);
    if (ws->hk_ev)
        event_free(ws->hk_ev);
    free(ws);
}

void km_ws_set_limits(struct km_ws *ws, const struct km_ws_limits *lim)
{
    int rearm = lim->update_interval != ws->lim.update_interval ||
                lim->ping_interval != ws->lim.ping_interval ||
                lim->idle_timeout != ws->lim.idle_timeout ||
                lim->close_wait != ws->lim.close_wait ||
                lim->frame_timeout != ws->lim.frame_timeout;
    struct km_ws_conn_limits cl;

    if (lim->compatible_aggregate != ws->lim.compatible_aggregate)
        ws->state_gen++; /* the compatible sets' cached updates no longer hold */
    ws->lim = *lim;
    km_ws_limits_fix(&ws->lim);
    cl = km_ws_conn_limits(&ws->lim);
    km_ws_conns_set_limits(&ws->conns, &cl);
    if (rearm)
        km_ws_arm(ws);
}

struct km_ws_limits km_ws_get_limits(const struct km_ws *ws)
{
    return ws->lim;
}

int km_ws_attach(struct km_ws *ws, struct bufferevent *bev, const char *peer,
                 km_ws_gone_cb gone, void *arg)
{
    struct km_subset *all = km_subset_get(ws, NULL, 0, 1, KM_WS_COMPAT);
    struct km_ws_client *c =
        all ? km_ws_client_new(&ws->conns, bev, peer, gone, arg) : NULL;

    if (!c) {
        if (all && all->n_members == 0)
            km_subset_free(ws, all); /* made just now, for c */
        bufferevent_free(bev);
        return -1;
    }
    km_subset_join(ws, c, all);
    km_ws_client_start(c); /* may read requests sent right behind the upgrade */
    return 0;
}

void km_ws_get_stats(const struct km_ws *ws, struct km_ws_stats *out)
{
    const struct km_ws_conn_stats *cs = &ws->conns.stats;

    *out = ws->stats;
    out->frames_queued = cs->frames_queued;
    out->bytes_sent = cs->bytes_sent;
    out->private_frames = cs->private_frames;
    out->state_conflated = cs->state_conflated;
    out->state_skipped = cs->state_skipped;
    out->closed_slow = cs->closed_slow;
    out->closed_protocol = cs->closed_protocol;
    /* a re-sent compatible subscribe is one too, recognised by its connection */
    out->subscribes = ws->stats.subscribes + cs->subscribes_unchanged;
    out->subscribes_unchanged = cs->subscribes_unchanged;
    out->accepted = cs->accepted;
    out->clients = cs->clients;
}

/* Clients listed at most by GET /api/v1/ws/subscriptions (count has them all). */
#define KM_WS_LIST_MAX 1000

json_t *km_ws_clients_json(struct km_ws *ws)
{
    json_t *clients = json_array(), *o;
    struct km_ws_stats st;
    char ts[KM_ISO_LEN];

    size_t listed = 0;

    if (!clients)
        return NULL;
    km_ws_get_stats(ws, &st);
    /* bounded: 10,000 clients would make a 2 MB answer built on the loop */
    for (struct km_ws_client *c = ws->conns.live; c && listed < KM_WS_LIST_MAX;
         c = c->next, listed++) {
        json_t *subs;
        if (c->set && c->set->all) {
            subs = json_string("*");
        } else {
            subs = json_array();
            for (size_t i = 0; subs && c->set && i < c->set->n_names; i++)
                if (json_array_append_new(subs, json_string(c->set->names[i])) != 0) {
                    json_decref(subs);
                    subs = NULL; /* fails the client's entry, so the answer */
                }
        }
        km_format_iso(c->connected_wall_us, 6, ts, sizeof ts);
        /* every step checked (ENOMEM: NULL, the server answers 500): a list
           short of a client, or a client short of a topic, would look whole */
        if (json_array_append_new(
                clients,
                json_pack("{s:I, s:s, s:s, s:s, s:b, s:o, s:I, s:I, s:I, s:I, s:s}", "id",
                          (json_int_t)c->id, "peer", c->peer, "state",
                          km_ws_client_state_name(c), "dialect",
                          km_ws_dialect_name(c->dialect), "subscribed", c->subscribed,
                          "topics", subs, "queued_bytes",
                          (json_int_t)km_ws_client_queued(c), "queued_frames",
                          (json_int_t)(c->q_tail - c->q_head), "messages_in",
                          (json_int_t)c->msgs_in, "frames_out", (json_int_t)c->frames_out,
                          "connected_at", ts)) != 0) {
            json_decref(clients);
            return NULL;
        }
    }
    o = json_pack(
        "{s:I, s:b, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I, s:I}, s:{s:f, s:I, s:I, s:f, s:f}}",
        "count", (json_int_t)st.clients, "clients_truncated", st.clients > listed,
        "subscription_sets", (json_int_t)st.sets, "clients", clients, "stats",
        "json_encodes", (json_int_t)st.json_encodes, "frames_built",
        (json_int_t)st.frames_built, "frames_queued", (json_int_t)st.frames_queued,
        "bytes_sent", (json_int_t)st.bytes_sent, "private_frames",
        (json_int_t)st.private_frames, "state_conflated", (json_int_t)st.state_conflated,
        "state_skipped", (json_int_t)st.state_skipped, "closed_slow",
        (json_int_t)st.closed_slow, "closed_protocol", (json_int_t)st.closed_protocol,
        "accepted", (json_int_t)st.accepted, "ticks", (json_int_t)st.ticks, "subscribes",
        (json_int_t)st.subscribes, "subscribes_unchanged",
        (json_int_t)st.subscribes_unchanged, "compat_ignored",
        (json_int_t)st.compat_ignored, "union_capped", (json_int_t)st.union_capped,
        "bus_json_encodes", (json_int_t)km_bus_stats.json_encodes, "limits",
        "update_interval", ws->lim.update_interval, "max_message_bytes",
        (json_int_t)ws->lim.max_message_bytes, "max_queue_bytes",
        (json_int_t)ws->lim.max_queue_bytes, "ping_interval", ws->lim.ping_interval,
        "idle_timeout", ws->lim.idle_timeout);
    if (o &&
        json_object_set_new(
            json_object_get(o, "limits"), "compatible_fleet",
            json_string(ws->lim.compatible_aggregate ? "aggregate" : "local")) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
