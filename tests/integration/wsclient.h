/*
 * wsclient.h - a small WebSocket (and HTTP) client for katomon's tests,
 * on libevent + wslay.
 *
 * Everything is asynchronous on the caller's event_base, so the server
 * under test may run in the same process and loop (unit tests) or in a
 * child process (integration tests). The wait functions run the loop until
 * what they wait for happened or the timeout passed.
 *
 * Received frames are parsed by wslay's event API (client side), which
 * also answers pings (unless the client is muted) and echoes a close.
 * Frames the tests send are built here, masked, so tests can also send
 * broken ones (wsc_send_frame with odd flags, wsc_send_raw).
 */
#ifndef KM_WSCLIENT_H
#define KM_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>

/* One received message. */
struct wsc_msg {
    int opcode;           /* 1 text, 2 binary */
    char *data;           /* payload, NUL-terminated (owned) */
    size_t len;           /* payload bytes */
    struct wsc_msg *next; /* next in the client's queue */
};

struct wsc; /* opaque: one client */

/*
 * Starts a connection to 127.0.0.1:port and the handshake for `path`
 * ("/ws", "/ws?token=x"); extra_headers are whole "Name: value\r\n" lines
 * (or NULL) added to the request, replacing nothing: pass "-Origin" style
 * overrides through wsc_connect_raw. NULL on ENOMEM.
 */
struct wsc *wsc_connect(struct event_base *base, int port, const char *path,
                        const char *extra_headers);
/* Same, with the complete request given (for bad handshakes). The key the
   client expects in Sec-WebSocket-Accept is key (may be NULL). */
struct wsc *wsc_connect_raw(struct event_base *base, int port, const char *request,
                            const char *key);
/* Receive buffer size for the socket (before connecting, e.g. slow-client
   tests); 0: kernel default. Applies to later wsc_connect* calls. */
void wsc_set_rcvbuf(int bytes);

/* Runs the loop until the handshake is over. Returns the HTTP status (101
   when open, and the accept key matched), 0 on timeout, -1 on error. */
int wsc_wait_open(struct wsc *c, int timeout_ms);
/* 1 once the handshake is over (either way). */
int wsc_handshake_done(const struct wsc *c);
/* The raw HTTP response (head and body, as received) when not 101. */
const char *wsc_response(const struct wsc *c);
/* HTTP status of the handshake response (0 while none). */
int wsc_status(const struct wsc *c);

/* Sends a text message (one frame). 0 or -1. */
int wsc_send_text(struct wsc *c, const char *text);
/* Sends one frame, masked, with the given bits; payload may be NULL. */
int wsc_send_frame(struct wsc *c, int fin, int rsv, int opcode, const void *payload,
                   size_t len);
/* Sends bytes as they are. */
int wsc_send_raw(struct wsc *c, const void *data, size_t len);
/* Stops (1) or resumes (0) reading from the socket. */
void wsc_pause(struct wsc *c, int paused);
/* Muted: the client writes nothing more, not even pongs (dead peer). */
void wsc_mute(struct wsc *c, int muted);

/* Next message (caller frees with wsc_msg_free), waiting up to timeout_ms;
   NULL on timeout or when the connection closed. */
struct wsc_msg *wsc_next(struct wsc *c, int timeout_ms);
/* Next text message whose JSON "type" is type, dropping the others on the
   way; NULL on timeout/close. */
struct wsc_msg *wsc_next_type(struct wsc *c, const char *type, int timeout_ms);
void wsc_msg_free(struct wsc_msg *m);
/* Messages received and not taken yet. */
size_t wsc_pending(const struct wsc *c);
/* Messages received in all (taken or not), and their payload bytes. */
uint64_t wsc_received(const struct wsc *c);
uint64_t wsc_received_bytes(const struct wsc *c);

/* Waits for the server's close frame or the end of the connection. Returns
   1 when a close frame came (*code, *reason filled; reason owned by c), 0
   when the TCP connection ended without one, -1 on timeout. */
int wsc_wait_close(struct wsc *c, int timeout_ms, int *code, const char **reason);
/* 1 when the TCP connection is over. */
int wsc_eof(const struct wsc *c);
/* Pings the server received from... pings received from the server. */
uint64_t wsc_pings(const struct wsc *c);

void wsc_free(struct wsc *c);

/* Runs base until done(arg) is true or timeout_ms passed; returns done(arg). */
int wsc_run_until(struct event_base *base, int (*done)(void *arg), void *arg,
                  int timeout_ms);
/* Runs base for ms milliseconds. */
void wsc_run_for(struct event_base *base, int ms);

/*
 * One HTTP exchange: sends request (complete, "GET / HTTP/1.1\r\n...")
 * and reads the response. Returns the status (0 on timeout / connection
 * failure); *resp (owned by the caller, may be NULL) gets the whole
 * response, *body points into it at the body.
 */
int wsc_http(struct event_base *base, int port, const char *request, char **resp,
             const char **body, int timeout_ms);
/* GET path with optional extra header lines; same returns as wsc_http. */
int wsc_get(struct event_base *base, int port, const char *path,
            const char *extra_headers, char **resp, const char **body, int timeout_ms);

/* Raises RLIMIT_NOFILE to the hard limit (1000-client tests). */
void wsc_raise_nofile(void);

#endif /* KM_WSCLIENT_H */
