/*
 * fuzz_ws_client.c - what a WebSocket server sends to katomon's client
 * (core/ws_client.c: the plugins' ws_open, e.g. KATO's /ws/events): the
 * answer to the Upgrade request, then server frames (wslay's event API in
 * client mode), through km_wsc_test_stream (no socket).
 *
 * Input: byte 0: bit 0 set: the harness writes a valid 101 answer itself
 * and the rest is frames only; bits 1-2: bytes per read (all, 1, 7, 100);
 * bit 3: a message limit of 200 bytes (else the default); bits 4-7: the
 * handler closes the connection (km_wsc_close) at that message (0: never).
 * The rest: the stream.
 *
 * Properties, for every input:
 *   - on_close comes exactly once, after on_open (if any), with a reason;
 *     a message's data is never NULL, even when empty;
 *     on_open at most once and before any message; opened says whether
 *     on_open ran; no callback after on_close or km_wsc_close;
 *   - the connection opens only when the answer is "HTTP/1.x 101" and
 *     carries the expected Sec-WebSocket-Accept; with the harness's own
 *     valid answer it always opens;
 *   - after a valid answer, the messages delivered are exactly those an
 *     independent reading of RFC 6455 (ws_model.h) finds in the plain
 *     prefix of the stream (unmasked, unfragmented or fragmented text and
 *     binary within the limit, text UTF-8, pings and pongs), byte for byte
 *     and in order; a stream that is all plain frames and ends ends the
 *     connection "by the peer" with no close code; a plain close frame ends
 *     it by the peer with its code (1005 when it has none).
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include <event2/event.h>

#include "fuzz.h"
#include "ws_client.h"
#include "ws_model.h"

#define ANSWER                                                                           \
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"                         \
    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static struct event_base *base;

/* What the callbacks saw. */
static struct {
    int opened, closed, msgs, close_at;
    struct km_wsc *c;
    int handle_gone; /* km_wsc_close called, or on_close returned */
    struct km_ws_closed info;
    char reason[600];
    uint8_t *bytes; /* the messages, concatenated */
    size_t len, cap;
    size_t off[4096], mlen[4096];
    int binary[4096];
} seen;

static void on_open(struct km_wsc *c, void *arg)
{
    FUZZ_CHECK(!seen.opened && !seen.closed && !seen.handle_gone && seen.msgs == 0);
    seen.opened = 1;
}

static void on_message(struct km_wsc *c, int binary, const char *data, size_t len,
                       void *arg)
{
    FUZZ_CHECK(seen.opened && !seen.closed && !seen.handle_gone);
    FUZZ_CHECK(data != NULL); /* a borrowed buffer, even for 0 bytes (websocket.h) */
    FUZZ_CHECK(seen.msgs < 4096);
    if (seen.len + len > seen.cap) {
        seen.cap = (seen.len + len) * 2 + 4096;
        seen.bytes = realloc(seen.bytes, seen.cap);
        FUZZ_CHECK(seen.bytes != NULL);
    }
    if (len)
        memcpy(seen.bytes + seen.len, data, len);
    seen.off[seen.msgs] = seen.len;
    seen.mlen[seen.msgs] = len;
    seen.binary[seen.msgs] = binary;
    seen.len += len;
    seen.msgs++;
    if (seen.close_at && seen.msgs == seen.close_at) {
        km_wsc_close(c); /* from inside the handler: freed when it returns */
        seen.handle_gone = 1;
    }
}

static void on_close(struct km_wsc *c, const struct km_ws_closed *info, void *arg)
{
    FUZZ_CHECK(!seen.closed && !seen.handle_gone);
    FUZZ_CHECK(info->opened == seen.opened);
    FUZZ_CHECK(info->reason != NULL);
    seen.closed = 1;
    seen.info = *info;
    snprintf(seen.reason, sizeof seen.reason, "%s", info->reason);
}

/* The model's expectation of the frames in s[0..n). */
struct expect {
    size_t n;       /* messages the plain prefix holds */
    int all_plain;  /* the stream is plain frames up to its end */
    int close_code; /* a plain close frame ended it: its code (1005: none) */
};

static int same_message(size_t i, int op, const uint8_t *p, size_t len)
{
    return i < (size_t)seen.msgs && seen.binary[i] == (op == 2) && seen.mlen[i] == len &&
           (len == 0 || memcmp(seen.bytes + seen.off[i], p, len) == 0);
}

static struct expect model(const uint8_t *s, size_t n, size_t max, int check)
{
    struct expect e = {0, 0, 0};
    size_t pos = 0, msg_len = 0;
    int msg_op = 0;
    uint8_t *msg = malloc(n + 1);

    FUZZ_CHECK(msg != NULL);
    for (;;) {
        struct model_frame f;
        if (pos == n) {
            e.all_plain = msg_op == 0;
            break;
        }
        if (!model_header(s + pos, n - pos, &f) || f.len > n - pos - f.hlen)
            break; /* cut short */
        if (f.rsv || f.masked || !f.minimal || f.msb)
            break;
        const uint8_t *pay = s + pos + f.hlen;
        if (f.op >= 8) {
            if (!f.fin || f.len > 125 || f.op > 10)
                break;
            if (f.op == 8) {
                /* wslay's client refuses 1012-1014 (registered by IANA after
                   RFC 6455; katomon's server reader takes them): known, see
                   results.md */
                unsigned cc = f.len >= 2 ? ((unsigned)pay[0] << 8 | pay[1]) : 0;
                if (f.len == 1 || (f.len >= 2 && (!model_close_code_ok(cc) ||
                                                  (cc >= 1012 && cc <= 1014) ||
                                                  !model_utf8(pay + 2, f.len - 2, 0))))
                    break;
                e.close_code = f.len ? ((int)pay[0] << 8 | pay[1]) : 1005;
                break;
            }
        } else {
            if (f.op > 2 || (f.op == 0) != (msg_op != 0))
                break;
            if (f.op)
                msg_op = f.op, msg_len = 0;
            if (msg_len + f.len > max)
                break;
            memcpy(msg + msg_len, pay, f.len);
            msg_len += f.len;
            if (msg_op == 1 && !model_utf8(msg, msg_len, !f.fin))
                break;
            if (f.fin) {
                if (check && (e.n < (size_t)seen.msgs || !seen.handle_gone))
                    FUZZ_CHECKF(same_message(e.n, msg_op, msg, msg_len),
                                "message %zu differs from the model's (%d delivered)",
                                e.n, seen.msgs);
                e.n++;
                msg_op = 0;
            }
        }
        pos += f.hlen + f.len;
    }
    free(msg);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {0, 1, 7, 100};
    struct km_wsc_handlers h = {on_open, on_message, on_close, NULL};

    if (size < 1)
        return 0;
    if (!base)
        base = event_base_new();
    FUZZ_CHECK(base != NULL);
    int own_answer = data[0] & 1;
    size_t chunk = chunks[(data[0] >> 1) & 3];
    size_t max = data[0] & 8 ? 200 : 0;
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    uint8_t *stream = malloc(sizeof ANSWER + n);
    size_t slen = 0;

    FUZZ_CHECK(stream != NULL);
    if (own_answer) {
        memcpy(stream, ANSWER, sizeof ANSWER - 1);
        slen = sizeof ANSWER - 1;
    }
    if (n)
        memcpy(stream + slen, s, n);
    slen += n;
    memset(&seen, 0, offsetof(__typeof__(seen), bytes));
    seen.len = 0;
    seen.close_at = data[0] >> 4;

    seen.c = km_wsc_test_stream(base, stream, slen, chunk, max, &h);
    if (seen.c && !seen.handle_gone && !seen.closed) {
        event_base_loop(base, EVLOOP_NONBLOCK); /* on_close comes from the loop */
        FUZZ_CHECK(seen.closed);                /* the stream ended: so did it */
    }
    if (seen.handle_gone)
        FUZZ_CHECK(!seen.closed); /* closed by us: no on_close */
    else
        FUZZ_CHECK(seen.closed);
    event_base_loop(base, EVLOOP_NONBLOCK); /* nothing more may come */

    if (seen.opened) {
        /* opened only on a 101 carrying our Accept */
        FUZZ_CHECK(slen >= 12 && memcmp(stream, "HTTP/1.", 7) == 0);
        FUZZ_CHECK(memmem(stream, slen, ACCEPT, strlen(ACCEPT)) != NULL);
    }
    if (own_answer) {
        FUZZ_CHECK(seen.opened);
        struct expect e = model(s, n, max ? max : (1u << 20), 1);
        if (!seen.handle_gone) {
            /* the plain prefix's messages; a plain stream: nothing more */
            FUZZ_CHECKF((size_t)seen.msgs >= e.n, "%d messages, model %zu", seen.msgs,
                        e.n);
            if (e.all_plain || e.close_code) {
                FUZZ_CHECKF((size_t)seen.msgs == e.n, "%d messages, model %zu", seen.msgs,
                            e.n);
                FUZZ_CHECK(seen.info.by_peer);
                FUZZ_CHECKF(seen.info.code == e.close_code, "code %d, model %d (%s)",
                            seen.info.code, e.close_code, seen.reason);
            }
        }
    }
    free(stream);
    return 0;
}
