/*
 * curl_error.c - the words for a failed libcurl transfer.
 *
 * libcurl's own texts ("Couldn't connect to server", "SSL peer certificate
 * or SSH remote key was not OK") name neither the cause an operator can
 * act on nor the layer it happened in; km_hc_error_text says "connection
 * refused", "TLS: certificate verify failed (...)", "cannot resolve HOST:
 * no such host", lower-cased to read well after "cannot ...: ". Pure
 * functions; no state.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "curl_error.h"

/* strerror, lower-cased to read well after "cannot ...: " and alike. */
static void ce_errno_text(long e, char *buf, size_t len)
{
    if (e == ENOENT)
        snprintf(buf, len, "no such file");
    else if (e == EPIPE)
        snprintf(buf, len, "connection closed by the server (broken pipe)");
    else
        snprintf(buf, len, "%s", strerror((int)e));
    buf[0] = (char)tolower((unsigned char)buf[0]);
}

void km_hc_error_text(CURLcode rc, const char *what, long os_errno, const char *unix_path,
                      char *out, size_t len)
{
    static const char no_host[] = "Could not resolve host: ";
    char sys[160];
    const char *detail = what && *what ? what : curl_easy_strerror(rc);

    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        if (os_errno) {
            ce_errno_text(os_errno, sys, sizeof sys);
            if (unix_path)
                snprintf(out, len, "%s (unix socket %s)", sys, unix_path);
            else
                snprintf(out, len, "%s", sys);
        } else {
            snprintf(out, len, "cannot connect: %s", detail);
        }
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        if (strncmp(detail, no_host, sizeof no_host - 1) == 0)
            snprintf(out, len, "cannot resolve %s: no such host",
                     detail + sizeof no_host - 1);
        else
            snprintf(out, len, "cannot resolve: %s", detail);
        return;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(out, len, "TLS: certificate verify failed (%s)", detail);
        return;
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, len, "TLS: cannot use the CA file (%s)", detail);
        return;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(out, len, "TLS: handshake failed (%s)", detail);
        return;
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        snprintf(out, len, "TLS: %s", detail);
        return;
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
        snprintf(out, len, "connection closed before the response was complete");
        return;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
        if (os_errno) {
            ce_errno_text(os_errno, out, len);
            return;
        }
        break;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_HTTP2:
    case CURLE_BAD_CONTENT_ENCODING:
        snprintf(out, len, "bad response: %s", detail);
        return;
    case CURLE_OUT_OF_MEMORY:
        snprintf(out, len, "out of memory");
        return;
    default:
        break;
    }
    snprintf(out, len, "%s", detail);
    out[0] = (char)tolower((unsigned char)out[0]);
}
