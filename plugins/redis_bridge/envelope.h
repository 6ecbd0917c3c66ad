/*
 * envelope.h - the redis_bridge wire format: what one katomon PUBLISHes
 * on Redis for one bus message, and the checks a receiver runs on it.
 * Pure functions (no I/O, no globals), shared by the publishing half and
 * the subscribing half of the bridge and by its unit test.
 *
 * Channel: PREFIX:HOST:TOPIC. Payload (ASCII, one space between parts):
 *
 *   KM1 SIG JSON
 *
 *   KM1   the format's name and version
 *   SIG   64 lowercase hex digits: HMAC-SHA256 of the JSON bytes exactly
 *         as sent, keyed with the shared secret; "-" when unsigned
 *   JSON  {"v":1,"host":HOST,"topic":TOPIC,"kind":"state"|"event",
 *          "seq":N,"epoch":E,"time":T,"body":BODY}
 *         in this key order, compact: seq the event's seq (>= 1; 0 on a
 *         state topic), epoch the publishing bus's epoch (µs since the
 *         epoch: event seqs restart with it), time the message's publish
 *         time (µs), BODY the message's own JSON object as its bus encoded it
 *
 * A receiver with a secret refuses "-" and any wrong SIG (compared in
 * constant time); one without a secret ignores SIG. Names follow the bus's
 * rules: HOST [A-Za-z0-9_.-]{1,64}, TOPIC [a-z0-9_.-]{1,64}; neither can
 * hold ':' or a glob character, so the channel splits without ambiguity.
 */
#ifndef KB_ENVELOPE_H
#define KB_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include <katomon/util.h>

#define KB_HOST_NAME_MAX  KM_HOST_NAME_MAX  /* longest host name, bytes */
#define KB_TOPIC_NAME_MAX KM_TOPIC_NAME_MAX /* longest topic name, bytes */
#define KB_SIG_HEX        64                /* hex digits of an HMAC-SHA256 */
#define KB_SECRET_MAX     4096              /* longest shared secret, bytes */
/* Bytes the envelope adds around BODY, at most (the prefix, the signature,
   the fixed keys, two names of 64 bytes and four 20-digit numbers). */
#define KB_ENVELOPE_OVERHEAD 512

/* Kinds, as the bus's topic kinds. */
enum kb_kind {
    KB_STATE = 1, /* "state": seq is 0 */
    KB_EVENT = 2, /* "event": seq >= 1 */
};

/* What an envelope says (kb_envelope_encode's input, kb_envelope_verify's
   output). */
struct kb_envelope {
    char host[KB_HOST_NAME_MAX + 1];   /* publishing host */
    char topic[KB_TOPIC_NAME_MAX + 1]; /* topic on that host */
    enum kb_kind kind;                 /* state or event */
    uint64_t seq;                      /* event seq; 0 on state */
    int64_t epoch;                     /* the publisher's bus epoch, µs */
    int64_t time;                      /* publish time, µs */
    json_t *body;                      /* verify: the body (new reference; the
                                          caller releases it); encode: unused */
};

/* Why kb_envelope_verify refused a payload (its return value). */
#define KB_EV_GARBAGE -1 /* not the format: no "KM1 ", bad JSON, bad fields */
#define KB_EV_SIG     -2 /* a secret is required: unsigned, or the wrong HMAC */
#define KB_EV_SIZE    -3 /* larger than max: refused before anything was read */

/*
 * Builds the payload of envelope `e` with body text `body` (body_len bytes,
 * a JSON object as the bus encoded it; not checked) signed with `secret`
 * (secret_len bytes; NULL or 0 bytes: unsigned, SIG "-"). Returns a new
 * buffer (free()) and its length in *len, or NULL on ENOMEM or when the
 * payload would exceed max bytes (*len is then the size it would have).
 */
char *kb_envelope_encode(const struct kb_envelope *e, const char *body, size_t body_len,
                         const void *secret, size_t secret_len, size_t max, size_t *len);

/*
 * Checks payload (len bytes, untrusted; need not end in NUL) and fills *e
 * (e->body a new reference) on success. In order: the size (more than max
 * bytes is refused before anything is read), "KM1 ", SIG (a secret given:
 * 64 lowercase hex digits equal to the HMAC of the JSON bytes; none: "-"
 * or 64 hex digits, not checked), the JSON (an object with exactly the
 * eight keys, v 1, valid names, a known kind, seq 0 for state and >= 1 for
 * event, epoch > 0, time >= 0, body an object). Returns 0, or KB_EV_SIZE,
 * KB_EV_SIG or KB_EV_GARBAGE with the reason in err (e->body NULL).
 */
int kb_envelope_verify(const char *payload, size_t len, const void *secret,
                       size_t secret_len, size_t max, struct kb_envelope *e, char *err,
                       size_t errlen);

/* Lowercase hex HMAC-SHA256 of data with key into out (KB_SIG_HEX + 1 bytes).
   0, or -1 (libcrypto failed). */
int kb_hmac_hex(const void *key, size_t key_len, const void *data, size_t len,
                char out[KB_SIG_HEX + 1]);

/*
 * Splits a channel name (len bytes, untrusted; need not end in NUL) of
 * the form PREFIX:HOST:TOPIC whose PREFIX equals `prefix`: copies HOST and
 * TOPIC, both checked against their name rules (km_host_name_valid,
 * km_topic_name_valid), into host and topic. 0, or -1 (another prefix, a
 * part missing, empty or too long, a bad name, a third ':').
 */
int kb_channel_split(const char *channel, size_t len, const char *prefix,
                     char host[KB_HOST_NAME_MAX + 1], char topic[KB_TOPIC_NAME_MAX + 1]);

#endif /* KB_ENVELOPE_H */
