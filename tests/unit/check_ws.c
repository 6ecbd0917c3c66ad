/*
 * check_ws.c - unit tests of the transport's pieces (core/ws*.c, server.c,
 * rest.c): the handshake key, ISO 8601 time (katomon/util.h), UTF-8, the
 * frame reader and its close codes, the request parser, static path
 * resolution; then the server in this process (same event loop as the test
 * client) for what needs the hub's internal counters: one encoding and one
 * frame per distinct subscription set, conflation, the slow-client bound.
 *
 * The daemon-level acceptance tests are in tests/integration/check_transport.c.
 * Leaks: run under ASan (--enable-sanitizers); every test frees what it made.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <katomon/util.h>

#include "bus.h"
#include "core.h"
#include "log.h"
#include "rest.h"
#include "server.h"
#include "server_static.h"
#include "ws.h"
#include "ws_frame.h"
#include "ws_handshake.h"
#include "ws_proto.h"
#include "wsclient.h"

/* ---- helpers ---------------------------------------------------------------- */

/* A client frame (masked unless mask == 0) into buf; returns its length. */
static size_t mkframe(unsigned char *buf, int fin, int rsv, int op, int mask,
                      const void *payload, size_t len)
{
    size_t o = 0;
    unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};

    buf[o++] = (unsigned char)((fin ? 0x80 : 0) | (rsv << 4) | op);
    if (len < 126) {
        buf[o++] = (unsigned char)((mask ? 0x80 : 0) | len);
    } else if (len < 65536) {
        buf[o++] = (unsigned char)((mask ? 0x80 : 0) | 126);
        buf[o++] = (unsigned char)(len >> 8);
        buf[o++] = (unsigned char)len;
    } else {
        buf[o++] = (unsigned char)((mask ? 0x80 : 0) | 127);
        for (int i = 7; i >= 0; i--)
            buf[o++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(buf + o, key, 4);
        o += 4;
    }
    for (size_t i = 0; i < len; i++)
        buf[o + i] = ((const unsigned char *)payload)[i] ^ (mask ? key[i & 3] : 0);
    return o + len;
}

/* What a reader delivered. */
struct got {
    int n;              /* messages */
    int op[16];         /* their opcodes */
    char text[16][256]; /* their payloads (truncated) */
    size_t len[16];     /* their lengths */
};

static int got_cb(void *arg, int op, const unsigned char *data, size_t len)
{
    struct got *g = arg;
    if (g->n < 16) {
        g->op[g->n] = op;
        g->len[g->n] = len;
        snprintf(g->text[g->n], sizeof g->text[g->n], "%.*s",
                 (int)(len < 255 ? len : 255), (const char *)data);
    }
    g->n++;
    return 0;
}

/* Feeds bytes to a fresh reader (whole, then byte by byte: same result). */
static int feed_all(const unsigned char *b, size_t n, size_t max, struct got *g)
{
    const char *reason;
    struct got g2 = {0};
    struct km_ws_reader *r = km_ws_reader_new(max, got_cb, g);
    int rc = km_ws_reader_feed(r, b, n, &reason);
    km_ws_reader_free(r);

    r = km_ws_reader_new(max, got_cb, &g2);
    int rc2 = 0;
    for (size_t i = 0; i < n && !rc2; i++)
        rc2 = km_ws_reader_feed(r, b + i, 1, &reason);
    km_ws_reader_free(r);
    ck_assert_int_eq(rc, rc2);
    ck_assert_int_eq(g->n, g2.n);
    return rc;
}

/* ---- keys, time --------------------------------------------------------------- */

START_TEST(test_accept_key)
{
    char out[KM_WS_ACCEPT_LEN + 1];
    /* RFC 6455 section 1.3 */
    ck_assert_int_eq(km_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    ck_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* two more, computed independently (Python's hashlib and base64) */
    ck_assert_int_eq(km_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
    ck_assert_str_eq(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    ck_assert_int_eq(km_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", out), 0);
    ck_assert_str_eq(out, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
    ck_assert(km_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    ck_assert(!km_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ"));
    ck_assert(!km_ws_key_valid("dGhlIHNhbXBsZSBub25j!Q=="));
    ck_assert(!km_ws_key_valid(""));
    ck_assert(!km_ws_key_valid(NULL));
}
END_TEST

START_TEST(test_iso_time)
{
    char buf[KM_ISO_LEN], want[64];
    int64_t us;

    km_format_iso(1697207400123456LL, 6, buf, sizeof buf);
    ck_assert_str_eq(buf, "2023-10-13T14:30:00.123456Z");
    km_format_iso(1697207400123456LL, 3, buf, sizeof buf);
    ck_assert_str_eq(buf, "2023-10-13T14:30:00.123Z");
    km_format_iso(1697207400123456LL, 0, buf, sizeof buf);
    ck_assert_str_eq(buf, "2023-10-13T14:30:00Z");
    km_format_iso(-1, 6, buf, sizeof buf); /* floors, like the seconds */
    ck_assert_str_eq(buf, "1969-12-31T23:59:59.999999Z");
    km_format_iso(1697207400123456LL, 6, buf, 11); /* cut like snprintf */
    ck_assert_str_eq(buf, "2023-10-13");
    /* the same as gmtime_r + strftime, over leap years and centuries */
    for (int64_t s = -2208988800LL; s < 7258118400LL; s += 86400 * 37 + 3607) {
        time_t t = (time_t)s;
        int frac = (int)((s % 1000000 + 1000000) % 1000000); /* any µs will do */
        struct tm tm;
        gmtime_r(&t, &tm);
        size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof want - n, ".%06dZ", frac);
        km_format_iso(s * 1000000 + frac, 6, buf, sizeof buf);
        ck_assert_str_eq(buf, want);
        ck_assert_int_eq(km_parse_iso(buf, &us), 0);
        ck_assert(us == s * 1000000 + frac);
    }
    ck_assert_int_eq(km_parse_iso("2023-10-13T16:30:00.5+02:00", &us), 0);
    ck_assert(us == 1697207400500000LL);
    ck_assert_int_eq(km_parse_iso("2023-10-13 14:30:00", &us), 0);
    ck_assert(us == 1697207400000000LL);
    ck_assert_int_eq(km_parse_iso("2023-10-13T14:30:00Zx", &us), -1);
    ck_assert_int_eq(km_parse_iso("2023-13-13T14:30:00Z", &us), -1);
    ck_assert_int_eq(km_parse_iso("yesterday", &us), -1);
}
END_TEST

/* ---- UTF-8 ---------------------------------------------------------------- */

START_TEST(test_utf8)
{
    static const struct {
        const char *s;
        int ok; /* 1 valid, 0 invalid, 2 incomplete */
    } v[] = {
        {"plain", 1},
        {"\xc3\xa9t\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xc0\x80", 0},         /* overlong NUL */
        {"\xe0\x80\xaf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* > U+10FFFF */
        {"\xff", 0},
        {"\x80", 0},     /* lone continuation */
        {"\xe2\x82", 2}, /* cut */
        {"\xf0\x9f\x98", 2},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint32_t st = 0;
        int r = km_utf8_step(&st, (const unsigned char *)v[i].s, strlen(v[i].s));
        if (v[i].ok == 1)
            ck_assert_msg(r == 0, "case %zu should be valid", i);
        else if (v[i].ok == 0)
            ck_assert_msg(r < 0, "case %zu should be invalid", i);
        else
            ck_assert_msg(r > 0, "case %zu should be incomplete", i);
    }
    /* split across calls */
    uint32_t st = 0;
    ck_assert_int_gt(km_utf8_step(&st, (const unsigned char *)"\xf0\x9f", 2), 0);
    ck_assert_int_eq(km_utf8_step(&st, (const unsigned char *)"\x98\x80", 2), 0);
}
END_TEST

/* ---- frame reader -------------------------------------------------------------- */

START_TEST(test_reader_messages)
{
    unsigned char b[4096];
    size_t n = 0;
    struct got g = {0};

    n += mkframe(b + n, 1, 0, KM_WS_OP_TEXT, 1, "hello", 5);
    n += mkframe(b + n, 0, 0, KM_WS_OP_TEXT, 1, "frag", 4);
    n += mkframe(b + n, 0, 0, KM_WS_OP_CONT, 1, "men", 3);
    n += mkframe(b + n, 1, 0, KM_WS_OP_PING, 1, "p", 1); /* between fragments */
    n += mkframe(b + n, 1, 0, KM_WS_OP_CONT, 1, "ted", 3);
    n += mkframe(b + n, 1, 0, KM_WS_OP_BINARY, 1, "\x00\xff", 2);
    n += mkframe(b + n, 1, 0, KM_WS_OP_TEXT, 1, "", 0);
    n += mkframe(b + n, 1, 0, KM_WS_OP_PONG, 1, "", 0);
    n += mkframe(b + n, 1, 0, KM_WS_OP_CLOSE, 1,
                 "\x03\xe8"
                 "bye",
                 5);
    ck_assert_int_eq(feed_all(b, n, 1024, &g), 0);
    ck_assert_int_eq(g.n, 7);
    ck_assert_int_eq(g.op[0], KM_WS_OP_TEXT);
    ck_assert_str_eq(g.text[0], "hello");
    ck_assert_int_eq(g.op[1], KM_WS_OP_PING);
    ck_assert_int_eq(g.op[2], KM_WS_OP_TEXT);
    ck_assert_str_eq(g.text[2], "fragmented");
    ck_assert_int_eq(g.op[3], KM_WS_OP_BINARY);
    ck_assert_int_eq(g.len[3], 2);
    ck_assert_int_eq(g.len[4], 0);
    ck_assert_int_eq(g.op[5], KM_WS_OP_PONG);
    ck_assert_int_eq(g.op[6], KM_WS_OP_CLOSE);
    ck_assert_int_eq(g.len[6], 5);
}
END_TEST

/* wslay's 4 KiB context lives only while it holds bytes of a frame */
START_TEST(test_reader_sleeps_between_frames)
{
    unsigned char b[512];
    const char *reason;
    struct got g = {0};
    size_t n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, "hello", 5);
    char payload[200];
    memset(payload, 'x', sizeof payload); /* 200 bytes: a 16-bit length field */
    size_t big = mkframe(b + n, 1, 0, KM_WS_OP_TEXT, 1, payload, sizeof payload);
    struct km_ws_reader *r = km_ws_reader_new(1024, got_cb, &g);

    ck_assert_int_eq(km_ws_reader_holding(r), 0); /* a new client holds nothing */
    ck_assert_int_eq(km_ws_reader_feed(r, b, n, &reason), 0);
    ck_assert_int_eq(km_ws_reader_holding(r), 0); /* whole frame: nothing kept */
    ck_assert_int_eq(g.n, 1);
    /* the second frame in three pieces: split inside the extended length,
       then inside the payload */
    ck_assert_int_eq(km_ws_reader_feed(r, b + n, 3, &reason), 0);
    ck_assert_int_eq(km_ws_reader_holding(r), 1);
    ck_assert_int_eq(km_ws_reader_feed(r, b + n + 3, 100, &reason), 0);
    ck_assert_int_eq(km_ws_reader_holding(r), 1);
    ck_assert_int_eq(km_ws_reader_feed(r, b + n + 103, big - 103, &reason), 0);
    ck_assert_int_eq(km_ws_reader_holding(r), 0);
    ck_assert_int_eq(g.n, 2);
    ck_assert_int_eq(g.len[1], 200);
    km_ws_reader_free(r);
}
END_TEST

START_TEST(test_reader_lengths)
{
    /* 16-bit and 64-bit lengths, and the size limit on the announced length */
    size_t big = 70000;
    unsigned char *p = malloc(big), *b = malloc(big + 32);
    struct got g = {0};
    memset(p, 'a', big);
    size_t n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, p, 300);
    ck_assert_int_eq(feed_all(b, n, 1024, &g), 0);
    ck_assert_int_eq(g.len[0], 300);
    memset(&g, 0, sizeof g);
    n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, p, big);
    ck_assert_int_eq(feed_all(b, n, 100000, &g), 0);
    ck_assert_int_eq(g.len[0], big);
    memset(&g, 0, sizeof g);
    /* 1009 as soon as the header says too much: header + 1 byte fed (wslay
       reports a frame with its first payload byte) */
    ck_assert_int_eq(feed_all(b, 15, 65536, &g), KM_WS_CLOSE_TOO_BIG);
    /* fragments adding up past the limit */
    memset(&g, 0, sizeof g);
    n = mkframe(b, 0, 0, KM_WS_OP_TEXT, 1, p, 600);
    n += mkframe(b + n, 1, 0, KM_WS_OP_CONT, 1, p, 600);
    ck_assert_int_eq(feed_all(b, n, 1000, &g), KM_WS_CLOSE_TOO_BIG);
    ck_assert_int_eq(g.n, 0);
    free(p);
    free(b);
}
END_TEST

/* Each bad-frame class and the close code it earns. */
START_TEST(test_reader_errors)
{
    static const unsigned char nonminimal16[] = {0x81, 0xFE, 0x00, 0x05, 1, 2, 3, 4};
    static const unsigned char nonminimal64[] = {0x81, 0xFF, 0, 0, 0, 0, 0,
                                                 0,    0,    5, 1, 2, 3, 4};
    static const unsigned char msb64[] = {0x81, 0xFF, 0x80, 0, 0, 0, 0,
                                          0,    0,    5,    1, 2, 3, 4};
    unsigned char b[512], big[200];
    size_t n;
    struct got g;
    memset(big, 'x', sizeof big);

#define EXPECT(code)                                                                     \
    do {                                                                                 \
        memset(&g, 0, sizeof g);                                                         \
        ck_assert_int_eq(feed_all(b, n, 1024, &g), code);                                \
    } while (0)

    n = mkframe(b, 1, 1, KM_WS_OP_TEXT, 1, "x", 1); /* RSV1 */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 0, "x", 1); /* not masked */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, 0x3, 1, "x", 1); /* reserved opcode */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, 0xB, 1, "x", 1); /* reserved control opcode */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_CONT, 1, "x", 1); /* continuation, nothing open */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 0, 0, KM_WS_OP_TEXT, 1, "a", 1);
    n += mkframe(b + n, 1, 0, KM_WS_OP_TEXT, 1, "b", 1); /* new message mid-fragment */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_PING, 1, big, 126); /* control > 125 */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 0, 0, KM_WS_OP_PING, 1, "x", 1); /* fragmented control */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_CLOSE, 1, "\x03", 1); /* close with 1 byte */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_CLOSE, 1, "\x03\xed", 2); /* 1005: never sent */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_CLOSE, 1, "\x00\x10", 2); /* 16 */
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    n = mkframe(b, 1, 0, KM_WS_OP_CLOSE, 1, "\x03\xe8\xff", 3); /* reason not UTF-8 */
    EXPECT(KM_WS_CLOSE_BAD_DATA);
    n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, "\xc3\x28", 2); /* invalid UTF-8 */
    EXPECT(KM_WS_CLOSE_BAD_DATA);
    n = mkframe(b, 0, 0, KM_WS_OP_TEXT, 1, "\xe2\x82", 2);
    n += mkframe(b + n, 1, 0, KM_WS_OP_CONT, 1, "\xac", 1); /* split but valid */
    EXPECT(0);
    n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, "\xe2\x82", 2); /* ends inside a sequence */
    EXPECT(KM_WS_CLOSE_BAD_DATA);
    n = mkframe(b, 1, 0, KM_WS_OP_BINARY, 1, "\xff\xfe", 2); /* binary: any bytes */
    EXPECT(0);
    memcpy(b, nonminimal16, sizeof nonminimal16);
    n = sizeof nonminimal16;
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    memcpy(b, nonminimal64, sizeof nonminimal64);
    n = sizeof nonminimal64;
    EXPECT(KM_WS_CLOSE_PROTOCOL);
    memcpy(b, msb64, sizeof msb64);
    n = sizeof msb64;
    EXPECT(KM_WS_CLOSE_PROTOCOL);
#undef EXPECT
}
END_TEST

START_TEST(test_reader_dead_after_error)
{
    unsigned char b[64];
    const char *reason = NULL;
    struct got g = {0};
    struct km_ws_reader *r = km_ws_reader_new(1024, got_cb, &g);
    size_t n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 0, "x", 1);

    ck_assert_int_eq(km_ws_reader_feed(r, b, n, &reason), KM_WS_CLOSE_PROTOCOL);
    ck_assert_ptr_nonnull(reason);
    n = mkframe(b, 1, 0, KM_WS_OP_TEXT, 1, "x", 1);
    ck_assert_int_eq(km_ws_reader_feed(r, b, n, &reason), KM_WS_CLOSE_PROTOCOL);
    ck_assert_int_eq(g.n, 0);
    km_ws_reader_free(r);
}
END_TEST

/* ---- requests ---------------------------------------------------------------- */

static int parse(const char *text, struct km_ws_request *req, char *code)
{
    char detail[256];
    return km_ws_parse_request(text, strlen(text), req, code, 32, detail, sizeof detail);
}

START_TEST(test_parse_requests)
{
    struct km_ws_request req;
    char code[32];

    ck_assert_int_eq(parse("ping", &req, code), 0);
    ck_assert_int_eq(req.type, KM_WS_REQ_PING);
    ck_assert_int_eq(parse(" ping\n", &req, code), 0);
    ck_assert_int_eq(parse("{\"type\":\"ping\"}", &req, code), 0);
    ck_assert_int_eq(req.type, KM_WS_REQ_PING);

    ck_assert_int_eq(parse("{\"type\":\"subscribe\",\"subscriptions\":[\"system_alerts\","
                           "\"metrics\",\"containers\",\"metrics\"]}",
                           &req, code),
                     0);
    ck_assert_int_eq(req.type, KM_WS_REQ_SUBSCRIBE);
    ck_assert_int_eq(req.n_names, 3);
    ck_assert_str_eq(req.names[0], "containers");
    ck_assert_str_eq(req.names[1], "metrics");
    ck_assert_str_eq(req.names[2], "system_alerts");
    ck_assert_int_eq(req.n_since, 0);
    km_ws_request_clear(&req);

    ck_assert_int_eq(
        parse("{\"type\":\"subscribe\",\"subscriptions\":[\"session_events\"],"
              "\"since\":{\"session_events\":41}}",
              &req, code),
        0);
    ck_assert_int_eq(req.n_since, 1);
    ck_assert_str_eq(req.since[0].topic, "session_events");
    ck_assert_int_eq(req.since[0].seq, 41);
    km_ws_request_clear(&req);

    ck_assert_int_eq(parse("{\"type\":\"subscribe\",\"subscriptions\":[]}", &req, code),
                     0);
    ck_assert_int_eq(req.n_names, 0);
    km_ws_request_clear(&req);

    static const struct {
        const char *text, *code;
    } bad[] = {
        {"{", "bad_json"},
        {"pong", "bad_json"},
        {"[1,2]", "bad_request"},
        {"{\"subscriptions\":[]}", "bad_request"},
        {"{\"type\":7}", "bad_request"},
        {"{\"type\":\"unsubscribe\"}", "unknown_type"},
        {"{\"type\":\"subscribe\"}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":\"metrics\"}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[1]}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[\"Metrics\"]}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[\"\"]}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":[]}", "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":-1}}",
         "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":\"1\"}}",
         "bad_request"},
        {"{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"A b\":1}}",
         "bad_request"},
        {"{\"type\":\"ping\",\"type\":\"ping\"}", "bad_json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse(bad[i].text, &req, code) == -1, "accepted %s", bad[i].text);
        ck_assert_msg(strcmp(code, bad[i].code) == 0, "%s: %s", bad[i].text, code);
        ck_assert_ptr_null(req.names);
    }
    /* too many names */
    char big[8192];
    size_t o =
        (size_t)snprintf(big, sizeof big, "{\"type\":\"subscribe\",\"subscriptions\":[");
    for (int i = 0; i <= KM_WS_MAX_SUBS; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%s\"t%d\"", i ? "," : "", i);
    snprintf(big + o, sizeof big - o, "]}");
    ck_assert_int_eq(parse(big, &req, code), -1);
}
END_TEST

/* "since" per host: {"t":N} is this host, {"t":{"A":N,...}} one per host. */
START_TEST(test_parse_since_hosts)
{
    struct km_ws_request req;
    char code[32];

    ck_assert_int_eq(
        parse("{\"type\":\"subscribe\",\"protocol\":\"katomon/1\",\"subscriptions\":[],"
              "\"since\":{\"a\":{\"alpha\":1,\"b.c-1\":2},\"b\":3,\"c\":{}}}",
              &req, code),
        0);
    ck_assert_int_eq(req.n_since, 3);
    ck_assert_str_eq(req.since[0].topic, "a");
    ck_assert_str_eq(req.since[0].host, "alpha");
    ck_assert_int_eq(req.since[0].seq, 1);
    ck_assert_str_eq(req.since[1].topic, "a");
    ck_assert_str_eq(req.since[1].host, "b.c-1");
    ck_assert_int_eq(req.since[1].seq, 2);
    ck_assert_str_eq(req.since[2].topic, "b");
    ck_assert_ptr_null(req.since[2].host);
    ck_assert_int_eq(req.since[2].seq, 3);
    km_ws_request_clear(&req);

    static const char *const bad[] = {
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"b c\":1}}}",
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"b:c\":1}}}",
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"B\":-1}}}",
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"B\":\"1\"}}}",
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"B\":{}}}}",
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":[1]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse(bad[i], &req, code) == -1, "accepted %s", bad[i]);
        ck_assert_str_eq(code, "bad_request");
        ck_assert_ptr_null(req.since);
    }
    /* a 65-byte host name */
    char text[512];
    snprintf(
        text, sizeof text,
        "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{\"a\":{\"%065d\":1}}}",
        0);
    ck_assert_int_eq(parse(text, &req, code), -1);
    /* more host entries than KM_WS_MAX_SINCE */
    char *big = malloc(64 * 1024);
    size_t o = (size_t)snprintf(
        big, 128, "{\"type\":\"subscribe\",\"subscriptions\":[],\"since\":{");
    for (int t = 0; t < 2; t++) {
        o += (size_t)snprintf(big + o, 32, "%s\"t%d\":{", t ? "," : "", t);
        for (int h = 0; h <= KM_WS_MAX_SINCE / 2; h++)
            o += (size_t)snprintf(big + o, 32, "%s\"h%d\":1", h ? "," : "", h);
        o += (size_t)snprintf(big + o, 8, "}");
    }
    snprintf(big + o, 8, "}}");
    ck_assert_int_eq(parse(big, &req, code), -1);
    ck_assert_ptr_null(req.since);
    free(big);
}
END_TEST

/* ---- static files ------------------------------------------------------------- */

static char tmpdir[PATH_MAX];
static char webroot[PATH_MAX];
static char outside[PATH_MAX];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void web_setup(void)
{
    char p[PATH_MAX * 2];
    char tmpl[] = "/tmp/check_ws.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(tmpdir, sizeof tmpdir, "%s", tmpl);
    snprintf(webroot, sizeof webroot, "%s/web", tmpl);
    snprintf(outside, sizeof outside, "%s/secret", tmpl);
    mkdir(webroot, 0755);
    mkdir(outside, 0755);
    snprintf(p, sizeof p, "%s/index.html", webroot);
    write_file(p, "<html>dashboard</html>");
    snprintf(p, sizeof p, "%s/app.js", webroot);
    write_file(p, "console.log(1)");
    snprintf(p, sizeof p, "%s/sub", webroot);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/index.html", webroot);
    write_file(p, "sub");
    snprintf(p, sizeof p, "%s/passwd", outside);
    write_file(p, "root:x:0:0");
    snprintf(p, sizeof p, "%s/escape", webroot);
    symlink(outside, p);
    snprintf(p, sizeof p, "%s/.hidden", webroot);
    write_file(p, "secret");
    snprintf(p, sizeof p, "%s/link.js", webroot);
    symlink("app.js", p);
}

static void web_teardown(void)
{
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed\n");
}

START_TEST(test_static_resolve)
{
    char out[PATH_MAX];
    static const char *const traversal[] = {
        "/../secret/passwd",
        "/..%2fsecret/passwd",
        "/%2e%2e/secret/passwd",
        "/%2E%2E%2Fsecret%2Fpasswd",
        "/sub/../../secret/passwd",
        "/./../secret/passwd",
        "/sub/%2e%2e/%2e%2e/secret/passwd",
        "/escape/passwd",
        "/escape/",
        "/..",
        "/%2e%2e",
        "/..%00/x",
        "/index.html%00.js",
        "/%252e%252e/secret/passwd",
        "/..\\secret\\passwd",
        "//etc/passwd",
        "/sub/..%2F..%2Fsecret%2Fpasswd",
        "/.hidden",
        "/sub/.git/config",
    };
    for (size_t i = 0; i < sizeof traversal / sizeof traversal[0]; i++) {
        int st = km_static_resolve(webroot, traversal[i], out, sizeof out);
        ck_assert_msg(st == 403 || st == 404, "%s: %d", traversal[i], st);
    }
    ck_assert_int_eq(km_static_resolve(webroot, "/", out, sizeof out), 0);
    ck_assert(strstr(out, "/web/index.html"));
    ck_assert_int_eq(km_static_resolve(webroot, "/sub", out, sizeof out), 0);
    ck_assert(strstr(out, "/sub/index.html"));
    ck_assert_int_eq(km_static_resolve(webroot, "/sub/", out, sizeof out), 0);
    ck_assert_int_eq(km_static_resolve(webroot, "/%61pp.js", out, sizeof out), 0);
    ck_assert_int_eq(km_static_resolve(webroot, "/link.js", out, sizeof out), 0);
    ck_assert(strstr(out, "/app.js"));
    ck_assert_int_eq(km_static_resolve(webroot, "/nope.js", out, sizeof out), 404);
    ck_assert_int_eq(km_static_resolve(webroot, "/%zz", out, sizeof out), 400);
    ck_assert_int_eq(km_static_resolve(webroot, "/%2", out, sizeof out), 400);
}
END_TEST

START_TEST(test_mime)
{
    ck_assert_str_eq(km_mime_type("/a/index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(km_mime_type("x.JS"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(km_mime_type("x.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(km_mime_type("x.svg"), "image/svg+xml");
    ck_assert_str_eq(km_mime_type("x.woff2"), "font/woff2");
    ck_assert_str_eq(km_mime_type("/a.b/noext"), "application/octet-stream");
}
END_TEST

/* ---- the server in this process ------------------------------------------------ */

static struct km_core core;
static struct km_server *srv;
static int port;
static struct km_topic *t_metrics, *t_containers, *t_sessions, *t_host, *t_sev, *t_alerts;

static struct km_topic *declare(const char *name, enum km_topic_kind kind, unsigned ring)
{
    struct km_topic_def def = {.name = name, .kind = kind, .ring_size = ring};
    int err = 0;
    struct km_topic *t = km_bus_declare(core.bus, &def, NULL, &err);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void pub(struct km_topic *t, const char *json)
{
    ck_assert_int_eq(km_bus_publish(t, json_loads(json, 0, NULL), NULL), KM_OK);
}

static void srv_setup(void)
{
    char err[256];

    web_setup();
    km_log_set_level(KM_LOG_WARNING);
    core.base = event_base_new();
    core.bus = km_bus_new();
    core.cfg = km_config_defaults();
    core.cfg->port = 0;
    free(core.cfg->web_root);
    core.cfg->web_root = strdup(webroot);
    core.cfg->update_interval = 3600; /* ticks are run by hand: km_ws_tick */
    core.cfg->max_queue_bytes = 256 * 1024;
    t_metrics = declare("metrics", KM_TOPIC_STATE, 0);
    t_containers = declare("containers", KM_TOPIC_STATE, 0);
    t_sessions = declare("sessions", KM_TOPIC_STATE, 0);
    t_host = declare("host", KM_TOPIC_STATE, 0);
    t_sev = declare("session_events", KM_TOPIC_EVENT, 8);
    t_alerts = declare("system_alerts", KM_TOPIC_EVENT, 8);
    srv = km_server_start(&core, err, sizeof err);
    ck_assert_msg(srv != NULL, "%s", err);
    port = km_server_port(srv);
    ck_assert_int_gt(port, 0);
}

static void srv_teardown(void)
{
    km_server_free(srv);
    km_bus_free(core.bus);
    event_base_free(core.base);
    km_config_free(core.cfg);
    memset(&core, 0, sizeof core);
    web_teardown();
}

static struct wsc *client(void)
{
    struct wsc *c = wsc_connect(core.base, port, "/ws", NULL);
    ck_assert_int_eq(wsc_wait_open(c, 5000), 101);
    return c;
}

static json_t *next_of(struct wsc *c, const char *type)
{
    struct wsc_msg *m = wsc_next_type(c, type, 3000);
    ck_assert_msg(m != NULL, "no %s message", type);
    json_t *j = json_loads(m->data, 0, NULL);
    ck_assert_ptr_nonnull(j);
    wsc_msg_free(m);
    return j;
}

static void subscribe(struct wsc *c, const char *names_json)
{
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\",\"subscriptions\":%s}",
             names_json);
    wsc_send_text(c, buf);
    json_decref(next_of(c, "subscription_ack"));
}

START_TEST(test_inproc_basic)
{
    struct wsc *c = client();
    json_t *j;

    pub(t_metrics, "{\"requests\":1}");
    pub(t_host, "{\"load\":0.5}");
    km_ws_tick(km_server_ws(srv));
    j = next_of(c, "realtime_update");
    ck_assert_int_eq(json_object_size(json_object_get(j, "data")), 2);
    ck_assert_int_eq(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(j, "data"), "metrics"), "requests")),
        1);
    json_decref(j);

    pub(t_sev, "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{"
               "\"delta\":1}}");
    j = next_of(c, "session_event");
    ck_assert_str_eq(json_string_value(json_object_get(j, "event_type")),
                     "session_created");
    /* a compatible client: no katomon seq */
    ck_assert_ptr_null(json_object_get(j, "seq"));
    json_decref(j);

    wsc_send_text(c, "ping");
    j = next_of(c, "heartbeat");
    ck_assert(json_is_string(json_object_get(j, "timestamp")));
    json_decref(j);
    wsc_free(c);
}
END_TEST

/*
 * 60 clients in 3 subscription sets (20 never subscribe): one realtime
 * tick builds exactly 3 texts and 3 frames; one event builds 1 of each,
 * and every receiver gets the same shared frame.
 */
START_TEST(test_inproc_fanout_counts)
{
    enum { N = 60 };
    struct wsc *c[N];
    struct km_ws_stats a, b;
    struct km_ws *ws = km_server_ws(srv);

    pub(t_metrics, "{\"requests\":1}");
    pub(t_containers, "{\"containers\":[]}");
    pub(t_sessions, "{\"active_count\":2}");
    for (int i = 0; i < N; i++)
        c[i] = client();
    for (int i = 0; i < N; i++) {
        if (i % 3 == 1)
            subscribe(c[i], "[\"metrics\",\"session_events\"]");
        else if (i % 3 == 2)
            subscribe(c[i], "[\"containers\",\"sessions\",\"session_events\"]");
    }
    for (int i = 0; i < N; i++) {
        struct wsc_msg *m;
        while ((m = wsc_next(c[i], 50))) /* drop what subscribe sent at once */
            wsc_msg_free(m);
    }
    km_ws_get_stats(ws, &a);
    ck_assert_int_eq(a.sets, 3);
    km_ws_tick(ws);
    km_ws_get_stats(ws, &b);
    ck_assert_int_eq(b.json_encodes - a.json_encodes, 3);
    ck_assert_int_eq(b.frames_built - a.frames_built, 3);
    ck_assert_int_eq(b.frames_queued - a.frames_queued, N);
    for (int i = 0; i < N; i++) {
        json_t *j = next_of(c[i], "realtime_update");
        json_t *d = json_object_get(j, "data");
        /* trimmed to the set; never-subscribed clients get everything */
        ck_assert_int_eq(json_object_size(d), i % 3 == 0 ? 3 : i % 3 == 1 ? 1 : 2);
        ck_assert_int_eq(json_object_get(d, "metrics") != NULL, i % 3 != 2);
        json_decref(j);
    }

    unsigned long long bus_before = km_bus_stats.json_encodes;
    a = b;
    pub(t_sev, "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");
    km_ws_get_stats(ws, &b);
    /* one per dialect (20 compatible clients, 40 katomon/1), not per client */
    ck_assert_int_eq(b.json_encodes - a.json_encodes, 2);
    ck_assert_int_eq(b.frames_built - a.frames_built, 2);
    ck_assert_int_eq(b.frames_queued - a.frames_queued, N);
    /* every client got a frame of at least the event's fixed text */
    ck_assert_uint_ge(
        b.bytes_sent - a.bytes_sent,
        N * sizeof "{\"type\":\"session_event\",\"event_type\":\"session_created\"}");
    ck_assert_uint_le(km_bus_stats.json_encodes - bus_before, 1);
    for (int i = 0; i < N; i++) {
        json_t *j = next_of(c[i], "session_event");
        /* seq is katomon/1's: the never-subscribed (compatible) get none */
        ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), i % 3 ? 1 : 0);
        wsc_free(c[i]);
        json_decref(j);
    }
}
END_TEST

/* ---- the compatible dialect (the original frontend) ---- */

static const char *const SUB_LAYOUT =
    "{\"type\":\"subscribe\",\"subscriptions\":[\"system_alerts\"]}";
static const char *const SUB_DASHBOARD =
    "{\"type\":\"subscribe\",\"subscriptions\":[\"metrics\",\"containers\","
    "\"system_alerts\"]}";
static const char *const SUB_SESSIONS =
    "{\"type\":\"subscribe\",\"subscriptions\":[\"sessions\",\"session_events\"]}";

static struct km_ws_stats ws_stats_now(void)
{
    struct km_ws_stats st;
    km_ws_get_stats(km_server_ws(srv), &st);
    return st;
}

struct unchanged_wait {
    uint64_t target; /* subscribes_unchanged to reach */
};

static int unchanged_reached(void *arg)
{
    return ws_stats_now().subscribes_unchanged >= ((struct unchanged_wait *)arg)->target;
}

/* jansson allocations, counted while `counting` */
static int counting;
static unsigned long json_allocs;
static void *count_malloc(size_t n)
{
    if (counting)
        json_allocs++;
    return malloc(n);
}

/*
 * The original frontend's three components re-send their sets over one
 * socket after every message: no reply, the union delivered, and a re-sent
 * set costs no parse, no allocation and no frame.
 */
START_TEST(test_compat_union_silent)
{
    struct wsc *c = client();
    struct km_ws_stats a, b;

    pub(t_metrics, "{\"requests\":1}");
    pub(t_containers, "{\"containers\":[]}");
    pub(t_sessions, "{\"active_count\":2}");
    pub(t_host, "{\"load\":0.5}");
    wsc_send_text(c, SUB_LAYOUT);
    wsc_send_text(c, SUB_DASHBOARD);
    wsc_send_text(c, SUB_SESSIONS);
    wsc_run_for(core.base, 200);
    ck_assert_uint_eq(wsc_received(c), 0); /* no ack, no immediate update */
    ck_assert_uint_eq(ws_stats_now().subscribes, 3);

    km_ws_tick(km_server_ws(srv));
    json_t *j = next_of(c, "realtime_update");
    json_t *d = json_object_get(j, "data");
    ck_assert_int_eq(json_object_size(d), 3); /* the union's state topics, not host */
    ck_assert_ptr_nonnull(json_object_get(d, "metrics"));
    ck_assert_ptr_nonnull(json_object_get(d, "containers"));
    ck_assert_ptr_nonnull(json_object_get(d, "sessions"));
    json_decref(j);
    pub(t_sev, "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");
    json_decref(next_of(c, "session_event"));
    pub(t_alerts, "{\"id\":\"x\",\"timestamp\":\"t\",\"alerts\":[]}");
    json_decref(next_of(c, "system_alert"));

    /* 300 renders' worth of re-sends, in a burst */
    a = ws_stats_now();
    uint64_t got = wsc_received(c);
    json_set_alloc_funcs(count_malloc, free);
    counting = 1;
    for (int i = 0; i < 300; i++) {
        wsc_send_text(c, SUB_LAYOUT);
        wsc_send_text(c, SUB_DASHBOARD);
        wsc_send_text(c, SUB_SESSIONS);
    }
    struct unchanged_wait w = {a.subscribes_unchanged + 900};
    ck_assert(wsc_run_until(core.base, unchanged_reached, &w, 10000));
    counting = 0;
    json_set_alloc_funcs(malloc, free);
    b = ws_stats_now();
    ck_assert_uint_eq(json_allocs, 0);
    ck_assert_uint_eq(b.json_encodes, a.json_encodes);
    ck_assert_uint_eq(b.frames_built, a.frames_built);
    ck_assert_uint_eq(b.private_frames, a.private_frames);
    ck_assert_uint_eq(b.sets, a.sets);
    ck_assert_uint_eq(b.closed_protocol, a.closed_protocol);
    wsc_run_for(core.base, 100);
    ck_assert_uint_eq(wsc_received(c), got);
    ck_assert(!wsc_eof(c));
    /* still served */
    wsc_send_text(c, "ping");
    json_decref(next_of(c, "heartbeat"));

    /* a real flood (thousands of frames at once) is still cut */
    for (int i = 0; i < 6000; i++)
        wsc_send_text(c, SUB_LAYOUT);
    int code = 0;
    const char *reason = NULL;
    ck_assert_int_eq(wsc_wait_close(c, 5000, &code, &reason), 1);
    ck_assert_int_eq(code, 1008);
    ck_assert(strstr(reason, "too many"));
    wsc_free(c);
}
END_TEST

/* Bad subscribes from a compatible client: no reply (the original protocol
   has none), nothing kept, the connection stays; a declared protocol gets
   katomon's error; the union has a cap. */
START_TEST(test_compat_bad_input)
{
    struct wsc *c = client();
    struct km_ws_stats a = ws_stats_now();
    char *big = malloc(200000);
    size_t n;

    n = (size_t)snprintf(big, 64, "{\"type\":\"subscribe\",\"subscriptions\":[");
    for (int i = 0; i < 10000; i++)
        n += (size_t)snprintf(big + n, 32, "%s\"%c\"", i ? "," : "", 'a' + i % 26);
    snprintf(big + n, 8, "]}");
    wsc_send_text(c, big); /* 10,000 names (under the 64 KiB message limit) */
    wsc_send_text(c, "{\"type\":\"subscribe\",\"subscriptions\":[1,{},null]}");
    wsc_send_text(c, "{not json");
    wsc_send_text(c, "ping");
    json_t *j = next_of(c, "heartbeat"); /* the first reply: nothing before it */
    json_decref(j);
    ck_assert_uint_eq(wsc_received(c), 1);
    ck_assert_uint_eq(ws_stats_now().compat_ignored - a.compat_ignored, 3);

    /* 100 distinct names over two subscribes: the union keeps 64 */
    for (int part = 0; part < 2; part++) {
        n = (size_t)snprintf(big, 64, "{\"type\":\"subscribe\",\"subscriptions\":[");
        for (int i = 0; i < 50; i++)
            n +=
                (size_t)snprintf(big + n, 32, "%s\"n%03d\"", i ? "," : "", part * 50 + i);
        snprintf(big + n, 8, "]}");
        wsc_send_text(c, big);
    }
    wsc_send_text(c, "ping");
    json_decref(next_of(c, "heartbeat"));
    ck_assert_uint_eq(ws_stats_now().union_capped - a.union_capped, 36);
    json_t *list = km_ws_clients_json(km_server_ws(srv));
    json_t *me = json_array_get(json_object_get(list, "clients"), 0);
    ck_assert_int_eq(json_array_size(json_object_get(me, "topics")), 64);
    ck_assert_str_eq(json_string_value(json_object_get(me, "dialect")), "compatible");
    json_decref(list);

    /* a client that names a protocol is not the original frontend: told */
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/9\","
                     "\"subscriptions\":[]}");
    j = next_of(c, "error");
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "bad_protocol");
    json_decref(j);

    /* 1 MiB: over the message limit, both dialects: 1009 */
    char *huge = malloc(1 << 20);
    memset(huge, ' ', 1 << 20);
    memcpy(huge, "{\"type\":\"subscribe\",\"subscriptions\":[", 36);
    huge[(1 << 20) - 1] = '\0';
    wsc_send_text(c, huge);
    int code = 0;
    const char *reason = NULL;
    ck_assert_int_eq(wsc_wait_close(c, 5000, &code, &reason), 1);
    ck_assert_int_eq(code, 1009);
    free(huge);
    free(big);
    wsc_free(c);
}
END_TEST

/* A client that stops reading: realtime_update conflates, the others are
   not held up, and events past the bound close it with 1008. */
START_TEST(test_inproc_slow_client)
{
    struct km_ws *ws = km_server_ws(srv);
    struct km_ws_stats st;
    struct wsc *slow, *fast;
    static char pad[20000], msg[20200];

    wsc_set_rcvbuf(4096);
    slow = client();
    wsc_set_rcvbuf(0);
    fast = client();
    wsc_pause(slow, 1);
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(msg, sizeof msg, "{\"blob\":\"%s\"}", pad);
    for (int i = 0; i < 100; i++) {
        pub(t_metrics, msg);
        km_ws_tick(ws);
        json_decref(next_of(fast, "realtime_update"));
    }
    km_ws_get_stats(ws, &st);
    ck_assert_uint_gt(st.state_conflated + st.state_skipped, 0);
    ck_assert_uint_eq(st.closed_slow, 0);
    json_t *subs = km_ws_clients_json(ws);
    json_t *cl;
    size_t i;
    json_array_foreach(json_object_get(subs, "clients"), i, cl) ck_assert_int_le(
        json_integer_value(json_object_get(cl, "queued_bytes")), 256 * 1024);
    json_decref(subs);

    /* events are never dropped: past the bound, the slow one is closed */
    for (int k = 0; k < 100 && !st.closed_slow; k++) {
        snprintf(msg, sizeof msg,
                 "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{"
                 "\"p\":\"%s\"}}",
                 pad);
        pub(t_sev, msg);
        json_decref(next_of(fast, "session_event"));
        km_ws_get_stats(ws, &st);
    }
    ck_assert_uint_eq(st.closed_slow, 1);
    wsc_pause(slow, 0);
    int code = 0;
    const char *reason = NULL;
    ck_assert_int_eq(wsc_wait_close(slow, 5000, &code, &reason), 1);
    ck_assert_int_eq(code, KM_WS_CLOSE_POLICY);
    ck_assert(strstr(reason, "reconnect with since"));
    /* the fast one is fine */
    wsc_send_text(fast, "ping");
    json_decref(next_of(fast, "heartbeat"));
    wsc_free(slow);
    wsc_free(fast);
}
END_TEST

/* A replay larger than half the queue bound stops and says where to resume. */
START_TEST(test_inproc_replay_truncated)
{
    static char msg[21000];
    char pad[20001];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < 8; i++) {
        snprintf(msg, sizeof msg,
                 "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{"
                 "\"p\":\"%s\"}}",
                 pad);
        pub(t_sev, msg);
    }
    struct wsc *c = client();
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/"
                     "1\",\"subscriptions\":[\"session_events\"],"
                     "\"since\":{\"session_events\":0}}");
    json_decref(next_of(c, "subscription_ack"));
    int n = 0;
    json_t *j;
    for (;;) {
        struct wsc_msg *m = wsc_next(c, 3000);
        ck_assert_ptr_nonnull(m);
        j = json_loads(m->data, 0, NULL);
        wsc_msg_free(m);
        if (strcmp(json_string_value(json_object_get(j, "type")), "session_event") != 0)
            break;
        ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), ++n);
        json_decref(j);
    }
    /* 128 KB of 256 KB: 6 of 8 (about 20 KB each) */
    ck_assert_int_eq(n, 6);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "replay_gap");
    ck_assert_str_eq(json_string_value(json_object_get(j, "reason")), "truncated");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "resume_since")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "missed")), 2);
    json_decref(j);
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/"
                     "1\",\"subscriptions\":[\"session_events\"],"
                     "\"since\":{\"session_events\":6}}");
    json_decref(next_of(c, "subscription_ack"));
    j = next_of(c, "session_event");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), 7);
    json_decref(j);
    j = next_of(c, "session_event");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "seq")), 8);
    json_decref(j);
    ck_assert(!wsc_eof(c));
    wsc_free(c);
}
END_TEST

/* ---- hosts (issue 15) ---------------------------------------------------------- */

/* Host `host` (epoch 1000) published body on t, as a bridge hands it over;
   seq for an event topic. */
static void pub_remote(struct km_topic *t, const char *host, uint64_t seq,
                       const char *json)
{
    struct km_remote r = {.host = host,
                          .kind = km_topic_kind(t),
                          .epoch = 1000,
                          .seq = seq,
                          .time_us = km_wall_us()};
    ck_assert_int_eq(km_bus_publish_remote(t, json_loads(json, 0, NULL), &r), KM_OK);
}

/* The next message, whatever its type (parsed; fails the test on none). */
static json_t *next_any(struct wsc *c)
{
    struct wsc_msg *m = wsc_next(c, 3000);
    ck_assert_msg(m != NULL, "no message");
    json_t *j = json_loads(m->data, 0, NULL);
    ck_assert_ptr_nonnull(j);
    wsc_msg_free(m);
    return j;
}

/* Nothing more before a heartbeat: c got exactly what was checked. */
static void expect_nothing_more(struct wsc *c)
{
    wsc_send_text(c, "ping");
    json_t *j = next_any(c);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")), "heartbeat");
    json_decref(j);
}

static const char *str_at(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

static json_int_t int_at(json_t *j, const char *key)
{
    return json_integer_value(json_object_get(j, key));
}

/*
 * katomon/1: the ack names the hosts, realtime_update carries the others'
 * values under "hosts", a remote event its host, epoch and seq. A
 * compatible client meanwhile sees exactly what it saw before: this host's
 * data, this host's events.
 */
START_TEST(test_inproc_hosts_katomon)
{
    struct km_ws *ws = km_server_ws(srv);
    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), 0);
    struct wsc *compat = client();
    struct wsc *k = client();
    json_t *j, *d, *h;

    pub(t_metrics, "{\"who\":\"alpha\"}");
    pub(t_containers, "{\"containers\":[{\"name\":\"kato\"}]}");
    pub_remote(t_metrics, "beta", 0, "{\"who\":\"beta\"}");
    pub_remote(t_sessions, "beta", 0, "{\"active_count\":4}");
    pub_remote(t_host, "gamma", 0, "{\"load\":1}");
    pub_remote(t_sev, "beta", 7,
               "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");

    wsc_send_text(k, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                     "\"subscriptions\":[\"metrics\",\"sessions\",\"session_events\"]}");
    j = next_of(k, "subscription_ack");
    ck_assert_str_eq(str_at(j, "host"), "alpha");
    ck_assert_int_eq(json_array_size(json_object_get(j, "hosts")), 3);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "hosts"), 0)),
                     "alpha");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "hosts"), 1)),
                     "beta");
    ck_assert_int_eq(int_at(json_object_get(j, "epochs"), "beta"), 1000);
    ck_assert_int_eq(int_at(json_object_get(j, "epochs"), "alpha"),
                     km_bus_epoch(core.bus));
    ck_assert_int_eq(int_at(json_object_get(json_object_get(j, "hosts_last_seq"), "beta"),
                            "session_events"),
                     7);
    ck_assert_int_eq(int_at(json_object_get(j, "last_seq"), "session_events"), 0);
    json_decref(j);
    /* the update sent at once: this host's data, beta's under hosts; gamma
       has nothing subscribed */
    j = next_of(k, "realtime_update");
    d = json_object_get(j, "data");
    ck_assert_int_eq(json_object_size(d), 1);
    ck_assert_str_eq(str_at(json_object_get(d, "metrics"), "who"), "alpha");
    h = json_object_get(j, "hosts");
    ck_assert_int_eq(json_object_size(h), 1);
    ck_assert_str_eq(
        str_at(json_object_get(json_object_get(h, "beta"), "metrics"), "who"), "beta");
    ck_assert_int_eq(
        int_at(json_object_get(json_object_get(h, "beta"), "sessions"), "active_count"),
        4);
    json_decref(j);

    /* a remote event: host, epoch, its own seq; then a local one: neither */
    pub_remote(t_sev, "beta", 8,
               "{\"event_type\":\"session_destroyed\",\"timestamp\":\"t\",\"data\":{}}");
    pub(t_sev, "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{}}");
    j = next_any(k);
    ck_assert_str_eq(str_at(j, "type"), "session_event");
    ck_assert_str_eq(str_at(j, "host"), "beta");
    ck_assert_int_eq(int_at(j, "epoch"), 1000);
    ck_assert_int_eq(int_at(j, "seq"), 8);
    ck_assert_str_eq(str_at(j, "event_type"), "session_destroyed");
    json_decref(j);
    j = next_any(k);
    ck_assert_str_eq(str_at(j, "type"), "session_event");
    ck_assert_ptr_null(json_object_get(j, "host"));
    ck_assert_ptr_null(json_object_get(j, "epoch"));
    ck_assert_int_eq(int_at(j, "seq"), 1);
    json_decref(j);
    expect_nothing_more(k);

    /* the compatible client: only this host's event, and an update without
       "hosts", shaped as before */
    j = next_of(compat, "session_event");
    ck_assert_str_eq(str_at(j, "event_type"), "session_created");
    ck_assert_ptr_null(json_object_get(j, "host"));
    json_decref(j);
    expect_nothing_more(compat);
    km_ws_tick(ws);
    j = next_of(compat, "realtime_update");
    ck_assert_int_eq(json_object_size(j), 3); /* type, timestamp, data */
    d = json_object_get(j, "data");
    ck_assert_int_eq(json_object_size(d), 2); /* metrics, containers: alpha's */
    ck_assert_str_eq(str_at(json_object_get(d, "metrics"), "who"), "alpha");
    ck_assert_ptr_null(json_object_get(d, "sessions"));
    json_decref(j);
    j = next_of(k, "realtime_update");
    ck_assert_ptr_nonnull(json_object_get(j, "hosts"));
    json_decref(j);

    /* same names, other dialect: two sets, two frames per tick */
    struct km_ws_stats a, b;
    wsc_send_text(compat, "{\"type\":\"subscribe\",\"subscriptions\":[\"metrics\","
                          "\"sessions\",\"session_events\"]}");
    wsc_send_text(compat, "ping");
    json_decref(next_of(compat, "heartbeat"));
    km_ws_get_stats(ws, &a);
    ck_assert_int_eq(a.sets, 2);
    km_ws_tick(ws);
    km_ws_get_stats(ws, &b);
    ck_assert_int_eq(b.frames_built - a.frames_built, 2);
    j = next_of(compat, "realtime_update");
    ck_assert_ptr_null(json_object_get(j, "hosts"));
    ck_assert_int_eq(json_object_size(json_object_get(j, "data")), 1);
    json_decref(j);
    wsc_free(compat);
    wsc_free(k);
}
END_TEST

/* "since" per host replays each host's ring exactly; gaps name the host. */
START_TEST(test_inproc_since_per_host)
{
    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), 0);
    char ev[128];
    for (int i = 1; i <= 3; i++) {
        snprintf(ev, sizeof ev,
                 "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{"
                 "\"n\":%d}}",
                 i);
        pub(t_sev, ev);
    }
    for (int i = 1; i <= 12; i++) { /* ring of 8: beta's 1..4 are gone */
        snprintf(ev, sizeof ev,
                 "{\"event_type\":\"session_created\",\"timestamp\":\"t\",\"data\":{"
                 "\"n\":%d}}",
                 100 + i);
        pub_remote(t_sev, "beta", (uint64_t)i, ev);
    }
    struct wsc *c = client();
    json_t *j;

    /* exact: alpha's 3, beta's 11 and 12, nothing else */
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                     "\"subscriptions\":[\"session_events\"],"
                     "\"since\":{\"session_events\":{\"alpha\":2,\"beta\":10}}}");
    json_decref(next_of(c, "subscription_ack"));
    j = next_any(c);
    ck_assert_str_eq(str_at(j, "type"), "session_event");
    ck_assert_ptr_null(json_object_get(j, "host"));
    ck_assert_int_eq(int_at(j, "seq"), 3);
    json_decref(j);
    for (int want = 11; want <= 12; want++) {
        j = next_any(c);
        ck_assert_str_eq(str_at(j, "type"), "session_event");
        ck_assert_str_eq(str_at(j, "host"), "beta");
        ck_assert_int_eq(int_at(j, "seq"), want);
        ck_assert_int_eq(int_at(json_object_get(j, "data"), "n"), 100 + want);
        json_decref(j);
    }
    expect_nothing_more(c);

    /* a number is this host's sequence, as before (the gap names it) */
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                     "\"subscriptions\":[\"session_events\"],"
                     "\"since\":{\"session_events\":9}}");
    json_decref(next_of(c, "subscription_ack"));
    j = next_any(c);
    ck_assert_str_eq(str_at(j, "type"), "replay_gap");
    ck_assert_str_eq(str_at(j, "reason"), "since_ahead");
    ck_assert_str_eq(str_at(j, "host"), "alpha");
    ck_assert_int_eq(int_at(j, "last_seq"), 3);
    json_decref(j);
    expect_nothing_more(c);

    /* beta's 2: 3 and 4 are gone (not_in_ring, missed 2), then 5..12;
       an unknown host past 0: since_ahead, naming it */
    wsc_send_text(c, "{\"type\":\"subscribe\",\"protocol\":\"katomon/1\","
                     "\"subscriptions\":[\"session_events\"],"
                     "\"since\":{\"session_events\":{\"beta\":2,\"gamma\":5}}}");
    json_decref(next_of(c, "subscription_ack"));
    j = next_any(c);
    ck_assert_str_eq(str_at(j, "type"), "replay_gap");
    ck_assert_str_eq(str_at(j, "reason"), "not_in_ring");
    ck_assert_str_eq(str_at(j, "host"), "beta");
    ck_assert_int_eq(int_at(j, "oldest_available"), 5);
    ck_assert_int_eq(int_at(j, "last_seq"), 12);
    ck_assert_int_eq(int_at(j, "missed"), 2);
    json_decref(j);
    for (int want = 5; want <= 12; want++) {
        j = next_any(c);
        ck_assert_str_eq(str_at(j, "host"), "beta");
        ck_assert_int_eq(int_at(j, "seq"), want);
        json_decref(j);
    }
    j = next_any(c);
    ck_assert_str_eq(str_at(j, "type"), "replay_gap");
    ck_assert_str_eq(str_at(j, "reason"), "since_ahead");
    ck_assert_str_eq(str_at(j, "host"), "gamma");
    ck_assert_int_eq(int_at(j, "last_seq"), 0);
    json_decref(j);
    expect_nothing_more(c);
    wsc_free(c);
}
END_TEST

/* [websocket] compatible_fleet = aggregate: compatible clients get every
   host's items (labelled, names prefixed) and remote alerts ("[B] "). */
START_TEST(test_inproc_compat_aggregate)
{
    struct km_ws *ws = km_server_ws(srv);
    struct km_ws_limits lim = km_ws_get_limits(ws);
    ck_assert_int_eq(km_bus_set_host(core.bus, "alpha"), 0);
    struct wsc *c = client();
    json_t *j, *d, *list, *it;

    pub(t_containers, "{\"containers\":[{\"name\":\"kato\",\"cpu\":1}],"
                      "\"aggregated\":{\"container_count\":1}}");
    pub_remote(t_containers, "beta", 0,
               "{\"containers\":[{\"name\":\"kato\",\"cpu\":2},{\"name\":\"redis\","
               "\"cpu\":3}],\"aggregated\":{\"container_count\":2}}");
    pub_remote(t_sessions, "beta", 0, "{\"active_count\":4}");
    pub(t_metrics, "{\"who\":\"alpha\"}");

    /* local first (the default): this host only */
    km_ws_tick(ws);
    j = next_of(c, "realtime_update");
    d = json_object_get(j, "data");
    ck_assert_int_eq(
        json_array_size(json_object_get(json_object_get(d, "containers"), "containers")),
        1);
    ck_assert_ptr_null(json_object_get(d, "sessions"));
    json_decref(j);
    pub_remote(t_alerts, "beta", 1,
               "{\"id\":\"a1\",\"timestamp\":\"t\",\"alerts\":[{\"level\":\"error\","
               "\"type\":\"container_down\",\"message\":\"Container 'x' is exited\"}]}");
    expect_nothing_more(c);

    lim.compatible_aggregate = 1;
    km_ws_set_limits(ws, &lim);
    km_ws_tick(ws);
    j = next_of(c, "realtime_update");
    d = json_object_get(j, "data");
    list = json_object_get(json_object_get(d, "containers"), "containers");
    ck_assert_int_eq(json_array_size(list), 3);
    it = json_array_get(list, 0);
    ck_assert_str_eq(str_at(it, "name"), "kato");
    ck_assert_ptr_null(json_object_get(it, "host"));
    it = json_array_get(list, 1);
    ck_assert_str_eq(str_at(it, "name"), "beta/kato");
    ck_assert_str_eq(str_at(it, "host"), "beta");
    ck_assert_int_eq(int_at(it, "cpu"), 2);
    ck_assert_str_eq(str_at(json_array_get(list, 2), "name"), "beta/redis");
    /* objects that are not arrays: the first host's (this one's) */
    ck_assert_int_eq(
        int_at(json_object_get(json_object_get(d, "containers"), "aggregated"),
               "container_count"),
        1);
    /* a topic only beta has: beta's value */
    ck_assert_int_eq(int_at(json_object_get(d, "sessions"), "active_count"), 4);
    ck_assert_str_eq(str_at(json_object_get(d, "metrics"), "who"), "alpha");
    ck_assert_ptr_null(json_object_get(j, "hosts"));
    json_decref(j);

    pub_remote(t_alerts, "beta", 2,
               "{\"id\":\"a2\",\"timestamp\":\"t\",\"alerts\":[{\"level\":\"error\","
               "\"type\":\"container_down\",\"message\":\"Container 'y' is exited\","
               "\"state\":\"firing\"}]}");
    j = next_any(c);
    ck_assert_str_eq(str_at(j, "type"), "system_alert");
    ck_assert_str_eq(str_at(j, "host"), "beta");
    ck_assert_ptr_null(json_object_get(j, "seq"));
    it = json_array_get(json_object_get(j, "alerts"), 0);
    ck_assert_str_eq(str_at(it, "message"), "[beta] Container 'y' is exited");
    ck_assert_str_eq(str_at(it, "host"), "beta");
    ck_assert_ptr_null(json_object_get(it, "state"));
    json_decref(j);
    expect_nothing_more(c);

    /* back to local: as before */
    lim.compatible_aggregate = 0;
    km_ws_set_limits(ws, &lim);
    km_ws_tick(ws);
    j = next_of(c, "realtime_update");
    d = json_object_get(j, "data");
    ck_assert_int_eq(
        json_array_size(json_object_get(json_object_get(d, "containers"), "containers")),
        1);
    json_decref(j);
    wsc_free(c);
}
END_TEST

/* [websocket] enabled = false: /ws is 404, the rest is served. */
START_TEST(test_inproc_ws_disabled)
{
    char err[256], *resp;
    const char *body;

    core.cfg->enabled = 0;
    struct km_server *s2 = km_server_start(&core, err, sizeof err);
    core.cfg->enabled = 1;
    ck_assert_msg(s2 != NULL, "%s", err);
    ck_assert_ptr_null(km_server_ws(s2));
    struct wsc *c = wsc_connect(core.base, km_server_port(s2), "/ws", NULL);
    ck_assert_int_eq(wsc_wait_open(c, 3000), 404);
    wsc_free(c);
    ck_assert_int_eq(wsc_get(core.base, km_server_port(s2), "/api/v1/ws/subscriptions",
                             NULL, &resp, &body, 3000),
                     200);
    free(resp);
    km_server_free(s2);
}
END_TEST

START_TEST(test_inproc_bind_error)
{
    char err[256], want[128];
    core.cfg->port = port; /* taken by srv */
    ck_assert_ptr_null(km_server_start(&core, err, sizeof err));
    snprintf(want, sizeof want,
             "cannot listen on 127.0.0.1:%d: Address already in use; "
             "set [http] port",
             port);
    ck_assert_str_eq(err, want);
    core.cfg->port = 0;
}
END_TEST

START_TEST(test_inproc_rest)
{
    char *resp;
    const char *body;

    ck_assert_int_eq(
        wsc_get(core.base, port, "/api/v1/system/metrics", NULL, &resp, &body, 3000),
        503);
    free(resp);
    pub(t_containers, "{\"containers\":[{\"name\":\"kato\",\"status\":\"running\"}],"
                      "\"aggregated\":{}}");
    pub(t_sessions, "{\"active_count\":3,\"total_count\":0}");
    ck_assert_int_eq(wsc_get(core.base, port, "/api/v1/system/container-stats/kato", NULL,
                             &resp, &body, 3000),
                     200);
    ck_assert(strstr(body, "\"status\":\"running\""));
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/api/v1/system/container-stats/nope", NULL,
                             &resp, &body, 3000),
                     404);
    ck_assert(strstr(body, "\"detail\""));
    free(resp);
    ck_assert_int_eq(
        wsc_get(core.base, port, "/api/v1/sessions/count", NULL, &resp, &body, 3000),
        200);
    ck_assert_str_eq(body, "{\"active_session_count\":3}");
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/api/v1/topics", NULL, &resp, &body, 3000),
                     200);
    ck_assert(strstr(body, "\"name\":\"session_events\""));
    free(resp);
    ck_assert_int_eq(wsc_get(core.base, port, "/", NULL, &resp, &body, 3000), 200);
    ck_assert_str_eq(body, "<html>dashboard</html>");
    free(resp);
}
END_TEST

static Suite *ws_suite(void)
{
    Suite *s = suite_create("ws");
    TCase *tc = tcase_create("pieces");
    tcase_add_test(tc, test_accept_key);
    tcase_add_test(tc, test_iso_time);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_reader_messages);
    tcase_add_test(tc, test_reader_sleeps_between_frames);
    tcase_add_test(tc, test_reader_lengths);
    tcase_add_test(tc, test_reader_errors);
    tcase_add_test(tc, test_reader_dead_after_error);
    tcase_add_test(tc, test_parse_requests);
    tcase_add_test(tc, test_parse_since_hosts);
    tcase_add_test(tc, test_mime);
    suite_add_tcase(s, tc);

    tc = tcase_create("static");
    tcase_add_checked_fixture(tc, web_setup, web_teardown);
    tcase_add_test(tc, test_static_resolve);
    suite_add_tcase(s, tc);

    tc = tcase_create("inproc");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, srv_setup, srv_teardown);
    tcase_add_test(tc, test_inproc_basic);
    tcase_add_test(tc, test_compat_union_silent);
    tcase_add_test(tc, test_compat_bad_input);
    tcase_add_test(tc, test_inproc_fanout_counts);
    tcase_add_test(tc, test_inproc_slow_client);
    tcase_add_test(tc, test_inproc_rest);
    tcase_add_test(tc, test_inproc_bind_error);
    tcase_add_test(tc, test_inproc_ws_disabled);
    tcase_add_test(tc, test_inproc_replay_truncated);
    tcase_add_test(tc, test_inproc_hosts_katomon);
    tcase_add_test(tc, test_inproc_since_per_host);
    tcase_add_test(tc, test_inproc_compat_aggregate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a peer gone mid-write is not fatal */
    SRunner *sr = srunner_create(ws_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
