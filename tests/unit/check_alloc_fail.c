/*
 * check_alloc_fail.c - allocation failure (issue 17, point 5), in the style
 * of jansson's and sqlite's malloc-failure tests.
 *
 * Each scenario is a run of real work: the bus (declare, subscribe,
 * publish, replay, remote hosts, the cached JSON text), the WebSocket hub
 * (attach over a real socketpair, ping, katomon/1 subscribe with since
 * replay, fan-out of event frames in both dialects, realtime_update
 * ticks, the compatible dialect, GET /api/v1/ws/subscriptions) and the
 * JSON encoders (ws_proto.c's messages, the REST answers of rest.c). The
 * sweep runs a scenario once without failure to count its K allocation
 * calls, then once for every N in 1..K with the Nth call failing (and, in
 * the second pass, every call after it: the cleanup paths under continued
 * failure). For each N:
 *
 *   - no crash (ASan in the sanitizer build catches the use of a NULL or a
 *     freed block);
 *   - no leak: the blocks outstanding through the wrapper (failalloc.c)
 *     are back to their starting count after the scenario's teardown;
 *   - the failure is seen: an operation reported it (returned NULL, an
 *     error code, a client was closed with 1013), or an error was logged;
 *     otherwise the run must have produced exactly what the run without
 *     failure produced (a failure absorbed by design, e.g. a hash-table
 *     resize the bus can do without) - never a silent loss;
 *   - the program keeps working: once allocation works again, the same
 *     objects serve the next operation (a publish reaches a client).
 *
 * Allocation calls made by the test itself (the bodies it publishes, its
 * own records) are kept out of the count with fa_suspend.
 *
 * make check (the short form, ~6 s of CPU under the sanitizers) sweeps
 * every N of the bus, encoders, metrics and hub scenarios with a single
 * failure, every N of the first three with sticky failures too, and
 * samples the rest: hub sticky every 7th N, hub+burst (the hub run with a
 * slow client whose burst goes through the FIFO) every 5th N single and
 * every 11th sticky. KM_ALLOC_FAIL_FULL=1 in the environment: every N
 * everywhere. KM_ALLOC_FAIL_VERBOSE=1: each N on stderr (to find the one
 * that crashed); KM_ALLOC_FAIL_DEBUG=1: katomon's debug log.
 *
 * Left out by design: the startup of the hub scenario (event_base_new,
 * km_bus_new and its topics: main exits when they fail, see
 * core/main.c) - the bus scenario sweeps km_bus_new and declare anyway -
 * and the allocations inside libevent and Jansson's parser (failalloc.c
 * says why: both crash on some of their own failures).
 *
 * Plain C, not Check: Check's own allocations (its forked runner, its
 * messages) would be counted and failed through the wrapper.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "bus.h"
#include "core.h"
#include "log.h"
#include "metrics.h"
#include "rest.h"
#include "series.h"
#include "ws.h"
#include "ws_frame.h"
#include "ws_proto.h"
#include "failalloc.h"

/* ---- assertions and the run's record ------------------------------------- */

static unsigned long cur_n;  /* the N being run (0: the run without failure) */
static int cur_sticky;       /* every call after N fails too */
static const char *cur_name; /* the scenario */
static int verbose;          /* KM_ALLOC_FAIL_VERBOSE: each N on stderr */

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond))                                                                     \
            die(__LINE__, "%s", #cond);                                                  \
    } while (0)

static void die(int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void die(int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "FAIL %s:%d: scenario %s, N %lu%s: ", __FILE__, line,
            cur_name ? cur_name : "-", cur_n, cur_sticky ? " (sticky)" : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* What one run saw. */
struct run {
    int reported;     /* an operation reported a failure to its caller */
    char trace[4096]; /* what the armed part produced, in order */
    size_t tlen;      /* bytes used in trace */
};

static struct run *R; /* the run in progress */
static int tracing;   /* in the armed part: trace() records */
static int logged;    /* error lines logged during the run */

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    va_list ap;
    if (!tracing)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(R->trace + R->tlen, sizeof R->trace - R->tlen, fmt, ap);
    va_end(ap);
    if (n > 0)
        R->tlen += (size_t)n < sizeof R->trace - R->tlen ? (size_t)n
                                                         : sizeof R->trace - R->tlen - 1;
}

/* An operation said it failed: recorded, and in the trace. */
static void reported(const char *what)
{
    R->reported = 1;
    trace("!%s;", what);
}

static void log_hook(enum km_log_level level, const char *line, void *arg)
{
    (void)arg;
    if (level <= KM_LOG_WARNING || strstr(line, "out of memory"))
        logged++;
}

/* The armed part starts here: the plan of the sweep takes effect. */
static void arm(void)
{
    fa_arm(cur_n, cur_sticky);
    tracing = 1;
}

/* Allocation works again: what follows is the recovery, not traced. */
static void disarm(void)
{
    fa_disarm();
    tracing = 0;
}

/* JSON built by the test (not counted). */
static json_t *J(const char *text)
{
    fa_suspend(1);
    json_t *j = json_loads(text, 0, NULL);
    fa_suspend(-1);
    CHECK(j != NULL);
    return j;
}

/* The shape of a JSON value: its nodes counted (values differ between runs,
   e.g. times; a key or an item lost to ENOMEM changes the count). */
static size_t shape(json_t *j)
{
    size_t n = 1, i;
    const char *k;
    json_t *v;

    if (json_is_object(j))
        json_object_foreach(j, k, v) n += shape(v);
    else if (json_is_array(j))
        json_array_foreach(j, i, v) n += shape(v);
    return n;
}

/* ---- the bus ------------------------------------------------------------- */

/* A subscriber that records what it is given (topic, host, seq, text). */
static void bus_rec_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    size_t len = 0;
    const char *text = km_msg_text(m, &len);
    (void)arg;
    if (!text) {
        reported("msg_text");
        return;
    }
    trace("%s@%d#%llu=%.*s;", km_topic_name(t), km_msg_host(m),
          (unsigned long long)km_msg_seq(m), (int)len, text);
}

static int bus_recovered;
static void bus_count_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)m;
    (void)arg;
    bus_recovered++;
}

static void pub_check(struct km_topic *t, const char *body, const char *what)
{
    int rc = km_bus_publish(t, J(body), NULL);
    if (rc == KM_ENOMEM)
        reported(what);
    else
        CHECK(rc == KM_OK);
}

static void scn_bus(void)
{
    static const struct km_field sev_schema[] = {
        {.name = "n", .kind = KM_INTEGER, .flags = KM_F_REQUIRED},
        {0},
    };
    int err = 0;

    arm(); /* everything: startup included (km_bus_new's failure is fatal
              to the daemon, reported as NULL) */
    struct km_bus *bus = km_bus_new();
    if (!bus) {
        reported("bus_new");
        disarm();
        bus = km_bus_new();
        CHECK(bus != NULL);
        km_bus_free(bus);
        return;
    }
    struct km_topic_def dstate = {
        .name = "state_a", .kind = KM_TOPIC_STATE, .description = "a state topic"};
    struct km_topic_def devent = {.name = "ev_b",
                                  .kind = KM_TOPIC_EVENT,
                                  .ring_size = 4,
                                  .schema = sev_schema,
                                  .description = "an event topic"};
    /* a subscription made before its topic is declared */
    struct km_sub *early = km_bus_subscribe(bus, "ev_b", bus_rec_cb, NULL, NULL);
    if (!early)
        reported("subscribe early");
    struct km_topic *ts = km_bus_declare(bus, &dstate, NULL, &err);
    if (!ts) {
        CHECK(err == KM_ENOMEM);
        reported("declare state");
    }
    struct km_topic *te = km_bus_declare(bus, &devent, NULL, &err);
    if (!te) {
        CHECK(err == KM_ENOMEM);
        reported("declare event");
    }
    /* more topics than the table's first size: the rehash path */
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "extra_%d", i);
        struct km_topic_def d = {.name = name,
                                 .kind = i % 2 ? KM_TOPIC_EVENT : KM_TOPIC_STATE};
        if (!km_bus_declare(bus, &d, NULL, &err)) {
            CHECK(err == KM_ENOMEM);
            reported("declare extra");
        }
    }
    if (ts)
        pub_check(ts, "{\"v\":1,\"s\":\"x\"}", "publish state");
    struct km_sub *wild =
        km_bus_subscribe_ex(bus, "*", bus_rec_cb, NULL, NULL, KM_SUB_HOSTS);
    if (!wild)
        reported("subscribe *");
    if (te) {
        for (int i = 1; i <= 6; i++) {
            char body[64];
            snprintf(body, sizeof body, "{\"n\":%d,\"pad\":[1,2,3]}", i);
            pub_check(te, body, "publish event");
        }
        /* refused by the schema: logged, never stored */
        int was = logged;
        CHECK(km_bus_publish(te, J("{\"n\":\"x\"}"), NULL) == KM_ESCHEMA);
        logged = was; /* that warning is not an allocation failure's */
        int rc = km_bus_replay(te, 0, bus_rec_cb, NULL);
        if (rc == KM_ENOMEM)
            reported("replay");
        else
            trace("replay=%d;", rc);
    }
    if (ts) {
        struct km_remote r = {
            .host = "peer1", .kind = KM_TOPIC_STATE, .epoch = 1000, .time_us = 5};
        int rc = km_bus_publish_remote(ts, J("{\"v\":2}"), &r);
        if (rc == KM_ENOMEM)
            reported("publish remote");
        else
            CHECK(rc == KM_OK);
    }
    if (te) {
        struct km_remote r = {.host = "peer2",
                              .kind = KM_TOPIC_EVENT,
                              .epoch = 1000,
                              .seq = 7,
                              .time_us = 5};
        int rc = km_bus_publish_remote(te, J("{\"n\":70}"), &r);
        if (rc == KM_ENOMEM)
            reported("publish remote event");
        else
            CHECK(rc == KM_OK);
        int h = km_bus_host_find(bus, "peer2");
        if (h > 0) {
            rc = km_bus_replay_host(te, h, 0, bus_rec_cb, NULL);
            if (rc == KM_ENOMEM)
                reported("replay host");
            else
                trace("replay_host=%d;", rc);
        }
    }
    json_t *sj = ts ? km_topic_schema_json(te ? te : ts) : NULL;
    if (ts && !sj)
        reported("schema_json");
    json_decref(sj);
    km_bus_unsubscribe(early);

    /* allocation works again: the same bus serves */
    disarm();
    if (!ts)
        CHECK((ts = km_bus_declare(bus, &dstate, NULL, &err)) != NULL);
    if (!te)
        CHECK((te = km_bus_declare(bus, &devent, NULL, &err)) != NULL);
    bus_recovered = 0;
    struct km_sub *s2 = km_bus_subscribe(bus, "ev_b", bus_count_cb, NULL, NULL);
    CHECK(s2 != NULL);
    CHECK(km_bus_publish(te, J("{\"n\":100}"), NULL) == KM_OK);
    CHECK(km_bus_publish(ts, J("{\"v\":100}"), NULL) == KM_OK);
    CHECK(bus_recovered == 1);
    size_t len;
    CHECK(km_msg_text(km_topic_latest(ts), &len) != NULL);
    km_bus_unsubscribe(s2);
    km_bus_unsubscribe(wild);
    km_bus_free(bus);
}

/* ---- the hub, over real sockets ------------------------------------------- */

/* The test's end of one connection: a plain non-blocking socket. */
struct peer {
    int fd;                  /* our end of the socketpair; -1 none */
    unsigned char in[65536]; /* bytes read, not yet parsed */
    size_t inlen;            /* bytes in `in` */
    int closed;              /* a close frame or EOF came */
    int close_code;          /* its code (0: none or EOF) */
    int gone;                /* the hub's gone callback ran */
    int msgs;                /* text messages received */
    char last[1024];         /* the last text message (truncated) */
    int quiet;               /* count text messages, do not trace them */
};

static struct km_core hcore;
static struct km_ws *hws;
static struct km_topic *h_sev, *h_alerts, *h_custom, *h_metrics;

static void gone_cb(void *arg)
{
    ((struct peer *)arg)->gone = 1;
}

/* Runs the loop until it has nothing to do (bounded: it never blocks). */
static void pump(void)
{
    for (int i = 0; i < 8; i++)
        event_base_loop(hcore.base, EVLOOP_NONBLOCK);
}

/* Parses the server's frames (unmasked) read so far. Text messages go to
   the trace by their "type"; a close frame by its code. */
static void peer_parse(struct peer *p)
{
    for (;;) {
        if (p->inlen < 2)
            return;
        int op = p->in[0] & 0x0f;
        size_t len = p->in[1] & 0x7f, hl = 2;
        if (len == 126) {
            if (p->inlen < 4)
                return;
            len = (size_t)p->in[2] << 8 | p->in[3];
            hl = 4;
        } else if (len == 127) {
            if (p->inlen < 10)
                return;
            len = 0;
            for (int i = 2; i < 10; i++)
                len = len << 8 | p->in[i];
            hl = 10;
        }
        CHECK(hl + len <= sizeof p->in);
        if (p->inlen < hl + len)
            return;
        const char *pl = (const char *)p->in + hl;
        if (op == 1) {
            const char *t = memmem(pl, len, "\"type\":\"", 8);
            int tl = 0;
            if (t) {
                t += 8;
                while (t + tl < pl + len && t[tl] != '"')
                    tl++;
            }
            p->msgs++;
            snprintf(p->last, sizeof p->last, "%.*s", (int)len, pl);
            if (!p->quiet)
                trace("%.*s;", tl, t ? t : "");
            /* the client was told (Jansson may call its own ENOMEM bad_json) */
            if (tl == 5 && memcmp(t, "error", 5) == 0 && memmem(pl, len, "bad_json", 8))
                reported("bad_json reply");
        } else if (op == 8) {
            p->closed = 1;
            p->close_code =
                len >= 2 ? (unsigned char)pl[0] << 8 | (unsigned char)pl[1] : 0;
            trace("close%d;", p->close_code);
            if (p->close_code == 1013)
                reported("close 1013");
        }
        memmove(p->in, p->in + hl + len, p->inlen - hl - len);
        p->inlen -= hl + len;
    }
}

/* Reads what came (parsing as it goes: the buffer holds a few frames). */
static void peer_read(struct peer *p)
{
    pump();
    while (p->fd >= 0) {
        peer_parse(p);
        CHECK(p->inlen < sizeof p->in); /* a frame larger than the buffer */
        ssize_t n = read(p->fd, p->in + p->inlen, sizeof p->in - p->inlen);
        if (n > 0) {
            p->inlen += (size_t)n;
            continue;
        }
        if (n == 0 && !p->closed) {
            p->closed = 1;
            trace("eof;");
        }
        break;
    }
}

/* Sends one masked text frame (the peer is a client). */
static void peer_send(struct peer *p, const char *text)
{
    unsigned char buf[1024];
    size_t len = strlen(text), o = 0;
    const unsigned char key[4] = {1, 2, 3, 4};

    CHECK(len < sizeof buf - 8);
    if (p->fd < 0 || p->closed)
        return;
    buf[o++] = 0x81;
    if (len < 126) {
        buf[o++] = (unsigned char)(0x80 | len);
    } else {
        buf[o++] = 0x80 | 126;
        buf[o++] = (unsigned char)(len >> 8);
        buf[o++] = (unsigned char)len;
    }
    memcpy(buf + o, key, 4);
    o += 4;
    for (size_t i = 0; i < len; i++)
        buf[o + i] = (unsigned char)text[i] ^ key[i & 3];
    o += len;
    /* a socketpair takes it whole or fails (EPIPE once the hub closed) */
    if (send(p->fd, buf, o, MSG_NOSIGNAL) != (ssize_t)o)
        p->closed = 1;
    peer_read(p);
}

/* Attaches a new connection; 0, or -1 (reported) when the hub could not. */
static int peer_attach(struct peer *p)
{
    int sv[2];

    memset(p, 0, sizeof *p);
    p->fd = -1;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    evutil_make_socket_nonblocking(sv[0]);
    struct bufferevent *bev =
        bufferevent_socket_new(hcore.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(sv[0]);
        close(sv[1]);
        reported("bufferevent_socket_new");
        return -1;
    }
    if (km_ws_attach(hws, bev, "socketpair", gone_cb, p) != 0) {
        close(sv[1]);
        reported("attach");
        return -1;
    }
    p->fd = sv[1];
    return 0;
}

static void peer_free(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static struct km_topic *hdeclare(const char *name, enum km_topic_kind kind)
{
    struct km_topic_def def = {.name = name, .kind = kind, .ring_size = 8};
    int err = 0;
    struct km_topic *t = km_bus_declare(hcore.bus, &def, NULL, &err);
    CHECK(t != NULL);
    return t;
}

static void hpub(struct km_topic *t, const char *body)
{
    int rc = km_bus_publish(t, J(body), NULL);
    if (rc == KM_ENOMEM)
        reported("publish");
    else
        CHECK(rc == KM_OK);
}

static const struct km_ws_limits hlim = {
    .update_interval = 3600, /* ticks are run by hand: km_ws_tick */
    .max_queue_bytes = 1024 * 1024,
    .compatible_aggregate = 1, /* compatible clients see the remote host too */
};

/* Events in the burst at the slow client, and their size: more than the
   socket takes at once (the FIFO and the pump into libevent work), less
   than max_queue_bytes (no 1008). */
static int hub_burst; /* scn_hub adds the slow client and its burst */

#define BURST   48
#define BURST_B 10000

static void scn_hub(void)
{
    struct peer a, b, c, d;
    struct km_topic *h_bulk;
    static char big[BURST_B + 32];

    /* setup, not swept: the loop, the bus and its topics (startup) */
    hcore.base = event_base_new();
    CHECK(hcore.base != NULL);
    hcore.bus = km_bus_new();
    CHECK(hcore.bus != NULL);
    h_metrics = hdeclare("metrics", KM_TOPIC_STATE);
    hdeclare("host", KM_TOPIC_STATE);
    h_sev = hdeclare("session_events", KM_TOPIC_EVENT);
    h_alerts = hdeclare("system_alerts", KM_TOPIC_EVENT);
    h_custom = hdeclare("custom", KM_TOPIC_EVENT);
    CHECK(km_bus_publish(h_sev,
                         J("{\"event_type\":\"session_created\",\"timestamp\":"
                           "\"t\",\"data\":{\"id\":1}}"),
                         NULL) == KM_OK);
    CHECK(km_bus_publish(h_custom, J("{\"k\":1}"), NULL) == KM_OK);
    CHECK(km_bus_publish(h_metrics, J("{\"requests\":1}"), NULL) == KM_OK);
    h_bulk = hdeclare("bulk", KM_TOPIC_EVENT);
    /* a remote host's values: the katomon/1 "hosts" view, the compatible
       aggregate */
    struct km_remote rs = {
        .host = "peer1", .kind = KM_TOPIC_STATE, .epoch = 7, .time_us = 5};
    CHECK(km_bus_publish_remote(h_metrics,
                                J("{\"requests\":5,\"list\":[{\"name\":"
                                  "\"kato\"}]}"),
                                &rs) == KM_OK);

    arm();
    hws = km_ws_new(&hcore, &hlim);
    if (!hws) {
        reported("ws_new");
        disarm();
        CHECK((hws = km_ws_new(&hcore, &hlim)) != NULL);
    }
    /* a: katomon/1 with a replay */
    if (peer_attach(&a) == 0) {
        peer_send(&a, "ping");
        peer_send(&a, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                      "\"subscriptions\":[\"metrics\",\"session_events\","
                      "\"system_alerts\",\"custom\",\"nosuch\"],"
                      "\"since\":{\"session_events\":0,\"custom\":0}}");
    }
    /* b: the compatible dialect (the original frontend) */
    if (peer_attach(&b) == 0) {
        peer_send(&b, "{\"type\":\"subscribe\",\"subscriptions\":[\"system_alerts\"]}");
        peer_send(&b, "{\"type\":\"subscribe\",\"subscriptions\":[\"metrics\","
                      "\"session_events\"]}");
        peer_send(&b, "{\"type\":\"subscribe\",\"protocol\":\"katomon/9\"}");
    }
    /* d: a client that does not read while a burst comes */
    memset(&d, 0, sizeof d);
    d.fd = -1;
    if (hub_burst && peer_attach(&d) == 0) {
        d.quiet = 1;
        peer_send(&d, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                      "\"subscriptions\":[\"bulk\"]}");
        d.msgs = 0;
    }
    /* fan-out: one event per kind of frame */
    hpub(h_sev, "{\"event_type\":\"session_ended\",\"timestamp\":\"t\",\"data\":{}}");
    hpub(h_alerts, "{\"alert_type\":\"container_down\",\"severity\":\"critical\","
                   "\"message\":\"m\",\"timestamp\":\"t\",\"state\":\"firing\"}");
    hpub(h_custom, "{\"k\":2}");
    hpub(h_metrics, "{\"requests\":2}");
    /* a remote alert batch: "[peer1] " and the resolved one as "info" for
       the compatible client (aggregate), "host" and "epoch" for katomon/1 */
    struct km_remote re = {
        .host = "peer1", .kind = KM_TOPIC_EVENT, .epoch = 7, .seq = 1, .time_us = 5};
    int rrc = km_bus_publish_remote(
        h_alerts,
        J("{\"alerts\":[{\"level\":\"warning\",\"message\":\"w\",\"state\":"
          "\"resolved\"},{\"level\":\"error\",\"message\":\"e\",\"name\":"
          "\"n\"}],\"timestamp\":\"t\"}"),
        &re);
    if (rrc == KM_ENOMEM)
        reported("publish remote");
    else
        CHECK(rrc == KM_OK);
    km_ws_tick(hws);
    peer_read(&a);
    peer_read(&b);
    /* the burst, then d reads it all */
    memset(big, 'x', BURST_B);
    for (int i = 0; hub_burst && i < BURST; i++) {
        fa_suspend(1);
        json_t *body = json_pack("{s:i, s:s}", "i", i, "pad", big);
        fa_suspend(-1);
        CHECK(body != NULL);
        int rc = km_bus_publish(h_bulk, body, NULL);
        if (rc == KM_ENOMEM)
            reported("publish bulk");
        else
            CHECK(rc == KM_OK);
    }
    if (hub_burst && cur_n == 0) {
        /* the run without failure proves the burst went through the FIFO
           (km_client_q_grow, the pump), not only the send() fast path */
        fa_suspend(1);
        json_t *cl = km_ws_clients_json(hws);
        fa_suspend(-1);
        json_int_t most = 0;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(cl, "clients"), i, e)
        {
            json_int_t q = json_integer_value(json_object_get(e, "queued_frames"));
            most = q > most ? q : most;
        }
        json_decref(cl);
        if (most <= 16)
            die(__LINE__, "the burst queued %lld frames at most: the FIFO never grew",
                (long long)most);
    }
    for (int i = 0; i < 1000 && d.fd >= 0 && !d.closed && d.msgs < BURST; i++)
        peer_read(&d);
    trace("d:%d;", d.msgs);
    if (hub_burst && cur_n == 0)
        CHECK(d.msgs == BURST && !d.closed); /* the burst arrived whole */
    /* a compatible client's request lost to ENOMEM inside Jansson's lexer
       looks like bad JSON: dropped (the original frontend re-sends its
       subscribes on every render), counted, logged once per client */
    struct km_ws_stats st;
    km_ws_get_stats(hws, &st);
    if (st.compat_ignored)
        reported("compat request dropped");
    /* GET /api/v1/ws/subscriptions */
    json_t *cj = km_ws_clients_json(hws);
    if (!cj)
        reported("clients_json");
    else
        trace("clients_json:%zu;", shape(cj));
    json_decref(cj);

    /* allocation works again: the hub serves a new client, and the old
       ones if they are still open */
    disarm();
    CHECK(peer_attach(&c) == 0);
    peer_send(&c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                  "\"subscriptions\":[\"custom\"]}");
    CHECK(c.msgs >= 1 && strstr(c.last, "subscription_ack"));
    CHECK(km_bus_publish(h_custom, J("{\"k\":3}"), NULL) == KM_OK);
    peer_read(&c);
    peer_read(&a);
    CHECK(strstr(c.last, "\"k\":3") != NULL);
    if (a.fd >= 0 && !a.closed)
        CHECK(strstr(a.last, "\"k\":3") != NULL);
    peer_send(&c, "ping");
    CHECK(strstr(c.last, "heartbeat") != NULL);

    km_ws_free(hws);
    hws = NULL;
    pump();
    peer_free(&a);
    peer_free(&b);
    peer_free(&c);
    peer_free(&d);
    km_bus_free(hcore.bus);
    event_base_free(hcore.base);
    memset(&hcore, 0, sizeof hcore);
}

/* ---- the JSON encoders ------------------------------------------------------ */

/* Encodes an event for both dialects, as the hub does. */
static void enc_event_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    (void)t;
    (void)arg;
    for (int d = 0; d < 2; d++) {
        struct km_tb tb = {0};
        int shared = km_ws_encode_event(&tb, m, (enum km_ws_dialect)d);
        struct km_frame *f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_EVENT);
        if (!f) {
            reported("encode_event");
            continue;
        }
        /* lengths, not text: the texts hold publish times */
        trace("ev%d:%d:%zu;", d, shared, f->len);
        km_frame_unref(f);
    }
}

static void scn_encoders(void)
{
    struct km_core core = {0};
    struct km_tb tb = {0};

    core.bus = km_bus_new();
    CHECK(core.bus != NULL);
    core.cfg = km_config_defaults();
    CHECK(core.cfg != NULL);
    struct km_topic *sev, *alerts, *custom, *metrics;
    hcore = core; /* hdeclare's bus */
    metrics = hdeclare("metrics", KM_TOPIC_STATE);
    hdeclare("containers", KM_TOPIC_STATE);
    sev = hdeclare("session_events", KM_TOPIC_EVENT);
    alerts = hdeclare("system_alerts", KM_TOPIC_EVENT);
    custom = hdeclare("custom", KM_TOPIC_EVENT);
    CHECK(km_bus_publish(sev,
                         J("{\"event_type\":\"session_created\",\"timestamp\":"
                           "\"t\",\"data\":{\"id\":1}}"),
                         NULL) == KM_OK);
    CHECK(km_bus_publish(alerts,
                         J("{\"alert_type\":\"x\",\"severity\":\"warning\","
                           "\"message\":\"m\",\"timestamp\":\"t\"}"),
                         NULL) == KM_OK);
    CHECK(km_bus_publish(custom, J("{\"k\":[1,2.5,\"s\"]}"), NULL) == KM_OK);
    CHECK(km_bus_publish(metrics, J("{\"cpu\":0.07}"), NULL) == KM_OK);
    struct km_remote r = {
        .host = "peer1", .kind = KM_TOPIC_STATE, .epoch = 9, .time_us = 5};
    CHECK(km_bus_publish_remote(metrics, J("{\"cpu\":0.5}"), &r) == KM_OK);

    arm();
    /* the shared texts: every retained event in each dialect (handed over
       by a replay, as the hub gets them), realtime_update in each view */
    struct km_topic *evs[] = {sev, alerts, custom};
    for (int i = 0; i < 3; i++) {
        int rc = km_bus_replay(evs[i], 0, enc_event_cb, NULL);
        if (rc == KM_ENOMEM)
            reported("replay");
    }
    char *names[] = {"containers", "metrics"};
    for (int view = 0; view < 3; view++) {
        int n = km_ws_encode_state(&tb, core.bus, names, 2, view == 2, view);
        struct km_frame *f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_STATE);
        if (!f)
            reported("encode_state");
        else
            trace("state%d:%d:%zu;", view, n, f->len);
        km_frame_unref(f);
    }
    json_t *j[4];
    j[0] = km_ws_heartbeat_msg();
    j[1] = km_ws_error_msg("bad_request", "detail", NULL);
    struct km_ws_gap gap = {.topic = "custom",
                            .host = "localhost",
                            .requested_since = 1,
                            .oldest_available = 3,
                            .last_seq = 5,
                            .missed = 1,
                            .reason = "not_in_ring"};
    j[2] = km_ws_replay_gap_msg(&gap);
    struct km_ws_request req;
    char code[32], detail[256];
    const char *sub = "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                      "\"subscriptions\":[\"metrics\",\"custom\",\"nosuch\"],"
                      "\"since\":{\"custom\":{\"peer1\":2,\"localhost\":1}}}";
    json_t *unknown = NULL;
    j[3] = NULL;
    if (km_ws_parse_request(sub, strlen(sub), &req, code, sizeof code, detail,
                            sizeof detail) != 0) {
        /* "out of memory" (KM_WS_NOMEM) when katomon can tell; Jansson's
           lexer reports some of its allocation failures as a syntax error
           (bad_json), which nobody can tell from the client's own */
        if (strcmp(code, "bad_json") != 0 && strcmp(detail, KM_WS_NOMEM) != 0)
            die(__LINE__, "parse_request: %s: %s", code, detail);
        reported("parse_request");
    } else {
        j[3] = km_ws_ack_msg(core.bus, &req, &unknown);
        if (!j[3])
            reported("ack");
        km_ws_request_clear(&req);
    }
    json_decref(unknown);
    for (int i = 0; i < 3; i++)
        if (!j[i])
            reported("reply msg");
    for (int i = 0; i < 4; i++) {
        if (j[i]) {
            if (km_tb_json(&tb, j[i]) != 0)
                reported("tb_json");
            json_decref(j[i]);
        }
    }
    free(tb.p);
    tb = (struct km_tb){0};
    /* REST answers */
    static const char *const paths[] = {
        "/api/v1/health",
        "/api/v1/system/metrics",
        "/api/v1/topics",
        "/api/v1/topics/metrics/latest",
        "/api/v1/hosts",
        "/api/v1/sessions/count",
        "/api/v1/system/container-stats",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        json_t *body = NULL;
        int st = km_rest_get(&core, NULL, paths[i], NULL, &body);
        if (st == 500 || !body)
            reported("rest");
        else
            trace("%s=%d:%zu;", paths[i], st, shape(body));
        json_decref(body);
    }
    disarm();
    json_t *body = NULL;
    CHECK(km_rest_get(&core, NULL, "/api/v1/topics", NULL, &body) == 200);
    json_decref(body);
    km_bus_free(core.bus);
    km_config_free(core.cfg);
    memset(&hcore, 0, sizeof hcore);
}

/* ---- the metrics text (GET /metrics) ---------------------------------------- */

static void scn_metrics(void)
{
    static const char *const names[] = {"katomon_t_cpu_percent", "katomon_t_bytes",
                                        "katomon_t_requests_total"};
    struct km_metrics_text text = {0};

    arm(); /* the registry too: km_series_reg_new fails as NULL */
    struct km_series_reg *reg = km_series_reg_new(0);
    if (!reg) {
        reported("series_reg_new");
        disarm();
        CHECK((reg = km_series_reg_new(0)) != NULL);
    }
    for (int i = 0; i < 12; i++) {
        char lab[64];
        snprintf(lab, sizeof lab, "container=\"c%d\"", i);
        struct km_series *sr =
            km_series_get(reg, names[i % 3], "Help \\ text.\nLine two.",
                          i % 3 == 2 ? KM_SERIES_COUNTER : KM_SERIES_GAUGE, lab);
        if (!sr)
            reported("series_get");
        else
            km_series_set(sr, i * 1.5, 1);
    }
    if (km_metrics_render(reg, &text) != 0) {
        CHECK(text.data == NULL);
        reported("render");
    } else {
        trace("render:%zu:%zu;", text.series, text.len);
    }
    km_metrics_text_free(&text);

    disarm();
    struct km_series *sr =
        km_series_get(reg, "katomon_t_after", "After.", KM_SERIES_GAUGE, "");
    CHECK(sr != NULL);
    km_series_set(sr, 1, 1);
    CHECK(km_metrics_render(reg, &text) == 0 && strstr(text.data, "katomon_t_after 1\n"));
    km_metrics_text_free(&text);
    km_series_reg_free(reg);
}

/* ---- the sweep ------------------------------------------------------------- */

/*
 * Runs scn without failure (K calls), then with call N failing for N in
 * 1..K, every `every`-th N (1: all). Returns K.
 */
static unsigned long sweep(const char *name, void (*scn)(void), int sticky,
                           unsigned long every)
{
    struct run ref = {0}, r;
    long base = fa_outstanding();
    unsigned long k, tried = 0, failed_runs = 0;

    cur_name = name;
    cur_n = 0;
    cur_sticky = sticky;
    R = &ref;
    logged = 0;
    scn();
    k = fa_calls();
    if (ref.reported || logged)
        die(__LINE__, "the run without failure reported one (%s)", ref.trace);
    if (fa_outstanding() != base)
        die(__LINE__, "leak without failure: %ld blocks", fa_outstanding() - base);
    CHECK(k > 0);
    for (unsigned long n = 1; n <= k; n += every) {
        cur_n = n;
        if (verbose)
            fprintf(stderr, "-- %s %s N %lu\n", name, sticky ? "sticky" : "single", n);
        memset(&r, 0, sizeof r);
        R = &r;
        logged = 0;
        scn();
        tried++;
        if (fa_outstanding() != base)
            die(__LINE__, "leak: %ld blocks outstanding after teardown",
                fa_outstanding() - base);
        if (fa_failures() == 0)
            continue; /* the path took fewer calls this time */
        failed_runs++;
        if (!r.reported && !logged && strcmp(r.trace, ref.trace) != 0)
            die(__LINE__,
                "a failure went unreported and changed the result:\n  want %s\n  got  %s",
                ref.trace, r.trace);
    }
    printf(
        "%-9s %s: K = %lu allocation calls, %lu runs (every %lu), %lu with a failure\n",
        name, sticky ? "sticky" : "single", k, tried, every, failed_runs);
    fflush(stdout);
    R = NULL;
    cur_name = NULL;
    return k;
}

int main(void)
{
    const char *full = getenv("KM_ALLOC_FAIL_FULL");
    int all = full && *full && strcmp(full, "0") != 0;

    verbose = getenv("KM_ALLOC_FAIL_VERBOSE") != NULL;
    fa_init();
    km_log_set_level(getenv("KM_ALLOC_FAIL_DEBUG") ? KM_LOG_DEBUG : KM_LOG_WARNING);
    km_log_set_hook(log_hook, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    sweep("bus", scn_bus, 0, 1);
    sweep("bus", scn_bus, 1, 1);
    sweep("encoders", scn_encoders, 0, 1);
    sweep("encoders", scn_encoders, 1, 1);
    sweep("metrics", scn_metrics, 0, 1);
    sweep("metrics", scn_metrics, 1, 1);
    sweep("hub", scn_hub, 0, 1);
    sweep("hub", scn_hub, 1, all ? 1 : 7);
    hub_burst = 1; /* the same run with a slow client and a burst through its
                      FIFO: more calls, each run dearer, so every 5th N here */
    sweep("hub+burst", scn_hub, 0, all ? 1 : 5);
    sweep("hub+burst", scn_hub, 1, all ? 1 : 11);
    libevent_global_shutdown();
    printf("ok\n");
    return 0;
}
