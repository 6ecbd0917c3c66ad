/*
 * ws_model.h - the harnesses' own reading of RFC 6455 frames: an
 * independent model (written from the RFC, not from core/ws_frame.c) that
 * fuzz_ws_frame.c and fuzz_ws_client.c compare katomon's readers with.
 * Header-only, static functions.
 */
#ifndef KM_FUZZ_WS_MODEL_H
#define KM_FUZZ_WS_MODEL_H

#include <stdint.h>
#include <string.h>

#include "fuzz.h"

/* 1 when p[0..n) is whole, valid UTF-8 (RFC 3629: no overlongs, no
   surrogates, nothing above U+10FFFF); with `prefix`, when it is the start
   of valid UTF-8 (it may end inside a sequence that could still be valid). */
static inline int model_utf8(const uint8_t *p, size_t n, int prefix)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, c &= 0x07, min = 0x10000;
        } else {
            return 0;
        }
        size_t j;
        for (j = 1; j <= k && i + j < n; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return 0;
            c = c << 6 | (p[i + j] & 0x3F);
            /* as soon as the bytes so far can only give a bad code point */
            uint32_t lo = c << 6 * (k - j), hi = lo | ((1u << 6 * (k - j)) - 1);
            if (hi < min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF))
                return 0;
        }
        if (j <= k) { /* cut short */
            if (!prefix)
                return 0;
            /* the lead byte alone may already be hopeless (C0, C1, F5+) */
            uint32_t lo = c << 6 * (k - j + 1), hi = lo | ((1u << 6 * (k - j + 1)) - 1);
            if (hi < min || lo > 0x10FFFF)
                return 0;
            return 1;
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* One frame header as the RFC draws it. */
struct model_frame {
    int fin, rsv, op, masked;
    uint64_t len;   /* payload length */
    int minimal;    /* the length used its shortest form */
    int msb;        /* a 64-bit length with its top bit set */
    uint8_t key[4]; /* masking key, when masked */
    size_t hlen;    /* header bytes */
};

/* Reads a header at p[0..n): 1 (whole), 0 (cut short). */
static inline int model_header(const uint8_t *p, size_t n, struct model_frame *f)
{
    memset(f, 0, sizeof *f);
    if (n < 2)
        return 0;
    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->op = p[0] & 15;
    f->masked = p[1] >> 7;
    uint64_t l = p[1] & 127;
    size_t h = 2;
    f->minimal = 1;
    if (l == 126) {
        if (n < 4)
            return 0;
        l = (uint64_t)p[2] << 8 | p[3];
        f->minimal = l >= 126;
        h = 4;
    } else if (l == 127) {
        if (n < 10)
            return 0;
        l = 0;
        for (int i = 0; i < 8; i++)
            l = l << 8 | p[2 + i];
        f->minimal = l >= 65536;
        f->msb = (int)(l >> 63);
        h = 10;
    }
    f->len = l;
    if (f->masked) {
        if (n < h + 4)
            return 0;
        memcpy(f->key, p + h, 4);
        h += 4;
    }
    f->hlen = h;
    return 1;
}

/* 1 when the first n bytes of a header that is not whole already show it
   malformed (a fragmented or long control frame; a length not in its
   shortest form, or with its top bit set): a reader may refuse it early. */
static inline int model_header_bad_early(const uint8_t *p, size_t n)
{
    if (n < 2)
        return 0;
    unsigned l7 = p[1] & 127;
    if ((p[0] & 8) && (!(p[0] & 0x80) || l7 > 125))
        return 1;
    if (l7 == 126 && n >= 4)
        return ((unsigned)p[2] << 8 | p[3]) < 126;
    if (l7 == 127 && n >= 10) {
        uint64_t l = 0;
        for (int i = 0; i < 8; i++)
            l = l << 8 | p[2 + i];
        return l < 65536 || (l >> 63);
    }
    return 0;
}

/* Writes f's header (as model_header read it, in the same length form)
   into out (>= 14 bytes): its length. */
static inline size_t model_write_header(const struct model_frame *f, uint8_t *out)
{
    size_t form = f->hlen - (f->masked ? 4 : 0), h = form;
    out[0] = (uint8_t)(f->fin << 7 | f->rsv << 4 | f->op);
    if (form == 2) {
        out[1] = (uint8_t)f->len;
    } else if (form == 4) {
        out[1] = 126;
        out[2] = (uint8_t)(f->len >> 8);
        out[3] = (uint8_t)f->len;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(f->len >> (56 - 8 * i));
    }
    out[1] |= (uint8_t)(f->masked << 7);
    if (f->masked) {
        memcpy(out + h, f->key, 4);
        h += 4;
    }
    return h;
}

/* 1 when a close code may be received (RFC 6455 7.4, the IANA registry:
   1000-1003, 1007-1014; 3000-4999). */
static inline int model_close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
           (c >= 3000 && c <= 4999);
}

#endif /* KM_FUZZ_WS_MODEL_H */
