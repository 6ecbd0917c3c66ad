/*
 * history_int.h - what the history store's two files share: history.c (the
 * rings, sampling, queries) and history_file.c (the file). Nothing else
 * includes it; the contract is history.h.
 *
 * Layout: every series with history owns one block (struct km_hist) holding
 * the ring state of each tier and, after it, every chunk of every tier, at
 * offsets that are the same for all series (struct km_hist_geom, one per
 * tier, in the store). A chunk slot is initialised only when the ring first
 * moves onto it.
 */
#ifndef KM_HISTORY_INT_H
#define KM_HISTORY_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "history.h"
#include "tsz.h"

#define KM_HIST_CHUNK_CAP  1024 /* data bytes of one chunk, every tier */
#define KM_HIST_BUDGET_RAW 3    /* bytes budgeted per tier-0 sample (1 column) */
#define KM_HIST_BUDGET_AGG 8    /* bytes budgeted per coarse sample (4 columns) */
#define KM_HIST_AGG_COLS   4    /* coarse tiers: min, max, sum, count */
/* One series' block may not exceed this: opts asking for more are refused. */
#define KM_HIST_SERIES_MAX_BYTES (16u << 20)

/* One tier's shape, the same for every series. */
struct km_hist_geom {
    int64_t step_ms;   /* step in milliseconds */
    unsigned ncols;    /* values per sample: 1 (tier 0) or KM_HIST_AGG_COLS */
    unsigned cap;      /* data bytes per chunk */
    unsigned nchunks;  /* chunks in the ring */
    size_t chunk_size; /* bytes of one chunk slot (km_tsz_size, rounded to 16) */
    size_t offset;     /* of the tier's first slot in a block's data[] */
};

/* The open bucket of a coarse tier (tier-0 samples not yet appended). */
struct km_hist_acc {
    int64_t start_ms; /* the bucket's start */
    double min;       /* lowest value in it */
    double max;       /* highest value in it */
    double sum;       /* sum of its values */
    uint64_t count;   /* values in it; 0: no bucket open */
};

/* A tier's ring state in one series. */
struct km_hist_ring {
    unsigned head; /* slot of the newest chunk */
    unsigned used; /* slots holding a chunk; the oldest is head + 1 - used (mod n) */
};

/* s->hist: one series' history, one allocation. */
struct km_hist {
    int64_t last_ms;                                /* last tier-0 sample; 0: none */
    struct km_hist_ring ring[KM_HISTORY_TIERS_MAX]; /* per tier */
    struct km_hist_acc acc[KM_HISTORY_TIERS_MAX];   /* per tier; [0] unused */
    _Alignas(16) unsigned char data[];              /* the chunk slots */
};

/* The store. */
struct km_history {
    struct event_base *base;                           /* the loop (borrowed) */
    struct km_series_reg *reg;                         /* the registry (borrowed) */
    unsigned ntiers;                                   /* tiers in use */
    struct km_history_tier tier[KM_HISTORY_TIERS_MAX]; /* as configured */
    struct km_hist_geom geom[KM_HISTORY_TIERS_MAX];    /* their shapes */
    size_t series_bytes;                               /* one block's size */
    int64_t keep_ms;                                   /* longest retention */
    char *path;                                        /* the file; NULL: none */
    double flush_interval;                             /* seconds; 0: no timer */
    struct event *sample_ev;                           /* tier-0 timer */
    struct event *flush_ev;                            /* flush timer */
    struct event *child_ev;                            /* polls the writer child */
    int64_t next_ms;                                   /* boundary sample_ev is set for */
    pid_t child;                                       /* writer child; 0: none */
    int child_fd;                                      /* its reason pipe; -1: none */
    double child_start;       /* when it was forked (monotonic) */
    size_t nseries;           /* series with a block */
    uint64_t samples;         /* tier-0 samples held */
    uint64_t bytes_used;      /* chunk bytes holding data */
    uint64_t alloc_failed;    /* blocks not allocated */
    uint64_t samples_skipped; /* out of order, or no room */
    uint64_t dropped;         /* stale series dropped */
    uint64_t flushes;         /* files written */
    uint64_t flush_errors;    /* writes that failed */
    uint64_t flush_skipped;   /* writer child still running */
    double last_flush_secs;   /* duration of the last write */
    uint64_t loaded;          /* series read from the file */
    uint64_t load_skipped;    /* of them not kept (cap, name) */
};

/* ---- history.c, for history_file.c ---- */

/* The chunk in slot `slot` of tier i of hs. */
struct km_tsz *km_hist_chunk(const struct km_history *h, const struct km_hist *hs,
                             unsigned i, unsigned slot);
/* A new empty block for a series; NULL on ENOMEM (counted). */
struct km_hist *km_hist_new(struct km_history *h);
/*
 * Appends a stored chunk to tier i's ring of hs as its newest (the load):
 * KM_TSZ_OK, or KM_TSZ_CORRUPT / KM_TSZ_EINVAL from km_tsz_load.
 */
int km_hist_push_chunk(struct km_history *h, struct km_hist *hs, unsigned i,
                       unsigned count, const uint8_t *buf, size_t len);
/* The wall clock, in seconds; the monotonic clock, in seconds. */
double km_hist_now(void);
double km_hist_mono(void);

/* ---- history_file.c, for history.c ---- */

/* Writes the store to h->path (tmp, fsync, rename, fsync of the directory)
   in this process. 0, or -1 with the reason in err. */
int km_hist_write(struct km_history *h, char *err, size_t errlen);
/* Reads h->path into the store and the registry (see history.h). Never
   fails: a bad file is logged and set aside. */
void km_hist_load(struct km_history *h);
/* The store's bytes, as the file holds them, written to fd (no fsync): 0, or
   an errno. For km_hist_write and tests. */
int km_hist_write_fd(struct km_history *h, int fd);
/* Reads a file's bytes (buf, borrowed) into the store: checked whole
   first, so 0 (loaded), -1 (refused, the store unchanged; why says what and
   at which byte) or -2 (out of memory). For km_hist_load and tests. */
int km_hist_load_buf(struct km_history *h, const uint8_t *buf, size_t size, char *why,
                     size_t whylen);
/* The flush timer's work: forks the writer (or counts a skip). */
void km_hist_flush_async(struct km_history *h);
/* Reaps the writer child: `block` waits for it. Logs its failure. */
void km_hist_reap(struct km_history *h, int block);

#endif /* KM_HISTORY_INT_H */
