/*
 * fuzz_ws_frame.c - a client's bytes after the /ws upgrade, as the server
 * reads them (core/ws_frame.c: struct km_ws_reader, over wslay's frame
 * layer), and the server's own frames (km_ws_reader_control, km_frame).
 *
 * Input: byte 0 picks the message limit (bit 0: 200 bytes, else 64 KiB)
 * and the feeding (bit 1: one byte per call, for inputs of 512 bytes or
 * less; else two calls split at byte 1's share of the stream); the rest is
 * the stream.
 *
 * Properties, against an independent reading of RFC 6455 (ws_model.h):
 *   - every frame the model decodes re-encodes (header in the same form,
 *     payload masked with its key) to exactly the bytes it came from;
 *   - the reader delivers exactly the messages the model expects (text,
 *     binary reassembled from fragments, ping, pong, close), byte for byte,
 *     however the stream is split, and ends with the close code the model
 *     expects: 0 while the stream is good, 1002 for bad framing (reserved
 *     bits, unmasked, unknown opcode, bad fragmentation, long or fragmented
 *     control frames, non-minimal lengths, bad close payloads), 1007 for
 *     text or a close reason that is not UTF-8, 1009 past the limit; a dead
 *     reader keeps its code; a reader between frames holds no buffer;
 *   - a pong the server writes back for a ping, and a server text frame
 *     built for a text message, are single unmasked FIN frames whose
 *     payload is the message.
 */
#include <string.h>

#include "fuzz.h"
#include "ws_frame.h"
#include "ws_model.h"

/* One message the reader (or the model) produced. */
struct msg {
    int op;
    size_t off, len; /* in the owning log's bytes */
};

/* What came out, in order. */
struct log {
    struct msg m[16384];
    size_t n;
    uint8_t *bytes;
    size_t len, cap;
};

static void log_add(struct log *l, int op, const uint8_t *p, size_t n)
{
    FUZZ_CHECK(l->n < sizeof l->m / sizeof l->m[0]);
    if (l->len + n > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + n)
            cap *= 2;
        l->bytes = realloc(l->bytes, cap);
        FUZZ_CHECK(l->bytes != NULL);
        l->cap = cap;
    }
    if (n)
        memcpy(l->bytes + l->len, p, n);
    l->m[l->n++] = (struct msg){op, l->len, n};
    l->len += n;
}

static struct log got, want;
static struct km_ws_reader *reader;
static uint8_t sunk[256];
static size_t sunk_len;

static void sink(void *arg, const unsigned char *data, size_t len)
{
    FUZZ_CHECK(sunk_len + len <= sizeof sunk);
    memcpy(sunk + sunk_len, data, len);
    sunk_len += len;
}

/* A server frame (unmasked, FIN, op) carrying exactly p[0..n). */
static void check_server_frame(const uint8_t *f, size_t flen, int op, const uint8_t *p,
                               size_t n)
{
    struct model_frame h;
    FUZZ_CHECK(model_header(f, flen, &h));
    FUZZ_CHECK(h.fin && !h.rsv && !h.masked && h.op == op && h.minimal);
    FUZZ_CHECK(h.len == n && h.hlen + n == flen);
    FUZZ_CHECK(n == 0 || memcmp(f + h.hlen, p, n) == 0);
}

static int on_msg(void *arg, int op, const unsigned char *data, size_t len)
{
    log_add(&got, op, data, len);
    if (op == KM_WS_OP_PING) { /* as ws_conn.c answers: a pong from the reader */
        sunk_len = 0;
        km_ws_reader_control(reader, KM_WS_OP_PONG, data, len, sink, NULL);
        check_server_frame(sunk, sunk_len, KM_WS_OP_PONG, data, len);
    } else if (op == KM_WS_OP_TEXT) { /* echoed as a shared server frame */
        struct km_tb tb = {0};
        km_tb_add(&tb, data, len);
        struct km_frame *f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_PRIVATE);
        FUZZ_CHECK(f != NULL || len == 0); /* an empty builder has no block */
        if (f) {
            check_server_frame(f->data, f->len, KM_WS_OP_TEXT, data, len);
            km_frame_unref(f);
        }
    }
    return 0;
}

enum end { END_CLEAN, END_ERROR, END_PARTIAL };

/*
 * The model: the messages s[0..n) must give, into want; returns how it
 * ends and, in *code, the close code (END_ERROR) or the codes a reader may
 * already have given on a cut-short frame (END_PARTIAL: 0 or *code or
 * *code2).
 */
static enum end model(const uint8_t *s, size_t n, size_t max, int *code, int *code2)
{
    size_t pos = 0;
    int msg_op = 0;
    uint8_t *msg = malloc(max + 1), *pay = malloc(n + 1), *enc = malloc(n + 14);
    size_t msg_len = 0;
    enum end e;

    FUZZ_CHECK(msg && pay && enc);
    *code = *code2 = 0;
    for (;;) {
        struct model_frame f;
        if (pos == n) {
            e = END_CLEAN;
            break;
        }
        if (!model_header(s + pos, n - pos, &f)) {
            *code = model_header_bad_early(s + pos, n - pos) ? 1002 : 0;
            e = END_PARTIAL;
            break;
        }
        int err = 0;
        int is_ctrl = f.op >= 8;
        if (!f.minimal || f.msb || (is_ctrl && (!f.fin || f.len > 125)))
            err = 1002; /* malformed header */
        else if (f.rsv || !f.masked)
            err = 1002;
        else if (!(f.op <= 2 || (f.op >= 8 && f.op <= 10)))
            err = 1002;
        else if (f.op == 0 && !msg_op)
            err = 1002;
        else if ((f.op == 1 || f.op == 2) && msg_op)
            err = 1002;
        else if (!is_ctrl && (f.op == 0 ? msg_len : 0) + f.len > max)
            err = 1009;
        size_t avail = n - pos - f.hlen;
        if (!err && f.len > avail) { /* cut short inside the payload */
            *code = 0;
            if (!is_ctrl && (f.op == 1 || (f.op == 0 && msg_op == 1))) {
                /* what came of the payload may already be bad text */
                size_t start = f.op == 0 ? msg_len : 0;
                memcpy(msg + start, s + pos + f.hlen, avail);
                for (size_t i = 0; i < avail; i++)
                    msg[start + i] ^= f.key[i & 3];
                if (!model_utf8(msg, start + avail, 1))
                    *code = 1007;
            }
            e = END_PARTIAL;
            break;
        }
        if (err) {
            *code = err;
            /* a frame cut short may not have been looked at yet */
            e = f.len > avail ? END_PARTIAL : END_ERROR;
            break;
        }
        /* the frame decodes and re-encodes to its own bytes */
        for (uint64_t i = 0; i < f.len; i++)
            pay[i] = s[pos + f.hlen + i] ^ f.key[i & 3];
        size_t h = model_write_header(&f, enc);
        FUZZ_CHECK(h == f.hlen);
        for (uint64_t i = 0; i < f.len; i++)
            enc[h + i] = pay[i] ^ f.key[i & 3];
        FUZZ_CHECK(memcmp(enc, s + pos, h + f.len) == 0);
        pos += f.hlen + f.len;
        if (f.op == 8) {
            if (f.len == 1 ||
                (f.len >= 2 && !model_close_code_ok((unsigned)pay[0] << 8 | pay[1])))
                err = 1002;
            else if (f.len >= 2 && !model_utf8(pay + 2, f.len - 2, 0))
                err = 1007;
            else
                log_add(&want, 8, pay, f.len);
        } else if (is_ctrl) {
            log_add(&want, f.op, pay, f.len);
        } else {
            if (f.op) {
                msg_op = f.op;
                msg_len = 0;
            }
            memcpy(msg + msg_len, pay, f.len);
            msg_len += f.len;
            if (msg_op == 1 && !model_utf8(msg, msg_len, !f.fin))
                err = 1007;
            else if (f.fin) {
                log_add(&want, msg_op, msg, msg_len);
                msg_op = 0;
            }
        }
        if (err) {
            *code = err;
            e = END_ERROR;
            break;
        }
    }
    free(msg);
    free(pay);
    free(enc);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = data[0] & 1 ? 200 : 65536;
    int bytewise = (data[0] & 2) && size <= 512;
    const uint8_t *s = data + 2;
    size_t n = size - 2, cut = n * data[1] / 256;
    const char *reason = NULL;
    int rc = 0, code, code2;

    got.n = got.len = 0;
    want.n = want.len = 0;
    reader = km_ws_reader_new(max, on_msg, NULL);
    FUZZ_CHECK(reader != NULL);
    if (bytewise) {
        for (size_t i = 0; i < n && !rc; i++)
            rc = km_ws_reader_feed(reader, s + i, 1, &reason);
    } else {
        rc = km_ws_reader_feed(reader, s, cut, &reason);
        if (!rc)
            rc = km_ws_reader_feed(reader, s + cut, n - cut, &reason);
    }
    enum end e = model(s, n, max, &code, &code2);

    /* the same messages, in the same order, byte for byte */
    FUZZ_CHECKF(got.n == want.n, "%zu messages, the model expects %zu (rc %d %s)", got.n,
                want.n, rc, reason ? reason : "");
    for (size_t i = 0; i < got.n; i++) {
        FUZZ_CHECK(got.m[i].op == want.m[i].op);
        FUZZ_CHECK(got.m[i].len == want.m[i].len);
        FUZZ_CHECK(got.m[i].len == 0 ||
                   memcmp(got.bytes + got.m[i].off, want.bytes + want.m[i].off,
                          got.m[i].len) == 0);
    }
    switch (e) {
    case END_CLEAN:
        FUZZ_CHECKF(rc == 0, "rc %d (%s) on a good stream", rc, reason);
        FUZZ_CHECK(!km_ws_reader_holding(reader)); /* idle between frames */
        break;
    case END_ERROR:
        FUZZ_CHECKF(rc == code, "rc %d (%s), the model expects %d", rc,
                    reason ? reason : "", code);
        break;
    case END_PARTIAL:
        FUZZ_CHECKF(rc == 0 || rc == code,
                    "rc %d (%s) on a cut-short frame, model: 0 or %d", rc,
                    reason ? reason : "", code);
        break;
    }
    if (rc) { /* dead: every later call returns the same */
        FUZZ_CHECK(reason != NULL);
        const char *r2 = NULL;
        FUZZ_CHECK(km_ws_reader_feed(reader, "\x81\x80xxxx", 6, &r2) == rc);
    }
    km_ws_reader_free(reader);
    reader = NULL;
    return 0;
}
