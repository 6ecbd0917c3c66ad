/*
 * envelope.c - encoder and verifier of the redis_bridge payload
 * "KM1 SIG JSON" (the format: envelope.h).
 *
 * The encoder writes the JSON by hand around the body's text, so a bus
 * message is never encoded twice: the names it writes were validated by
 * the bus (topic) and at start-up (host) and need no escaping. The
 * verifier trusts nothing: it bounds the size before reading, checks the
 * signature before parsing, and parses with jansson (duplicate keys
 * refused) into a fixed set of keys.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <katomon/util.h>

#include "envelope.h"

#define KB_MAGIC     "KM1 "
#define KB_MAGIC_LEN 4

static const char kb_hexdigits[] = "0123456789abcdef";

/* HMAC-SHA256 of data into mac (32 bytes). 0 or -1. */
static int kb_hmac(const void *key, size_t key_len, const void *data, size_t len,
                   unsigned char mac[32])
{
    unsigned int n = 0;

    if (key_len > KB_SECRET_MAX)
        return -1;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &n) || n != 32)
        return -1;
    return 0;
}

int kb_hmac_hex(const void *key, size_t key_len, const void *data, size_t len,
                char out[KB_SIG_HEX + 1])
{
    unsigned char mac[32];

    if (kb_hmac(key, key_len, data, len, mac) < 0)
        return -1;
    for (int i = 0; i < 32; i++) {
        out[2 * i] = kb_hexdigits[mac[i] >> 4];
        out[2 * i + 1] = kb_hexdigits[mac[i] & 15];
    }
    out[KB_SIG_HEX] = '\0';
    return 0;
}

/* ---- encoding ---- */

char *kb_envelope_encode(const struct kb_envelope *e, const char *body, size_t body_len,
                         const void *secret, size_t secret_len, size_t max, size_t *len)
{
    char head[KB_ENVELOPE_OVERHEAD];
    int hn;
    size_t sig_len = secret && secret_len ? KB_SIG_HEX : 1;

    hn = snprintf(
        head, sizeof head,
        "{\"v\":1,\"host\":\"%s\",\"topic\":\"%s\",\"kind\":\"%s\",\"seq\":%" PRIu64
        ",\"epoch\":%" PRId64 ",\"time\":%" PRId64 ",\"body\":",
        e->host, e->topic, e->kind == KB_EVENT ? "event" : "state", e->seq, e->epoch,
        e->time);
    if (hn < 0 || (size_t)hn >= sizeof head) {
        *len = 0;
        return NULL;
    }
    size_t json_len = (size_t)hn + body_len + 1;
    *len = KB_MAGIC_LEN + sig_len + 1 + json_len;
    if (*len > max)
        return NULL;
    char *out = malloc(*len + 1);
    if (!out)
        return NULL;
    char *json = out + KB_MAGIC_LEN + sig_len + 1;
    memcpy(json, head, (size_t)hn);
    memcpy(json + hn, body, body_len);
    json[json_len - 1] = '}';
    out[*len] = '\0';
    memcpy(out, KB_MAGIC, KB_MAGIC_LEN);
    if (sig_len == 1) {
        out[KB_MAGIC_LEN] = '-';
    } else {
        char sig[KB_SIG_HEX + 1];
        if (kb_hmac_hex(secret, secret_len, json, json_len, sig) < 0) {
            free(out);
            return NULL;
        }
        memcpy(out + KB_MAGIC_LEN, sig, KB_SIG_HEX);
    }
    out[KB_MAGIC_LEN + sig_len] = ' ';
    return out;
}

/* ---- verifying ---- */

static int kb_fail(char *err, size_t errlen, const char *why)
{
    snprintf(err, errlen, "%s", why);
    return KB_EV_GARBAGE;
}

/* 64 lowercase hex digits -> 32 bytes. 0 or -1. */
static int kb_unhex(const char *s, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        const char *hi = memchr(kb_hexdigits, s[2 * i], 16);
        const char *lo = memchr(kb_hexdigits, s[2 * i + 1], 16);
        if (!s[2 * i] || !s[2 * i + 1] || !hi || !lo)
            return -1;
        out[i] = (unsigned char)((hi - kb_hexdigits) << 4 | (lo - kb_hexdigits));
    }
    return 0;
}

/* Checks SIG [sig, sig + sig_len) over the JSON. 0, or -1 with err set. */
static int kb_check_sig(const char *sig, size_t sig_len, const char *json,
                        size_t json_len, const void *secret, size_t secret_len, char *err,
                        size_t errlen)
{
    unsigned char got[32], want[32];
    int is_hex = sig_len == KB_SIG_HEX && kb_unhex(sig, got) == 0;

    if (!(sig_len == 1 && sig[0] == '-') && !is_hex)
        return kb_fail(err, errlen,
                       "the signature is neither '-' nor 64 lowercase hex digits");
    if (!secret || !secret_len)
        return 0; /* no secret here: the signature is not checked */
    if (!is_hex) {
        kb_fail(err, errlen, "unsigned ('-') but a shared secret is required");
        return KB_EV_SIG;
    }
    if (kb_hmac(secret, secret_len, json, json_len, want) < 0)
        return kb_fail(err, errlen, "cannot compute the HMAC (libcrypto)");
    if (CRYPTO_memcmp(got, want, sizeof want) != 0) {
        kb_fail(err, errlen, "wrong HMAC: not signed with this secret");
        return KB_EV_SIG;
    }
    return 0;
}

/* An integer member within [min, max]. 0 or -1. */
static int kb_int_member(json_t *o, const char *key, json_int_t min, json_int_t max,
                         json_int_t *out)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return *out >= min && *out <= max ? 0 : -1;
}

/* Fills e from the parsed JSON root (fields checked). 0 or -1 with err. */
static int kb_fields(json_t *root, struct kb_envelope *e, char *err, size_t errlen)
{
    const char *host, *topic, *kind;
    json_int_t v, seq, epoch, t;
    json_t *body;

    if (!json_is_object(root))
        return kb_fail(err, errlen, "the JSON is not an object");
    if (json_object_size(root) != 8)
        return kb_fail(err, errlen,
                       "the envelope must have exactly v, host, topic, kind, "
                       "seq, epoch, time and body");
    if (kb_int_member(root, "v", 1, 1, &v) < 0)
        return kb_fail(err, errlen, "v is not 1");
    host = json_string_value(json_object_get(root, "host"));
    if (!km_host_name_valid(host) ||
        strlen(host) != json_string_length(json_object_get(root, "host")))
        return kb_fail(err, errlen,
                       "host is not a host name ([A-Za-z0-9_.-], 1-64 bytes)");
    topic = json_string_value(json_object_get(root, "topic"));
    if (!km_topic_name_valid(topic) ||
        strlen(topic) != json_string_length(json_object_get(root, "topic")))
        return kb_fail(err, errlen,
                       "topic is not a topic name ([a-z0-9_.-], 1-64 bytes)");
    kind = json_string_value(json_object_get(root, "kind"));
    if (!kind || (strcmp(kind, "state") != 0 && strcmp(kind, "event") != 0))
        return kb_fail(err, errlen, "kind is neither \"state\" nor \"event\"");
    e->kind = kind[0] == 'e' ? KB_EVENT : KB_STATE;
    if (kb_int_member(root, "seq", 0, INT64_MAX, &seq) < 0 ||
        (e->kind == KB_STATE) != (seq == 0))
        return kb_fail(err, errlen,
                       "seq must be 0 on a state topic and >= 1 on an event topic");
    if (kb_int_member(root, "epoch", 1, INT64_MAX, &epoch) < 0)
        return kb_fail(err, errlen, "epoch is not a positive integer");
    if (kb_int_member(root, "time", 0, INT64_MAX, &t) < 0)
        return kb_fail(err, errlen, "time is not an integer >= 0");
    body = json_object_get(root, "body");
    if (!json_is_object(body))
        return kb_fail(err, errlen, "body is not a JSON object");
    snprintf(e->host, sizeof e->host, "%s", host);
    snprintf(e->topic, sizeof e->topic, "%s", topic);
    e->seq = (uint64_t)seq;
    e->epoch = epoch;
    e->time = t;
    e->body = json_incref(body);
    return 0;
}

int kb_envelope_verify(const char *payload, size_t len, const void *secret,
                       size_t secret_len, size_t max, struct kb_envelope *e, char *err,
                       size_t errlen)
{
    const char *sig, *sp, *json;
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(e, 0, sizeof *e);
    if (len > max) {
        snprintf(err, errlen, "payload of %zu bytes exceeds the limit of %zu", len, max);
        return KB_EV_SIZE;
    }
    if (len < KB_MAGIC_LEN || memcmp(payload, KB_MAGIC, KB_MAGIC_LEN) != 0)
        return kb_fail(err, errlen, "not a katomon payload (no \"KM1 \")");
    sig = payload + KB_MAGIC_LEN;
    /* the space is within the first KB_SIG_HEX + 1 bytes, or there is none */
    size_t scan =
        len - KB_MAGIC_LEN < KB_SIG_HEX + 1 ? len - KB_MAGIC_LEN : KB_SIG_HEX + 1;
    sp = memchr(sig, ' ', scan);
    if (!sp)
        return kb_fail(err, errlen, "no signature field ended by a space");
    json = sp + 1;
    size_t json_len = len - (size_t)(json - payload);
    if ((rc = kb_check_sig(sig, (size_t)(sp - sig), json, json_len, secret, secret_len,
                           err, errlen)) < 0)
        return rc;
    root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "bad JSON: %s", jerr.text);
        return KB_EV_GARBAGE;
    }
    rc = kb_fields(root, e, err, errlen);
    json_decref(root);
    return rc;
}

/* ---- channels ---- */

/* Copies [p, p + n) into out (max + 1 bytes) when 1 <= n <= max. 0 or -1. */
static int kb_part(const char *p, size_t n, char *out, size_t max)
{
    if (n == 0 || n > max || memchr(p, '\0', n))
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int kb_channel_split(const char *channel, size_t len, const char *prefix,
                     char host[KB_HOST_NAME_MAX + 1], char topic[KB_TOPIC_NAME_MAX + 1])
{
    size_t plen = strlen(prefix);
    const char *h, *colon, *end = channel + len;

    host[0] = topic[0] = '\0';
    if (len <= plen + 1 || memcmp(channel, prefix, plen) != 0 || channel[plen] != ':')
        return -1;
    h = channel + plen + 1;
    if (!(colon = memchr(h, ':', (size_t)(end - h))))
        return -1;
    if (kb_part(h, (size_t)(colon - h), host, KB_HOST_NAME_MAX) < 0 ||
        kb_part(colon + 1, (size_t)(end - colon - 1), topic, KB_TOPIC_NAME_MAX) < 0 ||
        !km_host_name_valid(host) || !km_topic_name_valid(topic)) {
        host[0] = topic[0] = '\0';
        return -1;
    }
    return 0;
}
