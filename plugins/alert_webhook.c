/*
 * alert_webhook - posts every alert batch to a URL, for people who are not
 * looking at the dashboard.
 *
 * Body: {"text": "...", "id": "...", "timestamp": "...", "alerts": [...]}.
 * "text" holds one line per alert ("[error] Container 'kato-redis' is
 * exited"), which is what Slack and Mattermost incoming webhooks read; the
 * rest is there for programs.
 *
 * Only transitions are posted (an alert fired, escalated, de-escalated or
 * resolved): a re-send every `cooldown` while an alert holds ("repeats" >
 * 0) is left out, and a batch of re-sends only is not posted. The
 * original dashboard had no webhook; its re-sends were toasts, which
 * system_alerts still carries. A chat channel gets one line per change,
 * and the history (GET /api/v1/alerts) counts the re-sends ("repeats").
 *
 * Batches are sent one at a time, in order, from a bounded queue
 * (`max_pending`); a failed post is retried with doubling delays up to
 * `retries` times, then dropped with a log line. A full queue drops the
 * oldest batch and says so: alerts are also in the history (GET
 * /api/v1/alerts), so nothing is lost for good.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <katomon/plugin.h>
#include <katomon/tls.h>

static const struct km_conf_key wh_keys[] = {
    {"url", KM_CONF_STRING, NULL, 0, 0,
     "http:// or https:// URL to POST alerts to (required)"},
    {"timeout", KM_CONF_DOUBLE, "10", 0.1, 600, "seconds before a post is given up"},
    {"retries", KM_CONF_INT, "3", 0, 100, "attempts after the first one"},
    {"max_pending", KM_CONF_INT, "100", 1, 100000, "batches queued at most"},
    {"resolved", KM_CONF_BOOL, "true", 0, 0, "also post resolved alerts"},
    KM_TLS_CONF_KEYS,
    {NULL, 0, NULL, 0, 0, NULL},
};

/* One queued post. */
struct post {
    char *body;        /* JSON text (owned) */
    unsigned attempts; /* made so far */
    struct post *next; /* queue order */
};

static struct {
    const struct km_host *host;   /* the core */
    struct km_ctx *ctx;           /* our handle */
    char *url;                    /* target */
    struct km_tls_conf tls;       /* ca_file, tls_verify */
    unsigned timeout_ms;          /* per post */
    unsigned retries;             /* extra attempts */
    size_t max_pending;           /* queue bound */
    int resolved;                 /* post resolved alerts */
    struct post *head, *tail;     /* queue */
    size_t pending;               /* queue length */
    struct km_http_req *inflight; /* post under way */
    struct km_timer *backoff;     /* retry delay under way */
    unsigned long sent, dropped;  /* counters, for the log */
} wh;

static void send_head(void *arg);

static void pop_head(void)
{
    struct post *p = wh.head;

    wh.head = p->next;
    if (!wh.head)
        wh.tail = NULL;
    wh.pending--;
    free(p->body);
    free(p);
}

/* Drops the oldest post not under way (the head may be in flight or waiting
   for its retry, and its callback still refers to it). */
static void drop_oldest_waiting(void)
{
    struct post **link = (wh.inflight || wh.backoff) ? &wh.head->next : &wh.head;
    struct post *p = *link;

    if (!p)
        return;
    *link = p->next;
    if (wh.tail == p)
        wh.tail = link == &wh.head ? NULL : wh.head;
    wh.pending--;
    wh.dropped++;
    free(p->body);
    free(p);
}

static void on_posted(const struct km_http_response *resp, void *arg)
{
    struct post *p = wh.head;

    wh.inflight = NULL;
    if (!resp->error && resp->status >= 200 && resp->status < 300) {
        wh.sent++;
        pop_head();
    } else if (p->attempts > wh.retries) {
        wh.host->log(wh.ctx, KM_LOG_ERROR,
                     "giving up on an alert post to %s after %u tries: %s", wh.url,
                     p->attempts, resp->error ? resp->error : "HTTP error status");
        wh.dropped++;
        pop_head();
    } else {
        double delay = (double)(1u << (p->attempts < 10 ? p->attempts : 10));
        wh.host->log(wh.ctx, KM_LOG_WARNING,
                     "alert post to %s failed (%s%d); retrying in %.0f s", wh.url,
                     resp->error ? resp->error : "HTTP ", resp->error ? 0 : resp->status,
                     delay);
        wh.backoff = wh.host->timer_add(wh.ctx, delay, 0, send_head, NULL);
        return;
    }
    send_head(NULL);
}

static void send_head(void *arg)
{
    static const char *const headers[] = {"Content-Type: application/json", NULL};

    wh.backoff = NULL;
    if (!wh.head || wh.inflight)
        return;
    struct km_http_request req = {.method = "POST",
                                  .url = wh.url,
                                  .headers = headers,
                                  .body = wh.head->body,
                                  .body_len = strlen(wh.head->body),
                                  .timeout_ms = wh.timeout_ms,
                                  .ca_file = wh.tls.ca_file,
                                  .tls_insecure = wh.tls.insecure};
    wh.head->attempts++;
    wh.inflight = wh.host->http_request(wh.ctx, &req, on_posted, NULL);
    if (!wh.inflight) {
        wh.host->log(wh.ctx, KM_LOG_ERROR, "cannot post to %s; dropping an alert batch",
                     wh.url);
        wh.dropped++;
        pop_head();
    }
}

static char *render(json_t *batch)
{
    json_t *alerts = json_array();
    size_t i, len = 0;
    json_t *a;
    char text[4096];

    text[0] = '\0';
    json_array_foreach(json_object_get(batch, "alerts"), i, a)
    {
        const char *state = json_string_value(json_object_get(a, "state"));
        if (!wh.resolved && state && strcmp(state, "resolved") == 0)
            continue;
        if (json_integer_value(json_object_get(a, "repeats")) > 0)
            continue; /* a re-send: not a change */
        json_array_append(alerts, a);
        int n = snprintf(text + len, sizeof text - len, "%s[%s] %s", len ? "\n" : "",
                         json_string_value(json_object_get(a, "level")) ?: "?",
                         json_string_value(json_object_get(a, "message")) ?: "");
        if (n > 0 && (size_t)n < sizeof text - len)
            len += (size_t)n;
    }
    if (json_array_size(alerts) == 0) {
        json_decref(alerts);
        return NULL;
    }
    json_t *body = json_pack("{s:s, s:O, s:O, s:o}", "text", text, "id",
                             json_object_get(batch, "id"), "timestamp",
                             json_object_get(batch, "timestamp"), "alerts", alerts);
    char *out = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return out;
}

static void on_alerts(struct km_topic *t, struct km_msg *msg, void *arg)
{
    char *body = render(wh.host->msg_json(msg));
    struct post *p;

    if (!body)
        return;
    if (wh.pending >= wh.max_pending) {
        wh.host->log(wh.ctx, KM_LOG_WARNING,
                     "%zu alert posts pending for %s; dropping the oldest (see GET "
                     "/api/v1/alerts)",
                     wh.pending, wh.url);
        drop_oldest_waiting();
    }
    if (!(p = calloc(1, sizeof *p))) {
        free(body);
        return;
    }
    p->body = body;
    if (wh.tail)
        wh.tail->next = p;
    else
        wh.head = p;
    wh.tail = p;
    wh.pending++;
    if (!wh.backoff)
        send_head(NULL);
}

static int wh_init(struct km_ctx *ctx, const struct km_host *host)
{
    memset(&wh, 0, sizeof wh);
    wh.host = host;
    wh.ctx = ctx;
    const char *url = host->config_string(ctx, "url");
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        host->log(ctx, KM_LOG_ERROR,
                  "set url = http(s)://HOST[:PORT]/PATH in [plugin alert_webhook]");
        return -1;
    }
    if (km_tls_conf_read(host, ctx, url, &wh.tls) < 0)
        return -1;
    wh.url = strdup(url);
    wh.timeout_ms = (unsigned)(host->config_double(ctx, "timeout") * 1000);
    wh.retries = (unsigned)host->config_int(ctx, "retries");
    wh.max_pending = (size_t)host->config_int(ctx, "max_pending");
    wh.resolved = host->config_bool(ctx, "resolved");
    if (!wh.url || !host->subscribe(ctx, "system_alerts", on_alerts, NULL))
        return -1;
    return 0;
}

static void wh_shutdown(struct km_ctx *ctx)
{
    if (wh.pending)
        wh.host->log(wh.ctx, KM_LOG_WARNING, "%zu alert posts still pending at shutdown",
                     wh.pending);
    while (wh.head)
        pop_head();
    free(wh.url);
    memset(&wh, 0, sizeof wh);
}

KM_PLUGIN_DEFINE(.name = "alert_webhook", .version = "1.0",
                 .description = "posts alerts to a webhook URL (Slack-compatible text)",
                 .config = wh_keys, .init = wh_init, .shutdown = wh_shutdown);
