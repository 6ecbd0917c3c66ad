/*
 * http_client.h - the daemon's one outbound HTTP(S) client: libcurl's multi
 * interface driven by the libevent loop (DESIGN section 9).
 *
 * One CURLM per event_base, made on the first request on that base and
 * freed by km_hc_shutdown(base). Its sockets are watched with libevent
 * events (CURLMOPT_SOCKETFUNCTION) and its timeouts with one libevent
 * timer (CURLMOPT_TIMERFUNCTION); nothing here starts a thread or blocks.
 * Host names are resolved by libcurl's threaded resolver (Debian builds
 * libcurl with it: curl-config --features says AsynchDNS): getaddrinfo()
 * runs in a helper thread that libcurl owns, never on the loop, and a
 * request given up during a lookup does not wait for it (CURLOPT_QUICK_EXIT).
 *
 * Requests (km_hc_request) implement exactly the contract of
 * km_http_request / km_http_response / km_http_cb in katomon/http.h:
 *   - the callback runs exactly once, always from the loop (never from
 *     inside km_hc_request), unless km_hc_cancel() came first;
 *   - timeout_ms (default 10 s) covers the whole request, lookup, connect
 *     and TLS included; with on_data it is the longest silence allowed
 *     (from the start, then between two pieces of the response);
 *   - max_body (default 8 MiB; with on_data none) bounds the body, an
 *     announced Content-Length beyond it fails before any body is read;
 *   - status line + headers are limited to 64 KiB;
 *   - https is verified against the system CA store (Debian's
 *     /etc/ssl/certs), or against ca_file, or not at all with tls_insecure
 *     (the caller logged a warning).
 * Connections are kept alive and reused between requests to the same
 * server (libcurl's connection cache, per CURLM). Proxies from the
 * environment (http_proxy, ...) are not used: nothing here did before.
 *
 * Connect-only transfers (km_hc_connect, in http_connect.h) share the same
 * CURLM: libcurl resolves, connects and does the TLS handshake, then hands
 * the connection over (core/ws_client.c speaks WebSocket on it).
 *
 * This header is the client's whole API; the work is split by concern:
 *   curl_loop.c     the CURLM on the libevent loop, the life of a transfer
 *                   on it (deferred while inside libcurl), the options and
 *                   url rule every transfer shares, km_hc_stats;
 *   http_client.c   one request (this header's km_hc_request/cancel) and
 *                   the per-base calls (km_hc_shutdown, km_hc_set_resolve);
 *   http_connect.c  connect-only transfers (http_connect.h);
 *   curl_error.c    the error texts (curl_error.h).
 * Calls go one way: http_client.c and http_connect.c call curl_loop.c
 * and curl_error.c; the loop reaches them only through struct km_cl_ops.
 *
 * Writing to a socket the server closed never raises SIGPIPE (libcurl
 * sends with MSG_NOSIGNAL), but main.c ignores it anyway.
 *
 * Ownership follows include/katomon/plugin.h ("new", "borrowed", "steals").
 * Not thread-safe: everything runs on the loop's thread.
 */
#ifndef KM_HTTP_CLIENT_H
#define KM_HTTP_CLIENT_H

#include <stddef.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <katomon/http.h>

#include "curl_error.h"   /* km_hc_error_text */
#include "curl_loop.h"    /* struct km_hc_stats, km_hc_stats */
#include "http_connect.h" /* km_hc_connect and the rest of struct km_hc_conn */

struct km_hc_req; /* one request, from km_hc_request until cb or cancel */

/*
 * Starts `req` (everything in it is copied) on `base`'s CURLM. Returns a
 * handle, valid until cb has returned or km_hc_cancel, or NULL (bad url,
 * method or header, ENOMEM) with cb never called and, when err is not
 * NULL, the reason copied into it (err is written only then).
 *
 * Safe from any callback of the loop, on_data of another request
 * included (the transfer is then handed to libcurl once on_data's
 * libcurl call has returned).
 */
struct km_hc_req *km_hc_request(struct event_base *base,
                                const struct km_http_request *req, km_http_cb cb,
                                void *arg, char *err, size_t errlen);

/*
 * Stops the request and frees it; cb will not run. Safe from inside the
 * request's own on_data (the transfer is stopped once on_data returns)
 * and from any other callback; a no-op from inside the request's own cb
 * (it is freed when cb returns). r must not be used after cb has returned.
 */
void km_hc_cancel(struct km_hc_req *r);

/*
 * Releases what the client holds for `base`: cancels every request and
 * connect-only transfer still on it (no callback runs) and frees its
 * CURLM. Call before event_base_free(base); requests may start again
 * afterwards (a new CURLM is made when needed).
 */
void km_hc_shutdown(struct event_base *base);

/*
 * Tests: "HOST:PORT:ADDRESS[,ADDRESS...]" entries (CURLOPT_RESOLVE) that
 * every later transfer on `base` uses instead of looking HOST up. Copied;
 * NULL or an empty list clears them. 0, or -1 on ENOMEM.
 */
int km_hc_set_resolve(struct event_base *base, const char *const *entries);

#endif /* KM_HTTP_CLIENT_H */
