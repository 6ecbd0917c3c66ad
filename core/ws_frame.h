/*
 * ws_frame.h - WebSocket frames (RFC 6455 section 5), both ways.
 *
 * Owns:
 *   - the close codes and opcodes;
 *   - struct km_ws_reader: a client's bytes -> whole, checked messages
 *     (wslay's frame tokenizer, reassembly of fragments, the UTF-8 check of
 *     text, the close-code check), and our control frames out through the
 *     same wslay context (km_ws_reader_control);
 *   - struct km_frame: one complete server frame (header + payload in one
 *     reference-counted block), built once and shared read-only by every
 *     connection that sends it, and struct km_tb, the text builder that
 *     leaves room in front of the text for that header.
 *
 * Calls no other core file (wslay, jansson and libevent's evbuffer cleanup
 * type only). Usable alone: the unit and fuzz tests drive the reader
 * directly. Ownership words as in include/katomon/plugin.h. Not
 * thread-safe: everything runs on the event loop's thread.
 */
#ifndef KM_WS_FRAME_H
#define KM_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <jansson.h>

/* ---- close codes (RFC 6455 section 7.4.1) ----------------------------- */

#define KM_WS_CLOSE_NORMAL     1000 /* done */
#define KM_WS_CLOSE_GOING_AWAY 1001 /* daemon stopping, idle timeout */
#define KM_WS_CLOSE_PROTOCOL   1002 /* bad framing */
#define KM_WS_CLOSE_BAD_DATA   1007 /* text that is not UTF-8 */
#define KM_WS_CLOSE_POLICY     1008 /* flooding, send queue full */
#define KM_WS_CLOSE_TOO_BIG    1009 /* message larger than max_message_bytes */
#define KM_WS_CLOSE_TRY_LATER  1013 /* server overloaded */

/* Frame opcodes. */
#define KM_WS_OP_CONT   0x0
#define KM_WS_OP_TEXT   0x1
#define KM_WS_OP_BINARY 0x2
#define KM_WS_OP_CLOSE  0x8
#define KM_WS_OP_PING   0x9
#define KM_WS_OP_PONG   0xA

/* ---- incoming frames ----------------------------------------------------- */

struct km_ws_reader; /* opaque: frame parser + message reassembly */

/*
 * Called once per complete message: TEXT/BINARY (reassembled from its
 * fragments, text already checked to be UTF-8), PING, PONG, or CLOSE (data
 * is the raw close payload, already checked: empty or a valid code plus
 * UTF-8 reason). data is borrowed for the call. Return 0 to go on, non-zero
 * to stop feeding (the rest of the input is left unread).
 */
typedef int (*km_ws_msg_cb)(void *arg, int opcode, const unsigned char *data, size_t len);

/* New reader (NULL on ENOMEM). max_message: largest reassembled message
   (0: 64 KiB). */
struct km_ws_reader *km_ws_reader_new(size_t max_message, km_ws_msg_cb cb, void *arg);
/* Frees r and what it holds; NULL is fine. */
void km_ws_reader_free(struct km_ws_reader *r);
/* Changes the message limit (applies from the next message; 0: unchanged). */
void km_ws_reader_set_max(struct km_ws_reader *r, size_t max_message);
/*
 * Feeds bytes from the peer (borrowed for the call). Returns 0 (all
 * consumed, or cb asked to stop), or the close code the peer earned:
 * KM_WS_CLOSE_PROTOCOL (bad framing), KM_WS_CLOSE_BAD_DATA (text or close
 * reason not UTF-8), KM_WS_CLOSE_TOO_BIG (a message over max_message), or
 * KM_WS_CLOSE_TRY_LATER (out of memory); *reason (static text) says why.
 * After an error the reader is dead: every later call returns the same code.
 */
int km_ws_reader_feed(struct km_ws_reader *r, const void *data, size_t len,
                      const char **reason);
/* 1 while wslay holds bytes of ours (its 4 KiB frame context exists): an
   idle client between frames holds none. */
int km_ws_reader_holding(const struct km_ws_reader *r);

/* Where km_ws_reader_control's bytes go; it must take all of them. */
typedef void (*km_ws_sink)(void *arg, const unsigned char *data, size_t len);
/*
 * Writes one unmasked control frame (op CLOSE, PING or PONG; payload of at
 * most 125 bytes, borrowed) through r's wslay context into sink, whole, in
 * one or more calls made before this returns. Out of memory: the frame is
 * lost, as a dropped packet would be.
 */
void km_ws_reader_control(struct km_ws_reader *r, int op, const void *payload, size_t len,
                          km_ws_sink sink, void *arg);

/* Incremental UTF-8 check: state starts at 0; returns the new state, or -1
   when the bytes are not UTF-8. A complete text ends in state 0. */
int km_utf8_step(uint32_t *state, const unsigned char *p, size_t len);

/* ---- shared server frames ------------------------------------------------ */

/* Room for the longest server frame header (2 + 8 bytes). */
#define KM_FRAME_HEADROOM 10

/* What a frame carries: decides what backpressure may do with it. */
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

/* Growable text with KM_TB_FRONT spare bytes in front for the frame struct
   and the header. Start from {0}; a failed allocation sticks (failed), so a
   builder may append without checking each step. */
struct km_tb {
    unsigned char *p; /* block (owned until km_frame_from_tb) */
    size_t len;       /* payload bytes after the headroom */
    size_t cap;       /* payload bytes allocated after the headroom */
    int failed;       /* an allocation failed; the text is incomplete */
};

/* Makes room for at least want payload bytes in all: 0, or -1 (failed). */
int km_tb_reserve(struct km_tb *tb, size_t want);
/* Appends n bytes of s (borrowed): 0, or -1 (failed). */
int km_tb_add(struct km_tb *tb, const void *s, size_t n);
/* Appends the string s (borrowed): 0, or -1 (failed). */
int km_tb_str(struct km_tb *tb, const char *s);
/* Appends j as compact JSON (KM_JSON_FLAGS; j borrowed): 0, or -1 (failed). */
int km_tb_json(struct km_tb *tb, json_t *j);

/* Writes the header in front of tb's payload and makes it a frame (new,
   one reference); tb is emptied either way. NULL when tb failed or is
   empty of any block. */
struct km_frame *km_frame_from_tb(struct km_tb *tb, int opcode, int kind);

/* One more holder of f. Returns f. */
static inline struct km_frame *km_frame_ref(struct km_frame *f)
{
    f->refs++;
    return f;
}

/* One holder less; the last frees the block. NULL is fine. */
static inline void km_frame_unref(struct km_frame *f)
{
    if (f && --f->refs == 0)
        free(f); /* the struct and its bytes: one block */
}

/* evbuffer_add_reference cleanup (extra: the frame): the chain holding the
   frame's bytes was sent or freed; drops the chain's reference. */
void km_frame_evb_cleanup(const void *data, size_t len, void *extra);

#endif /* KM_WS_FRAME_H */
