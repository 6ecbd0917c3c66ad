/*
 * tsz.c - Gorilla-style compression of samples into fixed-size chunks (the
 * contract is tsz.h).
 *
 * Shape:
 *   - A chunk is one bit stream, most significant bit of each byte first,
 *     in the `cap` bytes that follow its header (one allocation, sized by
 *     km_tsz_size). The unused bits of the last byte are ones: a sample
 *     shorter than 8 bits starts with the '0' time code, so padding never
 *     decodes as a sample, and a wrong count never loads (km_tsz_load
 *     refuses other padding). Bytes past the last one are zero.
 *   - An append codes the sample into a small scratch buffer and a copy of
 *     the running state (struct km_tsz_state); only when every bit fits in
 *     `cap` are both copied into the chunk. So KM_TSZ_FULL leaves the chunk
 *     exactly as it was.
 *   - The encoder picks, per value, the cheapest of the codes its state
 *     allows; the decoder just follows the codes. Load decodes the whole
 *     stream once, which both checks it and rebuilds the state the next
 *     append continues from.
 *   - Reads never leave the chunk's `cap` bytes, whatever the bits say: a
 *     read near the end goes byte by byte and sees zeros past it; running
 *     past the bits in use is caught after each sample.
 *
 * Bit grammar (zz(x) is the zigzag map 0,-1,1,-2,... -> 0,1,2,3,...):
 *
 *   sample  = time value{ncols}
 *   time    = first sample: t as 64 bits
 *             then with delta = t - t_prev, dod = delta - delta_prev
 *             (modulo 2^64; delta_prev = 0 for the second sample):
 *               '0'                 dod == 0
 *               '10'    + 7 bits    zz(dod) < 2^7
 *               '110'   + 10 bits   zz(dod) < 2^10
 *               '1110'  + 16 bits   zz(dod) < 2^16
 *               '11110' + 32 bits   zz(dod) < 2^32
 *               '11111' + 64 bits   any other
 *   value   = '0'                   the same bits as the previous value
 *             '10'  + int           decimal, the previous exponent e:
 *                                   int = zz(n - n_prev)
 *             '110' + e:3 + int     decimal, a new exponent e (0..6):
 *                                   int = zz(n - b), b = v_prev * 10^e
 *                                   when that is a decimal at e, else 0
 *             '111' + xor           anything else (below)
 *   int     = '0' + 7 bits | '10' + 14 bits | '110' + 21 bits
 *             | '1110' + 32 bits | '1111' + 55 bits
 *             (|n| < 2^53, so a difference's zigzag fits 55 bits)
 *   xor     = x = bits(v) ^ bits(v_prev), never 0, as Gorilla:
 *             '0' + sig bits        x fits the previous window (lead, sig):
 *                                   x >> (64 - lead - sig)
 *             '1' + lead:6 + (sig - 1):6 + sig bits   a new window
 *
 *   A decimal is v == (double)n / 10^e exactly (same bits) with |n| < 2^53:
 *   the decoder computes v that way, so the encoder only uses the code
 *   after checking the round trip bit for bit. -0.0, NaN and infinities
 *   never pass, so they go as XOR. Before the first sample every column's
 *   previous value is +0.0 (bits 0) with no exponent and no window. An
 *   XOR-coded value leaves no exponent (the next decimal is a new one).
 *
 *   A 1 s step costs 1 bit of time; an unchanged value 1 bit; a gauge with
 *   two decimals moving by less than +-0.63 costs 10 bits.
 */

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "tsz.h"

#define KM_TSZ_CAP_MIN   16
#define KM_TSZ_CAP_MAX   65535
#define KM_TSZ_COUNT_MAX 65535
#define KM_TSZ_EXP_MAX   6           /* decimal exponents 0..6 */
#define KM_TSZ_N_LIM     (1LL << 53) /* |n| below it: exact as a double */
/* Scratch for one sample: 7 bits of a partial byte, 69 of time, at most 80
   per value, and 8 bytes of slack for the 64-bit writes. */
#define KM_TSZ_SCRATCH 96

/* A chunk: header, then `cap` data bytes. */
struct km_tsz {
    uint32_t cap;           /* data bytes */
    uint32_t nbits;         /* bits in use */
    uint32_t count;         /* samples held */
    uint32_t ncols;         /* values per sample */
    int64_t first;          /* first sample's time */
    struct km_tsz_state st; /* what the next append is coded against */
    uint8_t data[];         /* the bit stream, padded with ones */
};

/* The decoder's steps, inlined into one loop so the reader stays in
   registers. */
#define KM_TSZ_INLINE static inline __attribute__((always_inline))

/* Writes bits into a scratch buffer. */
struct km_tsz_wr {
    uint8_t buf[KM_TSZ_SCRATCH]; /* starts with the chunk's partial last byte */
    unsigned pos;                /* next bit */
};

/* Reads bits from a chunk's data, through a cached 64-bit window. */
struct km_tsz_rd {
    const uint8_t *p; /* data */
    size_t cap;       /* readable bytes */
    uint64_t pos;     /* next bit */
    uint64_t win;     /* bits from pos on, first one at the top */
    unsigned avail;   /* of them valid */
};

static const double p10[KM_TSZ_EXP_MAX + 1] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
/* Payload widths of the five int classes. */
static const unsigned int_width[5] = {7, 14, 21, 32, 55};

static uint64_t zz(uint64_t x)
{
    return (x << 1) ^ (0 - (x >> 63));
}

KM_TSZ_INLINE uint64_t unzz(uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

KM_TSZ_INLINE uint64_t dbits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

KM_TSZ_INLINE double bitsd(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

KM_TSZ_INLINE uint64_t load_be64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
    return __builtin_bswap64(x);
}

static void store_be64(uint8_t *p, uint64_t x)
{
    x = __builtin_bswap64(x);
    memcpy(p, &x, sizeof x);
}

/* ---- bit writer ------------------------------------------------------- */

/* Appends the low n (1..57) bits of val. */
static void wr(struct km_tsz_wr *w, uint64_t val, unsigned n)
{
    unsigned b = w->pos >> 3, o = w->pos & 7;
    uint64_t x = load_be64(w->buf + b);

    val &= (1ULL << n) - 1;
    store_be64(w->buf + b, x | ((val << (64 - n)) >> o));
    w->pos += n;
}

static void wr64(struct km_tsz_wr *w, uint64_t val)
{
    wr(w, val >> 32, 32);
    wr(w, val, 32);
}

/* ---- bit reader ------------------------------------------------------- */

/* The 8 bytes at byte b, zeros past the end of the data: the slow path. */
static __attribute__((noinline)) uint64_t rd_tail(const uint8_t *p, size_t cap, size_t b)
{
    uint64_t x = 0;

    for (unsigned i = 0; i < 8; i++)
        x = (x << 8) | (b + i < cap ? p[b + i] : 0);
    return x;
}

/* Loads the window at r->pos. */
KM_TSZ_INLINE void rd_fill(struct km_tsz_rd *r)
{
    size_t b = r->pos >> 3;
    uint64_t x = b + 8 <= r->cap ? load_be64(r->p + b) : rd_tail(r->p, r->cap, b);

    r->win = x << (r->pos & 7);
    r->avail = 64 - (r->pos & 7);
}

KM_TSZ_INLINE void rd_init(struct km_tsz_rd *r, const uint8_t *p, size_t cap,
                           uint64_t pos)
{
    r->p = p;
    r->cap = cap;
    r->pos = pos;
    rd_fill(r);
}

/* The next n (1..57) bits, not consumed. */
KM_TSZ_INLINE uint64_t peek(struct km_tsz_rd *r, unsigned n)
{
    if (r->avail < n)
        rd_fill(r);
    return r->win >> (64 - n);
}

/* Consumes n (1..57) bits, peeked before. */
KM_TSZ_INLINE void skip(struct km_tsz_rd *r, unsigned n)
{
    r->win <<= n;
    r->avail -= n;
    r->pos += n;
}

/* The next n (1..57) bits. */
KM_TSZ_INLINE uint64_t rd(struct km_tsz_rd *r, unsigned n)
{
    uint64_t v = peek(r, n);
    skip(r, n);
    return v;
}

KM_TSZ_INLINE uint64_t rd64(struct km_tsz_rd *r)
{
    uint64_t hi = rd(r, 32);
    return (hi << 32) | rd(r, 32);
}

/* ---- decimals --------------------------------------------------------- */

/* Rounds x (|x| < 2^53) to the nearest integer, halves away from zero. */
static int64_t round_half_away(double x)
{
    int64_t n = (int64_t)x;
    double frac = x - (double)n; /* exact below 2^53 */

    if (frac >= 0.5)
        n++;
    else if (frac <= -0.5)
        n--;
    return n;
}

/* True, with *n, when v == n / 10^e bit for bit and |n| < 2^53. */
static bool dec_at(double v, int e, int64_t *n)
{
    double x = v * p10[e];

    if (!(x < 0x1p53 && x > -0x1p53)) /* also NaN */
        return false;
    *n = round_half_away(x);
    if (*n >= KM_TSZ_N_LIM || *n <= -KM_TSZ_N_LIM)
        return false;
    return dbits((double)*n / p10[e]) == dbits(v);
}

/* What a new exponent's n is coded against: the previous value (bits b)
   scaled by 10^e when that is exact, else 0. So a series coming back to
   decimals after an XOR-coded value costs a difference, not a whole n. */
static int64_t dec_base(uint64_t b, int e)
{
    int64_t n;
    return dec_at(bitsd(b), e, &n) ? n : 0;
}

/* The smallest exponent making v a decimal (and its n), or -1. */
static int dec_find(double v, int64_t *n)
{
    for (int e = 0; e <= KM_TSZ_EXP_MAX; e++)
        if (dec_at(v, e, n))
            return e;
    return -1;
}

/* The int class of a zigzagged integer (below 2^55). */
static unsigned int_class(uint64_t z)
{
    unsigned k = 0;

    while (k < 4 && z >> int_width[k])
        k++;
    return k;
}

/* Its prefix: k ones and a zero, or four ones. */
static unsigned int_prefix_len(unsigned k)
{
    return k < 4 ? k + 1 : 4;
}

static unsigned int_cost(uint64_t z)
{
    unsigned k = int_class(z);
    return int_prefix_len(k) + int_width[k];
}

static void wr_int(struct km_tsz_wr *w, uint64_t z)
{
    static const uint8_t code[5] = {0x0, 0x2, 0x6, 0xe, 0xf};
    unsigned k = int_class(z);

    wr(w, code[k], int_prefix_len(k));
    wr(w, z, int_width[k]);
}

KM_TSZ_INLINE uint64_t rd_int(struct km_tsz_rd *r)
{
    unsigned c = (unsigned)peek(r, 4);
    unsigned k = c < 8 ? 0 : c < 12 ? 1 : c < 14 ? 2 : c < 15 ? 3 : 4;

    skip(r, int_prefix_len(k));
    return rd(r, int_width[k]);
}

/* ---- encoder ---------------------------------------------------------- */

static void enc_time(struct km_tsz_wr *w, struct km_tsz_state *st, bool first, int64_t t)
{
    uint64_t delta, z;

    if (first) {
        wr64(w, (uint64_t)t);
        st->t = t;
        st->delta = 0;
        return;
    }
    delta = (uint64_t)t - (uint64_t)st->t;
    z = zz(delta - st->delta);
    if (z == 0) {
        wr(w, 0x0, 1);
    } else if (z < (1ULL << 7)) {
        wr(w, 0x2, 2);
        wr(w, z, 7);
    } else if (z < (1ULL << 10)) {
        wr(w, 0x6, 3);
        wr(w, z, 10);
    } else if (z < (1ULL << 16)) {
        wr(w, 0xe, 4);
        wr(w, z, 16);
    } else if (z < (1ULL << 32)) {
        wr(w, 0x1e, 5);
        wr(w, z, 32);
    } else {
        wr(w, 0x1f, 5);
        wr64(w, z);
    }
    st->t = t;
    st->delta = delta;
}

/* Column i's XOR code for bits b: its cost, and the window it would use. */
static unsigned xor_plan(const struct km_tsz_state *st, unsigned i, uint64_t b,
                         bool *reuse, unsigned *lead, unsigned *sig)
{
    uint64_t x = b ^ st->bits[i];
    unsigned l = (unsigned)__builtin_clzll(x), tr = (unsigned)__builtin_ctzll(x);

    *reuse = st->sig[i] && l >= st->lead[i] && tr >= 64u - st->lead[i] - st->sig[i];
    if (*reuse) {
        *lead = st->lead[i];
        *sig = st->sig[i];
        return 3 + 1 + *sig;
    }
    *lead = l;
    *sig = 64 - l - tr;
    return 3 + 1 + 12 + *sig;
}

static void enc_xor(struct km_tsz_wr *w, struct km_tsz_state *st, unsigned i, uint64_t b,
                    bool reuse, unsigned lead, unsigned sig)
{
    uint64_t x = (b ^ st->bits[i]) >> (64 - lead - sig);

    wr(w, reuse ? 0xe : 0xf, 4); /* '111', then the window bit */
    if (!reuse) {
        wr(w, lead, 6);
        wr(w, sig - 1, 6);
        st->lead[i] = (uint8_t)lead;
        st->sig[i] = (uint8_t)sig;
    }
    if (sig > 32) {
        wr(w, x >> 32, sig - 32);
        wr(w, x, 32);
    } else {
        wr(w, x, sig);
    }
    st->exp[i] = -1;
    st->scaled[i] = 0;
}

/* Codes column i's value v with the cheapest code the state allows. */
static void enc_value(struct km_tsz_wr *w, struct km_tsz_state *st, unsigned i, double v)
{
    uint64_t b = dbits(v), zp = 0, zn = 0;
    unsigned cost_prev = ~0u, cost_new = ~0u, cost_xor, lead, sig;
    int64_t np = 0, nn = 0;
    int e = -1;
    bool reuse;

    if (b == st->bits[i]) {
        wr(w, 0x0, 1);
        return;
    }
    if (st->exp[i] >= 0 && dec_at(v, st->exp[i], &np)) {
        zp = zz((uint64_t)np - (uint64_t)st->scaled[i]);
        cost_prev = 2 + int_cost(zp);
    }
    e = dec_find(v, &nn);
    if (e >= 0 && e != st->exp[i]) {
        zn = zz((uint64_t)nn - (uint64_t)dec_base(st->bits[i], e));
        cost_new = 3 + 3 + int_cost(zn);
    }
    cost_xor = xor_plan(st, i, b, &reuse, &lead, &sig);
    if (cost_prev <= cost_new && cost_prev <= cost_xor) {
        wr(w, 0x2, 2);
        wr_int(w, zp);
        st->scaled[i] = np;
    } else if (cost_new <= cost_xor) {
        wr(w, 0x6, 3);
        wr(w, (uint64_t)e, 3);
        wr_int(w, zn);
        st->exp[i] = (int8_t)e;
        st->scaled[i] = nn;
    } else {
        enc_xor(w, st, i, b, reuse, lead, sig);
    }
    st->bits[i] = b;
}

/* ---- decoder ---------------------------------------------------------- */

KM_TSZ_INLINE int dec_time(struct km_tsz_rd *r, struct km_tsz_state *st, bool first)
{
    unsigned c;
    uint64_t z, t;

    if (first) {
        st->t = (int64_t)rd64(r);
        st->delta = 0;
        return KM_TSZ_OK;
    }
    c = (unsigned)peek(r, 5);
    if (c < 0x10) {
        skip(r, 1);
        z = 0;
    } else if (c < 0x18) {
        skip(r, 2);
        z = rd(r, 7);
    } else if (c < 0x1c) {
        skip(r, 3);
        z = rd(r, 10);
    } else if (c < 0x1e) {
        skip(r, 4);
        z = rd(r, 16);
    } else if (c == 0x1e) {
        skip(r, 5);
        z = rd(r, 32);
    } else {
        skip(r, 5);
        z = rd64(r);
    }
    st->delta += unzz(z);
    t = (uint64_t)st->t + st->delta;
    if ((int64_t)t <= st->t)
        return KM_TSZ_CORRUPT; /* the encoder refuses that order */
    st->t = (int64_t)t;
    return KM_TSZ_OK;
}

KM_TSZ_INLINE int dec_xor(struct km_tsz_rd *r, struct km_tsz_state *st, unsigned i)
{
    unsigned lead = st->lead[i], sig = st->sig[i];
    uint64_t x;

    if (rd(r, 1)) {
        lead = (unsigned)rd(r, 6);
        sig = (unsigned)rd(r, 6) + 1;
        if (lead + sig > 64)
            return KM_TSZ_CORRUPT;
        st->lead[i] = (uint8_t)lead;
        st->sig[i] = (uint8_t)sig;
    } else if (sig == 0) {
        return KM_TSZ_CORRUPT; /* no window to reuse yet */
    }
    if (sig > 32) {
        x = rd(r, sig - 32) << 32;
        x |= rd(r, 32);
    } else {
        x = rd(r, sig);
    }
    st->bits[i] ^= x << (64 - lead - sig);
    st->exp[i] = -1;
    st->scaled[i] = 0;
    return KM_TSZ_OK;
}

/* Decimal n at exponent e into column i. */
KM_TSZ_INLINE int dec_set(struct km_tsz_state *st, unsigned i, int e, int64_t n)
{
    if (n >= KM_TSZ_N_LIM || n <= -KM_TSZ_N_LIM)
        return KM_TSZ_CORRUPT;
    st->bits[i] = dbits((double)n / p10[e]);
    st->exp[i] = (int8_t)e;
    st->scaled[i] = n;
    return KM_TSZ_OK;
}

KM_TSZ_INLINE int dec_value(struct km_tsz_rd *r, struct km_tsz_state *st, unsigned i)
{
    unsigned c = (unsigned)peek(r, 3), e;

    if (c < 4) { /* '0' */
        skip(r, 1);
        return KM_TSZ_OK;
    }
    if (c < 6) { /* '10' */
        skip(r, 2);
        if (st->exp[i] < 0)
            return KM_TSZ_CORRUPT;
        return dec_set(st, i, st->exp[i],
                       (int64_t)((uint64_t)st->scaled[i] + unzz(rd_int(r))));
    }
    skip(r, 3);
    if (c == 7)
        return dec_xor(r, st, i);
    e = (unsigned)rd(r, 3);
    if (e > KM_TSZ_EXP_MAX)
        return KM_TSZ_CORRUPT;
    return dec_set(st, i, (int)e,
                   (int64_t)((uint64_t)dec_base(st->bits[i], (int)e) + unzz(rd_int(r))));
}

/* Decodes one sample into st; KM_TSZ_CORRUPT past `end` bits. */
KM_TSZ_INLINE int dec_sample(struct km_tsz_rd *r, uint64_t end, struct km_tsz_state *st,
                             unsigned ncols, bool first)
{
    int rc = dec_time(r, st, first);

    for (unsigned i = 0; i < ncols && rc == KM_TSZ_OK; i++)
        rc = dec_value(r, st, i);
    if (rc == KM_TSZ_OK && r->pos > end)
        rc = KM_TSZ_CORRUPT;
    return rc;
}

/* ---- the API ---------------------------------------------------------- */

static void state_init(struct km_tsz_state *st)
{
    memset(st, 0, sizeof *st);
    memset(st->exp, -1, sizeof st->exp);
}

size_t km_tsz_size(unsigned cap)
{
    return offsetof(struct km_tsz, data) + cap;
}

int km_tsz_init(struct km_tsz *c, unsigned cap, unsigned ncols)
{
    if (!c || cap < KM_TSZ_CAP_MIN || cap > KM_TSZ_CAP_MAX || ncols < 1 ||
        ncols > KM_TSZ_COLS_MAX)
        return KM_TSZ_EINVAL;
    c->cap = cap;
    c->nbits = 0;
    c->count = 0;
    c->ncols = ncols;
    c->first = 0;
    state_init(&c->st);
    memset(c->data, 0, cap);
    return KM_TSZ_OK;
}

int km_tsz_append(struct km_tsz *c, int64_t t_ms, const double *v)
{
    struct km_tsz_wr w;
    struct km_tsz_state st = c->st;
    unsigned o = c->nbits & 7;

    if (c->count >= KM_TSZ_COUNT_MAX)
        return KM_TSZ_FULL;
    if (c->count && t_ms <= c->st.t)
        return KM_TSZ_ORDER;
    memset(w.buf, 0, sizeof w.buf);
    if (o) /* the partial last byte, without its padding */
        w.buf[0] = c->data[c->nbits >> 3] & (uint8_t)(0xff00u >> o);
    w.pos = o;
    enc_time(&w, &st, c->count == 0, t_ms);
    for (unsigned i = 0; i < c->ncols; i++)
        enc_value(&w, &st, i, v[i]);
    if ((uint64_t)c->nbits + (w.pos - o) > (uint64_t)c->cap * 8)
        return KM_TSZ_FULL;
    memcpy(c->data + (c->nbits >> 3), w.buf, (w.pos + 7) >> 3);
    c->nbits += w.pos - o;
    if (c->nbits & 7) /* pad the last byte with ones (see the top) */
        c->data[c->nbits >> 3] |= (uint8_t)(0xffu >> (c->nbits & 7));
    c->st = st;
    if (c->count++ == 0)
        c->first = t_ms;
    return KM_TSZ_OK;
}

unsigned km_tsz_count(const struct km_tsz *c)
{
    return c->count;
}

unsigned km_tsz_ncols(const struct km_tsz *c)
{
    return c->ncols;
}

int64_t km_tsz_first(const struct km_tsz *c)
{
    return c->count ? c->first : 0;
}

int64_t km_tsz_last(const struct km_tsz *c)
{
    return c->count ? c->st.t : 0;
}

size_t km_tsz_used(const struct km_tsz *c)
{
    return (c->nbits + 7) >> 3;
}

const uint8_t *km_tsz_bytes(const struct km_tsz *c, size_t *len)
{
    *len = km_tsz_used(c);
    return c->data;
}

int km_tsz_load(struct km_tsz *c, unsigned cap, unsigned ncols, unsigned count,
                const uint8_t *buf, size_t len)
{
    struct km_tsz_rd r;
    struct km_tsz_state st;
    unsigned pad;
    int rc = KM_TSZ_OK;

    if (!c || cap < KM_TSZ_CAP_MIN || cap > KM_TSZ_CAP_MAX || ncols < 1 ||
        ncols > KM_TSZ_COLS_MAX)
        return KM_TSZ_EINVAL;
    if ((!buf && len) || len > cap || count > KM_TSZ_COUNT_MAX) {
        km_tsz_init(c, cap, ncols);
        return KM_TSZ_CORRUPT;
    }
    if (len) /* memmove: buf may be this chunk's own bytes */
        memmove(c->data, buf, len);
    memset(c->data + len, 0, cap - len);
    rd_init(&r, c->data, cap, 0);
    state_init(&st);
    for (unsigned k = 0; k < count && rc == KM_TSZ_OK; k++)
        rc = dec_sample(&r, (uint64_t)len * 8, &st, ncols, k == 0);
    /* exactly len bytes, the padding bits of the last one ones */
    pad = (r.pos & 7) ? 0xffu >> (r.pos & 7) : 0;
    if (rc == KM_TSZ_OK &&
        ((r.pos + 7) >> 3 != len || (pad && (c->data[len - 1] & pad) != pad)))
        rc = KM_TSZ_CORRUPT;
    if (rc != KM_TSZ_OK) {
        km_tsz_init(c, cap, ncols);
        return KM_TSZ_CORRUPT;
    }
    c->cap = cap;
    c->ncols = ncols;
    c->nbits = (uint32_t)r.pos;
    c->count = count;
    c->st = st;
    c->first = 0;
    if (count) { /* the first time is the stream's first 64 bits */
        rd_init(&r, c->data, cap, 0);
        c->first = (int64_t)rd64(&r);
    }
    return KM_TSZ_OK;
}

void km_tsz_iter_init(struct km_tsz_iter *it, const struct km_tsz *c)
{
    struct km_tsz_rd r;

    rd_init(&r, c->data, c->cap, 0);
    it->c = c;
    it->left = c->count;
    it->done = 0;
    it->pos = 0;
    it->end = c->nbits;
    it->win = r.win;
    it->avail = r.avail;
    state_init(&it->st);
}

/* The window read ahead only holds bits at or past `end` that a later
   append may have changed, and no sample before `end` reads them. */
int km_tsz_next(struct km_tsz_iter *it, int64_t *t_ms, double *v)
{
    const struct km_tsz *c = it->c;
    struct km_tsz_rd r = {c->data, c->cap, it->pos, it->win, it->avail};
    unsigned ncols = c->ncols;

    if (!it->left)
        return 0;
    if (dec_sample(&r, it->end, &it->st, ncols, it->done == 0) != KM_TSZ_OK) {
        it->left = 0;
        return KM_TSZ_CORRUPT;
    }
    it->pos = r.pos;
    it->win = r.win;
    it->avail = r.avail;
    it->left--;
    it->done++;
    *t_ms = it->st.t;
    for (unsigned i = 0; i < ncols; i++)
        v[i] = bitsd(it->st.bits[i]);
    return 1;
}
