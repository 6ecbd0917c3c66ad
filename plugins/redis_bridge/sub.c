/*
 * sub.c - redis_bridge's subscribing half: the other hosts' messages from
 * Redis onto this bus.
 *
 * Its own connection (conn.c, role "subscribe": a connection in pub/sub
 * mode cannot PUBLISH) runs PSUBSCRIBE PREFIX:* and hands each pmessage to
 * on_message, which trusts nothing and checks, in order:
 *
 *   channel   PREFIX:HOST:TOPIC with valid names (else "garbage");
 *             HOST = this host: our own message coming back, dropped
 *             silently (not a refusal)
 *   payload   kb_envelope_verify with the shared secret and max_payload
 *             ("oversize", "bad_sig", "garbage")
 *   names     the channel's HOST and TOPIC are the envelope's ("forged":
 *             a host may not publish on another's channel, nor a signed
 *             envelope travel on a channel other than its own)
 *   topic     declared here (km_host.topic_find; else "unknown_topic")
 *   the bus   km_host.publish_remote: "schema", "kind", "stale",
 *             "hosts_full", "other" by its error code
 *
 * A message larger than the reader's bound never reaches on_message:
 * conn.c drops the connection while it is still arriving (on_oversize
 * counts it) and subscribes again after the backoff.
 *
 * Refusals are counted by reason (the health topic's "refused") and
 * logged once per burst: the first refusal of a reason with its detail,
 * then at most one summary line per log_interval ("N more ... refused")
 * while they keep coming; a quiet interval ends the burst. A flood of bad
 * messages costs counters, never a line per message.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <katomon/plugin.h>

#include "bridge.h"

/* A channel or detail quoted in a log line: this many bytes at most. */
#define KB_QUOTE_MAX 96

/* The health topic's names of enum kb_reason. */
static const char *const reason_names[KB_R_COUNT] = {
    "garbage", "oversize", "bad_sig", "forged",     "unknown_topic",
    "schema",  "kind",     "stale",   "hosts_full", "other",
};

/* One reason's burst of refusals. */
struct kb_burst {
    int open;      /* its first refusal was logged; the burst goes on */
    uint64_t more; /* refusals since that line or the last summary */
};

static struct kb_burst bursts[KB_R_COUNT];
static struct km_timer *summary;           /* next summary (one-shot); NULL: none */
static char pattern[KB_HOST_NAME_MAX + 3]; /* "PREFIX:*" */

const char *kb_reason_name(enum kb_reason r)
{
    return (unsigned)r < KB_R_COUNT ? reason_names[r] : "other";
}

/* ---- logging once per burst ---- */

static void on_summary(void *arg)
{
    int open = 0;

    (void)arg;
    summary = NULL; /* one-shot: the host frees it after this */
    for (int r = 0; r < KB_R_COUNT; r++) {
        struct kb_burst *b = &bursts[r];
        if (!b->open)
            continue;
        if (!b->more) { /* a quiet interval: the burst is over */
            b->open = 0;
            continue;
        }
        kb.host->log(kb.ctx, KM_LOG_WARNING,
                     "%llu more messages from Redis refused (%s) in the last %g s",
                     (unsigned long long)b->more, kb_reason_name((enum kb_reason)r),
                     kb.log_interval);
        b->more = 0;
        open = 1;
    }
    if (open && !kb.stopping)
        summary = kb.host->timer_add(kb.ctx, kb.log_interval, 0, on_summary, NULL);
}

/* Counts one refusal; logs it when it starts a burst. */
static void refuse(enum kb_reason why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void refuse(enum kb_reason why, const char *fmt, ...)
{
    struct kb_burst *b = &bursts[why];
    char detail[512];
    va_list ap;

    kb.r.refused[why]++;
    if (b->open) {
        b->more++;
        return;
    }
    b->open = 1;
    b->more = 0;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    kb.host->log(kb.ctx, KM_LOG_WARNING,
                 "refused a message from Redis (%s): %s (counted in redis_bridge's "
                 "refused; more of these are summed up every %g s)",
                 kb_reason_name(why), detail, kb.log_interval);
    if (!summary)
        summary = kb.host->timer_add(kb.ctx, kb.log_interval, 0, on_summary, NULL);
    kb_health_changed(); /* once per burst, like the line */
}

/* Untrusted bytes for a log line: at most KB_QUOTE_MAX, anything but
   printable ASCII as '?', "..." when cut. Returns out. */
static const char *quote(const char *s, size_t n, char out[KB_QUOTE_MAX + 4])
{
    size_t i, m = n < KB_QUOTE_MAX ? n : KB_QUOTE_MAX;

    for (i = 0; i < m; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    if (m < n)
        memcpy(out + i, "...", 3), i += 3;
    out[i] = '\0';
    return out;
}

/* ---- messages ---- */

/* What the bus's refusal means, for the log line (the core's strerror
   may predate these codes). */
static const char *bus_why(int rc)
{
    switch (rc) {
    case KM_ESCHEMA:
        return "the body does not match the topic's type";
    case KM_EKIND:
        return "the kind (state or event) is not the topic's";
    case KM_ESTALE:
        return "an older epoch than that host's, or an event seq it already sent";
    case KM_EFULL:
        return "a new host past [core] max_hosts";
    default:
        return kb.host->strerror(rc);
    }
}

static enum kb_reason bus_reason(int rc)
{
    switch (rc) {
    case KM_ESCHEMA:
        return KB_R_SCHEMA;
    case KM_EKIND:
        return KB_R_KIND;
    case KM_ESTALE:
        return KB_R_STALE;
    case KM_EFULL:
        return KB_R_HOSTS_FULL;
    default:
        return KB_R_OTHER;
    }
}

static void on_message(const char *channel, size_t channel_len, const char *payload,
                       size_t len)
{
    char host[KB_HOST_NAME_MAX + 1], topic[KB_TOPIC_NAME_MAX + 1];
    char q[KB_QUOTE_MAX + 4], err[256];
    struct kb_envelope e;
    struct km_remote remote;
    struct km_topic *t;
    int rc;

    if (kb.stopping)
        return;
    if (kb_channel_split(channel, channel_len, kb.prefix, host, topic) < 0) {
        refuse(KB_R_GARBAGE, "channel '%s' is not %s:HOST:TOPIC with valid names",
               quote(channel, channel_len, q), kb.prefix);
        return;
    }
    if (strcmp(host, kb.host_name) == 0)
        return; /* our own, back from Redis */
    rc = kb_envelope_verify(payload, len, kb.secret, kb.secret_len, kb.max_payload, &e,
                            err, sizeof err);
    if (rc < 0) {
        refuse(rc == KB_EV_SIZE  ? KB_R_OVERSIZE
               : rc == KB_EV_SIG ? KB_R_BAD_SIG
                                 : KB_R_GARBAGE,
               "on %s: %s", quote(channel, channel_len, q), err);
        return;
    }
    if (strcmp(e.host, host) != 0 || strcmp(e.topic, topic) != 0) {
        refuse(KB_R_FORGED, "on %s: the envelope says host %s, topic %s",
               quote(channel, channel_len, q), e.host, e.topic);
        json_decref(e.body);
        return;
    }
    if (!(t = kb.host->topic_find(kb.ctx, topic))) {
        refuse(KB_R_UNKNOWN_TOPIC,
               "on %s: no topic %s here (declare it: load its plugin, with "
               "collect = false on an edge)",
               quote(channel, channel_len, q), topic);
        json_decref(e.body);
        return;
    }
    remote =
        (struct km_remote){.host = e.host,
                           .kind = e.kind == KB_EVENT ? KM_TOPIC_EVENT : KM_TOPIC_STATE,
                           .epoch = e.epoch,
                           .seq = e.seq,
                           .time_us = e.time};
    rc = kb.host->publish_remote(kb.ctx, t, e.body, &remote); /* steals the body */
    if (rc == KM_OK) {
        kb.r.received++;
        return;
    }
    if (e.kind == KB_EVENT)
        refuse(bus_reason(rc), "host %s, topic %s, epoch %lld, seq %llu: %s", e.host,
               topic, (long long)e.epoch, (unsigned long long)e.seq, bus_why(rc));
    else
        refuse(bus_reason(rc), "host %s, topic %s, epoch %lld: %s", e.host, topic,
               (long long)e.epoch, bus_why(rc));
}

static void on_oversize(size_t held)
{
    refuse(KB_R_OVERSIZE,
           "a message of more than %zu bytes was arriving (max_payload %zu plus the "
           "envelope): the subscription is dropped and made again",
           held, kb.max_payload);
}

/* ---- start/stop ---- */

int kb_sub_start(const char *url, double timeout, double reconnect_min,
                 double reconnect_max, char *err, size_t errlen)
{
    struct kb_conn_conf cc = {
        .role = "subscribe",
        .timeout = timeout,
        .reconnect_min = reconnect_min,
        .reconnect_max = reconnect_max,
        .pattern = pattern,
        /* the channel, the RESP framing and the envelope around max_payload */
        .max_held = kb.max_payload + KB_ENVELOPE_OVERHEAD,
        .on_change = kb_health_changed,
        .on_message = on_message,
        .on_oversize = on_oversize,
    };

    memset(bursts, 0, sizeof bursts);
    summary = NULL;
    snprintf(pattern, sizeof pattern, "%s:*", kb.prefix);
    kb.sconn = kb_conn_new(url, &cc, err, errlen);
    return kb.sconn ? 0 : -1;
}

void kb_sub_stop(void)
{
    kb_conn_free(kb.sconn);
    kb.sconn = NULL;
    if (summary)
        kb.host->timer_del(kb.ctx, summary);
    summary = NULL;
}
