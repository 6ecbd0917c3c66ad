/*
 * httpc.h - non-blocking HTTP/1.1 client on libevent (TCP or unix socket).
 *
 * One connection per request ("Connection: close"); responses parsed with
 * http-parser (Content-Length, chunked, or close-delimited bodies).
 * The callback runs exactly once, always from the event loop (never from
 * inside km_httpc_request), unless km_httpc_cancel() came first.
 */
#ifndef KM_HTTPC_H
#define KM_HTTPC_H

#include <event2/event.h>
#include <katomon/http.h>

struct km_httpc_req;

/* Counters for tests. */
struct km_httpc_stats {
    unsigned long started;  /* requests started */
    unsigned long finished; /* callbacks run */
    unsigned long live;     /* requests in flight */
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
/* Stops the request and frees it; cb will not run. */
void km_httpc_cancel(struct km_httpc_req *r);

#endif /* KM_HTTPC_H */
