/*
 * katomon/tls.h - the TLS keys of plugins that talk https:// or wss://
 * (kato_metrics, session_events, alert_webhook, docker_stats), read the
 * same way everywhere. Header-only: no core symbols.
 *
 *   ca_file     PEM file of the CAs that sign the server's certificate,
 *               used instead of the system's store (/etc/ssl/certs)
 *   tls_verify  true (default); false skips verification, which init logs
 *               as a warning naming the plugin and the URL
 *
 * Use: put KM_TLS_CONF_KEYS in the plugin's key table, call
 * km_tls_conf_read() in init, and copy the result into each
 * km_http_request (.ca_file, .tls_insecure) or km_ws_client_opts.
 */
#ifndef KATOMON_TLS_H
#define KATOMON_TLS_H

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <katomon/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The two km_conf_key entries, for a plugin's key table. */
/* clang-format off */
#define KM_TLS_CONF_KEYS                                                                 \
    {"ca_file", KM_CONF_STRING, NULL, 0, 0,                                              \
     "PEM file of the CAs to verify the server with (https, wss); default: the "         \
     "system's store"},                                                                  \
    {"tls_verify", KM_CONF_BOOL, "true", 0, 0,                                           \
     "false: do not verify the server's certificate (https, wss; logged as a warning)"}
/* clang-format on */

/* What a plugin copies into its requests. ca_file is borrowed from the
   config (valid until the plugin is shut down). */
struct km_tls_conf {
    const char *ca_file; /* NULL: the system's store */
    int insecure;        /* 1: tls_verify = false */
};

/*
 * Reads ca_file and tls_verify of the plugin's section for talking to
 * `url`. Logs a warning naming the URL when tls_verify is false; an
 * unreadable ca_file is an error (logged). Returns 0, or -1 (init should
 * then fail).
 */
static inline int km_tls_conf_read(const struct km_host *host, struct km_ctx *ctx,
                                   const char *url, struct km_tls_conf *out)
{
    const char *ca = host->config_string(ctx, "ca_file");

    out->ca_file = ca && *ca ? ca : NULL;
    out->insecure = !host->config_bool(ctx, "tls_verify");
    if (out->ca_file && access(out->ca_file, R_OK) != 0) {
        host->log(ctx, KM_LOG_ERROR, "ca_file '%s' cannot be read: %s", out->ca_file,
                  strerror(errno));
        return -1;
    }
    if (out->insecure)
        host->log(ctx, KM_LOG_WARNING,
                  "tls_verify = false: the certificate of %s is not verified (anyone on "
                  "the way can read and change this traffic)%s",
                  url,
                  strncmp(url, "http://", 7) && strncmp(url, "ws://", 5)
                      ? ""
                      : "; the url is not https, so this changes nothing");
    return 0;
}

#ifdef __cplusplus
}
#endif
#endif /* KATOMON_TLS_H */
