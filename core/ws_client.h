/*
 * ws_client.h - outbound WebSocket connections (the plugins' ws_open verbs,
 * katomon/websocket.h), on the loop's one libcurl multi handle.
 *
 * libcurl resolves, connects and does the TLS handshake (a connect-only
 * transfer of core/http_connect.c: CONNECT_ONLY=1, since Debian 12's 7.88
 * has no WebSocket support of its own for CONNECT_ONLY=2); then this
 * module sends the Upgrade request with curl_easy_send, reads the 101 with
 * curl_easy_recv (checking Sec-WebSocket-Accept), watches the socket
 * (CURLINFO_ACTIVESOCKET) with libevent, and frames with wslay's event API
 * in client mode. Masks and keys come from OpenSSL's CSPRNG (RAND_bytes).
 *
 * Ownership follows include/katomon/plugin.h ("new", "borrowed", "steals").
 * Not thread-safe: everything runs on the loop's thread.
 */
#ifndef KM_WS_CLIENT_H
#define KM_WS_CLIENT_H

#include <stddef.h>
#include <event2/event.h>
#include <katomon/websocket.h>

struct km_wsc; /* one connection, from km_wsc_open until on_close or km_wsc_close */

/* Where the core sends a connection's news (host.c passes them on to the
   plugin with its own handle). Same rules as katomon/websocket.h. */
struct km_wsc_handlers {
    void (*on_open)(struct km_wsc *c, void *arg);
    void (*on_message)(struct km_wsc *c, int binary, const char *data, size_t len,
                       void *arg);
    void (*on_close)(struct km_wsc *c, const struct km_ws_closed *info, void *arg);
    void *arg;
};

/* Counters for tests. */
struct km_wsc_stats {
    unsigned long live; /* opened, not yet called back nor closed */
};
extern struct km_wsc_stats km_wsc_stats;

/*
 * Starts a connection to opts->url (opts and what it points to are
 * copied; its callbacks and arg are not used: h's are). Returns a new
 * handle, valid until h->on_close has returned or km_wsc_close, or NULL
 * (bad url or header, ENOMEM) with err filled and no callback ever.
 */
struct km_wsc *km_wsc_open(struct event_base *base, const struct km_ws_client_opts *opts,
                           const struct km_wsc_handlers *h, char *err, size_t errlen);

/*
 * For the fuzz tests (tests/fuzz/fuzz_ws_client.c): a connection with no
 * socket that reads data[0..len) (borrowed until the call returns), at most
 * chunk bytes per read (0: as much as asked), as everything the peer sent
 * after the Upgrade request: the answer, which must accept the key
 * "dGhlIHNhbXBsZSBub25jZQ==" (RFC 6455 section 1.3), then frames, then
 * the end of the stream. What the client sends is dropped. Runs the
 * handshake and the frames now (h's on_open and on_message), on_close from
 * base's loop as for a real connection. max_message 0: the default.
 * Returns the handle as km_wsc_open does, or NULL (ENOMEM, or a handler
 * called km_wsc_close).
 */
struct km_wsc *km_wsc_test_stream(struct event_base *base, const void *data, size_t len,
                                  size_t chunk, size_t max_message,
                                  const struct km_wsc_handlers *h);

/*
 * Queues one text message and sends what the socket takes now. 0, or -1
 * when the connection is not open (yet, or any more) or on ENOMEM. A
 * failure to send is reported through on_close, later.
 */
int km_wsc_send_text(struct km_wsc *c, const char *text, size_t len);

/*
 * Closes now: a close frame (1000) is sent when the socket takes it at
 * once, then the connection is dropped and c freed; no callback runs
 * afterwards. Safe from c's own on_open and on_message (c is freed when
 * the callback returns); a no-op from inside its on_close.
 */
void km_wsc_close(struct km_wsc *c);

#endif /* KM_WS_CLIENT_H */
