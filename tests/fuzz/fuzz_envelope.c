/*
 * fuzz_envelope.c - what a redis_bridge subscriber receives: the payload of
 * a PUBLISH (plugins/redis_bridge/envelope.c, kb_envelope_verify) and the
 * channel it came on (kb_channel_split).
 *
 * FUZZ_SOURCES: plugins/redis_bridge/envelope.c
 *
 * The first byte of the input picks the case, the rest is the payload:
 *   0  verified as it is, without a secret
 *   1  verified as it is, with the secret (a forger without it)
 *   2  the rest is the JSON part: the harness signs it with the secret
 *      ("KM1 " HMAC " " JSON) and verifies with the secret
 *   3  the same, verified with another secret
 *   4  the rest is a channel name, split with the prefix "katomon"
 *
 * Properties:
 *   - a payload longer than the limit is refused as KB_EV_SIZE before
 *     anything is read; every refusal is one of the documented codes with
 *     a reason, and leaves no body;
 *   - a payload that verifies re-encodes (kb_envelope_encode, its body as
 *     the bus would encode it) to a payload that verifies to the same
 *     envelope (host, topic, kind, seq, epoch, time, an equal body);
 *   - with a secret: a payload signed with it is never refused for its
 *     signature; the same JSON signed with another secret, unsigned, or
 *     with one hex digit of its HMAC changed, is always refused as
 *     KB_EV_SIG;
 *   - a channel that splits gives a valid host and topic, and
 *     "katomon:" HOST ":" TOPIC is the channel again.
 */
#include <string.h>

#include <jansson.h>
#include <katomon/util.h>

#include "../../plugins/redis_bridge/envelope.h"
#include "fuzz.h"

#define MAX (1u << 20)

static const char secret[] = "fuzz-shared-secret";
static const char other[] = "another-secret";

static void check_refusal(int rc, const struct kb_envelope *e, const char *err)
{
    FUZZ_CHECKF(rc == KB_EV_GARBAGE || rc == KB_EV_SIG || rc == KB_EV_SIZE,
                "undocumented code %d", rc);
    FUZZ_CHECK(e->body == NULL);
    FUZZ_CHECK(err[0] != '\0');
}

static void same(const struct kb_envelope *a, const struct kb_envelope *b)
{
    FUZZ_CHECK(strcmp(a->host, b->host) == 0);
    FUZZ_CHECK(strcmp(a->topic, b->topic) == 0);
    FUZZ_CHECK(a->kind == b->kind);
    FUZZ_CHECK(a->seq == b->seq);
    FUZZ_CHECK(a->epoch == b->epoch);
    FUZZ_CHECK(a->time == b->time);
    FUZZ_CHECK(json_equal(a->body, b->body));
}

/* A verified envelope e: re-encoded (signed with key, or unsigned) it
   verifies again to the same; with a key, tampering is refused. */
static void round_trip(const struct kb_envelope *e, const char *key)
{
    size_t klen = key ? strlen(key) : 0, len, blen;
    char *body = json_dumps(e->body, JSON_COMPACT);
    struct kb_envelope e2;
    char err[256];

    FUZZ_CHECK(body != NULL);
    blen = strlen(body);
    char *p = kb_envelope_encode(e, body, blen, key, klen, MAX, &len);
    free(body);
    if (!p) { /* only when too large */
        FUZZ_CHECK(len > MAX);
        return;
    }
    FUZZ_CHECK(strlen(p) == len);
    FUZZ_CHECK(memcmp(p, "KM1 ", 4) == 0);
    int rc = kb_envelope_verify(p, len, key, klen, MAX, &e2, err, sizeof err);
    FUZZ_CHECKF(rc == 0, "a re-encoded envelope is refused (%d: %s): %s", rc, err, p);
    same(e, &e2);
    json_decref(e2.body);
    if (key) {
        /* one hex digit of the HMAC changed (still a hex digit) */
        p[4] = p[4] == '0' ? '1' : '0';
        rc = kb_envelope_verify(p, len, key, klen, MAX, &e2, err, sizeof err);
        FUZZ_CHECKF(rc == KB_EV_SIG, "a wrong HMAC verified (%d)", rc);
        check_refusal(rc, &e2, err);
        p[4] = p[4] == '0' ? '1' : '0';
        /* signed with another secret */
        rc = kb_envelope_verify(p, len, other, strlen(other), MAX, &e2, err, sizeof err);
        FUZZ_CHECKF(rc == KB_EV_SIG, "another secret's HMAC verified (%d)", rc);
        check_refusal(rc, &e2, err);
    }
    free(p);
}

/* "KM1 " + SIG + " " + json (malloc'd, *len bytes); key NULL: unsigned. */
static char *sign(const uint8_t *json, size_t n, const char *key, size_t *len)
{
    char sig[KB_SIG_HEX + 1] = "-";
    if (key)
        FUZZ_CHECK(kb_hmac_hex(key, strlen(key), json, n, sig) == 0);
    size_t slen = strlen(sig);
    char *p = malloc(4 + slen + 1 + n + 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, "KM1 ", 4);
    memcpy(p + 4, sig, slen);
    p[4 + slen] = ' ';
    if (n)
        memcpy(p + 4 + slen + 1, json, n);
    *len = 4 + slen + 1 + n;
    p[*len] = '\0';
    return p;
}

static void channel(const uint8_t *data, size_t size)
{
    char host[KB_HOST_NAME_MAX + 1], topic[KB_TOPIC_NAME_MAX + 1], again[256];

    if (kb_channel_split((const char *)data, size, "katomon", host, topic) < 0) {
        FUZZ_CHECK(host[0] == '\0' && topic[0] == '\0');
        return;
    }
    FUZZ_CHECK(km_host_name_valid(host));
    FUZZ_CHECK(km_topic_name_valid(topic));
    int n = snprintf(again, sizeof again, "katomon:%s:%s", host, topic);
    FUZZ_CHECK(n >= 0 && (size_t)n == size && memcmp(again, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kb_envelope e;
    char err[256];
    size_t len;
    int rc;

    if (size == 0)
        return 0;
    unsigned mode = data[0] % 5;
    data++;
    size--;
    if (mode == 4) {
        channel(data, size);
        return 0;
    }
    if (mode <= 1) {
        const char *key = mode ? secret : NULL;
        size_t klen = key ? strlen(key) : 0;
        if (size > 0) {
            rc = kb_envelope_verify((const char *)data, size, key, klen, size - 1, &e,
                                    err, sizeof err);
            FUZZ_CHECK(rc == KB_EV_SIZE);
            check_refusal(rc, &e, err);
        }
        rc = kb_envelope_verify((const char *)data, size, key, klen, MAX, &e, err,
                                sizeof err);
        if (rc < 0) {
            check_refusal(rc, &e, err);
            return 0;
        }
        /* with the secret, a payload the harness did not sign verified only
           when the input holds the right HMAC (a seed may) */
        round_trip(&e, key);
        if (!key) /* and unsigned content re-signed with a secret */
            round_trip(&e, secret);
        json_decref(e.body);
        return 0;
    }
    /* 2, 3: signed here */
    char *p = sign(data, size, secret, &len);
    const char *key = mode == 2 ? secret : other;
    rc = kb_envelope_verify(p, len, key, strlen(key), MAX, &e, err, sizeof err);
    if (mode == 3) {
        FUZZ_CHECKF(rc == KB_EV_SIG, "another secret's HMAC: %d (%s)", rc, err);
        check_refusal(rc, &e, err);
    } else if (rc < 0) {
        FUZZ_CHECKF(rc == KB_EV_GARBAGE, "a rightly signed payload refused: %d (%s)", rc,
                    err);
        check_refusal(rc, &e, err);
    } else {
        round_trip(&e, secret);
        json_decref(e.body);
    }
    free(p);
    /* the same JSON unsigned: refused by a receiver with a secret */
    p = sign(data, size, NULL, &len);
    rc = kb_envelope_verify(p, len, secret, strlen(secret), MAX, &e, err, sizeof err);
    FUZZ_CHECKF(rc == KB_EV_SIG, "an unsigned payload with a secret: %d", rc);
    check_refusal(rc, &e, err);
    free(p);
    return 0;
}
