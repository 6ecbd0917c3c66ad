/*
 * ws.c - the WebSocket transport (DESIGN sections 2, 5, 8; see ws.h).
 *
 * ---- Wire mapping of bus topics -----------------------------------------
 *
 * State topics feed `realtime_update`, one key per topic, named after it:
 *
 *   {"type":"realtime_update","timestamp":"...Z",
 *    "data":{"metrics":<latest metrics body>,"containers":<...>,
 *            "sessions":<...>,"host":<...>, ...}}
 *
 * sent every [websocket] update_interval from the latest values (not on
 * every publish: state conflates by design), trimmed to the state topics
 * the client subscribed to (a client that never subscribed gets every state
 * topic), and skipped when there is nothing to put in `data`. A katomon/1
 * client that subscribes also gets one at once, so a dashboard paints
 * without waiting for the next tick (a compatible client does not: the
 * original frontend would re-render, re-subscribe and loop).
 *
 * Event topics go out as soon as they are published:
 *
 *   session_events  body {"event_type","timestamp","data"}
 *                -> {"type":"session_event",<body keys>[,"seq":N]}
 *   system_alerts   body {"id","timestamp","alerts"}
 *                -> {"type":"system_alert",<body keys>[,"seq":N]}
 *   any other T  -> {"type":"event","topic":T,"seq":N,"timestamp":<publish
 *                    time>,"data":<body>}
 *
 * (A body key named "type" or "seq" is dropped in the first two forms; a
 * missing "timestamp" is filled with the publish time, a missing alert "id"
 * with "alert_<ms>" as the original did.) The first two forms exist twice,
 * one frame per dialect: katomon/1's carries the topic's seq and the alert
 * items as published (a resolved one: its level, "state":"resolved");
 * the compatible one has no seq, and its alert items have no "state" and a
 * resolved one goes as level "info" (see km_compat_alert). Timestamps are
 * UTC ISO 8601 with microseconds and a Z.
 *
 * Subscribe: a compatible client's set grows to the union of every set it
 * sent, silently (see km_client_subscribe_compat); a katomon/1 client's is
 * replaced and acknowledged. The dialect is declared by "protocol":
 * "katomon/1" in a subscribe and holds for the connection.
 *
 * Replies (katomon/1 only, but heartbeat): {"type":"heartbeat","timestamp"}
 * for text "ping";
 * {"type":"subscription_ack","subscriptions":[...],"unknown":[...],
 * "timestamp","epoch":E,"last_seq":{"session_events":N,...}} for every
 * subscribe (epoch: this run of the daemon, see km_bus_epoch - a client
 * whose seqs came from another epoch must start again from 0; last_seq: the
 * current seq of each subscribed event topic) ("unknown" lists names with no topic on
 * the bus yet; they stay subscribed and are delivered if a plugin declares
 * them later); {"type":"error","error":CODE,"detail":TEXT[,"topics":[..]]}
 * for bad JSON (bad_json), a bad request (bad_request, bad_since), an
 * unknown type (unknown_type) or unknown topics (unknown_topic); and for a
 * `since` that cannot be honoured fully, before the replayed messages:
 * {"type":"replay_gap","topic":T,"requested_since":N,"oldest_available":M,
 *  "last_seq":L,"missed":K,"reason":R} (M is 0 when the ring is empty):
 * R "not_in_ring" - messages N+1..M-1 are gone (sent before the replay);
 * R "since_ahead" - N > L: the daemon restarted and seq began again;
 * R "truncated"   - the replay stopped at half the client's queue bound
 *                   (sent after the replayed messages); "resume_since" is
 *                   the seq to ask from once these are read.
 *
 * ---- Fan-out --------------------------------------------------------------
 *
 * The hub subscribes to the bus once with "*". Each message becomes JSON
 * and a complete server frame (header + payload, struct km_frame, reference
 * counted) once (per dialect, for session_event and system_alert), and that
 * frame is shared by every client that receives it:
 *   - an event's frames are built on first need and kept in the message's
 *     cache slot (km_msg_set_cache), so replay reuses them too;
 *   - clients with the same subscription set share one interned struct
 *     km_subset; a realtime_update is built once per set per tick (or per
 *     state change, for immediate sends on subscribe) and cached in it.
 * A client's output is a bounded FIFO of frame references. A "pump" moves
 * frames from the FIFO into the bufferevent's output with
 * evbuffer_add_reference (zero copy; the chain's cleanup drops the
 * reference) while that output holds less than KM_WS_PUMP_BYTES, so the
 * kernel is fed without copying, and frames not yet pumped can still be
 * conflated or dropped. When that output is empty (the common case: the
 * client keeps up), the pump first hands the FIFO's head frames straight to
 * the socket with one sendmsg(), skipping libevent's write registration and
 * chain allocation per client; only what the kernel did not take goes
 * through the bufferevent. Nothing can be overtaken: libevent holds nothing
 * for that socket at that moment.
 *
 * wslay is used for what it is good at here: its frame layer
 * (wslay_frame_recv) tokenizes the client's frames, and wslay_frame_send
 * writes our control frames (pong, ping, close). wslay_event_queue_msg is
 * not used: it copies every message for every client. wslay's frame context
 * (4 KiB of input buffer) exists only while it holds bytes of a frame, so an
 * idle connection does not pay for it (see km_reader_wake).
 *
 * ---- Ordering of control and data frames -------------------------------
 *
 * The bufferevent output only ever receives whole frames: the pump adds
 * whole data frames, and control frames are written through a
 * wslay_frame_send callback that accepts every byte at once. So a control
 * frame appended to the output always lands on a frame boundary - after the
 * data frames already pumped, before every frame still in the FIFO - and
 * can never split a data frame (we never fragment outgoing messages). A
 * pong thus overtakes queued broadcast data, which RFC 6455 allows. After a
 * close frame the FIFO is emptied and nothing is pumped again.
 *
 * ---- Backpressure -----------------------------------------------------------
 *
 * Each client may hold max_queue_bytes unsent (FIFO + bufferevent output).
 * A realtime_update still in the FIFO is replaced by the newer one
 * (conflation); one that does not fit is skipped (the next tick brings a
 * fresh one). An event or reply that does not fit closes the client with
 * 1008 "send queue full; reconnect with since": events are never dropped
 * silently, and the client can come back and replay from its last seq. A
 * closing client gets close_wait seconds to take its close frame, then its
 * socket is closed. Nothing waits on a client, so one stalled client costs
 * the others nothing and costs the daemon at most its bound. The kernel's
 * share is capped too (KM_WS_SNDBUF), so the bound acts in bounded time,
 * and a `since` replay may use only half the bound (see "truncated").
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <wslay/wslay.h>

#include "bus.h"
#include "log.h"
#include "ws.h"

/* Kernel send buffer of a WebSocket socket. Without it, Linux autotuning
   lets a peer that stopped reading park megabytes in the kernel before our
   own bound (max_queue_bytes) even sees them; dashboard traffic is small,
   so this costs no throughput. */
#define KM_WS_SNDBUF (128 * 1024)
/* Output bytes handed to libevent at once; the rest waits in the FIFO. */
#define KM_WS_PUMP_BYTES (64 * 1024)
/* Room for the longest server frame header (2 + 8 bytes). */
#define KM_FRAME_HEADROOM 10
/*
 * Flood limits, three token buckets per client (rate per second, burst):
 * messages that make the hub work (a subscribe that changes something, a
 * ping, anything answered), every message however cheap (the original
 * frontend re-sends unchanged subscribes hundreds of times a second; a
 * flood is tens of thousands), and payload bytes. Past any: 1008.
 */
#define KM_WS_MSG_RATE    20.0
#define KM_WS_MSG_BURST   100.0
#define KM_WS_FRAME_RATE  2000.0
#define KM_WS_FRAME_BURST 4000.0
#define KM_WS_BYTE_RATE   (256.0 * 1024)
#define KM_WS_BYTE_BURST  (1024.0 * 1024)
/* Recent compatible subscribe texts remembered per client (by hash): the
   original frontend's three components send three distinct texts. */
#define KM_WS_SEEN 8
/* Error replies a client may earn within KM_WS_ERR_WINDOW_US before it is
   closed as a flooder. */
#define KM_WS_MAX_ERRORS    20
#define KM_WS_ERR_WINDOW_US (10 * 1000000LL)
/* Message buffers larger than this are released after each message. */
#define KM_WS_KEEP_BUF (16 * 1024)

static const char *const KM_WS_QUEUE_FULL = "send queue full; reconnect with since";

/* ======================================================================
 * Small helpers
 * ====================================================================== */

static int64_t km_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t km_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void km_iso_time(int64_t us, char *buf, size_t buflen)
{
    /* The date and time of the last second formatted (per thread): every
       realtime_update of a tick, and most events, fall in the same second. */
    static __thread time_t day_sec;
    static __thread size_t day_len; /* 0: nothing cached */
    static __thread char day[24];
    time_t sec = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);

    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    if (!day_len || sec != day_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        day_len = strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
        day_sec = sec;
    }
    if (day_len && buflen >= day_len + 9) {
        char *p = buf + day_len;
        memcpy(buf, day, day_len);
        *p++ = '.';
        for (int i = 5; i >= 0; i--) {
            p[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        p[6] = 'Z';
        p[7] = '\0';
        return;
    }
    snprintf(buf, buflen, "%s.%06ldZ", day, frac);
}

static struct timeval km_tv(double seconds)
{
    struct timeval tv;
    if (seconds < 0.001)
        seconds = 0.001;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

/* ---- SHA-1 (RFC 3174), only for Sec-WebSocket-Accept ---- */

static uint32_t km_rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void km_sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80], a, b, c, d, e;

    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = km_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = km_rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = km_rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

void km_sha1(const void *data, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = len / 64 * 64, rest = len - full, n;
    uint64_t bits = (uint64_t)len * 8;

    for (size_t i = 0; i < full; i += 64)
        km_sha1_block(h, p + i);
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    n = rest + 1 <= 56 ? 64 : 128;
    memset(tail + rest + 1, 0, n - rest - 1);
    for (int i = 0; i < 8; i++)
        tail[n - 1 - i] = (unsigned char)(bits >> (8 * i));
    km_sha1_block(h, tail);
    if (n == 128)
        km_sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static const char km_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void km_base64(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = km_b64[(v >> 18) & 63];
        out[o++] = km_b64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? km_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? km_b64[v & 63] : '=';
    }
    out[o] = '\0';
}

int km_ws_key_valid(const char *key)
{
    /* 16 bytes encode to 22 characters and "==". */
    if (!key || strlen(key) != 24 || key[22] != '=' || key[23] != '=')
        return 0;
    for (int i = 0; i < 22; i++)
        if (!strchr(km_b64, key[i]) || key[i] == '\0')
            return 0;
    return 1;
}

void km_ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char cat[128];
    unsigned char digest[20];
    int n = snprintf(cat, sizeof cat, "%s%s", key, guid);

    if (n < 0 || (size_t)n >= sizeof cat)
        n = (int)sizeof cat - 1;
    km_sha1(cat, (size_t)n, digest);
    km_base64(digest, sizeof digest, out);
}

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
typedef void (*km_ws_sink)(void *arg, const unsigned char *data, size_t len);

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
            return km_reader_fail(r, KM_WS_CLOSE_TOO_BIG, "out of memory");
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
static void km_reader_send_control(struct km_ws_reader *r, int op, const void *payload,
                                   size_t len, km_ws_sink sink, void *arg)
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
 * Client requests
 * ====================================================================== */

static int km_strcmp_p(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void km_ws_request_clear(struct km_ws_request *req)
{
    for (size_t i = 0; i < req->n_names; i++)
        free(req->names[i]);
    free(req->names);
    for (size_t i = 0; i < req->n_since; i++)
        free(req->since[i].topic);
    free(req->since);
    memset(req, 0, sizeof *req);
}

static int km_is_text_ping(const char *text, size_t len)
{
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    while (len && isspace((unsigned char)*text))
        text++, len--;
    return len == 4 && strncasecmp(text, "ping", 4) == 0;
}

static int km_parse_subscribe(json_t *j, struct km_ws_request *out, char *detail,
                              size_t detaillen)
{
    json_t *subs = json_object_get(j, "subscriptions");
    json_t *since = json_object_get(j, "since");
    size_t i;
    json_t *v;

    if (!json_is_array(subs)) {
        snprintf(detail, detaillen, "\"subscriptions\" must be an array of topic names");
        return -1;
    }
    if (json_array_size(subs) > KM_WS_MAX_SUBS) {
        snprintf(detail, detaillen, "at most %d subscriptions", KM_WS_MAX_SUBS);
        return -1;
    }
    out->names = calloc(json_array_size(subs) + 1, sizeof *out->names);
    if (!out->names)
        goto nomem;
    json_array_foreach(subs, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || !km_topic_name_valid(s)) {
            snprintf(detail, detaillen,
                     "subscriptions[%zu] is not a topic name ([a-z0-9_.-], at most %d "
                     "bytes)",
                     i, KM_TOPIC_NAME_MAX);
            return -1;
        }
        if (!(out->names[out->n_names] = strdup(s)))
            goto nomem;
        out->n_names++;
    }
    qsort(out->names, out->n_names, sizeof *out->names, km_strcmp_p);
    /* unique */
    size_t w = 0;
    for (i = 0; i < out->n_names; i++) {
        if (w && strcmp(out->names[w - 1], out->names[i]) == 0) {
            free(out->names[i]);
            continue;
        }
        out->names[w++] = out->names[i];
    }
    out->n_names = w;

    if (since && !json_is_null(since)) {
        const char *key;
        if (!json_is_object(since)) {
            snprintf(detail, detaillen,
                     "\"since\" must be an object of topic -> last seq seen");
            return -1;
        }
        if (json_object_size(since) > KM_WS_MAX_SUBS) {
            snprintf(detail, detaillen, "at most %d entries in \"since\"",
                     KM_WS_MAX_SUBS);
            return -1;
        }
        out->since = calloc(json_object_size(since) + 1, sizeof *out->since);
        if (!out->since)
            goto nomem;
        json_object_foreach(since, key, v)
        {
            if (!km_topic_name_valid(key)) {
                snprintf(detail, detaillen,
                         "\"since\" has a key that is not a topic name");
                return -1;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                snprintf(detail, detaillen,
                         "since.%s must be a non-negative integer (the last seq seen)",
                         key);
                return -1;
            }
            if (!(out->since[out->n_since].topic = strdup(key)))
                goto nomem;
            out->since[out->n_since].seq = (uint64_t)json_integer_value(v);
            out->n_since++;
        }
    }
    return 0;
nomem:
    snprintf(detail, detaillen, "out of memory");
    return -1;
}

int km_ws_parse_request(const char *text, size_t len, struct km_ws_request *out,
                        char *code, size_t codelen, char *detail, size_t detaillen)
{
    json_error_t jerr;
    json_t *j;
    const char *type;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (km_is_text_ping(text, len)) {
        out->type = KM_WS_REQ_PING;
        return 0;
    }
    j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        snprintf(code, codelen, "bad_json");
        snprintf(detail, detaillen, "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return -1;
    }
    snprintf(code, codelen, "bad_request");
    if (!json_is_object(j)) {
        snprintf(detail, detaillen, "a request is a JSON object with a \"type\"");
        goto out;
    }
    type = json_string_value(json_object_get(j, "type"));
    if (!type) {
        snprintf(detail, detaillen, "the request has no \"type\" string");
        goto out;
    }
    if (strcmp(type, "ping") == 0) {
        out->type = KM_WS_REQ_PING;
        rc = 0;
    } else if (strcmp(type, "subscribe") == 0) {
        json_t *proto = json_object_get(j, "protocol");
        out->type = KM_WS_REQ_SUBSCRIBE;
        if (proto) {
            const char *ps = json_string_value(proto);
            if (!ps || strcmp(ps, KM_WS_PROTOCOL) != 0) {
                snprintf(code, codelen, "bad_protocol");
                snprintf(detail, detaillen,
                         "unsupported \"protocol\" (this server speaks \"%s\", or the "
                         "original dashboard's protocol when none is given)",
                         KM_WS_PROTOCOL);
                goto out;
            }
            out->katomon = 1;
        }
        rc = km_parse_subscribe(j, out, detail, detaillen);
    } else {
        snprintf(code, codelen, "unknown_type");
        snprintf(detail, detaillen,
                 "unknown message type \"%.64s\" (known: subscribe, ping)", type);
    }
out:
    json_decref(j);
    if (rc != 0) {
        int katomon = out->katomon; /* the caller picks its answer by dialect */
        km_ws_request_clear(out);
        out->katomon = katomon;
    }
    return rc;
}

/* ======================================================================
 * Shared frames
 * ====================================================================== */

enum km_frame_kind {
    KM_FRAME_EVENT = 1,   /* an event message: never dropped silently */
    KM_FRAME_STATE = 2,   /* a realtime_update: conflates */
    KM_FRAME_PRIVATE = 3, /* a reply to one client: treated like an event */
};

/* One complete server frame, shared read-only by every client queue. It is
   one allocation: this struct, then KM_FRAME_HEADROOM bytes for the header,
   then the payload (see KM_TB_FRONT). */
struct km_frame {
    unsigned refs;       /* holders: msg cache slot, set cache, FIFO entries,
                            evbuffer chains */
    int kind;            /* enum km_frame_kind */
    size_t len;          /* bytes on the wire: header + payload */
    unsigned char *data; /* first header byte, inside this block */
};

/* Bytes in front of a km_tb's text: the frame struct (aligned), then the
   header's headroom. */
#define KM_TB_FRONT (((sizeof(struct km_frame) + 15) & ~(size_t)15) + KM_FRAME_HEADROOM)

/* Growable text with KM_TB_FRONT spare bytes in front for the frame struct and
   the header. */
struct km_tb {
    unsigned char *p; /* block (owned until km_frame_from_tb) */
    size_t len;       /* payload bytes after the headroom */
    size_t cap;       /* payload bytes allocated after the headroom */
    int failed;       /* an allocation failed; the text is incomplete */
};

/* Makes room for at least want payload bytes in all. */
static int km_tb_reserve(struct km_tb *tb, size_t want)
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

static int km_tb_add(struct km_tb *tb, const void *s, size_t n)
{
    if (tb->len + n > tb->cap && km_tb_reserve(tb, tb->len + n) != 0)
        return -1;
    if (tb->failed)
        return -1;
    memcpy(tb->p + KM_TB_FRONT + tb->len, s, n);
    tb->len += n;
    return 0;
}

static int km_tb_str(struct km_tb *tb, const char *s)
{
    return km_tb_add(tb, s, strlen(s));
}

static int km_tb_json_cb(const char *buf, size_t size, void *data)
{
    return km_tb_add(data, buf, size);
}

static int km_tb_json(struct km_tb *tb, json_t *j)
{
    if (json_dump_callback(j, km_tb_json_cb, tb, KM_JSON_FLAGS) != 0)
        tb->failed = 1;
    return tb->failed ? -1 : 0;
}

/* Writes the header in front of the payload. Returns the frame, or NULL
   (tb freed either way). */
static struct km_frame *km_frame_from_tb(struct km_tb *tb, int opcode, int kind)
{
    struct km_frame *f;
    unsigned char hdr[KM_FRAME_HEADROOM];
    size_t hl, n = tb->len;

    if (tb->failed || !tb->p) {
        free(tb->p);
        tb->p = NULL;
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
    tb->p = NULL;
    return f;
}

static struct km_frame *km_frame_ref(struct km_frame *f)
{
    f->refs++;
    return f;
}

static void km_frame_unref(struct km_frame *f)
{
    if (f && --f->refs == 0)
        free(f); /* the struct and its bytes: one block */
}

/* evbuffer_add_reference cleanup: the chain holding the frame was sent. */
static void km_frame_evb_cleanup(const void *data, size_t len, void *extra)
{
    km_frame_unref(extra);
}

/* ======================================================================
 * The hub, subscription sets, clients
 * ====================================================================== */

/* Clients with the same subscription set share one of these. */
struct km_subset {
    char *key;                    /* canonical: sorted names joined by '\n'; "*" = all */
    int all;                      /* never subscribed: every topic */
    char **names;                 /* sorted topic names (owned); NULL when all */
    size_t n_names;               /* number of names */
    struct km_ws_client *members; /* clients in the set (list via set_next) */
    size_t n_members;             /* number of members */
    struct km_frame *rt;          /* realtime_update built for this set, or NULL */
    uint64_t rt_gen;              /* hub state_gen when rt was built */
    uint64_t rt_tick;             /* hub tick when rt was built */
    struct km_subset *next;       /* hub's list */
    struct km_subset *prev;       /* hub's list */
};

enum km_wsc_state {
    KM_WSC_OPEN = 1,    /* messages flow */
    KM_WSC_CLOSING = 2, /* close frame in the output; waiting for it to drain */
    KM_WSC_LINGER = 3,  /* drained, write side shut; reading until EOF or close_wait */
    KM_WSC_DEAD = 4,    /* waiting to be freed (reap list) */
};

struct km_ws_client {
    /* touched for every member on every tick (km_client_send): kept together */
    struct km_ws *ws;              /* hub */
    struct evbuffer *out;          /* bev's output (cached: read per send) */
    evutil_socket_t fd;            /* bev's socket (cached) */
    enum km_wsc_state state;       /* see enum */
    enum km_ws_dialect dialect;    /* compatible until a katomon/1 subscribe */
    struct km_ws_client *set_next; /* next member of set */
    uint64_t q_head;               /* absolute index of the oldest entry */
    uint64_t q_tail;               /* absolute index one past the newest */
    uint64_t frames_out;           /* frames queued (shared and private) */
    uint64_t id;                   /* 1, 2, ... for GET /api/v1/ws/subscriptions */
    char peer[64];                 /* "ADDR:PORT" */
    struct bufferevent *bev;       /* the socket (owned) */
    struct km_ws_reader *reader;   /* incoming frames (owned) */
    int subscribed;                /* sent at least one valid subscribe */
    struct km_subset *set;         /* current subscription set (a reference) */
    struct km_ws_client *set_prev; /* previous member of set */
    struct km_ws_client *next;     /* hub's list of clients */
    struct km_ws_client *prev;     /* hub's list of clients */
    struct km_frame **q;           /* FIFO ring of frame references (owned refs) */
    size_t q_cap;                  /* slots in q (power of two) */
    size_t q_bytes;                /* bytes of the frames in q */
    int state_pending;             /* q holds a realtime_update not yet pumped */
    uint64_t state_pos;            /* its absolute index */
    int64_t connected_wall_us;     /* when it attached (wall clock) */
    int64_t last_rx_us;            /* last frame from the peer (monotonic) */
    int64_t last_ping_us;          /* last server ping (monotonic) */
    int64_t closing_us;            /* when the close began (monotonic) */
    uint16_t close_code;           /* code we sent (0: none yet) */
    double tokens;                 /* work bucket (KM_WS_MSG_RATE) */
    double ftokens;                /* message bucket (KM_WS_FRAME_RATE) */
    double btokens;                /* byte bucket (KM_WS_BYTE_RATE) */
    int64_t tokens_us;             /* when the buckets were last refilled */
    uint64_t seen[KM_WS_SEEN];     /* hashes of compatible subscribe texts already
                                      merged into the union (0: empty slot) */
    unsigned seen_next;            /* next slot of seen to overwrite */
    int warned;                    /* a dropped request was logged already */
    unsigned errors;               /* error replies in the current window */
    int64_t errors_since_us;       /* start of that window */
    uint64_t msgs_in;              /* messages received */
    km_ws_gone_cb gone;            /* told when the socket is closed */
    void *gone_arg;                /* passed to gone */
};

struct km_ws {
    struct km_core *core;         /* loop, bus (borrowed) */
    struct km_ws_limits lim;      /* current settings */
    struct km_sub *sub;           /* the one "*" bus subscription */
    struct event *tick_ev;        /* realtime_update timer */
    struct event *hk_ev;          /* housekeeping: pings, idle, close_wait */
    struct event *reap_ev;        /* frees dead clients outside callbacks */
    struct km_ws_client *clients; /* every live client */
    struct km_ws_client *dead;    /* clients to free (list via next) */
    struct km_subset *sets;       /* interned subscription sets */
    uint64_t next_id;             /* id of the next client */
    uint64_t hash_key;            /* per-run key of km_text_hash (random) */
    uint64_t state_gen;           /* + 1 on every state-topic publish */
    uint64_t tick_no;             /* realtime_update ticks so far */
    struct km_ws_stats stats;     /* counters */
};

static void km_client_close(struct km_ws_client *c, int code, const char *reason);
static void km_client_kill(struct km_ws_client *c);

/* ---- subscription sets ---- */

static int km_subset_wants(const struct km_subset *s, const char *topic)
{
    if (s->all)
        return 1;
    if (s->n_names == 0)
        return 0; /* names is NULL then, and bsearch's base must not be */
    return bsearch(&topic, s->names, s->n_names, sizeof *s->names, km_strcmp_p) != NULL;
}

static void km_subset_free(struct km_ws *ws, struct km_subset *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        ws->sets = s->next;
    if (s->next)
        s->next->prev = s->prev;
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    free(s->key);
    km_frame_unref(s->rt);
    free(s);
    ws->stats.sets--;
}

/* The interned set for (names, all): found or made. names are sorted and
   unique; copied. NULL on ENOMEM. */
static struct km_subset *km_subset_get(struct km_ws *ws, char *const *names, size_t n,
                                       int all)
{
    size_t keylen = 2;
    struct km_subset *s;
    char *key;

    for (size_t i = 0; i < n; i++)
        keylen += strlen(names[i]) + 1;
    if (!(key = malloc(keylen)))
        return NULL;
    if (all) {
        strcpy(key, "*");
    } else {
        char *p = key;
        *p = '\0';
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(names[i]);
            if (i)
                *p++ = '\n';
            memcpy(p, names[i], l);
            p += l;
            *p = '\0';
        }
    }
    for (s = ws->sets; s; s = s->next) {
        if (strcmp(s->key, key) == 0) {
            free(key);
            return s;
        }
    }
    if (!(s = calloc(1, sizeof *s)))
        goto fail;
    s->key = key;
    s->all = all;
    if (!all && n) {
        if (!(s->names = calloc(n, sizeof *s->names)))
            goto fail;
        for (size_t i = 0; i < n; i++) {
            if (!(s->names[i] = strdup(names[i])))
                goto fail;
            s->n_names++;
        }
    }
    s->next = ws->sets;
    if (ws->sets)
        ws->sets->prev = s;
    ws->sets = s;
    ws->stats.sets++;
    return s;
fail:
    if (s) {
        for (size_t i = 0; i < s->n_names; i++)
            free(s->names[i]);
        free(s->names);
        free(s);
    }
    free(key);
    return NULL;
}

static void km_subset_leave(struct km_ws_client *c)
{
    struct km_subset *s = c->set;
    if (!s)
        return;
    if (c->set_prev)
        c->set_prev->set_next = c->set_next;
    else
        s->members = c->set_next;
    if (c->set_next)
        c->set_next->set_prev = c->set_prev;
    c->set = NULL;
    c->set_next = c->set_prev = NULL;
    if (--s->n_members == 0)
        km_subset_free(c->ws, s);
}

static void km_subset_join(struct km_ws_client *c, struct km_subset *s)
{
    if (c->set == s)
        return;
    km_subset_leave(c); /* may free the old set, never s (s has no client c) */
    c->set = s;
    c->set_prev = NULL;
    c->set_next = s->members;
    if (s->members)
        s->members->set_prev = c;
    s->members = c;
    s->n_members++;
}

/* ---- building frames ---- */

/* The frames of one event message, one per dialect, kept in the message's
   cache slot (one allocation). A topic other than session_events and
   system_alerts has one frame, referenced from both slots. */
struct km_ev_frames {
    struct km_frame *f[2]; /* [enum km_ws_dialect]: built on first need, or NULL */
};

static void km_ev_frames_free(void *p)
{
    struct km_ev_frames *ef = p;
    km_frame_unref(ef->f[0]);
    km_frame_unref(ef->f[1]);
    free(ef);
}

/*
 * An alert item as the original frontend knows it (new reference): a
 * resolved notice goes as level "info" (its message already says
 * "(resolved)"; as "error" it would show as a red ERROR toast), and
 * katomon's "state" stays out.
 */
static json_t *km_compat_alert(json_t *a)
{
    const char *state = json_string_value(json_object_get(a, "state"));
    json_t *o;

    if (!json_is_object(a) || !(o = json_copy(a)))
        return json_incref(a);
    if (state && strcmp(state, "resolved") == 0)
        json_object_set_new(o, "level", json_string("info"));
    json_object_del(o, "state");
    return o;
}

/* The text of a session_event or system_alert for one dialect, into tb. */
static void km_event_text(struct km_tb *tb, struct km_msg *msg, int alerts,
                          enum km_ws_dialect d, const char *ts)
{
    json_t *body = km_msg_json(msg), *o = json_object(), *v;
    const char *k;

    if (!o) {
        tb->failed = 1;
        return;
    }
    json_object_set_new(o, "type",
                        json_string(alerts ? "system_alert" : "session_event"));
    if (alerts && !json_object_get(body, "id")) {
        char id[40];
        snprintf(id, sizeof id, "alert_%lld", (long long)(km_msg_time_us(msg) / 1000));
        json_object_set_new(o, "id", json_string(id));
    }
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "type") == 0 || strcmp(k, "seq") == 0)
            continue;
        if (alerts && d == KM_WS_COMPAT && strcmp(k, "alerts") == 0 && json_is_array(v)) {
            json_t *list = json_array(), *a;
            size_t i;
            json_array_foreach(v, i, a) json_array_append_new(list, km_compat_alert(a));
            json_object_set_new(o, k, list);
        } else {
            json_object_set(o, k, v); /* a reference, not a copy */
        }
    }
    if (!json_object_get(body, "timestamp"))
        json_object_set_new(o, "timestamp", json_string(ts));
    if (d == KM_WS_KATOMON)
        json_object_set_new(o, "seq", json_integer((json_int_t)km_msg_seq(msg)));
    km_tb_json(tb, o);
    json_decref(o);
}

/* The event frame of msg for dialect d, built once and kept in msg's cache
   slot. Borrowed. NULL on ENOMEM. */
static struct km_frame *km_event_frame(struct km_ws *ws, struct km_msg *msg,
                                       enum km_ws_dialect d)
{
    struct km_ev_frames *ef = km_msg_cache(msg);
    struct km_frame *f;
    const char *name;
    struct km_tb tb = {0};
    char ts[40];
    int alerts, original;

    if (ef && ef->f[d])
        return ef->f[d];
    if (!ef) {
        if (!(ef = calloc(1, sizeof *ef)))
            return NULL;
        km_msg_set_cache(msg, ef, km_ev_frames_free);
    }
    name = km_topic_name(km_msg_topic(msg));
    alerts = strcmp(name, "system_alerts") == 0;
    original = alerts || strcmp(name, "session_events") == 0;
    km_iso_time(km_msg_time_us(msg), ts, sizeof ts);
    if (original) {
        km_event_text(&tb, msg, alerts, d, ts);
    } else {
        const char *text;
        size_t tlen;
        char num[32];
        snprintf(num, sizeof num, "%llu", (unsigned long long)km_msg_seq(msg));
        km_tb_str(&tb, "{\"type\":\"event\",\"topic\":\"");
        km_tb_str(&tb, name); /* [a-z0-9_.-]: nothing to escape */
        km_tb_str(&tb, "\",\"seq\":");
        km_tb_str(&tb, num);
        km_tb_str(&tb, ",\"timestamp\":\"");
        km_tb_str(&tb, ts);
        km_tb_str(&tb, "\",\"data\":");
        if ((text = km_msg_text(msg, &tlen)))
            km_tb_add(&tb, text, tlen);
        else
            tb.failed = 1;
        km_tb_str(&tb, "}");
    }
    if (!(f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_EVENT)))
        return NULL;
    ws->stats.json_encodes++;
    ws->stats.frames_built++;
    ef->f[d] = f;
    if (!original) /* katomon's own envelope: the same bytes for both dialects */
        ef->f[!d] = km_frame_ref(f);
    return f;
}

/* Appends "name":<latest text> for a state topic with a value. */
static void km_rt_add(struct km_tb *tb, struct km_topic *t, int *count)
{
    struct km_msg *m;
    const char *text;
    size_t len;

    if (!t || km_topic_kind(t) != KM_TOPIC_STATE || !(m = km_topic_latest(t)))
        return;
    if (!(text = km_msg_text(m, &len))) {
        tb->failed = 1;
        return;
    }
    km_tb_str(tb, *count ? ",\"" : "\"");
    km_tb_str(tb, km_topic_name(t));
    km_tb_str(tb, "\":");
    km_tb_add(tb, text, len);
    (*count)++;
}

struct km_rt_all {
    struct km_tb *tb; /* text being built */
    int *count;       /* keys so far */
};

static void km_rt_add_each(struct km_topic *t, void *arg)
{
    struct km_rt_all *a = arg;
    km_rt_add(a->tb, t, a->count);
}

/*
 * The realtime_update frame of set s for the current tick and state
 * (borrowed, cached in s), or NULL when s has no state topic with a value.
 * The JSON is spliced from the bus's cached text of each latest message, so
 * no body is encoded again here.
 */
static struct km_frame *km_state_frame(struct km_ws *ws, struct km_subset *s)
{
    struct km_tb tb = {0};
    char ts[40];
    int count = 0;

    if (s->rt && s->rt_gen == ws->state_gen && s->rt_tick == ws->tick_no)
        return s->rt;
    /* The last one's size is a good guess: one allocation, no realloc. */
    if (s->rt)
        km_tb_reserve(&tb, s->rt->len + 256);
    km_iso_time(km_wall_us(), ts, sizeof ts);
    km_tb_str(&tb, "{\"type\":\"realtime_update\",\"timestamp\":\"");
    km_tb_str(&tb, ts);
    km_tb_str(&tb, "\",\"data\":{");
    if (s->all) {
        struct km_rt_all a = {&tb, &count};
        km_bus_foreach(ws->core->bus, km_rt_add_each, &a);
    } else {
        for (size_t i = 0; i < s->n_names; i++)
            km_rt_add(&tb, km_bus_find(ws->core->bus, s->names[i]), &count);
    }
    km_tb_str(&tb, "}}");
    if (count == 0) {
        free(tb.p);
        return NULL;
    }
    struct km_frame *f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_STATE);
    if (!f)
        return NULL;
    ws->stats.json_encodes++;
    ws->stats.frames_built++;
    km_frame_unref(s->rt);
    s->rt = f;
    s->rt_gen = ws->state_gen;
    s->rt_tick = ws->tick_no;
    return f;
}

/* A frame for one client from a JSON object (steals o). NULL on ENOMEM. */
static struct km_frame *km_private_frame(struct km_ws *ws, json_t *o)
{
    struct km_tb tb = {0};
    if (!o)
        return NULL;
    km_tb_json(&tb, o);
    json_decref(o);
    ws->stats.private_frames++;
    return km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_PRIVATE);
}

/* ---- a client's output ---- */

static size_t km_client_queued(const struct km_ws_client *c)
{
    return c->q_bytes + evbuffer_get_length(c->out);
}

static void km_client_drop_queue(struct km_ws_client *c)
{
    for (uint64_t i = c->q_head; i < c->q_tail; i++) {
        km_frame_unref(c->q[i & (c->q_cap - 1)]);
        c->q[i & (c->q_cap - 1)] = NULL;
    }
    c->q_head = c->q_tail = 0;
    c->q_bytes = 0;
    c->state_pending = 0;
}

/* Room for one more entry; ring slots keep their absolute index mod cap. */
static int km_client_q_grow(struct km_ws_client *c)
{
    size_t cap = c->q_cap ? c->q_cap * 2 : 16;
    struct km_frame **q = calloc(cap, sizeof *q);
    if (!q)
        return -1;
    for (uint64_t i = c->q_head; i < c->q_tail; i++)
        q[i & (cap - 1)] = c->q[i & (c->q_cap - 1)];
    free(c->q);
    c->q = q;
    c->q_cap = cap;
    return 0;
}

/* Moves frames from the FIFO into the socket's output while it is short. */
static void km_client_pump(struct km_ws_client *c)
{
    struct evbuffer *out;

    if (c->state != KM_WSC_OPEN)
        return;
    out = c->out;
    /* Fast path: libevent holds nothing for this socket, so bytes written here
       cannot overtake any: hand the FIFO's head frames to the kernel at once
       (one sendmsg; no EV_WRITE registration, no evbuffer chain). A frame the
       socket took only part of goes on through the bufferevent. */
    if (c->q_head < c->q_tail && evbuffer_get_length(out) == 0) {
        struct iovec iov[16];
        struct msghdr mh;
        size_t bytes = 0;
        int k = 0;
        ssize_t n;
        for (uint64_t pos = c->q_head;
             pos < c->q_tail && k < 16 && bytes < KM_WS_PUMP_BYTES; pos++) {
            struct km_frame *f = c->q[pos & (c->q_cap - 1)];
            if (!f)
                continue;
            iov[k].iov_base = f->data;
            iov[k].iov_len = f->len;
            bytes += f->len;
            k++;
        }
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)k;
        n = k ? sendmsg(c->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
        if (n > 0) {
            size_t left = (size_t)n;
            while (c->q_head < c->q_tail && left > 0) {
                uint64_t pos = c->q_head++;
                struct km_frame *f = c->q[pos & (c->q_cap - 1)];
                c->q[pos & (c->q_cap - 1)] = NULL;
                if (c->state_pending && c->state_pos == pos)
                    c->state_pending = 0;
                if (!f)
                    continue;
                c->q_bytes -= f->len;
                if (left >= f->len) {
                    left -= f->len;
                    km_frame_unref(f);
                    continue;
                }
                if (evbuffer_add_reference(out, f->data + left, f->len - left,
                                           km_frame_evb_cleanup, f) != 0) {
                    km_frame_unref(f);
                    km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
                    return;
                }
                left = 0;
            }
        }
        /* n < 0 (EAGAIN, or an error libevent will report): the path below */
    }
    while (c->q_head < c->q_tail && evbuffer_get_length(out) < KM_WS_PUMP_BYTES) {
        uint64_t pos = c->q_head++;
        struct km_frame *f = c->q[pos & (c->q_cap - 1)];
        c->q[pos & (c->q_cap - 1)] = NULL;
        if (c->state_pending && c->state_pos == pos)
            c->state_pending = 0;
        if (!f)
            continue; /* a dropped realtime_update */
        c->q_bytes -= f->len;
        /* the FIFO's reference moves to the evbuffer chain */
        if (evbuffer_add_reference(out, f->data, f->len, km_frame_evb_cleanup, f) != 0) {
            km_frame_unref(f);
            km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
            return;
        }
    }
}

/*
 * Queues frame f (a new reference is taken) for c, applying the bound:
 * state conflates or is skipped, anything else closes c when it does not
 * fit. Returns 0 when queued.
 */
static int km_client_send(struct km_ws_client *c, struct km_frame *f)
{
    struct km_ws *ws = c->ws;
    size_t queued;

    if (c->state != KM_WSC_OPEN)
        return -1;
    /* Fast path (the common case: the client keeps up): nothing is queued
       anywhere, so nothing can be overtaken; give f to the kernel at once
       without touching the FIFO. What the socket does not take goes the
       usual way: a partial frame's rest through the bufferevent, a refused
       frame into the FIFO below. */
    if (c->q_head == c->q_tail && f->len <= ws->lim.max_queue_bytes &&
        evbuffer_get_length(c->out) == 0) {
        ssize_t n = send(c->fd, f->data, f->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            if ((size_t)n < f->len &&
                evbuffer_add_reference(c->out, f->data + n, f->len - (size_t)n,
                                       km_frame_evb_cleanup, km_frame_ref(f)) != 0) {
                km_frame_unref(f);
                km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
                return -1;
            }
            if (f->kind != KM_FRAME_PRIVATE)
                ws->stats.frames_queued++;
            c->frames_out++;
            return 0;
        }
        /* n <= 0 (EAGAIN, or an error libevent will report): queue it */
    }
    queued = km_client_queued(c);
    if (f->kind == KM_FRAME_STATE && c->state_pending) {
        struct km_frame **slot = &c->q[c->state_pos & (c->q_cap - 1)];
        size_t old = *slot ? (*slot)->len : 0;
        km_frame_unref(*slot);
        *slot = NULL;
        c->q_bytes -= old;
        ws->stats.state_conflated++;
        if (queued - old + f->len > ws->lim.max_queue_bytes) {
            ws->stats.state_skipped++;
            return -1; /* stale one gone, new one does not fit: next tick */
        }
        *slot = km_frame_ref(f);
        c->q_bytes += f->len;
        ws->stats.frames_queued++;
        c->frames_out++;
        return 0;
    }
    if (queued + f->len > ws->lim.max_queue_bytes) {
        if (f->kind == KM_FRAME_STATE) {
            ws->stats.state_skipped++;
            return -1;
        }
        ws->stats.closed_slow++;
        km_log(KM_LOG_INFO, "ws client %llu (%s): %zu bytes unsent, bound %zu: closing",
               (unsigned long long)c->id, c->peer, queued, ws->lim.max_queue_bytes);
        km_client_close(c, KM_WS_CLOSE_POLICY, KM_WS_QUEUE_FULL);
        return -1;
    }
    if (c->q_tail - c->q_head == c->q_cap && km_client_q_grow(c) != 0) {
        km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
        return -1;
    }
    if (f->kind == KM_FRAME_STATE) {
        c->state_pending = 1;
        c->state_pos = c->q_tail;
    }
    c->q[c->q_tail++ & (c->q_cap - 1)] = km_frame_ref(f);
    c->q_bytes += f->len;
    if (f->kind != KM_FRAME_PRIVATE)
        ws->stats.frames_queued++;
    c->frames_out++;
    km_client_pump(c);
    return 0;
}

/* Sends a one-client JSON reply (steals o). */
static void km_client_reply(struct km_ws_client *c, json_t *o)
{
    struct km_frame *f = km_private_frame(c->ws, o);
    if (!f) {
        km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
        return;
    }
    km_client_send(c, f);
    km_frame_unref(f);
}

static void km_client_sink(void *arg, const unsigned char *data, size_t len)
{
    struct km_ws_client *c = arg;
    evbuffer_add(bufferevent_get_output(c->bev), data, len);
}

/* A control frame, straight to the output (at a frame boundary, see top). */
static void km_client_control(struct km_ws_client *c, int op, const void *payload,
                              size_t len)
{
    km_reader_send_control(c->reader, op, payload, len, km_client_sink, c);
}

/* ---- closing ---- */

static void km_ws_reap_soon(struct km_ws *ws)
{
    event_active(ws->reap_ev, EV_TIMEOUT, 0);
}

/* Marks c dead: no callback reaches it again; freed by the reap event. */
static void km_client_kill(struct km_ws_client *c)
{
    struct km_ws *ws = c->ws;

    if (c->state == KM_WSC_DEAD)
        return;
    c->state = KM_WSC_DEAD;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    /* move from the live list to the dead list */
    if (c->prev)
        c->prev->next = c->next;
    else
        ws->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = ws->dead;
    ws->dead = c;
    km_subset_leave(c);
    ws->stats.clients--;
    km_ws_reap_soon(ws);
}

static void km_client_free(struct km_ws_client *c)
{
    km_log(KM_LOG_DEBUG, "ws client %llu (%s): gone (close code sent: %u)",
           (unsigned long long)c->id, c->peer, (unsigned)c->close_code);
    km_client_drop_queue(c);
    free(c->q);
    bufferevent_free(c->bev); /* closes the socket; pending chains are released */
    km_ws_reader_free(c->reader);
    if (c->gone)
        c->gone(c->gone_arg);
    free(c);
}

static void km_ws_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_ws *ws = arg;
    while (ws->dead) {
        struct km_ws_client *c = ws->dead;
        ws->dead = c->next;
        km_client_free(c);
    }
}

/* The close frame is out: stop writing, read until the peer hangs up. */
static void km_client_linger(struct km_ws_client *c)
{
    c->state = KM_WSC_LINGER;
    /* FIN after our close frame; reading on avoids a RST that could destroy
       the close frame before the peer reads it. */
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
}

/*
 * Starts the close: empties the FIFO (nothing is pumped after a close
 * frame), writes the close frame, and lingers once it has drained. The
 * close_wait deadline (housekeeping) ends it if the peer never reads.
 */
static void km_client_close(struct km_ws_client *c, int code, const char *reason)
{
    unsigned char payload[125];
    size_t rl = reason ? strlen(reason) : 0;

    if (c->state != KM_WSC_OPEN)
        return;
    if (rl > 123)
        rl = 123;
    km_client_drop_queue(c);
    c->state = KM_WSC_CLOSING;
    c->close_code = (uint16_t)code;
    c->closing_us = km_now_us();
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason, rl);
    km_client_control(c, KM_WS_OP_CLOSE, payload, code ? 2 + rl : 0);
    /* the write callback fires when the output is empty */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        km_client_linger(c);
}

/* ---- incoming messages ---- */

/* Adds dt seconds of rate to a bucket, up to burst. */
static double km_refill(double tokens, double dt, double rate, double burst)
{
    tokens += dt * rate;
    return tokens > burst ? burst : tokens;
}

/*
 * Charges one incoming message of len payload bytes to the message and
 * byte buckets (refilled first). Returns NULL, or why c is flooding.
 */
static const char *km_client_flooding(struct km_ws_client *c, int64_t now, size_t len)
{
    double dt = (double)(now - c->tokens_us) / 1e6;

    c->tokens_us = now;
    c->tokens = km_refill(c->tokens, dt, KM_WS_MSG_RATE, KM_WS_MSG_BURST);
    c->ftokens = km_refill(c->ftokens, dt, KM_WS_FRAME_RATE, KM_WS_FRAME_BURST);
    c->btokens = km_refill(c->btokens, dt, KM_WS_BYTE_RATE, KM_WS_BYTE_BURST);
    if (c->ftokens < 1.0)
        return "too many messages";
    c->ftokens -= 1.0;
    if (c->btokens < (double)len)
        return "too many bytes";
    c->btokens -= (double)len;
    return NULL;
}

/* Takes one unit of work from c's work bucket: 0, or -1 when it is empty. */
static int km_client_work(struct km_ws_client *c)
{
    if (c->tokens < 1.0)
        return -1;
    c->tokens -= 1.0;
    return 0;
}

/* Keyed FNV-1a (64 bit) of a client's text; never 0 (0 marks a free slot).
   The per-run key keeps a peer from choosing colliding texts. */
static uint64_t km_text_hash(const struct km_ws *ws, const unsigned char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ ws->hash_key;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= (uint64_t)len * 0x9e3779b97f4a7c15ULL;
    return h ? h : 1;
}

static int km_client_seen(const struct km_ws_client *c, uint64_t h)
{
    for (unsigned i = 0; i < KM_WS_SEEN; i++)
        if (c->seen[i] == h)
            return 1;
    return 0;
}

static void km_client_remember(struct km_ws_client *c, uint64_t h)
{
    if (!h || km_client_seen(c, h))
        return;
    c->seen[c->seen_next] = h;
    c->seen_next = (c->seen_next + 1) % KM_WS_SEEN;
}

/* Sends an error reply; closes the client when it earned too many. */
static void km_client_error(struct km_ws_client *c, const char *code, const char *detail,
                            json_t *topics)
{
    int64_t now = km_now_us();
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "type", "error", "error", code, "detail", detail);

    if (o && topics)
        json_object_set(o, "topics", topics);
    km_client_reply(c, o);
    if (now - c->errors_since_us > KM_WS_ERR_WINDOW_US) {
        c->errors_since_us = now;
        c->errors = 0;
    }
    if (++c->errors > KM_WS_MAX_ERRORS) {
        c->ws->stats.closed_protocol++;
        km_client_close(c, KM_WS_CLOSE_POLICY, "too many bad requests");
    }
}

static void km_client_heartbeat(struct km_ws_client *c)
{
    char ts[40];
    km_iso_time(km_wall_us(), ts, sizeof ts);
    km_client_reply(c, json_pack("{s:s, s:s}", "type", "heartbeat", "timestamp", ts));
}

/* Sends the current realtime_update of c's set, if there is anything. */
static void km_client_state_now(struct km_ws_client *c)
{
    struct km_frame *f = km_state_frame(c->ws, c->set);
    if (f)
        km_client_send(c, f);
}

/* One replay in progress. */
struct km_replay {
    struct km_ws_client *c; /* who asked */
    size_t budget;          /* bytes it may still queue */
    uint64_t last;          /* seq of the last message queued */
    int truncated;          /* the budget ran out: the rest was not sent */
};

static void km_replay_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    struct km_replay *rp = arg;
    struct km_frame *f;

    if (rp->truncated || rp->c->state != KM_WSC_OPEN)
        return; /* the bus has no way to stop a replay early: skip the rest */
    if (!(f = km_event_frame(rp->c->ws, m, KM_WS_KATOMON)))
        return;
    if (f->len > rp->budget) {
        rp->truncated = 1;
        return;
    }
    if (km_client_send(rp->c, f) == 0) {
        rp->budget -= f->len;
        rp->last = km_msg_seq(m);
    }
}

/* Honours one since entry: gap signal first, then the retained messages. */
static void km_client_replay(struct km_ws_client *c, const struct km_ws_since *s)
{
    struct km_topic *t = km_bus_find(c->ws->core->bus, s->topic);
    uint64_t last, oldest;
    char detail[160];

    if (!km_subset_wants(c->set, s->topic)) {
        snprintf(detail, sizeof detail, "since.%s: not in \"subscriptions\"", s->topic);
        km_client_error(c, "bad_since", detail, NULL);
        return;
    }
    if (!t)
        return; /* reported as unknown already */
    if (km_topic_kind(t) != KM_TOPIC_EVENT) {
        snprintf(detail, sizeof detail,
                 "since.%s: a state topic has no history; its latest value comes with "
                 "realtime_update",
                 s->topic);
        km_client_error(c, "bad_since", detail, NULL);
        return;
    }
    last = km_topic_last_seq(t);
    oldest = km_topic_oldest_seq(t);
    if (s->seq > last) {
        km_client_reply(c, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "type",
                                     "replay_gap", "topic", s->topic, "requested_since",
                                     (json_int_t)s->seq, "oldest_available",
                                     (json_int_t)oldest, "last_seq", (json_int_t)last,
                                     "missed", (json_int_t)0, "reason", "since_ahead"));
        return;
    }
    if (last > s->seq && (oldest == 0 || oldest > s->seq + 1)) {
        uint64_t first_kept = oldest ? oldest : last + 1;
        km_client_reply(c, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s}", "type",
                                     "replay_gap", "topic", s->topic, "requested_since",
                                     (json_int_t)s->seq, "oldest_available",
                                     (json_int_t)oldest, "last_seq", (json_int_t)last,
                                     "missed", (json_int_t)(first_kept - s->seq - 1),
                                     "reason", "not_in_ring"));
    }
    if (c->state != KM_WSC_OPEN || last <= s->seq)
        return;
    /*
     * A replay may use half the client's bound, so live traffic still fits.
     * Closing with 1008 instead would make a client that reconnects with
     * the same since loop forever; so say where to resume.
     */
    size_t queued = km_client_queued(c), half = c->ws->lim.max_queue_bytes / 2;
    struct km_replay rp = {c, queued < half ? half - queued : 0, s->seq, 0};
    km_bus_replay(t, s->seq, km_replay_cb, &rp);
    if (rp.truncated && c->state == KM_WSC_OPEN)
        km_client_reply(c, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:I}", "type",
                                     "replay_gap", "topic", s->topic, "requested_since",
                                     (json_int_t)s->seq, "oldest_available",
                                     (json_int_t)oldest, "last_seq", (json_int_t)last,
                                     "missed", (json_int_t)(last - rp.last), "reason",
                                     "truncated", "resume_since", (json_int_t)rp.last));
}

/* {"topic": last seq} of the subscribed event topics, for the ack: where a
   client that asked no `since` starts. New reference. */
static json_t *km_subscribed_seqs(struct km_ws *ws, const struct km_ws_request *req)
{
    json_t *seqs = json_object();

    for (size_t i = 0; seqs && i < req->n_names; i++) {
        struct km_topic *t = km_bus_find(ws->core->bus, req->names[i]);
        if (t && km_topic_kind(t) == KM_TOPIC_EVENT)
            json_object_set_new(seqs, req->names[i],
                                json_integer((json_int_t)km_topic_last_seq(t)));
    }
    return seqs ? seqs : json_object();
}

/* katomon/1: the set is replaced, acknowledged, replayed from `since`, and
   the current state sent at once. */
static void km_client_subscribe(struct km_ws_client *c, struct km_ws_request *req)
{
    struct km_ws *ws = c->ws;
    struct km_subset *s = km_subset_get(ws, req->names, req->n_names, 0);
    json_t *subs = json_array(), *unknown = json_array();
    char ts[40];

    if (!s || !subs || !unknown) {
        json_decref(subs);
        json_decref(unknown);
        km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
        return;
    }
    km_subset_join(c, s);
    c->subscribed = 1;
    for (size_t i = 0; i < req->n_names; i++) {
        json_array_append_new(subs, json_string(req->names[i]));
        if (!km_bus_find(ws->core->bus, req->names[i]))
            json_array_append_new(unknown, json_string(req->names[i]));
    }
    km_iso_time(km_wall_us(), ts, sizeof ts);
    km_client_reply(c, json_pack("{s:s, s:O, s:O, s:s, s:I, s:o}", "type",
                                 "subscription_ack", "subscriptions", subs, "unknown",
                                 unknown, "timestamp", ts, "epoch",
                                 (json_int_t)km_bus_epoch(ws->core->bus), "last_seq",
                                 km_subscribed_seqs(ws, req)));
    if (json_array_size(unknown) > 0 && c->state == KM_WSC_OPEN) {
        char detail[256];
        size_t n = 0;
        n += (size_t)snprintf(detail, sizeof detail, "unknown topic(s):");
        for (size_t i = 0; i < json_array_size(unknown) && n < sizeof detail; i++)
            n += (size_t)snprintf(detail + n, sizeof detail - n, "%s %s", i ? "," : "",
                                  json_string_value(json_array_get(unknown, i)));
        if (n < sizeof detail)
            snprintf(detail + n, sizeof detail - n,
                     "; kept, and delivered if a plugin declares them");
        km_client_error(c, "unknown_topic", detail, unknown);
    }
    json_decref(subs);
    json_decref(unknown);
    for (size_t i = 0; i < req->n_since && c->state == KM_WSC_OPEN; i++)
        km_client_replay(c, &req->since[i]);
    if (c->state == KM_WSC_OPEN)
        km_client_state_now(c);
}

/*
 * Compatible: the set becomes the union of every set the client sent,
 * silently (no reply, no immediate update: the original frontend renders on
 * every message and re-subscribes on every render). At most KM_WS_MAX_SUBS
 * names in all; names past that are dropped (counted). The union is merged
 * from the two sorted lists through the stack: no allocation unless the set
 * really changes (then the interned set is found or made).
 */
static void km_client_subscribe_compat(struct km_ws_client *c,
                                       const struct km_ws_request *req, uint64_t h)
{
    struct km_ws *ws = c->ws;
    char *merged[KM_WS_MAX_SUBS];
    char *const *have = c->subscribed ? c->set->names : NULL;
    size_t nh = c->subscribed ? c->set->n_names : 0, i = 0, j = 0, n = 0;

    while (i < nh || j < req->n_names) {
        int cmp = i == nh ? 1 : j == req->n_names ? -1 : strcmp(have[i], req->names[j]);
        char *next = cmp <= 0 ? have[i] : req->names[j];
        i += cmp <= 0;
        j += cmp >= 0;
        if (n == KM_WS_MAX_SUBS) {
            ws->stats.union_capped++;
            continue;
        }
        merged[n++] = next;
    }
    if (!c->subscribed || n != nh) {
        struct km_subset *s = km_subset_get(ws, merged, n, 0);
        if (!s) {
            km_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
            return;
        }
        km_subset_join(c, s);
        c->subscribed = 1;
    }
    km_client_remember(c, h);
}

/* A request a compatible client cannot be told about: logged once, counted;
   a client that keeps sending them is still closed by km_client_error's
   window (without the replies). */
static void km_client_drop(struct km_ws_client *c, const char *code, const char *detail)
{
    struct km_ws *ws = c->ws;
    int64_t now = km_now_us();

    ws->stats.compat_ignored++;
    if (!c->warned) {
        c->warned = 1;
        km_log(KM_LOG_INFO,
               "ws client %llu (%s): %s: %s (ignored: the original protocol "
               "has no error reply; further ones are not logged)",
               (unsigned long long)c->id, c->peer, code, detail);
    }
    if (now - c->errors_since_us > KM_WS_ERR_WINDOW_US) {
        c->errors_since_us = now;
        c->errors = 0;
    }
    if (++c->errors > KM_WS_MAX_ERRORS) {
        ws->stats.closed_protocol++;
        km_client_close(c, KM_WS_CLOSE_POLICY, "too many bad requests");
    }
}

/* One text message: h is its hash for a compatible client (else 0). */
static void km_client_request(struct km_ws_client *c, const unsigned char *data,
                              size_t len, uint64_t h)
{
    struct km_ws_request req;
    char code[32], detail[256];

    if (km_ws_parse_request((const char *)data, len, &req, code, sizeof code, detail,
                            sizeof detail) != 0) {
        /* "protocol" given: not the original frontend, whatever it declared */
        if (c->dialect == KM_WS_KATOMON || req.katomon ||
            strcmp(code, "bad_protocol") == 0)
            km_client_error(c, code, detail, NULL);
        else
            km_client_drop(c, code, detail);
        return;
    }
    if (req.type == KM_WS_REQ_PING) {
        km_client_heartbeat(c);
    } else {
        c->ws->stats.subscribes++;
        if (req.katomon)
            c->dialect = KM_WS_KATOMON; /* for the rest of the connection */
        if (c->dialect == KM_WS_KATOMON)
            km_client_subscribe(c, &req);
        else
            km_client_subscribe_compat(c, &req, h);
    }
    km_ws_request_clear(&req);
}

/* km_ws_msg_cb for a client's reader. */
static int km_client_on_msg(void *arg, int op, const unsigned char *data, size_t len)
{
    struct km_ws_client *c = arg;
    int64_t now = km_now_us();

    c->last_rx_us = now;
    if (op == KM_WS_OP_CLOSE) {
        if (c->state == KM_WSC_OPEN) {
            /* echo the peer's code (RFC 6455 5.5.1), then hang up */
            unsigned code = len >= 2 ? (unsigned)data[0] << 8 | data[1] : 0;
            km_client_close(c, (int)code, len >= 2 ? "" : NULL);
        }
        return 1;
    }
    if (c->state != KM_WSC_OPEN)
        return 0; /* closing: only the peer's close matters now */
    c->msgs_in++;
    const char *flood = km_client_flooding(c, now, len);
    if (op == KM_WS_OP_PONG && !flood)
        return 0;
    /* A compatible client re-sending a subscribe it sent before: nothing
       can change (its union only grows), so it costs a hash, not a parse. */
    uint64_t h = 0;
    if (!flood && op != KM_WS_OP_PING && c->dialect == KM_WS_COMPAT) {
        h = km_text_hash(c->ws, data, len);
        if (km_client_seen(c, h)) {
            c->ws->stats.subscribes++;
            c->ws->stats.subscribes_unchanged++;
            return 0;
        }
    }
    if (flood || km_client_work(c) != 0) {
        km_log(KM_LOG_INFO, "ws client %llu (%s): %s: closing with 1008",
               (unsigned long long)c->id, c->peer, flood ? flood : "too many messages");
        c->ws->stats.closed_protocol++;
        km_client_close(c, KM_WS_CLOSE_POLICY, flood ? flood : "too many messages");
        return 1;
    }
    if (op == KM_WS_OP_PING) {
        /* Pong only while the output has room: a client that pings and never
           reads must not grow it (RFC 6455 allows answering the latest only). */
        if (km_client_queued(c) < c->ws->lim.max_queue_bytes)
            km_client_control(c, KM_WS_OP_PONG, data, len);
        return 0;
    }
    /* Text and binary both carry the JSON requests (or "ping"). */
    km_client_request(c, data, len, h);
    return c->state == KM_WSC_OPEN ? 0 : 1;
}

/* ---- bufferevent callbacks ---- */

static void km_client_read_cb(struct bufferevent *bev, void *arg)
{
    struct km_ws_client *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    /* LINGER: our close is out and drained; the peer's bytes are dropped. */
    while (evbuffer_get_length(in) > 0 &&
           (c->state == KM_WSC_OPEN || c->state == KM_WSC_CLOSING)) {
        struct evbuffer_iovec v;
        const char *reason = NULL;
        int code;

        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        code = km_ws_reader_feed(c->reader, v.iov_base, v.iov_len, &reason);
        evbuffer_drain(in, v.iov_len);
        if (code && c->state == KM_WSC_OPEN) {
            km_log(KM_LOG_INFO, "ws client %llu (%s): %s: closing with %d",
                   (unsigned long long)c->id, c->peer, reason, code);
            c->ws->stats.closed_protocol++;
            km_client_close(c, code, reason);
        }
        if (code)
            break;
    }
    if (c->state == KM_WSC_LINGER || c->state == KM_WSC_CLOSING)
        evbuffer_drain(in, evbuffer_get_length(in));
}

static void km_client_write_cb(struct bufferevent *bev, void *arg)
{
    struct km_ws_client *c = arg;

    if (c->state == KM_WSC_OPEN)
        km_client_pump(c);
    else if (c->state == KM_WSC_CLOSING &&
             evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        km_client_linger(c);
}

static void km_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct km_ws_client *c = arg;
    /* EOF, error or timeout: the peer is gone; nothing more to say. */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        km_client_kill(c);
}

/* ---- timers ---- */

/* Pings, idle timeout, close deadline. O(clients) per run, at most 1/s. */
static void km_ws_hk_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_ws *ws = arg;
    int64_t now = km_now_us();
    double idle = ws->lim.idle_timeout;

    /* With pings on but no idle timeout, a peer that answers none of three
       pings is taken for dead. */
    if (idle <= 0 && ws->lim.ping_interval > 0)
        idle = 3 * ws->lim.ping_interval;
    for (struct km_ws_client *c = ws->clients, *next; c; c = next) {
        next = c->next; /* c may move to the dead list */
        if (c->state == KM_WSC_OPEN) {
            if (idle > 0 && (double)(now - c->last_rx_us) >= idle * 1e6) {
                km_client_close(c, KM_WS_CLOSE_GOING_AWAY, "idle timeout");
            } else if (ws->lim.ping_interval > 0 &&
                       (double)(now - c->last_ping_us) >= ws->lim.ping_interval * 1e6) {
                unsigned char p[8];
                for (int i = 0; i < 8; i++)
                    p[i] = (unsigned char)((uint64_t)now >> (56 - 8 * i));
                c->last_ping_us = now;
                km_client_control(c, KM_WS_OP_PING, p, sizeof p);
            }
        } else if (c->state == KM_WSC_CLOSING || c->state == KM_WSC_LINGER) {
            if ((double)(now - c->closing_us) >= ws->lim.close_wait * 1e6)
                km_client_kill(c);
        }
    }
}

void km_ws_tick(struct km_ws *ws)
{
    ws->tick_no++;
    ws->stats.ticks++;
    for (struct km_subset *s = ws->sets; s; s = s->next) {
        struct km_frame *f;
        if (!s->n_members || !(f = km_state_frame(ws, s)))
            continue;
        /* km_client_send may close a member, but closing never unlinks it
           from the set (km_client_kill does, from callbacks only), so the
           walk is safe. */
        km_frame_ref(f);
        for (struct km_ws_client *c = s->members; c; c = c->set_next) {
            if (c->set_next)
                __builtin_prefetch(c->set_next);
            km_client_send(c, f);
        }
        km_frame_unref(f);
    }
}

static void km_ws_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    km_ws_tick(arg);
}

/* The one bus subscription: every topic. */
static void km_ws_bus_cb(struct km_topic *t, struct km_msg *m, void *arg)
{
    struct km_ws *ws = arg;
    const char *name;

    if (km_topic_kind(t) == KM_TOPIC_STATE) {
        ws->state_gen++; /* goes out with the next tick */
        return;
    }
    name = km_topic_name(t);
    struct km_frame *fr[2] = {NULL, NULL}; /* [dialect], borrowed from m's cache */
    for (struct km_subset *s = ws->sets; s; s = s->next) {
        if (!km_subset_wants(s, name))
            continue;
        for (struct km_ws_client *c = s->members; c; c = c->set_next) {
            struct km_frame *f;
            if (c->state != KM_WSC_OPEN)
                continue;
            if (!(f = fr[c->dialect]) &&
                !(f = fr[c->dialect] = km_event_frame(ws, m, c->dialect))) {
                km_log(KM_LOG_ERROR, "ws: out of memory building a %s frame", name);
                return;
            }
            km_client_send(c, f);
        }
    }
}

static void km_ws_arm(struct km_ws *ws)
{
    struct timeval tv = km_tv(ws->lim.update_interval);
    double hk = 1.0;

    evtimer_add(ws->tick_ev, &tv);
    if (ws->lim.ping_interval > 0 && ws->lim.ping_interval / 4 < hk)
        hk = ws->lim.ping_interval / 4;
    if (ws->lim.idle_timeout > 0 && ws->lim.idle_timeout / 4 < hk)
        hk = ws->lim.idle_timeout / 4;
    if (ws->lim.close_wait / 4 < hk)
        hk = ws->lim.close_wait / 4;
    if (hk < 0.05)
        hk = 0.05;
    tv = km_tv(hk);
    evtimer_add(ws->hk_ev, &tv);
}

static void km_ws_limits_fix(struct km_ws_limits *l)
{
    if (l->update_interval <= 0)
        l->update_interval = 3.0;
    if (l->max_message_bytes == 0)
        l->max_message_bytes = 64 * 1024;
    if (l->max_queue_bytes == 0)
        l->max_queue_bytes = 1024 * 1024;
    if (l->close_wait <= 0)
        l->close_wait = 5.0;
}

/* ---- public ---- */

struct km_ws *km_ws_new(struct km_core *core, const struct km_ws_limits *lim)
{
    struct km_ws *ws = calloc(1, sizeof *ws);

    if (!ws)
        return NULL;
    ws->core = core;
    ws->lim = *lim;
    km_ws_limits_fix(&ws->lim);
    ws->next_id = 1;
    evutil_secure_rng_get_bytes(&ws->hash_key, sizeof ws->hash_key);
    ws->tick_ev = event_new(core->base, -1, EV_PERSIST, km_ws_tick_cb, ws);
    ws->hk_ev = event_new(core->base, -1, EV_PERSIST, km_ws_hk_cb, ws);
    ws->reap_ev = event_new(core->base, -1, 0, km_ws_reap_cb, ws);
    if (!ws->tick_ev || !ws->hk_ev || !ws->reap_ev)
        goto fail;
    ws->sub = km_bus_subscribe(core->bus, "*", km_ws_bus_cb, ws, ws);
    if (!ws->sub)
        goto fail;
    km_ws_arm(ws);
    return ws;
fail:
    km_ws_free(ws);
    return NULL;
}

/*
 * Shutdown: one non-blocking send of what the output holds (the close frame
 * last), then FIN. libevent freezes the start of a socket bufferevent's
 * output (evbuffer_write and evbuffer_copyout refuse it), so the chains are
 * peeked at and sent with sendmsg here.
 */
static void km_client_flush_now(struct km_ws_client *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    char drop[4096];

    if (c->state == KM_WSC_DEAD || fd < 0)
        return;
    if (c->state == KM_WSC_CLOSING) {
        int n = evbuffer_peek(out, -1, NULL, NULL, 0);
        struct evbuffer_iovec *v = n > 0 ? calloc((size_t)n, sizeof *v) : NULL;
        struct iovec *io = n > 0 ? calloc((size_t)n, sizeof *io) : NULL;
        if (v && io && evbuffer_peek(out, -1, NULL, v, n) == n) {
            struct msghdr mh = {0};
            for (int i = 0; i < n; i++) {
                io[i].iov_base = v[i].iov_base;
                io[i].iov_len = v[i].iov_len;
            }
            mh.msg_iov = io;
            mh.msg_iovlen = (size_t)n;
            (void)sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        free(v);
        free(io);
    }
    shutdown(fd, SHUT_WR);
    /* what the peer sent and we did not read would turn our close into a RST */
    while (recv(fd, drop, sizeof drop, MSG_DONTWAIT) > 0)
        ;
}

void km_ws_free(struct km_ws *ws)
{
    if (!ws)
        return;
    if (ws->sub)
        km_bus_unsubscribe(ws->sub);
    /* 1001 to everyone, one non-blocking write each: shutting down must not
       wait on a slow peer. */
    while (ws->clients) {
        struct km_ws_client *c = ws->clients;
        if (c->state == KM_WSC_OPEN)
            km_client_close(c, KM_WS_CLOSE_GOING_AWAY, "server shutting down");
        km_client_flush_now(c);
        km_client_kill(c);
    }
    km_ws_reap_cb(-1, 0, ws);
    while (ws->sets)
        km_subset_free(ws, ws->sets);
    if (ws->tick_ev)
        event_free(ws->tick_ev);
    if (ws->hk_ev)
        event_free(ws->hk_ev);
    if (ws->reap_ev)
        event_free(ws->reap_ev);
    free(ws);
}

void km_ws_set_limits(struct km_ws *ws, const struct km_ws_limits *lim)
{
    int rearm = lim->update_interval != ws->lim.update_interval ||
                lim->ping_interval != ws->lim.ping_interval ||
                lim->idle_timeout != ws->lim.idle_timeout ||
                lim->close_wait != ws->lim.close_wait;
    ws->lim = *lim;
    km_ws_limits_fix(&ws->lim);
    for (struct km_ws_client *c = ws->clients; c; c = c->next)
        km_ws_reader_set_max(c->reader, ws->lim.max_message_bytes);
    if (rearm)
        km_ws_arm(ws);
}

struct km_ws_limits km_ws_get_limits(const struct km_ws *ws)
{
    return ws->lim;
}

int km_ws_attach(struct km_ws *ws, struct bufferevent *bev, const char *peer,
                 km_ws_gone_cb gone, void *arg)
{
    struct km_ws_client *c = calloc(1, sizeof *c);
    struct km_subset *all;
    int64_t now = km_now_us();

    if (!c ||
        !(c->reader = km_ws_reader_new(ws->lim.max_message_bytes, km_client_on_msg, c)) ||
        !(all = km_subset_get(ws, NULL, 0, 1))) {
        if (c)
            km_ws_reader_free(c->reader);
        free(c);
        bufferevent_free(bev);
        return -1;
    }
    c->ws = ws;
    c->id = ws->next_id++;
    snprintf(c->peer, sizeof c->peer, "%s", peer ? peer : "?");
    c->bev = bev;
    c->out = bufferevent_get_output(bev);
    c->fd = bufferevent_getfd(bev);
    c->state = KM_WSC_OPEN;
    c->connected_wall_us = km_wall_us();
    c->last_rx_us = c->last_ping_us = c->tokens_us = c->errors_since_us = now;
    c->tokens = KM_WS_MSG_BURST;
    c->ftokens = KM_WS_FRAME_BURST;
    c->btokens = KM_WS_BYTE_BURST;
    c->gone = gone;
    c->gone_arg = arg;
    c->next = ws->clients;
    if (ws->clients)
        ws->clients->prev = c;
    ws->clients = c;
    km_subset_join(c, all);
    ws->stats.clients++;
    ws->stats.accepted++;

    int sndbuf = KM_WS_SNDBUF;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    bufferevent_set_timeouts(bev, NULL, NULL); /* housekeeping owns time here */
    bufferevent_setwatermark(bev, EV_READ, 0, 256 * 1024);
    bufferevent_setwatermark(bev, EV_WRITE, KM_WS_PUMP_BYTES / 2, 0);
    bufferevent_setcb(bev, km_client_read_cb, km_client_write_cb, km_client_event_cb, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    km_log(KM_LOG_DEBUG, "ws client %llu (%s): connected", (unsigned long long)c->id,
           c->peer);
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        km_client_read_cb(bev, c); /* frames sent right behind the request */
    return 0;
}

void km_ws_get_stats(const struct km_ws *ws, struct km_ws_stats *out)
{
    *out = ws->stats;
}

/* Clients listed at most by GET /api/v1/ws/subscriptions (count has them all). */
#define KM_WS_LIST_MAX 1000

json_t *km_ws_clients_json(struct km_ws *ws)
{
    static const char *const states[] = {"", "open", "closing", "closing", "closed"};
    json_t *clients = json_array(), *o;
    char ts[40];

    size_t listed = 0;

    if (!clients)
        return NULL;
    /* bounded: 10,000 clients would make a 2 MB answer built on the loop */
    for (struct km_ws_client *c = ws->clients; c && listed < KM_WS_LIST_MAX;
         c = c->next, listed++) {
        json_t *subs;
        if (c->set && c->set->all) {
            subs = json_string("*");
        } else {
            subs = json_array();
            for (size_t i = 0; c->set && i < c->set->n_names; i++)
                json_array_append_new(subs, json_string(c->set->names[i]));
        }
        km_iso_time(c->connected_wall_us, ts, sizeof ts);
        json_array_append_new(
            clients,
            json_pack("{s:I, s:s, s:s, s:s, s:b, s:o, s:I, s:I, s:I, s:I, s:s}", "id",
                      (json_int_t)c->id, "peer", c->peer, "state", states[c->state],
                      "dialect",
                      c->dialect == KM_WS_KATOMON ? KM_WS_PROTOCOL : "compatible",
                      "subscribed", c->subscribed, "topics", subs, "queued_bytes",
                      (json_int_t)km_client_queued(c), "queued_frames",
                      (json_int_t)(c->q_tail - c->q_head), "messages_in",
                      (json_int_t)c->msgs_in, "frames_out", (json_int_t)c->frames_out,
                      "connected_at", ts));
    }
    o = json_pack(
        "{s:I, s:b, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I, s:I}, s:{s:f, s:I, s:I, s:f, s:f}}",
        "count", (json_int_t)ws->stats.clients, "clients_truncated",
        ws->stats.clients > listed, "subscription_sets", (json_int_t)ws->stats.sets,
        "clients", clients, "stats", "json_encodes", (json_int_t)ws->stats.json_encodes,
        "frames_built", (json_int_t)ws->stats.frames_built, "frames_queued",
        (json_int_t)ws->stats.frames_queued, "private_frames",
        (json_int_t)ws->stats.private_frames, "state_conflated",
        (json_int_t)ws->stats.state_conflated, "state_skipped",
        (json_int_t)ws->stats.state_skipped, "closed_slow",
        (json_int_t)ws->stats.closed_slow, "closed_protocol",
        (json_int_t)ws->stats.closed_protocol, "accepted", (json_int_t)ws->stats.accepted,
        "ticks", (json_int_t)ws->stats.ticks, "subscribes",
        (json_int_t)ws->stats.subscribes, "subscribes_unchanged",
        (json_int_t)ws->stats.subscribes_unchanged, "compat_ignored",
        (json_int_t)ws->stats.compat_ignored, "union_capped",
        (json_int_t)ws->stats.union_capped, "bus_json_encodes",
        (json_int_t)km_bus_stats.json_encodes, "limits", "update_interval",
        ws->lim.update_interval, "max_message_bytes",
        (json_int_t)ws->lim.max_message_bytes, "max_queue_bytes",
        (json_int_t)ws->lim.max_queue_bytes, "ping_interval", ws->lim.ping_interval,
        "idle_timeout", ws->lim.idle_timeout);
    return o;
}
