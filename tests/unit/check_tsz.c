/*
 * check_tsz.c - unit tests of the Gorilla-style chunk codec (core/tsz.h):
 * bit-exact round trips of many value and time shapes, FULL at capacity
 * and at 65535 samples, ORDER, load of every prefix and of every single-bit
 * flip (run under ASan: nothing may be read out of bounds), load-then-append
 * equal to append-all, and the bytes per sample of four typical series
 * (printed; the compressible ones asserted well under 4 bytes).
 *
 * Every data set comes from a fixed-seed generator, so a failure repeats.
 */

#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tsz.h"

#define NSAMP 3600 /* one hour at 1 s */

/* Value shapes. */
enum shape {
    SH_CONST,   /* one value */
    SH_COUNTER, /* integer counter, + 0..2000 a sample */
    SH_BYTES,   /* integer counter, + 0..2000000 a sample */
    SH_PCT2,    /* 2-decimal gauge, random walk in 0..100 */
    SH_NOISE,   /* full-mantissa doubles */
    SH_SPECIAL, /* NaN, infinities, -0.0, subnormals, mixed in */
    SH_NEG,     /* negative decimals and integers */
    SH_HUGE,    /* beyond 2^53, 1e300, DBL_MAX */
    SH_MIXED,   /* any of the above, picked per sample */
    SH_COUNT
};

/* Time shapes. */
enum tshape {
    TS_STEP,    /* 1000 ms apart */
    TS_JITTER,  /* 1000 +- 30 ms apart */
    TS_GAPS,    /* 1 ms to hours apart */
    TS_EXTREME, /* from near INT64_MIN, with huge jumps */
    TS_COUNT
};

/* A generator: splitmix64 and per-column walk state. */
struct gen {
    uint64_t s;       /* PRNG state */
    double walk[4];   /* per-column running value */
    int64_t t;        /* last time */
    enum shape shape; /* values */
    enum tshape ts;   /* times */
};

static uint64_t rnd(struct gen *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unit(struct gen *g)
{
    return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

static void gen_init(struct gen *g, uint64_t seed, enum shape sh, enum tshape ts)
{
    memset(g, 0, sizeof *g);
    g->s = seed;
    g->shape = sh;
    g->ts = ts;
    for (int i = 0; i < 4; i++)
        g->walk[i] = sh == SH_PCT2 ? 5000 : sh == SH_BYTES ? 1e9 : 0;
    g->t = ts == TS_EXTREME ? INT64_MIN + 5 : 1765000000000LL;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static double special(struct gen *g)
{
    static const double v[] = {0.0, -0.0, 1.0, -1.0, DBL_MIN, 4.9e-324, -4.9e-324};
    static const uint64_t nan[] = {0x7ff8000000000000ULL, 0xfff8000000000000ULL,
                                   0x7ff8000000000001ULL, 0x7ff4000000000abcULL};
    uint64_t k = rnd(g) % 10;

    if (k == 7)
        return from_bits(nan[rnd(g) % 4]); /* quiet, negative, with payloads */
    if (k == 8)
        return INFINITY;
    if (k == 9)
        return -INFINITY;
    return v[k];
}

static double value(struct gen *g, enum shape sh, int col)
{
    double *w = &g->walk[col];

    switch (sh) {
    case SH_CONST:
        return 42.5 + col;
    case SH_COUNTER:
        return *w += (double)(rnd(g) % 2001);
    case SH_BYTES:
        return *w += (double)(rnd(g) % 2000001);
    case SH_PCT2: /* *w in hundredths */
        *w += (double)((int64_t)(rnd(g) % 401) - 200);
        *w = *w < 0 ? 0 : *w > 10000 ? 10000 : *w;
        return *w / 100;
    case SH_NOISE:
        return 100 * unit(g) + col;
    case SH_SPECIAL:
        return rnd(g) % 3 ? special(g) : unit(g);
    case SH_NEG:
        return rnd(g) % 2 ? -(double)(rnd(g) % 100000) / 1000
                          : -(double)(int64_t)(rnd(g) >> 20);
    case SH_HUGE: {
        static const double v[] = {DBL_MAX,
                                   -DBL_MAX,
                                   1e300,
                                   9007199254740993.0,
                                   18014398509481984.0,
                                   1.2345678901234567e20};
        return rnd(g) % 2 ? v[rnd(g) % 6] : (double)(rnd(g) >> 1) * 1e3;
    }
    default:
        return value(g, (enum shape)(rnd(g) % SH_MIXED), col);
    }
}

static int64_t next_time(struct gen *g)
{
    switch (g->ts) {
    case TS_STEP:
        return g->t += 1000;
    case TS_JITTER:
        return g->t += 970 + (int64_t)(rnd(g) % 61);
    case TS_GAPS:
        return g->t += 1 + (int64_t)(rnd(g) % (rnd(g) % 2 ? 10 : 20000000));
    default:
        /* 3600 jumps below 2^52 stay inside int64 from INT64_MIN */
        return g->t += 1 + (int64_t)(rnd(g) >> (rnd(g) % 2 ? 12 : 40));
    }
}

/* The samples of one data set. */
struct set {
    unsigned n;         /* samples */
    unsigned ncols;     /* values per sample */
    int64_t t[NSAMP];   /* times */
    double v[NSAMP][4]; /* values */
};

static struct set *set_make(uint64_t seed, enum shape sh, enum tshape ts, unsigned ncols,
                            unsigned n)
{
    struct set *s = calloc(1, sizeof *s);
    struct gen g;

    ck_assert_ptr_nonnull(s);
    gen_init(&g, seed, sh, ts);
    s->n = n;
    s->ncols = ncols;
    for (unsigned k = 0; k < n; k++) {
        s->t[k] = next_time(&g);
        for (unsigned i = 0; i < ncols; i++)
            s->v[k][i] = value(&g, sh, (int)i);
    }
    return s;
}

static struct km_tsz *chunk_new(unsigned cap, unsigned ncols)
{
    struct km_tsz *c = malloc(km_tsz_size(cap));

    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(km_tsz_init(c, cap, ncols), KM_TSZ_OK);
    return c;
}

/* Appends samples [from, to) of s; returns how many went in before FULL. */
static unsigned append_range(struct km_tsz *c, const struct set *s, unsigned from,
                             unsigned to)
{
    for (unsigned k = from; k < to; k++) {
        int rc = km_tsz_append(c, s->t[k], s->v[k]);
        if (rc == KM_TSZ_FULL)
            return k - from;
        ck_assert_int_eq(rc, KM_TSZ_OK);
    }
    return to - from;
}

/* Checks that c holds exactly the first n samples of s, bit for bit. */
static void expect_samples(const struct km_tsz *c, const struct set *s, unsigned n)
{
    struct km_tsz_iter it;
    int64_t t;
    double v[4];

    ck_assert_uint_eq(km_tsz_count(c), n);
    km_tsz_iter_init(&it, c);
    for (unsigned k = 0; k < n; k++) {
        ck_assert_int_eq(km_tsz_next(&it, &t, v), 1);
        ck_assert_int_eq(t, s->t[k]);
        ck_assert_msg(memcmp(v, s->v[k], s->ncols * sizeof(double)) == 0,
                      "sample %u differs", k);
    }
    ck_assert_int_eq(km_tsz_next(&it, &t, v), 0);
    if (n) {
        ck_assert_int_eq(km_tsz_first(c), s->t[0]);
        ck_assert_int_eq(km_tsz_last(c), s->t[n - 1]);
    }
}

/* Loads c's bytes into a fresh chunk of capacity cap. */
static struct km_tsz *reload(const struct km_tsz *c, unsigned cap)
{
    size_t len;
    const uint8_t *b = km_tsz_bytes(c, &len);
    struct km_tsz *d = malloc(km_tsz_size(cap));

    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(km_tsz_load(d, cap, km_tsz_ncols(c), km_tsz_count(c), b, len),
                     KM_TSZ_OK);
    return d;
}

START_TEST(test_roundtrip)
{
    for (int sh = 0; sh < SH_COUNT; sh++) {
        for (int ts = 0; ts < TS_COUNT; ts++) {
            for (unsigned ncols = 1; ncols <= 4; ncols += 3) {
                struct set *s =
                    set_make(1000 + (uint64_t)(sh * 10 + ts), sh, ts, ncols, NSAMP);
                struct km_tsz *c = chunk_new(65535, ncols), *d;
                unsigned n = append_range(c, s, 0, s->n);

                ck_assert_uint_gt(n, 500); /* even noise fits that many */
                expect_samples(c, s, n);
                d = reload(c, 65535);
                expect_samples(d, s, n);
                free(d);
                free(c);
                free(s);
            }
        }
    }
}
END_TEST

START_TEST(test_einval)
{
    struct km_tsz *c = malloc(km_tsz_size(65536));

    ck_assert_int_eq(km_tsz_init(c, 15, 1), KM_TSZ_EINVAL);
    ck_assert_int_eq(km_tsz_init(c, 65536, 1), KM_TSZ_EINVAL);
    ck_assert_int_eq(km_tsz_init(c, 64, 0), KM_TSZ_EINVAL);
    ck_assert_int_eq(km_tsz_init(c, 64, KM_TSZ_COLS_MAX + 1), KM_TSZ_EINVAL);
    ck_assert_int_eq(km_tsz_load(c, 64, 0, 0, NULL, 0), KM_TSZ_EINVAL);
    ck_assert_int_eq(km_tsz_init(c, 16, 1), KM_TSZ_OK);
    ck_assert_int_eq(km_tsz_init(c, 65535, 4), KM_TSZ_OK);
    ck_assert_uint_eq(km_tsz_count(c), 0);
    ck_assert_uint_eq(km_tsz_used(c), 0);
    ck_assert_int_eq(km_tsz_first(c), 0);
    ck_assert_int_eq(km_tsz_last(c), 0);
    free(c);
}
END_TEST

START_TEST(test_order)
{
    struct km_tsz *c = chunk_new(64, 2);
    double v[2] = {1.5, 2}, w[4];
    size_t len;
    uint8_t before[64];
    struct km_tsz_iter it;
    int64_t t;

    ck_assert_int_eq(km_tsz_append(c, INT64_MIN, v), KM_TSZ_OK);
    ck_assert_int_eq(km_tsz_append(c, INT64_MIN, v), KM_TSZ_ORDER);
    ck_assert_int_eq(km_tsz_append(c, 1000, v), KM_TSZ_OK);
    memcpy(before, km_tsz_bytes(c, &len), 64);
    ck_assert_int_eq(km_tsz_append(c, 1000, v), KM_TSZ_ORDER);
    ck_assert_int_eq(km_tsz_append(c, 999, v), KM_TSZ_ORDER);
    ck_assert_int_eq(km_tsz_append(c, INT64_MIN, v), KM_TSZ_ORDER);
    ck_assert_uint_eq(km_tsz_count(c), 2);
    ck_assert_uint_eq(km_tsz_used(c), len);
    ck_assert_mem_eq(km_tsz_bytes(c, &len), before, 64);
    ck_assert_int_eq(km_tsz_append(c, INT64_MAX, v), KM_TSZ_OK);
    ck_assert_int_eq(km_tsz_append(c, INT64_MAX, v), KM_TSZ_ORDER);
    ck_assert_int_eq(km_tsz_first(c), INT64_MIN);
    ck_assert_int_eq(km_tsz_last(c), INT64_MAX);
    /* deltas beyond INT64_MAX read back */
    km_tsz_iter_init(&it, c);
    ck_assert_int_eq(km_tsz_next(&it, &t, w), 1);
    ck_assert_int_eq(t, INT64_MIN);
    ck_assert_int_eq(km_tsz_next(&it, &t, w), 1);
    ck_assert_int_eq(t, 1000);
    ck_assert_int_eq(km_tsz_next(&it, &t, w), 1);
    ck_assert_int_eq(t, INT64_MAX);
    ck_assert(w[0] == 1.5 && w[1] == 2);
    ck_assert_int_eq(km_tsz_next(&it, &t, w), 0);
    free(c);
}
END_TEST

/* Fills chunks whose capacity is exactly the bytes some prefix needed. */
START_TEST(test_full_exact)
{
    struct set *s = set_make(7, SH_MIXED, TS_JITTER, 4, 400);
    struct km_tsz *big = chunk_new(65535, 4);
    size_t used[401];
    unsigned checked = 0;

    used[0] = 0;
    for (unsigned k = 0; k < s->n; k++) {
        ck_assert_int_eq(km_tsz_append(big, s->t[k], s->v[k]), KM_TSZ_OK);
        used[k + 1] = km_tsz_used(big);
    }
    for (unsigned k = 1; k < s->n; k++) {
        size_t len, len2;
        struct km_tsz *c;
        uint8_t *copy;

        if (used[k] < 16 || used[k + 1] == used[k])
            continue;
        c = chunk_new((unsigned)used[k], 4);
        ck_assert_uint_eq(append_range(c, s, 0, k), k);
        ck_assert_uint_eq(km_tsz_used(c), used[k]);
        copy = malloc(used[k]);
        memcpy(copy, km_tsz_bytes(c, &len), used[k]);
        ck_assert_mem_eq(copy, km_tsz_bytes(big, &len2), used[k] - 1);
        /* sample k needs a byte more than there is */
        ck_assert_int_eq(km_tsz_append(c, s->t[k], s->v[k]), KM_TSZ_FULL);
        ck_assert_int_eq(km_tsz_append(c, s->t[k], s->v[k]), KM_TSZ_FULL);
        ck_assert_uint_eq(km_tsz_count(c), k);
        ck_assert_uint_eq(km_tsz_used(c), used[k]);
        ck_assert_mem_eq(km_tsz_bytes(c, &len), copy, used[k]);
        expect_samples(c, s, k);
        free(copy);
        free(c);
        checked++;
    }
    ck_assert_uint_gt(checked, 100);
    free(big);
    free(s);
}
END_TEST

/* 65535 samples at most, whatever the room. */
START_TEST(test_full_count)
{
    struct km_tsz *c = chunk_new(65535, 1);
    double v = 3;
    unsigned k;

    for (k = 0; k < 65535; k++)
        ck_assert_int_eq(km_tsz_append(c, (int64_t)k * 1000, &v), KM_TSZ_OK);
    ck_assert_uint_lt(km_tsz_used(c), 20000); /* 2 bits a sample */
    ck_assert_int_eq(km_tsz_append(c, (int64_t)k * 1000, &v), KM_TSZ_FULL);
    ck_assert_uint_eq(km_tsz_count(c), 65535);
    ck_assert_int_eq(km_tsz_last(c), 65534000);
    free(c);
}
END_TEST

/* A valid chunk (mixed shapes), its exact-size capacity, and its bytes. */
struct sample_chunk {
    struct set *s;    /* the samples */
    struct km_tsz *c; /* holding all of them */
    const uint8_t *b; /* its bytes */
    size_t len;       /* their count */
    unsigned cap;     /* the smallest capacity it loads into */
};

static void sample_chunk(struct sample_chunk *sc, enum shape sh, unsigned n)
{
    sc->s = set_make(99, sh, TS_JITTER, 2, n);
    sc->c = chunk_new(65535, 2);
    ck_assert_uint_eq(append_range(sc->c, sc->s, 0, n), n);
    sc->b = km_tsz_bytes(sc->c, &sc->len);
    sc->cap = sc->len < 16 ? 16 : (unsigned)sc->len;
}

static void expect_empty(const struct km_tsz *c)
{
    ck_assert_uint_eq(km_tsz_count(c), 0);
    ck_assert_uint_eq(km_tsz_used(c), 0);
}

START_TEST(test_load_prefix)
{
    struct sample_chunk sc;
    struct km_tsz *d;
    uint8_t *buf;
    unsigned n;
    size_t len;

    sample_chunk(&sc, SH_MIXED, 120);
    d = malloc(km_tsz_size(sc.cap + 1));
    buf = calloc(1, sc.len + 1);
    memcpy(buf, sc.b, sc.len);
    n = km_tsz_count(sc.c);
    /* every truncation, with the full count */
    for (len = 0; len < sc.len; len++) {
        uint8_t *p = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        memcpy(p, sc.b, len);
        ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, n, p, len), KM_TSZ_CORRUPT);
        expect_empty(d);
        free(p);
    }
    /* every shorter count (the bytes are then too many), and more */
    for (unsigned k = 0; k < n; k++) {
        ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, k, sc.b, sc.len), KM_TSZ_CORRUPT);
        expect_empty(d);
    }
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, n + 1, sc.b, sc.len), KM_TSZ_CORRUPT);
    /* one byte more (a zero byte) */
    ck_assert_int_eq(km_tsz_load(d, sc.cap + 1, 2, n, buf, sc.len + 1), KM_TSZ_CORRUPT);
    expect_empty(d);
    /* more bytes than the capacity, a wrong ncols, a count beyond the limit */
    ck_assert_uint_gt(sc.len, 17);
    ck_assert_int_eq(km_tsz_load(d, sc.cap - 1, 2, n, sc.b, sc.len), KM_TSZ_CORRUPT);
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 1, n, sc.b, sc.len), KM_TSZ_CORRUPT);
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, 65536, sc.b, sc.len), KM_TSZ_CORRUPT);
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, 1, NULL, 5), KM_TSZ_CORRUPT);
    /* and the whole of it loads, from a copy and from its own bytes */
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, n, sc.b, sc.len), KM_TSZ_OK);
    expect_samples(d, sc.s, n);
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, n, km_tsz_bytes(d, &len), sc.len),
                     KM_TSZ_OK);
    expect_samples(d, sc.s, n);
    ck_assert_int_eq(km_tsz_load(d, sc.cap, 2, 0, NULL, 0), KM_TSZ_OK);
    expect_empty(d);
    free(buf);
    free(d);
    free(sc.c);
    free(sc.s);
}
END_TEST

/* Loads buf; when it loads, every sample must read back and appends work.
   Returns km_tsz_load's answer. */
static int load_any(struct km_tsz *d, unsigned cap, unsigned ncols, unsigned count,
                    const uint8_t *buf, size_t len)
{
    struct km_tsz_iter it;
    int64_t t, last = 0;
    double v[4] = {1, 2, 3, 4};
    unsigned k = 0;
    int rc = km_tsz_load(d, cap, ncols, count, buf, len);

    if (rc == KM_TSZ_CORRUPT) {
        expect_empty(d);
        return rc;
    }
    ck_assert_int_eq(rc, KM_TSZ_OK);
    ck_assert_uint_eq(km_tsz_used(d), len);
    km_tsz_iter_init(&it, d);
    while ((rc = km_tsz_next(&it, &t, v)) == 1) {
        ck_assert(k == 0 || t > last);
        last = t;
        k++;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(k, count);
    if (count && last < INT64_MAX) {
        int arc = km_tsz_append(d, last + 1, v);
        ck_assert(arc == KM_TSZ_OK || arc == KM_TSZ_FULL);
    }
    return rc;
}

START_TEST(test_load_bitflip)
{
    for (int sh = SH_PCT2; sh <= SH_MIXED; sh += SH_MIXED - SH_PCT2) {
        struct sample_chunk sc;
        struct km_tsz *d;
        uint8_t *p;
        unsigned corrupt = 0, flips;

        sample_chunk(&sc, sh, 150);
        d = malloc(km_tsz_size(sc.cap));
        p = malloc(sc.len);
        flips = (unsigned)sc.len * 8;
        for (size_t bit = 0; bit < flips; bit++) {
            memcpy(p, sc.b, sc.len);
            p[bit >> 3] ^= (uint8_t)(0x80 >> (bit & 7));
            corrupt += load_any(d, sc.cap, 2, km_tsz_count(sc.c), p, sc.len) != KM_TSZ_OK;
        }
        /* a flip in a payload gives another valid chunk (the history
           file's CRC catches those); a flip in a code mostly does not */
        ck_assert_uint_gt(corrupt, flips / 10);
        free(p);
        free(d);
        free(sc.c);
        free(sc.s);
    }
}
END_TEST

/* Random bytes, lengths and counts. */
START_TEST(test_load_garbage)
{
    struct gen g;
    struct km_tsz *d = malloc(km_tsz_size(256));
    gen_init(&g, 4242, SH_CONST, TS_STEP);
    for (int round = 0; round < 20000; round++) {
        size_t len = rnd(&g) % 257;
        uint8_t *p = malloc(len ? len : 1);
        unsigned ncols = 1 + (unsigned)(rnd(&g) % 4);

        for (size_t i = 0; i < len; i++)
            p[i] = (uint8_t)(rnd(&g) % 4 ? rnd(&g) : 0); /* zeros decode far */
        load_any(d, 256, ncols, (unsigned)(rnd(&g) % 40), p, len);
        free(p);
    }
    free(d);
}
END_TEST

START_TEST(test_load_append)
{
    for (int sh = 0; sh < SH_COUNT; sh++) {
        struct set *s = set_make(555 + (uint64_t)sh, sh, TS_GAPS, 3, 500);
        struct km_tsz *all = chunk_new(65535, 3);
        size_t la;
        const uint8_t *ba;

        ck_assert_uint_eq(append_range(all, s, 0, s->n), s->n);
        ba = km_tsz_bytes(all, &la);
        for (unsigned k = 0; k <= s->n; k += k < 5 ? 1 : 37) {
            struct km_tsz *part = chunk_new(65535, 3), *d;
            size_t ld;

            ck_assert_uint_eq(append_range(part, s, 0, k), k);
            d = reload(part, 65535);
            ck_assert_uint_eq(append_range(d, s, k, s->n), s->n - k);
            ck_assert_uint_eq(km_tsz_count(d), s->n);
            ck_assert_mem_eq(km_tsz_bytes(d, &ld), ba, la);
            ck_assert_uint_eq(ld, la);
            ck_assert_int_eq(km_tsz_first(d), s->t[0]);
            expect_samples(d, s, s->n);
            free(d);
            free(part);
        }
        free(all);
        free(s);
    }
}
END_TEST

/* An iterator sees the samples there were at km_tsz_iter_init. */
START_TEST(test_iter_snapshot)
{
    struct set *s = set_make(3, SH_NOISE, TS_STEP, 1, 50);
    struct km_tsz *c = chunk_new(4096, 1);
    struct km_tsz_iter it;
    int64_t t;
    double v[4];
    unsigned k = 0;

    append_range(c, s, 0, 20);
    km_tsz_iter_init(&it, c);
    ck_assert_int_eq(km_tsz_next(&it, &t, v), 1);
    append_range(c, s, 20, 50);
    while (km_tsz_next(&it, &t, v) == 1)
        k++;
    ck_assert_uint_eq(k, 19);
    ck_assert_int_eq(t, s->t[19]);
    expect_samples(c, s, 50);
    free(c);
    free(s);
}
END_TEST

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Bytes per sample of one hour at 1 s of one series; prints it. */
static double bytes_per_sample(const char *what, enum shape sh, enum tshape ts)
{
    struct set *s = set_make(2026, sh, ts, 1, NSAMP);
    struct km_tsz *c = chunk_new(65535, 1);
    struct km_tsz_iter it;
    int64_t t;
    double v[4], bps, t0, best = 1e9;

    ck_assert_uint_eq(append_range(c, s, 0, NSAMP), NSAMP);
    bps = (double)km_tsz_used(c) / NSAMP;
    for (int r = 0; r < 20; r++) { /* printed only, never asserted */
        t0 = now_us();
        km_tsz_iter_init(&it, c);
        while (km_tsz_next(&it, &t, v) == 1)
            ;
        t0 = now_us() - t0;
        best = t0 < best ? t0 : best;
    }
    printf("tsz: %-36s %6.3f bytes/sample (%zu bytes for %d), decode %.1f us\n", what,
           bps, km_tsz_used(c), NSAMP, best);
    free(c);
    free(s);
    return bps;
}

START_TEST(test_size)
{
    double a = bytes_per_sample("(a) 1 s gauge, 2 decimals", SH_PCT2, TS_STEP);
    double b = bytes_per_sample("(b) integer counter (+0..2000)", SH_COUNTER, TS_STEP);
    double c = bytes_per_sample("(c) full-mantissa noise", SH_NOISE, TS_STEP);
    double d = bytes_per_sample("(d) constant", SH_CONST, TS_STEP);

    bytes_per_sample("    byte counter (+0..2e6)", SH_BYTES, TS_STEP);
    bytes_per_sample("    2 decimals, 1 s +- 30 ms jitter", SH_PCT2, TS_JITTER);
    ck_assert_double_lt(a, 3.0);
    ck_assert_double_lt(b, 3.0);
    ck_assert_double_lt(d, 0.5);
    ck_assert_double_lt(c, 10.0); /* 8-byte doubles, plus codes */
}
END_TEST

static Suite *tsz_suite(void)
{
    Suite *s = suite_create("tsz");
    TCase *tc = tcase_create("codec");

    tcase_set_timeout(tc, 300); /* the ASan build of the bit flips */
    tcase_add_test(tc, test_einval);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_order);
    tcase_add_test(tc, test_full_exact);
    tcase_add_test(tc, test_full_count);
    tcase_add_test(tc, test_load_prefix);
    tcase_add_test(tc, test_load_bitflip);
    tcase_add_test(tc, test_load_garbage);
    tcase_add_test(tc, test_load_append);
    tcase_add_test(tc, test_iter_snapshot);
    tcase_add_test(tc, test_size);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tsz_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
