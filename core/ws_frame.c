/*
 * ws_frame.c - WebSocket frames both ways (see ws_frame.h): the incoming
 * frame reader and the shared, pre-built server frame.
 *
 * wslay is used for what it is good at here: its frame layer
 * (wslay_frame_recv) tokenizes the client's frames, and wslay_frame_send
 * writes our control frames (pong, ping, close). wslay_event_queue_msg is
 * not used: it copies every message for every client. wslay's frame context
 * (4 KiB of input buffer) exists only while it holds bytes of a frame, so an
 * idle connection does not pay for it (see km_reader_wake).
 *
 * A server frame is built once, with its header written into headroom left
 * in front of the text (struct km_tb), and then shared by reference: by the
 * message's cache slot, a subscription set's cache, client FIFOs and
 * libevent chains (km_frame_evb_cleanup).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <wslay/wslay.h>

#include "bus.h" /* KM_JSON_FLAGS */
#include "ws_frame.h"

/* Message buffers larger than this are released after each message. */
#define KM_WS_KEEP_BUF (16 * 1024)

/* ======================================================================
 * UTF-8 and the frame reader
 * ====================================================================== */

/*
 * state packs what the next bytes must be: bits 0-7 the count of
 * continuation bytes still due, 8-15 the lowest and 16-23 the highest
 * allowed value of the next one (tight after E0, ED, F0, F4, which is how
 * overlong forms and surrogates are refused).
 */
int km_utf8_step(uint32_t *state, const unsigned char *p, size_t len)
{
    uint32_t need = *state & 0xff, lo = (*state >> 8) & 0xff, hi = (*state >> 16) & 0xff;

    for (size_t i = 0; i < len; i++) {
        unsigned b = p[i];
        if (need) {
            if (b < lo || b > hi)
                return -1;
            need--, lo = 0x80, hi = 0xBF;
            continue;
        }
        if (b < 0x80)
            continue;
        lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b == 0xE0)
            need = 2, lo = 0xA0;
        else if (b == 0xED)
            need = 2, hi = 0x9F;
        else if (b >= 0xE1 && b <= 0xEF)
            need = 2;
        else if (b == 0xF0)
            need = 3, lo = 0x90;
        else if (b >= 0xF1 && b <= 0xF3)
            need = 3;
        else if (b == 0xF4)
            need = 3, hi = 0x8F;
        else
            return -1;
    }
    *state = need ? (need | lo << 8 | hi << 16) : 0;
    return (int)*state;
}

/* Output of wslay_frame_send for control frames. */
struct km_ws_reader {
    wslay_frame_context_ptr fctx; /* wslay's frame tokenizer (and control writer) */
    const unsigned char *in;      /* bytes being fed; the recv callback reads them */
    size_t in_len;                /* bytes left in `in` */
    km_ws_sink sink;              /* where wslay_frame_send's bytes go (set per send) */
    void *sink_arg;               /* passed to sink */
    km_ws_msg_cb cb;              /* complete messages go here */
    void *arg;                    /* passed to cb */
    size_t max_message;           /* largest reassembled data message */
    int error;                    /* close code once dead; 0 while healthy */
    const char *reason;           /* why, static text */
    int in_frame;                 /* a frame header was read, payload pending */
    int frame_op;                 /* opcode of that frame */
    uint64_t frame_left;          /* its payload bytes still to come */
    int msg_op;              /* data message being reassembled: TEXT/BINARY; 0: none */
    unsigned char *msg;      /* its bytes so far (owned) */
    size_t msg_len;          /* bytes in msg */
    size_t msg_cap;          /* bytes allocated */
    uint32_t utf8;           /* km_utf8_step state of a text message */
    unsigned char ctrl[125]; /* payload of the control frame being read */
    size_t ctrl_len;         /* bytes in ctrl */
    uint64_t fed;            /* bytes handed to wslay so far */
    uint64_t used;           /* bytes of the frames wslay reported (headers + payload) */
    int feeding;             /* inside km_ws_reader_feed: the context must stay */
};

static ssize_t km_reader_recv_cb(uint8_t *buf, size_t len, int flags, void *user_data)
{
    struct km_ws_reader *r = user_data;
    size_t n = len < r->in_len ? len : r->in_len;

    /* 0 tells wslay "no more for now" (WSLAY_ERR_WANT_READ). */
    memcpy(buf, r->in, n);
    r->in += n;
    r->in_len -= n;
    return (ssize_t)n;
}

static ssize_t km_reader_send_cb(const uint8_t *data, size_t len, int flags,
                                 void *user_data)
{
    struct km_ws_reader *r = user_data;
    /* The sink always takes everything, so wslay never splits a frame. */
    if (r->sink)
        r->sink(r->sink_arg, data, len);
    return (ssize_t)len;
}

static int km_reader_genmask_cb(uint8_t *buf, size_t len, void *user_data)
{
    memset(buf, 0, len); /* server frames are never masked; never called */
    return 0;
}

/*
 * wslay's frame context carries a 4 KiB input buffer: most of an idle
 * client's memory. So it exists only while wslay holds something of ours:
 * it is made when bytes arrive (or a control frame goes out) and freed as
 * soon as every byte fed has been reported back as whole frames (used ==
 * fed, no frame open), when its buffer is provably empty.
 */
static int km_reader_wake(struct km_ws_reader *r)
{
    static const struct wslay_frame_callbacks callbacks = {
        km_reader_send_cb, km_reader_recv_cb, km_reader_genmask_cb};

    return r->fctx || wslay_frame_context_init(&r->fctx, &callbacks, r) == 0 ? 0 : -1;
}

static void km_reader_sleep(struct km_ws_reader *r)
{
    /* not while feeding: a callback (a pong for a ping) may send a control
       frame in the middle of the feed loop, which goes on with the context */
    if (r->fctx && !r->feeding && !r->in_frame && r->used == r->fed) {
        wslay_frame_context_free(r->fctx);
        r->fctx = NULL;
    }
}

int km_ws_reader_holding(const struct km_ws_reader *r)
{
    return r->fctx != NULL;
}

struct km_ws_reader *km_ws_reader_new(size_t max_message, km_ws_msg_cb cb, void *arg)
{
    struct km_ws_reader *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->cb = cb;
    r->arg = arg;
    r->max_message = max_message ? max_message : 64 * 1024;
    return r;
}

void km_ws_reader_free(struct km_ws_reader *r)
{
    if (!r)
        return;
    if (r->fctx)
        wslay_frame_context_free(r->fctx);
    free(r->msg);
    free(r);
}

void km_ws_reader_set_max(struct km_ws_reader *r, size_t max_message)
{
    if (max_message)
        r->max_message = max_message;
}

static int km_reader_fail(struct km_ws_reader *r, int code, const char *reason)
{
    r->error = code;
    r->reason = reason;
    r->in_len = 0;
    return code;
}

static int km_close_code_valid(unsigned code)
{
    /* 1004-1006 and 1015 must never be sent; 1012-1014 are registered. */
    return (code >= 1000 && code <= 1014 && (code < 1004 || code > 1006)) ||
           (code >= 3000 && code <= 4999);
}

/* Checks a frame header; returns 0 or the close code. */
static int km_reader_start_frame(struct km_ws_reader *r,
                                 const struct wslay_frame_iocb *io)
{
    if (io->rsv)
        return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL,
                              "reserved bits set (no extension)");
    if (!io->mask)
        return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL, "client frame not masked");
    switch (io->opcode) {
    case KM_WS_OP_CONT:
        if (!r->msg_op)
            return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL,
                                  "continuation without a message");
        break;
    case KM_WS_OP_TEXT:
    case KM_WS_OP_BINARY:
        if (r->msg_op)
            return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL,
                                  "new message inside a fragmented one");
        r->msg_op = io->opcode;
        r->msg_len = 0;
        r->utf8 = 0;
        break;
    case KM_WS_OP_CLOSE:
    case KM_WS_OP_PING:
    case KM_WS_OP_PONG:
        r->ctrl_len = 0; /* wslay_frame already refused long or fragmented ones */
        break;
    default:
        return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL, "unknown opcode");
    }
    if (io->opcode < KM_WS_OP_CLOSE && (io->payload_length > r->max_message ||
                                        r->msg_len + io->payload_length > r->max_message))
        return km_reader_fail(r, KM_WS_CLOSE_TOO_BIG, "message too big");
    r->in_frame = 1;
    r->frame_op = io->opcode;
    r->frame_left = io->payload_length;
    /* header bytes: wslay refuses non-minimal lengths, so this is exact */
    r->used += 2 +
               (io->payload_length > 65535 ? 8
                : io->payload_length > 125 ? 2
                                           : 0) +
               4;
    return 0;
}

static int km_reader_append(struct km_ws_reader *r, const unsigned char *p, size_t n)
{
    if (r->frame_op >= KM_WS_OP_CLOSE) {
        memcpy(r->ctrl + r->ctrl_len, p, n); /* <= 125 in all, wslay checked */
        r->ctrl_len += n;
        return 0;
    }
    if (r->msg_op == KM_WS_OP_TEXT && km_utf8_step(&r->utf8, p, n) < 0)
        return km_reader_fail(r, KM_WS_CLOSE_BAD_DATA, "text is not UTF-8");
    if (r->msg_len + n + 1 > r->msg_cap) {
        size_t cap = r->msg_cap ? r->msg_cap : 256;
        while (cap < r->msg_len + n + 1)
            cap *= 2;
        if (cap > r->max_message + 1)
            cap = r->max_message + 1;
        unsigned char *m = realloc(r->msg, cap);
        if (!m)
            /* ours, not the client's: 1013 (try again later), not 1009 */
            return km_reader_fail(r, KM_WS_CLOSE_TRY_LATER, "out of memory");
        r->msg = m;
        r->msg_cap = cap;
    }
    memcpy(r->msg + r->msg_len, p, n);
    r->msg_len += n;
    return 0;
}

/* A frame ended. Returns 0, a close code, or -1 when cb asked to stop. */
static int km_reader_end_frame(struct km_ws_reader *r, int fin)
{
    int op = r->frame_op;

    r->in_frame = 0;
    if (op >= KM_WS_OP_CLOSE) {
        if (op == KM_WS_OP_CLOSE && r->ctrl_len > 0) {
            uint32_t st = 0;
            if (r->ctrl_len == 1)
                return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL, "close payload of 1 byte");
            if (!km_close_code_valid((unsigned)r->ctrl[0] << 8 | r->ctrl[1]))
                return km_reader_fail(r, KM_WS_CLOSE_PROTOCOL, "invalid close code");
            if (km_utf8_step(&st, r->ctrl + 2, r->ctrl_len - 2) != 0)
                return km_reader_fail(r, KM_WS_CLOSE_BAD_DATA,
                                      "close reason is not UTF-8");
        }
        return r->cb(r->arg, op, r->ctrl, r->ctrl_len) ? -1 : 0;
    }
    if (!fin)
        return 0;
    if (r->msg_op == KM_WS_OP_TEXT && r->utf8 != 0)
        return km_reader_fail(r, KM_WS_CLOSE_BAD_DATA,
                              "text ends inside a UTF-8 sequence");
    op = r->msg_op;
    r->msg_op = 0;
    if (r->msg)
        r->msg[r->msg_len] = '\0'; /* handy for text; not counted */
    int stop = r->cb(r->arg, op, r->msg ? r->msg : (const unsigned char *)"", r->msg_len);
    r->msg_len = 0;
    if (r->msg_cap > KM_WS_KEEP_BUF) {
        free(r->msg);
        r->msg = NULL;
        r->msg_cap = 0;
    }
    return stop ? -1 : 0;
}

int km_ws_reader_feed(struct km_ws_reader *r, const void *data, size_t len,
                      const char **reason)
{
    if (r->error) {
        *reason = r->reason;
        return r->error;
    }
    if (km_reader_wake(r) < 0) {
        km_reader_fail(r, KM_WS_CLOSE_TRY_LATER, "out of memory");
        *reason = r->reason;
        return r->error;
    }
    r->in = data;
    r->in_len = len;
    r->fed += len;
    r->feeding = 1;
    for (;;) {
        struct wslay_frame_iocb io;
        memset(&io, 0, sizeof io);
        ssize_t n = wslay_frame_recv(r->fctx, &io);
        if (n == WSLAY_ERR_WANT_READ)
            break; /* every byte fed is inside wslay's buffer or used */
        if (n < 0) {
            km_reader_fail(r, KM_WS_CLOSE_PROTOCOL,
                           "bad frame header (control frame too long or fragmented, "
                           "or non-minimal length)");
            break;
        }
        int rc = 0;
        /* wslay reports a frame piece by piece; the header comes with the first. */
        if (!r->in_frame)
            rc = km_reader_start_frame(r, &io);
        r->used += io.data_length;
        if (!rc && io.data_length)
            rc = km_reader_append(r, io.data, io.data_length);
        if (!rc) {
            r->frame_left -= io.data_length;
            if (r->frame_left == 0)
                rc = km_reader_end_frame(r, io.fin);
        }
        if (rc < 0) {
            r->in_len = 0; /* cb asked to stop: drop the rest */
            break;
        }
        if (rc > 0)
            break;
    }
    r->in = NULL;
    r->in_len = 0;
    r->feeding = 0;
    km_reader_sleep(r);
    *reason = r->reason;
    return r->error;
}

/* Writes one control frame through wslay into sink (always whole). */

void km_ws_reader_control(struct km_ws_reader *r, int op, const void *payload, size_t len,
                          km_ws_sink sink, void *arg)
{
    struct wslay_frame_iocb io;

    memset(&io, 0, sizeof io);
    io.fin = 1;
    io.opcode = (uint8_t)op;
    io.mask = 0;
    io.payload_length = len;
    io.data = payload;
    io.data_length = len;
    if (km_reader_wake(r) < 0)
        return; /* out of memory: the frame is lost, as a dropped packet would be */
    r->sink = sink;
    r->sink_arg = arg;
    wslay_frame_send(r->fctx, &io);
    r->sink = NULL;
    r->sink_arg = NULL;
    km_reader_sleep(r);
}

/* ======================================================================
 * Shared server frames
 * ====================================================================== */

/* Makes room for at least want payload bytes in all. */
int km_tb_reserve(struct km_tb *tb, size_t want)
{
    if (tb->failed)
        return -1;
    if (want > tb->cap) {
        size_t cap = tb->cap ? tb->cap : 512;
        while (cap < want)
            cap *= 2;
        unsigned char *p = realloc(tb->p, KM_TB_FRONT + cap);
        if (!p) {
            tb->failed = 1;
            return -1;
        }
        tb->p = p;
        tb->cap = cap;
    }
    return 0;
}

int km_tb_add(struct km_tb *tb, const void *s, size_t n)
{
    if (n == 0) /* an empty builder has no block yet: no pointer arithmetic on NULL */
        return tb->failed ? -1 : 0;
    if (tb->len + n > tb->cap && km_tb_reserve(tb, tb->len + n) != 0)
        return -1;
    if (tb->failed)
        return -1;
    memcpy(tb->p + KM_TB_FRONT + tb->len, s, n);
    tb->len += n;
    return 0;
}

int km_tb_str(struct km_tb *tb, const char *s)
{
    return km_tb_add(tb, s, strlen(s));
}

static int km_tb_json_cb(const char *buf, size_t size, void *data)
{
    return km_tb_add(data, buf, size);
}

int km_tb_json(struct km_tb *tb, json_t *j)
{
    if (json_dump_callback(j, km_tb_json_cb, tb, KM_JSON_FLAGS) != 0)
        tb->failed = 1;
    return tb->failed ? -1 : 0;
}

/* Writes the header in front of the payload. Returns the frame, or NULL
   (tb freed either way). */
struct km_frame *km_frame_from_tb(struct km_tb *tb, int opcode, int kind)
{
    struct km_frame *f;
    unsigned char hdr[KM_FRAME_HEADROOM];
    size_t hl, n = tb->len;

    if (tb->failed || !tb->p) {
        free(tb->p);
        /* emptied whole, as ws_frame.h says: a stale cap with a NULL p
           would make the next km_tb_add write through NULL */
        *tb = (struct km_tb){0};
        return NULL;
    }
    f = (struct km_frame *)(void *)tb->p;
    hdr[0] = (unsigned char)(0x80 | opcode); /* FIN, no RSV */
    if (n < 126) {
        hdr[1] = (unsigned char)n;
        hl = 2;
    } else if (n < 65536) {
        hdr[1] = 126;
        hdr[2] = (unsigned char)(n >> 8);
        hdr[3] = (unsigned char)n;
        hl = 4;
    } else {
        hdr[1] = 127;
        for (int i = 0; i < 8; i++)
            hdr[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    f->refs = 1;
    f->kind = kind;
    f->data = tb->p + KM_TB_FRONT - hl;
    memcpy(f->data, hdr, hl);
    f->len = hl + n;
    *tb = (struct km_tb){0}; /* the block is the frame's now; tb reusable */
    return f;
}

/* evbuffer_add_reference cleanup: the chain holding the frame was sent. */
void km_frame_evb_cleanup(const void *data, size_t len, void *extra)
{
    km_frame_unref(extra);
}
