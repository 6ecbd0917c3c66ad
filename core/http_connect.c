/*
 * http_connect.c - connect-only transfers (CURLOPT_CONNECT_ONLY) for the
 * outbound WebSocket client.
 *
 * A connection's life (struct km_hc_conn):
 *   km_hc_connect   checks the url, makes the easy handle with the options
 *        |          every transfer has, adds it to the CURLM and arms a
 *        |          backstop timer
 *   conn_done       libcurl connected (the easy handle stays in the CURLM:
 *        |          curl_easy_send/recv need it) or failed; the timer is
 *        |          activated
 *   conn_on_ev      calls back from the loop, never from inside
 *        |          km_hc_connect or libcurl
 *   km_hc_conn_free the caller is done: out of the CURLM, freed (or, inside
 *                   libcurl, a zombie the loop discards later)
 *
 * Everything runs on the loop's thread; nothing here is thread-safe.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "curl_error.h"
#include "curl_loop.h"
#include "http_connect.h"

struct km_hc_conn {
    struct km_cl_xfer x; /* first: see struct km_cl_xfer */
    struct event *ev;    /* deferred callback; NULL once km_hc_conn_free ran */
    km_hc_conn_cb cb;    /* called once */
    void *arg;           /* its argument */
    unsigned timeout_ms; /* for the error text */
    int done;            /* connected or failed: ev calls back */
    int connected;       /* connected (easy still in the CURLM) */
    char error[512];     /* why not */
};

static void conn_on_ev(evutil_socket_t fd, short what, void *arg)
{
    struct km_hc_conn *c = arg;

    if (!c->done) { /* libcurl never answered: our own backstop */
        snprintf(c->error, sizeof c->error, "timed out after %u ms", c->timeout_ms);
        km_cl_xfer_stop(&c->x);
        c->done = 1;
    }
    c->cb(c, c->connected ? NULL : c->error, c->arg); /* may free c */
}

/* ops->done: libcurl connected, or could not (rc says why). */
static void conn_done(struct km_cl_xfer *x, CURLcode rc)
{
    struct km_hc_conn *c = (struct km_hc_conn *)x;
    long os_errno = 0;

    if (rc == CURLE_OK) {
        c->connected = 1; /* stays in the CURLM: curl_easy_send/recv need it */
    } else {
        if (rc == CURLE_OPERATION_TIMEDOUT)
            snprintf(c->error, sizeof c->error, "timed out after %u ms", c->timeout_ms);
        else {
            curl_easy_getinfo(c->x.easy, CURLINFO_OS_ERRNO, &os_errno);
            km_hc_error_text(rc, c->x.errbuf, os_errno, NULL, c->error, sizeof c->error);
        }
        km_cl_xfer_stop(&c->x);
    }
    c->done = 1;
    event_del(c->ev);
    event_active(c->ev, EV_TIMEOUT, 1);
}

static void conn_free(struct km_hc_conn *c)
{
    if (c->ev)
        event_free(c->ev);
    free(c);
}

/* ops->discard: a zombie km_hc_conn_free left (already uncounted), or
   km_hc_shutdown dropping one the caller still holds. */
static void conn_discard(struct km_cl_xfer *x)
{
    struct km_hc_conn *c = (struct km_hc_conn *)x;

    if (c->ev) /* km_hc_conn_free has not run */
        km_hc_stats.conns--;
    conn_free(c);
}

static const struct km_cl_ops conn_ops = {conn_done, conn_discard};

struct km_hc_conn *km_hc_connect(struct event_base *base, const struct km_hc_target *t,
                                 km_hc_conn_cb cb, void *arg, char *err, size_t errlen)
{
    static char url[KM_CL_MAX_URL + 32];
    struct km_hc_conn *c = NULL;
    struct km_cl *cl;
    char why[256] = "out of memory";

    if (!base || !t || !t->url || !cb) {
        snprintf(why, sizeof why, "missing event base, url or callback");
        goto refuse;
    }
    if (km_cl_check_url(t->url, 0, url, why, sizeof why) < 0)
        goto refuse;
    if (!(cl = km_cl_get(base)) || !(c = calloc(1, sizeof *c)))
        goto refuse;
    c->cb = cb;
    c->arg = arg;
    c->timeout_ms = t->timeout_ms ? t->timeout_ms : KM_CL_TIMEOUT_MS;
    if (km_cl_xfer_open(&c->x, cl, &conn_ops, t->ca_file, t->tls_insecure,
                        c->timeout_ms) < 0 ||
        !(c->ev = evtimer_new(base, conn_on_ev, c)))
        goto fail;
    curl_easy_setopt(c->x.easy, CURLOPT_URL, url);
    curl_easy_setopt(c->x.easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    /* 1: resolve, connect, TLS, then stop. (7.86's 2 is for libcurl's own
       WebSocket support, which Debian 12's 7.88 is not built with.) */
    curl_easy_setopt(c->x.easy, CURLOPT_CONNECT_ONLY, 1L);
    if (km_cl_xfer_start(&c->x) < 0)
        goto fail;
    km_hc_stats.conns++;
    /* should libcurl never report (it always does), the callback still
       comes: a second after libcurl's own timeout */
    km_cl_arm(c->ev, (int64_t)c->timeout_ms + 1000);
    return c;
fail:
    km_cl_xfer_stop(&c->x);
    conn_free(c);
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s", why);
    return NULL;
}

CURL *km_hc_conn_easy(struct km_hc_conn *c)
{
    return c && c->connected ? c->x.easy : NULL;
}

curl_socket_t km_hc_conn_socket(struct km_hc_conn *c)
{
    curl_socket_t fd = CURL_SOCKET_BAD;

    if (c && c->connected &&
        curl_easy_getinfo(c->x.easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK)
        fd = CURL_SOCKET_BAD;
    return fd;
}

void km_hc_conn_free(struct km_hc_conn *c)
{
    if (!c)
        return;
    km_hc_stats.conns--;
    event_free(c->ev);
    c->ev = NULL;
    c->cb = NULL;
    if (km_cl_xfer_release(&c->x))
        conn_free(c);
    /* else a zombie: the loop discards it once libcurl has let go */
}
