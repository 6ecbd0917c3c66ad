/*
 * katomon/websocket.h - the outbound WebSocket client the core lends
 * plugins (km_host.ws_open, ws_send_text, ws_close; ABI 2).
 *
 * The core connects (libcurl: name lookup, TCP, TLS for wss:// verified as
 * for https://), sends the Upgrade request, checks the 101 and its
 * Sec-WebSocket-Accept, then frames with wslay in client mode: outgoing
 * frames masked with keys from a CSPRNG, pings answered with pongs, the
 * peer's close frame answered. A plugin sees whole messages.
 *
 * Callbacks run on the daemon's event loop, never from inside ws_open,
 * ws_send_text or ws_close. For each ws_open that returned a handle,
 * on_close is called exactly once (whether or not on_open came first),
 * unless the plugin called ws_close before. After on_close returns, or
 * after ws_close, the handle is gone.
 */
#ifndef KATOMON_WEBSOCKET_H
#define KATOMON_WEBSOCKET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct km_ws; /* opaque: one outbound WebSocket connection */

/* How a connection ended. Borrowed: valid only during on_close. */
struct km_ws_closed {
    int opened;         /* on_open had been called */
    int by_peer;        /* the peer ended it: its close frame, or the end of the
                           stream (then code is 0) */
    int code;           /* code of the peer's close frame (1005 when it had
                           none); 0: no close frame came */
    const char *reason; /* the peer's close reason (may be ""), else why the
                           connection ended: "connection refused", "timed out
                           after 10000 ms", "TLS: certificate verify failed
                           (...)", "HTTP 404 instead of 101 Switching
                           Protocols", "connection closed by the peer", ... */
    int http_status;    /* the handshake was answered with this status instead
                           of 101; 0 otherwise */
};

/* What ws_open needs. Everything is copied; nothing is kept. */
struct km_ws_client_opts {
    const char *url;            /* "ws://host[:port]/path[?query]" or wss://
                                   (http:// and https:// are taken alike) */
    const char *const *headers; /* extra handshake lines "Name: value",
                                   NULL-terminated; may be NULL */
    const char *ca_file;        /* wss: PEM bundle instead of the system store */
    int tls_insecure;           /* wss: 1 = do not verify the server (the plugin
                                   must have logged a warning saying so) */
    unsigned timeout_ms;        /* lookup + connect + TLS + handshake; 0: 10000.
                                   None once open: the plugin pings if it wants
                                   to know the peer is alive */
    size_t max_message;         /* longest message accepted (longer: the core
                                   closes with 1009); 0: 1 MiB */
    /* The connection is open: messages may be sent. May be NULL. */
    void (*on_open)(struct km_ws *ws, void *arg);
    /* One whole message (text: binary 0, UTF-8 as the peer sent it).
       data is borrowed for the call and is not NUL-terminated. */
    void (*on_message)(struct km_ws *ws, int binary, const char *data, size_t len,
                       void *arg);
    /* The connection ended, or never opened (see above). Required. */
    void (*on_close)(struct km_ws *ws, const struct km_ws_closed *info, void *arg);
    void *arg; /* for the three callbacks */
};

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_WEBSOCKET_H */
