/*
 * server_conn.h - the HTTP server's listening socket and connections:
 * binding, accepting ([http] max_connections: the next one gets 503 and is
 * closed), parsing requests with http-parser within the limits
 * ([http] max_request_bytes: 414 for the request line, 431 for headers,
 * 413 for the body; 64 headers; 30 s to send a request), keep-alive and
 * pipelining, writing answers, answers a plugin gives later, the
 * lingering close, and handing a socket over (the /ws upgrade).
 *
 * Owns the bytes on the wire, none of what a request means: each request
 * parsed goes to the handler the listener was made with (the server gives
 * it km_route, server_route.h), which answers through the km_conn_*
 * calls below. Calls rest.h for the {"detail"} body of its own errors and
 * loader.h for answers given later; no other server file.
 */
#ifndef KM_SERVER_CONN_H
#define KM_SERVER_CONN_H

#include <stddef.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "loader.h"

struct km_listener;
struct km_conn;

/* The parts of a request the handler looks at, borrowed from the conn
   until the handler returns. */
struct km_req {
    const char *method; /* "GET", ... */
    const char *target; /* raw request target */
    const char *query;  /* raw query after '?', "" when none (set by the handler) */
    const char *path;   /* percent-decoded path (set by the handler; NULL before) */
    int path_nul;       /* the path had %00: path holds what came before it (ditto) */
    const char *body;   /* request body, NUL-terminated, "" when none */
    size_t body_len;    /* bytes in body */
    int head;           /* HEAD: headers only */
    int http11;         /* HTTP/1.1 or later */
    int upgrade;        /* http-parser's upgrade flag (Upgrade + Connection, CONNECT) */
};

/*
 * Answers req on c: through km_conn_send and the calls after it, or
 * km_conn_hand_over, or km_conn_prepare_later + km_conn_wait_later.
 * Returns 1 when c is gone (handed over), else 0. Called only for a whole
 * request within the limits (the connection answers the others itself).
 */
typedef int (*km_conn_handler)(void *arg, struct km_conn *c, struct km_req *req);

/* ---- the listener ---- */

/*
 * Binds host:port (port 0: ephemeral) and starts accepting on base.
 * max_connections counts HTTP and handed-over connections together;
 * max_request_bytes bounds a request's head and, separately, its body.
 * Every request goes to handler(arg, ...) (arg borrowed). Returns the
 * listener (new; km_listener_free), or NULL with a message in err such as
 * "cannot listen on 127.0.0.1:8080: Address already in use; set [http] port".
 */
struct km_listener *km_listener_new(struct event_base *base, const char *host, int port,
                                    size_t max_connections, size_t max_request_bytes,
                                    km_conn_handler handler, void *arg, char *err,
                                    size_t errlen);

/* Stops accepting, closes every HTTP connection (those handed over are
   their new owner's), frees. NULL is fine. */
void km_listener_free(struct km_listener *l);

/* The port actually bound. */
int km_listener_port(const struct km_listener *l);

/* "http://ADDR:PORT" ("http://[ADDR]:PORT" for IPv6), numeric, into buf;
   returns buf. */
const char *km_listener_url(const struct km_listener *l, char *buf, size_t len);

/* Connections open now: HTTP, plus those handed over and not yet gone. */
size_t km_listener_connections(const struct km_listener *l);
/* Seconds a request may take from its first byte to its last (headers and
   body) before it is answered 408 and closed; <= 0: no limit (the read
   timeout alone, which each byte restarts). Applies to requests begun
   after the call. */
void km_listener_set_request_timeout(struct km_listener *l, double seconds);

/* For tests (tests/fuzz/fuzz_http_request.c): serves bev (stolen; e.g. one
   end of a bufferevent_pair) as a connection accepted from peer, exactly as
   an accepted socket is served. */
void km_listener_adopt(struct km_listener *l, struct bufferevent *bev, const char *peer);

/* A connection handed over (km_conn_hand_over) has ended: it stops
   counting against max_connections. */
void km_listener_gone(struct km_listener *l);

/* ---- answering, for the handler ---- */

/* Value of header name (case-insensitive; borrowed, "" when empty), or
   NULL when the request has none. */
const char *km_conn_header(const struct km_conn *c, const char *name);

/* The next answer is the last: "Connection: close", then the lingering
   close. Call it before writing that answer. */
void km_conn_end(struct km_conn *c);

/*
 * Writes the status line, the standard headers (Server, Date,
 * Content-Length but for 204 and 304, Connection), extra (whole
 * "Name: value\r\n" lines or NULL) and len bytes of body (NULL: headers
 * only, the body follows through km_conn_send_file). The body is left out
 * for HEAD (req may be NULL), 204 and 304, but still counted in
 * Content-Length.
 */
void km_conn_send(struct km_conn *c, const struct km_req *req, int status,
                  const char *ctype, const char *extra, const void *body, size_t len);

/* A JSON answer; steals body (NULL, or a failed encoding: 500). */
void km_conn_json(struct km_conn *c, const struct km_req *req, int status,
                  const char *extra, json_t *body);

/* A {"detail": detail} answer. */
void km_conn_detail(struct km_conn *c, const struct km_req *req, int status,
                    const char *extra, const char *detail);

/* Queues len bytes of the open file fd (stolen) as the body after
   km_conn_send; when that fails the connection ends (the headers promised
   a body). */
void km_conn_send_file(struct km_conn *c, int fd, size_t len);

/*
 * For a request a plugin may answer later (km_rest_handle): fills *waiter
 * and returns where the pending handle goes (owned by c from then on; c
 * detaches it when it goes first).
 */
struct km_rest_pending **km_conn_prepare_later(struct km_conn *c,
                                               struct km_rest_waiter *waiter);

/*
 * The answer is coming later (KM_REST_DEFERRED): nothing more is parsed
 * and the read timeout is off (the core's deadline answers 504) until the
 * waiter has written it, with extra (copied; NULL: "Cache-Control:
 * no-store") as its header lines and req->head's rule for its body.
 */
void km_conn_wait_later(struct km_conn *c, const struct km_req *req, const char *extra);

/*
 * Writes head (raw bytes, e.g. a 101 Switching Protocols), then hands the
 * socket over: c is freed, the bufferevent (callbacks cleared; what the
 * client sent after the request still in its input) is returned for the
 * new owner, and c's "ADDR:PORT" is copied into peer. The connection still
 * counts until km_listener_gone.
 */
struct bufferevent *km_conn_hand_over(struct km_conn *c, const char *head, char *peer,
                                      size_t peerlen);

/* ---- header values ---- */

/* 1 when the comma-separated header value has token (case-insensitive). */
int km_header_has_token(const char *value, const char *token);

/* t as an HTTP date ("Sun, 06 Nov 1994 08:49:37 GMT") into buf. */
void km_header_date(time_t t, char *buf, size_t len);

#endif /* KM_SERVER_CONN_H */
