/*
 * curl_loop.c - libcurl's multi interface driven by the libevent loop (the
 * "multi_socket" API, as in curl's hiperfifo.c), and the life of a
 * transfer on it.
 *
 * Per event_base, one struct km_cl holds a CURLM, one libevent timer for
 * libcurl's timeouts and one libevent event per socket libcurl wants
 * watched:
 *
 *   libcurl --CURLMOPT_SOCKETFUNCTION--> cl_on_socket: (re)arm that
 *            socket's event for IN/OUT, or drop it
 *   libcurl --CURLMOPT_TIMERFUNCTION---> cl_on_timer_set: arm the timer
 *   event fires --> curl_multi_socket_action --> cl_settle:
 *            curl_multi_info_read hands finished transfers to ops->done
 *
 * libcurl refuses multi calls made from inside its callbacks
 * (CURLM_RECURSIVE_API_CALL), and a request's on_data is such a callback:
 * whatever a plugin does from there (start a request, cancel one, publish
 * to a subscriber that does) is recorded and carried out by cl_settle once
 * curl_multi_socket_action has returned: a transfer started then is
 * `pending`, one released then a `zombie` (kept until libcurl lets go of
 * it, then handed to ops->discard).
 *
 * What a transfer is for (a request, a connect-only transfer) is its
 * owner's business: the loop reaches owners only through struct
 * km_cl_ops, so calls go one way, from the owners down to here.
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "curl_loop.h"

struct km_hc_stats km_hc_stats;

/* One socket libcurl asked us to watch. */
struct cl_sock {
    struct event ev;             /* its event (EV_PERSIST) */
    struct km_cl *cl;            /* owner */
    struct cl_sock *prev, *next; /* cl->socks, so km_cl_shutdown frees leftovers */
};

/* The CURLM of one event_base. */
struct km_cl {
    struct event_base *base;    /* the loop */
    CURLM *multi;               /* libcurl's multi handle */
    struct event *timer;        /* libcurl's timeout */
    int in_curl;                /* inside curl_multi_socket_action */
    unsigned todo;              /* transfers pending or zombie */
    struct km_cl_xfer *xfers;   /* every transfer not yet freed */
    struct cl_sock *socks;      /* watched sockets */
    struct curl_slist *resolve; /* km_cl_set_resolve entries (owned) */
    struct km_cl *next;         /* next base's */
};

static struct km_cl *cl_all; /* one per event_base */

static void cl_settle(struct km_cl *cl);

void km_cl_arm(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};

    evtimer_add(ev, &tv);
}

/* ---- the CURLM of a base ------------------------------------------------ */

/* A socket's event fired: tell libcurl, then act on what it finished. */
static void cl_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct km_cl *cl = arg;
    int running, action = 0;

    if (what & EV_READ)
        action |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        action |= CURL_CSELECT_OUT;
    cl->in_curl++;
    curl_multi_socket_action(cl->multi, fd, action, &running);
    cl->in_curl--;
    cl_settle(cl);
}

/* libcurl's timeout expired. */
static void cl_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct km_cl *cl = arg;
    int running;

    cl->in_curl++;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    cl->in_curl--;
    cl_settle(cl);
}

/* CURLMOPT_TIMERFUNCTION: never calls libcurl back from here (0 ms is a
   timer that fires on the loop's next round). */
static int cl_on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    struct km_cl *cl = userp;

    if (timeout_ms < 0)
        evtimer_del(cl->timer);
    else
        km_cl_arm(cl->timer, timeout_ms);
    return 0;
}

static void cl_sock_free(struct cl_sock *s)
{
    event_del(&s->ev);
    if (s->prev)
        s->prev->next = s->next;
    else
        s->cl->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

/*
 * CURLMOPT_SOCKETFUNCTION: watch `fd` for what libcurl wants, or stop.
 * Freeing an event from inside its own callback (libcurl drops a socket
 * while we are in cl_on_event for it) is safe: libevent reads nothing of
 * a persistent event once its callback has been called.
 */
static int cl_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                        void *socketp)
{
    struct km_cl *cl = userp;
    struct cl_sock *s = socketp;
    short flags = EV_PERSIST;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            cl_sock_free(s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return 0; /* unwatched: the transfer times out */
        s->cl = cl;
        s->next = cl->socks;
        if (cl->socks)
            cl->socks->prev = s;
        cl->socks = s;
        curl_multi_assign(cl->multi, fd, s);
    } else {
        event_del(&s->ev);
    }
    if (what & CURL_POLL_IN)
        flags |= EV_READ;
    if (what & CURL_POLL_OUT)
        flags |= EV_WRITE;
    event_assign(&s->ev, cl->base, fd, flags, cl_on_event, cl);
    event_add(&s->ev, NULL);
    return 0;
}

static struct km_cl *cl_find(struct event_base *base)
{
    struct km_cl *cl;

    for (cl = cl_all; cl; cl = cl->next)
        if (cl->base == base)
            return cl;
    return NULL;
}

struct km_cl *km_cl_get(struct event_base *base)
{
    struct km_cl *cl = cl_find(base);

    if (cl)
        return cl;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    cl = calloc(1, sizeof *cl);
    if (!cl || !(cl->multi = curl_multi_init()) ||
        !(cl->timer = evtimer_new(base, cl_on_timeout, cl))) {
        if (cl && cl->multi)
            curl_multi_cleanup(cl->multi);
        free(cl);
        curl_global_cleanup();
        return NULL;
    }
    cl->base = base;
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, cl_on_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, cl_on_timer_set);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    cl->next = cl_all;
    cl_all = cl;
    return cl;
}

/* ---- transfers ------------------------------------------------------------ */

static void cl_link(struct km_cl_xfer *x)
{
    x->linked = 1;
    x->next = x->cl->xfers;
    if (x->cl->xfers)
        x->cl->xfers->prev = x;
    x->cl->xfers = x;
}

void km_cl_xfer_unlink(struct km_cl_xfer *x)
{
    if (!x->linked)
        return;
    x->linked = 0;
    if (x->prev)
        x->prev->next = x->next;
    else
        x->cl->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Hands the easy handle to libcurl now, or after the current libcurl call. */
static int cl_add(struct km_cl_xfer *x)
{
    if (x->cl->in_curl) {
        x->pending = 1;
        x->cl->todo++;
        return 0;
    }
    if (curl_multi_add_handle(x->cl->multi, x->easy) != CURLM_OK)
        return -1;
    x->added = 1;
    return 0;
}

int km_cl_xfer_start(struct km_cl_xfer *x)
{
    if (cl_add(x) < 0)
        return -1;
    cl_link(x);
    return 0;
}

void km_cl_xfer_stop(struct km_cl_xfer *x)
{
    if (x->pending) {
        x->pending = 0;
        x->cl->todo--;
    }
    if (x->added) {
        curl_multi_remove_handle(x->cl->multi, x->easy);
        x->added = 0;
    }
    if (x->easy) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
}

int km_cl_xfer_release(struct km_cl_xfer *x)
{
    if (x->cl->in_curl && x->added) {
        if (!x->zombie) {
            x->zombie = 1;
            x->cl->todo++;
        }
        return 0;
    }
    km_cl_xfer_stop(x);
    km_cl_xfer_unlink(x);
    return 1;
}

int km_cl_xfer_open(struct km_cl_xfer *x, struct km_cl *cl, const struct km_cl_ops *ops,
                    const char *ca_file, int tls_insecure, unsigned timeout_ms)
{
    CURL *e;

    x->ops = ops;
    x->cl = cl;
    if (!(x->easy = e = curl_easy_init()))
        return -1;
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* a transfer given up during a lookup does not wait for the resolver
       thread (which finishes and cleans up on its own) */
    curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* no proxy from the environment */
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    if (cl->resolve)
        curl_easy_setopt(e, CURLOPT_RESOLVE, cl->resolve);
    if (ca_file && *ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
    if (tls_insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    return 0;
}

int km_cl_check_url(const char *url, int unix_socket, char *out, char *why, size_t whylen)
{
    size_t len = strcspn(url, "#");
    CURLU *u;
    char *scheme = NULL, *host = NULL, *user = NULL, *port = NULL;
    int rc = -1;

    if (len > KM_CL_MAX_URL) {
        snprintf(why, whylen, "url longer than %u bytes", KM_CL_MAX_URL);
        return -1;
    }
    if (url[0] == '/' && unix_socket)
        snprintf(out, KM_CL_MAX_URL + 32, "http://localhost%.*s", (int)len, url);
    else
        snprintf(out, KM_CL_MAX_URL + 32, "%.*s", (int)len, url);
    if (strpbrk(out, " \t\r\n")) {
        snprintf(why, whylen, "bad url \"%.200s\"", url);
        return -1;
    }
    u = curl_url();
    if (!u) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, out, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") && strcmp(scheme, "https")) ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host) {
        snprintf(why, whylen, "bad url \"%.200s\": want http(s)://host[:port]/path", url);
    } else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(why, whylen, "credentials in the url are not supported (url %.200s)",
                 url);
    } else if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK &&
               strtol(port, NULL, 10) == 0) {
        snprintf(why, whylen, "bad port in url \"%.200s\"", url);
    } else {
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* ---- after every libcurl call ---------------------------------------------- */

/* Frees a transfer whose owner let go of it inside libcurl. */
static void cl_bury(struct km_cl_xfer *x)
{
    x->zombie = 0;
    x->cl->todo--;
    km_cl_xfer_stop(x);
    km_cl_xfer_unlink(x);
    x->ops->discard(x);
}

/*
 * Acts on what libcurl finished, then carries out what was asked of us
 * while libcurl was in a callback (zombies to free, transfers to add).
 * Runs only outside libcurl; the owners' done hooks call no plugin code.
 */
static void cl_settle(struct km_cl *cl)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        struct km_cl_xfer *x = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        if (!x || x->zombie)
            continue; /* freed below */
        x->ops->done(x, rc);
    }
    while (cl->todo) {
        struct km_cl_xfer *x;

        for (x = cl->xfers; x && !x->zombie && !x->pending; x = x->next)
            ;
        if (!x) { /* cannot happen; never loop forever on a miscount */
            cl->todo = 0;
            break;
        }
        if (x->zombie) {
            cl_bury(x);
        } else {
            x->pending = 0;
            cl->todo--;
            if (cl_add(x) < 0) /* fails only on ENOMEM: report it */
                x->ops->done(x, CURLE_OUT_OF_MEMORY);
        }
    }
}

/* ---- per base ----------------------------------------------------------------- */

int km_cl_set_resolve(struct event_base *base, const char *const *entries)
{
    struct km_cl *cl = km_cl_get(base);
    struct curl_slist *list = NULL, *l;

    if (!cl)
        return -1;
    for (; entries && *entries; entries++) {
        if (!(l = curl_slist_append(list, *entries))) {
            curl_slist_free_all(list);
            return -1;
        }
        list = l;
    }
    curl_slist_free_all(cl->resolve);
    cl->resolve = list;
    return 0;
}

void km_cl_shutdown(struct event_base *base)
{
    struct km_cl **pp, *cl;

    for (pp = &cl_all; (cl = *pp) != NULL; pp = &cl->next)
        if (cl->base == base)
            break;
    if (!cl)
        return;
    while (cl->xfers) {
        struct km_cl_xfer *x = cl->xfers;

        if (x->zombie) {
            cl_bury(x);
        } else {
            km_cl_xfer_stop(x);
            km_cl_xfer_unlink(x);
            x->ops->discard(x);
        }
    }
    *pp = cl->next;
    curl_multi_cleanup(cl->multi); /* may still drop sockets through cl_on_socket */
    while (cl->socks)
        cl_sock_free(cl->socks);
    event_free(cl->timer);
    curl_slist_free_all(cl->resolve);
    free(cl);
    curl_global_cleanup();
}
