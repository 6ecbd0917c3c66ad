/*
 * curl_loop.h - libcurl's multi interface on the libevent loop: one CURLM
 * per event_base and the transfers on it (DESIGN section 9).
 *
 * Owns:
 *   - struct km_cl: the CURLM of one event_base, made on first need and
 *     freed by km_cl_shutdown; its sockets, watched with libevent events
 *     (CURLMOPT_SOCKETFUNCTION), and its timeouts, one libevent timer
 *     (CURLMOPT_TIMERFUNCTION); the CURLOPT_RESOLVE entries of its tests;
 *   - struct km_cl_xfer: what every transfer on it has (the easy handle,
 *     its header list, its place in the CURLM), and its life there:
 *     started, stopped, released, and deferred while libcurl is inside one
 *     of its callbacks (libcurl refuses multi calls from there:
 *     CURLM_RECURSIVE_API_CALL);
 *   - what every transfer shares: http and https only, no proxy from the
 *     environment, the TLS options, and the url rule (km_cl_check_url);
 *   - km_hc_stats, the counters the transfers keep for tests.
 *
 * The loop never calls its transfers' owners by name: it reports through
 * struct km_cl_ops (libcurl finished a transfer; a transfer is dropped),
 * which each kind of transfer fills in (http_client.c: requests;
 * http_connect.c: connect-only transfers). Calls libcurl and libevent
 * only.
 *
 * Not thread-safe: everything runs on the loop's thread.
 */
#ifndef KM_CURL_LOOP_H
#define KM_CURL_LOOP_H

#include <stdint.h>
#include <curl/curl.h>
#include <event2/event.h>

#define KM_CL_TIMEOUT_MS 10000 /* a transfer's timeout_ms 0 means this */
#define KM_CL_MAX_URL    8192  /* longest url we accept */

/* Counters for tests: requests (http_client.c), connect-only transfers
   (http_connect.c). Declared here so that neither needs the other. */
struct km_hc_stats {
    unsigned long started;  /* requests started */
    unsigned long finished; /* callbacks run */
    unsigned long live;     /* started, not yet called back nor cancelled */
    unsigned long conns;    /* connect-only transfers not yet freed */
};
extern struct km_hc_stats km_hc_stats;

struct km_cl; /* the CURLM of one event_base */
struct km_cl_xfer;

/* How the loop reports to a transfer's owner. Both run outside libcurl. */
struct km_cl_ops {
    /* libcurl finished x (rc says how), or x could not join the CURLM
       after a libcurl call (CURLE_OUT_OF_MEMORY). x is still linked. */
    void (*done)(struct km_cl_xfer *x, CURLcode rc);
    /* x has been stopped and unlinked: free it and what its owner holds,
       calling nobody. For a transfer released inside libcurl (now that
       libcurl let go of it) and for every transfer at km_cl_shutdown. */
    void (*discard)(struct km_cl_xfer *x);
};

/* What every transfer has: the first member of the owner's struct, and
   what CURLOPT_PRIVATE points at. */
struct km_cl_xfer {
    const struct km_cl_ops *ops;    /* its owner's hooks (borrowed, static) */
    struct km_cl *cl;               /* its CURLM */
    CURL *easy;                     /* NULL once the transfer is over */
    struct curl_slist *headers;     /* CURLOPT_HTTPHEADER (owned) */
    int added;                      /* in the CURLM */
    int pending;                    /* to be added once libcurl returns */
    int zombie;                     /* owner is done with it: the loop frees it */
    int linked;                     /* on the CURLM's list of transfers */
    struct km_cl_xfer *prev, *next; /* that list */
    char errbuf[CURL_ERROR_SIZE];   /* CURLOPT_ERRORBUFFER */
};

/* The CURLM of `base`, made on first need; NULL on ENOMEM or when libcurl
   cannot start. */
struct km_cl *km_cl_get(struct event_base *base);

/* km_hc_set_resolve: see http_client.h. */
int km_cl_set_resolve(struct event_base *base, const char *const *entries);

/* km_hc_shutdown: every transfer still on `base` is stopped and discarded
   (ops->discard), then the CURLM is freed. */
void km_cl_shutdown(struct event_base *base);

/*
 * Makes x's easy handle on cl with the options every transfer has
 * (CURLOPT_PRIVATE = x, the error buffer, http(s) only, no proxy, the
 * connect timeout, the resolve entries, ca_file or tls_insecure). 0, or
 * -1 on ENOMEM (then km_cl_xfer_stop(x) is all there is to undo).
 */
int km_cl_xfer_open(struct km_cl_xfer *x, struct km_cl *cl, const struct km_cl_ops *ops,
                    const char *ca_file, int tls_insecure, unsigned timeout_ms);

/* Hands x to libcurl (now, or once the current libcurl call has returned)
   and links it to its CURLM. 0, or -1 (ENOMEM: x is not linked). */
int km_cl_xfer_start(struct km_cl_xfer *x);

/* Ends the transfer: out of the CURLM, easy handle and headers freed.
   Never from inside libcurl (use km_cl_xfer_release there). */
void km_cl_xfer_stop(struct km_cl_xfer *x);

/* Takes x off its CURLM's list (ops->done and ops->discard no longer
   reach it). A no-op when it is not on it. */
void km_cl_xfer_unlink(struct km_cl_xfer *x);

/*
 * The owner is done with x. Inside libcurl (from on_data), a transfer
 * libcurl holds cannot leave the CURLM: it becomes a zombie that the loop
 * discards once libcurl has returned. Returns 1 when x was stopped and
 * unlinked (the owner frees it now), 0 when it lives on as a zombie.
 */
int km_cl_xfer_release(struct km_cl_xfer *x);

/*
 * Checks `url` (http:// or https://, a host, no credentials, a port other
 * than 0) and writes it without its fragment into out (KM_CL_MAX_URL + 32
 * bytes). With unix_socket, a bare "/path" is accepted too (it becomes
 * http://localhost/path, so Host: localhost). 0, or -1 with why filled.
 */
int km_cl_check_url(const char *url, int unix_socket, char *out, char *why,
                    size_t whylen);

/* Arms the timer ev to fire in ms milliseconds. */
void km_cl_arm(struct event *ev, int64_t ms);

#endif /* KM_CURL_LOOP_H */
