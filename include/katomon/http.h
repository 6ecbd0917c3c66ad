/*
 * katomon/http.h - the non-blocking HTTP(S) client the core lends plugins
 * (libcurl's multi interface on the daemon's event loop).
 *
 * Requests run on the daemon's event loop; the callback is called exactly
 * once per request (unless the request is cancelled first), never from
 * inside km_host.http_request() itself. https:// is verified against the
 * system's CA store, or against ca_file; tls_insecure turns verification
 * off. Connections to a server are kept open and reused.
 */
#ifndef KATOMON_HTTP_H
#define KATOMON_HTTP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct km_http_req; /* opaque: one request in flight */

/* What to send. Everything is copied by http_request(); nothing is kept. */
struct km_http_request {
    const char *method;      /* "GET" when NULL */
    const char *url;         /* "http://host[:port]/path[?query]", or https:// */
    const char *unix_socket; /* when set, connect to this unix socket instead of
                                the url's host (which still fills Host:) */
    const char *const
        *headers;        /* extra "Name: value" lines, NULL-terminated; may be NULL */
    const void *body;    /* request body; may be NULL */
    size_t body_len;     /* bytes of body */
    unsigned timeout_ms; /* whole request; with on_data: the longest silence
                            between two pieces. 0: 10000 */
    size_t max_body;     /* a longer body fails the request. 0: 8 MiB */
    /*
     * Streaming: when set, body bytes (de-chunked) are handed over as they
     * arrive and not buffered; the final callback then has body_len 0.
     * Return 0 to go on, non-zero to stop the request (the callback is then
     * called with error "stopped by caller").
     */
    int (*on_data)(const char *data, size_t len, void *arg);
    /* Appended in ABI 2 (issue 13). https only: */
    const char *ca_file; /* PEM bundle of the CAs to verify the server with,
                            instead of the system store; NULL: the system's */
    int tls_insecure;    /* 1: do not verify the server's certificate at all
                            (the plugin must have logged a warning saying so) */
};

/* What came back. Borrowed: valid only during the callback. */
struct km_http_response {
    int status;               /* HTTP status code; 0 when none was received */
    const char *error;        /* NULL when a complete response was read; otherwise
                                 why not ("connection refused", "timed out after
                                 3000 ms", "TLS: certificate verify failed
                                 (...)", ...) */
    const char *body;         /* the body, NUL-terminated; "" when none */
    size_t body_len;          /* bytes of body, not counting the NUL */
    const char *content_type; /* the Content-Type header, or NULL */
};

/* Called once when the request ends, successfully or not. */
typedef void (*km_http_cb)(const struct km_http_response *resp, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_HTTP_H */
