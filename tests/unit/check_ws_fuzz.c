/*
 * check_ws_fuzz.c - random input for the WebSocket frame reader and the
 * client request parser, and random frames against a live server
 * connection. Run under the sanitizer build (--enable-sanitizers), where
 * any out-of-bounds access, use-after-free, undefined behaviour or leak
 * fails the test.
 *
 * Reproducible: each test runs once per seed of the committed list below
 * (a Check loop test), printing the seed it uses; KM_FUZZ_SEED=N runs that
 * one seed instead (to replay a failure, or to explore: random exploration
 * at scale belongs to `make fuzz`, not to make check). KM_FUZZ_ROUNDS scales
 * the work (default 1).
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "bus.h"
#include "core.h"
#include "log.h"
#include "server.h"
#include "ws.h"
#include "ws_frame.h"
#include "ws_proto.h"
#include "wsclient.h"

/* The seeds make check runs. Append every seed that ever found a bug. */
static const unsigned committed_seeds[] = {
    1u, 20261206u,
    1796519482u, /* km_subset_wants: bsearch over an empty name list (UBSan) */
};
#define N_SEEDS (sizeof committed_seeds / sizeof committed_seeds[0])

static unsigned env_seed; /* KM_FUZZ_SEED, when set */
static int have_env_seed; /* KM_FUZZ_SEED was set: run only it */
static int rounds = 1;

/* xorshift32: reproducible across libcs */
static uint32_t rng_state;
static uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static void seed_setup(void)
{
    const char *s = getenv("KM_FUZZ_SEED");
    const char *r = getenv("KM_FUZZ_ROUNDS");
    have_env_seed = s && *s;
    env_seed = have_env_seed ? (unsigned)strtoul(s, NULL, 10) : 0;
    rounds = r ? atoi(r) : 1;
    if (rounds < 1)
        rounds = 1;
}

/* Seeds the generator for loop iteration i of test `name` and says so. */
static void seed_use(const char *name, int i)
{
    unsigned seed = have_env_seed ? env_seed : committed_seeds[i];
    rng_state = seed ? seed : 1;
    fprintf(stderr, "check_ws_fuzz: %s: KM_FUZZ_SEED=%u\n", name, seed);
}

/* ---- reader ---------------------------------------------------------------- */

/* What a message callback may do with its input: look at every byte. */
static int sink_cb(void *arg, int op, const unsigned char *data, size_t len)
{
    unsigned *sum = arg;
    for (size_t i = 0; i < len; i++)
        *sum += data[i];
    *sum += (unsigned)op;
    /* sometimes ask the reader to stop, like a client that closes */
    return (rnd() & 63) == 0;
}

/* One frame, maybe broken in one of many ways. */
static size_t fuzz_frame(unsigned char *b, size_t cap)
{
    size_t o = 0, len;
    int op = (int)(rnd() % 16);
    int masked = (rnd() % 8) != 0;

    switch (rnd() % 4) {
    case 0:
        len = rnd() % 8;
        break;
    case 1:
        len = rnd() % 200;
        break;
    case 2:
        len = rnd() % 3000;
        break;
    default:
        len = rnd() % 70000;
        break;
    }
    if (len + 14 > cap)
        len = cap - 14;
    b[o++] = (unsigned char)((rnd() % 2 ? 0x80 : 0) |
                             ((rnd() % 8 == 0) ? (rnd() & 0x70) : 0) | op);
    int form = (int)(rnd() % 3); /* 7-bit, 16-bit, 64-bit length (maybe non-minimal) */
    if (len < 126 && form == 0) {
        b[o++] = (unsigned char)((masked ? 0x80 : 0) | len);
    } else if (len < 65536 && form != 2) {
        b[o++] = (unsigned char)((masked ? 0x80 : 0) | 126);
        b[o++] = (unsigned char)(len >> 8);
        b[o++] = (unsigned char)len;
    } else {
        b[o++] = (unsigned char)((masked ? 0x80 : 0) | 127);
        uint64_t l = len;
        if (rnd() % 16 == 0)
            l |= (uint64_t)rnd() << 32; /* absurd length */
        for (int i = 7; i >= 0; i--)
            b[o++] = (unsigned char)(l >> (8 * i));
    }
    if (masked)
        for (int i = 0; i < 4; i++)
            b[o++] = (unsigned char)rnd();
    /* payload: random, or text-like */
    int texty = rnd() % 2;
    for (size_t i = 0; i < len; i++)
        b[o + i] = texty ? (unsigned char)(' ' + rnd() % 95) : (unsigned char)rnd();
    if (texty && len > 2 && rnd() % 4 == 0)
        b[o + rnd() % len] = (unsigned char)(0x80 | rnd()); /* a bad UTF-8 byte */
    return o + len;
}

START_TEST(test_fuzz_reader_random_bytes)
{
    seed_use("test_fuzz_reader_random_bytes", _i);
    static unsigned char buf[1 << 16];
    unsigned sum = 0;

    for (int iter = 0; iter < 3000 * rounds; iter++) {
        struct km_ws_reader *r = km_ws_reader_new(1 + rnd() % 100000, sink_cb, &sum);
        size_t n = rnd() % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)rnd();
        /* fed in random pieces */
        for (size_t off = 0; off < n;) {
            size_t piece = 1 + rnd() % (n - off);
            const char *reason;
            int rc = km_ws_reader_feed(r, buf + off, piece, &reason);
            ck_assert(rc == 0 || rc == KM_WS_CLOSE_PROTOCOL ||
                      rc == KM_WS_CLOSE_BAD_DATA || rc == KM_WS_CLOSE_TOO_BIG);
            if (rc)
                ck_assert_ptr_nonnull(reason);
            off += piece;
        }
        km_ws_reader_free(r);
    }
}
END_TEST

START_TEST(test_fuzz_reader_frames)
{
    seed_use("test_fuzz_reader_frames", _i);
    static unsigned char buf[1 << 20];
    unsigned sum = 0;

    for (int iter = 0; iter < 2000 * rounds; iter++) {
        size_t n = 0;
        int frames = 1 + (int)(rnd() % 12);
        for (int f = 0; f < frames && n + 70100 < sizeof buf; f++)
            n += fuzz_frame(buf + n, sizeof buf - n);
        if (n && rnd() % 4 == 0)
            buf[rnd() % n] ^= (unsigned char)(1u << (rnd() % 8)); /* a flipped bit */
        struct km_ws_reader *r = km_ws_reader_new(1 + rnd() % 80000, sink_cb, &sum);
        for (size_t off = 0; off < n;) {
            size_t piece = rnd() % 2 ? 1 + rnd() % 16 : 1 + rnd() % (n - off);
            if (piece > n - off)
                piece = n - off;
            const char *reason;
            int rc = km_ws_reader_feed(r, buf + off, piece, &reason);
            off += piece;
            if (rc)
                break;
        }
        km_ws_reader_free(r);
    }
}
END_TEST

/* ---- request parser ---------------------------------------------------------- */

static const char *const seeds[] = {
    "ping",
    "{\"type\":\"ping\"}",
    "{\"type\":\"subscribe\",\"subscriptions\":[\"metrics\",\"containers\",\"system_"
    "alerts\"]}",
    "{\"type\":\"subscribe\",\"subscriptions\":[\"session_events\"],\"since\":{\"session_"
    "events\":41}}",
    "{\"type\":\"subscribe\",\"subscriptions\":[]}",
    "{\"type\":\"subscribe\",\"subscriptions\":[\"a\",\"b\",\"a\"],\"since\":{\"a\":0,"
    "\"b\":18446744073709551615}}",
};

static const char *const tokens[] = {
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"type\"",
    "\"subscribe\"",
    "\"subscriptions\"",
    "\"since\"",
    "\"metrics\"",
    "null",
    "true",
    "-1",
    "1e999",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "9223372036854775808",
    "\"\xff\"",
    "  ",
    "\"ping\"",
    "0.5",
    "[[[[[[[[",
    "]]]]]]]]",
};

START_TEST(test_fuzz_parser)
{
    seed_use("test_fuzz_parser", _i);
    static char buf[8192];
    char code[32], detail[256];

    for (int iter = 0; iter < 20000 * rounds; iter++) {
        const char *s = seeds[rnd() % (sizeof seeds / sizeof seeds[0])];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int muts = 1 + (int)(rnd() % 6);
        for (int m = 0; m < muts; m++) {
            size_t at = n ? rnd() % (n + 1) : 0;
            switch (rnd() % 5) {
            case 0: /* flip a byte */
                if (n)
                    buf[rnd() % n] = (char)rnd();
                break;
            case 1: /* delete a run */
                if (n) {
                    size_t k = rnd() % (n - at + 1);
                    memmove(buf + at, buf + at + k, n - at - k);
                    n -= k;
                }
                break;
            case 2: { /* insert a token */
                const char *t = tokens[rnd() % (sizeof tokens / sizeof tokens[0])];
                size_t tl = strlen(t);
                if (n + tl < sizeof buf) {
                    memmove(buf + at + tl, buf + at, n - at);
                    memcpy(buf + at, t, tl);
                    n += tl;
                }
                break;
            }
            case 3: /* duplicate a run */
                if (n && n * 2 < sizeof buf) {
                    size_t k = rnd() % (n - at + 1);
                    memmove(buf + at + k, buf + at, n - at);
                    n += k;
                }
                break;
            default: /* truncate */
                n = at;
                break;
            }
        }
        struct km_ws_request req;
        int rc =
            km_ws_parse_request(buf, n, &req, code, sizeof code, detail, sizeof detail);
        if (rc == 0) {
            ck_assert(req.type == KM_WS_REQ_PING || req.type == KM_WS_REQ_SUBSCRIBE);
            ck_assert_uint_le(req.n_names, KM_WS_MAX_SUBS);
            for (size_t i = 1; i < req.n_names; i++)
                ck_assert(strcmp(req.names[i - 1], req.names[i]) <
                          0); /* sorted, unique */
            km_ws_request_clear(&req);
        } else {
            ck_assert(strlen(code) > 0 && strlen(detail) > 0);
            ck_assert_ptr_null(req.names);
            ck_assert_ptr_null(req.since);
        }
    }
}
END_TEST

/* ---- a live server ----------------------------------------------------------- */

/*
 * Random frames and requests against the real server in this process:
 * whatever a client sends, the daemon answers or closes, and stays up.
 */
START_TEST(test_fuzz_live_server)
{
    seed_use("test_fuzz_live_server", _i);
    struct km_core core = {0};
    struct km_server *srv;
    char err[256];
    static unsigned char buf[1 << 18];

    km_log_set_level(KM_LOG_ERROR);
    core.base = event_base_new();
    core.bus = km_bus_new();
    core.cfg = km_config_defaults();
    core.cfg->port = 0;
    core.cfg->update_interval = 0.05;
    core.cfg->max_message_bytes = 4096;
    struct km_topic_def td = {.name = "metrics", .kind = KM_TOPIC_STATE};
    struct km_topic *tm = km_bus_declare(core.bus, &td, NULL, NULL);
    struct km_topic_def te = {.name = "session_events", .kind = KM_TOPIC_EVENT};
    struct km_topic *tev = km_bus_declare(core.bus, &te, NULL, NULL);
    srv = km_server_start(&core, err, sizeof err);
    ck_assert_msg(srv != NULL, "%s", err);
    int port = km_server_port(srv);

    for (int iter = 0; iter < 60 * rounds; iter++) {
        struct wsc *c = wsc_connect(core.base, port, "/ws", NULL);
        ck_assert_int_eq(wsc_wait_open(c, 5000), 101);
        int frames = 1 + (int)(rnd() % 8);
        for (int f = 0; f < frames; f++) {
            switch (rnd() % 3) {
            case 0: {
                size_t n = fuzz_frame(buf, sizeof buf);
                wsc_send_raw(c, buf, n);
                break;
            }
            case 1: {
                const char *s = seeds[rnd() % (sizeof seeds / sizeof seeds[0])];
                wsc_send_text(c, s);
                break;
            }
            default:
                km_bus_publish(tm, json_pack("{s:i}", "n", iter), NULL);
                km_bus_publish(tev,
                               json_pack("{s:s, s:s, s:{}}", "event_type", "x",
                                         "timestamp", "t", "data"),
                               NULL);
                break;
            }
        }
        wsc_run_for(core.base, (int)(rnd() % 30));
        if (rnd() % 2)
            wsc_wait_close(c, 300, NULL, NULL);
        wsc_free(c);
    }
    /* and plain HTTP garbage */
    for (int iter = 0; iter < 40 * rounds; iter++) {
        size_t n = 1 + rnd() % 3000;
        static char req[4096];
        static const char *const starts[] = {
            "GET /",     "GET /ws HTTP/1.1\r\n",   "POST /api/v1/",
            "HEAD /../", "OPTIONS * HTTP/1.1\r\n", ""};
        const char *st = starts[rnd() % (sizeof starts / sizeof starts[0])];
        size_t sl = strlen(st);
        memcpy(req, st, sl);
        for (size_t i = sl; i < n + sl && i < sizeof req - 1; i++)
            req[i] = rnd() % 4 ? (char)(' ' + rnd() % 95) : "\r\n%:/."[rnd() % 6];
        req[n + sl < sizeof req - 1 ? n + sl : sizeof req - 1] = '\0';
        char *resp = NULL;
        wsc_http(core.base, port, req, &resp, NULL, 300);
        free(resp);
    }
    /* still serving */
    char *resp;
    const char *body;
    ck_assert_int_eq(wsc_get(core.base, port, "/api/v1/health", NULL, &resp, &body, 5000),
                     200);
    free(resp);
    km_server_free(srv);
    km_bus_free(core.bus);
    event_base_free(core.base);
    km_config_free(core.cfg);
}
END_TEST

static Suite *fuzz_suite(void)
{
    Suite *s = suite_create("ws_fuzz");
    TCase *tc = tcase_create("fuzz");
    tcase_add_unchecked_fixture(tc, seed_setup, NULL);
    tcase_set_timeout(tc, 300);
    /* one run per committed seed, or just KM_FUZZ_SEED's (read here, before
       the fixture, so the loop bound is known) */
    const char *env = getenv("KM_FUZZ_SEED");
    int n = env && *env ? 1 : (int)N_SEEDS;
    tcase_add_loop_test(tc, test_fuzz_reader_random_bytes, 0, n);
    tcase_add_loop_test(tc, test_fuzz_reader_frames, 0, n);
    tcase_add_loop_test(tc, test_fuzz_parser, 0, n);
    tcase_add_loop_test(tc, test_fuzz_live_server, 0, n);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a peer gone mid-write is not fatal */
    SRunner *sr = srunner_create(fuzz_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
