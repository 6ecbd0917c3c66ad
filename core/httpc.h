/*
 * httpc.h - non-blocking HTTP/1.1 client on libevent (TCP or unix socket).
 *
 * One connection per request ("Connection: close"); responses parsed with
 * http-parser (Content-Length, chunked, or close-delimited bodies).
 * The callback runs exactly once, always from the event loop (never from
 * inside km_httpc_request), unless km_httpc_cancel() came first.
 *
 * Limits: timeout_ms (default 10 s) covers the whole request, lookup and
 * connect included; with on_data it is the longest silence allowed between
 * two reads. max_body defaults to 8 MiB; with on_data it defaults to no
 * limit (an /events stream never ends) and, when set, bounds the bytes
 * streamed. Status line + headers are limited to 64 KiB.
 *
 * Host names are resolved with evdns, never blocking the loop: each
 * event_base gets a resolver made on its first request naming a host
 * (reading /etc/resolv.conf and /etc/hosts then), freed by
 * km_httpc_shutdown(). Numeric hosts and unix sockets need none.
 *
 * Writing to a socket the server closed raises SIGPIPE: the process must
 * ignore it (main.c does).
 *
 * Not thread-safe: everything runs on the loop's thread.
 */
#ifndef KM_HTTPC_H
#define KM_HTTPC_H

#include <event2/event.h>
#include <katomon/http.h>

struct km_httpc_req;
struct evdns_base;

/* Counters for tests. */
struct km_httpc_stats {
    unsigned long started;  /* requests started */
    unsigned long finished; /* callbacks run */
    unsigned long live;     /* started, not yet called back nor cancelled */
};
extern struct km_httpc_stats km_httpc_stats;

/*
 * Starts `req` (copied). Returns a handle valid until cb has run or
 * km_httpc_cancel, or NULL (bad url, ENOMEM) with cb never called and, when
 * err is not NULL, a reason copied into it.
 */
struct km_httpc_req *km_httpc_request(struct event_base *base,
                                      const struct km_http_request *req, km_http_cb cb,
                                      void *arg, char *err, size_t errlen);
/*
 * Stops the request and frees it; cb will not run. Safe from inside the
 * request's own on_data (the request is freed once on_data returns) and
 * from any other callback; a no-op from inside the request's own cb (it is
 * freed when cb returns). r must not be used after cb has returned.
 */
void km_httpc_cancel(struct km_httpc_req *r);

/*
 * Releases what the client holds for `base`: cancels every request still
 * running on it (their callbacks do not run) and frees the resolver made
 * for it. Call before event_base_free(base); requests may start again
 * afterwards (a new resolver is made when needed).
 */
void km_httpc_shutdown(struct event_base *base);

/*
 * Makes requests on `base` resolve host names with `dns` instead of a
 * resolver made from /etc/resolv.conf (tests; a daemon that already has
 * one). Borrowed: it must outlive those requests; km_httpc_shutdown does
 * not free it. NULL goes back to the default. 0, or -1 on ENOMEM.
 */
int km_httpc_set_dns(struct event_base *base, struct evdns_base *dns);

#endif /* KM_HTTPC_H */
