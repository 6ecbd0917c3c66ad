/*
 * ws_conn.c - one upgraded WebSocket connection (see ws_conn.h): its
 * output queue, sending, control frames, closing, flood limits.
 *
 * ---- Output ------------------------------------------------------------------
 *
 * A client's output is a bounded FIFO of references to shared frames
 * (struct km_frame, built once by the hub for every client that gets it).
 * A "pump" moves frames from the FIFO into the bufferevent's output with
 * evbuffer_add_reference (zero copy; the chain's cleanup drops the
 * reference) while that output holds less than KM_WS_PUMP_BYTES, so the
 * kernel is fed without copying, and frames not yet pumped can still be
 * conflated or dropped. When that output is empty (the common case: the
 * client keeps up), the pump first hands the FIFO's head frames straight to
 * the socket with one sendmsg(), skipping libevent's write registration and
 * chain allocation per client; only what the kernel did not take goes
 * through the bufferevent. Nothing can be overtaken: libevent holds nothing
 * for that socket at that moment. km_ws_client_send goes one step further
 * when the FIFO is empty too: one send() of the frame, no FIFO at all.
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
 * and a `since` replay may use only half the bound (the hub's km_ws_replay).
 *
 * ---- Incoming ---------------------------------------------------------------
 *
 * The reader (ws_frame.c) hands over whole messages. Pings are answered
 * here, a close is echoed here, and every message is charged to three
 * token buckets (flooding closes with 1008). A compatible client re-sending
 * a subscribe it sent before is recognised by a keyed hash of its bytes and
 * dropped here: its union only grows, so nothing can change. Anything else
 * goes to the owner (ops->request), which parses and answers it.
 *
 * ---- Deadlines --------------------------------------------------------------
 *
 * A frame begun must be whole within frame_timeout ([http] request_timeout,
 * the same rule as an HTTP request's, 30 s by default) of the read that
 * brought its first byte, or the client is closed with 1008: a peer that
 * sends a partial header (or a header and part of a payload) and then
 * dribbles or stops would otherwise hold its socket, its reader's 4 KiB
 * wslay context and up to max_message_bytes until the idle timeout - or for
 * ever with idle_timeout and ping_interval both 0, since it cannot answer a
 * ping while a frame is open. The clock restarts whenever a whole message
 * arrives, so a client streaming messages back to back never trips it.
 * A client that sends nothing at all is not cut by this rule: a listener
 * that only reads is legitimate (the hub pushes realtime_update to every
 * client, subscribed or not). It is governed by the idle timeout (120 s by
 * default; a browser answers the server's pings, so a live one never
 * trips it) and, if it stops reading too, by max_queue_bytes (1008 once its
 * queue is full).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/util.h>
#include <katomon/util.h>

#include "log.h"
#include "ws_conn.h"

/* Kernel send buffer of a WebSocket socket. Without it, Linux autotuning
   lets a peer that stopped reading park megabytes in the kernel before our
   own bound (max_queue_bytes) even sees them; dashboard traffic is small,
   so this costs no throughput. */
#define KM_WS_SNDBUF (128 * 1024)
/* Output bytes handed to libevent at once; the rest waits in the FIFO. */
#define KM_WS_PUMP_BYTES (64 * 1024)
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
/* Bad requests a client may make within KM_WS_ERR_WINDOW_US before it is
   closed as a flooder (km_ws_client_count_error). */
#define KM_WS_MAX_ERRORS    20
#define KM_WS_ERR_WINDOW_US (10 * 1000000LL)

static const char *const KM_WS_QUEUE_FULL = "send queue full; reconnect with since";

/* ======================================================================
 * Output
 * ====================================================================== */

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

/* Takes the FIFO's oldest entry and its byte count out of the queue; the
   FIFO's reference goes to the caller. NULL: a dropped realtime_update. */
static struct km_frame *km_q_pop(struct km_ws_client *c)
{
    uint64_t pos = c->q_head++;
    struct km_frame *f = c->q[pos & (c->q_cap - 1)];

    c->q[pos & (c->q_cap - 1)] = NULL;
    if (c->state_pending && c->state_pos == pos)
        c->state_pending = 0;
    if (f)
        c->q_bytes -= f->len;
    return f;
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
                struct km_frame *f = km_q_pop(c);
                if (!f)
                    continue;
                if (left >= f->len) {
                    left -= f->len;
                    km_frame_unref(f);
                    continue;
                }
                if (evbuffer_add_reference(out, f->data + left, f->len - left,
                                           km_frame_evb_cleanup, f) != 0) {
                    km_frame_unref(f);
                    km_ws_client_oom(c, "queueing a frame");
                    return;
                }
                left = 0;
            }
        }
        /* n < 0 (EAGAIN, or an error libevent will report): the path below */
    }
    while (c->q_head < c->q_tail && evbuffer_get_length(out) < KM_WS_PUMP_BYTES) {
        struct km_frame *f = km_q_pop(c);
        if (!f)
            continue; /* a dropped realtime_update */
        /* the FIFO's reference moves to the evbuffer chain */
        if (evbuffer_add_reference(out, f->data, f->len, km_frame_evb_cleanup, f) != 0) {
            km_frame_unref(f);
            km_ws_client_oom(c, "queueing a frame");
            return;
        }
    }
}

/* The bound is applied here: see "Backpressure" at the top. */
static int km_client_send_frame(struct km_ws_client *c, struct km_frame *f)
{
    struct km_ws_conns *cs = c->conns;
    size_t queued;

    if (c->state != KM_WSC_OPEN)
        return -1;
    /* Fast path (the common case: the client keeps up): nothing is queued
       anywhere, so nothing can be overtaken; give f to the kernel at once
       without touching the FIFO. What the socket does not take goes the
       usual way: a partial frame's rest through the bufferevent, a refused
       frame into the FIFO below. */
    if (c->q_head == c->q_tail && f->len <= cs->lim.max_queue_bytes &&
        evbuffer_get_length(c->out) == 0) {
        ssize_t n = send(c->fd, f->data, f->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            if ((size_t)n < f->len &&
                evbuffer_add_reference(c->out, f->data + n, f->len - (size_t)n,
                                       km_frame_evb_cleanup, km_frame_ref(f)) != 0) {
                km_frame_unref(f);
                km_ws_client_oom(c, "queueing a frame");
                return -1;
            }
            if (f->kind != KM_FRAME_PRIVATE)
                cs->stats.frames_queued++;
            c->frames_out++;
            return 0;
        }
        /* n <= 0 (EAGAIN, or an error libevent will report): queue it */
    }
    queued = km_ws_client_queued(c);
    if (f->kind == KM_FRAME_STATE && c->state_pending) {
        struct km_frame **slot = &c->q[c->state_pos & (c->q_cap - 1)];
        size_t old = *slot ? (*slot)->len : 0;
        km_frame_unref(*slot);
        *slot = NULL;
        c->q_bytes -= old;
        cs->stats.bytes_sent -= old; /* counted when it was queued; never sent */
        cs->stats.state_conflated++;
        if (queued - old + f->len > cs->lim.max_queue_bytes) {
            cs->stats.state_skipped++;
            return -1; /* stale one gone, new one does not fit: next tick */
        }
        *slot = km_frame_ref(f);
        c->q_bytes += f->len;
        cs->stats.frames_queued++;
        c->frames_out++;
        return 0;
    }
    if (queued + f->len > cs->lim.max_queue_bytes) {
        if (f->kind == KM_FRAME_STATE) {
            cs->stats.state_skipped++;
            return -1;
        }
        cs->stats.closed_slow++;
        km_log(KM_LOG_INFO, "ws client %llu (%s): %zu bytes unsent, bound %zu: closing",
               (unsigned long long)c->id, c->peer, queued, cs->lim.max_queue_bytes);
        km_ws_client_close(c, KM_WS_CLOSE_POLICY, KM_WS_QUEUE_FULL);
        return -1;
    }
    if (c->q_tail - c->q_head == c->q_cap && km_client_q_grow(c) != 0) {
        km_ws_client_oom(c, "growing the queue");
        return -1;
    }
    if (f->kind == KM_FRAME_STATE) {
        c->state_pending = 1;
        c->state_pos = c->q_tail;
    }
    c->q[c->q_tail++ & (c->q_cap - 1)] = km_frame_ref(f);
    c->q_bytes += f->len;
    if (f->kind != KM_FRAME_PRIVATE)
        cs->stats.frames_queued++;
    c->frames_out++;
    km_client_pump(c);
    return 0;
}

int km_ws_client_send(struct km_ws_client *c, struct km_frame *f)
{
    size_t len = f->len; /* f may be gone once sent */
    int rc = km_client_send_frame(c, f);

    if (rc == 0)
        c->conns->stats.bytes_sent += len;
    return rc;
}

void km_ws_client_reply(struct km_ws_client *c, json_t *o)
{
    struct km_tb tb = {0};
    struct km_frame *f = NULL;

    if (o) {
        km_tb_json(&tb, o);
        json_decref(o);
        c->conns->stats.private_frames++;
        f = km_frame_from_tb(&tb, KM_WS_OP_TEXT, KM_FRAME_PRIVATE);
    }
    if (!f) {
        km_ws_client_oom(c, "building a reply");
        return;
    }
    km_ws_client_send(c, f);
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
    km_ws_reader_control(c->reader, op, payload, len, km_client_sink, c);
}

/* ======================================================================
 * Closing
 * ====================================================================== */

/* Marks c dead: no callback reaches it again; freed by the reap event. */
static void km_client_kill(struct km_ws_client *c)
{
    struct km_ws_conns *cs = c->conns;

    if (c->state == KM_WSC_DEAD)
        return;
    c->state = KM_WSC_DEAD;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    /* move from the live list to the dead list */
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = cs->dead;
    cs->dead = c;
    cs->stats.clients--;
    cs->ops->dead(cs->owner, c); /* the owner forgets it: its set */
    event_active(cs->reap_ev, EV_TIMEOUT, 0);
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

static void km_conns_reap_cb(evutil_socket_t fd, short what, void *arg)
{
    struct km_ws_conns *cs = arg;
    while (cs->dead) {
        struct km_ws_client *c = cs->dead;
        cs->dead = c->next;
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
void km_ws_client_close(struct km_ws_client *c, int code, const char *reason)
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
    c->closing_us = km_mono_us();
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    /* reason is NULL when a peer's empty close is echoed: memcpy from NULL
       is undefined even for 0 bytes (UBSan stopped the daemon on it) */
    if (rl)
        memcpy(payload + 2, reason, rl);
    km_client_control(c, KM_WS_OP_CLOSE, payload, code ? 2 + rl : 0);
    /* the write callback fires when the output is empty */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        km_client_linger(c);
}

void km_ws_client_oom(struct km_ws_client *c, const char *what)
{
    if (c->state != KM_WSC_OPEN)
        return;
    km_log(KM_LOG_ERROR, "ws client %llu (%s): out of memory %s: closing with 1013",
           (unsigned long long)c->id, c->peer, what);
    km_ws_client_close(c, KM_WS_CLOSE_TRY_LATER, "out of memory");
}

/* ======================================================================
 * Incoming
 * ====================================================================== */

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
static uint64_t km_text_hash(const struct km_ws_conns *cs, const unsigned char *p,
                             size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ cs->hash_key;
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

void km_ws_client_remember(struct km_ws_client *c, uint64_t h)
{
    if (!h || km_client_seen(c, h))
        return;
    c->seen[c->seen_next] = h;
    c->seen_next = (c->seen_next + 1) % KM_WS_SEEN;
}

void km_ws_client_count_error(struct km_ws_client *c)
{
    int64_t now = km_mono_us();

    if (now - c->errors_since_us > KM_WS_ERR_WINDOW_US) {
        c->errors_since_us = now;
        c->errors = 0;
    }
    if (++c->errors > KM_WS_MAX_ERRORS) {
        c->conns->stats.closed_protocol++;
        km_ws_client_close(c, KM_WS_CLOSE_POLICY, "too many bad requests");
    }
}

/* km_ws_msg_cb for a client's reader. */
static int km_client_on_msg(void *arg, int op, const unsigned char *data, size_t len)
{
    struct km_ws_client *c = arg;
    int64_t now = km_mono_us();

    c->last_rx_us = now;
    if (op == KM_WS_OP_CLOSE) {
        if (c->state == KM_WSC_OPEN) {
            /* echo the peer's code (RFC 6455 5.5.1), then hang up */
            unsigned code = len >= 2 ? (unsigned)data[0] << 8 | data[1] : 0;
            km_ws_client_close(c, (int)code, len >= 2 ? "" : NULL);
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
        h = km_text_hash(c->conns, data, len);
        if (km_client_seen(c, h)) {
            c->conns->stats.subscribes_unchanged++;
            return 0;
        }
    }
    if (flood || km_client_work(c) != 0) {
        km_log(KM_LOG_INFO, "ws client %llu (%s): %s: closing with 1008",
               (unsigned long long)c->id, c->peer, flood ? flood : "too many messages");
        c->conns->stats.closed_protocol++;
        km_ws_client_close(c, KM_WS_CLOSE_POLICY, flood ? flood : "too many messages");
        return 1;
    }
    if (op == KM_WS_OP_PING) {
        /* Pong only while the output has room: a client that pings and never
           reads must not grow it (RFC 6455 allows answering the latest only). */
        if (km_ws_client_queued(c) < c->conns->lim.max_queue_bytes)
            km_client_control(c, KM_WS_OP_PONG, data, len);
        return 0;
    }
    /* Text and binary both carry the JSON requests (or "ping"): the owner's. */
    c->conns->ops->request(c->conns->owner, c, data, len, h);
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
            /* a bad frame is the client's affair (info); 1013 is ours (the
               reader ran out of memory): an error the operator must see */
            km_log(code == KM_WS_CLOSE_TRY_LATER ? KM_LOG_ERROR : KM_LOG_INFO,
                   "ws client %llu (%s): %s: closing with %d", (unsigned long long)c->id,
                   c->peer, reason, code);
            c->conns->stats.closed_protocol++;
            km_ws_client_close(c, code, reason);
        }
        if (code)
            break;
    }
    if (c->state == KM_WSC_LINGER || c->state == KM_WSC_CLOSING)
        evbuffer_drain(in, evbuffer_get_length(in));
    /* The frame deadline (see "Deadlines" at the top): a frame left open by
       this read starts the clock, unless one was open before and no whole
       message came since; a reader holding nothing stops it. */
    if (c->state == KM_WSC_OPEN && km_ws_reader_holding(c->reader)) {
        int64_t now = km_mono_us();
        if (!c->frame_start_us || c->last_rx_us > c->frame_start_us)
            c->frame_start_us = now;
    } else {
        c->frame_start_us = 0;
    }
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

/* ======================================================================
 * The set of connections
 * ====================================================================== */

void km_ws_conns_housekeep(struct km_ws_conns *cs)
{
    int64_t now = km_mono_us();
    double idle = cs->lim.idle_timeout;

    /* With pings on but no idle timeout, a peer that answers none of three
       pings is taken for dead. */
    if (idle <= 0 && cs->lim.ping_interval > 0)
        idle = 3 * cs->lim.ping_interval;
    for (struct km_ws_client *c = cs->live, *next; c; c = next) {
        next = c->next; /* c may move to the dead list */
        if (c->state == KM_WSC_OPEN) {
            if (cs->lim.frame_timeout > 0 && c->frame_start_us &&
                (double)(now - c->frame_start_us) >= cs->lim.frame_timeout * 1e6) {
                km_log(KM_LOG_INFO,
                       "ws client %llu (%s): frame not whole within %g s ([http] "
                       "request_timeout): closing with 1008",
                       (unsigned long long)c->id, c->peer, cs->lim.frame_timeout);
                cs->stats.closed_protocol++;
                km_ws_client_close(c, KM_WS_CLOSE_POLICY, "frame not finished in time");
            } else if (idle > 0 && (double)(now - c->last_rx_us) >= idle * 1e6) {
                km_ws_client_close(c, KM_WS_CLOSE_GOING_AWAY, "idle timeout");
            } else if (cs->lim.ping_interval > 0 &&
                       (double)(now - c->last_ping_us) >= cs->lim.ping_interval * 1e6) {
                unsigned char p[8];
                for (int i = 0; i < 8; i++)
                    p[i] = (unsigned char)((uint64_t)now >> (56 - 8 * i));
                c->last_ping_us = now;
                km_client_control(c, KM_WS_OP_PING, p, sizeof p);
            }
        } else if (c->state == KM_WSC_CLOSING || c->state == KM_WSC_LINGER) {
            if ((double)(now - c->closing_us) >= cs->lim.close_wait * 1e6)
                km_client_kill(c);
        }
    }
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

int km_ws_conns_init(struct km_ws_conns *cs, struct event_base *base,
                     const struct km_ws_conn_ops *ops, void *owner,
                     const struct km_ws_conn_limits *lim)
{
    memset(cs, 0, sizeof *cs);
    cs->ops = ops;
    cs->owner = owner;
    cs->lim = *lim;
    cs->next_id = 1;
    evutil_secure_rng_get_bytes(&cs->hash_key, sizeof cs->hash_key);
    cs->reap_ev = event_new(base, -1, 0, km_conns_reap_cb, cs);
    return cs->reap_ev ? 0 : -1;
}

void km_ws_conns_fini(struct km_ws_conns *cs)
{
    while (cs->live) {
        struct km_ws_client *c = cs->live;
        if (c->state == KM_WSC_OPEN)
            km_ws_client_close(c, KM_WS_CLOSE_GOING_AWAY, "server shutting down");
        km_client_flush_now(c);
        km_client_kill(c);
    }
    km_conns_reap_cb(-1, 0, cs);
    if (cs->reap_ev)
        event_free(cs->reap_ev);
    cs->reap_ev = NULL;
}

void km_ws_conns_set_limits(struct km_ws_conns *cs, const struct km_ws_conn_limits *lim)
{
    cs->lim = *lim;
    for (struct km_ws_client *c = cs->live; c; c = c->next)
        km_ws_reader_set_max(c->reader, cs->lim.max_message_bytes);
}

/* ======================================================================
 * One connection's life
 * ====================================================================== */

struct km_ws_client *km_ws_client_new(struct km_ws_conns *cs, struct bufferevent *bev,
                                      const char *peer, void (*gone)(void *arg),
                                      void *arg)
{
    struct km_ws_client *c = calloc(1, sizeof *c);
    int64_t now = km_mono_us();

    if (!c ||
        !(c->reader = km_ws_reader_new(cs->lim.max_message_bytes, km_client_on_msg, c))) {
        free(c);
        return NULL;
    }
    c->conns = cs;
    c->id = cs->next_id++;
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
    c->next = cs->live;
    if (cs->live)
        cs->live->prev = c;
    cs->live = c;
    cs->stats.clients++;
    cs->stats.accepted++;
    return c;
}

void km_ws_client_start(struct km_ws_client *c)
{
    struct bufferevent *bev = c->bev;
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
}

const char *km_ws_client_state_name(const struct km_ws_client *c)
{
    static const char *const states[] = {"", "open", "closing", "closing", "closed"};
    return states[c->state];
}
