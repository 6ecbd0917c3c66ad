/*
 * curl_error.h - what a failed libcurl transfer means, in words a log
 * reader or a plugin's error field can use.
 *
 * Owns km_hc_error_text, for requests (http_client.c), connect-only
 * transfers (http_connect.c) and the WebSocket client's own sends and
 * receives (ws_client.c); callers reach it through http_client.h. Calls
 * libcurl and libc only; no state.
 */
#ifndef KM_CURL_ERROR_H
#define KM_CURL_ERROR_H

#include <stddef.h>
#include <curl/curl.h>

/*
 * A clear text for a failed transfer: "TLS: certificate verify failed
 * (...)", "connection refused", "cannot resolve HOST: ...", ... `what`
 * is libcurl's error buffer (may be ""), os_errno CURLINFO_OS_ERRNO,
 * unix_path the unix socket or NULL.
 */
void km_hc_error_text(CURLcode rc, const char *what, long os_errno, const char *unix_path,
                      char *out, size_t len);

#endif /* KM_CURL_ERROR_H */
