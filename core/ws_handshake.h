/*
 * ws_handshake.h - the WebSocket opening handshake's keys (RFC 6455
 * section 4): checking a client's Sec-WebSocket-Key and computing the
 * server's Sec-WebSocket-Accept.
 *
 * Owns only the key arithmetic; the rest of the upgrade (method, version,
 * Upgrade/Connection headers, Origin, authentication, the 101 response)
 * is the HTTP server's (core/server_route.c, km_router_ws). SHA-1 and base64
 * come from OpenSSL's libcrypto. Calls no other core file.
 */
#ifndef KM_WS_HANDSHAKE_H
#define KM_WS_HANDSHAKE_H

/* Characters of a Sec-WebSocket-Accept value (base64 of a 20-byte SHA-1). */
#define KM_WS_ACCEPT_LEN 28

/* 1 when key (borrowed; NULL is fine) is a valid Sec-WebSocket-Key: the
   base64 of 16 bytes, 24 characters ending in "==". Else 0. */
int km_ws_key_valid(const char *key);

/*
 * Sec-WebSocket-Accept for key (borrowed): base64(SHA-1(key + RFC 6455's
 * GUID)), KM_WS_ACCEPT_LEN characters and a NUL into out. Returns 0, or -1
 * when libcrypto failed (out is then "", which every client refuses).
 */
int km_ws_accept_key(const char *key, char out[KM_WS_ACCEPT_LEN + 1]);

#endif /* KM_WS_HANDSHAKE_H */
