/*
 * tsz.h - Gorilla-style compression of samples into fixed-size chunks.
 *
 * A chunk holds samples (t, v[0..ncols-1]) in time order, packed into a
 * bit stream of at most `cap` bytes (Pelkonen et al., "Gorilla: a fast,
 * scalable, in-memory time series database", VLDB 2015): times as
 * delta-of-delta (a fixed step costs one bit), values exactly (lossless):
 * an unchanged value costs one bit, a short decimal (12.34, an integer)
 * the delta of its scaled integer, anything else the XOR with the previous
 * value. The library does no I/O and no allocation: the caller supplies
 * the memory (km_tsz_size) and stores the bytes.
 *
 * Times are int64 milliseconds. Values are doubles; NaN and infinities are
 * stored as such.
 */
#ifndef KM_TSZ_H
#define KM_TSZ_H

#include <stddef.h>
#include <stdint.h>

#define KM_TSZ_COLS_MAX 4 /* values per sample, at most */

/* Return codes. */
#define KM_TSZ_OK      0  /* done */
#define KM_TSZ_FULL    -1 /* append: no room left (or 65535 samples); chunk unchanged */
#define KM_TSZ_ORDER   -2 /* append: t is not after the last sample's time */
#define KM_TSZ_CORRUPT -3 /* load / iterate: the bytes do not decode */
#define KM_TSZ_EINVAL  -4 /* bad argument (ncols, cap) */

/* A chunk; allocate km_tsz_size(cap) bytes for it. */
struct km_tsz;

/* Bytes to allocate for a chunk of `cap` data bytes. */
size_t km_tsz_size(unsigned cap);
/* Makes *c an empty chunk of `cap` data bytes (16..65535) and `ncols`
   values per sample (1..KM_TSZ_COLS_MAX). KM_TSZ_OK or KM_TSZ_EINVAL.
   One sample takes at most 9 + 10 * ncols bytes (see tsz.c). */
int km_tsz_init(struct km_tsz *c, unsigned cap, unsigned ncols);
/* Appends a sample: KM_TSZ_OK, KM_TSZ_FULL or KM_TSZ_ORDER. */
int km_tsz_append(struct km_tsz *c, int64_t t_ms, const double *v);

unsigned km_tsz_count(const struct km_tsz *c); /* samples held */
unsigned km_tsz_ncols(const struct km_tsz *c); /* values per sample */
int64_t km_tsz_first(const struct km_tsz *c);  /* first sample's time; 0 empty */
int64_t km_tsz_last(const struct km_tsz *c);   /* last sample's time; 0 empty */
size_t km_tsz_used(const struct km_tsz *c);    /* data bytes in use */

/* The chunk's data bytes (borrowed) and their count in *len, to store. */
const uint8_t *km_tsz_bytes(const struct km_tsz *c, size_t *len);
/*
 * Makes *c (allocated for `cap`) the chunk whose stored bytes are buf[0..len)
 * holding `count` samples of `ncols` values: decodes all of it to check it
 * and to restore the state appends continue from. KM_TSZ_OK, KM_TSZ_CORRUPT
 * (anything that does not decode to exactly `count` ordered samples within
 * len bytes; *c is then empty) or KM_TSZ_EINVAL. buf may be c's own bytes.
 * The codec has no checksum: a flipped payload bit can decode to other
 * valid samples, so a stored chunk needs the caller's CRC.
 */
int km_tsz_load(struct km_tsz *c, unsigned cap, unsigned ncols, unsigned count,
                const uint8_t *buf, size_t len);

/* The codec's running state after a sample: what the next sample is coded
   against. The encoder keeps one in the chunk; the decoder rebuilds it. */
struct km_tsz_state {
    int64_t t;                       /* last time (ms) */
    uint64_t delta;                  /* last time delta (ms, modulo 2^64) */
    uint64_t bits[KM_TSZ_COLS_MAX];  /* last values, as bits */
    int64_t scaled[KM_TSZ_COLS_MAX]; /* last values as scaled integers */
    int8_t exp[KM_TSZ_COLS_MAX];     /* their decimal exponent; -1: none */
    uint8_t lead[KM_TSZ_COLS_MAX];   /* XOR window: leading zeros */
    uint8_t sig[KM_TSZ_COLS_MAX];    /* XOR window: meaningful bits; 0: none yet */
};

/* Reads a chunk's samples in order. Not invalidated by appends made after
   km_tsz_iter_init, which it does not see. */
struct km_tsz_iter {
    const struct km_tsz *c; /* the chunk */
    unsigned left;          /* samples still to read */
    unsigned done;          /* samples read */
    uint64_t pos;           /* bit position */
    uint64_t end;           /* bits in use at km_tsz_iter_init */
    uint64_t win;           /* the bits from pos on, read ahead */
    unsigned avail;         /* of them valid */
    struct km_tsz_state st; /* the state after the last sample read */
};
void km_tsz_iter_init(struct km_tsz_iter *it, const struct km_tsz *c);
/* 1 and the next sample in *t_ms, v[0..ncols-1]; 0 at the end;
   KM_TSZ_CORRUPT when the bits do not decode. */
int km_tsz_next(struct km_tsz_iter *it, int64_t *t_ms, double *v);

#endif /* KM_TSZ_H */
