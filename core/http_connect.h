/*
 * http_connect.h - connect-only transfers: libcurl resolves, connects and
 * does the TLS handshake on the loop's CURLM, then hands the connection
 * over (core/ws_client.c speaks WebSocket on it).
 *
 * Owns struct km_hc_conn and its life: started, called back once,
 * freed. Lookup, connect and TLS follow the same rules as a request's
 * (curl_loop.c: http(s) only, no proxy, ca_file or tls_insecure). Callers
 * reach it through http_client.h. Calls curl_loop.c and curl_error.c
 * only.
 *
 * Ownership follows include/katomon/plugin.h ("new", "borrowed", "steals").
 * Not thread-safe: everything runs on the loop's thread.
 */
#ifndef KM_HTTP_CONNECT_H
#define KM_HTTP_CONNECT_H

#include <stddef.h>
#include <curl/curl.h>
#include <event2/event.h>

struct km_hc_conn; /* one connect-only transfer (km_hc_connect) */

/* What km_hc_connect needs; everything is copied. */
struct km_hc_target {
    const char *url;     /* http:// or https://; only scheme, host and port
                            matter (libcurl sends nothing on its own) */
    const char *ca_file; /* PEM bundle instead of the system store, or NULL */
    int tls_insecure;    /* 1: do not verify the server's certificate */
    unsigned timeout_ms; /* lookup + connect + TLS; 0: 10000 */
};

/* Called once, from the loop (never inside km_hc_connect): error NULL when
   connected (then km_hc_conn_easy/socket work), else why not. */
typedef void (*km_hc_conn_cb)(struct km_hc_conn *c, const char *error, void *arg);

/* Starts a connect-only transfer. Returns a new handle (free it with
   km_hc_conn_free, also after a failure), or NULL with err filled. */
struct km_hc_conn *km_hc_connect(struct event_base *base, const struct km_hc_target *t,
                                 km_hc_conn_cb cb, void *arg, char *err, size_t errlen);

/* Once connected: the easy handle for curl_easy_send/curl_easy_recv
   (borrowed), and its socket (to watch with libevent; never close it). */
CURL *km_hc_conn_easy(struct km_hc_conn *c);
curl_socket_t km_hc_conn_socket(struct km_hc_conn *c);

/* Closes the connection and frees c; cb does not run afterwards. The
   caller stops watching the socket first. */
void km_hc_conn_free(struct km_hc_conn *c);

#endif /* KM_HTTP_CONNECT_H */
