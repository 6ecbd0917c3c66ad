/*
 * check_envelope.c - redis_bridge's payload "KM1 SIG JSON"
 * (plugins/redis_bridge/envelope.c, compiled into this test): the exact
 * text the encoder writes, round trips, the HMAC (a known vector, good,
 * bad, missing, the wrong secret), every truncation, garbage, a 10 MiB
 * payload refused by its size, bad names, kinds, seqs and bodies, and
 * random bytes and random mutations from a fixed seed; verify's reasons
 * (garbage, signature, size); channel names split into host and topic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "../../plugins/redis_bridge/envelope.h"

#define SECRET "s3cret key"
#define MAX    (1u << 20)

static const char body_text[] = "{\"cpu\":12.5,\"name\":\"k\\u00e9to\",\"list\":[1,2]}";

/* A filled envelope (host "node-1.example", topic "metrics"). */
static struct kb_envelope sample(enum kb_kind kind, uint64_t seq)
{
    struct kb_envelope e = {.kind = kind, .seq = seq};
    snprintf(e.host, sizeof e.host, "node-1.example");
    snprintf(e.topic, sizeof e.topic, "metrics");
    e.epoch = 1765000000000000;
    e.time = 1765000001234567;
    return e;
}

/* "KM1 " + HMAC(json) with SECRET (or "-") + " " + json, NUL-terminated. */
static char *make(const char *json, int sign, size_t *len)
{
    char sig[KB_SIG_HEX + 1] = "-";
    size_t n = strlen(json);
    char *out = malloc(n + 80);

    ck_assert_ptr_nonnull(out);
    if (sign)
        ck_assert_int_eq(kb_hmac_hex(SECRET, strlen(SECRET), json, n, sig), 0);
    *len = (size_t)sprintf(out, "KM1 %s %s", sig, json);
    return out;
}

/* verify with SECRET (secret != 0) or without; returns its result. */
static int verify(const char *p, size_t len, int secret, struct kb_envelope *e, char *err)
{
    return kb_envelope_verify(p, len, secret ? SECRET : NULL, secret ? strlen(SECRET) : 0,
                              MAX, e, err, 256);
}

START_TEST(test_exact_text)
{
    struct kb_envelope e = sample(KB_EVENT, 42);
    size_t len;
    char *p = kb_envelope_encode(&e, body_text, strlen(body_text), NULL, 0, MAX, &len);
    const char *want =
        "KM1 - "
        "{\"v\":1,\"host\":\"node-1.example\",\"topic\":\"metrics\",\"kind\":\"event\","
        "\"seq\":42,\"epoch\":1765000000000000,\"time\":1765000001234567,\"body\":"
        "{\"cpu\":12.5,\"name\":\"k\\u00e9to\",\"list\":[1,2]}}";

    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p, want);
    ck_assert_uint_eq(len, strlen(want));
    free(p);
}
END_TEST

START_TEST(test_hmac_vector)
{
    /* RFC 4231, test case 2 */
    char hex[KB_SIG_HEX + 1];
    const char *data = "what do ya want for nothing?";

    ck_assert_int_eq(kb_hmac_hex("Jefe", 4, data, strlen(data), hex), 0);
    ck_assert_str_eq(hex,
                     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
END_TEST

START_TEST(test_round_trip)
{
    for (int sign = 0; sign < 2; sign++) {
        for (int k = 0; k < 2; k++) {
            struct kb_envelope e = sample(k ? KB_EVENT : KB_STATE, k ? 7 : 0), got;
            size_t len;
            char err[256];
            char *p =
                kb_envelope_encode(&e, body_text, strlen(body_text), sign ? SECRET : NULL,
                                   sign ? strlen(SECRET) : 0, MAX, &len);
            ck_assert_ptr_nonnull(p);
            ck_assert_int_eq(p[4] == '-', !sign);
            ck_assert_msg(verify(p, len, sign, &got, err) == 0, "%s", err);
            ck_assert_str_eq(got.host, e.host);
            ck_assert_str_eq(got.topic, e.topic);
            ck_assert_int_eq(got.kind, e.kind);
            ck_assert_uint_eq(got.seq, e.seq);
            ck_assert_int_eq(got.epoch, e.epoch);
            ck_assert_int_eq(got.time, e.time);
            json_t *want = json_loads(body_text, 0, NULL);
            ck_assert(json_equal(want, got.body));
            json_decref(want);
            json_decref(got.body);
            /* a signed payload verifies without a secret too (SIG unchecked) */
            ck_assert_int_eq(verify(p, len, 0, &got, err), 0);
            json_decref(got.body);
            free(p);
        }
    }
}
END_TEST

START_TEST(test_hmac_checks)
{
    struct kb_envelope e = sample(KB_STATE, 0), got;
    size_t len, ulen;
    char err[256];
    char *p = kb_envelope_encode(&e, "{}", 2, SECRET, strlen(SECRET), MAX, &len);
    char *u = kb_envelope_encode(&e, "{}", 2, NULL, 0, MAX, &ulen);

    ck_assert_int_eq(verify(p, len, 1, &got, err), 0);
    json_decref(got.body);
    /* missing */
    ck_assert_int_eq(verify(u, ulen, 1, &got, err), KB_EV_SIG);
    ck_assert_ptr_null(got.body);
    ck_assert_ptr_nonnull(strstr(err, "secret is required"));
    /* the wrong secret */
    ck_assert_int_eq(kb_envelope_verify(p, len, "other", 5, MAX, &got, err, sizeof err),
                     KB_EV_SIG);
    ck_assert_ptr_nonnull(strstr(err, "wrong HMAC"));
    /* each hex digit changed, one at a time */
    for (int i = 4; i < 4 + KB_SIG_HEX; i++) {
        char keep = p[i];
        p[i] = keep == '0' ? '1' : '0';
        ck_assert_int_eq(verify(p, len, 1, &got, err), KB_EV_SIG);
        p[i] = keep;
    }
    /* uppercase hex is not the format */
    for (int i = 4; i < 4 + KB_SIG_HEX; i++)
        if (p[i] >= 'a' && p[i] <= 'f') {
            p[i] = (char)(p[i] - 'a' + 'A');
            ck_assert_int_eq(verify(p, len, 1, &got, err), KB_EV_GARBAGE);
            ck_assert_int_eq(verify(p, len, 0, &got, err), KB_EV_GARBAGE);
            break;
        }
    free(p);
    free(u);
}
END_TEST

START_TEST(test_truncations)
{
    struct kb_envelope e = sample(KB_EVENT, 3), got;
    size_t len;
    char err[256];

    for (int sign = 0; sign < 2; sign++) {
        char *p =
            kb_envelope_encode(&e, body_text, strlen(body_text), sign ? SECRET : NULL,
                               sign ? strlen(SECRET) : 0, MAX, &len);
        for (size_t n = 0; n < len; n++) {
            char *cut = malloc(n + 1); /* exact size: ASan sees any over-read */
            memcpy(cut, p, n);
            ck_assert_msg(verify(cut, n, sign, &got, err) < 0, "prefix of %zu bytes", n);
            ck_assert_ptr_null(got.body);
            free(cut);
        }
        free(p);
    }
}
END_TEST

START_TEST(test_garbage)
{
    static const char *const bad[] = {
        "",
        "KM1",
        "KM1 ",
        "KM1 -",
        "KM1 - ",
        "KM2 - {}",
        "km1 - {}",
        "KM1  {}",
        "KM1 -- {}",
        "KM1 xyz {}",
        "KM1 - {}",
        "KM1 - []",
        "KM1 - null",
        "KM1 - \"x\"",
        "KM1 - {\"v\":1}",
        "hello world",
        "\x00\x01\x02",
    };
    struct kb_envelope got;
    char err[256];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(verify(bad[i], strlen(bad[i]), 0, &got, err) == KB_EV_GARBAGE, "%s",
                      bad[i]);
        ck_assert_int_lt(verify(bad[i], strlen(bad[i]), 1, &got, err), 0);
        ck_assert_ptr_null(got.body);
        ck_assert(err[0] != '\0');
    }
}
END_TEST

START_TEST(test_size_first)
{
    size_t big = 10u << 20;
    char *p = malloc(big);
    struct kb_envelope e = sample(KB_STATE, 0), got;
    char err[256];
    size_t len;

    /* 10 MiB of a valid-looking start: refused by its size, not parsed */
    memset(p, ' ', big);
    memcpy(p, "KM1 - {", 7);
    ck_assert_int_eq(verify(p, big, 1, &got, err), KB_EV_SIZE);
    ck_assert_ptr_nonnull(strstr(err, "exceeds the limit"));
    free(p);
    /* a valid envelope one byte over max is refused the same way */
    p = kb_envelope_encode(&e, "{}", 2, NULL, 0, MAX, &len);
    ck_assert_int_eq(kb_envelope_verify(p, len, NULL, 0, len - 1, &got, err, sizeof err),
                     KB_EV_SIZE);
    ck_assert_ptr_nonnull(strstr(err, "exceeds the limit"));
    ck_assert_int_eq(kb_envelope_verify(p, len, NULL, 0, len, &got, err, sizeof err), 0);
    json_decref(got.body);
    free(p);
    /* and the encoder refuses to build it, saying how big it would be */
    size_t need = 0, max = len - 1;
    ck_assert_ptr_null(kb_envelope_encode(&e, "{}", 2, NULL, 0, max, &need));
    ck_assert_uint_eq(need, len);
}
END_TEST

/* One JSON text that must be refused, signed so only the JSON is at fault. */
static void refused(const char *json, const char *why)
{
    struct kb_envelope got;
    char err[256];
    size_t len;
    char *p = make(json, 1, &len);

    ck_assert_msg(verify(p, len, 1, &got, err) == KB_EV_GARBAGE, "accepted: %s", json);
    ck_assert_ptr_null(got.body);
    ck_assert_msg(strstr(err, why) != NULL, "%s: said '%s', not '%s'", json, err, why);
    free(p);
}

#define ENV(host, topic, kind, seq, body)                                                \
    "{\"v\":1,\"host\":" host ",\"topic\":" topic ",\"kind\":" kind ",\"seq\":" seq      \
    ",\"epoch\":5,\"time\":6,\"body\":" body "}"

START_TEST(test_fields)
{
    struct kb_envelope got;
    char err[256];
    size_t len;
    char *p = make(ENV("\"h\"", "\"t\"", "\"state\"", "0", "{}"), 1, &len);

    ck_assert_msg(verify(p, len, 1, &got, err) == 0, "%s", err);
    json_decref(got.body);
    free(p);

    refused(ENV("\"a:b\"", "\"t\"", "\"state\"", "0", "{}"), "host");
    refused(ENV("\"\"", "\"t\"", "\"state\"", "0", "{}"), "host");
    refused(ENV("\"a*\"", "\"t\"", "\"state\"", "0", "{}"), "host");
    refused(ENV("\"ho st\"", "\"t\"", "\"state\"", "0", "{}"), "host");
    refused(ENV("\"h\\u0000x\"", "\"t\"", "\"state\"", "0", "{}"), "JSON");
    refused(ENV("\""
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "\"",
                "\"t\"", "\"state\"", "0", "{}"),
            "host");
    refused(ENV("7", "\"t\"", "\"state\"", "0", "{}"), "host");
    refused(ENV("\"h\"", "\"Metrics\"", "\"state\"", "0", "{}"), "topic");
    refused(ENV("\"h\"", "\"a:b\"", "\"state\"", "0", "{}"), "topic");
    refused(ENV("\"h\"", "null", "\"state\"", "0", "{}"), "topic");
    refused(ENV("\"h\"", "\"t\"", "\"State\"", "0", "{}"), "kind");
    refused(ENV("\"h\"", "\"t\"", "\"\"", "0", "{}"), "kind");
    refused(ENV("\"h\"", "\"t\"", "1", "0", "{}"), "kind");
    refused(ENV("\"h\"", "\"t\"", "null", "0", "{}"), "kind");
    refused(ENV("\"h\"", "\"t\"", "\"state\"", "1", "{}"), "seq");
    refused(ENV("\"h\"", "\"t\"", "\"event\"", "0", "{}"), "seq");
    refused(ENV("\"h\"", "\"t\"", "\"event\"", "-1", "{}"), "seq");
    refused(ENV("\"h\"", "\"t\"", "\"event\"", "\"1\"", "{}"), "seq");
    refused(ENV("\"h\"", "\"t\"", "\"event\"", "1.5", "{}"), "seq");
    refused(ENV("\"h\"", "\"t\"", "\"event\"", "99999999999999999999999", "{}"), "JSON");
    refused(ENV("\"h\"", "\"t\"", "\"state\"", "0", "[]"), "body");
    refused(ENV("\"h\"", "\"t\"", "\"state\"", "0", "\"x\""), "body");
    refused(ENV("\"h\"", "\"t\"", "\"state\"", "0", "null"), "body");
    refused("{\"v\":2,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":5,\"time\":6,\"body\":{}}",
            "v is not 1");
    refused("{\"v\":1,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":0,\"time\":6,\"body\":{}}",
            "epoch");
    refused("{\"v\":1,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":5,\"time\":-1,\"body\":{}}",
            "time");
    refused("{\"v\":1,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":5,\"time\":6,\"body\":{},\"x\":1}",
            "exactly");
    refused("{\"v\":1,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":5,\"body\":{}}",
            "exactly");
    refused("{\"v\":1,\"host\":\"h\",\"host\":\"g\",\"topic\":\"t\",\"kind\":\"state\","
            "\"seq\":0,\"epoch\":5,\"time\":6,\"body\":{}}",
            "JSON");
    refused("{\"v\":1,\"host\":\"h\",\"topic\":\"t\",\"kind\":\"state\",\"seq\":0,"
            "\"epoch\":5,\"time\":6,\"body\":{}} trailing",
            "JSON");
}
END_TEST

/* xorshift64*, fixed seed: the same bytes every run. */
static uint64_t rng = 0x4b4d31u;

static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

START_TEST(test_random)
{
    static const char alphabet[] =
        "KM1 -{}\":,0123456789abcdefvhostpickndbyme[]\\\x00\xff";
    struct kb_envelope e = sample(KB_EVENT, 9), got;
    char err[256];
    size_t len;
    char *good = kb_envelope_encode(&e, body_text, strlen(body_text), SECRET,
                                    strlen(SECRET), MAX, &len);

    for (int i = 0; i < 20000; i++) {
        size_t n = next() % 300;
        char *p = malloc(n + 1);
        for (size_t j = 0; j < n; j++)
            p[j] = (i & 1) ? (char)next() : alphabet[next() % (sizeof alphabet - 1)];
        if (n >= 4 && i % 3 == 0)
            memcpy(p, "KM1 ", 4);
        ck_assert_int_lt(verify(p, n, 1, &got, err), 0);
        if (verify(p, n, 0, &got, err) == 0) /* never expected; must not leak if so */
            json_decref(got.body);
        free(p);
    }
    /* a signed payload with one byte changed never passes with the secret */
    for (int i = 0; i < 20000; i++) {
        char *p = malloc(len);
        size_t at = next() % len;
        memcpy(p, good, len);
        p[at] = (char)(p[at] ^ (1 + next() % 255));
        ck_assert_msg(verify(p, len, 1, &got, err) < 0, "byte %zu changed", at);
        if (verify(p, len, 0, &got, err) == 0)
            json_decref(got.body); /* unsigned reading: a changed digit may pass */
        free(p);
    }
    free(good);
}
END_TEST

/* A channel that must not split. */
static void no_split(const char *ch)
{
    char host[KB_HOST_NAME_MAX + 1] = "x", topic[KB_TOPIC_NAME_MAX + 1] = "y";

    ck_assert_msg(kb_channel_split(ch, strlen(ch), "katomon", host, topic) == -1, "%s",
                  ch);
    ck_assert_str_eq(host, "");
    ck_assert_str_eq(topic, "");
}

START_TEST(test_channel_split)
{
    char host[KB_HOST_NAME_MAX + 1], topic[KB_TOPIC_NAME_MAX + 1];
    char name[200];

    ck_assert_int_eq(
        kb_channel_split("katomon:node-1.Example:metrics", 30, "katomon", host, topic),
        0);
    ck_assert_str_eq(host, "node-1.Example");
    ck_assert_str_eq(topic, "metrics");
    /* the length given is the channel: no NUL needed, none read past it */
    ck_assert_int_eq(kb_channel_split("katomon:B:alertsXYZ", 16, "katomon", host, topic),
                     0);
    ck_assert_str_eq(topic, "alerts");
    ck_assert_int_eq(kb_channel_split("p.x-1:B:t", 9, "p.x-1", host, topic), 0);
    no_split("");
    no_split("katomon");
    no_split("katomon:");
    no_split("katomon:B");
    no_split("katomon:B:");
    no_split("katomon::metrics");
    no_split("katomonx:B:metrics");
    no_split("katomo:B:metrics");
    no_split("other:B:metrics");
    no_split("katomon:B:metrics:x");
    no_split("katomon:B:Metrics");
    no_split("katomon:B*:metrics");
    no_split("katomon:B b:metrics");
    no_split("katomon:B:met rics");
    no_split("katomon:B:metrics\n");
    /* 64 bytes are a name, 65 are not */
    snprintf(name, sizeof name, "katomon:%064d:t", 0);
    ck_assert_int_eq(kb_channel_split(name, strlen(name), "katomon", host, topic), 0);
    ck_assert_uint_eq(strlen(host), 64);
    snprintf(name, sizeof name, "katomon:%065d:t", 0);
    no_split(name);
    snprintf(name, sizeof name, "katomon:h:%064d", 0);
    ck_assert_int_eq(kb_channel_split(name, strlen(name), "katomon", host, topic), 0);
    snprintf(name, sizeof name, "katomon:h:%065d", 0);
    no_split(name);
    /* a NUL inside is not a name, whatever follows it */
    ck_assert_int_eq(kb_channel_split("katomon:B\0x:t", 13, "katomon", host, topic), -1);
    ck_assert_int_eq(kb_channel_split("katomon:B:t\0", 12, "katomon", host, topic), -1);
}
END_TEST

START_TEST(test_host_names)
{
    ck_assert(km_host_name_valid("Node-1.example_A"));
    ck_assert(km_host_name_valid("x"));
    ck_assert(!km_host_name_valid(NULL));
    ck_assert(!km_host_name_valid(""));
    ck_assert(!km_host_name_valid("a:b"));
    ck_assert(!km_host_name_valid("a/b"));
    ck_assert(!km_host_name_valid("a b"));
    ck_assert(!km_host_name_valid("a?"));
    char name[KB_HOST_NAME_MAX + 2];
    memset(name, 'a', sizeof name);
    name[KB_HOST_NAME_MAX] = '\0';
    ck_assert(km_host_name_valid(name));
    name[KB_HOST_NAME_MAX] = 'a';
    name[KB_HOST_NAME_MAX + 1] = '\0';
    ck_assert(!km_host_name_valid(name));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("envelope");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_exact_text);
    tcase_add_test(tc, test_hmac_vector);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_hmac_checks);
    tcase_add_test(tc, test_truncations);
    tcase_add_test(tc, test_garbage);
    tcase_add_test(tc, test_size_first);
    tcase_add_test(tc, test_fields);
    tcase_add_test(tc, test_random);
    tcase_add_test(tc, test_host_names);
    tcase_add_test(tc, test_channel_split);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
